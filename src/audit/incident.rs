//! Incident records: [`Incidents`] opens them from the audit log's emergencies and
//! critical alerts and draws their timelines from it; [`Incident::to_markdown`]
//! renders one with its [`PostIncidentReview`].

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AuditEntry, AuditError, AuditLog, SealedEntry};
use crate::alert::{Fingerprint, Severity};
use crate::clock::Timestamp;
use crate::coordinator::Decider;
use crate::digest::Digest;
use crate::id::AgentId;
use crate::policy::SystemMode;
use crate::serde_util::duration_ms;
use crate::text::{markdown_block, markdown_line};

/// Identifies an incident: the sequence number of the audit entry that opened it, so
/// that an incident's id says where in the log it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(u64);

impl IncidentId {
    /// The incident opened by the audit entry `seq`.
    pub const fn new(seq: u64) -> Self {
        IncidentId(seq)
    }

    /// The sequence number of the entry that opened it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "incident#{}", self.0)
    }
}

/// What opened an incident (or joined one already open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// An emergency procedure: [`Trigger::SAFE_MODE`] (the system entered safe mode)
    /// or [`Trigger::QUARANTINE`] (an agent was quarantined).
    Emergency {
        /// Its name.
        name: String,
    },
    /// A critical alert paged (or escalated).
    Alert {
        /// The alert's fingerprint.
        fingerprint: Fingerprint,
        /// Its name.
        name: String,
    },
    /// Someone opened it by hand.
    Manual {
        /// Who.
        by: Decider,
    },
}

impl Trigger {
    /// The emergency of entering safe mode.
    pub const SAFE_MODE: &'static str = "safe_mode";
    /// The emergency of quarantining an agent.
    pub const QUARANTINE: &'static str = "quarantine";

    fn emergency(name: &str) -> Self {
        Trigger::Emergency {
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Emergency { name } => write!(f, "emergency `{name}`"),
            Trigger::Alert { fingerprint, name } => write!(f, "alert `{name}` ({fingerprint})"),
            Trigger::Manual { by } => write!(f, "the {by}"),
        }
    }
}

/// One audit entry on an incident's timeline: where it is in the log, and what it
/// says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimelineItem {
    /// Its sequence number in the audit log.
    pub seq: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// Its hash in the log: what ties the record to the verified chain.
    pub hash: Digest,
    /// The entry.
    pub entry: AuditEntry,
}

impl TimelineItem {
    fn of(e: &SealedEntry) -> Self {
        TimelineItem {
            seq: e.seq,
            at: e.at,
            hash: e.hash,
            entry: e.entry.clone(),
        }
    }
}

/// The post-incident review: what caused it, what it did, what is done about it, and
/// what was learned.
///
/// ```
/// use concord::audit::PostIncidentReview;
///
/// let review = PostIncidentReview::new(
///     "a bad configuration pushed to three agents at once",
///     "no deployments for 40 minutes",
/// )
/// .with_action("stage configuration changes one agent at a time")
/// .with_lesson("the cascade rule caught it within a minute");
/// assert_eq!(review.actions().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PostIncidentReview {
    cause: String,
    impact: String,
    actions: Vec<String>,
    lessons_learned: Vec<String>,
}

impl PostIncidentReview {
    /// A review naming the `cause` and the `impact`; actions and lessons to follow.
    pub fn new(cause: impl Into<String>, impact: impl Into<String>) -> Self {
        PostIncidentReview {
            cause: cause.into(),
            impact: impact.into(),
            ..PostIncidentReview::default()
        }
    }

    /// Adds an action taken or to take.
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.actions.push(action.into());
        self
    }

    /// Adds a lesson learned.
    pub fn with_lesson(mut self, lesson: impl Into<String>) -> Self {
        self.lessons_learned.push(lesson.into());
        self
    }

    /// The cause.
    pub fn cause(&self) -> &str {
        &self.cause
    }

    /// The impact.
    pub fn impact(&self) -> &str {
        &self.impact
    }

    /// The actions.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    /// The lessons learned.
    pub fn lessons_learned(&self) -> &[String] {
        &self.lessons_learned
    }
}

/// One incident: what opened it, its timeline drawn from the audit log, how it ended,
/// and its review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    id: IncidentId,
    title: String,
    severity: Severity,
    opened_at: Timestamp,
    opened_by: Trigger,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    joined_by: Vec<Trigger>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    agents: Vec<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed: Option<Closure>,
    timeline: Vec<TimelineItem>,
    #[serde(default)]
    omitted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<PostIncidentReview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Closure {
    at: Timestamp,
    by: Decider,
    reason: String,
}

impl Incident {
    /// Its id: the sequence number of the entry that opened it.
    pub fn id(&self) -> IncidentId {
        self.id
    }

    /// A one-line title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// How severe: the most severe of what opened and joined it.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// When it was opened.
    pub fn opened_at(&self) -> Timestamp {
        self.opened_at
    }

    /// What opened it.
    pub fn opened_by(&self) -> &Trigger {
        &self.opened_by
    }

    /// The emergencies and alerts that joined it while it was open, in order.
    pub fn joined_by(&self) -> &[Trigger] {
        &self.joined_by
    }

    /// The agents involved, sorted.
    pub fn agents(&self) -> &[AgentId] {
        &self.agents
    }

    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// When it was closed.
    pub fn closed_at(&self) -> Option<Timestamp> {
        self.closed.as_ref().map(|c| c.at)
    }

    /// Who closed it, and why.
    pub fn closed_by(&self) -> Option<(Decider, &str)> {
        self.closed.as_ref().map(|c| (c.by, c.reason.as_str()))
    }

    /// Its timeline: the audit entries that bear on it, in log order.
    pub fn timeline(&self) -> &[TimelineItem] {
        &self.timeline
    }

    /// How many entries were left off the timeline once it was full
    /// ([`IncidentConfig::with_max_timeline`]).
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// Its post-incident review, once written.
    pub fn review(&self) -> Option<&PostIncidentReview> {
        self.review.as_ref()
    }

    /// The incident record as Markdown: a summary, the timeline as a table, and the
    /// post-incident review (cause, impact, actions, lessons learned). Text from the
    /// entries is escaped for a table cell and for HTML, so an agent's or a task's
    /// words cannot break the page; the review's text is the team's own Markdown,
    /// escaped for HTML only (its actions and lessons each on one line). Control and
    /// invisible characters are shown as spaces everywhere (the review's line breaks
    /// are kept), so that a right-to-left override cannot show the rest of a line
    /// reversed.
    ///
    /// ```
    /// use concord::audit::{AuditConfig, AuditEntry, AuditLog, IncidentConfig, Incidents, PostIncidentReview};
    /// use concord::coordinator::Decider;
    /// use concord::{SystemMode, Timestamp};
    ///
    /// let mut log = AuditLog::new(AuditConfig::default());
    /// let mut incidents = Incidents::new(IncidentConfig::default());
    /// let t = Timestamp::from_secs(1_700_000_000);
    /// let entry = AuditEntry::mode_change(SystemMode::Normal, SystemMode::SafeMode, "three agents failed");
    /// let id = incidents.record(&mut log, entry, t)?.expect("safe mode opens an incident");
    /// incidents.review(&mut log, id, PostIncidentReview::new("a bad push", "40 minutes"), t)?;
    /// incidents.close(&mut log, id, Decider::Human, "agents restored", t)?;
    /// let md = incidents.get(id).unwrap().to_markdown();
    /// assert!(md.starts_with("# incident#1: Safe mode entered"));
    /// assert!(md.contains("### Cause\n\na bad push"));
    /// # Ok::<(), concord::audit::AuditError>(())
    /// ```
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "# {}: {}\n", self.id, markdown_line(&self.title))?;
        writeln!(out, "- **Severity:** {}", self.severity)?;
        match &self.closed {
            None => writeln!(out, "- **Status:** open")?,
            Some(c) => {
                let took = crate::health::human(c.at.duration_since(self.opened_at));
                writeln!(
                    out,
                    "- **Status:** closed at {} by the {} after {took}{}",
                    c.at,
                    c.by,
                    if c.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", markdown_line(&c.reason))
                    }
                )?;
            }
        }
        writeln!(
            out,
            "- **Opened:** {} by {} (audit entry #{})",
            self.opened_at,
            markdown_line(&self.opened_by.to_string()),
            self.id.get()
        )?;
        if !self.joined_by.is_empty() {
            let joined: Vec<String> = self
                .joined_by
                .iter()
                .map(|t| markdown_line(&t.to_string()))
                .collect();
            writeln!(out, "- **Also raised by:** {}", joined.join(", "))?;
        }
        if !self.agents.is_empty() {
            let agents: Vec<String> = self.agents.iter().map(ToString::to_string).collect();
            writeln!(out, "- **Agents:** {}", agents.join(", "))?;
        }
        out.push_str("\n## Timeline\n\n| time | entry | what |\n|---|---|---|\n");
        for item in &self.timeline {
            writeln!(
                out,
                "| {} | #{} | {} |",
                item.at,
                item.seq,
                markdown_line(&item.entry.to_string())
            )?;
        }
        if self.omitted > 0 {
            writeln!(
                out,
                "\n_{} more entries are in the audit log but not on this timeline._",
                self.omitted
            )?;
        }
        out.push_str("\n## Post-incident review\n\n");
        let Some(r) = &self.review else {
            out.push_str("_Not written yet._\n");
            return Ok(());
        };
        writeln!(out, "### Cause\n\n{}\n", markdown_block(&r.cause))?;
        writeln!(out, "### Impact\n\n{}\n", markdown_block(&r.impact))?;
        for (heading, items) in [
            ("Actions", &r.actions),
            ("Lessons learned", &r.lessons_learned),
        ] {
            writeln!(out, "### {heading}\n")?;
            if items.is_empty() {
                out.push_str("_None recorded._\n");
            }
            for item in items {
                writeln!(out, "- {}", markdown_line(item))?;
            }
            out.push('\n');
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        Ok(())
    }

    fn push(&mut self, item: TimelineItem, max: usize) {
        // The incident's own entries (notes, review, closing) are kept past the cap:
        // people write them, at people's pace.
        if self.timeline.len() < max || item.entry.incident() == Some(self.id) {
            self.timeline.push(item);
        } else {
            // A count that only grows: saturating, a restored snapshot that claims
            // `u64::MAX` left off cannot make the next entry panic.
            self.omitted = self.omitted.saturating_add(1);
        }
    }

    /// Cuts the timeline to what [`push`](Self::push) would have kept under `max`,
    /// counting the rest in `omitted`. A timeline `push` built under `max` is left
    /// as it is.
    fn trim_timeline(&mut self, max: usize) {
        if self.timeline.len() <= max {
            return;
        }
        let items = std::mem::take(&mut self.timeline);
        for item in items {
            self.push(item, max);
        }
    }

    fn names_any(&self, agents: &[AgentId]) -> bool {
        agents.iter().any(|a| self.agents.binary_search(a).is_ok())
    }

    fn add_agents(&mut self, agents: &[AgentId]) {
        for a in agents {
            if let Err(at) = self.agents.binary_search(a) {
                self.agents.insert(at, *a);
            }
        }
    }

    /// Whether `entry` bears on this incident: it is about it, it is notable (see
    /// [`AuditEntry::is_notable`]), or it names one of its agents.
    fn concerns(&self, entry: &AuditEntry) -> bool {
        match entry.incident() {
            Some(id) => id == self.id,
            None => entry.is_notable() || self.names_any(&entry.agents()),
        }
    }
}

/// How [`Incidents`] groups triggers and draws timelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentConfig {
    #[serde(with = "duration_ms")]
    join_window: Duration,
    #[serde(with = "duration_ms")]
    lookback: Duration,
    lookback_entries: usize,
    max_timeline: usize,
    closed_history: usize,
}

impl Default for IncidentConfig {
    /// Triggers join an incident opened up to an hour before; a new incident's
    /// timeline starts with up to 15 minutes of the entries before it (from the last
    /// 256 seen); a timeline holds up to 1,000 entries; the last 100 closed incidents
    /// are kept.
    fn default() -> Self {
        IncidentConfig {
            join_window: Duration::from_secs(3600),
            lookback: Duration::from_secs(15 * 60),
            lookback_entries: 256,
            max_timeline: 1000,
            closed_history: 100,
        }
    }
}

impl IncidentConfig {
    /// An emergency or critical alert joins the latest incident still open if it was
    /// opened at most `window` before (zero: each opens its own, unless it repeats
    /// what opened an open incident).
    pub fn with_join_window(mut self, window: Duration) -> Self {
        self.join_window = window;
        self
    }

    /// A new incident's timeline starts with the entries of the `lookback` before it
    /// that bear on it (what led up to it).
    pub fn with_lookback(mut self, lookback: Duration) -> Self {
        self.lookback = lookback;
        self
    }

    /// How many recent entries are kept for the lookback.
    pub fn with_lookback_entries(mut self, n: usize) -> Self {
        self.lookback_entries = n;
        self
    }

    /// How many entries a timeline holds; past it, entries are counted
    /// ([`Incident::omitted`]) but not kept, except the incident's own.
    pub fn with_max_timeline(mut self, n: usize) -> Self {
        self.max_timeline = n;
        self
    }

    /// How many closed incidents are kept (the oldest forgotten first).
    pub fn with_closed_history(mut self, n: usize) -> Self {
        self.closed_history = n;
        self
    }

    /// The join window.
    pub fn join_window(&self) -> Duration {
        self.join_window
    }

    /// The lookback.
    pub fn lookback(&self) -> Duration {
        self.lookback
    }

    /// How many recent entries are kept for the lookback.
    pub fn lookback_entries(&self) -> usize {
        self.lookback_entries
    }

    /// How many entries a timeline holds.
    pub fn max_timeline(&self) -> usize {
        self.max_timeline
    }

    /// How many closed incidents are kept.
    pub fn closed_history(&self) -> usize {
        self.closed_history
    }
}

/// What [`Incidents`] holds, as plain data: a host can store it beside its audit log
/// and [restore](Incidents::restore) it instead of replaying the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IncidentsSnapshot {
    /// The last audit entry seen.
    pub last_seq: u64,
    /// The open incidents, oldest first.
    pub open: Vec<Incident>,
    /// The closed incidents kept, oldest first.
    pub closed: Vec<Incident>,
    /// The recent entries kept for the lookback, oldest first.
    pub recent: Vec<SealedEntry>,
}

/// The incident tracker: a fold over the sealed audit log.
///
/// Feed it every sealed entry in order ([`observe`](Self::observe), or
/// [`record`](Self::record), which appends to the log and observes in one call), and
/// it keeps the incidents:
///
/// # Rules
/// - An emergency opens an incident: the system entering safe mode
///   ([`AuditEntry::ModeChange`] to [`SystemMode::SafeMode`], critical) or an agent
///   quarantined ([`AuditEntry::Quarantine`], high, naming the agent). So does a
///   critical alert paged, escalated or re-paged ([`AuditEntry::Alert`], naming the
///   agent in its `agent` label, if any), and a person with [`open`](Self::open)
///   ([`AuditEntry::IncidentOpened`]). The incident's id is the opening entry's
///   sequence number.
/// - An emergency or critical alert that repeats what opened (or joined) an incident
///   still open joins that incident; otherwise it joins the latest incident still open
///   if that was opened within the join window ([`IncidentConfig::with_join_window`]),
///   raising its severity and adding its agents; otherwise it opens a new one. (Safe
///   mode and the critical alert it raises are one incident, not two.) An incident
///   opened by hand is always a new one.
/// - A new incident's timeline starts with the entries of the lookback before it that
///   bear on it, then the opening entry. While it is open, every entry that bears on
///   it joins the timeline: every entry but assignments, refusals and alerts below
///   high severity ([`AuditEntry::is_notable`]), those too when they name one of its
///   agents, and the notes, review and closing that name it; but not an entry that
///   opened another incident (it was judged unrelated).
/// - [`close`](Self::close) ends it ([`AuditEntry::IncidentClosed`]);
///   [`review`](Self::review) and [`note`](Self::note) may follow, while it is kept.
///
/// Every change to an incident is an audit entry, so the incidents are a function of
/// the log: replaying the stored entries through a new tracker rebuilds them, and an
/// entry seen twice (a replayed tail that overlaps) changes nothing. For the same
/// reason the calls that append ([`record`](Self::record), [`open`](Self::open),
/// [`note`](Self::note), [`review`](Self::review), [`close`](Self::close)) refuse a
/// log whose head is behind the last entry the tracker has seen
/// ([`AuditError::LogBehind`]): its next entry would be one the tracker ignores.
///
/// # Complexity
/// `observe` is linear in the number of open incidents (a handful) and, when one
/// opens, in the lookback entries kept. Memory is bounded by the configuration: open
/// incidents' timelines, the closed incidents kept, the lookback entries.
///
/// ```
/// use concord::alert::{Alert, Severity};
/// use concord::audit::{AlertStage, AuditConfig, AuditEntry, AuditLog, IncidentConfig, Incidents};
/// use concord::{AgentId, Timestamp};
///
/// let mut log = AuditLog::new(AuditConfig::default());
/// let mut incidents = Incidents::new(IncidentConfig::default());
/// let t = Timestamp::from_secs(1_700_000_000);
/// let breach = Alert::new("security_breach", Severity::Critical, t).with_label("agent", "agent#4");
/// let paged = AuditEntry::Alert {
///     fingerprint: breach.fingerprint(),
///     name: breach.name().to_owned(),
///     severity: breach.severity(),
///     summary: "unexpected outbound traffic".to_owned(),
///     labels: breach.labels().clone(),
///     stage: AlertStage::Paged { receiver: "security_team".to_owned() },
/// };
/// let id = incidents.record(&mut log, paged, t)?.expect("a critical page opens one");
/// let incident = incidents.get(id).unwrap();
/// assert_eq!(incident.agents(), [AgentId::new(4)]);
/// assert_eq!(incident.severity(), Severity::Critical);
/// # Ok::<(), concord::audit::AuditError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Incidents {
    config: IncidentConfig,
    last_seq: u64,
    open: Vec<Incident>,
    closed: VecDeque<Incident>,
    recent: VecDeque<SealedEntry>,
}

/// An entry that opens an incident (or joins one): what opened it, its title, its
/// severity and its agents.
struct Opening {
    trigger: Trigger,
    title: String,
    severity: Severity,
    agents: Vec<AgentId>,
}

fn opening(entry: &AuditEntry) -> Option<Opening> {
    match entry {
        AuditEntry::ModeChange {
            to: SystemMode::SafeMode,
            ..
        } => Some(Opening {
            trigger: Trigger::emergency(Trigger::SAFE_MODE),
            title: "Safe mode entered".to_owned(),
            severity: Severity::Critical,
            agents: Vec::new(),
        }),
        AuditEntry::Quarantine { agent, .. } => Some(Opening {
            trigger: Trigger::emergency(Trigger::QUARANTINE),
            title: format!("{agent} quarantined"),
            severity: Severity::High,
            agents: vec![*agent],
        }),
        AuditEntry::Alert {
            fingerprint,
            name,
            severity: Severity::Critical,
            summary,
            stage,
            ..
        } if !matches!(stage, super::AlertStage::Resolved { .. }) => Some(Opening {
            trigger: Trigger::Alert {
                fingerprint: *fingerprint,
                name: name.clone(),
            },
            title: if summary.is_empty() {
                name.clone()
            } else {
                format!("{name}: {summary}")
            },
            severity: Severity::Critical,
            agents: entry.agents(),
        }),
        AuditEntry::IncidentOpened {
            title,
            severity,
            by,
            agents,
            ..
        } => Some(Opening {
            trigger: Trigger::Manual { by: *by },
            title: title.clone(),
            severity: *severity,
            agents: agents.clone(),
        }),
        _ => None,
    }
}

impl Incidents {
    /// A tracker with no incidents.
    pub fn new(config: IncidentConfig) -> Self {
        Incidents {
            config,
            last_seq: 0,
            open: Vec::new(),
            closed: VecDeque::new(),
            recent: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IncidentConfig {
        &self.config
    }

    /// Takes in the next sealed entry (see the type's rules) and returns the incident
    /// it opened, if it opened one. Entries at or before the last one seen are
    /// ignored, so a replayed tail that overlaps changes nothing.
    pub fn observe(&mut self, entry: &SealedEntry) -> Option<IncidentId> {
        if entry.seq <= self.last_seq {
            return None;
        }
        self.last_seq = entry.seq;
        let mut opened = None;
        // The incident the entry opened or joined already has it on its timeline.
        let mut handled = None;
        if let Some(o) = opening(&entry.entry) {
            match self.joinable(&o, entry.at) {
                Some(i) => {
                    let incident = &mut self.open[i];
                    tracing::info!(incident.id = %incident.id, audit.seq = entry.seq, "incident joined");
                    if o.trigger != incident.opened_by && !incident.joined_by.contains(&o.trigger) {
                        incident.joined_by.push(o.trigger);
                    }
                    incident.severity = incident.severity.max(o.severity);
                    incident.add_agents(&o.agents);
                    incident.push(TimelineItem::of(entry), self.config.max_timeline);
                    handled = Some(incident.id);
                }
                None => {
                    let id = self.open_incident(o, entry);
                    opened = Some(id);
                    handled = Some(id);
                }
            }
        }
        if let Some(id) = entry.entry.incident() {
            // A note, review or closing: on its incident's timeline, open or closed.
            let max = self.config.max_timeline;
            if let Some(incident) = self.get_mut(id) {
                incident.push(TimelineItem::of(entry), max);
            }
        } else if opened.is_none() {
            // An entry that opened an incident of its own was judged unrelated to the
            // others: it stays off their timelines.
            for incident in &mut self.open {
                if Some(incident.id) != handled && incident.concerns(&entry.entry) {
                    incident.push(TimelineItem::of(entry), self.config.max_timeline);
                }
            }
        }
        self.apply_incident_entry(entry);
        if self.config.lookback_entries > 0 {
            if self.recent.len() >= self.config.lookback_entries {
                self.recent.pop_front();
            }
            self.recent.push_back(entry.clone());
        }
        opened
    }

    /// The open incident an opening joins, if any (see the type's rules).
    fn joinable(&self, o: &Opening, now: Timestamp) -> Option<usize> {
        if matches!(o.trigger, Trigger::Manual { .. }) {
            return None;
        }
        let repeats = |i: &Incident| {
            (i.opened_by == o.trigger || i.joined_by.contains(&o.trigger))
                && o.agents.iter().all(|a| i.agents.binary_search(a).is_ok())
        };
        if let Some(i) = self.open.iter().rposition(repeats) {
            return Some(i);
        }
        let latest = self
            .open
            .iter()
            .enumerate()
            .max_by_key(|(_, i)| (i.opened_at, i.id))?;
        (now.duration_since(latest.1.opened_at) <= self.config.join_window
            && !self.config.join_window.is_zero())
        .then_some(latest.0)
    }

    fn open_incident(&mut self, o: Opening, entry: &SealedEntry) -> IncidentId {
        let id = IncidentId(entry.seq);
        tracing::info!(incident.id = %id, incident.severity = %o.severity, "incident opened");
        let mut incident = Incident {
            id,
            title: o.title,
            severity: o.severity,
            opened_at: entry.at,
            opened_by: o.trigger,
            joined_by: Vec::new(),
            agents: Vec::new(),
            closed: None,
            timeline: Vec::new(),
            omitted: 0,
            review: None,
        };
        incident.add_agents(&o.agents);
        let since = entry.at.saturating_sub(self.config.lookback);
        for before in &self.recent {
            if before.at >= since && incident.concerns(&before.entry) {
                incident.push(TimelineItem::of(before), self.config.max_timeline);
            }
        }
        incident.push(TimelineItem::of(entry), self.config.max_timeline);
        self.open.push(incident);
        id
    }

    /// Applies a review or a closing to the incident it names (already on its
    /// timeline). One that names an incident not kept changes nothing.
    fn apply_incident_entry(&mut self, entry: &SealedEntry) {
        match &entry.entry {
            AuditEntry::IncidentReview { incident, review } => {
                if let Some(i) = self.get_mut(*incident) {
                    i.review = Some(review.clone());
                }
            }
            AuditEntry::IncidentClosed {
                incident,
                by,
                reason,
            } => {
                let Some(at) = self.open.iter().position(|i| i.id == *incident) else {
                    return;
                };
                let mut closed = self.open.remove(at);
                tracing::info!(incident.id = %closed.id, "incident closed");
                closed.closed = Some(Closure {
                    at: entry.at,
                    by: *by,
                    reason: reason.clone(),
                });
                if self.config.closed_history > 0 {
                    if self.closed.len() >= self.config.closed_history {
                        self.closed.pop_front();
                    }
                    self.closed.push_back(closed);
                }
            }
            _ => {}
        }
    }

    fn get_mut(&mut self, id: IncidentId) -> Option<&mut Incident> {
        self.open
            .iter_mut()
            .chain(self.closed.iter_mut())
            .find(|i| i.id == id)
    }

    /// The incident `id`, open or closed and kept.
    pub fn get(&self, id: IncidentId) -> Option<&Incident> {
        self.open
            .iter()
            .chain(self.closed.iter())
            .find(|i| i.id == id)
    }

    /// The open incidents, oldest first.
    pub fn open_incidents(&self) -> impl ExactSizeIterator<Item = &Incident> + '_ {
        self.open.iter()
    }

    /// The closed incidents kept, oldest first.
    pub fn closed_incidents(&self) -> impl ExactSizeIterator<Item = &Incident> + '_ {
        self.closed.iter()
    }

    /// Appends `entry` to `log` at `now` and observes it: the one call a host makes
    /// for each entry when it keeps both. Returns the incident it opened, if any.
    ///
    /// # Errors
    /// [`AuditError::LogBehind`] if `log`'s head is before the last entry the
    /// tracker has seen; nothing is recorded.
    pub fn record(
        &mut self,
        log: &mut AuditLog,
        entry: AuditEntry,
        now: Timestamp,
    ) -> Result<Option<IncidentId>, AuditError> {
        self.check_log(log)?;
        let sealed = log.append(entry, now);
        Ok(self.observe(sealed))
    }

    /// Opens an incident by hand ([`AuditEntry::IncidentOpened`], recorded in `log`).
    /// To name agents, record an `IncidentOpened` entry with them.
    ///
    /// # Errors
    /// [`AuditError::LogBehind`] if `log`'s head is before the last entry the
    /// tracker has seen; nothing is recorded.
    pub fn open(
        &mut self,
        log: &mut AuditLog,
        title: impl Into<String>,
        severity: Severity,
        by: Decider,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Result<IncidentId, AuditError> {
        self.check_log(log)?;
        let entry = AuditEntry::IncidentOpened {
            title: title.into(),
            severity,
            by,
            reason: reason.into(),
            agents: Vec::new(),
        };
        let sealed = log.append(entry, now);
        // The log is not behind, so the tracker takes the entry in: an incident
        // opened by hand never joins another, and this id is the one it opened.
        let id = IncidentId(sealed.seq);
        self.observe(sealed);
        Ok(id)
    }

    /// Adds a note by `author` to the incident's timeline
    /// ([`AuditEntry::IncidentNote`], recorded in `log`). Returns the entry's sequence
    /// number.
    ///
    /// # Errors
    /// [`AuditError::UnknownIncident`] if the incident is not kept,
    /// [`AuditError::LogBehind`] if `log`'s head is before the last entry the
    /// tracker has seen; nothing is recorded.
    pub fn note(
        &mut self,
        log: &mut AuditLog,
        incident: IncidentId,
        author: impl Into<String>,
        text: impl Into<String>,
        now: Timestamp,
    ) -> Result<u64, AuditError> {
        self.known(incident)?;
        let entry = AuditEntry::IncidentNote {
            incident,
            author: author.into(),
            text: text.into(),
        };
        self.record_seq(log, entry, now)
    }

    /// Records the incident's post-incident review ([`AuditEntry::IncidentReview`];
    /// a later one replaces it). Returns the entry's sequence number.
    ///
    /// # Errors
    /// [`AuditError::UnknownIncident`] if the incident is not kept,
    /// [`AuditError::LogBehind`] if `log`'s head is before the last entry the
    /// tracker has seen; nothing is recorded.
    pub fn review(
        &mut self,
        log: &mut AuditLog,
        incident: IncidentId,
        review: PostIncidentReview,
        now: Timestamp,
    ) -> Result<u64, AuditError> {
        self.known(incident)?;
        let entry = AuditEntry::IncidentReview { incident, review };
        self.record_seq(log, entry, now)
    }

    /// Closes the incident ([`AuditEntry::IncidentClosed`], recorded in `log`): who
    /// closed it and why. Returns the entry's sequence number.
    ///
    /// # Errors
    /// [`AuditError::IncidentClosed`] if it is closed already,
    /// [`AuditError::UnknownIncident`] if it is not kept, [`AuditError::LogBehind`]
    /// if `log`'s head is before the last entry the tracker has seen; nothing is
    /// recorded.
    pub fn close(
        &mut self,
        log: &mut AuditLog,
        incident: IncidentId,
        by: Decider,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Result<u64, AuditError> {
        if !self.known(incident)?.is_open() {
            return Err(AuditError::IncidentClosed { incident });
        }
        let entry = AuditEntry::IncidentClosed {
            incident,
            by,
            reason: reason.into(),
        };
        self.record_seq(log, entry, now)
    }

    fn known(&self, incident: IncidentId) -> Result<&Incident, AuditError> {
        self.get(incident)
            .ok_or(AuditError::UnknownIncident { incident })
    }

    /// Refuses a log whose next entry the tracker would ignore: [`observe`] drops
    /// entries at or before the last one seen (so that a replayed tail changes
    /// nothing), and a call that appended such an entry would report an id or a
    /// sequence number for a change the tracker never made.
    ///
    /// [`observe`]: Self::observe
    fn check_log(&self, log: &AuditLog) -> Result<(), AuditError> {
        let head = log.head().seq;
        if head < self.last_seq {
            return Err(AuditError::LogBehind {
                head,
                last_seq: self.last_seq,
            });
        }
        Ok(())
    }

    fn record_seq(
        &mut self,
        log: &mut AuditLog,
        entry: AuditEntry,
        now: Timestamp,
    ) -> Result<u64, AuditError> {
        self.check_log(log)?;
        let sealed = log.append(entry, now);
        let seq = sealed.seq;
        self.observe(sealed);
        Ok(seq)
    }

    /// What the tracker holds, as plain data.
    pub fn snapshot(&self) -> IncidentsSnapshot {
        IncidentsSnapshot {
            last_seq: self.last_seq,
            open: self.open.clone(),
            closed: self.closed.iter().cloned().collect(),
            recent: self.recent.iter().cloned().collect(),
        }
    }

    /// A tracker holding what `snapshot` holds, under `config`, as if it had seen
    /// the same entries under `config`: the closed incidents and lookback entries
    /// beyond the configuration's bounds are dropped (the oldest first), and each
    /// timeline is cut to [`IncidentConfig::with_max_timeline`] as it would have
    /// been cut while open (the entries past the cap counted in
    /// [`Incident::omitted`], the incident's own notes, review and closing kept). An
    /// incident listed with the open incidents but closed goes with the closed ones.
    /// Every open incident is kept, as [`observe`](Self::observe) keeps them: each
    /// stands for an emergency that only its closing ends.
    ///
    /// # Errors
    /// Nothing is restored from a snapshot that no tracker paired with one log
    /// writes:
    /// - [`AuditError::IncidentPastLastSeq`] for an incident, or an entry on its
    ///   timeline, numbered past the snapshot's `last_seq` (the tracker would take
    ///   that entry in again and open a second incident under the same id);
    /// - [`AuditError::LookbackPastLastSeq`] for such a lookback entry;
    /// - [`AuditError::DuplicateIncident`] for an incident listed twice.
    ///
    /// # Complexity
    /// O(n log n) in the incidents listed, plus the timeline items and the lookback
    /// entries.
    pub fn restore(
        snapshot: IncidentsSnapshot,
        config: IncidentConfig,
    ) -> Result<Self, AuditError> {
        let last_seq = snapshot.last_seq;
        // The ids seen are a set, not a look through what is kept so far, so that a
        // snapshot of many incidents restores in n log n.
        let mut seen = std::collections::BTreeSet::new();
        for i in snapshot.open.iter().chain(&snapshot.closed) {
            let past = std::iter::once(i.id.get())
                .chain(i.timeline.iter().map(|item| item.seq))
                .find(|&seq| seq > last_seq);
            if let Some(seq) = past {
                return Err(AuditError::IncidentPastLastSeq {
                    incident: i.id,
                    seq,
                    last_seq,
                });
            }
            if !seen.insert(i.id) {
                return Err(AuditError::DuplicateIncident { incident: i.id });
            }
        }
        if let Some(e) = snapshot.recent.iter().find(|e| e.seq > last_seq) {
            return Err(AuditError::LookbackPastLastSeq {
                seq: e.seq,
                last_seq,
            });
        }

        let mut out = Incidents::new(config);
        out.last_seq = last_seq;
        let max = out.config.max_timeline;
        for mut i in snapshot.open.into_iter().chain(snapshot.closed) {
            // The lookups need the agents sorted; a snapshot from elsewhere may not
            // have them so.
            i.agents.sort_unstable();
            i.agents.dedup();
            // Memory stays bounded by this configuration, not the one the snapshot
            // was taken under.
            i.trim_timeline(max);
            if i.is_open() {
                out.open.push(i);
            } else {
                out.closed.push_back(i);
            }
        }
        while out.closed.len() > out.config.closed_history {
            out.closed.pop_front();
        }
        let skip = snapshot
            .recent
            .len()
            .saturating_sub(out.config.lookback_entries);
        out.recent = snapshot.recent.into_iter().skip(skip).collect();
        Ok(out)
    }
}
