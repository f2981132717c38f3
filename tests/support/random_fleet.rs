//! Random fleets for the greedy assigner's property tests: agents with statuses,
//! running tasks, roles, capabilities (some past 128 names), declared capacities, a
//! ledger with allocations and a gpu pool limit, and affinity history. Shared by
//! `greedy_reuse.rs` and `greedy_small.rs`, which each generate their own tasks.

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::assignment::{AffinityTable, Fleet};
use concord::{AgentId, Capability, ResourceLedger, ResourceName, Resources, Role, Timestamp};
use proptest::prelude::*;

pub const ROLES: [&str; 6] = ["data", "ml", "ops", "qa", "security", "web"];
pub const CAPS: [&str; 5] = ["browser", "deploy", "gpu-driver", "shell", "sql"];
/// Host-named resources; a fleet declares some of them, a batch may name others.
pub const NAMED: [&str; 4] = ["fpga", "gpu", "nic", "tpu"];
pub const GIB: u64 = 1 << 30;

/// Declared cpu millicores, memory GiB and named resources (index into `NAMED`, amount).
pub type Capacity = (u64, u64, Vec<(usize, u64)>);

#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub status: AgentStatus,
    pub max_tasks: u32,
    pub running: u32,
    pub roles: Vec<usize>,
    pub caps: Vec<usize>,
    /// 140 capabilities no task asks for, so that the fleet's bitsets spill.
    pub pads: bool,
    /// What it declares; `None` is unlimited.
    pub capacity: Option<Capacity>,
    /// In the ledger (when the case has one), with this many quarters allocated.
    pub ledger: Option<u64>,
    /// Past successes at kind "work" (when the case has affinity).
    pub successes: u8,
}

fn status() -> impl Strategy<Value = AgentStatus> {
    prop_oneof![
        8 => Just(AgentStatus::Available),
        1 => Just(AgentStatus::Busy),
        1 => Just(AgentStatus::Unhealthy),
        1 => Just(AgentStatus::Quarantined),
        1 => Just(AgentStatus::Offline),
    ]
}

/// An agent with up to `roles` roles and `caps` capabilities.
pub fn agent_spec(roles: usize, caps: usize) -> impl Strategy<Value = AgentSpec> {
    let capacity = (
        0u64..8000,
        0u64..8,
        proptest::collection::vec((0..NAMED.len(), 0u64..4), 0..3),
    );
    (
        status(),
        1u32..4,
        0u32..3,
        proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 0..=roles),
        proptest::sample::subsequence((0..CAPS.len()).collect::<Vec<_>>(), 0..=caps),
        proptest::bool::weighted(0.05),
        proptest::option::weighted(0.7, capacity),
        proptest::option::weighted(0.5, 0u64..4),
        0u8..4,
    )
        .prop_map(
            |(status, max_tasks, running, roles, caps, pads, capacity, ledger, successes)| {
                AgentSpec {
                    status,
                    max_tasks,
                    running: running.min(max_tasks),
                    roles,
                    caps,
                    pads,
                    capacity,
                    ledger,
                    successes,
                }
            },
        )
}

pub fn agent_id(k: usize) -> AgentId {
    AgentId::new(2 * k as u64 + 1)
}

pub fn resources(cpu: u64, memory: u64, named: &[(usize, u64)]) -> Resources {
    let mut r = Resources::new()
        .with_cpu_millis(cpu)
        .with_memory_bytes(memory * GIB);
    for &(n, amount) in named {
        let have = r.amount(NAMED[n]);
        r = r.with_named(NAMED[n], have + amount).unwrap();
    }
    r
}

pub fn pad(n: usize) -> Capability {
    Capability::new(&format!("pad{n:03}")).unwrap()
}

/// The fleet of `agents`: registered with their statuses and running tasks, in a
/// ledger (read when `ledger`) with a gpu pool limit, with affinity history when
/// `affinity`.
pub fn fleet(
    agents: &[AgentSpec],
    ledger_read: bool,
    gpu_pool: Option<u64>,
    affinity: bool,
) -> Fleet {
    let now = Timestamp::from_secs(0);
    let mut registry = AgentRegistry::new();
    let mut ledger = ResourceLedger::new();
    let mut history = AffinityTable::default();
    for (k, a) in agents.iter().enumerate() {
        let id = agent_id(k);
        let mut p = AgentProfile::new(id, format!("agent-{k}")).with_max_tasks(a.max_tasks);
        for &r in &a.roles {
            p = p.with_role(Role::new(ROLES[r]).unwrap());
        }
        for &x in &a.caps {
            p = p.with_capability(Capability::new(CAPS[x]).unwrap());
        }
        if a.pads {
            for n in 0..140 {
                p = p.with_capability(pad(n));
            }
        }
        if let Some((cpu, memory, named)) = &a.capacity {
            p = p.with_capacity(resources(*cpu, *memory, named));
        }
        registry.register(p, now).unwrap();
        for _ in 0..a.running {
            let _ = registry.task_started(id, now);
        }
        let _ = registry.set_status(id, a.status, now);
        if let (Some((cpu, memory, named)), Some(quarters)) = (&a.capacity, a.ledger) {
            ledger
                .add_agent(id, &resources(*cpu, *memory, named))
                .unwrap();
            let named: Vec<_> = named.iter().map(|&(n, v)| (n, v * quarters / 4)).collect();
            let taken = resources(cpu * quarters / 4, memory * quarters / 4, &named);
            ledger.allocate(id, &taken, now).unwrap();
        }
        for s in 0..3 {
            history.record("work", id, s < a.successes);
        }
    }
    if let Some(limit) = gpu_pool {
        let gpu: ResourceName = "gpu".parse().unwrap();
        // Refused when more is allocated already: then the pool is unlimited.
        let _ = ledger.set_pool_limit(&gpu, Some(limit));
    }
    let fleet = Fleet::new(&registry, ledger_read.then_some(&ledger));
    if affinity {
        fleet.with_affinity(history)
    } else {
        fleet
    }
}
