//! Allocating and releasing: checking that needs fit (capacity, reservations, task
//! slots, pool limits), granting now or queuing a request, releasing, and the leases
//! and idle reclaim that take allocations back. Apart from the queue, which decides
//! *which* waiting request is served next; this file is what a grant and a release do
//! to the books.

use std::cmp::Reverse;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{AgentId, AllocationId, RequestId, TaskId};
use crate::priority::Priority;
use crate::resource::error::LedgerError;
use crate::resource::resources::Resources;
use crate::serde_util::{duration_ms, opt_duration_ms};

use super::{AllocationRequest, ResourceLedger, Slot, TASKS, Waiting, add_into, sub_from};

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

impl ResourceLedger {
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
    pub(super) fn shortfall(&self, i: usize, needs: &[u64]) -> Option<(usize, u64)> {
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
                .all(|((&need, (&c, &h)), (&pl, &pa))| {
                    need <= c - h && (pl == u64::MAX || need <= pl - pa)
                });
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
    pub(super) fn never_fits(&self, i: usize, needs: &[u64]) -> Option<(usize, u64)> {
        let base = i * self.dims.len();
        (0..self.dims.len()).find_map(|d| {
            let cap = self.capacity[base + d].min(self.pool_limit[d]);
            (needs[d] > cap).then_some((d, cap))
        })
    }

    /// The most each agent in the ledger could hold (its capacity, under the pool's
    /// limit), without the ones another could hold as well, into `out` in agent
    /// order: what fits no agent there fits no agent at all. One entry for a fleet
    /// of one size, a few for one of several.
    pub(crate) fn capacity_shapes_into(&self, out: &mut Vec<Resources>) {
        let n = self.dims.len();
        let mut kept: Vec<Vec<u64>> = Vec::new();
        for (i, _) in self
            .agent_live
            .iter()
            .enumerate()
            .filter(|(_, live)| **live)
        {
            let row: Vec<u64> = (0..n)
                .map(|d| self.capacity[i * n + d].min(self.pool_limit[d]))
                .collect();
            let within = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x <= y);
            if kept.iter().any(|k| within(&row, k)) {
                continue;
            }
            kept.retain(|k| !within(k, &row));
            kept.push(row);
        }
        out.clear();
        for row in &kept {
            let mut shape = Resources::new();
            self.undensify_into(row, &mut shape);
            out.push(shape);
        }
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
    pub(super) fn check_fits(
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
                queued_at: now,
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
    pub(super) fn resolve_request(
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

    pub(super) fn first_fit(&self, candidates: &[u32], dense: &[u64]) -> Option<u32> {
        candidates
            .iter()
            .copied()
            .find(|&i| self.shortfall(i as usize, dense).is_none())
    }

    pub(super) fn grant(
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
    pub(super) fn commit(
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
        let Some(s) = self.by_id.remove(&id) else {
            return Err(LedgerError::UnknownAllocation { allocation: id });
        };
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

    pub(super) fn record(&self, s: u32) -> Allocation {
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
        // Skip building the record on the hot path; and the error, which would be
        // dropped (a call: other errors own strings) even when it is not returned.
        let Some(&s) = self.by_id.get(&id) else {
            return Err(LedgerError::UnknownAllocation { allocation: id });
        };
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
    ///
    /// [`LedgerConfig::idle_after`]: super::LedgerConfig::idle_after
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
}
