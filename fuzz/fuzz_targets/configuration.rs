//! Configuration as a host writes it (policies, the escalation ladder, the ledger's
//! settings, retry policies): parsed and validated or refused with a typed error,
//! never a panic; what parses writes JSON that parses to the same value.
#![no_main]

use concord::conflict::EscalationPolicy;
use concord::policy::PolicySet;
use concord::resource::LedgerConfig;
use concord::workflow::RetryPolicy;
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let Ok(v) = serde_json::from_slice::<T>(bytes) else {
        return;
    };
    let written = serde_json::to_string(&v).expect("serializes");
    let back: T = serde_json::from_str(&written).expect("what was written parses");
    assert_eq!(serde_json::to_string(&back).expect("serializes"), written);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => round_trip::<PolicySet>(bytes),
        1 => round_trip::<EscalationPolicy>(bytes),
        2 => round_trip::<LedgerConfig>(bytes),
        _ => round_trip::<RetryPolicy>(bytes),
    }
});
