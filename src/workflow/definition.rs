//! Workflow definitions as plain data: [`StepSpec`], [`RunCondition`], [`InputSpec`]
//! and [`WorkflowDefinition`].
//!
//! These are serde types a host can keep in its own config files. They are checked
//! only when turned into a [`Workflow`](super::Workflow); this module validates
//! nothing and never touches the graph.

use crate::serde_util::opt_duration_ms;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retry::RetryPolicy;
use crate::id::{Capability, Role};
use crate::resource::Resources;
use crate::task::{Claim, Requirements};

/// When a step runs, once every one of its dependencies has finished.
///
/// The exact rule: a step is decided when all its dependencies are terminal
/// (succeeded, failed, skipped or cancelled). A dependency *carries a failure* when it
/// failed, or when it was skipped because its own [`AllSucceeded`](Self::AllSucceeded)
/// condition did not hold and one of its dependencies carries a failure. Then:
///
/// - [`AllSucceeded`](Self::AllSucceeded) holds when every dependency succeeded. A
///   skipped dependency is not a success, so skips propagate down the graph.
/// - [`AnyFailed`](Self::AnyFailed) holds when at least one dependency carries a
///   failure, so a rollback handler placed after the last step of a chain fires when any
///   step of the chain failed.
/// - [`Always`](Self::Always) always holds.
///
/// A step whose condition does not hold is skipped. A step without dependencies runs
/// under `AllSucceeded` and `Always`, and is skipped under `AnyFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunCondition {
    /// Run when every dependency succeeded (the default).
    #[default]
    AllSucceeded,
    /// Run when a dependency carries a failure: cleanup and rollback handlers.
    AnyFailed,
    /// Run whatever happened upstream.
    Always,
}

impl fmt::Display for RunCondition {
    /// The condition's name, as serialized: `all_succeeded`, `any_failed`, `always`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunCondition::AllSucceeded => "all_succeeded",
            RunCondition::AnyFailed => "any_failed",
            RunCondition::Always => "always",
        })
    }
}

/// An input a step takes from an upstream step's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The step producing the output; must be an ancestor of the consuming step.
    pub from_step: String,
    /// The key in that step's outputs.
    pub output: String,
    /// The name the consuming step sees it under.
    pub name: String,
}

/// One step of a workflow: what it does, who may do it, and when it runs.
///
/// ```
/// use std::time::Duration;
/// use concord::workflow::{RetryPolicy, RunCondition, StepSpec};
/// use concord::{Capability, Role};
///
/// let verify = StepSpec::new("verify")
///     .with_kind("browser-check")
///     .with_role(Role::new("qa")?)
///     .with_capability(Capability::new("screenshot")?)
///     .with_timeout(Duration::from_secs(300))
///     .with_retry(RetryPolicy::exponential(3))
///     .after("deploy")
///     .with_input("deploy", "url", "target_url");
/// assert_eq!(verify.kind(), "browser-check");
/// assert_eq!(verify.condition(), RunCondition::AllSucceeded);
/// assert_eq!(verify.dependencies(), ["deploy"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<Capability>,
    #[serde(default)]
    resources: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    claims: Vec<Claim>,
    #[serde(
        default,
        with = "opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<Duration>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    condition: RunCondition,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<InputSpec>,
}

impl StepSpec {
    /// A step named `name` that needs nothing, depends on nothing, runs once and has no
    /// timeout.
    pub fn new(name: impl Into<String>) -> Self {
        StepSpec {
            name: name.into(),
            kind: None,
            role: None,
            capabilities: Vec::new(),
            resources: Resources::default(),
            claims: Vec::new(),
            timeout: None,
            retry: RetryPolicy::default(),
            condition: RunCondition::default(),
            depends_on: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// Sets the task kind used for assignment and separation of duties (defaults to the
    /// step's name). Building a workflow refuses a kind that is empty or only
    /// whitespace, or that the coordinator would refuse
    /// ([`WorkflowError::InvalidText`](super::WorkflowError::InvalidText)).
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Sets the role the agent must play.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Adds a capability the agent must have (kept sorted, without duplicates).
    pub fn with_capability(mut self, capability: Capability) -> Self {
        if let Err(i) = self.capabilities.binary_search(&capability) {
            self.capabilities.insert(i, capability);
        }
        self
    }

    /// Sets the resources the step needs.
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Adds a claim the step holds while it runs (a file tree, a port, an environment;
    /// kept sorted, without duplicates). Two steps, of one run or of several, whose
    /// exclusive claims collide do not run at once: the coordinator reports the
    /// conflict to its [`ConflictManager`](crate::conflict::ConflictManager), and the
    /// second step waits behind the first and starts once it has finished. While it
    /// waits the conflict climbs the escalation ladder; an orchestrator's or a
    /// human's approval lets it start beside the holder, and a denial fails it with
    /// the reason (its failure handlers run). A host may bound the wait with
    /// [`Executor::with_patience`](super::Executor::with_patience).
    pub fn with_claim(mut self, claim: Claim) -> Self {
        if let Err(i) = self.claims.binary_search(&claim) {
            self.claims.insert(i, claim);
        }
        self
    }

    /// Sets how long one attempt may run before it counts as failed. It must be longer
    /// than zero and at most [`MAX_STEP_WAIT`](super::MAX_STEP_WAIT) (a year):
    /// building a workflow with another timeout fails with
    /// [`WorkflowError::InvalidTimeout`](super::WorkflowError::InvalidTimeout). For
    /// no timeout, set none.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the retry policy: how often a failed attempt is tried again. A failure
    /// reported final is not; see [`RetryPolicy`]'s docs for which failures are.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the run condition.
    pub fn with_condition(mut self, condition: RunCondition) -> Self {
        self.condition = condition;
        self
    }

    /// Adds a dependency: this step is decided only once `step` has finished.
    ///
    /// A dependency added twice is one dependency: building the workflow keeps the
    /// first of each (as [`with_capability`](Self::with_capability) and
    /// [`with_claim`](Self::with_claim) keep no duplicates), so a definition
    /// generated from several sources may name a step more than once.
    pub fn after(mut self, step: impl Into<String>) -> Self {
        // Repeats are removed when the workflow is built (in O(n log n), so a step
        // with a hundred thousand dependencies is built as fast as a hundred).
        self.depends_on.push(step.into());
        self
    }

    /// Removes repeated dependencies, keeping the first of each.
    pub(crate) fn dedup_dependencies(&mut self) {
        if self.depends_on.len() < 2 {
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        self.depends_on.retain(|d| seen.insert(d.clone()));
    }

    /// Takes output `output` of upstream step `from_step` as input `name`. The
    /// producing step must be an ancestor (a dependency, or a dependency's ancestor);
    /// this does not add a dependency by itself. Building a workflow refuses an
    /// `output` or `name` that is empty or only whitespace
    /// ([`WorkflowError::InvalidText`](super::WorkflowError::InvalidText)), and a
    /// `name` the step already takes another input under.
    pub fn with_input(
        mut self,
        from_step: impl Into<String>,
        output: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        self.inputs.push(InputSpec {
            from_step: from_step.into(),
            output: output.into(),
            name: name.into(),
        });
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task kind: the one set, or the step's name.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(&self.name)
    }

    /// The role the agent must play, if any.
    pub fn role(&self) -> Option<&Role> {
        self.role.as_ref()
    }

    /// The capabilities the agent must have, sorted.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// The resources the step needs.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The claims the step holds while it runs, sorted.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// What the step asks of its agent, as the [`Requirements`] of the task an
    /// executor hands the coordinator: the role, the capabilities, the resources and
    /// the claims.
    pub fn requirements(&self) -> Requirements {
        let mut r = Requirements::new().with_resources(self.resources.clone());
        for c in &self.claims {
            r = r.with_claim(c.clone());
        }
        if let Some(role) = &self.role {
            r = r.with_role(role.clone());
        }
        for c in &self.capabilities {
            r = r.with_capability(c.clone());
        }
        r
    }

    /// How long one attempt may run, if limited.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The run condition.
    pub fn condition(&self) -> RunCondition {
        self.condition
    }

    /// The names of the steps this one depends on, in the order given; in a built
    /// [`Workflow`](super::Workflow), without repeats.
    pub fn dependencies(&self) -> &[String] {
        &self.depends_on
    }

    /// The inputs taken from upstream steps.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }
}

/// A workflow as plain serde data: a name and its steps in order.
///
/// Turn it into a validated [`Workflow`](super::Workflow) with
/// [`Workflow::from_definition`](super::Workflow::from_definition); get it back with
/// [`Workflow::definition`](super::Workflow::definition).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// The workflow's name.
    pub name: String,
    /// The steps, in definition order (which breaks ties in dispatch order).
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}
