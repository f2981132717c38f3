//! [`ConflictManager`]: the sans-I/O state machine that assesses, routes, times and
//! escalates conflicts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Assessment, Conflict, ConflictAssessor, ConflictError, ConflictId, ConflictKind,
    ConflictResolver, EscalationAction, EscalationLevel, EscalationPolicy, EscalationReason,
    HumanDecision, Resolution, Route, RuleAssessor, Severity,
};
use crate::clock::Timestamp;
use crate::id::AgentId;

/// Where a conflict is: open -> assessing -> resolving -> resolved, or escalated to a
/// level, and finally resolved or decided by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConflictState {
    /// Just opened.
    Open,
    /// Being assessed.
    Assessing,
    /// Waiting for (or in) automatic or routine resolution.
    Resolving,
    /// Handed to a level of the ladder.
    Escalated(EscalationLevel),
    /// Closed by a successful resolution.
    Resolved,
    /// Closed because the human's deadline passed: the default decision applied.
    DecidedByDefault(HumanDecision),
    /// Closed by an answer given by hand ([`ConflictManager::decide`]): the
    /// orchestrator's or a human's.
    Decided {
        /// The answer.
        decision: HumanDecision,
        /// Who gave it.
        by: EscalationLevel,
    },
}

impl ConflictState {
    /// Whether the conflict is closed.
    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            ConflictState::Resolved
                | ConflictState::DecidedByDefault(_)
                | ConflictState::Decided { .. }
        )
    }
}

impl fmt::Display for ConflictState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictState::Open => f.write_str("open"),
            ConflictState::Assessing => f.write_str("assessing"),
            ConflictState::Resolving => f.write_str("resolving"),
            ConflictState::Escalated(l) => write!(f, "escalated to {l}"),
            ConflictState::Resolved => f.write_str("resolved"),
            ConflictState::DecidedByDefault(d) => write!(f, "decided by default ({d})"),
            ConflictState::Decided { decision, by } => {
                write!(f, "decided by the {by} ({decision})")
            }
        }
    }
}

/// One step in a conflict's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryEvent {
    /// Opened in the manager.
    Opened,
    /// Assessed.
    Assessed {
        /// The severity.
        severity: Severity,
        /// The route.
        route: Route,
    },
    /// Queued for resolution.
    Resolving,
    /// A resolution attempt was recorded.
    Attempted {
        /// Whether it resolved the conflict.
        successful: bool,
        /// Whether it is still waiting for an answer.
        pending: bool,
        /// Why it failed or waits.
        reason: Option<String>,
    },
    /// Escalated.
    Escalated {
        /// To whom.
        level: EscalationLevel,
        /// Why.
        reason: EscalationReason,
    },
    /// An emergency reallocation was requested.
    EmergencyReallocation,
    /// Closed by a successful resolution.
    Resolved,
    /// Closed by the default decision.
    DefaultApplied {
        /// The decision.
        decision: HumanDecision,
    },
    /// Closed by an answer given by hand.
    Decided {
        /// The answer.
        decision: HumanDecision,
        /// Who gave it.
        by: EscalationLevel,
    },
}

/// A timestamped [`HistoryEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When.
    pub at: Timestamp,
    /// What.
    pub event: HistoryEvent,
}

/// What [`ConflictManager::open`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Opened {
    /// The assessment.
    pub assessment: Assessment,
    /// Actions due at once (immediate escalation, emergency reallocation, safe mode).
    pub actions: Vec<EscalationAction>,
}

/// The manager's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConflictMetrics {
    /// Conflicts not yet closed.
    pub open: usize,
    /// Conflicts closed by a successful resolution.
    pub resolved: u64,
    /// Conflicts closed by a default decision.
    pub decided_by_default: u64,
    /// Median time from opening to successful resolution (nearest rank).
    pub time_to_resolve_p50: Option<Duration>,
    /// 95th percentile of the same.
    pub time_to_resolve_p95: Option<Duration>,
    /// Escalations, by level.
    pub escalations: BTreeMap<EscalationLevel, u64>,
}

/// The version [`ConflictManager::snapshot`] writes and [`ConflictManager::restore`]
/// reads.
pub const CONFLICT_SNAPSHOT_VERSION: u32 = 1;

/// One conflict's state in a [`ConflictManagerSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConflictRecord {
    /// The conflict.
    pub conflict: Conflict,
    /// Its assessment when it was opened.
    pub assessment: Assessment,
    /// Where it is.
    pub state: ConflictState,
    /// When it was opened in the manager: the ladder's durations count from here.
    pub opened_at: Timestamp,
    /// Its opening order, from 1.
    pub seq: u64,
    /// The human's decision deadline, once it went to a human.
    pub human_deadline: Option<Timestamp>,
    /// How many times its deadline was rescheduled (wrapping).
    pub generation: u32,
    /// Its history.
    pub history: Vec<HistoryEntry>,
}

/// Everything a [`ConflictManager`] knows, as plain serde data: persist it, and
/// [`ConflictManager::restore`] continues every conflict where it was.
///
/// The deadline queue is not stored: it follows from each open conflict's state,
/// opening time and human deadline, and is rebuilt on restore. The policy and the
/// assessor are the host's configuration, supplied again on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConflictManagerSnapshot {
    /// [`CONFLICT_SNAPSHOT_VERSION`] when written.
    pub version: u32,
    /// Every conflict the manager knows, open and closed, by id.
    pub entries: BTreeMap<ConflictId, ConflictRecord>,
    /// Agents in open agent-failure conflicts, with how many such conflicts name each.
    pub failed_agents: BTreeMap<AgentId, u32>,
    /// Whether safe mode was requested and not yet stood down.
    pub safe_mode_requested: bool,
    /// The last opening order issued.
    pub seq: u64,
    /// Time from opening to successful resolution of each resolved conflict, in
    /// nanoseconds, in the order they were resolved.
    pub resolve_nanos: Vec<u64>,
    /// Conflicts closed by a successful resolution.
    pub resolved: u64,
    /// Conflicts closed by a default decision.
    pub decided_by_default: u64,
    /// Escalations, by level.
    pub escalations: BTreeMap<EscalationLevel, u64>,
    /// What the conflicts [forgotten](ConflictManager::forget_closed) since the start
    /// counted for (absent in snapshots written before there was any).
    #[serde(default)]
    pub forgotten: Forgotten,
}

/// The share of the metrics that belongs to closed conflicts a manager has
/// [forgotten](ConflictManager::forget_closed): their records are gone, their counts
/// stay in [`ConflictMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Forgotten {
    /// Conflicts forgotten.
    pub conflicts: u64,
    /// Of those, closed by a successful resolution.
    pub resolved: u64,
    /// Of those, closed by a default decision.
    pub decided_by_default: u64,
    /// Their escalations, by level.
    pub escalations: BTreeMap<EscalationLevel, u64>,
}

impl Forgotten {
    /// Adds a closed conflict's counts.
    fn add(&mut self, e: &Entry) {
        // Counts saturate: a snapshot may restore them anywhere (they are reports).
        self.conflicts = self.conflicts.saturating_add(1);
        match e.state {
            ConflictState::Resolved => self.resolved = self.resolved.saturating_add(1),
            ConflictState::DecidedByDefault(_) => {
                self.decided_by_default = self.decided_by_default.saturating_add(1);
            }
            _ => {}
        }
        for level in e.escalation_levels() {
            let n = self.escalations.entry(level).or_insert(0);
            *n = n.saturating_add(1);
        }
    }
}

#[derive(Debug)]
struct Entry {
    conflict: Conflict,
    assessment: Assessment,
    state: ConflictState,
    opened_at: Timestamp,
    seq: u64,
    human_deadline: Option<Timestamp>,
    generation: u32,
    history: Vec<HistoryEntry>,
}

impl Entry {
    fn note(&mut self, at: Timestamp, event: HistoryEvent) {
        self.history.push(HistoryEntry { at, event });
    }

    /// The level of each escalation in its history.
    fn escalation_levels(&self) -> impl Iterator<Item = EscalationLevel> + '_ {
        self.history.iter().filter_map(|h| match h.event {
            HistoryEvent::Escalated { level, .. } => Some(level),
            _ => None,
        })
    }

    /// When it closed: its last recorded change.
    fn closed_at(&self) -> Timestamp {
        self.history.last().map_or(self.opened_at, |h| h.at)
    }

    fn record(&self) -> ConflictRecord {
        ConflictRecord {
            conflict: self.conflict.clone(),
            assessment: self.assessment.clone(),
            state: self.state,
            opened_at: self.opened_at,
            seq: self.seq,
            human_deadline: self.human_deadline,
            generation: self.generation,
            history: self.history.clone(),
        }
    }

    fn from_record(r: ConflictRecord) -> Self {
        Entry {
            conflict: r.conflict,
            assessment: r.assessment,
            state: r.state,
            opened_at: r.opened_at,
            seq: r.seq,
            human_deadline: r.human_deadline,
            generation: r.generation,
            history: r.history,
        }
    }

    /// When the entry's next rung falls due under `policy`: the one scheduling rule,
    /// used both as the entry moves and when a restore rebuilds the deadline queue.
    fn next_due(&self, policy: &EscalationPolicy) -> Option<Timestamp> {
        match self.state {
            ConflictState::Open | ConflictState::Assessing | ConflictState::Resolving => {
                Some(self.opened_at + policy.orchestrator_after())
            }
            ConflictState::Escalated(EscalationLevel::Orchestrator) => {
                Some(self.opened_at + policy.human_after())
            }
            ConflictState::Escalated(EscalationLevel::Human) => self.human_deadline,
            ConflictState::Resolved
            | ConflictState::DecidedByDefault(_)
            | ConflictState::Decided { .. } => None,
        }
    }

    /// When the ladder's default decision applies to the entry under `policy`, if it
    /// is open: at the human's deadline once it is with a human; before that, at the
    /// latest the policy lets it stay undecided, which is when ticks taking each rung
    /// as it fell due would apply it (the human is asked at `human_after` and given
    /// `decision_within`).
    fn default_due(&self, policy: &EscalationPolicy) -> Option<Timestamp> {
        match self.state {
            ConflictState::Escalated(EscalationLevel::Human) => self.human_deadline,
            state if state.is_closed() => None,
            _ => Some(policy.closes_by(self.opened_at)),
        }
    }
}

/// Runs the conflict management procedure and the escalation ladder over time, without
/// I/O: the host opens conflicts, records what resolvers answered, and calls
/// [`tick`](Self::tick) with the current time; the manager returns the
/// [`EscalationAction`]s that are due.
///
/// Every conflict ends closed (resolved, or decided by default when a human does not
/// answer) no later than [`EscalationPolicy::closes_by`] its opening, whatever the
/// resolvers do, provided `tick` is called.
///
/// Its state survives a crash: [`snapshot`](Self::snapshot) is plain serde data, and
/// [`restore`](Self::restore) continues every open conflict, deadlines included.
///
/// # Complexity
/// Each open conflict has at most one live deadline in a binary heap (lazy deletion:
/// a superseded entry is skipped when it surfaces, and the heap is compacted when
/// stale entries outnumber live ones). `tick` costs `O(1)` when nothing is due and
/// `O(k log n)` for `k` due deadlines; `open` and `record_resolution` cost
/// `O(log n)`.
///
/// ```
/// use std::time::Duration;
/// use concord::conflict::{
///     Conflict, ConflictId, ConflictKind, ConflictManager, EscalationAction, EscalationPolicy,
/// };
/// use concord::Timestamp;
///
/// let mut m = ConflictManager::new(EscalationPolicy::default())?;
/// let t0 = Timestamp::from_secs(0);
/// m.open(Conflict::new(ConflictId::new(1), ConflictKind::ResourceContention, t0), t0)?;
/// assert!(m.tick(t0 + Duration::from_secs(29 * 60)).is_empty());
/// let due = m.tick(t0 + Duration::from_secs(30 * 60));
/// assert!(matches!(due[0], EscalationAction::EscalateToOrchestrator { .. }));
/// # Ok::<(), concord::conflict::ConflictError>(())
/// ```
#[derive(Debug)]
pub struct ConflictManager {
    policy: EscalationPolicy,
    assessor: Box<dyn ConflictAssessor>,
    entries: BTreeMap<ConflictId, Entry>,
    deadlines: BinaryHeap<Reverse<(Timestamp, ConflictId, u32)>>,
    failed_agents: BTreeMap<AgentId, u32>,
    safe_mode_requested: bool,
    open: usize,
    seq: u64,
    resolve_nanos: Vec<u64>,
    resolved: u64,
    decided_by_default: u64,
    escalations: BTreeMap<EscalationLevel, u64>,
    forgotten: Forgotten,
}

impl ConflictManager {
    /// A manager over `policy`, with the default [`RuleAssessor`].
    ///
    /// # Errors
    /// The policy's [`EscalationPolicy::validate`] error.
    pub fn new(policy: EscalationPolicy) -> Result<Self, ConflictError> {
        policy.validate()?;
        Ok(ConflictManager {
            policy,
            assessor: Box::new(RuleAssessor::default()),
            entries: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
            failed_agents: BTreeMap::new(),
            safe_mode_requested: false,
            open: 0,
            seq: 0,
            resolve_nanos: Vec::new(),
            resolved: 0,
            decided_by_default: 0,
            escalations: BTreeMap::new(),
            forgotten: Forgotten::default(),
        })
    }

    /// Forgets the conflicts that closed (resolved, or decided by default) before
    /// `closed_before`: their records and histories go, their counts stay in the
    /// [metrics](Self::metrics), and open conflicts are untouched. A long-running host
    /// calls it after it has journaled what it needs, so that the manager (and its
    /// snapshots) stay the size of its recent past. Returns how many were forgotten.
    /// `O(n)` in the conflicts known.
    ///
    /// ```
    /// use concord::conflict::{
    ///     Conflict, ConflictId, ConflictKind, ConflictManager, EscalationPolicy, Resolution,
    /// };
    /// use concord::Timestamp;
    ///
    /// let mut m = ConflictManager::new(EscalationPolicy::default())?;
    /// let t = Timestamp::from_secs(10);
    /// let id = ConflictId::new(1);
    /// m.open(Conflict::new(id, ConflictKind::ResourceContention, t), t)?;
    /// m.record_resolution(id, Resolution::success(None, Vec::new()), t)?;
    /// assert_eq!(m.forget_closed(Timestamp::from_secs(11)), 1);
    /// assert!(m.conflict(id).is_none());
    /// assert_eq!(m.metrics().resolved, 1);
    /// # Ok::<(), concord::conflict::ConflictError>(())
    /// ```
    pub fn forget_closed(&mut self, closed_before: Timestamp) -> usize {
        let forgotten = &mut self.forgotten;
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            let forget = e.state.is_closed() && e.closed_at() < closed_before;
            if forget {
                forgotten.add(e);
            }
            !forget
        });
        before - self.entries.len()
    }

    /// Replaces the assessor.
    pub fn with_assessor(mut self, assessor: impl ConflictAssessor) -> Self {
        self.assessor = Box::new(assessor);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    /// Opens `conflict` at `now`: assesses it, routes it, and returns the actions due
    /// at once.
    ///
    /// # Errors
    /// [`ConflictError::DuplicateConflict`] if its id is already known; nothing changes.
    pub fn open(&mut self, conflict: Conflict, now: Timestamp) -> Result<Opened, ConflictError> {
        let id = conflict.id();
        if self.entries.contains_key(&id) {
            return Err(ConflictError::DuplicateConflict { id });
        }
        let assessment = self.assessor.assess(&conflict);
        tracing::debug!(
            conflict.id = %id,
            conflict.kind = %conflict.kind(),
            severity = %assessment.severity,
            "conflict opened"
        );
        self.seq += 1;
        let mut entry = Entry {
            conflict,
            assessment: assessment.clone(),
            state: ConflictState::Open,
            opened_at: now,
            seq: self.seq,
            human_deadline: None,
            generation: 0,
            history: Vec::with_capacity(4),
        };
        entry.note(now, HistoryEvent::Opened);
        entry.state = ConflictState::Assessing;
        entry.note(
            now,
            HistoryEvent::Assessed {
                severity: assessment.severity,
                route: assessment.route,
            },
        );
        let mut actions = Vec::new();
        let kind = entry.conflict.kind();
        if self.policy.emergency_reallocation().contains(&kind) {
            entry.note(now, HistoryEvent::EmergencyReallocation);
            actions.push(EscalationAction::EmergencyReallocation {
                conflict: id,
                resources: entry.conflict.resources().to_vec(),
            });
        }
        if kind == ConflictKind::AgentFailure {
            for a in entry.conflict.agents() {
                let n = self.failed_agents.entry(a).or_insert(0);
                *n = n.saturating_add(1);
            }
            if !self.safe_mode_requested
                && self.failed_agents.len() >= self.policy.safe_mode_failed_agents()
            {
                self.safe_mode_requested = true;
                tracing::info!(
                    agents = self.failed_agents.len(),
                    "multiple agent failure: safe mode"
                );
                actions.push(EscalationAction::ActivateSafeMode {
                    failed_agents: self.failed_agents.keys().copied().collect(),
                });
            }
        }
        entry.state = ConflictState::Resolving;
        if assessment.route == Route::EscalateNow {
            if self.policy.immediate_human().contains(&kind) {
                self.escalate(
                    &mut entry,
                    EscalationLevel::Human,
                    EscalationReason::CriticalSecurity,
                    now,
                    &mut actions,
                );
            } else {
                self.escalate(
                    &mut entry,
                    EscalationLevel::Orchestrator,
                    EscalationReason::Critical,
                    now,
                    &mut actions,
                );
            }
        } else {
            entry.note(now, HistoryEvent::Resolving);
        }
        self.schedule(&mut entry);
        self.entries.insert(id, entry);
        self.open += 1;
        Ok(Opened {
            assessment,
            actions,
        })
    }

    /// Records what a resolver answered for `id` at `now`: success closes the conflict;
    /// failure escalates it one level (if the policy says so); pending changes nothing
    /// but the history. Returns the actions due.
    ///
    /// # Errors
    /// [`ConflictError::UnknownConflict`] or [`ConflictError::AlreadyClosed`]; nothing
    /// changes.
    pub fn record_resolution(
        &mut self,
        id: ConflictId,
        resolution: Resolution,
        now: Timestamp,
    ) -> Result<Vec<EscalationAction>, ConflictError> {
        let mut entry = self.take_open(id)?;
        let mut actions = Vec::new();
        entry.note(
            now,
            HistoryEvent::Attempted {
                successful: resolution.successful(),
                pending: resolution.is_pending(),
                reason: resolution.failure_reason().map(str::to_owned),
            },
        );
        if resolution.successful() {
            let took = now.duration_since(entry.opened_at);
            self.resolve_nanos
                .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            self.resolved = self.resolved.saturating_add(1);
            entry.note(now, HistoryEvent::Resolved);
            self.close(&mut entry, ConflictState::Resolved);
            tracing::info!(conflict.id = %id, "conflict resolved");
        } else if !resolution.is_pending() && self.policy.escalate_on_failure() {
            let reason = EscalationReason::ResolutionFailed(
                resolution
                    .failure_reason()
                    .unwrap_or("no reason given")
                    .to_owned(),
            );
            match entry.state {
                ConflictState::Resolving => self.escalate(
                    &mut entry,
                    EscalationLevel::Orchestrator,
                    reason,
                    now,
                    &mut actions,
                ),
                ConflictState::Escalated(EscalationLevel::Orchestrator) => self.escalate(
                    &mut entry,
                    EscalationLevel::Human,
                    reason,
                    now,
                    &mut actions,
                ),
                // With the human already: the deadline and its default stand.
                _ => {}
            }
            self.schedule(&mut entry);
        }
        self.entries.insert(id, entry);
        Ok(actions)
    }

    /// Records an answer given by hand to the open conflict `id` at `now`: the
    /// orchestrator's or a human's (`by`), at any rung of the ladder, before or after
    /// it was escalated to them, until the ladder's default decision applies. The
    /// conflict closes as [`ConflictState::Decided`]; its deadlines are dropped, so
    /// the ladder's default decision never follows a decision given by hand.
    ///
    /// # Errors
    /// [`ConflictError::UnknownConflict`] or [`ConflictError::AlreadyClosed`] (the
    /// default applied by a [`tick`](Self::tick) included);
    /// [`ConflictError::DecisionTooLate`] at or after the time the default applies
    /// when no tick has applied it yet. Nothing changes.
    pub fn decide(
        &mut self,
        id: ConflictId,
        decision: HumanDecision,
        by: EscalationLevel,
        now: Timestamp,
    ) -> Result<(), ConflictError> {
        let due = (self.entries.get(&id)).and_then(|e| e.default_due(&self.policy));
        if let Some(deadline) = due.filter(|due| *due <= now) {
            return Err(ConflictError::DecisionTooLate {
                id,
                deadline,
                default: self.policy.default_decision(),
            });
        }
        let mut entry = self.take_open(id)?;
        entry.note(now, HistoryEvent::Decided { decision, by });
        self.close(&mut entry, ConflictState::Decided { decision, by });
        tracing::info!(conflict.id = %id, %decision, %by, "conflict decided");
        self.entries.insert(id, entry);
        Ok(())
    }

    /// Resolves every conflict [`awaiting_resolution`](Self::awaiting_resolution) with
    /// `resolver`, one at a time, recording each answer at `now`. Returns the actions
    /// due. A thin async driver over [`record_resolution`](Self::record_resolution).
    pub async fn resolve_awaiting(
        &mut self,
        resolver: &dyn ConflictResolver,
        now: Timestamp,
    ) -> Vec<EscalationAction> {
        let mut actions = Vec::new();
        for id in self.awaiting_resolution() {
            let Some(conflict) = self.conflict(id).cloned() else {
                continue;
            };
            let resolution = resolver.resolve(&conflict).await;
            if let Ok(mut a) = self.record_resolution(id, resolution, now) {
                actions.append(&mut a);
            }
        }
        actions
    }

    /// Returns the escalation actions due at `now`, in the order they fell due.
    ///
    /// A tick that jumps past several rungs takes them in order, each at the time it
    /// fell due, so a conflict is never closed later than
    /// [`EscalationPolicy::closes_by`] allows.
    pub fn tick(&mut self, now: Timestamp) -> Vec<EscalationAction> {
        let mut actions = Vec::new();
        while let Some(&Reverse((due, id, generation))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            let live = self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation && !e.state.is_closed());
            if !live {
                continue;
            }
            let Some(mut entry) = self.entries.remove(&id) else {
                continue;
            };
            match entry.state {
                ConflictState::Resolving | ConflictState::Open | ConflictState::Assessing => {
                    self.escalate(
                        &mut entry,
                        EscalationLevel::Orchestrator,
                        EscalationReason::AutomaticResolutionTimeout,
                        due,
                        &mut actions,
                    );
                }
                ConflictState::Escalated(EscalationLevel::Orchestrator) => self.escalate(
                    &mut entry,
                    EscalationLevel::Human,
                    EscalationReason::OrchestratorResolutionTimeout,
                    due,
                    &mut actions,
                ),
                ConflictState::Escalated(EscalationLevel::Human) => {
                    let decision = self.policy.default_decision();
                    entry.note(due, HistoryEvent::DefaultApplied { decision });
                    self.decided_by_default = self.decided_by_default.saturating_add(1);
                    self.close(&mut entry, ConflictState::DecidedByDefault(decision));
                    tracing::info!(conflict.id = %id, %decision, "human deadline passed");
                    actions.push(EscalationAction::ApplyDefaultDecision {
                        conflict: id,
                        decision,
                    });
                }
                ConflictState::Resolved
                | ConflictState::DecidedByDefault(_)
                | ConflictState::Decided { .. } => {}
            }
            self.schedule(&mut entry);
            self.entries.insert(id, entry);
        }
        if self.deadlines.len() > 2 * self.open + 64 {
            self.compact();
        }
        actions
    }

    /// The earliest time something falls due, if anything is open.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        while let Some(&Reverse((due, id, generation))) = self.deadlines.peek() {
            let live = self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation && !e.state.is_closed());
            if live {
                return Some(due);
            }
            self.deadlines.pop();
        }
        None
    }

    /// The conflicts waiting for automatic or routine resolution: those routed to
    /// automatic resolution first, then the routine queue, each in opening order.
    pub fn awaiting_resolution(&self) -> Vec<ConflictId> {
        let mut v: Vec<(u8, u64, ConflictId)> = self
            .entries
            .values()
            .filter(|e| e.state == ConflictState::Resolving)
            .map(|e| {
                let rank = u8::from(e.assessment.route != Route::AutomaticResolution);
                (rank, e.seq, e.conflict.id())
            })
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The conflict, if known.
    pub fn conflict(&self, id: ConflictId) -> Option<&Conflict> {
        self.entries.get(&id).map(|e| &e.conflict)
    }

    /// Its state, if known.
    pub fn state(&self, id: ConflictId) -> Option<ConflictState> {
        self.entries.get(&id).map(|e| e.state)
    }

    /// Its assessment, if known.
    pub fn assessment(&self, id: ConflictId) -> Option<&Assessment> {
        self.entries.get(&id).map(|e| &e.assessment)
    }

    /// Its history, if known.
    pub fn history(&self, id: ConflictId) -> Option<&[HistoryEntry]> {
        self.entries.get(&id).map(|e| e.history.as_slice())
    }

    /// The human's decision deadline, if it is with a human.
    pub fn human_deadline(&self, id: ConflictId) -> Option<Timestamp> {
        self.entries.get(&id).and_then(|e| e.human_deadline)
    }

    /// The number of conflicts not yet closed.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// The manager's figures.
    pub fn metrics(&self) -> ConflictMetrics {
        let mut sorted = self.resolve_nanos.clone();
        sorted.sort_unstable();
        ConflictMetrics {
            open: self.open,
            resolved: self.resolved,
            decided_by_default: self.decided_by_default,
            time_to_resolve_p50: percentile(&sorted, 50),
            time_to_resolve_p95: percentile(&sorted, 95),
            escalations: self.escalations.clone(),
        }
    }

    /// Everything the manager knows, as plain serde data. `O(n)` in the conflicts and
    /// their histories.
    ///
    /// ```
    /// use std::time::Duration;
    /// use concord::conflict::{
    ///     Conflict, ConflictId, ConflictKind, ConflictManager, ConflictManagerSnapshot,
    ///     EscalationAction, EscalationPolicy,
    /// };
    /// use concord::Timestamp;
    ///
    /// let policy = EscalationPolicy::default();
    /// let mut m = ConflictManager::new(policy.clone())?;
    /// let t0 = Timestamp::from_secs(0);
    /// m.open(Conflict::new(ConflictId::new(1), ConflictKind::ResourceContention, t0), t0)?;
    ///
    /// // Persist it; after a crash, continue from it with the same policy.
    /// let json = serde_json::to_string(&m.snapshot())?;
    /// let snapshot: ConflictManagerSnapshot = serde_json::from_str(&json)?;
    /// let mut restored = ConflictManager::restore(policy, snapshot)?;
    ///
    /// // The open conflict escalates on time, as it would have without the crash.
    /// let later = t0 + Duration::from_secs(30 * 60);
    /// let due = restored.tick(later);
    /// assert!(matches!(due[..], [EscalationAction::EscalateToOrchestrator { .. }]));
    /// assert_eq!(due, m.tick(later));
    /// assert_eq!(restored.snapshot(), m.snapshot());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> ConflictManagerSnapshot {
        ConflictManagerSnapshot {
            version: CONFLICT_SNAPSHOT_VERSION,
            entries: self
                .entries
                .iter()
                .map(|(id, e)| (*id, e.record()))
                .collect(),
            failed_agents: self.failed_agents.clone(),
            safe_mode_requested: self.safe_mode_requested,
            seq: self.seq,
            resolve_nanos: self.resolve_nanos.clone(),
            resolved: self.resolved,
            decided_by_default: self.decided_by_default,
            escalations: self.escalations.clone(),
            forgotten: self.forgotten.clone(),
        }
    }

    /// Continues a manager from its snapshot, under `policy`, with the default
    /// [`RuleAssessor`] (chain [`with_assessor`](Self::with_assessor) to supply yours
    /// again: an assessor is code, not data).
    ///
    /// The deadline queue is rebuilt from each open conflict by the same rule the
    /// manager schedules with, so a restored manager fed the same calls returns the
    /// same actions as the one that was snapshotted. Under another `policy`, open
    /// conflicts' next rungs follow the new durations (counted from their opening, as
    /// always); human deadlines already announced stand.
    ///
    /// # Errors
    /// The policy's [`EscalationPolicy::validate`] error; or
    /// [`ConflictError::CorruptSnapshot`] naming what is wrong: another version, an
    /// entry filed under another conflict's id, an opening order of 0, beyond the
    /// manager's or shared by two conflicts, a conflict in a state it only passes
    /// through while being opened, a human deadline on a conflict that never went to a
    /// human (or none on one with a human), or counters (failed agents, safe mode,
    /// resolved, decided by default, resolve times, escalations) that disagree with
    /// the conflicts.
    pub fn restore(
        policy: EscalationPolicy,
        snapshot: ConflictManagerSnapshot,
    ) -> Result<Self, ConflictError> {
        let corrupt = |reason: String| ConflictError::CorruptSnapshot { reason };
        if snapshot.version != CONFLICT_SNAPSHOT_VERSION {
            return Err(corrupt(format!(
                "version {} (expected {CONFLICT_SNAPSHOT_VERSION})",
                snapshot.version
            )));
        }
        crate::id::check_counter("seq", snapshot.seq).map_err(corrupt)?;
        let mut m = ConflictManager::new(policy)?;
        // What the counters must be, recounted from the entries.
        let mut seqs: BTreeMap<u64, ConflictId> = BTreeMap::new();
        let mut failed: BTreeMap<AgentId, u32> = BTreeMap::new();
        // Forgotten conflicts count as before.
        let forgotten = snapshot.forgotten.clone();
        let mut resolved = forgotten.resolved;
        let mut decided_by_default = forgotten.decided_by_default;
        let mut escalations: BTreeMap<EscalationLevel, u64> = forgotten.escalations.clone();
        if forgotten
            .resolved
            .saturating_add(forgotten.decided_by_default)
            > forgotten.conflicts
        {
            return Err(corrupt(format!(
                "forgotten counts {} resolved and {} decided by default of {} conflicts",
                forgotten.resolved, forgotten.decided_by_default, forgotten.conflicts
            )));
        }
        for (&id, r) in &snapshot.entries {
            if r.conflict.id() != id {
                return Err(corrupt(format!("entry {id} holds {}", r.conflict.id())));
            }
            if r.seq == 0 || r.seq > snapshot.seq {
                return Err(corrupt(format!(
                    "{id} has seq {} (expected 1 to the manager's seq {})",
                    r.seq, snapshot.seq
                )));
            }
            if let Some(other) = seqs.insert(r.seq, id) {
                return Err(corrupt(format!("{id} and {other} share seq {}", r.seq)));
            }
            match (r.state, r.human_deadline) {
                (ConflictState::Open | ConflictState::Assessing, _) => {
                    return Err(corrupt(format!(
                        "{id} is {}, a state it only passes through while being opened",
                        r.state
                    )));
                }
                (
                    ConflictState::Resolving
                    | ConflictState::Escalated(EscalationLevel::Orchestrator),
                    Some(deadline),
                ) => {
                    return Err(corrupt(format!(
                        "{id} is {} but has a human deadline ({deadline})",
                        r.state
                    )));
                }
                (
                    ConflictState::Escalated(EscalationLevel::Human)
                    | ConflictState::DecidedByDefault(_),
                    None,
                ) => {
                    return Err(corrupt(format!(
                        "{id} is {} but has no human deadline",
                        r.state
                    )));
                }
                (ConflictState::Resolved, _) => resolved = resolved.saturating_add(1),
                (ConflictState::DecidedByDefault(_), _) => {
                    decided_by_default = decided_by_default.saturating_add(1);
                }
                _ => {}
            }
            if !r.state.is_closed() && r.conflict.kind() == ConflictKind::AgentFailure {
                for a in r.conflict.agents() {
                    let n = failed.entry(a).or_insert(0);
                    *n = n.saturating_add(1);
                }
            }
            for h in &r.history {
                if let HistoryEvent::Escalated { level, .. } = h.event {
                    let n = escalations.entry(level).or_insert(0);
                    *n = n.saturating_add(1);
                }
            }
        }
        if snapshot.failed_agents != failed {
            return Err(corrupt(format!(
                "failed_agents [{}] disagree with the open agent-failure conflicts [{}]",
                counts(&snapshot.failed_agents),
                counts(&failed)
            )));
        }
        if snapshot.safe_mode_requested && failed.is_empty() {
            return Err(corrupt(
                "safe mode is requested but no agent-failure conflict is open".to_owned(),
            ));
        }
        if snapshot.resolved != resolved {
            return Err(corrupt(format!(
                "resolved is {} but the entries count {resolved}",
                snapshot.resolved
            )));
        }
        if snapshot.resolve_nanos.len() as u64 != resolved {
            return Err(corrupt(format!(
                "resolve_nanos has {} times but resolved is {resolved}",
                snapshot.resolve_nanos.len()
            )));
        }
        if snapshot.decided_by_default != decided_by_default {
            return Err(corrupt(format!(
                "decided_by_default is {} but the entries count {decided_by_default}",
                snapshot.decided_by_default
            )));
        }
        let stored: BTreeMap<EscalationLevel, u64> = snapshot
            .escalations
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        escalations.retain(|_, n| *n > 0);
        if stored != escalations {
            return Err(corrupt(format!(
                "escalations [{}] disagree with the conflicts' histories [{}]",
                counts(&stored),
                counts(&escalations)
            )));
        }

        for (id, r) in snapshot.entries {
            let entry = Entry::from_record(r);
            if !entry.state.is_closed() {
                m.open += 1;
                m.push_deadline(&entry);
            }
            m.entries.insert(id, entry);
        }
        m.failed_agents = failed;
        m.safe_mode_requested = snapshot.safe_mode_requested;
        m.seq = snapshot.seq;
        m.resolve_nanos = snapshot.resolve_nanos;
        m.resolved = resolved;
        m.decided_by_default = decided_by_default;
        m.escalations = escalations;
        m.forgotten = forgotten;
        Ok(m)
    }

    fn take_open(&mut self, id: ConflictId) -> Result<Entry, ConflictError> {
        match self.entries.get(&id) {
            None => Err(ConflictError::UnknownConflict { id }),
            Some(e) if e.state.is_closed() => {
                Err(ConflictError::AlreadyClosed { id, state: e.state })
            }
            Some(_) => self
                .entries
                .remove(&id)
                .ok_or(ConflictError::UnknownConflict { id }),
        }
    }

    fn escalate(
        &mut self,
        entry: &mut Entry,
        level: EscalationLevel,
        reason: EscalationReason,
        at: Timestamp,
        actions: &mut Vec<EscalationAction>,
    ) {
        let id = entry.conflict.id();
        tracing::info!(conflict.id = %id, %level, %reason, "conflict escalated");
        entry.state = ConflictState::Escalated(level);
        entry.note(
            at,
            HistoryEvent::Escalated {
                level,
                reason: reason.clone(),
            },
        );
        let n = self.escalations.entry(level).or_insert(0);
        *n = n.saturating_add(1);
        match level {
            EscalationLevel::Orchestrator => {
                actions.push(EscalationAction::EscalateToOrchestrator {
                    conflict: id,
                    reason,
                });
            }
            EscalationLevel::Human => {
                let deadline = at + self.policy.decision_within();
                entry.human_deadline = Some(deadline);
                actions.push(EscalationAction::RequestHumanApproval {
                    conflict: id,
                    deadline,
                    default: self.policy.default_decision(),
                    reason,
                });
            }
        }
    }

    /// Pushes the entry's next deadline, superseding any earlier one.
    fn schedule(&mut self, entry: &mut Entry) {
        entry.generation = entry.generation.wrapping_add(1);
        self.push_deadline(entry);
    }

    /// Pushes the entry's next deadline under its current generation, if it has one.
    fn push_deadline(&mut self, entry: &Entry) {
        if let Some(due) = entry.next_due(&self.policy) {
            self.deadlines
                .push(Reverse((due, entry.conflict.id(), entry.generation)));
        }
    }

    fn close(&mut self, entry: &mut Entry, state: ConflictState) {
        entry.state = state;
        entry.generation = entry.generation.wrapping_add(1);
        self.open = self.open.saturating_sub(1);
        if entry.conflict.kind() == ConflictKind::AgentFailure {
            for a in entry.conflict.agents() {
                if let Some(n) = self.failed_agents.get_mut(&a) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.failed_agents.remove(&a);
                    }
                }
            }
            if self.failed_agents.len() < self.policy.safe_mode_failed_agents() {
                self.safe_mode_requested = false;
            }
        }
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.deadlines.retain(|Reverse((_, id, g))| {
            entries
                .get(id)
                .is_some_and(|e| e.generation == *g && !e.state.is_closed())
        });
    }
}

/// `key: n, key: n`, for error messages.
fn counts<K: fmt::Display>(map: &BTreeMap<K, impl fmt::Display>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[u64], p: u64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    let i = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(sorted.len() - 1);
    sorted.get(i).map(|&ns| Duration::from_nanos(ns))
}
