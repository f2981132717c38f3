//! [`GreedyAssigner`]: filter, score, pick the best, one task at a time.

mod one;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::explain::{Explanation, PluginScore, Rejection, RejectionCount};
use super::fleet::{ALWAYS_SCORED, CompiledTask, Fleet, takes_work};
use super::index::{AgentIndex, Bits, Candidates};
use super::{
    Admission, Assigner, AssignmentError, Placement, Plan, Refusal, Unplaced, check_batch,
    placement_order,
};
use crate::agent::AgentStatus;
use crate::id::{AgentId, TaskId};
use crate::resource::ResourceName;
use crate::task::Task;
use one::Podium;

/// A host filter: rules an agent in or out for a task, after the built-in filters
/// (status, slots, roles, capabilities, free resources) have passed it.
///
/// # Contract
/// - Deterministic and cheap; never panics. Called once per (task, agent) pair that
///   passed the built-in filters.
///
/// # Examples
/// ```
/// use concord::assignment::{Filter, Fleet};
/// use concord::{AgentId, Task};
///
/// /// Keeps odd-numbered agents for odd-numbered tasks.
/// #[derive(Debug)]
/// struct Parity;
/// impl Filter for Parity {
///     fn name(&self) -> &str { "parity" }
///     fn admits(&self, task: &Task, agent: AgentId, _fleet: &Fleet) -> bool {
///         task.id().get() % 2 == agent.get() % 2
///     }
/// }
/// ```
pub trait Filter: fmt::Debug + Send + Sync {
    /// The filter's name, as shown in explanations.
    fn name(&self) -> &str;
    /// Whether `agent` may take `task`.
    fn admits(&self, task: &Task, agent: AgentId, fleet: &Fleet) -> bool;
}

/// A host scorer: rates an agent for a task, in `[0, 100]` by convention.
///
/// # Contract
/// - Deterministic; returns a finite number (anything else is an
///   [`AssignmentError::InvalidScore`]); never panics.
///
/// # Examples
/// ```
/// use concord::assignment::{Fleet, Scorer};
/// use concord::{AgentId, Task};
///
/// /// Prefers lower agent ids, a little.
/// #[derive(Debug)]
/// struct Seniority;
/// impl Scorer for Seniority {
///     fn name(&self) -> &str { "seniority" }
///     fn score(&self, _task: &Task, agent: AgentId, _fleet: &Fleet) -> f64 {
///         100.0 / (1.0 + agent.get() as f64)
///     }
/// }
/// ```
pub trait Scorer: fmt::Debug + Send + Sync {
    /// The scorer's name, as shown in explanations.
    fn name(&self) -> &str;
    /// How good `agent` is for `task`.
    fn score(&self, task: &Task, agent: AgentId, fleet: &Fleet) -> f64;
}

/// Weights of the built-in scorers. Serde data; a weight of zero turns a scorer off.
///
/// - `least_allocated`: prefer agents left with the most free (spreads load).
/// - `most_allocated`: prefer agents left with the least free (bin-packs).
/// - `balanced`: prefer agents whose resources stay evenly used across dimensions.
/// - `affinity`: prefer agents that did this kind of task well before.
///
/// Resource scorers look at cpu, memory and every resource the task needs, as the
/// utilization the agent would have after taking the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreWeights {
    /// Weight of least-allocated (default 1).
    pub least_allocated: f64,
    /// Weight of most-allocated (default 0).
    pub most_allocated: f64,
    /// Weight of balanced allocation (default 1).
    pub balanced: f64,
    /// Weight of affinity (default 1).
    pub affinity: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights {
            least_allocated: 1.0,
            most_allocated: 0.0,
            balanced: 1.0,
            affinity: 1.0,
        }
    }
}

impl ScoreWeights {
    /// Spread load: least-allocated and balanced.
    pub fn spread() -> Self {
        Self::default()
    }

    /// Bin-pack: most-allocated and balanced.
    pub fn bin_pack() -> Self {
        ScoreWeights {
            least_allocated: 0.0,
            most_allocated: 1.0,
            ..Self::default()
        }
    }

    fn entries(&self) -> [(&'static str, f64); 4] {
        [
            ("least_allocated", self.least_allocated),
            ("most_allocated", self.most_allocated),
            ("balanced", self.balanced),
            ("affinity", self.affinity),
        ]
    }

    /// The built-in scorers that count (weight above zero): each one's place among
    /// [`entries`](Self::entries), name and weight, as an explanation lists them.
    fn parts(&self) -> Vec<(usize, &'static str, f64)> {
        self.entries()
            .into_iter()
            .enumerate()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (name, w))| (k, name, w))
            .collect()
    }
}

/// Assigns tasks one at a time in the Kubernetes scheduler's manner: filter the agents
/// that can take the task, score those that can, take the best (ties to the lowest
/// agent id), and charge its slot and resources before the next task.
///
/// Tasks are placed in priority order (highest first), then by deadline (earliest
/// first), then in batch order. When an [`Admission`] refuses the best agent, the next
/// best is tried, and so on.
///
/// # Complexity
/// O(t · a · d) for t tasks, a agents and d resource dimensions at worst, with no
/// allocation per agent check. The status, slot, role and capability filters run on
/// a bitmap index, 64 agents a machine word (O(t · a / 64 · r) for r required roles
/// and capabilities, less when a task's first requirement is rare), and count the
/// rejected agents by popcount; resources are checked and scores computed only for
/// the agents that pass them. Host filters and scorers run only on agents that pass
/// the built-in filters.
///
/// Extra space O(t + a · d), in buffers the assigner keeps between calls (sized for
/// the largest batch and fleet so far), so that a call allocates little beyond the
/// plan it returns. A one-task batch (as a workflow step makes) reads the fleet's
/// columns where they are and needs O(a) at most. Calls on one assigner from several
/// threads at once are correct: a call that finds the buffers in use works in fresh
/// ones. A clone starts with none.
///
/// # Examples
/// See the [module documentation](super).
#[derive(Clone)]
pub struct GreedyAssigner {
    weights: ScoreWeights,
    filters: Vec<Arc<dyn Filter>>,
    scorers: Vec<(Arc<dyn Scorer>, f64)>,
    /// The weights checked, and what a batch derives from them, worked out whenever
    /// they change instead of at every call.
    checked: Result<Checked, AssignmentError>,
    scratch: ScratchCell,
}

/// The weights in force for a batch, as derived from valid weights.
#[derive(Debug, Clone)]
struct Checked {
    /// The built-in weights when the fleet has no history: without history, affinity
    /// would only add the same zero to every agent and dilute the scores, so it counts
    /// only when the fleet has an affinity table (or when it is the only weight).
    without_history: ScoreWeights,
    /// The sum of every weight, built-in and host, with and without history.
    sum: f64,
    sum_without_history: f64,
    /// [`ScoreWeights::parts`] of the weights, with and without history: what an
    /// explanation lists, worked out once.
    parts: Vec<(usize, &'static str, f64)>,
    parts_without_history: Vec<(usize, &'static str, f64)>,
}

impl Checked {
    /// Checks `weights` and the host scorers' weights: the derived weights, or the
    /// first invalid weight (or all of them, when they are all zero).
    fn of(
        weights: &ScoreWeights,
        scorers: &[(Arc<dyn Scorer>, f64)],
    ) -> Result<Checked, AssignmentError> {
        let mut total = 0.0;
        let builtin = weights.entries();
        let host = scorers.iter().map(|(s, w)| (s.name(), *w));
        for (name, w) in builtin.iter().map(|(n, w)| (*n, *w)).chain(host) {
            if !w.is_finite() || w < 0.0 {
                return Err(AssignmentError::InvalidWeight {
                    name: name.to_owned(),
                    value: w,
                });
            }
            total += w;
        }
        if total <= 0.0 {
            return Err(AssignmentError::InvalidWeight {
                name: "all".to_owned(),
                value: 0.0,
            });
        }
        let mut without_history = weights.clone();
        if without_history
            .entries()
            .iter()
            .any(|(n, w)| *n != "affinity" && *w > 0.0)
        {
            without_history.affinity = 0.0;
        }
        let host = scorers.iter().map(|(_, w)| w).sum::<f64>();
        let sum = |w: &ScoreWeights| w.entries().iter().map(|(_, w)| w).sum::<f64>() + host;
        Ok(Checked {
            sum: sum(weights),
            sum_without_history: sum(&without_history),
            parts: weights.parts(),
            parts_without_history: without_history.parts(),
            without_history,
        })
    }
}

impl Default for GreedyAssigner {
    fn default() -> Self {
        let weights = ScoreWeights::default();
        GreedyAssigner {
            checked: Checked::of(&weights, &[]),
            weights,
            filters: Vec::new(),
            scorers: Vec::new(),
            scratch: ScratchCell::default(),
        }
    }
}

impl fmt::Debug for GreedyAssigner {
    // The scratch buffers are not configuration: left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreedyAssigner")
            .field("weights", &self.weights)
            .field("filters", &self.filters)
            .field("scorers", &self.scorers)
            .finish()
    }
}

impl GreedyAssigner {
    /// A greedy assigner with the default weights (spread load).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the built-in scorers' weights.
    pub fn with_weights(mut self, weights: ScoreWeights) -> Self {
        self.weights = weights;
        self.checked = Checked::of(&self.weights, &self.scorers);
        self
    }

    /// Adds a host filter.
    pub fn with_filter(mut self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds a host scorer with `weight`.
    pub fn with_scorer(mut self, scorer: Arc<dyn Scorer>, weight: f64) -> Self {
        self.scorers.push((scorer, weight));
        self.checked = Checked::of(&self.weights, &self.scorers);
        self
    }

    /// The built-in scorers' weights.
    pub fn weights(&self) -> &ScoreWeights {
        &self.weights
    }
}

impl Assigner for GreedyAssigner {
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        let mut plan = Plan::default();
        (self.scratch)
            .with(|scratch| self.assign_into_with(tasks, fleet, admission, scratch, &mut plan))?;
        Ok(plan)
    }

    fn assign_into(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        (self.scratch).with(|scratch| self.assign_into_with(tasks, fleet, admission, scratch, plan))
    }

    /// The kept buffers without their lock: the caller holds the assigner alone.
    fn assign_into_mut(
        &mut self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        let mut scratch = self.scratch.take();
        let done = self.assign_into_with(tasks, fleet, admission, &mut scratch, plan);
        self.scratch.put(scratch);
        done
    }
}

impl GreedyAssigner {
    /// [`Assigner::assign_into`] in the buffers of `scratch`.
    fn assign_into_with(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        scratch: &mut Scratch,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        match tasks {
            [task] => self.assign_one(task, fleet, admission, scratch, plan),
            _ => {
                *plan = self.assign_with(tasks, fleet, admission, scratch)?;
                Ok(())
            }
        }
    }

    /// [`Assigner::assign`] in the buffers of `scratch`.
    fn assign_with(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
        scratch: &mut Scratch,
    ) -> Result<Plan, AssignmentError> {
        check_batch(tasks, fleet, &mut scratch.ids)?;
        placement_order(tasks, &mut scratch.order);
        // On an error below, the buffers keep what they held: the next engine clears
        // and refills them.
        let mut engine = Engine::new(self, fleet, tasks, &mut scratch.engine)?;
        // Placements in the order decided (what `admission` sees), and where each task
        // of the batch ended up. The placements become the plan's: at most one a task,
        // allocated at the first (a batch that places nothing allocates none).
        let mut accepted: Vec<Placement> = Vec::new();
        let outcome = &mut scratch.outcome;
        outcome.clear();
        outcome.resize(tasks.len(), None);
        let mut refusals = Vec::new();
        // The explanation of the task being placed, filled by the engine.
        let mut why = Explanation::default();
        for &k in &scratch.order {
            let task = &tasks[k];
            let placed = engine.place(
                task,
                &mut scratch.task,
                admission,
                &accepted,
                &mut refusals,
                &mut why,
            )?;
            let explanation = std::mem::take(&mut why);
            match placed {
                Some((agent, score)) => {
                    tracing::trace!(task.id = %task.id(), agent.id = %agent, score, "task placed");
                    outcome[k] = Some(Ok(accepted.len()));
                    if accepted.capacity() == 0 {
                        accepted.reserve_exact(tasks.len());
                    }
                    accepted.push(Placement::new(task.id(), agent, score, explanation));
                }
                None => {
                    tracing::debug!(task.id = %task.id(), why = %explanation, "task not placed");
                    outcome[k] = Some(Err(Unplaced {
                        task: task.id(),
                        explanation,
                    }));
                }
            }
        }
        Ok(collect_plan(accepted, outcome, refusals, &mut scratch.perm))
    }
}

/// Where a task of the batch ended up: its index among the placements in the order
/// decided, or why it was not placed. `None` until decided.
pub(crate) type Outcome = Option<Result<usize, Unplaced>>;

/// Puts placements and unplaced tasks back in batch order, draining `outcome` (one per
/// task of the batch). `perm` is scratch space; nothing is allocated but the unplaced
/// list, and that only when a task is unplaced.
pub(crate) fn collect_plan(
    mut accepted: Vec<Placement>,
    outcome: &mut Vec<Outcome>,
    refusals: Vec<Refusal>,
    perm: &mut Vec<usize>,
) -> Plan {
    perm.clear();
    let mut unplaced = Vec::new();
    for o in outcome.drain(..).flatten() {
        match o {
            Ok(idx) => perm.push(idx),
            Err(u) => unplaced.push(u),
        }
    }
    permute(&mut accepted, perm);
    Plan {
        placements: accepted,
        unplaced,
        refusals,
    }
}

/// Reorders `items` in place so that `items[r]` holds what `items[from[r]]` held,
/// following each cycle of the permutation `from` once; `from` is left the identity.
fn permute<T>(items: &mut [T], from: &mut [usize]) {
    debug_assert_eq!(items.len(), from.len());
    for start in 0..from.len() {
        // Each step fills position `j` from `from[j]`, whose item is still in place;
        // the item that was at `start` travels along and lands where it belongs.
        let mut j = start;
        loop {
            let k = std::mem::replace(&mut from[j], j);
            if k == start {
                break;
            }
            items.swap(j, k);
            j = k;
        }
    }
}

/// The buffers a batch works in, kept by the assigner between calls so that a batch
/// of the usual size allocates none of them.
#[derive(Default)]
struct Scratch {
    /// For [`check_batch`].
    ids: Vec<TaskId>,
    /// For [`placement_order`].
    order: Vec<usize>,
    outcome: Vec<Outcome>,
    /// For [`collect_plan`].
    perm: Vec<usize>,
    engine: Buffers,
    /// The task being placed, translated by [`Fleet::compile_into`].
    task: CompiledTask,
}

/// A [`Scratch`] behind a lock that is only ever tried: a call works in the kept
/// buffers, in place (moving them out and back cost more than the rest of a small
/// batch's setup), and a call that finds them in use works in fresh ones. A clone
/// starts with fresh buffers.
///
/// Boxed, so that a caller holding the assigner alone takes the buffers out (a
/// pointer's move) and works in them without the lock while the assigner's settings
/// stay borrowed ([`Assigner::assign_into_mut`]).
#[derive(Default)]
struct ScratchCell(Mutex<Option<Box<Scratch>>>);

impl ScratchCell {
    /// Runs `f` in the kept buffers, or in fresh ones when another call has them.
    fn with<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        match self.0.try_lock() {
            Some(mut kept) => f(kept.get_or_insert_with(Box::default)),
            None => f(&mut Scratch::default()),
        }
    }

    /// The kept buffers, taken out without the lock (made on first use).
    fn take(&mut self) -> Box<Scratch> {
        self.0.get_mut().take().unwrap_or_default()
    }

    /// Keeps `scratch` for the next call.
    fn put(&mut self, scratch: Box<Scratch>) {
        *self.0.get_mut() = Some(scratch);
    }
}

impl Clone for ScratchCell {
    fn clone(&self) -> Self {
        ScratchCell::default()
    }
}

/// An agent index and its score, if there is one.
type Scored = Option<(usize, f64)>;

/// The statuses, in the order of their reason codes.
const STATUSES: [AgentStatus; 5] = [
    AgentStatus::Available,
    AgentStatus::Busy,
    AgentStatus::Unhealthy,
    AgentStatus::Quarantined,
    AgentStatus::Offline,
];
/// Reason code of "no free slot"; role, capability and resource codes follow.
const NO_SLOT: usize = STATUSES.len();

/// A batch in progress: the fleet's free resources and slots as they are charged, and
/// the hot columns of the filter loop, in [`Buffers`] the engine borrows (or, for a
/// one-task batch, the fleet's own columns). The engine itself is a few words, so that
/// making one moves nothing big.
pub(crate) struct Engine<'a> {
    cfg: &'a GreedyAssigner,
    fleet: &'a Fleet,
    buf: &'a mut Buffers,
    /// The built-in weights in force (affinity off without history).
    weights: ScoreWeights,
    /// Those of them that count, as an explanation lists them.
    parts: &'a [(usize, &'static str, f64)],
    pub(crate) weight_sum: f64,
    agents: usize,
    /// A one-task batch ([`Engine::one_task`]): the fleet's own columns are read in
    /// place, and `buf` holds only the dimensions, counters and fits.
    direct: bool,
    n_roles: usize,
    n_caps: usize,
}

/// An [`Engine`]'s columns and counters, kept between batches: [`Engine::new`] clears
/// and refills every one of them, whatever they held; [`Engine::one_task`] those it
/// reads (the dimensions, counters and fits). The reason counters are only sized: each
/// pass that counts zeroes them first.
#[derive(Default)]
pub(crate) struct Buffers {
    /// The fleet's resource dimensions, then those only the batch names; empty when
    /// the batch names none the fleet lacks (then the fleet's list is the list, and
    /// is not copied). Read through [`Engine::dims`].
    dims: Vec<ResourceName>,
    /// Per dimension, what the ledger's pool leaves; charged as the batch goes.
    pool_free: Vec<u64>,
    /// Per agent, per dimension the batch reads: the free amount (charged as the
    /// batch goes) and `1 / capacity` (0 where unknown or unlimited), at
    /// `columns[i * stride + place[d]]`. Agent-major: an agent that passes the role
    /// and capability filters has its resources checked and scored in one or two
    /// cache lines.
    columns: Vec<(u64, f64)>,
    /// Per dimension, its place in an agent's row of `columns` (for those the batch
    /// reads).
    place: Vec<usize>,
    /// The length of an agent's row of `columns`: how many dimensions the batch reads.
    stride: usize,
    slots: Vec<u32>,
    /// Which agents are eligible (available with a free slot), and the maps of the
    /// roles and capabilities the batch's tasks ask for.
    index: AgentIndex,
    /// The dimensions the batch reads: cpu and memory (always scored) and those some
    /// task needs; `columns` holds these only.
    read: Vec<bool>,
    /// One counter per reason code.
    counts: Vec<u32>,
    /// Agents that passed the filters, with their scores (collected only when needed).
    fits: Vec<(usize, f64)>,
    /// Those of `fits` that host filters keep, with host scores added.
    kept: Vec<(usize, f64)>,
    /// The task being filtered: the maps of its roles and capabilities, each with the
    /// reason code of lacking it, in the order reasons are told apart.
    reqs: Vec<(u32, usize)>,
    /// The words of agents that passed the role and capability filters.
    candidates: Vec<Candidates>,
    /// The agents that passed every built-in filter, with their scores.
    scored: Vec<(usize, f64)>,
    /// Ineligible agents per reason code (statuses and "no free slot").
    ineligible: [u32; NO_SLOT + 1],
}

impl<'a> Engine<'a> {
    /// An engine for `tasks` on `fleet`, working in `buf` (whatever it held).
    pub(crate) fn new(
        cfg: &'a GreedyAssigner,
        fleet: &'a Fleet,
        tasks: &[Task],
        buf: &'a mut Buffers,
    ) -> Result<Self, AssignmentError> {
        let mut engine = Self::bare(cfg, fleet, tasks, buf, false)?;
        engine.fill_columns();
        engine.count_eligible();
        Ok(engine)
    }

    /// An engine with its weights, dimensions and counters set, and no columns.
    fn bare(
        cfg: &'a GreedyAssigner,
        fleet: &'a Fleet,
        tasks: &[Task],
        buf: &'a mut Buffers,
        direct: bool,
    ) -> Result<Self, AssignmentError> {
        let checked = cfg.checked.as_ref().map_err(Clone::clone)?;
        let (weights, parts, weight_sum) = if fleet.has_affinity() {
            (cfg.weights.clone(), &checked.parts[..], checked.sum)
        } else {
            (
                checked.without_history.clone(),
                &checked.parts_without_history[..],
                checked.sum_without_history,
            )
        };
        // Every resource the batch names gets a dimension: agents that declared no
        // capacity have any amount of it, the others none. The fleet's list is copied
        // only when the batch adds to it (see `Buffers::dims`).
        let (copy, read) = (&mut buf.dims, &mut buf.read);
        copy.clear();
        read.clear();
        read.resize(fleet.dims.len(), false);
        for d in ALWAYS_SCORED {
            read[d] = true;
        }
        for task in tasks {
            let needs = task.requirements().resources();
            if needs.is_zero() {
                continue;
            }
            for (name, _) in needs.iter() {
                let dims = if copy.is_empty() { &fleet.dims } else { &*copy };
                match dims.iter().position(|d| *d == name) {
                    Some(d) => read[d] = true,
                    None => {
                        if copy.is_empty() {
                            copy.clone_from(&fleet.dims);
                        }
                        copy.push(name);
                        read.push(true);
                    }
                }
            }
        }
        let n_dims = read.len();
        let n_roles = fleet.role_catalog_len();
        let n_caps = fleet.capability_catalog_len();
        // Sized only (see `Buffers`).
        buf.counts
            .resize(NO_SLOT + 1 + n_roles + n_caps + n_dims, 0);
        buf.fits.clear();
        buf.kept.clear();
        Ok(Self {
            cfg,
            fleet,
            buf,
            weights,
            parts,
            weight_sum,
            agents: fleet.len(),
            direct,
            n_roles,
            n_caps,
        })
    }

    /// Copies the fleet's resource columns into the buffers, laid out for the
    /// filter loop.
    fn fill_columns(&mut self) {
        let (fleet, buf) = (self.fleet, &mut *self.buf);
        let n_dims = buf.read.len();
        buf.pool_free.clone_from(&fleet.pool_free);
        buf.pool_free.resize(n_dims, u64::MAX);
        // Only the dimensions the batch reads: a batch over many agents would
        // otherwise pay a division per agent for every dimension the fleet has, and
        // carry them in every agent's row.
        let (read, place, columns) = (&buf.read, &mut buf.place, &mut buf.columns);
        place.clear();
        place.resize(n_dims, 0);
        let mut stride = 0;
        for d in (0..n_dims).filter(|&d| read[d]) {
            place[d] = stride;
            stride += 1;
        }
        buf.stride = stride;
        columns.clear();
        columns.reserve(self.agents * stride);
        for i in 0..self.agents {
            columns.extend(
                (0..n_dims)
                    .filter(|&d| read[d])
                    .map(|d| fleet_column(fleet, i, d)),
            );
        }
        buf.slots.clone_from(&fleet.slots);
    }

    /// Starts the index (which agents are eligible; no role or capability map until
    /// a task asks for one) and fills the counters of ineligible agents.
    fn count_eligible(&mut self) {
        let (fleet, buf) = (self.fleet, &mut *self.buf);
        let keys = self.n_roles + self.n_caps;
        buf.index
            .reset(fleet.len(), keys, fleet.roles_stamp(), |w| {
                w.extend_from_slice(&fleet.eligible)
            });
        buf.ineligible = [0; NO_SLOT + 1];
        for i in buf.index.ineligible(fleet.len()) {
            buf.ineligible[status_code(fleet, i)] += 1;
        }
    }

    /// The agents that fit the task last evaluated with `collect`, with their scores,
    /// taken out of the engine.
    pub(crate) fn take_fits(&mut self) -> Vec<(usize, f64)> {
        std::mem::take(&mut self.buf.fits)
    }

    /// The built-in scores of agent `i` for `t`: (least, most, balanced, affinity).
    #[inline]
    fn builtin_scores(&self, i: usize, t: &CompiledTask) -> [f64; 4] {
        if self.direct {
            builtin_scores(&self.weights, t, i, |d| fleet_column(self.fleet, i, d))
        } else {
            self.copied_scores(i, t)
        }
    }

    /// [`builtin_scores`](Self::builtin_scores) from the copied columns, for the
    /// batch path. Inlined into the batch's scoring loop, which does nothing else: out
    /// of line, the four scores went back through memory, and each total waited for
    /// them to be stored and read back.
    #[inline]
    fn copied_scores(&self, i: usize, t: &CompiledTask) -> [f64; 4] {
        let (buf, row) = (&*self.buf, i * self.buf.stride);
        builtin_scores(&self.weights, t, i, move |d| {
            buf.columns[row + buf.place[d]]
        })
    }

    /// The weighted sum of built-in scores `s`.
    #[inline]
    fn builtin_total(&self, s: &[f64; 4]) -> f64 {
        let w = &self.weights;
        w.least_allocated * s[0] + w.most_allocated * s[1] + w.balanced * s[2] + w.affinity * s[3]
    }

    /// The reason code of agent `i` for `t`, or `None` if it passes the built-in
    /// filters. Exact for any number of role and capability bits.
    pub(crate) fn reject_code(&self, i: usize, t: &CompiledTask) -> Option<usize> {
        let f = self.fleet;
        if !self.eligible(i) {
            return Some(self.status_code(i));
        }
        if crate::agent::qualifies(&f.roles[i], &f.capabilities[i], &t.roles, &t.capabilities) {
            return self.short_dim(i, t).map(|d| self.dim_code(d));
        }
        if let Some(bit) = f.roles[i].first_missing(&t.roles) {
            return Some(NO_SLOT + 1 + bit.index());
        }
        if let Some(bit) = f.capabilities[i].first_missing(&t.capabilities) {
            return Some(NO_SLOT + 1 + self.n_roles + bit.index());
        }
        self.short_dim(i, t).map(|d| self.dim_code(d))
    }

    fn status_code(&self, i: usize) -> usize {
        status_code(self.fleet, i)
    }

    /// Whether agent `i` is available with a free slot.
    #[inline]
    fn eligible(&self, i: usize) -> bool {
        if self.direct {
            eligible_at_start(self.fleet, i)
        } else {
            self.buf.index.is_eligible(i)
        }
    }

    /// The first dimension, in the task's order, where agent `i` or the pool has too
    /// little free.
    #[inline]
    fn short_dim(&self, i: usize, t: &CompiledTask) -> Option<usize> {
        if self.direct {
            let f = self.fleet;
            let pool = |d: usize| f.pool_free.get(d).copied().unwrap_or(u64::MAX);
            short_dim(t, |d| fleet_column(f, i, d).0, pool)
        } else {
            self.copied_short_dim(i, t)
        }
    }

    /// [`short_dim`](Self::short_dim) from the copied columns, for the filter loops
    /// that only a batch with copies runs (called there directly, so that it inlines
    /// into them).
    #[inline]
    fn copied_short_dim(&self, i: usize, t: &CompiledTask) -> Option<usize> {
        let (buf, row) = (&*self.buf, i * self.buf.stride);
        short_dim(
            t,
            |d| buf.columns[row + buf.place[d]].0,
            |d| buf.pool_free[d],
        )
    }

    fn dim_code(&self, d: usize) -> usize {
        NO_SLOT + 1 + self.n_roles + self.n_caps + d
    }

    /// The index's maps of the roles and capabilities `t` asks for, each with the
    /// reason code of lacking it, in the order reasons are told apart (the buffer is
    /// the engine's, to be handed back to `buf.reqs`).
    fn requirement_maps(&mut self, t: &CompiledTask) -> Vec<(u32, usize)> {
        let (fleet, n_roles) = (self.fleet, self.n_roles);
        let mut reqs = std::mem::take(&mut self.buf.reqs);
        reqs.clear();
        let index = &mut self.buf.index;
        index.make_room(t.roles.len() + t.capabilities.len());
        for bit in t.roles.iter() {
            let slot = index.map_of(bit.index(), &fleet.roles, bit);
            reqs.push((slot, NO_SLOT + 1 + bit.index()));
        }
        for bit in t.capabilities.iter() {
            let slot = index.map_of(n_roles + bit.index(), &fleet.capabilities, bit);
            reqs.push((slot, NO_SLOT + 1 + n_roles + bit.index()));
        }
        reqs
    }

    /// The role and capability filters through the index, over the agents it holds
    /// eligible: counts each eligible agent lacking a requirement under the first it
    /// lacks, and returns the words of those that have them all (the buffer is the
    /// engine's, to be handed back to `buf.candidates`).
    fn filter_roles_and_capabilities(&mut self, t: &CompiledTask) -> Vec<Candidates> {
        let reqs = self.requirement_maps(t);
        let mut candidates = std::mem::take(&mut self.buf.candidates);
        (self.buf.index).filter_words(&reqs, &mut self.buf.counts, &mut candidates);
        self.buf.reqs = reqs;
        candidates
    }

    /// [`filter_roles_and_capabilities`](Self::filter_roles_and_capabilities) for a
    /// one-task batch, through the index's kept answers (see `AgentIndex::filter`):
    /// the next call likely asks the same over the same eligible agents. Also returns
    /// how many agents the words hold. (In a batch of many, agents retire as they
    /// fill, and keeping answers would cost a copy each task for few hits.)
    fn filter_kept(&mut self, t: &CompiledTask) -> (Vec<Candidates>, u32) {
        let reqs = self.requirement_maps(t);
        let mut candidates = std::mem::take(&mut self.buf.candidates);
        let count = (self.buf.index).filter(&reqs, &mut self.buf.counts, &mut candidates);
        self.buf.reqs = reqs;
        (candidates, count)
    }

    /// The filter pass over every agent: counts each rejected agent under its reason
    /// code, and returns the best agent (and the runner-up) among those that fit, and
    /// how many fit. With `collect`, every agent that fits is also pushed to `fits`
    /// with its score.
    ///
    /// In a batch, the index's maps take the agents 64 at a time through status,
    /// slots, roles and capabilities, in the order reasons are told apart, counting
    /// rejections by popcount (see [`AgentIndex::filter`]); only the agents left are
    /// visited one by one, for resources and scores. A one-task batch does the same
    /// on the fleet's own columns ([`scan_direct`](Self::scan_direct)).
    fn scan(&mut self, t: &CompiledTask, collect: bool) -> (Scored, Scored, usize) {
        self.buf.counts.iter_mut().for_each(|c| *c = 0);
        self.buf.fits.clear();
        if self.direct {
            return self.scan_direct(t, collect).finish();
        }
        let mut podium = Podium::new();
        // The batch path: roles and capabilities through the index, a machine word
        // of agents at a time; resources and scores for the few agents left.
        self.buf.counts[..=NO_SLOT].copy_from_slice(&self.buf.ineligible);
        let candidates = self.filter_roles_and_capabilities(t);
        let mut scored = std::mem::take(&mut self.buf.scored);
        scored.clear();
        for &(k, m) in &candidates {
            for j in Bits(m) {
                let i = k as usize * 64 + j;
                match self.copied_short_dim(i, t) {
                    Some(d) => {
                        let code = self.dim_code(d);
                        self.buf.counts[code] += 1;
                    }
                    None => scored.push((i, 0.0)),
                }
            }
        }
        // Scored in a loop of their own, apart from the comparisons: no score waits
        // for the one before (a division and a square root each) or for a branch on
        // it, so the processor works on several at once.
        for (i, score) in &mut scored {
            *score = self.builtin_total(&self.copied_scores(*i, t));
        }
        for &(i, score) in &scored {
            podium.offer(i, score);
            if collect {
                self.buf.fits.push((i, score));
            }
        }
        self.buf.candidates = candidates;
        self.buf.scored = scored;
        podium.finish()
    }

    /// Translates `task` against the fleet and the batch's resource dimensions.
    pub(crate) fn compile_into(&self, task: &Task, t: &mut CompiledTask) {
        self.fleet.compile_into(task, t, self.dims());
    }

    /// Places one task, compiled into `t` (whatever it held): `Some((agent, score))`
    /// when placed, `None` when not. Either way `explanation` (whatever it held) is
    /// overwritten with why. The caller builds the [`Placement`]: passing the
    /// explanation through a slot instead of returning it saves copying it at each
    /// layer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn place(
        &mut self,
        task: &Task,
        t: &mut CompiledTask,
        admission: &mut dyn Admission,
        accepted: &[Placement],
        refusals: &mut Vec<super::Refusal>,
        explanation: &mut Explanation,
    ) -> Result<Option<(AgentId, f64)>, AssignmentError> {
        self.fleet.compile_into(task, t, self.dims());
        self.place_compiled(task, t, admission, accepted, refusals, explanation)
    }

    /// Filters and scores every agent for a compiled task: writes the explanation's
    /// counts to `explanation` (whatever it held), and returns the best and runner-up
    /// agents (when there are no host plugins). With `collect`, or with host plugins,
    /// `self.buf.fits` holds every agent that fits and its score. `None` when the task
    /// names something no agent of the fleet has (then `explanation` counts none).
    pub(crate) fn evaluate(
        &mut self,
        task: &Task,
        t: &CompiledTask,
        collect: bool,
        explanation: &mut Explanation,
    ) -> Result<Option<(Scored, Scored)>, AssignmentError> {
        explanation.reset(self.fleet.len());
        if !t.satisfiable {
            return Ok(None);
        }
        let simple = self.cfg.filters.is_empty() && self.cfg.scorers.is_empty();
        let (best, second, fitted) = self.scan(t, collect || !simple);
        // When every agent fits (as the executor's one agent mostly does), no counter
        // is worth visiting.
        // Written into the explanation's own list (emptied above), which keeps its
        // capacity from the explanation this one is written over.
        let mut counts = std::mem::take(&mut explanation.rejected);
        if fitted != self.fleet.len() {
            self.rejection_counts_into(task, t, &mut counts);
        }
        let fit;
        if simple {
            fit = fitted;
        } else {
            // Host filters and scorers, on the agents that passed the built-in filters.
            self.buf.kept.clear();
            for &(i, total) in &self.buf.fits {
                let agent = self.fleet.ids[i];
                if let Some(f) = self
                    .cfg
                    .filters
                    .iter()
                    .find(|f| !f.admits(task, agent, self.fleet))
                {
                    let reason = Rejection::Filter {
                        filter: f.name().to_owned(),
                    };
                    match counts.iter_mut().find(|c| c.reason == reason) {
                        Some(c) => c.count += 1,
                        None => counts.push(RejectionCount { reason, count: 1 }),
                    }
                    continue;
                }
                let mut total = total;
                for (s, w) in &self.cfg.scorers {
                    let v = s.score(task, agent, self.fleet);
                    if !v.is_finite() {
                        return Err(AssignmentError::InvalidScore {
                            name: s.name().to_owned(),
                            task: task.id(),
                            agent,
                            value: v,
                        });
                    }
                    total += w * v;
                }
                self.buf.kept.push((i, total));
            }
            fit = self.buf.kept.len();
            std::mem::swap(&mut self.buf.fits, &mut self.buf.kept);
        }
        explanation.fit = fit;
        explanation.set_rejections(counts);
        Ok(Some((best, second)))
    }

    /// [`place`](Self::place) for a task already compiled.
    fn place_compiled(
        &mut self,
        task: &Task,
        t: &CompiledTask,
        admission: &mut dyn Admission,
        accepted: &[Placement],
        refusals: &mut Vec<super::Refusal>,
        explanation: &mut Explanation,
    ) -> Result<Option<(AgentId, f64)>, AssignmentError> {
        let simple = self.cfg.filters.is_empty() && self.cfg.scorers.is_empty();
        let Some((best, second)) = self.evaluate(task, t, false, explanation)? else {
            explanation.set_rejections(self.unsatisfiable_reasons(task, t));
            return Ok(None);
        };

        // The best first; on a refusal, the rest in score order (ties to the lowest id).
        if simple {
            if let Some((i, _)) = best {
                let runner_up = second.map(|(j, s)| (self.fleet.ids[j], s / self.weight_sum));
                match self.try_admit(
                    i,
                    task,
                    t,
                    admission,
                    accepted,
                    refusals,
                    explanation,
                    runner_up,
                ) {
                    Some(placed) => return Ok(Some(placed)),
                    None => {
                        // Refused: rescan, collecting every fit this time.
                        self.scan(t, true);
                        self.buf.fits.retain(|(j, _)| *j != i);
                    }
                }
            }
        }
        let mut order = std::mem::take(&mut self.buf.fits);
        // Agent indices are distinct, so the unstable sort (which needs no buffer)
        // gives the one order there is.
        order.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut placed = None;
        for (k, &(i, _)) in order.iter().enumerate() {
            let runner_up = order
                .get(k + 1)
                .map(|&(j, s)| (self.fleet.ids[j], s / self.weight_sum));
            placed = self.try_admit(
                i,
                task,
                t,
                admission,
                accepted,
                refusals,
                explanation,
                runner_up,
            );
            if placed.is_some() {
                break;
            }
        }
        self.buf.fits = order;
        Ok(placed)
    }

    /// Asks `admission` about agent `i`; commits it if admitted (returning the agent
    /// and its score, with `explanation` completed), else records the refusal.
    #[allow(clippy::too_many_arguments)]
    fn try_admit(
        &mut self,
        i: usize,
        task: &Task,
        t: &CompiledTask,
        admission: &mut dyn Admission,
        accepted: &[Placement],
        refusals: &mut Vec<super::Refusal>,
        explanation: &mut Explanation,
        runner_up: Option<(AgentId, f64)>,
    ) -> Option<(AgentId, f64)> {
        let agent = self.fleet.ids[i];
        // Every agent the engine proposes passed its filters: available, with a slot
        // left after the batch's placements so far, every role and capability.
        match admission.admit_filtered(task, agent, accepted, self.fleet) {
            Ok(()) => {
                explanation.runner_up = runner_up;
                Some(self.commit(i, task, t, explanation))
            }
            Err(refusal) => {
                explanation.fit = explanation.fit.saturating_sub(1);
                explanation.reject(Rejection::Policy {
                    rule: refusal.rule.clone(),
                });
                refusals.push(refusal);
                None
            }
        }
    }

    /// Charges agent `i` for `task` and completes `explanation` with the winner and its
    /// score breakdown: returns the agent and its total score.
    pub(crate) fn commit(
        &mut self,
        i: usize,
        task: &Task,
        t: &CompiledTask,
        explanation: &mut Explanation,
    ) -> (AgentId, f64) {
        let agent = self.fleet.ids[i];
        let scores = self.builtin_scores(i, t);
        // Written into the explanation's own list (emptied when it was reset): once
        // grown it allocates nothing. Otherwise its one allocation, at its exact size.
        let parts = &mut explanation.scores;
        parts.clear();
        parts.reserve_exact(self.parts.len() + self.cfg.scorers.len());
        parts.extend(self.parts.iter().map(|&(k, name, weight)| PluginScore {
            plugin: Cow::Borrowed(name),
            score: scores[k],
            weight,
        }));
        for (s, w) in &self.cfg.scorers {
            parts.push(PluginScore {
                plugin: Cow::Owned(s.name().to_owned()),
                score: s.score(task, agent, self.fleet),
                weight: *w,
            });
        }
        let total = parts.iter().map(|p| p.weight * p.score).sum::<f64>() / self.weight_sum;
        explanation.winner = Some((agent, total));
        if self.direct {
            // The batch's one placement: nothing reads the charge, and the columns
            // are the fleet's.
            return (agent, total);
        }
        for &(d, need) in &t.need_dims {
            let f = &mut self.buf.columns[i * self.buf.stride + self.buf.place[d]].0;
            if *f != u64::MAX {
                *f -= need;
            }
            let p = &mut self.buf.pool_free[d];
            if *p != u64::MAX {
                *p -= need;
            }
        }
        self.buf.slots[i] -= 1;
        if self.buf.slots[i] == 0 {
            self.buf.index.retire(i);
            self.buf.ineligible[NO_SLOT] += 1;
        }
        (agent, total)
    }

    /// Reasons for a task naming a role or capability no agent of the fleet has: each
    /// agent under the first filter it fails, as always, with the unknown name after
    /// the known ones of its kind (no agent has it).
    fn unsatisfiable_reasons(&mut self, task: &Task, t: &CompiledTask) -> Vec<RejectionCount> {
        self.buf.counts.iter_mut().for_each(|c| *c = 0);
        let (mut unknown_role, mut unknown_capability) = (0, 0);
        for i in 0..self.fleet.len() {
            if !self.eligible(i) {
                let code = self.status_code(i);
                self.buf.counts[code] += 1;
            } else if let Some(bit) = self.fleet.roles[i].first_missing(&t.roles) {
                self.buf.counts[NO_SLOT + 1 + bit.index()] += 1;
            } else if t.unknown_role.is_some() {
                unknown_role += 1;
            } else if let Some(bit) = self.fleet.capabilities[i].first_missing(&t.capabilities) {
                self.buf.counts[NO_SLOT + 1 + self.n_roles + bit.index()] += 1;
            } else {
                unknown_capability += 1;
            }
        }
        let mut counts = Vec::new();
        self.rejection_counts_into(task, t, &mut counts);
        if let Some(role) = &t.unknown_role {
            counts.push(RejectionCount {
                reason: Rejection::MissingRole { role: role.clone() },
                count: unknown_role,
            });
        }
        if let Some(capability) = &t.unknown_capability {
            counts.push(RejectionCount {
                reason: Rejection::MissingCapability {
                    capability: capability.clone(),
                },
                count: unknown_capability,
            });
        }
        counts
    }

    /// The batch's resource dimensions: the fleet's, then those only the batch names.
    fn dims(&self) -> &[ResourceName] {
        if self.buf.dims.is_empty() {
            &self.fleet.dims
        } else {
            &self.buf.dims
        }
    }

    /// The reason counters as rejection counts, appended to `out`. Only the task's own
    /// codes are read (the statuses, its roles and capabilities, the dimensions it
    /// needs): no pass counts under any other, and a fleet's catalogs may hold
    /// thousands of names.
    fn rejection_counts_into(&self, task: &Task, t: &CompiledTask, out: &mut Vec<RejectionCount>) {
        let counts = &self.buf.counts;
        let req = task.requirements();
        let mut add = |code: usize, reason: &dyn Fn() -> Rejection| {
            if counts[code] > 0 {
                out.push(RejectionCount {
                    reason: reason(),
                    count: counts[code] as usize,
                });
            }
        };
        for (code, &status) in STATUSES.iter().enumerate() {
            add(code, &|| Rejection::Status { status });
        }
        add(NO_SLOT, &|| Rejection::NoFreeSlot);
        // The task's own `Role` and `Capability` values are shared names: cloning one
        // is cheap.
        for &(bit, k) in &t.role_at {
            add(NO_SLOT + 1 + bit, &|| Rejection::MissingRole {
                role: req.roles()[k].clone(),
            });
        }
        for &(bit, k) in &t.capability_at {
            add(NO_SLOT + 1 + self.n_roles + bit, &|| {
                Rejection::MissingCapability {
                    capability: req.capabilities()[k].clone(),
                }
            });
        }
        for &(d, _) in &t.need_dims {
            add(self.dim_code(d), &|| Rejection::Insufficient {
                resource: self.dims()[d].clone(),
            });
        }
    }
}

/// The reason code of an ineligible agent: its status, or "no free slot".
fn status_code(fleet: &Fleet, i: usize) -> usize {
    let status = fleet.status[i];
    if status == AgentStatus::Available {
        NO_SLOT
    } else {
        STATUSES.iter().position(|s| *s == status).unwrap_or(0)
    }
}

/// Whether agent `i` of `fleet` is available with a free slot, before any placement.
#[inline]
fn eligible_at_start(fleet: &Fleet, i: usize) -> bool {
    takes_work(fleet.status[i], fleet.slots[i])
}

/// Agent `i`'s free amount and `1 / capacity` of dimension `d` (of the fleet's, then
/// those only the batch names), before any placement. The inverse is 0 where the
/// capacity is unknown or unlimited; agents that declared no capacity have any amount
/// of a dimension only the batch names, the others none.
#[inline]
fn fleet_column(fleet: &Fleet, i: usize, d: usize) -> (u64, f64) {
    let known = fleet.dims.len();
    let (f, c) = if d < known {
        (fleet.free[i * known + d], fleet.capacity[i * known + d])
    } else if fleet.unlimited[i] {
        (u64::MAX, 0)
    } else {
        (0, 0)
    };
    let inv = if c == 0 || f == u64::MAX {
        0.0
    } else {
        1.0 / c as f64
    };
    (f, inv)
}

/// The first dimension of `t.need_dims` where the agent (whose free amounts `free`
/// gives) or the pool (`pool`) has less than the task needs.
#[inline]
fn short_dim(
    t: &CompiledTask,
    free: impl Fn(usize) -> u64,
    pool: impl Fn(usize) -> u64,
) -> Option<usize> {
    t.need_dims
        .iter()
        .find(|&&(d, need)| free(d) < need || pool(d) < need)
        .map(|&(d, _)| d)
}

/// The built-in scores of agent `i` for `t` under `weights`: (least, most, balanced,
/// affinity), with `column` giving the agent's free amount and `1 / capacity` of a
/// dimension. The one definition of the formulas, whichever columns an engine reads;
/// inlined into each caller, so that `column` costs what reading the columns costs.
#[inline(always)]
fn builtin_scores(
    weights: &ScoreWeights,
    t: &CompiledTask,
    i: usize,
    column: impl Fn(usize) -> (u64, f64),
) -> [f64; 4] {
    let mut sum = 0.0;
    let mut sum_sq = 0.0;
    for &d in &t.scored_dims {
        let (free, inv) = column(d);
        let util = if inv == 0.0 {
            0.0
        } else {
            1.0 - (free - t.needs[d]) as f64 * inv
        };
        sum += util;
        sum_sq += util * util;
    }
    let k = t.scored_dims.len() as f64;
    let mean = sum / k;
    let balanced = if weights.balanced > 0.0 {
        100.0 * (1.0 - (sum_sq / k - mean * mean).max(0.0).sqrt())
    } else {
        0.0
    };
    [100.0 * (1.0 - mean), 100.0 * mean, balanced, affinity(t, i)]
}

/// The affinity score of agent `i` for `t`, the one built-in score that depends on
/// the agent and not only on its columns.
#[inline]
fn affinity(t: &CompiledTask, i: usize) -> f64 {
    affinity_at(&t.affinity, i)
}

/// [`affinity`] from the task's affinity column itself, for a loop that holds it.
#[inline]
fn affinity_at(affinities: &[f64], i: usize) -> f64 {
    affinities.get(i).map_or(0.0, |a| 100.0 * a)
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_applies_every_cycle_once() {
        // Fixed points, a 2-cycle and a 3-cycle.
        let mut items = ['a', 'b', 'c', 'd', 'e', 'f'];
        let mut from = [0, 4, 5, 3, 1, 2];
        permute(&mut items, &mut from);
        assert_eq!(items, ['a', 'e', 'f', 'd', 'b', 'c']);
        assert_eq!(from, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn permute_matches_a_gather_for_every_permutation_of_four() {
        // Every map of 4 positions to 4, keeping the bijections.
        for code in 0..256usize {
            let p: Vec<usize> = (0..4).map(|r| (code >> (2 * r)) & 3).collect();
            if (0..4).any(|x| !p.contains(&x)) {
                continue;
            }
            let gathered: Vec<usize> = p.iter().map(|&k| 10 * k).collect();
            let mut items = [0, 10, 20, 30];
            let mut from = p.clone();
            permute(&mut items, &mut from);
            assert_eq!(items.to_vec(), gathered, "from {p:?}");
            assert_eq!(from, [0, 1, 2, 3]);
        }
    }
}
