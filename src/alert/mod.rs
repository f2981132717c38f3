//! Alerting: the operating procedures' alert configurations, as a state machine.
//!
//! Owns [`Alert`] and its [`Fingerprint`], [`Severity`] with its
//! [`ResponseDeadlines`], [`Matcher`]s, the configuration as data ([`AlertConfig`]:
//! receivers, a [`Route`] tree with escalation chains, [`InhibitRule`]s,
//! [`CascadeRule`]s, [`Retention`]), the sans-I/O [`AlertManager`] that decides who is
//! paged and when, the [`Notification`]s it hands out, its [`AlertManagerSnapshot`],
//! and the procedures' [`AlertCatalogue`] with [`alerts_from_event`], which turns the
//! coordinator's events into alerts fired and resolved.
//!
//! | the procedures say | here |
//! |---|---|
//! | critical alerts: immediate response | [`Severity::Critical`], deadline 0, paged without a group wait |
//! | high priority alerts: 1 hour response | [`Severity::High`], [`ResponseDeadlines`] |
//! | medium priority alerts: 4 hour response | [`Severity::Medium`] |
//! | system-wide agent failure, cascade failure detection | [`CascadeRule`], [`names::SYSTEM_WIDE_AGENT_FAILURE`] |
//! | notify stakeholders, notify the security team | the default [`Route`]s' escalation chains |
//! | recent alerts and incidents (operations dashboard) | [`AlertManager::firing`], [`AlertManager::history`] |
//!
//! What it gets right that users of alerting systems ask for: one page per alert
//! however often its source repeats it, and one page per burst of a group
//! (deduplication and grouping); no page for an alert still inside its response
//! deadline but its first (escalation and re-pages wait for the deadline); escalation
//! when nobody acknowledges, each level once and in order; an alert held back by a
//! silence or by the alert that explains it pages when that ends, if it still fires;
//! a resolution reaches everyone paged; a bounded history of every page sent, held
//! back or escalated, which survives a restart with the rest of the state; and, since
//! notifications are not journaled, a [`DedupKey`] on each, under which a receiver
//! folds what a manager restored after a crash hands out again.
//!
//! This module decides who is told what and when; it sends nothing: the host maps each
//! receiver's name to its transport. It sits above the coordinator, whose events it
//! reads, and must never import `error` (the crate's `Error` wraps [`AlertError`]).
//! Anomaly detectors, health checks and diagnostics report through
//! [`AlertManager::fire`] and [`AlertManager::resolve`] like any host code, so this
//! module needs no knowledge of them.

mod catalogue;
mod config;
mod error;
mod manager;
mod matcher;
mod model;
pub mod names;
mod notification;
mod severity;
mod silence;
mod snapshot;

pub use catalogue::{
    AlertCatalogue, AlertChange, AlertDefinition, COORDINATOR_SOURCE, alerts_from_event,
};
pub use config::{
    AlertConfig, AlertTemplate, CascadeRule, DEFAULT_RECEIVERS, EscalationStep, InhibitRule,
    MAX_ALERT_WAIT, MAX_ROUTE_DEPTH, Retention, Route,
};
pub use error::AlertError;
pub use manager::{Acknowledgement, AlertManager, AlertRecord, Due, Fired, PageRecord};
pub use matcher::{MatchOp, Matcher};
pub use model::{Alert, Fingerprint, MAX_ALERT_NAME_LEN, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN};
pub use notification::{
    Action, DedupKey, GroupKey, Notification, NotificationKind, SuppressReason,
};
pub use severity::{ResponseDeadlines, Severity};
pub use silence::{Silence, SilenceId};
pub use snapshot::{ALERT_SNAPSHOT_VERSION, AlertManagerSnapshot};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_is_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<AlertManager>();
        f::<AlertConfig>();
        f::<Notification>();
    }
}
