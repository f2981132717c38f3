//! Properties of the policies, over random registries, ledgers, duty logs, batches and
//! proposals:
//!
//! - `PolicySet::default()` reports a violation of each rule exactly when a naive
//!   reference check of that rule says so (safe mode, agent status, role and
//!   capability, tasks per agent, the 95% utilization cap, separation of duties).
//! - Every violation names the proposal's agent and task, and blocks.
//! - `validate` is deterministic and never panics (unknown agents, agents missing
//!   from the ledger, resources no agent has).
//! - A proposal the set permits fits the agent: it is among the registry's available
//!   agents for its requirements, and the ledger can allocate its resources.
//! - Accepting a batch one proposal at a time, each checked against those accepted
//!   before it, never overfills an agent's slots or takes a resource above 95%.

use std::collections::BTreeMap;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::policy::{
    DutyLog, PolicyContext, PolicyEnforcer, PolicyEnforcerExt, PolicySet, Proposal, SystemMode,
};
use concord::resource::ResourceName;
use concord::{
    AgentId, Capability, Requirements, ResourceLedger, Resources, Role, TaskId, Timestamp,
};
use proptest::prelude::*;

const ROLES: [&str; 2] = ["ops", "qa"];
const CAPS: [&str; 3] = ["browser", "deploy", "screenshot"];
const GROUPS: [&str; 2] = ["run-1", "run-2"];
/// Written in mixed case and with spaces, as hosts do; compared normalized.
const DUTIES: [&str; 5] = ["deploy", "verify", "build", " Deploy", "VERIFY "];
/// Agents 1..=REGISTERED may be registered; ids up to MAX_ID are proposed, so some
/// proposals name unknown agents.
const REGISTERED: u64 = 4;
const MAX_ID: u64 = 6;
/// The task under test; pending proposals use other ids, and sometimes this one.
const TASK: u64 = 100;
const NOW: Timestamp = Timestamp::EPOCH;

#[derive(Debug, Clone)]
struct AgentSpec {
    roles: u8,
    caps: u8,
    max_tasks: u32,
    running: u32,
    status: AgentStatus,
    /// (cpu millis, gpu) capacity and cpu millis allocated, if in the ledger.
    ledger: Option<(u64, u64, u64)>,
}

#[derive(Debug, Clone)]
struct ProposalSpec {
    task: u64,
    agent: u64,
    roles: u8,
    caps: u8,
    cpu: u64,
    gpu: u64,
    group: Option<usize>,
    duty: usize,
}

fn agent_spec() -> impl Strategy<Value = Option<AgentSpec>> {
    // Skewed toward agents that can take work, so that every rule is seen both firing
    // and not firing, and batches get accepted.
    let status = prop_oneof![
        6 => Just(AgentStatus::Available),
        1 => proptest::sample::select(AgentStatus::ALL.to_vec()),
    ];
    let capacity = prop_oneof![
        1 => (0u64..2000, 0u64..3, 0u64..2000),
        4 => (500u64..4000, 0u64..3, 0u64..500),
    ];
    proptest::option::weighted(
        0.9,
        (
            prop_oneof![1 => Just(3u8), 1 => 0u8..4],
            prop_oneof![1 => Just(7u8), 1 => 0u8..8],
            1u32..5,
            prop_oneof![2 => Just(0u32), 1 => 0u32..4],
            status,
            proptest::option::weighted(0.9, capacity),
        )
            .prop_map(
                |(roles, caps, max_tasks, running, status, ledger)| AgentSpec {
                    roles,
                    caps,
                    max_tasks,
                    running,
                    status,
                    ledger: ledger.map(|(cpu, gpu, held)| (cpu, gpu, held.min(cpu))),
                },
            ),
    )
}

fn proposal_spec(tasks: std::ops::Range<u64>) -> impl Strategy<Value = ProposalSpec> {
    (
        tasks,
        prop_oneof![6 => 1..=REGISTERED, 1 => REGISTERED + 1..=MAX_ID],
        prop_oneof![2 => Just(0u8), 1 => 0u8..4],
        prop_oneof![2 => Just(0u8), 1 => 0u8..8],
        prop_oneof![1 => Just(0u64), 3 => 0u64..1200],
        prop_oneof![4 => Just(0u64), 1 => 0u64..3],
        proptest::option::weighted(0.7, 0..GROUPS.len()),
        0..DUTIES.len(),
    )
        .prop_map(
            |(task, agent, roles, caps, cpu, gpu, group, duty)| ProposalSpec {
                task,
                agent,
                roles,
                caps,
                cpu,
                gpu,
                group,
                duty,
            },
        )
}

fn pick<'a>(names: &'a [&'a str], mask: u8) -> impl Iterator<Item = &'a str> + 'a {
    names
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
}

fn resources(cpu: u64, gpu: u64) -> Resources {
    Resources::new()
        .with_cpu_millis(cpu)
        .with_named("gpu", gpu)
        .unwrap()
}

fn build(agents: &[Option<AgentSpec>]) -> (AgentRegistry, ResourceLedger) {
    let mut registry = AgentRegistry::new();
    let mut ledger = ResourceLedger::new();
    for (i, spec) in agents.iter().enumerate() {
        let Some(spec) = spec else { continue };
        let id = AgentId::new(i as u64 + 1);
        let mut profile = AgentProfile::new(id, "agent").with_max_tasks(spec.max_tasks);
        for r in pick(&ROLES, spec.roles) {
            profile = profile.with_role(Role::new(r).unwrap());
        }
        for c in pick(&CAPS, spec.caps) {
            profile = profile.with_capability(Capability::new(c).unwrap());
        }
        registry.register(profile, NOW).unwrap();
        for _ in 0..spec.running {
            // Stops taking tasks once busy; the registry is the truth either way.
            let _ = registry.task_started(id, NOW);
        }
        let _ = registry.set_status(id, spec.status, NOW);
        if let Some((cpu, gpu, held)) = spec.ledger {
            ledger.add_agent(id, &resources(cpu, gpu)).unwrap();
            if held > 0 {
                ledger
                    .allocate(id, &Resources::new().with_cpu_millis(held), NOW)
                    .unwrap();
            }
        }
    }
    (registry, ledger)
}

fn proposal(spec: &ProposalSpec) -> Proposal {
    let mut requirements = Requirements::new();
    for r in pick(&ROLES, spec.roles) {
        requirements = requirements.with_role(Role::new(r).unwrap());
    }
    for c in pick(&CAPS, spec.caps) {
        requirements = requirements.with_capability(Capability::new(c).unwrap());
    }
    let mut p = Proposal::new(TaskId::new(spec.task), "work", AgentId::new(spec.agent))
        .with_requirements(requirements)
        .with_resources(resources(spec.cpu, spec.gpu))
        .with_duty(DUTIES[spec.duty]);
    if let Some(g) = spec.group {
        p = p.with_group(GROUPS[g]);
    }
    p
}

fn norm(duty: &str) -> String {
    duty.trim().to_lowercase()
}

/// The pending proposals that load the same agent as `p`: same agent, other task.
fn pending_on<'a>(p: &'a Proposal, pending: &'a [Proposal]) -> impl Iterator<Item = &'a Proposal> {
    pending
        .iter()
        .filter(move |q| q.agent() == p.agent() && q.task() != p.task())
}

/// Naive reference checks of each default rule, by name.
fn reference(
    p: &Proposal,
    registry: &AgentRegistry,
    ledger: &ResourceLedger,
    mode: SystemMode,
    log: &DutyLog,
    pending: &[Proposal],
) -> BTreeMap<&'static str, bool> {
    let agent = registry.iter().find(|a| a.id() == p.agent());
    let mut out = BTreeMap::new();

    out.insert("safe_mode", mode != SystemMode::Normal);

    out.insert(
        "agent_status",
        agent.is_none_or(|a| a.status() != AgentStatus::Available),
    );

    let roles_ok = p
        .requirements()
        .roles()
        .iter()
        .all(|r| agent.is_some_and(|a| a.profile().roles().contains(r)));
    let caps_ok = p
        .requirements()
        .capabilities()
        .iter()
        .all(|c| agent.is_some_and(|a| a.profile().capabilities().contains(c)));
    out.insert("role_and_capability", !(roles_ok && caps_ok));

    let (running, slots) = agent.map_or((0, 0), |a| (a.running(), a.max_tasks()));
    let queued = pending_on(p, pending).count() as u32;
    out.insert("max_tasks_per_agent", running + queued + 1 > slots);

    let in_ledger = ledger.agents().any(|a| a == p.agent());
    let over = ["cpu", "gpu"].iter().any(|name| {
        let name: ResourceName = name.parse().unwrap();
        let need = p.resources().get(&name);
        if need == 0 {
            return false;
        }
        let (cap, held) = if in_ledger {
            (
                ledger.capacity(p.agent()).unwrap().get(&name),
                ledger.allocated(p.agent()).unwrap().get(&name),
            )
        } else {
            (0, 0)
        };
        let queued: u64 = pending_on(p, pending)
            .map(|q| q.resources().get(&name))
            .sum();
        // Alone on its agent (nothing held, nothing else of the batch for it): it may
        // take the agent whole.
        let alone = in_ledger
            && ledger.allocated(p.agent()).unwrap().is_zero()
            && pending_on(p, pending).count() == 0
            && need <= cap;
        // total / cap > 95 / 100, in integers.
        cap == 0 || (100 * (held + queued + need) > 95 * cap && !alone)
    });
    out.insert("utilization_cap", over);

    let other = match norm(p.duty()).as_str() {
        "deploy" => Some("verify"),
        "verify" => Some("deploy"),
        _ => None,
    };
    let conflict = match (p.group(), other) {
        (Some(group), Some(other)) => {
            log.has_performed(group, other, p.agent())
                || pending_on(p, pending)
                    .any(|q| q.group() == Some(group) && norm(q.duty()) == other)
        }
        _ => false,
    };
    out.insert("separation_of_duties", conflict);
    out
}

fn mode() -> impl Strategy<Value = SystemMode> {
    prop_oneof![4 => Just(SystemMode::Normal), 1 => Just(SystemMode::SafeMode), 1 => Just(SystemMode::Recovery)]
}

fn duty_log() -> impl Strategy<Value = Vec<(usize, usize, u64)>> {
    proptest::collection::vec((0..GROUPS.len(), 0..DUTIES.len(), 1..=MAX_ID), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn each_rule_fires_exactly_when_the_reference_says(
        agents in proptest::collection::vec(agent_spec(), REGISTERED as usize),
        subject in proposal_spec(TASK..TASK + 1),
        batch in proptest::collection::vec(proposal_spec(1..6), 0..5),
        same_task_pending in proptest::bool::weighted(0.2),
        mode in mode(),
        records in duty_log(),
    ) {
        let (registry, ledger) = build(&agents);
        let p = proposal(&subject);
        let mut pending: Vec<Proposal> = batch.iter().map(proposal).collect();
        if same_task_pending {
            pending.push(p.clone());
        }
        let mut log = DutyLog::new();
        for (g, d, a) in &records {
            log.record(GROUPS[*g], DUTIES[*d], AgentId::new(*a));
        }
        let ctx = PolicyContext::new(&registry, &ledger)
            .with_mode(mode)
            .with_duties(&log)
            .with_pending(&pending);

        let set = PolicySet::default();
        let violations = set.validate(&p, &ctx);
        prop_assert_eq!(&set.validate(&p, &ctx), &violations, "not deterministic");

        let expected = reference(&p, &registry, &ledger, mode, &log, &pending);
        for (rule, fires) in &expected {
            let reported = violations.iter().any(|v| v.rule == *rule);
            prop_assert_eq!(reported, *fires, "rule {} for {:?}: {:?}", rule, p, violations);
        }
        let order: Vec<&str> = set.rule_names().collect();
        let mut last = 0;
        for v in &violations {
            prop_assert!(expected.contains_key(v.rule.as_str()), "unknown rule {}", v.rule);
            prop_assert_eq!(v.agent, p.agent());
            prop_assert_eq!(v.task, p.task());
            prop_assert!(v.is_blocking());
            let at = order.iter().position(|r| *r == v.rule).unwrap();
            prop_assert!(at >= last, "violations out of rule order: {:?}", violations);
            last = at;
        }
        prop_assert_eq!(set.permits(&p, &ctx), violations.is_empty());
    }

    #[test]
    fn a_permitted_proposal_fits_the_agent(
        agents in proptest::collection::vec(agent_spec(), REGISTERED as usize),
        subject in proposal_spec(TASK..TASK + 1),
    ) {
        let (registry, ledger) = build(&agents);
        let p = proposal(&subject);
        let ctx = PolicyContext::new(&registry, &ledger);
        if PolicySet::default().permits(&p, &ctx) {
            prop_assert!(registry.available_agents(p.requirements()).contains(&p.agent()));
            prop_assert!(p.resources().is_zero() || ledger.can_allocate(p.agent(), p.resources()));
        }
    }

    #[test]
    fn a_batch_accepted_one_by_one_respects_slots_and_the_cap(
        agents in proptest::collection::vec(agent_spec(), REGISTERED as usize),
        batch in proptest::collection::vec(proposal_spec(1..40), 0..16),
    ) {
        let (registry, ledger) = build(&agents);
        let set = PolicySet::default();
        let mut accepted: Vec<Proposal> = Vec::new();
        for spec in &batch {
            let p = proposal(spec);
            if accepted.iter().any(|q| q.task() == p.task()) {
                continue; // one agent per task
            }
            let ctx = PolicyContext::new(&registry, &ledger).with_pending(&accepted);
            if set.permits(&p, &ctx) {
                accepted.push(p);
            }
        }
        for a in registry.iter() {
            let mine: Vec<&Proposal> = accepted.iter().filter(|p| p.agent() == a.id()).collect();
            prop_assert!(a.running() + mine.len() as u32 <= a.max_tasks());
            if mine.is_empty() {
                continue;
            }
            prop_assert_eq!(a.status(), AgentStatus::Available);
            for name in ["cpu", "gpu"] {
                let name: ResourceName = name.parse().unwrap();
                let want: u64 = mine.iter().map(|p| p.resources().get(&name)).sum();
                if want == 0 {
                    continue;
                }
                let cap = ledger.capacity(a.id()).unwrap().get(&name);
                let held = ledger.allocated(a.id()).unwrap().get(&name);
                if 100 * (held + want) > 95 * cap {
                    // Only as a task alone on the agent: the first accepted there, with
                    // nothing held, the only one needing it, within the capacity.
                    let needing: Vec<&&Proposal> =
                        mine.iter().filter(|p| p.resources().get(&name) > 0).collect();
                    let alone = ledger.allocated(a.id()).unwrap().is_zero()
                        && needing.len() == 1
                        && needing[0].task() == mine[0].task()
                        && want <= cap;
                    prop_assert!(alone, "{} over the cap on {}", name, a.id());
                }
            }
        }
        prop_assert!(accepted.iter().all(|p| registry.contains(p.agent())));
    }
}
