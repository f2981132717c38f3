//! Errors of the `memory` domain.

use std::fmt;

use crate::digest::Digest;

use super::backup::BackupId;
use super::integrity::{CorruptEntry, IntegrityReport};

/// The longest prefix of a refused key or pattern an error keeps: a hostile megabyte
/// key must not become a megabyte error message.
const SHOWN: usize = 80;

/// `s`, cut to [`SHOWN`] characters with an ellipsis when longer.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// Why a memory operation was refused or failed.
///
/// Every variant names the key, pattern or backup it is about. A refused operation
/// changes nothing: not the store, not the guard's checksums.
///
/// ```
/// use concord::memory::{InMemoryStore, Memory, MemoryError};
/// use concord::Timestamp;
/// use futures::executor::block_on;
///
/// let memory = Memory::new(std::sync::Arc::new(InMemoryStore::new()));
/// block_on(memory.fence("memory corruption drill", Timestamp::from_secs(60)));
/// let refused = block_on(memory.put("deploy/web/status", b"green".to_vec())).unwrap_err();
/// assert_eq!(
///     refused.to_string(),
///     "write to `deploy/web/status` refused: memory writes are stopped (memory corruption drill)"
/// );
/// assert!(matches!(refused, MemoryError::Fenced { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A key is empty, too long or holds a control or invisible character.
    #[error("invalid memory key {key:?}: {problem}")]
    InvalidKey {
        /// The key (its first 80 characters).
        key: String,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// A query pattern is empty, too long, holds a control character or ends in a
    /// lone escape.
    #[error("invalid memory pattern {pattern:?}: {problem}")]
    InvalidPattern {
        /// The pattern (its first 80 characters).
        pattern: String,
        /// What is wrong with it.
        problem: PatternProblem,
    },
    /// A write (put or delete) came while memory writes are stopped.
    #[error("write to `{key}` refused: memory writes are stopped ({reason})")]
    Fenced {
        /// The key the write was for.
        key: String,
        /// Why writes are stopped, as given to [`Memory::fence`](super::Memory::fence).
        reason: String,
    },
    /// A value read back does not match the checksum the guard recorded when it was
    /// written (or is there when it should not be, or gone when it should be there):
    /// the guard refuses to hand corrupt data to an agent.
    #[error("corrupt memory entry: {0}")]
    Corrupt(CorruptEntry),
    /// A backup failed its checksums, so it was not loaded: the live store is as it
    /// was.
    #[error("{id} is corrupt and was not loaded: {damage}")]
    CorruptBackup {
        /// The backup, as it names itself (a tampered backup may lie about this too).
        id: BackupId,
        /// Where the damage is.
        damage: BackupDamage,
    },
    /// A backup is intact but was taken while some of its entries were already
    /// corrupt ([`Backup::suspect`](super::Backup::suspect)): evidence, not a state to
    /// restore, so it was not loaded.
    #[error(
        "backup {id} holds {count} entries that were corrupt when it was taken (first: `{first}`), so it was not loaded"
    )]
    SuspectBackup {
        /// The backup.
        id: BackupId,
        /// How many of its keys were suspect.
        count: usize,
        /// The first of them (its first 80 characters).
        first: String,
    },
    /// The store to switch to does not hold what the guard knows memory holds, so the
    /// guard did not switch to it.
    #[error(
        "the standby store differs from memory at {} keys (first: {}), so it was not switched to",
        report.corrupt().len(),
        report.corrupt().first().map_or_else(|| "none".to_owned(), ToString::to_string)
    )]
    StandbyDiverges {
        /// Where the standby differs.
        report: Box<IntegrityReport>,
    },
    /// A [`MemorySnapshot`](super::MemorySnapshot) is not one the guard can resume
    /// from: another version, an invalid key, counts that do not add up. Nothing was
    /// built from it.
    #[error("corrupt memory snapshot: {reason}")]
    CorruptSnapshot {
        /// What is wrong.
        reason: String,
    },
    /// Every backup id has been used: a backup has had the id `u64::MAX` (reached
    /// only through [`Memory::with_next_backup_id`](super::Memory::with_next_backup_id)
    /// or a resumed snapshot), and ids never wrap. Nothing was backed up.
    #[error("no backup id is left: {last} was the last one")]
    BackupIdsExhausted {
        /// The last id issued.
        last: BackupId,
    },
    /// The host's store failed (unreachable, timed out, full, refused).
    #[error("memory store failed: {reason}")]
    Store {
        /// What the store reported.
        reason: String,
    },
}

impl MemoryError {
    /// A [`MemoryError::Store`] for `reason`: how a host's [`MemoryStore`](super::MemoryStore)
    /// reports its own failures.
    pub fn store(reason: impl Into<String>) -> Self {
        MemoryError::Store {
            reason: reason.into(),
        }
    }
}

/// What is wrong with a memory key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The key is empty.
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`](super::MAX_KEY_LEN) bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The key holds a control character (a newline, a NUL, an escape) or an
    /// invisible one (a zero-width space, a bidi override, a line separator, a
    /// variation selector: what no name may hold, see
    /// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN)). The key, quoted in the error,
    /// shows it escaped (`\u{200b}`).
    ControlCharacter {
        /// The character's byte offset in the key.
        at: usize,
    },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("it is empty"),
            KeyProblem::TooLong { len } => write!(
                f,
                "it is {len} bytes long, more than {}",
                super::MAX_KEY_LEN
            ),
            KeyProblem::ControlCharacter { at } => {
                write!(f, "it holds a control or invisible character at byte {at}")
            }
        }
    }
}

/// What is wrong with a query pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternProblem {
    /// The pattern is empty.
    Empty,
    /// The pattern is longer than [`MAX_PATTERN_LEN`](super::MAX_PATTERN_LEN) bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The pattern holds a control character (as for
    /// [`KeyProblem::ControlCharacter`]; an invisible one is taken, see
    /// [`Pattern`](super::Pattern)).
    ControlCharacter {
        /// The character's byte offset in the pattern.
        at: usize,
    },
    /// The pattern ends in a `\` that escapes nothing.
    DanglingEscape,
}

impl fmt::Display for PatternProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternProblem::Empty => f.write_str("it is empty"),
            PatternProblem::TooLong { len } => write!(
                f,
                "it is {len} bytes long, more than {}",
                super::MAX_PATTERN_LEN
            ),
            PatternProblem::ControlCharacter { at } => {
                write!(f, "it holds a control character at byte {at}")
            }
            PatternProblem::DanglingEscape => f.write_str("it ends in a lone `\\`"),
        }
    }
}

/// Where a backup is damaged: what [`Backup::verify`](super::Backup::verify) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupDamage {
    /// An entry's value does not match the entry's own digest: that entry was altered.
    EntryAltered {
        /// The entry's key (its first 80 characters).
        key: String,
    },
    /// An entry's key is invalid.
    InvalidKey {
        /// The key (its first 80 characters).
        key: String,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// Entries are out of key order or a key appears twice: the backup was edited.
    OutOfOrder {
        /// The first key out of place (its first 80 characters).
        key: String,
    },
    /// The checksum over the whole backup (its id, time, keys, entry digests and
    /// suspect keys) does not match: entries were added, removed or renamed, the
    /// backup was truncated, or its metadata changed.
    ChecksumMismatch {
        /// The checksum the backup carries.
        recorded: Digest,
        /// The checksum of what it holds.
        computed: Digest,
    },
}

impl fmt::Display for BackupDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupDamage::EntryAltered { key } => {
                write!(f, "the value of `{key}` does not match its digest")
            }
            BackupDamage::InvalidKey { key, problem } => {
                write!(f, "invalid key {key:?}: {problem}")
            }
            BackupDamage::OutOfOrder { key } => {
                write!(f, "entry `{key}` is out of order or repeated")
            }
            BackupDamage::ChecksumMismatch { recorded, computed } => write!(
                f,
                "checksum {} recorded, {} computed",
                recorded.short(),
                computed.short()
            ),
        }
    }
}
