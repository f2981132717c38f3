//! Conflict benches.
//!
//! `conflict/detect/{n}`: `n` claims added one by one to an empty detector, on
//! hierarchical names (82% files `repo{r}/src/mod{m}/file{f}.rs`, 0.5% directories
//! `repo{r}/src/mod{m}/`, 2% `port/{p}`, 10% `host/node-{h}`, 5.5% `env/e{e}`), 80%
//! shared, so about 3% of claims conflict; throughput is claims per second.
//! `conflict/naive/10000` runs the obvious pairwise check on the small size for the
//! ratio.
//!
//! `conflict/tick/100000`: one `tick` over 100,000 open conflicts with nothing due.
//!
//! `conflict/released/{n}`: 1,000 hold-and-release cycles of an exclusive claim on
//! `runs`, on a detector that has held and released `n` claims of their own under it
//! (`runs/run-{i}/workspace`, as tasks that finish do); `n = 0` is a fresh detector.
//! The time should not grow with `n`: released names are freed.

use std::hint::black_box;
use std::time::Duration;

use concord::conflict::{
    ClaimOwner, Conflict, ConflictDetector, ConflictId, ConflictKind, ConflictManager,
    EscalationPolicy, Party,
};
use concord::{AgentId, Claim, Priority, TaskId, Timestamp};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

fn claims(n: usize, seed: u64) -> Vec<(ClaimOwner, Claim, Priority)> {
    // Name spaces grow with the fleet (more repositories, hosts and environments), so
    // the share of conflicting claims stays near 3% at every size.
    let repos = (n as u64 / 10_000).max(1);
    let hosts = (n as u64).max(1_000);
    let envs = (n as u64 / 10).max(100);
    let mut rng = Rng(seed);
    (0..n as u64)
        .map(|i| {
            let owner = ClaimOwner::new(TaskId::new(i), AgentId::new(rng.below(1000)));
            let name = match rng.below(1000) {
                0..=819 => format!(
                    "repo{}/src/mod{}/file{}.rs",
                    rng.below(repos),
                    rng.below(1000),
                    rng.below(100)
                ),
                820..=824 => format!("repo{}/src/mod{}/", rng.below(repos), rng.below(1000)),
                825..=844 => format!("port/{}", rng.below(60_000)),
                845..=944 => format!("host/node-{}", rng.below(hosts)),
                _ => format!("env/e{}", rng.below(envs)),
            };
            let exclusive = rng.below(100) < 20;
            let claim = if exclusive {
                Claim::exclusive(name)
            } else {
                Claim::shared(name)
            };
            (owner, claim, Priority(rng.below(100) as u32))
        })
        .collect()
}

fn overlap(a: &str, b: &str) -> bool {
    let mut x = a.split('/').filter(|s| !s.is_empty());
    let mut y = b.split('/').filter(|s| !s.is_empty());
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p == q => continue,
            (Some(_), Some(_)) => return false,
            _ => return true,
        }
    }
}

fn detect(c: &mut Criterion) {
    let mut group = c.benchmark_group("conflict");
    for n in [10_000usize, 100_000, 1_000_000] {
        let input = claims(n, 7);
        if n >= 100_000 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("detect", n), &input, |b, input| {
            b.iter(|| {
                let found = ConflictDetector::detect(
                    input.iter().map(|(o, c, p)| (*o, c, *p)),
                    Timestamp::EPOCH,
                )
                .unwrap();
                black_box(found.len())
            });
        });
        if n == 10_000 {
            group.sample_size(10);
            group.bench_with_input(BenchmarkId::new("naive", n), &input, |b, input| {
                b.iter(|| {
                    let mut found = 0usize;
                    for (i, (oi, ci, _)) in input.iter().enumerate() {
                        for (oj, cj, _) in &input[..i] {
                            if oi != oj
                                && (ci.is_exclusive() || cj.is_exclusive())
                                && overlap(ci.resource(), cj.resource())
                            {
                                found += 1;
                            }
                        }
                    }
                    black_box(found)
                });
            });
        }
    }
    group.finish();
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("conflict");
    let n = 100_000u64;
    let t0 = Timestamp::from_secs(1_700_000_000);
    let mut m = ConflictManager::new(EscalationPolicy::default()).unwrap();
    for i in 0..n {
        let c = Conflict::new(ConflictId::new(i), ConflictKind::ResourceContention, t0)
            .with_party(Party::task(TaskId::new(2 * i)).with_agent(AgentId::new(1)))
            .with_party(Party::task(TaskId::new(2 * i + 1)).with_agent(AgentId::new(2)))
            .with_resource(format!("port/{i}"));
        m.open(c, t0).unwrap();
    }
    let now = t0 + Duration::from_secs(60);
    group.throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::new("tick", n), |b| {
        b.iter(|| black_box(m.tick(black_box(now))).len());
    });
    group.finish();
}

fn released(c: &mut Criterion) {
    let mut group = c.benchmark_group("conflict");
    let t = Timestamp::EPOCH;
    let rounds = 1_000u64;
    for n in [0u64, 100_000] {
        let mut d = ConflictDetector::new();
        for i in 0..n {
            let owner = ClaimOwner::new(TaskId::new(i), AgentId::new(1));
            let claim = Claim::exclusive(format!("runs/run-{i}/workspace"));
            d.add_claim(owner, &claim, Priority::NORMAL, t).unwrap();
            d.remove_claim(owner, &claim).unwrap();
        }
        let parent = Claim::exclusive("runs");
        group.throughput(Throughput::Elements(rounds));
        group.bench_function(BenchmarkId::new("released", n), |b| {
            b.iter(|| {
                for i in 0..rounds {
                    let owner = ClaimOwner::new(TaskId::new(u64::MAX - i), AgentId::new(1));
                    let found = d.add_claim(owner, &parent, Priority::NORMAL, t).unwrap();
                    black_box(found.len());
                    d.remove_claim(owner, &parent).unwrap();
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, detect, tick, released);
criterion_main!(benches);
