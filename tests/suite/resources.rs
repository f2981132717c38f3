//! `Resources` and human amounts through the public API: every unit and suffix, every
//! error, checked arithmetic, `fits`, text and serde forms.

use std::error::Error as _;

use concord::resource::AmountError;
use concord::{Error, NameError, ResourceError, ResourceName, Resources};

fn name(text: &str) -> ResourceName {
    text.parse().expect("valid resource name")
}

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

/// The error's message followed by each of its sources', as a reporter prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Parses `text` as an amount of `resource`, expecting an [`AmountError`]; checks the
/// error's message alone (what a host logging `{e}` sees) names the resource and the
/// text, and returns the amount error.
fn amount_error(resource: &str, text: &str) -> AmountError {
    let err = name(resource)
        .parse_amount(text)
        .expect_err("the amount is invalid");
    let message = err.to_string();
    assert!(message.contains(resource), "{message:?} names {resource}");
    assert!(
        message.contains(&format!("{:?}", text.trim())) || text.trim().is_empty(),
        "{message:?} names {text:?}"
    );
    assert!(!message.ends_with('.'), "{message:?}");
    match err {
        ResourceError::Amount {
            resource: r,
            source,
        } => {
            assert_eq!(r, resource);
            source
        }
        other => panic!("expected an amount error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Units and suffixes

#[test]
fn cpu_is_counted_in_millicores() {
    let cpu = ResourceName::Cpu;
    for (text, millis) in [
        ("0", 0),
        ("1", 1_000),
        ("2", 2_000),
        ("1.5", 1_500),
        ("0.5", 500),
        (".25", 250),
        ("3.", 3_000),
        ("0.001", 1),
        ("500m", 500),
        ("1m", 1),
        ("2500m", 2_500),
        (" 4 ", 4_000),
    ] {
        assert_eq!(cpu.parse_amount(text), Ok(millis), "{text}");
    }
    assert_eq!(cpu.format_amount(0), "0");
    assert_eq!(cpu.format_amount(500), "500m");
    assert_eq!(cpu.format_amount(1_500), "1500m");
    assert_eq!(cpu.format_amount(3_000), "3");
}

#[test]
fn memory_and_storage_take_every_byte_suffix() {
    const KI: u64 = 1 << 10;
    let cases: [(&str, u64); 27] = [
        ("B", 1),
        ("Ki", KI),
        ("Mi", KI.pow(2)),
        ("Gi", KI.pow(3)),
        ("Ti", KI.pow(4)),
        ("Pi", KI.pow(5)),
        ("Ei", KI.pow(6)),
        ("KiB", KI),
        ("MiB", KI.pow(2)),
        ("GiB", KI.pow(3)),
        ("TiB", KI.pow(4)),
        ("PiB", KI.pow(5)),
        ("EiB", KI.pow(6)),
        ("k", 1_000),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 10u64.pow(12)),
        ("P", 10u64.pow(15)),
        ("E", 10u64.pow(18)),
        ("kB", 1_000),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 10u64.pow(12)),
        ("PB", 10u64.pow(15)),
        ("EB", 10u64.pow(18)),
    ];
    for resource in [ResourceName::Memory, ResourceName::Storage] {
        for (suffix, multiplier) in cases {
            assert_eq!(
                resource.parse_amount(&format!("1{suffix}")),
                Ok(multiplier),
                "1{suffix}"
            );
            assert_eq!(
                resource.parse_amount(&format!("2{suffix}")),
                Ok(2 * multiplier),
                "2{suffix}"
            );
        }
        assert_eq!(resource.parse_amount("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(resource.parse_amount("1.5G"), Ok(1_500_000_000));
        assert_eq!(resource.parse_amount("0.5Ki"), Ok(512));
        assert_eq!(resource.parse_amount("0"), Ok(0));
        assert_eq!(resource.parse_amount("0.0"), Ok(0));
        assert_eq!(resource.parse_amount("15Ei"), Ok(15 * KI.pow(6)));
    }
}

#[test]
fn bytes_print_in_the_shortest_exact_unit() {
    let memory = ResourceName::Memory;
    assert_eq!(memory.format_amount(0), "0");
    assert_eq!(memory.format_amount(7), "7B");
    assert_eq!(memory.format_amount(1_024), "1Ki");
    assert_eq!(memory.format_amount(1_000), "1k");
    assert_eq!(memory.format_amount(2 << 30), "2Gi");
    assert_eq!(memory.format_amount(1_610_612_736), "1536Mi");
    assert_eq!(memory.format_amount(1_500_000_000), "1500M");
    assert_eq!(memory.format_amount(1 << 60), "1Ei");
    assert_eq!(memory.format_amount(u64::MAX), "18446744073709551615B");
}

#[test]
fn extended_resources_are_plain_counts_with_decimal_suffixes() {
    let gpu = name("gpu");
    let tokens = name("llm_tokens");
    for (text, count) in [
        ("0", 0),
        ("4", 4),
        ("100k", 100_000),
        ("100K", 100_000),
        ("1.5k", 1_500),
        ("2M", 2_000_000),
        ("3G", 3_000_000_000),
        ("1T", 10u64.pow(12)),
        ("1P", 10u64.pow(15)),
        ("1E", 10u64.pow(18)),
        ("18446744073709551615", u64::MAX),
    ] {
        assert_eq!(gpu.parse_amount(text), Ok(count), "{text}");
        assert_eq!(tokens.parse_amount(text), Ok(count), "{text}");
    }
    assert_eq!(tokens.format_amount(200_000), "200k");
    assert_eq!(tokens.format_amount(12), "12");
    assert_eq!(tokens.format_amount(1_500), "1500");
    assert_eq!(tokens.format_amount(3_000_000), "3M");
}

#[test]
fn leading_and_trailing_zeros_do_not_count_as_digits() {
    // Regression: more than 38 digits, zeros included, used to be an overflow error
    // even when the value was small.
    let zeros = "0".repeat(60);
    assert_eq!(
        ResourceName::Memory.parse_amount(&format!("1.{zeros}Gi")),
        Ok(1 << 30)
    );
    assert_eq!(
        ResourceName::Memory.parse_amount(&format!("{zeros}1Ki")),
        Ok(1 << 10)
    );
    assert_eq!(
        ResourceName::Cpu.parse_amount(&format!("{zeros}2.5{zeros}")),
        Ok(2_500)
    );
    assert_eq!(name("gpu").parse_amount(&zeros), Ok(0));
}

// ---------------------------------------------------------------------------------
// Amount errors

#[test]
fn an_empty_amount_is_an_error() {
    assert_eq!(amount_error("cpu", ""), AmountError::Empty);
    assert_eq!(amount_error("gpu", "   "), AmountError::Empty);
}

#[test]
fn a_negative_amount_is_an_error_naming_the_text() {
    for (resource, text) in [("cpu", "-1"), ("memory", "-2Gi"), ("gpu", "-0")] {
        assert_eq!(
            amount_error(resource, text),
            AmountError::Negative { text: text.into() }
        );
    }
}

#[test]
fn a_non_numeric_amount_is_an_error_naming_the_text() {
    for (resource, text) in [
        ("cpu", "abc"),
        ("cpu", "m"),
        ("cpu", "+5"),
        ("cpu", "1..5"),
        ("cpu", "1.2.3"),
        ("memory", "Gi"),
        ("memory", "."),
        ("gpu", "four"),
    ] {
        assert_eq!(
            amount_error(resource, text),
            AmountError::NotANumber { text: text.into() },
            "{text}"
        );
    }
}

#[test]
fn an_overflowing_amount_is_an_error_naming_the_text() {
    for (resource, text) in [
        ("gpu", "18446744073709551616"),
        ("cpu", "18446744073709552"),
        ("cpu", "18446744073709551616m"),
        ("memory", "16Ei"),
        ("storage", "18446744073709551616B"),
        ("gpu", "19E"),
        ("gpu", "99999999999999999999999999999999999999999999"),
    ] {
        assert_eq!(
            amount_error(resource, text),
            AmountError::Overflow { text: text.into() },
            "{text}"
        );
    }
}

#[test]
fn an_amount_finer_than_a_base_unit_is_an_error_naming_the_text() {
    for (resource, text) in [
        ("cpu", "0.0001"),
        ("cpu", "0.5m"),
        ("memory", "0.5B"),
        ("memory", "1.0001k"),
        ("gpu", "1.5"),
        ("gpu", "0.0000000000000000000000000000000000001"),
    ] {
        assert_eq!(
            amount_error(resource, text),
            AmountError::TooPrecise { text: text.into() },
            "{text}"
        );
    }
}

#[test]
fn a_byte_amount_without_a_unit_is_an_error_naming_the_text() {
    for (resource, text) in [("memory", "2"), ("storage", "1024"), ("memory", "1.5")] {
        assert_eq!(
            amount_error(resource, text),
            AmountError::MissingUnit { text: text.into() },
            "{text}"
        );
    }
}

#[test]
fn an_unknown_unit_is_an_error_naming_text_and_unit() {
    for (resource, text, unit) in [
        ("cpu", "2k", "k"),
        ("cpu", "1e3", "e3"),
        ("memory", "2gi", "gi"),
        ("memory", "2 Gi", " Gi"),
        ("memory", "0x10", "x10"),
        ("gpu", "2Gi", "Gi"),
        ("gpu", "5m", "m"),
    ] {
        let err = amount_error(resource, text);
        assert_eq!(
            err,
            AmountError::UnknownUnit {
                text: text.into(),
                unit: unit.into()
            },
            "{text}"
        );
        assert!(err.to_string().contains(&format!("{unit:?}")));
    }
}

// ---------------------------------------------------------------------------------
// Names

#[test]
fn names_are_parsed_case_insensitively_and_validated() {
    assert_eq!(name("CPU"), ResourceName::Cpu);
    assert_eq!(name(" Memory "), ResourceName::Memory);
    assert_eq!(name("storage"), ResourceName::Storage);
    assert_eq!(name("GPU").to_string(), "gpu");
    assert_eq!(name("nvidia.com/gpu").as_str(), "nvidia.com/gpu");
    assert!(matches!(name("gpu"), ResourceName::Extended(_)));

    let long = "x".repeat(129);
    for (raw, check) in [
        ("", "empty"),
        ("   ", "empty"),
        ("bad name", "\"bad name\""),
        ("gpu!", "\"gpu!\""),
        (long.as_str(), "longer than 128"),
    ] {
        let err = ResourceName::new(raw).expect_err("invalid name");
        assert!(matches!(err, ResourceError::Name(_)), "{err:?}");
        assert!(err.to_string().contains(check), "{err} / {check}");
    }
    assert!(matches!(
        ResourceName::new("a b"),
        Err(ResourceError::Name(NameError::InvalidChar { bad: ' ', .. }))
    ));
    assert!(Resources::new().with_named("bad name", 1).is_err());
}

// ---------------------------------------------------------------------------------
// Building and reading

#[test]
fn resources_are_built_read_and_compared_by_value() {
    let gpu = name("gpu");
    let r = Resources::new()
        .with_cpu_millis(1_500)
        .with_memory_bytes(1 << 30)
        .with_storage_bytes(10 << 30)
        .with(&gpu, 2)
        .with_named("llm_tokens", 100_000)
        .unwrap();
    assert_eq!(r.cpu_millis(), 1_500);
    assert_eq!(r.memory_bytes(), 1 << 30);
    assert_eq!(r.storage_bytes(), 10 << 30);
    assert_eq!(r.get(&gpu), 2);
    assert_eq!(r.amount("llm_tokens"), 100_000);
    assert_eq!(r.amount("cpu"), 1_500);
    assert_eq!(r.amount("fpga"), 0);
    assert_eq!(
        r,
        res("llm_tokens=100k,gpu=2,storage=10Gi,memory=1Gi,cpu=1500m")
    );

    let names: Vec<String> = r.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["cpu", "memory", "storage", "gpu", "llm_tokens"]);

    // Setting an amount to zero removes it: equal resources compare equal.
    let mut cleared = r.clone();
    cleared.set(&gpu, 0);
    cleared.set(&name("llm_tokens"), 0);
    assert_eq!(cleared, res("cpu=1500m,memory=1Gi,storage=10Gi"));
    assert_eq!(cleared, cleared.clone().with_named("fpga", 0).unwrap());

    assert!(Resources::new().is_zero());
    assert!(Resources::default().is_zero());
    assert!(res("cpu=0,gpu=0").is_zero());
    assert!(!res("gpu=1").is_zero());
    assert_eq!(format!("{r:?}"), format!("Resources({r})"));
}

// ---------------------------------------------------------------------------------
// Arithmetic

#[test]
fn checked_add_adds_every_resource() {
    let a = res("cpu=1,memory=1Gi,gpu=1");
    let b = res("cpu=500m,storage=2Gi,gpu=1,llm_tokens=5k");
    assert_eq!(
        a.checked_add(&b),
        Ok(res("cpu=1500m,memory=1Gi,storage=2Gi,gpu=2,llm_tokens=5k"))
    );
    assert_eq!(a.checked_add(&Resources::new()), Ok(a.clone()));
}

#[test]
fn checked_add_overflow_names_the_resource() {
    let max = u64::MAX;
    for (resource, full) in [
        ("cpu", Resources::new().with_cpu_millis(max)),
        ("memory", Resources::new().with_memory_bytes(max)),
        ("storage", Resources::new().with_storage_bytes(max)),
        ("gpu", Resources::new().with_named("gpu", max).unwrap()),
    ] {
        let one = Resources::new().with(&name(resource), 1);
        let err = full.checked_add(&one).unwrap_err();
        assert_eq!(
            err,
            ResourceError::Overflow {
                resource: resource.into()
            }
        );
        assert!(err.to_string().contains(resource), "{err}");
        assert_eq!(full.saturating_add(&one), full);
    }
}

#[test]
fn checked_sub_underflow_names_the_resource_and_amounts() {
    let have = res("cpu=2,memory=1Gi,gpu=1");
    assert_eq!(
        have.checked_sub(&res("cpu=500m,gpu=1")),
        Ok(res("cpu=1500m,memory=1Gi"))
    );

    let err = have.checked_sub(&res("memory=2Gi")).unwrap_err();
    assert_eq!(
        err,
        ResourceError::Underflow {
            resource: "memory".into(),
            have: 1 << 30,
            take: 2 << 30
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("memory") && msg.contains(&(1u64 << 30).to_string()),
        "{msg}"
    );

    // An extended resource absent from `self` has nothing to take from.
    let err = have.checked_sub(&res("fpga=1")).unwrap_err();
    assert_eq!(
        err,
        ResourceError::Underflow {
            resource: "fpga".into(),
            have: 0,
            take: 1
        }
    );
    assert!(err.to_string().contains("fpga"));
    assert_eq!(
        have.saturating_sub(&res("cpu=3,fpga=1")),
        res("memory=1Gi,gpu=1")
    );
}

#[test]
fn fits_checks_every_resource() {
    let capacity = res("cpu=4,memory=16Gi,gpu=2");
    assert!(res("cpu=500m,memory=1.5Gi,gpu=1").fits(&capacity));
    assert!(capacity.fits(&capacity));
    assert!(Resources::new().fits(&capacity));
    assert!(Resources::new().fits(&Resources::new()));
    assert!(!res("cpu=4001m").fits(&capacity));
    assert!(!res("gpu=3").fits(&capacity));
    assert!(!res("storage=1Ki").fits(&capacity));
    assert!(
        !res("fpga=1").fits(&capacity),
        "a resource the capacity lacks"
    );
    assert!(!capacity.fits(&Resources::new()));

    assert_eq!(
        res("cpu=1,gpu=3").first_shortfall(&capacity),
        Some((name("gpu"), 3, 2))
    );
    assert_eq!(
        res("cpu=5,gpu=3").first_shortfall(&capacity),
        Some((ResourceName::Cpu, 5_000, 4_000))
    );
    assert_eq!(res("cpu=1").first_shortfall(&capacity), None);
}

#[test]
fn max_and_min_take_each_resource_separately() {
    let a = res("cpu=1,memory=4Gi,gpu=1");
    let b = res("cpu=2,memory=1Gi,llm_tokens=10k");
    assert_eq!(a.max(&b), res("cpu=2,memory=4Gi,gpu=1,llm_tokens=10k"));
    assert_eq!(a.min(&b), res("cpu=1,memory=1Gi"));
    assert_eq!(a.max(&b), b.max(&a));
    assert_eq!(a.min(&b), b.min(&a));
}

#[test]
fn dominant_share_is_the_largest_share_of_capacity() {
    let capacity = res("cpu=4,memory=4Gi,gpu=4");
    let (resource, share) = res("cpu=1,memory=3Gi").dominant_share(&capacity).unwrap();
    assert_eq!(resource, ResourceName::Memory);
    assert!((share - 0.75).abs() < 1e-12);

    let (resource, share) = res("cpu=1,gpu=4").dominant_share(&capacity).unwrap();
    assert_eq!(resource, name("gpu"));
    assert!((share - 1.0).abs() < 1e-12);

    // Ties go to the first resource in iteration order.
    let (resource, _) = res("cpu=2,memory=2Gi").dominant_share(&capacity).unwrap();
    assert_eq!(resource, ResourceName::Cpu);

    // Resources with no capacity are left out; nothing at all gives no share.
    assert_eq!(res("fpga=1").dominant_share(&capacity), None);
    assert_eq!(Resources::new().dominant_share(&capacity), None);
}

// ---------------------------------------------------------------------------------
// Text

#[test]
fn display_prints_canonical_text() {
    assert_eq!(Resources::new().to_string(), "none");
    assert_eq!(
        res(" GPU = 1 , memory=1.5Gi,cpu=500m ").to_string(),
        "cpu=500m,memory=1536Mi,gpu=1"
    );
    assert_eq!(res("cpu=0,memory=0,gpu=0").to_string(), "none");
    assert_eq!(
        res("storage=1T,llm_tokens=200000,a.b/c:d=3").to_string(),
        "storage=1T,a.b/c:d=3,llm_tokens=200k"
    );
}

#[test]
fn from_str_reads_what_display_prints() {
    for text in [
        "none",
        "cpu=1",
        "cpu=1500m,memory=1536Mi,storage=10G,gpu=2,llm_tokens=200k",
    ] {
        assert_eq!(res(text).to_string(), text);
    }
    assert_eq!(res(""), Resources::new());
    assert_eq!(res("  "), Resources::new());
}

#[test]
fn a_malformed_entry_is_an_error_naming_it() {
    for (text, entry) in [
        ("cpu", "cpu"),
        ("cpu=1,", ""),
        ("cpu=1,,gpu=1", ""),
        ("cpu=1, gpu ", "gpu"),
    ] {
        let err = text.parse::<Resources>().unwrap_err();
        assert_eq!(
            err,
            ResourceError::Malformed {
                entry: entry.into()
            },
            "{text}"
        );
        assert!(err.to_string().contains(&format!("{entry:?}")));
    }
}

#[test]
fn a_duplicate_resource_is_an_error_naming_it() {
    for (text, resource) in [
        ("cpu=1,cpu=2", "cpu"),
        ("gpu=1,GPU=1", "gpu"),
        ("memory=1Gi,cpu=1,Memory=2Gi", "memory"),
    ] {
        let err = text.parse::<Resources>().unwrap_err();
        assert_eq!(
            err,
            ResourceError::Duplicate {
                resource: resource.into()
            }
        );
        assert!(err.to_string().contains(resource));
    }
}

#[test]
fn a_bad_name_or_amount_in_a_list_is_an_error_naming_it() {
    assert!(matches!(
        "bad name=1".parse::<Resources>(),
        Err(ResourceError::Name(_))
    ));
    let err = "cpu=1,memory=2".parse::<Resources>().unwrap_err();
    assert!(matches!(
        &err,
        ResourceError::Amount { resource, source: AmountError::MissingUnit { text } }
            if resource == "memory" && text == "2"
    ));
    let message = err.to_string();
    assert!(
        message.contains("memory") && message.contains("\"2\""),
        "{message}"
    );
}

#[test]
fn resource_errors_convert_into_the_crate_error() {
    let err: Error = "cpu=x".parse::<Resources>().unwrap_err().into();
    assert!(matches!(err, Error::Resource(ResourceError::Amount { .. })));
    assert!(chain(&err).contains("\"x\""), "{}", chain(&err));
    assert!(err.source().is_some());
}

// ---------------------------------------------------------------------------------
// Serde

#[test]
fn serializes_as_a_map_of_human_amounts() {
    let r = res("cpu=1500m,memory=1.5Gi,gpu=1,llm_tokens=200k");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        r#"{"cpu":"1500m","memory":"1536Mi","gpu":"1","llm_tokens":"200k"}"#
    );
    assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), r);
    assert_eq!(serde_json::to_string(&Resources::new()).unwrap(), "{}");
    assert_eq!(
        serde_json::from_str::<Resources>("{}").unwrap(),
        Resources::new()
    );
}

#[test]
fn deserializes_numbers_strings_and_the_list_form() {
    let from_map: Resources =
        serde_json::from_str(r#"{"cpu": 2, "memory": "4Gi", "GPU": 1, "llm_tokens": "100k"}"#)
            .unwrap();
    assert_eq!(from_map, res("cpu=2,memory=4Gi,gpu=1,llm_tokens=100k"));

    let fractional: Resources = serde_json::from_str(r#"{"cpu": 1.5, "memory": 0}"#).unwrap();
    assert_eq!(fractional, res("cpu=1500m"));

    let from_string: Resources = serde_json::from_str(r#""cpu=2, memory=4Gi, gpu=1""#).unwrap();
    assert_eq!(from_string, res("cpu=2,memory=4Gi,gpu=1"));

    let value = serde_json::json!({ "storage": "10Gi", "fpga": 3 });
    assert_eq!(
        serde_json::from_value::<Resources>(value).unwrap(),
        res("storage=10Gi,fpga=3")
    );
}

#[test]
fn deserialization_errors_name_the_offending_text() {
    for (json, needles) in [
        (r#"{"memory": 2}"#, &["memory", "\"2\"", "unit"][..]),
        (r#"{"cpu": -1}"#, &["cpu", "\"-1\"", "negative"]),
        (r#"{"cpu": "lots"}"#, &["cpu", "\"lots\""]),
        (r#"{"gpu": 0.5}"#, &["gpu", "\"0.5\""]),
        (r#"{"cpu": "2", "CPU": "1"}"#, &["cpu", "twice"]),
        (r#"{"bad name": 1}"#, &["\"bad name\""]),
        (r#""cpu=2,memory=x""#, &["memory", "\"x\""]),
        (r#""cpu""#, &["\"cpu\""]),
        (r#"{"cpu": true}"#, &["invalid type"]),
        (r#"{"cpu": null}"#, &["invalid type"]),
        (r#"[1, 2]"#, &["invalid type"]),
    ] {
        let err = serde_json::from_str::<Resources>(json)
            .unwrap_err()
            .to_string();
        for needle in needles {
            assert!(
                err.contains(needle),
                "{json}: {err:?} should contain {needle:?}"
            );
        }
    }
}

#[test]
fn resource_names_serialize_as_strings() {
    let names = vec![ResourceName::Cpu, name("gpu"), ResourceName::Storage];
    let json = serde_json::to_string(&names).unwrap();
    assert_eq!(json, r#"["cpu","gpu","storage"]"#);
    assert_eq!(
        serde_json::from_str::<Vec<ResourceName>>(&json).unwrap(),
        names
    );
    assert!(serde_json::from_str::<ResourceName>(r#""no way""#).is_err());
}

/// An extended amount copied over one of the same name (parsed apart, so not the
/// same shared name) takes the new amount; over nothing or another name, the source.
#[test]
fn resources_copied_over_others_are_the_source() {
    let cases = [
        "",
        "gpu=1",
        "gpu=2",
        "llm_tokens=5",
        "gpu=1,llm_tokens=5",
        "cpu=2",
    ];
    for into in cases {
        for from in cases {
            let from: Resources = from.parse().unwrap();
            let mut r: Resources = into.parse().unwrap();
            r.clone_from(&from);
            assert_eq!(r, from, "{into} <- {from}");
            assert_eq!(r.to_string(), from.to_string());
        }
    }
}
