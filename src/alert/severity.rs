//! [`Severity`] and the [`ResponseDeadlines`] that go with each.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AlertError;
use super::model::shorten;
use crate::serde_util::duration_ms;

/// How urgent an alert is: the alert configurations' critical, high and medium
/// priorities, plus low for what can wait a business day.
///
/// Ordered from least to most severe.
///
/// ```
/// use concord::alert::Severity;
///
/// assert!(Severity::Critical > Severity::High);
/// assert_eq!(Severity::Medium.to_string(), "medium");
/// assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Can wait for the next business day.
    Low,
    /// A response within four hours.
    Medium,
    /// A response within one hour.
    High,
    /// An immediate response.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The severity's name, as serialized and as matchers see it (`low`, `medium`,
    /// `high`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = AlertError;

    /// Reads a severity's name, as [`as_str`](Severity::as_str) writes it.
    ///
    /// # Errors
    /// [`AlertError::InvalidName`] for any other text, naming its first 64
    /// characters.
    fn from_str(s: &str) -> Result<Severity, AlertError> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| AlertError::InvalidName {
                what: "severity",
                name: shorten(s),
                reason: "expected low, medium, high or critical",
            })
    }
}

/// How long each severity gives its receiver to respond, as data.
///
/// | alert configurations | severity | default |
/// |---|---|---|
/// | critical alerts (immediate response) | [`Severity::Critical`] | 0 (at once) |
/// | high priority alerts (1 hour response) | [`Severity::High`] | 1 h |
/// | medium priority alerts (4 hour response) | [`Severity::Medium`] | 4 h |
/// | (not in the procedures) | [`Severity::Low`] | 24 h: the next business day |
///
/// The deadline counts from an alert's first page, the moment a receiver was told,
/// not from its firing: time spent in a group wait, silenced or inhibited is not held
/// against the receiver. Until the deadline passes nothing pages for the alert again
/// (no escalation, no re-page); once it has passed unacknowledged, the alert climbs
/// its route's escalation chain. A deadline of zero ("at once") means the chain
/// starts as soon as its first step's own delay allows.
///
/// ```
/// use std::time::Duration;
/// use concord::alert::{ResponseDeadlines, Severity};
///
/// let d = ResponseDeadlines::default();
/// assert_eq!(d.get(Severity::High), Duration::from_secs(3600));
/// assert_eq!(d.get(Severity::Critical), Duration::ZERO);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseDeadlines {
    #[serde(with = "duration_ms")]
    critical: Duration,
    #[serde(with = "duration_ms")]
    high: Duration,
    #[serde(with = "duration_ms")]
    medium: Duration,
    #[serde(with = "duration_ms")]
    low: Duration,
}

impl Default for ResponseDeadlines {
    fn default() -> Self {
        ResponseDeadlines {
            critical: Duration::ZERO,
            high: Duration::from_secs(3600),
            medium: Duration::from_secs(4 * 3600),
            low: Duration::from_secs(24 * 3600),
        }
    }
}

impl ResponseDeadlines {
    /// The deadline for `severity`.
    pub fn get(&self, severity: Severity) -> Duration {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }

    /// Sets the deadline for `severity`.
    pub fn with(mut self, severity: Severity, deadline: Duration) -> Self {
        *match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
        } = deadline;
        self
    }

    /// Checks that a more severe alert never has longer to wait than a less severe
    /// one.
    ///
    /// # Errors
    /// [`AlertError::DeadlinesOutOfOrder`], naming the two severities.
    pub fn validate(&self) -> Result<(), AlertError> {
        for pair in Severity::ALL.windows(2) {
            let (less, more) = (pair[0], pair[1]);
            if self.get(more) > self.get(less) {
                return Err(AlertError::DeadlinesOutOfOrder {
                    more_severe: more,
                    more_severe_deadline: self.get(more),
                    less_severe: less,
                    less_severe_deadline: self.get(less),
                });
            }
        }
        Ok(())
    }
}
