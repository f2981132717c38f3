//! Typed identifiers and validated names.
//!
//! Owns the numeric ids ([`AgentId`], [`TaskId`], [`AllocationId`], [`RequestId`]) and
//! the names hosts choose ([`Role`], [`Capability`]). Ids are plain `u64` newtypes:
//! cheap to copy and hash on hot paths, and serialized as bare numbers so a host's
//! journal stays readable. Names are validated once, when made, and compared cheaply.
//! This module must never depend on any other module of the crate.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The id with the given number.
            pub const fn new(raw: u64) -> Self {
                $name(raw)
            }

            /// The id's number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(raw: u64) -> Self {
                $name(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "#{}"), self.0)
            }
        }
    };
}

numeric_id!(
    /// Identifies an agent. Chosen by the host; unique within one registry.
    AgentId,
    "agent"
);
numeric_id!(
    /// Identifies a task. Chosen by the host.
    TaskId,
    "task"
);
numeric_id!(
    /// Identifies one allocation in a [`ResourceLedger`](crate::ResourceLedger).
    ///
    /// Issued by the ledger; never reused by the same ledger, including one restored
    /// from its snapshot.
    AllocationId,
    "alloc"
);
numeric_id!(
    /// Identifies a request waiting in a [`ResourceLedger`](crate::ResourceLedger)'s
    /// queue. Issued by the ledger; never reused by the same ledger.
    RequestId,
    "request"
);

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The longest free-text name accepted, in bytes: a task's kind, an agent's name, a
/// workflow's or a step's name, a run id (a coordinator's group).
///
/// Such names are for people and may hold any character but a control character
/// (a line break in a run id would split the host's log line) or an invisible one:
/// Unicode's format characters (a zero-width space, a byte order mark, a soft
/// hyphen, the marks and overrides that set the direction of text), its line and
/// paragraph separators (which break the line in many viewers as a line break does)
/// and its other default-ignorable characters (a variation selector, a Hangul
/// filler, a combining grapheme joiner). With one, `backup` and `backup` followed
/// by a zero-width space would be two names that read the same in every report,
/// and a right-to-left override shows a name reversed. So emoji joined by a
/// zero-width joiner or styled by a variation selector (`❤️` is U+2764 U+FE0F) are
/// not names; `❤` and `✅` alone are.
/// They are copied into every event, journal record and snapshot that speaks of
/// their holder, so a name of a megabyte, a mistake or an attack, is refused where
/// it enters.
pub const MAX_LABEL_LEN: usize = 256;

/// The longest task description accepted, in bytes. Descriptions may hold any text,
/// line breaks included; the keyword analyzer reads the whole of one for every task.
pub const MAX_DESCRIPTION_LEN: usize = 64 * 1024;

/// The longest claim accepted, in bytes: a claim names a path, a port or an
/// environment (see [`Claim`](crate::Claim)), and a path may be as long as a file
/// system allows (4,096 bytes on Linux). Like a label, a claim holds no control
/// character: it is copied into every conflict and event that speaks of it.
pub const MAX_CLAIM_LEN: usize = 4096;

/// The longest keyword an analysis rule may hold, in bytes (see
/// [`RuleBasedAnalyzer`](crate::RuleBasedAnalyzer)). The analyzer compares a
/// keyword's other words wherever its first word stands in a description, and a
/// wildcard word (`*word*`) at each character of a word, so a keyword's length
/// multiplies what every task costs to read.
pub const MAX_KEYWORD_LEN: usize = 128;

/// The most of a free-text note that is kept, in bytes: a reason given for a
/// quarantine, a breach or a communications stop; an alert's summary and source, and
/// who acknowledged or silenced it; who completed a maintenance item and their note;
/// the reason an agent or a health check gives for its outcome.
///
/// A note is never refused (a quarantine must not fail over the wording of its
/// reason, nor an agent's failure go unrecorded because its message is long): it is
/// kept on one line, each control character (a line break, a terminal escape)
/// written as a space, and cut at this length, marked with `…`. Notes are copied into
/// events, journal records, reports and snapshots, as names are. Unlike a name, a
/// note keeps invisible characters (see [`MAX_LABEL_LEN`]): it names nothing, so two
/// notes that read the same do no harm, and text in some scripts needs them (the
/// joiner in an emoji sequence, the non-joiner in Persian); and the notes in the
/// snapshots already written still read back. The reports the crate writes for
/// people (Markdown, HTML, SVG) show them as spaces, as they show a control
/// character.
pub const MAX_NOTE_LEN: usize = 1024;

/// How much of an overlong name an error keeps, in characters.
const EXCERPT_CHARS: usize = 64;

/// The characters no name may hold besides the control characters (below the first
/// of them: see [`is_control_or_invisible`]), as ranges in code point order, each
/// range as long as it can be (ranges that would touch are one range): Unicode
/// 16.0's format characters (General_Category=Cf, `extracted/DerivedGeneralCategory.txt`),
/// its line and paragraph separators (Zl and Zp: U+2028 and U+2029), and its
/// Default_Ignorable_Code_Point characters (`DerivedCoreProperties.txt`). They have
/// no glyph of their own: they join, break, hyphenate or reorder the text around
/// them, select a variant of the character before them (U+FE0F after a heart), or
/// show nothing at all (the Hangul fillers); the separators break the line in many
/// viewers. The default ignorables include code points not yet assigned
/// (U+2065, U+FFF0 to U+FFF8, most of U+E0000 to U+E0FFF): Unicode reserves them
/// for characters that are to be invisible, and a font that does not know one
/// shows nothing for it.
const INVISIBLE: [(char, char); 25] = [
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{200b}', '\u{200f}'),
    // The separators (Zl, Zp), then the bidi embeddings and overrides (Cf).
    ('\u{2028}', '\u{202e}'),
    ('\u{2060}', '\u{206f}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{fe00}', '\u{fe0f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0000}', '\u{e0fff}'),
];

/// Whether `c` is a control character (Unicode's category Cc: a line break, a tab,
/// an escape) or an invisible one (see [`INVISIBLE`]: a format character, a line or
/// paragraph separator, a default ignorable such as a variation selector): what no
/// name may hold, the one test every name check of the crate makes, so that what one
/// refuses another does not take, and what every report the crate writes shows as a
/// space.
pub(crate) fn is_control_or_invisible(c: char) -> bool {
    // Every control character is below the first invisible one, U+00AD: the text of
    // nearly every name is decided here, without the search.
    if c < INVISIBLE[0].0 {
        return c.is_control();
    }
    INVISIBLE
        .binary_search_by(|&(first, last)| {
            if last < c {
                std::cmp::Ordering::Less
            } else if first > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether `text` is already a note (one line, within [`MAX_NOTE_LEN`]), as
/// [`note`] keeps every text it is given: what a restore checks of a stored one.
pub(crate) fn is_note(text: &str) -> bool {
    text.len() <= MAX_NOTE_LEN && !text.chars().any(char::is_control)
}

/// `text` as a note: see [`MAX_NOTE_LEN`]. A note already on one line and within
/// the limit (nearly all) is kept as it is, without a copy.
pub(crate) fn note(text: impl Into<String>) -> String {
    let text = text.into();
    if is_note(&text) {
        return text;
    }
    const CUT: &str = "…";
    let one_line = |c: char| if c.is_control() { ' ' } else { c };
    // Writing a control character as a space never makes the text longer, but may
    // make it fit.
    let fits = text.chars().map(|c| one_line(c).len_utf8()).sum::<usize>() <= MAX_NOTE_LEN;
    let room = if fits {
        MAX_NOTE_LEN
    } else {
        MAX_NOTE_LEN - CUT.len()
    };
    let mut out = String::with_capacity(room + CUT.len());
    for c in text.chars().map(one_line) {
        if out.len() + c.len_utf8() > room {
            break;
        }
        out.push(c);
    }
    if !fits {
        out.push_str(CUT);
    }
    out
}

/// A name that is not valid for its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty or only whitespace.
    #[error("{kind} name is empty or only whitespace")]
    Empty {
        /// What was being named (`role`, `capability`, `resource`, ...).
        kind: &'static str,
    },
    /// The name is longer than its limit ([`MAX_NAME_LEN`], [`MAX_LABEL_LEN`],
    /// [`MAX_CLAIM_LEN`], [`MAX_KEYWORD_LEN`] or [`MAX_DESCRIPTION_LEN`]).
    #[error("{kind} {name:?} is longer than {max} bytes")]
    TooLong {
        /// What was being named.
        kind: &'static str,
        /// The offending name: its first 64 characters followed by `…` when it is
        /// longer, so that the error of a megabyte of text stays a line.
        name: String,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `a-z 0-9 - _ . / :`.
    #[error("{kind} name {name:?} has invalid character {bad:?} (allowed: a-z 0-9 - _ . / :)")]
    InvalidChar {
        /// What was being named.
        kind: &'static str,
        /// The offending name.
        name: String,
        /// The first bad character.
        bad: char,
    },
    /// A free-text name holds a control character (a line break, a tab, a NUL) or an
    /// invisible one (a zero-width space, a bidi override that shows the name
    /// reversed, a line separator, a variation selector): see [`MAX_LABEL_LEN`].
    #[error("{kind} {name:?} holds control or invisible character U+{:04X}", u32::from(*bad))]
    ControlChar {
        /// What was being named.
        kind: &'static str,
        /// The offending name (its first 64 characters, as for
        /// [`TooLong`](Self::TooLong)).
        name: String,
        /// The first control or invisible character.
        bad: char,
    },
    /// A claim names nothing: it is empty, or every part between its slashes is
    /// (`/`, `//`).
    #[error("{kind} {name:?} names nothing: every part between its slashes is empty")]
    NamesNothing {
        /// What was being named (`claim`).
        kind: &'static str,
        /// The offending name (its first 64 characters, as for
        /// [`TooLong`](Self::TooLong)).
        name: String,
    },
    /// The name is reserved (for example `cpu` as an extended resource name).
    #[error("{kind} name {name:?} is reserved")]
    Reserved {
        /// What was being named.
        kind: &'static str,
        /// The offending name.
        name: String,
    },
}

/// Validates and normalizes a name: trims, lowercases ASCII, then checks length and
/// characters.
pub(crate) fn normalize_name(kind: &'static str, raw: &str) -> Result<Arc<str>, NameError> {
    let trimmed = checked_trim(kind, raw)?;
    let lower = trimmed.to_ascii_lowercase();
    check_chars(kind, trimmed, lower.as_bytes())?;
    Ok(Arc::from(lower))
}

/// `raw` trimmed, if it is not empty and not too long.
fn checked_trim<'a>(kind: &'static str, raw: &'a str) -> Result<&'a str, NameError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty { kind });
    }
    check_text(kind, trimmed, MAX_NAME_LEN)?;
    Ok(trimmed)
}

/// The start of `text` an error keeps: all of it, or its first
/// [`EXCERPT_CHARS`] characters and `…`.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Checks a free-text name of `kind` (a task's kind, an agent's name, a run id):
/// at most [`MAX_LABEL_LEN`] bytes and no control or invisible character (see
/// [`is_control_or_invisible`]). Empty is allowed here; where an empty name means
/// nothing, its holder refuses it with its own error.
#[inline]
pub(crate) fn check_label(kind: &'static str, text: &str) -> Result<(), NameError> {
    check_within(kind, text, MAX_LABEL_LEN)
}

/// Checks a claim's name: at most [`MAX_CLAIM_LEN`] bytes and no control or
/// invisible character. Whether it names anything is the claim's own question
/// ([`Claim::names_nothing`](crate::Claim::names_nothing)).
pub(crate) fn check_claim(resource: &str) -> Result<(), NameError> {
    check_within("claim", resource, MAX_CLAIM_LEN)
}

/// Checks a free text of `kind` as a label is checked, against a limit of `max`
/// bytes: a claim's, a keyword's.
#[inline]
pub(crate) fn check_within(kind: &'static str, text: &str, max: usize) -> Result<(), NameError> {
    if text.len() <= max && is_printable_ascii(text.as_bytes()) {
        return Ok(());
    }
    label_problem(kind, text, max)
}

/// [`check_label`] for a text that is too long, or that is not all printable ASCII
/// and so may hold a control or invisible character: kept out of line, so that the
/// check of an ASCII label saves no registers. A label outside ASCII is decoded here,
/// a character at a time.
#[cold]
#[inline(never)]
fn label_problem(kind: &'static str, text: &str, max: usize) -> Result<(), NameError> {
    check_text(kind, text, max)?;
    match text.chars().find(|&c| is_control_or_invisible(c)) {
        Some(bad) => Err(NameError::ControlChar {
            kind,
            name: excerpt(text),
            bad,
        }),
        None => Ok(()),
    }
}

/// Whether every byte of `text` is printable ASCII (0x20 to 0x7E), which is then
/// free of control and invisible characters without being decoded: every control
/// character below U+0080 is a byte below 0x20 or 0x7F, and every invisible
/// character is past U+0080, where each byte of UTF-8 is 0x80 or above. Read eight bytes at a
/// time, the last eight (or, for a shorter text, its first and last four)
/// overlapping what was read already instead of a copy of the tail: a task's kind is
/// checked on every assignment.
#[inline]
fn is_printable_ascii(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    /// The high bit of some byte is set if and only if a byte of `x` is below 0x20
    /// or above 0x7E, as in "Bit Twiddling Hacks" (`hasless` and `hasmore`). A
    /// borrow or carry crosses into the next byte only from a byte already flagged.
    fn flags(x: u64) -> u64 {
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let above_tilde = (x.wrapping_add(ONES) | x) & HIGH;
        below_space | above_tilde
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&text[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&text[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    let n = text.len();
    let x = match n {
        0 => return true,
        // Three bytes or fewer: the first, middle and last, and letters.
        1..=3 => {
            let (a, b, c) = (text[0], text[n / 2], text[n - 1]);
            u64::from_le_bytes([a, b, c, b'a', b'a', b'a', b'a', b'a'])
        }
        4..=8 => half(0) | half(n - 4) << 32,
        _ => {
            let mut any = 0;
            let mut at = 0;
            while at + 8 < n {
                any |= flags(word(at));
                at += 8;
            }
            any |= flags(word(n - 8));
            return any == 0;
        }
    };
    flags(x) == 0
}

/// Checks a task's description: at most [`MAX_DESCRIPTION_LEN`] bytes.
pub(crate) fn check_description(text: &str) -> Result<(), NameError> {
    check_text("task description", text, MAX_DESCRIPTION_LEN)
}

/// Fails with [`NameError::TooLong`] for a `text` longer than `max` bytes.
fn check_text(kind: &'static str, text: &str, max: usize) -> Result<(), NameError> {
    if text.len() > max {
        return Err(NameError::TooLong {
            kind,
            name: excerpt(text),
            max,
        });
    }
    Ok(())
}

/// Checks that `lower`, the lowercase of `trimmed`, holds only the characters a name
/// may hold.
fn check_chars(kind: &'static str, trimmed: &str, lower: &[u8]) -> Result<(), NameError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./:".contains(&b);
    if lower.iter().all(|&b| allowed(b)) {
        return Ok(());
    }
    // The first character that is not allowed, as written (outside ASCII a byte is
    // not a character).
    let bad = trimmed
        .chars()
        .find(|c| !(c.is_ascii() && allowed(c.to_ascii_lowercase() as u8)))
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    Err(NameError::InvalidChar {
        kind,
        name: trimmed.to_owned(),
        bad,
    })
}

/// How many bytes of a name are held inline: enough for the roles and capabilities
/// most hosts name (`ops`, `health_check`, `browser.launch`).
const INLINE_NAME: usize = 16;

/// An inline name's bytes, aligned as a pointer is: in the same place as a shared
/// name's pointer, so that copying a name is three moves of a word.
#[derive(Clone, Copy)]
#[repr(align(8))]
struct InlineBytes([u8; INLINE_NAME]);

/// A validated name's text: inline when it is short, shared when it is long.
///
/// A task's roles and capabilities are copied at each step of an assignment (the
/// analyzer's requirements, the policies' proposal, the explanation's rejections),
/// and a shared string moves a reference count at each copy and each drop: an
/// atomic operation, which costs more than copying the whole inline name.
#[derive(Clone)]
enum NameText {
    /// The name's bytes (ASCII: normalized names are), `len` of them.
    Inline { len: u8, bytes: InlineBytes },
    /// A name longer than [`INLINE_NAME`].
    Shared(Arc<str>),
}

impl NameText {
    /// Validates and normalizes `raw` as a name of `kind`, as [`normalize_name`]
    /// does, lowercasing a short name where it is kept instead of in a new string.
    fn new(kind: &'static str, raw: &str) -> Result<Self, NameError> {
        let trimmed = checked_trim(kind, raw)?;
        if trimmed.len() > INLINE_NAME {
            return normalize_name(kind, raw).map(NameText::Shared);
        }
        let mut bytes = InlineBytes([0; INLINE_NAME]);
        let lower = &mut bytes.0[..trimmed.len()];
        lower.copy_from_slice(trimmed.as_bytes());
        lower.make_ascii_lowercase();
        check_chars(kind, trimmed, lower)?;
        Ok(NameText::Inline {
            len: trimmed.len() as u8,
            bytes,
        })
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            NameText::Inline { len, bytes } => &bytes.0[..*len as usize],
            NameText::Shared(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Checked to be ASCII when made, so never the empty fallback.
            NameText::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            NameText::Shared(s) => s,
        }
    }
}

impl fmt::Debug for NameText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Whether two names are the same bytes. Names are short (a role, a capability, a
/// task's kind): compared here in a word or two, where `==` on strings of equal
/// length calls the C library's `memcmp`, whose call costs more than the comparison
/// when a one-task assignment compares a handful of names.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same_name`] on the names' bytes.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Two windows, overlapping when the name is shorter than both: the first and
    // the last bytes of the name.
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    fn half(s: &[u8], at: usize) -> u32 {
        let mut w = [0; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    }
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        // The first, middle and last bytes are every byte of a name this short.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        0 => true,
        _ => a == b,
    }
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(NameText);

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                same_bytes(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}

        // Normalized names are ASCII, whose byte order is the strings' order.
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.as_bytes().cmp(other.0.as_bytes())
            }
        }

        // Equal names are equal bytes, which hash alike, hashed as a string's are.
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                state.write(self.0.as_bytes());
                state.write_u8(0xff);
            }
        }

        impl $name {
            /// Validates `raw` (trimmed, ASCII-lowercased; `a-z 0-9 - _ . / :`, at most
            /// [`MAX_NAME_LEN`] bytes).
            pub fn new(raw: &str) -> Result<Self, NameError> {
                NameText::new($kind, raw).map($name)
            }

            /// The normalized name.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The normalized name's bytes (ASCII), without the check a `&str` of
            /// an inline name costs: for comparing on hot paths.
            #[inline]
            pub(crate) fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::new(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A role an agent plays (`ops`, `qa`, `framework`, `security`, `human`).
    ///
    /// ```
    /// use concord::Role;
    /// assert_eq!(Role::new(" QA ").unwrap().as_str(), "qa");
    /// assert!(Role::new("q a").is_err());
    /// ```
    Role,
    "role"
);
name_type!(
    /// A capability an agent has and a task may need (`deploy`, `screenshot`, ...).
    ///
    /// ```
    /// use concord::Capability;
    /// assert_eq!(Capability::new("Browser.Launch").unwrap().as_str(), "browser.launch");
    /// assert!(Capability::new("").is_err());
    /// ```
    Capability,
    "capability"
);

/// No id counter restored from a snapshot may be at or past this: a counter that
/// counts one a nanosecond takes 292 years to get there, so one that says it has is
/// corrupt, and below it the counters never overflow.
pub(crate) const COUNTER_LIMIT: u64 = 1 << 63;

/// Why the counter `name` at `value` cannot be restored, if it cannot.
pub(crate) fn check_counter(name: &str, value: u64) -> Result<(), String> {
    if value >= COUNTER_LIMIT {
        return Err(format!(
            "{name} {value} is past the ids any run can issue (2^63)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        INLINE_NAME, INVISIBLE, MAX_LABEL_LEN, MAX_NOTE_LEN, NameError, Role, check_claim,
        check_label, excerpt, is_control_or_invisible, normalize_name, note, same_name,
    };
    use proptest::prelude::*;
    use std::hash::{BuildHasher, RandomState};

    proptest! {
        /// A note is on one line and within its limit, and is the text it was given,
        /// control characters written as spaces, whole or cut and marked; a clean
        /// short text is kept as it is.
        #[test]
        fn a_note_is_one_bounded_line_of_its_text(
            text in prop_oneof![
                "[a\n\r\t\u{1b}\u{85}é€ ]{0,40}",
                ("[a\n\u{85}é€]{1,3}", 300..1200usize).prop_map(|(s, n)| s.repeat(n)),
            ],
        ) {
            let got = note(text.as_str());
            let one_line: String =
                text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            prop_assert!(got.len() <= MAX_NOTE_LEN, "{} bytes", got.len());
            prop_assert!(!got.chars().any(char::is_control));
            match got.strip_suffix('…') {
                Some(kept) if got != one_line => {
                    prop_assert!(one_line.len() > MAX_NOTE_LEN);
                    prop_assert!(one_line.starts_with(kept));
                    // Cut no shorter than it had to be.
                    let next = one_line[kept.len()..].chars().next().unwrap();
                    prop_assert!(kept.len() + next.len_utf8() + '…'.len_utf8() > MAX_NOTE_LEN);
                }
                _ => prop_assert_eq!(&got, &one_line),
            }
        }
    }

    #[test]
    fn notes_keep_what_fits_and_flatten_the_rest() {
        assert_eq!(
            note("unexpected outbound traffic"),
            "unexpected outbound traffic"
        );
        assert_eq!(note("line1\nline2\u{1b}[2J"), "line1 line2 [2J");
        let long = note("r".repeat(1_000_000));
        assert_eq!(long.len(), MAX_NOTE_LEN);
        assert!(long.ends_with('…'));
        // Exactly at the limit: kept whole.
        assert_eq!(note("x".repeat(MAX_NOTE_LEN)), "x".repeat(MAX_NOTE_LEN));
    }

    proptest! {
        /// A name is its normalized text whether it is held inline or shared: the
        /// same text, the same order, equality and hash as the strings', and the same
        /// text back from JSON.
        #[test]
        fn inline_and_shared_names_are_their_text(
            a in "[ a-cA-C_.:/-]{1,40}",
            b in "[ a-cA-C_.:/-]{1,40}",
        ) {
            let norm = |raw: &str| normalize_name("role", raw).map(|n| n.to_string());
            let (ra, rb) = (Role::new(&a), Role::new(&b));
            prop_assert_eq!(ra.clone().map(|r| r.as_str().to_owned()), norm(&a));
            prop_assert_eq!(rb.clone().map(|r| r.as_str().to_owned()), norm(&b));
            if let (Ok(ra), Ok(rb)) = (ra, rb) {
                let (na, nb) = (norm(&a).unwrap(), norm(&b).unwrap());
                prop_assert_eq!(ra == rb, na == nb);
                prop_assert_eq!(ra.cmp(&rb), na.cmp(&nb));
                let state = RandomState::new();
                if ra == rb {
                    prop_assert_eq!(state.hash_one(&ra), state.hash_one(&rb));
                }
                prop_assert_eq!(state.hash_one(ra.clone()), state.hash_one(&ra));
                let json = serde_json::to_string(&ra).unwrap();
                prop_assert_eq!(&json, &format!("{na:?}"));
                prop_assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), ra);
            }
        }
    }

    proptest! {
        /// A label is refused exactly when it is too long or holds a control or an
        /// invisible character: the byte scan that skips decoding misses none.
        #[test]
        fn a_label_is_refused_for_its_length_or_a_control_or_invisible_character(
            text in prop_oneof![
                "(?s).{0,40}",
                "[a\u{0}-\u{1f}\u{7f}-\u{a0}\u{ad}\u{100}\u{200b}-\u{200f}\u{202e}\u{2028}\u{2029}\u{fe0f}\u{feff}\u{e0001}é]{0,12}",
                "a{250,260}",
                // One character among letters, where the scan of eight bytes at a
                // time may put it.
                (
                    "[a-z é]{0,10}",
                    prop_oneof![
                        prop::char::range('\0', '\u{a0}'),
                        any::<char>(),
                        "[\\p{Cf}\\p{Zl}\\p{Zp}\\p{Default_Ignorable_Code_Point}]"
                            .prop_map(|s| s.chars().next().unwrap()),
                    ],
                    "[a-z é]{0,10}",
                )
                    .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
            ],
        ) {
            let first_bad = text.chars().find(|&c| is_control_or_invisible(c));
            let expected = text.len() <= MAX_LABEL_LEN && first_bad.is_none();
            match check_label("run id", &text) {
                Ok(()) => prop_assert!(expected),
                Err(NameError::TooLong { name, max, .. }) => {
                    prop_assert!(text.len() > max);
                    prop_assert!(text.starts_with(name.trim_end_matches('…')));
                }
                Err(NameError::ControlChar { bad, .. }) => {
                    prop_assert_eq!(Some(bad), first_bad);
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }

    /// What Unicode 16.0 says no name may hold, as the ranges of the `regex-syntax`
    /// crate's own tables (generated from Unicode's data files, and read here
    /// rather than copied, so that the table below is checked against them and not
    /// against itself): the control characters (Cc), the format characters (Cf), the
    /// line and paragraph separators (Zl, Zp) and the default ignorables.
    fn unicodes_invisible_ranges() -> Vec<(char, char)> {
        use regex_syntax::hir::{Class, HirKind};
        let hir =
            regex_syntax::parse(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]")
                .unwrap();
        let HirKind::Class(Class::Unicode(class)) = hir.kind() else {
            panic!("{hir:?}");
        };
        // A class's ranges are sorted and as long as they can be, as the table's are.
        class.iter().map(|r| (r.start(), r.end())).collect()
    }

    /// The table is Unicode's, range for range: the control characters (all below
    /// it) and its ranges are exactly the characters Unicode classes as control,
    /// format, separator or default ignorable, and the predicate answers for every
    /// character of the code space as that list does.
    #[test]
    fn the_table_is_unicodes_control_format_separator_and_default_ignorable_characters() {
        let unicode = unicodes_invisible_ranges();
        let ours: Vec<(char, char)> = [('\0', '\u{1f}'), ('\u{7f}', '\u{9f}')]
            .into_iter()
            .chain(INVISIBLE)
            .collect();
        assert_eq!(ours, unicode);
        let mut ranges = unicode.iter().peekable();
        for c in '\0'..=char::MAX {
            while ranges.next_if(|&&(_, last)| last < c).is_some() {}
            let expected = ranges.peek().is_some_and(|&&(first, _)| first <= c);
            assert_eq!(
                is_control_or_invisible(c),
                expected,
                "U+{:04X}",
                u32::from(c)
            );
        }
        // The characters the table was extended for, by name, in case the classes
        // above were ever read wrong: U+2028 and U+2029 (Zl, Zp), and default
        // ignorables that are not format characters (a combining grapheme joiner,
        // Hangul fillers, Khmer inherent vowels, Mongolian free variation
        // selectors, variation selectors, unassigned ones).
        for c in [
            '\u{2028}',
            '\u{2029}',
            '\u{34f}',
            '\u{115f}',
            '\u{1160}',
            '\u{17b4}',
            '\u{17b5}',
            '\u{180b}',
            '\u{180f}',
            '\u{2065}',
            '\u{3164}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{ffa0}',
            '\u{fff0}',
            '\u{fff8}',
            '\u{e0000}',
            '\u{e0100}',
            '\u{e01ef}',
            '\u{e0fff}',
        ] {
            assert!(is_control_or_invisible(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a',
            ' ',
            '\u{a0}',
            '\u{2764}',
            '\u{2705}',
            '\u{fffc}',
            '\u{e1000}',
        ] {
            assert!(!is_control_or_invisible(c), "U+{:04X}", u32::from(c));
        }
    }

    /// Every character up to U+02FF, every invisible range at and around its ends,
    /// and a few beyond, at every place in texts of every length up to three words:
    /// found exactly when it is a control or an invisible character.
    #[test]
    fn every_control_or_invisible_character_is_found_wherever_it_stands() {
        let ends = INVISIBLE.iter().flat_map(|&(first, last)| {
            let (first, last) = (u32::from(first), u32::from(last));
            [first - 1, first, first + 1, last - 1, last, last + 1]
                .into_iter()
                .filter_map(char::from_u32)
        });
        let chars = ('\0'..='\u{2ff}')
            .chain(ends)
            .chain(['\u{2028}', '\u{10ffff}']);
        for c in chars {
            let in_table = INVISIBLE
                .iter()
                .any(|&(first, last)| (first..=last).contains(&c));
            for others in 0..24 {
                for at in 0..=others {
                    let text = format!("{}{c}{}", "a".repeat(at), "b".repeat(others - at));
                    assert_eq!(
                        check_label("run id", &text).is_ok(),
                        !(c.is_control() || in_table),
                        "{c:?} at {at} of {}",
                        text.len()
                    );
                }
            }
        }
    }

    /// The table is sorted and its ranges apart, as the binary search needs; every
    /// control character is below the first of them, as the shortcut needs; and each
    /// character of the whole code space is refused in a label exactly when the
    /// predicate says.
    #[test]
    fn the_invisible_table_is_sorted_and_every_character_is_checked_by_it() {
        assert!(INVISIBLE.iter().all(|&(first, last)| first <= last));
        assert!(
            INVISIBLE
                .windows(2)
                .all(|w| u32::from(w[0].1) + 1 < u32::from(w[1].0))
        );
        assert!(('\0'..INVISIBLE[0].0).filter(|c| c.is_control()).count() == 65);
        assert!((INVISIBLE[0].0..=char::MAX).all(|c| !c.is_control()));
        for c in '\0'..=char::MAX {
            let text = format!("kind{c}");
            match check_label("task kind", &text) {
                Ok(()) => assert!(!is_control_or_invisible(c), "U+{:04X}", u32::from(c)),
                Err(NameError::ControlChar { bad, .. }) => assert_eq!(bad, c),
                Err(other) => panic!("{other:?}"),
            }
        }
    }

    /// The error names the character by its code point, which shows what the name
    /// itself cannot: an invisible character is not seen in a quoted name.
    #[test]
    fn the_error_names_an_invisible_character_by_its_code_point() {
        let err = check_label("task kind", "backup\u{200b}").unwrap_err();
        assert_eq!(
            err,
            NameError::ControlChar {
                kind: "task kind",
                name: "backup\u{200b}".to_owned(),
                bad: '\u{200b}',
            }
        );
        assert_eq!(
            err.to_string(),
            "task kind \"backup\\u{200b}\" holds control or invisible character U+200B"
        );
        let err = check_label("run id", "run\n1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "run id \"run\\n1\" holds control or invisible character U+000A"
        );
        // Past U+FFFF, five or six digits.
        let err = check_claim("repo/\u{e0041}").unwrap_err();
        assert!(err.to_string().ends_with("U+E0041"), "{err}");
    }

    #[test]
    fn an_excerpt_ends_at_a_character() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(excerpt(&long), format!("{}…", "é".repeat(64)));
        assert_eq!(excerpt(&"a".repeat(64)), "a".repeat(64));
    }

    /// The names on either side of the inline limit, and the errors that do not
    /// depend on it.
    #[test]
    fn names_around_the_inline_limit() {
        for len in [
            1,
            INLINE_NAME - 1,
            INLINE_NAME,
            INLINE_NAME + 1,
            super::MAX_NAME_LEN,
        ] {
            let raw = "Q".repeat(len);
            let role = Role::new(&format!("  {raw} ")).unwrap();
            assert_eq!(role.as_str(), "q".repeat(len));
            assert_eq!(format!("{role:?}"), format!("Role({:?})", "q".repeat(len)));
            assert_eq!(role.to_string(), "q".repeat(len));
        }
        let too_long = "q".repeat(super::MAX_NAME_LEN + 1);
        assert!(matches!(
            Role::new(&too_long),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(Role::new("  "), Err(NameError::Empty { kind: "role" }));
        // A character outside ASCII is named as written, short name or long.
        for raw in ["qé", &format!("{}é", "q".repeat(INLINE_NAME + 3))] {
            match Role::new(raw) {
                Err(NameError::InvalidChar { bad, name, .. }) => {
                    assert_eq!((bad, name.as_str()), ('é', raw));
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Role::new("Q A"),
            Err(NameError::InvalidChar { bad: ' ', .. })
        ));
    }

    proptest! {
        /// The word-at-a-time comparison is `==`, at every length around its
        /// windows' edges, for equal names, names a byte apart and unrelated ones.
        #[test]
        fn same_name_is_string_equality(
            a in "[a-c]{0,20}",
            b in "[a-c]{0,20}",
            at in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(same_name(&a, &b), a == b);
            prop_assert!(same_name(&a, &a.clone()));
            if !a.is_empty() {
                let mut c = a.clone().into_bytes();
                let i = at.index(c.len());
                c[i] = b'z';
                let c = String::from_utf8(c).unwrap();
                prop_assert!(!same_name(&a, &c));
            }
        }
    }
}
