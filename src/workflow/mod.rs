//! Workflows: steps done by agents in roles, in dependency order, with gates.
//!
//! Owns [`Workflow`] (a validated DAG of [`StepSpec`]s, built with [`WorkflowBuilder`]
//! or from a serde [`WorkflowDefinition`]), the [`Run`] state machine that walks one
//! workflow (ready, running, succeeded, failed, skipped, cancelled; retries with seeded
//! backoff; timeouts; outputs passed downstream; a timestamped evidence history), and
//! [`RunSnapshot`] for restart without repeating finished work. The operating
//! procedures (the 5-step deployment, emergency recovery, system update with rollback)
//! are workflows built on this engine ([`runbooks`]).
//!
//! The engine (definitions, validation, [`Run`], retries) is sans-I/O: it never waits,
//! spawns or reads a clock. The host (or an async executor on top) calls
//! [`Run::ready`], [`Run::start`], [`Run::finish`] and [`Run::tick`] with the current
//! time. The engine never imports `coordinator`; the [`Executor`] and the [`runbooks`]
//! are drivers in a layer of their own above the coordinator, which they run.
//!
//! # Example: deploy, verify, roll back on failure
//!
//! ```
//! use std::collections::BTreeMap;
//! use concord::workflow::{RunCondition, RunOutcome, StepOutcome, StepSpec, StepStatus, Workflow};
//! use concord::{AgentId, Timestamp};
//!
//! let workflow = Workflow::builder("deploy")
//!     .step(StepSpec::new("deploy"))
//!     .step(StepSpec::new("verify").after("deploy").with_input("deploy", "url", "url"))
//!     .step(StepSpec::new("rollback").after("verify").with_condition(RunCondition::AnyFailed))
//!     .build()?;
//!
//! let (ops, qa) = (AgentId::new(1), AgentId::new(2));
//! let now = Timestamp::from_secs(100);
//! let mut run = workflow.start_run("run-1", 7, now);
//!
//! let deploy = run.next_ready().unwrap();
//! run.start(deploy, ops, now)?;
//! run.finish(deploy, ops, StepOutcome::success().with_output("url", "https://staging"), now)?;
//!
//! let verify = run.next_ready().unwrap();
//! assert_eq!(run.inputs_for(verify)?["url"], "https://staging");
//! run.start(verify, qa, now)?;
//! run.finish(verify, qa, StepOutcome::success(), now)?;
//!
//! assert_eq!(run.status("rollback"), Some(StepStatus::Skipped));
//! assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
//! # Ok::<(), concord::workflow::WorkflowError>(())
//! ```

pub mod builtins;
mod definition;
mod error;
mod executor;
mod retry;
mod run;
pub mod runbooks;

pub use builtins::{Builtins, Restarter};
pub use definition::{InputSpec, RunCondition, StepSpec, WorkflowDefinition};
pub use error::WorkflowError;
pub use executor::{
    Executor, ExecutorError, RunFuture, RunHandle, RunObserver, RunProgress, SimulatedTimer, Spawn,
    Timer, Unstaffed, run_duration,
};
pub use retry::RetryPolicy;

/// The longest step timeout and retry backoff (initial or maximum) a workflow may
/// set: a year, as for the alerting's [`MAX_ALERT_WAIT`](crate::alert::MAX_ALERT_WAIT).
///
/// Past it an attempt in effect never times out and a retry never comes
/// (`Duration::MAX` is half a trillion years, and a deadline that far saturates at
/// [`Timestamp::MAX`], in 2554): a host that means "no timeout" leaves it unset,
/// and one that means "no retry" makes one attempt. A timer driven by such a
/// deadline (a simulated clock shared with the coordinator) would move the whole
/// system to the end of time. Building a workflow refuses a longer one with
/// [`WorkflowError::InvalidTimeout`] or [`WorkflowError::InvalidRetryPolicy`].
pub const MAX_STEP_WAIT: Duration = crate::clock::A_YEAR;
pub use run::{
    RUN_SNAPSHOT_VERSION, Run, RunEvent, RunOutcome, RunSnapshot, StepChange, StepKey, StepOutcome,
    StepState, StepStatus,
};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{NameError, Role, check_claim, check_label, excerpt};
use retry::splitmix64;

/// A handle to one step of one [`Workflow`]: its dense index. Cheap to copy and
/// compare; get the name with [`Workflow::name_of`] or [`Run::name`].
///
/// A handle from another workflow is refused with [`WorkflowError::UnknownStep`] when
/// out of range; within range it names whichever step has that index.
///
/// Serialized as the bare index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepRef(u32);

impl StepRef {
    /// The step's position in the workflow's definition (0-based).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step#{}", self.0)
    }
}

/// A validated workflow: a directed acyclic graph of steps.
///
/// Cheap to clone (the data is shared). Built with [`Workflow::builder`] or
/// [`Workflow::from_definition`]; both check that names are non-empty and unique, that
/// every dependency exists, that the graph has no cycle, that every input comes from an
/// ancestor, and that every timeout and retry policy is valid (waits of at most
/// [`MAX_STEP_WAIT`]).
#[derive(Debug, Clone)]
pub struct Workflow {
    inner: Arc<Inner>,
}

/// The shared, immutable part of a workflow, in dense arrays for the run's hot path.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) specs: Vec<StepSpec>,
    pub(crate) names: Vec<Arc<str>>,
    pub(crate) by_name: BTreeMap<Arc<str>, u32>,
    /// Successors of step `i`: `succ[succ_start[i]..succ_start[i + 1]]`, ascending.
    pub(crate) succ_start: Vec<u32>,
    pub(crate) succ: Vec<u32>,
    /// Predecessors, in the same layout.
    pub(crate) pred_start: Vec<u32>,
    pub(crate) pred: Vec<u32>,
    pub(crate) conditions: Vec<RunCondition>,
    pub(crate) timeouts: Vec<Option<Duration>>,
    /// Whether each step takes inputs: a run looks at the spec only for those.
    pub(crate) takes_inputs: Vec<bool>,
    /// The distinct [`StepSpec::requirements`] of the steps, built once for the
    /// executor: steps mostly share them (a role, a few resources), and a dispatch
    /// then reads a hot entry instead of 128 cold bytes per step.
    pub(crate) requirements: Vec<crate::task::Requirements>,
    /// Each step's entry in `requirements`.
    pub(crate) requirement_of: Vec<u32>,
    /// Each step's task kind, shared by every task the executor makes for it.
    pub(crate) kinds: Vec<Arc<str>>,
    pub(crate) topo: Vec<u32>,
    pub(crate) fingerprint: u64,
    /// The graph, kept for algorithms; never exposed.
    #[allow(dead_code)]
    graph: DiGraph<u32, ()>,
}

impl Inner {
    pub(crate) fn successors(&self, i: u32) -> &[u32] {
        let (a, b) = (self.succ_start[i as usize], self.succ_start[i as usize + 1]);
        &self.succ[a as usize..b as usize]
    }

    pub(crate) fn predecessors(&self, i: u32) -> &[u32] {
        let (a, b) = (self.pred_start[i as usize], self.pred_start[i as usize + 1]);
        &self.pred[a as usize..b as usize]
    }
}

impl Workflow {
    /// A builder for a workflow named `name`.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    /// Validates a definition.
    ///
    /// # Errors
    /// The first problem found, in this order: no steps at all, a workflow name that
    /// is not a label (longer than [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes
    /// or with a control or invisible character: [`WorkflowError::InvalidText`]), an
    /// empty step name, a step name or kind that is not a label (or a kind set
    /// empty), a claim the coordinator would refuse (longer than
    /// [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN) bytes, with a control or invisible
    /// character, or naming nothing) or an input with an empty output key or name (all
    /// [`WorkflowError::InvalidText`]), a duplicate name, an unknown dependency or
    /// input step, a timeout of zero or longer than [`MAX_STEP_WAIT`]
    /// ([`WorkflowError::InvalidTimeout`]), an invalid retry policy (among others, a
    /// backoff longer than [`MAX_STEP_WAIT`] or a longest backoff shorter than the
    /// first: [`WorkflowError::InvalidRetryPolicy`]), a cycle, an input from a
    /// non-ancestor, a repeated input name.
    ///
    /// A dependency named twice is not an error: the workflow keeps the first of
    /// each (see [`StepSpec::after`]).
    ///
    /// A definition of any size and shape is either built or refused with a typed
    /// error: no check recurses as deep as the definition, so a 100,000-step ring is a
    /// [`WorkflowError::Cycle`], not a stack overflow.
    ///
    /// # Complexity
    /// O(V + E) time, plus O(V + E) per input that does not come from a direct
    /// dependency (the ancestor check searches the graph for it).
    pub fn from_definition(definition: WorkflowDefinition) -> Result<Workflow, WorkflowError> {
        build(definition.name, definition.steps)
    }

    /// The workflow as plain data; [`Workflow::from_definition`] turns it back into an
    /// equal workflow.
    pub fn definition(&self) -> WorkflowDefinition {
        WorkflowDefinition {
            name: self.inner.name.clone(),
            steps: self.inner.specs.clone(),
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.inner.specs.len()
    }

    /// Whether the workflow has no steps.
    pub fn is_empty(&self) -> bool {
        self.inner.specs.is_empty()
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<StepRef> {
        self.inner.by_name.get(name).map(|&i| StepRef(i))
    }

    /// The steps, in definition order.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = (StepRef, &StepSpec)> + '_ {
        self.inner
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| (StepRef(i as u32), s))
    }

    /// The spec of `step`.
    pub fn spec(&self, step: StepRef) -> Option<&StepSpec> {
        self.inner.specs.get(step.index())
    }

    /// The name of `step`.
    pub fn name_of(&self, step: StepRef) -> Option<&str> {
        self.inner.names.get(step.index()).map(|n| &**n)
    }

    /// The steps `step` depends on, ascending (empty for an unknown handle).
    pub fn dependencies(&self, step: StepRef) -> impl Iterator<Item = StepRef> + '_ {
        let deps = if step.index() < self.len() {
            self.inner.predecessors(step.0)
        } else {
            &[]
        };
        deps.iter().map(|&i| StepRef(i))
    }

    /// The steps that depend on `step`, ascending (empty for an unknown handle).
    pub fn dependents(&self, step: StepRef) -> impl Iterator<Item = StepRef> + '_ {
        let deps = if step.index() < self.len() {
            self.inner.successors(step.0)
        } else {
            &[]
        };
        deps.iter().map(|&i| StepRef(i))
    }

    /// The steps in a topological order (every step after its dependencies; ties by
    /// definition order is not promised).
    pub fn topological_order(&self) -> Vec<StepRef> {
        self.inner.topo.iter().map(|&i| StepRef(i)).collect()
    }

    /// Checks that some role in `roles` serves every step that asks for one.
    ///
    /// # Errors
    /// [`WorkflowError::UnservableStep`] naming the first step (in definition order)
    /// whose role is not in `roles`.
    pub fn validate_roles(&self, roles: &[Role]) -> Result<(), WorkflowError> {
        for spec in &self.inner.specs {
            if let Some(role) = spec.role() {
                if !roles.contains(role) {
                    return Err(WorkflowError::UnservableStep {
                        step: spec.name().to_owned(),
                        role: role.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Starts a run of this workflow: shorthand for [`Run::new`].
    pub fn start_run(&self, id: impl Into<String>, seed: u64, now: Timestamp) -> Run {
        Run::new(self, id, seed, now)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl PartialEq for Workflow {
    /// Two workflows are equal when their definitions are.
    fn eq(&self, other: &Workflow) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.name == other.inner.name && self.inner.specs == other.inner.specs)
    }
}

/// Builds a [`Workflow`] step by step.
///
/// ```
/// use concord::workflow::{StepSpec, Workflow, WorkflowError};
///
/// let err = Workflow::builder("loop")
///     .step(StepSpec::new("a").after("b"))
///     .step(StepSpec::new("b").after("a"))
///     .build()
///     .unwrap_err();
/// assert_eq!(err, WorkflowError::Cycle { path: vec!["a".into(), "b".into()] });
/// ```
#[derive(Debug, Clone, Default)]
pub struct WorkflowBuilder {
    name: String,
    steps: Vec<StepSpec>,
}

impl WorkflowBuilder {
    /// Adds a step.
    pub fn step(mut self, spec: StepSpec) -> Self {
        self.steps.push(spec);
        self
    }

    /// Adds a step through a mutable reference, for loops.
    pub fn push(&mut self, spec: StepSpec) -> &mut Self {
        self.steps.push(spec);
        self
    }

    /// Validates and builds the workflow; see [`Workflow::from_definition`].
    ///
    /// # Errors
    /// As [`Workflow::from_definition`].
    pub fn build(self) -> Result<Workflow, WorkflowError> {
        build(self.name, self.steps)
    }
}

/// The distinct requirements of `specs`, in order of first use, and each step's
/// index among them.
fn distinct_requirements(specs: &[StepSpec]) -> (Vec<crate::task::Requirements>, Vec<u32>) {
    let mut distinct = Vec::new();
    let mut index: crate::hash::FxHashMap<crate::task::Requirements, u32> =
        crate::hash::FxHashMap::default();
    let of = specs
        .iter()
        .map(|spec| {
            let needs = spec.requirements();
            *index.entry(needs).or_insert_with_key(|needs| {
                distinct.push(needs.clone());
                // At most one entry a step, and steps are counted in `u32`.
                u32::try_from(distinct.len() - 1).unwrap_or(u32::MAX)
            })
        })
        .collect();
    (distinct, of)
}

/// Refuses a run id no run may have: empty or only whitespace, longer than
/// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes, or with a control or invisible
/// character. The id names the run to the host, to the agents and, as its group, to the
/// coordinator, which would refuse it there.
pub(crate) fn check_run_id(id: &str) -> Result<(), WorkflowError> {
    if id.trim().is_empty() {
        return Err(WorkflowError::EmptyRunId { run: excerpt(id) });
    }
    check_label("run id", id).map_err(|source| WorkflowError::InvalidText { step: None, source })
}

/// Refuses a step's claim that the coordinator would refuse each time the step ran:
/// too long, with a control or invisible character, or naming nothing.
fn check_step_claim(claim: &crate::task::Claim) -> Result<(), NameError> {
    check_claim(claim.resource())?;
    if claim.names_nothing() {
        return Err(NameError::NamesNothing {
            kind: "claim",
            name: excerpt(claim.resource()),
        });
    }
    Ok(())
}

/// Refuses a step's kind that the coordinator would refuse, or one set empty (or
/// only whitespace): the kind is what assignment and separation of duties go by,
/// and an empty one names no work. A step without a kind of its own has its name's.
fn check_step_kind(kind: &str) -> Result<(), NameError> {
    if kind.trim().is_empty() {
        return Err(NameError::Empty { kind: "step kind" });
    }
    check_label("step kind", kind)
}

/// Refuses an input whose output key or name is empty or only whitespace: an
/// agent reads its inputs by name, and an upstream step reports no output under an
/// empty key that it meant.
fn check_input(input: &InputSpec) -> Result<(), NameError> {
    if input.output.trim().is_empty() {
        return Err(NameError::Empty { kind: "output" });
    }
    if input.name.trim().is_empty() {
        return Err(NameError::Empty { kind: "input" });
    }
    Ok(())
}

fn build(name: String, mut specs: Vec<StepSpec>) -> Result<Workflow, WorkflowError> {
    specs.iter_mut().for_each(StepSpec::dedup_dependencies);
    let n = specs.len();
    if n >= u32::MAX as usize {
        return Err(WorkflowError::TooManySteps {
            count: n,
            max: u32::MAX as usize - 1,
        });
    }
    if n == 0 {
        return Err(WorkflowError::NoSteps { workflow: name });
    }
    // Refused as an empty step name or run id is: the name is what a run of it is
    // shown as.
    if name.trim().is_empty() {
        return Err(WorkflowError::InvalidText {
            step: None,
            source: NameError::Empty { kind: "workflow" },
        });
    }
    check_label("workflow name", &name)
        .map_err(|source| WorkflowError::InvalidText { step: None, source })?;
    let mut by_name: BTreeMap<Arc<str>, u32> = BTreeMap::new();
    let mut names = Vec::with_capacity(n);
    for (i, spec) in specs.iter().enumerate() {
        if spec.name().trim().is_empty() {
            return Err(WorkflowError::EmptyName { position: i });
        }
        // A step's name is its tasks' description and, unless it has a kind of its
        // own, their kind: what the coordinator would refuse is refused here.
        check_label("step name", spec.name())
            .and_then(|()| check_step_kind(spec.kind()))
            .and_then(|()| spec.claims().iter().try_for_each(check_step_claim))
            .and_then(|()| spec.inputs().iter().try_for_each(check_input))
            .map_err(|source| WorkflowError::InvalidText {
                step: Some(i),
                source,
            })?;
        let name: Arc<str> = Arc::from(spec.name());
        if by_name.insert(name.clone(), i as u32).is_some() {
            return Err(WorkflowError::DuplicateStep {
                step: spec.name().to_owned(),
            });
        }
        names.push(name);
    }

    let mut graph: DiGraph<u32, ()> = DiGraph::with_capacity(n, n);
    for i in 0..n {
        graph.add_node(i as u32);
    }
    let mut preds: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (i, spec) in specs.iter().enumerate() {
        let mut mine = Vec::with_capacity(spec.dependencies().len());
        for dep in spec.dependencies() {
            let Some(&d) = by_name.get(dep.as_str()) else {
                return Err(WorkflowError::UnknownDependency {
                    step: spec.name().to_owned(),
                    dependency: excerpt(dep),
                });
            };
            mine.push(d);
        }
        for input in spec.inputs() {
            if !by_name.contains_key(input.from_step.as_str()) {
                return Err(WorkflowError::UnknownDependency {
                    step: spec.name().to_owned(),
                    dependency: excerpt(&input.from_step),
                });
            }
        }
        // Refused here rather than at run time, where every attempt would time out
        // at once ("timed out after 0ns") and use up the step's retries; and one
        // longer than a year, which never comes (see `MAX_STEP_WAIT`).
        if let Some(timeout) = (spec.timeout()).filter(|t| t.is_zero() || *t > MAX_STEP_WAIT) {
            return Err(WorkflowError::InvalidTimeout {
                step: spec.name().to_owned(),
                timeout,
            });
        }
        if let Some(reason) = spec.retry().problem() {
            return Err(WorkflowError::InvalidRetryPolicy {
                step: spec.name().to_owned(),
                reason,
            });
        }
        mine.sort_unstable();
        mine.dedup();
        for &d in &mine {
            graph.add_edge(NodeIndex::new(d as usize), NodeIndex::new(i), ());
        }
        preds.push(mine);
    }

    // Every walk here uses an explicit stack or queue, never recursion, so that a
    // definition as deep as memory allows is refused with an error rather than a
    // stack overflow: petgraph's `toposort` is an iterative depth-first search, the
    // inputs' ancestry below is walked with a stack, and `cycle_through` is
    // breadth-first. (petgraph's
    // `tarjan_scc` recurses once per node on a path; do not bring it back.)
    let topo = match toposort(&graph, None) {
        Ok(order) => order.into_iter().map(|n| n.index() as u32).collect(),
        Err(cycle) => {
            return Err(WorkflowError::Cycle {
                path: cycle_through(&graph, cycle.node_id())
                    .into_iter()
                    .map(|i| specs[i].name().to_owned())
                    .collect(),
            });
        }
    };

    // Each input comes from an ancestor. Most come from a direct dependency; the
    // others are grouped by the step they come from, and each such step's
    // descendants are walked once, no further in topological order than the last
    // step that takes from it: one search per input made a chain whose steps take
    // from distant ancestors cost n² walks. The first input refused, in definition
    // order, is the one reported.
    let mut position = vec![0u32; n];
    for (at, &node) in (0u32..).zip(&topo) {
        position[node as usize] = at;
    }
    let mut refused: Option<(u32, usize)> = None;
    let mut refuse = |at: (u32, usize)| {
        refused = Some(refused.map_or(at, |r| r.min(at)));
    };
    let mut distant: Vec<(u32, u32, usize)> = Vec::new();
    for (i, spec) in (0u32..).zip(&specs) {
        for (k, input) in spec.inputs().iter().enumerate() {
            let from = by_name[input.from_step.as_str()];
            if from == i {
                refuse((i, k));
            } else if preds[i as usize].binary_search(&from).is_err() {
                distant.push((from, i, k));
            }
        }
    }
    distant.sort_unstable();
    // `seen[x] == from`: `x` was reached from `from`.
    let mut seen = vec![u32::MAX; n];
    let mut stack = Vec::new();
    for group in distant.chunk_by(|a, b| a.0 == b.0) {
        let from = group[0].0;
        let stop = (group.iter().map(|&(_, to, _)| position[to as usize]))
            .max()
            .unwrap_or(0);
        stack.push(NodeIndex::new(from as usize));
        while let Some(x) = stack.pop() {
            for y in graph.neighbors_directed(x, petgraph::Direction::Outgoing) {
                let at = y.index();
                if seen[at] != from && position[at] <= stop {
                    seen[at] = from;
                    stack.push(y);
                }
            }
        }
        for &(_, to, k) in group {
            if seen[to as usize] != from {
                refuse((to, k));
            }
        }
    }
    if let Some((step, k)) = refused {
        let spec = &specs[step as usize];
        let input = &spec.inputs()[k];
        return Err(WorkflowError::InputFromNonAncestor {
            step: spec.name().to_owned(),
            from: input.from_step.clone(),
            input: excerpt(&input.name),
        });
    }
    let mut input_names: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for spec in &specs {
        input_names.clear();
        for input in spec.inputs() {
            if !input_names.insert(input.name.as_str()) {
                return Err(WorkflowError::DuplicateInput {
                    step: spec.name().to_owned(),
                    input: excerpt(&input.name),
                });
            }
        }
    }

    // Dense adjacency (CSR) for the run's hot path.
    let mut succs: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, mine) in preds.iter().enumerate() {
        for &d in mine {
            succs[d as usize].push(i as u32);
        }
    }
    let (succ_start, succ) = csr(&succs);
    let (pred_start, pred) = csr(&preds);

    let mut fingerprint = splitmix64(n as u64);
    let mut fold = |word: u64| fingerprint = splitmix64(fingerprint ^ word);
    for (i, spec) in specs.iter().enumerate() {
        for b in spec.name().bytes() {
            fold(u64::from(b));
        }
        fold(spec.condition() as u64);
        fold(u64::from(spec.retry().max_attempts()));
        for &d in &preds[i] {
            fold(u64::from(d));
        }
        fold(u64::MAX);
    }

    let (requirements, requirement_of) = distinct_requirements(&specs);
    Ok(Workflow {
        inner: Arc::new(Inner {
            name,
            conditions: specs.iter().map(|s| s.condition()).collect(),
            timeouts: specs.iter().map(|s| s.timeout()).collect(),
            takes_inputs: specs.iter().map(|s| !s.inputs().is_empty()).collect(),
            requirements,
            requirement_of,
            // A step without a kind of its own is of the kind of its name: one shared
            // string (a dispatch touches one cold allocation per step, not two).
            kinds: specs
                .iter()
                .zip(&names)
                .map(|(s, name)| {
                    if **name == *s.kind() {
                        Arc::clone(name)
                    } else {
                        Arc::from(s.kind())
                    }
                })
                .collect(),
            specs,
            names,
            by_name,
            succ_start,
            succ,
            pred_start,
            pred,
            topo,
            fingerprint,
            graph,
        }),
    })
}

fn csr(lists: &[Vec<u32>]) -> (Vec<u32>, Vec<u32>) {
    let mut start = Vec::with_capacity(lists.len() + 1);
    let mut flat = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    start.push(0);
    for list in lists {
        flat.extend_from_slice(list);
        start.push(flat.len() as u32);
    }
    (start, flat)
}

/// A shortest cycle through `node`, as step indices in edge (dependency) order,
/// rotated to start at its smallest index.
///
/// `node` must lie on a cycle (as the node [`toposort`] reports does). The search is
/// breadth-first with an explicit queue, never recursive, so a definition of any size
/// is refused with an error instead of overflowing the stack: a ring of 100,000 steps
/// is named in full.
///
/// No strongly connected components are needed: a path back to `node` only ever runs
/// through nodes of `node`'s component, so the breadth-first search over every node
/// reachable from `node` finds the same shortest cycle as one confined to the
/// component, in the same order (targets ascending).
///
/// # Complexity
/// O(V + E) time, O(V) extra space.
fn cycle_through(graph: &DiGraph<u32, ()>, node: NodeIndex) -> Vec<usize> {
    let n = graph.node_count();
    let mut parent: Vec<Option<NodeIndex>> = vec![None; n];
    let mut seen = vec![false; n];
    let mut queue = std::collections::VecDeque::from([node]);
    seen[node.index()] = true;
    let mut last = node;
    let mut targets: Vec<NodeIndex> = Vec::new();
    'search: while let Some(u) = queue.pop_front() {
        targets.clear();
        targets.extend(graph.edges(u).map(|e| e.target()));
        targets.sort_unstable();
        for &v in &targets {
            if v == node {
                last = u;
                break 'search;
            }
            if !seen[v.index()] {
                seen[v.index()] = true;
                parent[v.index()] = Some(u);
                queue.push_back(v);
            }
        }
    }
    let mut path = vec![last.index()];
    let mut cur = last;
    while let Some(p) = parent[cur.index()] {
        path.push(p.index());
        cur = p;
    }
    path.reverse();
    if let Some(min_pos) = path
        .iter()
        .enumerate()
        .min_by_key(|&(_, &v)| v)
        .map(|(k, _)| k)
    {
        path.rotate_left(min_pos);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Capability;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config(128, "tests/proptest-regressions/workflow_requirements.txt"))]

        /// Every step's entry among the distinct requirements is its own, and no two
        /// entries are equal.
        #[test]
        fn each_step_reads_its_own_requirements(
            steps in prop::collection::vec((0..3usize, 0..3usize, 0u64..3), 1..40),
        ) {
            let roles = ["ops", "qa", "framework"];
            let mut b = Workflow::builder("w");
            for (i, &(role, cap, cpu)) in steps.iter().enumerate() {
                let mut spec = StepSpec::new(format!("s{i}"))
                    .with_role(Role::new(roles[role]).unwrap())
                    .with_resources(crate::Resources::new().with_cpu_millis(cpu * 500));
                if cap > 0 {
                    spec = spec.with_capability(Capability::new(&format!("c{cap}")).unwrap());
                }
                b.push(spec);
            }
            let w = b.build().unwrap();
            let inner = w.inner();
            prop_assert_eq!(inner.requirement_of.len(), steps.len());
            for (i, spec) in inner.specs.iter().enumerate() {
                let r = &inner.requirements[inner.requirement_of[i] as usize];
                prop_assert_eq!(r, &spec.requirements());
            }
            for (k, a) in inner.requirements.iter().enumerate() {
                prop_assert!(inner.requirements[k + 1..].iter().all(|b| b != a));
            }
        }
    }
}
