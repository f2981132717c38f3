//! Claims and conflicts: the one claim check a task goes through before it starts,
//! the conflicts a collision opens, the escalation ladder's actions, and the
//! decisions (by hand or by the ladder's default) that end them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::conflict::{
    ClaimOwner, Conflict, ConflictError, ConflictId, ConflictState, EscalationAction,
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
    /// They collide with claims of running tasks, the holder first in each conflict:
    /// nothing is held.
    Collides(Vec<Conflict>),
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
            Some(OpenConflict {
                conflict,
                state,
                opened_at,
                next_deadline,
                holder: Some(holder),
                waiting,
            })
        })
        .collect();
    out.sort_by_key(|c| c.conflict.id());
    out
}

/// `found`, the conflicts one task's claims made, ordered by holder, then the names
/// and modes, and numbered in that order from `first`, the first id the detector
/// issued for them (ids of collisions a decision approved are reused).
///
/// The detector reports them in an order that depends on its history (names claimed
/// by tasks long finished, the order claims were taken), which a restore does not
/// reproduce; this order depends only on the claims held, so a restored coordinator
/// numbers the same conflicts the same way.
fn canonical(mut found: Vec<Conflict>, first: u64) -> Vec<Conflict> {
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

impl State {
    /// Checks `task`'s claims against the claims running tasks hold and, if none
    /// collides (but with holders a decision approved it to run beside), holds them
    /// for `task` on `agent`. The one claim check a task goes through before it
    /// starts: direct assignment and service from the queue differ only in what they
    /// do with a collision.
    ///
    /// On a collision or an error nothing is held and the detector is exactly as
    /// before, down to the conflict ids it issues next.
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
        let mut found = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            if let Err(e) = self
                .detector
                .add_claim_into(owner, c, priority, now, &mut found)
            {
                self.unhold(owner, &claims[..i]);
                if let Some(first) = found.first() {
                    self.set_next_conflict_id(first.id().get());
                }
                return Err(e);
            }
        }
        if let Some(first) = found.first().map(|c| c.id().get()) {
            // The ids the detector issued are taken back: the caller that opens the
            // collisions as conflicts takes them again.
            self.set_next_conflict_id(first);
            let approved = &self.approved;
            found.retain(|c| {
                let holder = c.parties().first().and_then(Party::task_id);
                !holder.is_some_and(|h| approved.contains(&(h, task.id())))
            });
            if !found.is_empty() {
                self.unhold(owner, claims);
                return Ok(Hold::Collides(canonical(found, first)));
            }
            // Every collision was approved: the claims stay held beside the holders'.
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

    /// Makes the detector issue conflict ids from `next` on.
    pub(super) fn set_next_conflict_id(&mut self, next: u64) {
        self.detector = std::mem::take(&mut self.detector).with_first_id(next);
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
            self.holders.remove(&(task, id));
            if let Ok(actions) =
                self.conflicts
                    .record_resolution(id, Resolution::success(None, Vec::new()), now)
            {
                self.push(now, EventKind::ConflictResolved { conflict: id });
                // A resolution brings no default decision.
                let _ = self.escalate(actions, now);
            }
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

    /// Sets a waiting task (`key` in `waiting`), whose claims collided, to wait behind
    /// the running task holding the first contested claim (or rejects it, for a
    /// collision without a holder, which a detector never reports).
    pub(super) fn block(
        &mut self,
        key: crate::id::RequestId,
        mut w: WaitingTask,
        found: &[Conflict],
        now: Timestamp,
    ) {
        // The held claim is each conflict's first party; a detector's parties are
        // always tasks.
        let Some((holder, resources)) = found.iter().find_map(|c| {
            let holder = c.parties().first().and_then(Party::task_id)?;
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
    /// the task named first in it, whose end resolves it), all of them or none; with
    /// `wait`, sets the task to wait behind the first holder (else the caller submits
    /// it again, and meets the same open conflicts, not new ones). A task that meets
    /// conflicts still open from an earlier submission (it was withdrawn while they
    /// stayed with their holders) meets those, not new ones, and waits all the same.
    ///
    /// # Errors
    /// [`ConflictError::DuplicateConflict`] if the manager already knows one of their
    /// ids (a restored manager whose ids the detector's wrap-around at `u64::MAX`
    /// comes back to); then nothing changes.
    pub(super) fn open_conflicts_for(
        &mut self,
        task: &mut Task,
        group: Option<&Arc<str>>,
        found: Vec<Conflict>,
        wait: bool,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        let s = &mut self.s;
        let id_of_task = task.id();
        // Every collision, for the task to wait behind the first holder.
        let collisions = found;
        // A task submitted again while the conflicts it met are still open meets the
        // same conflicts: they are reported again, and not opened twice.
        let mut known = Vec::new();
        let found: Vec<Conflict> = collisions
            .iter()
            .filter(|c| {
                let holder = c.parties().first().and_then(Party::task_id);
                match holder.and_then(|h| s.open_conflict_between(h, id_of_task)) {
                    Some(id) => {
                        known.push(id);
                        false
                    }
                    None => true,
                }
            })
            .cloned()
            .collect();
        // `ConflictManager::open` refuses only an id it knows. Every id is checked
        // before the first is opened, so that a refusal cannot leave some conflicts
        // open, their events made and their holders recorded: below this check
        // nothing fails.
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
        for conflict in &found {
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
            tracing::info!(task.id = %id_of_task, conflict.id = %id, "claims collide");
            s.push(
                now,
                EventKind::ConflictDetected {
                    conflict: Box::new(conflict.clone()),
                    assessment: opened.assessment.clone(),
                },
            );
            let _ = s.escalate(opened.actions, now);
            opened_ids.push(id);
        }
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
                // The other conflicts it waited on end with it.
                let others: Vec<(TaskId, ConflictId)> = s
                    .holders
                    .iter()
                    .copied()
                    .filter(|&(_, id)| {
                        s.conflicts.conflict(id).is_some_and(|c| {
                            c.parties().get(1).and_then(Party::task_id) == Some(waiter)
                        })
                    })
                    .collect();
                for (h, id) in others {
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
