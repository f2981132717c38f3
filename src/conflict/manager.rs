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
}

impl ConflictState {
    /// Whether the conflict is closed.
    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            ConflictState::Resolved | ConflictState::DecidedByDefault(_)
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
}

/// Runs the seed's conflict procedure and escalation decision tree over time, without
/// I/O: the host opens conflicts, records what resolvers answered, and calls
/// [`tick`](Self::tick) with the current time; the manager returns the
/// [`EscalationAction`]s that are due.
///
/// Every conflict ends closed (resolved, or decided by default when a human does not
/// answer) no later than [`EscalationPolicy::closes_by`] its opening, whatever the
/// resolvers do, provided `tick` is called.
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
        })
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
                *self.failed_agents.entry(a).or_insert(0) += 1;
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
            self.resolved += 1;
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
                    self.decided_by_default += 1;
                    self.close(&mut entry, ConflictState::DecidedByDefault(decision));
                    tracing::info!(conflict.id = %id, %decision, "human deadline passed");
                    actions.push(EscalationAction::ApplyDefaultDecision {
                        conflict: id,
                        decision,
                    });
                }
                ConflictState::Resolved | ConflictState::DecidedByDefault(_) => {}
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
        *self.escalations.entry(level).or_insert(0) += 1;
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
        let due = match entry.state {
            ConflictState::Open | ConflictState::Assessing | ConflictState::Resolving => {
                entry.opened_at + self.policy.orchestrator_after()
            }
            ConflictState::Escalated(EscalationLevel::Orchestrator) => {
                entry.opened_at + self.policy.human_after()
            }
            ConflictState::Escalated(EscalationLevel::Human) => match entry.human_deadline {
                Some(d) => d,
                None => return,
            },
            ConflictState::Resolved | ConflictState::DecidedByDefault(_) => return,
        };
        self.deadlines
            .push(Reverse((due, entry.conflict.id(), entry.generation)));
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
