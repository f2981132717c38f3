//! The fair queue of requests waiting for capacity: aging, reservations for requests
//! that have waited long enough, the next deadline, and serving the queue by
//! backfilling (see the module docs of the ledger, "Queueing"). Apart from allocation
//! because the order and the reservations are a policy of their own; granting goes
//! through the same commit as a direct allocation.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{AgentId, RequestId};
use crate::resource::error::LedgerError;

use super::{AllocationRequest, Grant, ResourceLedger, Waiting, add_into, sub_from};

/// A request waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaitingRequest {
    /// Its id.
    pub id: RequestId,
    /// The request.
    pub request: AllocationRequest,
    /// Since when it waits: when it was queued, or the time it first waited if it
    /// was queued again ([`AllocationRequest::with_waiting_since`]).
    pub enqueued_at: Timestamp,
    /// The agent it holds a reservation on, if it has waited long enough to get one.
    pub reserved_on: Option<AgentId>,
    /// When it was put in the queue this time, if later than `enqueued_at` (a
    /// request queued again): its wait for a reservation counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Timestamp>,
}

impl ResourceLedger {
    /// Requests waiting for capacity, in the order they would be considered at `now`.
    pub fn waiting(&self, now: Timestamp) -> Vec<WaitingRequest> {
        self.queue_order(now)
            .into_iter()
            .map(|k| self.waiting_record(&self.waiting[k]))
            .collect()
    }

    pub(super) fn waiting_record(&self, w: &Waiting) -> WaitingRequest {
        WaitingRequest {
            id: w.id,
            request: w.request.clone(),
            enqueued_at: w.enqueued_at,
            reserved_on: w.reserved_on.map(|i| self.agent_ids[i as usize]),
            queued_at: (w.queued_at > w.enqueued_at).then_some(w.queued_at),
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

    pub(super) fn reserve(&mut self, i: u32, needs: &[u64]) {
        let r = self.row(&self.reserved, i as usize);
        add_into(&mut self.reserved[r], needs);
        add_into(&mut self.pool_reserved, needs);
        self.reservations += 1;
    }

    pub(super) fn unreserve(&mut self, i: u32, needs: &[u64]) {
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
    ///
    /// [`LedgerConfig::reserve_after`]: super::LedgerConfig::reserve_after
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let lease = self.leases.peek().map(|Reverse((t, _))| *t);
        let reservation = self
            .waiting
            .iter()
            .filter(|w| w.reserved_on.is_none() && w.holdable)
            .map(|w| w.queued_at + self.config.reserve_after)
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
    ///
    /// [`LedgerConfig::reserve_after`]: super::LedgerConfig::reserve_after
    pub fn drain(&mut self, now: Timestamp) -> Vec<Grant> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        // Reservations for requests that have waited long enough, oldest first.
        let mut due: Vec<usize> = (0..self.waiting.len())
            .filter(|&k| {
                let w = &self.waiting[k];
                w.reserved_on.is_none()
                    && now.duration_since(w.queued_at) >= self.config.reserve_after
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
}
