//! The agent assignment procedure: a fleet of agents in several
//! roles, a batch of tasks analyzed, assigned and validated, each assignment printed
//! with its explanation, and one policy violation detected and handled.
//!
//! Run with `cargo run --example assign_agents`.

use concord::coordinator::{AssignOutcome, Coordinator, EventKind};
use concord::{
    AgentId, AgentProfile, Capability, ManualClock, Role, SystemMode, Task, TaskId, Timestamp,
};

fn profile(id: u64, name: &str, roles: &[&str], caps: &[&str], capacity: &str) -> AgentProfile {
    let mut p = AgentProfile::new(AgentId::new(id), name)
        .with_capacity(capacity.parse().expect("valid capacity"))
        .with_max_tasks(2);
    for r in roles {
        p = p.with_role(Role::new(r).expect("valid role"));
    }
    for c in caps {
        p = p.with_capability(Capability::new(c).expect("valid capability"));
    }
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    // The defaults: the procedures' analysis rules, a percentile predictor, the greedy
    // assigner and the default policies (95% utilization cap, separation of duties
    // between deploy and verify, safe mode, ...).
    let coordinator = Coordinator::builder().clock(clock.clone()).build();

    let fleet = [
        profile(
            1,
            "ops-1",
            &["ops"],
            &["deploy", "health_check", "browser"],
            "cpu=4,memory=8Gi",
        ),
        // A generalist with the most room: the scorers like it for everything.
        profile(
            2,
            "generalist",
            &["ops", "qa"],
            &[
                "deploy",
                "health_check",
                "browser",
                "screenshot",
                "documentation",
            ],
            "cpu=16,memory=32Gi",
        )
        .with_max_tasks(4),
        profile(
            3,
            "qa-1",
            &["qa"],
            &["screenshot", "documentation"],
            "cpu=4,memory=8Gi",
        ),
        profile(
            4,
            "framework-1",
            &["framework"],
            &["handoff"],
            "cpu=2,memory=4Gi",
        ),
        profile(
            5,
            "security-1",
            &["security"],
            &["security"],
            "cpu=2,memory=4Gi",
        ),
    ];
    for p in fleet {
        println!("agent {} {:<12} roles {:?}", p.id(), p.name(), p.roles());
        coordinator.register_agent(p)?;
    }

    // 1-4: analyze, find available agents, assign, validate; one run of the
    // deployment, so separation of duties applies across its tasks.
    let run = "deploy-run-1";
    let tasks = [
        (
            1,
            "deploy",
            "Deploy the server locally and run the health check",
        ),
        (2, "browser", "Launch the browser to the deployment URL"),
        (
            3,
            "verify",
            "Take a full-page screenshot for visual verification",
        ),
        (4, "document", "Write the deployment success documentation"),
        (5, "handoff", "Handoff to development agents"),
    ];
    println!("\nassigning the deployment run `{run}`");
    for (id, kind, description) in tasks {
        let task = Task::new(TaskId::new(id), kind, description);
        match coordinator.assign_in_group(run, task)? {
            AssignOutcome::Assigned(a) => {
                println!(
                    "  task#{id} {kind:<8} -> {}  needs {}",
                    a.agent, a.resources
                );
                println!("      why: {}", a.explanation);
            }
            AssignOutcome::Queued { explanation, .. } => {
                println!("  task#{id} {kind:<8} waits: {explanation}")
            }
            AssignOutcome::Rejected { explanation, .. } => {
                println!("  task#{id} {kind:<8} rejected: {explanation}")
            }
            other => println!("  task#{id} {kind:<8} {other:?}"),
        }
    }

    // The policy decisions, from the event journal a host would persist.
    println!("\npolicy violations detected and handled");
    for event in coordinator.drain_events() {
        if let EventKind::PolicyRefused { refusal, .. } = event.kind {
            println!(
                "  {} refused {} for {}: {}; the next best agent was taken",
                refusal.rule, refusal.agent, refusal.task, refusal.message
            );
        }
    }

    // A task nobody can take, and safe mode.
    println!("\nmore tasks");
    let audit = Task::new(
        TaskId::new(6),
        "audit",
        "Investigate a possible security breach",
    );
    if let AssignOutcome::Assigned(a) = coordinator.assign(audit)? {
        println!(
            "  task#6 audit -> {} (priority {})",
            a.agent,
            a.task.requirements().priority()
        );
    }
    coordinator.set_mode(SystemMode::SafeMode);
    let late = Task::new(TaskId::new(7), "deploy", "Deploy the hotfix");
    if let AssignOutcome::Rejected { refusals, .. } = coordinator.assign(late)? {
        println!("  task#7 deploy in safe mode: {}", refusals[0]);
    }
    coordinator.set_mode(SystemMode::Normal);

    // Finishing tasks frees slots and teaches the predictor and affinity scorer.
    for id in 1..=5 {
        coordinator.complete(TaskId::new(id), true, None)?;
    }
    println!(
        "\n{} tasks running, {} waiting, {} events since the last drain",
        coordinator.assignments().len(),
        coordinator.waiting().len(),
        coordinator.drain_events().len()
    );
    Ok(())
}
