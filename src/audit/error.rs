//! [`AuditError`]: a chain that does not verify, and what the audit domain refuses.

use super::IncidentId;
use crate::digest::Digest;

/// An error from the audit domain: where a chain of sealed entries breaks (each
/// variant names the entry's index in the slice given to [`verify`](super::verify)
/// and its sequence number), or an operation refused. A log or tracker that returned
/// it is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The entry's contents do not hash to its recorded hash: it was edited after it
    /// was sealed (or forged without its hash).
    #[error(
        "entry #{seq} (index {index}) was modified: its contents hash to {computed}, not {recorded}"
    )]
    Modified {
        /// Its index in the slice.
        index: usize,
        /// Its sequence number, as recorded.
        seq: u64,
        /// The hash it records.
        recorded: Digest,
        /// The hash of its contents.
        computed: Digest,
    },
    /// Entries are missing: the entry at `index` is `found` where `expected` was due,
    /// and `expected` appears nowhere after it (entries `expected..found` were
    /// dropped).
    #[error("{} missing before index {index}, which holds #{found}", missing(*expected, *found))]
    Missing {
        /// The index where they should have been.
        index: usize,
        /// The first missing sequence number.
        expected: u64,
        /// The sequence number found instead.
        found: u64,
    },
    /// The entry at `index` is out of order: `found` sits where `expected` was due,
    /// and `expected` comes later, at `expected_at`.
    #[error(
        "entries are out of order at index {index}: #{found} where #{expected} was due (found at index {expected_at})"
    )]
    Reordered {
        /// The index of the first entry out of place.
        index: usize,
        /// The sequence number found there.
        found: u64,
        /// The sequence number due there.
        expected: u64,
        /// Where the entry due there is.
        expected_at: usize,
    },
    /// The entry at `index` is not part of the chain: its sequence number was already
    /// used (a copy, or an entry from elsewhere), or it claims the place of the entry
    /// the chain goes on from.
    #[error("entry #{seq} at index {index} was inserted: the chain does not go through it")]
    Inserted {
        /// Its index in the slice.
        index: usize,
        /// The sequence number it claims.
        seq: u64,
    },
    /// Two entries claim the same place (sequence number and predecessor) and nothing
    /// after them tells which the chain goes on from: one of them was forged. Only at
    /// the end of a slice; compare the head with one kept elsewhere.
    #[error("entries at indices {first} and {second} both claim to be #{seq}: one was forged")]
    Forked {
        /// The sequence number both claim.
        seq: u64,
        /// The first one's index.
        first: usize,
        /// The second one's index.
        second: usize,
    },
    /// The entry at `index` has the right sequence number but does not name the hash
    /// of the entry before it (or of the anchor, for the first): that one or this one
    /// was rewritten and sealed again.
    #[error(
        "entry #{seq} at index {index} does not follow the entry before it: it names {found} as its predecessor, not {expected}"
    )]
    BrokenLink {
        /// Its index in the slice.
        index: usize,
        /// Its sequence number.
        seq: u64,
        /// The hash of the entry before it (or the anchor's).
        expected: Digest,
        /// The predecessor it names.
        found: Digest,
    },
    /// A chain head to resume from is past any chain a log could have written: it is
    /// corrupt.
    #[error("cannot resume the audit log after entry #{seq}: no log has that many entries")]
    HeadOutOfRange {
        /// The head's sequence number.
        seq: u64,
    },
    /// No incident with this id is tracked (never opened, or closed and forgotten).
    #[error("no {incident} is tracked")]
    UnknownIncident {
        /// The id.
        incident: IncidentId,
    },
    /// The incident is already closed.
    #[error("{incident} is already closed")]
    IncidentClosed {
        /// The id.
        incident: IncidentId,
    },
    /// The audit log is behind the incident tracker: its head is `head`, before the
    /// last entry the tracker has seen (`last_seq`), so the entry the call would
    /// append is numbered at or before one the tracker already holds. The tracker
    /// would ignore it as a replay, and the call would return the id of another
    /// incident, or close nothing and say it had. It happens when the log resumes
    /// from a head stored before the tracker's snapshot was taken (the entries
    /// between were lost undrained): rebuild the tracker from the stored entries, or
    /// restore a snapshot taken at or before the log's head.
    #[error(
        "the audit log's head is #{head}, behind the last entry the incident tracker has seen (#{last_seq})"
    )]
    LogBehind {
        /// The log's head's sequence number.
        head: u64,
        /// The last entry the tracker has seen.
        last_seq: u64,
    },
    /// An [`IncidentsSnapshot`](super::IncidentsSnapshot) holds an incident opened,
    /// or an entry on an incident's timeline, past the last audit entry it says it
    /// has seen (`seq` is the incident's own id when the incident itself is past it):
    /// it was paired with another log, or edited. Restored, the tracker would see
    /// that entry again, and open a second incident under an id already taken.
    #[error(
        "{incident} holds entry #{seq}, past the last audit entry the snapshot has seen (#{last_seq})"
    )]
    IncidentPastLastSeq {
        /// The incident.
        incident: IncidentId,
        /// The entry's sequence number.
        seq: u64,
        /// The last entry the snapshot says it has seen.
        last_seq: u64,
    },
    /// An [`IncidentsSnapshot`](super::IncidentsSnapshot) keeps, for the lookback,
    /// an entry past the last audit entry it says it has seen: the tracker would keep
    /// it twice once the log reaches it.
    #[error(
        "lookback entry #{seq} is past the last audit entry the snapshot has seen (#{last_seq})"
    )]
    LookbackPastLastSeq {
        /// The entry's sequence number.
        seq: u64,
        /// The last entry the snapshot says it has seen.
        last_seq: u64,
    },
    /// An [`IncidentsSnapshot`](super::IncidentsSnapshot) lists one incident twice
    /// (in one list or across both): which record is right cannot be told.
    #[error("{incident} is listed twice in the incidents snapshot")]
    DuplicateIncident {
        /// The id.
        incident: IncidentId,
    },
}

/// "entry #2 is" or "entries #2..#5 are".
fn missing(expected: u64, found: u64) -> String {
    let last = found.saturating_sub(1);
    if last <= expected {
        format!("entry #{expected} is")
    } else {
        format!("entries #{expected}..#{last} are")
    }
}

impl AuditError {
    /// The index in the slice where the chain breaks, for the chain errors.
    pub fn index(&self) -> Option<usize> {
        match self {
            AuditError::Modified { index, .. }
            | AuditError::Missing { index, .. }
            | AuditError::Reordered { index, .. }
            | AuditError::Inserted { index, .. }
            | AuditError::BrokenLink { index, .. } => Some(*index),
            AuditError::Forked { second, .. } => Some(*second),
            _ => None,
        }
    }
}
