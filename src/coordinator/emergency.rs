//! The emergencies the coordinator acts on itself: safe mode entered by rule, agents
//! quarantined with the evidence of what they held, released by an audited decision,
//! and a security breach reported in one call.
//!
//! The rules are the escalation ladder's `multiple_agent_failure` (several agents
//! failing within a window), resource exhaustion (tasks failing after using more than
//! they were given) and a critical security issue, as serde data with the
//! procedures' defaults. Each is counted where the core sees the failure (an agent's
//! status change, a task's completion), so safe mode comes with the command that
//! tipped it, not at the next tick; and the windows are in the snapshot, so a
//! coordinator rebuilt from its journal fires exactly where the live one did.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::AgentStatus;
use crate::clock::Timestamp;
use crate::id::{AgentId, TaskId};
use crate::policy::SystemMode;
use crate::resource::Resources;

use super::core::Core;
use super::error::CoordinatorError;
use super::event::{Decider, EventKind};
use super::journal::Command;

/// When the coordinator enters safe mode by itself: the procedures' emergency rules,
/// as serde data. A rule set to `null` is off.
///
/// ```
/// use std::time::Duration;
/// use concord::coordinator::{FailureWindow, SafeModeRules};
///
/// let rules = SafeModeRules::default();
/// assert_eq!(rules.agent_failures, Some(FailureWindow { agents: 3, within: Duration::from_secs(300) }));
/// let json = serde_json::to_string(&rules)?;
/// assert_eq!(serde_json::from_str::<SafeModeRules>(&json)?, rules);
/// let off: SafeModeRules = serde_json::from_str(r#"{"agent_failures": null}"#)?;
/// assert_eq!(off.agent_failures, None);
/// assert!(off.resource_exhaustion.is_some(), "the rules left out keep their defaults");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafeModeRules {
    /// The escalation ladder's `multiple_agent_failure`: this many distinct agents
    /// going offline or unhealthy within the window (default 3 within 5 minutes, the
    /// alert catalogue's "system-wide agent failure").
    pub agent_failures: Option<FailureWindow>,
    /// Resource exhaustion: this many tasks failing within the window after using
    /// more of some resource than they were given (default 3 within 10 minutes).
    pub resource_exhaustion: Option<ExhaustionWindow>,
    /// A security breach reported with [`Core::report_security_breach`] enters safe
    /// mode (default on); the affected agents are quarantined either way.
    pub security_breach: bool,
}

impl Default for SafeModeRules {
    fn default() -> Self {
        SafeModeRules {
            agent_failures: Some(FailureWindow {
                agents: 3,
                within: Duration::from_secs(5 * 60),
            }),
            resource_exhaustion: Some(ExhaustionWindow {
                tasks: 3,
                within: Duration::from_secs(10 * 60),
            }),
            security_breach: true,
        }
    }
}

impl SafeModeRules {
    /// No rule: safe mode only by hand (and by the conflict manager's ladder).
    #[must_use]
    pub fn none() -> Self {
        SafeModeRules {
            agent_failures: None,
            resource_exhaustion: None,
            security_breach: false,
        }
    }

    /// Checks the rules' settings.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidSafeModeRule`] naming the rule and the value: a
    /// count of zero (it would fire on nothing), an empty window, or one longer than
    /// [`MAX_RULE_WINDOW`].
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let bad = |rule: &'static str, problem: String| {
            Err(CoordinatorError::InvalidSafeModeRule { rule, problem })
        };
        if let Some(w) = &self.agent_failures {
            if w.agents == 0 {
                return bad("agent_failures", "agents is 0".into());
            }
            if w.within.is_zero() {
                return bad("agent_failures", "the window is empty".into());
            }
            if w.within > MAX_RULE_WINDOW {
                return bad("agent_failures", too_long(w.within));
            }
        }
        if let Some(w) = &self.resource_exhaustion {
            if w.tasks == 0 {
                return bad("resource_exhaustion", "tasks is 0".into());
            }
            if w.within.is_zero() {
                return bad("resource_exhaustion", "the window is empty".into());
            }
            if w.within > MAX_RULE_WINDOW {
                return bad("resource_exhaustion", too_long(w.within));
            }
        }
        Ok(())
    }
}

/// The longest window a safe-mode rule may count over: a year. The core keeps every
/// failure of the window in memory and in each snapshot, so a window of "never"
/// (`u64::MAX` milliseconds) would keep them for the coordinator's life; a rule that
/// should never fire is left out (`None`).
pub const MAX_RULE_WINDOW: Duration = crate::clock::A_YEAR;

fn too_long(within: Duration) -> String {
    format!(
        "the window of {} ms is longer than a year ({} ms)",
        within.as_millis(),
        MAX_RULE_WINDOW.as_millis()
    )
}

/// Several agents failing within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureWindow {
    /// How many distinct agents.
    pub agents: usize,
    /// Within how long.
    #[serde(with = "crate::serde_util::duration_ms")]
    pub within: Duration,
}

/// Several tasks failing from resource exhaustion within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExhaustionWindow {
    /// How many tasks.
    pub tasks: usize,
    /// Within how long.
    #[serde(with = "crate::serde_util::duration_ms")]
    pub within: Duration,
}

/// Which rule put the coordinator in safe mode, and on what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeModeTrigger {
    /// Agents failed within the rule's window.
    AgentFailures {
        /// The agents, in the order they failed.
        agents: Vec<AgentId>,
    },
    /// Tasks failed after using more of some resource than they were given.
    ResourceExhaustion {
        /// The tasks, in the order they failed.
        tasks: Vec<TaskId>,
    },
    /// A security breach was reported.
    SecurityBreach {
        /// The affected agents.
        agents: Vec<AgentId>,
        /// What the host said.
        reason: String,
    },
}

impl SafeModeTrigger {
    /// The rule's name: `agent_failures`, `resource_exhaustion`, `security_breach`.
    pub fn rule(&self) -> &'static str {
        match self {
            SafeModeTrigger::AgentFailures { .. } => "agent_failures",
            SafeModeTrigger::ResourceExhaustion { .. } => "resource_exhaustion",
            SafeModeTrigger::SecurityBreach { .. } => "security_breach",
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for SafeModeTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafeModeTrigger::AgentFailures { agents } => {
                write!(f, "multiple agent failure: {}", list(agents))
            }
            SafeModeTrigger::ResourceExhaustion { tasks } => {
                write!(
                    f,
                    "resource exhaustion: {} failed out of resources",
                    list(tasks)
                )
            }
            SafeModeTrigger::SecurityBreach { agents, reason } => {
                write!(f, "security breach on {}: {reason}", list(agents))
            }
        }
    }
}

/// What a quarantined agent's running tasks do: wait for another agent (the
/// default), or stay held until the quarantine is released (the evidence of what
/// they were doing kept as it was).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnQuarantine {
    /// Queued again for the other agents.
    #[default]
    Requeue,
    /// Held, off the queue, until [`Core::release_quarantine`].
    Hold,
}

/// The recent failures the rules count, kept in the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentFailures {
    /// Agents that went offline or unhealthy, with when.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub agents: VecDeque<(Timestamp, AgentId)>,
    /// Tasks that failed out of resources, with when.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub exhausted: VecDeque<(Timestamp, TaskId)>,
}

impl RecentFailures {
    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.exhausted.is_empty()
    }
}

/// Drops what fell out of the window ending at `now`.
fn trim<T>(q: &mut VecDeque<(Timestamp, T)>, now: Timestamp, within: Duration) {
    let from = now.saturating_sub(within);
    while q.front().is_some_and(|(t, _)| *t <= from) {
        q.pop_front();
    }
}

/// Whether a task that used `usage` went over what it was `given` of some resource.
///
/// Strictly over: hosts often report the amount a task was given as its usage, and
/// a failure that merely used its share is no sign the fleet ran out.
pub(super) fn exhausted(given: &Resources, usage: &Resources) -> bool {
    given
        .iter()
        .any(|(name, amount)| amount > 0 && usage.get(&name) > amount)
}

impl Core {
    /// The rules that put the coordinator in safe mode by itself.
    pub fn safe_mode_rules(&self) -> &SafeModeRules {
        &self.parts.safe_mode_rules
    }

    /// Counts `agent`, which just failed (went offline or unhealthy), against the
    /// multiple-agent-failure rule, entering safe mode when it tips.
    pub(super) fn note_agent_failure(&mut self, agent: AgentId, now: Timestamp) {
        let Some(rule) = self.parts.safe_mode_rules.agent_failures else {
            return;
        };
        let q = &mut self.s.recent.agents;
        trim(q, now, rule.within);
        // An agent counts once in the window, as of its latest failure.
        q.retain(|(_, a)| *a != agent);
        q.push_back((now, agent));
        if q.len() >= rule.agents {
            let agents = q.drain(..).map(|(_, a)| a).collect();
            self.enter_safe_mode_by_rule(SafeModeTrigger::AgentFailures { agents }, now);
        }
    }

    /// Counts `task`, which failed after using more of some resource than it was given,
    /// against the resource exhaustion rule.
    pub(super) fn note_exhaustion(&mut self, task: TaskId, now: Timestamp) {
        let Some(rule) = self.parts.safe_mode_rules.resource_exhaustion else {
            return;
        };
        let q = &mut self.s.recent.exhausted;
        trim(q, now, rule.within);
        q.push_back((now, task));
        if q.len() >= rule.tasks {
            let tasks = q.drain(..).map(|(_, t)| t).collect();
            self.enter_safe_mode_by_rule(SafeModeTrigger::ResourceExhaustion { tasks }, now);
        }
    }

    /// Enters safe mode because `trigger` fired, saying so first; a coordinator
    /// already out of normal mode stays where it is (the rule has nothing to add).
    fn enter_safe_mode_by_rule(&mut self, trigger: SafeModeTrigger, now: Timestamp) {
        if self.s.mode != SystemMode::Normal {
            return;
        }
        tracing::warn!(rule = trigger.rule(), %trigger, "safe mode entered by rule");
        self.s.push(now, EventKind::SafeModeTriggered { trigger });
        self.change_mode(SystemMode::SafeMode, now);
    }

    /// Quarantines `agent`: it is cut off from new work, its running tasks are
    /// handed back (queued again or held, per [`OnQuarantine`]), and what it held
    /// is kept as evidence in an [`EventKind::AgentQuarantined`] (its tasks and
    /// allocations), made before anything is taken from it. Returns the tasks taken.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownAgent`], [`CoordinatorError::TimeWentBack`]; an
    /// agent already quarantined changes nothing and returns no task.
    pub fn quarantine(
        &mut self,
        agent: AgentId,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        // Kept as a note: one line, bounded (see `MAX_NOTE_LEN`), as recorded.
        let reason = &crate::id::note(reason);
        let cmd = self.recording().then(|| Command::Quarantine {
            agent,
            reason: reason.to_owned(),
        });
        self.journaled(now, cmd, |c| c.quarantine_inner(agent, reason, now))
    }

    pub(super) fn quarantine_inner(
        &mut self,
        agent: AgentId,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.check_time(now)?;
        if self.status_of(agent)? == AgentStatus::Quarantined {
            return Ok(Vec::new());
        }
        self.s.last_now = now;
        let tasks = self.s.tasks_on(agent);
        let allocations = self
            .s
            .ledger
            .allocations()
            .into_iter()
            .filter(|a| a.agent == agent)
            .collect();
        tracing::warn!(agent.id = %agent, reason, "agent quarantined");
        self.s.push(
            now,
            EventKind::AgentQuarantined {
                agent,
                reason: reason.to_owned(),
                tasks: tasks.clone(),
                allocations,
            },
        );
        let hold = self.parts.on_quarantine == OnQuarantine::Hold;
        self.leave_service(agent, AgentStatus::Quarantined, hold, now)?;
        Ok(tasks)
    }

    /// Releases `agent` from quarantine, as `by` decided and why: it is back in
    /// service, and the tasks held for it ([`OnQuarantine::Hold`]) are queued again.
    /// Returns those tasks.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownAgent`]; [`CoordinatorError::NotQuarantined`];
    /// [`CoordinatorError::TimeWentBack`]. Then nothing changes.
    pub fn release_quarantine(
        &mut self,
        agent: AgentId,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        // Kept as a note: one line, bounded (see `MAX_NOTE_LEN`), as recorded.
        let reason = &crate::id::note(reason);
        let cmd = self.recording().then(|| Command::ReleaseQuarantine {
            agent,
            by,
            reason: reason.to_owned(),
        });
        self.journaled(now, cmd, |c| {
            c.release_quarantine_inner(agent, by, reason, now)
        })
    }

    fn release_quarantine_inner(
        &mut self,
        agent: AgentId,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.check_time(now)?;
        let status = self.status_of(agent)?;
        if status != AgentStatus::Quarantined {
            return Err(CoordinatorError::NotQuarantined { agent, status });
        }
        self.s.last_now = now;
        let held = self.s.held_for(agent);
        tracing::info!(agent.id = %agent, %by, reason, "quarantine released");
        self.s.push(
            now,
            EventKind::QuarantineReleased {
                agent,
                by,
                reason: reason.to_owned(),
                tasks: held.iter().map(|(_, t)| *t).collect(),
            },
        );
        // Released, not set available by the host: a drain it was under before the
        // quarantine (a maintenance window) goes on.
        self.set_status_in_service(agent, AgentStatus::Available, true, now)?;
        let mut granted = Vec::new();
        self.requeue_held(agent, now, &mut granted);
        self.serve(Vec::new(), granted, now);
        Ok(held.into_iter().map(|(_, t)| t).collect())
    }

    /// `agent`'s status, or [`CoordinatorError::UnknownAgent`].
    fn status_of(&self, agent: AgentId) -> Result<AgentStatus, CoordinatorError> {
        if !self.s.registry.contains(agent) {
            return Err(CoordinatorError::UnknownAgent { agent });
        }
        Ok(self.s.registry.status(agent)?)
    }

    /// Queues again the tasks held for `agent`'s release (it was released, or left
    /// the fleet), their grants into `granted`.
    pub(super) fn requeue_held(
        &mut self,
        agent: AgentId,
        now: Timestamp,
        granted: &mut Vec<(crate::resource::Grant, crate::id::RequestId)>,
    ) {
        for (key, _) in self.s.held_for(agent) {
            if let Some(mut w) = self.s.unwait(key) {
                w.parked = None;
                self.requeue(w, now, granted);
            }
        }
    }

    /// A security breach on `agents`, as the host detected it: under the
    /// [`SafeModeRules::security_breach`] rule the coordinator enters safe mode, and
    /// each affected agent is quarantined with its evidence (the procedure's
    /// "isolate affected agents" and "preserve evidence"). Returns the tasks taken
    /// from them.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownAgent`] for the first agent not registered, before
    /// anything changes; [`CoordinatorError::TimeWentBack`].
    pub fn report_security_breach(
        &mut self,
        agents: &[AgentId],
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        // Kept as a note: one line, bounded (see `MAX_NOTE_LEN`), as recorded.
        let reason = &crate::id::note(reason);
        let cmd = self.recording().then(|| Command::ReportSecurityBreach {
            agents: agents.to_vec(),
            reason: reason.to_owned(),
        });
        self.journaled(now, cmd, |c| c.security_breach_inner(agents, reason, now))
    }

    fn security_breach_inner(
        &mut self,
        agents: &[AgentId],
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.check_time(now)?;
        if let Some(&agent) = agents.iter().find(|a| !self.s.registry.contains(**a)) {
            return Err(CoordinatorError::UnknownAgent { agent });
        }
        self.s.last_now = now;
        tracing::error!(?agents, reason, "security breach reported");
        self.s.push(
            now,
            EventKind::SecurityBreachReported {
                agents: agents.to_vec(),
                reason: reason.to_owned(),
            },
        );
        if self.parts.safe_mode_rules.security_breach {
            let trigger = SafeModeTrigger::SecurityBreach {
                agents: agents.to_vec(),
                reason: reason.to_owned(),
            };
            self.enter_safe_mode_by_rule(trigger, now);
        }
        // Still a note: the prefix may take it past the limit.
        let why = crate::id::note(format!("security breach: {reason}"));
        let mut taken = Vec::new();
        for &agent in agents {
            taken.extend(self.quarantine_inner(agent, &why, now)?);
        }
        Ok(taken)
    }
}
