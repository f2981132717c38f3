//! Properties of human amounts and [`Resources`]:
//!
//! - Every `u64` of every unit round-trips through `format_amount` and `parse_amount`,
//!   and so does every amount written with any suffix, with padding zeros or as a
//!   decimal fraction.
//! - `Resources` round-trip through `Display`/`FromStr` and through serde_json, with
//!   random extended names.
//! - `checked_add` and `checked_sub` agree with `u128` arithmetic: they fail exactly
//!   when the true result leaves `0..=u64::MAX`, naming the first such resource.
//! - `a.fits(b)` exactly when every amount of `a` is at most `b`'s.
//! - Random text never panics the parsers, and what they accept prints back to the
//!   same value.
//! - A value does not remember how it was built: any sequence of `set`s equals (and
//!   hashes, clones, prints and serializes as) the value built from the final amounts,
//!   however often it crossed between one extended resource and several.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use concord::resource::AmountError;
use concord::{ResourceError, ResourceName, Resources};
use proptest::prelude::*;

/// Extended names drawn often from a small pool, so that two random values share
/// names, and sometimes made up (including names that normalize to `cpu`).
fn extended_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["gpu", "llm_tokens", "fpga", "nvidia.com/gpu", "a:b"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z][a-zA-Z0-9_./:-]{0,20}",
    ]
}

/// Amounts that are often zero, small, or near the top of the range.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        2 => 0u64..10_000,
        2 => any::<u64>(),
        2 => (u64::MAX - 10_000)..=u64::MAX,
        1 => (0u32..64).prop_map(|s| 1u64 << s),
    ]
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        amount(),
        amount(),
        amount(),
        prop::collection::vec((extended_name(), amount()), 0..5),
    )
        .prop_map(|(cpu, memory, storage, extended)| {
            extended.into_iter().fold(
                Resources::new()
                    .with_cpu_millis(cpu)
                    .with_memory_bytes(memory)
                    .with_storage_bytes(storage),
                |r, (name, v)| r.with_named(&name, v).expect("generated names are valid"),
            )
        })
}

fn resource_name() -> impl Strategy<Value = ResourceName> {
    prop_oneof![
        Just(ResourceName::Cpu),
        Just(ResourceName::Memory),
        Just(ResourceName::Storage),
        extended_name().prop_map(|n| n.parse().expect("generated names are valid")),
    ]
}

/// Every resource named in `a` or `b`, in iteration order (cpu, memory, storage, then
/// extended by name).
fn all_names(a: &Resources, b: &Resources) -> Vec<ResourceName> {
    let mut names = vec![
        ResourceName::Cpu,
        ResourceName::Memory,
        ResourceName::Storage,
    ];
    let mut extended: Vec<ResourceName> = a
        .iter()
        .chain(b.iter())
        .map(|(n, _)| n)
        .filter(|n| matches!(n, ResourceName::Extended(_)))
        .collect();
    extended.sort();
    extended.dedup();
    names.extend(extended);
    names
}

/// The suffixes each resource accepts, with their multipliers.
fn suffixes(name: &ResourceName) -> &'static [(&'static str, u64)] {
    const KI: u64 = 1 << 10;
    match name {
        ResourceName::Cpu => &[("", 1_000), ("m", 1)],
        ResourceName::Memory | ResourceName::Storage => &[
            ("B", 1),
            ("Ki", KI),
            ("Mi", KI * KI),
            ("Gi", KI * KI * KI),
            ("Ti", KI * KI * KI * KI),
            ("Pi", KI * KI * KI * KI * KI),
            ("Ei", KI * KI * KI * KI * KI * KI),
            ("KiB", KI),
            ("GiB", KI * KI * KI),
            ("k", 1_000),
            ("K", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("E", 1_000_000_000_000_000_000),
            ("MB", 1_000_000),
        ],
        _ => &[
            ("", 1),
            ("k", 1_000),
            ("K", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("E", 1_000_000_000_000_000_000),
        ],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Copying resources over others (the requirements a coordinator writes over the
    /// last task's) gives the source, whatever each held: nothing, one extended
    /// amount of the same or another name, or several.
    #[test]
    fn clone_from_gives_the_source(mut into in resources(), from in resources()) {
        into.clone_from(&from);
        prop_assert_eq!(&into, &from);
        prop_assert_eq!(into.to_string(), from.to_string());
        let mut same = from.clone();
        same.clone_from(&from.clone());
        prop_assert_eq!(same, from);
    }

    #[test]
    fn every_amount_round_trips_through_format_and_parse(
        name in resource_name(),
        v in amount(),
    ) {
        let text = name.format_amount(v);
        prop_assert_eq!(name.parse_amount(&text), Ok(v), "{} {:?}", name, text);
    }

    #[test]
    fn any_u64_round_trips_for_every_unit(v in any::<u64>()) {
        for name in [
            ResourceName::Cpu,
            ResourceName::Memory,
            ResourceName::Storage,
            ResourceName::new("llm_tokens").unwrap(),
        ] {
            let text = name.format_amount(v);
            prop_assert_eq!(name.parse_amount(&text), Ok(v), "{} {:?}", name, text);
        }
    }

    #[test]
    fn an_amount_with_any_suffix_parses_exactly(
        name in resource_name(),
        mantissa in amount(),
        pick in any::<prop::sample::Index>(),
    ) {
        let table = suffixes(&name);
        let (suffix, multiplier) = table[pick.index(table.len())];
        let text = format!("{mantissa}{suffix}");
        let parsed = name.parse_amount(&text);
        match mantissa.checked_mul(multiplier) {
            // A bare byte count needs a unit, but bytes have no bare suffix here.
            Some(v) => prop_assert_eq!(parsed, Ok(v), "{:?}", text),
            None => prop_assert!(
                matches!(
                    parsed,
                    Err(ResourceError::Amount { source: AmountError::Overflow { .. }, .. })
                ),
                "{:?} gave {:?}", text, parsed
            ),
        }
    }

    #[test]
    fn a_decimal_fraction_parses_exactly_or_is_refused_as_too_precise(
        name in resource_name(),
        whole in 0u64..1_000_000,
        frac_digits in 1usize..6,
        frac in 0u64..100_000,
        pick in any::<prop::sample::Index>(),
    ) {
        let table = suffixes(&name);
        let (suffix, multiplier) = table[pick.index(table.len())];
        let frac = frac % 10u64.pow(frac_digits as u32);
        let text = format!("{whole}.{frac:0width$}{suffix}", width = frac_digits);
        let scale = 10u128.pow(frac_digits as u32);
        let exact = (u128::from(whole) * scale + u128::from(frac)) * u128::from(multiplier);
        let parsed = name.parse_amount(&text);
        let bare_bytes = suffix.is_empty()
            && matches!(name, ResourceName::Memory | ResourceName::Storage);
        prop_assume!(!bare_bytes);
        if exact % scale != 0 {
            prop_assert!(
                matches!(
                    parsed,
                    Err(ResourceError::Amount { source: AmountError::TooPrecise { .. }, .. })
                ),
                "{:?} gave {:?}", text, parsed
            );
        } else {
            match u64::try_from(exact / scale) {
                Ok(v) => prop_assert_eq!(parsed, Ok(v), "{:?}", text),
                Err(_) => prop_assert!(parsed.is_err(), "{:?}", text),
            }
        }
    }

    #[test]
    fn padding_zeros_do_not_change_an_amount(
        name in resource_name(),
        v in amount(),
        leading in 0usize..50,
        trailing in 0usize..50,
    ) {
        let text = name.format_amount(v);
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        let padded = format!(
            "{}{digits}.{}{suffix}",
            "0".repeat(leading),
            "0".repeat(trailing)
        );
        prop_assert_eq!(name.parse_amount(&padded), Ok(v), "{:?}", padded);
    }

    #[test]
    fn resources_round_trip_through_display_and_from_str(r in resources()) {
        let text = r.to_string();
        let back: Resources = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&back, &r, "{:?}", text);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn resources_round_trip_through_serde_json(r in resources()) {
        let json = serde_json::to_string(&r).unwrap();
        let back: Resources = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
        prop_assert_eq!(&back, &r, "{}", json);
        // The list form in a JSON string reads back the same.
        let as_string = serde_json::to_string(&r.to_string()).unwrap();
        let back: Resources = serde_json::from_str(&as_string).unwrap();
        prop_assert_eq!(&back, &r);
    }

    #[test]
    fn checked_add_agrees_with_u128_arithmetic(a in resources(), b in resources()) {
        let names = all_names(&a, &b);
        let first_overflow = names.iter().find(|n| {
            u128::from(a.get(n)) + u128::from(b.get(n)) > u128::from(u64::MAX)
        });
        match (a.checked_add(&b), first_overflow) {
            (Ok(sum), None) => {
                for n in &names {
                    prop_assert_eq!(sum.get(n), a.get(n) + b.get(n), "{}", n);
                }
                prop_assert_eq!(&sum, &b.checked_add(&a).unwrap());
                prop_assert_eq!(&sum, &a.saturating_add(&b));
            }
            (Err(err), Some(n)) => {
                prop_assert_eq!(err, ResourceError::Overflow { resource: n.to_string() });
            }
            (got, want) => prop_assert!(false, "got {:?}, expected overflow of {:?}", got, want),
        }
    }

    #[test]
    fn checked_sub_agrees_with_u128_arithmetic(a in resources(), b in resources()) {
        let names = all_names(&a, &b);
        let first_underflow = names.iter().find(|n| a.get(n) < b.get(n));
        match (a.checked_sub(&b), first_underflow) {
            (Ok(diff), None) => {
                for n in &names {
                    let want = i128::from(a.get(n)) - i128::from(b.get(n));
                    prop_assert_eq!(i128::from(diff.get(n)), want, "{}", n);
                }
                prop_assert_eq!(diff.checked_add(&b), Ok(a.clone()));
                prop_assert_eq!(&diff, &a.saturating_sub(&b));
            }
            (Err(err), Some(n)) => {
                prop_assert_eq!(err, ResourceError::Underflow {
                    resource: n.to_string(),
                    have: a.get(n),
                    take: b.get(n),
                });
            }
            (got, want) => prop_assert!(false, "got {:?}, expected underflow of {:?}", got, want),
        }
    }

    #[test]
    fn fits_exactly_when_every_amount_is_at_most_the_capacity(
        a in resources(),
        b in resources(),
    ) {
        let names = all_names(&a, &b);
        let every = names.iter().all(|n| a.get(n) <= b.get(n));
        prop_assert_eq!(a.fits(&b), every);
        prop_assert_eq!(a.first_shortfall(&b).is_none(), every);
        prop_assert!(a.min(&b).fits(&a) && a.min(&b).fits(&b));
        prop_assert!(a.fits(&a.max(&b)) && b.fits(&a.max(&b)));
        prop_assert!(a.fits(&a));
    }

    #[test]
    fn garbage_never_panics_the_parsers(
        text in prop_oneof![
            any::<String>(),
            "[0-9.mkKMGTPEiB +eE-]{0,24}",
            "[a-z=,0-9.mGi ]{0,40}",
        ],
        name in resource_name(),
    ) {
        if let Ok(v) = name.parse_amount(&text) {
            prop_assert_eq!(name.parse_amount(&name.format_amount(v)), Ok(v));
        }
        if let Ok(r) = text.parse::<Resources>() {
            prop_assert_eq!(r.to_string().parse::<Resources>(), Ok(r.clone()));
        }
        let _ = ResourceName::new(&text);
        let json = serde_json::to_string(&text).unwrap();
        let _ = serde_json::from_str::<Resources>(&json);
        let mut map = serde_json::Map::new();
        map.insert(name.to_string(), serde_json::Value::String(text));
        let _ = serde_json::from_value::<Resources>(serde_json::Value::Object(map));
    }

    #[test]
    fn any_sequence_of_sets_equals_the_final_amounts(
        sets in prop::collection::vec(
            (
                prop_oneof![
                    1 => resource_name(),
                    2 => extended_name().prop_map(|n| n.parse().expect("generated names are valid")),
                ],
                prop_oneof![1 => Just(0u64), 2 => amount()],
            ),
            0..16,
        ),
    ) {
        // One extended amount is kept inline and a second moves them to the heap;
        // setting one to zero removes it. Neither path may show in the value.
        let mut built = Resources::new();
        let mut last = BTreeMap::new();
        for (name, v) in &sets {
            built.set(name, *v);
            last.insert(name.clone(), *v);
        }
        let direct = last.iter().fold(Resources::new(), |r, (n, v)| r.with(n, *v));
        let hasher = RandomState::new();
        prop_assert_eq!(&built, &direct);
        prop_assert_eq!(hasher.hash_one(&built), hasher.hash_one(&direct));
        prop_assert_eq!(&built.clone(), &direct);
        prop_assert_eq!(hasher.hash_one(built.clone()), hasher.hash_one(&direct));
        for (n, v) in &last {
            prop_assert_eq!(built.get(n), *v, "{}", n);
        }
        prop_assert_eq!(built.is_zero(), last.values().all(|v| *v == 0));
        prop_assert_eq!(built.to_string(), direct.to_string());
        prop_assert_eq!(
            serde_json::to_string(&built).unwrap(),
            serde_json::to_string(&direct).unwrap()
        );
    }
}
