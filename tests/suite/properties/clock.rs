//! Properties of [`Timestamp`]'s text form:
//!
//! - Every timestamp prints as RFC 3339 and parses back to itself, exactly.
//! - The printed form sorts as the timestamps do (fixed width, UTC).
//! - The same instant written with any offset parses to the same timestamp.
//! - Random text never panics the parser.

use concord::Timestamp;
use proptest::prelude::*;

/// Timestamps that are often whole seconds or milliseconds, near the ends of the
/// range, or anything.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        1 => (0u64..=u64::MAX / 1_000_000_000).prop_map(Timestamp::from_secs),
        1 => (0u64..=u64::MAX / 1_000_000).prop_map(Timestamp::from_millis),
        1 => (0u64..1_000_000).prop_map(Timestamp::from_nanos),
        1 => (u64::MAX - 1_000_000..=u64::MAX).prop_map(Timestamp::from_nanos),
        3 => any::<u64>().prop_map(Timestamp::from_nanos),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn display_parses_back_to_the_same_timestamp(t in timestamp()) {
        let text = t.to_string();
        prop_assert_eq!(text.parse::<Timestamp>(), Ok(t), "{}", text);
    }

    #[test]
    fn display_sorts_as_the_timestamps_do(a in timestamp(), b in timestamp()) {
        // Whole milliseconds print three digits of fraction; compare like with like.
        let (a, b) = (Timestamp::from_millis(a.as_millis()), Timestamp::from_millis(b.as_millis()));
        prop_assert_eq!(a.to_string().cmp(&b.to_string()), a.cmp(&b));
    }

    #[test]
    fn any_offset_names_the_same_instant(
        secs in 86_400u64..=(u64::MAX / 1_000_000_000 - 86_400),
        minutes in -(23 * 60 + 59i64)..=(23 * 60 + 59),
    ) {
        let t = Timestamp::from_secs(secs);
        // The local time at that offset, printed with the offset.
        let shifted = Timestamp::from_secs(secs.checked_add_signed(minutes * 60).unwrap());
        let local = shifted.to_string();
        let sign = if minutes < 0 { '-' } else { '+' };
        let text = format!(
            "{}{sign}{:02}:{:02}",
            &local[..local.len() - 1],
            minutes.abs() / 60,
            minutes.abs() % 60
        );
        prop_assert_eq!(text.parse::<Timestamp>(), Ok(t), "{}", text);
    }

    #[test]
    fn random_text_never_panics_the_parser(text in "\\PC{0,40}", near in "[0-9T:.Zz+-]{15,40}") {
        let _ = text.parse::<Timestamp>();
        if let Ok(t) = near.parse::<Timestamp>() {
            // Whatever is accepted prints back to an instant that parses the same.
            prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }
    }
}
