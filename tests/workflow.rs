//! Workflows: definitions, validation, runs, retries, timeouts, evidence, snapshots.

use std::time::Duration;

use concord::workflow::{
    RetryPolicy, Run, RunCondition, RunOutcome, StepChange, StepOutcome, StepSpec, StepStatus,
    Workflow, WorkflowDefinition, WorkflowError,
};
use concord::{AgentId, Role, Timestamp};

const A: AgentId = AgentId::new(1);
const B: AgentId = AgentId::new(2);

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn diamond() -> Workflow {
    Workflow::builder("diamond")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b").after("a"))
        .step(StepSpec::new("c").after("a"))
        .step(StepSpec::new("d").after("b").after("c"))
        .build()
        .unwrap()
}

fn names(run: &Run) -> Vec<String> {
    run.ready()
        .into_iter()
        .map(|s| run.name(s).unwrap().to_owned())
        .collect()
}

fn ok(run: &mut Run, step: &str, now: Timestamp) {
    run.start(step, A, now).unwrap();
    run.finish(step, A, StepOutcome::success(), now).unwrap();
}

fn fail(run: &mut Run, step: &str, now: Timestamp) {
    run.start(step, A, now).unwrap();
    run.finish(step, A, StepOutcome::failure("boom"), now)
        .unwrap();
}

// ----- validation -----

#[test]
fn empty_name_is_refused() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("  "))
        .build()
        .unwrap_err();
    assert_eq!(err, WorkflowError::EmptyName { position: 1 });
}

#[test]
fn duplicate_name_is_refused() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("a"))
        .build()
        .unwrap_err();
    assert_eq!(err, WorkflowError::DuplicateStep { step: "a".into() });
}

#[test]
fn unknown_dependency_is_refused() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a").after("ghost"))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        WorkflowError::UnknownDependency {
            step: "a".into(),
            dependency: "ghost".into()
        }
    );
    assert!(err.to_string().contains("ghost"));
}

#[test]
fn cycle_names_its_steps_in_order() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("start"))
        .step(StepSpec::new("x").after("start").after("z"))
        .step(StepSpec::new("y").after("x"))
        .step(StepSpec::new("z").after("y"))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        WorkflowError::Cycle {
            path: vec!["x".into(), "y".into(), "z".into()]
        }
    );
    let self_loop = Workflow::builder("w")
        .step(StepSpec::new("me").after("me"))
        .build()
        .unwrap_err();
    assert_eq!(
        self_loop,
        WorkflowError::Cycle {
            path: vec!["me".into()]
        }
    );
}

#[test]
fn input_from_non_ancestor_is_refused() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b"))
        .step(StepSpec::new("c").after("a").with_input("b", "url", "url"))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        WorkflowError::InputFromNonAncestor {
            step: "c".into(),
            from: "b".into(),
            input: "url".into()
        }
    );
    // An ancestor two levels up is fine.
    Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b").after("a"))
        .step(StepSpec::new("c").after("b").with_input("a", "url", "url"))
        .build()
        .unwrap();
}

#[test]
fn duplicate_input_and_bad_retry_are_refused() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(
            StepSpec::new("b")
                .after("a")
                .with_input("a", "x", "in")
                .with_input("a", "y", "in"),
        )
        .build()
        .unwrap_err();
    assert!(matches!(err, WorkflowError::DuplicateInput { .. }));
    for bad in [
        RetryPolicy::exponential(0),
        RetryPolicy::exponential(2).with_multiplier(f64::NAN),
        RetryPolicy::exponential(2).with_multiplier(0.5),
        RetryPolicy::exponential(2).with_jitter(1.5),
    ] {
        let err = Workflow::builder("w")
            .step(StepSpec::new("a").with_retry(bad))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, WorkflowError::InvalidRetryPolicy { ref step, .. } if step == "a"),
            "{err}"
        );
    }
}

#[test]
fn validate_roles_names_the_unservable_step() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("deploy").with_role(Role::new("ops").unwrap()))
        .step(
            StepSpec::new("audit")
                .after("deploy")
                .with_role(Role::new("security").unwrap()),
        )
        .build()
        .unwrap();
    let ops = Role::new("ops").unwrap();
    assert_eq!(
        w.validate_roles(std::slice::from_ref(&ops)),
        Err(WorkflowError::UnservableStep {
            step: "audit".into(),
            role: Role::new("security").unwrap()
        })
    );
    assert!(
        w.validate_roles(&[ops, Role::new("security").unwrap()])
            .is_ok()
    );
}

#[test]
fn workflow_errors_wrap_into_the_crate_error() {
    let err: concord::Error = WorkflowError::DuplicateStep { step: "a".into() }.into();
    assert!(matches!(err, concord::Error::Workflow(_)));
}

// ----- definitions -----

#[test]
fn definition_round_trips_through_serde() {
    let w = Workflow::builder("release")
        .step(
            StepSpec::new("deploy")
                .with_kind("deploy-staging")
                .with_role(Role::new("ops").unwrap())
                .with_capability("deploy".parse().unwrap())
                .with_resources("cpu=500m,memory=1Gi".parse().unwrap())
                .with_claim(concord::Claim::exclusive("env/staging"))
                .with_claim(concord::Claim::shared("repo/"))
                .with_timeout(Duration::from_secs(600))
                .with_retry(
                    RetryPolicy::exponential(3)
                        .with_jitter(0.25)
                        .with_initial_backoff(Duration::from_millis(1500)),
                ),
        )
        .step(
            StepSpec::new("verify")
                .after("deploy")
                .with_input("deploy", "url", "target"),
        )
        .step(
            StepSpec::new("rollback")
                .after("verify")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let def = w.definition();
    let json = serde_json::to_string_pretty(&def).unwrap();
    let back: WorkflowDefinition = serde_json::from_str(&json).unwrap();
    assert_eq!(back, def);
    let rebuilt = Workflow::from_definition(back).unwrap();
    assert_eq!(rebuilt, w);
    assert_eq!(
        rebuilt
            .spec(rebuilt.step("deploy").unwrap())
            .unwrap()
            .kind(),
        "deploy-staging"
    );
    assert_eq!(
        rebuilt
            .spec(rebuilt.step("verify").unwrap())
            .unwrap()
            .kind(),
        "verify"
    );
    // Claims survive the trip and reach the requirements the coordinator sees.
    let deploy = rebuilt.spec(rebuilt.step("deploy").unwrap()).unwrap();
    assert_eq!(deploy.claims().len(), 2);
    assert_eq!(deploy.requirements().claims(), deploy.claims());
    assert!(json.contains("env/staging"));

    // Minimal hand-written data uses the defaults.
    let def: WorkflowDefinition = serde_json::from_str(
        r#"{"name":"w","steps":[{"name":"a"},{"name":"b","depends_on":["a"],"condition":"always"}]}"#,
    )
    .unwrap();
    let w = Workflow::from_definition(def).unwrap();
    assert_eq!(w.len(), 2);
    // Unknown fields are refused rather than ignored.
    assert!(serde_json::from_str::<WorkflowDefinition>(r#"{"name":"w","stepz":[]}"#).is_err());
}

// ----- runs -----

#[test]
fn diamond_runs_in_dependency_order() {
    let w = diamond();
    let mut run = Run::new(&w, "r1", 1, t(0));
    assert_eq!(names(&run), ["a"]);
    ok(&mut run, "a", t(1));
    assert_eq!(names(&run), ["b", "c"]);
    ok(&mut run, "c", t(2));
    assert_eq!(names(&run), ["b"]);
    assert_eq!(run.status("d"), Some(StepStatus::Pending));
    ok(&mut run, "b", t(3));
    assert_eq!(names(&run), ["d"]);
    ok(&mut run, "d", t(4));
    assert!(run.is_finished());
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.next_ready(), None);
}

#[test]
fn empty_workflow_is_finished_at_once() {
    let w = Workflow::builder("empty").build().unwrap();
    let run = Run::new(&w, "r", 0, t(0));
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

#[test]
fn failure_skips_dependents_and_fires_handlers() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("deploy"))
        .step(StepSpec::new("verify").after("deploy"))
        .step(StepSpec::new("announce").after("verify"))
        .step(
            StepSpec::new("rollback")
                .after("announce")
                .with_condition(RunCondition::AnyFailed),
        )
        .step(
            StepSpec::new("cleanup")
                .after("rollback")
                .with_condition(RunCondition::Always),
        )
        .step(StepSpec::new("after-rollback").after("rollback"))
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    fail(&mut run, "deploy", t(1));
    assert_eq!(run.status("deploy"), Some(StepStatus::Failed));
    assert_eq!(run.status("verify"), Some(StepStatus::Skipped));
    assert_eq!(run.status("announce"), Some(StepStatus::Skipped));
    // The failure is carried through the skipped steps to the handler.
    assert_eq!(names(&run), ["rollback"]);
    ok(&mut run, "rollback", t(2));
    assert_eq!(names(&run), ["cleanup", "after-rollback"]);
    ok(&mut run, "cleanup", t(3));
    ok(&mut run, "after-rollback", t(3));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

#[test]
fn handlers_are_skipped_when_nothing_failed_and_always_runs() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("work"))
        .step(
            StepSpec::new("rollback")
                .after("work")
                .with_condition(RunCondition::AnyFailed),
        )
        .step(StepSpec::new("notify").after("rollback"))
        .step(
            StepSpec::new("cleanup")
                .after("rollback")
                .with_condition(RunCondition::Always),
        )
        .step(StepSpec::new("orphan-handler").with_condition(RunCondition::AnyFailed))
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    assert_eq!(run.status("orphan-handler"), Some(StepStatus::Skipped));
    ok(&mut run, "work", t(1));
    assert_eq!(run.status("rollback"), Some(StepStatus::Skipped));
    // A skipped dependency is not a success, so `notify` is skipped too, but it does
    // not carry a failure.
    assert_eq!(run.status("notify"), Some(StepStatus::Skipped));
    assert_eq!(names(&run), ["cleanup"]);
    ok(&mut run, "cleanup", t(2));
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

#[test]
fn inputs_flow_downstream_and_evidence_is_recorded() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("deploy"))
        .step(StepSpec::new("check").after("deploy"))
        .step(
            StepSpec::new("screenshot")
                .after("check")
                .with_input("deploy", "url", "page")
                .with_input("deploy", "missing", "nothing"),
        )
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("deploy", A, t(1)).unwrap();
    run.finish(
        "deploy",
        A,
        StepOutcome::success().with_output("url", "https://staging.example"),
        t(2),
    )
    .unwrap();
    ok(&mut run, "check", t(3));
    let inputs = run.inputs_for("screenshot").unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs["page"], "https://staging.example");
    run.start("screenshot", B, t(4)).unwrap();
    run.finish(
        "screenshot",
        B,
        StepOutcome::success().with_output("path", "/shots/home.png"),
        t(5),
    )
    .unwrap();
    assert_eq!(
        run.outputs("screenshot").unwrap()["path"],
        "/shots/home.png"
    );

    let h = run.history();
    // Ready, started, succeeded for each of three steps.
    assert_eq!(h.len(), 9);
    let shot = h
        .iter()
        .find(|e| {
            run.name(e.step) == Some("screenshot")
                && matches!(e.change, StepChange::Succeeded { .. })
        })
        .unwrap();
    assert_eq!(shot.agent, Some(B));
    assert_eq!(shot.at, t(5));
    assert_eq!(shot.attempt, 1);
    match &shot.change {
        StepChange::Succeeded { outputs } => assert_eq!(outputs["path"], "/shots/home.png"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.windows(2).all(|p| p[0].at <= p[1].at));
    let json = serde_json::to_string(h).unwrap();
    let back: Vec<concord::RunEvent> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}

#[test]
fn bad_reports_are_refused_and_change_nothing() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("a", A, t(1)).unwrap();
    let before = run.snapshot();
    assert_eq!(
        run.finish("a", B, StepOutcome::success(), t(2)),
        Err(WorkflowError::WrongAgent {
            step: "a".into(),
            expected: A,
            got: B
        })
    );
    assert_eq!(
        run.finish("b", A, StepOutcome::success(), t(2)),
        Err(WorkflowError::NotRunning {
            step: "b".into(),
            status: StepStatus::Pending
        })
    );
    assert_eq!(
        run.start("d", A, t(2)),
        Err(WorkflowError::NotReady {
            step: "d".into(),
            status: StepStatus::Pending
        })
    );
    assert!(matches!(
        run.start("nope", A, t(2)),
        Err(WorkflowError::UnknownStep { .. })
    ));
    let foreign = Workflow::builder("big")
        .step(StepSpec::new("1"))
        .step(StepSpec::new("2"))
        .step(StepSpec::new("3"))
        .step(StepSpec::new("4"))
        .step(StepSpec::new("5"))
        .build()
        .unwrap();
    assert!(matches!(
        run.start(foreign.step("5").unwrap(), A, t(2)),
        Err(WorkflowError::UnknownStep { .. })
    ));
    assert_eq!(run.snapshot(), before);
    run.finish("a", A, StepOutcome::success(), t(2)).unwrap();
    assert_eq!(
        run.finish("a", A, StepOutcome::success(), t(3)),
        Err(WorkflowError::NotRunning {
            step: "a".into(),
            status: StepStatus::Succeeded
        })
    );
}

// ----- retries and timeouts -----

fn flaky(seed_policy: RetryPolicy) -> Workflow {
    Workflow::builder("w")
        .step(StepSpec::new("prep"))
        .step(StepSpec::new("flaky").after("prep").with_retry(seed_policy))
        .step(StepSpec::new("after").after("flaky"))
        .build()
        .unwrap()
}

fn retry_times(seed: u64) -> Vec<Timestamp> {
    let policy = RetryPolicy::exponential(4)
        .with_initial_backoff(Duration::from_secs(10))
        .with_multiplier(3.0)
        .with_max_backoff(Duration::from_secs(60))
        .with_jitter(0.5);
    let w = flaky(policy);
    let mut run = Run::new(&w, "r", seed, t(0));
    ok(&mut run, "prep", t(0));
    let mut now = t(0);
    let mut times = Vec::new();
    for _ in 0..3 {
        fail(&mut run, "flaky", now);
        assert_eq!(run.status("flaky"), Some(StepStatus::BackingOff));
        assert_eq!(run.status("prep"), Some(StepStatus::Succeeded));
        assert!(run.ready().is_empty());
        let at = run.next_deadline().unwrap();
        times.push(at);
        // Nothing happens before the deadline.
        assert_eq!(run.tick(at - Duration::from_nanos(1)), 0);
        assert_eq!(run.tick(at), 1);
        assert_eq!(names(&run), ["flaky"]);
        now = at;
    }
    fail(&mut run, "flaky", now);
    assert_eq!(run.status("flaky"), Some(StepStatus::Failed));
    assert_eq!(run.attempts("flaky"), Some(4));
    assert_eq!(run.attempts("prep"), Some(1));
    assert_eq!(run.status("after"), Some(StepStatus::Skipped));
    times
}

#[test]
fn retries_back_off_with_seeded_jitter() {
    let a = retry_times(42);
    assert_eq!(a, retry_times(42), "same seed, same delays");
    assert_ne!(a, retry_times(43), "another seed, other delays");
    // Delays are within [base * (1 - jitter), base], base = 10s, 30s, 60s (capped).
    let mut prev = t(0);
    for (at, base) in a.iter().zip([10u64, 30, 60]) {
        let d = at.duration_since(prev);
        assert!(d <= Duration::from_secs(base), "{d:?} > {base}s");
        assert!(d >= Duration::from_secs(base) / 2, "{d:?} < {base}s/2");
        prev = *at;
    }
}

#[test]
fn retry_succeeds_and_unblocks_dependents() {
    let w = flaky(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO));
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "prep", t(0));
    fail(&mut run, "flaky", t(1));
    // A zero backoff makes it ready again at once.
    assert_eq!(names(&run), ["flaky"]);
    ok(&mut run, "flaky", t(2));
    assert_eq!(names(&run), ["after"]);
    let failed = run
        .history()
        .iter()
        .find(|e| matches!(e.change, StepChange::AttemptFailed { .. }))
        .unwrap();
    assert_eq!(failed.attempt, 1);
    assert_eq!(
        failed.change,
        StepChange::AttemptFailed {
            reason: "boom".into(),
            retry_at: Some(t(1))
        }
    );
}

#[test]
fn timeouts_fire_on_tick() {
    let w = Workflow::builder("w")
        .step(
            StepSpec::new("slow")
                .with_timeout(Duration::from_secs(30))
                .with_retry(
                    RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(5)),
                ),
        )
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    assert_eq!(run.next_deadline(), None);
    run.start("slow", A, t(0)).unwrap();
    assert_eq!(run.next_deadline(), Some(t(30)));
    assert_eq!(run.tick(t(29)), 0);
    run.tick(t(31));
    assert_eq!(run.status("slow"), Some(StepStatus::BackingOff));
    assert_eq!(run.next_deadline(), Some(t(36)));
    // The timed-out agent's late report is refused.
    assert!(matches!(
        run.finish("slow", A, StepOutcome::success(), t(32)),
        Err(WorkflowError::NotRunning { .. })
    ));
    run.tick(t(36));
    run.start("slow", B, t(36)).unwrap();
    run.tick(t(100));
    assert_eq!(run.status("slow"), Some(StepStatus::Failed));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    assert_eq!(run.next_deadline(), None);
    let reasons: Vec<_> = run
        .history()
        .iter()
        .filter_map(|e| match &e.change {
            StepChange::AttemptFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["timed out after 30s", "timed out after 30s"]);
}

#[test]
fn finishing_in_time_clears_the_timeout() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("s").with_timeout(Duration::from_secs(30)))
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("s", A, t(0)).unwrap();
    run.finish("s", A, StepOutcome::success(), t(10)).unwrap();
    assert_eq!(run.next_deadline(), None);
    assert_eq!(run.tick(t(100)), 0);
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

// ----- cancellation -----

#[test]
fn cancel_stops_everything() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "a", t(1));
    run.start("b", A, t(2)).unwrap();
    assert_eq!(run.cancel(t(3)), 3);
    assert!(run.ready().is_empty());
    assert_eq!(run.next_ready(), None);
    assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
    assert_eq!(run.status("a"), Some(StepStatus::Succeeded));
    assert_eq!(run.status("b"), Some(StepStatus::Cancelled));
    assert!(matches!(
        run.finish("b", A, StepOutcome::success(), t(4)),
        Err(WorkflowError::NotRunning { .. })
    ));
    assert_eq!(run.cancel(t(5)), 0);
    let cancelled_b = run
        .history()
        .iter()
        .find(|e| run.name(e.step) == Some("b") && e.change == StepChange::Cancelled)
        .unwrap();
    assert_eq!(cancelled_b.agent, Some(A));
    // A cancelled run survives a snapshot.
    let back = Run::restore(&w, run.snapshot()).unwrap();
    assert_eq!(back, run);
}

// ----- snapshots -----

#[test]
fn snapshot_restore_continues_without_repeating() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 9, t(0));
    ok(&mut run, "a", t(1));
    let snap = run.snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let mut back = Run::restore(&w, serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back, run);
    assert_eq!(names(&back), ["b", "c"]);
    assert!(matches!(
        back.start("a", A, t(2)),
        Err(WorkflowError::NotReady { .. })
    ));
    ok(&mut back, "b", t(2));
    ok(&mut back, "c", t(2));
    ok(&mut back, "d", t(3));
    assert_eq!(back.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(back.attempts("a"), Some(1));
}

#[test]
fn running_step_at_snapshot_is_a_failed_attempt() {
    let w =
        Workflow::builder("w")
            .step(StepSpec::new("once"))
            .step(StepSpec::new("twice").with_retry(
                RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(5)),
            ))
            .step(
                StepSpec::new("handler")
                    .after("once")
                    .with_condition(RunCondition::AnyFailed),
            )
            .build()
            .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("once", A, t(1)).unwrap();
    run.start("twice", B, t(1)).unwrap();
    run.tick(t(7));
    let mut back = Run::restore(&w, run.snapshot()).unwrap();
    // One attempt allowed: it fails, and its handler becomes ready.
    assert_eq!(back.status("once"), Some(StepStatus::Failed));
    assert_eq!(names(&back), ["handler"]);
    // Attempts remain: retried after its backoff from the snapshot time.
    assert_eq!(back.status("twice"), Some(StepStatus::BackingOff));
    assert_eq!(back.next_deadline(), Some(t(12)));
    let last = back.history().last().unwrap();
    assert_eq!(back.name(last.step), Some("twice"));
    assert_eq!(
        last.change,
        StepChange::AttemptFailed {
            reason: "interrupted by restart".into(),
            retry_at: Some(t(12))
        }
    );
    // The interrupted agent's late report is refused.
    assert!(
        back.finish("twice", B, StepOutcome::success(), t(8))
            .is_err()
    );
    back.tick(t(12));
    ok(&mut back, "twice", t(13));
    ok(&mut back, "handler", t(13));
    assert_eq!(back.outcome(), Some(RunOutcome::Failed));
}

#[test]
fn restore_refuses_foreign_or_corrupt_snapshots() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "a", t(1));
    let snap = run.snapshot();

    let other = Workflow::builder("diamond")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b").after("a"))
        .step(StepSpec::new("c"))
        .step(StepSpec::new("d").after("b").after("c"))
        .build()
        .unwrap();
    let corrupt = |r: Result<Run, WorkflowError>| {
        assert!(
            matches!(r, Err(WorkflowError::CorruptSnapshot { .. })),
            "{r:?}"
        )
    };
    corrupt(Run::restore(&other, snap.clone()));
    let shrunk = Workflow::builder("diamond")
        .step(StepSpec::new("a"))
        .build()
        .unwrap();
    corrupt(Run::restore(&shrunk, snap.clone()));

    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(&snap).unwrap();
        f(&mut v);
        Run::restore(&w, serde_json::from_value(v).unwrap())
    };
    corrupt(edit(&|v| v["version"] = 99.into()));
    corrupt(edit(&|v| v["workflow"] = "other".into()));
    corrupt(edit(&|v| v["steps"][3]["status"] = "succeeded".into()));
    corrupt(edit(&|v| v["steps"][0]["status"] = "pending".into()));
    corrupt(edit(&|v| v["steps"][1]["attempts"] = 7.into()));
    corrupt(edit(&|v| v["ready"] = serde_json::json!(["b"])));
    corrupt(edit(&|v| v["ready"] = serde_json::json!(["b", "b"])));
    corrupt(edit(&|v| v["ready"] = serde_json::json!(["b", "ghost"])));
    corrupt(edit(&|v| v["cancelled"] = true.into()));
    // History events name steps by index: one past the workflow is refused, by name.
    let err = edit(&|v| v["history"][0]["step"] = 4.into()).unwrap_err();
    assert!(err.to_string().contains("step#4"), "{err}");
    assert!(edit(&|_| {}).is_ok());
}

/// Regression: `after` checked for repeats with a linear scan, so building a step with
/// many dependencies was quadratic; repeats are now removed once, at build time.
#[test]
fn repeated_dependencies_are_removed_at_build() {
    let wf = Workflow::builder("fan-in")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b"))
        .step(
            StepSpec::new("c")
                .after("a")
                .after("b")
                .after("a")
                .after("b"),
        )
        .build()
        .unwrap();
    let c = wf.step("c").unwrap();
    assert_eq!(wf.spec(c).unwrap().dependencies(), ["a", "b"]);
    assert_eq!(wf.dependencies(c).count(), 2);
}

#[test]
fn statuses_outcomes_and_changes_print_as_one_readable_line() {
    let statuses = [
        (StepStatus::Pending, "pending"),
        (StepStatus::Ready, "ready"),
        (StepStatus::Running, "running"),
        (StepStatus::BackingOff, "backing off"),
        (StepStatus::Succeeded, "succeeded"),
        (StepStatus::Failed, "failed"),
        (StepStatus::Skipped, "skipped"),
        (StepStatus::Cancelled, "cancelled"),
    ];
    for (status, text) in statuses {
        assert_eq!(status.to_string(), text);
    }
    assert_eq!(RunOutcome::Succeeded.to_string(), "succeeded");
    assert_eq!(RunOutcome::Failed.to_string(), "failed");
    assert_eq!(RunOutcome::Cancelled.to_string(), "cancelled");
    assert_eq!(StepOutcome::success().to_string(), "succeeded");
    assert_eq!(
        StepOutcome::failure("disk full")
            .with_output("log", "/tmp/a")
            .with_output("code", "28")
            .to_string(),
        "failed: disk full (code=28, log=/tmp/a)"
    );
    assert_eq!(RunCondition::AnyFailed.to_string(), "any_failed");

    // A run that goes through every kind of change, printed from its history.
    let w =
        Workflow::builder("release")
            .step(StepSpec::new("deploy").with_retry(
                RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(30)),
            ))
            .step(StepSpec::new("verify").after("deploy"))
            .step(
                StepSpec::new("rollback")
                    .after("verify")
                    .with_condition(RunCondition::AnyFailed),
            )
            .step(StepSpec::new("notify"))
            .step(StepSpec::new("screenshot"))
            .step(StepSpec::new("archive"))
            .build()
            .unwrap();
    let start: Timestamp = "2023-11-14T22:13:20Z".parse().unwrap();
    let mut run = w.start_run("r", 0, start);
    run.start("deploy", A, start).unwrap();
    run.finish("deploy", A, StepOutcome::failure("timeout"), start)
        .unwrap();
    let retry = start + Duration::from_secs(30);
    run.tick(retry);
    run.start("deploy", B, retry).unwrap();
    run.finish(
        "deploy",
        B,
        StepOutcome::success().with_output("url", "https://staging"),
        retry,
    )
    .unwrap();
    run.start("verify", A, retry).unwrap();
    run.finish("verify", A, StepOutcome::success(), retry)
        .unwrap();
    run.start("notify", A, retry).unwrap();
    run.skip_attempt("notify", A, "no mail server".into(), retry)
        .unwrap();
    run.abandon("screenshot", "no agent has role qa".into(), retry)
        .unwrap();
    run.cancel(retry);

    let lines: Vec<String> = run
        .history()
        .iter()
        .filter(|e| e.change != StepChange::Ready)
        .map(|e| e.display_in(&w).to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "2023-11-14T22:13:20.000Z deploy (attempt 1, agent#1): started",
            "2023-11-14T22:13:20.000Z deploy (attempt 1, agent#1): attempt failed: timeout; \
             retry at 2023-11-14T22:13:50.000Z",
            "2023-11-14T22:13:50.000Z deploy (attempt 2, agent#2): started",
            "2023-11-14T22:13:50.000Z deploy (attempt 2, agent#2): succeeded (url=https://staging)",
            "2023-11-14T22:13:50.000Z verify (attempt 1, agent#1): started",
            "2023-11-14T22:13:50.000Z verify (attempt 1, agent#1): succeeded",
            "2023-11-14T22:13:50.000Z rollback: skipped: run condition any_failed does not hold",
            "2023-11-14T22:13:50.000Z notify (attempt 1, agent#1): started",
            "2023-11-14T22:13:50.000Z notify (attempt 1, agent#1): skipped by agent: no mail server",
            "2023-11-14T22:13:50.000Z screenshot: abandoned: no agent has role qa",
            "2023-11-14T22:13:50.000Z archive: cancelled",
        ]
    );
    // Without the workflow, the step is its handle.
    let started = run
        .history()
        .iter()
        .find(|e| e.change == StepChange::Started);
    assert_eq!(
        started.unwrap().to_string(),
        "2023-11-14T22:13:20.000Z step#0 (attempt 1, agent#1): started"
    );
    // Errors name the status in the same words.
    let err = run.start("verify", A, retry).unwrap_err();
    assert_eq!(err.to_string(), r#"step "verify" is succeeded, not ready"#);
}
