//! Human amounts: parsing `500m`, `2Gi`, `1.5G`, `100k` into integer units and
//! printing integer units back, exactly.
//!
//! Parsing is exact decimal arithmetic on `u128`: no floats, so `1.5Gi` is exactly
//! 1,610,612,736 bytes and an amount that is not a whole number of base units is an
//! error rather than a rounding.

use super::error::AmountError;
use crate::id::excerpt;

/// How amounts of one resource are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// CPU in millicores: `2` (cores), `1.5` (cores), `500m` (millicores).
    Cpu,
    /// Bytes: a unit is required (`2Gi`, `1.5G`, `512Mi`, `100B`); only `0` may go without.
    Bytes,
    /// A plain count, optionally with a decimal SI suffix (`4`, `100k`, `2M`).
    Count,
}

const KI: u128 = 1 << 10;
const SUFFIXES_BYTES: &[(&str, u128)] = &[
    ("B", 1),
    ("Ki", KI),
    ("Mi", KI * KI),
    ("Gi", KI * KI * KI),
    ("Ti", KI * KI * KI * KI),
    ("Pi", KI * KI * KI * KI * KI),
    ("Ei", KI * KI * KI * KI * KI * KI),
    ("KiB", KI),
    ("MiB", KI * KI),
    ("GiB", KI * KI * KI),
    ("TiB", KI * KI * KI * KI),
    ("PiB", KI * KI * KI * KI * KI),
    ("EiB", KI * KI * KI * KI * KI * KI),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
    ("EB", 1_000_000_000_000_000_000),
];
/// The suffixes `format` may print for bytes, in the order tried.
const PRINT_BYTES: &[(&str, u128)] = &[
    ("Ei", KI * KI * KI * KI * KI * KI),
    ("E", 1_000_000_000_000_000_000),
    ("Pi", KI * KI * KI * KI * KI),
    ("P", 1_000_000_000_000_000),
    ("Ti", KI * KI * KI * KI),
    ("T", 1_000_000_000_000),
    ("Gi", KI * KI * KI),
    ("G", 1_000_000_000),
    ("Mi", KI * KI),
    ("M", 1_000_000),
    ("Ki", KI),
    ("k", 1_000),
    ("B", 1),
];
const SUFFIXES_COUNT: &[(&str, u128)] = &[
    ("", 1),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];
const PRINT_COUNT: &[(&str, u128)] = &[
    ("E", 1_000_000_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("k", 1_000),
    ("", 1),
];
const SUFFIXES_CPU: &[(&str, u128)] = &[("", 1000), ("m", 1)];

/// Parses `text` as an amount written in `unit`, into base units.
pub(crate) fn parse(unit: Unit, text: &str) -> Result<u64, AmountError> {
    // Errors quote the text, cut short: an amount of a megabyte is a mistake or an
    // attack, and its error stays a line.
    let err = |kind: fn(String) -> AmountError| kind(excerpt(text));
    let t = text.trim();
    if t.is_empty() {
        return Err(AmountError::Empty);
    }
    if t.starts_with('-') {
        return Err(err(|text| AmountError::Negative { text }));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(err(|text| AmountError::NotANumber { text }));
    }
    let table = match unit {
        Unit::Cpu => SUFFIXES_CPU,
        Unit::Bytes => SUFFIXES_BYTES,
        Unit::Count => SUFFIXES_COUNT,
    };
    let multiplier = match table.iter().find(|(s, _)| *s == suffix) {
        Some((_, m)) => *m,
        None if unit == Unit::Bytes && suffix.is_empty() => {
            // A bare number of bytes is almost always a mistake (`2` meaning 2 GiB);
            // only zero is unambiguous.
            if number.chars().all(|c| c == '0' || c == '.') {
                1
            } else {
                return Err(err(|text| AmountError::MissingUnit { text }));
            }
        }
        None => {
            return Err(AmountError::UnknownUnit {
                text: excerpt(text),
                unit: excerpt(suffix),
            });
        }
    };
    // Zeros that do not change the value (`007`, `1.50`) must not count toward the
    // digit limit below: `1.0000…0Gi` is 1 GiB, whatever the number of zeros.
    let int_part = int_part.trim_start_matches('0');
    let frac_part = frac_part.trim_end_matches('0');
    // 10^20 base units exceed u64::MAX whatever the unit.
    if int_part.len() > 20 {
        return Err(err(|text| AmountError::Overflow { text }));
    }
    // Exact decimal: (int * 10^f + frac) * multiplier / 10^f must be whole. More than
    // 38 significant digits means more than 18 after the point: finer than a base unit
    // for every decimal unit, and for a binary one unless it is a power of two written
    // out in full (2^-60 Ei, one byte, takes 60 digits), which is refused as well.
    if int_part.len() + frac_part.len() > 38 {
        return Err(err(|text| AmountError::TooPrecise { text }));
    }
    let mut mantissa: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa * 10 + u128::from(c - b'0');
    }
    let scale = 10u128.pow(frac_part.len() as u32);
    let scaled = mantissa
        .checked_mul(multiplier)
        .ok_or_else(|| err(|text| AmountError::Overflow { text }))?;
    if scaled % scale != 0 {
        return Err(err(|text| AmountError::TooPrecise { text }));
    }
    u64::try_from(scaled / scale).map_err(|_| err(|text| AmountError::Overflow { text }))
}

/// Formats `value` base units in `unit`, exactly: `parse(unit, &format(unit, v)) == Ok(v)`.
pub(crate) fn format(unit: Unit, value: u64) -> String {
    let v = u128::from(value);
    match unit {
        Unit::Cpu if v % 1000 == 0 => format!("{}", v / 1000),
        Unit::Cpu => format!("{v}m"),
        _ if v == 0 => "0".to_owned(),
        Unit::Bytes => best(v, PRINT_BYTES),
        Unit::Count => best(v, PRINT_COUNT),
    }
}

/// The exact representation with the smallest mantissa; the first in `table` wins ties.
fn best(v: u128, table: &[(&str, u128)]) -> String {
    let mut choice = (v, "");
    let mut found = false;
    for (suffix, m) in table {
        if v % m == 0 && (!found || v / m < choice.0) {
            choice = (v / m, suffix);
            found = true;
        }
    }
    format!("{}{}", choice.0, choice.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_exact_smallest_mantissa() {
        assert_eq!(format(Unit::Bytes, 1_610_612_736), "1536Mi");
        assert_eq!(format(Unit::Bytes, 1_000_000_000), "1G");
        assert_eq!(format(Unit::Bytes, 1_024_000), "1000Ki");
        assert_eq!(format(Unit::Bytes, 7), "7B");
        assert_eq!(format(Unit::Count, 100_000), "100k");
        assert_eq!(format(Unit::Count, 12), "12");
        // Regression: zero divides by every unit and once printed as `0E`.
        assert_eq!(format(Unit::Count, 0), "0");
        assert_eq!(format(Unit::Cpu, 0), "0");
        assert_eq!(format(Unit::Cpu, 2500), "2500m");
        assert_eq!(format(Unit::Cpu, 3000), "3");
    }
}
