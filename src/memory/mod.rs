//! Agent memory: the agents' shared key-value memory, guarded so that corruption is
//! detected, located and repaired.
//!
//! Owns the [`MemoryStore`] trait that hosts implement over their own store (Redis, a
//! database, a file), the [`InMemoryStore`] default, glob [`Pattern`]s for queries,
//! and the [`Memory`] guard that sits in front of a store and carries out the memory
//! corruption procedure: stop memory writes ([`Memory::fence`]), back up the current
//! state ([`Memory::backup`], a checksummed [`Backup`]), assess the corruption
//! ([`Memory::validate`], an [`IntegrityReport`] naming each corrupt key), restore from
//! the last good backup ([`Memory::restore`], which refuses a corrupt backup) or switch
//! to the backup store ([`Memory::switch_to`]), and resume ([`Memory::unfence`]). The
//! maintenance cleanup prunes old backups with [`prune_backups`].
//!
//! The crate does no I/O: the guard never reads a clock (operations that record a
//! time take `now`) and stores backups nowhere (a [`Backup`] is serde data the host
//! keeps). The module sits above `conflict` and below `workflow`, whose executor
//! carries out the runbook's "stop memory writes" step through it; it imports only
//! the crate's base modules, and must never import `workflow`, `coordinator` or
//! `health` (the memory health check, [`MemoryCheck`](crate::health::MemoryCheck),
//! lives in `health`, above it).
//!
//! # Example: the memory corruption procedure
//! ```
//! use std::sync::Arc;
//! use concord::memory::{InMemoryStore, Memory, MemoryError};
//! use concord::Timestamp;
//! use futures::executor::block_on;
//!
//! let store = Arc::new(InMemoryStore::new());
//! let memory = Memory::new(store.clone());
//! block_on(async {
//!     memory.put("deploy/web/status", b"green".to_vec()).await?;
//!     memory.put("deploy/api/status", b"green".to_vec()).await?;
//!     let good = memory.backup(Timestamp::from_secs(100)).await?;
//!
//!     store.corrupt("deploy/api/status"); // a drill: bits flip behind the guard's back
//!     assert!(matches!(
//!         memory.get("deploy/api/status").await,
//!         Err(MemoryError::Corrupt(_)) // corrupt data is never handed to an agent
//!     ));
//!
//!     let now = Timestamp::from_secs(200);
//!     memory.fence("memory corruption", now).await; // 1. stop memory writes
//!     let evidence = memory.backup(now).await?; // 2. back up the current state
//!     assert_eq!(evidence.suspect(), ["deploy/api/status"]);
//!     let report = memory.validate().await?; // 3. assess the corruption
//!     assert_eq!(report.keys(), ["deploy/api/status"]);
//!     memory.restore(&good).await?; // 4. restore from the last good backup
//!     assert!(memory.validate().await?.is_clean());
//!     memory.unfence(); // 5. resume
//!
//!     let queried = memory.query("deploy/*/status").await?;
//!     assert_eq!(queried.len(), 2);
//!     assert_eq!(queried["deploy/api/status"], b"green");
//!     Ok::<(), MemoryError>(())
//! })?;
//! # Ok::<(), MemoryError>(())
//! ```

mod backup;
mod error;
mod guard;
mod in_memory;
mod integrity;
mod pattern;

pub use backup::{Backup, BackupEntry, BackupId, Retention, last_good_backup, prune_backups};
pub use error::{BackupDamage, KeyProblem, MemoryError, PatternProblem};
pub use guard::{Fence, Memory, MemorySnapshot};
pub use in_memory::InMemoryStore;
pub use integrity::{CorruptEntry, Damage, IntegrityReport};
pub use pattern::Pattern;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Sha256};

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// The longest query pattern, in bytes: twice the longest key, so that every key can
/// be written as a pattern with all its characters escaped.
pub const MAX_PATTERN_LEN: usize = 2 * MAX_KEY_LEN;

/// Memory entries by key, in key order: what a store dumps and loads whole, and what
/// a query returns. Values are bytes: the store keeps them as given, and the agents
/// agree among themselves on what they mean (UTF-8 text, JSON, a serialized struct).
pub type Entries = BTreeMap<String, Vec<u8>>;

/// Checks that `key` is a valid memory key: not empty, at most [`MAX_KEY_LEN`] bytes,
/// and without control characters (which would let a key forge lines in a log or a
/// report) or invisible ones (a zero-width space, a bidi override, a variation
/// selector: which would make two keys that read the same, as labels may not, see
/// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN)). Any other character is allowed, `*`
/// and `?` included (a [`Pattern::literal`] matches them literally).
///
/// This is the check of a key being written ([`Memory::put`]). A key already stored
/// was checked when it was written, and earlier versions of the crate took invisible
/// characters in keys: a key holding one can still be read, listed, deleted, backed
/// up and restored (reads, deletes, patterns, backups and snapshots refuse only what
/// no key ever held: an empty key, a longer one, a control character), so that
/// nothing stored becomes unreachable; a host moves its value to a key without one.
///
/// # Errors
/// [`MemoryError::InvalidKey`] naming the key and what is wrong with it.
///
/// ```
/// use concord::memory::{check_key, KeyProblem, MemoryError};
///
/// assert!(check_key("deploy/web/status").is_ok());
/// assert!(matches!(
///     check_key("bad\nkey"),
///     Err(MemoryError::InvalidKey { problem: KeyProblem::ControlCharacter { at: 3 }, .. })
/// ));
/// ```
pub fn check_key(key: &str) -> Result<(), MemoryError> {
    check_key_chars(key, crate::id::is_control_or_invisible)
}

/// Checks that `key` may be a key already stored: what [`check_key`] checks, but for
/// invisible characters (control characters are refused: no version of the crate
/// ever wrote a key holding one). For reading, listing and deleting a key, and for
/// the keys of a backup or a snapshot: a key written before invisible characters
/// were refused, or restored from a backup taken then, must stay reachable, where
/// refusing it would leave it in the store for good.
pub(crate) fn check_stored_key(key: &str) -> Result<(), MemoryError> {
    check_key_chars(key, char::is_control)
}

/// [`check_key`] with `refused` the characters no key may hold.
fn check_key_chars(key: &str, refused: fn(char) -> bool) -> Result<(), MemoryError> {
    let refuse = |problem| MemoryError::InvalidKey {
        key: error::shown(key),
        problem,
    };
    if key.is_empty() {
        return Err(refuse(KeyProblem::Empty));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(refuse(KeyProblem::TooLong { len: key.len() }));
    }
    if let Some((at, _)) = key.char_indices().find(|&(_, c)| refused(c)) {
        return Err(refuse(KeyProblem::ControlCharacter { at }));
    }
    Ok(())
}

/// The digest of one entry: SHA-256 over the key and the value, each
/// length-prefixed. Binding the key in means a value moved to another key is caught
/// too, not only a value altered in place.
#[must_use]
pub fn entry_digest(key: &str, value: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.field(key.as_bytes());
    h.field(value);
    h.finish()
}

/// What a store says about itself: how much it holds, and a warning when it needs
/// attention (near capacity, a replica lagging). Every figure is optional: a store
/// reports what it knows cheaply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// How many entries it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// How many bytes of keys and values it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Something that needs attention; the memory health check reports the store
    /// degraded while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl StoreHealth {
    /// A store that reports nothing but that it answers.
    #[must_use]
    pub fn new() -> Self {
        StoreHealth::default()
    }

    /// With the number of entries.
    #[must_use]
    pub fn with_entries(mut self, entries: u64) -> Self {
        self.entries = Some(entries);
        self
    }

    /// With the number of bytes held.
    #[must_use]
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// With a warning.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warning = Some(warning.into());
        self
    }
}

/// A key-value store that holds the agents' shared memory: the host's Redis, database
/// or file, or the crate's [`InMemoryStore`].
///
/// The crate reaches it through a [`Memory`] guard, which checks keys and patterns
/// before the store sees them, stops writes during an incident, and keeps the
/// checksums that detect corruption. The store itself only stores.
///
/// # Contract
/// - No method blocks the calling thread: await the host's I/O.
/// - Values come back byte for byte as they were put.
/// - `get`, `query` and `entries` return what the store holds at one moment;
///   `entries` returns everything, `query` the entries whose keys match the pattern.
/// - `replace_all` is all or nothing: after `Ok` the store holds exactly the given
///   entries; after `Err` it holds what it held before. (A restore relies on it.)
/// - `delete` says whether the key held a value.
/// - Failures (unreachable, timed out, full) are [`MemoryError::Store`]; no method
///   panics on any input. A store used without a guard should check the keys it is
///   given to `put` with [`check_key`] itself, as [`InMemoryStore`] does, and take
///   in `replace_all` the keys of a backup that [verifies](Backup::verify) (which
///   may hold invisible characters, see [`check_key`]).
///
/// # Examples
/// A store that wraps another and refuses every write beyond a number of entries
/// (a host's quota), delegating the rest:
/// ```
/// use std::sync::Arc;
/// use concord::memory::{Entries, InMemoryStore, Memory, MemoryError, MemoryStore, StoreHealth};
///
/// #[derive(Debug, Default)]
/// struct Quota {
///     inner: InMemoryStore,
/// }
///
/// #[concord::async_trait]
/// impl MemoryStore for Quota {
///     async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError> {
///         if self.inner.len() >= 2 && self.inner.get(key).await?.is_none() {
///             return Err(MemoryError::store("quota of 2 entries reached"));
///         }
///         self.inner.put(key, value).await
///     }
///     async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
///         self.inner.get(key).await
///     }
///     async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
///         self.inner.delete(key).await
///     }
///     async fn entries(&self) -> Result<Entries, MemoryError> {
///         self.inner.entries().await
///     }
///     async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError> {
///         self.inner.replace_all(entries).await
///     }
///     async fn health(&self) -> Result<StoreHealth, MemoryError> {
///         self.inner.health().await
///     }
/// }
///
/// let memory = Memory::new(Arc::new(Quota::default()));
/// futures::executor::block_on(async {
///     memory.put("a", b"1".to_vec()).await?;
///     memory.put("b", b"2".to_vec()).await?;
///     assert!(matches!(memory.put("c", b"3".to_vec()).await, Err(MemoryError::Store { .. })));
///     assert_eq!(memory.query("*").await?.len(), 2); // the default `query`
///     Ok::<(), MemoryError>(())
/// })?;
/// # Ok::<(), MemoryError>(())
/// ```
#[async_trait::async_trait]
pub trait MemoryStore: fmt::Debug + Send + Sync + 'static {
    /// Stores `value` under `key`, replacing any value there.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError>;

    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError>;

    /// Removes `key`; whether it held a value.
    async fn delete(&self, key: &str) -> Result<bool, MemoryError>;

    /// The entries whose keys match `pattern`. The default filters
    /// [`entries`](Self::entries); a store with an index (Redis `SCAN MATCH`, a SQL
    /// `LIKE` on the pattern's [`literal_prefix`](Pattern::literal_prefix)) should
    /// answer from it.
    async fn query(&self, pattern: &Pattern) -> Result<Entries, MemoryError> {
        let mut all = self.entries().await?;
        all.retain(|key, _| pattern.matches(key));
        Ok(all)
    }

    /// Every entry: what a backup copies and a validation checks.
    async fn entries(&self) -> Result<Entries, MemoryError>;

    /// Replaces everything the store holds with `entries`, all or nothing: what a
    /// restore loads.
    async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError>;

    /// Whether the store answers, and what it says about itself.
    async fn health(&self) -> Result<StoreHealth, MemoryError>;
}

#[cfg(test)]
fn _object_safe(_: &dyn MemoryStore, _: std::sync::Arc<dyn MemoryStore>) {}
