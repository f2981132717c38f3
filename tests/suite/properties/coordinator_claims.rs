//! Properties of the coordinator's claims, whichever way a task starts (assigned at
//! once or served from the queue): no two running tasks ever hold colliding claims; a
//! task blocked behind a claim waits behind a running task whose claims collide with
//! its own; a conflicted task waits behind the holder of its first conflict, and when
//! its holder ends it starts, or waits on (behind another holder, or for room, while
//! no agent has any for it); an open conflict's holder runs and its waiting side does
//! not; no task is lost (each one submitted is running, waiting, finished, withdrawn,
//! denied or rejected); and a coordinator restored through JSON at any points gives
//! the same outcomes, events and final state as the uninterrupted one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use concord::coordinator::{AssignOutcome, Coordinator, Event, EventKind};
use concord::{
    AgentId, AgentProfile, Claim, EscalationPolicy, ManualClock, Requirements, Role,
    RuleBasedAnalyzer, RuleSet, Task, TaskId, Timestamp,
};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["repo", "repo/a", "repo/b", "port/80", "env/prod"];

use super::reference::collide;

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

/// A short ladder, so that a few ticks take a conflict to the default decision
/// (deny), which withdraws the task waiting on it.
fn builder(clock: &ManualClock) -> concord::coordinator::CoordinatorBuilder {
    const MIN: Duration = Duration::from_secs(60);
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .escalation_policy(
            EscalationPolicy::default()
                .with_orchestrator_after(10 * MIN)
                .with_human_after(20 * MIN)
                .with_decision_within(10 * MIN),
        )
        .unwrap()
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
    /// The task that ended (if any ran), and the tasks its end started.
    Completed(Option<TaskId>, Vec<TaskId>),
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
                return Out::Completed(None, Vec::new());
            }
            let t = running[i % running.len()].task.id();
            let served = c.complete(t, true, None).unwrap();
            Out::Completed(Some(t), served.iter().map(|a| a.task.id()).collect())
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

/// Whether some claim of `a` collides with some claim of `b`.
fn collides(a: &Task, b: &Task) -> bool {
    a.requirements()
        .claims()
        .iter()
        .any(|x| b.requirements().claims().iter().any(|y| collide(x, y)))
}

/// Whether some agent has room for `task` now: a free task slot and its resources,
/// counting what is reserved for a long-waiting task as taken. `None` when `task`
/// holds a reservation itself: what is reserved for it would count as taken too.
fn room_for(c: &Coordinator, task: &Task) -> Option<bool> {
    let needs = task.requirements().resources();
    let now = c.now();
    c.with_ledger(|l| {
        let reserved = l
            .waiting(now)
            .iter()
            .any(|w| w.request.task() == Some(task.id()) && w.reserved_on.is_some());
        (!reserved).then(|| {
            l.availability()
                .iter()
                .any(|a| a.free_task_slots != Some(0) && l.can_allocate(a.agent, needs))
        })
    })
}

/// The invariants that hold after every operation.
fn check(c: &Coordinator, events: &[Event], submitted: u64) -> Result<(), TestCaseError> {
    let running = c.assignments();
    for (i, a) in running.iter().enumerate() {
        for b in &running[i + 1..] {
            prop_assert!(
                !collides(&a.task, &b.task),
                "{} ({:?}) and {} ({:?}) run together",
                a.task.id(),
                a.task.requirements().claims(),
                b.task.id(),
                b.task.requirements().claims()
            );
        }
    }
    let by_id: BTreeMap<TaskId, &Task> = running.iter().map(|a| (a.task.id(), &a.task)).collect();
    let waiting = c.waiting();
    for w in &waiting {
        if let Some(h) = w.behind {
            let holder = by_id.get(&h);
            prop_assert!(
                holder.is_some(),
                "{} waits behind {h}, not running",
                w.task.id()
            );
            prop_assert!(
                holder.is_some_and(|h| collides(h, &w.task)),
                "{} waits behind {h}, whose claims do not collide with its own",
                w.task.id()
            );
        }
    }
    // An open conflict lasts while its holder runs, and its waiting side does not run
    // beside it (no decision approved one here: the ladder's default denies).
    for o in c.open_conflicts() {
        let id = o.conflict.id();
        prop_assert!(
            o.holder.is_some_and(|h| by_id.contains_key(&h)),
            "{id} is held by {:?}, not running",
            o.holder
        );
        prop_assert!(
            o.waiting.is_some_and(|t| !by_id.contains_key(&t)),
            "{id}: its waiting side {:?} runs",
            o.waiting
        );
    }
    // Nothing lost: every task is in exactly one place. A conflicted task waits (or
    // ran since): it is no place of its own.
    let mut seen: Vec<TaskId> = by_id.keys().copied().collect();
    seen.extend(waiting.iter().map(|w| w.task.id()));
    for e in events {
        match e.kind {
            EventKind::TaskCompleted { task, .. }
            | EventKind::TaskCancelled { task, .. }
            | EventKind::TaskDenied { task, .. }
            | EventKind::TaskRejected { task, .. } => seen.push(task),
            _ => {}
        }
    }
    seen.sort();
    let all: Vec<TaskId> = (1..=submitted).map(TaskId::new).collect();
    prop_assert_eq!(seen, all);
    Ok(())
}

/// What an operation's outcome promises, given the tasks that waited behind each
/// holder just before it (`behind`: waiting task to holder).
fn check_outcome(
    c: &Coordinator,
    out: &Out,
    behind: &BTreeMap<TaskId, TaskId>,
) -> Result<(), TestCaseError> {
    match out {
        // A conflicted task waits, behind the holder of its first conflict, and its
        // conflicts are open, with it as their waiting side.
        Out::Assign(AssignOutcome::Conflicted { task, conflicts }) => {
            prop_assert!(!conflicts.is_empty());
            let open = c.open_conflicts();
            for id in conflicts {
                let o = open.iter().find(|o| o.conflict.id() == *id);
                prop_assert!(
                    o.is_some_and(|o| o.waiting == Some(*task)),
                    "{id} of {task}: {o:?}"
                );
            }
            let first = open
                .iter()
                .find(|o| o.conflict.id() == conflicts[0])
                .and_then(|o| o.holder);
            let w = c.waiting().into_iter().find(|w| w.task.id() == *task);
            prop_assert!(
                w.as_ref()
                    .is_some_and(|w| w.behind.is_some() && w.behind == first),
                "conflicted {task} waits {:?}, its first conflict held by {first:?}",
                w.map(|w| w.behind)
            );
        }
        // The tasks that waited behind the task that ended start, or wait on: behind
        // another holder (whose claims collide with theirs: see `check`), held by the
        // core, or in the queue while no agent has room for them (or, holding a
        // reservation, for the agent reserved for them).
        Out::Completed(Some(ended), _) => {
            let running: BTreeSet<TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
            let waiting = c.waiting();
            for (&t, _) in behind.iter().filter(|&(_, h)| h == ended) {
                if running.contains(&t) {
                    continue;
                }
                let w = waiting.iter().find(|w| w.task.id() == t);
                prop_assert!(w.is_some(), "{t}, behind {ended}, neither runs nor waits");
                let Some(w) = w else { continue };
                prop_assert_ne!(w.behind, Some(*ended));
                if w.behind.is_none() && w.parked.is_none() {
                    prop_assert!(
                        room_for(c, &w.task) != Some(true),
                        "{t}, behind {ended} until it ended, waits in the queue with room for it"
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Each task waiting behind a holder, with the holder.
fn behind(c: &Coordinator) -> BTreeMap<TaskId, TaskId> {
    c.waiting()
        .iter()
        .filter_map(|w| Some((w.task.id(), w.behind?)))
        .collect()
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
            let blocked = behind(&a);
            let (out_a, out_b) = (apply(&a, op, &mut next_a), apply(&b, op, &mut next_b));
            prop_assert_eq!(&out_b, &out_a, "op {} {:?}", i, op);
            want.extend(a.drain_events());
            got.extend(b.drain_events());
            prop_assert_eq!(&got, &want, "op {} {:?}", i, op);
            check(&a, &want, next_a)?;
            check_outcome(&a, &out_a, &blocked)?;
        }
        prop_assert_eq!(
            serde_json::to_string(&b.snapshot()).unwrap(),
            serde_json::to_string(&a.snapshot()).unwrap()
        );
    }
}
