//! Time through the public API: `Timestamp`'s RFC 3339 text, its conversions from and
//! to `SystemTime`, and the clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord::clock::ParseTimestampError;
use concord::{Clock, ManualClock, SystemClock, Timestamp};

fn parse(text: &str) -> Result<Timestamp, ParseTimestampError> {
    text.parse()
}

#[test]
fn display_is_rfc_3339_utc_with_milliseconds_or_nanoseconds() {
    let cases = [
        (Timestamp::EPOCH, "1970-01-01T00:00:00.000Z"),
        (
            Timestamp::from_millis(1_700_000_000_250),
            "2023-11-14T22:13:20.250Z",
        ),
        (Timestamp::from_secs(12), "1970-01-01T00:00:12.000Z"),
        // Sub-millisecond parts print all nine digits.
        (Timestamp::from_nanos(1), "1970-01-01T00:00:00.000000001Z"),
        (
            Timestamp::from_nanos(1_700_000_000_250_000_100),
            "2023-11-14T22:13:20.250000100Z",
        ),
        // Leap days, and century years that are (2000) and are not (2100) leap years.
        (
            Timestamp::from_secs(951_782_400),
            "2000-02-29T00:00:00.000Z",
        ),
        (
            Timestamp::from_secs(4_107_542_399),
            "2100-02-28T23:59:59.000Z",
        ),
        (
            Timestamp::from_secs(4_107_542_400),
            "2100-03-01T00:00:00.000Z",
        ),
        (
            Timestamp::from_secs(946_684_799),
            "1999-12-31T23:59:59.000Z",
        ),
        (Timestamp::MAX, "2554-07-21T23:34:33.709551615Z"),
    ];
    for (t, text) in cases {
        assert_eq!(t.to_string(), text, "{}", t.as_nanos());
        assert_eq!(parse(text), Ok(t), "{text}");
    }
}

#[test]
fn parse_applies_offsets_and_reads_any_fraction_length() {
    let t = Timestamp::from_millis(1_700_000_000_250);
    for text in [
        "2023-11-14T22:13:20.25Z",
        "2023-11-14T22:13:20.250000000Z",
        "2023-11-14t22:13:20.250z",
        "2023-11-14T23:13:20.250+01:00",
        "2023-11-14T17:43:20.250-04:30",
        "2023-11-14T22:13:20.250-00:00",
        "2023-11-15T00:13:20.250+02:00",
    ] {
        assert_eq!(parse(text), Ok(t), "{text}");
    }
    assert_eq!(
        parse("2023-11-14T22:13:20Z"),
        Ok(Timestamp::from_secs(1_700_000_000))
    );
    assert_eq!(
        parse("1970-01-01T00:00:00.000000001Z"),
        Ok(Timestamp::from_nanos(1))
    );
}

#[test]
fn parse_refuses_what_is_not_a_representable_rfc_3339_instant() {
    for text in [
        "",
        "2023-11-14",
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20+0100",
        "2023-11-14T22:13:20+01",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20.1234567891Z",
        "2023-13-14T22:13:20Z",
        "2023-00-14T22:13:20Z",
        "2023-02-29T22:13:20Z",
        "2100-02-29T00:00:00Z",
        "2023-04-31T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:60:00Z",
        "2016-12-31T23:59:60Z",
        "2023-11-14T22:13:20+24:00",
        "+2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20Z trailing",
        "２０２３-11-14T22:13:20Z",
        "t+12.250s",
    ] {
        assert!(
            matches!(parse(text), Err(ParseTimestampError::Malformed { .. })),
            "{text:?}: {:?}",
            parse(text)
        );
    }
    for text in [
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:59:59+01:00",
        "0000-01-01T00:00:00Z",
        "2554-07-21T23:34:33.709551616Z",
        "9999-12-31T23:59:59Z",
    ] {
        assert_eq!(
            parse(text),
            Err(ParseTimestampError::OutOfRange {
                input: text.to_owned()
            })
        );
    }
    // The message names the text (cut short when long) and what is wrong with it.
    let err = parse("2023-02-29T00:00:00Z").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""2023-02-29T00:00:00Z" is not an RFC 3339 date and time: day out of range for its month"#
    );
    let long = "x".repeat(10_000);
    let ParseTimestampError::Malformed { input, .. } = parse(&long).unwrap_err() else {
        panic!()
    };
    assert_eq!(input.len(), 64);
    // The crate's error wraps it, so `?` works in a function returning concord's Result.
    let wrapped: concord::Error = parse("soon").unwrap_err().into();
    assert!(wrapped.to_string().contains("\"soon\""));
}

#[test]
fn system_time_conversions_are_exact_and_saturate_outside_the_range() {
    let t = Timestamp::from_nanos(1_700_000_000_250_000_123);
    let st = t.to_system_time();
    assert_eq!(
        st,
        UNIX_EPOCH + Duration::from_nanos(1_700_000_000_250_000_123)
    );
    assert_eq!(Timestamp::from(st), t);
    assert_eq!(SystemTime::from(t), st);
    assert_eq!(Timestamp::EPOCH.to_system_time(), UNIX_EPOCH);
    assert_eq!(
        Timestamp::from(Timestamp::MAX.to_system_time()),
        Timestamp::MAX
    );
    // Before the epoch: the epoch. After the year 2554: the latest timestamp.
    assert_eq!(
        Timestamp::from(UNIX_EPOCH - Duration::from_secs(86_400)),
        Timestamp::EPOCH
    );
    let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 1_000_000_000 + 1);
    assert_eq!(Timestamp::from(far), Timestamp::MAX);
}

#[test]
fn system_clock_agrees_with_system_time() {
    let before = Timestamp::from(SystemTime::now());
    let now = SystemClock.now();
    let after = Timestamp::from(SystemTime::now());
    assert!(before <= now && now <= after);
    assert!(now.to_string().starts_with("20"), "{now}");
}

#[test]
fn manual_clock_prints_like_any_timestamp() {
    let clock = ManualClock::new("2023-11-14T22:13:20Z".parse().unwrap());
    clock.advance(Duration::from_millis(250));
    assert_eq!(clock.now().to_string(), "2023-11-14T22:13:20.250Z");
}
