//! [`Alert`] and its [`Fingerprint`], with the rules for names and labels.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{AlertError, Severity};
use crate::clock::Timestamp;

/// The pseudo-label that [`Matcher`](super::Matcher)s and `group_by` read an alert's
/// name from.
pub const ALERTNAME: &str = "alertname";
/// The pseudo-label that [`Matcher`](super::Matcher)s and `group_by` read an alert's
/// severity from.
pub const SEVERITY: &str = "severity";

/// The longest alert name accepted, in bytes.
pub const MAX_ALERT_NAME_LEN: usize = 256;
/// The longest label name or receiver name accepted, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 128;
/// The longest label value accepted, in bytes: a value is part of the alert's
/// identity, so an overlong one is refused rather than cut.
pub const MAX_LABEL_VALUE_LEN: usize = crate::id::MAX_NOTE_LEN;

/// What identifies an alert: a 64-bit hash of its name and labels, so that the same
/// alert fired twice is recognised as one ([deduplication](super::AlertManager::fire)).
///
/// The hash is FNV-1a (64-bit) over the name and then each label name and value in
/// sorted order, each written as its length (eight bytes, little-endian) followed by
/// its bytes. It depends on nothing but those bytes: not on the process, the machine or
/// the Rust version (std's `RandomState` would change it every run), so a fingerprint
/// journaled or shown to an operator today names the same alert after a restart.
/// Severity, summary, source and time are not part of it: the same condition reported
/// again is the same alert. (Alertmanager fingerprints label sets with FNV-1a too.)
///
/// It prints, parses and serializes as 16 hexadecimal digits: a string, not a
/// number, because a 64-bit number loses its low bits in JSON readers that hold
/// numbers as doubles (JavaScript's), and a dashboard would then name another alert.
///
/// ```
/// use concord::alert::{Alert, Fingerprint, Severity};
/// use concord::Timestamp;
///
/// let a = Alert::new("agent_failure", Severity::Medium, Timestamp::from_secs(1))
///     .with_label("agent", "agent#3");
/// let b = Alert::new("agent_failure", Severity::High, Timestamp::from_secs(9))
///     .with_label("agent", "agent#3")
///     .with_summary("again");
/// assert_eq!(a.fingerprint(), b.fingerprint());
/// let shown = a.fingerprint().to_string();
/// assert_eq!(shown.len(), 16);
/// assert_eq!(shown.parse::<Fingerprint>()?, a.fingerprint());
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint with the given number.
    pub const fn new(raw: u64) -> Self {
        Fingerprint(raw)
    }

    /// The fingerprint's number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The fingerprint of the alert named `name` with `labels`.
    pub fn of(name: &str, labels: &BTreeMap<String, String>) -> Fingerprint {
        let mut h = Fnv1a::default();
        h.field(name.as_bytes());
        for (k, v) in labels {
            h.field(k.as_bytes());
            h.field(v.as_bytes());
        }
        Fingerprint(h.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = AlertError;

    /// Reads 16 hexadecimal digits, as `Display` writes them.
    ///
    /// # Errors
    /// [`AlertError::InvalidName`] for anything else.
    fn from_str(s: &str) -> Result<Fingerprint, AlertError> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AlertError::InvalidName {
                what: "fingerprint",
                name: shorten(s),
                reason: "expected 16 hexadecimal digits",
            });
        }
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| AlertError::InvalidName {
                what: "fingerprint",
                name: shorten(s),
                reason: "expected 16 hexadecimal digits",
            })
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = AlertError;

    fn try_from(text: String) -> Result<Fingerprint, AlertError> {
        text.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(fp: Fingerprint) -> String {
        fp.to_string()
    }
}

/// FNV-1a, 64-bit (Fowler, Noll, Vo): one xor and one multiply per byte.
pub(super) struct Fnv1a(pub(super) u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A length-prefixed field: no two different sequences of fields write the same
    /// bytes (`("ab", "c")` and `("a", "bc")` differ).
    pub(super) fn field(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }
}

/// Something that is wrong: what the [`AlertManager`](super::AlertManager) pages for.
///
/// An alert is its name and labels (which make its [`Fingerprint`]), its
/// [`Severity`], a one-line summary for people, the source that raised it (`coordinator`,
/// a health check, an anomaly detector) and when the source saw it. Labels are a sorted
/// map, so they print, serialize and hash the same way every time.
///
/// Names and labels are checked when the alert is [fired](super::AlertManager::fire):
/// the name must be non-empty, at most [`MAX_ALERT_NAME_LEN`] bytes and free of control
/// and invisible characters (as a label is, see
/// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN)); label names must look like
/// identifiers (`[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_LABEL_NAME_LEN`] bytes) and
/// must not be `alertname` or `severity`, the pseudo-labels through which matchers
/// see the name and severity; label values are at most [`MAX_LABEL_VALUE_LEN`] bytes
/// without a control or invisible character. The summary and
/// the source are notes, kept on one line and cut at
/// [`MAX_NOTE_LEN`](crate::id::MAX_NOTE_LEN) bytes when fired.
///
/// ```
/// use concord::alert::{Alert, Severity};
/// use concord::Timestamp;
///
/// let alert = Alert::new("agent_failure", Severity::Medium, Timestamp::from_secs(60))
///     .with_label("agent", "agent#3")
///     .with_summary("agent#3 went from available to offline")
///     .with_source("coordinator");
/// assert_eq!(alert.label("agent"), Some("agent#3"));
/// assert_eq!(
///     alert.to_string(),
///     "agent_failure{agent=\"agent#3\"} (medium): agent#3 went from available to offline"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    name: String,
    severity: Severity,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    source: String,
    fired_at: Timestamp,
}

impl Alert {
    /// An alert named `name`, of `severity`, seen by its source at `fired_at`, with no
    /// labels, summary or source yet.
    pub fn new(name: impl Into<String>, severity: Severity, fired_at: Timestamp) -> Self {
        Alert {
            name: name.into(),
            severity,
            labels: BTreeMap::new(),
            summary: String::new(),
            source: String::new(),
            fired_at,
        }
    }

    /// Sets the label `name` to `value` (replacing any value it had).
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Sets several labels.
    pub fn with_labels<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the summary: one line for people.
    pub fn with_summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// Sets the source: who raised it.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The value of label `name`, if set.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The summary.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When the source saw it.
    pub fn fired_at(&self) -> Timestamp {
        self.fired_at
    }

    /// Its fingerprint: [`Fingerprint::of`] its name and labels.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.name, &self.labels)
    }

    /// Checks the name and the labels (see the type's docs).
    ///
    /// # Errors
    /// [`AlertError::InvalidName`], naming the offending name or label.
    pub fn validate(&self) -> Result<(), AlertError> {
        check_alert_name("alert name", &self.name)?;
        for (name, value) in &self.labels {
            check_label_name(name)?;
            check_label_value(value)?;
            if name == ALERTNAME || name == SEVERITY {
                return Err(AlertError::InvalidName {
                    what: "label",
                    name: name.clone(),
                    reason: "reserved: matchers read the alert's name and severity under it",
                });
            }
        }
        Ok(())
    }

    /// This alert with its summary and source kept as notes (one bounded line each),
    /// as the manager keeps them.
    pub(crate) fn into_notes(mut self) -> Self {
        self.summary = crate::id::note(std::mem::take(&mut self.summary));
        self.source = crate::id::note(std::mem::take(&mut self.source));
        self
    }

    /// Whether `other` has the same name and labels (the same identity).
    pub(crate) fn same_identity(&self, other: &Alert) -> bool {
        self.name == other.name && self.labels == other.labels
    }

    /// What matchers and `group_by` see under `label`: the name under `alertname`, the
    /// severity under `severity`, else the label's value, or `""` when it has none
    /// (so `label=""` matches an alert without the label, as in Alertmanager).
    pub(crate) fn value(&self, label: &str) -> &str {
        match label {
            ALERTNAME => &self.name,
            SEVERITY => self.severity.as_str(),
            _ => self.labels.get(label).map_or("", String::as_str),
        }
    }
}

impl fmt::Display for Alert {
    /// `name{label="value",...} (severity): summary`; the braces only when it has
    /// labels, the summary only when it has one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        write_labels(f, self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        write!(f, " ({})", self.severity)?;
        if !self.summary.is_empty() {
            write!(f, ": {}", self.summary)?;
        }
        Ok(())
    }
}

/// `{a="x",b="y"}`, or nothing for no labels; values escaped as Rust debug strings.
pub(crate) fn write_labels<'a>(
    f: &mut impl fmt::Write,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> fmt::Result {
    let mut first = true;
    for (k, v) in labels {
        f.write_str(if first { "{" } else { "," })?;
        first = false;
        write!(f, "{k}={v:?}")?;
    }
    if !first {
        f.write_str("}")?;
    }
    Ok(())
}

/// The first 64 characters of `s`, for error messages.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks an alert name (or a receiver name, under `what`): non-empty, not too long,
/// no control or invisible characters (two alerts whose names read the same must be
/// one alert).
pub(crate) fn check_alert_name(what: &'static str, name: &str) -> Result<(), AlertError> {
    let bad = |reason| AlertError::InvalidName {
        what,
        name: shorten(name),
        reason,
    };
    if name.trim().is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_ALERT_NAME_LEN {
        return Err(bad("longer than 256 bytes"));
    }
    if name.chars().any(crate::id::is_control_or_invisible) {
        return Err(bad("holds a control or invisible character"));
    }
    Ok(())
}

/// Checks a label value: at most [`MAX_LABEL_VALUE_LEN`] bytes, no control or
/// invisible character (a value is printed in the alert's one-line form, and is part
/// of its identity: `agent="a"` and the same with a zero-width space would page
/// twice for what reads as one alert).
fn check_label_value(value: &str) -> Result<(), AlertError> {
    let bad = |reason| AlertError::InvalidName {
        what: "label value",
        name: shorten(value),
        reason,
    };
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(bad("longer than 1,024 bytes"));
    }
    if value.chars().any(crate::id::is_control_or_invisible) {
        return Err(bad("holds a control or invisible character"));
    }
    Ok(())
}

/// Checks a label name: `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_LABEL_NAME_LEN`]
/// bytes. (`alertname` and `severity` pass: matchers and `group_by` may name them.)
pub(crate) fn check_label_name(name: &str) -> Result<(), AlertError> {
    let bad = |reason| AlertError::InvalidName {
        what: "label",
        name: shorten(name),
        reason,
    };
    let mut bytes = name.bytes();
    match bytes.next() {
        None => return Err(bad("empty")),
        Some(b) if !(b.is_ascii_alphabetic() || b == b'_') => {
            return Err(bad("must start with a letter or `_`"));
        }
        Some(_) => {}
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad("may hold only letters, digits and `_`"));
    }
    if name.len() > MAX_LABEL_NAME_LEN {
        return Err(bad("longer than 128 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints are journaled and shown to operators: this pins the algorithm, so
    /// that a change to it (which would orphan every stored fingerprint) fails here.
    #[test]
    fn fingerprints_are_pinned() {
        assert_eq!(Fnv1a::default().0, 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv1a::default();
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c); // the published FNV-1a 64 of "a"
        let labels = BTreeMap::from([("agent".to_owned(), "agent#3".to_owned())]);
        assert_eq!(
            Fingerprint::of("agent_failure", &labels),
            Fingerprint::of("agent_failure", &labels.clone())
        );
        // Computed independently (a few lines of Python) from the type's description.
        assert_eq!(
            Fingerprint::of("agent_failure", &labels).to_string(),
            "b6f6cbb333ecf0b8"
        );
    }

    /// A fingerprint read as a JSON number by a JavaScript dashboard would lose its low
    /// bits; as text it survives any reader.
    #[test]
    fn fingerprints_serialize_as_their_text() {
        let fp = Fingerprint::new(0xb6f6_cbb3_33ec_f0b8);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, "\"b6f6cbb333ecf0b8\"");
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert!(serde_json::from_str::<Fingerprint>("\"b6f6\"").is_err());
        assert!(serde_json::from_str::<Fingerprint>("13183").is_err());
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let ab = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        let a = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        assert_ne!(Fingerprint::of("x", &ab), Fingerprint::of("x", &a));
        assert_ne!(
            Fingerprint::of("xa", &BTreeMap::new()),
            Fingerprint::of("x", &BTreeMap::from([("a".to_owned(), String::new())]))
        );
    }

    #[test]
    fn label_names_are_identifiers() {
        for good in ["a", "_x", "agent_id", "A9"] {
            assert!(check_label_name(good).is_ok(), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é", &"x".repeat(129)] {
            assert!(check_label_name(bad).is_err(), "{bad}");
        }
    }

    /// Regression: names and label values refused control characters only, so
    /// `backup_failed` and the same name with a zero-width space were two alerts
    /// (two fingerprints, two pages) that read the same.
    #[test]
    fn names_and_label_values_refuse_invisible_characters() {
        for bad in [
            "backup_failed\u{200b}",
            "\u{202e}deliaf_pukcab",
            "a\u{feff}",
            "a\n",
        ] {
            let err = check_alert_name("alert name", bad).unwrap_err();
            assert_eq!(
                err,
                AlertError::InvalidName {
                    what: "alert name",
                    name: bad.to_owned(),
                    reason: "holds a control or invisible character",
                }
            );
            let err = check_label_value(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    AlertError::InvalidName {
                        what: "label value",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        for good in ["backup_failed", "agent#3 (Zoë)", "エージェント"] {
            assert!(check_alert_name("alert name", good).is_ok(), "{good}");
            assert!(check_label_value(good).is_ok(), "{good}");
        }
    }
}
