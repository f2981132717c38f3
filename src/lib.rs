//! # concord
//!
//! Embeddable, sans-I/O multi-agent coordination. (Crate docs are written when the
//! foundation lands.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod agent;
pub mod clock;
pub mod error;
mod hash;
pub mod id;
pub mod resource;
pub mod task;

pub use agent::{
    Agent, AgentError, AgentExt, AgentHealth, AgentProfile, AgentRegistry, AgentStatus,
    CapabilityCatalog, CapabilitySet, Outcome, Ping, RegistryError, RegistrySnapshot, WorkItem,
    WorkOutput,
};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, Result};
pub use id::{AgentId, AllocationId, Capability, NameError, RequestId, Role, TaskId};
pub use resource::{
    AllocationRequest, LedgerError, ResourceError, ResourceLedger, ResourceName, ResourcePredictor,
    Resources,
};
pub use task::{
    Analyzed, Claim, ClaimMode, Priority, Requirements, RuleBasedAnalyzer, RuleSet, Task,
    TaskAnalyzer, TaskError,
};
