//! Quality beside speed: the greedy and the optimal assigner on the same batches, with
//! the time each took, the total cost of its plan and the greedy plan's optimality
//! gap, so that a user can choose.
//!
//! A plan's total cost is what the optimal assigner minimizes, in points: for every
//! task of the batch, 100 minus the score of its placement (scores run from 0 to 100),
//! or 100 for a task left unplaced. The gap is how much more the greedy plan costs
//! than the optimal one, in percent of the optimal cost.
//!
//! The workloads:
//! - `realistic`: a seeded fleet of five teams (ops, qa, dev, data, security), each
//!   agent with its team's tools and a few others, some generalists in two teams,
//!   machines from 2 to 16 cores, GPUs on some data agents, a few agents busy or
//!   offline; and a batch of work for every team, some of it for GPUs.
//! - `bench`: the data of the greedy bench (`benches/assignment.rs`: 5 roles, 32
//!   capabilities, 4 resource dimensions, 5% of agents unavailable; each task one
//!   role, one or two capabilities and small needs), at sizes a debug build runs in
//!   seconds. With `--bench-sizes` (best in a release build), the bench's own
//!   10,000 tasks x 1,000 agents as well.
//!
//! Run with `cargo run --example compare_assigners`, or
//! `cargo run --release --example compare_assigners -- --bench-sizes`.

use std::time::{Duration, Instant};

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::assignment::{Assigner, Fleet, GreedyAssigner, OptimalAssigner, Plan};
use concord::{AgentId, Capability, Requirements, Resources, Role, Task, TaskId, Timestamp};

/// A small seeded generator (xorshift64*), so that every run shows the same batches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const GIB: u64 = 1 << 30;

/// A team: its role and the tools its members mostly have.
struct Team {
    role: &'static str,
    tools: &'static [&'static str],
}

const TEAMS: [Team; 5] = [
    Team {
        role: "ops",
        tools: &["k8s", "terraform", "deploy", "health_check"],
    },
    Team {
        role: "qa",
        tools: &["browser", "screenshot", "load_test", "fuzz"],
    },
    Team {
        role: "dev",
        tools: &["rust", "python", "sql", "review"],
    },
    Team {
        role: "data",
        tools: &["sql", "spark", "python", "gpu_train"],
    },
    Team {
        role: "security",
        tools: &["audit", "scan", "review", "k8s"],
    },
];

/// A batch to place and the fleet to place it on.
struct Workload {
    name: String,
    fleet: Fleet,
    tasks: Vec<Task>,
}

/// The realistic fleet: `agents` agents in five teams and `tasks` tasks for them.
fn realistic(agents: usize, tasks: usize, seed: u64) -> Workload {
    let mut rng = Rng(seed);
    let now = Timestamp::from_secs(0);
    let mut registry = AgentRegistry::new();
    let mut offline = Vec::new();
    for a in 0..agents {
        let team = &TEAMS[a % TEAMS.len()];
        let cores = [2u64, 4, 8, 16][rng.below(4) as usize];
        let mut capacity = Resources::new()
            .with_cpu_millis(cores * 1000)
            .with_memory_bytes(cores * 4 * GIB);
        if team.role == "data" && rng.below(2) == 0 {
            capacity = capacity.with_named("gpu", 1 + rng.below(2)).expect("gpu");
        }
        let mut profile = AgentProfile::new(AgentId::new(a as u64), format!("{}-{a}", team.role))
            .with_role(Role::new(team.role).expect("role"))
            .with_max_tasks(2 + rng.below(3) as u32)
            .with_capacity(capacity);
        // Most of the team's tools, and one from elsewhere.
        for tool in team.tools.iter().filter(|_| rng.below(4) != 0) {
            profile = profile.with_capability(Capability::new(tool).expect("tool"));
        }
        let other = &TEAMS[rng.below(TEAMS.len() as u64) as usize];
        profile = profile.with_capability(Capability::new(rng.pick(other.tools)).expect("tool"));
        // One agent in five is a generalist, in a second team with its tools.
        if rng.below(5) == 0 {
            profile = profile.with_role(Role::new(other.role).expect("role"));
            for tool in other.tools.iter().filter(|_| rng.below(2) == 0) {
                profile = profile.with_capability(Capability::new(tool).expect("tool"));
            }
        }
        registry.register(profile, now).expect("unique ids");
        if rng.below(20) == 0 {
            offline.push(AgentId::new(a as u64));
        }
    }
    for id in offline {
        registry
            .set_status(id, AgentStatus::Offline, now)
            .expect("registered");
    }
    let mut batch = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let team = &TEAMS[rng.below(TEAMS.len() as u64) as usize];
        let mut req = Requirements::new().with_role(Role::new(team.role).expect("role"));
        for _ in 0..1 + rng.below(2) {
            req = req.with_capability(Capability::new(rng.pick(team.tools)).expect("tool"));
        }
        let mut needs = Resources::new()
            .with_cpu_millis(500 * (1 + rng.below(6)))
            .with_memory_bytes(GIB / 2 * (1 + rng.below(12)));
        if team.role == "data" && rng.below(3) == 0 {
            needs = needs.with_named("gpu", 1).expect("gpu");
        }
        req = req.with_resources(needs);
        batch.push(Task::new(TaskId::new(t as u64), "work", "").with_requirements(req));
    }
    Workload {
        name: format!("realistic {tasks} x {agents}"),
        fleet: Fleet::new(&registry, None),
        tasks: batch,
    }
}

/// The greedy bench's data (`benches/assignment.rs`), drawn the same way.
fn bench(tasks: usize, agents: usize, seed: u64) -> Workload {
    const ROLES: [&str; 5] = ["ops", "qa", "framework", "security", "dev"];
    let capability = |k: u64| Capability::new(&format!("cap-{k}")).expect("capability");
    let mut rng = Rng(seed);
    let now = Timestamp::from_secs(0);
    let slots = (tasks / agents).max(1) as u32 + 2;
    let mut registry = AgentRegistry::new();
    let mut unavailable = Vec::new();
    for a in 0..agents {
        let role = rng.below(ROLES.len() as u64) as usize;
        let mut profile = AgentProfile::new(AgentId::new(a as u64), format!("agent-{a}"))
            .with_role(Role::new(ROLES[role]).expect("role"))
            .with_max_tasks(slots);
        for _ in 0..6 {
            profile = profile.with_capability(capability(rng.below(32)));
        }
        let capacity = Resources::new()
            .with_cpu_millis(4000 * (1 + rng.below(8)))
            .with_memory_bytes((4 + rng.below(28)) * GIB)
            .with_storage_bytes(100 * GIB)
            .with_named("gpu", rng.below(3))
            .expect("gpu");
        if rng.below(100) < 5 {
            unavailable.push(AgentId::new(a as u64));
        }
        registry
            .register(profile.with_capacity(capacity), now)
            .expect("unique ids");
    }
    for id in unavailable {
        registry
            .set_status(id, AgentStatus::Unhealthy, now)
            .expect("registered");
    }
    let mut batch = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let role = rng.below(ROLES.len() as u64) as usize;
        let mut req = Requirements::new().with_role(Role::new(ROLES[role]).expect("role"));
        for _ in 0..1 + rng.below(2) {
            req = req.with_capability(capability(rng.below(32)));
        }
        let needs = Resources::new()
            .with_cpu_millis(250 * (1 + rng.below(4)))
            .with_memory_bytes((1 + rng.below(4)) << 28);
        req = req.with_resources(needs);
        batch.push(Task::new(TaskId::new(t as u64), "work", "").with_requirements(req));
    }
    Workload {
        name: format!("bench {tasks} x {agents}"),
        fleet: Fleet::new(&registry, None),
        tasks: batch,
    }
}

/// The plan's total cost: 100 minus the score of each placement, 100 for each task
/// left unplaced.
fn total_cost(plan: &Plan) -> f64 {
    let placed: f64 = plan.placements.iter().map(|p| 100.0 - p.score).sum();
    placed + 100.0 * plan.unplaced.len() as f64
}

/// Runs `assigner` on `w` until a tenth of a second has passed (at least once, at
/// most five times): the plan, and the fastest run's time.
fn timed(assigner: &dyn Assigner, w: &Workload) -> (Plan, Duration) {
    let mut best = Duration::MAX;
    let mut spent = Duration::ZERO;
    let mut plan = None;
    for _ in 0..5 {
        let started = Instant::now();
        let p = assigner
            .assign_all(&w.tasks, &w.fleet)
            .expect("valid batch");
        let took = started.elapsed();
        best = best.min(took);
        spent += took;
        plan = Some(p);
        if spent > Duration::from_millis(100) {
            break;
        }
    }
    (plan.expect("run at least once"), best)
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn main() {
    let bench_sizes = std::env::args().any(|a| a == "--bench-sizes");
    let mut workloads = vec![
        realistic(40, 100, 0xC0DE),
        realistic(200, 600, 0xC0DF),
        bench(300, 30, 0x5eed_0000 + 300),
        bench(1_000, 100, 0x5eed_0000 + 1_000),
    ];
    if bench_sizes {
        // The seed the greedy bench uses for this case.
        workloads.push(bench(10_000, 1_000, 0x5eed_0000 + 10_000));
    }
    println!(
        "{:<24} {:<8} {:>9} {:>11} {:>12} {:>7}",
        "workload", "assigner", "time", "placed", "total cost", "gap"
    );
    for w in &workloads {
        let (greedy, greedy_time) = timed(&GreedyAssigner::default(), w);
        let (optimal, optimal_time) = timed(&OptimalAssigner::default(), w);
        let (g, o) = (total_cost(&greedy), total_cost(&optimal));
        // The optimal assigner returns greedy's plan when its own is no better, so
        // the gap is never negative.
        let gap = if o > 0.0 { 100.0 * (g - o) / o } else { 0.0 };
        let rows = [
            ("greedy", &greedy, greedy_time, format!("{gap:+.2}%")),
            ("optimal", &optimal, optimal_time, "0%".to_owned()),
        ];
        for (name, plan, time, gap) in rows {
            println!(
                "{:<24} {:<8} {:>9} {:>11} {:>12.1} {:>7}",
                w.name,
                name,
                show(time),
                format!("{}/{}", plan.placements.len(), w.tasks.len()),
                total_cost(plan),
                gap,
            );
        }
    }
}
