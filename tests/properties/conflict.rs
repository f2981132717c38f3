//! Properties of conflict management: detection equals a naive pairwise overlap
//! check; every conflict closes within the policy's bounds whatever the resolvers and
//! the ticks do; no escalation level is skipped except "at once"; the same inputs give
//! the same actions.

use std::time::Duration;

use concord::conflict::{
    ClaimOwner, Conflict, ConflictDetector, ConflictId, ConflictKind, ConflictManager,
    EscalationAction, EscalationLevel, EscalationPolicy, HistoryEvent, Party, Resolution,
};
use concord::{AgentId, Claim, Priority, TaskId, Timestamp};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Few segments from a small alphabet so overlaps are common; sometimes a trailing
    // or leading slash. Segments short and long (past the 16 bytes a trie node keeps
    // inline), some differing only after the 16th byte, some not ASCII.
    (
        prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "b",
                "c",
                "src",
                "x.rs",
                "sixteen-bytes-ok",
                "a-rather-long-segment-name-1",
                "a-rather-long-segment-name-2",
                "répertoire-ünïcode",
            ]),
            1..4,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, lead, trail)| {
            let mut s = segs.join("/");
            if lead {
                s.insert(0, '/');
            }
            if trail {
                s.push('/');
            }
            s
        })
}

fn claims() -> impl Strategy<Value = Vec<(u64, u64, String, bool)>> {
    prop::collection::vec((0u64..4, 0u64..2, name(), any::<bool>()), 0..40)
}

fn segs(s: &str) -> Vec<&str> {
    s.split('/').filter(|x| !x.is_empty()).collect()
}

fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (segs(a), segs(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

type Pair = (u64, u64, String, u64, u64, String);

fn key(c: &Conflict) -> Pair {
    let p = c.parties();
    let r = c.resources();
    let (r0, r1) = (
        r[0].clone(),
        r.get(1).cloned().unwrap_or_else(|| r[0].clone()),
    );
    (
        p[0].task_id().unwrap().get(),
        p[0].agent().unwrap().get(),
        r0,
        p[1].task_id().unwrap().get(),
        p[1].agent().unwrap().get(),
        r1,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn detection_equals_the_naive_pairwise_check(input in claims()) {
        let built: Vec<(ClaimOwner, Claim)> = input
            .iter()
            .map(|(t, a, n, x)| {
                let owner = ClaimOwner::new(TaskId::new(*t), AgentId::new(*a));
                let claim = if *x { Claim::exclusive(n.clone()) } else { Claim::shared(n.clone()) };
                (owner, claim)
            })
            .collect();
        let found = ConflictDetector::detect(
            built.iter().map(|(o, c)| (*o, c, Priority::NORMAL)),
            Timestamp::EPOCH,
        )
        .unwrap();
        let mut got: Vec<Pair> = found.iter().map(key).collect();
        let mut want: Vec<Pair> = Vec::new();
        for (i, (oi, ci)) in built.iter().enumerate() {
            for (oj, cj) in &built[..i] {
                if oi != oj
                    && (ci.is_exclusive() || cj.is_exclusive())
                    && overlap(ci.resource(), cj.resource())
                {
                    want.push((
                        oj.task().get(),
                        oj.agent().get(),
                        segs(cj.resource()).join("/"),
                        oi.task().get(),
                        oi.agent().get(),
                        segs(ci.resource()).join("/"),
                    ));
                }
            }
        }
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn removal_then_detection_matches_a_fresh_detector(input in claims(), cut in 0usize..40) {
        let built: Vec<(ClaimOwner, Claim)> = input
            .iter()
            .map(|(t, a, n, x)| {
                let owner = ClaimOwner::new(TaskId::new(*t), AgentId::new(*a));
                let claim = if *x { Claim::exclusive(n.clone()) } else { Claim::shared(n.clone()) };
                (owner, claim)
            })
            .collect();
        let cut = cut.min(built.len());
        let mut d = ConflictDetector::new();
        for (o, c) in &built {
            d.add_claim(*o, c, Priority::NORMAL, Timestamp::EPOCH).unwrap();
        }
        for (o, c) in &built[..cut] {
            d.remove_claim(*o, c).unwrap();
        }
        prop_assert_eq!(d.len(), built.len() - cut);
        let probe = Claim::exclusive("a");
        let probe_owner = ClaimOwner::new(TaskId::new(99), AgentId::new(99));
        let got = d.add_claim(probe_owner, &probe, Priority::NORMAL, Timestamp::EPOCH).unwrap().len();
        let want = built[cut..].iter().filter(|(_, c)| overlap(c.resource(), "a")).count();
        prop_assert_eq!(got, want);
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Advance the clock by this many minutes, then tick.
    Tick(u64),
    /// Record an answer for conflict `i % open`: 0 success, 1 failure, 2 pending.
    Answer(usize, u8),
    /// Open a new conflict of this kind index.
    Open(usize, u8),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u64..90).prop_map(Step::Tick),
            3 => (0usize..16, 0u8..3).prop_map(|(i, o)| Step::Answer(i, o)),
            2 => (0usize..8, 0u8..6).prop_map(|(k, n)| Step::Open(k, n)),
        ],
        1..60,
    )
}

fn make(id: u64, kind: usize, agents: u8, at: Timestamp) -> Conflict {
    let mut c =
        Conflict::new(ConflictId::new(id), ConflictKind::ALL[kind % 8], at).with_resource("r/x");
    for a in 0..=u64::from(agents) {
        c = c.with_party(
            Party::task(TaskId::new(id * 10 + a))
                .with_agent(AgentId::new(a))
                .with_priority(if a == 0 {
                    Priority::HIGH
                } else {
                    Priority::NORMAL
                }),
        );
    }
    c
}

/// Runs the steps; returns every action, in order, and the manager.
fn run(
    policy: &EscalationPolicy,
    steps: &[Step],
) -> (
    Vec<EscalationAction>,
    ConflictManager,
    Vec<(ConflictId, Timestamp)>,
) {
    let mut m = ConflictManager::new(policy.clone()).unwrap();
    let mut now = Timestamp::from_secs(1_000);
    let mut opened = Vec::new();
    let mut all = Vec::new();
    for s in steps {
        match *s {
            Step::Tick(min) => {
                now = now + Duration::from_secs(min * 60);
                all.extend(m.tick(now));
            }
            Step::Answer(i, o) => {
                if opened.is_empty() {
                    continue;
                }
                let (id, _) = opened[i % opened.len()];
                let r = match o {
                    0 => Resolution::success(None, vec![]),
                    1 => Resolution::failure("resolver failed"),
                    _ => Resolution::pending("no answer", vec![]),
                };
                // Closed conflicts refuse answers; that is fine here.
                if let Ok(a) = m.record_resolution(id, r, now) {
                    all.extend(a);
                }
            }
            Step::Open(k, n) => {
                let id = ConflictId::new(opened.len() as u64 + 1);
                let out = m.open(make(id.get(), k, n, now), now).unwrap();
                all.extend(out.actions);
                opened.push((id, now));
            }
        }
    }
    (all, m, opened)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_conflict_closes_within_the_policy_bounds(
        steps in steps(),
        escalate_on_failure in any::<bool>(),
    ) {
        let policy = EscalationPolicy::default().with_escalate_on_failure(escalate_on_failure);
        let (_, mut m, opened) = run(&policy, &steps);
        for (id, at) in &opened {
            // Just before the bound it may still be open; at the bound it is closed.
            let bound = policy.closes_by(*at);
            m.tick(bound);
            let state = m.state(*id).unwrap();
            prop_assert!(state.is_closed(), "{} is {} at its bound", id, state);
            // And it reached the human no later than `human_after`, unless resolved first.
            let history = m.history(*id).unwrap();
            if let Some(h) = history.iter().find(|h| matches!(h.event, HistoryEvent::Escalated { level: EscalationLevel::Human, .. })) {
                prop_assert!(h.at <= *at + policy.human_after());
            }
            for h in history {
                prop_assert!(h.at <= bound);
            }
        }
        prop_assert_eq!(m.open_count(), 0);
    }

    #[test]
    fn no_level_is_skipped_unless_at_once(steps in steps()) {
        let policy = EscalationPolicy::default();
        let (_, m, opened) = run(&policy, &steps);
        for (id, at) in &opened {
            let mut level: Option<EscalationLevel> = None;
            for h in m.history(*id).unwrap() {
                if let HistoryEvent::Escalated { level: next, reason } = &h.event {
                    let at_once = h.at == *at
                        && matches!(reason, concord::conflict::EscalationReason::CriticalSecurity);
                    match (level, *next) {
                        (None, EscalationLevel::Orchestrator)
                        | (Some(EscalationLevel::Orchestrator), EscalationLevel::Human) => {}
                        (None, EscalationLevel::Human) => prop_assert!(at_once, "{} skipped the orchestrator", id),
                        (l, n) => prop_assert!(false, "{} went from {:?} to {}", id, l, n),
                    }
                    level = Some(*next);
                }
            }
        }
    }

    #[test]
    fn same_inputs_same_actions(steps in steps()) {
        let policy = EscalationPolicy::default();
        let (a, _, _) = run(&policy, &steps);
        let (b, _, _) = run(&policy, &steps);
        prop_assert_eq!(a, b);
    }
}
