//! Assignment: the greedy assigner, the fleet it chooses from and the explanations it
//! gives, through the public API.
//!
//! Every built-in filter (status, slots, role, capability, each resource dimension),
//! every built-in scorer, tie-breaking, batch order, the `Admission` hook, host filters
//! and scorers, explanation text and serde, every `AssignmentError`, fleets with and
//! without a ledger, and the three filter paths (role index, 64-agent blocks, exact
//! per-agent when bitsets spill past 128 names).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::assignment::{
    Admission, AdmitAll, AffinityTable, Assigner, AssignmentError, Explanation, Filter, Fleet,
    GreedyAssigner, Placement, Plan, Refusal, Rejection, RejectionCount, ScoreWeights, Scorer,
};
use concord::resource::LedgerConfig;
use concord::{
    AgentId, AllocationRequest, Capability, Priority, Requirements, ResourceLedger, ResourceName,
    Resources, Role, Task, TaskId, Timestamp,
};

use AgentStatus::{Busy, Offline, Quarantined, Unhealthy};

// ----- fixtures --------------------------------------------------------------------

fn id(n: u64) -> AgentId {
    AgentId::new(n)
}

fn tid(n: u64) -> TaskId {
    TaskId::new(n)
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

fn cap(name: &str) -> Capability {
    Capability::new(name).unwrap()
}

fn res(text: &str) -> Resources {
    text.parse().unwrap()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn rname(name: &str) -> ResourceName {
    name.parse().unwrap()
}

/// An agent with `roles` and `capabilities`, one slot and no declared capacity
/// (unlimited resources).
fn agent(n: u64, roles: &[&str], capabilities: &[&str]) -> AgentProfile {
    let mut p = AgentProfile::new(id(n), format!("agent-{n}"));
    for r in roles {
        p = p.with_role(role(r));
    }
    for c in capabilities {
        p = p.with_capability(cap(c));
    }
    p
}

fn registry(profiles: impl IntoIterator<Item = AgentProfile>) -> AgentRegistry {
    let mut r = AgentRegistry::new();
    for p in profiles {
        r.register(p, t(0)).unwrap();
    }
    r
}

fn task(n: u64, req: Requirements) -> Task {
    Task::new(tid(n), "work", format!("task {n}")).with_requirements(req)
}

fn needs(roles: &[&str], capabilities: &[&str], resources: &str) -> Requirements {
    let mut req = Requirements::new();
    for r in roles {
        req = req.with_role(role(r));
    }
    for c in capabilities {
        req = req.with_capability(cap(c));
    }
    if !resources.is_empty() {
        req = req.with_resources(res(resources));
    }
    req
}

fn greedy() -> GreedyAssigner {
    GreedyAssigner::new()
}

/// Only the named built-in scorers, each with weight 1.
fn only(names: &[&str]) -> ScoreWeights {
    let w = |n: &str| if names.contains(&n) { 1.0 } else { 0.0 };
    ScoreWeights {
        least_allocated: w("least_allocated"),
        most_allocated: w("most_allocated"),
        balanced: w("balanced"),
        affinity: w("affinity"),
    }
}

fn placed_on(plan: &Plan, task: u64) -> Option<AgentId> {
    plan.placement(tid(task)).map(|p| p.agent)
}

fn unplaced(plan: &Plan, task: u64) -> &Explanation {
    &plan
        .unplaced
        .iter()
        .find(|u| u.task == tid(task))
        .unwrap_or_else(|| panic!("task {task} was placed: {plan:#?}"))
        .explanation
}

fn count(e: &Explanation, reason: &Rejection) -> usize {
    e.rejected
        .iter()
        .find(|c| &c.reason == reason)
        .map_or(0, |c| c.count)
}

fn rejected_total(e: &Explanation) -> usize {
    e.rejected.iter().map(|c| c.count).sum()
}

/// Checks the bookkeeping every explanation keeps: fit plus rejected is considered.
fn assert_accounted(plan: &Plan) {
    let all = plan
        .placements
        .iter()
        .map(|p| &p.explanation)
        .chain(plan.unplaced.iter().map(|u| &u.explanation));
    for e in all {
        assert_eq!(e.fit + rejected_total(e), e.considered, "{e:?}");
    }
}

fn status(s: AgentStatus) -> Rejection {
    Rejection::Status { status: s }
}

fn missing_role(name: &str) -> Rejection {
    Rejection::MissingRole { role: role(name) }
}

fn missing_cap(name: &str) -> Rejection {
    Rejection::MissingCapability {
        capability: cap(name),
    }
}

fn short(name: &str) -> Rejection {
    Rejection::Insufficient {
        resource: rname(name),
    }
}

// ----- filters ---------------------------------------------------------------------

#[test]
fn only_available_agents_are_offered_work() {
    let mut reg = registry((1..=5).map(|n| agent(n, &["ops"], &[])));
    reg.set_status(id(1), Busy, t(1)).unwrap();
    reg.set_status(id(2), Unhealthy, t(1)).unwrap();
    reg.set_status(id(3), Quarantined, t(1)).unwrap();
    reg.set_status(id(4), Offline, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    let plan = greedy()
        .assign_all(
            &[task(1, Requirements::new()), task(2, Requirements::new())],
            &fleet,
        )
        .unwrap();

    assert_eq!(placed_on(&plan, 1), Some(id(5)));
    let e = &plan.placements[0].explanation;
    assert_eq!((e.considered, e.fit), (5, 1));
    for s in [Busy, Unhealthy, Quarantined, Offline] {
        assert_eq!(count(e, &status(s)), 1, "{s}");
    }
    // Agent 5's only slot went to task 1.
    let e = unplaced(&plan, 2);
    assert_eq!(e.fit, 0);
    assert_eq!(count(e, &Rejection::NoFreeSlot), 1);
    assert_eq!(
        e.to_string(),
        "0 of 5 agents fit: 1 is busy, 1 is unhealthy, 1 is quarantined, 1 is offline, \
         1 has no free slot"
    );
    assert_accounted(&plan);
}

#[test]
fn an_agent_whose_slots_are_full_is_rejected_as_busy() {
    let mut reg = registry([agent(1, &[], &[]).with_max_tasks(1), agent(2, &[], &[])]);
    assert_eq!(reg.task_started(id(1), t(1)).unwrap(), Busy);
    let plan = greedy()
        .assign_all(&[task(1, Requirements::new())], &Fleet::new(&reg, None))
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(2)));
    assert_eq!(
        plan.placements[0].explanation.rejected,
        [RejectionCount {
            reason: status(Busy),
            count: 1
        }]
    );
}

#[test]
fn slots_are_used_up_within_a_batch() {
    let reg = registry([agent(1, &[], &[]).with_max_tasks(2), agent(2, &[], &[])]);
    let mut reg2 = reg.clone();
    // One slot of agent 1 is already taken: the fleet offers one.
    reg2.task_started(id(1), t(1)).unwrap();

    let tasks: Vec<Task> = (1..=4).map(|n| task(n, Requirements::new())).collect();
    let plan = greedy()
        .assign_all(&tasks, &Fleet::new(&reg, None))
        .unwrap();
    assert_eq!(plan.placements.len(), 3);
    let mut per_agent = [0; 3];
    for p in &plan.placements {
        per_agent[p.agent.get() as usize] += 1;
    }
    assert_eq!(per_agent, [0, 2, 1]);
    let e = unplaced(&plan, 4);
    assert_eq!(count(e, &Rejection::NoFreeSlot), 2);
    assert_eq!(e.to_string(), "0 of 2 agents fit: 2 have no free slot");

    let fleet2 = Fleet::new(&reg2, None);
    assert_eq!(fleet2.free_slots(id(1)), Some(1));
    let plan = greedy().assign_all(&tasks, &fleet2).unwrap();
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(plan.unplaced.len(), 2);
    assert_accounted(&plan);
}

#[test]
fn roles_filter_agents() {
    let reg = registry([
        agent(1, &["ops"], &[]),
        agent(2, &["qa"], &[]),
        agent(3, &["ops", "qa"], &[]),
    ]);
    let fleet = Fleet::new(&reg, None);
    let tasks = [
        task(1, needs(&["qa"], &[], "")),
        task(2, needs(&["ops", "qa"], &[], "")),
        task(3, needs(&["security"], &[], "")),
    ];
    // One task at a time: each agent has one slot.
    let plan = greedy().assign_all(&tasks[..1], &fleet).unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(2)));
    assert_eq!(
        count(&plan.placements[0].explanation, &missing_role("qa")),
        1
    );

    let plan = greedy().assign_all(&tasks[1..2], &fleet).unwrap();
    assert_eq!(placed_on(&plan, 2), Some(id(3)));
    let e = &plan.placements[0].explanation;
    assert_eq!(count(e, &missing_role("qa")), 1, "{e}");
    assert_eq!(count(e, &missing_role("ops")), 1, "{e}");

    // A role no agent plays.
    let plan = greedy().assign_all(&tasks[2..], &fleet).unwrap();
    assert_eq!(
        unplaced(&plan, 3).to_string(),
        "0 of 3 agents fit: 3 lack role `security`"
    );
    assert_accounted(&plan);
}

#[test]
fn capabilities_filter_agents() {
    let reg = registry([
        agent(1, &["qa"], &["browser"]),
        agent(2, &["qa"], &["browser", "screenshot"]),
        agent(3, &["qa"], &["shell"]),
        agent(4, &["ops"], &["screenshot"]),
    ]);
    let fleet = Fleet::new(&reg, None);
    // Single role: the role index path.
    let plan = greedy()
        .assign_all(&[task(1, needs(&["qa"], &["screenshot"], ""))], &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(2)));
    let e = &plan.placements[0].explanation;
    assert_eq!(count(e, &missing_cap("screenshot")), 2);
    assert_eq!(count(e, &missing_role("qa")), 1);
    // No role: the block path.
    let plan = greedy()
        .assign_all(
            &[task(2, needs(&[], &["browser", "screenshot"], ""))],
            &fleet,
        )
        .unwrap();
    assert_eq!(placed_on(&plan, 2), Some(id(2)));
    let e = &plan.placements[0].explanation;
    assert_eq!(e.fit, 1);
    // Agent 1 lacks screenshot, agents 3 and 4 lack browser (the first missing one).
    assert_eq!(count(e, &missing_cap("screenshot")), 1, "{e}");
    assert_eq!(count(e, &missing_cap("browser")), 2, "{e}");
    // A capability no agent has.
    let plan = greedy()
        .assign_all(&[task(3, needs(&[], &["gpu-driver"], ""))], &fleet)
        .unwrap();
    assert_eq!(
        unplaced(&plan, 3).to_string(),
        "0 of 4 agents fit: 4 lack capability `gpu-driver`"
    );
    assert_accounted(&plan);
}

#[test]
fn each_resource_dimension_filters_agents() {
    let big = "cpu=8,memory=16Gi,storage=100Gi,gpu=2";
    let reg = registry([
        agent(1, &[], &[]).with_capacity(res(big)),
        agent(2, &[], &[]).with_capacity(res("cpu=1,memory=16Gi,storage=100Gi,gpu=2")),
        agent(3, &[], &[]).with_capacity(res("cpu=8,memory=1Gi,storage=100Gi,gpu=2")),
        agent(4, &[], &[]).with_capacity(res("cpu=8,memory=16Gi,storage=1Gi,gpu=2")),
        agent(5, &[], &[]).with_capacity(res("cpu=8,memory=16Gi,storage=100Gi")),
    ]);
    let fleet = Fleet::new(&reg, None);
    assert_eq!(fleet.free(id(5)).unwrap().amount("gpu"), 0);
    let need = "cpu=2,memory=2Gi,storage=2Gi,gpu=1";
    let plan = greedy()
        .assign_all(&[task(1, needs(&[], &[], need))], &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(1)));
    let e = &plan.placements[0].explanation;
    for dim in ["cpu", "memory", "storage", "gpu"] {
        assert_eq!(count(e, &short(dim)), 1, "{dim}: {e}");
    }
    assert_eq!(
        e.to_string().split(';').next().unwrap(),
        "1 of 5 agents fit: 1 lacks cpu, 1 lacks memory, 1 lacks storage, 1 lacks gpu"
    );
    // Too much for anyone.
    let plan = greedy()
        .assign_all(&[task(2, needs(&[], &[], "gpu=3"))], &fleet)
        .unwrap();
    assert_eq!(
        unplaced(&plan, 2).to_string(),
        "0 of 5 agents fit: 5 lack gpu"
    );
    assert_accounted(&plan);
}

#[test]
fn resources_are_used_up_within_a_batch() {
    let reg = registry([
        agent(1, &[], &[])
            .with_capacity(res("cpu=4,gpu=1"))
            .with_max_tasks(10),
        agent(2, &[], &[])
            .with_capacity(res("cpu=2,gpu=1"))
            .with_max_tasks(10),
    ]);
    let fleet = Fleet::new(&reg, None);
    let tasks: Vec<Task> = (1..=4).map(|n| task(n, needs(&[], &[], "cpu=2"))).collect();
    let plan = greedy().assign_all(&tasks, &fleet).unwrap();
    assert_eq!(plan.placements.len(), 3);
    let on_1 = plan.placements.iter().filter(|p| p.agent == id(1)).count();
    assert_eq!(on_1, 2);
    assert_eq!(
        unplaced(&plan, 4).to_string(),
        "0 of 2 agents fit: 2 lack cpu"
    );

    let gpus: Vec<Task> = (1..=3).map(|n| task(n, needs(&[], &[], "gpu=1"))).collect();
    let plan = greedy().assign_all(&gpus, &fleet).unwrap();
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(
        unplaced(&plan, 3).to_string(),
        "0 of 2 agents fit: 2 lack gpu"
    );
    // The fleet itself is not changed by assigning.
    assert_eq!(fleet.free(id(1)).unwrap().cpu_millis(), 4000);
    assert_eq!(fleet.free_slots(id(1)), Some(10));
}

#[test]
fn agents_without_declared_capacity_are_unlimited() {
    let reg = registry([
        agent(1, &[], &[]).with_capacity(res("cpu=1,gpu=1")),
        agent(2, &[], &[]).with_max_tasks(3),
    ]);
    let fleet = Fleet::new(&reg, None);
    assert_eq!(fleet.free(id(2)).unwrap().cpu_millis(), u64::MAX);
    let tasks: Vec<Task> = (1..=3)
        .map(|n| task(n, needs(&[], &[], "cpu=1000,memory=1000Gi,gpu=50")))
        .collect();
    let plan = greedy().assign_all(&tasks, &fleet).unwrap();
    assert!(plan.unplaced.is_empty(), "{plan:#?}");
    assert!(plan.placements.iter().all(|p| p.agent == id(2)));
    assert_eq!(
        plan.placements[0].explanation.rejected,
        [RejectionCount {
            reason: short("cpu"),
            count: 1
        }]
    );
}

/// Guards the bug where an extended resource that no agent declares (so the fleet has
/// no dimension for it) makes the task unplaceable even on agents with unlimited
/// resources.
#[test]
fn unlimited_agents_take_resources_nobody_declares() {
    let reg = registry([agent(1, &[], &[]), agent(2, &[], &[])]);
    let fleet = Fleet::new(&reg, None);
    assert_eq!(fleet.free(id(1)).unwrap().cpu_millis(), u64::MAX);
    let plan = greedy()
        .assign_all(&[task(1, needs(&[], &[], "gpu=1"))], &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(1)), "{plan:#?}");
}

// ----- the fleet, with and without a ledger ------------------------------------------

#[test]
fn a_fleet_without_a_ledger_offers_declared_capacity() {
    let mut reg = registry([
        agent(3, &["ops"], &[]).with_capacity(res("cpu=2,memory=4Gi")),
        agent(1, &["qa"], &[]).with_max_tasks(4),
    ]);
    reg.task_started(id(1), t(1)).unwrap();
    reg.set_status(id(3), Offline, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    assert_eq!(fleet.len(), 2);
    assert!(!fleet.is_empty());
    assert_eq!(fleet.ids(), [id(1), id(3)]);
    assert_eq!(fleet.free(id(3)), Some(res("cpu=2,memory=4Gi")));
    assert_eq!(fleet.free_slots(id(1)), Some(3));
    assert_eq!(fleet.status(id(3)), Some(Offline));
    assert_eq!(fleet.status(id(9)), None);
    assert_eq!(fleet.free(id(9)), None);
    assert_eq!(fleet.free_slots(id(9)), None);
}

#[test]
fn ledger_allocations_and_reservations_reduce_what_the_fleet_offers() {
    let reg = registry([
        agent(1, &[], &[])
            .with_capacity(res("cpu=64"))
            .with_max_tasks(5),
        agent(2, &[], &[]).with_max_tasks(5),
        agent(3, &[], &[])
            .with_capacity(res("cpu=8"))
            .with_max_tasks(5),
        agent(4, &[], &[]).with_max_tasks(5),
    ]);
    let mut ledger =
        ResourceLedger::with_config(LedgerConfig::default().with_reserve_after(Duration::ZERO));
    // The ledger overrides the declared capacity of agent 1.
    ledger.add_agent(id(1), &res("cpu=4,memory=8Gi")).unwrap();
    ledger.add_agent(id(2), &res("cpu=4,memory=8Gi")).unwrap();
    ledger.allocate(id(1), &res("cpu=3"), t(0)).unwrap();
    // Agent 2: 1 cpu held, and 4 reserved for a request that has waited: none free.
    ledger.allocate(id(2), &res("cpu=1"), t(0)).unwrap();
    ledger
        .request(AllocationRequest::new(id(2), res("cpu=4")), t(0))
        .unwrap();
    assert!(ledger.drain(t(1)).is_empty());

    let fleet = Fleet::new(&reg, Some(&ledger));
    assert_eq!(fleet.free(id(1)).unwrap(), res("cpu=1,memory=8Gi"));
    assert_eq!(fleet.free(id(2)).unwrap(), res("memory=8Gi"));
    // Not in the ledger: declared capacity, or unlimited.
    assert_eq!(fleet.free(id(3)).unwrap().cpu_millis(), 8000);
    assert_eq!(fleet.free(id(4)).unwrap().cpu_millis(), u64::MAX);

    let plan = greedy()
        .assign_all(&[task(1, needs(&[], &[], "cpu=2,memory=1Gi"))], &fleet)
        .unwrap();
    let e = &plan.placements[0].explanation;
    // Agents 1 and 2 lack cpu; agent 3 has cpu but no memory; agent 4 is unlimited.
    assert_eq!(placed_on(&plan, 1), Some(id(4)), "{e}");
    assert_eq!(count(e, &short("cpu")), 2, "{e}");
    assert_eq!(count(e, &short("memory")), 1, "{e}");

    // The same registry without the ledger: agent 1 offers its declared 64 cpus.
    let fleet = Fleet::new(&reg, None);
    let plan = greedy()
        .assign_all(&[task(1, needs(&[], &[], "cpu=16"))], &fleet)
        .unwrap();
    let e = &plan.placements[0].explanation;
    assert_eq!(e.fit, 3, "{e}");
    assert_eq!(count(e, &short("cpu")), 1, "{e}");
}

/// A pool limit in the ledger bounds the total across agents; a fleet copies only the
/// per-agent free amounts, so a batch can place more than the pool holds.
#[test]
fn a_batch_respects_ledger_pool_limits() {
    let reg = registry([agent(1, &[], &[]), agent(2, &[], &[])]);
    let mut ledger = ResourceLedger::new();
    ledger.add_agent(id(1), &res("gpu=1")).unwrap();
    ledger.add_agent(id(2), &res("gpu=1")).unwrap();
    ledger.set_pool_limit(&rname("gpu"), Some(1)).unwrap();
    let fleet = Fleet::new(&reg, Some(&ledger));
    let tasks = [
        task(1, needs(&[], &[], "gpu=1")),
        task(2, needs(&[], &[], "gpu=1")),
    ];
    let plan = greedy().assign_all(&tasks, &fleet).unwrap();
    assert_eq!(plan.placements.len(), 1, "{plan:#?}");
}

// ----- scorers -----------------------------------------------------------------------

/// Two agents with 4 cpu and 4Gi each; agent 2 already holds half of both.
fn half_loaded() -> (AgentRegistry, ResourceLedger) {
    let reg = registry([
        agent(1, &[], &[]).with_max_tasks(4),
        agent(2, &[], &[]).with_max_tasks(4),
    ]);
    let mut ledger = ResourceLedger::new();
    ledger.add_agent(id(1), &res("cpu=4,memory=4Gi")).unwrap();
    ledger.add_agent(id(2), &res("cpu=4,memory=4Gi")).unwrap();
    ledger
        .allocate(id(2), &res("cpu=2,memory=2Gi"), t(0))
        .unwrap();
    (reg, ledger)
}

#[test]
fn least_allocated_spreads_and_most_allocated_packs() {
    let (reg, ledger) = half_loaded();
    let fleet = Fleet::new(&reg, Some(&ledger));
    let one = [task(1, needs(&[], &[], "cpu=1,memory=1Gi"))];
    let pick = |w: ScoreWeights| {
        let plan = greedy().with_weights(w).assign_all(&one, &fleet).unwrap();
        plan.placements[0].clone()
    };
    let spread = pick(ScoreWeights::spread());
    assert_eq!(spread.agent, id(1));
    assert_eq!(pick(only(&["least_allocated"])).agent, id(1));
    let packed = pick(ScoreWeights::bin_pack());
    assert_eq!(packed.agent, id(2));
    assert_eq!(pick(only(&["most_allocated"])).agent, id(2));

    // Agent 1 after the task: 1/4 of both used; agent 2: 3/4.
    let least = pick(only(&["least_allocated"]));
    assert_eq!(least.score, 75.0);
    assert_eq!(least.explanation.runner_up, Some((id(2), 25.0)));
    let most = pick(only(&["most_allocated"]));
    assert_eq!(most.score, 75.0);
    assert_eq!(most.explanation.runner_up, Some((id(1), 25.0)));
    assert_eq!(ScoreWeights::spread(), ScoreWeights::default());
}

#[test]
fn spreading_and_packing_a_batch() {
    let reg = registry([
        agent(1, &[], &[])
            .with_capacity(res("cpu=4,memory=4Gi"))
            .with_max_tasks(4),
        agent(2, &[], &[])
            .with_capacity(res("cpu=4,memory=4Gi"))
            .with_max_tasks(4),
    ]);
    let fleet = Fleet::new(&reg, None);
    let tasks: Vec<Task> = (1..=4)
        .map(|n| task(n, needs(&[], &[], "cpu=1,memory=1Gi")))
        .collect();
    let agents = |w: ScoreWeights| -> Vec<u64> {
        let plan = greedy().with_weights(w).assign_all(&tasks, &fleet).unwrap();
        plan.placements.iter().map(|p| p.agent.get()).collect()
    };
    assert_eq!(agents(ScoreWeights::spread()), [1, 2, 1, 2]);
    assert_eq!(agents(ScoreWeights::bin_pack()), [1, 1, 1, 1]);
}

#[test]
fn balanced_prefers_even_use_across_resources() {
    let reg = registry([
        agent(1, &[], &[]).with_capacity(res("cpu=4,memory=16Gi")),
        agent(2, &[], &[]).with_capacity(res("cpu=4,memory=4Gi")),
    ]);
    let fleet = Fleet::new(&reg, None);
    let one = [task(1, needs(&[], &[], "cpu=2,memory=2Gi"))];
    let plan = greedy()
        .with_weights(only(&["balanced"]))
        .assign_all(&one, &fleet)
        .unwrap();
    // Agent 2 ends at 1/2 cpu and 1/2 memory; agent 1 at 1/2 and 1/8.
    let p = &plan.placements[0];
    assert_eq!(p.agent, id(2));
    assert_eq!(p.score, 100.0);
    assert_eq!(p.explanation.runner_up, Some((id(1), 81.25)));
    // Least-allocated alone prefers the roomier agent 1.
    let plan = greedy()
        .with_weights(only(&["least_allocated"]))
        .assign_all(&one, &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(1)));
}

#[test]
fn affinity_prefers_agents_that_did_the_kind_well() {
    let reg = registry([agent(1, &[], &[]), agent(2, &[], &[]), agent(3, &[], &[])]);
    let mut history = AffinityTable::default();
    history.record("deploy", id(2), true);
    history.record("deploy", id(3), true);
    history.record("deploy", id(3), false);
    let fleet = Fleet::new(&reg, None).with_affinity(history.clone());
    let deploy = Task::new(tid(1), "deploy", "ship it");
    let build = Task::new(tid(2), "build", "compile it");

    let plan = greedy()
        .with_weights(only(&["affinity"]))
        .assign_all(std::slice::from_ref(&deploy), &fleet)
        .unwrap();
    let p = &plan.placements[0];
    assert_eq!(p.agent, id(2));
    assert_eq!(p.score, 100.0);
    let affinity3 = 100.0 * history.affinity("deploy", id(3));
    assert_eq!(p.explanation.runner_up, Some((id(3), affinity3)));
    assert_eq!(p.explanation.scores.len(), 1);
    assert_eq!(p.explanation.scores[0].plugin, "affinity");

    // Default weights: the resource scorers tie (unlimited agents), affinity decides.
    let plan = greedy().assign_all(&[deploy], &fleet).unwrap();
    assert_eq!(plan.placements[0].agent, id(2));
    // No history for the kind: all tie, the lowest id wins.
    let plan = greedy()
        .with_weights(only(&["affinity"]))
        .assign_all(std::slice::from_ref(&build), &fleet)
        .unwrap();
    assert_eq!(plan.placements[0].agent, id(1));
    // No table at all.
    let plan = greedy()
        .with_weights(only(&["affinity"]))
        .assign_all(&[build], &Fleet::new(&reg, None))
        .unwrap();
    assert_eq!(plan.placements[0].agent, id(1));
    assert_eq!(plan.placements[0].score, 0.0);
}

#[test]
fn ties_go_to_the_lowest_agent_id() {
    // Registered out of order, all alike.
    let reg = registry([5, 3, 9, 4].map(|n| agent(n, &["qa"], &["shell"])));
    let fleet = Fleet::new(&reg, None);
    let tasks = [
        task(1, needs(&["qa"], &[], "")),        // role index
        task(2, needs(&[], &["shell"], "")),     // blocks
        task(3, needs(&["qa"], &["shell"], "")), // role index
    ];
    for t in &tasks {
        let plan = greedy()
            .assign_all(std::slice::from_ref(t), &fleet)
            .unwrap();
        let p = &plan.placements[0];
        assert_eq!(p.agent, id(3));
        assert_eq!(p.explanation.runner_up.map(|r| r.0), Some(id(4)));
        assert_eq!(p.explanation.fit, 4);
        // With a host scorer that says nothing, the sorted path ties the same way.
        let plan = greedy()
            .with_scorer(Arc::new(Constant(1.0)), 1.0)
            .assign_all(std::slice::from_ref(t), &fleet)
            .unwrap();
        assert_eq!(plan.placements[0].agent, id(3));
        assert_eq!(
            plan.placements[0].explanation.runner_up.map(|r| r.0),
            Some(id(4))
        );
    }
    // In a batch, each takes the lowest free agent.
    let plan = greedy().assign_all(&tasks, &fleet).unwrap();
    let agents: Vec<u64> = plan.placements.iter().map(|p| p.agent.get()).collect();
    assert_eq!(agents, [3, 4, 5]);
}

// ----- batch order -----------------------------------------------------------------

fn prio(n: u64, p: Priority) -> Task {
    task(n, Requirements::new().with_priority(p))
}

fn due(n: u64, deadline: Option<u64>) -> Task {
    let mut req = Requirements::new();
    if let Some(d) = deadline {
        req = req.with_deadline(t(d));
    }
    task(n, req)
}

#[test]
fn higher_priority_is_placed_first() {
    let reg = registry([agent(1, &[], &[])]);
    let fleet = Fleet::new(&reg, None);
    let batch = [
        prio(1, Priority::LOW),
        prio(2, Priority::CRITICAL),
        prio(3, Priority::NORMAL),
    ];
    let plan = greedy().assign_all(&batch, &fleet).unwrap();
    assert_eq!(placed_on(&plan, 2), Some(id(1)));
    let left: Vec<TaskId> = plan.unplaced.iter().map(|u| u.task).collect();
    assert_eq!(left, [tid(1), tid(3)], "unplaced come back in batch order");
}

#[test]
fn earlier_deadlines_then_batch_order_break_priority_ties() {
    let reg = registry([agent(1, &[], &[]).with_max_tasks(2)]);
    let fleet = Fleet::new(&reg, None);
    let batch = [
        due(1, None),
        due(2, Some(100)),
        due(3, Some(50)),
        due(4, None),
    ];
    let plan = greedy().assign_all(&batch, &fleet).unwrap();
    let placed: Vec<TaskId> = plan.placements.iter().map(|p| p.task).collect();
    assert_eq!(
        placed,
        [tid(2), tid(3)],
        "placements come back in batch order"
    );

    let reg = registry([agent(1, &[], &[])]);
    let one_slot = Fleet::new(&reg, None);
    let plan = greedy().assign_all(&batch, &one_slot).unwrap();
    assert_eq!(placed_on(&plan, 3), Some(id(1)), "the earliest deadline");
    let plan = greedy()
        .assign_all(&[due(1, None), due(2, Some(u64::MAX))], &one_slot)
        .unwrap();
    assert_eq!(placed_on(&plan, 2), Some(id(1)), "any deadline before none");
    let plan = greedy()
        .assign_all(&[due(7, None), due(5, None)], &one_slot)
        .unwrap();
    assert_eq!(placed_on(&plan, 7), Some(id(1)), "then batch order");
    let plan = greedy()
        .assign_all(&[due(7, Some(9)), due(5, Some(9))], &one_slot)
        .unwrap();
    assert_eq!(placed_on(&plan, 7), Some(id(1)), "then batch order");
    // Priority beats deadline.
    let urgent = task(
        9,
        Requirements::new()
            .with_priority(Priority::HIGH)
            .with_deadline(t(1000)),
    );
    let plan = greedy()
        .assign_all(&[due(8, Some(1)), urgent], &one_slot)
        .unwrap();
    assert_eq!(placed_on(&plan, 9), Some(id(1)));
}

#[test]
fn admission_sees_placements_in_decision_order() {
    let reg = registry([agent(1, &[], &[]).with_max_tasks(3)]);
    let fleet = Fleet::new(&reg, None);
    let batch = [
        prio(1, Priority::LOW),
        prio(2, Priority::HIGH),
        prio(3, Priority::NORMAL),
    ];
    let mut seen: Vec<(TaskId, Vec<TaskId>)> = Vec::new();
    let mut admission = |task: &Task, _: AgentId, accepted: &[Placement]| -> Result<(), Refusal> {
        seen.push((task.id(), accepted.iter().map(|p| p.task).collect()));
        Ok(())
    };
    let plan = greedy().assign(&batch, &fleet, &mut admission).unwrap();
    assert_eq!(plan.placements.len(), 3);
    assert_eq!(
        seen,
        [
            (tid(2), vec![]),
            (tid(3), vec![tid(2)]),
            (tid(1), vec![tid(2), tid(3)]),
        ]
    );
}

// ----- admission ---------------------------------------------------------------------

/// Refuses the listed agents under rule `reserve`, recording every question asked.
struct Refuse {
    agents: Vec<AgentId>,
    asked: Vec<AgentId>,
}

impl concord::assignment::Admission for Refuse {
    fn admit(&mut self, task: &Task, agent: AgentId, _: &[Placement]) -> Result<(), Refusal> {
        self.asked.push(agent);
        if self.agents.contains(&agent) {
            return Err(Refusal::new(task.id(), agent, "reserve", "kept free"));
        }
        Ok(())
    }
}

fn refuse(agents: &[u64]) -> Refuse {
    Refuse {
        agents: agents.iter().map(|&n| id(n)).collect(),
        asked: Vec::new(),
    }
}

/// Agents 1..=3 with 4 cpu; agent 1 is the emptiest, then 2, then 3; agent 4 is
/// offline.
fn graded() -> Fleet {
    let mut reg = registry((1..=4).map(|n| agent(n, &[], &[])));
    reg.set_status(id(4), Offline, t(1)).unwrap();
    let mut ledger = ResourceLedger::new();
    for n in 1..=3 {
        ledger.add_agent(id(n), &res("cpu=4,memory=4Gi")).unwrap();
        if n > 1 {
            ledger
                .allocate(id(n), &Resources::new().with_cpu_millis(n * 1000), t(0))
                .unwrap();
        }
    }
    Fleet::new(&reg, Some(&ledger))
}

#[test]
fn a_refused_best_agent_yields_to_the_next_best() {
    let fleet = graded();
    let one = [task(1, needs(&[], &[], "cpu=500m"))];
    let free = greedy().assign_all(&one, &fleet).unwrap();
    assert_eq!(placed_on(&free, 1), Some(id(1)));
    assert_eq!(free.placements[0].explanation.fit, 3);

    for assigner in [
        greedy(),
        greedy().with_filter(Arc::new(Everyone)),
        greedy().with_scorer(Arc::new(Constant(0.0)), 1.0),
    ] {
        let mut admission = refuse(&[1]);
        let plan = assigner.assign(&one, &fleet, &mut admission).unwrap();
        assert_eq!(placed_on(&plan, 1), Some(id(2)), "{assigner:?}");
        assert_eq!(admission.asked, [id(1), id(2)]);
        assert_eq!(
            plan.refusals,
            [Refusal::new(tid(1), id(1), "reserve", "kept free")]
        );
        let e = &plan.placements[0].explanation;
        assert_eq!(e.fit, 2);
        assert_eq!(
            count(
                e,
                &Rejection::Policy {
                    rule: "reserve".into()
                }
            ),
            1
        );
        assert_eq!(e.runner_up.map(|r| r.0), Some(id(3)));
        assert_accounted(&plan);

        let mut admission = refuse(&[1, 2]);
        let plan = assigner.assign(&one, &fleet, &mut admission).unwrap();
        assert_eq!(placed_on(&plan, 1), Some(id(3)));
        assert_eq!(admission.asked, [id(1), id(2), id(3)]);
        assert_eq!(plan.refusals.len(), 2);
        assert_eq!(plan.placements[0].explanation.fit, 1);
        assert_eq!(plan.placements[0].explanation.runner_up, None);
    }
}

#[test]
fn when_every_fit_is_refused_the_task_is_unplaced_with_policy_reasons() {
    let fleet = graded();
    let batch = [
        task(1, needs(&[], &[], "cpu=500m")),
        task(2, needs(&[], &[], "cpu=500m")),
    ];
    let mut admission = refuse(&[1, 2, 3]);
    let plan = greedy().assign(&batch, &fleet, &mut admission).unwrap();
    assert!(plan.placements.is_empty());
    assert_eq!(plan.refusals.len(), 6);
    let order: Vec<(TaskId, AgentId)> = plan.refusals.iter().map(|r| (r.task, r.agent)).collect();
    assert_eq!(
        order,
        [
            (tid(1), id(1)),
            (tid(1), id(2)),
            (tid(1), id(3)),
            (tid(2), id(1)),
            (tid(2), id(2)),
            (tid(2), id(3)),
        ]
    );
    let e = unplaced(&plan, 1);
    assert_eq!(e.fit, 0);
    assert_eq!(
        e.rejected,
        [
            RejectionCount {
                reason: Rejection::Policy {
                    rule: "reserve".into()
                },
                count: 3
            },
            RejectionCount {
                reason: status(Offline),
                count: 1
            },
        ]
    );
    assert_eq!(
        e.to_string(),
        "0 of 4 agents fit: 3 are refused by policy `reserve`, 1 is offline"
    );
    assert_eq!(
        plan.refusals[0].to_string(),
        "reserve refused agent#1 for task#1: kept free"
    );
    assert_accounted(&plan);
}

// ----- host filters and scorers ----------------------------------------------------

/// Admits agents whose id has the task id's parity.
#[derive(Debug)]
struct Parity;

impl Filter for Parity {
    fn name(&self) -> &str {
        "parity"
    }
    fn admits(&self, task: &Task, agent: AgentId, _: &Fleet) -> bool {
        task.id().get() % 2 == agent.get() % 2
    }
}

/// Admits everyone.
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

/// Scores every agent the same.
#[derive(Debug)]
struct Constant(f64);

impl Scorer for Constant {
    fn name(&self) -> &str {
        "constant"
    }
    fn score(&self, _: &Task, _: AgentId, _: &Fleet) -> f64 {
        self.0
    }
}

/// Prefers higher ids: the agent id as score.
#[derive(Debug)]
struct Seniority;

impl Scorer for Seniority {
    fn name(&self) -> &str {
        "seniority"
    }
    fn score(&self, _: &Task, agent: AgentId, _: &Fleet) -> f64 {
        agent.get() as f64
    }
}

/// Records which agents it was asked about.
#[derive(Debug, Default)]
struct Spy(Mutex<Vec<AgentId>>);

impl Scorer for Spy {
    fn name(&self) -> &str {
        "spy"
    }
    fn score(&self, _: &Task, agent: AgentId, _: &Fleet) -> f64 {
        self.0.lock().unwrap().push(agent);
        0.0
    }
}

#[test]
fn host_filters_run_after_the_built_in_ones() {
    let mut reg = registry((1..=6).map(|n| agent(n, &["qa"], &[])));
    reg.set_status(id(3), Offline, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    let spy = Arc::new(Spy::default());
    let assigner = greedy()
        .with_filter(Arc::new(Parity))
        .with_scorer(spy.clone(), 1.0);
    let plan = assigner
        .assign_all(&[task(1, needs(&["qa"], &[], ""))], &fleet)
        .unwrap();
    // Odd agents 1 and 5 pass (3 is offline); the scorer sees only them (twice for
    // the winner: once to rank, once for its explanation).
    assert_eq!(placed_on(&plan, 1), Some(id(1)));
    let e = &plan.placements[0].explanation;
    assert_eq!(e.fit, 2);
    assert_eq!(
        count(
            e,
            &Rejection::Filter {
                filter: "parity".into()
            }
        ),
        3
    );
    assert_eq!(count(e, &status(Offline)), 1);
    assert_eq!(
        e.to_string().split(';').next().unwrap(),
        "2 of 6 agents fit: 3 are refused by filter `parity`, 1 is offline"
    );
    let asked = spy.0.lock().unwrap().clone();
    assert!(
        asked.iter().all(|a| [id(1), id(5)].contains(a)),
        "{asked:?}"
    );

    // Filtered out everywhere.
    let reg = registry([agent(2, &[], &[])]);
    let plan = greedy()
        .with_filter(Arc::new(Parity))
        .assign_all(&[task(1, Requirements::new())], &Fleet::new(&reg, None))
        .unwrap();
    assert_eq!(
        unplaced(&plan, 1).to_string(),
        "0 of 1 agent fit: 1 is refused by filter `parity`"
    );
}

#[test]
fn host_scorers_add_to_the_built_in_scores() {
    let reg = registry((1..=3).map(|n| agent(n, &[], &[])));
    let fleet = Fleet::new(&reg, None);
    let one = [task(1, Requirements::new())];
    let plan = greedy()
        .with_scorer(Arc::new(Seniority), 2.0)
        .assign_all(&one, &fleet)
        .unwrap();
    let p = &plan.placements[0];
    assert_eq!(p.agent, id(3));
    let plugins: Vec<(&str, f64, f64)> = p
        .explanation
        .scores
        .iter()
        .map(|s| (s.plugin.as_ref(), s.score, s.weight))
        .collect();
    assert_eq!(
        plugins,
        [
            ("least_allocated", 100.0, 1.0),
            ("balanced", 100.0, 1.0),
            ("seniority", 3.0, 2.0),
        ]
    );
    // The weighted mean: (100 + 100 + 2 * 3) / 4; affinity is off without history.
    assert_eq!(p.score, 206.0 / 4.0);
    assert_eq!(p.explanation.winner, Some((id(3), p.score)));
    assert_eq!(p.explanation.runner_up, Some((id(2), 204.0 / 4.0)));

    // A host scorer alone.
    let plan = greedy()
        .with_weights(only(&[]))
        .with_scorer(Arc::new(Seniority), 1.0)
        .assign_all(&one, &fleet)
        .unwrap();
    assert_eq!(plan.placements[0].score, 3.0);
}

// ----- explanations ----------------------------------------------------------------

#[test]
fn explanations_read_like_the_kubernetes_scheduler() {
    let reg = registry(
        [(1, "ops"), (2, "qa"), (3, "qa")]
            .map(|(n, r)| agent(n, &[r], &[]).with_capacity(res("cpu=2,memory=4Gi"))),
    );
    let fleet = Fleet::new(&reg, None);
    let plan = greedy()
        .assign_all(&[task(7, needs(&["qa"], &[], ""))], &fleet)
        .unwrap();
    assert_eq!(
        plan.placements[0].explanation.to_string(),
        "2 of 3 agents fit: 1 lacks role `qa`; agent#2 won with 100.0 \
         (least_allocated 100.0 x1, balanced 100.0 x1); \
         next best agent#3 with 100.0"
    );

    // Alone, bin-packing, with resources: no runner-up.
    let reg = registry([agent(1, &[], &[]).with_capacity(res("cpu=4,memory=8Gi"))]);
    let plan = greedy()
        .with_weights(ScoreWeights::bin_pack())
        .assign_all(
            &[task(1, needs(&[], &[], "cpu=1,memory=2Gi"))],
            &Fleet::new(&reg, None),
        )
        .unwrap();
    assert_eq!(
        plan.placements[0].explanation.to_string(),
        "1 of 1 agent fit; agent#1 won with 62.5 \
         (most_allocated 25.0 x1, balanced 100.0 x1)"
    );

    // Fractional weights, and a task nobody can take.
    let mut reg = registry([
        agent(1, &["qa"], &[]),
        agent(2, &["qa"], &[]),
        agent(3, &["qa"], &["shell"]),
        agent(4, &["qa"], &[]),
    ]);
    reg.set_status(id(1), Offline, t(1)).unwrap();
    reg.set_status(id(2), Offline, t(1)).unwrap();
    reg.set_status(id(3), Busy, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    let weights = ScoreWeights {
        least_allocated: 0.5,
        most_allocated: 0.0,
        balanced: 0.0,
        affinity: 0.0,
    };
    let plan = greedy()
        .with_weights(weights)
        .assign_all(
            &[
                task(1, needs(&["qa"], &["shell"], "")),
                task(2, needs(&["qa"], &[], "")),
            ],
            &fleet,
        )
        .unwrap();
    assert_eq!(
        unplaced(&plan, 1).to_string(),
        "0 of 4 agents fit: 2 are offline, 1 is busy, 1 lacks capability `shell`"
    );
    assert_eq!(
        plan.placements[0].explanation.to_string(),
        "1 of 4 agents fit: 2 are offline, 1 is busy; agent#4 won with 100.0 \
         (least_allocated 100.0 x0.5)"
    );
}

#[test]
fn a_plan_round_trips_through_serde() {
    let mut reg = registry([
        agent(1, &["qa"], &["shell"])
            .with_capacity(res("cpu=4,memory=8Gi,gpu=1"))
            .with_max_tasks(2),
        agent(2, &["qa"], &[]).with_capacity(res("cpu=4,memory=8Gi")),
        agent(3, &["ops"], &[]),
        agent(4, &["qa"], &[]).with_capacity(res("cpu=8,memory=8Gi")),
    ]);
    reg.set_status(id(3), Quarantined, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    let batch = [
        task(1, needs(&["qa"], &[], "cpu=1,memory=3Gi")),
        task(2, needs(&["qa"], &["shell"], "gpu=1")),
        task(3, needs(&["security"], &[], "")),
    ];
    let mut admission = refuse(&[4]);
    let plan = greedy()
        .with_filter(Arc::new(Everyone))
        .with_scorer(Arc::new(Seniority), 0.25)
        .assign(&batch, &fleet, &mut admission)
        .unwrap();
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.refusals.len(), 1);
    assert!(
        plan.placements
            .iter()
            .any(|p| p.explanation.runner_up.is_some())
    );

    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan, "{json}");
    // Rejections are tagged, snake-case data.
    let value = serde_json::to_value(missing_role("security")).unwrap();
    assert_eq!(
        value,
        serde_json::json!({ "reason": "missing_role", "role": "security" })
    );
    let value = serde_json::to_value(Rejection::NoFreeSlot).unwrap();
    assert_eq!(value, serde_json::json!({ "reason": "no_free_slot" }));
    let status = serde_json::to_value(RejectionCount {
        reason: Rejection::Status { status: Offline },
        count: 2,
    })
    .unwrap();
    assert_eq!(
        status,
        serde_json::json!({ "reason": { "reason": "status", "status": "offline" }, "count": 2 })
    );
    let back: ScoreWeights = serde_json::from_str(r#"{ "most_allocated": 2.0 }"#).unwrap();
    assert_eq!(
        back,
        ScoreWeights {
            most_allocated: 2.0,
            ..ScoreWeights::default()
        }
    );
    assert!(serde_json::from_str::<ScoreWeights>(r#"{ "typo": 1 }"#).is_err());
}

// ----- errors ------------------------------------------------------------------------

#[test]
fn an_empty_fleet_is_an_error() {
    let fleet = Fleet::new(&AgentRegistry::new(), None);
    assert!(fleet.is_empty());
    let err = greedy()
        .assign_all(&[task(1, Requirements::new())], &fleet)
        .unwrap_err();
    assert_eq!(err, AssignmentError::NoAgents);
    assert_eq!(err.to_string(), "no agents to assign to");
    assert_eq!(
        greedy().assign_all(&[], &fleet),
        Err(AssignmentError::NoAgents)
    );
    // An empty batch on a real fleet is fine.
    let reg = registry([agent(1, &[], &[])]);
    assert_eq!(
        greedy().assign_all(&[], &Fleet::new(&reg, None)),
        Ok(Plan::default())
    );
}

#[test]
fn a_duplicate_task_is_an_error() {
    let reg = registry([agent(1, &[], &[]).with_max_tasks(9)]);
    let fleet = Fleet::new(&reg, None);
    let batch = [
        task(3, Requirements::new()),
        task(1, Requirements::new()),
        task(3, needs(&["ops"], &[], "")),
    ];
    let mut asked = 0;
    let mut admission = |_: &Task, _: AgentId, _: &[Placement]| -> Result<(), Refusal> {
        asked += 1;
        Ok(())
    };
    let err = greedy().assign(&batch, &fleet, &mut admission).unwrap_err();
    assert_eq!(err, AssignmentError::DuplicateTask { task: tid(3) });
    assert_eq!(err.to_string(), "task#3 appears twice in the batch");
    assert_eq!(asked, 0, "nothing is admitted when the batch is refused");
}

fn weight_error(assigner: &GreedyAssigner) -> (String, f64) {
    let reg = registry([agent(1, &[], &[])]);
    match assigner.assign_all(&[task(1, Requirements::new())], &Fleet::new(&reg, None)) {
        Err(AssignmentError::InvalidWeight { name, value }) => (name, value),
        other => panic!("expected InvalidWeight, got {other:?}"),
    }
}

#[test]
fn invalid_weights_are_errors() {
    for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let set = |name: &str| {
            let mut w = ScoreWeights::default();
            match name {
                "least_allocated" => w.least_allocated = bad,
                "most_allocated" => w.most_allocated = bad,
                "balanced" => w.balanced = bad,
                _ => w.affinity = bad,
            }
            w
        };
        for name in ["least_allocated", "most_allocated", "balanced", "affinity"] {
            let (got, value) = weight_error(&greedy().with_weights(set(name)));
            assert_eq!(got, name);
            assert!(value.total_cmp(&bad).is_eq(), "{value} vs {bad}");
        }
        let (got, value) = weight_error(&greedy().with_scorer(Arc::new(Seniority), bad));
        assert_eq!(got, "seniority");
        assert!(value.total_cmp(&bad).is_eq());
    }
    let (got, value) = weight_error(&greedy().with_weights(only(&[])));
    assert_eq!((got.as_str(), value), ("all", 0.0));
    let (got, _) = weight_error(
        &greedy()
            .with_weights(only(&[]))
            .with_scorer(Arc::new(Seniority), 0.0),
    );
    assert_eq!(got, "all");
    let err = AssignmentError::InvalidWeight {
        name: "balanced".into(),
        value: -1.0,
    };
    assert_eq!(
        err.to_string(),
        "score weight balanced = -1 is invalid (finite and >= 0, not all zero)"
    );
}

#[test]
fn a_host_scorer_giving_a_non_finite_score_is_an_error() {
    let mut reg = registry((1..=3).map(|n| agent(n, &[], &[])));
    reg.set_status(id(1), Offline, t(1)).unwrap();
    let fleet = Fleet::new(&reg, None);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = greedy()
            .with_scorer(Arc::new(Constant(bad)), 1.0)
            .assign_all(&[task(4, Requirements::new())], &fleet)
            .unwrap_err();
        match err {
            AssignmentError::InvalidScore {
                ref name,
                task,
                agent,
                value,
            } => {
                assert_eq!(name, "constant");
                assert_eq!(task, tid(4));
                assert_eq!(agent, id(2), "the first agent that passed the filters");
                assert!(value.total_cmp(&bad).is_eq());
            }
            other => panic!("{other:?}"),
        }
        if bad == f64::INFINITY {
            assert_eq!(
                err.to_string(),
                "scorer constant gave inf for task#4 on agent#2 (scores must be finite)"
            );
        }
    }
    // Never asked about a task no agent can take: no error.
    let plan = greedy()
        .with_scorer(Arc::new(Constant(f64::NAN)), 1.0)
        .assign_all(&[task(5, needs(&["nobody"], &[], ""))], &fleet)
        .unwrap();
    assert_eq!(plan.unplaced.len(), 1);
}

// ----- the three filter paths ------------------------------------------------------

/// 150 agents (more than two 64-agent blocks) with roles, capabilities, statuses,
/// slots and capacities in a fixed pattern.
fn patterned(extra_caps: &[String], extra_role: bool) -> AgentRegistry {
    let roles = ["ops", "qa", "security"];
    let caps = ["browser", "deploy", "screenshot", "shell"];
    let mut reg = AgentRegistry::new();
    for n in 1..=150u64 {
        let mut p = AgentProfile::new(id(n), format!("a{n}"))
            .with_role(role(roles[(n % 3) as usize]))
            .with_max_tasks(1 + (n % 3) as u32);
        if n % 7 == 0 {
            p = p.with_role(role(roles[((n + 1) % 3) as usize]));
        }
        if extra_role {
            p = p.with_role(role("everyone"));
        }
        for (k, c) in caps.iter().enumerate() {
            if (n >> k) & 1 == 1 {
                p = p.with_capability(cap(c));
            }
        }
        for c in extra_caps {
            p = p.with_capability(cap(c));
        }
        if n % 5 != 0 {
            p = p.with_capacity(
                Resources::new()
                    .with_cpu_millis(1000 * (1 + n % 4))
                    .with_memory_bytes((1 + n % 3) << 30)
                    .with_named("gpu", n % 2)
                    .unwrap(),
            );
        }
        reg.register(p, t(0)).unwrap();
        let to = match n % 11 {
            1 => Offline,
            2 => Busy,
            3 => Unhealthy,
            4 => Quarantined,
            _ => continue,
        };
        reg.set_status(id(n), to, t(1)).unwrap();
    }
    reg
}

fn patterned_batch(extra_role: bool) -> Vec<Task> {
    let shapes: [(&[&str], &[&str], &str); 6] = [
        (&["qa"], &["screenshot"], "cpu=1"),
        (&["ops"], &[], "cpu=2,memory=1Gi"),
        (&["security"], &["deploy", "shell"], "gpu=1"),
        (&["qa"], &["browser"], ""),
        (
            &["ops"],
            &["browser", "deploy", "screenshot", "shell"],
            "cpu=4",
        ),
        (&["security"], &[], "memory=2Gi,gpu=1"),
    ];
    (0..60u64)
        .map(|k| {
            let (roles, caps, resources) = shapes[(k % 6) as usize];
            let mut req = needs(roles, caps, resources).with_priority(Priority((k % 4) as u32));
            if extra_role {
                req = req.with_role(role("everyone"));
            }
            task(k + 1, req)
        })
        .collect()
}

#[test]
fn the_role_index_the_blocks_and_the_exact_path_agree() {
    let indexed = greedy()
        .assign_all(
            &patterned_batch(false),
            &Fleet::new(&patterned(&[], false), None),
        )
        .unwrap();
    // Every task also asks for a role every agent plays: two roles, so the blocks.
    let blocks = greedy()
        .assign_all(
            &patterned_batch(true),
            &Fleet::new(&patterned(&[], true), None),
        )
        .unwrap();
    // Every agent also has 140 capabilities no task asks for: the bitsets spill.
    let pads: Vec<String> = (0..140).map(|k| format!("pad{k:03}")).collect();
    let exact = greedy()
        .assign_all(
            &patterned_batch(false),
            &Fleet::new(&patterned(&pads, false), None),
        )
        .unwrap();

    assert!(!indexed.placements.is_empty() && !indexed.unplaced.is_empty());
    assert_eq!(blocks, indexed);
    assert_eq!(exact, indexed);
    assert_accounted(&indexed);
}

#[test]
fn more_than_128_capabilities_spill_and_still_match() {
    let many: Vec<String> = (0..200).map(|k| format!("c{k:03}")).collect();
    let names = |ks: &[usize]| -> Vec<&str> { ks.iter().map(|&k| many[k].as_str()).collect() };
    let all: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut reg = registry([
        agent(1, &["qa"], &all),
        agent(2, &["qa"], &names(&[0, 1, 150])),
        agent(3, &["qa"], &names(&[150, 199])),
        agent(4, &["ops"], &names(&[199])),
    ]);
    reg.set_status(id(1), Offline, t(1)).unwrap();
    assert!(reg.capability_catalog().len() > 128);
    let fleet = Fleet::new(&reg, None);
    let one = |roles: &[&str], caps: &[&str]| {
        greedy()
            .assign_all(&[task(1, needs(roles, caps, ""))], &fleet)
            .unwrap()
    };

    let plan = one(&["qa"], &["c150"]);
    assert_eq!(placed_on(&plan, 1), Some(id(2)));
    let e = &plan.placements[0].explanation;
    assert_eq!(e.fit, 2);
    assert_eq!(count(e, &missing_role("qa")), 1);

    let plan = one(&[], &["c199"]);
    assert_eq!(placed_on(&plan, 1), Some(id(3)));
    let e = &plan.placements[0].explanation;
    assert_eq!(count(e, &missing_cap("c199")), 1, "{e}");

    let plan = one(&["qa"], &["c001", "c199"]);
    assert_eq!(
        unplaced(&plan, 1).to_string(),
        "0 of 4 agents fit: 1 is offline, 1 lacks role `qa`, \
         1 lacks capability `c001`, 1 lacks capability `c199`"
    );
    // A spilled name the task asks for but no agent has any more.
    reg.register(agent(9, &[], &["zzz-rare"]), t(2)).unwrap();
    reg.deregister(id(9)).unwrap();
    let plan = greedy()
        .assign_all(
            &[task(1, needs(&[], &["zzz-rare"], ""))],
            &Fleet::new(&reg, None),
        )
        .unwrap();
    assert_eq!(
        count(unplaced(&plan, 1), &missing_cap("zzz-rare")),
        3,
        "{plan:#?}"
    );
}

#[test]
fn more_than_128_roles_spill_and_still_match() {
    let many: Vec<String> = (0..140).map(|k| format!("r{k:03}")).collect();
    let all: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut reg = registry([
        agent(1, &all, &[]),
        agent(2, &["r005", "r135"], &[]),
        agent(3, &["r135"], &["shell"]),
    ]);
    reg.set_status(id(1), Offline, t(1)).unwrap();
    assert!(reg.role_catalog().len() > 128);
    let fleet = Fleet::new(&reg, None);
    // One role, but past bit 128: not the role index.
    let plan = greedy()
        .assign_all(&[task(1, needs(&["r135"], &[], ""))], &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(2)));
    assert_eq!(plan.placements[0].explanation.fit, 2);
    // One role below bit 128, in a fleet whose bitsets spill.
    let plan = greedy()
        .assign_all(&[task(1, needs(&["r005"], &[], ""))], &fleet)
        .unwrap();
    assert_eq!(
        plan.placements[0].explanation.to_string().split(';').next(),
        Some("1 of 3 agents fit: 1 is offline, 1 lacks role `r005`")
    );
    let plan = greedy()
        .assign_all(&[task(1, needs(&["r135"], &["shell"], ""))], &fleet)
        .unwrap();
    assert_eq!(placed_on(&plan, 1), Some(id(3)));
    assert_eq!(
        count(&plan.placements[0].explanation, &missing_cap("shell")),
        1
    );
}

// ----- registration order ------------------------------------------------------------

/// The same agents registered in another order give the same placements.
#[test]
fn registration_order_does_not_change_the_choice() {
    let profiles = || {
        [
            agent(1, &["qa"], &["shell"]).with_capacity(res("cpu=2")),
            agent(2, &["ops", "qa"], &["browser", "shell"]).with_capacity(res("cpu=4,gpu=1")),
            agent(3, &["ops"], &["browser"]),
        ]
    };
    let batch = [
        task(1, needs(&["qa"], &["shell"], "cpu=1")),
        task(2, needs(&["ops"], &[], "gpu=1")),
        task(3, needs(&[], &["browser"], "")),
    ];
    let forward = registry(profiles());
    let backward = registry(profiles().into_iter().rev());
    let a = greedy()
        .assign_all(&batch, &Fleet::new(&forward, None))
        .unwrap();
    let b = greedy()
        .assign_all(&batch, &Fleet::new(&backward, None))
        .unwrap();
    assert_eq!(a, b);
}

/// Agents lacking two of a task's capabilities are counted under "the first missing
/// one, by catalog order", and the catalog's order is the order names were first
/// registered: the same agents registered in another order explain the same decision
/// differently.
#[test]
#[ignore = "design: which missing role/capability an explanation names depends on \
            registration order (catalog bit order), not on the registry's contents"]
fn registration_order_does_not_change_the_explanation() {
    let profiles = || {
        [
            agent(1, &[], &["browser"]),
            agent(2, &[], &["shell"]),
            agent(3, &[], &["browser", "shell"]),
            agent(4, &[], &[]),
        ]
    };
    let batch = [task(1, needs(&[], &["browser", "shell"], ""))];
    let forward = registry(profiles());
    // Agent 2 first: `shell` gets the lower bit.
    let [a1, a2, a3, a4] = profiles();
    let backward = registry([a2, a1, a3, a4]);
    let a = greedy()
        .assign_all(&batch, &Fleet::new(&forward, None))
        .unwrap();
    let b = greedy()
        .assign_all(&batch, &Fleet::new(&backward, None))
        .unwrap();
    assert_eq!(a, b);
}

/// Every agent is counted under the first filter it fails, status first: an offline
/// agent is "offline", even for a task asking for a role nobody plays.
#[test]
fn unknown_names_are_counted_after_status() {
    let mut reg = registry([agent(1, &["qa"], &[]), agent(2, &["qa"], &[])]);
    reg.set_status(id(1), Offline, t(1)).unwrap();
    let plan = greedy()
        .assign_all(
            &[task(1, needs(&["security"], &[], ""))],
            &Fleet::new(&reg, None),
        )
        .unwrap();
    assert_eq!(
        unplaced(&plan, 1).to_string(),
        "0 of 2 agents fit: 1 is offline, 1 lacks role `security`"
    );
}

#[test]
fn assigners_are_object_safe_and_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GreedyAssigner>();
    let boxed: Box<dyn Assigner> = Box::new(greedy());
    let reg = registry([agent(1, &[], &[])]);
    let plan = boxed
        .assign_all(&[task(1, Requirements::new())], &Fleet::new(&reg, None))
        .unwrap();
    assert_eq!(plan.total_score(), plan.placements[0].score);
}

// ----- plans written over ----------------------------------------------------------

/// An assigner with only the trait's default `assign_into`.
#[derive(Debug)]
struct Wrapped(GreedyAssigner);

impl Assigner for Wrapped {
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        self.0.assign(tasks, fleet, admission)
    }
}

#[test]
fn assigning_into_a_plan_writes_over_what_it_held() {
    let reg = registry([agent(1, &["ops"], &[]), agent(2, &["qa"], &[])]);
    let fleet = Fleet::new(&reg, None);
    let batches = [
        vec![task(1, needs(&["ops"], &[], ""))],
        vec![task(2, needs(&["security"], &[], ""))],
        vec![
            task(3, needs(&["qa"], &[], "")),
            task(4, needs(&["ops"], &[], "")),
        ],
        vec![task(5, needs(&["qa"], &[], ""))],
    ];
    // One plan through every batch, for the greedy assigner and one with only the
    // trait's defaults: through the shared path (`assign_into`), and held alone
    // (`assign_into_mut`, without the buffers' lock) alternating with the shared
    // path on the same assigner.
    let cases: [(Box<dyn Assigner>, bool); 4] = [
        (Box::new(greedy()), false),
        (Box::new(Wrapped(greedy())), false),
        (Box::new(greedy()), true),
        (Box::new(Wrapped(greedy())), true),
    ];
    for (mut assigner, alone) in cases {
        let into =
            |a: &mut dyn Assigner, k: usize, tasks: &[Task], fleet: &Fleet, plan: &mut Plan| {
                if alone && k % 2 == 0 {
                    a.assign_into_mut(tasks, fleet, &mut AdmitAll, plan)
                } else {
                    a.assign_into(tasks, fleet, &mut AdmitAll, plan)
                }
            };
        // Each batch leaves only its own outcome.
        let mut plan = Plan::default();
        for (k, tasks) in batches.iter().enumerate() {
            into(&mut *assigner, k, tasks, &fleet, &mut plan).unwrap();
            assert_eq!(plan, greedy().assign_all(tasks, &fleet).unwrap());
        }
        // An error leaves the plan to be written over by the next call.
        let empty = Fleet::new(&registry([]), None);
        assert!(into(&mut *assigner, 0, &[], &empty, &mut plan).is_err());
        into(&mut *assigner, 0, &batches[0], &fleet, &mut plan).unwrap();
        assert_eq!(placed_on(&plan, 1), Some(id(1)));
        assert_eq!(plan.placements.len(), 1);
        assert!(plan.unplaced.is_empty() && plan.refusals.is_empty());
        into(&mut *assigner, 0, &batches[3], &fleet, &mut plan).unwrap();
        assert_eq!(plan, greedy().assign_all(&batches[3], &fleet).unwrap());
    }
}
