//! Every checkpoint a host persists, decoded from arbitrary bytes and restored: a
//! typed error or a value, never a panic; and what restores writes a snapshot that
//! restores to the same snapshot again. The coordinator's journal too: a checkpoint
//! and the records after it, replayed, are a typed error or a core whose snapshot
//! restores to itself, and replaying them again rebuilds the same core.
#![no_main]

use concord::agent::{AgentRegistry, RegistrySnapshot};
use concord::conflict::{ConflictManager, ConflictManagerSnapshot, EscalationPolicy};
use concord::coordinator::{Coordinator, CoordinatorSnapshot, Record};
use concord::resource::{
    EwmaPredictor, EwmaSnapshot, LedgerSnapshot, PercentilePredictor, PercentileSnapshot,
    ResourceLedger,
};
use concord::workflow::{Run, RunSnapshot, runbooks};
use libfuzzer_sys::fuzz_target;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("a snapshot serializes")
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            let Ok(s) = serde_json::from_slice::<CoordinatorSnapshot>(bytes) else {
                return;
            };
            let Ok(c) = Coordinator::builder().restore(s) else {
                return;
            };
            let first = c.snapshot();
            let again = Coordinator::builder()
                .restore(first.clone())
                .expect("a restored coordinator's own snapshot restores");
            assert_eq!(json(&again.snapshot()), json(&first));
        }
        1 => {
            let Ok(s) = serde_json::from_slice::<LedgerSnapshot>(bytes) else {
                return;
            };
            let Ok(l) = ResourceLedger::restore(s) else {
                return;
            };
            let first = l.snapshot();
            let again = ResourceLedger::restore(first.clone()).expect("own snapshot restores");
            assert_eq!(again.snapshot(), first);
        }
        2 => {
            let Ok(s) = serde_json::from_slice::<RegistrySnapshot>(bytes) else {
                return;
            };
            let Ok(r) = AgentRegistry::restore(s) else {
                return;
            };
            let first = r.snapshot();
            let again = AgentRegistry::restore(first.clone()).expect("own snapshot restores");
            assert_eq!(json(&again.snapshot()), json(&first));
        }
        3 => {
            let Ok(s) = serde_json::from_slice::<ConflictManagerSnapshot>(bytes) else {
                return;
            };
            let Ok(m) = ConflictManager::restore(EscalationPolicy::default(), s) else {
                return;
            };
            let first = m.snapshot();
            let again = ConflictManager::restore(EscalationPolicy::default(), first.clone())
                .expect("own snapshot restores");
            assert_eq!(json(&again.snapshot()), json(&first));
        }
        4 => {
            let Ok(s) = serde_json::from_slice::<RunSnapshot>(bytes) else {
                return;
            };
            let w = runbooks::deployment();
            let Ok(run) = Run::restore(&w, s) else { return };
            let first = run.snapshot();
            let again = Run::restore(&w, first.clone()).expect("own snapshot restores");
            assert_eq!(json(&again.snapshot()), json(&first));
        }
        5 => {
            let Ok(s) = serde_json::from_slice::<EwmaSnapshot>(bytes) else {
                return;
            };
            let p = EwmaPredictor::restore(s);
            let first = p.snapshot();
            assert_eq!(
                json(&EwmaPredictor::restore(first.clone()).snapshot()),
                json(&first)
            );
        }
        6 => {
            let Ok(s) = serde_json::from_slice::<PercentileSnapshot>(bytes) else {
                return;
            };
            let p = PercentilePredictor::restore(s);
            let first = p.snapshot();
            assert_eq!(
                json(&PercentilePredictor::restore(first.clone()).snapshot()),
                json(&first)
            );
        }
        _ => {
            // What a host reads back after a crash: its last checkpoint (if any) and
            // the records after it.
            let Ok((checkpoint, records)) =
                serde_json::from_slice::<(Option<CoordinatorSnapshot>, Vec<Record>)>(bytes)
            else {
                return;
            };
            let Ok(core) = Coordinator::builder().recover_core_from(checkpoint.clone(), &records)
            else {
                return;
            };
            let first = core.snapshot();
            // The core is deterministic: the same journal rebuilds the same core.
            let replayed = Coordinator::builder()
                .recover_core_from(checkpoint, &records)
                .expect("a journal that replayed once replays again");
            assert_eq!(json(&replayed.snapshot()), json(&first));
            let again = Coordinator::builder()
                .restore_core(first.clone())
                .expect("a recovered core's own snapshot restores");
            assert_eq!(json(&again.snapshot()), json(&first));
            // Its snapshot holds every record: given them again, it skips them all.
            let skipped = Coordinator::builder()
                .recover_core_from(Some(first.clone()), &records)
                .expect("the records a checkpoint holds are skipped");
            assert_eq!(json(&skipped.snapshot()), json(&first));
        }
    }
});
