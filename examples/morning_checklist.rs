//! The morning startup checklist over a fleet where one agent is slow and one is
//! down: one call runs the system health checks, reviews the night the monitor
//! saw, and reads the resource status and agent connectivity, as one report.
//!
//! ```text
//! cargo run --example morning_checklist
//! ```

use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::Coordinator;
use concord::health::{
    AgentsCheck, CheckOutcome, CoordinationCheck, Diagnostics, ResourcesCheck, check_fn,
};
use concord::monitor::{Monitor, MonitorConfig};
use concord::task::{Requirements, RuleBasedAnalyzer, RuleSet, Task};
use concord::{
    AgentId, AgentProfile, Clock, ManualClock, Resources, Role, SimulatedTimer, TaskId, Timer,
    Timestamp,
};

/// How an agent answers a health ping.
#[derive(Debug, Clone, Copy)]
enum Answers {
    After(Duration),
    Refused,
}

#[derive(Debug)]
struct Worker {
    id: AgentId,
    answers: Answers,
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
        match self.answers {
            Answers::After(d) => {
                self.timer.sleep_until(self.clock.now() + d).await;
                Ok(AgentHealth::new("3.1.0"))
            }
            Answers::Refused => Err(AgentError::Unreachable {
                reason: "connection refused".into(),
            }),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let evening = Timestamp::from_secs(1_764_957_600); // 18:00 UTC
    let clock = ManualClock::new(evening);
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty())?)
            .build(),
    );
    let role = Role::new("worker")?;
    let answers = [
        Answers::After(Duration::from_millis(35)),
        Answers::After(Duration::from_millis(1_800)), // slow
        Answers::Refused,                             // down
        Answers::After(Duration::from_millis(50)),
    ];
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let id = AgentId::new(i as u64 + 1);
        coordinator.register_agent(
            AgentProfile::new(id, format!("worker-{}", i + 1))
                .with_role(role.clone())
                .with_capacity(Resources::new().with_cpu_millis(4000))
                .with_max_tasks(2),
        )?;
        agents.push(Arc::new(Worker {
            id,
            answers: *a,
            clock: clock.clone(),
            timer: SimulatedTimer::new(clock.clone()),
        }));
    }

    // The night: a batch job every half hour; two of them fail.
    let mut monitor =
        Monitor::new(MonitorConfig::default().with_window(Duration::from_secs(3600)))?;
    for n in 0..28u64 {
        let at = evening + Duration::from_secs(1800 * n);
        clock.set(at);
        let task = Task::new(TaskId::new(n + 1), "nightly", "nightly batch").with_requirements(
            Requirements::new()
                .with_role(role.clone())
                .with_resources(Resources::new().with_cpu_millis(1000)),
        );
        coordinator.assign(task)?;
        clock.set(at + Duration::from_secs(1200));
        let ok = n % 13 != 5;
        coordinator.complete(TaskId::new(n + 1), ok, None)?;
        for e in coordinator.drain_events() {
            monitor.ingest(&e);
        }
    }
    let morning = evening + Duration::from_secs(14 * 3600);
    clock.set(morning);
    monitor.advance(morning);

    let timer = SimulatedTimer::new(clock.clone());
    let diagnostics = Diagnostics::new(clock.clone(), timer.clone())
        .with_check(AgentsCheck::new(agents, clock.clone(), timer.clone()))
        .with_check(ResourcesCheck::new(Arc::clone(&coordinator)))
        .with_check(CoordinationCheck::new(Arc::clone(&coordinator)))
        .with_check_timeout(
            check_fn("network", || async {
                Ok(CheckOutcome::healthy("gateway answers in 4 ms").with_detail("rtt_ms", 4))
            }),
            Duration::from_secs(5),
        );
    let report = futures::executor::block_on(diagnostics.morning_checklist(&monitor, evening));
    println!("{}", report.to_markdown());
    Ok(())
}
