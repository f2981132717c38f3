//! The ledger as plain serde data: [`ResourceLedger::snapshot`] writes it and
//! [`ResourceLedger::restore`] rebuilds the same ledger from it (reading version 1
//! too). Apart from the operations because restoring checks everything a snapshot
//! says, as untrusted input, against the invariants the operations keep.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::AgentId;
use crate::resource::error::LedgerError;
use crate::resource::resources::{ResourceName, Resources};

use super::{Allocation, LedgerConfig, ResourceLedger, Waiting, WaitingRequest};

/// The version [`ResourceLedger::snapshot`] writes. [`ResourceLedger::restore`] reads
/// it and version 1 (written before task slots were the ledger's own: a version-1
/// ledger limits no agent's tasks).
pub const LEDGER_SNAPSHOT_VERSION: u32 = 2;

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

impl ResourceLedger {
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
                queued_at: w.queued_at.unwrap_or(w.enqueued_at).max(w.enqueued_at),
                reserved_on,
                holdable,
            });
        }
        ledger.next_request = snapshot.next_request;
        Ok(ledger)
    }
}
