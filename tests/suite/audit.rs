//! The audit log and incident records through the public API: the hash chain (every
//! single modification, drop, insertion and reordering detected and located, by
//! proptest), resuming after a restart, stored chains read back from JSON, hostile
//! input; the coordinator's events and the alert manager's notifications as entries;
//! incidents opened by safe mode, a quarantine and a critical alert, their timelines,
//! joining, closing, reviews, replay and snapshots, and their Markdown.

use std::time::Duration;

use concord::alert::{Alert, AlertConfig, AlertManager, Fingerprint, Severity, alerts_from_event};
use concord::audit::{
    AlertStage, AuditConfig, AuditEntry, AuditError, AuditLog, ChainHead, IncidentConfig,
    IncidentId, Incidents, IncidentsSnapshot, PostIncidentReview, SealedEntry, Trigger,
    entries_from_notification, entry_from_event, verify,
};
use concord::coordinator::{Coordinator, Decider, EventKind};
use concord::digest::Digest;
use concord::{
    AgentId, AgentProfile, AgentStatus, Clock, ManualClock, Role, SystemMode, Task, TaskId,
    Timestamp,
};
use proptest::prelude::*;

const MIN: Duration = Duration::from_secs(60);

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn at(i: usize) -> Timestamp {
    t0() + Duration::from_secs(i as u64)
}

/// Seals `entries` into a chain one second apart; the chain and its head.
fn chain(entries: Vec<AuditEntry>) -> (Vec<SealedEntry>, ChainHead) {
    let mut log = AuditLog::new(AuditConfig::default());
    for (i, e) in entries.into_iter().enumerate() {
        log.append(e, at(i));
    }
    let head = log.head();
    (log.drain().collect(), head)
}

/// What a forger can make: an entry sealed in place `seq_before + 1` after `prev`,
/// with its hash computed (anyone can compute SHA-256).
fn forge(seq_before: u64, prev: Digest, entry: AuditEntry, when: Timestamp) -> SealedEntry {
    let mut log = AuditLog::resume(ChainHead::new(seq_before, prev), AuditConfig::default())
        .expect("a head in range");
    log.append(entry, when).clone()
}

/// An entry the generator never makes (its author has a `!`).
fn forged_entry() -> AuditEntry {
    AuditEntry::note("mallory!", "nothing happened here")
}

fn arb_entry() -> impl Strategy<Value = AuditEntry> {
    let text = "\\PC{0,24}";
    let decider = prop_oneof![Just(Decider::Human), Just(Decider::Orchestrator)];
    let mode = prop_oneof![
        Just(SystemMode::Normal),
        Just(SystemMode::SafeMode),
        Just(SystemMode::Recovery)
    ];
    prop_oneof![
        (0u64..50, 0u64..8, text).prop_map(|(t, a, e)| AuditEntry::Assignment {
            task: TaskId::new(t),
            agent: AgentId::new(a),
            explanation: e,
        }),
        (0u64..50, proptest::option::of(0u64..8), text).prop_map(|(t, a, r)| {
            AuditEntry::Refusal {
                task: TaskId::new(t),
                agent: a.map(AgentId::new),
                reason: r,
            }
        }),
        (decider.clone(), text, text, text)
            .prop_map(|(by, s, d, r)| AuditEntry::decision(by, s, d, r)),
        (mode.clone(), mode, text).prop_map(|(f, t, r)| AuditEntry::mode_change(f, t, r)),
        (0u64..8, text).prop_map(|(a, r)| AuditEntry::quarantine(AgentId::new(a), r)),
        (0u64..8, decider.clone(), text).prop_map(|(a, by, r)| AuditEntry::quarantine_released(
            AgentId::new(a),
            by,
            r
        )),
        (decider, "[a-z_]{1,12}", text, text)
            .prop_map(|(by, p, c, r)| AuditEntry::policy_change(by, p, c, r)),
        ("[a-z]{1,8}", text).prop_map(|(a, t)| AuditEntry::note(a, t)),
    ]
}

fn arb_chain() -> impl Strategy<Value = Vec<SealedEntry>> {
    proptest::collection::vec(arb_entry(), 2..24).prop_map(|entries| chain(entries).0)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/audit.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

// ----- the chain --------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// An untouched chain verifies to the log's head, whole, in stretches, and after a
    /// round trip through JSON.
    #[test]
    fn an_untouched_chain_verifies(entries in proptest::collection::vec(arb_entry(), 0..24), cut in 0usize..24) {
        let (stored, head) = chain(entries);
        prop_assert_eq!(verify(&stored, Some(ChainHead::GENESIS)), Ok(head));
        let cut = cut.min(stored.len());
        let first = verify(&stored[..cut], Some(ChainHead::GENESIS)).unwrap();
        prop_assert_eq!(verify(&stored[cut..], Some(first)), Ok(head));
        let json = serde_json::to_string(&stored).unwrap();
        let back: Vec<SealedEntry> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(verify(&back, Some(ChainHead::GENESIS)), Ok(head));
    }

    /// Any field of any entry changed in place is `Modified` at that entry.
    #[test]
    fn a_modified_entry_is_located(mut stored in arb_chain(), k in any::<prop::sample::Index>(), field in 0u8..5) {
        let k = k.index(stored.len());
        let e = &mut stored[k];
        match field {
            0 => e.entry = forged_entry(),
            1 => e.seq = e.seq.wrapping_add(1),
            2 => e.at += Duration::from_millis(1),
            3 => e.prev = Digest::of(b"another predecessor"),
            _ => {
                let mut bytes = *e.hash.as_bytes();
                bytes[k % 32] ^= 1;
                e.hash = Digest::from_bytes(bytes);
            }
        }
        let err = verify(&stored, Some(ChainHead::GENESIS)).unwrap_err();
        prop_assert!(matches!(err, AuditError::Modified { index, .. } if index == k), "{err}");
        prop_assert_eq!(err.index(), Some(k));
    }

    /// An entry rewritten and sealed again breaks the link to the entry after it; the
    /// last one rewritten is seen only against the head kept apart.
    #[test]
    fn a_resealed_entry_breaks_the_next_link(mut stored in arb_chain(), k in any::<prop::sample::Index>()) {
        let n = stored.len();
        let head = stored[n - 1].head();
        let k = k.index(n);
        stored[k] = forge(k as u64, stored[k].prev, forged_entry(), stored[k].at);
        let got = verify(&stored, Some(ChainHead::GENESIS));
        if k + 1 < n {
            let want = (k + 1, k as u64 + 2);
            prop_assert!(
                matches!(got, Err(AuditError::BrokenLink { index, seq, .. }) if (index, seq) == want),
                "{got:?}"
            );
        } else {
            prop_assert_ne!(got.unwrap(), head);
        }
    }

    /// A dropped entry is `Missing` where it should have been; the last one dropped
    /// shows as a head that falls short.
    #[test]
    fn a_dropped_entry_is_located(mut stored in arb_chain(), k in any::<prop::sample::Index>()) {
        let n = stored.len();
        let k = k.index(n);
        stored.remove(k);
        let got = verify(&stored, Some(ChainHead::GENESIS));
        if k + 1 < n {
            prop_assert_eq!(
                got,
                Err(AuditError::Missing { index: k, expected: k as u64 + 1, found: k as u64 + 2 })
            );
        } else {
            prop_assert_eq!(got.unwrap().seq, n as u64 - 1);
        }
    }

    /// A copy of an entry inserted anywhere is `Inserted` at the copy (of two identical
    /// entries side by side, the second counts as the copy).
    #[test]
    fn a_copied_entry_is_located(mut stored in arb_chain(), j in any::<prop::sample::Index>(), k in any::<prop::sample::Index>()) {
        let n = stored.len();
        let (j, k) = (j.index(n), k.index(n + 1));
        let copy = stored[j].clone();
        stored.insert(k, copy);
        let want = if k == j { k + 1 } else { k };
        prop_assert_eq!(
            verify(&stored, Some(ChainHead::GENESIS)),
            Err(AuditError::Inserted { index: want, seq: j as u64 + 1 })
        );
    }

    /// A forged entry sealed into the place of a genuine one is `Inserted` at the
    /// forgery when an entry after it tells which the chain goes on from, `Forked`
    /// when none does; one appended at the end shows only against the head.
    #[test]
    fn a_forged_entry_is_located(mut stored in arb_chain(), m in any::<prop::sample::Index>()) {
        let n = stored.len();
        let head = stored[n - 1].head();
        let m = m.index(n + 1);
        let prev = if m == 0 { Digest::ZERO } else { stored[m - 1].hash };
        stored.insert(m, forge(m as u64, prev, forged_entry(), at(m)));
        let got = verify(&stored, Some(ChainHead::GENESIS));
        if m + 2 <= n {
            prop_assert_eq!(got, Err(AuditError::Inserted { index: m, seq: m as u64 + 1 }));
        } else if m + 1 == n {
            prop_assert_eq!(got, Err(AuditError::Forked { seq: n as u64, first: m, second: m + 1 }));
        } else {
            prop_assert_ne!(got.unwrap(), head);
        }
    }

    /// Garbage inserted (a hash that is not its contents') is located at its index.
    #[test]
    fn inserted_garbage_is_located(mut stored in arb_chain(), m in any::<prop::sample::Index>(), seq in any::<u64>(), hash in any::<[u8; 32]>()) {
        let m = m.index(stored.len() + 1);
        let mut junk = stored[0].clone();
        junk.seq = seq;
        junk.hash = Digest::from_bytes(hash);
        stored.insert(m, junk);
        let err = verify(&stored, Some(ChainHead::GENESIS)).unwrap_err();
        prop_assert!(matches!(err, AuditError::Modified { index, .. } if index == m), "{err}");
    }

    /// Two entries swapped are `Reordered` at the first, naming where the entry due
    /// there is.
    #[test]
    fn swapped_entries_are_located(mut stored in arb_chain(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let n = stored.len();
        let (a, b) = (a.index(n), b.index(n));
        prop_assume!(a != b);
        let (a, b) = (a.min(b), a.max(b));
        stored.swap(a, b);
        prop_assert_eq!(
            verify(&stored, Some(ChainHead::GENESIS)),
            Err(AuditError::Reordered { index: a, found: b as u64 + 1, expected: a as u64 + 1, expected_at: b })
        );
    }

    /// Arbitrary entries (any sequence numbers, hashes, predecessors, times) never make
    /// `verify` panic, and never verify.
    #[test]
    fn garbage_never_verifies_nor_panics(
        stored in arb_chain(),
        junk in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<[u8; 32]>(), any::<[u8; 32]>()), 1..16),
    ) {
        let garbage: Vec<SealedEntry> = junk
            .into_iter()
            .zip(stored.iter().cycle())
            .map(|((seq, at, prev, hash), e)| {
                let mut e = e.clone();
                e.seq = seq;
                e.at = Timestamp::from_nanos(at);
                e.prev = Digest::from_bytes(prev);
                e.hash = Digest::from_bytes(hash);
                e
            })
            .collect();
        for anchor in [None, Some(ChainHead::GENESIS), Some(ChainHead::new(u64::MAX, Digest::ZERO))] {
            prop_assert!(verify(&garbage, anchor).is_err());
        }
    }
}

#[test]
fn an_empty_chain_verifies_to_its_anchor() {
    assert_eq!(verify(&[], None), Ok(ChainHead::GENESIS));
    let head = ChainHead::new(7, Digest::of(b"x"));
    assert_eq!(verify(&[], Some(head)), Ok(head));
}

/// Without an anchor only the links within the slice are checked: a stretch from the
/// middle verifies, and so does a chain whose first entry was dropped.
#[test]
fn without_an_anchor_a_stretch_verifies_on_its_own() {
    let (stored, head) = chain(
        (0..6)
            .map(|i| AuditEntry::note("a", i.to_string()))
            .collect(),
    );
    assert_eq!(verify(&stored[3..], None), Ok(head));
    assert_eq!(verify(&stored[1..], None), Ok(head));
    assert!(matches!(
        verify(&stored[1..], Some(ChainHead::GENESIS)),
        Err(AuditError::Missing {
            index: 0,
            expected: 1,
            found: 2
        })
    ));
    // Anchored elsewhere: the first entry does not continue the anchor.
    let wrong = ChainHead::new(0, Digest::of(b"elsewhere"));
    let err = verify(&stored, Some(wrong)).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::BrokenLink {
                index: 0,
                seq: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("does not follow"), "{err}");
}

#[test]
fn errors_name_the_entry() {
    let (mut stored, _) = chain(
        (0..4)
            .map(|i| AuditEntry::note("a", i.to_string()))
            .collect(),
    );
    stored[2].entry = forged_entry();
    let err = verify(&stored, Some(ChainHead::GENESIS)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("entry #3 (index 2) was modified"),
        "{err}"
    );
    let (mut stored, _) = chain(
        (0..4)
            .map(|i| AuditEntry::note("a", i.to_string()))
            .collect(),
    );
    stored.drain(1..3);
    let err = verify(&stored, Some(ChainHead::GENESIS)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entries #2..#3 are missing before index 1, which holds #4"
    );
    let (mut stored, _) = chain(
        (0..4)
            .map(|i| AuditEntry::note("a", i.to_string()))
            .collect(),
    );
    stored.remove(1);
    assert_eq!(
        verify(&stored, Some(ChainHead::GENESIS))
            .unwrap_err()
            .to_string(),
        "entry #2 is missing before index 1, which holds #3"
    );
    // The crate's error wraps it.
    let wrapped: concord::Error = err.into();
    assert!(wrapped.to_string().contains("missing"));
}

/// A log that restarts from the last stored entry continues the same chain: the
/// stored entries, read back from JSON, verify end to end.
#[test]
fn a_resumed_log_continues_the_chain() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut store = String::new(); // one JSON line per entry
    for i in 0..10 {
        log.append(AuditEntry::note("ops", format!("before {i}")), at(i));
    }
    for e in log.drain() {
        store += &serde_json::to_string(&e).unwrap();
        store.push('\n');
    }
    drop(log); // the process ends

    let stored: Vec<SealedEntry> = store
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let head = verify(&stored, Some(ChainHead::GENESIS)).unwrap();
    assert_eq!(stored.last().unwrap().head(), head);
    let mut log = AuditLog::resume(head, AuditConfig::default()).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.recent().len(), 0);
    for i in 10..15 {
        let sealed = log.append(AuditEntry::note("ops", format!("after {i}")), at(i));
        assert_eq!(sealed.seq, i as u64 + 1);
    }
    for e in log.drain() {
        store += &serde_json::to_string(&e).unwrap();
        store.push('\n');
    }
    let all: Vec<SealedEntry> = store
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 15);
    assert_eq!(verify(&all, Some(ChainHead::GENESIS)), Ok(log.head()));
    // The second stretch alone verifies from the first's head.
    assert_eq!(verify(&all[10..], Some(head)), Ok(log.head()));
}

#[test]
fn a_corrupt_head_is_refused() {
    let err = AuditLog::resume(
        ChainHead::new(u64::MAX, Digest::ZERO),
        AuditConfig::default(),
    )
    .unwrap_err();
    assert_eq!(err, AuditError::HeadOutOfRange { seq: u64::MAX });
    assert!(err.to_string().contains(&u64::MAX.to_string()));
    assert!(
        AuditLog::resume(
            ChainHead::new(1 << 62, Digest::ZERO),
            AuditConfig::default()
        )
        .is_ok()
    );
}

/// Garbage read back from a store is a deserialization error, never a panic.
#[test]
fn garbage_records_do_not_deserialize() {
    for text in [
        "",
        "null",
        "{}",
        r#"{"seq":1,"at":0,"prev":"00","hash":"00","entry":"note"}"#,
        r#"{"seq":-1,"at":0,"prev":"x","hash":"y","entry":{"entry":"note","author":"a","text":"b"}}"#,
        r#"{"seq":1,"at":0,"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000","entry":{"entry":"no_such_kind"}}"#,
    ] {
        assert!(serde_json::from_str::<SealedEntry>(text).is_err(), "{text}");
    }
}

#[test]
fn the_log_keeps_only_what_is_not_drained_and_a_bounded_ring() {
    let mut log = AuditLog::new(AuditConfig::default().with_recent(3));
    for i in 0..5 {
        log.append(AuditEntry::note("a", i.to_string()), at(i));
    }
    assert_eq!(log.pending().len(), 5);
    let recent: Vec<u64> = log.recent().map(|e| e.seq).collect();
    assert_eq!(recent, [3, 4, 5]);
    assert_eq!(log.drain().count(), 5);
    assert!(log.pending().is_empty());
    assert_eq!(log.recent().len(), 3);
    assert_eq!(log.head().seq, 5);
    let none = AuditLog::new(AuditConfig::default().with_recent(0));
    assert_eq!(none.recent().len(), 0);
}

/// The hash covers the value, not how it was stored: the coordinator's events in an
/// evidence entry (scores included) verify after a JSON round trip.
#[test]
fn evidence_survives_a_json_round_trip() {
    let (coordinator, clock) = fleet();
    coordinator
        .assign(Task::new(TaskId::new(1), "build", "build the service"))
        .unwrap();
    clock.advance(MIN);
    let events = coordinator.drain_events();
    let allocations = coordinator.with_ledger(|l| l.allocations());
    assert!(!allocations.is_empty());
    let mut log = AuditLog::new(AuditConfig::default());
    let evidence = AuditEntry::evidence(AgentId::new(1), events, allocations);
    assert!(
        evidence
            .to_string()
            .starts_with("evidence preserved for agent#1: ")
    );
    log.append(evidence, clock.now());
    let stored: Vec<SealedEntry> = log.drain().collect();
    let json = serde_json::to_string_pretty(&stored).unwrap();
    let back: Vec<SealedEntry> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stored);
    assert!(back[0].is_intact());
    assert_eq!(verify(&back, Some(ChainHead::GENESIS)), Ok(log.head()));
}

// ----- entries from the coordinator and the alert manager ------------------------------

fn fleet() -> (Coordinator, ManualClock) {
    let clock = ManualClock::new(t0());
    let coordinator = Coordinator::builder().clock(clock.clone()).build();
    for id in 1..=3 {
        coordinator
            .register_agent(
                AgentProfile::new(AgentId::new(id), format!("w{id}"))
                    .with_capacity("cpu=4,memory=8Gi".parse().unwrap()),
            )
            .unwrap();
    }
    (coordinator, clock)
}

#[test]
fn the_coordinators_decisions_become_entries() {
    let (coordinator, clock) = fleet();
    coordinator
        .assign(Task::new(TaskId::new(1), "build", "build the service"))
        .unwrap();
    // Nobody has the role: refused.
    let task = Task::new(TaskId::new(2), "audit", "review the books")
        .with_requirements(concord::Requirements::new().with_role(Role::new("auditor").unwrap()));
    coordinator.assign(task).unwrap();
    clock.advance(MIN);
    coordinator
        .set_agent_status(AgentId::new(2), AgentStatus::Quarantined)
        .unwrap();
    coordinator
        .set_agent_status(AgentId::new(3), AgentStatus::Offline)
        .unwrap();
    coordinator.set_mode(SystemMode::SafeMode);
    let entries: Vec<AuditEntry> = coordinator
        .drain_events()
        .iter()
        .filter_map(entry_from_event)
        .collect();
    let kinds: Vec<&str> = entries.iter().map(AuditEntry::kind).collect();
    assert_eq!(
        kinds,
        [
            "assignment",
            "refusal",
            "evidence",
            "quarantine",
            "agent_status",
            "mode_change"
        ],
        "{entries:#?}"
    );
    let AuditEntry::Assignment {
        task, explanation, ..
    } = &entries[0]
    else {
        unreachable!()
    };
    assert_eq!(*task, TaskId::new(1));
    assert!(explanation.contains("won"), "{explanation}");
    let AuditEntry::Refusal { reason, .. } = &entries[1] else {
        unreachable!()
    };
    assert!(reason.contains("auditor"), "{reason}");
    // Quarantine by status keeps the agent's evidence, as `quarantine` does.
    assert_eq!(entries[2].agents(), [AgentId::new(2)]);
    assert_eq!(entries[3].agents(), [AgentId::new(2)]);
    assert_eq!(
        entries[5].to_string(),
        "mode changed from normal to safe_mode"
    );
}

#[test]
fn a_page_becomes_one_entry_per_alert_and_a_hold_none() {
    let mut alerts = AlertManager::new(AlertConfig::default()).unwrap();
    let breach = Alert::new("security_breach", Severity::Critical, t0())
        .with_label("agent", "agent#4")
        .with_summary("unexpected outbound traffic");
    alerts.fire(breach.clone(), t0()).unwrap();
    alerts.fire(breach.clone(), t0()).unwrap(); // a duplicate: held back
    alerts.handle_timeout(t0());
    let entries: Vec<AuditEntry> = alerts
        .drain_notifications()
        .flat_map(|n| entries_from_notification(&n))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let AuditEntry::Alert {
        fingerprint,
        severity,
        stage,
        ..
    } = &entries[0]
    else {
        unreachable!()
    };
    assert_eq!(*fingerprint, breach.fingerprint());
    assert_eq!(*severity, Severity::Critical);
    assert!(matches!(stage, AlertStage::Paged { .. }));
    assert_eq!(entries[0].agents(), [AgentId::new(4)]);
    alerts.resolve(breach.fingerprint(), t0() + MIN);
    let resolved: Vec<AuditEntry> = alerts
        .drain_notifications()
        .flat_map(|n| entries_from_notification(&n))
        .collect();
    assert!(matches!(
        &resolved[..],
        [AuditEntry::Alert {
            stage: AlertStage::Resolved { .. },
            ..
        }]
    ));
}

// ----- incidents -------------------------------------------------------------------

/// Feeds the coordinator's events and the alert manager's pages through the log into
/// the tracker, the way a host does.
struct Host {
    coordinator: Coordinator,
    clock: ManualClock,
    alerts: AlertManager,
    log: AuditLog,
    incidents: Incidents,
    stored: Vec<SealedEntry>,
}

impl Host {
    fn new(config: IncidentConfig) -> Self {
        let (coordinator, clock) = fleet();
        Host {
            coordinator,
            clock,
            alerts: AlertManager::new(AlertConfig::default()).unwrap(),
            log: AuditLog::new(AuditConfig::default()),
            incidents: Incidents::new(config),
            stored: Vec::new(),
        }
    }

    fn pump(&mut self) -> Vec<IncidentId> {
        let mut opened = Vec::new();
        for event in self.coordinator.drain_events() {
            if let Some(entry) = entry_from_event(&event) {
                opened.extend(
                    self.incidents
                        .record(&mut self.log, entry, event.at)
                        .unwrap(),
                );
            }
            for change in alerts_from_event(&event) {
                self.alerts.apply(change, event.at).unwrap();
            }
        }
        self.alerts.handle_timeout(self.clock.now());
        let notifications: Vec<_> = self.alerts.drain_notifications().collect();
        for n in notifications {
            for entry in entries_from_notification(&n) {
                opened.extend(self.incidents.record(&mut self.log, entry, n.at).unwrap());
            }
        }
        self.stored.extend(self.log.drain());
        opened
    }
}

#[test]
fn safe_mode_opens_an_incident_with_what_led_up_to_it() {
    let mut host = Host::new(IncidentConfig::default());
    host.coordinator
        .assign(Task::new(TaskId::new(1), "build", "build the service"))
        .unwrap();
    host.clock.advance(MIN);
    host.coordinator
        .set_agent_status(AgentId::new(3), AgentStatus::Offline)
        .unwrap();
    assert!(host.pump().is_empty(), "an agent failure is no incident");
    host.clock.advance(MIN);
    host.coordinator.set_mode(SystemMode::SafeMode);
    let opened = host.pump();
    assert_eq!(
        opened.len(),
        1,
        "safe mode and its critical page: one incident"
    );
    let id = opened[0];
    let incident = host.incidents.get(id).unwrap();
    assert_eq!(incident.severity(), Severity::Critical);
    assert_eq!(
        incident.opened_by(),
        &Trigger::Emergency {
            name: Trigger::SAFE_MODE.to_owned()
        }
    );
    assert!(matches!(
        incident.joined_by(),
        [Trigger::Alert { name, .. }] if name == "safe_mode_entered"
    ));
    let kinds: Vec<&str> = incident.timeline().iter().map(|i| i.entry.kind()).collect();
    // The agent failure before it (the lookback), the mode change, its page; not the
    // routine assignment.
    assert_eq!(
        kinds,
        ["agent_status", "mode_change", "alert"],
        "{incident:#?}"
    );
    assert_eq!(incident.timeline()[1].seq, id.get());
    // Every timeline item is the stored entry, hash and all.
    for item in incident.timeline() {
        let e = &host.stored[item.seq as usize - 1];
        assert_eq!((e.hash, &e.entry), (item.hash, &item.entry));
    }

    // While open, what bears on it joins the timeline; routine work does not.
    host.clock.advance(MIN);
    host.coordinator
        .set_agent_status(AgentId::new(3), AgentStatus::Available)
        .unwrap();
    host.coordinator.set_mode(SystemMode::Normal);
    host.coordinator
        .assign(Task::new(TaskId::new(2), "build", "build it again"))
        .unwrap();
    assert!(host.pump().is_empty());
    let incident = host.incidents.get(id).unwrap();
    let kinds: Vec<&str> = incident.timeline().iter().map(|i| i.entry.kind()).collect();
    assert_eq!(
        kinds,
        [
            "agent_status",
            "mode_change",
            "alert",
            "agent_status",
            "mode_change",
            "alert"
        ],
        "{incident:#?}"
    );

    // Review, close: recorded in the log, on the timeline.
    let now = host.clock.now();
    host.incidents
        .note(&mut host.log, id, "ada", "w3 lost its network", now)
        .unwrap();
    host.incidents
        .review(
            &mut host.log,
            id,
            PostIncidentReview::new("a network partition", "no new work for 3 minutes")
                .with_action("a second network path")
                .with_lesson("safe mode held"),
            now,
        )
        .unwrap();
    host.incidents
        .close(&mut host.log, id, Decider::Human, "all agents back", now)
        .unwrap();
    host.stored.extend(host.log.drain());
    assert_eq!(host.incidents.open_incidents().len(), 0);
    let incident = host.incidents.get(id).unwrap();
    assert!(!incident.is_open());
    assert_eq!(incident.closed_at(), Some(now));
    assert_eq!(
        incident.closed_by(),
        Some((Decider::Human, "all agents back"))
    );
    assert_eq!(incident.review().unwrap().cause(), "a network partition");
    assert_eq!(
        incident.timeline().last().unwrap().entry.kind(),
        "incident_closed"
    );
    assert_eq!(
        verify(&host.stored, Some(ChainHead::GENESIS)),
        Ok(host.log.head())
    );
}

#[test]
fn a_critical_alert_opens_an_incident_naming_its_agent() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let mut alerts = AlertManager::new(AlertConfig::default()).unwrap();
    // Earlier: agent 4 got work, agent 5 too.
    for (agent, task) in [(4, 1), (5, 2)] {
        let entry = AuditEntry::Assignment {
            task: TaskId::new(task),
            agent: AgentId::new(agent),
            explanation: "it fit".to_owned(),
        };
        assert_eq!(incidents.record(&mut log, entry, t0()).unwrap(), None);
    }
    let breach = Alert::new("security_breach", Severity::Critical, t0() + MIN)
        .with_label("agent", "agent#4")
        .with_summary("unexpected outbound traffic");
    alerts.fire(breach.clone(), t0() + MIN).unwrap();
    alerts.handle_timeout(t0() + MIN);
    let mut opened = Vec::new();
    for n in alerts.drain_notifications() {
        for entry in entries_from_notification(&n) {
            opened.extend(incidents.record(&mut log, entry, n.at).unwrap());
        }
    }
    let [id] = opened[..] else {
        panic!("one incident: {opened:?}")
    };
    let incident = incidents.get(id).unwrap();
    assert_eq!(
        incident.opened_by(),
        &Trigger::Alert {
            fingerprint: breach.fingerprint(),
            name: "security_breach".to_owned()
        }
    );
    assert_eq!(
        incident.title(),
        "security_breach: unexpected outbound traffic"
    );
    assert_eq!(incident.agents(), [AgentId::new(4)]);
    // The lookback kept agent 4's assignment, not agent 5's.
    let seqs: Vec<u64> = incident.timeline().iter().map(|i| i.seq).collect();
    assert_eq!(seqs, [1, 3]);

    // A critical alert two hours on is a new incident; its resolution and an
    // escalation of the first join the first.
    let later = t0() + Duration::from_secs(2 * 3600);
    let other = alert_entry(
        "memory_corruption",
        Fingerprint::new(9),
        AlertStage::Paged {
            receiver: "ops".into(),
        },
    );
    let second = incidents
        .record(&mut log, other, later)
        .unwrap()
        .expect("a new incident");
    assert_ne!(second, id);
    let again = alert_entry(
        "security_breach",
        breach.fingerprint(),
        AlertStage::Escalated {
            receiver: "security_team".into(),
            level: 1,
        },
    );
    let again = match again {
        AuditEntry::Alert {
            fingerprint,
            name,
            severity,
            summary,
            stage,
            ..
        } => AuditEntry::Alert {
            fingerprint,
            name,
            severity,
            summary,
            labels: breach.labels().clone(),
            stage,
        },
        _ => unreachable!(),
    };
    assert_eq!(incidents.record(&mut log, again, later).unwrap(), None);
    assert_eq!(incidents.get(id).unwrap().timeline().len(), 3);
    assert_eq!(incidents.open_incidents().len(), 2);
}

fn alert_entry(name: &str, fingerprint: Fingerprint, stage: AlertStage) -> AuditEntry {
    AuditEntry::Alert {
        fingerprint,
        name: name.to_owned(),
        severity: Severity::Critical,
        summary: String::new(),
        labels: Default::default(),
        stage,
    }
}

/// A quarantine opens an incident on the agent; the evidence preserved and the
/// release decision join its timeline, and so does other work of that agent.
#[test]
fn a_quarantine_keeps_its_evidence_and_release_on_the_timeline() {
    let mut host = Host::new(IncidentConfig::default());
    host.coordinator
        .assign(Task::new(TaskId::new(1), "build", "build the service"))
        .unwrap();
    host.pump();
    let agent = host.coordinator.assignments()[0].agent;
    host.clock.advance(MIN);
    host.coordinator
        .complete(TaskId::new(1), true, None)
        .unwrap();
    host.coordinator
        .set_agent_status(agent, AgentStatus::Quarantined)
        .unwrap();
    let events = host.coordinator.drain_events();
    let mut opened = Vec::new();
    for event in &events {
        if let Some(entry) = entry_from_event(event) {
            opened.extend(
                host.incidents
                    .record(&mut host.log, entry, event.at)
                    .unwrap(),
            );
        }
    }
    let [id] = opened[..] else {
        panic!("{opened:?}")
    };
    // The coordinator preserved what the agent did (its evidence entry) before it
    // took the agent's work.
    host.clock.advance(MIN);
    let release = AuditEntry::quarantine_released(agent, Decider::Human, "credentials rotated");
    host.incidents
        .record(&mut host.log, release, host.clock.now())
        .unwrap();

    let incident = host.incidents.get(id).unwrap();
    assert_eq!(incident.severity(), Severity::High);
    assert_eq!(incident.agents(), [agent]);
    assert_eq!(incident.title(), format!("{agent} quarantined"));
    let kinds: Vec<&str> = incident.timeline().iter().map(|i| i.entry.kind()).collect();
    assert_eq!(
        kinds,
        [
            "assignment",
            "evidence",
            "quarantine",
            "quarantine_released"
        ],
        "{incident:#?}"
    );
    let md = incident.to_markdown();
    assert!(
        md.contains("released from quarantine by the human: credentials rotated"),
        "{md}"
    );

    // A second quarantine of the same agent is the same incident.
    let again = AuditEntry::quarantine(agent, "again");
    assert_eq!(
        host.incidents
            .record(&mut host.log, again, host.clock.now())
            .unwrap(),
        None
    );
    assert_eq!(host.incidents.open_incidents().len(), 1);
}

#[test]
fn with_no_join_window_each_emergency_opens_its_own() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default().with_join_window(Duration::ZERO));
    let a = incidents
        .record(&mut log, AuditEntry::quarantine(AgentId::new(1), "x"), t0())
        .unwrap();
    let b = incidents
        .record(&mut log, AuditEntry::quarantine(AgentId::new(2), "y"), t0())
        .unwrap();
    assert!(a.is_some() && b.is_some() && a != b);
    // A repeat still joins.
    assert_eq!(
        incidents
            .record(&mut log, AuditEntry::quarantine(AgentId::new(1), "z"), t0())
            .unwrap(),
        None
    );
    // By hand: always a new one.
    let c = incidents
        .open(
            &mut log,
            "drill",
            Severity::Low,
            Decider::Human,
            "practice",
            t0(),
        )
        .unwrap();
    assert_eq!(
        incidents.get(c).unwrap().opened_by(),
        &Trigger::Manual { by: Decider::Human }
    );
    assert_eq!(incidents.open_incidents().len(), 3);
}

#[test]
fn refused_incident_operations_record_nothing() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default().with_closed_history(1));
    let nowhere = IncidentId::new(42);
    let head = log.head();
    assert_eq!(
        incidents.close(&mut log, nowhere, Decider::Human, "", t0()),
        Err(AuditError::UnknownIncident { incident: nowhere })
    );
    assert_eq!(
        incidents
            .note(&mut log, nowhere, "ada", "hi", t0())
            .unwrap_err()
            .to_string(),
        "no incident#42 is tracked"
    );
    assert!(
        incidents
            .review(&mut log, nowhere, PostIncidentReview::default(), t0())
            .is_err()
    );
    assert_eq!(log.head(), head);

    let id = incidents
        .open(
            &mut log,
            "x",
            Severity::High,
            Decider::Orchestrator,
            "",
            t0(),
        )
        .unwrap();
    incidents
        .close(&mut log, id, Decider::Orchestrator, "done", t0())
        .unwrap();
    let head = log.head();
    assert_eq!(
        incidents.close(&mut log, id, Decider::Human, "again", t0()),
        Err(AuditError::IncidentClosed { incident: id })
    );
    assert_eq!(log.head(), head);
    // Closed incidents are kept within the history: a note still lands.
    incidents
        .note(&mut log, id, "ada", "follow-up done", t0())
        .unwrap();
    let last = incidents.get(id).unwrap().timeline().last().unwrap();
    assert_eq!(
        last.entry.to_string(),
        "note on incident#1 by ada: follow-up done"
    );
    let other = incidents
        .open(&mut log, "y", Severity::High, Decider::Human, "", t0())
        .unwrap();
    incidents
        .close(&mut log, other, Decider::Human, "", t0())
        .unwrap();
    assert_eq!(incidents.get(id), None, "forgotten past the closed history");
    assert_eq!(incidents.closed_incidents().len(), 1);
}

/// The incidents are a function of the log: a new tracker fed the stored entries
/// holds the same; a replayed tail changes nothing; a snapshot restores them.
#[test]
fn replaying_the_log_rebuilds_the_incidents() {
    let mut host = Host::new(IncidentConfig::default());
    host.coordinator
        .set_agent_status(AgentId::new(1), AgentStatus::Offline)
        .unwrap();
    host.coordinator.set_mode(SystemMode::SafeMode);
    host.pump();
    let id = host.incidents.open_incidents().next().unwrap().id();
    let now = host.clock.now();
    host.incidents
        .review(&mut host.log, id, PostIncidentReview::new("c", "i"), now)
        .unwrap();
    host.stored.extend(host.log.drain());

    let mut replayed = Incidents::new(IncidentConfig::default());
    for e in &host.stored {
        replayed.observe(e);
    }
    for e in &host.stored[host.stored.len() / 2..] {
        assert_eq!(replayed.observe(e), None);
    }
    assert_eq!(replayed.snapshot(), host.incidents.snapshot());

    let json = serde_json::to_string(&host.incidents.snapshot()).unwrap();
    let snapshot: IncidentsSnapshot = serde_json::from_str(&json).unwrap();
    let restored = Incidents::restore(snapshot, IncidentConfig::default()).unwrap();
    assert_eq!(restored.snapshot(), host.incidents.snapshot());
    assert_eq!(restored.get(id), host.incidents.get(id));

    // A snapshot from elsewhere: a closed incident listed as open goes with the
    // closed ones.
    let now = host.clock.now();
    host.incidents
        .close(&mut host.log, id, Decider::Human, "over", now)
        .unwrap();
    let mut snapshot = host.incidents.snapshot();
    snapshot.open = std::mem::take(&mut snapshot.closed);
    let restored = Incidents::restore(snapshot, IncidentConfig::default()).unwrap();
    assert_eq!(restored.open_incidents().len(), 0);
    assert_eq!(restored.closed_incidents().len(), 1);
    assert_eq!(restored.snapshot(), host.incidents.snapshot());
}

#[test]
fn a_full_timeline_counts_what_it_leaves_off_but_keeps_its_own_entries() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default().with_max_timeline(3));
    let id = incidents
        .record(&mut log, AuditEntry::quarantine(AgentId::new(1), "x"), t0())
        .unwrap()
        .unwrap();
    for i in 0..5 {
        incidents
            .record(&mut log, AuditEntry::note("ops", i.to_string()), t0())
            .unwrap();
    }
    incidents
        .note(&mut log, id, "ada", "still here", t0())
        .unwrap();
    let incident = incidents.get(id).unwrap();
    assert_eq!(incident.timeline().len(), 4);
    assert_eq!(incident.omitted(), 3);
    assert_eq!(incident.timeline()[3].entry.kind(), "incident_note");
    assert!(
        incident
            .to_markdown()
            .contains("_3 more entries are in the audit log")
    );
}

#[test]
fn the_markdown_has_the_record_the_timeline_and_the_review() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let t = t0();
    let id = incidents
        .record(
            &mut log,
            AuditEntry::mode_change(SystemMode::Normal, SystemMode::SafeMode, "cascade"),
            t,
        )
        .unwrap()
        .unwrap();
    incidents
        .record(
            &mut log,
            AuditEntry::note(
                "mallory",
                "a | b\n# not a heading <script>alert(1)</script>",
            ),
            t + MIN,
        )
        .unwrap();
    let md = incidents.get(id).unwrap().to_markdown();
    assert!(
        md.starts_with(
            "# incident#1: Safe mode entered\n\n- **Severity:** critical\n- **Status:** open\n"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "- **Opened:** 2023-11-14T22:13:20.000Z by emergency `safe_mode` (audit entry #1)"
        ),
        "{md}"
    );
    assert!(md.contains("| time | entry | what |\n|---|---|---|\n| 2023-11-14T22:13:20.000Z | #1 | mode changed from normal to safe_mode: cascade |\n"), "{md}");
    // Hostile text stays in its cell: no new column, line, heading or tag.
    assert!(
        md.contains(
            "| #2 | mallory: a \\| b # not a heading &lt;script&gt;alert(1)&lt;/script&gt; |\n"
        ),
        "{md}"
    );
    assert!(!md.contains("<script>"));
    assert!(
        md.contains("## Post-incident review\n\n_Not written yet._\n"),
        "{md}"
    );

    incidents
        .review(
            &mut log,
            id,
            PostIncidentReview::new("a bad push", "**40 minutes** without deployments")
                .with_action("stage pushes")
                .with_lesson("alerts <fast>"),
            t + 2 * MIN,
        )
        .unwrap();
    incidents
        .close(&mut log, id, Decider::Human, "rolled back", t + 65 * MIN)
        .unwrap();
    let md = incidents.get(id).unwrap().to_markdown();
    assert!(md.contains("- **Status:** closed at 2023-11-14T23:18:20.000Z by the human after 65 min: rolled back\n"), "{md}");
    assert!(md.ends_with(
        "## Post-incident review\n\n### Cause\n\na bad push\n\n### Impact\n\n**40 minutes** without deployments\n\n\
         ### Actions\n\n- stage pushes\n\n### Lessons learned\n\n- alerts &lt;fast&gt;\n"
    ), "{md}");
    assert!(
        md.contains("| post-incident review of incident#1 written |"),
        "{md}"
    );
}

/// Every event kind the coordinator hands out maps (or deliberately does not) without
/// panicking, over a busy scenario.
#[test]
fn every_event_of_a_busy_run_maps() {
    let (coordinator, clock) = fleet();
    for t in 1..=6 {
        coordinator
            .assign(Task::new(TaskId::new(t), "build", "build the service"))
            .unwrap();
    }
    clock.advance(MIN);
    coordinator.complete(TaskId::new(1), true, None).unwrap();
    coordinator
        .set_agent_status(AgentId::new(2), AgentStatus::Offline)
        .unwrap();
    coordinator.tick();
    let events = coordinator.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::TaskCompleted { .. }))
    );
    let mut log = AuditLog::new(AuditConfig::default());
    for e in &events {
        if let Some(entry) = entry_from_event(e) {
            log.append(entry, e.at);
        }
    }
    let stored: Vec<SealedEntry> = log.drain().collect();
    assert!(!stored.is_empty());
    assert_eq!(verify(&stored, Some(ChainHead::GENESIS)), Ok(log.head()));
}

/// Guards the bug where a restored incident claiming `u64::MAX` entries left off its
/// timeline panicked (debug builds) on the next entry it left off.
#[test]
fn a_restored_count_of_entries_left_off_saturates() {
    let config = IncidentConfig::default().with_max_timeline(1);
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(config.clone());
    let id = incidents
        .record(
            &mut log,
            AuditEntry::mode_change(SystemMode::Normal, SystemMode::SafeMode, "drill"),
            t0(),
        )
        .unwrap()
        .unwrap();
    let mut json = serde_json::to_value(incidents.snapshot()).unwrap();
    json["open"][0]["omitted"] = serde_json::json!(u64::MAX);
    let snapshot: IncidentsSnapshot = serde_json::from_value(json).unwrap();
    let mut restored = Incidents::restore(snapshot, config).unwrap();
    restored
        .record(&mut log, AuditEntry::note("ada", "still broken"), t0())
        .unwrap();
    let incident = restored.get(id).unwrap();
    assert_eq!(incident.omitted(), u64::MAX);
    assert!(
        incident
            .to_markdown()
            .contains("_18446744073709551615 more entries")
    );
}

/// Guards the bug where restoring looked each incident up among those kept so far,
/// so that a snapshot of 100,000 open incidents took over half a minute to restore.
#[test]
fn a_snapshot_of_many_incidents_restores_in_n_log_n() {
    let config = IncidentConfig::default().with_max_timeline(1);
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(config.clone());
    incidents
        .record(&mut log, AuditEntry::quarantine(AgentId::new(1), "x"), t0())
        .unwrap();
    // One incident with an empty timeline, so that the test times the restore
    // rather than the JSON.
    let mut one = serde_json::to_value(&incidents.snapshot().open[0]).unwrap();
    one["timeline"] = serde_json::json!([]);
    one.as_object_mut().unwrap().remove("id");
    let one = one.to_string();
    let rest = one.strip_prefix('{').unwrap();
    let n = 100_000;
    let open: Vec<String> = (1..=n).map(|i| format!("{{\"id\":{i},{rest}")).collect();
    let json = format!(
        "{{\"last_seq\":{n},\"open\":[{}],\"closed\":[],\"recent\":[]}}",
        open.join(",")
    );
    let snapshot: IncidentsSnapshot = serde_json::from_str(&json).unwrap();
    // The last one twice: found through the same set of ids, and refused.
    let mut twice = snapshot.clone();
    twice.open.push(twice.open[n as usize - 1].clone());
    assert_eq!(
        Incidents::restore(twice, config.clone()).unwrap_err(),
        AuditError::DuplicateIncident {
            incident: IncidentId::new(n)
        }
    );
    let restored = Incidents::restore(snapshot, config).unwrap();
    assert_eq!(restored.open_incidents().len(), n as usize);
    assert!(restored.get(IncidentId::new(n)).unwrap().is_open());
}

/// Guards the bug where a snapshot holding an incident numbered past its `last_seq`
/// (a tracker paired with another log, or `last_seq` edited) restored, and the log's
/// next entry opened a second incident under the same id: `close` then closed the
/// first one listed, and the new one stayed open.
#[test]
fn a_snapshot_numbered_past_its_last_entry_is_refused() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let id = incidents
        .open(
            &mut log,
            "disk full",
            Severity::High,
            Decider::Human,
            "r",
            t0(),
        )
        .unwrap();
    let note = incidents.note(&mut log, id, "ada", "on it", t0()).unwrap();
    let good = incidents.snapshot();
    assert_eq!((id.get(), note, good.last_seq), (1, 2, 2));
    let restore = |s: IncidentsSnapshot| Incidents::restore(s, IncidentConfig::default());

    // The incident itself is past `last_seq`.
    let mut past = good.clone();
    past.last_seq = 0;
    let err = restore(past).unwrap_err();
    assert_eq!(
        err,
        AuditError::IncidentPastLastSeq {
            incident: id,
            seq: 1,
            last_seq: 0
        }
    );
    assert_eq!(
        err.to_string(),
        "incident#1 holds entry #1, past the last audit entry the snapshot has seen (#0)"
    );
    // An entry on its timeline is, in either list.
    let mut past = good.clone();
    past.last_seq = 1;
    past.closed = std::mem::take(&mut past.open);
    assert_eq!(
        restore(past).unwrap_err(),
        AuditError::IncidentPastLastSeq {
            incident: id,
            seq: 2,
            last_seq: 1
        }
    );
    // An entry kept for the lookback is.
    let mut past = good.clone();
    past.last_seq = 1;
    past.open.clear();
    let err = restore(past).unwrap_err();
    assert_eq!(
        err,
        AuditError::LookbackPastLastSeq {
            seq: 2,
            last_seq: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "lookback entry #2 is past the last audit entry the snapshot has seen (#1)"
    );
    // One incident listed twice, across the two lists: which record holds is unknown.
    let mut twice = good.clone();
    twice.closed = twice.open.clone();
    let err = restore(twice).unwrap_err();
    assert_eq!(err, AuditError::DuplicateIncident { incident: id });
    assert_eq!(
        err.to_string(),
        "incident#1 is listed twice in the incidents snapshot"
    );

    // The snapshot as written restores, and the log's next entry opens a new id:
    // closing it closes it, not the one restored.
    let mut restored = restore(good.clone()).unwrap();
    assert_eq!(restored.snapshot(), good);
    let cpu = restored
        .open(
            &mut log,
            "cpu on fire",
            Severity::Critical,
            Decider::Human,
            "r",
            t0(),
        )
        .unwrap();
    assert_eq!(cpu, IncidentId::new(3));
    restored
        .close(&mut log, cpu, Decider::Human, "fixed cpu", t0())
        .unwrap();
    let open: Vec<&str> = restored.open_incidents().map(|i| i.title()).collect();
    assert_eq!(open, ["disk full"]);
}

/// Guards the bug where, after a restart that left the audit log behind the tracker
/// (the log resumed from the head it last stored, #1, while the tracker's snapshot
/// had seen #2 and #3, lost undrained), the tracker ignored the calls' entries as a
/// replay: `open` returned `incident#2`, another incident ("net down"), and `close`
/// closed that one, or closed nothing and returned `Ok`. Every call that appends
/// now refuses, naming both sequence numbers, and neither the tracker nor the log
/// changes.
#[test]
fn a_log_behind_the_tracker_is_refused_and_changes_nothing() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let (high, human) = (Severity::High, Decider::Human);
    let disk = incidents
        .open(&mut log, "disk full", high, human, "r", t0())
        .unwrap();
    let stored = log.head(); // #1, stored
    let net = incidents
        .open(&mut log, "net down", high, human, "r", at(10))
        .unwrap(); // #2, lost
    incidents
        .note(&mut log, disk, "ops", "looking", at(20))
        .unwrap(); // #3, lost
    let snapshot = incidents.snapshot();

    let mut log = AuditLog::resume(stored, AuditConfig::default()).unwrap();
    let mut restored = Incidents::restore(snapshot.clone(), IncidentConfig::default()).unwrap();
    let behind = AuditError::LogBehind {
        head: 1,
        last_seq: 3,
    };
    assert_eq!(
        behind.to_string(),
        "the audit log's head is #1, behind the last entry the incident tracker has seen (#3)"
    );
    let now = at(60);
    assert_eq!(
        restored.open(&mut log, "cpu on fire", Severity::Critical, human, "r", now),
        Err(behind.clone())
    );
    for id in [disk, net] {
        assert_eq!(
            restored.close(&mut log, id, human, "fixed", now),
            Err(behind.clone())
        );
        assert_eq!(
            restored.note(&mut log, id, "ops", "still looking", now),
            Err(behind.clone())
        );
        let review = PostIncidentReview::new("a full disk", "an hour");
        assert_eq!(
            restored.review(&mut log, id, review, now),
            Err(behind.clone())
        );
    }
    let safe_mode = AuditEntry::mode_change(SystemMode::Normal, SystemMode::SafeMode, "drill");
    assert_eq!(
        restored.record(&mut log, safe_mode, now),
        Err(behind.clone())
    );
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(log.head(), stored);
    assert!(log.pending().is_empty());

    // Level with the tracker (the log resumed from the last entry the tracker has
    // seen), the next entry is a new one: `open` names the incident it opened.
    let mut log = AuditLog::resume(ChainHead::new(3, stored.hash), AuditConfig::default()).unwrap();
    let cpu = restored
        .open(&mut log, "cpu on fire", Severity::Critical, human, "r", now)
        .unwrap();
    assert_eq!(restored.get(cpu).unwrap().title(), "cpu on fire");
    restored.close(&mut log, cpu, human, "fixed", now).unwrap();
    assert!(!restored.get(cpu).unwrap().is_open());
    assert!(restored.get(net).unwrap().is_open());
}

/// Guards the bug where the log sealed entries at whatever time it was given, so
/// that an incident opened at t+1000 s closed at t+10 s, "after 0 ms", and the
/// timeline ran backwards. A time gone back counts as the latest time seen, as the
/// alert manager's does; across a restart too, when the log resumes after the last
/// entry stored.
#[test]
fn times_in_the_log_never_go_back() {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let human = Decider::Human;
    let id = incidents
        .open(&mut log, "disk full", Severity::High, human, "r", at(1000))
        .unwrap();
    incidents
        .close(&mut log, id, human, "fixed", at(10))
        .unwrap();
    let incident = incidents.get(id).unwrap();
    assert_eq!(incident.opened_at(), at(1000));
    assert_eq!(incident.closed_at(), Some(at(1000)));
    assert_eq!(log.latest(), at(1000));
    let stored: Vec<SealedEntry> = log.drain().collect();
    assert_eq!(stored[1].at, at(1000));
    assert_eq!(verify(&stored, Some(ChainHead::GENESIS)), Ok(log.head()));

    // After a restart, from the last entry stored: no earlier than it either.
    let mut log = AuditLog::resume_after(&stored[1], AuditConfig::default()).unwrap();
    assert_eq!(log.head(), stored[1].head());
    assert_eq!(
        log.append(AuditEntry::note("ada", "back"), at(5)).at,
        at(1000)
    );
    assert_eq!(
        log.append(AuditEntry::note("ada", "later"), at(2000)).at,
        at(2000)
    );
    let more: Vec<SealedEntry> = log.drain().collect();
    assert_eq!(verify(&more, Some(stored[1].head())), Ok(log.head()));
    // From a head alone, which holds no time, the next entry is sealed as given.
    let mut log = AuditLog::resume(stored[1].head(), AuditConfig::default()).unwrap();
    assert_eq!(log.latest(), Timestamp::EPOCH);
    assert_eq!(log.append(AuditEntry::note("ada", "back"), at(5)).at, at(5));
}

/// A quarantine, five notable entries, a note on the incident, three more: a
/// timeline of ten items under the default configuration. The entries, and the
/// tracker.
fn a_long_timeline() -> (Vec<SealedEntry>, Incidents) {
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let id = incidents
        .record(&mut log, AuditEntry::quarantine(AgentId::new(1), "x"), t0())
        .unwrap()
        .unwrap();
    for i in 0..5 {
        incidents
            .record(&mut log, AuditEntry::note("ops", i.to_string()), t0())
            .unwrap();
    }
    incidents.note(&mut log, id, "ada", "mine", t0()).unwrap();
    for i in 5..8 {
        incidents
            .record(&mut log, AuditEntry::note("ops", i.to_string()), t0())
            .unwrap();
    }
    assert_eq!(incidents.get(id).unwrap().timeline().len(), 10);
    (log.drain().collect(), incidents)
}

/// Guards the bug where a snapshot restored under a smaller `max_timeline` kept
/// every item of its timelines: memory was bounded by the snapshot, not by the
/// configuration the tracker runs under.
#[test]
fn a_restored_timeline_is_cut_to_the_configuration_as_the_live_one_is() {
    let (stored, incidents) = a_long_timeline();
    let config = IncidentConfig::default().with_max_timeline(3);
    let restored = Incidents::restore(incidents.snapshot(), config.clone()).unwrap();
    let incident = restored.open_incidents().next().unwrap();
    // The first three, then the incident's own note past the cap; six counted.
    let seqs: Vec<u64> = incident.timeline().iter().map(|i| i.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 7]);
    assert_eq!(incident.omitted(), 6);
    // Exactly what a tracker running under the configuration holds.
    let mut replayed = Incidents::new(config.clone());
    for e in &stored {
        replayed.observe(e);
    }
    assert_eq!(restored.snapshot(), replayed.snapshot());
    // And what it writes restores to itself.
    let again = Incidents::restore(restored.snapshot(), config).unwrap();
    assert_eq!(again.snapshot(), restored.snapshot());
}

proptest! {
    #![proptest_config(config(64))]

    /// Restoring a tracker's snapshot under a configuration gives what a tracker
    /// fed the same entries under it holds: the timelines cut the same way, the
    /// same entries counted as left off; and under its own configuration, itself.
    #[test]
    fn a_snapshot_restores_as_a_replay_under_the_new_configuration(
        entries in proptest::collection::vec(arb_entry(), 0..40),
        max in 0usize..6,
    ) {
        let (stored, _) = chain(entries);
        let mut live = Incidents::new(IncidentConfig::default());
        for e in &stored {
            live.observe(e);
        }
        let snapshot = live.snapshot();
        let same = Incidents::restore(snapshot.clone(), IncidentConfig::default()).unwrap();
        prop_assert_eq!(same.snapshot(), snapshot.clone());
        let config = IncidentConfig::default().with_max_timeline(max);
        let mut replayed = Incidents::new(config.clone());
        for e in &stored {
            replayed.observe(e);
        }
        let restored = Incidents::restore(snapshot, config).unwrap();
        prop_assert_eq!(restored.snapshot(), replayed.snapshot());
    }
}

/// Regression: the incident's Markdown escaped the entries' text for a table cell
/// and for HTML but wrote control and invisible characters as they were, so a
/// right-to-left override in a note showed the rest of its timeline row reversed,
/// and a zero-width space, a line separator or a variation selector hid in it, in
/// the timeline, the closing reason and the review alike. Each is a space, as in
/// the dashboard's charts and the maintenance checklist; the review keeps its line
/// breaks.
#[test]
fn the_markdown_shows_control_and_invisible_characters_as_spaces() {
    const HOSTILE: &str = "ops\u{202e}1\u{200b}\u{2028}x\u{fe0f}\u{3164}y";
    const SHOWN: &str = "ops 1  x  y";
    let mut log = AuditLog::new(AuditConfig::default());
    let mut incidents = Incidents::new(IncidentConfig::default());
    let t = t0();
    let id = incidents
        .record(
            &mut log,
            AuditEntry::mode_change(SystemMode::Normal, SystemMode::SafeMode, "cascade"),
            t,
        )
        .unwrap()
        .unwrap();
    incidents
        .record(&mut log, AuditEntry::note("mallory", HOSTILE), t + MIN)
        .unwrap();
    incidents
        .review(
            &mut log,
            id,
            PostIncidentReview::new(format!("{HOSTILE}\nline two\u{1b}[2J"), HOSTILE)
                .with_action(HOSTILE)
                .with_lesson(format!("{HOSTILE}\r\nagain")),
            t + 2 * MIN,
        )
        .unwrap();
    incidents
        .close(&mut log, id, Decider::Human, HOSTILE, t + 3 * MIN)
        .unwrap();
    let md = incidents.get(id).unwrap().to_markdown();
    assert!(md.contains(&format!("| mallory: {SHOWN} |\n")), "{md}");
    assert!(md.contains(&format!("after 3 min: {SHOWN}\n")), "{md}");
    assert!(
        md.contains(&format!(
            "### Cause\n\n{SHOWN}\nline two [2J\n\n### Impact\n\n{SHOWN}\n\n### Actions\n\n- {SHOWN}\n\n### Lessons learned\n\n- {SHOWN}  again\n"
        )),
        "{md}"
    );
    assert!(
        !md.chars()
            .any(|c| c != '\n' && (c.is_control() || HOSTILE.contains(c) && !SHOWN.contains(c))),
        "{md:?}"
    );
}
