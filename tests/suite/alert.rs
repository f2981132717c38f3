//! Alerting through the public API: deduplication, grouping, routing, response
//! deadlines and escalation, acknowledgement and re-pages, silences, inhibition and
//! cascade detection, resolution, the bounded history, configuration errors,
//! snapshot and restore, and the coordinator's events as alerts; then proptest
//! lifecycle properties over arbitrary operation sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use concord::alert::{
    Action, Alert, AlertChange, AlertConfig, AlertError, AlertManager, AlertManagerSnapshot,
    AlertTemplate, CascadeRule, EscalationStep, Fingerprint, Fired, InhibitRule, MAX_ROUTE_DEPTH,
    Matcher, Notification, NotificationKind, ResponseDeadlines, Retention, Route, Severity,
    SuppressReason, alerts_from_event, names,
};
use concord::coordinator::{Coordinator, Event};
use concord::{
    AgentId, AgentProfile, AgentStatus, ManualClock, Requirements, Role, RuleBasedAnalyzer,
    RuleSet, SystemMode, Task, TaskId, Timestamp,
};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn matcher(text: &str) -> Matcher {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Receivers `oncall`, `lead` and `head`. The root route pages `oncall`, groups by
/// `alertname` for 30 s, re-pages 20 min after an acknowledgement, and escalates to
/// `lead` and then `head`, 10 min apart. Default deadlines; no inhibition, no
/// cascades.
fn plain() -> AlertConfig {
    AlertConfig::default()
        .with_receivers(["oncall", "lead", "head"])
        .with_route(
            Route::new()
                .with_receiver("oncall")
                .with_group_by(["alertname"])
                .with_group_wait(30 * SEC)
                .with_ack_timeout(20 * MIN)
                .with_escalation(vec![
                    EscalationStep::new("lead", 10 * MIN),
                    EscalationStep::new("head", 10 * MIN),
                ]),
        )
        .with_inhibit_rules(Vec::new())
        .with_cascades(Vec::new())
}

fn manager(config: AlertConfig) -> AlertManager {
    AlertManager::new(config).expect("a valid configuration")
}

fn alert(name: &str, severity: Severity, host: &str) -> Alert {
    Alert::new(name, severity, t0()).with_label("host", host)
}

fn drain(m: &mut AlertManager) -> Vec<Notification> {
    m.drain_notifications().collect()
}

/// Each page-kind notification as `(kind, receiver, level, [alert host or name])`.
fn pages(ns: &[Notification]) -> Vec<(&'static str, String, u32, Vec<String>)> {
    ns.iter()
        .filter_map(|n| {
            let who = n
                .alerts()
                .iter()
                .map(|a| a.label("host").unwrap_or(a.name()).to_owned())
                .collect();
            match &n.kind {
                NotificationKind::Page { receiver, .. } => Some(("page", receiver.clone(), 0, who)),
                NotificationKind::Escalated {
                    receiver, level, ..
                } => Some(("escalated", receiver.clone(), *level, who)),
                NotificationKind::Repage { receiver, .. } => {
                    Some(("repage", receiver.clone(), 0, who))
                }
                _ => None,
            }
        })
        .collect()
}

fn suppressed(ns: &[Notification]) -> Vec<(SuppressReason, Option<Action>, usize)> {
    ns.iter()
        .filter_map(|n| match &n.kind {
            NotificationKind::Suppressed {
                reason,
                action,
                alerts,
            } => Some((reason.clone(), *action, alerts.len())),
            _ => None,
        })
        .collect()
}

/// Wakes `m` at every `step` until `until` and returns what it said.
fn run_until(m: &mut AlertManager, until: Timestamp, step: Duration) -> Vec<Notification> {
    let mut t = m.now();
    while t < until {
        t = (t + step).min(until);
        m.handle_timeout(t);
    }
    drain(m)
}

// ---- deduplication and grouping ----

#[test]
fn a_repeated_alert_pages_once_and_says_so_once() {
    let mut m = manager(plain());
    let disk = alert("disk_full", Severity::Medium, "h1");
    assert!(matches!(m.fire(disk.clone(), t0()).unwrap(), Fired::New(_)));
    for i in 1..=5 {
        let again = disk.clone().with_summary(format!("again {i}"));
        assert_eq!(
            m.fire(again, t0() + i * SEC).unwrap(),
            Fired::Duplicate(disk.fingerprint())
        );
    }
    let ns = run_until(&mut m, t0() + 10 * MIN, 5 * SEC);
    assert_eq!(
        pages(&ns),
        [("page", "oncall".into(), 0, vec!["h1".into()])]
    );
    assert_eq!(suppressed(&ns), [(SuppressReason::Duplicate, None, 1)]);
    let record = m.alert(disk.fingerprint()).unwrap();
    assert_eq!(record.duplicates, 5);
    assert_eq!(record.alert.summary(), ""); // the first firing's stands
}

#[test]
fn a_burst_in_one_group_is_one_page_listing_it() {
    let mut m = manager(plain());
    m.fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h2"), t0() + 10 * SEC)
        .unwrap();
    m.fire(alert("cpu_hot", Severity::Medium, "h1"), t0() + 15 * SEC)
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h3"), t0() + 20 * SEC)
        .unwrap();
    let early = drain(&mut m);
    assert!(pages(&early).is_empty(), "{early:?}");
    let grouped: Vec<_> = suppressed(&early)
        .into_iter()
        .map(|(reason, _, n)| match reason {
            SuppressReason::Grouped { group, page_at } => (group.to_string(), page_at, n),
            other => panic!("{other:?}"),
        })
        .collect();
    let group = "route{alertname=\"disk_full\"}".to_owned();
    assert_eq!(
        grouped,
        [
            (group.clone(), t0() + 30 * SEC, 1),
            (group.clone(), t0() + 30 * SEC, 1)
        ]
    );

    assert_eq!(m.poll_timeout(), Some(t0() + 30 * SEC));
    m.handle_timeout(t0() + 30 * SEC);
    let ns = drain(&mut m);
    let [(kind, receiver, _, hosts)] = &pages(&ns)[..] else {
        panic!("one page: {ns:?}")
    };
    assert_eq!((*kind, receiver.as_str()), ("page", "oncall"));
    let hosts: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
    assert_eq!(hosts, BTreeSet::from(["h1", "h2", "h3"]));
    let NotificationKind::Page { group: g, .. } = &ns[0].kind else {
        panic!("{ns:?}")
    };
    assert_eq!(g.as_str(), group);
    // The other group pages at the end of its own wait.
    m.handle_timeout(t0() + 45 * SEC);
    assert_eq!(
        pages(&drain(&mut m)),
        [("page", "oncall".into(), 0, vec!["h1".into()])]
    );
    // A group that has paged starts a new wait for the next alert.
    m.fire(alert("disk_full", Severity::Medium, "h4"), t0() + MIN)
        .unwrap();
    assert_eq!(m.poll_timeout(), Some(t0() + MIN + 30 * SEC));
}

#[test]
fn critical_alerts_page_at_once_under_the_default_routes() {
    let mut m = manager(AlertConfig::default());
    let memory = Alert::new(names::MEMORY_CORRUPTION, Severity::Critical, t0());
    m.fire(memory, t0()).unwrap();
    let breach = Alert::new(names::SECURITY_BREACH, Severity::Critical, t0());
    m.fire(breach, t0()).unwrap();
    let ns = drain(&mut m);
    assert_eq!(
        pages(&ns),
        [
            (
                "page",
                "system_administrator".into(),
                0,
                vec![names::MEMORY_CORRUPTION.into()]
            ),
            (
                "page",
                "security_team".into(),
                0,
                vec![names::SECURITY_BREACH.into()]
            ),
        ]
    );
    assert!(ns.iter().all(|n| n.at == t0()));
    let capacity = Alert::new(names::CAPACITY_WARNING, Severity::Medium, t0());
    assert_eq!(m.receiver_for(&capacity), "system_administrator");
    m.fire(capacity, t0()).unwrap();
    assert!(pages(&drain(&mut m)).is_empty()); // medium: after the 30 s group wait
}

// ---- deadlines, escalation, acknowledgement ----

#[test]
fn nothing_pages_again_before_the_deadline_then_each_level_once_in_order() {
    let mut m = manager(plain());
    let cpu = alert("cpu_hot", Severity::High, "h1");
    let fp = m.fire(cpu, t0()).unwrap().fingerprint();
    let paged_at = t0() + 30 * SEC;
    let ns = run_until(&mut m, paged_at, SEC);
    assert_eq!(pages(&ns).len(), 1);
    assert_eq!(m.alert(fp).unwrap().deadline_at, Some(paged_at + HOUR));

    // Inside the one-hour deadline: nothing, however often the host wakes it.
    let deadline = paged_at + HOUR;
    assert_eq!(m.poll_timeout(), Some(deadline));
    assert!(run_until(&mut m, deadline - SEC, 7 * SEC).is_empty());
    m.handle_timeout(deadline);
    let ns = drain(&mut m);
    assert_eq!(
        pages(&ns),
        [("escalated", "lead".into(), 1, vec!["h1".into()])]
    );
    assert_eq!(ns[0].at, deadline);
    // The next level after its own delay; then the chain is spent.
    assert_eq!(m.poll_timeout(), Some(deadline + 10 * MIN));
    let ns = run_until(&mut m, deadline + 3 * HOUR, MIN);
    assert_eq!(
        pages(&ns),
        [("escalated", "head".into(), 2, vec!["h1".into()])]
    );
    assert_eq!(m.poll_timeout(), None);
    let record = m.alert(fp).unwrap();
    let paged = record.paged.as_ref().unwrap();
    assert_eq!(
        (paged.level, paged.receivers.clone()),
        (2, vec!["oncall".into(), "lead".into(), "head".into()])
    );
}

#[test]
fn a_late_wake_takes_each_level_at_its_own_time() {
    let mut m = manager(plain());
    m.fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap();
    m.handle_timeout(t0() + 10 * HOUR);
    let ns = drain(&mut m);
    let times: Vec<Timestamp> = ns.iter().filter(|n| n.is_page()).map(|n| n.at).collect();
    let paged = t0() + 30 * SEC;
    assert_eq!(times, [paged, paged + HOUR, paged + HOUR + 10 * MIN]);
}

#[test]
fn a_critical_alert_escalates_after_each_steps_delay() {
    // Critical: deadline "at once", so the chain runs on its own delays.
    let mut m = manager(AlertConfig::default());
    m.fire(
        Alert::new(names::MEMORY_CORRUPTION, Severity::Critical, t0()),
        t0(),
    )
    .unwrap();
    let ns = run_until(&mut m, t0() + HOUR, MIN);
    let got: Vec<(String, Timestamp)> = ns
        .iter()
        .filter(|n| n.is_page())
        .map(|n| match &n.kind {
            NotificationKind::Page { receiver, .. }
            | NotificationKind::Escalated { receiver, .. } => (receiver.clone(), n.at),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            ("system_administrator".into(), t0()),
            ("development_team".into(), t0() + 15 * MIN),
            ("business_stakeholders".into(), t0() + 30 * MIN),
        ]
    );
}

#[test]
fn acknowledgement_stops_escalation_and_repages_after_its_timeout() {
    let mut m = manager(plain());
    let fp = m
        .fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap()
        .fingerprint();
    let paged_at = t0() + 30 * SEC;
    run_until(&mut m, paged_at, SEC);
    m.acknowledge(fp, "ada", t0() + 5 * MIN).unwrap();
    let ack = m.alert(fp).unwrap().acknowledged.clone().unwrap();
    assert_eq!((ack.by.as_str(), ack.at), ("ada", t0() + 5 * MIN));
    // The re-page waits for the deadline too (20 min timeout < 1 h deadline).
    let repage_at = paged_at + HOUR;
    assert_eq!(
        m.alert(fp).unwrap().next.map(|d| (d.at, d.action)),
        Some((repage_at, Action::Repage))
    );
    assert!(run_until(&mut m, repage_at - SEC, MIN).is_empty());
    m.handle_timeout(repage_at);
    assert_eq!(
        pages(&drain(&mut m)),
        [("repage", "oncall".into(), 0, vec!["h1".into()])]
    );
    assert!(m.alert(fp).unwrap().acknowledged.is_none());
    // Unacknowledged again, it climbs on from where it was.
    m.handle_timeout(repage_at + 10 * MIN);
    assert_eq!(
        pages(&drain(&mut m)),
        [("escalated", "lead".into(), 1, vec!["h1".into()])]
    );
    // Acknowledged at level 1, the re-page goes to level 1's receiver.
    m.acknowledge(fp, "lin", repage_at + 11 * MIN).unwrap();
    let ns = run_until(&mut m, repage_at + 2 * HOUR, MIN);
    assert_eq!(
        pages(&ns)[0],
        ("repage", "lead".into(), 0, vec!["h1".into()])
    );
    assert_eq!(
        ns.iter().find(|n| n.is_page()).unwrap().at,
        repage_at + 31 * MIN
    );
}

#[test]
fn acknowledged_before_its_first_page_it_does_not_page_then() {
    let mut m = manager(plain());
    let fp = m
        .fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap()
        .fingerprint();
    m.acknowledge(fp, "ada", t0() + 10 * SEC).unwrap();
    let ns = drain(&mut m);
    assert_eq!(
        suppressed(&ns),
        [(
            SuppressReason::Acknowledged { by: "ada".into() },
            Some(Action::FirstPage),
            1
        )]
    );
    // Medium: 4 h from the acknowledgement before anything pages.
    let due = t0() + 10 * SEC + 4 * HOUR;
    assert!(
        run_until(&mut m, due - SEC, MIN)
            .iter()
            .all(|n| !n.is_page())
    );
    m.handle_timeout(due);
    assert_eq!(
        pages(&drain(&mut m)),
        [("repage", "oncall".into(), 0, vec!["h1".into()])]
    );
}

// ---- silences ----

#[test]
fn a_silence_holds_the_page_until_it_expires() {
    let mut m = manager(plain());
    let id = m
        .silence(vec![matcher("host=h1")], t0() + 10 * MIN, "ada", t0())
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h1"), t0() + SEC)
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h2"), t0() + SEC)
        .unwrap();
    let ns = run_until(&mut m, t0() + 10 * MIN - SEC, 10 * SEC);
    assert_eq!(
        pages(&ns),
        [("page", "oncall".into(), 0, vec!["h2".into()])]
    );
    assert_eq!(
        suppressed(&ns).last(),
        Some(&(
            SuppressReason::Silenced { silence: id },
            Some(Action::FirstPage),
            1
        ))
    );
    assert_eq!(m.poll_timeout(), Some(t0() + 10 * MIN));
    m.handle_timeout(t0() + 10 * MIN);
    let ns = drain(&mut m);
    assert_eq!(
        pages(&ns),
        [("page", "oncall".into(), 0, vec!["h1".into()])]
    );
    assert_eq!(ns[0].at, t0() + 10 * MIN);
    assert_eq!(m.silences().len(), 0);
}

#[test]
fn expiring_a_silence_early_releases_what_it_held_at_once() {
    let mut m = manager(plain());
    let id = m
        .silence(
            vec![matcher("alertname=disk_full")],
            t0() + HOUR,
            "ada",
            t0(),
        )
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap();
    assert!(pages(&run_until(&mut m, t0() + 5 * MIN, MIN)).is_empty());
    m.expire_silence(id, t0() + 6 * MIN).unwrap();
    let ns = drain(&mut m);
    assert_eq!(
        pages(&ns),
        [("page", "oncall".into(), 0, vec!["h1".into()])]
    );
    assert_eq!(ns[0].at, t0() + 6 * MIN);
    assert_eq!(
        m.expire_silence(id, t0() + 7 * MIN),
        Err(AlertError::UnknownSilence { id })
    );
}

#[test]
fn a_silence_holds_the_escalation_of_a_paged_alert_until_it_ends() {
    let mut m = manager(plain());
    m.fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap();
    run_until(&mut m, t0() + MIN, SEC);
    let deadline = t0() + 30 * SEC + HOUR;
    let until = deadline + 2 * HOUR;
    m.silence(vec![matcher("host=h1")], until, "ada", t0() + 2 * MIN)
        .unwrap();
    let ns = run_until(&mut m, until - SEC, 5 * MIN);
    assert!(pages(&ns).is_empty(), "{ns:?}");
    assert_eq!(suppressed(&ns).len(), 1); // said once, not at every wake
    assert_eq!(ns[0].at, deadline);
    m.handle_timeout(until);
    assert_eq!(
        pages(&drain(&mut m)),
        [("escalated", "lead".into(), 1, vec!["h1".into()])]
    );
}

// ---- inhibition and cascades ----

#[test]
fn a_cascade_pages_once_and_its_resolution_releases_the_alerts_it_held() {
    let mut m = manager(AlertConfig::default());
    let failure = |n: u64| {
        Alert::new(names::AGENT_FAILURE, Severity::Medium, t0())
            .with_label("agent", AgentId::new(n).to_string())
    };
    m.fire(failure(1), t0()).unwrap();
    m.fire(failure(2), t0() + 10 * SEC).unwrap(); // multiple agent failures
    m.fire(failure(3), t0() + 20 * SEC).unwrap(); // system-wide: critical, at once
    let ns = run_until(&mut m, t0() + 5 * MIN, 5 * SEC);
    assert_eq!(
        pages(&ns),
        [(
            "page",
            "system_administrator".into(),
            0,
            vec![names::SYSTEM_WIDE_AGENT_FAILURE.into()]
        )]
    );
    let system_wide = ns.iter().find(|n| n.is_page()).unwrap();
    assert_eq!(system_wide.at, t0() + 20 * SEC);
    assert_eq!(system_wide.alerts()[0].source(), "cascade_detection");
    let by = system_wide.alerts()[0].fingerprint();
    // The per-agent alerts and "multiple" are held behind it.
    let inhibited: usize = suppressed(&ns)
        .iter()
        .filter(|(r, _, _)| {
            *r == SuppressReason::Inhibited {
                by,
                alert: names::SYSTEM_WIDE_AGENT_FAILURE.to_owned(),
            }
        })
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(inhibited, 4);
    // Said by name, not by fingerprint alone; a record from before names were kept
    // reads back, and says the fingerprint.
    let why = SuppressReason::Inhibited {
        by,
        alert: names::SYSTEM_WIDE_AGENT_FAILURE.to_owned(),
    };
    assert_eq!(
        why.to_string(),
        format!("inhibited by system_wide_agent_failure ({by})")
    );
    let old = SuppressReason::Inhibited {
        by,
        alert: String::new(),
    };
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("alert"), "{json}");
    assert_eq!(serde_json::from_str::<SuppressReason>(&json).unwrap(), old);
    assert_eq!(old.to_string(), format!("inhibited by {by}"));

    // Agent 1 recovers: two failing is no system-wide failure any more, but still
    // "multiple", which now pages and holds the two per-agent alerts.
    let resolve = |n: u64| failure(n).fingerprint();
    assert!(m.resolve(resolve(1), t0() + 6 * MIN));
    let ns = drain(&mut m);
    let resolved: Vec<_> = ns
        .iter()
        .filter_map(|n| match &n.kind {
            NotificationKind::Resolved { receivers, alerts } => {
                Some((receivers.clone(), alerts[0].name().to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        resolved,
        [(
            vec!["system_administrator".to_owned()],
            names::SYSTEM_WIDE_AGENT_FAILURE.to_owned()
        )]
    );
    assert_eq!(
        pages(&ns),
        [(
            "page",
            "system_administrator".into(),
            0,
            vec![names::MULTIPLE_AGENT_FAILURES.into()]
        )]
    );
    // Agent 2 recovers: one failure left, which pages on its own now.
    m.resolve(resolve(2), t0() + 7 * MIN);
    let ns = drain(&mut m);
    let page: Vec<_> = ns
        .iter()
        .filter(|n| n.is_page())
        .map(|n| n.alerts()[0].label("agent").map(str::to_owned))
        .collect();
    assert_eq!(page, [Some(AgentId::new(3).to_string())]);
    assert_eq!(m.firing().len(), 1);
}

#[test]
fn inhibition_needs_the_equal_labels_to_agree() {
    let config = plain().with_inhibit_rules(vec![
        InhibitRule::new(
            vec![matcher("alertname=host_down")],
            vec![matcher("alertname=disk_full")],
        )
        .with_equal(["host"]),
    ]);
    let mut m = manager(config);
    m.fire(alert("host_down", Severity::High, "h1"), t0())
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap();
    m.fire(alert("disk_full", Severity::Medium, "h2"), t0())
        .unwrap();
    let ns = run_until(&mut m, t0() + MIN, 10 * SEC);
    let paged: BTreeSet<String> = pages(&ns).into_iter().flat_map(|p| p.3).collect();
    assert_eq!(paged, BTreeSet::from(["h1".to_owned(), "h2".to_owned()]));
    let disk = pages(&ns)
        .into_iter()
        .find(|p| p.3 == ["h2"])
        .expect("h2's disk pages");
    assert_eq!(disk.0, "page");
    // h1's disk is held until its host is back, then pages (still firing).
    m.resolve(
        alert("host_down", Severity::High, "h1").fingerprint(),
        t0() + 2 * MIN,
    );
    assert_eq!(
        pages(&drain(&mut m)),
        [("page", "oncall".into(), 0, vec!["h1".into()])]
    );
}

/// Guards against recounting the firing alerts per resolution: resolving 8,000
/// agent failures while their cascade alerts fired took 1.3 s, quadratic in them (this
/// many took minutes).
#[test]
fn resolving_every_alert_of_a_cascade_is_linear() {
    let mut m = manager(AlertConfig::default());
    let n = 20_000;
    for i in 0..n {
        let failure = Alert::new(names::AGENT_FAILURE, Severity::Medium, t0())
            .with_label("agent", format!("agent#{i}"));
        m.fire(failure, t0()).unwrap();
    }
    assert_eq!(m.firing().len(), n + 2); // and the two cascade alerts
    let resolved = m.resolve_matching(&[matcher("alertname=agent_failure")], t0() + SEC);
    assert_eq!(resolved.len(), n);
    assert_eq!(m.firing().len(), 0, "the cascade alerts resolve with them");
}

/// Guards against recounting the firing alerts per alert fired: alerts that a cascade
/// rule counts, firing too far apart to reach its threshold, each counted all those
/// still firing (quadratic; this many took seconds).
#[test]
fn alerts_a_cascade_counts_firing_outside_its_window_fire_in_linear_time() {
    // Several matchers, as a real rule may have: the old count tried each on every
    // firing alert.
    let mut counts = vec![matcher("alertname=disk")];
    counts.extend((0..7).map(|i| matcher(&format!("l{i}!=x"))));
    let rule = CascadeRule::new(
        counts,
        3,
        MIN,
        AlertTemplate::new("outage", Severity::Critical, "disks failing together"),
    );
    // Nothing pages while they fire: the test times the counting, not the paging.
    let route = Route::new()
        .with_receiver("oncall")
        .with_group_wait(Duration::from_secs(100 * 24 * 3600));
    let mut m = manager(plain().with_route(route).with_cascades(vec![rule]));
    let n = 20_000u32;
    let mut t = t0();
    for i in 0..n {
        t += 31 * SEC; // two within the window, never three
        m.fire(alert("disk", Severity::Low, &format!("h{i}")), t)
            .unwrap();
    }
    assert_eq!(m.firing().len(), n as usize);
    m.fire(alert("disk", Severity::Low, "last"), t).unwrap();
    let outage = AlertTemplate::new("outage", Severity::Critical, "").fingerprint();
    assert!(m.alert(outage).is_some(), "three within the window fire it");
}

// ---- resolution ----

#[test]
fn resolution_reaches_everyone_paged_and_stops_everything() {
    let mut m = manager(plain());
    let fp = m
        .fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap()
        .fingerprint();
    run_until(&mut m, t0() + 2 * HOUR, MIN); // paged, then escalated to lead and head
    m.silence(
        vec![matcher("host=h1")],
        t0() + 10 * HOUR,
        "ada",
        t0() + 2 * HOUR,
    )
    .unwrap();
    assert!(m.resolve(fp, t0() + 3 * HOUR));
    let ns = drain(&mut m);
    let NotificationKind::Resolved { receivers, alerts } = &ns[0].kind else {
        panic!("{ns:?}")
    };
    assert_eq!(receivers, &["oncall", "lead", "head"]);
    assert_eq!(alerts[0].fingerprint(), fp);
    assert!(!m.resolve(fp, t0() + 3 * HOUR)); // again: no error, nothing firing
    assert!(run_until(&mut m, t0() + 20 * HOUR, HOUR).is_empty());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn an_alert_resolved_before_its_page_tells_nobody() {
    let mut m = manager(plain());
    let fp = m
        .fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap()
        .fingerprint();
    assert!(m.resolve(fp, t0() + 10 * SEC));
    assert!(run_until(&mut m, t0() + HOUR, MIN).is_empty());
}

#[test]
fn resolve_matching_resolves_by_label_in_one_notification() {
    let mut m = manager(plain());
    for host in ["h1", "h2", "h3"] {
        m.fire(alert("disk_full", Severity::Medium, host), t0())
            .unwrap();
    }
    run_until(&mut m, t0() + MIN, 10 * SEC);
    let done = m.resolve_matching(&[matcher("host=~h1|h3")], t0() + 2 * MIN);
    assert_eq!(done.len(), 2);
    let ns = drain(&mut m);
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].alerts().len(), 2);
    assert_eq!(
        m.firing()
            .map(|(_, r)| r.alert.label("host"))
            .collect::<Vec<_>>(),
        [Some("h2")]
    );
}

// ---- history ----

#[test]
fn the_history_is_bounded_by_count_and_by_age() {
    let config = plain().with_retention(Retention::new(5, HOUR));
    let mut m = manager(config);
    for i in 0..8u32 {
        let fp = m
            .fire(
                alert("disk_full", Severity::Medium, &format!("h{i}")),
                t0() + i * MIN,
            )
            .unwrap()
            .fingerprint();
        m.resolve(fp, t0() + i * MIN + 40 * SEC); // paged at 30 s, then resolved
    }
    assert_eq!(m.history().len(), 5);
    let seqs: Vec<u64> = m.history().map(|n| n.seq).collect();
    assert_eq!(seqs, [12, 13, 14, 15, 16]);
    m.handle_timeout(t0() + 2 * HOUR);
    assert_eq!(m.history().len(), 0);
    // What was not drained is bounded too, and the loss counted.
    assert_eq!(drain(&mut m).len(), 5);
    assert_eq!(m.dropped_notifications(), 11);
}

// ---- configuration ----

#[test]
fn configuration_errors_name_the_bad_value() {
    let base = plain();
    let root = || {
        Route::new()
            .with_receiver("oncall")
            .with_ack_timeout(20 * MIN)
    };
    let cases: Vec<(AlertConfig, &str)> = vec![
        (
            base.clone()
                .with_route(root().with_route(Route::new().with_receiver("pager"))),
            "`route.routes[0]` sends to unknown receiver \"pager\"",
        ),
        (
            base.clone()
                .with_route(root().with_escalation(vec![EscalationStep::new("nobody", MIN)])),
            "`route.escalation[0]` sends to unknown receiver \"nobody\"",
        ),
        (
            base.clone().with_route(
                root().with_escalation(vec![EscalationStep::new("lead", Duration::ZERO)]),
            ),
            "`route.escalation[0].after` must be longer than zero",
        ),
        (
            base.clone()
                .with_route(root().with_route(Route::new().with_ack_timeout(Duration::ZERO))),
            "`route.routes[0].ack_timeout` must be longer than zero",
        ),
        (
            base.clone().with_route(Route::new()),
            "`route` names no receiver (the root route must)",
        ),
        (
            base.clone().with_receivers(["oncall", "lead", "oncall"]),
            "receiver \"oncall\" is declared twice",
        ),
        (
            base.clone()
                .with_deadlines(ResponseDeadlines::default().with(Severity::High, 5 * HOUR)),
            "response deadline for high (18000s) is longer than for medium (14400s)",
        ),
        (
            base.clone().with_cascades(vec![CascadeRule::new(
                vec![matcher("alertname=x")],
                0,
                MIN,
                AlertTemplate::new("y", Severity::High, ""),
            )]),
            "`cascades[0].threshold` is 0; it must be at least 1",
        ),
        (
            base.clone()
                .with_inhibit_rules(vec![InhibitRule::new(vec![matcher("a=b")], Vec::new())]),
            "`inhibit[0]`: an inhibition rule needs source and target matchers",
        ),
        (
            base.clone().with_retention(Retention::new(0, HOUR)),
            "`retention.max_entries` is 0; it must be at least 1",
        ),
    ];
    for (config, message) in cases {
        let err = AlertManager::new(config).expect_err(message);
        assert_eq!(err.to_string(), message);
    }

    // From a host's file: a bad matcher, an unknown field.
    let json = r#"{"receivers": ["oncall"], "route": {"receiver": "oncall",
        "routes": [{"matchers": ["alertname=~disk.*"]}]}}"#;
    let err = serde_json::from_str::<AlertConfig>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad matcher \"alertname=~disk.*\""), "{err}");
    let json = r#"{"receivers": ["oncall"], "route": {"receiver": "oncall", "continue": true}}"#;
    assert!(serde_json::from_str::<AlertConfig>(json).is_err());
    // And a good one, with durations in milliseconds and defaults for the rest.
    let json = r#"{"receivers": ["oncall", "lead"], "route": {"receiver": "oncall",
        "group_wait": 0, "escalation": [{"receiver": "lead", "after": 600000}],
        "routes": [{"matchers": ["severity=low"], "escalation": []}]}}"#;
    let config: AlertConfig = serde_json::from_str(json).unwrap();
    assert!(config.validate().is_ok());
    assert_eq!(config.deadlines(), &ResponseDeadlines::default());
}

/// Guards against the derived, recursive drop of a route tree: one built through the
/// API 100,000 deep overflowed the stack (an abort) when dropped.
#[test]
fn a_route_tree_of_any_depth_drops_and_one_too_deep_is_refused() {
    let deep = || {
        let mut route = Route::new();
        for _ in 0..100_000 {
            route = Route::new().with_route(route);
        }
        AlertConfig::default().with_route(
            Route::new()
                .with_receiver("system_administrator")
                .with_route(route),
        )
    };
    let refused = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let config = deep();
            let refused = AlertManager::new(config).unwrap_err();
            drop(deep());
            refused
        })
        .unwrap()
        .join()
        .expect("dropped without overflowing the stack");
    assert_eq!(
        refused.to_string(),
        format!(
            "`route{}…` is {} routes below the root; at most {MAX_ROUTE_DEPTH} may be",
            ".routes[0]".repeat(6).chars().take(59).collect::<String>(),
            MAX_ROUTE_DEPTH + 1
        )
    );
}

/// Guards against errors that quote a megabyte of input.
#[test]
fn errors_cut_long_input() {
    let long = "x".repeat(1 << 20);
    let err = long.parse::<Severity>().unwrap_err();
    assert_eq!(
        err,
        AlertError::InvalidName {
            what: "severity",
            name: "x".repeat(64),
            reason: "expected low, medium, high or critical",
        }
    );
    let config = plain().with_route(
        Route::new()
            .with_receiver("oncall")
            .with_route(Route::new().with_receiver(long)),
    );
    assert!(AlertManager::new(config).unwrap_err().to_string().len() < 200);
}

// ---- refused operations ----

#[test]
fn refused_operations_are_typed_errors_that_change_nothing() {
    let mut m = manager(plain());
    m.fire(alert("disk_full", Severity::Medium, "h1"), t0())
        .unwrap();
    let before = m.snapshot();
    let unknown = Fingerprint::new(42);
    assert_eq!(
        m.acknowledge(unknown, "ada", t0() + HOUR),
        Err(AlertError::UnknownAlert {
            fingerprint: unknown
        })
    );
    assert_eq!(
        m.silence(Vec::new(), t0() + HOUR, "ada", t0() + HOUR),
        Err(AlertError::EmptySilence)
    );
    assert_eq!(
        m.silence(vec![matcher("host=h1")], t0(), "ada", t0() + HOUR),
        Err(AlertError::SilenceEnded {
            until: t0(),
            now: t0() + HOUR
        })
    );
    let bad_label = Alert::new("x", Severity::Low, t0()).with_label("severity", "high");
    assert!(matches!(
        m.fire(bad_label, t0() + HOUR),
        Err(AlertError::InvalidName { what: "label", .. })
    ));
    assert!(matches!(
        m.fire(Alert::new(" ", Severity::Low, t0()), t0() + HOUR),
        Err(AlertError::InvalidName {
            what: "alert name",
            ..
        })
    ));
    assert_eq!(m.snapshot(), before);
    assert_eq!(m.poll_timeout(), Some(t0() + 30 * SEC)); // time did not move either
}

// ---- snapshot and restore ----

#[test]
fn a_restored_manager_carries_on_and_a_corrupt_snapshot_is_refused() {
    let mut live = manager(plain());
    let fp = live
        .fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap()
        .fingerprint();
    live.fire(alert("disk_full", Severity::Medium, "h2"), t0())
        .unwrap();
    let silence = live
        .silence(vec![matcher("host=h2")], t0() + 2 * HOUR, "ada", t0() + SEC)
        .unwrap();
    live.handle_timeout(t0() + MIN);
    drain(&mut live);
    let json = serde_json::to_string(&live.snapshot()).unwrap();
    let snapshot: AlertManagerSnapshot = serde_json::from_str(&json).unwrap();
    let mut restored = AlertManager::restore(plain(), snapshot.clone()).unwrap();
    assert_eq!(restored.snapshot(), live.snapshot());
    for t in [HOUR, 2 * HOUR, 3 * HOUR] {
        live.handle_timeout(t0() + t);
        restored.handle_timeout(t0() + t);
        assert_eq!(drain(&mut restored), drain(&mut live));
    }
    assert_eq!(
        restored.history().collect::<Vec<_>>(),
        live.history().collect::<Vec<_>>()
    );

    let corrupt = |f: &dyn Fn(&mut AlertManagerSnapshot)| {
        let mut s = snapshot.clone();
        f(&mut s);
        match AlertManager::restore(plain(), s) {
            Err(AlertError::CorruptSnapshot { reason }) => reason,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(corrupt(&|s| s.version = 9), "version 9 (expected 1)");
    assert!(
        corrupt(&|s| s.alerts.push(s.alerts[0].clone())).contains("two alerts under fingerprint")
    );
    assert!(corrupt(&|s| s.silences.clear()).contains(&format!("held by silenced by {silence}")));
    assert!(corrupt(&|s| s.last_seq = 1).contains("past the last issued"));
    assert!(corrupt(&|s| s.now = t0()).contains("is after the snapshot's now"));
    // A time no clock reads: the refusal names it.
    let ahead = corrupt(&|s| s.now = Timestamp::MAX);
    assert!(
        ahead.contains(&format!("its now ({}) is past", Timestamp::MAX)),
        "{ahead}"
    );
    // A time far ahead leaves pages undone: the refusal names that time too.
    let ahead = corrupt(&|s| s.now = Timestamp::HORIZON);
    assert!(
        ahead.contains(&format!("the snapshot's time {}", Timestamp::HORIZON)),
        "{ahead}"
    );
    assert!(
        corrupt(&|s| {
            let a = s
                .alerts
                .iter_mut()
                .find(|a| a.alert.fingerprint() == fp)
                .unwrap();
            a.next.as_mut().unwrap().action = Action::Escalate { level: 2 };
        })
        .contains("not to the level after its last")
    );
    assert!(corrupt(&|s| s.cascades.push(Fingerprint::new(7))).contains("cascade alert"));
    let long = corrupt(&|s| {
        s.alerts[0].alert = Arc::new(Alert::new("n".repeat(1 << 20), Severity::High, t0()));
    });
    assert!(long.len() < 300, "{long}");
    // A name a snapshot from before invisible characters were refused may hold.
    let invisible = corrupt(&|s| {
        s.alerts[0].alert = Arc::new(Alert::new("cpu_hot\u{200b}", Severity::High, t0()));
    });
    assert!(
        invisible.contains("holds a control or invisible character"),
        "{invisible}"
    );
    // Under a changed configuration it restores, routing by the new one.
    let other = plain().with_route(Route::new().with_receiver("head").with_ack_timeout(MIN));
    assert!(AlertManager::restore(other, snapshot).is_ok());
}

// ---- the coordinator's events ----

/// Applies the alert changes of `events`, each at its event's time.
fn feed(alerts: &mut AlertManager, events: Vec<Event>) {
    for e in &events {
        for change in alerts_from_event(e) {
            alerts.apply(change, e.at).unwrap();
        }
    }
}

#[test]
fn the_coordinators_events_fire_and_resolve_alerts() {
    let clock = ManualClock::new(t0());
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .build();
    let mut alerts = manager(AlertConfig::default());
    c.register_agent(
        AgentProfile::new(AgentId::new(1), "ops-1")
            .with_role(Role::new("ops").unwrap())
            .with_capacity("cpu=2".parse().unwrap()),
    )
    .unwrap();
    let task = Task::new(TaskId::new(9), "audit", "audit work")
        .with_requirements(Requirements::new().with_role(Role::new("security").unwrap()));
    c.assign(task).unwrap();
    c.set_agent_status(AgentId::new(1), AgentStatus::Offline)
        .unwrap();
    c.set_mode(SystemMode::SafeMode);
    feed(&mut alerts, c.drain_events());
    let firing: BTreeSet<(String, Option<String>)> = alerts
        .firing()
        .map(|(_, r)| {
            let label = r.alert.labels().values().next().cloned();
            (r.alert.name().to_owned(), label)
        })
        .collect();
    assert_eq!(
        firing,
        BTreeSet::from([
            (names::AGENT_FAILURE.to_owned(), Some("agent#1".to_owned())),
            (names::SAFE_MODE_ENTERED.to_owned(), None),
            (
                names::TASK_UNPLACEABLE.to_owned(),
                Some("task#9".to_owned())
            ),
        ])
    );
    let unplaceable = alerts
        .firing()
        .find(|(_, r)| r.alert.name() == names::TASK_UNPLACEABLE)
        .unwrap()
        .1;
    assert_eq!(unplaceable.alert.severity(), Severity::Medium);
    assert!(
        unplaceable.alert.summary().contains("task#9 rejected"),
        "{}",
        unplaceable.alert.summary()
    );

    clock.advance(MIN);
    c.set_agent_status(AgentId::new(1), AgentStatus::Available)
        .unwrap();
    c.set_mode(SystemMode::Recovery);
    feed(&mut alerts, c.drain_events());
    assert_eq!(alerts.firing().len(), 2); // recovery is not yet normal
    c.set_mode(SystemMode::Normal);
    feed(&mut alerts, c.drain_events());
    let left: Vec<&str> = alerts.firing().map(|(_, r)| r.alert.name()).collect();
    assert_eq!(left, [names::TASK_UNPLACEABLE]); // a person resolves that one
}

#[test]
fn conflicts_escalated_to_a_human_fire_until_decided() {
    let event = |json: serde_json::Value| -> Event { serde_json::from_value(json).unwrap() };
    let at = t0().as_nanos();
    let escalated = event(serde_json::json!({
        "seq": 1, "at": at, "event": "conflict_escalated",
        "action": {"request_human_approval": {"conflict": 5, "deadline": at + 3_600_000_000_000u64,
            "default": "deny", "reason": "orchestrator_resolution_timeout"}},
    }));
    let changes: Vec<AlertChange> = alerts_from_event(&escalated).collect();
    let [AlertChange::Fire(fired)] = &changes[..] else {
        panic!("{changes:?}")
    };
    assert_eq!(
        (fired.name(), fired.severity()),
        (names::CONFLICT_ESCALATED, Severity::High)
    );
    assert_eq!(fired.label("conflict"), Some("conflict#5"));
    assert!(
        fired
            .summary()
            .starts_with("conflict#5 needs a human decision by")
    );
    let decided = event(serde_json::json!({
        "seq": 2, "at": at, "event": "conflict_decided", "conflict": 5,
        "decision": "approve", "by": "human",
    }));
    let resolves: Vec<AlertChange> = alerts_from_event(&decided).collect();
    assert!(resolves.contains(&AlertChange::Resolve(fired.fingerprint())));
}

#[test]
fn a_reported_breach_fires_security_breach_naming_its_agents() {
    let event = |json: serde_json::Value| -> Event { serde_json::from_value(json).unwrap() };
    let reported = event(serde_json::json!({
        "seq": 1, "at": t0().as_nanos(), "event": "security_breach_reported",
        "agents": [2, 5], "reason": "unexpected outbound traffic",
    }));
    let changes: Vec<AlertChange> = alerts_from_event(&reported).collect();
    let [AlertChange::Fire(fired)] = &changes[..] else {
        panic!("{changes:?}")
    };
    assert_eq!(
        (fired.name(), fired.severity()),
        (names::SECURITY_BREACH, Severity::Critical)
    );
    assert_eq!(fired.label("agents"), Some("agent#2,agent#5"));
    assert!(fired.summary().contains("unexpected outbound traffic"));
}

// ---- properties ----

/// The properties' configuration: short durations so a few hundred operations cover
/// every path. Receivers `oncall`, `lead`, `head`; critical alerts page at once.
/// Three `disk` alerts within 60 s fire `outage`, which holds `disk` back.
fn quick() -> AlertConfig {
    let deadlines = ResponseDeadlines::default()
        .with(Severity::Critical, Duration::ZERO)
        .with(Severity::High, 60 * SEC)
        .with(Severity::Medium, 120 * SEC)
        .with(Severity::Low, 300 * SEC);
    AlertConfig::default()
        .with_receivers(["oncall", "lead", "head"])
        .with_route(
            Route::new()
                .with_receiver("oncall")
                .with_group_by(["alertname"])
                .with_group_wait(10 * SEC)
                .with_ack_timeout(90 * SEC)
                .with_escalation(vec![
                    EscalationStep::new("lead", 30 * SEC),
                    EscalationStep::new("head", 30 * SEC),
                ])
                .with_route(
                    Route::new()
                        .with_matcher(matcher("severity=critical"))
                        .with_group_wait(Duration::ZERO),
                ),
        )
        .with_deadlines(deadlines)
        .with_inhibit_rules(vec![InhibitRule::new(
            vec![matcher("alertname=outage")],
            vec![matcher("alertname=disk")],
        )])
        .with_cascades(vec![CascadeRule::new(
            vec![matcher("alertname=disk")],
            3,
            60 * SEC,
            AlertTemplate::new("outage", Severity::Critical, "disks failing together"),
        )])
        .with_retention(Retention::new(40, 900 * SEC))
}

const NAMES: [(&str, Severity); 3] = [
    ("disk", Severity::Medium),
    ("cpu", Severity::High),
    ("net", Severity::Critical),
];
const CHAIN: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Fire { name: usize, host: u8 },
    Resolve { name: usize, host: u8 },
    ResolveHost { host: u8 },
    Ack { name: usize, host: u8 },
    Silence { host: u8, secs: u16 },
    Expire { pick: u8 },
    Advance { secs: u16 },
    Wake { back_secs: u16 },
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let host = 0u8..4;
    prop_oneof![
        6 => (name.clone(), host.clone()).prop_map(|(name, host)| Op::Fire { name, host }),
        2 => (name.clone(), host.clone()).prop_map(|(name, host)| Op::Resolve { name, host }),
        1 => host.clone().prop_map(|host| Op::ResolveHost { host }),
        2 => (name, host.clone()).prop_map(|(name, host)| Op::Ack { name, host }),
        1 => (host, 1u16..400).prop_map(|(host, secs)| Op::Silence { host, secs }),
        1 => any::<u8>().prop_map(|pick| Op::Expire { pick }),
        5 => (0u16..120).prop_map(|secs| Op::Advance { secs }),
        2 => (0u16..100).prop_map(|back_secs| Op::Wake { back_secs }),
        1 => Just(Op::Restore),
    ]
}

fn prop_alert(name: usize, host: u8) -> Alert {
    let (name, severity) = NAMES[name];
    Alert::new(name, severity, t0()).with_label("host", format!("h{host}"))
}

/// What the properties know of one firing of a (non-cascade) alert, from the
/// operations and the notifications alone.
#[derive(Debug, Default)]
struct Firing {
    severity: Option<Severity>,
    /// When its response deadline counts from: its first page, or an acknowledgement
    /// before it.
    deadline_from: Option<Timestamp>,
    first_paged: bool,
    acknowledged: bool,
    levels: Vec<u32>,
    resolved_in_batch: bool,
}

/// A silence as the properties see it: the host it matches and when it is in force.
struct SilenceSpan {
    host: String,
    from: Timestamp,
    to: Timestamp,
}

struct Observer {
    firing: BTreeMap<Fingerprint, Firing>,
    ended: BTreeSet<Fingerprint>,
    silences: Vec<(concord::alert::SilenceId, SilenceSpan)>,
    deadlines: ResponseDeadlines,
}

impl Observer {
    fn deadline(&self, f: &Firing) -> Option<Timestamp> {
        Some(f.deadline_from? + self.deadlines.get(f.severity?))
    }

    /// Checks one notification against what is known, and learns from it.
    fn see(&mut self, n: &Notification) -> Result<(), TestCaseError> {
        for a in n.alerts() {
            let fp = a.fingerprint();
            if a.name() == "outage" {
                continue; // fired and resolved by cascade detection, not by the test
            }
            if let NotificationKind::Resolved { .. } = n.kind {
                if let Some(f) = self.firing.get_mut(&fp) {
                    f.resolved_in_batch = true;
                }
                continue;
            }
            if !n.is_page() {
                continue;
            }
            prop_assert!(
                !self.ended.contains(&fp),
                "#{} pages {fp}, resolved before",
                n.seq
            );
            let host = a.label("host").unwrap_or_default();
            let silenced = self
                .silences
                .iter()
                .any(|(_, s)| s.host == host && s.from < n.at && n.at < s.to);
            prop_assert!(!silenced, "#{} pages {fp} during its silence", n.seq);
            let deadline = self.firing.get(&fp).and_then(|f| self.deadline(f));
            let Some(f) = self.firing.get_mut(&fp) else {
                return Err(TestCaseError::fail(format!(
                    "#{} pages {fp}, which never fired",
                    n.seq
                )));
            };
            prop_assert!(
                !f.resolved_in_batch,
                "#{} pages {fp} after its resolution",
                n.seq
            );
            let first = !f.first_paged;
            if !first {
                let deadline = deadline.expect("a paged alert has a deadline");
                prop_assert!(
                    n.at >= deadline,
                    "#{} pages {fp} again at {} inside its deadline {deadline}",
                    n.seq,
                    n.at
                );
            }
            match &n.kind {
                NotificationKind::Page { .. } => {
                    prop_assert!(first, "#{} pages {fp} a second time", n.seq);
                    f.deadline_from = Some(n.at);
                }
                NotificationKind::Repage { .. } => {
                    prop_assert!(f.acknowledged, "#{} re-pages {fp}, not acknowledged", n.seq);
                    f.acknowledged = false;
                }
                NotificationKind::Escalated { level, .. } => {
                    prop_assert!(!f.acknowledged, "#{} escalates acknowledged {fp}", n.seq);
                    prop_assert!(!first, "#{} escalates {fp} before its first page", n.seq);
                    let expected = f.levels.len() as u32 + 1;
                    prop_assert_eq!(*level, expected, "#{} escalates {} out of order", n.seq, fp);
                    f.levels.push(*level);
                }
                _ => {}
            }
            f.first_paged = true;
        }
        Ok(())
    }
}

/// The manager's own state is consistent with the rules: anything held is held by a
/// silence that is in force and matches, or by a firing alert; anything due and not
/// held is in the future; the history is within its retention.
fn check_state(m: &AlertManager, config: &AlertConfig) -> Result<(), TestCaseError> {
    let now = m.now();
    if let Some(t) = m.poll_timeout() {
        prop_assert!(t > now, "poll_timeout {t} is not after now {now}");
    }
    for (fp, r) in m.firing() {
        match (&r.held, r.next) {
            (Some(SuppressReason::Silenced { silence }), Some(due)) => {
                let s = m.silences().find(|s| s.id == *silence);
                prop_assert!(
                    s.is_some_and(|s| s.until > now && s.matches(&r.alert)),
                    "{fp} held by a lapsed {silence}"
                );
                prop_assert!(due.at <= now);
            }
            (Some(SuppressReason::Inhibited { by, .. }), Some(due)) => {
                prop_assert!(m.alert(*by).is_some(), "{fp} held by {by}, which resolved");
                prop_assert!(due.at <= now);
            }
            (Some(other), _) => return Err(TestCaseError::fail(format!("{fp} held by {other}"))),
            (None, Some(due)) => prop_assert!(
                due.at > now,
                "{fp}'s {} due at {} not done by {now}",
                due.action,
                due.at
            ),
            (None, None) => {}
        }
    }
    let retention = config.retention();
    prop_assert!(m.history().len() <= retention.max_entries());
    prop_assert!(
        m.history()
            .all(|n| n.at >= now.saturating_sub(retention.max_age()))
    );
    Ok(())
}

fn lifecycle(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = quick();
    let mut m = AlertManager::new(config.clone()).unwrap();
    // The same operations without restores: what a restore must not change.
    let mut twin = AlertManager::new(config.clone()).unwrap();
    let mut obs = Observer {
        firing: BTreeMap::new(),
        ended: BTreeSet::new(),
        silences: Vec::new(),
        deadlines: config.deadlines().clone(),
    };
    let mut clock = t0();
    for op in ops {
        // What the operation did, applied before or after its notifications are seen.
        let mut started = None;
        let mut resolved = Vec::new();
        let mut acked = None;
        match op {
            Op::Fire { name, host } => {
                let a = prop_alert(name, host);
                let fired = m.fire(a.clone(), clock).unwrap();
                prop_assert_eq!(fired, twin.fire(a, clock).unwrap());
                if let Fired::New(fp) = fired {
                    started = Some((fp, NAMES[name].1));
                }
            }
            Op::Resolve { name, host } => {
                let fp = prop_alert(name, host).fingerprint();
                let was = m.resolve(fp, clock);
                prop_assert_eq!(was, twin.resolve(fp, clock));
                if was {
                    resolved.push(fp);
                }
            }
            Op::ResolveHost { host } => {
                let matchers = [matcher(&format!("host=h{host}"))];
                resolved = m.resolve_matching(&matchers, clock);
                prop_assert_eq!(&resolved, &twin.resolve_matching(&matchers, clock));
            }
            Op::Ack { name, host } => {
                let fp = prop_alert(name, host).fingerprint();
                let out = m.acknowledge(fp, "ada", clock);
                prop_assert_eq!(&out, &twin.acknowledge(fp, "ada", clock));
                if out.is_ok() {
                    acked = Some(fp);
                }
            }
            Op::Silence { host, secs } => {
                let until = clock + Duration::from_secs(u64::from(secs));
                let matchers = vec![matcher(&format!("host=h{host}"))];
                let id = m.silence(matchers.clone(), until, "ada", clock).unwrap();
                prop_assert_eq!(id, twin.silence(matchers, until, "ada", clock).unwrap());
                let span = SilenceSpan {
                    host: format!("h{host}"),
                    from: m.now(),
                    to: until,
                };
                obs.silences.push((id, span));
            }
            Op::Expire { pick } => {
                let ids: Vec<_> = m.silences().map(|s| s.id).collect();
                if !ids.is_empty() {
                    let id = ids[usize::from(pick) % ids.len()];
                    m.expire_silence(id, clock).unwrap();
                    twin.expire_silence(id, clock).unwrap();
                    if let Some((_, s)) = obs.silences.iter_mut().find(|(i, _)| *i == id) {
                        s.to = s.to.min(m.now());
                    }
                }
            }
            Op::Advance { secs } => {
                clock += Duration::from_secs(u64::from(secs));
                m.handle_timeout(clock);
                twin.handle_timeout(clock);
            }
            Op::Wake { back_secs } => {
                let t = clock - Duration::from_secs(u64::from(back_secs));
                m.handle_timeout(t);
                twin.handle_timeout(t);
            }
            Op::Restore => {
                let json = serde_json::to_string(&m.snapshot()).unwrap();
                let snapshot: AlertManagerSnapshot = serde_json::from_str(&json).unwrap();
                let before = m.snapshot();
                m = AlertManager::restore(config.clone(), snapshot).unwrap();
                prop_assert_eq!(m.snapshot(), before);
            }
        }
        if let Some((fp, severity)) = started {
            obs.ended.remove(&fp);
            obs.firing.insert(
                fp,
                Firing {
                    severity: Some(severity),
                    ..Firing::default()
                },
            );
        }
        let ns: Vec<Notification> = m.drain_notifications().collect();
        let twin_ns: Vec<Notification> = twin.drain_notifications().collect();
        prop_assert_eq!(&ns, &twin_ns);
        for n in &ns {
            obs.see(n)?;
        }
        for fp in resolved {
            obs.firing.remove(&fp);
            obs.ended.insert(fp);
        }
        if let Some(fp) = acked {
            if let Some(f) = obs.firing.get_mut(&fp) {
                f.acknowledged = true;
                if !f.first_paged {
                    f.deadline_from = Some(m.now());
                }
            }
        }
        check_state(&m, &config)?;
    }

    // Long after: every unacknowledged alert not held back has climbed the whole chain,
    // each level once.
    let end = clock + 24 * HOUR;
    m.handle_timeout(end);
    for n in m.drain_notifications().collect::<Vec<_>>() {
        obs.see(&n)?;
    }
    check_state(&m, &config)?;
    for (fp, r) in m.firing() {
        if r.alert.name() == "outage" || r.held.is_some() {
            continue;
        }
        let f = &obs.firing[&fp];
        prop_assert_eq!(
            &f.levels,
            &(1..=CHAIN).collect::<Vec<_>>(),
            "{} climbed {:?}",
            fp,
            f.levels
        );
        prop_assert!(r.next.is_none());
    }
    Ok(())
}

/// [`a_restart_hands_out_again_under_the_same_keys`]: a snapshot before operation
/// `crash`, and the fires and resolutions from there on given again.
fn restart(ops: Vec<Op>, crash: usize) -> Result<(), TestCaseError> {
    let config = quick();
    let mut live = AlertManager::new(config.clone()).unwrap();
    let mut saved = None;
    let mut sent = Vec::new();
    let mut after_save = Vec::new();
    // The fires and resolutions after the snapshot, with their times: what the
    // journal holds. Wakes and silences are the host's, not journaled.
    let mut journal = Vec::new();
    let mut clock = t0();
    for (i, op) in ops.iter().enumerate() {
        if i == crash.min(ops.len() - 1) {
            saved = Some(live.snapshot());
        }
        match *op {
            Op::Fire { name, host } => {
                live.fire(prop_alert(name, host), clock).unwrap();
                journal.push((
                    Some(prop_alert(name, host)),
                    prop_alert(name, host).fingerprint(),
                    clock,
                ));
            }
            Op::Resolve { name, host } => {
                let fp = prop_alert(name, host).fingerprint();
                live.resolve(fp, clock);
                journal.push((None, fp, clock));
            }
            Op::Advance { secs } => {
                clock += Duration::from_secs(u64::from(secs));
                live.handle_timeout(clock);
            }
            _ => {}
        }
        let made: Vec<_> = live.drain_notifications().collect();
        if saved.is_some() {
            after_save.extend(made.iter().map(Notification::dedup_key));
        } else {
            journal.clear();
        }
        sent.extend(made);
    }
    let mut said = BTreeMap::new();
    for n in &sent {
        if let Some(first) = said.insert(n.dedup_key(), n) {
            prop_assert!(
                first.at == n.at && first.kind == n.kind,
                "{} and {} share the key {}",
                first,
                n,
                n.dedup_key()
            );
        }
    }

    // Drained after each change, as the host drains it: undrained, the oldest
    // notifications past the retention's count are dropped.
    let mut restored = AlertManager::restore(config, saved.unwrap()).unwrap();
    let mut again = Vec::new();
    for (alert, fp, at) in journal {
        match alert {
            Some(a) => {
                restored.fire(a, at).unwrap();
            }
            None => {
                restored.resolve(fp, at);
            }
        }
        again.extend(restored.drain_notifications().map(|n| n.dedup_key()));
    }
    restored.handle_timeout(clock);
    again.extend(restored.drain_notifications().map(|n| n.dedup_key()));
    prop_assert_eq!(again, after_save);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/proptest-regressions/alert.txt"),
        )),
        ..ProptestConfig::default()
    })]

    /// Over arbitrary operations (restores included): nothing panics; no alert pages
    /// twice for one firing; nothing pages for an alert again inside its response
    /// deadline; escalations go one level at a time, never while acknowledged;
    /// re-pages only follow acknowledgements; nothing pages during a matching silence
    /// or after a resolution; what is held is held for a reason still in force (so an
    /// inhibited alert pages once its inhibitor resolves); `poll_timeout` is never
    /// in the past; the history stays within its retention; a restored manager says
    /// exactly what one never restored says; and in the end every overdue
    /// unacknowledged alert has escalated exactly once per level.
    #[test]
    fn alert_lifecycles_keep_their_promises(ops in prop::collection::vec(op(), 1..120)) {
        lifecycle(ops)?;
    }

    /// After a crash, a manager restored from a snapshot and given the same fires and
    /// resolutions again (as a host replays the journal's events after its checkpoint)
    /// hands out again what it handed out after the snapshot, under the same keys,
    /// whenever the host woke it: a receiver folding by key is paged once. And two
    /// notifications of one manager share a key only if they say the same (an alert
    /// firing, resolved and firing again within one instant).
    #[test]
    fn a_restart_hands_out_again_under_the_same_keys(
        ops in prop::collection::vec(op(), 1..80),
        crash in 0usize..80,
    ) {
        restart(ops, crash)?;
    }

    /// A deduplicated alert pages once, however often and whenever it fires again.
    #[test]
    fn a_deduplicated_alert_pages_once(gaps in prop::collection::vec(0u64..600, 1..40)) {
        let mut m = AlertManager::new(plain()).unwrap();
        let mut t = t0();
        let a = alert("disk_full", Severity::Low, "h1");
        for gap in gaps {
            t += Duration::from_secs(gap);
            m.fire(a.clone(), t).unwrap();
        }
        m.handle_timeout(t + HOUR);
        let first_pages = m.drain_notifications().filter(|n| matches!(n.kind, NotificationKind::Page { .. })).count();
        prop_assert_eq!(first_pages, 1);
    }
}

/// The alert manager's deadlines join the coordinator's: a driver that keeps it
/// wakes at the group wait and at the response deadline with no host loop, and a
/// nudge after a fire brings the nearer deadline.
#[test]
fn a_driver_pages_and_escalates_on_time_with_no_host_loop() {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::Context;

    use concord::SimulatedTimer;
    use concord::coordinator::{Driver, Timed};

    let clock = ManualClock::new(t0());
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    let alerts = Arc::new(Mutex::new(manager(plain())));
    let driver = Driver::new(Arc::clone(&coordinator), SimulatedTimer::new(clock.clone()))
        .with_timed(Arc::clone(&alerts) as Arc<dyn Timed>);
    let run = driver.run();
    futures::pin_mut!(run);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(run.as_mut().poll(&mut cx).is_pending());

    let fp = alerts
        .lock()
        .unwrap()
        .fire(alert("cpu_hot", Severity::High, "h1"), t0())
        .unwrap()
        .fingerprint();
    coordinator.nudge();
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        assert!(run.as_mut().poll(&mut cx).is_pending());
        seen.extend(alerts.lock().unwrap().drain_notifications().map(|n| {
            let at = n.at;
            (pages(std::slice::from_ref(&n)), at)
        }));
        if seen
            .iter()
            .any(|(p, _)| p.iter().any(|x| x.0 == "escalated"))
        {
            break;
        }
    }
    let paged_at = t0() + 30 * SEC;
    let got: Vec<(&str, Timestamp)> = seen
        .iter()
        .filter_map(|(p, at)| p.first().map(|x| (x.0, *at)))
        .collect();
    assert_eq!(got, [("page", paged_at), ("escalated", paged_at + HOUR)]);
    assert_eq!(
        alerts
            .lock()
            .unwrap()
            .alert(fp)
            .unwrap()
            .paged
            .as_ref()
            .unwrap()
            .level,
        1
    );
}

// ----- times no clock reads ----------------------------------------------------------

/// A `now` past `Timestamp::HORIZON` (a saturated `now + Duration::MAX`, a corrupt
/// clock) is refused where a call returns a `Result`, with nothing changed, and
/// counts as the latest time seen elsewhere: one such reading no longer makes every
/// later alert page and escalate at once (its deadlines saturated), its
/// acknowledgements lapse at once, or its escalations never come.
#[test]
fn a_time_past_the_horizon_is_no_time_for_the_manager() {
    let far = [Timestamp::MAX, Timestamp::HORIZON + Duration::from_secs(1)];
    for bogus in far {
        let mut m = manager(plain());
        let a = alert("disk_full", Severity::Medium, "db-1");
        let before = serde_json::to_string(&m.snapshot()).expect("json");
        for e in [
            m.fire(a.clone(), bogus).map(drop).expect_err("fire"),
            (m.apply(AlertChange::Fire(a.clone()), bogus)).expect_err("apply"),
            m.silence(vec![matcher("host=db-1")], Timestamp::MAX, "ada", bogus)
                .map(drop)
                .expect_err("silence"),
        ] {
            assert_eq!(e, AlertError::PastHorizon { now: bogus }, "{e}");
        }
        assert_eq!(serde_json::to_string(&m.snapshot()).expect("json"), before);
        // A tick at it changes nothing: the alert fired at the real time pages
        // after its group wait and escalates after its deadline, not at once.
        m.handle_timeout(bogus);
        assert_eq!(m.now(), Timestamp::EPOCH);
        m.fire(a.clone(), t0()).expect("fire");
        m.handle_timeout(t0() + MIN);
        let first = drain(&mut m);
        assert!(
            first
                .iter()
                .all(|n| !matches!(n.kind, NotificationKind::Escalated { .. })),
            "{first:?}"
        );
        assert!(
            first
                .iter()
                .any(|n| matches!(n.kind, NotificationKind::Page { .. }))
        );
        // Acknowledged, it stays acknowledged past another bogus tick.
        m.acknowledge(a.fingerprint(), "ada", t0() + 2 * MIN)
            .expect("acknowledge");
        assert_eq!(
            m.acknowledge(a.fingerprint(), "ada", bogus),
            Err(AlertError::PastHorizon { now: bogus })
        );
        m.handle_timeout(bogus);
        assert!(
            m.alert(a.fingerprint())
                .expect("firing")
                .acknowledged
                .is_some()
        );
        assert!(m.poll_timeout().is_some_and(|t| t > t0() + 2 * MIN));
        // Resolved at such a time, it resolves at the latest time seen.
        assert!(m.resolve(a.fingerprint(), bogus));
        assert_eq!(m.now(), t0() + 2 * MIN);
    }
    // A snapshot whose now is past the horizon is refused.
    let mut snapshot = manager(plain()).snapshot();
    snapshot.now = Timestamp::MAX;
    assert!(AlertManager::restore(plain(), snapshot).is_err());
}
