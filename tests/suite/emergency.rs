//! The emergencies the coordinator acts on itself, through its public API: safe mode
//! entered by rule (agents failing within a window, tasks failing out of resources, a
//! security breach), quarantine with evidence (work handed back or held), release by
//! an audited decision, and all of it rebuilt exactly from the journal.

use std::time::Duration;

use concord::coordinator::{
    AssignOutcome, Coordinator, CoordinatorBuilder, CoordinatorError, Decider, EventKind,
    ExhaustionWindow, FailureWindow, MAX_RULE_WINDOW, MemoryJournal, OnQuarantine, Parked,
    SafeModeRules, SafeModeTrigger,
};
use concord::{
    AgentId, AgentProfile, AgentStatus, Capability, Clock, ManualClock, Requirements, Role,
    RuleBasedAnalyzer, RuleSet, SystemMode, Task, TaskId, Timestamp,
};
use proptest::prelude::*;

const MIN: Duration = Duration::from_secs(60);

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn aid(n: u64) -> AgentId {
    AgentId::new(n)
}

fn tid(n: u64) -> TaskId {
    TaskId::new(n)
}

fn agent(id: u64, slots: u32) -> AgentProfile {
    AgentProfile::new(aid(id), format!("agent-{id}"))
        .with_role(Role::new("ops").expect("role"))
        .with_capacity("cpu=8".parse().expect("capacity"))
        .with_max_tasks(slots)
}

fn task(id: u64) -> Task {
    Task::new(tid(id), "edit", format!("task {id}")).with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").expect("role"))
            .with_resources("cpu=1".parse().expect("resources")),
    )
}

fn builder(clock: &ManualClock) -> CoordinatorBuilder {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
}

fn fleet(c: &Coordinator, agents: u64) {
    for id in 1..=agents {
        c.register_agent(agent(id, 2)).expect("register");
    }
}

fn triggers(c: &Coordinator) -> Vec<SafeModeTrigger> {
    c.drain_events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::SafeModeTriggered { trigger } => Some(trigger),
            _ => None,
        })
        .collect()
}

fn agent_of(c: &Coordinator, task: TaskId) -> Option<AgentId> {
    c.assignments()
        .into_iter()
        .find(|a| a.task.id() == task)
        .map(|a| a.agent)
}

// ----- safe mode by rule -------------------------------------------------------

#[test]
fn three_agents_failing_within_five_minutes_enter_safe_mode() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 4);
    c.set_agent_status(aid(1), AgentStatus::Offline).expect("1");
    clock.advance(MIN);
    c.set_agent_status(aid(2), AgentStatus::Unhealthy)
        .expect("2");
    assert_eq!(c.mode(), SystemMode::Normal, "two are not yet several");
    clock.advance(MIN);
    c.set_agent_status(aid(3), AgentStatus::Offline).expect("3");
    assert_eq!(
        c.mode(),
        SystemMode::SafeMode,
        "entered with the third failure"
    );
    assert_eq!(
        triggers(&c),
        vec![SafeModeTrigger::AgentFailures {
            agents: vec![aid(1), aid(2), aid(3)]
        }]
    );
}

#[test]
fn drained_agents_taken_offline_are_maintenance_not_failures() {
    use concord::alert::{AlertManager, alerts_from_event, names};
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 4);
    let running = c.assign(task(1)).expect("assign");
    let on = running.assignment().expect("assigned").agent;
    // A maintenance window: three agents drained, then taken offline a minute apart,
    // one of them with a task still running. Handed back, it goes to the fourth,
    // the one agent at work, not to a drained one (where a grant went back and
    // left it waiting with room free).
    for id in [1, 2, 3] {
        c.set_agent_status(aid(id), AgentStatus::Busy)
            .expect("drain");
    }
    for id in [1, 2, 3] {
        c.set_agent_status(aid(id), AgentStatus::Offline)
            .expect("offline");
        clock.advance(MIN);
    }
    assert_eq!(c.mode(), SystemMode::Normal, "maintenance is no failure");
    let events = c.drain_events();
    let planned: Vec<AgentId> = (events.iter())
        .filter_map(|e| match e.kind {
            EventKind::AgentStatusChanged {
                agent,
                to: AgentStatus::Offline,
                planned: true,
                ..
            } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(planned, [aid(1), aid(2), aid(3)]);
    assert_eq!(
        (on, agent_of(&c, tid(1))),
        (aid(1), Some(aid(4))),
        "{:?}",
        c.why_waiting(tid(1))
    );
    // No agent-failure alert, and so no cascade of them.
    let mut alerts = AlertManager::new(Default::default()).expect("alerting");
    for e in &events {
        for change in alerts_from_event(e) {
            alerts.apply(change, e.at).expect("alert");
        }
    }
    let firing: Vec<String> = alerts
        .firing()
        .map(|(_, r)| r.alert.name().to_owned())
        .collect();
    assert!(
        !firing.iter().any(|n| n == names::AGENT_FAILURE),
        "{firing:?}"
    );
    // The same three offline undrained: three failures, and safe mode.
    for id in [1, 2, 3] {
        c.set_agent_status(aid(id), AgentStatus::Available)
            .expect("back");
    }
    for id in [1, 2, 3] {
        c.set_agent_status(aid(id), AgentStatus::Offline)
            .expect("offline");
        clock.advance(MIN);
    }
    assert_eq!(c.mode(), SystemMode::SafeMode);
}

#[test]
fn failures_spread_wider_than_the_window_do_not_enter_safe_mode() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 4);
    for id in 1..=4 {
        c.set_agent_status(aid(id), AgentStatus::Offline)
            .expect("offline");
        clock.advance(3 * MIN);
    }
    assert_eq!(c.mode(), SystemMode::Normal);
    assert!(triggers(&c).is_empty());
    // The same agent failing again counts once.
    let c = builder(&clock).build();
    fleet(&c, 2);
    for _ in 0..3 {
        c.set_agent_status(aid(1), AgentStatus::Offline)
            .expect("offline");
        c.set_agent_status(aid(1), AgentStatus::Available)
            .expect("back");
    }
    assert_eq!(c.mode(), SystemMode::Normal);
}

#[test]
fn tasks_failing_out_of_resources_enter_safe_mode() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock)
        .safe_mode_rules(SafeModeRules {
            resource_exhaustion: Some(ExhaustionWindow {
                tasks: 2,
                within: 10 * MIN,
            }),
            ..SafeModeRules::default()
        })
        .expect("rules")
        .build();
    fleet(&c, 2);
    for id in 1..=3 {
        assert!(matches!(
            c.assign(task(id)).expect("assign"),
            AssignOutcome::Assigned(_)
        ));
    }
    // A failure that used what it had and no more is not exhaustion; a success
    // over its share is not either.
    c.complete(tid(1), false, Some("cpu=1".parse().expect("usage")))
        .expect("1");
    c.complete(tid(2), true, Some("cpu=2".parse().expect("usage")))
        .expect("2");
    assert_eq!(c.mode(), SystemMode::Normal);
    for id in 4..=5 {
        assert!(matches!(
            c.assign(task(id)).expect("assign"),
            AssignOutcome::Assigned(_)
        ));
    }
    c.complete(tid(3), false, Some("cpu=1500m".parse().expect("usage")))
        .expect("3");
    assert_eq!(c.mode(), SystemMode::Normal);
    c.complete(tid(4), false, Some("cpu=5".parse().expect("usage")))
        .expect("4");
    assert_eq!(c.mode(), SystemMode::SafeMode);
    assert_eq!(
        triggers(&c),
        vec![SafeModeTrigger::ResourceExhaustion {
            tasks: vec![tid(3), tid(4)]
        }]
    );
}

#[test]
fn rules_that_are_off_do_not_fire_and_bad_rules_are_named() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock)
        .safe_mode_rules(SafeModeRules::none())
        .expect("rules")
        .build();
    fleet(&c, 3);
    for id in 1..=3 {
        c.set_agent_status(aid(id), AgentStatus::Offline)
            .expect("offline");
    }
    assert_eq!(c.mode(), SystemMode::Normal);
    let bad = SafeModeRules {
        agent_failures: Some(FailureWindow {
            agents: 0,
            within: MIN,
        }),
        ..SafeModeRules::default()
    };
    let err = builder(&clock).safe_mode_rules(bad).expect_err("refused");
    assert!(
        matches!(
            err,
            CoordinatorError::InvalidSafeModeRule {
                rule: "agent_failures",
                ..
            }
        ),
        "{err}"
    );
    let empty = SafeModeRules {
        resource_exhaustion: Some(ExhaustionWindow {
            tasks: 1,
            within: Duration::ZERO,
        }),
        ..SafeModeRules::default()
    };
    assert!(builder(&clock).safe_mode_rules(empty).is_err());
    // A window of "never" would keep every failure for the coordinator's life.
    let never = |within: Duration| SafeModeRules {
        resource_exhaustion: Some(ExhaustionWindow { tasks: 3, within }),
        ..SafeModeRules::default()
    };
    let err = never(MAX_RULE_WINDOW + Duration::from_millis(1))
        .validate()
        .expect_err("over a year");
    assert_eq!(
        err.to_string(),
        "safe-mode rule `resource_exhaustion`: the window of 31536000001 ms is longer \
         than a year (31536000000 ms)"
    );
    let json = r#"{"resource_exhaustion": {"tasks": 3, "within": 18446744073709551615}}"#;
    let read: SafeModeRules = serde_json::from_str(json).expect("plain data");
    assert!(builder(&clock).safe_mode_rules(read).is_err());
    never(MAX_RULE_WINDOW)
        .validate()
        .expect("a year is allowed");
    assert!(serde_json::from_str::<SafeModeRules>(r#"{"agent_failure": null}"#).is_err());
}

// ----- quarantine ---------------------------------------------------------------

#[test]
fn a_quarantine_keeps_the_evidence_and_hands_the_work_to_others() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    c.register_agent(agent(1, 2)).expect("register");
    for id in 1..=2 {
        c.assign(task(id)).expect("assign");
    }
    c.register_agent(agent(2, 2)).expect("register");
    c.drain_events();
    let taken = c.quarantine(aid(1), "scanning ports").expect("quarantine");
    assert_eq!(taken, vec![tid(1), tid(2)]);
    let events = c.drain_events();
    let EventKind::AgentQuarantined {
        agent,
        reason,
        tasks,
        allocations,
    } = &events[0].kind
    else {
        panic!("the evidence comes first: {events:?}")
    };
    assert_eq!((*agent, reason.as_str()), (aid(1), "scanning ports"));
    assert_eq!(tasks, &vec![tid(1), tid(2)]);
    assert_eq!(allocations.len(), 2);
    assert!(allocations.iter().all(|a| a.agent == aid(1)));
    // Its work went to the other agent; new work never goes to it.
    assert_eq!(agent_of(&c, tid(1)), Some(aid(2)));
    assert_eq!(agent_of(&c, tid(2)), Some(aid(2)));
    c.assign(task(3)).expect("assign");
    assert_eq!(
        agent_of(&c, tid(3)),
        None,
        "waits: agent 2 is full, agent 1 is cut off"
    );
    // Quarantining it again changes nothing.
    c.drain_events();
    assert!(c.quarantine(aid(1), "again").expect("again").is_empty());
    assert!(c.drain_events().is_empty());
    // Released by a human: back in service, and it takes the waiting task.
    assert!(
        c.release_quarantine(aid(1), Decider::Human, "scan clean")
            .expect("release")
            .is_empty()
    );
    assert_eq!(agent_of(&c, tid(3)), Some(aid(1)));
    let events = c.drain_events();
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::QuarantineReleased { agent, by: Decider::Human, reason, .. }
            if *agent == aid(1) && reason == "scan clean"
    )));
}

/// A release from quarantine is not the host setting the agent available: one it had
/// drained (a maintenance window) comes back drained, takes no new work, and keeps
/// that through a snapshot taken while it was quarantined. The host ends the drain.
#[test]
fn a_drained_agent_released_from_quarantine_stays_drained() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 1);
    c.set_agent_status(aid(1), AgentStatus::Busy)
        .expect("drain");
    c.quarantine(aid(1), "unexpected outbound traffic")
        .expect("quarantine");
    let drained = |c: &Coordinator| c.with_registry(|r| r.is_drained(aid(1))).expect("agent");
    assert!(drained(&c), "quarantined, and still the host's drain");
    // Restored while quarantined, the drain is kept.
    let c = builder(&clock).restore(c.snapshot()).expect("restore");
    c.release_quarantine(aid(1), Decider::Human, "scan clean")
        .expect("release");
    assert!(drained(&c));
    assert_eq!(
        c.with_registry(|r| r.status(aid(1))).expect("agent"),
        AgentStatus::Busy
    );
    let released = c.drain_events().into_iter().find_map(|e| match e.kind {
        EventKind::AgentStatusChanged {
            agent, from, to, ..
        } if agent == aid(1) => Some((from, to)),
        _ => None,
    });
    assert_eq!(
        released,
        Some((AgentStatus::Quarantined, AgentStatus::Busy))
    );
    c.assign(task(1)).expect("assign");
    assert_eq!(agent_of(&c, tid(1)), None, "waits out the window");
    // The window ends when the host says so.
    c.set_agent_status(aid(1), AgentStatus::Available)
        .expect("available");
    assert_eq!(agent_of(&c, tid(1)), Some(aid(1)));

    // An agent not drained comes back to work, as before.
    let c = builder(&clock).build();
    fleet(&c, 1);
    c.quarantine(aid(1), "suspicious").expect("quarantine");
    assert!(!drained(&c));
    c.release_quarantine(aid(1), Decider::Human, "clean")
        .expect("release");
    assert_eq!(
        c.with_registry(|r| r.status(aid(1))).expect("agent"),
        AgentStatus::Available
    );
}

#[test]
fn releasing_an_agent_not_in_quarantine_is_refused_and_changes_nothing() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 1);
    let before = serde_json::to_string(&c.snapshot()).expect("json");
    let err = c
        .release_quarantine(aid(1), Decider::Human, "why not")
        .expect_err("not quarantined");
    assert!(
        matches!(err, CoordinatorError::NotQuarantined { agent, status: AgentStatus::Available } if agent == aid(1))
    );
    assert!(matches!(
        c.quarantine(aid(9), "who").expect_err("unknown"),
        CoordinatorError::UnknownAgent { .. }
    ));
    assert_eq!(serde_json::to_string(&c.snapshot()).expect("json"), before);
}

/// Quarantine by status is a quarantine (its evidence kept), and no status set by
/// hand takes an agent out of it: only a release, a decision on record.
#[test]
fn quarantine_by_status_keeps_evidence_and_only_a_release_ends_it() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 2);
    c.assign(task(1)).expect("assign");
    let holder = agent_of(&c, tid(1)).expect("runs");
    c.drain_events();
    assert!(
        c.set_agent_status(holder, AgentStatus::Quarantined)
            .expect("quarantine")
    );
    let events = c.drain_events();
    assert!(
        matches!(&events[0].kind, EventKind::AgentQuarantined { agent, tasks, allocations, .. }
            if *agent == holder && tasks == &vec![tid(1)] && allocations.len() == 1),
        "{events:?}"
    );
    assert_ne!(agent_of(&c, tid(1)), Some(holder));
    let before = serde_json::to_string(&c.snapshot()).expect("json");
    for to in [
        AgentStatus::Available,
        AgentStatus::Offline,
        AgentStatus::Unhealthy,
    ] {
        let err = c
            .set_agent_status(holder, to)
            .expect_err("still quarantined");
        assert!(
            matches!(err, CoordinatorError::StillQuarantined { agent, to: t } if agent == holder && t == to),
            "{err:?}"
        );
        assert!(err.to_string().contains(&holder.to_string()), "{err}");
    }
    assert_eq!(serde_json::to_string(&c.snapshot()).expect("json"), before);
    // Quarantining it again changes nothing; the release does, and then statuses
    // are the host's again.
    assert!(
        !c.set_agent_status(holder, AgentStatus::Quarantined)
            .expect("again")
    );
    c.release_quarantine(holder, Decider::Human, "cleared")
        .expect("release");
    assert!(
        c.set_agent_status(holder, AgentStatus::Offline)
            .expect("offline")
    );
}

#[test]
fn held_work_waits_for_the_release_and_goes_to_no_one_else() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).on_quarantine(OnQuarantine::Hold).build();
    c.register_agent(agent(1, 2)).expect("register");
    c.assign(task(1)).expect("assign");
    c.register_agent(agent(2, 2)).expect("register");
    c.quarantine(aid(1), "suspicious output")
        .expect("quarantine");
    assert_eq!(agent_of(&c, tid(1)), None, "held, though agent 2 has room");
    assert_eq!(c.waiting()[0].parked, Some(Parked::Held(aid(1))));
    assert!(
        c.why_waiting(tid(1))
            .expect("waits")
            .contains("quarantined")
    );
    // Other work flows; a mode change or an agent's return does not free it.
    c.assign(task(2)).expect("assign");
    assert_eq!(agent_of(&c, tid(2)), Some(aid(2)));
    c.set_mode(SystemMode::SafeMode);
    c.set_mode(SystemMode::Normal);
    assert_eq!(agent_of(&c, tid(1)), None);
    let released = c
        .release_quarantine(aid(1), Decider::Orchestrator, "false alarm")
        .expect("release");
    assert_eq!(released, vec![tid(1)]);
    assert!(agent_of(&c, tid(1)).is_some());
    // Held for an agent that is then deregistered: it goes back to the queue.
    c.quarantine(aid(2), "again").expect("quarantine");
    c.deregister_agent(aid(2)).expect("deregister");
    assert!(
        c.waiting()
            .iter()
            .all(|w| w.parked != Some(Parked::Held(aid(2)))),
        "{:?}",
        c.waiting()
    );
}

#[test]
fn a_security_breach_enters_safe_mode_and_quarantines_the_agents() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    fleet(&c, 3);
    c.assign(task(1)).expect("assign");
    let before = serde_json::to_string(&c.snapshot()).expect("json");
    let err = c
        .report_security_breach(&[aid(1), aid(7)], "exfiltration")
        .expect_err("unknown agent");
    assert!(matches!(err, CoordinatorError::UnknownAgent { agent } if agent == aid(7)));
    assert_eq!(serde_json::to_string(&c.snapshot()).expect("json"), before);
    c.drain_events();
    let holder = agent_of(&c, tid(1)).expect("runs");
    let taken = c
        .report_security_breach(&[holder], "exfiltration")
        .expect("breach");
    assert_eq!(taken, vec![tid(1)]);
    assert_eq!(c.mode(), SystemMode::SafeMode);
    let status = c.with_registry(|r| r.status(holder).expect("status"));
    assert_eq!(status, AgentStatus::Quarantined);
    // The detection as the host reported it first, then what it set off.
    let events = c.drain_events();
    assert!(matches!(
        &events[0].kind,
        EventKind::SecurityBreachReported { agents, reason } if agents == &vec![holder] && reason == "exfiltration"
    ));
    assert!(matches!(
        &events[1].kind,
        EventKind::SafeModeTriggered { trigger: SafeModeTrigger::SecurityBreach { agents, .. } } if agents == &vec![holder]
    ));
}

// ----- external communications stopped ---------------------------------------------

fn mailer(id: u64) -> AgentProfile {
    agent(id, 2).with_capability(Capability::new("email").expect("capability"))
}

fn mail(id: u64) -> Task {
    Task::new(tid(id), "notify", format!("mail {id}")).with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").expect("role"))
            .with_capability(Capability::new("email").expect("capability"))
            .with_resources("cpu=1".parse().expect("resources")),
    )
}

fn parked_for_comms(c: &Coordinator) -> Vec<TaskId> {
    c.waiting()
        .into_iter()
        .filter(|w| w.parked == Some(Parked::Communications))
        .map(|w| w.task.id())
        .collect()
}

#[test]
fn stopped_communications_hold_external_work_with_the_reason_until_resumed() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    c.register_agent(mailer(1)).expect("register");
    assert!(c.stop_communications(Decider::Orchestrator, "breach on agent-7"));
    assert!(
        !c.stop_communications(Decider::Human, "again"),
        "already stopped: the first reason stands"
    );
    assert_eq!(
        c.communications().expect("stopped").reason,
        "breach on agent-7"
    );
    // External work waits, with the reason; internal work goes on.
    assert!(matches!(
        c.assign(mail(1)).expect("assign"),
        AssignOutcome::Queued { .. }
    ));
    assert!(matches!(
        c.assign(task(2)).expect("assign"),
        AssignOutcome::Assigned(_)
    ));
    let why = c.why_waiting(tid(1)).expect("waits");
    assert!(
        why.contains("breach on agent-7") && why.contains("`email`"),
        "{why}"
    );
    assert_eq!(parked_for_comms(&c), vec![tid(1)]);
    // Capacity coming back, or a mode change, does not free it.
    c.complete(tid(2), true, None).expect("complete");
    c.set_mode(SystemMode::SafeMode);
    c.set_mode(SystemMode::Normal);
    assert_eq!(agent_of(&c, tid(1)), None);
    let events = c.drain_events();
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::CommunicationsStopped { by: Decider::Orchestrator, reason } if reason == "breach on agent-7"
    )));
    // Resuming is a decision: the held work starts.
    clock.advance(MIN);
    let started = c
        .resume_communications(Decider::Human, "patched")
        .expect("resume");
    assert_eq!(
        started.iter().map(|a| a.task.id()).collect::<Vec<_>>(),
        vec![tid(1)]
    );
    assert_eq!(c.communications(), None);
    assert!(c.drain_events().iter().any(|e| matches!(
        &e.kind,
        EventKind::CommunicationsResumed { by: Decider::Human, tasks, .. } if tasks == &vec![tid(1)]
    )));
}

#[test]
fn external_work_queued_before_the_stop_is_held_when_room_comes() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).build();
    c.register_agent(mailer(1).with_max_tasks(1))
        .expect("register");
    c.assign(task(1)).expect("assign");
    assert!(matches!(
        c.assign(mail(2)).expect("assign"),
        AssignOutcome::Queued { .. }
    ));
    c.stop_communications(Decider::Orchestrator, "breach");
    c.complete(tid(1), true, None).expect("complete");
    assert_eq!(agent_of(&c, tid(2)), None, "granted room, held by the stop");
    assert_eq!(parked_for_comms(&c), vec![tid(2)]);
    // Safe mode outlasting the stop: resumed communications wait for normal mode too.
    c.set_mode(SystemMode::SafeMode);
    assert!(
        c.resume_communications(Decider::Human, "clear")
            .expect("resume")
            .is_empty()
    );
    assert_eq!(agent_of(&c, tid(2)), None);
    c.set_mode(SystemMode::Normal);
    assert_eq!(agent_of(&c, tid(2)), Some(aid(1)));
}

#[test]
fn resuming_communications_that_are_not_stopped_is_refused() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).journaled().build();
    let before = serde_json::to_string(&c.snapshot()).expect("json");
    assert!(matches!(
        c.resume_communications(Decider::Human, "nothing to resume"),
        Err(CoordinatorError::CommunicationsNotStopped)
    ));
    assert_eq!(serde_json::to_string(&c.snapshot()).expect("json"), before);
    // A bad external capability name is named, and nothing is built.
    let err = Coordinator::builder()
        .external_capabilities(["email", "bad name"])
        .expect_err("invalid");
    assert!(
        matches!(&err, CoordinatorError::InvalidExternalCapability { capability, .. } if capability == "bad name"),
        "{err}"
    );
    // A task no agent could ever take is still rejected, stop or not.
    c.stop_communications(Decider::Orchestrator, "breach");
    assert!(matches!(
        c.assign(mail(1)).expect("assign"),
        AssignOutcome::Rejected { .. }
    ));
}

// ----- the journal rebuilds it all ------------------------------------------------

#[test]
fn the_journal_rebuilds_quarantines_and_rules_exactly() {
    let clock = ManualClock::new(t0());
    let c = builder(&clock).journaled().build();
    let mut journal = MemoryJournal::new();
    fleet(&c, 4);
    c.checkpoint(&mut journal).expect("checkpoint");
    for id in 1..=3 {
        c.assign(task(id)).expect("assign");
    }
    c.quarantine(aid(1), "drill").expect("quarantine");
    clock.advance(MIN);
    c.set_agent_status(aid(2), AgentStatus::Offline)
        .expect("offline");
    c.release_quarantine(aid(1), Decider::Human, "drill over")
        .expect("release");
    c.report_security_breach(&[aid(3)], "drill")
        .expect("breach");
    c.write_journal(&mut journal).expect("journal");
    let rebuilt = builder(&clock).recover(&journal).expect("recover");
    assert_eq!(
        serde_json::to_string(&rebuilt.snapshot()).expect("json"),
        serde_json::to_string(&c.snapshot()).expect("json")
    );
    // The failure window is in the snapshot: one more failure tips both the same way.
    clock.advance(MIN);
    let mid = builder(&clock).recover(&journal).expect("recover");
    c.set_mode(SystemMode::Normal);
    mid.set_mode(SystemMode::Normal);
    for coordinator in [&c, &mid] {
        coordinator
            .set_agent_status(aid(4), AgentStatus::Unhealthy)
            .expect("unhealthy");
    }
    assert_eq!(c.mode(), mid.mode());
}

// ----- no work to a quarantined agent, whatever happens ----------------------------

#[derive(Debug, Clone)]
enum Op {
    Assign,
    Complete(usize),
    Quarantine(u64),
    Release(u64),
    Offline(u64),
    Back(u64),
    Tick,
    AssignMail,
    StopComms,
    ResumeComms,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Assign),
        3 => (0usize..8).prop_map(Op::Complete),
        1 => (1u64..=4).prop_map(Op::Quarantine),
        1 => (1u64..=4).prop_map(Op::Release),
        1 => (1u64..=4).prop_map(Op::Offline),
        1 => (1u64..=4).prop_map(Op::Back),
        1 => Just(Op::Tick),
        2 => Just(Op::AssignMail),
        1 => Just(Op::StopComms),
        1 => Just(Op::ResumeComms),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens, no quarantined agent runs anything, a task held for an
    /// agent's release runs nowhere, no external work starts while communications
    /// are stopped, and the journal rebuilds the live state.
    #[test]
    fn no_work_ever_runs_on_a_quarantined_agent(
        ops in prop::collection::vec(op(), 1..60),
        hold in any::<bool>(),
    ) {
        let clock = ManualClock::new(t0());
        let on = if hold { OnQuarantine::Hold } else { OnQuarantine::Requeue };
        let c = builder(&clock).on_quarantine(on).journaled().build();
        let mut journal = MemoryJournal::new();
        c.checkpoint(&mut journal).expect("checkpoint");
        for id in 1..=4 {
            let profile = if id % 2 == 0 { mailer(id) } else { agent(id, 2) };
            c.register_agent(profile).expect("register");
        }
        let mut next = 1;
        let mut running: std::collections::BTreeSet<TaskId> = Default::default();
        for op in ops {
            clock.advance(Duration::from_secs(30));
            match op {
                Op::Assign => {
                    let _ = c.assign(task(next));
                    next += 1;
                }
                Op::Complete(i) => {
                    let running = c.assignments();
                    if let Some(a) = running.get(i % running.len().max(1)) {
                        let _ = c.complete(a.task.id(), i % 3 != 0, None);
                    }
                }
                Op::Quarantine(a) => { let _ = c.quarantine(aid(a), "test"); }
                Op::Release(a) => { let _ = c.release_quarantine(aid(a), Decider::Human, "test"); }
                Op::Offline(a) => { let _ = c.set_agent_status(aid(a), AgentStatus::Offline); }
                Op::Back(a) => {
                    // Out of quarantine only by a release.
                    if c.set_agent_status(aid(a), AgentStatus::Available).is_err() {
                        let _ = c.release_quarantine(aid(a), Decider::Human, "back");
                    }
                }
                Op::Tick => { c.tick(); }
                Op::AssignMail => {
                    let _ = c.assign(mail(next));
                    next += 1;
                }
                Op::StopComms => { c.stop_communications(Decider::Orchestrator, "test"); }
                Op::ResumeComms => { let _ = c.resume_communications(Decider::Human, "test"); }
            }
            let stopped = c.communications().is_some();
            let held: Vec<TaskId> = c
                .waiting()
                .into_iter()
                .filter(|w| matches!(w.parked, Some(Parked::Held(_))))
                .map(|w| w.task.id())
                .collect();
            for a in c.assignments() {
                let status = c.with_registry(|r| r.status(a.agent).expect("status"));
                prop_assert_ne!(status, AgentStatus::Quarantined, "{} runs on quarantined {}", a.task.id(), a.agent);
                prop_assert!(!held.contains(&a.task.id()));
                let external = a.task.requirements().capabilities().iter().any(|c| c.as_str() == "email");
                prop_assert!(
                    !(stopped && external && !running.contains(&a.task.id())),
                    "{} started while communications were stopped", a.task.id()
                );
            }
            running = c.assignments().into_iter().map(|a| a.task.id()).collect();
        }
        c.write_journal(&mut journal).expect("journal");
        let rebuilt = builder(&clock).on_quarantine(on).recover(&journal).expect("recover");
        prop_assert_eq!(
            serde_json::to_string(&rebuilt.snapshot()).expect("json"),
            serde_json::to_string(&c.snapshot()).expect("json")
        );
        let _ = clock.now();
    }
}
