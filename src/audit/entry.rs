//! [`AuditEntry`]: what the audit log records, and how the coordinator's events and
//! the alert manager's notifications become entries.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{IncidentId, PostIncidentReview};
use crate::agent::AgentStatus;
use crate::alert::{Fingerprint, Notification, NotificationKind, Severity};
use crate::conflict::EscalationAction;
use crate::coordinator::{Decider, Event, EventKind};
use crate::id::{AgentId, TaskId};
use crate::policy::SystemMode;
use crate::resource::Allocation;
use crate::text::plural;

/// One decision or fact in the audit log.
///
/// Plain serde data: the host stores it (inside a [`SealedEntry`](super::SealedEntry))
/// wherever it keeps its records. Entries made from the coordinator's events come from
/// [`entry_from_event`]; those from alert notifications from
/// [`entries_from_notification`]; the others from the constructors below, which the
/// host (or the coordinator) calls when a person or the orchestrator decides.
///
/// Entries hold text where the coordinator's types hold numbers that are not
/// integers (an assignment's explanation is kept as its sentence, not its scores),
/// so that most entries round-trip exactly through any store; [`Evidence`]
/// keeps the coordinator's events whole, scores included (see
/// [`SealedEntry`](super::SealedEntry) for what that asks of the store).
///
/// [`Evidence`]: AuditEntry::Evidence
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEntry {
    /// A task was assigned to an agent.
    Assignment {
        /// The task.
        task: TaskId,
        /// The agent.
        agent: AgentId,
        /// Why this agent, and why not the others.
        explanation: String,
    },
    /// A task was refused: no agent could take it, a conflict over it was denied, or a
    /// policy refused an agent for it.
    Refusal {
        /// The task.
        task: TaskId,
        /// The agent refused, when the refusal was of one agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<AgentId>,
        /// Why.
        reason: String,
    },
    /// A person or the orchestrator decided something (a conflict approved or denied,
    /// a runbook step confirmed).
    Decision {
        /// Who decided.
        by: Decider,
        /// What about (`conflict#3`, a task, a runbook step).
        subject: String,
        /// What was decided.
        decision: String,
        /// Why, as they said.
        reason: String,
    },
    /// The escalation ladder acted on a conflict (or activated safe mode).
    Escalation {
        /// What it did.
        action: EscalationAction,
    },
    /// The system mode changed (safe mode, recovery, normal).
    ModeChange {
        /// The mode before.
        from: SystemMode,
        /// The mode after.
        to: SystemMode,
        /// Why, when known.
        reason: String,
    },
    /// An agent left service or came back (unhealthy, offline, out of quarantine).
    AgentStatus {
        /// The agent.
        agent: AgentId,
        /// Its status before.
        from: AgentStatus,
        /// Its status after.
        to: AgentStatus,
    },
    /// An agent was quarantined: it is never assigned until released.
    Quarantine {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: String,
    },
    /// A quarantined agent was released: a decision, with who took it and why.
    QuarantineReleased {
        /// The agent.
        agent: AgentId,
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
    },
    /// What an agent did, preserved when it was quarantined: its recent events and the
    /// allocations it held.
    Evidence {
        /// The agent.
        agent: AgentId,
        /// Its recent events, oldest first.
        events: Vec<Event>,
        /// The allocations it held.
        allocations: Vec<Allocation>,
    },
    /// A policy (a rule, a limit, a route) was changed.
    PolicyChange {
        /// Who changed it.
        by: Decider,
        /// Which policy.
        policy: String,
        /// What changed (`utilization cap 95% -> 90%`).
        change: String,
        /// Why.
        reason: String,
    },
    /// The alert manager paged, escalated, re-paged or resolved an alert.
    Alert {
        /// The alert's fingerprint.
        fingerprint: Fingerprint,
        /// Its name.
        name: String,
        /// Its severity.
        severity: Severity,
        /// Its summary.
        summary: String,
        /// Its labels.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
        /// What happened to it.
        stage: AlertStage,
    },
    /// Someone opened an incident by hand. (Emergencies and critical alerts open
    /// theirs from their own entries: see [`Incidents`](super::Incidents).) Its id is
    /// this entry's sequence number.
    IncidentOpened {
        /// A one-line title.
        title: String,
        /// How severe.
        severity: Severity,
        /// Who opened it.
        by: Decider,
        /// Why.
        reason: String,
        /// The agents involved.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        agents: Vec<AgentId>,
    },
    /// A note on an incident's timeline.
    IncidentNote {
        /// The incident.
        incident: IncidentId,
        /// Who wrote it.
        author: String,
        /// What it says.
        text: String,
    },
    /// An incident's post-incident review, written or revised (the latest counts).
    IncidentReview {
        /// The incident.
        incident: IncidentId,
        /// The review.
        review: PostIncidentReview,
    },
    /// An incident was closed.
    IncidentClosed {
        /// The incident.
        incident: IncidentId,
        /// Who closed it.
        by: Decider,
        /// Why (what ended it).
        reason: String,
    },
    /// Anything else worth keeping.
    Note {
        /// Who wrote it.
        author: String,
        /// What it says.
        text: String,
    },
}

/// What happened to an alert, in an [`AuditEntry::Alert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertStage {
    /// Its first page.
    Paged {
        /// Who was paged.
        receiver: String,
    },
    /// Unacknowledged past its deadline: paged one level up.
    Escalated {
        /// Who was paged.
        receiver: String,
        /// The escalation level.
        level: u32,
    },
    /// Acknowledged and still unresolved: paged again.
    Repaged {
        /// Who was paged.
        receiver: String,
    },
    /// Resolved.
    Resolved {
        /// Who was told.
        receivers: Vec<String>,
    },
}

impl AuditEntry {
    /// A decision by `by` on `subject`.
    pub fn decision(
        by: Decider,
        subject: impl Into<String>,
        decision: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        AuditEntry::Decision {
            by,
            subject: subject.into(),
            decision: decision.into(),
            reason: reason.into(),
        }
    }

    /// A change of system mode, with why.
    pub fn mode_change(from: SystemMode, to: SystemMode, reason: impl Into<String>) -> Self {
        AuditEntry::ModeChange {
            from,
            to,
            reason: reason.into(),
        }
    }

    /// `agent` quarantined, with why.
    pub fn quarantine(agent: AgentId, reason: impl Into<String>) -> Self {
        AuditEntry::Quarantine {
            agent,
            reason: reason.into(),
        }
    }

    /// `agent` released from quarantine: who decided, and why.
    pub fn quarantine_released(agent: AgentId, by: Decider, reason: impl Into<String>) -> Self {
        AuditEntry::QuarantineReleased {
            agent,
            by,
            reason: reason.into(),
        }
    }

    /// What `agent` did, preserved: its recent `events` (oldest first) and the
    /// `allocations` it holds. Events of other agents may be among them (a conflict it
    /// was party to); the entry keeps what it is given.
    pub fn evidence(
        agent: AgentId,
        events: impl IntoIterator<Item = Event>,
        allocations: impl IntoIterator<Item = Allocation>,
    ) -> Self {
        AuditEntry::Evidence {
            agent,
            events: events.into_iter().collect(),
            allocations: allocations.into_iter().collect(),
        }
    }

    /// A change to `policy` by `by`: what changed and why.
    pub fn policy_change(
        by: Decider,
        policy: impl Into<String>,
        change: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        AuditEntry::PolicyChange {
            by,
            policy: policy.into(),
            change: change.into(),
            reason: reason.into(),
        }
    }

    /// A note by `author`.
    pub fn note(author: impl Into<String>, text: impl Into<String>) -> Self {
        AuditEntry::Note {
            author: author.into(),
            text: text.into(),
        }
    }

    /// The entry's kind, as serialized (`assignment`, `mode_change`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEntry::Assignment { .. } => "assignment",
            AuditEntry::Refusal { .. } => "refusal",
            AuditEntry::Decision { .. } => "decision",
            AuditEntry::Escalation { .. } => "escalation",
            AuditEntry::ModeChange { .. } => "mode_change",
            AuditEntry::AgentStatus { .. } => "agent_status",
            AuditEntry::Quarantine { .. } => "quarantine",
            AuditEntry::QuarantineReleased { .. } => "quarantine_released",
            AuditEntry::Evidence { .. } => "evidence",
            AuditEntry::PolicyChange { .. } => "policy_change",
            AuditEntry::Alert { .. } => "alert",
            AuditEntry::IncidentOpened { .. } => "incident_opened",
            AuditEntry::IncidentNote { .. } => "incident_note",
            AuditEntry::IncidentReview { .. } => "incident_review",
            AuditEntry::IncidentClosed { .. } => "incident_closed",
            AuditEntry::Note { .. } => "note",
        }
    }

    /// The agents the entry names (an alert names the agent in its `agent` label).
    pub fn agents(&self) -> Vec<AgentId> {
        match self {
            AuditEntry::Assignment { agent, .. }
            | AuditEntry::AgentStatus { agent, .. }
            | AuditEntry::Quarantine { agent, .. }
            | AuditEntry::QuarantineReleased { agent, .. }
            | AuditEntry::Evidence { agent, .. } => vec![*agent],
            AuditEntry::Refusal { agent, .. } => agent.iter().copied().collect(),
            AuditEntry::Escalation {
                action: EscalationAction::ActivateSafeMode { failed_agents },
            } => failed_agents.clone(),
            AuditEntry::Alert { labels, .. } => labels
                .get("agent")
                .and_then(|a| parse_agent(a))
                .into_iter()
                .collect(),
            AuditEntry::IncidentOpened { agents, .. } => agents.clone(),
            _ => Vec::new(),
        }
    }

    /// The incident the entry is about, for the incident entries that name one.
    pub fn incident(&self) -> Option<IncidentId> {
        match self {
            AuditEntry::IncidentNote { incident, .. }
            | AuditEntry::IncidentReview { incident, .. }
            | AuditEntry::IncidentClosed { incident, .. } => Some(*incident),
            _ => None,
        }
    }

    /// Whether the entry belongs on the timeline of any incident open when it is
    /// recorded: every entry but the routine ones (assignments, refusals, and alerts
    /// below [`Severity::High`]), which join a timeline only when they name one of the
    /// incident's agents.
    pub fn is_notable(&self) -> bool {
        match self {
            AuditEntry::Assignment { .. } | AuditEntry::Refusal { .. } => false,
            AuditEntry::Alert { severity, .. } => *severity >= Severity::High,
            // Another incident's own entries stay on its timeline.
            AuditEntry::IncidentNote { .. }
            | AuditEntry::IncidentReview { .. }
            | AuditEntry::IncidentClosed { .. } => false,
            _ => true,
        }
    }
}

/// An agent named in a label: `agent#3` (as agents print) or `3`.
fn parse_agent(text: &str) -> Option<AgentId> {
    text.strip_prefix("agent#")
        .unwrap_or(text)
        .parse()
        .ok()
        .map(AgentId::new)
}

/// `": reason"`, or nothing when there is no reason.
struct Reason<'a>(&'a str);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.0)
        }
    }
}

impl fmt::Display for AuditEntry {
    /// One line for people, as an incident's timeline shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditEntry::Assignment {
                task,
                agent,
                explanation,
            } => write!(f, "{task} assigned to {agent}{}", Reason(explanation)),
            AuditEntry::Refusal {
                task,
                agent: Some(agent),
                reason,
            } => write!(f, "{agent} refused for {task}{}", Reason(reason)),
            AuditEntry::Refusal {
                task,
                agent: None,
                reason,
            } => write!(f, "{task} refused{}", Reason(reason)),
            AuditEntry::Decision {
                by,
                subject,
                decision,
                reason,
            } => write!(
                f,
                "the {by} decided {decision} on {subject}{}",
                Reason(reason)
            ),
            AuditEntry::Escalation { action } => write!(f, "{action}"),
            AuditEntry::ModeChange { from, to, reason } => {
                write!(f, "mode changed from {from} to {to}{}", Reason(reason))
            }
            AuditEntry::AgentStatus { agent, from, to } => {
                write!(f, "{agent} went from {from} to {to}")
            }
            AuditEntry::Quarantine { agent, reason } => {
                write!(f, "{agent} quarantined{}", Reason(reason))
            }
            AuditEntry::QuarantineReleased { agent, by, reason } => write!(
                f,
                "{agent} released from quarantine by the {by}{}",
                Reason(reason)
            ),
            AuditEntry::Evidence {
                agent,
                events,
                allocations,
            } => write!(
                f,
                "evidence preserved for {agent}: {}, {}",
                plural(events.len(), "event", "events"),
                plural(allocations.len(), "allocation", "allocations")
            ),
            AuditEntry::PolicyChange {
                by,
                policy,
                change,
                reason,
            } => write!(
                f,
                "policy `{policy}` changed by the {by}: {change}{}",
                Reason(reason)
            ),
            AuditEntry::Alert {
                name,
                severity,
                summary,
                stage,
                ..
            } => {
                write!(f, "{severity} alert `{name}` ")?;
                match stage {
                    AlertStage::Paged { receiver } => write!(f, "paged {receiver}")?,
                    AlertStage::Escalated { receiver, level } => {
                        write!(f, "escalated to {receiver} (level {level})")?;
                    }
                    AlertStage::Repaged { receiver } => write!(f, "paged {receiver} again")?,
                    AlertStage::Resolved { .. } => f.write_str("resolved")?,
                }
                write!(f, "{}", Reason(summary))
            }
            AuditEntry::IncidentOpened {
                title,
                severity,
                by,
                reason,
                ..
            } => write!(
                f,
                "{severity} incident opened by the {by}: {title}{}",
                Reason(reason)
            ),
            AuditEntry::IncidentNote {
                incident,
                author,
                text,
            } => write!(f, "note on {incident} by {author}{}", Reason(text)),
            AuditEntry::IncidentReview { incident, .. } => {
                write!(f, "post-incident review of {incident} written")
            }
            AuditEntry::IncidentClosed {
                incident,
                by,
                reason,
            } => write!(f, "{incident} closed by the {by}{}", Reason(reason)),
            AuditEntry::Note { author, text } => write!(f, "{author}{}", Reason(text)),
        }
    }
}

/// The audit entry for one of the coordinator's events, if it records a decision or
/// a change an incident review needs; record it at the event's time (`event.at`).
///
/// | event | entry |
/// |---|---|
/// | `TaskAssigned` | [`AuditEntry::Assignment`], with the explanation's sentence |
/// | `TaskRejected` | [`AuditEntry::Refusal`]: no agent can take it, and why |
/// | `TaskDenied` | [`AuditEntry::Refusal`]: the conflict it waited on was denied, and by whom |
/// | `PolicyRefused` | [`AuditEntry::Refusal`] of the agent, with the rule and its message |
/// | `ModeChanged` | [`AuditEntry::ModeChange`] |
/// | `ConflictEscalated` | [`AuditEntry::Escalation`] |
/// | `ConflictDecided` | [`AuditEntry::Decision`] by the human, the orchestrator or the ladder's default |
/// | `AgentStatusChanged` to quarantined | [`AuditEntry::Quarantine`] |
/// | `AgentStatusChanged` to or from unhealthy, offline or quarantined | [`AuditEntry::AgentStatus`] |
///
/// The others (registrations, capacity changes, queueing, completions, busy and
/// available, conflicts detected and resolved) are bookkeeping the coordinator's own
/// journal keeps; they are not decisions.
///
/// ```
/// use concord::audit::{entry_from_event, AuditEntry};
/// use concord::coordinator::Event;
/// use concord::AgentId;
///
/// let event: Event = serde_json::from_value(serde_json::json!({
///     "seq": 7, "at": 1_000_000_000u64, "event": "agent_status_changed",
///     "agent": 3, "from": "available", "to": "quarantined",
/// }))?;
/// let Some(AuditEntry::Quarantine { agent, .. }) = entry_from_event(&event) else {
///     panic!("a quarantine")
/// };
/// assert_eq!(agent, AgentId::new(3));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn entry_from_event(event: &Event) -> Option<AuditEntry> {
    let entry = match &event.kind {
        EventKind::TaskAssigned { assignment } => AuditEntry::Assignment {
            task: assignment.task.id(),
            agent: assignment.agent,
            explanation: assignment.explanation.to_string(),
        },
        EventKind::TaskRejected { task, explanation } => AuditEntry::Refusal {
            task: *task,
            agent: None,
            reason: format!("no agent can take it: {explanation}"),
        },
        EventKind::TaskDenied { task, conflict, by } => AuditEntry::Refusal {
            task: *task,
            agent: None,
            reason: format!("{conflict}, which it waited on, was denied by the {by}"),
        },
        EventKind::PolicyRefused { refusal } => AuditEntry::Refusal {
            task: refusal.task,
            agent: Some(refusal.agent),
            reason: format!("policy `{}`: {}", refusal.rule, refusal.message),
        },
        EventKind::ModeChanged { from, to } => AuditEntry::ModeChange {
            from: *from,
            to: *to,
            reason: String::new(),
        },
        EventKind::ConflictEscalated { action } => AuditEntry::Escalation {
            action: action.clone(),
        },
        EventKind::ConflictDecided {
            conflict,
            decision,
            by,
        } => AuditEntry::Decision {
            by: *by,
            subject: conflict.to_string(),
            decision: decision.to_string(),
            reason: String::new(),
        },
        EventKind::AgentStatusChanged {
            agent, from, to, ..
        } => {
            let notable = |s: &AgentStatus| {
                matches!(
                    s,
                    AgentStatus::Unhealthy | AgentStatus::Offline | AgentStatus::Quarantined
                )
            };
            if *to == AgentStatus::Quarantined {
                AuditEntry::Quarantine {
                    agent: *agent,
                    reason: format!("went from {from} to {to}"),
                }
            } else if notable(from) || notable(to) {
                AuditEntry::AgentStatus {
                    agent: *agent,
                    from: *from,
                    to: *to,
                }
            } else {
                return None;
            }
        }
        // The evidence: the quarantine event itself (its reason and the tasks it
        // ran) and what it held; the status change that follows is the quarantine.
        EventKind::AgentQuarantined {
            agent, allocations, ..
        } => AuditEntry::Evidence {
            agent: *agent,
            events: vec![event.clone()],
            allocations: allocations.clone(),
        },
        EventKind::QuarantineReleased {
            agent, by, reason, ..
        } => AuditEntry::QuarantineReleased {
            agent: *agent,
            by: *by,
            reason: reason.clone(),
        },
        EventKind::SafeModeTriggered { trigger } => AuditEntry::Decision {
            by: crate::coordinator::Decider::Default,
            subject: "safe mode".to_owned(),
            decision: format!("entered by rule `{}`", trigger.rule()),
            reason: trigger.to_string(),
        },
        // The detection, in the host's words; what it set off (safe mode, the
        // quarantines) follows as entries of its own.
        EventKind::SecurityBreachReported { .. } => AuditEntry::Note {
            author: "the host".to_owned(),
            text: event.kind.to_string(),
        },
        EventKind::CommunicationsStopped { by, reason } => AuditEntry::Decision {
            by: *by,
            subject: "external communications".to_owned(),
            decision: "stop".to_owned(),
            reason: reason.clone(),
        },
        EventKind::CommunicationsResumed {
            by, reason, tasks, ..
        } => AuditEntry::Decision {
            by: *by,
            subject: "external communications".to_owned(),
            decision: match tasks.len() {
                1 => "resume (1 waiting task asked for again)".to_owned(),
                n => format!("resume ({n} waiting tasks asked for again)"),
            },
            reason: reason.clone(),
        },
        // Listed one by one, so that a new kind of event is a decision here too.
        EventKind::AgentRegistered { .. }
        | EventKind::AgentDeregistered { .. }
        | EventKind::AgentCapacityChanged { .. }
        | EventKind::TaskQueued { .. }
        | EventKind::TaskBlocked { .. }
        | EventKind::TaskCompleted { .. }
        | EventKind::TaskHandedBack { .. }
        | EventKind::TaskInterrupted { .. }
        | EventKind::TaskReleased { .. }
        | EventKind::ConflictDetected { .. }
        | EventKind::ConflictResolved { .. }
        | EventKind::TaskCancelled { .. } => return None,
    };
    Some(entry)
}

/// The audit entries for one of the alert manager's notifications, to record at its
/// time (`notification.at`): one [`AuditEntry::Alert`] per alert it pages, escalates,
/// re-pages or resolves. Notifications that page nobody (held back, grouped,
/// duplicates) record nothing.
pub fn entries_from_notification(notification: &Notification) -> Vec<AuditEntry> {
    let stage = match &notification.kind {
        NotificationKind::Page { receiver, .. } => AlertStage::Paged {
            receiver: receiver.clone(),
        },
        NotificationKind::Escalated {
            receiver, level, ..
        } => AlertStage::Escalated {
            receiver: receiver.clone(),
            level: *level,
        },
        NotificationKind::Repage { receiver, .. } => AlertStage::Repaged {
            receiver: receiver.clone(),
        },
        NotificationKind::Resolved { receivers, .. } => AlertStage::Resolved {
            receivers: receivers.clone(),
        },
        _ => return Vec::new(),
    };
    notification
        .alerts()
        .iter()
        .map(|alert| AuditEntry::Alert {
            fingerprint: alert.fingerprint(),
            name: alert.name().to_owned(),
            severity: alert.severity(),
            summary: alert.summary().to_owned(),
            labels: alert.labels().clone(),
            stage: stage.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_in_labels_are_read_either_way() {
        assert_eq!(parse_agent("agent#3"), Some(AgentId::new(3)));
        assert_eq!(parse_agent("3"), Some(AgentId::new(3)));
        assert_eq!(parse_agent("agent#"), None);
        assert_eq!(parse_agent("qa-1"), None);
    }
}
