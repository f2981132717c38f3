//! [`EscalationPolicy`]: the escalation ladder, as data.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConflictError, ConflictId, ConflictKind};
use crate::clock::Timestamp;
use crate::id::AgentId;

/// Who a conflict is escalated to, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EscalationLevel {
    /// The orchestrator (a coordinating agent or the host's control loop).
    Orchestrator,
    /// A human, through an approval request with a deadline.
    Human,
}

impl fmt::Display for EscalationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EscalationLevel::Orchestrator => "orchestrator",
            EscalationLevel::Human => "human",
        })
    }
}

/// What happens when a human does not answer an approval request in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HumanDecision {
    /// The contested action is refused (the safe default).
    #[default]
    Deny,
    /// The contested action goes ahead.
    Approve,
}

impl fmt::Display for HumanDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HumanDecision::Deny => "deny",
            HumanDecision::Approve => "approve",
        })
    }
}

/// Why a conflict was escalated: the `reason` lines of the escalation ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EscalationReason {
    /// `conflict_duration_30min`: "Automatic resolution timeout".
    AutomaticResolutionTimeout,
    /// `conflict_duration_2hr`: "Orchestrator resolution timeout".
    OrchestratorResolutionTimeout,
    /// `critical_security_issue`: "Security risk requires immediate attention".
    CriticalSecurity,
    /// Assessed critical: `escalate_immediately(conflict)`.
    Critical,
    /// A resolution attempt failed: `escalate_conflict(conflict, failure_reason)`.
    ResolutionFailed(String),
}

impl fmt::Display for EscalationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscalationReason::AutomaticResolutionTimeout => {
                f.write_str("automatic resolution timeout")
            }
            EscalationReason::OrchestratorResolutionTimeout => {
                f.write_str("orchestrator resolution timeout")
            }
            EscalationReason::CriticalSecurity => {
                f.write_str("security risk requires immediate attention")
            }
            EscalationReason::Critical => f.write_str("assessed critical"),
            EscalationReason::ResolutionFailed(r) => write!(f, "resolution failed: {r}"),
        }
    }
}

/// What the manager asks the host (or the coordinator) to do. Returned by
/// [`ConflictManager::open`](super::ConflictManager::open),
/// [`record_resolution`](super::ConflictManager::record_resolution) and
/// [`tick`](super::ConflictManager::tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EscalationAction {
    /// Hand the conflict to the orchestrator.
    EscalateToOrchestrator {
        /// The conflict.
        conflict: ConflictId,
        /// Why.
        reason: EscalationReason,
    },
    /// Ask a human to approve or deny by `deadline`; past it, `default` applies.
    RequestHumanApproval {
        /// The conflict.
        conflict: ConflictId,
        /// When the decision is due.
        deadline: Timestamp,
        /// What happens if nobody answers.
        default: HumanDecision,
        /// Why.
        reason: EscalationReason,
    },
    /// `resource_exhaustion`: reallocate resources now ("system stability at risk").
    EmergencyReallocation {
        /// The conflict.
        conflict: ConflictId,
        /// The exhausted resources.
        resources: Vec<String>,
    },
    /// `multiple_agent_failure`: activate safe mode ("cascade failure prevention").
    ActivateSafeMode {
        /// The failed agents, sorted.
        failed_agents: Vec<AgentId>,
    },
    /// The human's deadline passed: apply the default decision and close the conflict.
    ApplyDefaultDecision {
        /// The conflict.
        conflict: ConflictId,
        /// The decision applied.
        decision: HumanDecision,
    },
}

impl fmt::Display for EscalationAction {
    /// One line a person reads in a log or an event list: what the ladder did, to
    /// which conflict, and why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| items.join(", ");
        let done = |d: &HumanDecision| match d {
            HumanDecision::Deny => "denied",
            HumanDecision::Approve => "approved",
        };
        match self {
            EscalationAction::EscalateToOrchestrator { conflict, reason } => {
                write!(f, "{conflict} handed to the orchestrator: {reason}")
            }
            EscalationAction::RequestHumanApproval {
                conflict,
                deadline,
                default,
                reason,
            } => write!(
                f,
                "{conflict} needs a human's approval by {deadline} ({reason}); unanswered, it is {}",
                done(default)
            ),
            EscalationAction::EmergencyReallocation {
                conflict,
                resources,
            } => write!(
                f,
                "{conflict}: emergency reallocation of {}",
                list(resources)
            ),
            EscalationAction::ActivateSafeMode { failed_agents } => {
                let agents: Vec<String> = failed_agents.iter().map(|a| a.to_string()).collect();
                write!(f, "safe mode: agents failed ({})", list(&agents))
            }
            EscalationAction::ApplyDefaultDecision { conflict, decision } => write!(
                f,
                "{conflict}: nobody answered by the deadline, so it is {}",
                done(decision)
            ),
        }
    }
}

/// The escalation ladder as data.
///
/// | the escalation ladder says | field | default |
/// |---|---|---|
/// | `conflict_duration_30min` -> orchestrator | `orchestrator_after` | 30 min |
/// | `conflict_duration_2hr` -> human | `human_after` | 2 h |
/// | a human approval never waits forever | `decision_within`, `default_decision` | 1 h, deny |
/// | `critical_security_issue` -> human at once | `immediate_human` | `[security_incident]` |
/// | `resource_exhaustion` -> emergency reallocation | `emergency_reallocation` | `[resource_exhaustion]` |
/// | `multiple_agent_failure` -> safe mode | `safe_mode_failed_agents` | 3 agents |
///
/// Durations count from the moment the conflict is opened in the manager.
///
/// ```
/// use std::time::Duration;
/// use concord::conflict::{ConflictError, EscalationPolicy};
///
/// let p = EscalationPolicy::default();
/// assert_eq!(p.orchestrator_after(), Duration::from_secs(30 * 60));
/// assert!(p.validate().is_ok());
/// let bad = p.with_human_after(Duration::from_secs(60));
/// assert!(matches!(bad.validate(), Err(ConflictError::OutOfOrder { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationPolicy {
    orchestrator_after: Duration,
    human_after: Duration,
    decision_within: Duration,
    default_decision: HumanDecision,
    immediate_human: Vec<ConflictKind>,
    emergency_reallocation: Vec<ConflictKind>,
    safe_mode_failed_agents: usize,
    escalate_on_failure: bool,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            orchestrator_after: Duration::from_secs(30 * 60),
            human_after: Duration::from_secs(2 * 3600),
            decision_within: Duration::from_secs(3600),
            default_decision: HumanDecision::Deny,
            immediate_human: vec![ConflictKind::SecurityIncident],
            emergency_reallocation: vec![ConflictKind::ResourceExhaustion],
            safe_mode_failed_agents: 3,
            escalate_on_failure: true,
        }
    }
}

impl EscalationPolicy {
    /// Sets how long automatic resolution may take before the orchestrator gets it.
    pub fn with_orchestrator_after(mut self, d: Duration) -> Self {
        self.orchestrator_after = d;
        self
    }

    /// Sets how long (from opening) before a human gets it.
    pub fn with_human_after(mut self, d: Duration) -> Self {
        self.human_after = d;
        self
    }

    /// Sets how long a human has to decide.
    pub fn with_decision_within(mut self, d: Duration) -> Self {
        self.decision_within = d;
        self
    }

    /// Sets what applies when the human does not decide in time.
    pub fn with_default_decision(mut self, d: HumanDecision) -> Self {
        self.default_decision = d;
        self
    }

    /// Sets the kinds that go to a human at once when assessed critical.
    pub fn with_immediate_human(mut self, kinds: Vec<ConflictKind>) -> Self {
        self.immediate_human = kinds;
        self
    }

    /// Sets the kinds that trigger an emergency reallocation when opened.
    pub fn with_emergency_reallocation(mut self, kinds: Vec<ConflictKind>) -> Self {
        self.emergency_reallocation = kinds;
        self
    }

    /// Sets how many distinct agents failing at once (in open agent-failure conflicts)
    /// activate safe mode.
    pub fn with_safe_mode_failed_agents(mut self, n: usize) -> Self {
        self.safe_mode_failed_agents = n;
        self
    }

    /// Sets whether a failed resolution escalates one level at once (the ladder's
    /// `escalate_conflict`), or waits for the next rung's time.
    pub fn with_escalate_on_failure(mut self, yes: bool) -> Self {
        self.escalate_on_failure = yes;
        self
    }

    /// How long automatic resolution may take.
    pub fn orchestrator_after(&self) -> Duration {
        self.orchestrator_after
    }

    /// How long before a human gets it.
    pub fn human_after(&self) -> Duration {
        self.human_after
    }

    /// How long a human has to decide.
    pub fn decision_within(&self) -> Duration {
        self.decision_within
    }

    /// What applies when the human does not decide in time.
    pub fn default_decision(&self) -> HumanDecision {
        self.default_decision
    }

    /// The kinds that go to a human at once when critical.
    pub fn immediate_human(&self) -> &[ConflictKind] {
        &self.immediate_human
    }

    /// The kinds that trigger an emergency reallocation.
    pub fn emergency_reallocation(&self) -> &[ConflictKind] {
        &self.emergency_reallocation
    }

    /// How many failed agents activate safe mode.
    pub fn safe_mode_failed_agents(&self) -> usize {
        self.safe_mode_failed_agents
    }

    /// Whether a failed resolution escalates at once.
    pub fn escalate_on_failure(&self) -> bool {
        self.escalate_on_failure
    }

    /// The latest a conflict opened at `opened` can stay undecided under this policy.
    pub fn closes_by(&self, opened: Timestamp) -> Timestamp {
        opened + self.human_after + self.decision_within
    }

    /// Checks the policy: every duration longer than zero, the orchestrator rung before
    /// the human rung, the safe-mode threshold at least 1.
    ///
    /// # Errors
    /// [`ConflictError::ZeroDuration`], [`ConflictError::OutOfOrder`] or
    /// [`ConflictError::ZeroThreshold`], naming the field. (Negative durations cannot be
    /// expressed: deserializing one fails.)
    pub fn validate(&self) -> Result<(), ConflictError> {
        for (field, d) in [
            ("orchestrator_after", self.orchestrator_after),
            ("human_after", self.human_after),
            ("decision_within", self.decision_within),
        ] {
            if d.is_zero() {
                return Err(ConflictError::ZeroDuration { field });
            }
        }
        if self.orchestrator_after >= self.human_after {
            return Err(ConflictError::OutOfOrder {
                earlier: "orchestrator_after",
                earlier_value: self.orchestrator_after,
                later: "human_after",
                later_value: self.human_after,
            });
        }
        if self.safe_mode_failed_agents == 0 {
            return Err(ConflictError::ZeroThreshold {
                field: "safe_mode_failed_agents",
            });
        }
        Ok(())
    }
}
