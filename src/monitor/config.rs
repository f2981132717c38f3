//! [`MonitorConfig`]: the monitor's settings, as data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::anomaly::DetectorConfig;
use super::error::MonitorError;
use super::sketch::SketchConfig;
use super::thresholds::Thresholds;
use crate::serde_util::duration_ms;

/// The settings of a [`Monitor`](super::Monitor), as serde data (durations in
/// milliseconds); every field has a default, so a host's file names only what it
/// changes.
///
/// | setting | meaning | default |
/// |---|---|---|
/// | `window` | window length; windows are aligned to it (from the epoch, UTC) | 1 day |
/// | `keep_windows` | closed windows kept, a ring | 30 |
/// | `detect_every` | detection interval: one value per series per interval goes to the anomaly detectors; the window must be a whole number of them | 1 hour |
/// | `detect_agents` | also watch each agent's utilization | true |
/// | `sketch` | the quantile sketches' settings | 1%, 2048 buckets |
/// | `detector` | the anomaly detectors' settings | see [`DetectorConfig`] |
/// | `thresholds` | the reports' thresholds | see [`Thresholds`] |
/// | `max_agents` | agents followed at once | 1,048,576 |
/// | `max_tasks_in_flight` | waiting and running tasks followed at once | 1,048,576 |
/// | `max_open_conflicts` | open conflicts followed at once | 65,536 |
/// | `max_resources` | resource kinds followed (cpu, memory, storage and others) | 16 |
/// | `max_anomalies` | anomalies kept per window, and waiting to be taken | 1,024 |
/// | `skip_replayed` | skip an event whose sequence number is at or below one already seen | true |
///
/// The limits bound the memory: past them, what is left out is counted in the
/// window's [`IngestStats`](super::IngestStats), never grown into. Turn
/// `skip_replayed` off to feed one monitor the events of several coordinators
/// (whose sequences interleave); else merge the windows of one monitor each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    #[serde(with = "duration_ms")]
    window: Duration,
    keep_windows: usize,
    #[serde(with = "duration_ms")]
    detect_every: Duration,
    detect_agents: bool,
    sketch: SketchConfig,
    detector: DetectorConfig,
    thresholds: Thresholds,
    max_agents: usize,
    max_tasks_in_flight: usize,
    max_open_conflicts: usize,
    max_resources: usize,
    max_anomalies: usize,
    skip_replayed: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            window: Duration::from_secs(24 * 3600),
            keep_windows: 30,
            detect_every: Duration::from_secs(3600),
            detect_agents: true,
            sketch: SketchConfig::default(),
            detector: DetectorConfig::default(),
            thresholds: Thresholds::default(),
            max_agents: 1 << 20,
            max_tasks_in_flight: 1 << 20,
            max_open_conflicts: 1 << 16,
            max_resources: 16,
            max_anomalies: 1024,
            skip_replayed: true,
        }
    }
}

impl MonitorConfig {
    /// Sets the window length (at least a millisecond, whole milliseconds, and a whole
    /// multiple of the detection interval, an hour unless
    /// [`with_detect_every`](Self::with_detect_every) says otherwise: a window shorter
    /// than an hour needs a shorter interval too, or validation fails with
    /// [`MonitorError::UnalignedInterval`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use concord::monitor::MonitorConfig;
    ///
    /// let minute = MonitorConfig::default()
    ///     .with_window(Duration::from_secs(60))
    ///     .with_detect_every(Duration::from_secs(10));
    /// assert!(minute.validate().is_ok());
    /// assert!(MonitorConfig::default().with_window(Duration::from_secs(60)).validate().is_err());
    /// ```
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets how many closed windows are kept (1 to 100,000).
    pub fn with_keep_windows(mut self, windows: usize) -> Self {
        self.keep_windows = windows;
        self
    }

    /// Sets the detection interval (at least a millisecond, whole milliseconds,
    /// dividing the window).
    pub fn with_detect_every(mut self, every: Duration) -> Self {
        self.detect_every = every;
        self
    }

    /// Sets whether each agent's utilization is watched for anomalies.
    pub fn with_detect_agents(mut self, yes: bool) -> Self {
        self.detect_agents = yes;
        self
    }

    /// Sets the quantile sketches' settings.
    pub fn with_sketch(mut self, sketch: SketchConfig) -> Self {
        self.sketch = sketch;
        self
    }

    /// Sets the anomaly detectors' settings.
    pub fn with_detector(mut self, detector: DetectorConfig) -> Self {
        self.detector = detector;
        self
    }

    /// Sets the reports' thresholds.
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Sets how many agents are followed at once (at least 1).
    pub fn with_max_agents(mut self, agents: usize) -> Self {
        self.max_agents = agents;
        self
    }

    /// Sets how many waiting and running tasks are followed at once (at least 1).
    pub fn with_max_tasks_in_flight(mut self, tasks: usize) -> Self {
        self.max_tasks_in_flight = tasks;
        self
    }

    /// Sets how many open conflicts are followed at once (at least 1).
    pub fn with_max_open_conflicts(mut self, conflicts: usize) -> Self {
        self.max_open_conflicts = conflicts;
        self
    }

    /// Sets how many resource kinds are followed (3 to 1,024: cpu, memory and
    /// storage always are).
    pub fn with_max_resources(mut self, kinds: usize) -> Self {
        self.max_resources = kinds;
        self
    }

    /// Sets how many anomalies are kept per window and waiting to be taken (at least
    /// 1).
    pub fn with_max_anomalies(mut self, anomalies: usize) -> Self {
        self.max_anomalies = anomalies;
        self
    }

    /// Sets whether replayed events (sequence number at or below one seen) are
    /// skipped.
    pub fn with_skip_replayed(mut self, yes: bool) -> Self {
        self.skip_replayed = yes;
        self
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many closed windows are kept.
    pub fn keep_windows(&self) -> usize {
        self.keep_windows
    }

    /// The detection interval.
    pub fn detect_every(&self) -> Duration {
        self.detect_every
    }

    /// Whether each agent's utilization is watched.
    pub fn detect_agents(&self) -> bool {
        self.detect_agents
    }

    /// The sketches' settings.
    pub fn sketch(&self) -> SketchConfig {
        self.sketch
    }

    /// The detectors' settings.
    pub fn detector(&self) -> DetectorConfig {
        self.detector
    }

    /// The reports' thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Agents followed at once.
    pub fn max_agents(&self) -> usize {
        self.max_agents
    }

    /// Tasks followed at once.
    pub fn max_tasks_in_flight(&self) -> usize {
        self.max_tasks_in_flight
    }

    /// Open conflicts followed at once.
    pub fn max_open_conflicts(&self) -> usize {
        self.max_open_conflicts
    }

    /// Resource kinds followed.
    pub fn max_resources(&self) -> usize {
        self.max_resources
    }

    /// Anomalies kept per window and waiting.
    pub fn max_anomalies(&self) -> usize {
        self.max_anomalies
    }

    /// Whether replayed events are skipped.
    pub fn skip_replayed(&self) -> bool {
        self.skip_replayed
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming the first setting out of range, or
    /// [`MonitorError::UnalignedInterval`].
    pub fn validate(&self) -> Result<(), MonitorError> {
        let whole_ms =
            |d: Duration| d >= Duration::from_millis(1) && d.subsec_nanos() % 1_000_000 == 0;
        if !whole_ms(self.window) {
            return Err(MonitorError::setting(
                "window",
                format_args!("{:?}", self.window),
                "at least 1ms, in whole milliseconds",
            ));
        }
        if !whole_ms(self.detect_every) {
            return Err(MonitorError::setting(
                "detect_every",
                format_args!("{:?}", self.detect_every),
                "at least 1ms, in whole milliseconds",
            ));
        }
        // Both in nanoseconds, below 2^64 (585 years).
        if u64::try_from(self.window.as_nanos()).is_err() {
            return Err(MonitorError::setting(
                "window",
                format_args!("{:?}", self.window),
                "shorter than 500 years",
            ));
        }
        if self.window.as_nanos() % self.detect_every.as_nanos() != 0 {
            return Err(MonitorError::UnalignedInterval {
                window: self.window,
                every: self.detect_every,
            });
        }
        if !(1..=100_000).contains(&self.keep_windows) {
            return Err(MonitorError::setting(
                "keep_windows",
                self.keep_windows,
                "in [1, 100000]",
            ));
        }
        for (name, value) in [
            ("max_agents", self.max_agents),
            ("max_tasks_in_flight", self.max_tasks_in_flight),
            ("max_open_conflicts", self.max_open_conflicts),
            ("max_anomalies", self.max_anomalies),
        ] {
            if value == 0 {
                return Err(MonitorError::setting(name, value, "at least 1"));
            }
        }
        if !(3..=1024).contains(&self.max_resources) {
            return Err(MonitorError::setting(
                "max_resources",
                self.max_resources,
                "in [3, 1024]",
            ));
        }
        self.sketch.validate()?;
        self.detector.validate()?;
        self.thresholds.validate()
    }
}
