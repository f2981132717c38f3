//! Resuming a restored run: its running steps asked of their agents
//! ([`Agent::recover`](crate::agent::Agent::recover)), its waiting steps kept in
//! their place, and tasks the coordinator holds that no step names withdrawn or
//! released (see [`Executor::resume`]). Apart because it runs once, before the drive
//! loop, and reads the coordinator's and the run's checkpoints against each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use futures::future::Either;

use crate::coordinator::Assignment;
use crate::id::TaskId;
use crate::workflow::StepRef;
use crate::workflow::run::{Run, StepOutcome, StepStatus};

use super::dispatch::work_item;
use super::{Books, Done, Executor, ExecutorError, RunHandle, settled};

impl Executor {
    /// Moves this executor's task ids above every id `run` names, when the run is
    /// handed in rather than when it is first polled: a run started beside it and
    /// polled first would otherwise be given the id of its interrupted attempt.
    pub(super) fn reserve_ids_of(&self, run: &Run) {
        let named = (run.workflow().steps()).filter_map(|(step, _)| run.task(step));
        if let Some(above) = named.map(|id| id.get().saturating_add(1)).max() {
            self.next_task.fetch_max(above, Ordering::SeqCst);
        }
    }

    /// Reconciles a restored run with the coordinator (see [`resume`](Self::resume)).
    pub(super) async fn recover<'s>(
        &'s self,
        run: &mut Run,
        group: &Arc<str>,
        handle: &RunHandle,
        books: &mut Books<'s>,
    ) -> Result<(), ExecutorError> {
        // One look, with the group's notices until now: what runs beside this run
        // (resumed on other threads) does to the coordinator lands wholly before it
        // or wholly in the notices after it.
        let (assignments, waiting, highest) = self.coordinator.resume_view(group);
        // Task ids go on above every id the coordinator holds, for any run: the
        // runs resumed beside this one still hold theirs.
        // And above every id it was ever given: a finished task's id issued again
        // would be a different task under an id the host's records already hold.
        // And above every id the run names: a coordinator checkpoint older than the
        // run's never heard of the ids issued after it, and the attempt made again
        // for an interrupted one gets a new id, not its old one.
        let named = (run.workflow().steps()).filter_map(|(step, _)| run.task(step));
        let above = assignments
            .iter()
            .map(|a| a.task.id())
            .chain(waiting.iter().map(|w| w.task.id()))
            .chain(highest)
            .chain(named)
            .map(|id| id.get().saturating_add(1))
            .max();
        let mut held: BTreeMap<TaskId, Arc<Assignment>> = assignments
            .into_iter()
            .filter(|a| a.group.as_deref() == Some(&**group))
            .map(|a| (a.task.id(), a))
            .collect();
        let mut queued: BTreeSet<TaskId> = waiting
            .iter()
            .filter(|w| w.group.as_deref() == Some(&**group))
            .map(|w| w.task.id())
            .collect();
        if let Some(above) = above {
            self.next_task.fetch_max(above, Ordering::SeqCst);
        }
        // Attempts that were running: ask their agents.
        let running: Vec<StepRef> = run.running().collect();
        for step in running {
            let (Some(agent), Some(attempt)) = (run.agent(step), run.attempts(step)) else {
                continue;
            };
            let task = run.task(step);
            let mut answer = None;
            if let (Some(task), Some(transport)) = (task, self.agents.get(&agent)) {
                let work = work_item(run, group, step, task, attempt, None)?;
                let asked = std::panic::AssertUnwindSafe(transport.recover(work)).catch_unwind();
                // Within the step's timeout, as an attempt is: an agent that never
                // answers would otherwise hold the run, and its slot, for good. And
                // no longer than the run is wanted: a cancel ends the wait.
                let timeout = run.timeout(step);
                let deadline = async {
                    match timeout {
                        Some(after) => self.timer.sleep_until(self.now() + after).await,
                        None => futures::future::pending().await,
                    }
                };
                let cancelled = futures::future::poll_fn(|cx| handle.poll_cancelled(cx));
                let give_up = futures::future::select(Box::pin(deadline), Box::pin(cancelled));
                let asked = match futures::future::select(asked, give_up).await {
                    Either::Left((r, _)) => r.ok(),
                    Either::Right((Either::Left(_), _)) => {
                        tracing::warn!(workflow.run = run.id(), step = ?run.name(step), after = ?timeout, "agent did not answer recover in time; the attempt is made again");
                        None
                    }
                    Either::Right((Either::Right(_), _)) => {
                        tracing::info!(workflow.run = run.id(), step = ?run.name(step), "run cancelled while its agent was asked about an interrupted attempt");
                        None
                    }
                };
                answer = asked.and_then(Result::ok).flatten();
            }
            let now = self.now();
            // The task the step names is ended or released only if the coordinator
            // holds it for this run: under an older coordinator checkpoint its id
            // may have been issued again since, to another run's task.
            let ours = task.filter(|t| held.remove(t).is_some());
            match answer {
                Some(output) => {
                    tracing::info!(workflow.run = run.id(), step = ?run.name(step), "interrupted attempt had finished");
                    let done = Done {
                        step,
                        agent,
                        task: ours,
                        attempt,
                        result: Ok(output),
                    };
                    self.settle(run, books, done)?;
                }
                None if self.count_interrupted => {
                    let failure = StepOutcome::failure("interrupted by restart");
                    settled(run.finish_attempt(step, agent, attempt, failure, now))?;
                    if let Some(task) = ours {
                        self.end_task(task, false, None);
                    }
                }
                None => {
                    run.interrupt(step, "interrupted by restart", now)?;
                    if let Some(task) = ours {
                        self.release(task);
                    }
                }
            }
        }
        // Steps waiting in the coordinator go on waiting; one assigned whose attempt
        // never reached its agent starts now; one the coordinator forgot (an older
        // checkpoint) is dispatched again.
        let now = self.now();
        let bound: Vec<(StepRef, TaskId)> = run
            .workflow()
            .steps()
            .filter_map(|(step, _)| {
                (run.status(step) == Some(StepStatus::Ready))
                    .then(|| run.task(step).map(|t| (step, t)))
                    .flatten()
            })
            .collect();
        for (step, task) in bound {
            if queued.remove(&task) {
                books.waiting.insert(task, (step, now));
            } else if let Some(a) = held.remove(&task) {
                self.start(run, step, &a, now, books)?;
            } else {
                run.unbind(step);
            }
        }
        // What the coordinator holds for the run that no step names.
        for task in queued {
            let _ = self.coordinator.cancel(task);
        }
        for task in held.into_keys() {
            self.release(task);
        }
        Ok(())
    }
}
