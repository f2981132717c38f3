//! The journal: every command the core carried out, as data, so that a host that
//! loses its process rebuilds exactly the state it had from its last checkpoint and
//! the [`Record`]s after it.
//!
//! # Why commands, not only events
//!
//! The core is deterministic: the same commands at the same times, from the same
//! checkpoint and with the same configuration, make the same state and the same
//! events. So a record keeps the command (with everything it was given: the task,
//! the usage an agent reported, a human's decision) and the events it made. Recovery
//! carries the commands out again and checks that each makes the events its record
//! holds: a journal read back wrong, or a coordinator rebuilt with other policies or
//! another predictor state, is caught at the record where it first shows
//! ([`JournalError::Diverged`]) instead of running on from a state that never was.
//! Rebuilding from events alone would need every internal choice (queue order,
//! reservations, backfill) to be an event; carrying the commands out again needs
//! none of it.
//!
//! # Use
//!
//! Build the core with [`CoordinatorBuilder::journaled`](super::CoordinatorBuilder::journaled);
//! after each command (or batch of commands), [`Core::write_journal`] appends what is
//! pending to the host's [`Journal`], and from time to time [`Core::checkpoint`]
//! stores a checkpoint. After a crash,
//! [`CoordinatorBuilder::recover_core`](super::CoordinatorBuilder::recover_core)
//! rebuilds the core from the journal.
//!
//! ```
//! use concord::coordinator::{Coordinator, MemoryJournal};
//! use concord::task::Task;
//! use concord::{AgentId, AgentProfile, TaskId, Timestamp};
//!
//! let mut journal = MemoryJournal::new();
//! let mut core = Coordinator::builder().journaled().build_core();
//! let t0 = Timestamp::from_secs(0);
//! core.register_agent(AgentProfile::new(AgentId::new(1), "worker"), t0)?;
//! core.checkpoint(&mut journal)?;
//! core.assign(Task::new(TaskId::new(7), "build", "build the service"), t0)?;
//! core.write_journal(&mut journal)?;
//! let before = core.snapshot();
//!
//! // The process dies here. The next one rebuilds the core from the journal:
//! let recovered = Coordinator::builder().recover_core(&journal)?;
//! assert!(recovered.assignment(TaskId::new(7)).is_some());
//! assert_eq!(format!("{:?}", recovered.snapshot()), format!("{before:?}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The host writes a journal over its own storage (a file, SQLite, etcd) by
//! implementing [`Journal`]; [`MemoryJournal`] is the in-memory one, for tests and
//! for hosts that replicate it themselves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentProfile, AgentStatus};
use crate::clock::Timestamp;
use crate::conflict::{ConflictId, HumanDecision};
use crate::id::{AgentId, TaskId};
use crate::policy::SystemMode;
use crate::resource::Resources;
use crate::task::Task;

use super::core::Core;
use super::event::{Decider, Event};
use super::snapshot::CoordinatorSnapshot;

/// One command the core carried out, with everything it was given (but `now`, which
/// the [`Record`] holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// [`Core::register_agent`].
    RegisterAgent {
        /// The agent's profile.
        profile: AgentProfile,
    },
    /// [`Core::deregister_agent`].
    DeregisterAgent {
        /// The agent.
        agent: AgentId,
    },
    /// [`Core::set_agent_capacity`].
    SetAgentCapacity {
        /// The agent.
        agent: AgentId,
        /// Its new capacity.
        capacity: Resources,
    },
    /// [`Core::set_agent_status`].
    SetAgentStatus {
        /// The agent.
        agent: AgentId,
        /// Its new status.
        status: AgentStatus,
    },
    /// [`Core::release`].
    Release {
        /// The task.
        task: TaskId,
    },
    /// [`Core::set_mode`].
    SetMode {
        /// The new mode.
        mode: SystemMode,
    },
    /// [`Core::assign`] and [`Core::assign_batch`] (and the workflow executor's
    /// batches).
    AssignBatch {
        /// The group (workflow run) the batch belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<Arc<str>>,
        /// The tasks, as given.
        tasks: Vec<Task>,
        /// Whether a task whose claims collide waits behind the holder (the
        /// executor's batches) or is handed back (`false`).
        wait: bool,
    },
    /// [`Core::complete`].
    Complete {
        /// The task.
        task: TaskId,
        /// Whether it succeeded.
        success: bool,
        /// What it used, as the agent reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Resources>,
    },
    /// [`Core::cancel`].
    Cancel {
        /// The task.
        task: TaskId,
    },
    /// [`Core::decide`].
    Decide {
        /// The conflict.
        conflict: ConflictId,
        /// The decision.
        decision: HumanDecision,
        /// Who decided.
        by: Decider,
    },
    /// [`Core::handle_timeout`]: time passed.
    Tick,
    /// [`Core::forget_closed_conflicts`].
    ForgetClosedConflicts {
        /// Conflicts closed before this time are forgotten.
        closed_before: Timestamp,
    },
    /// [`Core::drive`].
    Drive {
        /// The group.
        group: Arc<str>,
    },
    /// [`Core::hand_back`].
    HandBack {
        /// The task.
        task: TaskId,
    },
    /// [`Core::forget_group`].
    ForgetGroup {
        /// The group.
        group: Arc<str>,
    },
    /// [`Core::quarantine`].
    Quarantine {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: String,
    },
    /// [`Core::release_quarantine`].
    ReleaseQuarantine {
        /// The agent.
        agent: AgentId,
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
    },
    /// [`Core::report_security_breach`].
    ReportSecurityBreach {
        /// The affected agents.
        agents: Vec<AgentId>,
        /// What the host said.
        reason: String,
    },
    /// [`Core::stop_communications`].
    StopCommunications {
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
    },
    /// [`Core::resume_communications`].
    ResumeCommunications {
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
    },
}

/// One entry of the journal: a command, when it was carried out, and the events it
/// made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The record's place in the journal, from 1, without gaps.
    pub seq: u64,
    /// The `now` the command was given.
    pub at: Timestamp,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
    /// The events it made, in order (the same the host drained).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// Where a host keeps the journal and its checkpoint: a file, a database, a
/// replicated log. The library does no I/O: it hands records and checkpoints to the
/// host's implementation and asks for them back.
///
/// # Contract
/// - `append` is a compare-and-set: it appends only when `expected` is the sequence
///   number the journal gives its next record, and then all of `records` or none
///   (one transaction), so that two writers can never both append.
/// - `read_from` returns the records from `from` on, in order; a record it cannot
///   read is [`JournalError::CorruptRecord`], after the good ones before it are
///   pushed onto `out` (a host may choose to recover up to them, with
///   [`CoordinatorBuilder::recover_from`](super::CoordinatorBuilder::recover_from),
///   and must then cut the corrupt record and those after it from its storage before
///   the coordinator appends: `Journal` has no call for that, as only the host knows
///   how its storage is cut).
/// - A checkpoint stored is the one `load_checkpoint` returns until the next is
///   stored; records before the checkpoint's [`journal_next`](CoordinatorSnapshot::journal_next)
///   may then be dropped.
/// - Records and checkpoints are serde data: store them in a format that reads every
///   value back exactly, floats included (serde_json needs its `float_roundtrip`
///   feature; binary formats such as bincode or postcard do), or recovery finds the
///   events differ ([`JournalError::Diverged`]).
pub trait Journal {
    /// Appends `records`, the first of which must be numbered `expected`, and the
    /// rest after it without gaps.
    ///
    /// # Errors
    /// [`JournalError::Conflict`] if the journal's next number is not `expected`;
    /// [`JournalError::Gap`] if the records are not numbered `expected`, `expected +
    /// 1`, ...; [`JournalError::Storage`] if the storage failed. Nothing is appended.
    fn append(&mut self, expected: u64, records: &[Record]) -> Result<(), JournalError>;

    /// Pushes the records numbered `from` and after onto `out`, in order.
    ///
    /// # Errors
    /// [`JournalError::CorruptRecord`] at the first record that cannot be read (the
    /// records before it are pushed); [`JournalError::Storage`].
    fn read_from(&self, from: u64, out: &mut Vec<Record>) -> Result<(), JournalError>;

    /// Stores `checkpoint` in place of the last one.
    ///
    /// # Errors
    /// [`JournalError::Gap`] if the checkpoint counts records the journal does not
    /// hold (append them first: see [`Core::checkpoint`]); [`JournalError::Storage`].
    fn store_checkpoint(&mut self, checkpoint: &CoordinatorSnapshot) -> Result<(), JournalError>;

    /// The last checkpoint stored, if any.
    ///
    /// # Errors
    /// [`JournalError::CorruptCheckpoint`] if it cannot be read;
    /// [`JournalError::Storage`].
    fn load_checkpoint(&self) -> Result<Option<CoordinatorSnapshot>, JournalError>;

    /// Drops the records the stored checkpoint already counts (those numbered before
    /// its [`journal_next`](CoordinatorSnapshot::journal_next)); returns how many. The
    /// daily cleanup calls it ([`maintenance::compact_journal`](crate::maintenance::compact_journal)).
    ///
    /// The default drops nothing and returns `Ok(0)`: a store that cannot compact
    /// keeps its records, which recovery skips anyway. Records after the checkpoint
    /// must never be dropped, nor the next record's number change.
    ///
    /// # Errors
    /// [`JournalError::Storage`] if the storage failed; then it holds the same
    /// records as before, or fewer of those the checkpoint counts.
    fn compact(&mut self) -> Result<usize, JournalError> {
        Ok(0)
    }
}

/// Why the journal refused, or why the core could not be rebuilt from it. When a
/// recovery returns one, nothing was built; when an append does, nothing was
/// appended and the records stay pending in the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Another writer appended first: the journal's next record is not the one this
    /// writer expected.
    #[error("journal conflict: expected to append record {expected}, the journal is at {actual}")]
    Conflict {
        /// The number this writer would have given its first record.
        expected: u64,
        /// The number the journal gives its next record.
        actual: u64,
    },
    /// Records are missing: a record or checkpoint names a number the journal has
    /// not reached, or records are not numbered one after another.
    #[error("journal gap: expected record {expected}, found {found}")]
    Gap {
        /// The number that should come next.
        expected: u64,
        /// The number found instead.
        found: u64,
    },
    /// A record cannot be read back (a torn write, a checksum mismatch, bytes that do
    /// not decode). To go on past it, recover up to it and cut it, and the records
    /// after it, from the storage (see [`CoordinatorBuilder::recover_core_from`](super::CoordinatorBuilder::recover_core_from)).
    #[error("journal record {seq} is corrupt: {reason}")]
    CorruptRecord {
        /// Its number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint cannot be read back, or is not consistent.
    #[error("journal checkpoint is corrupt: {reason}")]
    CorruptCheckpoint {
        /// What is wrong.
        reason: String,
    },
    /// Carrying out a record's command again did not make the events it holds: the
    /// record was altered, or the core was rebuilt with another configuration
    /// (analyzer, predictor state, assigner, policies, ladder) than the one that
    /// wrote it.
    #[error("journal record {seq} diverged on replay: {reason}")]
    Diverged {
        /// The record.
        seq: u64,
        /// The first difference.
        reason: String,
    },
    /// The coordinator records no journal (it was not built
    /// [`journaled`](super::CoordinatorBuilder::journaled)): nothing it did could be
    /// written, and a recovery from this journal would lose every command since the
    /// last checkpoint.
    #[error(
        "this coordinator records no journal: build it with CoordinatorBuilder::journaled to write one"
    )]
    NotJournaled,
    /// The host's storage failed.
    #[error("journal storage failed: {reason}")]
    Storage {
        /// What the storage said.
        reason: String,
    },
}

/// The in-memory [`Journal`]: records in a vector, the checkpoint beside them. For
/// tests, simulations, and hosts that persist or replicate it themselves.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    /// The number of the first record kept (those before were compacted away).
    first: u64,
    records: Vec<Record>,
    checkpoint: Option<CoordinatorSnapshot>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        MemoryJournal {
            first: 1,
            records: Vec::new(),
            checkpoint: None,
        }
    }

    /// The number the next record appended gets.
    pub fn next_seq(&self) -> u64 {
        self.first() + self.records.len() as u64
    }

    /// The records kept, in order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Drops the records the stored checkpoint already holds; returns how many.
    pub fn compact(&mut self) -> usize {
        let Some(through) = self.checkpoint.as_ref().map(|c| c.journal_next) else {
            return 0;
        };
        let drop = usize::try_from(through.saturating_sub(self.first()))
            .unwrap_or(usize::MAX)
            .min(self.records.len());
        self.records.drain(..drop);
        self.first = self.first() + drop as u64;
        drop
    }

    /// Loses the records numbered `from` and after, as storage that had not synced
    /// them does when the power goes (for simulations).
    pub fn truncate(&mut self, from: u64) {
        let keep = usize::try_from(from.saturating_sub(self.first())).unwrap_or(usize::MAX);
        self.records.truncate(keep);
    }

    fn first(&self) -> u64 {
        self.first.max(1)
    }
}

impl Journal for MemoryJournal {
    fn append(&mut self, expected: u64, records: &[Record]) -> Result<(), JournalError> {
        let actual = self.next_seq();
        if expected != actual {
            return Err(JournalError::Conflict { expected, actual });
        }
        check_numbered(expected, records)?;
        self.records.extend_from_slice(records);
        Ok(())
    }

    fn read_from(&self, from: u64, out: &mut Vec<Record>) -> Result<(), JournalError> {
        let skip = usize::try_from(from.saturating_sub(self.first())).unwrap_or(usize::MAX);
        out.extend(self.records.iter().skip(skip).cloned());
        Ok(())
    }

    fn store_checkpoint(&mut self, checkpoint: &CoordinatorSnapshot) -> Result<(), JournalError> {
        if checkpoint.journal_next > self.next_seq() {
            return Err(JournalError::Gap {
                expected: self.next_seq(),
                found: checkpoint.journal_next,
            });
        }
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn load_checkpoint(&self) -> Result<Option<CoordinatorSnapshot>, JournalError> {
        Ok(self.checkpoint.clone())
    }

    fn compact(&mut self) -> Result<usize, JournalError> {
        // The inherent method: it cannot fail.
        Ok(MemoryJournal::compact(self))
    }
}

/// Checks that `records` are numbered `first`, `first + 1`, ...
pub(super) fn check_numbered(first: u64, records: &[Record]) -> Result<(), JournalError> {
    match (first..)
        .zip(records)
        .find(|(expected, r)| r.seq != *expected)
    {
        Some((expected, r)) => Err(JournalError::Gap {
            expected,
            found: r.seq,
        }),
        None => Ok(()),
    }
}

impl Core {
    /// Appends the records made since the last call to `journal` (see
    /// [`CoordinatorBuilder::journaled`](super::CoordinatorBuilder::journaled)), in
    /// one append. Returns how many. A host acknowledges a command to its callers
    /// only after this returns: then the command survives a crash.
    ///
    /// # Errors
    /// [`JournalError::NotJournaled`] if the core records no journal. The journal's:
    /// the records stay pending, for the next call. On [`JournalError::Conflict`]
    /// another writer owns the journal: this core must stop (rebuild it from the
    /// journal).
    pub fn write_journal(&mut self, journal: &mut dyn Journal) -> Result<usize, JournalError> {
        // A host that forgot `journaled` would otherwise believe its commands
        // durable: each call would write nothing, and say so only by a zero.
        if !self.recording() {
            return Err(JournalError::NotJournaled);
        }
        let pending = &mut self.s.journal.pending;
        let Some(first) = pending.first().map(|r| r.seq) else {
            return Ok(0);
        };
        journal.append(first, pending)?;
        let n = pending.len();
        pending.clear();
        Ok(n)
    }

    /// Appends what is pending ([`write_journal`](Self::write_journal)), then stores
    /// a checkpoint in `journal`: recovery replays only the records after it.
    ///
    /// # Errors
    /// As [`write_journal`](Self::write_journal) ([`JournalError::NotJournaled`]
    /// included: a host that keeps snapshots without a journal stores
    /// [`snapshot`](Self::snapshot)s itself); a checkpoint is not stored unless the
    /// records before it are.
    pub fn checkpoint(&mut self, journal: &mut dyn Journal) -> Result<(), JournalError> {
        self.write_journal(journal)?;
        journal.store_checkpoint(&self.snapshot())
    }

    /// Takes the records made since the last call, in order, for a host that writes
    /// them itself instead of through [`write_journal`](Self::write_journal).
    pub fn drain_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.s.journal.pending)
    }

    /// The number the next record made gets.
    pub fn journal_next(&self) -> u64 {
        self.s.journal.next
    }

    /// Carries out `record`'s command again, at its time, and checks that it makes
    /// the events the record holds. The events are not kept (the host saw them
    /// before the crash, and the journal holds them).
    pub(super) fn replay(&mut self, record: &Record) -> Result<(), JournalError> {
        if record.seq != self.s.journal.next {
            return Err(JournalError::Gap {
                expected: self.s.journal.next,
                found: record.seq,
            });
        }
        // The events are compared below, so they are kept through the command
        // whatever the host keeps.
        let keep = std::mem::replace(&mut self.parts.keep_events, true);
        let checked = self.replay_kept(record);
        self.parts.keep_events = keep;
        if !keep {
            self.s.events.clear();
        }
        checked
    }

    fn replay_kept(&mut self, record: &Record) -> Result<(), JournalError> {
        let mark = self.s.events.len();
        let at = record.at;
        // A command that failed the first time was journaled only if it made events;
        // what it returns is not compared, the events it makes are.
        let result = match &record.command {
            Command::RegisterAgent { profile } => self.register_agent(profile.clone(), at),
            Command::DeregisterAgent { agent } => self.deregister_agent(*agent, at).map(drop),
            Command::SetAgentCapacity { agent, capacity } => self
                .set_agent_capacity(*agent, capacity.clone(), at)
                .map(drop),
            Command::SetAgentStatus { agent, status } => {
                self.set_agent_status(*agent, *status, at).map(drop)
            }
            Command::Release { task } => self.release(*task, at).map(drop),
            Command::SetMode { mode } => self.set_mode(*mode, at).map(drop),
            Command::AssignBatch { group, tasks, wait } => {
                let mut tasks = tasks.clone();
                let mut outcomes = Vec::with_capacity(tasks.len());
                self.assign_batch_into(group.as_deref(), &mut tasks, &mut outcomes, *wait, at)
            }
            Command::Complete {
                task,
                success,
                usage,
            } => self.complete(*task, *success, usage.clone(), at).map(drop),
            Command::Cancel { task } => self.cancel(*task, at).map(drop),
            Command::Decide {
                conflict,
                decision,
                by,
            } => self.decide(*conflict, *decision, *by, at),
            Command::Tick => self.handle_timeout(at).map(drop),
            Command::Quarantine { agent, reason } => self.quarantine(*agent, reason, at).map(drop),
            Command::ReleaseQuarantine { agent, by, reason } => {
                self.release_quarantine(*agent, *by, reason, at).map(drop)
            }
            Command::ReportSecurityBreach { agents, reason } => {
                self.report_security_breach(agents, reason, at).map(drop)
            }
            Command::StopCommunications { by, reason } => {
                self.stop_communications(*by, reason, at).map(drop)
            }
            Command::ResumeCommunications { by, reason } => {
                self.resume_communications(*by, reason, at).map(drop)
            }
            Command::ForgetClosedConflicts { closed_before } => {
                self.forget_closed_conflicts(*closed_before);
                Ok(())
            }
            Command::ForgetGroup { group } => {
                self.forget_group(group);
                Ok(())
            }
            Command::Drive { group } => self.drive(group).map(drop),
            Command::HandBack { task } => self.hand_back(*task, at).map(drop),
        };
        let made = self.s.events.split_off(mark);
        if self.s.journal.next != record.seq + 1 {
            let why = match result {
                Err(e) => format!("the command failed: {e}"),
                Ok(()) => "the command made no record".to_owned(),
            };
            return Err(JournalError::Diverged {
                seq: record.seq,
                reason: why,
            });
        }
        // Replay records nothing: the record is already in the journal.
        self.s.journal.pending.pop();
        if made != record.events {
            let at = made
                .iter()
                .zip(&record.events)
                .position(|(a, b)| a != b)
                .unwrap_or(made.len().min(record.events.len()));
            let (ours, theirs) = (made.get(at), record.events.get(at));
            // Two events that read the same differ in a field their text leaves out
            // (the usage a completion reported): show them whole.
            let whole = ours.map(Event::to_string) == theirs.map(Event::to_string);
            let show = |e: Option<&Event>| match e {
                None => "nothing".to_owned(),
                Some(e) if whole => format!("{e:?}"),
                Some(e) => e.to_string(),
            };
            return Err(JournalError::Diverged {
                seq: record.seq,
                reason: format!(
                    "event {} is {} on replay, {} in the journal",
                    at + 1,
                    show(made.get(at)),
                    show(record.events.get(at))
                ),
            });
        }
        Ok(())
    }
}

/// What the core keeps for its journal.
#[derive(Debug, Default)]
pub(super) struct JournalState {
    /// Whether commands are recorded.
    pub(super) on: bool,
    /// The number the next record gets.
    pub(super) next: u64,
    /// Records made and not yet written.
    pub(super) pending: Vec<Record>,
}

/// Where the core stood when a command began.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    /// Whether the command will be recorded: then its arguments are copied before
    /// it takes them.
    pub(super) recording: bool,
    /// Where its events start.
    events: usize,
    /// The latest time seen before it.
    last_now: Timestamp,
}

impl Core {
    /// Whether commands are recorded: a command's arguments are copied for its
    /// record only then.
    pub(super) fn recording(&self) -> bool {
        self.s.journal.on
    }

    /// Runs a command, then ends it as [`journal`](Self::journal) does, with the
    /// command's record `cmd` (made only when [`recording`](Self::recording)).
    pub(super) fn journaled<R>(
        &mut self,
        now: Timestamp,
        cmd: Option<Command>,
        run: impl FnOnce(&mut Core) -> Result<R, super::CoordinatorError>,
    ) -> Result<R, super::CoordinatorError> {
        let mark = self.journal_mark();
        let out = run(self);
        self.journal(mark, out.is_ok(), now, cmd);
        out
    }

    /// Marks where the core stands as a command begins.
    pub(super) fn journal_mark(&self) -> Mark {
        Mark {
            recording: self.s.journal.on,
            events: self.s.events.len(),
            last_now: self.s.last_now,
        }
    }

    /// Ends a command begun at `mark`: one that failed and made no event changed
    /// nothing, not even the latest time seen (so that the journal, which does not
    /// hold it, rebuilds the same state); any other is recorded (`command` is made
    /// only when recording). Its events are dropped then if the host keeps none.
    pub(super) fn journal(
        &mut self,
        mark: Mark,
        ok: bool,
        now: Timestamp,
        command: Option<Command>,
    ) {
        self.record(mark, ok, now, command);
        if !self.parts.keep_events {
            self.s.events.clear();
        }
    }

    fn record(&mut self, mark: Mark, ok: bool, now: Timestamp, command: Option<Command>) {
        let s = &mut self.s;
        let mark_events = mark.events;
        if !ok && s.events.len() == mark_events {
            s.last_now = mark.last_now;
            return;
        }
        let Some(command) = command else {
            return;
        };
        let mark = mark_events;
        let seq = s.journal.next;
        s.journal.next += 1;
        s.journal.pending.push(Record {
            seq,
            at: now,
            command,
            events: s.events[mark..].to_vec(),
        });
    }
}
