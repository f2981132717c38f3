//! Conflict management through the public API: detection, assessment routes, each
//! resolution strategy, the escalation ladder on a manual clock, human deadlines,
//! metrics, snapshot and restore, and errors.

use std::time::Duration;

use concord::conflict::{
    Assessment, AssessmentRules, ClaimOwner, Collision, Conflict, ConflictDetector, ConflictError,
    ConflictId, ConflictKind, ConflictManager, ConflictManagerSnapshot, ConflictState,
    EscalationAction, EscalationLevel, EscalationPolicy, EscalationReason, HistoryEvent,
    HumanDecision, Party, Resolution, ResolutionAction, Route, RuleAssessor, Severity, Strategy,
};
use concord::{
    AgentId, Claim, Clock, ConflictAssessor, ConflictResolver, ManualClock, Priority, TaskId,
    Timestamp,
};

const MIN: Duration = Duration::from_secs(60);

fn owner(n: u64) -> ClaimOwner {
    ClaimOwner::new(TaskId::new(n), AgentId::new(n))
}

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn add(d: &mut ConflictDetector, who: u64, claim: Claim) -> Vec<Collision> {
    d.add_claim(owner(who), &claim, Priority::NORMAL, t0())
        .unwrap()
}

// ---- detection ----

#[test]
fn two_shared_claims_never_conflict() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::shared("repo/src/a.rs")).is_empty());
    assert!(add(&mut d, 2, Claim::shared("repo/src/a.rs")).is_empty());
    assert!(add(&mut d, 3, Claim::shared("repo/")).is_empty());
    assert_eq!(d.len(), 3);
}

#[test]
fn exclusive_on_the_same_name_is_contention() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::exclusive("port/8080")).is_empty());
    let found = add(&mut d, 2, Claim::exclusive("port/8080"));
    assert_eq!(found.len(), 1);
    let c = &found[0];
    assert_eq!(c.kind(), ConflictKind::ResourceContention);
    assert_eq!(c.resources(), ["port/8080"]);
    assert_eq!(c.parties()[0].task_id(), Some(TaskId::new(1)));
    assert_eq!(c.parties()[1].task_id(), Some(TaskId::new(2)));
    assert_eq!(c.holder().agent(), Some(AgentId::new(1)));
    assert_eq!(c.claimant().agent(), Some(AgentId::new(2)));
    // Numbered by whoever opens it.
    let c = c.clone().into_conflict(ConflictId::new(7));
    assert_eq!(c.id(), ConflictId::new(7));
    assert_eq!(c.resources(), ["port/8080"]);
    assert_eq!(c.agents(), vec![AgentId::new(1), AgentId::new(2)]);
}

#[test]
fn exclusive_and_shared_on_the_same_name_conflict_either_way() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::shared("env/staging")).is_empty());
    assert_eq!(add(&mut d, 2, Claim::exclusive("env/staging")).len(), 1);
    assert_eq!(add(&mut d, 3, Claim::shared("env/staging")).len(), 1);
}

#[test]
fn a_directory_claim_overlaps_the_files_under_it() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::shared("repo/src/a.rs")).is_empty());
    assert!(add(&mut d, 2, Claim::exclusive("repo/docs/x.md")).is_empty());
    // An exclusive claim on the directory collides with both files below it.
    let found = add(&mut d, 3, Claim::exclusive("repo/"));
    assert_eq!(found.len(), 2);
    assert!(
        found
            .iter()
            .all(|c| c.kind() == ConflictKind::OverlappingClaims)
    );
    // And a file claimed under it later collides with the directory (ancestor).
    let found = add(&mut d, 4, Claim::shared("repo/src/b.rs"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].resources(), ["repo", "repo/src/b.rs"]);
}

#[test]
fn sibling_names_and_prefixes_of_segments_do_not_overlap() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::exclusive("port/8080")).is_empty());
    assert!(add(&mut d, 2, Claim::exclusive("port/80")).is_empty());
    assert!(add(&mut d, 3, Claim::exclusive("host/db-1")).is_empty());
    assert!(add(&mut d, 4, Claim::exclusive("host/db-10")).is_empty());
}

#[test]
fn claims_of_one_owner_never_conflict() {
    let mut d = ConflictDetector::new();
    assert!(add(&mut d, 1, Claim::exclusive("repo/")).is_empty());
    assert!(add(&mut d, 1, Claim::exclusive("repo/src/a.rs")).is_empty());
    // Same task on another agent is another owner.
    let other = ClaimOwner::new(TaskId::new(1), AgentId::new(9));
    let found = d
        .add_claim(other, &Claim::exclusive("repo/x"), Priority::NORMAL, t0())
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[test]
fn removing_a_claim_ends_its_conflicts() {
    let mut d = ConflictDetector::new();
    add(&mut d, 1, Claim::exclusive("repo/src"));
    d.remove_claim(owner(1), &Claim::exclusive("repo/src/"))
        .unwrap();
    assert!(d.is_empty());
    assert!(add(&mut d, 2, Claim::exclusive("repo/src/a.rs")).is_empty());
    assert!(add(&mut d, 3, Claim::exclusive("repo")).len() == 1);
}

#[test]
fn removing_an_unknown_claim_is_a_typed_error_and_changes_nothing() {
    let mut d = ConflictDetector::new();
    add(&mut d, 1, Claim::exclusive("repo/a"));
    for (who, claim) in [
        (2, Claim::exclusive("repo/a")),
        (1, Claim::shared("repo/a")),
        (1, Claim::exclusive("repo/b")),
        (1, Claim::exclusive("repo")),
    ] {
        let err = d.remove_claim(owner(who), &claim).unwrap_err();
        assert!(matches!(err, ConflictError::UnknownClaim { .. }), "{err}");
    }
    assert_eq!(d.len(), 1);
    assert_eq!(add(&mut d, 3, Claim::shared("repo/a/b")).len(), 1);
}

#[test]
fn empty_claims_are_refused() {
    let mut d = ConflictDetector::new();
    for name in ["", "/", "///"] {
        let err = d
            .add_claim(owner(1), &Claim::exclusive(name), Priority::NORMAL, t0())
            .unwrap_err();
        assert_eq!(
            err,
            ConflictError::EmptyClaim {
                resource: name.into()
            }
        );
    }
    assert!(d.is_empty());
}

#[test]
fn batch_detection_reports_each_pair_once() {
    let claims = [
        (owner(1), Claim::exclusive("repo/"), Priority::NORMAL),
        (owner(2), Claim::shared("repo/a"), Priority::HIGH),
        (owner(3), Claim::shared("repo/b"), Priority::LOW),
        (owner(4), Claim::exclusive("port/8080"), Priority::NORMAL),
    ];
    let found = ConflictDetector::detect(claims.iter().map(|(o, c, p)| (*o, c, *p)), t0()).unwrap();
    assert_eq!(found.len(), 2);
    // Claim by claim, in input order: task 2's collision, then task 3's.
    let claimants: Vec<_> = found.iter().map(|c| c.claimant().task_id()).collect();
    assert_eq!(claimants, [Some(TaskId::new(2)), Some(TaskId::new(3))]);
    assert_eq!(found[0].parties()[1].priority(), Priority::HIGH);
}

#[test]
fn a_tasks_claims_are_held_all_or_none_and_their_collisions_come_by_holder() {
    let mut d = ConflictDetector::new();
    add(&mut d, 3, Claim::exclusive("repo/a"));
    add(&mut d, 2, Claim::exclusive("repo/b"));
    add(&mut d, 1, Claim::shared("repo/b"));
    let claims = [Claim::shared("repo/a"), Claim::exclusive("repo/b")];
    // One claim names nothing: none is held, the others no more than that one.
    let refused = [claims[0].clone(), Claim::exclusive("/")];
    let err = d
        .add_claims(owner(9), &refused, Priority::NORMAL, t0())
        .unwrap_err();
    assert!(matches!(err, ConflictError::EmptyClaim { .. }), "{err}");
    assert_eq!(d.len(), 3);
    // By holder, whichever claim met it.
    let found = d
        .add_claims(owner(9), &claims, Priority::NORMAL, t0())
        .unwrap();
    let holders: Vec<_> = found.iter().map(|c| c.holder().task_id()).collect();
    assert_eq!(holders, [1, 2, 3].map(|t| Some(TaskId::new(t))));
    assert_eq!(d.len(), 5);
}

// ---- assessment ----

fn conflict(id: u64, kind: ConflictKind, parties: &[(u64, Priority)]) -> Conflict {
    let mut c = Conflict::new(ConflictId::new(id), kind, t0());
    for (i, (n, p)) in parties.iter().enumerate() {
        c = c.with_party(
            Party::task(TaskId::new(*n))
                .with_agent(AgentId::new(*n))
                .with_priority(*p)
                .with_since(t0() + Duration::from_secs(i as u64)),
        );
    }
    c.with_resource("port/8080")
}

#[test]
fn assessment_routes_follow_the_seed() {
    let a = RuleAssessor::default();
    let normal = [(1, Priority::NORMAL), (2, Priority::NORMAL)];
    let cases = [
        (
            ConflictKind::SecurityIncident,
            Severity::Critical,
            Route::EscalateNow,
        ),
        (
            ConflictKind::PolicyViolation,
            Severity::High,
            Route::AutomaticResolution,
        ),
        (
            ConflictKind::ResourceContention,
            Severity::Medium,
            Route::RoutineQueue,
        ),
        (
            ConflictKind::DuplicateWork,
            Severity::Low,
            Route::RoutineQueue,
        ),
    ];
    for (kind, severity, route) in cases {
        let got = a.assess(&conflict(1, kind, &normal));
        assert_eq!((got.severity, got.route), (severity, route), "{kind}");
        assert!(!got.reasons.is_empty());
    }
}

#[test]
fn priority_and_impact_raise_severity() {
    let a = RuleAssessor::default();
    let urgent = conflict(
        1,
        ConflictKind::ResourceContention,
        &[(1, Priority::CRITICAL), (2, Priority::LOW)],
    );
    assert_eq!(a.assess(&urgent).severity, Severity::High);
    let wide: Vec<(u64, Priority)> = (1..=5).map(|n| (n, Priority::NORMAL)).collect();
    let wide = conflict(2, ConflictKind::PolicyViolation, &wide);
    assert_eq!(a.assess(&wide).route, Route::EscalateNow);
}

#[test]
fn assessment_rules_are_serde_data() {
    let json = r#"{"base":[["duplicate_work","critical"]],"wide_impact_agents":0}"#;
    let rules: AssessmentRules = serde_json::from_str(json).unwrap();
    let a = RuleAssessor::new(rules);
    let c = conflict(1, ConflictKind::DuplicateWork, &[(1, Priority::NORMAL)]);
    assert_eq!(a.assess(&c).severity, Severity::Critical);
    let other = conflict(2, ConflictKind::Disagreement, &[(1, Priority::NORMAL)]);
    assert_eq!(a.assess(&other).severity, Severity::Medium);
}

// ---- strategies ----

fn pair(p1: Priority, p2: Priority) -> Conflict {
    conflict(1, ConflictKind::ResourceContention, &[(1, p1), (2, p2)])
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn priority_wins_and_ties_fail() {
    let r = block(Strategy::PriorityWins.resolve(&pair(Priority::LOW, Priority::HIGH)));
    assert!(r.successful());
    assert_eq!(r.winner().and_then(|p| p.task_id()), Some(TaskId::new(2)));
    assert!(matches!(
        r.actions()[1],
        ResolutionAction::RejectClaim { party } if party.task_id() == Some(TaskId::new(1))
    ));
    let tie = Strategy::PriorityWins.apply(&pair(Priority::HIGH, Priority::HIGH));
    assert!(!tie.successful() && !tie.is_pending());
    assert!(tie.failure_reason().unwrap().contains("tie"));
}

#[test]
fn first_come_first_served_picks_the_earliest() {
    let r = Strategy::FirstComeFirstServed.apply(&pair(Priority::LOW, Priority::CRITICAL));
    assert_eq!(r.winner().and_then(|p| p.task_id()), Some(TaskId::new(1)));
}

#[test]
fn preemption_requeues_the_lower_priority_task() {
    let r = Strategy::PreemptLowerPriority.apply(&pair(Priority::HIGH, Priority::LOW));
    assert!(r.successful());
    assert!(r.actions().contains(&ResolutionAction::Requeue {
        task: TaskId::new(2),
        party: pair(Priority::HIGH, Priority::LOW).parties()[1],
    }));
    let agents_only = Conflict::new(ConflictId::new(2), ConflictKind::Disagreement, t0())
        .with_party(Party::agent_only(AgentId::new(1)).with_priority(Priority::HIGH))
        .with_party(Party::agent_only(AgentId::new(2)));
    assert!(
        !Strategy::PreemptLowerPriority
            .apply(&agents_only)
            .successful()
    );
}

#[test]
fn serialize_queues_the_later_behind_the_earlier() {
    let c = pair(Priority::NORMAL, Priority::NORMAL);
    let r = Strategy::Serialize.apply(&c);
    assert!(r.successful());
    assert_eq!(
        r.actions()[1],
        ResolutionAction::WaitBehind {
            party: c.parties()[1],
            behind: c.parties()[0],
        }
    );
}

#[test]
fn share_needs_every_exclusive_claim_to_allow_it() {
    let mut d = ConflictDetector::new();
    add(&mut d, 1, Claim::exclusive("env/staging"));
    let mut c = add(&mut d, 2, Claim::shared("env/staging"))
        .remove(0)
        .into_conflict(ConflictId::new(1));
    assert!(!Strategy::Share.apply(&c).successful());
    c.parties_mut()[0] = c.parties()[0].with_shareable(true);
    let r = Strategy::Share.apply(&c);
    assert!(r.successful());
    assert_eq!(
        r.actions(),
        [ResolutionAction::Share {
            party: c.parties()[0]
        }]
    );
}

#[test]
fn split_narrows_the_broader_claim_of_nested_names_only() {
    let mut d = ConflictDetector::new();
    add(&mut d, 1, Claim::exclusive("repo"));
    let nested = add(&mut d, 2, Claim::exclusive("repo/src/a.rs"))
        .remove(0)
        .into_conflict(ConflictId::new(1));
    let r = Strategy::Split.apply(&nested);
    assert!(r.successful());
    assert_eq!(
        r.actions(),
        [ResolutionAction::Narrow {
            party: nested.parties()[0],
            resource: "repo/src/a.rs".into()
        }]
    );
    let same = pair(Priority::NORMAL, Priority::NORMAL);
    assert!(!Strategy::Split.apply(&same).successful());
}

#[test]
fn asking_a_human_stays_pending() {
    let r = Strategy::AskHuman.apply(&pair(Priority::LOW, Priority::HIGH));
    assert!(r.is_pending() && !r.successful());
    assert_eq!(r.actions(), [ResolutionAction::AwaitHuman]);
}

#[test]
fn resolution_and_policy_are_serde_data() {
    let r = Strategy::PriorityWins.apply(&pair(Priority::LOW, Priority::HIGH));
    let back: Resolution = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    let p: EscalationPolicy = serde_json::from_str(r#"{"default_decision":"approve"}"#).unwrap();
    assert_eq!(p.default_decision(), HumanDecision::Approve);
    assert_eq!(p.human_after(), Duration::from_secs(7200));
    let c = pair(Priority::LOW, Priority::HIGH);
    let back: Conflict = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

// ---- escalation ----

fn manager() -> ConflictManager {
    ConflictManager::new(EscalationPolicy::default()).unwrap()
}

fn contention(id: u64) -> Conflict {
    conflict(
        id,
        ConflictKind::ResourceContention,
        &[(1, Priority::NORMAL), (2, Priority::NORMAL)],
    )
}

#[test]
fn unresolved_conflicts_climb_the_ladder_on_time() {
    let clock = ManualClock::new(t0());
    let mut m = manager();
    let id = ConflictId::new(1);
    let opened = m.open(contention(1), clock.now()).unwrap();
    assert_eq!(opened.assessment.route, Route::RoutineQueue);
    assert!(opened.actions.is_empty());
    assert_eq!(m.state(id), Some(ConflictState::Resolving));
    assert_eq!(m.awaiting_resolution(), vec![id]);

    clock.advance(29 * MIN);
    assert!(m.tick(clock.now()).is_empty());
    clock.advance(MIN);
    assert_eq!(
        m.tick(clock.now()),
        vec![EscalationAction::EscalateToOrchestrator {
            conflict: id,
            reason: EscalationReason::AutomaticResolutionTimeout
        }]
    );
    assert_eq!(
        m.state(id),
        Some(ConflictState::Escalated(EscalationLevel::Orchestrator))
    );
    assert!(m.awaiting_resolution().is_empty());

    clock.advance(89 * MIN);
    assert!(m.tick(clock.now()).is_empty());
    clock.advance(MIN);
    let deadline = clock.now() + Duration::from_secs(3600);
    assert_eq!(
        m.tick(clock.now()),
        vec![EscalationAction::RequestHumanApproval {
            conflict: id,
            deadline,
            default: HumanDecision::Deny,
            reason: EscalationReason::OrchestratorResolutionTimeout
        }]
    );
    assert_eq!(m.human_deadline(id), Some(deadline));

    // The human does not answer: the default applies at the deadline.
    clock.set(deadline);
    assert_eq!(
        m.tick(clock.now()),
        vec![EscalationAction::ApplyDefaultDecision {
            conflict: id,
            decision: HumanDecision::Deny
        }]
    );
    assert_eq!(
        m.state(id),
        Some(ConflictState::DecidedByDefault(HumanDecision::Deny))
    );
    assert!(m.tick(clock.now() + Duration::from_secs(86_400)).is_empty());
    let history: Vec<&HistoryEvent> = m.history(id).unwrap().iter().map(|h| &h.event).collect();
    assert!(matches!(history[0], HistoryEvent::Opened));
    assert!(matches!(
        history.last(),
        Some(HistoryEvent::DefaultApplied { .. })
    ));
}

#[test]
fn the_default_decision_is_configurable() {
    let policy = EscalationPolicy::default().with_default_decision(HumanDecision::Approve);
    let mut m = ConflictManager::new(policy).unwrap();
    m.open(contention(1), t0()).unwrap();
    let all = m.tick(t0() + Duration::from_secs(10 * 3600));
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all[2],
        EscalationAction::ApplyDefaultDecision {
            conflict: ConflictId::new(1),
            decision: HumanDecision::Approve
        }
    );
}

/// The manager takes answers by hand until the ladder's default applies, at the
/// human's deadline once asked, or when ticks would have asked and waited; from
/// then on the default stands whether or not a tick applied it. Nothing changes.
#[test]
fn an_answer_by_hand_is_refused_once_the_default_applies() {
    let policy = EscalationPolicy::default();
    let id = ConflictId::new(1);
    let closes = policy.closes_by(t0());
    for ticked_to_human in [false, true] {
        let mut m = manager();
        m.open(contention(1), t0()).unwrap();
        if ticked_to_human {
            m.tick(t0() + policy.human_after());
            assert_eq!(m.human_deadline(id), Some(closes));
        }
        let before = serde_json::to_string(&m.snapshot()).unwrap();
        let late = m.decide(id, HumanDecision::Approve, EscalationLevel::Human, closes);
        assert_eq!(
            late,
            Err(ConflictError::DecisionTooLate {
                id,
                deadline: closes,
                default: HumanDecision::Deny
            })
        );
        assert_eq!(serde_json::to_string(&m.snapshot()).unwrap(), before);
        let in_time = closes - Duration::from_nanos(1);
        m.decide(id, HumanDecision::Approve, EscalationLevel::Human, in_time)
            .unwrap();
        assert!(m.tick(closes).is_empty());
    }
}

#[test]
fn a_failed_resolution_escalates_one_level_at_once() {
    let mut m = manager();
    let id = ConflictId::new(1);
    m.open(contention(1), t0()).unwrap();
    let tie = Strategy::PriorityWins.apply(m.conflict(id).unwrap());
    let actions = m.record_resolution(id, tie, t0() + MIN).unwrap();
    assert!(matches!(
        &actions[..],
        [EscalationAction::EscalateToOrchestrator {
            reason: EscalationReason::ResolutionFailed(_),
            ..
        }]
    ));
    // The orchestrator fails too: the human gets it now, not at 2 h.
    let actions = m
        .record_resolution(id, Resolution::failure("no idea"), t0() + 2 * MIN)
        .unwrap();
    assert!(matches!(
        &actions[..],
        [EscalationAction::RequestHumanApproval { deadline, .. }]
            if *deadline == t0() + 2 * MIN + Duration::from_secs(3600)
    ));
    // A human's failure leaves the deadline standing.
    assert!(
        m.record_resolution(id, Resolution::failure("unsure"), t0() + 3 * MIN)
            .unwrap()
            .is_empty()
    );
    // The human resolves in time.
    let ok = Resolution::success(None, vec![]);
    assert!(
        m.record_resolution(id, ok, t0() + 4 * MIN)
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.state(id), Some(ConflictState::Resolved));
    assert!(m.tick(t0() + Duration::from_secs(86_400)).is_empty());
}

#[test]
fn a_pending_resolution_keeps_the_clock_running() {
    let mut m = manager();
    let id = ConflictId::new(1);
    m.open(contention(1), t0()).unwrap();
    let pending = Strategy::AskHuman.apply(m.conflict(id).unwrap());
    assert!(
        m.record_resolution(id, pending, t0() + MIN)
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.state(id), Some(ConflictState::Resolving));
    assert_eq!(m.tick(t0() + 30 * MIN).len(), 1);
}

#[test]
fn critical_security_goes_to_a_human_at_once() {
    let mut m = manager();
    let c = conflict(7, ConflictKind::SecurityIncident, &[(1, Priority::NORMAL)]);
    let opened = m.open(c, t0()).unwrap();
    assert_eq!(opened.assessment.severity, Severity::Critical);
    assert_eq!(
        opened.actions,
        vec![EscalationAction::RequestHumanApproval {
            conflict: ConflictId::new(7),
            deadline: t0() + Duration::from_secs(3600),
            default: HumanDecision::Deny,
            reason: EscalationReason::CriticalSecurity
        }]
    );
}

#[test]
fn other_critical_conflicts_go_to_the_orchestrator_at_once() {
    let mut m = manager();
    let wide: Vec<(u64, Priority)> = (1..=5).map(|n| (n, Priority::NORMAL)).collect();
    let opened = m
        .open(conflict(1, ConflictKind::PolicyViolation, &wide), t0())
        .unwrap();
    assert!(matches!(
        &opened.actions[..],
        [EscalationAction::EscalateToOrchestrator {
            reason: EscalationReason::Critical,
            ..
        }]
    ));
    // Human at 2 h from opening, as usual.
    assert!(m.tick(t0() + 119 * MIN).is_empty());
    assert_eq!(m.tick(t0() + 120 * MIN).len(), 1);
}

#[test]
fn resource_exhaustion_triggers_emergency_reallocation() {
    let mut m = manager();
    let c = conflict(
        3,
        ConflictKind::ResourceExhaustion,
        &[(1, Priority::NORMAL)],
    );
    let opened = m.open(c, t0()).unwrap();
    assert_eq!(opened.assessment.route, Route::AutomaticResolution);
    assert_eq!(
        opened.actions,
        vec![EscalationAction::EmergencyReallocation {
            conflict: ConflictId::new(3),
            resources: vec!["port/8080".into()]
        }]
    );
}

#[test]
fn several_failing_agents_activate_safe_mode_once() {
    let mut m = manager();
    let fail = |id: u64, agent: u64| {
        Conflict::new(ConflictId::new(id), ConflictKind::AgentFailure, t0())
            .with_party(Party::agent_only(AgentId::new(agent)))
    };
    assert!(m.open(fail(1, 1), t0()).unwrap().actions.is_empty());
    assert!(m.open(fail(2, 2), t0()).unwrap().actions.is_empty());
    assert!(m.open(fail(3, 2), t0()).unwrap().actions.is_empty());
    let third = m.open(fail(4, 3), t0()).unwrap();
    assert_eq!(
        third.actions,
        vec![EscalationAction::ActivateSafeMode {
            failed_agents: vec![AgentId::new(1), AgentId::new(2), AgentId::new(3)]
        }]
    );
    assert!(m.open(fail(5, 4), t0()).unwrap().actions.is_empty());
}

#[test]
fn the_automatic_queue_comes_before_the_routine_one() {
    let mut m = manager();
    m.open(contention(1), t0()).unwrap();
    let urgent = conflict(
        2,
        ConflictKind::ResourceContention,
        &[(1, Priority::CRITICAL), (2, Priority::NORMAL)],
    );
    m.open(urgent, t0()).unwrap();
    assert_eq!(
        m.awaiting_resolution(),
        vec![ConflictId::new(2), ConflictId::new(1)]
    );
    let actions = block(m.resolve_awaiting(&Strategy::PriorityWins, t0() + MIN));
    // Conflict 2 is won by priority; conflict 1 ties and escalates.
    assert_eq!(m.state(ConflictId::new(2)), Some(ConflictState::Resolved));
    assert_eq!(actions.len(), 1);
}

#[test]
fn metrics_count_resolutions_and_escalations() {
    let mut m = manager();
    for i in 1..=20 {
        m.open(contention(i), t0()).unwrap();
    }
    for i in 1..=19 {
        let ok = Resolution::success(None, vec![]);
        m.record_resolution(ConflictId::new(i), ok, t0() + i as u32 * MIN)
            .unwrap();
    }
    m.tick(t0() + Duration::from_secs(24 * 3600));
    let metrics = m.metrics();
    assert_eq!(metrics.open, 0);
    assert_eq!(metrics.resolved, 19);
    assert_eq!(metrics.decided_by_default, 1);
    assert_eq!(metrics.time_to_resolve_p50, Some(10 * MIN));
    assert_eq!(metrics.time_to_resolve_p95, Some(19 * MIN));
    assert_eq!(metrics.escalations[&EscalationLevel::Orchestrator], 1);
    assert_eq!(metrics.escalations[&EscalationLevel::Human], 1);
}

#[test]
fn unknown_and_closed_conflicts_are_typed_errors_that_change_nothing() {
    let mut m = manager();
    let err = m
        .record_resolution(ConflictId::new(9), Resolution::failure("x"), t0())
        .unwrap_err();
    assert_eq!(
        err,
        ConflictError::UnknownConflict {
            id: ConflictId::new(9)
        }
    );
    m.open(contention(1), t0()).unwrap();
    let dup = m.open(contention(1), t0()).unwrap_err();
    assert_eq!(
        dup,
        ConflictError::DuplicateConflict {
            id: ConflictId::new(1)
        }
    );
    m.record_resolution(ConflictId::new(1), Resolution::success(None, vec![]), t0())
        .unwrap();
    let before = m.history(ConflictId::new(1)).unwrap().len();
    let closed = m
        .record_resolution(ConflictId::new(1), Resolution::failure("x"), t0())
        .unwrap_err();
    assert!(matches!(closed, ConflictError::AlreadyClosed { .. }));
    assert_eq!(m.history(ConflictId::new(1)).unwrap().len(), before);
    assert_eq!(m.metrics().resolved, 1);
    let e: concord::Error = closed.into();
    assert!(e.to_string().contains("already closed"));
}

#[test]
fn malformed_policies_are_refused() {
    let zero = EscalationPolicy::default().with_orchestrator_after(Duration::ZERO);
    assert_eq!(
        ConflictManager::new(zero).unwrap_err(),
        ConflictError::ZeroDuration {
            field: "orchestrator_after"
        }
    );
    let order = EscalationPolicy::default().with_human_after(30 * MIN);
    assert!(matches!(
        order.validate(),
        Err(ConflictError::OutOfOrder { .. })
    ));
    let no_deadline = EscalationPolicy::default().with_decision_within(Duration::ZERO);
    assert!(no_deadline.validate().is_err());
    let threshold = EscalationPolicy::default().with_safe_mode_failed_agents(0);
    assert!(matches!(
        threshold.validate(),
        Err(ConflictError::ZeroThreshold { .. })
    ));
    assert!(serde_json::from_str::<EscalationPolicy>(r#"{"human_after":-5}"#).is_err());
    assert!(serde_json::from_str::<EscalationPolicy>(r#"{"typo":1}"#).is_err());
}

#[test]
fn tick_skips_superseded_deadlines() {
    let mut m = manager();
    for i in 1..=1000 {
        m.open(contention(i), t0()).unwrap();
        m.record_resolution(ConflictId::new(i), Resolution::success(None, vec![]), t0())
            .unwrap();
    }
    assert_eq!(m.next_deadline(), None);
    assert!(m.tick(t0() + Duration::from_secs(86_400)).is_empty());
}

// ---- snapshot and restore ----

/// A manager with a conflict in every state: resolving (1), with the orchestrator
/// (2), with a human (3), resolved (4), decided by default (5), and three open agent
/// failures (6-8) that requested safe mode. Snapshotted at `t0() + MIN`.
fn busy_manager() -> ConflictManager {
    let mut m = manager();
    let early = t0() - Duration::from_secs(4 * 3600);
    m.open(contention(5), early).unwrap();
    assert_eq!(m.tick(t0()).len(), 3);
    m.open(contention(1), t0()).unwrap();
    m.open(contention(2), t0()).unwrap();
    m.record_resolution(ConflictId::new(2), Resolution::failure("tie"), t0())
        .unwrap();
    m.open(
        conflict(3, ConflictKind::SecurityIncident, &[(1, Priority::NORMAL)]),
        t0(),
    )
    .unwrap();
    m.open(contention(4), t0()).unwrap();
    m.record_resolution(
        ConflictId::new(4),
        Resolution::success(None, vec![]),
        t0() + MIN,
    )
    .unwrap();
    for (id, agent) in [(6, 1), (7, 2), (8, 3)] {
        let c = Conflict::new(ConflictId::new(id), ConflictKind::AgentFailure, t0())
            .with_party(Party::agent_only(AgentId::new(agent)));
        m.open(c, t0()).unwrap();
    }
    m
}

fn round_trip(snapshot: &ConflictManagerSnapshot) -> ConflictManagerSnapshot {
    serde_json::from_str(&serde_json::to_string(snapshot).unwrap()).unwrap()
}

#[test]
fn a_restored_manager_continues_every_open_conflict() {
    let mut m = busy_manager();
    let snapshot = round_trip(&m.snapshot());
    assert_eq!(snapshot.entries.len(), 8);
    let mut r = ConflictManager::restore(EscalationPolicy::default(), snapshot.clone()).unwrap();
    assert_eq!(r.snapshot(), snapshot);
    assert_eq!(r.open_count(), m.open_count());
    assert_eq!(r.metrics(), m.metrics());
    assert_eq!(r.awaiting_resolution(), m.awaiting_resolution());
    assert_eq!(r.next_deadline(), m.next_deadline());
    for id in 1..=8 {
        let id = ConflictId::new(id);
        assert_eq!(r.state(id), m.state(id));
        assert_eq!(r.history(id), m.history(id));
        assert_eq!(r.human_deadline(id), m.human_deadline(id));
    }
    // The same calls give the same actions, up to every conflict closed.
    let ok = || Resolution::success(None, vec![]);
    assert_eq!(
        r.record_resolution(ConflictId::new(6), ok(), t0() + 2 * MIN),
        m.record_resolution(ConflictId::new(6), ok(), t0() + 2 * MIN)
    );
    for minutes in [29, 30, 119, 120, 180, 24 * 60] {
        let now = t0() + minutes * MIN;
        let (a, b) = (r.tick(now), m.tick(now));
        assert_eq!(a, b, "at +{minutes} min");
    }
    assert_eq!(r.open_count(), 0);
    assert_eq!(r.snapshot(), m.snapshot());
    // Ids it knows stay taken; new conflicts continue the opening order.
    assert_eq!(
        r.open(contention(1), t0()).unwrap_err(),
        ConflictError::DuplicateConflict {
            id: ConflictId::new(1)
        }
    );
    r.open(contention(9), t0()).unwrap();
    assert_eq!(r.snapshot().entries[&ConflictId::new(9)].seq, 9);
}

#[test]
fn a_restored_manager_takes_the_hosts_assessor_again() {
    #[derive(Debug)]
    struct Paranoid;
    impl ConflictAssessor for Paranoid {
        fn assess(&self, _: &Conflict) -> Assessment {
            Assessment::new(Severity::Critical, vec!["everything is critical".into()])
        }
    }
    let snapshot = busy_manager().snapshot();
    let mut r = ConflictManager::restore(EscalationPolicy::default(), snapshot)
        .unwrap()
        .with_assessor(Paranoid);
    let opened = r.open(contention(9), t0()).unwrap();
    assert_eq!(opened.assessment.route, Route::EscalateNow);
}

#[test]
fn a_restore_under_a_new_policy_moves_the_open_rungs() {
    let mut m = manager();
    m.open(contention(1), t0()).unwrap();
    let faster = EscalationPolicy::default().with_orchestrator_after(10 * MIN);
    let mut r = ConflictManager::restore(faster, m.snapshot()).unwrap();
    assert_eq!(r.next_deadline(), Some(t0() + 10 * MIN));
    assert_eq!(r.tick(t0() + 10 * MIN).len(), 1);
}

/// The reason `snapshot` is refused with.
fn refused(snapshot: ConflictManagerSnapshot) -> String {
    match ConflictManager::restore(EscalationPolicy::default(), snapshot) {
        Err(ConflictError::CorruptSnapshot { reason }) => reason,
        other => panic!("not refused as corrupt: {other:?}"),
    }
}

#[test]
fn corrupt_snapshots_are_refused_naming_the_bad_value() {
    let m = busy_manager();
    let good = m.snapshot();
    let id = ConflictId::new;
    let edit = |f: &dyn Fn(&mut ConflictManagerSnapshot)| {
        let mut s = good.clone();
        f(&mut s);
        refused(s)
    };

    assert_eq!(edit(&|s| s.version = 7), "version 7 (expected 1)");
    assert_eq!(
        edit(&|s| {
            let r = s.entries.remove(&id(1)).unwrap();
            s.entries.insert(id(99), r);
        }),
        "entry conflict#99 holds conflict#1"
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(1)).unwrap().seq = 0),
        "conflict#1 has seq 0 (expected 1 to the manager's seq 8)"
    );
    assert_eq!(
        edit(&|s| s.seq = 3),
        "conflict#3 has seq 4 (expected 1 to the manager's seq 3)"
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(2)).unwrap().seq = 2),
        "conflict#2 and conflict#1 share seq 2"
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(1)).unwrap().state = ConflictState::Assessing),
        "conflict#1 is assessing, a state it only passes through while being opened"
    );
    let deadline = t0() + Duration::from_secs(3600);
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(1)).unwrap().human_deadline = Some(deadline)),
        format!("conflict#1 is resolving but has a human deadline ({deadline})")
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(2)).unwrap().human_deadline = Some(deadline)),
        format!("conflict#2 is escalated to orchestrator but has a human deadline ({deadline})")
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(3)).unwrap().human_deadline = None),
        "conflict#3 is escalated to human but has no human deadline"
    );
    assert_eq!(
        edit(&|s| s.entries.get_mut(&id(5)).unwrap().human_deadline = None),
        "conflict#5 is decided by default (deny) but has no human deadline"
    );
    assert_eq!(
        edit(&|s| {
            s.failed_agents.insert(AgentId::new(9), 1);
        }),
        "failed_agents [agent#1: 1, agent#2: 1, agent#3: 1, agent#9: 1] disagree with \
         the open agent-failure conflicts [agent#1: 1, agent#2: 1, agent#3: 1]"
    );
    assert_eq!(
        edit(&|s| s.resolved = 2),
        "resolved is 2 but the entries count 1"
    );
    assert_eq!(
        edit(&|s| s.resolve_nanos.push(5)),
        "resolve_nanos has 2 times but resolved is 1"
    );
    assert_eq!(
        edit(&|s| s.decided_by_default = 0),
        "decided_by_default is 0 but the entries count 1"
    );
    assert_eq!(
        edit(&|s| {
            s.escalations.insert(EscalationLevel::Human, 9);
        }),
        "escalations [orchestrator: 2, human: 9] disagree with the conflicts' histories \
         [orchestrator: 2, human: 2]"
    );
    let mut calm = manager().snapshot();
    calm.safe_mode_requested = true;
    assert_eq!(
        refused(calm),
        "safe mode is requested but no agent-failure conflict is open"
    );
    // The policy is checked as in `new`.
    let bad = EscalationPolicy::default().with_decision_within(Duration::ZERO);
    assert_eq!(
        ConflictManager::restore(bad, good.clone()).unwrap_err(),
        ConflictError::ZeroDuration {
            field: "decision_within"
        }
    );
    // The message carries the reason.
    let e = ConflictManager::restore(EscalationPolicy::default(), {
        let mut s = good.clone();
        s.version = 0;
        s
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "corrupt conflict manager snapshot: version 0 (expected 1)"
    );
    // The manager it came from is untouched by all this.
    assert_eq!(m.snapshot(), good);
}

#[test]
fn hand_edited_json_is_refused_without_a_panic() {
    let json = serde_json::to_string(&busy_manager().snapshot()).unwrap();
    // A state that no stored conflict is in.
    let edited = json.replacen(r#""state":"resolving""#, r#""state":"open""#, 1);
    assert_ne!(edited, json);
    let s: ConflictManagerSnapshot = serde_json::from_str(&edited).unwrap();
    assert_eq!(
        refused(s),
        "conflict#1 is open, a state it only passes through while being opened"
    );
    // Out-of-range numbers and unknown states do not even deserialize.
    for bad in [
        json.replacen(r#""seq":1"#, r#""seq":-1"#, 1),
        json.replacen(r#""state":"resolving""#, r#""state":"exploded""#, 1),
        json.replacen(r#""generation":"#, r#""generation":1e99,"x":"#, 1),
    ] {
        assert_ne!(bad, json);
        assert!(serde_json::from_str::<ConflictManagerSnapshot>(&bad).is_err());
    }
}

#[test]
fn forgetting_closed_conflicts_keeps_their_counts_and_the_open_ones() {
    let mut m = manager();
    for id in 1..=3 {
        m.open(contention(id), t0()).unwrap();
    }
    let ok = || Resolution::success(None, vec![]);
    m.record_resolution(ConflictId::new(1), ok(), t0() + MIN)
        .unwrap();
    m.record_resolution(ConflictId::new(2), ok(), t0() + 5 * MIN)
        .unwrap();
    let metrics = m.metrics();
    // Only what closed before the cut-off goes; the open one stays.
    assert_eq!(m.forget_closed(t0() + 2 * MIN), 1);
    assert!(m.conflict(ConflictId::new(1)).is_none());
    assert!(m.conflict(ConflictId::new(2)).is_some());
    assert_eq!(m.forget_closed(t0() + 60 * MIN), 1);
    assert_eq!(m.state(ConflictId::new(3)), Some(ConflictState::Resolving));
    assert_eq!(m.metrics(), metrics);
    // The open one escalates as before.
    assert_eq!(m.tick(t0() + 30 * MIN).len(), 1);

    // Snapshots carry the forgotten counts, and a restore keeps the metrics.
    let snapshot = round_trip(&m.snapshot());
    assert_eq!(snapshot.entries.len(), 1);
    assert_eq!(snapshot.forgotten.conflicts, 2);
    let r = ConflictManager::restore(EscalationPolicy::default(), snapshot.clone()).unwrap();
    assert_eq!(r.metrics(), m.metrics());
    assert_eq!(r.snapshot(), snapshot);

    // Forgotten counts that cannot be are refused, naming them.
    let mut bad = snapshot.clone();
    bad.forgotten.resolved = 5;
    assert_eq!(
        refused(bad),
        "forgotten counts 5 resolved and 0 decided by default of 2 conflicts"
    );
    let mut bad = snapshot;
    bad.forgotten.conflicts = 9;
    bad.forgotten.resolved = 9;
    assert!(refused(bad).starts_with("resolved is 2 but"));
}

/// What the ladder did reads as a sentence in a log or an event list, its times as
/// RFC 3339, not as the actions' debug form.
#[test]
fn escalation_actions_read_as_sentences() {
    let id = ConflictId::new(7);
    let deadline: Timestamp = "2024-03-01T10:00:00Z".parse().unwrap();
    let lines = [
        EscalationAction::EscalateToOrchestrator {
            conflict: id,
            reason: EscalationReason::AutomaticResolutionTimeout,
        },
        EscalationAction::RequestHumanApproval {
            conflict: id,
            deadline,
            default: HumanDecision::Deny,
            reason: EscalationReason::OrchestratorResolutionTimeout,
        },
        EscalationAction::ApplyDefaultDecision {
            conflict: id,
            decision: HumanDecision::Deny,
        },
        EscalationAction::ActivateSafeMode {
            failed_agents: vec![AgentId::new(1), AgentId::new(2), AgentId::new(3)],
        },
    ]
    .map(|a| a.to_string());
    assert_eq!(
        lines,
        [
            "conflict#7 handed to the orchestrator: automatic resolution timeout",
            "conflict#7 needs a human's approval by 2024-03-01T10:00:00.000Z \
             (orchestrator resolution timeout); unanswered, it is denied",
            "conflict#7: nobody answered by the deadline, so it is denied",
            "safe mode: agents failed (agent#1, agent#2, agent#3)",
        ]
    );
}
