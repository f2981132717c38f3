//! Checksummed backups of memory, and how long to keep them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::digest::{Digest, Sha256};
use crate::serde_util::duration_ms;

use super::error::{BackupDamage, MemoryError, shown};
use super::{Entries, check_stored_key, entry_digest};

/// A backup's number, handed out in sequence by the [`Memory`](super::Memory) that
/// took it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BackupId(u64);

impl BackupId {
    /// The backup id `n`.
    #[must_use]
    pub const fn new(n: u64) -> Self {
        BackupId(n)
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backup#{}", self.0)
    }
}

/// One entry of a [`Backup`]: a key, its value, and the digest of both
/// ([`entry_digest`]), which locates damage to this entry alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    key: String,
    /// Hex in serde data: readable in JSON or YAML, and half the size of a list of
    /// numbers.
    #[serde(with = "hex_bytes")]
    value: Vec<u8>,
    digest: Digest,
}

impl BackupEntry {
    /// The key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value.
    #[must_use]
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The digest recorded for key and value when the backup was taken.
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// A checksummed copy of memory at one moment: plain serde data that the host keeps
/// wherever it keeps backups (a bucket, a file, another database).
///
/// Two layers of checksums make damage detectable and locatable: each entry carries
/// the digest of its key and value, so an altered value is found by key; and the
/// backup carries one checksum over its id, time, every key and entry digest, and its
/// suspect keys, so an entry added, removed or renamed, a truncated backup, or
/// changed metadata is found too. [`Backup::verify`] checks both, and
/// [`Memory::restore`](super::Memory::restore) refuses a backup that fails it, before
/// touching the live store.
///
/// The checksums are SHA-256 without a key: they catch corruption (a flipped bit, a
/// truncated object, a careless edit), not a forger who rewrites the checksums too.
/// Keep backups where only the operators can write them.
///
/// A backup also records which keys were *suspect* when it was taken: those whose
/// value did not match the guard's own checksums then (the procedure backs up the
/// current state even when it is corrupt, as evidence). A backup with no suspect key
/// is [clean](Backup::is_clean): the state the guard had written, and what
/// [`last_good_backup`] picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    id: BackupId,
    taken_at: Timestamp,
    entries: Vec<BackupEntry>,
    #[serde(default)]
    suspect: Vec<String>,
    checksum: Digest,
}

impl Backup {
    /// A backup of `entries`, with `suspect` the keys (in order) that did not match
    /// the guard's checksums.
    pub(crate) fn new(
        id: BackupId,
        taken_at: Timestamp,
        entries: Entries,
        suspect: Vec<String>,
    ) -> Backup {
        let entries: Vec<BackupEntry> = entries
            .into_iter()
            .map(|(key, value)| BackupEntry {
                digest: entry_digest(&key, &value),
                key,
                value,
            })
            .collect();
        let checksum = checksum(id, taken_at, &entries, &suspect);
        Backup {
            id,
            taken_at,
            entries,
            suspect,
            checksum,
        }
    }

    /// The backup's number.
    #[must_use]
    pub fn id(&self) -> BackupId {
        self.id
    }

    /// When it was taken.
    #[must_use]
    pub fn taken_at(&self) -> Timestamp {
        self.taken_at
    }

    /// Its entries, in key order.
    #[must_use]
    pub fn entries(&self) -> &[BackupEntry] {
        &self.entries
    }

    /// How many entries it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value it holds for `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .binary_search_by(|e| e.key.as_str().cmp(key))
            .ok()
            .map(|i| self.entries[i].value.as_slice())
    }

    /// The keys whose values did not match the guard's checksums when the backup was
    /// taken, in key order.
    #[must_use]
    pub fn suspect(&self) -> &[String] {
        &self.suspect
    }

    /// Whether no key was suspect when it was taken: a copy of what the guard had
    /// written. (Whether it is still intact is [`verify`](Self::verify)'s question.)
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.suspect.is_empty()
    }

    /// The checksum over the whole backup.
    #[must_use]
    pub fn checksum(&self) -> Digest {
        self.checksum
    }

    /// Checks every entry against its digest and the backup against its checksum.
    ///
    /// # Errors
    /// The first damage found, entries first (so that an altered value is named by
    /// its key): [`BackupDamage::InvalidKey`], [`BackupDamage::OutOfOrder`],
    /// [`BackupDamage::EntryAltered`], then [`BackupDamage::ChecksumMismatch`].
    ///
    /// # Complexity
    /// O(total size): every key and value is hashed once.
    pub fn verify(&self) -> Result<(), BackupDamage> {
        let mut previous: Option<&str> = None;
        for e in &self.entries {
            // A backup taken before invisible characters were refused in keys may
            // hold one, and must still restore: see `check_key`.
            if let Err(MemoryError::InvalidKey { key, problem }) = check_stored_key(&e.key) {
                return Err(BackupDamage::InvalidKey { key, problem });
            }
            if previous.is_some_and(|p| p >= e.key.as_str()) {
                return Err(BackupDamage::OutOfOrder { key: shown(&e.key) });
            }
            previous = Some(&e.key);
            if entry_digest(&e.key, &e.value) != e.digest {
                return Err(BackupDamage::EntryAltered { key: shown(&e.key) });
            }
        }
        let computed = checksum(self.id, self.taken_at, &self.entries, &self.suspect);
        if computed != self.checksum {
            return Err(BackupDamage::ChecksumMismatch {
                recorded: self.checksum,
                computed,
            });
        }
        Ok(())
    }

    /// The entries' digests by key, for comparing a store with the backup.
    pub(crate) fn digests(&self) -> BTreeMap<String, Digest> {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.digest))
            .collect()
    }

    /// The entries as a map, for loading into a store.
    pub(crate) fn to_entries(&self) -> Entries {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }
}

/// The checksum over a backup: a domain tag, then every field length-prefixed, so that
/// no two different backups feed the hash the same bytes.
fn checksum(
    id: BackupId,
    taken_at: Timestamp,
    entries: &[BackupEntry],
    suspect: &[String],
) -> Digest {
    let mut h = Sha256::new();
    h.field(b"concord.memory.backup.v1");
    h.update(&id.0.to_le_bytes());
    h.update(&taken_at.as_nanos().to_le_bytes());
    h.update(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        h.field(e.key.as_bytes());
        h.update(e.digest.as_bytes());
    }
    h.update(&(suspect.len() as u64).to_le_bytes());
    for key in suspect {
        h.field(key.as_bytes());
    }
    h.finish()
}

/// How long backups are kept: what the maintenance cleanup prunes with
/// [`prune_backups`]. Serde data.
///
/// The default is the daily cleanup's: a backup older than seven days goes, but the
/// newest one always stays. Whatever the settings, pruning never removes the newest
/// backup that verifies and is clean (see [`last_good_backup`]): the one a restore
/// would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// The newest backups kept whatever their age (default 1).
    pub keep_last: usize,
    /// Backups older than this go, beyond the `keep_last` newest (default seven days).
    #[serde(with = "duration_ms")]
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Retention {
    /// With `keep_last` newest backups kept whatever their age.
    #[must_use]
    pub fn with_keep_last(mut self, keep_last: usize) -> Self {
        self.keep_last = keep_last;
        self
    }

    /// With backups older than `max_age` pruned.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }
}

/// The newest backup (by time taken, then id) that verifies and is clean: the one to
/// restore from.
///
/// # Complexity
/// Verifies backups newest first until one passes: O(total size) at worst.
#[must_use]
pub fn last_good_backup(backups: &[Backup]) -> Option<&Backup> {
    let mut order: Vec<&Backup> = backups.iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse((b.taken_at, b.id)));
    order
        .into_iter()
        .find(|b| b.is_clean() && b.verify().is_ok())
}

/// Removes from `backups` those `retention` no longer keeps at `now`, and returns
/// them (in their order in `backups`, which keeps the rest in theirs).
///
/// Kept: the `keep_last` newest, every backup no older than `max_age`, and always
/// the [`last_good_backup`], however old.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use concord::memory::{prune_backups, InMemoryStore, Memory, Retention};
/// use concord::Timestamp;
/// use futures::executor::block_on;
///
/// let memory = Memory::new(Arc::new(InMemoryStore::new()));
/// let day = 24 * 3600;
/// let mut backups = Vec::new();
/// for d in 0..10 {
///     block_on(memory.put("day", d.to_string().into_bytes()))?;
///     backups.push(block_on(memory.backup(Timestamp::from_secs(d * day)))?);
/// }
/// let now = Timestamp::from_secs(9 * day);
/// let pruned = prune_backups(&mut backups, &Retention::default(), now);
/// assert_eq!(pruned.len(), 2); // days 0 and 1: older than seven days
/// assert_eq!(backups.len(), 8);
/// # Ok::<(), concord::memory::MemoryError>(())
/// ```
pub fn prune_backups(
    backups: &mut Vec<Backup>,
    retention: &Retention,
    now: Timestamp,
) -> Vec<Backup> {
    let mut newest: Vec<(Timestamp, BackupId, usize)> = backups
        .iter()
        .enumerate()
        .map(|(i, b)| (b.taken_at, b.id, i))
        .collect();
    newest.sort_by_key(|&(at, id, _)| std::cmp::Reverse((at, id)));
    let mut keep = vec![false; backups.len()];
    for &(_, _, i) in newest.iter().take(retention.keep_last) {
        keep[i] = true;
    }
    for (i, b) in backups.iter().enumerate() {
        if now.duration_since(b.taken_at) <= retention.max_age {
            keep[i] = true;
        }
    }
    if let Some(&(_, _, i)) = newest
        .iter()
        .find(|&&(_, _, i)| backups[i].is_clean() && backups[i].verify().is_ok())
    {
        keep[i] = true;
    }
    let mut pruned = Vec::new();
    let mut kept = Vec::with_capacity(backups.len());
    for (b, keep) in backups.drain(..).zip(keep) {
        if keep {
            kept.push(b);
        } else {
            pruned.push(b);
        }
    }
    *backups = kept;
    if !pruned.is_empty() {
        tracing::debug!(
            backups.pruned = pruned.len(),
            backups.kept = backups.len(),
            "memory backups pruned"
        );
    }
    pruned
}

/// Bytes as lowercase hex in serde data.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        s.serialize_str(&out)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("a backup value is not an even run of hex digits");
        if s.len() % 2 != 0 {
            return Err(bad());
        }
        s.as_bytes()
            .chunks_exact(2)
            .map(|pair| {
                let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
                let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
                Ok((hi * 16 + lo) as u8)
            })
            .collect()
    }
}
