//! [`AgentStatus`] and its lifecycle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an agent is in its lifecycle.
///
/// Only [`Available`](Self::Available) agents are offered work. The legal changes are:
///
/// | from \ to     | available | busy | unhealthy | quarantined | offline |
/// |---------------|:---------:|:----:|:---------:|:-----------:|:-------:|
/// | available     |           |  ✓   |     ✓     |      ✓      |    ✓    |
/// | busy          |     ✓     |      |     ✓     |      ✓      |    ✓    |
/// | unhealthy     |     ✓     |  ✓   |           |      ✓      |    ✓    |
/// | quarantined   |     ✓     |      |           |             |    ✓    |
/// | offline       |     ✓     |  ✓   |           |      ✓      |         |
///
/// Why these and no others:
/// - Staying put is not a change: asking for the current status is an error, so a
///   duplicated or replayed command is noticed instead of silently absorbed.
/// - An `unhealthy` agent that recovers, or an `offline` one that reconnects, is
///   `available`, or `busy` if its tasks kept running and fill its slots (an agent
///   whose every slot is taken is never `available`; see
///   [`AgentRegistry`](super::AgentRegistry)).
/// - Quarantine ends only by an explicit release to `available` (after investigation)
///   or by the agent going `offline`; a health check can neither lift it nor turn it
///   into mere `unhealthy`, and a quarantined agent's tasks are finished or cancelled
///   before it is released.
/// - An `offline` agent is not `unhealthy` before it has been checked again: it comes
///   back as `available` or `busy`, or goes to `quarantined` if it cannot be trusted.
///
/// ```
/// use concord::agent::AgentStatus;
///
/// assert!(AgentStatus::Available.can_transition_to(AgentStatus::Busy));
/// assert!(!AgentStatus::Quarantined.can_transition_to(AgentStatus::Unhealthy));
/// assert!(!AgentStatus::Offline.can_transition_to(AgentStatus::Offline));
/// assert_eq!(AgentStatus::Quarantined.to_string(), "quarantined");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Healthy and has a free task slot: may be offered work.
    Available,
    /// Healthy but takes no new work: every slot is taken (available again when one
    /// frees), or the host said so (a drain: busy until the host sets another status;
    /// see [`AgentRegistry::is_held_busy`](crate::agent::AgentRegistry::is_held_busy)).
    Busy,
    /// Failed a health check; takes no work until it recovers.
    Unhealthy,
    /// Isolated on suspicion (misbehaviour, compromise); never assigned until released.
    Quarantined,
    /// Disconnected or shut down.
    Offline,
}

impl AgentStatus {
    /// Every status, in declaration order.
    pub const ALL: [AgentStatus; 5] = [
        AgentStatus::Available,
        AgentStatus::Busy,
        AgentStatus::Unhealthy,
        AgentStatus::Quarantined,
        AgentStatus::Offline,
    ];

    /// Whether the lifecycle allows going from `self` to `to` (the table above).
    /// Going to the same status is never allowed.
    pub const fn can_transition_to(self, to: AgentStatus) -> bool {
        use AgentStatus::{Available, Busy, Offline, Quarantined, Unhealthy};
        matches!(
            (self, to),
            (Available, Busy | Unhealthy | Quarantined | Offline)
                | (Busy, Available | Unhealthy | Quarantined | Offline)
                | (Unhealthy, Available | Busy | Quarantined | Offline)
                | (Quarantined, Available | Offline)
                | (Offline, Available | Busy | Quarantined)
        )
    }

    /// The statuses `self` may go to, in declaration order.
    pub fn successors(self) -> impl Iterator<Item = AgentStatus> {
        AgentStatus::ALL
            .into_iter()
            .filter(move |to| self.can_transition_to(*to))
    }

    /// Whether an agent in this status is in service: it takes new work (`available`)
    /// or will once a slot frees (`busy`). Work waits for an agent in service; an
    /// agent out of service (unhealthy, quarantined, offline) is given none.
    pub const fn is_in_service(self) -> bool {
        matches!(self, AgentStatus::Available | AgentStatus::Busy)
    }

    /// The status's name, as serialized (`available`, `busy`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Available => "available",
            AgentStatus::Busy => "busy",
            AgentStatus::Unhealthy => "unhealthy",
            AgentStatus::Quarantined => "quarantined",
            AgentStatus::Offline => "offline",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
