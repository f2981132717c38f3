//! [`MonitorSnapshot`]: a [`Monitor`]'s state as versioned serde data, and its
//! validated restore.
//!
//! A child of the engine, so that the snapshot carries the engine's own rows without
//! making them visible to the rest of the crate.

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    AgentLive, Dim, FLEET_METRICS, Fleet, Live, Marks, Monitor, Phase, TaskLive, align,
    detector_for,
};
use crate::clock::Timestamp;
use crate::conflict::ConflictId;
use crate::hash::FxHashMap;
use crate::id::{AgentId, TaskId};
use crate::monitor::{
    Anomaly, AnomalyDetector, IngestStats, Metric, MonitorConfig, MonitorError, QuantileSketch,
    TaskCounts, Window,
};
use crate::resource::{ResourceName, Resources};
use crate::serde_util::duration_ms;

/// The version [`Monitor::snapshot`] writes and [`Monitor::restore`] reads.
pub const MONITOR_SNAPSHOT_VERSION: u32 = 1;

/// No count in a snapshot may be at or past this: a monitor that counted so many
/// events would have taken them in at a billion a second for 36 years, and below it
/// no sum of a window's counts overflows.
const COUNT_LIMIT: u64 = 1 << 60;

/// Everything a [`Monitor`] knows, as plain serde data: persist it beside the
/// coordinator's checkpoint, and [`Monitor::restore`] carries on where it was, so a
/// restart loses neither the window in progress nor the kept windows, their
/// sketches, or the anomaly detectors' baselines. A restored monitor fed the events
/// that follow gives the same windows, anomalies and reports as the original, to the
/// bit.
///
/// Its size is that of the monitor's state, which its settings bound: the kept
/// windows, a row per agent and resource kind followed, the tasks in flight, the
/// open conflicts and the anomalies not yet taken; never the length of the stream.
/// Its serde form is the same for the same state (rows in id order), so two
/// snapshots can be compared as text.
///
/// The rows are the monitor's own and may change from one version to the next: read
/// figures from the restored monitor's windows, not from the serde form.
/// [`Monitor::restore`] checks the version and that the state is one the monitor
/// could have reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSnapshot {
    version: u32,
    #[serde(with = "duration_ms")]
    window: Duration,
    #[serde(with = "duration_ms")]
    detect_every: Duration,
    /// The latest time seen; `None` before the first event.
    now: Option<Timestamp>,
    /// The latest sequence number taken in, when replays are skipped.
    last_seq: Option<u64>,
    /// When the latest event was taken in (or the clock started): how many idle
    /// detection intervals have passed follows from it. `None` before the first
    /// event; a snapshot written without it restores as if an event came at `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_event: Option<Timestamp>,
    fleet: Fleet,
    marks: Marks,
    current: Live,
    /// The rows in use, by agent id.
    agents: Vec<AgentLive>,
    /// By task id.
    tasks: Vec<TaskRow>,
    /// By conflict id.
    conflicts: Vec<ConflictRow>,
    /// In the monitor's order (cpu, memory, storage, then as first seen), which its
    /// float sums follow.
    resources: Vec<Dim>,
    /// One per fleet series, in the engine's order.
    detectors: Vec<AnomalyDetector>,
    pending: Vec<Anomaly>,
    pending_dropped: u64,
    /// The kept windows, oldest first.
    windows: Vec<Window>,
}

/// A task followed while it waits or runs, its agent named by id (the engine's row
/// numbers are not kept: a restored monitor numbers its rows afresh).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRow {
    task: TaskId,
    since: Timestamp,
    phase: PhaseRow,
    #[serde(default, skip_serializing_if = "Resources::is_zero")]
    allocated: Resources,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum PhaseRow {
    Queued,
    /// Behind a task running on `holder`, when it was known.
    Blocked {
        holder: Option<AgentId>,
    },
    Running {
        agent: AgentId,
    },
}

/// An open conflict, and when it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictRow {
    conflict: ConflictId,
    opened: Timestamp,
}

impl MonitorSnapshot {
    /// The version it was written in.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The latest time the monitor had seen; `None` if it had seen nothing.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }
}

impl Monitor {
    /// Everything the monitor knows, as plain serde data (see [`MonitorSnapshot`]).
    ///
    /// # Complexity
    /// O(kept windows + agents + resource kinds + tasks in flight + open conflicts +
    /// pending anomalies), plus the sort of the agents, tasks and conflicts by id.
    ///
    /// ```
    /// use concord::coordinator::Coordinator;
    /// use concord::monitor::{Monitor, MonitorConfig, MonitorSnapshot};
    /// use concord::{AgentId, AgentProfile, ManualClock, Task, TaskId, Timestamp};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new(Timestamp::from_secs(0));
    /// let coordinator = Coordinator::builder().clock(clock.clone()).build();
    /// coordinator.register_agent(AgentProfile::new(AgentId::new(1), "worker"))?;
    /// coordinator.assign(Task::new(TaskId::new(1), "build", "compile the crate"))?;
    /// let config = MonitorConfig::default();
    /// let mut monitor = Monitor::new(config.clone())?;
    /// monitor.ingest_all(&coordinator.drain_events());
    ///
    /// // Persist it beside the coordinator's checkpoint; after a restart, carry on.
    /// let json = serde_json::to_string(&monitor.snapshot())?;
    /// let snapshot: MonitorSnapshot = serde_json::from_str(&json)?;
    /// let mut restored = Monitor::restore(config, snapshot)?;
    ///
    /// // The task that started before the restart ends after it, and counts whole.
    /// clock.advance(Duration::from_secs(3600));
    /// coordinator.complete(TaskId::new(1), true, None)?;
    /// let events = coordinator.drain_events();
    /// restored.ingest_all(&events);
    /// monitor.ingest_all(&events);
    /// let window = restored.current_window().expect("started");
    /// assert_eq!(window.durations.max(), Some(3600.0));
    /// assert_eq!(Some(window), monitor.current_window());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> MonitorSnapshot {
        let mut agents: Vec<AgentLive> = self
            .agents
            .iter()
            .filter(|a| !a.vacant)
            .map(|a| AgentLive {
                busy: 0,
                blocked: 0,
                ..a.clone()
            })
            .collect();
        agents.sort_by_key(|a| a.id);
        let id = |row: u32| self.agents[row as usize].id;
        let mut tasks: Vec<TaskRow> = self
            .tasks
            .iter()
            .map(|(&task, live)| TaskRow {
                task,
                since: live.since,
                phase: match live.phase {
                    Phase::Queued => PhaseRow::Queued,
                    Phase::Blocked(holder) => PhaseRow::Blocked {
                        holder: holder.map(id),
                    },
                    Phase::Running(row) => PhaseRow::Running { agent: id(row) },
                },
                allocated: live.allocated.clone(),
            })
            .collect();
        tasks.sort_by_key(|t| t.task);
        let mut conflicts: Vec<ConflictRow> = self
            .conflicts
            .iter()
            .map(|(&conflict, &opened)| ConflictRow { conflict, opened })
            .collect();
        conflicts.sort_by_key(|c| c.conflict);
        MonitorSnapshot {
            version: MONITOR_SNAPSHOT_VERSION,
            window: self.config.window(),
            detect_every: self.config.detect_every(),
            now: self.now(),
            last_seq: self.seen_seq.then_some(self.last_seq),
            last_event: self.started.then_some(self.last_event),
            // The gauges are counted from the tasks and agents on restore.
            fleet: Fleet {
                queued: 0,
                blocked: 0,
                busy: 0,
                avail: 0,
                ..self.fleet.clone()
            },
            marks: self.marks,
            current: self.win.clone(),
            agents,
            tasks,
            conflicts,
            resources: self.dims.clone(),
            detectors: self.detectors.clone(),
            pending: self.pending.iter().cloned().collect(),
            pending_dropped: self.pending_dropped,
            windows: self.closed.iter().cloned().collect(),
        }
    }

    /// Carries on from `snapshot` under `config`, the configuration it was taken
    /// with: fed the same events after, it gives the same windows, anomalies and
    /// reports as the monitor the snapshot was taken of.
    ///
    /// The settings that only read the state may change: the thresholds, the limits
    /// (as long as the state is within them), replay skipping, and `keep_windows`
    /// (past it, the oldest kept windows are dropped).
    ///
    /// # Errors
    /// The configuration's [`MonitorConfig::validate`] error;
    /// [`MonitorError::SnapshotSetting`] if the snapshot was taken under another
    /// window, detection interval, sketch or detector settings, or per-agent
    /// detection; or [`MonitorError::CorruptSnapshot`] naming what is wrong:
    /// another version; a count past any stream's (2^60) or an integral past what
    /// the time elapsed allows; more agents, tasks, conflicts, resource kinds or
    /// anomalies than the limits; rows out of id order or twice; a time after the
    /// snapshot's `now`, or a window not aligned, not a window long, or not before the
    /// window in progress; a task on (or blocked behind) an agent the snapshot does
    /// not follow; a sketch whose count disagrees with its window's counts, or of
    /// other settings than the window's; a detection mark past the value it marks; a
    /// monitor that never started but holds state.
    ///
    /// # Complexity
    /// O(size of the snapshot), plus the sort checks.
    pub fn restore(
        config: MonitorConfig,
        snapshot: MonitorSnapshot,
    ) -> Result<Monitor, MonitorError> {
        let mut m = Monitor::new(config)?;
        let s = snapshot;
        if s.version != MONITOR_SNAPSHOT_VERSION {
            return Err(corrupt(format!(
                "version {} (expected {MONITOR_SNAPSHOT_VERSION})",
                s.version
            )));
        }
        check_settings(&m.config, &s)?;
        let Some(now) = s.now else {
            // Never started: nothing to carry on from, and nothing may be held.
            return if s == m.snapshot() {
                Ok(m)
            } else {
                Err(corrupt(
                    "it never started (no `now`) yet holds state".to_owned(),
                ))
            };
        };
        let (w, e) = (m.window_ns, m.every_ns);
        // Where the engine's clock stands at `now`: the window holding it, and the
        // end of the detection interval holding it (both aligned to the epoch, and
        // stuck at the end of time, where no interval can end).
        let start = align(now.as_nanos(), w);
        let window_start = Timestamp::from_nanos(start);
        check(&m.config, &s, now, window_start).map_err(corrupt)?;

        m.started = true;
        m.now = now;
        m.seen_seq = s.last_seq.is_some();
        m.last_seq = s.last_seq.unwrap_or(0);
        m.last_event = s.last_event.unwrap_or(now);
        m.window_start = window_start;
        m.window_end = Timestamp::from_nanos(start.saturating_add(w));
        m.next_interval = Timestamp::from_nanos(align(now.as_nanos(), e).saturating_add(e));
        m.agent_index = s
            .agents
            .iter()
            .enumerate()
            .map(|(row, a)| (a.id, row as u32))
            .collect();
        m.agents = s.agents;
        m.fleet = s.fleet;
        let row = |index: &FxHashMap<AgentId, u32>, id: AgentId| {
            index
                .get(&id)
                .copied()
                .ok_or_else(|| corrupt(format!("a task is on {id}, which is not followed")))
        };
        m.tasks.reserve(s.tasks.len());
        for t in s.tasks {
            let phase = match t.phase {
                PhaseRow::Queued => {
                    m.fleet.queued += 1;
                    Phase::Queued
                }
                PhaseRow::Blocked { holder } => {
                    let holder = holder.map(|id| row(&m.agent_index, id)).transpose()?;
                    m.fleet.blocked += 1;
                    if let Some(h) = holder {
                        let a = &mut m.agents[h as usize];
                        a.blocked = a.blocked.checked_add(1).ok_or_else(|| too_many(a.id))?;
                    }
                    Phase::Blocked(holder)
                }
                PhaseRow::Running { agent } => {
                    let i = row(&m.agent_index, agent)?;
                    m.fleet.busy += 1;
                    let a = &mut m.agents[i as usize];
                    a.busy = a.busy.checked_add(1).ok_or_else(|| too_many(a.id))?;
                    Phase::Running(i)
                }
            };
            m.tasks.insert(
                t.task,
                TaskLive {
                    since: t.since,
                    phase,
                    allocated: t.allocated,
                },
            );
        }
        m.fleet.avail = m.agents.iter().map(|a| u64::from(a.offered())).sum();
        check_gauges(&m).map_err(corrupt)?;
        m.conflicts = s
            .conflicts
            .into_iter()
            .map(|c| (c.conflict, c.opened))
            .collect();
        m.dims = s.resources;
        m.win = s.current;
        m.marks = s.marks;
        m.detectors = s.detectors;
        m.pending = s.pending.into();
        m.pending_dropped = s.pending_dropped;
        let mut closed: VecDeque<Window> = s.windows.into();
        // A smaller `keep_windows` keeps the newest, as the ring would have.
        while closed.len() > m.config.keep_windows() {
            closed.pop_front();
        }
        m.closed = closed;
        Ok(m)
    }
}

fn corrupt(reason: String) -> MonitorError {
    MonitorError::CorruptSnapshot { reason }
}

fn too_many(agent: AgentId) -> MonitorError {
    corrupt(format!("{agent} has 2^32 tasks or more on it"))
}

/// The settings that shape the state must be those the snapshot was taken under.
fn check_settings(config: &MonitorConfig, s: &MonitorSnapshot) -> Result<(), MonitorError> {
    let differ = |setting, snapshot: String, config: String| {
        Err(MonitorError::SnapshotSetting {
            setting,
            snapshot,
            config,
        })
    };
    if s.window != config.window() {
        return differ(
            "window",
            format!("{:?}", s.window),
            format!("{:?}", config.window()),
        );
    }
    if s.detect_every != config.detect_every() {
        return differ(
            "detect_every",
            format!("{:?}", s.detect_every),
            format!("{:?}", config.detect_every()),
        );
    }
    let sketch = s.current.durations.config();
    if sketch != config.sketch() {
        let show = |c: crate::monitor::SketchConfig| {
            format!(
                "relative accuracy {}, {} buckets",
                c.relative_accuracy(),
                c.max_buckets()
            )
        };
        return differ("sketch", show(sketch), show(config.sketch()));
    }
    if s.detectors.len() != FLEET_METRICS.len() {
        return Err(corrupt(format!(
            "{} fleet detectors (expected {})",
            s.detectors.len(),
            FLEET_METRICS.len()
        )));
    }
    let agent_detector = detector_for(config, Metric::Utilization);
    let detectors = s
        .detectors
        .iter()
        .zip(FLEET_METRICS.iter().map(|&m| detector_for(config, m)))
        .chain(
            s.agents
                .iter()
                .filter_map(|a| a.detector.as_deref())
                .map(|d| (d, agent_detector)),
        );
    for (d, expected) in detectors {
        if *d.config() != expected {
            return differ(
                "detector",
                format!("{:?}", d.config()),
                format!("{expected:?}"),
            );
        }
    }
    let watched = s.agents.iter().filter(|a| a.detector.is_some()).count();
    match (watched, config.detect_agents()) {
        (0, true) if !s.agents.is_empty() => differ("detect_agents", "false".into(), "true".into()),
        (n, false) if n > 0 => differ("detect_agents", "true".into(), "false".into()),
        (n, true) if n < s.agents.len() => Err(corrupt(format!(
            "{} of {} agents have no utilization detector",
            s.agents.len() - n,
            s.agents.len()
        ))),
        _ => Ok(()),
    }
}

/// Why `s` is not a state the monitor under `config` could have reached at `now`,
/// with the window in progress from `window_start`, if it is not. Everything the
/// engine subtracts, adds up or multiplies is checked here, so that a restored
/// monitor never overflows where the original would not have.
fn check(
    config: &MonitorConfig,
    s: &MonitorSnapshot,
    now: Timestamp,
    window_start: Timestamp,
) -> Result<(), String> {
    if let Some(t) = s.last_event {
        not_after("the latest event", t, now)?;
    }
    let f = &s.fleet;
    let elapsed = in_window("the fleet's integrals", f.last, window_start, now)?;
    let task_ns = f
        .queued_ns
        .checked_add(f.blocked_ns)
        .and_then(|n| n.checked_add(f.busy_ns));
    integral("the fleet's task-time", task_ns, elapsed)?;
    integral("the fleet's slot-time", Some(f.avail_ns), elapsed)?;
    at_most(
        "the fleet's busy slot-time",
        f.busy_ns,
        f.avail_ns,
        "its slot-time",
    )?;
    count("the fleet's peak queue", f.peak)?;

    let w = &s.current;
    let what = "the window in progress";
    task_counts(what, &w.tasks)?;
    ingest_counts(what, &w.ingest)?;
    for (name, v) in [
        ("waits", w.wait_n),
        ("resolutions", w.res_n),
        ("conflicts detected", w.detected),
        ("conflicts resolved", w.resolved),
        ("conflicts decided", w.decided),
        ("escalations", w.escalated),
    ] {
        count(format_args!("{what}: {name}"), v)?;
    }
    at_most(
        format_args!("{what}: conflicts decided by default"),
        w.decided_by_default,
        w.decided,
        "those decided",
    )?;
    for (name, sketch) in [
        ("durations", &w.durations),
        ("waits", &w.waits),
        ("resolution", &w.resolution),
    ] {
        same_sketch(format_args!("{what}: {name}"), sketch, &w.durations)?;
    }
    agree(
        format_args!("{what}: the wait sketch"),
        w.waits.count(),
        [("waits", w.wait_n), ("tasks that waited", w.tasks.waited)],
    )?;
    agree(
        format_args!("{what}: the resolution sketch"),
        w.resolution.count(),
        [
            ("resolutions", w.res_n),
            ("resolution summary", w.resolution_summary.count()),
        ],
    )?;
    integral(format_args!("{what}: the waits"), Some(w.wait_ns), w.wait_n)?;
    integral(
        format_args!("{what}: the resolutions"),
        Some(w.res_ns),
        w.res_n,
    )?;
    anomalies(what, &w.anomalies, config.max_anomalies(), now)?;

    let m = &s.marks;
    let what = "the detection marks";
    at_most(
        format_args!("{what}: succeeded"),
        m.succeeded,
        w.tasks.succeeded,
        "the window's",
    )?;
    at_most(
        format_args!("{what}: finished"),
        m.finished,
        w.tasks.finished(),
        "the window's",
    )?;
    at_most(
        format_args!("{what}: busy"),
        m.busy_ns,
        f.busy_ns,
        "the fleet's",
    )?;
    at_most(
        format_args!("{what}: slot-time"),
        m.avail_ns,
        f.avail_ns,
        "the fleet's",
    )?;
    at_most(
        format_args!("{what}: waiting"),
        m.waiting_ns,
        f.queued_ns + f.blocked_ns,
        "the fleet's",
    )?;
    at_most(
        format_args!("{what}: wait time"),
        m.wait_ns,
        w.wait_ns,
        "the window's",
    )?;
    at_most(
        format_args!("{what}: waits"),
        m.wait_n,
        w.wait_n,
        "the window's",
    )?;
    at_most(
        format_args!("{what}: resolution time"),
        m.res_ns,
        w.res_ns,
        "the window's",
    )?;
    at_most(
        format_args!("{what}: resolutions"),
        m.res_n,
        w.res_n,
        "the window's",
    )?;

    limit("agents", s.agents.len(), "max_agents", config.max_agents())?;
    ascending("agents", s.agents.iter().map(|a| a.id))?;
    let (mut durations, mut waited, mut waited_ns) = (0u64, 0u64, 0u128);
    for a in &s.agents {
        let who = a.id;
        let elapsed = in_window(format_args!("{who}'s integrals"), a.last, window_start, now)?;
        integral(
            format_args!("{who}'s busy slot-time"),
            Some(a.busy_ns),
            elapsed,
        )?;
        integral(format_args!("{who}'s slot-time"), Some(a.avail_ns), elapsed)?;
        at_most(
            format_args!("{who}'s busy slot-time"),
            a.busy_ns,
            a.avail_ns,
            "its slot-time",
        )?;
        at_most(
            format_args!("{who}'s busy mark"),
            a.mark_busy,
            a.busy_ns,
            "its busy slot-time",
        )?;
        at_most(
            format_args!("{who}'s slot-time mark"),
            a.mark_avail,
            a.avail_ns,
            "its slot-time",
        )?;
        for (name, v) in [
            ("started", a.started),
            ("waited", a.waited),
            ("succeeded", a.succeeded),
            ("failed", a.failed),
            ("lost", a.lost),
            ("released", a.released),
            ("durations", a.durations.count()),
        ] {
            count(format_args!("{who}: {name}"), v)?;
        }
        integral(format_args!("{who}'s waits"), Some(a.waited_ns), a.waited)?;
        if a.in_service && !a.alive {
            return Err(format!("{who} is in service but not registered"));
        }
        // Saturating: a corrupt row must not overflow the sums that expose it.
        durations = durations.saturating_add(a.durations.count());
        waited = waited.saturating_add(a.waited);
        waited_ns = waited_ns.saturating_add(a.waited_ns);
    }
    agree(
        format_args!("{what}: the duration sketch"),
        w.durations.count(),
        [("durations of its agents", durations)],
    )?;
    agree(
        format_args!("{what}: tasks that waited"),
        w.tasks.waited,
        [("those of its agents", waited)],
    )?;
    if waited_ns != w.wait_ns {
        return Err(format!(
            "{what}: the waits total {} ns, those of its agents {waited_ns} ns",
            w.wait_ns
        ));
    }

    limit(
        "tasks in flight",
        s.tasks.len(),
        "max_tasks_in_flight",
        config.max_tasks_in_flight(),
    )?;
    ascending("tasks", s.tasks.iter().map(|t| t.task))?;
    let followed = |id: AgentId| s.agents.binary_search_by_key(&id, |a| a.id).is_ok();
    for t in &s.tasks {
        not_after(format_args!("{} began", t.task), t.since, now)?;
        let on = match t.phase {
            PhaseRow::Running { agent } => Some(agent),
            PhaseRow::Blocked { holder } => holder,
            PhaseRow::Queued => None,
        };
        if let Some(agent) = on.filter(|&a| !followed(a)) {
            return Err(format!("{} is on {agent}, which is not followed", t.task));
        }
        if !matches!(t.phase, PhaseRow::Running { .. }) && !t.allocated.is_zero() {
            return Err(format!("{} waits but holds {}", t.task, t.allocated));
        }
    }

    limit(
        "open conflicts",
        s.conflicts.len(),
        "max_open_conflicts",
        config.max_open_conflicts(),
    )?;
    ascending("conflicts", s.conflicts.iter().map(|c| c.conflict))?;
    for c in &s.conflicts {
        not_after(format_args!("{} opened", c.conflict), c.opened, now)?;
    }

    resources(config, &s.resources, elapsed)?;

    limit(
        "pending anomalies",
        s.pending.len(),
        "max_anomalies",
        config.max_anomalies(),
    )?;
    anomalies(
        "the pending anomalies",
        &s.pending,
        config.max_anomalies(),
        now,
    )?;
    count("anomalies dropped", s.pending_dropped)?;

    let window_ns = u64::try_from(config.window().as_nanos()).unwrap_or(u64::MAX);
    let mut after = Timestamp::EPOCH;
    for (k, kept) in s.windows.iter().enumerate() {
        window(config, k, kept, window_ns, &w.durations)?;
        if kept.start < after {
            return Err(format!(
                "kept window {k} starts at {}, before the one before it ends",
                kept.start
            ));
        }
        after = kept.end;
    }
    if after > window_start {
        return Err(format!(
            "the last kept window ends at {after}, after the window in progress starts ({window_start})"
        ));
    }
    Ok(())
}

/// After the tasks are counted onto their agents: what follows from the counts.
fn check_gauges(m: &Monitor) -> Result<(), String> {
    let f = &m.fleet;
    if f.peak < f.queued + f.blocked {
        return Err(format!(
            "the fleet's peak queue {} is below the {} tasks waiting",
            f.peak,
            f.queued + f.blocked
        ));
    }
    for a in &m.agents {
        if a.blocked_peak < a.blocked {
            return Err(format!(
                "{}'s peak of blocked tasks {} is below the {} blocked behind it",
                a.id, a.blocked_peak, a.blocked
            ));
        }
        if (a.busy > 0 || a.blocked > 0) && !a.present {
            return Err(format!("{} has tasks but is not in the window", a.id));
        }
    }
    Ok(())
}

/// The resource rows: cpu, memory and storage first, then extended ones, each once.
fn resources(config: &MonitorConfig, dims: &[Dim], elapsed: u64) -> Result<(), String> {
    limit(
        "resource kinds",
        dims.len(),
        "max_resources",
        config.max_resources(),
    )?;
    let fixed = [
        ResourceName::Cpu,
        ResourceName::Memory,
        ResourceName::Storage,
    ];
    if dims.len() < fixed.len() || dims.iter().zip(&fixed).any(|(d, name)| d.name != *name) {
        return Err("the resources do not begin with cpu, memory and storage".to_owned());
    }
    for (k, d) in dims.iter().enumerate().skip(fixed.len()) {
        if !matches!(d.name, ResourceName::Extended(_))
            || dims[..k].iter().any(|o| o.name == d.name)
        {
            return Err(format!("resource {} appears twice", d.name));
        }
    }
    for d in dims {
        let name = &d.name;
        at_most(
            format_args!("{name}'s capacity"),
            d.capacity,
            u128::from(u64::MAX),
            "2^64",
        )?;
        at_most(
            format_args!("{name}'s allocation"),
            d.allocated,
            u128::from(u64::MAX),
            "2^64",
        )?;
        integral(
            format_args!("{name}'s capacity-time"),
            Some(d.cap_ns),
            elapsed,
        )?;
        integral(
            format_args!("{name}'s allocated time"),
            Some(d.alloc_ns),
            elapsed,
        )?;
        if !(d.peak_use.is_finite() && d.peak_use >= 0.0) {
            return Err(format!("{name}'s peak use is {}", d.peak_use));
        }
        count(format_args!("{name}'s usage reports"), d.reports)?;
        at_most(
            format_args!("{name}'s under-predictions"),
            d.under,
            d.reports,
            "its reports",
        )?;
        integral(
            format_args!("{name}'s allocations reported"),
            Some(d.done_alloc),
            d.reports,
        )?;
        integral(
            format_args!("{name}'s usage reported"),
            Some(d.done_used),
            d.reports,
        )?;
        at_most(
            format_args!("{name}'s usage within allocation"),
            d.done_within,
            d.done_alloc.min(d.done_used),
            "the smaller of its allocation and usage",
        )?;
        at_most(
            format_args!("{name}'s allocation mark"),
            d.mark_alloc,
            d.done_alloc,
            "its allocations",
        )?;
        at_most(
            format_args!("{name}'s usage mark"),
            d.mark_within,
            d.done_within,
            "its usage",
        )?;
    }
    Ok(())
}

/// Kept window `k`: one whole aligned window, its sketches of the window's settings
/// (`like`) and in agreement with its counts.
fn window(
    config: &MonitorConfig,
    k: usize,
    w: &Window,
    window_ns: u64,
    like: &QuantileSketch,
) -> Result<(), String> {
    let what = format!("kept window {k}");
    let start = w.start.as_nanos();
    if start % window_ns != 0 || start.checked_add(window_ns) != Some(w.end.as_nanos()) {
        return Err(format!(
            "{what} runs from {} to {}, not one aligned window of {:?}",
            w.start,
            w.end,
            config.window()
        ));
    }
    if w.in_progress {
        return Err(format!("{what} is marked in progress"));
    }
    task_counts(&what, &w.tasks)?;
    ingest_counts(&what, &w.ingest)?;
    let c = &w.conflicts;
    for (name, v) in [
        ("queue peak", w.queue.peak),
        ("queue", w.queue.current),
        ("conflicts detected", c.detected),
        ("conflicts resolved", c.resolved),
        ("conflicts decided", c.decided),
        ("conflicts decided by default", c.decided_by_default),
        ("escalations", c.escalated),
        ("open conflicts", c.open),
    ] {
        count(format_args!("{what}: {name}"), v)?;
    }
    for (name, sketch) in [
        ("durations", &w.durations),
        ("waits", &w.queue.waits),
        ("resolution", &c.resolution),
    ] {
        same_sketch(format_args!("{what}: {name}"), sketch, like)?;
    }
    limit(
        format_args!("{what}: agents"),
        w.agents.len(),
        "max_agents",
        config.max_agents(),
    )?;
    ascending(
        format_args!("{what}: agents"),
        w.agents.iter().map(|a| a.agent),
    )?;
    let mut durations = 0u64;
    for a in &w.agents {
        for (name, v) in [
            ("started", a.started),
            ("waited", a.waited),
            ("succeeded", a.succeeded),
            ("failed", a.failed),
            ("lost", a.lost),
            ("released", a.released),
            ("blocked peak", a.blocked_peak),
            ("durations", a.durations.count()),
        ] {
            count(format_args!("{what}: {}: {name}", a.agent), v)?;
        }
        durations = durations.saturating_add(a.durations.count());
    }
    limit(
        format_args!("{what}: resources"),
        w.resources.len(),
        "max_resources",
        config.max_resources(),
    )?;
    ascending(
        format_args!("{what}: resources"),
        w.resources.iter().map(|r| &r.resource),
    )?;
    for r in &w.resources {
        count(format_args!("{what}: {}: reports", r.resource), r.reports)?;
        count(
            format_args!("{what}: {}: under-predictions", r.resource),
            r.under_predicted,
        )?;
    }
    agree(
        format_args!("{what}: the duration sketch"),
        w.durations.count(),
        [("durations of its agents", durations)],
    )?;
    agree(
        format_args!("{what}: the wait sketch"),
        w.queue.waits.count(),
        [("tasks that waited", w.tasks.waited)],
    )?;
    agree(
        format_args!("{what}: the resolution sketch"),
        c.resolution.count(),
        [("resolution summary", c.resolution_summary.count())],
    )?;
    anomalies(&what, &w.anomalies, config.max_anomalies(), w.end)
}

fn task_counts(what: &str, t: &TaskCounts) -> Result<(), String> {
    for (name, v) in [
        ("assigned", t.assigned),
        ("waited", t.waited),
        ("queued", t.queued),
        ("blocked", t.blocked),
        ("succeeded", t.succeeded),
        ("failed", t.failed),
        ("lost", t.lost),
        ("requeued", t.requeued),
        ("released", t.released),
        ("rejected", t.rejected),
        ("denied", t.denied),
        ("cancelled", t.cancelled),
        ("policy refusals", t.policy_refusals),
    ] {
        count(format_args!("{what}: tasks {name}"), v)?;
    }
    Ok(())
}

fn ingest_counts(what: &str, i: &IngestStats) -> Result<(), String> {
    for (name, v) in [
        ("events", i.events),
        ("duplicates", i.duplicates),
        ("late events", i.late),
        ("untracked tasks", i.untracked_tasks),
        ("unknown tasks", i.unknown_tasks),
        ("untracked conflicts", i.untracked_conflicts),
        ("untracked agents", i.untracked_agents),
        ("untracked resources", i.untracked_resources),
        ("dropped anomalies", i.dropped_anomalies),
        ("skipped windows", i.skipped_windows),
    ] {
        count(format_args!("{what}: {name}"), v)?;
    }
    Ok(())
}

/// At most `max`, each at or before `now`, in time order.
fn anomalies(what: &str, list: &[Anomaly], max: usize, now: Timestamp) -> Result<(), String> {
    limit(
        format_args!("{what}: anomalies"),
        list.len(),
        "max_anomalies",
        max,
    )?;
    let mut last = Timestamp::EPOCH;
    for a in list {
        not_after(format_args!("{what}: an anomaly"), a.at, now)?;
        if a.at < last {
            return Err(format!(
                "{what}: the anomalies are not in time order ({} after {last})",
                a.at
            ));
        }
        last = a.at;
    }
    Ok(())
}

fn same_sketch(
    what: impl Display,
    sketch: &QuantileSketch,
    like: &QuantileSketch,
) -> Result<(), String> {
    if sketch.check_mergeable(like).is_err() {
        let c = sketch.config();
        return Err(format!(
            "{what}: a sketch of relative accuracy {} and {} buckets, unlike the others",
            c.relative_accuracy(),
            c.max_buckets()
        ));
    }
    count(format_args!("{what}: values"), sketch.count())
}

/// `v` is below [`COUNT_LIMIT`].
fn count(what: impl Display, v: u64) -> Result<(), String> {
    if v >= COUNT_LIMIT {
        return Err(format!("{what} {v} is past what any stream counts (2^60)"));
    }
    Ok(())
}

/// A sum of `n` amounts of at most 2^64 each (a gauge times each nanosecond
/// elapsed, a wait per task): what the engine adds to it afterwards stays in range.
fn integral(what: impl Display, v: Option<u128>, n: u64) -> Result<(), String> {
    let bound = u128::from(u64::MAX) * u128::from(n);
    match v {
        Some(v) if v <= bound => Ok(()),
        Some(v) => Err(format!(
            "{what} {v} is more than 2^64 a unit over {n} units"
        )),
        None => Err(format!("{what} is past 2^128")),
    }
}

fn at_most<T: PartialOrd + Display>(
    what: impl Display,
    v: T,
    bound: T,
    of: &str,
) -> Result<(), String> {
    if v > bound {
        return Err(format!("{what} {v} is more than {of} ({bound})"));
    }
    Ok(())
}

/// `count` is what each of `others` says it is.
fn agree<const N: usize>(
    what: impl Display,
    count: u64,
    others: [(&str, u64); N],
) -> Result<(), String> {
    match others.iter().find(|(_, v)| *v != count) {
        Some((name, v)) => Err(format!("{what} counts {count}, the {name} {v}")),
        None => Ok(()),
    }
}

fn limit(what: impl Display, n: usize, setting: &str, max: usize) -> Result<(), String> {
    if n > max {
        return Err(format!("{n} {what}, more than `{setting}` ({max})"));
    }
    Ok(())
}

/// Strictly ascending: in id order, none twice.
fn ascending<T: PartialOrd + Display>(
    what: impl Display,
    items: impl IntoIterator<Item = T>,
) -> Result<(), String> {
    let mut last: Option<T> = None;
    for item in items {
        if let Some(prev) = &last {
            if item <= *prev {
                return Err(format!(
                    "{what} are out of order or twice: {item} after {prev}"
                ));
            }
        }
        last = Some(item);
    }
    Ok(())
}

fn not_after(what: impl Display, t: Timestamp, now: Timestamp) -> Result<(), String> {
    if t > now {
        return Err(format!("{what} at {t}, after the snapshot's now ({now})"));
    }
    Ok(())
}

/// `t` is in the window in progress, at or before `now`: returns the nanoseconds
/// from the window's start.
fn in_window(
    what: impl Display,
    t: Timestamp,
    window_start: Timestamp,
    now: Timestamp,
) -> Result<u64, String> {
    not_after(&what, t, now)?;
    if t < window_start {
        return Err(format!(
            "{what} are accrued to {t}, before the window in progress starts ({window_start})"
        ));
    }
    Ok(t.as_nanos() - window_start.as_nanos())
}
