//! [`Monitor`]: the coordinator's events in; windows, anomalies and reports out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::anomaly::{Anomaly, AnomalyDetector, DetectorConfig, Metric, Subject};
use super::config::MonitorConfig;
use super::error::MonitorError;
use super::report::{DailyReport, DailySummary};
use super::sketch::QuantileSketch;
use super::summary::Summary;
use super::trend::CapacityTrend;
use super::window::{
    AgentStats, ConflictStats, IngestStats, QueueStats, ResourceStats, TaskCounts, Window,
};
use crate::agent::AgentStatus;
use crate::clock::Timestamp;
use crate::conflict::ConflictId;
use crate::coordinator::{Decider, Event, EventKind};
use crate::hash::FxHashMap;
use crate::id::{AgentId, TaskId};
use crate::resource::{ExtendedName, ResourceName, Resources};
use crate::serde_util::u128_text;

mod snapshot;
pub use snapshot::{MONITOR_SNAPSHOT_VERSION, MonitorSnapshot};

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
/// - **Coordination overhead**: the share of the tasks' time spent waiting (queued,
///   or blocked behind claims and conflicts) rather than running, from the events'
///   own timestamps.
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

    /// The window in progress, accrued to the latest time seen (`None` before the
    /// first event).
    pub fn current_window(&self) -> Option<Window> {
        self.started
            .then(|| self.window_to(self.window_start, self.now))
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

    // ----- time ---------------------------------------------------------------------

    fn start(&mut self, t: Timestamp) {
        self.started = true;
        self.now = t;
        let ns = t.as_nanos();
        let start = align(ns, self.window_ns);
        self.window_start = Timestamp::from_nanos(start);
        self.window_end = Timestamp::from_nanos(start.saturating_add(self.window_ns));
        self.next_interval =
            Timestamp::from_nanos(align(ns, self.every_ns).saturating_add(self.every_ns));
        self.fleet.last = t;
    }

    /// The time an event counts at: its own, or the latest seen if it is earlier.
    #[inline]
    fn clock_to(&mut self, at: Timestamp) -> Timestamp {
        if !self.started {
            self.start(at);
            return at;
        }
        if at < self.now {
            self.win.ingest.late += 1;
            return self.now;
        }
        if at >= self.next_interval {
            self.roll_to(at);
        }
        self.now = at;
        at
    }

    /// Closes every detection interval, and window, that ends by `t`.
    fn roll_to(&mut self, t: Timestamp) {
        // At the end of time an interval cannot end: nothing is closed there.
        while self.next_interval <= t && self.next_interval < Timestamp::MAX {
            let b = self.next_interval;
            self.close_interval(b);
            if b >= self.window_end {
                self.close_window(b);
                self.skip_ahead(t);
            }
            self.next_interval =
                Timestamp::from_nanos(self.next_interval.as_nanos().saturating_add(self.every_ns));
        }
    }

    /// After a window closed at `window_start`: if `t` is further ahead than the kept
    /// windows reach, the windows that would only pass through the ring are not built
    /// (their time is not accrued; they are counted as skipped), so that a jump of
    /// years costs no more than `keep_windows` windows.
    fn skip_ahead(&mut self, t: Timestamp) {
        let w = self.window_ns;
        let start = self.window_start.as_nanos();
        let target = align(t.as_nanos(), w);
        let keep = self.config.keep_windows() as u64;
        let ahead = (target - start) / w;
        if ahead <= keep {
            return;
        }
        let jump = target - keep * w;
        self.win.ingest.skipped_windows += (jump - start) / w;
        let j = Timestamp::from_nanos(jump);
        self.window_start = j;
        self.window_end = Timestamp::from_nanos(jump.saturating_add(w));
        // The loop adds an interval to this.
        self.next_interval = j;
        self.fleet.last = self.fleet.last.max(j);
        for a in &mut self.agents {
            a.last = a.last.max(j);
        }
    }

    fn accrue_fleet(&mut self, t: Timestamp) {
        let f = &mut self.fleet;
        if t <= f.last {
            return;
        }
        let dt = u128::from(t.as_nanos() - f.last.as_nanos());
        f.queued_ns += u128::from(f.queued) * dt;
        f.blocked_ns += u128::from(f.blocked) * dt;
        f.busy_ns += u128::from(f.busy) * dt;
        f.avail_ns += u128::from(f.avail) * dt;
        for d in &mut self.dims {
            d.cap_ns += d.capacity * dt;
            d.alloc_ns += d.allocated * dt;
        }
        f.last = t;
    }

    /// Feeds each series' value for the interval ending at `b` to its detector.
    fn close_interval(&mut self, b: Timestamp) {
        self.accrue_fleet(b);
        let f = &self.fleet;
        let m = self.marks;
        let tasks = &self.win.tasks;
        let waiting_ns = f.queued_ns + f.blocked_ns;
        let (d_busy, d_avail) = (f.busy_ns - m.busy_ns, f.avail_ns - m.avail_ns);
        let d_waiting = waiting_ns - m.waiting_ns;
        let d_finished = tasks.finished() - m.finished;
        let d_succeeded = tasks.succeeded - m.succeeded;
        let d_wait_n = self.win.wait_n - m.wait_n;
        let d_res_n = self.win.res_n - m.res_n;
        let (mut eff_sum, mut eff_n) = (0.0, 0u32);
        for d in &mut self.dims {
            let alloc = d.done_alloc - d.mark_alloc;
            if alloc > 0 {
                eff_sum += (d.done_within - d.mark_within) as f64 / alloc as f64;
                eff_n += 1;
            }
            d.mark_alloc = d.done_alloc;
            d.mark_within = d.done_within;
        }
        let div = |a: u128, b: u128| (b > 0).then(|| a as f64 / b as f64);
        let values: [Option<f64>; 8] = [
            div(d_busy, d_avail),
            div(u128::from(d_succeeded), u128::from(d_finished)),
            Some(d_finished as f64),
            div(d_waiting, u128::from(self.every_ns)),
            div(self.win.wait_ns - m.wait_ns, u128::from(d_wait_n)).map(|ns| ns / 1e9),
            div(self.win.res_ns - m.res_ns, u128::from(d_res_n)).map(|ns| ns / 1e9),
            div(d_waiting, d_waiting + d_busy),
            (eff_n > 0).then(|| eff_sum / f64::from(eff_n)),
        ];
        self.marks = Marks {
            succeeded: tasks.succeeded,
            finished: tasks.finished(),
            busy_ns: f.busy_ns,
            avail_ns: f.avail_ns,
            waiting_ns,
            wait_ns: self.win.wait_ns,
            wait_n: self.win.wait_n,
            res_ns: self.win.res_ns,
            res_n: self.win.res_n,
        };
        self.found.clear();
        for ((metric, detector), value) in FLEET_METRICS.iter().zip(&mut self.detectors).zip(values)
        {
            let Some(value) = value else { continue };
            if let Some(d) = detector.observe(value) {
                self.found.push(Anomaly {
                    at: b,
                    metric: *metric,
                    subject: Subject::Fleet,
                    value: d.value,
                    expected: d.expected,
                    score: d.score,
                    kind: d.kind,
                });
            }
        }
        if self.config.detect_agents() {
            for a in &mut self.agents {
                if a.vacant {
                    continue;
                }
                a.accrue(b);
                let (busy, avail) = (a.busy_ns - a.mark_busy, a.avail_ns - a.mark_avail);
                a.mark_busy = a.busy_ns;
                a.mark_avail = a.avail_ns;
                let (Some(detector), true) = (a.detector.as_mut(), avail > 0) else {
                    continue;
                };
                if let Some(d) = detector.observe(busy as f64 / avail as f64) {
                    self.found.push(Anomaly {
                        at: b,
                        metric: Metric::Utilization,
                        subject: Subject::Agent(a.id),
                        value: d.value,
                        expected: d.expected,
                        score: d.score,
                        kind: d.kind,
                    });
                }
            }
        }
        // Agents' rows are in no particular order: the anomalies of one instant are
        // put in subject order, so that the output depends only on the events.
        self.found.sort_by_key(|a| (a.subject, a.metric));
        let cap = self.config.max_anomalies();
        for a in self.found.drain(..) {
            tracing::info!(
                anomaly.metric = %a.metric,
                anomaly.subject = %a.subject,
                anomaly.kind = %a.kind,
                anomaly.value = a.value,
                anomaly.expected = a.expected,
                anomaly.score = a.score,
                "performance anomaly"
            );
            if self.win.anomalies.len() < cap {
                self.win.anomalies.push(a.clone());
            } else {
                self.win.ingest.dropped_anomalies += 1;
            }
            if self.pending.len() == cap {
                self.pending.pop_front();
                self.pending_dropped += 1;
            }
            self.pending.push_back(a);
        }
    }

    /// Closes the window ending at `b` (everything accrued to `b`) and starts the next.
    fn close_window(&mut self, b: Timestamp) {
        let window = self.window_to(self.window_start, b);
        tracing::debug!(
            window.start = %window.start,
            window.end = %window.end,
            window.events = window.ingest.events,
            window.agents = window.agents.len(),
            "monitoring window closed"
        );
        if self.closed.len() == self.config.keep_windows() {
            self.closed.pop_front();
        }
        self.closed.push_back(window);
        self.win = Live::new(&self.empty_sketch);
        self.marks = Marks::default();
        let f = &mut self.fleet;
        f.queued_ns = 0;
        f.blocked_ns = 0;
        f.busy_ns = 0;
        f.avail_ns = 0;
        f.peak = f.queued + f.blocked;
        for d in &mut self.dims {
            d.cap_ns = 0;
            d.alloc_ns = 0;
            d.peak_use = d.current_use();
            d.done_alloc = 0;
            d.done_used = 0;
            d.done_within = 0;
            d.under = 0;
            d.reports = 0;
            d.mark_alloc = 0;
            d.mark_within = 0;
        }
        for (i, a) in self.agents.iter_mut().enumerate() {
            if a.vacant {
                continue;
            }
            a.accrue(b);
            a.reset();
            if !a.present {
                // Gone, with nothing running or waiting on it: the row is free.
                a.vacant = true;
                a.detector = None;
                self.agent_index.remove(&a.id);
                self.free.push(i as u32);
            }
        }
        self.window_start = b;
        self.window_end = Timestamp::from_nanos(b.as_nanos().saturating_add(self.window_ns));
    }

    /// The window from `start` to `end`, with every gauge accrued to `end`, without
    /// changing anything.
    fn window_to(&self, start: Timestamp, end: Timestamp) -> Window {
        let f = &self.fleet;
        let dt = u128::from(end.as_nanos().saturating_sub(f.last.as_nanos()));
        let mut resources: Vec<ResourceStats> = self
            .dims
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| ResourceStats {
                resource: d.name.clone(),
                capacity_secs: secs(d.cap_ns + d.capacity * dt),
                allocated_secs: secs(d.alloc_ns + d.allocated * dt),
                peak_use: d.peak_use,
                allocated: d.done_alloc as f64,
                used: d.done_used as f64,
                used_within: d.done_within as f64,
                under_predicted: d.under,
                reports: d.reports,
            })
            .collect();
        resources.sort_by(|a, b| a.resource.cmp(&b.resource));
        let mut agents: Vec<AgentStats> = self
            .agents
            .iter()
            .filter(|a| !a.vacant && a.present)
            .map(|a| a.stats(end))
            .collect();
        agents.sort_by_key(|a| a.agent);
        let w = &self.win;
        Window {
            start,
            end,
            tasks: w.tasks,
            durations: w.durations.clone(),
            queue: QueueStats {
                current: f.queued + f.blocked,
                peak: f.peak,
                queued_secs: secs(f.queued_ns + u128::from(f.queued) * dt),
                blocked_secs: secs(f.blocked_ns + u128::from(f.blocked) * dt),
                waits: w.waits.clone(),
            },
            conflicts: ConflictStats {
                detected: w.detected,
                resolved: w.resolved,
                decided: w.decided,
                decided_by_default: w.decided_by_default,
                escalated: w.escalated,
                open: self.conflicts.len() as u64,
                resolution: w.resolution.clone(),
                resolution_summary: w.resolution_summary,
            },
            resources,
            agents,
            anomalies: w.anomalies.clone(),
            ingest: w.ingest,
        }
    }

    // ----- agents and resources -------------------------------------------------------

    /// The row of `id`, made if new and there is room.
    fn agent_row(&mut self, id: AgentId) -> Option<usize> {
        if let Some(&i) = self.agent_index.get(&id) {
            return Some(i as usize);
        }
        if self.agent_index.len() >= self.config.max_agents() {
            self.win.ingest.untracked_agents += 1;
            return None;
        }
        let detector = self.config.detect_agents().then(|| {
            Box::new(AnomalyDetector::with_valid(detector_for(
                &self.config,
                Metric::Utilization,
            )))
        });
        let live = AgentLive::new(id, self.now, detector);
        let i = match self.free.pop() {
            Some(i) => {
                self.agents[i as usize] = live;
                i as usize
            }
            None => {
                self.agents.push(live);
                self.agents.len() - 1
            }
        };
        self.agent_index.insert(id, i as u32);
        Some(i)
    }

    /// Changes agent `i` with `f`, keeping the fleet's offered slots in step; both
    /// accrued to `t` first.
    #[inline]
    fn change_agent(&mut self, i: usize, t: Timestamp, f: impl FnOnce(&mut AgentLive)) {
        self.accrue_fleet(t);
        let a = &mut self.agents[i];
        a.accrue(t);
        let before = a.offered();
        f(a);
        a.present = true;
        let after = a.offered();
        self.fleet.avail = (self.fleet.avail + u64::from(after)).saturating_sub(u64::from(before));
    }

    /// The row of an extended resource, made if new and there is room.
    fn dim_of(&mut self, name: &ExtendedName) -> Option<usize> {
        if let Some(k) = self.dims[3..]
            .iter()
            .position(|d| matches!(&d.name, ResourceName::Extended(n) if n == name))
        {
            return Some(k + 3);
        }
        if self.dims.len() >= self.config.max_resources() {
            self.win.ingest.untracked_resources += 1;
            return None;
        }
        self.dims
            .push(Dim::new(ResourceName::Extended(name.clone())));
        Some(self.dims.len() - 1)
    }

    /// Adds (or takes away) `r` to each resource's capacity (`capacity`) or allocated
    /// amount; the fleet is accrued first.
    fn adjust(&mut self, r: &Resources, capacity: bool, add: bool) {
        let fixed = [r.cpu_millis(), r.memory_bytes(), r.storage_bytes()];
        for (k, amount) in fixed.into_iter().enumerate() {
            if amount > 0 {
                apply_amount(&mut self.dims[k], amount, capacity, add);
            }
        }
        for (name, amount) in r.extended_entries() {
            if let Some(k) = self.dim_of(name) {
                apply_amount(&mut self.dims[k], *amount, capacity, add);
            }
        }
    }

    fn set_capacity(&mut self, i: usize, capacity: Resources, t: Timestamp) {
        self.accrue_fleet(t);
        let old = std::mem::replace(&mut self.agents[i].capacity, capacity);
        self.adjust(&old, true, false);
        let new = self.agents[i].capacity.clone();
        self.adjust(&new, true, true);
    }

    /// Records a finished task's usage against its allocation.
    fn record_usage(&mut self, allocated: &Resources, used: &Resources) {
        let fixed = [
            (allocated.cpu_millis(), used.cpu_millis()),
            (allocated.memory_bytes(), used.memory_bytes()),
            (allocated.storage_bytes(), used.storage_bytes()),
        ];
        for (k, (a, u)) in fixed.into_iter().enumerate() {
            record(&mut self.dims[k], a, u);
        }
        // Both lists are sorted by name: walk them together.
        let (xs, ys) = (allocated.extended_entries(), used.extended_entries());
        let (mut i, mut j) = (0, 0);
        while i < xs.len() || j < ys.len() {
            let (name, a, u) = match (xs.get(i), ys.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    i += 1;
                    j += 1;
                    (&x.0, x.1, y.1)
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    i += 1;
                    (&x.0, x.1, 0)
                }
                (Some(x), None) => {
                    i += 1;
                    (&x.0, x.1, 0)
                }
                (_, Some(y)) => {
                    j += 1;
                    (&y.0, 0, y.1)
                }
                (None, None) => break,
            };
            if let Some(k) = self.dim_of(name) {
                record(&mut self.dims[k], a, u);
            }
        }
    }

    // ----- tasks ------------------------------------------------------------------------

    fn can_track(&mut self) -> bool {
        if self.tasks.len() < self.config.max_tasks_in_flight() {
            true
        } else {
            self.win.ingest.untracked_tasks += 1;
            false
        }
    }

    /// A waiting phase begins: the gauges count it.
    fn wait_in(&mut self, phase: Phase, t: Timestamp) {
        self.accrue_fleet(t);
        match phase {
            Phase::Queued => self.fleet.queued += 1,
            Phase::Blocked(holder) => {
                self.fleet.blocked += 1;
                if let Some(h) = holder {
                    let a = &mut self.agents[h as usize];
                    a.blocked += 1;
                    a.blocked_peak = a.blocked_peak.max(a.blocked);
                }
            }
            Phase::Running(_) => return,
        }
        let f = &mut self.fleet;
        f.peak = f.peak.max(f.queued + f.blocked);
    }

    /// A waiting phase ends.
    fn wait_out(&mut self, phase: Phase, t: Timestamp) {
        self.accrue_fleet(t);
        match phase {
            Phase::Queued => self.fleet.queued = self.fleet.queued.saturating_sub(1),
            Phase::Blocked(holder) => {
                self.fleet.blocked = self.fleet.blocked.saturating_sub(1);
                if let Some(h) = holder {
                    let a = &mut self.agents[h as usize];
                    a.blocked = a.blocked.saturating_sub(1);
                }
            }
            Phase::Running(_) => {}
        }
    }

    /// A task stops running on agent `i`: its slot and allocation are freed.
    fn stop_running(&mut self, i: u32, allocated: &Resources, t: Timestamp) {
        self.change_agent(i as usize, t, |a| a.busy = a.busy.saturating_sub(1));
        self.fleet.busy = self.fleet.busy.saturating_sub(1);
        self.adjust(allocated, false, false);
    }

    /// `task` begins to wait in `phase` (queued or blocked); `count` it as a task that
    /// entered that phase.
    fn begin_wait(&mut self, task: TaskId, phase: Phase, count: bool, t: Timestamp) {
        let known = self.tasks.get(&task).map(|l| (l.phase, l.since));
        let since = match known {
            Some((old, _)) if old == phase => return,
            Some((Phase::Running(i), _)) => {
                // Waiting again without a hand-back: its run ended unannounced.
                self.win.ingest.unknown_tasks += 1;
                if let Some(live) = self.tasks.remove(&task) {
                    self.stop_running(i, &live.allocated, t);
                }
                t
            }
            Some((old, since)) => {
                self.wait_out(old, t);
                since
            }
            None if self.can_track() => t,
            None => return,
        };
        self.tasks
            .entry(task)
            .and_modify(|l| l.phase = phase)
            .or_insert_with(|| TaskLive {
                since,
                phase,
                allocated: Resources::new(),
            });
        self.wait_in(phase, t);
        match phase {
            _ if !count => {}
            Phase::Queued => self.win.tasks.queued += 1,
            _ => self.win.tasks.blocked += 1,
        }
    }

    /// `task` ends while waiting (or, unannounced, while running).
    fn end_waiting(&mut self, task: TaskId, t: Timestamp) {
        let Some(live) = self.tasks.remove(&task) else {
            self.win.ingest.unknown_tasks += 1;
            return;
        };
        match live.phase {
            Phase::Running(i) => {
                self.win.ingest.unknown_tasks += 1;
                self.stop_running(i, &live.allocated, t);
            }
            waiting => self.wait_out(waiting, t),
        }
    }

    fn assigned(&mut self, task: TaskId, agent: AgentId, resources: &Resources, t: Timestamp) {
        let known = self.tasks.get(&task).map(|l| (l.phase, l.since));
        let waited = match known {
            Some((Phase::Running(j), _)) => {
                // Assigned twice without an end between: the first run ends here.
                self.win.ingest.unknown_tasks += 1;
                if let Some(live) = self.tasks.remove(&task) {
                    self.stop_running(j, &live.allocated, t);
                }
                None
            }
            Some((phase, since)) => {
                self.wait_out(phase, t);
                Some(t.as_nanos().saturating_sub(since.as_nanos()))
            }
            None => None,
        };
        self.win.tasks.assigned += 1;
        let Some(i) = self.agent_row(agent) else {
            self.tasks.remove(&task);
            return;
        };
        if let Some(ns) = waited {
            let w = &mut self.win;
            w.tasks.waited += 1;
            w.waits.add(ns as f64 / 1e9);
            w.wait_ns += u128::from(ns);
            w.wait_n += 1;
            let a = &mut self.agents[i];
            a.waited += 1;
            a.waited_ns += u128::from(ns);
        }
        self.agents[i].started += 1;
        if known.is_none() && !self.can_track() {
            return;
        }
        self.change_agent(i, t, |a| a.busy += 1);
        self.fleet.busy += 1;
        self.adjust(resources, false, true);
        let live = self.tasks.entry(task).or_insert_with(|| TaskLive {
            since: t,
            phase: Phase::Running(i as u32),
            allocated: Resources::new(),
        });
        live.since = t;
        live.phase = Phase::Running(i as u32);
        live.allocated.clone_from(resources);
    }

    /// `task` stops running: returns its agent's row, when it started and what it
    /// held, if it was known to run.
    fn stop(&mut self, task: TaskId, t: Timestamp) -> Option<(usize, Timestamp, Resources)> {
        match self.tasks.get(&task).map(|l| l.phase) {
            Some(Phase::Running(i)) => {
                let live = self.tasks.remove(&task)?;
                self.stop_running(i, &live.allocated, t);
                Some((i as usize, live.since, live.allocated))
            }
            Some(_) => {
                self.win.ingest.unknown_tasks += 1;
                self.end_waiting(task, t);
                None
            }
            None => {
                self.win.ingest.unknown_tasks += 1;
                None
            }
        }
    }

    fn close_conflict(&mut self, conflict: ConflictId, t: Timestamp) {
        if let Some(opened) = self.conflicts.remove(&conflict) {
            let ns = t.as_nanos().saturating_sub(opened.as_nanos());
            let w = &mut self.win;
            w.res_ns += u128::from(ns);
            w.res_n += 1;
            w.resolution.add(ns as f64 / 1e9);
            w.resolution_summary.add(ns as f64 / 1e9);
        }
    }

    // ----- events -----------------------------------------------------------------------

    fn apply(&mut self, kind: &EventKind, t: Timestamp) {
        match kind {
            EventKind::TaskAssigned { assignment: a } => {
                self.assigned(a.task.id(), a.agent, &a.resources, t);
            }
            EventKind::TaskCompleted {
                task,
                agent,
                success,
                usage,
            } => {
                let row = match self.stop(*task, t) {
                    Some((i, since, allocated)) => {
                        let took = t.as_nanos().saturating_sub(since.as_nanos()) as f64 / 1e9;
                        self.agents[i].durations.add(took);
                        self.win.durations.add(took);
                        if let Some(used) = usage {
                            self.record_usage(&allocated, used);
                        }
                        Some(i)
                    }
                    None => self.agent_row(*agent),
                };
                if *success {
                    self.win.tasks.succeeded += 1;
                } else {
                    self.win.tasks.failed += 1;
                }
                if let Some(i) = row {
                    let a = &mut self.agents[i];
                    a.present = true;
                    if *success {
                        a.succeeded += 1;
                    } else {
                        a.failed += 1;
                    }
                }
            }
            EventKind::TaskQueued { task, .. } => self.begin_wait(*task, Phase::Queued, true, t),
            EventKind::TaskBlocked { task, behind, .. } => {
                let holder = match self.tasks.get(behind).map(|l| l.phase) {
                    Some(Phase::Running(i)) => Some(i),
                    _ => None,
                };
                self.begin_wait(*task, Phase::Blocked(holder), true, t);
            }
            EventKind::TaskHandedBack {
                task,
                agent,
                requeued,
            } => {
                let row = match self.stop(*task, t) {
                    Some((i, ..)) => Some(i),
                    None => self.agent_row(*agent),
                };
                if *requeued {
                    // Counted as requeued, not as newly queued.
                    self.win.tasks.requeued += 1;
                    self.begin_wait(*task, Phase::Queued, false, t);
                } else {
                    self.win.tasks.lost += 1;
                    if let Some(i) = row {
                        self.agents[i].lost += 1;
                    }
                }
            }
            EventKind::TaskReleased { task, agent } => {
                let row = match self.stop(*task, t) {
                    Some((i, ..)) => Some(i),
                    None => self.agent_row(*agent),
                };
                self.win.tasks.released += 1;
                if let Some(i) = row {
                    self.agents[i].released += 1;
                }
            }
            EventKind::TaskRejected { task, .. } => {
                self.end_if_known(*task, t);
                self.win.tasks.rejected += 1;
            }
            EventKind::TaskDenied { task, .. } => {
                self.end_waiting(*task, t);
                self.win.tasks.denied += 1;
            }
            EventKind::TaskCancelled { task } => {
                self.end_waiting(*task, t);
                self.win.tasks.cancelled += 1;
            }
            EventKind::PolicyRefused { .. } => self.win.tasks.policy_refusals += 1,
            // What they change shows in the status changes and hand-backs that follow.
            EventKind::AgentQuarantined { .. }
            | EventKind::QuarantineReleased { .. }
            | EventKind::SafeModeTriggered { .. }
            | EventKind::SecurityBreachReported { .. }
            | EventKind::CommunicationsStopped { .. }
            | EventKind::CommunicationsResumed { .. } => {}
            EventKind::AgentRegistered { profile } => {
                let Some(i) = self.agent_row(profile.id()) else {
                    return;
                };
                let slots = profile.max_tasks();
                self.change_agent(i, t, |a| {
                    a.alive = true;
                    a.in_service = true;
                    a.slots = slots;
                });
                let capacity = profile.capacity().cloned().unwrap_or_default();
                self.set_capacity(i, capacity, t);
            }
            EventKind::AgentDeregistered { agent } => {
                let Some(i) = self.agent_row(*agent) else {
                    return;
                };
                self.change_agent(i, t, |a| {
                    a.alive = false;
                    a.in_service = false;
                });
                self.set_capacity(i, Resources::new(), t);
            }
            EventKind::AgentCapacityChanged { agent, capacity } => {
                if let Some(i) = self.agent_row(*agent) {
                    self.set_capacity(i, capacity.clone(), t);
                }
            }
            EventKind::AgentStatusChanged { agent, to, .. } => {
                if let Some(i) = self.agent_row(*agent) {
                    let to_service = matches!(to, AgentStatus::Available | AgentStatus::Busy);
                    // An agent that left (or was never seen to join) offers nothing,
                    // whatever its status says.
                    self.change_agent(i, t, |a| a.in_service = to_service && a.alive);
                }
            }
            EventKind::ModeChanged { .. } => {}
            EventKind::ConflictDetected { conflict, .. } => {
                let id = conflict.id();
                if self.conflicts.contains_key(&id) {
                    return;
                }
                self.win.detected += 1;
                if self.conflicts.len() < self.config.max_open_conflicts() {
                    self.conflicts.insert(id, t);
                } else {
                    self.win.ingest.untracked_conflicts += 1;
                }
            }
            EventKind::ConflictEscalated { .. } => self.win.escalated += 1,
            EventKind::ConflictDecided { conflict, by, .. } => {
                self.close_conflict(*conflict, t);
                self.win.decided += 1;
                if *by == Decider::Default {
                    self.win.decided_by_default += 1;
                }
            }
            EventKind::ConflictResolved { conflict } => {
                self.close_conflict(*conflict, t);
                self.win.resolved += 1;
            }
        }
    }

    /// A rejection may come for a task never seen waiting (refused at once).
    fn end_if_known(&mut self, task: TaskId, t: Timestamp) {
        if self.tasks.contains_key(&task) {
            self.end_waiting(task, t);
        }
    }
}

fn apply_amount(d: &mut Dim, amount: u64, capacity: bool, add: bool) {
    let v = if capacity {
        &mut d.capacity
    } else {
        &mut d.allocated
    };
    *v = if add {
        *v + u128::from(amount)
    } else {
        v.saturating_sub(u128::from(amount))
    };
    d.note_peak();
}

fn record(d: &mut Dim, allocated: u64, used: u64) {
    if allocated == 0 && used == 0 {
        return;
    }
    d.done_alloc += u128::from(allocated);
    d.done_used += u128::from(used);
    d.done_within += u128::from(allocated.min(used));
    if used > allocated {
        d.under += 1;
    }
    d.reports += 1;
}

#[cfg(test)]
mod tests;
