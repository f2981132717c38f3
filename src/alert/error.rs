//! [`AlertError`]: what the alerting domain refuses.

use std::time::Duration;

use super::{Fingerprint, Severity, SilenceId};
use crate::clock::Timestamp;

/// An error from the alerting domain. The configuration or manager that returned it
/// is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A call gave a time past [`Timestamp::HORIZON`], which no clock reads (the
    /// saturated sum of a time and a very long duration, say): taken as the latest
    /// time seen, it would page and escalate every later alert at once, or never.
    #[error(
        "{now} is past the latest time the alert manager takes as now ({})",
        Timestamp::HORIZON
    )]
    PastHorizon {
        /// The time given.
        now: Timestamp,
    },
    /// A route or escalation step sends to a receiver the configuration does not
    /// declare.
    #[error("`{route}` sends to unknown receiver {receiver:?}")]
    UnknownReceiver {
        /// Where: `route.routes[1]`, `route.escalation[0]`, ...
        route: String,
        /// The offending receiver (its first 64 characters, when longer).
        receiver: String,
    },
    /// A receiver is declared twice.
    #[error("receiver {receiver:?} is declared twice")]
    DuplicateReceiver {
        /// The offending receiver.
        receiver: String,
    },
    /// The root route names no receiver, so an alert matching no other route would go
    /// nowhere.
    #[error("`{route}` names no receiver (the root route must)")]
    MissingReceiver {
        /// Where.
        route: String,
    },
    /// A timeout or window is zero.
    #[error("`{field}` must be longer than zero")]
    ZeroDuration {
        /// The offending field, with its path.
        field: String,
    },
    /// A timeout, wait or window is longer than the alerting allows
    /// ([`MAX_ALERT_WAIT`](super::MAX_ALERT_WAIT)): a page held that long never
    /// comes, and a rule whose window is that long never lets go.
    #[error("`{field}` is {value:?}; it must be at most {max:?}")]
    TooLong {
        /// The offending field, with its path.
        field: String,
        /// The duration given.
        value: Duration,
        /// The longest allowed.
        max: Duration,
    },
    /// A count is below its minimum.
    #[error("`{field}` is {value}; it must be at least {min}")]
    TooSmall {
        /// The offending field, with its path.
        field: String,
        /// Its value.
        value: u64,
        /// The least it may be.
        min: u64,
    },
    /// A more severe alert would have longer to respond than a less severe one.
    #[error(
        "response deadline for {more_severe} ({more_severe_deadline:?}) is longer than for \
         {less_severe} ({less_severe_deadline:?})"
    )]
    DeadlinesOutOfOrder {
        /// The more severe level.
        more_severe: Severity,
        /// Its deadline.
        more_severe_deadline: Duration,
        /// The less severe level.
        less_severe: Severity,
        /// Its deadline.
        less_severe_deadline: Duration,
    },
    /// A matcher could not be read.
    #[error("bad matcher {matcher:?}: {reason}")]
    BadMatcher {
        /// The offending text.
        matcher: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A name (of an alert, a label, a receiver) is not valid.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What was being named.
        what: &'static str,
        /// The offending name (its first 64 characters, when longer).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A route, inhibition rule or cascade rule is not valid as a whole.
    #[error("`{rule}`: {reason}")]
    InvalidRule {
        /// Where: `route.routes[0]`, `inhibit[1]`, `cascades[0]`.
        rule: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A route sits deeper in the tree than
    /// [`MAX_ROUTE_DEPTH`](super::MAX_ROUTE_DEPTH) allows.
    #[error("`{route}` is {depth} routes below the root; at most {max} may be")]
    RouteTooDeep {
        /// Where: the path of the first route found too deep (its first 64
        /// characters and `…`, when longer).
        route: String,
        /// How many routes are above it.
        depth: usize,
        /// The most allowed.
        max: usize,
    },
    /// No firing alert has this fingerprint.
    #[error("no firing alert has fingerprint {fingerprint}")]
    UnknownAlert {
        /// The offending fingerprint.
        fingerprint: Fingerprint,
    },
    /// No active silence has this id (it never existed, or it already expired).
    #[error("no active silence {id}")]
    UnknownSilence {
        /// The offending id.
        id: SilenceId,
    },
    /// A silence without matchers would silence every alert.
    #[error("a silence needs at least one matcher (an empty one would silence every alert)")]
    EmptySilence,
    /// A silence would end before it starts.
    #[error("a silence until {until} ends before now ({now})")]
    SilenceEnded {
        /// The requested end.
        until: Timestamp,
        /// The manager's time.
        now: Timestamp,
    },
    /// Two different alerts have the same fingerprint (a 64-bit hash collision).
    #[error("fingerprint {fingerprint} of {new} is already taken by firing alert {existing}")]
    FingerprintCollision {
        /// The fingerprint.
        fingerprint: Fingerprint,
        /// The alert firing under it (its first 64 characters, when longer).
        existing: String,
        /// The alert refused (its first 64 characters, when longer).
        new: String,
    },
    /// An [`AlertManagerSnapshot`](super::AlertManagerSnapshot) has another version
    /// or holds a state the manager could not have reached.
    #[error("corrupt alert manager snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong, naming the offending value.
        reason: String,
    },
}
