//! The guard in front of a store: write fence, checksums, backup, validation,
//! restore and failover.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::id::COUNTER_LIMIT;

use super::backup::{Backup, BackupId};
use super::error::{MemoryError, shown};
use super::integrity::IntegrityReport;
use super::{
    Entries, MemoryStore, Pattern, StoreHealth, check_key, check_stored_key, entry_digest,
};

/// A stop on memory writes: why, since when, and how many writes it has refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fence {
    /// Why writes are stopped.
    pub reason: String,
    /// Since when.
    pub since: Timestamp,
    /// How many writes (puts and deletes) it has refused.
    pub refused: u64,
}

/// What a guard knows, as serde data: the checksums of what it wrote, the keys whose
/// last write may or may not have landed, the fence and the backup numbering. A host
/// keeps it beside the store ([`Memory::snapshot`]) and resumes the guard from it
/// after a restart ([`Memory::resume`]), so that corruption that happened while the
/// guard was down is still found: a guard that [`open`](Memory::open)s a store trusts
/// what it holds, corrupt entries included.
///
/// ```
/// use std::sync::Arc;
/// use concord::memory::{InMemoryStore, Memory, MemorySnapshot};
/// use concord::Timestamp;
/// use futures::executor::block_on;
///
/// let store = Arc::new(InMemoryStore::new());
/// let memory = Memory::new(store.clone());
/// block_on(memory.put("plan", b"deploy the api".to_vec()))?;
/// block_on(memory.fence("drill", Timestamp::from_secs(60)));
/// let kept = serde_json::to_string(&memory.snapshot())?;
///
/// // The process restarts; meanwhile a bit flips on disk.
/// store.corrupt("plan");
/// let snapshot: MemorySnapshot = serde_json::from_str(&kept)?;
/// let memory = Memory::resume(store.clone(), snapshot)?;
/// assert_eq!(block_on(memory.validate())?.keys(), ["plan"]);
/// assert_eq!(memory.fenced().map(|f| f.reason), Some("drill".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySnapshot {
    /// The format's version ([`MemorySnapshot::VERSION`]).
    pub version: u32,
    /// The fence, if writes are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
    /// Writes refused by every fence, over the guard's life: below 2^63, as every
    /// count the crate restores.
    #[serde(default)]
    pub refused: u64,
    /// The checksum of every key's value as the guard last wrote it.
    #[serde(default)]
    pub checksums: BTreeMap<String, Digest>,
    /// The keys whose last write failed at the store, with the checksums (`null`:
    /// deleted) they may hold without being corrupt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uncertain: BTreeMap<String, Vec<Option<Digest>>>,
    /// The number of the last backup taken. Any number: after `u64::MAX`,
    /// [`Memory::backup`] refuses with [`MemoryError::BackupIdsExhausted`].
    #[serde(default)]
    pub last_backup: u64,
}

impl MemorySnapshot {
    /// The version this crate writes and reads.
    pub const VERSION: u32 = 1;

    /// Why the guard cannot resume from it, if it cannot.
    fn check(&self) -> Result<(), MemoryError> {
        let corrupt = |reason: String| Err(MemoryError::CorruptSnapshot { reason });
        if self.version != Self::VERSION {
            return corrupt(format!(
                "version {} (this crate reads {})",
                self.version,
                Self::VERSION
            ));
        }
        // The guard adds one per refused write: a count no guard reaches is corrupt,
        // and below it the additions never saturate. The fence's count is at most
        // this one, checked next.
        if self.refused >= COUNTER_LIMIT {
            return corrupt(format!(
                "refused {} is past what any guard counts (2^63)",
                self.refused
            ));
        }
        if let Some(fence) = &self.fence {
            if fence.refused > self.refused {
                return corrupt(format!(
                    "the fence refused {} writes, more than the {} refused in all",
                    fence.refused, self.refused
                ));
            }
        }
        for key in self.checksums.keys().chain(self.uncertain.keys()) {
            // Keys the guard wrote, perhaps before invisible characters were refused:
            // see `check_key`.
            if let Err(e) = check_stored_key(key) {
                return corrupt(e.to_string());
            }
        }
        if let Some((key, _)) = self.uncertain.iter().find(|(_, a)| a.is_empty()) {
            return corrupt(format!(
                "uncertain key `{}` has no possible value",
                shown(key)
            ));
        }
        Ok(())
    }
}

/// The guard's books, behind one short lock that is never held across an await.
#[derive(Debug, Default)]
struct Books {
    fence: Option<Fence>,
    /// Writes refused by every fence, over the guard's life.
    refused: u64,
    /// The digest of every key's value as the guard last wrote (or adopted, or
    /// restored) it: what validation compares the store with.
    ledger: BTreeMap<String, Digest>,
    /// Keys whose last write failed at the store, which may or may not have applied
    /// it (a timed-out request to a remote store): the other digests (`None` for
    /// "deleted") the key may hold without being corrupt. The first read that finds
    /// one of them settles the ledger to it.
    uncertain: BTreeMap<String, Vec<Option<Digest>>>,
    next_backup: u64,
    last_validation: Option<IntegrityReport>,
}

impl Books {
    /// Compares `held` (the entries a store returned for `pattern`) with the ledger's
    /// keys that match `pattern`, without changing anything: the report, and the
    /// uncertain keys that `held` settles (to the digest found there).
    fn assess(
        &self,
        pattern: &Pattern,
        held: &Entries,
    ) -> (IntegrityReport, Vec<(String, Option<Digest>)>) {
        let prefix = pattern.literal_prefix();
        let mut expected: BTreeMap<String, Digest> = self
            .ledger
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| pattern.matches(k))
            .map(|(k, d)| (k.clone(), *d))
            .collect();
        let mut settled = Vec::new();
        for (key, alternatives) in &self.uncertain {
            if !pattern.matches(key) {
                continue;
            }
            let found = held.get(key).map(|v| entry_digest(key, v));
            if alternatives.contains(&found) {
                // What the failed write may have left: expect exactly that.
                match found {
                    Some(d) => expected.insert(key.clone(), d),
                    None => expected.remove(key),
                };
                settled.push((key.clone(), found));
            }
        }
        (IntegrityReport::compare(&expected, held), settled)
    }

    fn settle(&mut self, settled: Vec<(String, Option<Digest>)>) {
        for (key, found) in settled {
            self.uncertain.remove(&key);
            match found {
                Some(d) => self.ledger.insert(key, d),
                None => self.ledger.remove(&key),
            };
        }
    }

    /// Compares and settles: for reads of the live store.
    fn judge(&mut self, pattern: &Pattern, held: &Entries) -> IntegrityReport {
        let (report, settled) = self.assess(pattern, held);
        self.settle(settled);
        report
    }

    /// Records the outcome of a write of `digest` (`None`: a delete) to `key`.
    fn record(&mut self, key: &str, digest: Option<Digest>, applied: bool) {
        if applied {
            self.uncertain.remove(key);
            match digest {
                Some(d) => self.ledger.insert(key.to_owned(), d),
                None => self.ledger.remove(key),
            };
        } else {
            let alternatives = self.uncertain.entry(key.to_owned()).or_default();
            if !alternatives.contains(&digest) {
                alternatives.push(digest);
            }
        }
    }

    /// The id the next backup takes, without taking it: a backup that fails
    /// later must not use up a number.
    fn next_backup_id(&self) -> Result<BackupId, MemoryError> {
        // Ids never wrap: a repeated id would make `last_good_backup` and the host's
        // own records mistake one backup for another.
        self.next_backup
            .checked_add(1)
            .map(BackupId::new)
            .ok_or(MemoryError::BackupIdsExhausted {
                last: BackupId::new(self.next_backup),
            })
    }
}

/// The guard in front of the agents' shared memory: every read checked against the
/// checksums of what was written, writes stopped on demand, and backups, validation,
/// restore and failover for the memory corruption procedure.
///
/// Share it as `Arc<Memory>` between the agents' code, the host's recovery code and
/// the memory health check ([`MemoryCheck`](crate::health::MemoryCheck)).
///
/// # Rules
/// - **Checksums.** The guard records the digest ([`entry_digest`]) of every value it
///   writes. Reads ([`get`](Self::get), [`query`](Self::query)) compare what the store
///   returns with those digests and answer [`MemoryError::Corrupt`] rather than hand
///   an agent a value that was altered, lost or slipped in behind the guard's back.
///   [`validate`](Self::validate) compares the whole store and locates every corrupt
///   key. A guard made with [`new`](Self::new) knows nothing of what the store held
///   before: [`open`](Self::open) (or [`adopt`](Self::adopt)) trusts it as it is.
/// - **The fence.** After [`fence`](Self::fence) returns, no put or delete made through
///   the guard reaches the store until [`unfence`](Self::unfence): each is refused
///   with [`MemoryError::Fenced`] and counted ([`Fence::refused`],
///   [`refused_writes`](Self::refused_writes)). `fence` waits for a write already
///   under way to land, so none lands after it. Reads go on. The recovery operations
///   (restore, switching stores) are not stopped: they are how memory is repaired
///   under the fence.
/// - **Writes are serialized.** Puts, deletes, backups, validations, restores and
///   switches through one guard take turns (reads do not): that is what keeps the
///   checksums in step with the store, and a backup or a validation a consistent
///   picture of it.
/// - **Nothing half done.** An operation refused by the guard (invalid key or pattern,
///   fence, corrupt or suspect backup, diverging standby) changes neither the store
///   nor the guard. A write the store fails may or may not have been applied (a
///   remote store cannot always tell): the guard accepts either value for that key
///   until a read shows which.
pub struct Memory {
    store: RwLock<Arc<dyn MemoryStore>>,
    books: Mutex<Books>,
    /// Taken by every operation that changes the store or must see it whole, and
    /// held across the store's await: what serializes them (see the Rules).
    turn: futures::lock::Mutex<()>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let books = self.books.lock();
        f.debug_struct("Memory")
            .field("store", &self.store.read())
            .field("fence", &books.fence)
            .field("tracked", &books.ledger.len())
            .finish_non_exhaustive()
    }
}

impl Memory {
    /// A guard over `store`, which it takes to be empty: entries the store already
    /// holds count as unexpected until [`adopt`](Self::adopt)ed. For a store with
    /// contents, use [`open`](Self::open).
    #[must_use]
    pub fn new(store: Arc<dyn MemoryStore>) -> Memory {
        Memory {
            store: RwLock::new(store),
            books: Mutex::new(Books::default()),
            turn: futures::lock::Mutex::new(()),
        }
    }

    /// A guard over `store` that trusts what the store holds now (see
    /// [`adopt`](Self::adopt)).
    ///
    /// # Errors
    /// [`MemoryError::Store`] if the store cannot list its entries.
    pub async fn open(store: Arc<dyn MemoryStore>) -> Result<Memory, MemoryError> {
        let memory = Memory::new(store);
        memory.adopt().await?;
        Ok(memory)
    }

    /// A guard over `store` that knows what `snapshot` says (see [`MemorySnapshot`]):
    /// what it wrote, its fence and its backup numbers, as when the snapshot was
    /// taken. The store is not read: [`validate`](Self::validate) tells whether it
    /// still holds what the guard wrote.
    ///
    /// # Errors
    /// [`MemoryError::CorruptSnapshot`] naming what is wrong; nothing is built.
    pub fn resume(
        store: Arc<dyn MemoryStore>,
        snapshot: MemorySnapshot,
    ) -> Result<Memory, MemoryError> {
        snapshot.check()?;
        let memory = Memory::new(store);
        {
            let mut books = memory.books.lock();
            books.fence = snapshot.fence;
            books.refused = snapshot.refused;
            books.ledger = snapshot.checksums;
            books.uncertain = snapshot.uncertain;
            books.next_backup = snapshot.last_backup;
        }
        Ok(memory)
    }

    /// What the guard knows, to resume it after a restart (see [`MemorySnapshot`]).
    /// Take it when no write is under way (a write that lands after it is, on
    /// resume, an entry the guard did not write).
    #[must_use]
    pub fn snapshot(&self) -> MemorySnapshot {
        let books = self.books.lock();
        MemorySnapshot {
            version: MemorySnapshot::VERSION,
            fence: books.fence.clone(),
            refused: books.refused,
            checksums: books.ledger.clone(),
            uncertain: books.uncertain.clone(),
            last_backup: books.next_backup,
        }
    }

    /// Numbers the next backup `id` (then on from there): for a host that keeps its
    /// backups across restarts and wants their numbers to go on rising. Any id is
    /// taken; once a backup has had `u64::MAX`, [`backup`](Self::backup) refuses
    /// with [`MemoryError::BackupIdsExhausted`] rather than repeat a number.
    #[must_use]
    pub fn with_next_backup_id(self, id: BackupId) -> Self {
        self.books.lock().next_backup = id.get().saturating_sub(1);
        self
    }

    /// The store the guard currently uses.
    #[must_use]
    pub fn store(&self) -> Arc<dyn MemoryStore> {
        Arc::clone(&self.store.read())
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// [`MemoryError::InvalidKey`]; [`MemoryError::Fenced`] while writes are stopped;
    /// [`MemoryError::Store`] if the store fails.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), MemoryError> {
        check_key(key)?;
        self.admit(key)?;
        let _turn = self.turn.lock().await;
        // A fence may have come while this write waited for its turn.
        self.admit(key)?;
        let value = value.into();
        let digest = entry_digest(key, &value);
        let result = self.store().put(key, value).await;
        self.books.lock().record(key, Some(digest), result.is_ok());
        tracing::trace!(memory.key = key, ok = result.is_ok(), "memory put");
        result
    }

    /// Removes `key`; whether it held a value. A key stored before invisible
    /// characters were refused in keys, which [`put`](Self::put) no longer takes,
    /// is removed as any other (see [`check_key`](super::check_key)).
    ///
    /// # Errors
    /// As [`put`](Self::put), but for an invisible character in the key.
    pub async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
        check_stored_key(key)?;
        self.admit(key)?;
        let _turn = self.turn.lock().await;
        self.admit(key)?;
        let result = self.store().delete(key).await;
        self.books.lock().record(key, None, result.is_ok());
        result
    }

    /// The value under `key`, if any, checked against the digest recorded for it. A
    /// key stored before invisible characters were refused in keys, which
    /// [`put`](Self::put) no longer takes, is read as any other (see
    /// [`check_key`](super::check_key)).
    ///
    /// # Errors
    /// [`MemoryError::InvalidKey`] for a key no stored key can be (empty, too long,
    /// or holding a control character); [`MemoryError::Corrupt`] if the store holds a
    /// value other than the one written (or one where none was, or none where one
    /// was); [`MemoryError::Store`] if the store fails.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        check_stored_key(key)?;
        let pattern = Pattern::literal(key);
        let mut held = Entries::new();
        let read = |held: &mut Entries, value: Option<Vec<u8>>| {
            held.clear();
            if let Some(v) = value {
                held.insert(key.to_owned(), v);
            }
        };
        read(&mut held, self.store().get(key).await?);
        if !self.books.lock().judge(&pattern, &held).is_clean() {
            // A write may have landed between the read and the look at the books:
            // read again while writes wait, and only then call it corruption.
            let _turn = self.turn.lock().await;
            read(&mut held, self.store().get(key).await?);
            let report = self.books.lock().judge(&pattern, &held);
            if let Some(c) = report.corrupt().first() {
                tracing::warn!(memory.key = key, damage = %c.damage, "corrupt memory entry read");
                return Err(MemoryError::Corrupt(c.clone()));
            }
        }
        Ok(held.remove(key))
    }

    /// The entries whose keys match the glob `pattern` (see [`Pattern`]), each
    /// checked as [`get`](Self::get) checks one, and none missing.
    ///
    /// # Errors
    /// [`MemoryError::InvalidPattern`]; [`MemoryError::Corrupt`] for the first corrupt
    /// entry among those matching, in key order; [`MemoryError::Store`].
    pub async fn query(&self, pattern: &str) -> Result<Entries, MemoryError> {
        let pattern = Pattern::new(pattern)?;
        let held = self.store().query(&pattern).await?;
        if self.books.lock().judge(&pattern, &held).is_clean() {
            return Ok(held);
        }
        let _turn = self.turn.lock().await;
        let held = self.store().query(&pattern).await?;
        let report = self.books.lock().judge(&pattern, &held);
        match report.corrupt().first() {
            Some(c) => Err(MemoryError::Corrupt(c.clone())),
            None => Ok(held),
        }
    }

    /// Stops memory writes: from now until [`unfence`](Self::unfence), every put and
    /// delete through the guard is refused with [`MemoryError::Fenced`] and counted.
    /// Waits for a write already under way to land, so that none lands after this
    /// returns. Whether writes were running (`false`: they were already stopped, and
    /// the first fence's reason and time stand).
    ///
    /// The fence is up from the future's first poll: a host that gives up waiting
    /// (a store write that hangs) and drops the future leaves writes stopped.
    pub async fn fence(&self, reason: impl Into<String>, now: Timestamp) -> bool {
        let reason = reason.into();
        let newly = {
            let mut books = self.books.lock();
            match books.fence {
                Some(_) => false,
                None => {
                    books.fence = Some(Fence {
                        reason: reason.clone(),
                        since: now,
                        refused: 0,
                    });
                    true
                }
            }
        };
        drop(self.turn.lock().await);
        if newly {
            tracing::info!(memory.fence = %reason, "memory writes stopped");
        }
        newly
    }

    /// Lets writes through again; the fence lifted, with how many writes it refused,
    /// if there was one.
    pub fn unfence(&self) -> Option<Fence> {
        let lifted = self.books.lock().fence.take();
        if let Some(f) = &lifted {
            tracing::info!(memory.refused = f.refused, "memory writes resumed");
        }
        lifted
    }

    /// The fence, while writes are stopped.
    #[must_use]
    pub fn fenced(&self) -> Option<Fence> {
        self.books.lock().fence.clone()
    }

    /// How many writes every fence has refused, over the guard's life.
    #[must_use]
    pub fn refused_writes(&self) -> u64 {
        self.books.lock().refused
    }

    /// How many keys the guard holds a checksum for.
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.books.lock().ledger.len()
    }

    /// Trusts what the store holds now: records the checksum of every entry, as if
    /// the guard had written it. How many entries.
    ///
    /// # Errors
    /// [`MemoryError::Store`] if the store cannot list its entries (the guard is then
    /// unchanged).
    pub async fn adopt(&self) -> Result<usize, MemoryError> {
        let _turn = self.turn.lock().await;
        let held = self.store().entries().await?;
        let mut books = self.books.lock();
        books.ledger = held
            .iter()
            .map(|(k, v)| (k.clone(), entry_digest(k, v)))
            .collect();
        books.uncertain.clear();
        books.last_validation = None;
        Ok(held.len())
    }

    /// Backs up what the store holds now, corrupt entries included (as evidence:
    /// they are listed as the backup's [`suspect`](Backup::suspect) keys, and a
    /// suspect backup is never restored). The backup is the host's to keep.
    ///
    /// # Errors
    /// [`MemoryError::BackupIdsExhausted`] once a backup has had the id `u64::MAX`
    /// (only [`with_next_backup_id`](Self::with_next_backup_id) or a resumed
    /// snapshot gets there); [`MemoryError::Store`] if the store cannot list its
    /// entries. Either way the guard is unchanged.
    pub async fn backup(&self, now: Timestamp) -> Result<Backup, MemoryError> {
        let _turn = self.turn.lock().await;
        // Backups take turns: no other takes this id while the store is read.
        let id = self.books.lock().next_backup_id()?;
        let held = self.store().entries().await?;
        let mut books = self.books.lock();
        let report = books.judge(&Pattern::any(), &held);
        let suspect = report.keys().into_iter().map(str::to_owned).collect();
        books.next_backup = id.get();
        books.last_validation = Some(report);
        drop(books);
        let backup = Backup::new(id, now, held, suspect);
        tracing::info!(
            memory.backup = %id,
            entries = backup.len(),
            suspect = backup.suspect().len(),
            "memory backed up"
        );
        Ok(backup)
    }

    /// Checks the whole store against the guard's checksums, and locates every
    /// corrupt key: altered, missing, or unexpected.
    ///
    /// # Errors
    /// [`MemoryError::Store`] if the store cannot list its entries.
    ///
    /// # Complexity
    /// Reads every entry once and hashes it: O(total size).
    pub async fn validate(&self) -> Result<IntegrityReport, MemoryError> {
        let _turn = self.turn.lock().await;
        let held = self.store().entries().await?;
        let mut books = self.books.lock();
        let report = books.judge(&Pattern::any(), &held);
        books.last_validation = Some(report.clone());
        drop(books);
        if !report.is_clean() {
            tracing::warn!(memory.corrupt = report.corrupt().len(), %report, "memory corrupt");
        }
        Ok(report)
    }

    /// Checks the whole store against `backup`: where it differs from the backup
    /// (after verifying the backup).
    ///
    /// # Errors
    /// [`MemoryError::CorruptBackup`] if the backup fails its checksums;
    /// [`MemoryError::Store`].
    pub async fn validate_against(&self, backup: &Backup) -> Result<IntegrityReport, MemoryError> {
        verified(backup)?;
        let _turn = self.turn.lock().await;
        let held = self.store().entries().await?;
        Ok(IntegrityReport::compare(&backup.digests(), &held))
    }

    /// The report of the last [`validate`](Self::validate) or
    /// [`backup`](Self::backup), if the store has not been replaced since.
    #[must_use]
    pub fn last_validation(&self) -> Option<IntegrityReport> {
        self.books.lock().last_validation.clone()
    }

    /// Replaces everything the store holds with `backup`, after checking it: a backup
    /// that fails its checksums, or that was taken while entries were corrupt, is
    /// refused and the store is left as it was. Restoring does not lift a fence.
    ///
    /// # Errors
    /// [`MemoryError::CorruptBackup`], [`MemoryError::SuspectBackup`] (nothing
    /// loaded); [`MemoryError::Store`] if the store fails (which leaves it as it was,
    /// by the [`MemoryStore`] contract).
    pub async fn restore(&self, backup: &Backup) -> Result<(), MemoryError> {
        verified(backup)?;
        let _turn = self.turn.lock().await;
        self.store().replace_all(backup.to_entries()).await?;
        self.trust(backup);
        tracing::info!(memory.backup = %backup.id(), entries = backup.len(), "memory restored");
        Ok(())
    }

    /// Fails over to `standby` (the backup memory system), if it holds exactly what
    /// the guard's checksums say memory holds; returns the store it replaces.
    ///
    /// # Errors
    /// [`MemoryError::StandbyDiverges`] with where it differs (a replica that lags or
    /// replicated the corruption): the guard stays on its store, and the host can
    /// load a backup into the standby with [`switch_to_with`](Self::switch_to_with)
    /// instead. [`MemoryError::Store`] if the standby cannot list its entries.
    pub async fn switch_to(
        &self,
        standby: Arc<dyn MemoryStore>,
    ) -> Result<Arc<dyn MemoryStore>, MemoryError> {
        let _turn = self.turn.lock().await;
        let held = standby.entries().await?;
        let mut books = self.books.lock();
        let (report, settled) = books.assess(&Pattern::any(), &held);
        if !report.is_clean() {
            return Err(MemoryError::StandbyDiverges {
                report: Box::new(report),
            });
        }
        books.settle(settled);
        books.last_validation = Some(report);
        drop(books);
        let previous = self.replace_store(standby);
        tracing::info!("memory switched to the standby store");
        Ok(previous)
    }

    /// Loads `backup` into `standby` and fails over to it; returns the store it
    /// replaces. The backup is checked first, as by [`restore`](Self::restore).
    ///
    /// # Errors
    /// [`MemoryError::CorruptBackup`], [`MemoryError::SuspectBackup`] (nothing
    /// loaded, no switch); [`MemoryError::Store`] if the standby fails (no switch).
    pub async fn switch_to_with(
        &self,
        standby: Arc<dyn MemoryStore>,
        backup: &Backup,
    ) -> Result<Arc<dyn MemoryStore>, MemoryError> {
        verified(backup)?;
        let _turn = self.turn.lock().await;
        standby.replace_all(backup.to_entries()).await?;
        let previous = self.replace_store(standby);
        self.trust(backup);
        tracing::info!(memory.backup = %backup.id(), "memory switched to the standby store, restored");
        Ok(previous)
    }

    /// What the store says about itself.
    ///
    /// # Errors
    /// [`MemoryError::Store`] if it does not answer.
    pub async fn health(&self) -> Result<StoreHealth, MemoryError> {
        self.store().health().await
    }

    /// Refuses a write while fenced, counting it.
    fn admit(&self, key: &str) -> Result<(), MemoryError> {
        let mut books = self.books.lock();
        let books = &mut *books;
        match &mut books.fence {
            Some(fence) => {
                // Counts only grow, one a write: saturating, they stay true for any
                // run that could happen, and a resumed snapshot cannot make them panic.
                fence.refused = fence.refused.saturating_add(1);
                books.refused = books.refused.saturating_add(1);
                tracing::debug!(memory.key = key, "memory write refused: fenced");
                Err(MemoryError::Fenced {
                    key: key.to_owned(),
                    reason: fence.reason.clone(),
                })
            }
            None => Ok(()),
        }
    }

    /// Makes `backup`'s checksums the guard's, after the store was loaded with it.
    fn trust(&self, backup: &Backup) {
        let mut books = self.books.lock();
        books.ledger = backup.digests();
        books.uncertain.clear();
        books.last_validation = None;
    }

    fn replace_store(&self, store: Arc<dyn MemoryStore>) -> Arc<dyn MemoryStore> {
        std::mem::replace(&mut *self.store.write(), store)
    }
}

/// `backup`, if it verifies and is clean.
fn verified(backup: &Backup) -> Result<(), MemoryError> {
    backup
        .verify()
        .map_err(|damage| MemoryError::CorruptBackup {
            id: backup.id(),
            damage,
        })?;
    if let Some(first) = backup.suspect().first() {
        return Err(MemoryError::SuspectBackup {
            id: backup.id(),
            count: backup.suspect().len(),
            first: shown(first),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_send_sync_and_its_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<F: Send>(_: F) {}
        send_sync::<Memory>();
        let m = Memory::new(Arc::new(crate::memory::InMemoryStore::new()));
        send(m.put("k", b"v".to_vec()));
        send(m.get("k"));
        send(m.query("*"));
        send(m.fence("x", Timestamp::EPOCH));
        send(m.backup(Timestamp::EPOCH));
        send(m.validate());
        send(m.switch_to(Arc::new(crate::memory::InMemoryStore::new())));
    }
}
