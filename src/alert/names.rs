//! The names of the alerts in the operating procedures' catalogue
//! ([`AlertCatalogue::default`](super::AlertCatalogue::default)), and the
//! pseudo-labels matchers read, as constants: use them instead of spelling the strings.

pub use super::model::{ALERTNAME, SEVERITY};

/// An agent went unhealthy or offline (medium: "individual agent failures"). Label:
/// `agent`.
pub const AGENT_FAILURE: &str = "agent_failure";
/// Several agents failed within minutes (high: "multiple agent failures"); fired by
/// cascade detection.
pub const MULTIPLE_AGENT_FAILURES: &str = "multiple_agent_failures";
/// Agents are failing together (critical: "system-wide agent failure", "cascade
/// failure detection"); fired by cascade detection.
pub const SYSTEM_WIDE_AGENT_FAILURE: &str = "system_wide_agent_failure";
/// The shared memory is corrupt (critical: "memory system corruption").
pub const MEMORY_CORRUPTION: &str = "memory_corruption";
/// A security breach was detected (critical). Label: `conflict`, when it came from a
/// security-incident conflict.
pub const SECURITY_BREACH: &str = "security_breach";
/// A resource is exhausted (critical). Label: `conflict`, when it came from an
/// emergency reallocation.
pub const RESOURCE_EXHAUSTION: &str = "resource_exhaustion";
/// The system entered safe mode: no new work is assigned (critical).
pub const SAFE_MODE_ENTERED: &str = "safe_mode_entered";
/// A conflict waits for a human decision (high). Label: `conflict`.
pub const CONFLICT_ESCALATED: &str = "conflict_escalated";
/// Conflicts take long to resolve (high: "high conflict resolution times").
pub const SLOW_CONFLICT_RESOLUTION: &str = "slow_conflict_resolution";
/// Resources could not be allocated (high: "resource allocation failures").
pub const RESOURCE_ALLOCATION_FAILURE: &str = "resource_allocation_failure";
/// Performance degraded (high).
pub const PERFORMANCE_DEGRADATION: &str = "performance_degradation";
/// The shared memory misbehaves: retrieval timeouts, failed pattern matches (high:
/// "memory integration issues").
pub const MEMORY_INTEGRATION_ISSUE: &str = "memory_integration_issue";
/// A system health check reports unhealthy (high). Label: `check`.
pub const HEALTH_CHECK_UNHEALTHY: &str = "health_check_unhealthy";
/// A task was rejected: no agent could ever take it (medium). Label: `task`.
pub const TASK_UNPLACEABLE: &str = "task_unplaceable";
/// A metric left its normal range (medium: "performance anomalies").
pub const ANOMALY: &str = "anomaly";
/// An agent's queue or a resource is a bottleneck (medium).
pub const BOTTLENECK: &str = "bottleneck";
/// Capacity is running out (medium: "capacity warnings").
pub const CAPACITY_WARNING: &str = "capacity_warning";
/// Configuration drifted from what was deployed (medium).
pub const CONFIGURATION_DRIFT: &str = "configuration_drift";
/// Resources could be used better (medium: "resource optimization opportunities").
pub const RESOURCE_OPTIMIZATION: &str = "resource_optimization";
/// A maintenance task is due (low).
pub const MAINTENANCE_DUE: &str = "maintenance_due";
