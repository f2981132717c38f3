//! Errors of the `assignment` domain.

use crate::id::{AgentId, TaskId};

use super::lap::LapError;

/// An assignment that could not be computed. Nothing is assigned when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AssignmentError {
    /// The fleet has no agents at all.
    #[error("no agents to assign to")]
    NoAgents,
    /// The same task appears twice in one batch.
    #[error("{task} appears twice in the batch")]
    DuplicateTask {
        /// The repeated task.
        task: TaskId,
    },
    /// A task or setting names an agent the fleet does not know.
    #[error("{agent} is not in the fleet")]
    UnknownAgent {
        /// The offending agent.
        agent: AgentId,
    },
    /// A scoring weight is negative, NaN or infinite, or every weight is zero.
    #[error("score weight {name} = {value} is invalid (finite and >= 0, not all zero)")]
    InvalidWeight {
        /// The scorer's name.
        name: String,
        /// The offending weight.
        value: f64,
    },
    /// A host scorer returned a score that is not finite.
    #[error("scorer {name} gave {value} for {task} on {agent} (scores must be finite)")]
    InvalidScore {
        /// The scorer's name.
        name: String,
        /// The task.
        task: TaskId,
        /// The agent.
        agent: AgentId,
        /// The offending score.
        value: f64,
    },
    /// The linear assignment solver refused its input.
    #[error(transparent)]
    Lap(#[from] LapError),
}
