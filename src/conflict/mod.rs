//! Conflicts between agents and tasks: the conflict management procedure and the
//! escalation ladder.
//!
//! Owns the [`Conflict`] model, detection of overlapping claims ([`ConflictDetector`]),
//! assessment ([`ConflictAssessor`], [`RuleAssessor`]), resolution
//! ([`ConflictResolver`], [`Strategy`]), the escalation ladder as data
//! ([`EscalationPolicy`]) and the sans-I/O state machine that runs it
//! ([`ConflictManager`]).
//!
//! | procedure | here |
//! |---|---|
//! | respond to automatic alerts | [`ConflictDetector::add_claim`] returns the collisions a claim makes |
//! | `conflict_assessor.assess(conflict)` | [`ConflictAssessor::assess`] -> [`Assessment`] |
//! | critical / high / else | [`Route::EscalateNow`], [`Route::AutomaticResolution`], [`Route::RoutineQueue`] |
//! | `await resolver.resolve_conflict(conflict)` | [`ConflictResolver::resolve`] -> [`Resolution`] |
//! | `escalate_conflict(conflict, resolution.failure_reason)` | [`ConflictManager::record_resolution`] |
//! | `conflict_duration_30min`, `conflict_duration_2hr` | [`EscalationPolicy`], [`ConflictManager::tick`] |
//! | critical security, resource exhaustion, multiple agent failure | [`EscalationAction`] |
//!
//! The manager's state is plain serde data: [`ConflictManager::snapshot`] takes a
//! versioned [`ConflictManagerSnapshot`] and [`ConflictManager::restore`] validates it
//! and continues every open conflict where it was, so that a conflict opened before a
//! crash still escalates on time, and closes, after it. The deadline queue is rebuilt
//! from the conflicts' states, by the same rule the manager schedules with.
//!
//! This module decides; it never acts. It must never import `assignment`,
//! `coordinator` or `workflow`, and holds no clock: every call takes `now`.

mod assess;
mod detect;
mod error;
mod escalation;
mod manager;
mod resolve;

pub use assess::{Assessment, AssessmentRules, ConflictAssessor, RuleAssessor};
pub use detect::{ClaimOwner, Collision, ConflictDetector};
pub use error::ConflictError;
pub use escalation::{
    EscalationAction, EscalationLevel, EscalationPolicy, EscalationReason, HumanDecision,
};
pub use manager::{
    CONFLICT_SNAPSHOT_VERSION, ConflictManager, ConflictManagerSnapshot, ConflictMetrics,
    ConflictRecord, ConflictState, Forgotten, HistoryEntry, HistoryEvent, Opened,
};
pub use resolve::{ConflictResolver, Resolution, ResolutionAction, Strategy};

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{AgentId, TaskId};
use crate::task::{ClaimMode, Priority};

/// Identifies a conflict: unique within one [`ConflictManager`], and given by whoever
/// opens the conflict there. A [`ConflictDetector`]'s [`Collision`]s have none until
/// then ([`Collision::into_conflict`]); the coordinator numbers the conflicts it opens
/// from 1, in the detector's order, and never issues an id twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConflictId(u64);

impl ConflictId {
    /// The id with the given number.
    pub const fn new(raw: u64) -> Self {
        ConflictId(raw)
    }

    /// The id's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConflictId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict#{}", self.0)
    }
}

/// What the parties collide over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConflictKind {
    /// Exclusive claims on the very same name (`port/8080` and `port/8080`).
    ResourceContention,
    /// Claims on nested names, at least one exclusive (`repo/` and `repo/src/a.rs`).
    OverlappingClaims,
    /// Two tasks doing the same or overlapping work.
    DuplicateWork,
    /// An action broke a policy.
    PolicyViolation,
    /// Agents disagree on a result or a plan.
    Disagreement,
    /// A security incident.
    SecurityIncident,
    /// A resource is exhausted.
    ResourceExhaustion,
    /// One or more agents failed.
    AgentFailure,
}

impl ConflictKind {
    /// Every kind, in order.
    pub const ALL: [ConflictKind; 8] = [
        ConflictKind::ResourceContention,
        ConflictKind::OverlappingClaims,
        ConflictKind::DuplicateWork,
        ConflictKind::PolicyViolation,
        ConflictKind::Disagreement,
        ConflictKind::SecurityIncident,
        ConflictKind::ResourceExhaustion,
        ConflictKind::AgentFailure,
    ];

    /// The kind's name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConflictKind::ResourceContention => "resource_contention",
            ConflictKind::OverlappingClaims => "overlapping_claims",
            ConflictKind::DuplicateWork => "duplicate_work",
            ConflictKind::PolicyViolation => "policy_violation",
            ConflictKind::Disagreement => "disagreement",
            ConflictKind::SecurityIncident => "security_incident",
            ConflictKind::ResourceExhaustion => "resource_exhaustion",
            ConflictKind::AgentFailure => "agent_failure",
        }
    }
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a conflict is: the procedure's `critical`, `high` and the rest.
///
/// Ordered from least to most severe.
///
/// ```
/// use concord::conflict::Severity;
/// assert!(Severity::Critical > Severity::High);
/// assert_eq!(Severity::Medium.raised(), Severity::High);
/// assert_eq!(Severity::Critical.raised(), Severity::Critical);
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine; no hurry.
    Low,
    /// Routine.
    #[default]
    Medium,
    /// Resolved automatically, now.
    High,
    /// Escalated at once.
    Critical,
}

impl Severity {
    /// One level more severe, capped at [`Severity::Critical`].
    pub const fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }

    /// The severity's name, as serialized.
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

/// Where an assessed conflict goes next: the procedure's three branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Route {
    /// `critical`: `escalate_immediately(conflict)`.
    EscalateNow,
    /// `high`: `attempt_automatic_resolution(conflict)`, ahead of routine work.
    AutomaticResolution,
    /// Anything else: `queue_for_routine_resolution(conflict)`.
    RoutineQueue,
}

impl Route {
    /// The procedure's routing: critical escalates, high resolves automatically, the rest
    /// waits in the routine queue.
    pub const fn for_severity(severity: Severity) -> Route {
        match severity {
            Severity::Critical => Route::EscalateNow,
            Severity::High => Route::AutomaticResolution,
            Severity::Medium | Severity::Low => Route::RoutineQueue,
        }
    }
}

/// One side of a conflict: an agent, a task, or a task on an agent.
///
/// ```
/// use concord::conflict::Party;
/// use concord::{AgentId, Priority, TaskId, Timestamp};
///
/// let p = Party::task(TaskId::new(1))
///     .with_agent(AgentId::new(7))
///     .with_priority(Priority::HIGH)
///     .with_since(Timestamp::from_secs(5));
/// assert_eq!(p.agent(), Some(AgentId::new(7)));
/// assert_eq!(p.priority(), Priority::HIGH);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    task: Option<TaskId>,
    agent: Option<AgentId>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    since: Timestamp,
    #[serde(default)]
    mode: Option<ClaimMode>,
    #[serde(default)]
    shareable: bool,
}

impl Party {
    /// A party that is a task (not yet, or not known to be, on an agent).
    pub fn task(task: TaskId) -> Self {
        Party {
            task: Some(task),
            agent: None,
            priority: Priority::default(),
            since: Timestamp::EPOCH,
            mode: None,
            shareable: false,
        }
    }

    /// A party that is an agent.
    pub fn agent_only(agent: AgentId) -> Self {
        Party {
            task: None,
            agent: Some(agent),
            ..Party::task(TaskId::new(0))
        }
    }

    /// Sets the agent.
    pub fn with_agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Sets the priority (of the task, or of the agent's work).
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets when the party took hold of the contested thing.
    pub fn with_since(mut self, since: Timestamp) -> Self {
        self.since = since;
        self
    }

    /// Sets the mode of the party's claim.
    pub fn with_mode(mut self, mode: ClaimMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Marks the party's claim as one it may downgrade to shared
    /// ([`Strategy::Share`]).
    pub fn with_shareable(mut self, shareable: bool) -> Self {
        self.shareable = shareable;
        self
    }

    /// The task, if any.
    pub fn task_id(&self) -> Option<TaskId> {
        self.task
    }

    /// The agent, if any.
    pub fn agent(&self) -> Option<AgentId> {
        self.agent
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// When the party took hold.
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// The mode of its claim, if the conflict is about claims.
    pub fn mode(&self) -> Option<ClaimMode> {
        self.mode
    }

    /// Whether its claim may be downgraded to shared.
    pub fn is_shareable(&self) -> bool {
        self.shareable
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.task, self.agent) {
            (Some(t), Some(a)) => write!(f, "{t} on {a}"),
            (Some(t), None) => write!(f, "{t}"),
            (None, Some(a)) => write!(f, "{a}"),
            (None, None) => f.write_str("nobody"),
        }
    }
}

/// A conflict: who collides, over what, since when.
///
/// Plain serde data. Resources are names (`repo/src/a.rs`, `port/8080`,
/// `env/staging`, a host name), one per party for claim conflicts.
///
/// ```
/// use concord::conflict::{Conflict, ConflictId, ConflictKind, Party};
/// use concord::{AgentId, TaskId, Timestamp};
///
/// let c = Conflict::new(ConflictId::new(1), ConflictKind::ResourceContention, Timestamp::EPOCH)
///     .with_party(Party::task(TaskId::new(1)).with_agent(AgentId::new(1)))
///     .with_party(Party::task(TaskId::new(2)).with_agent(AgentId::new(2)))
///     .with_resource("port/8080");
/// assert_eq!(c.parties().len(), 2);
/// assert_eq!(c.resources(), ["port/8080"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    id: ConflictId,
    kind: ConflictKind,
    parties: Vec<Party>,
    resources: Vec<String>,
    detected_at: Timestamp,
    #[serde(default)]
    description: String,
}

impl Conflict {
    /// A conflict with no parties or resources yet.
    pub fn new(id: ConflictId, kind: ConflictKind, detected_at: Timestamp) -> Self {
        Conflict {
            id,
            kind,
            parties: Vec::new(),
            resources: Vec::new(),
            detected_at,
            description: String::new(),
        }
    }

    /// Adds a party.
    pub fn with_party(mut self, party: Party) -> Self {
        self.parties.push(party);
        self
    }

    /// Adds a contested resource name (kept once).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        let r = resource.into();
        if !self.resources.contains(&r) {
            self.resources.push(r);
        }
        self
    }

    /// Sets a human-readable description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The id.
    pub fn id(&self) -> ConflictId {
        self.id
    }

    /// The kind.
    pub fn kind(&self) -> ConflictKind {
        self.kind
    }

    /// The parties.
    pub fn parties(&self) -> &[Party] {
        &self.parties
    }

    /// Mutable access to the parties, for a host that knows more than the detector
    /// (for example which claims may be shared).
    pub fn parties_mut(&mut self) -> &mut [Party] {
        &mut self.parties
    }

    /// The contested resource names.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// When it was detected.
    pub fn detected_at(&self) -> Timestamp {
        self.detected_at
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The distinct agents among the parties, sorted.
    pub fn agents(&self) -> Vec<AgentId> {
        let mut v: Vec<AgentId> = self.parties.iter().filter_map(|p| p.agent).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn _obj_safe(_: &dyn ConflictAssessor, _: Arc<dyn ConflictResolver>) {}

    #[test]
    fn engines_are_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<ConflictManager>();
        f::<ConflictDetector>();
        f::<RuleAssessor>();
    }
}
