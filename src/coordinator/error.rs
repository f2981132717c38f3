//! [`CoordinatorError`]: what the coordinator refuses, and why.

use crate::agent::RegistryError;
use crate::assignment::AssignmentError;
use crate::clock::Timestamp;
use crate::conflict::{ConflictError, ConflictId};
use crate::id::{AgentId, TaskId};
use crate::resource::LedgerError;
use crate::task::TaskError;

/// An error from the coordinator ([`Core`](super::Core) or its
/// [`Coordinator`](super::Coordinator) facade). Its state is unchanged whenever one is
/// returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The registry refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The ledger refused.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The task could not be analyzed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The assigner refused its input.
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    /// The conflict domain refused an operation.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// The task is already assigned or waiting.
    #[error("{task} is already assigned or waiting")]
    DuplicateTask {
        /// The offending task.
        task: TaskId,
    },
    /// The task is neither running nor waiting.
    #[error("{task} is neither running nor waiting")]
    UnknownTask {
        /// The offending task.
        task: TaskId,
    },
    /// The task runs, and the call takes a waiting one: `cancel` takes back a task
    /// that waits; a running one ends with `complete` or `release`.
    #[error("{task} is running, not waiting: `complete` or `release` ends it")]
    TaskRunning {
        /// The task.
        task: TaskId,
    },
    /// The task waits, and the call takes a running one: `complete` and `release`
    /// end a running task; a waiting one is taken back with `cancel`.
    #[error("{task} is waiting, not running: `cancel` takes it back")]
    TaskWaiting {
        /// The task.
        task: TaskId,
    },
    /// The task runs and was not interrupted: only an interrupted task is handed
    /// back (see [`Core::hand_back`](super::Core::hand_back)); a running one ends
    /// with `complete` or `release`.
    #[error("{task} runs on {agent} and was not interrupted: `complete` or `release` ends it")]
    NotInterrupted {
        /// The task.
        task: TaskId,
        /// The agent it runs on.
        agent: AgentId,
    },
    /// The agent is not registered.
    #[error("{agent} is not registered")]
    UnknownAgent {
        /// The offending agent.
        agent: AgentId,
    },
    /// The conflict is not known (never opened, or forgotten).
    #[error("{conflict} is not known")]
    UnknownConflict {
        /// The offending conflict.
        conflict: ConflictId,
    },
    /// The conflict is already closed: resolved, or decided.
    #[error("{conflict} is already closed ({state})")]
    ConflictClosed {
        /// The offending conflict.
        conflict: ConflictId,
        /// How it closed.
        state: String,
    },
    /// [`Decider::Default`](super::Decider::Default) given as the maker of a decision
    /// by hand: the escalation ladder's default decides only itself, at the human's
    /// deadline, and a record saying it decided earlier would be false.
    #[error(
        "{conflict} cannot be decided by hand as the escalation ladder's default; the orchestrator or a human decides"
    )]
    DefaultDecidesOnlyAtTheDeadline {
        /// The conflict the decision was for.
        conflict: ConflictId,
    },
    /// A call gave a time earlier than one the core has already seen: the core's
    /// deadlines and the journal's order rest on time never going back.
    #[error("time went back: {now} is earlier than {seen}, already seen")]
    TimeWentBack {
        /// The time given.
        now: Timestamp,
        /// The latest time seen before.
        seen: Timestamp,
    },
    /// A call gave a time past [`Timestamp::HORIZON`], which no clock reads: taken as
    /// the latest time seen, it would refuse every later command at the real time.
    #[error(
        "{now} is past the latest time a coordinator takes as now ({})",
        Timestamp::HORIZON
    )]
    PastHorizon {
        /// The time given.
        now: Timestamp,
    },
    /// The journal refused, or the core could not be rebuilt from it.
    #[error(transparent)]
    Journal(#[from] super::JournalError),
    /// [`Core::release_quarantine`](super::Core::release_quarantine) of an agent
    /// that is not quarantined.
    #[error("{agent} is not quarantined (it is {status})")]
    NotQuarantined {
        /// The agent.
        agent: AgentId,
        /// Its status.
        status: crate::agent::AgentStatus,
    },
    /// [`Core::set_agent_status`](super::Core::set_agent_status) on a quarantined
    /// agent: only [`Core::release_quarantine`](super::Core::release_quarantine), an
    /// audited decision, takes it out of quarantine.
    #[error("{agent} is quarantined: release it (an audited decision) before it can be {to}")]
    StillQuarantined {
        /// The agent.
        agent: AgentId,
        /// The status asked for.
        to: crate::agent::AgentStatus,
    },
    /// [`Core::resume_communications`](super::Core::resume_communications) while
    /// external communications are not stopped.
    #[error("external communications are not stopped")]
    CommunicationsNotStopped,
    /// A capability named as external
    /// ([`CoordinatorBuilder::external_capabilities`](super::CoordinatorBuilder::external_capabilities))
    /// is not a valid capability name.
    #[error("external capability {capability:?}: {source}")]
    InvalidExternalCapability {
        /// The name as given.
        capability: String,
        /// Why it is not valid.
        source: crate::id::NameError,
    },
    /// A task's kind, description or claim is not text the coordinator takes: a kind of
    /// more than [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes or with a control or
    /// invisible character, a description of more than
    /// [`MAX_DESCRIPTION_LEN`](crate::id::MAX_DESCRIPTION_LEN) bytes, a claim of more
    /// than [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN) bytes, with a control or
    /// invisible character, or naming nothing
    /// ([`NameError::NamesNothing`](crate::id::NameError::NamesNothing)).
    #[error("task {task}: {source}")]
    InvalidTaskText {
        /// The task.
        task: TaskId,
        /// What is wrong, naming the text.
        source: crate::id::NameError,
    },
    /// A group's name (a workflow run's id) is empty or only whitespace, longer than
    /// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes, or holds a control or invisible
    /// character.
    #[error("group: {source}")]
    InvalidGroup {
        /// What is wrong, naming the text.
        source: crate::id::NameError,
    },
    /// A safe-mode rule's setting is out of range.
    #[error("safe-mode rule `{rule}`: {problem}")]
    InvalidSafeModeRule {
        /// The rule.
        rule: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A snapshot is not consistent.
    #[error("corrupt coordinator snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong.
        reason: String,
    },
}
