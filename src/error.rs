//! The crate's error type.
//!
//! Each domain has a narrow error enum; functions return the narrowest one that fits.
//! [`Error`] wraps them all for hosts that want one type. Wrapping them, it imports
//! every domain, so it sits at the top of the crate, above the coordinator and the
//! workflow drivers: no module of the crate imports it (only the crate root and the
//! prelude re-export it).

use crate::agent::{AgentError, RegistryError};
use crate::alert::AlertError;
use crate::assignment::AssignmentError;
use crate::audit::AuditError;
use crate::clock::ParseTimestampError;
use crate::conflict::ConflictError;
use crate::coordinator::CoordinatorError;
use crate::id::AgentId;
pub use crate::id::NameError;
use crate::maintenance::MaintenanceError;
use crate::memory::MemoryError;
use crate::monitor::MonitorError;
use crate::policy::PolicyError;
use crate::resource::{LedgerError, PredictorError, ResourceError};
use crate::task::TaskError;
use crate::workflow::WorkflowError;

/// Any error from `concord`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name was invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Text could not be read as a timestamp.
    #[error(transparent)]
    Timestamp(#[from] ParseTimestampError),
    /// An amount or resource computation failed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The resource ledger refused an operation.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A resource predictor was misconfigured.
    #[error(transparent)]
    Predictor(#[from] PredictorError),
    /// The agent registry refused an operation.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An agent could not do what was asked.
    #[error("agent {agent} failed")]
    Agent {
        /// The agent.
        agent: AgentId,
        /// What went wrong.
        #[source]
        source: AgentError,
    },
    /// An assigner refused its input.
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    /// The coordinator refused an operation.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A policy set was misconfigured.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A task could not be analyzed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A workflow definition, run or run snapshot was refused.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The conflict domain refused an operation.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// An alert configuration, alerting operation or alert manager snapshot was
    /// refused.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// Agent memory refused an operation (a fenced write, a corrupt entry or backup)
    /// or its store failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A monitoring setting was out of range, or two aggregates did not merge.
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    /// An audit chain did not verify, or an incident operation was refused.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A maintenance schedule, completion or snapshot was refused.
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
