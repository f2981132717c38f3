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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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

/// The version [`ResourceLedger::snapshot`] writes. [`ResourceLedger::restore`] reads
/// it and version 1 (written before task slots were the ledger's own: a version-1
/// ledger limits no agent's tasks).
pub const LEDGER_SNAPSHOT_VERSION: u32 = 2;

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

/// A live allocation, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Allocation {
    /// Its id.
    pub id: AllocationId,
    /// The agent whose capacity it holds.
    pub agent: AgentId,
    /// What it holds.
    pub resources: Resources,
    /// The task it is for, if known.
    pub task: Option<TaskId>,
    /// Its priority.
    pub priority: Priority,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// The lease length, if it has one.
    #[serde(with = "opt_duration_ms")]
    pub lease: Option<Duration>,
    /// When the lease runs out, if it has one.
    pub expires_at: Option<Timestamp>,
    /// When it was last granted, renewed or touched.
    pub last_active: Timestamp,
    /// When its task was reported finished, if it was.
    pub task_finished_at: Option<Timestamp>,
}

/// A request that was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Grant {
    /// The queued request that was served; `None` for an immediate allocation.
    pub request: Option<RequestId>,
    /// The new allocation.
    pub allocation: AllocationId,
    /// The agent it is on.
    pub agent: AgentId,
    /// The task, if any.
    pub task: Option<TaskId>,
    /// How long the request waited.
    #[serde(with = "duration_ms")]
    pub waited: Duration,
}

/// What [`ResourceLedger::request`] did with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// Granted at once.
    Granted(Grant),
    /// Queued: served by a later release, expiry, reclaim or drain.
    Queued(RequestId),
}

/// A request waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaitingRequest {
    /// Its id.
    pub id: RequestId,
    /// The request.
    pub request: AllocationRequest,
    /// When it was queued.
    pub enqueued_at: Timestamp,
    /// The agent it holds a reservation on, if it has waited long enough to get one.
    pub reserved_on: Option<AgentId>,
}

/// Allocations released by [`ResourceLedger::expire`] or
/// [`ResourceLedger::reclaim_idle`], and the waiting requests served with what they
/// freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Released {
    /// The allocations released, in id order.
    pub released: Vec<Allocation>,
    /// Waiting requests served afterwards.
    pub grants: Vec<Grant>,
}

/// Why an allocation looks leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeakReason {
    /// Its lease ran out and it was not released.
    LeaseExpired {
        /// When the lease ran out.
        expired_at: Timestamp,
    },
    /// Its task finished and it was not released.
    TaskFinished {
        /// When the task finished.
        finished_at: Timestamp,
    },
}

impl fmt::Display for LeakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakReason::LeaseExpired { expired_at } => write!(f, "lease expired at {expired_at}"),
            LeakReason::TaskFinished { finished_at } => write!(f, "task finished at {finished_at}"),
        }
    }
}

impl fmt::Display for Leak {
    /// `alloc#2 on agent#2 for task#7 (cpu=1): task finished at 2023-11-14T22:13:20.000Z, overdue 300s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.allocation, self.agent)?;
        if let Some(t) = self.task {
            write!(f, " for {t}")?;
        }
        write!(
            f,
            " ({}): {}, overdue {}s",
            self.resources,
            self.reason,
            self.overdue.as_secs()
        )
    }
}

/// An allocation held past its lease or past its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Leak {
    /// The allocation.
    pub allocation: AllocationId,
    /// Its agent.
    pub agent: AgentId,
    /// Its task, if known.
    pub task: Option<TaskId>,
    /// What it holds.
    pub resources: Resources,
    /// Why it looks leaked.
    pub reason: LeakReason,
    /// How long it has been held past that point.
    #[serde(with = "duration_ms")]
    pub overdue: Duration,
}

/// An agent holding a large share of the system's resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeavyUser {
    /// The agent.
    pub agent: AgentId,
    /// What it holds in all.
    pub allocated: Resources,
    /// How many allocations it holds.
    pub allocations: usize,
    /// The resource where its share is largest.
    pub dominant: ResourceName,
    /// Its share of the whole system's capacity of that resource, in `[0, 1]`.
    pub share: f64,
}

/// Use of one resource across the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// The resource.
    pub resource: ResourceName,
    /// Total capacity over all agents.
    pub capacity: u64,
    /// Allocated over all agents.
    pub allocated: u64,
    /// Reserved for waiting requests.
    pub reserved: u64,
    /// The pool limit, if there is one.
    pub pool_limit: Option<u64>,
    /// `allocated / min(capacity, pool_limit)`, in `[0, 1]`; zero with no capacity.
    pub utilization: f64,
}

/// Use of one agent's capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentUsage {
    /// The agent.
    pub agent: AgentId,
    /// Its capacity.
    pub capacity: Resources,
    /// What it holds.
    pub allocated: Resources,
    /// What is free for new requests (after reservations).
    pub free: Resources,
    /// How many allocations it holds.
    pub allocations: usize,
    /// Its dominant share: the largest `allocated / capacity` over its resources.
    pub utilization: f64,
}

/// A point-in-time report of the ledger: the resource exhaustion procedure's
/// `generate_usage_report()`.
///
/// `Display` renders it as a plain-text table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageReport {
    /// Per resource, by name.
    pub resources: Vec<ResourceUsage>,
    /// Per agent, by id.
    pub agents: Vec<AgentUsage>,
    /// Live allocations.
    pub allocations: usize,
    /// Waiting requests.
    pub waiting: usize,
}

impl fmt::Display for UsageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} allocations, {} waiting requests",
            self.allocations, self.waiting
        )?;
        writeln!(
            f,
            "{:<14} {:>12} {:>12} {:>12} {:>6}",
            "resource", "capacity", "allocated", "reserved", "used"
        )?;
        for r in &self.resources {
            writeln!(
                f,
                "{:<14} {:>12} {:>12} {:>12} {:>5.1}%",
                r.resource.as_str(),
                r.resource.format_amount(r.capacity),
                r.resource.format_amount(r.allocated),
                r.resource.format_amount(r.reserved),
                r.utilization * 100.0
            )?;
        }
        writeln!(
            f,
            "{:<14} {:>6} {:>6}  allocated",
            "agent", "allocs", "used"
        )?;
        for a in &self.agents {
            writeln!(
                f,
                "{:<14} {:>6} {:>5.1}%  {}",
                a.agent.to_string(),
                a.allocations,
                a.utilization * 100.0,
                a.allocated
            )?;
        }
        Ok(())
    }
}

/// The free capacity of one agent, from [`ResourceLedger::availability`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentAvailability {
    /// The agent.
    pub agent: AgentId,
    /// What a new request could take on it now: capacity minus allocations minus
    /// reservations, also bounded by the pool's free amounts.
    pub free: Resources,
    /// How many more tasks it could start now, if its task slots are limited.
    pub free_task_slots: Option<u32>,
}

/// One agent's capacity in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCapacity {
    /// The agent.
    pub agent: AgentId,
    /// Its capacity.
    pub capacity: Resources,
    /// How many tasks it may run at once, if limited
    /// ([`ResourceLedger::set_task_slots`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots: Option<u32>,
}

/// Everything a [`ResourceLedger`] knows, as plain serde data: persist it, and
/// [`ResourceLedger::restore`] rebuilds the same ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LedgerSnapshot {
    /// [`LEDGER_SNAPSHOT_VERSION`] when written.
    pub version: u32,
    /// The settings.
    pub config: LedgerConfig,
    /// Agents and their capacity, by id.
    pub agents: Vec<AgentCapacity>,
    /// Pool limits, by resource name.
    pub pool_limits: BTreeMap<ResourceName, u64>,
    /// Live allocations, by id.
    pub allocations: Vec<Allocation>,
    /// Waiting requests, by id.
    pub waiting: Vec<WaitingRequest>,
    /// The next allocation id to issue.
    pub next_allocation: u64,
    /// The next request id to issue.
    pub next_request: u64,
}

impl LedgerSnapshot {
    /// Turns `legacy`, an extended resource a host used to count tasks per agent
    /// before the ledger counted them itself, into task slots: each agent's capacity
    /// of it becomes its task slots, and it leaves every allocation and waiting
    /// request (an allocation for a task takes a slot of its own now).
    pub(crate) fn adopt_task_slots(&mut self, legacy: &ResourceName) {
        for a in &mut self.agents {
            let slots = a.capacity.get(legacy);
            a.task_slots = Some(u32::try_from(slots).unwrap_or(u32::MAX));
            a.capacity.set(legacy, 0);
        }
        for a in &mut self.allocations {
            a.resources.set(legacy, 0);
        }
        for w in &mut self.waiting {
            w.request.needs.set(legacy, 0);
        }
        self.pool_limits.remove(legacy);
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
    enqueued_at: Timestamp,
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

    // ----- agents and pool -----------------------------------------------------

    /// The current layout (see [`Layout`]).
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// The agents (dense indices) whose capacity or allocations changed, for a view
    /// that rereads only those: see [`plain_free_row_into`](Self::plain_free_row_into).
    pub(crate) fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// Records that the capacity or allocations of the agent of dense index `i`
    /// changed.
    fn record_change(&mut self, i: usize) {
        // As the registry keeps its log: an eighth of the agents, at least 64.
        let keep = (self.agent_ids.len() / 8).max(64);
        self.changes.record(i, keep);
    }

    /// The dense index of `agent`, for [`free_at`](Self::free_at).
    pub(crate) fn dense_index(&self, agent: AgentId) -> Option<u32> {
        self.agent_index.get(&agent).copied()
    }

    /// The dimension of `name`, for [`free_at`](Self::free_at) and
    /// [`pool_available_at`](Self::pool_available_at).
    pub(crate) fn dimension(&self, name: &ResourceName) -> Option<usize> {
        self.dim_of(name)
    }

    /// What [`free`](Self::free) says of dimension `d` on the agent of dense index
    /// `i`, without building a `Resources`.
    pub(crate) fn free_at(&self, i: u32, d: usize) -> u64 {
        self.free_dim(i as usize, d)
    }

    /// The task slots free on the agent of dense index `i` for a new task: its limit
    /// less its tasks, less the slots reserved for waiting requests.
    pub(crate) fn free_task_slots_at(&self, i: u32) -> u64 {
        self.free_dim(i as usize, TASKS)
    }

    /// Whether some waiting request holds a reservation.
    pub(crate) fn has_reservations(&self) -> bool {
        self.reservations > 0
    }

    /// Whether what is free is plainly capacity less allocations: no request holds a
    /// reservation and no pool limit is set (see
    /// [`plain_free_rows_into`](Self::plain_free_rows_into)).
    pub(crate) fn free_is_plain(&self) -> bool {
        debug_assert_eq!(
            self.pool_limits,
            self.pool_limit.iter().filter(|&&l| l != u64::MAX).count()
        );
        self.reservations == 0 && self.pool_limits == 0
    }

    /// What [`free_at`](Self::free_at) says of the first `k` dimensions of many
    /// agents, when [`free_is_plain`](Self::free_is_plain): for each `rows[r]` that
    /// names an agent (by dense index), its amounts written into `out[r * k..][..k]`
    /// (in the ledger's order); `out` is `rows.len()` rows of `k`, and rows that name
    /// no agent are left as they were. A fleet reads the first dimensions only (the
    /// task-slot dimension that follows them is the registry's to report). Leaves
    /// `out` as it was (and returns `false`) if `k` is longer than a row, `out` is not
    /// `rows.len()` rows of `k`, or a row names no agent of the ledger.
    ///
    /// One pass over every agent, called for every one-task batch: the checks are
    /// made once for the whole table, not per agent.
    pub(crate) fn plain_free_rows_into(
        &self,
        rows: &[Option<u32>],
        k: usize,
        out: &mut [u64],
    ) -> bool {
        debug_assert!(self.free_is_plain());
        let n = self.dims.len();
        let agents = self.agent_ids.len();
        if k > n
            || out.len() != rows.len() * k
            || self.capacity.len() < agents * n
            || self.allocated.len() < agents * n
            || rows.iter().any(|r| r.is_some_and(|i| i as usize >= agents))
        {
            return false;
        }
        // Cpu, memory and storage, the fleet's usual dimensions: a row of fixed
        // length is three subtractions, where a loop of unknown length cost some sixty
        // instructions an agent.
        match k {
            3 => self.plain_free_rows_fixed::<3>(rows, out),
            _ => {
                for (r, row) in rows.iter().enumerate() {
                    let Some(i) = *row else { continue };
                    let base = i as usize * n;
                    let (capacity, allocated) =
                        (&self.capacity[base..][..k], &self.allocated[base..][..k]);
                    for ((f, c), a) in out[r * k..][..k].iter_mut().zip(capacity).zip(allocated) {
                        *f = c - a;
                    }
                }
            }
        }
        true
    }

    /// [`plain_free_rows_into`](Self::plain_free_rows_into) for the one agent of
    /// dense index `i`: its first `out.len()` amounts, capacity less allocations,
    /// written into `out`. Leaves `out` as it was (and returns `false`) if `out` is
    /// longer than a row or `i` names no agent of the ledger.
    pub(crate) fn plain_free_row_into(&self, i: usize, out: &mut [u64]) -> bool {
        debug_assert!(self.free_is_plain());
        let (n, k) = (self.dims.len(), out.len());
        let row = i
            .checked_mul(n)
            .and_then(|base| Some(base..base.checked_add(k)?));
        let Some(row) = row.filter(|_| k <= n) else {
            return false;
        };
        let (Some(capacity), Some(allocated)) =
            (self.capacity.get(row.clone()), self.allocated.get(row))
        else {
            return false;
        };
        for ((f, c), a) in out.iter_mut().zip(capacity).zip(allocated) {
            *f = c - a;
        }
        true
    }

    /// [`plain_free_rows_into`](Self::plain_free_rows_into) for `K` dimensions, its
    /// checks made.
    fn plain_free_rows_fixed<const K: usize>(&self, rows: &[Option<u32>], out: &mut [u64]) {
        let n = self.dims.len();
        for (row, out) in rows.iter().zip(out.chunks_exact_mut(K)) {
            let Some(i) = *row else { continue };
            let base = i as usize * n;
            let capacity = &self.capacity[base..][..K];
            let allocated = &self.allocated[base..][..K];
            for d in 0..K {
                out[d] = capacity[d] - allocated[d];
            }
        }
    }

    /// How many dimensions the ledger has (cpu, memory, storage, then extended ones).
    pub(crate) fn dimensions(&self) -> usize {
        self.dims.len()
    }

    /// What [`pool_available`](Self::pool_available) says of dimension `d`.
    pub(crate) fn pool_available_at(&self, d: usize) -> Option<u64> {
        (self.pool_limit[d] != u64::MAX).then(|| {
            (self.pool_limit[d] - self.pool_allocated[d]).saturating_sub(self.pool_reserved[d])
        })
    }

    fn index(&self, agent: AgentId) -> Result<u32, LedgerError> {
        self.agent_index
            .get(&agent)
            .copied()
            .ok_or(LedgerError::UnknownAgent { agent })
    }

    /// Adds an agent with `capacity`.
    ///
    /// # Errors
    /// [`LedgerError::DuplicateAgent`] if it is already in the ledger.
    pub fn add_agent(&mut self, agent: AgentId, capacity: &Resources) -> Result<(), LedgerError> {
        if self.agent_index.contains_key(&agent) {
            return Err(LedgerError::DuplicateAgent { agent });
        }
        self.ensure_dims(capacity);
        let i = u32::try_from(self.agent_ids.len()).map_err(|_| LedgerError::CorruptSnapshot {
            reason: "more than 2^32 agents".into(),
        })?;
        let mut dense = Vec::new();
        // Cannot fail: ensure_dims added every dimension of `capacity`.
        let _ = self.densify(capacity, &mut dense);
        dense[TASKS] = UNLIMITED;
        self.capacity.extend_from_slice(&dense);
        self.allocated.extend(std::iter::repeat_n(0, dense.len()));
        self.reserved.extend(std::iter::repeat_n(0, dense.len()));
        self.agent_ids.push(agent);
        self.agent_live.push(true);
        self.agent_allocs.push(0);
        self.agent_index.insert(agent, i);
        self.layout = Layout::fresh();
        tracing::debug!(agent.id = %agent, capacity = %capacity, "agent added to ledger");
        Ok(())
    }

    /// Changes an agent's capacity. Waiting requests are not drained; call
    /// [`drain`](Self::drain) to serve any that now fit.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`]; [`LedgerError::CapacityBelowAllocated`] if the new
    /// capacity is less than what the agent holds now.
    pub fn set_capacity(
        &mut self,
        agent: AgentId,
        capacity: &Resources,
    ) -> Result<(), LedgerError> {
        let i = self.index(agent)? as usize;
        // Check against current dimensions before changing anything.
        for (d, name) in self.dims.iter().enumerate() {
            if d == TASKS {
                continue;
            }
            let held = self.allocated[i * self.dims.len() + d];
            let cap = capacity.get(name);
            if held > cap {
                return Err(LedgerError::CapacityBelowAllocated {
                    agent,
                    resource: name.to_string(),
                    allocated: held,
                    capacity: cap,
                });
            }
        }
        self.ensure_dims(capacity);
        let mut dense = Vec::new();
        let _ = self.densify(capacity, &mut dense);
        let r = self.row(&self.capacity, i);
        dense[TASKS] = self.capacity[r.start + TASKS];
        self.capacity[r].copy_from_slice(&dense);
        self.layout = Layout::fresh();
        // The new layout has a fleet rebuild anyway; recorded so that the log stays
        // whole should resizing ever keep the layout.
        self.record_change(i);
        self.drop_hopeless_reservations();
        Ok(())
    }

    /// Limits how many tasks `agent` runs at once (`None`: no limit, the default).
    /// Every allocation made for a task ([`AllocationRequest::with_task`]) takes one
    /// of its task slots, and a waiting request for a task is granted only where one
    /// is free, so a host that counts tasks per agent needs no resource of its own
    /// for it. Waiting requests are not drained; call [`drain`](Self::drain).
    ///
    /// ```
    /// use concord::{AgentId, AllocationRequest, ResourceLedger, TaskId, Timestamp};
    ///
    /// let mut ledger = ResourceLedger::new();
    /// let worker = AgentId::new(1);
    /// ledger.add_agent(worker, &"cpu=8".parse()?)?;
    /// ledger.set_task_slots(worker, Some(1))?;
    /// let now = Timestamp::from_secs(0);
    /// let first = AllocationRequest::new(worker, "cpu=1".parse()?).with_task(TaskId::new(1));
    /// ledger.try_allocate(&first, now)?;
    /// let second = AllocationRequest::new(worker, "cpu=1".parse()?).with_task(TaskId::new(2));
    /// assert!(ledger.try_allocate(&second, now).is_err(), "cpu to spare, but no slot");
    /// assert_eq!(ledger.tasks_on(worker)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`]; [`LedgerError::CapacityBelowAllocated`] (naming
    /// `task slots`) if it runs more tasks now than the new limit.
    pub fn set_task_slots(
        &mut self,
        agent: AgentId,
        slots: Option<u32>,
    ) -> Result<(), LedgerError> {
        let i = self.index(agent)? as usize;
        let k = i * self.dims.len() + TASKS;
        let limit = slots.map_or(UNLIMITED, u64::from);
        if self.allocated[k] > limit {
            return Err(LedgerError::CapacityBelowAllocated {
                agent,
                resource: self.dims[TASKS].to_string(),
                allocated: self.allocated[k],
                capacity: limit,
            });
        }
        self.capacity[k] = limit;
        self.layout = Layout::fresh();
        self.record_change(i);
        self.drop_hopeless_reservations();
        Ok(())
    }

    /// How many tasks `agent` may run at once, if limited.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`].
    pub fn task_slots(&self, agent: AgentId) -> Result<Option<u32>, LedgerError> {
        let i = self.index(agent)? as usize;
        let limit = self.capacity[i * self.dims.len() + TASKS];
        // A limit is set from a u32: anything larger is "unlimited".
        Ok(u32::try_from(limit).ok())
    }

    /// How many tasks hold allocations on `agent` now (one per allocation made for a
    /// task).
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`].
    pub fn tasks_on(&self, agent: AgentId) -> Result<u32, LedgerError> {
        let i = self.index(agent)? as usize;
        // Never above a u32 limit, and every allocation is counted in a u32.
        Ok(u32::try_from(self.allocated[i * self.dims.len() + TASKS]).unwrap_or(u32::MAX))
    }

    /// Lifts every reservation for a request its agent can no longer ever hold (a
    /// capacity or pool limit came down since it was made): it would keep that
    /// capacity from everyone, for good. The request waits on, and the next drain may
    /// reserve for it where it could fit.
    ///
    /// Each request's [`holdable`](Waiting::holdable) is brought up to date on the
    /// way: every change that could alter it comes through here.
    fn drop_hopeless_reservations(&mut self) {
        for k in 0..self.waiting.len() {
            self.waiting[k].holdable =
                self.could_hold(&self.waiting[k].candidates, &self.waiting[k].needs);
            let Some(i) = self.waiting[k].reserved_on else {
                continue;
            };
            if self
                .never_fits(i as usize, &self.waiting[k].needs)
                .is_some()
            {
                let needs = std::mem::take(&mut self.waiting[k].needs);
                self.unreserve(i, &needs);
                self.waiting[k].needs = needs;
                self.waiting[k].reserved_on = None;
            }
        }
    }

    /// Whether some live agent among `candidates` could ever hold `needs`.
    fn could_hold(&self, candidates: &[u32], needs: &[u64]) -> bool {
        candidates
            .iter()
            .any(|&i| self.agent_live[i as usize] && self.never_fits(i as usize, needs).is_none())
    }

    /// Removes an agent that holds nothing and is named by no waiting request.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`]; [`LedgerError::AgentInUse`] while it holds
    /// allocations or a waiting request names it.
    pub fn remove_agent(&mut self, agent: AgentId) -> Result<Resources, LedgerError> {
        let i = self.index(agent)?;
        let allocations = self.agent_allocs[i as usize] as usize;
        if allocations > 0 || self.waiting.iter().any(|w| w.candidates.contains(&i)) {
            return Err(LedgerError::AgentInUse { agent, allocations });
        }
        let r = self.row(&self.capacity, i as usize);
        let capacity = self.undensify(&self.capacity[r.clone()]);
        self.capacity[r].fill(0);
        self.layout = Layout::fresh();
        self.agent_live[i as usize] = false;
        self.agent_index.remove(&agent);
        Ok(capacity)
    }

    /// Limits the total of `resource` allocated across all agents (a shared budget such
    /// as a GPU pool or an LLM token budget); `None` removes the limit.
    ///
    /// # Errors
    /// [`LedgerError::CapacityBelowAllocated`] (naming no agent: `agent#0`) if more is
    /// allocated now than the new limit.
    pub fn set_pool_limit(
        &mut self,
        resource: &ResourceName,
        limit: Option<u64>,
    ) -> Result<(), LedgerError> {
        let held = self.dim_of(resource).map_or(0, |d| self.pool_allocated[d]);
        let value = limit.unwrap_or(u64::MAX);
        if held > value {
            return Err(LedgerError::CapacityBelowAllocated {
                agent: AgentId::new(0),
                resource: resource.to_string(),
                allocated: held,
                capacity: value,
            });
        }
        let d = match self.dim_of(resource) {
            Some(d) => d,
            None => {
                self.ensure_dims(&Resources::new().with(resource, 1));
                self.dims.len() - 1
            }
        };
        let was = std::mem::replace(&mut self.pool_limit[d], value);
        match (was == u64::MAX, value == u64::MAX) {
            (true, false) => self.pool_limits += 1,
            (false, true) => self.pool_limits -= 1,
            _ => {}
        }
        self.drop_hopeless_reservations();
        Ok(())
    }

    /// The agents in the ledger, in the order they were added.
    pub fn agents(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.agent_ids
            .iter()
            .zip(&self.agent_live)
            .filter(|(_, live)| **live)
            .map(|(a, _)| *a)
    }

    /// An agent's capacity.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`].
    pub fn capacity(&self, agent: AgentId) -> Result<Resources, LedgerError> {
        let mut out = Resources::new();
        self.capacity_into(agent, &mut out)?;
        Ok(out)
    }

    /// Writes an agent's [`capacity`](Self::capacity) into `out`, reusing its storage:
    /// a caller that reads many agents in turn allocates nothing once `out` has grown.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`], leaving `out` as it was.
    pub fn capacity_into(&self, agent: AgentId, out: &mut Resources) -> Result<(), LedgerError> {
        let i = self.index(agent)? as usize;
        self.undensify_into(&self.capacity[self.row(&self.capacity, i)], out);
        Ok(())
    }

    /// What an agent holds now.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`].
    pub fn allocated(&self, agent: AgentId) -> Result<Resources, LedgerError> {
        let i = self.index(agent)? as usize;
        Ok(self.undensify(&self.allocated[self.row(&self.allocated, i)]))
    }

    /// What a new request could take on `agent` now: capacity minus allocations minus
    /// reservations, also bounded by the pool's free amounts.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`].
    pub fn free(&self, agent: AgentId) -> Result<Resources, LedgerError> {
        let mut out = Resources::new();
        self.free_into(agent, &mut out)?;
        Ok(out)
    }

    /// Writes what is [`free`](Self::free) on `agent` into `out`, reusing its storage:
    /// a caller that reads many agents in turn allocates nothing once `out` has grown.
    ///
    /// ```
    /// use concord::{AgentId, ResourceLedger, Resources, Timestamp};
    ///
    /// let mut ledger = ResourceLedger::new();
    /// let (a, b) = (AgentId::new(1), AgentId::new(2));
    /// ledger.add_agent(a, &"cpu=4,gpu=2".parse()?)?;
    /// ledger.add_agent(b, &"cpu=2".parse()?)?;
    /// ledger.allocate(a, &"cpu=1,gpu=1".parse()?, Timestamp::from_secs(0))?;
    ///
    /// let mut free = Resources::new();
    /// for agent in [a, b] {
    ///     ledger.free_into(agent, &mut free)?;
    ///     assert_eq!(free, ledger.free(agent)?);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`], leaving `out` as it was.
    pub fn free_into(&self, agent: AgentId, out: &mut Resources) -> Result<(), LedgerError> {
        let i = self.index(agent)? as usize;
        out.clear();
        for (d, name) in self.dims.iter().enumerate() {
            let free = self.free_dim(i, d);
            if free > 0 && d != TASKS {
                out.set(name, free);
            }
        }
        Ok(())
    }

    /// Free amount of dimension `d` on agent `i` for an unreserved request.
    #[inline]
    fn free_dim(&self, i: usize, d: usize) -> u64 {
        let k = i * self.dims.len() + d;
        let agent = self.capacity[k] - self.allocated[k];
        let agent = agent.saturating_sub(self.reserved[k]);
        let pool =
            (self.pool_limit[d] - self.pool_allocated[d]).saturating_sub(self.pool_reserved[d]);
        agent.min(pool)
    }

    /// What is left of the pool limit on `resource` for new requests (after
    /// allocations and reservations), or `None` if the pool does not limit it.
    pub fn pool_available(&self, resource: &ResourceName) -> Option<u64> {
        self.pool_available_at(self.dim_of(resource)?)
    }

    /// The free capacity of every agent (see [`free`](Self::free)), in the order they
    /// were added: the resource allocation process's `get_resource_availability()`.
    pub fn availability(&self) -> Vec<AgentAvailability> {
        self.agents()
            .map(|agent| {
                let i = self.agent_index[&agent] as usize;
                let limited = self.capacity[i * self.dims.len() + TASKS] != UNLIMITED;
                AgentAvailability {
                    agent,
                    free: self.free(agent).unwrap_or_default(),
                    free_task_slots: limited
                        .then(|| u32::try_from(self.free_dim(i, TASKS)).unwrap_or(u32::MAX)),
                }
            })
            .collect()
    }

    // ----- allocation -----------------------------------------------------------

    /// Whether `needs` could be allocated on `agent` now, respecting reservations and
    /// pool limits. An unknown agent can allocate nothing.
    pub fn can_allocate(&self, agent: AgentId, needs: &Resources) -> bool {
        let Ok(i) = self.index(agent) else {
            return false;
        };
        let mut dense = Vec::new();
        self.densify(needs, &mut dense).is_ok() && self.shortfall(i as usize, &dense).is_none()
    }

    /// The first dimension where `needs` does not fit on agent `i` for an unreserved
    /// request, with (dimension, free).
    #[inline]
    fn shortfall(&self, i: usize, needs: &[u64]) -> Option<(usize, u64)> {
        let n = self.dims.len();
        let base = i * n;
        if self.reservations == 0 {
            // Fast path: no reservations to respect.
            let cap = &self.capacity[base..base + n];
            let held = &self.allocated[base..base + n];
            let fits = needs
                .iter()
                .zip(cap.iter().zip(held))
                .zip(self.pool_limit.iter().zip(&self.pool_allocated))
                .all(|((&need, (&c, &h)), (&pl, &pa))| need <= c - h && need <= pl - pa);
            if fits {
                return None;
            }
        }
        (0..n).find_map(|d| {
            let free = self.free_dim(i, d);
            (needs[d] > free).then_some((d, free))
        })
    }

    /// The first dimension where `needs` exceeds what agent `i` (or the pool) could
    /// ever hold.
    fn never_fits(&self, i: usize, needs: &[u64]) -> Option<(usize, u64)> {
        let base = i * self.dims.len();
        (0..self.dims.len()).find_map(|d| {
            let cap = self.capacity[base + d].min(self.pool_limit[d]);
            (needs[d] > cap).then_some((d, cap))
        })
    }

    /// The most of each resource any one agent in the ledger could hold (its
    /// capacity, under the pool's limit), into `out`.
    pub(crate) fn largest_capacity_into(&self, out: &mut Resources) {
        let n = self.dims.len();
        let mut most = vec![0u64; n];
        for (i, _) in self
            .agent_live
            .iter()
            .enumerate()
            .filter(|(_, live)| **live)
        {
            for (d, m) in most.iter_mut().enumerate() {
                *m = (*m).max(self.capacity[i * n + d].min(self.pool_limit[d]));
            }
        }
        self.undensify_into(&most, out);
    }

    /// Whether the ledger holds no agent.
    pub(crate) fn is_empty_of_agents(&self) -> bool {
        self.agent_index.is_empty()
    }

    /// Whether `agent` could ever hold `needs` (with one task slot), were it empty:
    /// what a task waiting for an agent out of service needs to know of it.
    pub(crate) fn could_ever_hold(&self, agent: AgentId, needs: &Resources) -> bool {
        let Ok(i) = self.index(agent) else {
            return false;
        };
        let mut dense = Vec::new();
        if self.densify(needs, &mut dense).is_err() {
            return false;
        }
        dense[TASKS] = 1;
        self.never_fits(i as usize, &dense).is_none()
    }

    /// Allocates `needs` on `agent` now, or fails without queueing.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAgent`]; [`LedgerError::ExceedsCapacity`] if the agent
    /// could never hold it; [`LedgerError::Insufficient`] if it lacks free capacity now
    /// (capacity reserved for a long-waiting request counts as taken).
    pub fn allocate(
        &mut self,
        agent: AgentId,
        needs: &Resources,
        now: Timestamp,
    ) -> Result<AllocationId, LedgerError> {
        let i = self.index(agent)?;
        self.with_scratch(|l, _, dense| {
            l.check_fits(agent, i, needs, None, dense)?;
            Ok(l.commit(i, dense, None, Priority::default(), None, now))
        })
    }

    /// Runs `f` with the ledger's scratch buffers for dense candidates and needs, so
    /// that resolving a request allocates nothing once they have grown.
    fn with_scratch<R>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut Vec<u32>, &mut Vec<u64>) -> R,
    ) -> R {
        let mut candidates = std::mem::take(&mut self.scratch_candidates);
        let mut dense = std::mem::take(&mut self.scratch);
        let result = f(self, &mut candidates, &mut dense);
        self.scratch_candidates = candidates;
        self.scratch = dense;
        result
    }

    /// Densifies `needs` (and a task slot if it is for a `task`) into `dense` and
    /// checks that it fits on agent `i` now.
    fn check_fits(
        &self,
        agent: AgentId,
        i: u32,
        needs: &Resources,
        task: Option<TaskId>,
        dense: &mut Vec<u64>,
    ) -> Result<(), LedgerError> {
        self.densify_for(agent, needs, dense)?;
        dense[TASKS] = u64::from(task.is_some());
        if let Some((d, free)) = self.shortfall(i as usize, dense) {
            if let Some((d, cap)) = self.never_fits(i as usize, dense) {
                return Err(LedgerError::ExceedsCapacity {
                    agent,
                    resource: self.dims[d].to_string(),
                    needed: dense[d],
                    capacity: cap,
                });
            }
            return Err(LedgerError::Insufficient {
                agent,
                resource: self.dims[d].to_string(),
                needed: dense[d],
                free,
            });
        }
        Ok(())
    }

    /// Allocates `request` on its first candidate that fits now, or fails without
    /// queueing.
    ///
    /// # Errors
    /// As [`allocate`](Self::allocate), for the first candidate;
    /// [`LedgerError::NoCandidates`] if it names none.
    pub fn try_allocate(
        &mut self,
        request: &AllocationRequest,
        now: Timestamp,
    ) -> Result<Grant, LedgerError> {
        self.with_scratch(|l, candidates, dense| {
            l.resolve_request(request, candidates, dense)?;
            l.allocate_now(
                candidates,
                dense,
                request.task,
                request.priority,
                request.lease,
                now,
            )
        })
    }

    /// [`try_allocate`](Self::try_allocate) of `resources` on `agent` for `task`, with
    /// no lease: what a coordinator books per assignment, without building the request
    /// (a copy of the task's resources).
    pub(crate) fn try_allocate_task(
        &mut self,
        agent: AgentId,
        resources: &Resources,
        task: TaskId,
        priority: Priority,
        now: Timestamp,
    ) -> Result<Grant, LedgerError> {
        self.with_scratch(|l, candidates, dense| {
            candidates.clear();
            candidates.push(l.index(agent)?);
            l.densify_for(agent, resources, dense)?;
            dense[TASKS] = 1;
            l.allocate_now(candidates, dense, Some(task), priority, None, now)
        })
    }

    /// Books `dense` on the first of `candidates` (resolved, not empty) it fits on now,
    /// or says why not: it could never fit (on none of them), or it does not fit now
    /// (on the first).
    fn allocate_now(
        &mut self,
        candidates: &[u32],
        dense: &[u64],
        task: Option<TaskId>,
        priority: Priority,
        lease: Option<Duration>,
        now: Timestamp,
    ) -> Result<Grant, LedgerError> {
        // What fits now could always fit: the capacity check is for the refusal only.
        if let Some(i) = self.first_fit(candidates, dense) {
            let id = self.commit(i, dense, task, priority, lease, now);
            return Ok(self.grant(None, id, i, task, Duration::ZERO));
        }
        self.check_ever_fits(candidates, dense)?;
        let i = candidates[0];
        let (d, free) = self.shortfall(i as usize, dense).unwrap_or((0, 0));
        Err(LedgerError::Insufficient {
            agent: self.agent_ids[i as usize],
            resource: self.dims[d].to_string(),
            needed: dense[d],
            free,
        })
    }

    /// Books `request` on its first candidate that fits now, if any.
    fn grant_now(
        &mut self,
        request: &AllocationRequest,
        candidates: &[u32],
        dense: &[u64],
        now: Timestamp,
    ) -> Option<Grant> {
        let i = self.first_fit(candidates, dense)?;
        let id = self.commit(i, dense, request.task, request.priority, request.lease, now);
        let waited = now.duration_since(request.waiting_since.unwrap_or(now).min(now));
        Some(self.grant(None, id, i, request.task, waited))
    }

    /// Allocates `request` now if a candidate has room, or queues it until one does.
    ///
    /// # Errors
    /// [`LedgerError::NoCandidates`]; [`LedgerError::UnknownAgent`] for an unknown
    /// candidate; [`LedgerError::ExceedsCapacity`] if no candidate could ever hold it
    /// (it would wait forever).
    pub fn request(
        &mut self,
        request: AllocationRequest,
        now: Timestamp,
    ) -> Result<RequestOutcome, LedgerError> {
        self.with_scratch(|l, candidates, dense| {
            l.validate_request(&request, candidates, dense)?;
            if let Some(grant) = l.grant_now(&request, candidates, dense, now) {
                return Ok(RequestOutcome::Granted(grant));
            }
            let id = RequestId::new(l.next_request);
            l.next_request += 1;
            let enqueued_at = request.waiting_since.unwrap_or(now).min(now);
            tracing::debug!(request.id = %id, task.id = ?request.task, needs = %request.needs, "request queued");
            l.waiting.push(Waiting {
                id,
                request,
                candidates: candidates.clone(),
                needs: dense.clone(),
                enqueued_at,
                reserved_on: None,
                holdable: true,
            });
            Ok(RequestOutcome::Queued(id))
        })
    }

    /// Resolves a request as [`resolve_request`](Self::resolve_request) does, and checks
    /// that some candidate could ever hold it.
    fn validate_request(
        &self,
        request: &AllocationRequest,
        candidates: &mut Vec<u32>,
        dense: &mut Vec<u64>,
    ) -> Result<(), LedgerError> {
        self.resolve_request(request, candidates, dense)?;
        self.check_ever_fits(candidates, dense)
    }

    /// [`LedgerError::ExceedsCapacity`] if none of `candidates` could ever hold
    /// `dense`, naming the first.
    fn check_ever_fits(&self, candidates: &[u32], dense: &[u64]) -> Result<(), LedgerError> {
        if candidates
            .iter()
            .all(|&i| self.never_fits(i as usize, dense).is_some())
        {
            let i = candidates[0] as usize;
            let (d, cap) = self.never_fits(i, dense).unwrap_or((0, 0));
            return Err(LedgerError::ExceedsCapacity {
                agent: self.agent_ids[i],
                resource: self.dims[d].to_string(),
                needed: dense[d],
                capacity: cap,
            });
        }
        Ok(())
    }

    /// Resolves a request's candidates to dense indices in `candidates` and its needs
    /// to a dense vector in `dense`, overwriting both. A resource the ledger has no
    /// dimension for (no capacity anywhere) is an error if the request asks for any.
    fn resolve_request(
        &self,
        request: &AllocationRequest,
        candidates: &mut Vec<u32>,
        dense: &mut Vec<u64>,
    ) -> Result<(), LedgerError> {
        let agents = request.candidates();
        if agents.is_empty() {
            return Err(LedgerError::NoCandidates);
        }
        candidates.clear();
        for &a in agents {
            candidates.push(self.index(a)?);
        }
        self.densify_for(agents[0], &request.needs, dense)?;
        dense[TASKS] = u64::from(request.task.is_some());
        Ok(())
    }

    fn first_fit(&self, candidates: &[u32], dense: &[u64]) -> Option<u32> {
        candidates
            .iter()
            .copied()
            .find(|&i| self.shortfall(i as usize, dense).is_none())
    }

    fn grant(
        &self,
        request: Option<RequestId>,
        allocation: AllocationId,
        agent: u32,
        task: Option<TaskId>,
        waited: Duration,
    ) -> Grant {
        Grant {
            request,
            allocation,
            agent: self.agent_ids[agent as usize],
            task,
            waited,
        }
    }

    /// Books an allocation that has been checked to fit.
    fn commit(
        &mut self,
        i: u32,
        dense: &[u64],
        task: Option<TaskId>,
        priority: Priority,
        lease: Option<Duration>,
        now: Timestamp,
    ) -> AllocationId {
        let n = self.dims.len();
        let base = i as usize * n;
        add_into(&mut self.allocated[base..base + n], dense);
        add_into(&mut self.pool_allocated, dense);
        self.record_change(i as usize);
        let id = AllocationId::new(self.next_allocation);
        self.next_allocation += 1;
        let expires_at = lease.map(|l| now + l);
        let slot = Slot {
            id,
            agent: i,
            task,
            priority,
            granted_at: now,
            lease,
            expires_at,
            last_active: now,
            task_finished_at: None,
        };
        let s = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = slot;
                self.amounts[s as usize * n..(s as usize + 1) * n].copy_from_slice(dense);
                s
            }
            None => {
                self.slots.push(slot);
                self.amounts.extend_from_slice(dense);
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, s);
        self.agent_allocs[i as usize] += 1;
        if let Some(t) = expires_at {
            self.leases.push(Reverse((t, id)));
        }
        tracing::trace!(allocation.id = %id, agent.id = %self.agent_ids[i as usize], "allocated");
        id
    }

    /// Un-books a live allocation, returning its record.
    fn remove(&mut self, id: AllocationId) -> Result<Allocation, LedgerError> {
        let s = self
            .by_id
            .remove(&id)
            .ok_or(LedgerError::UnknownAllocation { allocation: id })?;
        let n = self.dims.len();
        let slot = &self.slots[s as usize];
        let base = slot.agent as usize * n;
        let amounts = &self.amounts[s as usize * n..(s as usize + 1) * n];
        sub_from(&mut self.allocated[base..base + n], amounts);
        sub_from(&mut self.pool_allocated, amounts);
        let agent = slot.agent as usize;
        self.agent_allocs[agent] -= 1;
        self.record_change(agent);
        self.free_slots.push(s);
        tracing::trace!(allocation.id = %id, "released");
        Ok(self.record(s))
    }

    fn record(&self, s: u32) -> Allocation {
        let n = self.dims.len();
        let slot = &self.slots[s as usize];
        Allocation {
            id: slot.id,
            agent: self.agent_ids[slot.agent as usize],
            resources: self.undensify(&self.amounts[s as usize * n..(s as usize + 1) * n]),
            task: slot.task,
            priority: slot.priority,
            granted_at: slot.granted_at,
            lease: slot.lease,
            expires_at: slot.expires_at,
            last_active: slot.last_active,
            task_finished_at: slot.task_finished_at,
        }
    }

    /// Releases an allocation, then serves waiting requests that now fit.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAllocation`] if it is not live (never issued, or already
    /// released).
    pub fn release(&mut self, id: AllocationId, now: Timestamp) -> Result<Vec<Grant>, LedgerError> {
        // Skip building the record on the hot path.
        let s = *self
            .by_id
            .get(&id)
            .ok_or(LedgerError::UnknownAllocation { allocation: id })?;
        let n = self.dims.len();
        self.by_id.remove(&id);
        let agent = self.slots[s as usize].agent as usize;
        let base = agent * n;
        let start = s as usize * n;
        let amounts = &self.amounts[start..start + n];
        sub_from(&mut self.allocated[base..base + n], amounts);
        sub_from(&mut self.pool_allocated, amounts);
        self.agent_allocs[agent] -= 1;
        self.record_change(agent);
        self.free_slots.push(s);
        tracing::trace!(allocation.id = %id, "released");
        Ok(self.drain(now))
    }

    /// Whether allocation `id` is live.
    pub(crate) fn holds(&self, id: AllocationId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The record of a live allocation.
    pub fn allocation(&self, id: AllocationId) -> Option<Allocation> {
        self.by_id.get(&id).map(|&s| self.record(s))
    }

    /// Every live allocation, by id.
    pub fn allocations(&self) -> Vec<Allocation> {
        let mut v: Vec<Allocation> = self.by_id.values().map(|&s| self.record(s)).collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// How many allocations are live.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no allocation is live.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Renews an allocation's lease from `now` and marks it active.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAllocation`].
    pub fn renew(&mut self, id: AllocationId, now: Timestamp) -> Result<(), LedgerError> {
        let s = *self
            .by_id
            .get(&id)
            .ok_or(LedgerError::UnknownAllocation { allocation: id })?;
        let slot = &mut self.slots[s as usize];
        slot.last_active = now;
        if let Some(lease) = slot.lease {
            let t = now + lease;
            slot.expires_at = Some(t);
            self.leases.push(Reverse((t, id)));
        }
        Ok(())
    }

    /// Marks an allocation active at `now` (a heartbeat), without touching its lease.
    ///
    /// # Errors
    /// [`LedgerError::UnknownAllocation`].
    pub fn touch(&mut self, id: AllocationId, now: Timestamp) -> Result<(), LedgerError> {
        let s = *self
            .by_id
            .get(&id)
            .ok_or(LedgerError::UnknownAllocation { allocation: id })?;
        let slot = &mut self.slots[s as usize];
        slot.last_active = slot.last_active.max(now);
        Ok(())
    }

    /// Records that `task` finished at `now`: allocations still held for it from then
    /// on are reported by [`detect_leaks`](Self::detect_leaks). Returns how many
    /// allocations it still holds.
    pub fn task_finished(&mut self, task: TaskId, now: Timestamp) -> usize {
        let mut held = 0;
        for &s in self.by_id.values() {
            let slot = &mut self.slots[s as usize];
            if slot.task == Some(task) {
                slot.task_finished_at.get_or_insert(now);
                held += 1;
            }
        }
        held
    }

    /// Releases every allocation whose lease ran out by `now`, then serves waiting
    /// requests.
    pub fn expire(&mut self, now: Timestamp) -> Released {
        let mut ids = Vec::new();
        while let Some(Reverse((t, id))) = self.leases.peek().copied() {
            if t > now {
                break;
            }
            self.leases.pop();
            // Lazy deletion: skip entries of released or renewed allocations.
            if let Some(&s) = self.by_id.get(&id) {
                if self.slots[s as usize].expires_at == Some(t) {
                    ids.push(id);
                }
            }
        }
        self.release_all(ids, now, "lease expired")
    }

    /// Releases every allocation not renewed or touched for
    /// [`LedgerConfig::idle_after`] by `now` (the resource allocation process's
    /// "identify idle agents and release their resources"), then serves waiting
    /// requests.
    pub fn reclaim_idle(&mut self, now: Timestamp) -> Released {
        let idle = self.config.idle_after;
        let ids: Vec<AllocationId> = self
            .by_id
            .iter()
            .filter(|&(_, &s)| now.duration_since(self.slots[s as usize].last_active) >= idle)
            .map(|(id, _)| *id)
            .collect();
        self.release_all(ids, now, "idle")
    }

    fn release_all(&mut self, mut ids: Vec<AllocationId>, now: Timestamp, why: &str) -> Released {
        ids.sort();
        ids.dedup();
        let released: Vec<Allocation> = ids
            .into_iter()
            .filter_map(|id| self.remove(id).ok())
            .collect();
        for a in &released {
            tracing::info!(allocation.id = %a.id, agent.id = %a.agent, reason = why, "allocation reclaimed");
        }
        let grants = if released.is_empty() {
            Vec::new()
        } else {
            self.drain(now)
        };
        Released { released, grants }
    }

    /// Allocations held past their lease or past their task's end, by id: the resource
    /// exhaustion procedure's `detect_resource_leaks()`. Reports only; release them with
    /// [`release`](Self::release) or [`expire`](Self::expire).
    pub fn detect_leaks(&self, now: Timestamp) -> Vec<Leak> {
        let mut leaks: Vec<Leak> = self
            .by_id
            .values()
            .filter_map(|&s| {
                let slot = &self.slots[s as usize];
                let reason = match (slot.expires_at, slot.task_finished_at) {
                    (Some(t), _) if t <= now => LeakReason::LeaseExpired { expired_at: t },
                    (_, Some(t)) if t <= now => LeakReason::TaskFinished { finished_at: t },
                    _ => return None,
                };
                let since = match reason {
                    LeakReason::LeaseExpired { expired_at } => expired_at,
                    LeakReason::TaskFinished { finished_at } => finished_at,
                };
                let r = self.record(s);
                Some(Leak {
                    allocation: r.id,
                    agent: r.agent,
                    task: r.task,
                    resources: r.resources,
                    reason,
                    overdue: now.duration_since(since),
                })
            })
            .collect();
        leaks.sort_by_key(|l| l.allocation);
        leaks
    }

    // ----- queue --------------------------------------------------------------

    /// Requests waiting for capacity, in the order they would be considered at `now`.
    pub fn waiting(&self, now: Timestamp) -> Vec<WaitingRequest> {
        self.queue_order(now)
            .into_iter()
            .map(|k| self.waiting_record(&self.waiting[k]))
            .collect()
    }

    fn waiting_record(&self, w: &Waiting) -> WaitingRequest {
        WaitingRequest {
            id: w.id,
            request: w.request.clone(),
            enqueued_at: w.enqueued_at,
            reserved_on: w.reserved_on.map(|i| self.agent_ids[i as usize]),
        }
    }

    /// Removes a waiting request.
    ///
    /// # Errors
    /// [`LedgerError::UnknownRequest`] if it is not waiting.
    pub fn cancel(&mut self, request: RequestId) -> Result<AllocationRequest, LedgerError> {
        let k = self
            .waiting
            .iter()
            .position(|w| w.id == request)
            .ok_or(LedgerError::UnknownRequest { request })?;
        let w = self.waiting.remove(k);
        if let Some(i) = w.reserved_on {
            self.unreserve(i, &w.needs);
        }
        Ok(w.request)
    }

    fn effective_priority(&self, w: &Waiting, now: Timestamp) -> u64 {
        let step = self.config.aging_step.as_nanos().max(1);
        let aged = now.duration_since(w.enqueued_at).as_nanos() / step;
        u64::from(w.request.priority.0).saturating_add(u64::try_from(aged).unwrap_or(u64::MAX))
    }

    /// Indices into `waiting`: reservation holders first (oldest first), then the rest
    /// by effective priority, then by id.
    fn queue_order(&self, now: Timestamp) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.waiting.len()).collect();
        order.sort_by_key(|&k| {
            let w = &self.waiting[k];
            (
                w.reserved_on.is_none(),
                Reverse(if w.reserved_on.is_some() {
                    0
                } else {
                    self.effective_priority(w, now)
                }),
                w.id,
            )
        });
        order
    }

    fn reserve(&mut self, i: u32, needs: &[u64]) {
        let r = self.row(&self.reserved, i as usize);
        add_into(&mut self.reserved[r], needs);
        add_into(&mut self.pool_reserved, needs);
        self.reservations += 1;
    }

    fn unreserve(&mut self, i: u32, needs: &[u64]) {
        let r = self.row(&self.reserved, i as usize);
        sub_from(&mut self.reserved[r], needs);
        sub_from(&mut self.pool_reserved, needs);
        self.reservations -= 1;
    }

    /// The earliest time at which the passing of time alone changes the ledger: an
    /// allocation's lease runs out ([`expire`](Self::expire)), or a waiting request
    /// has waited [`LedgerConfig::reserve_after`] and is due a reservation
    /// ([`drain`](Self::drain)). `None` when nothing is timed. A time already past
    /// means "now"; after `expire` and `drain` at that time it moves on.
    ///
    /// A request that no candidate could hold any more (their capacity came down
    /// since it was made) gets no reservation, so its time is no deadline: it waits
    /// for capacity to come back, and its deadline with it.
    ///
    /// # Complexity
    /// O(w) for w waiting requests.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let lease = self.leases.peek().map(|Reverse((t, _))| *t);
        let reservation = self
            .waiting
            .iter()
            .filter(|w| w.reserved_on.is_none() && w.holdable)
            .map(|w| w.enqueued_at + self.config.reserve_after)
            .min();
        match (lease, reservation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request id never issued before and never to be issued again, for a task that
    /// waits outside the queue (behind another task's claim) but must be ordered and
    /// named among those that wait in it.
    pub(crate) fn mint_request_id(&mut self) -> RequestId {
        let id = RequestId::new(self.next_request);
        self.next_request += 1;
        id
    }

    /// Serves every waiting request that fits now, in queue order, and gives a
    /// reservation to each that has waited [`LedgerConfig::reserve_after`]. Called by
    /// every release; call it after raising a capacity or as time passes.
    pub fn drain(&mut self, now: Timestamp) -> Vec<Grant> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        // Reservations for requests that have waited long enough, oldest first.
        let mut due: Vec<usize> = (0..self.waiting.len())
            .filter(|&k| {
                let w = &self.waiting[k];
                w.reserved_on.is_none()
                    && now.duration_since(w.enqueued_at) >= self.config.reserve_after
            })
            .collect();
        due.sort_by_key(|&k| self.waiting[k].id);
        for k in due {
            let w = &self.waiting[k];
            // The first candidate that could ever hold it (validated at request time).
            let Some(i) = w.candidates.iter().copied().find(|&i| {
                self.agent_live[i as usize] && self.never_fits(i as usize, &w.needs).is_none()
            }) else {
                continue;
            };
            let needs = w.needs.clone();
            self.waiting[k].reserved_on = Some(i);
            self.reserve(i, &needs);
            tracing::debug!(request.id = %self.waiting[k].id, agent.id = %self.agent_ids[i as usize], "reservation made");
        }

        let mut grants = Vec::new();
        let mut served = vec![false; self.waiting.len()];
        // Reservation holders are served oldest first, each held back only by the
        // reservations older than its own: lift them all, then put back each one that
        // is not served, in order.
        let order = self.queue_order(now);
        for &k in &order {
            if let Some(i) = self.waiting[k].reserved_on {
                let needs = std::mem::take(&mut self.waiting[k].needs);
                self.unreserve(i, &needs);
                self.waiting[k].needs = needs;
            }
        }
        for k in order {
            let fit = match self.waiting[k].reserved_on {
                Some(i) => {
                    // Its own agent first, then any candidate with room now: a
                    // reservation is there to make room, not to keep the request from
                    // room another candidate has.
                    let needs = std::mem::take(&mut self.waiting[k].needs);
                    let fit = if self.shortfall(i as usize, &needs).is_none() {
                        Some(i)
                    } else {
                        self.first_fit(&self.waiting[k].candidates, &needs)
                    };
                    if fit.is_none() {
                        self.reserve(i, &needs);
                    }
                    self.waiting[k].needs = needs;
                    fit
                }
                None => self.first_fit(&self.waiting[k].candidates, &self.waiting[k].needs),
            };
            if let Some(i) = fit {
                let w = &self.waiting[k];
                let (needs, task, priority, lease, id, waited) = (
                    w.needs.clone(),
                    w.request.task,
                    w.request.priority,
                    w.request.lease,
                    w.id,
                    now.duration_since(w.enqueued_at),
                );
                let alloc = self.commit(i, &needs, task, priority, lease, now);
                tracing::debug!(request.id = %id, allocation.id = %alloc, "queued request granted");
                grants.push(self.grant(Some(id), alloc, i, task, waited));
                served[k] = true;
            }
        }
        let mut k = 0;
        self.waiting.retain(|_| {
            k += 1;
            !served[k - 1]
        });
        grants
    }

    // ----- reports --------------------------------------------------------------

    /// The `k` agents holding the largest dominant share of the system's total
    /// capacity, largest first (ties by id): the resource exhaustion procedure's
    /// `identify_heavy_users()`.
    pub fn heavy_users(&self, k: usize) -> Vec<HeavyUser> {
        let n = self.dims.len();
        let mut total = vec![0u64; n];
        for (i, live) in self.agent_live.iter().enumerate() {
            if *live {
                let cap = &self.capacity[i * n..(i + 1) * n];
                for (t, c) in total.iter_mut().zip(cap) {
                    *t = t.saturating_add(*c);
                }
            }
        }
        let mut users: Vec<HeavyUser> = self
            .agents()
            .filter_map(|agent| {
                let i = self.agent_index[&agent] as usize;
                let held = &self.allocated[i * n..(i + 1) * n];
                let (d, share) = (0..n)
                    .filter(|&d| d != TASKS && total[d] > 0 && held[d] > 0)
                    .map(|d| (d, held[d] as f64 / total[d] as f64))
                    .fold(None, |best: Option<(usize, f64)>, x| match best {
                        Some(b) if b.1 >= x.1 => Some(b),
                        _ => Some(x),
                    })?;
                Some(HeavyUser {
                    agent,
                    allocated: self.undensify(held),
                    allocations: self.agent_allocs[i] as usize,
                    dominant: self.dims[d].clone(),
                    share,
                })
            })
            .collect();
        users.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.agent.cmp(&b.agent)));
        users.truncate(k);
        users
    }

    /// A report of capacity, allocation and reservation per resource and per agent:
    /// the resource exhaustion procedure's `generate_usage_report()`.
    pub fn usage_report(&self) -> UsageReport {
        let n = self.dims.len();
        let mut resources: Vec<ResourceUsage> = (0..n)
            .filter(|&d| d != TASKS)
            .filter_map(|d| {
                let capacity: u64 = self
                    .agent_live
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| **l)
                    .fold(0u64, |s, (i, _)| s.saturating_add(self.capacity[i * n + d]));
                let pool_limit = (self.pool_limit[d] != u64::MAX).then_some(self.pool_limit[d]);
                if capacity == 0 && self.pool_allocated[d] == 0 && pool_limit.is_none() {
                    return None;
                }
                let usable = capacity.min(self.pool_limit[d]);
                Some(ResourceUsage {
                    resource: self.dims[d].clone(),
                    capacity,
                    allocated: self.pool_allocated[d],
                    reserved: self.pool_reserved[d],
                    pool_limit,
                    utilization: if usable == 0 {
                        0.0
                    } else {
                        self.pool_allocated[d] as f64 / usable as f64
                    },
                })
            })
            .collect();
        resources.sort_by(|a, b| a.resource.cmp(&b.resource));
        let mut agents: Vec<AgentUsage> = self
            .agents()
            .map(|agent| {
                let i = self.agent_index[&agent] as usize;
                let cap = &self.capacity[i * n..(i + 1) * n];
                let held = &self.allocated[i * n..(i + 1) * n];
                let utilization = (0..n)
                    .filter(|&d| d != TASKS && cap[d] > 0)
                    .map(|d| held[d] as f64 / cap[d] as f64)
                    .fold(0.0, f64::max);
                AgentUsage {
                    agent,
                    capacity: self.undensify(cap),
                    allocated: self.undensify(held),
                    free: self.free(agent).unwrap_or_default(),
                    allocations: self.agent_allocs[i] as usize,
                    utilization,
                }
            })
            .collect();
        agents.sort_by_key(|a| a.agent);
        UsageReport {
            resources,
            agents,
            allocations: self.by_id.len(),
            waiting: self.waiting.len(),
        }
    }

    // ----- snapshot and restore ---------------------------------------------------

    /// Everything the ledger knows, as plain serde data.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let mut agents: Vec<AgentCapacity> = self
            .agents()
            .map(|agent| AgentCapacity {
                agent,
                capacity: self.capacity(agent).unwrap_or_default(),
                task_slots: self.task_slots(agent).unwrap_or_default(),
            })
            .collect();
        agents.sort_by_key(|a| a.agent);
        let pool_limits = self
            .dims
            .iter()
            .enumerate()
            .filter(|(d, _)| self.pool_limit[*d] != u64::MAX)
            .map(|(d, name)| (name.clone(), self.pool_limit[d]))
            .collect();
        let mut waiting: Vec<WaitingRequest> = self
            .waiting
            .iter()
            .map(|w| self.waiting_record(w))
            .collect();
        waiting.sort_by_key(|w| w.id);
        LedgerSnapshot {
            version: LEDGER_SNAPSHOT_VERSION,
            config: self.config.clone(),
            agents,
            pool_limits,
            allocations: self.allocations(),
            waiting,
            next_allocation: self.next_allocation,
            next_request: self.next_request,
        }
    }

    /// Rebuilds a ledger from a snapshot, checking that it is consistent.
    ///
    /// # Errors
    /// [`LedgerError::CorruptSnapshot`] naming what is wrong: an unknown version, a
    /// duplicate agent or id, an allocation or request naming an unknown agent, an id
    /// not below its counter, or allocations over a capacity or pool limit.
    pub fn restore(snapshot: LedgerSnapshot) -> Result<Self, LedgerError> {
        let corrupt = |reason: String| LedgerError::CorruptSnapshot { reason };
        if !(1..=LEDGER_SNAPSHOT_VERSION).contains(&snapshot.version) {
            return Err(corrupt(format!(
                "version {} (expected 1 to {LEDGER_SNAPSHOT_VERSION})",
                snapshot.version
            )));
        }
        crate::id::check_counter("next_allocation", snapshot.next_allocation).map_err(corrupt)?;
        crate::id::check_counter("next_request", snapshot.next_request).map_err(corrupt)?;
        let mut ledger = ResourceLedger::with_config(snapshot.config);
        for a in &snapshot.agents {
            ledger
                .add_agent(a.agent, &a.capacity)
                .map_err(|_| corrupt(format!("{} appears twice", a.agent)))?;
            if a.task_slots.is_some() {
                // Cannot fail: the agent was just added and runs nothing.
                let _ = ledger.set_task_slots(a.agent, a.task_slots);
            }
        }
        for (name, limit) in &snapshot.pool_limits {
            ledger
                .set_pool_limit(name, Some(*limit))
                .map_err(|e| corrupt(e.to_string()))?;
        }
        let mut last = None;
        for a in &snapshot.allocations {
            if a.id.get() >= snapshot.next_allocation || last.is_some_and(|l| l >= a.id) {
                return Err(corrupt(format!(
                    "{} is out of order or not below next_allocation {}",
                    a.id, snapshot.next_allocation
                )));
            }
            last = Some(a.id);
            let i = ledger
                .index(a.agent)
                .map_err(|_| corrupt(format!("{} is on unknown {}", a.id, a.agent)))?;
            let mut dense = Vec::new();
            ledger
                .check_fits(a.agent, i, &a.resources, a.task, &mut dense)
                .map_err(|e| corrupt(format!("{} does not fit: {e}", a.id)))?;
            ledger.next_allocation = a.id.get();
            let id = ledger.commit(i, &dense, a.task, a.priority, None, a.granted_at);
            let s = ledger.by_id[&id] as usize;
            let slot = &mut ledger.slots[s];
            slot.lease = a.lease;
            slot.expires_at = a.expires_at;
            slot.last_active = a.last_active;
            slot.task_finished_at = a.task_finished_at;
            if let Some(t) = a.expires_at {
                ledger.leases.push(Reverse((t, id)));
            }
        }
        ledger.next_allocation = snapshot.next_allocation;
        let mut last = None;
        for w in snapshot.waiting {
            if w.id.get() >= snapshot.next_request || last.is_some_and(|l| l >= w.id) {
                return Err(corrupt(format!(
                    "{} is out of order or not below next_request {}",
                    w.id, snapshot.next_request
                )));
            }
            last = Some(w.id);
            // Its needs may name a resource whose capacity has since gone to zero.
            ledger.ensure_dims(&w.request.needs);
            let (mut candidates, mut needs) = (Vec::new(), Vec::new());
            ledger
                .resolve_request(&w.request, &mut candidates, &mut needs)
                .map_err(|e| corrupt(format!("{}: {e}", w.id)))?;
            let reserved_on = match w.reserved_on {
                Some(a) => {
                    let i = ledger
                        .index(a)
                        .map_err(|_| corrupt(format!("{} reserved on unknown {a}", w.id)))?;
                    if !candidates.contains(&i) {
                        return Err(corrupt(format!("{} reserved on non-candidate {a}", w.id)));
                    }
                    // A reservation is only made, and only kept, where the request
                    // could ever fit; one that could not would hold the agent for good.
                    if ledger.never_fits(i as usize, &needs).is_some() {
                        return Err(corrupt(format!(
                            "{} reserved on {a}, which could never hold it",
                            w.id
                        )));
                    }
                    ledger.reserve(i, &needs);
                    Some(i)
                }
                None => None,
            };
            let holdable = ledger.could_hold(&candidates, &needs);
            ledger.waiting.push(Waiting {
                id: w.id,
                request: w.request,
                candidates,
                needs,
                enqueued_at: w.enqueued_at,
                reserved_on,
                holdable,
            });
        }
        ledger.next_request = snapshot.next_request;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn res(cpu: u64, gpu: u64, slots: Option<u64>, tpu: u64) -> Resources {
        let mut r = Resources::new().with_cpu_millis(cpu);
        let name = |n: &str| ResourceName::new(n).expect("valid name");
        r.set(&name("gpu"), gpu);
        r.set(&name("tpu"), tpu);
        if let Some(s) = slots {
            r.set(&name("slots"), s);
        }
        r
    }

    proptest! {
        /// The coordinator's booking (`try_allocate_task`) does exactly what the
        /// request it stands for does: the same grant or error, the same ledger after.
        #[test]
        fn booking_a_task_is_the_request_for_the_task(
            capacity in (0u64..4000, 0u64..3, proptest::option::of(0u32..3)),
            held in proptest::collection::vec((0u64..3000, 0u64..2, any::<bool>()), 0..3),
            needs in (0u64..3000, 0u64..3, 0u64..2),
            known_agent in any::<bool>(),
        ) {
            let now = Timestamp::from_secs(1);
            let agent = AgentId::new(1);
            let mut ledger = ResourceLedger::new();
            ledger.add_agent(agent, &res(capacity.0, capacity.1, None, 0)).unwrap();
            ledger.set_task_slots(agent, capacity.2).unwrap();
            for (k, (cpu, gpu, for_task)) in held.into_iter().enumerate() {
                let mut request = AllocationRequest::new(agent, res(cpu, gpu, None, 0));
                if for_task {
                    request = request.with_task(TaskId::new(100 + k as u64));
                }
                let _ = ledger.try_allocate(&request, now);
            }
            let target = if known_agent { agent } else { AgentId::new(2) };
            let needs = res(needs.0, needs.1, None, needs.2);
            let task = TaskId::new(7);
            let priority = Priority::default();

            let mut fast = ledger.clone();
            let got = fast.try_allocate_task(target, &needs, task, priority, now);
            let request = AllocationRequest::new(target, needs).with_task(task).with_priority(priority);
            let want = ledger.try_allocate(&request, now);
            prop_assert_eq!(got, want);
            prop_assert_eq!(fast.snapshot(), ledger.snapshot());
            if let Some(slots) = capacity.2 {
                prop_assert!(ledger.tasks_on(agent).unwrap() <= slots, "never over the task slots");
            }
            prop_assert_eq!(fast.snapshot(), ledger.snapshot());
        }
    }
}
