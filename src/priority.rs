//! [`Priority`]: how urgent a task is.
//!
//! A task's priority is a plain number that two layers read: the resource ledger's
//! fair queue orders waiting requests by it, and tasks carry it in their requirements.
//! It lives here, below both, so that `resource` need not import `task`; the public
//! path is [`concord::task::Priority`](crate::task::Priority) (and
//! `concord::Priority`). This module must never import any other module of the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How urgent a task is. Higher is more urgent.
///
/// ```
/// use concord::Priority;
/// assert!(Priority::CRITICAL > Priority::HIGH);
/// assert_eq!(Priority::default(), Priority::NORMAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub u32);

impl Priority {
    /// Background work.
    pub const LOW: Priority = Priority(10);
    /// The default.
    pub const NORMAL: Priority = Priority(50);
    /// Ahead of normal work.
    pub const HIGH: Priority = Priority(80);
    /// Ahead of everything else.
    pub const CRITICAL: Priority = Priority(100);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Priority::LOW => f.write_str("low"),
            Priority::NORMAL => f.write_str("normal"),
            Priority::HIGH => f.write_str("high"),
            Priority::CRITICAL => f.write_str("critical"),
            Priority(p) => write!(f, "{p}"),
        }
    }
}
