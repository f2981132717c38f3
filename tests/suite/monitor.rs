//! Performance monitoring through the public API: a real coordinator's events into a
//! `Monitor`, windows that merge into the whole stream, anomaly detection measured
//! for precision and recall on seeded series, and the reports.

use std::time::Duration;

use concord::coordinator::{Coordinator, EventKind};
use concord::monitor::{
    Action, AnomalyDetector, AnomalyKind, Bottleneck, DetectorConfig, Finding,
    MONITOR_SNAPSHOT_VERSION, Metric, Monitor, MonitorConfig, MonitorError, MonitorSnapshot,
    QuantileSketch, SketchConfig, Subject, Thresholds, Window,
};
use concord::resource::StaticPredictor;
use concord::task::Requirements;
use concord::{
    AgentId, AgentProfile, AgentStatus, Capability, Claim, Clock, ManualClock, ResourceName,
    Resources, Task, TaskId, Timestamp,
};
use proptest::prelude::*;

use crate::counting_alloc;
use crate::rng;
use rng::Rng;

const HOUR: u64 = 3600;

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

fn coordinator(start: Timestamp) -> (Coordinator, ManualClock) {
    let clock = ManualClock::new(start);
    let c = Coordinator::builder()
        .clock(clock.clone())
        .predictor(StaticPredictor::new())
        .build();
    (c, clock)
}

fn task(id: u64, cap: &str, resources: &str) -> Task {
    Task::new(TaskId::new(id), "work", "do the work").with_requirements(
        Requirements::new()
            .with_capability(Capability::new(cap).unwrap())
            .with_resources(res(resources)),
    )
}

fn agent(id: u64, cap: &str, slots: u32, capacity: &str) -> AgentProfile {
    AgentProfile::new(AgentId::new(id), format!("agent-{id}"))
        .with_capability(Capability::new(cap).unwrap())
        .with_max_tasks(slots)
        .with_capacity(res(capacity))
}

fn hourly() -> MonitorConfig {
    MonitorConfig::default()
        .with_window(Duration::from_secs(HOUR))
        .with_detect_every(Duration::from_secs(HOUR))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn the_completion_event_carries_the_usage_and_efficiency_is_measured_against_the_prediction() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "build", 4, "cpu=8,memory=16Gi"))
        .unwrap();
    c.assign(task(1, "build", "cpu=2,memory=4Gi")).unwrap();
    c.assign(task(2, "build", "cpu=2,memory=4Gi")).unwrap();
    clock.advance(Duration::from_secs(600));
    // Used half the cpu and all the memory; the other used more cpu than predicted.
    c.complete(TaskId::new(1), true, Some(res("cpu=1,memory=4Gi")))
        .unwrap();
    c.complete(TaskId::new(2), true, Some(res("cpu=3,memory=2Gi")))
        .unwrap();
    let events = c.drain_events();
    let usage = events.iter().find_map(|e| match &e.kind {
        EventKind::TaskCompleted { usage, .. } => usage.clone(),
        _ => None,
    });
    assert_eq!(usage, Some(res("cpu=1,memory=4Gi")));

    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&events);
    let w = m.current_window().unwrap();
    let cpu = w.resource(&ResourceName::Cpu).unwrap();
    assert_eq!(cpu.efficiency(), Some(3.0 / 4.0)); // min(1,2) + min(3,2) of 4
    assert_eq!(cpu.prediction_ratio(), Some(1.0)); // 4 used of 4 predicted
    assert_eq!(cpu.under_predicted, 1);
    let memory = w.resource(&ResourceName::Memory).unwrap();
    assert_eq!(memory.efficiency(), Some(6.0 / 8.0));
    assert_eq!(w.resource_efficiency(), Some(0.75));
    // Half the cpu held for ten minutes.
    assert_eq!(cpu.mean_use(), Some(0.5));
    assert_eq!(cpu.peak_use, 0.5);

    let report = m.report(&w);
    let low: Vec<String> = report
        .performance
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::LowResourceEfficiency { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        low,
        ["cpu efficiency 75% < 85%", "memory efficiency 75% < 85%"]
    );
    let actions: Vec<Action> = report
        .performance
        .recommendations
        .iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            Action::AnalyzeAllocationPatterns,
            Action::ImprovePrediction,
            Action::OptimizeSharing
        ]
    );
}

#[test]
fn an_overloaded_agent_is_a_bottleneck_with_recommendations() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    // One agent can render; it has one slot and its work keeps coming.
    c.register_agent(agent(3, "render", 1, "cpu=2")).unwrap();
    c.register_agent(agent(4, "build", 4, "cpu=8")).unwrap();
    let mut next = 0;
    for minute in 0..(24 * 60) {
        // A render task every 4 minutes, each 5 minutes long: the queue grows.
        if minute % 4 == 0 {
            next += 1;
            c.assign(task(next, "render", "cpu=1")).unwrap();
        }
        if minute % 30 == 0 {
            next += 1;
            c.assign(task(next, "build", "cpu=1")).unwrap();
        }
        clock.advance(Duration::from_secs(60));
        let running: Vec<(TaskId, Timestamp)> = c
            .assignments()
            .iter()
            .map(|a| (a.task.id(), a.assigned_at))
            .collect();
        for (t, since) in running {
            if clock.now().duration_since(since) >= Duration::from_secs(300) {
                c.complete(t, true, Some(res("cpu=1"))).unwrap();
            }
        }
    }
    let mut m = Monitor::new(MonitorConfig::default()).unwrap();
    m.ingest_all(&c.drain_events());
    m.advance(Timestamp::from_secs(24 * HOUR));
    let report = m.daily_report().expect("a day closed");
    let perf = &report.performance;
    let a3 = report
        .summary
        .agents
        .iter()
        .find(|a| a.agent == AgentId::new(3))
        .unwrap();
    assert!(a3.utilization.unwrap() > 0.99, "{a3:?}");
    assert!(a3.queue_length > 10.0, "{a3:?}");
    assert!(matches!(
        perf.bottlenecks.first(),
        Some(Bottleneck::AgentQueue { agent, .. }) if *agent == AgentId::new(3)
    ));
    assert!(perf.findings.iter().any(|f| matches!(f,
        Finding::HighUtilization { subject: Subject::Agent(a), .. } if *a == AgentId::new(3))));
    let actions: Vec<Action> = perf.recommendations.iter().map(|r| r.action).collect();
    for a in [
        Action::ScaleUp,
        Action::ImplementQueueing,
        Action::ImproveLoadBalancing,
    ] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    // The busiest agent heads the table. Its tasks waited for capacity, which is no
    // coordination overhead: the recommendations are about scale, not about how the
    // coordinator works.
    assert_eq!(perf.agent_performance[0].agent, AgentId::new(3));
    let o = &perf.coordination_overhead;
    assert!(o.queued_secs > 0.0, "{o:?}");
    assert_eq!((o.overhead, o.blocked_secs), (Some(0.0), 0.0), "{o:?}");
    for a in [
        Action::ReviewCoordinationAlgorithms,
        Action::OptimizeCommunication,
        Action::ConsiderCaching,
    ] {
        assert!(!actions.contains(&a), "{actions:?}");
    }
    let md = report.to_markdown();
    for needle in [
        "# Daily performance report",
        "## Key metrics",
        "## Bottlenecks",
        "- agent#3 queue",
        "## Recommendations",
        "**Scale up agent instances if possible**: agent#3 utilization",
    ] {
        assert!(md.contains(needle), "{needle:?} not in\n{md}");
    }
    let json = serde_json::to_string(&report).unwrap();
    let back: concord::monitor::DailyReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.performance.findings, perf.findings);
}

/// An edit of one file: tasks of it collide on their exclusive claim.
fn edit(id: u64) -> Task {
    Task::new(TaskId::new(id), "edit", "edit the file").with_requirements(
        Requirements::new()
            .with_capability(Capability::new("edit").unwrap())
            .with_claim(Claim::exclusive("file:src/lib.rs")),
    )
}

#[test]
fn blocked_tasks_and_conflicts_are_timed_from_the_events() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "edit", 2, "cpu=4")).unwrap();
    c.assign(edit(1)).unwrap();
    clock.advance(Duration::from_secs(60));
    // Collides with the first: waits behind it while the conflict is open.
    c.assign(edit(2)).unwrap();
    clock.advance(Duration::from_secs(240));
    c.complete(TaskId::new(1), true, None).unwrap();
    clock.advance(Duration::from_secs(300));
    c.complete(TaskId::new(2), true, None).unwrap();
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&c.drain_events());
    let w = m.current_window().unwrap();
    assert_eq!((w.conflicts.detected, w.conflicts.resolved), (1, 1));
    assert_eq!(w.conflicts.resolution.max(), Some(240.0));
    assert_eq!(w.tasks.blocked, 1);
    assert_eq!(w.queue.blocked_secs, 240.0);
    let a = w.agent(AgentId::new(1)).unwrap();
    assert_eq!(a.blocked_peak, 1);
    // 240 s blocked against 300 + 300 s working.
    assert!(close(w.coordination_overhead().unwrap(), 240.0 / 840.0));
    // Past 5%: the report recommends looking at how the work is coordinated.
    let report = m.report(&w);
    let actions: Vec<Action> = (report.performance.recommendations.iter())
        .map(|r| r.action)
        .collect();
    for a in [
        Action::ReviewCoordinationAlgorithms,
        Action::OptimizeCommunication,
        Action::ConsiderCaching,
    ] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    let md = report.to_markdown();
    assert!(
        md.contains("28.6% of the tasks' time outside the queue went to coordination"),
        "{md}"
    );
}

#[test]
fn windows_of_different_sketch_settings_do_not_merge_and_the_crate_error_wraps_it() {
    let mut a = Monitor::new(hourly()).unwrap();
    let coarse = hourly().with_sketch(SketchConfig::default().with_relative_accuracy(0.05));
    let mut b = Monitor::new(coarse).unwrap();
    a.advance(Timestamp::from_secs(10));
    b.advance(Timestamp::from_secs(10));
    let mut wa = a.current_window().unwrap();
    let before = wa.clone();
    let err = wa.merge(&b.current_window().unwrap()).unwrap_err();
    assert!(matches!(err, MonitorError::SketchMismatch { .. }));
    assert_eq!(wa, before);
    let crate_err: concord::Error = err.into();
    assert!(crate_err.to_string().contains("cannot merge"));
    let bad = Thresholds::default().with_utilization_high(2.0);
    assert!(concord::monitor::DailyReport::new(&wa, &bad, Vec::new()).is_err());
}

#[test]
fn capacity_trends_project_growth_over_the_kept_windows() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "build", 10, "cpu=10")).unwrap();
    let mut next = 0;
    // Each day one more task runs all day long: utilization 10%, 20%, ...
    for day in 0..5u64 {
        next += 1;
        c.assign(task(next, "build", "cpu=1")).unwrap();
        clock.advance(Duration::from_secs(24 * HOUR));
        let _ = day;
    }
    let mut m = Monitor::new(MonitorConfig::default()).unwrap();
    m.ingest_all(&c.drain_events());
    m.advance(clock.now());
    let trends = m.capacity_trends(7);
    let util = trends
        .iter()
        .find(|t| t.series == concord::monitor::TrendSeries::Utilization)
        .unwrap();
    assert_eq!(util.points, 5);
    assert!(close(util.slope_per_window, 0.1), "{util:?}");
    assert!(close(util.projected, 1.2));
    // 50% now; 95% is 4.5 days on.
    assert!(close(util.windows_to_limit.unwrap(), 4.5));
    let cpu = trends
        .iter()
        .find(|t| {
            t.series
                == concord::monitor::TrendSeries::ResourceUse {
                    resource: ResourceName::Cpu,
                }
        })
        .unwrap();
    assert!(close(cpu.slope_per_window, 0.1));
    assert!(
        m.daily_report()
            .unwrap()
            .to_markdown()
            .contains("- slot utilization 50% (+10.00 points a window")
    );
}

// ----- merging windows equals aggregating the whole stream ----------------------------

#[derive(Debug, Clone)]
enum Op {
    Assign { cap: u8, claim: bool, big: bool },
    Complete { pick: usize, ok: bool, usage: u8 },
    Advance { secs: u32 },
    Status { agent: u8, up: bool },
    Capacity { agent: u8, cpu: u8 },
    Cancel { pick: usize },
    Tick,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, any::<bool>(), any::<bool>())
            .prop_map(|(cap, claim, big)| Op::Assign { cap, claim, big }),
        3 => (any::<usize>(), any::<bool>(), 0u8..3)
            .prop_map(|(pick, ok, usage)| Op::Complete { pick, ok, usage }),
        4 => (0u32..3 * 3600).prop_map(|secs| Op::Advance { secs }),
        1 => (0u8..3, any::<bool>()).prop_map(|(agent, up)| Op::Status { agent, up }),
        1 => (0u8..3, 1u8..8).prop_map(|(agent, cpu)| Op::Capacity { agent, cpu }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => Just(Op::Tick),
    ]
}

/// Runs `ops` on a coordinator of three agents from the epoch; returns its events and
/// the end time.
fn run(ops: &[Op]) -> (Vec<concord::coordinator::Event>, Timestamp) {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(0, "a", 2, "cpu=4,memory=4Gi"))
        .unwrap();
    c.register_agent(agent(1, "a", 1, "cpu=2,memory=2Gi"))
        .unwrap();
    c.register_agent(agent(2, "b", 3, "cpu=4,memory=8Gi,gpu=2"))
        .unwrap();
    let mut next = 0;
    let mut submitted = Vec::new();
    for op in ops {
        match *op {
            Op::Assign { cap, claim, big } => {
                next += 1;
                let needs = if big {
                    "cpu=2,memory=2Gi,gpu=1"
                } else {
                    "cpu=1,memory=1Gi"
                };
                let cap = if cap == 0 { "a" } else { "b" };
                let mut req = Requirements::new()
                    .with_capability(Capability::new(cap).unwrap())
                    .with_resources(res(needs));
                if claim {
                    req = req.with_claim(Claim::exclusive("file:shared"));
                }
                let t = Task::new(TaskId::new(next), "work", "work").with_requirements(req);
                let _ = c.assign(t);
                submitted.push(TaskId::new(next));
            }
            Op::Complete { pick, ok, usage } => {
                let running = c.assignments();
                if !running.is_empty() {
                    let a = &running[pick % running.len()];
                    let used = ["cpu=500m,memory=1Gi", "cpu=3", ""][usize::from(usage)];
                    let used = (!used.is_empty()).then(|| res(used));
                    let _ = c.complete(a.task.id(), ok, used);
                }
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(u64::from(secs))),
            Op::Status { agent, up } => {
                let status = if up {
                    AgentStatus::Available
                } else {
                    AgentStatus::Offline
                };
                let _ = c.set_agent_status(AgentId::new(u64::from(agent)), status);
            }
            Op::Capacity { agent, cpu } => {
                let _ = c.set_agent_capacity(
                    AgentId::new(u64::from(agent)),
                    res(&format!("cpu={cpu},memory=4Gi,gpu=1")),
                );
            }
            Op::Cancel { pick } => {
                if !submitted.is_empty() {
                    let _ = c.cancel(submitted[pick % submitted.len()]);
                }
            }
            Op::Tick => {
                let _ = c.tick();
            }
        }
    }
    (c.drain_events(), clock.now())
}

fn assert_sketches_agree(
    a: &concord::monitor::QuantileSketch,
    b: &concord::monitor::QuantileSketch,
) {
    assert_eq!(a.count(), b.count());
    assert_eq!((a.min(), a.max()), (b.min(), b.max()));
    for q in [0.1, 0.5, 0.9, 0.99] {
        assert_eq!(a.quantile(q), b.quantile(q));
    }
    assert!(close(a.sum(), b.sum()));
}

/// `merged` (windows merged) and `whole` (one window over the stream) agree: counts,
/// peaks, gauges and sketch buckets exactly, float sums to rounding.
fn assert_same(merged: &Window, whole: &Window) {
    assert_eq!((merged.start, merged.end), (whole.start, whole.end));
    assert_eq!(merged.tasks, whole.tasks);
    assert_sketches_agree(&merged.durations, &whole.durations);
    let (q, wq) = (&merged.queue, &whole.queue);
    assert_eq!((q.current, q.peak), (wq.current, wq.peak));
    assert!(close(q.queued_secs, wq.queued_secs));
    assert!(close(q.blocked_secs, wq.blocked_secs));
    assert_sketches_agree(&q.waits, &wq.waits);
    let (c, wc) = (&merged.conflicts, &whole.conflicts);
    assert_eq!(
        (
            c.detected,
            c.resolved,
            c.decided,
            c.decided_by_default,
            c.escalated,
            c.open
        ),
        (
            wc.detected,
            wc.resolved,
            wc.decided,
            wc.decided_by_default,
            wc.escalated,
            wc.open
        )
    );
    assert_sketches_agree(&c.resolution, &wc.resolution);
    assert_eq!(merged.resources.len(), whole.resources.len());
    for (r, w) in merged.resources.iter().zip(&whole.resources) {
        assert_eq!(r.resource, w.resource);
        assert!(close(r.capacity_secs, w.capacity_secs), "{r:?} {w:?}");
        assert!(close(r.allocated_secs, w.allocated_secs), "{r:?} {w:?}");
        assert_eq!(r.peak_use, w.peak_use);
        assert_eq!(
            (r.allocated, r.used, r.used_within),
            (w.allocated, w.used, w.used_within)
        );
        assert_eq!(
            (r.under_predicted, r.reports),
            (w.under_predicted, w.reports)
        );
    }
    let ids = |w: &Window| w.agents.iter().map(|a| a.agent).collect::<Vec<_>>();
    assert_eq!(ids(merged), ids(whole));
    for (a, w) in merged.agents.iter().zip(&whole.agents) {
        assert!(close(a.busy_secs, w.busy_secs), "{a:?} {w:?}");
        assert!(close(a.available_secs, w.available_secs), "{a:?} {w:?}");
        assert!(close(a.waited_secs, w.waited_secs));
        assert_eq!(
            (
                a.started,
                a.waited,
                a.succeeded,
                a.failed,
                a.lost,
                a.released,
                a.blocked_peak
            ),
            (
                w.started,
                w.waited,
                w.succeeded,
                w.failed,
                w.lost,
                w.released,
                w.blocked_peak
            )
        );
        assert_eq!(a.durations.count(), w.durations.count());
        assert_eq!(
            (a.durations.min(), a.durations.max()),
            (w.durations.min(), w.durations.max())
        );
    }
    assert_eq!(merged.anomalies, whole.anomalies);
    assert_eq!(merged.ingest, whole.ingest);
    // And what is computed from them.
    for (x, y) in [
        (merged.utilization(), whole.utilization()),
        (
            merged.coordination_overhead(),
            whole.coordination_overhead(),
        ),
        (merged.resource_efficiency(), whole.resource_efficiency()),
    ] {
        assert_eq!(x.is_some(), y.is_some());
        if let (Some(x), Some(y)) = (x, y) {
            assert!(close(x, y), "{x} vs {y}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_windows.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// The hourly windows of a stream, merged, are the one window of the whole stream:
    /// every task that spans a boundary is split exactly, every gauge carries over.
    #[test]
    fn merged_windows_equal_the_whole_stream(ops in proptest::collection::vec(arb_op(), 1..150)) {
        let (events, end) = run(&ops);
        let detector = DetectorConfig::default().with_warm_up(3);
        let mut hourly = Monitor::new(
            hourly().with_keep_windows(10_000).with_detector(detector),
        ).unwrap();
        // One window of 4096 hours holds the whole stream.
        let mut whole = Monitor::new(
            MonitorConfig::default()
                .with_window(Duration::from_secs(4096 * HOUR))
                .with_detect_every(Duration::from_secs(HOUR))
                .with_detector(detector),
        ).unwrap();
        hourly.ingest_all(&events);
        whole.ingest_all(&events);
        hourly.advance(end);
        whole.advance(end);
        let mut merged = hourly.current_window().unwrap();
        for w in hourly.windows() {
            merged.merge(w).unwrap();
        }
        assert_same(&merged, &whole.current_window().unwrap());
    }
}

/// Guards the regression in `proptest-regressions/monitor_windows.txt`: tasks that
/// begin to wait exactly at a window boundary. The window that closes there ends at
/// the same instant as the window in progress, which has just begun and holds those
/// tasks; merging must keep the gauges of the window in progress (the queue and the
/// open conflicts of now), in either order, not the closed window's from just before.
#[test]
fn merging_at_a_window_boundary_keeps_the_queue_and_open_conflicts_of_now() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "edit", 2, "cpu=4")).unwrap();
    clock.advance(Duration::from_secs(HOUR));
    // At the boundary: one runs, the other waits behind its claim.
    c.assign(edit(1)).unwrap();
    c.assign(edit(2)).unwrap();
    let events = c.drain_events();
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&events);
    let now = m.current_window().unwrap();
    let closed = m.last_window().unwrap().clone();
    assert_eq!(now.span(), Duration::ZERO);
    assert_eq!(closed.end, now.end);
    assert!(now.in_progress && !closed.in_progress);
    assert_eq!((now.queue.current, now.queue.peak), (1, 1));
    assert_eq!(now.conflicts.open, 1);
    assert_eq!(m.queue_length(), 1);

    let mut forward = closed.clone();
    forward.merge(&now).unwrap();
    let mut backward = now.clone();
    backward.merge(&closed).unwrap();
    for merged in [&forward, &backward] {
        assert_eq!((merged.start, merged.end), (closed.start, now.end));
        assert_eq!((merged.queue.current, merged.queue.peak), (1, 1));
        assert_eq!(merged.conflicts.open, 1);
        assert!(merged.in_progress);
    }
    let mut whole = Monitor::new(hourly().with_window(Duration::from_secs(4 * HOUR))).unwrap();
    whole.ingest_all(&events);
    assert_same(&forward, &whole.current_window().unwrap());
}

// ----- anomaly detection: precision and recall on seeded series -------------------------

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = |rng: &mut Rng| ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (u1, u2) = (u(rng), u(rng));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// What a seeded series holds: its values, the spikes (index) and the level shift
/// (index), all known.
struct Series {
    values: Vec<f64>,
    spikes: Vec<usize>,
    shift: Option<usize>,
}

const LEN: usize = 400;

fn series(rng: &mut Rng) -> Series {
    let level = 10.0 + rng.below(990) as f64;
    let sigma = level * (0.01 + rng.below(300) as f64 / 10_000.0); // 1% to 4%
    // A slow drift in half the series: up to a fifth of sigma a step.
    let drift = if rng.chance(50) {
        sigma * (rng.below(200) as f64 / 1000.0) * if rng.chance(50) { 1.0 } else { -0.3 }
    } else {
        0.0
    };
    let size = |rng: &mut Rng| {
        let sign = if rng.chance(50) { 1.0 } else { -1.0 };
        sign * (sigma * (6.0 + rng.below(60) as f64 / 10.0)).max(0.15 * level)
    };
    let shift = rng.chance(50).then(|| 100 + rng.below(250) as usize);
    let shift_by = size(rng);
    let mut spikes = Vec::new();
    while spikes.len() < 3 {
        let at = 40 + rng.below(LEN as u64 - 45) as usize;
        let clear = |p: usize| p.abs_diff(at) >= 25;
        if spikes.iter().all(|&s| clear(s)) && shift.is_none_or(clear) {
            spikes.push(at);
        }
    }
    let values = (0..LEN)
        .map(|t| {
            let mut v = level + drift * t as f64 + sigma * normal(rng);
            if shift.is_some_and(|s| t >= s) {
                v += shift_by;
            }
            if spikes.contains(&t) {
                v += size(rng);
            }
            v
        })
        .collect();
    Series {
        values,
        spikes,
        shift,
    }
}

#[test]
fn anomaly_detection_catches_spikes_and_level_shifts_with_high_precision_and_recall() {
    let mut rng = Rng::new(0x5eed_cafe);
    let config = DetectorConfig::default();
    let window = config.shift_after() as usize + 2;
    let (mut reported, mut true_reports, mut events, mut caught) = (0, 0, 0, 0);
    for _ in 0..400 {
        let s = series(&mut rng);
        let mut d = AnomalyDetector::new(config).unwrap();
        let found: Vec<(usize, AnomalyKind)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(t, &v)| d.observe(v).map(|a| (t, a.kind)))
            .collect();
        let in_shift = |t: usize| s.shift.is_some_and(|p| (p..p + window).contains(&t));
        reported += found.len();
        true_reports += found
            .iter()
            .filter(|(t, _)| s.spikes.contains(t) || in_shift(*t))
            .count();
        for &spike in &s.spikes {
            events += 1;
            caught += usize::from(found.contains(&(spike, AnomalyKind::Spike)));
        }
        if s.shift.is_some() {
            events += 1;
            caught += usize::from(
                found
                    .iter()
                    .any(|&(t, k)| k == AnomalyKind::LevelShift && in_shift(t)),
            );
        }
    }
    let precision = true_reports as f64 / reported as f64;
    let recall = caught as f64 / events as f64;
    println!(
        "anomaly detection: precision {precision:.4} ({true_reports} of {reported} reports), \
         recall {recall:.4} ({caught} of {events} spikes and level shifts)"
    );
    assert!(precision >= 0.9, "precision {precision}");
    assert!(recall >= 0.9, "recall {recall}");
}

#[test]
fn constant_and_slowly_drifting_series_raise_no_alarm() {
    let mut rng = Rng::new(42);
    // No floor at all: only the baseline's own exactness keeps a constant quiet.
    let strict = DetectorConfig::default()
        .with_min_relative_deviation(0.0)
        .with_min_deviation(0.0);
    let alarms = |config: DetectorConfig, values: &mut dyn Iterator<Item = f64>| {
        let mut d = AnomalyDetector::new(config).unwrap();
        values.filter(|&v| d.observe(v).is_some()).count()
    };
    let (mut noisy_points, mut noisy_alarms) = (0, 0);
    for k in 0..200 {
        let level = 1.0 + rng.below(1000) as f64 / 7.0;
        assert_eq!(alarms(strict, &mut std::iter::repeat_n(level, 500)), 0);
        // A ramp that doubles or halves the level over the series.
        let sign = if k % 2 == 0 { 1.0 } else { -0.5 };
        let slope = sign * level / 500.0 * (rng.below(100) as f64 / 100.0);
        let mut ramp = (0..500).map(|t| level + slope * t as f64);
        assert_eq!(
            alarms(DetectorConfig::default(), &mut ramp),
            0,
            "ramp {level} {slope}"
        );
        // With noise, a drift of a tenth of sigma a step.
        let sigma = level * 0.02;
        let mut noisy = (0..500).map(|t| level + 0.1 * sigma * t as f64 + sigma * normal(&mut rng));
        noisy_alarms += alarms(DetectorConfig::default(), &mut noisy);
        noisy_points += 500;
    }
    let rate = noisy_alarms as f64 / noisy_points as f64;
    println!("noisy drifting series: {noisy_alarms} false alarms in {noisy_points} points");
    assert!(rate < 0.001, "false alarm rate {rate}");
}

#[test]
fn the_monitor_reports_an_anomaly_in_a_fleet_series() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "build", 8, "cpu=8")).unwrap();
    let mut next = 0;
    for hour in 0..30u64 {
        // Twenty tasks an hour; at hour 20 most of them fail.
        for k in 0..20u64 {
            next += 1;
            c.assign(task(next, "build", "cpu=1")).unwrap();
            clock.advance(Duration::from_secs(90));
            let ok = hour != 20 || k < 4;
            c.complete(TaskId::new(next), ok, Some(res("cpu=1")))
                .unwrap();
        }
        clock.advance(Duration::from_secs(HOUR - 20 * 90));
    }
    let mut m = Monitor::new(MonitorConfig::default()).unwrap();
    m.ingest_all(&c.drain_events());
    m.advance(clock.now());
    let found: Vec<_> = m.drain_anomalies().collect();
    let drop = found
        .iter()
        .find(|a| a.metric == Metric::CompletionRate)
        .expect("the failures are found");
    assert_eq!(drop.at, Timestamp::from_secs(21 * HOUR));
    assert_eq!(drop.kind, AnomalyKind::Spike);
    assert_eq!(drop.value, 0.2);
    assert_eq!(drop.expected, 1.0);
    assert_eq!(drop.subject, Subject::Fleet);
    assert_eq!(
        drop.to_string(),
        "fleet completion rate spike 20.0% (expected 100.0%, score max) at 1970-01-01T21:00:00.000Z"
    );
    // Nothing else alarmed, and the anomaly is in its day's window too.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(m.last_window().unwrap().anomalies, found);
}

// ----- snapshots: a restart loses nothing ---------------------------------------------

/// Through JSON, as a host keeps it.
fn restart(m: &Monitor, config: MonitorConfig) -> Monitor {
    let json = serde_json::to_string(&m.snapshot()).unwrap();
    let snapshot: MonitorSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot.version(), MONITOR_SNAPSHOT_VERSION);
    assert_eq!(snapshot.now(), m.now());
    Monitor::restore(config, snapshot).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_restore.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// A coordinator's events, with the monitor restarted from its snapshot (through
    /// JSON) anywhere in them: the restored monitor, fed the rest, has the windows,
    /// anomalies and reports of the one that never stopped, to the bit; tasks that
    /// span the restart count whole, and the detectors keep their baselines.
    #[test]
    fn a_monitor_restarted_from_its_snapshot_reports_as_if_it_never_stopped(
        ops in proptest::collection::vec(arb_op(), 1..150),
        at in 0.0f64..1.0,
    ) {
        let (events, end) = run(&ops);
        let config = MonitorConfig::default()
            .with_window(Duration::from_secs(HOUR))
            .with_detect_every(Duration::from_secs(HOUR / 4))
            .with_keep_windows(6)
            .with_detector(DetectorConfig::default().with_warm_up(3));
        let split = (events.len() as f64 * at) as usize;
        let mut never = Monitor::new(config.clone()).unwrap();
        never.ingest_all(&events[..split]);
        let mut restarted = restart(&never, config);
        for m in [&mut never, &mut restarted] {
            m.ingest_all(&events[split..]);
            m.advance(end + Duration::from_secs(2 * HOUR));
        }
        prop_assert_eq!(restarted.current_window(), never.current_window());
        prop_assert!(restarted.windows().eq(never.windows()));
        prop_assert_eq!(restarted.daily_report(), never.daily_report());
        prop_assert_eq!(restarted.capacity_trends(7), never.capacity_trends(7));
        let found: Vec<_> = restarted.drain_anomalies().collect();
        prop_assert_eq!(found, never.drain_anomalies().collect::<Vec<_>>());
        prop_assert_eq!(restarted.snapshot(), never.snapshot());
    }
}

/// A restart keeps the detectors' baselines: the failures at hour 20 are found by the
/// monitor restarted at hour 15, and missed by one started afresh then (still in its
/// twelve hours of warm-up).
#[test]
fn a_restart_keeps_the_anomaly_baselines() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    c.register_agent(agent(1, "build", 8, "cpu=8")).unwrap();
    let config = MonitorConfig::default();
    let mut m = Monitor::new(config.clone()).unwrap();
    let mut afresh = Monitor::new(config.clone()).unwrap();
    let mut next = 0;
    for hour in 0..30u64 {
        if hour == 15 {
            m = restart(&m, config.clone());
        }
        for k in 0..20u64 {
            next += 1;
            c.assign(task(next, "build", "cpu=1")).unwrap();
            clock.advance(Duration::from_secs(90));
            let ok = hour != 20 || k < 4;
            c.complete(TaskId::new(next), ok, Some(res("cpu=1")))
                .unwrap();
        }
        clock.advance(Duration::from_secs(HOUR - 20 * 90));
        let events = c.drain_events();
        m.ingest_all(&events);
        if hour >= 15 {
            afresh.ingest_all(&events);
        }
    }
    m.advance(clock.now());
    afresh.advance(clock.now());
    let found: Vec<_> = m.drain_anomalies().collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].metric, Metric::CompletionRate);
    assert_eq!(found[0].at, Timestamp::from_secs(21 * HOUR));
    assert_eq!(afresh.drain_anomalies().count(), 0);
    // The day's window holds the whole day, from before the restart.
    assert_eq!(m.last_window().unwrap().tasks.assigned, 24 * 20);
}

// ----- no allocation per event ----------------------------------------------------------

#[test]
fn steady_state_ingestion_allocates_nothing_per_event() {
    let (c, clock) = coordinator(Timestamp::EPOCH);
    for a in 0..20 {
        c.register_agent(agent(a, "work", 4, "cpu=8,memory=16Gi"))
            .unwrap();
    }
    let mut running = std::collections::VecDeque::new();
    let mut queued = 0usize;
    for t in 0..40_000u64 {
        clock.advance(Duration::from_millis(5));
        match c.assign(task(t, "work", "cpu=1,memory=1Gi")).unwrap() {
            concord::coordinator::AssignOutcome::Assigned(a) => running.push_back(a.task.id()),
            _ => queued += 1,
        }
        while running.len() + queued > 85 {
            let done = running.pop_front().unwrap();
            let started = c
                .complete(done, t % 7 != 0, Some(res("cpu=800m,memory=1Gi")))
                .unwrap();
            queued -= started.len();
            running.extend(started.iter().map(|a| a.task.id()));
        }
    }
    let events = c.drain_events();
    // Two minutes of events at most: no detection boundary in the second half.
    let (warm, steady) = events.split_at(events.len() / 2);
    let mut m = Monitor::new(MonitorConfig::default()).unwrap();
    m.ingest_all(warm);
    let before = counting_alloc::allocations();
    m.ingest_all(steady);
    let made = counting_alloc::allocations() - before;
    println!(
        "{made} allocations for {} events in steady state",
        steady.len()
    );
    // A sketch meeting a value beyond its range may grow, once; nothing grows per event.
    assert!(made <= 4, "{made} allocations for {} events", steady.len());
    assert!(steady.len() > 50_000);
}

/// Values for a sketch: every sign and magnitude a float has (zeros, subnormals, the
/// smallest and largest normals), and values on bucket edges (`γ^i` at the default
/// accuracy), where a logarithm rounds either way.
fn arb_value() -> impl Strategy<Value = f64> {
    let gamma = 1.01f64 / 0.99;
    prop_oneof![
        -1e6f64..1e6,
        (-300i32..300).prop_map(|e| 10f64.powi(e)),
        (-300i32..300).prop_map(|e| -(10f64.powi(e))),
        (-30_000i32..30_000).prop_map(move |i| gamma.powi(i)),
        Just(0.0),
        Just(-0.0),
        Just(5e-324),
        Just(-f64::MIN_POSITIVE),
        Just(f64::MIN_POSITIVE),
        Just(1e300),
        Just(-1e300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_sketch_serde.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// Any sketch the live code builds (values added in parts, the parts merged,
    /// the low end folded when the values span more than the buckets) reads back
    /// from its JSON as itself: what deserializing checks of `min`, `max` and `sum`
    /// against the buckets never refuses a sketch `add` and `merge` made.
    #[test]
    fn every_sketch_the_live_code_builds_reads_back(
        parts in proptest::collection::vec(proptest::collection::vec(arb_value(), 0..60), 1..5),
        accuracy in prop_oneof![Just(0.0001), Just(0.01), Just(0.05), Just(0.5)],
        buckets in prop_oneof![16u32..40, Just(2048)],
    ) {
        let config = SketchConfig::default()
            .with_relative_accuracy(accuracy)
            .with_max_buckets(buckets);
        let mut whole = QuantileSketch::new(config).unwrap();
        for part in &parts {
            let mut s = QuantileSketch::new(config).unwrap();
            for &x in part {
                s.add(x);
            }
            let json = serde_json::to_string(&s).unwrap();
            let back: QuantileSketch = serde_json::from_str(&json).map_err(|e| {
                TestCaseError::fail(format!("{e}: {json}"))
            })?;
            prop_assert_eq!(&back, &s);
            whole.merge(&back).unwrap();
        }
        let json = serde_json::to_string(&whole).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
        prop_assert_eq!(back, whole);
    }
}

/// Regression: two finite values at the ends of the float range (`f64::MAX` then
/// `-f64::MAX`) overflowed the forecast, left the baseline and the scale NaN, and
/// the detector never reported anything again. The state now stays finite: the
/// overflowing value restarts the detector, which learns the series that follows
/// and reports its spike.
#[test]
fn an_overflowing_jump_does_not_blind_the_detector() {
    for jump in [
        [f64::MAX, -f64::MAX],
        [-f64::MAX, f64::MAX],
        [1e308, -1e308],
    ] {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        for v in jump {
            assert!(d.observe(v).is_none());
            assert!(d.expected().is_some_and(f64::is_finite) || d.seen() == 0);
            assert!(d.scale().is_finite());
        }
        for k in 0..40 {
            d.observe(1.0 + if k % 2 == 0 { 0.01 } else { -0.01 });
        }
        let expected = d.expected().expect("a baseline");
        assert!(
            (expected - 1.0).abs() < 0.1,
            "{jump:?}: expected {expected}"
        );
        let spike = d.observe(1e6).expect("the spike is reported");
        assert_eq!(spike.kind, AnomalyKind::Spike);
        // The detector's state reads back from serde, which refuses a value that is
        // not finite.
        let json = serde_json::to_string(&d).unwrap();
        let _: AnomalyDetector = serde_json::from_str(&json).expect(&json);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_anomaly.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// Whatever values a detector is fed (the largest floats of both signs, NaN,
    /// infinities), it does not panic, its baseline and scale stay finite, its state
    /// reads back from JSON, and a spike over an ordinary series that follows is
    /// still reported.
    #[test]
    fn no_value_blinds_the_detector(
        values in proptest::collection::vec(
            prop_oneof![
                Just(f64::MAX), Just(-f64::MAX), Just(1e308), Just(-1e308), Just(1e300),
                Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
                -1e6f64..1e6, proptest::num::f64::NORMAL,
            ],
            1..80,
        ),
    ) {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        for &v in &values {
            d.observe(v);
            prop_assert!(d.expected().is_none_or(f64::is_finite), "expected {:?}", d.expected());
            prop_assert!(d.scale().is_finite(), "scale {}", d.scale());
        }
        let json = serde_json::to_string(&d).unwrap();
        let back: Result<AnomalyDetector, _> = serde_json::from_str(&json);
        prop_assert!(back.is_ok(), "{json}: {:?}", back.err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_trend.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// Regression: `CapacityTrend::fit` took the first point given as the origin and
    /// the last as the latest, so the same points out of time order fitted another
    /// line (a slope of 0.127 for 0.1, full 12.5 s early). The order of the points
    /// no longer changes the fit, bit for bit, ties in time included.
    #[test]
    fn the_order_of_the_points_does_not_change_the_trend(
        (points, shuffled) in proptest::collection::vec(
            (0u64..50, prop_oneof![0.0f64..1.0, Just(f64::NAN), Just(0.5)]),
            0..12,
        )
        .prop_flat_map(|points| {
            let shuffled = Just(points.clone()).prop_shuffle();
            (Just(points), shuffled)
        }),
    ) {
        use concord::monitor::{CapacityTrend, TrendSeries};
        let at = |p: &[(u64, f64)]| -> Vec<(Timestamp, f64)> {
            p.iter().map(|&(s, v)| (Timestamp::from_secs(1_700_000_000 + 10 * s), v)).collect()
        };
        let fit = |p: &[(Timestamp, f64)]| {
            CapacityTrend::fit(TrendSeries::Utilization, p, Duration::from_secs(10), 5, Some(0.95))
        };
        let mut sorted = at(&points);
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let (a, b) = (fit(&sorted), fit(&at(&shuffled)));
        prop_assert_eq!(&a, &b);
        if let Some(a) = a {
            let finite = sorted.iter().filter(|p| p.1.is_finite());
            prop_assert_eq!(Some(a.last), finite.clone().map(|p| p.0).max());
        }
    }
}

/// The audit's four points, sorted and shuffled: one slope of 0.1 a window.
#[test]
fn a_trend_of_shuffled_points_is_the_trend_of_the_sorted_ones() {
    use concord::monitor::{CapacityTrend, TrendSeries};
    let t = |s: u64| Timestamp::from_secs(1_700_000_000 + s);
    let w = Duration::from_secs(10);
    let sorted = [(t(0), 0.1), (t(10), 0.2), (t(20), 0.3), (t(30), 0.4)];
    let shuffled = [(t(10), 0.2), (t(0), 0.1), (t(30), 0.4), (t(20), 0.3)];
    let a = CapacityTrend::fit(TrendSeries::Utilization, &sorted, w, 5, Some(0.95)).unwrap();
    let b = CapacityTrend::fit(TrendSeries::Utilization, &shuffled, w, 5, Some(0.95)).unwrap();
    assert!((a.slope_per_window - 0.1).abs() < 1e-9, "{a:?}");
    assert_eq!((a.last, a.latest), (t(30), 0.4));
    assert_eq!(a, b);
}

/// Regression: a `QuantileSketch` or `Summary` of finite values whose sum overflows
/// wrote `"sum":null` and could not read its own JSON back, and `Summary`'s mean of
/// `f64::MAX` and `-f64::MAX` was `-inf` (Welford's step overflowed).
#[test]
fn sketches_and_summaries_of_the_largest_floats_read_back_with_a_finite_mean() {
    use concord::monitor::Summary;
    for values in [
        [f64::MAX, f64::MAX],
        [f64::MAX, -f64::MAX],
        [-f64::MAX, f64::MAX],
        [1e308, 1e308],
    ] {
        let mut sketch = QuantileSketch::new(SketchConfig::default()).unwrap();
        let mut summary = Summary::new();
        for v in values {
            assert!(sketch.add(v) && summary.add(v));
        }
        let json = serde_json::to_string(&sketch).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json).expect(&json);
        assert_eq!(back.mean(), sketch.mean());
        let json = serde_json::to_string(&summary).unwrap();
        let back: Summary = serde_json::from_str(&json).expect(&json);
        assert_eq!(back.mean(), summary.mean());
        let exact = values[0] / 2.0 + values[1] / 2.0;
        for mean in [sketch.mean().unwrap(), summary.mean().unwrap()] {
            assert!(
                (mean - exact).abs() <= 0.02 * values[0].abs(),
                "{values:?}: mean {mean}"
            );
        }
    }
}

/// Regression: merging a sketch whose values sum past the largest float with one
/// whose values sum past it the other way gave a NaN sum (`inf + -inf`): it wrote
/// `null`, read back as NaN and so no longer equalled itself, and a snapshot with a
/// `null` sum was taken in. A summary gives the infinity of its mean's sign there
/// (see `Summary::merge`); a sketch now does the same, with the same code, and
/// refuses `null` as a summary does.
#[test]
fn sketches_merged_past_the_largest_float_both_ways_keep_a_sum() {
    use concord::monitor::Summary;
    let sketch = |values: &[f64]| {
        let mut s = QuantileSketch::new(SketchConfig::default()).unwrap();
        values.iter().for_each(|&v| assert!(s.add(v)));
        s
    };
    let summary = |values: &[f64]| {
        let mut s = Summary::new();
        values.iter().for_each(|&v| assert!(s.add(v)));
        s
    };
    let (max, min) = (f64::MAX, -f64::MAX);
    for (a, b, sum) in [
        (&[max, max][..], &[min, min, min][..], f64::NEG_INFINITY),
        (&[max, max, max][..], &[min, min][..], f64::INFINITY),
        (&[min, min][..], &[max, max, max][..], f64::INFINITY),
    ] {
        let mut merged = sketch(a);
        merged.merge(&sketch(b)).unwrap();
        assert_eq!(merged.sum(), sum, "{a:?} + {b:?}");
        let mut whole = summary(a);
        whole.merge(&summary(b));
        assert_eq!(whole.sum(), sum, "{a:?} + {b:?}");
        // The mean the sign came from is the one reported.
        assert_eq!(merged.mean().unwrap().signum(), sum.signum());
        let json = serde_json::to_string(&merged).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json).expect(&json);
        assert_eq!(back, merged, "{json}");
    }
    // A sum read as `null` (NaN) is refused, even where the extremes would allow an
    // infinite one.
    let mut v = serde_json::to_value(sketch(&[max, max])).unwrap();
    assert_eq!(v["sum"], serde_json::json!("Infinity"));
    v["sum"] = serde_json::Value::Null;
    let err = serde_json::from_value::<QuantileSketch>(v).unwrap_err();
    assert!(err.to_string().contains("never NaN (null)"), "{err}");
}

fn huge_or_any() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::sample::select(vec![f64::MAX, -f64::MAX, 1e308, -1e308, 0.0, 1.0]),
        proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
    ]
}

/// The values of one part: any (see `huge_or_any`), or half the time a part whose
/// sum passes the largest float one way or the other, so that parts whose sums
/// passed it both ways are often merged.
fn part() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(huge_or_any(), 0..6),
        (
            proptest::sample::select(vec![f64::MAX, -f64::MAX]),
            2..5usize
        )
            .prop_map(|(v, n)| vec![v; n]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/monitor_summary_serde.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]
    /// Any finite values, added to parts that are then merged, give a sketch and a
    /// summary that read back from their own JSON, with a finite mean within the
    /// extremes and a sum that is not NaN.
    #[test]
    fn any_finite_values_read_back_with_a_finite_mean(
        parts in proptest::collection::vec(part(), 1..4),
    ) {
        use concord::monitor::Summary;
        let mut sketch = QuantileSketch::new(SketchConfig::default()).unwrap();
        let mut summary = Summary::new();
        for part in &parts {
            let mut s = QuantileSketch::new(SketchConfig::default()).unwrap();
            let mut m = Summary::new();
            for &v in part {
                prop_assert!(s.add(v) && m.add(v));
            }
            sketch.merge(&s).unwrap();
            summary.merge(&m);
        }
        // Never NaN, however the parts' sums passed the largest float.
        prop_assert!(!sketch.sum().is_nan() && !summary.sum().is_nan(), "{} {}", sketch.sum(), summary.sum());
        let json = serde_json::to_string(&sketch).unwrap();
        let back: Result<QuantileSketch, _> = serde_json::from_str(&json);
        prop_assert!(back.is_ok(), "{}: {:?}", json, back.err());
        let back = back.unwrap();
        prop_assert_eq!(back.mean().map(f64::to_bits), sketch.mean().map(f64::to_bits));
        prop_assert_eq!(back.sum().to_bits(), sketch.sum().to_bits());
        let json = serde_json::to_string(&summary).unwrap();
        let back: Result<Summary, _> = serde_json::from_str(&json);
        prop_assert!(back.is_ok(), "{}: {:?}", json, back.err());
        prop_assert_eq!(back.unwrap().mean().map(f64::to_bits), summary.mean().map(f64::to_bits));
        for (mean, min, max) in [
            (sketch.mean(), sketch.min(), sketch.max()),
            (summary.mean(), summary.min(), summary.max()),
        ] {
            if let (Some(mean), Some(min), Some(max)) = (mean, min, max) {
                prop_assert!(mean.is_finite() && min <= mean && mean <= max, "{} in [{}, {}]", mean, min, max);
            }
        }
    }
}
