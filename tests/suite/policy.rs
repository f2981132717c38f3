//! Policies through the public API: each built-in rule fires exactly when it should
//! (boundaries included, proposals pending in the batch counted), severity overrides,
//! disabled rules, host rules, serde round trips and JSON loading, and every
//! `PolicyError` path.

use std::sync::Arc;

use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
use concord::policy::{
    AgentStatusRule, DutyLog, MaxTasksPerAgent, PolicyContext, PolicyEnforcer, PolicyEnforcerExt,
    PolicyError, PolicyRule, PolicySet, Proposal, RoleAndCapability, SafeModeRule,
    SeparationOfDuties, Severity, SystemMode, UtilizationCap, Violation, ViolationDetail,
};
use concord::resource::ResourceName;
use concord::{
    AgentId, Capability, Requirements, ResourceLedger, Resources, Role, Task, TaskId, Timestamp,
};

fn id(n: u64) -> AgentId {
    AgentId::new(n)
}

fn task(n: u64) -> TaskId {
    TaskId::new(n)
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

fn cap(name: &str) -> Capability {
    Capability::new(name).unwrap()
}

fn res(text: &str) -> Resources {
    text.parse().unwrap()
}

const NOW: Timestamp = Timestamp::EPOCH;

/// Agents 1 ops/deploy (2 slots), 2 qa/screenshot (1 slot), 3 ops (3 slots), and one
/// agent in each other status: 4 quarantined, 5 offline, 6 unhealthy, 7 busy.
fn registry() -> AgentRegistry {
    let mut r = AgentRegistry::new();
    r.register(
        AgentProfile::new(id(1), "ops-1")
            .with_role(role("ops"))
            .with_capability(cap("deploy"))
            .with_max_tasks(2),
        NOW,
    )
    .unwrap();
    r.register(
        AgentProfile::new(id(2), "qa-1")
            .with_role(role("qa"))
            .with_capability(cap("screenshot")),
        NOW,
    )
    .unwrap();
    r.register(
        AgentProfile::new(id(3), "ops-2")
            .with_role(role("ops"))
            .with_max_tasks(3),
        NOW,
    )
    .unwrap();
    for (n, status) in [
        (4, AgentStatus::Quarantined),
        (5, AgentStatus::Offline),
        (6, AgentStatus::Unhealthy),
        (7, AgentStatus::Busy),
    ] {
        r.register(AgentProfile::new(id(n), format!("agent-{n}")), NOW)
            .unwrap();
        r.set_status(id(n), status, NOW).unwrap();
    }
    r
}

/// Every agent of `registry()` with 1000m cpu and 1000 bytes of memory, agent 1 also
/// with 4 gpus; agent 1 holds 500m cpu.
fn ledger() -> ResourceLedger {
    let mut l = ResourceLedger::new();
    l.add_agent(id(1), &res("cpu=1000m,memory=1000B,gpu=4"))
        .unwrap();
    l.allocate(id(1), &res("cpu=500m"), NOW).unwrap();
    for n in 2..=7 {
        l.add_agent(id(n), &res("cpu=1000m,memory=1000B")).unwrap();
    }
    l
}

fn rules_of(violations: &[Violation]) -> Vec<&str> {
    violations.iter().map(|v| v.rule.as_str()).collect()
}

/// Only `rule`, so other rules' violations do not get in the way.
fn only(rule: impl Into<PolicyRule>) -> PolicySet {
    PolicySet::new([rule.into()]).unwrap()
}

fn messages(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(ToString::to_string).collect()
}

// ----- role and capability -------------------------------------------------------

#[test]
fn role_and_capability_reports_each_missing_name_in_order() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let needs = Requirements::new()
        .with_role(role("qa"))
        .with_role(role("ops"))
        .with_capability(cap("screenshot"))
        .with_capability(cap("browser"));
    let p = Proposal::new(task(9), "verify", id(1)).with_requirements(needs);
    let v = PolicySet::default().validate(&p, &ctx);
    assert_eq!(
        messages(&v),
        [
            "role_and_capability (error): agent#1 lacks role `qa` for task#9",
            "role_and_capability (error): agent#1 lacks capability `browser` for task#9",
            "role_and_capability (error): agent#1 lacks capability `screenshot` for task#9",
        ]
    );
    assert_eq!(
        v[0].detail,
        Some(ViolationDetail::MissingRole { role: role("qa") })
    );
    assert_eq!(
        v[1].detail,
        Some(ViolationDetail::MissingCapability {
            capability: cap("browser")
        })
    );
    assert!(v.iter().all(|v| v.agent == id(1) && v.task == task(9)));
}

#[test]
fn role_and_capability_passes_an_agent_with_everything() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let needs = Requirements::new()
        .with_role(role("qa"))
        .with_capability(cap("screenshot"));
    let p = Proposal::new(task(9), "verify", id(2)).with_requirements(needs);
    assert_eq!(PolicySet::default().validate(&p, &ctx), []);
    // Nothing required: anyone registered and available.
    let p = Proposal::new(task(9), "verify", id(3));
    assert_eq!(PolicySet::default().validate(&p, &ctx), []);
}

#[test]
fn an_unknown_agent_has_no_role() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let p = Proposal::new(task(9), "deploy", id(99))
        .with_requirements(Requirements::new().with_role(role("ops")));
    let v = only(RoleAndCapability::default()).validate(&p, &ctx);
    assert_eq!(rules_of(&v), ["role_and_capability"]);
    // Nothing required: nothing missing.
    let p = Proposal::new(task(9), "deploy", id(99));
    assert_eq!(only(RoleAndCapability::default()).validate(&p, &ctx), []);
}

// ----- utilization cap -------------------------------------------------------------

fn cpu_proposal(t: u64, agent: u64, millis: u64) -> Proposal {
    Proposal::new(task(t), "build", id(agent))
        .with_resources(Resources::new().with_cpu_millis(millis))
}

#[test]
fn exactly_the_cap_passes_and_one_unit_more_fails() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = only(UtilizationCap::default());
    // Agent 1 holds 500m of 1000m: 450m more reaches exactly 95%.
    assert_eq!(set.validate(&cpu_proposal(9, 1, 450), &ctx), []);
    let v = set.validate(&cpu_proposal(9, 1, 451), &ctx);
    assert_eq!(
        messages(&v),
        ["utilization_cap (error): agent#1 would reach 95.1% cpu with task#9 (cap 95%)"]
    );
    assert_eq!(
        v[0].detail,
        Some(ViolationDetail::Utilization {
            resource: ResourceName::Cpu,
            allocated: 500,
            pending: 0,
            requested: 451,
            capacity: 1000,
            max: 0.95,
        })
    );
    let reached = v[0].detail.as_ref().unwrap().utilization().unwrap();
    assert!((reached - 0.951).abs() < 1e-12);
}

/// A task alone on an agent may use all of it: the cap keeps headroom between tasks
/// that share an agent, and a task sized to its agent would otherwise never run. It
/// waits for the agent to be empty instead; held to the cap, it is refused.
#[test]
fn a_task_alone_on_an_agent_may_use_it_whole() {
    let mut led = ResourceLedger::new();
    led.add_agent(id(1), &res("cpu=1,memory=1000B")).unwrap();
    let reg = registry();
    let whole = Proposal::new(task(9), "build", id(1)).with_resources(res("cpu=1,memory=1000B"));
    let ctx = PolicyContext::new(&reg, &led);
    assert_eq!(only(UtilizationCap::default()).validate(&whole, &ctx), []);
    let strict = only(UtilizationCap::default().with_sole_task_allowed(false));
    assert_eq!(
        rules_of(&strict.validate(&whole, &ctx)),
        ["utilization_cap", "utilization_cap"]
    );
    // More than the whole is refused all the same.
    let more = Proposal::new(task(9), "build", id(1)).with_resources(res("memory=1001B"));
    assert_eq!(
        rules_of(&only(UtilizationCap::default()).validate(&more, &ctx)),
        ["utilization_cap"]
    );
    // Not alone: anything held on the agent, or pending for it in the batch.
    led.allocate(id(1), &res("memory=1B"), Timestamp::from_secs(0))
        .unwrap();
    let ctx = PolicyContext::new(&reg, &led);
    let most = Proposal::new(task(9), "build", id(1)).with_resources(res("cpu=1"));
    assert_eq!(
        rules_of(&only(UtilizationCap::default()).validate(&most, &ctx)),
        ["utilization_cap"]
    );
    let mut led = ResourceLedger::new();
    led.add_agent(id(1), &res("cpu=1")).unwrap();
    let batch = [cpu_proposal(1, 1, 1)];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    assert_eq!(
        rules_of(&only(UtilizationCap::default()).validate(&cpu_proposal(9, 1, 1000), &ctx)),
        ["utilization_cap"]
    );
    // The setting is serde data.
    let rule: concord::policy::PolicyRule =
        serde_json::from_str(r#"{ "rule": "utilization_cap", "allow_sole_task": false }"#).unwrap();
    assert_eq!(
        rule,
        UtilizationCap::default()
            .with_sole_task_allowed(false)
            .into()
    );
}

#[test]
fn the_message_shows_enough_decimals_to_differ_from_the_cap() {
    let mut led = ResourceLedger::new();
    led.add_agent(id(1), &res("memory=100000B")).unwrap();
    let reg = registry();
    let ctx = PolicyContext::new(&reg, &led);
    let p = Proposal::new(task(9), "build", id(1)).with_resources(res("memory=95001B"));
    let v = only(UtilizationCap::default().with_sole_task_allowed(false)).validate(&p, &ctx);
    assert_eq!(
        v[0].message,
        "agent#1 would reach 95.001% memory with task#9 (cap 95%)"
    );
    let p = Proposal::new(task(9), "build", id(1)).with_resources(res("memory=97500B"));
    let v = only(UtilizationCap::default().with_sole_task_allowed(false)).validate(&p, &ctx);
    assert_eq!(
        v[0].message,
        "agent#1 would reach 97.5% memory with task#9 (cap 95%)"
    );
}

#[test]
fn pending_proposals_on_the_same_agent_count_toward_the_cap() {
    let (reg, led) = (registry(), ledger());
    let set = only(UtilizationCap::default());
    let batch = [
        cpu_proposal(1, 1, 200), // same agent: counts
        cpu_proposal(2, 2, 900), // other agent: does not
    ];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    // 500 held + 200 pending + 250 = 950: exactly 95%.
    assert_eq!(set.validate(&cpu_proposal(9, 1, 250), &ctx), []);
    let v = set.validate(&cpu_proposal(9, 1, 251), &ctx);
    assert_eq!(rules_of(&v), ["utilization_cap"]);
    assert!(matches!(
        v[0].detail,
        Some(ViolationDetail::Utilization { pending: 200, .. })
    ));
}

#[test]
fn a_pending_entry_for_the_same_task_is_not_counted_twice() {
    let (reg, led) = (registry(), ledger());
    let set = only(UtilizationCap::default());
    let p = cpu_proposal(9, 1, 450);
    let batch = [p.clone()];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    assert_eq!(set.validate(&p, &ctx), []);
}

#[test]
fn a_resource_without_capacity_violates_whatever_the_cap() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = only(UtilizationCap::new(1.0));
    // Agent 2 has no gpu in the ledger.
    let p = Proposal::new(task(9), "train", id(2)).with_resources(res("gpu=1"));
    let v = set.validate(&p, &ctx);
    assert_eq!(
        messages(&v),
        ["utilization_cap (error): agent#2 has no gpu capacity for task#9"]
    );
    assert_eq!(
        v[0].detail,
        Some(ViolationDetail::NoCapacity {
            resource: "gpu".parse().unwrap()
        })
    );
    // Agent 1 has 4 gpus: 4 of 4 is within a cap of 1.0.
    let p = Proposal::new(task(9), "train", id(1)).with_resources(res("gpu=4"));
    assert_eq!(set.validate(&p, &ctx), []);
}

#[test]
fn an_agent_missing_from_the_ledger_has_no_capacity() {
    let reg = registry();
    let led = ResourceLedger::new();
    let ctx = PolicyContext::new(&reg, &led);
    let set = only(UtilizationCap::default());
    let v = set.validate(&cpu_proposal(9, 1, 1), &ctx);
    assert_eq!(rules_of(&v), ["utilization_cap"]);
    // Needing nothing is fine anywhere.
    assert_eq!(set.validate(&cpu_proposal(9, 1, 0), &ctx), []);
}

#[test]
fn each_resource_over_the_cap_is_reported_in_resource_order() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let p =
        Proposal::new(task(9), "build", id(2)).with_resources(res("cpu=999m,memory=999B,gpu=1"));
    let v = only(UtilizationCap::default().with_sole_task_allowed(false)).validate(&p, &ctx);
    let resources: Vec<String> = v
        .iter()
        .map(|v| match &v.detail {
            Some(ViolationDetail::Utilization { resource, .. })
            | Some(ViolationDetail::NoCapacity { resource }) => resource.to_string(),
            other => panic!("unexpected detail {other:?}"),
        })
        .collect();
    assert_eq!(resources, ["cpu", "memory", "gpu"]);
}

#[test]
fn the_resources_default_to_the_requirements() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let t = Task::new(task(9), "build", "build it")
        .with_requirements(Requirements::new().with_resources(res("cpu=600m")));
    let p = Proposal::for_task(&t, id(1));
    assert_eq!(p.resources(), &res("cpu=600m"));
    assert_eq!(
        rules_of(&only(UtilizationCap::default()).validate(&p, &ctx)),
        ["utilization_cap"]
    );
    // A smaller predicted need replaces the requested one.
    let p = p.with_resources(res("cpu=400m"));
    assert_eq!(only(UtilizationCap::default()).validate(&p, &ctx), []);
}

// ----- max tasks per agent --------------------------------------------------------

#[test]
fn an_agent_takes_no_more_tasks_than_its_slots_counting_the_batch() {
    let (mut reg, led) = (registry(), ledger());
    reg.task_started(id(1), NOW).unwrap(); // 1 of 2 running
    let set = only(MaxTasksPerAgent::default());
    let p = Proposal::new(task(9), "deploy", id(1));
    let ctx = PolicyContext::new(&reg, &led);
    assert_eq!(set.validate(&p, &ctx), []);

    let batch = [Proposal::new(task(1), "deploy", id(1))];
    let ctx = ctx.with_pending(&batch);
    let v = set.validate(&p, &ctx);
    assert_eq!(
        messages(&v),
        [
            "max_tasks_per_agent (error): agent#1 has no task slot for task#9: 1 running and 1 pending, at most 2"
        ]
    );
    assert_eq!(
        v[0].detail,
        Some(ViolationDetail::TaskSlots {
            running: 1,
            pending: 1,
            limit: 2
        })
    );
    // The proposal itself in the batch is not counted against itself.
    let batch = [p.clone()];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    assert_eq!(set.validate(&p, &ctx), []);
}

#[test]
fn the_rules_maximum_lowers_but_never_raises_the_limit() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let batch = [Proposal::new(task(1), "x", id(3))];
    let with_one = ctx.with_pending(&batch);
    let p = Proposal::new(task(9), "x", id(3)); // 3 slots, none running
    assert_eq!(only(MaxTasksPerAgent::new(2)).validate(&p, &with_one), []);
    assert_eq!(
        rules_of(&only(MaxTasksPerAgent::new(1)).validate(&p, &with_one)),
        ["max_tasks_per_agent"]
    );
    // Agent 2 has one slot; a maximum of 10 does not give it more.
    let batch = [Proposal::new(task(1), "x", id(2))];
    let ctx = ctx.with_pending(&batch);
    let p = Proposal::new(task(9), "x", id(2));
    let v = only(MaxTasksPerAgent::new(10)).validate(&p, &ctx);
    assert!(matches!(
        v[0].detail,
        Some(ViolationDetail::TaskSlots { limit: 1, .. })
    ));
}

#[test]
fn an_unknown_agent_has_no_slot() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let v = only(MaxTasksPerAgent::default()).validate(&Proposal::new(task(9), "x", id(99)), &ctx);
    assert_eq!(
        messages(&v),
        ["max_tasks_per_agent (error): agent#99 has no task slot for task#9: it is not registered"]
    );
}

// ----- separation of duties --------------------------------------------------------

fn duty(t: u64, agent: u64, group: &str, duty: &str) -> Proposal {
    Proposal::new(task(t), "step", id(agent))
        .with_group(group)
        .with_duty(duty)
}

#[test]
fn the_agent_that_deployed_does_not_verify_in_the_same_group() {
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record("run-1", "deploy", id(1));
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    let set = only(SeparationOfDuties::default());

    let v = set.validate(&duty(9, 1, "run-1", "verify"), &ctx);
    assert_eq!(
        messages(&v),
        [
            "separation_of_duties (error): agent#1 may not do `verify` for task#9: it does `deploy` in group `run-1`"
        ]
    );
    assert_eq!(
        v[0].detail,
        Some(ViolationDetail::DutyConflict {
            group: "run-1".into(),
            duty: "verify".into(),
            conflicting: "deploy".into(),
        })
    );
    // Another agent, another group, no group, or the same duty again: fine.
    assert_eq!(set.validate(&duty(9, 2, "run-1", "verify"), &ctx), []);
    assert_eq!(set.validate(&duty(9, 1, "run-2", "verify"), &ctx), []);
    assert_eq!(set.validate(&duty(9, 1, "run-1", "deploy"), &ctx), []);
    let ungrouped = Proposal::new(task(9), "verify", id(1));
    assert_eq!(set.validate(&ungrouped, &ctx), []);
}

#[test]
fn the_pair_works_both_ways_and_ignores_case() {
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record("run-1", " Verify ", id(2));
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    let set = only(SeparationOfDuties::default());
    let v = set.validate(&duty(9, 2, "run-1", "DEPLOY"), &ctx);
    assert_eq!(rules_of(&v), ["separation_of_duties"]);
}

#[test]
fn the_duty_defaults_to_the_task_kind() {
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record("run-1", "deploy", id(1));
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    let p = Proposal::new(task(9), "verify", id(1)).with_group("run-1");
    assert_eq!(p.duty(), "verify");
    let v = only(SeparationOfDuties::default()).validate(&p, &ctx);
    assert_eq!(rules_of(&v), ["separation_of_duties"]);
}

/// A failed attempt counts as the duty done unless the rule says otherwise; one in
/// progress always counts, and what the rule says is written only when it is off.
#[test]
fn a_failed_attempt_counts_unless_the_rule_says_otherwise() {
    use concord::policy::AttemptEnd;
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record_failed("run-1", "deploy", id(1));
    log.record_running("run-1", "deploy", id(2));
    log.record_running("run-1", "deploy", id(3));
    log.end_running("run-1", "deploy", id(3), AttemptEnd::Failed);
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    let strict = only(SeparationOfDuties::default());
    let lenient = only(SeparationOfDuties::default().counting_failed(false));
    for agent in [1, 2, 3] {
        assert_eq!(
            rules_of(&strict.validate(&duty(9, agent, "run-1", "verify"), &ctx)),
            ["separation_of_duties"]
        );
    }
    assert_eq!(lenient.validate(&duty(9, 1, "run-1", "verify"), &ctx), []);
    assert_eq!(lenient.validate(&duty(9, 3, "run-1", "verify"), &ctx), []);
    assert_eq!(
        rules_of(&lenient.validate(&duty(9, 2, "run-1", "verify"), &ctx)),
        ["separation_of_duties"],
        "an attempt in progress counts"
    );
    log.end_running("run-1", "deploy", id(2), AttemptEnd::Succeeded);
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    assert_eq!(
        rules_of(&lenient.validate(&duty(9, 2, "run-1", "verify"), &ctx)),
        ["separation_of_duties"],
        "a duty performed counts"
    );

    let default = serde_json::to_string(&SeparationOfDuties::default()).unwrap();
    assert!(!default.contains("count_failed"), "{default}");
    let off = serde_json::to_string(&SeparationOfDuties::default().counting_failed(false)).unwrap();
    assert!(off.contains(r#""count_failed":false"#), "{off}");
    let back: SeparationOfDuties = serde_json::from_str(&off).unwrap();
    assert!(!back.counts_failed());
    assert!(serde_json::from_str::<SeparationOfDuties>(r#"{"count_failed":"no"}"#).is_err());
}

#[test]
fn duties_pending_in_the_batch_count() {
    let (reg, led) = (registry(), ledger());
    let set = only(SeparationOfDuties::default());
    let batch = [
        duty(1, 1, "run-1", "deploy"),
        duty(2, 2, "run-2", "deploy"), // other agent
        duty(3, 1, "run-3", "deploy"), // other group
    ];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    assert_eq!(
        rules_of(&set.validate(&duty(9, 1, "run-1", "verify"), &ctx)),
        ["separation_of_duties"]
    );
    assert_eq!(set.validate(&duty(9, 1, "run-2", "verify"), &ctx), []);
}

#[test]
fn several_pairs_report_each_conflicting_duty_once() {
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record("run-1", "verify", id(1));
    log.record("run-1", "qa", id(1));
    let ctx = PolicyContext::new(&reg, &led).with_duties(&log);
    let rule = SeparationOfDuties::default()
        .with_pair("verify", "deploy") // the default pair again, reversed
        .with_pair("deploy", "qa");
    let v = only(rule).validate(&duty(9, 1, "run-1", "deploy"), &ctx);
    let conflicting: Vec<_> = v
        .iter()
        .map(|v| match &v.detail {
            Some(ViolationDetail::DutyConflict { conflicting, .. }) => conflicting.as_str(),
            other => panic!("unexpected detail {other:?}"),
        })
        .collect();
    assert_eq!(conflicting, ["verify", "qa"]);
}

#[test]
fn a_pair_naming_one_duty_twice_asks_for_two_agents() {
    let (reg, led) = (registry(), ledger());
    let set = only(SeparationOfDuties::empty().with_pair("approve", "approve"));
    let batch = [duty(1, 1, "change-7", "approve")];
    let ctx = PolicyContext::new(&reg, &led).with_pending(&batch);
    assert_eq!(
        rules_of(&set.validate(&duty(2, 1, "change-7", "approve"), &ctx)),
        ["separation_of_duties"]
    );
    assert_eq!(set.validate(&duty(2, 2, "change-7", "approve"), &ctx), []);
    // The same task is not its own second approval.
    assert_eq!(set.validate(&duty(1, 1, "change-7", "approve"), &ctx), []);
}

#[test]
fn the_duty_log_records_proposals_and_forgets_groups() {
    let mut log = DutyLog::new();
    assert!(!log.record_proposal(&Proposal::new(task(1), "deploy", id(1))));
    assert!(log.record_proposal(&duty(1, 1, "run-1", "Deploy")));
    assert!(log.record_proposal(&duty(2, 2, "run-1", "deploy")));
    assert!(log.record_proposal(&duty(3, 1, "run-2", "verify")));
    assert_eq!(log.len(), 3);
    assert_eq!(
        log.agents("run-1", "DEPLOY").collect::<Vec<_>>(),
        [id(1), id(2)]
    );
    assert_eq!(log.groups().collect::<Vec<_>>(), ["run-1", "run-2"]);
    assert!(log.forget_group("run-1"));
    assert!(!log.forget_group("run-1"));
    assert_eq!(log.len(), 1);
    assert!(!log.has_performed("run-1", "deploy", id(1)));
}

#[test]
fn the_duty_log_round_trips_and_normalizes_what_it_loads() {
    let mut log = DutyLog::new();
    log.record("run-1", "deploy", id(1));
    let json = serde_json::to_string(&log).unwrap();
    assert_eq!(json, r#"{"groups":{"run-1":{"deploy":[1]}}}"#);
    assert_eq!(serde_json::from_str::<DutyLog>(&json).unwrap(), log);
    let host: DutyLog =
        serde_json::from_str(r#"{"groups":{"run-1":{" Deploy ":[1],"verify":[]}}}"#).unwrap();
    assert_eq!(host, log);
    assert!(serde_json::from_str::<DutyLog>(r#"{"grups":{}}"#).is_err());
    // Failed attempts are kept apart, and a log written before they were reads each
    // lasting record as a duty performed.
    log.record_failed("run-1", "deploy", id(2));
    let json = serde_json::to_string(&log).unwrap();
    assert_eq!(
        json,
        r#"{"groups":{"run-1":{"deploy":[1]}},"failed":{"run-1":{"deploy":[2]}}}"#
    );
    assert_eq!(serde_json::from_str::<DutyLog>(&json).unwrap(), log);
}

// ----- agent status ---------------------------------------------------------------

#[test]
fn only_available_agents_take_work() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = only(AgentStatusRule::default());
    let check = |agent| set.validate(&Proposal::new(task(9), "x", id(agent)), &ctx);
    assert_eq!(check(1), []);
    let cases = [
        (4, AgentStatus::Quarantined, Severity::Critical),
        (5, AgentStatus::Offline, Severity::Error),
        (6, AgentStatus::Unhealthy, Severity::Error),
        (7, AgentStatus::Busy, Severity::Error),
    ];
    for (agent, status, severity) in cases {
        let v = check(agent);
        assert_eq!(v.len(), 1, "{status}");
        assert_eq!(v[0].severity, severity, "{status}");
        assert_eq!(v[0].detail, Some(ViolationDetail::Status { status }));
        assert_eq!(
            v[0].message,
            format!("task#9 cannot go to agent#{agent}: it is {status}")
        );
    }
}

#[test]
fn an_unknown_agent_is_critical_not_a_panic() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let p = Proposal::new(task(9), "deploy", id(99))
        .with_requirements(Requirements::new().with_role(role("ops")))
        .with_resources(res("cpu=1"));
    let v = PolicySet::default().validate(&p, &ctx);
    assert_eq!(
        rules_of(&v),
        [
            "agent_status",
            "role_and_capability",
            "max_tasks_per_agent",
            "utilization_cap"
        ]
    );
    assert_eq!(v[0].severity, Severity::Critical);
    assert_eq!(v[0].detail, Some(ViolationDetail::UnknownAgent));
    assert_eq!(
        v[0].to_string(),
        "agent_status (critical): task#9 cannot go to agent#99: it is not registered"
    );
}

// ----- safe mode --------------------------------------------------------------------

#[test]
fn safe_mode_and_recovery_admit_no_new_assignment() {
    let (reg, led) = (registry(), ledger());
    let p = Proposal::new(task(9), "deploy", id(1));
    let set = PolicySet::default();
    let normal = PolicyContext::new(&reg, &led);
    assert_eq!(set.validate(&p, &normal), []);
    for mode in [SystemMode::SafeMode, SystemMode::Recovery] {
        let v = set.validate(&p, &normal.with_mode(mode));
        assert_eq!(
            messages(&v),
            [format!(
                "safe_mode (critical): task#9 cannot go to agent#1: the system is in {mode}"
            )]
        );
        assert_eq!(v[0].detail, Some(ViolationDetail::Mode { mode }));
        assert!(!set.permits(&p, &normal.with_mode(mode)));
    }
}

#[test]
fn the_allow_list_admits_recovery_duties_outside_normal_mode() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led).with_mode(SystemMode::SafeMode);
    let set = only(SafeModeRule::default().with_allowed("diagnose"));
    assert_eq!(
        set.validate(&Proposal::new(task(9), "Diagnose", id(1)), &ctx),
        []
    );
    let restart = Proposal::new(task(9), "ops", id(1)).with_duty("diagnose");
    assert_eq!(set.validate(&restart, &ctx), []);
    assert_eq!(
        rules_of(&set.validate(&Proposal::new(task(9), "deploy", id(1)), &ctx)),
        ["safe_mode"]
    );
}

// ----- severities, switches, ordering -----------------------------------------------

#[test]
fn a_severity_override_applies_to_every_violation_of_the_rule() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = PolicySet::default()
        .with_rule(AgentStatusRule::default().with_severity(Severity::Warning))
        .unwrap()
        .with_rule(
            UtilizationCap::default()
                .with_sole_task_allowed(false)
                .with_severity(Severity::Info),
        )
        .unwrap();
    let p = Proposal::new(task(9), "x", id(4)).with_resources(res("cpu=1"));
    let v = set.validate(&p, &ctx);
    assert_eq!(rules_of(&v), ["agent_status", "utilization_cap"]);
    assert_eq!(v[0].severity, Severity::Warning);
    assert_eq!(v[1].severity, Severity::Info);
    assert!(set.permits(&p, &ctx));
    assert_eq!(set.blocking(&p, &ctx), []);
    // An override can also raise a rule's severity.
    let set = only(
        UtilizationCap::default()
            .with_sole_task_allowed(false)
            .with_severity(Severity::Critical),
    );
    assert_eq!(set.validate(&p, &ctx)[0].severity, Severity::Critical);
}

#[test]
fn a_disabled_rule_reports_nothing() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led).with_mode(SystemMode::SafeMode);
    let p = Proposal::new(task(9), "x", id(5))
        .with_requirements(Requirements::new().with_role(role("qa")))
        .with_resources(res("cpu=2"));
    let disabled = PolicySet::new([
        SafeModeRule::default().with_enabled(false).into(),
        AgentStatusRule::default().with_enabled(false).into(),
        RoleAndCapability::default().with_enabled(false).into(),
        MaxTasksPerAgent::default().with_enabled(false).into(),
        UtilizationCap::default().with_enabled(false).into(),
        SeparationOfDuties::default().with_enabled(false).into(),
    ])
    .unwrap();
    assert_eq!(disabled.validate(&p, &ctx), []);
    assert_eq!(
        rules_of(&PolicySet::default().validate(&p, &ctx)),
        [
            "safe_mode",
            "agent_status",
            "role_and_capability",
            "utilization_cap"
        ]
    );
    let rule = PolicyRule::from(UtilizationCap::default().with_enabled(false));
    assert!(!rule.enabled());
    assert_eq!(rule.validate(&p, &ctx), []);
}

#[test]
fn the_default_set_runs_every_rule_in_a_fixed_order() {
    let names: Vec<_> = PolicySet::default()
        .rule_names()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        names,
        [
            "safe_mode",
            "agent_status",
            "role_and_capability",
            "max_tasks_per_agent",
            "utilization_cap",
            "separation_of_duties"
        ]
    );
    assert!(PolicySet::default().rules().iter().all(PolicyRule::enabled));
}

#[test]
fn with_rule_replaces_rules_of_the_same_name_and_without_removes_them() {
    let tiers = PolicySet::new([
        AgentStatusRule::default().into(),
        UtilizationCap::new(0.8)
            .with_severity(Severity::Warning)
            .into(),
        UtilizationCap::default().into(),
    ])
    .unwrap();
    let replaced = tiers.clone().with_rule(UtilizationCap::new(0.5)).unwrap();
    assert_eq!(
        replaced.rules(),
        [
            AgentStatusRule::default().into(),
            UtilizationCap::new(0.5).into()
        ]
    );
    let added = tiers.clone().with_rule(MaxTasksPerAgent::new(4)).unwrap();
    assert_eq!(added.rules().last(), Some(&MaxTasksPerAgent::new(4).into()));
    let removed = tiers.without("utilization_cap");
    assert_eq!(removed.rules(), [AgentStatusRule::default().into()]);
    assert!(PolicySet::empty().rules().is_empty());
}

#[test]
fn two_tiers_of_one_rule_warn_then_block() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = PolicySet::new([
        UtilizationCap::new(0.8)
            .with_sole_task_allowed(false)
            .with_severity(Severity::Warning)
            .into(),
        UtilizationCap::default()
            .with_sole_task_allowed(false)
            .into(),
    ])
    .unwrap();
    let warn = set.validate(&cpu_proposal(9, 2, 900), &ctx);
    assert_eq!(warn.len(), 1);
    assert_eq!(warn[0].severity, Severity::Warning);
    assert!(set.permits(&cpu_proposal(9, 2, 900), &ctx));
    assert!(!set.permits(&cpu_proposal(9, 2, 960), &ctx));
    assert_eq!(set.blocking(&cpu_proposal(9, 2, 960), &ctx).len(), 1);
}

#[test]
fn validation_is_deterministic_and_changes_nothing() {
    let (reg, led) = (registry(), ledger());
    let mut log = DutyLog::new();
    log.record("run-1", "deploy", id(2));
    let batch = [cpu_proposal(1, 2, 500)];
    let ctx = PolicyContext::new(&reg, &led)
        .with_duties(&log)
        .with_pending(&batch);
    let p = duty(9, 2, "run-1", "verify")
        .with_requirements(Requirements::new().with_role(role("ops")))
        .with_resources(res("cpu=600m,gpu=1"));
    let set = PolicySet::default();
    let first = set.validate(&p, &ctx);
    assert_eq!(
        rules_of(&first),
        [
            "role_and_capability",
            "max_tasks_per_agent",
            "utilization_cap",
            "utilization_cap",
            "separation_of_duties"
        ]
    );
    for _ in 0..10 {
        assert_eq!(set.validate(&p, &ctx), first);
    }
    assert_eq!(reg.snapshot(), registry().snapshot());
}

// ----- host rules -----------------------------------------------------------------

/// Refuses agents whose id is odd, at a fixed severity.
#[derive(Debug)]
struct EvenAgentsOnly(Severity);

impl PolicyEnforcer for EvenAgentsOnly {
    fn validate(&self, p: &Proposal, _: &PolicyContext<'_>) -> Vec<Violation> {
        if p.agent().get() % 2 == 0 {
            return Vec::new();
        }
        vec![Violation::new(
            "even_agents_only",
            self.0,
            p.agent(),
            p.task(),
            format!("{} is odd", p.agent()),
        )]
    }
}

#[test]
fn host_rules_run_after_the_data_rules_in_the_order_added() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led).with_mode(SystemMode::SafeMode);
    let set = PolicySet::default()
        .with_custom("even", Arc::new(EvenAgentsOnly(Severity::Warning)))
        .unwrap()
        .with_fn("no_builds", |p: &Proposal, _: &PolicyContext<'_>| {
            (p.kind() == "build").then(|| format!("{} is a build", p.task()))
        })
        .unwrap();
    assert_eq!(
        set.rule_names().collect::<Vec<_>>().last(),
        Some(&"no_builds")
    );
    let v = set.validate(&Proposal::new(task(9), "build", id(1)), &ctx);
    assert_eq!(
        messages(&v),
        [
            "safe_mode (critical): task#9 cannot go to agent#1: the system is in safe_mode",
            "even_agents_only (warning): agent#1 is odd",
            "no_builds (error): task#9 is a build",
        ]
    );
    let normal = PolicyContext::new(&reg, &led);
    assert_eq!(
        set.validate(&Proposal::new(task(9), "test", id(2)), &normal),
        []
    );
}

#[test]
fn host_rules_read_the_time_from_the_context() {
    let (reg, led) = (registry(), ledger());
    let set = PolicySet::empty()
        .with_fn("deadline", |p: &Proposal, ctx: &PolicyContext<'_>| {
            let (deadline, now) = (p.requirements().deadline()?, ctx.now()?);
            (now > deadline).then(|| format!("{} is past its deadline", p.task()))
        })
        .unwrap();
    let p = Proposal::new(task(9), "x", id(1))
        .with_requirements(Requirements::new().with_deadline(Timestamp::from_secs(10)));
    let ctx = PolicyContext::new(&reg, &led);
    assert_eq!(ctx.now(), None);
    assert_eq!(set.validate(&p, &ctx), []);
    assert_eq!(
        set.validate(&p, &ctx.with_now(Timestamp::from_secs(10))),
        []
    );
    assert_eq!(
        messages(&set.validate(&p, &ctx.with_now(Timestamp::from_secs(11)))),
        ["deadline (error): task#9 is past its deadline"]
    );
}

#[test]
fn a_host_rule_with_a_taken_name_replaces_the_old_one() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let set = PolicySet::empty()
        .with_custom("even", Arc::new(EvenAgentsOnly(Severity::Warning)))
        .unwrap()
        .with_custom("even", Arc::new(EvenAgentsOnly(Severity::Critical)))
        .unwrap();
    assert_eq!(set.custom_names().collect::<Vec<_>>(), ["even"]);
    let v = set.validate(&Proposal::new(task(9), "x", id(1)), &ctx);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].severity, Severity::Critical);
    assert!(set.without("even").custom_names().next().is_none());
}

#[test]
fn enforcers_work_behind_arc_and_box() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led);
    let p = Proposal::new(task(9), "x", id(4));
    let shared: Arc<dyn PolicyEnforcer> = Arc::new(PolicySet::default());
    let boxed: Box<dyn PolicyEnforcer> = Box::new(PolicySet::default());
    assert!(!shared.permits(&p, &ctx));
    assert_eq!(boxed.validate(&p, &ctx), shared.validate(&p, &ctx));
    assert_eq!(Arc::clone(&shared).validate(&p, &ctx).len(), 1);
}

// ----- serde --------------------------------------------------------------------------

#[test]
fn the_default_set_round_trips_through_json() {
    let set = PolicySet::default();
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"rules":[{"rule":"safe_mode","enabled":true},{"rule":"agent_status","enabled":true},"#,
            r#"{"rule":"role_and_capability","enabled":true},{"rule":"max_tasks_per_agent","enabled":true},"#,
            r#"{"rule":"utilization_cap","max":0.95,"allow_sole_task":true,"enabled":true},"#,
            r#"{"rule":"separation_of_duties","exclusive":[["deploy","verify"]],"enabled":true}]}"#
        )
    );
    let back: PolicySet = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rules(), set.rules());
}

#[test]
fn a_customized_set_round_trips_but_host_rules_do_not() {
    let set = PolicySet::new([
        SafeModeRule::default().with_allowed("diagnose").into(),
        UtilizationCap::new(0.5)
            .with_severity(Severity::Warning)
            .with_enabled(false)
            .into(),
        MaxTasksPerAgent::new(3).into(),
        SeparationOfDuties::empty().with_pair("deploy", "qa").into(),
    ])
    .unwrap()
    .with_custom("even", Arc::new(EvenAgentsOnly(Severity::Error)))
    .unwrap();
    let json = serde_json::to_string_pretty(&set).unwrap();
    assert!(!json.contains("even"));
    let back: PolicySet = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rules(), set.rules());
    assert_eq!(back.custom_names().count(), 0);
}

#[test]
fn a_set_loads_from_the_json_a_host_would_write() {
    let json = r#"
    {
      "rules": [
        { "rule": "safe_mode", "allow": ["diagnose", "restart", "validate"] },
        { "rule": "agent_status" },
        { "rule": "role_and_capability", "severity": "critical" },
        { "rule": "max_tasks_per_agent", "max": 4 },
        { "rule": "utilization_cap", "max": 0.8, "severity": "warning" },
        { "rule": "utilization_cap" },
        { "rule": "separation_of_duties", "exclusive": [["deploy", "verify"], ["deploy", "qa"]] }
      ]
    }"#;
    let set: PolicySet = serde_json::from_str(json).unwrap();
    let expected = PolicySet::new([
        SafeModeRule::default()
            .with_allowed("diagnose")
            .with_allowed("restart")
            .with_allowed("validate")
            .into(),
        AgentStatusRule::default().into(),
        RoleAndCapability::default()
            .with_severity(Severity::Critical)
            .into(),
        MaxTasksPerAgent::new(4).into(),
        UtilizationCap::new(0.8)
            .with_severity(Severity::Warning)
            .into(),
        UtilizationCap::default().into(),
        SeparationOfDuties::default()
            .with_pair("deploy", "qa")
            .into(),
    ])
    .unwrap();
    assert_eq!(set.rules(), expected.rules());
}

#[test]
fn loading_refuses_typos_unknown_rules_and_bad_values() {
    let err = |json: &str| {
        serde_json::from_str::<PolicySet>(json)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(r#"{"rules":[{"rule":"utilization_cap","mx":0.9}]}"#).contains("unknown field `mx`")
    );
    assert!(
        err(r#"{"rules":[{"rule":"coffee_break"}]}"#).contains("unknown variant `coffee_break`")
    );
    assert!(err(r#"{"rulez":[]}"#).contains("unknown field `rulez`"));
    assert!(
        err(r#"{"rules":[{"rule":"utilization_cap","max":0}]}"#)
            .contains("utilization cap 0 is outside (0, 1]")
    );
    assert!(
        err(r#"{"rules":[{"rule":"max_tasks_per_agent","max":0}]}"#)
            .contains("max tasks per agent is 0")
    );
    assert!(
        err(r#"{"rules":[{"rule":"separation_of_duties","exclusive":[["deploy"," "]]}]}"#)
            .contains(r#"separation of duties pair ["deploy", " "] has an empty duty"#)
    );
    assert!(
        err(r#"{"rules":[{"rule":"safe_mode","allow":["ok",""]}]}"#)
            .contains(r#"safe mode allow-list entry #1 ("") is an empty duty"#)
    );
    // An empty list is a valid set that permits everything.
    let empty: PolicySet = serde_json::from_str(r#"{"rules":[]}"#).unwrap();
    assert!(empty.rules().is_empty());
}

#[test]
fn every_policy_error_names_the_offending_value() {
    for max in [0.0, -0.5, 1.000_001, f64::NAN, f64::INFINITY] {
        let err = PolicySet::default()
            .with_rule(UtilizationCap::new(max))
            .unwrap_err();
        match err {
            PolicyError::InvalidUtilizationCap { max: got } => {
                assert!(got == max || (got.is_nan() && max.is_nan()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        PolicySet::new([UtilizationCap::new(f64::NAN).into()])
            .unwrap_err()
            .to_string(),
        "utilization cap NaN is outside (0, 1]"
    );
    assert!(PolicySet::new([UtilizationCap::new(1.0).into()]).is_ok());
    assert!(PolicySet::new([UtilizationCap::new(f64::MIN_POSITIVE).into()]).is_ok());

    let err = PolicySet::empty()
        .with_rule(MaxTasksPerAgent::new(0))
        .unwrap_err();
    assert_eq!(err, PolicyError::ZeroMaxTasks);
    assert_eq!(
        err.to_string(),
        "max tasks per agent is 0, so no agent could take a task"
    );

    let err = PolicySet::empty()
        .with_rule(SeparationOfDuties::empty().with_pair("", "verify"))
        .unwrap_err();
    assert_eq!(
        err,
        PolicyError::EmptyDuty {
            pair: [String::new(), "verify".into()]
        }
    );

    let err = PolicySet::empty()
        .with_rule(SafeModeRule::default().with_allowed("  "))
        .unwrap_err();
    assert_eq!(
        err,
        PolicyError::EmptyAllowedDuty {
            index: 0,
            duty: "  ".into()
        }
    );

    let err = PolicySet::empty()
        .with_custom(" ", Arc::new(EvenAgentsOnly(Severity::Error)))
        .unwrap_err();
    assert_eq!(err, PolicyError::EmptyRuleName { name: " ".into() });
    assert_eq!(err.to_string(), r#"custom policy rule name " " is empty"#);
    let err = PolicySet::empty()
        .with_fn("", |_: &Proposal, _: &PolicyContext<'_>| None)
        .unwrap_err();
    assert_eq!(
        err,
        PolicyError::EmptyRuleName {
            name: String::new()
        }
    );

    // The crate's Error does not wrap it yet; it is a std error in its own right.
    let boxed: Box<dyn std::error::Error> = Box::new(PolicyError::ZeroMaxTasks);
    assert!(boxed.source().is_none());
}

#[test]
fn violations_proposals_and_modes_are_serde_data() {
    let (reg, led) = (registry(), ledger());
    let ctx = PolicyContext::new(&reg, &led).with_mode(SystemMode::Recovery);
    let p = Proposal::new(task(9), "deploy", id(4))
        .with_requirements(Requirements::new().with_role(role("qa")))
        .with_resources(res("cpu=2,gpu=1"))
        .with_group("run-1")
        .with_duty("ship");
    let violations = PolicySet::default().validate(&p, &ctx);
    assert!(violations.len() >= 4);
    let json = serde_json::to_string(&violations).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Violation>>(&json).unwrap(),
        violations
    );
    assert!(json.contains(r#""detail":{"kind":"mode","mode":"recovery"}"#));

    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), p);
    let minimal: Proposal =
        serde_json::from_str(r#"{"task":9,"kind":"deploy","agent":4}"#).unwrap();
    assert_eq!(minimal, Proposal::new(task(9), "deploy", id(4)));
    assert_eq!(minimal.duty(), "deploy");
    assert!(minimal.group().is_none());

    for mode in SystemMode::ALL {
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(json, format!("\"{mode}\""));
        assert_eq!(serde_json::from_str::<SystemMode>(&json).unwrap(), mode);
    }
    assert_eq!(
        serde_json::to_string(&Severity::Critical).unwrap(),
        r#""critical""#
    );
}
