//! A security breach, from detection to the post-incident review, on a simulated
//! clock.
//!
//! Intrusion detection flags a worker talking to an unknown host. The host reports
//! the breach: the coordinator enters safe mode and quarantines the worker, keeping
//! the evidence of what it held (its tasks and allocations) before handing its work
//! to others. The security breach runbook then runs: the library's [`Builtins`]
//! isolate a second suspect, stop external communications (a customer mail waits,
//! with the reason) and preserve the evidence (a backup of the agents' memory as it
//! is); the host's agents scan and patch, and the security team is told. People then
//! decide: communications resume, the second suspect is released, the first stays
//! quarantined. Every decision is in a hash-chained audit log, which verifies; the
//! incident it opened is printed with its timeline and review.
//!
//! Run with `cargo run --example security_incident`.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::audit::{
    AuditConfig, AuditError, AuditLog, ChainHead, IncidentConfig, Incidents, PostIncidentReview,
    entry_from_event, verify,
};
use concord::coordinator::{AssignOutcome, Coordinator, Decider};
use concord::memory::{InMemoryStore, Memory};
use concord::policy::{PolicySet, SafeModeRule};
use concord::workflow::{Builtins, Executor, SimulatedTimer, StepChange, runbooks};
use concord::{
    AgentId, AgentProfile, Capability, Clock, ManualClock, Requirements, Role, RuleBasedAnalyzer,
    RuleSet, SystemMode, Task, TaskId, Timestamp,
};

/// The host's security and ops agents, and the person on call: each step takes a
/// simulated minute.
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
            "security_scan" => out.with_output(
                "findings",
                "CVE-2026-1234 in the worker image's HTTP client",
            ),
            "patch" => out.with_output(
                "patched",
                format!("fixed {}", work.input("findings").unwrap_or("nothing")),
            ),
            _ => out.with_output(
                "paged",
                format!(
                    "security team: isolated {}",
                    work.input("isolated").unwrap_or("")
                ),
            ),
        })
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

/// The host's audit loop: the coordinator's decisions into the log, and the log
/// into the incident tracker.
fn record(
    coordinator: &Coordinator,
    log: &mut AuditLog,
    incidents: &mut Incidents,
) -> Result<(), AuditError> {
    for event in coordinator.drain_events() {
        if let Some(entry) = entry_from_event(&event) {
            incidents.record(log, entry, event.at)?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Timestamp::from_secs(1_767_225_600);
    let clock = ManualClock::new(start);
    let since = |t: Timestamp| t.duration_since(start).as_secs();

    // Safe mode admits the host's part of the breach procedure by name.
    let mut safe_mode = SafeModeRule::default();
    for duty in ["security_scan", "patch", "notify"] {
        safe_mode = safe_mode.with_allowed(duty);
    }
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty())?)
            .policies(PolicySet::default().with_rule(safe_mode)?)
            .build(),
    );
    let worker = Role::new("worker")?;
    let email = Capability::new("email")?;
    for n in 11..=14 {
        coordinator.register_agent(
            AgentProfile::new(AgentId::new(n), format!("worker-{n}"))
                .with_role(worker.clone())
                .with_capability(email.clone())
                .with_capacity("cpu=4".parse()?)
                .with_max_tasks(2),
        )?;
    }
    for (n, role) in [(1, "security"), (2, "ops"), (3, "human")] {
        coordinator
            .register_agent(AgentProfile::new(AgentId::new(n), role).with_role(Role::new(role)?))?;
    }
    // The agents' shared memory, and the built-in actions over it.
    let memory = Arc::new(Memory::new(Arc::new(InMemoryStore::new())));
    for (key, value) in [
        ("plan/release", "2.4.0 on friday"),
        ("customers/count", "1832"),
    ] {
        futures::executor::block_on(memory.put(key, value.as_bytes().to_vec()))?;
    }
    let builtins = Arc::new(
        Builtins::new(Arc::clone(&coordinator), AgentId::new(100)).with_memory(Arc::clone(&memory)),
    );
    coordinator.register_agent(builtins.profile())?;

    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let mut stored = Vec::new(); // the host's store

    // Ordinary work, on every worker.
    for n in 1..=6 {
        let task = Task::new(TaskId::new(n), "crunch", format!("nightly batch {n}"))
            .with_requirements(
                Requirements::new()
                    .with_role(worker.clone())
                    .with_resources("cpu=1".parse()?),
            );
        coordinator.assign(task)?;
    }
    record(&coordinator, &mut log, &mut incidents)?;

    // Detection: worker 12 talks to an unknown host; worker 13 shares its credentials.
    clock.advance(Duration::from_secs(300));
    let breached = AgentId::new(12);
    let taken =
        coordinator.report_security_breach(&[breached], "outbound traffic to 203.0.113.7")?;
    println!(
        "t+{:>4}s  breach reported on {breached}: mode {}, {} of its tasks handed to others",
        since(clock.now()),
        coordinator.mode(),
        taken.len()
    );
    builtins.report_affected(AgentId::new(13), "uses the same deploy key as agent#12");
    record(&coordinator, &mut log, &mut incidents)?;

    // The security breach runbook.
    let host = |n| {
        Arc::new(Host {
            id: AgentId::new(n),
            clock: clock.clone(),
        })
    };
    let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock.clone()))
        .with_agent(builtins.clone())
        .with_agent(host(1))
        .with_agent(host(2))
        .with_agent(host(3));
    let workflow = runbooks::security_breach_response();
    let run = futures::executor::block_on(executor.run(&workflow, "breach-1", 7))?;
    println!("\nrunbook `{}` (run {}):", workflow.name(), run.id());
    for event in run.history() {
        if let StepChange::Succeeded { outputs } = &event.change {
            println!(
                "  t+{:>4}s  {:<26} on {:<9} {outputs:?}",
                since(event.at),
                run.name(event.step).unwrap_or("?"),
                event
                    .agent
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            );
        }
    }
    record(&coordinator, &mut log, &mut incidents)?;

    // External communications are stopped: a customer mail waits, with the reason.
    let mail = Task::new(
        TaskId::new(50),
        "notify",
        "mail the customers about the release",
    )
    .with_requirements(
        Requirements::new()
            .with_role(worker.clone())
            .with_capability(email.clone()),
    );
    if let AssignOutcome::Queued { task, .. } = coordinator.assign(mail)? {
        println!(
            "\nt+{:>4}s  {task} waits {}",
            since(clock.now()),
            coordinator.why_waiting(task).unwrap_or_default()
        );
    }

    // People decide.
    clock.advance(Duration::from_secs(1_800));
    coordinator.resume_communications(Decider::Human, "patched; no data left the network")?;
    coordinator.release_quarantine(
        AgentId::new(13),
        Decider::Human,
        "its key was rotated; scan clean",
    )?;
    coordinator.set_mode(SystemMode::Normal);
    record(&coordinator, &mut log, &mut incidents)?;
    let status = |n| coordinator.with_registry(|r| r.status(AgentId::new(n)));
    println!(
        "t+{:>4}s  communications resumed; agent#13 {}, agent#12 {}; mode {}",
        since(clock.now()),
        status(13)?,
        status(12)?,
        coordinator.mode()
    );

    // The incident, reviewed and closed, from the audit log.
    let id = incidents
        .open_incidents()
        .next()
        .map(|i| i.id())
        .ok_or("the breach opened an incident")?;
    incidents.review(
        &mut log,
        id,
        PostIncidentReview::new(
            "a vulnerable HTTP client in the worker image let agent#12 be taken over",
            "2 batch tasks and one customer mail waited 33 minutes; no data left the network",
        )
        .with_action("rebuild the worker image with the patched client")
        .with_action("one deploy key per worker")
        .with_lesson("shared credentials widened the breach to a second worker"),
        clock.now(),
    )?;
    incidents.close(
        &mut log,
        id,
        Decider::Human,
        "agent#12 to be rebuilt from scratch",
        clock.now(),
    )?;
    stored.extend(log.drain());
    println!(
        "\n{}",
        incidents.get(id).ok_or("incident kept")?.to_markdown()
    );

    // The stored chain verifies end to end; the evidence is kept in memory's backups.
    let head = verify(&stored, Some(ChainHead::GENESIS))?;
    assert_eq!(head, log.head());
    println!(
        "audit log: {} entries, chain verified; {} memory backup(s) kept as evidence",
        stored.len(),
        builtins.backups().len()
    );
    Ok(())
}
