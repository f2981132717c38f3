//! The hash chain: [`AuditLog`] seals entries, [`verify`] checks a stored chain and
//! says where it breaks.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{AuditEntry, AuditError, canonical};
use crate::clock::Timestamp;
use crate::digest::{Digest, Sha256};

/// What every hash starts with: names the encoding, so that a future one can never
/// verify an old chain by accident.
const DOMAIN: &[u8] = b"concord.audit.v1";

/// Where a chain ends: the last entry's sequence number and hash. What a log resumes
/// from after a restart ([`AuditLog::resume`]) and what [`verify`] checks a stored
/// chain against.
///
/// Keep a copy of the head somewhere an attacker cannot write as well (another store,
/// a signed message, a printed report): a hash chain shows that entries were changed,
/// dropped, inserted or reordered, but whoever can rewrite the last entry, or every
/// entry from one on, can seal them again; only a head kept apart shows that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChainHead {
    /// The last entry's sequence number (0 before the first).
    pub seq: u64,
    /// The last entry's hash ([`Digest::ZERO`] before the first).
    pub hash: Digest,
}

impl ChainHead {
    /// The head of an empty chain: the first entry is `#1` and names
    /// [`Digest::ZERO`] as its predecessor.
    pub const GENESIS: ChainHead = ChainHead {
        seq: 0,
        hash: Digest::ZERO,
    };

    /// The head after the entry `seq` whose hash is `hash`.
    pub fn new(seq: u64, hash: Digest) -> Self {
        ChainHead { seq, hash }
    }
}

/// An [`AuditEntry`] sealed into the chain: its place, its time, its predecessor's
/// hash and its own.
///
/// `hash` is SHA-256 over a fixed domain tag, `seq` and `at` (eight bytes each,
/// little-endian; `at` in nanoseconds), `prev`, and the entry's canonical bytes (a
/// small deterministic encoding of its serde data, described in the crate's source,
/// `src/audit/canonical.rs`). So the hash is a function of the entry's value, not of
/// how the host stored it: any format that gives back the same value verifies. One
/// that does not (a JSON reader that rounds floats, in the events an
/// [`AuditEntry::Evidence`] keeps) makes the entry read as modified: store the
/// entries as the journal's records (serde_json with its `float_roundtrip` feature,
/// or a binary format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SealedEntry {
    /// Its sequence number, from 1, one more than its predecessor's.
    pub seq: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// Its predecessor's hash ([`Digest::ZERO`] for the first entry).
    pub prev: Digest,
    /// Its hash.
    pub hash: Digest,
    /// What it records.
    pub entry: AuditEntry,
}

impl SealedEntry {
    fn seal(seq: u64, at: Timestamp, prev: Digest, entry: AuditEntry) -> Self {
        let hash = hash_of(seq, at, &prev, &entry);
        SealedEntry {
            seq,
            at,
            prev,
            hash,
            entry,
        }
    }

    /// The hash its contents (`seq`, `at`, `prev`, `entry`) give: equal to `hash`
    /// unless it was changed after it was sealed.
    pub fn computed_hash(&self) -> Digest {
        hash_of(self.seq, self.at, &self.prev, &self.entry)
    }

    /// Whether its contents still give its hash.
    pub fn is_intact(&self) -> bool {
        self.computed_hash() == self.hash
    }

    /// The chain's head after this entry.
    pub fn head(&self) -> ChainHead {
        ChainHead::new(self.seq, self.hash)
    }
}

fn hash_of(seq: u64, at: Timestamp, prev: &Digest, entry: &AuditEntry) -> Digest {
    let mut h = Sha256::new();
    h.field(DOMAIN);
    h.update(&seq.to_le_bytes());
    h.update(&at.as_nanos().to_le_bytes());
    h.update(prev.as_bytes());
    h.field(&canonical::to_bytes(entry));
    h.finish()
}

/// How many recent entries an [`AuditLog`] keeps at hand after they are drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    recent: usize,
}

impl Default for AuditConfig {
    /// 1,024 recent entries.
    fn default() -> Self {
        AuditConfig { recent: 1024 }
    }
}

impl AuditConfig {
    /// Keeps the last `n` entries for [`AuditLog::recent`] (0 keeps none).
    pub fn with_recent(mut self, n: usize) -> Self {
        self.recent = n;
        self
    }

    /// How many recent entries are kept.
    pub fn recent(&self) -> usize {
        self.recent
    }
}

/// The tamper-evident audit log: append-only and hash-chained.
///
/// Sans-I/O, like the coordinator: [`append`](Self::append) seals an entry at the
/// time the host gives, and [`drain`](Self::drain) hands the sealed entries out for
/// the host to store, as the coordinator's events are. The log itself keeps only its
/// [`head`](Self::head), what has not been drained yet, and a bounded ring of the
/// most recent entries ([`AuditConfig::with_recent`]), so its memory stays bounded
/// however long it runs, as long as the host drains it. After a restart,
/// [`resume`](Self::resume) from the last stored entry's head continues the same
/// chain; [`verify`] checks what the host stored.
///
/// Times never go back: an entry appended with a `now` earlier than the latest
/// time the log has seen is sealed at that latest time, as the alert manager's
/// clock never goes back. The log clamps rather than refuses (as the coordinator
/// refuses a time gone back) because it is a record, not a scheduler: an entry it
/// refused would be missing from the trail, and a host feeds it from several
/// sources (the coordinator's events, the alert manager's notifications, people's
/// notes) whose times need not interleave. So an entry's time is never before the
/// one before it, and an incident never closes before it opened. The chain's order
/// is still its sequence numbers: a clock stepped back cannot reorder it.
///
/// # Complexity
/// `append` hashes the entry's canonical bytes: time linear in the entry's size
/// (one SHA-256 pass), and one allocation for the bytes.
///
/// ```
/// use concord::audit::{verify, AuditConfig, AuditEntry, AuditLog, ChainHead};
/// use concord::Timestamp;
///
/// let mut log = AuditLog::new(AuditConfig::default());
/// log.append(AuditEntry::note("ada", "maintenance window opened"), Timestamp::from_secs(60));
/// log.append(AuditEntry::note("ada", "maintenance window closed"), Timestamp::from_secs(120));
/// let stored: Vec<_> = log.drain().collect(); // into the host's own store
/// assert_eq!(verify(&stored, Some(ChainHead::GENESIS))?, log.head());
///
/// // After a restart: continue the chain from the last entry stored.
/// let mut log = AuditLog::resume(stored.last().unwrap().head(), AuditConfig::default())?;
/// assert_eq!(log.append(AuditEntry::note("ada", "back"), Timestamp::from_secs(180)).seq, 3);
/// # Ok::<(), concord::audit::AuditError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AuditLog {
    head: ChainHead,
    /// The latest time sealed: no entry is sealed before it.
    latest: Timestamp,
    pending: Vec<SealedEntry>,
    recent: VecDeque<SealedEntry>,
    config: AuditConfig,
}

impl AuditLog {
    /// A log with no entries: the first is `#1`.
    pub fn new(config: AuditConfig) -> Self {
        AuditLog {
            head: ChainHead::GENESIS,
            latest: Timestamp::EPOCH,
            pending: Vec::new(),
            recent: VecDeque::new(),
            config,
        }
    }

    /// A log that continues the chain ending at `head` (the last stored entry's
    /// [`SealedEntry::head`]): its next entry is `head.seq + 1` and names `head.hash`
    /// as its predecessor.
    ///
    /// A head holds no time, so the log does not know when the last entry was
    /// sealed, and its first entry is sealed at the time given, even one before the
    /// last stored entry's. [`resume_after`](Self::resume_after) the last stored
    /// entry itself keeps times from going back across the restart.
    ///
    /// # Errors
    /// [`AuditError::HeadOutOfRange`] when `head.seq` is at or past 2⁶³: no log writes
    /// that many entries, so the head is corrupt (and a sequence number must never
    /// wrap).
    pub fn resume(head: ChainHead, config: AuditConfig) -> Result<Self, AuditError> {
        if head.seq >= 1 << 63 {
            return Err(AuditError::HeadOutOfRange { seq: head.seq });
        }
        Ok(AuditLog {
            head,
            ..AuditLog::new(config)
        })
    }

    /// A log that continues the chain after `last`, the last entry stored: as
    /// [`resume`](Self::resume) from its head, and no later entry is sealed before
    /// `last.at` (see the type's docs).
    ///
    /// # Errors
    /// [`AuditError::HeadOutOfRange`], as [`resume`](Self::resume).
    pub fn resume_after(last: &SealedEntry, config: AuditConfig) -> Result<Self, AuditError> {
        let mut log = AuditLog::resume(last.head(), config)?;
        log.latest = last.at;
        Ok(log)
    }

    /// The latest time an entry was sealed at ([`Timestamp::EPOCH`] before the
    /// first, or after a [`resume`](Self::resume) from a head): the earliest time
    /// the next entry can be sealed at.
    pub fn latest(&self) -> Timestamp {
        self.latest
    }

    /// Where the chain ends now (drained entries included).
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The configuration.
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Seals `entry` as the next in the chain, recorded at `now`, and returns it.
    /// A `now` earlier than [`latest`](Self::latest) counts as `latest`: times in the
    /// chain never go back (see the type's docs).
    pub fn append(&mut self, entry: AuditEntry, now: Timestamp) -> &SealedEntry {
        let seq = self.head.seq + 1;
        if now < self.latest {
            tracing::debug!(
                audit.seq = seq,
                audit.now = %now,
                audit.latest = %self.latest,
                "time went back: audit entry sealed at the latest time seen"
            );
        }
        let at = now.max(self.latest);
        self.latest = at;
        let sealed = SealedEntry::seal(seq, at, self.head.hash, entry);
        tracing::debug!(
            audit.seq = seq,
            audit.kind = sealed.entry.kind(),
            "audit entry sealed"
        );
        self.head = sealed.head();
        if self.config.recent > 0 {
            if self.recent.len() == self.config.recent {
                self.recent.pop_front();
            }
            self.recent.push_back(sealed.clone());
        }
        self.pending.push(sealed);
        &self.pending[self.pending.len() - 1]
    }

    /// The sealed entries not drained yet, oldest first.
    pub fn pending(&self) -> &[SealedEntry] {
        &self.pending
    }

    /// Hands out the sealed entries not drained yet, oldest first, for the host to
    /// store. Store them in order and before the next restart: an entry drained and
    /// lost is a gap [`verify`] reports.
    pub fn drain(&mut self) -> std::vec::Drain<'_, SealedEntry> {
        self.pending.drain(..)
    }

    /// The most recent entries (at most [`AuditConfig::recent`]), oldest first,
    /// drained or not. Empty after a restart until new entries are appended.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &SealedEntry> + ExactSizeIterator {
        self.recent.iter()
    }
}

/// Checks a stored chain: that every entry's contents give its hash, that sequence
/// numbers run on by one, and that each entry names its predecessor's hash. Returns
/// the head after the last entry (the anchor's, or [`ChainHead::GENESIS`], when there
/// are none), to compare with a head kept elsewhere or to verify the next stretch
/// from.
///
/// `anchor` is the head just before `entries[0]`: [`ChainHead::GENESIS`] for a whole
/// chain, the head returned for the stretch before, or `None` to check only the links
/// within `entries` (the first entry's place is then taken on trust, so a dropped
/// first entry goes unnoticed).
///
/// # Errors
/// The first break in chain order, with the index and sequence number of the entry
/// where it shows:
/// - [`AuditError::Modified`]: the entry's contents do not give its hash (edited in
///   place, or forged without computing its hash);
/// - [`AuditError::Missing`]: entries were dropped before it;
/// - [`AuditError::Reordered`]: it is out of place, and the entry due there comes
///   later;
/// - [`AuditError::Inserted`]: its sequence number was already used, or it claims the
///   place of the entry the chain goes on from;
/// - [`AuditError::Forked`]: two entries claim the last place, and nothing tells
///   which is genuine;
/// - [`AuditError::BrokenLink`]: it does not name its predecessor's hash (one of the
///   two was rewritten and sealed again).
///
/// Times are not checked against each other: each is covered by its entry's hash,
/// so none was changed after it was sealed, and a genuine chain may go back in time
/// where a log was [resumed](AuditLog::resume) from a head, which holds no time (or
/// where it was sealed before the log clamped times).
///
/// What no chain can show on its own: entries cut from the end, or the last entries
/// rewritten and sealed again. Compare the returned head with one kept apart (see
/// [`ChainHead`]).
///
/// # Complexity
/// One hash per entry (linear in the entries' size); when a break is found, one more
/// pass over the rest of the slice to tell a drop from a reordering. No allocation
/// but each entry's canonical bytes. Never panics, whatever the entries hold.
pub fn verify(entries: &[SealedEntry], anchor: Option<ChainHead>) -> Result<ChainHead, AuditError> {
    // The head the next entry must continue, and the predecessor the last accepted
    // entry named (to recognise a second entry claiming the same place).
    let mut head = match (anchor, entries.first()) {
        (Some(anchor), _) => anchor,
        (None, Some(first)) => ChainHead::new(first.seq.wrapping_sub(1), first.prev),
        (None, None) => return Ok(ChainHead::GENESIS),
    };
    let mut last_prev: Option<Digest> = None;
    for (index, e) in entries.iter().enumerate() {
        let computed = e.computed_hash();
        if computed != e.hash {
            return Err(AuditError::Modified {
                index,
                seq: e.seq,
                recorded: e.hash,
                computed,
            });
        }
        let expected = head.seq.checked_add(1);
        if Some(e.seq) == expected && e.prev == head.hash {
            last_prev = Some(e.prev);
            head = e.head();
            continue;
        }
        return Err(classify(entries, index, head, last_prev));
    }
    Ok(head)
}

/// Says what the break at `index` is, given the head before it and the predecessor the
/// entry before it named.
fn classify(
    entries: &[SealedEntry],
    index: usize,
    head: ChainHead,
    last_prev: Option<Digest>,
) -> AuditError {
    let e = &entries[index];
    let Some(expected) = head.seq.checked_add(1) else {
        // The chain before ended at the last sequence number: nothing can follow it.
        return AuditError::Inserted { index, seq: e.seq };
    };
    if e.seq == expected {
        return AuditError::BrokenLink {
            index,
            seq: e.seq,
            expected: head.hash,
            found: e.prev,
        };
    }
    let later = &entries[index + 1..];
    if e.seq > expected {
        let due_at = later.iter().position(|l| l.seq == expected);
        let repeated = later.iter().any(|l| l.seq == e.seq);
        return match due_at {
            // Due later, and there it is too: this one is a copy.
            Some(_) if repeated => AuditError::Inserted { index, seq: e.seq },
            Some(at) => AuditError::Reordered {
                index,
                found: e.seq,
                expected,
                expected_at: index + 1 + at,
            },
            None => AuditError::Missing {
                index,
                expected,
                found: e.seq,
            },
        };
    }
    // A sequence number already used. The same entry twice: this is the copy.
    if e.seq == head.seq && e.hash == head.hash {
        return AuditError::Inserted { index, seq: e.seq };
    }
    // Another entry in the place of the one just accepted (same number, same
    // predecessor): one of the two was forged, and the chain goes on from the one the
    // next entry names.
    if index > 0 && e.seq == head.seq && last_prev == Some(e.prev) {
        return match later.first() {
            Some(next) if next.prev == e.hash => AuditError::Inserted {
                index: index - 1,
                seq: e.seq,
            },
            Some(_) => AuditError::Inserted { index, seq: e.seq },
            None => AuditError::Forked {
                seq: e.seq,
                first: index - 1,
                second: index,
            },
        };
    }
    AuditError::Inserted { index, seq: e.seq }
}
