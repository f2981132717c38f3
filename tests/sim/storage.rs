//! The simulated disk under the coordinator's journal: records are stored as bytes
//! (JSON with a checksum, as a host's file or table would hold them) and become
//! durable only when synced. When the power goes, the records not synced are lost,
//! all or from some point on, and the last one kept may be torn: its bytes no longer
//! match their checksum.
//!
//! It also says how far the journal is durable in the coordinator's events (the last
//! event of the last synced record): the host audits an event only once its record is
//! durable (see `audit.rs`).

use concord::coordinator::{CoordinatorSnapshot, Journal, JournalError, Record};

use super::{Fnv, Rng};

#[derive(Debug, Clone)]
struct Stored {
    checksum: u64,
    bytes: String,
}

fn checksum(bytes: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes.as_bytes());
    h.0
}

/// What one power loss did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// Records not synced that were lost.
    pub lost: u64,
    /// Whether the last record kept was torn.
    pub torn: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    /// The number of the first record kept.
    first: u64,
    records: Vec<Stored>,
    /// For each of `records`, the last event seq it or a record before it holds: what
    /// a host knows of a record it wrote without reading it back.
    events_through: Vec<u64>,
    /// The same, for the records cut by [`compact`](Self::compact).
    compacted_through: u64,
    /// How many of `records` are durable.
    synced: usize,
    checkpoint: Option<Stored>,
}

impl SimStorage {
    pub fn new() -> Self {
        SimStorage {
            first: 1,
            ..SimStorage::default()
        }
    }

    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    /// The last event of the durable records: what recovery will replay up to.
    pub fn durable_events(&self) -> u64 {
        match self.synced {
            0 => self.compacted_through,
            n => self.events_through[n - 1],
        }
    }

    /// The disk flushes what it was given.
    pub fn sync(&mut self) {
        self.synced = self.records.len();
    }

    /// The power goes: what was not synced is lost, all or from a random point on;
    /// the last record kept of those may be torn.
    pub fn lose_power(&mut self, rng: &mut Rng) -> Loss {
        let unsynced = self.records.len() - self.synced;
        if unsynced == 0 {
            return Loss::default();
        }
        let keep = rng.below(unsynced as u64 + 1) as usize;
        self.records.truncate(self.synced + keep);
        self.events_through.truncate(self.synced + keep);
        let torn = keep > 0 && rng.chance(30);
        if torn {
            if let Some(last) = self.records.last_mut() {
                // Half the record reached the disk.
                let half = last.bytes.len() / 2;
                last.bytes.truncate(half);
            }
        }
        self.synced = self.records.len();
        Loss {
            lost: (unsynced - keep) as u64,
            torn,
        }
    }

    /// Cuts the synced records the checkpoint already counts; returns how many.
    pub fn compact(&mut self) -> usize {
        let Some(next) = self
            .load_checkpoint()
            .ok()
            .flatten()
            .map(|c| c.journal_next)
        else {
            return 0;
        };
        let cut = (next.saturating_sub(self.first) as usize).min(self.synced);
        self.records.drain(..cut);
        if let Some(last) = self.events_through.drain(..cut).next_back() {
            self.compacted_through = last;
        }
        self.synced -= cut;
        self.first += cut as u64;
        cut
    }

    /// The host cuts a torn tail off before it appends again.
    pub fn truncate(&mut self, from: u64) {
        let keep = from.saturating_sub(self.first) as usize;
        self.records.truncate(keep);
        self.events_through.truncate(keep);
        self.synced = self.synced.min(self.records.len());
    }
}

impl Journal for SimStorage {
    fn append(&mut self, expected: u64, records: &[Record]) -> Result<(), JournalError> {
        if expected != self.next() {
            return Err(JournalError::Conflict {
                expected,
                actual: self.next(),
            });
        }
        for (seq, r) in (expected..).zip(records) {
            if r.seq != seq {
                return Err(JournalError::Gap {
                    expected: seq,
                    found: r.seq,
                });
            }
        }
        for r in records {
            let bytes = serde_json::to_string(r).map_err(|e| JournalError::Storage {
                reason: e.to_string(),
            })?;
            self.records.push(Stored {
                checksum: checksum(&bytes),
                bytes,
            });
            let before = self
                .events_through
                .last()
                .copied()
                .unwrap_or(self.compacted_through);
            let through = r.events.last().map_or(before, |e| e.seq.max(before));
            self.events_through.push(through);
        }
        Ok(())
    }

    fn read_from(&self, from: u64, out: &mut Vec<Record>) -> Result<(), JournalError> {
        let skip = from.saturating_sub(self.first) as usize;
        for (seq, stored) in (self.first..).zip(&self.records).skip(skip) {
            let corrupt = |reason: String| JournalError::CorruptRecord { seq, reason };
            if checksum(&stored.bytes) != stored.checksum {
                return Err(corrupt("checksum mismatch".into()));
            }
            let record: Record =
                serde_json::from_str(&stored.bytes).map_err(|e| corrupt(e.to_string()))?;
            out.push(record);
        }
        Ok(())
    }

    fn store_checkpoint(&mut self, checkpoint: &CoordinatorSnapshot) -> Result<(), JournalError> {
        if checkpoint.journal_next > self.next() {
            return Err(JournalError::Gap {
                expected: self.next(),
                found: checkpoint.journal_next,
            });
        }
        // The records the checkpoint counts must outlive it: sync them first, then
        // write the checkpoint aside and rename it into place (atomic).
        self.sync();
        let bytes = serde_json::to_string(checkpoint).map_err(|e| JournalError::Storage {
            reason: e.to_string(),
        })?;
        self.checkpoint = Some(Stored {
            checksum: checksum(&bytes),
            bytes,
        });
        Ok(())
    }

    fn load_checkpoint(&self) -> Result<Option<CoordinatorSnapshot>, JournalError> {
        let Some(stored) = &self.checkpoint else {
            return Ok(None);
        };
        let corrupt = |reason: String| JournalError::CorruptCheckpoint { reason };
        if checksum(&stored.bytes) != stored.checksum {
            return Err(corrupt("checksum mismatch".into()));
        }
        serde_json::from_str(&stored.bytes)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }
}
