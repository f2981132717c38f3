//! The daily cleanup as library calls: forget what the coordinator no longer needs,
//! compact the journal, prune old backups.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::coordinator::{Coordinator, Journal, JournalError};
use crate::memory::{Backup, BackupId, Retention, prune_backups};
use crate::serde_util::duration_ms;
use crate::workflow::Run;

/// How long the daily cleanup keeps what it removes. Serde data, every field
/// optional.
///
/// The defaults follow the procedures' daily cleanup script, which deletes temporary
/// files older than a day and memory snapshots older than seven days: closed
/// conflicts are kept a day, finished runs' records seven days, and backups by
/// [`Retention::default`] (seven days, never the last good one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Cleanup {
    /// Conflicts closed longer ago than this are forgotten (default 24 hours).
    #[serde(with = "duration_ms")]
    pub closed_conflicts: Duration,
    /// Runs finished longer ago than this have their records forgotten (default
    /// seven days).
    #[serde(with = "duration_ms")]
    pub finished_runs: Duration,
    /// Which memory backups to keep.
    pub backups: Retention,
}

impl Default for Cleanup {
    fn default() -> Cleanup {
        Cleanup {
            closed_conflicts: Duration::from_secs(24 * 3600),
            finished_runs: Duration::from_secs(7 * 24 * 3600),
            backups: Retention::default(),
        }
    }
}

impl Cleanup {
    /// With conflicts closed longer ago than `retention` forgotten.
    #[must_use]
    pub fn with_closed_conflicts(mut self, retention: Duration) -> Cleanup {
        self.closed_conflicts = retention;
        self
    }

    /// With runs finished longer ago than `retention` forgotten.
    #[must_use]
    pub fn with_finished_runs(mut self, retention: Duration) -> Cleanup {
        self.finished_runs = retention;
        self
    }

    /// With backups kept by `retention`.
    #[must_use]
    pub fn with_backups(mut self, retention: Retention) -> Cleanup {
        self.backups = retention;
        self
    }

    /// The whole daily cleanup at `now`, in order: [`cleanup_coordinator`],
    /// [`forget_finished_runs`] of `runs`, [`prune_backups`] of `backups` (which
    /// keeps the rest in place), then [`compact_journal`] of `journal`. (A host that
    /// keeps no journal passes an empty [`MemoryJournal`](crate::coordinator::MemoryJournal):
    /// without a checkpoint, it compacts nothing.)
    ///
    /// Every step can run again without harm, so a host whose journal failed runs
    /// the whole cleanup again later. Compaction drops only what the stored
    /// checkpoint holds: store one ([`Coordinator::checkpoint`]) before the cleanup
    /// to compact everything up to it. (The forgetting is itself journaled, after
    /// that checkpoint; its records go at the next cleanup.)
    ///
    /// # Errors
    /// The journal's; the other steps are done by then, and `backups` is pruned.
    ///
    /// ```
    /// use concord::coordinator::{Coordinator, MemoryJournal};
    /// use concord::maintenance::Cleanup;
    /// use concord::Timestamp;
    ///
    /// let coordinator = Coordinator::builder().build();
    /// let mut journal = MemoryJournal::new();
    /// let mut backups = Vec::new();
    /// let now = Timestamp::from_secs(1_700_000_000);
    /// let report = Cleanup::default().run(&coordinator, [], &mut journal, &mut backups, now)?;
    /// assert_eq!(report.conflicts, 0);
    /// assert!(report.to_markdown().starts_with("**Daily cleanup**"));
    /// # Ok::<(), concord::coordinator::JournalError>(())
    /// ```
    pub fn run<'r>(
        &self,
        coordinator: &Coordinator,
        runs: impl IntoIterator<Item = &'r Run>,
        journal: &mut dyn Journal,
        backups: &mut Vec<Backup>,
        now: Timestamp,
    ) -> Result<CleanupReport, JournalError> {
        let mut report = CleanupReport {
            at: now,
            conflicts: cleanup_coordinator(coordinator, now, self),
            runs: forget_finished_runs(coordinator, runs, now, self.finished_runs),
            ..CleanupReport::default()
        };
        report.backups = prune_backups(backups, &self.backups, now)
            .iter()
            .map(Backup::id)
            .collect();
        report.journal_records = compact_journal(journal)?;
        tracing::info!(
            cleanup.conflicts = report.conflicts,
            cleanup.runs = report.runs.len(),
            cleanup.backups = report.backups.len(),
            cleanup.journal_records = report.journal_records,
            "daily cleanup done"
        );
        Ok(report)
    }
}

/// Forgets the conflicts that closed longer ago than `cleanup.closed_conflicts`
/// before `now`; returns how many. Open conflicts are never forgotten, and forgotten
/// ids are never reused.
pub fn cleanup_coordinator(coordinator: &Coordinator, now: Timestamp, cleanup: &Cleanup) -> usize {
    coordinator.forget_closed_conflicts(now.saturating_sub(cleanup.closed_conflicts))
}

/// Forgets the coordinator's records (who did which duty, for separation of duties)
/// of each run in `runs` that finished longer ago than `retention` before `now`, and
/// returns their ids, in the order given: the host drops those runs from its own
/// books too. A run not finished is never touched, and neither is what a later run
/// under the same id recorded: a group in use again (a live run, tasks running or
/// waiting, a duty started after the run finished) is kept
/// ([`Coordinator::forget_finished_group`]).
///
/// A run's group in the coordinator is its id (the [`Executor`](crate::workflow::Executor)
/// assigns a run's steps in the group [`Run::id`]), and it finished at its last
/// recorded change ([`Run::history`]).
pub fn forget_finished_runs<'r>(
    coordinator: &Coordinator,
    runs: impl IntoIterator<Item = &'r Run>,
    now: Timestamp,
    retention: Duration,
) -> Vec<String> {
    let before = now.saturating_sub(retention);
    let mut forgotten = Vec::new();
    for run in runs {
        if let Some(at) = finished_at(run).filter(|at| *at < before) {
            coordinator.forget_finished_group(run.id(), at);
            forgotten.push(run.id().to_owned());
        }
    }
    forgotten
}

/// When `run` finished: the time of its last change, once every step is terminal.
fn finished_at(run: &Run) -> Option<Timestamp> {
    if run.is_finished() {
        run.history().last().map(|e| e.at)
    } else {
        None
    }
}

/// Drops the journal's records that its stored checkpoint already holds
/// ([`Journal::compact`]); returns how many. A store that cannot compact keeps them
/// and returns 0.
///
/// # Errors
/// The journal's.
pub fn compact_journal(journal: &mut dyn Journal) -> Result<usize, JournalError> {
    journal.compact()
}

/// What one daily cleanup removed. Serde data; [`to_markdown`](Self::to_markdown)
/// is one line for a maintenance log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// When it ran.
    pub at: Timestamp,
    /// How many closed conflicts the coordinator forgot.
    pub conflicts: usize,
    /// The finished runs whose records the coordinator forgot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// How many journal records were dropped behind the checkpoint.
    pub journal_records: usize,
    /// The backups pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupId>,
}

impl CleanupReport {
    /// One Markdown line: `**Daily cleanup**, <time>: forgot 2 closed conflicts and 1
    /// finished run, dropped 140 journal records, pruned 2 backups`.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &'static str, many: &'static str| {
            format!("{n} {}", if n == 1 { one } else { many })
        };
        write!(
            f,
            "**Daily cleanup**, {}: forgot {} and {}, dropped {}, pruned {}",
            self.at,
            plural(self.conflicts, "closed conflict", "closed conflicts"),
            plural(self.runs.len(), "finished run", "finished runs"),
            plural(self.journal_records, "journal record", "journal records"),
            plural(self.backups.len(), "backup", "backups"),
        )
    }
}
