//! The daily performance review: a simulated day of a small fleet, its coordinator's
//! events fed to a `Monitor` as they come, and the day's report printed as Markdown:
//! key metrics, the anomaly found, the bottleneck, and the recommendations.
//!
//! The day: two ops agents deploy every hour and run a migration that needs the same
//! staging environment (so the migration waits behind the deploy, in a conflict that
//! the deploy's end resolves); two QA agents test every few minutes, asking for
//! twice the memory they use; one render agent gets a render every four minutes,
//! each taking five, and falls behind all day. At 16:00 a bad build makes most tests
//! fail for an hour.
//!
//! Run with `cargo run --example daily_report`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concord::coordinator::{AssignOutcome, Assignment, Coordinator};
use concord::monitor::{Monitor, MonitorConfig};
use concord::resource::StaticPredictor;
use concord::task::Requirements;
use concord::{
    AgentId, AgentProfile, Capability, Claim, Clock, ManualClock, Resources, Task, TaskId,
    Timestamp,
};

/// 2025-07-08T00:00:00Z.
const MIDNIGHT: u64 = 1_751_932_800;

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

fn agent(id: u64, name: &str, cap: &str, slots: u32, capacity: &str) -> AgentProfile {
    AgentProfile::new(AgentId::new(id), name)
        .with_capability(Capability::new(cap).expect("valid capability"))
        .with_max_tasks(slots)
        .with_capacity(res(capacity))
}

/// A task of `kind`, needing `cap` and `needs`, maybe claiming the staging environment.
fn task(id: u64, kind: &str, cap: &str, needs: &str, staging: bool) -> Task {
    let mut req = Requirements::new()
        .with_capability(Capability::new(cap).expect("valid capability"))
        .with_resources(res(needs));
    if staging {
        req = req.with_claim(Claim::exclusive("env:staging"));
    }
    Task::new(TaskId::new(id), kind, format!("{kind} #{id}")).with_requirements(req)
}

/// How long a task of `kind` runs, and what it uses.
fn plan(kind: &str) -> (u64, &'static str) {
    match kind {
        "deploy" => (30, "cpu=1,memory=2Gi"),
        "migrate" => (10, "cpu=500m,memory=1Gi"),
        "test" => (10, "cpu=1,memory=1Gi"),
        _ => (5, "cpu=2,memory=3Gi"), // render
    }
}

/// The running tasks, by the minute they end.
#[derive(Default)]
struct Running(BTreeMap<(u64, u64), Arc<Assignment>>);

impl Running {
    fn start(&mut self, minute: u64, a: Arc<Assignment>) {
        let (minutes, _) = plan(a.task.kind());
        self.0.insert((minute + minutes, a.task.id().get()), a);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Timestamp::from_secs(MIDNIGHT));
    let coordinator = Coordinator::builder()
        .clock(clock.clone())
        .predictor(StaticPredictor::new())
        .build();
    for p in [
        agent(1, "ops-1", "deploy", 2, "cpu=4,memory=8Gi"),
        agent(2, "ops-2", "deploy", 2, "cpu=4,memory=8Gi"),
        agent(3, "render-1", "render", 1, "cpu=2,memory=4Gi"),
        agent(4, "qa-1", "test", 3, "cpu=4,memory=8Gi"),
        agent(5, "qa-2", "test", 3, "cpu=4,memory=8Gi"),
    ] {
        coordinator.register_agent(p)?;
    }

    // The defaults: daily windows, hourly anomaly detection, the procedures' thresholds.
    let mut monitor = Monitor::new(MonitorConfig::default())?;
    let mut running = Running::default();
    let mut next_id = 0;
    let mut events = Vec::new();
    for minute in 0..24 * 60 {
        let hour = minute / 60;
        // Work arriving this minute.
        let mut arriving = Vec::new();
        if minute % 60 == 0 {
            arriving.push(("deploy", "deploy", "cpu=1,memory=2Gi", true));
        }
        if minute % 60 == 15 {
            arriving.push(("migrate", "deploy", "cpu=500m,memory=1Gi", true));
        }
        if minute % 3 == 0 {
            arriving.push(("test", "test", "cpu=1,memory=2Gi", false));
        }
        if minute % 4 == 0 {
            arriving.push(("render", "render", "cpu=2,memory=3Gi", false));
        }
        for (kind, cap, needs, staging) in arriving {
            next_id += 1;
            if let AssignOutcome::Assigned(a) =
                coordinator.assign(task(next_id, kind, cap, needs, staging))?
            {
                running.start(minute, a);
            }
        }
        // Work ending this minute; what it frees starts waiting work.
        while let Some(entry) = running.0.first_entry() {
            if entry.key().0 > minute {
                break;
            }
            let a = entry.remove();
            let (_, used) = plan(a.task.kind());
            // The bad build: from 16:00 to 17:00, four tests in five fail.
            let failed = a.task.kind() == "test" && hour == 16 && a.task.id().get() % 5 != 0;
            for started in coordinator.complete(a.task.id(), !failed, Some(res(used)))? {
                running.start(minute, started);
            }
        }
        // The host drains the coordinator's events (and would journal them too).
        coordinator.drain_events_into(&mut events);
        monitor.ingest_all(&events);
        events.clear();
        clock.advance(Duration::from_secs(60));
    }
    // Midnight: the day's window closes.
    monitor.advance(clock.now());
    let report = monitor.daily_report().expect("the day is closed");
    println!("{}", report.to_markdown());
    Ok(())
}
