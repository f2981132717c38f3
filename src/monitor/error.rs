//! [`MonitorError`]: what the monitoring domain refuses.

use std::time::Duration;

/// A setting, a pair of aggregates or a snapshot that monitoring refuses. Settings are
/// checked when the component is made ([`Monitor::new`](super::Monitor::new),
/// [`QuantileSketch::new`](super::QuantileSketch::new),
/// [`AnomalyDetector::new`](super::AnomalyDetector::new)) and when a report is made
/// with [`Thresholds`](super::Thresholds), so a bad value is named before any data
/// flows; snapshots, when restored ([`Monitor::restore`](super::Monitor::restore)).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A setting is out of its range.
    #[error("setting `{setting}` is {value}: it must be {expected}")]
    Setting {
        /// The setting (`window`, `detector.alpha`, ...).
        setting: &'static str,
        /// Its value, as written.
        value: String,
        /// The range it must be in.
        expected: &'static str,
    },
    /// The window is not a whole number of detection intervals, so the two would not
    /// share boundaries.
    #[error("window {window:?} is not a whole multiple of the detection interval {every:?}")]
    UnalignedInterval {
        /// The window length.
        window: Duration,
        /// The detection interval.
        every: Duration,
    },
    /// A serialized sketch names a bucket no finite value falls in.
    #[error("sketch bucket {index} is out of range (at most 2^31 either side of 0)")]
    SketchBucket {
        /// The bucket's index.
        index: i64,
    },
    /// Two sketches of different settings cannot merge: their buckets differ.
    #[error(
        "sketches of relative accuracy {left} ({left_buckets} buckets) and {right} \
         ({right_buckets} buckets) cannot merge"
    )]
    SketchMismatch {
        /// The receiving sketch's relative accuracy.
        left: f64,
        /// Its bucket limit.
        left_buckets: u32,
        /// The other sketch's relative accuracy.
        right: f64,
        /// Its bucket limit.
        right_buckets: u32,
    },
    /// A [`MonitorSnapshot`](super::MonitorSnapshot) (or a serialized
    /// [`AnomalyDetector`](super::AnomalyDetector) or
    /// [`QuantileSketch`](super::QuantileSketch)) has another version or holds a
    /// state the monitor could not have reached.
    #[error("corrupt monitor snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong, naming the offending value.
        reason: String,
    },
    /// A [`MonitorSnapshot`](super::MonitorSnapshot) was taken under another value of
    /// a setting that shapes the state (the window, the detection interval, the
    /// sketches' or detectors' settings, per-agent detection): restore it under the
    /// configuration it was taken with.
    #[error("the snapshot was taken with `{setting}` {snapshot}, the configuration has {config}")]
    SnapshotSetting {
        /// The setting (`window`, `detect_every`, `sketch`, `detector`, `detect_agents`).
        setting: &'static str,
        /// Its value in the snapshot.
        snapshot: String,
        /// Its value in the configuration.
        config: String,
    },
}

impl MonitorError {
    /// A [`MonitorError::Setting`].
    pub(crate) fn setting(
        setting: &'static str,
        value: impl std::fmt::Display,
        expected: &'static str,
    ) -> Self {
        MonitorError::Setting {
            setting,
            value: value.to_string(),
            expected,
        }
    }
}

/// Checks that `value` is finite and in `[lo, hi]`.
pub(crate) fn check_range(
    setting: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), MonitorError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(MonitorError::setting(setting, value, expected))
    }
}
