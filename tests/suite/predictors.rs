//! Resource predictors through the public API: fallbacks, learning, per-kind
//! configuration, validation, percentile accuracy, decay, the damped exhaustion bump,
//! extended resources, snapshots and determinism.

use std::time::Duration;

use concord::resource::{
    EwmaConfig, EwmaPredictor, Observation, PercentileConfig, PercentilePredictor, PredictorError,
    ResourcePredictor, StaticPredictor,
};
use concord::{ResourceName, Resources, Timestamp};

const DAY: u64 = 24 * 3600;

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

fn cpu(millis: u64) -> Resources {
    Resources::new().with_cpu_millis(millis)
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn seen(usage: Resources, secs: u64) -> Observation {
    Observation::new(usage, at(secs))
}

fn exhausted(usage: Resources, secs: u64, resource: ResourceName) -> Observation {
    Observation::new(usage, at(secs)).with_exhausted(resource)
}

fn cpu_of<P: ResourcePredictor + ?Sized>(p: &P, kind: &str) -> u64 {
    p.predict(kind, &cpu(1)).resources.cpu_millis()
}

fn invalid(result: Result<impl std::fmt::Debug, PredictorError>) -> (&'static str, f64) {
    match result {
        Err(PredictorError::InvalidConfig { setting, value, .. }) => (setting, value),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

// ----- static ------------------------------------------------------------------

#[test]
fn static_returns_the_request_and_learns_nothing() {
    let requested = res("cpu=1500m,memory=3Gi,storage=10Gi,gpu=2");
    let mut p = StaticPredictor::new();
    p.observe("build", &seen(res("cpu=8,memory=30Gi"), 1));
    let prediction = p.predict("build", &requested);
    assert_eq!(prediction.resources, requested);
    assert_eq!(prediction.samples, 0);
    assert_eq!(p.margin(), 0.0);
}

#[test]
fn static_margin_rounds_up_and_saturates() {
    let p = StaticPredictor::new().with_margin(0.5).unwrap();
    let prediction = p.predict("x", &res("cpu=1m,memory=3B,gpu=1"));
    assert_eq!(prediction.resources, res("cpu=2m,memory=5B,gpu=2"));
    let huge = Resources::new().with_memory_bytes(u64::MAX);
    assert_eq!(p.predict("x", &huge).resources.memory_bytes(), u64::MAX);
    let tiny = StaticPredictor::new().with_margin(1e-18).unwrap();
    let big = Resources::new().with_storage_bytes((1 << 63) + 1);
    assert_eq!(tiny.predict("x", &big).resources, big);
}

#[test]
fn static_rejects_bad_margins() {
    for bad in [-0.1, f64::NAN, f64::INFINITY] {
        let (setting, value) = invalid(StaticPredictor::new().with_margin(bad));
        assert_eq!(setting, "margin");
        assert!(value.is_nan() || value == bad);
    }
}

// ----- fallbacks ---------------------------------------------------------------

#[test]
fn learners_fall_back_to_the_request_for_unknown_kinds() {
    let requested = res("cpu=2,memory=4Gi,gpu=1");
    let ewma = EwmaPredictor::default();
    let pct = PercentilePredictor::default();
    for p in [&ewma as &dyn ResourcePredictor, &pct] {
        let prediction = p.predict("never-seen", &requested);
        assert_eq!(prediction.resources, requested);
        assert_eq!(prediction.samples, 0);
    }
}

#[test]
fn unreported_resources_fall_back_and_unrequested_ones_are_predicted() {
    let mut ewma = EwmaPredictor::default();
    let mut pct = PercentilePredictor::default();
    let usage = res("cpu=1,gpu=1");
    ewma.observe("train", &seen(usage.clone(), 10));
    pct.observe("train", &seen(usage, 10));
    for p in [&ewma as &dyn ResourcePredictor, &pct] {
        let prediction = p.predict("train", &res("cpu=4,storage=10Gi"));
        assert_eq!(prediction.samples, 1);
        // cpu learned (1 core + 15%), storage never reported (the request), gpu
        // reported but not requested (1 + 15%, rounded up).
        assert_eq!(prediction.resources, res("cpu=1150m,storage=10Gi,gpu=2"));
    }
}

#[test]
fn kinds_are_matched_trimmed_and_case_insensitively() {
    let mut p = EwmaPredictor::default();
    p.observe(" Build ", &seen(cpu(1000), 1));
    assert_eq!(p.observations("build"), 1);
    assert_eq!(cpu_of(&p, "BUILD"), 1150);
    assert!(p.forget("build"));
    assert!(!p.forget("build"));
    assert_eq!(p.predict("build", &cpu(7)).samples, 0);
}

// ----- EWMA learning -----------------------------------------------------------

#[test]
fn ewma_tracks_the_average_of_peaks() {
    let mut p = EwmaPredictor::default(); // alpha 0.3, margin 0.15
    p.observe("k", &seen(res("memory=1Gi"), 1));
    for i in 0..20 {
        p.observe("k", &seen(res("memory=1Gi"), 2 + i));
    }
    // A constant input stays exactly constant: 1Gi * 1.15, rounded up.
    let memory = p.predict("k", &res("memory=8Gi")).resources.memory_bytes();
    assert_eq!(memory, 1_234_803_098);

    let mut p = EwmaPredictor::new(EwmaConfig::default().with_margin(0.0)).unwrap();
    p.observe("k", &seen(cpu(1000), 1));
    p.observe("k", &seen(cpu(2000), 2));
    assert_eq!(cpu_of(&p, "k"), 1300); // 1000 + 0.3 * 1000
    // A resource that stops being reported decays towards zero.
    p.observe("k", &seen(res("memory=1Gi"), 3));
    assert_eq!(cpu_of(&p, "k"), 910); // 0.7 * 1300
    assert_eq!(p.observations("k"), 3);
}

#[test]
fn ewma_alpha_one_remembers_only_the_last_peak() {
    let mut p = EwmaPredictor::new(EwmaConfig::default().with_alpha(1.0).with_margin(0.0)).unwrap();
    for (i, v) in [500, 9000, 1200].into_iter().enumerate() {
        p.observe("k", &seen(cpu(v), i as u64));
    }
    assert_eq!(cpu_of(&p, "k"), 1200);
}

// ----- per-kind configuration --------------------------------------------------

#[test]
fn per_kind_configs_override_margins_and_percentiles() {
    let ewma = EwmaPredictor::default()
        .with_kind_config("Deploy", EwmaConfig::default().with_margin(1.0))
        .unwrap();
    assert_eq!(ewma.config_for("deploy").margin, 1.0);
    assert_eq!(ewma.config_for("other").margin, 0.15);
    assert_eq!(ewma.config(), &EwmaConfig::default());
    let mut ewma = ewma;
    for kind in ["deploy", "other"] {
        ewma.observe(kind, &seen(cpu(1000), 1));
    }
    assert_eq!(cpu_of(&ewma, "deploy"), 2000);
    assert_eq!(cpu_of(&ewma, "other"), 1150);

    let mut pct = PercentilePredictor::default()
        .with_kind_config(
            "median",
            PercentileConfig::default()
                .with_percentile(0.5)
                .with_margin(0.0),
        )
        .unwrap();
    for v in 1..=100 {
        pct.observe("median", &seen(cpu(v), 1));
        pct.observe("p90", &seen(cpu(v), 1));
    }
    let median = cpu_of(&pct, "median");
    assert!((50..=53).contains(&median), "{median}");
    let p90 = cpu_of(&pct, "p90");
    assert!((104..=109).contains(&p90), "{p90}");
}

#[test]
fn per_kind_config_errors_leave_the_predictor_unchanged() {
    let mut p = EwmaPredictor::default();
    assert!(matches!(
        p.set_kind_config("bad kind!", EwmaConfig::default()),
        Err(PredictorError::Name(_))
    ));
    assert!(matches!(
        p.set_kind_config("", EwmaConfig::default()),
        Err(PredictorError::Name(_))
    ));
    let (setting, _) = invalid(p.set_kind_config("ok", EwmaConfig::default().with_alpha(0.0)));
    assert_eq!(setting, "alpha");
    assert_eq!(p, EwmaPredictor::default());

    let mut pct = PercentilePredictor::default();
    assert!(matches!(
        pct.set_kind_config("a b", PercentileConfig::default()),
        Err(PredictorError::Name(_))
    ));
    let (setting, _) = invalid(
        PercentilePredictor::default()
            .with_kind_config("ok", PercentileConfig::default().with_percentile(2.0)),
    );
    assert_eq!(setting, "percentile");
    assert_eq!(pct, PercentilePredictor::default());
}

#[test]
fn changing_the_histogram_shape_of_a_kind_forgets_it() {
    let mut p = PercentilePredictor::default();
    p.observe("k", &seen(cpu(1000), 1));
    // Same half-life and growth: kept.
    p.set_kind_config("k", PercentileConfig::default().with_margin(0.0))
        .unwrap();
    assert_eq!(cpu_of(&p, "k"), 1000);
    // Another half-life: the histogram cannot be converted.
    p.set_kind_config(
        "k",
        PercentileConfig::default().with_half_life(Duration::from_secs(3600)),
    )
    .unwrap();
    assert_eq!(p.observations("k"), 0);
    assert_eq!(cpu_of(&p, "k"), 1);
}

// ----- validation ----------------------------------------------------------------

#[test]
fn ewma_config_validation_names_setting_and_value() {
    let d = EwmaConfig::default;
    let cases: Vec<(EwmaConfig, &str, f64)> = vec![
        (d().with_alpha(0.0), "alpha", 0.0),
        (d().with_alpha(1.5), "alpha", 1.5),
        (d().with_alpha(-1.0), "alpha", -1.0),
        (d().with_margin(-0.01), "margin", -0.01),
        (d().with_margin(f64::INFINITY), "margin", f64::INFINITY),
        (d().with_exhaustion_bump(-0.2), "exhaustion_bump", -0.2),
        (
            d().with_exhaustion_bump(f64::INFINITY),
            "exhaustion_bump",
            f64::INFINITY,
        ),
        (
            d().with_exhaustion_bump_decay(1.0),
            "exhaustion_bump_decay",
            1.0,
        ),
        (
            d().with_exhaustion_bump_decay(-0.5),
            "exhaustion_bump_decay",
            -0.5,
        ),
    ];
    for (config, setting, value) in cases {
        assert_eq!(invalid(config.validate()), (setting, value));
        assert_eq!(invalid(EwmaPredictor::new(config)), (setting, value));
    }
    let (setting, value) = invalid(d().with_alpha(f64::NAN).validate());
    assert_eq!(setting, "alpha");
    assert!(value.is_nan());
    assert!(d().with_alpha(1.0).with_margin(0.0).validate().is_ok());
    let message = d().with_alpha(2.0).validate().unwrap_err().to_string();
    assert_eq!(
        message,
        "predictor setting alpha = 2 is out of range (in (0, 1])"
    );
}

#[test]
fn percentile_config_validation_names_setting_and_value() {
    let d = PercentileConfig::default;
    let cases: Vec<(PercentileConfig, &str, f64)> = vec![
        (d().with_percentile(0.0), "percentile", 0.0),
        (d().with_percentile(1.01), "percentile", 1.01),
        (d().with_margin(-1.0), "margin", -1.0),
        (d().with_half_life(Duration::ZERO), "half_life", 0.0),
        (
            d().with_half_life(Duration::from_micros(1500)),
            "half_life",
            0.0015,
        ),
        (
            d().with_half_life(Duration::from_micros(500)),
            "half_life",
            0.0005,
        ),
        (d().with_bucket_growth(1.0), "bucket_growth", 1.0),
        (d().with_bucket_growth(1.0001), "bucket_growth", 1.0001),
        (d().with_bucket_growth(11.0), "bucket_growth", 11.0),
        (d().with_exhaustion_bump(-1.0), "exhaustion_bump", -1.0),
        (
            d().with_exhaustion_bump_decay(1.5),
            "exhaustion_bump_decay",
            1.5,
        ),
        (d().with_exhaustion_weight(0.5), "exhaustion_weight", 0.5),
        (
            d().with_exhaustion_weight(f64::INFINITY),
            "exhaustion_weight",
            f64::INFINITY,
        ),
    ];
    for (config, setting, value) in cases {
        assert_eq!(invalid(config.validate()), (setting, value));
        assert_eq!(invalid(PercentilePredictor::new(config)), (setting, value));
    }
    assert!(
        d().with_percentile(1.0)
            .with_bucket_growth(10.0)
            .with_half_life(Duration::from_millis(1))
            .with_exhaustion_bump(0.0)
            .with_exhaustion_bump_decay(0.0)
            .with_exhaustion_weight(1.0)
            .validate()
            .is_ok()
    );
}

#[test]
fn configs_are_serde_data_with_defaults() {
    let ewma: EwmaConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(ewma, EwmaConfig::default());
    let pct: PercentileConfig = serde_json::from_str(
        r#"{"percentile": 0.99, "margin": 0.3, "half_life": 60000,
            "exhaustion_ceiling": {"memory": "32Gi", "gpu": 4}}"#,
    )
    .unwrap();
    assert_eq!(
        pct,
        PercentileConfig::default()
            .with_percentile(0.99)
            .with_margin(0.3)
            .with_half_life(Duration::from_secs(60))
            .with_exhaustion_ceiling(res("memory=32Gi,gpu=4"))
    );
    let json = serde_json::to_string(&pct).unwrap();
    assert_eq!(
        serde_json::from_str::<PercentileConfig>(&json).unwrap(),
        pct
    );
    assert!(serde_json::from_str::<EwmaConfig>(r#"{"alpa": 0.5}"#).is_err());
}

// ----- percentile accuracy -------------------------------------------------------

#[test]
fn percentile_of_one_to_a_hundred_is_ninety_within_a_bucket() {
    let mut p = PercentilePredictor::new(PercentileConfig::default().with_margin(0.0)).unwrap();
    let mut with_margin = PercentilePredictor::default();
    for v in 1..=100 {
        let o = seen(Resources::new().with_named("llm_tokens", v).unwrap(), 5);
        p.observe("chat", &o);
        with_margin.observe("chat", &o);
    }
    let request = Resources::new().with_named("llm_tokens", 1).unwrap();
    let p90 = p.predict("chat", &request).resources.amount("llm_tokens");
    assert!((90..=95).contains(&p90), "{p90}");
    let padded = with_margin
        .predict("chat", &request)
        .resources
        .amount("llm_tokens");
    assert_eq!(padded, (p90 as f64 * 1.15).ceil() as u64);
}

#[test]
fn percentile_extremes_are_the_smallest_and_largest_buckets() {
    let max = PercentileConfig::default()
        .with_percentile(1.0)
        .with_margin(0.0);
    let low = PercentileConfig::default()
        .with_percentile(0.001)
        .with_margin(0.0);
    let mut p = PercentilePredictor::default()
        .with_kind_config("max", max)
        .unwrap()
        .with_kind_config("low", low)
        .unwrap();
    for v in [3_000u64, 70_000, 12_345_678, 450] {
        p.observe("max", &seen(cpu(v), 1));
        p.observe("low", &seen(cpu(v), 1));
    }
    assert_eq!(cpu_of(&p, "max"), 12_345_678); // the largest value, exactly
    assert_eq!(cpu_of(&p, "low"), 450);
}

#[test]
fn percentile_spans_any_magnitude() {
    let mut p = PercentilePredictor::new(
        PercentileConfig::default()
            .with_percentile(1.0)
            .with_margin(0.0),
    )
    .unwrap();
    let usage = Resources::new()
        .with_memory_bytes(u64::MAX)
        .with_storage_bytes(0)
        .with_cpu_millis(1);
    p.observe("k", &seen(usage.clone(), 1));
    p.observe("k", &seen(res("storage=1B"), 1));
    let prediction = p.predict("k", &Resources::new());
    assert_eq!(prediction.resources.memory_bytes(), u64::MAX);
    assert_eq!(prediction.resources.cpu_millis(), 1);
    assert_eq!(prediction.resources.storage_bytes(), 1);
}

// ----- decay -----------------------------------------------------------------------

#[test]
fn new_samples_outweigh_old_ones_after_half_lives() {
    let build = |late: u64| {
        let mut p = PercentilePredictor::default();
        for _ in 0..100 {
            p.observe("k", &seen(cpu(100), DAY));
        }
        for _ in 0..5 {
            p.observe("k", &seen(cpu(500), DAY + late));
        }
        cpu_of(&p, "k")
    };
    // At the same time, 5 of 105 samples are above the 90th percentile.
    assert_eq!(build(0), 115);
    // Five half-lives later each new sample weighs 32 old ones.
    assert_eq!(build(5 * DAY), 575);
}

#[test]
fn a_shorter_half_life_forgets_faster() {
    let hour = PercentileConfig::default().with_half_life(Duration::from_secs(3600));
    let mut p = PercentilePredictor::default()
        .with_kind_config("fast", hour)
        .unwrap();
    for kind in ["fast", "slow"] {
        for _ in 0..100 {
            p.observe(kind, &seen(cpu(100), 0));
        }
        for _ in 0..5 {
            p.observe(kind, &seen(cpu(500), 5 * 3600));
        }
    }
    assert_eq!(cpu_of(&p, "fast"), 575);
    assert_eq!(cpu_of(&p, "slow"), 115);
}

#[test]
fn weights_are_renormalized_over_long_histories() {
    let mut p = PercentilePredictor::default();
    // One observation every ten days for thirty years: far past 2^1024 without
    // renormalization.
    for i in 0..1100u64 {
        let v = if i < 1000 { 10_000 } else { 100 };
        p.observe("k", &seen(cpu(v), i * 10 * DAY));
    }
    // Only the recent samples count.
    assert_eq!(cpu_of(&p, "k"), 115);
    // An observation from long before everything else weighs nothing, and panics
    // nothing.
    p.observe("k", &seen(cpu(1 << 40), 0));
    assert_eq!(cpu_of(&p, "k"), 115);
    let json = serde_json::to_string(&p.snapshot()).unwrap();
    assert!(!json.contains("null"), "weights stay finite: {json}");
}

// ----- exhaustion bump -----------------------------------------------------------

/// Feeds `n` exhaustions of cpu, each at the predicted level, and returns the
/// predictions after each.
fn exhaust_at_prediction<P: ResourcePredictor + ?Sized>(
    p: &mut P,
    n: usize,
    start: u64,
) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let level = cpu_of(p, "k");
            p.observe(
                "k",
                &exhausted(cpu(level), start + i as u64, ResourceName::Cpu),
            );
            cpu_of(p, "k")
        })
        .collect()
}

#[test]
fn consecutive_bumps_shrink_and_reset_after_a_success() {
    let mut ewma = EwmaPredictor::default();
    let mut pct = PercentilePredictor::default();
    for i in 0..10 {
        ewma.observe("k", &seen(cpu(1000), i));
        pct.observe("k", &seen(cpu(1000), i));
    }
    for (name, p) in [
        ("ewma", &mut ewma as &mut dyn ResourcePredictor),
        ("percentile", &mut pct),
    ] {
        assert_eq!(cpu_of(&*p, "k"), 1150, "{name}");
        // 1150 * 1.2, * 1.1, * 1.05, ...: the margin does not stack.
        assert_eq!(
            exhaust_at_prediction(p, 3, 100),
            vec![1380, 1518, 1594],
            "{name}"
        );
    }
    // A success an hour (the default window) after the last exhaustion ends the run:
    // the next exhaustion bumps by 20% again.
    ewma.observe("k", &seen(cpu(1300), 102 + 3600));
    let level = cpu_of(&ewma, "k");
    ewma.observe("k", &exhausted(cpu(level), 3703, ResourceName::Cpu));
    assert_eq!(cpu_of(&ewma, "k"), (level as f64 * 1.2).ceil() as u64);

    pct.observe("k", &seen(cpu(1300), 102 + 3600));
    let level = cpu_of(&pct, "k");
    pct.observe("k", &exhausted(cpu(level), 3703, ResourceName::Cpu));
    assert_eq!(cpu_of(&pct, "k"), (level as f64 * 1.2).ceil() as u64);
}

/// A workload that runs out, gets through once at its usual usage, and runs out again
/// within the window stays in its run: alternating outcomes grow the prediction no
/// more than a run of exhaustions does. Ending the run at every success (a zero
/// window, as before the window) grows the percentile predictor's by 20% a cycle,
/// without bound: its exhaustions outweigh the successes between them.
#[test]
fn alternating_exhaustions_and_successes_stay_in_one_run() {
    let cycle = |p: &mut dyn ResourcePredictor, cycles: u64| {
        for i in 0..cycles {
            let level = cpu_of(p, "k");
            p.observe("k", &exhausted(cpu(level), 100 + 2 * i, ResourceName::Cpu));
            p.observe("k", &seen(cpu(1_000_000), 101 + 2 * i));
        }
    };
    let bound = EwmaConfig::default().exhaustion_growth_bound();
    let ewma = EwmaPredictor::default();
    let pct = PercentilePredictor::default();
    let eager = PercentilePredictor::new(
        PercentileConfig::default().with_exhaustion_window(Duration::ZERO),
    )
    .unwrap();
    let mut growth = Vec::new();
    for mut p in [
        Box::new(ewma) as Box<dyn ResourcePredictor>,
        Box::new(pct),
        Box::new(eager),
    ] {
        p.observe("k", &seen(cpu(1_000_000), 0));
        let start = cpu_of(&*p, "k") as f64;
        cycle(&mut *p, 60);
        growth.push(cpu_of(&*p, "k") as f64 / start);
    }
    // Rounding up to whole units adds a millicore here and there.
    assert!(growth[0] <= bound + 1e-4, "{growth:?}");
    assert!(growth[1] <= bound + 1e-4, "{growth:?}");
    assert!(growth[2] > 10.0, "{growth:?}");
}

#[test]
fn a_long_run_of_exhaustions_is_bounded() {
    let bound = EwmaConfig::default().exhaustion_growth_bound();
    assert!(bound > 1.42 && bound < 0.4f64.exp(), "{bound}");
    assert_eq!(PercentileConfig::default().exhaustion_growth_bound(), bound);
    let mut ewma = EwmaPredictor::default();
    let mut pct = PercentilePredictor::default();
    ewma.observe("k", &seen(cpu(1_000_000), 0));
    pct.observe("k", &seen(cpu(1_000_000), 0));
    for p in [&mut ewma as &mut dyn ResourcePredictor, &mut pct] {
        let start = cpu_of(&*p, "k") as f64;
        let trail = exhaust_at_prediction(p, 500, 1);
        let last = *trail.last().unwrap() as f64;
        assert!(last <= start * bound + 500.0, "{last} vs {start}");
        assert!(trail.windows(2).all(|w| w[0] <= w[1]), "never drops");
        // It stops moving: the last hundred steps add (nearly) nothing.
        assert!(trail[499] - trail[399] <= 100, "{trail:?}");
    }
}

#[test]
fn the_ceiling_caps_bumps_but_not_usage() {
    let ceiling = res("memory=1200Mi");
    let mut p = EwmaPredictor::new(
        EwmaConfig::default()
            .with_margin(0.0)
            .with_exhaustion_ceiling(ceiling.clone()),
    )
    .unwrap();
    let mi = 1 << 20;
    p.observe(
        "k",
        &exhausted(res("memory=1100Mi"), 1, ResourceName::Memory),
    );
    // 1100Mi * 1.2 would be 1320Mi: capped at 1200Mi.
    let memory = |p: &EwmaPredictor| p.predict("k", &Resources::new()).resources.memory_bytes();
    assert_eq!(memory(&p), 1200 * mi);
    // Usage above the ceiling is learned as observed, just not bumped.
    p.observe(
        "k",
        &exhausted(res("memory=2000Mi"), 2, ResourceName::Memory),
    );
    assert_eq!(memory(&p), 2000 * mi);
    // The ceiling is per resource: cpu bumps freely.
    p.observe("k", &exhausted(cpu(1000), 3, ResourceName::Cpu));
    assert_eq!(cpu_of(&p, "k"), 1200);
}

#[test]
fn an_exhaustion_without_usage_bumps_the_current_prediction() {
    let mut ewma = EwmaPredictor::default();
    let mut pct = PercentilePredictor::default();
    for p in [&mut ewma as &mut dyn ResourcePredictor, &mut pct] {
        // Nothing learned and no usage: nothing to bump from.
        p.observe("k", &exhausted(Resources::new(), 1, ResourceName::Memory));
        let prediction = p.predict("k", &res("memory=1Gi"));
        assert_eq!(prediction.resources, res("memory=1Gi"));
        assert_eq!(prediction.samples, 1);

        p.observe("k", &seen(res("memory=1000Mi"), 2));
        let before = p.predict("k", &Resources::new()).resources.memory_bytes();
        p.observe("k", &exhausted(res("cpu=1"), 3, ResourceName::Memory));
        let after = p.predict("k", &Resources::new()).resources.memory_bytes();
        // From the prediction (1000Mi * 1.15), not from zero.
        assert_eq!(after, (before as f64 * 1.2).ceil() as u64);
    }
}

#[test]
fn an_exhaustion_below_the_prediction_changes_nothing() {
    let mut p = EwmaPredictor::default();
    p.observe("k", &seen(cpu(4000), 1));
    let before = cpu_of(&p, "k");
    // The host gave the task less than predicted and it ran out: no news.
    p.observe("k", &exhausted(cpu(1000), 2, ResourceName::Cpu));
    assert_eq!(cpu_of(&p, "k"), before);
}

#[test]
fn one_exhaustion_lifts_the_percentile_until_outweighed() {
    let mut p = PercentilePredictor::default(); // exhaustion weight 10
    for i in 0..50 {
        p.observe("k", &seen(res("memory=1Gi"), i));
    }
    let gi = 1u64 << 30;
    p.observe("k", &exhausted(res("memory=1Gi"), 60, ResourceName::Memory));
    let memory =
        |p: &PercentilePredictor| p.predict("k", &Resources::new()).resources.memory_bytes();
    assert_eq!(memory(&p), (gi as f64 * 1.2).ceil() as u64);
    // Successes at the old level wear it down: the exhaustion's weight of 10 is more
    // than a tenth of 98, less than a tenth of 101.
    for i in 0..38 {
        p.observe("k", &seen(res("memory=1Gi"), 61 + i));
    }
    assert_eq!(memory(&p), (gi as f64 * 1.2).ceil() as u64);
    for i in 0..3 {
        p.observe("k", &seen(res("memory=1Gi"), 100 + i));
    }
    assert_eq!(memory(&p), (gi as f64 * 1.15).ceil() as u64);
}

// ----- extended resources --------------------------------------------------------

#[test]
fn extended_resources_are_learned_and_bumped() {
    let gpu: ResourceName = "gpu".parse().unwrap();
    let tokens: ResourceName = "llm_tokens".parse().unwrap();
    let mut ewma = EwmaPredictor::new(EwmaConfig::default().with_margin(0.0)).unwrap();
    let mut pct = PercentilePredictor::new(PercentileConfig::default().with_margin(0.0)).unwrap();
    for p in [&mut ewma as &mut dyn ResourcePredictor, &mut pct] {
        for i in 0..5 {
            p.observe("agent", &seen(res("gpu=2,llm_tokens=100k"), i));
        }
        let request = res("gpu=1,llm_tokens=1M,cpu=1");
        assert_eq!(
            p.predict("agent", &request).resources,
            res("cpu=1,gpu=2,llm_tokens=100k")
        );
        p.observe(
            "agent",
            &seen(res("gpu=2,llm_tokens=100k"), 10).with_exhausted(tokens.clone()),
        );
        let after = p.predict("agent", &request).resources;
        assert_eq!(after.get(&tokens), 120_000);
        assert_eq!(after.get(&gpu), 2);
    }
}

// ----- snapshots and determinism -------------------------------------------------

fn history() -> Vec<(&'static str, Observation)> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..300u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let kind = ["build", "test", "deploy"][(x % 3) as usize];
        let usage = Resources::new()
            .with_cpu_millis(100 + x % 4000)
            .with_memory_bytes((x >> 8) % (8 << 30))
            .with_named("gpu", (x >> 40) % 3)
            .unwrap();
        let mut o = Observation::new(usage, at(i * 3600));
        if x % 7 == 0 {
            o = o.with_exhausted(ResourceName::Memory);
        }
        out.push((kind, o));
    }
    out
}

#[test]
fn the_same_inputs_give_the_same_predictions_and_state() {
    let run = |reverse_kinds: bool| {
        let mut ewma = EwmaPredictor::default();
        let mut pct = PercentilePredictor::default();
        let mut h = history();
        if reverse_kinds {
            // Kinds are independent: interleaving them differently changes nothing.
            h.sort_by_key(|(kind, _)| std::cmp::Reverse(*kind));
        }
        for (kind, o) in &h {
            ewma.observe(kind, o);
            pct.observe(kind, o);
        }
        let request = res("cpu=1,memory=1Gi,storage=1Gi");
        let predictions: Vec<_> = ["build", "test", "deploy", "none"]
            .iter()
            .map(|k| (ewma.predict(k, &request), pct.predict(k, &request)))
            .collect();
        // What each kind learned, without when it was last observed (the order in
        // which a full predictor forgets kinds, which the interleaving does set).
        let learned = |mut v: serde_json::Value| {
            for state in v["kinds"].as_object_mut().unwrap().values_mut() {
                state.as_object_mut().unwrap().remove("last_seen");
            }
            v.to_string()
        };
        (
            predictions,
            learned(serde_json::to_value(ewma.snapshot()).unwrap()),
            learned(serde_json::to_value(pct.snapshot()).unwrap()),
        )
    };
    let a = run(false);
    assert_eq!(a, run(false));
    assert_eq!(a, run(true));
}

#[test]
fn snapshots_restore_predictors_that_learn_on_identically() {
    let mut ewma = EwmaPredictor::default()
        .with_kind_config("deploy", EwmaConfig::default().with_alpha(0.9))
        .unwrap();
    let mut pct = PercentilePredictor::default()
        .with_kind_config("deploy", PercentileConfig::default().with_percentile(0.5))
        .unwrap();
    let h = history();
    let (first, rest) = h.split_at(150);
    for (kind, o) in first {
        ewma.observe(kind, o);
        pct.observe(kind, o);
    }
    let mut ewma2 = EwmaPredictor::restore(
        serde_json::from_str(&serde_json::to_string(&ewma.snapshot()).unwrap()).unwrap(),
    );
    let mut pct2 = PercentilePredictor::restore(
        serde_json::from_str(&serde_json::to_string(&pct.snapshot()).unwrap()).unwrap(),
    );
    assert_eq!(ewma2, ewma);
    assert_eq!(pct2, pct);
    for (kind, o) in rest {
        ewma.observe(kind, o);
        pct.observe(kind, o);
        ewma2.observe(kind, o);
        pct2.observe(kind, o);
    }
    assert_eq!(ewma2, ewma);
    assert_eq!(pct2, pct);
    assert_eq!(pct2.config_for("deploy").percentile, 0.5);
}

#[test]
fn corrupt_snapshots_are_rejected() {
    let mut ewma = EwmaPredictor::default();
    let mut pct = PercentilePredictor::default();
    ewma.observe("k", &seen(cpu(1000), 1));
    pct.observe("k", &seen(cpu(1000), 1));
    pct.observe("k", &seen(cpu(5000), 1));
    let ewma_json = serde_json::to_value(ewma.snapshot()).unwrap();
    let pct_json = serde_json::to_value(pct.snapshot()).unwrap();

    let ewma_rejects = |edit: &dyn Fn(&mut serde_json::Value), why: &str| {
        let mut v = ewma_json.clone();
        edit(&mut v);
        let result = serde_json::from_value(v).map(EwmaPredictor::restore);
        let message = result.expect_err(why).to_string();
        assert!(message.contains(why), "{message} lacks {why}");
    };
    ewma_rejects(&|v| v["version"] = 2.into(), "version 2");
    ewma_rejects(&|v| v["config"]["alpha"] = 0.0.into(), "alpha");
    ewma_rejects(
        &|v| v["kinds"]["k"]["resources"]["cpu"]["learned"]["average"] = (-1f64).to_bits().into(),
        "average -1",
    );
    ewma_rejects(
        &|v| v["kinds"]["K"] = v["kinds"]["k"].clone(),
        "not normalized",
    );
    ewma_rejects(
        &|v| v["kind_configs"]["bad kind"] = v["config"].clone(),
        "bad kind",
    );
    ewma_rejects(&|v| v["surprise"] = 1.into(), "unknown field");

    let pct_rejects = |edit: &dyn Fn(&mut serde_json::Value), why: &str| {
        let mut v = pct_json.clone();
        edit(&mut v);
        let result = serde_json::from_value(v).map(PercentilePredictor::restore);
        let message = result.expect_err(why).to_string();
        assert!(message.contains(why), "{message} lacks {why}");
    };
    fn hist(v: &mut serde_json::Value) -> &mut serde_json::Value {
        &mut v["kinds"]["k"]["resources"]["cpu"]["learned"]
    }
    pct_rejects(&|v| hist(v)["reference"] = 1.into(), "half-lives");
    pct_rejects(
        &|v| {
            if let Some(b) = hist(v)["buckets"].as_array_mut() {
                b.reverse();
            }
        },
        "out of order",
    );
    pct_rejects(&|v| hist(v)["buckets"][0][1] = 0.into(), "weight 0");
    pct_rejects(
        &|v| hist(v)["buckets"][0][2] = (-5f64).to_bits().into(),
        "value -5",
    );
    pct_rejects(
        &|v| hist(v)["buckets"][1][0] = 1_000_000.into(),
        "out of order or range",
    );
}

#[test]
fn predictors_are_object_safe_and_thread_safe() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<StaticPredictor>();
    send_sync::<EwmaPredictor>();
    send_sync::<PercentilePredictor>();
    let mut all: Vec<Box<dyn ResourcePredictor>> = vec![
        Box::new(StaticPredictor::new()),
        Box::new(EwmaPredictor::default()),
        Box::new(PercentilePredictor::default()),
    ];
    for p in &mut all {
        p.observe("k", &seen(cpu(10), 1));
        assert!(p.predict("k", &cpu(10)).resources.cpu_millis() >= 10);
    }
}

/// What the coordinator's predictor learned outlives a restart when the host keeps a
/// handle to it (`Arc<Mutex<_>>`), checkpoints it beside the coordinator, and hands
/// the restored predictor to the restored coordinator: both predict the same.
#[test]
fn a_shared_predictor_is_checkpointed_beside_the_coordinator() {
    use std::sync::{Arc, Mutex};

    use concord::coordinator::Coordinator;
    use concord::resource::PercentilePredictor;
    use concord::{
        AgentId, AgentProfile, ManualClock, Resources, RuleBasedAnalyzer, RuleSet, Task, TaskId,
        Timestamp,
    };

    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let learned = Arc::new(Mutex::new(PercentilePredictor::default()));
    let builder = || {
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
    };
    let coordinator = builder().predictor(Arc::clone(&learned)).build();
    coordinator
        .register_agent(
            AgentProfile::new(AgentId::new(1), "big")
                .with_capacity("cpu=64,memory=64Gi".parse().unwrap()),
        )
        .unwrap();
    let asked: Resources = "cpu=1,memory=1Gi".parse().unwrap();
    for id in 1..=20 {
        let task = Task::new(TaskId::new(id), "index", "index the docs")
            .with_requirements(concord::Requirements::new().with_resources(asked.clone()));
        assert!(coordinator.assign(task).unwrap().assignment().is_some());
        let used: Resources = "cpu=3,memory=2Gi".parse().unwrap();
        coordinator
            .complete(TaskId::new(id), true, Some(used))
            .unwrap();
    }
    let before = coordinator.with_core(|c| c.predictor().predict("index", &asked));
    assert!(
        before.resources.cpu_millis() > 1000,
        "it learned: {before:?}"
    );

    // The checkpoint: the coordinator's snapshot and the predictor's, side by side.
    let snapshot = serde_json::to_string(&coordinator.snapshot()).unwrap();
    let predictor = serde_json::to_string(&learned.lock().unwrap().snapshot()).unwrap();
    let restored = builder()
        .predictor(PercentilePredictor::restore(
            serde_json::from_str(&predictor).unwrap(),
        ))
        .restore(serde_json::from_str(&snapshot).unwrap())
        .unwrap();
    let after = restored.with_core(|c| c.predictor().predict("index", &asked));
    assert_eq!(after, before);
}
