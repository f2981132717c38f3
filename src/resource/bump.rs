//! What the learning predictors ([`EwmaPredictor`](super::EwmaPredictor) and
//! [`PercentilePredictor`](super::PercentilePredictor)) share: learning per task kind
//! and per resource ([`Learner`], generic over the [`Estimator`] that tells them
//! apart), the damped exhaustion bump, rounding to whole units, setting checks and the
//! snapshot format.
//!
//! # The exhaustion bump, and why it is damped
//!
//! A task that ran out of a resource used at least what it was given, so its usage is
//! a lower bound on its need. The Kubernetes vertical pod autoscaler answers an OOM
//! kill by recording a memory sample of `max(used * 1.2, used + 100MB)`, where `used`
//! includes the request it had set itself. A workload that keeps running out (a leak,
//! a cap below its real peak) then feeds the recommender its own inflated output, and
//! users report the recommendation climbing without bound
//! (kubernetes/autoscaler#9521, #1182).
//!
//! Here the `n`-th consecutive exhaustion of one resource by one kind of task (counting
//! from zero) aims the next prediction at `level * (1 + b * d^n)` where `b` is the
//! initial bump and `d` its decay, `level` is the usage reported (or, when the host
//! reported no usage, the current prediction) and the target is capped by an optional
//! per-resource ceiling. The target *includes* the safety margin: the sample learned is
//! `target / (1 + margin)`, never below what was already learned, so the margin does
//! not compound from one exhaustion to the next. The count (the run) ends at an
//! observation that does not name the resource exhausted and comes at least the
//! configured window (one hour by default) after the run's last exhaustion: a
//! workload that runs out, gets through once, and runs out again minutes later is
//! still in its run, so alternating outcomes do not restart the bump at its largest
//! (a run ended by every success would grow the prediction by `1 + b` per cycle,
//! without bound).
//!
//! A run of exhaustions each at the predicted level therefore multiplies the prediction
//! by at most `prod (1 + b * d^n) <= exp(b / (1 - d))` in total: with the defaults
//! (`b = 0.2`, `d = 0.5`) at most about 1.42 times where the run started (for the
//! percentile predictor, or the largest usage recorded times `1 + margin` if that is
//! higher), however long the run is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::PredictorError;
use super::resources::{ResourceName, Resources};
use super::{Observation, Prediction};
use crate::clock::Timestamp;
use crate::id::normalize_name;

/// The kind limit's constant and methods of a predictor over a [`Learner`] (in its
/// field `learner`), written once for both built-in predictors.
macro_rules! kind_limit_methods {
    ($ty:ident) => {
        /// How many task kinds a predictor keeps what it learned of, unless told
        /// otherwise ([`with_kind_limit`](Self::with_kind_limit)).
        pub const DEFAULT_KIND_LIMIT: usize = super::bump::DEFAULT_KIND_LIMIT;

        /// The predictor keeping what it learned of at most `limit` task kinds (at least
        /// one). A new kind past the limit makes it forget the kind observed longest
        /// ago, which then predicts as one never seen (the request as asked): a host
        /// whose kinds never repeat (names that carry ids) does not grow the predictor,
        /// or its snapshots, without bound.
        ///
        /// ```
        #[doc = concat!("use concord::resource::{", stringify!($ty), ", Observation, ResourcePredictor};")]
        /// use concord::Timestamp;
        ///
        #[doc = concat!("let mut p = ", stringify!($ty), "::default().with_kind_limit(2);")]
        /// for kind in ["build", "test", "build", "deploy"] {
        ///     p.observe(kind, &Observation::new("cpu=3".parse()?, Timestamp::EPOCH));
        /// }
        /// // "test" was observed longest ago when "deploy" came.
        /// assert_eq!(p.kinds(), 2);
        /// assert_eq!(p.observations("test"), 0);
        /// assert_eq!(p.observations("build"), 2);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn with_kind_limit(mut self, limit: usize) -> Self {
            self.learner.set_kind_limit(limit);
            self
        }

        /// The most task kinds it keeps what it learned of.
        pub fn kind_limit(&self) -> usize {
            self.learner.kind_limit()
        }

        /// How many task kinds it keeps what it learned of.
        pub fn kinds(&self) -> usize {
            self.learner.kinds()
        }
    };
}
pub(super) use kind_limit_methods;

/// The snapshot version the learning predictors write and read.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;

/// How long after a run's last exhaustion an ordinary observation must come to end
/// the run, unless configured otherwise.
pub(crate) const DEFAULT_EXHAUSTION_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(3600);

/// The key a task kind is learned under: trimmed, ASCII lowercase.
pub(crate) fn kind_key(kind: &str) -> Cow<'_, str> {
    let trimmed = kind.trim();
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Validates the name of a task kind given its own configuration; returns its key.
pub(crate) fn checked_kind(kind: &str) -> Result<String, PredictorError> {
    Ok(normalize_name("task kind", kind)?.to_string())
}

/// Rounds an amount up to whole base units, saturating at `u64::MAX`. Not a number and
/// amounts at or below zero give zero; an amount within floating-point noise of a whole
/// number is that number (so `100 * 1.15` is 115, not 116).
pub(crate) fn to_units(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 {
        return 0;
    }
    let nearest = v.round();
    let rounded = if (v - nearest).abs() <= nearest * 1e-12 {
        nearest
    } else {
        v.ceil()
    };
    // `as` saturates at u64::MAX for larger values.
    rounded as u64
}

/// `Ok` if `ok`, else [`PredictorError::InvalidConfig`] naming the setting and value.
pub(crate) fn check(
    setting: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<(), PredictorError> {
    if ok {
        Ok(())
    } else {
        Err(PredictorError::InvalidConfig {
            setting,
            value,
            expected,
        })
    }
}

/// Checks a safety margin: finite and not negative.
pub(crate) fn check_margin(margin: f64) -> Result<(), PredictorError> {
    check(
        "margin",
        margin,
        margin.is_finite() && margin >= 0.0,
        "finite, >= 0",
    )
}

/// The exhaustion settings of one configuration, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bump<'a> {
    /// The first bump of a run, `b`.
    pub(crate) initial: f64,
    /// The factor each further bump of a run is multiplied by, `d`.
    pub(crate) decay: f64,
    /// How many ordinary observations one exhaustion counts as (infinite: it replaces
    /// what was learned).
    pub(crate) weight: f64,
    /// Per-resource caps on the level a bump may aim at (zero: none).
    pub(crate) ceiling: &'a Resources,
    /// The configuration's safety margin.
    pub(crate) margin: f64,
    /// How long after its last exhaustion an ordinary observation ends a run.
    pub(crate) window: std::time::Duration,
}

impl Bump<'_> {
    /// Checks the exhaustion settings.
    pub(crate) fn validate(&self) -> Result<(), PredictorError> {
        check(
            "exhaustion_bump",
            self.initial,
            self.initial.is_finite() && self.initial >= 0.0,
            "finite, >= 0",
        )?;
        check(
            "exhaustion_bump_decay",
            self.decay,
            (0.0..1.0).contains(&self.decay),
            "in [0, 1)",
        )
    }

    /// The bump of the `streak`-th consecutive exhaustion (counting from zero).
    pub(crate) fn bump(&self, streak: u32) -> f64 {
        // Streaks past i32::MAX (two billion exhaustions in a row) keep the smallest
        // bump, which is zero for any decay the checks allow short of 1 - 1e-8.
        let n = i32::try_from(streak).unwrap_or(i32::MAX);
        self.initial * self.decay.powi(n)
    }

    /// The sample to learn for `resource` after its `streak`-th consecutive
    /// exhaustion, given the reported `usage` and the current margin-free `estimate`
    /// (if anything was learned). `None` when there is nothing to scale: no usage
    /// reported and nothing learned.
    pub(crate) fn sample(
        &self,
        resource: &ResourceName,
        streak: u32,
        usage: u64,
        estimate: Option<f64>,
    ) -> Option<f64> {
        let with_margin = 1.0 + self.margin;
        let level = if usage > 0 {
            usage as f64
        } else {
            estimate? * with_margin
        };
        let mut target = level * (1.0 + self.bump(streak));
        let cap = self.ceiling.get(resource);
        if cap > 0 {
            // The ceiling caps the bump, never the usage that was observed.
            target = target.min((cap as f64).max(level));
        }
        let learned = estimate.unwrap_or(0.0);
        Some((target / with_margin).max(learned))
    }
}

/// The most a run of exhaustions, each at the predicted level, can multiply a
/// prediction by: `prod_{n >= 0} (1 + b * d^n)`, which is below `exp(b / (1 - d))`.
pub(crate) fn growth_bound(initial: f64, decay: f64) -> f64 {
    if !(initial.is_finite() && initial >= 0.0 && (0.0..1.0).contains(&decay)) {
        return f64::INFINITY;
    }
    let mut product = 1.0;
    let mut term = initial;
    let mut n = 0u32;
    while term > 1e-17 && n < 100_000 {
        product *= 1.0 + term;
        term *= decay;
        n += 1;
    }
    // The rest of the product is below exp(term / (1 - d)): keep the result an upper
    // bound even when the loop stopped early.
    product * (term / (1.0 - decay)).exp()
}

/// A configuration of a learning predictor.
pub(crate) trait LearnerConfig:
    fmt::Debug + Clone + Default + PartialEq + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// Checks every setting.
    fn validate(&self) -> Result<(), PredictorError>;
    /// The safety margin predictions are multiplied by (`1 + margin`).
    fn margin(&self) -> f64;
    /// The exhaustion settings.
    fn bump(&self) -> Bump<'_>;
}

/// What a learning predictor keeps for one task kind and resource, and how it learns.
pub(crate) trait Estimator:
    fmt::Debug + Clone + PartialEq + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// The predictor's configuration.
    type Config: LearnerConfig;

    /// Nothing learned yet.
    fn new(config: &Self::Config) -> Self;

    /// The margin-free estimate, or `None` if nothing was learned.
    fn estimate(&self, config: &Self::Config) -> Option<f64>;

    /// Learns `value` (finite, not negative), counting as `weight` observations made at
    /// `at`.
    fn record(&mut self, config: &Self::Config, value: f64, weight: f64, at: Timestamp);

    /// Whether state learned under `old` means the same under `new`.
    fn compatible(old: &Self::Config, new: &Self::Config) -> bool {
        let _ = (old, new);
        true
    }

    /// Checks state read from a snapshot, saying what is wrong.
    fn check(&self, config: &Self::Config) -> Result<(), String>;
}

/// One resource of one task kind: the estimator and the exhaustion run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "E: Estimator", deny_unknown_fields)]
pub(crate) struct Learned<E> {
    /// Exhaustions of this resource in the current run.
    #[serde(default)]
    exhausted_streak: u32,
    /// When the run's last exhaustion was observed (absent in snapshots from before
    /// runs had a window: the next ordinary observation ends such a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_exhausted: Option<Timestamp>,
    /// What was learned.
    learned: E,
}

/// Everything learned about one task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "E: Estimator", deny_unknown_fields)]
pub(crate) struct KindState<E> {
    /// Observations of this kind.
    observations: u64,
    /// Per resource, in [`Resources::iter`] order.
    resources: BTreeMap<ResourceName, Learned<E>>,
    /// The learner's count of observations when this kind was last observed: the
    /// kind observed longest ago is forgotten first. Zero in snapshots written before
    /// kinds were counted.
    #[serde(default)]
    last_seen: u64,
}

impl<E> KindState<E> {
    fn new(last_seen: u64) -> Self {
        KindState {
            observations: 0,
            resources: BTreeMap::new(),
            last_seen,
        }
    }
}

/// How many task kinds a learning predictor keeps what it learned of, unless told
/// otherwise: as many as the affinity table remembers.
pub(crate) const DEFAULT_KIND_LIMIT: usize = 4096;

/// A learning predictor's state: configurations and what was learned, per task kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Learner<E: Estimator> {
    config: E::Config,
    kind_configs: BTreeMap<String, E::Config>,
    kinds: BTreeMap<String, KindState<E>>,
    /// The most kinds kept: a host whose kinds never repeat (a step is of the kind of
    /// its name, and names may carry ids) would otherwise grow the learner, and every
    /// snapshot of it, by a kind per task, for ever.
    limit: usize,
    /// Each kind in `kinds`, by its `last_seen`: the first is forgotten first.
    by_age: BTreeMap<u64, String>,
    /// Observations counted so far.
    clock: u64,
}

impl<E: Estimator> Default for Learner<E> {
    fn default() -> Self {
        Learner {
            config: E::Config::default(),
            kind_configs: BTreeMap::new(),
            kinds: BTreeMap::new(),
            limit: DEFAULT_KIND_LIMIT,
            by_age: BTreeMap::new(),
            clock: 0,
        }
    }
}

impl<E: Estimator> Learner<E> {
    /// A learner with `config` for every kind.
    pub(crate) fn new(config: E::Config) -> Result<Self, PredictorError> {
        config.validate()?;
        Ok(Learner {
            config,
            ..Learner::default()
        })
    }

    /// The most kinds it keeps what it learned of.
    pub(crate) fn kind_limit(&self) -> usize {
        self.limit
    }

    /// Keeps at most `limit` kinds (at least one), forgetting those observed
    /// longest ago if it holds more.
    pub(crate) fn set_kind_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
        self.forget_oldest_past(self.limit);
    }

    /// How many kinds it keeps what it learned of.
    pub(crate) fn kinds(&self) -> usize {
        self.kinds.len()
    }

    /// Forgets the kinds observed longest ago until at most `keep` are left.
    fn forget_oldest_past(&mut self, keep: usize) {
        while self.kinds.len() > keep {
            let Some((_, kind)) = self.by_age.pop_first() else {
                break;
            };
            self.kinds.remove(&kind);
        }
    }

    /// Removes `kind`'s learned state; whether there was any.
    fn remove_kind(&mut self, kind: &str) -> bool {
        match self.kinds.remove(kind) {
            Some(state) => {
                self.by_age.remove(&state.last_seen);
                true
            }
            None => false,
        }
    }

    /// The configuration of kinds without their own.
    pub(crate) fn config(&self) -> &E::Config {
        &self.config
    }

    /// The configuration in force for `kind`.
    pub(crate) fn config_for(&self, kind: &str) -> &E::Config {
        self.kind_configs
            .get(&*kind_key(kind))
            .unwrap_or(&self.config)
    }

    /// Gives `kind` its own configuration, dropping what was learned for it if that
    /// no longer means the same under the new configuration.
    pub(crate) fn set_kind_config(
        &mut self,
        kind: &str,
        config: E::Config,
    ) -> Result<(), PredictorError> {
        let key = checked_kind(kind)?;
        config.validate()?;
        if !E::compatible(self.config_for(&key), &config) {
            self.remove_kind(&key);
        }
        self.kind_configs.insert(key, config);
        Ok(())
    }

    /// How many observations of `kind` were learned from.
    pub(crate) fn observations(&self, kind: &str) -> u64 {
        self.kinds
            .get(&*kind_key(kind))
            .map_or(0, |k| k.observations)
    }

    /// Forgets what was learned about `kind`; whether there was anything.
    pub(crate) fn forget(&mut self, kind: &str) -> bool {
        self.remove_kind(&kind_key(kind))
    }

    /// The prediction for a task of `kind` that asked for `requested`.
    pub(crate) fn predict(&self, kind: &str, requested: &Resources) -> Prediction {
        let mut out = requested.clone();
        let samples = self.predict_in_place(kind, &mut out);
        Prediction::new(out, samples)
    }

    /// [`predict`](Self::predict) over `resources`; returns the observations the
    /// estimate rests on (zero: `resources` are left as requested).
    pub(crate) fn predict_in_place(&self, kind: &str, resources: &mut Resources) -> u64 {
        if self.kinds.is_empty() {
            // Nothing learned yet (or a host that reports no usage): no key to make.
            return 0;
        }
        let key = kind_key(kind);
        let Some(state) = self.kinds.get(&*key) else {
            return 0;
        };
        let config = self.kind_configs.get(&*key).unwrap_or(&self.config);
        let scale = 1.0 + config.margin();
        // Requested resources not learned keep the requested amount; learned ones,
        // requested or not, take the estimate.
        for (name, learned) in &state.resources {
            if let Some(e) = learned.learned.estimate(config) {
                resources.set(name, to_units(e * scale));
            }
        }
        state.observations
    }

    /// Learns from one finished task of `kind`.
    pub(crate) fn observe(&mut self, kind: &str, observation: &Observation) {
        let key = kind_key(kind);
        // Below 2^63 in any snapshot restored: it does not reach the end.
        self.clock = self.clock.saturating_add(1);
        let seen = self.clock;
        match self.kinds.get_mut(&*key) {
            Some(state) => {
                if let Some(name) = self.by_age.remove(&state.last_seen) {
                    self.by_age.insert(seen, name);
                }
                state.last_seen = seen;
            }
            None => {
                self.forget_oldest_past(self.limit - 1);
                self.kinds
                    .insert(key.clone().into_owned(), KindState::new(seen));
                self.by_age.insert(seen, key.clone().into_owned());
            }
        }
        let config = self.kind_configs.get(&*key).unwrap_or(&self.config);
        let Some(state) = self.kinds.get_mut(&*key) else {
            return;
        };
        state.observations = state.observations.saturating_add(1);
        let bump = config.bump();
        // Resources already learned take this observation's usage, zero included.
        for (name, learned) in state.resources.iter_mut() {
            learn(learned, name, observation, config, &bump, &key);
        }
        // Then resources this kind reports for the first time.
        let new_names = observation
            .usage
            .iter()
            .map(|(name, _)| name)
            .chain(observation.exhausted.iter().cloned());
        for name in new_names {
            if state.resources.contains_key(&name) {
                continue;
            }
            let mut learned = Learned {
                exhausted_streak: 0,
                last_exhausted: None,
                learned: E::new(config),
            };
            if learn(&mut learned, &name, observation, config, &bump, &key) {
                state.resources.insert(name, learned);
            }
        }
    }

    /// What a snapshot holds.
    pub(crate) fn snapshot(&self) -> SnapshotData<E> {
        SnapshotData {
            version: SNAPSHOT_VERSION,
            config: self.config.clone(),
            kind_configs: self.kind_configs.clone(),
            kinds: self.kinds.clone(),
            kind_limit: self.limit,
            clock: self.clock,
        }
    }

    /// The learner a checked snapshot describes. Kinds that share a `last_seen` (a
    /// snapshot written before kinds were counted has them all at zero) are put in
    /// an order, by name, and counted again; a snapshot holding more kinds than its
    /// limit keeps those observed last.
    pub(crate) fn restore(data: SnapshotData<E>) -> Self {
        let mut learner = Learner {
            config: data.config,
            kind_configs: data.kind_configs,
            kinds: data.kinds,
            limit: data.kind_limit.max(1),
            by_age: BTreeMap::new(),
            clock: data.clock,
        };
        for (kind, state) in &learner.kinds {
            if learner
                .by_age
                .insert(state.last_seen, kind.clone())
                .is_some()
            {
                learner.by_age.clear();
                break;
            }
        }
        if learner.by_age.len() != learner.kinds.len() {
            let mut order: Vec<(u64, String)> = (learner.kinds.iter())
                .map(|(k, s)| (s.last_seen, k.clone()))
                .collect();
            order.sort();
            for (seen, (_, kind)) in (1..).zip(order) {
                if let Some(state) = learner.kinds.get_mut(&kind) {
                    state.last_seen = seen;
                }
                learner.by_age.insert(seen, kind);
            }
            learner.clock = learner.kinds.len() as u64;
        }
        learner.clock = (learner.by_age.keys().next_back().copied())
            .map_or(learner.clock, |last| learner.clock.max(last));
        learner.forget_oldest_past(learner.limit);
        learner
    }
}

/// Learns one resource's share of `observation`; whether anything was recorded.
fn learn<E: Estimator>(
    learned: &mut Learned<E>,
    name: &ResourceName,
    observation: &Observation,
    config: &E::Config,
    bump: &Bump<'_>,
    kind: &str,
) -> bool {
    let usage = observation.usage.get(name);
    if !observation.exhausted.contains(name) {
        let run_over = learned
            .last_exhausted
            .is_none_or(|last| observation.at.duration_since(last) >= bump.window);
        if run_over {
            learned.exhausted_streak = 0;
        }
        learned
            .learned
            .record(config, usage as f64, 1.0, observation.at);
        return true;
    }
    let streak = learned.exhausted_streak;
    let estimate = learned.learned.estimate(config);
    let Some(sample) = bump.sample(name, streak, usage, estimate) else {
        return false;
    };
    tracing::debug!(
        task.kind = kind,
        resource.name = %name,
        resource.usage = usage,
        bump.streak = streak,
        bump.sample = sample,
        "exhausted resource bumped"
    );
    learned
        .learned
        .record(config, sample, bump.weight, observation.at);
    learned.exhausted_streak = streak.saturating_add(1);
    learned.last_exhausted = Some(observation.at);
    true
}

/// The serialized form of a learning predictor: versioned, configurations included,
/// so that a restored predictor reads its state exactly as it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "E: Estimator", deny_unknown_fields)]
pub(crate) struct SnapshotData<E: Estimator> {
    version: u32,
    config: E::Config,
    #[serde(default)]
    kind_configs: BTreeMap<String, E::Config>,
    #[serde(default)]
    kinds: BTreeMap<String, KindState<E>>,
    /// The most kinds kept (absent in snapshots written before there was a limit:
    /// the default).
    #[serde(default = "default_kind_limit")]
    kind_limit: usize,
    /// Observations counted so far.
    #[serde(default)]
    clock: u64,
}

fn default_kind_limit() -> usize {
    DEFAULT_KIND_LIMIT
}

impl<E: Estimator> SnapshotData<E> {
    /// Checks that the snapshot is one this version wrote and is consistent.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.version != SNAPSHOT_VERSION {
            return Err(format!(
                "unsupported predictor snapshot version {} (expected {SNAPSHOT_VERSION})",
                self.version
            ));
        }
        self.config.validate().map_err(|e| e.to_string())?;
        crate::id::check_counter("clock", self.clock)?;
        for (kind, config) in &self.kind_configs {
            match checked_kind(kind) {
                Ok(key) if key == *kind => {}
                Ok(_) => return Err(format!("task kind {kind:?} is not normalized")),
                Err(e) => return Err(e.to_string()),
            }
            config
                .validate()
                .map_err(|e| format!("task kind {kind}: {e}"))?;
        }
        for (kind, state) in &self.kinds {
            if kind_key(kind) != kind.as_str() {
                return Err(format!("task kind {kind:?} is not normalized"));
            }
            crate::id::check_counter("last_seen", state.last_seen)?;
            let config = self.kind_configs.get(kind).unwrap_or(&self.config);
            for (name, learned) in &state.resources {
                learned
                    .learned
                    .check(config)
                    .map_err(|e| format!("task kind {kind}, resource {name}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Learned numbers as their IEEE 754 bit patterns in serde data: every format, JSON
/// parsers that do not round-trip floats included, restores them bit for bit.
pub(crate) mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

/// Optional learned numbers as IEEE 754 bit patterns (see [`f64_bits`]).
pub(crate) mod opt_f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_bits()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(f64::from_bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_units_rounds_up_but_ignores_float_noise() {
        assert_eq!(to_units(f64::NAN), 0);
        assert_eq!(to_units(-3.0), 0);
        assert_eq!(to_units(0.2), 1);
        assert_eq!(to_units(100.0 * 1.15), 115);
        assert_eq!(to_units(100.5), 101);
        assert_eq!(to_units(f64::INFINITY), u64::MAX);
        assert_eq!(to_units(1e30), u64::MAX);
    }

    #[test]
    fn kind_keys_are_trimmed_and_lowercased() {
        assert_eq!(kind_key(" Deploy "), "deploy");
        assert!(matches!(kind_key("deploy"), Cow::Borrowed(_)));
    }

    #[test]
    fn growth_bound_is_the_product_and_below_the_exponential() {
        let g = growth_bound(0.2, 0.5);
        assert!(g > 1.2 * 1.1 * 1.05 * 1.025);
        assert!(g < (0.4f64).exp());
        assert_eq!(growth_bound(0.2, 0.0), 1.2);
        assert_eq!(growth_bound(0.0, 0.5), 1.0);
    }

    #[test]
    fn bump_samples_do_not_compound_the_margin() {
        let none = Resources::new();
        let b = Bump {
            initial: 0.2,
            decay: 0.5,
            weight: 10.0,
            ceiling: &none,
            margin: 0.15,
            window: DEFAULT_EXHAUSTION_WINDOW,
        };
        // Exhausted at the predicted level 115 (estimate 100): learn 100 * 1.2.
        let s = b
            .sample(&ResourceName::Memory, 0, 115, Some(100.0))
            .unwrap();
        assert!((s - 120.0).abs() < 1e-9);
        // No usage reported: bump from the prediction.
        let s = b.sample(&ResourceName::Memory, 1, 0, Some(100.0)).unwrap();
        assert!((s - 110.0).abs() < 1e-9);
        assert_eq!(b.sample(&ResourceName::Memory, 0, 0, None), None);
        // Usage below what was learned never lowers it.
        let s = b.sample(&ResourceName::Memory, 0, 10, Some(100.0)).unwrap();
        assert_eq!(s, 100.0);
    }
}
