//! A simulated day on a small fleet, drawn as the operations, performance and
//! capacity dashboard: one self-contained HTML page.
//!
//! Tasks arrive all day, heavier in the afternoon; an agent drops off after lunch
//! and comes back; the monitor, the alerting and the health checks take it all in.
//!
//! ```text
//! cargo run --example dashboard -- target/dashboard.html
//! ```
//!
//! Serve or open the page: it needs nothing else (no script, font or file).

use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::alert::{AlertConfig, AlertManager, alerts_from_event};
use concord::coordinator::Coordinator;
use concord::dashboard::{CapacityView, Dashboard, OperationsView, PerformanceView};
use concord::health::{AgentsCheck, CoordinationCheck, Diagnostics, ResourcesCheck};
use concord::monitor::{Monitor, MonitorConfig};
use concord::task::{Requirements, RuleBasedAnalyzer, RuleSet, Task};
use concord::{
    AgentId, AgentProfile, AgentStatus, Clock, ManualClock, Resources, Role, SimulatedTimer,
    TaskId, Timer, Timestamp,
};

/// An agent that answers health pings, after `delay` (one of them is slow).
#[derive(Debug)]
struct Worker {
    id: AgentId,
    delay: Duration,
    clock: ManualClock,
    timer: SimulatedTimer,
}

#[concord::async_trait]
impl Agent for Worker {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success())
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        self.timer.sleep_until(self.clock.now() + self.delay).await;
        Ok(AgentHealth::new("2.3.1"))
    }
}

/// A tiny deterministic generator, so the day is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/dashboard.html".to_owned());
    let start = Timestamp::from_secs(1_764_892_800); // a midnight, UTC
    let clock = ManualClock::new(start);
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty())?)
            .build(),
    );
    let role = Role::new("worker")?;
    let agents: Vec<Arc<dyn Agent>> = (1..=5)
        .map(|i| {
            Arc::new(Worker {
                id: AgentId::new(i),
                delay: Duration::from_millis(if i == 3 { 2_400 } else { 40 + 10 * i }),
                clock: clock.clone(),
                timer: SimulatedTimer::new(clock.clone()),
            }) as Arc<dyn Agent>
        })
        .collect();
    for a in &agents {
        coordinator.register_agent(
            AgentProfile::new(a.id(), format!("worker-{}", a.id().get()))
                .with_role(role.clone())
                .with_capacity(Resources::new().with_cpu_millis(8000))
                .with_max_tasks(3),
        )?;
    }
    let mut monitor = Monitor::new(
        MonitorConfig::default()
            .with_window(Duration::from_secs(3600))
            .with_keep_windows(48),
    )?;
    let mut alerts = AlertManager::new(AlertConfig::default())?;
    let mut rng = Lcg(7);
    let mut next_task = 1;
    let minute = Duration::from_secs(60);
    for m in 0..24 * 60u64 {
        let now = start + minute * u32::try_from(m)?;
        clock.set(now);
        let hour = m / 60;
        // Heavier in the afternoon: about two tasks in three minutes, one in four
        // otherwise.
        let arrivals = if (13..18).contains(&hour) {
            u64::from(rng.below(3) > 0)
        } else {
            u64::from(rng.below(4) == 0)
        };
        for _ in 0..arrivals {
            let cpu = 500 + 250 * rng.below(6);
            let task = Task::new(TaskId::new(next_task), "build", "build the service")
                .with_requirements(
                    Requirements::new()
                        .with_role(role.clone())
                        .with_resources(Resources::new().with_cpu_millis(cpu)),
                );
            next_task += 1;
            coordinator.assign(task)?;
        }
        // Worker 4 drops off after lunch, and is back an hour and a half later.
        if m == 14 * 60 {
            coordinator.set_agent_status(AgentId::new(4), AgentStatus::Offline)?;
        }
        if m == 15 * 60 + 30 {
            coordinator.set_agent_status(AgentId::new(4), AgentStatus::Available)?;
        }
        // Worker 5 stops answering late in the evening: its alert still fires.
        if m == 23 * 60 {
            coordinator.set_agent_status(AgentId::new(5), AgentStatus::Unhealthy)?;
        }
        // Work that ends now (each task runs 5 to 24 minutes) reports what it used:
        // 60% to 100% of what it was given. Completions and ticks start what waited.
        for a in coordinator.assignments() {
            let runs = minute * u32::try_from(5 + a.task.id().get() * 7_919 % 20)?;
            if a.assigned_at + runs <= now {
                let used = a.resources.cpu_millis() * (60 + rng.below(41)) / 100;
                let usage = Resources::new().with_cpu_millis(used);
                coordinator.complete(a.task.id(), true, Some(usage))?;
            }
        }
        coordinator.tick();
        for event in coordinator.drain_events() {
            monitor.ingest(&event);
            for change in alerts_from_event(&event) {
                alerts.apply(change, event.at)?;
            }
        }
        monitor.advance(now);
        alerts.handle_timeout(now);
        alerts.drain_notifications().for_each(drop); // a host sends these on
    }

    let diagnostics = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()))
        .with_check(AgentsCheck::new(
            agents,
            clock.clone(),
            SimulatedTimer::new(clock.clone()),
        ))
        .with_check(ResourcesCheck::new(Arc::clone(&coordinator)))
        .with_check(CoordinationCheck::new(Arc::clone(&coordinator)));
    let health = futures::executor::block_on(diagnostics.run());

    let mut dashboard = Dashboard::new("Build fleet: one day", clock.now());
    dashboard.operations = OperationsView::from_coordinator(&coordinator)
        .with_alerts(&alerts)
        .with_health(health);
    dashboard.performance = PerformanceView::from_monitor(&monitor);
    dashboard.capacity = CapacityView::from_parts(&coordinator, &monitor, 24);
    let html = dashboard.to_html();
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &html)?;
    println!(
        "{} tasks, {} windows, {} alerts firing, health {}; wrote {} ({} bytes)",
        next_task - 1,
        monitor.windows().len(),
        dashboard.operations.alerts.len(),
        dashboard
            .operations
            .health
            .as_ref()
            .map_or_else(|| "not run".into(), |h| h.overall().to_string()),
        out,
        html.len()
    );
    for finding in &dashboard.performance.findings {
        println!("  {finding}");
    }
    Ok(())
}
