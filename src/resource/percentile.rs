//! [`PercentilePredictor`]: a percentile of a decaying histogram of peak usage, per
//! task kind and per resource, times a safety margin, in the manner of the Kubernetes
//! vertical pod autoscaler's recommender.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::bump::{
    Bump, DEFAULT_EXHAUSTION_WINDOW, Estimator, Learner, LearnerConfig, SnapshotData, check,
    check_margin, f64_bits, growth_bound,
};
use super::error::PredictorError;
use super::{Observation, Prediction, ResourcePredictor, Resources};
use crate::clock::Timestamp;
use crate::serde_util::duration_ms;

/// Settings of a [`PercentilePredictor`]. Serde data with the vertical pod autoscaler's
/// defaults: the 90th percentile plus 15%, a 24-hour half-life, buckets 5% apart.
///
/// ```
/// use std::time::Duration;
/// use concord::resource::PercentileConfig;
///
/// let config: PercentileConfig =
///     serde_json::from_str(r#"{"percentile": 0.95, "half_life": 3600000}"#)?;
/// assert_eq!(
///     config,
///     PercentileConfig::default()
///         .with_percentile(0.95)
///         .with_half_life(Duration::from_secs(3600))
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PercentileConfig {
    /// Which percentile of the observed peaks to predict, in (0, 1] (default 0.90);
    /// 1 is the largest.
    pub percentile: f64,
    /// Safety margin: predictions are the percentile times `1 + margin` (default
    /// 0.15).
    pub margin: f64,
    /// Time for an observation's weight to halve, a whole number of milliseconds, at
    /// least one (default 24 hours). Integer milliseconds in serde data.
    #[serde(with = "duration_ms")]
    pub half_life: Duration,
    /// Ratio of each histogram bucket's width to the previous one's, in [1.001, 10]
    /// (default 1.05): percentiles are exact to within this factor.
    pub bucket_growth: f64,
    /// Bump of the first exhaustion in a run, `b` (default 0.2): see
    /// [`PercentilePredictor`]'s section on exhaustion.
    pub exhaustion_bump: f64,
    /// Factor each further bump in a run is multiplied by, `d`, in [0, 1) (default
    /// 0.5).
    pub exhaustion_bump_decay: f64,
    /// How long after a run's last exhaustion an observation without the resource
    /// exhausted must come to end the run (default one hour): an exhaustion in a run
    /// bumps less than the one before, and a workload that runs out, gets through
    /// once, and runs out again is still in its run. Zero ends the run at the first
    /// such observation. Integer milliseconds in serde data.
    #[serde(with = "duration_ms")]
    pub exhaustion_window: Duration,
    /// How many ordinary observations one exhaustion counts as, finite and at least 1
    /// (default 10).
    pub exhaustion_weight: f64,
    /// Highest level a bump may raise the prediction of each resource to; resources
    /// not named have no ceiling (default none). A ceiling never lowers observed usage.
    pub exhaustion_ceiling: Resources,
}

impl Default for PercentileConfig {
    fn default() -> Self {
        PercentileConfig {
            percentile: 0.90,
            margin: 0.15,
            half_life: Duration::from_secs(24 * 3600),
            bucket_growth: 1.05,
            exhaustion_bump: 0.2,
            exhaustion_bump_decay: 0.5,
            exhaustion_window: DEFAULT_EXHAUSTION_WINDOW,
            exhaustion_weight: 10.0,
            exhaustion_ceiling: Resources::new(),
        }
    }
}

impl PercentileConfig {
    /// Sets [`percentile`](Self::percentile).
    pub fn with_percentile(mut self, percentile: f64) -> Self {
        self.percentile = percentile;
        self
    }

    /// Sets [`margin`](Self#structfield.margin).
    pub fn with_margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    /// Sets [`half_life`](Self::half_life).
    pub fn with_half_life(mut self, half_life: Duration) -> Self {
        self.half_life = half_life;
        self
    }

    /// Sets [`bucket_growth`](Self::bucket_growth).
    pub fn with_bucket_growth(mut self, growth: f64) -> Self {
        self.bucket_growth = growth;
        self
    }

    /// Sets [`exhaustion_bump`](Self::exhaustion_bump).
    pub fn with_exhaustion_bump(mut self, bump: f64) -> Self {
        self.exhaustion_bump = bump;
        self
    }

    /// Sets [`exhaustion_bump_decay`](Self::exhaustion_bump_decay).
    pub fn with_exhaustion_bump_decay(mut self, decay: f64) -> Self {
        self.exhaustion_bump_decay = decay;
        self
    }

    /// Sets [`exhaustion_window`](Self::exhaustion_window).
    pub fn with_exhaustion_window(mut self, window: Duration) -> Self {
        self.exhaustion_window = window;
        self
    }

    /// Sets [`exhaustion_weight`](Self::exhaustion_weight).
    pub fn with_exhaustion_weight(mut self, weight: f64) -> Self {
        self.exhaustion_weight = weight;
        self
    }

    /// Sets [`exhaustion_ceiling`](Self::exhaustion_ceiling).
    pub fn with_exhaustion_ceiling(mut self, ceiling: Resources) -> Self {
        self.exhaustion_ceiling = ceiling;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`PredictorError::InvalidConfig`] naming the first setting out of range and its
    /// value (the half-life in seconds).
    pub fn validate(&self) -> Result<(), PredictorError> {
        check(
            "percentile",
            self.percentile,
            self.percentile > 0.0 && self.percentile <= 1.0,
            "in (0, 1]",
        )?;
        check_margin(self.margin)?;
        check(
            "half_life",
            self.half_life.as_secs_f64(),
            self.half_life >= Duration::from_millis(1)
                && self.half_life.subsec_nanos() % 1_000_000 == 0
                && u64::try_from(self.half_life.as_millis()).is_ok(),
            "a whole number of milliseconds, at least 1ms",
        )?;
        check(
            "bucket_growth",
            self.bucket_growth,
            (1.001..=10.0).contains(&self.bucket_growth),
            "in [1.001, 10]",
        )?;
        self.bump().validate()?;
        check(
            "exhaustion_weight",
            self.exhaustion_weight,
            self.exhaustion_weight.is_finite() && self.exhaustion_weight >= 1.0,
            "finite, >= 1",
        )
    }

    /// The most a run of consecutive exhaustions, each at the predicted level, can
    /// multiply a prediction by (beyond the largest usage ever recorded times
    /// `1 + margin`): `prod (1 + b * d^n)`, below `exp(b / (1 - d))` (about 1.42 with
    /// the defaults).
    pub fn exhaustion_growth_bound(&self) -> f64 {
        growth_bound(self.exhaustion_bump, self.exhaustion_bump_decay)
    }

    fn bump(&self) -> Bump<'_> {
        Bump {
            initial: self.exhaustion_bump,
            decay: self.exhaustion_bump_decay,
            window: self.exhaustion_window,
            weight: self.exhaustion_weight,
            ceiling: &self.exhaustion_ceiling,
            margin: self.margin,
        }
    }

    /// The half-life in nanoseconds, at least one.
    fn half_life_nanos(&self) -> u64 {
        u64::try_from(self.half_life.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl LearnerConfig for PercentileConfig {
    fn validate(&self) -> Result<(), PredictorError> {
        PercentileConfig::validate(self)
    }

    fn margin(&self) -> f64 {
        self.margin
    }

    fn bump(&self) -> Bump<'_> {
        PercentileConfig::bump(self)
    }
}

/// When a new sample's decay exponent would pass this many half-lives, the reference
/// time moves forward and all weights are rescaled (as in the VPA), so weights stay
/// far from overflow.
const MAX_DECAY_EXPONENT: u64 = 100;

/// After a rescale, buckets lighter than this (a sample about ten half-lives older
/// than the new reference) are dropped.
const MIN_WEIGHT: f64 = 1e-3;

/// The largest value bucket indices are computed for; larger values share the last
/// bucket.
const TOP_VALUE: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// One non-empty bucket: index, total weight, and the largest value recorded in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Bucket(
    u32,
    #[serde(with = "f64_bits")] f64,
    #[serde(with = "f64_bits")] f64,
);

/// A histogram with exponentially growing buckets whose samples lose half their
/// weight every half-life.
///
/// Bucket `n` covers `[s(n), s(n + 1))` with `s(n) = (g^n - 1) / (g - 1)` base units
/// for growth `g`: the first bucket is one unit wide and each is `g` times wider than
/// the one before. A sample at time `t` weighs `2^((t - reference) / half_life)`, so
/// newer samples weigh more and nothing needs to be revisited as time passes; the
/// reference is a whole number of half-lives and moves forward (rescaling every
/// weight by a power of two, exactly) when the exponent grows large.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Histogram {
    reference: Timestamp,
    /// Non-empty buckets, by index.
    buckets: Vec<Bucket>,
}

impl Histogram {
    fn bucket_index(value: f64, growth: f64) -> u32 {
        let index = |v: f64| ((v * (growth - 1.0) + 1.0).ln() / growth.ln()).floor();
        if value.is_nan() || value < 1.0 {
            return 0;
        }
        let last = index(TOP_VALUE);
        // `as` saturates; the checks keep `last` far below u32::MAX.
        index(value).min(last) as u32
    }

    /// The value at `percentile` of the recorded weight: the largest value recorded in
    /// the bucket where the cumulative weight reaches it.
    fn percentile(&self, percentile: f64) -> Option<f64> {
        let total: f64 = self.buckets.iter().map(|b| b.1).sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        // Rounding in the sums must not push an exact tie (90 of 100 equal weights at
        // or below a bucket, for the 90th percentile) into the next bucket.
        let threshold = percentile * total - total * 1e-12;
        let mut partial = 0.0;
        for b in &self.buckets {
            partial += b.1;
            if partial >= threshold {
                return Some(b.2);
            }
        }
        self.buckets.last().map(|b| b.2)
    }

    /// Moves the reference to the whole half-life at or before `t`, rescaling.
    fn shift_reference(&mut self, t: u64, half_life: u64) {
        let reference = t - t % half_life;
        let halvings = (reference - self.reference.as_nanos()) / half_life;
        let factor = match i32::try_from(halvings) {
            Ok(h) if h <= 1100 => 2f64.powi(-h),
            _ => 0.0,
        };
        for b in &mut self.buckets {
            b.1 *= factor;
        }
        self.buckets.retain(|b| b.1 >= MIN_WEIGHT);
        self.reference = Timestamp::from_nanos(reference);
    }
}

impl Estimator for Histogram {
    type Config = PercentileConfig;

    fn new(_config: &PercentileConfig) -> Self {
        Histogram {
            reference: Timestamp::EPOCH,
            buckets: Vec::new(),
        }
    }

    fn estimate(&self, config: &PercentileConfig) -> Option<f64> {
        self.percentile(config.percentile)
    }

    fn record(&mut self, config: &PercentileConfig, value: f64, weight: f64, at: Timestamp) {
        if !(value.is_finite() && value >= 0.0 && weight > 0.0) {
            return;
        }
        let half_life = config.half_life_nanos();
        let t = at.as_nanos();
        if self.buckets.is_empty() {
            self.reference = Timestamp::from_nanos(t - t % half_life);
        } else if t > self
            .reference
            .as_nanos()
            .saturating_add(half_life.saturating_mul(MAX_DECAY_EXPONENT))
        {
            self.shift_reference(t, half_life);
            if self.buckets.is_empty() {
                self.reference = Timestamp::from_nanos(t - t % half_life);
            }
        }
        let age = i128::from(t) - i128::from(self.reference.as_nanos());
        let w = weight * (age as f64 / half_life as f64).exp2();
        if !(w > 0.0 && w.is_finite()) {
            // Too old to weigh anything against the reference.
            return;
        }
        let index = Histogram::bucket_index(value, config.bucket_growth);
        match self.buckets.binary_search_by_key(&index, |b| b.0) {
            Ok(i) => {
                let b = &mut self.buckets[i];
                b.1 += w;
                b.2 = b.2.max(value);
            }
            Err(i) => self.buckets.insert(i, Bucket(index, w, value)),
        }
    }

    fn compatible(old: &PercentileConfig, new: &PercentileConfig) -> bool {
        old.half_life == new.half_life && old.bucket_growth == new.bucket_growth
    }

    fn check(&self, config: &PercentileConfig) -> Result<(), String> {
        if self.reference.as_nanos() % config.half_life_nanos() != 0 {
            return Err(format!(
                "histogram reference {} is not a whole number of half-lives",
                self.reference
            ));
        }
        let last = Histogram::bucket_index(TOP_VALUE, config.bucket_growth);
        let mut previous: Option<u32> = None;
        for &Bucket(index, weight, largest) in &self.buckets {
            if index > last || previous.is_some_and(|p| p >= index) {
                return Err(format!("histogram bucket {index} is out of order or range"));
            }
            if !(weight.is_finite() && weight > 0.0) {
                return Err(format!("histogram bucket {index} has weight {weight}"));
            }
            if !(largest.is_finite() && largest >= 0.0) {
                return Err(format!("histogram bucket {index} has value {largest}"));
            }
            previous = Some(index);
        }
        Ok(())
    }
}

/// Predicts a percentile of the peak usage each kind of task reported, per resource,
/// times a safety margin, from a histogram in which old observations fade: the
/// Kubernetes vertical pod autoscaler (VPA) recommender's estimator.
///
/// # Algorithm
/// For each task kind and each resource the kind reported, the predictor keeps a
/// decaying histogram of peak usage, as the VPA recommender does
/// (`vertical-pod-autoscaler/pkg/recommender/util/decaying_histogram.go` in
/// kubernetes/autoscaler; Rzadca et al., "Autopilot: workload autoscaling at Google",
/// EuroSys 2020):
///
/// - buckets grow exponentially, each [`bucket_growth`](PercentileConfig::bucket_growth)
///   times wider than the last (first bucket one base unit wide), so the relative
///   resolution is the same for a millicore as for a terabyte;
/// - an observation made at time `t` weighs `2^((t - reference) / half_life)`: it
///   counts half as much as one made a [`half_life`](PercentileConfig::half_life)
///   later. The weights grow with time instead of old ones being decayed, and are
///   renormalized (the reference moves by whole half-lives, weights rescale by exact
///   powers of two) before they could overflow. Time comes only from
///   [`Observation::at`];
/// - the prediction is the [`percentile`](PercentileConfig::percentile) of the
///   weighted peaks times `1 + margin`, rounded up to whole base units.
///
/// Unlike the VPA, which answers with the end of the percentile's bucket, the
/// predictor answers with the largest value recorded in that bucket: at most one
/// bucket's width (5% by default) below the bucket end, never above a value actually
/// recorded, so bucket rounding cannot compound through the feedback of exhaustions.
///
/// A resource the kind never reported, and every resource of a kind never observed,
/// is predicted at the requested amount (with `samples = 0` for a kind never
/// observed). Resources a kind reported but did not request are predicted too. Kinds
/// are matched trimmed and ASCII-case-insensitively, and each may have its own
/// [`PercentileConfig`] ([`with_kind_config`](Self::with_kind_config)).
///
/// # Exhaustion
/// An [`Observation`] that names a resource as exhausted says the task needed *more*
/// than it used. The `n`-th exhaustion in a row (from zero) of one resource by one
/// kind aims the prediction at `usage * (1 + b * d^n)` (`b` =
/// [`exhaustion_bump`](PercentileConfig::exhaustion_bump), `d` =
/// [`exhaustion_bump_decay`](PercentileConfig::exhaustion_bump_decay)), margin
/// included, capped by [`exhaustion_ceiling`](PercentileConfig::exhaustion_ceiling). It
/// records `target / (1 + margin)` (never less than the current percentile) with the
/// weight of [`exhaustion_weight`](PercentileConfig::exhaustion_weight) observations, so
/// one exhaustion lifts the percentile unless many recent observations outweigh it,
/// and then fades like any other. An exhaustion reported with zero usage bumps the
/// current prediction. An observation without the resource exhausted ends the run if
/// it comes [`exhaustion_window`](PercentileConfig::exhaustion_window) or more after the
/// run's last exhaustion.
///
/// Since a percentile never exceeds the largest value recorded, a run of exhaustions,
/// however long, each at the predicted level, keeps the prediction below the larger of
/// where the run started and the largest usage recorded times `1 + margin`, times
/// `prod (1 + b * d^n) < exp(b / (1 - d))` (about 1.42 with the defaults;
/// [`PercentileConfig::exhaustion_growth_bound`]). The VPA records `max(used * 1.2,
/// used + 100MB)` on every OOM kill, `used` including the request it set itself; a
/// workload that keeps running out then feeds the recommender its own inflated output
/// and the recommendation runs away (kubernetes/autoscaler#9521). Shrinking bumps and
/// a margin that does not stack on each new peak are what bound it here.
///
/// # Complexity
/// With `d` resources per observation and `w` non-empty buckets in a histogram (at
/// most `log(max / min) / log(bucket_growth)` for peaks between `min` and `max`: about
/// 47 per factor of ten at the default growth):
/// - [`observe`](ResourcePredictor::observe): O(d log w) time, plus O(w) for a
///   resource that is exhausted or gains a bucket, or when the weights are
///   renormalized (at most once per 100 half-lives);
/// - [`predict`](ResourcePredictor::predict): O(d w) time;
/// - space: O(w) per task kind and resource.
///
/// # Examples
/// ```
/// use concord::resource::{Observation, PercentilePredictor, ResourcePredictor};
/// use concord::{Resources, Timestamp};
///
/// let mut p = PercentilePredictor::default(); // p90 * 1.15, 24h half-life
/// let requested: Resources = "cpu=4,memory=8Gi".parse()?;
/// assert_eq!(p.predict("build", &requested).resources, requested); // nothing learned
///
/// // A hundred builds peaking at 1..=100 cores.
/// let t = Timestamp::from_secs(3600);
/// for cores in 1..=100u64 {
///     let usage = Resources::new().with_cpu_millis(cores * 1000).with_memory_bytes(1 << 30);
///     p.observe("build", &Observation::new(usage, t));
/// }
/// let prediction = p.predict("build", &requested);
/// assert_eq!(prediction.samples, 100);
/// // The 90th percentile (90 cores, to within the 5% bucket resolution) plus 15%.
/// let cpu = prediction.resources.cpu_millis();
/// assert!((90_000 * 115 / 100..=94_500 * 115 / 100).contains(&cpu), "{cpu}");
/// assert_eq!(prediction.resources.memory_bytes(), 1_234_803_098); // 1Gi * 1.15
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PercentilePredictor {
    learner: Learner<Histogram>,
}

impl Default for PercentilePredictor {
    /// A predictor with [`PercentileConfig::default`] for every task kind.
    fn default() -> Self {
        PercentilePredictor {
            learner: Learner::default(),
        }
    }
}

impl PercentilePredictor {
    /// A predictor with `config` for every task kind.
    ///
    /// # Errors
    /// [`PredictorError::InvalidConfig`] if a setting is out of range.
    pub fn new(config: PercentileConfig) -> Result<Self, PredictorError> {
        Ok(PercentilePredictor {
            learner: Learner::new(config)?,
        })
    }

    super::bump::kind_limit_methods!(PercentilePredictor);

    /// Gives tasks of `kind` their own configuration (its percentile and margin, say).
    ///
    /// # Errors
    /// [`PredictorError::Name`] if `kind` is not a valid name,
    /// [`PredictorError::InvalidConfig`] if a setting is out of range.
    pub fn with_kind_config(
        mut self,
        kind: &str,
        config: PercentileConfig,
    ) -> Result<Self, PredictorError> {
        self.set_kind_config(kind, config)?;
        Ok(self)
    }

    /// Gives tasks of `kind` their own configuration. What was learned about `kind` is
    /// kept, unless the new configuration has another half-life or bucket growth: a
    /// histogram cannot be converted, so it is forgotten.
    ///
    /// # Errors
    /// As [`with_kind_config`](Self::with_kind_config); the predictor is unchanged.
    pub fn set_kind_config(
        &mut self,
        kind: &str,
        config: PercentileConfig,
    ) -> Result<(), PredictorError> {
        self.learner.set_kind_config(kind, config)
    }

    /// The configuration of kinds without their own.
    pub fn config(&self) -> &PercentileConfig {
        self.learner.config()
    }

    /// The configuration in force for `kind`.
    pub fn config_for(&self, kind: &str) -> &PercentileConfig {
        self.learner.config_for(kind)
    }

    /// How many observations of `kind` the predictor learned from.
    pub fn observations(&self, kind: &str) -> u64 {
        self.learner.observations(kind)
    }

    /// Forgets what was learned about `kind` (its configuration stays); returns
    /// whether anything was.
    pub fn forget(&mut self, kind: &str) -> bool {
        self.learner.forget(kind)
    }

    /// Everything the predictor holds, configurations and histograms included, as
    /// serde data a host can persist.
    pub fn snapshot(&self) -> PercentileSnapshot {
        PercentileSnapshot(self.learner.snapshot())
    }

    /// The predictor a snapshot describes: it predicts exactly as the one that wrote
    /// it, and learns on from there.
    ///
    /// ```
    /// use concord::resource::{Observation, PercentilePredictor, ResourcePredictor};
    /// use concord::{Resources, Timestamp};
    ///
    /// let mut p = PercentilePredictor::default();
    /// p.observe("build", &Observation::new("cpu=3".parse()?, Timestamp::EPOCH));
    /// let json = serde_json::to_string(&p.snapshot())?;
    /// let restored = PercentilePredictor::restore(serde_json::from_str(&json)?);
    /// assert_eq!(restored, p);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(snapshot: PercentileSnapshot) -> Self {
        PercentilePredictor {
            learner: Learner::restore(snapshot.0),
        }
    }
}

impl ResourcePredictor for PercentilePredictor {
    fn predict(&self, kind: &str, requested: &Resources) -> Prediction {
        self.learner.predict(kind, requested)
    }

    fn predict_in_place(&self, kind: &str, resources: &mut Resources) {
        self.learner.predict_in_place(kind, resources);
    }

    fn observe(&mut self, kind: &str, observation: &Observation) {
        self.learner.observe(kind, observation);
    }

    fn learned(&self) -> Option<super::Learned> {
        Some(super::Learned::Percentile(self.snapshot()))
    }

    fn relearn(&mut self, learned: &super::Learned) -> bool {
        match learned {
            super::Learned::Percentile(s) => {
                *self = Self::restore(s.clone());
                true
            }
            _ => false,
        }
    }
}

/// A [`PercentilePredictor`]'s configurations and histograms, from
/// [`PercentilePredictor::snapshot`], for [`PercentilePredictor::restore`].
///
/// Versioned serde data. Deserializing checks it: a snapshot of another version, with
/// a setting out of range or a histogram that is inconsistent with its configuration
/// is rejected, so every snapshot that exists restores.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PercentileSnapshot(SnapshotData<Histogram>);

impl<'de> Deserialize<'de> for PercentileSnapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let data = SnapshotData::<Histogram>::deserialize(d)?;
        data.check().map_err(serde::de::Error::custom)?;
        Ok(PercentileSnapshot(data))
    }
}
