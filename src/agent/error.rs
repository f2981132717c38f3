//! Errors of the `agent` domain.

use std::time::Duration;

use crate::id::AgentId;

use super::AgentStatus;

/// An agent could not do what was asked: the transport failed, it took too long, or it
/// refused.
///
/// A failure of the *work itself* (tests failed, the deploy was rolled back) is not an
/// `AgentError`: the agent reports it as [`Outcome::Failed`](super::Outcome::Failed)
/// inside an `Ok` [`WorkOutput`](super::WorkOutput). An `AgentError` means the agent
/// could not be asked or could not answer.
///
/// ```
/// use std::time::Duration;
/// use concord::agent::AgentError;
///
/// let e = AgentError::Timeout { after: Duration::from_secs(30) };
/// assert_eq!(e.to_string(), "agent timed out after 30s");
/// assert!(e.is_transient());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent could not be reached (connection refused, process gone).
    #[error("agent is unreachable: {reason}")]
    Unreachable {
        /// What the transport reported.
        reason: String,
    },
    /// The agent did not answer in time.
    #[error("agent timed out after {after:?}")]
    Timeout {
        /// How long the caller waited.
        after: Duration,
    },
    /// The agent refused the work (wrong kind, over its own limits, shutting down).
    #[error("agent rejected the work: {reason}")]
    Rejected {
        /// Why the agent refused.
        reason: String,
    },
    /// The agent broke while handling the request (crashed, answered nonsense).
    #[error("agent failed: {reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl AgentError {
    /// Whether trying again later may succeed without changing anything: true for
    /// [`Unreachable`](Self::Unreachable) and [`Timeout`](Self::Timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AgentError::Unreachable { .. } | AgentError::Timeout { .. }
        )
    }
}

/// An error from an [`AgentRegistry`](super::AgentRegistry). The registry is unchanged
/// whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No agent with this id is registered.
    #[error("{agent} is not registered")]
    UnknownAgent {
        /// The offending id.
        agent: AgentId,
    },
    /// An agent with this id is already registered.
    #[error("{agent} is already registered")]
    DuplicateAgent {
        /// The offending id.
        agent: AgentId,
    },
    /// The profile cannot be registered.
    #[error("profile of {agent} is invalid: {reason}")]
    InvalidProfile {
        /// The agent the profile describes.
        agent: AgentId,
        /// What is wrong with it.
        reason: String,
    },
    /// The status lifecycle does not allow this change (see
    /// [`AgentStatus::can_transition_to`]).
    #[error("{agent} cannot go from {from} to {to}")]
    IllegalTransition {
        /// The agent.
        agent: AgentId,
        /// Its current status.
        from: AgentStatus,
        /// The status asked for.
        to: AgentStatus,
    },
    /// Every task slot of the agent is taken, so it cannot be
    /// [`Available`](AgentStatus::Available) or start another task.
    #[error("{agent} has no free task slot ({running} of {max_tasks} running)")]
    NoFreeSlot {
        /// The agent.
        agent: AgentId,
        /// Tasks it runs now.
        running: u32,
        /// Its slots.
        max_tasks: u32,
    },
    /// The agent is not [`Available`](AgentStatus::Available), so it cannot start a
    /// task.
    #[error("{agent} is {status}, not available")]
    NotAvailable {
        /// The agent.
        agent: AgentId,
        /// Its current status.
        status: AgentStatus,
    },
    /// A task was reported finished on an agent that runs none.
    #[error("{agent} runs no task")]
    NoRunningTask {
        /// The agent.
        agent: AgentId,
    },
    /// The agent still runs tasks, so it cannot be deregistered.
    #[error("{agent} still runs {running} tasks")]
    AgentBusy {
        /// The agent.
        agent: AgentId,
        /// Tasks it runs now.
        running: u32,
    },
    /// A snapshot is not consistent with itself or has an unknown version.
    #[error("corrupt registry snapshot: {reason}")]
    CorruptSnapshot {
        /// What is inconsistent.
        reason: String,
    },
}
