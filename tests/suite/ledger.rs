//! The resource ledger through its public API: allocation, pools, the fair queue,
//! leases, leaks, reports, snapshots, and every error path.

use std::time::Duration;

use concord::resource::{
    LeakReason, LedgerConfig, LedgerSnapshot, RequestOutcome, ResourceLedger, ResourceName,
};
use concord::{
    AgentId, AllocationId, AllocationRequest, LedgerError, Priority, RequestId, Resources, TaskId,
    Timestamp,
};

fn r(s: &str) -> Resources {
    s.parse().unwrap()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

const A: AgentId = AgentId::new(1);
const B: AgentId = AgentId::new(2);

fn ledger() -> ResourceLedger {
    let mut l = ResourceLedger::new();
    l.add_agent(A, &r("cpu=4,memory=8Gi,gpu=2")).unwrap();
    l.add_agent(B, &r("cpu=2,memory=4Gi")).unwrap();
    l
}

/// Asserts that `f` fails and leaves the ledger exactly as it was.
fn unchanged<T: std::fmt::Debug>(
    l: &mut ResourceLedger,
    f: impl FnOnce(&mut ResourceLedger) -> Result<T, LedgerError>,
) -> LedgerError {
    let before = l.snapshot();
    let err = f(l).expect_err("expected an error");
    assert_eq!(l.snapshot(), before, "state changed after error {err}");
    err
}

#[test]
fn allocate_and_release_restore_capacity_exactly() {
    let mut l = ledger();
    let free_before = l.free(A).unwrap();
    let id = l
        .allocate(A, &r("cpu=1500m,memory=1Gi,gpu=1"), t(0))
        .unwrap();
    assert_eq!(l.allocated(A).unwrap(), r("cpu=1500m,memory=1Gi,gpu=1"));
    assert_eq!(l.free(A).unwrap(), r("cpu=2500m,memory=7Gi,gpu=1"));
    assert_eq!(l.len(), 1);
    let grants = l.release(id, t(1)).unwrap();
    assert!(grants.is_empty());
    assert_eq!(l.free(A).unwrap(), free_before);
    assert!(l.is_empty());
}

#[test]
fn allocation_ids_are_never_reused() {
    let mut l = ledger();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let id = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
        assert!(seen.insert(id));
        l.release(id, t(0)).unwrap();
    }
}

#[test]
fn errors_name_the_offending_value_and_change_nothing() {
    let mut l = ledger();
    let id = l.allocate(A, &r("cpu=3"), t(0)).unwrap();

    let e = unchanged(&mut l, |l| l.allocate(AgentId::new(9), &r("cpu=1"), t(0)));
    assert_eq!(
        e,
        LedgerError::UnknownAgent {
            agent: AgentId::new(9)
        }
    );
    assert!(e.to_string().contains("agent#9"));

    let e = unchanged(&mut l, |l| l.allocate(A, &r("cpu=2"), t(0)));
    assert_eq!(
        e,
        LedgerError::Insufficient {
            agent: A,
            resource: "cpu".into(),
            needed: 2000,
            free: 1000
        }
    );

    let e = unchanged(&mut l, |l| l.allocate(A, &r("cpu=5"), t(0)));
    assert!(
        matches!(e, LedgerError::ExceedsCapacity { ref resource, needed: 5000, capacity: 4000, .. } if resource == "cpu")
    );

    // A resource nobody has can never be allocated.
    let e = unchanged(&mut l, |l| l.allocate(A, &r("tpu=1"), t(0)));
    assert!(
        matches!(e, LedgerError::ExceedsCapacity { ref resource, capacity: 0, .. } if resource == "tpu")
    );

    let e = unchanged(&mut l, |l| l.add_agent(A, &r("cpu=1")));
    assert_eq!(e, LedgerError::DuplicateAgent { agent: A });

    let e = unchanged(&mut l, |l| l.release(AllocationId::new(999), t(0)));
    assert_eq!(
        e,
        LedgerError::UnknownAllocation {
            allocation: AllocationId::new(999)
        }
    );
    assert!(e.to_string().contains("alloc#999"));

    let e = unchanged(&mut l, |l| l.set_capacity(A, &r("cpu=2,memory=8Gi,gpu=2")));
    assert!(matches!(
        e,
        LedgerError::CapacityBelowAllocated {
            allocated: 3000,
            capacity: 2000,
            ..
        }
    ));

    let e = unchanged(&mut l, |l| l.remove_agent(A));
    assert_eq!(
        e,
        LedgerError::AgentInUse {
            agent: A,
            allocations: 1
        }
    );

    let e = unchanged(&mut l, |l| {
        l.request(AllocationRequest::any_of([], r("cpu=1")), t(0))
    });
    assert_eq!(e, LedgerError::NoCandidates);

    let e = unchanged(&mut l, |l| {
        l.request(AllocationRequest::any_of([A, B], r("cpu=8")), t(0))
    });
    assert!(matches!(e, LedgerError::ExceedsCapacity { agent, .. } if agent == A));

    let e = unchanged(&mut l, |l| l.cancel(RequestId::new(5)));
    assert_eq!(
        e,
        LedgerError::UnknownRequest {
            request: RequestId::new(5)
        }
    );

    let e = unchanged(&mut l, |l| l.renew(AllocationId::new(77), t(0)));
    assert_eq!(
        e,
        LedgerError::UnknownAllocation {
            allocation: AllocationId::new(77)
        }
    );
    let e = unchanged(&mut l, |l| l.touch(AllocationId::new(77), t(0)));
    assert_eq!(
        e,
        LedgerError::UnknownAllocation {
            allocation: AllocationId::new(77)
        }
    );

    let e = unchanged(&mut l, |l| l.set_pool_limit(&ResourceName::Cpu, Some(1000)));
    assert!(matches!(
        e,
        LedgerError::CapacityBelowAllocated {
            allocated: 3000,
            capacity: 1000,
            ..
        }
    ));

    let e = unchanged(&mut l, |l| l.capacity(AgentId::new(42)));
    assert_eq!(
        e,
        LedgerError::UnknownAgent {
            agent: AgentId::new(42)
        }
    );

    // The double release.
    l.release(id, t(0)).unwrap();
    let e = unchanged(&mut l, |l| l.release(id, t(0)));
    assert_eq!(e, LedgerError::UnknownAllocation { allocation: id });
}

#[test]
fn can_allocate_matches_allocate() {
    let mut l = ledger();
    assert!(l.can_allocate(A, &r("cpu=4,gpu=2")));
    assert!(!l.can_allocate(A, &r("cpu=5")));
    assert!(!l.can_allocate(A, &r("tpu=1")));
    assert!(!l.can_allocate(AgentId::new(99), &r("cpu=1")));
    l.allocate(A, &r("cpu=4"), t(0)).unwrap();
    assert!(!l.can_allocate(A, &r("cpu=1m")));
    assert!(l.can_allocate(A, &r("memory=8Gi")));
}

#[test]
fn pool_limits_bound_the_sum_over_agents() {
    let mut l = ledger();
    l.set_pool_limit(&"cpu".parse().unwrap(), Some(3000))
        .unwrap();
    l.allocate(A, &r("cpu=2"), t(0)).unwrap();
    let e = l.allocate(B, &r("cpu=2"), t(0)).unwrap_err();
    assert_eq!(
        e,
        LedgerError::Insufficient {
            agent: B,
            resource: "cpu".into(),
            needed: 2000,
            free: 1000
        }
    );
    l.allocate(B, &r("cpu=1"), t(0)).unwrap();
    // A pool limit below one agent's capacity bounds what it could ever hold.
    let e = l
        .request(AllocationRequest::new(A, r("cpu=3500m")), t(0))
        .unwrap_err();
    assert!(matches!(
        e,
        LedgerError::ExceedsCapacity { capacity: 3000, .. }
    ));
    // A pool limit on a resource no agent has yet.
    l.set_pool_limit(&"llm_tokens".parse().unwrap(), Some(100_000))
        .unwrap();
    l.set_pool_limit(&"cpu".parse().unwrap(), None).unwrap();
    l.allocate(A, &r("cpu=2"), t(0)).unwrap();
}

#[test]
fn queued_request_is_served_on_release() {
    let mut l = ledger();
    let big = l.allocate(A, &r("cpu=4"), t(0)).unwrap();
    let out = l
        .request(
            AllocationRequest::new(A, r("cpu=1")).with_task(TaskId::new(7)),
            t(10),
        )
        .unwrap();
    let RequestOutcome::Queued(req) = out else {
        panic!("expected queued, got {out:?}")
    };
    assert_eq!(l.waiting(t(10)).len(), 1);
    let grants = l.release(big, t(70)).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].request, Some(req));
    assert_eq!(grants[0].agent, A);
    assert_eq!(grants[0].task, Some(TaskId::new(7)));
    assert_eq!(grants[0].waited, Duration::from_secs(60));
    assert!(l.waiting(t(70)).is_empty());
    assert_eq!(
        l.allocation(grants[0].allocation).unwrap().resources,
        r("cpu=1")
    );
}

#[test]
fn request_falls_through_candidates_in_order() {
    let mut l = ledger();
    l.allocate(A, &r("cpu=4"), t(0)).unwrap();
    let out = l
        .request(AllocationRequest::any_of([A, B], r("cpu=1")), t(0))
        .unwrap();
    let RequestOutcome::Granted(g) = out else {
        panic!("{out:?}")
    };
    assert_eq!(g.agent, B);
    assert_eq!(g.request, None);
    let g = l
        .try_allocate(&AllocationRequest::any_of([A, B], r("cpu=1")), t(0))
        .unwrap();
    assert_eq!(g.agent, B);
    let e = l
        .try_allocate(&AllocationRequest::any_of([A, B], r("cpu=1")), t(0))
        .unwrap_err();
    assert!(matches!(e, LedgerError::Insufficient { agent, .. } if agent == A));
}

#[test]
fn a_request_reads_and_writes_as_its_list_of_candidates_however_many() {
    // One candidate is kept inline, not in a list: the wire form, `Debug` and equality
    // must not show it.
    let one = AllocationRequest::new(A, r("gpu=1")).with_task(TaskId::new(4));
    assert_eq!(
        one,
        AllocationRequest::any_of([A], r("gpu=1")).with_task(TaskId::new(4))
    );
    assert_eq!(one.candidates(), &[A]);
    let cases = [
        (
            AllocationRequest::any_of([], Resources::new()),
            r#"{"candidates":[],"needs":{},"task":null,"priority":50,"lease":null}"#,
            "candidates: [], ",
        ),
        (
            one,
            r#"{"candidates":[1],"needs":{"gpu":"1"},"task":4,"priority":50,"lease":null}"#,
            "candidates: [AgentId(1)], ",
        ),
        (
            AllocationRequest::any_of([B, A, B], r("cpu=1")),
            r#"{"candidates":[2,1,2],"needs":{"cpu":"1"},"task":null,"priority":50,"lease":null}"#,
            "candidates: [AgentId(2), AgentId(1), AgentId(2)], ",
        ),
    ];
    for (req, json, debug) in cases {
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<AllocationRequest>(json).unwrap(),
            req
        );
        assert!(format!("{req:?}").contains(debug), "{req:?}");
    }
    let e =
        serde_json::from_str::<AllocationRequest>(r#"{"candidates":1,"needs":{}}"#).unwrap_err();
    assert!(e.to_string().contains("expected a sequence"), "{e}");
}

#[test]
fn an_empty_or_one_resource_request_is_granted_like_allocate() {
    // The executor's common request names no resource, or only one; `try_allocate`
    // resolves it in scratch buffers, and must book it exactly as `allocate` does.
    for needs in [
        Resources::new(),
        r("gpu=1"),
        r("cpu=500m"),
        r("cpu=1,memory=1Gi,gpu=1"),
    ] {
        let (mut tried, mut allocated) = (ledger(), ledger());
        for _ in 0..3 {
            let g = tried
                .try_allocate(&AllocationRequest::new(A, needs.clone()), t(1))
                .map(|g| g.allocation);
            assert_eq!(g, allocated.allocate(A, &needs, t(1)), "{needs}");
            assert_eq!(tried.snapshot(), allocated.snapshot(), "{needs}");
        }
        let id = tried.allocations()[0].id;
        assert_eq!(tried.release(id, t(2)), allocated.release(id, t(2)));
        assert_eq!(tried.snapshot(), allocated.snapshot(), "{needs}");
    }
}

#[test]
fn free_into_and_capacity_into_overwrite_the_buffer() {
    let mut l = ledger();
    l.add_agent(AgentId::new(3), &r("cpu=1,fpga=2,gpu=1,llm_tokens=10"))
        .unwrap();
    l.allocate(A, &r("cpu=1,gpu=1"), t(0)).unwrap();
    // Start from a buffer holding more extended resources than any agent frees.
    let mut buf = r("cpu=9,asic=1,fpga=1,gpu=9,llm_tokens=1");
    for agent in [AgentId::new(3), A, B, AgentId::new(3)] {
        l.free_into(agent, &mut buf).unwrap();
        assert_eq!(buf, l.free(agent).unwrap());
        l.capacity_into(agent, &mut buf).unwrap();
        assert_eq!(buf, l.capacity(agent).unwrap());
    }
    assert_eq!(buf.to_string(), "cpu=1,fpga=2,gpu=1,llm_tokens=10");
    let unknown = AgentId::new(9);
    let e = l.free_into(unknown, &mut buf).unwrap_err();
    assert_eq!(e, LedgerError::UnknownAgent { agent: unknown });
    let e = l.capacity_into(unknown, &mut buf).unwrap_err();
    assert_eq!(e, LedgerError::UnknownAgent { agent: unknown });
    assert_eq!(buf.to_string(), "cpu=1,fpga=2,gpu=1,llm_tokens=10");
}

/// A ledger whose one agent, `A`, has one cpu, all of it held (the hold returned),
/// with waiting requests aging a level per `aging_step` and never reserved for.
fn held_ledger(aging_step: Duration) -> (ResourceLedger, AllocationId) {
    let cfg = LedgerConfig::default()
        .with_aging_step(aging_step)
        .with_reserve_after(Duration::from_secs(86_400));
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=1")).unwrap();
    let hold = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    (l, hold)
}

/// Queues `request` at `at`, failing the test if it is granted.
fn queued(l: &mut ResourceLedger, request: AllocationRequest, at: Timestamp) -> RequestId {
    match l.request(request, at).unwrap() {
        RequestOutcome::Queued(id) => id,
        other => panic!("not queued: {other:?}"),
    }
}

#[test]
fn queue_serves_higher_priority_first() {
    let (mut l, hold) = held_ledger(Duration::from_secs(3600));
    let cpu = || AllocationRequest::new(A, r("cpu=1"));
    let low = queued(&mut l, cpu().with_priority(Priority::LOW), t(1));
    let high = queued(&mut l, cpu().with_priority(Priority::HIGH), t(2));
    assert_eq!(
        l.waiting(t(3)).iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![high, low]
    );
    let g = l.release(hold, t(3)).unwrap();
    assert_eq!(g[0].request, Some(high));
    let g = l.release(g[0].allocation, t(4)).unwrap();
    assert_eq!(g[0].request, Some(low));
}

#[test]
fn aging_lifts_a_long_waiting_request_above_newer_higher_priority_ones() {
    let (mut l, hold) = held_ledger(Duration::from_secs(60));
    let cpu = || AllocationRequest::new(A, r("cpu=1"));
    // LOW (10) waits 100 minutes: effective 110, above a fresh CRITICAL (100).
    let old = queued(&mut l, cpu().with_priority(Priority::LOW), t(0));
    queued(&mut l, cpu().with_priority(Priority::CRITICAL), t(6000));
    let g = l.release(hold, t(6000)).unwrap();
    assert_eq!(g[0].request, Some(old));
}

/// A request queued again by its host (granted, then given back) says since when it
/// has waited: it ages from then, ahead of a request that came in between, and its
/// grant counts the whole wait. A time after the request counts as the request's.
#[test]
fn a_request_waiting_since_before_ages_from_then() {
    let (mut l, hold) = held_ledger(Duration::from_secs(60));
    let cpu = || AllocationRequest::new(A, r("cpu=1"));
    let newer = queued(&mut l, cpu(), t(600));
    let back = queued(&mut l, cpu().with_waiting_since(t(60)), t(660));
    let future = queued(&mut l, cpu().with_waiting_since(t(99_999)), t(700));
    let g = l.release(hold, t(720)).unwrap();
    assert_eq!(g[0].request, Some(back));
    assert_eq!(g[0].waited, Duration::from_secs(660));
    let g = l.release(g[0].allocation, t(780)).unwrap();
    assert_eq!(g[0].request, Some(newer));
    let g = l.release(g[0].allocation, t(800)).unwrap();
    assert_eq!(
        (g[0].request, g[0].waited),
        (Some(future), Duration::from_secs(100))
    );
}

/// A request queued again keeps its age for its place, but its wait for a
/// reservation counts from when it was queued this time: it is not due for one at
/// once (a host that queued it again after a policy refused its grant would be
/// told a deadline was due at every tick). The snapshot keeps both times.
#[test]
fn a_request_queued_again_waits_for_a_reservation_afresh() {
    let cfg = LedgerConfig::default().with_reserve_after(Duration::from_secs(600));
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=1")).unwrap();
    let hold = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    let back = queued(
        &mut l,
        AllocationRequest::new(A, r("cpu=1")).with_waiting_since(t(0)),
        t(3_000),
    );
    assert_eq!(l.next_deadline(), Some(t(3_600)), "not at once (t(600))");
    let waiting = l.waiting(t(3_000));
    assert_eq!(
        (waiting[0].enqueued_at, waiting[0].queued_at),
        (t(0), Some(t(3_000)))
    );
    let restored = ResourceLedger::restore(l.snapshot()).unwrap();
    assert_eq!(restored.next_deadline(), Some(t(3_600)));
    assert!(l.drain(t(3_599)).is_empty());
    assert_eq!(l.waiting(t(3_599))[0].reserved_on, None);
    l.drain(t(3_600));
    assert_eq!(l.waiting(t(3_600))[0].reserved_on, Some(A));
    // Its age still orders it, and its grant counts the whole wait.
    let g = l.release(hold, t(3_700)).unwrap();
    assert_eq!(
        (g[0].request, g[0].waited),
        (Some(back), Duration::from_secs(3_700))
    );
}

#[test]
fn small_requests_backfill_past_a_large_one() {
    let cfg = LedgerConfig::default().with_reserve_after(Duration::from_secs(600));
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=4")).unwrap();
    let a = l.allocate(A, &r("cpu=2"), t(0)).unwrap();
    let b = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    // A large request that needs the whole agent waits ...
    let RequestOutcome::Queued(large) = l
        .request(
            AllocationRequest::new(A, r("cpu=4")).with_priority(Priority::HIGH),
            t(0),
        )
        .unwrap()
    else {
        panic!()
    };
    // ... but does not block a small one that fits now (no head-of-line blocking).
    let small = l
        .request(AllocationRequest::new(A, r("cpu=1")), t(1))
        .unwrap();
    assert!(matches!(small, RequestOutcome::Granted(_)), "{small:?}");
    let RequestOutcome::Granted(small) = small else {
        unreachable!()
    };

    // After reserve_after, the large request holds a reservation: capacity freed on A
    // is kept for it, and new small requests wait instead of taking it.
    l.release(b, t(700)).unwrap();
    let w = l.waiting(t(700));
    assert_eq!(w[0].id, large);
    assert_eq!(w[0].reserved_on, Some(A));
    assert!(!l.can_allocate(A, &r("cpu=1")));
    let e = l.allocate(A, &r("cpu=1"), t(700)).unwrap_err();
    assert!(matches!(e, LedgerError::Insufficient { free: 0, .. }));
    let queued_small = l
        .request(
            AllocationRequest::new(A, r("cpu=1")).with_priority(Priority::CRITICAL),
            t(701),
        )
        .unwrap();
    assert!(matches!(queued_small, RequestOutcome::Queued(_)));

    l.release(small.allocation, t(702)).unwrap();
    let g = l.release(a, t(703)).unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].request, Some(large));
    assert_eq!(l.usage_report().resources[0].reserved, 0);
}

/// Regression: a reservation outlived a capacity or pool limit lowered below its
/// request's needs, and then kept the agent's capacity from everyone, for good. It is
/// lifted (the request waits on), and a snapshot holding one is refused.
#[test]
fn a_reservation_the_agent_can_no_longer_hold_is_lifted() {
    let cfg = LedgerConfig::default().with_reserve_after(Duration::ZERO);
    for lower in ["capacity", "pool"] {
        let mut l = ResourceLedger::with_config(cfg.clone());
        l.add_agent(A, &r("cpu=4")).unwrap();
        let held = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
        let RequestOutcome::Queued(large) = l
            .request(AllocationRequest::new(A, r("cpu=4")), t(0))
            .unwrap()
        else {
            panic!()
        };
        l.drain(t(1));
        assert_eq!(l.waiting(t(1))[0].reserved_on, Some(A));
        assert!(!l.can_allocate(A, &r("cpu=1")), "{lower}");
        // A snapshot taken now restores.
        ResourceLedger::restore(l.snapshot()).unwrap();
        match lower {
            "capacity" => l.set_capacity(A, &r("cpu=2")).unwrap(),
            _ => l.set_pool_limit(&ResourceName::Cpu, Some(2000)).unwrap(),
        }
        let w = l.waiting(t(2));
        assert_eq!((w[0].id, w[0].reserved_on), (large, None), "{lower}");
        assert!(l.can_allocate(A, &r("cpu=500m")), "{lower}");
        assert_eq!(l.usage_report().resources[0].reserved, 0, "{lower}");
        // A snapshot that still holds such a reservation is corrupt.
        let mut snapshot = serde_json::to_value(l.snapshot()).unwrap();
        snapshot["waiting"][0]["reserved_on"] = serde_json::json!(A.get());
        let snapshot: LedgerSnapshot = serde_json::from_value(snapshot).unwrap();
        assert!(matches!(
            ResourceLedger::restore(snapshot),
            Err(LedgerError::CorruptSnapshot { .. })
        ));
        l.release(held, t(3)).unwrap();
    }
}

#[test]
fn cancelling_a_reserved_request_frees_its_reservation() {
    let cfg = LedgerConfig::default().with_reserve_after(Duration::ZERO);
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=2")).unwrap();
    let hold = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    let RequestOutcome::Queued(req) = l
        .request(AllocationRequest::new(A, r("cpu=2")), t(0))
        .unwrap()
    else {
        panic!()
    };
    assert!(l.drain(t(0)).is_empty());
    assert!(!l.can_allocate(A, &r("cpu=1")));
    assert_eq!(l.cancel(req).unwrap().needs(), &r("cpu=2"));
    assert!(l.can_allocate(A, &r("cpu=1")));
    l.release(hold, t(1)).unwrap();
    assert_eq!(l.free(A).unwrap(), r("cpu=2"));
}

#[test]
fn leases_expire_and_can_be_renewed() {
    let mut l = ledger();
    let leased = l
        .request(
            AllocationRequest::new(A, r("cpu=1")).with_lease(Duration::from_secs(60)),
            t(0),
        )
        .unwrap();
    let RequestOutcome::Granted(leased) = leased else {
        panic!()
    };
    let other = l
        .request(
            AllocationRequest::new(A, r("cpu=1")).with_lease(Duration::from_secs(60)),
            t(0),
        )
        .unwrap();
    let RequestOutcome::Granted(other) = other else {
        panic!()
    };
    l.renew(other.allocation, t(50)).unwrap();
    assert!(l.expire(t(59)).released.is_empty());

    // Past its lease and not yet expired: a leak.
    let leaks = l.detect_leaks(t(70));
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].allocation, leased.allocation);
    assert_eq!(
        leaks[0].reason,
        LeakReason::LeaseExpired { expired_at: t(60) }
    );
    assert_eq!(leaks[0].overdue, Duration::from_secs(10));

    let out = l.expire(t(70));
    assert_eq!(out.released.len(), 1);
    assert_eq!(out.released[0].id, leased.allocation);
    assert!(l.allocation(other.allocation).is_some());
    let out = l.expire(t(110));
    assert_eq!(out.released[0].id, other.allocation);
    assert!(l.is_empty());
}

#[test]
fn expiry_serves_waiting_requests() {
    let mut l = ledger();
    l.request(
        AllocationRequest::new(B, r("cpu=2")).with_lease(Duration::from_secs(5)),
        t(0),
    )
    .unwrap();
    let RequestOutcome::Queued(req) = l
        .request(AllocationRequest::new(B, r("cpu=1")), t(1))
        .unwrap()
    else {
        panic!()
    };
    let out = l.expire(t(5));
    assert_eq!(out.released.len(), 1);
    assert_eq!(out.grants[0].request, Some(req));
}

#[test]
fn allocations_held_after_their_task_finished_are_leaks() {
    let mut l = ledger();
    let g = l
        .try_allocate(
            &AllocationRequest::new(A, r("memory=1Gi")).with_task(TaskId::new(3)),
            t(0),
        )
        .unwrap();
    l.allocate(A, &r("memory=1Gi"), t(0)).unwrap();
    assert!(l.detect_leaks(t(10)).is_empty());
    assert_eq!(l.task_finished(TaskId::new(3), t(20)), 1);
    assert_eq!(l.task_finished(TaskId::new(4), t(20)), 0);
    let leaks = l.detect_leaks(t(80));
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].allocation, g.allocation);
    assert_eq!(leaks[0].task, Some(TaskId::new(3)));
    assert_eq!(
        leaks[0].reason,
        LeakReason::TaskFinished { finished_at: t(20) }
    );
    assert_eq!(leaks[0].overdue, Duration::from_secs(60));
}

#[test]
fn reclaim_idle_releases_only_untouched_allocations() {
    let cfg = LedgerConfig::default().with_idle_after(Duration::from_secs(100));
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=4")).unwrap();
    let idle = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    let busy = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    l.touch(busy, t(90)).unwrap();
    let out = l.reclaim_idle(t(150));
    assert_eq!(
        out.released.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![idle]
    );
    assert!(l.allocation(busy).is_some());
    assert_eq!(l.allocated(A).unwrap(), r("cpu=1"));
}

#[test]
fn heavy_users_are_ranked_by_dominant_share() {
    let mut l = ledger();
    l.allocate(A, &r("cpu=1"), t(0)).unwrap(); // 1/6 of cpu
    l.allocate(B, &r("memory=6Gi"), t(0)).unwrap_err(); // does not fit on B
    l.allocate(B, &r("memory=4Gi"), t(0)).unwrap(); // 4/12 of memory
    l.allocate(A, &r("gpu=1"), t(0)).unwrap(); // 1/2 of gpu
    let heavy = l.heavy_users(5);
    assert_eq!(heavy.len(), 2);
    assert_eq!(heavy[0].agent, A);
    assert_eq!(heavy[0].dominant.as_str(), "gpu");
    assert!((heavy[0].share - 0.5).abs() < 1e-9);
    assert_eq!(heavy[0].allocations, 2);
    assert_eq!(heavy[1].agent, B);
    assert_eq!(l.heavy_users(1).len(), 1);
}

#[test]
fn usage_report_totals_and_renders() {
    let mut l = ledger();
    l.allocate(A, &r("cpu=1,gpu=1"), t(0)).unwrap();
    l.allocate(B, &r("cpu=2"), t(0)).unwrap();
    let report = l.usage_report();
    assert_eq!(report.allocations, 2);
    let cpu = report
        .resources
        .iter()
        .find(|u| u.resource.as_str() == "cpu")
        .unwrap();
    assert_eq!((cpu.capacity, cpu.allocated), (6000, 3000));
    assert!((cpu.utilization - 0.5).abs() < 1e-9);
    assert_eq!(report.agents[1].agent, B);
    assert!((report.agents[1].utilization - 1.0).abs() < 1e-9);
    let text = report.to_string();
    assert!(text.contains("2 allocations"), "{text}");
    assert!(text.contains("gpu"), "{text}");
    let availability = l.availability();
    assert_eq!(availability[0].free, r("cpu=3,memory=8Gi,gpu=1"));
    assert_eq!(availability[1].free, r("memory=4Gi"));
}

#[test]
fn capacity_changes_and_agent_removal() {
    let mut l = ledger();
    l.set_capacity(B, &r("cpu=8,memory=4Gi,tpu=2")).unwrap();
    assert_eq!(l.capacity(B).unwrap(), r("cpu=8,memory=4Gi,tpu=2"));
    l.allocate(B, &r("tpu=2"), t(0)).unwrap();
    let id = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    l.release(id, t(0)).unwrap();
    assert_eq!(l.remove_agent(A).unwrap(), r("cpu=4,memory=8Gi,gpu=2"));
    assert_eq!(l.agents().collect::<Vec<_>>(), vec![B]);
    assert!(matches!(
        l.allocate(A, &r("cpu=1"), t(0)),
        Err(LedgerError::UnknownAgent { .. })
    ));
    // Re-adding works and starts empty.
    l.add_agent(A, &r("cpu=1")).unwrap();
    assert_eq!(l.allocated(A).unwrap(), Resources::new());
}

#[test]
fn snapshot_round_trips_through_json_and_keeps_ids_unique() {
    let cfg = LedgerConfig::default().with_reserve_after(Duration::ZERO);
    let mut l = ResourceLedger::with_config(cfg);
    l.add_agent(A, &r("cpu=4,memory=8Gi,gpu=2")).unwrap();
    l.add_agent(B, &r("cpu=2")).unwrap();
    l.set_pool_limit(&"gpu".parse().unwrap(), Some(2)).unwrap();
    let a1 = l
        .try_allocate(
            &AllocationRequest::new(A, r("cpu=3,gpu=1"))
                .with_lease(Duration::from_secs(30))
                .with_task(TaskId::new(1)),
            t(0),
        )
        .unwrap();
    assert_eq!(l.task_finished(TaskId::new(1), t(5)), 1);
    let _ = l
        .request(
            AllocationRequest::new(A, r("cpu=2")).with_priority(Priority::HIGH),
            t(1),
        )
        .unwrap();
    l.drain(t(1));

    let snap = l.snapshot();
    let json = serde_json::to_string_pretty(&snap).unwrap();
    let back: LedgerSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let mut restored = ResourceLedger::restore(back).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(restored.detect_leaks(t(40)), l.detect_leaks(t(40)));
    assert_eq!(restored.usage_report(), l.usage_report());

    // The restored ledger continues the same way, with fresh ids.
    let g1 = l.expire(t(40));
    let g2 = restored.expire(t(40));
    assert_eq!(g1, g2);
    assert_eq!(g1.released[0].id, a1.allocation);
    let n1 = l.allocate(B, &r("cpu=1"), t(41)).unwrap();
    let n2 = restored.allocate(B, &r("cpu=1"), t(41)).unwrap();
    assert_eq!(n1, n2);
    assert!(n1 > g1.grants[0].allocation);
}

#[test]
fn corrupt_snapshots_are_rejected() {
    let mut l = ledger();
    let id = l.allocate(A, &r("cpu=1"), t(0)).unwrap();
    let good = l.snapshot();

    let mut bad = good.clone();
    bad.version = 99;
    let e = ResourceLedger::restore(bad).unwrap_err();
    assert!(e.to_string().contains("version 99"), "{e}");

    let mut bad = good.clone();
    bad.allocations[0].resources = r("cpu=5");
    assert!(matches!(
        ResourceLedger::restore(bad),
        Err(LedgerError::CorruptSnapshot { .. })
    ));

    let mut bad = good.clone();
    bad.allocations[0].agent = AgentId::new(77);
    let e = ResourceLedger::restore(bad).unwrap_err();
    assert!(e.to_string().contains("agent#77"), "{e}");

    let mut bad = good.clone();
    bad.next_allocation = id.get();
    assert!(matches!(
        ResourceLedger::restore(bad),
        Err(LedgerError::CorruptSnapshot { .. })
    ));

    let mut bad = good.clone();
    let dup = bad.allocations[0].clone();
    bad.allocations.push(dup);
    assert!(matches!(
        ResourceLedger::restore(bad),
        Err(LedgerError::CorruptSnapshot { .. })
    ));

    let mut bad = good.clone();
    let dup = bad.agents[0].clone();
    bad.agents.push(dup);
    assert!(matches!(
        ResourceLedger::restore(bad),
        Err(LedgerError::CorruptSnapshot { .. })
    ));

    // Garbage JSON is a serde error, not a panic.
    assert!(serde_json::from_str::<LedgerSnapshot>("{\"version\": 1}").is_err());
    assert!(ResourceLedger::restore(good).is_ok());
}

/// Found by the simulation: a waiting request whose only candidate was scaled below
/// its needs kept its reservation time as the ledger's next deadline, in the past for
/// good, so a driver sleeping until `next_deadline` would wake at once, forever. Its
/// time is no deadline until capacity comes back.
#[test]
fn a_request_no_candidate_can_hold_sets_no_deadline_until_capacity_returns() {
    let mut l = ResourceLedger::new();
    l.add_agent(A, &r("cpu=4")).unwrap();
    l.allocate(A, &r("cpu=3"), t(0)).unwrap();
    let out = l
        .request(AllocationRequest::new(A, r("cpu=4")), t(0))
        .unwrap();
    assert!(matches!(out, RequestOutcome::Queued(_)), "{out:?}");
    let due = l.next_deadline().expect("a reservation falls due");
    l.set_capacity(A, &r("cpu=3")).unwrap();
    assert_eq!(l.next_deadline(), None, "no candidate could ever hold it");
    assert!(l.drain(due).is_empty());
    assert_eq!(l.next_deadline(), None);
    // Scaled back up: the time it had waited counts again.
    l.set_capacity(A, &r("cpu=8")).unwrap();
    assert_eq!(l.next_deadline(), Some(due));
    assert_eq!(l.drain(due).len(), 1, "it fits now");
}

/// Agents whose capacities sum past `u64::MAX`, with no pool limit: what is allocated
/// on one agent is no bound on another, and a limit set later counts the fleet's
/// allocations exactly.
#[test]
fn capacities_that_sum_past_u64_max_bound_only_their_own_agent() {
    let mut l = ResourceLedger::new();
    let agents = [A, B, AgentId::new(3)];
    for a in agents {
        l.add_agent(a, &r("memory=7Ei")).unwrap();
    }
    let ids: Vec<AllocationId> = agents
        .iter()
        .map(|&a| l.allocate(a, &r("memory=6Ei"), t(1)).unwrap())
        .collect();
    for a in agents {
        assert_eq!(l.free(a).unwrap(), r("memory=1Ei"), "{a}");
    }
    // 18Ei held (past u64::MAX): no limit below it fits, whatever the running total
    // saturated at.
    let err = unchanged(&mut l, |l| {
        l.set_pool_limit(&ResourceName::Memory, Some(15 << 60))
    });
    assert!(matches!(
        err,
        LedgerError::CapacityBelowAllocated {
            allocated: u64::MAX,
            ..
        }
    ));
    l.release(ids[0], t(2)).unwrap();
    // 12Ei held now.
    unchanged(&mut l, |l| {
        l.set_pool_limit(&ResourceName::Memory, Some(11 << 60))
    });
    l.set_pool_limit(&ResourceName::Memory, Some(13 << 60))
        .unwrap();
    assert_eq!(l.pool_available(&ResourceName::Memory), Some(1 << 60));
    assert_eq!(l.free(A).unwrap(), r("memory=1Ei"));
    unchanged(&mut l, |l| l.allocate(A, &r("memory=2Ei"), t(3)));
    l.allocate(A, &r("memory=1Ei"), t(3)).unwrap();
}

/// The ledger's messages give amounts in the units the resource is written in, as
/// `Resources` prints them; the fields keep base units.
#[test]
fn error_messages_give_amounts_in_the_resources_units() {
    let mut l = ledger();
    l.allocate(A, &r("cpu=3"), t(1)).unwrap();
    let short = l.allocate(A, &r("cpu=1500m"), t(1)).unwrap_err();
    assert_eq!(short.to_string(), "agent#1 lacks cpu: needs 1500m, 1 free");
    assert!(matches!(
        short,
        LedgerError::Insufficient {
            needed: 1500,
            free: 1000,
            ..
        }
    ));
    let never = l.allocate(A, &r("memory=16Gi"), t(1)).unwrap_err();
    assert_eq!(
        never.to_string(),
        "agent#1 can never hold 16Gi of memory: capacity is 8Gi"
    );
    let below = l.set_capacity(A, &r("cpu=2,memory=8Gi,gpu=2")).unwrap_err();
    assert_eq!(
        below.to_string(),
        "agent#1 has 3 of cpu allocated; capacity 2 is too small"
    );
}
