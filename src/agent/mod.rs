//! Agents: who does the work, and which of them can take more.
//!
//! Owns the [`Agent`] trait that hosts implement (execute a unit of work, answer a
//! health ping), the work it exchanges ([`WorkItem`], [`WorkOutput`], [`Outcome`]),
//! [`AgentProfile`] (roles, capabilities, capacity, task slots), the status lifecycle
//! ([`AgentStatus`]) and the [`AgentRegistry`] that answers the agent assignment
//! procedure's "find available agents" step and tracks agent connectivity. Roles and
//! capabilities are interned into bitsets ([`CapabilityCatalog`], [`CapabilitySet`])
//! so that matching agents to tasks is a tight loop.
//!
//! The registry is a sans-I/O state machine: it never calls an agent, reads a clock or
//! spawns anything. Talking to agents is the host's [`Agent`] implementation, driven by
//! the host or the crate's async drivers. This module must never import `assignment`,
//! `policy`, `workflow` or `coordinator`.

mod capability;
mod error;
mod profile;
mod registry;
mod status;

pub use capability::{CapabilityBit, CapabilityCatalog, CapabilitySet};
pub use error::{AgentError, RegistryError};
pub use profile::AgentProfile;
pub(crate) use registry::qualifies;
pub use registry::{
    AgentRecord, AgentRegistry, AgentView, CompiledRequirements, RegistrySnapshot, Unfit,
};
pub use status::AgentStatus;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Timestamp};
use crate::id::{AgentId, TaskId};
use crate::resource::Resources;
use crate::task::Task;

/// One unit of work handed to an agent: a task, or one step of a workflow.
///
/// `inputs` carries the outputs of upstream steps (a build's artifact url, a deploy's
/// address); `attempt` counts from 1 and grows with each retry, so an agent can tell a
/// retry from a first try. The work of a workflow step names its run
/// ([`run`](Self::run)) and step ([`step`](Self::step)): with the two, an agent keys
/// its own records of the step's effect, and knows a step it has already done when it
/// is asked again (a retry after a lost answer, a resume after a crash), from the work
/// item alone. Plain serde data.
///
/// What is unique: `(run, step)` names one step among the *live* runs (an
/// [`Executor`](crate::workflow::Executor) refuses a second live run under one id),
/// and stays the same for every attempt and across a resume. Once a run has ended
/// its id is free, and a host may start a new run under it (the same deploy, again):
/// records kept past the end of a run under `(run, step)` would take the new run's
/// step for a repeat. Give every run an id of its own (`deploy-api-42`) if agents
/// keep such records, or drop a run's records when it ends. The
/// [`task`](Self::task) id is unique for good (an executor issues task ids above
/// every id its coordinator was ever given), but names one attempt, not the step:
/// each attempt, and the attempt made again after a restart, gets a new one.
///
/// ```
/// use concord::agent::WorkItem;
/// use concord::{TaskId, Timestamp};
///
/// let work = WorkItem::new(TaskId::new(3), "screenshot", "capture the landing page")
///     .with_input("url", "https://staging.example.com")
///     .with_attempt(2)
///     .with_deadline(Timestamp::from_secs(600));
/// assert_eq!(work.input("url"), Some("https://staging.example.com"));
/// assert_eq!(work.attempt(), 2);
/// // A task assigned outside a workflow run belongs to no run.
/// assert_eq!((work.run(), work.step()), (None, None));
///
/// let step = WorkItem::new(TaskId::new(4), "deploy", "deploy").with_run("deploy-api");
/// assert_eq!((step.run(), step.step()), (Some("deploy-api"), Some("deploy")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    task: TaskId,
    /// The workflow run, for a step's work. An `Arc` shared with the executor's run,
    /// so that an attempt costs a reference count, not a copy of the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<Arc<str>>,
    kind: Arc<str>,
    description: Arc<str>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default = "first_attempt")]
    attempt: u32,
    #[serde(default)]
    deadline: Option<Timestamp>,
}

fn first_attempt() -> u32 {
    1
}

impl WorkItem {
    /// A first attempt at work of `kind` for `task`, with no inputs and no deadline.
    pub fn new(task: TaskId, kind: impl Into<Arc<str>>, description: impl Into<Arc<str>>) -> Self {
        WorkItem {
            task,
            run: None,
            kind: kind.into(),
            description: description.into(),
            inputs: BTreeMap::new(),
            attempt: first_attempt(),
            deadline: None,
        }
    }

    /// Attempt `attempt` at task `task` of run `run`'s step `name` of `kind` (names
    /// shared), with its inputs and deadline: built in place (the workflow executor
    /// makes one per step attempt, where the builder steps each moved the whole item).
    pub(crate) fn for_attempt(
        task: TaskId,
        run: &Arc<str>,
        kind: &Arc<str>,
        name: &Arc<str>,
        inputs: BTreeMap<String, String>,
        attempt: u32,
        deadline: Option<Timestamp>,
    ) -> Self {
        WorkItem {
            task,
            run: Some(Arc::clone(run)),
            kind: Arc::clone(kind),
            description: Arc::clone(name),
            inputs,
            attempt,
            deadline,
        }
    }

    /// A first attempt at `task`: its id, kind, description and deadline.
    pub fn for_task(task: &Task) -> Self {
        let mut work = WorkItem::new(task.id(), task.shared_kind(), task.shared_description());
        work.deadline = task.requirements().deadline();
        work
    }

    /// Adds (or replaces) one input.
    pub fn with_input(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inputs.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) several inputs.
    pub fn with_inputs<K, V>(mut self, inputs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.inputs
            .extend(inputs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the attempt number (1 for the first try).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the time by which the work must be done.
    pub fn with_deadline(mut self, deadline: Timestamp) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Marks the work as a step of workflow run `run`, whose step name is the
    /// description (as the workflow executor makes it); for hosts and tests that
    /// build a step's work item themselves.
    pub fn with_run(mut self, run: impl Into<Arc<str>>) -> Self {
        self.run = Some(run.into());
        self
    }

    /// The task the work is for.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// The kind of work (`deploy`, `screenshot`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The free-text description; for a workflow step's work, the step's name.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The workflow run the work belongs to (the id the run was started or restored
    /// with), for a step's work; `None` for a task assigned outside a run.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }

    /// The step's name, for a step's work (when [`run`](Self::run) is `Some`): with
    /// the run, the key of the step's effect, the same for every attempt and across
    /// restarts, and unique among live runs only (see [`WorkItem`] on reused run
    /// ids). `None` for a task assigned outside a run.
    pub fn step(&self) -> Option<&str> {
        self.run.as_ref().map(|_| &*self.description)
    }

    /// Every input, by key.
    pub fn inputs(&self) -> &BTreeMap<String, String> {
        &self.inputs
    }

    /// The input `key`, if given.
    pub fn input(&self, key: &str) -> Option<&str> {
        self.inputs.get(key).map(String::as_str)
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }
}

/// How a unit of work ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The work was done.
    Succeeded,
    /// The work was tried and did not succeed.
    Failed {
        /// What went wrong, for people and logs.
        reason: String,
        /// Whether trying again may succeed (a flaky test, a busy upstream), as opposed
        /// to a failure that will repeat (a compile error). A workflow step whose
        /// attempt fails with `retryable: false` fails at once, whatever its
        /// [`RetryPolicy`](crate::workflow::RetryPolicy) allows; with `true` it is
        /// tried again while the policy has attempts left.
        retryable: bool,
    },
    /// The work could not be attempted here and was skipped on purpose (no browser on
    /// this machine, say): neither a success nor a failure to retry.
    Skipped {
        /// Why, for people and the evidence record.
        reason: String,
    },
}

impl Outcome {
    /// Whether the work succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }
}

/// What an agent reports after doing a [`WorkItem`]: the outcome, named outputs for
/// downstream steps (a url, a screenshot path), and optionally the resources it
/// measured, which [`ResourcePredictor`](crate::ResourcePredictor)s learn from.
///
/// ```
/// use concord::agent::{Outcome, WorkOutput};
///
/// let ok = WorkOutput::success().with_output("url", "https://staging.example.com");
/// assert!(ok.is_success());
/// assert_eq!(ok.output("url"), Some("https://staging.example.com"));
///
/// let flaky = WorkOutput::retryable_failure("upstream returned 503");
/// assert!(matches!(flaky.outcome(), Outcome::Failed { retryable: true, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOutput {
    outcome: Outcome,
    #[serde(default)]
    outputs: BTreeMap<String, String>,
    #[serde(default)]
    usage: Option<Resources>,
}

impl WorkOutput {
    /// The outcome, outputs and usage, moved out (the executor hands them on rather
    /// than copying them).
    pub(crate) fn into_parts(self) -> (Outcome, BTreeMap<String, String>, Option<Resources>) {
        (self.outcome, self.outputs, self.usage)
    }

    /// Succeeded, with no outputs yet.
    pub fn success() -> Self {
        WorkOutput::with_outcome(Outcome::Succeeded)
    }

    /// Failed for `reason`; trying again will not help (a compile error, a refused
    /// input).
    ///
    /// A failure the work reports as final ends its workflow step at this attempt,
    /// whatever the step's [`RetryPolicy`](crate::workflow::RetryPolicy) allows: the
    /// step is `Failed`, and its failure handlers and dependents go on as after any
    /// failed step. A retryable one ([`retryable_failure`](Self::retryable_failure))
    /// and an agent's error are tried again per the step's `RetryPolicy`. Work that
    /// may pass on another try (a flaky test, a busy upstream) reports
    /// `retryable_failure`.
    pub fn failure(reason: impl Into<String>) -> Self {
        WorkOutput::with_outcome(Outcome::Failed {
            reason: reason.into(),
            retryable: false,
        })
    }

    /// Work skipped on purpose, with the reason.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::with_outcome(Outcome::Skipped {
            reason: reason.into(),
        })
    }

    /// Failed for `reason`; trying again may succeed (a flaky test, a busy
    /// upstream): a workflow step is attempted again after its backoff while its
    /// [`RetryPolicy`](crate::workflow::RetryPolicy) has attempts left. For a failure
    /// that will repeat, use [`failure`](Self::failure), which ends the step at once.
    pub fn retryable_failure(reason: impl Into<String>) -> Self {
        WorkOutput::with_outcome(Outcome::Failed {
            reason: reason.into(),
            retryable: true,
        })
    }

    /// Ended with `outcome`, with no outputs yet.
    pub fn with_outcome(outcome: Outcome) -> Self {
        WorkOutput {
            outcome,
            outputs: BTreeMap::new(),
            usage: None,
        }
    }

    /// Adds (or replaces) one named output.
    pub fn with_output(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.insert(key.into(), value.into());
        self
    }

    /// Records the resources the work used, as measured by the agent.
    pub fn with_usage(mut self, usage: Resources) -> Self {
        self.usage = Some(usage);
        self
    }

    /// How the work ended.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Whether the work succeeded.
    pub fn is_success(&self) -> bool {
        self.outcome.is_success()
    }

    /// Every named output.
    pub fn outputs(&self) -> &BTreeMap<String, String> {
        &self.outputs
    }

    /// The output `key`, if reported.
    pub fn output(&self, key: &str) -> Option<&str> {
        self.outputs.get(key).map(String::as_str)
    }

    /// The measured usage, if reported.
    pub fn usage(&self) -> Option<&Resources> {
        self.usage.as_ref()
    }
}

/// An agent's answer to a health ping: its version and any details it wants to share
/// (queue depth, model name, build hash).
///
/// ```
/// use concord::agent::AgentHealth;
/// let health = AgentHealth::new("1.4.2").with_detail("queue", "3");
/// assert_eq!(health.version(), "1.4.2");
/// assert_eq!(health.details()["queue"], "3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    details: BTreeMap<String, String>,
}

impl AgentHealth {
    /// Healthy, running `version`, with no details.
    pub fn new(version: impl Into<String>) -> Self {
        AgentHealth {
            version: version.into(),
            details: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) one detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// The agent's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The details, by key (empty when none were given).
    pub fn details(&self) -> &BTreeMap<String, String> {
        &self.details
    }
}

/// The result of [`AgentExt::ping`]: who answered, how fast, and with what version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ping {
    /// The agent that answered.
    pub agent: AgentId,
    /// The time from asking to the answer, by the clock given to `ping`.
    pub response_time: Duration,
    /// The version it reported.
    pub version: String,
    /// The details it reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// When the answer arrived.
    pub at: Timestamp,
}

/// Something that does work: a service, a bot, an LLM agent, a robot, a CI worker.
///
/// The host implements this over its own transport; the crate stores agents as
/// `Arc<dyn Agent>` and calls them from its async drivers.
///
/// # Contract
/// - `id` is cheap, never changes, and matches the agent's [`AgentProfile::id`].
/// - `execute` must not block the calling thread: do I/O on the host's runtime and
///   await it. It may be called again before an earlier call finishes, up to the
///   profile's [`max_tasks`](AgentProfile::max_tasks) at once.
/// - `execute` returns `Ok` whenever the work was tried, with
///   [`Outcome::Failed`] if the work itself failed; it returns `Err` only when the agent
///   could not be asked or could not answer ([`AgentError`]).
/// - A failed outcome says whether trying again may help
///   ([`WorkOutput::retryable_failure`]) or not ([`WorkOutput::failure`]): a workflow
///   step ends at its first final failure, and is tried again per its
///   [`RetryPolicy`](crate::workflow::RetryPolicy) after a retryable failure or an
///   `Err`.
/// - A caller may drop an `execute` or `health` future before it completes (a step
///   timed out); the agent must tolerate that.
/// - `health` is cheap and side-effect free: it reports whether the agent can take
///   work and its version, and is called periodically.
/// - Neither method may panic for any input; a driver survives it, but counts it as a
///   failure.
///
/// # Examples
/// An agent that echoes its inputs back as outputs. The trait's methods are `async`
/// through the [`async_trait`](macro@crate::async_trait) attribute, which the crate
/// re-exports: write `#[concord::async_trait]` on the `impl` (without it, the compiler
/// reports E0195, lifetime parameters that do not match the trait's), and no
/// dependency on the `async-trait` crate is needed.
/// ```
/// use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
/// use concord::{AgentId, TaskId};
///
/// #[derive(Debug)]
/// struct Echo;
///
/// #[concord::async_trait]
/// impl Agent for Echo {
///     fn id(&self) -> AgentId {
///         AgentId::new(1)
///     }
///     async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
///         let mut out = WorkOutput::success();
///         for (k, v) in work.inputs() {
///             out = out.with_output(k.clone(), v.clone());
///         }
///         Ok(out)
///     }
///     async fn health(&self) -> Result<AgentHealth, AgentError> {
///         Ok(AgentHealth::new("1.0.0"))
///     }
/// }
///
/// let agent: std::sync::Arc<dyn Agent> = std::sync::Arc::new(Echo);
/// let work = WorkItem::new(TaskId::new(9), "echo", "say it back").with_input("word", "hi");
/// let out = futures::executor::block_on(agent.execute(work))?;
/// assert_eq!(out.output("word"), Some("hi"));
/// # Ok::<(), AgentError>(())
/// ```
#[async_trait::async_trait]
pub trait Agent: fmt::Debug + Send + Sync + 'static {
    /// The agent's id.
    fn id(&self) -> AgentId;

    /// Does one unit of work.
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError>;

    /// Reports the agent's health and version.
    async fn health(&self) -> Result<AgentHealth, AgentError>;

    /// After its host restarted, whether the work of `work` (an attempt that was
    /// running when the host stopped) finished: `Some` with its output credits the
    /// step with it, so done work is not run again (an output that is a failure
    /// counts as that attempt's: a [`WorkOutput::retryable_failure`] is retried per
    /// the step's policy, a [`WorkOutput::failure`] ends the step); `None` makes the
    /// attempt again, without counting the interrupted one. The default says `None`:
    /// an agent that cannot tell has its work redone, which is right for idempotent
    /// work.
    ///
    /// Work that is still going (a remote job the host's crash did not stop) should
    /// be waited for here, and its output returned: `None` frees the agent's slot
    /// and makes the attempt again at once, so the job would run twice, side by
    /// side, past the agent's slots. The run waits for this answer before anything
    /// else of it goes on, for as long as the step's timeout (an answer that does
    /// not come by then counts as `None`), or without end for a step with none.
    ///
    /// An error counts as `None`.
    async fn recover(&self, work: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        let _ = work;
        Ok(None)
    }
}

/// Conveniences for every [`Agent`], `dyn Agent` included.
#[async_trait::async_trait]
pub trait AgentExt: Agent {
    /// Asks the agent for its health and times the answer with `clock`: the
    /// connectivity procedure's `check_agent_health` (status, response time, version).
    ///
    /// The clock is read before and after [`Agent::health`]; `at` is the second
    /// reading. A slow answer is still an answer: deciding what is too slow is the
    /// caller's policy, and a timeout is the caller's timer.
    ///
    /// # Errors
    /// The agent's own error, unchanged.
    ///
    /// ```
    /// use concord::agent::{Agent, AgentError, AgentExt, AgentHealth, WorkItem, WorkOutput};
    /// use concord::{AgentId, ManualClock, Timestamp};
    ///
    /// #[derive(Debug)]
    /// struct Up;
    /// #[concord::async_trait]
    /// impl Agent for Up {
    ///     fn id(&self) -> AgentId { AgentId::new(2) }
    ///     async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
    ///         Ok(WorkOutput::success())
    ///     }
    ///     async fn health(&self) -> Result<AgentHealth, AgentError> {
    ///         Ok(AgentHealth::new("2.1"))
    ///     }
    /// }
    ///
    /// let clock = ManualClock::new(Timestamp::from_secs(100));
    /// let ping = futures::executor::block_on(Up.ping(&clock))?;
    /// assert_eq!((ping.agent, ping.version.as_str()), (AgentId::new(2), "2.1"));
    /// assert_eq!(ping.at, Timestamp::from_secs(100));
    /// # Ok::<(), AgentError>(())
    /// ```
    async fn ping(&self, clock: &dyn Clock) -> Result<Ping, AgentError>;
}

#[async_trait::async_trait]
impl<A: Agent + ?Sized> AgentExt for A {
    async fn ping(&self, clock: &dyn Clock) -> Result<Ping, AgentError> {
        let sent = clock.now();
        let health = self.health().await?;
        let at = clock.now();
        Ok(Ping {
            agent: self.id(),
            response_time: at.duration_since(sent),
            version: health.version,
            details: health.details,
            at,
        })
    }
}

#[cfg(test)]
fn _obj_safe(_: std::sync::Arc<dyn Agent>) {}
