//! The conflict management procedure and its escalation decision tree, end to end:
//! two agents collide on one resource, automatic resolution fails,
//! and a manual clock is advanced through 30 minutes and 2 hours while the manager
//! escalates to the orchestrator, then to a human whose deadline passes.
//!
//! Run with `cargo run --example conflict_escalation`.

use std::time::Duration;

use concord::conflict::{
    ClaimOwner, ConflictDetector, ConflictId, ConflictManager, EscalationAction, EscalationPolicy,
    Strategy,
};
use concord::{AgentId, Claim, Clock, ConflictResolver, ManualClock, Priority, TaskId, Timestamp};

/// `t` as time since the conflict was opened at `t0`: `t+2h05min`.
fn since(t0: Timestamp, t: Timestamp) -> String {
    let m = t.duration_since(t0).as_secs() / 60;
    match (m / 60, m % 60) {
        (0, 0) => "t+0".to_owned(),
        (0, m) => format!("t+{m}min"),
        (h, 0) => format!("t+{h}h"),
        (h, m) => format!("t+{h}h{m:02}"),
    }
}

fn show(t0: Timestamp, label: &str, actions: &[EscalationAction]) {
    if actions.is_empty() {
        println!("{label}: nothing due");
    }
    for a in actions {
        match a {
            EscalationAction::EscalateToOrchestrator { conflict, reason } => {
                println!("{label}: {conflict} -> orchestrator ({reason})");
            }
            EscalationAction::RequestHumanApproval {
                conflict,
                deadline,
                default,
                reason,
            } => println!(
                "{label}: {conflict} -> human approval by {}, default {default} ({reason})",
                since(t0, *deadline)
            ),
            EscalationAction::ApplyDefaultDecision { conflict, decision } => {
                println!("{label}: {conflict} -> nobody answered; applying default: {decision}");
            }
            other => println!("{label}: {other:?}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    // The escalation ladder's default times; a failed resolution waits for the next
    // rung's time.
    let policy = EscalationPolicy::default().with_escalate_on_failure(false);
    println!(
        "policy: orchestrator after {:?}, human after {:?}, human decides within {:?}, default {}",
        policy.orchestrator_after(),
        policy.human_after(),
        policy.decision_within(),
        policy.default_decision()
    );
    let mut manager = ConflictManager::new(policy)?;
    let mut detector = ConflictDetector::new();

    // Two agents, same priority, both want the staging environment exclusively.
    let deployer = ClaimOwner::new(TaskId::new(1), AgentId::new(1));
    let tester = ClaimOwner::new(TaskId::new(2), AgentId::new(2));
    let env = Claim::exclusive("env/staging");
    detector.add_claim(deployer, &env, Priority::NORMAL, clock.now())?;
    clock.advance(Duration::from_secs(5));
    let collisions = detector.add_claim(tester, &env, Priority::NORMAL, clock.now())?;
    let collision = collisions
        .into_iter()
        .next()
        .ok_or("expected a collision")?;
    // A collision becomes a conflict under the id its opener gives it.
    let id = ConflictId::new(1);
    let conflict = collision.into_conflict(id);
    println!(
        "detected {id}: {} over {:?} between {} and {}",
        conflict.kind(),
        conflict.resources(),
        conflict.parties()[0],
        conflict.parties()[1]
    );

    let opened = manager.open(conflict, clock.now())?;
    println!(
        "assessed {id}: {} -> {:?} ({})",
        opened.assessment.severity,
        opened.assessment.route,
        opened.assessment.reasons.join("; ")
    );
    let t0 = clock.now();
    show(t0, "t+0", &opened.actions);

    // Automatic resolution: priority wins, but the two tie, so it fails. The failure
    // is recorded but the policy here waits for the 30-minute rung instead of
    // escalating at once, to show the timer.
    let resolver = Strategy::PriorityWins;
    let resolution =
        futures::executor::block_on(resolver.resolve(manager.conflict(id).ok_or("gone")?));
    println!(
        "automatic resolution: successful={} reason={:?}",
        resolution.successful(),
        resolution.failure_reason()
    );
    let actions = manager.record_resolution(id, resolution, clock.now())?;
    show(t0, "t+0 (after failure)", &actions);

    for (label, step) in [
        ("t+29min", Duration::from_secs(29 * 60)),
        ("t+30min", Duration::from_secs(60)),
        ("t+1h59", Duration::from_secs(89 * 60)),
        ("t+2h", Duration::from_secs(60)),
        ("t+3h", Duration::from_secs(3600)),
    ] {
        clock.advance(step);
        show(t0, label, &manager.tick(clock.now()));
    }

    println!("state: {}", manager.state(id).ok_or("gone")?);
    println!("history:");
    for h in manager.history(id).ok_or("gone")? {
        println!("  {:<8} {:?}", since(t0, h.at), h.event);
    }
    let m = manager.metrics();
    println!(
        "metrics: open={} resolved={} decided_by_default={} escalations={:?}",
        m.open, m.resolved, m.decided_by_default, m.escalations
    );
    Ok(())
}
