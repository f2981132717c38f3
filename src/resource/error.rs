//! Errors of the `resource` domain.

use crate::id::{AgentId, AllocationId, NameError, RequestId};

/// An amount of a resource that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The text is empty.
    #[error("amount is empty")]
    Empty,
    /// The text is negative: resources are never negative.
    #[error("amount {text:?} is negative")]
    Negative {
        /// The offending text.
        text: String,
    },
    /// The text is not a decimal number.
    #[error("amount {text:?} is not a number")]
    NotANumber {
        /// The offending text.
        text: String,
    },
    /// The amount does not fit in 64 bits of base units.
    #[error("amount {text:?} overflows")]
    Overflow {
        /// The offending text.
        text: String,
    },
    /// The amount is not a whole number of base units (`0.0001` cpu, `0.5B`).
    #[error("amount {text:?} is finer than one base unit")]
    TooPrecise {
        /// The offending text.
        text: String,
    },
    /// A byte amount without a unit (`2` rather than `2Gi`).
    #[error("amount {text:?} needs a unit (B, Ki, Mi, Gi, k, M, G, ...)")]
    MissingUnit {
        /// The offending text.
        text: String,
    },
    /// A suffix that is not a unit of this resource.
    #[error("amount {text:?} has unknown unit {unit:?}")]
    UnknownUnit {
        /// The offending text.
        text: String,
        /// The suffix that was not recognized.
        unit: String,
    },
}

/// An error computing with or parsing [`Resources`](super::Resources).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// An amount of `resource` could not be parsed. The message names the text and
    /// why (`invalid amount for cpu: amount "NaN" is not a number`): a host that
    /// logs only the error's `Display` still sees the bad value. The reason is also
    /// the error's `source`.
    #[error("invalid amount for {resource}: {source}")]
    Amount {
        /// The resource the amount was for.
        resource: String,
        /// What was wrong with it.
        #[source]
        source: AmountError,
    },
    /// A resource name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An entry of a resource list is not `name=amount`.
    #[error("resource entry {entry:?} is not of the form name=amount")]
    Malformed {
        /// The offending entry.
        entry: String,
    },
    /// The same resource appears twice in one list.
    #[error("resource {resource} is given twice")]
    Duplicate {
        /// The repeated resource.
        resource: String,
    },
    /// Adding amounts of `resource` overflowed 64 bits.
    #[error("adding {resource} overflows")]
    Overflow {
        /// The resource whose sum overflowed.
        resource: String,
    },
    /// Subtracting more of `resource` than there is.
    #[error("cannot take {take} of {resource} from {have}")]
    Underflow {
        /// The resource.
        resource: String,
        /// How much there was.
        have: u64,
        /// How much was to be taken.
        take: u64,
    },
}

/// `value` of the resource named `resource` as a person reads it (`9Ei`, `1500m`,
/// the units the resource is parsed in), or the plain number for a name of the
/// ledger's own bookkeeping (task slots). The fields keep base units.
fn amount(resource: &str, value: u64) -> String {
    match super::ResourceName::new(resource) {
        Ok(name) => name.format_amount(value),
        Err(_) => value.to_string(),
    }
}

/// An error from a [`ResourceLedger`](super::ResourceLedger). The ledger is unchanged
/// whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The agent has no capacity registered in the ledger.
    #[error("{agent} is not in the ledger")]
    UnknownAgent {
        /// The offending agent.
        agent: AgentId,
    },
    /// The agent is already in the ledger.
    #[error("{agent} is already in the ledger")]
    DuplicateAgent {
        /// The offending agent.
        agent: AgentId,
    },
    /// No live allocation has this id (never issued, or already released).
    #[error("{allocation} is not a live allocation")]
    UnknownAllocation {
        /// The offending id.
        allocation: AllocationId,
    },
    /// No waiting request has this id.
    #[error("{request} is not waiting in the queue")]
    UnknownRequest {
        /// The offending id.
        request: RequestId,
    },
    /// The agent lacks free capacity now (the request may be queued instead).
    #[error(
        "{agent} lacks {resource}: needs {}, {} free",
        amount(.resource, *.needed),
        amount(.resource, *.free)
    )]
    Insufficient {
        /// The agent asked for.
        agent: AgentId,
        /// The first resource short.
        resource: String,
        /// How much was needed.
        needed: u64,
        /// How much is free for this request (after reservations).
        free: u64,
    },
    /// The request exceeds what the agent (or the pool) could ever hold, so it would
    /// wait forever.
    #[error(
        "{agent} can never hold {} of {resource}: capacity is {}",
        amount(.resource, *.needed),
        amount(.resource, *.capacity)
    )]
    ExceedsCapacity {
        /// The agent asked for.
        agent: AgentId,
        /// The resource.
        resource: String,
        /// How much was needed.
        needed: u64,
        /// The most there could ever be.
        capacity: u64,
    },
    /// A request named no candidate agent.
    #[error("request names no candidate agent")]
    NoCandidates,
    /// Changing a capacity would leave less than is already allocated.
    #[error(
        "{agent} has {} of {resource} allocated; capacity {} is too small",
        amount(.resource, *.allocated),
        amount(.resource, *.capacity)
    )]
    CapacityBelowAllocated {
        /// The agent.
        agent: AgentId,
        /// The resource.
        resource: String,
        /// What is allocated now.
        allocated: u64,
        /// The capacity asked for.
        capacity: u64,
    },
    /// The agent still holds allocations or is named by waiting requests.
    #[error("{agent} still holds {allocations} allocations")]
    AgentInUse {
        /// The agent.
        agent: AgentId,
        /// How many live allocations it holds.
        allocations: usize,
    },
    /// A snapshot is not consistent with itself or has an unknown version.
    #[error("corrupt ledger snapshot: {reason}")]
    CorruptSnapshot {
        /// What is inconsistent.
        reason: String,
    },
    /// An amount computation failed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// An error from a [`ResourcePredictor`](super::ResourcePredictor).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PredictorError {
    /// A configuration value is out of range.
    #[error("predictor setting {setting} = {value} is out of range ({expected})")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// The offending value.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
    /// A task kind name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
}
