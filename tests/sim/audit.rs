//! The audit log in the simulation world: the host seals the coordinator's decisions,
//! the alerting's pages and its own memory decisions into an [`AuditLog`], stores the
//! sealed entries in an append-only store (a `Vec`, synced now and then like the
//! journal's disk: what was not synced is lost at a crash), and feeds them to an
//! [`Incidents`] tracker, which it restores after a crash from its snapshot at the
//! last checkpoint plus the entries stored after it. The on-call closes every open
//! incident when the log records the return to normal mode.
//!
//! # How a crash neither loses nor repeats an event's entry
//!
//! The host audits an event only once the journal record that holds it is durable
//! (synced): an entry never records a decision that recovery undoes, and so the
//! event numbers of audited events are never handed out again (the core numbers
//! anew only the events of the journal's lost tail, which were never audited). Each
//! stored entry carries, as a column beside it, the event it came from and the last
//! event audited when it was sealed (`through`). After a crash the host resumes the
//! log from the last stored entry's head and audits again, from the events it still
//! holds (those drained and not yet durably audited), every event after that entry's
//! `through` that the journal kept, and drops those it lost: an event whose entry
//! was lost with the store's unsynced tail is audited again, once, and none twice.
//!
//! Alert pages and the host's own decisions are not journaled: they are audited as
//! they happen, and a crash may lose the unsynced tail of them.
//!
//! Invariants:
//! - `audit_chain_verifies`: after every step, [`verify`] over the entries stored
//!   since the last verified head, anchored at it, succeeds and ends at the log's
//!   head (a head kept apart, so a tail cut off shows too); at a seed's end the whole
//!   store verifies from genesis.
//! - `audit_records_each_event_once`: the events entries come from rise strictly, in
//!   the store's order; at a seed's end they are exactly the events drained from the
//!   core that make an entry, the journal kept, and the host audited.
//! - `tamper_is_located`: a copy of the last stored entries with one modified,
//!   re-sealed, dropped, swapped with the next or repeated fails [`verify`] at the
//!   entry where it was tampered with (a drop or a re-seal of the last entry verifies,
//!   and only the head kept apart shows it).
//! - `incidents_snapshot_restores`: after a crash, the tracker's snapshot at the
//!   last checkpoint restores ([`Incidents::restore`] refuses only what no tracker
//!   writes).
//! - `incidents_are_a_fold_of_the_log`: at a seed's end, a new tracker fed the whole
//!   store holds exactly what the host's tracker holds.

use std::collections::VecDeque;
use std::time::Duration;

use concord::Timestamp;
use concord::alert::Notification;
use concord::audit::{
    AuditConfig, AuditEntry, AuditError, AuditLog, ChainHead, IncidentConfig, Incidents,
    IncidentsSnapshot, SealedEntry, entries_from_notification, entry_from_event, verify,
};
use concord::coordinator::{Decider, Event};
use concord::policy::SystemMode;

use super::{Failure, Rng, World};

/// The tracker the world keeps: small, so that its snapshot at every checkpoint is
/// cheap.
fn incident_config() -> IncidentConfig {
    IncidentConfig::default()
        .with_lookback_entries(32)
        .with_max_timeline(64)
        .with_closed_history(8)
}

/// The log keeps no recent entries: the store has them.
fn audit_config() -> AuditConfig {
    AuditConfig::default().with_recent(0)
}

/// The columns the host keeps beside each stored entry.
struct Columns {
    /// The event it came from.
    event: Option<u64>,
    /// The last event audited when it was sealed.
    through: u64,
}

/// An event drained from the core, as the audit needs it: its number and time, and
/// the entry it makes (made once, when it is drained).
struct Pending {
    seq: u64,
    at: Timestamp,
    entry: Option<AuditEntry>,
}

/// The host's audit log, its store and its incident tracker.
pub struct SimAudit {
    /// The audit's own random numbers, so that the coordinator's world draws the same
    /// numbers with the audit or without.
    rng: Rng,
    log: AuditLog,
    incidents: Incidents,
    /// The tracker at the last checkpoint (the store was synced then).
    incidents_saved: Option<IncidentsSnapshot>,
    store: Vec<SealedEntry>,
    /// Beside each of `store`.
    columns: Vec<Columns>,
    /// How many of `store` are durable.
    synced: usize,
    /// How many of `store` were verified, and the head after them.
    verified: usize,
    verified_head: ChainHead,
    /// Events drained from the core whose records are not durable yet, in order.
    waiting: VecDeque<Pending>,
    /// Events audited whose entries are not durable yet: audited again if a crash
    /// loses them.
    unsynced: Vec<Pending>,
    /// The last event audited.
    audited: u64,
    /// The last event an entry came from.
    last_event_entry: u64,
    /// The events drained from the core that make an entry and that the journal has
    /// not lost, in order: what the store's entries must come from.
    expected: Vec<u64>,
}

impl SimAudit {
    pub fn new(seed: u64) -> SimAudit {
        SimAudit {
            // "audit" in ASCII: a stream of its own, different from the world's.
            rng: Rng::new(seed ^ 0x0061_7564_6974),
            log: AuditLog::new(audit_config()),
            incidents: Incidents::new(incident_config()),
            incidents_saved: None,
            store: Vec::new(),
            columns: Vec::new(),
            synced: 0,
            verified: 0,
            verified_head: ChainHead::GENESIS,
            waiting: VecDeque::new(),
            unsynced: Vec::new(),
            audited: 0,
            last_event_entry: 0,
            expected: Vec::new(),
        }
    }

    fn head(&self) -> ChainHead {
        self.store
            .last()
            .map_or(ChainHead::GENESIS, SealedEntry::head)
    }

    /// The store syncs: every entry so far is durable, and so is every event audited.
    fn sync(&mut self) {
        self.synced = self.store.len();
        self.unsynced.clear();
    }
}

/// Where `verify` says a chain breaks: the fields of [`AuditError`] that locate it,
/// or a chain that verifies to another head than the one kept apart (what no chain
/// shows on its own: its last entry dropped, or re-sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    Modified {
        index: usize,
        seq: u64,
    },
    BrokenLink {
        index: usize,
        seq: u64,
    },
    Missing {
        index: usize,
        expected: u64,
        found: u64,
    },
    Reordered {
        index: usize,
        found: u64,
        expected: u64,
        expected_at: usize,
    },
    Inserted {
        index: usize,
        seq: u64,
    },
    OtherHead {
        seq: u64,
    },
}

impl Break {
    /// Where `result` says the chain breaks, given the head kept apart.
    fn of(result: &Result<ChainHead, AuditError>, head: ChainHead) -> Option<Break> {
        Some(match *result {
            Err(AuditError::Modified { index, seq, .. }) => Break::Modified { index, seq },
            Err(AuditError::BrokenLink { index, seq, .. }) => Break::BrokenLink { index, seq },
            Err(AuditError::Missing {
                index,
                expected,
                found,
            }) => Break::Missing {
                index,
                expected,
                found,
            },
            Err(AuditError::Reordered {
                index,
                found,
                expected,
                expected_at,
            }) => Break::Reordered {
                index,
                found,
                expected,
                expected_at,
            },
            Err(AuditError::Inserted { index, seq }) => Break::Inserted { index, seq },
            Ok(h) if h != head => Break::OtherHead { seq: h.seq },
            _ => return None,
        })
    }
}

impl World {
    /// An event drained from the core: audited once its record is durable.
    pub(super) fn audit_event(&mut self, e: &Event) {
        let entry = entry_from_event(e);
        if entry.is_some() {
            self.audit.expected.push(e.seq);
        }
        self.audit.waiting.push_back(Pending {
            seq: e.seq,
            at: e.at,
            entry,
        });
    }

    /// A notification the alerting sent: audited as it happens.
    pub(super) fn audit_notification(&mut self, n: &Notification) -> Result<(), Failure> {
        for entry in entries_from_notification(n) {
            self.audit_append(entry, n.at, None)?;
        }
        Ok(())
    }

    /// A decision of the host's own (the memory procedure's): audited as it happens.
    pub(super) fn audit_host(&mut self, entry: AuditEntry) -> Result<(), Failure> {
        self.audit_append(entry, self.now, None)
    }

    /// After the journal was written (and maybe synced): audits the events whose
    /// records are durable now; the audit store syncs now and then.
    pub(super) fn audit_persist(&mut self) -> Result<(), Failure> {
        self.audit_catch_up()?;
        if self.audit.rng.chance(50) {
            self.audit.sync();
        }
        Ok(())
    }

    /// At a checkpoint: the store syncs, and the tracker is saved beside the
    /// checkpoint (a crash restores it and replays the entries stored after it).
    pub(super) fn audit_checkpoint(&mut self) -> Result<(), Failure> {
        self.audit_catch_up()?;
        self.audit.sync();
        self.audit.incidents_saved = Some(self.audit.incidents.snapshot());
        Ok(())
    }

    fn audit_catch_up(&mut self) -> Result<(), Failure> {
        let durable = self.storage.durable_events();
        while self.audit.waiting.front().is_some_and(|e| e.seq <= durable) {
            let e = self.audit.waiting.pop_front().expect("just seen");
            self.audit_one(e)?;
        }
        Ok(())
    }

    /// Audits one event (it may make no entry: bookkeeping is not a decision).
    fn audit_one(&mut self, e: Pending) -> Result<(), Failure> {
        self.audit.audited = e.seq;
        if let Some(entry) = &e.entry {
            self.audit_append(entry.clone(), e.at, Some(e.seq))?;
        }
        self.audit.unsynced.push(e);
        Ok(())
    }

    /// Seals `entry`, feeds the tracker, and stores it with its columns. When the
    /// system is back in normal mode the on-call closes every open incident.
    fn audit_append(
        &mut self,
        entry: AuditEntry,
        at: Timestamp,
        event: Option<u64>,
    ) -> Result<(), Failure> {
        let normal_again = matches!(
            entry,
            AuditEntry::ModeChange {
                to: SystemMode::Normal,
                ..
            }
        );
        let a = &mut self.audit;
        if let Err(e) = a.incidents.record(&mut a.log, entry, at) {
            return Err(self.fail("incidents_are_a_fold_of_the_log", e.to_string()));
        }
        self.audit_store(event)?;
        if normal_again {
            let a = &mut self.audit;
            let open: Vec<_> = a.incidents.open_incidents().map(|i| i.id()).collect();
            for id in open {
                let a = &mut self.audit;
                let closed =
                    a.incidents
                        .close(&mut a.log, id, Decider::Human, "normal mode again", at);
                if let Err(e) = closed {
                    return Err(self.fail("incidents_are_a_fold_of_the_log", e.to_string()));
                }
            }
            self.audit_store(None)?;
        }
        Ok(())
    }

    /// Drains the log into the store.
    fn audit_store(&mut self, event: Option<u64>) -> Result<(), Failure> {
        if let Some(seq) = event {
            if seq <= self.audit.last_event_entry {
                return Err(self.fail(
                    "audit_records_each_event_once",
                    format!(
                        "an entry for event {seq} after one for event {}",
                        self.audit.last_event_entry
                    ),
                ));
            }
            self.audit.last_event_entry = seq;
        }
        let a = &mut self.audit;
        let through = a.audited;
        for sealed in a.log.drain() {
            a.store.push(sealed);
            a.columns.push(Columns { event, through });
        }
        Ok(())
    }

    /// After a step: the entries stored since the last verified head verify from it,
    /// and end at the log's head.
    pub(super) fn audit_check(&mut self) -> Result<(), Failure> {
        let a = &self.audit;
        let new = &a.store[a.verified..];
        if new.is_empty() {
            return Ok(());
        }
        let verified = verify(new, Some(a.verified_head));
        let count = new.len() as u64;
        self.report.checks += 1;
        match verified {
            Ok(head) if head == self.audit.log.head() => {
                self.report.audit_entries_verified += count;
                self.audit.verified = self.audit.store.len();
                self.audit.verified_head = head;
                Ok(())
            }
            other => Err(self.fail(
                "audit_chain_verifies",
                format!(
                    "entries from #{}: {other:?}, the log's head {:?}",
                    self.audit.verified_head.seq + 1,
                    self.audit.log.head()
                ),
            )),
        }
    }

    /// Audit's share of a step: now and then, a tamper with a copy of the last entries
    /// stored, which `verify` must locate.
    pub(super) fn audit_step(&mut self) -> Result<(), Failure> {
        if self.faults_on && self.audit.rng.chance(2) {
            self.tamper_with_a_copy()?;
        }
        Ok(())
    }

    /// Tampers with a copy of the last entries stored (2 to 16 of them), and checks
    /// that `verify`, anchored at the head before them, says where.
    fn tamper_with_a_copy(&mut self) -> Result<(), Failure> {
        let a = &mut self.audit;
        let n = a.store.len();
        if n < 2 {
            return Ok(());
        }
        let len = 2 + a.rng.below(n.min(16) as u64 - 1) as usize;
        let start = n - len;
        let anchor = match start {
            0 => ChainHead::GENESIS,
            s => a.store[s - 1].head(),
        };
        let mut copy = a.store[start..].to_vec();
        let head = a.head();
        let i = a.rng.below(len as u64) as usize;
        let last = i + 1 == len;
        let seq = copy[i].seq;
        let forged = AuditEntry::note("intruder", "nothing happened here");
        let (what, expected) = match a.rng.below(6) {
            0 => {
                copy[i].at += Duration::from_nanos(1);
                ("had its time moved", Break::Modified { index: i, seq })
            }
            1 => {
                copy[i].entry = forged;
                ("was rewritten", Break::Modified { index: i, seq })
            }
            2 => {
                copy[i].entry = forged;
                copy[i].hash = copy[i].computed_hash();
                let expected = if last {
                    Break::OtherHead { seq }
                } else {
                    Break::BrokenLink {
                        index: i + 1,
                        seq: seq + 1,
                    }
                };
                ("was rewritten and sealed again", expected)
            }
            3 => {
                copy.remove(i);
                let expected = if last {
                    Break::OtherHead { seq: seq - 1 }
                } else {
                    Break::Missing {
                        index: i,
                        expected: seq,
                        found: seq + 1,
                    }
                };
                ("was dropped", expected)
            }
            4 => {
                // The last swaps with the one before it.
                let i = i.min(len - 2);
                let seq = copy[i].seq;
                copy.swap(i, i + 1);
                let expected = Break::Reordered {
                    index: i,
                    found: seq + 1,
                    expected: seq,
                    expected_at: i + 1,
                };
                ("was swapped with the next", expected)
            }
            _ => {
                copy.insert(i + 1, copy[i].clone());
                ("was repeated", Break::Inserted { index: i + 1, seq })
            }
        };
        let result = verify(&copy, Some(anchor));
        self.report.checks += 1;
        if Break::of(&result, head) != Some(expected) {
            return Err(self.fail(
                "tamper_is_located",
                format!(
                    "entry {i} of #{}..#{} {what}: verify says {result:?}, not {expected:?}",
                    anchor.seq + 1,
                    head.seq
                ),
            ));
        }
        self.report.tampers_located += 1;
        Ok(())
    }

    /// The coordinator crashed and its journal is durable up to event `durable`: the
    /// audit store loses its unsynced tail, the log resumes from the last entry
    /// stored, the tracker is restored, and the events whose entries were lost (and
    /// that the journal kept) are audited again. See the module's docs.
    pub(super) fn audit_crash(&mut self, durable: u64) -> Result<(), Failure> {
        let a = &mut self.audit;
        let unsynced = a.store.len() - a.synced;
        let keep = a.rng.below(unsynced as u64 + 1) as usize;
        a.store.truncate(a.synced + keep);
        a.columns.truncate(a.synced + keep);
        a.synced = a.store.len();
        self.report.audit_entries_lost += (unsynced - keep) as u64;
        if a.verified > a.store.len() {
            a.verified = a.store.len();
            a.verified_head = a.head();
        }
        a.log = match AuditLog::resume(a.head(), audit_config()) {
            Ok(log) => log,
            Err(e) => return Err(self.fail("audit_chain_verifies", e.to_string())),
        };
        let (incidents, from) = match a.incidents_saved.clone() {
            Some(s) => {
                let from = s.last_seq as usize;
                (Incidents::restore(s, incident_config()), from)
            }
            None => (Ok(Incidents::new(incident_config())), 0),
        };
        a.incidents = match incidents {
            Ok(incidents) => incidents,
            Err(e) => return Err(self.fail("incidents_snapshot_restores", e.to_string())),
        };
        for e in &a.store[from.min(a.store.len())..] {
            a.incidents.observe(e);
        }
        let through = a.columns.last().map_or(0, |c| c.through);
        a.last_event_entry = a.columns.iter().rev().find_map(|c| c.event).unwrap_or(0);
        let again: Vec<Pending> = a
            .unsynced
            .drain(..)
            .chain(a.waiting.drain(..))
            .filter(|e| e.seq > through && e.seq <= durable)
            .collect();
        a.audited = through;
        // The core numbers the lost events' successors anew.
        let kept = a.expected.partition_point(|s| *s <= durable);
        a.expected.truncate(kept);
        self.report.audit_events_again += again.len() as u64;
        for e in again {
            self.audit_one(e)?;
        }
        Ok(())
    }

    /// At a seed's end: the whole store verifies from genesis to the log's head, and
    /// the tracker is the fold of the store.
    pub(super) fn audit_end(&mut self) -> Result<(), Failure> {
        let a = &self.audit;
        let verified = verify(&a.store, Some(ChainHead::GENESIS));
        self.report.checks += 2;
        if verified.as_ref().ok() != Some(&a.log.head()) {
            return Err(self.fail(
                "audit_chain_verifies",
                format!(
                    "from genesis: {verified:?}, the log's head {:?}",
                    a.log.head()
                ),
            ));
        }
        let from: Vec<u64> = a.columns.iter().filter_map(|c| c.event).collect();
        let audited = a.expected.partition_point(|s| *s <= a.audited);
        if from != a.expected[..audited] {
            let missing: Vec<_> = a.expected[..audited]
                .iter()
                .filter(|s| !from.contains(s))
                .take(5)
                .collect();
            return Err(self.fail(
                "audit_records_each_event_once",
                format!(
                    "{} entries from events, {audited} expected; missing {missing:?}",
                    from.len()
                ),
            ));
        }
        let mut fold = Incidents::new(incident_config());
        for e in &a.store {
            fold.observe(e);
        }
        if fold.snapshot() != a.incidents.snapshot() {
            return Err(self.fail(
                "incidents_are_a_fold_of_the_log",
                format!(
                    "the fold holds {} open and {} closed incidents, the host's tracker {} and {}",
                    fold.open_incidents().len(),
                    fold.closed_incidents().len(),
                    a.incidents.open_incidents().len(),
                    a.incidents.closed_incidents().len()
                ),
            ));
        }
        Ok(())
    }
}
