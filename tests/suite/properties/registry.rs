//! Properties of the agent registry, checked against a naive model under random
//! operation sequences: register, set_status to any status, task_started,
//! task_finished, deregister.
//!
//! - The registry rejects every illegal status transition and leaves state unchanged.
//! - Every call succeeds or fails exactly as the model predicts, and a failed call
//!   leaves the snapshot unchanged.
//! - `running` never exceeds `max_tasks`, and an agent with every slot taken is never
//!   available.
//! - An unhealthy, quarantined or offline agent never appears in `available_agents`.
//! - `available_agents` equals a naive filter over the profiles, and agrees with
//!   `explain`.
//! - A snapshot restores to an equal registry.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus, RegistryError};
use concord::{AgentId, Capability, Requirements, Resources, Role, Timestamp};
use proptest::prelude::*;

const ROLES: [&str; 3] = ["ops", "qa", "security"];
const CAPS: [&str; 4] = ["browser", "deploy", "screenshot", "shell"];
/// Ids are drawn from a small range so operations often hit registered agents.
const IDS: u64 = 6;
/// Rare capabilities `x0..x{EXTRA}`; agents take many, so catalogs pass 128 names and
/// the bitsets spill.
const EXTRA: u16 = 300;

/// The lifecycle, written out independently of `AgentStatus::can_transition_to`.
fn legal(from: AgentStatus, to: AgentStatus) -> bool {
    use AgentStatus::{Available, Busy, Offline, Quarantined, Unhealthy};
    const LEGAL: [(AgentStatus, AgentStatus); 17] = [
        (Available, Busy),
        (Available, Unhealthy),
        (Available, Quarantined),
        (Available, Offline),
        (Busy, Available),
        (Busy, Unhealthy),
        (Busy, Quarantined),
        (Busy, Offline),
        (Unhealthy, Available),
        (Unhealthy, Busy),
        (Unhealthy, Quarantined),
        (Unhealthy, Offline),
        (Quarantined, Available),
        (Quarantined, Offline),
        (Offline, Available),
        (Offline, Busy),
        (Offline, Quarantined),
    ];
    LEGAL.contains(&(from, to))
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        id: u64,
        roles: u8,
        caps: u8,
        extra: Vec<u16>,
        max_tasks: u32,
        capacity: Option<(u64, u64)>,
    },
    SetStatus {
        id: u64,
        to: AgentStatus,
    },
    Started {
        id: u64,
    },
    Finished {
        id: u64,
    },
    Deregister {
        id: u64,
    },
}

fn status() -> impl Strategy<Value = AgentStatus> {
    proptest::sample::select(AgentStatus::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS;
    prop_oneof![
        2 => (
            id.clone(),
            0u8..8,
            0u8..16,
            proptest::collection::vec(0..EXTRA, 0..80),
            0u32..4,
            proptest::option::of((0u64..4000, 0u64..3)),
        )
            .prop_map(|(id, roles, caps, extra, max_tasks, capacity)| Op::Register {
                id,
                roles,
                caps,
                extra,
                max_tasks,
                capacity,
            }),
        4 => (id.clone(), status()).prop_map(|(id, to)| Op::SetStatus { id, to }),
        3 => id.clone().prop_map(|id| Op::Started { id }),
        2 => id.clone().prop_map(|id| Op::Finished { id }),
        1 => id.prop_map(|id| Op::Deregister { id }),
    ]
}

fn requirements() -> impl Strategy<Value = Requirements> {
    // Mostly loose requirements, so that many agents pass the other filters and the
    // rare capability decides.
    (
        prop_oneof![2 => Just(0u8), 1 => 0u8..8],
        prop_oneof![2 => Just(0u8), 1 => 0u8..16],
        proptest::option::weighted(0.8, 0..EXTRA),
        proptest::bool::weighted(0.05),
        proptest::option::of((0u64..5000, 0u64..3)),
    )
        .prop_map(|(roles, caps, extra, ghost, resources)| {
            let mut req = Requirements::new();
            for r in pick(&ROLES, roles) {
                req = req.with_role(Role::new(r).unwrap());
            }
            for c in pick(&CAPS, caps) {
                req = req.with_capability(Capability::new(c).unwrap());
            }
            if let Some(x) = extra {
                req = req.with_capability(Capability::new(&format!("x{x}")).unwrap());
            }
            if ghost {
                req = req.with_capability(Capability::new("ghost").unwrap());
            }
            if let Some((cpu, gpu)) = resources {
                req = req.with_resources(resources_of(cpu, gpu));
            }
            req
        })
}

fn pick<'a>(names: &'a [&'a str], mask: u8) -> impl Iterator<Item = &'a str> + 'a {
    names
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
}

fn resources_of(cpu_millis: u64, gpu: u64) -> Resources {
    Resources::new()
        .with_cpu_millis(cpu_millis)
        .with_named("gpu", gpu)
        .unwrap()
}

fn profile(
    id: u64,
    roles: u8,
    caps: u8,
    extra: &[u16],
    max_tasks: u32,
    capacity: Option<(u64, u64)>,
) -> AgentProfile {
    let mut p =
        AgentProfile::new(AgentId::new(id), format!("agent-{id}")).with_max_tasks(max_tasks);
    for r in pick(&ROLES, roles) {
        p = p.with_role(Role::new(r).unwrap());
    }
    for c in pick(&CAPS, caps) {
        p = p.with_capability(Capability::new(c).unwrap());
    }
    for x in extra {
        p = p.with_capability(Capability::new(&format!("x{x}")).unwrap());
    }
    if let Some((cpu, gpu)) = capacity {
        p = p.with_capacity(resources_of(cpu, gpu));
    }
    p
}

/// The model: what the registry should hold, kept the obvious way.
#[derive(Debug, Clone)]
struct Model {
    profile: AgentProfile,
    status: AgentStatus,
    running: u32,
    /// Set busy by the host: it stays busy when a slot frees.
    held: bool,
}

type Models = BTreeMap<AgentId, Model>;

/// What a successful call returned.
#[derive(Debug, Clone, PartialEq)]
enum Done {
    Registered,
    /// A status: the previous one for `set_status`, the new one for the task calls.
    Status(AgentStatus),
    Removed(Option<AgentProfile>),
}

/// Applies `op` to the model and the registry; checks they agree on the result and
/// that a failure changed nothing.
fn step(
    registry: &mut AgentRegistry,
    models: &mut Models,
    op: &Op,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let before = registry.snapshot();
    let (expected, got) = match op {
        Op::Register {
            id,
            roles,
            caps,
            extra,
            max_tasks,
            capacity,
        } => {
            let p = profile(*id, *roles, *caps, extra, *max_tasks, *capacity);
            let agent = p.id();
            let expected = if *max_tasks == 0 {
                Err(RegistryError::InvalidProfile {
                    agent,
                    reason: "max_tasks is 0, so it could never run a task".into(),
                })
            } else {
                match models.entry(agent) {
                    Entry::Occupied(_) => Err(RegistryError::DuplicateAgent { agent }),
                    Entry::Vacant(slot) => {
                        slot.insert(Model {
                            profile: p.clone(),
                            status: AgentStatus::Available,
                            running: 0,
                            held: false,
                        });
                        Ok(Done::Registered)
                    }
                }
            };
            let got = registry.register(p, now).map(|()| Done::Registered);
            (expected, got)
        }
        Op::SetStatus { id, to } => {
            let agent = AgentId::new(*id);
            let expected = match models.get_mut(&agent) {
                None => Err(RegistryError::UnknownAgent { agent }),
                Some(m) if !legal(m.status, *to) => Err(RegistryError::IllegalTransition {
                    agent,
                    from: m.status,
                    to: *to,
                }),
                Some(m) if *to == AgentStatus::Available && m.running >= m.profile.max_tasks() => {
                    Err(RegistryError::NoFreeSlot {
                        agent,
                        running: m.running,
                        max_tasks: m.profile.max_tasks(),
                    })
                }
                Some(m) => {
                    m.held = *to == AgentStatus::Busy && m.running < m.profile.max_tasks();
                    Ok(Done::Status(std::mem::replace(&mut m.status, *to)))
                }
            };
            (
                expected,
                registry.set_status(agent, *to, now).map(Done::Status),
            )
        }
        Op::Started { id } => {
            let agent = AgentId::new(*id);
            let expected = match models.get_mut(&agent) {
                None => Err(RegistryError::UnknownAgent { agent }),
                Some(m) if m.status != AgentStatus::Available => Err(RegistryError::NotAvailable {
                    agent,
                    status: m.status,
                }),
                Some(m) => {
                    m.running += 1;
                    if m.running == m.profile.max_tasks() {
                        m.status = AgentStatus::Busy;
                    }
                    Ok(Done::Status(m.status))
                }
            };
            (
                expected,
                registry.task_started(agent, now).map(Done::Status),
            )
        }
        Op::Finished { id } => {
            let agent = AgentId::new(*id);
            let expected = match models.get_mut(&agent) {
                None => Err(RegistryError::UnknownAgent { agent }),
                Some(m) if m.running == 0 => Err(RegistryError::NoRunningTask { agent }),
                Some(m) => {
                    m.running -= 1;
                    if m.status == AgentStatus::Busy && !m.held {
                        m.status = AgentStatus::Available;
                    }
                    Ok(Done::Status(m.status))
                }
            };
            (
                expected,
                registry.task_finished(agent, now).map(Done::Status),
            )
        }
        Op::Deregister { id } => {
            let agent = AgentId::new(*id);
            let expected = match models.get(&agent) {
                None => Err(RegistryError::UnknownAgent { agent }),
                Some(m) if m.running > 0 => Err(RegistryError::AgentBusy {
                    agent,
                    running: m.running,
                }),
                Some(_) => Ok(Done::Removed(models.remove(&agent).map(|m| m.profile))),
            };
            let got = registry.deregister(agent).map(|p| Done::Removed(Some(p)));
            (expected, got)
        }
    };
    prop_assert_eq!(&got, &expected, "{:?}", op);
    if got.is_err() {
        prop_assert_eq!(
            registry.snapshot(),
            before,
            "a failed {:?} changed the registry",
            op
        );
    }
    Ok(())
}

/// The state every agent must be in, whatever happened before.
fn check_invariants(
    registry: &AgentRegistry,
    models: &Models,
    queries: &[Requirements],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(registry.len(), models.len());
    for (view, (id, m)) in registry.iter().zip(models) {
        prop_assert_eq!(view.id(), *id);
        prop_assert_eq!(view.profile(), &m.profile);
        prop_assert_eq!((view.status(), view.running()), (m.status, m.running));
        prop_assert!(view.running() <= view.max_tasks());
        if view.status() == AgentStatus::Available {
            prop_assert!(
                view.running() < view.max_tasks(),
                "{:?} available but full",
                view
            );
        }
        let utilization = registry.utilization(*id).unwrap();
        prop_assert!((0.0..=1.0).contains(&utilization));
    }
    for req in queries {
        let available = registry.available_agents(req);
        let naive: Vec<AgentId> = models
            .iter()
            .filter(|(_, m)| {
                let p = &m.profile;
                m.status == AgentStatus::Available
                    && m.running < p.max_tasks()
                    && req.roles().iter().all(|r| p.roles().contains(r))
                    && req
                        .capabilities()
                        .iter()
                        .all(|c| p.capabilities().contains(c))
                    && p.capacity().is_none_or(|cap| req.resources().fits(cap))
            })
            .map(|(id, _)| *id)
            .collect();
        prop_assert_eq!(&available, &naive, "{:?}", req);
        for id in &available {
            let status = registry.status(*id).unwrap();
            prop_assert!(
                !matches!(
                    status,
                    AgentStatus::Unhealthy | AgentStatus::Quarantined | AgentStatus::Offline
                ),
                "{} is {} yet available",
                id,
                status
            );
        }
        for id in models.keys() {
            let fits = registry.explain(*id, req).unwrap().is_empty();
            prop_assert_eq!(fits, available.contains(id), "explain disagrees for {}", id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The registry rejects every illegal status transition and leaves state unchanged;
    /// every legal one lands on the status asked for (or is refused for want of a slot).
    #[test]
    fn illegal_transitions_are_rejected_and_change_nothing(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut registry = AgentRegistry::new();
        let mut models = Models::new();
        for (n, op) in ops.iter().enumerate() {
            step(&mut registry, &mut models, op, Timestamp::from_secs(n as u64))?;
        }
        let now = Timestamp::from_secs(1000);
        let ids: Vec<AgentId> = registry.ids().to_vec();
        for agent in ids.into_iter().chain([AgentId::new(IDS + 1)]) {
            for to in AgentStatus::ALL {
                let before = registry.snapshot();
                let from = registry.status(agent);
                let mut trial = registry.clone();
                let result = trial.set_status(agent, to, now);
                match from {
                    Err(_) => prop_assert_eq!(result, Err(RegistryError::UnknownAgent { agent })),
                    Ok(from) if !legal(from, to) => {
                        prop_assert_eq!(result, Err(RegistryError::IllegalTransition { agent, from, to }));
                        prop_assert_eq!(trial.snapshot(), before);
                    }
                    Ok(from) => match result {
                        Ok(previous) => {
                            prop_assert_eq!(previous, from);
                            prop_assert_eq!(trial.status(agent).unwrap(), to);
                        }
                        Err(RegistryError::NoFreeSlot { .. }) => {
                            prop_assert_eq!(to, AgentStatus::Available);
                            prop_assert_eq!(trial.snapshot(), before);
                        }
                        Err(e) => prop_assert!(false, "legal {} -> {} refused: {}", from, to, e),
                    },
                }
            }
        }
    }

    /// Random operation sequences: the registry matches the model after every step,
    /// failures change nothing, and `available_agents` is the naive filter.
    #[test]
    fn registry_matches_a_naive_model(
        ops in proptest::collection::vec(op(), 1..60),
        queries in proptest::collection::vec(requirements(), 1..4),
    ) {
        let mut registry = AgentRegistry::new();
        let mut models = Models::new();
        for (n, op) in ops.iter().enumerate() {
            step(&mut registry, &mut models, op, Timestamp::from_secs(n as u64))?;
            check_invariants(&registry, &models, &queries)?;
        }
        let snapshot = registry.snapshot();
        let restored = AgentRegistry::restore(snapshot.clone()).unwrap();
        prop_assert_eq!(restored.snapshot(), snapshot);
        for req in &queries {
            prop_assert_eq!(restored.available_agents(req), registry.available_agents(req));
        }
    }

    /// An agent is found by its id however the ids lie: a run from any start (found
    /// without a search), a run with gaps, ids at the ends of the range; an id not
    /// registered is not found, wherever it falls.
    #[test]
    fn every_agent_is_found_by_its_id_and_no_other(
        start in prop_oneof![Just(0u64), Just(1u64), any::<u64>(), Just(u64::MAX - 8)],
        steps in proptest::collection::vec(prop_oneof![4 => Just(1u64), 1 => 2u64..5, 1 => any::<u64>()], 1..24),
        probes in proptest::collection::vec(any::<u64>(), 0..8),
    ) {
        let mut ids = vec![start];
        for step in steps {
            match ids.last().unwrap().checked_add(step) {
                Some(next) => ids.push(next),
                None => break,
            }
        }
        let mut registry = AgentRegistry::new();
        // Registered out of order: the registry keeps its own order.
        for &id in ids.iter().rev() {
            let profile = AgentProfile::new(AgentId::new(id), format!("agent-{id}"));
            registry.register(profile, Timestamp::EPOCH).unwrap();
        }
        for &id in &ids {
            let found = registry.get(AgentId::new(id)).map(|a| a.id());
            prop_assert_eq!(found, Some(AgentId::new(id)));
        }
        let near = ids.iter().flat_map(|&id| [id.wrapping_sub(1), id.wrapping_add(1)]);
        for probe in probes.into_iter().chain(near) {
            let found = registry.get(AgentId::new(probe)).map(|a| a.id());
            let expected = ids.contains(&probe).then_some(AgentId::new(probe));
            prop_assert_eq!(found, expected);
        }
    }
}
