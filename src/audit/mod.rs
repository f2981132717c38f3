//! The audit trail and incident documentation: a tamper-evident log of decisions, and
//! incident records drawn from it.
//!
//! Owns [`AuditEntry`] (what is recorded: assignments and refusals with their
//! explanations, human and orchestrator decisions, escalations, mode changes,
//! quarantines and their release, the evidence preserved from a quarantined agent,
//! policy changes, alerts paged, incident notes, reviews and closings),
//! [`AuditLog`], which seals each entry into a SHA-256 hash chain ([`SealedEntry`],
//! [`ChainHead`]), [`verify`], which checks a stored chain and says where it breaks
//! ([`AuditError`]), and [`Incidents`], which opens an [`Incident`] for each emergency
//! and critical alert it reads in the log, draws its timeline from the log, and
//! renders it with its [`PostIncidentReview`] to Markdown.
//!
//! | the procedures say | here |
//! |---|---|
//! | maintain an audit trail of decisions | [`AuditLog`], [`entry_from_event`], [`entries_from_notification`], [`AuditEntry::decision`], [`AuditEntry::policy_change`] |
//! | preserve evidence (security breach response) | [`AuditEntry::evidence`], [`AuditEntry::quarantine`], [`AuditEntry::quarantine_released`] |
//! | incident documentation | [`Incidents`], [`Incident::to_markdown`] |
//! | post-incident review, lessons learned | [`PostIncidentReview`] |
//!
//! Sans-I/O like the rest of the crate: the log seals what it is given at the time it
//! is given and hands the sealed entries out ([`AuditLog::drain`]); the host stores
//! them and keeps a copy of the [`ChainHead`] apart. It keeps only its head, the
//! entries not yet drained and a bounded ring of recent ones. The tracker is a fold
//! over the log: every change to an incident is itself an audit entry, so replaying
//! the stored entries rebuilds the incidents. This module sits above the coordinator
//! and the alert manager, whose events and notifications it reads, and must never
//! import `dashboard` or `error` (the crate's `Error` wraps [`AuditError`]).
//!
//! # Example
//!
//! A host journals the coordinator's decisions and the alert manager's pages; safe
//! mode opens an incident whose timeline shows what led up to it.
//!
//! ```
//! use std::time::Duration;
//!
//! use concord::alert::{alerts_from_event, AlertConfig, AlertManager};
//! use concord::audit::{
//!     entries_from_notification, entry_from_event, verify, AuditConfig, AuditLog, ChainHead,
//!     IncidentConfig, Incidents, PostIncidentReview,
//! };
//! use concord::coordinator::{Coordinator, Decider};
//! use concord::prelude::*;
//! use concord::{AgentStatus, SystemMode};
//!
//! fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//!     let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//!     let coordinator = Coordinator::builder().clock(clock.clone()).build();
//!     let mut alerts = AlertManager::new(AlertConfig::default())?;
//!     let mut log = AuditLog::new(AuditConfig::default());
//!     let mut incidents = Incidents::new(IncidentConfig::default());
//!     let mut stored = Vec::new(); // the host's store
//!
//!     coordinator.register_agent(AgentProfile::new(AgentId::new(1), "w1"))?;
//!     coordinator.assign(Task::new(TaskId::new(1), "build", "build the service"))?;
//!     clock.advance(Duration::from_secs(60));
//!     coordinator.set_agent_status(AgentId::new(1), AgentStatus::Offline)?;
//!     coordinator.set_mode(SystemMode::SafeMode);
//!
//!     // One loop: decisions and pages into the log, and the log into the tracker.
//!     for event in coordinator.drain_events() {
//!         if let Some(entry) = entry_from_event(&event) {
//!             incidents.record(&mut log, entry, event.at)?;
//!         }
//!         for change in alerts_from_event(&event) {
//!             alerts.apply(change, event.at)?;
//!         }
//!     }
//!     alerts.handle_timeout(clock.now());
//!     for notification in alerts.drain_notifications() {
//!         for entry in entries_from_notification(&notification) {
//!             incidents.record(&mut log, entry, notification.at)?;
//!         }
//!     }
//!     stored.extend(log.drain());
//!
//!     // Safe mode opened one incident; its critical page joined it.
//!     assert_eq!(incidents.open_incidents().len(), 1);
//!     let id = incidents.open_incidents().next().unwrap().id();
//!     incidents.review(
//!         &mut log,
//!         id,
//!         PostIncidentReview::new("w1 lost its network", "one build waited an hour")
//!             .with_action("a second network path for the build agents"),
//!         clock.now(),
//!     )?;
//!     incidents.close(&mut log, id, Decider::Human, "w1 back in service", clock.now())?;
//!     stored.extend(log.drain());
//!
//!     let report = incidents.get(id).unwrap().to_markdown();
//!     assert!(report.contains("agent#1 went from busy to offline"));
//!     assert!(report.contains("mode changed from normal to safe_mode"));
//!
//!     // The stored chain verifies, end to end; a changed entry would say where.
//!     assert_eq!(verify(&stored, Some(ChainHead::GENESIS))?, log.head());
//!     Ok(())
//! }
//! ```

mod canonical;
mod chain;
mod entry;
mod error;
mod incident;

pub use chain::{AuditConfig, AuditLog, ChainHead, SealedEntry, verify};
pub use entry::{AlertStage, AuditEntry, entries_from_notification, entry_from_event};
pub use error::AuditError;
pub use incident::{
    Incident, IncidentConfig, IncidentId, Incidents, IncidentsSnapshot, PostIncidentReview,
    TimelineItem, Trigger,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_are_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<AuditLog>();
        f::<Incidents>();
        f::<SealedEntry>();
    }
}
