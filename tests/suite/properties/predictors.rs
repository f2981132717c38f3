//! Properties of the resource predictors: predicting and observing never panic, a
//! percentile prediction lies between the smallest usage observed and the largest
//! times the margin and the bump bound, a run of exhaustions at the predicted level
//! stays below the documented bound (damped, not runaway), and the same inputs give
//! the same predictions, before and after a snapshot.

use std::time::Duration;

use concord::resource::{
    EwmaConfig, EwmaPredictor, Observation, PercentileConfig, PercentilePredictor,
    ResourcePredictor, StaticPredictor,
};
use concord::{ResourceName, Resources, Timestamp};
use proptest::prelude::*;

const KINDS: [&str; 3] = ["build", "test", "Deploy"];

fn names() -> [ResourceName; 4] {
    [
        ResourceName::Cpu,
        ResourceName::Memory,
        ResourceName::Storage,
        "gpu".parse().expect("valid name"),
    ]
}

/// One observation: kind, usage of the four resources, which were exhausted, when.
#[derive(Debug, Clone)]
struct Step {
    kind: usize,
    usage: [u64; 4],
    exhausted: [bool; 4],
    secs: u64,
}

impl Step {
    fn observation(&self) -> Observation {
        let names = names();
        let mut usage = Resources::new();
        for (name, v) in names.iter().zip(self.usage) {
            usage.set(name, v);
        }
        let mut o = Observation::new(usage, Timestamp::from_secs(self.secs));
        for (name, e) in names.iter().zip(self.exhausted) {
            if e {
                o = o.with_exhausted(name.clone());
            }
        }
        o
    }
}

/// Any usage at all: zeros, small, huge, `u64::MAX`; any time, backwards included.
fn wild_step() -> impl Strategy<Value = Step> {
    let amount = prop_oneof![Just(0u64), 1u64..1000, any::<u64>(), Just(u64::MAX)];
    (
        0..KINDS.len(),
        [amount.clone(), amount.clone(), amount.clone(), amount],
        [any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()],
        prop_oneof![0u64..1000, any::<u64>().prop_map(|s| s / 1_000_000_000)],
    )
        .prop_map(|(kind, usage, exhausted, secs)| Step {
            kind,
            usage,
            exhausted,
            secs,
        })
}

/// Realistic usage (every resource reported, none zero), times moving forward, a few
/// exhaustions.
fn tame_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0..KINDS.len(),
            [1u64..100_000, 1u64..1 << 40, 1u64..1 << 40, 1u64..16],
            prop::array::uniform4(prop::bool::weighted(0.1)),
            0u64..7200,
        ),
        1..80,
    )
    .prop_map(|raw| {
        let mut secs = 0;
        raw.into_iter()
            .map(|(kind, usage, exhausted, gap)| {
                secs += gap;
                Step {
                    kind,
                    usage,
                    exhausted,
                    secs,
                }
            })
            .collect()
    })
}

/// A decimal with three places in `[lo, hi]` thousandths: configurations are written
/// by people, and such numbers survive every serde format exactly (a 17-digit float
/// needs serde_json's `float_roundtrip` to come back bit for bit).
fn milli(lo: u32, hi: u32) -> impl Strategy<Value = f64> {
    (lo..=hi).prop_map(|k| f64::from(k) / 1000.0)
}

fn percentile_config() -> impl Strategy<Value = PercentileConfig> {
    (
        milli(500, 1000),
        milli(0, 500),
        1u64..100,
        milli(1010, 1500),
        milli(0, 1000),
        milli(0, 900),
        milli(1000, 20_000),
    )
        .prop_map(|(p, margin, hours, growth, bump, decay, weight)| {
            PercentileConfig::default()
                .with_percentile(p)
                .with_margin(margin)
                .with_half_life(Duration::from_secs(hours * 3600))
                .with_bucket_growth(growth)
                .with_exhaustion_bump(bump)
                .with_exhaustion_bump_decay(decay)
                .with_exhaustion_weight(weight)
        })
}

fn ewma_config() -> impl Strategy<Value = EwmaConfig> {
    (
        milli(10, 1000),
        milli(0, 500),
        milli(0, 1000),
        milli(0, 900),
    )
        .prop_map(|(alpha, margin, bump, decay)| {
            EwmaConfig::default()
                .with_alpha(alpha)
                .with_margin(margin)
                .with_exhaustion_bump(bump)
                .with_exhaustion_bump_decay(decay)
        })
}

fn requested() -> impl Strategy<Value = Resources> {
    (any::<u64>(), 0u64..1 << 40, any::<bool>()).prop_map(|(cpu, memory, gpu)| {
        Resources::new()
            .with_cpu_millis(cpu)
            .with_memory_bytes(memory)
            .with_named("gpu", u64::from(gpu))
            .expect("valid name")
    })
}

fn all_predictors(
    pct: PercentileConfig,
    ewma: EwmaConfig,
) -> (PercentilePredictor, EwmaPredictor, StaticPredictor) {
    (
        PercentilePredictor::new(pct).expect("valid config"),
        EwmaPredictor::new(ewma).expect("valid config"),
        StaticPredictor::new()
            .with_margin(0.1)
            .expect("valid margin"),
    )
}

/// `predict_in_place` writes what `predict` returns, for each of `predictors` (the
/// built-in ones, the static one with and without a margin), for every kind, learned
/// or not.
fn in_place_is_predict(
    predictors: [&dyn ResourcePredictor; 4],
    request: &Resources,
) -> Result<(), TestCaseError> {
    for predictor in predictors {
        for kind in KINDS.iter().chain(&["never seen"]) {
            let mut in_place = request.clone();
            predictor.predict_in_place(kind, &mut in_place);
            prop_assert_eq!(&in_place, &predictor.predict(kind, request).resources);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Nothing panics, whatever is observed, and every requested resource gets an
    /// answer: learned, or the request. Predicting in place (what the coordinator
    /// does) writes what `predict` returns, before and after every observation.
    #[test]
    fn predicting_and_observing_never_panic(
        steps in prop::collection::vec(wild_step(), 0..60),
        pct in percentile_config(),
        ewma in ewma_config(),
        request in requested(),
    ) {
        let (mut p, mut e, mut s) = all_predictors(pct, ewma);
        in_place_is_predict([&p, &e, &s, &StaticPredictor::new()], &request)?;
        for step in &steps {
            let o = step.observation();
            let kind = KINDS[step.kind];
            p.observe(kind, &o);
            e.observe(kind, &o);
            s.observe(kind, &o);
            for predictor in [&p as &dyn ResourcePredictor, &e, &s] {
                let prediction = predictor.predict(kind, &request);
                for (name, _) in request.iter() {
                    // A requested resource is never dropped to nothing unless the
                    // kind learned it at zero.
                    let v = prediction.resources.get(&name);
                    prop_assert!(v > 0 || prediction.samples > 0, "{name} dropped");
                }
            }
            in_place_is_predict([&p, &e, &s, &StaticPredictor::new()], &request)?;
        }
    }

    /// A percentile prediction lies between the smallest usage observed and the
    /// largest times the margin and the most a run of bumps can add.
    #[test]
    fn percentile_predictions_lie_within_the_observed_range(
        steps in tame_steps(),
        config in percentile_config(),
    ) {
        let mut p = PercentilePredictor::new(config.clone()).expect("valid config");
        let mut low = [[u64::MAX; 4]; 3];
        let mut high = [[0u64; 4]; 3];
        for step in &steps {
            p.observe(KINDS[step.kind], &step.observation());
            for r in 0..4 {
                low[step.kind][r] = low[step.kind][r].min(step.usage[r]);
                high[step.kind][r] = high[step.kind][r].max(step.usage[r]);
            }
        }
        let growth = (1.0 + config.margin) * config.exhaustion_growth_bound();
        for (k, kind) in KINDS.iter().enumerate() {
            if high[k][0] == 0 {
                continue; // never observed
            }
            let prediction = p.predict(kind, &Resources::new());
            for (r, name) in names().iter().enumerate() {
                let v = prediction.resources.get(name);
                let top = (high[k][r] as f64 * growth * (1.0 + 1e-9)).ceil() + 1.0;
                prop_assert!(v >= low[k][r], "{kind} {name}: {v} < {}", low[k][r]);
                prop_assert!((v as f64) <= top, "{kind} {name}: {v} > {top}");
            }
        }
    }

    /// However many times in a row a task runs out at the predicted level, the
    /// prediction stays below the documented bound times where the run started (for
    /// the percentile, or the largest usage recorded times the margin if higher).
    #[test]
    fn consecutive_exhaustions_are_damped(
        history in tame_steps(),
        run in 1usize..200,
        pct in percentile_config(),
        ewma in ewma_config(),
        which in 0usize..4,
    ) {
        let (mut p, mut e, _) = all_predictors(pct.clone(), ewma.clone());
        let name = &names()[which];
        let mut largest = 0u64;
        for step in history.iter().filter(|s| !s.exhausted.iter().any(|&x| x)) {
            let o = step.observation();
            p.observe("k", &o);
            e.observe("k", &o);
            largest = largest.max(step.usage[which]);
        }
        let level = |q: &dyn ResourcePredictor| {
            q.predict("k", &Resources::new()).resources.get(name)
        };
        let bounds = [
            (
                &mut p as &mut dyn ResourcePredictor,
                pct.exhaustion_growth_bound(),
                largest as f64 * (1.0 + pct.margin),
                pct.exhaustion_bump,
            ),
            (&mut e, ewma.exhaustion_growth_bound(), 0.0, ewma.exhaustion_bump),
        ];
        for (q, bound, floor, bump) in bounds {
            let start = level(&*q) as f64;
            let mut previous = start;
            for i in 0..run {
                let at = Timestamp::from_secs(1_000_000 + i as u64);
                let usage = Resources::new().with(name, level(&*q));
                q.observe("k", &Observation::new(usage, at).with_exhausted(name.clone()));
                let now = level(&*q) as f64;
                prop_assert!(now >= previous, "an exhaustion lowered the prediction");
                previous = now;
            }
            // Rounding up to whole units may add up to one unit per step.
            let slack = (run as f64 + 1.0) * (1.0 + bump) * bound;
            let limit = start.max(floor) * bound * (1.0 + 1e-9) + slack;
            prop_assert!(previous <= limit, "{previous} > {limit} after {run} (start {start})");
        }
    }

    /// The same inputs give the same predictions and state, and a predictor restored
    /// from a snapshot carries on exactly as the original.
    #[test]
    fn same_inputs_same_outputs_through_snapshots(
        steps in tame_steps(),
        pct in percentile_config(),
        ewma in ewma_config(),
        split in 0usize..80,
        request in requested(),
    ) {
        let run = |restore_at: Option<usize>| {
            let (mut p, mut e, _) = all_predictors(pct.clone(), ewma.clone());
            for (i, step) in steps.iter().enumerate() {
                if restore_at == Some(i) {
                    let json = serde_json::to_string(&p.snapshot()).expect("serializes");
                    p = PercentilePredictor::restore(serde_json::from_str(&json).expect("restores"));
                    let json = serde_json::to_string(&e.snapshot()).expect("serializes");
                    e = EwmaPredictor::restore(serde_json::from_str(&json).expect("restores"));
                }
                let o = step.observation();
                p.observe(KINDS[step.kind], &o);
                e.observe(KINDS[step.kind], &o);
            }
            let predictions: Vec<_> = KINDS
                .iter()
                .map(|k| (p.predict(k, &request), e.predict(k, &request)))
                .collect();
            (predictions, p, e)
        };
        let (a, pa, ea) = run(None);
        let (b, pb, eb) = run(None);
        let (c, pc, ec) = run(Some(split.min(steps.len() - 1)));
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
        prop_assert_eq!(&pa, &pb);
        prop_assert_eq!(&pa, &pc);
        prop_assert_eq!(&ea, &eb);
        prop_assert_eq!(&ea, &ec);
    }

    /// The static predictor's margin rounds up and never goes below the request.
    #[test]
    fn static_margin_bounds(request in requested(), margin in 0.0f64..2.0) {
        let p = StaticPredictor::new().with_margin(margin).expect("valid margin");
        let prediction = p.predict("any", &request);
        for (name, amount) in request.iter() {
            let v = prediction.resources.get(&name);
            prop_assert!(v >= amount);
            let top = (amount as f64 * (1.0 + margin)).ceil() * (1.0 + 1e-12) + 1.0;
            prop_assert!(v == u64::MAX || (v as f64) <= top);
        }
    }
}
