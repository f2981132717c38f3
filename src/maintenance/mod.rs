//! Maintenance: the recurring checklists, computed from the clock, and the daily
//! cleanup as library calls.
//!
//! Owns the [`Schedule`] of recurring items ([`ScheduleItem`]: a name, a
//! [`Recurrence`] every day, week or month at a [`TimeOfDay`] in UTC, and a grace
//! period), whose default is the procedures' regular maintenance tasks (the daily,
//! weekly and monthly checklists); the [`Maintenance`] tracker, which says what is due
//! and since when ([`DueItem`]), what is overdue and by how much ([`Overdue`]), records
//! who did what ([`Completion`]), says when to wake next
//! ([`Maintenance::poll_timeout`]), snapshots its state ([`MaintenanceSnapshot`]) and
//! renders the checklists as Markdown ([`Maintenance::report`]); and the daily cleanup
//! ([`Cleanup`], [`CleanupReport`]): forget closed conflicts and finished runs past a
//! retention ([`cleanup_coordinator`], [`forget_finished_runs`]), compact the journal
//! behind its checkpoint ([`compact_journal`]), and prune old backups (with memory's
//! own [`prune_backups`](crate::memory::prune_backups)).
//!
//! | the procedures say | here |
//! |---|---|
//! | daily, weekly and monthly maintenance | [`Schedule::default`], [`DAILY_CHECKLIST`], [`WEEKLY_CHECKLIST`], [`MONTHLY_CHECKLIST`], [`Maintenance`] |
//! | daily cleanup script: clean up, rotate, drop old memory snapshots, optimize the database | [`Cleanup::run`] |
//!
//! Sans-I/O like the rest of the crate: calendar dates come from the `now` passed in
//! (Unix time, the proleptic Gregorian calendar, no time zone database, no clock
//! read), and the tracker keeps each item's last completion, nothing more. The module
//! sits above `audit`, beside the other operations a host runs next to the
//! coordinator, and calls down into the coordinator, the workflow runs and memory; it
//! must never import `dashboard` or `error` (the crate's `Error` wraps
//! [`MaintenanceError`]).
//!
//! # Example
//!
//! ```
//! use concord::coordinator::{Coordinator, MemoryJournal};
//! use concord::maintenance::{Cleanup, Maintenance, Schedule};
//! use concord::Timestamp;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let at = |t: &str| t.parse::<Timestamp>();
//! // 2024-01-01 is a Monday and the 1st: every checklist falls due at 06:00 UTC.
//! let mut maintenance = Maintenance::new(Schedule::default(), at("2024-01-01T00:00:00Z")?);
//! assert!(maintenance.due(at("2024-01-01T05:59:00Z")?).is_empty());
//! assert_eq!(maintenance.due(at("2024-01-01T07:00:00Z")?).len(), 15);
//!
//! // The daily cleanup, then its item ticked off with what it removed.
//! let coordinator = Coordinator::builder().build();
//! let (mut journal, mut backups) = (MemoryJournal::new(), Vec::new());
//! let now = at("2024-01-01T07:00:00Z")?;
//! let report = Cleanup::default().run(&coordinator, [], &mut journal, &mut backups, now)?;
//! maintenance.complete("Clean up temporary files", now, "orchestrator", report.to_markdown())?;
//! maintenance.complete("Verify agent connectivity", now, "ops-1", "all agents answered")?;
//!
//! // The daily grace is four hours: at 11:00 the rest of the daily list is overdue.
//! let late = maintenance.overdue(at("2024-01-01T11:00:00Z")?);
//! assert_eq!(late.len(), 3);
//! assert_eq!(late[0].item, "Review overnight logs for errors");
//! assert_eq!(late[0].late_by, std::time::Duration::from_secs(3600));
//! // Nothing changes until the two items done fall due again, tomorrow at 06:00.
//! assert_eq!(maintenance.poll_timeout(at("2024-01-01T11:00:00Z")?), Some(at("2024-01-02T06:00:00Z")?));
//! println!("{}", maintenance.report(at("2024-01-01T11:00:00Z")?));
//!
//! // Completions survive a restart as serde data.
//! let saved = serde_json::to_string(&maintenance.snapshot())?;
//! let restored = Maintenance::restore(Schedule::default(), &serde_json::from_str(&saved)?)?;
//! assert_eq!(restored.overdue(at("2024-01-01T11:00:00Z")?), late);
//! # Ok(())
//! # }
//! ```

mod cleanup;
mod error;
mod schedule;
mod tracker;

pub use cleanup::{
    Cleanup, CleanupReport, cleanup_coordinator, compact_journal, forget_finished_runs,
};
pub use error::MaintenanceError;
pub use schedule::{
    DAILY_CHECKLIST, MAX_ITEM_NAME_LEN, MONTHLY_CHECKLIST, Recurrence, Schedule, ScheduleItem,
    TimeOfDay, WEEKLY_CHECKLIST, Weekday,
};
pub use tracker::{
    Completion, DueItem, ItemStatus, MAINTENANCE_SNAPSHOT_VERSION, Maintenance,
    MaintenanceSnapshot, Overdue,
};
