//! Coordinator benches: the one-call path a host takes for one task at a time.
//!
//! - `coordinator/assign_complete/{agents}`: `Coordinator::assign` then `complete` for
//!   one task, on a fleet of `agents` agents (ops, qa, framework and security agents,
//!   and every fifth one a generalist with every role). Each task is new, with a kind
//!   and a description of a sentence or two drawn from a pool of 512 varied operations
//!   tasks (deployments, health checks, screenshots, reports, hand-offs, security
//!   incidents, backups, and work no rule names), so the default keyword analyzer reads
//!   every one. The host drains the coordinator's events after every call, as a host
//!   that journals them does. Elements are tasks.
//! - `coordinator/assign_complete_stated/{agents}`: the same, with each task stating
//!   the role and capability it needs, so the coordinator takes it at its word and the
//!   analyzer is not called: the baseline that shows the analyzer's share.
//! - `coordinator/assign_complete_two_threads/100`: two threads, each with a
//!   coordinator of its own built from a clone of one analyzer (as a host that runs a
//!   coordinator per shard makes them), each assigning and completing one task at a
//!   time as above. Elements are tasks of one thread: the time is what each thread
//!   takes a task while the other runs beside it. What the threads share is the
//!   analyzer's rule lists, so this shows what their reference counts cost.
//! - `task/analyze/rule_based`: the default analyzer alone on the same descriptions
//!   (`analyze_in_place` on a fresh task, as the coordinator calls it).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use concord::coordinator::{AssignOutcome, Coordinator, Event};
use concord::{
    AgentId, AgentProfile, Capability, ManualClock, Requirements, Role, RuleBasedAnalyzer, Task,
    TaskAnalyzer, TaskId, Timestamp,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

const AGENTS: [u64; 2] = [100, 1000];
/// Distinct descriptions in the pool: more than a cache of a few strings would hold,
/// and every template with many fillings.
const POOL: usize = 512;

/// A task's template: its kind, its text (`{svc}`, `{env}` and `{ver}` filled in per
/// description), and the role and capability it needs when stated by the host.
struct Template {
    kind: &'static str,
    text: &'static str,
    role: &'static str,
    capability: &'static str,
}

const TEMPLATES: &[Template] = &[
    Template {
        kind: "release",
        text: "Deploy {svc} {ver} to {env} and run the health check on every node once the rollout finishes.",
        role: "ops",
        capability: "deploy",
    },
    Template {
        kind: "release",
        text: "Redeploy the {svc} service in {env} after the config change; keep the previous release ready for a rollback.",
        role: "ops",
        capability: "deploy",
    },
    Template {
        kind: "check",
        text: "Run a health check on {svc} in {env}. Page the on-call engineer if p99 latency stays above the SLO for ten minutes.",
        role: "ops",
        capability: "health_check",
    },
    Template {
        kind: "qa",
        text: "Take a screenshot of the {svc} dashboard in {env} for visual verification of the new layout.",
        role: "qa",
        capability: "screenshot",
    },
    Template {
        kind: "docs",
        text: "Write the deployment report for {svc} {ver}: what changed, who approved it, and the rollback plan.",
        role: "qa",
        capability: "documentation",
    },
    Template {
        kind: "transition",
        text: "Hand off the {svc} migration to the platform team, with the open issues and a link to the runbook.",
        role: "framework",
        capability: "handoff",
    },
    Template {
        kind: "incident",
        text: "Investigate a possible security breach on the {svc} bastion host in {env}; preserve the audit logs before anything is restarted.",
        role: "security",
        capability: "security",
    },
    Template {
        kind: "maintenance",
        text: "Back up the {svc} database in {env} before the schema migration and verify that the backup restores cleanly.",
        role: "ops",
        capability: "memory",
    },
    Template {
        kind: "maintenance",
        text: "Rotate the TLS certificates for {svc} in {env} and confirm the load balancer picks them up without dropped connections.",
        role: "ops",
        capability: "deploy",
    },
    Template {
        kind: "capacity",
        text: "Scale the {svc} worker pool in {env} from 4 to 8 replicas ahead of the Monday traffic peak.",
        role: "ops",
        capability: "deploy",
    },
    Template {
        kind: "qa",
        text: "Launch the browser against the {svc} staging URL and open the login page to confirm the fix in {ver}.",
        role: "ops",
        capability: "browser",
    },
    Template {
        kind: "incident",
        text: "Restore the {svc} cache from last night's snapshot after the memory corruption alert in {env}.",
        role: "ops",
        capability: "memory",
    },
    Template {
        kind: "incident",
        text: "Patch the vulnerability in {svc} {ver} and redeploy it to {env} before the maintenance window closes.",
        role: "security",
        capability: "security",
    },
    Template {
        kind: "docs",
        text: "Document the incident timeline for the {svc} outage in {env} and share it with the stakeholders.",
        role: "qa",
        capability: "documentation",
    },
    Template {
        kind: "release",
        text: "Deploy {svc} {ver} to {env}, then take screenshots of the checkout flow for the release notes.",
        role: "ops",
        capability: "deploy",
    },
    Template {
        kind: "ops",
        text: "Drain the {svc} nodes in {env} one at a time, upgrade the kernel, and bring each back before the next.",
        role: "ops",
        capability: "deploy",
    },
];

const SERVICES: &[&str] = &[
    "checkout",
    "billing",
    "search",
    "auth",
    "inventory",
    "payments",
    "notifications",
    "ledger-api",
    "gateway",
    "user-profile",
    "recommendations",
    "media-transcoder",
];
const ENVS: &[&str] = &[
    "staging",
    "production",
    "eu-west-1",
    "us-east-2",
    "the canary cluster",
    "ap-southeast-1",
];

/// A task's kind and description, and the requirements a host would state for it.
struct Sample {
    kind: Arc<str>,
    description: Arc<str>,
    stated: Requirements,
}

/// `POOL` descriptions, every template filled in with a seeded choice of service,
/// environment and version.
fn pool() -> Vec<Sample> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..POOL)
        .map(|i| {
            let t = &TEMPLATES[i % TEMPLATES.len()];
            let svc = SERVICES[rng.below(SERVICES.len() as u64) as usize];
            let env = ENVS[rng.below(ENVS.len() as u64) as usize];
            let ver = format!("v{}.{}.{}", 1 + rng.below(4), rng.below(20), rng.below(10));
            let text = t
                .text
                .replace("{svc}", svc)
                .replace("{env}", env)
                .replace("{ver}", &ver);
            Sample {
                kind: Arc::from(t.kind),
                description: Arc::from(text),
                stated: Requirements::new()
                    .with_role(Role::new(t.role).unwrap())
                    .with_capability(Capability::new(t.capability).unwrap()),
            }
        })
        .collect()
}

/// A coordinator with `agents` agents: ops, qa, framework and security agents in
/// turn, every fifth a generalist that plays every role (a task that fires rules of
/// two roles needs one).
fn fleet(agents: u64) -> Coordinator {
    fleet_with(agents, RuleBasedAnalyzer::default())
}

/// [`fleet`] with `analyzer`.
fn fleet_with(agents: u64, analyzer: RuleBasedAnalyzer) -> Coordinator {
    let coordinator = Coordinator::builder()
        .clock(ManualClock::new(Timestamp::from_secs(1_700_000_000)))
        .analyzer(analyzer)
        .build();
    let kinds: [(&[&str], &[&str]); 5] = [
        (&["ops"], &["deploy", "health_check", "browser", "memory"]),
        (&["qa"], &["screenshot", "documentation"]),
        (&["framework"], &["handoff"]),
        (&["security"], &["security"]),
        (
            &["ops", "qa", "framework", "security"],
            &[
                "deploy",
                "health_check",
                "browser",
                "memory",
                "screenshot",
                "documentation",
                "handoff",
                "security",
            ],
        ),
    ];
    for a in 0..agents {
        let (roles, caps) = kinds[(a % 5) as usize];
        let profile = AgentProfile::new(AgentId::new(a), format!("agent-{a}"))
            .with_roles(roles.iter().map(|r| Role::new(r).unwrap()))
            .with_capabilities(caps.iter().map(|c| Capability::new(c).unwrap()))
            .with_max_tasks(4)
            .with_capacity("cpu=8,memory=32Gi,storage=500Gi".parse().unwrap());
        coordinator.register_agent(profile).unwrap();
    }
    coordinator
}

/// Assigns and completes the next task of the pool, draining the events into
/// `journal` as a host would.
fn one_task(
    coordinator: &Coordinator,
    samples: &[Sample],
    next: &mut u64,
    stated: bool,
    journal: &mut Vec<Event>,
) {
    let s = &samples[(*next as usize) % samples.len()];
    let id = TaskId::new(*next);
    *next += 1;
    let mut task = Task::new(id, Arc::clone(&s.kind), Arc::clone(&s.description));
    if stated {
        task = task.with_requirements(s.stated.clone());
    }
    match coordinator.assign(task).unwrap() {
        AssignOutcome::Assigned(a) => {
            black_box(a.agent);
        }
        other => panic!("task {id} not assigned: {other}"),
    }
    coordinator.complete(id, true, None).unwrap();
    coordinator.drain_events_into(journal);
    black_box(journal.len());
    journal.clear();
}

fn bench_assign_complete(c: &mut Criterion) {
    let samples = pool();
    let mut group = c.benchmark_group("coordinator");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for agents in AGENTS {
        for (name, stated) in [("assign_complete", false), ("assign_complete_stated", true)] {
            let coordinator = fleet(agents);
            let mut next = 0u64;
            let mut journal = Vec::new();
            group.bench_with_input(BenchmarkId::new(name, agents), &agents, |b, _| {
                b.iter(|| one_task(&coordinator, &samples, &mut next, stated, &mut journal));
            });
        }
    }
    group.finish();
}

fn bench_two_threads(c: &mut Criterion) {
    let samples = pool();
    let analyzer = RuleBasedAnalyzer::default();
    // Each thread's coordinator and its place in the pool, kept from sample to sample.
    let hosts: Vec<std::sync::Mutex<(Coordinator, u64, Vec<Event>)>> = (0..2)
        .map(|_| std::sync::Mutex::new((fleet_with(100, analyzer.clone()), 0, Vec::new())))
        .collect();
    let mut group = c.benchmark_group("coordinator");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function(BenchmarkId::new("assign_complete_two_threads", 100), |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|scope| {
                for host in &hosts {
                    let samples = &samples;
                    scope.spawn(move || {
                        let mut host = host.lock().unwrap();
                        let (coordinator, next, journal) = &mut *host;
                        for _ in 0..iters {
                            one_task(coordinator, samples, next, false, journal);
                        }
                    });
                }
            });
            start.elapsed()
        });
    });
    group.finish();
}

fn bench_analyze(c: &mut Criterion) {
    let samples = pool();
    let analyzer = RuleBasedAnalyzer::default();
    let mut group = c.benchmark_group("task");
    group.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new("analyze", "rule_based"), |b| {
        b.iter(|| {
            let s = &samples[next % samples.len()];
            next += 1;
            let mut task = Task::new(
                TaskId::new(next as u64),
                Arc::clone(&s.kind),
                Arc::clone(&s.description),
            );
            let fired = analyzer.analyze_in_place(&mut task).unwrap();
            black_box((fired, task));
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_assign_complete,
    bench_two_threads,
    bench_analyze
);
criterion_main!(benches);
