//! Resource amounts, resource names and timestamps from arbitrary text: parsed or
//! refused with a typed error, never a panic; what parses displays as text that
//! parses to the same value.
#![no_main]

use concord::{ResourceName, Resources, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = text.parse::<Resources>() {
        let shown = r.to_string();
        assert_eq!(shown.parse::<Resources>().as_ref(), Ok(&r), "{shown}");
    }
    if let Some((name, amount)) = text.split_once('=') {
        if let Ok(name) = ResourceName::new(name) {
            if let Ok(v) = name.parse_amount(amount) {
                assert_eq!(name.parse_amount(&name.format_amount(v)), Ok(v));
            }
        }
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
    }
});
