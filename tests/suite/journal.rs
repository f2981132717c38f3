//! The coordinator's journal through the public API: a journaled core (or
//! coordinator) writes its commands to a `Journal`, stores checkpoints in it, and a
//! core rebuilt from the journal after a crash holds exactly the state the live one
//! had. What must hold:
//!
//! - recovery rebuilds the live state byte for byte (as JSON), from any checkpoint,
//!   after compaction, and from records that went through JSON;
//! - the journal is a compare-and-set: a second writer is refused, nothing of it is
//!   appended, and its records stay pending;
//! - missing records are a typed `Gap`, records that do not make their events again
//!   (altered, or replayed under another configuration) a typed `Diverged` naming
//!   the record where it shows, and a bad checkpoint `CorruptSnapshot`: never a core
//!   built from a state that never was;
//! - a command that fails records nothing;
//! - a checkpoint keeps what the predictor learned (the bug the simulation found when
//!   the journal was written: a restored coordinator predicted from nothing, and
//!   queued a task the live one had placed), and one from before the journal still
//!   restores.

use std::time::Duration;

use concord::conflict::{ConflictState, HumanDecision};
use concord::coordinator::{
    AssignOutcome, Assignment, Command, Coordinator, CoordinatorBuilder, CoordinatorError,
    CoordinatorSnapshot, Core, Decider, Journal, JournalError, MemoryJournal, Record,
};
use concord::policy::{MaxTasksPerAgent, PolicySet};
use concord::resource::{EwmaPredictor, LedgerConfig, StaticPredictor};
use concord::{
    AgentId, AgentProfile, AgentStatus, Claim, ConflictId, EscalationPolicy, ManualClock,
    Requirements, Resources, Role, RuleBasedAnalyzer, RuleSet, SystemMode, Task, TaskId, Timestamp,
};
use serde_json::Value;

const MIN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);
const GROUP: &str = "run-1";

// ----- fixtures ---------------------------------------------------------------------

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

/// `m` minutes after `t0`.
fn at(m: u64) -> Timestamp {
    t0() + MIN * u32::try_from(m).expect("minutes")
}

fn tid(n: u64) -> TaskId {
    TaskId::new(n)
}

fn aid(n: u64) -> AgentId {
    AgentId::new(n)
}

fn r(s: &str) -> Resources {
    s.parse().expect("resources")
}

/// An ops agent with `slots` task slots and 8 cpus.
fn agent(id: u64, slots: u32) -> AgentProfile {
    AgentProfile::new(aid(id), format!("agent-{id}"))
        .with_role(Role::new("ops").expect("role"))
        .with_capacity(r("cpu=8,memory=8Gi"))
        .with_max_tasks(slots)
}

/// An ops task of kind `edit` asking for one cpu and holding `claims` exclusively.
fn claiming(id: u64, claims: &[&str]) -> Task {
    let mut needs = Requirements::new()
        .with_role(Role::new("ops").expect("role"))
        .with_resources(r("cpu=1"));
    for name in claims {
        needs = needs.with_claim(Claim::exclusive(*name));
    }
    Task::new(tid(id), "edit", format!("task {id}")).with_requirements(needs)
}

fn task(id: u64) -> Task {
    claiming(id, &[])
}

/// No keyword analysis, reservations a day off, and a ladder that reaches the
/// orchestrator at 10 minutes, a human at 40, and the default decision (deny) 15
/// minutes after that. Recovery must be built as the live core was: every test
/// builds both from this.
fn builder() -> CoordinatorBuilder {
    Coordinator::builder()
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
        .ledger_config(LedgerConfig::default().with_reserve_after(DAY))
        .escalation_policy(
            EscalationPolicy::default()
                .with_orchestrator_after(10 * MIN)
                .with_human_after(40 * MIN)
                .with_decision_within(15 * MIN)
                .with_default_decision(HumanDecision::Deny),
        )
        .expect("valid ladder")
}

fn json(snapshot: &CoordinatorSnapshot) -> String {
    serde_json::to_string(snapshot).expect("snapshot serializes")
}

fn assigned(out: AssignOutcome) -> Assignment {
    match out {
        AssignOutcome::Assigned(a) => Assignment::clone(&a),
        other => panic!("not assigned: {other:?}"),
    }
}

fn queued(out: AssignOutcome) {
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
}

fn conflicted(out: AssignOutcome) -> ConflictId {
    match out {
        AssignOutcome::Conflicted { conflicts, .. } => {
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            conflicts[0]
        }
        other => panic!("not conflicted: {other:?}"),
    }
}

fn ids(assignments: &[std::sync::Arc<Assignment>]) -> Vec<TaskId> {
    assignments.iter().map(|a| a.task.id()).collect()
}

/// The number of the one record whose command matches `which`.
fn seq_of(records: &[Record], which: impl Fn(&Command) -> bool) -> u64 {
    let found: Vec<u64> = records
        .iter()
        .filter(|r| which(&r.command))
        .map(|r| r.seq)
        .collect();
    assert_eq!(found.len(), 1, "records matching: {found:?}");
    found[0]
}

/// Whether `command` assigns `task`.
fn assigns(command: &Command, task: TaskId) -> bool {
    matches!(command, Command::AssignBatch { tasks, .. } if tasks.iter().any(|t| t.id() == task))
}

/// Whether `command` completes `task`.
fn completes(command: &Command, task: TaskId) -> bool {
    matches!(command, Command::Complete { task: t, .. } if *t == task)
}

/// A day's work on a core built journaled, of every kind of command: agents register,
/// a batch and single tasks are assigned, some queue for lack of room, two pairs of
/// exclusive claims collide (one conflict decided by hand, the other by the ladder's
/// default as time passes), tasks complete with usage (one failing), a task is
/// cancelled, safe mode comes and goes, an agent is scaled and goes offline and back.
/// Writes to `journal` as it goes, with a checkpoint after the first completion.
fn a_busy_day(core: &mut Core, journal: &mut MemoryJournal) {
    core.register_agent(agent(1, 5), at(0)).expect("register 1");
    let batch = core
        .assign_batch(Some(GROUP), vec![task(1), task(2)], at(0))
        .expect("batch");
    for out in batch {
        assigned(out);
    }
    assigned(core.assign(claiming(3, &["db"]), at(1)).expect("task 3"));
    assigned(core.assign(claiming(5, &["cache"]), at(1)).expect("task 5"));
    let by_hand = conflicted(core.assign(claiming(4, &["db"]), at(2)).expect("task 4"));
    let by_ladder = conflicted(core.assign(claiming(6, &["cache"]), at(2)).expect("task 6"));
    assigned(core.assign(task(7), at(2)).expect("task 7"));
    // Five slots, five tasks running: these wait for room.
    queued(core.assign(task(8), at(3)).expect("task 8"));
    queued(core.assign(task(9), at(3)).expect("task 9"));
    core.write_journal(journal).expect("write");

    let served = core
        .complete(tid(1), true, Some(r("cpu=3,memory=1Gi")), at(4))
        .expect("complete 1");
    assert_eq!(ids(&served), [tid(8)]);
    core.checkpoint(journal).expect("checkpoint");

    assert_eq!(core.cancel(tid(9), at(5)).expect("cancel 9").id(), tid(9));
    assert!(
        core.set_mode(SystemMode::SafeMode, at(6))
            .expect("safe mode")
    );
    queued(core.assign(task(10), at(6)).expect("task 10"));
    assert!(core.set_mode(SystemMode::Normal, at(6)).expect("normal"));
    core.decide(by_hand, HumanDecision::Approve, Decider::Human, at(7))
        .expect("approve");
    core.register_agent(agent(2, 1), at(8)).expect("register 2");
    core.set_agent_capacity(aid(2), r("cpu=16,memory=16Gi"), at(8))
        .expect("scale agent 2");
    assert!(
        core.set_agent_status(aid(2), AgentStatus::Offline, at(9))
            .expect("offline")
    );
    assert!(
        core.set_agent_status(aid(2), AgentStatus::Available, at(9))
            .expect("back")
    );
    core.complete(tid(2), false, Some(r("cpu=2")), at(10))
        .expect("complete 2");
    core.write_journal(journal).expect("write");

    // The ladder: to the orchestrator, to a human, then its default decision.
    for m in [15, 45, 60] {
        core.handle_timeout(at(m)).expect("tick");
    }
    assert_eq!(
        core.conflict_manager().state(by_ladder),
        Some(ConflictState::DecidedByDefault(HumanDecision::Deny))
    );
    assert!(
        core.conflict_manager()
            .state(by_hand)
            .is_some_and(ConflictState::is_closed)
    );
    core.complete(tid(3), true, Some(r("cpu=1")), at(61))
        .expect("complete 3");
    core.write_journal(journal).expect("write");
}

/// A journal holding [`a_busy_day`], the live core that wrote it, and the live
/// snapshot as JSON.
fn busy_journal() -> (MemoryJournal, Core, String) {
    let mut journal = MemoryJournal::new();
    let mut core = builder().journaled().build_core();
    a_busy_day(&mut core, &mut journal);
    let live = json(&core.snapshot());
    (journal, core, live)
}

/// A short run without a checkpoint, on one agent with two slots: record 1 registers
/// it, 2 assigns task 1, 3 completes it reporting 2 cpus (above the one it asked
/// for), 4 assigns task 2, which the predictor sizes from what it learned.
fn a_short_run() -> Vec<Record> {
    let mut core = builder().journaled().build_core();
    core.register_agent(agent(1, 2), at(0)).expect("register");
    assigned(core.assign(task(1), at(0)).expect("task 1"));
    core.complete(tid(1), true, Some(r("cpu=2")), at(1))
        .expect("complete");
    let second = assigned(core.assign(task(2), at(2)).expect("task 2"));
    assert_eq!(second.resources, r("cpu=2300m"), "learned: 2 cpus + 15%");
    let records = core.drain_records();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    records
}

fn diverged_at(result: Result<Core, CoordinatorError>) -> (u64, String) {
    match result {
        Err(CoordinatorError::Journal(JournalError::Diverged { seq, reason })) => (seq, reason),
        Err(e) => panic!("not diverged: {e}"),
        Ok(core) => panic!("recovered: {:?}", json(&core.snapshot())),
    }
}

// ----- 1-3. recovery rebuilds the live state ----------------------------------------

#[test]
fn recovery_rebuilds_exactly_the_live_state() {
    let (mut journal, live, before) = busy_journal();
    let checkpoint = journal.load_checkpoint().expect("load").expect("stored");
    // The checkpoint is mid-journal: recovery replays the records after it.
    let replayed = journal.next_seq() - checkpoint.journal_next;
    assert!(replayed >= 10, "{replayed} records after the checkpoint");
    assert_eq!(journal.next_seq(), live.journal_next());

    let recovered = builder().recover_core(&journal).expect("recover");
    assert_eq!(json(&recovered.snapshot()), before);
    assert_eq!(recovered.journal_next(), live.journal_next());

    // Compacted, the journal holds only the records after the checkpoint, and
    // rebuilds the same state.
    let dropped = journal.compact();
    assert_eq!(dropped as u64, checkpoint.journal_next - 1);
    assert_eq!(journal.records()[0].seq, checkpoint.journal_next);
    let recovered = builder().recover_core(&journal).expect("recover compacted");
    assert_eq!(json(&recovered.snapshot()), before);
}

#[test]
fn recovery_from_the_whole_journal_without_a_checkpoint_rebuilds_the_live_state() {
    let (journal, _, before) = busy_journal();
    let recovered = builder()
        .recover_core_from(None, journal.records())
        .expect("recover");
    assert_eq!(json(&recovered.snapshot()), before);
}

/// A recovered core carries on where the live one stopped: its next command makes
/// the same events as the live one's, under the next record number, and its record
/// appends to the same journal.
#[test]
fn a_recovered_core_carries_on_as_the_live_one_would() {
    let (mut journal, mut live, _) = busy_journal();
    let mut recovered = builder().recover_core(&journal).expect("recover");
    live.drain_events();
    let next = live.journal_next();

    let go = |core: &mut Core| {
        let out = core.assign(task(20), at(62)).expect("task 20");
        (out, core.drain_events())
    };
    let (live_out, live_events) = go(&mut live);
    let (out, events) = go(&mut recovered);
    assert_eq!((out, events), (live_out, live_events));

    assert_eq!(recovered.write_journal(&mut journal).expect("append"), 1);
    assert_eq!(journal.next_seq(), next + 1);
    assert_eq!(json(&recovered.snapshot()), json(&live.snapshot()));
}

#[test]
fn the_thread_safe_facade_writes_checkpoints_and_recovers() {
    let clock = ManualClock::new(t0());
    let mut journal = MemoryJournal::new();
    let c = builder().clock(clock.clone()).journaled().build();
    c.register_agent(agent(1, 1)).expect("register");
    assigned(c.assign(claiming(1, &["db"])).expect("task 1"));
    clock.advance(MIN);
    queued(c.assign(task(2)).expect("task 2"));
    assert_eq!(c.write_journal(&mut journal).expect("write"), 3);
    c.checkpoint(&mut journal).expect("checkpoint");

    clock.advance(MIN);
    let served = c
        .complete(tid(1), true, Some(r("cpu=2")))
        .expect("complete");
    assert_eq!(ids(&served), [tid(2)]);
    assert!(c.set_mode(SystemMode::SafeMode));
    clock.advance(MIN);
    assert!(c.tick().is_empty());
    assert_eq!(c.write_journal(&mut journal).expect("write"), 3);
    assert_eq!(c.write_journal(&mut journal).expect("nothing new"), 0);

    let recovered = builder()
        .clock(clock.clone())
        .recover(&journal)
        .expect("recover");
    assert_eq!(json(&recovered.snapshot()), json(&c.snapshot()));
    assert_eq!(recovered.mode(), SystemMode::SafeMode);
}

/// A torn tail: the host recovers up to the last good record through the facade, and
/// the coordinator's appends are refused until the host cuts the torn record from its
/// storage; then they go on under its number, and the journal recovers what the
/// coordinator holds.
#[test]
fn recovered_up_to_a_torn_record_the_coordinator_appends_once_the_host_cuts_it() {
    let clock = ManualClock::new(t0());
    let mut journal = MemoryJournal::new();
    let records = a_short_run();
    journal.append(1, &records).expect("append");
    // Record 4 was torn by the crash: the host reads the three before it.
    let good = &journal.records()[..3];
    let c = builder()
        .clock(clock.clone())
        .recover_from(None, good)
        .expect("recover up to the torn record");
    assert_eq!(c.with_core(|core| core.journal_next()), 4);
    assert_eq!(c.assignments().len(), 0, "task 2's assignment was torn");

    clock.advance(MIN);
    assigned(c.assign(task(3)).expect("task 3"));
    match c.write_journal(&mut journal) {
        Err(JournalError::Conflict { expected, actual }) => assert_eq!((expected, actual), (4, 5)),
        other => panic!("appended over the torn record: {other:?}"),
    }
    journal.truncate(4);
    assert_eq!(c.write_journal(&mut journal).expect("write"), 1);
    let recovered = builder()
        .clock(clock.clone())
        .recover(&journal)
        .expect("recover");
    assert_eq!(json(&recovered.snapshot()), json(&c.snapshot()));
}

/// A core that keeps no events (its host never reads them) holds none after each
/// command, yet journals the same records and recovers the same state as one that
/// keeps them.
#[test]
fn a_core_that_keeps_no_events_journals_and_recovers_the_same() {
    let (journal, mut live, before) = busy_journal();
    let mut quiet_journal = MemoryJournal::new();
    let mut quiet = builder().journaled().keep_events(false).build_core();
    a_busy_day(&mut quiet, &mut quiet_journal);
    assert_eq!(json(&quiet.snapshot()), before);
    assert_eq!(quiet_journal.records(), journal.records());
    assert!(quiet.drain_events().is_empty());
    assert!(live.drain_events().len() > 20);
    let recovered = builder()
        .keep_events(false)
        .recover_core(&quiet_journal)
        .expect("recover");
    assert_eq!(json(&recovered.snapshot()), before);
}

#[test]
fn records_and_checkpoint_read_back_from_json_recover_the_same_state() {
    let (journal, _, before) = busy_journal();
    let checkpoint = journal.load_checkpoint().expect("load");
    let records_json = serde_json::to_string(journal.records()).expect("records serialize");
    let checkpoint_json = serde_json::to_string(&checkpoint).expect("checkpoint serializes");

    let records: Vec<Record> = serde_json::from_str(&records_json).expect("records read back");
    assert_eq!(records, journal.records());
    let checkpoint: Option<CoordinatorSnapshot> =
        serde_json::from_str(&checkpoint_json).expect("checkpoint reads back");
    let recovered = builder()
        .recover_core_from(checkpoint, &records)
        .expect("recover");
    assert_eq!(json(&recovered.snapshot()), before);
}

// ----- 4-5. compare-and-set and gaps --------------------------------------------------

/// Two processes each believe they own the journal (a failover without fencing):
/// the second to write is refused, so the journal never holds two histories.
#[test]
fn a_second_writer_is_refused_and_keeps_its_records_pending() {
    let (mut journal, _, _) = busy_journal();
    let next = journal.next_seq();
    let mut first = builder().recover_core(&journal).expect("recover 1");
    let mut second = builder().recover_core(&journal).expect("recover 2");

    first.assign(task(20), at(62)).expect("first's task");
    assert_eq!(first.write_journal(&mut journal).expect("first appends"), 1);
    second.assign(task(30), at(62)).expect("second's task");
    second
        .assign(task(31), at(62))
        .expect("second's other task");

    let conflict = JournalError::Conflict {
        expected: next,
        actual: next + 1,
    };
    assert_eq!(second.write_journal(&mut journal), Err(conflict.clone()));
    assert_eq!(
        journal.next_seq(),
        next + 1,
        "nothing of the second appended"
    );
    assert!(assigns(
        &journal.records().last().expect("a record").command,
        tid(20)
    ));
    // Nothing changed: a retry is refused the same way, and checkpointing too.
    assert_eq!(second.write_journal(&mut journal), Err(conflict.clone()));
    assert_eq!(second.checkpoint(&mut journal), Err(conflict));
    let stored = journal.load_checkpoint().expect("load").expect("stored");
    assert!(
        stored.journal_next < next,
        "the second's checkpoint was not stored"
    );

    let pending = second.drain_records();
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [next, next + 1]
    );
    assert!(assigns(&pending[0].command, tid(30)));
    assert!(assigns(&pending[1].command, tid(31)));
    assert_eq!(second.write_journal(&mut journal), Ok(0));
}

#[test]
fn misnumbered_records_are_a_gap_and_nothing_is_appended() {
    let mut records = a_short_run();
    let mut journal = MemoryJournal::new();
    records[2].seq = 4;
    assert_eq!(
        journal.append(1, &records[..3]),
        Err(JournalError::Gap {
            expected: 3,
            found: 4
        })
    );
    assert_eq!(journal.next_seq(), 1);
    assert!(journal.records().is_empty());
}

#[test]
fn a_checkpoint_past_the_end_of_the_journal_is_a_gap() {
    let mut journal = MemoryJournal::new();
    let mut core = builder().journaled().build_core();
    core.register_agent(agent(1, 1), at(0)).expect("register");
    assigned(core.assign(task(1), at(0)).expect("task 1"));
    // Its two records were never appended.
    assert_eq!(
        journal.store_checkpoint(&core.snapshot()),
        Err(JournalError::Gap {
            expected: 1,
            found: 3
        })
    );
    assert!(journal.load_checkpoint().expect("load").is_none());
    // Through the core, the records go first.
    core.checkpoint(&mut journal).expect("checkpoint");
    assert_eq!(journal.next_seq(), 3);
}

#[test]
fn a_record_missing_in_the_middle_is_a_gap_and_nothing_is_built() {
    let mut records = a_short_run();
    records.remove(1);
    match builder().recover_core_from(None, &records) {
        Err(CoordinatorError::Journal(JournalError::Gap { expected, found })) => {
            assert_eq!((expected, found), (2, 3));
        }
        other => panic!("not a gap: {:?}", other.map(|c| c.journal_next())),
    }
}

// ----- 6. divergence ----------------------------------------------------------------

#[test]
fn a_completion_whose_outcome_was_altered_diverges_at_its_record() {
    let mut records = a_short_run();
    let seq = seq_of(&records, |c| completes(c, tid(1)));
    let i = records.iter().position(|r| r.seq == seq).expect("record");
    let Command::Complete { success, .. } = &mut records[i].command else {
        unreachable!("found as a completion");
    };
    *success = false;
    let (at_seq, reason) = diverged_at(builder().recover_core_from(None, &records));
    assert_eq!(at_seq, seq, "{reason}");
    assert!(reason.contains("failed"), "{reason}");
}

#[test]
fn a_record_that_lost_an_event_diverges_at_that_record() {
    let mut records = a_short_run();
    let seq = seq_of(&records, |c| assigns(c, tid(1)));
    let i = records.iter().position(|r| r.seq == seq).expect("record");
    assert!(records[i].events.pop().is_some(), "assigning made events");
    let (at_seq, reason) = diverged_at(builder().recover_core_from(None, &records));
    assert_eq!(at_seq, seq, "{reason}");
    assert!(reason.ends_with("nothing in the journal"), "{reason}");
}

/// The completion event carries the usage the host reported: an altered usage is
/// caught at its own record, before the predictor learns from it.
#[test]
fn an_altered_usage_diverges_at_its_own_record() {
    let mut records = a_short_run();
    let completion = seq_of(&records, |c| completes(c, tid(1)));
    let i = records
        .iter()
        .position(|r| r.seq == completion)
        .expect("record");
    let Command::Complete { usage, .. } = &mut records[i].command else {
        unreachable!("found as a completion");
    };
    *usage = Some(r("cpu=4"));
    let (at_seq, reason) = diverged_at(builder().recover_core_from(None, &records));
    assert_eq!(at_seq, completion, "{reason}");
    assert!(reason.contains("cpu"), "the difference is shown: {reason}");
}

/// The same journal replayed under policies that refuse what the live core did:
/// caught at the first decision they change.
#[test]
fn recovering_under_other_policies_diverges() {
    let records = a_short_run();
    let one_task_each = PolicySet::default()
        .with_rule(MaxTasksPerAgent::new(1))
        .expect("policies");
    // In the short run each task ran alone: the stricter policy changes no decision
    // there, and the journal replays. Recovery checks decisions, not settings.
    let recovered = builder()
        .policies(one_task_each.clone())
        .recover_core_from(None, &records)
        .expect("the stricter policy changed no decision");
    assert_eq!(recovered.journal_next(), 5);

    // Two tasks side by side, which one task per agent refuses.
    let mut core = builder().journaled().build_core();
    core.register_agent(agent(1, 2), at(0)).expect("register");
    assigned(core.assign(task(1), at(0)).expect("task 1"));
    assigned(core.assign(task(2), at(1)).expect("task 2"));
    let records = core.drain_records();
    let (at_seq, reason) = diverged_at(
        builder()
            .policies(one_task_each)
            .recover_core_from(None, &records),
    );
    assert_eq!(at_seq, seq_of(&records, |c| assigns(c, tid(2))), "{reason}");
}

#[test]
fn recovering_with_another_predictor_diverges_where_it_predicts_otherwise() {
    let records = a_short_run();
    let (at_seq, reason) = diverged_at(
        builder()
            .predictor(StaticPredictor::new())
            .recover_core_from(None, &records),
    );
    assert_eq!(at_seq, seq_of(&records, |c| assigns(c, tid(2))), "{reason}");
}

// ----- 7. bad checkpoints -------------------------------------------------------------

fn corrupt_snapshot(result: Result<Core, CoordinatorError>) -> String {
    match result {
        Err(CoordinatorError::CorruptSnapshot { reason }) => reason,
        Err(e) => panic!("not a corrupt snapshot: {e}"),
        Ok(core) => panic!("recovered: {:?}", json(&core.snapshot())),
    }
}

#[test]
fn a_checkpoint_of_another_version_is_corrupt_and_nothing_is_built() {
    let (journal, _, _) = busy_journal();
    let mut checkpoint = journal.load_checkpoint().expect("load").expect("stored");
    checkpoint.version = 99;
    let mut stored = journal.clone();
    stored.store_checkpoint(&checkpoint).expect("store");
    let reason = corrupt_snapshot(builder().recover_core(&stored));
    assert!(reason.contains("version 99"), "{reason}");
    let reason = corrupt_snapshot(builder().recover_core_from(Some(checkpoint), &[]));
    assert!(reason.contains("version 99"), "{reason}");
}

#[test]
fn a_checkpoint_counting_records_from_zero_is_corrupt_and_nothing_is_built() {
    let (journal, _, _) = busy_journal();
    let mut checkpoint = journal.load_checkpoint().expect("load").expect("stored");
    checkpoint.journal_next = 0;
    let reason = corrupt_snapshot(builder().recover_core_from(Some(checkpoint), journal.records()));
    assert!(reason.contains("journal_next 0"), "{reason}");
}

// ----- 8. failed commands -----------------------------------------------------------

#[test]
fn a_command_that_fails_records_nothing() {
    let mut core = builder().journaled().build_core();
    core.register_agent(agent(1, 1), at(1)).expect("register");
    assigned(core.assign(task(1), at(1)).expect("task 1"));
    assert_eq!(core.drain_records().len(), 2);
    let next = core.journal_next();

    let failures = [
        core.cancel(tid(99), at(1)).err(),
        core.assign(task(1), at(1)).err(),
        core.complete(tid(99), true, None, at(1)).err(),
        core.register_agent(agent(1, 1), at(1)).err(),
        core.register_agent(agent(2, 1), at(0)).err(),
        core.set_mode(SystemMode::SafeMode, at(0)).err(),
        core.handle_timeout(at(0)).err(),
    ];
    for (i, e) in failures.iter().enumerate() {
        assert!(e.is_some(), "command {i} failed");
    }
    assert!(matches!(
        failures[0],
        Some(CoordinatorError::UnknownTask { .. })
    ));
    assert!(matches!(
        failures[1],
        Some(CoordinatorError::DuplicateTask { .. })
    ));
    assert!(matches!(
        failures[6],
        Some(CoordinatorError::TimeWentBack { .. })
    ));
    assert_eq!(core.journal_next(), next);
    assert!(core.drain_records().is_empty());
    let mut journal = MemoryJournal::new();
    assert_eq!(core.write_journal(&mut journal), Ok(0));
}

// ----- 9-10. what a checkpoint keeps ------------------------------------------------

/// A core built by `b` whose predictor learned from five `edit` tasks reporting 3
/// cpus each (they asked for one).
fn learned_core(b: CoordinatorBuilder) -> Core {
    let mut core = b.build_core();
    core.register_agent(agent(1, 1), at(0)).expect("register");
    for id in 1..=5 {
        assigned(core.assign(task(id), at(id)).expect("assign"));
        core.complete(tid(id), true, Some(r("cpu=3")), at(id))
            .expect("complete");
    }
    core
}

/// The resources the next `edit` task gets on `core`.
fn next_prediction(core: &mut Core) -> Resources {
    assigned(core.assign(task(100), at(10)).expect("task 100")).resources
}

/// The bug the simulation found when the journal was written: a checkpoint did not
/// hold what the predictor had learned, so a coordinator restored from it predicted
/// from nothing (the request), queued a task the live one had placed, and replaying
/// the journal after it diverged.
#[test]
fn a_checkpoint_keeps_what_the_predictor_learned() {
    let mut live = learned_core(builder());
    let checkpoint = live.snapshot();
    assert!(
        json(&checkpoint).contains("\"predictor\":\"percentile\""),
        "the checkpoint names what it holds"
    );
    let mut restored = builder().restore_core(checkpoint).expect("restore");
    let learned = next_prediction(&mut live);
    assert_ne!(learned, r("cpu=1"), "the live core learned");
    assert_eq!(next_prediction(&mut restored), learned);
}

#[test]
fn a_checkpoint_keeps_what_an_ewma_predictor_learned() {
    let mut live = learned_core(builder().predictor(EwmaPredictor::default()));
    let checkpoint = live.snapshot();
    let mut restored = builder()
        .predictor(EwmaPredictor::default())
        .restore_core(checkpoint)
        .expect("restore");
    let learned = next_prediction(&mut live);
    assert_ne!(learned, r("cpu=1"), "the live core learned");
    assert_eq!(next_prediction(&mut restored), learned);
}

#[test]
fn a_predictor_that_cannot_take_back_what_a_checkpoint_learned_is_refused() {
    let checkpoint = learned_core(builder()).snapshot();
    let reason = corrupt_snapshot(
        builder()
            .predictor(StaticPredictor::new())
            .restore_core(checkpoint.clone()),
    );
    assert!(reason.contains("percentile"), "{reason}");
    // An EWMA predictor cannot take a percentile predictor's histograms either.
    let reason = corrupt_snapshot(
        builder()
            .predictor(EwmaPredictor::default())
            .restore_core(checkpoint),
    );
    assert!(reason.contains("percentile"), "{reason}");
}

/// A host that upgrades keeps its last checkpoint, written before the journal: it has
/// neither `journal_next` nor `predictor`, and restores as the start of a journal.
#[test]
fn a_checkpoint_from_before_the_journal_restores_at_the_first_record() {
    let mut core = builder().build_core();
    core.register_agent(agent(1, 1), at(0)).expect("register");
    assigned(core.assign(task(1), at(0)).expect("task 1"));
    let mut old = serde_json::to_value(core.snapshot()).expect("snapshot serializes");
    let fields = old.as_object_mut().expect("an object");
    assert!(fields.remove("journal_next").is_some());
    assert!(fields.remove("predictor").is_some());
    // Written by the version of the day, 4 (5 keeps running tasks' duties apart, 6
    // failed ones).
    assert_eq!(fields.get("version"), Some(&Value::from(6)));
    fields.insert("version".into(), Value::from(4));
    let old: CoordinatorSnapshot = serde_json::from_value(old).expect("reads back");

    let mut restored = builder().journaled().restore_core(old).expect("restore");
    assert_eq!(restored.journal_next(), 1);
    assert!(restored.assignment(tid(1)).is_some());
    restored
        .complete(tid(1), true, None, at(1))
        .expect("complete");
    let records = restored.drain_records();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
}

/// Found while writing these tests: the checkpoint did not hold the latest time the
/// core had seen, so a core restored from it took commands timed before the crash.
#[test]
fn a_restored_core_refuses_times_before_its_checkpoint() {
    let mut core = builder().build_core();
    core.register_agent(agent(1, 1), at(10)).expect("register");
    let mut restored = builder()
        .journaled()
        .restore_core(core.snapshot())
        .expect("restore");
    assert_eq!(restored.last_now(), at(10));
    let err = restored.assign(task(1), at(5)).expect_err("time went back");
    assert!(
        matches!(err, CoordinatorError::TimeWentBack { .. }),
        "{err}"
    );
}

#[test]
fn a_coordinator_without_a_journal_says_so_instead_of_writing_nothing() {
    let mut core = builder().build_core();
    core.register_agent(agent(1, 2), at(0)).expect("register");
    let mut journal = MemoryJournal::new();
    assert_eq!(
        core.write_journal(&mut journal),
        Err(JournalError::NotJournaled)
    );
    assert_eq!(
        core.checkpoint(&mut journal),
        Err(JournalError::NotJournaled)
    );
    assert!(journal.records().is_empty());
    assert!(matches!(journal.load_checkpoint(), Ok(None)));
    // The facade says the same.
    let coordinator = builder().build();
    assert_eq!(
        coordinator.write_journal(&mut journal),
        Err(JournalError::NotJournaled)
    );
}
