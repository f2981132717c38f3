//! Errors of the `maintenance` domain.

use std::time::Duration;

use crate::clock::Timestamp;

/// The longest prefix of a refused name or text an error keeps: a hostile megabyte
/// name must not become a megabyte error message.
const SHOWN: usize = 80;

/// `s`, cut to [`SHOWN`] characters with an ellipsis when longer.
pub(super) fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// Why a schedule, a completion or a snapshot was refused. Each variant names the
/// offending value; a tracker that returned one is unchanged.
///
/// ```
/// use concord::maintenance::{MaintenanceError, TimeOfDay};
///
/// let refused = TimeOfDay::new(25, 0).unwrap_err();
/// assert_eq!(refused, MaintenanceError::InvalidHour { hour: 25 });
/// assert_eq!(refused.to_string(), "hour 25 is out of range: 0 to 23");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    /// An hour of the day above 23.
    #[error("hour {hour} is out of range: 0 to 23")]
    InvalidHour {
        /// The hour given.
        hour: u8,
    },
    /// A minute above 59.
    #[error("minute {minute} is out of range: 0 to 59")]
    InvalidMinute {
        /// The minute given.
        minute: u8,
    },
    /// A time of day that is not written `HH:MM`.
    #[error("time of day {text:?} is not written HH:MM")]
    MalformedTime {
        /// The text (its first 80 characters, when longer).
        text: String,
    },
    /// A weekday number outside 1 (Monday) to 7 (Sunday).
    #[error("weekday {weekday} is out of range: 1 (Monday) to 7 (Sunday)")]
    InvalidWeekday {
        /// The number given.
        weekday: u8,
    },
    /// A day of the month outside 1 to 31.
    #[error("day of month {day} is out of range: 1 to 31")]
    InvalidDayOfMonth {
        /// The day given.
        day: u8,
    },
    /// An item name that is empty, too long, or holds a control character (which
    /// would let it forge lines in a report) or an invisible one (which would make
    /// it another item that reads the same).
    #[error("maintenance item name {name:?} is invalid: {problem}")]
    InvalidName {
        /// The name (its first 80 characters, when longer).
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An item whose grace period is zero: it would be overdue the moment it fell due.
    #[error("maintenance item {item:?} has a zero grace period")]
    ZeroGrace {
        /// The item.
        item: String,
    },
    /// An item whose grace period outlasts the shortest interval between its
    /// occurrences: one occurrence would still be in its grace when the next fell due.
    #[error(
        "maintenance item {item:?} has a grace period of {grace:?}, longer than the {period:?} between its occurrences"
    )]
    GraceTooLong {
        /// The item.
        item: String,
        /// The grace period given.
        grace: Duration,
        /// The shortest interval between two of its occurrences.
        period: Duration,
    },
    /// Two items (or two completions in a snapshot) share a name.
    #[error("maintenance item {name:?} appears twice")]
    DuplicateItem {
        /// The name.
        name: String,
    },
    /// No item of the schedule has this name.
    #[error("no maintenance item is named {name:?}")]
    UnknownItem {
        /// The name asked for (its first 80 characters, when longer).
        name: String,
    },
    /// A completion dated before the item's last one: time would run backwards.
    #[error("maintenance item {item:?} completed at {at}, before its last completion at {last}")]
    CompletedBeforeLast {
        /// The item.
        item: String,
        /// The time given.
        at: Timestamp,
        /// The item's last completion.
        last: Timestamp,
    },
    /// A completion in a snapshot that answers an occurrence the tracker could not
    /// have had it answer: not after the tracker's start, or after the completion
    /// itself.
    #[error(
        "maintenance item {item:?} completed at {at} says it answered the occurrence at \
         {answered}; an answered occurrence falls after the tracking's start ({start}) and \
         at or before its completion"
    )]
    ImpossibleCompletion {
        /// The item (its first 80 characters, when longer).
        item: String,
        /// When the completion says it was done.
        at: Timestamp,
        /// The occurrence it says it answered.
        answered: Timestamp,
        /// When the snapshot's tracking began.
        start: Timestamp,
    },
    /// A restored completion's `by` or `note` is not what the tracker keeps: one
    /// line of at most [`MAX_NOTE_LEN`](crate::id::MAX_NOTE_LEN) bytes, as
    /// [`Maintenance::complete`](super::Maintenance::complete) cuts them.
    #[error(
        "the completion of {item:?}: its {field} is not one line of at most {max} bytes \
         ({bytes} bytes)",
        max = crate::id::MAX_NOTE_LEN
    )]
    NotANote {
        /// The item (its first 80 characters, when longer).
        item: String,
        /// `by` or `note`.
        field: &'static str,
        /// Its length.
        bytes: usize,
    },
    /// A snapshot written by a version of the tracker this build cannot read.
    #[error(
        "maintenance snapshot version {version} is not supported: this build reads {supported}"
    )]
    UnsupportedSnapshot {
        /// The snapshot's version.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
}
