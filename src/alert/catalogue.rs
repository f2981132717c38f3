//! [`AlertCatalogue`]: the operating procedures' alerts with their severities, and how
//! the coordinator's [`Event`]s fire and resolve them ([`alerts_from_event`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::names::*;
use super::{Alert, Fingerprint, Severity};
use crate::agent::AgentStatus;
use crate::clock::Timestamp;
use crate::conflict::{ConflictId, ConflictKind, EscalationAction};
use crate::coordinator::{Event, EventKind};
use crate::policy::SystemMode;

/// The source [`alerts_from_event`] gives its alerts.
pub const COORDINATOR_SOURCE: &str = "coordinator";

/// A change to the set of firing alerts: what [`alerts_from_event`] returns and
/// [`AlertManager::apply`](super::AlertManager::apply) takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertChange {
    /// Fire this alert.
    Fire(Alert),
    /// Resolve the alert with this fingerprint (if it fires).
    Resolve(Fingerprint),
}

/// One alert of a catalogue: its severity and what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDefinition {
    severity: Severity,
    description: String,
}

impl AlertDefinition {
    /// An alert of `severity`, meaning `description`.
    pub fn new(severity: Severity, description: impl Into<String>) -> Self {
        AlertDefinition {
            severity,
            description: description.into(),
        }
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// What it means.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// The alerts a system knows, by name, with their severities: serde data a host can
/// load, extend or re-grade.
///
/// The default is the operating procedures' alert configurations (names in
/// [`names`](super::names)):
///
/// | severity | alerts |
/// |---|---|
/// | critical (immediate response) | system-wide agent failure, memory corruption, security breach, resource exhaustion, safe mode entered |
/// | high (1 hour) | multiple agent failures, conflict escalated to a human, slow conflict resolution, resource allocation failure, performance degradation, memory integration issue, health check unhealthy |
/// | medium (4 hours) | agent failure, task unplaceable, anomaly, bottleneck, capacity warning, configuration drift, resource optimization |
/// | low (next business day) | maintenance due |
///
/// ```
/// use concord::alert::{names, AlertCatalogue, AlertDefinition, Severity};
/// use concord::Timestamp;
///
/// let mut catalogue = AlertCatalogue::default();
/// assert_eq!(catalogue.get(names::AGENT_FAILURE).map(|d| d.severity()), Some(Severity::Medium));
///
/// // A host that wants a page within the hour for every agent failure:
/// catalogue = catalogue.with(names::AGENT_FAILURE, AlertDefinition::new(Severity::High, "an agent failed"));
/// let alert = catalogue.alert(names::AGENT_FAILURE, Timestamp::EPOCH).unwrap();
/// assert_eq!(alert.severity(), Severity::High);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertCatalogue {
    definitions: BTreeMap<String, AlertDefinition>,
}

impl Default for AlertCatalogue {
    fn default() -> Self {
        use Severity::{Critical, High, Low, Medium};
        let entries: [(&str, Severity, &str); 20] = [
            (
                SYSTEM_WIDE_AGENT_FAILURE,
                Critical,
                "agents are failing together: activate safe mode, stop new assignments, preserve state, notify stakeholders",
            ),
            (
                MEMORY_CORRUPTION,
                Critical,
                "the shared memory is corrupt: stop memory writes, back up the current state, switch to the backup, assess the damage",
            ),
            (
                SECURITY_BREACH,
                Critical,
                "a security breach was detected: isolate the affected agents, stop external communications, preserve evidence, notify the security team",
            ),
            (
                RESOURCE_EXHAUSTION,
                Critical,
                "a resource is exhausted: reallocate at once; find heavy users and leaks",
            ),
            (
                SAFE_MODE_ENTERED,
                Critical,
                "the system is in safe mode: no new work is assigned until it recovers",
            ),
            (
                MULTIPLE_AGENT_FAILURES,
                High,
                "several agents failed within minutes of each other",
            ),
            (
                CONFLICT_ESCALATED,
                High,
                "a conflict waits for a human decision before its deadline",
            ),
            (
                SLOW_CONFLICT_RESOLUTION,
                High,
                "conflicts take too long to resolve",
            ),
            (
                RESOURCE_ALLOCATION_FAILURE,
                High,
                "resources could not be allocated",
            ),
            (PERFORMANCE_DEGRADATION, High, "performance degraded"),
            (
                MEMORY_INTEGRATION_ISSUE,
                High,
                "the shared memory misbehaves: retrieval timeouts, failed pattern matches",
            ),
            (
                HEALTH_CHECK_UNHEALTHY,
                High,
                "a system health check reports unhealthy",
            ),
            (
                AGENT_FAILURE,
                Medium,
                "an agent is unhealthy or offline: restart it, check its network, authentication and resources",
            ),
            (
                TASK_UNPLACEABLE,
                Medium,
                "a task was rejected: no agent could ever take it as things stand",
            ),
            (ANOMALY, Medium, "a metric left its normal range"),
            (
                BOTTLENECK,
                Medium,
                "an agent's queue or a resource is a bottleneck",
            ),
            (CAPACITY_WARNING, Medium, "capacity is running out"),
            (
                CONFIGURATION_DRIFT,
                Medium,
                "the configuration drifted from what was deployed",
            ),
            (
                RESOURCE_OPTIMIZATION,
                Medium,
                "resources could be used better",
            ),
            (MAINTENANCE_DUE, Low, "a maintenance task is due"),
        ];
        AlertCatalogue {
            definitions: entries
                .into_iter()
                .map(|(name, severity, description)| {
                    (name.to_owned(), AlertDefinition::new(severity, description))
                })
                .collect(),
        }
    }
}

/// The default catalogue, made once.
fn procedures() -> &'static AlertCatalogue {
    static DEFAULT: OnceLock<AlertCatalogue> = OnceLock::new();
    DEFAULT.get_or_init(AlertCatalogue::default)
}

impl AlertCatalogue {
    /// A catalogue with no alerts.
    pub fn empty() -> Self {
        AlertCatalogue {
            definitions: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the alert `name`.
    pub fn with(mut self, name: impl Into<String>, definition: AlertDefinition) -> Self {
        self.definitions.insert(name.into(), definition);
        self
    }

    /// The alert `name`, if known.
    pub fn get(&self, name: &str) -> Option<&AlertDefinition> {
        self.definitions.get(name)
    }

    /// Every alert, by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &AlertDefinition)> + '_ {
        self.definitions.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// The alert `name`, seen at `at`, with its severity and its description as
    /// summary; `None` if the catalogue does not know it.
    pub fn alert(&self, name: &str, at: Timestamp) -> Option<Alert> {
        self.get(name)
            .map(|d| Alert::new(name, d.severity, at).with_summary(d.description.clone()))
    }

    /// The alerts the coordinator's `event` fires and resolves, under this
    /// catalogue's severities (an alert it does not list keeps the default
    /// catalogue's).
    ///
    /// | event | change |
    /// |---|---|
    /// | an agent goes unhealthy or offline (not offline from a drain: a planned outage) | fires [`AGENT_FAILURE`] for it (label `agent`) |
    /// | an agent comes back in service (available or busy), or is deregistered | resolves it |
    /// | the mode becomes safe mode | fires [`SAFE_MODE_ENTERED`] |
    /// | the mode becomes normal | resolves it (recovery is not yet normal) |
    /// | a conflict goes to a human for approval | fires [`CONFLICT_ESCALATED`] (label `conflict`) |
    /// | a conflict needs an emergency reallocation | fires [`RESOURCE_EXHAUSTION`] (label `conflict`) |
    /// | a security-incident conflict is detected | fires [`SECURITY_BREACH`] (label `conflict`) |
    /// | the host reports a security breach | fires [`SECURITY_BREACH`] (label `agents`); a person resolves it |
    /// | a conflict is decided (by hand or by default) or resolved | resolves the three above for it |
    /// | a task is rejected (no agent could ever take it) | fires [`TASK_UNPLACEABLE`] (label `task`); a person resolves it |
    ///
    /// A quarantine changes nothing: it is a deliberate isolation, and an agent
    /// failure already firing for the agent fires on until the agent is back in
    /// service. Each fired alert's summary is the event's own description, its source
    /// [`COORDINATOR_SOURCE`], its time the event's.
    pub fn changes_for(&self, event: &Event) -> impl Iterator<Item = AlertChange> + use<> {
        let at = event.at;
        let fire = |name: &str, label: Option<(&str, String)>, summary: String| {
            let severity = self
                .get(name)
                .or_else(|| procedures().get(name))
                .map_or(Severity::Medium, AlertDefinition::severity);
            AlertChange::Fire(
                Alert::new(name, severity, at)
                    .with_labels(label)
                    .with_summary(summary)
                    .with_source(COORDINATOR_SOURCE),
            )
        };
        let resolve = |name: &str, label: Option<(&str, String)>| {
            let labels = label.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            AlertChange::Resolve(Fingerprint::of(name, &labels))
        };
        let conflict_over = |c: &ConflictId| {
            [CONFLICT_ESCALATED, RESOURCE_EXHAUSTION, SECURITY_BREACH]
                .into_iter()
                .map(|name| resolve(name, Some(("conflict", c.to_string()))))
                .collect::<Vec<_>>()
        };
        let said = event.kind.to_string();
        let changes = match &event.kind {
            EventKind::AgentStatusChanged {
                agent, to, planned, ..
            } => {
                let label = Some(("agent", agent.to_string()));
                if *planned {
                    Vec::new()
                } else if matches!(to, AgentStatus::Unhealthy | AgentStatus::Offline) {
                    vec![fire(AGENT_FAILURE, label, said)]
                } else if to.is_in_service() {
                    vec![resolve(AGENT_FAILURE, label)]
                } else {
                    Vec::new()
                }
            }
            EventKind::AgentDeregistered { agent } => {
                vec![resolve(AGENT_FAILURE, Some(("agent", agent.to_string())))]
            }
            EventKind::ModeChanged { to, .. } => match to {
                SystemMode::SafeMode => vec![fire(SAFE_MODE_ENTERED, None, said)],
                SystemMode::Normal => vec![resolve(SAFE_MODE_ENTERED, None)],
                _ => Vec::new(),
            },
            EventKind::ConflictDetected { conflict, .. }
                if conflict.kind() == ConflictKind::SecurityIncident =>
            {
                let label = Some(("conflict", conflict.id().to_string()));
                vec![fire(SECURITY_BREACH, label, said)]
            }
            EventKind::SecurityBreachReported { agents, .. } => {
                let agents: Vec<String> = agents.iter().map(ToString::to_string).collect();
                vec![fire(
                    SECURITY_BREACH,
                    Some(("agents", agents.join(","))),
                    said,
                )]
            }
            EventKind::ConflictEscalated { action } => match action {
                EscalationAction::RequestHumanApproval {
                    conflict,
                    deadline,
                    default,
                    reason,
                } => {
                    let summary = format!(
                        "{conflict} needs a human decision by {deadline} (else {default}): {reason}"
                    );
                    let label = Some(("conflict", conflict.to_string()));
                    vec![fire(CONFLICT_ESCALATED, label, summary)]
                }
                EscalationAction::EmergencyReallocation {
                    conflict,
                    resources,
                } => {
                    let summary = format!(
                        "{conflict}: resources exhausted ({}); reallocate now",
                        resources.join(", ")
                    );
                    let label = Some(("conflict", conflict.to_string()));
                    vec![fire(RESOURCE_EXHAUSTION, label, summary)]
                }
                EscalationAction::ApplyDefaultDecision { conflict, .. } => conflict_over(conflict),
                _ => Vec::new(),
            },
            EventKind::ConflictDecided { conflict, .. }
            | EventKind::ConflictResolved { conflict } => conflict_over(conflict),
            EventKind::TaskRejected { task, .. } => {
                vec![fire(
                    TASK_UNPLACEABLE,
                    Some(("task", task.to_string())),
                    said,
                )]
            }
            _ => Vec::new(),
        };
        changes.into_iter()
    }
}

/// The alerts the coordinator's `event` fires and resolves, under the default
/// catalogue: [`AlertCatalogue::changes_for`]. Feed them to
/// [`AlertManager::apply`](super::AlertManager::apply) with the event's time.
///
/// ```
/// use concord::alert::{alerts_from_event, AlertChange, names};
/// use concord::coordinator::{Event, EventKind};
/// use concord::{AgentId, AgentStatus, Timestamp};
///
/// let event: Event = serde_json::from_value(serde_json::json!({
///     "seq": 7, "at": 1_000_000_000u64, "event": "agent_status_changed",
///     "agent": 3, "from": "available", "to": "offline",
/// }))?;
/// let changes: Vec<AlertChange> = alerts_from_event(&event).collect();
/// let [AlertChange::Fire(alert)] = &changes[..] else { panic!("one alert fired") };
/// assert_eq!(alert.name(), names::AGENT_FAILURE);
/// assert_eq!(alert.label("agent"), Some("agent#3"));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn alerts_from_event(event: &Event) -> impl Iterator<Item = AlertChange> + use<> {
    procedures().changes_for(event)
}
