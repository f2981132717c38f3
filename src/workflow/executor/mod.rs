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
//!
//! The executor's handles, its settings and the books it keeps on a run live here;
//! the rest is split by concern: [`drive`] (the loop that drives one run: waking on
//! answers, notices, the timer or a cancel, and the waits it gives up),
//! [`dispatch`] (a step's attempt from its dispatch to the coordinator, through its
//! agent, to the answer credited to the run), [`recover`] (reconciling a restored
//! run with the coordinator) and [`live`] (the ids of the runs live in an executor).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{AbortHandle, Aborted, BoxFuture};
use futures::task::AtomicWaker;

use super::run::{Run, RunEvent, RunOutcome};
use super::{StepRef, Workflow, WorkflowError};
use crate::agent::{Agent, AgentError, WorkOutput};
use crate::assignment::Explanation;
use crate::clock::Timestamp;
use crate::coordinator::{AssignOutcome, Coordinator, CoordinatorError, Notice};
use crate::id::{AgentId, TaskId};
use crate::task::Task;
pub use crate::timer::{SimulatedTimer, Spawn, Timer};

mod dispatch;
mod drive;
mod live;
mod recover;

use live::{LiveId, LiveRuns};

/// An error that stops a run's drive or refuses to start it (as opposed to a step
/// failing, which the run records and the workflow handles).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The run was refused at its start ([`WorkflowError::EmptyRunId`],
    /// [`WorkflowError::InvalidText`]), or refused a
    /// transition the executor made (a bug in the executor or a workflow changed
    /// under it).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// A run with this id is live in this executor, or in another executor over the
    /// same coordinator: started or resumed, and its future neither finished nor
    /// dropped (or the host watches the group itself). The id is the run's group in the
    /// coordinator, which keeps one mailbox of notices per group, so two live runs
    /// under one id would take each other's notices and wait forever. Nothing was
    /// started and the live run is untouched; the id is free again once that run
    /// ends.
    #[error("run {run:?} is already live on this coordinator; live runs need distinct ids")]
    RunInProgress {
        /// The id.
        run: String,
    },
    /// The coordinator still holds tasks in the group of the id a new run was to
    /// start under: a run under this id did not end (its executor crashed or its
    /// future was dropped, and the coordinator's checkpoint outlived the run's), and
    /// its tasks would hold their agents' slots and keep the new run's steps waiting
    /// behind them for good. Nothing was started and the tasks are untouched:
    /// [`resume`](Executor::resume) the run from its snapshot, which asks its agents
    /// about its interrupted work and gives back what no step names; with the
    /// snapshot lost, resume a fresh start of it
    /// ([`Workflow::start_run`](super::Workflow::start_run)), which gives them all
    /// back. (Work an executor spawned for a dropped run keeps its task until the
    /// runtime has dropped it; the id is free once it has.)
    #[error(
        "the coordinator still holds {} for run {run:?} (first {}), left by a run under this id that did not end; resume that run instead of starting it again",
        crate::text::plural(tasks.len(), "task", "tasks"),
        tasks.first().map_or_else(String::new, ToString::to_string)
    )]
    UnfinishedRun {
        /// The id.
        run: String,
        /// The tasks the coordinator holds in the run's group, waiting or running,
        /// ascending.
        tasks: Vec<TaskId>,
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
    ///
    /// [`StepStatus::BackingOff`]: super::run::StepStatus::BackingOff
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
    /// and their tasks released, and every unfinished step ends `Cancelled`.
    /// Cancelling a finished run does nothing.
    ///
    /// Work the executor polls itself is dropped at once. Work handed to a spawner
    /// ([`Executor::with_spawner`]) stops at its next poll on the host's runtime; its
    /// task is released only then, so that the agent's slot never goes to another
    /// step while the agent is still at the cancelled one. The same holds for an
    /// attempt that times out.
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
}

/// A run being driven: a future of the finished [`Run`], with its [`RunHandle`].
///
/// Await it (or spawn the one [`Executor::run_owned`] makes); take the handle first
/// to cancel the run or watch it from elsewhere.
///
/// Dropped before it is ready (a timeout around it, a `select!`, its task aborted),
/// it gives back what the coordinator holds for the run: waiting tasks are
/// withdrawn, the agents' work is dropped, and running tasks are released (spawned
/// work's once the runtime has dropped it). The run is not ended: it holds its
/// steps as they were, and a snapshot of it may be
/// [`resume`](Executor::resume)d, its interrupted attempts asked of their agents as
/// after a crash. To end a run, cancel it through its handle.
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
    /// The coordinator's task for the attempt: none for an attempt a restart
    /// interrupted whose task the coordinator does not hold for the run.
    task: Option<TaskId>,
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

/// An attempt its agent is still working on.
struct Running<'a> {
    step: StepRef,
    agent: AgentId,
    task: TaskId,
    attempt: u32,
    work: BoxFuture<'a, Result<WorkOutput, AgentError>>,
    /// Stops the agent's work itself, leaving the attempt to end with what the work
    /// ended with: an answer, if it had one, or an error.
    work_abort: dispatch::StopHandle,
    /// When the work was spawned: resolves once the spawned work is dropped.
    stopped: Option<dispatch::Stopped>,
    timeout: Option<(Duration, Timestamp)>,
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
    /// Stops the agent's work but lets the attempt end with what the work ended
    /// with (see [`Running::work_abort`]): for an interrupted task, whose answer, if
    /// the work got that far, wins.
    work_abort: dispatch::StopHandle,
    /// The coordinator interrupted its task: its agent left service (see
    /// [`Coordinator::drive`](crate::coordinator::Coordinator::drive)).
    interrupted: bool,
    /// When the work was spawned: resolves once the spawned work, which stops at its
    /// next poll after the abort, is dropped.
    stopped: Option<dispatch::Stopped>,
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
    /// Attempts given up whose spawned work has not stopped yet (see [`Stopping`]).
    stopping: Vec<Stopping>,
    /// An attempt the executor polls itself was aborted: its agent's future stays in
    /// the set of running attempts until the set drops it, which the drive makes
    /// happen before it hands out more work.
    aborted: bool,
    /// The tasks of such attempts timed out, to end as failed once their futures
    /// are gone.
    to_end: Vec<TaskId>,
}

/// An attempt the executor gave up (timed out by the run, or its agent left service)
/// whose spawned work lives on until the runtime next polls it. Until then its step
/// gets no other attempt, so that a step never has two at once, and a task the run
/// still holds for it is not ended, so that its agent's slot stays taken.
struct Stopping {
    step: StepRef,
    /// The task to end as failed once the work has stopped, if the run holds it.
    task: Option<TaskId>,
    /// For an interrupted task whose work ended without an answer: its agent and
    /// attempt, to hand the task back instead of ending it.
    hand_back: Option<(AgentId, u32)>,
    stopped: dispatch::Stopped,
}

impl Books<'_> {
    /// Stops the attempt of `task`, whose agent left service (the coordinator took
    /// the task back): its agent's future dropped if in flight, or not handed to the
    /// agent at all if only launched (started and handed back in one batch of
    /// notices: handing it over would set the agent to work the coordinator no longer
    /// counts, beside whatever it is given next). Returns its step and attempt, or
    /// `None` if it has neither (its answer came first).
    fn stop_attempt(&mut self, task: TaskId) -> Option<(StepRef, u32)> {
        if let Some(flight) = self.running.remove(&task) {
            flight.abort.abort();
            self.aborted |= flight.stopped.is_none();
            self.let_go(flight.step, None, flight.stopped, None);
            return Some((flight.step, flight.attempt));
        }
        let i = self.launched.iter().position(|l| l.task == task)?;
        let launch = self.launched.remove(i);
        Some((launch.step, launch.attempt))
    }

    /// Whether `step` has an attempt given up that has not stopped yet.
    fn stopping(&self, step: StepRef) -> bool {
        self.stopping.iter().any(|s| s.step == step)
    }

    /// Keeps an aborted attempt of `step` among the stopping ones if its work was
    /// spawned; `task` is ended once it stops, or handed back when `hand_back` names
    /// its agent and attempt (see [`Stopping::hand_back`]). Returns the task when
    /// there is nothing to wait for (the executor dropped the work itself).
    fn let_go(
        &mut self,
        step: StepRef,
        task: Option<TaskId>,
        stopped: Option<dispatch::Stopped>,
        hand_back: Option<(AgentId, u32)>,
    ) -> Option<TaskId> {
        match stopped {
            Some(stopped) => {
                self.stopping.push(Stopping {
                    step,
                    task,
                    hand_back,
                    stopped,
                });
                None
            }
            None => task,
        }
    }
}

/// What woke the executor.
enum Wake {
    Cancelled,
    /// The spawned work of an attempt given up has stopped: its step may have
    /// another, and its task (if the run holds one) can end, or be handed back.
    Stopped(Stopping),
    Answered(Result<Done, Aborted>),
    Noticed,
    Timer,
}

/// A step of a workflow that no agent registered with the coordinator could ever take
/// (see [`Executor::unstaffed`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Unstaffed {
    /// The step's name.
    pub step: String,
    /// Why no agent could take it: each agent counted under the first lasting reason
    /// it fails (a role, a capability, a resource its capacity could never hold).
    pub explanation: Explanation,
}

impl fmt::Display for Unstaffed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no agent can take step `{}`: {}",
            self.step, self.explanation
        )
    }
}

/// Sees every change of a run as the [`Executor`] makes it: the new [`RunEvent`]s, in
/// order, with the run they happened to (so the host can journal them, show progress,
/// or persist [`Run::snapshot`] and later [`Executor::resume`] after a crash).
///
/// Called on the executor's task, between steps, and before an attempt is handed to
/// its agent. A host that resumes runs after a crash persists here, before it
/// returns: the run's [`Run::snapshot`] (and the coordinator's journal, written
/// first), so that what it stored is never behind what an agent was asked to do. An
/// observer that hands the snapshot to another thread to write loses that: after a
/// crash, steps already done run again. Anything else (progress, metrics) is better
/// handed to a channel or a buffer, as the executor waits for the call. Every event
/// is delivered exactly once.
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
    /// Where the steps' task ids come from: the coordinator's sequence, shared by
    /// its executors, or one of this executor's own ([`with_task_ids`](Self::with_task_ids)).
    next_task: Arc<AtomicU64>,
    observer: Option<Arc<dyn RunObserver>>,
    patience: Option<Duration>,
    count_interrupted: bool,
    live: Arc<LiveRuns>,
}

impl Executor {
    /// An executor assigning through `coordinator` and waiting through `timer`.
    ///
    /// Its task ids start at 2^40, or above the highest id the coordinator was ever
    /// given if that is higher: an executor made over a coordinator restored from its
    /// checkpoint never issues a finished task's id again. Executors over one
    /// coordinator draw their ids from one sequence, so a host may make one per run.
    pub fn new(coordinator: Arc<Coordinator>, timer: impl Timer + 'static) -> Self {
        let first = coordinator
            .with_core(|c| c.highest_task_id())
            .map_or(1 << 40, |id| id.get().saturating_add(1).max(1 << 40));
        let next_task = Arc::clone(coordinator.executor_task_ids());
        next_task.fetch_max(first, Ordering::SeqCst);
        Executor {
            coordinator,
            agents: BTreeMap::new(),
            timer: Arc::new(timer),
            spawner: None,
            concurrency: 16,
            next_task,
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
    ///
    /// An attempt given up (its run cancelled, its timeout passed) keeps its task,
    /// and so its agent's slot, until the spawned work has been dropped: the runtime
    /// drops it at its next poll.
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
    ///
    /// The coordinator places a step on any registered agent that fits it: a step
    /// placed on an agent this executor has no transport to is abandoned, its reason
    /// naming the agent. An executor should reach every agent
    /// that can take its steps; to keep a workflow to some agents, give its steps a
    /// role or capability only those agents have.
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
    /// takes the next. Pick a range your other tasks, and the other executors over
    /// this coordinator, do not use: this executor leaves the sequence they share.
    pub fn with_task_ids(mut self, first: u64) -> Self {
        self.next_task = Arc::new(AtomicU64::new(first));
        self
    }

    /// The coordinator the executor assigns through.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    fn now(&self) -> Timestamp {
        self.coordinator.now()
    }

    /// The steps of `workflow` that no agent registered with the coordinator now could
    /// ever take, in the workflow's order, each with why: a check to make before
    /// [`run`](Self::run). A run goes on without it, and a step nobody could take is
    /// given up when its turn comes ("no agent can take step"), after the steps
    /// before it have run: on a fleet with no `framework` agent, the deployment
    /// runbook deploys, screenshots and documents, then gives up the hand-off. Each
    /// step is read as the run reads it (its kind, its name as the description, its
    /// stated needs), analyzed and predicted by the coordinator
    /// ([`Coordinator::unplaceable`]). Agents away from service count as able to take
    /// a step; agents the host registers later are not known yet.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use concord::coordinator::Coordinator;
    /// use concord::workflow::{Executor, SimulatedTimer, runbooks};
    /// use concord::{AgentId, AgentProfile, ManualClock, Role, Timestamp};
    ///
    /// let clock = ManualClock::new(Timestamp::from_secs(1));
    /// let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    /// for (id, role) in [(1, "ops"), (2, "qa")] {
    ///     let profile = AgentProfile::new(AgentId::new(id), role).with_role(Role::new(role)?);
    ///     coordinator.register_agent(profile)?;
    /// }
    /// let executor = Executor::new(coordinator, SimulatedTimer::new(clock));
    /// let missing = executor.unstaffed(&runbooks::deployment())?;
    /// assert_eq!(missing.len(), 1);
    /// assert_eq!(
    ///     missing[0].to_string(),
    ///     "no agent can take step `handoff`: 0 of 2 agents fit: 2 lack role `framework`"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ExecutorError::Coordinator`] if the coordinator refuses a step's task as
    /// [`Coordinator::unplaceable`] says (the analyzer's error).
    pub fn unstaffed(&self, workflow: &Workflow) -> Result<Vec<Unstaffed>, ExecutorError> {
        let mut unstaffed = Vec::new();
        for (_, spec) in workflow.steps() {
            let task = Task::new(TaskId::new(0), spec.kind(), spec.name())
                .with_requirements(spec.requirements());
            if let Some(explanation) = self.coordinator.unplaceable(&task)? {
                unstaffed.push(Unstaffed {
                    step: spec.name().to_owned(),
                    explanation,
                });
            }
        }
        Ok(unstaffed)
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
    /// then its id may be used again. This executor refuses an id live in it or in
    /// another executor over the same coordinator. Agents that
    /// keep records of a step's effect past the end of its run need an id per run
    /// (see [`WorkItem`]).
    ///
    /// A new run needs its id's group empty in the coordinator: tasks left there by a
    /// run under the same id that never ended (a crash after the coordinator's
    /// checkpoint, with the run's own lost) would hold agents' slots that nobody
    /// gives back, and the new run would wait behind them forever. Such a run is
    /// [`resume`](Self::resume)d, not run again.
    ///
    /// # Errors
    /// The future ends at once, having changed nothing, with
    /// [`ExecutorError::RunInProgress`] if a run with this `id` is live in this
    /// executor or another over its coordinator, [`ExecutorError::UnfinishedRun`]
    /// if the coordinator still holds tasks in the group `id` (see above),
    /// [`WorkflowError::EmptyRunId`] if
    /// `id` is empty or only whitespace, or [`WorkflowError::InvalidText`] if it is
    /// longer than [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes or holds a
    /// control or invisible character. Otherwise [`ExecutorError`] if the coordinator
    /// refuses an operation outright (a bug, not a step failure).
    ///
    /// [`WorkItem`]: crate::agent::WorkItem
    pub fn run(&self, workflow: &Workflow, id: &str, seed: u64) -> RunFuture<'_> {
        match self.admit_fresh(id) {
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
        match self.admit_fresh(id) {
            Ok(live) => {
                let run = workflow.start_run(id, seed, self.now());
                self.drive_owned(run, false, live)
            }
            Err(e) => RunFuture::refused(e),
        }
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
    /// What happened after the run's checkpoint is not in it: a step that started
    /// later (or was waiting in it and ran later, under a newer coordinator
    /// checkpoint that no longer holds its task) is dispatched again, and no agent is
    /// asked first, as the run does not know which one had it. So write the run's
    /// checkpoint at every observer call (the coordinator's may lag), or have agents
    /// recognize work they did by its run, step and attempt
    /// ([`WorkItem`](crate::agent::WorkItem) carries them).
    ///
    /// A run's tasks are those of its group, the run's id: the rule on run ids of
    /// [`run`](Self::run) holds, and this executor refuses to resume a run whose id
    /// is live in it (the run itself, still going, or another run under its id).
    /// Task ids go on above every id the coordinator was ever given
    /// ([`Core::highest_task_id`](crate::coordinator::Core::highest_task_id)), and
    /// above every id the run names from the moment `resume` is called, before the
    /// future is first polled: with a coordinator checkpoint older than the run's
    /// snapshot, those ids are the run's alone. So resume every run before starting
    /// new ones on a restored coordinator: a run started and polled first may be
    /// given an id the run's snapshot names, and an agent that answers
    /// [`Agent::recover`] by task id would credit the old step with the new work.
    ///
    /// # Errors
    /// As [`run`](Self::run): [`ExecutorError::RunInProgress`] if a run with the
    /// run's id is live on the coordinator, [`WorkflowError::EmptyRunId`] or
    /// [`WorkflowError::InvalidText`] for an id no run may have (both at once, having
    /// changed nothing).
    pub fn resume(&self, run: Run) -> RunFuture<'_> {
        match self.admit(run.id()) {
            Ok(live) => {
                self.reserve_ids_of(&run);
                self.drive_future(run, true, live)
            }
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
            Ok(live) => {
                self.reserve_ids_of(&run);
                self.drive_owned(run, true, live)
            }
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
