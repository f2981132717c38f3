//! Assignment: which agent takes which task.
//!
//! Owns the [`Assigner`] trait and its two defaults, [`GreedyAssigner`] (filter and
//! score plugins in the manner of the Kubernetes scheduler) and [`OptimalAssigner`]
//! (minimum-cost batch assignment on the crate's own linear assignment solvers in
//! [`lap`]), the [`Fleet`] they choose from, and the [`Explanation`] every decision
//! carries. The coordination procedure's "assign optimal agents" step.
//!
//! Assigners decide; they never change the registry or the ledger. Policies are
//! consulted through the [`Admission`] hook, so an assigner can try the next candidate
//! when one is refused. This module may import `agent`, `task`, `resource` and
//! `policy`; never `coordinator`.
//!
//! # Example
//! ```
//! use concord::assignment::{Assigner, Fleet, GreedyAssigner};
//! use concord::agent::{AgentProfile, AgentRegistry};
//! use concord::{AgentId, Capability, Requirements, Role, Task, TaskId, Timestamp};
//!
//! let now = Timestamp::from_secs(0);
//! let mut registry = AgentRegistry::new();
//! for (id, role) in [(1, "ops"), (2, "qa"), (3, "qa")] {
//!     let profile = AgentProfile::new(AgentId::new(id), format!("{role}-{id}"))
//!         .with_role(Role::new(role)?)
//!         .with_capacity("cpu=2,memory=4Gi".parse()?);
//!     registry.register(profile, now)?;
//! }
//! let fleet = Fleet::new(&registry, None);
//! let shot = Task::new(TaskId::new(7), "screenshot", "capture the page")
//!     .with_requirements(Requirements::new().with_role(Role::new("qa")?));
//! let plan = GreedyAssigner::default().assign_all(&[shot], &fleet)?;
//! let placed = &plan.placements[0];
//! assert_eq!(placed.agent, AgentId::new(2)); // a tie between the qa agents: lowest id
//! assert_eq!(
//!     placed.explanation.to_string().split(';').next().unwrap(),
//!     "2 of 3 agents fit: 1 lacks role `qa`"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod explain;
mod fleet;
mod greedy;
mod index;
pub mod lap;
mod optimal;

pub use error::AssignmentError;
pub use explain::{Explanation, PluginScore, Rejection, RejectionCount};
pub use fleet::{AffinityTable, Fleet};
pub use greedy::{Filter, GreedyAssigner, ScoreWeights, Scorer};
pub use optimal::OptimalAssigner;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, TaskId};
use crate::task::Task;

/// One task placed on one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Placement {
    /// The task.
    pub task: TaskId,
    /// The agent chosen.
    pub agent: AgentId,
    /// The agent's total score for the task (weighted mean of the scorers).
    pub score: f64,
    /// Why this agent, and why not the others.
    pub explanation: Explanation,
}

/// A task no agent could take, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Unplaced {
    /// The task.
    pub task: TaskId,
    /// Why no agent could take it.
    pub explanation: Explanation,
}

/// A policy's refusal of one (task, agent) pair, reported by an [`Admission`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Refusal {
    /// The task.
    pub task: TaskId,
    /// The agent refused.
    pub agent: AgentId,
    /// The rule that refused.
    pub rule: String,
    /// What it said.
    pub message: String,
}

impl Refusal {
    /// A refusal of `agent` for `task` by `rule`.
    pub fn new(
        task: TaskId,
        agent: AgentId,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            task,
            agent,
            rule: rule.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refused {} for {}: {}",
            self.rule, self.agent, self.task, self.message
        )
    }
}

/// The result of assigning a batch: every task is either placed or unplaced with its
/// reasons; none is dropped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// Tasks placed, in the order of the batch.
    pub placements: Vec<Placement>,
    /// Tasks not placed, in the order of the batch.
    pub unplaced: Vec<Unplaced>,
    /// Every refusal the [`Admission`] made on the way (the audit trail of policy
    /// decisions), in the order made.
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// The placement of `task`, if it was placed.
    pub fn placement(&self, task: TaskId) -> Option<&Placement> {
        self.placements.iter().find(|p| p.task == task)
    }

    /// The sum of the placements' scores.
    pub fn total_score(&self) -> f64 {
        self.placements.iter().map(|p| p.score).sum()
    }
}

/// Decides whether a (task, agent) pair is admitted, given the placements already
/// accepted in the same batch: how policies take part in assignment.
///
/// # Contract
/// - Deterministic for the same inputs; never panics.
/// - Returning `Err` refuses only this pair: the assigner tries other agents.
///
/// # Examples
/// Keep agent 1 free for emergencies:
/// ```
/// use concord::assignment::{Admission, Placement, Refusal};
/// use concord::{AgentId, Task};
///
/// struct KeepOneFree;
/// impl Admission for KeepOneFree {
///     fn admit(&mut self, task: &Task, agent: AgentId, _accepted: &[Placement]) -> Result<(), Refusal> {
///         if agent == AgentId::new(1) {
///             return Err(Refusal::new(task.id(), agent, "reserve", "kept free for emergencies"));
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Admission {
    /// Admits `agent` for `task`, or refuses it.
    fn admit(&mut self, task: &Task, agent: AgentId, accepted: &[Placement])
    -> Result<(), Refusal>;

    /// [`admit`](Self::admit), told that the assigner chose `agent` among the agents
    /// of `fleet` that pass its filters: there, its status is
    /// [`Available`](crate::AgentStatus::Available), it has a free task slot once
    /// the batch's earlier placements on it (`accepted`) are counted, and it plays
    /// every role and has every capability `task` asks for. An admission whose
    /// checks include these may skip them when `fleet` is the one it knows to show
    /// what it checks against (the coordinator's compares it with the fleet it handed
    /// the assigner, and then skips the policy rules that check nothing else); the
    /// answer must be the one `admit` gives. The default calls `admit`.
    ///
    /// [`GreedyAssigner`] calls this for every agent it proposes, with the fleet it
    /// was given; an assigner that cannot vouch for all three calls `admit`.
    fn admit_filtered(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
        fleet: &Fleet,
    ) -> Result<(), Refusal> {
        let _ = fleet;
        self.admit(task, agent, accepted)
    }
}

/// Admits every pair.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&mut self, _: &Task, _: AgentId, _: &[Placement]) -> Result<(), Refusal> {
        Ok(())
    }
}

impl<F> Admission for F
where
    F: FnMut(&Task, AgentId, &[Placement]) -> Result<(), Refusal>,
{
    fn admit(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
    ) -> Result<(), Refusal> {
        self(task, agent, accepted)
    }
}

/// Assigns a batch of tasks to the agents of a [`Fleet`].
///
/// # Contract
/// - Every task of the batch comes back, placed or unplaced with reasons.
/// - A placement never breaks a filter: the agent is available, has a free slot (each
///   placement in the batch takes one), every required role and capability, and free
///   resources for the task's `requirements().resources()` (each placement in the
///   batch takes its share); and `admission` admitted it.
/// - The same inputs give the same plan.
/// - The fleet is not changed; the caller commits the plan (registry slots, ledger
///   allocations).
///
/// # Examples
/// An assigner that places every task on the lowest-id agent with a free slot,
/// ignoring everything else (a sketch, not a good assigner):
/// ```
/// use concord::assignment::{Admission, Assigner, AssignmentError, Explanation, Fleet, Placement, Plan};
/// use concord::Task;
///
/// #[derive(Debug)]
/// struct First;
/// impl Assigner for First {
///     fn assign(&self, tasks: &[Task], fleet: &Fleet, _: &mut dyn Admission) -> Result<Plan, AssignmentError> {
///         let agent = *fleet.ids().first().ok_or(AssignmentError::NoAgents)?;
///         let mut plan = Plan::default();
///         for t in tasks {
///             plan.placements.push(Placement::new(t.id(), agent, 0.0, Explanation::default()));
///         }
///         Ok(plan)
///     }
/// }
/// ```
pub trait Assigner: fmt::Debug + Send + Sync {
    /// Assigns `tasks` to agents of `fleet`, asking `admission` before each placement.
    ///
    /// # Errors
    /// [`AssignmentError`] for bad input (an empty fleet, a duplicate task, invalid
    /// settings); never for a task that merely cannot be placed.
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError>;

    /// [`assign`](Self::assign), written over `plan` (whatever it held). On an
    /// error what `plan` holds is unspecified.
    ///
    /// The coordinator assigns every batch this way, into one plan kept between
    /// batches. The default writes what `assign` returns; an assigner that fills the
    /// plan's lists in place (as [`GreedyAssigner`]
    /// does for a batch of one task) overrides it to reuse their capacity.
    ///
    /// # Errors
    /// As [`assign`](Self::assign).
    fn assign_into(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        *plan = self.assign(tasks, fleet, admission)?;
        Ok(())
    }

    /// [`assign_into`](Self::assign_into), for a caller that holds the assigner
    /// alone (the coordinator owns the one it was built with). The default calls
    /// `assign_into`; an assigner that keeps buffers behind a lock, because
    /// `assign_into` may be called from several threads at once, overrides it to
    /// reach them without locking (as [`GreedyAssigner`] does: a lock and an unlock
    /// are two atomic operations, a few percent of a one-task call).
    ///
    /// # Errors
    /// As [`assign`](Self::assign).
    fn assign_into_mut(
        &mut self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        self.assign_into(tasks, fleet, admission, plan)
    }

    /// [`assign`](Self::assign) with every pair admitted.
    ///
    /// # Errors
    /// As [`assign`](Self::assign).
    fn assign_all(&self, tasks: &[Task], fleet: &Fleet) -> Result<Plan, AssignmentError> {
        self.assign(tasks, fleet, &mut AdmitAll)
    }
}

impl Placement {
    /// A placement of `task` on `agent` with `score`.
    pub fn new(task: TaskId, agent: AgentId, score: f64, explanation: Explanation) -> Self {
        Placement {
            task,
            agent,
            score,
            explanation,
        }
    }
}

/// Checks a batch for duplicate tasks and an empty fleet. `ids` is scratch space, kept
/// by the caller so that a check allocates nothing once it has grown.
pub(crate) fn check_batch(
    tasks: &[Task],
    fleet: &Fleet,
    ids: &mut Vec<TaskId>,
) -> Result<(), AssignmentError> {
    if fleet.is_empty() {
        return Err(AssignmentError::NoAgents);
    }
    ids.clear();
    ids.extend(tasks.iter().map(Task::id));
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(AssignmentError::DuplicateTask { task: w[0] });
    }
    Ok(())
}

/// Fills `order` with the order tasks are placed in: priority first (highest), then
/// deadline (earliest, none last), then the order of the batch. The Kubernetes
/// scheduler's queue-sort plugin plays the same part.
pub(crate) fn placement_order(tasks: &[Task], order: &mut Vec<usize>) {
    order.clear();
    order.extend(0..tasks.len());
    // The batch index makes every key distinct, so the unstable sort (which needs no
    // buffer) gives the one order there is.
    order.sort_unstable_by_key(|&k| {
        let r = tasks[k].requirements();
        (
            std::cmp::Reverse(r.priority()),
            r.deadline().is_none(),
            r.deadline(),
            k,
        )
    });
}

#[cfg(test)]
fn _object_safe(_: &dyn Assigner, _: &mut dyn Admission) {}
