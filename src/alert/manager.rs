//! [`AlertManager`]: the sans-I/O state machine that deduplicates, groups, routes,
//! silences, inhibits, pages, escalates and resolves alerts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::Router;
use super::matcher::all_match;
use super::model::shorten;
use super::{
    Action, Alert, AlertChange, AlertConfig, AlertError, Fingerprint, GroupKey, Matcher,
    Notification, NotificationKind, Silence, SilenceId, SuppressReason,
};
use crate::clock::Timestamp;

/// What [`AlertManager::fire`] did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fired {
    /// It was not firing: it is now, and will page (when its group wait ends, unless
    /// silenced, inhibited or acknowledged first).
    New(Fingerprint),
    /// It was already firing: nothing changes but its count of duplicates.
    Duplicate(Fingerprint),
}

impl Fired {
    /// The alert's fingerprint.
    pub fn fingerprint(self) -> Fingerprint {
        match self {
            Fired::New(fp) | Fired::Duplicate(fp) => fp,
        }
    }
}

/// Who acknowledged an alert, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Acknowledgement {
    /// Who.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// The pages an alert has had since it started firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PageRecord {
    /// Its first page.
    pub first_at: Timestamp,
    /// Its latest page (first page, escalation or re-page).
    pub last_at: Timestamp,
    /// The highest escalation level paged: 0 for the route's receiver.
    pub level: u32,
    /// Everyone paged for it, in the order they were first paged: who its resolution
    /// is sent to.
    pub receivers: Vec<String>,
}

/// An [`Action`] and when it falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Due {
    /// When.
    pub at: Timestamp,
    /// What.
    pub action: Action,
}

/// Everything the manager knows about one firing alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlertRecord {
    /// The alert, as first fired.
    pub alert: Arc<Alert>,
    /// When it started firing (the `now` of the [`fire`](AlertManager::fire) call).
    pub started_at: Timestamp,
    /// How many times it fired again while firing.
    pub duplicates: u64,
    /// Its pages, once it has had one.
    pub paged: Option<PageRecord>,
    /// When its response deadline passes: set at its first page (or at an
    /// acknowledgement before it).
    pub deadline_at: Option<Timestamp>,
    /// Its acknowledgement, until a re-page clears it.
    pub acknowledged: Option<Acknowledgement>,
    /// What happens to it next, and when; none once its escalation chain is spent.
    pub next: Option<Due>,
    /// Why `next`, already due, is held back: a silence or an inhibiting alert.
    pub held: Option<SuppressReason>,
}

/// A firing alert with what the manager derives from the configuration.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) record: AlertRecord,
    /// The index of the route that took it.
    pub(super) route: usize,
    pub(super) group: GroupKey,
}

/// What a [`CascadeRule`](super::CascadeRule) counts among the firing alerts, kept in
/// step as alerts start and stop firing, so that neither firing nor resolving an alert
/// counts them all again (resolving every alert of a cascade one by one would be
/// quadratic).
#[derive(Debug, Clone, Default)]
pub(super) struct Tally {
    /// How many firing alerts the rule counts: below its threshold, the alert it fired
    /// resolves.
    firing: usize,
    /// Those of them not yet known to have started before the rule's window, by start.
    /// The manager's clock never goes back, so an alert once out of the window stays
    /// out, and is dropped from here when the rule next looks.
    recent: BTreeSet<(Timestamp, Fingerprint)>,
}

impl Tally {
    fn add(&mut self, fp: Fingerprint, started_at: Timestamp) {
        self.firing += 1;
        self.recent.insert((started_at, fp));
    }

    fn remove(&mut self, fp: Fingerprint, started_at: Timestamp) {
        self.firing = self.firing.saturating_sub(1);
        self.recent.remove(&(started_at, fp));
    }

    /// How many of the counted alerts started at `since` or later; `since` never goes
    /// back from one call to the next.
    fn started_since(&mut self, since: Timestamp) -> usize {
        while self.recent.first().is_some_and(|&(t, _)| t < since) {
            self.recent.pop_first();
        }
        self.recent.len()
    }
}

/// A group waiting to page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Batch {
    pub(super) page_at: Timestamp,
    pub(super) waiting: u32,
}

/// What holds alerts back: the key under which held alerts wait to be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Hold {
    Silence(SilenceId),
    Inhibitor(Fingerprint),
}

impl Hold {
    pub(super) fn of(reason: &SuppressReason) -> Option<Hold> {
        match reason {
            SuppressReason::Silenced { silence } => Some(Hold::Silence(*silence)),
            SuppressReason::Inhibited { by, .. } => Some(Hold::Inhibitor(*by)),
            _ => None,
        }
    }
}

/// Something that falls due. Silences sort first, so that an alert due at the very
/// moment its silence ends pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Silence(SilenceId),
    Alert(Fingerprint),
}

/// The notifications one step makes, before they are numbered: alerts of one group
/// due together for the same receiver share one notification.
#[derive(Debug, Default)]
struct Outgoing(BTreeMap<Key, Vec<Arc<Alert>>>);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Resolved {
        receivers: Vec<String>,
    },
    Page {
        receiver: String,
        group: GroupKey,
    },
    Escalated {
        receiver: String,
        level: u32,
        group: GroupKey,
    },
    Repage {
        receiver: String,
        group: GroupKey,
    },
    Suppressed {
        reason: SuppressReason,
        action: Option<Action>,
    },
}

impl Outgoing {
    fn add(&mut self, key: Key, alert: Arc<Alert>) {
        self.0.entry(key).or_default().push(alert);
    }
}

/// Runs the alerting procedure over time, without I/O: sources [`fire`](Self::fire)
/// and [`resolve`](Self::resolve) alerts, people [`acknowledge`](Self::acknowledge)
/// and [`silence`](Self::silence) them, and the host wakes the manager at
/// [`poll_timeout`](Self::poll_timeout) with [`handle_timeout`](Self::handle_timeout);
/// the manager decides who is paged, when, and why not, and hands the
/// [`Notification`]s out through [`drain_notifications`](Self::drain_notifications) for
/// the host to send to each receiver's transport.
///
/// # Rules
/// - **Deduplication.** An alert is its [`Fingerprint`]. Firing one that already fires
///   pages nobody: one page per firing, however often its source repeats it
///   ([`SuppressReason::Duplicate`], reported once per firing).
/// - **Grouping.** A new alert joins its route's group for its `group_by` values. The
///   first alert of a group starts its group wait; alerts of the group firing before
///   it ends join it ([`SuppressReason::Grouped`]); at its end one
///   [`Page`](NotificationKind::Page) lists them all.
/// - **Silences and inhibition.** An action falling due for an alert that a silence
///   matches, or that an [`InhibitRule`](super::InhibitRule) holds back behind a firing
///   alert, is held ([`NotificationKind::Suppressed`], once per reason) and happens
///   when the silence expires or the inhibiting alert resolves, if the alert still
///   fires and nothing else holds it. Silences are checked before inhibition.
/// - **Response deadlines.** An alert's deadline ([`ResponseDeadlines`](super::ResponseDeadlines))
///   counts from its first page (or from an acknowledgement before it). Before it
///   passes, nothing pages for the alert again.
/// - **Escalation.** Past its deadline and unacknowledged, an alert climbs its route's
///   escalation chain: step `k` is paged `after` its previous page (and never before
///   the deadline), each step once, in order, and none after the chain ends.
/// - **Acknowledgement.** Acknowledging stops the climb. If the alert is still firing
///   when the route's `ack_timeout` has passed (and its deadline), it is paged again
///   at its current level and the acknowledgement lapses: unacknowledged, it climbs
///   on. Acknowledged before its first page, it does not page then.
/// - **Resolution** ends everything for the alert: no re-page, no escalation. The
///   receivers paged for it are told ([`NotificationKind::Resolved`]); alerts it
///   inhibited are released.
/// - **Cascades.** When an alert fires, each [`CascadeRule`](super::CascadeRule) it
///   matches counts the matching alerts that started within its window; at the
///   threshold the rule fires its alert, which resolves when fewer than the threshold
///   fire.
/// - **Time.** Every call takes `now` and first does what fell due by then, in time
///   order, each at the time it fell due. A `now` earlier than one already seen counts
///   as the latest seen: the manager's clock never goes back. A `now` past
///   [`Timestamp::HORIZON`] is no clock's reading, and one such reading taken as the
///   latest would page and escalate every later alert at once (its deadlines
///   saturated) or never: a call that returns a `Result` refuses it
///   ([`AlertError::PastHorizon`], nothing changes), and the others
///   ([`resolve`](Self::resolve), [`handle_timeout`](Self::handle_timeout)) count it as
///   the latest time seen. After any call, [`poll_timeout`](Self::poll_timeout) is
///   later than `now`, or `None`.
/// - **History.** Every notification is kept in the [history](Self::history) too,
///   bounded by the configuration's [`Retention`](super::Retention).
///
/// Every input is checked before anything changes: an error leaves the manager as it
/// was, and nothing panics on input.
///
/// # Complexity
/// With `n` firing alerts, `s` active silences and `r` inhibition rules: `fire`,
/// `acknowledge` and each due action cost `O(log n)` plus `O(s + r·k)` to check for
/// silences and inhibitors (`k` the firing sources of a rule that targets the alert);
/// a cascade rule that counts the alert fired or resolved adds `O(log n)` (amortized:
/// the alerts that leave its window are dropped from its count as they leave).
/// `poll_timeout` is `O(log n)`.
///
/// The manager is deterministic: the same calls with the same times give the same
/// notifications, bit for bit, so a host may journal its calls and replay them over a
/// [snapshot](Self::snapshot).
///
/// ```
/// use std::time::Duration;
/// use concord::alert::{Alert, AlertConfig, AlertManager, NotificationKind, Severity};
/// use concord::Timestamp;
///
/// let mut alerts = AlertManager::new(AlertConfig::default())?;
/// let t0 = Timestamp::from_secs(1_700_000_000);
/// let failure = |agent: &str| {
///     Alert::new("agent_failure", Severity::Medium, t0).with_label("agent", agent)
/// };
///
/// // A burst of two agent failures, and a repeat: one page, after the 30 s group wait
/// // (and a "multiple agent failures" alert, which holds the per-agent ones back).
/// alerts.fire(failure("agent#1"), t0)?;
/// alerts.fire(failure("agent#1"), t0)?;
/// alerts.fire(failure("agent#2"), t0 + Duration::from_secs(5))?;
/// assert_eq!(alerts.poll_timeout(), Some(t0 + Duration::from_secs(30)));
/// alerts.handle_timeout(t0 + Duration::from_secs(60));
/// let pages: Vec<_> = alerts.drain_notifications().filter(|n| n.is_page()).collect();
/// assert_eq!(pages.len(), 1);
/// let NotificationKind::Page { receiver, alerts: listed, .. } = &pages[0].kind else {
///     panic!("a page")
/// };
/// assert_eq!(receiver, "system_administrator");
/// assert_eq!(listed[0].name(), "multiple_agent_failures");
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
#[derive(Debug)]
pub struct AlertManager {
    pub(super) config: AlertConfig,
    pub(super) router: Router,
    /// The fingerprint each cascade rule fires, by rule.
    pub(super) cascade_alerts: Vec<Fingerprint>,
    /// What each cascade rule counts, by rule.
    pub(super) tallies: Vec<Tally>,
    /// The latest time seen.
    pub(super) now: Timestamp,
    pub(super) alerts: BTreeMap<Fingerprint, Entry>,
    /// The next due action of every alert not held, and the end of every silence.
    pub(super) timers: BTreeSet<(Timestamp, Timer)>,
    /// Groups waiting to page: when they page, and how many alerts wait for it. A
    /// group whose waiting alerts all resolved (or were acknowledged) has no batch: the
    /// next alert starts a new wait, as it would after a restore.
    pub(super) batches: BTreeMap<GroupKey, Batch>,
    /// Alerts held back, by what holds them.
    pub(super) held: BTreeMap<Hold, BTreeSet<Fingerprint>>,
    pub(super) silences: BTreeMap<SilenceId, Silence>,
    pub(super) last_silence: u64,
    /// For each inhibition rule, the firing alerts matching its source.
    pub(super) sources: Vec<BTreeSet<Fingerprint>>,
    /// Cascade alerts this manager fired that still fire: it resolves them.
    pub(super) cascades: BTreeSet<Fingerprint>,
    /// The last notification number issued.
    pub(super) seq: u64,
    pub(super) history: VecDeque<Notification>,
    pub(super) outbox: VecDeque<Notification>,
    pub(super) dropped: u64,
}

impl AlertManager {
    /// A manager with no alerts, under `config`.
    ///
    /// # Errors
    /// The configuration's [`AlertConfig::validate`] error.
    pub fn new(config: AlertConfig) -> Result<Self, AlertError> {
        let router = config.compile()?;
        Ok(AlertManager {
            cascade_alerts: config
                .cascades()
                .iter()
                .map(|c| c.fires().fingerprint())
                .collect(),
            tallies: vec![Tally::default(); config.cascades().len()],
            sources: vec![BTreeSet::new(); config.inhibit_rules().len()],
            config,
            router,
            now: Timestamp::EPOCH,
            alerts: BTreeMap::new(),
            timers: BTreeSet::new(),
            batches: BTreeMap::new(),
            held: BTreeMap::new(),
            silences: BTreeMap::new(),
            last_silence: 0,
            cascades: BTreeSet::new(),
            seq: 0,
            history: VecDeque::new(),
            outbox: VecDeque::new(),
            dropped: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// The latest time the manager has seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Fires `alert` at `now`: a new alert starts firing (and joins its group, to page
    /// when the group wait ends); one already firing is a duplicate and changes
    /// nothing but its count. A new alert may fire a cascade rule's alert too.
    ///
    /// # Errors
    /// [`AlertError::InvalidName`] for a bad name or label ([`Alert::validate`]);
    /// [`AlertError::FingerprintCollision`] if a different alert fires under the same
    /// fingerprint. Nothing changes.
    pub fn fire(&mut self, alert: Alert, now: Timestamp) -> Result<Fired, AlertError> {
        check_time(now)?;
        alert.validate()?;
        let alert = alert.into_notes();
        let fingerprint = alert.fingerprint();
        if let Some(e) = self.alerts.get(&fingerprint) {
            if !e.record.alert.same_identity(&alert) {
                return Err(AlertError::FingerprintCollision {
                    fingerprint,
                    existing: shorten(&e.record.alert.to_string()),
                    new: shorten(&alert.to_string()),
                });
            }
        }
        let now = self.tick(now);
        let mut out = Outgoing::default();
        let fired = self.insert(alert, fingerprint, now, &mut out);
        if let Fired::New(fp) = fired {
            self.detect_cascades(fp, now, &mut out);
        }
        self.emit(now, out);
        self.advance(now);
        Ok(fired)
    }

    /// Resolves the alert with `fingerprint` at `now`: its pending page, escalations
    /// and re-pages are dropped, the receivers paged for it are told, and the alerts
    /// it inhibited are released. Returns whether it was firing (resolving an alert
    /// that is not is no error: sources repeat resolutions too).
    pub fn resolve(&mut self, fingerprint: Fingerprint, now: Timestamp) -> bool {
        let now = self.tick(now);
        let found = self.alerts.contains_key(&fingerprint);
        let mut out = Outgoing::default();
        self.remove(&[fingerprint], now, &mut out);
        self.emit(now, out);
        self.advance(now);
        found
    }

    /// Resolves every firing alert that passes all of `matchers` (every firing alert,
    /// for none), as [`resolve`](Self::resolve) does; their resolutions to the same
    /// receivers go out as one notification. Returns their fingerprints, in order.
    pub fn resolve_matching(&mut self, matchers: &[Matcher], now: Timestamp) -> Vec<Fingerprint> {
        let now = self.tick(now);
        let targets: Vec<Fingerprint> = self
            .alerts
            .iter()
            .filter(|(_, e)| all_match(matchers, &e.record.alert))
            .map(|(fp, _)| *fp)
            .collect();
        let mut out = Outgoing::default();
        self.remove(&targets, now, &mut out);
        self.emit(now, out);
        self.advance(now);
        targets
    }

    /// Applies a change from [`alerts_from_event`](super::alerts_from_event) (or any
    /// other source): fires or resolves.
    ///
    /// # Errors
    /// As [`fire`](Self::fire).
    pub fn apply(&mut self, change: AlertChange, now: Timestamp) -> Result<(), AlertError> {
        check_time(now)?;
        match change {
            AlertChange::Fire(alert) => self.fire(alert, now).map(drop),
            AlertChange::Resolve(fp) => {
                self.resolve(fp, now);
                Ok(())
            }
        }
    }

    /// Records that `by` is on the alert with `fingerprint`, at `now`: its escalation
    /// stops, and it is paged again at its current level if still firing when the
    /// route's acknowledgement timeout (and its response deadline) has passed.
    /// Acknowledged before its first page, it does not page then. Acknowledging again
    /// restarts the timeout.
    ///
    /// # Errors
    /// [`AlertError::UnknownAlert`] if no firing alert has that fingerprint; nothing
    /// changes.
    pub fn acknowledge(
        &mut self,
        fingerprint: Fingerprint,
        by: impl Into<String>,
        now: Timestamp,
    ) -> Result<(), AlertError> {
        check_time(now)?;
        if !self.alerts.contains_key(&fingerprint) {
            return Err(AlertError::UnknownAlert { fingerprint });
        }
        let by = crate::id::note(by);
        let now = self.tick(now);
        let mut out = Outgoing::default();
        self.unschedule(fingerprint);
        let Some(entry) = self.alerts.get_mut(&fingerprint) else {
            return Ok(()); // unreachable: only resolutions remove alerts
        };
        let record = &mut entry.record;
        if record.paged.is_none() {
            out.add(
                Key::Suppressed {
                    reason: SuppressReason::Acknowledged { by: by.clone() },
                    action: Some(Action::FirstPage),
                },
                record.alert.clone(),
            );
            record.deadline_at = Some(now + self.config.deadlines().get(record.alert.severity()));
        }
        let deadline = record.deadline_at.unwrap_or(now);
        let due = Due {
            at: deadline.max(now + self.router.nodes[entry.route].ack_timeout),
            action: Action::Repage,
        };
        tracing::info!(alert.fingerprint = %fingerprint, alert.by = %by, repage_at = %due.at, "alert acknowledged");
        record.acknowledged = Some(Acknowledgement { by, at: now });
        record.next = Some(due);
        self.timers.insert((due.at, Timer::Alert(fingerprint)));
        self.emit(now, out);
        self.advance(now);
        Ok(())
    }

    /// Silences the alerts matching all of `matchers` from `now` until `until`: what
    /// falls due for them meanwhile is held, and happens when the silence expires if
    /// they still fire. Returns the silence's id.
    ///
    /// # Errors
    /// [`AlertError::EmptySilence`] for no matchers; [`AlertError::SilenceEnded`] for
    /// an `until` not after `now`. Nothing changes.
    pub fn silence(
        &mut self,
        matchers: Vec<Matcher>,
        until: Timestamp,
        by: impl Into<String>,
        now: Timestamp,
    ) -> Result<SilenceId, AlertError> {
        check_time(now)?;
        if matchers.is_empty() {
            return Err(AlertError::EmptySilence);
        }
        let latest = now.max(self.now);
        if until <= latest {
            return Err(AlertError::SilenceEnded { until, now: latest });
        }
        let now = self.tick(now);
        self.last_silence += 1;
        let id = SilenceId::new(self.last_silence);
        let by = crate::id::note(by);
        tracing::info!(silence.id = %id, silence.by = %by, %until, "silence created");
        self.silences.insert(
            id,
            Silence {
                id,
                matchers,
                created_at: now,
                until,
                by,
            },
        );
        self.timers.insert((until, Timer::Silence(id)));
        Ok(id)
    }

    /// Ends silence `id` at `now`, before its time: what it held back happens now, for
    /// the alerts still firing that nothing else holds.
    ///
    /// # Errors
    /// [`AlertError::UnknownSilence`] if no active silence has that id; nothing
    /// changes.
    pub fn expire_silence(&mut self, id: SilenceId, now: Timestamp) -> Result<(), AlertError> {
        check_time(now)?;
        if !self.silences.contains_key(&id) {
            return Err(AlertError::UnknownSilence { id });
        }
        let now = self.tick(now);
        let mut released = BTreeSet::new();
        self.end_silence(id, &mut released);
        let mut out = Outgoing::default();
        for fp in released {
            self.act(fp, now, &mut out);
        }
        self.emit(now, out);
        self.advance(now);
        Ok(())
    }

    /// When the manager next needs [`handle_timeout`](Self::handle_timeout): the
    /// earliest due action or silence end, if any.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Does everything that fell due by `now`, in time order.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.tick(now);
    }

    /// The notifications made since the last drain, in order: what the host sends.
    pub fn drain_notifications(&mut self) -> std::collections::vec_deque::Drain<'_, Notification> {
        self.outbox.drain(..)
    }

    /// The notification history, oldest first, within the configured retention.
    pub fn history(&self) -> std::collections::vec_deque::Iter<'_, Notification> {
        self.history.iter()
    }

    /// How many notifications were dropped undrained because more than the
    /// retention's `max_entries` waited.
    pub fn dropped_notifications(&self) -> u64 {
        self.dropped
    }

    /// The firing alert with `fingerprint`, if any.
    pub fn alert(&self, fingerprint: Fingerprint) -> Option<&AlertRecord> {
        self.alerts.get(&fingerprint).map(|e| &e.record)
    }

    /// The firing alerts, by fingerprint.
    pub fn firing(&self) -> impl ExactSizeIterator<Item = (Fingerprint, &AlertRecord)> + '_ {
        self.alerts.iter().map(|(fp, e)| (*fp, &e.record))
    }

    /// The active silences, by id.
    pub fn silences(&self) -> impl ExactSizeIterator<Item = &Silence> + '_ {
        self.silences.values()
    }

    /// Who `alert` would page first: the receiver of the route that takes it.
    pub fn receiver_for(&self, alert: &Alert) -> &str {
        &self.router.nodes[self.router.route(alert)].receiver
    }

    // ----- the machinery -------------------------------------------------------------

    /// Moves the clock to `now` (never back; a `now` past the horizon counts as the
    /// latest seen) and does what fell due; returns the time.
    fn tick(&mut self, now: Timestamp) -> Timestamp {
        let now = if now > Timestamp::HORIZON {
            self.now
        } else {
            now.max(self.now)
        };
        self.now = now;
        self.advance(now);
        now
    }

    /// Does everything due by `now`, one instant at a time, each at its own time.
    fn advance(&mut self, now: Timestamp) {
        while let Some(&(t, _)) = self.timers.first() {
            if t > now {
                break;
            }
            let mut due = BTreeSet::new();
            while let Some(&(at, timer)) = self.timers.first() {
                if at != t {
                    break;
                }
                self.timers.pop_first();
                match timer {
                    Timer::Silence(id) => self.end_silence(id, &mut due),
                    Timer::Alert(fp) => {
                        due.insert(fp);
                    }
                }
            }
            let mut out = Outgoing::default();
            for fp in due {
                self.act(fp, t, &mut out);
            }
            self.emit(t, out);
        }
        self.batches.retain(|_, batch| batch.page_at > now);
        self.trim(now);
    }

    /// Starts `alert` firing, or counts it as a duplicate.
    fn insert(
        &mut self,
        alert: Alert,
        fp: Fingerprint,
        now: Timestamp,
        out: &mut Outgoing,
    ) -> Fired {
        if let Some(e) = self.alerts.get_mut(&fp) {
            e.record.duplicates = e.record.duplicates.saturating_add(1);
            if e.record.duplicates == 1 {
                let key = Key::Suppressed {
                    reason: SuppressReason::Duplicate,
                    action: None,
                };
                out.add(key, e.record.alert.clone());
            }
            tracing::trace!(alert.fingerprint = %fp, "duplicate alert");
            return Fired::Duplicate(fp);
        }
        let route = self.router.route(&alert);
        let group = self.router.group_key(route, &alert);
        let alert = Arc::new(alert);
        let page_at = match self.batches.get_mut(&group) {
            Some(batch) if batch.page_at >= now => {
                batch.waiting = batch.waiting.saturating_add(1);
                let page_at = batch.page_at;
                let reason = SuppressReason::Grouped {
                    group: group.clone(),
                    page_at,
                };
                let key = Key::Suppressed {
                    reason,
                    action: Some(Action::FirstPage),
                };
                out.add(key, alert.clone());
                page_at
            }
            _ => {
                let page_at = now + self.router.nodes[route].group_wait;
                let batch = Batch {
                    page_at,
                    waiting: 1,
                };
                self.batches.insert(group.clone(), batch);
                page_at
            }
        };
        for (rule, sources) in self.config.inhibit_rules().iter().zip(&mut self.sources) {
            if all_match(rule.source(), &alert) {
                sources.insert(fp);
            }
        }
        tracing::debug!(alert.fingerprint = %fp, alert.name = alert.name(), %group, %page_at, "alert firing");
        self.timers.insert((page_at, Timer::Alert(fp)));
        self.count_in(fp, &alert, now);
        let record = AlertRecord {
            alert,
            started_at: now,
            duplicates: 0,
            paged: None,
            deadline_at: None,
            acknowledged: None,
            next: Some(Due {
                at: page_at,
                action: Action::FirstPage,
            }),
            held: None,
        };
        self.alerts.insert(
            fp,
            Entry {
                record,
                route,
                group,
            },
        );
        Fired::New(fp)
    }

    /// Fires each cascade rule that the new alert `fp` takes to its threshold.
    fn detect_cascades(&mut self, fp: Fingerprint, now: Timestamp, out: &mut Outgoing) {
        let Some(alert) = self.alerts.get(&fp).map(|e| e.record.alert.clone()) else {
            return;
        };
        for i in 0..self.cascade_alerts.len() {
            let target = self.cascade_alerts[i];
            let rule = &self.config.cascades()[i];
            if self.alerts.contains_key(&target) || !all_match(rule.counts(), &alert) {
                continue;
            }
            let n = self.tallies[i].started_since(now.saturating_sub(rule.window()));
            if n < rule.threshold() as usize {
                continue;
            }
            let summary = format!(
                "{} ({n} alerts within {:?})",
                rule.fires().summary(),
                rule.window()
            );
            let cascade = rule
                .fires()
                .alert(now)
                .with_summary(summary)
                .with_source("cascade_detection");
            tracing::info!(alert.name = cascade.name(), count = n, "cascade detected");
            self.insert(cascade, target, now, out);
            self.cascades.insert(target);
        }
    }

    /// Resolves `fps` (in order), and then the cascade alerts their resolution takes
    /// below threshold; releases what they inhibited.
    fn remove(&mut self, fps: &[Fingerprint], now: Timestamp, out: &mut Outgoing) {
        let mut work: Vec<Fingerprint> = fps.iter().rev().copied().collect();
        let mut released = BTreeSet::new();
        while let Some(fp) = work.pop() {
            if !self.alerts.contains_key(&fp) {
                continue;
            }
            self.unschedule(fp);
            let Some(entry) = self.alerts.remove(&fp) else {
                continue;
            };
            let started_at = entry.record.started_at;
            let alert = entry.record.alert;
            if let Some(paged) = entry.record.paged {
                out.add(
                    Key::Resolved {
                        receivers: paged.receivers,
                    },
                    alert.clone(),
                );
            }
            tracing::info!(alert.fingerprint = %fp, alert.name = alert.name(), "alert resolved");
            self.cascades.remove(&fp);
            for sources in &mut self.sources {
                sources.remove(&fp);
            }
            if let Some(held) = self.held.remove(&Hold::Inhibitor(fp)) {
                released.extend(held);
            }
            let rules = self.config.cascades().iter().zip(&self.cascade_alerts);
            for ((rule, &target), tally) in rules.zip(&mut self.tallies) {
                if !all_match(rule.counts(), &alert) {
                    continue;
                }
                tally.remove(fp, started_at);
                if self.cascades.contains(&target) && tally.firing < rule.threshold() as usize {
                    work.push(target);
                }
            }
        }
        for fp in released {
            self.act(fp, now, out);
        }
    }

    /// Counts `alert`, which started firing at `started_at`, in the tallies of the
    /// cascade rules that count it.
    pub(super) fn count_in(&mut self, fp: Fingerprint, alert: &Alert, started_at: Timestamp) {
        let rules = self.config.cascades().iter().zip(&mut self.tallies);
        for (rule, tally) in rules {
            if all_match(rule.counts(), alert) {
                tally.add(fp, started_at);
            }
        }
    }

    /// Takes the alert out of the timers, its group's batch or the held index (its
    /// `next` stays).
    fn unschedule(&mut self, fp: Fingerprint) {
        let Some(entry) = self.alerts.get(&fp) else {
            return;
        };
        if entry.record.held.is_some() {
            self.set_hold(fp, None);
        } else if let Some(due) = entry.record.next {
            self.timers.remove(&(due.at, Timer::Alert(fp)));
            if due.action == Action::FirstPage {
                if let Some(batch) = self.batches.get_mut(&entry.group) {
                    batch.waiting = batch.waiting.saturating_sub(1);
                    if batch.waiting == 0 {
                        self.batches.remove(&entry.group);
                    }
                }
            }
        }
    }

    /// Sets why the alert is held (or that it is not), keeping the index in step.
    fn set_hold(&mut self, fp: Fingerprint, reason: Option<SuppressReason>) {
        let Some(entry) = self.alerts.get_mut(&fp) else {
            return;
        };
        if let Some(old) = entry.record.held.take().as_ref().and_then(Hold::of) {
            if let Some(set) = self.held.get_mut(&old) {
                set.remove(&fp);
                if set.is_empty() {
                    self.held.remove(&old);
                }
            }
        }
        if let Some(hold) = reason.as_ref().and_then(Hold::of) {
            self.held.entry(hold).or_default().insert(fp);
        }
        entry.record.held = reason;
    }

    /// What holds `alert` back at `t`, if anything: a silence, then an inhibiting
    /// alert.
    fn mute(&self, fp: Fingerprint, alert: &Alert, t: Timestamp) -> Option<SuppressReason> {
        if let Some(s) = self
            .silences
            .values()
            .find(|s| s.until > t && s.matches(alert))
        {
            return Some(SuppressReason::Silenced { silence: s.id });
        }
        for (rule, sources) in self.config.inhibit_rules().iter().zip(&self.sources) {
            if !all_match(rule.target(), alert) {
                continue;
            }
            let by = sources.iter().find_map(|&src| {
                let e = self.alerts.get(&src).filter(|_| src != fp)?;
                rule.holds_back(&e.record.alert, alert)
                    .then(|| (src, e.record.alert.name().to_owned()))
            });
            if let Some((by, name)) = by {
                return Some(SuppressReason::Inhibited { by, alert: name });
            }
        }
        None
    }

    /// Carries out the alert's due action at `t`, or holds it. The alert is in neither
    /// the timers nor the held index's way: it was popped from the timers or released.
    fn act(&mut self, fp: Fingerprint, t: Timestamp, out: &mut Outgoing) {
        let Some(entry) = self.alerts.get(&fp) else {
            return;
        };
        let Some(due) = entry.record.next else {
            return;
        };
        if let Some(reason) = self.mute(fp, &entry.record.alert, t) {
            if entry.record.held.as_ref() != Some(&reason) {
                tracing::debug!(alert.fingerprint = %fp, %reason, action = %due.action, "held back");
                let key = Key::Suppressed {
                    reason: reason.clone(),
                    action: Some(due.action),
                };
                out.add(key, entry.record.alert.clone());
                self.set_hold(fp, Some(reason));
            }
            return;
        }
        self.set_hold(fp, None);
        let Some(entry) = self.alerts.get_mut(&fp) else {
            return;
        };
        let node = &self.router.nodes[entry.route];
        let record = &mut entry.record;
        let alert = record.alert.clone();
        let group = entry.group.clone();
        match due.action {
            Action::FirstPage => {
                tracing::info!(alert.fingerprint = %fp, receiver = %node.receiver, "page");
                let key = Key::Page {
                    receiver: node.receiver.to_string(),
                    group,
                };
                out.add(key, alert);
                record.paged = Some(PageRecord {
                    first_at: t,
                    last_at: t,
                    level: 0,
                    receivers: vec![node.receiver.to_string()],
                });
                record.deadline_at = Some(t + self.config.deadlines().get(record.alert.severity()));
            }
            Action::Escalate { level } => {
                let (Some(receiver), Some(paged)) =
                    (node.receiver_at(level), record.paged.as_mut())
                else {
                    record.next = None; // a chain shortened by a new configuration
                    return;
                };
                tracing::info!(alert.fingerprint = %fp, %receiver, level, "escalated");
                let key = Key::Escalated {
                    receiver: receiver.to_owned(),
                    level,
                    group,
                };
                out.add(key, alert);
                paged.level = level;
                paged.last_at = t;
                if !paged.receivers.iter().any(|r| r == receiver) {
                    paged.receivers.push(receiver.to_owned());
                }
            }
            Action::Repage => {
                let level = record.paged.as_ref().map_or(0, |p| p.level);
                let receiver = node.receiver_at(level).unwrap_or(&node.receiver);
                tracing::info!(alert.fingerprint = %fp, %receiver, "paged again");
                let key = Key::Repage {
                    receiver: receiver.to_owned(),
                    group,
                };
                out.add(key, alert);
                record.acknowledged = None;
                match &mut record.paged {
                    Some(paged) => {
                        paged.last_at = t;
                        if !paged.receivers.iter().any(|r| r == receiver) {
                            paged.receivers.push(receiver.to_owned());
                        }
                    }
                    None => {
                        record.paged = Some(PageRecord {
                            first_at: t,
                            last_at: t,
                            level: 0,
                            receivers: vec![receiver.to_owned()],
                        });
                    }
                }
            }
        }
        let level = record.paged.as_ref().map_or(0, |p| p.level);
        let deadline = record.deadline_at.unwrap_or(t);
        record.next = node.escalation.get(level as usize).map(|step| Due {
            at: deadline.max(t + step.after()),
            action: Action::Escalate { level: level + 1 },
        });
        if let Some(due) = record.next {
            self.timers.insert((due.at, Timer::Alert(fp)));
        }
    }

    /// Ends silence `id`; the alerts it held go into `released`.
    fn end_silence(&mut self, id: SilenceId, released: &mut BTreeSet<Fingerprint>) {
        let Some(silence) = self.silences.remove(&id) else {
            return;
        };
        self.timers.remove(&(silence.until, Timer::Silence(id)));
        tracing::info!(silence.id = %id, "silence ended");
        if let Some(held) = self.held.remove(&Hold::Silence(id)) {
            released.extend(held);
        }
    }

    /// Numbers the step's notifications, stamps them `at`, and files them in the
    /// outbox and the history.
    fn emit(&mut self, at: Timestamp, out: Outgoing) {
        for (key, alerts) in out.0 {
            self.seq += 1;
            let kind = match key {
                Key::Resolved { receivers } => NotificationKind::Resolved { receivers, alerts },
                Key::Page { receiver, group } => NotificationKind::Page {
                    receiver,
                    group,
                    alerts,
                },
                Key::Escalated {
                    receiver,
                    level,
                    group,
                } => NotificationKind::Escalated {
                    receiver,
                    level,
                    group,
                    alerts,
                },
                Key::Repage { receiver, group } => NotificationKind::Repage {
                    receiver,
                    group,
                    alerts,
                },
                Key::Suppressed { reason, action } => NotificationKind::Suppressed {
                    reason,
                    action,
                    alerts,
                },
            };
            let n = Notification {
                seq: self.seq,
                at,
                kind,
            };
            self.history.push_back(n.clone());
            self.outbox.push_back(n);
        }
        self.trim(at);
    }

    /// Drops the history past its retention, and the undrained notifications past its
    /// count.
    pub(super) fn trim(&mut self, now: Timestamp) {
        let retention = self.config.retention();
        let oldest = now.saturating_sub(retention.max_age());
        while self.history.len() > retention.max_entries()
            || self.history.front().is_some_and(|n| n.at < oldest)
        {
            self.history.pop_front();
        }
        while self.outbox.len() > retention.max_entries() {
            self.outbox.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

/// A manager the host shares with a [`Driver`](crate::coordinator::Driver)
/// ([`Driver::with_timed`](crate::coordinator::Driver::with_timed)): the driver wakes
/// at its deadlines (escalations, re-pages, group waits) as it does for the
/// coordinator's, and the host drains the notifications. After firing into it
/// outside the driver, call [`Coordinator::nudge`](crate::coordinator::Coordinator::nudge).
impl crate::coordinator::Timed for std::sync::Mutex<AlertManager> {
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .poll_timeout()
    }

    fn handle_timeout(&self, now: Timestamp) {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .handle_timeout(now);
    }
}

/// Refuses a `now` past [`Timestamp::HORIZON`] (see [`AlertManager`], "Time").
fn check_time(now: Timestamp) -> Result<(), AlertError> {
    if now > Timestamp::HORIZON {
        return Err(AlertError::PastHorizon { now });
    }
    Ok(())
}
