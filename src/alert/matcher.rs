//! [`Matcher`]: a test on one label of an alert, written as Alertmanager writes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::model::{check_label_name, shorten};
use super::{Alert, AlertError, Severity};

/// How a [`Matcher`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MatchOp {
    /// `=`: the value is this.
    Equal,
    /// `!=`: the value is not this.
    NotEqual,
    /// `=~`: the value is one of these.
    OneOf,
    /// `!~`: the value is none of these.
    NoneOf,
}

impl MatchOp {
    /// The operator as written: `=`, `!=`, `=~`, `!~`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::OneOf => "=~",
            MatchOp::NoneOf => "!~",
        }
    }
}

/// A test on one label of an alert: routes, silences, inhibition rules and cascade
/// rules select alerts with lists of them (all must hold).
///
/// Written as in Alertmanager: `label=value`, `label!=value`, `label=~a|b|c`,
/// `label!~a|b`, the value optionally in double quotes (inside which `\"` and `\\` are
/// the only escapes). The label `alertname` reads the alert's name and `severity` its
/// severity; a label the alert does not have reads as `""`.
///
/// `=~` and `!~` take literal alternatives separated by `|`, not regular expressions:
/// the crate carries no regex engine, and a pattern holding one of `\ . * + ? ( ) [ ] {
/// } ^ $` is refused rather than silently matched literally. Serde reads and writes a
/// matcher as its text, so a host's configuration file says
/// `matchers: ["alertname=agent_failure", "severity=~critical|high"]`.
///
/// ```
/// use concord::alert::{Alert, Matcher, Severity};
/// use concord::Timestamp;
///
/// let m: Matcher = "severity=~critical|high".parse()?;
/// let alert = Alert::new("security_breach", Severity::Critical, Timestamp::EPOCH);
/// assert!(m.matches(&alert));
/// assert!("team!=\"ops\"".parse::<Matcher>()?.matches(&alert)); // no `team` label: ""
/// assert!("alertname=~agent.*".parse::<Matcher>().is_err());
/// assert_eq!(m.to_string(), "severity=~\"critical|high\"");
/// # Ok::<(), concord::alert::AlertError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Matcher {
    label: String,
    op: MatchOp,
    /// One value for `=` and `!=`; the alternatives for `=~` and `!~`.
    values: Vec<String>,
}

/// Characters that would make an `=~` pattern a regular expression.
const REGEX_META: &[char] = &[
    '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '^', '$',
];

impl Matcher {
    /// `label=value`.
    ///
    /// # Errors
    /// [`AlertError::InvalidName`] for a label that is not an identifier.
    pub fn equal(label: impl Into<String>, value: impl Into<String>) -> Result<Self, AlertError> {
        Matcher::build(label.into(), MatchOp::Equal, vec![value.into()])
    }

    /// `label!=value`.
    ///
    /// # Errors
    /// As [`equal`](Self::equal).
    pub fn not_equal(
        label: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, AlertError> {
        Matcher::build(label.into(), MatchOp::NotEqual, vec![value.into()])
    }

    /// `label=~a|b|...`: the value is one of `values`.
    ///
    /// # Errors
    /// As [`equal`](Self::equal); or [`AlertError::BadMatcher`] for no alternatives,
    /// an empty one, or one holding `|` or a regular expression's special character.
    pub fn one_of<V: Into<String>>(
        label: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Self, AlertError> {
        let values = values.into_iter().map(Into::into).collect();
        Matcher::build(label.into(), MatchOp::OneOf, values)
    }

    /// `label!~a|b|...`: the value is none of `values`.
    ///
    /// # Errors
    /// As [`one_of`](Self::one_of).
    pub fn none_of<V: Into<String>>(
        label: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Self, AlertError> {
        let values = values.into_iter().map(Into::into).collect();
        Matcher::build(label.into(), MatchOp::NoneOf, values)
    }

    fn build(label: String, op: MatchOp, values: Vec<String>) -> Result<Self, AlertError> {
        check_label_name(&label)?;
        let m = Matcher { label, op, values };
        // Every alert has a severity, one of four names: a matcher on another could
        // never hold (or always would), and the route or silence with it is dead.
        if m.label == super::names::SEVERITY
            && m.values.iter().any(|v| v.parse::<Severity>().is_err())
        {
            return Err(AlertError::BadMatcher {
                matcher: shorten(&m.to_string()),
                reason: "an alert's severity is critical, high, medium or low",
            });
        }
        if matches!(op, MatchOp::OneOf | MatchOp::NoneOf) {
            let bad = |reason| AlertError::BadMatcher {
                matcher: shorten(&m.to_string()),
                reason,
            };
            if m.values.is_empty() {
                return Err(bad("`=~` and `!~` need at least one alternative"));
            }
            if m.values.iter().any(String::is_empty) {
                return Err(bad("an alternative is empty"));
            }
            if m.values.iter().any(|v| v.contains('|')) {
                return Err(bad(
                    "an alternative holds `|`, which separates alternatives",
                ));
            }
            if m.values.iter().any(|v| v.contains(REGEX_META)) {
                return Err(bad(
                    "regular expressions are not supported: `=~` takes literal alternatives \
                     separated by `|`",
                ));
            }
        }
        Ok(m)
    }

    /// The label it tests.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How it compares.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value (one, for `=` and `!=`) or the alternatives.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `alert` passes.
    pub fn matches(&self, alert: &Alert) -> bool {
        let value = alert.value(&self.label);
        let listed = self.values.iter().any(|v| v == value);
        match self.op {
            MatchOp::Equal | MatchOp::OneOf => listed,
            MatchOp::NotEqual | MatchOp::NoneOf => !listed,
        }
    }
}

/// Whether `alert` passes every matcher (true for none).
pub(crate) fn all_match(matchers: &[Matcher], alert: &Alert) -> bool {
    matchers.iter().all(|m| m.matches(alert))
}

impl fmt::Display for Matcher {
    /// `label op "value"`, the value quoted and escaped: what [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.label, self.op.as_str())?;
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            for c in v.chars() {
                if matches!(c, '"' | '\\') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        f.write_str("\"")
    }
}

impl FromStr for Matcher {
    type Err = AlertError;

    /// Reads `label op value` (see the type's docs); spaces around the operator are
    /// allowed.
    ///
    /// # Errors
    /// [`AlertError::BadMatcher`] naming the text and what is wrong, or
    /// [`AlertError::InvalidName`] for the label.
    fn from_str(text: &str) -> Result<Matcher, AlertError> {
        let bad = |reason| AlertError::BadMatcher {
            matcher: shorten(text),
            reason,
        };
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| bad("expected `=`, `!=`, `=~` or `!~`"))?;
        let (label, rest) = (text[..at].trim(), &text[at..]);
        let (op, rest) = if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NoneOf, r)
        } else if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::OneOf, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(bad("expected `=`, `!=`, `=~` or `!~`"));
        };
        let value = unquote(rest.trim()).map_err(bad)?;
        let values = match op {
            MatchOp::Equal | MatchOp::NotEqual => vec![value],
            MatchOp::OneOf | MatchOp::NoneOf => value.split('|').map(str::to_owned).collect(),
        };
        // Name the text as written, not as it would print.
        Matcher::build(label.to_owned(), op, values).map_err(|e| match e {
            AlertError::BadMatcher { reason, .. } => bad(reason),
            other => other,
        })
    }
}

/// The value inside double quotes (unescaping `\"` and `\\`), or the text itself when
/// it is not quoted.
fn unquote(text: &str) -> Result<String, &'static str> {
    let Some(inner) = text.strip_prefix('"') else {
        if text.contains('"') {
            return Err("a quote inside an unquoted value");
        }
        return Ok(text.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or("a quoted value must end with `\"`")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => return Err("inside quotes only `\\\"` and `\\\\` are escapes"),
            },
            '"' => return Err("an unescaped `\"` inside a quoted value"),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl TryFrom<String> for Matcher {
    type Error = AlertError;

    fn try_from(text: String) -> Result<Matcher, AlertError> {
        text.parse()
    }
}

impl From<Matcher> for String {
    fn from(m: Matcher) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_parses_and_prints_back() {
        for (text, op, values) in [
            ("a=x", MatchOp::Equal, vec!["x"]),
            ("a != \"x y\"", MatchOp::NotEqual, vec!["x y"]),
            ("a=~x|y", MatchOp::OneOf, vec!["x", "y"]),
            ("a!~\"x|y\"", MatchOp::NoneOf, vec!["x", "y"]),
            ("a=", MatchOp::Equal, vec![""]),
            ("a=\"q\\\"\\\\\"", MatchOp::Equal, vec!["q\"\\"]),
            ("a=x=y", MatchOp::Equal, vec!["x=y"]),
        ] {
            let m: Matcher = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((m.label(), m.op()), ("a", op), "{text}");
            assert_eq!(m.values(), values, "{text}");
            assert_eq!(m.to_string().parse::<Matcher>().unwrap(), m, "{text}");
        }
    }

    #[test]
    fn malformed_matchers_are_refused_with_the_reason() {
        for text in [
            "novalue",
            "=x",
            "9a=x",
            "a=~",
            "a=~x||y",
            "a=~.*",
            "a=\"open",
            "a=\"x\"y\"",
            "a=x\"",
            "a=\"\\n\"",
        ] {
            assert!(text.parse::<Matcher>().is_err(), "{text} was accepted");
        }
        assert!(matches!(
            "a=~b+".parse::<Matcher>(),
            Err(AlertError::BadMatcher { reason, .. }) if reason.contains("regular expressions")
        ));
    }
}
