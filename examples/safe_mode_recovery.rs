//! A system-wide agent failure: safe mode entered by rule, the agents restarted in
//! waves, and the system back to normal, on a simulated clock.
//!
//! Three of six workers fail within two minutes: the coordinator enters safe mode by
//! itself (the escalation ladder's "multiple agents fail", a [`SafeModeRules`]
//! default), and new work is held back. The host runs
//! [`runbooks::safe_mode_recovery`]: the library's [`Builtins`] take the steps that
//! are the coordinator's own (enter safe mode, restart the agents in waves of two,
//! exit safe mode), the host's agents the rest (diagnose, validate). One worker does
//! not come back on its first restart, so the first wave's health gate fails and the
//! step is retried after its back-off; safe mode is left only when every watched
//! agent passes the gate, and the held work starts.
//!
//! Run with `cargo run --example safe_mode_recovery`.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{AssignOutcome, Coordinator, EventKind, SafeModeRules};
use concord::policy::{PolicySet, SafeModeRule};
use concord::workflow::{Builtins, Executor, Restarter, SimulatedTimer, StepChange, runbooks};
use concord::{
    AgentId, AgentProfile, AgentStatus, ManualClock, Requirements, Role, RuleBasedAnalyzer,
    RuleSet, SystemMode, Task, TaskId, Timestamp,
};
use parking_lot::Mutex;

/// A worker process: up or down; its health check answers only when it is up.
#[derive(Debug)]
struct Worker {
    id: AgentId,
    up: AtomicBool,
    /// Restarts that start the process but leave it unable to reach the broker.
    bad_starts: AtomicU32,
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
        if self.up.load(Ordering::SeqCst) {
            Ok(AgentHealth::new("2.3.1"))
        } else {
            Err(AgentError::Unreachable {
                reason: "broker refused the connection".into(),
            })
        }
    }
}

/// The host's process supervisor: a restart takes 20 simulated seconds.
#[derive(Debug)]
struct Supervisor {
    clock: ManualClock,
    workers: BTreeMap<AgentId, Arc<Worker>>,
    log: Arc<Mutex<Vec<String>>>,
}

#[concord::async_trait]
impl Restarter for Supervisor {
    async fn restart(&self, agent: AgentId) -> Result<(), AgentError> {
        self.clock.advance(Duration::from_secs(20));
        let worker = &self.workers[&agent];
        let bad = worker
            .bad_starts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        worker.up.store(!bad, Ordering::SeqCst);
        self.log.lock().push(format!(
            "restarted {agent}{}",
            if bad {
                " (it cannot reach the broker yet)"
            } else {
                ""
            }
        ));
        Ok(())
    }
}

/// The host's own part of the procedure: diagnosis (ops) and validation (qa).
#[derive(Debug)]
struct Host {
    id: AgentId,
    clock: ManualClock,
}

#[concord::async_trait]
impl Agent for Host {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        self.clock.advance(Duration::from_secs(60));
        let out = WorkOutput::success();
        Ok(match work.kind() {
            "diagnose" => out.with_output("cause", "message broker ran out of file descriptors"),
            "verify" => out.with_output(
                "checked",
                format!("restarted: [{}]", work.input("restarted").unwrap_or("")),
            ),
            _ => out.with_output("notified", "on-call paged"),
        })
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let wall = Instant::now();
    let start = Timestamp::from_secs(1_000);
    let clock = ManualClock::new(start);
    let since = |t: Timestamp| t.duration_since(start).as_secs();

    // Safe mode admits the coordinator's own work always; the host's recovery
    // duties are admitted here by name, and nothing else.
    let mut safe_mode = SafeModeRule::default();
    for duty in ["diagnose", "verify", "notify"] {
        safe_mode = safe_mode.with_allowed(duty);
    }
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty())?)
            .policies(PolicySet::default().with_rule(safe_mode)?)
            // The procedures' defaults: 3 agents failing within 5 minutes.
            .safe_mode_rules(SafeModeRules::default())?
            .build(),
    );
    let worker_role = Role::new("worker")?;
    let workers: BTreeMap<AgentId, Arc<Worker>> = (11..=16)
        .map(|n| {
            let id = AgentId::new(n);
            let worker = Arc::new(Worker {
                id,
                up: AtomicBool::new(true),
                bad_starts: AtomicU32::new(u32::from(n == 13)),
            });
            (id, worker)
        })
        .collect();
    for id in workers.keys() {
        coordinator.register_agent(
            AgentProfile::new(*id, format!("worker-{}", id.get())).with_role(worker_role.clone()),
        )?;
    }
    for (id, role) in [(1, "ops"), (2, "qa"), (3, "human")] {
        coordinator.register_agent(
            AgentProfile::new(AgentId::new(id), role).with_role(Role::new(role)?),
        )?;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let builtins = Arc::new(
        Builtins::new(Arc::clone(&coordinator), AgentId::new(100))
            .with_wave_size(2)
            .with_restarter(Supervisor {
                clock: clock.clone(),
                workers: workers.clone(),
                log: Arc::clone(&log),
            })
            .watching(workers.values().map(|w| Arc::clone(w) as Arc<dyn Agent>)),
    );
    coordinator.register_agent(builtins.profile())?;

    // Three workers fail within two minutes: safe mode, by rule.
    for (n, minutes) in [(12, 0), (13, 1), (15, 2)] {
        clock.set(start + Duration::from_secs(60 * minutes));
        let id = AgentId::new(n);
        workers[&id].up.store(false, Ordering::SeqCst);
        coordinator.set_agent_status(id, AgentStatus::Unhealthy)?;
        println!(
            "t+{:>4}s  {id} failed its health check",
            since(coordinator.now())
        );
    }
    for event in coordinator.drain_events() {
        if let EventKind::SafeModeTriggered { trigger } = &event.kind {
            println!(
                "t+{:>4}s  safe mode by rule `{}`: {trigger}",
                since(event.at),
                trigger.rule()
            );
        }
    }
    // New work is held back until normal mode.
    let report = Task::new(TaskId::new(1), "report", "nightly usage report")
        .with_requirements(Requirements::new().with_role(worker_role.clone()));
    if let AssignOutcome::Queued { task, .. } = coordinator.assign(report)? {
        println!(
            "t+{:>4}s  new task {task} waits {}",
            since(coordinator.now()),
            coordinator.why_waiting(task).unwrap_or_default()
        );
    }

    // The recovery runbook: the built-in steps on the built-ins, the rest on the host.
    let host = |id| {
        Arc::new(Host {
            id: AgentId::new(id),
            clock: clock.clone(),
        })
    };
    let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock.clone()))
        .with_agent(builtins.clone())
        .with_agent(host(1))
        .with_agent(host(2))
        .with_agent(host(3));
    let workflow = runbooks::safe_mode_recovery();
    let run = futures::executor::block_on(executor.run(&workflow, "recovery-1", 7))?;

    println!("\nrunbook `{}` (run {}):", workflow.name(), run.id());
    for event in run.history() {
        let what = match &event.change {
            StepChange::Ready => continue,
            StepChange::Started => "started".to_owned(),
            StepChange::Succeeded { outputs } => format!("succeeded {outputs:?}"),
            StepChange::AttemptFailed {
                reason,
                retry_at: Some(at),
                ..
            } => format!("FAILED ({reason}); retry at t+{}s", since(*at)),
            StepChange::AttemptFailed { reason, .. } => format!("FAILED for good ({reason})"),
            StepChange::Skipped { condition } => format!("skipped (condition {condition:?})"),
            other => format!("{other:?}"),
        };
        println!(
            "  t+{:>4}s  {:<30} attempt {}  {:<10} {what}",
            since(event.at),
            run.name(event.step).unwrap_or("?"),
            event.attempt,
            event
                .agent
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        );
    }
    println!("\nthe supervisor:");
    for line in log.lock().iter() {
        println!("  {line}");
    }
    println!("\nmode changes and the held task:");
    for event in coordinator.drain_events() {
        match event.kind {
            EventKind::ModeChanged { from, to, .. } => {
                println!("  t+{:>4}s  {from} -> {to}", since(event.at))
            }
            EventKind::TaskAssigned { assignment } if assignment.task.id() == TaskId::new(1) => {
                println!(
                    "  t+{:>4}s  {} started on {}",
                    since(event.at),
                    assignment.task.id(),
                    assignment.agent
                )
            }
            _ => {}
        }
    }
    let down =
        coordinator.with_registry(|r| r.iter().filter(|v| !v.status().is_in_service()).count());
    println!(
        "\noutcome: {} after {}s of simulated time; mode {}; {down} agents out of service ({} ms wall clock)",
        run.outcome()
            .map_or_else(|| "unfinished".to_owned(), |o| format!("{o:?}")),
        since(coordinator.now()),
        coordinator.mode(),
        wall.elapsed().as_millis(),
    );
    assert_eq!(
        coordinator.mode(),
        SystemMode::Normal,
        "the recovery ends in normal mode"
    );
    Ok(())
}
