//! [`Coordinator`]: the facade that runs the seed's agent assignment procedure in one
//! call.
//!
//! Analyze the task ([`TaskAnalyzer`]) -> predict its needs ([`ResourcePredictor`]) ->
//! find the agents that can take it ([`Fleet`] over the [`AgentRegistry`] and the
//! [`ResourceLedger`]) -> pick the best ([`Assigner`]) -> validate it
//! ([`PolicyEnforcer`], trying the next candidate on a violation) -> allocate its
//! resources -> return the assignment with its explanation. A task that cannot be
//! served now for lack of resources or free slots waits in the ledger's fair queue and
//! is assigned when capacity comes back.
//!
//! A task's claims (files, ports, environments) are checked the same way however it
//! starts. Assigned directly, a task whose exclusive claims collide with a running
//! task's is not assigned: the conflict is opened and escalated
//! ([`AssignOutcome::Conflicted`]). Served from the queue, it is not started either,
//! but no conflict is opened: its grant is given back and it waits behind the
//! holder ([`Event::TaskBlocked`], [`WaitingTask::behind`]), queued again when the
//! holder finishes (the "serialize" strategy: the loser waits behind the winner).
//!
//! The coordinator is `Send + Sync`: its state sits behind one `parking_lot` mutex
//! that is never held across an `.await` (no method here awaits), so many tasks of a
//! host's runtime can call it at once. Every state change is an [`Event`], kept in
//! order for the host to drain and journal ([`Coordinator::drain_events`]); with a
//! [`CoordinatorSnapshot`] and the events after it, a host rebuilds the coordinator
//! after a crash, open conflicts and their deadlines included. This module sits at
//! the top of the crate: nothing imports it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentProfile, AgentRegistry, AgentStatus, RegistryError, RegistrySnapshot};
use crate::assignment::{
    Admission, AffinityTable, Assigner, AssignmentError, Explanation, Fleet, GreedyAssigner,
    Placement, Refusal,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::conflict::{
    Assessment, ClaimOwner, Conflict, ConflictDetector, ConflictError, ConflictId, ConflictManager,
    ConflictManagerSnapshot, EscalationAction, EscalationPolicy, Party, Resolution,
};
use crate::id::{AgentId, AllocationId, RequestId, TaskId};
use crate::policy::{
    DutyLog, PendingBatch, PolicyContext, PolicyEnforcer, PolicySet, Proposal, SystemMode,
    Violation,
};
use crate::resource::{
    AllocationRequest, Grant, LedgerConfig, LedgerError, LedgerSnapshot, PercentilePredictor,
    RequestOutcome, ResourceLedger, ResourceName, ResourcePredictor, Resources,
};
use crate::task::{Claim, RuleBasedAnalyzer, Task, TaskAnalyzer, TaskError};

/// The ledger resource that mirrors task slots, so that a queued task is granted only
/// when its agent has both the resources and a free slot.
pub const SLOTS_RESOURCE: &str = "concord.slots";

fn slots_name() -> &'static ResourceName {
    static SLOTS: std::sync::LazyLock<ResourceName> =
        // A constant, valid name: parsing cannot fail.
        std::sync::LazyLock::new(|| {
            ResourceName::new(SLOTS_RESOURCE).unwrap_or(ResourceName::Cpu)
        });
    &SLOTS
}

/// An error from the [`Coordinator`]. Its state is unchanged whenever one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The registry refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The ledger refused.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The task could not be analyzed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The assigner refused its input.
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    /// The conflict domain refused an operation.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// The task is already assigned or waiting.
    #[error("{task} is already assigned or waiting")]
    DuplicateTask {
        /// The offending task.
        task: TaskId,
    },
    /// The task is neither assigned nor waiting.
    #[error("{task} is not assigned")]
    UnknownTask {
        /// The offending task.
        task: TaskId,
    },
    /// A snapshot is not consistent.
    #[error("corrupt coordinator snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong.
        reason: String,
    },
}

/// A task on an agent, with what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assignment {
    /// The task, with the requirements the analyzer and predictor settled on.
    pub task: Task,
    /// The agent.
    pub agent: AgentId,
    /// The allocation holding its resources and slot.
    pub allocation: AllocationId,
    /// The resources allocated (the prediction).
    pub resources: Resources,
    /// The agent's score.
    pub score: f64,
    /// Why this agent, and why not the others.
    pub explanation: Explanation,
    /// Policy findings that did not block (warnings).
    pub warnings: Vec<Violation>,
    /// The workflow run or batch it belongs to, for separation of duties.
    pub group: Option<Arc<str>>,
    /// When it was assigned.
    pub assigned_at: Timestamp,
}

/// What [`Coordinator::assign`] did with a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AssignOutcome {
    /// Assigned now.
    Assigned(Arc<Assignment>),
    /// Waiting in the ledger's queue for resources or a free slot; assigned when they
    /// come back (see [`Event::TaskAssigned`]). If by then its claims collide with a
    /// running task's, it goes on waiting behind that task instead
    /// ([`Event::TaskBlocked`]).
    Queued {
        /// The task.
        task: TaskId,
        /// Its place in the queue.
        request: RequestId,
        /// Why it could not be assigned now (boxed: the common outcome, `Assigned`,
        /// then moves in two words).
        explanation: Box<Explanation>,
    },
    /// Its claims collide with claims of running tasks (the same exclusive file, port
    /// or environment): it is not assigned, and each conflict is open in the
    /// coordinator's [`ConflictManager`], which escalates it on [`Coordinator::tick`]
    /// until the holder finishes (which resolves it) or a person decides. Submit the
    /// task again once it is resolved.
    Conflicted {
        /// The task.
        task: TaskId,
        /// The conflicts its claims opened.
        conflicts: Vec<ConflictId>,
    },
    /// No agent can take it, now or later, as things stand (no agent with the roles
    /// and capabilities, safe mode, or every candidate refused by policy).
    Rejected {
        /// The task.
        task: TaskId,
        /// Why (boxed, as in `Queued`).
        explanation: Box<Explanation>,
        /// The policy refusals on the way.
        refusals: Vec<Refusal>,
    },
}

impl AssignOutcome {
    /// The assignment, if the task was assigned now.
    pub fn assignment(&self) -> Option<&Assignment> {
        match self {
            AssignOutcome::Assigned(a) => Some(a.as_ref()),
            _ => None,
        }
    }
}

/// Every state change of a [`Coordinator`], in order: what a host journals.
///
/// Each event carries the sequence number and time it was made at (see
/// [`Event::seq`]); the sequence never repeats, including across a snapshot and
/// restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// An agent joined.
    AgentRegistered {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// Its profile (boxed, as the other large payloads: events stay small in a
        /// long journal).
        profile: Box<AgentProfile>,
    },
    /// An agent's status changed.
    AgentStatusChanged {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The agent.
        agent: AgentId,
        /// Its status before.
        from: AgentStatus,
        /// Its status now.
        to: AgentStatus,
    },
    /// The system mode changed (safe mode, recovery, normal).
    ModeChanged {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The mode before.
        from: SystemMode,
        /// The mode now.
        to: SystemMode,
    },
    /// A task was assigned (now, or from the queue).
    TaskAssigned {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The assignment.
        assignment: Arc<Assignment>,
    },
    /// A task waits in the queue.
    TaskQueued {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskId,
        /// Its place in the queue.
        request: RequestId,
        /// Why it could not be assigned now.
        explanation: Box<Explanation>,
    },
    /// A waiting task was granted resources, but its claims collide with those of a
    /// running task, so it was not started: the grant is given back and it waits
    /// behind that task ([`WaitingTask::behind`]), to be queued again when the holder
    /// finishes. No conflict is opened (the queue serializes the two), and a task
    /// blocks at most once per holder.
    TaskBlocked {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskId,
        /// Its key among the waiting tasks: the request it was granted on.
        request: RequestId,
        /// The running task holding the contested claim.
        behind: TaskId,
        /// The contested names: the holder's claim, then the task's.
        resources: Vec<String>,
    },
    /// A task could not be assigned.
    TaskRejected {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskId,
        /// Why.
        explanation: Box<Explanation>,
    },
    /// A policy refused an agent for a task (the audit trail of policy decisions).
    PolicyRefused {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The refusal.
        refusal: Box<Refusal>,
    },
    /// A task finished and gave its resources back.
    TaskCompleted {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskId,
        /// Its agent.
        agent: AgentId,
        /// Whether it succeeded.
        success: bool,
    },
    /// Claims collided: a conflict was opened, assessed and routed.
    ConflictDetected {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The conflict.
        conflict: Box<Conflict>,
        /// Its assessment: severity and route.
        assessment: Assessment,
    },
    /// The escalation ladder acted on a conflict. The coordinator carries out
    /// `ActivateSafeMode` itself; the host carries out the others (reallocation,
    /// approval requests, default decisions).
    ConflictEscalated {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The action.
        action: EscalationAction,
    },
    /// A conflict was resolved: the task holding the resource finished.
    ConflictResolved {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The conflict.
        conflict: ConflictId,
    },
    /// A waiting task was withdrawn.
    TaskCancelled {
        /// Sequence number.
        seq: u64,
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskId,
    },
}

impl Event {
    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Event::AgentRegistered { seq, .. }
            | Event::AgentStatusChanged { seq, .. }
            | Event::ModeChanged { seq, .. }
            | Event::TaskAssigned { seq, .. }
            | Event::TaskQueued { seq, .. }
            | Event::TaskBlocked { seq, .. }
            | Event::TaskRejected { seq, .. }
            | Event::PolicyRefused { seq, .. }
            | Event::TaskCompleted { seq, .. }
            | Event::ConflictDetected { seq, .. }
            | Event::ConflictEscalated { seq, .. }
            | Event::ConflictResolved { seq, .. }
            | Event::TaskCancelled { seq, .. } => *seq,
        }
    }
}

/// A task waiting in the queue, as the coordinator remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaitingTask {
    /// The task, analyzed and predicted.
    pub task: Task,
    /// Its group, if any.
    pub group: Option<Arc<str>>,
    /// Why it waits.
    pub explanation: Explanation,
    /// The running task whose claim it waits for, if it waits behind a claim rather
    /// than in the ledger's queue: it was granted resources, its claims collided with
    /// that task's, and it is queued again when that task finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<TaskId>,
    /// When it first queued: a task queued again after waiting behind a claim keeps
    /// its age in the queue (see [`AllocationRequest::with_waiting_since`]). None in
    /// snapshots from before it was kept (it then ages from when it is queued again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

/// Everything a [`Coordinator`] holds, as serde data (the predictor, analyzer, assigner
/// and policies are code or host data: keep them in your configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CoordinatorSnapshot {
    /// Format version.
    pub version: u32,
    /// The registry.
    pub registry: RegistrySnapshot,
    /// The ledger.
    pub ledger: LedgerSnapshot,
    /// The system mode.
    pub mode: SystemMode,
    /// Who did which duty in which group.
    pub duties: DutyLog,
    /// How well agents did each kind of task.
    pub affinity: AffinityTable,
    /// Tasks running now, by task id.
    pub assignments: BTreeMap<TaskId, Assignment>,
    /// Tasks waiting, by request id: in the ledger's queue, or behind a running task's
    /// claim ([`WaitingTask::behind`], keyed by the request it was last granted on).
    pub waiting: BTreeMap<RequestId, WaitingTask>,
    /// The next event sequence number.
    pub next_seq: u64,
    /// The conflict manager: every conflict, open or closed, so that open conflicts
    /// keep escalating after a restore and their holders' completion still resolves
    /// them.
    pub conflicts: ConflictManagerSnapshot,
    /// The id the next conflict gets, so that ids are never reused, even after the
    /// conflicts holding the highest ones were
    /// [forgotten](Coordinator::forget_closed_conflicts).
    #[serde(default)]
    pub next_conflict_id: u64,
}

/// Version 2 added `conflicts`.
const SNAPSHOT_VERSION: u32 = 2;

/// The mutable state, behind the coordinator's mutex.
#[derive(Debug)]
struct State {
    registry: AgentRegistry,
    ledger: ResourceLedger,
    mode: SystemMode,
    duties: DutyLog,
    /// Hashed: a B-tree freed and made its root node again each time the last running
    /// task finished and the next started. Sorted where it is shown or saved.
    assignments: crate::hash::FxHashMap<TaskId, Arc<Assignment>>,
    waiting: BTreeMap<RequestId, WaitingTask>,
    /// Each waiting task's key in `waiting`: kept in step with it by `wait` and
    /// `unwait`, so that finding a task among those waiting is not a scan.
    waiting_by_task: BTreeMap<TaskId, RequestId>,
    events: Vec<Event>,
    next_seq: u64,
    /// The fleet view the assigner reads, refreshed in place for every batch (not in
    /// the snapshot: it follows from the registry and the ledger).
    fleet: Fleet,
    /// Grants the ledger made to waiting tasks while capacity was given back outside
    /// [`Coordinator::serve`] (by `queue_or_reject`); served before the call returns
    /// (or, if it fails half-way, by the next one that serves).
    handed_back: Vec<Grant>,
    detector: ConflictDetector,
    conflicts: ConflictManager,
    /// The claims each running task holds, and its agent.
    claims: BTreeMap<TaskId, (AgentId, Vec<Claim>)>,
    /// The task holding the resource of each open conflict: its end resolves it.
    /// Not in the snapshot: restore derives it from the open conflicts' first parties.
    /// Ordered by task, so a finishing task finds its conflicts without a scan of
    /// every open one.
    holders: BTreeSet<(TaskId, ConflictId)>,
    /// The waiting tasks (their keys in `waiting`) blocked behind each running task's
    /// claims. Not in the snapshot: restore derives it from `WaitingTask::behind`.
    blocked: BTreeMap<TaskId, BTreeSet<RequestId>>,
    /// The policy admission's proposals, kept between batches for their capacity
    /// (always empty between calls).
    proposals: PendingBatch,
    /// The group of the last batch, shared by the next batch of the same group.
    last_group: Option<Arc<str>>,
    /// Assignments of finished tasks that nobody else held any more, kept (at most
    /// [`SPARE_ASSIGNMENTS`]) so that the next assignments reuse their allocations.
    spare: Vec<Arc<Assignment>>,
}

/// How many finished assignments' allocations the coordinator keeps for reuse: a
/// workflow batch's worth.
const SPARE_ASSIGNMENTS: usize = 64;

/// The items of a plan (placements, unplaced tasks) handed out by task. The crate's
/// assigners list them in the batch's order, which one pass takes in turn; any other
/// order falls back to a map, so a host's assigner costs no quadratic search.
struct ByTask<T> {
    items: std::vec::IntoIter<T>,
    rest: Option<crate::hash::FxHashMap<TaskId, T>>,
    key: fn(&T) -> TaskId,
}

impl<T> ByTask<T> {
    fn new(items: Vec<T>, key: fn(&T) -> TaskId) -> Self {
        ByTask {
            items: items.into_iter(),
            rest: None,
            key,
        }
    }

    /// The item of `task`, taken out.
    fn take(&mut self, task: TaskId) -> Option<T> {
        if self.rest.is_none() {
            match self.items.as_slice().first() {
                None => return None,
                Some(next) if (self.key)(next) == task => return self.items.next(),
                // Not in order, or `task` has no item: look it up from now on.
                Some(_) => {
                    let key = self.key;
                    self.rest = Some(self.items.by_ref().map(|t| (key(&t), t)).collect());
                }
            }
        }
        self.rest.as_mut().and_then(|rest| rest.remove(&task))
    }
}

/// `found`, the conflicts one task's claims made, ordered by holder, then the names
/// and modes, and numbered in that order with the ids the detector issued for them.
///
/// The detector reports them in an order that depends on its history (names claimed
/// by tasks long finished, the order claims were taken), which a restore does not
/// reproduce; this order depends only on the claims held, so a restored coordinator
/// numbers the same conflicts the same way.
fn canonical(mut found: Vec<Conflict>) -> Vec<Conflict> {
    // The detector reports conflicts in the order it numbers them (consecutively,
    // wrapping past `u64::MAX`).
    let Some(first) = found.first().map(|c| c.id().get()) else {
        return found;
    };
    found.sort_by(|a, b| {
        let key = |c: &Conflict| {
            let holder = c.parties().first();
            (
                holder.and_then(Party::task_id),
                holder.and_then(Party::mode),
                c.resources().to_vec(),
                c.parties().get(1).and_then(Party::mode),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut next = first;
    found
        .into_iter()
        .map(|c| {
            let id = ConflictId::new(next);
            next = next.wrapping_add(1);
            if c.id() == id {
                return c;
            }
            // Every field of a `Conflict` but its id, as it was.
            let mut renumbered =
                Conflict::new(id, c.kind(), c.detected_at()).with_description(c.description());
            for party in c.parties() {
                renumbered = renumbered.with_party(*party);
            }
            for resource in c.resources() {
                renumbered = renumbered.with_resource(resource.clone());
            }
            renumbered
        })
        .collect()
}

/// What [`State::hold_claims`] found.
#[derive(Debug)]
enum Hold {
    /// The task's claims (if it has any) are held for it.
    Held,
    /// They collide with claims of running tasks, the holder first in each conflict:
    /// nothing is held.
    Collides(Vec<Conflict>),
}

impl State {
    fn push(&mut self, make: impl FnOnce(u64) -> Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(make(seq));
    }

    /// Carries out escalation actions: safe mode here, the rest as events for the host.
    fn escalate(&mut self, actions: Vec<EscalationAction>, now: Timestamp) {
        for action in actions {
            if matches!(action, EscalationAction::ActivateSafeMode { .. })
                && self.mode != SystemMode::SafeMode
            {
                let from = self.mode;
                self.mode = SystemMode::SafeMode;
                tracing::warn!(from = %from, "safe mode activated by the escalation policy");
                self.push(|seq| Event::ModeChanged {
                    seq,
                    at: now,
                    from,
                    to: SystemMode::SafeMode,
                });
            }
            tracing::info!(action = ?action, "conflict escalated");
            self.push(|seq| Event::ConflictEscalated {
                seq,
                at: now,
                action,
            });
        }
    }

    /// Checks `task`'s claims against the claims running tasks hold and, if none
    /// collides, holds them for `task` on `agent` (in the detector and in `claims`).
    /// The one claim check a task goes through before it starts: [`commit`] (direct
    /// assignment) and [`Coordinator::serve`] (from the queue) differ only in what they
    /// do with a collision.
    ///
    /// On a collision or an error nothing is held and the detector is exactly as
    /// before, down to the conflict ids it issues next: a caller that opens the
    /// collisions as conflicts takes their ids with
    /// [`set_next_conflict_id`](Self::set_next_conflict_id).
    ///
    /// # Errors
    /// The detector's refusal of a claim ([`ConflictError::EmptyClaim`],
    /// [`ConflictError::Full`]).
    fn hold_claims(
        &mut self,
        task: &Task,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<Hold, ConflictError> {
        let claims = task.requirements().claims();
        if claims.is_empty() {
            return Ok(Hold::Held);
        }
        let owner = ClaimOwner::new(task.id(), agent);
        let priority = task.requirements().priority();
        let mut found = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            if let Err(e) = self
                .detector
                .add_claim_into(owner, c, priority, now, &mut found)
            {
                self.unhold(owner, &claims[..i], &found);
                return Err(e);
            }
        }
        if !found.is_empty() {
            self.unhold(owner, claims, &found);
            return Ok(Hold::Collides(canonical(found)));
        }
        self.claims.insert(task.id(), (agent, claims.to_vec()));
        Ok(Hold::Held)
    }

    /// Undoes part of [`hold_claims`](Self::hold_claims): gives up `added` and takes
    /// back the ids of the conflicts `found` (issued in order, so from the first on).
    fn unhold(&mut self, owner: ClaimOwner, added: &[Claim], found: &[Conflict]) {
        for c in added {
            let _ = self.detector.remove_claim(owner, c);
        }
        if let Some(first) = found.first() {
            self.set_next_conflict_id(first.id().get());
        }
    }

    /// Makes the detector issue conflict ids from `next` on.
    fn set_next_conflict_id(&mut self, next: u64) {
        self.detector = std::mem::take(&mut self.detector).with_first_id(next);
    }

    /// Gives up the claims a task holds, without resolving anything: the undo of a
    /// successful [`hold_claims`](Self::hold_claims) when the task does not start after
    /// all.
    fn drop_claims(&mut self, task: TaskId) {
        if let Some((agent, claims)) = self.claims.remove(&task) {
            for c in &claims {
                let _ = self.detector.remove_claim(ClaimOwner::new(task, agent), c);
            }
        }
    }

    /// The open conflict in which `holder` holds what `task` claimed, if any.
    fn open_conflict_between(&self, holder: TaskId, task: TaskId) -> Option<ConflictId> {
        self.holders
            .range((holder, ConflictId::new(0))..=(holder, ConflictId::new(u64::MAX)))
            .map(|&(_, id)| id)
            .find(|&id| {
                self.conflicts.state(id).is_some_and(|st| !st.is_closed())
                    && self
                        .conflicts
                        .conflict(id)
                        .is_some_and(|c| c.parties().get(1).and_then(Party::task_id) == Some(task))
            })
    }

    /// Releases a finished or withdrawn task's claims and resolves the conflicts it
    /// held a resource in.
    fn release_claims(&mut self, task: TaskId, now: Timestamp) {
        self.drop_claims(task);
        if self.holders.is_empty() {
            return;
        }
        let held: Vec<ConflictId> = self
            .holders
            .range((task, ConflictId::new(0))..=(task, ConflictId::new(u64::MAX)))
            .map(|&(_, id)| id)
            .collect();
        for id in held {
            self.holders.remove(&(task, id));
            if let Ok(actions) =
                self.conflicts
                    .record_resolution(id, Resolution::success(None, Vec::new()), now)
            {
                self.push(|seq| Event::ConflictResolved {
                    seq,
                    at: now,
                    conflict: id,
                });
                self.escalate(actions, now);
            }
        }
    }

    /// Sets a waiting task (`key` in `waiting`), whose grant collided, to wait behind
    /// the running task holding the first contested claim.
    fn block(&mut self, key: RequestId, mut w: WaitingTask, found: &[Conflict], now: Timestamp) {
        // The held claim is each conflict's first party; a detector's parties are
        // always tasks.
        let Some((holder, resources)) = found.iter().find_map(|c| {
            let holder = c.parties().first().and_then(Party::task_id)?;
            Some((holder, c.resources().to_vec()))
        }) else {
            tracing::warn!(task.id = %w.task.id(), "collision without a holder; task rejected");
            push_rejected(self, w.task.id(), w.explanation, now);
            return;
        };
        let task = w.task.id();
        tracing::debug!(task.id = %task, holder.id = %holder, "claims collide; task waits behind the holder");
        w.behind = Some(holder);
        self.wait(key, w);
        self.blocked.entry(holder).or_default().insert(key);
        self.push(|seq| Event::TaskBlocked {
            seq,
            at: now,
            task,
            request: key,
            behind: holder,
            resources,
        });
    }

    /// Queues again, in request order, the tasks waiting behind `holder`'s claims
    /// (it finished). Returns the grants the ledger made at once, each with the key of
    /// its waiting task, for [`Coordinator::serve`]; a task no agent could take now or
    /// later is rejected.
    fn unblock(&mut self, holder: TaskId, now: Timestamp) -> Vec<(Grant, RequestId)> {
        let mut granted = Vec::new();
        let Some(blocked) = self.blocked.remove(&holder) else {
            return granted;
        };
        for key in blocked {
            let Some(mut w) = self.unwait(key) else {
                continue;
            };
            w.behind = None;
            let (id, eligible) = (w.task.id(), self.mode.admits_new_assignments());
            match request_place(self, &w.task, eligible, w.since, now) {
                Ok(Some(RequestOutcome::Queued(request))) => {
                    tracing::debug!(task.id = %id, request.id = %request, "task queued again");
                    let explanation = w.explanation.clone();
                    self.push(|seq| Event::TaskQueued {
                        seq,
                        at: now,
                        task: id,
                        request,
                        explanation: Box::new(explanation),
                    });
                    self.wait(request, w);
                }
                Ok(Some(RequestOutcome::Granted(g))) => {
                    self.wait(key, w);
                    granted.push((g, key));
                }
                Ok(None) => push_rejected(self, id, w.explanation, now),
                Err(e) => {
                    tracing::warn!(task.id = %id, error = %e, "could not queue task again");
                    push_rejected(self, id, w.explanation, now);
                }
            }
        }
        granted
    }

    fn knows(&self, task: TaskId) -> bool {
        self.assignments.contains_key(&task) || self.waiting_by_task.contains_key(&task)
    }

    /// Puts `w` in `waiting` under `key`.
    fn wait(&mut self, key: RequestId, w: WaitingTask) {
        self.waiting_by_task.insert(w.task.id(), key);
        self.waiting.insert(key, w);
    }

    /// Takes the waiting task under `key` out of `waiting`.
    fn unwait(&mut self, key: RequestId) -> Option<WaitingTask> {
        let w = self.waiting.remove(&key)?;
        self.waiting_by_task.remove(&w.task.id());
        Some(w)
    }
}

/// Builds a [`Coordinator`]. Every part has a default: the system clock, the seed's
/// rule table, a percentile predictor, the greedy assigner and the default policy
/// set.
#[derive(Debug)]
pub struct CoordinatorBuilder {
    clock: Arc<dyn Clock>,
    // The parts are made at `build` when the host sets none: the default analyzer
    // compiles the seed's rule table, work wasted on a host that brings its own.
    analyzer: Option<Arc<dyn TaskAnalyzer>>,
    predictor: Option<Box<dyn ResourcePredictor>>,
    assigner: Option<Arc<dyn Assigner>>,
    policies: Option<Arc<dyn PolicyEnforcer>>,
    ledger: LedgerConfig,
    escalation: EscalationPolicy,
}

impl Default for CoordinatorBuilder {
    fn default() -> Self {
        CoordinatorBuilder {
            clock: Arc::new(SystemClock),
            analyzer: None,
            predictor: None,
            assigner: None,
            policies: None,
            ledger: LedgerConfig::default(),
            escalation: EscalationPolicy::default(),
        }
    }
}

impl CoordinatorBuilder {
    /// Sets the clock (use a `ManualClock` in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the task analyzer.
    pub fn analyzer(mut self, analyzer: impl TaskAnalyzer + 'static) -> Self {
        self.analyzer = Some(Arc::new(analyzer));
        self
    }

    /// Sets the resource predictor.
    pub fn predictor(mut self, predictor: impl ResourcePredictor + 'static) -> Self {
        self.predictor = Some(Box::new(predictor));
        self
    }

    /// Sets the assigner.
    pub fn assigner(mut self, assigner: impl Assigner + 'static) -> Self {
        self.assigner = Some(Arc::new(assigner));
        self
    }

    /// Sets the policy enforcer.
    pub fn policies(mut self, policies: impl PolicyEnforcer + 'static) -> Self {
        self.policies = Some(Arc::new(policies));
        self
    }

    /// Sets the ledger's settings (queue aging, reservations, idle reclaim).
    pub fn ledger_config(mut self, config: LedgerConfig) -> Self {
        self.ledger = config;
        self
    }

    /// Sets the conflict escalation policy (default: the seed's decision tree).
    ///
    /// # Errors
    /// [`CoordinatorError::Conflict`] if the policy is malformed.
    pub fn escalation_policy(mut self, policy: EscalationPolicy) -> Result<Self, CoordinatorError> {
        ConflictManager::new(policy.clone())?;
        self.escalation = policy;
        Ok(self)
    }

    /// Builds the coordinator, empty.
    pub fn build(self) -> Coordinator {
        // Checked by `escalation_policy`; the default is valid.
        let conflicts = ConflictManager::new(self.escalation.clone())
            .unwrap_or_else(|_| unreachable!("escalation policies are validated when set"));
        let state = State {
            registry: AgentRegistry::new(),
            ledger: ResourceLedger::with_config(self.ledger),
            mode: SystemMode::Normal,
            duties: DutyLog::default(),
            assignments: crate::hash::FxHashMap::default(),
            waiting: BTreeMap::new(),
            waiting_by_task: BTreeMap::new(),
            fleet: Fleet::new(&AgentRegistry::new(), None).with_affinity(AffinityTable::default()),
            handed_back: Vec::new(),
            events: Vec::new(),
            next_seq: 1,
            detector: ConflictDetector::new(),
            conflicts,
            claims: BTreeMap::new(),
            holders: BTreeSet::new(),
            blocked: BTreeMap::new(),
            proposals: PendingBatch::default(),
            last_group: None,
            spare: Vec::new(),
        };
        Coordinator {
            clock: self.clock,
            analyzer: self
                .analyzer
                .unwrap_or_else(|| Arc::new(RuleBasedAnalyzer::default())),
            predictor: Mutex::new(
                self.predictor
                    .unwrap_or_else(|| Box::new(PercentilePredictor::default())),
            ),
            assigner: self
                .assigner
                .unwrap_or_else(|| Arc::new(GreedyAssigner::default())),
            policies: self
                .policies
                .unwrap_or_else(|| Arc::new(PolicySet::default())),
            state: Mutex::new(state),
        }
    }

    /// Builds the coordinator from a snapshot.
    ///
    /// Open conflicts carry on: they escalate on [`Coordinator::tick`] when they would
    /// have without the restart, and the completion of the task holding the contested
    /// resource resolves them. Running tasks hold their claims again, tasks blocked
    /// behind them wait for them again, and new conflicts get ids past every restored
    /// one.
    ///
    /// # Errors
    /// [`CoordinatorError::CorruptSnapshot`] if it is of another version or its parts
    /// do not agree (an assignment the registry or ledger does not know, an open
    /// conflict held by a task that is not running, a task blocked behind a task that
    /// is not running, no conflict id left); the
    /// registry's, ledger's and conflict manager's own checks as theirs.
    pub fn restore(self, snapshot: CoordinatorSnapshot) -> Result<Coordinator, CoordinatorError> {
        let corrupt = |reason: String| CoordinatorError::CorruptSnapshot { reason };
        crate::id::check_counter("next_seq", snapshot.next_seq).map_err(corrupt)?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(corrupt(format!(
                "version {} (expected {SNAPSHOT_VERSION})",
                snapshot.version
            )));
        }
        let registry = AgentRegistry::restore(snapshot.registry)?;
        let ledger = ResourceLedger::restore(snapshot.ledger)?;
        for (task, a) in &snapshot.assignments {
            if a.task.id() != *task
                || ledger.allocation(a.allocation).is_none()
                || !registry.contains(a.agent)
            {
                return Err(corrupt(format!(
                    "assignment of {task} does not match the registry and ledger"
                )));
            }
        }
        // Each open conflict is resolved by its holder's end: the first party, whose
        // claim was already held when the conflict was found (as `commit` records it).
        let holders: BTreeMap<ConflictId, TaskId> = snapshot
            .conflicts
            .entries
            .iter()
            .filter(|(_, r)| !r.state.is_closed())
            .filter_map(|(id, r)| {
                let holder = r.conflict.parties().first().and_then(Party::task_id)?;
                Some((*id, holder))
            })
            .collect();
        let last_id = snapshot
            .conflicts
            .entries
            .keys()
            .next_back()
            .map_or(0, |id| id.get());
        let conflicts = ConflictManager::restore(self.escalation.clone(), snapshot.conflicts)?;
        if let Some((id, task)) = holders
            .iter()
            .find(|(_, task)| !snapshot.assignments.contains_key(task))
        {
            return Err(corrupt(format!(
                "open {id} is held by {task}, which is not running"
            )));
        }
        // A task blocked behind a claim is queued again when its holder finishes, so
        // the holder must be running.
        let mut blocked: BTreeMap<TaskId, BTreeSet<RequestId>> = BTreeMap::new();
        let mut seen: BTreeSet<TaskId> = BTreeSet::new();
        for (request, w) in &snapshot.waiting {
            // A task waits once, and not while it runs.
            if !seen.insert(w.task.id()) || snapshot.assignments.contains_key(&w.task.id()) {
                return Err(corrupt(format!(
                    "{} is waiting twice, or waiting and running",
                    w.task.id()
                )));
            }
            if let Some(holder) = w.behind {
                if !snapshot.assignments.contains_key(&holder) {
                    return Err(corrupt(format!(
                        "waiting {} is blocked behind {holder}, which is not running",
                        w.task.id()
                    )));
                }
                blocked.entry(holder).or_default().insert(*request);
            }
        }
        check_restored_books(&registry, &ledger, &snapshot.assignments, &snapshot.waiting)
            .map_err(corrupt)?;
        let first_id = last_id
            .checked_add(1)
            .ok_or_else(|| {
                corrupt(format!(
                    "{} leaves no id for new conflicts",
                    ConflictId::new(last_id)
                ))
            })?
            .max(snapshot.next_conflict_id);
        // Open conflicts are part of the snapshot: the manager above holds every
        // conflict ever opened, and their holders follow from it. The claims of running
        // tasks are held again as `commit` took them (in allocation order, since their
        // assignment), so that newcomers collide with them as before. Here the detector
        // can only report overlaps among running tasks' own claims, which were never
        // opened as conflicts, and are not opened now.
        let mut detector = ConflictDetector::new().with_first_id(first_id);
        let mut claims = BTreeMap::new();
        let mut running: Vec<&Assignment> = snapshot.assignments.values().collect();
        running.sort_by_key(|a| a.allocation);
        let mut overlaps = Vec::new();
        for a in running {
            let (owner, needs) = (ClaimOwner::new(a.task.id(), a.agent), a.task.requirements());
            for c in needs.claims() {
                let _ = detector.add_claim_into(
                    owner,
                    c,
                    needs.priority(),
                    a.assigned_at,
                    &mut overlaps,
                );
            }
            if !needs.claims().is_empty() {
                claims.insert(a.task.id(), (a.agent, needs.claims().to_vec()));
            }
        }
        if !overlaps.is_empty() {
            tracing::warn!(
                conflicts = overlaps.len(),
                "running tasks' claims overlap after restore; not opened as conflicts"
            );
        }
        let coordinator = self.build();
        {
            let mut s = coordinator.state.lock();
            s.registry = registry;
            s.ledger = ledger;
            s.mode = snapshot.mode;
            s.duties = snapshot.duties;
            s.fleet.set_affinity(Some(Arc::new(snapshot.affinity)));
            s.assignments = snapshot
                .assignments
                .into_iter()
                .map(|(id, a)| (id, Arc::new(a)))
                .collect();
            s.waiting_by_task = snapshot
                .waiting
                .iter()
                .map(|(key, w)| (w.task.id(), *key))
                .collect();
            s.waiting = snapshot.waiting;
            s.next_seq = snapshot.next_seq;
            s.conflicts = conflicts;
            s.holders = holders.iter().map(|(&id, &task)| (task, id)).collect();
            s.detector = detector;
            s.claims = claims;
            s.blocked = blocked;
        }
        Ok(coordinator)
    }
}

/// Runs the seed's agent assignment procedure over a registry, a ledger, and pluggable
/// analyzer, predictor, assigner and policies.
///
/// # Examples
/// ```
/// use concord::coordinator::{AssignOutcome, Coordinator};
/// use concord::{AgentId, AgentProfile, ManualClock, Role, Capability, Task, TaskId, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
/// let coordinator = Coordinator::builder().clock(clock.clone()).build();
/// coordinator.register_agent(
///     AgentProfile::new(AgentId::new(1), "qa-1")
///         .with_role(Role::new("qa")?)
///         .with_capability(Capability::new("screenshot")?)
///         .with_capacity("cpu=2,memory=4Gi".parse()?),
/// )?;
///
/// let task = Task::new(TaskId::new(7), "screenshot", "full-page screenshot of the deployment");
/// let outcome = coordinator.assign(task)?;
/// let assignment = outcome.assignment().expect("assigned");
/// assert_eq!(assignment.agent, AgentId::new(1));
/// println!("{}", assignment.explanation); // 1 of 1 agent fit; agent#1 won with ...
///
/// coordinator.complete(TaskId::new(7), true, None)?;
/// assert!(coordinator.drain_events().len() >= 3); // registered, assigned, completed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Coordinator {
    clock: Arc<dyn Clock>,
    analyzer: Arc<dyn TaskAnalyzer>,
    predictor: Mutex<Box<dyn ResourcePredictor>>,
    assigner: Arc<dyn Assigner>,
    policies: Arc<dyn PolicyEnforcer>,
    state: Mutex<State>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("clock", &self.clock)
            .field("analyzer", &self.analyzer)
            .field("assigner", &self.assigner)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// Asks the policies about each (task, agent) pair, counting the batch's accepted
/// placements as pending.
struct PolicyAdmission<'a> {
    policies: &'a dyn PolicyEnforcer,
    state: &'a State,
    group: Option<&'a Arc<str>>,
    /// Proposals accepted so far.
    pending: PendingBatch,
    /// Warnings per task.
    warnings: BTreeMap<TaskId, Vec<Violation>>,
    now: Timestamp,
}

impl Admission for PolicyAdmission<'_> {
    fn admit(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
    ) -> Result<(), Refusal> {
        // Placements the assigner accepted since we last looked were admitted by us.
        self.pending.truncate(accepted.len());
        // Made where it stays if admitted (a proposal is some 250 bytes), and checked
        // against the placements before it.
        self.pending.propose(task, agent, self.group);
        let Some((proposal, before)) = self.pending.split_last() else {
            unreachable!("a proposal was just pushed");
        };
        let ctx = PolicyContext::new(&self.state.registry, &self.state.ledger)
            .with_mode(self.state.mode)
            .with_duties(&self.state.duties)
            .with_pending_batch(before, &self.pending)
            .with_now(self.now);
        let violations = self.policies.validate(proposal, &ctx);
        if let Some(v) = violations.iter().find(|v| v.is_blocking()) {
            self.pending.retract_last();
            return Err(Refusal::new(
                task.id(),
                agent,
                v.rule.clone(),
                v.message.clone(),
            ));
        }
        // Only findings are kept (an empty entry would cost an allocation per task);
        // a task admitted again (an assigner that backtracks) keeps its last ones.
        if violations.is_empty() {
            self.warnings.remove(&task.id());
        } else {
            self.warnings.insert(task.id(), violations);
        }
        Ok(())
    }
}

impl Coordinator {
    /// A builder with every part defaulted.
    pub fn builder() -> CoordinatorBuilder {
        CoordinatorBuilder::default()
    }

    /// The current time by the coordinator's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Registers an agent (and its declared capacity and task slots in the ledger).
    ///
    /// # Errors
    /// The registry's or the ledger's refusal (a duplicate id, an invalid profile);
    /// nothing changes.
    pub fn register_agent(&self, profile: AgentProfile) -> Result<(), CoordinatorError> {
        let now = self.now();
        let mut s = self.state.lock();
        let capacity = profile
            .capacity()
            .cloned()
            .unwrap_or_default()
            .with(slots_name(), u64::from(profile.max_tasks()));
        if s.ledger.capacity(profile.id()).is_ok() {
            return Err(LedgerError::DuplicateAgent {
                agent: profile.id(),
            }
            .into());
        }
        s.registry.register(profile.clone(), now)?;
        if let Err(e) = s.ledger.add_agent(profile.id(), &capacity) {
            // Keep the two in step: undo the registration.
            let _ = s.registry.deregister(profile.id());
            return Err(e.into());
        }
        tracing::info!(agent.id = %profile.id(), agent.name = profile.name(), "agent registered");
        s.push(|seq| Event::AgentRegistered {
            seq,
            at: now,
            profile: Box::new(profile),
        });
        Ok(())
    }

    /// Changes an agent's status (it must be a legal transition).
    ///
    /// # Errors
    /// The registry's refusal; nothing changes.
    pub fn set_agent_status(
        &self,
        agent: AgentId,
        status: AgentStatus,
    ) -> Result<(), CoordinatorError> {
        let now = self.now();
        let mut s = self.state.lock();
        let from = s.registry.set_status(agent, status, now)?;
        tracing::info!(agent.id = %agent, from = %from, to = %status, "agent status changed");
        s.push(|seq| Event::AgentStatusChanged {
            seq,
            at: now,
            agent,
            from,
            to: status,
        });
        Ok(())
    }

    /// Enters or leaves safe mode (or recovery). In any mode but normal, the default
    /// policies admit no new assignment.
    pub fn set_mode(&self, mode: SystemMode) {
        let now = self.now();
        let mut s = self.state.lock();
        let from = s.mode;
        if from != mode {
            s.mode = mode;
            tracing::info!(from = %from, to = %mode, "system mode changed");
            s.push(|seq| Event::ModeChanged {
                seq,
                at: now,
                from,
                to: mode,
            });
        }
    }

    /// The system mode.
    pub fn mode(&self) -> SystemMode {
        self.state.lock().mode
    }

    /// Assigns one task: the seed's procedure in one call.
    ///
    /// # Errors
    /// [`CoordinatorError::DuplicateTask`] if it is already assigned or waiting; the
    /// analyzer's or assigner's refusal of bad input. A task that merely cannot be
    /// placed is not an error: it comes back [`AssignOutcome::Queued`] or
    /// [`AssignOutcome::Rejected`].
    pub fn assign(&self, task: Task) -> Result<AssignOutcome, CoordinatorError> {
        let mut out = self.assign_batch(None, vec![task])?;
        // One task in, one outcome out.
        Ok(out.remove(0))
    }

    /// Assigns one task as part of `group` (a workflow run), so separation of duties
    /// holds across the group's tasks.
    ///
    /// # Errors
    /// As [`assign`](Self::assign).
    pub fn assign_in_group(
        &self,
        group: &str,
        task: Task,
    ) -> Result<AssignOutcome, CoordinatorError> {
        let mut out = self.assign_batch(Some(group), vec![task])?;
        Ok(out.remove(0))
    }

    /// Assigns a batch of tasks together (the assigner sees them all at once, which is
    /// what an optimal assigner needs), optionally as part of `group`. Outcomes come
    /// back in the batch's order.
    ///
    /// # Errors
    /// As [`assign`](Self::assign), for any task of the batch; then nothing changes.
    pub fn assign_batch(
        &self,
        group: Option<&str>,
        mut tasks: Vec<Task>,
    ) -> Result<Vec<AssignOutcome>, CoordinatorError> {
        let mut outcomes = Vec::with_capacity(tasks.len());
        self.assign_batch_into(group, &mut tasks, &mut outcomes)?;
        Ok(outcomes)
    }

    /// [`assign_batch`](Self::assign_batch) for a caller that reuses its buffers:
    /// takes the tasks out of `tasks` and appends their outcomes to `outcomes`. Spent
    /// tasks are left in `tasks`, for [`Task::refill`] to make the next batch's
    /// (after an error, whatever is left is for refilling too).
    pub(crate) fn assign_batch_into(
        &self,
        group: Option<&str>,
        tasks: &mut [Task],
        outcomes: &mut Vec<AssignOutcome>,
    ) -> Result<(), CoordinatorError> {
        let now = self.now();
        // 1. Analyze (pure; outside the lock). One span per batch, not per task (a
        // span costs even when nothing listens); the events name their task.
        let span = tracing::debug_span!("analyze", tasks = tasks.len()).entered();
        for task in tasks.iter_mut() {
            let fired = self.analyzer.analyze_in_place(task)?;
            tracing::debug!(task.id = %task.id(), rules = ?fired.iter().map(|f| &f.rule).collect::<Vec<_>>(), "task analyzed");
        }
        drop(span);
        let analyzed = tasks;
        // 2. Predict the needs.
        {
            let _span = tracing::debug_span!("predict", tasks = analyzed.len()).entered();
            let predictor = self.predictor.lock();
            for task in analyzed.iter_mut() {
                let (kind, resources) = task.kind_and_resources_mut();
                predictor.predict_in_place(kind, resources);
            }
        }
        let mut s = self.state.lock();
        // One shared name for the whole batch's proposals and assignments: the last
        // batch's when it was of the same group (a workflow run assigns batch after
        // batch), else the duty log's, else a new one.
        let group: Option<Arc<str>> = group.map(|g| {
            if let Some(last) = s.last_group.as_ref().filter(|last| ***last == *g) {
                return Arc::clone(last);
            }
            let shared = match s.duties.shared_group(g) {
                Some(logged) => Arc::clone(logged),
                None => Arc::from(g),
            };
            s.last_group = Some(Arc::clone(&shared));
            shared
        });
        for t in analyzed.iter() {
            if s.knows(t.id()) {
                return Err(CoordinatorError::DuplicateTask { task: t.id() });
            }
            // Refused here, before any task of the batch is committed, so that a bad
            // claim on the third task does not leave the first two assigned behind an
            // error.
            if let Some(c) = t.requirements().claims().iter().find(|c| c.names_nothing()) {
                return Err(ConflictError::EmptyClaim {
                    resource: c.resource().to_owned(),
                }
                .into());
            }
        }
        // 3-4. Find available agents and assign, validating through the policies.
        let (plan, mut warnings, pending) = {
            let _span = tracing::debug_span!("assign", tasks = analyzed.len()).entered();
            let st: &mut State = &mut s;
            let pending = std::mem::take(&mut st.proposals);
            st.fleet.refresh(&st.registry, Some(&st.ledger));
            let st: &State = st;
            let fleet = &st.fleet;
            let mut admission = PolicyAdmission {
                policies: self.policies.as_ref(),
                state: st,
                group: group.as_ref(),
                pending,
                warnings: BTreeMap::new(),
                now,
            };
            let plan = if fleet.is_empty() {
                Ok(crate::assignment::Plan::default())
            } else {
                self.assigner.assign(analyzed, fleet, &mut admission)
            };
            let PolicyAdmission {
                mut pending,
                warnings,
                ..
            } = admission;
            pending.clear();
            (plan, warnings, pending)
        };
        s.proposals = pending;
        let plan = plan?;
        for refusal in &plan.refusals {
            let refusal = refusal.clone();
            s.push(|seq| Event::PolicyRefused {
                seq,
                at: now,
                refusal: Box::new(refusal),
            });
        }
        // 5. Allocate, in the batch's order.
        let _span = tracing::debug_span!("allocate", tasks = analyzed.len()).entered();
        let mut placements = ByTask::new(plan.placements, |p| p.task);
        let mut unplaced = ByTask::new(plan.unplaced, |u| u.task);
        // The tasks stay in the batch's buffer, each moved out once, into its
        // assignment (or its place in the queue), leaving a spent task in its place
        // (see `Task::refill`).
        let allocated = analyzed.iter_mut().try_for_each(|task| {
            let id = task.id();
            if let Some(p) = placements.take(id) {
                let outcome = commit(
                    &mut s,
                    self.policies.as_ref(),
                    task,
                    p,
                    warnings.remove(&id).unwrap_or_default(),
                    group.as_ref(),
                    now,
                )?;
                outcomes.push(outcome);
                return Ok(());
            }
            let explanation =
                unplaced
                    .take(id)
                    .map(|u| u.explanation)
                    .unwrap_or_else(|| Explanation {
                        considered: 0,
                        ..Explanation::default()
                    });
            let refusals: Vec<Refusal> = plan
                .refusals
                .iter()
                .filter(|r| r.task == id)
                .cloned()
                .collect();
            outcomes.push(queue_or_reject(
                &mut s,
                task.take(),
                explanation,
                refusals,
                group.as_ref(),
                None,
                now,
            )?);
            Ok::<(), CoordinatorError>(())
        });
        allocated?;
        // Giving back capacity for a task the assigner refused may have granted
        // waiting tasks some: they are assigned now (see the journal).
        self.serve_handed_back(&mut s, now);
        Ok(())
    }

    /// Records that `task` finished: frees its slot, resources and claims (serving
    /// waiting tasks with them, and queueing again the tasks that waited behind its
    /// claims), teaches the predictor what it used, and remembers for affinity how it
    /// went. Returns the waiting tasks that were assigned with what it freed.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownTask`] if it is not assigned; nothing changes.
    pub fn complete(
        &self,
        task: TaskId,
        success: bool,
        usage: Option<Resources>,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let now = self.now();
        let mut s = self.state.lock();
        let mut a = s
            .assignments
            .remove(&task)
            .ok_or(CoordinatorError::UnknownTask { task })?;
        if !s.ledger.holds(a.allocation) {
            let allocation = a.allocation;
            s.assignments.insert(task, a);
            return Err(LedgerError::UnknownAllocation { allocation }.into());
        }
        let _ = s.registry.task_finished(a.agent, now);
        s.release_claims(task, now);
        // The tasks blocked behind its claims queue again before its resources come
        // back, as old as they were: what it frees goes to the queue in order, them
        // included, not only to the tasks queued after them.
        let unblocked = s.unblock(task, now);
        // Checked above: the allocation is live.
        let grants = s.ledger.release(a.allocation, now).unwrap_or_default();
        s.fleet
            .affinity_mut()
            .record_shared(a.task.kind_arc(), a.agent, success);
        if let Some(usage) = usage {
            let observation = crate::resource::Observation::new(usage, now);
            self.predictor.lock().observe(a.task.kind(), &observation);
        }
        tracing::debug!(task.id = %task, agent.id = %a.agent, success, "task completed");
        s.push(|seq| Event::TaskCompleted {
            seq,
            at: now,
            task,
            agent: a.agent,
            success,
        });
        // Its allocation serves the next assignment when nobody holds it any more
        // (the host has taken its events, the outcome is dropped).
        if s.spare.len() < SPARE_ASSIGNMENTS && Arc::get_mut(&mut a).is_some() {
            s.spare.push(a);
        }
        Ok(self.serve(&mut s, grants, unblocked, now))
    }

    /// Withdraws a waiting task (queued, or blocked behind a claim).
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownTask`] if it is not waiting.
    pub fn cancel(&self, task: TaskId) -> Result<Task, CoordinatorError> {
        let now = self.now();
        let mut s = self.state.lock();
        let (request, behind) = s
            .waiting_by_task
            .get(&task)
            .and_then(|r| Some((*r, s.waiting.get(r)?.behind)))
            .ok_or(CoordinatorError::UnknownTask { task })?;
        match behind {
            // Blocked behind a claim: not in the ledger's queue.
            Some(holder) => {
                if let Some(keys) = s.blocked.get_mut(&holder) {
                    keys.remove(&request);
                    if keys.is_empty() {
                        s.blocked.remove(&holder);
                    }
                }
            }
            None => {
                s.ledger.cancel(request)?;
            }
        }
        let w = s
            .unwait(request)
            .ok_or(CoordinatorError::UnknownTask { task })?;
        s.push(|seq| Event::TaskCancelled { seq, at: now, task });
        // A withdrawn request may have held a reservation: what it kept free for
        // itself goes to the tasks behind it now.
        let grants = s.ledger.drain(now);
        self.serve(&mut s, grants, Vec::new(), now);
        Ok(w.task)
    }

    /// Lets time pass: expires leases, gives reservations to long-waiting tasks and
    /// assigns waiting tasks that fit now. Returns the tasks assigned.
    pub fn tick(&self) -> Vec<Arc<Assignment>> {
        let now = self.now();
        let mut s = self.state.lock();
        let actions = s.conflicts.tick(now);
        s.escalate(actions, now);
        let mut grants = s.ledger.expire(now).grants;
        grants.extend(s.ledger.drain(now));
        self.serve(&mut s, grants, Vec::new(), now)
    }

    /// Turns grants for waiting tasks into assignments, in the order granted (the
    /// ledger's queue order; `unblocked`, the tasks that waited behind a finished
    /// task's claims, first): the policies must agree (a refused grant is given back
    /// and, after the pass, the task waits again, or is rejected if nothing could take
    /// it), and the
    /// task's claims must not collide with a running task's (a colliding task's grant
    /// is given back and it waits behind the holder, [`State::block`]). Grants that
    /// giving back makes are served in the same pass.
    fn serve(
        &self,
        s: &mut State,
        grants: Vec<Grant>,
        unblocked: Vec<(Grant, RequestId)>,
        now: Timestamp,
    ) -> Vec<Arc<Assignment>> {
        if grants.is_empty() && unblocked.is_empty() && s.handed_back.is_empty() {
            // Nothing granted (as after nearly every completion): nothing to do.
            return Vec::new();
        }
        let from_ledger = |g: Grant| {
            let key = g.request;
            (g, key)
        };
        let mut assigned = Vec::new();
        let mut refused = Vec::new();
        let mut queue: VecDeque<(Grant, Option<RequestId>)> = unblocked
            .into_iter()
            .map(|(g, key)| (g, Some(key)))
            .chain(grants.into_iter().map(from_ledger))
            .collect();
        while let Some((g, key)) = queue.pop_front() {
            let Some(key) = key else { continue };
            let Some(w) = s.unwait(key) else {
                // Not ours: give it back.
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
                continue;
            };
            let proposal = Proposal::for_admission(&w.task, g.agent, w.group.clone());
            // The grant already holds the resources: check policies against the
            // ledger as it was before it, by counting what it holds as released (no
            // copy of the ledger: O(kinds of resource) per grant).
            let violations = {
                let held = s
                    .ledger
                    .allocation(g.allocation)
                    .map(|a| a.resources)
                    .unwrap_or_default();
                let ctx = PolicyContext::new(&s.registry, &s.ledger)
                    .with_mode(s.mode)
                    .with_duties(&s.duties)
                    .with_released(g.agent, &held)
                    .with_now(now);
                self.policies.validate(&proposal, &ctx)
            };
            if let Some(v) = violations.iter().find(|v| v.is_blocking()) {
                let refusal = Refusal::new(w.task.id(), g.agent, v.rule.clone(), v.message.clone());
                s.push(|seq| Event::PolicyRefused {
                    seq,
                    at: now,
                    refusal: Box::new(refusal),
                });
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
                // It waits again after this pass, not now: queued now, the capacity
                // another refused task gives back could grant it again in this same
                // pass, and two such tasks would hand it back and forth for ever.
                refused.push(w);
                continue;
            }
            // The agent may have left service while the task waited (quarantined,
            // taken offline): a policy on agent status refuses that above, and without
            // one the registry has the last word. The grant goes back and the task
            // waits again, for the agents in service then.
            if let Err(e) = startable(&s.registry, g.agent) {
                tracing::debug!(task.id = %w.task.id(), agent.id = %g.agent, error = %e, "granted agent cannot start the task; task waits again");
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
                refused.push(w);
                continue;
            }
            // Its claims, exactly as a direct assignment's; but a collision blocks it
            // behind the holder instead of opening a conflict.
            let hold = s.hold_claims(&w.task, g.agent, now);
            if !matches!(hold, Ok(Hold::Held)) {
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
                match hold {
                    Ok(Hold::Collides(found)) => s.block(key, w, &found, now),
                    Err(e) => {
                        // A claim the detector refuses (it names nothing): no agent
                        // can ever run the task.
                        tracing::warn!(task.id = %w.task.id(), error = %e, "task's claims refused");
                        push_rejected(s, w.task.id(), w.explanation, now);
                    }
                    Ok(Hold::Held) => {}
                }
                continue;
            }
            let explanation = Explanation {
                considered: 1,
                fit: 1,
                winner: Some((g.agent, 0.0)),
                ..w.explanation.clone()
            };
            let resources = w.task.requirements().resources().clone();
            let assignment = Assignment {
                agent: g.agent,
                allocation: g.allocation,
                resources,
                score: 0.0,
                explanation,
                warnings: violations,
                group: w.group.clone(),
                assigned_at: now,
                task: w.task,
            };
            if s.registry.task_started(g.agent, now).is_err() {
                tracing::warn!(agent.id = %g.agent, "granted agent could not start the task");
            }
            record_duty(s, self.policies.as_ref(), &assignment);
            let assignment = Arc::new(assignment);
            s.assignments
                .insert(assignment.task.id(), Arc::clone(&assignment));
            let shared = Arc::clone(&assignment);
            s.push(|seq| Event::TaskAssigned {
                seq,
                at: now,
                assignment: shared,
            });
            assigned.push(assignment);
        }
        // Wait again, unless nothing could ever take it.
        for w in refused {
            let task_id = w.task.id();
            let group = w.group;
            if let Err(e) = queue_or_reject(
                s,
                w.task,
                w.explanation,
                Vec::new(),
                group.as_ref(),
                w.since,
                now,
            ) {
                tracing::warn!(task.id = %task_id, error = %e, "could not requeue task");
            }
        }
        assigned.extend(self.serve_handed_back(s, now));
        assigned
    }

    /// Serves the grants `queue_or_reject` handed back (see `State::handed_back`).
    /// Each comes from a task rejected for good on the way, so serving them, which
    /// may hand back more, ends.
    fn serve_handed_back(&self, s: &mut State, now: Timestamp) -> Vec<Arc<Assignment>> {
        let more = std::mem::take(&mut s.handed_back);
        if more.is_empty() {
            return Vec::new();
        }
        self.serve(s, more, Vec::new(), now)
    }

    /// The tasks running now, by task id.
    pub fn assignments(&self) -> Vec<Arc<Assignment>> {
        let mut running: Vec<Arc<Assignment>> =
            self.state.lock().assignments.values().cloned().collect();
        running.sort_unstable_by_key(|a| a.task.id());
        running
    }

    /// The tasks waiting, in request order: in the ledger's queue, or blocked behind a
    /// running task's claim ([`WaitingTask::behind`]; in the order of the request it
    /// was last granted on).
    pub fn waiting(&self) -> Vec<WaitingTask> {
        self.state.lock().waiting.values().cloned().collect()
    }

    /// Forgets the conflicts that closed before `closed_before` (see
    /// [`ConflictManager::forget_closed`]): their records leave the coordinator and
    /// its snapshots, their counts stay in the metrics, and their ids are never
    /// issued again. Returns how many were forgotten.
    pub fn forget_closed_conflicts(&self, closed_before: Timestamp) -> usize {
        self.state.lock().conflicts.forget_closed(closed_before)
    }

    /// Forgets who did which duty in `group` (a finished workflow run or batch), so
    /// the duty log stays the size of the groups still going. Separation of duties
    /// within that group is not enforced against earlier assignments afterwards.
    /// Returns whether anything was recorded for it.
    pub fn forget_group(&self, group: &str) -> bool {
        self.state.lock().duties.forget_group(group)
    }

    /// Takes the events made since the last call, in order, for the host to journal.
    pub fn drain_events(&self) -> Vec<Event> {
        std::mem::take(&mut self.state.lock().events)
    }

    /// [`drain_events`](Self::drain_events) into the host's buffer: appends the events
    /// made since the last call to `out`. A host that journals often and reuses `out`
    /// allocates nothing here, and neither does the coordinator's own journal, which
    /// keeps its capacity.
    pub fn drain_events_into(&self, out: &mut Vec<Event>) {
        let events = &mut self.state.lock().events;
        if out.is_empty() && out.capacity() >= events.len() {
            // The journal and the host's buffer trade storage: nothing is copied,
            // and each keeps room for a batch's events.
            std::mem::swap(out, events);
        } else {
            out.append(events);
        }
    }

    /// Runs `f` on the registry (read-only).
    pub fn with_registry<R>(&self, f: impl FnOnce(&AgentRegistry) -> R) -> R {
        f(&self.state.lock().registry)
    }

    /// Runs `f` on the ledger (read-only).
    pub fn with_ledger<R>(&self, f: impl FnOnce(&ResourceLedger) -> R) -> R {
        f(&self.state.lock().ledger)
    }

    /// Everything the coordinator holds, as serde data. Events not yet drained are not
    /// part of it: drain and journal them first.
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        let s = self.state.lock();
        CoordinatorSnapshot {
            version: SNAPSHOT_VERSION,
            registry: s.registry.snapshot(),
            ledger: s.ledger.snapshot(),
            mode: s.mode,
            duties: s.duties.clone(),
            affinity: s.fleet.affinity().cloned().unwrap_or_default(),
            assignments: s
                .assignments
                .iter()
                .map(|(id, a)| (*id, Assignment::clone(a)))
                .collect(),
            waiting: s.waiting.clone(),
            next_seq: s.next_seq,
            conflicts: s.conflicts.snapshot(),
            next_conflict_id: s.detector.next_id(),
        }
    }
}

/// Books a placement: claims, allocation (resources plus one slot), registry slot,
/// duty log, event. All or nothing: every step that can fail is checked before the
/// first change, or undone, so an error leaves the state as it was.
fn commit(
    s: &mut State,
    policies: &dyn PolicyEnforcer,
    task: &mut Task,
    p: Placement,
    warnings: Vec<Violation>,
    group: Option<&Arc<str>>,
    now: Timestamp,
) -> Result<AssignOutcome, CoordinatorError> {
    // Exclusive claims (files, ports, environments) are checked before anything is
    // allocated: a task whose claims collide is not assigned, and the conflicts go
    // through the manager.
    if let Hold::Collides(found) = s.hold_claims(task, p.agent, now)? {
        return open_conflicts(s, task.id(), found, now);
    }
    // From here the claims are held: drop them again on any error.
    if let Err(e) = startable(&s.registry, p.agent) {
        s.drop_claims(task.id());
        return Err(e.into());
    }
    let resources = task.requirements().resources();
    let grant = match s.ledger.try_allocate_with_slot(
        p.agent,
        resources,
        slots_name(),
        task.id(),
        task.requirements().priority(),
        now,
    ) {
        Ok(g) => g,
        Err(e) => {
            s.drop_claims(task.id());
            return Err(e.into());
        }
    };
    if let Err(e) = s.registry.task_started(p.agent, now) {
        // Ruled out by `startable`. Releasing also serves the ledger's queue, whose
        // grants nobody would take up here: that is why the registry is asked first.
        tracing::error!(task.id = %task.id(), agent.id = %p.agent, error = %e, "agent refused a task it could start");
        let _ = s.ledger.release(grant.allocation, now);
        s.drop_claims(task.id());
        return Err(e.into());
    }
    // A finished task's allocation, held by nobody else since (checked when kept), is
    // written field by field: a whole `Assignment` (some 400 bytes) built aside and
    // then moved in is two large copies. (`make_mut` would copy a shared one first;
    // none is.)
    let assignment = match s.spare.pop() {
        Some(mut spare) => {
            let slot = Arc::make_mut(&mut spare);
            slot.agent = p.agent;
            slot.allocation = grant.allocation;
            slot.resources.clone_from(resources);
            slot.score = p.score;
            slot.explanation = p.explanation;
            slot.warnings = warnings;
            slot.group = group.cloned();
            slot.assigned_at = now;
            // The finished task goes back to the batch's buffer, where the next
            // batch's task is written over it.
            std::mem::swap(&mut slot.task, task);
            spare
        }
        None => Arc::new(Assignment {
            agent: p.agent,
            allocation: grant.allocation,
            resources: resources.clone(),
            score: p.score,
            explanation: p.explanation,
            warnings,
            group: group.cloned(),
            assigned_at: now,
            task: task.take(),
        }),
    };
    record_duty(s, policies, &assignment);
    tracing::debug!(task.id = %assignment.task.id(), agent.id = %assignment.agent, score = assignment.score, "task assigned");
    s.assignments
        .insert(assignment.task.id(), Arc::clone(&assignment));
    let shared = Arc::clone(&assignment);
    s.push(|seq| Event::TaskAssigned {
        seq,
        at: now,
        assignment: shared,
    });
    Ok(AssignOutcome::Assigned(assignment))
}

/// Why a restored registry and ledger do not agree with the running and waiting tasks
/// of the snapshot, if they do not: the same agents in both, each with its task slots
/// in the ledger; each running task on its own allocation, on its agent, and counted
/// by the registry; each waiting task on a request in the ledger's queue for it (or
/// blocked behind a claim, off the queue).
fn check_restored_books(
    registry: &AgentRegistry,
    ledger: &ResourceLedger,
    assignments: &BTreeMap<TaskId, Assignment>,
    waiting: &BTreeMap<RequestId, WaitingTask>,
) -> Result<(), String> {
    let in_registry: BTreeSet<AgentId> = registry.iter().map(|v| v.id()).collect();
    let in_ledger: BTreeSet<AgentId> = ledger.agents().collect();
    if let Some(agent) = in_registry.symmetric_difference(&in_ledger).next() {
        return Err(format!(
            "{agent} is in only one of the registry and the ledger"
        ));
    }
    let mut running: BTreeMap<AgentId, u32> = BTreeMap::new();
    let mut allocations = BTreeSet::new();
    for (task, a) in assignments {
        let held = ledger.allocation(a.allocation);
        if a.task.id() != *task || held.is_none_or(|h| h.agent != a.agent) {
            return Err(format!(
                "assignment of {task} does not match the registry and ledger"
            ));
        }
        if !allocations.insert(a.allocation) {
            return Err(format!("{task} shares {} with another task", a.allocation));
        }
        *running.entry(a.agent).or_default() += 1;
    }
    for view in registry.iter() {
        let (agent, counted) = (view.id(), running.get(&view.id()).copied().unwrap_or(0));
        if view.running() != counted {
            return Err(format!(
                "the registry counts {} tasks on {agent}, which runs {counted}",
                view.running()
            ));
        }
        let slots = ledger.capacity(agent).map_or(0, |c| c.get(slots_name()));
        if slots != u64::from(view.max_tasks()) {
            return Err(format!(
                "{agent} has {slots} task slots in the ledger for {} tasks",
                view.max_tasks()
            ));
        }
    }
    let queued: BTreeMap<RequestId, Option<TaskId>> = ledger
        .waiting(Timestamp::from_secs(0))
        .into_iter()
        .map(|w| (w.id, w.request.task()))
        .collect();
    for (request, w) in waiting {
        if w.behind.is_none() && queued.get(request) != Some(&Some(w.task.id())) {
            return Err(format!(
                "{} waits on {request}, which the ledger's queue does not hold for it",
                w.task.id()
            ));
        }
    }
    Ok(())
}

/// Why [`AgentRegistry::task_started`] would refuse `agent` a task, asked before the
/// ledger allocates (the same checks, read-only).
fn startable(registry: &AgentRegistry, agent: AgentId) -> Result<(), RegistryError> {
    let view = registry
        .get(agent)
        .ok_or(RegistryError::UnknownAgent { agent })?;
    if view.status() != AgentStatus::Available {
        return Err(RegistryError::NotAvailable {
            agent,
            status: view.status(),
        });
    }
    if view.running() >= view.max_tasks() {
        return Err(RegistryError::NoFreeSlot {
            agent,
            running: view.running(),
            max_tasks: view.max_tasks(),
        });
    }
    Ok(())
}

/// Opens the conflicts a directly assigned task's claims collide in (each held by the
/// task named first in it, whose end resolves it), all of them or none.
///
/// # Errors
/// [`ConflictError::DuplicateConflict`] if the manager already knows one of their ids
/// (a restored manager whose ids the detector's wrap-around at `u64::MAX` comes back
/// to); then nothing changes.
fn open_conflicts(
    s: &mut State,
    task: TaskId,
    found: Vec<Conflict>,
    now: Timestamp,
) -> Result<AssignOutcome, CoordinatorError> {
    // A task submitted again while the conflicts it met are still open (a host or the
    // executor retrying under the same task id) meets the same conflicts: they are
    // reported again, and not opened twice.
    let mut known = Vec::new();
    let found: Vec<Conflict> = found
        .into_iter()
        .filter(|c| {
            let holder = c.parties().first().and_then(Party::task_id);
            match holder.and_then(|h| s.open_conflict_between(h, task)) {
                Some(id) => {
                    known.push(id);
                    false
                }
                None => true,
            }
        })
        .collect();
    if found.is_empty() {
        return Ok(AssignOutcome::Conflicted {
            task,
            conflicts: known,
        });
    }
    // `ConflictManager::open` refuses only an id it knows. Every id is checked before
    // the first is opened, so that a refusal cannot leave some conflicts open, their
    // events made and their holders recorded: below this check nothing fails.
    let mut ids = Vec::with_capacity(found.len());
    for conflict in &found {
        let id = conflict.id();
        if s.conflicts.conflict(id).is_some() || ids.contains(&id) {
            return Err(ConflictError::DuplicateConflict { id }.into());
        }
        ids.push(id);
    }
    if let Some(last) = ids.last() {
        // `hold_claims` took the ids back; they are used now.
        s.set_next_conflict_id(last.get().wrapping_add(1));
    }
    let mut opened_ids = known;
    for conflict in found {
        let id = conflict.id();
        // The claim already held is the first party: its task's end resolves it.
        let holder = conflict.parties().first().and_then(|party| party.task_id());
        let opened = match s.conflicts.open(conflict.clone(), now) {
            Ok(opened) => opened,
            Err(e) => {
                // Unreachable: the ids were checked above.
                tracing::error!(conflict.id = %id, error = %e, "conflict manager refused a checked id");
                continue;
            }
        };
        if let Some(holder) = holder {
            s.holders.insert((holder, id));
        }
        tracing::info!(task.id = %task, conflict.id = %id, "claims collide");
        let assessment = opened.assessment.clone();
        s.push(|seq| Event::ConflictDetected {
            seq,
            at: now,
            conflict: Box::new(conflict),
            assessment,
        });
        s.escalate(opened.actions, now);
        opened_ids.push(id);
    }
    Ok(AssignOutcome::Conflicted {
        task,
        conflicts: opened_ids,
    })
}

/// Records `a`'s duty in its group, if the policies ever read it.
fn record_duty(s: &mut State, policies: &dyn PolicyEnforcer, a: &Assignment) {
    if let Some(group) = a
        .group
        .as_ref()
        .filter(|_| policies.reads_duty(a.task.kind()))
    {
        s.duties.record_shared(group, a.task.kind_arc(), a.agent);
    }
}

/// A task no agent can take now: queue it when some agent could take it later (it has
/// the roles and capabilities, is not out of service, and could ever hold the needs),
/// else reject it. A task that waited before (`since`) keeps its age in the queue.
fn queue_or_reject(
    s: &mut State,
    task: Task,
    explanation: Explanation,
    refusals: Vec<Refusal>,
    group: Option<&Arc<str>>,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Result<AssignOutcome, CoordinatorError> {
    let id = task.id();
    let eligible = s.mode.admits_new_assignments() && refusals.is_empty();
    match request_place(s, &task, eligible, since, now)? {
        Some(RequestOutcome::Queued(request)) => {
            tracing::debug!(task.id = %id, request.id = %request, "task queued");
            let e = explanation.clone();
            s.push(|seq| Event::TaskQueued {
                seq,
                at: now,
                task: id,
                request,
                explanation: Box::new(e),
            });
            s.wait(
                request,
                WaitingTask {
                    task,
                    group: group.cloned(),
                    explanation: explanation.clone(),
                    behind: None,
                    since: Some(since.unwrap_or(now)),
                },
            );
            return Ok(AssignOutcome::Queued {
                task: id,
                request,
                explanation: Box::new(explanation),
            });
        }
        Some(RequestOutcome::Granted(g)) => {
            // Capacity appeared between the plan and now (a candidate the filters
            // had refused for slots or resources): give it back and report why
            // the assigner refused. What giving it back grants to waiting tasks is
            // served before the call returns.
            if let Ok(more) = s.ledger.release(g.allocation, now) {
                s.handed_back.extend(more);
            }
        }
        // No candidate could ever hold it: reject below.
        None => {}
    }
    push_rejected(s, id, explanation.clone(), now);
    Ok(AssignOutcome::Rejected {
        task: id,
        explanation: Box::new(explanation),
        refusals,
    })
}

/// Asks the ledger for `task`'s resources and a slot on any agent that could take it
/// now or later (it plays the roles, has the capabilities and is available or busy),
/// if it is `eligible` at all: granted at once, or queued (aging from `since` when it
/// waited before). `None` when no agent could ever hold it.
///
/// # Errors
/// The ledger's refusal, but for [`LedgerError::ExceedsCapacity`] (that is `None`).
fn request_place(
    s: &mut State,
    task: &Task,
    eligible: bool,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<RequestOutcome>, LedgerError> {
    let candidates: Vec<AgentId> = if eligible {
        s.registry
            .iter()
            .filter(|v| matches!(v.status(), AgentStatus::Available | AgentStatus::Busy))
            .filter(|v| {
                let p = v.profile();
                task.requirements().roles().iter().all(|r| p.has_role(r))
                    && task
                        .requirements()
                        .capabilities()
                        .iter()
                        .all(|c| p.has_capability(c))
            })
            .map(|v| v.id())
            .collect()
    } else {
        Vec::new()
    };
    if candidates.is_empty() {
        return Ok(None);
    }
    let needs = task
        .requirements()
        .resources()
        .clone()
        .with(slots_name(), 1);
    let mut request = AllocationRequest::any_of(candidates, needs)
        .with_task(task.id())
        .with_priority(task.requirements().priority());
    if let Some(since) = since {
        request = request.with_waiting_since(since);
    }
    match s.ledger.request(request, now) {
        Ok(outcome) => Ok(Some(outcome)),
        Err(LedgerError::ExceedsCapacity { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records that a task was rejected.
fn push_rejected(s: &mut State, task: TaskId, explanation: Explanation, now: Timestamp) {
    tracing::debug!(task.id = %task, why = %explanation, "task rejected");
    s.push(|seq| Event::TaskRejected {
        seq,
        at: now,
        task,
        explanation: Box::new(explanation),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_is_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<Coordinator>();
    }
}
