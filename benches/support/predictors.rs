//! Predictor benches, included into `benches/ledger.rs`.
//!
//! `predictor/{static,ewma,percentile}/observe_predict`: one observation plus one
//! prediction per iteration, four resource dimensions (cpu, memory, storage, gpu),
//! rotating over four task kinds, with seeded usage (one exhaustion in twenty). The
//! learners are warmed with a day of history first, so the histograms hold their
//! steady-state number of buckets. The static predictor, which learns nothing, is the
//! baseline.

use std::hint::black_box;
use std::time::Duration;

use concord::resource::{
    EwmaPredictor, Observation, PercentilePredictor, ResourcePredictor, StaticPredictor,
};
use concord::{ResourceName, Resources, Timestamp};
use criterion::{Criterion, Throughput};

const KINDS: [&str; 4] = ["build", "test", "deploy", "screenshot"];

/// A seeded generator (splitmix64), so runs are comparable.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Roughly `base` give or take half, by kind.
    fn around(&mut self, base: u64) -> u64 {
        base / 2 + self.next() % base.max(1)
    }
}

/// 4096 observations over the four kinds, each kind with its own scale.
fn workload() -> Vec<(usize, Observation)> {
    let mut rng = SplitMix(7);
    (0..4096)
        .map(|_| {
            let kind = (rng.next() % KINDS.len() as u64) as usize;
            let scale = kind as u64 + 1;
            let usage = Resources::new()
                .with_cpu_millis(rng.around(500 * scale))
                .with_memory_bytes(rng.around(scale << 30))
                .with_storage_bytes(rng.around(scale * (10 << 30)))
                .with_named("gpu", rng.around(2 * scale))
                .expect("valid name");
            let mut o = Observation::new(usage, Timestamp::EPOCH);
            if rng.next() % 20 == 0 {
                o = o.with_exhausted(ResourceName::Memory);
            }
            (kind, o)
        })
        .collect()
}

fn requested() -> Resources {
    "cpu=2,memory=4Gi,storage=20Gi,gpu=1"
        .parse()
        .expect("valid resources")
}

/// Benches `predictor` as `predictor/{name}/observe_predict`, after a day of history.
fn bench_one<P: ResourcePredictor>(c: &mut Criterion, name: &str, mut predictor: P) {
    let mut data = workload();
    let requested = requested();
    // One task a minute for a day of history.
    let mut minute = 0u64;
    for (kind, o) in data.iter_mut().take(1440) {
        o.at = Timestamp::from_secs(minute * 60);
        predictor.observe(KINDS[*kind], o);
        minute += 1;
    }
    let mut group = c.benchmark_group("predictor");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function(format!("{name}/observe_predict"), |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (kind, o) = &mut data[i % 4096];
            i += 1;
            minute += 1;
            o.at = Timestamp::from_secs(minute * 60);
            let kind = KINDS[*kind];
            predictor.observe(kind, o);
            black_box(predictor.predict(kind, black_box(&requested)))
        });
    });
    group.finish();
}

/// Registers the predictor benches.
pub fn bench_predictors(c: &mut Criterion) {
    bench_one(c, "static", StaticPredictor::new());
    bench_one(c, "ewma", EwmaPredictor::default());
    bench_one(c, "percentile", PercentilePredictor::default());
}
