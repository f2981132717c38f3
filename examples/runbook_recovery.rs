//! A system-wide agent failure, recovered with the safe-mode recovery runbook, on a
//! simulated clock.
//!
//! The host enters safe mode (no new assignments: an ordinary task is refused), then
//! runs [`runbooks::safe_mode_recovery`] with a policy set whose safe-mode rule admits
//! the recovery duties. The ops agents move the system through safe mode, recovery
//! and back to normal as they do the steps; the first incremental restart fails (one
//! agent does not come back) and the step is retried after its back-off.
//!
//! Run with `cargo run --example runbook_recovery`.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{AssignOutcome, Coordinator, EventKind};
use concord::policy::{PolicySet, SafeModeRule};
use concord::workflow::{Executor, SimulatedTimer, StepChange, runbooks};
use concord::{
    AgentId, AgentProfile, ManualClock, Role, RuleBasedAnalyzer, RuleSet, SystemMode, Task, TaskId,
    Timestamp,
};

/// An ops agent: it does each recovery step in simulated time, and changes the
/// system's mode when a step calls for it.
#[derive(Debug)]
struct Ops {
    id: AgentId,
    clock: ManualClock,
    coordinator: Arc<Coordinator>,
}

#[concord::async_trait]
impl Agent for Ops {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let out = WorkOutput::success();
        match work.description() {
            "enter_safe_mode" => {
                // The host may have entered safe mode already; this is idempotent.
                self.clock.advance(Duration::from_secs(5));
                self.coordinator.set_mode(SystemMode::SafeMode);
                Ok(out.with_output("state", "snapshot-0193"))
            }
            "diagnose_failure" => {
                self.clock.advance(Duration::from_secs(90));
                Ok(out.with_output("cause", "message broker ran out of file descriptors"))
            }
            "restart_agents_incrementally" => {
                self.coordinator.set_mode(SystemMode::Recovery);
                self.clock.advance(Duration::from_secs(40));
                if work.attempt() == 1 {
                    // The broker still refuses one agent's connection on the first try.
                    Ok(WorkOutput::failure("agent qa-1 did not come back"))
                } else {
                    Ok(out.with_output("restarted", "4/4 agents"))
                }
            }
            "exit_safe_mode" => {
                self.clock.advance(Duration::from_secs(5));
                self.coordinator.set_mode(SystemMode::Normal);
                Ok(out.with_output("mode", "normal"))
            }
            other => Ok(WorkOutput::failure(format!("ops does not know `{other}`"))),
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

/// The QA agent validates the recovery; the human is only called on failure.
#[derive(Debug)]
struct Checker {
    id: AgentId,
    clock: ManualClock,
}

#[concord::async_trait]
impl Agent for Checker {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        self.clock.advance(Duration::from_secs(30));
        let out = WorkOutput::success();
        Ok(match work.input("cause") {
            // notify_stakeholders: only called when the recovery failed.
            Some(cause) => out.with_output("notified", format!("stakeholders: {cause}")),
            None => {
                let restarted = work.input("restarted").unwrap_or("nothing");
                out.with_output("checked", format!("{restarted} healthy"))
            }
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
    let workflow = runbooks::safe_mode_recovery();

    // Outside normal mode the default policies admit nothing; admit the runbook's
    // duties (its step kinds), and only those.
    let mut safe_mode = SafeModeRule::default();
    for (_, spec) in workflow.steps() {
        safe_mode = safe_mode.with_allowed(spec.kind());
    }
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty())?)
            .policies(PolicySet::default().with_rule(safe_mode)?)
            .build(),
    );
    let names: BTreeMap<AgentId, &str> = [
        (AgentId::new(1), "ops-1"),
        (AgentId::new(2), "ops-2"),
        (AgentId::new(3), "qa-1"),
        (AgentId::new(4), "oncall"),
    ]
    .into();
    for (id, role) in [(1, "ops"), (2, "ops"), (3, "qa"), (4, "human")] {
        let id = AgentId::new(id);
        coordinator
            .register_agent(AgentProfile::new(id, names[&id]).with_role(Role::new(role)?))?;
    }

    // Immediate actions: safe mode stops new task assignments.
    println!("t+0s: system-wide agent failure detected; entering safe mode");
    coordinator.set_mode(SystemMode::SafeMode);
    let feature = Task::new(TaskId::new(1), "feature", "build the login page");
    match coordinator.assign(feature)? {
        AssignOutcome::Assigned(_) => println!("  unexpected: new work was assigned in safe mode"),
        AssignOutcome::Queued { task, .. } => {
            coordinator.cancel(task)?;
            println!("  new task {task} held back in safe mode")
        }
        AssignOutcome::Rejected { explanation, .. } => {
            println!("  new task refused in safe mode: {explanation}")
        }
        _ => println!("  new task not assigned"),
    }

    // Recovery: the runbook, with agents that act in simulated time.
    let ops = |id| {
        Arc::new(Ops {
            id: AgentId::new(id),
            clock: clock.clone(),
            coordinator: Arc::clone(&coordinator),
        })
    };
    let checker = |id| {
        Arc::new(Checker {
            id: AgentId::new(id),
            clock: clock.clone(),
        })
    };
    let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock.clone()))
        .with_agent(ops(1))
        .with_agent(ops(2))
        .with_agent(checker(3))
        .with_agent(checker(4));
    let run = futures::executor::block_on(executor.run(&workflow, "recovery-1", 7))?;

    println!("\nrunbook `{}` (run {}):", workflow.name(), run.id());
    for event in run.history() {
        let agent = event.agent.map(|a| names.get(&a).copied().unwrap_or("?"));
        let what = match &event.change {
            StepChange::Ready => continue,
            StepChange::Started => "started".to_owned(),
            StepChange::Succeeded { outputs } => format!("succeeded {outputs:?}"),
            StepChange::AttemptFailed {
                reason,
                retry_at: Some(at),
            } => format!("FAILED ({reason}); retry at t+{}s", since(*at)),
            StepChange::AttemptFailed { reason, .. } => format!("FAILED for good ({reason})"),
            StepChange::Skipped { condition } => format!("skipped (condition {condition:?})"),
            other => format!("{other:?}"),
        };
        println!(
            "  t+{:>4}s  {:<30} attempt {}  {:<7} {what}",
            since(event.at),
            run.name(event.step).unwrap_or("?"),
            event.attempt,
            agent.unwrap_or("-"),
        );
    }

    println!("\nmode changes:");
    for event in coordinator.drain_events() {
        if let EventKind::ModeChanged { from, to, .. } = event.kind {
            let at = event.at;
            println!("  t+{:>4}s  {from} -> {to}", since(at));
        }
    }

    let attempts: u32 = workflow
        .steps()
        .filter_map(|(step, _)| run.attempts(step))
        .sum();
    let retries = run
        .history()
        .iter()
        .filter(|e| {
            matches!(
                e.change,
                StepChange::AttemptFailed {
                    retry_at: Some(_),
                    ..
                }
            )
        })
        .count();
    println!(
        "\noutcome: {} after {}s of simulated time; {attempts} attempts, {retries} retried; mode {} ({} ms wall clock)",
        run.outcome()
            .map_or_else(|| "unfinished".to_owned(), |o| format!("{o:?}")),
        since(coordinator.now()),
        coordinator.mode(),
        wall.elapsed().as_millis(),
    );
    Ok(())
}
