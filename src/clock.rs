//! Time, injected.
//!
//! Owns [`Timestamp`] and the [`Clock`] trait. Every engine in the crate takes the
//! current time as an argument (`now: Timestamp`) instead of reading a clock, so the
//! same inputs give the same outputs bit for bit. Only [`SystemClock`] reads the
//! system time; nothing else in the crate may. (Converting a [`SystemTime`] the host
//! already has into a [`Timestamp`] reads no clock.)

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: nanoseconds since the Unix epoch, in UTC.
///
/// Integer nanoseconds keep arithmetic exact and ordering total. The range runs from
/// the epoch, `1970-01-01T00:00:00Z`, to [`Timestamp::MAX`],
/// `2554-07-21T23:34:33.709551615Z`, and all arithmetic saturates instead of wrapping.
///
/// For people, a timestamp prints (and parses) as an RFC 3339 UTC date and time; for
/// storage, serde writes the bare integer of nanoseconds. It converts from and to
/// [`SystemTime`] (saturating at the ends of the range).
///
/// ```
/// use std::time::Duration;
/// use concord::Timestamp;
///
/// let t = Timestamp::from_secs(60);
/// assert_eq!(t + Duration::from_secs(30), Timestamp::from_secs(90));
/// assert_eq!(Timestamp::from_secs(90).duration_since(t), Duration::from_secs(30));
///
/// let release = Timestamp::from_millis(1_700_000_000_250);
/// assert_eq!(release.to_string(), "2023-11-14T22:13:20.250Z");
/// assert_eq!("2023-11-14T23:13:20.25+01:00".parse(), Ok(release));
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

/// A year (365 days): the longest wait or window a setting may ask for (alert
/// waits, step timeouts and backoffs, safe-mode windows). Past it a setting means
/// "never", which a configuration says by leaving the setting out, not by a number
/// no one will wait for.
pub(crate) const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(u64::MAX);
    /// The latest time a coordinator takes as "now": 2^63 nanoseconds after the
    /// epoch (2262-04-11T23:47:16.854775808Z), where signed 64-bit nanosecond clocks end.
    ///
    /// A coordinator never lets time go back, so one `now` far in the future (a
    /// saturated `now + Duration::MAX`, a corrupt clock reading) would refuse every
    /// later command at the real time for good. Times past the horizon are refused
    /// instead; the span above it is left to deadlines, which saturate at
    /// [`Timestamp::MAX`] to mean "never".
    pub const HORIZON: Timestamp = Timestamp(1 << 63);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(1_000_000))
    }

    /// A timestamp `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(nanos))
    }

    /// The same instant as a [`SystemTime`], for the host's own APIs.
    ///
    /// Exact: every platform's `SystemTime` spans the whole range of a `Timestamp`
    /// (the epoch to the year 2554).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use concord::Timestamp;
    ///
    /// let t = Timestamp::from_millis(1_700_000_000_250);
    /// assert_eq!(t.to_system_time(), UNIX_EPOCH + Duration::from_millis(1_700_000_000_250));
    /// assert_eq!(Timestamp::from(t.to_system_time()), t);
    /// ```
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    /// The same instant as a `Timestamp`, saturating: a time before the Unix epoch
    /// becomes [`Timestamp::EPOCH`], and one after [`Timestamp::MAX`] becomes `MAX`.
    /// (Conversion reads no clock; [`SystemClock`] is what reads one.)
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use concord::Timestamp;
    ///
    /// assert_eq!(Timestamp::from(UNIX_EPOCH + Duration::from_secs(90)), Timestamp::from_secs(90));
    /// assert_eq!(Timestamp::from(UNIX_EPOCH - Duration::from_secs(1)), Timestamp::EPOCH);
    /// ```
    fn from(time: SystemTime) -> Timestamp {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Timestamp> for SystemTime {
    /// [`Timestamp::to_system_time`].
    fn from(t: Timestamp) -> SystemTime {
        t.to_system_time()
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

/// `t += d`, saturating as `t + d` does.
///
/// ```
/// use std::time::Duration;
/// use concord::Timestamp;
///
/// let mut t = Timestamp::from_secs(60);
/// t += Duration::from_secs(30);
/// t -= Duration::from_secs(100);
/// assert_eq!(t, Timestamp::EPOCH);
/// ```
impl std::ops::AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// `t -= d`, saturating as `t - d` does.
impl std::ops::SubAssign<Duration> for Timestamp {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl fmt::Display for Timestamp {
    /// The RFC 3339 date and time in UTC, with milliseconds, or with nanoseconds when
    /// the instant is not a whole millisecond: `2023-11-14T22:13:20.250Z`,
    /// `2023-11-14T22:13:20.250000001Z`. [`FromStr`] reads it back exactly.
    ///
    /// For the time since some start, print a [`Duration`]:
    /// `{:?}` of [`Timestamp::duration_since`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / NANOS_PER_SEC;
        let nanos = self.0 % NANOS_PER_SEC;
        let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
        let of_day = secs % SECS_PER_DAY;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )?;
        if nanos % 1_000_000 == 0 {
            write!(f, ".{:03}Z", nanos / 1_000_000)
        } else {
            write!(f, ".{nanos:09}Z")
        }
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Reads an RFC 3339 date and time: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of
    /// a second (1 to 9 digits), then `Z` or an offset `+HH:MM` / `-HH:MM`, which is
    /// applied (the result is in UTC). `t` and `z` may be lowercase, as RFC 3339
    /// allows.
    ///
    /// # Errors
    /// [`ParseTimestampError::Malformed`] for text that is not such a date and time
    /// (including an impossible date such as February 30th, and a leap second, which
    /// a count of nanoseconds cannot hold); [`ParseTimestampError::OutOfRange`] for
    /// an instant before the epoch or after [`Timestamp::MAX`].
    ///
    /// ```
    /// use concord::Timestamp;
    /// use concord::clock::ParseTimestampError;
    ///
    /// let t: Timestamp = "2000-02-29T12:00:00Z".parse()?;
    /// assert_eq!(t, Timestamp::from_secs(951_825_600));
    /// assert!(matches!(
    ///     "1969-12-31T23:59:59Z".parse::<Timestamp>(),
    ///     Err(ParseTimestampError::OutOfRange { .. })
    /// ));
    /// # Ok::<(), ParseTimestampError>(())
    /// ```
    fn from_str(text: &str) -> Result<Timestamp, ParseTimestampError> {
        parse_rfc3339(text)
    }
}

/// Why text could not be read as a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseTimestampError {
    /// The text is not an RFC 3339 date and time.
    #[error("{input:?} is not an RFC 3339 date and time: {reason}")]
    Malformed {
        /// The text (its first 64 characters, when longer).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The text is a valid date and time that a [`Timestamp`] cannot hold.
    #[error(
        "{input:?} is outside the range of a timestamp, \
         1970-01-01T00:00:00Z to 2554-07-21T23:34:33.709551615Z"
    )]
    OutOfRange {
        /// The text.
        input: String,
    },
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
pub(crate) const SECS_PER_DAY: u64 = 86_400;

/// The proleptic Gregorian date `days` days after 1970-01-01, as (year, month, day).
///
/// Howard Hinnant's `civil_from_days`, from "chrono-Compatible Low-Level Date
/// Algorithms" (<https://howardhinnant.github.io/date_algorithms.html>), for
/// non-negative day counts: the calendar is counted in 400-year eras of 146,097 days,
/// from a year that starts on March 1st so that the leap day falls at its end.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The number of days from 1970-01-01 to the proleptic Gregorian date given (negative
/// before it): Hinnant's `days_from_civil`, the inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The number of days in `month` (1 to 12) of the proleptic Gregorian `year`.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn parse_rfc3339(text: &str) -> Result<Timestamp, ParseTimestampError> {
    let malformed = |reason| ParseTimestampError::Malformed {
        input: text.chars().take(64).collect(),
        reason,
    };
    let b = text.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS` is 19 bytes, then the fraction and the offset.
    if b.len() < 20 {
        return Err(malformed("too short"));
    }
    let digits = |range: std::ops::Range<usize>| -> Result<i64, ParseTimestampError> {
        b[range].iter().try_fold(0i64, |n, &c| {
            if c.is_ascii_digit() {
                Ok(n * 10 + i64::from(c - b'0'))
            } else {
                Err(malformed("expected YYYY-MM-DDTHH:MM:SS"))
            }
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't') {
        return Err(malformed("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) {
        return Err(malformed("month out of range"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(malformed("day out of range for its month"));
    }
    if hour > 23 || minute > 59 {
        return Err(malformed("hour or minute out of range"));
    }
    if second == 60 {
        return Err(malformed("leap seconds cannot be represented"));
    }
    if second > 59 {
        return Err(malformed("second out of range"));
    }

    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return Err(malformed("a fraction needs at least one digit"));
        }
        if count > 9 {
            return Err(malformed("more than nanosecond precision"));
        }
        nanos = digits(start..i)? * 10i64.pow(9 - count as u32);
    }
    let offset_secs = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |hi: u8, lo: u8| {
                if hi.is_ascii_digit() && lo.is_ascii_digit() {
                    Ok(i64::from(hi - b'0') * 10 + i64::from(lo - b'0'))
                } else {
                    Err(malformed("expected an offset +HH:MM or -HH:MM"))
                }
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return Err(malformed("offset out of range"));
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => {
            return Err(malformed(
                "expected Z or an offset +HH:MM or -HH:MM after the time",
            ));
        }
    };

    // Local time minus the offset is UTC. i128: far from overflow for any 4-digit year.
    let secs = i128::from(days_from_civil(year, month, day)) * i128::from(SECS_PER_DAY as i64)
        + i128::from(hour * 3600 + minute * 60 + second - offset_secs);
    let total = secs * i128::from(NANOS_PER_SEC as i64) + i128::from(nanos);
    u64::try_from(total)
        .map(Timestamp)
        .map_err(|_| ParseTimestampError::OutOfRange {
            input: text.to_owned(),
        })
}

/// A source of the current time.
///
/// # Contract
/// - `now` never goes backwards for one clock.
/// - `now` is cheap and never blocks.
///
/// # Examples
/// A clock that always says noon:
/// ```
/// use concord::{Clock, Timestamp};
///
/// #[derive(Debug)]
/// struct Noon;
/// impl Clock for Noon {
///     fn now(&self) -> Timestamp { Timestamp::from_secs(12 * 3600) }
/// }
/// assert_eq!(Noon.now().as_millis(), 12 * 3600 * 1000);
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock. The only place in the crate that reads the system time.
///
/// The wall clock can be stepped back (by NTP, or by hand); this clock does not go
/// back with it, as the [`Clock`] contract asks: it says the latest time it has
/// said, in this process, until the wall clock passes it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The latest time a [`SystemClock`] said, in nanoseconds since the epoch: one for
/// the process, as the wall clock is.
static SYSTEM_CLOCK_SAID: AtomicU64 = AtomicU64::new(0);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        never_back(&SYSTEM_CLOCK_SAID, Timestamp::from(SystemTime::now()))
    }
}

/// `wall`, or the latest time `said` holds if that is later; records what it says.
pub(crate) fn never_back(said: &AtomicU64, wall: Timestamp) -> Timestamp {
    let before = said.fetch_max(wall.as_nanos(), Ordering::AcqRel);
    Timestamp::from_nanos(wall.as_nanos().max(before))
}

/// A clock that moves only when told to: for tests, simulation and replay.
///
/// Clones share the same time, so a test can keep one handle and give another to the
/// code under test.
///
/// ```
/// use std::time::Duration;
/// use concord::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(10));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), Timestamp::from_secs(15));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<ManualTime>);

/// The time of a [`ManualClock`] and its clones, with the sleeps of the
/// [`SimulatedTimer`](crate::SimulatedTimer)s that move it: they wake in deadline
/// order, whichever timer handle each sleep came from.
#[derive(Debug, Default)]
struct ManualTime {
    now: AtomicU64,
    /// Pending sleeps, by deadline then by arrival.
    sleepers: parking_lot::Mutex<std::collections::BTreeSet<(Timestamp, u64)>>,
    next_sleeper: AtomicU64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(ManualTime {
            now: AtomicU64::new(start.0),
            ..ManualTime::default()
        }))
    }

    /// Records a sleep until `deadline`; the key to [`wake`](Self::wake) it with.
    pub(crate) fn sleep_on(&self, deadline: Timestamp) -> (Timestamp, u64) {
        let key = (deadline, self.0.next_sleeper.fetch_add(1, Ordering::SeqCst));
        self.0.sleepers.lock().insert(key);
        key
    }

    /// Whether the sleep under `key` is the earliest pending one.
    pub(crate) fn is_next_sleeper(&self, key: (Timestamp, u64)) -> bool {
        self.0.sleepers.lock().first() == Some(&key)
    }

    /// Forgets the sleep under `key` (it woke, or was dropped).
    pub(crate) fn wake(&self, key: (Timestamp, u64)) {
        self.0.sleepers.lock().remove(&key);
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update cannot fail here: the closure always returns Some.
        let _ = self
            .0
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(nanos))
            });
    }

    /// Sets the clock to `t` if `t` is later than its current time; a clock never goes
    /// backwards.
    pub fn set(&self, t: Timestamp) {
        self.0.now.fetch_max(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wall clock stepped back is not followed back: the latest time said holds
    /// until the wall clock passes it, then the wall clock is said again.
    #[test]
    fn the_system_clock_does_not_follow_a_wall_clock_stepped_back() {
        let said = AtomicU64::new(0);
        let at = Timestamp::from_secs;
        assert_eq!(never_back(&said, at(100)), at(100));
        assert_eq!(never_back(&said, at(40)), at(100));
        assert_eq!(never_back(&said, at(100)), at(100));
        assert_eq!(never_back(&said, at(101)), at(101));
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = Timestamp::from(SystemTime::now());
        let now = SystemClock.now();
        assert!(now >= before);
        assert!(now <= Timestamp::from(SystemTime::now()));
    }
}
