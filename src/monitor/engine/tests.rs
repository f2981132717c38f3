//! The engine's own tests: its private state checked against the events fed in.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::agent::{AgentProfile, AgentStatus};
use crate::assignment::Explanation;
use crate::conflict::{Assessment, Conflict, ConflictKind, Severity};
use crate::coordinator::{Assignment, Decider, EventKind};
use crate::id::AllocationId;
use crate::task::Task;

const HOUR: u64 = 3600;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// Numbers events in order.
#[derive(Default)]
struct Stream {
    seq: u64,
    events: Vec<Event>,
}

impl Stream {
    fn push(&mut self, secs: u64, kind: EventKind) -> &mut Self {
        self.seq += 1;
        self.events.push(Event {
            seq: self.seq,
            at: at(secs),
            kind,
        });
        self
    }

    fn register(&mut self, secs: u64, agent: u64, slots: u32, capacity: &str) -> &mut Self {
        let mut profile = AgentProfile::new(AgentId::new(agent), "a").with_max_tasks(slots);
        if !capacity.is_empty() {
            profile = profile.with_capacity(capacity.parse().unwrap());
        }
        self.push(
            secs,
            EventKind::AgentRegistered {
                profile: Box::new(profile),
            },
        )
    }

    fn assign(&mut self, secs: u64, task: u64, agent: u64, resources: &str) -> &mut Self {
        let resources: Resources = if resources.is_empty() {
            Resources::new()
        } else {
            resources.parse().unwrap()
        };
        self.push(
            secs,
            EventKind::TaskAssigned {
                assignment: Arc::new(assignment(task, agent, resources, secs)),
            },
        )
    }

    fn complete(&mut self, secs: u64, task: u64, agent: u64, ok: bool, used: &str) -> &mut Self {
        let usage = (!used.is_empty()).then(|| used.parse().unwrap());
        self.push(
            secs,
            EventKind::TaskCompleted {
                task: TaskId::new(task),
                agent: AgentId::new(agent),
                success: ok,
                usage,
            },
        )
    }

    fn queue(&mut self, secs: u64, task: u64) -> &mut Self {
        self.push(
            secs,
            EventKind::TaskQueued {
                task: TaskId::new(task),
                request: crate::id::RequestId::new(task),
                explanation: Box::default(),
            },
        )
    }
}

fn assignment(task: u64, agent: u64, resources: Resources, secs: u64) -> Assignment {
    Assignment {
        task: Task::new(TaskId::new(task), "work", "do the work"),
        agent: AgentId::new(agent),
        allocation: AllocationId::new(task),
        resources,
        score: 1.0,
        explanation: Explanation::default(),
        warnings: Vec::new(),
        group: None,
        assigned_at: at(secs),
        waiting_since: None,
    }
}

fn hourly() -> MonitorConfig {
    MonitorConfig::default()
        .with_window(Duration::from_secs(HOUR))
        .with_detect_every(Duration::from_secs(HOUR))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn busy_time_is_split_exactly_at_window_boundaries() {
    let mut s = Stream::default();
    // Two slots; one task from 00:45 to 01:15, so 15 minutes in each hour.
    s.register(0, 1, 2, "cpu=4")
        .assign(45 * 60, 7, 1, "cpu=2")
        .complete(75 * 60, 7, 1, true, "cpu=1");
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&s.events);
    m.advance(at(2 * HOUR));
    let w: Vec<&Window> = m.windows().collect();
    assert_eq!(w.len(), 2);
    for w in &w {
        let a = w.agent(AgentId::new(1)).unwrap();
        assert_eq!(a.busy_secs, 15.0 * 60.0);
        assert_eq!(a.available_secs, 2.0 * 3600.0);
        assert_eq!(w.utilization(), Some(0.125));
        let cpu = w.resource(&ResourceName::Cpu).unwrap();
        assert_eq!(cpu.capacity_secs, 4000.0 * 3600.0);
        assert_eq!(cpu.allocated_secs, 2000.0 * 15.0 * 60.0);
        assert_eq!(cpu.peak_use, 0.5);
    }
    // The task, its outcome and its usage belong to the hour it finished in.
    assert_eq!(w[0].tasks.finished(), 0);
    assert_eq!(w[1].tasks.succeeded, 1);
    let cpu = w[1].resource(&ResourceName::Cpu).unwrap();
    assert_eq!(cpu.efficiency(), Some(0.5));
    assert_eq!(w[1].durations.max(), Some(1800.0));
    assert_eq!(m.stats().tasks_in_flight, 0);
}

#[test]
fn waits_queue_lengths_and_overhead_come_from_the_events_timestamps() {
    let mut s = Stream::default();
    s.register(0, 1, 1, "")
        .queue(0, 1)
        .queue(0, 2)
        .assign(600, 1, 1, "")
        .complete(1200, 1, 1, true, "")
        .assign(1200, 2, 1, "")
        .complete(1800, 2, 1, false, "");
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&s.events);
    m.advance(at(HOUR));
    let w = m.last_window().unwrap();
    assert_eq!(w.queue.peak, 2);
    assert_eq!(w.queue.current, 0);
    // Waited 600 s and 1200 s.
    assert_eq!(w.queue.queued_secs, 1800.0);
    assert_eq!(w.queue.waits.count(), 2);
    assert_eq!(w.queue.waits.max(), Some(1200.0));
    // Working 1200 s, waiting 1800 s, all of it for the one slot: capacity, not
    // coordination.
    assert_eq!(w.coordination_overhead(), Some(0.0));
    assert_eq!(w.completion_rate(), Some(0.5));
    let a = w.agent(AgentId::new(1)).unwrap();
    assert_eq!((a.waited, a.waited_secs), (2, 1800.0));
    assert!(close(a.queue_length(3600.0), 0.5));
    assert_eq!(w.tasks.queued, 2);
}

#[test]
fn conflict_resolution_time_runs_from_detection_to_the_end() {
    let mut s = Stream::default();
    let conflict = |id: u64| EventKind::ConflictDetected {
        conflict: Box::new(Conflict::new(
            ConflictId::new(id),
            ConflictKind::OverlappingClaims,
            at(0),
        )),
        assessment: Assessment::new(Severity::Low, Vec::new()),
    };
    s.push(100, conflict(1))
        .push(100, conflict(2))
        .push(
            400,
            EventKind::ConflictResolved {
                conflict: ConflictId::new(1),
            },
        )
        .push(
            1000,
            EventKind::ConflictDecided {
                conflict: ConflictId::new(2),
                decision: crate::conflict::HumanDecision::Deny,
                by: Decider::Default,
            },
        )
        // Closed again: not counted twice.
        .push(
            1100,
            EventKind::ConflictResolved {
                conflict: ConflictId::new(2),
            },
        );
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&s.events);
    let w = m.current_window().unwrap();
    let c = &w.conflicts;
    assert_eq!(
        (c.detected, c.resolved, c.decided, c.decided_by_default),
        (2, 2, 1, 1)
    );
    assert_eq!(c.resolution.count(), 2);
    assert_eq!(c.resolution_summary.mean(), Some(600.0));
    assert_eq!(c.open, 0);
}

#[test]
fn replayed_and_late_events_are_counted_not_applied() {
    let mut s = Stream::default();
    s.register(100, 1, 1, "").assign(200, 1, 1, "");
    let mut events = s.events.clone();
    events.push(events[1].clone()); // a replay
    let mut late = events[1].clone();
    late.seq = 10;
    late.at = at(150);
    late.kind = EventKind::TaskCompleted {
        task: TaskId::new(1),
        agent: AgentId::new(1),
        success: true,
        usage: None,
    };
    events.push(late);
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&events);
    let w = m.current_window().unwrap();
    assert_eq!(w.ingest.duplicates, 1);
    assert_eq!(w.ingest.late, 1);
    assert_eq!(w.ingest.events, 3);
    assert_eq!(w.tasks.assigned, 1);
    // The late completion counted at 200 s: the task ran no time.
    assert_eq!(w.durations.max(), Some(0.0));
}

#[test]
fn task_state_is_bounded_and_what_overflows_is_counted() {
    let mut s = Stream::default();
    s.register(0, 1, 100, "");
    for t in 0..30 {
        s.queue(1, t);
    }
    let mut m = Monitor::new(hourly().with_max_tasks_in_flight(10)).unwrap();
    m.ingest_all(&s.events);
    assert_eq!(m.stats().tasks_in_flight, 10);
    assert_eq!(m.queue_length(), 10);
    let w = m.current_window().unwrap();
    assert_eq!(w.ingest.untracked_tasks, 20);
    assert_eq!(w.tasks.queued, 10);
}

#[test]
fn memory_stays_constant_over_a_long_stream() {
    let mut m = Monitor::new(hourly().with_keep_windows(5)).unwrap();
    let mut s = Stream::default();
    for a in 0..8 {
        s.register(0, a, 2, "cpu=2,memory=1Gi");
    }
    m.ingest_all(&s.events);
    let mut seq = s.seq;
    let mut now = 0;
    for t in 0..200_000u64 {
        now += 7;
        let agent = t % 8;
        let kinds = [
            EventKind::TaskQueued {
                task: TaskId::new(t),
                request: crate::id::RequestId::new(t),
                explanation: Box::default(),
            },
            EventKind::TaskAssigned {
                assignment: Arc::new(assignment(t, agent, "cpu=1".parse().unwrap(), now)),
            },
            EventKind::TaskCompleted {
                task: TaskId::new(t),
                agent: AgentId::new(agent),
                success: t % 10 != 0,
                usage: Some("cpu=800m".parse().unwrap()),
            },
        ];
        for kind in kinds {
            seq += 1;
            m.ingest(&Event {
                seq,
                at: at(now),
                kind,
            });
        }
    }
    let stats = m.stats();
    assert_eq!(stats.tasks_in_flight, 0);
    assert_eq!(stats.agents, 8);
    assert_eq!(stats.windows, 5);
    assert_eq!(m.queue_length(), 0);
    let w = m.last_window().unwrap();
    assert!((w.completion_rate().unwrap() - 0.9).abs() < 0.01);
    assert!(close(w.resource_efficiency().unwrap(), 0.8));
}

#[test]
fn a_departed_agents_row_is_freed_when_its_window_closes() {
    let mut s = Stream::default();
    s.register(0, 1, 1, "cpu=1")
        .register(0, 2, 1, "cpu=1")
        .push(
            10,
            EventKind::AgentDeregistered {
                agent: AgentId::new(2),
            },
        )
        .register(HOUR + 10, 3, 1, "cpu=1");
    let mut m = Monitor::new(hourly()).unwrap();
    m.ingest_all(&s.events);
    // Agent 2 is in the window it left in, not after; its row went to agent 3.
    let first = m.last_window().unwrap();
    assert!(first.agent(AgentId::new(2)).is_some());
    let now = m.current_window().unwrap();
    let ids: Vec<u64> = now.agents.iter().map(|a| a.agent.get()).collect();
    assert_eq!(ids, [1, 3]);
    assert_eq!(m.agents.len(), 2);
    // Agent 1's cpu over the ten seconds of the hour so far; agent 3 just came.
    assert_eq!(
        now.resource(&ResourceName::Cpu).unwrap().capacity_secs,
        1000.0 * 10.0
    );
}

#[test]
fn a_jump_of_centuries_builds_no_more_than_the_kept_windows() {
    let mut s = Stream::default();
    s.register(0, 1, 1, "").assign(0, 1, 1, "");
    let mut m = Monitor::new(hourly().with_keep_windows(3)).unwrap();
    m.ingest_all(&s.events);
    let far = Timestamp::from_secs(300 * 365 * 24 * HOUR);
    m.advance(far);
    assert_eq!(m.windows().len(), 3);
    let skipped: u64 = m.windows().map(|w| w.ingest.skipped_windows).sum();
    assert!(skipped > 2_000_000, "{skipped}");
    // The windows kept are whole: the running task kept its slot busy.
    assert_eq!(m.last_window().unwrap().utilization(), Some(1.0));
    // Restored here, and at the end of time (where no interval can end), a monitor
    // stands where the original does.
    for t in [far, Timestamp::MAX] {
        m.advance(t);
        assert_eq!(m.now(), Some(t));
        let back = Monitor::restore(m.config().clone(), m.snapshot()).unwrap();
        assert_eq!(back.snapshot(), m.snapshot());
        assert_eq!(back.next_deadline(), m.next_deadline());
        assert_eq!(back.current_window(), m.current_window());
    }
}

/// An event at `ms` milliseconds.
fn at_ms(seq: u64, ms: u64, kind: EventKind) -> Event {
    Event {
        seq,
        at: Timestamp::from_millis(ms),
        kind,
    }
}

/// Busy work on three agents from `from` ms on: tasks of varied lengths, some
/// failing, some waiting first; ends with every task finished but one, still
/// running, so that the idle stretch after it has a gauge that is not zero.
fn bursts(seq: &mut u64, from: u64, task: &mut u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut push = |ms: u64, kind: EventKind| out.push((ms, kind));
    if from == 0 {
        for a in 1..=3 {
            let profile = AgentProfile::new(AgentId::new(a), "a").with_max_tasks(2);
            push(
                0,
                EventKind::AgentRegistered {
                    profile: Box::new(profile),
                },
            );
        }
    }
    for k in 0..40u64 {
        *task += 1;
        let t = *task;
        let start = from + k * 37;
        let agent = k % 3 + 1;
        if k % 4 == 0 {
            push(
                start,
                EventKind::TaskQueued {
                    task: TaskId::new(t),
                    request: crate::id::RequestId::new(t),
                    explanation: Box::default(),
                },
            );
        }
        push(
            start + 3,
            EventKind::TaskAssigned {
                assignment: Arc::new(assignment(t, agent, Resources::new(), 0)),
            },
        );
        if k < 39 {
            push(
                start + 3 + (k * 13) % 50,
                EventKind::TaskCompleted {
                    task: TaskId::new(t),
                    agent: AgentId::new(agent),
                    success: k % 7 != 0,
                    usage: None,
                },
            );
        }
    }
    // In time order, numbered in that order (a stable sort: an assignment stays
    // before a completion at the same instant).
    out.sort_by_key(|(ms, _)| *ms);
    out.into_iter()
        .map(|(ms, kind)| {
            *seq += 1;
            at_ms(*seq, ms, kind)
        })
        .collect()
}

/// A monitor at a millisecond interval, with idle stretches of `gap` ms between
/// bursts of work.
fn fine_config() -> MonitorConfig {
    MonitorConfig::default()
        .with_window(Duration::from_secs(10))
        .with_detect_every(Duration::from_millis(1))
        .with_keep_windows(3)
}

#[test]
fn jumping_over_idle_intervals_leaves_what_stepping_through_them_does() {
    let (mut seq, mut task) = (0, 0);
    let mut events = bursts(&mut seq, 0, &mut task);
    // An idle stretch past `MAX_IDLE_INTERVALS`, but within the kept windows, then
    // more work, then a short one.
    events.extend(bursts(&mut seq, 25_000, &mut task));
    events.extend(bursts(&mut seq, 27_500, &mut task));
    let end = Timestamp::from_millis(29_900);
    let mut jumper = Monitor::new(fine_config()).unwrap();
    let mut stepper = Monitor::new(fine_config()).unwrap();
    for e in &events {
        jumper.ingest(e);
        // The stepper is moved to each deadline before the event, one by one.
        while let Some(d) = stepper.next_deadline().filter(|d| *d <= e.at) {
            stepper.advance(d);
        }
        stepper.ingest(e);
    }
    jumper.advance(end);
    while let Some(d) = stepper.next_deadline().filter(|d| *d <= end) {
        stepper.advance(d);
    }
    stepper.advance(end);
    assert_eq!(stepper.visited, 29_900);
    assert!(
        jumper.visited < 29_900 / 2,
        "{} intervals visited",
        jumper.visited
    );
    assert_eq!(state(&jumper), state(&stepper));
    assert!(jumper.windows().eq(stepper.windows()));
    assert_eq!(jumper.current_window(), stepper.current_window());
    let taken: Vec<Anomaly> = jumper.drain_anomalies().collect();
    assert!(!taken.is_empty());
    assert_eq!(taken, stepper.drain_anomalies().collect::<Vec<_>>());
    // The detectors were fed every interval but those of the long stretch past
    // `MAX_IDLE_INTERVALS` of it: the first burst's last event is at 1,453 ms, so
    // the idle intervals end at 1,455 ms and on, to 25,000 ms.
    let fed = jumper.detectors[Metric::TasksFinished as usize].seen();
    let unfed = 25_000 - (1_454 + MAX_IDLE_INTERVALS);
    assert_eq!(fed, 29_900 - unfed);
}

#[test]
fn a_jump_over_idle_days_is_cheap_at_a_millisecond_interval() {
    let config = MonitorConfig::default()
        .with_detect_every(Duration::from_millis(1))
        .with_keep_windows(30);
    assert!(config.validate().is_ok());
    // With nothing to watch, the detectors are at rest within a few dozen
    // intervals, and the rest of the day is counted in one step.
    let mut idle = Monitor::new(config.clone()).unwrap();
    idle.advance(at(0));
    idle.advance(at(24 * HOUR));
    assert!(idle.visited < 100, "{}", idle.visited);
    assert_eq!(idle.windows().len(), 1);

    let (mut seq, mut task) = (0, 0);
    let mut m = Monitor::new(config).unwrap();
    m.ingest_all(&bursts(&mut seq, 0, &mut task));
    let busy = m.visited;
    let started = std::time::Instant::now();
    // A day, then a month: every window of it is built.
    m.advance(at(24 * HOUR));
    m.advance(at(31 * 24 * HOUR));
    let took = started.elapsed();
    assert_eq!(m.windows().len(), 30);
    let last = m.last_window().unwrap();
    assert_eq!(last.busy_secs(), 24.0 * 3600.0, "one task still runs");
    assert_eq!(last.ingest.skipped_windows, 0);
    // Billions of intervals passed: at most `MAX_IDLE_INTERVALS` of them fed to the
    // detectors (fewer if they come to rest first), then a few visits a window.
    let visited = m.visited - busy;
    assert!(visited <= MAX_IDLE_INTERVALS + 3 * 31, "{visited}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // An idle year is cut to the kept windows, and visits no more.
    let before = m.visited;
    m.advance(at(400 * 24 * HOUR));
    assert!(m.visited - before < 200, "{}", m.visited - before);
    let snapshot = m.snapshot();
    let back = Monitor::restore(m.config().clone(), snapshot.clone()).unwrap();
    assert_eq!(back.snapshot(), snapshot);
}

#[test]
fn the_latest_event_is_restored_and_checked() {
    let (mut seq, mut task) = (0, 0);
    let mut m = Monitor::new(fine_config()).unwrap();
    m.ingest_all(&bursts(&mut seq, 0, &mut task));
    m.advance(Timestamp::from_millis(5_000));
    let good = serde_json::to_value(m.snapshot()).unwrap();
    assert_eq!(good["last_event"], serde_json::json!(m.last_event));
    // After `now`: refused.
    let mut v = good.clone();
    v["last_event"] = serde_json::json!(Timestamp::from_millis(6_000));
    let snapshot: MonitorSnapshot = serde_json::from_value(v).unwrap();
    let err = Monitor::restore(fine_config(), snapshot).unwrap_err();
    assert!(err.to_string().contains("the latest event"), "{err}");
    // Written before it was kept: as if an event came at `now`.
    let mut v = good;
    v.as_object_mut().unwrap().remove("last_event");
    let snapshot: MonitorSnapshot = serde_json::from_value(v).unwrap();
    let back = Monitor::restore(fine_config(), snapshot).unwrap();
    assert_eq!(back.last_event, Timestamp::from_millis(5_000));
}

#[test]
fn windows_and_summaries_with_counts_at_the_bound_do_not_panic() {
    let (mut seq, mut task) = (0, 0);
    let mut m = Monitor::new(fine_config()).unwrap();
    m.ingest_all(&bursts(&mut seq, 0, &mut task));
    let mut v = serde_json::to_value(m.current_window().unwrap()).unwrap();
    let max = serde_json::json!(u64::MAX);
    for path in [
        "/tasks/succeeded",
        "/tasks/assigned",
        "/tasks/rejected",
        "/tasks/denied",
        "/conflicts/resolved",
        "/conflicts/decided",
        "/conflicts/detected",
        "/ingest/events",
        "/agents/0/succeeded",
        "/agents/0/failed",
        "/agents/0/started",
        "/agents/0/durations/count",
    ] {
        *v.pointer_mut(path).unwrap() = max.clone();
    }
    v["tasks"]["failed"] = serde_json::json!(1);
    let mut w: Window = serde_json::from_value(v).unwrap();
    assert!(w.completion_rate().is_some());
    assert_eq!(w.tasks.finished(), u64::MAX);
    assert_eq!(w.agents[0].finished(), u64::MAX);
    let summary = DailySummary::from_window(&w);
    assert_eq!(summary.conflicts.closed, u64::MAX);
    assert!(summary.to_markdown().contains("Key metrics"));
    assert!(m.report(&w).to_markdown().contains("Recommendations"));
    let other = w.clone();
    w.merge(&other).unwrap();
    w.merge(&other).unwrap();
    assert_eq!(w.tasks.assigned, u64::MAX);
    assert_eq!(w.ingest.events, u64::MAX);
    assert_eq!(w.agents[0].durations.count(), u64::MAX);
    w.agents[0].durations.add(1.0);
}

#[test]
fn settings_are_checked_on_construction() {
    let bad = MonitorConfig::default().with_detect_every(Duration::from_secs(7 * 60));
    assert!(matches!(
        Monitor::new(bad),
        Err(MonitorError::UnalignedInterval { .. })
    ));
    let bad = MonitorConfig::default().with_window(Duration::from_nanos(1500));
    assert_eq!(
        Monitor::new(bad).unwrap_err().to_string(),
        "setting `window` is 1.5µs: it must be at least 1ms, in whole milliseconds"
    );
    let bad = MonitorConfig::default().with_keep_windows(0);
    assert!(Monitor::new(bad).is_err());
    let bad = MonitorConfig::default().with_max_resources(2);
    assert!(Monitor::new(bad).is_err());
    let json = serde_json::to_string(&MonitorConfig::default()).unwrap();
    let back: MonitorConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, MonitorConfig::default());
    assert!(serde_json::from_str::<MonitorConfig>(r#"{"windw": 1}"#).is_err());
}

/// One arbitrary event: any kind, about a few ids, at a time that may go back, with
/// a sequence number that may repeat.
fn arb_event() -> impl Strategy<Value = (u64, i64, EventKind)> {
    let task = (0u64..6).prop_map(TaskId::new);
    let agent = (0u64..4).prop_map(AgentId::new);
    let conflict = (0u64..3).prop_map(ConflictId::new);
    let res = prop_oneof![
        Just(Resources::new()),
        Just("cpu=1".parse::<Resources>().unwrap()),
        Just("cpu=2,memory=1Gi,gpu=1".parse::<Resources>().unwrap()),
        Just("gpu=3,llm_tokens=100".parse::<Resources>().unwrap()),
    ];
    let status = prop_oneof![
        Just(AgentStatus::Available),
        Just(AgentStatus::Busy),
        Just(AgentStatus::Unhealthy),
        Just(AgentStatus::Quarantined),
        Just(AgentStatus::Offline),
    ];
    let kind = prop_oneof![
        (agent.clone(), 0u32..4, res.clone()).prop_map(|(a, slots, cap)| {
            EventKind::AgentRegistered {
                profile: Box::new(
                    AgentProfile::new(a, "x")
                        .with_max_tasks(slots)
                        .with_capacity(cap),
                ),
            }
        }),
        agent
            .clone()
            .prop_map(|agent| EventKind::AgentDeregistered { agent }),
        (agent.clone(), res.clone())
            .prop_map(|(agent, capacity)| EventKind::AgentCapacityChanged { agent, capacity }),
        (agent.clone(), status.clone(), status).prop_map(|(agent, from, to)| {
            EventKind::AgentStatusChanged {
                agent,
                from,
                to,
                planned: false,
            }
        }),
        (task.clone(), agent.clone(), res.clone()).prop_map(|(t, a, r)| {
            EventKind::TaskAssigned {
                assignment: Arc::new(assignment(t.get(), a.get(), r, 0)),
            }
        }),
        task.clone().prop_map(|task| EventKind::TaskQueued {
            task,
            request: crate::id::RequestId::new(1),
            explanation: Box::default(),
        }),
        (task.clone(), task.clone()).prop_map(|(task, behind)| EventKind::TaskBlocked {
            task,
            request: crate::id::RequestId::new(1),
            behind,
            resources: Vec::new(),
        }),
        (
            task.clone(),
            agent.clone(),
            any::<bool>(),
            proptest::option::of(res)
        )
            .prop_map(|(task, agent, success, usage)| EventKind::TaskCompleted {
                task,
                agent,
                success,
                usage,
            }),
        (task.clone(), agent.clone(), any::<bool>()).prop_map(|(task, agent, requeued)| {
            EventKind::TaskHandedBack {
                task,
                agent,
                requeued,
            }
        }),
        (task.clone(), agent).prop_map(|(task, agent)| EventKind::TaskReleased { task, agent }),
        task.clone().prop_map(|task| EventKind::TaskRejected {
            task,
            explanation: Box::default(),
        }),
        (task.clone(), conflict.clone()).prop_map(|(task, conflict)| EventKind::TaskDenied {
            task,
            conflict,
            by: Decider::Human,
        }),
        task.prop_map(|task| EventKind::TaskCancelled { task }),
        conflict.clone().prop_map(|c| EventKind::ConflictDetected {
            conflict: Box::new(Conflict::new(c, ConflictKind::OverlappingClaims, at(0))),
            assessment: Assessment::new(Severity::Medium, Vec::new()),
        }),
        conflict
            .clone()
            .prop_map(|conflict| EventKind::ConflictResolved { conflict }),
        conflict.prop_map(|conflict| EventKind::ConflictDecided {
            conflict,
            decision: crate::conflict::HumanDecision::Approve,
            by: Decider::Orchestrator,
        }),
    ];
    // Mostly forward, sometimes back, sometimes far ahead.
    let step = prop_oneof![
        8 => 0i64..900,
        1 => -900i64..0,
        1 => Just(40 * 24 * 3600i64),
    ];
    (0u64..3, step, kind)
}

proptest! {
    #![proptest_config(crate::proptest_config(512, "tests/proptest-regressions/monitor_events.txt"))]
    /// Whatever the events (out of order, replayed, about unknown tasks, agents and
    /// conflicts, duplicate completions), the monitor does not panic, its gauges
    /// agree with the tasks it follows, and its figures stay in range.
    #[test]
    fn any_event_sequence_is_taken_in(
        events in proptest::collection::vec(arb_event(), 0..120),
        limits in (1usize..8, 3usize..5),
    ) {
        let config = MonitorConfig::default()
            .with_window(Duration::from_secs(2 * HOUR))
            .with_detect_every(Duration::from_secs(HOUR / 4))
            .with_keep_windows(4)
            .with_max_tasks_in_flight(limits.0)
            .with_max_resources(limits.1)
            .with_detector(DetectorConfig::default().with_warm_up(3));
        let mut m = Monitor::new(config).unwrap();
        let (mut seq, mut now) = (0u64, 1_000_000i64);
        for (seq_step, time_step, kind) in events {
            // A step of 0 repeats the sequence number: a replay.
            seq += seq_step;
            now = (now + time_step).max(0);
            m.ingest(&Event { seq, at: Timestamp::from_secs(now as u64), kind });
            let waiting = m.tasks.values().filter(|l| !matches!(l.phase, Phase::Running(_))).count();
            prop_assert_eq!(m.queue_length(), waiting as u64);
            let running = m.tasks.values().filter(|l| matches!(l.phase, Phase::Running(_))).count();
            prop_assert_eq!(m.fleet.busy, running as u64);
            let busy: u32 = m.agents.iter().filter(|a| !a.vacant).map(|a| a.busy).sum();
            prop_assert_eq!(u64::from(busy), m.fleet.busy);
            let offered: u64 = m.agents.iter().filter(|a| !a.vacant).map(|a| u64::from(a.offered())).sum();
            prop_assert_eq!(offered, m.fleet.avail);
            prop_assert!(m.tasks.len() <= limits.0);
            prop_assert!(m.dims.len() <= limits.1);
        }
        m.advance(Timestamp::from_secs(now as u64 + 3 * HOUR));
        let current = m.current_window().unwrap();
        for w in m.windows().chain(std::iter::once(&current)) {
            for a in &w.agents {
                prop_assert!(a.busy_secs <= a.available_secs);
            }
            if let Some(u) = w.utilization() {
                prop_assert!((0.0..=1.0).contains(&u));
            }
            if let Some(o) = w.coordination_overhead() {
                prop_assert!((0.0..=1.0).contains(&o));
            }
            if let Some(e) = w.resource_efficiency() {
                prop_assert!((0.0..=1.0).contains(&e));
            }
            let report = m.report(w);
            prop_assert!(report.to_markdown().contains("## Recommendations"));
            let json = serde_json::to_string(w).unwrap();
            let back: Window = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.tasks, w.tasks);
        }
        prop_assert!(m.windows().len() <= 4);
        let _ = m.drain_anomalies().count();
        prop_assert_eq!(m.stats().pending_anomalies, 0);
    }
}

// ----- snapshots ----------------------------------------------------------------------

/// The monitor's whole state as JSON: two monitors that would go on alike give the
/// same text.
fn state(m: &Monitor) -> String {
    serde_json::to_string(&m.snapshot()).unwrap()
}

proptest! {
    #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/monitor_snapshot.txt"))]
    /// A monitor restored from its snapshot, through JSON, at any point of any event
    /// stream (out of order, replayed, past every limit, jumping ahead of the kept
    /// windows) and fed the rest is the monitor that never stopped: the same state,
    /// windows, anomalies and reports. And every state reached restores, to itself:
    /// no snapshot the monitor writes is refused.
    #[test]
    fn a_restored_monitor_goes_on_as_the_original(
        events in proptest::collection::vec(arb_event(), 0..120),
        split in 0usize..120,
        limits in (1usize..8, 3usize..5, 1usize..4, 1usize..3, 1usize..6),
        flags in (any::<bool>(), any::<bool>()),
    ) {
        let config = MonitorConfig::default()
            .with_window(Duration::from_secs(2 * HOUR))
            .with_detect_every(Duration::from_secs(HOUR / 4))
            .with_keep_windows(4)
            .with_max_tasks_in_flight(limits.0)
            .with_max_resources(limits.1)
            .with_max_agents(limits.2)
            .with_max_open_conflicts(limits.3)
            .with_max_anomalies(limits.4)
            .with_detect_agents(flags.0)
            .with_skip_replayed(flags.1)
            .with_detector(DetectorConfig::default().with_warm_up(3));
        let mut original = Monitor::new(config.clone()).unwrap();
        let mut restored = None;
        let (mut seq, mut now) = (0u64, 1_000_000i64);
        for (k, (seq_step, time_step, kind)) in events.into_iter().enumerate() {
            if k == split {
                let json = state(&original);
                let back = Monitor::restore(config.clone(), serde_json::from_str(&json).unwrap());
                let back = back.map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
                prop_assert_eq!(state(&back), json);
                restored = Some(back);
            }
            seq += seq_step;
            now = (now + time_step).max(0);
            let event = Event { seq, at: Timestamp::from_secs(now as u64), kind };
            original.ingest(&event);
            let same = Monitor::restore(config.clone(), original.snapshot());
            let same = same.map_err(|e| TestCaseError::fail(format!("after event {k}: {e}")))?;
            prop_assert_eq!(same.snapshot(), original.snapshot());
            // The clock's position is not stored but follows from `now`: the same
            // deadline, and the same window in progress.
            prop_assert_eq!(same.next_deadline(), original.next_deadline());
            prop_assert_eq!(same.current_window(), original.current_window());
            if let Some(r) = restored.as_mut() {
                r.ingest(&event);
            }
        }
        let mut restored = restored.unwrap_or_else(|| {
            Monitor::restore(config.clone(), original.snapshot()).unwrap()
        });
        for m in [&mut original, &mut restored] {
            m.advance(Timestamp::from_secs(now as u64 + 3 * HOUR));
        }
        prop_assert_eq!(state(&restored), state(&original));
        prop_assert_eq!(restored.current_window(), original.current_window());
        prop_assert!(restored.windows().eq(original.windows()));
        prop_assert_eq!(restored.daily_report(), original.daily_report());
        prop_assert_eq!(restored.stats(), original.stats());
        let taken: Vec<Anomaly> = restored.drain_anomalies().collect();
        prop_assert_eq!(taken, original.drain_anomalies().collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(crate::proptest_config(64, "tests/proptest-regressions/monitor_idle.txt"))]
    /// Whatever the events, a monitor moved to each one in a single jump ends as one
    /// walked there deadline by deadline: the idle intervals counted in one step
    /// leave the state, windows and anomalies that closing them one by one does.
    #[test]
    fn a_jump_and_a_walk_to_the_same_time_agree(
        events in proptest::collection::vec(arb_event(), 0..80),
        agents in any::<bool>(),
    ) {
        let config = MonitorConfig::default()
            .with_window(Duration::from_secs(2 * HOUR))
            .with_detect_every(Duration::from_secs(10))
            .with_keep_windows(4)
            .with_detect_agents(agents)
            // A replay skipped does not move the clock: walked to, it would.
            .with_skip_replayed(false)
            .with_detector(DetectorConfig::default().with_warm_up(3).with_history(8));
        let mut jumper = Monitor::new(config.clone()).unwrap();
        let mut walker = Monitor::new(config).unwrap();
        let (mut seq, mut now) = (0u64, 1_000_000i64);
        // Within the kept windows: a jump past them skips windows a walk builds.
        let walk = |m: &mut Monitor, to: Timestamp| {
            while let Some(d) = m.next_deadline().filter(|d| *d <= to) {
                m.advance(d);
            }
        };
        for (seq_step, time_step, kind) in events {
            seq += seq_step;
            now = (now + time_step.min(5 * HOUR as i64)).max(0);
            let event = Event { seq, at: Timestamp::from_secs(now as u64), kind };
            jumper.ingest(&event);
            walk(&mut walker, event.at);
            walker.ingest(&event);
        }
        let end = Timestamp::from_secs(now as u64 + 3 * HOUR);
        jumper.advance(end);
        walk(&mut walker, end);
        walker.advance(end);
        prop_assert!(jumper.visited <= walker.visited);
        prop_assert_eq!(state(&jumper), state(&walker));
        prop_assert!(jumper.windows().eq(walker.windows()));
        prop_assert_eq!(jumper.current_window(), walker.current_window());
        let taken: Vec<Anomaly> = jumper.drain_anomalies().collect();
        prop_assert_eq!(taken, walker.drain_anomalies().collect::<Vec<_>>());
    }
}
