//! What the ledger reports of itself without changing anything: leaked allocations
//! (the resource exhaustion procedure's `detect_resource_leaks()`), heavy users
//! (`identify_heavy_users()`) and the usage report (`generate_usage_report()`), with
//! their serde types. Apart from the operations because they only read the books.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{AgentId, AllocationId, TaskId};
use crate::resource::resources::{ResourceName, Resources};
use crate::serde_util::duration_ms;

use super::{ResourceLedger, TASKS};

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

impl ResourceLedger {
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
}
