//! [`Monitor`]: the coordinator's events in; windows, anomalies and reports out.
//!
//! The engine's state and its public face live here; what it does with them is split
//! by concern: [`time`] (windows and detection intervals closing as time passes),
//! [`tracking`] (the live rows of agents, resources, tasks and conflicts),
//! [`events`] (one coordinator event applied to those rows), and [`snapshot`]
//! (versioned serde state and its validated restore).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::anomaly::{Anomaly, AnomalyDetector, DetectorConfig, Metric};
use super::config::MonitorConfig;
use super::error::MonitorError;
use super::report::{DailyReport, DailySummary};
use super::sketch::QuantileSketch;
use super::summary::Summary;
use super::trend::CapacityTrend;
use super::window::{AgentStats, IngestStats, TaskCounts, Window};
use crate::clock::Timestamp;
use crate::conflict::ConflictId;
use crate::coordinator::Event;
use crate::hash::FxHashMap;
use crate::id::{AgentId, TaskId};
use crate::resource::{ResourceName, Resources};
use crate::serde_util::u128_text;

mod events;
mod snapshot;
mod time;
mod tracking;

pub use snapshot::{MONITOR_SNAPSHOT_VERSION, MonitorSnapshot};

/// The most detection intervals in a row with no event in them (idle intervals) whose
/// values a [`Monitor`] feeds to its anomaly detectors; past them, until the next
/// event, the detectors are fed nothing.
///
/// An idle interval's values are those of the idle interval before it: nothing
/// changed the gauges. Fed the same value again and again, a detector reports the
/// change to it within `shift_after` values (a spike, then a level shift: at most
/// 1,000) and has a full history of residuals of the new level `history` values
/// later (at most 256); this bound is past both, twice over (with an hourly
/// interval, 85 days). What it buys is that a jump of the clock over an idle stretch
/// costs at most this many intervals, however fine the detection interval. Often
/// fewer: as soon as every detector is at rest (fed the idle values again, it would
/// change nothing but its count of values), the idle intervals to the window's end
/// are counted in one step, exactly as one by one.
pub const MAX_IDLE_INTERVALS: u64 = 2048;

/// The fleet series watched for anomalies, in the order their detectors are kept.
const FLEET_METRICS: [Metric; 8] = [
    Metric::Utilization,
    Metric::CompletionRate,
    Metric::TasksFinished,
    Metric::QueueLength,
    Metric::Wait,
    Metric::ConflictResolution,
    Metric::CoordinationOverhead,
    Metric::ResourceEfficiency,
];

/// Where a followed task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the coordinator's queue.
    Queued,
    /// Behind a running task's claims; the holder's agent, when known.
    Blocked(Option<u32>),
    /// On the agent of this index.
    Running(u32),
}

/// A task followed while it waits or runs (removed when it ends).
#[derive(Debug, Clone)]
struct TaskLive {
    /// When it began to wait, or to run.
    since: Timestamp,
    phase: Phase,
    /// What its assignment holds, while it runs.
    allocated: Resources,
}

/// One agent's live state and the window's aggregates for it: a fixed size however
/// long the stream runs. In a [`MonitorSnapshot`] without the counts of its tasks
/// (`busy`, `blocked`): a restore counts them from the tasks, not from a second copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentLive {
    id: AgentId,
    /// The row is free for another agent.
    #[serde(skip)]
    vacant: bool,
    /// Seen in service or at work in the window in progress.
    present: bool,
    /// Registered (not deregistered).
    alive: bool,
    /// Available or busy.
    in_service: bool,
    slots: u32,
    #[serde(skip)]
    busy: u32,
    /// Tasks blocked behind its running tasks now.
    #[serde(skip)]
    blocked: u32,
    capacity: Resources,
    /// The time its integrals are accrued to.
    last: Timestamp,
    #[serde(with = "u128_text")]
    busy_ns: u128,
    #[serde(with = "u128_text")]
    avail_ns: u128,
    #[serde(with = "u128_text")]
    mark_busy: u128,
    #[serde(with = "u128_text")]
    mark_avail: u128,
    started: u64,
    waited: u64,
    #[serde(with = "u128_text")]
    waited_ns: u128,
    succeeded: u64,
    failed: u64,
    lost: u64,
    released: u64,
    blocked_peak: u32,
    durations: Summary,
    detector: Option<Box<AnomalyDetector>>,
}

impl AgentLive {
    fn new(id: AgentId, now: Timestamp, detector: Option<Box<AnomalyDetector>>) -> Self {
        AgentLive {
            id,
            vacant: false,
            present: true,
            alive: false,
            in_service: false,
            slots: 0,
            busy: 0,
            blocked: 0,
            capacity: Resources::new(),
            last: now,
            busy_ns: 0,
            avail_ns: 0,
            mark_busy: 0,
            mark_avail: 0,
            started: 0,
            waited: 0,
            waited_ns: 0,
            succeeded: 0,
            failed: 0,
            lost: 0,
            released: 0,
            blocked_peak: 0,
            durations: Summary::new(),
            detector,
        }
    }

    /// The slots it offers: all of them in service, and never fewer than its running
    /// tasks (a quarantined agent finishing its work still does it).
    #[inline]
    fn offered(&self) -> u32 {
        let slots = if self.in_service { self.slots } else { 0 };
        slots.max(self.busy)
    }

    #[inline]
    fn accrue(&mut self, t: Timestamp) {
        if t > self.last {
            let dt = u128::from(t.as_nanos() - self.last.as_nanos());
            self.busy_ns += u128::from(self.busy) * dt;
            self.avail_ns += u128::from(self.offered()) * dt;
            self.last = t;
        }
    }

    /// Its figures, accrued to `end` without changing it.
    fn stats(&self, end: Timestamp) -> AgentStats {
        let dt = u128::from(end.as_nanos().saturating_sub(self.last.as_nanos()));
        AgentStats {
            agent: self.id,
            busy_secs: secs(self.busy_ns + u128::from(self.busy) * dt),
            available_secs: secs(self.avail_ns + u128::from(self.offered()) * dt),
            started: self.started,
            waited: self.waited,
            waited_secs: secs(self.waited_ns),
            succeeded: self.succeeded,
            failed: self.failed,
            lost: self.lost,
            released: self.released,
            blocked_peak: u64::from(self.blocked_peak),
            durations: self.durations,
        }
    }

    /// Starts the next window's aggregates.
    fn reset(&mut self) {
        self.busy_ns = 0;
        self.avail_ns = 0;
        self.mark_busy = 0;
        self.mark_avail = 0;
        self.started = 0;
        self.waited = 0;
        self.waited_ns = 0;
        self.succeeded = 0;
        self.failed = 0;
        self.lost = 0;
        self.released = 0;
        self.blocked_peak = self.blocked;
        self.durations = Summary::new();
        self.present = self.alive || self.busy > 0 || self.blocked > 0;
    }
}

/// One resource kind across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dim {
    name: ResourceName,
    #[serde(with = "u128_text")]
    capacity: u128,
    #[serde(with = "u128_text")]
    allocated: u128,
    #[serde(with = "u128_text")]
    cap_ns: u128,
    #[serde(with = "u128_text")]
    alloc_ns: u128,
    peak_use: f64,
    #[serde(with = "u128_text")]
    done_alloc: u128,
    #[serde(with = "u128_text")]
    done_used: u128,
    #[serde(with = "u128_text")]
    done_within: u128,
    under: u64,
    reports: u64,
    #[serde(with = "u128_text")]
    mark_alloc: u128,
    #[serde(with = "u128_text")]
    mark_within: u128,
}

impl Dim {
    fn new(name: ResourceName) -> Self {
        Dim {
            name,
            capacity: 0,
            allocated: 0,
            cap_ns: 0,
            alloc_ns: 0,
            peak_use: 0.0,
            done_alloc: 0,
            done_used: 0,
            done_within: 0,
            under: 0,
            reports: 0,
            mark_alloc: 0,
            mark_within: 0,
        }
    }

    fn current_use(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.allocated as f64 / self.capacity as f64
        }
    }

    fn note_peak(&mut self) {
        self.peak_use = self.peak_use.max(self.current_use());
    }

    fn is_empty(&self) -> bool {
        self.capacity == 0
            && self.allocated == 0
            && self.cap_ns == 0
            && self.alloc_ns == 0
            && self.reports == 0
    }
}

/// The fleet's gauges and their integrals (in a [`MonitorSnapshot`], the integrals
/// only: a restore counts the gauges from the tasks and the agents).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fleet {
    last: Timestamp,
    #[serde(skip)]
    queued: u64,
    #[serde(skip)]
    blocked: u64,
    #[serde(skip)]
    busy: u64,
    #[serde(skip)]
    avail: u64,
    #[serde(with = "u128_text")]
    queued_ns: u128,
    #[serde(with = "u128_text")]
    blocked_ns: u128,
    #[serde(with = "u128_text")]
    busy_ns: u128,
    #[serde(with = "u128_text")]
    avail_ns: u128,
    peak: u64,
}

/// The window in progress' own aggregates (the per-agent and per-resource ones live
/// in their rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Live {
    tasks: TaskCounts,
    durations: QuantileSketch,
    waits: QuantileSketch,
    #[serde(with = "u128_text")]
    wait_ns: u128,
    wait_n: u64,
    resolution: QuantileSketch,
    resolution_summary: Summary,
    #[serde(with = "u128_text")]
    res_ns: u128,
    res_n: u64,
    detected: u64,
    resolved: u64,
    decided: u64,
    decided_by_default: u64,
    escalated: u64,
    anomalies: Vec<Anomaly>,
    ingest: IngestStats,
}

impl Live {
    fn new(sketch: &QuantileSketch) -> Self {
        Live {
            tasks: TaskCounts::default(),
            durations: sketch.clone(),
            waits: sketch.clone(),
            wait_ns: 0,
            wait_n: 0,
            resolution: sketch.clone(),
            resolution_summary: Summary::new(),
            res_ns: 0,
            res_n: 0,
            detected: 0,
            resolved: 0,
            decided: 0,
            decided_by_default: 0,
            escalated: 0,
            anomalies: Vec::new(),
            ingest: IngestStats::default(),
        }
    }
}

/// The fleet counters at the last detection boundary, to take an interval's values
/// as differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marks {
    succeeded: u64,
    finished: u64,
    #[serde(with = "u128_text")]
    busy_ns: u128,
    #[serde(with = "u128_text")]
    avail_ns: u128,
    #[serde(with = "u128_text")]
    waiting_ns: u128,
    #[serde(with = "u128_text")]
    wait_ns: u128,
    wait_n: u64,
    #[serde(with = "u128_text")]
    res_ns: u128,
    res_n: u64,
}

/// How much a [`Monitor`] follows now, and what it had to leave out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorStats {
    /// Agents followed.
    pub agents: usize,
    /// Tasks followed while they wait or run.
    pub tasks_in_flight: usize,
    /// Open conflicts followed.
    pub open_conflicts: usize,
    /// Closed windows kept.
    pub windows: usize,
    /// Anomalies waiting to be taken.
    pub pending_anomalies: usize,
    /// Anomalies dropped from the waiting ones, oldest first, because nobody took them.
    pub dropped_anomalies: u64,
}

/// Performance monitoring as a sans-I/O state machine: the coordinator's
/// [`Event`]s in, windowed metrics, anomalies and reports out.
///
/// # What it measures, per window
///
/// - **Utilization**, per agent and for the fleet: busy slot-time over available
///   slot-time, from the assignments, completions and hand-backs and the agents'
///   slots and status (an agent offers its slots while available or busy).
/// - **Task completion rate**: succeeded over finished (succeeded, failed, or lost
///   with their agent), per agent and overall.
/// - **Conflict resolution time**: from a conflict's detection to its resolution or
///   decision, as a sketch (p50, p95) and a summary.
/// - **Resource efficiency**: what the finished tasks used (the usage their
///   completion reported) against what their assignment allocated, which is what
///   was predicted; and each resource's use: allocated over the fleet's capacity,
///   over time and at its peak.
/// - **Coordination overhead**: time the tasks spent blocked behind claims and the
///   conflicts they opened, against time they ran, from the events' own timestamps
///   (time queued for capacity is the queue's figure, not coordination).
/// - **Queues**: tasks waiting now and at most, their waits (sketch), and per agent
///   the tasks waiting for it (see [`AgentStats::queue_length`]).
///
/// # How
///
/// Windows are aligned to their length from the epoch (a daily window runs from UTC
/// midnight to midnight) and close when an event, or [`advance`](Self::advance),
/// passes their end; closed windows go to a ring of `keep_windows`. Gauges (tasks
/// busy, waiting, resources held) are integrated exactly, in integer nanoseconds,
/// and split at the boundaries, so a window holds exactly its own share of a task
/// that spans several. Every `detect_every`, each fleet series ([`Metric`]) and each
/// agent's utilization takes its value for the interval to its own
/// [`AnomalyDetector`] (whose deviation floor is raised to the series' resolution: a
/// percentage point of a share, one task finished, half a task waiting, a second);
/// anomalies go to the window and to a queue the host takes them from
/// ([`drain_anomalies`](Self::drain_anomalies)).
///
/// # Time
///
/// Moving the clock (an event, or [`advance`](Self::advance)) closes the detection
/// intervals and windows it passes, and costs what they hold, not how many there are:
/// of a stretch with no event, at most [`MAX_IDLE_INTERVALS`] intervals are fed to
/// the detectors, and fewer are visited (once every detector is at rest, the idle
/// intervals to the window's end are counted in one step); a jump past the kept
/// windows builds no more than `keep_windows` of them. So a jump over an idle week
/// is cheap whatever the interval, even a millisecond.
///
/// # Memory
///
/// Constant per agent (one fixed-size row, with its detector) and per resource kind,
/// and per task only while it waits or runs: a task's state is removed when it ends,
/// and past `max_tasks_in_flight` tasks are counted as untracked rather than
/// followed. A deregistered agent's row is freed when the window it left in closes.
/// Each kept window holds about 150 bytes per agent plus three sketches.
///
/// # Snapshots
///
/// [`snapshot`](Self::snapshot) (kept beside the coordinator's checkpoint) and
/// [`restore`](Self::restore): windows, sketches and detector baselines survive a
/// restart, and the reports are those of a monitor that never stopped.
///
/// # Robustness
///
/// Nothing panics on any sequence of events: a replayed event (sequence number
/// already seen) is skipped, a late one is counted at the latest time seen, and an
/// event about a task in a state it was not known to be in is counted where it can
/// be and noted in [`IngestStats::unknown_tasks`].
///
/// # Complexity
/// [`ingest`](Self::ingest): O(1) expected, O(resource kinds) for an assignment or
/// completion, no allocation in steady state. Each detection boundary: O(agents)
/// with per-agent detection, else O(1); each window close: O(agents log agents).
/// A jump over an idle stretch visits at most `MAX_IDLE_INTERVALS` boundaries and
/// `keep_windows + 1` windows, and usually two boundaries a window.
///
/// ```
/// use concord::coordinator::Coordinator;
/// use concord::monitor::{Monitor, MonitorConfig};
/// use concord::{AgentId, AgentProfile, ManualClock, Task, TaskId, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_secs(0));
/// let coordinator = Coordinator::builder().clock(clock.clone()).build();
/// coordinator.register_agent(AgentProfile::new(AgentId::new(1), "worker").with_max_tasks(2))?;
/// coordinator.assign(Task::new(TaskId::new(1), "build", "compile the crate"))?;
/// clock.advance(Duration::from_secs(3600));
/// coordinator.complete(TaskId::new(1), true, None)?;
///
/// let mut monitor = Monitor::new(MonitorConfig::default())?;
/// monitor.ingest_all(&coordinator.drain_events());
/// monitor.advance(Timestamp::from_secs(2 * 3600));
/// let now = monitor.current_window().expect("started");
/// // One of two slots busy for one of the two hours.
/// assert_eq!(now.utilization(), Some(0.25));
/// assert_eq!(now.completion_rate(), Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    window_ns: u64,
    every_ns: u64,
    started: bool,
    now: Timestamp,
    seen_seq: bool,
    last_seq: u64,
    window_start: Timestamp,
    window_end: Timestamp,
    next_interval: Timestamp,
    /// When the latest event was taken in (or the clock started): the detection
    /// intervals after the one holding it are idle.
    last_event: Timestamp,
    agent_index: FxHashMap<AgentId, u32>,
    agents: Vec<AgentLive>,
    free: Vec<u32>,
    tasks: FxHashMap<TaskId, TaskLive>,
    conflicts: FxHashMap<ConflictId, Timestamp>,
    fleet: Fleet,
    dims: Vec<Dim>,
    empty_sketch: QuantileSketch,
    win: Live,
    marks: Marks,
    detectors: Vec<AnomalyDetector>,
    pending: VecDeque<Anomaly>,
    pending_dropped: u64,
    closed: VecDeque<Window>,
    found: Vec<Anomaly>,
    /// Detection intervals closed one by one: what a jump of the clock cost.
    #[cfg(test)]
    visited: u64,
}

/// The detector settings for `metric`: the configured ones, with the deviation floor
/// raised to the metric's resolution, below which a move is never news: a
/// percentage point of a share, one task finished, half a task waiting, a second of
/// a wait or a resolution time.
fn detector_for(config: &MonitorConfig, metric: Metric) -> DetectorConfig {
    let resolution = match metric {
        Metric::TasksFinished | Metric::Wait | Metric::ConflictResolution => 1.0,
        Metric::QueueLength => 0.5,
        m if m.is_share() => 0.01,
        _ => 0.0,
    };
    let d = config.detector();
    d.with_min_deviation(d.min_deviation().max(resolution))
}

fn secs(ns: u128) -> f64 {
    ns as f64 / 1e9
}

fn align(t: u64, step: u64) -> u64 {
    t - t % step
}

impl Monitor {
    /// A monitor that has seen nothing; its clock starts at the first event (or
    /// [`advance`](Self::advance)).
    ///
    /// # Errors
    /// [`MonitorError`] naming the first setting out of range.
    pub fn new(config: MonitorConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        // Checked above: both fit in u64 nanoseconds and are at least a millisecond.
        let window_ns = config.window().as_nanos() as u64;
        let every_ns = config.detect_every().as_nanos() as u64;
        let empty_sketch = QuantileSketch::new(config.sketch())?;
        let detectors = FLEET_METRICS
            .iter()
            .map(|&m| AnomalyDetector::with_valid(detector_for(&config, m)))
            .collect();
        let dims = vec![
            Dim::new(ResourceName::Cpu),
            Dim::new(ResourceName::Memory),
            Dim::new(ResourceName::Storage),
        ];
        Ok(Monitor {
            win: Live::new(&empty_sketch),
            empty_sketch,
            window_ns,
            every_ns,
            started: false,
            now: Timestamp::EPOCH,
            seen_seq: false,
            last_seq: 0,
            window_start: Timestamp::EPOCH,
            window_end: Timestamp::EPOCH,
            next_interval: Timestamp::EPOCH,
            last_event: Timestamp::EPOCH,
            agent_index: FxHashMap::default(),
            agents: Vec::new(),
            free: Vec::new(),
            tasks: FxHashMap::default(),
            conflicts: FxHashMap::default(),
            fleet: Fleet::default(),
            dims,
            marks: Marks::default(),
            detectors,
            pending: VecDeque::new(),
            pending_dropped: 0,
            closed: VecDeque::new(),
            found: Vec::new(),
            #[cfg(test)]
            visited: 0,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The latest time seen, once started.
    pub fn now(&self) -> Option<Timestamp> {
        self.started.then_some(self.now)
    }

    /// When the detection interval in progress ends: the host calls
    /// [`advance`](Self::advance) then (or later) if no event comes, so that the
    /// interval's values reach the detectors and a window closes on time.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.started.then_some(self.next_interval)
    }

    /// Takes in one event.
    pub fn ingest(&mut self, event: &Event) {
        if self.config.skip_replayed() {
            if self.seen_seq && event.seq <= self.last_seq {
                self.win.ingest.duplicates += 1;
                return;
            }
            self.seen_seq = true;
            self.last_seq = event.seq;
        }
        let t = self.clock_to(event.at);
        self.last_event = t;
        self.win.ingest.events += 1;
        self.apply(&event.kind, t);
    }

    /// Takes in events in order.
    pub fn ingest_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for e in events {
            self.ingest(e);
        }
    }

    /// Moves the monitor's clock to `now` (ignored if earlier than the latest time
    /// seen): closes the detection intervals and windows that ended by then.
    pub fn advance(&mut self, now: Timestamp) {
        if !self.started {
            self.start(now);
        } else if now > self.now {
            if now >= self.next_interval {
                self.roll_to(now);
            }
            self.now = now;
        }
    }

    /// The window in progress, accrued to the latest time seen and marked
    /// [`in_progress`](Window::in_progress) (`None` before the first event).
    pub fn current_window(&self) -> Option<Window> {
        self.started.then(|| Window {
            in_progress: true,
            ..self.window_to(self.window_start, self.now)
        })
    }

    /// The closed windows kept, oldest first.
    pub fn windows(&self) -> impl ExactSizeIterator<Item = &Window> + '_ {
        self.closed.iter()
    }

    /// The latest closed window.
    pub fn last_window(&self) -> Option<&Window> {
        self.closed.back()
    }

    /// Takes the anomalies found since the last call, oldest first.
    pub fn drain_anomalies(&mut self) -> impl Iterator<Item = Anomaly> + '_ {
        self.pending.drain(..)
    }

    /// Tasks waiting now (queued or blocked).
    pub fn queue_length(&self) -> u64 {
        self.fleet.queued + self.fleet.blocked
    }

    /// How much it follows now.
    pub fn stats(&self) -> MonitorStats {
        MonitorStats {
            agents: self.agent_index.len(),
            tasks_in_flight: self.tasks.len(),
            open_conflicts: self.conflicts.len(),
            windows: self.closed.len(),
            pending_anomalies: self.pending.len(),
            dropped_anomalies: self.pending_dropped,
        }
    }

    /// The summary of the latest closed window: with the default window, the daily
    /// summary of the day before.
    pub fn daily_summary(&self) -> Option<DailySummary> {
        self.last_window().map(Window::summary)
    }

    /// The report on the latest closed window: its summary, the performance report
    /// against the configured thresholds, and the capacity trends over the kept
    /// windows (projected 7 windows ahead).
    pub fn daily_report(&self) -> Option<DailyReport> {
        self.last_window().map(|w| self.report(w))
    }

    /// The report on any window (a merged week, the window in progress), with this
    /// monitor's thresholds and capacity trends.
    pub fn report(&self, window: &Window) -> DailyReport {
        DailyReport::with_valid(window, self.config.thresholds(), self.capacity_trends(7))
    }

    /// Least-squares trends over the kept windows, projected `horizon` windows ahead:
    /// the fleet's slot utilization and each resource's use (with the thresholds as
    /// their limits), and the tasks finished per window.
    pub fn capacity_trends(&self, horizon: u32) -> Vec<CapacityTrend> {
        CapacityTrend::from_windows(
            self.closed.iter(),
            self.config.window(),
            horizon,
            &self.config.thresholds(),
        )
    }
}
#[cfg(test)]
mod tests;
