//! [`Silence`]: alerts a person has said not to page for, until a time.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::matcher::all_match;
use super::{Alert, Matcher};
use crate::clock::Timestamp;

/// Identifies a silence. Issued by the [`AlertManager`](super::AlertManager) from 1;
/// never reused by the same manager, including one restored from its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SilenceId(u64);

impl SilenceId {
    /// The id with the given number.
    pub const fn new(raw: u64) -> Self {
        SilenceId(raw)
    }

    /// The id's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SilenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "silence#{}", self.0)
    }
}

/// Alerts matching every one of `matchers` do not page (nor escalate, nor re-page)
/// from `created_at` until `until`; those still firing then page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Silence {
    /// Its id.
    pub id: SilenceId,
    /// What it silences (at least one matcher).
    pub matchers: Vec<Matcher>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expires.
    pub until: Timestamp,
    /// Who made it.
    pub by: String,
}

impl Silence {
    /// Whether it silences `alert` (while it lasts).
    pub fn matches(&self, alert: &Alert) -> bool {
        all_match(&self.matchers, alert)
    }
}
