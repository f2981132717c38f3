//! Agents: the `Agent` trait, profiles, capability bitsets and the registry, through the
//! public API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concord::agent::{
    Agent, AgentError, AgentExt, AgentHealth, AgentProfile, AgentRegistry, AgentStatus,
    CapabilityCatalog, CapabilitySet, Outcome, RegistryError, RegistrySnapshot, Unfit, WorkItem,
    WorkOutput,
};
use concord::{
    AgentId, Capability, Clock, ManualClock, Requirements, Resources, Role, Task, TaskId, Timestamp,
};
use futures::executor::block_on;

use AgentStatus::{Available, Busy, Offline, Quarantined, Unhealthy};

fn id(n: u64) -> AgentId {
    AgentId::new(n)
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

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// Three agents: 1 ops/deploy (2 slots, 4 cpu), 2 qa/screenshot+browser (1 slot, no
/// declared capacity), 3 qa+security/screenshot (3 slots, 1 cpu, 1 gpu).
fn fleet() -> AgentRegistry {
    let mut r = AgentRegistry::new();
    r.register(
        AgentProfile::new(id(1), "ops-1")
            .with_role(role("ops"))
            .with_capability(cap("deploy"))
            .with_capacity(res("cpu=4,memory=8Gi"))
            .with_max_tasks(2),
        t(1),
    )
    .unwrap();
    r.register(
        AgentProfile::new(id(2), "qa-1")
            .with_role(role("qa"))
            .with_capability(cap("screenshot"))
            .with_capability(cap("browser")),
        t(2),
    )
    .unwrap();
    r.register(
        AgentProfile::new(id(3), "qa-2")
            .with_role(role("qa"))
            .with_role(role("security"))
            .with_capability(cap("screenshot"))
            .with_capacity(res("cpu=1,memory=2Gi,gpu=1"))
            .with_max_tasks(3),
        t(3),
    )
    .unwrap();
    r
}

/// Runs `f` on the registry, asserts it failed with `expected`, and that the registry's
/// snapshot (and catalogs) did not change.
fn assert_unchanged<T: std::fmt::Debug>(
    r: &mut AgentRegistry,
    expected: RegistryError,
    f: impl FnOnce(&mut AgentRegistry) -> Result<T, RegistryError>,
) {
    let before = r.snapshot();
    let (roles, caps) = (r.role_catalog().len(), r.capability_catalog().len());
    let got = f(r).expect_err("call should fail");
    assert_eq!(got, expected);
    assert_eq!(r.snapshot(), before, "registry changed after {got}");
    assert_eq!(r.role_catalog().len(), roles);
    assert_eq!(r.capability_catalog().len(), caps);
}

// ---------------------------------------------------------------------------------
// The Agent trait
// ---------------------------------------------------------------------------------

/// A fake agent: answers health after advancing a shared clock, echoes inputs, and
/// fails work of kind `boom`.
#[derive(Debug)]
struct Fake {
    id: AgentId,
    clock: ManualClock,
    latency: Duration,
    down: bool,
}

#[concord::async_trait]
impl Agent for Fake {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        if self.down {
            return Err(AgentError::Unreachable {
                reason: "connection refused".into(),
            });
        }
        if work.kind() == "boom" {
            return Ok(WorkOutput::failure("it exploded"));
        }
        Ok(WorkOutput::success()
            .with_outputs_from(work.inputs())
            .with_usage(res("cpu=100m")))
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        self.clock.advance(self.latency);
        if self.down {
            return Err(AgentError::Timeout {
                after: self.latency,
            });
        }
        Ok(AgentHealth::new("3.2.1").with_detail("queue", "0"))
    }
}

trait WithOutputsFrom {
    fn with_outputs_from(self, inputs: &BTreeMap<String, String>) -> Self;
}

impl WithOutputsFrom for WorkOutput {
    fn with_outputs_from(mut self, inputs: &BTreeMap<String, String>) -> Self {
        for (k, v) in inputs {
            self = self.with_output(k.clone(), v.clone());
        }
        self
    }
}

fn fake(clock: &ManualClock, latency_ms: u64, down: bool) -> Fake {
    Fake {
        id: id(42),
        clock: clock.clone(),
        latency: Duration::from_millis(latency_ms),
        down,
    }
}

#[test]
fn registry_and_agents_are_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<AgentRegistry>();
    f::<Arc<dyn Agent>>();
    f::<CapabilitySet>();
    f::<CapabilityCatalog>();
}

#[test]
fn execute_through_dyn_agent() {
    let clock = ManualClock::new(t(0));
    let agent: Arc<dyn Agent> = Arc::new(fake(&clock, 0, false));
    assert_eq!(agent.id(), id(42));

    let work = WorkItem::new(TaskId::new(1), "build", "build it").with_input("sha", "abc123");
    let out = block_on(agent.execute(work)).unwrap();
    assert!(out.is_success());
    assert_eq!(out.output("sha"), Some("abc123"));
    assert_eq!(out.usage(), Some(&res("cpu=100m")));

    let out = block_on(agent.execute(WorkItem::new(TaskId::new(2), "boom", ""))).unwrap();
    assert_eq!(
        out.outcome(),
        &Outcome::Failed {
            reason: "it exploded".into(),
            retryable: false
        }
    );

    let down: Arc<dyn Agent> = Arc::new(fake(&clock, 0, true));
    let err = block_on(down.execute(WorkItem::new(TaskId::new(3), "build", ""))).unwrap_err();
    assert_eq!(err.to_string(), "agent is unreachable: connection refused");
}

#[test]
fn ping_times_health_with_the_injected_clock() {
    let clock = ManualClock::new(t(1000));
    let agent = fake(&clock, 250, false);
    let ping = block_on(agent.ping(&clock)).unwrap();
    assert_eq!(ping.agent, id(42));
    assert_eq!(ping.response_time, Duration::from_millis(250));
    assert_eq!(ping.version, "3.2.1");
    assert_eq!(ping.details["queue"], "0");
    assert_eq!(ping.at, t(1000) + Duration::from_millis(250));
    assert_eq!(clock.now(), ping.at);

    // Through `dyn Agent` too (the blanket impl covers unsized agents).
    let shared: Arc<dyn Agent> = Arc::new(fake(&clock, 40, false));
    let ping = block_on(shared.ping(&clock)).unwrap();
    assert_eq!(ping.response_time, Duration::from_millis(40));

    // Serde round trip of the ping.
    let json = serde_json::to_string(&ping).unwrap();
    assert_eq!(
        serde_json::from_str::<concord::agent::Ping>(&json).unwrap(),
        ping
    );
}

#[test]
fn ping_passes_agent_errors_through() {
    let clock = ManualClock::new(t(0));
    let agent = fake(&clock, 5000, true);
    let err = block_on(agent.ping(&clock)).unwrap_err();
    assert_eq!(
        err,
        AgentError::Timeout {
            after: Duration::from_secs(5)
        }
    );
}

#[test]
fn agent_error_messages_and_transience() {
    let cases = [
        (
            AgentError::Unreachable {
                reason: "dns failure".into(),
            },
            "agent is unreachable: dns failure",
            true,
        ),
        (
            AgentError::Timeout {
                after: Duration::from_millis(1500),
            },
            "agent timed out after 1.5s",
            true,
        ),
        (
            AgentError::Rejected {
                reason: "shutting down".into(),
            },
            "agent rejected the work: shutting down",
            false,
        ),
        (
            AgentError::Failed {
                reason: "bad json".into(),
            },
            "agent failed: bad json",
            false,
        ),
    ];
    for (err, msg, transient) in cases {
        assert_eq!(err.to_string(), msg);
        assert_eq!(err.is_transient(), transient, "{err}");
    }
}

// ---------------------------------------------------------------------------------
// Work items, outputs, health
// ---------------------------------------------------------------------------------

#[test]
fn work_item_builders_and_getters() {
    let w = WorkItem::new(TaskId::new(5), "deploy", "ship it")
        .with_input("b", "2")
        .with_inputs([("a", "1"), ("b", "3")])
        .with_attempt(3)
        .with_deadline(t(99));
    assert_eq!(w.task(), TaskId::new(5));
    assert_eq!(w.kind(), "deploy");
    assert_eq!(w.description(), "ship it");
    assert_eq!(w.inputs().keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(w.input("b"), Some("3"));
    assert_eq!(w.input("c"), None);
    assert_eq!(w.attempt(), 3);
    assert_eq!(w.deadline(), Some(t(99)));

    let fresh = WorkItem::new(TaskId::new(6), "x", "y");
    assert_eq!((fresh.attempt(), fresh.deadline()), (1, None));
    assert!(fresh.inputs().is_empty());
}

#[test]
fn work_item_for_task_copies_identity_and_deadline() {
    let task = Task::new(TaskId::new(8), "screenshot", "capture the page")
        .with_requirements(Requirements::new().with_deadline(t(60)));
    let w = WorkItem::for_task(&task);
    assert_eq!(w.task(), TaskId::new(8));
    assert_eq!(w.kind(), "screenshot");
    assert_eq!(w.description(), "capture the page");
    assert_eq!(w.deadline(), Some(t(60)));
    assert_eq!(w.attempt(), 1);
    // Assigned outside a workflow run: no run, and so no step.
    assert_eq!((w.run(), w.step()), (None, None));
}

#[test]
fn work_output_constructors() {
    let ok = WorkOutput::success()
        .with_output("url", "https://x")
        .with_output("url", "https://y")
        .with_usage(res("memory=1Gi"));
    assert!(ok.is_success() && ok.outcome().is_success());
    assert_eq!(ok.output("url"), Some("https://y"));
    assert_eq!(ok.outputs().len(), 1);
    assert_eq!(ok.usage(), Some(&res("memory=1Gi")));

    let bad = WorkOutput::failure("tests failed");
    assert!(!bad.is_success());
    assert_eq!(
        bad.outcome(),
        &Outcome::Failed {
            reason: "tests failed".into(),
            retryable: false
        }
    );
    assert_eq!(bad.usage(), None);
    assert_eq!(bad.output("url"), None);

    let flaky = WorkOutput::retryable_failure("503");
    assert!(matches!(
        flaky.outcome(),
        Outcome::Failed {
            retryable: true,
            ..
        }
    ));
    assert_eq!(
        WorkOutput::with_outcome(Outcome::Succeeded),
        WorkOutput::success()
    );
}

#[test]
fn agent_health_builder() {
    let h = AgentHealth::new("1.0")
        .with_detail("model", "m1")
        .with_detail("model", "m2");
    assert_eq!(h.version(), "1.0");
    assert_eq!(h.details().get("model").map(String::as_str), Some("m2"));
    assert!(AgentHealth::new("2").details().is_empty());
}

#[test]
fn work_types_round_trip_through_serde() {
    let w = WorkItem::new(TaskId::new(1), "deploy", "d")
        .with_input("k", "v")
        .with_attempt(2)
        .with_deadline(t(5));
    let json = serde_json::to_string(&w).unwrap();
    assert_eq!(serde_json::from_str::<WorkItem>(&json).unwrap(), w);
    // A task's work item writes no run (items written before there was one read
    // back the same); a step's keeps its run.
    assert!(!json.contains("run"), "{json}");
    let step = w.clone().with_run("deploy-api");
    let json = serde_json::to_string(&step).unwrap();
    let back = serde_json::from_str::<WorkItem>(&json).unwrap();
    assert_eq!((back.run(), back.step()), (Some("deploy-api"), Some("d")));
    assert_eq!(back, step);

    // Defaults for the optional fields.
    let minimal: WorkItem =
        serde_json::from_str(r#"{"task":3,"kind":"k","description":"d"}"#).unwrap();
    assert_eq!(minimal, WorkItem::new(TaskId::new(3), "k", "d"));

    for out in [
        WorkOutput::success()
            .with_output("url", "u")
            .with_usage(res("cpu=1")),
        WorkOutput::retryable_failure("flaky"),
    ] {
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(serde_json::from_str::<WorkOutput>(&json).unwrap(), out);
    }
    let json = serde_json::to_value(WorkOutput::failure("no")).unwrap();
    assert_eq!(
        json["outcome"],
        serde_json::json!({"status": "failed", "reason": "no", "retryable": false})
    );

    let h = AgentHealth::new("9").with_detail("a", "b");
    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(serde_json::from_str::<AgentHealth>(&json).unwrap(), h);
    assert_eq!(
        serde_json::to_string(&AgentHealth::new("9")).unwrap(),
        r#"{"version":"9"}"#
    );
}

// ---------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------

#[test]
fn profile_keeps_names_sorted_and_unique() {
    let p = AgentProfile::new(id(1), "bot")
        .with_role(role("qa"))
        .with_role(role("ops"))
        .with_role(role("qa"))
        .with_capability(cap("z"))
        .with_capability(cap("a"))
        .with_capability(cap("z"));
    assert_eq!(p.id(), id(1));
    assert_eq!(p.name(), "bot");
    assert_eq!(p.roles(), [role("ops"), role("qa")]);
    assert_eq!(p.capabilities(), [cap("a"), cap("z")]);
    assert!(p.has_role(&role("ops")) && !p.has_role(&role("human")));
    assert!(p.has_capability(&cap("a")) && !p.has_capability(&cap("b")));
    assert_eq!(p.max_tasks(), 1);
    assert_eq!(p.capacity(), None);
    let p = p.with_capacity(res("cpu=2")).with_max_tasks(4);
    assert_eq!(p.capacity(), Some(&res("cpu=2")));
    assert_eq!(p.max_tasks(), 4);
}

#[test]
fn profile_takes_lists_of_roles_and_capabilities() {
    // Added to what is there, sorted and without duplicates, like one at a time.
    let p = AgentProfile::new(id(1), "bot")
        .with_role(role("security"))
        .with_roles([role("qa"), role("ops"), role("qa"), role("security")])
        .with_capabilities(["z", "a", "z"].map(cap))
        .with_capabilities(Vec::new());
    let one_by_one = AgentProfile::new(id(1), "bot")
        .with_role(role("qa"))
        .with_role(role("security"))
        .with_role(role("ops"))
        .with_capability(cap("a"))
        .with_capability(cap("z"));
    assert_eq!(p, one_by_one);
    assert_eq!(p.roles(), [role("ops"), role("qa"), role("security")]);
    assert_eq!(p.capabilities(), [cap("a"), cap("z")]);
    // Any iterator will do, and the registry matches on what the lists gave.
    let mut r = AgentRegistry::new();
    r.register(
        AgentProfile::new(id(9), "lister")
            .with_roles(["qa"].into_iter().map(role))
            .with_capabilities(std::iter::once(cap("browser"))),
        t(0),
    )
    .unwrap();
    let needs = Requirements::new()
        .with_role(role("qa"))
        .with_capability(cap("browser"));
    assert_eq!(r.available_agents(&needs), vec![id(9)]);
}

#[test]
fn profile_serde_normalizes_and_defaults() {
    let p = AgentProfile::new(id(4), "x")
        .with_role(role("ops"))
        .with_capability(cap("deploy"))
        .with_capacity(res("cpu=1,memory=1Gi"))
        .with_max_tasks(2);
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<AgentProfile>(&json).unwrap(), p);

    let messy: AgentProfile = serde_json::from_str(
        r#"{"id":4,"name":"x","roles":["qa","OPS","qa"],"capabilities":["b","a","b"]}"#,
    )
    .unwrap();
    assert_eq!(messy.roles(), [role("ops"), role("qa")]);
    assert_eq!(messy.capabilities(), [cap("a"), cap("b")]);
    assert_eq!(messy.max_tasks(), 1);
    assert_eq!(messy.capacity(), None);

    assert!(serde_json::from_str::<AgentProfile>(r#"{"id":4,"name":"x","slots":3}"#).is_err());
    assert!(
        serde_json::from_str::<AgentProfile>(r#"{"id":4,"name":"x","roles":["a b"]}"#).is_err()
    );
}

// ---------------------------------------------------------------------------------
// Status lifecycle
// ---------------------------------------------------------------------------------

#[test]
fn transition_table_is_exactly_the_documented_one() {
    let legal = [
        (Available, Busy),
        (Available, Unhealthy),
        (Available, Quarantined),
        (Available, Offline),
        (Busy, Available),
        (Busy, Unhealthy),
        (Busy, Quarantined),
        (Busy, Offline),
        (Unhealthy, Available),
        (Unhealthy, Busy),
        (Unhealthy, Quarantined),
        (Unhealthy, Offline),
        (Quarantined, Available),
        (Quarantined, Offline),
        (Offline, Available),
        (Offline, Busy),
        (Offline, Quarantined),
    ];
    for from in AgentStatus::ALL {
        for to in AgentStatus::ALL {
            assert_eq!(
                from.can_transition_to(to),
                legal.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
        let successors: Vec<_> = from.successors().collect();
        let expected: Vec<_> = legal
            .iter()
            .filter(|(f, _)| *f == from)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(successors, expected);
    }
}

#[test]
fn status_display_and_serde() {
    for (s, name) in [
        (Available, "available"),
        (Busy, "busy"),
        (Unhealthy, "unhealthy"),
        (Quarantined, "quarantined"),
        (Offline, "offline"),
    ] {
        assert_eq!(s.to_string(), name);
        assert_eq!(s.as_str(), name);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
        assert_eq!(
            serde_json::from_str::<AgentStatus>(&format!("\"{name}\"")).unwrap(),
            s
        );
    }
    assert!(serde_json::from_str::<AgentStatus>("\"Available\"").is_err());
}

// ---------------------------------------------------------------------------------
// Capability bitsets
// ---------------------------------------------------------------------------------

#[test]
fn catalog_interns_densely_and_never_reuses() {
    let mut c = CapabilityCatalog::new();
    assert!(c.is_empty());
    let a = c.intern("a");
    let b = c.intern("b");
    assert_eq!(c.intern("a"), a);
    assert_eq!((a.index(), b.index()), (0, 1));
    assert_eq!(c.len(), 2);
    assert_eq!(c.get("b"), Some(b));
    assert_eq!(c.get("zzz"), None);
    assert_eq!(c.name(b), Some("b"));
    assert_eq!(
        c.iter()
            .map(|(bit, n)| (bit.index(), n))
            .collect::<Vec<_>>(),
        [(0, "a"), (1, "b")]
    );

    // A bit from a bigger catalog is unknown here, not a panic.
    let mut big = CapabilityCatalog::new();
    let far = (0..10)
        .map(|i| big.intern(&format!("n{i}")))
        .last()
        .unwrap();
    assert_eq!(c.name(far), None);

    let set = c.intern_all(["b", "c"]);
    assert_eq!(c.len(), 3);
    assert_eq!(c.names_of(&set).collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(c.lookup_all(["a", "c"]).unwrap().len(), 2);
    assert!(c.lookup_all(["a", "nope"]).is_none());
    assert_eq!(c.lookup_all(Vec::<&str>::new()), Some(CapabilitySet::new()));
}

#[test]
fn bitset_operations_inline_and_spilled() {
    let mut c = CapabilityCatalog::new();
    let bits: Vec<_> = (0..300).map(|i| c.intern(&format!("cap-{i}"))).collect();

    let mut small = CapabilitySet::new();
    assert!(small.is_empty() && !small.is_spilled());
    assert!(small.insert(bits[3]));
    assert!(!small.insert(bits[3]));
    assert!(small.insert(bits[127]));
    assert!(!small.is_spilled(), "bits below 128 stay inline");
    assert!(small.contains(bits[127]) && !small.contains(bits[128]) && !small.contains(bits[299]));

    let mut big: CapabilitySet = [bits[3], bits[127], bits[128], bits[299]]
        .into_iter()
        .collect();
    assert!(big.is_spilled());
    assert_eq!(big.len(), 4);
    assert_eq!(
        big.iter().map(|b| b.index()).collect::<Vec<_>>(),
        [3, 127, 128, 299]
    );
    assert!(big.is_superset(&small) && small.is_subset(&big));
    assert!(!small.is_superset(&big));
    assert_eq!(
        small
            .missing_from(&big)
            .map(|b| b.index())
            .collect::<Vec<_>>(),
        [128, 299]
    );
    assert!(big.is_superset(&CapabilitySet::new()));
    assert!(CapabilitySet::new().is_superset(&CapabilitySet::new()));

    // Only spilled bits differ.
    let other: CapabilitySet = [bits[3], bits[200]].into_iter().collect();
    assert!(!big.is_superset(&other));
    let mut grown = big.clone();
    grown.extend([bits[200]]);
    assert!(grown.is_superset(&other) && grown.is_superset(&big));

    // Removing spilled bits gives back a set equal to one that never spilled.
    assert!(big.remove(bits[299]));
    assert!(big.remove(bits[128]));
    assert!(!big.remove(bits[128]));
    assert!(!big.remove(bits[250]), "absent spilled bit");
    assert!(!big.is_spilled());
    assert_eq!(big, small);
    assert_eq!(format!("{small:?}"), "{3, 127}");
    assert!(small.remove(bits[3]) && small.remove(bits[127]));
    assert_eq!(small, CapabilitySet::default());
}

// ---------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------

#[test]
fn register_get_iterate() {
    let r = fleet();
    assert_eq!(r.len(), 3);
    assert!(!r.is_empty() && AgentRegistry::new().is_empty());
    assert!(r.contains(id(2)) && !r.contains(id(9)));
    assert_eq!(r.ids(), [id(1), id(2), id(3)]);

    let a = r.get(id(1)).unwrap();
    assert_eq!(a.id(), id(1));
    assert_eq!(a.profile().name(), "ops-1");
    assert_eq!(a.status(), Available);
    assert_eq!(a.status_since(), t(1));
    assert_eq!(a.registered_at(), t(1));
    assert_eq!((a.running(), a.max_tasks(), a.free_slots()), (0, 2, 2));
    assert_eq!(a.utilization(), 0.0);
    assert_eq!(
        r.role_catalog().names_of(a.role_bits()).collect::<Vec<_>>(),
        ["ops"]
    );
    assert_eq!(
        r.capability_catalog()
            .names_of(a.capability_bits())
            .collect::<Vec<_>>(),
        ["deploy"]
    );
    assert!(format!("{a:?}").contains("AgentView"));
    assert!(r.get(id(9)).is_none());

    let names: Vec<_> = r.iter().map(|a| a.profile().name().to_owned()).collect();
    assert_eq!(names, ["ops-1", "qa-1", "qa-2"]);
    assert_eq!(r.iter().len(), 3);
    assert_eq!(r.count(Available), 3);
    assert_eq!(r.count(Busy), 0);
}

#[test]
fn registration_order_does_not_matter() {
    let mut r = AgentRegistry::new();
    for n in [5, 1, 9, 3] {
        r.register(AgentProfile::new(id(n), format!("a{n}")), t(n))
            .unwrap();
    }
    assert_eq!(r.ids(), [id(1), id(3), id(5), id(9)]);
    assert_eq!(
        r.available_agents(&Requirements::new()),
        [id(1), id(3), id(5), id(9)]
    );
    assert_eq!(r.get(id(5)).unwrap().registered_at(), t(5));
}

#[test]
fn register_errors_change_nothing() {
    let mut r = fleet();
    assert_unchanged(
        &mut r,
        RegistryError::DuplicateAgent { agent: id(2) },
        |r| {
            r.register(
                AgentProfile::new(id(2), "again").with_capability(cap("brand-new")),
                t(9),
            )
        },
    );
    assert_unchanged(
        &mut r,
        RegistryError::InvalidProfile {
            agent: id(7),
            reason: "max_tasks is 0, so it could never run a task".into(),
        },
        |r| {
            r.register(
                AgentProfile::new(id(7), "zero")
                    .with_role(role("new"))
                    .with_max_tasks(0),
                t(9),
            )
        },
    );
}

#[test]
fn deregister_returns_the_profile() {
    let mut r = fleet();
    let p = r.deregister(id(2)).unwrap();
    assert_eq!(p.name(), "qa-1");
    assert_eq!(r.ids(), [id(1), id(3)]);
    assert!(r.get(id(2)).is_none());
    // Names stay interned; the id can be registered again.
    assert!(r.capability_catalog().get("browser").is_some());
    r.register(p, t(10)).unwrap();
    assert_eq!(r.get(id(2)).unwrap().registered_at(), t(10));
}

#[test]
fn deregister_errors_change_nothing() {
    let mut r = fleet();
    assert_unchanged(&mut r, RegistryError::UnknownAgent { agent: id(9) }, |r| {
        r.deregister(id(9))
    });
    r.task_started(id(1), t(5)).unwrap();
    assert_unchanged(
        &mut r,
        RegistryError::AgentBusy {
            agent: id(1),
            running: 1,
        },
        |r| r.deregister(id(1)),
    );
    // Status alone does not block deregistration.
    r.set_status(id(2), Offline, t(6)).unwrap();
    r.deregister(id(2)).unwrap();
}

#[test]
fn set_status_follows_the_table() {
    let mut r = fleet();
    assert_eq!(r.set_status(id(2), Unhealthy, t(10)).unwrap(), Available);
    assert_eq!(r.status(id(2)).unwrap(), Unhealthy);
    assert_eq!(r.get(id(2)).unwrap().status_since(), t(10));
    assert_eq!(r.set_status(id(2), Quarantined, t(11)).unwrap(), Unhealthy);
    assert_eq!(r.set_status(id(2), Offline, t(12)).unwrap(), Quarantined);
    assert_eq!(r.set_status(id(2), Available, t(13)).unwrap(), Offline);
    assert_eq!(r.set_status(id(2), Busy, t(14)).unwrap(), Available);
    assert_eq!(r.set_status(id(2), Available, t(15)).unwrap(), Busy);
    assert_eq!(r.count(Available), 3);
}

#[test]
fn set_status_errors_change_nothing() {
    let mut r = fleet();
    assert_unchanged(&mut r, RegistryError::UnknownAgent { agent: id(9) }, |r| {
        r.set_status(id(9), Offline, t(5))
    });
    // Staying put is not a change.
    assert_unchanged(
        &mut r,
        RegistryError::IllegalTransition {
            agent: id(1),
            from: Available,
            to: Available,
        },
        |r| r.set_status(id(1), Available, t(5)),
    );
    r.set_status(id(1), Quarantined, t(5)).unwrap();
    for to in [Busy, Unhealthy, Quarantined] {
        assert_unchanged(
            &mut r,
            RegistryError::IllegalTransition {
                agent: id(1),
                from: Quarantined,
                to,
            },
            |r| r.set_status(id(1), to, t(6)),
        );
    }
    r.set_status(id(1), Offline, t(7)).unwrap();
    assert_unchanged(
        &mut r,
        RegistryError::IllegalTransition {
            agent: id(1),
            from: Offline,
            to: Unhealthy,
        },
        |r| r.set_status(id(1), Unhealthy, t(8)),
    );
}

#[test]
fn slots_fill_then_busy_then_free_again() {
    let mut r = fleet();
    let ops = id(1); // two slots
    assert_eq!(r.task_started(ops, t(10)).unwrap(), Available);
    assert_eq!(r.utilization(ops).unwrap(), 0.5);
    assert_eq!(
        r.get(ops).unwrap().status_since(),
        t(1),
        "no status change yet"
    );
    assert_eq!(r.task_started(ops, t(11)).unwrap(), Busy);
    assert_eq!(r.utilization(ops).unwrap(), 1.0);
    assert_eq!(r.get(ops).unwrap().status_since(), t(11));
    assert!(!r.available_agents(&Requirements::new()).contains(&ops));
    assert_eq!(r.task_finished(ops, t(12)).unwrap(), Available);
    assert_eq!(r.get(ops).unwrap().status_since(), t(12));
    assert_eq!(r.task_finished(ops, t(13)).unwrap(), Available);
    assert_eq!(r.utilization(ops).unwrap(), 0.0);
}

#[test]
fn task_started_errors_change_nothing() {
    let mut r = fleet();
    assert_unchanged(&mut r, RegistryError::UnknownAgent { agent: id(9) }, |r| {
        r.task_started(id(9), t(5))
    });
    r.task_started(id(2), t(5)).unwrap(); // its only slot: busy
    assert_unchanged(
        &mut r,
        RegistryError::NotAvailable {
            agent: id(2),
            status: Busy,
        },
        |r| r.task_started(id(2), t(6)),
    );
    for status in [Unhealthy, Quarantined, Offline] {
        r.set_status(id(3), status, t(7)).unwrap();
        assert_unchanged(
            &mut r,
            RegistryError::NotAvailable {
                agent: id(3),
                status,
            },
            |r| r.task_started(id(3), t(8)),
        );
        r.set_status(id(3), Available, t(9)).unwrap();
    }
}

#[test]
fn task_finished_errors_change_nothing() {
    let mut r = fleet();
    assert_unchanged(&mut r, RegistryError::UnknownAgent { agent: id(9) }, |r| {
        r.task_finished(id(9), t(5))
    });
    assert_unchanged(&mut r, RegistryError::NoRunningTask { agent: id(1) }, |r| {
        r.task_finished(id(1), t(5))
    });
    // A manual busy with no task running is not ended by a phantom finish.
    r.set_status(id(1), Busy, t(6)).unwrap();
    assert_unchanged(&mut r, RegistryError::NoRunningTask { agent: id(1) }, |r| {
        r.task_finished(id(1), t(7))
    });
}

#[test]
fn manual_status_and_slots_interact_as_documented() {
    let mut r = fleet();
    let qa = id(2); // one slot
    r.task_started(qa, t(1)).unwrap(); // busy, full
    // Goes offline mid-task: the task still counts and can still finish.
    assert_eq!(r.set_status(qa, Offline, t(2)).unwrap(), Busy);
    assert_eq!(r.get(qa).unwrap().running(), 1);
    // Reconnects with its slot still taken: not available, but busy is allowed.
    assert_unchanged(
        &mut r,
        RegistryError::NoFreeSlot {
            agent: qa,
            running: 1,
            max_tasks: 1,
        },
        |r| r.set_status(qa, Available, t(3)),
    );
    assert_eq!(r.set_status(qa, Busy, t(3)).unwrap(), Offline);
    assert_eq!(r.task_finished(qa, t(4)).unwrap(), Available);

    // Finishing on an unhealthy agent frees the slot but keeps the status.
    r.task_started(qa, t(5)).unwrap();
    r.set_status(qa, Unhealthy, t(6)).unwrap();
    assert_eq!(r.task_finished(qa, t(7)).unwrap(), Unhealthy);
    assert_eq!(r.get(qa).unwrap().status_since(), t(6));
    assert_eq!(r.set_status(qa, Available, t(8)).unwrap(), Unhealthy);

    // A manual busy with free slots is the host's (a drain): it blocks new work,
    // also once a task finishes, until the host sets the agent available. It used
    // to end with the next finish, handing a drained agent new work mid-window.
    let qa2 = id(3); // three slots
    r.task_started(qa2, t(9)).unwrap();
    r.set_status(qa2, Busy, t(10)).unwrap();
    assert!(r.is_held_busy(qa2).unwrap());
    assert_eq!(r.get(qa2).unwrap().free_slots(), 2);
    assert!(!r.available_agents(&Requirements::new()).contains(&qa2));
    assert_eq!(r.task_finished(qa2, t(11)).unwrap(), Busy);
    let kept = AgentRegistry::restore(r.snapshot()).unwrap();
    assert!(
        kept.is_held_busy(qa2).unwrap(),
        "the hold is in the snapshot"
    );
    assert_eq!(r.set_status(qa2, Available, t(12)).unwrap(), Busy);
    assert!(!r.is_held_busy(qa2).unwrap());

    // A full busy agent is held by `hold_busy`, and let go the same way.
    r.task_started(qa2, t(13)).unwrap();
    r.task_started(qa2, t(13)).unwrap();
    r.task_started(qa2, t(13)).unwrap();
    assert!(r.hold_busy(qa2, true, t(14)).unwrap());
    assert!(!r.hold_busy(qa2, true, t(14)).unwrap());
    assert_eq!(r.task_finished(qa2, t(15)).unwrap(), Busy);
    assert!(r.hold_busy(qa2, false, t(16)).unwrap());
    assert_eq!(r.status(qa2).unwrap(), Available, "a slot is free");
}

#[test]
fn utilization_and_status_of_unknown_agents_are_errors() {
    let r = fleet();
    assert_eq!(
        r.utilization(id(9)),
        Err(RegistryError::UnknownAgent { agent: id(9) })
    );
    assert_eq!(
        r.status(id(9)),
        Err(RegistryError::UnknownAgent { agent: id(9) })
    );
    assert!(r.explain(id(9), &Requirements::new()).is_err());
}

#[test]
fn available_agents_filters_by_role_capability_capacity_and_status() {
    let mut r = fleet();
    let any = Requirements::new();
    assert_eq!(r.available_agents(&any), [id(1), id(2), id(3)]);

    let qa = Requirements::new().with_role(role("qa"));
    assert_eq!(r.available_agents(&qa), [id(2), id(3)]);
    let qa_sec = qa.clone().with_role(role("security"));
    assert_eq!(r.available_agents(&qa_sec), [id(3)]);
    let browser = qa.clone().with_capability(cap("browser"));
    assert_eq!(r.available_agents(&browser), [id(2)]);

    // Capacity: agent 2 declares none (not filtered), agent 3 has 1 cpu and a gpu.
    let heavy = qa.clone().with_resources(res("cpu=2"));
    assert_eq!(r.available_agents(&heavy), [id(2)]);
    let gpu = Requirements::new().with_resources(res("gpu=1"));
    assert_eq!(r.available_agents(&gpu), [id(2), id(3)]);
    let two_gpu = Requirements::new().with_resources(res("gpu=2"));
    assert_eq!(r.available_agents(&two_gpu), [id(2)]);

    // Unknown names match nobody, and are not an error.
    let unknown = Requirements::new().with_capability(cap("teleport"));
    assert!(r.available_agents(&unknown).is_empty());
    assert!(!r.compile(&unknown).is_satisfiable());
    let unknown_role = Requirements::new().with_role(role("wizard"));
    assert!(r.available_agents(&unknown_role).is_empty());

    // Status: only available agents.
    r.set_status(id(3), Quarantined, t(5)).unwrap();
    assert_eq!(r.available_agents(&qa), [id(2)]);
    r.set_status(id(2), Busy, t(5)).unwrap();
    assert!(r.available_agents(&qa).is_empty());
}

#[test]
fn compiled_requirements_reuse_the_output_buffer() {
    let r = fleet();
    let compiled = r.compile(&Requirements::new().with_capability(cap("screenshot")));
    assert!(compiled.is_satisfiable());
    assert_eq!(compiled.capabilities().len(), 1);
    assert!(compiled.roles().is_empty());
    let mut out = vec![id(77)];
    r.available_agents_into(&compiled, &mut out);
    assert_eq!(out, [id(2), id(3)]);
    r.available_agents_into(
        &r.compile(&Requirements::new().with_capability(cap("nope"))),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn explain_lists_every_reason() {
    let mut r = fleet();
    let need = Requirements::new()
        .with_role(role("security"))
        .with_role(role("qa"))
        .with_capability(cap("deploy"))
        .with_resources(res("cpu=2,gpu=1"));
    // Agent 1: ops with 4 cpu, no gpu.
    assert_eq!(
        r.explain(id(1), &need).unwrap(),
        [
            Unfit::MissingRole { role: role("qa") },
            Unfit::MissingRole {
                role: role("security")
            },
            Unfit::Capacity {
                resource: "gpu".parse().unwrap(),
                needed: 1,
                capacity: 0
            },
        ]
    );
    // Agent 3: one cpu.
    r.task_started(id(3), t(1)).unwrap();
    r.task_started(id(3), t(1)).unwrap();
    r.task_started(id(3), t(1)).unwrap();
    let why = r.explain(id(3), &need).unwrap();
    assert_eq!(
        why,
        [
            Unfit::Status { status: Busy },
            Unfit::NoFreeSlot {
                running: 3,
                max_tasks: 3
            },
            Unfit::MissingCapability {
                capability: cap("deploy")
            },
            Unfit::Capacity {
                resource: "cpu".parse().unwrap(),
                needed: 2000,
                capacity: 1000
            },
        ]
    );
    let text: Vec<_> = why.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "is busy",
            "has no free slot (3 of 3 running)",
            "lacks capability `deploy`",
            "lacks cpu: needs 2, holds at most 1",
        ]
    );
    // No declared capacity: resources are not a reason; nothing missing: fits.
    assert!(
        r.explain(id(2), &Requirements::new().with_resources(res("cpu=64")))
            .unwrap()
            .is_empty()
    );
    let json = serde_json::to_value(&why[1]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"reason": "no_free_slot", "running": 3, "max_tasks": 3})
    );
    assert_eq!(serde_json::from_value::<Unfit>(json).unwrap(), why[1]);
}

#[test]
fn explain_agrees_with_available_agents() {
    let mut r = fleet();
    r.task_started(id(2), t(1)).unwrap();
    r.set_status(id(1), Unhealthy, t(1)).unwrap();
    for need in [
        Requirements::new(),
        Requirements::new().with_role(role("qa")),
        Requirements::new().with_capability(cap("screenshot")),
        Requirements::new().with_resources(res("memory=4Gi")),
        Requirements::new().with_capability(cap("unknown")),
    ] {
        let available = r.available_agents(&need);
        for a in r.iter() {
            let fits = r.explain(a.id(), &need).unwrap().is_empty();
            assert_eq!(available.contains(&a.id()), fits, "{:?} {need:?}", a.id());
        }
    }
}

#[test]
fn many_capabilities_spill_and_still_match() {
    let mut r = AgentRegistry::new();
    for n in 0..200u64 {
        let mut p =
            AgentProfile::new(id(n), format!("a{n}")).with_capability(cap(&format!("c{n}")));
        if n % 2 == 0 {
            p = p.with_capability(cap("even"));
        }
        r.register(p, t(0)).unwrap();
    }
    assert_eq!(r.capability_catalog().len(), 201);
    let need = Requirements::new()
        .with_capability(cap("c150"))
        .with_capability(cap("even"));
    assert_eq!(r.available_agents(&need), [id(150)]);
    assert!(r.get(id(150)).unwrap().capability_bits().is_spilled());
    let need = Requirements::new()
        .with_capability(cap("c151"))
        .with_capability(cap("even"));
    assert!(r.available_agents(&need).is_empty());
    assert_eq!(
        r.available_agents(&Requirements::new().with_capability(cap("even")))
            .len(),
        100
    );
}

// ---------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------

#[test]
fn snapshot_round_trips_through_serde_and_restore() {
    let mut r = fleet();
    r.task_started(id(1), t(20)).unwrap();
    r.task_started(id(2), t(21)).unwrap();
    r.set_status(id(3), Quarantined, t(22)).unwrap();
    let snap = r.snapshot();
    assert_eq!(snap.version(), RegistrySnapshot::VERSION);
    assert_eq!(snap.agents().len(), 3);
    let rec = &snap.agents()[1];
    assert_eq!(rec.profile().id(), id(2));
    assert_eq!((rec.status(), rec.running()), (Busy, 1));
    assert_eq!((rec.status_since(), rec.registered_at()), (t(21), t(2)));

    let json = serde_json::to_string(&snap).unwrap();
    let back: RegistrySnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let restored = AgentRegistry::restore(back).unwrap();
    assert_eq!(restored.snapshot(), snap);
    for need in [
        Requirements::new(),
        Requirements::new().with_role(role("ops")),
        Requirements::new().with_capability(cap("screenshot")),
    ] {
        assert_eq!(restored.available_agents(&need), r.available_agents(&need));
    }
}

#[test]
fn restore_accepts_any_agent_order() {
    let snap = fleet().snapshot();
    let mut json = serde_json::to_value(&snap).unwrap();
    json["agents"].as_array_mut().unwrap().reverse();
    let reversed: RegistrySnapshot = serde_json::from_value(json).unwrap();
    assert_ne!(reversed, snap);
    assert_eq!(AgentRegistry::restore(reversed).unwrap().snapshot(), snap);
}

#[test]
fn restore_rejects_corrupt_snapshots() {
    let mut r = fleet();
    r.task_started(id(1), t(5)).unwrap();
    let good = serde_json::to_value(r.snapshot()).unwrap();
    let corrupt = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        let snap: RegistrySnapshot = serde_json::from_value(v).unwrap();
        match AgentRegistry::restore(snap) {
            Err(RegistryError::CorruptSnapshot { reason }) => reason,
            other => panic!("expected a corrupt snapshot error, got {other:?}"),
        }
    };
    assert_eq!(
        corrupt(&|v| v["version"] = 2.into()),
        "unsupported version 2 (expected 1)"
    );
    assert_eq!(
        corrupt(&|v| {
            let first = v["agents"][0].clone();
            v["agents"].as_array_mut().unwrap().push(first);
        }),
        "agent#1 appears twice"
    );
    assert_eq!(
        corrupt(&|v| v["agents"][1]["profile"]["max_tasks"] = 0.into()),
        "agent#2: max_tasks is 0, so it could never run a task"
    );
    assert_eq!(
        corrupt(&|v| v["agents"][1]["profile"]["name"] = "two\nlines".into()),
        "agent#2: agent name \"two\\nlines\" holds control or invisible character U+000A"
    );
    assert_eq!(
        corrupt(&|v| v["agents"][1]["profile"]["name"] = "two\u{2066}".into()),
        "agent#2: agent name \"two\\u{2066}\" holds control or invisible character U+2066"
    );
    assert_eq!(
        corrupt(&|v| v["agents"][0]["running"] = 3.into()),
        "agent#1 runs 3 tasks in 2 slots"
    );
    assert_eq!(
        corrupt(&|v| v["agents"][0]["running"] = 2.into()),
        "agent#1 is available with all 2 slots taken"
    );
    let err = RegistryError::CorruptSnapshot { reason: "x".into() };
    assert_eq!(err.to_string(), "corrupt registry snapshot: x");
}

#[test]
fn registry_error_messages_name_the_value() {
    let cases = [
        (
            RegistryError::UnknownAgent { agent: id(1) },
            "agent#1 is not registered",
        ),
        (
            RegistryError::DuplicateAgent { agent: id(1) },
            "agent#1 is already registered",
        ),
        (
            RegistryError::InvalidProfile {
                agent: id(1),
                reason: "bad".into(),
            },
            "profile of agent#1 is invalid: bad",
        ),
        (
            RegistryError::IllegalTransition {
                agent: id(1),
                from: Quarantined,
                to: Unhealthy,
            },
            "agent#1 cannot go from quarantined to unhealthy",
        ),
        (
            RegistryError::NoFreeSlot {
                agent: id(1),
                running: 2,
                max_tasks: 2,
            },
            "agent#1 has no free task slot (2 of 2 running)",
        ),
        (
            RegistryError::NotAvailable {
                agent: id(1),
                status: Offline,
            },
            "agent#1 is offline, not available",
        ),
        (
            RegistryError::NoRunningTask { agent: id(1) },
            "agent#1 runs no task",
        ),
        (
            RegistryError::AgentBusy {
                agent: id(1),
                running: 2,
            },
            "agent#1 still runs 2 tasks",
        ),
    ];
    for (err, msg) in cases {
        assert_eq!(err.to_string(), msg);
    }
}

/// Lookups agree with the interned bits for small catalogs (names compared) and big
/// ones (names hashed), and across the size where one becomes the other.
#[test]
fn catalog_lookups_find_every_name_at_every_size() {
    let mut c = CapabilityCatalog::new();
    for i in 0..40 {
        let bit = c.intern(&format!("name-{i}"));
        for j in 0..=i {
            assert_eq!(
                c.get(&format!("name-{j}")).map(|b| b.index()),
                Some(j),
                "{} names",
                i + 1
            );
        }
        assert_eq!(c.get("name-x"), None);
        assert_eq!(c.get(&format!("name-{i}")), Some(bit));
    }
}
