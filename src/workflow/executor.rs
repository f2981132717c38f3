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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, Abortable, Aborted, BoxFuture, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;

use super::run::{Run, RunEvent, RunOutcome, StepOutcome, StepStatus};
use super::{StepRef, Workflow, WorkflowError};
use crate::agent::{Agent, AgentError, Outcome, WorkItem, WorkOutput};
use crate::clock::Timestamp;
use crate::coordinator::{AssignOutcome, Assignment, Coordinator, CoordinatorError, Notice};
use crate::id::{AgentId, TaskId};
use crate::task::Task;
pub use crate::timer::{SimulatedTimer, Spawn, Timer};

/// An error that stops a run's drive or refuses to start it (as opposed to a step
/// failing, which the run records and the workflow handles).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The run was refused at its start ([`WorkflowError::EmptyRunId`]), or refused a
    /// transition the executor made (a bug in the executor or a workflow changed
    /// under it).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// A run with this id is live in this executor: started or resumed, and its
    /// future neither finished nor dropped. The id is the run's group in the
    /// coordinator, which keeps one mailbox of notices per group, so two live runs
    /// under one id would take each other's notices and wait forever. Nothing was
    /// started and the live run is untouched; the id is free again once that run
    /// ends.
    #[error("run {run:?} is already live in this executor; live runs need distinct ids")]
    RunInProgress {
        /// The id.
        run: String,
    },
    /// The coordinator refused an operation.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

/// Where one run stands, as its [`RunHandle`] reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunProgress {
    /// Attempts its agents are working on.
    pub running: usize,
    /// Steps waiting in the coordinator: for an agent with room, behind a claim, or
    /// for normal mode.
    pub waiting: usize,
    /// Steps waiting out a retry delay after a failed attempt: neither running nor
    /// waiting in the coordinator, they become ready when their delay is over
    /// ([`StepStatus::BackingOff`]).
    pub backing_off: usize,
    /// Steps finished (succeeded, failed, skipped or cancelled).
    pub finished: usize,
    /// Steps in the workflow.
    pub steps: usize,
    /// How the run ended, once it has.
    pub outcome: Option<RunOutcome>,
}

#[derive(Debug, Default)]
struct RunControl {
    cancelled: AtomicBool,
    waker: AtomicWaker,
    progress: parking_lot::Mutex<RunProgress>,
}

/// One run's handle: cancel it, or see where it stands, from anywhere. Cancelling
/// one run touches no other run of the same executor.
#[derive(Debug, Clone, Default)]
pub struct RunHandle(Arc<RunControl>);

impl RunHandle {
    /// Cancels the run: its waiting steps are withdrawn, its agents' futures dropped
    /// and their tasks released at once, and every unfinished step ends `Cancelled`.
    /// Cancelling a finished run does nothing.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.waker.wake();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Where the run stands, as of the executor's last turn.
    pub fn progress(&self) -> RunProgress {
        self.0.progress.lock().clone()
    }

    /// Ready when the run is cancelled; remembers `cx` to be woken then.
    fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
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

/// A run being driven: a future of the finished [`Run`], with its [`RunHandle`].
///
/// Await it (or spawn the one [`Executor::run_owned`] makes); take the handle first
/// to cancel the run or watch it from elsewhere.
#[must_use = "a run does nothing unless awaited"]
pub struct RunFuture<'a> {
    handle: RunHandle,
    inner: BoxFuture<'a, Result<Run, ExecutorError>>,
}

impl RunFuture<'_> {
    /// The run's handle. A run refused at its start (see [`Executor::run`]) has a
    /// handle that never shows an outcome: the future's error says why.
    pub fn handle(&self) -> RunHandle {
        self.handle.clone()
    }

    /// A run refused before it started: the future is ready at once with `error`.
    fn refused(error: ExecutorError) -> Self {
        RunFuture {
            handle: RunHandle::default(),
            inner: Box::pin(futures::future::ready(Err(error))),
        }
    }
}

impl fmt::Debug for RunFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Future for RunFuture<'_> {
    type Output = Result<Run, ExecutorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// One finished attempt, as the executor hands it back to the run: the attempt it
/// answers is named, so that a late answer is never credited to a later attempt.
struct Done {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    attempt: u32,
    result: Result<WorkOutput, AgentError>,
}

/// A step's attempt, started in the run and about to be handed to its agent.
///
/// The work item is made when the agent gets it (see [`work_item`]).
struct Launch<'a> {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    transport: &'a Arc<dyn Agent>,
    attempt: u32,
    /// The attempt's deadline, when the step has a timeout.
    timeout: Option<(Duration, Timestamp)>,
}

/// The work item of `launch`: the task's kind and description are its step's kind
/// and name, as in the task the coordinator assigned; it names the run by `run_id`,
/// the run's id shared once per run, so that an attempt clones a pointer rather than
/// the id.
///
/// Inlined, so that the item is written where it is used rather than returned
/// field by field and copied out wide, which waits for those stores.
#[inline(always)]
fn work_item(
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

/// An attempt its agent is still working on.
struct Running<'a> {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    attempt: u32,
    work: BoxFuture<'a, Result<WorkOutput, AgentError>>,
    timeout: Option<(Duration, Timestamp)>,
}

/// What a panicking agent's attempt ends with.
fn panicked() -> AgentError {
    AgentError::Failed {
        reason: "the agent panicked".to_owned(),
    }
}

/// The agent's work on `work`: on the host's runtime through `spawner` (so that CPU
/// work in one agent does not stall the others), or polled by the executor itself.
fn execute<'a>(
    transport: &'a Arc<dyn Agent>,
    work: WorkItem,
    spawner: Option<&Arc<dyn Spawn>>,
) -> BoxFuture<'a, Result<WorkOutput, AgentError>> {
    match spawner {
        None => transport.execute(work),
        Some(spawner) => {
            let agent = Arc::clone(transport);
            // The remote half catches a panic and hands it to the handle, which
            // raises it here, where the attempt catches it; dropping the handle (a
            // timeout, a cancelled run) stops the spawned work at its next poll.
            let (remote, handle) = async move { agent.execute(work).await }.remote_handle();
            spawner.spawn(remote.boxed());
            handle.boxed()
        }
    }
}

/// Hands `launch` to its agent and polls the work once. An agent that answers at once
/// (in-process agents, simulations, cached results) is done here, without a place
/// among the running attempts; the others go on in [`attempt`], which polls them
/// again with its own waker (a future may always be polled again).
fn begin<'a>(
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
        let mut work = execute(transport, work, spawner);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match work.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => Err(work),
        }
    }));
    let result = match first {
        Ok(Ok(result)) => result,
        Ok(Err(work)) => {
            return Err(Running {
                step,
                agent,
                task,
                attempt,
                work,
                timeout,
            });
        }
        Err(_) => Err(panicked()),
    };
    Ok(Done {
        step,
        agent,
        task,
        attempt,
        result,
    })
}

/// Runs an attempt its agent is working on to its [`Done`], within its timeout. One
/// future type for every attempt, so the executor holds them inline (no box per
/// attempt).
async fn attempt(running: Running<'_>, timer: &dyn Timer) -> Done {
    let Running {
        step,
        agent,
        task,
        attempt,
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
    Done {
        step,
        agent,
        task,
        attempt,
        result,
    }
}

/// What a dispatch hands the coordinator, kept between dispatches for the
/// buffers' capacity.
#[derive(Default)]
struct Batch {
    tasks: Vec<Task>,
    outcomes: Vec<AssignOutcome>,
}

/// An attempt handed to its agent and not answered yet.
struct InFlight {
    step: StepRef,
    attempt: u32,
    /// Drops the agent's future at once (a timeout, a lost agent, a cancelled run).
    abort: AbortHandle,
}

/// The executor's books on one run: the tasks the coordinator holds for its steps.
/// The run holds the same bindings ([`Run::task`]), so a resumed run needs no scan;
/// these maps are the executor's index of them, by task.
#[derive(Default)]
struct Books<'s> {
    /// Tasks waiting in the coordinator for an agent, a claim or normal mode, with
    /// their step and since when.
    waiting: BTreeMap<TaskId, (StepRef, Timestamp)>,
    /// Attempts in flight, by task.
    running: BTreeMap<TaskId, InFlight>,
    notices: Vec<Notice>,
    /// Attempts started and not yet handed to their agents.
    launched: Vec<Launch<'s>>,
}

/// What woke the executor.
enum Wake {
    Cancelled,
    Answered(Result<Done, Aborted>),
    Noticed,
    Timer,
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
    spawner: Option<Arc<dyn Spawn>>,
    concurrency: usize,
    next_task: AtomicU64,
    observer: Option<Arc<dyn RunObserver>>,
    patience: Option<Duration>,
    count_interrupted: bool,
    live: Arc<LiveRuns>,
}

/// The ids of the runs an executor drives now (see [`ExecutorError::RunInProgress`]).
type LiveRuns = parking_lot::Mutex<BTreeSet<Arc<str>>>;

/// A run's id held among its executor's live runs, from the call that starts or
/// resumes the run until its future finishes or is dropped, whichever comes first:
/// dropping this frees the id.
struct LiveId {
    live: Arc<LiveRuns>,
    id: Arc<str>,
}

impl Drop for LiveId {
    fn drop(&mut self) {
        self.live.lock().remove(&self.id);
    }
}

/// Stops watching a run's group when its drive ends, however it ends.
struct Unwatch<'a>(&'a Coordinator, &'a str);

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.0.unwatch(self.1);
    }
}

impl Executor {
    /// An executor assigning through `coordinator` and waiting through `timer`.
    ///
    /// Its task ids start at 2^40, or above the highest id the coordinator was ever
    /// given if that is higher: an executor made over a coordinator restored from its
    /// checkpoint never issues a finished task's id again.
    pub fn new(coordinator: Arc<Coordinator>, timer: impl Timer + 'static) -> Self {
        let first = coordinator
            .with_core(|c| c.highest_task_id())
            .map_or(1 << 40, |id| id.get().saturating_add(1).max(1 << 40));
        Executor {
            coordinator,
            agents: BTreeMap::new(),
            timer: Arc::new(timer),
            spawner: None,
            concurrency: 16,
            next_task: AtomicU64::new(first),
            observer: None,
            patience: None,
            count_interrupted: false,
            live: Arc::default(),
        }
    }

    /// How long a step may wait in the coordinator (for an agent with room, behind a
    /// claim, for normal mode) before it is given up, with what it waited for in the
    /// reason, and its run's failure handling (rollback) runs. The default waits as
    /// long as it takes: capacity comes back, conflicts climb the escalation ladder
    /// to a decision, safe mode ends.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = Some(patience);
        self
    }

    /// Runs every attempt on the host's runtime through `spawner` (one task per
    /// attempt), so that CPU work in one agent does not stall the others or the
    /// executor. Without one, the executor polls the agents' futures itself.
    pub fn with_spawner(mut self, spawner: impl Spawn + 'static) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// Whether an attempt interrupted by a restart uses up one of its step's
    /// attempts (default: no; it is made again as the same attempt).
    pub fn with_interrupted_attempts_counted(mut self, counted: bool) -> Self {
        self.count_interrupted = counted;
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

    /// At most `n` steps of one run run or wait in the coordinator at once (default
    /// 16; at least 1).
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

    /// The coordinator the executor assigns through.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    fn now(&self) -> Timestamp {
        self.coordinator.now()
    }

    /// Runs `workflow` as run `id` (also the coordinator's group, so separation of
    /// duties holds across its steps), with `seed` for retry jitter. Await the future
    /// for the finished run (statuses, outputs, the evidence history); take its
    /// [`handle`](RunFuture::handle) first to cancel it or watch its progress.
    ///
    /// A step that cannot start now waits in the coordinator like any task (the
    /// ledger's fair queue with aging and reservations, behind a colliding claim, or
    /// for normal mode) and starts when it can, whoever frees the room. It fails for
    /// want of an agent only when no registered agent could ever take it, when a
    /// conflict it waits on is denied, or past the [`patience`](Self::with_patience)
    /// the host set. Several runs may share one executor and one fleet.
    ///
    /// # Run ids
    /// `id` must be unique among the live runs of this executor, and of every
    /// executor sharing its coordinator: the id is the run's group, and the
    /// coordinator keeps one mailbox of notices per group. A run is live from this
    /// call until its future finishes (succeeded, failed or cancelled) or is dropped;
    /// then its id may be used again. This executor refuses an id live in it; runs of
    /// two executors over one coordinator must be kept apart by the host. Agents that
    /// keep records of a step's effect past the end of its run need an id per run
    /// (see [`WorkItem`]).
    ///
    /// # Errors
    /// The future ends at once, having changed nothing, with
    /// [`ExecutorError::RunInProgress`] if a run with this `id` is live in this
    /// executor, or [`WorkflowError::EmptyRunId`] if `id` is empty or only
    /// whitespace. Otherwise [`ExecutorError`] if the coordinator refuses an operation
    /// outright (a bug, not a step failure).
    pub fn run(&self, workflow: &Workflow, id: &str, seed: u64) -> RunFuture<'_> {
        match self.admit(id) {
            Ok(live) => {
                let run = workflow.start_run(id, seed, self.now());
                self.drive_future(run, false, live)
            }
            Err(e) => RunFuture::refused(e),
        }
    }

    /// As [`run`](Self::run), for an executor in an `Arc`: the future owns what it
    /// needs, so it can be spawned (`tokio::spawn`). The same rule on run ids holds.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_owned(
        self: Arc<Self>,
        workflow: &Workflow,
        id: &str,
        seed: u64,
    ) -> RunFuture<'static> {
        match self.admit(id) {
            Ok(live) => {
                let run = workflow.start_run(id, seed, self.now());
                self.drive_owned(run, false, live)
            }
            Err(e) => RunFuture::refused(e),
        }
    }

    /// Holds `id` among the live runs, or says why a run under it may not start.
    fn admit(&self, id: &str) -> Result<LiveId, ExecutorError> {
        if id.trim().is_empty() {
            return Err(WorkflowError::EmptyRunId { run: id.to_owned() }.into());
        }
        let id: Arc<str> = Arc::from(id);
        if !self.live.lock().insert(Arc::clone(&id)) {
            return Err(ExecutorError::RunInProgress {
                run: id.to_string(),
            });
        }
        Ok(LiveId {
            live: Arc::clone(&self.live),
            id,
        })
    }

    /// Continues a run restored from a snapshot ([`Run::restore`]) after a crash.
    ///
    /// Take the run's and the coordinator's checkpoints whenever it suits (an
    /// observer call is a good moment); they need not be taken together. The run's
    /// snapshot names the coordinator task of each waiting or running step
    /// ([`Run::task`]), and `resume` reconciles the two:
    ///
    /// - a step that was **running** is not a failure of the step or its agent: the
    ///   agent is asked whether the work finished ([`Agent::recover`]); if it did, the
    ///   step is credited with its output and not run again; if not, the attempt is
    ///   made again without using one up (unless
    ///   [`with_interrupted_attempts_counted`](Self::with_interrupted_attempts_counted)),
    ///   its task released without a mark against the agent;
    /// - a step **waiting** in the coordinator goes on waiting in its place; one
    ///   assigned whose attempt never reached its agent starts now;
    /// - a task the coordinator holds for the run that no step names (a coordinator
    ///   checkpoint newer than the run's) is withdrawn or released.
    ///
    /// A run's tasks are those of its group, the run's id: the rule on run ids of
    /// [`run`](Self::run) holds, and this executor refuses to resume a run whose id
    /// is live in it (the run itself, still going, or another run under its id).
    /// Task ids go on above every id the coordinator was ever given
    /// ([`Core::highest_task_id`](crate::coordinator::Core::highest_task_id)).
    ///
    /// # Errors
    /// As [`run`](Self::run): [`ExecutorError::RunInProgress`] if a run with the
    /// run's id is live in this executor, [`WorkflowError::EmptyRunId`] if the id is
    /// empty or only whitespace (both at once, having changed nothing).
    pub fn resume(&self, run: Run) -> RunFuture<'_> {
        match self.admit(run.id()) {
            Ok(live) => self.drive_future(run, true, live),
            Err(e) => RunFuture::refused(e),
        }
    }

    /// As [`resume`](Self::resume), for an executor in an `Arc`: the future owns what
    /// it needs, so it can be spawned, and its [`handle`](RunFuture::handle) cancels
    /// or watches the resumed run as for [`run_owned`](Self::run_owned).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use concord::coordinator::Coordinator;
    /// # use concord::workflow::{Executor, Run, SimulatedTimer, StepSpec, Workflow};
    /// # use concord::{ManualClock, Timestamp};
    /// # let clock = ManualClock::new(Timestamp::from_secs(1_000));
    /// # let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    /// # let workflow = Workflow::builder("w").step(StepSpec::new("a")).build()?;
    /// # let snapshot = workflow.start_run("deploy-7", 7, Timestamp::from_secs(1_000)).snapshot();
    /// let executor = Arc::new(Executor::new(coordinator, SimulatedTimer::new(clock)));
    /// // After a restart: the run's last snapshot, restored against its workflow.
    /// let run = Run::restore(&workflow, snapshot)?;
    /// let resumed = Arc::clone(&executor).resume_owned(run);
    /// let handle = resumed.handle();
    /// // `resumed` is `'static`: hand it to `tokio::spawn` or any runtime.
    /// handle.cancel();
    /// let run = futures::executor::block_on(resumed)?;
    /// assert!(run.is_finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`resume`](Self::resume).
    pub fn resume_owned(self: Arc<Self>, run: Run) -> RunFuture<'static> {
        match self.admit(run.id()) {
            Ok(live) => self.drive_owned(run, true, live),
            Err(e) => RunFuture::refused(e),
        }
    }

    fn drive_future(&self, run: Run, resumed: bool, live: LiveId) -> RunFuture<'_> {
        let handle = RunHandle::default();
        let control = handle.clone();
        RunFuture {
            handle,
            inner: Box::pin(self.drive(run, control, resumed, live)),
        }
    }

    fn drive_owned(self: Arc<Self>, run: Run, resumed: bool, live: LiveId) -> RunFuture<'static> {
        let handle = RunHandle::default();
        let control = handle.clone();
        RunFuture {
            handle,
            inner: Box::pin(async move { self.drive(run, control, resumed, live).await }),
        }
    }

    /// Drives `run` to its end; `live` holds its id among the live runs until then,
    /// or until this future is dropped.
    async fn drive(
        &self,
        mut run: Run,
        handle: RunHandle,
        resumed: bool,
        live: LiveId,
    ) -> Result<Run, ExecutorError> {
        // Held to the end: the id is freed only after the group is unwatched below.
        let _live = live;
        // Everything is news except what a restored run's snapshot already held.
        let mut seen = run.restored_history();
        let group: Arc<str> = Arc::from(run.id());
        self.coordinator.watch(&group);
        let _unwatch = Unwatch(&self.coordinator, &group);
        let mut books = Books::default();
        let mut result = Ok(());
        if resumed {
            result = self.recover(&mut run, &group, &mut books).await;
        }
        if result.is_ok() {
            result = self
                .drive_observed(&mut run, &mut seen, &handle, &group, &mut books)
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
        handle.report(&run, &books);
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
                self.cancel_run(run, books, now);
                return Ok(());
            }
            // Timeouts and back-offs; an attempt that timed out is dropped at once,
            // so that a step never has two attempts in flight.
            let flying = books.running.len();
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
            if books.running.len() < flying {
                // Attempts were aborted (timed out, or their agent left service): their
                // agents' futures go now, not on the set's next turn, since the same
                // steps' next attempts may be launched below.
                self.settle_ready(run, books, &mut inflight)?;
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
            if run.is_finished() && books.running.is_empty() && books.waiting.is_empty() {
                return Ok(());
            }
            // A step given up may have made others ready (its failure handlers):
            // dispatch them before waiting.
            if books.running.len() + books.waiting.len() < self.concurrency {
                run.ready_first(books.waiting.len() + 1, &mut ready);
                if ready.iter().any(|&step| run.task(step).is_none()) {
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
                && run.next_ready().is_none()
            {
                // Nothing ready, running, waiting or timed: nothing can change.
                return Ok(());
            }
            let mut sleep = deadline.map(|at| self.timer.sleep_until(at));
            let coordinator = &self.coordinator;
            let notices = &mut books.notices;
            let wake = futures::future::poll_fn(|cx| {
                if handle.poll_cancelled(cx).is_ready() {
                    return Poll::Ready(Wake::Cancelled);
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
                            .filter_map(|d| d.as_ref().ok().map(|d| d.task))
                            .collect();
                        self.on_notices(run, books, &in_hand, self.now())?;
                    }
                    for done in answers.drain(..).flatten() {
                        if books.running.contains_key(&done.task) {
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
                Notice::Lost { task, .. } if in_hand.contains(&task) => {}
                Notice::Requeued { task, .. } if in_hand.contains(&task) => {
                    // Its next start, if the coordinator made one, is released when
                    // its notice comes: no step waits for it.
                    let _ = self.coordinator.cancel(task);
                }
                Notice::Lost { task, agent } => {
                    if let Some(flight) = books.running.remove(&task) {
                        flight.abort.abort();
                        let failure = StepOutcome::failure(format!("{agent} left service"));
                        let said =
                            run.finish_attempt(flight.step, agent, flight.attempt, failure, now);
                        settled(said)?;
                    }
                }
                Notice::Requeued { task, agent } => match books.running.remove(&task) {
                    Some(flight) => {
                        flight.abort.abort();
                        // The same task waits again: the attempt is void, not failed.
                        run.interrupt(flight.step, format!("{agent} left service"), now)?;
                        run.bind(flight.step, task)?;
                        books.waiting.insert(task, (flight.step, now));
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
    /// agents' futures at once, their tasks ended as failures.
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
                self.end_task(task, false, None);
            }
        }
    }

    /// Cancels the run: waiting tasks withdrawn, running ones released (their futures
    /// are already dropped), every unfinished step `Cancelled`.
    fn cancel_run(&self, run: &mut Run, books: &mut Books<'_>, now: Timestamp) {
        let cancelled = run.cancel(now);
        tracing::info!(workflow.run = run.id(), steps = cancelled, "run cancelled");
        for (task, _) in std::mem::take(&mut books.waiting) {
            self.withdraw(task);
        }
        for (task, flight) in std::mem::take(&mut books.running) {
            flight.abort.abort();
            self.release(task);
        }
        books.launched.clear();
    }

    /// Takes back a task the run no longer waits for: withdrawn if it still waits, or,
    /// assigned this very moment, ended unstarted.
    fn withdraw(&self, task: TaskId) {
        if self.coordinator.cancel(task).is_err() {
            self.release(task);
        }
    }

    /// Ends a running task without an outcome; one the coordinator no longer holds
    /// (taken back from a lost agent meanwhile) needs nothing.
    fn release(&self, task: TaskId) {
        if let Err(e) = self.coordinator.release(task) {
            tracing::debug!(task.id = %task, error = %e, "task not released");
        }
    }

    /// Ends a running task with an outcome; one the coordinator no longer holds
    /// (taken back from a lost agent meanwhile) needs nothing.
    fn end_task(&self, task: TaskId, success: bool, usage: Option<crate::resource::Resources>) {
        if let Err(e) = self.coordinator.complete(task, success, usage) {
            tracing::debug!(task.id = %task, error = %e, "task not completed");
        }
    }

    /// Assigns ready `steps` in one coordinator batch (one look at the fleet, and
    /// separation of duties checked across the batch): an assigned step starts, one
    /// that cannot start now waits in the coordinator (bound to its task), one no
    /// agent could ever take is given up with the coordinator's explanation.
    fn dispatch<'s>(
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
    fn start<'s>(
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
    fn settle_ready<F>(
        &self,
        run: &mut Run,
        books: &mut Books<'_>,
        inflight: &mut FuturesUnordered<F>,
    ) -> Result<(), ExecutorError>
    where
        F: std::future::Future<Output = Result<Done, futures::future::Aborted>>,
    {
        // An empty set is not polled: agents that answer at once leave it empty.
        while !inflight.is_empty() {
            let Some(Some(done)) = inflight.next().now_or_never() else {
                break;
            };
            if let Ok(done) = done {
                self.settle(run, books, done)?;
            }
        }
        Ok(())
    }

    fn settle(
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
        if !books.running.is_empty() {
            books.running.remove(&task);
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
                        },
                        usage,
                        false,
                    ),
                    Outcome::Failed { reason, .. } => (
                        StepOutcome {
                            success: false,
                            outputs,
                            reason: Some(reason),
                        },
                        usage,
                        false,
                    ),
                    Outcome::Skipped { reason } => (
                        StepOutcome {
                            success: true,
                            outputs,
                            reason: Some(reason),
                        },
                        usage,
                        true,
                    ),
                }
            }
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
        match said {
            Ok(()) => self.end_task(task, success, usage),
            // Too late: the attempt timed out, which the next tick records.
            Err(WorkflowError::Late { .. }) => self.end_task(task, false, None),
            Err(e) => {
                settled(Err(e))?;
                self.release(task);
            }
        }
        tracing::debug!(workflow.run = run.id(), step = ?run.name(step), agent.id = %agent, success, "step finished");
        Ok(())
    }

    /// Reconciles a restored run with the coordinator (see [`resume`](Self::resume)).
    async fn recover<'s>(
        &'s self,
        run: &mut Run,
        group: &Arc<str>,
        books: &mut Books<'s>,
    ) -> Result<(), ExecutorError> {
        let assignments = self.coordinator.assignments();
        let waiting = self.coordinator.waiting();
        // Task ids go on above every id the coordinator holds, for any run: the
        // runs resumed beside this one still hold theirs.
        // And above every id it was ever given: a finished task's id issued again
        // would be a different task under an id the host's records already hold.
        let highest = self.coordinator.with_core(|c| c.highest_task_id());
        let above = assignments
            .iter()
            .map(|a| a.task.id())
            .chain(waiting.iter().map(|w| w.task.id()))
            .chain(highest)
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
                let asked = std::panic::AssertUnwindSafe(transport.recover(work))
                    .catch_unwind()
                    .await;
                answer = asked.ok().and_then(Result::ok).flatten();
            }
            let now = self.now();
            if let Some(task) = task {
                held.remove(&task);
            }
            match answer {
                Some(output) => {
                    tracing::info!(workflow.run = run.id(), step = ?run.name(step), "interrupted attempt had finished");
                    let done = Done {
                        step,
                        agent,
                        task: task.unwrap_or(TaskId::new(0)),
                        attempt,
                        result: Ok(output),
                    };
                    self.settle(run, books, done)?;
                }
                None if self.count_interrupted => {
                    let failure = StepOutcome::failure("interrupted by restart");
                    settled(run.finish_attempt(step, agent, attempt, failure, now))?;
                    if let Some(task) = task {
                        self.end_task(task, false, None);
                    }
                }
                None => {
                    run.interrupt(step, "interrupted by restart", now)?;
                    if let Some(task) = task {
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

/// What the run said to a finished attempt, for the executor: an attempt that timed
/// out or was cancelled meanwhile is no error, the run already decided.
fn settled(said: Result<(), WorkflowError>) -> Result<(), ExecutorError> {
    match said {
        Ok(())
        | Err(
            WorkflowError::NotRunning { .. }
            | WorkflowError::WrongAgent { .. }
            | WorkflowError::StaleAttempt { .. }
            | WorkflowError::Late { .. },
        ) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What the run said to a step given up: one no longer ready (cancelled meanwhile)
/// is no error.
fn given_up(said: Result<(), WorkflowError>) -> Result<(), ExecutorError> {
    match said {
        Ok(()) | Err(WorkflowError::NotReady { .. }) => Ok(()),
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
