//! The coordinator's pipeline through its public API: analyze, find, assign, validate,
//! allocate; queueing, policies, safe mode, events, snapshots (open conflicts
//! included) and concurrent use.

use std::sync::Arc;

use concord::assignment::{
    Admission, Assigner, AssignmentError, Fleet, GreedyAssigner, OptimalAssigner, Plan, Rejection,
};
use concord::conflict::ConflictId;
use concord::coordinator::{
    AssignOutcome, Assignment, Coordinator, CoordinatorError, CoordinatorSnapshot, Event, EventKind,
};
use concord::{
    AgentId, AgentProfile, AgentStatus, Capability, Claim, ManualClock, Priority, Requirements,
    Resources, Role, RuleBasedAnalyzer, RuleSet, SystemMode, Task, TaskId, Timestamp,
};

use crate::counting_alloc;

const MIN: std::time::Duration = std::time::Duration::from_secs(60);

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(1_700_000_000))
}

fn agent(id: u64, roles: &[&str], caps: &[&str], capacity: &str) -> AgentProfile {
    let mut p = AgentProfile::new(AgentId::new(id), format!("agent-{id}"))
        .with_capacity(capacity.parse().unwrap());
    for r in roles {
        p = p.with_role(Role::new(r).unwrap());
    }
    for c in caps {
        p = p.with_capability(Capability::new(c).unwrap());
    }
    p
}

fn task(id: u64, kind: &str, role: &str, resources: &str) -> Task {
    Task::new(TaskId::new(id), kind, format!("{kind} work")).with_requirements(
        Requirements::new()
            .with_role(Role::new(role).unwrap())
            .with_resources(resources.parse().unwrap()),
    )
}

/// Assigns `t` now, or fails the test with what happened instead.
fn assigned(c: &Coordinator, t: Task) -> Arc<Assignment> {
    match c.assign(t).unwrap() {
        AssignOutcome::Assigned(a) => a,
        other => panic!("not assigned: {other:?}"),
    }
}

/// The tasks of `assignments`, in order.
fn ids(assignments: &[Arc<Assignment>]) -> Vec<TaskId> {
    assignments.iter().map(|a| a.task.id()).collect()
}

/// Each waiting task, with the running task it waits behind (if it does).
fn behind(c: &Coordinator) -> Vec<(TaskId, Option<TaskId>)> {
    c.waiting()
        .iter()
        .map(|w| (w.task.id(), w.behind))
        .collect()
}

/// A coordinator whose analyzer adds nothing: the tests' tasks say what they need.
fn coordinator(clock: &ManualClock) -> Coordinator {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .build()
}

#[test]
fn assigns_with_an_explanation_and_events() {
    let clock = clock();
    // The default analyzer: the seed's rule table.
    let c = Coordinator::builder().clock(clock.clone()).build();
    c.register_agent(agent(1, &["qa"], &["screenshot"], "cpu=2,memory=4Gi"))
        .unwrap();
    c.register_agent(agent(2, &["ops"], &["deploy"], "cpu=4,memory=8Gi"))
        .unwrap();
    let t = Task::new(TaskId::new(1), "verify", "Take a full-page screenshot");
    let out = c.assign(t).unwrap();
    let a = out.assignment().expect("assigned");
    assert_eq!(a.agent, AgentId::new(1));
    let text = a.explanation.to_string();
    assert!(
        text.starts_with("1 of 2 agents fit: 1 lacks role `qa`"),
        "{text}"
    );
    // The analyzer's rule table put the screenshot rule's resources on the task.
    assert!(!a.resources.is_zero());
    let events = c.drain_events();
    assert!(matches!(&events[0].kind, EventKind::AgentRegistered { .. }));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::TaskAssigned { .. })
    ));
    let seqs: Vec<u64> = events.iter().map(Event::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(c.drain_events().is_empty());
    c.with_ledger(|l| assert_eq!(l.len(), 1));
    c.with_registry(|r| assert_eq!(r.status(AgentId::new(1)).unwrap(), AgentStatus::Busy));
}

/// The duty log of a coordinator with `policies` after one task of each kind in
/// `kinds` ran in group `run-1` on one agent: the recorded duties.
fn duties_recorded(policies: concord::PolicySet, kinds: &[&str]) -> Vec<String> {
    let c = Coordinator::builder()
        .clock(clock())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .policies(policies)
        .build();
    c.register_agent(agent(1, &["ops"], &[], "cpu=4").with_max_tasks(8))
        .unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        let id = i as u64 + 1;
        let out = c
            .assign_in_group("run-1", task(id, kind, "ops", "cpu=1"))
            .unwrap();
        assert!(out.assignment().is_some(), "{out:?}");
        c.complete(TaskId::new(id), true, None).unwrap();
    }
    let duties = c.snapshot().duties;
    duties
        .duties_of("run-1", AgentId::new(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn only_the_duties_a_policy_reads_are_recorded() {
    // The default separation of duties reads `deploy` and `verify` only.
    let kinds = ["lint", "Deploy", "build", "s1"];
    assert_eq!(
        duties_recorded(concord::PolicySet::default(), &kinds),
        ["deploy"]
    );
    // A host rule may read any duty: all are recorded.
    let open = concord::PolicySet::default()
        .with_fn("anything", |_, _| None)
        .unwrap();
    assert_eq!(
        duties_recorded(open, &kinds),
        ["build", "deploy", "lint", "s1"]
    );
    // Without separation of duties, nothing is.
    let none = concord::PolicySet::default().without("separation_of_duties");
    assert!(duties_recorded(none, &kinds).is_empty());
}

#[test]
fn draining_into_a_buffer_appends_in_order_and_leaves_nothing_behind() {
    let c = Coordinator::builder().clock(clock()).build();
    c.register_agent(agent(1, &["qa"], &["screenshot"], "cpu=2,memory=4Gi"))
        .unwrap();
    let mut journal = Vec::new();
    c.drain_events_into(&mut journal);
    assert_eq!(journal.len(), 1);
    let t = Task::new(TaskId::new(1), "verify", "Take a full-page screenshot");
    assert!(c.assign(t).unwrap().assignment().is_some());
    c.complete(TaskId::new(1), true, None).unwrap();
    c.drain_events_into(&mut journal);
    // Appended after what the buffer held, in sequence order.
    assert!(matches!(
        &journal[0].kind,
        EventKind::AgentRegistered { .. }
    ));
    assert!(matches!(
        journal.last().map(|e| &e.kind),
        Some(EventKind::TaskCompleted { .. })
    ));
    let seqs: Vec<u64> = journal.iter().map(Event::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
    assert!(c.drain_events().is_empty());
    c.drain_events_into(&mut journal);
    assert_eq!(journal.len(), seqs.len());
}

#[test]
fn separation_of_duties_sends_the_verify_task_to_another_agent() {
    let clock = clock();
    let c = coordinator(&clock);
    // Agent 1 can do both; agent 2 only verifies.
    c.register_agent(agent(1, &["ops", "qa"], &[], "cpu=8,memory=16Gi").with_max_tasks(4))
        .unwrap();
    c.register_agent(agent(2, &["qa"], &[], "cpu=2,memory=2Gi"))
        .unwrap();
    let deploy = c
        .assign_in_group("run-1", task(1, "deploy", "ops", "cpu=1"))
        .unwrap();
    assert_eq!(deploy.assignment().unwrap().agent, AgentId::new(1));
    // Agent 1 scores better for verify (more room), but it deployed in this run.
    let verify = c
        .assign_in_group("run-1", task(2, "verify", "qa", "cpu=1"))
        .unwrap();
    let a = verify.assignment().expect("assigned to the other agent");
    assert_eq!(a.agent, AgentId::new(2));
    assert!(
        a.explanation.rejected.iter().any(|r| r.reason
            == Rejection::Policy {
                rule: "separation_of_duties".into()
            }),
        "{}",
        a.explanation
    );
    let events = c.drain_events();
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::PolicyRefused { refusal, .. } if refusal.rule == "separation_of_duties")));
    // Outside the run, agent 1 may verify.
    let other = c
        .assign_in_group("run-2", task(3, "verify", "qa", "cpu=1"))
        .unwrap();
    assert_eq!(other.assignment().unwrap().agent, AgentId::new(1));
    // Once run-1 is forgotten, its duties no longer bind (and forgetting twice finds
    // nothing).
    assert!(c.forget_group("run-1"));
    assert!(!c.forget_group("run-1"));
    assert_eq!(c.snapshot().duties.groups().collect::<Vec<_>>(), ["run-2"]);
}

/// An agent separation of duties refuses is barred for the task, not every agent:
/// the verify task waits for the agent that did not deploy while it is busy, and a
/// grant on the barred agent, when its room frees first, does not reject it.
#[test]
fn a_task_barred_from_its_one_free_agent_waits_for_the_others() {
    let clock = clock();
    let c = coordinator(&clock);
    for id in [1, 2] {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(1))
            .unwrap();
    }
    // Agent 1 runs outside work; agent 2 deploys in run-1, then runs outside work.
    assert_eq!(
        assigned(&c, task(1, "other", "ops", "cpu=1")).agent,
        AgentId::new(1)
    );
    let deploy = c
        .assign_in_group("run-1", task(2, "deploy", "ops", "cpu=1"))
        .unwrap();
    assert_eq!(deploy.assignment().unwrap().agent, AgentId::new(2));
    c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(
        assigned(&c, task(3, "other", "ops", "cpu=1")).agent,
        AgentId::new(2)
    );
    // Both busy, and agent 2 may not verify run-1: verify waits for agent 1.
    let verify = c
        .assign_in_group("run-1", task(4, "verify", "ops", "cpu=1"))
        .unwrap();
    assert!(matches!(verify, AssignOutcome::Queued { .. }), "{verify}");
    // Agent 2 frees first: the task is not given to it, nor rejected, and agent 2
    // is barred for it from then on.
    c.complete(TaskId::new(3), true, None).unwrap();
    let running: Vec<TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
    assert_eq!(running, [TaskId::new(1)]);
    assert_eq!(c.waiting_count(), 1);
    assert_eq!(
        c.snapshot().waiting.values().next().unwrap().barred,
        [AgentId::new(2)]
    );
    // Other work may take agent 2 meanwhile, and the verify task still waits.
    assert_eq!(
        assigned(&c, task(5, "other", "ops", "cpu=1")).agent,
        AgentId::new(2)
    );
    // Agent 1 frees: verify starts there.
    c.complete(TaskId::new(1), true, None).unwrap();
    let running: Vec<(TaskId, AgentId)> = c
        .assignments()
        .iter()
        .map(|a| (a.task.id(), a.agent))
        .collect();
    assert!(
        running.contains(&(TaskId::new(4), AgentId::new(1))),
        "{running:?}"
    );
    assert_eq!(c.waiting_count(), 0);
    // With every agent barred, a task is rejected: no agent could ever take it.
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(1))
        .unwrap();
    let deploy = c
        .assign_in_group("run-1", task(1, "deploy", "ops", "cpu=1"))
        .unwrap();
    assert!(deploy.assignment().is_some());
    c.complete(TaskId::new(1), true, None).unwrap();
    let verify = c
        .assign_in_group("run-1", task(2, "verify", "ops", "cpu=1"))
        .unwrap();
    assert!(matches!(verify, AssignOutcome::Rejected { .. }), "{verify}");
}

/// A task that queued while every agent was busy, then was refused for good on each
/// as it freed, is rejected saying so: its agents are refused by separation of
/// duties, not busy as they were when it queued (a user trial read "no agent can
/// ever take it: 0 of 2 agents fit: 2 are busy").
#[test]
fn a_task_barred_from_every_agent_says_by_which_rule() {
    let clock = clock();
    let c = coordinator(&clock);
    for id in [1, 2] {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(1))
            .unwrap();
    }
    // Both agents deploy in run-1, and are kept busy with outside work.
    for id in [1, 2] {
        let deploy = c
            .assign_in_group("run-1", task(id, "deploy", "ops", "cpu=1"))
            .unwrap();
        assert!(deploy.assignment().is_some(), "{deploy}");
    }
    for id in [1, 2] {
        c.complete(TaskId::new(id), true, None).unwrap();
        assigned(&c, task(id + 10, "other", "ops", "cpu=1"));
    }
    let verify = c
        .assign_in_group("run-1", task(3, "verify", "ops", "cpu=1"))
        .unwrap();
    assert!(matches!(verify, AssignOutcome::Queued { .. }), "{verify}");
    c.drain_events();
    for id in [11, 12] {
        c.complete(TaskId::new(id), true, None).unwrap();
    }
    let rejected = (c.drain_events().into_iter())
        .find_map(|e| match e.kind {
            EventKind::TaskRejected { task, explanation } if task == TaskId::new(3) => {
                Some(explanation)
            }
            _ => None,
        })
        .expect("the verify task is rejected once every agent is barred");
    assert_eq!(
        rejected.rejected,
        [concord::assignment::RejectionCount {
            reason: Rejection::Policy {
                rule: "separation_of_duties".into()
            },
            count: 2
        }],
        "{rejected}"
    );
}

/// A coordinator with two `ops` agents of `slots` task slots each, separating duties
/// in a group and counting failed attempts as `count_failed` says.
fn two_ops_agents_separating_duties(count_failed: bool, slots: u32) -> Coordinator {
    use concord::policy::{PolicySet, SeparationOfDuties};
    let c = Coordinator::builder()
        .clock(clock())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .policies(
            PolicySet::default()
                .with_rule(SeparationOfDuties::default().counting_failed(count_failed))
                .unwrap(),
        )
        .build();
    for id in [1, 2] {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(slots))
            .unwrap();
    }
    c
}

/// How a verify task submitted while the run's deploy is in progress on the one
/// agent that could verify ends, by how that deploy ends: it waits for the outcome
/// rather than being rejected at once, and runs on that agent when the deploy comes
/// to nothing or fails where failures do not count.
#[test]
fn a_duty_refused_for_an_attempt_in_progress_waits_for_its_outcome() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum End {
        Succeeded,
        Failed,
        Void,
    }
    let cases = [
        (End::Succeeded, true, false),
        (End::Failed, true, false),
        (End::Failed, false, true),
        (End::Void, true, true),
    ];
    for (end, count_failed, verifies) in cases {
        let case = format!("{end:?}, count_failed {count_failed}");
        let c = two_ops_agents_separating_duties(count_failed, 2);
        let on = |out: AssignOutcome| out.assignment().map(|a| a.agent);
        // Agent 2 deployed in the run; agent 1 deploys again (agent 2 drained each
        // time the other should take it).
        c.set_agent_status(AgentId::new(1), AgentStatus::Busy)
            .unwrap();
        let first = c.assign_in_group("rel", task(1, "deploy", "ops", "cpu=1"));
        assert_eq!(on(first.unwrap()), Some(AgentId::new(2)), "{case}");
        c.complete(TaskId::new(1), true, None).unwrap();
        c.set_agent_status(AgentId::new(1), AgentStatus::Available)
            .unwrap();
        c.set_agent_status(AgentId::new(2), AgentStatus::Busy)
            .unwrap();
        let again = c.assign_in_group("rel", task(2, "deploy", "ops", "cpu=1"));
        assert_eq!(on(again.unwrap()), Some(AgentId::new(1)), "{case}");
        c.set_agent_status(AgentId::new(2), AgentStatus::Available)
            .unwrap();
        c.drain_events();

        // Agent 2 may never verify; agent 1 may not while its deploy runs, and
        // may once it ends, depending on how.
        let verify = c
            .assign_in_group("rel", task(3, "verify", "ops", "cpu=1"))
            .unwrap();
        assert!(
            matches!(verify, AssignOutcome::Queued { .. }),
            "{case}: {verify}"
        );
        let assigned = match end {
            End::Succeeded => c.complete(TaskId::new(2), true, None).unwrap(),
            End::Failed => c.complete(TaskId::new(2), false, None).unwrap(),
            End::Void => c.release(TaskId::new(2)).unwrap(),
        };
        let rejected = c.drain_events().into_iter().any(
            |e| matches!(e.kind, EventKind::TaskRejected { task, .. } if task == TaskId::new(3)),
        );
        if verifies {
            assert_eq!(ids(&assigned), [TaskId::new(3)], "{case}");
            assert_eq!(assigned[0].agent, AgentId::new(1), "{case}");
            assert!(!rejected, "{case}");
        } else {
            assert!(assigned.is_empty(), "{case}: {assigned:?}");
            assert!(rejected, "{case}: every agent did deploy");
            assert!(c.waiting().is_empty(), "{case}");
        }
    }
}

/// A deploy that failed on agent 1 and succeeded on agent 2: by default agent 1's
/// failed attempt counts as deploying and no agent may verify; with
/// `count_failed: false` agent 1 verifies. Either way agent 2, which deployed, never
/// does, and an attempt handed back counts under neither.
#[test]
fn a_failed_attempt_bars_the_other_duty_unless_the_rule_says_otherwise() {
    use concord::policy::{AttemptEnd, DutyRecord};
    for count_failed in [true, false] {
        let c = two_ops_agents_separating_duties(count_failed, 1);
        let on = |out: AssignOutcome| out.assignment().map(|a| a.agent);
        // The deploy fails on agent 1, is made again on agent 2 (1 drained) and
        // succeeds there.
        c.set_agent_status(AgentId::new(2), AgentStatus::Busy)
            .unwrap();
        let first = c.assign_in_group("rel", task(1, "deploy", "ops", "cpu=1"));
        assert_eq!(on(first.unwrap()), Some(AgentId::new(1)));
        c.complete(TaskId::new(1), false, None).unwrap();
        c.set_agent_status(AgentId::new(2), AgentStatus::Available)
            .unwrap();
        c.set_agent_status(AgentId::new(1), AgentStatus::Busy)
            .unwrap();
        let again = c.assign_in_group("rel", task(2, "deploy", "ops", "cpu=1"));
        assert_eq!(on(again.unwrap()), Some(AgentId::new(2)));
        c.complete(TaskId::new(2), true, None).unwrap();
        c.set_agent_status(AgentId::new(1), AgentStatus::Available)
            .unwrap();
        let duties = c.snapshot().duties;
        let record = |a| duties.record_of("rel", "deploy", AgentId::new(a));
        let failed = DutyRecord {
            failed: true,
            ..DutyRecord::default()
        };
        let succeeded = DutyRecord {
            succeeded: true,
            ..DutyRecord::default()
        };
        assert_eq!((record(1), record(2)), (Some(failed), Some(succeeded)));

        let verify = c
            .assign_in_group("rel", task(3, "verify", "ops", "cpu=1"))
            .unwrap();
        if count_failed {
            let AssignOutcome::Rejected { explanation, .. } = &verify else {
                panic!("no agent may verify: {verify}");
            };
            assert!(
                explanation.to_string().contains("separation_of_duties"),
                "{explanation}"
            );
        } else {
            assert_eq!(on(verify), Some(AgentId::new(1)));
        }
        // The log's own account of an attempt that ended without an outcome.
        let mut log = duties.clone();
        log.record_running("rel", "verify", AgentId::new(2));
        assert!(!log.end_running("rel", "verify", AgentId::new(2), AttemptEnd::Void));
        assert_eq!(log, duties);
    }
}

/// A host's rule that refuses agent 1 while it drains, whatever the task. Whether
/// that refusal is for now or for good is the enforcer's to say.
#[derive(Debug)]
struct Draining {
    inner: concord::policy::PolicySet,
    on: Arc<std::sync::atomic::AtomicBool>,
    momentary: bool,
}

impl concord::policy::PolicyEnforcer for Draining {
    fn validate(
        &self,
        proposal: &concord::policy::Proposal,
        ctx: &concord::policy::PolicyContext<'_>,
    ) -> Vec<concord::policy::Violation> {
        let mut v = self.inner.validate(proposal, ctx);
        if proposal.agent() == AgentId::new(1) && self.on.load(std::sync::atomic::Ordering::SeqCst)
        {
            v.push(concord::policy::Violation::new(
                "draining",
                concord::policy::Severity::Error,
                proposal.agent(),
                proposal.task(),
                "agent 1 is draining",
            ));
        }
        v
    }

    fn refusal_waits(&self, rule: &str) -> bool {
        if rule == "draining" {
            self.momentary
        } else {
            self.inner.refusal_waits(rule)
        }
    }
}

#[test]
fn a_host_rule_whose_refusal_waits_holds_the_task_until_a_tick_finds_the_agent_back() {
    let clock = clock();
    let build = |momentary: bool| {
        let on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let c = Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .policies(Draining {
                inner: concord::policy::PolicySet::default(),
                on: Arc::clone(&on),
                momentary,
            })
            .build();
        c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(2))
            .unwrap();
        (c, on)
    };
    // By default a host's refusal is for good: it bars the agent for the task, and
    // with the one agent barred no agent could ever take it.
    let (c, _) = build(false);
    let out = c.assign(task(1, "edit", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Rejected { .. }), "{out}");
    // A rule whose refusal waits leaves the agent a candidate: the task waits, is
    // not barred, and starts once the agent is back.
    let (c, on) = build(true);
    let out = c.assign(task(1, "edit", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out}");
    assert!(c.snapshot().waiting.values().all(|w| w.barred.is_empty()));
    // Tried again while the agent still drains: refused again, still not barred.
    c.tick();
    assert_eq!(c.waiting_count(), 1);
    assert!(c.snapshot().waiting.values().all(|w| w.barred.is_empty()));
    // The host changed what its rule reads: a tick tries the waiting task again.
    on.store(false, std::sync::atomic::Ordering::SeqCst);
    c.tick();
    let running: Vec<TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
    assert_eq!(running, [TaskId::new(1)]);
    assert_eq!(c.waiting_count(), 0);
}

#[test]
fn safe_mode_admits_no_new_assignment() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.set_mode(SystemMode::SafeMode);
    assert_eq!(c.mode(), SystemMode::SafeMode);
    // Safe mode holds new work for normal mode: nothing is allocated meanwhile.
    let out = c.assign(task(1, "deploy", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    c.with_ledger(|l| assert!(l.is_empty()));
    assert!(c.assignments().is_empty());
    // Back to normal: the held task starts first, then new work.
    c.set_mode(SystemMode::Normal);
    assert_eq!(c.assignments()[0].task.id(), TaskId::new(1));
    let out = c.assign(task(2, "deploy", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    let events = c.drain_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::ModeChanged { .. }))
            .count(),
        2
    );
}

#[test]
fn quarantined_agents_are_never_assigned() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8")).unwrap();
    c.register_agent(agent(2, &["ops"], &[], "cpu=1")).unwrap();
    c.set_agent_status(AgentId::new(1), AgentStatus::Quarantined)
        .unwrap();
    let a = c.assign(task(1, "deploy", "ops", "cpu=500m")).unwrap();
    assert_eq!(a.assignment().unwrap().agent, AgentId::new(2));
    // The only other candidate is quarantined: the next task cannot be assigned now.
    let out = c.assign(task(2, "deploy", "ops", "cpu=500m")).unwrap();
    assert!(out.assignment().is_none(), "{out:?}");
}

/// Regression: a waiting task granted a slot on an agent quarantined while it waited
/// was started there when no policy checked agent status (the registry's refusal was
/// only logged). The grant now goes back, and the task waits for an agent in service.
#[test]
fn a_waiting_task_never_starts_on_an_agent_quarantined_meanwhile() {
    let clock = clock();
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .policies(concord::policy::PolicySet::default().without("agent_status"))
        .build();
    for id in [1, 2] {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(1))
            .unwrap();
    }
    assert_eq!(
        assigned(&c, task(1, "deploy", "ops", "cpu=1")).agent,
        AgentId::new(1)
    );
    assert_eq!(
        assigned(&c, task(2, "deploy", "ops", "cpu=1")).agent,
        AgentId::new(2)
    );
    let out = c.assign(task(3, "deploy", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    c.set_agent_status(AgentId::new(1), AgentStatus::Quarantined)
        .unwrap();
    // Quarantine hands task 1 back, which frees agent 1's slot; nothing starts there
    // (no policy checks status here: the core does), so tasks 1 and 3 both wait.
    let mut waiting: Vec<TaskId> = c.waiting().iter().map(|w| w.task.id()).collect();
    waiting.sort();
    assert_eq!(waiting, [TaskId::new(1), TaskId::new(3)]);
    assert!(c.assignments().iter().all(|a| a.agent != AgentId::new(1)));
    c.with_ledger(|l| assert_eq!(l.len(), 1));
    // Agent 2's slot frees: the older of the two runs there, and the registry agrees.
    let served = c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(
        (served[0].task.id(), served[0].agent),
        (TaskId::new(1), AgentId::new(2))
    );
    assert_eq!(c.waiting().len(), 1);
}

#[test]
fn a_task_that_does_not_fit_waits_and_is_assigned_on_completion() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2,memory=4Gi"))
        .unwrap();
    let first = c.assign(task(1, "deploy", "ops", "cpu=1500m")).unwrap();
    assert!(first.assignment().is_some());
    let second = c.assign(task(2, "deploy", "ops", "cpu=1500m")).unwrap();
    let AssignOutcome::Queued { explanation, .. } = &second else {
        panic!("{second:?}")
    };
    assert_eq!(explanation.fit, 0);
    assert_eq!(c.waiting().len(), 1);
    clock.advance(std::time::Duration::from_secs(30));
    let served = c
        .complete(
            TaskId::new(1),
            true,
            Some("cpu=1,memory=1Gi".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].task.id(), TaskId::new(2));
    assert!(c.waiting().is_empty());
    let events = c.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TaskQueued { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TaskCompleted { success: true, .. }))
    );
}

#[test]
fn slots_are_a_limit_too() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=16").with_max_tasks(2))
        .unwrap();
    assigned(&c, task(1, "a", "ops", "cpu=1"));
    assigned(&c, task(2, "b", "ops", "cpu=1"));
    let third = c.assign(task(3, "c", "ops", "cpu=1")).unwrap();
    assert!(matches!(third, AssignOutcome::Queued { .. }), "{third:?}");
    let served = c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(served[0].task.id(), TaskId::new(3));
}

#[test]
fn cancel_withdraws_a_waiting_task() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.assign(task(1, "a", "ops", "cpu=1500m")).unwrap();
    c.assign(task(2, "b", "ops", "cpu=1")).unwrap();
    assert_eq!(c.cancel(TaskId::new(2)).unwrap().id(), TaskId::new(2));
    assert!(c.waiting().is_empty());
    assert!(matches!(
        c.cancel(TaskId::new(2)),
        Err(CoordinatorError::UnknownTask { .. })
    ));
    assert!(c.complete(TaskId::new(1), true, None).unwrap().is_empty());
}

#[test]
fn a_task_no_agent_could_ever_take_is_rejected_with_reasons() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    let out = c.assign(task(1, "audit", "security", "cpu=1")).unwrap();
    let AssignOutcome::Rejected { explanation, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        explanation.to_string(),
        "0 of 1 agent fit: 1 lacks role `security`"
    );
    // Too big for any agent: rejected, not queued forever.
    let out = c.assign(task(2, "big", "ops", "cpu=64")).unwrap();
    assert!(matches!(out, AssignOutcome::Rejected { .. }), "{out:?}");
    // No agents at all.
    let empty = coordinator(&clock);
    let out = empty.assign(task(3, "x", "ops", "cpu=1")).unwrap();
    assert!(matches!(out, AssignOutcome::Rejected { .. }));
}

#[test]
fn bad_calls_are_typed_errors_that_change_nothing() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.assign(task(1, "a", "ops", "cpu=1")).unwrap();
    // Busy from its one slot; the host's busy holds it so (a drain): a change.
    assert!(
        c.set_agent_status(AgentId::new(1), AgentStatus::Busy)
            .unwrap()
    );
    let before = serde_json::to_string(&c.snapshot()).unwrap();

    let e = c.assign(task(1, "a", "ops", "cpu=1")).unwrap_err();
    assert!(matches!(e, CoordinatorError::DuplicateTask { task } if task == TaskId::new(1)));
    assert!(e.to_string().contains("task#1"));
    let e = c
        .register_agent(agent(1, &["qa"], &[], "cpu=1"))
        .unwrap_err();
    assert!(e.to_string().contains("agent#1"), "{e}");
    let e = c.complete(TaskId::new(9), true, None).unwrap_err();
    assert!(matches!(e, CoordinatorError::UnknownTask { .. }));
    // The status it already has: a no-op that says so.
    assert!(
        !c.set_agent_status(AgentId::new(1), AgentStatus::Busy)
            .unwrap()
    );
    let e = c
        .set_agent_status(AgentId::new(5), AgentStatus::Offline)
        .unwrap_err();
    assert!(e.to_string().contains("agent#5"));

    assert_eq!(serde_json::to_string(&c.snapshot()).unwrap(), before);
}

#[test]
fn snapshot_restores_and_continues() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.assign(task(1, "a", "ops", "cpu=1500m")).unwrap();
    c.assign(task(2, "b", "ops", "cpu=1")).unwrap(); // waits
    let last_seq = c.drain_events().last().unwrap().seq();
    let json = serde_json::to_string(&c.snapshot()).unwrap();
    drop(c);

    let snapshot: CoordinatorSnapshot = serde_json::from_str(&json).unwrap();
    let c = Coordinator::builder()
        .clock(clock.clone())
        .restore(snapshot)
        .unwrap();
    assert_eq!(c.assignments().len(), 1);
    assert_eq!(c.waiting().len(), 1);
    // The restored waiting task is known: submitting it again is refused.
    assert!(matches!(
        c.assign(task(2, "b", "ops", "cpu=1")),
        Err(CoordinatorError::DuplicateTask { .. })
    ));
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(served[0].task.id(), TaskId::new(2));
    assert!(c.drain_events().iter().all(|e| e.seq() > last_seq));

    let mut bad: CoordinatorSnapshot = serde_json::from_str(&json).unwrap();
    bad.version = 7;
    assert!(matches!(
        Coordinator::builder().restore(bad),
        Err(CoordinatorError::CorruptSnapshot { .. })
    ));
    // One task waiting under two requests is refused, naming it.
    let mut bad: CoordinatorSnapshot = serde_json::from_str(&json).unwrap();
    let (_, w) = bad
        .waiting
        .iter()
        .next()
        .map(|(k, w)| (*k, w.clone()))
        .unwrap();
    bad.waiting.insert(concord::RequestId::new(999), w);
    let e = Coordinator::builder().restore(bad).unwrap_err();
    assert!(e.to_string().contains("task#2 is waiting twice"), "{e}");
}

#[test]
fn a_waiting_task_is_found_and_cancelled_by_its_id() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.assign(task(1, "a", "ops", "cpu=1500m")).unwrap();
    for id in 2..=50 {
        let out = c.assign(task(id, "b", "ops", "cpu=1500m")).unwrap();
        assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    }
    assert!(matches!(
        c.assign(task(30, "b", "ops", "cpu=1500m")),
        Err(CoordinatorError::DuplicateTask { .. })
    ));
    assert_eq!(c.cancel(TaskId::new(30)).unwrap().id(), TaskId::new(30));
    assert!(matches!(
        c.cancel(TaskId::new(30)),
        Err(CoordinatorError::UnknownTask { .. })
    ));
    // Cancelled, it may be submitted again.
    assert!(c.assign(task(30, "b", "ops", "cpu=1500m")).is_ok());
    assert_eq!(c.waiting().len(), 49);
}

#[test]
fn batches_can_use_the_optimal_assigner() {
    let clock = clock();
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .assigner(OptimalAssigner::default())
        .build();
    for id in 1..=3 {
        c.register_agent(agent(id, &["qa"], &[], "cpu=2")).unwrap();
    }
    let tasks: Vec<Task> = (1..=3).map(|k| task(k, "check", "qa", "cpu=1")).collect();
    let out = c.assign_batch(None, tasks).unwrap();
    let mut agents: Vec<AgentId> = out.iter().map(|o| o.assignment().unwrap().agent).collect();
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), 3, "spread over the three agents");
}

/// A host's assigner that lists its placements last task first.
#[derive(Debug, Default)]
struct Backwards(GreedyAssigner);

impl Assigner for Backwards {
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        let mut plan = self.0.assign(tasks, fleet, admission)?;
        plan.placements.reverse();
        plan.unplaced.reverse();
        Ok(plan)
    }
}

/// Outcomes come back in the batch's order, each with its own placement, whatever
/// order a host's assigner lists them in, with tasks it could not place among them.
#[test]
fn outcomes_follow_the_batch_whatever_order_the_plan_lists() {
    let clock = clock();
    let build = |backwards: bool| {
        let b = Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap());
        let c = if backwards {
            b.assigner(Backwards::default()).build()
        } else {
            b.build()
        };
        for id in 1..=3 {
            c.register_agent(agent(id, &["qa"], &[], "cpu=2")).unwrap();
        }
        c.register_agent(agent(4, &["ops"], &[], "cpu=2")).unwrap();
        c
    };
    let batch = || -> Vec<Task> {
        vec![
            task(1, "check", "qa", "cpu=1"),
            task(2, "build", "security", "cpu=1"),
            task(3, "check", "qa", "cpu=2"),
            task(4, "deploy", "ops", "cpu=1"),
            task(5, "audit", "legal", "cpu=1"),
        ]
    };
    let summary = |out: &[AssignOutcome]| -> Vec<Option<(TaskId, AgentId)>> {
        out.iter()
            .map(|o| o.assignment().map(|a| (a.task.id(), a.agent)))
            .collect()
    };
    let straight = summary(&build(false).assign_batch(None, batch()).unwrap());
    let reversed = summary(&build(true).assign_batch(None, batch()).unwrap());
    assert_eq!(reversed, straight);
    let placed: Vec<Option<TaskId>> = straight.iter().map(|p| p.map(|(t, _)| t)).collect();
    let id = |k| Some(TaskId::new(k));
    assert_eq!(placed, [id(1), None, id(3), id(4), None]);
    // Every outcome names its task, placed or not.
    let out = build(true).assign_batch(None, batch()).unwrap();
    let tasks: Vec<TaskId> = out.iter().map(AssignOutcome::task).collect();
    assert_eq!(tasks, (1..=5).map(TaskId::new).collect::<Vec<_>>());
    assert!(matches!(out[1], AssignOutcome::Rejected { .. }));
}

/// A host's assigner that places tasks over a fleet of its own making (here one
/// where agent 1 plays ops), not the coordinator's.
#[derive(Debug)]
struct OwnFleet {
    greedy: GreedyAssigner,
    fleet: Fleet,
}

impl Assigner for OwnFleet {
    fn assign(
        &self,
        tasks: &[Task],
        _: &Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        self.greedy.assign(tasks, &self.fleet, admission)
    }
}

/// What an assigner's filters passed on a fleet of the host's making says nothing
/// of the coordinator's agents: the policies check its agent whole, and refuse one
/// that lacks the role there (the greedy vouches for its filters through
/// `Admission::admit_filtered`, which the coordinator trusts only of its own fleet).
#[test]
fn filters_passed_on_a_host_fleet_are_checked_again() {
    let clock = clock();
    let mut registry = concord::agent::AgentRegistry::new();
    registry
        .register(agent(1, &["ops"], &[], "cpu=2"), Timestamp::EPOCH)
        .unwrap();
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .assigner(OwnFleet {
            greedy: GreedyAssigner::default(),
            fleet: Fleet::new(&registry, None),
        })
        .build();
    c.register_agent(agent(1, &["qa"], &[], "cpu=2")).unwrap();
    c.register_agent(agent(2, &["ops"], &[], "cpu=2")).unwrap();
    let out = c.assign(task(1, "deploy", "ops", "cpu=1")).unwrap();
    assert!(out.assignment().is_none(), "{out}");
    let refused: Vec<String> = c
        .drain_events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::PolicyRefused { refusal } => {
                Some(format!("{} {}", refusal.rule, refusal.agent))
            }
            _ => None,
        })
        .collect();
    assert_eq!(refused, ["role_and_capability agent#1"]);
}

#[test]
fn the_predictor_learns_from_completed_tasks() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8,memory=16Gi").with_max_tasks(8))
        .unwrap();
    for k in 0..10 {
        c.assign(task(k, "build", "ops", "cpu=1")).unwrap();
        c.complete(
            TaskId::new(k),
            true,
            Some("cpu=3,memory=1Gi".parse().unwrap()),
        )
        .unwrap();
    }
    let a = c.assign(task(100, "build", "ops", "cpu=1")).unwrap();
    let r: &Resources = &a.assignment().unwrap().resources;
    assert!(r.cpu_millis() >= 3000, "predicted {r}");
}

#[test]
fn many_threads_never_over_allocate() {
    let clock = clock();
    let c = Arc::new(coordinator(&clock));
    for id in 1..=4 {
        c.register_agent(agent(id, &["ops"], &[], "cpu=4").with_max_tasks(8))
            .unwrap();
    }
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let c = Arc::clone(&c);
            scope.spawn(move || {
                for k in 0..25 {
                    let id = t * 100 + k;
                    let task = task(id, "work", "ops", "cpu=500m").with_requirements(
                        Requirements::new()
                            .with_role(Role::new("ops").unwrap())
                            .with_resources("cpu=500m".parse().unwrap())
                            .with_priority(Priority::HIGH),
                    );
                    c.assign(task).unwrap();
                    if k % 3 == 0 {
                        let _ = c.complete(TaskId::new(id), true, None);
                    }
                }
            });
        }
    });
    c.with_ledger(|l| {
        for a in l.agents() {
            assert!(l.allocated(a).unwrap().fits(&l.capacity(a).unwrap()));
        }
    });
    // Every task is accounted for: running, waiting or completed.
    let running = c.assignments().len();
    let waiting = c.waiting().len();
    assert!(running <= 32);
    assert!(running + waiting <= 100);
}

#[test]
fn colliding_exclusive_claims_are_caught_and_escalated() {
    use concord::Claim;
    use concord::conflict::EscalationAction;
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    c.register_agent(agent(2, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    assigned(&c, claiming(1));
    // The same file claimed again: caught before anything is allocated. The task
    // waits behind the holder, off the ledger's queue.
    let out = c.assign(claiming(2)).unwrap();
    let AssignOutcome::Conflicted { conflicts, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(conflicts.len(), 1);
    c.with_ledger(|l| assert_eq!(l.len(), 1));
    assert_eq!(behind(&c), [(TaskId::new(2), Some(TaskId::new(1)))]);
    let events = c.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ConflictDetected { .. }))
    );

    // Unresolved after 30 minutes: the orchestrator.
    clock.advance(std::time::Duration::from_secs(31 * 60));
    c.tick();
    let events = c.drain_events();
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::ConflictEscalated {
                action: EscalationAction::EscalateToOrchestrator { .. },
                ..
            }
        )),
        "{events:?}"
    );
    // The holder finishes: the conflict is resolved and the waiting task starts on
    // its own, without being submitted again.
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(2)]);
    assert!(
        c.drain_events()
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ConflictResolved { conflict, .. } if *conflict == conflicts[0]))
    );
    assert!(c.waiting().is_empty());
    // Shared claims never collide.
    let shared = |id: u64| {
        Task::new(TaskId::new(id), "read", "read the docs").with_requirements(
            Requirements::new()
                .with_role(Role::new("ops").unwrap())
                .with_claim(Claim::shared("repo/docs")),
        )
    };
    assigned(&c, shared(3));
    assigned(&c, shared(4));
}

/// Task `id`: an ops edit holding `repo/config` exclusively.
fn claiming(id: u64) -> Task {
    Task::new(TaskId::new(id), "edit", "edit the config").with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").unwrap())
            .with_claim(concord::Claim::exclusive("repo/config")),
    )
}

/// Two agents, task 1 holding `repo/config` and task 2 conflicted over it (waiting
/// behind task 1); events drained.
fn collided(clock: &ManualClock) -> (Coordinator, ConflictId) {
    let c = coordinator(clock);
    for id in 1..=2 {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(4))
            .unwrap();
    }
    assigned(&c, claiming(1));
    let out = c.assign(claiming(2)).unwrap();
    let AssignOutcome::Conflicted { conflicts, .. } = out else {
        panic!("{out:?}")
    };
    c.drain_events();
    (c, conflicts[0])
}

/// A host's own tick loop sleeps until `poll_timeout` and waits on `changed` beside
/// it: a command that brings a nearer deadline (a conflict's first rung, where there
/// was none) wakes the loop, which then asks `poll_timeout` again.
#[test]
fn changed_wakes_a_host_loop_when_a_command_brings_a_nearer_deadline() {
    struct Count(std::sync::atomic::AtomicUsize);
    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let clock = clock();
    let c = coordinator(&clock);
    for id in 1..=2 {
        c.register_agent(agent(id, &["ops"], &[], "cpu=8").with_max_tasks(4))
            .unwrap();
    }
    assigned(&c, claiming(1));
    assert_eq!(c.poll_timeout(), None, "nothing timed yet");
    let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
    let waker = futures::task::waker(Arc::clone(&count));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut changed = Box::pin(c.changed());
    assert!(changed.as_mut().poll(&mut cx).is_pending());
    // Reading changes nothing.
    let _ = (c.open_conflicts(), c.assignments(), c.poll_timeout());
    assert!(changed.as_mut().poll(&mut cx).is_pending());
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    let out = c.assign(claiming(2)).unwrap();
    assert!(matches!(out, AssignOutcome::Conflicted { .. }), "{out:?}");
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(changed.as_mut().poll(&mut cx).is_ready());
    assert!(c.poll_timeout().is_some(), "the ladder's first rung");
}

fn restored(clock: &ManualClock, json: &str) -> Coordinator {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .restore(serde_json::from_str(json).unwrap())
        .unwrap()
}

#[test]
fn open_conflicts_survive_a_restore_and_escalate_as_before() {
    use concord::conflict::EscalationAction;
    let clock = clock();
    let (c, conflict) = collided(&clock);
    clock.advance(5 * MIN);
    let json = serde_json::to_string(&c.snapshot()).unwrap();
    let r = restored(&clock, &json);
    assert_eq!(serde_json::to_string(&r.snapshot()).unwrap(), json);

    // Both climb the ladder together, event for event.
    let mut actions = Vec::new();
    for minutes in [26, 90, 50] {
        clock.advance(minutes * MIN);
        assert_eq!(r.tick(), c.tick());
        let (got, want) = (r.drain_events(), c.drain_events());
        assert_eq!(got, want, "after {minutes} more minutes");
        actions.extend(got.into_iter().filter_map(|e| match e.kind {
            EventKind::ConflictEscalated { action, .. } => Some(action),
            _ => None,
        }));
    }
    assert!(
        matches!(
            &actions[..],
            [
                EscalationAction::EscalateToOrchestrator { conflict: a, .. },
                EscalationAction::RequestHumanApproval { conflict: b, .. },
            ] if *a == conflict && *b == conflict
        ),
        "{actions:?}"
    );

    // Task 1's claim, held again on restore, catches a newcomer just the same: same
    // fresh id, same parties (the holder held it since its assignment, not the restore).
    let (got, want) = (
        r.assign(claiming(5)).unwrap(),
        c.assign(claiming(5)).unwrap(),
    );
    assert_eq!(got, want);
    let AssignOutcome::Conflicted {
        conflicts: newcomer,
        ..
    } = got
    else {
        panic!("{got:?}")
    };
    assert!(newcomer[0] > conflict, "{newcomer:?} after {conflict}");
    assert_eq!(r.drain_events(), c.drain_events());
    // Both tasks wait behind task 1, on both.
    assert_eq!(r.waiting(), c.waiting());
    assert!(r.waiting().iter().all(|w| w.behind == Some(TaskId::new(1))));

    // The holder finishes: the restored coordinator resolves both conflicts as well,
    // and starts task 2, which waited behind it since before the restore; task 5,
    // which collides with task 2 now, waits behind it, in a new conflict (the same
    // id on both).
    let (got, want) = (
        r.complete(TaskId::new(1), true, None).unwrap(),
        c.complete(TaskId::new(1), true, None).unwrap(),
    );
    assert_eq!(got, want);
    assert_eq!(ids(&got), [TaskId::new(2)]);
    let (got, want) = (r.drain_events(), c.drain_events());
    assert_eq!(got, want);
    for id in [conflict, newcomer[0]] {
        assert!(
            got.iter()
                .any(|e| matches!(&e.kind, EventKind::ConflictResolved { conflict, .. } if *conflict == id)),
            "{id}: {got:?}"
        );
    }
    let detected: Vec<_> = (got.iter())
        .filter_map(|e| match &e.kind {
            EventKind::ConflictDetected { conflict, .. } => Some(conflict.id()),
            _ => None,
        })
        .collect();
    assert_eq!(detected.len(), 1, "{got:?}");
    assert!(detected[0] > newcomer[0], "{detected:?} after {newcomer:?}");
    assert_eq!(behind(&r), [(TaskId::new(5), Some(TaskId::new(2)))]);

    // Task 2 holds the file now; task 3 collides with it under a fresh id, the same on
    // both.
    let (got, want) = (
        r.assign(claiming(3)).unwrap(),
        c.assign(claiming(3)).unwrap(),
    );
    assert_eq!(got, want);
    let AssignOutcome::Conflicted { conflicts, .. } = got else {
        panic!("{got:?}")
    };
    assert!(
        conflicts[0] > detected[0],
        "{conflicts:?} after {detected:?}"
    );
    assert_eq!(
        c.open_conflicts()
            .iter()
            .map(|o| (o.holder, o.waiting))
            .collect::<Vec<_>>(),
        [
            (Some(TaskId::new(2)), Some(TaskId::new(5))),
            (Some(TaskId::new(2)), Some(TaskId::new(3)))
        ]
    );
    assert_eq!(r.drain_events(), c.drain_events());
    assert_eq!(
        serde_json::to_string(&r.snapshot()).unwrap(),
        serde_json::to_string(&c.snapshot()).unwrap()
    );
}

#[test]
fn restored_claims_do_not_reopen_conflicts() {
    let clock = clock();
    let (c, _) = collided(&clock);
    let json = serde_json::to_string(&c.snapshot()).unwrap();
    let r = restored(&clock, &json);
    // Nothing new on restore: no event, the one conflict still the only one open.
    assert!(r.drain_events().is_empty());
    let snapshot = r.snapshot();
    assert_eq!(snapshot.conflicts.entries.len(), 1);
    // And its claims are held again: the file is still taken.
    assert!(matches!(
        r.assign(claiming(4)).unwrap(),
        AssignOutcome::Conflicted { .. }
    ));
}

#[test]
fn corrupt_conflict_parts_of_a_snapshot_are_refused() {
    use concord::conflict::{Conflict, ConflictError};
    let clock = clock();
    let (c, conflict) = collided(&clock);
    let good = c.snapshot();
    let refused = |s: CoordinatorSnapshot| match Coordinator::builder().restore(s) {
        Err(e) => e,
        Ok(_) => panic!("restored"),
    };

    let mut old = good.clone();
    old.version = 1;
    let e = refused(old);
    assert!(matches!(e, CoordinatorError::CorruptSnapshot { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "corrupt coordinator snapshot: version 1 (expected 2 to 6)"
    );

    // The holder of an open conflict must be running, or nothing would resolve it.
    let mut orphan = good.clone();
    orphan.assignments.remove(&TaskId::new(1));
    assert_eq!(
        refused(orphan).to_string(),
        format!(
            "corrupt coordinator snapshot: open {conflict} is held by task#1, which is not running"
        )
    );

    // The manager's own checks, as its errors.
    let mut bad = good.clone();
    bad.conflicts.entries.get_mut(&conflict).unwrap().seq = 9;
    let e = refused(bad);
    assert!(
        matches!(&e, CoordinatorError::Conflict(ConflictError::CorruptSnapshot { reason }) if reason.contains("seq 9")),
        "{e}"
    );

    // A conflict at the last id leaves none for the next one.
    let mut full = good.clone();
    let mut record = full.conflicts.entries.remove(&conflict).unwrap();
    let last = ConflictId::new(u64::MAX);
    let mut moved = Conflict::new(last, record.conflict.kind(), record.conflict.detected_at());
    for p in record.conflict.parties() {
        moved = moved.with_party(*p);
    }
    record.conflict = moved;
    full.conflicts.entries.insert(last, record);
    assert_eq!(
        refused(full).to_string(),
        format!("corrupt coordinator snapshot: {last} leaves no id for new conflicts")
    );
}

/// The default policies, plus a host rule that refuses task 2 while `refuse` is set,
/// and records what the ledger showed it (through the context, and as it is).
#[derive(Debug, Default)]
struct RefuseTwo {
    refuse: std::sync::atomic::AtomicBool,
    seen: std::sync::Mutex<Vec<(Resources, Resources)>>,
}

impl concord::policy::PolicyEnforcer for RefuseTwo {
    fn validate(
        &self,
        proposal: &concord::policy::Proposal,
        ctx: &concord::policy::PolicyContext<'_>,
    ) -> Vec<concord::policy::Violation> {
        use std::sync::atomic::Ordering;
        let mut out = concord::PolicySet::default().validate(proposal, ctx);
        if proposal.task() == TaskId::new(2) {
            let agent = proposal.agent();
            let raw = ctx.ledger().allocated(agent).unwrap_or_default();
            self.seen.lock().unwrap().push((ctx.allocated(agent), raw));
            if self.refuse.load(Ordering::SeqCst) {
                out.push(concord::policy::Violation::new(
                    "host_freeze",
                    concord::policy::Severity::Error,
                    agent,
                    proposal.task(),
                    "frozen",
                ));
            }
        }
        out
    }
}

/// Regression: a queued task's grant was checked against a clone of the whole ledger
/// with the grant released (O(ledger) per served task). The check now sees the live
/// ledger with the grant counted as released, and a refusal gives the grant back in
/// full: the other allocations and the queue are exactly as before it.
#[test]
fn a_policy_refusal_on_a_served_grant_leaves_the_ledger_as_before() {
    use std::sync::atomic::Ordering;
    let clock = clock();
    let rule = Arc::new(RefuseTwo::default());
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .policies(Arc::clone(&rule))
        .build();
    c.register_agent(agent(1, &["ops"], &[], "cpu=2")).unwrap();
    c.register_agent(agent(2, &["qa"], &[], "cpu=2")).unwrap();
    assigned(&c, task(1, "a", "ops", "cpu=1500m"));
    assigned(&c, task(5, "q", "qa", "cpu=1500m"));
    assert!(matches!(
        c.assign(task(2, "b", "ops", "cpu=1500m")).unwrap(),
        AssignOutcome::Queued { .. }
    ));
    assert!(matches!(
        c.assign(task(3, "c", "qa", "cpu=1500m")).unwrap(),
        AssignOutcome::Queued { .. }
    ));
    rule.seen.lock().unwrap().clear();
    let now = c.now();
    let (allocations, queue) = c.with_ledger(|l| (l.allocations(), l.waiting(now)));
    c.drain_events();

    // Task 1 ends: task 2 is granted its place on agent 1, and the host rule refuses it.
    rule.refuse.store(true, Ordering::SeqCst);
    assert!(c.complete(TaskId::new(1), true, None).unwrap().is_empty());
    // The rule saw agent 1 as before the grant (empty: task 1 is gone), while the
    // ledger itself held the grant: 1500m and a slot.
    let seen = rule.seen.lock().unwrap().clone();
    let [(counted, raw)] = &seen[..] else {
        panic!("{seen:?}")
    };
    assert!(counted.is_zero(), "{counted:?}");
    assert_eq!(raw.cpu_millis(), 1500);
    // The grant was given back in full: task 5's allocation untouched, agent 1 holds
    // nothing, and task 3 still waits, with its request id and place.
    c.with_ledger(|l| {
        let task5: Vec<_> = allocations
            .iter()
            .filter(|a| a.task == Some(TaskId::new(5)))
            .cloned()
            .collect();
        assert_eq!(l.allocations(), task5);
        assert!(l.allocated(AgentId::new(1)).unwrap().is_zero());
        let still: Vec<_> = queue
            .iter()
            .filter(|w| w.request.task() == Some(TaskId::new(3)))
            .cloned()
            .collect();
        assert_eq!(l.waiting(now), still);
    });
    let events = c.drain_events();
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::PolicyRefused { refusal, .. } if refusal.task == TaskId::new(2))
        ),
        "{events:?}"
    );
    assert!(
        c.assignments()
            .iter()
            .all(|a| a.task.id() != TaskId::new(2))
    );
}

fn sharing(id: u64, claim: concord::Claim) -> Task {
    Task::new(TaskId::new(id), "read", "read the repo").with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").unwrap())
            .with_claim(claim),
    )
}

/// Conflict ids are issued in one place, from a counter that only counts up: a
/// restore starts it past every id its manager knows, and refuses a snapshot that
/// would start it at or past 2^63 (as every id counter), so that it never wraps
/// around to ids the manager already holds. (It did wrap once, at `u64::MAX`, and the
/// manager then refused an id it knew.)
#[test]
fn conflict_ids_run_on_from_a_restore_and_never_wrap() {
    use concord::conflict::{
        Conflict, ConflictKind, ConflictManager, EscalationPolicy, Resolution,
    };
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(8))
        .unwrap();
    for id in 1..=3 {
        let out = c
            .assign(sharing(id, concord::Claim::shared("repo")))
            .unwrap();
        assert!(out.assignment().is_some(), "{out:?}");
    }
    // A history of two closed conflicts, the last at `last`.
    let now = c.now();
    let with_history = |last: u64, next: u64| {
        let mut history = ConflictManager::new(EscalationPolicy::default()).unwrap();
        for id in [1, last] {
            let id = ConflictId::new(id);
            history
                .open(
                    Conflict::new(id, ConflictKind::ResourceContention, now),
                    now,
                )
                .unwrap();
            history
                .record_resolution(id, Resolution::success(None, Vec::new()), now)
                .unwrap();
        }
        let mut snapshot = c.snapshot();
        snapshot.conflicts = history.snapshot();
        snapshot.next_conflict_id = next;
        serde_json::to_string(&snapshot).unwrap()
    };
    let refused = |json: String| {
        let e = Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .restore(serde_json::from_str(&json).unwrap())
            .unwrap_err();
        assert!(
            matches!(&e, CoordinatorError::CorruptSnapshot { reason } if reason.contains("next_conflict_id")),
            "{e}"
        );
    };
    // At or past 2^63, from the history or from the counter: refused.
    refused(with_history(u64::MAX - 1, 0));
    refused(with_history((1 << 63) - 1, 0));
    refused(with_history(2, 1 << 63));

    // Just below: the ids run on past the history's last, and past 2^63.
    let r = restored(&clock, &with_history((1 << 63) - 2, 5));
    r.drain_events();
    let out = r
        .assign(sharing(4, concord::Claim::exclusive("repo")))
        .unwrap();
    let AssignOutcome::Conflicted { conflicts, .. } = out else {
        panic!("{out:?}")
    };
    let top = 1u64 << 63;
    assert_eq!(
        conflicts,
        [top - 1, top, top + 1].map(ConflictId::new),
        "one per holder, in holder order"
    );
    // The counter is in the snapshot.
    assert_eq!(r.snapshot().next_conflict_id, top + 2);
}

/// An assigner that places every task on agent 1, whatever it has.
#[derive(Debug)]
struct OnAgentOne;

impl concord::assignment::Assigner for OnAgentOne {
    fn assign(
        &self,
        tasks: &[Task],
        _: &concord::assignment::Fleet,
        _: &mut dyn concord::assignment::Admission,
    ) -> Result<concord::assignment::Plan, concord::assignment::AssignmentError> {
        let mut plan = concord::assignment::Plan::default();
        for t in tasks {
            plan.placements.push(concord::assignment::Placement::new(
                t.id(),
                AgentId::new(1),
                0.0,
                Default::default(),
            ));
        }
        Ok(plan)
    }
}

/// Regression: when the ledger or the registry refused a placement whose claims were
/// already checked, `commit` returned the error but kept the claims in the detector,
/// so a later task claiming the same file collided with a task that never ran.
#[test]
fn a_placement_that_fails_to_start_holds_no_claim() {
    let clock = clock();
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .assigner(OnAgentOne)
        .policies(concord::PolicySet::empty())
        .build();
    c.register_agent(agent(1, &["ops"], &[], "cpu=8")).unwrap();
    let json = || serde_json::to_string(&c.snapshot()).unwrap();
    let before = json();
    // The ledger refuses: more than the agent has.
    let big = task(1, "edit", "ops", "cpu=64").with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").unwrap())
            .with_resources("cpu=64".parse().unwrap())
            .with_claim(concord::Claim::exclusive("repo/config")),
    );
    assert!(matches!(c.assign(big), Err(CoordinatorError::Ledger(_))));
    assert_eq!(json(), before);
    // The registry refuses: the agent is unhealthy.
    c.set_agent_status(AgentId::new(1), AgentStatus::Unhealthy)
        .unwrap();
    let before = json();
    assert!(matches!(
        c.assign(claiming(2)),
        Err(CoordinatorError::Registry(_))
    ));
    assert_eq!(json(), before);
    c.set_agent_status(AgentId::new(1), AgentStatus::Available)
        .unwrap();
    // Nobody holds the file.
    let out = c.assign(claiming(3)).unwrap();
    assert!(out.assignment().is_some(), "{out:?}");
}

/// What one step of a scenario returned.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Assign(AssignOutcome),
    Served(Vec<Arc<Assignment>>),
}

/// One agent with two slots: task 1 holds `repo/config`, task 2 takes the other
/// slot, task 3 claims `repo/config` too and queues for a slot.
fn claims_scenario(clock: &ManualClock) -> Coordinator {
    let c = coordinator(clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(2))
        .unwrap();
    assigned(&c, claiming(1));
    assigned(&c, task(2, "build", "ops", "cpu=1"));
    let out = c.assign(claiming(3)).unwrap();
    assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    c
}

/// One step of a scenario.
type StepFn = Box<dyn Fn(&Coordinator) -> Step>;

/// The rest of the scenario, step by step: task 2 ends (task 3 gets the slot but
/// task 1 still holds the file), time passes, task 1 ends (task 3 starts), task 4
/// claims the file (task 3 holds it now: a conflict, and task 4 waits behind task 3),
/// task 3 ends (task 4 starts on its own), task 4 ends (the file is free).
fn claims_steps() -> Vec<StepFn> {
    vec![
        Box::new(|c| Step::Served(c.complete(TaskId::new(2), true, None).unwrap())),
        Box::new(|c| Step::Served(c.tick())),
        Box::new(|c| Step::Served(c.complete(TaskId::new(1), true, None).unwrap())),
        Box::new(|c| Step::Assign(c.assign(claiming(4)).unwrap())),
        Box::new(|c| Step::Served(c.complete(TaskId::new(3), true, None).unwrap())),
        Box::new(|c| Step::Served(c.complete(TaskId::new(4), true, None).unwrap())),
    ]
}

/// Regression: a task queued again after waiting behind a claim lost its age (the
/// ledger took it for a new request), and queued again only after its holder's
/// resources had gone to the queue, so tasks queued after it were served first. It
/// now keeps the time it first queued, and queues again before those resources come
/// back.
#[test]
fn a_task_blocked_behind_a_claim_keeps_its_age_in_the_queue() {
    let clock = clock();
    let t0 = concord::Clock::now(&clock);
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .ledger_config(concord::resource::LedgerConfig::default().with_aging_step(MIN))
        .build();
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(2))
        .unwrap();
    let plain = |id| task(id, "build", "ops", "cpu=1");
    let queued = |c: &Coordinator, t| {
        let out = c.assign(t).unwrap();
        assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    };
    // Task 1 holds the file, task 2 the other slot; task 3 wants the file, and queues.
    assigned(&c, claiming(1));
    assigned(&c, plain(2));
    queued(&c, claiming(3));
    assert_eq!(c.waiting()[0].since, Some(t0));
    // Task 2 ends: task 3 gets the slot, but waits behind task 1, keeping its age.
    clock.advance(MIN);
    c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(c.waiting()[0].behind, Some(TaskId::new(1)));
    assert_eq!(c.waiting()[0].since, Some(t0));
    // Task 4 takes the slot task 3 gave back; tasks 5 and 6 queue behind it.
    clock.advance(MIN);
    assigned(&c, plain(4));
    clock.advance(3 * MIN);
    queued(&c, plain(5));
    queued(&c, plain(6));
    // Task 1 ends: task 3 queues again, as old as it was, before task 1's slot comes
    // back; so the slot goes to task 3, queued first (at t0), not to task 5, which was
    // in the queue before task 3 came back to it but is younger.
    clock.advance(MIN);
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(
        served.iter().map(|a| a.task.id()).collect::<Vec<_>>(),
        [TaskId::new(3)]
    );
    // Task 4 ends: then task 5, the older of the two left.
    clock.advance(MIN);
    let served = c.complete(TaskId::new(4), true, None).unwrap();
    assert_eq!(
        served.iter().map(|a| a.task.id()).collect::<Vec<_>>(),
        [TaskId::new(5)]
    );
    assert_eq!(
        c.waiting().iter().map(|w| w.task.id()).collect::<Vec<_>>(),
        [TaskId::new(6)]
    );
}

/// Regression: a task served from the queue was started without checking or holding
/// its claims, so it ran beside a task holding the same exclusive file, and newcomers
/// did not collide with it (until a snapshot and restore, which held its claims).
///
/// Regression: such a task then waited behind the holder with no conflict open, so
/// the escalation ladder never heard of it however long the holder ran. It now
/// opens its conflict as a task assigned directly does.
#[test]
fn a_queued_task_waits_behind_the_holder_of_its_claim() {
    let clock = clock();
    let c = claims_scenario(&clock);
    let steps = claims_steps();
    c.drain_events();

    // Task 2 ends: task 3 is granted its slot but task 1 holds the file, so task 3
    // does not start; it waits behind task 1, in a conflict with it.
    clock.advance(MIN);
    assert_eq!(steps[0](&c), Step::Served(Vec::new()));
    let events = c.drain_events();
    let kinds: Vec<_> = events.iter().map(|e| &e.kind).collect();
    let detected = kinds.iter().position(|k| {
        matches!(k, EventKind::ConflictDetected { conflict, .. }
            if conflict.parties().iter().filter_map(|p| p.task_id()).collect::<Vec<_>>()
                == [TaskId::new(1), TaskId::new(3)])
    });
    let blocked = kinds.iter().position(|k| {
        matches!(k, EventKind::TaskBlocked { task, behind, .. }
            if *task == TaskId::new(3) && *behind == TaskId::new(1))
    });
    assert!(
        matches!((detected, blocked), (Some(d), Some(b)) if d < b),
        "{events:?}"
    );
    let waiting = c.waiting();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].task.id(), TaskId::new(3));
    assert_eq!(waiting[0].behind, Some(TaskId::new(1)));
    // The slot is free again, not held by a task that cannot run.
    c.with_ledger(|l| assert_eq!(l.len(), 1));
    let open = c.open_conflicts();
    assert_eq!(
        (open.iter())
            .map(|o| (o.holder, o.waiting))
            .collect::<Vec<_>>(),
        [(Some(TaskId::new(1)), Some(TaskId::new(3)))]
    );

    // Time passes: nothing retries it (no conflict opened again and again)...
    clock.advance(10 * MIN);
    assert_eq!(steps[1](&c), Step::Served(Vec::new()));
    assert!(c.drain_events().is_empty());
    // ...but the ladder climbs: past its first rung, the orchestrator hears of it.
    clock.advance(25 * MIN);
    assert!(c.tick().is_empty());
    let events = c.drain_events();
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::ConflictEscalated {
                action: concord::conflict::EscalationAction::EscalateToOrchestrator { conflict, .. }
            } if *conflict == open[0].conflict.id()
        )),
        "{events:?}"
    );

    // Task 1 ends: task 3 takes the file and the slot.
    clock.advance(MIN);
    let Step::Served(served) = steps[2](&c) else {
        unreachable!()
    };
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].task.id(), TaskId::new(3));
    assert!(c.waiting().is_empty());

    // Task 3 holds its claim like any running task: a newcomer collides with it, and
    // waits behind it.
    let Step::Assign(out) = steps[3](&c) else {
        unreachable!()
    };
    let AssignOutcome::Conflicted { conflicts, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(behind(&c), [(TaskId::new(4), Some(TaskId::new(3)))]);
    c.drain_events();
    // And its end resolves that conflict and frees the file, which the newcomer takes:
    // it starts on its own, and no conflict is opened again.
    let Step::Served(served) = steps[4](&c) else {
        unreachable!()
    };
    assert_eq!(ids(&served), [TaskId::new(4)]);
    let events = c.drain_events();
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::ConflictResolved { conflict, .. } if *conflict == conflicts[0])
    ));
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ConflictDetected { .. })),
        "{events:?}"
    );
    assert!(c.waiting().is_empty());
    // Its end frees the file for good: nothing waits for it, and a newcomer takes it.
    assert_eq!(steps[5](&c), Step::Served(Vec::new()));
    assert!(c.open_conflicts().is_empty());
    assigned(&c, claiming(5));
}

/// A coordinator restored from a snapshot through JSON at every step (a task blocked
/// behind a claim included, and a conflicted task waiting behind its holder) gives
/// the same outcomes and events, and ends in the same state, as one that ran
/// uninterrupted.
#[test]
fn a_blocked_task_survives_a_restore_at_every_step() {
    let clock = clock();
    let a = claims_scenario(&clock);
    let mut b = claims_scenario(&clock);
    let (mut want, mut got) = (a.drain_events(), b.drain_events());
    for (i, step) in claims_steps().iter().enumerate() {
        clock.advance(MIN);
        got.extend(b.drain_events());
        let json = serde_json::to_string(&b.snapshot()).unwrap();
        b = restored(&clock, &json);
        let out = step(&b);
        assert_eq!(out, step(&a), "step {i}");
        if i == 4 {
            // Restored while it waited behind task 3, task 4 starts when task 3 ends.
            assert!(
                matches!(&out, Step::Served(s) if ids(s) == [TaskId::new(4)]),
                "{out:?}"
            );
        }
        want.extend(a.drain_events());
        got.extend(b.drain_events());
        assert_eq!(got, want, "step {i}");
    }
    assert_eq!(
        serde_json::to_string(&b.snapshot()).unwrap(),
        serde_json::to_string(&a.snapshot()).unwrap()
    );
}

/// Restore refuses a task blocked behind a task that is not running: nothing would
/// ever queue it again.
#[test]
fn a_task_blocked_behind_no_running_task_is_refused_on_restore() {
    let clock = clock();
    let c = claims_scenario(&clock);
    claims_steps()[0](&c);
    let mut orphan = c.snapshot();
    assert!(orphan.waiting.values().any(|w| w.behind.is_some()));
    orphan.assignments.remove(&TaskId::new(1));
    // Its conflict with task 1 is refused first (an open conflict's holder must run
    // too): without it, the blocked task is what is refused.
    let e = Coordinator::builder().restore(orphan.clone()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "corrupt coordinator snapshot: open conflict#1 is held by task#1, which is not running"
    );
    orphan.conflicts.entries.clear();
    let e = Coordinator::builder().restore(orphan).unwrap_err();
    assert_eq!(
        e.to_string(),
        "corrupt coordinator snapshot: waiting task#3 is blocked behind task#1, which is not running"
    );
}

/// A task blocked behind a claim can be withdrawn like any waiting task, and the
/// holder's end then queues nothing.
#[test]
fn a_blocked_task_can_be_cancelled() {
    let clock = clock();
    let c = claims_scenario(&clock);
    claims_steps()[0](&c);
    assert_eq!(c.cancel(TaskId::new(3)).unwrap().id(), TaskId::new(3));
    assert!(c.waiting().is_empty());
    c.drain_events();
    assert!(c.complete(TaskId::new(1), true, None).unwrap().is_empty());
    let events = c.drain_events();
    assert!(
        !events.iter().any(|e| matches!(
            &e.kind,
            EventKind::TaskQueued { .. } | EventKind::TaskAssigned { .. }
        )),
        "{events:?}"
    );
}

/// A blocked task withdrawn leaves no conflict behind: it is resolved with the
/// cancellation, so the escalation ladder never asks a human about a task that is gone.
#[test]
fn cancelling_a_blocked_task_resolves_the_conflict_it_waited_on() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    assigned(&c, claiming(1));
    let AssignOutcome::Conflicted {
        conflicts: open, ..
    } = c.assign(claiming(2)).unwrap()
    else {
        panic!("no conflict")
    };
    c.drain_events();
    c.cancel(TaskId::new(2)).unwrap();
    assert!(c.open_conflicts().is_empty());
    let events = c.drain_events();
    for id in &open {
        assert!(
            events.iter().any(|e| matches!(
                &e.kind,
                EventKind::ConflictResolved { conflict } if conflict == id
            )),
            "{events:?}"
        );
    }
    // Hours later, nobody is asked anything.
    clock.advance(std::time::Duration::from_secs(6 * 3600));
    c.tick();
    let later = c.drain_events();
    assert!(
        !later
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ConflictEscalated { .. })),
        "{later:?}"
    );
    // A snapshot restores to the same state.
    let snapshot = c.snapshot();
    let restored = Coordinator::builder().restore(snapshot.clone()).unwrap();
    assert_eq!(
        serde_json::to_string(&restored.snapshot()).unwrap(),
        serde_json::to_string(&snapshot).unwrap()
    );
}

/// Regression: two queued tasks that the policies refuse on the agent the ledger
/// grants them (here the 95% utilization cap, which the ledger does not know) handed
/// the same capacity back and forth for ever: each refusal gave the grant back, the
/// release granted it to the other, and the refused task was queued again at once,
/// to be granted by the other's refusal. A refused task now waits again only after
/// the pass.
#[test]
fn tasks_refused_on_their_grants_do_not_hand_them_back_and_forth() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=4").with_max_tasks(4))
        .unwrap();
    assigned(&c, task(1, "a", "ops", "cpu=1"));
    assigned(&c, task(2, "b", "ops", "cpu=2"));
    for id in [3, 4] {
        let out = c.assign(task(id, "c", "ops", "cpu=3")).unwrap();
        assert!(matches!(out, AssignOutcome::Queued { .. }), "{out:?}");
    }
    c.drain_events();
    // 1 + 3 of 4 cores fits the ledger but not the cap: both are refused, once each.
    assert!(c.complete(TaskId::new(2), true, None).unwrap().is_empty());
    let events = c.drain_events();
    let refused: Vec<TaskId> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PolicyRefused { refusal, .. } => Some(refusal.task),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [TaskId::new(3), TaskId::new(4)]);
    assert_eq!(c.assignments().len(), 1);
    c.with_ledger(|l| assert_eq!(l.len(), 1));
    // Neither is lost: each waits again or is rejected, with an event.
    for id in [3, 4] {
        let id = TaskId::new(id);
        let waits = c.waiting().iter().any(|w| w.task.id() == id);
        let rejected = events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TaskRejected { task, .. } if *task == id));
        assert!(waits != rejected, "{id}: {events:?}");
    }
}

/// Regression: the detector reports a newcomer's conflicts in an order that depends on
/// its history (names claimed by tasks long finished, the order claims were taken),
/// which a restore does not reproduce: the restored coordinator numbered the same
/// conflicts differently. They are now ordered by holder and names, and numbered in
/// that order.
#[test]
fn a_restore_numbers_a_newcomers_conflicts_as_before() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    // `repo/a` is claimed first, by a task that is gone by the snapshot.
    c.assign(sharing(1, concord::Claim::shared("repo/a")))
        .unwrap();
    c.complete(TaskId::new(1), true, None).unwrap();
    c.assign(sharing(2, concord::Claim::shared("repo/b")))
        .unwrap();
    c.assign(sharing(3, concord::Claim::shared("repo/a")))
        .unwrap();
    c.drain_events();
    let r = restored(&clock, &serde_json::to_string(&c.snapshot()).unwrap());
    let newcomer = || sharing(4, concord::Claim::exclusive("repo"));
    let (got, want) = (r.assign(newcomer()).unwrap(), c.assign(newcomer()).unwrap());
    assert_eq!(got, want);
    assert!(matches!(&got, AssignOutcome::Conflicted { conflicts, .. } if conflicts.len() == 2));
    assert_eq!(r.drain_events(), c.drain_events());
}

/// A claim that names nothing anywhere in a batch refuses the whole batch before any
/// task of it is assigned: no task is left assigned behind the error.
#[test]
fn a_batch_with_an_empty_claim_changes_nothing() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=4,memory=8Gi"))
        .unwrap();
    let before = serde_json::to_string(&c.snapshot()).unwrap();
    let good = task(1, "deploy", "ops", "cpu=1");
    let bad = Task::new(TaskId::new(2), "verify", "x").with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").unwrap())
            .with_claim(Claim::exclusive("//")),
    );
    let err = c.assign_batch(None, vec![good, bad]).unwrap_err();
    assert!(
        matches!(&err, CoordinatorError::InvalidTaskText { task, source: concord::NameError::NamesNothing { kind: "claim", name } }
            if *task == TaskId::new(2) && name == "//"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "task task#2: claim \"//\" names nothing: every part between its slashes is empty"
    );
    assert!(c.assignments().is_empty());
    assert_eq!(serde_json::to_string(&c.snapshot()).unwrap(), before);
}

/// A long-running coordinator forgets closed conflicts; their ids are never reused,
/// even across a snapshot and restore.
#[test]
fn forgotten_conflicts_leave_their_ids_behind() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    assigned(&c, claiming(1));
    let AssignOutcome::Conflicted { conflicts, .. } = c.assign(claiming(2)).unwrap() else {
        panic!("no conflict")
    };
    assert_eq!(conflicts, [ConflictId::new(1)]);
    // Task 1's end resolves conflict#1 and starts task 2, which waited behind it.
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(2)]);
    c.complete(TaskId::new(2), true, None).unwrap();
    clock.advance(MIN);
    assert_eq!(c.forget_closed_conflicts(c.now()), 1);
    let snapshot = c.snapshot();
    assert!(snapshot.conflicts.entries.is_empty());
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: CoordinatorSnapshot = serde_json::from_str(&json).unwrap();
    let r = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .restore(back)
        .unwrap();
    assigned(&r, claiming(3));
    let AssignOutcome::Conflicted { conflicts, .. } = r.assign(claiming(4)).unwrap() else {
        panic!("no conflict")
    };
    assert_eq!(
        conflicts,
        [ConflictId::new(2)],
        "conflict#1 is never issued again"
    );
}

/// A task submitted again, under the same id, while it waits behind the holder of
/// the conflict it met is a duplicate: refused, it changes nothing (no second conflict
/// is opened, no event). It needs no second submission: the holder's end resolves the
/// conflict and starts it.
#[test]
fn a_task_submitted_again_while_it_waits_is_a_duplicate() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    assigned(&c, claiming(1));
    let AssignOutcome::Conflicted { conflicts: a, .. } = c.assign(claiming(2)).unwrap() else {
        panic!("no conflict")
    };
    assert_eq!(a.len(), 1);
    let detected = c
        .drain_events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ConflictDetected { .. }))
        .count();
    assert_eq!(detected, 1);
    let before = serde_json::to_string(&c.snapshot()).unwrap();
    let e = c.assign(claiming(2)).unwrap_err();
    assert!(
        matches!(e, CoordinatorError::DuplicateTask { task } if task == TaskId::new(2)),
        "{e}"
    );
    assert_eq!(serde_json::to_string(&c.snapshot()).unwrap(), before);
    assert!(c.drain_events().is_empty());
    assert_eq!(c.snapshot().conflicts.entries.len(), 1);
    // Another task meets its own conflict, and waits behind the same holder.
    let AssignOutcome::Conflicted {
        conflicts: other, ..
    } = c.assign(claiming(3)).unwrap()
    else {
        panic!("no conflict")
    };
    assert_ne!(other, a);
    assert_eq!(
        behind(&c),
        [
            (TaskId::new(2), Some(TaskId::new(1))),
            (TaskId::new(3), Some(TaskId::new(1)))
        ]
    );
    c.drain_events();
    // The holder's end resolves both; task 2 starts, and task 3, which collides with
    // it now, waits behind it, in a new conflict on the ladder.
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(2)]);
    let events = c.drain_events();
    let count = |f: fn(&EventKind) -> bool| events.iter().filter(|e| f(&e.kind)).count();
    assert_eq!(
        count(|k| matches!(k, EventKind::ConflictResolved { .. })),
        2
    );
    assert_eq!(
        count(|k| matches!(k, EventKind::ConflictDetected { .. })),
        1
    );
    assert_eq!(c.snapshot().conflicts.entries.len(), 3);
    assert_eq!(
        (c.open_conflicts().iter())
            .map(|o| (o.holder, o.waiting))
            .collect::<Vec<_>>(),
        [(Some(TaskId::new(2)), Some(TaskId::new(3)))]
    );
    assert_eq!(behind(&c), [(TaskId::new(3), Some(TaskId::new(2)))]);
    // Running, it is a duplicate too.
    assert!(matches!(
        c.assign(claiming(2)),
        Err(CoordinatorError::DuplicateTask { .. })
    ));
    let served = c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(3)]);
}

/// A coordinator whose ledger gives a task that waited ten minutes a reservation.
fn reserving_after_ten_minutes(clock: &ManualClock) -> Coordinator {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .ledger_config(concord::resource::LedgerConfig {
            reserve_after: 10 * MIN,
            ..Default::default()
        })
        .build()
}

/// Regression: withdrawing a waiting task that held a reservation freed capacity the
/// ledger served to nobody, so a smaller task queued behind the reservation waited on
/// free capacity until some unrelated release came along.
#[test]
fn cancelling_a_reservation_holder_serves_the_task_behind_it() {
    let clock = clock();
    let c = reserving_after_ten_minutes(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=40").with_max_tasks(8))
        .unwrap();
    assigned(&c, task(1, "hold", "ops", "cpu=30"));
    // Too big for what is left: it waits, and after ten minutes holds a reservation.
    let big = c.assign(task(2, "big", "ops", "cpu=20")).unwrap();
    assert!(matches!(big, AssignOutcome::Queued { .. }), "{big:?}");
    clock.advance(11 * MIN);
    assert!(c.tick().is_empty());
    // Fits what is free, but not past the reservation: it waits too.
    let small = c.assign(task(3, "small", "ops", "cpu=5")).unwrap();
    assert!(matches!(small, AssignOutcome::Queued { .. }), "{small:?}");
    // The big one is withdrawn: its reservation goes, and the small one runs now.
    c.cancel(TaskId::new(2)).unwrap();
    assert!(
        c.assignments()
            .iter()
            .any(|a| a.task.id() == TaskId::new(3)),
        "waiting: {:?}",
        c.waiting()
    );
    assert!(c.waiting().is_empty());
}

/// A slot the ledger reserved for a waiting task is not free for a new one, though
/// the agent runs fewer tasks than its limit: the new task waits (it used to be
/// planned on the agent and refused at its allocation, an error for a valid task).
#[test]
fn a_new_task_waits_behind_a_reserved_slot() {
    let clock = clock();
    let c = reserving_after_ten_minutes(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=4").with_max_tasks(2))
        .unwrap();
    assigned(&c, task(1, "hold", "ops", "cpu=4"));
    // Too big for what is left: it waits, and after ten minutes holds a reservation
    // of the cpu and of the agent's second slot.
    let big = c.assign(task(2, "big", "ops", "cpu=4")).unwrap();
    assert!(matches!(big, AssignOutcome::Queued { .. }), "{big:?}");
    clock.advance(11 * MIN);
    assert!(c.tick().is_empty());
    // Needs no cpu, only a slot: the reserved one is not its to take.
    let small = c.assign(task(3, "small", "ops", "cpu=0")).unwrap();
    assert!(matches!(small, AssignOutcome::Queued { .. }), "{small:?}");
    // The first ends: the big one takes its reservation, the small one waits on.
    c.complete(TaskId::new(1), true, None).unwrap();
    let running: Vec<TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
    assert_eq!(running, [TaskId::new(2), TaskId::new(3)]);
}

/// An assigner that backtracks: it places every task but the last on the one agent,
/// finds the last refused (the agent is full), takes the placement before it back and
/// places the last instead.
#[derive(Debug)]
struct Backtracking;

impl concord::assignment::Assigner for Backtracking {
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &concord::assignment::Fleet,
        admission: &mut dyn concord::assignment::Admission,
    ) -> Result<concord::assignment::Plan, concord::assignment::AssignmentError> {
        use concord::assignment::{Explanation, Placement};
        let a = fleet.ids()[0];
        let place = |t: &Task| Placement::new(t.id(), a, 1.0, Explanation::default());
        let (last, first) = tasks.split_last().expect("a batch");
        let mut accepted = Vec::new();
        for t in first {
            admission.admit(t, a, &accepted).expect("room");
            accepted.push(place(t));
        }
        assert!(
            admission.admit(last, a, &accepted).is_err(),
            "the agent is full"
        );
        accepted.pop();
        admission
            .admit(last, a, &accepted)
            .expect("the room given back");
        accepted.push(place(last));
        let mut plan = concord::assignment::Plan::default();
        plan.placements = accepted;
        Ok(plan)
    }
}

fn backtracking(clock: &ManualClock, policies: concord::PolicySet) -> Coordinator {
    Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .assigner(Backtracking)
        .policies(policies)
        .build()
}

/// The slot rule counts what a batch has placed so far, and what an assigner takes
/// back stops counting.
#[test]
fn placements_taken_back_free_their_slot_for_the_batch() {
    let c = backtracking(&clock(), concord::PolicySet::default());
    c.register_agent(agent(1, &["ops"], &[], "cpu=4").with_max_tasks(2))
        .unwrap();
    let tasks: Vec<Task> = (1..=3).map(|i| task(i, "build", "ops", "cpu=1")).collect();
    let outcomes = c.assign_batch(None, tasks).unwrap();
    let assigned: Vec<bool> = outcomes.iter().map(|o| o.assignment().is_some()).collect();
    assert_eq!(assigned, [true, false, true]);
}

/// Likewise the utilization cap counts the resources the batch has placed so far.
#[test]
fn placements_taken_back_free_their_resources_for_the_batch() {
    let policies = concord::PolicySet::default()
        .with_rule(concord::policy::UtilizationCap::new(0.8))
        .unwrap();
    let c = backtracking(&clock(), policies);
    c.register_agent(agent(1, &["ops"], &[], "cpu=4,memory=8Gi").with_max_tasks(10))
        .unwrap();
    let tasks: Vec<Task> = (1..=4)
        .map(|i| task(i, "build", "ops", "cpu=1,memory=1Gi"))
        .collect();
    let outcomes = c.assign_batch(None, tasks).unwrap();
    let assigned: Vec<bool> = outcomes.iter().map(|o| o.assignment().is_some()).collect();
    assert_eq!(assigned, [true, true, false, true]);
}

/// The coordinator reuses the allocation of a finished task's assignment only once
/// nobody else holds it: an assignment the host kept (from the outcome or the journal)
/// still says what it said, through any number of later assignments; and assignments
/// made in reused allocations hold their own task.
#[test]
fn an_assignment_the_host_holds_is_never_reused() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=4,memory=8Gi"))
        .unwrap();
    let kept = assigned(&c, task(1, "build", "ops", "cpu=1"));
    let journaled = c.drain_events();
    c.complete(TaskId::new(1), true, None).unwrap();
    for id in 2..200 {
        let a = assigned(&c, task(id, "test", "ops", "cpu=2"));
        assert_eq!(a.task.id(), TaskId::new(id));
        assert_eq!(a.task.kind(), "test");
        drop(a);
        c.drain_events();
        c.complete(TaskId::new(id), true, None).unwrap();
    }
    assert_eq!(kept.task.id(), TaskId::new(1));
    assert_eq!(kept.task.kind(), "build");
    assert_eq!(kept.resources, "cpu=1".parse().unwrap());
    assert!(journaled.iter().any(|e| matches!(
        &e.kind,
        EventKind::TaskAssigned { assignment, .. } if assignment.task.id() == TaskId::new(1)
            && assignment.task.kind() == "build"
    )));
    // Every assignment made after the first ones reused an allocation and is whole.
    let last = assigned(&c, task(500, "ship", "ops", "cpu=3"));
    assert_eq!(
        (last.task.id(), last.task.kind(), last.resources.clone()),
        (TaskId::new(500), "ship", "cpu=3".parse().unwrap())
    );
    assert_eq!(c.assignments().len(), 1);
}

/// Regression: a task withdrawn while it waited behind the holder of its conflict,
/// then submitted again, was returned `Conflicted` without waiting anywhere: the
/// holder's end started nothing, and the task was lost. The withdrawal resolves the
/// conflict now; submitted again, the task meets a new one and waits behind the
/// holder, as any conflicted task does.
#[test]
fn a_task_withdrawn_and_submitted_again_waits_behind_the_holder() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8").with_max_tasks(4))
        .unwrap();
    assigned(&c, claiming(1));
    let AssignOutcome::Conflicted { conflicts, .. } = c.assign(claiming(2)).unwrap() else {
        panic!("no conflict")
    };
    assert_eq!(c.cancel(TaskId::new(2)).unwrap().id(), TaskId::new(2));
    assert!(c.waiting().is_empty());
    assert!(c.open_conflicts().is_empty());
    c.drain_events();

    let out = c.assign(claiming(2)).unwrap();
    let AssignOutcome::Conflicted {
        conflicts: again, ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert!(again.iter().all(|id| !conflicts.contains(id)), "{out:?}");
    assert_eq!(behind(&c), [(TaskId::new(2), Some(TaskId::new(1)))]);
    let open: Vec<_> = c.open_conflicts().iter().map(|o| o.conflict.id()).collect();
    assert_eq!(&open, again);

    // The holder's end resolves it and starts the task.
    let served = c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(2)]);
    assert!(c.waiting().is_empty());
}

/// A conflicted task starts when its holder ends, even after waiting behind it longer
/// than the ledger's `reserve_after`: the holder's end gives back room on its own
/// agent, which the task needs.
#[test]

fn a_conflicted_task_starts_when_its_holder_ends_after_a_long_wait() {
    let clock = clock();
    let c = coordinator(&clock);
    for id in 1..=2 {
        c.register_agent(agent(id, &["ops"], &[], "cpu=4").with_max_tasks(2))
            .unwrap();
    }
    let plain = |id| task(id, "build", "ops", "cpu=1");
    let editing = |id| {
        task(id, "edit", "ops", "cpu=1").with_requirements(
            Requirements::new()
                .with_role(Role::new("ops").unwrap())
                .with_resources("cpu=1".parse().unwrap())
                .with_claim(Claim::exclusive("repo/config")),
        )
    };
    assert_eq!(assigned(&c, plain(1)).agent, AgentId::new(1));
    assert_eq!(assigned(&c, editing(2)).agent, AgentId::new(2));
    assert_eq!(assigned(&c, plain(3)).agent, AgentId::new(1));
    let out = c.assign(editing(4)).unwrap();
    assert!(matches!(out, AssignOutcome::Conflicted { .. }), "{out:?}");
    assert_eq!(assigned(&c, plain(5)).agent, AgentId::new(2));
    // Every slot is taken; task 4 waits behind task 2 for the ledger's reserve_after
    // (10 minutes by default).
    clock.advance(10 * MIN);
    let served = c.complete(TaskId::new(2), true, None).unwrap();
    assert_eq!(ids(&served), [TaskId::new(4)], "waiting: {:?}", c.waiting());
    assert_eq!(served[0].agent, AgentId::new(2));
}

/// A task no agent could ever take is rejected for the lasting reason (a role, a
/// capability, a capacity), not for the status of agents busy or away at the moment:
/// an operator reading "1 is busy" would wait for an agent that can never help.
#[test]
fn a_rejection_names_what_no_agent_could_ever_offer() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8")).unwrap();
    c.register_agent(agent(2, &["ops"], &["deploy"], "cpu=2"))
        .unwrap();
    c.register_agent(agent(3, &["qa"], &[], "cpu=8")).unwrap();
    // Agent 1 is busy, agent 3 offline.
    assigned(&c, task(1, "build", "ops", "cpu=1"));
    c.set_agent_status(AgentId::new(3), AgentStatus::Offline)
        .unwrap();
    let out = c
        .assign(
            Task::new(TaskId::new(2), "launch", "launch").with_requirements(
                Requirements::new()
                    .with_role(Role::new("ops").unwrap())
                    .with_capability(Capability::new("deploy").unwrap())
                    .with_resources("cpu=4".parse().unwrap()),
            ),
        )
        .unwrap();
    let AssignOutcome::Rejected { explanation, .. } = out else {
        panic!("{out}")
    };
    assert_eq!(
        explanation.to_string(),
        "0 of 3 agents fit: 1 lacks role `ops`, 1 lacks capability `deploy`, 1 lacks cpu"
    );
}

/// Registering an id twice is the registry's `DuplicateAgent`, and changes nothing.
#[test]
fn registering_an_id_twice_is_the_registrys_duplicate() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8")).unwrap();
    let before = serde_json::to_string(&c.snapshot()).unwrap();
    let e = c
        .register_agent(agent(1, &["qa"], &[], "cpu=2"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            CoordinatorError::Registry(concord::agent::RegistryError::DuplicateAgent { agent })
                if agent == AgentId::new(1)
        ),
        "{e:?}"
    );
    assert_eq!(serde_json::to_string(&c.snapshot()).unwrap(), before);
}

/// The one-task path writes each explanation over a finished assignment's that
/// nobody holds: nothing of the old one may show through.
#[test]
fn an_explanation_written_over_a_finished_one_keeps_nothing_of_it() {
    let fleet = [
        agent(1, &["qa"], &[], "cpu=4"),
        agent(2, &["ops"], &[], "cpu=4"),
        agent(3, &["ops"], &[], "cpu=4"),
    ];
    let explain = |c: &Coordinator, t: Task| assigned(c, t).explanation.clone();
    let (clock, fresh_clock) = (clock(), clock());
    let (c, fresh) = (coordinator(&clock), coordinator(&fresh_clock));
    for p in &fleet {
        c.register_agent(p.clone()).unwrap();
        fresh.register_agent(p.clone()).unwrap();
    }
    // A first explanation with every list filled: a rejection, a runner-up, scores.
    let first = explain(&c, task(1, "deploy", "ops", "cpu=1"));
    assert!(!first.rejected.is_empty() && first.runner_up.is_some());
    c.complete(TaskId::new(1), true, None).unwrap();
    drop(first);
    c.drain_events();
    // Then one with a single fit (no runner-up), other rejections, other scores.
    let second = explain(&c, task(2, "verify", "qa", "cpu=3"));
    let expected = explain(&fresh, task(2, "verify", "qa", "cpu=3"));
    assert_eq!(second, expected);
    assert_eq!(second.runner_up, None);
}

/// A host that assigns and completes one task at a time, draining the events into
/// a buffer it keeps, makes the coordinator allocate nothing per task once warm:
/// with the default analyzer reading each description, and explanations, events
/// and outcomes as exact as ever.
#[test]
fn one_task_at_a_time_allocates_nothing_once_warm() {
    let c = Coordinator::builder().clock(clock()).build();
    for id in 0..40 {
        let (roles, caps): (&[&str], &[&str]) = match id % 3 {
            0 => (&["ops"], &["deploy", "health_check"]),
            1 => (&["qa"], &["screenshot"]),
            _ => (&["ops", "qa"], &["deploy", "health_check", "screenshot"]),
        };
        c.register_agent(agent(id, roles, caps, "cpu=8,memory=32Gi"))
            .unwrap();
    }
    // Shared texts, as a host that keeps its task templates has: the task itself
    // allocates nothing either.
    let work: Vec<(Arc<str>, Arc<str>)> = [
        (
            "release",
            "Deploy the api to staging and run the health check on every node.",
        ),
        (
            "qa",
            "Take a screenshot of the billing dashboard for visual verification.",
        ),
        (
            "check",
            "Run a health check on the search cluster in production.",
        ),
        (
            "misc",
            "Tidy the shared drive and archive last year's folders.",
        ),
    ]
    .iter()
    .map(|(k, d)| (Arc::from(*k), Arc::from(*d)))
    .collect();
    let mut journal = Vec::new();
    let mut run = |from: u64, to: u64| {
        for id in from..to {
            let (kind, text) = &work[id as usize % work.len()];
            let t = Task::new(TaskId::new(id), Arc::clone(kind), Arc::clone(text));
            let a = assigned(&c, t);
            drop(a);
            assert!(c.complete(TaskId::new(id), true, None).unwrap().is_empty());
            c.drain_events_into(&mut journal);
            journal.clear();
        }
    };
    // Warm: every buffer grown, every finished assignment kept for reuse.
    run(0, 500);
    let before = counting_alloc::allocations();
    run(500, 1_500);
    let made = counting_alloc::allocations() - before;
    assert_eq!(made, 0, "{made} allocations for 1,000 tasks");
}

/// A task the queue granted while another held its claims waits behind the holder,
/// in a conflict the queue opened: `why_waiting` names the holder and the conflict.
#[test]
fn a_task_granted_behind_a_claim_says_whom_it_waits_for() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=10").with_max_tasks(4))
        .unwrap();
    let claiming = |id: u64, cpu: &str| {
        task(id, "edit", "ops", cpu).with_requirements(
            Requirements::new()
                .with_role(Role::new("ops").unwrap())
                .with_resources(cpu.parse().unwrap())
                .with_claim(Claim::exclusive("repo/config")),
        )
    };
    assigned(&c, task(1, "build", "ops", "cpu=5"));
    // Too big for what is free: queued for capacity, its claim held by nobody yet.
    assert!(matches!(
        c.assign(claiming(2, "cpu=6")).unwrap(),
        AssignOutcome::Queued { .. }
    ));
    // A smaller task fits beside the first and takes the claim meanwhile.
    assigned(&c, claiming(3, "cpu=2"));
    // The first frees room: the queue grants the waiting task, whose claim is held.
    c.complete(TaskId::new(1), true, None).unwrap();
    assert_eq!(behind(&c), [(TaskId::new(2), Some(TaskId::new(3)))]);
    assert_eq!(
        c.why_waiting(TaskId::new(2)).as_deref(),
        Some("behind the claims of task#3 (conflict#1 resolving)")
    );
}

/// Found by the fuzzer: a group forgotten while one of its tasks still ran. The
/// restore rebuilt that task's duty attempt from the running tasks, which the
/// checkpoint no longer held, so a checkpoint of the restored coordinator differed
/// from the one it came from. The attempts in progress are the checkpoint's own now.
#[test]
fn a_checkpoint_with_a_forgotten_group_still_running_restores_to_itself() {
    let clock = clock();
    let c = coordinator(&clock);
    c.register_agent(agent(1, &["ops"], &[], "cpu=8")).unwrap();
    let deploy = c
        .assign_in_group("run-1", task(1, "deploy", "ops", "cpu=1"))
        .unwrap();
    assert!(deploy.assignment().is_some(), "{deploy}");
    assert!(c.forget_group("run-1"));
    let first = c.snapshot();
    let restored = Coordinator::builder()
        .clock(clock.clone())
        .restore(first.clone())
        .unwrap();
    let json = |s: &concord::coordinator::CoordinatorSnapshot| serde_json::to_value(s).unwrap();
    assert_eq!(json(&restored.snapshot()), json(&first));
}
