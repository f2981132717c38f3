//! Recurring maintenance items and when they fall due: [`TimeOfDay`], [`Weekday`],
//! [`Recurrence`], [`ScheduleItem`], [`Schedule`] (the procedures' checklists by
//! default).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{SECS_PER_DAY, Timestamp, civil_from_days, days_from_civil, days_in_month};
use crate::serde_util::duration_ms;

use super::error::{MaintenanceError, shown};

const DAY: i64 = SECS_PER_DAY as i64;
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The longest item name, in bytes.
pub const MAX_ITEM_NAME_LEN: usize = 200;

/// A time of day in UTC, to the minute: when an item falls due on its day.
///
/// Serde writes it `"HH:MM"` (two digits each), and reading refuses an hour above 23
/// or a minute above 59.
///
/// ```
/// use concord::maintenance::TimeOfDay;
///
/// let at: TimeOfDay = "06:30".parse()?;
/// assert_eq!((at.hour(), at.minute()), (6, 30));
/// assert_eq!(at.to_string(), "06:30");
/// assert!("24:00".parse::<TimeOfDay>().is_err());
/// # Ok::<(), concord::maintenance::MaintenanceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
}

impl TimeOfDay {
    /// Midnight, `00:00`.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay { hour: 0, minute: 0 };

    /// `hour:minute` UTC.
    ///
    /// # Errors
    /// [`MaintenanceError::InvalidHour`] above 23, [`MaintenanceError::InvalidMinute`]
    /// above 59.
    pub fn new(hour: u8, minute: u8) -> Result<TimeOfDay, MaintenanceError> {
        if hour > 23 {
            return Err(MaintenanceError::InvalidHour { hour });
        }
        if minute > 59 {
            return Err(MaintenanceError::InvalidMinute { minute });
        }
        Ok(TimeOfDay { hour, minute })
    }

    /// The hour, 0 to 23.
    #[must_use]
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// The minute, 0 to 59.
    #[must_use]
    pub fn minute(self) -> u8 {
        self.minute
    }

    /// Seconds after midnight.
    fn secs(self) -> i64 {
        i64::from(self.hour) * 3600 + i64::from(self.minute) * 60
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = MaintenanceError;

    /// Reads `HH:MM`, two digits each.
    fn from_str(text: &str) -> Result<TimeOfDay, MaintenanceError> {
        let malformed = || MaintenanceError::MalformedTime { text: shown(text) };
        let b = text.as_bytes();
        if b.len() != 5 || b[2] != b':' {
            return Err(malformed());
        }
        let two = |hi: u8, lo: u8| {
            if hi.is_ascii_digit() && lo.is_ascii_digit() {
                Ok((hi - b'0') * 10 + (lo - b'0'))
            } else {
                Err(malformed())
            }
        };
        TimeOfDay::new(two(b[0], b[1])?, two(b[3], b[4])?)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = MaintenanceError;
    fn try_from(text: String) -> Result<TimeOfDay, MaintenanceError> {
        text.parse()
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        t.to_string()
    }
}

/// A day of the week. Serde writes it in lowercase (`"monday"`).
///
/// ```
/// use concord::maintenance::Weekday;
/// use concord::Timestamp;
///
/// assert_eq!(Weekday::of(Timestamp::EPOCH), Weekday::Thursday); // 1970-01-01
/// assert_eq!(Weekday::try_from(1)?, Weekday::Monday); // ISO 8601 numbers
/// assert!(Weekday::try_from(9).is_err());
/// # Ok::<(), concord::maintenance::MaintenanceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday, ISO day 1.
    Monday,
    /// Tuesday, ISO day 2.
    Tuesday,
    /// Wednesday, ISO day 3.
    Wednesday,
    /// Thursday, ISO day 4.
    Thursday,
    /// Friday, ISO day 5.
    Friday,
    /// Saturday, ISO day 6.
    Saturday,
    /// Sunday, ISO day 7.
    Sunday,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The day of the week of `t`, in UTC.
    #[must_use]
    pub fn of(t: Timestamp) -> Weekday {
        Weekday::ALL[weekday_index(unix_day(t))]
    }

    /// The ISO 8601 number: 1 for Monday to 7 for Sunday.
    #[must_use]
    pub fn number(self) -> u8 {
        self as u8 + 1
    }
}

impl TryFrom<u8> for Weekday {
    type Error = MaintenanceError;

    /// The day of ISO 8601 number `n`: 1 for Monday to 7 for Sunday.
    fn try_from(n: u8) -> Result<Weekday, MaintenanceError> {
        match n {
            1..=7 => Ok(Weekday::ALL[usize::from(n - 1)]),
            _ => Err(MaintenanceError::InvalidWeekday { weekday: n }),
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// When an item recurs: every day, every week on one day, or every month on one day,
/// at a [`TimeOfDay`] in UTC.
///
/// A monthly item on a day that a month lacks (the 31st in April, the 29th in a
/// February outside leap years) falls due on that month's last day instead: "the
/// 31st" means "the end of the month", never "skip this month".
///
/// Build one with [`daily`](Recurrence::daily), [`weekly`](Recurrence::weekly) or
/// [`monthly`](Recurrence::monthly) (the variants cannot be written outside the crate,
/// so a day of month is always checked). Serde writes it tagged by `every`:
/// `{"every": "day", "at": "06:00"}`, `{"every": "week", "on": "monday", "at":
/// "06:00"}`, `{"every": "month", "day": 1, "at": "06:00"}`; reading checks the day.
///
/// Calendar dates come from the timestamp's Unix time by Howard Hinnant's
/// `civil_from_days` and `days_from_civil` (the proleptic Gregorian calendar, leap
/// years included); no time zone database is involved. For a fixed local offset,
/// convert the local time to UTC when writing the schedule.
///
/// ```
/// use concord::maintenance::{Recurrence, TimeOfDay};
/// use concord::Timestamp;
///
/// let end_of_month = Recurrence::monthly(31, TimeOfDay::new(6, 0)?)?;
/// let t: Timestamp = "2024-02-10T00:00:00Z".parse().unwrap();
/// // February 2024 has 29 days: the 31st is clamped to the 29th.
/// assert_eq!(end_of_month.next_after(t), "2024-02-29T06:00:00Z".parse().ok());
/// assert_eq!(end_of_month.last_at_or_before(t), "2024-01-31T06:00:00Z".parse().ok());
/// # Ok::<(), concord::maintenance::MaintenanceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "every", try_from = "RecurrenceDef")]
#[non_exhaustive]
pub enum Recurrence {
    /// Every day at `at`.
    #[serde(rename = "day")]
    #[non_exhaustive]
    Daily {
        /// The time of day.
        at: TimeOfDay,
    },
    /// Every week on `on`, at `at`.
    #[serde(rename = "week")]
    #[non_exhaustive]
    Weekly {
        /// The day of the week.
        on: Weekday,
        /// The time of day.
        at: TimeOfDay,
    },
    /// Every month on `day` (1 to 31; the month's last day when it has fewer), at
    /// `at`.
    #[serde(rename = "month")]
    #[non_exhaustive]
    Monthly {
        /// The day of the month, 1 to 31.
        day: u8,
        /// The time of day.
        at: TimeOfDay,
    },
}

/// What serde reads, before [`Recurrence`] checks it.
#[derive(Deserialize)]
#[serde(tag = "every", deny_unknown_fields)]
enum RecurrenceDef {
    #[serde(rename = "day")]
    Daily { at: TimeOfDay },
    #[serde(rename = "week")]
    Weekly { on: Weekday, at: TimeOfDay },
    #[serde(rename = "month")]
    Monthly { day: u8, at: TimeOfDay },
}

impl TryFrom<RecurrenceDef> for Recurrence {
    type Error = MaintenanceError;
    fn try_from(def: RecurrenceDef) -> Result<Recurrence, MaintenanceError> {
        match def {
            RecurrenceDef::Daily { at } => Ok(Recurrence::daily(at)),
            RecurrenceDef::Weekly { on, at } => Ok(Recurrence::weekly(on, at)),
            RecurrenceDef::Monthly { day, at } => Recurrence::monthly(day, at),
        }
    }
}

impl Recurrence {
    /// Every day at `at` UTC.
    #[must_use]
    pub fn daily(at: TimeOfDay) -> Recurrence {
        Recurrence::Daily { at }
    }

    /// Every week on `on`, at `at` UTC.
    #[must_use]
    pub fn weekly(on: Weekday, at: TimeOfDay) -> Recurrence {
        Recurrence::Weekly { on, at }
    }

    /// Every month on `day`, at `at` UTC; on the month's last day in months shorter
    /// than `day`.
    ///
    /// # Errors
    /// [`MaintenanceError::InvalidDayOfMonth`] for a day outside 1 to 31.
    pub fn monthly(day: u8, at: TimeOfDay) -> Result<Recurrence, MaintenanceError> {
        if !(1..=31).contains(&day) {
            return Err(MaintenanceError::InvalidDayOfMonth { day });
        }
        Ok(Recurrence::Monthly { day, at })
    }

    /// The time of day it falls due.
    #[must_use]
    pub fn at(&self) -> TimeOfDay {
        match *self {
            Recurrence::Daily { at }
            | Recurrence::Weekly { at, .. }
            | Recurrence::Monthly { at, .. } => at,
        }
    }

    /// The shortest interval between two occurrences: a day, a week, or 28 days (the
    /// 28th of February to the 28th of March, or the 31st of January clamped to the
    /// 28th of February). No grace period may be longer.
    #[must_use]
    pub fn shortest_interval(&self) -> Duration {
        let days = match self {
            Recurrence::Daily { .. } => 1,
            Recurrence::Weekly { .. } => 7,
            Recurrence::Monthly { .. } => 28,
        };
        Duration::from_secs(days * SECS_PER_DAY)
    }

    /// The first occurrence strictly after `t`, or `None` past [`Timestamp::MAX`].
    ///
    /// # Complexity
    /// O(1): calendar arithmetic, no iteration over days.
    #[must_use]
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let day = unix_day(t);
        let tod = self.at().secs();
        let secs = match *self {
            Recurrence::Daily { .. } => {
                let c = day * DAY + tod;
                if after(c, t) { c } else { c + DAY }
            }
            Recurrence::Weekly { on, .. } => {
                let ahead = (on as i64 - weekday_index(day) as i64).rem_euclid(7);
                let c = (day + ahead) * DAY + tod;
                if after(c, t) { c } else { c + 7 * DAY }
            }
            Recurrence::Monthly { day: dom, .. } => {
                let (mut y, mut m) = year_month(day);
                let mut c = monthly_at(y, m, dom, tod);
                if !after(c, t) {
                    (y, m) = next_month(y, m);
                    c = monthly_at(y, m, dom, tod);
                }
                c
            }
        };
        timestamp(secs)
    }

    /// The latest occurrence at or before `t`, or `None` before the first one after
    /// the epoch.
    ///
    /// # Complexity
    /// O(1).
    #[must_use]
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let day = unix_day(t);
        let tod = self.at().secs();
        let secs = match *self {
            Recurrence::Daily { .. } => {
                let c = day * DAY + tod;
                if after(c, t) { c - DAY } else { c }
            }
            Recurrence::Weekly { on, .. } => {
                let back = (weekday_index(day) as i64 - on as i64).rem_euclid(7);
                let c = (day - back) * DAY + tod;
                if after(c, t) { c - 7 * DAY } else { c }
            }
            Recurrence::Monthly { day: dom, .. } => {
                let (mut y, mut m) = year_month(day);
                let mut c = monthly_at(y, m, dom, tod);
                if after(c, t) {
                    (y, m) = previous_month(y, m);
                    c = monthly_at(y, m, dom, tod);
                }
                c
            }
        };
        timestamp(secs)
    }

    /// The checklist this recurrence belongs to: `"Daily"`, `"Weekly"` or
    /// `"Monthly"`.
    pub(super) fn checklist(&self) -> &'static str {
        match self {
            Recurrence::Daily { .. } => "Daily",
            Recurrence::Weekly { .. } => "Weekly",
            Recurrence::Monthly { .. } => "Monthly",
        }
    }
}

impl fmt::Display for Recurrence {
    /// `daily at 06:00 UTC`, `weekly on Monday at 06:00 UTC`, `monthly on the 31st at
    /// 06:00 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Recurrence::Daily { at } => write!(f, "daily at {at} UTC"),
            Recurrence::Weekly { on, at } => write!(f, "weekly on {on} at {at} UTC"),
            Recurrence::Monthly { day, at } => {
                let suffix = match (day % 10, day % 100) {
                    (_, 11..=13) => "th",
                    (1, _) => "st",
                    (2, _) => "nd",
                    (3, _) => "rd",
                    _ => "th",
                };
                write!(f, "monthly on the {day}{suffix} at {at} UTC")
            }
        }
    }
}

/// The day `t` falls on, counted from 1970-01-01 (day 0).
fn unix_day(t: Timestamp) -> i64 {
    // u64 nanoseconds / 1e9 / 86 400 is below 2^18: no overflow into i64.
    (t.as_nanos() / 1_000_000_000 / SECS_PER_DAY) as i64
}

/// The weekday of Unix day `day`, Monday = 0: day 0 (1970-01-01) was a Thursday.
fn weekday_index(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Whether the occurrence at `secs` seconds after the epoch comes strictly after `t`.
fn after(secs: i64, t: Timestamp) -> bool {
    i128::from(secs) * NANOS_PER_SEC > i128::from(t.as_nanos())
}

/// The timestamp `secs` seconds after the epoch, if a timestamp can hold it.
fn timestamp(secs: i64) -> Option<Timestamp> {
    let nanos = i128::from(secs) * NANOS_PER_SEC;
    u64::try_from(nanos).ok().map(Timestamp::from_nanos)
}

/// The year and month of Unix day `day` (not negative).
fn year_month(day: i64) -> (i64, i64) {
    let (y, m, _) = civil_from_days(day.max(0) as u64);
    (y as i64, m as i64)
}

fn next_month(y: i64, m: i64) -> (i64, i64) {
    if m == 12 { (y + 1, 1) } else { (y, m + 1) }
}

fn previous_month(y: i64, m: i64) -> (i64, i64) {
    if m == 1 { (y - 1, 12) } else { (y, m - 1) }
}

/// Seconds after the epoch of day `dom` of month `m` of year `y` (clamped to the
/// month's last day, and to the 1st for a day 0 that checks would have refused), at
/// `tod` seconds after midnight. Negative before the epoch.
fn monthly_at(y: i64, m: i64, dom: u8, tod: i64) -> i64 {
    let d = i64::from(dom).clamp(1, days_in_month(y, m));
    days_from_civil(y, m, d) * DAY + tod
}

/// One recurring maintenance item: a name, when it recurs, and how long after it
/// falls due it may wait before it is overdue.
///
/// Serde: `{"name": "Security audit", "when": {"every": "month", "day": 1, "at":
/// "06:00"}, "grace": 432000000}` (the grace in milliseconds); reading checks it as
/// [`new`](ScheduleItem::new) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleItemDef")]
pub struct ScheduleItem {
    name: String,
    when: Recurrence,
    #[serde(with = "duration_ms")]
    grace: Duration,
}

/// What serde reads, before [`ScheduleItem`] checks it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleItemDef {
    name: String,
    when: Recurrence,
    #[serde(with = "duration_ms")]
    grace: Duration,
}

impl TryFrom<ScheduleItemDef> for ScheduleItem {
    type Error = MaintenanceError;
    fn try_from(def: ScheduleItemDef) -> Result<ScheduleItem, MaintenanceError> {
        ScheduleItem::new(def.name, def.when, def.grace)
    }
}

impl ScheduleItem {
    /// The item `name`, due `when`, overdue `grace` after it fell due.
    ///
    /// # Errors
    /// [`MaintenanceError::InvalidName`] for a name that is empty (or only
    /// whitespace), starts or ends with whitespace, is longer than
    /// [`MAX_ITEM_NAME_LEN`] bytes, or holds a control or invisible character (as a
    /// label may not, see [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN));
    /// [`MaintenanceError::ZeroGrace`]; [`MaintenanceError::GraceTooLong`] for a
    /// grace longer than [`Recurrence::shortest_interval`].
    pub fn new(
        name: impl Into<String>,
        when: Recurrence,
        grace: Duration,
    ) -> Result<ScheduleItem, MaintenanceError> {
        let name = name.into();
        let problem = if name.trim().is_empty() {
            Some("it is empty")
        } else if name.trim() != name {
            // "a" and "a " would be two items that read the same in every report.
            Some("it starts or ends with whitespace")
        } else if name.len() > MAX_ITEM_NAME_LEN {
            Some("it is longer than 200 bytes")
        } else if name.chars().any(crate::id::is_control_or_invisible) {
            // "backup" and "backup" with a zero-width space would be two items that
            // read the same, as with whitespace.
            Some("it holds a control or invisible character")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(MaintenanceError::InvalidName {
                name: shown(&name),
                problem,
            });
        }
        if grace.is_zero() {
            return Err(MaintenanceError::ZeroGrace { item: name });
        }
        let period = when.shortest_interval();
        if grace > period {
            return Err(MaintenanceError::GraceTooLong {
                item: name,
                grace,
                period,
            });
        }
        Ok(ScheduleItem { name, when, grace })
    }

    /// The item's name, as the checklist says it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it recurs.
    #[must_use]
    pub fn when(&self) -> Recurrence {
        self.when
    }

    /// How long after falling due it becomes overdue.
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

/// The maintenance checklists: recurring items with unique names, in order.
///
/// [`Schedule::default`] is the operating procedures' regular maintenance tasks: the
/// daily checklist at 06:00 UTC with four hours' grace, the weekly one on Mondays at
/// 06:00 UTC with two days', and the monthly one on the 1st at 06:00 UTC with five
/// days'. (The procedures name the items, not the times: those are ours, and serde
/// data, so load your own.)
///
/// Serde: `{"items": [...]}` of [`ScheduleItem`]s; reading refuses a name used twice.
///
/// ```
/// use concord::maintenance::Schedule;
///
/// let schedule = Schedule::default();
/// assert_eq!(schedule.len(), 15);
/// assert!(schedule.get("Verify agent connectivity").is_some());
/// let json = serde_json::to_string(&schedule).unwrap();
/// assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "ScheduleDef")]
pub struct Schedule {
    items: Vec<ScheduleItem>,
    /// Each item's index by name: what the duplicate check and every lookup by name
    /// use, so that a schedule read from a file of many items, and a tracker
    /// restored over it, cost one lookup per item rather than a scan. Follows from
    /// `items`, so it is neither serialized nor compared.
    #[serde(skip)]
    by_name: HashMap<String, usize>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.items == other.items
    }
}

impl Eq for Schedule {}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("items", &self.items)
            .finish()
    }
}

impl Default for Schedule {
    /// The procedures' checklists: [`Schedule::procedures`].
    fn default() -> Schedule {
        Schedule::procedures()
    }
}

/// What serde reads, before [`Schedule`] checks it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleDef {
    items: Vec<ScheduleItem>,
}

impl TryFrom<ScheduleDef> for Schedule {
    type Error = MaintenanceError;
    fn try_from(def: ScheduleDef) -> Result<Schedule, MaintenanceError> {
        Schedule::from_items(def.items)
    }
}

/// The procedures' daily maintenance items.
pub const DAILY_CHECKLIST: [&str; 5] = [
    "Review overnight logs for errors",
    "Check resource usage trends",
    "Verify agent connectivity",
    "Monitor conflict resolution metrics",
    "Clean up temporary files",
];

/// The procedures' weekly maintenance items.
pub const WEEKLY_CHECKLIST: [&str; 5] = [
    "Analyze performance trends",
    "Review memory system efficiency",
    "Update coordination patterns",
    "Backup system configuration",
    "Test disaster recovery procedures",
];

/// The procedures' monthly maintenance items.
pub const MONTHLY_CHECKLIST: [&str; 5] = [
    "Comprehensive performance review",
    "Update documentation",
    "Review and update policies",
    "Capacity planning assessment",
    "Security audit",
];

impl Schedule {
    /// A schedule with no items.
    #[must_use]
    pub fn new() -> Schedule {
        Schedule {
            items: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// The schedule of `items`, in order.
    ///
    /// # Errors
    /// [`MaintenanceError::DuplicateItem`] for a name used twice (the first item
    /// whose name an earlier one has).
    ///
    /// # Complexity
    /// O(n) expected: one hash lookup per item.
    pub fn from_items(
        items: impl IntoIterator<Item = ScheduleItem>,
    ) -> Result<Schedule, MaintenanceError> {
        let mut schedule = Schedule::new();
        for item in items {
            schedule.push(item)?;
        }
        Ok(schedule)
    }

    /// Adds `item` at the end.
    ///
    /// # Errors
    /// [`MaintenanceError::DuplicateItem`] if an item has its name; the schedule is
    /// unchanged.
    pub fn push(&mut self, item: ScheduleItem) -> Result<(), MaintenanceError> {
        match self.by_name.entry(item.name.clone()) {
            Entry::Occupied(_) => Err(MaintenanceError::DuplicateItem {
                name: shown(item.name()),
            }),
            Entry::Vacant(slot) => {
                slot.insert(self.items.len());
                self.items.push(item);
                Ok(())
            }
        }
    }

    /// The procedures' checklists, as [`Schedule::default`] (see [`Schedule`]).
    #[must_use]
    pub fn procedures() -> Schedule {
        const HOUR: u64 = 3600;
        let six = TimeOfDay { hour: 6, minute: 0 };
        let lists = [
            (
                &DAILY_CHECKLIST,
                Recurrence::daily(six),
                Duration::from_secs(4 * HOUR),
            ),
            (
                &WEEKLY_CHECKLIST,
                Recurrence::weekly(Weekday::Monday, six),
                Duration::from_secs(2 * 24 * HOUR),
            ),
            (
                &MONTHLY_CHECKLIST,
                Recurrence::Monthly { day: 1, at: six },
                Duration::from_secs(5 * 24 * HOUR),
            ),
        ];
        let items = lists.into_iter().flat_map(|(names, when, grace)| {
            names.iter().map(move |name| ScheduleItem {
                name: (*name).to_owned(),
                when,
                grace,
            })
        });
        let mut schedule = Schedule::new();
        for item in items {
            // The checklists' names are distinct: nothing is refused here.
            let _ = schedule.push(item);
        }
        schedule
    }

    /// The items, in order.
    #[must_use]
    pub fn items(&self) -> &[ScheduleItem] {
        &self.items
    }

    /// The item named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&ScheduleItem> {
        self.position(name).map(|i| &self.items[i])
    }

    /// How many items it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds no item.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The index of the item named `name`.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}
