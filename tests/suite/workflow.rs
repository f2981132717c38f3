//! Workflows: definitions, validation, runs, retries, timeouts, evidence, snapshots.

use std::time::Duration;

use concord::workflow::{
    MAX_STEP_WAIT, RUN_SNAPSHOT_VERSION, RetryPolicy, Run, RunCondition, RunOutcome, StepChange,
    StepOutcome, StepSpec, StepStatus, Workflow, WorkflowDefinition, WorkflowError,
};
use concord::{AgentId, Role, TaskId, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

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
fn a_workflow_without_steps_is_refused() {
    let err = Workflow::builder("empty").build().unwrap_err();
    assert_eq!(
        err,
        WorkflowError::NoSteps {
            workflow: "empty".into()
        }
    );
    assert_eq!(err.to_string(), "workflow \"empty\" has no steps");
    let def: WorkflowDefinition = serde_json::from_str(r#"{"name": "cut short"}"#).unwrap();
    assert!(matches!(
        Workflow::from_definition(def),
        Err(WorkflowError::NoSteps { workflow }) if workflow == "cut short"
    ));
}

#[test]
fn a_zero_timeout_is_refused_when_the_workflow_is_built() {
    let err = Workflow::builder("w")
        .step(StepSpec::new("a").with_timeout(Duration::from_secs(1)))
        .step(StepSpec::new("b").with_timeout(Duration::ZERO).after("a"))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        WorkflowError::InvalidTimeout {
            step: "b".into(),
            timeout: Duration::ZERO
        }
    );
    assert!(err.to_string().contains("\"b\""), "{err}");
    // From a config file too.
    let def: WorkflowDefinition =
        serde_json::from_str(r#"{"name": "w", "steps": [{"name": "a", "timeout": 0}]}"#).unwrap();
    assert!(matches!(
        Workflow::from_definition(def),
        Err(WorkflowError::InvalidTimeout { step, .. }) if step == "a"
    ));
    // The shortest timeout there is still builds.
    assert!(
        Workflow::builder("w")
            .step(StepSpec::new("a").with_timeout(Duration::from_nanos(1)))
            .build()
            .is_ok()
    );
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
        assert_eq!(run.backing_off_steps(), 1);
        let restored = Run::restore(&w, run.snapshot()).unwrap();
        assert_eq!(restored.backing_off_steps(), 1);
        assert_eq!(run.status("prep"), Some(StepStatus::Succeeded));
        assert!(run.ready().is_empty());
        let at = run.next_deadline().unwrap();
        times.push(at);
        // Nothing happens before the deadline.
        assert_eq!(run.tick(at - Duration::from_nanos(1)), 0);
        assert_eq!(run.tick(at), 1);
        assert_eq!(run.backing_off_steps(), 0);
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
    let failed = crate::history::first_attempt_failed(&run);
    assert_eq!(failed.attempt, 1);
    assert_eq!(
        failed.change,
        StepChange::AttemptFailed {
            reason: "boom".into(),
            retry_at: Some(t(1)),
            retryable: true
        }
    );
}

/// Regression (an outside user trial): the run retried every failure while attempts
/// remained, so a failure reported final was attempted as often as the policy
/// allowed. A final failure fails the step at once; its dependents and handlers go
/// on as after any failed step, and the history says why no retry came.
#[test]
fn a_final_failure_fails_the_step_whatever_attempts_remain() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("compile").with_retry(RetryPolicy::exponential(4)))
        .step(StepSpec::new("package").after("compile"))
        .step(
            StepSpec::new("notify")
                .after("compile")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("compile", A, t(0)).unwrap();
    run.finish(
        "compile",
        A,
        StepOutcome::final_failure("compile error in main.rs"),
        t(1),
    )
    .unwrap();
    assert_eq!(run.status("compile"), Some(StepStatus::Failed));
    assert_eq!(run.attempts("compile"), Some(1));
    assert_eq!(run.status("package"), Some(StepStatus::Skipped));
    assert_eq!(names(&run), ["notify"]);
    assert_eq!(run.next_deadline(), None, "no back-off to wait out");
    let failed = crate::history::first_attempt_failed(&run);
    assert_eq!(
        failed.change,
        StepChange::AttemptFailed {
            reason: "compile error in main.rs".into(),
            retry_at: None,
            retryable: false,
        }
    );
    assert_eq!(
        failed.display_in(&w).to_string(),
        "1970-01-01T00:00:01.000Z compile (attempt 1, agent#1): attempt failed: \
         compile error in main.rs; not retryable"
    );
    ok(&mut run, "notify", t(2));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

/// `StepOutcome::failure` stays retryable for hosts that drive a `Run` themselves:
/// only `final_failure` ends the step early, and a retryable failure on the last
/// attempt says the attempts ran out.
#[test]
fn a_retryable_failure_is_retried_until_attempts_run_out() {
    let w = flaky(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO));
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "prep", t(0));
    fail(&mut run, "flaky", t(1));
    assert_eq!(run.status("flaky"), Some(StepStatus::Ready));
    fail(&mut run, "flaky", t(2));
    assert_eq!(run.status("flaky"), Some(StepStatus::Failed));
    assert_eq!(run.attempts("flaky"), Some(2));
    let last = crate::history::last_attempt_failed(&run);
    assert_eq!(
        last.change,
        StepChange::AttemptFailed {
            reason: "boom".into(),
            retry_at: None,
            retryable: true,
        }
    );
    assert_eq!(
        last.change.to_string(),
        "attempt failed: boom; no attempt left"
    );
}

/// `retryable` is new in `StepOutcome` and in `AttemptFailed`: what was written
/// before it reads back retryable, as every failure was then, and a retryable
/// failure writes what older readers (which refuse unknown fields) can read.
#[test]
fn retryable_reads_back_true_when_absent_and_is_written_only_when_false() {
    let old: StepOutcome =
        serde_json::from_str(r#"{"success":false,"reason":"disk full"}"#).unwrap();
    assert_eq!(old, StepOutcome::failure("disk full"));
    assert!(old.retryable);
    let empty: StepOutcome = serde_json::from_str("{}").unwrap();
    assert!(!empty.success && empty.retryable);
    assert!(
        !serde_json::to_string(&StepOutcome::failure("x"))
            .unwrap()
            .contains("retryable")
    );
    let fin = StepOutcome::final_failure("x");
    let json = serde_json::to_string(&fin).unwrap();
    assert!(json.contains(r#""retryable":false"#), "{json}");
    assert_eq!(serde_json::from_str::<StepOutcome>(&json).unwrap(), fin);

    let change: StepChange =
        serde_json::from_str(r#"{"type":"attempt_failed","reason":"x","retry_at":null}"#).unwrap();
    assert_eq!(
        change,
        StepChange::AttemptFailed {
            reason: "x".into(),
            retry_at: None,
            retryable: true,
        }
    );
    assert_eq!(
        serde_json::to_string(&change).unwrap(),
        r#"{"type":"attempt_failed","reason":"x","retry_at":null}"#
    );
}

/// A run whose step failed for good at its first attempt of several snapshots and
/// restores as it was: `Failed` with attempts left is not corrupt, and the history
/// keeps the reason.
#[test]
fn a_final_failure_survives_snapshot_and_restore() {
    let w = flaky(RetryPolicy::exponential(3));
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "prep", t(0));
    run.start("flaky", A, t(1)).unwrap();
    run.finish("flaky", A, StepOutcome::final_failure("bad input"), t(1))
        .unwrap();
    let json = serde_json::to_string(&run.snapshot()).unwrap();
    let back = Run::restore(&w, serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back.snapshot(), run.snapshot());
    assert_eq!(back.status("flaky"), Some(StepStatus::Failed));
    assert_eq!(back.outcome(), Some(RunOutcome::Failed));
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

/// The restart rule: a step running at the snapshot is still running after the
/// restore (agent, attempt, timeout); the host settles it with the agent's answer, or
/// interrupts it, which gives the attempt back instead of failing it.
#[test]
fn running_step_at_snapshot_stays_running_until_settled() {
    let w =
        Workflow::builder("w")
            .step(StepSpec::new("once").with_timeout(Duration::from_secs(30)))
            .step(StepSpec::new("twice").with_retry(
                RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(5)),
            ))
            .step(
                StepSpec::new("handler")
                    .after("once")
                    .with_condition(RunCondition::AnyFailed),
            )
            .step(StepSpec::new("next").after("twice"))
            .build()
            .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("once", A, t(1)).unwrap();
    run.start("twice", B, t(1)).unwrap();
    run.tick(t(7));
    let json = serde_json::to_string(&run.snapshot()).unwrap();
    let mut back = Run::restore(&w, serde_json::from_str(&json).unwrap()).unwrap();
    // Nothing failed, nothing was recorded: both still run, as attempt 1 of their agents.
    assert_eq!(back, run);
    assert_eq!(back.history(), run.history());
    let running: Vec<_> = back.running().map(|s| w.name_of(s).unwrap()).collect();
    assert_eq!(running, ["once", "twice"]);
    assert_eq!(
        (back.agent("once"), back.attempts("once")),
        (Some(A), Some(1))
    );
    assert_eq!(
        (back.agent("twice"), back.attempts("twice")),
        (Some(B), Some(1))
    );
    // The timeout of `once` is armed again, from its start.
    assert_eq!(back.next_deadline(), Some(t(31)));

    // `twice`'s agent says the work finished: its answer is taken.
    back.finish("twice", B, StepOutcome::success(), t(8))
        .unwrap();
    assert_eq!(names(&back), ["next"]);
    // `once`'s agent lost the work: interrupted, its only attempt is not used up, so
    // it is ready again rather than failed, and its handler waits.
    back.interrupt("once", "interrupted by restart", t(8))
        .unwrap();
    assert_eq!(back.status("once"), Some(StepStatus::Ready));
    assert_eq!(back.attempts("once"), Some(0));
    assert_eq!(back.status("handler"), Some(StepStatus::Pending));
    assert_eq!(names(&back), ["next", "once"]);
    assert_eq!(back.next_deadline(), None);
    let since: Vec<_> = back.history()[back.restored_history()..]
        .iter()
        .map(|e| (back.name(e.step).unwrap(), e.attempt, e.change.clone()))
        .collect();
    assert_eq!(
        since,
        [
            (
                "twice",
                1,
                StepChange::Succeeded {
                    outputs: Default::default()
                }
            ),
            ("next", 1, StepChange::Ready),
            (
                "once",
                1,
                StepChange::Interrupted {
                    reason: "interrupted by restart".into()
                }
            ),
            ("once", 1, StepChange::Ready),
        ]
    );
    // The interrupted agent's late report is refused.
    assert_eq!(
        back.finish("once", A, StepOutcome::success(), t(9)),
        Err(WorkflowError::NotRunning {
            step: "once".into(),
            status: StepStatus::Ready
        })
    );
    // Attempt 1 again; when it really fails, the step fails and its handler runs.
    back.start("once", B, t(10)).unwrap();
    assert_eq!(back.history().last().unwrap().attempt, 1);
    assert_eq!(back.next_deadline(), Some(t(40)));
    back.finish("once", B, StepOutcome::failure("boom"), t(11))
        .unwrap();
    assert_eq!(back.status("once"), Some(StepStatus::Failed));
    ok(&mut back, "handler", t(12));
    ok(&mut back, "next", t(12));
    assert_eq!(back.outcome(), Some(RunOutcome::Failed));
    assert_eq!(back.attempts("twice"), Some(1));
}

/// A workflow whose one step has three attempts, a 30s timeout and no backoff.
fn three_tries() -> Workflow {
    Workflow::builder("w")
        .step(
            StepSpec::new("s")
                .with_timeout(Duration::from_secs(30))
                .with_retry(RetryPolicy::exponential(3).with_initial_backoff(Duration::ZERO)),
        )
        .step(StepSpec::new("after").after("s"))
        .build()
        .unwrap()
}

#[test]
fn interrupt_voids_the_attempt_and_the_same_one_is_made_again() {
    let w = three_tries();
    let mut run = Run::new(&w, "r", 0, t(0));
    fail(&mut run, "s", t(0));
    run.start("s", A, t(1)).unwrap();
    run.bind("s", TaskId::new(5)).unwrap();
    assert_eq!(run.next_deadline(), Some(t(31)));
    let seen = run.history().len();
    run.interrupt("s", "agent#1 left service", t(2)).unwrap();
    assert_eq!(run.status("s"), Some(StepStatus::Ready));
    assert_eq!(run.attempts("s"), Some(1));
    assert_eq!(run.task("s"), None);
    assert_eq!(run.running().count(), 0);
    assert_eq!(names(&run), ["s"]);
    // The voided attempt's timeout is gone with it.
    assert_eq!(run.next_deadline(), None);
    assert_eq!(run.tick(t(100)), 0);
    let events: Vec<_> = run.history()[seen..]
        .iter()
        .map(|e| (e.at, e.attempt, e.agent, e.change.clone()))
        .collect();
    assert_eq!(
        events,
        [
            (
                t(2),
                2,
                Some(A),
                StepChange::Interrupted {
                    reason: "agent#1 left service".into()
                }
            ),
            (t(2), 2, None, StepChange::Ready),
        ]
    );
    assert_eq!(
        run.history()[seen].to_string(),
        "1970-01-01T00:00:02.000Z step#0 (attempt 2, agent#1): interrupted: agent#1 left service"
    );
    // However often it is interrupted, attempt 2 is made again and never counts.
    for k in 0..5 {
        run.start("s", B, t(100 + k)).unwrap();
        assert_eq!(run.attempts("s"), Some(2));
        assert_eq!(run.history().last().unwrap().attempt, 2);
        run.interrupt("s", "restart", t(100 + k)).unwrap();
    }
    assert_eq!(run.status("s"), Some(StepStatus::Ready));
    assert_eq!(run.attempts("s"), Some(1));
    // The two attempts left still fail before the step does.
    fail(&mut run, "s", t(200));
    assert_eq!(run.status("s"), Some(StepStatus::Ready));
    fail(&mut run, "s", t(201));
    assert_eq!(run.status("s"), Some(StepStatus::Failed));
    assert_eq!(run.attempts("s"), Some(3));
    let failures = (run.history().iter())
        .filter(|e| matches!(e.change, StepChange::AttemptFailed { .. }))
        .map(|e| e.attempt)
        .collect::<Vec<_>>();
    assert_eq!(failures, [1, 2, 3]);
}

#[test]
fn interrupting_a_step_that_does_not_run_is_refused_and_changes_nothing() {
    let w = three_tries();
    let mut run = Run::new(&w, "r", 0, t(0));
    let refused = |run: &mut Run, step: &str, status: StepStatus| {
        let before = run.snapshot();
        assert_eq!(
            run.interrupt(step, "restart", t(50)),
            Err(WorkflowError::NotRunning {
                step: step.into(),
                status
            })
        );
        assert_eq!(run.snapshot(), before);
    };
    refused(&mut run, "s", StepStatus::Ready);
    refused(&mut run, "after", StepStatus::Pending);
    run.start("s", A, t(1)).unwrap();
    run.interrupt("s", "restart", t(2)).unwrap();
    refused(&mut run, "s", StepStatus::Ready);
    ok(&mut run, "s", t(3));
    refused(&mut run, "s", StepStatus::Succeeded);
    run.start("after", A, t(4)).unwrap();
    run.cancel(t(5));
    refused(&mut run, "after", StepStatus::Cancelled);
    let before = run.snapshot();
    assert!(matches!(
        run.interrupt("ghost", "restart", t(6)),
        Err(WorkflowError::UnknownStep { .. })
    ));
    assert_eq!(run.snapshot(), before);
}

/// Regression: a step started away from the front of the ready queue left its entry
/// there, and when it was ready again (interrupted, or retried without backoff) it
/// took that old place instead of going to the back; a run restored in between has
/// no such entry, so the same calls gave the two runs different dispatch orders.
#[test]
fn a_step_ready_again_goes_to_the_back_of_the_queue() {
    let w = Workflow::builder("w")
        .step(StepSpec::new("x"))
        .step(
            StepSpec::new("y")
                .with_retry(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO)),
        )
        .step(StepSpec::new("z"))
        .build()
        .unwrap();
    let mut run = Run::new(&w, "r", 0, t(0));
    assert_eq!(names(&run), ["x", "y", "z"]);
    run.start("y", A, t(1)).unwrap();
    let mut restored = Run::restore(&w, run.snapshot()).unwrap();
    for r in [&mut run, &mut restored] {
        r.interrupt("y", "restart", t(2)).unwrap();
        assert_eq!(names(r), ["x", "z", "y"]);
        r.start("y", A, t(3)).unwrap();
        r.finish("y", A, StepOutcome::failure("boom"), t(4))
            .unwrap();
        assert_eq!(names(r), ["x", "z", "y"]);
        assert_eq!(r.next_ready(), w.step("x"));
    }
    assert_eq!(restored, run);
    // Started again from the back, and the front taken: nothing stale is listed.
    run.start("y", A, t(5)).unwrap();
    run.start("x", A, t(5)).unwrap();
    assert_eq!(names(&run), ["z"]);
    assert_eq!(run.next_ready(), w.step("z"));
}

#[test]
fn bindings_last_as_long_as_the_wait_or_the_attempt_and_survive_a_restart() {
    let w = three_tries();
    let task = TaskId::new(42);
    let mut run = Run::new(&w, "r", 0, t(0));
    assert_eq!(run.task("s"), None);
    // A ready step waiting for an agent, then its attempt, keep the binding.
    run.bind("s", task).unwrap();
    assert_eq!(run.task("s"), Some(task));
    run.start("s", A, t(1)).unwrap();
    assert_eq!(run.task("s"), Some(task));
    // Through JSON and back.
    let json = serde_json::to_string(&run.snapshot()).unwrap();
    assert!(json.contains(r#""task":42"#), "{json}");
    let mut back = Run::restore(&w, serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back, run);
    assert_eq!(back.task("s"), Some(task));
    // Unbound, and bound again.
    back.unbind("s");
    assert_eq!(back.task("s"), None);
    assert!(
        !serde_json::to_string(&back.snapshot())
            .unwrap()
            .contains("task")
    );
    back.unbind("s");
    back.unbind("ghost");
    back.bind("s", TaskId::new(43)).unwrap();
    assert_eq!(back.task("s"), Some(TaskId::new(43)));
    // Binding a step that neither waits nor runs is refused, and changes nothing.
    let before = back.snapshot();
    assert_eq!(
        back.bind("after", task),
        Err(WorkflowError::NotReady {
            step: "after".into(),
            status: StepStatus::Pending
        })
    );
    assert!(matches!(
        back.bind("ghost", task),
        Err(WorkflowError::UnknownStep { .. })
    ));
    assert_eq!(back.snapshot(), before);
    // The attempt ends, the binding with it: a failure, a timeout, a success.
    back.finish("s", A, StepOutcome::failure("boom"), t(2))
        .unwrap();
    assert_eq!(back.task("s"), None);
    back.bind("s", task).unwrap();
    back.start("s", A, t(3)).unwrap();
    back.tick(t(33));
    assert_eq!(back.attempts("s"), Some(2));
    assert_eq!(back.task("s"), None);
    back.bind("s", task).unwrap();
    back.start("s", A, t(34)).unwrap();
    back.finish("s", A, StepOutcome::success(), t(35)).unwrap();
    assert_eq!(back.task("s"), None);
    assert_eq!(
        back.bind("s", task),
        Err(WorkflowError::NotReady {
            step: "s".into(),
            status: StepStatus::Succeeded
        })
    );
    // A skip, an abandon and a cancel end theirs too.
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.bind("a", task).unwrap();
    run.start("a", A, t(1)).unwrap();
    run.skip_attempt("a", A, "no browser".into(), t(1)).unwrap();
    assert_eq!(run.task("a"), None);
    let mut run = Run::new(&w, "r", 0, t(0));
    run.bind("a", task).unwrap();
    run.abandon("a", "nobody".into(), t(1)).unwrap();
    assert_eq!(run.task("a"), None);
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "a", t(1));
    run.bind("b", task).unwrap();
    run.bind("c", TaskId::new(7)).unwrap();
    run.start("c", B, t(2)).unwrap();
    run.cancel(t(3));
    assert_eq!((run.task("b"), run.task("c")), (None, None));
}

/// Regression (user trial 4, D4): a binding on a step that neither waits nor runs
/// (pending, succeeded), which the run never writes, was dropped silently; the
/// snapshot was written by someone else and is refused, naming the step, its status
/// and the task.
#[test]
fn a_restore_refuses_the_binding_of_a_step_that_neither_waits_nor_runs() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(0));
    ok(&mut run, "a", t(1));
    run.bind("b", TaskId::new(1)).unwrap();
    run.start("b", A, t(2)).unwrap();
    run.bind("c", TaskId::new(2)).unwrap();
    let good = serde_json::to_value(run.snapshot()).unwrap();
    // Bindings on `a` (succeeded) and `d` (pending), which could not have one.
    for (i, name, status, task) in [(0, "a", "succeeded", 3), (3, "d", "pending", u64::MAX)] {
        let mut v = good.clone();
        v["steps"][i]["task"] = task.into();
        let snapshot: concord::workflow::RunSnapshot = serde_json::from_value(v).unwrap();
        let kept = snapshot.clone();
        let err = Run::restore(&w, snapshot).unwrap_err();
        let WorkflowError::CorruptSnapshot { workflow, reason } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(workflow, "diamond");
        assert!(
            reason.contains(&format!(
                "step \"{name}\" is {status} but bound to {}",
                TaskId::new(task)
            )),
            "{reason}"
        );
        // The snapshot is not consumed into anything: the same one, fixed, restores.
        let mut fixed = kept;
        fixed.steps[i].task = None;
        assert_eq!(Run::restore(&w, fixed).unwrap(), run);
    }
    let back = Run::restore(&w, serde_json::from_value(good).unwrap()).unwrap();
    assert_eq!(back, run);
    assert_eq!(back.task("b"), Some(TaskId::new(1)));
    assert_eq!(back.task("c"), Some(TaskId::new(2)));
    // The binding of a step that finished between snapshot and restore is gone, and
    // the snapshot after it restores.
    let mut finished = back.clone();
    finished
        .finish("b", A, StepOutcome::success(), t(3))
        .unwrap();
    let back = Run::restore(&w, finished.snapshot()).unwrap();
    assert_eq!(back.task("b"), None);
}

/// Regression (user trial 4, D4): a history event later than the snapshot's time
/// (the latest time the run was told) was restored, so the evidence showed a step
/// ready in 2554 and started in 2023. The run records every event at a time it was
/// given, so such an event was written by someone else.
#[test]
fn a_restore_refuses_a_history_event_after_the_snapshot_time() {
    let w = diamond();
    let mut run = Run::new(&w, "r", 0, t(10));
    ok(&mut run, "a", t(20));
    let good = run.snapshot();
    assert_eq!(good.taken_at, t(20));
    for (k, at) in [(0, Timestamp::MAX), (2, t(21))] {
        let mut bad = good.clone();
        bad.history[k].at = at;
        let err = Run::restore(&w, bad).unwrap_err();
        let WorkflowError::CorruptSnapshot { reason, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(
            reason.contains(&format!("event #{k}")) && reason.contains(&at.to_string()),
            "{reason}"
        );
    }
    // The snapshot's time moved back before its last event is the same contradiction.
    let mut early = good.clone();
    early.taken_at = t(19);
    assert!(matches!(
        Run::restore(&w, early),
        Err(WorkflowError::CorruptSnapshot { .. })
    ));
    // Events at the snapshot's time, or running backwards among themselves (the run
    // records a time that goes back as given), restore.
    let mut back_and_forth = Run::new(&w, "r", 0, t(10));
    back_and_forth.start("a", A, t(30)).unwrap();
    back_and_forth
        .finish("a", A, StepOutcome::success(), t(15))
        .unwrap();
    let restored = Run::restore(&w, back_and_forth.snapshot()).unwrap();
    assert_eq!(restored, back_and_forth);
    // And so does a snapshot taken right after a restore.
    let again = Run::restore(&w, restored.snapshot()).unwrap();
    assert_eq!(again.history(), back_and_forth.history());
    assert!(Run::restore(&w, good).is_ok());
}

/// A snapshot written before task bindings: `"version": 1`, no `task` fields, a step
/// running. It restores under the restart rule, and snapshots again as the current
/// version.
#[test]
fn a_version_1_snapshot_restores() {
    let w = three_tries();
    let mut run = Run::new(&w, "r", 4, t(0));
    fail(&mut run, "s", t(0));
    run.start("s", B, t(5)).unwrap();
    let mut v = serde_json::to_value(run.snapshot()).unwrap();
    assert_eq!(v["version"], RUN_SNAPSHOT_VERSION);
    v["version"] = 1.into();
    for step in v["steps"].as_array().unwrap() {
        assert!(step.get("task").is_none(), "{step}");
    }
    let json = v.to_string();
    assert!(json.contains(r#""version":1"#) && !json.contains("task"));
    let back = Run::restore(&w, serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back.status("s"), Some(StepStatus::Running));
    assert_eq!((back.agent("s"), back.attempts("s")), (Some(B), Some(2)));
    assert_eq!(back.task("s"), None);
    assert_eq!(back.next_deadline(), Some(t(35)));
    assert_eq!(back.snapshot().version, RUN_SNAPSHOT_VERSION);
    assert_eq!(back, run);
    // Versions around the ones it knows are refused.
    for version in [0, RUN_SNAPSHOT_VERSION + 1] {
        v["version"] = version.into();
        assert!(matches!(
            Run::restore(&w, serde_json::from_value(v.clone()).unwrap()),
            Err(WorkflowError::CorruptSnapshot { .. })
        ));
    }
}

#[test]
fn an_answer_to_another_attempt_is_stale_and_changes_nothing() {
    let w = three_tries();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("s", A, t(0)).unwrap();
    run.tick(t(30));
    assert_eq!(run.status("s"), Some(StepStatus::Ready));
    run.start("s", A, t(31)).unwrap();
    let before = run.snapshot();
    // The timed-out first attempt answers, and one that was never made.
    for attempt in [1, 0, 3] {
        assert_eq!(
            run.finish_attempt("s", A, attempt, StepOutcome::success(), t(32)),
            Err(WorkflowError::StaleAttempt {
                step: "s".into(),
                attempt,
                current: 2
            })
        );
    }
    let err = run
        .finish_attempt("s", A, 1, StepOutcome::failure("x"), t(32))
        .unwrap_err();
    assert_eq!(err.to_string(), r#"step "s" runs attempt 2, not attempt 1"#);
    assert_eq!(run.snapshot(), before);
    // The current attempt's answer is taken.
    run.finish_attempt("s", A, 2, StepOutcome::success(), t(32))
        .unwrap();
    assert_eq!(run.status("s"), Some(StepStatus::Succeeded));
    assert_eq!(
        run.finish_attempt("s", A, 2, StepOutcome::success(), t(33)),
        Err(WorkflowError::NotRunning {
            step: "s".into(),
            status: StepStatus::Succeeded
        })
    );
}

/// An answer at or after the deadline is a timeout whether or not a tick said so:
/// refused, nothing changes, and the next tick fails the attempt as timed out.
#[test]
fn an_answer_at_or_after_the_deadline_is_late_without_a_tick() {
    let w = three_tries();
    let mut run = Run::new(&w, "r", 0, t(0));
    run.start("s", A, t(10)).unwrap();
    // Just in time.
    let mut in_time = run.clone();
    in_time
        .finish(
            "s",
            A,
            StepOutcome::success(),
            t(40) - Duration::from_nanos(1),
        )
        .unwrap();
    let before = run.snapshot();
    let late = |at| WorkflowError::Late {
        step: "s".into(),
        attempt: 1,
        deadline: t(40),
        at,
    };
    assert_eq!(
        run.finish("s", A, StepOutcome::success(), t(40)),
        Err(late(t(40)))
    );
    assert_eq!(
        run.finish_attempt("s", A, 1, StepOutcome::failure("x"), t(41)),
        Err(late(t(41)))
    );
    assert_eq!(
        run.skip_attempt("s", A, "no browser".into(), t(99)),
        Err(late(t(99)))
    );
    assert_eq!(
        late(t(40)).to_string(),
        r#"step "s" attempt 1 answered at 1970-01-01T00:00:40.000Z, past its deadline 1970-01-01T00:00:40.000Z"#
    );
    // Nothing changed, not even the time the run knows.
    assert_eq!(run.snapshot(), before);
    assert_eq!(run.status("s"), Some(StepStatus::Running));
    // The next tick, even one that comes later, times the attempt out.
    assert_eq!(run.tick(t(50)), 2);
    let failed = &run.history()[run.history().len() - 2];
    assert_eq!(failed.attempt, 1);
    assert_eq!(
        failed.change,
        StepChange::AttemptFailed {
            reason: "timed out after 30s".into(),
            retry_at: Some(t(50)),
            retryable: true
        }
    );
    assert_eq!(run.status("s"), Some(StepStatus::Ready));

    // The same for a step restored running past its deadline.
    run.start("s", B, t(60)).unwrap();
    let mut back = Run::restore(&w, run.snapshot()).unwrap();
    assert!(matches!(
        back.finish("s", B, StepOutcome::success(), t(95)),
        Err(WorkflowError::Late { attempt: 2, .. })
    ));
    back.tick(t(95));
    assert_eq!(back.attempts("s"), Some(2));
    assert_eq!(back.status("s"), Some(StepStatus::Ready));
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

/// Regression (user trial 4, D3): a step timeout of `Duration::MAX` (or `u64::MAX`
/// milliseconds from JSON) was accepted; its deadline saturated at the end of time,
/// and a simulated clock driven by it moved the coordinator to 2554. A timeout is at
/// most `MAX_STEP_WAIT`; the definition is refused whole, naming step and timeout.
#[test]
fn a_timeout_longer_than_a_year_is_refused_when_the_workflow_is_built() {
    for timeout in [
        MAX_STEP_WAIT + Duration::from_nanos(1),
        Duration::from_millis(u64::MAX),
        Duration::MAX,
    ] {
        let err = Workflow::builder("w")
            .step(StepSpec::new("a"))
            .step(StepSpec::new("b").after("a").with_timeout(timeout))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            WorkflowError::InvalidTimeout {
                step: "b".into(),
                timeout
            }
        );
        assert!(err.to_string().contains(&format!("{timeout:?}")), "{err}");
    }
    let def: WorkflowDefinition = serde_json::from_str(
        r#"{"name": "w", "steps": [{"name": "a", "timeout": 18446744073709551615}]}"#,
    )
    .unwrap();
    assert_eq!(
        Workflow::from_definition(def),
        Err(WorkflowError::InvalidTimeout {
            step: "a".into(),
            timeout: Duration::from_millis(u64::MAX)
        })
    );
    // A year itself builds.
    let w = Workflow::builder("w")
        .step(StepSpec::new("a").with_timeout(MAX_STEP_WAIT))
        .build()
        .unwrap();
    assert_eq!(
        w.spec(w.step("a").unwrap()).unwrap().timeout(),
        Some(MAX_STEP_WAIT)
    );
}

/// Regression (user trial 4, D3): a retry policy whose longest backoff was shorter
/// than its first (the first wait was silently cut to the cap), or whose backoffs
/// were `Duration::MAX` (a retry in 2554), was accepted. Each is refused with
/// `InvalidRetryPolicy` naming the step, the field and its value.
#[test]
fn retry_backoffs_out_of_order_or_past_a_year_are_refused() {
    let refused = |policy: RetryPolicy, words: &[&str]| {
        let err = Workflow::builder("w")
            .step(StepSpec::new("a").with_retry(policy.clone()))
            .build()
            .unwrap_err();
        let WorkflowError::InvalidRetryPolicy { step, reason } = &err else {
            panic!("{policy:?}: {err:?}");
        };
        assert_eq!(step, "a");
        for word in words {
            assert!(
                reason.contains(word),
                "{policy:?}: {reason:?} lacks {word:?}"
            );
        }
    };
    let three = RetryPolicy::exponential(3);
    refused(
        three
            .clone()
            .with_initial_backoff(Duration::from_secs(100))
            .with_max_backoff(Duration::from_secs(1)),
        &["max_backoff 1s", "initial_backoff 100s"],
    );
    // The default's one-minute cap is below a first wait of two.
    refused(
        three.clone().with_initial_backoff(Duration::from_secs(120)),
        &["max_backoff 60s", "initial_backoff 120s"],
    );
    refused(
        three
            .clone()
            .with_initial_backoff(Duration::MAX)
            .with_max_backoff(Duration::MAX),
        &["initial_backoff", &format!("{:?}", Duration::MAX)],
    );
    refused(
        three
            .clone()
            .with_max_backoff(MAX_STEP_WAIT + Duration::from_millis(1)),
        &["max_backoff", "31536000.001s"],
    );
    let json: RetryPolicy = serde_json::from_value(serde_json::json!({
        "max_attempts": 2, "initial_backoff": 1000, "max_backoff": u64::MAX,
    }))
    .unwrap();
    refused(json, &["max_backoff"]);
    // Equal backoffs, and a year, build.
    for policy in [
        three
            .clone()
            .with_initial_backoff(Duration::from_secs(5))
            .with_max_backoff(Duration::from_secs(5)),
        three
            .clone()
            .with_initial_backoff(MAX_STEP_WAIT)
            .with_max_backoff(MAX_STEP_WAIT),
        three.with_initial_backoff(Duration::ZERO),
    ] {
        let built = Workflow::builder("w")
            .step(StepSpec::new("a").with_retry(policy.clone()))
            .build();
        assert!(built.is_ok(), "{policy:?}: {built:?}");
    }
}

/// Regression (user trial 4, D3): an empty task kind (`with_kind("")`) and an input
/// with an empty output key or name were accepted. An empty kind names no work for
/// assignment or separation of duties; an agent reads its inputs by name.
#[test]
fn an_empty_kind_or_input_key_is_refused() {
    use concord::NameError;
    let build = |spec: StepSpec| {
        Workflow::builder("w")
            .step(StepSpec::new("a"))
            .step(spec.after("a"))
            .build()
    };
    for kind in ["", "  "] {
        assert_eq!(
            build(StepSpec::new("b").with_kind(kind)),
            Err(WorkflowError::InvalidText {
                step: Some(1),
                source: NameError::Empty { kind: "step kind" }
            })
        );
    }
    for (output, name, what) in [("", "x", "output"), ("x", "", "input"), ("", "", "output")] {
        let err = build(StepSpec::new("b").with_input("a", output, name)).unwrap_err();
        assert_eq!(
            err,
            WorkflowError::InvalidText {
                step: Some(1),
                source: NameError::Empty { kind: what }
            }
        );
        assert!(err.to_string().starts_with("step #1: "), "{err}");
    }
    // From a config file too.
    let def: WorkflowDefinition = serde_json::from_value(serde_json::json!({
        "name": "w",
        "steps": [{"name": "a"}, {"name": "b", "depends_on": ["a"],
            "inputs": [{"from_step": "a", "output": "url", "name": " "}]}],
    }))
    .unwrap();
    assert!(matches!(
        Workflow::from_definition(def),
        Err(WorkflowError::InvalidText { step: Some(1), .. })
    ));
    assert!(
        build(
            StepSpec::new("b")
                .with_kind("k")
                .with_input("a", "url", "u")
        )
        .is_ok()
    );
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
    // A dependency named twice in a row is one too (user trial 4 asked whether it
    // should be refused; `after` documents that repeats are kept once).
    let twice = Workflow::builder("w")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b").after("a").after("a"))
        .build()
        .unwrap();
    let b = twice.step("b").unwrap();
    assert_eq!(twice.spec(b).unwrap().dependencies(), ["a"]);
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

// ----- properties: restarts, interrupts and refused answers -----

/// `a` (3 attempts, 30s timeout, 5s backoff) -> `b` (2 attempts, no backoff); `c` (one
/// attempt, 10s timeout); `b` + `c` -> `d` (always; 2 attempts, 20s timeout); `e` (2
/// attempts, no backoff), so that three steps can wait at once.
fn restartable() -> Workflow {
    Workflow::builder("p")
        .step(
            StepSpec::new("a")
                .with_timeout(Duration::from_secs(30))
                .with_retry(
                    RetryPolicy::exponential(3).with_initial_backoff(Duration::from_secs(5)),
                ),
        )
        .step(
            StepSpec::new("b")
                .after("a")
                .with_retry(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO)),
        )
        .step(StepSpec::new("c").with_timeout(Duration::from_secs(10)))
        .step(
            StepSpec::new("d")
                .after("b")
                .after("c")
                .with_condition(RunCondition::Always)
                .with_timeout(Duration::from_secs(20))
                .with_retry(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO)),
        )
        .step(
            StepSpec::new("e")
                .with_retry(RetryPolicy::exponential(2).with_initial_backoff(Duration::ZERO)),
        )
        .build()
        .unwrap()
}

const STEPS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// One host call, with arguments that may be wrong.
#[derive(Debug, Clone)]
enum Op {
    /// Step, by the other agent.
    Start(usize, bool),
    /// Step, success, by the other agent.
    Finish(usize, bool, bool),
    /// Step, the attempt named relative to the current one, success.
    FinishAttempt(usize, i8, bool),
    Interrupt(usize),
    Bind(usize),
    Tick,
    /// Snapshot, through JSON, and restore.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize, prop::bool::weighted(0.2)).prop_map(|(s, o)| Op::Start(s, o)),
        3 => (0..5usize, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(s, ok, o)| Op::Finish(s, ok, o)),
        2 => (0..5usize, -1..=1i8, any::<bool>())
            .prop_map(|(s, off, ok)| Op::FinishAttempt(s, off, ok)),
        3 => (0..5usize).prop_map(Op::Interrupt),
        1 => (0..5usize).prop_map(Op::Bind),
        2 => Just(Op::Tick),
        2 => Just(Op::Restore),
    ]
}

/// Applies `op` at `now`; `Err` is the run's refusal.
fn call(run: &mut Run, op: &Op, now: Timestamp) -> Result<(), WorkflowError> {
    let who = |other: bool| if other { B } else { A };
    let outcome = |ok: bool| {
        if ok {
            StepOutcome::success()
        } else {
            StepOutcome::failure("boom")
        }
    };
    match *op {
        Op::Start(i, o) => run.start(STEPS[i], who(o), now),
        Op::Finish(i, ok, o) => run.finish(STEPS[i], who(o), outcome(ok), now),
        Op::FinishAttempt(i, off, ok) => {
            let attempt = run
                .attempts(STEPS[i])
                .unwrap()
                .saturating_add_signed(off.into());
            let agent = run.agent(STEPS[i]).unwrap_or(A);
            run.finish_attempt(STEPS[i], agent, attempt, outcome(ok), now)
        }
        Op::Interrupt(i) => run.interrupt(STEPS[i], "restart", now),
        Op::Bind(i) => run.bind(STEPS[i], TaskId::new(i as u64 + 1)),
        Op::Tick => {
            run.tick(now);
            Ok(())
        }
        Op::Restore => {
            let json = serde_json::to_string(&run.snapshot()).unwrap();
            *run = Run::restore(run.workflow(), serde_json::from_str(&json).unwrap()).unwrap();
            Ok(())
        }
    }
}

/// Checks every step's attempts against the history: each attempt made is started
/// once and settled once, an interrupted one is neither counted nor settled, and
/// none goes past the retry policy; the run's count of steps backing off is the
/// number of steps in that state.
fn check_attempts(run: &Run) -> Result<(), TestCaseError> {
    let backing_off = (run.workflow().steps())
        .filter(|&(step, _)| run.status(step) == Some(StepStatus::BackingOff))
        .count();
    prop_assert_eq!(run.backing_off_steps(), backing_off);
    for (step, spec) in run.workflow().steps() {
        let count = |f: &dyn Fn(&StepChange) -> bool| {
            (run.history().iter())
                .filter(|e| e.step == step && f(&e.change))
                .count() as u32
        };
        let started = count(&|c| *c == StepChange::Started);
        let interrupted = count(&|c| matches!(c, StepChange::Interrupted { .. }));
        let settled = count(&|c| {
            matches!(
                c,
                StepChange::AttemptFailed { .. }
                    | StepChange::Succeeded { .. }
                    | StepChange::SkippedByAgent { .. }
            )
        });
        let attempts = run.attempts(step).unwrap();
        let status = run.status(step).unwrap();
        let max = spec.retry().max_attempts();
        prop_assert!(attempts <= max, "{}: {attempts} > {max}", spec.name());
        prop_assert_eq!(attempts, started - interrupted, "{}", spec.name());
        let running = u32::from(status == StepStatus::Running);
        prop_assert_eq!(attempts, settled + running, "{}", spec.name());
        if status == StepStatus::Failed {
            prop_assert_eq!(attempts, max, "{} failed early", spec.name());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x1e57a47),
        ..ProptestConfig::default()
    })]

    /// Random host calls with restarts between them: a refused call leaves the
    /// snapshot as it was; attempts never exceed the policy; an interrupted attempt
    /// never counts (the same number is made again); an answer past the deadline is
    /// timed out by the next tick; and a run restored at any point goes on exactly as
    /// the one that never restarted.
    #[test]
    fn restarts_and_refused_calls_keep_the_run_consistent(
        ops in prop::collection::vec((op(), 0..15u64), 1..48),
    ) {
        let w = restartable();
        let mut now = t(0);
        let mut run = Run::new(&w, "r", 11, now);
        let mut unbroken = run.clone();
        let mut made = [0u32; 5];
        for (op, dt) in &ops {
            now += Duration::from_secs(*dt);
            let before = run.snapshot();
            let said = call(&mut run, op, now);
            if !matches!(op, Op::Restore) {
                prop_assert_eq!(call(&mut unbroken, op, now), said.clone(), "{:?}", op);
            }
            prop_assert_eq!(run.snapshot(), unbroken.snapshot(), "after {:?}", op);
            match (op, &said) {
                (_, Err(e)) => {
                    prop_assert_eq!(&run.snapshot(), &before, "{:?} refused ({}) changed it", op, e);
                    if let WorkflowError::Late { step, attempt, .. } = e {
                        // The next tick times the attempt out.
                        let mut ticked = run.clone();
                        ticked.tick(now);
                        let timed_out = ticked.history()[run.history().len()..].iter().any(|ev| {
                            ticked.name(ev.step) == Some(step.as_str())
                                && ev.attempt == *attempt
                                && matches!(&ev.change, StepChange::AttemptFailed { reason, .. }
                                    if reason.starts_with("timed out"))
                        });
                        prop_assert!(timed_out, "{:?} was late, but no tick timed it out", op);
                    }
                }
                (Op::Start(i, _), Ok(())) => made[*i] += 1,
                (Op::Interrupt(i), Ok(())) => {
                    made[*i] -= 1;
                    let h = run.history();
                    let (void, again) = (&h[h.len() - 2], &h[h.len() - 1]);
                    let interrupted = matches!(void.change, StepChange::Interrupted { .. });
                    prop_assert!(interrupted, "{:?}", void);
                    prop_assert_eq!(&again.change, &StepChange::Ready);
                    prop_assert_eq!(void.attempt, made[*i] + 1);
                    prop_assert_eq!(again.attempt, made[*i] + 1);
                    prop_assert_eq!(run.status(STEPS[*i]), Some(StepStatus::Ready));
                    prop_assert_eq!(run.task(STEPS[*i]), None);
                }
                (Op::FinishAttempt(_, off, _), Ok(())) => {
                    prop_assert_eq!(*off, 0, "an answer to another attempt was taken");
                }
                _ => {}
            }
            for (i, name) in STEPS.iter().enumerate() {
                prop_assert_eq!(run.attempts(*name), Some(made[i]), "{}", name);
            }
            check_attempts(&run)?;
        }
    }
}
