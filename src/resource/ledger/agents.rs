//! The ledger's agents and its pool: adding and removing agents, their capacity and
//! task slots, pool limits, what is free, and the dense reads (by agent index and
//! dimension) that a fleet makes to plan without building a `Resources` per agent.
//! Apart from allocation because none of it grants anything: it sets and reads the
//! bounds that allocation and the queue check against.

use serde::{Deserialize, Serialize};

use crate::id::AgentId;
use crate::layout::{ChangeLog, Layout};
use crate::resource::error::LedgerError;
use crate::resource::resources::{ResourceName, Resources};

use super::{ResourceLedger, TASKS, UNLIMITED};

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

impl ResourceLedger {
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
    pub(super) fn record_change(&mut self, i: usize) {
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

    pub(super) fn index(&self, agent: AgentId) -> Result<u32, LedgerError> {
        // Not `ok_or`: an error built eagerly is dropped on every call, and its drop
        // is a call (other errors own strings). This is asked on every allocation.
        match self.agent_index.get(&agent) {
            Some(&i) => Ok(i),
            None => Err(LedgerError::UnknownAgent { agent }),
        }
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
    ///
    /// [`AllocationRequest::with_task`]: super::AllocationRequest::with_task
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
    pub(super) fn could_hold(&self, candidates: &[u32], needs: &[u64]) -> bool {
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
        // Counted again, exactly: without a limit the running total may have
        // saturated (agents whose capacities sum past `u64::MAX`), and with one it
        // must be exact from now on.
        let held = self.dim_of(resource).map_or(0, |d| {
            let n = self.dims.len();
            self.allocated
                .iter()
                .skip(d)
                .step_by(n)
                .map(|&a| u128::from(a))
                .sum()
        });
        let value = limit.unwrap_or(u64::MAX);
        if held > u128::from(value) {
            return Err(LedgerError::CapacityBelowAllocated {
                agent: AgentId::new(0),
                resource: resource.to_string(),
                allocated: u64::try_from(held).unwrap_or(u64::MAX),
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
        // At most `value` (checked above).
        self.pool_allocated[d] = u64::try_from(held).unwrap_or(u64::MAX);
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

    /// What `agent` has of `resource`: its capacity, and what it holds now. `None`
    /// for an agent the ledger does not know; zeros for a resource it never heard
    /// of. A policy reading the few resources a task needs reads them here, where
    /// [`capacity`](Self::capacity) and [`allocated`](Self::allocated) build whole
    /// amounts.
    pub(crate) fn amounts_of(&self, agent: AgentId, resource: &ResourceName) -> Option<(u64, u64)> {
        let i = self.index(agent).ok()? as usize;
        Some(self.dim_of(resource).map_or((0, 0), |d| {
            let at = i * self.dims.len() + d;
            (self.capacity[at], self.allocated[at])
        }))
    }

    /// Whether `agent` holds nothing, its task slots aside (as
    /// [`allocated`](Self::allocated) shows it): `None` for an agent the ledger does
    /// not know.
    pub(crate) fn holds_nothing(&self, agent: AgentId) -> Option<bool> {
        let i = self.index(agent).ok()? as usize;
        let row = &self.allocated[self.row(&self.allocated, i)];
        Some(row.iter().enumerate().all(|(d, &x)| x == 0 || d == TASKS))
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
    pub(super) fn free_dim(&self, i: usize, d: usize) -> u64 {
        let k = i * self.dims.len() + d;
        let agent = self.capacity[k] - self.allocated[k];
        let agent = agent.saturating_sub(self.reserved[k]);
        // No limit: the fleet's total (which may pass any one agent's capacity) is no
        // bound on an agent.
        if self.pool_limit[d] == u64::MAX {
            return agent;
        }
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
}
