//! Properties of the resource ledger: it never over-allocates under any sequence of
//! operations, a release restores capacity exactly, failed calls change nothing, the
//! queue drains in priority order, and every request is eventually served when
//! capacity allows. `try_allocate` answers what `allocate` on its candidates implies,
//! including for a request that names no resource or one; `free_into` and
//! `capacity_into` agree with `free` and `capacity` whatever their buffer held.

use std::collections::BTreeMap;
use std::time::Duration;

use concord::resource::{LedgerConfig, RequestOutcome, ResourceLedger, ResourceName};
use concord::{
    AgentId, AllocationId, AllocationRequest, LedgerError, Priority, Resources, TaskId, Timestamp,
};
use proptest::prelude::*;

const AGENTS: u64 = 4;

fn capacity(a: u64) -> Resources {
    // Different shapes per agent; agent 3 has no gpu.
    let gpu = if a == 3 { 0 } else { a + 1 };
    Resources::new()
        .with_cpu_millis(1000 * (a + 2))
        .with_memory_bytes(1 << (30 + a))
        .with_named("gpu", gpu)
        .unwrap()
}

fn needs() -> impl Strategy<Value = Resources> {
    (0u64..3000, 0u64..(3 << 30), 0u64..3).prop_map(|(cpu, mem, gpu)| {
        Resources::new()
            .with_cpu_millis(cpu)
            .with_memory_bytes(mem)
            .with_named("gpu", gpu)
            .unwrap()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u64, Resources),
    Request(Vec<u64>, Resources, u32, Option<u64>),
    Release(usize),
    Cancel(usize),
    Advance(u64),
    Expire,
    Reclaim,
    Drain,
    Touch(usize),
    SetCapacity(u64, u64),
    PoolGpu(Option<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..AGENTS + 1, needs()).prop_map(|(a, n)| Op::Allocate(a, n)),
        4 => (proptest::collection::vec(0..AGENTS, 1..3), needs(), 0u32..100, proptest::option::of(1u64..600))
            .prop_map(|(c, n, p, l)| Op::Request(c, n, p, l)),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (1u64..400).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Drain),
        1 => any::<usize>().prop_map(Op::Touch),
        1 => (0..AGENTS, 500u64..8000).prop_map(|(a, c)| Op::SetCapacity(a, c)),
        1 => proptest::option::of(0u64..6).prop_map(Op::PoolGpu),
    ]
}

/// Checks the books from the outside: per agent, the sum of live allocations is at
/// most the capacity, and the pool limit bounds the sum over all agents.
fn check_books(l: &ResourceLedger, gpu_pool: Option<u64>) -> Result<(), TestCaseError> {
    let snap = l.snapshot();
    let mut held: BTreeMap<AgentId, Resources> = BTreeMap::new();
    let mut total = Resources::new();
    for a in &snap.allocations {
        let h = held.entry(a.agent).or_default();
        *h = h
            .checked_add(&a.resources)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        total = total.saturating_add(&a.resources);
    }
    for cap in &snap.agents {
        let h = held.remove(&cap.agent).unwrap_or_default();
        prop_assert!(
            h.fits(&cap.capacity),
            "{} holds {h} over capacity {}",
            cap.agent,
            cap.capacity
        );
        prop_assert_eq!(l.allocated(cap.agent).unwrap(), h);
    }
    prop_assert!(held.is_empty(), "allocations on unknown agents: {held:?}");
    if let Some(limit) = gpu_pool {
        prop_assert!(total.amount("gpu") <= limit, "gpu pool over limit");
    }
    Ok(())
}

/// An agent with several extended resources, which `Resources` keeps on the heap.
const WIDE: AgentId = AgentId::new(99);

/// A ledger with random allocations, waiting requests (some holding reservations) and
/// perhaps a gpu pool limit, and the time it was left at.
fn busy_ledger() -> impl Strategy<Value = (ResourceLedger, Timestamp)> {
    (
        proptest::collection::vec((0..AGENTS + 1, needs()), 0..12),
        proptest::collection::vec((0..AGENTS, needs()), 0..4),
        proptest::option::of(0u64..6),
    )
        .prop_map(|(held, waiting, gpu_pool)| {
            let cfg = LedgerConfig::default().with_reserve_after(Duration::from_secs(60));
            let mut l = ResourceLedger::with_config(cfg);
            for a in 0..AGENTS {
                l.add_agent(AgentId::new(a), &capacity(a)).unwrap();
            }
            let wide: Resources = "cpu=8,gpu=4,fpga=2,llm_tokens=100k".parse().unwrap();
            l.add_agent(WIDE, &wide).unwrap();
            let now = Timestamp::from_secs(1);
            for (a, n) in held {
                let agent = if a == AGENTS { WIDE } else { AgentId::new(a) };
                let _ = l.allocate(agent, &n, now);
            }
            for (a, n) in waiting {
                let _ = l.request(AllocationRequest::new(AgentId::new(a), n), now);
            }
            if let Some(limit) = gpu_pool {
                let _ = l.set_pool_limit(&"gpu".parse().unwrap(), Some(limit));
            }
            // Requests still waiting now get reservations.
            let later = now + Duration::from_secs(120);
            l.drain(later);
            (l, later)
        })
}

/// Candidates drawn from the ledger's agents, [`WIDE`] and one unknown agent.
fn candidates() -> impl Strategy<Value = Vec<AgentId>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (0..AGENTS + 1).prop_map(AgentId::new),
            1 => Just(WIDE),
        ],
        0..4,
    )
}

/// Needs of every size the executor sends: none, one resource, several, and one the
/// ledger has no dimension for.
fn probe_needs() -> impl Strategy<Value = Resources> {
    prop_oneof![
        2 => Just(Resources::new()),
        2 => (0u64..4).prop_map(|g| Resources::new().with_named("gpu", g).unwrap()),
        1 => (0u64..5000).prop_map(|c| Resources::new().with_cpu_millis(c)),
        2 => needs(),
        1 => needs().prop_map(|n| n.with_named("asic", 1).unwrap()),
    ]
}

/// What `try_allocate` must answer, from the public API alone: the first candidate
/// that `allocate` accepts, with the ledger it leaves; failing that, `allocate`'s error
/// on the first candidate if no candidate could ever hold the request, else what the
/// first candidate lacks now.
fn expected_try(
    l: &ResourceLedger,
    candidates: &[AgentId],
    needs: &Resources,
    now: Timestamp,
) -> Result<(AgentId, ResourceLedger), LedgerError> {
    let Some(&first) = candidates.first() else {
        return Err(LedgerError::NoCandidates);
    };
    if let Some(&agent) = candidates.iter().find(|a| l.capacity(**a).is_err()) {
        return Err(LedgerError::UnknownAgent { agent });
    }
    let mut errors = Vec::new();
    for &c in candidates {
        let mut after = l.clone();
        match after.allocate(c, needs, now) {
            Ok(_) => return Ok((c, after)),
            Err(e) => errors.push(e),
        }
    }
    if errors
        .iter()
        .all(|e| matches!(e, LedgerError::ExceedsCapacity { .. }))
    {
        return Err(errors.swap_remove(0));
    }
    let (name, needed, free) = needs
        .first_shortfall(&l.free(first).unwrap())
        .expect("the first candidate lacks something");
    Err(LedgerError::Insufficient {
        agent: first,
        resource: name.to_string(),
        needed,
        free,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn try_allocate_agrees_with_allocate_on_its_candidates(
        (mut l, now) in busy_ledger(),
        probes in proptest::collection::vec((candidates(), probe_needs()), 1..10),
    ) {
        // One ledger serves every probe in turn, so each call finds the scratch
        // buffers as the last one (granted, refused or invalid) left them.
        for (c, n) in probes {
            let expected = expected_try(&l, &c, &n, now);
            let before = l.snapshot();
            let got = l.try_allocate(&AllocationRequest::any_of(c.iter().copied(), n.clone()), now);
            match (got, expected) {
                (Ok(grant), Ok((agent, after))) => {
                    prop_assert_eq!(grant.agent, agent);
                    prop_assert_eq!(grant.request, None);
                    prop_assert_eq!(l.snapshot(), after.snapshot());
                }
                (Err(got), Err(want)) => {
                    prop_assert_eq!(got, want);
                    prop_assert_eq!(l.snapshot(), before, "a failed call changed the ledger");
                }
                (got, want) => prop_assert!(
                    false,
                    "{:?} for {} on {:?}: got {:?}, expected {:?}",
                    n, n, c, got, want.map(|(a, _)| a)
                ),
            }
        }
    }

    #[test]
    fn free_into_and_capacity_into_agree_with_free_and_capacity(
        (l, _) in busy_ledger(),
        order in proptest::collection::vec(
            prop_oneof![4 => (0..AGENTS + 1).prop_map(AgentId::new), 1 => Just(WIDE)],
            1..16,
        ),
    ) {
        // One buffer of each reused across agents: whatever the last agent left in it
        // (one extended resource or several) must not show through.
        let (mut free, mut cap) = (Resources::new(), Resources::new());
        for agent in order {
            match (l.free(agent), l.capacity(agent)) {
                (Ok(want_free), Ok(want_cap)) => {
                    l.free_into(agent, &mut free).unwrap();
                    l.capacity_into(agent, &mut cap).unwrap();
                    prop_assert_eq!(&free, &want_free);
                    prop_assert_eq!(&cap, &want_cap);
                }
                (Err(free_err), Err(cap_err)) => {
                    let (free_before, cap_before) = (free.clone(), cap.clone());
                    prop_assert_eq!(l.free_into(agent, &mut free), Err(free_err));
                    prop_assert_eq!(l.capacity_into(agent, &mut cap), Err(cap_err));
                    prop_assert_eq!(&free, &free_before, "a failed call changed the buffer");
                    prop_assert_eq!(&cap, &cap_before, "a failed call changed the buffer");
                }
                (f, c) => prop_assert!(false, "free {:?} but capacity {:?}", f, c),
            }
        }
    }

    #[test]
    fn never_over_allocates_and_errors_change_nothing(ops in proptest::collection::vec(op(), 1..80)) {
        let cfg = LedgerConfig::default()
            .with_aging_step(Duration::from_secs(30))
            .with_reserve_after(Duration::from_secs(300))
            .with_idle_after(Duration::from_secs(900));
        let mut l = ResourceLedger::with_config(cfg);
        for a in 0..AGENTS {
            l.add_agent(AgentId::new(a), &capacity(a)).unwrap();
        }
        let gpu: ResourceName = "gpu".parse().unwrap();
        let mut gpu_pool = None;
        let mut now = Timestamp::from_secs(1);
        let mut live: Vec<AllocationId> = Vec::new();
        let mut queued = Vec::new();
        for op in ops {
            let before = l.snapshot();
            let failed = match op {
                Op::Allocate(a, n) => match l.allocate(AgentId::new(a), &n, now) {
                    Ok(id) => { live.push(id); false }
                    Err(_) => true,
                },
                Op::Request(c, n, p, lease) => {
                    let mut req = AllocationRequest::any_of(c.into_iter().map(AgentId::new), n)
                        .with_priority(Priority(p));
                    if let Some(s) = lease { req = req.with_lease(Duration::from_secs(s)); }
                    match l.request(req, now) {
                        Ok(RequestOutcome::Granted(g)) => { live.push(g.allocation); false }
                        Ok(RequestOutcome::Queued(id)) => { queued.push(id); false }
                        Ok(_) => false,
                        Err(_) => true,
                    }
                }
                Op::Release(k) if !live.is_empty() => {
                    let id = live[k % live.len()];
                    match l.release(id, now) {
                        Ok(grants) => {
                            live.extend(grants.iter().map(|g| g.allocation));
                            false
                        }
                        Err(_) => true, // already expired or reclaimed
                    }
                }
                Op::Release(_) => l.release(AllocationId::new(u64::MAX), now).is_err(),
                Op::Cancel(k) if !queued.is_empty() => l.cancel(queued[k % queued.len()]).is_err(),
                Op::Cancel(_) => false,
                Op::Advance(s) => { now += Duration::from_secs(s); false }
                Op::Expire => { let r = l.expire(now); live.extend(r.grants.iter().map(|g| g.allocation)); false }
                Op::Reclaim => { let r = l.reclaim_idle(now); live.extend(r.grants.iter().map(|g| g.allocation)); false }
                Op::Drain => { live.extend(l.drain(now).iter().map(|g| g.allocation)); false }
                Op::Touch(k) if !live.is_empty() => l.touch(live[k % live.len()], now).is_err(),
                Op::Touch(_) => false,
                Op::SetCapacity(a, cpu) => {
                    let cap = capacity(a).with_cpu_millis(cpu);
                    l.set_capacity(AgentId::new(a), &cap).is_err()
                }
                Op::PoolGpu(limit) => match l.set_pool_limit(&gpu, limit) {
                    Ok(()) => { gpu_pool = limit; false }
                    Err(_) => true,
                },
            };
            if failed {
                prop_assert_eq!(&l.snapshot(), &before, "a failed call changed the ledger");
            }
            check_books(&l, gpu_pool)?;
            // A snapshot restores to the same ledger at every step.
            let restored = ResourceLedger::restore(l.snapshot()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(restored.snapshot(), l.snapshot());
        }
    }

    #[test]
    fn release_restores_capacity_exactly(agent in 0..AGENTS, n in needs(), others in proptest::collection::vec(needs(), 0..5)) {
        let mut l = ResourceLedger::new();
        for a in 0..AGENTS {
            l.add_agent(AgentId::new(a), &capacity(a)).unwrap();
        }
        let now = Timestamp::from_secs(0);
        for o in &others {
            let _ = l.allocate(AgentId::new(agent), o, now);
        }
        let before = l.free(AgentId::new(agent)).unwrap();
        let allocated_before = l.allocated(AgentId::new(agent)).unwrap();
        if let Ok(id) = l.allocate(AgentId::new(agent), &n, now) {
            prop_assert_eq!(l.free(AgentId::new(agent)).unwrap(), before.checked_sub(&n).unwrap());
            l.release(id, now).unwrap();
        }
        prop_assert_eq!(l.free(AgentId::new(agent)).unwrap(), before);
        prop_assert_eq!(l.allocated(AgentId::new(agent)).unwrap(), allocated_before);
    }

    #[test]
    fn queue_drains_in_priority_order(priorities in proptest::collection::vec(0u32..5, 1..20)) {
        // One slot, no aging, no reservations: strictly by priority, then by arrival.
        let cfg = LedgerConfig::default()
            .with_aging_step(Duration::from_secs(1 << 30))
            .with_reserve_after(Duration::from_secs(1 << 30));
        let mut l = ResourceLedger::with_config(cfg);
        let a = AgentId::new(0);
        l.add_agent(a, &"cpu=1".parse().unwrap()).unwrap();
        let now = Timestamp::from_secs(0);
        let mut hold = l.allocate(a, &"cpu=1".parse().unwrap(), now).unwrap();
        let mut expected = Vec::new();
        for (k, p) in priorities.iter().enumerate() {
            let req = AllocationRequest::new(a, "cpu=1".parse().unwrap()).with_priority(Priority(*p));
            let RequestOutcome::Queued(id) = l.request(req, now).unwrap() else {
                return Err(TestCaseError::fail("request should queue"));
            };
            expected.push((std::cmp::Reverse(*p), k, id));
        }
        expected.sort();
        let mut served = Vec::new();
        for _ in 0..priorities.len() {
            let g = l.release(hold, now).unwrap();
            prop_assert_eq!(g.len(), 1);
            served.push(g[0].request.unwrap());
            hold = g[0].allocation;
        }
        prop_assert_eq!(served, expected.into_iter().map(|e| e.2).collect::<Vec<_>>());
    }

    #[test]
    fn every_request_is_eventually_served(
        reqs in proptest::collection::vec((0..AGENTS, needs(), 0u32..100, 1u64..50), 1..40),
    ) {
        // Each request alone fits its agent; every grant is released after its hold
        // time. With aging and reservations, the queue must empty.
        let cfg = LedgerConfig::default()
            .with_aging_step(Duration::from_secs(10))
            .with_reserve_after(Duration::from_secs(120));
        let mut l = ResourceLedger::with_config(cfg);
        for a in 0..AGENTS {
            l.add_agent(AgentId::new(a), &capacity(a)).unwrap();
        }
        let mut now = Timestamp::from_secs(0);
        let mut running: Vec<(Timestamp, AllocationId)> = Vec::new();
        let mut pending = 0usize;
        let mut holds = BTreeMap::new();
        for (k, (a, n, p, hold)) in reqs.iter().enumerate() {
            let cap = capacity(*a);
            let n = n.min(&cap);
            let req = AllocationRequest::new(AgentId::new(*a), n)
                .with_priority(Priority(*p))
                .with_task(TaskId::new(k as u64));
            holds.insert(TaskId::new(k as u64), Duration::from_secs(*hold));
            match l.request(req, now).unwrap() {
                RequestOutcome::Granted(g) => running.push((now + Duration::from_secs(*hold), g.allocation)),
                _ => pending += 1,
            }
        }
        let mut served = 0usize;
        for _ in 0..10_000 {
            if served == pending { break; }
            now += Duration::from_secs(5);
            let (done, rest): (Vec<_>, Vec<_>) = running.into_iter().partition(|(t, _)| *t <= now);
            running = rest;
            for (_, id) in done {
                for g in l.release(id, now).unwrap() {
                    served += 1;
                    running.push((now + holds[&g.task.unwrap()], g.allocation));
                }
            }
            for g in l.drain(now) {
                served += 1;
                running.push((now + holds[&g.task.unwrap()], g.allocation));
            }
        }
        prop_assert_eq!(served, pending, "requests starved: {:?}", l.waiting(now));
    }
}
