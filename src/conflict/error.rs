//! [`ConflictError`]: what the conflict domain refuses.

use std::time::Duration;

use super::{ConflictId, ConflictState, HumanDecision};
use crate::clock::Timestamp;
use crate::id::TaskId;

/// An error from the conflict domain. The detector, policy or manager that returned it
/// is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConflictError {
    /// No conflict has this id.
    #[error("unknown conflict {id}")]
    UnknownConflict {
        /// The offending id.
        id: ConflictId,
    },
    /// A conflict with this id is already open or closed in the manager.
    #[error("{id} is already known")]
    DuplicateConflict {
        /// The offending id.
        id: ConflictId,
    },
    /// The conflict is already closed; it takes no more resolutions.
    #[error("{id} is already closed ({state})")]
    AlreadyClosed {
        /// The conflict.
        id: ConflictId,
        /// Its final state.
        state: ConflictState,
    },
    /// An answer came at or after the time the escalation ladder's default decision
    /// applies to the conflict, before a tick applied it: the default stands (the
    /// next tick applies it) whoever answers, as it would had the host ticked first
    /// ([`AlreadyClosed`](Self::AlreadyClosed) then), so that what happens does not
    /// depend on when the host ticked.
    #[error(
        "{id} took answers until {deadline}: the escalation ladder's default \
         ({default}) applies from then"
    )]
    DecisionTooLate {
        /// The conflict.
        id: ConflictId,
        /// When the default applies (or applied).
        deadline: Timestamp,
        /// The default decision.
        default: HumanDecision,
    },
    /// A claim names nothing: empty, or only `/`.
    #[error("claim on {resource:?} names nothing")]
    EmptyClaim {
        /// The offending name.
        resource: String,
    },
    /// A claim's name is longer than [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN)
    /// bytes or holds a control or invisible character.
    #[error("{source}")]
    InvalidClaim {
        /// What is wrong, naming the claim (its first 64 characters when it is long).
        source: crate::id::NameError,
    },
    /// No such claim is held by this task.
    #[error("{task} holds no claim on {resource:?}")]
    UnknownClaim {
        /// The task.
        task: TaskId,
        /// The claimed name.
        resource: String,
    },
    /// The detector holds as many distinct names or claims as it can index.
    #[error("conflict detector is full ({limit} entries)")]
    Full {
        /// The limit.
        limit: usize,
    },
    /// A policy duration is zero.
    #[error("escalation policy `{field}` must be longer than zero")]
    ZeroDuration {
        /// The offending field.
        field: &'static str,
    },
    /// Two policy durations are in the wrong order.
    #[error(
        "escalation policy `{earlier}` ({earlier_value:?}) must be shorter than `{later}` ({later_value:?})"
    )]
    OutOfOrder {
        /// The rung that must come first.
        earlier: &'static str,
        /// Its value.
        earlier_value: Duration,
        /// The rung that must come later.
        later: &'static str,
        /// Its value.
        later_value: Duration,
    },
    /// A policy threshold is zero.
    #[error("escalation policy `{field}` must be at least 1")]
    ZeroThreshold {
        /// The offending field.
        field: &'static str,
    },
    /// A [`ConflictManagerSnapshot`](super::ConflictManagerSnapshot) has another version
    /// or holds a state the manager could not have reached.
    #[error("corrupt conflict manager snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong, naming the offending value.
        reason: String,
    },
}
