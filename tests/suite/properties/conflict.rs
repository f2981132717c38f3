//! Properties of conflict management: detection equals a naive pairwise overlap
//! check; the conflicts a newcomer's claims make, numbered in the order the detector
//! reports them, do not depend on the detector's history; every conflict closes within the policy's bounds whatever the resolvers and
//! the ticks do; no escalation level is skipped except "at once"; the same inputs give
//! the same actions; a manager restored from a snapshot taken at any point carries on
//! exactly as the uninterrupted one, and a tampered snapshot is refused or restored,
//! never a panic; a detector that claimed and released names answers as a fresh one
//! holding only the live claims.

use std::time::Duration;

use concord::conflict::{
    ClaimOwner, Collision, Conflict, ConflictDetector, ConflictError, ConflictId, ConflictKind,
    ConflictManager, ConflictManagerSnapshot, ConflictState, EscalationAction, EscalationLevel,
    EscalationPolicy, HistoryEvent, Party, Resolution,
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

use super::reference::{overlap, segs};

/// A claim held: its owner, name and mode, the owner's priority and when it was taken.
#[derive(Debug, Clone)]
struct Held {
    owner: ClaimOwner,
    claim: Claim,
    priority: Priority,
    since: Timestamp,
}

impl Held {
    fn take(&self, d: &mut ConflictDetector) {
        d.add_claim(self.owner, &self.claim, self.priority, self.since)
            .unwrap();
    }
}

/// Claims held by a few tasks, some on two agents, some the same claim twice with
/// another priority or time: every field a collision reports varies.
fn held() -> impl Strategy<Value = Vec<Held>> {
    prop::collection::vec(
        (0u64..4, 0u64..2, name(), any::<bool>(), 0u32..3, 0u64..3),
        0..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(t, a, n, x, p, at)| Held {
                owner: ClaimOwner::new(TaskId::new(t), AgentId::new(a)),
                claim: if x {
                    Claim::exclusive(n)
                } else {
                    Claim::shared(n)
                },
                priority: Priority(p),
                since: Timestamp::from_secs(at),
            })
            .collect()
    })
}

type Pair = (u64, u64, String, u64, u64, String);

fn key(c: &Collision) -> Pair {
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

    /// A coordinator numbers the conflicts it opens in the order the detector reports
    /// them, and a restored one takes its running tasks' claims again in another
    /// order, on a detector that never saw the names claimed and released before: the
    /// numbering must not depend on either.
    #[test]
    fn numbering_depends_only_on_the_claims_held(
        (held, shuffled) in held().prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle())),
        gone in claims(),
        newcomer in prop::collection::vec((name(), any::<bool>()), 1..4),
    ) {
        let newcomer: Vec<Claim> = newcomer
            .into_iter()
            .map(|(n, x)| if x { Claim::exclusive(n) } else { Claim::shared(n) })
            .collect();
        let numbered = |mut d: ConflictDetector| -> Vec<Conflict> {
            let owner = ClaimOwner::new(TaskId::new(99), AgentId::new(99));
            d.add_claims(owner, &newcomer, Priority::NORMAL, Timestamp::from_secs(9))
                .unwrap()
                .into_iter()
                .zip(1..)
                .map(|(c, id)| c.into_conflict(ConflictId::new(id)))
                .collect()
        };
        let mut fresh = ConflictDetector::new();
        for h in &held {
            h.take(&mut fresh);
        }
        // Claims of tasks that are gone by the newcomer (other tasks than the held
        // ones'), released half way through: other trie nodes and slots, reused.
        let gone: Vec<(ClaimOwner, Claim)> = gone
            .into_iter()
            .map(|(t, a, n, x)| {
                let owner = ClaimOwner::new(TaskId::new(10 + t), AgentId::new(a));
                (owner, if x { Claim::exclusive(n) } else { Claim::shared(n) })
            })
            .collect();
        let mut used = ConflictDetector::new();
        for (o, c) in &gone {
            used.add_claim(*o, c, Priority::LOW, Timestamp::EPOCH).unwrap();
        }
        let (before, after) = shuffled.split_at(shuffled.len() / 2);
        for h in before {
            h.take(&mut used);
        }
        for (o, c) in &gone {
            used.remove_claim(*o, c).unwrap();
        }
        for h in after {
            h.take(&mut used);
        }
        prop_assert_eq!(used.len(), fresh.len());
        prop_assert_eq!(numbered(used), numbered(fresh));
    }

    /// Releasing a name's last claim frees its trie nodes (and their edges and text)
    /// for reuse; after any mix of claims and releases, every probe gets exactly the
    /// collisions a fresh detector holding only the live claims reports.
    #[test]
    fn claims_and_releases_answer_as_a_fresh_detector(
        ops in prop::collection::vec((held(), prop::collection::vec(0usize..64, 0..20)), 1..6),
        probes in prop::collection::vec((name(), any::<bool>()), 1..4),
    ) {
        let mut d = ConflictDetector::new();
        let mut live: Vec<Held> = Vec::new();
        for (add, release) in ops {
            for h in add {
                // Which of two equal claims of one owner a release takes is not
                // specified (their priority or time may differ): hold one at most.
                let same = |l: &Held| {
                    l.owner == h.owner
                        && l.claim.mode() == h.claim.mode()
                        && segs(l.claim.resource()) == segs(h.claim.resource())
                };
                if !live.iter().any(same) {
                    h.take(&mut d);
                    live.push(h);
                }
            }
            for i in release {
                if live.is_empty() {
                    break;
                }
                let h = live.remove(i % live.len());
                d.remove_claim(h.owner, &h.claim).unwrap();
            }
            let mut fresh = ConflictDetector::new();
            for h in &live {
                h.take(&mut fresh);
            }
            prop_assert_eq!(d.len(), live.len());
            let owner = ClaimOwner::new(TaskId::new(99), AgentId::new(99));
            for (n, x) in &probes {
                let probe = if *x { Claim::exclusive(n.clone()) } else { Claim::shared(n.clone()) };
                let at = Timestamp::from_secs(9);
                let got = d.add_claim(owner, &probe, Priority::NORMAL, at).unwrap();
                let want = fresh.add_claim(owner, &probe, Priority::NORMAL, at).unwrap();
                prop_assert_eq!(got, want);
                d.remove_claim(owner, &probe).unwrap();
                fresh.remove_claim(owner, &probe).unwrap();
            }
        }
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

/// The host's side of a run: the clock and the conflicts opened so far.
struct Host {
    now: Timestamp,
    opened: Vec<(ConflictId, Timestamp)>,
}

impl Host {
    fn new() -> Self {
        Host {
            now: Timestamp::from_secs(1_000),
            opened: Vec::new(),
        }
    }

    /// Applies one step to `m`; returns the actions it gave.
    fn step(&mut self, m: &mut ConflictManager, s: &Step) -> Vec<EscalationAction> {
        match *s {
            Step::Tick(min) => {
                self.now += Duration::from_secs(min * 60);
                m.tick(self.now)
            }
            Step::Answer(i, o) => {
                if self.opened.is_empty() {
                    return Vec::new();
                }
                let (id, _) = self.opened[i % self.opened.len()];
                let r = match o {
                    0 => Resolution::success(None, vec![]),
                    1 => Resolution::failure("resolver failed"),
                    _ => Resolution::pending("no answer", vec![]),
                };
                // Closed conflicts refuse answers; that is fine here.
                m.record_resolution(id, r, self.now).unwrap_or_default()
            }
            Step::Open(k, n) => {
                let id = ConflictId::new(self.opened.len() as u64 + 1);
                let out = m.open(make(id.get(), k, n, self.now), self.now).unwrap();
                self.opened.push((id, self.now));
                out.actions
            }
        }
    }
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
    let mut host = Host::new();
    let mut all = Vec::new();
    for s in steps {
        all.extend(host.step(&mut m, s));
    }
    (all, m, host.opened)
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

/// The seed's ladder with a chosen safe-mode threshold, so that runs request (and
/// stand down) safe mode often.
fn policy(escalate_on_failure: bool, safe_mode_failed_agents: usize) -> EscalationPolicy {
    EscalationPolicy::default()
        .with_escalate_on_failure(escalate_on_failure)
        .with_safe_mode_failed_agents(safe_mode_failed_agents)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_restored_manager_carries_on_exactly_as_the_uninterrupted_one(
        steps in steps(),
        cut in 0usize..60,
        escalate_on_failure in any::<bool>(),
        safe_mode_failed_agents in 1usize..5,
    ) {
        let policy = policy(escalate_on_failure, safe_mode_failed_agents);
        let cut = cut.min(steps.len());
        let mut m = ConflictManager::new(policy.clone()).unwrap();
        let mut host = Host::new();
        for s in &steps[..cut] {
            host.step(&mut m, s);
        }
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let snapshot: ConflictManagerSnapshot = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&snapshot, &m.snapshot());
        let mut r = ConflictManager::restore(policy, snapshot).unwrap();
        prop_assert_eq!(r.snapshot(), m.snapshot());

        // The same remaining calls, on both; `host` and `twin` see the same clock.
        let mut twin = Host { now: host.now, opened: host.opened.clone() };
        for (i, s) in steps[cut..].iter().enumerate() {
            let want = host.step(&mut m, s);
            let got = twin.step(&mut r, s);
            prop_assert_eq!(got, want, "step {} after the cut: {:?}", i, s);
            prop_assert_eq!(r.open_count(), m.open_count());
            prop_assert_eq!(r.next_deadline(), m.next_deadline());
            prop_assert_eq!(r.awaiting_resolution(), m.awaiting_resolution());
        }
        // Until everything closes.
        let end = host.now + Duration::from_secs(24 * 3600);
        prop_assert_eq!(r.tick(end), m.tick(end));
        for (id, _) in &host.opened {
            prop_assert_eq!(r.state(*id), m.state(*id));
            prop_assert_eq!(r.history(*id), m.history(*id));
        }
        prop_assert_eq!(r.metrics(), m.metrics());
        prop_assert_eq!(r.snapshot(), m.snapshot());
    }

    #[test]
    fn a_tampered_snapshot_is_refused_or_restored_never_a_panic(
        steps in steps(),
        edits in prop::collection::vec((0usize..16, 0u8..6, any::<u64>()), 1..4),
    ) {
        let policy = policy(true, 2);
        let (_, m, _) = run(&policy, &steps);
        let mut s = m.snapshot();
        let ids: Vec<ConflictId> = s.entries.keys().copied().collect();
        for (i, field, v) in edits {
            if ids.is_empty() {
                s.seq = v;
                continue;
            }
            let id = ids[i % ids.len()];
            let Some(r) = s.entries.get_mut(&id) else { continue };
            match field {
                0 => r.state = [
                    ConflictState::Open,
                    ConflictState::Resolving,
                    ConflictState::Escalated(EscalationLevel::Orchestrator),
                    ConflictState::Escalated(EscalationLevel::Human),
                    ConflictState::Resolved,
                ][(v % 5) as usize],
                1 => r.human_deadline = (v % 2 == 0).then_some(Timestamp::from_nanos(v)),
                2 => r.seq = v % 70,
                3 => r.opened_at = Timestamp::from_nanos(v),
                4 => r.generation = v as u32,
                _ => {
                    let r = s.entries.remove(&id).unwrap();
                    s.entries.insert(ConflictId::new(v % 70), r);
                }
            }
        }
        match ConflictManager::restore(policy, s) {
            Ok(mut r) => {
                // Whatever was accepted runs to the end like any manager.
                let _ = r.tick(Timestamp::MAX);
                prop_assert_eq!(r.open_count(), 0);
            }
            Err(e) => prop_assert!(matches!(e, ConflictError::CorruptSnapshot { .. }), "{}", e),
        }
    }
}
