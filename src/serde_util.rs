//! Serde helpers shared by the crate's data types.

/// Durations as integer milliseconds in serde data: the crate's convention, readable in
/// a host's JSON or YAML.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Optional durations as integer milliseconds in serde data.
pub(crate) mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// `u128`s as decimal text in serde data: the monitor's integrals (a fleet's memory
/// held for a day is past 2^64 byte-nanoseconds) in any format, where a number past
/// 2^64 is refused by `serde_json::Value`, MessagePack and others, and read
/// inexactly by JavaScript.
pub(crate) mod u128_text {
    use std::borrow::Cow;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        // `parse` takes a leading `+`; the text this writes has only digits.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(de::Error::custom(format_args!(
                "`{text}` is not a whole number in decimal digits"
            )));
        }
        text.parse().map_err(|_| {
            de::Error::custom(format_args!("`{text}` is past the largest amount (2^128)"))
        })
    }
}

/// Floats that may be NaN or infinite, as in the dashboard's views (a share of
/// nothing, a ratio past any bound). JSON has no such numbers: serde_json writes them
/// as `null` and then refuses to read `null` as a float, so a view did not come back.
/// In human-readable formats NaN is written as `null` and the infinities as
/// `"Infinity"` and `"-Infinity"` (what JavaScript's `Number` reads), and read back
/// so; other formats carry the float as it is.
pub(crate) mod any_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() || v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_none()
        } else if *v > 0.0 {
            s.serialize_str("Infinity")
        } else {
            s.serialize_str("-Infinity")
        }
    }

    /// What a human-readable format may hold for one.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        if !d.is_human_readable() {
            return f64::deserialize(d);
        }
        match Option::<Written>::deserialize(d)? {
            None => Ok(f64::NAN),
            Some(Written::Number(v)) => Ok(v),
            Some(Written::Text(t)) => match t.as_str() {
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => Err(serde::de::Error::custom(format!(
                    "expected a number, null, \"Infinity\" or \"-Infinity\", found {t:?}"
                ))),
            },
        }
    }
}
