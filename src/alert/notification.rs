//! What the [`AlertManager`](super::AlertManager) hands out: [`Notification`]s, the
//! pages and the pages held back, with why.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::Fnv1a;
use super::{Alert, Fingerprint, SilenceId};
use crate::clock::Timestamp;

/// Names a group of alerts that page together: the path of the route that took them
/// and the values of its `group_by` labels, as in Alertmanager's group keys:
/// `route.routes[1]{alertname="agent_failure"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupKey(Arc<str>);

impl GroupKey {
    pub(crate) fn new(key: String) -> Self {
        GroupKey(key.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the manager does for an alert next, when it falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Its first page, to its route's receiver, when its group wait ends.
    FirstPage,
    /// A page to escalation `level` (1 for the chain's first step), because it is
    /// unacknowledged past its response deadline.
    Escalate {
        /// The level.
        level: u32,
    },
    /// A page again to the receiver at its current level, because it was acknowledged
    /// and stayed unresolved past the acknowledgement timeout.
    Repage,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::FirstPage => f.write_str("first page"),
            Action::Escalate { level } => write!(f, "escalation to level {level}"),
            Action::Repage => f.write_str("re-page"),
        }
    }
}

/// Why an alert did not page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SuppressReason {
    /// A silence matches it: it pages when the silence expires, if still firing.
    Silenced {
        /// The silence.
        silence: SilenceId,
    },
    /// A firing alert explains it (an inhibition rule): it pages when that alert
    /// resolves, if still firing and nothing else holds it back.
    Inhibited {
        /// The alert holding it back.
        by: Fingerprint,
        /// That alert's name, so that a reader need not look the fingerprint up
        /// (empty in records made before it was kept).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        alert: String,
    },
    /// It fired again while already firing: one page per firing, however often the
    /// source repeats it. Reported once per firing.
    Duplicate,
    /// It joined a group already waiting to page: no page of its own; it is listed in
    /// the group's page at `page_at`.
    Grouped {
        /// The group.
        group: GroupKey,
        /// When the group pages.
        page_at: Timestamp,
    },
    /// It was acknowledged before its first page: someone is already on it.
    Acknowledged {
        /// Who acknowledged it.
        by: String,
    },
}

impl fmt::Display for SuppressReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuppressReason::Silenced { silence } => write!(f, "silenced by {silence}"),
            SuppressReason::Inhibited { by, alert } if alert.is_empty() => {
                write!(f, "inhibited by {by}")
            }
            SuppressReason::Inhibited { by, alert } => write!(f, "inhibited by {alert} ({by})"),
            SuppressReason::Duplicate => f.write_str("duplicate of a firing alert"),
            SuppressReason::Grouped { group, page_at } => {
                write!(f, "grouped into {group}, which pages at {page_at}")
            }
            SuppressReason::Acknowledged { by } => write!(f, "acknowledged by {by}"),
        }
    }
}

/// One thing the manager decided to tell (or not to tell) someone: what a host sends
/// through its transports, and what the history keeps.
///
/// `seq` never repeats, including across a snapshot and restore, and notifications are
/// handed out in `seq` order. `at` is when the notification fell due (a page due at
/// 10:00:30 says so even if the host woke the manager at 10:01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When it fell due.
    pub at: Timestamp,
    /// What it says.
    #[serde(flatten)]
    pub kind: NotificationKind,
}

impl Notification {
    /// The alerts it is about.
    pub fn alerts(&self) -> &[Arc<Alert>] {
        match &self.kind {
            NotificationKind::Page { alerts, .. }
            | NotificationKind::Escalated { alerts, .. }
            | NotificationKind::Repage { alerts, .. }
            | NotificationKind::Suppressed { alerts, .. }
            | NotificationKind::Resolved { alerts, .. } => alerts,
        }
    }

    /// What a receiver folds this notification by if it arrives twice; see
    /// [`DedupKey`].
    pub fn dedup_key(&self) -> DedupKey {
        let mut h = Fnv1a::default();
        // What it says, to whom, about which alerts, and when it fell due: two
        // alerts of one group firing at one instant may page one after the other,
        // each in a page of its own.
        match &self.kind {
            NotificationKind::Page {
                receiver, group, ..
            } => {
                h.field(b"page");
                h.field(receiver.as_bytes());
                h.field(group.as_str().as_bytes());
            }
            NotificationKind::Escalated {
                receiver,
                level,
                group,
                ..
            } => {
                h.field(b"escalated");
                h.field(receiver.as_bytes());
                h.field(&level.to_le_bytes());
                h.field(group.as_str().as_bytes());
            }
            NotificationKind::Repage {
                receiver, group, ..
            } => {
                h.field(b"repage");
                h.field(receiver.as_bytes());
                h.field(group.as_str().as_bytes());
            }
            NotificationKind::Suppressed { reason, action, .. } => {
                h.field(b"suppressed");
                h.field(reason.to_string().as_bytes());
                h.field(action.map(|a| a.to_string()).unwrap_or_default().as_bytes());
            }
            NotificationKind::Resolved { receivers, .. } => {
                h.field(b"resolved");
                for r in receivers {
                    h.field(r.as_bytes());
                }
            }
        }
        for a in self.alerts() {
            h.field(&a.fingerprint().get().to_le_bytes());
        }
        h.field(&self.at.as_nanos().to_le_bytes());
        DedupKey(h.0)
    }

    /// Whether it asks a receiver to act: a page, an escalation or a re-page.
    pub fn is_page(&self) -> bool {
        matches!(
            self.kind,
            NotificationKind::Page { .. }
                | NotificationKind::Escalated { .. }
                | NotificationKind::Repage { .. }
        )
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}: {}", self.seq, self.at, self.kind)?;
        for (i, a) in self.alerts().iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// What a receiver folds a [`Notification`] by when it arrives twice, as a pager
/// folds the events that share a deduplication key (PagerDuty's `dedup_key`,
/// Opsgenie's alias).
///
/// Notifications are not journaled. A manager restored from a snapshot and given
/// again the coordinator's events after it (from the journal, after a crash) hands
/// out again what it had handed out after the snapshot, each due at the same time as
/// before: its pages are folded by this key. The notification made again carries the
/// key of the one first sent; every other notification carries another. A host
/// passes the key to its transport with every page, so that a restart pages nobody
/// twice, and a page that fell due but was not sent before the crash still goes out.
///
/// It is a hash (FNV-1a, 64 bits) of what the notification says, to whom, about which
/// alerts, and when it fell due, shown as 16 hexadecimal digits. After a crash that
/// lost the journal's last records, a page made again may list other alerts than the
/// one sent, and goes out as a page of its own.
///
/// ```
/// use concord::alert::{Alert, AlertConfig, AlertManager, Severity};
/// use concord::Timestamp;
///
/// let t = Timestamp::from_secs(1_700_000_000);
/// let mut before_the_crash = AlertManager::new(AlertConfig::default())?;
/// let saved = before_the_crash.snapshot();
/// before_the_crash.fire(Alert::new("security_breach", Severity::Critical, t), t)?;
/// let sent: Vec<_> = before_the_crash.drain_notifications().map(|n| n.dedup_key()).collect();
///
/// // The crash: the saved state, given the same event again, pages again...
/// let mut restored = AlertManager::restore(AlertConfig::default(), saved)?;
/// restored.fire(Alert::new("security_breach", Severity::Critical, t), t)?;
/// let again: Vec<_> = restored.drain_notifications().map(|n| n.dedup_key()).collect();
/// // ...under the same keys, which the receiver folds.
/// assert!(!again.is_empty());
/// assert_eq!(again, sent);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DedupKey(u64);

impl DedupKey {
    /// The key's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a [`Notification`] says.
///
/// Alerts of one group that fall due together go out as one notification listing
/// them, so a burst is one page, and its escalations one escalation per level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notification", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// The first page for these alerts.
    Page {
        /// Who to page.
        receiver: String,
        /// Their group.
        group: GroupKey,
        /// The alerts.
        alerts: Vec<Arc<Alert>>,
    },
    /// Unacknowledged past their response deadline: page the next receiver up.
    Escalated {
        /// Who to page.
        receiver: String,
        /// The escalation level (1 for the chain's first step).
        level: u32,
        /// Their group.
        group: GroupKey,
        /// The alerts.
        alerts: Vec<Arc<Alert>>,
    },
    /// Acknowledged but still unresolved past the acknowledgement timeout: page again.
    Repage {
        /// Who to page.
        receiver: String,
        /// Their group.
        group: GroupKey,
        /// The alerts.
        alerts: Vec<Arc<Alert>>,
    },
    /// These alerts did not page (or escalate, or re-page), and why.
    Suppressed {
        /// Why.
        reason: SuppressReason,
        /// What was held back, if anything was due.
        action: Option<Action>,
        /// The alerts.
        alerts: Vec<Arc<Alert>>,
    },
    /// These alerts resolved. Sent to every receiver that was paged for them, and only
    /// if someone was: an alert paged and then silenced or inhibited still reports
    /// its resolution, so no page is left open in a receiver's tool (the orphaned
    /// incidents of Alertmanager issues #226 and #2754); one that never paged reports
    /// nothing.
    Resolved {
        /// Who was paged for them.
        receivers: Vec<String>,
        /// The alerts.
        alerts: Vec<Arc<Alert>>,
    },
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotificationKind::Page {
                receiver, group, ..
            } => write!(f, "page {receiver} for {group}"),
            NotificationKind::Escalated {
                receiver,
                level,
                group,
                ..
            } => write!(f, "escalate {group} to {receiver} (level {level})"),
            NotificationKind::Repage {
                receiver, group, ..
            } => write!(f, "page {receiver} again for {group}"),
            NotificationKind::Suppressed { reason, action, .. } => match action {
                Some(action) => write!(f, "{action} held back: {reason}"),
                None => write!(f, "not paged: {reason}"),
            },
            NotificationKind::Resolved { receivers, .. } => {
                write!(f, "resolved; tell {}", receivers.join(", "))
            }
        }
    }
}
