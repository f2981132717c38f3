//! Interned names as bits: [`CapabilityCatalog`] and [`CapabilitySet`].
//!
//! Matching an agent against a task asks "does the agent have every capability the
//! task needs" millions of times per second. Comparing sorted lists of strings for
//! that is slow; comparing two bitsets is a couple of `and-not` instructions. So each
//! name gets a dense bit index once, from a catalog, and sets of names are bitsets.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The bit a [`CapabilityCatalog`] gave a name.
///
/// Only a catalog makes these, so a set never holds a bit no name stands for, and its
/// size stays proportional to its catalog. A bit is meaningful only with the catalog
/// that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapabilityBit(usize);

impl CapabilityBit {
    /// The bit's position: `0` for the first name interned, `1` for the next, ...
    pub const fn index(self) -> usize {
        self.0
    }
}

/// Gives every name a dense bit index, once: an interner.
///
/// Indices are handed out in order, `0, 1, 2, ...`, and never reused or changed, even
/// when no agent has the name any more; a set built against a catalog stays valid for
/// as long as the catalog lives. Names are taken as they are (no trimming or case
/// folding): pass normalized names such as [`Capability::as_str`](crate::Capability).
///
/// # Complexity
/// `intern` and `get` are one hash lookup; the catalog holds each name once.
///
/// ```
/// use concord::agent::CapabilityCatalog;
///
/// let mut catalog = CapabilityCatalog::new();
/// let deploy = catalog.intern("deploy");
/// let qa = catalog.intern("qa");
/// assert_eq!(catalog.intern("deploy"), deploy);
/// assert_eq!((deploy.index(), qa.index()), (0, 1));
/// assert_eq!(catalog.name(qa), Some("qa"));
///
/// let agent = catalog.intern_all(["deploy", "qa", "screenshot"]);
/// let task = catalog.lookup_all(["qa", "deploy"]).unwrap();
/// assert!(agent.is_superset(&task));
/// assert!(catalog.lookup_all(["gpu"]).is_none()); // nobody has it
/// ```
#[derive(Debug, Clone, Default)]
pub struct CapabilityCatalog {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
}

/// Up to this many names, a lookup compares names instead of hashing.
const SCAN_UP_TO: usize = 8;

impl CapabilityCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bit of `name`, giving it the next free one if it has none yet.
    pub fn intern(&mut self, name: &str) -> CapabilityBit {
        if let Some(&i) = self.index.get(name) {
            return CapabilityBit(i);
        }
        let i = self.names.len();
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.index.insert(name, i);
        CapabilityBit(i)
    }

    /// The bit of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<CapabilityBit> {
        self.get_bytes(name.as_bytes())
    }

    /// [`get`](Self::get) for a name's bytes, as a role or capability gives them:
    /// only a catalog of many names needs them as a string.
    #[inline]
    pub(crate) fn get_bytes(&self, name: &[u8]) -> Option<CapabilityBit> {
        // A few names (a fleet's roles, most capability sets) are found faster by
        // comparing them than by hashing the name (SipHash: names come from hosts).
        if self.names.len() <= SCAN_UP_TO {
            return self
                .names
                .iter()
                .position(|n| crate::id::same_bytes(n.as_bytes(), name))
                .map(CapabilityBit);
        }
        let name = std::str::from_utf8(name).ok()?;
        self.index.get(name).map(|&i| CapabilityBit(i))
    }

    /// The name of `bit`, or `None` if this catalog did not issue it.
    pub fn name(&self, bit: CapabilityBit) -> Option<&str> {
        self.names.get(bit.0).map(|n| &**n)
    }

    /// How many names the catalog holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the catalog holds no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every name with its bit, in bit order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (CapabilityBit, &str)> + '_ {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (CapabilityBit(i), &**n))
    }

    /// The set of `names`, interning those not yet known.
    pub fn intern_all<I>(&mut self, names: I) -> CapabilitySet
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut set = CapabilitySet::new();
        for name in names {
            set.insert(self.intern(name.as_ref()));
        }
        set
    }

    /// The set of `names`, or `None` if any of them is unknown (then no set built
    /// against this catalog can contain them all).
    pub fn lookup_all<I>(&self, names: I) -> Option<CapabilitySet>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut set = CapabilitySet::new();
        for name in names {
            set.insert(self.get(name.as_ref())?);
        }
        Some(set)
    }

    /// The names of the bits in `set`, in bit order (bits this catalog did not issue
    /// are skipped).
    pub fn names_of<'a>(&'a self, set: &'a CapabilitySet) -> impl Iterator<Item = &'a str> + 'a {
        set.iter().filter_map(|bit| self.name(bit))
    }
}

/// A set of [`CapabilityBit`]s: a bitset.
///
/// The first 128 bits live inline, so the common case (a vocabulary of at most 128
/// roles or capabilities) never allocates; further bits spill to the heap. Equal sets
/// compare and hash equal whatever their history.
///
/// # Complexity
/// [`is_superset`](Self::is_superset) is two `and-not`s on the inline words, plus one
/// per spilled word when the other set has any; `insert`, `remove` and `contains` are
/// constant time (amortized, when spilling).
///
/// ```
/// use concord::agent::{CapabilityCatalog, CapabilitySet};
///
/// let mut catalog = CapabilityCatalog::new();
/// let [a, b, c] = ["a", "b", "c"].map(|n| catalog.intern(n));
/// let mut set = CapabilitySet::new();
/// set.insert(a);
/// set.insert(c);
/// assert!(set.contains(c) && !set.contains(b));
/// assert_eq!(set.iter().collect::<Vec<_>>(), [a, c]);
/// assert!(set.is_superset(&CapabilitySet::from_iter([c])));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet {
    inline: [u64; 2],
    /// Words for bits 128 and up; never ends in a zero word.
    spill: Vec<u64>,
}

impl CapabilitySet {
    /// The empty set. Does not allocate.
    pub const fn new() -> Self {
        CapabilitySet {
            inline: [0; 2],
            spill: Vec::new(),
        }
    }

    fn word(&self, w: usize) -> u64 {
        match w {
            0 | 1 => self.inline[w],
            _ => self.spill.get(w - 2).copied().unwrap_or(0),
        }
    }

    /// Adds `bit`; returns whether it was absent.
    #[inline]
    pub fn insert(&mut self, bit: CapabilityBit) -> bool {
        let (w, mask) = (bit.0 / 64, 1u64 << (bit.0 % 64));
        let word = if w < 2 {
            &mut self.inline[w]
        } else {
            self.spill_word(w - 2)
        };
        let absent = *word & mask == 0;
        *word |= mask;
        absent
    }

    /// Word `s` of the spill, grown to hold it: out of line, as the first 128 bits
    /// hold nearly every catalog's names.
    #[inline(never)]
    fn spill_word(&mut self, s: usize) -> &mut u64 {
        if s >= self.spill.len() {
            self.spill.resize(s + 1, 0);
        }
        &mut self.spill[s]
    }

    /// Removes `bit`; returns whether it was present.
    pub fn remove(&mut self, bit: CapabilityBit) -> bool {
        let (w, mask) = (bit.0 / 64, 1u64 << (bit.0 % 64));
        let word = if w < 2 {
            &mut self.inline[w]
        } else {
            match self.spill.get_mut(w - 2) {
                Some(word) => word,
                None => return false,
            }
        };
        let present = *word & mask != 0;
        *word &= !mask;
        while self.spill.last() == Some(&0) {
            self.spill.pop();
        }
        present
    }

    /// Whether `bit` is in the set.
    pub fn contains(&self, bit: CapabilityBit) -> bool {
        self.word(bit.0 / 64) & (1u64 << (bit.0 % 64)) != 0
    }

    /// Whether every bit of `other` is in `self`. The hot path of matching agents to
    /// tasks.
    #[inline]
    pub fn is_superset(&self, other: &CapabilitySet) -> bool {
        let missing = (other.inline[0] & !self.inline[0]) | (other.inline[1] & !self.inline[1]);
        missing == 0 && (other.spill.is_empty() || self.spill_is_superset(other))
    }

    /// The first 128 bits as two words, for callers that lay sets out in their own
    /// arrays (check [`is_spilled`](Self::is_spilled) for the rest).
    #[inline]
    pub(crate) fn inline_words(&self) -> [u64; 2] {
        self.inline
    }

    /// The lowest bit of `need` that `self` lacks, if any: a few instructions when both
    /// sets fit inline. The hot path of explaining rejections.
    #[inline]
    pub fn first_missing(&self, need: &CapabilitySet) -> Option<CapabilityBit> {
        let w0 = need.inline[0] & !self.inline[0];
        if w0 != 0 {
            return Some(CapabilityBit(w0.trailing_zeros() as usize));
        }
        let w1 = need.inline[1] & !self.inline[1];
        if w1 != 0 {
            return Some(CapabilityBit(64 + w1.trailing_zeros() as usize));
        }
        need.spill.iter().enumerate().find_map(|(k, &w)| {
            let missing = w & !self.spill.get(k).copied().unwrap_or(0);
            (missing != 0).then(|| CapabilityBit(128 + 64 * k + missing.trailing_zeros() as usize))
        })
    }

    /// `is_superset` for the spilled words, out of line: rarely needed.
    fn spill_is_superset(&self, other: &CapabilitySet) -> bool {
        // Neither ends in a zero word, so a longer `other` has a bit `self` lacks.
        other.spill.len() <= self.spill.len()
            && other
                .spill
                .iter()
                .zip(&self.spill)
                .all(|(o, s)| o & !s == 0)
    }

    /// Whether every bit of `self` is in `other`.
    pub fn is_subset(&self, other: &CapabilitySet) -> bool {
        other.is_superset(self)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.inline == [0, 0] && self.spill.is_empty()
    }

    /// How many bits are in the set.
    pub fn len(&self) -> usize {
        self.inline
            .iter()
            .chain(&self.spill)
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Whether the set holds bits beyond the first 128, and so has allocated.
    pub fn is_spilled(&self) -> bool {
        !self.spill.is_empty()
    }

    /// The bits of `other` that are not in `self`, ascending.
    pub fn missing_from<'a>(
        &'a self,
        other: &'a CapabilitySet,
    ) -> impl Iterator<Item = CapabilityBit> + 'a {
        other.iter().filter(|bit| !self.contains(*bit))
    }

    /// The bits in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = CapabilityBit> + '_ {
        self.inline
            .iter()
            .chain(&self.spill)
            .enumerate()
            .flat_map(|(w, &word)| Bits { word, base: w * 64 })
    }
}

/// The set bits of one word.
struct Bits {
    word: u64,
    base: usize,
}

impl Iterator for Bits {
    type Item = CapabilityBit;
    fn next(&mut self) -> Option<CapabilityBit> {
        if self.word == 0 {
            return None;
        }
        let tz = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(CapabilityBit(self.base + tz))
    }
}

impl FromIterator<CapabilityBit> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = CapabilityBit>>(iter: I) -> Self {
        let mut set = CapabilitySet::new();
        set.extend(iter);
        set
    }
}

impl Extend<CapabilityBit> for CapabilitySet {
    fn extend<I: IntoIterator<Item = CapabilityBit>>(&mut self, iter: I) {
        for bit in iter {
            self.insert(bit);
        }
    }
}

impl fmt::Debug for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|b| b.0)).finish()
    }
}
