//! The waiting tasks: in the ledger's fair queue (aging, backfill, reservations),
//! behind a running task's claim, or held by the core (for normal mode, or for
//! capacity a policy would admit); and the one place a grant becomes an assignment.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::AgentProfile;
use crate::assignment::{Explanation, Refusal, Rejection};
use crate::clock::Timestamp;
use crate::id::{AgentId, RequestId, TaskId};
use crate::policy::{PolicyContext, Proposal};
use crate::resource::{AllocationRequest, Grant, LedgerError, RequestOutcome};
use crate::task::{Requirements, Task, TaskAnalyzer};

use super::claims::Hold;
use super::core::{Analyzer, Core, State, predict_within, startable};
use super::error::CoordinatorError;
use super::event::{AssignOutcome, Assignment, EventKind, Notice};

/// A task waiting, as the coordinator remembers it.
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
    /// than in the ledger's queue: it is queued again when that task finishes, or
    /// when a decision approves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<TaskId>,
    /// When it first queued: a task queued again keeps its age in the queue (see
    /// [`AllocationRequest::with_waiting_since`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Why the core holds it off the ledger's queue, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<Parked>,
    /// The agents a lasting policy refusal excludes for it (a rule whose refusal
    /// does not wait, as
    /// [`refusal_waits`](crate::policy::PolicyEnforcer::refusal_waits) says, such as
    /// separation of duties): it waits for the others, and is rejected only when no
    /// other agent could ever take it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barred: Vec<AgentId>,
    /// The rule that barred each of [`barred`](Self::barred), in the same order
    /// (none from a checkpoint written before it was kept): what the task's
    /// rejection names once every agent is barred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barred_by: Vec<String>,
}

/// Why the core holds a waiting task off the ledger's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Parked {
    /// Safe mode or recovery: it waits for normal mode.
    Mode,
    /// A policy about capacity (the utilization cap, task slots) refused the agents
    /// that had room: it is asked for again whenever capacity comes back.
    Policy,
    /// No agent in service could take it, but one that is away (offline, unhealthy,
    /// quarantined) could: it is asked for again when an agent comes back into
    /// service or joins.
    Agent,
    /// It ran on this agent, which was quarantined, and is held (evidence kept as it
    /// was) until the quarantine is released
    /// ([`OnQuarantine::Hold`](super::OnQuarantine::Hold)).
    Held(AgentId),
    /// It needs an external capability while external communications are stopped
    /// ([`Core::stop_communications`]): it is asked for again when they resume.
    Communications,
}

impl State {
    /// Queues again, in request order, the tasks waiting behind `holder`'s claims
    /// (it finished). Returns the grants the ledger made at once, each with the key of
    /// its waiting task; a task no agent could take now or later is rejected.
    pub(super) fn unblock(&mut self, holder: TaskId, now: Timestamp) -> Vec<(Grant, RequestId)> {
        let mut granted = Vec::new();
        let Some(blocked) = self.blocked.remove(&holder) else {
            return granted;
        };
        for key in blocked {
            let Some(mut w) = self.unwait(key) else {
                continue;
            };
            w.behind = None;
            self.requeue_keyed(w, Some(key), false, now, &mut granted);
        }
        granted
    }

    /// Puts `w` in `waiting` under `key`.
    pub(super) fn wait(&mut self, key: RequestId, w: WaitingTask) {
        self.waiting_by_task.insert(w.task.id(), key);
        // Held tasks wait for their agent's release, not for any retry of the
        // others (normal mode, capacity, an agent's return).
        if w.parked.is_some_and(|p| !matches!(p, Parked::Held(_))) {
            self.parked.insert(key);
        }
        self.waiting.insert(key, w);
    }

    /// The tasks held for `agent`'s release, with their keys, in key order.
    pub(super) fn held_for(&self, agent: AgentId) -> Vec<(RequestId, TaskId)> {
        self.waiting
            .iter()
            .filter(|(_, w)| w.parked == Some(Parked::Held(agent)))
            .map(|(k, w)| (*k, w.task.id()))
            .collect()
    }

    /// Takes the waiting task under `key` out of `waiting`.
    pub(super) fn unwait(&mut self, key: RequestId) -> Option<WaitingTask> {
        let w = self.waiting.remove(&key)?;
        self.waiting_by_task.remove(&w.task.id());
        self.parked.remove(&key);
        Some(w)
    }

    /// Makes a waiting task wait again: held for normal mode outside it; else asked
    /// of the ledger (queued, or granted at once: the grant goes to `granted` with
    /// its key, to be served); rejected when no agent could ever take it, or, with
    /// `reject_if_granted`, when it is granted at once (a policy just refused it, and
    /// nothing changed since).
    pub(super) fn requeue_keyed(
        &mut self,
        mut w: WaitingTask,
        key: Option<RequestId>,
        reject_if_granted: bool,
        now: Timestamp,
        granted: &mut Vec<(Grant, RequestId)>,
    ) {
        let id = w.task.id();
        w.parked = None;
        match request_place(self, &w.task, &w.barred, w.since, now) {
            Ok(Place::Asked(RequestOutcome::Queued(request))) => {
                tracing::debug!(task.id = %id, request.id = %request, "task queued again");
                if w.explanation.considered == 0 {
                    // Nothing was considered for it yet (handed back by an agent that
                    // left service, or let out from behind a claim): say why it
                    // waits, as `why_waiting` and the event tell it.
                    w.explanation = waiting_explanation(self, &w.task);
                }
                self.push(
                    now,
                    EventKind::TaskQueued {
                        task: id,
                        request,
                        explanation: Box::new(w.explanation.clone()),
                    },
                );
                self.wait(request, w);
            }
            Ok(Place::Asked(RequestOutcome::Granted(g))) if !reject_if_granted => {
                let key = key.unwrap_or_else(|| self.ledger.mint_request_id());
                self.wait(key, w);
                granted.push((g, key));
            }
            Ok(Place::Asked(RequestOutcome::Granted(g))) => {
                if let Ok(more) = self.ledger.release(g.allocation, now) {
                    self.handed_back.extend(more);
                }
                let group = w.group.clone();
                self.reject(id, group.as_ref(), w.explanation, now);
            }
            Ok(Place::Away) => {
                tracing::debug!(task.id = %id, "task waits for an agent to return");
                let key = key.unwrap_or_else(|| self.ledger.mint_request_id());
                w.parked = Some(Parked::Agent);
                self.wait(key, w);
            }
            Ok(Place::Never) => {
                let group = w.group.clone();
                self.reject(id, group.as_ref(), w.explanation, now);
            }
            Err(e) => {
                tracing::warn!(task.id = %id, error = %e, "could not queue task again");
                let group = w.group.clone();
                self.reject(id, group.as_ref(), w.explanation, now);
            }
        }
    }
}

/// Whether a refusal by `rule`, which does not wait, bars the agent for the task
/// for good: not one by the agent-status rule, which speaks of the agent's state at
/// the moment (busy, away), not of the pair.
fn bars(rule: &str) -> bool {
    rule != crate::policy::AgentStatusRule::NAME
}

/// Whether `agent` has a duty attempt in progress in `group`: a refusal of it that
/// would bar it for good is held instead (as a capacity refusal is) until the
/// attempt ends, as the attempt's outcome may change what the rules say. Separation
/// of duties refuses an agent whose deploy is in progress; if that deploy comes to
/// nothing (its run cancelled, its agent out of service), or fails where failures
/// are not counted, the agent may verify after all, and a bar set now would keep it
/// from the task for good, or reject the task while that agent could still take it.
fn attempt_open(s: &State, group: Option<&Arc<str>>, agent: AgentId) -> bool {
    group.is_some_and(|g| s.duties.is_running(g, agent))
}

/// Why a task refused by `rule` (of the waiting kind) is held: for normal mode, or
/// for capacity.
fn parked_for(rule: &str) -> Parked {
    if rule == crate::policy::SafeModeRule::NAME {
        Parked::Mode
    } else {
        Parked::Policy
    }
}

/// The agents that could ever take `task` (the registry's one rule,
/// [`CompiledRequirements::qualifies`](crate::agent::CompiledRequirements::qualifies)),
/// in service or not: slots and resources are the ledger's to check.
fn qualified<'a>(
    s: &'a State,
    task: &Task,
) -> impl Iterator<Item = crate::agent::AgentView<'a>> + 'a {
    let need = s.registry.compile(task.requirements());
    s.registry
        .iter()
        .filter(move |v| need.qualifies(v.role_bits(), v.capability_bits()))
}

/// Where a task can be asked for.
enum Place {
    /// The ledger's answer: granted at once, or queued.
    Asked(RequestOutcome),
    /// Only an agent away from service could take it.
    Away,
    /// No registered agent could ever take it.
    Never,
}

impl State {
    /// Whether some registered agent, in service or not, could ever take `task`: it
    /// qualifies and could ever hold the needs.
    pub(super) fn could_ever_take(&self, task: &Task) -> bool {
        let needs = task.requirements().resources();
        qualified(self, task).any(|v| self.ledger.could_ever_hold(v.id(), needs))
    }
}

/// `Away` if an agent out of service could take `task` (it qualifies, is not
/// `barred`, and could ever hold the needs), else `Never`.
fn away_or_never(s: &State, task: &Task, barred: &[AgentId]) -> Place {
    // The capacity counts too: a task parked for an agent that could never hold it
    // would wait for ever, each return of that agent parking it again.
    let needs = task.requirements().resources();
    let away = qualified(s, task).any(|v| {
        !v.status().is_in_service()
            && !barred.contains(&v.id())
            && s.ledger.could_ever_hold(v.id(), needs)
    });
    if away { Place::Away } else { Place::Never }
}

/// The first role the task needs that `profile` lacks, else its first such
/// capability, in the task's order: the reason both explanations below count an
/// agent under, before its resources.
fn missing_name(profile: &AgentProfile, req: &Requirements) -> Option<Rejection> {
    if let Some(role) = req.roles().iter().find(|r| !profile.has_role(r)) {
        return Some(Rejection::MissingRole { role: role.clone() });
    }
    (req.capabilities().iter())
        .find(|c| !profile.has_capability(c))
        .map(|c| Rejection::MissingCapability {
            capability: c.clone(),
        })
}

/// Why no agent can take `task` now, for a task queued again with nothing
/// considered for it: each agent counted under the first filter it fails, in the
/// assigner's order (its status, a free slot, a role, a capability, a resource it
/// has too little of free).
fn waiting_explanation(s: &State, task: &Task) -> Explanation {
    barred_explanation(s, task, &[], &[])
}

/// [`waiting_explanation`], with each of the `barred` agents counted under the rule
/// that barred it (`by`, in the same order), if known: a task refused for good on
/// one agent after another tells so when it is rejected, not why it waited before.
fn barred_explanation(s: &State, task: &Task, barred: &[AgentId], by: &[String]) -> Explanation {
    let req = task.requirements();
    let needs = req.resources();
    let mut why = Explanation::default();
    for v in s.registry.iter() {
        why.considered += 1;
        let (id, profile, status) = (v.id(), v.profile(), v.status());
        if let Some(rule) = barred.iter().position(|b| *b == id).and_then(|i| by.get(i)) {
            why.reject(Rejection::Policy { rule: rule.clone() });
            continue;
        }
        let slots_full = match (s.ledger.task_slots(id), s.ledger.tasks_on(id)) {
            (Ok(Some(slots)), Ok(on)) => on >= slots,
            _ => false,
        };
        let reason = if status != crate::agent::AgentStatus::Available {
            Rejection::Status { status }
        } else if slots_full {
            Rejection::NoFreeSlot
        } else if let Some(missing) = missing_name(profile, req) {
            missing
        } else if let Some((resource, ..)) = s
            .ledger
            .free(id)
            .ok()
            .and_then(|free| needs.first_shortfall(&free))
        {
            Rejection::Insufficient { resource }
        } else {
            why.fit += 1;
            continue;
        };
        why.reject(reason);
    }
    why
}

/// Why no agent could ever take `task`, in place of the assigner's `explanation` of
/// why none could take it now: each agent counted under the first lasting reason it
/// fails (a role, then a capability the task needs, in the task's order, then a
/// resource its capacity could never hold). The assigner counts the agents busy or
/// away at the moment under their status first, which would read as a moment's
/// shortage for a task that will never run.
fn never_explanation(s: &State, task: &Task, explanation: Explanation) -> Explanation {
    let req = task.requirements();
    let needs = req.resources();
    let mut why = Explanation {
        considered: explanation.considered,
        ..Explanation::default()
    };
    for v in s.registry.iter() {
        let profile = v.profile();
        let reason = if let Some(missing) = missing_name(profile, req) {
            missing
        } else if let Some((resource, ..)) = s
            .ledger
            .capacity(v.id())
            .ok()
            .and_then(|cap| needs.first_shortfall(&cap))
        {
            Rejection::Insufficient { resource }
        } else {
            // Not expected (such an agent could take the task later): said as the
            // assigner saw it.
            Rejection::Status { status: v.status() }
        };
        why.reject(reason);
    }
    why.analyzed = explanation.analyzed;
    why
}

/// Asks the ledger for `task`'s resources and a slot on any agent in service that
/// could take it now or later, but the `barred`: granted at once, or queued (aging
/// from `since` when it waited before). `Away` when only an agent out of service
/// could take it, `Never` when no agent could ever hold it.
///
/// # Errors
/// The ledger's refusal, but for [`LedgerError::ExceedsCapacity`] (that is `Away`
/// or `Never`).
fn request_place(
    s: &mut State,
    task: &Task,
    barred: &[AgentId],
    since: Option<Timestamp>,
    now: Timestamp,
) -> Result<Place, LedgerError> {
    // Drained agents (held busy by the host) last in line: the ledger does not know
    // of drains, and a grant on one goes back and parks the task while an agent
    // at work has room. Asked of drained agents alone, the task waits for the end
    // of a drain or for room elsewhere, whichever comes first.
    let (mut candidates, mut drained) = (Vec::new(), Vec::new());
    for v in qualified(s, task).filter(|v| v.status().is_in_service()) {
        if barred.contains(&v.id()) {
            continue;
        }
        if v.is_held_busy() {
            drained.push(v.id());
        } else {
            candidates.push(v.id());
        }
    }
    if candidates.is_empty() {
        candidates = std::mem::take(&mut drained);
    }
    // The drained agents are asked too when none of the others could ever hold the
    // task: a drain ends, and the task waits for it rather than be rejected.
    for candidates in [candidates, drained] {
        if candidates.is_empty() {
            break;
        }
        let needs = task.requirements().resources().clone();
        let mut request = AllocationRequest::any_of(candidates, needs)
            .with_task(task.id())
            .with_priority(task.requirements().priority());
        if let Some(since) = since {
            request = request.with_waiting_since(since);
        }
        match s.ledger.request(request, now) {
            Ok(outcome) => return Ok(Place::Asked(outcome)),
            Err(LedgerError::ExceedsCapacity { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(away_or_never(s, task, barred))
}

impl Core {
    /// Why no registered agent could ever take `task`, or `None` when one could (in
    /// service or away): the check a host makes before it submits work, such as a
    /// workflow's steps before a run
    /// ([`Executor::unstaffed`](crate::workflow::Executor::unstaffed)). The task is
    /// read as [`assign`](Self::assign) reads it, analyzed and its needs predicted,
    /// and each agent is counted under the first lasting reason it fails: a role,
    /// then a capability the task needs, then a resource its capacity could never
    /// hold. Policies are not asked, as their answers depend on what runs when the
    /// task comes. Nothing changes, the task included.
    ///
    /// ```
    /// use concord::coordinator::Coordinator;
    /// use concord::{AgentId, AgentProfile, Requirements, Role, Task, TaskId, Timestamp};
    ///
    /// let mut core = Coordinator::builder().build_core();
    /// let ops = AgentProfile::new(AgentId::new(1), "ops-1").with_role(Role::new("ops")?);
    /// core.register_agent(ops, Timestamp::from_secs(1))?;
    /// let handoff = Task::new(TaskId::new(1), "handoff", "Hand off to development")
    ///     .with_requirements(Requirements::new().with_role(Role::new("framework")?));
    /// let why = core.unplaceable(&handoff)?.expect("nobody is a framework agent");
    /// assert_eq!(why.to_string(), "0 of 1 agent fit: 1 lacks role `framework`");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// What [`assign`](Self::assign) refuses before placing a task: a text the crate
    /// refuses ([`CoordinatorError::InvalidTaskText`], a claim that names nothing
    /// included), the analyzer's error.
    pub fn unplaceable(&self, task: &Task) -> Result<Option<Explanation>, CoordinatorError> {
        super::core::check_texts(None, std::iter::once(task))?;
        let mut task = task.clone();
        // The rules that fired name the words that asked for what no agent has.
        let mut analyzed = Vec::new();
        if self.parts.analyze_explicit || !task.requirements().is_stated() {
            analyzed = match &self.parts.analyzer {
                Analyzer::Rules(rules) => rules.analyze_in_place(&mut task)?,
                Analyzer::Host(host) => host.analyze_in_place(&mut task)?,
            };
        }
        super::core::check_claims(&task)?;
        let mut shapes = Vec::new();
        self.s.ledger.capacity_shapes_into(&mut shapes);
        predict_within(self.parts.predictor.as_ref(), &shapes, &mut task);
        if self.s.could_ever_take(&task) {
            return Ok(None);
        }
        let considered = Explanation {
            considered: self.s.registry.len(),
            analyzed,
            ..Explanation::default()
        };
        Ok(Some(never_explanation(&self.s, &task, considered)))
    }

    /// A task no agent can take now: queue it when some agent could take it later
    /// (it has the roles and capabilities, is in service, could ever hold the needs,
    /// and no policy refused it for good), else reject it. An agent a policy refused
    /// for good (a rule whose refusal does not wait) is barred for the task, and the
    /// task waits for the others.
    pub(super) fn queue_or_reject(
        &mut self,
        task: Task,
        explanation: Explanation,
        refusals: Vec<Refusal>,
        group: Option<&Arc<str>>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        let id = task.id();
        // Held by the communications stop (the assigner's admission refused every
        // agent for it): it waits for communications, whatever else refused it.
        if self.comms_gate(&task).is_some() {
            return Ok(self.wait_for_communications(task, explanation, group, since, now));
        }
        let policies = &self.parts.policies;
        let mut bars_by: Vec<(AgentId, String)> = (refusals.iter())
            .filter(|r| !policies.refusal_waits(&r.rule) && bars(&r.rule))
            .filter(|r| !attempt_open(&self.s, group, r.agent))
            .map(|r| (r.agent, r.rule.clone()))
            .collect();
        // One rule per agent: the first that refused it.
        bars_by.sort_by_key(|(agent, _)| *agent);
        bars_by.dedup_by_key(|(agent, _)| *agent);
        let (barred, barred_by): (Vec<AgentId>, Vec<String>) = bars_by.into_iter().unzip();
        let s = &mut self.s;
        let outcome = request_place(s, &task, &barred, since, now)?;
        let queued = |request: RequestId, explanation: Explanation| AssignOutcome::Queued {
            task: id,
            request,
            explanation: Box::new(explanation),
        };
        let mut w = WaitingTask {
            task,
            group: group.cloned(),
            explanation: explanation.clone(),
            behind: None,
            since: Some(since.unwrap_or(now)),
            parked: None,
            barred,
            barred_by,
        };
        match outcome {
            Place::Asked(RequestOutcome::Queued(request)) => {
                tracing::debug!(task.id = %id, request.id = %request, "task queued");
                s.push(
                    now,
                    EventKind::TaskQueued {
                        task: id,
                        request,
                        explanation: Box::new(explanation.clone()),
                    },
                );
                s.wait(request, w);
                Ok(queued(request, explanation))
            }
            Place::Away => {
                let key = s.ledger.mint_request_id();
                tracing::debug!(task.id = %id, "task waits for an agent to return");
                s.push(
                    now,
                    EventKind::TaskQueued {
                        task: id,
                        request: key,
                        explanation: Box::new(explanation.clone()),
                    },
                );
                w.parked = Some(Parked::Agent);
                s.wait(key, w);
                Ok(queued(key, explanation))
            }
            Place::Asked(RequestOutcome::Granted(g)) => {
                let key = s.ledger.mint_request_id();
                // Room now after all: capacity appeared between the plan and now (a
                // candidate the filters had refused for slots or resources), or a
                // capacity policy refused it there. The grant goes back (a later
                // placement of this batch may count on it) and the task is held,
                // asked for again when capacity next comes back.
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    s.handed_back.extend(more);
                }
                s.push(
                    now,
                    EventKind::TaskQueued {
                        task: id,
                        request: key,
                        explanation: Box::new(explanation.clone()),
                    },
                );
                w.parked = Some(
                    refusals
                        .first()
                        .map_or(Parked::Policy, |r| parked_for(&r.rule)),
                );
                s.wait(key, w);
                Ok(queued(key, explanation))
            }
            Place::Never => {
                // Refused for good by a policy, the assigner's explanation names the
                // rule; else, why no agent could ever take it.
                let explanation = if w.barred.is_empty() {
                    never_explanation(s, &w.task, explanation)
                } else {
                    explanation
                };
                s.reject(id, None, explanation.clone(), now);
                Ok(AssignOutcome::Rejected {
                    task: id,
                    explanation: Box::new(explanation),
                    refusals,
                })
            }
        }
    }

    /// Makes `w` wait again (see [`State::requeue_keyed`]), its grant if any added to
    /// `granted`.
    pub(super) fn requeue(
        &mut self,
        w: WaitingTask,
        now: Timestamp,
        granted: &mut Vec<(Grant, RequestId)>,
    ) {
        self.s.requeue_keyed(w, None, false, now, granted);
    }

    /// Asks again, in their order, for the tasks the core holds (for normal mode, or
    /// after a capacity policy refused them), when the mode admits new work. Returns
    /// the tasks assigned.
    pub(super) fn retry_parked(&mut self, now: Timestamp) -> Vec<Arc<Assignment>> {
        let keys: Vec<RequestId> = self.s.parked.iter().copied().collect();
        self.retry_parked_keys(keys, now)
    }

    /// [`retry_parked`](Self::retry_parked) of the tasks under `keys` still held.
    pub(super) fn retry_parked_keys(
        &mut self,
        keys: Vec<RequestId>,
        now: Timestamp,
    ) -> Vec<Arc<Assignment>> {
        if keys.is_empty() || !self.s.mode.admits_new_assignments() {
            return Vec::new();
        }
        let mut granted = Vec::new();
        for key in keys {
            if !self.s.parked.contains(&key) {
                continue;
            }
            // A task held for communications waits for them, not for normal mode
            // or capacity.
            if self.s.comms.is_some()
                && self.s.waiting.get(&key).and_then(|w| w.parked) == Some(Parked::Communications)
            {
                continue;
            }
            let Some(w) = self.s.unwait(key) else {
                continue;
            };
            self.s.requeue_keyed(w, Some(key), false, now, &mut granted);
        }
        self.serve(Vec::new(), granted, now)
    }

    /// Turns grants for waiting tasks into assignments, in the order granted (the
    /// ledger's queue order; `unblocked`, the tasks granted outside it, first): the
    /// policies must agree (a grant refused by a capacity policy is given back and
    /// the task held until capacity comes back; refused by another, it waits again,
    /// or is rejected if nothing could take it), the agent must be in service, and
    /// the task's claims must not collide with a running task's (a colliding task's
    /// grant is given back and it waits behind the holder). Grants that giving back
    /// makes are served in the same pass.
    pub(super) fn serve(
        &mut self,
        grants: Vec<Grant>,
        unblocked: Vec<(Grant, RequestId)>,
        now: Timestamp,
    ) -> Vec<Arc<Assignment>> {
        let Core { parts, s } = self;
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
            .chain(
                std::mem::take(&mut s.handed_back)
                    .into_iter()
                    .map(from_ledger),
            )
            .collect();
        while let Some((g, key)) = queue.pop_front() {
            let taken = key.and_then(|key| Some((key, s.unwait(key)?)));
            let Some((key, w)) = taken else {
                // Not ours: give it back.
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
                continue;
            };
            let give_back = |s: &mut State, queue: &mut VecDeque<(Grant, Option<RequestId>)>| {
                if let Ok(more) = s.ledger.release(g.allocation, now) {
                    queue.extend(more.into_iter().map(from_ledger));
                }
            };
            // Granted while communications are stopped (it queued before they
            // were): the grant goes back and it waits for them.
            if super::comms::gated(s.comms.as_ref(), &parts.external, &w.task).is_some() {
                give_back(s, &mut queue);
                let mut w = w;
                w.parked = Some(Parked::Communications);
                s.wait(key, w);
                continue;
            }
            // Granted on an agent its host holds busy (a drain, which the ledger does
            // not know of): the grant goes back and the task waits off the queue, as
            // for capacity, asked for again when capacity or the agent comes back.
            if s.registry.is_held_busy(g.agent).unwrap_or(false) {
                give_back(s, &mut queue);
                let mut w = w;
                w.parked = Some(Parked::Policy);
                s.wait(key, w);
                continue;
            }
            let proposal = Proposal::for_admission(&w.task, g.agent, w.group.clone());
            // The grant already holds the resources: check policies against the
            // ledger as it was before it, by counting what it holds as released.
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
                parts.policies.validate(&proposal, &ctx)
            };
            if let Some(v) = violations.iter().find(|v| v.is_blocking()) {
                let refusal = Refusal::new(w.task.id(), g.agent, v.rule.clone(), v.message.clone());
                let waits = parts.policies.refusal_waits(&v.rule)
                    || (bars(&v.rule) && attempt_open(s, w.group.as_ref(), g.agent));
                s.push(
                    now,
                    EventKind::PolicyRefused {
                        refusal: Box::new(refusal),
                    },
                );
                give_back(s, &mut queue);
                let mut w = w;
                if waits {
                    // Held until normal mode, or until capacity comes back (the next
                    // completion).
                    w.parked = Some(parked_for(&v.rule));
                    s.wait(key, w);
                } else if !bars(&v.rule) {
                    // It waits again after this pass, not now: queued now, the
                    // capacity another refused task gives back could grant it again
                    // in this same pass, and two such tasks would hand it back and
                    // forth for ever.
                    refused.push(w);
                } else {
                    // Refused for good there: it waits for the other agents, and is
                    // served in this pass if one has room now. Each such refusal bars
                    // one more agent for one task, so two tasks cannot hand capacity
                    // back and forth for ever. Its explanation says so from now on
                    // (it is what a rejection tells, once every agent is barred),
                    // each barred agent under the rule that barred it.
                    w.barred.push(g.agent);
                    w.barred_by.push(v.rule.clone());
                    w.explanation = barred_explanation(s, &w.task, &w.barred, &w.barred_by);
                    let mut granted = Vec::new();
                    s.requeue_keyed(w, None, false, now, &mut granted);
                    queue.extend(granted.into_iter().map(|(g, key)| (g, Some(key))));
                }
                continue;
            }
            // The agent may have left service while the task waited: the grant goes
            // back and the task waits again, for the agents in service then.
            if let Err(e) = startable(&s.registry, g.agent) {
                tracing::debug!(task.id = %w.task.id(), agent.id = %g.agent, error = %e, "granted agent cannot start the task; task waits again");
                give_back(s, &mut queue);
                refused.push(w);
                continue;
            }
            // Its claims, exactly as a direct assignment's: a collision opens the
            // conflicts (which climb the escalation ladder, so a human hears of a
            // task stuck behind a long-running holder) and sets it to wait behind the
            // holder, off the queue.
            let hold = s.hold_claims(&w.task, g.agent, now);
            if !matches!(hold, Ok(Hold::Held)) {
                give_back(s, &mut queue);
                match hold {
                    Ok(Hold::Collides(found)) => {
                        s.open_conflicts(w.task.id(), &found, now);
                        s.block(key, w, &found, now);
                    }
                    Err(e) => {
                        // A claim the detector refuses (it names nothing): no agent
                        // can ever run the task.
                        tracing::warn!(task.id = %w.task.id(), error = %e, "task's claims refused");
                        let group = w.group.clone();
                        s.reject(w.task.id(), group.as_ref(), w.explanation, now);
                    }
                    Ok(Hold::Held) => {}
                }
                continue;
            }
            // The serving decision, and only it: the agent the queue granted.
            let explanation = Explanation {
                considered: 1,
                fit: 1,
                winner: Some((g.agent, 0.0)),
                ..Explanation::default()
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
                waiting_since: w.since,
                task: w.task,
            };
            if s.registry.task_started(g.agent, now).is_err() {
                tracing::warn!(agent.id = %g.agent, "granted agent could not start the task");
            }
            let assignment = Arc::new(assignment);
            s.book(parts.policies.as_ref(), &assignment, now);
            let group = assignment.group.clone();
            s.notify(group.as_ref(), Notice::Started(Arc::clone(&assignment)));
            assigned.push(assignment);
        }
        // Wait again, unless nothing could ever take it.
        let mut granted = Vec::new();
        for w in refused {
            s.requeue_keyed(w, None, true, now, &mut granted);
        }
        // (`requeue_keyed` rejects what it is granted at once, so nothing is granted
        // here; anything given back on the way is served next.)
        debug_assert!(granted.is_empty());
        assigned.extend(self.serve_handed_back(now));
        assigned
    }

    /// Serves the grants made while capacity was given back outside [`serve`](Self::serve).
    /// Each comes from a task rejected for good on the way, so serving them, which
    /// may hand back more, ends.
    pub(super) fn serve_handed_back(&mut self, now: Timestamp) -> Vec<Arc<Assignment>> {
        if self.s.handed_back.is_empty() {
            return Vec::new();
        }
        self.serve(Vec::new(), Vec::new(), now)
    }
}
