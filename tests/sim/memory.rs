//! The agents' shared memory in the simulation world, and the memory corruption
//! procedure the host runs on it.
//!
//! Agents write their results to memory as they finish tasks (`task/<id>/result`)
//! and now and then a shared key (`shared/...`), and read keys back; the host keeps
//! the last [`KEEP_RESULTS`] results (it deletes the oldest), validates memory every
//! [`VALIDATE_EVERY`] and backs it up every [`BACKUP_EVERY`]. Faults: bits flip in a
//! stored value behind the guard's back ([`InMemoryStore::corrupt`]), and now and then
//! the memory service restarts and its guard's books are lost.
//!
//! When a read, a validation or a backup finds corruption, the host runs the memory
//! corruption procedure: stop writes (fence), back up the current state as evidence,
//! assess it (validate), and some minutes later restore from the last good backup,
//! validate again and resume writes. Agents that finish work meanwhile try to write,
//! and are refused.
//!
//! Invariants:
//! - `no_write_past_the_fence`: every write tried while fenced is refused with
//!   `Fenced`, counted once by the guard and by its fence, and leaves the store's
//!   contents as they were; the fence lifted counts exactly the writes it refused.
//! - `corruption_found_and_located`: a validation, a backup's suspect keys and the
//!   procedure's assessment name exactly the keys the world corrupted, each as
//!   altered; a read of a corrupted key is refused naming it, and a read of any other
//!   key returns what was last written.
//! - `restore_is_exact`: after a restore the store holds the backup's entries byte for
//!   byte, and validates clean.
//! - `corrupt_backup_refused`: a tampered copy of the good backup (a value, an entry
//!   dropped, its number) and the suspect evidence backup are refused, and the store
//!   is left untouched.
//! - `memory_holds_what_was_written`: after every write the key holds what was
//!   written, and at every validation the store holds what the host wrote, but for
//!   the bits the world flipped.
//! - `memory_recovers` (liveness): once faults stop, the procedure under way ends,
//!   the fence lifts and nothing is left corrupt.
//!
//! # What the world assumes about crashes
//!
//! Memory is the host's store, not the core's: a coordinator crash leaves the store,
//! the guard (its checksums and its fence) and the backups as they were, and a
//! procedure under way goes on across it, writes still stopped. That is a host whose
//! memory service runs apart from the coordinator's process. The guard's books are
//! not serde data, so when the memory service itself restarts (a fault the world
//! injects now and then) they are lost, and with them the fence: a new guard cannot
//! tell a corrupt value from a good one, nor a write made since the last backup from
//! a write behind its back (`Memory::open` would trust the corruption; the world
//! catches a host that does so at its next validation). So the host opens the new
//! guard fenced, before any agent can write, restores the last good backup, validates
//! it and only then resumes writes, losing what was written since that backup: a
//! restart during the procedure starts it again from its first step.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use concord::TaskId;
use concord::Timestamp;
use concord::audit::AuditEntry;
use concord::coordinator::Decider;
use concord::memory::{
    Backup, BackupId, Damage, Entries, InMemoryStore, Memory, MemoryError, MemoryStore, Retention,
    last_good_backup, prune_backups,
};
use futures::executor::block_on;

use super::{Failure, Rng, World};

/// The task results memory keeps: the host deletes the oldest beyond this, so that a
/// validation or a backup costs the same on a month's last day as on its first.
pub const KEEP_RESULTS: usize = 12;

/// How often the host validates memory.
pub const VALIDATE_EVERY: Duration = Duration::from_secs(20 * 60);

/// How often the host backs memory up (when it is not fenced).
pub const BACKUP_EVERY: Duration = Duration::from_secs(3600);

const SHARED_KEYS: [&str; 3] = ["shared/plan", "shared/config", "shared/notes"];

/// The procedure under way: the evidence backed up when writes stopped, when the
/// host restores, and how many writes the world tried under the fence.
struct Procedure {
    evidence: Backup,
    restore_at: Timestamp,
    refused: u64,
}

/// The host's memory: the store, its guard, the backups the host keeps, and what the
/// world knows of them.
pub struct SimMemory {
    /// Memory's own random numbers, so that the coordinator's world draws the same
    /// numbers with memory or without.
    rng: Rng,
    store: Arc<InMemoryStore>,
    guard: Memory,
    /// What the host wrote through the guard and the store holds, but for the keys
    /// in `corrupted`.
    written: Entries,
    /// The keys the world corrupted since they were last written or restored.
    corrupted: BTreeSet<String>,
    /// The tasks whose results memory holds, oldest first.
    results: BTreeSet<u64>,
    backups: Vec<Backup>,
    /// The highest backup number handed out: a restarted guard goes on from it.
    last_backup: u64,
    procedure: Option<Procedure>,
    next_validation: Timestamp,
    next_backup: Timestamp,
}

impl SimMemory {
    /// Empty memory, backed up once (so that a good backup always exists).
    pub fn new(seed: u64, now: Timestamp) -> SimMemory {
        let store = Arc::new(InMemoryStore::new());
        let guard = Memory::new(store.clone());
        let first = block_on(guard.backup(now)).expect("an empty store backs up");
        SimMemory {
            // "memory" in ASCII: a stream of its own, different from the world's.
            rng: Rng::new(seed ^ 0x6d65_6d6f_7279),
            store,
            guard,
            written: Entries::new(),
            corrupted: BTreeSet::new(),
            results: BTreeSet::new(),
            last_backup: first.id().get(),
            backups: vec![first],
            procedure: None,
            next_validation: now + VALIDATE_EVERY,
            next_backup: now + BACKUP_EVERY,
        }
    }

    /// What the store should hold: what was written, the first byte of each corrupted
    /// value flipped (what `InMemoryStore::corrupt` does).
    fn expected(&self) -> Entries {
        let mut out = self.written.clone();
        for key in &self.corrupted {
            if let Some(b) = out.get_mut(key).and_then(|v| v.first_mut()) {
                *b ^= 0xff;
            }
        }
        out
    }

    fn corrupted(&self) -> Vec<&str> {
        self.corrupted.iter().map(String::as_str).collect()
    }
}

fn result_key(task: u64) -> String {
    format!("task/{task}/result")
}

/// The task a result key names.
fn result_task(key: &str) -> Option<u64> {
    key.strip_prefix("task/")?
        .strip_suffix("/result")?
        .parse()
        .ok()
}

/// Damages a serialized copy of `good` so that its checksums no longer hold: a hex
/// digit of a value, an entry dropped, or its number. What it did.
fn tamper(good: &Backup, rng: &mut Rng) -> (Backup, &'static str) {
    let mut v = serde_json::to_value(good).expect("a backup serializes");
    let entries = v["entries"].as_array_mut().expect("entries");
    let what = match rng.below(3) {
        0 if !entries.is_empty() => {
            let i = rng.below(entries.len() as u64) as usize;
            let hex = entries[i]["value"].as_str().expect("hex").to_owned();
            let first = if hex.starts_with('0') { "1" } else { "0" };
            entries[i]["value"] = format!("{first}{}", &hex[1..]).into();
            "a value altered"
        }
        1 if !entries.is_empty() => {
            let i = rng.below(entries.len() as u64) as usize;
            entries.remove(i);
            "an entry dropped"
        }
        _ => {
            let id = v["id"].as_u64().expect("id");
            v["id"] = (id + 1).into();
            "its number changed"
        }
    };
    let tampered = serde_json::from_value(v).expect("still a backup's shape");
    (tampered, what)
}

impl World {
    /// Memory's share of a step: a fault now and then, an agent's read, the host's
    /// validation and backup when due, and the procedure's restore when due.
    pub(super) fn memory_step(&mut self) -> Result<(), Failure> {
        if self.faults_on && self.memory.rng.below(200) == 0 {
            self.corrupt_memory();
        }
        if self.faults_on && self.memory.rng.below(1000) == 0 {
            self.restart_memory()?;
        }
        if self.memory.rng.chance(10) {
            self.memory_read()?;
        }
        if self.memory.rng.chance(3) {
            let key = SHARED_KEYS[self.memory.rng.below(3) as usize];
            let value = format!("{key} as of {}", self.now).into_bytes();
            self.memory_write(key, Some(value))?;
        }
        if self.now >= self.memory.next_validation {
            self.memory.next_validation = self.now + VALIDATE_EVERY;
            self.validate_memory()?;
        }
        if self.now >= self.memory.next_backup && self.memory.procedure.is_none() {
            self.memory.next_backup = self.now + BACKUP_EVERY;
            self.back_up_memory()?;
        }
        if self
            .memory
            .procedure
            .as_ref()
            .is_some_and(|p| p.restore_at <= self.now)
        {
            self.restore_memory()?;
        }
        Ok(())
    }

    /// An agent finished `task`: it writes its result, and the host deletes the
    /// oldest results beyond what it keeps (a delete under the fence is refused too,
    /// and tried again at the next result).
    pub(super) fn memory_result(&mut self, task: TaskId) -> Result<(), Failure> {
        let id = task.get();
        let value = format!("{task} done at {}", self.now).into_bytes();
        if self.memory_write(&result_key(id), Some(value))? {
            self.memory.results.insert(id);
        }
        while self.memory.results.len() > KEEP_RESULTS {
            let oldest = *self.memory.results.first().expect("over the bound");
            if !self.memory_write(&result_key(oldest), None)? {
                break;
            }
            self.memory.results.remove(&oldest);
        }
        Ok(())
    }

    /// Puts `value` under `key` (deletes it for `None`) through the guard; whether it
    /// landed. Under the fence it must not: the store's contents stay as they were and
    /// the refusal is counted once.
    fn memory_write(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<bool, Failure> {
        let m = &mut self.memory;
        let write = |m: &SimMemory, value: Option<Vec<u8>>| match value {
            Some(v) => block_on(m.guard.put(key, v)),
            None => block_on(m.guard.delete(key)).map(drop),
        };
        if let Some(fence) = m.guard.fenced() {
            let before = m.store.snapshot();
            let refused_before = m.guard.refused_writes();
            let result = write(m, value);
            let refused = matches!(&result, Err(MemoryError::Fenced { key: k, .. }) if k == key);
            let counted = m.guard.refused_writes() == refused_before + 1
                && m.guard
                    .fenced()
                    .is_some_and(|f| f.refused == fence.refused + 1);
            let untouched = m.store.snapshot() == before;
            if let Some(p) = &mut m.procedure {
                p.refused += 1;
            }
            self.report.fenced_writes_refused += 1;
            self.report.checks += 1;
            if !(refused && counted && untouched) {
                return Err(self.fail(
                    "no_write_past_the_fence",
                    format!(
                        "a write of `{key}` under the fence: {result:?}, counted {counted}, \
                         store untouched {untouched}"
                    ),
                ));
            }
            return Ok(false);
        }
        let result = write(m, value.clone());
        if let Err(e) = result {
            return Err(self.fail("memory_holds_what_was_written", format!("`{key}`: {e}")));
        }
        match &value {
            Some(v) => m.written.insert(key.to_owned(), v.clone()),
            None => m.written.remove(key),
        };
        m.corrupted.remove(key);
        let held = block_on(m.store.get(key)).ok().flatten();
        self.report.memory_writes += 1;
        if held != value {
            return Err(self.fail(
                "memory_holds_what_was_written",
                format!("`{key}` holds {held:?} after a write of {value:?}"),
            ));
        }
        Ok(true)
    }

    /// Bits flip in a stored value that is not corrupt yet (flipping it again would
    /// undo the damage).
    fn corrupt_memory(&mut self) {
        let m = &mut self.memory;
        let intact: Vec<&String> = m
            .written
            .keys()
            .filter(|k| !m.corrupted.contains(*k))
            .collect();
        if intact.is_empty() {
            return;
        }
        let key = intact[m.rng.below(intact.len() as u64) as usize].clone();
        m.store.corrupt(&key);
        m.corrupted.insert(key.clone());
        self.report.memory_corruptions += 1;
        self.note(format!("memory: `{key}` corrupted behind the guard's back"));
    }

    /// An agent reads a key it knows was written: corrupt, it is refused and named;
    /// intact, it comes back as written. A corrupt read starts the procedure.
    fn memory_read(&mut self) -> Result<(), Failure> {
        let m = &mut self.memory;
        if m.written.is_empty() {
            return Ok(());
        }
        let i = m.rng.below(m.written.len() as u64) as usize;
        let (key, value) = m.written.iter().nth(i).expect("in range");
        let key = key.clone();
        let read = block_on(m.guard.get(&key));
        self.report.checks += 1;
        let corrupt = m.corrupted.contains(&key);
        let right = match &read {
            Err(MemoryError::Corrupt(c)) => corrupt && c.key == key && c.damage == Damage::Altered,
            Ok(Some(v)) => !corrupt && v == value,
            _ => false,
        };
        if !right {
            return Err(self.fail(
                "corruption_found_and_located",
                format!("a read of `{key}` (corrupted: {corrupt}) gave {read:?}"),
            ));
        }
        if corrupt {
            self.start_procedure("a read")?;
        }
        Ok(())
    }

    /// Validates memory: the report names exactly the corrupted keys, and the store
    /// holds what was written but for them.
    fn validate_memory(&mut self) -> Result<(), Failure> {
        let m = &self.memory;
        let report = block_on(m.guard.validate())
            .map_err(|e| self.fail("corruption_found_and_located", e.to_string()))?;
        self.report.checks += 2;
        let located = report.keys() == m.corrupted()
            && report.corrupt().iter().all(|c| c.damage == Damage::Altered);
        if !located {
            return Err(self.fail(
                "corruption_found_and_located",
                format!("validation found {report}; corrupted: {:?}", m.corrupted()),
            ));
        }
        let held = m.store.snapshot();
        if held != m.expected() {
            return Err(self.fail(
                "memory_holds_what_was_written",
                format!("the store holds {held:?}, the host wrote {:?}", m.written),
            ));
        }
        if !report.is_clean() {
            self.start_procedure("a validation")?;
        }
        Ok(())
    }

    /// Backs memory up: a clean backup joins those kept (the oldest pruned); one with
    /// suspect keys names exactly the corrupted ones, and starts the procedure.
    fn back_up_memory(&mut self) -> Result<(), Failure> {
        let backup = block_on(self.memory.guard.backup(self.now))
            .map_err(|e| self.fail("memory_holds_what_was_written", e.to_string()))?;
        let m = &mut self.memory;
        m.last_backup = backup.id().get();
        self.report.checks += 1;
        if backup.suspect() != m.corrupted().as_slice() {
            let suspect = backup.suspect().to_vec();
            return Err(self.fail(
                "corruption_found_and_located",
                format!(
                    "suspect {suspect:?}; corrupted {:?}",
                    self.memory.corrupted()
                ),
            ));
        }
        if backup.is_clean() {
            m.backups.push(backup);
            let keep = Retention::default()
                .with_keep_last(2)
                .with_max_age(BACKUP_EVERY * 3);
            prune_backups(&mut m.backups, &keep, self.now);
            Ok(())
        } else {
            self.start_procedure("a backup")
        }
    }

    /// The procedure's first steps: stop writes, back up the current state as
    /// evidence, assess it. The restore follows some minutes later.
    fn start_procedure(&mut self, found_by: &str) -> Result<(), Failure> {
        if self.memory.procedure.is_some() {
            return Ok(());
        }
        let now = self.now;
        let m = &mut self.memory;
        let stopped = block_on(m.guard.fence("memory corruption", now));
        let evidence = block_on(m.guard.backup(now));
        let report = block_on(m.guard.validate());
        self.report.checks += 2;
        let (evidence, report) = match (stopped, evidence, report) {
            (true, Ok(e), Ok(r)) => (e, r),
            (stopped, e, r) => {
                return Err(self.fail(
                    "corruption_found_and_located",
                    format!("fence (newly: {stopped}), evidence {e:?}, assessment {r:?}"),
                ));
            }
        };
        m.last_backup = evidence.id().get();
        let corrupted = m.corrupted();
        if evidence.suspect() != corrupted.as_slice() || report.keys() != corrupted {
            let corrupted = format!("{corrupted:?}");
            return Err(self.fail(
                "corruption_found_and_located",
                format!(
                    "evidence suspects {:?}, assessment {report}; corrupted {corrupted}",
                    evidence.suspect()
                ),
            ));
        }
        let restore_at = now + Duration::from_secs(60 * (1 + m.rng.below(10)));
        m.procedure = Some(Procedure {
            evidence,
            restore_at,
            refused: 0,
        });
        let reason = format!("{report}, found by {found_by}");
        self.note(format!("memory: writes stopped at {now}: {reason}"));
        let entry = AuditEntry::decision(Decider::Orchestrator, "memory", "stop writes", reason);
        self.report.memory_corruptions_found += 1;
        self.audit_host(entry)
    }

    /// The procedure's last steps: the suspect evidence and a tampered copy of the
    /// good backup refused, the good backup restored exactly, validated clean, writes
    /// resumed.
    fn restore_memory(&mut self) -> Result<(), Failure> {
        let Some(p) = self.memory.procedure.take() else {
            return Ok(());
        };
        let refused = block_on(self.memory.guard.restore(&p.evidence));
        self.refused_untouched(
            &refused,
            "the suspect evidence",
            matches!(refused, Err(MemoryError::SuspectBackup { .. })),
        )?;
        let good = self.restore_last_good()?;
        let lifted = self.memory.guard.unfence();
        self.report.checks += 1;
        if lifted.as_ref().is_none_or(|f| f.refused != p.refused) {
            return Err(self.fail(
                "no_write_past_the_fence",
                format!(
                    "the fence lifted {lifted:?}; the world tried {} writes",
                    p.refused
                ),
            ));
        }
        self.note(format!(
            "memory: restored from {} at {}, writes resumed ({} refused meanwhile)",
            good.id(),
            self.now,
            p.refused
        ));
        let entry = AuditEntry::decision(
            Decider::Orchestrator,
            "memory",
            format!("restore {}, resume writes", good.id()),
            format!("{} writes refused while stopped", p.refused),
        );
        self.audit_host(entry)
    }

    /// Restores the last good backup (after a tampered copy of it is refused, half the
    /// time) and checks the store holds it exactly and validates clean. The world's
    /// books follow the store.
    fn restore_last_good(&mut self) -> Result<Backup, Failure> {
        let Some(good) = last_good_backup(&self.memory.backups).cloned() else {
            return Err(self.fail("restore_is_exact", "no good backup kept"));
        };
        if self.memory.rng.chance(50) {
            let (tampered, what) = tamper(&good, &mut self.memory.rng);
            let refused = block_on(self.memory.guard.restore(&tampered));
            let typed = matches!(refused, Err(MemoryError::CorruptBackup { id, .. }) if id == tampered.id());
            self.refused_untouched(&refused, what, typed)?;
            self.report.corrupt_backups_refused += 1;
        }
        let m = &mut self.memory;
        let restored = block_on(m.guard.restore(&good));
        let entries: Entries = good
            .entries()
            .iter()
            .map(|e| (e.key().to_owned(), e.value().to_vec()))
            .collect();
        let held = m.store.snapshot();
        let clean = block_on(m.guard.validate()).map(|r| r.is_clean());
        self.report.checks += 1;
        if restored.is_err() || held != entries || clean.as_ref().ok() != Some(&true) {
            return Err(self.fail(
                "restore_is_exact",
                format!(
                    "restore {}: {restored:?}; the store holds {held:?}, the backup {entries:?}; \
                     clean: {clean:?}",
                    good.id()
                ),
            ));
        }
        m.results = entries.keys().filter_map(|k| result_task(k)).collect();
        m.written = entries;
        m.corrupted.clear();
        self.report.memory_restores += 1;
        Ok(good)
    }

    /// A restore of a bad backup must have been refused as `typed` says, and left the
    /// store as it was.
    fn refused_untouched(
        &mut self,
        result: &Result<(), MemoryError>,
        what: &str,
        typed: bool,
    ) -> Result<(), Failure> {
        self.report.checks += 1;
        let untouched = self.memory.store.snapshot() == self.memory.expected();
        if typed && untouched {
            return Ok(());
        }
        Err(self.fail(
            "corrupt_backup_refused",
            format!("a restore of a backup with {what}: {result:?}; store untouched: {untouched}"),
        ))
    }

    /// The memory service restarts: the guard's books and fence are lost. The host
    /// opens a new guard fenced before anything writes, restores the last good
    /// backup, and resumes (see the module's docs).
    fn restart_memory(&mut self) -> Result<(), Failure> {
        let m = &mut self.memory;
        let next = BackupId::new(m.last_backup + 1);
        m.guard = Memory::new(m.store.clone()).with_next_backup_id(next);
        let stopped = block_on(m.guard.fence("memory service restarted", self.now));
        let in_procedure = m.procedure.take().is_some();
        self.report.memory_restarts += 1;
        if !stopped {
            return Err(self.fail("no_write_past_the_fence", "a new guard was fenced already"));
        }
        let good = self.restore_last_good()?;
        let lifted = self.memory.guard.unfence();
        if lifted.as_ref().is_none_or(|f| f.refused != 0) {
            return Err(self.fail("no_write_past_the_fence", format!("{lifted:?}")));
        }
        self.note(format!(
            "memory service restarted at {}{}: {} restored",
            self.now,
            if in_procedure {
                " during the procedure"
            } else {
                ""
            },
            good.id()
        ));
        self.audit_host(AuditEntry::decision(
            Decider::Orchestrator,
            "memory",
            format!("restore {} after a restart", good.id()),
            "the guard's checksums were lost with the memory service",
        ))
    }

    /// At a seed's end: a last validation (which finds what no read found yet). In
    /// liveness mode, where faults have stopped, the procedure under way then
    /// finishes: the fence lifts and nothing is left corrupt.
    pub(super) fn memory_end(&mut self) -> Result<(), Failure> {
        self.validate_memory()?;
        if self.mode == super::Mode::Liveness {
            if let Some(p) = &mut self.memory.procedure {
                p.restore_at = self.now;
                self.restore_memory()?;
            }
            if self.memory.guard.fenced().is_some() || !self.memory.corrupted.is_empty() {
                return Err(self.fail(
                    "memory_recovers",
                    format!(
                        "fence {:?}, corrupted {:?} after faults stopped",
                        self.memory.guard.fenced(),
                        self.memory.corrupted
                    ),
                ));
            }
        }
        Ok(())
    }
}
