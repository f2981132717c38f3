//! The default store: a sorted map behind a lock, with hooks for drills.

use std::ops::Bound;

use parking_lot::Mutex;

use super::{Entries, MemoryError, MemoryStore, Pattern, StoreHealth, check_key, check_stored_key};

/// The default [`MemoryStore`]: entries in a sorted map, in this process.
///
/// Besides the trait, it has two hooks for tests and drills, which a real store
/// would not offer: [`corrupt`](Self::corrupt) flips the bits of a stored value behind
/// the guard's back, and [`fail_with`](Self::fail_with) makes every operation fail as
/// an unreachable store would. The synchronous [`len`](Self::len) and
/// [`snapshot`](Self::snapshot) let a test look without a guard.
///
/// ```
/// use concord::memory::{InMemoryStore, MemoryStore, Pattern};
/// use futures::executor::block_on;
///
/// let store = InMemoryStore::new();
/// block_on(store.put("deploy/web/status", b"green".to_vec()))?;
/// block_on(store.put("deploy/api/status", b"red".to_vec()))?;
/// let red = block_on(store.query(&Pattern::new("deploy/a*")?))?;
/// assert_eq!(red.keys().collect::<Vec<_>>(), ["deploy/api/status"]);
/// # Ok::<(), concord::memory::MemoryError>(())
/// ```
#[derive(Debug, Default)]
pub struct InMemoryStore {
    entries: Mutex<Entries>,
    failure: Mutex<Option<String>>,
}

impl InMemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        InMemoryStore::default()
    }

    /// A store holding `entries`: what a store held, so a key may hold an invisible
    /// character, as one written before they were refused does (see
    /// [`check_key`](super::check_key)).
    ///
    /// # Errors
    /// [`MemoryError::InvalidKey`] for the first key no stored key can be (empty,
    /// too long, or holding a control character).
    pub fn with_entries(entries: Entries) -> Result<Self, MemoryError> {
        entries.keys().try_for_each(|k| check_stored_key(k))?;
        Ok(InMemoryStore {
            entries: Mutex::new(entries),
            failure: Mutex::new(None),
        })
    }

    /// How many entries it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether it holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// A copy of everything it holds, read without going through the trait (and so
    /// even while [`fail_with`](Self::fail_with) is on).
    #[must_use]
    pub fn snapshot(&self) -> Entries {
        self.entries.lock().clone()
    }

    /// For tests and drills: flips every bit of the first byte of the value under
    /// `key` (an empty value becomes one byte), as a disk or a bad write would, behind
    /// any guard's back. Whether the key held a value.
    pub fn corrupt(&self, key: &str) -> bool {
        match self.entries.lock().get_mut(key) {
            Some(value) => {
                match value.first_mut() {
                    Some(b) => *b ^= 0xff,
                    None => value.push(0xff),
                }
                true
            }
            None => false,
        }
    }

    /// For tests and drills: with `Some(reason)`, every operation of the trait fails
    /// with [`MemoryError::Store`] for `reason`, as an unreachable store does, and
    /// changes nothing; with `None`, the store answers again.
    pub fn fail_with(&self, reason: Option<String>) {
        *self.failure.lock() = reason;
    }

    fn answering(&self) -> Result<(), MemoryError> {
        match &*self.failure.lock() {
            Some(reason) => Err(MemoryError::store(reason.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl MemoryStore for InMemoryStore {
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError> {
        self.answering()?;
        check_key(key)?;
        self.entries.lock().insert(key.to_owned(), value);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        self.answering()?;
        Ok(self.entries.lock().get(key).cloned())
    }

    async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
        self.answering()?;
        Ok(self.entries.lock().remove(key).is_some())
    }

    async fn query(&self, pattern: &Pattern) -> Result<Entries, MemoryError> {
        self.answering()?;
        let entries = self.entries.lock();
        // Only keys from the pattern's literal prefix on can match: scan from there
        // and stop at the first key past it, instead of reading the whole map.
        let prefix = pattern.literal_prefix();
        Ok(entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| pattern.matches(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn entries(&self) -> Result<Entries, MemoryError> {
        self.answering()?;
        Ok(self.entries.lock().clone())
    }

    async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError> {
        self.answering()?;
        // A backup's keys: one taken before invisible characters were refused in
        // keys may hold one, and must still restore.
        entries.keys().try_for_each(|k| check_stored_key(k))?;
        *self.entries.lock() = entries;
        Ok(())
    }

    async fn health(&self) -> Result<StoreHealth, MemoryError> {
        self.answering()?;
        let entries = self.entries.lock();
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        Ok(StoreHealth::new()
            .with_entries(entries.len() as u64)
            .with_bytes(bytes as u64))
    }
}
