//! [`ResourceLedger`]: who holds which resources, and who waits for them.
//!
//! The ledger is a sans-I/O state machine. Every method that depends on time takes
//! `now`; nothing here reads a clock, spawns or blocks. Every failing call returns a
//! [`LedgerError`] and leaves the ledger exactly as it was.
//!
//! # Invariants
//! - Never over-allocates: for every agent and every resource, allocated <= capacity;
//!   for every pool-limited resource, the sum over all agents <= the pool limit.
//! - A release restores exactly what the allocation took.
//! - No agent runs more tasks than its task slots ([`ResourceLedger::set_task_slots`]):
//!   every allocation made for a task takes one.
//! - Allocation and request ids are never reused, including by a ledger restored from
//!   its snapshot.
//!
//! # Queueing
//! A request that does not fit now may wait ([`ResourceLedger::request`]). Waiting
//! requests are served in order of *effective* priority: their priority plus one for
//! every [`LedgerConfig::aging_step`] they have waited, so nothing starves behind a
//! stream of higher-priority work. Serving is backfilling: a request that fits now is
//! granted even if a larger one ahead of it does not (no head-of-line blocking). To
//! keep that from starving the large request, a request that has waited
//! [`LedgerConfig::reserve_after`] gets a *reservation* on one candidate agent: from
//! then on, nothing else may take the capacity it needs there, so the capacity freed by
//! releases accumulates for it (the "idle slot" and starvation bugs of Airflow pools and
//! Argo semaphores are what this rules out).
//!
//! # Layout
//! The ledger's state and its dense dimensions live here, with the types a request is
//! made of; each group of operations on it is a file of its own, so that each reads
//! alone: [`agents`] (capacity, task slots, the pool, and the dense reads a fleet
//! makes), [`allocation`] (allocate, request, release, leases), [`queue`] (the fair
//! queue, reservations and serving it), [`report`] (leaks, heavy users, the usage
//! report) and [`snapshot`] (snapshot and restore).

mod agents;
mod allocation;
mod queue;
mod report;
mod snapshot;
#[cfg(test)]
mod tests;

pub use agents::AgentAvailability;
pub use allocation::{Allocation, Grant, Released, RequestOutcome};
pub use queue::WaitingRequest;
pub use report::{AgentUsage, HeavyUser, Leak, LeakReason, ResourceUsage, UsageReport};
pub use snapshot::{AgentCapacity, LEDGER_SNAPSHOT_VERSION, LedgerSnapshot};

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::LedgerError;
use super::resources::{ExtendedName, ResourceName, Resources};
use crate::clock::Timestamp;
use crate::hash::FxHashMap;
use crate::id::{AgentId, AllocationId, RequestId, TaskId};
use crate::layout::{ChangeLog, Layout};
use crate::priority::Priority;
use crate::serde_util::{duration_ms, opt_duration_ms};

/// The dimension that counts tasks against each agent's task slots. It is the
/// ledger's own, not a resource: it is never named in a `Resources` the ledger hands
/// out, and no request names it (an allocation for a task takes one).
const TASKS: usize = 3;

/// Capacity of the task dimension for an agent whose tasks are not limited.
const UNLIMITED: u64 = u64::MAX;

/// Settings of a [`ResourceLedger`]. Serde data with sane defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// A waiting request gains one priority level per `aging_step` waited (default one
    /// minute).
    #[serde(with = "duration_ms")]
    pub aging_step: Duration,
    /// A request waiting this long gets a reservation (default ten minutes).
    #[serde(with = "duration_ms")]
    pub reserve_after: Duration,
    /// An allocation not renewed or touched for this long is idle and may be reclaimed
    /// by [`ResourceLedger::reclaim_idle`] (default thirty minutes).
    #[serde(with = "duration_ms")]
    pub idle_after: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            aging_step: Duration::from_secs(60),
            reserve_after: Duration::from_secs(600),
            idle_after: Duration::from_secs(1800),
        }
    }
}

impl LedgerConfig {
    /// Sets [`aging_step`](Self::aging_step).
    pub fn with_aging_step(mut self, d: Duration) -> Self {
        self.aging_step = d;
        self
    }

    /// Sets [`reserve_after`](Self::reserve_after).
    pub fn with_reserve_after(mut self, d: Duration) -> Self {
        self.reserve_after = d;
        self
    }

    /// Sets [`idle_after`](Self::idle_after).
    pub fn with_idle_after(mut self, d: Duration) -> Self {
        self.idle_after = d;
        self
    }
}

/// A request for resources on one of several candidate agents.
///
/// ```
/// use std::time::Duration;
/// use concord::{AgentId, AllocationRequest, Priority, TaskId};
///
/// let req = AllocationRequest::any_of([AgentId::new(1), AgentId::new(2)], "cpu=2".parse()?)
///     .with_task(TaskId::new(7))
///     .with_priority(Priority::HIGH)
///     .with_lease(Duration::from_secs(300));
/// assert_eq!(req.candidates().len(), 2);
/// # Ok::<(), concord::ResourceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationRequest {
    candidates: Candidates,
    needs: Resources,
    #[serde(default)]
    task: Option<TaskId>,
    #[serde(default)]
    priority: Priority,
    #[serde(default, with = "opt_duration_ms")]
    lease: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waiting_since: Option<Timestamp>,
}

impl AllocationRequest {
    /// A request for `needs` on `agent`.
    pub fn new(agent: AgentId, needs: Resources) -> Self {
        Self::any_of([agent], needs)
    }

    /// A request for `needs` on the first of `candidates` (in the order given) that
    /// can hold it.
    pub fn any_of(candidates: impl IntoIterator<Item = AgentId>, needs: Resources) -> Self {
        AllocationRequest {
            candidates: Candidates::collect(candidates),
            needs,
            task: None,
            priority: Priority::default(),
            lease: None,
            waiting_since: None,
        }
    }

    /// Records which task the resources are for: enables leak detection when the task
    /// finishes, and the allocation takes one of its agent's task slots
    /// ([`ResourceLedger::set_task_slots`]).
    pub fn with_task(mut self, task: TaskId) -> Self {
        self.task = Some(task);
        self
    }

    /// Sets the priority in the queue.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Gives the allocation a lease: it expires `lease` after it is granted unless
    /// renewed.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Says the request has waited since `since`: a host queuing again what it was
    /// granted and had to give back (the coordinator does, for a task whose claims
    /// collided) keeps its age in the queue, where aging and reservations count from
    /// `since` (a time after the request counts as the request's time), and its grant
    /// says how long it waited in all.
    ///
    /// ```
    /// use concord::resource::RequestOutcome;
    /// use concord::{AgentId, AllocationRequest, ResourceLedger, Timestamp};
    ///
    /// let mut ledger = ResourceLedger::new();
    /// ledger.add_agent(AgentId::new(1), &"cpu=1".parse()?)?;
    /// let t = |s| Timestamp::from_secs(s);
    /// let req = |since| AllocationRequest::new(AgentId::new(1), "cpu=1".parse().unwrap())
    ///     .with_waiting_since(since);
    /// let RequestOutcome::Granted(g) = ledger.request(req(t(40)), t(100))? else { panic!() };
    /// assert_eq!(g.waited.as_secs(), 60);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_waiting_since(mut self, since: Timestamp) -> Self {
        self.waiting_since = Some(since);
        self
    }

    /// When the request started waiting, if it says
    /// ([`with_waiting_since`](Self::with_waiting_since)).
    pub fn waiting_since(&self) -> Option<Timestamp> {
        self.waiting_since
    }

    /// The candidate agents, in order of preference.
    pub fn candidates(&self) -> &[AgentId] {
        self.candidates.as_slice()
    }

    /// The resources asked for.
    pub fn needs(&self) -> &Resources {
        &self.needs
    }

    /// The task, if any.
    pub fn task(&self) -> Option<TaskId> {
        self.task
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The lease, if any.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }
}

/// A request's candidate agents, in order of preference. Most requests name one agent,
/// so that one is kept inline: building such a request allocates nothing. Serializes,
/// compares and prints as the list it holds.
#[derive(Clone)]
enum Candidates {
    One(AgentId),
    /// None, or two or more.
    Many(Vec<AgentId>),
}

impl Candidates {
    fn collect(candidates: impl IntoIterator<Item = AgentId>) -> Self {
        let mut it = candidates.into_iter();
        let Some(first) = it.next() else {
            return Candidates::Many(Vec::new());
        };
        let Some(second) = it.next() else {
            return Candidates::One(first);
        };
        let mut all = Vec::with_capacity(2 + it.size_hint().0);
        all.extend([first, second]);
        all.extend(it);
        Candidates::Many(all)
    }

    fn as_slice(&self) -> &[AgentId] {
        match self {
            Candidates::One(a) => std::slice::from_ref(a),
            Candidates::Many(v) => v,
        }
    }
}

impl fmt::Debug for Candidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl PartialEq for Candidates {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Candidates {}

impl Serialize for Candidates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Candidates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let all = Vec::<AgentId>::deserialize(d)?;
        Ok(match *all {
            [one] => Candidates::One(one),
            _ => Candidates::Many(all),
        })
    }
}

/// `dst += src`, element by element. Callers have checked that nothing overflows.
#[inline]
fn add_into(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        // Saturating: reservations from a snapshot are summed unchecked against the
        // capacity (an allocation never gets here without fitting).
        *d = d.saturating_add(*s);
    }
}

/// `dst -= src`, element by element. Callers only take back what was added.
#[inline]
fn sub_from(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.saturating_sub(*s);
    }
}

/// One live allocation's bookkeeping; its amounts live in `ResourceLedger::amounts`.
#[derive(Debug, Clone)]
struct Slot {
    id: AllocationId,
    agent: u32,
    task: Option<TaskId>,
    priority: Priority,
    granted_at: Timestamp,
    lease: Option<Duration>,
    expires_at: Option<Timestamp>,
    last_active: Timestamp,
    task_finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Waiting {
    id: RequestId,
    request: AllocationRequest,
    /// Dense agent indices of the candidates.
    candidates: Vec<u32>,
    /// Dense needs, one per dimension.
    needs: Vec<u64>,
    /// Since when it waits: its age, for its place in the queue (a request queued
    /// again keeps it, see [`AllocationRequest::with_waiting_since`]).
    enqueued_at: Timestamp,
    /// When it was put in the queue this time: its wait for a reservation counts
    /// from here. A request queued again (a task handed back, or asked for again
    /// after a policy held it) keeps its place by its age but waits for a
    /// reservation afresh: due at once, a task a policy keeps refusing was granted
    /// its reservation, refused and queued again at every tick, with a deadline
    /// always due.
    queued_at: Timestamp,
    /// Dense index of the reserved agent.
    reserved_on: Option<u32>,
    /// Whether some live candidate could ever hold it. Set when it is made (a
    /// request none could hold is refused) and kept by every capacity change
    /// ([`ResourceLedger::drop_hopeless_reservations`]), so that finding the next
    /// deadline is no scan of candidates.
    holdable: bool,
}

/// Per-agent and pool capacity, allocations, leases, and a fair queue of requests
/// waiting for capacity: the resource allocation process's `ResourceManager`.
///
/// # Examples
/// ```
/// use concord::{AgentId, AllocationRequest, ResourceLedger, Timestamp};
/// use concord::resource::RequestOutcome;
///
/// let mut ledger = ResourceLedger::new();
/// let ops = AgentId::new(1);
/// ledger.add_agent(ops, &"cpu=4,memory=8Gi".parse()?)?;
/// let now = Timestamp::from_secs(0);
///
/// let first = ledger.allocate(ops, &"cpu=3,memory=4Gi".parse()?, now)?;
/// assert!(!ledger.can_allocate(ops, &"cpu=2".parse()?));
///
/// // A request that does not fit waits, and is served when capacity comes back.
/// let queued = ledger.request(AllocationRequest::new(ops, "cpu=2".parse()?), now)?;
/// assert!(matches!(queued, RequestOutcome::Queued(_)));
/// let grants = ledger.release(first, now)?;
/// assert_eq!(grants.len(), 1);
/// assert_eq!(ledger.usage_report().allocations, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Complexity
/// `allocate` and `release` are O(d) for d resource dimensions plus one hash lookup,
/// and `try_allocate` is O(c·d) for c candidates plus c lookups; none of them allocates
/// in steady state when the queue is empty, and neither do `free_into` and
/// `capacity_into`. Draining the queue is O(w log w + w·c·d) for w waiting requests
/// with c candidates each. Reports and leak
/// detection are O(allocations).
#[derive(Debug, Clone)]
pub struct ResourceLedger {
    config: LedgerConfig,
    /// Dimension names: cpu, memory, storage, the task slots ([`TASKS`]), then
    /// extended resources as they appear.
    dims: Vec<ResourceName>,
    agent_ids: Vec<AgentId>,
    agent_index: FxHashMap<AgentId, u32>,
    /// Whether each dense agent index is still in the ledger.
    agent_live: Vec<bool>,
    /// Live allocations per agent.
    agent_allocs: Vec<u32>,
    /// Agent-major, `dims.len()` per agent.
    capacity: Vec<u64>,
    allocated: Vec<u64>,
    reserved: Vec<u64>,
    /// Per dimension; `u64::MAX` where unlimited.
    pool_limit: Vec<u64>,
    /// How many dimensions have a pool limit (not `u64::MAX`): whether any has is
    /// asked at every fleet refresh, and this answers without a scan.
    pool_limits: usize,
    pool_allocated: Vec<u64>,
    pool_reserved: Vec<u64>,
    /// Number of waiting requests holding a reservation.
    reservations: usize,
    slots: Vec<Slot>,
    /// Slot-major, `dims.len()` per slot.
    amounts: Vec<u64>,
    free_slots: Vec<u32>,
    by_id: FxHashMap<AllocationId, u32>,
    leases: BinaryHeap<Reverse<(Timestamp, AllocationId)>>,
    waiting: Vec<Waiting>,
    next_allocation: u64,
    next_request: u64,
    /// Scratch buffer for dense needs.
    scratch: Vec<u64>,
    /// Scratch buffer for a request's dense candidate indices.
    scratch_candidates: Vec<u32>,
    /// Which agents, dimensions and capacities: changed whenever one of them does,
    /// read by a fleet to skip rebuilding its columns.
    layout: Layout,
    /// The agents (dense indices) whose capacity or allocations changed, read by a
    /// fleet to reread only those rows. Every change of either is recorded here: a
    /// change missed leaves a fleet planning on amounts the ledger then refuses.
    /// Reservations are not: a fleet rereads every row while any is held (see
    /// [`free_is_plain`](Self::free_is_plain)), and one made and lifted between two
    /// reads leaves its row as it was.
    changes: ChangeLog,
}

impl Default for ResourceLedger {
    fn default() -> Self {
        Self::with_config(LedgerConfig::default())
    }
}

impl ResourceLedger {
    /// An empty ledger with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger with `config`.
    pub fn with_config(config: LedgerConfig) -> Self {
        let dims = vec![
            ResourceName::Cpu,
            ResourceName::Memory,
            ResourceName::Storage,
            // Named only in errors ("needs 1 task slots, 0 free").
            ResourceName::Extended(ExtendedName::internal("task slots")),
        ];
        let n = dims.len();
        ResourceLedger {
            config,
            dims,
            agent_ids: Vec::new(),
            agent_index: FxHashMap::default(),
            agent_live: Vec::new(),
            agent_allocs: Vec::new(),
            capacity: Vec::new(),
            allocated: Vec::new(),
            reserved: Vec::new(),
            pool_limit: vec![u64::MAX; n],
            pool_limits: 0,
            pool_allocated: vec![0; n],
            pool_reserved: vec![0; n],
            reservations: 0,
            slots: Vec::new(),
            amounts: Vec::new(),
            free_slots: Vec::new(),
            by_id: FxHashMap::default(),
            leases: BinaryHeap::new(),
            waiting: Vec::new(),
            next_allocation: 1,
            next_request: 1,
            scratch: vec![0; n],
            scratch_candidates: Vec::new(),
            layout: Layout::fresh(),
            changes: ChangeLog::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    // ----- dimensions -------------------------------------------------------------

    fn dim_of(&self, name: &ResourceName) -> Option<usize> {
        match name {
            ResourceName::Cpu => Some(0),
            ResourceName::Memory => Some(1),
            ResourceName::Storage => Some(2),
            ResourceName::Extended(n) => self.ext_dim(n),
        }
    }

    /// The dimension of an extended resource, comparing names without cloning them.
    #[inline]
    fn ext_dim(&self, name: &ExtendedName) -> Option<usize> {
        // The task dimension's name is no parsed name: searching it too is harmless.
        self.dims[TASKS..]
            .iter()
            .position(|d| matches!(d, ResourceName::Extended(e) if e == name))
            .map(|i| i + TASKS)
    }

    /// Adds dimensions for every extended resource of `r` not yet known, re-striding
    /// the dense arrays.
    fn ensure_dims(&mut self, r: &Resources) {
        let new: Vec<ResourceName> = r
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.dim_of(n).is_none())
            .collect();
        if new.is_empty() {
            return;
        }
        self.layout = Layout::fresh();
        let old = self.dims.len();
        self.dims.extend(new);
        let now = self.dims.len();
        let restride = |v: &mut Vec<u64>, fill: u64| {
            let rows = v.len() / old;
            let mut out = Vec::with_capacity(rows * now);
            for row in v.chunks_exact(old) {
                out.extend_from_slice(row);
                out.extend(std::iter::repeat_n(fill, now - old));
            }
            *v = out;
        };
        restride(&mut self.capacity, 0);
        restride(&mut self.allocated, 0);
        restride(&mut self.reserved, 0);
        restride(&mut self.amounts, 0);
        self.pool_limit.resize(now, u64::MAX);
        self.pool_allocated.resize(now, 0);
        self.pool_reserved.resize(now, 0);
        self.scratch.resize(now, 0);
        for w in &mut self.waiting {
            w.needs.resize(now, 0);
        }
    }

    /// Writes `r` densely into `out`. Returns the first resource that has no dimension
    /// (so no capacity anywhere) with a non-zero amount.
    fn densify(&self, r: &Resources, out: &mut Vec<u64>) -> Result<(), (ResourceName, u64)> {
        out.clear();
        out.resize(self.dims.len(), 0);
        out[0] = r.cpu_millis();
        out[1] = r.memory_bytes();
        out[2] = r.storage_bytes();
        for (name, v) in r.extended_entries() {
            match self.ext_dim(name) {
                Some(d) => out[d] = *v,
                None => return Err((ResourceName::Extended(name.clone()), *v)),
            }
        }
        Ok(())
    }

    /// [`densify`](Self::densify), with a resource the ledger has no dimension for
    /// (no capacity anywhere) refused as more than `agent` could ever hold.
    fn densify_for(
        &self,
        agent: AgentId,
        r: &Resources,
        out: &mut Vec<u64>,
    ) -> Result<(), LedgerError> {
        self.densify(r, out)
            .map_err(|(name, v)| LedgerError::ExceedsCapacity {
                agent,
                resource: name.to_string(),
                needed: v,
                capacity: 0,
            })
    }

    fn undensify(&self, v: &[u64]) -> Resources {
        let mut r = Resources::new();
        self.undensify_into(v, &mut r);
        r
    }

    /// Writes the dense `v` into `out`, reusing its storage.
    fn undensify_into(&self, v: &[u64], out: &mut Resources) {
        out.clear();
        for (d, (name, &x)) in self.dims.iter().zip(v).enumerate() {
            if x > 0 && d != TASKS {
                out.set(name, x);
            }
        }
    }

    fn row(&self, v: &[u64], i: usize) -> std::ops::Range<usize> {
        let n = self.dims.len();
        debug_assert!(v.len() >= (i + 1) * n);
        i * n..(i + 1) * n
    }
}
