//! Claims and conflicts: the one claim check a task goes through before it starts,
//! the conflicts a collision opens, the escalation ladder's actions, and the
//! decisions (by hand or by the ladder's default) that end them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::conflict::{
    ClaimOwner, Collision, Conflict, ConflictError, ConflictId, ConflictState, EscalationAction,
    HumanDecision, Party, Resolution,
};
use crate::id::{AgentId, TaskId};
use crate::policy::SystemMode;
use crate::task::{Claim, Task};

use super::core::{Core, State};
use super::error::CoordinatorError;
use super::event::{AssignOutcome, Decider, EventKind, Notice};
use super::queue::WaitingTask;

/// What [`State::hold_claims`] found.
#[derive(Debug)]
pub(super) enum Hold {
    /// The task's claims (if it has any) are held for it.
    Held,
    /// They collide with claims of running tasks, in the detector's order (which
    /// depends only on the claims held): nothing is held.
    Collides(Vec<Collision>),
}

/// An open conflict and where it stands on the escalation ladder: what an operator's
/// screen or the host's approval flow shows ([`Core::open_conflicts`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpenConflict {
    /// The conflict: its parties (the running holder first, then the task waiting)
    /// and the contested resources.
    pub conflict: Conflict,
    /// Where it is: resolving, or escalated to the orchestrator or a human.
    pub state: ConflictState,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// When the ladder acts next (the next rung, or the human's deadline, past which
    /// its default decision applies).
    pub next_deadline: Option<Timestamp>,
    /// The running task whose end resolves it.
    pub holder: Option<TaskId>,
    /// The task waiting on it.
    pub waiting: Option<TaskId>,
    /// The waiting task's group (a workflow run's id) and description (a step's
    /// name), when it still waits: what a person asked to decide needs to see, read
    /// here instead of looked up in [`waiting`](Core::waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_group: Option<Arc<str>>,
    /// See [`waiting_group`](Self::waiting_group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_description: Option<Arc<str>>,
}

pub(super) fn open_conflicts_view(s: &State) -> Vec<OpenConflict> {
    let policy = s.conflicts.policy();
    let mut out: Vec<OpenConflict> = s
        .holders
        .iter()
        .filter_map(|&(holder, id)| {
            let state = s.conflicts.state(id)?;
            if state.is_closed() {
                return None;
            }
            let conflict = s.conflicts.conflict(id)?.clone();
            let record = s.conflicts.history(id)?;
            let opened_at = record.first().map_or(conflict.detected_at(), |h| h.at);
            let next_deadline = match state {
                ConflictState::Escalated(crate::conflict::EscalationLevel::Human) => {
                    s.conflicts.human_deadline(id)
                }
                ConflictState::Escalated(crate::conflict::EscalationLevel::Orchestrator) => {
                    Some(opened_at + policy.human_after())
                }
                _ => Some(opened_at + policy.orchestrator_after()),
            };
            let waiting = conflict.parties().get(1).and_then(Party::task_id);
            let queued = (waiting.and_then(|t| s.waiting_by_task.get(&t)))
                .and_then(|key| s.waiting.get(key));
            let waiting_group = queued.and_then(|w| w.group.clone());
            let waiting_description = queued.map(|w| w.task.shared_description());
            Some(OpenConflict {
                conflict,
                state,
                opened_at,
                next_deadline,
                holder: Some(holder),
                waiting,
                waiting_group,
                waiting_description,
            })
        })
        .collect();
    out.sort_by_key(|c| c.conflict.id());
    out
}

impl State {
    /// Checks `task`'s claims against the claims running tasks hold and, if none
    /// collides (but with holders a decision approved it to run beside), holds them
    /// for `task` on `agent`. The one claim check a task goes through before it
    /// starts: direct assignment and service from the queue differ only in what they
    /// do with a collision.
    ///
    /// On a collision or an error nothing is held. No conflict id is issued here: the
    /// collisions are numbered only if they are opened
    /// ([`open_conflicts_for`](Core::open_conflicts_for)).
    ///
    /// # Errors
    /// The detector's refusal of a claim ([`ConflictError::EmptyClaim`],
    /// [`ConflictError::Full`]).
    pub(super) fn hold_claims(
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
        let mut found = self.detector.add_claims(owner, claims, priority, now)?;
        // Collisions a decision approved let the claims be held beside the holders':
        // the two share the claim, whichever holds it now (the holder of the
        // decision may have been moved and started again after the other).
        let (approved, t) = (&self.approved, task.id());
        found.retain(|c| {
            let holder = c.holder().task_id();
            !holder.is_some_and(|h| approved.contains(&(h, t)) || approved.contains(&(t, h)))
        });
        if !found.is_empty() {
            self.unhold(owner, claims);
            return Ok(Hold::Collides(found));
        }
        self.claims.insert(task.id(), (agent, claims.to_vec()));
        Ok(Hold::Held)
    }

    /// Undoes part of [`hold_claims`](Self::hold_claims): gives up `added`.
    fn unhold(&mut self, owner: ClaimOwner, added: &[Claim]) {
        for c in added {
            let _ = self.detector.remove_claim(owner, c);
        }
    }

    /// Gives up the claims a task holds, without resolving anything: the undo of a
    /// successful [`hold_claims`](Self::hold_claims) when the task does not start after
    /// all.
    pub(super) fn drop_claims(&mut self, task: TaskId) {
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
    pub(super) fn release_claims(&mut self, task: TaskId, now: Timestamp) {
        self.drop_claims(task);
        if !self.approved.is_empty() {
            self.approved.retain(|&(h, t)| h != task && t != task);
        }
        if self.holders.is_empty() {
            return;
        }
        let held: Vec<ConflictId> = self
            .holders
            .range((task, ConflictId::new(0))..=(task, ConflictId::new(u64::MAX)))
            .map(|&(_, id)| id)
            .collect();
        for id in held {
            self.resolve_held(task, id, now);
        }
    }

    /// Resolves conflict `id`, which `holder` held: it is over, whichever side ended.
    fn resolve_held(&mut self, holder: TaskId, id: ConflictId, now: Timestamp) {
        self.holders.remove(&(holder, id));
        if let Ok(actions) =
            self.conflicts
                .record_resolution(id, Resolution::success(None, Vec::new()), now)
        {
            self.push(now, EventKind::ConflictResolved { conflict: id });
            // A resolution brings no default decision.
            let _ = self.escalate(actions, now);
        }
    }

    /// The conflicts, with their holders, in which `waiter` waits for a holder.
    fn conflicts_waited_on(&self, waiter: TaskId) -> Vec<(TaskId, ConflictId)> {
        (self.holders.iter().copied())
            .filter(|&(_, id)| {
                self.conflicts
                    .conflict(id)
                    .is_some_and(|c| c.parties().get(1).and_then(Party::task_id) == Some(waiter))
            })
            .collect()
    }

    /// Resolves the open conflicts in which `waiter` waited for a holder, when it
    /// waits no more (withdrawn): a conflict over nothing would climb the ladder to a
    /// human, who would be asked about a task that is gone.
    pub(super) fn resolve_conflicts_waited_on(&mut self, waiter: TaskId, now: Timestamp) {
        if !self.approved.is_empty() {
            self.approved.retain(|&(h, t)| h != waiter && t != waiter);
        }
        for (holder, id) in self.conflicts_waited_on(waiter) {
            self.resolve_held(holder, id, now);
        }
    }

    /// Carries out escalation actions: safe mode here, the rest as events for the
    /// host. Returns the default decisions the ladder applied, for the caller to
    /// carry out ([`Core::apply_decision`]).
    pub(super) fn escalate(
        &mut self,
        actions: Vec<EscalationAction>,
        now: Timestamp,
    ) -> Vec<(ConflictId, HumanDecision)> {
        let mut decisions = Vec::new();
        for action in actions {
            if matches!(action, EscalationAction::ActivateSafeMode { .. })
                && self.mode != SystemMode::SafeMode
            {
                let from = self.mode;
                self.mode = SystemMode::SafeMode;
                tracing::warn!(from = %from, "safe mode activated by the escalation policy");
                self.push(
                    now,
                    EventKind::ModeChanged {
                        from,
                        to: SystemMode::SafeMode,
                    },
                );
            }
            if let EscalationAction::ApplyDefaultDecision { conflict, decision } = action {
                decisions.push((conflict, decision));
            }
            tracing::info!(action = ?action, "conflict escalated");
            self.push(now, EventKind::ConflictEscalated { action });
        }
        decisions
    }

    /// Opens a conflict for each collision of `task`'s claims, held by the running
    /// task named first in it (whose end resolves it), and returns their ids in the
    /// detector's order. A collision with a holder that `task` already has an open
    /// conflict with (it was withdrawn and submitted again, or it waited behind that
    /// holder before) meets that conflict, not a new one.
    ///
    /// The one place conflict ids are issued: each new conflict takes the next id, in
    /// the detector's order of the collisions. That order depends only on the claims
    /// held, and the counter is part of the snapshot, so a restored coordinator
    /// numbers the same conflicts the same way. A restore starts the counter past
    /// every id its manager knows, below 2^63 (a snapshot past it is refused), and it
    /// only counts up: no id is issued twice, so the manager never refuses one.
    pub(super) fn open_conflicts(
        &mut self,
        task: TaskId,
        collisions: &[Collision],
        now: Timestamp,
    ) -> Vec<ConflictId> {
        // Which collisions meet a conflict still open is settled before any is
        // opened: two collisions with one holder open two conflicts.
        let mut ids = Vec::new();
        let mut new = Vec::with_capacity(collisions.len());
        for c in collisions {
            match (c.holder().task_id()).and_then(|h| self.open_conflict_between(h, task)) {
                Some(id) => ids.push(id),
                None => new.push(c),
            }
        }
        for collision in new {
            let holder = collision.holder().task_id();
            let id = ConflictId::new(self.next_conflict_id);
            self.next_conflict_id += 1;
            let conflict = collision.clone().into_conflict(id);
            let opened = match self.conflicts.open(conflict.clone(), now) {
                Ok(opened) => opened,
                Err(e) => {
                    // Unreachable: the manager refuses only an id it knows, and the
                    // counter is past every one of those.
                    tracing::error!(conflict.id = %id, error = %e, "conflict manager refused a new id");
                    continue;
                }
            };
            // The claim already held is the first party: its task's end resolves it.
            if let Some(holder) = holder {
                self.holders.insert((holder, id));
            }
            tracing::info!(task.id = %task, conflict.id = %id, "claims collide");
            self.push(
                now,
                EventKind::ConflictDetected {
                    conflict: Box::new(conflict),
                    assessment: opened.assessment.clone(),
                },
            );
            // A conflict just opened is on the ladder's first rung: no deadline has
            // passed, so no default decision comes back.
            let _ = self.escalate(opened.actions, now);
            ids.push(id);
        }
        ids
    }

    /// Sets a waiting task (`key` in `waiting`), whose claims collided, to wait behind
    /// the running task holding the first contested claim (or rejects it, for a
    /// collision without a holder, which a detector never reports).
    pub(super) fn block(
        &mut self,
        key: crate::id::RequestId,
        mut w: WaitingTask,
        found: &[Collision],
        now: Timestamp,
    ) {
        // A detector's parties are always tasks.
        let Some((holder, resources)) = found.iter().find_map(|c| {
            let holder = c.holder().task_id()?;
            Some((holder, c.resources().to_vec()))
        }) else {
            tracing::warn!(task.id = %w.task.id(), "collision without a holder; task rejected");
            let group = w.group.clone();
            self.reject(w.task.id(), group.as_ref(), w.explanation, now);
            return;
        };
        let task = w.task.id();
        tracing::debug!(task.id = %task, holder.id = %holder, "claims collide; task waits behind the holder");
        w.behind = Some(holder);
        w.parked = None;
        self.wait(key, w);
        self.blocked.entry(holder).or_default().insert(key);
        self.push(
            now,
            EventKind::TaskBlocked {
                task,
                request: key,
                behind: holder,
                resources,
            },
        );
    }
}

impl Core {
    /// Opens the conflicts a directly assigned task's claims collide in (each held by
    /// the task named first in it, whose end resolves it); with `wait`, sets the task
    /// to wait behind the first holder (else the caller submits it again, and meets
    /// the same open conflicts, not new ones). A task that meets conflicts still open
    /// from an earlier submission (it was withdrawn while they stayed with their
    /// holders) meets those, not new ones, and waits all the same.
    pub(super) fn open_conflicts_for(
        &mut self,
        task: &mut Task,
        group: Option<&Arc<str>>,
        collisions: Vec<Collision>,
        wait: bool,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        let s = &mut self.s;
        let id_of_task = task.id();
        let opened_ids = s.open_conflicts(id_of_task, &collisions, now);
        if !wait {
            return Ok(AssignOutcome::Conflicted {
                task: id_of_task,
                conflicts: opened_ids,
            });
        }
        // The task waits behind the first holder, off the ledger's queue: it is
        // queued when that holder finishes or a decision approves it.
        let key = s.ledger.mint_request_id();
        let w = WaitingTask {
            task: task.take(),
            group: group.cloned(),
            explanation: crate::assignment::Explanation {
                considered: 0,
                ..crate::assignment::Explanation::default()
            },
            behind: None,
            since: Some(now),
            parked: None,
            barred: Vec::new(),
            barred_by: Vec::new(),
        };
        s.block(key, w, &collisions, now);
        Ok(AssignOutcome::Conflicted {
            task: id_of_task,
            conflicts: opened_ids,
        })
    }

    /// Carries out a decision on `conflict` (already closed in the manager as
    /// decided): a deny withdraws the task waiting on it, an approval lets it run
    /// beside the holder.
    pub(super) fn apply_decision(
        &mut self,
        conflict: ConflictId,
        decision: HumanDecision,
        by: Decider,
        now: Timestamp,
    ) {
        let s = &mut self.s;
        let (holder, waiter) = match s.conflicts.conflict(conflict) {
            Some(c) => (
                c.parties().first().and_then(Party::task_id),
                c.parties().get(1).and_then(Party::task_id),
            ),
            None => (None, None),
        };
        if let Some(h) = holder {
            s.holders.remove(&(h, conflict));
        }
        s.push(
            now,
            EventKind::ConflictDecided {
                conflict,
                decision,
                by,
            },
        );
        let Some(waiter) = waiter else { return };
        match decision {
            HumanDecision::Deny => {
                let Ok(w) = self.withdraw(waiter) else {
                    return;
                };
                let s = &mut self.s;
                // A denied task ends: a decision that let it run beside another holder
                // ends with it (a restore drops such a pair, so the live state must).
                s.approved.retain(|&(h, t)| h != waiter && t != waiter);
                // The other conflicts it waited on end with it.
                for (h, id) in s.conflicts_waited_on(waiter) {
                    s.holders.remove(&(h, id));
                    if s.conflicts
                        .decide(
                            id,
                            decision,
                            by.level()
                                .unwrap_or(crate::conflict::EscalationLevel::Human),
                            now,
                        )
                        .is_ok()
                    {
                        s.push(
                            now,
                            EventKind::ConflictDecided {
                                conflict: id,
                                decision,
                                by,
                            },
                        );
                    }
                }
                tracing::info!(task.id = %waiter, conflict.id = %conflict, %by, "task denied");
                s.push(
                    now,
                    EventKind::TaskDenied {
                        task: waiter,
                        conflict,
                        by,
                    },
                );
                let reason = format!("denied by the {by} in {conflict}");
                s.notify(
                    w.group.as_ref(),
                    Notice::Refused {
                        task: waiter,
                        reason,
                    },
                );
                // A withdrawn request may have held a reservation.
                let grants = s.ledger.drain(now);
                self.serve(grants, Vec::new(), now);
            }
            HumanDecision::Approve => {
                let Some(h) = holder else { return };
                s.approved.insert((h, waiter));
                // If it waits behind that holder, it is queued now.
                let key = match s.waiting_by_task.get(&waiter) {
                    Some(&key) if s.waiting.get(&key).and_then(|w| w.behind) == Some(h) => key,
                    _ => return,
                };
                if let Some(keys) = s.blocked.get_mut(&h) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        s.blocked.remove(&h);
                    }
                }
                let Some(mut w) = s.unwait(key) else { return };
                w.behind = None;
                let mut granted = Vec::new();
                self.requeue(w, now, &mut granted);
                self.serve(Vec::new(), granted, now);
            }
        }
    }
}
