//! [`AlertManagerSnapshot`]: the manager's state as versioned serde data, and its
//! validated restore.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use serde::{Deserialize, Serialize};

use super::manager::{Batch, Entry, Hold, Timer};
use super::matcher::all_match;
use super::model::shorten;
use super::{
    Action, AlertConfig, AlertError, AlertManager, AlertRecord, Fingerprint, Notification, Silence,
    SilenceId, SuppressReason,
};
use crate::clock::Timestamp;
use crate::id::check_counter;

/// The version [`AlertManager::snapshot`] writes and [`AlertManager::restore`] reads.
pub const ALERT_SNAPSHOT_VERSION: u32 = 1;

/// Everything an [`AlertManager`] knows, as plain serde data: persist it, and
/// [`AlertManager::restore`] carries on where it was, so alerts, acknowledgements,
/// silences, deadlines and the history survive a restart. A restart re-pages nothing
/// already paged (Alertmanager issue #627: a reload sent every notification again) and
/// forgets no escalation due.
///
/// The routing, grouping and timers are not stored: they follow from the alerts and
/// the configuration, which the host supplies again on restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlertManagerSnapshot {
    /// [`ALERT_SNAPSHOT_VERSION`] when written.
    pub version: u32,
    /// The latest time the manager had seen.
    pub now: Timestamp,
    /// The firing alerts, by fingerprint.
    pub alerts: Vec<AlertRecord>,
    /// The active silences, by id.
    pub silences: Vec<Silence>,
    /// The last silence id issued.
    pub last_silence: u64,
    /// The last notification number issued.
    pub last_seq: u64,
    /// The cascade alerts the manager fired and still resolves itself.
    pub cascades: Vec<Fingerprint>,
    /// The notification history, oldest first.
    pub history: Vec<Notification>,
    /// The notifications not yet drained.
    pub outbox: Vec<Notification>,
    /// Notifications dropped undrained.
    pub dropped: u64,
}

impl AlertManager {
    /// Everything the manager knows, as plain serde data. `O(n)` in the alerts,
    /// silences and history.
    ///
    /// ```
    /// use std::time::Duration;
    /// use concord::alert::{Alert, AlertConfig, AlertManager, AlertManagerSnapshot, Severity};
    /// use concord::Timestamp;
    ///
    /// let config = AlertConfig::default();
    /// let mut m = AlertManager::new(config.clone())?;
    /// let t0 = Timestamp::from_secs(1_000);
    /// m.fire(Alert::new("memory_corruption", Severity::Critical, t0), t0)?;
    /// m.drain_notifications().for_each(drop); // paged at once
    ///
    /// // Persist it; after a crash, carry on with the same configuration.
    /// let json = serde_json::to_string(&m.snapshot())?;
    /// let snapshot: AlertManagerSnapshot = serde_json::from_str(&json)?;
    /// let mut restored = AlertManager::restore(config, snapshot)?;
    ///
    /// // The escalation due 15 minutes after the page comes as it would have.
    /// assert_eq!(restored.poll_timeout(), m.poll_timeout());
    /// let later = t0 + Duration::from_secs(15 * 60);
    /// restored.handle_timeout(later);
    /// m.handle_timeout(later);
    /// assert!(restored.drain_notifications().eq(m.drain_notifications()));
    /// assert_eq!(restored.snapshot(), m.snapshot());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> AlertManagerSnapshot {
        AlertManagerSnapshot {
            version: ALERT_SNAPSHOT_VERSION,
            now: self.now,
            alerts: self.alerts.values().map(|e| e.record.clone()).collect(),
            silences: self.silences.values().cloned().collect(),
            last_silence: self.last_silence,
            last_seq: self.seq,
            cascades: self.cascades.iter().copied().collect(),
            history: self.history.iter().cloned().collect(),
            outbox: self.outbox.iter().cloned().collect(),
            dropped: self.dropped,
        }
    }

    /// Carries on from `snapshot` under `config`.
    ///
    /// Alerts are routed and grouped again under `config`, so a restore under the
    /// same configuration continues exactly as the manager that was snapshotted;
    /// under a new one, alerts follow the new routes from their next step (an
    /// escalation level the new chain no longer has does not happen), while due times
    /// already set, and alerts held back, stand. The history is trimmed to the new
    /// retention.
    ///
    /// # Errors
    /// The configuration's [`AlertConfig::validate`] error; or
    /// [`AlertError::CorruptSnapshot`] naming what is wrong: another version; a
    /// counter past what any run issues; an invalid alert, or two under one
    /// fingerprint; a time after the snapshot's `now`; an alert in a state the manager
    /// cannot reach (a first page due for an alert already paged, an escalation not to
    /// the next level, a re-page without an acknowledgement, an action due but neither
    /// held nor scheduled, a hold that is not a silence or inhibition, or names a
    /// silence or alert that is not there); a silence without matchers, expired, or
    /// with an id twice or past the last issued; a cascade alert not firing; or
    /// notifications out of order or numbered past the last issued.
    pub fn restore(
        config: AlertConfig,
        snapshot: AlertManagerSnapshot,
    ) -> Result<AlertManager, AlertError> {
        let mut m = AlertManager::new(config)?;
        check(&snapshot).map_err(|reason| AlertError::CorruptSnapshot { reason })?;
        m.now = snapshot.now;
        m.last_silence = snapshot.last_silence;
        m.seq = snapshot.last_seq;
        m.dropped = snapshot.dropped;
        for s in snapshot.silences {
            m.timers.insert((s.until, Timer::Silence(s.id)));
            m.silences.insert(s.id, s);
        }
        for record in snapshot.alerts {
            let fp = record.alert.fingerprint();
            let route = m.router.route(&record.alert);
            let group = m.router.group_key(route, &record.alert);
            for (rule, sources) in m.config.inhibit_rules().iter().zip(&mut m.sources) {
                if all_match(rule.source(), &record.alert) {
                    sources.insert(fp);
                }
            }
            match (&record.held, record.next) {
                (Some(reason), _) => {
                    if let Some(hold) = Hold::of(reason) {
                        m.held.entry(hold).or_default().insert(fp);
                    }
                }
                (None, Some(due)) => {
                    m.timers.insert((due.at, Timer::Alert(fp)));
                    if due.action == Action::FirstPage {
                        let batch = m.batches.entry(group.clone()).or_insert(Batch {
                            page_at: due.at,
                            waiting: 0,
                        });
                        batch.page_at = batch.page_at.min(due.at);
                        batch.waiting = batch.waiting.saturating_add(1);
                    }
                }
                (None, None) => {}
            }
            m.count_in(fp, &record.alert, record.started_at);
            m.alerts.insert(
                fp,
                Entry {
                    record,
                    route,
                    group,
                },
            );
        }
        m.cascades = snapshot.cascades.into_iter().collect();
        m.history = snapshot.history.into();
        m.outbox = snapshot.outbox.into();
        m.trim(m.now);
        Ok(m)
    }
}

/// Why `s` is not a state an [`AlertManager`] could have reached, if it is not.
fn check(s: &AlertManagerSnapshot) -> Result<(), String> {
    if s.version != ALERT_SNAPSHOT_VERSION {
        return Err(format!(
            "version {} (expected {ALERT_SNAPSHOT_VERSION})",
            s.version
        ));
    }
    check_counter("last_seq", s.last_seq)?;
    check_counter("last_silence", s.last_silence)?;
    let now = s.now;
    if now > Timestamp::HORIZON {
        return Err(format!(
            "its now ({now}) is past the latest time a manager takes ({})",
            Timestamp::HORIZON
        ));
    }
    let not_after_now = |what: &dyn Display, t: Timestamp| {
        if t > now {
            Err(format!("{what} at {t} is after the snapshot's now ({now})"))
        } else {
            Ok(())
        }
    };

    let mut silences: BTreeSet<SilenceId> = BTreeSet::new();
    for silence in &s.silences {
        let id = silence.id;
        if id.get() == 0 || id.get() > s.last_silence {
            return Err(format!(
                "{id} is outside 1 to the last issued ({})",
                s.last_silence
            ));
        }
        if !silences.insert(id) {
            return Err(format!("{id} appears twice"));
        }
        if silence.matchers.is_empty() {
            return Err(format!("{id} has no matchers"));
        }
        if silence.until <= now {
            return Err(format!(
                "{id} ended at {}, at or before the snapshot's time {now}, but is still active",
                silence.until
            ));
        }
        not_after_now(&format_args!("{id} created"), silence.created_at)?;
    }

    let mut firing: BTreeMap<Fingerprint, &AlertRecord> = BTreeMap::new();
    for record in &s.alerts {
        record
            .alert
            .validate()
            .map_err(|e| format!("alert {}: {e}", shorten(record.alert.name())))?;
        let fp = record.alert.fingerprint();
        if firing.insert(fp, record).is_some() {
            return Err(format!("two alerts under fingerprint {fp}"));
        }
    }
    for (&fp, record) in &firing {
        let name = format!("alert {fp}");
        not_after_now(&format_args!("{name} started"), record.started_at)?;
        if let Some(p) = &record.paged {
            not_after_now(&format_args!("{name}'s last page"), p.last_at)?;
            if p.first_at > p.last_at {
                return Err(format!(
                    "{name} was first paged at {} after its last page at {}",
                    p.first_at, p.last_at
                ));
            }
            if p.receivers.is_empty() {
                return Err(format!("{name} was paged but names no receiver"));
            }
        }
        if let Some(a) = &record.acknowledged {
            not_after_now(&format_args!("{name}'s acknowledgement"), a.at)?;
        }
        if record.deadline_at.is_none() && (record.paged.is_some() || record.acknowledged.is_some())
        {
            return Err(format!(
                "{name} was paged or acknowledged but has no deadline"
            ));
        }
        let expected = match (
            record.next.map(|d| d.action),
            &record.paged,
            &record.acknowledged,
        ) {
            (Some(Action::FirstPage), None, None) => Ok(()),
            (Some(Action::FirstPage), _, _) => {
                Err("a first page due, but it was paged or acknowledged")
            }
            (Some(Action::Escalate { level }), Some(p), None)
                if p.level.checked_add(1) == Some(level) =>
            {
                Ok(())
            }
            (Some(Action::Escalate { .. }), _, _) => Err(
                "an escalation due that is not to the level after its last, or while acknowledged",
            ),
            (Some(Action::Repage), _, Some(_)) => Ok(()),
            (Some(Action::Repage), _, None) => Err("a re-page due without an acknowledgement"),
            (None, Some(_), None) => Ok(()),
            (None, _, _) => Err("nothing due, yet it was never paged or is acknowledged"),
        };
        expected.map_err(|why| format!("{name} has {why}"))?;
        match (&record.held, record.next) {
            (Some(reason), Some(due)) => {
                if due.at > now {
                    return Err(format!(
                        "{name} is held ({reason}) but its {} is not due until {}, after the \
                         snapshot's time {now}",
                        due.action, due.at
                    ));
                }
                match reason {
                    SuppressReason::Silenced { silence } if silences.contains(silence) => {}
                    SuppressReason::Inhibited { by, .. }
                        if *by != fp && firing.contains_key(by) => {}
                    _ => {
                        return Err(format!(
                            "{name} is held by {reason}, which is not an active silence or \
                             another firing alert"
                        ));
                    }
                }
            }
            (Some(reason), None) => {
                return Err(format!("{name} is held ({reason}) with nothing due"));
            }
            (None, Some(due)) if due.at <= now => {
                // Either side may be what was changed: both times are named.
                return Err(format!(
                    "{name}'s {} fell due at {}, at or before the snapshot's time {now}, but \
                     was neither done nor held",
                    due.action, due.at
                ));
            }
            (None, _) => {}
        }
    }

    if let Some(fp) = s.cascades.iter().find(|fp| !firing.contains_key(fp)) {
        return Err(format!("cascade alert {fp} is not firing"));
    }
    for (list, what) in [(&s.history, "history"), (&s.outbox, "outbox")] {
        let mut last = (0u64, Timestamp::EPOCH);
        for n in list {
            if n.seq <= last.0 || n.seq > s.last_seq {
                return Err(format!(
                    "{what} notification #{} is out of order or past the last issued ({})",
                    n.seq, s.last_seq
                ));
            }
            if n.at < last.1 {
                return Err(format!("{what} notification #{} goes back in time", n.seq));
            }
            not_after_now(&format_args!("{what} notification #{}", n.seq), n.at)?;
            last = (n.seq, n.at);
        }
    }
    Ok(())
}
