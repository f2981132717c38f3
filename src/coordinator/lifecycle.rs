//! Where a task's time with the core starts and ends: a placement committed as an
//! [`Assignment`] (reusing a finished assignment's allocation once nobody holds it),
//! a running task completed or released, and a waiting task cancelled (withdrawn
//! from wherever it waits).
//!
//! Separate from `core.rs` because the two ends share one economy: `complete` keeps
//! finished assignments as spares and `commit` writes the next ones over them, so the
//! bound on spares and both its users sit together.

use std::sync::Arc;

use crate::assignment::Placement;
use crate::clock::Timestamp;
use crate::id::{RequestId, TaskId};
use crate::policy::{AttemptEnd, Violation};
use crate::resource::{LedgerError, Resources};
use crate::task::Task;

use super::claims::Hold;
use super::core::{Core, startable};
use super::error::CoordinatorError;
use super::event::{AssignOutcome, Assignment, EventKind};
use super::journal::Command;
use super::queue::WaitingTask;

/// How many finished assignments' allocations the coordinator keeps for reuse: a
/// workflow batch's worth.
const SPARE_ASSIGNMENTS: usize = 64;

impl Core {
    /// Takes running `task` off its agent: its slot, claims and resources are freed
    /// (what that gives to waiting tasks goes to `grants`; the tasks blocked behind
    /// its claims are the caller's to unblock), nothing is learned about the agent or
    /// the task's kind, and its duty is not counted as done by the agent (the attempt
    /// will be made again, perhaps elsewhere).
    pub(super) fn take_running(
        &mut self,
        task: TaskId,
        now: Timestamp,
        grants: &mut Vec<crate::resource::Grant>,
    ) -> Option<Arc<Assignment>> {
        let a = self.take_running_but_resources(task, now)?;
        grants.extend(self.s.ledger.release(a.allocation, now).unwrap_or_default());
        Some(a)
    }

    /// [`take_running`](Self::take_running) but for the resources and the ledger's
    /// slot, which the task's allocation keeps until the caller releases it: a task
    /// handed back while its agent is in service queues again first, so that the
    /// slot it frees goes to the oldest waiting task, which may be itself.
    pub(super) fn take_running_but_resources(
        &mut self,
        task: TaskId,
        now: Timestamp,
    ) -> Option<Arc<Assignment>> {
        let a = self.s.assignments.remove(&task)?;
        self.s.interrupted.remove(&task);
        self.s.end_duty(&a, AttemptEnd::Void);
        let _ = self.s.registry.task_finished(a.agent, now);
        self.s.release_claims(task, now);
        Some(a)
    }

    /// Ends running `task` without an outcome: its run was cancelled, or its attempt
    /// was interrupted by a restart and will be made again. Its slot, claims and
    /// resources are freed and go to waiting tasks; unlike [`complete`](Self::complete)
    /// it records nothing against the agent (no affinity) and teaches the predictor
    /// nothing. Returns the tasks assigned with what it freed.
    ///
    /// # Errors
    /// [`CoordinatorError::TaskWaiting`] if it waits, [`CoordinatorError::UnknownTask`]
    /// if it neither runs nor waits; [`CoordinatorError::TimeWentBack`]; nothing
    /// changes.
    pub fn release(
        &mut self,
        task: TaskId,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let cmd = self.recording().then_some(Command::Release { task });
        self.journaled(now, cmd, |c| c.release_inner(task, now))
    }

    fn release_inner(
        &mut self,
        task: TaskId,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.check_time(now)?;
        if !self.s.assignments.contains_key(&task) {
            return Err(self.s.not_running(task));
        }
        self.s.last_now = now;
        let (mut grants, mut unblocked) = (Vec::new(), Vec::new());
        let earlier: Vec<RequestId> = self.s.parked.iter().copied().collect();
        let Some(a) = self.take_running(task, now, &mut grants) else {
            return Err(CoordinatorError::UnknownTask { task });
        };
        unblocked.extend(self.s.unblock(task, now));
        tracing::debug!(task.id = %task, agent.id = %a.agent, "task released");
        self.s.push(
            now,
            EventKind::TaskReleased {
                task,
                agent: a.agent,
            },
        );
        let mut assigned = self.serve(grants, unblocked, now);
        assigned.extend(self.retry_parked_keys(earlier, now));
        Ok(assigned)
    }

    /// Books a placement: claims, allocation (resources plus one slot), registry slot,
    /// duty log, event. All or nothing: every step that can fail is checked before the
    /// first change, or undone, so an error leaves the state as it was.
    pub(super) fn commit(
        &mut self,
        task: &mut Task,
        p: &mut Placement,
        warnings: Vec<Violation>,
        group: Option<&Arc<str>>,
        wait: bool,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        // Exclusive claims (files, ports, environments) are checked before anything is
        // allocated: a task whose claims collide is not started; it waits behind the
        // holder while the conflicts climb the ladder.
        if let Hold::Collides(found) = self.s.hold_claims(task, p.agent, now)? {
            return self.open_conflicts_for(task, group, found, wait, now);
        }
        let Core { parts, s } = self;
        // From here the claims are held: drop them again on any error.
        if let Err(e) = startable(&s.registry, p.agent) {
            s.drop_claims(task.id());
            return Err(e.into());
        }
        let resources = task.requirements().resources();
        let grant = match s.ledger.try_allocate_task(
            p.agent,
            resources,
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
        // written field by field: a whole `Assignment` built aside and then moved in is
        // two large copies. The oldest spare only: one look (one atomic operation),
        // whether the host still holds it or not.
        let mut spare = s.spare.pop_front();
        let assignment = if let Some(slot) = spare.as_mut().and_then(Arc::get_mut) {
            slot.agent = p.agent;
            slot.allocation = grant.allocation;
            slot.resources.clone_from(resources);
            slot.score = p.score;
            // The finished task's explanation goes back to the plan, where the
            // next one-task batch's is written over it (its lists' capacity reused).
            std::mem::swap(&mut slot.explanation, &mut p.explanation);
            slot.warnings = warnings;
            crate::task::share_from(&mut slot.group, group);
            slot.assigned_at = now;
            slot.waiting_since = None;
            // The finished task goes back to the batch's buffer, where the next
            // batch's task is written over it.
            std::mem::swap(&mut slot.task, task);
            spare.expect("a spare was just written")
        } else {
            if let Some(held) = spare {
                s.spare.push_front(held);
            }
            Arc::new(Assignment {
                agent: p.agent,
                allocation: grant.allocation,
                resources: resources.clone(),
                score: p.score,
                explanation: std::mem::take(&mut p.explanation),
                warnings,
                group: group.cloned(),
                assigned_at: now,
                waiting_since: None,
                task: task.take(),
            })
        };
        tracing::debug!(task.id = %assignment.task.id(), agent.id = %assignment.agent, score = assignment.score, "task assigned");
        s.book(parts.policies.as_ref(), &assignment, now);
        Ok(AssignOutcome::Assigned(assignment))
    }

    /// Records that `task` finished: frees its slot, resources and claims (serving
    /// waiting tasks with them, and queueing again the tasks that waited behind its
    /// claims), teaches the predictor what it used, and remembers for affinity how it
    /// went. Returns the waiting tasks that were assigned with what it freed.
    ///
    /// # Errors
    /// [`CoordinatorError::TaskWaiting`] if it waits, [`CoordinatorError::UnknownTask`]
    /// if it neither runs nor waits; [`CoordinatorError::TimeWentBack`]; nothing
    /// changes.
    pub fn complete(
        &mut self,
        task: TaskId,
        success: bool,
        usage: Option<Resources>,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let cmd = self.recording().then(|| Command::Complete {
            task,
            success,
            usage: usage.clone(),
        });
        self.journaled(now, cmd, |c| c.complete_inner(task, success, usage, now))
    }

    fn complete_inner(
        &mut self,
        task: TaskId,
        success: bool,
        usage: Option<Resources>,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.check_time(now)?;
        let s = &mut self.s;
        let Some(a) = s.assignments.remove(&task) else {
            return Err(s.not_running(task));
        };
        if !s.ledger.holds(a.allocation) {
            let allocation = a.allocation;
            s.assignments.insert(task, a);
            return Err(LedgerError::UnknownAllocation { allocation }.into());
        }
        s.last_now = now;
        if !s.interrupted.is_empty() {
            // Its agent left while it ran, and the work was done after all.
            s.interrupted.remove(&task);
        }
        s.end_duty(
            &a,
            if success {
                AttemptEnd::Succeeded
            } else {
                AttemptEnd::Failed
            },
        );
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
        // The event carries the usage too (for monitoring): one clone of an amount
        // that allocates nothing for the usual one extended resource.
        if let Some(usage) = &usage {
            let observation = crate::resource::Observation::new(usage.clone(), now);
            self.parts.predictor.observe(a.task.kind(), &observation);
        }
        // A failure after using more of something than it was given counts against the
        // resource exhaustion rule (checked after the completion is told).
        let out_of_resources = !success
            && usage
                .as_ref()
                .is_some_and(|u| super::emergency::exhausted(a.task.requirements().resources(), u));
        let s = &mut self.s;
        tracing::debug!(task.id = %task, agent.id = %a.agent, success, "task completed");
        s.push(
            now,
            EventKind::TaskCompleted {
                task,
                agent: a.agent,
                success,
                usage,
            },
        );
        // Its allocation serves a later assignment once nobody holds it any more
        // (the host has taken its events, the outcome is dropped). Past the limit
        // the oldest goes: one the host keeps must not hold the place for ever.
        if s.spare.len() == SPARE_ASSIGNMENTS {
            s.spare.pop_front();
        }
        s.spare.push_back(a);
        let earlier: Vec<RequestId> = self.s.parked.iter().copied().collect();
        let mut assigned = self.serve(grants, unblocked, now);
        // What the core held before this completion is asked for again (not what this
        // pass just held: nothing changed for it since).
        assigned.extend(self.retry_parked_keys(earlier, now));
        if out_of_resources {
            self.note_exhaustion(task, now);
        }
        Ok(assigned)
    }

    /// Withdraws a waiting task (queued, held, or waiting behind a claim). The
    /// conflicts it waited on are resolved ([`EventKind::ConflictResolved`]): with
    /// nothing waiting, there is nothing left for the escalation ladder to ask anyone.
    /// Returns the task.
    ///
    /// # Errors
    /// [`CoordinatorError::TaskRunning`] if it runs, [`CoordinatorError::UnknownTask`]
    /// if it neither runs nor waits; [`CoordinatorError::TimeWentBack`]; nothing
    /// changes.
    pub fn cancel(&mut self, task: TaskId, now: Timestamp) -> Result<Task, CoordinatorError> {
        let cmd = self.recording().then_some(Command::Cancel { task });
        self.journaled(now, cmd, |c| c.cancel_inner(task, now))
    }

    fn cancel_inner(&mut self, task: TaskId, now: Timestamp) -> Result<Task, CoordinatorError> {
        self.check_time(now)?;
        if self.s.assignments.contains_key(&task) {
            return Err(CoordinatorError::TaskRunning { task });
        }
        let w = self.withdraw(task)?;
        self.s.last_now = now;
        self.s.push(now, EventKind::TaskCancelled { task });
        self.s.resolve_conflicts_waited_on(task, now);
        // A withdrawn request may have held a reservation: what it kept free for
        // itself goes to the tasks behind it now.
        let grants = self.s.ledger.drain(now);
        self.serve(grants, Vec::new(), now);
        Ok(w.task)
    }

    /// Takes a waiting task out of wherever it waits (the ledger's queue, behind a
    /// claim, or held).
    pub(super) fn withdraw(&mut self, task: TaskId) -> Result<WaitingTask, CoordinatorError> {
        let s = &mut self.s;
        let (request, behind, parked) = s
            .waiting_by_task
            .get(&task)
            .and_then(|r| {
                let w = s.waiting.get(r)?;
                Some((*r, w.behind, w.parked))
            })
            .ok_or(CoordinatorError::UnknownTask { task })?;
        match (behind, parked) {
            // Blocked behind a claim: not in the ledger's queue.
            (Some(holder), _) => {
                if let Some(keys) = s.blocked.get_mut(&holder) {
                    keys.remove(&request);
                    if keys.is_empty() {
                        s.blocked.remove(&holder);
                    }
                }
            }
            // Held by the core: not in the ledger's queue either.
            (None, Some(_)) => {}
            (None, None) => {
                s.ledger.cancel(request)?;
            }
        }
        s.unwait(request)
            .ok_or(CoordinatorError::UnknownTask { task })
    }
}
