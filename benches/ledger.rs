//! Ledger and predictor benches.
//!
//! `ledger/allocate_release/{agents}`: one allocate plus one release of four resource
//! dimensions (cpu, memory, storage, gpu) on a seeded random agent, through the public
//! API. `ledger/naive/{agents}` does the same with the obvious implementation (a map of
//! agents to free `Resources`, checked arithmetic on whole values, a `HashMap` of
//! allocations) so the report shows the ratio.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use concord::{AgentId, AllocationId, ResourceLedger, Resources, Timestamp};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/predictors.rs"]
mod predictors;
#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

fn capacity() -> Resources {
    "cpu=64,memory=256Gi,storage=2Ti,gpu=8".parse().unwrap()
}

fn needs() -> Resources {
    "cpu=500m,memory=1Gi,storage=10Gi,gpu=1".parse().unwrap()
}

fn bench_ledger(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let needs = needs();
    for &agents in &[100u64, 1000, 10_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let picks: Vec<AgentId> = (0..4096)
            .map(|_| AgentId::new(rng.next() % agents))
            .collect();

        let mut ledger = ResourceLedger::new();
        for a in 0..agents {
            ledger.add_agent(AgentId::new(a), &capacity()).unwrap();
        }
        // Keep the books realistic: every agent already holds a few allocations.
        let now = Timestamp::from_secs(1);
        for a in 0..agents {
            for _ in 0..3 {
                ledger.allocate(AgentId::new(a), &needs, now).unwrap();
            }
        }
        let mut k = 0;
        group.bench_with_input(
            BenchmarkId::new("allocate_release", agents),
            &agents,
            |b, _| {
                b.iter(|| {
                    k = (k + 1) & 4095;
                    let id = ledger.allocate(picks[k], black_box(&needs), now).unwrap();
                    black_box(ledger.release(id, now).unwrap());
                })
            },
        );

        let mut naive = Naive::new(agents, &capacity());
        for a in 0..agents {
            for _ in 0..3 {
                naive.allocate(AgentId::new(a), &needs).unwrap();
            }
        }
        let mut k = 0;
        group.bench_with_input(BenchmarkId::new("naive", agents), &agents, |b, _| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let id = naive.allocate(picks[k], black_box(&needs)).unwrap();
                black_box(naive.release(id));
            })
        });
    }
    group.finish();
}

/// The obvious ledger: whole `Resources` values in maps.
struct Naive {
    free: HashMap<AgentId, Resources>,
    held: HashMap<AllocationId, (AgentId, Resources)>,
    next: u64,
}

impl Naive {
    fn new(agents: u64, capacity: &Resources) -> Self {
        Naive {
            free: (0..agents)
                .map(|a| (AgentId::new(a), capacity.clone()))
                .collect(),
            held: HashMap::new(),
            next: 1,
        }
    }

    fn allocate(&mut self, agent: AgentId, needs: &Resources) -> Option<AllocationId> {
        let free = self.free.get_mut(&agent)?;
        *free = free.checked_sub(needs).ok()?;
        let id = AllocationId::new(self.next);
        self.next += 1;
        self.held.insert(id, (agent, needs.clone()));
        Some(id)
    }

    fn release(&mut self, id: AllocationId) -> Option<()> {
        let (agent, r) = self.held.remove(&id)?;
        let free = self.free.get_mut(&agent)?;
        *free = free.checked_add(&r).ok()?;
        Some(())
    }
}

criterion_group!(benches, bench_ledger, predictors::bench_predictors);
criterion_main!(benches);
