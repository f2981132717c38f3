//! One step's attempt: assigning ready steps in a coordinator batch, starting the
//! attempts the run allows, handing each to its agent (with its timeout, a panic
//! caught as a failure), and crediting the answer to the attempt it answers. Apart
//! from the drive loop because this is what happens to one step, where the loop
//! decides when.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;

use crate::agent::{Agent, AgentError, Outcome, WorkItem, WorkOutput};
use crate::clock::Timestamp;
use crate::coordinator::{AssignOutcome, Assignment, HandedBack};
use crate::id::{AgentId, TaskId};
use crate::task::Task;
use crate::timer::{Spawn, Timer};
use crate::workflow::run::{Run, StepOutcome, StepStatus};
use crate::workflow::{StepRef, WorkflowError};

use super::{Batch, Books, Done, Executor, ExecutorError, Launch, Running, given_up, settled};

/// The work item of `launch`: the task's kind and description are its step's kind
/// and name, as in the task the coordinator assigned; it names the run by `run_id`,
/// the run's id shared once per run, so that an attempt clones a pointer rather than
/// the id.
///
/// Inlined, so that the item is written where it is used rather than returned
/// field by field and copied out wide, which waits for those stores.
#[inline(always)]
pub(super) fn work_item(
    run: &Run,
    run_id: &Arc<str>,
    step: StepRef,
    task: TaskId,
    attempt: u32,
    deadline: Option<Timestamp>,
) -> Result<WorkItem, ExecutorError> {
    let workflow = run.workflow().inner();
    let i = step.index();
    let (Some(kind), Some(name)) = (workflow.kinds.get(i), workflow.names.get(i)) else {
        return Err(WorkflowError::UnknownStep {
            step: step.to_string(),
        }
        .into());
    };
    Ok(WorkItem::for_attempt(
        task,
        run_id,
        kind,
        name,
        run.inputs_for(step)?,
        attempt,
        deadline,
    ))
}

/// What a panicking agent's attempt ends with.
fn panicked() -> AgentError {
    AgentError::Failed {
        reason: "the agent panicked".to_owned(),
    }
}

/// Resolves once an attempt's spawned work has been dropped: its agent's future is
/// gone, whether it finished or was stopped. Shared, as both the attempt (on its
/// timeout) and the executor's books (on a cancel, a run's timeout) may wait for it.
pub(super) type Stopped = futures::future::Shared<oneshot::Receiver<()>>;

/// Spawned work that says when it has been dropped: its future first (the fields
/// drop in order), then the sender, which wakes the [`Stopped`] waiting for it.
struct Watched {
    work: BoxFuture<'static, ()>,
    _stopped: oneshot::Sender<()>,
}

impl std::future::Future for Watched {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.work.as_mut().poll(cx)
    }
}

/// The agent's work on `work`: on the host's runtime through `spawner` (so that CPU
/// work in one agent does not stall the others), or polled by the executor itself.
///
/// Spawned work comes with its [`Stopped`]: dropping the returned future asks the
/// spawned work to stop, and it stops at its next poll, on the runtime's time. Until
/// then the agent is still at it, so its task is not ended (and its slot not given to
/// another step) before that.
///
/// Spawned work also comes with the [`StopHandle`] that stops the agent's work without
/// dropping the attempt (see [`stoppable`]), made before the work is handed to the
/// runtime. Polled work has none yet: most of it answers at its first poll, and
/// [`begin`] makes one only for work that does not.
fn execute<'a>(
    transport: &'a Arc<dyn Agent>,
    work: WorkItem,
    spawner: Option<&Arc<dyn Spawn>>,
) -> (
    BoxFuture<'a, Result<WorkOutput, AgentError>>,
    Option<Stopped>,
    Option<StopHandle>,
) {
    match spawner {
        None => (transport.execute(work), None, None),
        Some(spawner) => {
            let work_abort = StopHandle::default();
            let stop = Arc::clone(&work_abort.0);
            let agent = Arc::clone(transport);
            // The remote half catches a panic and hands it to the handle, which
            // raises it here, where the attempt catches it; dropping the handle (a
            // timeout, a cancelled run) stops the spawned work at its next poll.
            let (remote, handle) = async move {
                let work = agent.execute(work);
                Stoppable { work, stop }.await
            }
            .remote_handle();
            let (tx, rx) = oneshot::channel();
            spawner.spawn(Box::pin(Watched {
                work: remote.boxed(),
                _stopped: tx,
            }));
            (handle.boxed(), Some(rx.shared()), Some(work_abort))
        }
    }
}

/// Work the executor polls itself, with the [`StopHandle`] that stops it without
/// dropping the attempt: the attempt then ends with whatever the work ended with, its
/// answer if it had one (work finished as its agent left service is not done twice),
/// else [`stopped_by_interruption`].
fn stoppable(
    work: BoxFuture<'_, Result<WorkOutput, AgentError>>,
) -> (BoxFuture<'_, Result<WorkOutput, AgentError>>, StopHandle) {
    let work_abort = StopHandle::default();
    let stop = Arc::clone(&work_abort.0);
    (Stoppable { work, stop }.boxed(), work_abort)
}

/// Stops an attempt's work without dropping the attempt (see [`stoppable`]).
#[derive(Debug, Clone, Default)]
pub(super) struct StopHandle(Arc<StopFlag>);

#[derive(Debug, Default)]
struct StopFlag {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl StopHandle {
    /// Stops the work: at its next poll the attempt ends with the work's answer if
    /// it has one by then, else with [`stopped_by_interruption`].
    pub(super) fn abort(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// Work that a [`StopHandle`] stops. It asks the work before it looks at the stop,
/// where `futures`' `Abortable` looks first: an answer that was ready when the stop
/// came (the agent finished as it left service, and the executor read the
/// coordinator's notice before the answer) is the attempt's, not thrown away for the
/// step to be run again.
struct Stoppable<'a> {
    work: BoxFuture<'a, Result<WorkOutput, AgentError>>,
    stop: Arc<StopFlag>,
}

impl Future for Stoppable<'_> {
    type Output = Result<WorkOutput, AgentError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(answer) = self.work.as_mut().poll(cx) {
            return Poll::Ready(answer);
        }
        // Registered before the flag is read: a stop between the two still wakes.
        self.stop.waker.register(cx.waker());
        if self.stop.stopped.load(Ordering::Acquire) {
            return Poll::Ready(Err(stopped_by_interruption()));
        }
        Poll::Pending
    }
}

/// What an attempt whose task was interrupted ends with when its work was stopped
/// before it answered.
fn stopped_by_interruption() -> AgentError {
    AgentError::Unreachable {
        reason: "its agent left service".to_owned(),
    }
}

/// Waits until the spawned work of an attempt given up has been dropped, if it was
/// spawned.
pub(super) async fn stopped(stopped: Option<Stopped>) {
    if let Some(stopped) = stopped {
        // Never sent: the sender's drop is the news.
        let _ = stopped.await;
    }
}

/// Hands `launch` to its agent and polls the work once. An agent that answers at once
/// (in-process agents, simulations, cached results) is done here, without a place
/// among the running attempts; the others go on in [`attempt`], which polls them
/// again with its own waker (a future may always be polled again).
pub(super) fn begin<'a>(
    launch: Launch<'a>,
    work: WorkItem,
    spawner: Option<&Arc<dyn Spawn>>,
) -> Result<Done, Running<'a>> {
    let Launch {
        step,
        agent,
        task,
        transport,
        attempt,
        timeout,
    } = launch;
    // A panicking agent fails its attempt; it never takes the executor down.
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (mut work, stopped, work_abort) = execute(transport, work, spawner);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match work.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => {
                let (work, work_abort) = match work_abort {
                    Some(work_abort) => (work, work_abort),
                    None => stoppable(work),
                };
                Err((work, stopped, work_abort))
            }
        }
    }));
    let result = match first {
        Ok(Ok(result)) => result,
        Ok(Err((work, stopped, work_abort))) => {
            return Err(Running {
                step,
                agent,
                task,
                attempt,
                work,
                work_abort,
                stopped,
                timeout,
            });
        }
        Err(_) => Err(panicked()),
    };
    Ok(Done {
        step,
        agent,
        task: Some(task),
        attempt,
        result,
    })
}

/// Runs an attempt its agent is working on to its [`Done`], within its timeout. One
/// future type for every attempt, so the executor holds them inline (no box per
/// attempt).
pub(super) async fn attempt(running: Running<'_>, timer: &dyn Timer) -> Done {
    let Running {
        step,
        agent,
        task,
        attempt,
        work,
        stopped,
        timeout,
        ..
    } = running;
    let exec = std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .map(|r| r.unwrap_or_else(|_| Err(panicked())));
    let result = match timeout {
        Some((after, deadline)) => {
            let sleep = timer.sleep_until(deadline);
            match futures::future::select(exec, sleep).await {
                Either::Left((r, _)) => r,
                Either::Right(((), exec)) => {
                    // The task ends with this answer: the agent lets go first.
                    drop(exec);
                    self::stopped(stopped).await;
                    Err(AgentError::Timeout { after })
                }
            }
        }
        None => exec.await,
    };
    Done {
        step,
        agent,
        task: Some(task),
        attempt,
        result,
    }
}

impl Executor {
    /// Assigns ready `steps` in one coordinator batch (one look at the fleet, and
    /// separation of duties checked across the batch): an assigned step starts, one
    /// that cannot start now waits in the coordinator (bound to its task), one no
    /// agent could ever take is given up with the coordinator's explanation.
    pub(super) fn dispatch<'s>(
        &'s self,
        run: &mut Run,
        steps: &[StepRef],
        batch: &mut Batch,
        books: &mut Books<'s>,
        now: Timestamp,
    ) -> Result<(), ExecutorError> {
        let workflow = run.workflow().inner();
        batch.outcomes.clear();
        // The batch's tasks are written over the last batch's spent ones (their
        // requirements' lists kept), then made anew.
        let mut made = 0;
        for &step in steps {
            let i = step.index();
            let (Some(kind), Some(name), Some(needs)) = (
                workflow.kinds.get(i),
                workflow.names.get(i),
                workflow
                    .requirement_of
                    .get(i)
                    .and_then(|&r| workflow.requirements.get(r as usize)),
            ) else {
                return Err(WorkflowError::UnknownStep {
                    step: step.to_string(),
                }
                .into());
            };
            let task_id = TaskId::new(self.next_task.fetch_add(1, Ordering::SeqCst));
            match batch.tasks.get_mut(made) {
                Some(spent) => spent.refill(task_id, kind, name, needs),
                None => batch.tasks.push(Task::from_parts(
                    task_id,
                    Arc::clone(kind),
                    Arc::clone(name),
                    needs.clone(),
                )),
            }
            made += 1;
        }
        batch.tasks.truncate(made);
        self.coordinator.assign_batch_into(
            Some(run.id()),
            &mut batch.tasks,
            &mut batch.outcomes,
            true,
        )?;
        for (&step, outcome) in steps.iter().zip(batch.outcomes.drain(..)) {
            match outcome {
                AssignOutcome::Assigned(a) => self.start(run, step, &a, now, books)?,
                AssignOutcome::Queued { task, .. } | AssignOutcome::Conflicted { task, .. } => {
                    run.bind(step, task)?;
                    books.waiting.insert(task, (step, now));
                }
                AssignOutcome::Rejected { explanation, .. } => {
                    let reason = format!(
                        "no agent can take step `{}`: {explanation}",
                        run.name(step).unwrap_or("?")
                    );
                    run.abandon(step, reason, now)?;
                }
            }
        }
        Ok(())
    }

    /// Starts the attempt of `step`, assigned by `assignment`, to be handed to its
    /// agent; gives the step up if this executor has no transport to the agent.
    pub(super) fn start<'s>(
        &'s self,
        run: &mut Run,
        step: StepRef,
        assignment: &Assignment,
        now: Timestamp,
        books: &mut Books<'s>,
    ) -> Result<(), ExecutorError> {
        let (agent, task) = (assignment.agent, assignment.task.id());
        let Some(transport) = self.agents.get(&agent) else {
            return self.no_transport(run, step, agent, task, now);
        };
        let attempt = run.start_bound(step, agent, task, now)?;
        // From the run's dense columns: the step's spec is not read unless it takes
        // inputs.
        let timeout = run.timeout(step).map(|t| (t, now + t));
        tracing::debug!(workflow.run = run.id(), step = ?run.name(step), agent.id = %agent, attempt, "step started");
        books.launched.push(Launch {
            step,
            agent,
            task,
            transport,
            attempt,
            timeout,
        });
        Ok(())
    }

    /// Gives up `step`, assigned to `agent`, which this executor has no transport to.
    /// Out of line: a misconfiguration, not a path every step takes.
    #[cold]
    #[inline(never)]
    fn no_transport(
        &self,
        run: &mut Run,
        step: StepRef,
        agent: AgentId,
        task: TaskId,
        now: Timestamp,
    ) -> Result<(), ExecutorError> {
        // Not the agent's fault: its task ends without a mark against it.
        self.release(task);
        run.unbind(step);
        tracing::warn!(agent.id = %agent, "assigned agent has no transport in this executor");
        let reason = format!(
            "step `{}` went to {agent}, which this executor has no transport to",
            run.name(step).unwrap_or("?")
        );
        given_up(run.abandon(step, reason, now))
    }

    /// Hands a finished attempt to the run and the coordinator. An answer the run
    /// refuses (late, or to an attempt that is not current) is never credited: its
    /// task ends as a failure when it came too late, and is released otherwise.
    /// Settles every attempt of `inflight` that has answered, and drops those
    /// aborted, without waiting.
    pub(super) fn settle_ready<F>(
        &self,
        run: &mut Run,
        books: &mut Books<'_>,
        inflight: &mut FuturesUnordered<F>,
    ) -> Result<(), ExecutorError>
    where
        F: std::future::Future<Output = Result<Done, futures::future::Aborted>>,
    {
        // An empty set is not polled: agents that answer at once leave it empty.
        // A set may say "not yet" with futures still woken in it: it yields once it
        // has polled as many as it holds, or two of them woke themselves (a timer,
        // a runtime's budget), and an aborted attempt queued behind those would live
        // on, its agent still at the work, while its step's next attempt begins.
        // Each call polls at least one woken future, and one that wakes itself goes
        // to the back of the queue, so as many calls as the set holds, and one more,
        // reach every future woken before the first.
        let mut not_yet = 0;
        while !inflight.is_empty() && not_yet <= inflight.len() {
            match inflight.next().now_or_never() {
                Some(Some(done)) => {
                    not_yet = 0;
                    if let Ok(done) = done {
                        self.settle(run, books, done)?;
                    }
                }
                Some(None) => break,
                None => not_yet += 1,
            }
        }
        Ok(())
    }

    pub(super) fn settle(
        &self,
        run: &mut Run,
        books: &mut Books<'_>,
        done: Done,
    ) -> Result<(), ExecutorError> {
        let Done {
            step,
            agent,
            task,
            attempt,
            result,
        } = done;
        // With agents that answer at once nothing is ever in flight: no lookup then.
        if let Some(t) = task.filter(|_| !books.running.is_empty()) {
            let flight = books.running.remove(&t);
            if let Some(flight) = flight.filter(|f| f.interrupted && result.is_err()) {
                // Its agent left service and the work ended without an answer: the
                // task goes back to the coordinator once the work is gone.
                let by = (agent, attempt);
                if let Some(t) = books.let_go(step, Some(t), flight.stopped, Some(by)) {
                    self.hand_back(run, books, step, t, by)?;
                }
                return Ok(());
            }
        }
        let now = self.now();
        let (outcome, usage, skipped) = match result {
            Ok(output) => {
                let (outcome, outputs, usage) = output.into_parts();
                // Field by field: a base outcome would make (and drop) an empty map.
                match outcome {
                    Outcome::Succeeded => (
                        StepOutcome {
                            success: true,
                            outputs,
                            reason: None,
                            retryable: true,
                        },
                        usage,
                        false,
                    ),
                    // The agent knows whether its work would fail the same way
                    // again (a compile error) or might not (a flaky test): a final
                    // failure ends the step here rather than spend the policy's
                    // attempts and backoffs on a known answer.
                    Outcome::Failed { reason, retryable } => (
                        StepOutcome {
                            success: false,
                            outputs,
                            reason: Some(reason),
                            retryable,
                        },
                        usage,
                        false,
                    ),
                    Outcome::Skipped { reason } => (
                        StepOutcome {
                            success: true,
                            outputs,
                            reason: Some(reason),
                            retryable: true,
                        },
                        usage,
                        true,
                    ),
                }
            }
            // An agent's error is about the agent, not the work: the transport, its
            // own limits, a crash. The retry may go to another agent, or find this
            // one mended, so it is tried again per the step's policy, transient
            // (`AgentError::is_transient`) or not.
            Err(e) => (StepOutcome::failure(e.to_string()), None, false),
        };
        let success = outcome.success;
        let said = if !skipped {
            // `finish_attempt` refuses an answer to an earlier attempt itself;
            // `skip_attempt` does not look at the attempt.
            run.finish_attempt(step, agent, attempt, outcome, now)
        } else if run.attempts(step) != Some(attempt) {
            Err(WorkflowError::StaleAttempt {
                step: run.name(step).unwrap_or("?").to_owned(),
                attempt,
                current: run.attempts(step).unwrap_or(0),
            })
        } else {
            let reason = outcome.reason.unwrap_or_default();
            run.skip_attempt(step, agent, reason, now)
        };
        match (said, task) {
            (Ok(()), Some(task)) => self.end_task(task, success, usage),
            // Too late: the attempt timed out, which the next tick records.
            (Err(WorkflowError::Late { .. }), Some(task)) => self.end_task(task, false, None),
            (Ok(()) | Err(WorkflowError::Late { .. }), None) => {}
            (Err(e), task) => {
                settled(Err(e))?;
                if let Some(task) = task {
                    self.release(task);
                }
            }
        }
        tracing::debug!(workflow.run = run.id(), step = ?run.name(step), agent.id = %agent, success, "step finished");
        Ok(())
    }

    /// Hands interrupted `task` back to the coordinator, its attempt (`agent`,
    /// `attempt`) on `step` stopped without an answer: the attempt is void and the
    /// step waits again for the same task, or, if the coordinator ends it (per
    /// [`OnAgentLoss`](crate::coordinator::OnAgentLoss)), the attempt failed. An
    /// attempt the run has moved on from (it timed out meanwhile) only ends its task.
    pub(super) fn hand_back(
        &self,
        run: &mut Run,
        books: &mut Books<'_>,
        step: StepRef,
        task: TaskId,
        (agent, attempt): (AgentId, u32),
    ) -> Result<(), ExecutorError> {
        let now = self.now();
        let current =
            run.status(step) == Some(StepStatus::Running) && run.attempts(step) == Some(attempt);
        if !current {
            self.end_task(task, false, None);
            return Ok(());
        }
        let reason = || format!("{agent} left service");
        match self.coordinator.hand_back(task) {
            Ok(HandedBack::Requeued) => {
                run.interrupt(step, reason(), now)?;
                run.bind(step, task)?;
                books.waiting.insert(task, (step, now));
            }
            answer => {
                if let Err(e) = answer {
                    // Taken from it already (the agent was deregistered): the
                    // coordinator's notice about it finds no attempt to stop.
                    tracing::warn!(task.id = %task, error = %e, "interrupted task not handed back");
                }
                let failure = StepOutcome::failure(reason());
                settled(run.finish_attempt(step, agent, attempt, failure, now))?;
            }
        }
        Ok(())
    }
}
