//! The coordinator's checkpoint: [`CoordinatorSnapshot`], taken by
//! [`Core::snapshot`] and checked, part against part, when it is restored.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRegistry, RegistrySnapshot};
use crate::assignment::AffinityTable;
use crate::clock::Timestamp;
use crate::conflict::{
    ClaimOwner, ConflictDetector, ConflictId, ConflictManager, ConflictManagerSnapshot,
    EscalationPolicy, Party,
};
use crate::id::{AgentId, RequestId, TaskId};
use crate::policy::{DutyLog, SystemMode};
use crate::resource::{Learned, LedgerSnapshot, ResourceLedger, ResourceName};

use super::core::{Core, Parts, State};
use super::emergency::RecentFailures;
use super::error::CoordinatorError;
use super::event::Assignment;
use super::queue::WaitingTask;

/// Everything a coordinator holds, as serde data: its checkpoint. The analyzer,
/// assigner and policies are code or host data (keep them in your configuration), and
/// so is the predictor's learned state (hand the predictor in again on restore).
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
    /// [forgotten](Core::forget_closed_conflicts).
    #[serde(default)]
    pub next_conflict_id: u64,
    /// The (holder, task) pairs a decision approved to run side by side, so that an
    /// approved task still waiting for room is not blocked again after a restore.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub approved: BTreeSet<(TaskId, TaskId)>,
    /// The number of the next journal [`Record`](super::Record): a recovery
    /// replays the records from this one on.
    #[serde(default = "first_record")]
    pub journal_next: u64,
    /// What the predictor had learned, if it is one of the crate's (see
    /// [`ResourcePredictor::learned`](crate::ResourcePredictor::learned)): restored
    /// into the predictor the coordinator is rebuilt with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<Learned>,
    /// The latest time any command was given: a restored core refuses earlier ones,
    /// as the live one did.
    #[serde(default)]
    pub last_now: Timestamp,
    /// The recent failures the safe-mode rules count, so that a restored core
    /// enters safe mode where the live one would.
    #[serde(default, skip_serializing_if = "RecentFailures::is_empty")]
    pub recent_failures: RecentFailures,
    /// Whether external communications are stopped, since when and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communications: Option<super::CommunicationsStop>,
    /// The highest task id the core was ever given ([`Core::highest_task_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_task_id: Option<TaskId>,
    /// The groups whose driver confirms when work stops ([`Core::drive`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub driven: BTreeSet<Arc<str>>,
    /// When each group's latest duty attempt started
    /// ([`Core::forget_finished_group`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub duty_started: BTreeMap<Arc<str>, Timestamp>,
    /// The running tasks interrupted by their agent's leaving service, until their
    /// driver completes them or hands them back ([`Core::hand_back`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub interrupted: BTreeSet<TaskId>,
}

/// The first journal record's number (read for checkpoints from before the
/// journal).
fn first_record() -> u64 {
    1
}

/// Version 2 added `conflicts`; version 3, tasks held off the queue
/// ([`WaitingTask::parked`]); version 4, task slots counted by the ledger itself
/// (before, by a resource named [`LEGACY_SLOTS`]); version 5, duties of running
/// tasks kept apart from those done (before, every duty recorded was read as done,
/// which is how older snapshots are still read); version 6, failed duty attempts
/// kept apart from duties performed (before, both were read as performed). Versions
/// 2 to 5 are read as well.
pub(super) const SNAPSHOT_VERSION: u32 = 6;

/// The ledger resource that counted task slots in snapshots before version 4.
const LEGACY_SLOTS: &str = "concord.slots";

impl Core {
    /// Everything the core holds, as serde data: its checkpoint. Events not yet
    /// drained are not part of it: drain and journal them first.
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        let s = &self.s;
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
            journal_next: s.journal.next,
            predictor: self.parts.predictor.learned(),
            last_now: s.last_now,
            conflicts: s.conflicts.snapshot(),
            next_conflict_id: s.next_conflict_id,
            approved: s.approved.clone(),
            recent_failures: s.recent.clone(),
            communications: s.comms.clone(),
            highest_task_id: s.highest_task,
            driven: s.driven.clone(),
            duty_started: s.duty_started.clone(),
            interrupted: s.interrupted.clone(),
        }
    }
}

/// Rebuilds a core from `snapshot`, with `parts` and `escalation`.
pub(super) fn restore(
    parts: Parts,
    escalation: EscalationPolicy,
    snapshot: CoordinatorSnapshot,
) -> Result<Core, CoordinatorError> {
    let corrupt = |reason: String| CoordinatorError::CorruptSnapshot { reason };
    crate::id::check_counter("next_seq", snapshot.next_seq).map_err(corrupt)?;
    crate::id::check_counter("journal_next", snapshot.journal_next).map_err(corrupt)?;
    if snapshot.journal_next == 0 {
        return Err(corrupt(
            "journal_next 0 (records are numbered from 1)".into(),
        ));
    }
    if !(2..=SNAPSHOT_VERSION).contains(&snapshot.version) {
        return Err(corrupt(format!(
            "version {} (expected 2 to {SNAPSHOT_VERSION})",
            snapshot.version
        )));
    }
    // The live core refuses any `now` past the horizon, so it never saw one.
    if snapshot.last_now > Timestamp::HORIZON {
        return Err(corrupt(format!(
            "last_now {} is past the latest time a coordinator takes ({})",
            snapshot.last_now,
            Timestamp::HORIZON
        )));
    }
    check_recent_failures(&snapshot.recent_failures, snapshot.last_now).map_err(corrupt)?;
    if let Some(stop) = &snapshot.communications {
        if stop.since > snapshot.last_now {
            return Err(corrupt(format!(
                "communications stopped at {}, after the last time seen ({})",
                stop.since, snapshot.last_now
            )));
        }
        if !crate::id::is_note(&stop.reason) {
            return Err(corrupt(format!(
                "the communications stop's reason is not one line of at most {} bytes \
                 ({} bytes)",
                crate::id::MAX_NOTE_LEN,
                stop.reason.len()
            )));
        }
    }
    let registry = AgentRegistry::restore(snapshot.registry)?;
    let mut ledger_snapshot = snapshot.ledger;
    if snapshot.version < 4 {
        // A valid name: parsing cannot fail.
        if let Ok(legacy) = ResourceName::new(LEGACY_SLOTS) {
            ledger_snapshot.adopt_task_slots(&legacy);
        }
    }
    let ledger = ResourceLedger::restore(ledger_snapshot)?;
    if let Some(task) =
        (snapshot.interrupted.iter()).find(|t| !snapshot.assignments.contains_key(t))
    {
        return Err(corrupt(format!("{task} is interrupted but not running")));
    }
    if snapshot.driven.iter().any(|g| g.trim().is_empty()) {
        return Err(corrupt("a driven group has an empty name".into()));
    }
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
    let conflicts = ConflictManager::restore(escalation, snapshot.conflicts)?;
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
    // What the coordinator would have refused to take in.
    let running = snapshot.assignments.values().map(|a| (&a.group, &a.task));
    let waiting = snapshot.waiting.values().map(|w| (&w.group, &w.task));
    for (group, task) in running.chain(waiting) {
        super::core::check_texts(group.as_deref(), [task]).map_err(|e| corrupt(e.to_string()))?;
    }
    check_restored_books(&registry, &ledger, &snapshot.assignments, &snapshot.waiting)
        .map_err(corrupt)?;
    check_duties_in_progress(&snapshot.duties, &snapshot.assignments).map_err(corrupt)?;
    let first_id = last_id
        .checked_add(1)
        .ok_or_else(|| {
            corrupt(format!(
                "{} leaves no id for new conflicts",
                ConflictId::new(last_id)
            ))
        })?
        .max(snapshot.next_conflict_id);
    crate::id::check_counter("next_conflict_id", first_id).map_err(corrupt)?;
    // Open conflicts are part of the snapshot: the manager above holds every
    // conflict ever opened, and their holders follow from it. The claims of running
    // tasks are held again as `commit` took them (in allocation order, since their
    // assignment), so that newcomers collide with them as before. Here the detector
    // can only report overlaps among running tasks' own claims, which were never
    // opened as conflicts, and are not opened now.
    let mut detector = ConflictDetector::new();
    let mut claims = BTreeMap::new();
    let mut running: Vec<&Assignment> = snapshot.assignments.values().collect();
    running.sort_by_key(|a| a.allocation);
    let mut overlaps = Vec::new();
    for a in running {
        let (owner, needs) = (ClaimOwner::new(a.task.id(), a.agent), a.task.requirements());
        for c in needs.claims() {
            let _ =
                detector.add_claim_into(owner, c, needs.priority(), a.assigned_at, &mut overlaps);
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
    let mut s = State::new(ledger, conflicts);
    s.registry = registry;
    s.mode = snapshot.mode;
    s.duties = snapshot.duties;
    s.fleet.set_affinity(Some(Arc::new(snapshot.affinity)));
    s.assignments = snapshot
        .assignments
        .into_iter()
        .map(|(id, a)| (id, Arc::new(a)))
        .collect();
    for (key, w) in snapshot.waiting {
        s.wait(key, w);
    }
    s.next_seq = snapshot.next_seq;
    s.journal.next = snapshot.journal_next;
    s.recent = snapshot.recent_failures;
    s.comms = snapshot.communications;
    // A snapshot from before the field, or one whose tasks outran it, is read with
    // the highest id it holds.
    s.highest_task = snapshot
        .highest_task_id
        .max(s.assignments.keys().copied().max())
        .max(s.waiting_by_task.keys().copied().max());
    s.driven = snapshot.driven;
    s.duty_started = snapshot.duty_started;
    s.interrupted = snapshot.interrupted;
    s.last_now = snapshot.last_now;
    s.holders = holders.iter().map(|(&id, &task)| (task, id)).collect();
    s.detector = detector;
    s.next_conflict_id = first_id;
    s.claims = claims;
    s.blocked = blocked;
    // An approval outlives neither side: a pair naming a task that neither runs nor
    // waits is dropped.
    let known = |t: &TaskId| s.assignments.contains_key(t) || s.waiting_by_task.contains_key(t);
    s.approved = snapshot
        .approved
        .into_iter()
        .filter(|(h, t)| known(h) && known(t))
        .collect();
    let mut parts = parts;
    if let Some(learned) = &snapshot.predictor {
        if !parts.predictor.relearn(learned) {
            return Err(corrupt(format!(
                "it holds what a {} predictor learned, and the coordinator's predictor \
                 cannot take it back",
                learned.predictor()
            )));
        }
    }
    Ok(Core { parts, s })
}

/// Why the safe-mode rules' recent failures could not be the live core's, if they
/// could not: each list in the order the failures came, none after the last time
/// seen, and an agent once in its list (the rule counts it once, as of its latest
/// failure; a task may be there twice, as a host may give a finished task's id to
/// another). A forged list would trip or hold off safe mode: three entries of one
/// agent count as three agents, and one dated in the future never leaves the window.
fn check_recent_failures(recent: &RecentFailures, last_now: Timestamp) -> Result<(), String> {
    fn in_order<T: std::fmt::Display>(
        list: &std::collections::VecDeque<(Timestamp, T)>,
        what: &str,
        last_now: Timestamp,
    ) -> Result<(), String> {
        let mut before = Timestamp::EPOCH;
        for (at, who) in list {
            if *at < before || *at > last_now {
                return Err(format!(
                    "the recent failure of {what} {who} at {at} is out of order, or after \
                     the last time seen ({last_now})"
                ));
            }
            before = *at;
        }
        Ok(())
    }
    in_order(&recent.agents, "agent", last_now)?;
    in_order(&recent.exhausted, "task", last_now)?;
    let mut agents = BTreeSet::new();
    if let Some((_, agent)) = recent.agents.iter().find(|(_, a)| !agents.insert(*a)) {
        return Err(format!(
            "{agent} is counted twice among the recent failures"
        ));
    }
    Ok(())
}

/// Why the duty log's attempts in progress are not all backed by running tasks, if
/// they are not. The live core records a running task's attempt when it starts
/// (when its policies read the duty) and ends it with the task, so no record can hold
/// more attempts than tasks of that duty, group and agent run; one that did would
/// keep separation of duties from the agent for good.
fn check_duties_in_progress(
    duties: &DutyLog,
    assignments: &BTreeMap<TaskId, Assignment>,
) -> Result<(), String> {
    // Keys borrow the kinds (nearly all already normalized) and the log's duties.
    let mut running: BTreeMap<(&str, Cow<'_, str>, AgentId), u32> = BTreeMap::new();
    for a in assignments.values() {
        if let Some(group) = a.group.as_deref() {
            let duty = crate::policy::duty_key(a.task.kind());
            *running.entry((group, duty, a.agent)).or_default() += 1;
        }
    }
    for (group, duty, agent, attempts) in duties.in_progress() {
        let backed = running
            .get(&(group, Cow::Borrowed(duty), agent))
            .copied()
            .unwrap_or(0);
        if attempts > backed {
            return Err(format!(
                "the duty log has {attempts} attempts of {duty:?} by {agent} in progress in \
                 {group:?}, and {backed} running tasks back them"
            ));
        }
    }
    Ok(())
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
        if a.task.id() != *task || held.as_ref().is_none_or(|h| h.agent != a.agent) {
            return Err(format!(
                "assignment of {task} does not match the registry and ledger"
            ));
        }
        // The coordinator allocates for a task without a lease, under its id: a
        // lease would let a tick take the resources of a task still running.
        if let Some(h) = held {
            let foreign = match (h.expires_at, h.task) {
                (Some(at), _) => Some(format!("it has a lease until {at}")),
                (None, Some(t)) if t == *task => None,
                (None, Some(t)) => Some(format!("it is booked for {t}")),
                (None, None) => Some("it is booked for no task".to_owned()),
            };
            if let Some(why) = foreign {
                return Err(format!(
                    "{} of {task} is not the coordinator's: {why}",
                    a.allocation
                ));
            }
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
        let slots = ledger.task_slots(agent).ok().flatten();
        if slots != Some(view.max_tasks()) {
            return Err(format!(
                "{agent} has {slots:?} task slots in the ledger for {} tasks",
                view.max_tasks()
            ));
        }
        let counted_by_ledger = ledger.tasks_on(agent).unwrap_or(0);
        if counted_by_ledger != counted {
            return Err(format!(
                "the ledger counts {counted_by_ledger} tasks on {agent}, which runs {counted}"
            ));
        }
    }
    let queued: BTreeMap<RequestId, Option<TaskId>> = ledger
        .waiting(Timestamp::from_secs(0))
        .into_iter()
        .map(|w| (w.id, w.request.task()))
        .collect();
    for (request, w) in waiting {
        if w.behind.is_none()
            && w.parked.is_none()
            && queued.get(request) != Some(&Some(w.task.id()))
        {
            return Err(format!(
                "{} waits on {request}, which the ledger's queue does not hold for it",
                w.task.id()
            ));
        }
    }
    Ok(())
}
