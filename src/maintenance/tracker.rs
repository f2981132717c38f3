//! [`Maintenance`]: which items are due, which are overdue, which are done, and when
//! the answer next changes.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::serde_util::duration_ms;
use crate::text::markdown_line;

use super::error::{MaintenanceError, shown};
use super::schedule::{Schedule, ScheduleItem};

/// The [`MaintenanceSnapshot`] version this build writes and reads.
pub const MAINTENANCE_SNAPSHOT_VERSION: u32 = 1;

/// One item done: what, when, by whom, with what note. Serde data, for the host's
/// journal or audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Completion {
    /// The item's name.
    pub item: String,
    /// When it was done.
    pub at: Timestamp,
    /// Who did it (a person, an agent, the host's control loop).
    pub by: String,
    /// What they found or did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The occurrence it answered: the earliest one that had fallen due and was not
    /// yet done. `None` when the item was done ahead of its next occurrence (which
    /// then still falls due: doing a daily item early does not skip a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<Timestamp>,
}

/// An item that has fallen due and is not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DueItem {
    /// The item's name.
    pub item: String,
    /// Since when it has been due: its earliest occurrence not yet done (after
    /// missed occurrences, the first one missed).
    pub since: Timestamp,
    /// When its grace period ends and it becomes overdue.
    pub deadline: Timestamp,
    /// Whether the grace period has ended.
    pub overdue: bool,
}

/// An item whose grace period has ended without it being done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Overdue {
    /// The item's name.
    pub item: String,
    /// Since when it has been due.
    pub since: Timestamp,
    /// When its grace period ended.
    pub deadline: Timestamp,
    /// How late it is: the time since `deadline`.
    #[serde(with = "duration_ms")]
    pub late_by: Duration,
}

/// Where one item stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemStatus {
    /// Never done, and nothing has fallen due since tracking began.
    Upcoming,
    /// Done, and nothing has fallen due since.
    Done {
        /// When it was last done.
        at: Timestamp,
    },
    /// Due, within its grace period.
    Due {
        /// Since when.
        since: Timestamp,
        /// When the grace period ends.
        deadline: Timestamp,
    },
    /// Due, past its grace period.
    Overdue {
        /// Since when it has been due.
        since: Timestamp,
        /// When the grace period ended.
        deadline: Timestamp,
        /// The time since `deadline`.
        #[serde(with = "duration_ms")]
        late_by: Duration,
    },
}

/// The tracker's state as plain data: when tracking began and each item's last
/// completion. The schedule is configuration, not state: [`Maintenance::restore`]
/// takes it separately, so that a host may change its schedule across a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceSnapshot {
    /// [`MAINTENANCE_SNAPSHOT_VERSION`] when written.
    pub version: u32,
    /// When tracking began.
    pub start: Timestamp,
    /// Each item's last completion, in schedule order.
    #[serde(default)]
    pub completions: Vec<Completion>,
}

/// The maintenance tracker: a [`Schedule`] and each item's last completion.
///
/// # Rules
/// - An item falls due at each occurrence of its [`Recurrence`](super::Recurrence)
///   strictly after tracking began ([`Maintenance::new`]'s `start`) and strictly after
///   its last completion. Occurrences before `start` never count: start tracking
///   earlier to have the current period's items due at once.
/// - One completion answers every occurrence at or before it: a daily item missed for
///   three days is done once, not three times.
/// - A due item is overdue from the moment its grace period, counted from the
///   earliest occurrence not done, has ended.
///
/// Sans-I/O: every call takes `now`. A driver wakes at
/// [`poll_timeout`](Maintenance::poll_timeout), reads [`due`](Maintenance::due) and
/// [`overdue`](Maintenance::overdue), and journals each [`Completion`] (or a
/// [`snapshot`](Maintenance::snapshot)) so that completions survive a restart.
///
/// # Complexity
/// Every query is O(items): calendar arithmetic per item, no iteration over days.
#[derive(Debug, Clone)]
pub struct Maintenance {
    schedule: Schedule,
    start: Timestamp,
    /// Each item's last completion, by index into the schedule.
    last: Vec<Option<Completion>>,
}

impl Maintenance {
    /// Tracks `schedule` from `start`: occurrences after it fall due.
    #[must_use]
    pub fn new(schedule: Schedule, start: Timestamp) -> Maintenance {
        let last = vec![None; schedule.len()];
        Maintenance {
            schedule,
            start,
            last,
        }
    }

    /// Rebuilds a tracker of `schedule` from `snapshot`. Completions of items the
    /// schedule no longer has are dropped (a host may remove an item from its
    /// configuration); an item the snapshot does not know starts undone.
    ///
    /// # Errors
    /// [`MaintenanceError::UnsupportedSnapshot`] for another version;
    /// [`MaintenanceError::DuplicateItem`] for two completions of one item;
    /// [`MaintenanceError::ImpossibleCompletion`] for a completion answering an
    /// occurrence not after the start, or after the completion;
    /// [`MaintenanceError::NotANote`] for a `by` or `note` that `complete` would
    /// have cut to one line of at most [`MAX_NOTE_LEN`](crate::id::MAX_NOTE_LEN)
    /// bytes. A completion dated
    /// far ahead is the tracker's own doing when the host completed the item at such
    /// a time, and is kept: the item is then done until that time passes.
    ///
    /// # Complexity
    /// O(items + completions) expected: one lookup by name per completion.
    pub fn restore(
        schedule: Schedule,
        snapshot: &MaintenanceSnapshot,
    ) -> Result<Maintenance, MaintenanceError> {
        if snapshot.version != MAINTENANCE_SNAPSHOT_VERSION {
            return Err(MaintenanceError::UnsupportedSnapshot {
                version: snapshot.version,
                supported: MAINTENANCE_SNAPSHOT_VERSION,
            });
        }
        let mut tracker = Maintenance::new(schedule, snapshot.start);
        // A scheduled item's slot says whether it was seen; only the completions
        // dropped need a set of their own.
        let mut dropped = std::collections::HashSet::new();
        for c in &snapshot.completions {
            // The tracker answers an occurrence after its start, at or before the
            // completion (`complete`): anything else was written by someone else.
            if let Some(answered) = c.answered.filter(|&o| o <= snapshot.start || o > c.at) {
                return Err(MaintenanceError::ImpossibleCompletion {
                    item: shown(&c.item),
                    at: c.at,
                    answered,
                    start: snapshot.start,
                });
            }
            for (field, text) in [("by", &c.by), ("note", &c.note)] {
                if !crate::id::is_note(text) {
                    return Err(MaintenanceError::NotANote {
                        item: shown(&c.item),
                        field,
                        bytes: text.len(),
                    });
                }
            }
            let seen = match tracker.schedule.position(&c.item) {
                Some(i) => tracker.last[i].replace(c.clone()).is_some(),
                None => {
                    tracing::info!(
                        maintenance.item = %shown(&c.item),
                        "completion of an item no longer scheduled dropped"
                    );
                    !dropped.insert(c.item.as_str())
                }
            };
            if seen {
                return Err(MaintenanceError::DuplicateItem {
                    name: shown(&c.item),
                });
            }
        }
        Ok(tracker)
    }

    /// The tracker's state as plain data.
    #[must_use]
    pub fn snapshot(&self) -> MaintenanceSnapshot {
        MaintenanceSnapshot {
            version: MAINTENANCE_SNAPSHOT_VERSION,
            start: self.start,
            completions: self.last.iter().flatten().cloned().collect(),
        }
    }

    /// The schedule.
    #[must_use]
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// When tracking began.
    #[must_use]
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The last completion of `item`, if it was ever done.
    #[must_use]
    pub fn last_completion(&self, item: &str) -> Option<&Completion> {
        self.schedule
            .position(item)
            .and_then(|i| self.last[i].as_ref())
    }

    /// Marks `item` done at `now` by `by`, with `note`, and returns the
    /// [`Completion`] to journal. It answers every occurrence at or before `now`;
    /// the next one after `now` still falls due.
    ///
    /// # Errors
    /// [`MaintenanceError::UnknownItem`]; [`MaintenanceError::CompletedBeforeLast`] if
    /// `now` is before the item's last completion. The tracker is unchanged.
    pub fn complete(
        &mut self,
        item: &str,
        now: Timestamp,
        by: impl Into<String>,
        note: impl Into<String>,
    ) -> Result<Completion, MaintenanceError> {
        let i = self.index(item)?;
        if let Some(last) = self.last[i].as_ref().filter(|last| last.at > now) {
            return Err(MaintenanceError::CompletedBeforeLast {
                item: last.item.clone(),
                at: now,
                last: last.at,
            });
        }
        let answered = self.pending_since(i).filter(|&since| since <= now);
        let completion = Completion {
            item: self.schedule.items()[i].name().to_owned(),
            at: now,
            // Notes: copied into every report and snapshot.
            by: crate::id::note(by),
            note: crate::id::note(note),
            answered,
        };
        tracing::debug!(
            maintenance.item = %completion.item,
            maintenance.by = %completion.by,
            "maintenance item done"
        );
        self.last[i] = Some(completion.clone());
        Ok(completion)
    }

    /// Where `item` stands at `now`.
    ///
    /// # Errors
    /// [`MaintenanceError::UnknownItem`].
    pub fn status(&self, item: &str, now: Timestamp) -> Result<ItemStatus, MaintenanceError> {
        Ok(self.state(self.index(item)?, now))
    }

    /// The items due at `now` (overdue ones included), in schedule order, each with
    /// since when.
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Vec<DueItem> {
        (0..self.schedule.len())
            .filter_map(|i| {
                let (since, deadline, overdue) = match self.state(i, now) {
                    ItemStatus::Due { since, deadline } => (since, deadline, false),
                    ItemStatus::Overdue {
                        since, deadline, ..
                    } => (since, deadline, true),
                    _ => return None,
                };
                Some(DueItem {
                    item: self.schedule.items()[i].name().to_owned(),
                    since,
                    deadline,
                    overdue,
                })
            })
            .collect()
    }

    /// The items past their grace period at `now`, in schedule order, each with how
    /// late it is.
    #[must_use]
    pub fn overdue(&self, now: Timestamp) -> Vec<Overdue> {
        (0..self.schedule.len())
            .filter_map(|i| match self.state(i, now) {
                ItemStatus::Overdue {
                    since,
                    deadline,
                    late_by,
                } => Some(Overdue {
                    item: self.schedule.items()[i].name().to_owned(),
                    since,
                    deadline,
                    late_by,
                }),
                _ => None,
            })
            .collect()
    }

    /// The next occurrence of any item strictly after `now`: when the schedule next
    /// says "do this". `None` for an empty schedule (or past [`Timestamp::MAX`]).
    #[must_use]
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.schedule
            .items()
            .iter()
            .filter_map(|item| item.when().next_after(now))
            .min()
    }

    /// The earliest time strictly after `now` at which [`due`](Self::due) or
    /// [`overdue`](Self::overdue) answer differently with no completion in between:
    /// an item not due now falls due, or a due item's grace period ends. A driver
    /// sleeps until then. `None` when nothing will change without a completion.
    #[must_use]
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        (0..self.schedule.len())
            .filter_map(|i| match self.state(i, now) {
                ItemStatus::Due { deadline, .. } => Some(deadline),
                ItemStatus::Overdue { .. } => None,
                _ => self.pending_since(i),
            })
            .min()
    }

    /// The checklists as Markdown at `now`: a heading with the counts, then each
    /// checklist (daily, weekly, monthly) with its items marked done (`[x]`), due or
    /// overdue (`[ ]`), with times, who did them and their notes. Item names, who did
    /// them and their notes are flattened to one line (each control or invisible
    /// character a space) and escaped for HTML (`<`, `>`, `&`) and table pipes, as
    /// the health and incident reports escape them, so the host's text cannot add
    /// lines or markup to the page, nor show the rest of a line reversed.
    #[must_use]
    pub fn report(&self, now: Timestamp) -> String {
        let states: Vec<ItemStatus> = (0..self.schedule.len())
            .map(|i| self.state(i, now))
            .collect();
        let count = |f: fn(&ItemStatus) -> bool| states.iter().filter(|s| f(s)).count();
        let mut out = format!(
            "## Maintenance, {now}: {} overdue, {} due, {} done, of {}\n",
            count(|s| matches!(s, ItemStatus::Overdue { .. })),
            count(|s| matches!(s, ItemStatus::Due { .. })),
            count(|s| matches!(s, ItemStatus::Done { .. })),
            states.len()
        );
        for checklist in ["Daily", "Weekly", "Monthly"] {
            let mut first = true;
            for (i, item) in self.schedule.items().iter().enumerate() {
                if item.when().checklist() != checklist {
                    continue;
                }
                if first {
                    let _ = write!(out, "\n### {checklist} maintenance\n\n");
                    first = false;
                }
                self.report_line(&mut out, i, item, states[i], now);
            }
        }
        out
    }

    fn report_line(
        &self,
        out: &mut String,
        i: usize,
        item: &ScheduleItem,
        state: ItemStatus,
        now: Timestamp,
    ) {
        let mark = if matches!(state, ItemStatus::Done { .. }) {
            'x'
        } else {
            ' '
        };
        let _ = write!(
            out,
            "- [{mark}] {} ({})",
            markdown_line(item.name()),
            item.when()
        );
        match state {
            ItemStatus::Upcoming => {
                let _ = write!(out, ": not yet due");
            }
            ItemStatus::Done { at } => {
                let _ = write!(out, ": done {at}");
            }
            ItemStatus::Due { since, deadline } => {
                let _ = write!(
                    out,
                    ": due since {since}, overdue in {}",
                    human(deadline.duration_since(now))
                );
            }
            ItemStatus::Overdue { since, late_by, .. } => {
                let _ = write!(
                    out,
                    ": **overdue** by {}, due since {since}",
                    human(late_by)
                );
            }
        }
        if let Some(c) = &self.last[i] {
            if !matches!(state, ItemStatus::Done { .. }) {
                let _ = write!(out, "; last done {}", c.at);
            }
            if !c.by.is_empty() {
                let _ = write!(out, " by {}", markdown_line(&c.by));
            }
            if !c.note.is_empty() {
                let _ = write!(out, " ({})", markdown_line(&c.note));
            }
        }
        if matches!(state, ItemStatus::Upcoming | ItemStatus::Done { .. }) {
            if let Some(next) = self.pending_since(i) {
                let _ = write!(out, "; next due {next}");
            }
        }
        out.push('\n');
    }

    fn index(&self, item: &str) -> Result<usize, MaintenanceError> {
        self.schedule
            .position(item)
            .ok_or_else(|| MaintenanceError::UnknownItem { name: shown(item) })
    }

    /// The earliest occurrence of item `i` not yet answered: the first after both
    /// the start and its last completion.
    fn pending_since(&self, i: usize) -> Option<Timestamp> {
        let covered = match &self.last[i] {
            Some(c) => c.at.max(self.start),
            None => self.start,
        };
        self.schedule.items()[i].when().next_after(covered)
    }

    fn state(&self, i: usize, now: Timestamp) -> ItemStatus {
        match self.pending_since(i) {
            Some(since) if since <= now => {
                let deadline = since.saturating_add(self.schedule.items()[i].grace());
                if now >= deadline {
                    ItemStatus::Overdue {
                        since,
                        deadline,
                        late_by: now.duration_since(deadline),
                    }
                } else {
                    ItemStatus::Due { since, deadline }
                }
            }
            _ => match &self.last[i] {
                Some(c) => ItemStatus::Done { at: c.at },
                None => ItemStatus::Upcoming,
            },
        }
    }
}

/// A duration as people write it: "45 s", "12 min", "3 h 5 min", "2 d 3 h".
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{minutes} min"),
        3600..86_400 if minutes == 0 => format!("{hours} h"),
        3600..86_400 => format!("{hours} h {minutes} min"),
        _ if hours == 0 => format!("{days} d"),
        _ => format!("{days} d {hours} h"),
    }
}
