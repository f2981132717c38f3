//! Properties of the coordinator's claims, whichever way a task starts (assigned at
//! once or served from the queue): no two running tasks ever hold colliding claims; a
//! task blocked behind a claim waits behind a running task; no task is lost (each one
//! submitted is running, waiting, finished, withdrawn, rejected or conflicted); and a
//! coordinator restored through JSON at any points gives the same outcomes, events
//! and final state as the uninterrupted one.

use std::collections::BTreeSet;
use std::time::Duration;

use concord::coordinator::{AssignOutcome, Coordinator, Event, EventKind};
use concord::{
    AgentId, AgentProfile, Claim, ManualClock, Requirements, Role, RuleBasedAnalyzer, RuleSet,
    Task, TaskId, Timestamp,
};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["repo", "repo/a", "repo/b", "port/80", "env/prod"];

use crate::reference::collide;

#[derive(Debug, Clone)]
enum Op {
    /// A new task: its claims (name index, exclusive) and cpu in whole cores.
    Assign(Vec<(usize, bool)>, u64),
    /// The running task at this index (modulo) finishes.
    Complete(usize),
    /// The waiting task at this index (modulo) is withdrawn.
    Cancel(usize),
    /// Minutes pass and the coordinator ticks.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (prop::collection::vec((0..NAMES.len(), any::<bool>()), 0..3), 1u64..4)
            .prop_map(|(c, cpu)| Op::Assign(c, cpu)),
        2 => any::<usize>().prop_map(Op::Complete),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0u64..20).prop_map(Op::Tick),
    ]
}

fn coordinator(clock: &ManualClock) -> Coordinator {
    let c = builder(clock).build();
    for id in 1..=2 {
        c.register_agent(
            AgentProfile::new(AgentId::new(id), format!("agent-{id}"))
                .with_role(Role::new("ops").unwrap())
                .with_capacity("cpu=4".parse().unwrap())
                .with_max_tasks(2),
        )
        .unwrap();
    }
    c
}

fn builder(clock: &ManualClock) -> concord::coordinator::CoordinatorBuilder {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
}

fn task(id: u64, claims: &[(usize, bool)], cpu: u64) -> Task {
    let mut needs = Requirements::new()
        .with_role(Role::new("ops").unwrap())
        .with_resources(format!("cpu={cpu}").parse().unwrap());
    for &(n, exclusive) in claims {
        needs = needs.with_claim(if exclusive {
            Claim::exclusive(NAMES[n])
        } else {
            Claim::shared(NAMES[n])
        });
    }
    Task::new(TaskId::new(id), "edit", "edit things").with_requirements(needs)
}

/// What one operation returned, for comparing two coordinators.
#[derive(Debug, PartialEq)]
enum Out {
    Assign(AssignOutcome),
    Served(Vec<TaskId>),
    Cancelled(Option<TaskId>),
}

/// Applies `op` to `c` (a tick's minutes are passed on the shared clock by the
/// caller); `next` is the last task id used.
fn apply(c: &Coordinator, op: &Op, next: &mut u64) -> Out {
    match op {
        Op::Assign(claims, cpu) => {
            *next += 1;
            Out::Assign(c.assign(task(*next, claims, *cpu)).unwrap())
        }
        Op::Complete(i) => {
            let running = c.assignments();
            if running.is_empty() {
                return Out::Served(Vec::new());
            }
            let t = running[i % running.len()].task.id();
            let served = c.complete(t, true, None).unwrap();
            Out::Served(served.iter().map(|a| a.task.id()).collect())
        }
        Op::Cancel(i) => {
            let waiting = c.waiting();
            if waiting.is_empty() {
                return Out::Cancelled(None);
            }
            let t = waiting[i % waiting.len()].task.id();
            Out::Cancelled(Some(c.cancel(t).unwrap().id()))
        }
        Op::Tick(_) => Out::Served(c.tick().iter().map(|a| a.task.id()).collect()),
    }
}

/// The invariants that hold after every operation.
fn check(c: &Coordinator, events: &[Event], submitted: u64) -> Result<(), TestCaseError> {
    let running = c.assignments();
    for (i, a) in running.iter().enumerate() {
        for b in &running[i + 1..] {
            for x in a.task.requirements().claims() {
                for y in b.task.requirements().claims() {
                    prop_assert!(
                        !collide(x, y),
                        "{} ({x:?}) and {} ({y:?}) run together",
                        a.task.id(),
                        b.task.id()
                    );
                }
            }
        }
    }
    let ids: BTreeSet<TaskId> = running.iter().map(|a| a.task.id()).collect();
    let waiting = c.waiting();
    for w in &waiting {
        if let Some(h) = w.behind {
            prop_assert!(
                ids.contains(&h),
                "{} waits behind {h}, not running",
                w.task.id()
            );
        }
    }
    // Nothing lost: every task is in exactly one place.
    let mut seen: Vec<TaskId> = ids.iter().copied().collect();
    seen.extend(waiting.iter().map(|w| w.task.id()));
    for e in events {
        match e.kind {
            EventKind::TaskCompleted { task, .. }
            | EventKind::TaskCancelled { task, .. }
            | EventKind::TaskRejected { task, .. } => seen.push(task),
            _ => {}
        }
    }
    let conflicted: BTreeSet<TaskId> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConflictDetected { conflict, .. } => conflict.parties()[1].task_id(),
            _ => None,
        })
        .collect();
    seen.extend(conflicted);
    seen.sort();
    let all: Vec<TaskId> = (1..=submitted).map(TaskId::new).collect();
    prop_assert_eq!(seen, all);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn claims_hold_and_survive_restores(
        ops in prop::collection::vec(op(), 1..40),
        restore_at in prop::collection::vec(any::<bool>(), 40),
    ) {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let a = coordinator(&clock);
        let mut b = coordinator(&clock);
        let (mut want, mut got) = (a.drain_events(), b.drain_events());
        let (mut next_a, mut next_b) = (0, 0);
        for (i, op) in ops.iter().enumerate() {
            if restore_at[i] {
                got.extend(b.drain_events());
                let json = serde_json::to_string(&b.snapshot()).unwrap();
                b = builder(&clock).restore(serde_json::from_str(&json).unwrap()).unwrap();
            }
            if let Op::Tick(minutes) = op {
                clock.advance(Duration::from_secs(60 * minutes));
            }
            let (out_a, out_b) = (apply(&a, op, &mut next_a), apply(&b, op, &mut next_b));
            prop_assert_eq!(&out_b, &out_a, "op {} {:?}", i, op);
            want.extend(a.drain_events());
            got.extend(b.drain_events());
            prop_assert_eq!(&got, &want, "op {} {:?}", i, op);
            check(&a, &want, next_a)?;
        }
        prop_assert_eq!(
            serde_json::to_string(&b.snapshot()).unwrap(),
            serde_json::to_string(&a.snapshot()).unwrap()
        );
    }
}
