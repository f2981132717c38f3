//! Several threads call one thread-safe `Coordinator` at once (assign with claims,
//! complete, cancel, decide, mode and agent changes, ticks, snapshots and reports)
//! while a checker thread takes snapshots: every snapshot is consistent (it restores,
//! which cross-checks the registry, the ledger and the running and waiting tasks),
//! nothing is ever over-allocated, and at the end every task is accounted for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use concord::agent::AgentStatus;
use concord::conflict::HumanDecision;
use concord::coordinator::{AssignOutcome, Coordinator, Decider};
use concord::policy::SystemMode;
use concord::{
    AgentId, AgentProfile, Claim, ManualClock, Requirements, Role, RuleBasedAnalyzer, RuleSet,
    Task, TaskId, Timestamp,
};

use crate::rng;
use rng::Rng;

const THREADS: u64 = 4;
const OPS: u64 = 400;
const AGENTS: u64 = 4;

fn task(id: u64, rng: &mut Rng) -> Task {
    let mut needs = Requirements::new()
        .with_role(Role::new("ops").expect("role"))
        .with_resources(
            format!("cpu={}m", 250 * (1 + rng.below(8)))
                .parse()
                .expect("cpu"),
        );
    if rng.chance(25) {
        let name = ["env/staging", "db/main"][rng.below(2) as usize];
        needs = needs.with_claim(Claim::exclusive(name));
    }
    Task::new(TaskId::new(id), "work", format!("task {id}")).with_requirements(needs)
}

#[test]
fn threads_at_once_keep_the_books_consistent() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let c = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
            .build(),
    );
    for id in 1..=AGENTS {
        c.register_agent(
            AgentProfile::new(AgentId::new(id), format!("a{id}"))
                .with_role(Role::new("ops").expect("role"))
                .with_capacity("cpu=2".parse().expect("capacity"))
                .with_max_tasks(2),
        )
        .expect("register");
    }
    let done = AtomicBool::new(false);
    let checked = std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let mut checked = 0u32;
            while !done.load(Ordering::SeqCst) || checked == 0 {
                let snapshot = c.snapshot();
                let json = serde_json::to_string(&snapshot).expect("serializes");
                // Restoring cross-checks every part against the others.
                let back = Coordinator::builder()
                    .clock(clock.clone())
                    .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
                    .restore(serde_json::from_str(&json).expect("parses"))
                    .unwrap_or_else(|e| panic!("an inconsistent snapshot: {e}"));
                back.with_ledger(|l| {
                    for a in l.agents() {
                        let (held, cap) =
                            (l.allocated(a).expect("held"), l.capacity(a).expect("cap"));
                        assert!(held.fits(&cap), "{a} holds {held} of {cap}");
                        let slots = l.task_slots(a).expect("slots").expect("limited");
                        assert!(l.tasks_on(a).expect("tasks") <= slots);
                    }
                });
                checked += 1;
            }
            checked
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let c = Arc::clone(&c);
                let clock = clock.clone();
                scope.spawn(move || {
                    let mut rng = Rng::new(t.wrapping_mul(7919).wrapping_add(1));
                    let mut mine: Vec<u64> = Vec::new();
                    for k in 0..OPS {
                        match rng.below(10) {
                            0..=3 => {
                                let id = t * 1_000_000 + k;
                                match c.assign(task(id, &mut rng)) {
                                    Ok(AssignOutcome::Rejected { .. }) | Err(_) => {}
                                    Ok(_) => mine.push(id),
                                }
                            }
                            4..=5 if !mine.is_empty() => {
                                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                                // Running: completed; waiting: withdrawn; gone: refused.
                                if c.complete(TaskId::new(id), rng.below(4) > 0, None).is_err() {
                                    let _ = c.cancel(TaskId::new(id));
                                }
                            }
                            6 => {
                                let approve = rng.chance(50);
                                let decision = if approve {
                                    HumanDecision::Approve
                                } else {
                                    HumanDecision::Deny
                                };
                                if let Some(open) = c.open_conflicts().first() {
                                    let _ = c.decide(open.conflict.id(), decision, Decider::Human);
                                }
                            }
                            7 => {
                                let agent = AgentId::new(1 + rng.below(AGENTS));
                                let to = [AgentStatus::Offline, AgentStatus::Available]
                                    [rng.below(2) as usize];
                                let _ = c.set_agent_status(agent, to);
                            }
                            8 => {
                                if t == 0 {
                                    let mode = [SystemMode::SafeMode, SystemMode::Normal]
                                        [rng.below(2) as usize];
                                    c.set_mode(mode);
                                } else {
                                    clock.advance(Duration::from_secs(rng.below(600)));
                                    c.tick();
                                }
                            }
                            _ => {
                                let report = c.with_ledger(|l| l.usage_report());
                                assert!(report.allocations <= (AGENTS * 2) as usize);
                                let _ = c.snapshot();
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let leftovers: Vec<Vec<u64>> = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect();
        done.store(true, Ordering::SeqCst);
        // Everything back, then every task still held ends: nothing is lost.
        c.set_mode(SystemMode::Normal);
        for id in 1..=AGENTS {
            let _ = c.set_agent_status(AgentId::new(id), AgentStatus::Available);
        }
        for open in c.open_conflicts() {
            let _ = c.decide(
                open.conflict.id(),
                HumanDecision::Approve,
                Decider::Orchestrator,
            );
        }
        for _ in 0..1_000 {
            let running: Vec<TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
            if running.is_empty() {
                break;
            }
            for task in running {
                let _ = c.complete(task, true, None);
            }
        }
        for w in c.waiting() {
            let _ = c.cancel(w.task.id());
        }
        drop(leftovers);
        checker.join().expect("checker")
    });
    assert!(checked > 0);
    assert!(c.assignments().is_empty(), "{:?}", c.assignments());
    assert!(c.waiting().is_empty(), "{:?}", c.waiting());
    c.with_ledger(|l| assert!(l.is_empty(), "{} allocations left", l.len()));
}
