//! Errors of the `policy` domain: a rule set that cannot be built.
//!
//! Validating a proposal never fails: a proposal that breaks a rule is a
//! [`Violation`](super::Violation), a value, not an error. Only configuration can be
//! wrong, and that is caught when a [`PolicySet`](super::PolicySet) is built or loaded.

/// A [`PolicySet`](super::PolicySet) or one of its rules is misconfigured.
///
/// Every variant names the offending value.
///
/// ```
/// use concord::policy::{PolicyError, PolicySet, UtilizationCap};
///
/// let err = PolicySet::default().with_rule(UtilizationCap::new(1.5)).unwrap_err();
/// assert_eq!(err, PolicyError::InvalidUtilizationCap { max: 1.5 });
/// assert_eq!(err.to_string(), "utilization cap 1.5 is outside (0, 1]");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A utilization cap is not a number in (0, 1] (NaN, zero, negative, above one).
    #[error("utilization cap {max} is outside (0, 1]")]
    InvalidUtilizationCap {
        /// The offending cap.
        max: f64,
    },
    /// A maximum of tasks per agent is zero, so no agent could ever take a task.
    #[error("max tasks per agent is 0, so no agent could take a task")]
    ZeroMaxTasks,
    /// A separation-of-duties pair names an empty duty.
    #[error("separation of duties pair {pair:?} has an empty duty")]
    EmptyDuty {
        /// The offending pair, as written.
        pair: [String; 2],
    },
    /// The safe-mode allow-list holds an empty duty.
    #[error("safe mode allow-list entry #{index} ({duty:?}) is an empty duty")]
    EmptyAllowedDuty {
        /// The entry's position in the list, from zero.
        index: usize,
        /// The entry, as written.
        duty: String,
    },
    /// A host rule was given an empty name.
    #[error("custom policy rule name {name:?} is empty")]
    EmptyRuleName {
        /// The name, as given.
        name: String,
    },
}
