//! What the coordinator hands out: assignments and outcomes, the [`Event`] envelope a
//! host journals, and the [`Notice`]s a driver waits on.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentProfile, AgentStatus};
use crate::assignment::{Explanation, Refusal};
use crate::clock::Timestamp;
use crate::conflict::{
    Assessment, Conflict, ConflictId, EscalationAction, EscalationLevel, HumanDecision,
};
use crate::id::{AgentId, AllocationId, RequestId, TaskId};
use crate::policy::{SystemMode, Violation};
use crate::resource::Resources;
use crate::task::Task;

/// A task on an agent, with what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assignment {
    /// The task, with the requirements the analyzer and predictor settled on.
    pub task: Task,
    /// The agent.
    pub agent: AgentId,
    /// The allocation holding its resources and slot.
    pub allocation: AllocationId,
    /// The resources allocated (the prediction).
    pub resources: Resources,
    /// The agent's score.
    pub score: f64,
    /// Why this agent, and why not the others.
    pub explanation: Explanation,
    /// Policy findings that did not block (warnings).
    pub warnings: Vec<Violation>,
    /// The workflow run or batch it belongs to, for separation of duties.
    pub group: Option<Arc<str>>,
    /// When it was assigned.
    pub assigned_at: Timestamp,
    /// When it first asked to run, if it waited before it was assigned (a task
    /// assigned at once asked at `assigned_at`): a task handed back by an agent that
    /// leaves service waits again from then, keeping its age in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<Timestamp>,
}

/// What [`Core::hand_back`](super::Core::hand_back) did with an interrupted task, as
/// [`OnAgentLoss`](super::OnAgentLoss) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HandedBack {
    /// It waits again, keeping its age in the queue (held for its agent's release if
    /// the agent is quarantined): a [`Notice::Started`] follows when it is assigned
    /// again. The attempt on the agent that left is void, not failed.
    Requeued,
    /// It ended as a failure.
    Failed,
}

/// What [`Core::assign_batch`](super::Core::assign_batch) did with a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AssignOutcome {
    /// Assigned now.
    Assigned(Arc<Assignment>),
    /// Waiting in the ledger's queue for resources, a free slot, or normal mode;
    /// assigned when they come back (see [`EventKind::TaskAssigned`]). If by then its claims collide with a
    /// running task's, it goes on waiting behind that task instead
    /// ([`EventKind::TaskBlocked`]).
    Queued {
        /// The task.
        task: TaskId,
        /// Its place in the queue.
        request: RequestId,
        /// Why it could not be assigned now (boxed: the common outcome, `Assigned`,
        /// then moves in two words).
        explanation: Box<Explanation>,
    },
    /// Its claims collide with claims of running tasks (the same exclusive file, port
    /// or environment): it is not started. Each conflict is open in the coordinator's
    /// conflict manager, which climbs the escalation ladder as time passes (see
    /// [`Core::poll_timeout`](super::Core::poll_timeout)), and the task waits behind
    /// the holder ([`WaitingTask::behind`](super::WaitingTask::behind)): it is queued
    /// when the holder finishes (which resolves the conflict) or when the conflict is
    /// approved ([`Core::decide`](super::Core::decide)), and withdrawn with the reason
    /// when it is denied ([`EventKind::TaskDenied`]), by hand or by the ladder's
    /// default decision.
    Conflicted {
        /// The task.
        task: TaskId,
        /// The conflicts its claims opened.
        conflicts: Vec<ConflictId>,
    },
    /// No agent can take it, now or later, as things stand: no agent registered has
    /// the roles and capabilities, none could ever hold its needs, or a policy that is
    /// not about capacity refused every candidate. (Safe mode and the utilization cap
    /// make a task wait, not fail.)
    Rejected {
        /// The task.
        task: TaskId,
        /// Why (boxed, as in `Queued`).
        explanation: Box<Explanation>,
        /// The policy refusals on the way.
        refusals: Vec<Refusal>,
    },
}

impl AssignOutcome {
    /// The task the outcome is about, whatever became of it: what a host matches
    /// outcomes to its tasks by, queued and rejected ones included.
    pub fn task(&self) -> TaskId {
        match self {
            AssignOutcome::Assigned(a) => a.task.id(),
            AssignOutcome::Queued { task, .. }
            | AssignOutcome::Conflicted { task, .. }
            | AssignOutcome::Rejected { task, .. } => *task,
        }
    }

    /// The assignment, if the task was assigned now.
    pub fn assignment(&self) -> Option<&Assignment> {
        match self {
            AssignOutcome::Assigned(a) => Some(a.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for AssignOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignOutcome::Assigned(a) => write!(
                f,
                "{} assigned to {} ({})",
                a.task.id(),
                a.agent,
                a.explanation
            ),
            AssignOutcome::Queued {
                task, explanation, ..
            } => write!(f, "{task} waits: {explanation}"),
            AssignOutcome::Conflicted { task, conflicts } => {
                write!(f, "{task} waits behind running work:")?;
                for c in conflicts {
                    write!(f, " {c}")?;
                }
                Ok(())
            }
            AssignOutcome::Rejected {
                task, explanation, ..
            } => write!(f, "{task} rejected: {explanation}"),
        }
    }
}

/// One state change of the coordinator: what a host journals. The envelope carries
/// what every change has (its sequence number and time); [`EventKind`] says what
/// changed.
///
/// The sequence never repeats, including across a snapshot and restore, and events
/// are handed out in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When it happened (the `now` of the call that made it).
    pub at: Timestamp,
    /// What changed.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}: {}", self.seq, self.at, self.kind)
    }
}

/// What an [`Event`] records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An agent joined.
    AgentRegistered {
        /// Its profile (boxed, as the other large payloads: events stay small in a
        /// long journal).
        profile: Box<AgentProfile>,
    },
    /// An agent left for good ([`Core::deregister_agent`](super::Core::deregister_agent)).
    AgentDeregistered {
        /// The agent.
        agent: AgentId,
    },
    /// An agent's capacity changed ([`Core::set_agent_capacity`](super::Core::set_agent_capacity)).
    AgentCapacityChanged {
        /// The agent.
        agent: AgentId,
        /// Its capacity now.
        capacity: Resources,
    },
    /// An agent's status changed.
    AgentStatusChanged {
        /// The agent.
        agent: AgentId,
        /// Its status before.
        from: AgentStatus,
        /// Its status now.
        to: AgentStatus,
        /// A planned outage: the host took the agent offline while it was drained
        /// (set busy by the host). It counts as no failure: no safe-mode rule and no
        /// agent-failure alert hears of it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        planned: bool,
    },
    /// The system mode changed (safe mode, recovery, normal).
    ModeChanged {
        /// The mode before.
        from: SystemMode,
        /// The mode now.
        to: SystemMode,
    },
    /// A task was assigned (now, or from the queue).
    TaskAssigned {
        /// The assignment.
        assignment: Arc<Assignment>,
    },
    /// A task waits in the queue.
    TaskQueued {
        /// The task.
        task: TaskId,
        /// Its place in the queue.
        request: RequestId,
        /// Why it could not be assigned now.
        explanation: Box<Explanation>,
    },
    /// A waiting task's claims collide with those of a running task, so it was not
    /// started: it waits behind that task ([`WaitingTask::behind`](super::WaitingTask::behind)),
    /// to be queued again when the holder finishes.
    TaskBlocked {
        /// The task.
        task: TaskId,
        /// Its key among the waiting tasks.
        request: RequestId,
        /// The running task holding the contested claim.
        behind: TaskId,
        /// The contested names: the holder's claim, then the task's.
        resources: Vec<String>,
    },
    /// A task could not be assigned, now or later.
    TaskRejected {
        /// The task.
        task: TaskId,
        /// Why.
        explanation: Box<Explanation>,
    },
    /// A waiting task was withdrawn because the conflict it waited on was denied, by
    /// hand or by the escalation ladder's default decision.
    TaskDenied {
        /// The task.
        task: TaskId,
        /// The conflict.
        conflict: ConflictId,
        /// Who denied it.
        by: Decider,
    },
    /// A policy refused an agent for a task (the audit trail of policy decisions).
    PolicyRefused {
        /// The refusal.
        refusal: Box<Refusal>,
    },
    /// A task finished and gave its resources back.
    TaskCompleted {
        /// The task.
        task: TaskId,
        /// Its agent.
        agent: AgentId,
        /// Whether it succeeded.
        success: bool,
        /// What it used, as the host reported it (the same figure the predictor
        /// learns from): with the assignment's `resources`, what tells how well the
        /// prediction fit (what performance monitoring reads). Absent when the host did
        /// not say, and in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Resources>,
    },
    /// A running task was taken from its agent, which left service (went offline or
    /// unhealthy, or was deregistered): its resources are freed and it waits again
    /// (`requeued`), or it ended as a failure.
    TaskHandedBack {
        /// The task.
        task: TaskId,
        /// The agent it was taken from.
        agent: AgentId,
        /// Whether it waits again (else it failed).
        requeued: bool,
    },
    /// A running task of a driven group (see [`Core::drive`](super::Core::drive))
    /// was interrupted: its agent left service while it ran. It keeps its slot,
    /// resources and claims until its driver completes it (the work was done) or
    /// hands it back once the work has stopped ([`EventKind::TaskHandedBack`]).
    TaskInterrupted {
        /// The task.
        task: TaskId,
        /// Its agent, which left service.
        agent: AgentId,
    },
    /// A running task ended without an outcome (its run was cancelled, or its
    /// attempt interrupted by a restart): its resources are freed, and neither its
    /// agent's record nor the predictor learns from it.
    TaskReleased {
        /// The task.
        task: TaskId,
        /// The agent it ran on.
        agent: AgentId,
    },
    /// Claims collided: a conflict was opened, assessed and routed.
    ConflictDetected {
        /// The conflict.
        conflict: Box<Conflict>,
        /// Its assessment: severity and route.
        assessment: Assessment,
    },
    /// The escalation ladder acted on a conflict. The coordinator carries out
    /// `ActivateSafeMode` and `ApplyDefaultDecision` itself; the host answers the
    /// others (with [`Core::decide`](super::Core::decide)).
    ConflictEscalated {
        /// The action.
        action: EscalationAction,
    },
    /// A conflict was decided: approved or denied, by hand or by the ladder's default.
    ConflictDecided {
        /// The conflict.
        conflict: ConflictId,
        /// The decision.
        decision: HumanDecision,
        /// Who decided.
        by: Decider,
    },
    /// A conflict was resolved: the task holding the resource finished.
    ConflictResolved {
        /// The conflict.
        conflict: ConflictId,
    },
    /// A waiting task was withdrawn.
    TaskCancelled {
        /// The task.
        task: TaskId,
    },
    /// An agent was quarantined: the evidence of what it held, taken before any of
    /// it was handed back.
    AgentQuarantined {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: String,
        /// The tasks it was running, in id order.
        tasks: Vec<TaskId>,
        /// What it held in the ledger.
        allocations: Vec<crate::resource::Allocation>,
    },
    /// An agent's quarantine was released, by an audited decision.
    QuarantineReleased {
        /// The agent.
        agent: AgentId,
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
        /// The tasks held for its release, queued again.
        tasks: Vec<TaskId>,
    },
    /// A safe-mode rule fired: the [`ModeChanged`](Self::ModeChanged) to safe mode
    /// follows.
    SafeModeTriggered {
        /// The rule and what tipped it.
        trigger: super::SafeModeTrigger,
    },
    /// The host reported a security breach on these agents
    /// ([`Core::report_security_breach`](super::Core::report_security_breach)): the
    /// safe-mode trigger and quarantines that follow are its consequences.
    SecurityBreachReported {
        /// The affected agents, as reported.
        agents: Vec<AgentId>,
        /// What the host said.
        reason: String,
    },
    /// External communications were stopped: tasks needing an external capability
    /// wait until they resume.
    CommunicationsStopped {
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
    },
    /// External communications were resumed, by an audited decision.
    CommunicationsResumed {
        /// Who decided.
        by: Decider,
        /// Why.
        reason: String,
        /// The tasks that waited for them, asked for again.
        tasks: Vec<TaskId>,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::AgentRegistered { profile } => {
                write!(f, "{} ({}) registered", profile.id(), profile.name())
            }
            EventKind::AgentDeregistered { agent } => write!(f, "{agent} deregistered"),
            EventKind::AgentCapacityChanged { agent, capacity } => {
                write!(f, "{agent} has capacity {capacity} now")
            }
            EventKind::AgentStatusChanged {
                agent,
                from,
                to,
                planned,
            } => {
                write!(f, "{agent} went from {from} to {to}")?;
                if *planned {
                    f.write_str(" (planned: it was drained)")?;
                }
                Ok(())
            }
            EventKind::ModeChanged { from, to } => write!(f, "mode changed from {from} to {to}"),
            EventKind::TaskAssigned { assignment: a } => {
                write!(f, "{} assigned to {}", a.task.id(), a.agent)
            }
            EventKind::TaskQueued {
                task, explanation, ..
            } => write!(f, "{task} queued: {explanation}"),
            EventKind::TaskBlocked { task, behind, .. } => {
                write!(f, "{task} waits behind {behind}")
            }
            EventKind::TaskRejected { task, explanation } => {
                write!(f, "{task} rejected: {explanation}")
            }
            EventKind::TaskDenied { task, conflict, by } => {
                write!(f, "{task} denied by the {by} in {conflict}")
            }
            EventKind::PolicyRefused { refusal } => write!(f, "policy refused: {refusal}"),
            EventKind::TaskCompleted {
                task,
                agent,
                success,
                ..
            } => {
                let how = if *success { "succeeded" } else { "failed" };
                write!(f, "{task} {how} on {agent}")
            }
            EventKind::TaskInterrupted { task, agent } => {
                write!(f, "{task} interrupted: {agent} left service while it ran")
            }
            EventKind::TaskHandedBack {
                task,
                agent,
                requeued,
            } => {
                let then = if *requeued { "waits again" } else { "failed" };
                write!(
                    f,
                    "{task} taken from {agent}, which left service; it {then}"
                )
            }
            EventKind::TaskReleased { task, agent } => {
                write!(f, "{task} released from {agent} without an outcome")
            }
            EventKind::ConflictDetected { conflict, .. } => {
                write!(f, "{} detected", conflict.id())
            }
            EventKind::ConflictEscalated { action } => write!(f, "escalation: {action}"),
            EventKind::ConflictDecided {
                conflict,
                decision,
                by,
            } => write!(f, "{conflict} decided by the {by}: {decision}"),
            EventKind::ConflictResolved { conflict } => write!(f, "{conflict} resolved"),
            EventKind::TaskCancelled { task } => write!(f, "{task} cancelled"),
            EventKind::AgentQuarantined {
                agent,
                reason,
                tasks,
                allocations,
            } => write!(
                f,
                "{agent} quarantined ({reason}): {} tasks and {} allocations kept as evidence",
                tasks.len(),
                allocations.len()
            ),
            EventKind::QuarantineReleased {
                agent, by, reason, ..
            } => write!(f, "{agent} released from quarantine by {by}: {reason}"),
            EventKind::SafeModeTriggered { trigger } => {
                write!(f, "safe mode by rule `{}`: {trigger}", trigger.rule())
            }
            EventKind::SecurityBreachReported { agents, reason } => {
                let agents: Vec<String> = agents.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "security breach reported on {}: {reason}",
                    agents.join(", ")
                )
            }
            EventKind::CommunicationsStopped { by, reason } => {
                write!(f, "external communications stopped by {by}: {reason}")
            }
            EventKind::CommunicationsResumed {
                by, reason, tasks, ..
            } => write!(
                f,
                "external communications resumed by {by}: {reason} ({} {} waited for them)",
                tasks.len(),
                if tasks.len() == 1 { "task" } else { "tasks" }
            ),
        }
    }
}

/// Who decided a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decider {
    /// The orchestrator (a coordinating agent or the host's control loop).
    Orchestrator,
    /// A person.
    Human,
    /// Nobody answered in time: the escalation ladder's default decision.
    Default,
}

impl Decider {
    /// The ladder level a decision by hand is recorded at (none for the default).
    pub(crate) fn level(self) -> Option<EscalationLevel> {
        match self {
            Decider::Orchestrator => Some(EscalationLevel::Orchestrator),
            Decider::Human => Some(EscalationLevel::Human),
            Decider::Default => None,
        }
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decider::Orchestrator => "orchestrator",
            Decider::Human => "human",
            Decider::Default => "escalation ladder's default",
        })
    }
}

/// What happened to a task of a watched group while it waited (see
/// [`Core::watch`](super::Core::watch)): what a driver that submitted it needs to
/// carry on, without reading the whole journal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// It was assigned from the queue: hand it to its agent.
    Started(Arc<Assignment>),
    /// It will never start: nothing could ever take it, or its conflict was denied.
    Refused {
        /// The task.
        task: TaskId,
        /// Why, to be said in the run's evidence.
        reason: String,
    },
    /// It was taken from its agent, which left service, and failed (no re-queue).
    Lost {
        /// The task.
        task: TaskId,
        /// The agent it was taken from.
        agent: AgentId,
    },
    /// Its agent left service while it ran, and its group is driven (see
    /// [`Core::drive`](super::Core::drive)): stop the work, then complete the task
    /// if the work was done after all, or else hand it back
    /// ([`Core::hand_back`](super::Core::hand_back)). Until then it keeps its agent's
    /// slot.
    Interrupted {
        /// The task.
        task: TaskId,
        /// Its agent, which left service.
        agent: AgentId,
    },
    /// It was taken from its agent, which left service, and waits again: its attempt
    /// on that agent is void (not failed); a `Started` follows when it is assigned
    /// again.
    Requeued {
        /// The task.
        task: TaskId,
        /// The agent it was taken from.
        agent: AgentId,
    },
}

impl Notice {
    /// The task it is about.
    pub fn task(&self) -> TaskId {
        match self {
            Notice::Started(a) => a.task.id(),
            Notice::Refused { task, .. }
            | Notice::Interrupted { task, .. }
            | Notice::Lost { task, .. }
            | Notice::Requeued { task, .. } => *task,
        }
    }
}
