//! The run state machine: one execution of a [`Workflow`].
//!
//! Owns [`Run`], its statuses, outcomes, evidence events and snapshots. Sans-I/O and
//! deterministic: every method takes the current time, nothing reads a clock, and the
//! same calls give the same run, bit for bit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::definition::RunCondition;
use super::error::WorkflowError;
use super::retry::splitmix64;
use super::{StepRef, Workflow};
use crate::clock::Timestamp;
use crate::id::{AgentId, TaskId};

mod snapshot;
pub use snapshot::{RUN_SNAPSHOT_VERSION, RunSnapshot, StepState};

/// Where a step is in its life.
///
/// `Pending -> Ready -> Running -> Succeeded`, or `Running -> BackingOff -> Ready` for a
/// failed attempt that will be retried, or `Running -> Failed` once attempts run out.
/// `Pending -> Skipped` when its [`RunCondition`] does not hold; any non-terminal status
/// `-> Cancelled` when the run is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Waiting for dependencies.
    Pending,
    /// May be dispatched now.
    Ready,
    /// An agent is working on it.
    Running,
    /// An attempt failed; waits for its backoff before it is ready again.
    BackingOff,
    /// Done (terminal).
    Succeeded,
    /// Every attempt failed (terminal).
    Failed,
    /// Its run condition did not hold (terminal).
    Skipped,
    /// The run was cancelled before it finished (terminal).
    Cancelled,
}

impl StepStatus {
    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }
}

/// How a finished run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// No step failed (steps may have been skipped).
    Succeeded,
    /// At least one step failed, even if a handler then ran.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// What an agent reports for one attempt of a step.
///
/// A failure is [`retryable`](Self::retryable) or final. A retryable one (a flaky
/// test, a busy upstream) is tried again, as a timed-out attempt is, while the step's
/// [`RetryPolicy`](super::RetryPolicy) has attempts left; a final one (a compile
/// error: trying again gives the same answer) fails the step at once, whatever
/// attempts remain. [`failure`](Self::failure) is retryable, as every failure was
/// before the distinction was made; [`final_failure`](Self::final_failure) is final.
/// The [`Executor`](super::Executor) maps an agent's
/// [`WorkOutput::failure`](crate::agent::WorkOutput::failure) to a final failure and
/// [`WorkOutput::retryable_failure`](crate::agent::WorkOutput::retryable_failure) and
/// an agent's error to a retryable one.
///
/// ```
/// use concord::workflow::StepOutcome;
///
/// assert!(StepOutcome::failure("upstream returned 503").retryable);
/// assert!(!StepOutcome::final_failure("compile error in main.rs").retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepOutcome {
    /// Whether the attempt succeeded.
    pub success: bool,
    /// Named outputs (a URL, a screenshot path), passed to downstream inputs.
    pub outputs: BTreeMap<String, String>,
    /// Why it failed, if it did.
    pub reason: Option<String>,
    /// For a failure, whether another attempt may succeed: `false` ends the step at
    /// this attempt. Ignored on a success. Written only when `false`, and read as
    /// `true` when absent, so that an outcome stored before the field existed reads
    /// back as the retryable failure it was.
    #[serde(skip_serializing_if = "is_true")]
    pub retryable: bool,
}

/// For `skip_serializing_if`: a failure's `retryable`, when it is the default `true`,
/// is left out, so that what a retryable failure writes reads back in versions that
/// predate the field.
fn is_true(b: &bool) -> bool {
    *b
}

/// For `#[serde(default)]`: a failure stored without `retryable` was retryable.
fn retryable_default() -> bool {
    true
}

/// A failure without a reason, retryable: what `#[serde(default)]` fills missing
/// fields from, so `retryable` must default to `true` here (a derived `Default`
/// would say `false`, and an old outcome would read back final).
impl Default for StepOutcome {
    fn default() -> Self {
        StepOutcome {
            success: false,
            outputs: BTreeMap::new(),
            reason: None,
            retryable: true,
        }
    }
}

impl StepOutcome {
    /// A success without outputs.
    pub fn success() -> Self {
        StepOutcome {
            success: true,
            outputs: BTreeMap::new(),
            reason: None,
            retryable: true,
        }
    }

    /// A failure, with its reason, that may be retried: the step is attempted again
    /// while its [`RetryPolicy`](super::RetryPolicy) has attempts left. For a failure
    /// that will repeat, use [`final_failure`](Self::final_failure).
    pub fn failure(reason: impl Into<String>) -> Self {
        StepOutcome {
            success: false,
            outputs: BTreeMap::new(),
            reason: Some(reason.into()),
            retryable: true,
        }
    }

    /// A failure, with its reason, that trying again will not mend (a compile error,
    /// a refused input): the step fails at this attempt, whatever its
    /// [`RetryPolicy`](super::RetryPolicy) allows, and its dependents and failure
    /// handlers go on as after any failed step.
    pub fn final_failure(reason: impl Into<String>) -> Self {
        StepOutcome {
            retryable: false,
            ..Self::failure(reason)
        }
    }

    /// Adds an output.
    pub fn with_output(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.insert(key.into(), value.into());
        self
    }
}

/// One state change of one step: the run's evidence record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunEvent {
    /// When it happened (the `now` passed to the call that caused it).
    pub at: Timestamp,
    /// The step ([`Run::name`] gives its name). A handle rather than the name, so
    /// that recording evidence costs no allocation or reference count per event.
    pub step: StepRef,
    /// The attempt concerned (1-based; for `Ready`, the attempt about to be made; 0 for
    /// a step skipped or cancelled before its first attempt).
    pub attempt: u32,
    /// The agent concerned, if any.
    pub agent: Option<AgentId>,
    /// What changed.
    pub change: StepChange,
}

/// The state change a [`RunEvent`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepChange {
    /// The step became ready to dispatch.
    Ready,
    /// An agent started an attempt.
    Started,
    /// The attempt succeeded with these outputs.
    Succeeded {
        /// The outputs reported.
        outputs: BTreeMap<String, String>,
    },
    /// The attempt failed (reported, timed out, or interrupted by a restart).
    AttemptFailed {
        /// Why.
        reason: String,
        /// When the next attempt becomes ready, or `None` when the step has failed for
        /// good: its attempts ran out, or the failure was final.
        retry_at: Option<Timestamp>,
        /// Whether the failure allowed another attempt ([`StepOutcome::retryable`]):
        /// `false` when it was final, which is then why `retry_at` is `None` though
        /// attempts may remain. Written only when `false`, and read as `true` when
        /// absent, as every failure was before the distinction was made.
        #[serde(default = "retryable_default", skip_serializing_if = "is_true")]
        retryable: bool,
    },
    /// The step's run condition did not hold.
    Skipped {
        /// The condition that did not hold.
        condition: RunCondition,
    },
    /// The run was cancelled before the step finished.
    Cancelled,
    /// The agent skipped the step on purpose (it could not be attempted here).
    SkippedByAgent {
        /// Why.
        reason: String,
    },
    /// The step was given up before an attempt (no agent could take it).
    Abandoned {
        /// Why.
        reason: String,
    },
    /// The attempt was interrupted through no fault of the step or its agent (a
    /// restart, the agent leaving service): it does not count, and the step is ready
    /// for the same attempt again.
    Interrupted {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for StepStatus {
    /// The status in words: `pending`, `ready`, `running`, `backing off`, `succeeded`,
    /// `failed`, `skipped`, `cancelled`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepStatus::Pending => "pending",
            StepStatus::Ready => "ready",
            StepStatus::Running => "running",
            StepStatus::BackingOff => "backing off",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        })
    }
}

impl fmt::Display for RunOutcome {
    /// `succeeded`, `failed` or `cancelled`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
        })
    }
}

/// Writes ` (key=value, key=value)`, or nothing for no outputs.
fn write_outputs(f: &mut fmt::Formatter<'_>, outputs: &BTreeMap<String, String>) -> fmt::Result {
    for (k, (key, value)) in outputs.iter().enumerate() {
        let lead = if k == 0 { " (" } else { ", " };
        write!(f, "{lead}{key}={value}")?;
    }
    if outputs.is_empty() {
        Ok(())
    } else {
        f.write_str(")")
    }
}

impl fmt::Display for StepOutcome {
    /// One line: `succeeded`, `succeeded (url=https://staging)`, `failed: disk full`
    /// (outputs of a failure are listed too).
    ///
    /// ```
    /// use concord::workflow::StepOutcome;
    ///
    /// let ok = StepOutcome::success().with_output("url", "https://staging");
    /// assert_eq!(ok.to_string(), "succeeded (url=https://staging)");
    /// assert_eq!(StepOutcome::failure("disk full").to_string(), "failed: disk full");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.success, &self.reason) {
            (true, _) => f.write_str("succeeded")?,
            (false, Some(reason)) => write!(f, "failed: {reason}")?,
            (false, None) => f.write_str("failed")?,
        }
        write_outputs(f, &self.outputs)
    }
}

impl fmt::Display for StepChange {
    /// One line: `ready`, `started`, `succeeded (url=https://staging)`,
    /// `attempt failed: timed out after 30s; retry at 2023-11-14T22:13:50.000Z`,
    /// `attempt failed: disk full; no attempt left`, `attempt failed: compile error;
    /// not retryable` (a final failure, attempts left or not), `skipped: run condition
    /// all_succeeded does not hold`, `cancelled`, `skipped by agent: no browser`,
    /// `abandoned: no agent has role qa`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepChange::Ready => f.write_str("ready"),
            StepChange::Started => f.write_str("started"),
            StepChange::Succeeded { outputs } => {
                f.write_str("succeeded")?;
                write_outputs(f, outputs)
            }
            StepChange::AttemptFailed {
                reason,
                retry_at: Some(at),
                ..
            } => write!(f, "attempt failed: {reason}; retry at {at}"),
            // Said apart from attempts running out: a reader counting attempts
            // against the policy would otherwise see a step given up early.
            StepChange::AttemptFailed {
                reason,
                retry_at: None,
                retryable: false,
            } => write!(f, "attempt failed: {reason}; not retryable"),
            StepChange::AttemptFailed {
                reason,
                retry_at: None,
                retryable: true,
            } => write!(f, "attempt failed: {reason}; no attempt left"),
            StepChange::Skipped { condition } => {
                write!(f, "skipped: run condition {condition} does not hold")
            }
            StepChange::Cancelled => f.write_str("cancelled"),
            StepChange::SkippedByAgent { reason } => write!(f, "skipped by agent: {reason}"),
            StepChange::Abandoned { reason } => write!(f, "abandoned: {reason}"),
            StepChange::Interrupted { reason } => write!(f, "interrupted: {reason}"),
        }
    }
}

impl fmt::Display for RunEvent {
    /// One line: when, which step (its handle: the event does not hold the name), the
    /// attempt and agent (left out before a first attempt), and the change:
    /// `2023-11-14T22:13:20.250Z step#1 (attempt 1, agent#2): started`. For the step's
    /// name instead, use [`RunEvent::display_in`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, &self.step)
    }
}

impl RunEvent {
    /// The event as one line naming its step by name, which the event itself does not
    /// hold: `2023-11-14T22:13:20.250Z verify (attempt 1, agent#2): started`. A step
    /// that is not in `workflow` is shown by its handle, as [`Display`](fmt::Display)
    /// does.
    ///
    /// ```
    /// use concord::workflow::{StepOutcome, StepSpec, Workflow};
    /// use concord::{AgentId, Timestamp};
    ///
    /// let workflow = Workflow::builder("w").step(StepSpec::new("verify")).build()?;
    /// let now: Timestamp = "2023-11-14T22:13:20.250Z".parse().unwrap();
    /// let mut run = workflow.start_run("run-1", 0, now);
    /// let verify = run.next_ready().unwrap();
    /// run.start(verify, AgentId::new(2), now)?;
    /// run.finish(verify, AgentId::new(2), StepOutcome::failure("no browser"), now)?;
    /// let lines: Vec<String> =
    ///     run.history().iter().map(|e| e.display_in(&workflow).to_string()).collect();
    /// assert_eq!(lines, [
    ///     "2023-11-14T22:13:20.250Z verify (attempt 1): ready",
    ///     "2023-11-14T22:13:20.250Z verify (attempt 1, agent#2): started",
    ///     "2023-11-14T22:13:20.250Z verify (attempt 1, agent#2): attempt failed: no browser; no attempt left",
    /// ]);
    /// assert_eq!(
    ///     run.history()[1].to_string(),
    ///     "2023-11-14T22:13:20.250Z step#0 (attempt 1, agent#2): started"
    /// );
    /// # Ok::<(), concord::workflow::WorkflowError>(())
    /// ```
    pub fn display_in<'a>(&'a self, workflow: &'a Workflow) -> impl fmt::Display + 'a {
        struct Named<'a>(&'a RunEvent, &'a Workflow);
        impl fmt::Display for Named<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.1.name_of(self.0.step) {
                    Some(name) => self.0.write(f, &name),
                    None => self.0.write(f, &self.0.step),
                }
            }
        }
        Named(self, workflow)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, step: &dyn fmt::Display) -> fmt::Result {
        write!(f, "{} {step}", self.at)?;
        match (self.attempt, self.agent) {
            // Skipped or cancelled before its first attempt: no attempt to name.
            (0, None) => {}
            (attempt, None) => write!(f, " (attempt {attempt})")?,
            (attempt, Some(agent)) => write!(f, " (attempt {attempt}, {agent})")?,
        }
        write!(f, ": {}", self.change)
    }
}

/// Something that names a step of a run's workflow: a [`StepRef`] (fast) or a name.
///
/// Sealed: implemented for [`StepRef`], `&str`, `String` and `&String`.
pub trait StepKey: sealed::Sealed {
    /// The step's dense index, or [`WorkflowError::UnknownStep`].
    #[doc(hidden)]
    fn index_in(&self, workflow: &Workflow) -> Result<u32, WorkflowError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::StepRef {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
}

impl StepKey for StepRef {
    #[inline]
    fn index_in(&self, workflow: &Workflow) -> Result<u32, WorkflowError> {
        if self.index() < workflow.len() {
            Ok(self.0)
        } else {
            Err(unknown_step(*self))
        }
    }
}

/// The error for a handle from elsewhere: out of line, so that the check inlined
/// into every transition stays a compare and a branch.
#[cold]
#[inline(never)]
fn unknown_step(step: StepRef) -> WorkflowError {
    WorkflowError::UnknownStep {
        step: step.to_string(),
    }
}

impl StepKey for &str {
    fn index_in(&self, workflow: &Workflow) -> Result<u32, WorkflowError> {
        workflow
            .step(self)
            .map(|s| s.0)
            .ok_or_else(|| WorkflowError::UnknownStep {
                step: (*self).to_owned(),
            })
    }
}

impl StepKey for String {
    fn index_in(&self, workflow: &Workflow) -> Result<u32, WorkflowError> {
        self.as_str().index_in(workflow)
    }
}

impl StepKey for &String {
    fn index_in(&self, workflow: &Workflow) -> Result<u32, WorkflowError> {
        self.as_str().index_in(workflow)
    }
}

/// What a step knows of its dependencies, and what its dependents learn from it.
///
/// One column of these rather than one per field: deciding a step reads and writes
/// them together, and columns of the same stride, each allocated on its own pages,
/// put a step's entries in the same cache set, where a chain's step touched more of
/// them than the set has ways.
#[derive(Debug, Clone, Copy, Default)]
struct Deps {
    /// Dependencies not yet terminal.
    waiting: u32,
    /// Terminal dependencies that did not succeed.
    not_ok: u32,
    /// Dependencies that carry a failure.
    failing: u32,
    /// Whether the step, terminal, carries a failure to its dependents.
    carries: bool,
}

/// One run of a [`Workflow`]: a sans-I/O, deterministic state machine.
///
/// The host loops: take the [`ready`](Run::ready) steps, assign each to an agent and
/// [`start`](Run::start) it, report each result with [`finish`](Run::finish), and call
/// [`tick`](Run::tick) at [`next_deadline`](Run::next_deadline) so timeouts and
/// backoffs fire. Every state change is appended to [`history`](Run::history).
///
/// # Rules
/// - A step is decided when all its dependencies are terminal; see [`RunCondition`] for
///   when it runs and when it is skipped. Skips cascade at once.
/// - A failed attempt (reported, or timed out on `tick`) is retried after its
///   [`RetryPolicy`](super::RetryPolicy) backoff while attempts remain; the step is
///   `Failed` after the last one. Only the failing step is retried: its dependencies
///   are finished and never rerun.
/// - A failure reported final ([`StepOutcome::final_failure`]) is not retried: the
///   step is `Failed` at that attempt, whatever attempts remain, and its history
///   says so (`AttemptFailed` with no `retry_at` and `retryable: false`).
/// - An error (a step not ready or not running, the wrong agent, an unknown step)
///   changes nothing.
///
/// # Complexity
/// `start` and `finish` are O(1) plus O(successors), `next_ready` O(1); a whole run is
/// O(V + E) plus O(log V) per timeout or backoff. Nothing allocates per step in steady
/// state except the history's amortized growth and outputs the host hands in.
#[derive(Debug, Clone)]
pub struct Run {
    workflow: Workflow,
    id: String,
    seed: u64,
    status: Vec<StepStatus>,
    attempts: Vec<u32>,
    agent: Vec<Option<AgentId>>,
    /// Timeout of a running attempt, or end of a backoff; `Timestamp::MAX` when none.
    deadline: Vec<Timestamp>,
    /// Each step's dependency counts and whether it carries a failure.
    deps: Vec<Deps>,
    /// The outputs of each succeeded step that reported any: most report none, and
    /// an empty map per step cost a copy when it succeeded and a drop with the run
    /// (a `None` costs neither).
    outputs: Vec<Option<BTreeMap<String, String>>>,
    /// The coordinator task bound to a ready or running step ([`Run::bind`]).
    task: Vec<Option<TaskId>>,
    /// Ready steps in dispatch order, each entry with the generation its step was
    /// queued in. An entry is live while its step is ready in that generation, stale
    /// once the step has left `Ready` (started or abandoned away from the front) or
    /// been queued again, at the back, in a newer generation.
    ready: VecDeque<(u32, u32)>,
    /// Each step's generation: bumped every time it is queued. It cannot wrap onto a
    /// stale entry of its step: each re-queue leaves at most one more stale entry,
    /// and `tidy_ready` drops them all once they outnumber the ready steps by 32.
    generation: Vec<u32>,
    ready_count: usize,
    /// Deadlines; an entry is stale unless the step is running or backing off with that
    /// deadline.
    timers: BinaryHeap<Reverse<(Timestamp, u32)>>,
    history: Vec<RunEvent>,
    terminal: usize,
    /// Steps backing off, counted so that a progress report costs no scan.
    backing_off: usize,
    failed: usize,
    cancelled: bool,
    last_now: Timestamp,
    scratch: Vec<u32>,
    /// How many history entries came from the snapshot this run was restored from.
    restored_history: usize,
}

impl PartialEq for Run {
    /// Two runs are equal when their snapshots are.
    fn eq(&self, other: &Run) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl Run {
    /// Starts a run of `workflow` at `now`. Steps without dependencies become ready (or
    /// are skipped, under [`RunCondition::AnyFailed`]) at once. `seed` drives the
    /// retry jitter.
    pub fn new(workflow: &Workflow, id: impl Into<String>, seed: u64, now: Timestamp) -> Run {
        let inner = workflow.inner();
        let n = inner.specs.len();
        let mut run = Run::blank(workflow, id.into(), seed, now);
        for (i, deps) in run.deps.iter_mut().enumerate() {
            deps.waiting = inner.pred_start[i + 1] - inner.pred_start[i];
        }
        for i in 0..n as u32 {
            if run.deps[i as usize].waiting == 0 {
                run.decide(i, now);
            }
        }
        run.drain(now);
        run
    }

    fn blank(workflow: &Workflow, id: String, seed: u64, now: Timestamp) -> Run {
        let n = workflow.len();
        Run {
            workflow: workflow.clone(),
            id,
            seed,
            status: vec![StepStatus::Pending; n],
            attempts: vec![0; n],
            agent: vec![None; n],
            deadline: vec![Timestamp::MAX; n],
            deps: vec![Deps::default(); n],
            outputs: vec![None; n],
            task: vec![None; n],
            ready: VecDeque::new(),
            generation: vec![0; n],
            ready_count: 0,
            timers: BinaryHeap::new(),
            history: Vec::with_capacity(3 * n),
            terminal: 0,
            backing_off: 0,
            failed: 0,
            cancelled: false,
            last_now: now,
            scratch: Vec::new(),
            restored_history: 0,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The workflow being run.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The name of `step`, or `None` for a handle from elsewhere.
    pub fn name(&self, step: StepRef) -> Option<&str> {
        self.workflow.name_of(step)
    }

    /// The status of `step`, or `None` for an unknown step.
    pub fn status(&self, step: impl StepKey) -> Option<StepStatus> {
        let i = step.index_in(&self.workflow).ok()?;
        Some(self.status[i as usize])
    }

    /// The timeout of each attempt of `step`, if it has one.
    pub(crate) fn timeout(&self, step: StepRef) -> Option<std::time::Duration> {
        self.workflow
            .inner()
            .timeouts
            .get(step.index())
            .copied()
            .flatten()
    }

    /// Attempts of `step` started so far.
    pub fn attempts(&self, step: impl StepKey) -> Option<u32> {
        let i = step.index_in(&self.workflow).ok()?;
        Some(self.attempts[i as usize])
    }

    /// The agent of `step`'s latest attempt.
    pub fn agent(&self, step: impl StepKey) -> Option<AgentId> {
        let i = step.index_in(&self.workflow).ok()?;
        self.agent[i as usize]
    }

    /// The outputs of `step` once it has succeeded.
    pub fn outputs(&self, step: impl StepKey) -> Option<&BTreeMap<String, String>> {
        let i = step.index_in(&self.workflow).ok()? as usize;
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        (self.status[i] == StepStatus::Succeeded).then(|| self.outputs[i].as_ref().unwrap_or(&NONE))
    }

    /// The steps to dispatch now, in dispatch order: the order they became ready in,
    /// ties by definition order. Deterministic: it depends only on the workflow and the
    /// calls made so far.
    pub fn ready(&self) -> Vec<StepRef> {
        let mut out = Vec::with_capacity(self.ready_count);
        self.ready_into(&mut out);
        out
    }

    /// At most `limit` of the steps [`ready_into`](Self::ready_into) would list, in the
    /// same order, written into `out` (cleared first): O(`limit`) however many steps
    /// are ready, for drivers that dispatch a few at a time.
    pub fn ready_first(&self, limit: usize, out: &mut Vec<StepRef>) {
        out.clear();
        out.extend(
            self.ready
                .iter()
                .filter(|&&entry| self.live(entry))
                .take(limit)
                .map(|&(i, _)| StepRef(i)),
        );
    }

    /// [`ready`](Run::ready) into a buffer the caller reuses (cleared first).
    pub fn ready_into(&self, out: &mut Vec<StepRef>) {
        out.clear();
        out.extend(
            self.ready
                .iter()
                .filter(|&&entry| self.live(entry))
                .map(|&(i, _)| StepRef(i)),
        );
    }

    /// The first step to dispatch, if any. O(1).
    #[inline]
    pub fn next_ready(&self) -> Option<StepRef> {
        // The front is kept valid by every call that can make a ready step unready.
        self.ready.front().map(|&(i, _)| StepRef(i))
    }

    /// The earliest time [`tick`](Run::tick) has something to do: a running attempt's
    /// timeout or the end of a backoff.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Whether every step is terminal.
    pub fn is_finished(&self) -> bool {
        self.terminal == self.status.len()
    }

    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<RunOutcome> {
        if !self.is_finished() {
            None
        } else if self.cancelled {
            Some(RunOutcome::Cancelled)
        } else if self.failed > 0 {
            Some(RunOutcome::Failed)
        } else {
            Some(RunOutcome::Succeeded)
        }
    }

    /// Whether [`cancel`](Run::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// How many entries of [`history`](Self::history) came from the snapshot this run
    /// was [restored](Self::restore) from (0 for a new run): the host had journaled
    /// those before; the restart rule's entries and everything after are new.
    pub fn restored_history(&self) -> usize {
        self.restored_history
    }

    /// Every state change so far, oldest first: the evidence record. A host journals
    /// `history()[seen..]` after each call.
    pub fn history(&self) -> &[RunEvent] {
        &self.history
    }

    /// The inputs of `step`: for each of its [`InputSpec`](super::InputSpec)s whose
    /// producing step has succeeded with that output key, the value under the input's
    /// name. Missing outputs are left out.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`].
    pub fn inputs_for(
        &self,
        step: impl StepKey,
    ) -> Result<BTreeMap<String, String>, WorkflowError> {
        let i = step.index_in(&self.workflow)? as usize;
        let inner = self.workflow.inner();
        let mut out = BTreeMap::new();
        if !inner.takes_inputs[i] {
            return Ok(out);
        }
        for input in inner.specs[i].inputs() {
            let Some(&from) = inner.by_name.get(input.from_step.as_str()) else {
                continue;
            };
            let from = from as usize;
            if self.status[from] != StepStatus::Succeeded {
                continue;
            }
            if let Some(value) = (self.outputs[from].as_ref()).and_then(|o| o.get(&input.output)) {
                out.insert(input.name.clone(), value.clone());
            }
        }
        Ok(out)
    }

    /// The index of `step` if it is ready, else the typed error.
    fn ready_index(&self, step: impl StepKey) -> Result<u32, WorkflowError> {
        let i = step.index_in(&self.workflow)?;
        let u = i as usize;
        if self.status[u] != StepStatus::Ready {
            return Err(self.not_ready(u));
        }
        Ok(i)
    }

    // The refusals are made out of line: they copy the step's name, and inlined
    // they would sit between the checks and the work of every transition, on the
    // executor's hot path.

    #[cold]
    #[inline(never)]
    fn not_ready(&self, u: usize) -> WorkflowError {
        WorkflowError::NotReady {
            step: self.workflow.inner().names[u].to_string(),
            status: self.status[u],
        }
    }

    #[cold]
    #[inline(never)]
    fn not_running(&self, u: usize) -> WorkflowError {
        WorkflowError::NotRunning {
            step: self.workflow.inner().names[u].to_string(),
            status: self.status[u],
        }
    }

    #[cold]
    #[inline(never)]
    fn wrong_agent(&self, u: usize, expected: AgentId, got: AgentId) -> WorkflowError {
        WorkflowError::WrongAgent {
            step: self.workflow.inner().names[u].to_string(),
            expected,
            got,
        }
    }

    #[cold]
    #[inline(never)]
    fn stale_attempt(&self, u: usize, attempt: u32) -> WorkflowError {
        WorkflowError::StaleAttempt {
            step: self.workflow.inner().names[u].to_string(),
            attempt,
            current: self.attempts[u],
        }
    }

    #[cold]
    #[inline(never)]
    fn late(&self, u: usize, at: Timestamp) -> WorkflowError {
        WorkflowError::Late {
            step: self.workflow.inner().names[u].to_string(),
            attempt: self.attempts[u],
            deadline: self.deadline[u],
            at,
        }
    }

    /// The index of `step` if it is running on `agent`, else the typed error.
    fn running_index(&self, step: impl StepKey, agent: AgentId) -> Result<u32, WorkflowError> {
        let i = step.index_in(&self.workflow)?;
        let u = i as usize;
        if self.status[u] != StepStatus::Running {
            return Err(self.not_running(u));
        }
        if let Some(expected) = self.agent[u].filter(|a| *a != agent) {
            return Err(self.wrong_agent(u, expected, agent));
        }
        Ok(i)
    }

    /// `agent` starts the next attempt of the ready `step` at `now`.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`], or [`WorkflowError::NotReady`]; either changes
    /// nothing.
    pub fn start(
        &mut self,
        step: impl StepKey,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = self.ready_index(step)?;
        let u = i as usize;
        self.observe(now);
        self.status[u] = StepStatus::Running;
        self.ready_count -= 1;
        self.attempts[u] += 1;
        self.agent[u] = Some(agent);
        if let Some(timeout) = self.workflow.inner().timeouts[u] {
            let at = now + timeout;
            self.deadline[u] = at;
            self.timers.push(Reverse((at, i)));
        }
        self.event(i, now, StepChange::Started);
        self.tidy_ready();
        Ok(())
    }

    /// `agent` reports the outcome of `step`'s running attempt at `now`.
    ///
    /// A success stores the outputs and decides the dependents; a
    /// [retryable](StepOutcome::retryable) failure is retried after backoff while
    /// attempts remain, else the step fails; a final failure
    /// ([`StepOutcome::final_failure`]) fails the step at once. An answer at or
    /// after the attempt's deadline is refused: the attempt timed out, and the next
    /// [`tick`](Self::tick) says so.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`], [`WorkflowError::NotRunning`],
    /// [`WorkflowError::WrongAgent`] or [`WorkflowError::Late`]; each changes nothing.
    pub fn finish(
        &mut self,
        step: impl StepKey,
        agent: AgentId,
        outcome: StepOutcome,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = self.running_index(step, agent)?;
        self.settle_attempt(i, outcome, now)
    }

    /// `agent` reports the outcome of attempt `attempt` of `step` at `now`: as
    /// [`finish`](Self::finish), but an answer to an earlier attempt (one that timed
    /// out or failed, after which another started) is refused, never credited to the
    /// attempt running now. An interrupted attempt is made again under its own
    /// number (it did not count), so its agent's late answer is told apart only by
    /// the agent, when another runs it ([`WorkflowError::WrongAgent`]); a host that
    /// interrupts stops the interrupted work first, as the executor does.
    ///
    /// # Errors
    /// As [`finish`](Self::finish), and [`WorkflowError::StaleAttempt`]; each changes
    /// nothing.
    pub fn finish_attempt(
        &mut self,
        step: impl StepKey,
        agent: AgentId,
        attempt: u32,
        outcome: StepOutcome,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = self.running_index(step, agent)?;
        self.current_attempt(i, attempt)?;
        self.settle_attempt(i, outcome, now)
    }

    /// `Ok` when `attempt` is the attempt step `i` runs now.
    fn current_attempt(&self, i: u32, attempt: u32) -> Result<(), WorkflowError> {
        if attempt == self.attempts[i as usize] {
            return Ok(());
        }
        Err(self.stale_attempt(i as usize, attempt))
    }

    /// `Ok` when running step `i`'s attempt may still answer at `now`: an answer at
    /// or after its deadline is a timeout, whether or not `tick` has run since.
    fn in_time(&self, i: u32, now: Timestamp) -> Result<(), WorkflowError> {
        let u = i as usize;
        let deadline = self.deadline[u];
        // Without a timeout there is no deadline (`MAX`); with one, `MAX` is a
        // deadline that saturated at the end of time, and `tick(MAX)` times it out.
        if self.workflow.inner().timeouts[u].is_none() || now < deadline {
            return Ok(());
        }
        Err(self.late(u, now))
    }

    fn settle_attempt(
        &mut self,
        i: u32,
        outcome: StepOutcome,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        self.in_time(i, now)?;
        let u = i as usize;
        self.observe(now);
        self.deadline[u] = Timestamp::MAX;
        self.task[u] = None;
        if outcome.success {
            self.status[u] = StepStatus::Succeeded;
            self.terminal += 1;
            // The history takes the outputs; the column a copy, when there are any.
            if !outcome.outputs.is_empty() {
                self.outputs[u] = Some(outcome.outputs.clone());
            }
            self.event(
                i,
                now,
                StepChange::Succeeded {
                    outputs: outcome.outputs,
                },
            );
            self.scratch.push(i);
            self.drain(now);
        } else {
            // A note: an agent's message (a stack trace, a tool's whole output) is
            // copied into the history, every snapshot and the host's log.
            let reason = outcome
                .reason
                .map_or_else(|| "failed".to_owned(), crate::id::note);
            self.fail_attempt(i, reason, outcome.retryable, now);
        }
        self.tidy_timers();
        Ok(())
    }

    /// `agent` reports that it skipped the running `step` on purpose (no browser on
    /// this machine, say): the step ends `Skipped` with the reason in the history. Its
    /// dependents see a step that did not succeed but carries no failure, as after a
    /// run condition that did not hold.
    ///
    /// # Errors
    /// As [`finish`](Self::finish); each changes nothing.
    pub fn skip_attempt(
        &mut self,
        step: impl StepKey,
        agent: AgentId,
        reason: String,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = self.running_index(step, agent)?;
        self.in_time(i, now)?;
        let u = i as usize;
        self.observe(now);
        self.deadline[u] = Timestamp::MAX;
        self.task[u] = None;
        self.status[u] = StepStatus::Skipped;
        self.terminal += 1;
        let reason = crate::id::note(reason);
        self.event(i, now, StepChange::SkippedByAgent { reason });
        self.scratch.push(i);
        self.drain(now);
        self.tidy_timers();
        Ok(())
    }

    /// Gives up the ready `step` without an attempt (no agent can take it): it fails
    /// for good, whatever its retry policy, and its dependents are decided.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`], or [`WorkflowError::NotReady`]; either changes
    /// nothing.
    pub fn abandon(
        &mut self,
        step: impl StepKey,
        reason: String,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = self.ready_index(step)?;
        let u = i as usize;
        self.observe(now);
        self.task[u] = None;
        self.status[u] = StepStatus::Failed;
        self.ready_count -= 1;
        self.deps[u].carries = true;
        self.failed += 1;
        self.terminal += 1;
        let reason = crate::id::note(reason);
        self.event(i, now, StepChange::Abandoned { reason });
        self.scratch.push(i);
        self.drain(now);
        self.tidy_ready();
        Ok(())
    }

    /// Binds the ready or running `step` to the coordinator's `task`: the task waiting
    /// for an agent on the step's behalf, or the task of its running attempt. The
    /// binding is part of the run's snapshot, so a resumed run finds its tasks again
    /// without a scan; it ends with the wait or the attempt.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`], or [`WorkflowError::NotReady`] when the step is
    /// neither ready nor running; either changes nothing.
    pub fn bind(&mut self, step: impl StepKey, task: TaskId) -> Result<(), WorkflowError> {
        let i = step.index_in(&self.workflow)?;
        let u = i as usize;
        match self.status[u] {
            StepStatus::Ready | StepStatus::Running => {
                self.task[u] = Some(task);
                Ok(())
            }
            _ => Err(self.not_ready(u)),
        }
    }

    /// [`start`](Self::start) then [`bind`](Self::bind) to `task`, for the executor,
    /// which does both for every step: one check of the step, and the number of the
    /// attempt started.
    pub(crate) fn start_bound(
        &mut self,
        step: StepRef,
        agent: AgentId,
        task: TaskId,
        now: Timestamp,
    ) -> Result<u32, WorkflowError> {
        self.start(step, agent, now)?;
        let u = step.index();
        self.task[u] = Some(task);
        Ok(self.attempts[u])
    }

    /// Ends `step`'s binding, if any (its task is gone from the coordinator).
    pub fn unbind(&mut self, step: impl StepKey) {
        if let Ok(i) = step.index_in(&self.workflow) {
            self.task[i as usize] = None;
        }
    }

    /// How many steps have finished (succeeded, failed, skipped or cancelled).
    pub fn finished_steps(&self) -> usize {
        self.terminal
    }

    /// How many steps are waiting out a retry delay after a failed attempt
    /// ([`StepStatus::BackingOff`]).
    pub fn backing_off_steps(&self) -> usize {
        self.backing_off
    }

    /// The coordinator task bound to `step` ([`bind`](Self::bind)), if any.
    pub fn task(&self, step: impl StepKey) -> Option<TaskId> {
        let i = step.index_in(&self.workflow).ok()?;
        self.task[i as usize]
    }

    /// The running `step`'s attempt was interrupted through no fault of the step or
    /// its agent (the host restarted, the agent left service): the attempt does not
    /// count, and the step is ready again for the same attempt number, at the back of
    /// the ready queue. Its binding ends.
    ///
    /// A run restored from a snapshot keeps its running steps running: the host asks
    /// their agents whether the work finished ([`finish`](Self::finish) if it did)
    /// and interrupts the others; [`Executor::resume`](super::Executor::resume) does
    /// exactly that.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownStep`], or [`WorkflowError::NotRunning`]; either changes
    /// nothing.
    pub fn interrupt(
        &mut self,
        step: impl StepKey,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        let i = step.index_in(&self.workflow)?;
        let u = i as usize;
        if self.status[u] != StepStatus::Running {
            return Err(self.not_running(u));
        }
        self.observe(now);
        self.deadline[u] = Timestamp::MAX;
        self.task[u] = None;
        self.event(
            i,
            now,
            StepChange::Interrupted {
                reason: reason.into(),
            },
        );
        self.attempts[u] -= 1;
        self.make_ready(i, now);
        self.tidy_timers();
        Ok(())
    }

    /// The running steps, in definition order: after a restore, the attempts the
    /// host must settle ([`finish`](Self::finish) or [`interrupt`](Self::interrupt)).
    pub fn running(&self) -> impl Iterator<Item = StepRef> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == StepStatus::Running)
            .map(|(i, _)| StepRef(i as u32))
    }

    /// Advances time to `now`: running attempts past their timeout fail (and are retried
    /// per policy), backing-off steps whose wait is over become ready. Returns the number
    /// of events appended.
    pub fn tick(&mut self, now: Timestamp) -> usize {
        let before = self.history.len();
        self.observe(now);
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let u = i as usize;
            if self.deadline[u] != at {
                continue;
            }
            match self.status[u] {
                StepStatus::Running => {
                    self.deadline[u] = Timestamp::MAX;
                    let timeout = self.workflow.inner().timeouts[u].unwrap_or_default();
                    self.fail_attempt(i, format!("timed out after {timeout:?}"), true, now);
                }
                StepStatus::BackingOff => {
                    self.deadline[u] = Timestamp::MAX;
                    self.backing_off -= 1;
                    self.make_ready(i, now);
                }
                _ => {}
            }
        }
        self.tidy_timers();
        self.history.len() - before
    }

    /// Cancels the run at `now`: every step not yet terminal (running ones included)
    /// becomes `Cancelled`. The host should stop the agents of running steps; their
    /// outcomes are refused afterwards. Does nothing on a finished run. Returns the
    /// number of steps cancelled.
    pub fn cancel(&mut self, now: Timestamp) -> usize {
        if self.is_finished() {
            return 0;
        }
        self.observe(now);
        self.cancelled = true;
        let mut count = 0;
        for i in 0..self.status.len() as u32 {
            let u = i as usize;
            if self.status[u].is_terminal() {
                continue;
            }
            let agent = (self.status[u] == StepStatus::Running)
                .then_some(self.agent[u])
                .flatten();
            self.status[u] = StepStatus::Cancelled;
            self.deadline[u] = Timestamp::MAX;
            self.task[u] = None;
            self.terminal += 1;
            count += 1;
            self.push_event(i, now, agent, StepChange::Cancelled);
        }
        self.ready.clear();
        self.ready_count = 0;
        self.backing_off = 0;
        self.timers.clear();
        count
    }

    // ----- internals -----

    #[inline]
    fn observe(&mut self, now: Timestamp) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    // Always inlined, like `push_event`: the change is then written once, into the
    // history, instead of field by field into an argument that a wide copy reads
    // back at once.
    #[inline(always)]
    fn event(&mut self, i: u32, at: Timestamp, change: StepChange) {
        let agent = self.agent[i as usize];
        self.push_event(i, at, agent, change);
    }

    #[inline(always)]
    fn push_event(&mut self, i: u32, at: Timestamp, agent: Option<AgentId>, change: StepChange) {
        let u = i as usize;
        let attempt = match change {
            StepChange::Ready => self.attempts[u] + 1,
            _ => self.attempts[u],
        };
        self.history.push(RunEvent {
            at,
            step: StepRef(i),
            attempt,
            agent,
            change,
        });
    }

    /// Whether the run condition of decided step `i` holds.
    #[inline]
    fn holds(&self, i: u32) -> bool {
        let u = i as usize;
        match self.workflow.inner().conditions[u] {
            RunCondition::AllSucceeded => self.deps[u].not_ok == 0,
            RunCondition::AnyFailed => self.deps[u].failing > 0,
            RunCondition::Always => true,
        }
    }

    /// Decides pending step `i`, whose dependencies are all terminal: ready, or skipped
    /// (queued on `scratch` so its dependents are decided by `drain`).
    #[inline]
    fn decide(&mut self, i: u32, now: Timestamp) {
        if self.holds(i) {
            self.make_ready(i, now);
        } else {
            let u = i as usize;
            let condition = self.workflow.inner().conditions[u];
            self.status[u] = StepStatus::Skipped;
            let deps = &mut self.deps[u];
            deps.carries = condition == RunCondition::AllSucceeded && deps.failing > 0;
            self.terminal += 1;
            self.push_event(i, now, None, StepChange::Skipped { condition });
            self.scratch.push(i);
        }
    }

    /// Propagates every newly terminal step on `scratch` to its dependents.
    fn drain(&mut self, now: Timestamp) {
        while let Some(j) = self.scratch.pop() {
            let ok = self.status[j as usize] == StepStatus::Succeeded;
            let carry = self.deps[j as usize].carries;
            let (from, to) = {
                let inner = self.workflow.inner();
                (
                    inner.succ_start[j as usize],
                    inner.succ_start[j as usize + 1],
                )
            };
            for k in from..to {
                let s = self.workflow.inner().succ[k as usize];
                let u = s as usize;
                let deps = &mut self.deps[u];
                deps.waiting -= 1;
                deps.not_ok += u32::from(!ok);
                deps.failing += u32::from(carry);
                if deps.waiting == 0 && self.status[u] == StepStatus::Pending {
                    self.decide(s, now);
                }
            }
        }
    }

    #[inline]
    fn make_ready(&mut self, i: u32, now: Timestamp) {
        let u = i as usize;
        self.status[u] = StepStatus::Ready;
        self.ready_count += 1;
        // At the back, in a new generation: an entry left from an earlier wait (the
        // step was started away from the front) is stale, not its place in the queue.
        let generation = self.generation[u].wrapping_add(1);
        self.generation[u] = generation;
        self.ready.push_back((i, generation));
        self.push_event(i, now, None, StepChange::Ready);
    }

    /// A failed attempt of running step `i`: back off and retry, or fail. A final
    /// failure (`retryable` false) fails the step whatever attempts remain: another
    /// attempt would repeat it, and only delay the step's handlers and dependents.
    fn fail_attempt(&mut self, i: u32, reason: String, retryable: bool, now: Timestamp) {
        let u = i as usize;
        self.task[u] = None;
        let made = self.attempts[u];
        let policy = self.workflow.inner().specs[u].retry();
        if retryable && made < policy.max_attempts() {
            let delay = policy.backoff(made, splitmix64(self.seed ^ splitmix64(u64::from(i))));
            let at = now + delay;
            self.event(
                i,
                now,
                StepChange::AttemptFailed {
                    reason,
                    retry_at: Some(at),
                    retryable: true,
                },
            );
            if at <= now {
                self.make_ready(i, now);
            } else {
                self.status[u] = StepStatus::BackingOff;
                self.backing_off += 1;
                self.deadline[u] = at;
                self.timers.push(Reverse((at, i)));
            }
        } else {
            self.status[u] = StepStatus::Failed;
            self.deps[u].carries = true;
            self.failed += 1;
            self.terminal += 1;
            self.event(
                i,
                now,
                StepChange::AttemptFailed {
                    reason,
                    retry_at: None,
                    retryable,
                },
            );
            self.scratch.push(i);
            self.drain(now);
        }
    }

    /// Whether a ready-queue entry is live: its step is ready, in that generation.
    #[inline]
    fn live(&self, (i, generation): (u32, u32)) -> bool {
        self.status[i as usize] == StepStatus::Ready && self.generation[i as usize] == generation
    }

    /// Drops stale entries from the front of the ready queue, and compacts it when
    /// stale entries dominate.
    #[inline]
    fn tidy_ready(&mut self) {
        while let Some(&f) = self.ready.front() {
            if self.live(f) {
                break;
            }
            self.ready.pop_front();
        }
        if self.ready.len() > 2 * self.ready_count + 32 {
            let (status, generation) = (&self.status, &self.generation);
            self.ready.retain(|&(i, g)| {
                status[i as usize] == StepStatus::Ready && generation[i as usize] == g
            });
        }
    }

    /// Drops stale timers from the top of the heap, so `next_deadline` is exact.
    #[inline]
    fn tidy_timers(&mut self) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            let u = i as usize;
            let live = self.deadline[u] == at
                && matches!(self.status[u], StepStatus::Running | StepStatus::BackingOff);
            if live {
                break;
            }
            self.timers.pop();
        }
    }
}
