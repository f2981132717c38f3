//! Integrity reports: which keys of a store do not hold what they should.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

use super::{Entries, entry_digest};

/// How an entry differs from what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Damage {
    /// The key holds a value other than the one recorded.
    Altered,
    /// The key should hold a value and holds none.
    Missing,
    /// The key holds a value where none was recorded (written behind the guard's
    /// back, or left over).
    Unexpected,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Altered => "altered",
            Damage::Missing => "missing",
            Damage::Unexpected => "unexpected",
        })
    }
}

/// One corrupt entry, located: its key, how it is damaged, and the digests (of key
/// and value, see [`entry_digest`]) expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CorruptEntry {
    /// The key.
    pub key: String,
    /// How it is damaged.
    pub damage: Damage,
    /// The digest recorded for it (`None` when [`Damage::Unexpected`]).
    pub expected: Option<Digest>,
    /// The digest of what the store holds (`None` when [`Damage::Missing`]).
    pub found: Option<Digest>,
}

impl fmt::Display for CorruptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is {}", self.key, self.damage)?;
        if let (Some(expected), Some(found)) = (self.expected, self.found) {
            write!(
                f,
                " (digest {} expected, {} found)",
                expected.short(),
                found.short()
            )?;
        }
        Ok(())
    }
}

/// What an integrity validation found: how many entries it checked and every one
/// that is corrupt, in key order.
///
/// ```
/// use std::sync::Arc;
/// use concord::memory::{Damage, InMemoryStore, Memory};
/// use futures::executor::block_on;
///
/// let store = Arc::new(InMemoryStore::new());
/// let memory = Memory::new(store.clone());
/// block_on(memory.put("a", b"1".to_vec()))?;
/// block_on(memory.put("b", b"2".to_vec()))?;
/// store.corrupt("b"); // a drill: flip bits behind the guard's back
/// let report = block_on(memory.validate())?;
/// assert_eq!(report.checked(), 2);
/// assert_eq!(report.keys(), ["b"]);
/// assert_eq!(report.corrupt()[0].damage, Damage::Altered);
/// # Ok::<(), concord::memory::MemoryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntegrityReport {
    checked: usize,
    corrupt: Vec<CorruptEntry>,
}

impl IntegrityReport {
    /// Compares what a store holds with the digests it should hold, key by key.
    ///
    /// # Complexity
    /// O(n + m) digest comparisons over the two sorted maps, plus hashing every value
    /// held once.
    pub(crate) fn compare(expected: &BTreeMap<String, Digest>, held: &Entries) -> Self {
        use std::cmp::Ordering;
        let mut corrupt = Vec::new();
        let mut checked = 0;
        let mut want = expected.iter().peekable();
        let mut have = held.iter().peekable();
        // A merge of the two key-ordered sides: each key, on either side, once.
        loop {
            let order = match (want.peek(), have.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((wk, _)), Some((hk, _))) => wk.cmp(hk),
            };
            checked += 1;
            let (w, h) = match order {
                Ordering::Less => (want.next(), None),
                Ordering::Greater => (None, have.next()),
                Ordering::Equal => (want.next(), have.next()),
            };
            let key = w.map_or_else(|| h.map(|(k, _)| k), |(k, _)| Some(k));
            let expected = w.map(|(_, d)| *d);
            let found = h.map(|(k, v)| entry_digest(k, v));
            let damage = match (expected, found) {
                (Some(e), Some(f)) if e == f => continue,
                (Some(_), Some(_)) => Damage::Altered,
                (Some(_), None) => Damage::Missing,
                (None, _) => Damage::Unexpected,
            };
            corrupt.push(CorruptEntry {
                key: key.cloned().unwrap_or_default(),
                damage,
                expected,
                found,
            });
        }
        IntegrityReport { checked, corrupt }
    }

    /// How many keys were checked (those recorded and those held, each once).
    #[must_use]
    pub fn checked(&self) -> usize {
        self.checked
    }

    /// Whether nothing is corrupt.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
    }

    /// Every corrupt entry, in key order.
    #[must_use]
    pub fn corrupt(&self) -> &[CorruptEntry] {
        &self.corrupt
    }

    /// The keys of the corrupt entries, in key order.
    #[must_use]
    pub fn keys(&self) -> Vec<&str> {
        self.corrupt.iter().map(|c| c.key.as_str()).collect()
    }

    /// The keys damaged in the way `damage`, in key order.
    #[must_use]
    pub fn keys_with(&self, damage: Damage) -> Vec<&str> {
        self.corrupt
            .iter()
            .filter(|c| c.damage == damage)
            .map(|c| c.key.as_str())
            .collect()
    }
}

impl fmt::Display for IntegrityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = if self.checked == 1 {
            "entry"
        } else {
            "entries"
        };
        if self.is_clean() {
            return write!(f, "{} {entries} checked, none corrupt", self.checked);
        }
        write!(
            f,
            "{} of {} {entries} corrupt: ",
            self.corrupt.len(),
            self.checked
        )?;
        for (i, c) in self.corrupt.iter().take(5).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        if self.corrupt.len() > 5 {
            write!(f, " and {} more", self.corrupt.len() - 5)?;
        }
        Ok(())
    }
}
