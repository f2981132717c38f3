//! Streaming anomaly detection: [`AnomalyDetector`] (a robust EWMA baseline), what
//! it reports ([`Anomaly`]) and what about ([`Metric`], [`Subject`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{MonitorError, check_range};
use crate::clock::Timestamp;
use crate::id::AgentId;

/// The largest score reported: a deviation from a series that never moved before has
/// no finite z-score, and serde formats such as JSON have no infinity.
pub const MAX_SCORE: f64 = 1e9;

/// The most residuals a detector keeps for its scale estimate.
pub const MAX_HISTORY: u32 = 256;

/// The settings of an [`AnomalyDetector`].
///
/// | setting | meaning | default |
/// |---|---|---|
/// | `alpha` | weight of a new value in the baseline's level (EWMA) | 0.2 |
/// | `beta` | weight of a new slope in the baseline's trend (0: no trend) | 0.05 |
/// | `threshold` | robust z-score at which a value is anomalous | 4.0 |
/// | `warm_up` | values learnt from before any alarm | 12 |
/// | `min_deviation` | smallest absolute deviation that can alarm | 0.0 |
/// | `min_relative_deviation` | smallest deviation, as a share of the expected value, that can alarm | 0.1 |
/// | `history` | residuals kept for the MAD scale estimate | 32 |
/// | `shift_after` | anomalous values in a row, on one side, that make a level shift | 3 |
///
/// The deviation floors keep a near-constant series from alarming on noise its
/// tiny spread would make look large: a queue that holds at 2.0 and moves to 2.1 is
/// not news, whatever the z-score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    alpha: f64,
    beta: f64,
    threshold: f64,
    warm_up: u32,
    min_deviation: f64,
    min_relative_deviation: f64,
    history: u32,
    shift_after: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            alpha: 0.2,
            beta: 0.05,
            threshold: 4.0,
            warm_up: 12,
            min_deviation: 0.0,
            min_relative_deviation: 0.1,
            history: 32,
            shift_after: 3,
        }
    }
}

impl DetectorConfig {
    /// Sets the level's smoothing weight, in `(0, 1]`.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the trend's smoothing weight, in `[0, 1]` (0 turns the trend off: a
    /// plain EWMA baseline).
    pub fn with_beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// Sets the robust z-score that alarms, in `[1, 1000]`.
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets how many values are learnt from before any alarm, in `[3, 100000]`.
    pub fn with_warm_up(mut self, values: u32) -> Self {
        self.warm_up = values;
        self
    }

    /// Sets the smallest absolute deviation that can alarm, at least 0.
    pub fn with_min_deviation(mut self, deviation: f64) -> Self {
        self.min_deviation = deviation;
        self
    }

    /// Sets the smallest deviation, as a share of the expected value's magnitude,
    /// that can alarm, in `[0, 100]`.
    pub fn with_min_relative_deviation(mut self, share: f64) -> Self {
        self.min_relative_deviation = share;
        self
    }

    /// Sets how many residuals the scale estimate keeps, in `[3, 256]`.
    pub fn with_history(mut self, residuals: u32) -> Self {
        self.history = residuals;
        self
    }

    /// Sets how many anomalous values in a row, on one side, make a level shift, in
    /// `[2, 1000]`.
    pub fn with_shift_after(mut self, values: u32) -> Self {
        self.shift_after = values;
        self
    }

    /// The level's smoothing weight.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The trend's smoothing weight.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The robust z-score that alarms.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The values learnt from before any alarm.
    pub fn warm_up(&self) -> u32 {
        self.warm_up
    }

    /// The smallest absolute deviation that can alarm.
    pub fn min_deviation(&self) -> f64 {
        self.min_deviation
    }

    /// The smallest deviation, as a share of the expected value, that can alarm.
    pub fn min_relative_deviation(&self) -> f64 {
        self.min_relative_deviation
    }

    /// The residuals kept for the scale estimate.
    pub fn history(&self) -> u32 {
        self.history
    }

    /// The anomalous values in a row that make a level shift.
    pub fn shift_after(&self) -> u32 {
        self.shift_after
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), MonitorError> {
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(MonitorError::setting(
                "detector.alpha",
                self.alpha,
                "in (0, 1]",
            ));
        }
        check_range("detector.beta", self.beta, 0.0, 1.0, "in [0, 1]")?;
        check_range(
            "detector.threshold",
            self.threshold,
            1.0,
            1000.0,
            "in [1, 1000]",
        )?;
        if !(3..=100_000).contains(&self.warm_up) {
            return Err(MonitorError::setting(
                "detector.warm_up",
                self.warm_up,
                "in [3, 100000]",
            ));
        }
        check_range(
            "detector.min_deviation",
            self.min_deviation,
            0.0,
            f64::MAX,
            "finite and at least 0",
        )?;
        check_range(
            "detector.min_relative_deviation",
            self.min_relative_deviation,
            0.0,
            100.0,
            "in [0, 100]",
        )?;
        if !(3..=MAX_HISTORY).contains(&self.history) {
            return Err(MonitorError::setting(
                "detector.history",
                self.history,
                "in [3, 256]",
            ));
        }
        if !(2..=1000).contains(&self.shift_after) {
            return Err(MonitorError::setting(
                "detector.shift_after",
                self.shift_after,
                "in [2, 1000]",
            ));
        }
        Ok(())
    }
}

/// What kind of departure an [`Anomaly`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnomalyKind {
    /// A value far from the baseline: reported at the first such value of a run.
    Spike,
    /// The series moved to a new level and stayed there: reported when a run of
    /// anomalous values on one side reaches `shift_after`; the baseline restarts
    /// from the new level.
    LevelShift,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::Spike => "spike",
            AnomalyKind::LevelShift => "level shift",
        })
    }
}

/// A series the [`Monitor`](super::Monitor) watches, one value per detection
/// interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metric {
    /// Busy slot-time over available slot-time.
    Utilization,
    /// Succeeded over finished tasks.
    CompletionRate,
    /// Tasks finished.
    TasksFinished,
    /// Tasks waiting (queued or blocked), on average over the interval.
    QueueLength,
    /// Mean wait of the tasks that started after waiting, in seconds.
    Wait,
    /// Mean time from a conflict's detection to its resolution or decision, in
    /// seconds.
    ConflictResolution,
    /// Time the tasks spent blocked behind claims and conflicts, against time they
    /// worked.
    CoordinationOverhead,
    /// Share of the allocated resources the finished tasks used.
    ResourceEfficiency,
    /// A value fed to a detector by the host.
    Custom,
}

impl Metric {
    /// Whether the metric is a share (printed as a percentage).
    pub fn is_share(self) -> bool {
        matches!(
            self,
            Metric::Utilization
                | Metric::CompletionRate
                | Metric::CoordinationOverhead
                | Metric::ResourceEfficiency
        )
    }

    /// A value of this metric, for people: `97.2%`, `12.5s`, `3.0`.
    pub fn format(self, value: f64) -> String {
        match self {
            m if m.is_share() => format!("{}%", super::thresholds::tenths(value * 100.0)),
            Metric::Wait | Metric::ConflictResolution => super::report::format_secs(value),
            _ => super::thresholds::tenths(value),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Utilization => "utilization",
            Metric::CompletionRate => "completion rate",
            Metric::TasksFinished => "tasks finished",
            Metric::QueueLength => "queue length",
            Metric::Wait => "wait",
            Metric::ConflictResolution => "conflict resolution time",
            Metric::CoordinationOverhead => "coordination overhead",
            Metric::ResourceEfficiency => "resource efficiency",
            Metric::Custom => "value",
        })
    }
}

/// Whom a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subject {
    /// The whole fleet.
    Fleet,
    /// One agent.
    Agent(AgentId),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Fleet => f.write_str("fleet"),
            Subject::Agent(a) => write!(f, "{a}"),
        }
    }
}

/// A value that departed from its series' baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Anomaly {
    /// The end of the interval the value is about.
    pub at: Timestamp,
    /// The series.
    pub metric: Metric,
    /// Whom it is about.
    pub subject: Subject,
    /// The value (for a level shift, the mean of the run that made it).
    pub value: f64,
    /// What the baseline expected.
    pub expected: f64,
    /// The robust z-score: the deviation over the scale (1.4826 × the median absolute
    /// deviation of recent residuals), at most [`MAX_SCORE`].
    pub score: f64,
    /// Spike or level shift.
    pub kind: AnomalyKind,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} (expected {}, score ",
            self.subject,
            self.metric,
            self.kind,
            self.metric.format(self.value),
            self.metric.format(self.expected),
        )?;
        // A series that never moved gives the capped score: say so, not 1000000000.0.
        if self.score >= MAX_SCORE {
            f.write_str("max")?;
        } else {
            write!(f, "{:.1}", self.score)?;
        }
        write!(f, ") at {}", self.at)
    }
}

/// A run of anomalous values on one side of the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    above: bool,
    len: u32,
    sum: f64,
    expected: f64,
}

/// A streaming anomaly detector for one series: a robust EWMA baseline and a robust
/// z-score.
///
/// # How
///
/// - **Baseline**: Holt's linear exponential smoothing, a level (EWMA with weight
///   `alpha`) and a trend (EWMA of the level's steps with weight `beta`). The trend
///   is what keeps a slowly drifting series quiet: a plain EWMA lags a ramp by
///   `slope × (1 − alpha) / alpha`, and that lag would read as a deviation.
/// - **Residuals**: each value minus level + trend; the last `history` are kept.
/// - **Expected value**: level + trend + the median residual. The median corrects
///   what bias the baseline has (the lag of a ramp still being learnt, the skew of a
///   bounded series) without being moved by the outliers looked for.
/// - **Scale**: the median absolute deviation (MAD) of the residuals, times 1.4826,
///   which estimates the standard deviation of normal noise and, unlike it, is not
///   dragged up by outliers (its breakdown point is 50%).
/// - **Score**: |value − expected| / scale. A value alarms when its score reaches
///   `threshold` and its deviation also passes both floors (`min_deviation`, and
///   `min_relative_deviation` times |expected|). A series that never moved has scale
///   zero: then any deviation past the floors alarms, with score [`MAX_SCORE`].
/// - **Robust update**: an anomalous value enters the baseline and the residual
///   history clipped to `expected ± threshold × scale` (Huber's idea), so one spike
///   barely moves the baseline and does not widen the scale.
/// - **Spike or level shift**: the first anomalous value of a run on one side is a
///   [`AnomalyKind::Spike`]; the rest of the run are not reported again. When the run
///   reaches `shift_after` values it is a [`AnomalyKind::LevelShift`]: reported once,
///   and the baseline restarts at the run's mean with no trend, so the new level is
///   quiet from then on.
/// - **Warm-up**: the first `warm_up` values only teach the baseline.
///
/// The updates are written as corrections (`level += alpha × (value − level)`), so a
/// constant series keeps a baseline equal to it to the last bit, and never alarms
/// whatever the floors. Values that are not finite are ignored (not learnt, not
/// reported). A finite value whose arithmetic overflows (a jump from near
/// `f64::MAX` to near `-f64::MAX`) is not learnt either, and restarts the detector
/// as new: the state never holds an infinity or a NaN, which would blind it for good.
///
/// # Complexity
/// `observe` is O(`history`) time (two selections of a median, on the stack) and
/// O(`history`) memory, allocated once.
///
/// # Serde
///
/// A detector serializes what it has learnt (its settings, the baseline, the
/// residuals oldest first, the run of anomalies in progress), so that one restored
/// goes on exactly as the original would; deserializing checks that the state is one
/// a detector could reach, and refuses it with
/// [`MonitorError::CorruptSnapshot`] if not. Two detectors are equal when they have
/// learnt the same, whatever the position of their residuals' ring.
///
/// ```
/// use concord::monitor::{AnomalyDetector, AnomalyKind, DetectorConfig};
///
/// let mut d = AnomalyDetector::new(DetectorConfig::default())?;
/// let mut found = Vec::new();
/// for t in 0..100 {
///     let noise = [0.3, -0.2, 0.1, -0.4, 0.2][t % 5];
///     let value = if t == 60 { 130.0 } else { 100.0 + noise };
///     found.extend(d.observe(value).map(|a| (t, a.kind)));
/// }
/// assert_eq!(found, [(60, AnomalyKind::Spike)]);
/// # Ok::<(), concord::monitor::MonitorError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "DetectorData", into = "DetectorData")]
pub struct AnomalyDetector {
    config: DetectorConfig,
    seen: u64,
    level: f64,
    trend: f64,
    /// The last residuals, a ring of at most `history`.
    residuals: Vec<f64>,
    next: usize,
    run: Option<Run>,
}

/// What one observation found, before it is named by metric and subject.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Detection {
    /// The value (for a level shift, the run's mean).
    pub value: f64,
    /// What the baseline expected.
    pub expected: f64,
    /// The robust z-score.
    pub score: f64,
    /// Spike or level shift.
    pub kind: AnomalyKind,
}

impl AnomalyDetector {
    /// A detector that has seen nothing.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] if a setting is out of range.
    pub fn new(config: DetectorConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        Ok(Self::with_valid(config))
    }

    pub(crate) fn with_valid(config: DetectorConfig) -> Self {
        AnomalyDetector {
            config,
            seen: 0,
            level: 0.0,
            trend: 0.0,
            residuals: Vec::with_capacity(config.history as usize),
            next: 0,
            run: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// How many values it has learnt from.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The value it expects next, once it has seen one; at most `f64::MAX` in
    /// magnitude.
    pub fn expected(&self) -> Option<f64> {
        // The parts are finite, their sum may not be: that next value would restart
        // the detector (see `observe`), and the figure says "as far as floats go".
        (self.seen > 0)
            .then(|| (self.level + self.trend + self.robust().0).clamp(-f64::MAX, f64::MAX))
    }

    /// The scale: 1.4826 × the MAD of the recent residuals, at most `f64::MAX`.
    pub fn scale(&self) -> f64 {
        self.robust().1
    }

    /// The median residual and the scale.
    fn robust(&self) -> (f64, f64) {
        let n = self.residuals.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let mut buf = [0.0f64; MAX_HISTORY as usize];
        let buf = &mut buf[..n];
        buf.copy_from_slice(&self.residuals);
        let median = median_in_place(buf);
        // Residuals near both ends of the float range are each finite but lie more
        // than `f64::MAX` apart: saturated, so the scale stays a number that a
        // deviation can be measured against (a huge one, which alarms on nothing).
        for r in buf.iter_mut() {
            *r = (*r - median).abs().min(f64::MAX);
        }
        (median, (1.4826 * median_in_place(buf)).min(f64::MAX))
    }

    fn remember(&mut self, residual: f64) {
        let cap = self.config.history as usize;
        if self.residuals.len() < cap {
            self.residuals.push(residual);
        } else {
            self.residuals[self.next] = residual;
        }
        self.next = (self.next + 1) % cap;
    }

    /// Holt's update for `value`, as corrections (exact for a value equal to the
    /// forecast): the new level and trend, or `None` if either does not fit in an
    /// `f64`. Computed aside, so that a value that would overflow changes nothing.
    fn learnt(&self, value: f64) -> Option<(f64, f64)> {
        let DetectorConfig { alpha, beta, .. } = self.config;
        let forecast = self.level + self.trend;
        let level = forecast + alpha * (value - forecast);
        let step = level - self.level;
        let trend = self.trend + beta * (step - self.trend);
        (level.is_finite() && trend.is_finite()).then_some((level, trend))
    }

    /// Forgets everything learnt, as a new detector: the next value starts the
    /// baseline and the warm-up again.
    fn restart(&mut self) {
        self.seen = 0;
        self.level = 0.0;
        self.trend = 0.0;
        self.residuals.clear();
        self.next = 0;
        self.run = None;
    }

    /// Feeds the next value of the series; returns what it found.
    ///
    /// A value that is not finite is ignored. A finite value whose arithmetic does
    /// not fit in an `f64` (the series jumped across most of the float range, from
    /// near `f64::MAX` to near `-f64::MAX`: the forecast, the residual or the new
    /// baseline would be infinite or NaN) is not learnt either, and the detector
    /// restarts as new: a baseline that such a jump leaves behind says nothing about
    /// the values to come, and one that took the infinity in would be NaN for good,
    /// never to alarm again. The next value then starts the baseline and the
    /// warm-up afresh.
    pub fn observe(&mut self, value: f64) -> Option<Detection> {
        if !value.is_finite() {
            return None;
        }
        match self.try_observe(value) {
            Ok(found) => found,
            Err(Overflow) => {
                tracing::debug!(value, "anomaly detector overflowed; restarting");
                self.restart();
                None
            }
        }
    }

    /// [`observe`](Self::observe) for a finite value, or [`Overflow`] with the
    /// state untouched: every figure the state would keep is computed and checked
    /// before any of it is stored.
    fn try_observe(&mut self, value: f64) -> Result<Option<Detection>, Overflow> {
        if self.seen == 0 {
            self.seen = 1;
            self.level = value;
            self.trend = 0.0;
            return Ok(None);
        }
        let forecast = self.level + self.trend;
        let residual = finite(value - forecast)?;
        if self.seen < u64::from(self.config.warm_up) {
            let (level, trend) = self.learnt(value).ok_or(Overflow)?;
            self.seen += 1;
            self.remember(residual);
            (self.level, self.trend) = (level, trend);
            return Ok(None);
        }
        let (bias, scale) = self.robust();
        let expected = finite(forecast + bias)?;
        let deviation = (value - expected).abs();
        let score = if scale > 0.0 {
            // `min` also turns the NaN of an infinite deviation over an infinite
            // scale into the cap.
            (deviation / scale).min(MAX_SCORE)
        } else if deviation > 0.0 {
            MAX_SCORE
        } else {
            0.0
        };
        let floor = self
            .config
            .min_deviation
            .max(self.config.min_relative_deviation * expected.abs());
        let anomalous = score >= self.config.threshold && deviation > floor;
        if !anomalous {
            let (level, trend) = self.learnt(value).ok_or(Overflow)?;
            self.seen += 1;
            self.run = None;
            self.remember(residual);
            (self.level, self.trend) = (level, trend);
            return Ok(None);
        }
        let above = value > expected;
        let run = match self.run {
            Some(mut r) if r.above == above => {
                r.len += 1;
                r.sum = finite(r.sum + value)?;
                r
            }
            _ => Run {
                above,
                len: 1,
                sum: value,
                expected,
            },
        };
        // The clipped value: the baseline and the scale see at most a threshold's
        // worth of the departure.
        let bound = self.config.threshold * scale;
        let clipped = finite(expected + (value - expected).clamp(-bound, bound))?;
        let clipped_residual = finite(clipped - forecast)?;
        let (level, trend) = self.learnt(clipped).ok_or(Overflow)?;
        let shift = run.len == self.config.shift_after;
        // A level shift takes the old baseline's bias out of every residual kept
        // (below): each must stay finite.
        if shift
            && !(self.residuals.iter().chain([&clipped_residual])).all(|r| (r - bias).is_finite())
        {
            return Err(Overflow);
        }
        self.seen += 1;
        self.run = Some(run);
        self.remember(clipped_residual);
        (self.level, self.trend) = (level, trend);
        if run.len == 1 {
            return Ok(Some(Detection {
                value,
                expected,
                score,
                kind: AnomalyKind::Spike,
            }));
        }
        if shift {
            let mean = run.sum / f64::from(run.len);
            self.level = mean;
            self.trend = 0.0;
            self.run = None;
            // The residuals were measured from the old baseline: their spread still
            // says how noisy the series is, but their bias does not carry over.
            for r in &mut self.residuals {
                *r -= bias;
            }
            let shift = (mean - run.expected).abs();
            let score = if scale > 0.0 {
                (shift / scale).min(MAX_SCORE)
            } else {
                MAX_SCORE
            };
            return Ok(Some(Detection {
                value: mean,
                expected: run.expected,
                score,
                kind: AnomalyKind::LevelShift,
            }));
        }
        Ok(None)
    }
}

/// A figure the detector would keep did not fit in an `f64`.
#[derive(Debug)]
struct Overflow;

/// `x` if finite, else [`Overflow`].
fn finite(x: f64) -> Result<f64, Overflow> {
    if x.is_finite() { Ok(x) } else { Err(Overflow) }
}

impl AnomalyDetector {
    /// Feeds `value` as [`observe`](Self::observe) does, and says whether the
    /// detector was at rest for it: the value took the path past the warm-up, found
    /// nothing, and left the level, the trend, the run and every residual as they
    /// were (all the residuals equal to its own). Fed `value` again, the detector
    /// then does exactly the same, again and again: only `seen` and the ring's
    /// position move, which [`rest`](Self::rest) does in one step.
    pub(crate) fn observe_at_rest(&mut self, value: f64) -> (Option<Detection>, bool) {
        if !value.is_finite() {
            return (None, true);
        }
        let (level, trend) = (self.level.to_bits(), self.trend.to_bits());
        // The residual `observe` remembers on its quiet path, computed alike.
        let residual = (value - (self.level + self.trend)).to_bits();
        let settled = self.seen >= u64::from(self.config.warm_up)
            && self.run.is_none()
            && self.residuals.len() == self.config.history as usize
            && self.residuals.iter().all(|r| r.to_bits() == residual);
        let found = self.observe(value);
        // A restart (an overflow) empties the residuals: never at rest.
        let at_rest = settled
            && found.is_none()
            && self.residuals.len() == self.config.history as usize
            && self.run.is_none()
            && self.level.to_bits() == level
            && self.trend.to_bits() == trend;
        (found, at_rest)
    }

    /// Counts `n` more values equal to the last one fed, which found the detector at
    /// rest ([`observe_at_rest`](Self::observe_at_rest)): the state feeding them one
    /// by one would leave.
    pub(crate) fn rest(&mut self, n: u64) {
        self.seen = self.seen.saturating_add(n);
        let cap = self.config.history as u64;
        if self.residuals.len() as u64 == cap {
            self.next = ((self.next as u64 + n % cap) % cap) as usize;
        }
    }

    /// The residuals kept, oldest first.
    fn residuals_in_order(&self) -> impl Iterator<Item = f64> + '_ {
        let (newer, older) = self.residuals.split_at(self.next.min(self.residuals.len()));
        older.iter().chain(newer).copied()
    }
}

impl PartialEq for AnomalyDetector {
    /// Equal when they have learnt the same: the ring's position is not compared,
    /// only the residuals in order, since that is all the next values depend on.
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.seen == other.seen
            && self.level.to_bits() == other.level.to_bits()
            && self.trend.to_bits() == other.trend.to_bits()
            && self.run == other.run
            && self.residuals.len() == other.residuals.len()
            && self
                .residuals_in_order()
                .zip(other.residuals_in_order())
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// The serialized form of an [`AnomalyDetector`]: the residuals oldest first, so that
/// the ring's position need not be stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorData {
    config: DetectorConfig,
    seen: u64,
    level: f64,
    trend: f64,
    residuals: Vec<f64>,
    run: Option<Run>,
}

impl From<AnomalyDetector> for DetectorData {
    fn from(d: AnomalyDetector) -> Self {
        DetectorData {
            config: d.config,
            seen: d.seen,
            level: d.level,
            trend: d.trend,
            residuals: d.residuals_in_order().collect(),
            run: d.run,
        }
    }
}

impl TryFrom<DetectorData> for AnomalyDetector {
    type Error = MonitorError;

    /// Refuses a state no sequence of values leads to: every value after the first
    /// leaves one residual (up to `history`), a run of anomalies is shorter than a
    /// level shift and comes after the warm-up, and everything is finite.
    fn try_from(d: DetectorData) -> Result<Self, MonitorError> {
        d.config.validate()?;
        let corrupt = |reason: String| MonitorError::CorruptSnapshot {
            reason: format!("anomaly detector: {reason}"),
        };
        if d.seen >= crate::id::COUNTER_LIMIT {
            return Err(corrupt(format!(
                "{} values seen is past any stream (2^63)",
                d.seen
            )));
        }
        let cap = d.config.history as usize;
        let expected = (d.seen.saturating_sub(1)).min(cap as u64) as usize;
        if d.residuals.len() != expected {
            return Err(corrupt(format!(
                "{} residuals after {} values (expected {expected}, history {cap})",
                d.residuals.len(),
                d.seen
            )));
        }
        let run = d.run.map_or([0.0; 2], |r| [r.sum, r.expected]);
        let finite = [d.level, d.trend]
            .iter()
            .chain(&run)
            .chain(&d.residuals)
            .all(|x| x.is_finite());
        if !finite {
            return Err(corrupt("a value that is not finite".to_owned()));
        }
        if let Some(run) = d.run {
            if run.len == 0
                || run.len >= d.config.shift_after
                || d.seen <= u64::from(d.config.warm_up)
            {
                return Err(corrupt(format!(
                    "a run of {} anomalous values after {} values (warm-up {}, level shift at {})",
                    run.len, d.seen, d.config.warm_up, d.config.shift_after
                )));
            }
        }
        let mut residuals = Vec::with_capacity(cap);
        residuals.extend_from_slice(&d.residuals);
        Ok(AnomalyDetector {
            config: d.config,
            seen: d.seen,
            level: d.level,
            trend: d.trend,
            next: residuals.len() % cap,
            residuals,
            run: d.run,
        })
    }
}

/// The median of `xs` (the mean of the middle two for an even count), reordering it:
/// a selection, O(n), not a sort.
fn median_in_place(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    let (below, mid, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        // The largest of the lower half is the other middle value.
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Halved after the sum, as it always was (exact for two equal values), but
        // before it where the sum of two values near `f64::MAX` would overflow.
        Some(0.5 * (lower + mid))
            .filter(|m| m.is_finite())
            .unwrap_or(0.5 * lower + 0.5 * mid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        d: &mut AnomalyDetector,
        values: impl IntoIterator<Item = f64>,
    ) -> Vec<(usize, Detection)> {
        values
            .into_iter()
            .enumerate()
            .filter_map(|(t, v)| d.observe(v).map(|f| (t, f)))
            .collect()
    }

    fn detector() -> AnomalyDetector {
        AnomalyDetector::new(DetectorConfig::default()).unwrap()
    }

    /// A baseline a hair under zero reads as zero, without a sign, in every unit.
    #[test]
    fn values_that_round_to_zero_show_no_sign() {
        assert_eq!(Metric::TasksFinished.format(-1e-17), "0.0");
        assert_eq!(Metric::TasksFinished.format(-0.04), "0.0");
        assert_eq!(Metric::TasksFinished.format(-0.06), "-0.1");
        assert_eq!(Metric::TasksFinished.format(2.26), "2.3");
        assert_eq!(Metric::CompletionRate.format(-1e-17), "0.0%");
        assert_eq!(Metric::CompletionRate.format(0.6667), "66.7%");
        assert_eq!(Metric::Wait.format(-1e-9), "0ms");
        assert_eq!(Metric::Wait.format(-0.25), "-250ms");
        assert_eq!(
            Metric::TasksFinished.format(f64::MAX),
            format!("{:.1}", f64::MAX)
        );
    }

    #[test]
    fn a_constant_series_never_alarms() {
        let mut d = detector();
        assert!(run(&mut d, std::iter::repeat_n(0.42, 1000)).is_empty());
        assert_eq!(d.expected(), Some(0.42));
        assert_eq!(d.scale(), 0.0);
    }

    #[test]
    fn a_constant_series_that_jumps_alarms_with_the_capped_score() {
        let mut d = detector();
        let found = run(&mut d, (0..50).map(|t| if t < 30 { 5.0 } else { 9.0 }));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 30);
        assert_eq!(found[0].1.kind, AnomalyKind::Spike);
        assert_eq!(found[0].1.score, MAX_SCORE);
        assert_eq!(found[1].0, 32);
        assert_eq!(found[1].1.kind, AnomalyKind::LevelShift);
        assert_eq!(found[1].1.value, 9.0);
        assert_eq!(d.expected(), Some(9.0));
    }

    #[test]
    fn a_noise_free_ramp_is_followed_without_alarm() {
        let mut d = detector();
        assert!(run(&mut d, (0..2000).map(|t| 10.0 + 0.5 * t as f64)).is_empty());
        let next = d.expected().unwrap();
        assert!((next - (10.0 + 0.5 * 2000.0)).abs() < 1.0, "{next}");
    }

    #[test]
    fn the_deviation_floors_silence_tiny_moves() {
        let mut d = AnomalyDetector::new(
            DetectorConfig::default()
                .with_min_relative_deviation(0.0)
                .with_min_deviation(1.0),
        )
        .unwrap();
        // Tiny noise: a 0.5 move is many scales, but under the absolute floor.
        let found = run(
            &mut d,
            (0..100).map(|t| {
                if t == 50 {
                    100.5
                } else {
                    100.0 + 0.001 * (t % 3) as f64
                }
            }),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn warm_up_values_never_alarm_and_non_finite_values_are_ignored() {
        let mut d = detector();
        let found = run(&mut d, [1.0, 1000.0, -50.0, f64::NAN, f64::INFINITY, 3.0]);
        assert!(found.is_empty());
        assert_eq!(d.seen(), 4);
    }

    /// A detector restored from its serde form mid-series (its residuals' ring
    /// wrapped, a run of anomalies in progress) finds what the original finds.
    #[test]
    fn a_detector_goes_on_alike_after_serde() {
        let mut d = detector();
        let series = |t: usize| {
            let noise = [0.3, -0.2, 0.1, -0.4, 0.2][t % 5];
            if (60..62).contains(&t) {
                150.0
            } else {
                100.0 + noise
            }
        };
        for t in 0..61 {
            d.observe(series(t));
        }
        assert!(d.run.is_some() && d.residuals.len() == 32 && d.next != 0);
        let json = serde_json::to_string(&d).unwrap();
        let mut back: AnomalyDetector = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        for t in 61..120 {
            assert_eq!(back.observe(series(t)), d.observe(series(t)), "{t}");
        }
        assert_eq!(back, d);
        // What no series leads to is refused, naming it.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["seen"] = serde_json::json!(3);
        let err = serde_json::from_value::<AnomalyDetector>(v).unwrap_err();
        assert!(
            err.to_string().contains("32 residuals after 3 values"),
            "{err}"
        );
    }

    #[test]
    fn settings_out_of_range_are_named() {
        for (config, name) in [
            (DetectorConfig::default().with_alpha(0.0), "detector.alpha"),
            (DetectorConfig::default().with_beta(1.5), "detector.beta"),
            (
                DetectorConfig::default().with_threshold(f64::NAN),
                "detector.threshold",
            ),
            (
                DetectorConfig::default().with_warm_up(1),
                "detector.warm_up",
            ),
            (
                DetectorConfig::default().with_min_deviation(-1.0),
                "detector.min_deviation",
            ),
            (
                DetectorConfig::default().with_history(1000),
                "detector.history",
            ),
            (
                DetectorConfig::default().with_shift_after(1),
                "detector.shift_after",
            ),
        ] {
            match AnomalyDetector::new(config) {
                Err(MonitorError::Setting { setting, .. }) => assert_eq!(setting, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
