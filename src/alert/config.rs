//! [`AlertConfig`]: receivers, the route tree with its escalation chains, inhibition
//! and cascade rules, response deadlines and history retention, as serde data with the
//! operating procedures' defaults; and the compiled form the manager routes with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::matcher::all_match;
use super::model::{check_alert_name, check_label_name, shorten, write_labels};
use super::names;
use super::{Alert, AlertError, Fingerprint, GroupKey, Matcher, ResponseDeadlines, Severity};
use crate::clock::Timestamp;
use crate::serde_util::{duration_ms, opt_duration_ms};

/// The receivers of the default configuration: the emergency contacts of the
/// operating procedures. A host maps each to its transport (a pager, a chat channel,
/// an email list).
pub const DEFAULT_RECEIVERS: [&str; 4] = [
    "system_administrator",
    "security_team",
    "development_team",
    "business_stakeholders",
];

/// The deepest a [`Route`] may sit in a valid configuration: the number of routes
/// above it, the root's being 0. [`AlertConfig::validate`] refuses a tree with a route
/// deeper than this ([`AlertError::RouteTooDeep`]).
///
/// Alertmanager trees are a few levels deep; the limit leaves room for generated ones
/// while keeping small what the manager does per alert (walking down the tree, naming
/// the route in a group key), and keeps out of the manager a tree so deep that
/// copying, comparing or printing it, which recurse, could overflow the stack.
pub const MAX_ROUTE_DEPTH: usize = 64;

/// The longest group wait, acknowledgement timeout, escalation step, response
/// deadline or cascade window a configuration may set: a year. Past it a page is in
/// effect never sent (`u64::MAX` milliseconds is half a billion years), which a
/// setting should say by leaving the route or rule out, not by a number no one
/// will wait for.
pub const MAX_ALERT_WAIT: Duration = crate::clock::A_YEAR;

/// `field` is `value`, refused when longer than [`MAX_ALERT_WAIT`].
fn at_most_a_year(field: impl FnOnce() -> String, value: Duration) -> Result<(), AlertError> {
    if value > MAX_ALERT_WAIT {
        return Err(AlertError::TooLong {
            field: field(),
            value,
            max: MAX_ALERT_WAIT,
        });
    }
    Ok(())
}

/// The root route's group wait when it sets none: Alertmanager's default.
const ROOT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// The root route's acknowledgement timeout when it sets none.
const ROOT_ACK_TIMEOUT: Duration = Duration::from_secs(3600);

/// One rung of an escalation chain: if the alert is still unacknowledged `after` the
/// previous page (and its response deadline has passed), `receiver` is paged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    receiver: String,
    #[serde(with = "duration_ms")]
    after: Duration,
}

impl EscalationStep {
    /// Page `receiver` when the alert is still unacknowledged `after` its previous
    /// page, and past its response deadline.
    pub fn new(receiver: impl Into<String>, after: Duration) -> Self {
        EscalationStep {
            receiver: receiver.into(),
            after,
        }
    }

    /// The receiver.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The delay after the previous page.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// A node of the route tree: which alerts it takes (`matchers`), who it pages, how it
/// groups them, and its escalation chain.
///
/// An alert walks down from the root: at each node it goes to the first child whose
/// matchers all hold, and stops where none does; that node routes it. (There is no
/// Alertmanager `continue`: one alert, one route, one page.) A setting a node leaves
/// unset is inherited from its parent; the root's unset settings are: group by
/// `alertname`, a 30 s group wait, a 1 h acknowledgement timeout, no escalation.
///
/// | setting | meaning |
/// |---|---|
/// | `receiver` | who is paged first |
/// | `group_by` | labels (`alertname` and `severity` included) whose values make a group: alerts of one group firing within its group wait share one page |
/// | `group_wait` | how long a new group waits for more alerts (and for an inhibiting alert) before paging; zero pages at once |
/// | `ack_timeout` | how long an acknowledged alert may stay unresolved before it is paged again |
/// | `escalation` | the receivers paged, in order, while the alert stays unacknowledged past its response deadline; each once |
///
/// ```
/// use std::time::Duration;
/// use concord::alert::{EscalationStep, Route};
///
/// let security = Route::new()
///     .with_matcher("alertname=security_breach".parse()?)
///     .with_receiver("security_team")
///     .with_group_wait(Duration::ZERO)
///     .with_escalation(vec![EscalationStep::new("system_administrator", Duration::from_secs(900))]);
/// let root = Route::new().with_receiver("system_administrator").with_route(security);
/// assert_eq!(root.routes().len(), 1);
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
///
/// # Depth
/// A valid configuration nests routes at most [`MAX_ROUTE_DEPTH`] deep:
/// [`AlertConfig::validate`] refuses a deeper tree, looking no further down than the
/// limit. A deeper tree can still be built with [`with_route`](Self::with_route), and
/// dropped whatever its depth. Cloning, comparing, printing (`Debug`), serializing and
/// deserializing one recurse, a stack frame per level, so a tree thousands of levels
/// deep can overflow the stack there (serde_json refuses input nested more than 128
/// levels): validate a tree a program built before doing any of those with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    matchers: Vec<Matcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_by: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_ms"
    )]
    group_wait: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_ms"
    )]
    ack_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    escalation: Option<Vec<EscalationStep>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

impl Route {
    /// A route that matches everything and inherits every setting.
    pub fn new() -> Self {
        Route::default()
    }

    /// Sets who is paged first.
    pub fn with_receiver(mut self, receiver: impl Into<String>) -> Self {
        self.receiver = Some(receiver.into());
        self
    }

    /// Adds a matcher: an alert must pass all of them to take this route.
    pub fn with_matcher(mut self, matcher: Matcher) -> Self {
        self.matchers.push(matcher);
        self
    }

    /// Sets the labels whose values make a group.
    pub fn with_group_by<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.group_by = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// Sets how long a new group waits before paging.
    pub fn with_group_wait(mut self, wait: Duration) -> Self {
        self.group_wait = Some(wait);
        self
    }

    /// Sets how long an acknowledged alert may stay unresolved before it is paged
    /// again.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = Some(timeout);
        self
    }

    /// Sets the escalation chain (an empty chain: no escalation).
    pub fn with_escalation(mut self, steps: Vec<EscalationStep>) -> Self {
        self.escalation = Some(steps);
        self
    }

    /// Adds a child route, tried after the ones added before it.
    pub fn with_route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The receiver, if this route sets one.
    pub fn receiver(&self) -> Option<&str> {
        self.receiver.as_deref()
    }

    /// The matchers.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The child routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Drops the tree a level at a time: the derived drop would recurse once per level,
/// and a tree built through the API may be deep enough to overflow the stack (an
/// abort, which no caller can catch).
impl Drop for Route {
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.routes);
        while let Some(mut route) = pending.pop() {
            // Its children move up here, so it drops with none of its own.
            pending.append(&mut route.routes);
        }
    }
}

/// Holds back the alerts an alert explains: while an alert matching `source` fires,
/// alerts matching `target` whose `equal` labels have the same values (a label absent
/// from both counts as equal) do not page; when the last such source resolves, those
/// still firing page.
///
/// The default rules hold back the per-agent "agent failure" alerts behind a
/// "multiple agent failures" or "system-wide agent failure" alert, and "multiple agent
/// failures" behind "system-wide agent failure".
///
/// ```
/// use concord::alert::InhibitRule;
///
/// let rule = InhibitRule::new(
///     vec!["alertname=system_wide_agent_failure".parse()?],
///     vec!["alertname=agent_failure".parse()?],
/// );
/// assert!(rule.equal().is_empty());
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    equal: Vec<String>,
}

impl InhibitRule {
    /// Alerts matching `target` are held back while one matching `source` fires.
    pub fn new(source: Vec<Matcher>, target: Vec<Matcher>) -> Self {
        InhibitRule {
            source,
            target,
            equal: Vec::new(),
        }
    }

    /// Sets the labels that must agree between source and target.
    pub fn with_equal<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.equal = labels.into_iter().map(Into::into).collect();
        self
    }

    /// The source matchers.
    pub fn source(&self) -> &[Matcher] {
        &self.source
    }

    /// The target matchers.
    pub fn target(&self) -> &[Matcher] {
        &self.target
    }

    /// The labels that must agree.
    pub fn equal(&self) -> &[String] {
        &self.equal
    }

    /// Whether `source` (firing) holds back `target`.
    pub(crate) fn holds_back(&self, source: &Alert, target: &Alert) -> bool {
        all_match(&self.target, target)
            && all_match(&self.source, source)
            && self
                .equal
                .iter()
                .all(|l| source.value(l) == target.value(l))
    }
}

/// An alert a [`CascadeRule`] fires: its name, severity, labels and summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTemplate {
    name: String,
    severity: Severity,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    summary: String,
}

impl AlertTemplate {
    /// An alert named `name` of `severity`, summarised by `summary`.
    pub fn new(name: impl Into<String>, severity: Severity, summary: impl Into<String>) -> Self {
        AlertTemplate {
            name: name.into(),
            severity,
            labels: BTreeMap::new(),
            summary: summary.into(),
        }
    }

    /// Sets a label.
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The alert, seen at `at`.
    pub fn alert(&self, at: Timestamp) -> Alert {
        Alert::new(self.name.clone(), self.severity, at)
            .with_labels(self.labels.clone())
            .with_summary(self.summary.clone())
    }

    /// The fingerprint of the alert it makes.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.name, &self.labels)
    }
}

/// Cascade failure detection: when an alert matching `counts` starts firing and,
/// counting it, `threshold` or more firing alerts matching `counts` started within the
/// last `window`, the rule fires its alert (its source `cascade_detection`, its summary
/// saying how many). It resolves that alert itself when fewer than `threshold`
/// matching alerts fire, whatever their age; if the alert was already firing (a host
/// fired it), the rule leaves it to the host.
///
/// The defaults: 2 agent failures within 5 minutes fire "multiple agent failures"
/// (high); 3 fire "system-wide agent failure" (critical), which the default inhibition
/// rules let hold back the per-agent alerts it explains.
///
/// ```
/// use std::time::Duration;
/// use concord::alert::{AlertTemplate, CascadeRule, Severity};
///
/// let rule = CascadeRule::new(
///     vec!["alertname=agent_failure".parse()?],
///     3,
///     Duration::from_secs(300),
///     AlertTemplate::new("system_wide_agent_failure", Severity::Critical, "agents failing together"),
/// );
/// assert_eq!(rule.threshold(), 3);
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeRule {
    counts: Vec<Matcher>,
    threshold: u32,
    #[serde(with = "duration_ms")]
    window: Duration,
    fires: AlertTemplate,
}

impl CascadeRule {
    /// Fire `fires` when `threshold` alerts matching `counts` started within `window`.
    pub fn new(
        counts: Vec<Matcher>,
        threshold: u32,
        window: Duration,
        fires: AlertTemplate,
    ) -> Self {
        CascadeRule {
            counts,
            threshold,
            window,
            fires,
        }
    }

    /// The matchers of the alerts it counts.
    pub fn counts(&self) -> &[Matcher] {
        &self.counts
    }

    /// How many alerts fire it.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Within how long they must have started.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// What it fires.
    pub fn fires(&self) -> &AlertTemplate {
        &self.fires
    }
}

/// How much notification history the manager keeps: at most `max_entries`
/// notifications, none older than `max_age`. Defaults: 10,000 and 7 days.
///
/// The same count bounds the notifications waiting to be
/// [drained](super::AlertManager::drain_notifications): a host that never drains loses
/// the oldest, counted in [`dropped_notifications`](super::AlertManager::dropped_notifications),
/// rather than growing without end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    max_entries: usize,
    #[serde(with = "duration_ms")]
    max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_entries: 10_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Retention {
    /// Keep at most `max_entries` notifications, none older than `max_age`.
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        Retention {
            max_entries,
            max_age,
        }
    }

    /// The most notifications kept.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The oldest a kept notification may be.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }
}

/// Everything the [`AlertManager`](super::AlertManager) is told up front: receivers,
/// the route tree, response deadlines, inhibition and cascade rules, and history
/// retention. Plain serde data (durations in milliseconds), checked by
/// [`validate`](Self::validate) when a manager is made from it.
///
/// The default is the operating procedures' alert configuration:
///
/// - receivers: [`DEFAULT_RECEIVERS`], the procedures' emergency contacts;
/// - the root route pages the system administrator, groups by `alertname` for 30 s,
///   re-pages an acknowledged alert after 1 h and escalates an unacknowledged one to
///   the development team at its response deadline, and no sooner than 30 min after
///   the page (a step waits for both: see [`EscalationStep`]); security breaches
///   page the security team at once and
///   escalate to the system administrator, then the business stakeholders, 15 min
///   apart; other critical alerts page the system administrator at once and escalate
///   to the development team, then the business stakeholders ("notify stakeholders"),
///   15 min apart, and re-page 30 min after an acknowledgement;
/// - deadlines: [`ResponseDeadlines::default`];
/// - inhibition: system-wide agent failure holds back multiple and per-agent failures;
///   multiple agent failures hold back per-agent ones;
/// - cascades: 2 agent failures within 5 min fire multiple agent failures (high), 3
///   fire system-wide agent failure (critical);
/// - retention: [`Retention::default`].
///
/// ```
/// use concord::alert::AlertConfig;
///
/// let config = AlertConfig::default();
/// assert!(config.validate().is_ok());
/// let json = serde_json::to_string(&config)?;
/// let back: AlertConfig = serde_json::from_str(&json)?;
/// assert_eq!(back, config);
///
/// let bad = AlertConfig::default().with_receivers(["pager"]);
/// assert!(bad.validate().is_err()); // the routes name receivers it no longer declares
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    receivers: Vec<String>,
    route: Route,
    deadlines: ResponseDeadlines,
    inhibit: Vec<InhibitRule>,
    cascades: Vec<CascadeRule>,
    retention: Retention,
}

impl Default for AlertConfig {
    fn default() -> Self {
        let m = |text: &str| -> Matcher {
            text.parse()
                .unwrap_or_else(|e| unreachable!("built-in matcher {text:?}: {e}"))
        };
        let min = |n: u64| Duration::from_secs(60 * n);
        let security = Route::new()
            .with_matcher(m(&format!("alertname={}", names::SECURITY_BREACH)))
            .with_receiver("security_team")
            .with_group_wait(Duration::ZERO)
            .with_ack_timeout(min(30))
            .with_escalation(vec![
                EscalationStep::new("system_administrator", min(15)),
                EscalationStep::new("business_stakeholders", min(15)),
            ]);
        let critical = Route::new()
            .with_matcher(m("severity=critical"))
            .with_receiver("system_administrator")
            .with_group_wait(Duration::ZERO)
            .with_ack_timeout(min(30))
            .with_escalation(vec![
                EscalationStep::new("development_team", min(15)),
                EscalationStep::new("business_stakeholders", min(15)),
            ]);
        let route = Route::new()
            .with_receiver("system_administrator")
            .with_group_by(["alertname"])
            .with_group_wait(ROOT_GROUP_WAIT)
            .with_ack_timeout(ROOT_ACK_TIMEOUT)
            .with_escalation(vec![EscalationStep::new("development_team", min(30))])
            .with_route(security)
            .with_route(critical);
        let name_is = |n: &str| m(&format!("alertname={n}"));
        AlertConfig {
            receivers: DEFAULT_RECEIVERS.iter().map(|r| (*r).to_owned()).collect(),
            route,
            deadlines: ResponseDeadlines::default(),
            inhibit: vec![
                InhibitRule::new(
                    vec![name_is(names::SYSTEM_WIDE_AGENT_FAILURE)],
                    vec![m(&format!(
                        "alertname=~{}|{}",
                        names::AGENT_FAILURE,
                        names::MULTIPLE_AGENT_FAILURES
                    ))],
                ),
                InhibitRule::new(
                    vec![name_is(names::MULTIPLE_AGENT_FAILURES)],
                    vec![name_is(names::AGENT_FAILURE)],
                ),
            ],
            cascades: vec![
                CascadeRule::new(
                    vec![name_is(names::AGENT_FAILURE)],
                    2,
                    min(5),
                    AlertTemplate::new(
                        names::MULTIPLE_AGENT_FAILURES,
                        Severity::High,
                        "several agents failed within minutes of each other",
                    ),
                ),
                CascadeRule::new(
                    vec![name_is(names::AGENT_FAILURE)],
                    3,
                    min(5),
                    AlertTemplate::new(
                        names::SYSTEM_WIDE_AGENT_FAILURE,
                        Severity::Critical,
                        "cascade failure: agents are failing together; activate safe mode",
                    ),
                ),
            ],
            retention: Retention::default(),
        }
    }
}

impl AlertConfig {
    /// Sets the receivers (replacing them).
    pub fn with_receivers<S: Into<String>>(
        mut self,
        receivers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.receivers = receivers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the root route.
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    /// Sets the response deadlines.
    pub fn with_deadlines(mut self, deadlines: ResponseDeadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// Sets the inhibition rules (replacing them).
    pub fn with_inhibit_rules(mut self, rules: Vec<InhibitRule>) -> Self {
        self.inhibit = rules;
        self
    }

    /// Sets the cascade rules (replacing them).
    pub fn with_cascades(mut self, rules: Vec<CascadeRule>) -> Self {
        self.cascades = rules;
        self
    }

    /// Sets the history retention.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The receivers.
    pub fn receivers(&self) -> &[String] {
        &self.receivers
    }

    /// The root route.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The response deadlines.
    pub fn deadlines(&self) -> &ResponseDeadlines {
        &self.deadlines
    }

    /// The inhibition rules.
    pub fn inhibit_rules(&self) -> &[InhibitRule] {
        &self.inhibit
    }

    /// The cascade rules.
    pub fn cascades(&self) -> &[CascadeRule] {
        &self.cascades
    }

    /// The history retention.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Checks the configuration: receivers named and declared once; the root route
    /// with a receiver and no matchers; routes nested at most [`MAX_ROUTE_DEPTH`]
    /// deep (the tree is walked no deeper); every route's and escalation step's receiver
    /// declared; acknowledgement timeouts, escalation delays, cascade windows and the
    /// history's age longer than zero; label names valid; deadlines in order; rules
    /// with matchers on both sides; thresholds and the history's size at least 1.
    /// (Matchers were checked when they were made.)
    ///
    /// # Errors
    /// The first problem found, as an [`AlertError`] naming the offending value and
    /// where it is (`route.routes[1].escalation[0]`, `cascades[0].window`, ...).
    pub fn validate(&self) -> Result<(), AlertError> {
        self.compile().map(drop)
    }

    /// Validates, and flattens the route tree into the form the manager routes with.
    pub(crate) fn compile(&self) -> Result<Router, AlertError> {
        let mut declared = BTreeMap::new();
        for r in &self.receivers {
            check_alert_name("receiver", r)?;
            if declared.insert(r.as_str(), Arc::from(r.as_str())).is_some() {
                return Err(AlertError::DuplicateReceiver {
                    receiver: r.clone(),
                });
            }
        }
        self.deadlines.validate()?;
        for severity in Severity::ALL {
            let deadline = self.deadlines.get(severity);
            at_most_a_year(|| format!("deadlines.{severity}"), deadline)?;
        }
        let router = Router::compile(&self.route, &declared)?;
        for (i, rule) in self.inhibit.iter().enumerate() {
            let at = format!("inhibit[{i}]");
            if rule.source.is_empty() || rule.target.is_empty() {
                return Err(AlertError::InvalidRule {
                    rule: at,
                    reason: "an inhibition rule needs source and target matchers",
                });
            }
            rule.equal.iter().try_for_each(|l| check_label_name(l))?;
        }
        for (i, rule) in self.cascades.iter().enumerate() {
            let at = format!("cascades[{i}]");
            if rule.counts.is_empty() {
                return Err(AlertError::InvalidRule {
                    rule: at,
                    reason: "a cascade rule needs matchers for the alerts it counts",
                });
            }
            if rule.threshold == 0 {
                return Err(AlertError::TooSmall {
                    field: format!("{at}.threshold"),
                    value: 0,
                    min: 1,
                });
            }
            if rule.window.is_zero() {
                return Err(AlertError::ZeroDuration {
                    field: format!("{at}.window"),
                });
            }
            at_most_a_year(|| format!("{at}.window"), rule.window)?;
            let fired = rule.fires.alert(Timestamp::EPOCH);
            fired.validate()?;
            if all_match(&rule.counts, &fired) {
                return Err(AlertError::InvalidRule {
                    rule: at,
                    reason: "the alert it fires matches the alerts it counts",
                });
            }
        }
        if self.retention.max_entries == 0 {
            return Err(AlertError::TooSmall {
                field: "retention.max_entries".to_owned(),
                value: 0,
                min: 1,
            });
        }
        if self.retention.max_age.is_zero() {
            return Err(AlertError::ZeroDuration {
                field: "retention.max_age".to_owned(),
            });
        }
        Ok(router)
    }
}

/// A route with its inherited settings filled in. What a route inherits is shared with
/// the route that set it, not copied: a chain or a `group_by` list set once near the
/// root and inherited by many routes is held once, so the compiled tree grows with the
/// configuration's size, not with its size times its fan-out.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its parent's index (none for the root) and its place among the parent's
    /// children: what its path (`route.routes[1]`, ...) is written from, for error
    /// messages and group keys. Kept instead of the path itself, whose length grows
    /// with the depth.
    pub(crate) parent: Option<usize>,
    pub(crate) slot: usize,
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) children: Vec<usize>,
    pub(crate) receiver: Arc<str>,
    pub(crate) group_by: Arc<[String]>,
    pub(crate) group_wait: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) escalation: Arc<[EscalationStep]>,
}

impl Node {
    /// Who is paged at escalation `level`: the route's receiver at 0, then the chain's.
    pub(crate) fn receiver_at(&self, level: u32) -> Option<&str> {
        match level {
            0 => Some(&self.receiver),
            l => self
                .escalation
                .get(l as usize - 1)
                .map(EscalationStep::receiver),
        }
    }
}

/// The route tree flattened in preorder (the root at 0), each node with its inherited
/// settings filled in: routing walks indices, with no recursion.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    pub(crate) nodes: Vec<Node>,
}

impl Router {
    /// Flattens and checks the tree rooted at `root`, iteratively, and no deeper than
    /// [`MAX_ROUTE_DEPTH`]. `declared` maps each declared receiver to the one copy of
    /// its name that every route paging it shares.
    fn compile(root: &Route, declared: &BTreeMap<&str, Arc<str>>) -> Result<Router, AlertError> {
        if root.receiver.is_none() {
            return Err(AlertError::MissingReceiver {
                route: "route".to_owned(),
            });
        }
        if !root.matchers.is_empty() {
            return Err(AlertError::InvalidRule {
                rule: "route".to_owned(),
                reason: "the root route takes every alert: it has no matchers",
            });
        }
        let mut nodes: Vec<Node> = Vec::new();
        // (route, its parent's index, its place among the parent's children, its depth)
        let mut stack: Vec<(&Route, Option<usize>, usize, usize)> = vec![(root, None, 0, 0)];
        while let Some((route, parent, slot, depth)) = stack.pop() {
            // Paths are written only for errors, from the parent links.
            let path = |nodes: &[Node]| path_of(nodes, parent, slot);
            if depth > MAX_ROUTE_DEPTH {
                // Its start names the branch; the depth says the rest.
                let mut route = path(&nodes);
                if route.len() > 64 {
                    route.truncate(64); // the path is ASCII
                    route.push('…');
                }
                return Err(AlertError::RouteTooDeep {
                    route,
                    depth,
                    max: MAX_ROUTE_DEPTH,
                });
            }
            let inherited = parent.map(|p| &nodes[p]);
            let receiver = match (&route.receiver, inherited) {
                (Some(r), _) => match declared.get(r.as_str()) {
                    Some(r) => Arc::clone(r),
                    None => {
                        return Err(AlertError::UnknownReceiver {
                            route: path(&nodes),
                            receiver: shorten(r),
                        });
                    }
                },
                (None, Some(p)) => Arc::clone(&p.receiver),
                (None, None) => {
                    return Err(AlertError::MissingReceiver {
                        route: path(&nodes),
                    });
                }
            };
            // A setting is checked where it is set; those inherited were checked there.
            let group_by: Arc<[String]> = match (&route.group_by, inherited) {
                (Some(g), _) => {
                    g.iter().try_for_each(|l| check_label_name(l))?;
                    g.as_slice().into()
                }
                (None, Some(p)) => Arc::clone(&p.group_by),
                (None, None) => Arc::new([names::ALERTNAME.to_owned()]),
            };
            let group_wait = route
                .group_wait
                .or(inherited.map(|p| p.group_wait))
                .unwrap_or(ROOT_GROUP_WAIT);
            let ack_timeout = route
                .ack_timeout
                .or(inherited.map(|p| p.ack_timeout))
                .unwrap_or(ROOT_ACK_TIMEOUT);
            if ack_timeout.is_zero() {
                return Err(AlertError::ZeroDuration {
                    field: format!("{}.ack_timeout", path(&nodes)),
                });
            }
            at_most_a_year(|| format!("{}.ack_timeout", path(&nodes)), ack_timeout)?;
            at_most_a_year(|| format!("{}.group_wait", path(&nodes)), group_wait)?;
            let escalation: Arc<[EscalationStep]> = match (&route.escalation, inherited) {
                (Some(e), _) => {
                    for (i, step) in e.iter().enumerate() {
                        if !declared.contains_key(step.receiver.as_str()) {
                            return Err(AlertError::UnknownReceiver {
                                route: format!("{}.escalation[{i}]", path(&nodes)),
                                receiver: shorten(&step.receiver),
                            });
                        }
                        if step.after.is_zero() {
                            return Err(AlertError::ZeroDuration {
                                field: format!("{}.escalation[{i}].after", path(&nodes)),
                            });
                        }
                        at_most_a_year(
                            || format!("{}.escalation[{i}].after", path(&nodes)),
                            step.after,
                        )?;
                    }
                    e.as_slice().into()
                }
                (None, Some(p)) => Arc::clone(&p.escalation),
                (None, None) => Arc::new([]),
            };
            let index = nodes.len();
            if let Some(p) = parent {
                nodes[p].children.push(index);
            }
            // Children pushed in reverse, so they are numbered (and tried) in order.
            for (i, child) in route.routes.iter().enumerate().rev() {
                stack.push((child, Some(index), i, depth + 1));
            }
            nodes.push(Node {
                parent,
                slot,
                matchers: route.matchers.clone(),
                children: Vec::new(),
                receiver,
                group_by,
                group_wait,
                ack_timeout,
                escalation,
            });
        }
        Ok(Router { nodes })
    }

    /// The path of node `index`: `route`, `route.routes[1]`, ...
    pub(crate) fn path(&self, index: usize) -> String {
        let node = &self.nodes[index];
        path_of(&self.nodes, node.parent, node.slot)
    }

    /// The index of the node that routes `alert`.
    pub(crate) fn route(&self, alert: &Alert) -> usize {
        let mut at = 0;
        while let Some(&child) = self.nodes[at]
            .children
            .iter()
            .find(|&&c| all_match(&self.nodes[c].matchers, alert))
        {
            at = child;
        }
        at
    }

    /// The group `alert` joins on node `route`: the route's path and the values of its
    /// `group_by` labels.
    pub(crate) fn group_key(&self, route: usize, alert: &Alert) -> GroupKey {
        let node = &self.nodes[route];
        let mut key = self.path(route);
        // Writing to a String cannot fail.
        let _ = write_labels(
            &mut key,
            node.group_by.iter().map(|l| (l.as_str(), alert.value(l))),
        );
        GroupKey::new(key)
    }
}

/// The path of the route at place `slot` under node `parent` (the root for none),
/// written from the parent links.
fn path_of(nodes: &[Node], parent: Option<usize>, slot: usize) -> String {
    let mut slots = Vec::new();
    let mut at = parent.map(|p| (p, slot));
    while let Some((p, slot)) = at {
        slots.push(slot);
        at = nodes[p].parent.map(|pp| (pp, nodes[p].slot));
    }
    let mut path = "route".to_owned();
    for slot in slots.iter().rev() {
        // Writing to a String cannot fail.
        let _ = write!(path, ".routes[{slot}]");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, severity: Severity) -> Alert {
        Alert::new(name, severity, Timestamp::EPOCH)
    }

    #[test]
    fn the_default_tree_routes_by_name_then_severity() {
        let router = AlertConfig::default().compile().unwrap();
        let receiver = |a: &Alert| router.nodes[router.route(a)].receiver.to_string();
        assert_eq!(
            receiver(&alert(names::SECURITY_BREACH, Severity::Critical)),
            "security_team"
        );
        assert_eq!(
            receiver(&alert(names::MEMORY_CORRUPTION, Severity::Critical)),
            "system_administrator"
        );
        let medium = router.route(&alert(names::AGENT_FAILURE, Severity::Medium));
        assert_eq!(medium, 0);
        assert_eq!(router.nodes[medium].group_wait, ROOT_GROUP_WAIT);
        let critical = router.route(&alert(names::MEMORY_CORRUPTION, Severity::Critical));
        assert_eq!(router.path(critical), "route.routes[1]");
        assert_eq!(*router.nodes[critical].group_by, ["alertname"]); // inherited
        assert_eq!(
            router
                .group_key(critical, &alert("x", Severity::Critical))
                .as_str(),
            "route.routes[1]{alertname=\"x\"}"
        );
    }

    #[test]
    fn children_are_numbered_and_tried_in_order() {
        let m = |t: &str| t.parse::<Matcher>().unwrap();
        let route = Route::new()
            .with_receiver("a")
            .with_route(
                Route::new()
                    .with_matcher(m("team=x"))
                    .with_route(Route::new().with_matcher(m("env=prod")).with_receiver("b")),
            )
            .with_route(Route::new().with_matcher(m("team=x")).with_receiver("c"));
        let config = AlertConfig::default()
            .with_receivers(["a", "b", "c"])
            .with_route(route);
        let router = config.compile().unwrap();
        let paths: Vec<String> = (0..router.nodes.len()).map(|i| router.path(i)).collect();
        assert_eq!(
            paths,
            [
                "route",
                "route.routes[0]",
                "route.routes[0].routes[0]",
                "route.routes[1]"
            ]
        );
        let prod = alert("a", Severity::Low)
            .with_label("team", "x")
            .with_label("env", "prod");
        assert_eq!(&*router.nodes[router.route(&prod)].receiver, "b");
        // The first matching child wins, even when its own children do not match.
        let dev = alert("a", Severity::Low).with_label("team", "x");
        assert_eq!(&*router.nodes[router.route(&dev)].receiver, "a");
    }

    /// A route `depth` levels below a root that pages `system_administrator`.
    fn chain(depth: usize) -> Route {
        let mut route = Route::new();
        for _ in 1..depth {
            route = Route::new().with_route(route);
        }
        Route::new()
            .with_receiver("system_administrator")
            .with_route(route)
    }

    /// Guards against compiling a tree of any depth: one 100,000 deep was walked
    /// whole, with a path per route as long as its depth (quadratic memory), and a
    /// manager holding it could be cloned or printed only by recursing that deep.
    #[test]
    fn a_route_deeper_than_the_limit_is_refused_naming_where() {
        let config = AlertConfig::default().with_route(chain(MAX_ROUTE_DEPTH));
        let router = config.compile().unwrap();
        let deepest = router.nodes.len() - 1;
        assert_eq!(
            router.path(deepest),
            format!("route{}", ".routes[0]".repeat(MAX_ROUTE_DEPTH))
        );

        for depth in [MAX_ROUTE_DEPTH + 1, 100_000] {
            let config = AlertConfig::default().with_route(chain(depth));
            let err = config.validate().unwrap_err();
            let AlertError::RouteTooDeep { route, depth, max } = &err else {
                panic!("{err}");
            };
            assert_eq!((*depth, *max), (MAX_ROUTE_DEPTH + 1, MAX_ROUTE_DEPTH));
            assert!(route.starts_with("route.routes[0].routes[0]"), "{route}");
            assert!(route.chars().count() <= 65, "{route}");
            assert!(
                err.to_string().contains("65 routes below the root"),
                "{err}"
            );
        }
    }

    /// Guards against copying inherited settings into every route: a 4,000-step
    /// chain inherited by 4,000 routes was 16 million steps (855 MB from 187 KB).
    #[test]
    fn inherited_settings_are_shared_not_copied() {
        let steps = vec![EscalationStep::new("development_team", Duration::from_secs(1)); 1000];
        let mut root = Route::new()
            .with_receiver("system_administrator")
            .with_group_by(["alertname", "agent"])
            .with_escalation(steps);
        for _ in 0..1000 {
            root = root.with_route(Route::new().with_route(Route::new()));
        }
        let router = AlertConfig::default().with_route(root).compile().unwrap();
        assert_eq!(router.nodes.len(), 2001);
        let root = &router.nodes[0];
        for node in &router.nodes {
            assert!(Arc::ptr_eq(&node.escalation, &root.escalation));
            assert!(Arc::ptr_eq(&node.group_by, &root.group_by));
            assert!(Arc::ptr_eq(&node.receiver, &root.receiver));
        }
        assert_eq!(router.path(2000), "route.routes[999].routes[0]");
    }

    /// A route's own settings are checked where it sets them, and names that do not
    /// fit an error are cut.
    #[test]
    fn own_settings_are_checked_and_long_receivers_cut() {
        let long = "p".repeat(1 << 20);
        let config = AlertConfig::default().with_route(
            Route::new()
                .with_receiver("system_administrator")
                .with_route(Route::new().with_route(Route::new().with_receiver(long.clone())))
                .with_route(
                    Route::new()
                        .with_escalation(vec![EscalationStep::new(long, Duration::from_secs(1))]),
                ),
        );
        let err = config.validate().unwrap_err();
        assert_eq!(
            err,
            AlertError::UnknownReceiver {
                route: "route.routes[0].routes[0]".to_owned(),
                receiver: "p".repeat(64),
            }
        );
        let mut routes = config.route().routes().to_vec();
        routes.remove(0);
        let mut root = Route::new().with_receiver("system_administrator");
        for r in routes {
            root = root.with_route(r);
        }
        let err = AlertConfig::default()
            .with_route(root)
            .validate()
            .unwrap_err();
        assert_eq!(
            err,
            AlertError::UnknownReceiver {
                route: "route.routes[0].escalation[0]".to_owned(),
                receiver: "p".repeat(64),
            }
        );
    }

    /// A wait no one will see end is refused, naming where it is set; a year is
    /// allowed. Also through JSON, where a host writes milliseconds.
    #[test]
    fn waits_longer_than_a_year_are_refused_naming_where() {
        let year = MAX_ALERT_WAIT;
        let over = year + Duration::from_millis(1);
        let routed =
            |r: Route| AlertConfig::default().with_route(r.with_receiver("system_administrator"));
        let cases = [
            (
                routed(Route::new().with_group_wait(over)),
                "route.group_wait",
            ),
            (
                routed(Route::new().with_ack_timeout(over)),
                "route.ack_timeout",
            ),
            (
                routed(
                    Route::new().with_route(
                        Route::new()
                            .with_escalation(vec![EscalationStep::new("development_team", over)]),
                    ),
                ),
                "route.routes[0].escalation[0].after",
            ),
            (
                AlertConfig::default().with_deadlines(
                    // Low is the last: longer than medium's is in order.
                    ResponseDeadlines::default().with(Severity::Low, over),
                ),
                "deadlines.low",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(
                config.validate(),
                Err(AlertError::TooLong {
                    field: field.to_owned(),
                    value: over,
                    max: year,
                })
            );
        }
        assert!(
            routed(Route::new().with_group_wait(year))
                .validate()
                .is_ok()
        );
        let mut json = serde_json::to_value(AlertConfig::default()).unwrap();
        json["route"]["group_wait"] = serde_json::json!(u64::MAX);
        let config: AlertConfig = serde_json::from_value(json).unwrap();
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().starts_with("`route.group_wait` is "),
            "{err}"
        );
    }

    /// A matcher on a severity no alert has is refused, in every form it is made.
    #[test]
    fn a_matcher_on_a_severity_no_alert_has_is_refused() {
        for text in ["severity=urgent", "severity!=", "severity=~high|urgent"] {
            let err = text.parse::<Matcher>().unwrap_err();
            assert!(
                matches!(&err, AlertError::BadMatcher { matcher, .. } if matcher.contains("severity")),
                "{text}: {err}"
            );
        }
        assert!(Matcher::equal(names::SEVERITY, "Critical").is_err());
        for text in [
            "severity=critical",
            "severity=~high|low",
            "severity!=medium",
        ] {
            assert!(text.parse::<Matcher>().is_ok(), "{text}");
        }
    }
}
