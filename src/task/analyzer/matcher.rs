//! The compiled keyword matcher behind [`RuleBasedAnalyzer`](super::RuleBasedAnalyzer):
//! a rule table's keywords and kinds, lowercased and split into words once
//! ([`CompiledRule`]), and one matcher over the words of a text for the whole table
//! ([`Matcher`]), which looks each word up once in a table of first words
//! ([`AsciiTable`]) and reads ASCII text 64 bytes at a time.
//!
//! The analyzer says what a rule table means: which rules fire for a task, and what
//! requirements follow. This module only finds the keywords fast, which is most of
//! the code and all of the bit tricks, so it is kept apart; its tests check it, and
//! the analyzer around it, against that meaning read straight from the definition.

use super::{AnalysisRule, Hits};
use crate::task::error::TaskError;

/// A rule's keywords and kinds, lowercased and split into words once.
#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    /// Parallel to the rule's `keywords`.
    keywords: Vec<Vec<Token>>,
    /// Parallel to the rule's `kinds`: trimmed and lowercased.
    pub(super) kinds: Vec<Box<str>>,
}

impl CompiledRule {
    pub(super) fn new(rule: &AnalysisRule) -> Result<Self, TaskError> {
        if rule.keywords.is_empty() && rule.kinds.is_empty() {
            return Err(TaskError::NoTrigger {
                rule: rule.name.clone(),
            });
        }
        let keywords = rule
            .keywords
            .iter()
            .map(|k| compile_keyword(&rule.name, k))
            .collect::<Result<Vec<_>, _>>()?;
        let kinds = rule
            .kinds
            .iter()
            .map(|k| {
                let k = k.trim();
                if k.is_empty() {
                    Err(TaskError::EmptyKind {
                        rule: rule.name.clone(),
                    })
                } else {
                    Ok(lowercase(k).collect::<String>().into_boxed_str())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledRule { keywords, kinds })
    }
}

/// One lowercased word of a keyword, and how it matches a word of the text.
#[derive(Debug, Clone)]
struct Token {
    text: Box<str>,
    anchor: Anchor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// `word`: the whole word.
    Exact,
    /// `word*`: a word starting with it.
    Prefix,
    /// `*word`: a word ending with it.
    Suffix,
    /// `*word*`: a word holding it.
    Contains,
}

impl Token {
    fn matches(&self, word: &str) -> bool {
        match self.anchor {
            Anchor::Exact => eq_lower(word, &self.text),
            Anchor::Prefix => starts_with_lower(word, &self.text),
            Anchor::Suffix => ends_with_lower(word, &self.text),
            Anchor::Contains => word
                .char_indices()
                .any(|(i, _)| starts_with_lower(&word[i..], &self.text)),
        }
    }
}

/// Splits a keyword into words the way [`Words`] splits text, keeping a `*` at either
/// end of a word as a wildcard.
fn compile_keyword(rule: &str, keyword: &str) -> Result<Vec<Token>, TaskError> {
    let misplaced = || TaskError::MisplacedWildcard {
        rule: rule.to_owned(),
        keyword: keyword.to_owned(),
    };
    let mut tokens = Vec::new();
    for piece in keyword
        .split(|c: char| !(c.is_alphanumeric() || c == '*'))
        .filter(|p| !p.is_empty())
    {
        let (leading, rest) = match piece.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, piece),
        };
        let (trailing, core) = match rest.strip_suffix('*') {
            Some(core) => (true, core),
            None => (false, rest),
        };
        if core.is_empty() || core.contains('*') {
            return Err(misplaced());
        }
        let anchor = match (leading, trailing) {
            (false, false) => Anchor::Exact,
            (false, true) => Anchor::Prefix,
            (true, false) => Anchor::Suffix,
            (true, true) => Anchor::Contains,
        };
        tokens.push(Token {
            text: lowercase(core).collect::<String>().into_boxed_str(),
            anchor,
        });
    }
    if tokens.is_empty() {
        return Err(TaskError::EmptyKeyword {
            rule: rule.to_owned(),
            keyword: keyword.to_owned(),
        });
    }
    Ok(tokens)
}

/// The keywords of a whole table, compiled into one matcher over the words of a text.
///
/// A keyword whose first word is a whole word (the usual case) is found through a
/// table from that word, lowercased, to the keywords starting with it
/// ([`AsciiTable`]), so each word of the text is looked up once instead of being
/// compared with every keyword. At a place where a phrase's first word occurs, the
/// rest of the phrase is compared with the words that follow. Keywords starting with
/// a wildcard are compared token by token on every word, as the rule is written
/// ([`Token::matches`]).
///
/// A text that is all ASCII (nearly every task) is split into words 64 bytes at a
/// time ([`alnum_bits`]); any other is read character by character ([`FastWords`]),
/// and a word with letters outside ASCII is compared with every whole first word as
/// the definition compares it, so that matching stays exactly what the definition
/// says for any text.
#[derive(Debug, Clone, Default)]
pub(super) struct Matcher {
    /// Every keyword of the table, in table order.
    keywords: Vec<Keyword>,
    /// Each whole first word that is ASCII once lowercased, to the keywords starting
    /// with it, in table order.
    first: AsciiTable<Box<[u32]>>,
    /// Each whole first word (lowercased), with the keywords starting with it: what a
    /// word with letters outside ASCII is compared with (its lowercase may be ASCII,
    /// as the Kelvin sign's is).
    every_first: Vec<(Token, Box<[u32]>)>,
    /// The keywords whose first word has a wildcard, tried on every word.
    other_first: Vec<u32>,
    /// No word shorter than this (from 1 to 8) may start a keyword, as far as the
    /// ASCII path can tell.
    min_len: u32,
}

/// One keyword of a [`Matcher`]: its words, and where it stands in the table.
#[derive(Debug, Clone)]
struct Keyword {
    tokens: Vec<Token>,
    rule: u32,
    /// Its index among the rule's keywords.
    index: u32,
}

impl Matcher {
    pub(super) fn new(rules: &[CompiledRule]) -> Self {
        let mut m = Matcher::default();
        // First words in the order first seen, so that every list keeps table order.
        let mut firsts: Vec<(Token, Vec<u32>)> = Vec::new();
        // Each first word's place in `firsts`: linear in the keywords, where a search
        // of the list for each took n² for a table of many.
        let mut place: std::collections::HashMap<Box<str>, usize> =
            std::collections::HashMap::new();
        for (rule, compiled) in rules.iter().enumerate() {
            for (index, tokens) in compiled.keywords.iter().enumerate() {
                let k = m.keywords.len() as u32;
                let first = &tokens[0];
                if first.anchor == Anchor::Exact {
                    match place.get(&first.text) {
                        Some(&at) => firsts[at].1.push(k),
                        None => {
                            place.insert(first.text.clone(), firsts.len());
                            firsts.push((first.clone(), vec![k]));
                        }
                    }
                } else {
                    m.other_first.push(k);
                }
                m.keywords.push(Keyword {
                    tokens: tokens.clone(),
                    rule: rule as u32,
                    index: index as u32,
                });
            }
        }
        // A key outside ASCII is never the lowercase of an ASCII word, the only words
        // the table is asked about.
        m.first = AsciiTable::new(
            firsts
                .iter()
                .filter(|(t, _)| t.text.is_ascii())
                .map(|(t, ks)| (t.text.as_bytes(), ks.clone().into_boxed_slice())),
        );
        m.min_len = if m.other_first.is_empty() {
            let shortest = firsts.iter().filter(|(t, _)| t.text.is_ascii());
            shortest
                .map(|(t, _)| t.text.len())
                .min()
                .unwrap_or(8)
                .clamp(1, 8) as u32
        } else {
            1
        };
        m.every_first = firsts
            .into_iter()
            .map(|(t, ks)| (t, ks.into_boxed_slice()))
            .collect();
        m
    }

    /// Records in `hits` (one per rule) each rule's first keyword, in rule order,
    /// that `text` holds, keeping a rule's earlier hit. Returns whether `text` is all
    /// ASCII.
    pub(super) fn find(&self, text: &str, hits: &mut Hits) -> bool {
        if self.find_ascii(text, hits) {
            return true;
        }
        // Words already looked at are recorded again: a hit is kept only if it is
        // earlier, so nothing is counted twice.
        self.find_chars(text, hits);
        false
    }

    /// [`find`](Self::find) for any text, character by character.
    fn find_chars(&self, text: &str, hits: &mut Hits) {
        let mut words = FastWords(text);
        while let Some((word, ascii)) = words.next_word() {
            if ascii {
                if let Some(ks) = self.first.get(word.as_bytes()) {
                    for &k in ks {
                        self.try_keyword(k, &words, hits);
                    }
                }
            } else {
                // Lowercasing may change the length outside ASCII: every whole first
                // word is compared as the definition compares it.
                for (first, ks) in &self.every_first {
                    if first.matches(word) {
                        for &k in ks {
                            self.try_keyword(k, &words, hits);
                        }
                    }
                }
            }
            self.try_other_first(word, &words, hits);
        }
    }

    /// [`find`](Self::find) for a text that is all ASCII: `false`, having perhaps
    /// recorded some hits, if it is not.
    ///
    /// The text is read 64 bytes at a time: which bytes are letters or digits is
    /// worked out 8 at a time in a `u64` and gathered into one bit a byte. Words
    /// shorter than any key are dropped from that mask with a few shifts, and each
    /// word left is found with two bit counts, instead of a branch per byte.
    fn find_ascii(&self, text: &str, hits: &mut Hits) -> bool {
        let bytes = text.as_bytes();
        let mut base = 0;
        while base < bytes.len() {
            let Some(mut bits) = alnum_bits(&bytes[base..bytes.len().min(base + 64)]) else {
                return false;
            };
            let mut next = base + 64;
            if next < bytes.len() && bits >> 63 == 1 {
                // A word runs into the next block: it is read from its start there.
                let start = 64 - (!bits).leading_zeros();
                if start == 0 {
                    // A word of 64 bytes or more, read to its end here.
                    let tail = &bytes[base + 64..];
                    let end = match tail.iter().position(|b| !b.is_ascii_alphanumeric()) {
                        Some(i) if !tail[i].is_ascii() => return false,
                        Some(i) => base + 64 + i,
                        None => bytes.len(),
                    };
                    self.word(text, base, end, hits);
                    base = end;
                    continue;
                }
                bits &= (1 << start) - 1;
                next = base + start as usize;
            }
            // Bit i of `long`: bytes i to i + min_len - 1 are letters or digits.
            let mut long = bits;
            for _ in 1..self.min_len {
                long &= long >> 1;
            }
            let mut starts = bits & !(bits << 1) & long;
            while starts != 0 {
                let start = starts.trailing_zeros();
                let end = start + (!(bits >> start)).trailing_zeros();
                self.word(text, base + start as usize, base + end as usize, hits);
                starts &= starts - 1;
            }
            base = next;
        }
        true
    }

    /// The word `text[start..end]` (nonempty), all ASCII letters and digits, followed
    /// by the rest of `text`.
    #[inline]
    fn word(&self, text: &str, start: usize, end: usize, hits: &mut Hits) {
        let word = &text.as_bytes()[start..end];
        if self.other_first.is_empty() && !self.first.may_hold(word) {
            return;
        }
        self.word_at(text, start, end, hits);
    }

    /// [`word`](Self::word), past the filter: kept out of line, as most words of a
    /// text never get here.
    #[inline(never)]
    fn word_at(&self, text: &str, start: usize, end: usize, hits: &mut Hits) {
        // `word` asked the filter already when there are no wildcard first words.
        let word = &text.as_bytes()[start..end];
        let first = if self.other_first.is_empty() {
            self.first.get_unfiltered(word)
        } else {
            self.first.get(word)
        };
        if first.is_none() && self.other_first.is_empty() {
            return;
        }
        let rest = FastWords(text.get(end..).unwrap_or_default());
        if let Some(ks) = first {
            for &k in ks.iter() {
                self.try_keyword(k, &rest, hits);
            }
        }
        if !self.other_first.is_empty() {
            let word = text.get(start..end).unwrap_or_default();
            self.try_other_first(word, &rest, hits);
        }
    }

    /// The keywords starting with a wildcard, tried on `word`, followed by `rest`.
    fn try_other_first(&self, word: &str, rest: &FastWords<'_>, hits: &mut Hits) {
        for &k in &self.other_first {
            if self.keywords[k as usize].tokens[0].matches(word) {
                self.try_keyword(k, rest, hits);
            }
        }
    }

    /// Keyword `k`, whose first word matched the word before `rest`: a hit if its
    /// other words follow, and if it comes before its rule's hit so far. In line: a
    /// keyword of one word (most of them) is a hit without a call, and without a copy
    /// of the words that follow.
    #[inline]
    fn try_keyword(&self, k: u32, rest: &FastWords<'_>, hits: &mut Hits) {
        let kw = &self.keywords[k as usize];
        let hit = &mut hits[kw.rule as usize];
        if *hit > kw.index && (kw.tokens.len() == 1 || kw.rest_follows(rest)) {
            *hit = kw.index;
        }
    }
}

impl Keyword {
    /// Whether this keyword's words after the first are the words of `rest`, from its
    /// start.
    #[inline(never)]
    fn rest_follows(&self, rest: &FastWords<'_>) -> bool {
        let mut rest = rest.clone();
        self.tokens[1..]
            .iter()
            .all(|t| rest.next_word().is_some_and(|(w, _)| t.matches(w)))
    }
}

/// One bit per byte of `block` (at most 64 bytes), set for an ASCII letter or digit;
/// `None` if a byte is not ASCII.
#[inline]
fn alnum_bits(block: &[u8]) -> Option<u64> {
    /// A byte of ones, in each byte.
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    /// The high bit of each byte that is at least `lo`: no carry crosses a byte, as
    /// every byte is below 0x80 and so is what is added to it.
    #[inline]
    fn at_least(x: u64, lo: u8) -> u64 {
        x.wrapping_add((0x80 - lo as u64) * ONES) & HIGH
    }
    let mut bits = 0;
    let mut high = 0;
    let mut eight = |x: u64| {
        high |= x;
        let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
        // Setting bit 5 lowercases a letter, and makes a letter of no other byte.
        let y = x | (0x20 * ONES);
        let letter = at_least(y, b'a') & !at_least(y, b'z' + 1);
        // The eight high bits, gathered into the top byte (byte i to bit 56 + i),
        // shifted in from the top: a chain from step to step, which keeps the
        // compiler from spreading the steps over vector lanes, slower here than
        // plain 64-bit arithmetic.
        let gathered = ((digit | letter) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits = bits >> 8 | gathered << 56;
    };
    let mut chunks = block.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        eight(u64::from_le_bytes(w));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Padded with zeros, which are not letters.
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        eight(u64::from_le_bytes(w));
    }
    // The first byte's bit down to bit 0.
    let steps = block.len().div_ceil(8) as u32;
    bits = bits.checked_shr(64 - 8 * steps).unwrap_or(0);
    (high & HIGH == 0).then_some(bits)
}

/// A table from lowercase ASCII strings to values, looked up with an ASCII string in
/// any case.
///
/// Most words of a text are in no such table. A filter on their length and first
/// and last bytes turns most of them away with two loads; the others are looked up by four
/// numbers about the word (its length, and its first, middle and last bytes, case
/// folded: its signature) in a table of signatures, a quarter full or less; only a
/// word whose signature is there is compared with the keys that have it.
///
/// Case is folded by setting bit 5 (`0x20`) of each byte: it does not make a letter
/// of anything else, but it is the same for both cases of a letter, which is all a
/// filter and a signature need.
#[derive(Debug, Clone)]
pub(super) struct AsciiTable<V> {
    /// Per length (31 for 31 and longer), the low five bits of the first bytes of the
    /// keys of that length, one bit each.
    filter: [u32; 32],
    /// The same of the last bytes: of the words that pass the first filter, about
    /// half start no key, and most of those end like none of that length either.
    filter_last: [u32; 32],
    /// Open addressing (the next slot on a collision), a power of two long.
    slots: Box<[Slot]>,
    /// The keys and their values, those of one signature side by side.
    entries: Vec<Entry<V>>,
}

/// A key of an [`AsciiTable`] and its value.
#[derive(Debug, Clone)]
struct Entry<V> {
    key: Box<[u8]>,
    /// Per byte of `key`, `0x20` if it is a letter, else 0: a byte of a word matches
    /// the key's, ignoring case, if it equals it once OR'ed with this. One OR and one
    /// compare a byte, where lowercasing both sides takes a few more.
    fold: Box<[u8]>,
    value: V,
}

/// A signature of an [`AsciiTable`], and its keys' range in `entries`: empty if the
/// range is.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    sig: u32,
    start: u32,
    end: u32,
}

impl<V> Default for AsciiTable<V> {
    fn default() -> Self {
        AsciiTable {
            filter: [0; 32],
            filter_last: [0; 32],
            slots: vec![Slot::default()].into_boxed_slice(),
            entries: Vec::new(),
        }
    }
}

impl<V> AsciiTable<V> {
    /// A table of `entries`, whose keys are lowercase ASCII, nonempty and distinct.
    pub(super) fn new<'a>(entries: impl IntoIterator<Item = (&'a [u8], V)>) -> Self {
        let mut entries: Vec<(u32, Box<[u8]>, V)> = entries
            .into_iter()
            .map(|(key, v)| (signature(key), key.into(), v))
            .collect();
        entries.sort_by_key(|e| e.0);
        let (mut filter, mut filter_last) = ([0; 32], [0; 32]);
        for (_, key, _) in &entries {
            filter[key.len().min(31)] |= 1 << (key[0] & 31);
            filter_last[key.len().min(31)] |= 1 << (key[key.len() - 1] & 31);
        }
        let groups = entries.chunk_by(|a, b| a.0 == b.0).count();
        let mut slots = vec![Slot::default(); (groups * 4).next_power_of_two()];
        let mask = slots.len() - 1;
        let mut start = 0;
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            let sig = group[0].0;
            let mut i = slot_of(sig, mask);
            while slots[i].end != 0 {
                i = (i + 1) & mask;
            }
            let end = start + group.len() as u32;
            slots[i] = Slot { sig, start, end };
            start = end;
        }
        AsciiTable {
            filter,
            filter_last,
            slots: slots.into_boxed_slice(),
            entries: (entries.into_iter())
                .map(|(_, key, value)| Entry {
                    fold: key
                        .iter()
                        .map(|b| if b.is_ascii_lowercase() { 0x20 } else { 0 })
                        .collect(),
                    key,
                    value,
                })
                .collect(),
        }
    }

    /// Whether `word` (nonempty) may be a key once lowercased: `false` is sure.
    #[inline]
    fn may_hold(&self, word: &[u8]) -> bool {
        let n = word.len().min(31);
        (self.filter[n] >> (word[0] & 31)) & 1 != 0
            && (self.filter_last[n] >> (word[word.len() - 1] & 31)) & 1 != 0
    }

    /// The value of `word` (ASCII, nonempty), lowercased.
    #[inline(always)]
    pub(super) fn get(&self, word: &[u8]) -> Option<&V> {
        if !self.may_hold(word) {
            return None;
        }
        self.get_unfiltered(word)
    }

    /// [`get`](Self::get) for a word [`may_hold`](Self::may_hold) let through.
    #[inline(always)]
    fn get_unfiltered(&self, word: &[u8]) -> Option<&V> {
        let sig = signature(word);
        let mask = self.slots.len() - 1;
        let mut i = slot_of(sig, mask);
        loop {
            let slot = self.slots[i];
            if slot.end == 0 {
                return None;
            }
            if slot.sig == sig {
                return self.entries[slot.start as usize..slot.end as usize]
                    .iter()
                    .find(|e| {
                        e.key.len() == word.len()
                            && (word.iter().zip(e.key.iter().zip(e.fold.iter())))
                                .all(|(&w, (&k, &f))| w | f == k)
                    })
                    .map(|e| &e.value);
            }
            i = (i + 1) & mask;
        }
    }
}

/// The signature of an ASCII word (nonempty): its length (up to 255), and its first,
/// middle and last bytes, case folded.
#[inline]
fn signature(word: &[u8]) -> u32 {
    let n = word.len();
    let fold = |i: usize| u32::from(word[i] | 0x20);
    n.min(255) as u32 | fold(0) << 8 | fold(n / 2) << 16 | fold(n - 1) << 24
}

/// The first slot to look at for signature `sig`, in a table `mask + 1` long.
#[inline]
fn slot_of(sig: u32, mask: usize) -> usize {
    ((u64::from(sig).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize) & mask
}

/// The words of a text: maximal runs of letters and digits, read byte by byte where
/// the text is ASCII.
#[derive(Clone)]
struct FastWords<'a>(&'a str);

impl<'a> FastWords<'a> {
    /// The next word, and whether it is all ASCII.
    fn next_word(&mut self) -> Option<(&'a str, bool)> {
        let text = self.0;
        let bytes = text.as_bytes();
        let mut i = 0;
        // Up to the first letter or digit.
        loop {
            let Some(&b) = bytes.get(i) else {
                self.0 = "";
                return None;
            };
            match BYTE_CLASS[b as usize] {
                ALNUM => break,
                OTHER => i += 1,
                _ => match wide_char(text, i) {
                    (true, _) => break,
                    (false, len) => i += len,
                },
            }
        }
        let start = i;
        let mut ascii = true;
        while let Some(&b) = bytes.get(i) {
            match BYTE_CLASS[b as usize] {
                ALNUM => i += 1,
                OTHER => break,
                _ => match wide_char(text, i) {
                    (true, len) => {
                        ascii = false;
                        i += len;
                    }
                    (false, _) => break,
                },
            }
        }
        self.0 = &text[i..];
        Some((&text[start..i], ascii))
    }
}

/// [`BYTE_CLASS`]: an ASCII letter or digit.
const ALNUM: u8 = 1;
/// [`BYTE_CLASS`]: any other ASCII character.
const OTHER: u8 = 0;
/// [`BYTE_CLASS`]: each byte of an ASCII character, or `2` for the first byte of a
/// wider one (whose class only the whole character tells).
const BYTE_CLASS: [u8; 256] = {
    let mut class = [2u8; 256];
    let mut b = 0;
    while b < 128 {
        class[b] = if (b as u8).is_ascii_alphanumeric() {
            ALNUM
        } else {
            OTHER
        };
        b += 1;
    }
    class
};

/// Whether the character starting at byte `i` of `text` (not ASCII) is a letter or
/// digit, and its length in bytes. Kept out of line: most text is ASCII.
#[cold]
#[inline(never)]
fn wide_char(text: &str, i: usize) -> (bool, usize) {
    // `i` is at a character boundary: the text is only ever advanced by whole ones.
    text.get(i..)
        .and_then(|rest| rest.chars().next())
        .map_or((false, 1), |c| (c.is_alphanumeric(), c.len_utf8()))
}

fn lowercase(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Whether `word`, lowercased, equals `lower` (already lowercase).
pub(super) fn eq_lower(word: &str, lower: &str) -> bool {
    if word.is_ascii() {
        word.eq_ignore_ascii_case(lower)
    } else {
        lowercase(word).eq(lower.chars())
    }
}

fn starts_with_lower(word: &str, lower: &str) -> bool {
    let mut w = lowercase(word);
    lower.chars().all(|c| w.next() == Some(c))
}

fn ends_with_lower(word: &str, lower: &str) -> bool {
    let mut w = word.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lower.chars().rev().all(|c| w.next() == Some(c))
}

#[cfg(test)]
mod tests {
    //! The compiled matcher against the analyzer's rule read straight from its
    //! definition (the implementation it replaced, kept here as the oracle).

    use super::*;
    use crate::id::{Role, TaskId};
    use crate::task::analyzer::{
        Analyzed, FiredRule, NOT_FIRED, RuleBasedAnalyzer, RuleSet, STACK_RULES, TaskAnalyzer,
        Trigger, raised,
    };
    use crate::task::{Priority, Requirements, Task};
    use proptest::prelude::*;

    /// The words of a text: maximal runs of letters and digits.
    #[derive(Clone)]
    struct Words<'a>(&'a str);

    impl<'a> Iterator for Words<'a> {
        type Item = &'a str;

        fn next(&mut self) -> Option<&'a str> {
            let Some(start) = self.0.find(char::is_alphanumeric) else {
                self.0 = "";
                return None;
            };
            let rest = &self.0[start..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric())
                .unwrap_or(rest.len());
            let (word, tail) = rest.split_at(end);
            self.0 = tail;
            Some(word)
        }
    }

    /// Whether the consecutive words `phrase` appear in `text`.
    fn contains_phrase(text: &str, phrase: &[Token]) -> bool {
        let mut words = Words(text);
        loop {
            let mut probe = words.clone();
            if phrase
                .iter()
                .all(|t| probe.next().is_some_and(|w| t.matches(w)))
            {
                return true;
            }
            if words.next().is_none() {
                return false;
            }
        }
    }

    /// What makes `rule` fire for `task`: the first listed kind that is the task's,
    /// else the first listed keyword found in its kind or description, each keyword
    /// looked for on its own.
    fn fires(compiled: &CompiledRule, rule: &AnalysisRule, task: &Task) -> Option<Trigger> {
        let kind = task.kind().trim();
        if let Some(i) = compiled.kinds.iter().position(|k| eq_lower(kind, k)) {
            return Some(Trigger::Kind(rule.kinds[i].as_str().into()));
        }
        compiled
            .keywords
            .iter()
            .position(|phrase| {
                contains_phrase(task.kind(), phrase) || contains_phrase(task.description(), phrase)
            })
            .map(|i| Trigger::Keyword(rule.keywords[i].as_str().into()))
    }

    /// The analysis as the analyzer defines it, rule by rule.
    fn oracle(rules: &RuleSet, task: &Task) -> Result<Analyzed, TaskError> {
        let mut fired = Vec::new();
        for rule in &rules.rules {
            let compiled = CompiledRule::new(rule)?;
            if let Some(trigger) = fires(&compiled, rule, task) {
                fired.push(FiredRule {
                    rule: rule.name.as_str().into(),
                    trigger,
                });
            }
        }
        if fired.is_empty() && rules.require_match {
            return Err(TaskError::NoRuleMatched { task: task.id() });
        }
        let mut requirements = task.requirements().clone();
        let own_priority = requirements.priority();
        requirements.merge(&rules.defaults);
        let mut floor = raised(rules.defaults.priority());
        for f in &fired {
            let rule = rules.rules.iter().find(|r| *r.name == *f.rule).unwrap();
            requirements.merge(&rule.requirements);
            floor = floor.max(raised(rule.requirements.priority()));
        }
        requirements.priority = floor.map_or(own_priority, |f| f.max(own_priority));
        Ok(Analyzed {
            requirements,
            fired,
        })
    }

    /// Words of the procedures' table, words close to them, and words whose case
    /// changes their length or bytes outside ASCII.
    const VOCAB: &[&str] = &[
        "deploy",
        "deploys",
        "deployment",
        "redeploy",
        "server",
        "start",
        "the",
        "health",
        "check",
        "checks",
        "healthcheck",
        "open",
        "a",
        "url",
        "launch",
        "browser",
        "screen",
        "capture",
        "visual",
        "visually",
        "verify",
        "report",
        "hand",
        "off",
        "over",
        "security",
        "breach",
        "backup",
        "restore",
        "memory",
        "corrupt",
        "ab",
        "ba",
        "aba",
        "x1",
        "1x",
        "straße",
        "İstanbul",
        "\u{212a}elvin",
        "émile",
        "ÉMILE",
        "ǅ",
        "σς",
        "ΣΑΣ",
    ];

    /// Text between words: separators, and a few characters that join words.
    const GLUE: &[&str] = &[
        " ", "  ", ", ", "-", ". ", "; ", "/", "\t", "—", "_", "é", "1", "\u{301}", " (", ") ",
    ];

    fn word() -> impl Strategy<Value = String> {
        (prop::sample::select(VOCAB), 0..4u8).prop_map(|(w, case)| match case {
            0 => w.to_owned(),
            1 => w.to_uppercase(),
            2 => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
            _ => w
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_uppercase().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect(),
        })
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec((word(), prop::sample::select(GLUE)), 0..max).prop_map(|parts| {
            parts.into_iter().fold(String::new(), |mut s, (w, g)| {
                s.push_str(&w);
                s.push_str(g);
                s
            })
        })
    }

    /// A keyword of one to three words from the vocabulary, each perhaps widened by
    /// a wildcard at either end.
    fn keyword() -> impl Strategy<Value = String> {
        prop::collection::vec((word(), 0..6u8), 1..4).prop_map(|words| {
            words
                .into_iter()
                .map(|(w, anchor)| match anchor {
                    0 => format!("{w}*"),
                    1 => format!("*{w}"),
                    2 => format!("*{w}*"),
                    _ => w,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    fn rule_set() -> impl Strategy<Value = RuleSet> {
        let rule = (
            prop::collection::vec(keyword(), 0..5),
            prop::collection::vec(word(), 0..2),
            0..3usize,
        );
        prop_oneof![
            1 => Just(RuleSet::default()),
            3 => (prop::collection::vec(rule, 1..8), any::<bool>()).prop_map(|(rules, require)| {
                let roles = ["ops", "qa", "security"];
                let mut set = RuleSet::empty().with_require_match(require);
                for (i, (keywords, kinds, role)) in rules.into_iter().enumerate() {
                    let mut r = AnalysisRule::new(format!("r{i}")).with_requirements(
                        Requirements::new()
                            .with_role(Role::new(roles[role]).unwrap())
                            .with_priority(Priority(role as u32 * 40)),
                    );
                    r.keywords = keywords;
                    r.kinds = kinds;
                    if r.keywords.is_empty() && r.kinds.is_empty() {
                        r.kinds.push("never".into());
                    }
                    set = set.with_rule(r);
                }
                set
            }),
        ]
    }

    /// Mostly ASCII text, long enough to cross the ASCII path's blocks: words of the
    /// vocabulary (a few outside ASCII), long runs of letters and digits, and glue.
    fn mostly_ascii_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => word(),
            1 => (1..140usize, prop::sample::select(&["x", "A", "7", "é"][..]))
                .prop_map(|(n, c)| c.repeat(n)),
        ];
        let glue = prop_oneof![
            20 => prop::sample::select(&[" ", ", ", "-", ". ", "/", "\t", "_", "(", ")"][..]),
            1 => prop::sample::select(GLUE),
        ];
        prop::collection::vec((piece, glue), 0..60).prop_map(|parts| {
            parts.into_iter().fold(String::new(), |mut s, (w, g)| {
                s.push_str(&w);
                s.push_str(g);
                s
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The ASCII path (64 bytes at a time) finds what the path for any text
        /// (character by character) finds, and takes exactly the texts that are all
        /// ASCII.
        #[test]
        fn the_ascii_path_agrees_with_the_path_for_any_text(
            rules in rule_set(),
            text in mostly_ascii_text(),
        ) {
            let analyzer = RuleBasedAnalyzer::new(rules).unwrap();
            let n = analyzer.rules.rules.len();
            let (mut fast, mut chars) = (vec![NOT_FIRED; n], vec![NOT_FIRED; n]);
            let ascii = analyzer.matcher.find_ascii(&text, &mut fast);
            prop_assert_eq!(ascii, text.is_ascii());
            analyzer.matcher.find_chars(&text, &mut chars);
            if ascii {
                prop_assert_eq!(fast, chars);
            }
        }

        /// The compiled matcher fires the rules the definition fires, for the same
        /// keywords and kinds, and makes the same requirements.
        #[test]
        fn the_matcher_agrees_with_the_definition(
            rules in rule_set(),
            kind in prop_oneof![text(3), word(), word().prop_map(|w| format!("  {w} "))],
            description in text(30),
        ) {
            let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
            let task = Task::new(TaskId::new(1), kind, description);
            let want = oracle(&rules, &task);
            let got = analyzer.analyze(&task);
            prop_assert_eq!(&got, &want);
            let mut in_place = task.clone();
            let fired = analyzer.analyze_in_place(&mut in_place);
            match want {
                Ok(want) => {
                    prop_assert_eq!(fired.unwrap(), want.fired);
                    prop_assert_eq!(in_place.requirements(), &want.requirements);
                }
                Err(e) => prop_assert_eq!(fired.unwrap_err(), e),
            }
        }
    }

    #[test]
    fn a_table_longer_than_the_stack_buffer_still_matches() {
        let mut rules = RuleSet::empty();
        for i in 0..(STACK_RULES + 5) {
            rules =
                rules.with_rule(AnalysisRule::new(format!("r{i}")).with_keyword(format!("w{i}")));
        }
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        let task = Task::new(TaskId::new(1), "", "W36 then w2, and w0");
        let got = analyzer.analyze(&task).unwrap();
        assert_eq!(got.rules().collect::<Vec<_>>(), ["r0", "r2", "r36"]);
        assert_eq!(Ok(got), oracle(&rules, &task));
    }

    #[test]
    fn a_kind_is_compared_whole_ignoring_case_and_nothing_else() {
        let rules = RuleSet::default();
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        for kind in [
            "Health_Check",
            " HEALTH_CHECK ",
            "health-check",
            "health_chec",
            "health_checks",
            "Security_Incident",
            "security incident",
            "\u{17f}ecurity",
            "_",
            "deploy2",
        ] {
            let task = Task::new(TaskId::new(1), kind, "");
            assert_eq!(analyzer.analyze(&task), oracle(&rules, &task), "{kind:?}");
        }
        let task = Task::new(TaskId::new(1), "Health_Check", "");
        assert!(analyzer.analyze(&task).unwrap().fired[0].matched_kind() == Some("health_check"));
    }

    #[test]
    fn words_longer_than_a_signature_and_a_block_are_told_apart() {
        // Both keywords are as long as keywords may be, past a block of the ASCII path
        // and past the filter's longest length, and differ by their length alone; the
        // text's words run across blocks, one is longer than any signature's length,
        // and one text takes the other path.
        let rules = RuleSet::empty()
            .with_rule(AnalysisRule::new("long").with_keyword("x".repeat(127)))
            .with_rule(AnalysisRule::new("longer").with_keyword("x".repeat(128)))
            .with_rule(AnalysisRule::new("short").with_keyword("x"));
        let analyzer = RuleBasedAnalyzer::new(rules.clone()).unwrap();
        for (text, want) in [
            (format!("a {} b", "X".repeat(128)), &["longer"][..]),
            (format!("{}, x", "x".repeat(127)), &["long", "short"]),
            (format!("{} é", "x".repeat(127)), &["long"]),
            ("x".repeat(300), &[]),
            ("x".repeat(129), &[]),
        ] {
            let task = Task::new(TaskId::new(1), "", text);
            let got = analyzer.analyze(&task).unwrap();
            assert_eq!(got.rules().collect::<Vec<_>>(), want);
            assert_eq!(Ok(got), oracle(&rules, &task));
        }
    }
}
