//! Assignment benches.
//!
//! `greedy/concord/{tasks}x{agents}`: `GreedyAssigner::assign_all` over a seeded fleet
//! (5 roles, 32 capabilities, 4 resource dimensions, 5% of agents unavailable) and
//! batch (one role, one or two capabilities, small resource needs each), throughput
//! in agent feasibility checks (tasks x agents); `1x1`, `1x10` and `1x100` are one-task
//! batches, as the workflow executor makes for a chain, where the per-call cost shows.
//! In those the first agent is made to fit the task (`1x1` is the executor's one-agent
//! fleet), so that each times a placement, not a rejection.
//! `greedy/naive_aos/...` is the plain array-of-structs loop (filter, least-allocated
//! score, pick the best) on the same data, as the baseline.
//!
//! `optimal_dense/...` and `optimal_sparse/...` (in `support/optimal.rs`) compare the
//! crate's linear assignment solvers with `lapjv` and `pathfinding::kuhn_munkres`;
//! `optimal_warm/...` times a re-solve after a few rows or columns changed, from
//! scratch and warm.

use std::hint::black_box;
use std::time::Duration;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::assignment::{Assigner, Fleet, GreedyAssigner};
use concord::{AgentId, Capability, Requirements, Resources, Role, Task, TaskId, Timestamp};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

#[path = "support/optimal.rs"]
mod optimal;
#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

const ROLES: [&str; 5] = ["ops", "qa", "framework", "security", "dev"];

fn capability(k: u64) -> Capability {
    Capability::new(&format!("cap-{k}")).unwrap()
}

struct Scenario {
    fleet: Fleet,
    tasks: Vec<Task>,
    aos: Vec<AosAgent>,
    aos_tasks: Vec<AosTask>,
}

/// A seeded fleet and batch. With `fit`, the first agent is made able to take the
/// first task (available, with its role and capabilities), as the executor's
/// one-agent fleet is: otherwise a one-agent case would mostly time a rejection.
fn scenario(tasks: usize, agents: usize, seed: u64, fit: bool) -> Scenario {
    let mut rng = Rng(seed);
    let now = Timestamp::from_secs(0);
    // Drawn in the same order whatever `fit` is, so that the other cases' data stays
    // what it always was; registered once the tasks are drawn.
    let mut profiles = Vec::with_capacity(agents);
    let mut aos = Vec::with_capacity(agents);
    let slots = (tasks / agents).max(1) as u32 + 2;
    for a in 0..agents {
        let role = rng.below(ROLES.len() as u64);
        let mut profile = AgentProfile::new(AgentId::new(a as u64), format!("agent-{a}"))
            .with_role(Role::new(ROLES[role as usize]).unwrap())
            .with_max_tasks(slots);
        let mut caps = 0u128;
        for _ in 0..6 {
            let c = rng.below(32);
            caps |= 1 << c;
            profile = profile.with_capability(capability(c));
        }
        let cpu = 4000 * (1 + rng.below(8));
        let mem = (4 + rng.below(28)) << 30;
        let capacity = Resources::new()
            .with_cpu_millis(cpu)
            .with_memory_bytes(mem)
            .with_storage_bytes(100 << 30)
            .with_named("gpu", rng.below(3))
            .unwrap();
        let available = rng.below(100) >= 5;
        aos.push(AosAgent {
            available,
            slots,
            roles: 1 << role,
            caps,
            free: [cpu, mem, 100 << 30, capacity.amount("gpu")],
            capacity: [cpu, mem, 100 << 30, capacity.amount("gpu")],
        });
        profiles.push(profile.with_capacity(capacity));
    }
    let mut list = Vec::with_capacity(tasks);
    let mut aos_tasks = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let role = rng.below(ROLES.len() as u64);
        let mut req = Requirements::new().with_role(Role::new(ROLES[role as usize]).unwrap());
        let mut caps = 0u128;
        for _ in 0..1 + rng.below(2) {
            let c = rng.below(32);
            caps |= 1 << c;
            req = req.with_capability(capability(c));
        }
        let cpu = 250 * (1 + rng.below(4));
        let mem = (1 + rng.below(4)) << 28;
        req = req.with_resources(Resources::new().with_cpu_millis(cpu).with_memory_bytes(mem));
        if fit && t == 0 {
            let mut profile = profiles[0]
                .clone()
                .with_role(Role::new(ROLES[role as usize]).unwrap());
            for c in (0..32).filter(|c| caps & (1 << c) != 0) {
                profile = profile.with_capability(capability(c));
            }
            profiles[0] = profile;
            let a = &mut aos[0];
            a.available = true;
            a.roles |= 1 << role;
            a.caps |= caps;
        }
        list.push(Task::new(TaskId::new(t as u64), "work", "").with_requirements(req));
        aos_tasks.push(AosTask {
            roles: 1 << role,
            caps,
            needs: [cpu, mem, 0, 0],
        });
    }
    let mut registry = AgentRegistry::new();
    for (profile, a) in profiles.into_iter().zip(&aos) {
        let id = profile.id();
        registry.register(profile, now).unwrap();
        if !a.available {
            registry
                .set_status(id, AgentStatus::Unhealthy, now)
                .unwrap();
        }
    }
    Scenario {
        fleet: Fleet::new(&registry, None),
        tasks: list,
        aos,
        aos_tasks,
    }
}

/// The array-of-structs baseline.
#[derive(Clone)]
struct AosAgent {
    available: bool,
    slots: u32,
    roles: u128,
    caps: u128,
    free: [u64; 4],
    capacity: [u64; 4],
}

struct AosTask {
    roles: u128,
    caps: u128,
    needs: [u64; 4],
}

fn naive_aos(agents: &[AosAgent], tasks: &[AosTask]) -> usize {
    let mut agents = agents.to_vec();
    let mut placed = 0;
    for t in tasks {
        let mut best: Option<(usize, f64)> = None;
        for (i, a) in agents.iter().enumerate() {
            if a.available
                && a.slots > 0
                && a.roles & t.roles == t.roles
                && a.caps & t.caps == t.caps
                && a.free.iter().zip(&t.needs).all(|(f, n)| n <= f)
            {
                let score = (0..2)
                    .map(|d| (a.free[d] - t.needs[d]) as f64 / a.capacity[d] as f64)
                    .sum::<f64>();
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((i, score));
                }
            }
        }
        if let Some((i, _)) = best {
            let a = &mut agents[i];
            a.slots -= 1;
            for d in 0..4 {
                a.free[d] -= t.needs[d];
            }
            placed += 1;
        }
    }
    placed
}

fn bench_greedy(c: &mut Criterion) {
    let mut group = c.benchmark_group("greedy");
    let cases = [
        (1usize, 1usize, 3u64),
        (1, 10, 3),
        (1, 100, 3),
        (10_000, 1_000, 8),
        (100_000, 10_000, 8),
    ];
    for &(tasks, agents, secs) in &cases {
        let s = scenario(tasks, agents, 0x5eed_0000 + tasks as u64, tasks == 1);
        let id = format!("{tasks}x{agents}");
        group.throughput(Throughput::Elements((tasks * agents) as u64));
        // One-task batches are the executor's case: what a call costs before the
        // scan (setup, explanation, plan), against the loop that does only the scan.
        group.sample_size(if tasks == 1 { 50 } else { 10 });
        // A 100,000 x 10,000 batch takes about half a second: ten flat samples of one
        // batch each, where criterion's linear sampling would run 55 batches.
        group.sampling_mode(if tasks >= 100_000 {
            SamplingMode::Flat
        } else {
            SamplingMode::Auto
        });
        group.measurement_time(Duration::from_secs(secs));
        group.warm_up_time(Duration::from_secs(1));
        let assigner = GreedyAssigner::default();
        if tasks == 1 {
            let plan = assigner.assign_all(&s.tasks, &s.fleet).unwrap();
            assert_eq!(plan.placements.len(), 1, "a one-task case places its task");
            assert_eq!(naive_aos(&s.aos, &s.aos_tasks), 1);
        }
        group.bench_function(BenchmarkId::new("concord", &id), |b| {
            b.iter(|| black_box(assigner.assign_all(black_box(&s.tasks), &s.fleet).unwrap()))
        });
        if tasks <= 10_000 {
            group.bench_function(BenchmarkId::new("naive_aos", &id), |b| {
                b.iter(|| black_box(naive_aos(black_box(&s.aos), &s.aos_tasks)))
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_greedy,
    optimal::bench_optimal,
    optimal::bench_warm
);
criterion_main!(benches);
