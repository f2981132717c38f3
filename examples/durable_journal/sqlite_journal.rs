//! [`SqliteJournal`]: the coordinator's [`Journal`] and its checkpoint in SQLite, with
//! the workflow runs' own checkpoints beside them in the same database.
//!
//! Shared by `examples/durable_journal` and `tests/durable_journal.rs` (which includes
//! this file with `#[path]`), so that the crash test runs the very code the example
//! shows.
//!
//! # Schema
//!
//! - `journal_records(seq INTEGER PRIMARY KEY, bytes BLOB, checksum BLOB)`: one row
//!   per [`Record`], as serde_json (with its `float_roundtrip` feature, which the
//!   [`Journal`] contract asks for), and the SHA-256 of those bytes.
//! - `journal_checkpoint(id = 1, journal_next, bytes, checksum)`: the last checkpoint.
//! - `run_checkpoints(run TEXT PRIMARY KEY, bytes, checksum)`: each run's
//!   [`RunSnapshot`], the executor's half of the state (the coordinator's journal does
//!   not hold the runs).
//!
//! A row whose checksum does not match its bytes, whose bytes do not decode, or that
//! holds another record than its key says comes back as
//! [`JournalError::CorruptRecord`] (or [`JournalError::CorruptCheckpoint`]): SQLite's
//! transactions already make torn writes impossible, so what the checksum catches is
//! damage after the fact (a disk that flipped a bit, a hand-edited row).
//!
//! # Durability and compare-and-set
//!
//! - **WAL mode.** A commit appends the transaction's pages to the write-ahead log and
//!   ends with a commit frame; a process killed in the middle of an append leaves
//!   frames without one, which the next open ignores. So an append is all of its
//!   records or none, whatever the moment of the crash, and readers never wait for
//!   the writer.
//! - **`synchronous = FULL`.** The log is synced to disk at every commit, so an append
//!   that returned survives a power cut too, which is what
//!   [`Core::write_journal`](concord::coordinator::Core::write_journal) promises the
//!   host: a command acknowledged after the journal took it is never lost. `NORMAL`
//!   (the usual WAL setting) survives a killed process but may lose the last commits
//!   when the machine loses power.
//! - **One `IMMEDIATE` transaction per append.** It takes the database's write lock
//!   before reading where the journal ends, so two writers (two connections, two
//!   processes) are serialized: the second one reads the end the first left and is
//!   refused with [`JournalError::Conflict`]. The primary key on `seq` would refuse a
//!   duplicate number anyway.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use concord::coordinator::{CoordinatorSnapshot, Journal, JournalError, Record};
use concord::digest::Digest;
use concord::workflow::RunSnapshot;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal_records (
    seq      INTEGER PRIMARY KEY,
    bytes    BLOB NOT NULL,
    checksum BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_checkpoint (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    journal_next INTEGER NOT NULL,
    bytes        BLOB NOT NULL,
    checksum     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS run_checkpoints (
    run      TEXT PRIMARY KEY,
    bytes    BLOB NOT NULL,
    checksum BLOB NOT NULL
);
";

/// The number the next record gets: after the last record kept, and never before
/// the checkpoint's (a host that deletes the records a checkpoint holds keeps
/// numbering right).
const NEXT_SEQ: &str = "SELECT MAX(
    COALESCE((SELECT MAX(seq) FROM journal_records), 0) + 1,
    COALESCE((SELECT journal_next FROM journal_checkpoint WHERE id = 1), 1))";

/// Where an append stands, for an [`AppendHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendProgress {
    /// The append's number in this connection's life, from 1.
    pub append: u64,
    /// The number of its first record.
    pub first: u64,
    /// Records inserted so far.
    pub inserted: usize,
    /// Records in the append.
    pub total: usize,
}

/// Called inside an append's transaction after each record is inserted, before the
/// commit: the seam the crash test uses to stop a process in the middle of an append.
pub type AppendHook = Box<dyn FnMut(AppendProgress) + Send>;

/// A [`Journal`] in a SQLite database (see the module docs for the schema and why it
/// is safe to kill the process at any point).
pub struct SqliteJournal {
    conn: Connection,
    appends: u64,
    hook: Option<AppendHook>,
}

impl fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.conn.path())
            .field("appends", &self.appends)
            .finish_non_exhaustive()
    }
}

fn storage(e: rusqlite::Error) -> JournalError {
    JournalError::Storage {
        reason: e.to_string(),
    }
}

fn to_sql(n: u64) -> Result<i64, JournalError> {
    i64::try_from(n).map_err(|_| JournalError::Storage {
        reason: format!("{n} does not fit SQLite's integers"),
    })
}

/// The bytes and checksum a value is stored as.
fn encode<T: serde::Serialize>(value: &T) -> Result<(Vec<u8>, Digest), JournalError> {
    let bytes = serde_json::to_vec(value).map_err(|e| JournalError::Storage {
        reason: format!("cannot encode: {e}"),
    })?;
    let sum = Digest::of(&bytes);
    Ok((bytes, sum))
}

/// The value stored as `bytes`, if `checksum` is theirs; else why not.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], checksum: &[u8]) -> Result<T, String> {
    if Digest::of(bytes).as_bytes()[..] != *checksum {
        return Err("checksum mismatch: the bytes are not those written".to_owned());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("does not decode: {e}"))
}

impl SqliteJournal {
    /// Opens (or creates) the journal in the database at `path`, in WAL mode with
    /// `synchronous = FULL`.
    ///
    /// # Errors
    /// [`JournalError::Storage`] if the database cannot be opened or set up.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let conn = Connection::open(path).map_err(storage)?;
        // Another connection (the agents' books, a second writer) may hold the write
        // lock for a moment: wait for it rather than fail.
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(storage)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(storage)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Storage {
                reason: format!("the database would not use WAL mode (it is in {mode} mode)"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        Ok(SqliteJournal {
            conn,
            appends: 0,
            hook: None,
        })
    }

    /// Calls `hook` inside every append's transaction (see [`AppendHook`]).
    pub fn set_append_hook(&mut self, hook: impl FnMut(AppendProgress) + Send + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Appends this connection made (refused ones included).
    pub fn appends(&self) -> u64 {
        self.appends
    }

    /// The number the next record appended gets.
    ///
    /// # Errors
    /// [`JournalError::Storage`].
    pub fn next_seq(&self) -> Result<u64, JournalError> {
        next_seq(&self.conn)
    }

    /// Stores `snapshot` as run `run`'s checkpoint, in place of the last one.
    ///
    /// Write the coordinator's journal first: a run's checkpoint must never be ahead
    /// of the coordinator's (a resumed run finds the tasks its checkpoint names in
    /// the coordinator, or learns they ended; see `Executor::resume`).
    ///
    /// # Errors
    /// [`JournalError::Storage`].
    pub fn store_run(&mut self, run: &str, snapshot: &RunSnapshot) -> Result<(), JournalError> {
        let (bytes, sum) = encode(snapshot)?;
        self.conn
            .execute(
                "INSERT INTO run_checkpoints (run, bytes, checksum) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run) DO UPDATE
                 SET bytes = excluded.bytes, checksum = excluded.checksum",
                params![run, bytes, &sum.as_bytes()[..]],
            )
            .map_err(storage)?;
        Ok(())
    }

    /// Every run's last checkpoint, by run id.
    ///
    /// # Errors
    /// [`JournalError::CorruptCheckpoint`] naming the first run whose checkpoint
    /// cannot be read; [`JournalError::Storage`].
    pub fn load_runs(&self) -> Result<BTreeMap<String, RunSnapshot>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT run, bytes, checksum FROM run_checkpoints ORDER BY run")
            .map_err(storage)?;
        let mut rows = stmt.query([]).map_err(storage)?;
        let mut runs = BTreeMap::new();
        while let Some(row) = rows.next().map_err(storage)? {
            let run: String = row.get(0).map_err(storage)?;
            let bytes: Vec<u8> = row.get(1).map_err(storage)?;
            let sum: Vec<u8> = row.get(2).map_err(storage)?;
            let snapshot: RunSnapshot =
                decode(&bytes, &sum).map_err(|reason| JournalError::CorruptCheckpoint {
                    reason: format!("run {run}: {reason}"),
                })?;
            runs.insert(run, snapshot);
        }
        Ok(runs)
    }
}

fn next_seq(conn: &Connection) -> Result<u64, JournalError> {
    let next: i64 = conn
        .query_row(NEXT_SEQ, [], |row| row.get(0))
        .map_err(storage)?;
    u64::try_from(next).map_err(|_| JournalError::Storage {
        reason: format!("the journal's next number is {next}"),
    })
}

impl Journal for SqliteJournal {
    fn append(&mut self, expected: u64, records: &[Record]) -> Result<(), JournalError> {
        // Encoded before the transaction: the write lock is held for the inserts only.
        let rows = records
            .iter()
            .map(|r| Ok((to_sql(r.seq)?, encode(r)?)))
            .collect::<Result<Vec<_>, JournalError>>()?;
        let SqliteJournal {
            conn,
            appends,
            hook,
        } = self;
        *appends += 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        // Dropping `tx` on any error below rolls the transaction back: nothing of
        // this append is kept.
        let actual = next_seq(&tx)?;
        if expected != actual {
            return Err(JournalError::Conflict { expected, actual });
        }
        if let Some((i, r)) = records
            .iter()
            .enumerate()
            .find(|(i, r)| r.seq != expected + *i as u64)
        {
            return Err(JournalError::Gap {
                expected: expected + i as u64,
                found: r.seq,
            });
        }
        {
            let mut insert = tx
                .prepare("INSERT INTO journal_records (seq, bytes, checksum) VALUES (?1, ?2, ?3)")
                .map_err(storage)?;
            for (i, (seq, (bytes, sum))) in rows.iter().enumerate() {
                insert
                    .execute(params![seq, bytes, &sum.as_bytes()[..]])
                    .map_err(storage)?;
                if let Some(hook) = hook.as_mut() {
                    hook(AppendProgress {
                        append: *appends,
                        first: expected,
                        inserted: i + 1,
                        total: rows.len(),
                    });
                }
            }
        }
        tx.commit().map_err(storage)
    }

    fn read_from(&self, from: u64, out: &mut Vec<Record>) -> Result<(), JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, bytes, checksum FROM journal_records WHERE seq >= ?1 ORDER BY seq",
            )
            .map_err(storage)?;
        // One statement reads one consistent state of the database, even while
        // another connection appends.
        let mut rows = stmt.query(params![to_sql(from)?]).map_err(storage)?;
        let mut expected = from.max(1);
        while let Some(row) = rows.next().map_err(storage)? {
            let seq: i64 = row.get(0).map_err(storage)?;
            let seq = u64::try_from(seq).map_err(|_| JournalError::CorruptRecord {
                seq: 0,
                reason: format!("a row is numbered {seq}"),
            })?;
            if seq != expected {
                return Err(JournalError::Gap {
                    expected,
                    found: seq,
                });
            }
            let bytes: Vec<u8> = row.get(1).map_err(storage)?;
            let sum: Vec<u8> = row.get(2).map_err(storage)?;
            let record: Record = decode(&bytes, &sum)
                .map_err(|reason| JournalError::CorruptRecord { seq, reason })?;
            if record.seq != seq {
                return Err(JournalError::CorruptRecord {
                    seq,
                    reason: format!("the row holds record {}", record.seq),
                });
            }
            out.push(record);
            expected += 1;
        }
        Ok(())
    }

    fn store_checkpoint(&mut self, checkpoint: &CoordinatorSnapshot) -> Result<(), JournalError> {
        let (bytes, sum) = encode(checkpoint)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let next = next_seq(&tx)?;
        if checkpoint.journal_next > next {
            return Err(JournalError::Gap {
                expected: next,
                found: checkpoint.journal_next,
            });
        }
        tx.execute(
            "INSERT INTO journal_checkpoint (id, journal_next, bytes, checksum)
             VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET journal_next = excluded.journal_next,
                 bytes = excluded.bytes, checksum = excluded.checksum",
            params![to_sql(checkpoint.journal_next)?, bytes, &sum.as_bytes()[..]],
        )
        .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    /// Deletes the records the stored checkpoint counts, in one transaction: the
    /// next number stays (it is never before the checkpoint's), and recovery reads
    /// from the checkpoint on.
    fn compact(&mut self) -> Result<usize, JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let through: Option<i64> = tx
            .query_row(
                "SELECT journal_next FROM journal_checkpoint WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(storage)?;
        let Some(through) = through else {
            return Ok(0);
        };
        let dropped = tx
            .execute(
                "DELETE FROM journal_records WHERE seq < ?1",
                params![through],
            )
            .map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(dropped)
    }

    fn load_checkpoint(&self) -> Result<Option<CoordinatorSnapshot>, JournalError> {
        let row = self
            .conn
            .query_row(
                "SELECT journal_next, bytes, checksum FROM journal_checkpoint WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(storage)?;
        let Some((journal_next, bytes, sum)) = row else {
            return Ok(None);
        };
        let checkpoint: CoordinatorSnapshot =
            decode(&bytes, &sum).map_err(|reason| JournalError::CorruptCheckpoint { reason })?;
        if i64::try_from(checkpoint.journal_next).ok() != Some(journal_next) {
            return Err(JournalError::CorruptCheckpoint {
                reason: format!(
                    "the row says it counts {journal_next} records, the checkpoint {}",
                    checkpoint.journal_next
                ),
            });
        }
        Ok(Some(checkpoint))
    }
}
