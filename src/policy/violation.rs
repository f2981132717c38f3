//! [`Violation`]: what a rule found wrong with a proposal, and how bad it is.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SystemMode;
use crate::agent::AgentStatus;
use crate::id::{AgentId, Capability, Role, TaskId};
use crate::resource::ResourceName;

/// How bad a [`Violation`] is. [`Error`](Self::Error) and
/// [`Critical`](Self::Critical) block the assignment; [`Info`](Self::Info) and
/// [`Warning`](Self::Warning) are reported but let it through.
///
/// ```
/// use concord::policy::Severity;
///
/// assert!(Severity::Critical > Severity::Error);
/// assert!(Severity::Error.is_blocking());
/// assert!(!Severity::Warning.is_blocking());
/// assert_eq!(Severity::Warning.to_string(), "warning");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; allowed.
    Info,
    /// Worth a look; allowed.
    Warning,
    /// Not allowed.
    Error,
    /// Not allowed, and a sign that something upstream is wrong (an unknown or
    /// quarantined agent, an assignment during safe mode).
    Critical,
}

impl Severity {
    /// Whether a violation of this severity blocks the assignment: `error` and above.
    pub const fn is_blocking(self) -> bool {
        matches!(self, Severity::Error | Severity::Critical)
    }

    /// The severity's name, as serialized (`info`, `warning`, `error`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule's objection to one proposal: which rule, how bad, which agent and task,
/// and why, in words and (for the built-in rules) as structured detail.
///
/// Serde data, so a host can journal it, show it to an operator or route it to an
/// alert. Its `Display` is one line:
///
/// ```
/// use concord::policy::{Severity, Violation};
/// use concord::{AgentId, TaskId};
///
/// let v = Violation::new(
///     "utilization_cap",
///     Severity::Error,
///     AgentId::new(3),
///     TaskId::new(9),
///     "agent#3 would reach 97.5% memory with task#9 (cap 95%)",
/// );
/// assert!(v.is_blocking());
/// assert_eq!(
///     v.to_string(),
///     "utilization_cap (error): agent#3 would reach 97.5% memory with task#9 (cap 95%)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Violation {
    /// The rule's name (`utilization_cap`, or the name a host gave its own rule).
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// The agent proposed.
    pub agent: AgentId,
    /// The task proposed.
    pub task: TaskId,
    /// What is wrong, for people: names the agent and the task.
    pub message: String,
    /// What is wrong, for programs (set by the built-in rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ViolationDetail>,
}

impl Violation {
    /// A violation of `rule` by giving `task` to `agent`, without structured detail.
    pub fn new(
        rule: impl Into<String>,
        severity: Severity,
        agent: AgentId,
        task: TaskId,
        message: impl Into<String>,
    ) -> Self {
        Violation {
            rule: rule.into(),
            severity,
            agent,
            task,
            message: message.into(),
            detail: None,
        }
    }

    /// Sets the structured detail.
    pub fn with_detail(mut self, detail: ViolationDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Whether it blocks the assignment ([`Severity::is_blocking`]).
    pub fn is_blocking(&self) -> bool {
        self.severity.is_blocking()
    }
}

impl fmt::Display for Violation {
    /// `rule (severity): message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.rule, self.severity, self.message)
    }
}

/// What a built-in rule found, as data: the numbers behind a [`Violation`]'s message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationDetail {
    /// The agent does not play a role the task needs.
    MissingRole {
        /// The role.
        role: Role,
    },
    /// The agent lacks a capability the task needs.
    MissingCapability {
        /// The capability.
        capability: Capability,
    },
    /// The agent has no capacity at all for a resource the task needs (none declared
    /// in the ledger, or the agent is not in the ledger).
    NoCapacity {
        /// The resource.
        resource: ResourceName,
    },
    /// Giving the task to the agent would take a resource above the cap.
    Utilization {
        /// The resource.
        resource: ResourceName,
        /// What the agent holds now, by the ledger.
        allocated: u64,
        /// What proposals accepted earlier in the batch would add.
        pending: u64,
        /// What this proposal would add.
        requested: u64,
        /// The agent's capacity.
        capacity: u64,
        /// The cap, as a share of capacity.
        max: f64,
    },
    /// The agent has no task slot left for the task.
    TaskSlots {
        /// Tasks the agent runs now.
        running: u32,
        /// Tasks proposals accepted earlier in the batch would add.
        pending: u32,
        /// The most it may run: the smaller of its own slots and the rule's maximum
        /// (0 for an agent that is not registered).
        limit: u32,
    },
    /// Within one group the agent already does (or is about to do) a duty that may
    /// not go to the same agent as this one.
    DutyConflict {
        /// The group (a workflow run, a batch).
        group: String,
        /// This proposal's duty.
        duty: String,
        /// The duty the agent already has in the group.
        conflicting: String,
    },
    /// The agent's status lets it take no new work.
    Status {
        /// Its status.
        status: AgentStatus,
    },
    /// The agent is not registered.
    UnknownAgent,
    /// The system mode admits no new assignment of this duty.
    Mode {
        /// The mode.
        mode: SystemMode,
    },
}

impl ViolationDetail {
    /// For [`Utilization`](Self::Utilization): the share of capacity the agent would
    /// reach, `(allocated + pending + requested) / capacity`. `None` for other kinds.
    pub fn utilization(&self) -> Option<f64> {
        match self {
            ViolationDetail::Utilization {
                allocated,
                pending,
                requested,
                capacity,
                ..
            } => Some(share(
                u128::from(*allocated) + u128::from(*pending) + u128::from(*requested),
                *capacity,
            )),
            _ => None,
        }
    }
}

/// `total / capacity` in `f64` (exact ratio rounded once for amounts below 2^53).
pub(crate) fn share(total: u128, capacity: u64) -> f64 {
    // Totals fit a `u64` but for a batch of absurd amounts; converting from `u128`
    // is a library call on x86-64, from `u64` a few instructions. Both round the
    // exact value once, so the result is the same.
    match u64::try_from(total) {
        Ok(total) => total as f64 / capacity as f64,
        Err(_) => wide_share(total, capacity),
    }
}

/// [`share`] of a total past `u64`, apart: in line, the compiler sees that both
/// conversions give the same value and keeps only the library call.
#[cold]
#[inline(never)]
fn wide_share(total: u128, capacity: u64) -> f64 {
    total as f64 / capacity as f64
}

#[cfg(test)]
mod tests {
    use super::share;

    /// Both paths, and the edge between them, are the exact ratio rounded once.
    #[test]
    fn a_share_is_the_ratio_past_u64_too() {
        assert_eq!(share(3, 4), 0.75);
        assert_eq!(share(u128::from(u64::MAX), u64::MAX), 1.0);
        let past = u128::from(u64::MAX) + 1;
        assert_eq!(share(past, 1), 2f64.powi(64));
        assert_eq!(share(past * 3, 2), 1.5 * 2f64.powi(64));
    }
}
