//! [`Executor`]: an async driver that runs a [`Workflow`] to completion over the host's
//! [`Agent`]s, with steps assigned by a [`Coordinator`].
//!
//! The executor owns no runtime: it is one future that polls the agents' futures
//! itself (`FuturesUnordered`) and waits through a host-supplied [`Timer`]. Run it
//! with `futures::executor::block_on`, tokio, async-std or smol. Every step goes
//! through the coordinator (analysis of the step's requirements, assignment,
//! policies such as separation of duties within the run, resources), so the run's
//! assignments, policy refusals and allocations are in the coordinator's event
//! journal, and the run's own evidence is in [`Run::history`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use futures::stream::{FuturesUnordered, StreamExt};

use super::run::{Run, RunEvent, StepOutcome};
use super::{StepRef, Workflow, WorkflowError};
use crate::agent::{Agent, AgentError, Outcome, WorkItem, WorkOutput};
use crate::clock::Timestamp;
use crate::coordinator::{AssignOutcome, Assignment, Coordinator, CoordinatorError};
use crate::id::{AgentId, TaskId};
use crate::task::Task;
pub use crate::timer::{SimulatedTimer, Timer};

/// An error that stops the executor (as opposed to a step failing, which the run
/// records and the workflow handles).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The run refused a transition the executor made (a bug in the executor or a
    /// workflow changed under it).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The coordinator refused an operation.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

/// Stops a running executor: the run is cancelled at the next step boundary.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Asks the executor to cancel the run.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One finished attempt, as the executor hands it back to the run.
type Done = (StepRef, AgentId, TaskId, Result<WorkOutput, AgentError>);

/// A step's attempt, started in the run and about to be handed to its agent, over a
/// transport borrowed from the executor.
///
/// The work item is made when the agent gets it (see [`work_item`]): a launch is
/// small, and moves without a call to `memcpy`.
struct Launch<'a> {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    transport: &'a dyn Agent,
    attempt: u32,
    /// The attempt's deadline, when the step has a timeout.
    timeout: Option<(Duration, Timestamp)>,
}

/// The work item of `launch`: the task's kind and description are its step's kind
/// and name, as in the task the coordinator assigned.
fn work_item(run: &Run, launch: &Launch<'_>) -> Result<WorkItem, ExecutorError> {
    let workflow = run.workflow().inner();
    let i = launch.step.index();
    let (Some(kind), Some(name)) = (workflow.kinds.get(i), workflow.names.get(i)) else {
        return Err(WorkflowError::UnknownStep {
            step: launch.step.to_string(),
        }
        .into());
    };
    Ok(WorkItem::for_attempt(
        launch.task,
        kind,
        name,
        run.inputs_for(launch.step)?,
        launch.attempt,
        launch.timeout.map(|(_, deadline)| deadline),
    ))
}

/// An attempt its agent is still working on.
struct Running<'a> {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    work: BoxFuture<'a, Result<WorkOutput, AgentError>>,
    timeout: Option<(Duration, Timestamp)>,
}

/// What a panicking agent's attempt ends with.
fn panicked() -> AgentError {
    AgentError::Failed {
        reason: "the agent panicked".to_owned(),
    }
}

/// Hands `launch` to its agent and polls the work once. An agent that answers at once
/// (in-process agents, simulations, cached results) is done here, without a place
/// among the running attempts; the others go on in [`attempt`], which polls them
/// again with its own waker (a future may always be polled again).
fn begin(launch: Launch<'_>, work: WorkItem) -> Result<Done, Running<'_>> {
    let Launch {
        step,
        agent,
        task,
        transport,
        timeout,
        ..
    } = launch;
    // A panicking agent fails its attempt; it never takes the executor down.
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut work = transport.execute(work);
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        match work.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => Ok(result),
            std::task::Poll::Pending => Err(work),
        }
    }));
    match first {
        Ok(Ok(result)) => Ok((step, agent, task, result)),
        Ok(Err(work)) => Err(Running {
            step,
            agent,
            task,
            work,
            timeout,
        }),
        Err(_) => Ok((step, agent, task, Err(panicked()))),
    }
}

/// Runs an attempt its agent is working on to its [`Done`], within its timeout. One
/// future type for every attempt, so the executor holds them inline (no box per
/// attempt).
async fn attempt(running: Running<'_>, timer: &dyn Timer) -> Done {
    let Running {
        step,
        agent,
        task,
        work,
        timeout,
    } = running;
    let exec = std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .map(|r| r.unwrap_or_else(|_| Err(panicked())));
    let result = match timeout {
        Some((after, deadline)) => {
            let sleep = timer.sleep_until(deadline);
            futures::pin_mut!(exec, sleep);
            match futures::future::select(exec, sleep).await {
                Either::Left((r, _)) => r,
                Either::Right(((), _)) => Err(AgentError::Timeout { after }),
            }
        }
        None => exec.await,
    };
    (step, agent, task, result)
}

/// What a dispatch hands the coordinator, kept between dispatches for the
/// buffers' capacity.
#[derive(Default)]
struct Batch {
    tasks: Vec<Task>,
    outcomes: Vec<AssignOutcome>,
}

/// Where a dispatch puts the steps it handles: started attempts, and the steps that
/// must wait (with why, and since when and under which task for a collision).
struct Waits<'a, 's> {
    launched: &'a mut Vec<Launch<'s>>,
    deferred: &'a mut BTreeMap<StepRef, Deferral>,
    collided: &'a mut BTreeMap<StepRef, (Timestamp, TaskId)>,
}

/// Why a ready step could not start now.
#[derive(Debug)]
struct Deferral {
    /// Said in the history if the step is given up.
    why: String,
    /// The task its claims collided under (none for other reasons): a retry reuses
    /// it, so that it meets the same open conflict instead of opening another.
    collided: Option<TaskId>,
}

impl Deferral {
    fn because(why: String) -> Self {
        Deferral {
            why,
            collided: None,
        }
    }
}

/// Sees every change of a run as the [`Executor`] makes it: the new [`RunEvent`]s, in
/// order, with the run they happened to (so the host can journal them, show progress,
/// or persist [`Run::snapshot`] and later [`Executor::resume`] after a crash).
///
/// Called on the executor's task, between steps: keep it short (hand the events to a
/// channel or a buffer); every event is delivered exactly once.
pub trait RunObserver: Send + Sync {
    /// `events` are the run's history entries appended since the previous call.
    fn on_events(&self, run: &Run, events: &[RunEvent]);
}

impl<F> RunObserver for F
where
    F: Fn(&Run, &[RunEvent]) + Send + Sync,
{
    fn on_events(&self, run: &Run, events: &[RunEvent]) {
        self(run, events)
    }
}

impl fmt::Debug for dyn RunObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunObserver")
    }
}

/// Runs workflows over the host's agents, with steps assigned by a [`Coordinator`].
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
/// use concord::coordinator::Coordinator;
/// use concord::workflow::{Executor, SimulatedTimer, StepSpec, Workflow};
/// use concord::{AgentId, AgentProfile, ManualClock, Role, Timestamp};
///
/// #[derive(Debug)]
/// struct Echo(AgentId);
/// #[async_trait::async_trait]
/// impl Agent for Echo {
///     fn id(&self) -> AgentId { self.0 }
///     async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
///         Ok(WorkOutput::success().with_output("done", work.kind()))
///     }
///     async fn health(&self) -> Result<AgentHealth, AgentError> { Ok(AgentHealth::new("1.0")) }
/// }
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_000));
/// let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
/// coordinator.register_agent(AgentProfile::new(AgentId::new(1), "ops").with_role(Role::new("ops")?))?;
/// let workflow = Workflow::builder("two steps")
///     .step(StepSpec::new("build").with_role(Role::new("ops")?))
///     .step(StepSpec::new("ship").with_role(Role::new("ops")?).after("build"))
///     .build()?;
/// let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock))
///     .with_agent(Arc::new(Echo(AgentId::new(1))));
/// let run = futures::executor::block_on(executor.run(&workflow, "run-1", 7))?;
/// assert!(run.is_finished());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Executor {
    coordinator: Arc<Coordinator>,
    agents: BTreeMap<AgentId, Arc<dyn Agent>>,
    timer: Arc<dyn Timer>,
    concurrency: usize,
    next_task: AtomicU64,
    cancel: CancelHandle,
    observer: Option<Arc<dyn RunObserver>>,
    claim_patience: Duration,
    claim_poll: Duration,
}

impl Executor {
    /// An executor assigning through `coordinator` and waiting through `timer`.
    pub fn new(coordinator: Arc<Coordinator>, timer: impl Timer + 'static) -> Self {
        Executor {
            coordinator,
            agents: BTreeMap::new(),
            timer: Arc::new(timer),
            concurrency: 16,
            next_task: AtomicU64::new(1 << 40),
            cancel: CancelHandle::default(),
            observer: None,
            claim_patience: Duration::from_secs(30 * 60),
            claim_poll: Duration::from_secs(1),
        }
    }

    /// How long a step whose claims collide with work outside its run waits for it,
    /// looking again every `poll` (defaults: 30 minutes, every second). While it
    /// waits, the coordinator's conflict manager escalates the conflict as its policy
    /// says; past `patience` the step is abandoned with the conflict named. (A
    /// collision with a step of the same run needs no polling: the step is tried
    /// again when that one finishes.)
    pub fn with_claim_wait(mut self, patience: Duration, poll: Duration) -> Self {
        self.claim_patience = patience;
        self.claim_poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Reports every change of the runs this executor drives to `observer`, as it
    /// happens.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use concord::workflow::{Executor, Run, RunEvent, SimulatedTimer};
    /// # use concord::coordinator::Coordinator;
    /// # use concord::{ManualClock, Timestamp};
    /// let clock = ManualClock::new(Timestamp::from_secs(1));
    /// let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    /// let journal = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&journal);
    /// let executor = Executor::new(coordinator, SimulatedTimer::new(clock))
    ///     .with_observer(move |_run: &Run, events: &[RunEvent]| {
    ///         sink.lock().unwrap().extend_from_slice(events);
    ///     });
    /// ```
    pub fn with_observer(mut self, observer: impl RunObserver + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Hands the events appended since `seen` to the observer.
    fn notify(&self, run: &Run, seen: &mut usize) {
        let history = run.history();
        if let Some(observer) = &self.observer {
            if history.len() > *seen {
                observer.on_events(run, &history[*seen..]);
            }
        }
        *seen = history.len();
    }

    /// Adds the transport to an agent (it must also be registered with the
    /// coordinator, which decides who gets which step).
    pub fn with_agent(mut self, agent: Arc<dyn Agent>) -> Self {
        self.agents.insert(agent.id(), agent);
        self
    }

    /// At most `n` steps run at once (default 16; at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Task ids for the steps' attempts start at `first` (default `2^40`); each attempt
    /// takes the next. Pick a range your other tasks do not use.
    pub fn with_task_ids(self, first: u64) -> Self {
        self.next_task.store(first, Ordering::SeqCst);
        self
    }

    /// A handle that cancels the run from elsewhere.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    fn now(&self) -> Timestamp {
        self.coordinator.now()
    }

    /// Runs `workflow` to completion as run `id` (also the coordinator's group, so
    /// separation of duties holds across its steps), with `seed` for retry jitter.
    /// Returns the finished run: statuses, outputs and the evidence history.
    ///
    /// A step no agent can take waits while other steps run (capacity may come back);
    /// when nothing is running and nothing can be assigned, it fails with the
    /// coordinator's explanation.
    ///
    /// # Errors
    /// [`ExecutorError`] if the coordinator refuses an operation outright (a bug, not a
    /// step failure).
    pub async fn run(
        &self,
        workflow: &Workflow,
        id: &str,
        seed: u64,
    ) -> Result<Run, ExecutorError> {
        let mut run = workflow.start_run(id, seed, self.now());
        self.drive(&mut run).await?;
        Ok(run)
    }

    /// Continues a run (for instance one restored from a snapshot after a crash).
    ///
    /// After a crash, restore the coordinator from the snapshot the host took with the
    /// run's, at the same observer call (or a later one): an older one has forgotten
    /// the duties recorded since, and separation of duties with them. That coordinator
    /// still holds the tasks of the attempts the crash interrupted, which the restored
    /// run counts as failed ([`Run::restore`]); `resume` first gives them back (each
    /// completed as a failure, its slot, resources and claims freed) and withdraws the
    /// run's waiting tasks, so that the retries find their agents and claims free. A
    /// run's tasks are those of its group, the run's id: resume one run at most once
    /// at a time. Task ids go on above every id the coordinator holds.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn resume(&self, mut run: Run) -> Result<Run, ExecutorError> {
        self.reclaim(&run);
        self.drive(&mut run).await?;
        Ok(run)
    }

    async fn drive(&self, run: &mut Run) -> Result<(), ExecutorError> {
        // Everything is news except what a restored run's snapshot already held.
        let mut seen = run.restored_history();
        let result = self.drive_observed(run, &mut seen).await;
        self.notify(run, &mut seen);
        result
    }

    async fn drive_observed(&self, run: &mut Run, seen: &mut usize) -> Result<(), ExecutorError> {
        let mut inflight = FuturesUnordered::new();
        let mut launched = Vec::new();
        // Steps that could not start since the last completion, with why.
        let mut deferred: BTreeMap<StepRef, Deferral> = BTreeMap::new();
        // Steps waiting on colliding claims: since when, and under which task id.
        let mut collided: BTreeMap<StepRef, (Timestamp, TaskId)> = BTreeMap::new();
        let mut ready = Vec::new();
        let mut batch = Batch::default();
        loop {
            let now = self.now();
            if self.cancel.is_cancelled() {
                let cancelled = run.cancel(now);
                tracing::info!(workflow.run = run.id(), steps = cancelled, "run cancelled");
                // The agents' futures are dropped; their tasks end as failures.
                drop(inflight);
                self.fail_running_tasks(run);
                return Ok(());
            }
            run.tick(now);
            // Dispatch what is ready, up to the concurrency limit.
            // Only as many as can start, plus those known to be waiting for an agent.
            let room = self.concurrency.saturating_sub(inflight.len());
            run.ready_first(room + deferred.len(), &mut ready);
            ready.retain(|step| !deferred.contains_key(step));
            ready.truncate(room);
            if ready.is_empty() {
                // The round's news (ends settled last round, the tick's timeouts and
                // back-offs) before waiting; a dispatch delivers them with its starts.
                self.notify(run, seen);
            } else {
                let waits = Waits {
                    launched: &mut launched,
                    deferred: &mut deferred,
                    collided: &mut collided,
                };
                self.dispatch(run, &ready, &mut batch, waits, now)?;
                // The host sees the attempts start (after the news of the round before)
                // before the agents get the work.
                self.notify(run, seen);
                let mut answered = false;
                for launch in launched.drain(..) {
                    let work = work_item(run, &launch)?;
                    match begin(launch, work) {
                        // Settled at once: its step is done before the next is begun.
                        Ok(done) => {
                            self.settle(run, done)?;
                            answered = true;
                        }
                        Err(running) => inflight.push(attempt(running, &*self.timer)),
                    }
                }
                if answered {
                    // The running attempts get their turn too before the next
                    // dispatch, so that instant agents never starve them.
                    while !inflight.is_empty() {
                        let Some(Some(done)) = inflight.next().now_or_never() else {
                            break;
                        };
                        self.settle(run, done)?;
                    }
                    // The host hears of these ends with the next round's news (with
                    // its starts, before any agent gets work), or when the run returns.
                    deferred.clear();
                    continue;
                }
            }
            if run.is_finished() && inflight.is_empty() {
                return Ok(());
            }
            if inflight.is_empty() {
                // Nothing running: wait for a back-off, or give up on steps nobody can
                // take.
                match run.next_deadline() {
                    Some(deadline) => self.timer.sleep_until(deadline).await,
                    None => {
                        let stuck = std::mem::take(&mut deferred);
                        if stuck.is_empty() {
                            // Nothing ready, running or timed: the run is finished.
                            return Ok(());
                        }
                        // Steps whose claims collide with outside work wait for it
                        // (within their patience); the others are given up.
                        let mut waiting = false;
                        for (step, deferral) in stuck {
                            let patient = collided
                                .get(&step)
                                .is_some_and(|&(since, _)| now < since + self.claim_patience);
                            if deferral.collided.is_some() && patient {
                                waiting = true;
                            } else {
                                collided.remove(&step);
                                run.abandon(step, deferral.why, self.now())?;
                            }
                        }
                        self.notify(run, seen);
                        if waiting {
                            self.timer.sleep_until(now + self.claim_poll).await;
                        }
                    }
                }
                continue;
            }
            // Wait for an attempt to finish, or for the next timeout or back-off.
            let done = match run.next_deadline() {
                Some(deadline) => {
                    let sleep = self.timer.sleep_until(deadline);
                    match futures::future::select(inflight.next(), sleep).await {
                        Either::Left((done, _)) => done,
                        Either::Right(((), _)) => None,
                    }
                }
                None => inflight.next().await,
            };
            if let Some(done) = done {
                self.settle(run, done)?;
                // Settle every other attempt that has finished too, so that the steps
                // they free are dispatched together, in one coordinator batch.
                while let Some(Some(done)) = inflight.next().now_or_never() {
                    self.settle(run, done)?;
                }
                self.notify(run, seen);
                deferred.clear();
            }
        }
    }

    /// Assigns ready `steps` in one coordinator batch (one look at the fleet, and
    /// separation of duties checked across the batch) and starts the attempts of
    /// those assigned; a step that cannot start now is deferred, with why.
    fn dispatch<'s>(
        &'s self,
        run: &mut Run,
        steps: &[StepRef],
        batch: &mut Batch,
        waits: Waits<'_, 's>,
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
            // A step retried after a collision keeps its task id, and so its conflict.
            let task_id = match waits.collided.get(&step) {
                Some(&(_, task)) => task,
                None => TaskId::new(self.next_task.fetch_add(1, Ordering::SeqCst)),
            };
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
            false,
        )?;
        for (&step, outcome) in steps.iter().zip(batch.outcomes.drain(..)) {
            // The step's name is read only for a step that waits (to say why).
            let name = |run: &Run| run.name(step).unwrap_or("?").to_owned();
            let deferral = match outcome {
                AssignOutcome::Assigned(a) => {
                    match self.start(run, step, &a, now, waits.launched)? {
                        None => {
                            waits.collided.remove(&step);
                            continue;
                        }
                        Some(deferral) => deferral,
                    }
                }
                AssignOutcome::Queued {
                    task, explanation, ..
                } => {
                    // The executor waits for capacity itself (after the next completion).
                    let _ = self.coordinator.cancel(task);
                    Deferral::because(format!(
                        "no agent had room for step `{}`: {explanation}",
                        name(run)
                    ))
                }
                AssignOutcome::Rejected { explanation, .. } => Deferral::because(format!(
                    "no agent can take step `{}`: {explanation}",
                    name(run)
                )),
                AssignOutcome::Conflicted { task, conflicts } => {
                    let ids: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
                    Deferral {
                        why: format!(
                            "the claims of step `{}` collide with running work ({})",
                            name(run),
                            ids.join(", ")
                        ),
                        collided: Some(task),
                    }
                }
            };
            match deferral.collided {
                Some(task) => {
                    let since = waits.collided.get(&step).map_or(now, |w| w.0);
                    waits.collided.insert(step, (since, task));
                }
                None => {
                    waits.collided.remove(&step);
                }
            }
            waits.deferred.insert(step, deferral);
        }
        Ok(())
    }

    /// Starts the attempt of `step`, assigned by `assignment`, and adds it to
    /// `launched`; why not (and the task given back) if this executor has no
    /// transport to the agent.
    fn start<'s>(
        &'s self,
        run: &mut Run,
        step: StepRef,
        assignment: &Assignment,
        now: Timestamp,
        launched: &mut Vec<Launch<'s>>,
    ) -> Result<Option<Deferral>, ExecutorError> {
        let (agent, task_id) = (assignment.agent, assignment.task.id());
        let Some(transport) = self.agents.get(&agent).map(|a| &**a) else {
            // Assigned to an agent this executor cannot reach: give the task back.
            let _ = self.coordinator.complete(task_id, false, None);
            tracing::warn!(agent.id = %agent, "assigned agent has no transport in this executor");
            return Ok(Some(Deferral::because(format!(
                "step `{}` went to {agent}, which this executor has no transport to",
                run.name(step).unwrap_or("?")
            ))));
        };
        run.start(step, agent, now)?;
        let attempt = run.attempts(step).unwrap_or(1);
        // From the run's dense columns: the step's spec is not read unless it takes
        // inputs.
        let timeout = run.timeout(step).map(|t| (t, now + t));
        tracing::debug!(workflow.run = run.id(), step = ?run.name(step), agent.id = %agent, attempt, "step started");
        launched.push(Launch {
            step,
            agent,
            task: task_id,
            transport,
            attempt,
            timeout,
        });
        Ok(None)
    }

    /// Hands a finished attempt to the coordinator and the run.
    fn settle(
        &self,
        run: &mut Run,
        (step, agent, task, result): Done,
    ) -> Result<(), ExecutorError> {
        let now = self.now();
        let (outcome, usage) = match result {
            Ok(output) => {
                let (outcome, outputs, usage) = output.into_parts();
                // Field by field: a base outcome would make (and drop) an empty map.
                let outcome = match outcome {
                    Outcome::Succeeded => StepOutcome {
                        success: true,
                        outputs,
                        reason: None,
                    },
                    Outcome::Failed { reason, .. } => StepOutcome {
                        success: false,
                        outputs,
                        reason: Some(reason),
                    },
                    Outcome::Skipped { reason } => {
                        let _ = self.coordinator.complete(task, true, usage);
                        let skipped = run.skip_attempt(step, agent, reason, now);
                        return settled(skipped);
                    }
                };
                (outcome, usage)
            }
            Err(e) => (StepOutcome::failure(e.to_string()), None),
        };
        let success = outcome.success;
        let _ = self.coordinator.complete(task, success, usage);
        settled(run.finish(step, agent, outcome, now))?;
        tracing::debug!(workflow.run = run.id(), step = ?run.name(step), agent.id = %agent, success, "step finished");
        Ok(())
    }

    /// Gives back to the coordinator the tasks it holds for `run` from before this
    /// executor drove it (see [`resume`](Self::resume)), and moves the task ids past
    /// every id it holds.
    fn reclaim(&self, run: &Run) {
        self.fail_running_tasks(run);
        let waiting = self.coordinator.waiting();
        for w in waiting
            .iter()
            .filter(|w| w.group.as_deref() == Some(run.id()))
        {
            let _ = self.coordinator.cancel(w.task.id());
        }
        let held = self
            .coordinator
            .assignments()
            .iter()
            .map(|a| a.task.id())
            .chain(waiting.iter().map(|w| w.task.id()))
            .map(|id| id.get().saturating_add(1))
            .max();
        if let Some(above) = held {
            self.next_task.fetch_max(above, Ordering::SeqCst);
        }
    }

    /// Ends the coordinator's tasks of the run's group as failures (their attempts were
    /// cancelled, or interrupted by a crash), freeing their slots, resources and
    /// claims.
    fn fail_running_tasks(&self, run: &Run) {
        let running = self
            .coordinator
            .assignments()
            .into_iter()
            .filter(|a| a.group.as_deref() == Some(run.id()));
        for a in running {
            tracing::info!(workflow.run = run.id(), task.id = %a.task.id(), agent.id = %a.agent, "attempt's task given back as failed");
            let _ = self.coordinator.complete(a.task.id(), false, None);
        }
    }
}

/// What the run said to a finished attempt, for the executor: an attempt that timed
/// out (by `tick`) or was cancelled meanwhile is no error, the run already decided.
fn settled(said: Result<(), WorkflowError>) -> Result<(), ExecutorError> {
    match said {
        Ok(()) | Err(WorkflowError::NotRunning { .. } | WorkflowError::WrongAgent { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long a run took, from its first to its last event.
pub fn run_duration(run: &Run) -> Duration {
    match (run.history().first(), run.history().last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at),
        _ => Duration::ZERO,
    }
}
