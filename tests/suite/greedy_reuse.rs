//! An assigner reused across calls plans exactly as a fresh one does.
//!
//! The greedy assigner keeps its buffers between calls (the fleet's columns, the role
//! index, the compiled task, the placement order, ...). These tests run one assigner
//! over a sequence of different fleets and batches, one after another (more and fewer
//! agents, resource dimensions, roles and capabilities; with and without a ledger,
//! affinity or bitsets past 128 names), and compare every plan with the plan of an
//! assigner that never ran before: anything left over from an earlier call would show.

use std::sync::Arc;

use concord::agent::AgentStatus;
use concord::assignment::{
    Assigner, Filter, Fleet, GreedyAssigner, OptimalAssigner, Placement, Plan, Refusal,
    ScoreWeights, Scorer,
};
use concord::{AgentId, Capability, Priority, Requirements, Role, Task, TaskId, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::random_fleet;
use random_fleet::*;

// ----- generated input ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct TaskSpec {
    roles: Vec<usize>,
    caps: Vec<usize>,
    /// A role no agent has.
    ghost: bool,
    cpu: u64,
    memory: u64,
    named: Option<(usize, u64)>,
    priority: u32,
    deadline: Option<u64>,
    /// Kind "work" (which has history) or "other".
    work: bool,
}

#[derive(Debug, Clone)]
struct Case {
    agents: Vec<AgentSpec>,
    tasks: Vec<TaskSpec>,
    ledger: bool,
    /// A pool limit on gpus (with a ledger).
    gpu_pool: Option<u64>,
    affinity: bool,
    /// Refuse (task, agent) when `(task + agent) % refuse == 0`; 0 refuses none.
    refuse: u64,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 0..=2),
        proptest::sample::subsequence((0..CAPS.len()).collect::<Vec<_>>(), 0..=1),
        proptest::bool::weighted(0.05),
        prop_oneof![Just(0u64), 0u64..3000],
        prop_oneof![Just(0u64), 0u64..3],
        proptest::option::weighted(0.4, (0..NAMED.len(), 1u64..3)),
        0u32..3,
        proptest::option::weighted(0.3, 0u64..4),
        proptest::bool::ANY,
    )
        .prop_map(
            |(roles, caps, ghost, cpu, memory, named, priority, deadline, work)| TaskSpec {
                roles,
                caps,
                ghost,
                cpu,
                memory,
                named,
                priority,
                deadline,
                work,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        // Mostly the usual handful of agents; sometimes more than one 64-agent block.
        prop_oneof![4 => 1usize..11, 1 => 60usize..140],
        // Mostly one task, as a workflow step assigns.
        prop_oneof![3 => Just(1usize), 1 => 0usize..8],
    )
        .prop_flat_map(|(agents, tasks)| {
            (
                proptest::collection::vec(agent_spec(3, 3), agents),
                proptest::collection::vec(task_spec(), tasks),
                proptest::bool::ANY,
                proptest::option::weighted(0.2, 0u64..3),
                proptest::bool::ANY,
                prop_oneof![3 => Just(0u64), 1 => 2u64..4],
            )
        })
        .prop_map(|(agents, tasks, ledger, gpu_pool, affinity, refuse)| Case {
            agents,
            tasks,
            ledger,
            gpu_pool,
            affinity,
            refuse,
        })
}

// ----- building the input ------------------------------------------------------------

fn fleet(c: &Case) -> Fleet {
    random_fleet::fleet(&c.agents, c.ledger, c.gpu_pool, c.affinity)
}

fn tasks(c: &Case) -> Vec<Task> {
    c.tasks
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let named: Vec<_> = t.named.into_iter().collect();
            let mut req = Requirements::new()
                .with_priority(Priority(t.priority * 40))
                .with_resources(resources(t.cpu, t.memory, &named));
            for &r in &t.roles {
                req = req.with_role(Role::new(ROLES[r]).unwrap());
            }
            if t.ghost {
                req = req.with_role(Role::new("ghost").unwrap());
            }
            for &x in &t.caps {
                req = req.with_capability(Capability::new(CAPS[x]).unwrap());
            }
            if let Some(d) = t.deadline {
                req = req.with_deadline(Timestamp::from_secs(d));
            }
            let kind = if t.work { "work" } else { "other" };
            Task::new(TaskId::new(3 * k as u64 + 2), kind, "w").with_requirements(req)
        })
        .collect()
}

/// Admits every other agent (ids are 1, 3, 5, ...: it admits 1, 5, 9, ...).
#[derive(Debug)]
struct EveryOther;

impl Filter for EveryOther {
    fn name(&self) -> &str {
        "every-other"
    }
    fn admits(&self, _: &Task, agent: AgentId, _: &Fleet) -> bool {
        agent.get() % 4 == 1
    }
}

/// Prefers lower ids, a little.
#[derive(Debug)]
struct Seniority;

impl Scorer for Seniority {
    fn name(&self) -> &str {
        "seniority"
    }
    fn score(&self, _: &Task, agent: AgentId, _: &Fleet) -> f64 {
        100.0 / (1.0 + agent.get() as f64)
    }
}

/// The assigners compared: every built-in path, and the host-plugin path.
fn assigners() -> Vec<GreedyAssigner> {
    vec![
        GreedyAssigner::new(),
        GreedyAssigner::new().with_weights(ScoreWeights::bin_pack()),
        GreedyAssigner::new()
            .with_filter(Arc::new(EveryOther))
            .with_scorer(Arc::new(Seniority), 2.0),
    ]
}

fn assign(assigner: &dyn Assigner, c: &Case, fleet: &Fleet, batch: &[Task]) -> Plan {
    let refuse = c.refuse;
    let mut admission = |task: &Task, agent: AgentId, _: &[Placement]| -> Result<(), Refusal> {
        if refuse != 0 && (task.id().get() + agent.get()) % refuse == 0 {
            return Err(Refusal::new(task.id(), agent, "rand", "refused at random"));
        }
        Ok(())
    };
    assigner
        .assign(batch, fleet, &mut admission)
        .expect("valid input is never an error")
}

/// Runs every case through one reused assigner of each kind, and through a fresh one.
fn check_sequence(cases: &[Case]) {
    let inputs: Vec<(Fleet, Vec<Task>)> = cases.iter().map(|c| (fleet(c), tasks(c))).collect();
    for (kind, reused) in assigners().into_iter().enumerate() {
        let optimal = OptimalAssigner::with_scoring(assigners().swap_remove(kind));
        for (n, (c, (fleet, batch))) in cases.iter().zip(&inputs).enumerate() {
            let fresh = assign(&assigners()[kind], c, fleet, batch);
            let again = assign(&reused, c, fleet, batch);
            assert_eq!(again, fresh, "greedy kind {kind}, call {n}");
            // A clone starts afresh and plans the same.
            assert_eq!(assign(&reused.clone(), c, fleet, batch), fresh);
            let fresh = assign(
                &OptimalAssigner::with_scoring(assigners().swap_remove(kind)),
                c,
                fleet,
                batch,
            );
            assert_eq!(
                assign(&optimal, c, fleet, batch),
                fresh,
                "optimal kind {kind}, call {n}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/greedy_reuse.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// A reused assigner gives every plan a fresh one gives, over a sequence of
    /// different fleets and batches.
    #[test]
    fn a_reused_assigner_plans_as_a_fresh_one(cases in proptest::collection::vec(case(), 2..7)) {
        check_sequence(&cases);
    }
}

/// A plain agent: available, one slot, `roles`, and declared resources.
fn plain(roles: &[usize], capacity: Option<Capacity>) -> AgentSpec {
    AgentSpec {
        status: AgentStatus::Available,
        max_tasks: 1,
        running: 0,
        roles: roles.to_vec(),
        caps: vec![0],
        pads: false,
        capacity,
        ledger: None,
        successes: 1,
    }
}

fn one_task(roles: &[usize], named: Option<(usize, u64)>, priority: u32) -> TaskSpec {
    TaskSpec {
        roles: roles.to_vec(),
        caps: Vec::new(),
        ghost: false,
        cpu: 500,
        memory: 1,
        named,
        priority,
        deadline: None,
        work: true,
    }
}

/// The sizes the buffers are kept at go up and down: a big fleet with many dimensions
/// and roles, a middling one, one agent with nothing, a fleet with spilled bitsets, a
/// batch placed out of batch order, then the middling and big fleets again. Each
/// fleet has a task on the role index's path, and tasks with and without history
/// follow one another.
#[test]
fn buffers_from_a_bigger_fleet_leave_no_trace() {
    let big = Case {
        agents: (0..130)
            .map(|k| {
                plain(
                    &[k % ROLES.len(), (k + 1) % ROLES.len()],
                    Some((4000, 4, vec![(k % NAMED.len(), 2), (3, 1)])),
                )
            })
            .collect(),
        tasks: vec![
            one_task(&[2], Some((1, 1)), 0),
            TaskSpec {
                work: false,
                ..one_task(&[], Some((0, 1)), 0)
            },
            one_task(&[1, 2], None, 0),
        ],
        ledger: false,
        gpu_pool: None,
        affinity: true,
        refuse: 3,
    };
    let middling = Case {
        agents: (0..10)
            .map(|k| plain(&[k % 3], Some((1000 * (k as u64 % 4 + 1), 2, vec![]))))
            .collect(),
        tasks: vec![TaskSpec {
            work: false,
            ..one_task(&[0], None, 0)
        }],
        ledger: false,
        gpu_pool: None,
        affinity: true,
        refuse: 0,
    };
    let tiny = Case {
        agents: vec![plain(&[], None)],
        tasks: vec![one_task(&[], None, 0)],
        ledger: false,
        gpu_pool: None,
        affinity: false,
        refuse: 0,
    };
    let mut spilled = tiny.clone();
    spilled.agents = (0..5)
        .map(|k| AgentSpec {
            pads: k % 2 == 0,
            ..plain(&[k % 2], Some((2000, 2, vec![(2, 1)])))
        })
        .collect();
    spilled.tasks = vec![one_task(&[0], Some((2, 1)), 0)];
    let mut reordered = spilled.clone();
    reordered.agents.iter_mut().for_each(|a| a.max_tasks = 3);
    reordered.tasks = (0..6)
        .map(|k| one_task(&[k % 2], None, (k % 3) as u32))
        .collect();
    check_sequence(&[
        big.clone(),
        middling.clone(),
        tiny,
        spilled,
        reordered,
        middling,
        big,
    ]);
}

/// Many threads on one assigner: whichever call gets the kept buffers and whichever
/// works in fresh ones, every plan is the one a fresh assigner gives.
#[test]
fn concurrent_calls_on_one_assigner_plan_as_fresh_ones() {
    let cases: Vec<Case> = (1..6)
        .map(|n| Case {
            agents: (0..n * 7)
                .map(|k| plain(&[k % 3], Some((1000 * (k as u64 % 4 + 1), 2, vec![]))))
                .collect(),
            tasks: (0..n).map(|k| one_task(&[k % 3], None, 0)).collect(),
            ledger: false,
            gpu_pool: None,
            affinity: n % 2 == 0,
            refuse: 0,
        })
        .collect();
    let inputs: Vec<(Fleet, Vec<Task>)> = cases.iter().map(|c| (fleet(c), tasks(c))).collect();
    let expected: Vec<Plan> = cases
        .iter()
        .zip(&inputs)
        .map(|(c, (f, b))| assign(&GreedyAssigner::new(), c, f, b))
        .collect();
    let shared = GreedyAssigner::new();
    std::thread::scope(|s| {
        for offset in 0..4 {
            let (shared, cases, inputs, expected) = (&shared, &cases, &inputs, &expected);
            s.spawn(move || {
                for round in 0..50 {
                    let n = (round + offset) % cases.len();
                    let (fleet, batch) = &inputs[n];
                    assert_eq!(assign(shared, &cases[n], fleet, batch), expected[n]);
                }
            });
        }
    });
}
