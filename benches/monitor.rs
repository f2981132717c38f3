//! Monitor benches.
//!
//! - `monitor/ingest/{agents}`: the events a coordinator made for a steady stream of
//!   tasks (a quarter of a slot per agent waiting: queued, assigned from the queue,
//!   completed with their usage), taken in by a fresh `Monitor` in one pass; elements
//!   are events. The stream spans minutes, so this is the per-event path alone. For
//!   10,000 agents, the stream is a hundred shards of 100 agents each, their events
//!   interleaved with the ids made distinct (the coordinator's own assignment at
//!   10,000 agents would take the bench's time making the events).
//! - `monitor/boundary/{agents}`: one detection boundary: every fleet series and every
//!   agent's utilization to its anomaly detector, all past their warm-up (the hourly
//!   work at the defaults).
//! - `monitor/report/{agents}`: the window in progress as a `Window`, its daily report
//!   (summary, findings, bottlenecks, recommendations), and that report as Markdown.
//! - `monitor/sketch_add/{concord,sketches-ddsketch}`: adding a million values to a
//!   quantile sketch, against the `sketches-ddsketch` crate at the same settings (1%,
//!   2048 buckets).

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use concord::coordinator::{AssignOutcome, Coordinator, Event, EventKind};
use concord::dashboard::{Dashboard, PerformanceView};
use concord::monitor::{DailyReport, Monitor, MonitorConfig, QuantileSketch, Thresholds};
use concord::resource::StaticPredictor;
use concord::task::Requirements;
use concord::{AgentId, AgentProfile, Capability, ManualClock, Resources, Task, TaskId, Timestamp};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

/// The events of `tasks` tasks through a coordinator of `agents` agents with four
/// slots each, one every millisecond, each task completed as soon as a quarter of a
/// slot per agent waits behind the running ones.
fn stream(agents: u64, tasks: u64) -> Vec<Event> {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let c = Coordinator::builder()
        .clock(clock.clone())
        .predictor(StaticPredictor::new())
        .build();
    let cap = Capability::new("work").unwrap();
    for a in 0..agents {
        let p = AgentProfile::new(AgentId::new(a), "worker")
            .with_capability(cap.clone())
            .with_max_tasks(4)
            .with_capacity("cpu=8,memory=16Gi".parse().unwrap());
        c.register_agent(p).unwrap();
    }
    let needs: Resources = "cpu=1,memory=1Gi".parse().unwrap();
    let used: Resources = "cpu=700m,memory=900Mi".parse().unwrap();
    let target = (4 * agents + agents / 4) as usize;
    let mut running = VecDeque::new();
    let mut queued = 0usize;
    let mut events = Vec::new();
    for t in 0..tasks {
        clock.advance(Duration::from_millis(1));
        let task = Task::new(TaskId::new(t), "work", "work").with_requirements(
            Requirements::new()
                .with_capability(cap.clone())
                .with_resources(needs.clone()),
        );
        match c.assign(task).unwrap() {
            AssignOutcome::Assigned(a) => running.push_back(a.task.id()),
            AssignOutcome::Queued { .. } => queued += 1,
            other => panic!("{other}"),
        }
        while running.len() + queued > target {
            let done = running.pop_front().expect("a running task");
            let started = c.complete(done, t % 50 != 0, Some(used.clone())).unwrap();
            queued -= started.len();
            running.extend(started.iter().map(|a| a.task.id()));
        }
        if t % 4096 == 0 {
            c.drain_events_into(&mut events);
        }
    }
    c.drain_events_into(&mut events);
    events
}

/// `base` (a stream of agents `0..agents`) as `copies` shards: each event once per
/// shard, with shard `k`'s agents and tasks renumbered apart, numbered in order.
fn shards(base: &[Event], agents: u64, copies: u64) -> Vec<Event> {
    let agent = |a: AgentId, k: u64| AgentId::new(a.get() + k * agents);
    let task = |t: TaskId, k: u64| TaskId::new(t.get() + (k << 40));
    let mut out = Vec::with_capacity(base.len() * copies as usize);
    for e in base {
        for k in 0..copies {
            let mut e = e.clone();
            match &mut e.kind {
                EventKind::AgentRegistered { profile } => {
                    let p = AgentProfile::new(agent(profile.id(), k), profile.name())
                        .with_capabilities(profile.capabilities().iter().cloned())
                        .with_max_tasks(profile.max_tasks());
                    **profile = match profile.capacity() {
                        Some(c) => p.with_capacity(c.clone()),
                        None => p,
                    };
                }
                EventKind::TaskAssigned { assignment } => {
                    let a = Arc::make_mut(assignment);
                    a.agent = agent(a.agent, k);
                    a.task = Task::new(
                        task(a.task.id(), k),
                        a.task.shared_kind(),
                        a.task.shared_description(),
                    )
                    .with_requirements(a.task.requirements().clone());
                }
                EventKind::TaskQueued { task: t, .. } => *t = task(*t, k),
                EventKind::TaskCompleted {
                    task: t, agent: a, ..
                } => {
                    *t = task(*t, k);
                    *a = agent(*a, k);
                }
                _ => {}
            }
            e.seq = out.len() as u64 + 1;
            out.push(e);
        }
    }
    out
}

fn bench_monitor(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor");
    group.sample_size(10);
    for agents in [100u64, 10_000] {
        let events = if agents == 100 {
            stream(100, 300_000)
        } else {
            shards(&stream(100, 3_000), 100, agents / 100)
        };
        let config = MonitorConfig::default();

        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_with_input(BenchmarkId::new("ingest", agents), &events, |b, events| {
            b.iter_batched_ref(
                || Monitor::new(config.clone()).unwrap(),
                |m| m.ingest_all(events),
                BatchSize::PerIteration,
            )
        });

        let mut fed = Monitor::new(config.clone()).unwrap();
        fed.ingest_all(&events);
        // A day on, every detector is past its warm-up.
        for _ in 0..24 {
            fed.advance(fed.next_deadline().unwrap());
        }
        let deadline = fed.next_deadline().unwrap();
        group.throughput(Throughput::Elements(agents));
        group.bench_with_input(BenchmarkId::new("boundary", agents), &fed, |b, fed| {
            b.iter_batched_ref(
                || fed.clone(),
                |m| m.advance(deadline),
                BatchSize::PerIteration,
            )
        });

        group.bench_with_input(BenchmarkId::new("window", agents), &fed, |b, fed| {
            b.iter(|| black_box(fed.current_window()))
        });
        // The day the stream ran in, closed by the advance above (else still open).
        let window = fed
            .last_window()
            .cloned()
            .unwrap_or_else(|| fed.current_window().unwrap());
        assert_eq!(window.agents.len() as u64, agents);
        let thresholds = Thresholds::default();
        group.bench_with_input(BenchmarkId::new("report", agents), &window, |b, w| {
            b.iter(|| black_box(DailyReport::new(w, &thresholds, Vec::new()).unwrap()))
        });
        let report = DailyReport::new(&window, &thresholds, Vec::new()).unwrap();
        group.bench_with_input(BenchmarkId::new("markdown", agents), &report, |b, r| {
            b.iter(|| black_box(r.to_markdown()))
        });
        // The performance dashboard: the view from the monitor (a bar per agent)
        // and the page drawn.
        group.bench_with_input(BenchmarkId::new("dashboard", agents), &fed, |b, fed| {
            b.iter(|| {
                let mut d = Dashboard::new("fleet", window.end);
                d.performance = PerformanceView::from_monitor(fed);
                black_box(d.to_html())
            })
        });
    }
    group.finish();
}

fn bench_sketch(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor/sketch_add");
    group.sample_size(20);
    // Waits in seconds, log-uniform from a millisecond to a day.
    let mut rng = Rng(7);
    let values: Vec<f64> = (0..1_000_000)
        .map(|_| 10f64.powf(-3.0 + 7.9 * (rng.next() >> 11) as f64 / (1u64 << 53) as f64))
        .collect();
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("concord", |b| {
        b.iter(|| {
            let mut s = QuantileSketch::default();
            for &v in &values {
                s.add(v);
            }
            black_box(s.quantile(0.99))
        })
    });
    group.bench_function("sketches-ddsketch", |b| {
        b.iter(|| {
            let mut s = sketches_ddsketch::DDSketch::new(sketches_ddsketch::Config::defaults());
            for &v in &values {
                s.add(v);
            }
            black_box(s.quantile(0.99).ok().flatten())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_monitor, bench_sketch);
criterion_main!(benches);
