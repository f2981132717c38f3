//! The loop that drives one run to its end: it hands ready steps out, waits for
//! the first of an agent's answer, a coordinator notice, the timer or a cancel, and
//! gives up the waits the host's patience ran out on. Apart from the attempts
//! themselves ([`dispatch`](super::dispatch)) so that what wakes the executor, and in
//! what order it looks, reads in one place.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::clock::Timestamp;
use crate::coordinator::{Coordinator, CoordinatorError, Notice};
use crate::id::TaskId;
use crate::workflow::run::{Run, StepOutcome, StepStatus};

use super::dispatch::{attempt, begin, work_item};
use super::live::LiveId;
use super::{Batch, Books, Executor, ExecutorError, InFlight, RunHandle, Wake, given_up, settled};

/// A run's books while it is driven: dropped with tasks still in them (the run's
/// future dropped before the end, by a host's timeout, `select!` or abort; or an
/// error), it gives them back. The coordinator would otherwise hold them for a run
/// nobody drives: their agents' slots taken for good, and waiting tasks assigned
/// later to agents nobody sends them to. A run that finishes or is cancelled has
/// emptied them. The run itself still shows its steps as they were, so a host may
/// resume it (the interrupted attempts are asked of their agents, as after a crash).
struct LetGo<'s> {
    executor: &'s Executor,
    books: Books<'s>,
}

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        self.executor.let_go_of(&mut self.books);
    }
}

impl RunHandle {
    /// Ready when the run is cancelled; remembers `cx` to be woken then.
    pub(super) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.waker.register(cx.waker());
        if self.is_cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn report(&self, run: &Run, books: &Books<'_>) {
        let mut progress = self.0.progress.lock();
        progress.running = books.running.len();
        progress.waiting = books.waiting.len();
        progress.backing_off = run.backing_off_steps();
        progress.finished = run.finished_steps();
        progress.steps = run.workflow().len();
        progress.outcome = run.outcome();
    }
}

impl Executor {
    /// Drives `run` to its end; `live` holds its id among the live runs until then,
    /// or until this future is dropped.
    pub(super) async fn drive(
        &self,
        mut run: Run,
        handle: RunHandle,
        resumed: bool,
        live: LiveId,
    ) -> Result<Run, ExecutorError> {
        // Held to the end: dropping it unwatches the group and frees the id.
        let _live = live;
        // Everything is news except what a restored run's snapshot already held.
        let mut seen = run.restored_history();
        let group: Arc<str> = Arc::from(run.id());
        // The group is watched from the call that made this future (which holds the
        // id); what came in before its first poll, the coordinator's state already
        // says. A resumed run drops them with its look at that state (see
        // `Coordinator::resume_view`).
        if !resumed {
            self.coordinator.take_notices(&group, &mut Vec::new());
        }
        // Whatever the run still holds when this ends without finishing it (the
        // future dropped, an error) is given back: see `LetGo`.
        let mut held = LetGo {
            executor: self,
            books: Books::default(),
        };
        let books = &mut held.books;
        let mut result = Ok(());
        if resumed {
            result = self.recover(&mut run, &group, &handle, books).await;
        }
        if result.is_ok() {
            result = self
                .drive_observed(&mut run, &mut seen, &handle, &group, books)
                .await;
        }
        if result.is_ok() && run.is_finished() {
            // Over: who did which of its duties binds nobody now, and a later run
            // under the same id must not inherit it (separation of duties would bar
            // its agents for what they did in this run). A run that did not end
            // (an error, or its future dropped as in a crash) keeps its duties for
            // its resume.
            self.coordinator.forget_group(&group);
        }
        self.notify(&run, &mut seen);
        handle.report(&run, books);
        result.map(|()| run)
    }

    async fn drive_observed<'s>(
        &'s self,
        run: &mut Run,
        seen: &mut usize,
        handle: &RunHandle,
        group: &Arc<str>,
        books: &mut Books<'s>,
    ) -> Result<(), ExecutorError> {
        let mut inflight = FuturesUnordered::new();
        let mut ready = Vec::new();
        let mut batch = Batch::default();
        let mut launching = Vec::new();
        let mut answers = Vec::new();
        loop {
            let now = self.now();
            if handle.is_cancelled() {
                drop(inflight);
                self.cancel_run(run, books, now).await;
                return Ok(());
            }
            // Timeouts and back-offs; an attempt that timed out is dropped at once,
            // so that a step never has two attempts in flight.
            if run.tick(now) > 0 {
                self.drop_stale(run, books);
            }
            // Notices concern only tasks the run holds in the coordinator: with none
            // (agents that answer at once), there is nothing to ask for.
            if !(books.waiting.is_empty() && books.running.is_empty()) {
                self.coordinator.take_notices(group, &mut books.notices);
                if !books.notices.is_empty() {
                    self.on_notices(run, books, &BTreeSet::new(), now)?;
                }
            }
            if books.aborted {
                // Attempts were aborted (timed out, or their agent left service), here
                // or while answers were settled: their agents' futures go now, not on
                // the set's next turn, since the same steps' next attempts may be
                // launched below.
                self.settle_ready(run, books, &mut inflight)?;
                books.aborted = false;
                // Their tasks end now that their agents' futures are gone: ended
                // before, the coordinator could hand the slot to another run's step
                // while this one's future still lived.
                for task in std::mem::take(&mut books.to_end) {
                    self.end_task(task, false, None);
                }
            }
            if let Some(patience) = self.patience {
                self.give_up_waits(run, books, patience, now)?;
            }
            // Dispatch what is ready and not yet waiting in the coordinator, up to
            // the concurrency limit.
            let busy = books.running.len() + books.waiting.len();
            let room = self.concurrency.saturating_sub(busy);
            if room > 0 {
                run.ready_first(room + books.waiting.len(), &mut ready);
                // A ready step is bound only while it waits in the coordinator.
                if !books.waiting.is_empty() {
                    ready.retain(|&step| run.task(step).is_none());
                    ready.truncate(room);
                }
                // A step whose last attempt has not stopped yet waits for it.
                if !books.stopping.is_empty() {
                    ready.retain(|&step| !books.stopping(step));
                }
                if !ready.is_empty() {
                    self.dispatch(run, &ready, &mut batch, books, now)?;
                }
            }
            // The host sees the attempts start (after the news of the round before)
            // before the agents get the work.
            self.notify(run, seen);
            let mut answered = false;
            // The launches are taken out (settling one needs the books) in a buffer
            // that goes back, so that its capacity is kept from round to round.
            std::mem::swap(&mut launching, &mut books.launched);
            for launch in launching.drain(..) {
                // Its step's last attempt has not stopped yet (its task handed back
                // and started again meanwhile): handed to its agent once it has.
                if !books.stopping.is_empty() && books.stopping(launch.step) {
                    books.launched.push(launch);
                    continue;
                }
                let deadline = launch.timeout.map(|(_, at)| at);
                let work = work_item(
                    run,
                    group,
                    launch.step,
                    launch.task,
                    launch.attempt,
                    deadline,
                )?;
                match begin(launch, work, self.spawner.as_ref()) {
                    // Settled at once: its step is done before the next is begun.
                    Ok(done) => {
                        self.settle(run, books, done)?;
                        answered = true;
                    }
                    Err(running) => {
                        let (abort, registration) = AbortHandle::new_pair();
                        books.running.insert(
                            running.task,
                            InFlight {
                                step: running.step,
                                attempt: running.attempt,
                                abort,
                                work_abort: running.work_abort.clone(),
                                interrupted: false,
                                stopped: running.stopped.clone(),
                            },
                        );
                        inflight.push(Abortable::new(attempt(running, &*self.timer), registration));
                    }
                }
            }
            if answered {
                // The running attempts get their turn too before the next
                // dispatch, so that instant agents never starve them.
                self.settle_ready(run, books, &mut inflight)?;
                continue;
            }
            handle.report(run, books);
            if run.is_finished()
                && books.running.is_empty()
                && books.waiting.is_empty()
                && books.stopping.is_empty()
            {
                return Ok(());
            }
            // A step given up may have made others ready (its failure handlers):
            // dispatch them before waiting.
            if books.running.len() + books.waiting.len() < self.concurrency {
                run.ready_first(books.waiting.len() + 1, &mut ready);
                if ready
                    .iter()
                    .any(|&step| run.task(step).is_none() && !books.stopping(step))
                {
                    continue;
                }
            }
            // Wait for an answer, a notice from the coordinator, cancellation, or the
            // next deadline: the run's (timeouts, back-offs), the coordinator's
            // (escalations, leases, reservations), or a waiting step's patience.
            let deadline = [
                run.next_deadline(),
                self.coordinator.poll_timeout(),
                self.patience_deadline(books),
            ]
            .into_iter()
            .flatten()
            .min();
            if deadline.is_none()
                && books.running.is_empty()
                && books.waiting.is_empty()
                && books.stopping.is_empty()
                && run.next_ready().is_none()
            {
                // Nothing ready, running, waiting or timed: nothing can change.
                return Ok(());
            }
            let mut sleep = deadline.map(|at| self.timer.sleep_until(at));
            let coordinator = &self.coordinator;
            let notices = &mut books.notices;
            let stopping = &mut books.stopping;
            let wake = futures::future::poll_fn(|cx| {
                if handle.poll_cancelled(cx).is_ready() {
                    return Poll::Ready(Wake::Cancelled);
                }
                // An attempt given up whose agent has let go: its task ends now.
                if let Some(i) = stopping
                    .iter_mut()
                    .position(|s| s.stopped.poll_unpin(cx).is_ready())
                {
                    return Poll::Ready(Wake::Stopped(stopping.swap_remove(i)));
                }
                // The coordinator's news before the agents' answers: an attempt
                // taken from its agent is dropped before that agent is polled again.
                if coordinator.poll_notices(group, cx, notices).is_ready() {
                    return Poll::Ready(Wake::Noticed);
                }
                if let Poll::Ready(Some(done)) = inflight.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Answered(done));
                }
                match sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Wake::Timer),
                    _ => Poll::Pending,
                }
            })
            .await;
            drop(sleep);
            match wake {
                Wake::Cancelled | Wake::Noticed => {}
                Wake::Stopped(stopped) => match (stopped.task, stopped.hand_back) {
                    (Some(task), Some(attempt)) => {
                        self.hand_back(run, books, stopped.step, task, attempt)?;
                    }
                    (Some(task), None) => self.end_task(task, false, None),
                    (None, _) => {}
                },
                Wake::Answered(done) => {
                    answers.clear();
                    answers.push(done);
                    // Settle every other attempt that has finished too, so that the
                    // steps they free are dispatched together, in one batch.
                    while let Some(Some(done)) = inflight.next().now_or_never() {
                        answers.push(done);
                    }
                    // What the coordinator said meanwhile: an attempt taken from its
                    // agent (it left service) is void, unless its answer is in hand,
                    // which wins (the work was done).
                    self.coordinator.take_notices(group, &mut books.notices);
                    if !books.notices.is_empty() {
                        let in_hand: BTreeSet<TaskId> = answers
                            .iter()
                            .filter_map(|d| d.as_ref().ok().and_then(|d| d.task))
                            .collect();
                        self.on_notices(run, books, &in_hand, self.now())?;
                    }
                    for done in answers.drain(..).flatten() {
                        if done.task.is_some_and(|t| books.running.contains_key(&t)) {
                            self.settle(run, books, done)?;
                        }
                    }
                }
                Wake::Timer => {
                    // The coordinator's deadlines too: what it assigns comes back
                    // as notices.
                    self.coordinator.tick();
                }
            }
        }
    }

    /// When the longest-waiting step runs out of patience, if the host set one.
    fn patience_deadline(&self, books: &Books<'_>) -> Option<Timestamp> {
        let patience = self.patience?;
        books
            .waiting
            .values()
            .map(|&(_, since)| since + patience)
            .min()
    }

    /// Gives up the steps that waited longer than `patience`, saying what for.
    fn give_up_waits(
        &self,
        run: &mut Run,
        books: &mut Books<'_>,
        patience: Duration,
        now: Timestamp,
    ) -> Result<(), ExecutorError> {
        let expired: Vec<TaskId> = books
            .waiting
            .iter()
            .filter(|(_, (_, since))| *since + patience <= now)
            .map(|(&task, _)| task)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        for task in expired {
            let Some((step, _)) = books.waiting.remove(&task) else {
                continue;
            };
            let what = self
                .coordinator
                .why_waiting(task)
                .unwrap_or_else(|| "for an agent".to_owned());
            self.withdraw(task);
            run.unbind(step);
            let reason = format!(
                "step `{}` gave up after waiting {patience:?} {what}",
                run.name(step).unwrap_or("?")
            );
            given_up(run.abandon(step, reason, now))?;
        }
        Ok(())
    }

    /// Acts on what the coordinator said about the run's tasks. The attempts whose
    /// answers are `in_hand` keep them: their work is done, so a hand-back is undone
    /// (the task withdrawn again) rather than the attempt voided.
    fn on_notices<'s>(
        &'s self,
        run: &mut Run,
        books: &mut Books<'s>,
        in_hand: &BTreeSet<TaskId>,
        now: Timestamp,
    ) -> Result<(), ExecutorError> {
        let mut notices = std::mem::take(&mut books.notices);
        for notice in notices.drain(..) {
            match notice {
                Notice::Started(a) => {
                    let task = a.task.id();
                    match books.waiting.remove(&task) {
                        Some((step, _)) => self.start(run, step, &a, now, books)?,
                        // Started already (old news): never released under its agent.
                        None if books.running.contains_key(&task)
                            || books.launched.iter().any(|l| l.task == task) => {}
                        // Not this run's any more (given up meanwhile).
                        None => self.release(task),
                    }
                }
                Notice::Refused { task, reason } => {
                    if let Some((step, _)) = books.waiting.remove(&task) {
                        run.unbind(step);
                        given_up(run.abandon(step, reason, now))?;
                    }
                }
                // Its answer is in hand, and ends the task.
                Notice::Interrupted { task, .. } if in_hand.contains(&task) => {}
                Notice::Interrupted { task, agent } => {
                    if let Some(flight) = books.running.get_mut(&task) {
                        // The work is stopped, and the attempt ends with what the
                        // work ended with: its answer wins if it had one (see
                        // `settle`), else the task is handed back.
                        flight.interrupted = true;
                        flight.work_abort.abort();
                    } else if let Some(i) = books.launched.iter().position(|l| l.task == task) {
                        // Started and interrupted in one batch of notices: never
                        // handed to its agent, so nothing to stop.
                        let launch = books.launched.remove(i);
                        self.hand_back(run, books, launch.step, task, (agent, launch.attempt))?;
                    }
                    // Else its answer came first and was settled: the task ended.
                }
                Notice::Lost { task, .. } if in_hand.contains(&task) => {}
                Notice::Requeued { task, .. } if in_hand.contains(&task) => {
                    // Its next start, if the coordinator made one, is released when
                    // its notice comes: no step waits for it.
                    let _ = self.coordinator.cancel(task);
                }
                Notice::Lost { task, agent } => {
                    if let Some((step, attempt)) = books.stop_attempt(task) {
                        // The coordinator has ended the task: only the step waits.
                        let failure = StepOutcome::failure(format!("{agent} left service"));
                        settled(run.finish_attempt(step, agent, attempt, failure, now))?;
                    }
                }
                Notice::Requeued { task, agent } => match books.stop_attempt(task) {
                    Some((step, _)) => {
                        // The same task waits again: the attempt is void, not failed.
                        run.interrupt(step, format!("{agent} left service"), now)?;
                        run.bind(step, task)?;
                        books.waiting.insert(task, (step, now));
                    }
                    // Its answer came first and was settled: nothing waits for it.
                    None => {
                        let _ = self.coordinator.cancel(task);
                    }
                },
            }
        }
        books.notices = notices;
        Ok(())
    }

    /// Drops the attempts the run no longer runs (timed out on `tick`): their
    /// agents' futures at once, and their tasks ended as failures once those are
    /// gone (spawned work at its next poll, see [`Stopping`](super::Stopping); work
    /// the drive polls, by the drive before it hands out more, see `Books::to_end`).
    fn drop_stale(&self, run: &Run, books: &mut Books<'_>) {
        let stale: Vec<TaskId> = books
            .running
            .iter()
            .filter(|(_, f)| {
                run.status(f.step) != Some(StepStatus::Running)
                    || run.attempts(f.step) != Some(f.attempt)
            })
            .map(|(&task, _)| task)
            .collect();
        for task in stale {
            if let Some(flight) = books.running.remove(&task) {
                flight.abort.abort();
                books.aborted |= flight.stopped.is_none();
                // Ended once the work has stopped: spawned, at its next poll; polled
                // here, once the drive has dropped it.
                if let Some(task) = books.let_go(flight.step, Some(task), flight.stopped, None) {
                    books.to_end.push(task);
                }
            }
        }
    }

    /// Cancels the run: waiting tasks withdrawn, running ones released once their
    /// agents' futures are gone (polled here, they are already dropped; spawned, they
    /// stop at their next poll, and until then the agent is still at the work), every
    /// unfinished step `Cancelled`.
    async fn cancel_run(&self, run: &mut Run, books: &mut Books<'_>, now: Timestamp) {
        let cancelled = run.cancel(now);
        tracing::info!(workflow.run = run.id(), steps = cancelled, "run cancelled");
        for (task, _) in std::mem::take(&mut books.waiting) {
            self.withdraw(task);
        }
        // Started and not handed to their agents (waiting for a given-up attempt
        // of their step to stop): their agents never saw them.
        for launch in books.launched.drain(..) {
            self.release(launch.task);
        }
        let running = std::mem::take(&mut books.running);
        for flight in running.values() {
            flight.abort.abort();
        }
        for (task, flight) in running {
            super::dispatch::stopped(flight.stopped).await;
            self.release(task);
        }
        for stopping in std::mem::take(&mut books.stopping) {
            // Never sent: the sender's drop is the news.
            let _ = stopping.stopped.await;
            if let Some(task) = stopping.task {
                self.end_task(task, false, None);
            }
        }
    }

    /// Gives back every task `books` still hold, for a run whose drive ended without
    /// finishing it: waiting tasks are withdrawn, the agents' work is stopped, and
    /// running tasks are released, those of spawned work once it has stopped (by a
    /// clean-up spawned on the same runtime, as this cannot wait).
    fn let_go_of(&self, books: &mut Books<'_>) {
        // Attempts timed out whose futures went with the drive: they end as the
        // drive would have ended them.
        for task in std::mem::take(&mut books.to_end) {
            self.end_task(task, false, None);
        }
        for (task, _) in std::mem::take(&mut books.waiting) {
            self.withdraw(task);
        }
        for launch in books.launched.drain(..) {
            self.release(launch.task);
        }
        let spawned = (std::mem::take(&mut books.running).into_iter())
            .filter_map(|(task, flight)| {
                flight.abort.abort();
                match flight.stopped {
                    Some(stopped) => Some((Some(task), stopped)),
                    None => {
                        self.release(task);
                        None
                    }
                }
            })
            .chain((books.stopping.drain(..)).map(|s| (s.task, s.stopped)))
            .collect::<Vec<_>>();
        if spawned.is_empty() {
            return;
        }
        // Spawned work exists only with a spawner.
        if let Some(spawner) = &self.spawner {
            let coordinator = Arc::clone(&self.coordinator);
            spawner.spawn(Box::pin(async move {
                for (task, stopped) in spawned {
                    let _ = stopped.await;
                    if let Some(task) = task {
                        let released = coordinator.release(task).map(drop);
                        unless_handed_back(&coordinator, task, released, "task not released");
                    }
                }
            }));
        }
    }

    /// Takes back a task the run no longer waits for: withdrawn if it still waits, or,
    /// assigned this very moment, ended unstarted.
    fn withdraw(&self, task: TaskId) {
        if self.coordinator.cancel(task).is_err() {
            self.release(task);
        }
    }

    /// Ends a running task without an outcome; one the coordinator no longer holds
    /// needs nothing.
    pub(super) fn release(&self, task: TaskId) {
        let released = self.coordinator.release(task).map(drop);
        unless_handed_back(&self.coordinator, task, released, "task not released");
    }

    /// Ends a running task with an outcome; one the coordinator no longer holds
    /// needs nothing.
    pub(super) fn end_task(
        &self,
        task: TaskId,
        success: bool,
        usage: Option<crate::resource::Resources>,
    ) {
        let ended = self.coordinator.complete(task, success, usage).map(drop);
        unless_handed_back(&self.coordinator, task, ended, "task not completed");
    }
}

/// After ending `task` for a run that no longer wants it: a task the coordinator
/// had handed back to its queue (its agent left service) before the run heard of
/// it is withdrawn from the queue. Left there, it would start on another agent
/// later for a run that is no longer driven to see the notice (a cancelled one),
/// and hold that agent's slot for good.
fn unless_handed_back(
    coordinator: &Coordinator,
    task: TaskId,
    ended: Result<(), CoordinatorError>,
    what: &str,
) {
    match ended {
        Ok(()) => {}
        Err(CoordinatorError::TaskWaiting { .. }) => {
            if let Err(e) = coordinator.cancel(task) {
                tracing::debug!(task.id = %task, error = %e, "handed-back task not withdrawn");
            }
        }
        Err(e) => tracing::debug!(task.id = %task, error = %e, "{what}"),
    }
}
