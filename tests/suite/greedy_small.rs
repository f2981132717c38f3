//! A one-task batch plans exactly as the general engine plans the same task.
//!
//! The greedy assigner places a one-task batch (the workflow executor's call) on a
//! path of its own: it reads the fleet's columns in place instead of copying them.
//! These tests put the same task through both paths and compare everything: the
//! plan (placements, scores to the bit, explanations, unplaced tasks, refusals), the
//! errors, and every call into the admission, the host filters and the host scorers,
//! in order. The assigner compared is used first on the general path, so that the
//! buffers it keeps from that call must not matter either.
//!
//! The general path is reached through the public API: the task goes in a batch with
//! a second task that comes after it in placement order (lowest priority, no deadline,
//! last in the batch) and that no agent can take (it requires a role no agent has), so
//! it names no resource, reaches no filter, scorer or admission, and changes nothing
//! the first task sees. Its unplaced entry is the only difference, and is dropped
//! before comparing.

use std::sync::{Arc, Mutex};

use concord::agent::AgentStatus;
use concord::assignment::{
    Assigner, Filter, Fleet, GreedyAssigner, Placement, Plan, Refusal, ScoreWeights, Scorer,
};
use concord::{AgentId, Capability, Priority, Requirements, Role, Task, TaskId, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::random_fleet;
use random_fleet::*;

/// The task compared, and the task that keeps the batch off the one-task path.
const TASK: TaskId = TaskId::new(2);
const DUMMY: TaskId = TaskId::new(5);

// ----- generated input ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct TaskSpec {
    roles: Vec<usize>,
    caps: Vec<usize>,
    /// A role no agent has.
    ghost_role: bool,
    /// A capability no agent has.
    ghost_cap: bool,
    /// Pads some agents have, so that the task's own sets spill.
    pads: bool,
    cpu: u64,
    memory: u64,
    named: Vec<(usize, u64)>,
    priority: u32,
    deadline: Option<u64>,
    /// Kind "work" (which has history) or "other".
    work: bool,
}

/// The assigner's configuration.
#[derive(Debug, Clone, Copy)]
enum Config {
    Spread,
    BinPack,
    /// Affinity alone: kept even without history.
    AffinityOnly,
    /// A host filter and scorer besides the built-in scorers.
    Plugins,
    /// Host scorer only, which gives NaN for some agents: an error on some cases.
    NanScorer,
    /// A negative weight: always an error.
    Invalid,
}

#[derive(Debug, Clone)]
struct Case {
    agents: Vec<AgentSpec>,
    task: TaskSpec,
    ledger: bool,
    /// A pool limit on gpus (with a ledger).
    gpu_pool: Option<u64>,
    affinity: bool,
    config: Config,
    /// Refuse (task, agent) when `(task + agent) % refuse == 0`; 0 refuses none.
    refuse: u64,
    /// Refuse the first this many admission calls.
    refuse_first: usize,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        prop_oneof![
            3 => proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 0..=1),
            1 => proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 2),
        ],
        prop_oneof![
            3 => proptest::sample::subsequence((0..CAPS.len()).collect::<Vec<_>>(), 0..=1),
            1 => proptest::sample::subsequence((0..CAPS.len()).collect::<Vec<_>>(), 2),
        ],
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.05),
        prop_oneof![Just(0u64), 0u64..3000],
        prop_oneof![Just(0u64), 0u64..3],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => proptest::collection::vec((0..NAMED.len(), 1u64..3), 1..=2),
        ],
        0u32..3,
        proptest::option::weighted(0.3, 0u64..4),
        proptest::bool::ANY,
    )
        .prop_map(
            |(
                roles,
                caps,
                ghost_role,
                ghost_cap,
                pads,
                cpu,
                memory,
                named,
                priority,
                deadline,
                work,
            )| {
                TaskSpec {
                    roles,
                    caps,
                    ghost_role,
                    ghost_cap,
                    pads,
                    cpu,
                    memory,
                    named,
                    priority,
                    deadline,
                    work,
                }
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    prop_oneof![
        4 => Just(Config::Spread),
        2 => Just(Config::BinPack),
        1 => Just(Config::AffinityOnly),
        3 => Just(Config::Plugins),
        1 => Just(Config::NanScorer),
        1 => Just(Config::Invalid),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    // Mostly the executor's handful of agents; sometimes more than one 64-agent block
    // (where the general engine scans by blocks or through its role index).
    prop_oneof![4 => 1usize..11, 1 => 60usize..140]
        .prop_flat_map(|agents| {
            (
                proptest::collection::vec(agent_spec(4, 5), agents),
                task_spec(),
                proptest::bool::weighted(0.6),
                proptest::option::weighted(0.3, 0u64..3),
                proptest::bool::ANY,
                config(),
                prop_oneof![3 => Just(0u64), 1 => 2u64..4],
                prop_oneof![3 => Just(0usize), 1 => 1usize..3],
                proptest::bool::weighted(0.3),
            )
        })
        .prop_map(
            |(
                mut agents,
                task,
                ledger,
                gpu_pool,
                affinity,
                config,
                refuse,
                refuse_first,
                sizes,
            )| {
                if sizes {
                    // Agents of one size, as fleets mostly are, but for some of the
                    // second block of 64: whole blocks of idle agents of the first
                    // agent's size, judged a block at a time, with ties that only
                    // affinity and the index break.
                    for (k, a) in agents.iter_mut().enumerate() {
                        a.capacity = Some(if k >= 64 && k % 5 == 3 {
                            (4000, 4, Vec::new())
                        } else {
                            (8000, 8, Vec::new())
                        });
                        a.pads = false;
                        // Mostly idle: nothing allocated in the ledger.
                        if k % 7 != 6 {
                            a.ledger = a.ledger.map(|_| 0);
                        }
                    }
                }
                Case {
                    agents,
                    task,
                    ledger,
                    gpu_pool,
                    affinity,
                    config,
                    refuse,
                    refuse_first,
                }
            },
        )
}

// ----- building the input ------------------------------------------------------------

fn fleet(c: &Case) -> Fleet {
    random_fleet::fleet(&c.agents, c.ledger, c.gpu_pool, c.affinity)
}

fn task(t: &TaskSpec) -> Task {
    let mut req = Requirements::new()
        .with_priority(Priority(t.priority * 40))
        .with_resources(resources(t.cpu, t.memory, &t.named));
    for &r in &t.roles {
        req = req.with_role(Role::new(ROLES[r]).unwrap());
    }
    if t.ghost_role {
        req = req.with_role(Role::new("ghost").unwrap());
    }
    for &x in &t.caps {
        req = req.with_capability(Capability::new(CAPS[x]).unwrap());
    }
    if t.ghost_cap {
        req = req.with_capability(Capability::new("ghost-cap").unwrap());
    }
    if t.pads {
        req = req.with_capability(pad(139));
    }
    if let Some(d) = t.deadline {
        req = req.with_deadline(Timestamp::from_secs(d));
    }
    let kind = if t.work { "work" } else { "other" };
    Task::new(TASK, kind, "w").with_requirements(req)
}

/// The task that keeps a batch off the one-task path: placed after any other task of
/// the batch, and taken by no agent before any filter, scorer or admission sees it.
fn dummy() -> Task {
    Task::new(DUMMY, "other", "dummy").with_requirements(
        Requirements::new()
            .with_priority(Priority(0))
            .with_role(Role::new("nobody-plays-this").unwrap()),
    )
}

// ----- host plugins and admission, recording every call ------------------------------

/// Every call into a filter, scorer or admission: (who, task, agent, placements so far).
type Log = Arc<Mutex<Vec<(&'static str, u64, u64, usize)>>>;

/// Admits every other agent (ids are 1, 3, 5, ...: it admits 1, 5, 9, ...).
#[derive(Debug)]
struct EveryOther(Log);

impl Filter for EveryOther {
    fn name(&self) -> &str {
        "every-other"
    }
    fn admits(&self, task: &Task, agent: AgentId, _: &Fleet) -> bool {
        self.0
            .lock()
            .unwrap()
            .push(("filter", task.id().get(), agent.get(), 0));
        agent.get() % 4 == 1
    }
}

/// Prefers lower ids, a little; with `nan`, agents whose id is a multiple of 7 get NaN.
#[derive(Debug)]
struct Seniority {
    log: Log,
    nan: bool,
}

impl Scorer for Seniority {
    fn name(&self) -> &str {
        "seniority"
    }
    fn score(&self, task: &Task, agent: AgentId, _: &Fleet) -> f64 {
        self.log
            .lock()
            .unwrap()
            .push(("scorer", task.id().get(), agent.get(), 0));
        if self.nan && agent.get() % 7 == 0 {
            return f64::NAN;
        }
        100.0 / (1.0 + agent.get() as f64)
    }
}

fn assigner(config: Config, log: &Log) -> GreedyAssigner {
    let seniority = |nan| {
        Arc::new(Seniority {
            log: Arc::clone(log),
            nan,
        })
    };
    let off = ScoreWeights {
        least_allocated: 0.0,
        most_allocated: 0.0,
        balanced: 0.0,
        affinity: 0.0,
    };
    match config {
        Config::Spread => GreedyAssigner::new(),
        Config::BinPack => GreedyAssigner::new().with_weights(ScoreWeights::bin_pack()),
        Config::AffinityOnly => GreedyAssigner::new().with_weights(ScoreWeights {
            affinity: 1.0,
            ..off
        }),
        Config::Plugins => GreedyAssigner::new()
            .with_filter(Arc::new(EveryOther(Arc::clone(log))))
            .with_scorer(seniority(false), 2.0),
        Config::NanScorer => GreedyAssigner::new()
            .with_weights(off)
            .with_scorer(seniority(true), 1.0),
        Config::Invalid => GreedyAssigner::new().with_weights(ScoreWeights {
            balanced: -1.0,
            ..ScoreWeights::default()
        }),
    }
}

/// What a call gave, and every call it made, in order.
#[derive(Debug, PartialEq)]
struct Run {
    /// The plan, or the error as its debug text (an invalid score is NaN, which no
    /// error equals).
    result: Result<Plan, String>,
    /// The plan as JSON, which tells apart floats that `==` does not (0.0 and -0.0).
    json: Option<String>,
    calls: Vec<(&'static str, u64, u64, usize)>,
}

fn run(assigner: &dyn Assigner, c: &Case, fleet: &Fleet, batch: &[Task], log: &Log) -> Run {
    log.lock().unwrap().clear();
    let (refuse, refuse_first) = (c.refuse, c.refuse_first);
    let mut asked = 0;
    let mut admission = |task: &Task, agent: AgentId, accepted: &[Placement]| {
        log.lock()
            .unwrap()
            .push(("admit", task.id().get(), agent.get(), accepted.len()));
        asked += 1;
        if asked <= refuse_first {
            return Err(Refusal::new(task.id(), agent, "first", "refused early"));
        }
        if refuse != 0 && (task.id().get() + agent.get()) % refuse == 0 {
            return Err(Refusal::new(task.id(), agent, "rand", "refused at random"));
        }
        Ok(())
    };
    let mut result = assigner
        .assign(batch, fleet, &mut admission)
        .map_err(|e| format!("{e:?}"));
    if let Ok(plan) = &mut result {
        plan.unplaced.retain(|u| u.task != DUMMY);
    }
    let json = result
        .as_ref()
        .ok()
        .map(|p| serde_json::to_string(p).unwrap());
    let calls = std::mem::take(&mut *log.lock().unwrap());
    Run {
        result,
        json,
        calls,
    }
}

/// The one-task batch against the general engine, on one assigner (reused: its kept
/// buffers must not matter either) and on fresh ones.
fn check(c: &Case) {
    let fleet = fleet(c);
    let task = task(&c.task);
    let log: Log = Arc::default();
    let reused = assigner(c.config, &log);
    let general = run(&reused, c, &fleet, &[task.clone(), dummy()], &log);
    let small = run(&reused, c, &fleet, std::slice::from_ref(&task), &log);
    assert_eq!(small, general, "one-task path against the general engine");
    let fresh = run(
        &assigner(c.config, &log),
        c,
        &fleet,
        std::slice::from_ref(&task),
        &log,
    );
    assert_eq!(fresh, general, "a fresh assigner");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/greedy_small.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// A one-task batch gives the plan, errors and calls the general engine gives.
    #[test]
    fn a_one_task_batch_plans_as_the_general_engine(c in case()) {
        check(&c);
    }

    /// In a quiet fleet of one size, too (see `quiet_case`).
    #[test]
    fn a_quiet_fleet_of_one_size_plans_as_the_general_engine(c in quiet_case()) {
        check(&c);
    }
}

/// A quiet fleet of one size (most agents idle, a few holding something), with
/// affinities of four levels: words of agents judged by one verdict, which a scan
/// skips or takes agent by agent by their affinity alone.
fn quiet_case() -> impl Strategy<Value = Case> {
    (1usize..200)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(
                    (
                        proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 0..=2),
                        // Mostly none: the best agents few, and far apart.
                        prop_oneof![12 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
                        prop_oneof![6 => Just(0u64), 1 => 1u64..3],
                    ),
                    n,
                ),
                proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 0..=1),
                prop_oneof![
                    3 => Just(Config::Spread),
                    1 => Just(Config::BinPack),
                    2 => Just(Config::AffinityOnly),
                    1 => Just(Config::Plugins),
                ],
                proptest::bool::weighted(0.8),
                prop_oneof![3 => Just(0usize), 1 => 1usize..3],
            )
        })
        .prop_map(|(agents, roles, config, work, refuse_first)| {
            let agents = agents
                .into_iter()
                .map(|(roles, successes, quarters)| AgentSpec {
                    max_tasks: 2,
                    ledger: Some(quarters),
                    successes,
                    ..plain(&roles, Some((8000, 8, Vec::new())))
                })
                .collect();
            let mut c = plain_case(
                agents,
                TaskSpec {
                    work,
                    ..plain_task(&roles)
                },
            );
            c.ledger = true;
            c.affinity = true;
            c.config = config;
            c.refuse_first = refuse_first;
            c
        })
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

fn plain_task(roles: &[usize]) -> TaskSpec {
    TaskSpec {
        roles: roles.to_vec(),
        caps: Vec::new(),
        ghost_role: false,
        ghost_cap: false,
        pads: false,
        cpu: 500,
        memory: 1,
        named: Vec::new(),
        priority: 0,
        deadline: None,
        work: true,
    }
}

fn plain_case(agents: Vec<AgentSpec>, task: TaskSpec) -> Case {
    Case {
        agents,
        task,
        ledger: false,
        gpu_pool: None,
        affinity: false,
        config: Config::Spread,
        refuse: 0,
        refuse_first: 0,
    }
}

/// The executor's call: one agent that fits, with a ledger and history; then refused;
/// then short of gpus in the pool; then short of a resource only the task names.
#[test]
fn the_executors_one_agent_fleet() {
    let mut c = plain_case(
        vec![AgentSpec {
            ledger: Some(1),
            ..plain(&[2], Some((4000, 4, vec![(1, 2)])))
        }],
        TaskSpec {
            named: vec![(1, 1)],
            ..plain_task(&[2])
        },
    );
    c.ledger = true;
    c.affinity = true;
    check(&c);
    c.refuse_first = 1;
    check(&c);
    c.refuse_first = 0;
    c.gpu_pool = Some(1);
    c.task.named = vec![(1, 2)];
    check(&c);
    c.task.named = vec![(3, 1)];
    check(&c);
}

/// Ties go to the lowest id on both paths, with the runner-up the next lowest; and
/// an agent that declared nothing has any amount of a resource no agent declared.
#[test]
fn ties_and_undeclared_resources() {
    let agents = (0..70)
        .map(|k| {
            plain(
                &[k % 2],
                if k % 3 == 0 {
                    None
                } else {
                    Some((2000, 2, vec![]))
                },
            )
        })
        .collect();
    let mut c = plain_case(agents, plain_task(&[0]));
    check(&c);
    c.task.named = vec![(0, 1)];
    check(&c);
    c.task.roles = vec![0, 1];
    check(&c);
    c.config = Config::Plugins;
    c.refuse = 3;
    check(&c);
}
