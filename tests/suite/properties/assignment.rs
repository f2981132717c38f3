//! Properties of the greedy assigner, checked against a naive reference that replays
//! the plan's placements in decision order (priority, then deadline, then batch order)
//! over random registries (statuses, slots, 1-3 roles, capabilities from a vocabulary
//! that sometimes passes 128 names), optional ledgers, random batches and a random
//! admission policy:
//!
//! - (a) No placement breaks status, slots, role, capability or cumulative resources,
//!   and none is of a pair the admission refused.
//! - (b) A task is unplaced only if every agent that passed the filters at its turn was
//!   refused; a placed task went to an agent that passed, scores as the naive scorer
//!   says, and beats every unrefused rival.
//! - (c) `fit + sum(rejected) == considered`, and the rejections are exactly the naive
//!   first-failing filter's (status, slots, role, capability, resources; first missing
//!   name by catalog order), plus one `Policy` per refusal.
//! - (d) The same input gives the same plan; a shuffled registration order gives the
//!   same decisions (explanations may name a different missing role or capability:
//!   "first" is by catalog order, and the catalog is in registration order).
//! - (e) A role every agent plays (a bitmap with no empty word) and capability sets
//!   spilled past 128 bits change no decision and no explanation, and a host filter
//!   that admits everyone changes nothing.
//!
//! Two known bugs are stepped around, not hidden: tasks naming a resource no agent
//! declares skip (b) and the rejection comparison, and tasks naming a role or
//! capability no agent has skip the rejection comparison. See the ignored tests
//! `unlimited_agents_take_resources_nobody_declares` and
//! `unknown_names_are_counted_after_status` in `tests/assignment.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::assignment::{
    Assigner, Explanation, Filter, Fleet, GreedyAssigner, Placement, Plan, Refusal, Rejection,
    ScoreWeights,
};
use concord::{
    AgentId, Capability, Priority, Requirements, ResourceLedger, ResourceName, Resources, Role,
    Task, TaskId, Timestamp,
};
use proptest::prelude::*;

const ROLES: [&str; 5] = ["data", "ops", "qa", "security", "web"];
const CAPS: [&str; 8] = [
    "browser",
    "deploy",
    "gpu-driver",
    "k8s",
    "screenshot",
    "shell",
    "sql",
    "terraform",
];
/// Rare capabilities `x0..x{EXTRA}`; in a big vocabulary agents take many, so the
/// catalog passes 128 names and bitsets spill.
const EXTRA: u16 = 300;
const GIB: u64 = 1 << 30;
const EPS: f64 = 1e-9;

// ----- generated input ---------------------------------------------------------------

/// Amounts: cpu millicores, memory GiB, gpus, storage GiB.
#[derive(Debug, Clone, Copy)]
struct Amounts {
    cpu: u64,
    memory: u64,
    gpu: u64,
    storage: u64,
}

impl Amounts {
    fn resources(self) -> Resources {
        Resources::new()
            .with_cpu_millis(self.cpu)
            .with_memory_bytes(self.memory * GIB)
            .with_storage_bytes(self.storage * GIB)
            .with_named("gpu", self.gpu)
            .unwrap()
    }

    fn scaled(self, quarters: u64) -> Amounts {
        Amounts {
            cpu: self.cpu * quarters / 4,
            memory: self.memory * quarters / 4,
            gpu: self.gpu * quarters / 4,
            storage: self.storage * quarters / 4,
        }
    }
}

#[derive(Debug, Clone)]
struct AgentSpec {
    status: AgentStatus,
    max_tasks: u32,
    running: u32,
    roles: Vec<usize>,
    caps: Vec<usize>,
    extra: Vec<u16>,
    declared: Option<Amounts>,
    /// In the ledger with this capacity, and this many quarters of it allocated.
    ledger: Option<(Amounts, u64)>,
}

#[derive(Debug, Clone)]
struct TaskSpec {
    roles: Vec<usize>,
    caps: Vec<usize>,
    extra: Option<u16>,
    ghost_role: bool,
    ghost_cap: bool,
    needs: Amounts,
    priority: u32,
    deadline: Option<u64>,
}

#[derive(Debug, Clone)]
struct Scenario {
    agents: Vec<AgentSpec>,
    tasks: Vec<TaskSpec>,
    use_ledger: bool,
    /// Refuse (task, agent) when `(31 task + 17 agent) % refuse == 0`; 0 refuses none.
    refuse: u64,
    /// 0 spread, 1 bin-pack, 2 balanced only, 3 least and most.
    weights: u8,
    /// A registration order: a permutation of the agents.
    order: Vec<usize>,
}

fn amounts(cpu: u64, memory: u64, gpu: u64) -> impl Strategy<Value = Amounts> {
    (
        0..=cpu,
        0..=memory,
        0..=gpu,
        prop_oneof![3 => Just(0u64), 1 => 0..=memory],
    )
        .prop_map(|(cpu, memory, gpu, storage)| Amounts {
            cpu,
            memory,
            gpu,
            storage,
        })
}

fn status() -> impl Strategy<Value = AgentStatus> {
    prop_oneof![
        6 => Just(AgentStatus::Available),
        1 => Just(AgentStatus::Busy),
        1 => Just(AgentStatus::Unhealthy),
        1 => Just(AgentStatus::Quarantined),
        1 => Just(AgentStatus::Offline),
    ]
}

fn agent_spec(big: bool) -> impl Strategy<Value = AgentSpec> {
    let extra = if big {
        proptest::collection::vec(0..EXTRA, 0..60).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        status(),
        1u32..5,
        prop_oneof![3 => Just(0u32), 1 => 0u32..5],
        proptest::sample::subsequence((0..ROLES.len()).collect::<Vec<_>>(), 1..=3),
        proptest::sample::subsequence((0..CAPS.len()).collect::<Vec<_>>(), 0..=5),
        extra,
        proptest::option::weighted(0.7, amounts(8000, 8, 2)),
        proptest::option::weighted(0.5, (amounts(8000, 8, 2), 0u64..4)),
    )
        .prop_map(
            |(status, max_tasks, running, roles, caps, extra, declared, ledger)| AgentSpec {
                status,
                max_tasks,
                running: running.min(max_tasks),
                roles,
                caps,
                extra,
                declared,
                ledger,
            },
        )
}

fn task_spec(big: bool) -> impl Strategy<Value = TaskSpec> {
    let roles = (0..ROLES.len()).collect::<Vec<_>>();
    let caps = (0..CAPS.len()).collect::<Vec<_>>();
    // Mostly zero or small needs, so that many tasks fit somewhere.
    let need = |max: u64| prop_oneof![1 => Just(0u64), 1 => 0..=max];
    (
        prop_oneof![
            2 => proptest::sample::subsequence(roles.clone(), 0..=1),
            1 => proptest::sample::subsequence(roles, 2..=2),
        ],
        prop_oneof![
            2 => proptest::sample::subsequence(caps.clone(), 0..=1),
            1 => proptest::sample::subsequence(caps, 2..=2),
        ],
        if big {
            proptest::option::weighted(0.3, 0..EXTRA).boxed()
        } else {
            Just(None).boxed()
        },
        proptest::bool::weighted(0.03),
        proptest::bool::weighted(0.03),
        (
            need(3000),
            need(3),
            need(1),
            prop_oneof![4 => Just(0u64), 1 => 0..=2u64],
        ),
        0u32..3,
        proptest::option::weighted(0.5, 0u64..4),
    )
        .prop_map(
            |(
                roles,
                caps,
                extra,
                ghost_role,
                ghost_cap,
                (cpu, memory, gpu, storage),
                priority,
                deadline,
            )| {
                TaskSpec {
                    roles,
                    caps,
                    extra,
                    ghost_role,
                    ghost_cap,
                    needs: Amounts {
                        cpu,
                        memory,
                        gpu,
                        storage,
                    },
                    priority,
                    deadline,
                }
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::bool::weighted(0.3),
        prop_oneof![3 => 1usize..24, 1 => 60usize..140],
    )
        .prop_flat_map(|(big, n)| {
            (
                proptest::collection::vec(agent_spec(big), n),
                proptest::collection::vec(task_spec(big), 0..14),
                proptest::bool::ANY,
                prop_oneof![3 => Just(0u64), 1 => Just(1u64), 2 => 2u64..6],
                0u8..4,
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(
            |(agents, tasks, use_ledger, refuse, weights, order)| Scenario {
                agents,
                tasks,
                use_ledger,
                refuse,
                weights,
                order,
            },
        )
}

// ----- building the input --------------------------------------------------------

fn agent_id(k: usize) -> AgentId {
    // Sparse, so ids and indices differ.
    AgentId::new(3 * k as u64 + 2)
}

/// How a variant of the scenario is built.
#[derive(Debug, Clone, Copy, Default)]
struct Variant {
    /// Register in `Scenario::order` instead of index order.
    shuffled: bool,
    /// Every agent and every task with a role also has role `everyone`.
    everyone: bool,
    /// Every agent also has 140 capabilities no task asks for, so bitsets spill.
    pads: bool,
}

fn profile(k: usize, a: &AgentSpec, v: Variant) -> AgentProfile {
    let mut p = AgentProfile::new(agent_id(k), format!("agent-{k}")).with_max_tasks(a.max_tasks);
    for &r in &a.roles {
        p = p.with_role(Role::new(ROLES[r]).unwrap());
    }
    if v.everyone {
        p = p.with_role(Role::new("everyone").unwrap());
    }
    for &c in &a.caps {
        p = p.with_capability(Capability::new(CAPS[c]).unwrap());
    }
    for x in &a.extra {
        p = p.with_capability(Capability::new(&format!("x{x}")).unwrap());
    }
    if v.pads {
        for n in 0..140 {
            p = p.with_capability(Capability::new(&format!("pad{n:03}")).unwrap());
        }
    }
    if let Some(d) = a.declared {
        p = p.with_capacity(d.resources());
    }
    p
}

fn build(s: &Scenario, v: Variant) -> (AgentRegistry, Option<ResourceLedger>) {
    let now = Timestamp::from_secs(0);
    let order: Vec<usize> = if v.shuffled {
        s.order.clone()
    } else {
        (0..s.agents.len()).collect()
    };
    let mut registry = AgentRegistry::new();
    let mut ledger = ResourceLedger::new();
    for &k in &order {
        let a = &s.agents[k];
        let id = agent_id(k);
        registry.register(profile(k, a, v), now).unwrap();
        for _ in 0..a.running {
            if registry.task_started(id, now).is_err() {
                break;
            }
        }
        if registry.status(id).unwrap() != a.status {
            // Refused when the status cannot be reached (available with every slot
            // taken): the agent keeps the status it has.
            let _ = registry.set_status(id, a.status, now);
        }
        if let Some((capacity, quarters)) = a.ledger {
            ledger.add_agent(id, &capacity.resources()).unwrap();
            ledger
                .allocate(id, &capacity.scaled(quarters).resources(), now)
                .unwrap();
        }
    }
    (registry, s.use_ledger.then_some(ledger))
}

fn tasks(s: &Scenario, v: Variant) -> Vec<Task> {
    s.tasks
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let mut req = Requirements::new()
                .with_priority(Priority(t.priority * 40))
                .with_resources(t.needs.resources());
            for &r in &t.roles {
                req = req.with_role(Role::new(ROLES[r]).unwrap());
            }
            if v.everyone && !t.roles.is_empty() {
                req = req.with_role(Role::new("everyone").unwrap());
            }
            if t.ghost_role {
                req = req.with_role(Role::new("ghost").unwrap());
            }
            for &c in &t.caps {
                req = req.with_capability(Capability::new(CAPS[c]).unwrap());
            }
            if let Some(x) = t.extra {
                req = req.with_capability(Capability::new(&format!("x{x}")).unwrap());
            }
            if t.ghost_cap {
                req = req.with_capability(Capability::new("ghost").unwrap());
            }
            if let Some(d) = t.deadline {
                req = req.with_deadline(Timestamp::from_secs(d));
            }
            Task::new(TaskId::new(k as u64 * 5 + 1), "work", "w").with_requirements(req)
        })
        .collect()
}

fn weights(s: &Scenario) -> ScoreWeights {
    match s.weights {
        0 => ScoreWeights::spread(),
        1 => ScoreWeights::bin_pack(),
        2 => ScoreWeights {
            least_allocated: 0.0,
            most_allocated: 0.0,
            balanced: 1.0,
            affinity: 0.0,
        },
        _ => ScoreWeights {
            least_allocated: 1.0,
            most_allocated: 2.0,
            balanced: 0.0,
            affinity: 0.0,
        },
    }
}

fn refused(s: &Scenario, task: TaskId, agent: AgentId) -> bool {
    s.refuse != 0 && (31 * task.get() + 17 * agent.get()) % s.refuse == 0
}

/// Runs the greedy assigner on a variant of the scenario.
fn run(
    s: &Scenario,
    v: Variant,
    assigner: &GreedyAssigner,
) -> (Plan, AgentRegistry, Option<ResourceLedger>) {
    let (registry, ledger) = build(s, v);
    let fleet = Fleet::new(&registry, ledger.as_ref());
    let mut admission = |task: &Task, agent: AgentId, _: &[Placement]| -> Result<(), Refusal> {
        if refused(s, task.id(), agent) {
            return Err(Refusal::new(task.id(), agent, "rand", "refused at random"));
        }
        Ok(())
    };
    let plan = assigner
        .assign(&tasks(s, v), &fleet, &mut admission)
        .expect("valid input is never an error");
    (plan, registry, ledger)
}

/// Admits everyone: forces the assigner's host-plugin path.
#[derive(Debug)]
struct Everyone;

impl Filter for Everyone {
    fn name(&self) -> &str {
        "everyone"
    }
    fn admits(&self, _: &Task, _: AgentId, _: &Fleet) -> bool {
        true
    }
}

// ----- the naive reference -------------------------------------------------------

/// One agent as the reference sees it, from the spec and the ledger's public API.
#[derive(Debug, Clone)]
struct Model {
    id: AgentId,
    status: AgentStatus,
    slots: u32,
    roles: BTreeSet<String>,
    caps: BTreeSet<String>,
    /// Free now; `None` is unlimited.
    free: Option<Resources>,
    /// Total, for utilization; `None` is unknown.
    capacity: Option<Resources>,
}

fn models(s: &Scenario, registry: &AgentRegistry, ledger: Option<&ResourceLedger>) -> Vec<Model> {
    let mut out: Vec<Model> = s
        .agents
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let id = agent_id(k);
            let view = registry.get(id).unwrap();
            let (free, capacity) = match ledger.filter(|_| a.ledger.is_some()) {
                Some(l) => (Some(l.free(id).unwrap()), Some(l.capacity(id).unwrap())),
                None => (
                    a.declared.map(Amounts::resources),
                    a.declared.map(Amounts::resources),
                ),
            };
            Model {
                id,
                status: view.status(),
                slots: view.free_slots(),
                roles: a.roles.iter().map(|&r| ROLES[r].to_owned()).collect(),
                caps: a
                    .caps
                    .iter()
                    .map(|&c| CAPS[c].to_owned())
                    .chain(a.extra.iter().map(|x| format!("x{x}")))
                    .collect(),
                free,
                capacity,
            }
        })
        .collect();
    out.sort_by_key(|m| m.id);
    out
}

/// The first filter `m` fails for `task`, in the documented order; the first missing
/// role or capability is the one with the lowest catalog bit.
fn first_failure(m: &Model, task: &Task, registry: &AgentRegistry) -> Option<Rejection> {
    let req = task.requirements();
    if m.status != AgentStatus::Available {
        return Some(Rejection::Status { status: m.status });
    }
    if m.slots == 0 {
        return Some(Rejection::NoFreeSlot);
    }
    let bit_of_role = |r: &Role| {
        registry
            .role_catalog()
            .get(r.as_str())
            .map_or(usize::MAX, |b| b.index())
    };
    if let Some(role) = req
        .roles()
        .iter()
        .filter(|r| !m.roles.contains(r.as_str()))
        .min_by_key(|r| bit_of_role(r))
    {
        return Some(Rejection::MissingRole { role: role.clone() });
    }
    let bit_of_cap = |c: &Capability| {
        registry
            .capability_catalog()
            .get(c.as_str())
            .map_or(usize::MAX, |b| b.index())
    };
    if let Some(capability) = req
        .capabilities()
        .iter()
        .filter(|c| !m.caps.contains(c.as_str()))
        .min_by_key(|c| bit_of_cap(c))
    {
        return Some(Rejection::MissingCapability {
            capability: capability.clone(),
        });
    }
    let free = m.free.as_ref()?;
    req.resources()
        .iter()
        .find(|(name, need)| free.get(name) < *need)
        .map(|(resource, _)| Rejection::Insufficient { resource })
}

/// The naive built-in score of `m` for `task` under `w`.
fn score(m: &Model, task: &Task, w: &ScoreWeights) -> f64 {
    let needs = task.requirements().resources();
    let mut dims = vec![ResourceName::Cpu, ResourceName::Memory];
    for (name, _) in needs.iter() {
        if !dims.contains(&name) {
            dims.push(name);
        }
    }
    let utils: Vec<f64> = dims
        .iter()
        .map(|d| match (&m.free, &m.capacity) {
            (Some(free), Some(cap)) if cap.get(d) > 0 => {
                1.0 - (free.get(d) - needs.get(d)) as f64 / cap.get(d) as f64
            }
            _ => 0.0,
        })
        .collect();
    let k = utils.len() as f64;
    let mean = utils.iter().sum::<f64>() / k;
    let var = (utils.iter().map(|u| u * u).sum::<f64>() / k - mean * mean).max(0.0);
    // Without an affinity table, affinity counts only if nothing else does.
    let others = w.least_allocated + w.most_allocated + w.balanced;
    let affinity = if others > 0.0 { 0.0 } else { w.affinity };
    let parts = [
        (w.least_allocated, 100.0 * (1.0 - mean)),
        (w.most_allocated, 100.0 * mean),
        (w.balanced, 100.0 * (1.0 - var.sqrt())),
        (affinity, 0.0),
    ];
    let total: f64 = parts.iter().map(|(w, s)| w * s).sum();
    total / (others + affinity)
}

/// The order tasks are decided in, written out independently.
fn decision_order(tasks: &[Task]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (tasks[a].requirements(), tasks[b].requirements());
        rb.priority()
            .cmp(&ra.priority())
            .then_with(|| match (ra.deadline(), rb.deadline()) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then(a.cmp(&b))
    });
    order
}

/// Rejections as a map; `None` if a reason is listed twice or counted zero times.
fn rejections(e: &Explanation) -> Option<BTreeMap<Rejection, usize>> {
    let mut out = BTreeMap::new();
    for c in &e.rejected {
        if c.count == 0 || out.insert(c.reason.clone(), c.count).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Rejections by category: roles and capabilities collapsed.
fn categories(e: &Explanation) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in &e.rejected {
        let key = match &c.reason {
            Rejection::MissingRole { .. } => "role".to_owned(),
            Rejection::MissingCapability { .. } => "capability".to_owned(),
            other => format!("{other:?}"),
        };
        *out.entry(key).or_insert(0) += c.count;
    }
    out
}

/// Properties (a), (b) and (c): replays the plan in decision order against the models.
fn check_against_reference(
    s: &Scenario,
    plan: &Plan,
    registry: &AgentRegistry,
    ledger: Option<&ResourceLedger>,
) -> Result<(), TestCaseError> {
    let batch = tasks(s, Variant::default());
    let w = weights(s);
    let mut ms = models(s, registry, ledger);
    let n = ms.len();
    prop_assert_eq!(plan.placements.len() + plan.unplaced.len(), batch.len());
    // Placements and unplaced tasks come back in batch order.
    let pos = |t: TaskId| batch.iter().position(|b| b.id() == t).unwrap();
    prop_assert!(
        plan.placements
            .windows(2)
            .all(|p| pos(p[0].task) < pos(p[1].task))
    );
    prop_assert!(
        plan.unplaced
            .windows(2)
            .all(|u| pos(u[0].task) < pos(u[1].task))
    );

    let mut refusal_at = 0;
    for k in decision_order(&batch) {
        let task = &batch[k];
        let placed = plan.placement(task.id());
        let explanation = match placed {
            Some(p) => &p.explanation,
            None => {
                &plan
                    .unplaced
                    .iter()
                    .find(|u| u.task == task.id())
                    .expect("every task comes back")
                    .explanation
            }
        };
        // Refusals are recorded in decision order.
        let mut asked_and_refused = Vec::new();
        while let Some(r) = plan
            .refusals
            .get(refusal_at)
            .filter(|r| r.task == task.id())
        {
            prop_assert!(
                refused(s, r.task, r.agent),
                "recorded refusal not made: {:?}",
                r
            );
            prop_assert_eq!(r.rule.as_str(), "rand");
            asked_and_refused.push(r.agent);
            refusal_at += 1;
        }

        // (c) bookkeeping.
        prop_assert_eq!(explanation.considered, n);
        let total: usize = explanation.rejected.iter().map(|c| c.count).sum();
        prop_assert_eq!(explanation.fit + total, n, "{}", explanation);

        let outcomes: Vec<Option<Rejection>> = ms
            .iter()
            .map(|m| first_failure(m, task, registry))
            .collect();
        let fits: Vec<usize> = (0..n).filter(|&i| outcomes[i].is_none()).collect();

        // (a) the placement passes every filter and was admitted.
        if let Some(p) = placed {
            let i = ms.iter().position(|m| m.id == p.agent).unwrap();
            prop_assert!(
                outcomes[i].is_none(),
                "{} placed on {} which fails {:?}",
                task.id(),
                p.agent,
                outcomes[i]
            );
            prop_assert!(!refused(s, task.id(), p.agent));
            prop_assert_eq!(explanation.winner.map(|w| w.0), Some(p.agent));
            prop_assert_eq!(explanation.winner.map(|w| w.1), Some(p.score));
            prop_assert!(!asked_and_refused.contains(&p.agent));
        } else {
            prop_assert_eq!(explanation.winner, None);
            prop_assert_eq!(explanation.runner_up, None);
            prop_assert!(explanation.scores.is_empty());
        }
        {
            // (b) every fit was refused before the task went unplaced; a placed task
            // went to the best unrefused fit.
            let refused_set: BTreeSet<AgentId> = asked_and_refused.iter().copied().collect();
            prop_assert_eq!(refused_set.len(), asked_and_refused.len(), "asked twice");
            for a in &asked_and_refused {
                let i = ms.iter().position(|m| m.id == *a).unwrap();
                prop_assert!(fits.contains(&i), "refused {} did not fit", a);
            }
            let open: Vec<usize> = fits
                .iter()
                .copied()
                .filter(|&i| !refused_set.contains(&ms[i].id))
                .collect();
            match placed {
                None => prop_assert!(
                    open.is_empty(),
                    "{} unplaced though {:?} fit: {}",
                    task.id(),
                    open.iter().map(|&i| ms[i].id).collect::<Vec<_>>(),
                    explanation
                ),
                Some(p) => {
                    let i = ms.iter().position(|m| m.id == p.agent).unwrap();
                    let mine = score(&ms[i], task, &w);
                    prop_assert!(
                        (mine - p.score).abs() < EPS,
                        "score {} vs naive {}",
                        p.score,
                        mine
                    );
                    for &j in &open {
                        prop_assert!(
                            score(&ms[j], task, &w) <= p.score + EPS,
                            "{} beat the winner {}",
                            ms[j].id,
                            p.agent
                        );
                    }
                    for a in &asked_and_refused {
                        let j = ms.iter().position(|m| m.id == *a).unwrap();
                        prop_assert!(
                            score(&ms[j], task, &w) >= p.score - EPS,
                            "{} asked out of order",
                            a
                        );
                    }
                    let rivals: Vec<usize> = open.iter().copied().filter(|&j| j != i).collect();
                    match explanation.runner_up {
                        None => prop_assert!(rivals.is_empty()),
                        Some((b, sb)) => {
                            let j = ms.iter().position(|m| m.id == b).unwrap();
                            prop_assert!(rivals.contains(&j), "runner-up {} is no rival", b);
                            prop_assert!((score(&ms[j], task, &w) - sb).abs() < EPS);
                            prop_assert!(sb <= p.score + EPS);
                            for &r in &rivals {
                                prop_assert!(score(&ms[r], task, &w) <= sb + EPS);
                            }
                        }
                    }
                }
            }
            // (c) the rejections are the naive first-failing filter's.
            {
                let mut expected: BTreeMap<Rejection, usize> = BTreeMap::new();
                for o in outcomes.iter().flatten() {
                    *expected.entry(o.clone()).or_insert(0) += 1;
                }
                if !asked_and_refused.is_empty() {
                    expected.insert(
                        Rejection::Policy {
                            rule: "rand".into(),
                        },
                        asked_and_refused.len(),
                    );
                }
                prop_assert_eq!(rejections(explanation), Some(expected), "{}", explanation);
                prop_assert_eq!(explanation.fit, fits.len() - asked_and_refused.len());
            }
        }
        // Charge the winner.
        if let Some(p) = placed {
            let m = ms.iter_mut().find(|m| m.id == p.agent).unwrap();
            m.slots -= 1;
            if let Some(free) = &mut m.free {
                *free = free.checked_sub(task.requirements().resources()).unwrap();
            }
        }
    }
    prop_assert_eq!(
        refusal_at,
        plan.refusals.len(),
        "refusals out of decision order"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// (a), (b), (c) against the naive reference; (d) determinism and registration
    /// order; (e) the index's cases and the host-plugin path agree.
    #[test]
    fn greedy_matches_a_naive_reference(s in scenario()) {
        let assigner = GreedyAssigner::new().with_weights(weights(&s));
        let (plan, registry, ledger) = run(&s, Variant::default(), &assigner);
        check_against_reference(&s, &plan, &registry, ledger.as_ref())?;

        // (d) Same input, same plan.
        let (again, _, _) = run(&s, Variant::default(), &assigner);
        prop_assert_eq!(&again, &plan);
        // (d) Registration order changes no decision.
        let (shuffled, _, _) = run(&s, Variant { shuffled: true, ..Variant::default() }, &assigner);
        prop_assert_eq!(&shuffled.refusals, &plan.refusals);
        prop_assert_eq!(shuffled.unplaced.len(), plan.unplaced.len());
        for (a, b) in shuffled.placements.iter().zip(&plan.placements) {
            prop_assert_eq!((a.task, a.agent, a.score), (b.task, b.agent, b.score));
            let (ea, eb) = (&a.explanation, &b.explanation);
            prop_assert_eq!((ea.fit, ea.winner, ea.runner_up), (eb.fit, eb.winner, eb.runner_up));
            prop_assert_eq!(&ea.scores, &eb.scores);
            prop_assert_eq!(categories(ea), categories(eb));
        }
        for (a, b) in shuffled.unplaced.iter().zip(&plan.unplaced) {
            prop_assert_eq!(a.task, b.task);
            prop_assert_eq!(a.explanation.fit, b.explanation.fit);
            prop_assert_eq!(categories(&a.explanation), categories(&b.explanation));
        }

        // (e) Tasks with one role also ask for a role every agent plays: a map with no
        // empty word, which narrows nothing.
        let (blocks, _, _) = run(&s, Variant { everyone: true, ..Variant::default() }, &assigner);
        prop_assert_eq!(&blocks, &plan);
        // (e) Every agent has 140 more capabilities: the index reads bits past the
        // first 128 from the spilled words.
        let (exact, _, _) = run(&s, Variant { pads: true, ..Variant::default() }, &assigner);
        prop_assert_eq!(&exact, &plan);
        // (e) A host filter that admits everyone: the sorted, host-plugin path.
        let hosted = assigner.clone().with_filter(Arc::new(Everyone));
        let (hosted, _, _) = run(&s, Variant::default(), &hosted);
        prop_assert_eq!(&hosted, &plan);
    }
}
