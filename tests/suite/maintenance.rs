//! Maintenance through its public API: the recurrence calendar (month ends, leap
//! years, year ends, weekdays), the tracker (due, overdue, completion, wake-ups,
//! snapshots, the report), hostile schedules, and the daily cleanup against a real
//! coordinator, journal and memory.

use std::sync::Arc;
use std::time::Duration;

use concord::coordinator::{
    AssignOutcome, Coordinator, CoordinatorSnapshot, Journal, JournalError, MemoryJournal, Record,
};
use concord::maintenance::{
    Cleanup, DAILY_CHECKLIST, ItemStatus, MONTHLY_CHECKLIST, Maintenance, MaintenanceError,
    MaintenanceSnapshot, Recurrence, Schedule, ScheduleItem, TimeOfDay, WEEKLY_CHECKLIST, Weekday,
    cleanup_coordinator, compact_journal, forget_finished_runs,
};
use concord::memory::{InMemoryStore, Memory, Retention};
use concord::policy::{PolicySet, SeparationOfDuties};
use concord::workflow::{StepOutcome, StepSpec, Workflow};
use concord::{
    AgentId, AgentProfile, AgentStatus, Claim, Clock, ManualClock, Requirements, Role,
    RuleBasedAnalyzer, RuleSet, Task, TaskId, Timestamp,
};
use futures::executor::block_on;
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The timestamp of an RFC 3339 text.
fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a timestamp: {e}"))
}

fn time(hour: u8, minute: u8) -> TimeOfDay {
    TimeOfDay::new(hour, minute).unwrap()
}

fn monthly(day: u8) -> Recurrence {
    Recurrence::monthly(day, time(6, 0)).unwrap()
}

/// The occurrences of `r` after `from`, `n` of them, as text.
fn occurrences(r: Recurrence, from: &str, n: usize) -> Vec<String> {
    let mut t = at(from);
    (0..n)
        .map(|_| {
            t = r.next_after(t).expect("an occurrence");
            t.to_string()
        })
        .collect()
}

/// Proptest with `cases` cases, failures saved beside the other tests' regressions.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/maintenance.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

// ----- the calendar ----------------------------------------------------------------

#[test]
fn a_monthly_day_past_a_months_end_falls_on_its_last_day() {
    assert_eq!(
        occurrences(monthly(31), "2024-01-01T00:00:00Z", 5),
        [
            "2024-01-31T06:00:00.000Z",
            "2024-02-29T06:00:00.000Z", // a leap year
            "2024-03-31T06:00:00.000Z",
            "2024-04-30T06:00:00.000Z",
            "2024-05-31T06:00:00.000Z",
        ]
    );
    assert_eq!(
        occurrences(monthly(29), "2023-01-30T00:00:00Z", 2),
        ["2023-02-28T06:00:00.000Z", "2023-03-29T06:00:00.000Z"]
    );
    // 2100 is not a leap year (divisible by 100), 2000 was (divisible by 400).
    assert_eq!(
        occurrences(monthly(30), "2100-02-01T00:00:00Z", 1),
        ["2100-02-28T06:00:00.000Z"]
    );
    assert_eq!(
        occurrences(monthly(30), "2000-02-01T00:00:00Z", 1),
        ["2000-02-29T06:00:00.000Z"]
    );
    // Backwards too: from early March, the last "31st" was February's last day.
    assert_eq!(
        monthly(31).last_at_or_before(at("2024-03-05T00:00:00Z")),
        Some(at("2024-02-29T06:00:00Z"))
    );
}

#[test]
fn occurrences_cross_the_year_end() {
    let daily = Recurrence::daily(time(6, 0));
    assert_eq!(
        daily.next_after(at("2023-12-31T07:00:00Z")),
        Some(at("2024-01-01T06:00:00Z"))
    );
    assert_eq!(
        daily.last_at_or_before(at("2024-01-01T05:59:59.999Z")),
        Some(at("2023-12-31T06:00:00Z"))
    );
    assert_eq!(
        occurrences(monthly(15), "2023-12-20T00:00:00Z", 2),
        ["2024-01-15T06:00:00.000Z", "2024-02-15T06:00:00.000Z"]
    );
    assert_eq!(
        monthly(31).last_at_or_before(at("2024-01-10T00:00:00Z")),
        Some(at("2023-12-31T06:00:00Z"))
    );
    let weekly = Recurrence::weekly(Weekday::Monday, time(6, 0));
    // 2023-12-31 is a Sunday; 2024-01-01 a Monday.
    assert_eq!(
        weekly.next_after(at("2023-12-31T23:00:00Z")),
        Some(at("2024-01-01T06:00:00Z"))
    );
    assert_eq!(
        weekly.last_at_or_before(at("2024-01-01T05:00:00Z")),
        Some(at("2023-12-25T06:00:00Z"))
    );
}

#[test]
fn an_occurrence_is_strictly_after_and_at_or_before() {
    let daily = Recurrence::daily(time(6, 0));
    let six = at("2024-05-05T06:00:00Z");
    assert_eq!(daily.next_after(six), Some(six + DAY));
    assert_eq!(daily.last_at_or_before(six), Some(six));
    assert_eq!(
        daily.next_after(six - Duration::from_nanos(1)),
        Some(six),
        "one nanosecond before is before"
    );
}

#[test]
fn weekdays_count_from_a_thursday_epoch() {
    assert_eq!(Weekday::of(Timestamp::EPOCH), Weekday::Thursday);
    assert_eq!(Weekday::of(Timestamp::EPOCH + 3 * DAY), Weekday::Sunday);
    assert_eq!(Weekday::of(Timestamp::EPOCH + 4 * DAY), Weekday::Monday);
    assert_eq!(Weekday::of(at("2000-02-29T12:00:00Z")), Weekday::Tuesday);
    assert_eq!(Weekday::of(at("2024-02-29T23:59:59Z")), Weekday::Thursday);
    for n in 1..=7 {
        assert_eq!(Weekday::try_from(n).unwrap().number(), n);
    }
    // The first Thursday 00:00 is the epoch itself; there is no Wednesday before it.
    let thursday = Recurrence::weekly(Weekday::Thursday, TimeOfDay::MIDNIGHT);
    assert_eq!(
        thursday.last_at_or_before(Timestamp::EPOCH),
        Some(Timestamp::EPOCH)
    );
    let wednesday = Recurrence::weekly(Weekday::Wednesday, TimeOfDay::MIDNIGHT);
    assert_eq!(wednesday.last_at_or_before(Timestamp::EPOCH + DAY), None);
    assert_eq!(
        wednesday.next_after(Timestamp::EPOCH),
        Some(Timestamp::EPOCH + 6 * DAY)
    );
    assert_eq!(
        occurrences(
            Recurrence::weekly(Weekday::Friday, time(23, 30)),
            "2024-02-28T00:00:00Z",
            2
        ),
        ["2024-03-01T23:30:00.000Z", "2024-03-08T23:30:00.000Z"]
    );
}

#[test]
fn the_end_of_time_has_no_next_occurrence() {
    let daily = Recurrence::daily(time(23, 59));
    assert_eq!(daily.next_after(Timestamp::MAX), None);
    assert!(daily.last_at_or_before(Timestamp::MAX) < Some(Timestamp::MAX));
    assert_eq!(monthly(31).next_after(Timestamp::MAX), None);
}

/// Days in a month, by the Gregorian rule, written out independently of the crate.
fn month_len(year: u32, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn recurrence() -> impl Strategy<Value = Recurrence> {
    let at = (0u8..24, 0u8..60).prop_map(|(h, m)| time(h, m));
    prop_oneof![
        at.clone().prop_map(Recurrence::daily),
        (1u8..=7, at.clone())
            .prop_map(|(d, at)| Recurrence::weekly(Weekday::try_from(d).unwrap(), at)),
        (1u8..=31, at).prop_map(|(d, at)| Recurrence::monthly(d, at).unwrap()),
    ]
}

/// Whether `t` is an occurrence of `r`, read from its RFC 3339 text and the weekday.
fn is_occurrence(r: Recurrence, t: Timestamp) -> bool {
    let text = t.to_string();
    let num = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap();
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let clock = format!("{}:00.000Z", r.at());
    if !text.ends_with(&clock) {
        return false;
    }
    match r {
        Recurrence::Daily { .. } => true,
        Recurrence::Weekly { on, .. } => Weekday::of(t) == on,
        Recurrence::Monthly { day: dom, .. } => day == u32::from(dom).min(month_len(year, month)),
        _ => unreachable!("a new recurrence"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The next occurrence is strictly after `t`, the last one at or before it, both
    /// are occurrences by the calendar's own reading, and none lies between them.
    #[test]
    fn next_and_last_occurrences_bracket_the_time(
        r in recurrence(),
        secs in 0u64..16_000_000_000, // to the year 2477
        nanos in 0u64..1_000_000_000,
    ) {
        let t = Timestamp::from_nanos(secs * 1_000_000_000 + nanos);
        let next = r.next_after(t).expect("within the range");
        prop_assert!(next > t);
        prop_assert!(is_occurrence(r, next), "{next} is not {r}");
        let gap = next.duration_since(t);
        prop_assert!(gap <= Duration::from_secs(31 * 24 * 3600 + 1), "{gap:?}");
        match r.last_at_or_before(t) {
            Some(last) => {
                prop_assert!(last <= t);
                prop_assert!(is_occurrence(r, last), "{last} is not {r}");
                prop_assert_eq!(r.next_after(last), Some(next), "an occurrence between");
            }
            None => prop_assert!(t < Timestamp::from_secs(32 * 24 * 3600)),
        }
        prop_assert_eq!(r.last_at_or_before(next), Some(next));
        if let Some(previous) = r.last_at_or_before(next - Duration::from_nanos(1)) {
            prop_assert!(next.duration_since(previous) >= r.shortest_interval());
        }
    }
}

// ----- the tracker ------------------------------------------------------------------

/// The procedures' schedule, tracked from midnight on Monday 2024-01-01 (every
/// checklist falls due at 06:00 that day).
fn tracker() -> Maintenance {
    Maintenance::new(Schedule::default(), at("2024-01-01T00:00:00Z"))
}

const CONNECTIVITY: &str = "Verify agent connectivity";

#[test]
fn the_default_schedule_is_the_procedures_checklists() {
    let schedule = Schedule::default();
    let names: Vec<&str> = schedule.items().iter().map(ScheduleItem::name).collect();
    let expected: Vec<&str> = DAILY_CHECKLIST
        .iter()
        .chain(&WEEKLY_CHECKLIST)
        .chain(&MONTHLY_CHECKLIST)
        .copied()
        .collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"Review overnight logs for errors"));
    assert!(names.contains(&"Test disaster recovery procedures"));
    assert!(names.contains(&"Security audit"));
    assert_eq!(
        schedule.get("Security audit").unwrap().when().to_string(),
        "monthly on the 1st at 06:00 UTC"
    );
}

#[test]
fn items_fall_due_at_their_occurrence_and_are_overdue_after_their_grace() {
    let m = tracker();
    assert!(m.due(at("2024-01-01T05:59:59Z")).is_empty());
    let due = m.due(at("2024-01-01T06:00:00Z"));
    assert_eq!(due.len(), 15);
    assert!(
        due.iter()
            .all(|d| d.since == at("2024-01-01T06:00:00Z") && !d.overdue)
    );
    // Daily grace: four hours. At 10:00 exactly the grace has ended.
    assert!(m.overdue(at("2024-01-01T09:59:59Z")).is_empty());
    let late = m.overdue(at("2024-01-01T10:00:00Z"));
    assert_eq!(late.len(), 5);
    assert_eq!(late[0].late_by, Duration::ZERO);
    assert_eq!(
        m.status(CONNECTIVITY, at("2024-01-01T12:30:00Z")).unwrap(),
        ItemStatus::Overdue {
            since: at("2024-01-01T06:00:00Z"),
            deadline: at("2024-01-01T10:00:00Z"),
            late_by: Duration::from_secs(2 * 3600 + 1800),
        }
    );
    // Weekly: two days' grace; monthly: five.
    let overdue = |t| m.overdue(at(t)).len();
    assert_eq!(overdue("2024-01-03T05:59:00Z"), 5);
    assert_eq!(overdue("2024-01-03T06:00:00Z"), 10);
    assert_eq!(overdue("2024-01-06T06:00:00Z"), 15);
}

#[test]
fn a_completion_holds_until_the_next_occurrence() {
    let mut m = tracker();
    let done = m
        .complete(
            CONNECTIVITY,
            at("2024-01-01T11:00:00Z"),
            "ops-1",
            "all agents answered",
        )
        .unwrap();
    assert_eq!(done.answered, Some(at("2024-01-01T06:00:00Z")));
    for t in ["2024-01-01T11:00:00Z", "2024-01-02T05:59:59.999Z"] {
        assert_eq!(
            m.status(CONNECTIVITY, at(t)).unwrap(),
            ItemStatus::Done {
                at: at("2024-01-01T11:00:00Z")
            }
        );
        assert!(m.overdue(at(t)).iter().all(|o| o.item != CONNECTIVITY));
    }
    assert!(matches!(
        m.status(CONNECTIVITY, at("2024-01-02T06:00:00Z")).unwrap(),
        ItemStatus::Due { since, .. } if since == at("2024-01-02T06:00:00Z")
    ));
    assert!(matches!(
        m.status(CONNECTIVITY, at("2024-01-02T10:00:00Z")).unwrap(),
        ItemStatus::Overdue { .. }
    ));
}

#[test]
fn missed_occurrences_are_due_since_the_first_and_done_once() {
    let mut m = tracker();
    let t = at("2024-01-04T12:00:00Z"); // three days' occurrences missed
    let o = m.overdue(t);
    let connectivity = o.iter().find(|o| o.item == CONNECTIVITY).unwrap();
    assert_eq!(connectivity.since, at("2024-01-01T06:00:00Z"));
    assert_eq!(
        connectivity.late_by,
        Duration::from_secs(3 * 24 * 3600 + 2 * 3600)
    );
    m.complete(CONNECTIVITY, t, "ops-1", "").unwrap();
    assert!(matches!(
        m.status(CONNECTIVITY, t).unwrap(),
        ItemStatus::Done { .. }
    ));
}

#[test]
fn doing_an_item_early_does_not_skip_its_next_occurrence() {
    let mut m = tracker();
    let early = m
        .complete(CONNECTIVITY, at("2024-01-01T05:00:00Z"), "ops-1", "")
        .unwrap();
    assert_eq!(early.answered, None);
    assert!(
        m.due(at("2024-01-01T06:00:00Z"))
            .iter()
            .any(|d| d.item == CONNECTIVITY)
    );
}

#[test]
fn bad_completions_are_typed_errors_that_change_nothing() {
    let mut m = tracker();
    m.complete(CONNECTIVITY, at("2024-01-01T08:00:00Z"), "ops-1", "")
        .unwrap();
    let before = m.snapshot();
    assert_eq!(
        m.complete("Water the plants", at("2024-01-01T09:00:00Z"), "ops-1", ""),
        Err(MaintenanceError::UnknownItem {
            name: "Water the plants".into()
        })
    );
    assert_eq!(
        m.complete(CONNECTIVITY, at("2024-01-01T07:00:00Z"), "ops-2", ""),
        Err(MaintenanceError::CompletedBeforeLast {
            item: CONNECTIVITY.into(),
            at: at("2024-01-01T07:00:00Z"),
            last: at("2024-01-01T08:00:00Z"),
        })
    );
    assert!(
        m.status("x".repeat(10_000).as_str(), Timestamp::EPOCH)
            .unwrap_err()
            .to_string()
            .len()
            < 200,
        "a hostile name is cut short in the error"
    );
    assert_eq!(m.snapshot(), before);
    // The same time as the last completion is fine: a second note.
    m.complete(
        CONNECTIVITY,
        at("2024-01-01T08:00:00Z"),
        "ops-2",
        "checked again",
    )
    .unwrap();
}

#[test]
fn the_tracker_says_when_to_wake() {
    let mut m = tracker();
    let midnight = at("2024-01-01T00:00:00Z");
    assert_eq!(m.next_due(midnight), Some(at("2024-01-01T06:00:00Z")));
    assert_eq!(m.poll_timeout(midnight), Some(at("2024-01-01T06:00:00Z")));
    // All due: the next change is the daily grace's end.
    let seven = at("2024-01-01T07:00:00Z");
    assert_eq!(m.poll_timeout(seven), Some(at("2024-01-01T10:00:00Z")));
    assert_eq!(m.next_due(seven), Some(at("2024-01-02T06:00:00Z")));
    for item in DAILY_CHECKLIST {
        m.complete(item, seven, "ops-1", "").unwrap();
    }
    // The daily items are done: they come round again tomorrow, before the weekly
    // grace ends on Wednesday.
    assert_eq!(m.poll_timeout(seven), Some(at("2024-01-02T06:00:00Z")));
    // On Saturday everything is overdue: nothing changes without a completion.
    let saturday = at("2024-01-06T12:00:00Z");
    assert_eq!(m.poll_timeout(saturday), None);
    assert_eq!(
        Maintenance::new(Schedule::new(), midnight).next_due(midnight),
        None
    );
}

#[test]
fn occurrences_before_tracking_began_never_count() {
    let m = Maintenance::new(Schedule::default(), at("2024-01-01T06:00:00Z"));
    // The 06:00 occurrence is not after the start: nothing is due until tomorrow.
    assert!(m.due(at("2024-01-01T23:00:00Z")).is_empty());
    assert_eq!(
        m.status(CONNECTIVITY, at("2024-01-01T23:00:00Z")).unwrap(),
        ItemStatus::Upcoming
    );
    assert_eq!(m.due(at("2024-01-02T06:00:00Z")).len(), 5);
}

#[test]
fn completions_survive_a_snapshot_round_trip() {
    let mut m = tracker();
    m.complete(CONNECTIVITY, at("2024-01-01T07:00:00Z"), "ops-1", "fine")
        .unwrap();
    m.complete("Security audit", at("2024-01-02T07:00:00Z"), "sec", "")
        .unwrap();
    let json = serde_json::to_string(&m.snapshot()).unwrap();
    let snapshot: MaintenanceSnapshot = serde_json::from_str(&json).unwrap();
    let restored = Maintenance::restore(Schedule::default(), &snapshot).unwrap();
    assert_eq!(restored.snapshot(), m.snapshot());
    for t in ["2024-01-01T12:00:00Z", "2024-01-09T12:00:00Z"] {
        assert_eq!(restored.due(at(t)), m.due(at(t)));
        assert_eq!(restored.report(at(t)), m.report(at(t)));
    }
    assert_eq!(restored.last_completion(CONNECTIVITY).unwrap().note, "fine");

    // A schedule without the audit: its completion is dropped, the rest kept.
    let fewer = Schedule::from_items(
        Schedule::default()
            .items()
            .iter()
            .filter(|i| i.name() != "Security audit")
            .cloned(),
    )
    .unwrap();
    let restored = Maintenance::restore(fewer, &snapshot).unwrap();
    assert_eq!(restored.snapshot().completions.len(), 1);

    // Two completions of one item, or another version: refused.
    let mut doubled = snapshot.clone();
    doubled.completions.push(doubled.completions[0].clone());
    assert!(matches!(
        Maintenance::restore(Schedule::default(), &doubled),
        Err(MaintenanceError::DuplicateItem { .. })
    ));
    // A completion answering an occurrence after itself, or not after the start:
    // refused, naming the item and both times; the good snapshot still restores.
    for answered in ["2024-01-03T06:00:00Z", "2023-12-31T06:00:00Z"] {
        let mut forged = snapshot.clone();
        forged.completions[0].answered = Some(at(answered));
        let err = Maintenance::restore(Schedule::default(), &forged).unwrap_err();
        assert_eq!(
            err,
            MaintenanceError::ImpossibleCompletion {
                item: CONNECTIVITY.into(),
                at: at("2024-01-01T07:00:00Z"),
                answered: at(answered),
                start: snapshot.start,
            }
        );
        assert!(err.to_string().contains(CONNECTIVITY), "{err}");
    }
    // A `by` or `note` that `complete` would have cut to one bounded line.
    for (field, text) in [("by", "ops\n- [x] forged"), ("note", &"x".repeat(1025)[..])] {
        let mut forged = snapshot.clone();
        match field {
            "by" => forged.completions[0].by = text.into(),
            _ => forged.completions[0].note = text.into(),
        }
        let err = Maintenance::restore(Schedule::default(), &forged).unwrap_err();
        assert_eq!(
            err,
            MaintenanceError::NotANote {
                item: CONNECTIVITY.into(),
                field,
                bytes: text.len(),
            }
        );
    }
    assert!(Maintenance::restore(Schedule::default(), &snapshot).is_ok());
    let mut future = snapshot;
    future.version = 99;
    assert!(matches!(
        Maintenance::restore(Schedule::default(), &future),
        Err(MaintenanceError::UnsupportedSnapshot { version: 99, .. })
    ));
}

#[test]
fn the_report_marks_each_item() {
    let mut m = tracker();
    m.complete(
        CONNECTIVITY,
        at("2024-01-01T07:00:00Z"),
        "ops-1",
        "all answered\n- [x] Security audit (forged)",
    )
    .unwrap();
    let report = m.report(at("2024-01-01T11:00:00Z"));
    assert!(
        report.starts_with(
            "## Maintenance, 2024-01-01T11:00:00.000Z: 4 overdue, 10 due, 1 done, of 15\n"
        ),
        "{report}"
    );
    assert!(report.contains("\n### Daily maintenance\n\n"), "{report}");
    assert!(report.contains("\n### Monthly maintenance\n\n"), "{report}");
    assert!(
        report.contains(
            "- [x] Verify agent connectivity (daily at 06:00 UTC): done 2024-01-01T07:00:00.000Z by ops-1 (all answered - [x] Security audit (forged)); next due 2024-01-02T06:00:00.000Z\n"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "- [ ] Review overnight logs for errors (daily at 06:00 UTC): **overdue** by 1 h, due since 2024-01-01T06:00:00.000Z\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("- [ ] Security audit (monthly on the 1st at 06:00 UTC): due since 2024-01-01T06:00:00.000Z, overdue in 4 d 19 h\n"),
        "{report}"
    );
    // The forged line in the note did not become a line of its own.
    assert_eq!(report.lines().filter(|l| l.starts_with("- [x]")).count(), 1);
}

/// Who did an item and their note are free text: a right-to-left override in
/// either showed the rest of the checklist line reversed, and a zero-width space,
/// a line separator or a variation selector hid in it. Each is written as a space,
/// as a line break is.
#[test]
fn the_report_writes_invisible_characters_as_spaces() {
    let mut m = tracker();
    m.complete(
        CONNECTIVITY,
        at("2024-01-01T07:00:00Z"),
        "ops\u{202e}1",
        "done\u{200b}\u{2028}\u{fe0f}",
    )
    .unwrap();
    let report = m.report(at("2024-01-01T11:00:00Z"));
    assert!(report.contains(" by ops 1 (done   ); next due"), "{report}");
}

/// Guards the bug where the report copied item names, who did them and their notes
/// into its Markdown unescaped, so that a name or note quoting HTML became markup on
/// the rendered page, while the health and incident reports escape the same text.
#[test]
fn the_report_escapes_markup_in_names_and_notes() {
    const EVIL: &str = "<img src=x onerror=alert(1)> & <b>";
    let name = format!("check {EVIL}");
    let mut s = Schedule::new();
    s.push(
        ScheduleItem::new(
            name.clone(),
            Recurrence::daily(time(9, 0)),
            Duration::from_secs(3600),
        )
        .unwrap(),
    )
    .unwrap();
    let mut m = Maintenance::new(s, at("2024-01-01T00:00:00Z"));
    m.complete(&name, at("2024-01-01T09:30:00Z"), EVIL, EVIL)
        .unwrap();
    for now in ["2024-01-01T10:00:00Z", "2024-01-02T09:30:00Z"] {
        let report = m.report(at(now));
        assert!(!report.contains('<') && !report.contains('>'), "{report}");
        assert!(
            report.contains("check &lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt; (daily"),
            "{report}"
        );
        assert!(
            report.contains(" by &lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt; (&lt;img"),
            "{report}"
        );
    }
}

// ----- hostile schedules ------------------------------------------------------------

#[test]
fn bad_times_days_and_graces_are_refused_when_built() {
    assert_eq!(
        TimeOfDay::new(25, 0),
        Err(MaintenanceError::InvalidHour { hour: 25 })
    );
    assert_eq!(
        TimeOfDay::new(6, 60),
        Err(MaintenanceError::InvalidMinute { minute: 60 })
    );
    assert_eq!(
        Weekday::try_from(9),
        Err(MaintenanceError::InvalidWeekday { weekday: 9 })
    );
    assert_eq!(
        Weekday::try_from(0),
        Err(MaintenanceError::InvalidWeekday { weekday: 0 })
    );
    for day in [0, 32, 255] {
        assert_eq!(
            Recurrence::monthly(day, time(6, 0)),
            Err(MaintenanceError::InvalidDayOfMonth { day })
        );
    }
    let daily = Recurrence::daily(time(6, 0));
    assert_eq!(
        ScheduleItem::new("x", daily, Duration::ZERO),
        Err(MaintenanceError::ZeroGrace { item: "x".into() })
    );
    assert!(matches!(
        ScheduleItem::new("x", daily, DAY + Duration::from_secs(1)),
        Err(MaintenanceError::GraceTooLong { .. })
    ));
    assert!(ScheduleItem::new("x", daily, DAY).is_ok());
    // With an invisible character, "backup" would be two items that read the same.
    for name in [
        "",
        "   ",
        "a\nb",
        "a ",
        " a",
        &"x".repeat(201),
        "backup\u{200b}",
        "\u{202e}backup",
    ] {
        assert!(
            matches!(
                ScheduleItem::new(name, daily, HOUR),
                Err(MaintenanceError::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    let item = ScheduleItem::new("x", daily, HOUR).unwrap();
    assert!(matches!(
        Schedule::from_items([item.clone(), item]),
        Err(MaintenanceError::DuplicateItem { .. })
    ));
}

#[test]
fn bad_schedules_are_refused_when_read() {
    let item = |when: &str, grace: u64| {
        format!(r#"{{"items": [{{"name": "x", "when": {when}, "grace": {grace}}}]}}"#)
    };
    let good = item(
        r#"{"every": "week", "on": "monday", "at": "06:00"}"#,
        3_600_000,
    );
    assert!(serde_json::from_str::<Schedule>(&good).is_ok(), "{good}");
    let bad = [
        item(r#"{"every": "day", "at": "25:00"}"#, 3_600_000),
        item(r#"{"every": "day", "at": "06:60"}"#, 3_600_000),
        item(r#"{"every": "day", "at": "6:00"}"#, 3_600_000),
        item(r#"{"every": "day", "at": 6}"#, 3_600_000),
        item(
            r#"{"every": "week", "on": "funday", "at": "06:00"}"#,
            3_600_000,
        ),
        item(r#"{"every": "week", "on": 9, "at": "06:00"}"#, 3_600_000),
        item(r#"{"every": "month", "day": 0, "at": "06:00"}"#, 3_600_000),
        item(r#"{"every": "month", "day": 32, "at": "06:00"}"#, 3_600_000),
        item(
            r#"{"every": "month", "day": 300, "at": "06:00"}"#,
            3_600_000,
        ),
        item(r#"{"every": "fortnight", "at": "06:00"}"#, 3_600_000),
        item(r#"{"every": "day", "at": "06:00", "tz": "CET"}"#, 3_600_000),
        item(r#"{"every": "day", "at": "06:00"}"#, 0),
        item(r#"{"every": "day", "at": "06:00"}"#, 25 * 3_600_000),
        r#"{"items": [{"name": "", "when": {"every": "day", "at": "06:00"}, "grace": 1}]}"#
            .to_owned(),
    ];
    for json in &bad {
        assert!(serde_json::from_str::<Schedule>(json).is_err(), "{json}");
    }
    let twice = r#"{"items": [
        {"name": "x", "when": {"every": "day", "at": "06:00"}, "grace": 1},
        {"name": "x", "when": {"every": "day", "at": "07:00"}, "grace": 1}]}"#;
    let err = serde_json::from_str::<Schedule>(twice).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let err = serde_json::from_str::<Schedule>(&bad[0]).unwrap_err();
    assert!(err.to_string().contains("hour 25"), "{err}");
}

/// Guards the bug where building or reading a schedule, and restoring a tracker over
/// it, looked each item up by scanning the items before it: 100,000 items took close
/// to a minute.
#[test]
fn a_schedule_of_many_items_builds_and_restores_in_linear_time() {
    let n = 100_000;
    let daily = Recurrence::daily(time(6, 0));
    // What reading `{"items": [...]}` calls once the items are parsed.
    let items = (0..n).map(|i| ScheduleItem::new(format!("item {i}"), daily, HOUR).unwrap());
    let mut schedule = Schedule::from_items(items).unwrap();
    assert_eq!(schedule.len(), n);
    assert_eq!(schedule.items()[n - 1].name(), format!("item {}", n - 1));
    assert!(schedule.get(&format!("item {}", n / 2)).is_some());
    assert!(schedule.get("item").is_none());
    // A name used twice is still refused, by name, and changes nothing.
    let again = schedule.items()[7].clone();
    assert!(matches!(
        schedule.push(again),
        Err(MaintenanceError::DuplicateItem { name }) if name == "item 7"
    ));
    assert_eq!(schedule.len(), n);

    // Every item done, in the opposite order: each completion finds its item.
    let start = serde_json::to_string(&at("2024-01-01T00:00:00Z")).unwrap();
    let done = serde_json::to_string(&at("2024-01-01T07:00:00Z")).unwrap();
    let completions: Vec<String> = (0..n)
        .rev()
        .map(|i| format!(r#"{{"item":"item {i}","at":{done},"by":"ops"}}"#))
        .collect();
    let snapshot: MaintenanceSnapshot = serde_json::from_str(&format!(
        r#"{{"version":1,"start":{start},"completions":[{}]}}"#,
        completions.join(",")
    ))
    .unwrap();
    let restored = Maintenance::restore(schedule, &snapshot).unwrap();
    assert_eq!(
        restored
            .last_completion(&format!("item {}", n - 1))
            .unwrap()
            .by,
        "ops"
    );
    assert!(restored.due(at("2024-01-01T12:00:00Z")).is_empty());
}

proptest! {
    #![proptest_config(config(256))]

    /// Any text read as a time of day is refused or a valid time; never a panic.
    #[test]
    fn any_text_read_as_a_time_is_refused_or_valid(text in "\\PC{0,8}|[0-9]{2}:[0-9]{2}") {
        if let Ok(t) = text.parse::<TimeOfDay>() {
            prop_assert!(t.hour() < 24 && t.minute() < 60);
            prop_assert_eq!(t.to_string(), text);
        }
    }
}

// ----- the tracker's invariants -----------------------------------------------------

/// A step of the tracker's life: time passes, then maybe an item is done.
#[derive(Debug, Clone)]
struct Step {
    advance: Duration,
    complete: Option<usize>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step =
        (0u64..10 * 24 * 3600, proptest::option::of(0usize..15)).prop_map(|(secs, complete)| {
            Step {
                advance: Duration::from_secs(secs),
                complete,
            }
        });
    proptest::collection::vec(step, 1..40)
}

proptest! {
    #![proptest_config(config(64))]

    /// Whatever the start and the completions: the tracker's wake-ups are in the
    /// future, every due item fell due at or before now and after the start, overdue
    /// means past the deadline, and a completion leaves its item done.
    #[test]
    fn due_times_are_past_and_wake_ups_are_future(
        start in 0u64..4_000_000_000,
        steps in steps(),
    ) {
        let start = Timestamp::from_secs(start);
        let mut m = Maintenance::new(Schedule::default(), start);
        let mut now = start;
        for step in steps {
            now += step.advance;
            if let Some(i) = step.complete {
                let name = m.schedule().items()[i].name().to_owned();
                m.complete(&name, now, "prop", "").unwrap();
                let done = matches!(m.status(&name, now).unwrap(), ItemStatus::Done { .. });
                prop_assert!(done, "{} is not done after its completion", name);
            }
            let next = m.next_due(now).expect("a default schedule recurs");
            prop_assert!(next > now);
            // Nothing changes before the wake-up, and something does at it.
            match m.poll_timeout(now) {
                Some(wake) => {
                    prop_assert!(wake > now);
                    prop_assert_eq!(m.due(wake - Duration::from_nanos(1)), m.due(now));
                    prop_assert_ne!(m.due(wake), m.due(now));
                }
                None => prop_assert_eq!(m.due(now + 400 * DAY), m.due(now)),
            }
            for d in m.due(now) {
                prop_assert!(d.since <= now && d.since > start, "{d:?} at {now}");
                prop_assert_eq!(d.overdue, now >= d.deadline);
                let item = m.schedule().get(&d.item).unwrap();
                prop_assert_eq!(d.deadline, d.since + item.grace());
                if let Some(last) = m.last_completion(&d.item) {
                    prop_assert!(d.since > last.at);
                }
            }
            let overdue = m.overdue(now);
            prop_assert_eq!(overdue.len(), m.due(now).iter().filter(|d| d.overdue).count());
            for o in overdue {
                prop_assert_eq!(o.late_by, now.duration_since(o.deadline));
            }
        }
        let back = Maintenance::restore(Schedule::default(), &m.snapshot()).unwrap();
        prop_assert_eq!(back.due(now), m.due(now));
    }
}

// ----- the daily cleanup ------------------------------------------------------------

fn ops_task(id: u64, kind: &str) -> Task {
    Task::new(TaskId::new(id), kind, format!("{kind} work")).with_requirements(
        Requirements::new()
            .with_role(Role::new("ops").unwrap())
            .with_resources("cpu=1".parse().unwrap()),
    )
}

fn coordinator(clock: &ManualClock) -> Coordinator {
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .build();
    c.register_agent(
        AgentProfile::new(AgentId::new(1), "ops-1")
            .with_role(Role::new("ops").unwrap())
            .with_capacity("cpu=8,memory=8Gi".parse().unwrap())
            .with_max_tasks(4),
    )
    .unwrap();
    c
}

/// A conflict over `repo/config` between two tasks, closed when both end.
fn closed_conflict(c: &Coordinator) {
    let claiming = |id| {
        let mut t = ops_task(id, "edit");
        t = t.with_requirements(
            Requirements::new()
                .with_role(Role::new("ops").unwrap())
                .with_claim(Claim::exclusive("repo/config")),
        );
        t
    };
    assert!(matches!(
        c.assign(claiming(1)).unwrap(),
        AssignOutcome::Assigned(_)
    ));
    assert!(matches!(
        c.assign(claiming(2)).unwrap(),
        AssignOutcome::Conflicted { .. }
    ));
    c.complete(TaskId::new(1), true, None).unwrap();
    c.complete(TaskId::new(2), true, None).unwrap();
}

#[test]
fn the_cleanup_forgets_conflicts_closed_past_the_retention() {
    let clock = ManualClock::new(at("2024-01-01T00:00:00Z"));
    let c = coordinator(&clock);
    closed_conflict(&c);
    let cleanup = Cleanup::default();
    assert_eq!(cleanup_coordinator(&c, clock.now() + HOUR, &cleanup), 0);
    assert_eq!(c.snapshot().conflicts.entries.len(), 1);
    assert_eq!(
        cleanup_coordinator(&c, clock.now() + 25 * HOUR, &cleanup),
        1
    );
    assert!(c.snapshot().conflicts.entries.is_empty());
    let short = cleanup.with_closed_conflicts(Duration::ZERO);
    assert_eq!(cleanup_coordinator(&c, clock.now(), &short), 0);
}

#[test]
fn the_cleanup_forgets_runs_finished_past_the_retention() {
    let clock = ManualClock::new(at("2024-01-01T00:00:00Z"));
    let c = coordinator(&clock);
    let workflow = Workflow::builder("deploy")
        .step(StepSpec::new("deploy"))
        .build()
        .unwrap();
    let finished = |id: &str, task: u64| {
        c.assign_in_group(id, ops_task(task, "deploy")).unwrap();
        c.complete(TaskId::new(task), true, None).unwrap();
        let mut run = workflow.start_run(id, 7, clock.now());
        let step = run.next_ready().unwrap();
        run.start(step, AgentId::new(1), clock.now()).unwrap();
        run.finish(step, AgentId::new(1), StepOutcome::success(), clock.now())
            .unwrap();
        run
    };
    let old = finished("run-old", 1);
    clock.advance(3 * DAY);
    let recent = finished("run-recent", 2);
    c.assign_in_group("run-going", ops_task(3, "deploy"))
        .unwrap();
    let going = workflow.start_run("run-going", 7, clock.now());
    let groups = |c: &Coordinator| -> Vec<String> {
        c.snapshot().duties.groups().map(str::to_owned).collect()
    };
    assert_eq!(groups(&c), ["run-going", "run-old", "run-recent"]);

    let now = at("2024-01-09T00:00:00Z"); // eight days after run-old, five after run-recent
    let forgotten = forget_finished_runs(&c, [&old, &recent, &going], now, 7 * DAY);
    assert_eq!(forgotten, ["run-old"]);
    assert_eq!(groups(&c), ["run-going", "run-recent"]);
    let later = now + 30 * DAY;
    let forgotten = forget_finished_runs(&c, [&recent, &going], later, 7 * DAY);
    assert_eq!(
        forgotten,
        ["run-recent"],
        "a run not finished is never touched"
    );
    assert_eq!(groups(&c), ["run-going"]);
}

/// A run's id is free again once the run ends: the cleanup of last week's
/// `nightly` keeps what tonight's `nightly` recorded (a duty started since, tasks
/// running), so separation of duties still holds in tonight's run.
#[test]
fn the_cleanup_keeps_what_a_later_run_under_the_same_id_recorded() {
    let clock = ManualClock::new(at("2024-01-01T00:00:00Z"));
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .policies(
            PolicySet::default()
                .with_rule(SeparationOfDuties::default())
                .unwrap(),
        )
        .build();
    for id in [1, 2] {
        c.register_agent(
            AgentProfile::new(AgentId::new(id), format!("ops-{id}"))
                .with_role(Role::new("ops").unwrap())
                .with_capacity("cpu=8".parse().unwrap())
                .with_max_tasks(1),
        )
        .unwrap();
    }
    let workflow = Workflow::builder("nightly")
        .step(StepSpec::new("deploy"))
        .build()
        .unwrap();
    // Last week's run, finished (its tasks done).
    c.assign_in_group("nightly", ops_task(1, "deploy")).unwrap();
    c.complete(TaskId::new(1), true, None).unwrap();
    let mut last_week = workflow.start_run("nightly", 7, clock.now());
    let step = last_week.next_ready().unwrap();
    last_week.start(step, AgentId::new(1), clock.now()).unwrap();
    (last_week.finish(step, AgentId::new(1), StepOutcome::success(), clock.now())).unwrap();
    c.forget_group("nightly");
    clock.advance(8 * DAY);

    // Tonight's, under the same id: agent 1 deploys.
    c.set_agent_status(AgentId::new(2), AgentStatus::Busy)
        .unwrap();
    let deploy = c
        .assign_in_group("nightly", ops_task(100, "deploy"))
        .unwrap();
    assert_eq!(deploy.assignment().map(|a| a.agent), Some(AgentId::new(1)));
    c.complete(TaskId::new(100), true, None).unwrap();
    c.set_agent_status(AgentId::new(2), AgentStatus::Available)
        .unwrap();
    let forgotten = forget_finished_runs(&c, [&last_week], clock.now(), 7 * DAY);
    assert_eq!(
        forgotten,
        ["nightly"],
        "last week's run is the host's to drop"
    );
    assert!(
        c.snapshot()
            .duties
            .has_performed("nightly", "deploy", AgentId::new(1))
    );
    // So tonight's verify is not the deployer's.
    c.set_agent_status(AgentId::new(2), AgentStatus::Busy)
        .unwrap();
    let verify = c
        .assign_in_group("nightly", ops_task(101, "verify"))
        .unwrap();
    assert!(verify.assignment().is_none(), "{verify}");

    // Tasks of the group still waiting or running keep it too, whenever the
    // duties started; once nothing of tonight's is left, a later cleanup given
    // tonight's finished run forgets the group.
    assert!(!c.forget_finished_group("nightly", clock.now() + DAY));
    c.set_agent_status(AgentId::new(2), AgentStatus::Available)
        .unwrap();
    c.complete(TaskId::new(101), true, None).unwrap();
    assert!(c.forget_finished_group("nightly", clock.now()));
    assert!(c.snapshot().duties.is_empty());
}

/// A journal that keeps its records in a [`MemoryJournal`] and cannot compact: it
/// takes the trait's default.
struct AppendOnly(MemoryJournal);

impl Journal for AppendOnly {
    fn append(&mut self, expected: u64, records: &[Record]) -> Result<(), JournalError> {
        self.0.append(expected, records)
    }
    fn read_from(&self, from: u64, out: &mut Vec<Record>) -> Result<(), JournalError> {
        self.0.read_from(from, out)
    }
    fn store_checkpoint(&mut self, checkpoint: &CoordinatorSnapshot) -> Result<(), JournalError> {
        self.0.store_checkpoint(checkpoint)
    }
    fn load_checkpoint(&self) -> Result<Option<CoordinatorSnapshot>, JournalError> {
        self.0.load_checkpoint()
    }
}

/// A journaled coordinator that ran `n` commands before a checkpoint and `n` after,
/// with its journal.
fn journaled(n: u64, journal: &mut dyn Journal) -> Coordinator {
    let clock = ManualClock::new(at("2024-01-01T00:00:00Z"));
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .journaled()
        .build();
    c.register_agent(
        AgentProfile::new(AgentId::new(1), "ops-1")
            .with_role(Role::new("ops").unwrap())
            .with_capacity("cpu=64".parse().unwrap())
            .with_max_tasks(100),
    )
    .unwrap();
    for id in 1..=n {
        c.assign(ops_task(id, "build")).unwrap();
    }
    c.checkpoint(journal).unwrap();
    for id in n + 1..=2 * n {
        c.assign(ops_task(id, "build")).unwrap();
    }
    c.write_journal(journal).unwrap();
    c
}

#[test]
fn the_cleanup_compacts_the_journal_behind_its_checkpoint() {
    let mut journal = MemoryJournal::new();
    let c = journaled(5, &mut journal);
    assert_eq!(journal.records().len(), 11); // the agent, then ten tasks
    assert_eq!(compact_journal(&mut journal).unwrap(), 6);
    assert_eq!(journal.records().len(), 5);
    assert_eq!(
        compact_journal(&mut journal).unwrap(),
        0,
        "nothing left behind it"
    );
    // Recovery reads the checkpoint and the records after it: the same state.
    let recovered = Coordinator::builder()
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
        .recover(&journal)
        .unwrap();
    assert_eq!(
        format!("{:?}", recovered.snapshot()),
        format!("{:?}", c.snapshot())
    );

    // A store that cannot compact keeps everything.
    let mut append_only = AppendOnly(MemoryJournal::new());
    journaled(5, &mut append_only);
    assert_eq!(compact_journal(&mut append_only).unwrap(), 0);
    assert_eq!(append_only.0.records().len(), 11);
}

#[test]
fn the_whole_cleanup_reports_what_it_removed() {
    let clock = ManualClock::new(at("2024-01-01T00:00:00Z"));
    let c = coordinator(&clock);
    closed_conflict(&c);
    let mut journal = MemoryJournal::new();
    let c2 = journaled(3, &mut journal);
    drop(c2);

    let memory = Memory::new(Arc::new(InMemoryStore::new()));
    let mut backups = Vec::new();
    for d in 0..10u32 {
        block_on(memory.put("day", d.to_string().into_bytes())).unwrap();
        let taken = at("2024-01-01T00:00:00Z") + d * DAY;
        backups.push(block_on(memory.backup(taken)).unwrap());
    }
    let now = at("2024-01-10T00:00:00Z");
    let cleanup: Cleanup =
        serde_json::from_str(r#"{"closed_conflicts": 3600000, "backups": {"keep_last": 2}}"#)
            .unwrap();
    assert_eq!(cleanup.finished_runs, 7 * DAY);
    assert_eq!(cleanup.backups, Retention::default().with_keep_last(2));
    let report = cleanup
        .run(&c, [], &mut journal, &mut backups, now)
        .unwrap();
    assert_eq!(report.conflicts, 1);
    assert!(report.runs.is_empty());
    assert_eq!(report.journal_records, 4);
    assert_eq!(
        report.backups.len(),
        2,
        "days 0 and 1: older than seven days"
    );
    assert_eq!(backups.len(), 8);
    assert_eq!(
        report.to_markdown(),
        "**Daily cleanup**, 2024-01-10T00:00:00.000Z: forgot 1 closed conflict and 0 finished runs, dropped 4 journal records, pruned 2 backups"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(
        serde_json::from_str::<concord::maintenance::CleanupReport>(&json).unwrap(),
        report
    );
    // Again: nothing left to remove.
    let again = cleanup
        .run(&c, [], &mut journal, &mut backups, now)
        .unwrap();
    assert_eq!(
        (again.conflicts, again.journal_records, again.backups.len()),
        (0, 0, 0)
    );
    assert!(serde_json::from_str::<Cleanup>(r#"{"closed": 1}"#).is_err());
}
