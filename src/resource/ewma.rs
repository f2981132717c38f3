//! [`EwmaPredictor`]: an exponentially weighted moving average of peak usage, per task
//! kind and per resource.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::bump::{
    Bump, DEFAULT_EXHAUSTION_WINDOW, Estimator, Learner, LearnerConfig, SnapshotData, check,
    check_margin, growth_bound, opt_f64_bits,
};
use super::error::PredictorError;
use super::{Observation, Prediction, ResourcePredictor, Resources};
use crate::clock::Timestamp;
use crate::serde_util::duration_ms;

/// Settings of an [`EwmaPredictor`]. Serde data with sane defaults.
///
/// ```
/// use concord::resource::EwmaConfig;
///
/// let config: EwmaConfig = serde_json::from_str(r#"{"alpha": 0.5, "exhaustion_ceiling": {"memory": "64Gi"}}"#)?;
/// assert_eq!(config, EwmaConfig::default().with_alpha(0.5).with_exhaustion_ceiling("memory=64Gi".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwmaConfig {
    /// Weight of the newest observation, in (0, 1] (default 0.3): the average moves
    /// this share of the way to each new peak. 1 remembers only the last one.
    pub alpha: f64,
    /// Safety margin: predictions are the average times `1 + margin` (default 0.15).
    pub margin: f64,
    /// Bump of the first exhaustion in a run, `b` (default 0.2): see
    /// [`EwmaPredictor`]'s section on exhaustion.
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
    /// Highest level a bump may raise the prediction of each resource to; resources
    /// not named have no ceiling (default none). A ceiling never lowers observed usage.
    pub exhaustion_ceiling: Resources,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            alpha: 0.3,
            margin: 0.15,
            exhaustion_bump: 0.2,
            exhaustion_bump_decay: 0.5,
            exhaustion_window: DEFAULT_EXHAUSTION_WINDOW,
            exhaustion_ceiling: Resources::new(),
        }
    }
}

impl EwmaConfig {
    /// Sets [`alpha`](Self::alpha).
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets [`margin`](Self#structfield.margin).
    pub fn with_margin(mut self, margin: f64) -> Self {
        self.margin = margin;
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

    /// Sets [`exhaustion_ceiling`](Self::exhaustion_ceiling).
    pub fn with_exhaustion_ceiling(mut self, ceiling: Resources) -> Self {
        self.exhaustion_ceiling = ceiling;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`PredictorError::InvalidConfig`] naming the first setting out of range and its
    /// value.
    pub fn validate(&self) -> Result<(), PredictorError> {
        check(
            "alpha",
            self.alpha,
            self.alpha > 0.0 && self.alpha <= 1.0,
            "in (0, 1]",
        )?;
        check_margin(self.margin)?;
        self.bump().validate()
    }

    /// The most a run of consecutive exhaustions, each at the predicted level, can
    /// multiply a prediction by: `prod (1 + b * d^n)`, below `exp(b / (1 - d))` (about
    /// 1.42 with the defaults).
    pub fn exhaustion_growth_bound(&self) -> f64 {
        growth_bound(self.exhaustion_bump, self.exhaustion_bump_decay)
    }

    fn bump(&self) -> Bump<'_> {
        Bump {
            initial: self.exhaustion_bump,
            decay: self.exhaustion_bump_decay,
            window: self.exhaustion_window,
            // An exhaustion replaces the average (it never lowers it).
            weight: f64::INFINITY,
            ceiling: &self.exhaustion_ceiling,
            margin: self.margin,
        }
    }
}

impl LearnerConfig for EwmaConfig {
    fn validate(&self) -> Result<(), PredictorError> {
        EwmaConfig::validate(self)
    }

    fn margin(&self) -> f64 {
        self.margin
    }

    fn bump(&self) -> Bump<'_> {
        EwmaConfig::bump(self)
    }
}

/// The moving average of one resource of one task kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Average {
    /// `None` until the first observation.
    #[serde(default, with = "opt_f64_bits")]
    average: Option<f64>,
}

impl Estimator for Average {
    type Config = EwmaConfig;

    fn new(_config: &EwmaConfig) -> Self {
        Average { average: None }
    }

    fn estimate(&self, _config: &EwmaConfig) -> Option<f64> {
        self.average
    }

    fn record(&mut self, config: &EwmaConfig, value: f64, weight: f64, _at: Timestamp) {
        if !(value.is_finite() && value >= 0.0) {
            return;
        }
        self.average = Some(match self.average {
            None => value,
            // One observation: move `alpha` of the way, written so that a constant
            // input stays exactly constant.
            Some(avg) if weight == 1.0 => avg + config.alpha * (value - avg),
            // An exhaustion: the bumped level replaces the average.
            Some(_) if weight == f64::INFINITY => value,
            // `weight` observations of the same value in a row.
            Some(avg) => value + (avg - value) * (1.0 - config.alpha).powf(weight),
        });
    }

    fn check(&self, _config: &EwmaConfig) -> Result<(), String> {
        match self.average {
            Some(a) if !(a.is_finite() && a >= 0.0) => Err(format!("average {a} is not a usage")),
            _ => Ok(()),
        }
    }
}

/// Predicts from an exponentially weighted moving average (EWMA) of the peak usage
/// each kind of task reported, per resource, times a safety margin.
///
/// For each task kind and each resource the kind reported, the predictor keeps
/// `avg <- avg + alpha * (peak - avg)` (the first peak starts it) and predicts
/// `avg * (1 + margin)`, rounded up to whole base units. A resource the kind never
/// reported, and every resource of a kind never observed, is predicted at the
/// requested amount (with `samples = 0` for a kind never observed). Resources a kind
/// reported but did not request are predicted too. Kinds are matched trimmed and
/// ASCII-case-insensitively.
///
/// Each kind may have its own [`EwmaConfig`] ([`with_kind_config`](Self::with_kind_config)).
/// Cheap: O(1) state and time per kind and resource.
///
/// # Exhaustion
/// An [`Observation`] that names a resource as exhausted says the task needed *more*
/// than it used. The `n`-th exhaustion in a row (from zero) of one resource by one
/// kind aims the prediction at `usage * (1 + b * d^n)` (`b` =
/// [`exhaustion_bump`](EwmaConfig::exhaustion_bump), `d` =
/// [`exhaustion_bump_decay`](EwmaConfig::exhaustion_bump_decay)), margin included,
/// capped by [`exhaustion_ceiling`](EwmaConfig::exhaustion_ceiling): the average jumps
/// there at once, and is never lowered by it. An exhaustion reported with zero usage
/// bumps the current prediction. An observation without the resource exhausted ends
/// the run if it comes [`exhaustion_window`](EwmaConfig::exhaustion_window) or more
/// after the run's last exhaustion.
///
/// So a run of exhaustions, however long, each at the predicted level, multiplies the
/// prediction by at most `prod (1 + b * d^n) < exp(b / (1 - d))` (about 1.42 with the
/// defaults; [`EwmaConfig::exhaustion_growth_bound`]). Bumps that did not shrink, or
/// that stacked the margin on each new peak, would let a task that always runs out (a
/// leak, a hard cap below its need) drive the estimate up without limit: the runaway
/// feedback users report from the Kubernetes vertical pod autoscaler's OOM bump
/// (kubernetes/autoscaler#9521).
///
/// # Examples
/// ```
/// use concord::resource::{EwmaConfig, EwmaPredictor, Observation, ResourcePredictor};
/// use concord::{Resources, Timestamp};
///
/// let mut p = EwmaPredictor::new(EwmaConfig::default().with_alpha(0.5).with_margin(0.1))?;
/// let requested: Resources = "cpu=4,memory=8Gi".parse()?;
/// assert_eq!(p.predict("build", &requested).resources, requested); // nothing learned
///
/// let t = Timestamp::from_secs(60);
/// p.observe("build", &Observation::new("cpu=1,memory=2Gi".parse()?, t));
/// p.observe("build", &Observation::new("cpu=2,memory=2Gi".parse()?, t));
/// let prediction = p.predict("build", &requested);
/// assert_eq!(prediction.samples, 2);
/// // cpu: average 1.5 cores, times 1.1; memory: 2Gi times 1.1, rounded up.
/// assert_eq!(prediction.resources.cpu_millis(), 1650);
/// assert_eq!(prediction.resources.memory_bytes(), 2_362_232_013);
///
/// // Ran out of memory at 2Gi: the next prediction is 2Gi * 1.2, margin included.
/// let oom = Observation::new("cpu=1,memory=2Gi".parse()?, t)
///     .with_exhausted(concord::ResourceName::Memory);
/// p.observe("build", &oom);
/// assert_eq!(p.predict("build", &requested).resources.memory_bytes(), 2_576_980_378);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EwmaPredictor {
    learner: Learner<Average>,
}

impl Default for EwmaPredictor {
    /// A predictor with [`EwmaConfig::default`] for every task kind.
    fn default() -> Self {
        EwmaPredictor {
            learner: Learner::default(),
        }
    }
}

impl EwmaPredictor {
    /// A predictor with `config` for every task kind.
    ///
    /// # Errors
    /// [`PredictorError::InvalidConfig`] if a setting is out of range.
    pub fn new(config: EwmaConfig) -> Result<Self, PredictorError> {
        Ok(EwmaPredictor {
            learner: Learner::new(config)?,
        })
    }

    super::bump::kind_limit_methods!(EwmaPredictor);

    /// Gives tasks of `kind` their own configuration.
    ///
    /// # Errors
    /// [`PredictorError::Name`] if `kind` is not a valid name,
    /// [`PredictorError::InvalidConfig`] if a setting is out of range.
    pub fn with_kind_config(
        mut self,
        kind: &str,
        config: EwmaConfig,
    ) -> Result<Self, PredictorError> {
        self.set_kind_config(kind, config)?;
        Ok(self)
    }

    /// Gives tasks of `kind` their own configuration, keeping what was learned.
    ///
    /// # Errors
    /// As [`with_kind_config`](Self::with_kind_config); the predictor is unchanged.
    pub fn set_kind_config(
        &mut self,
        kind: &str,
        config: EwmaConfig,
    ) -> Result<(), PredictorError> {
        self.learner.set_kind_config(kind, config)
    }

    /// The configuration of kinds without their own.
    pub fn config(&self) -> &EwmaConfig {
        self.learner.config()
    }

    /// The configuration in force for `kind`.
    pub fn config_for(&self, kind: &str) -> &EwmaConfig {
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

    /// Everything the predictor holds, configurations included, as serde data a host
    /// can persist.
    pub fn snapshot(&self) -> EwmaSnapshot {
        EwmaSnapshot(self.learner.snapshot())
    }

    /// The predictor a snapshot describes: it predicts exactly as the one that wrote
    /// it.
    ///
    /// ```
    /// use concord::resource::{EwmaPredictor, Observation, ResourcePredictor};
    /// use concord::{Resources, Timestamp};
    ///
    /// let mut p = EwmaPredictor::default();
    /// p.observe("build", &Observation::new("cpu=3".parse()?, Timestamp::EPOCH));
    /// let json = serde_json::to_string(&p.snapshot())?;
    /// let restored = EwmaPredictor::restore(serde_json::from_str(&json)?);
    /// assert_eq!(restored, p);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(snapshot: EwmaSnapshot) -> Self {
        EwmaPredictor {
            learner: Learner::restore(snapshot.0),
        }
    }
}

impl ResourcePredictor for EwmaPredictor {
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
        Some(super::Learned::Ewma(self.snapshot()))
    }

    fn relearn(&mut self, learned: &super::Learned) -> bool {
        match learned {
            super::Learned::Ewma(s) => {
                *self = Self::restore(s.clone());
                true
            }
            _ => false,
        }
    }
}

/// An [`EwmaPredictor`]'s configurations and learned averages, from
/// [`EwmaPredictor::snapshot`], for [`EwmaPredictor::restore`].
///
/// Versioned serde data. Deserializing checks it: a snapshot of another version, with
/// a setting out of range or an average that is not a usage is rejected, so every
/// snapshot that exists restores.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct EwmaSnapshot(SnapshotData<Average>);

impl<'de> Deserialize<'de> for EwmaSnapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let data = SnapshotData::<Average>::deserialize(d)?;
        data.check().map_err(serde::de::Error::custom)?;
        Ok(EwmaSnapshot(data))
    }
}
