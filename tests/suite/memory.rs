//! Agent memory through the public API: put, get, delete and query; glob patterns; the
//! write fence; checksummed backups, validation that locates corruption, restore;
//! refused backups; switching stores; pruning; a store that fails; and the memory
//! health check through diagnostics.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use concord::health::{Diagnostics, HealthStatus, MemoryCheck};
use concord::memory::{
    Backup, BackupDamage, BackupId, Damage, Entries, InMemoryStore, KeyProblem, MAX_KEY_LEN,
    MAX_PATTERN_LEN, Memory, MemoryError, MemorySnapshot, MemoryStore, Pattern, PatternProblem,
    Retention, StoreHealth, check_key, last_good_backup, prune_backups,
};
use concord::{ManualClock, SimulatedTimer, Timestamp};
use futures::executor::block_on;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(1_700_000_000 + secs)
}

fn guarded() -> (Arc<InMemoryStore>, Memory) {
    let store = Arc::new(InMemoryStore::new());
    (store.clone(), Memory::new(store))
}

fn entries(pairs: &[(&str, &str)]) -> Entries {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

// ----- put, get, delete, query --------------------------------------------------

#[test]
fn put_get_delete_and_query_behave_as_a_map() {
    let (store, memory) = guarded();
    block_on(async {
        assert_eq!(memory.get("deploy/web/status").await?, None);
        memory.put("deploy/web/status", "yellow").await?;
        memory.put("deploy/web/status", "green").await?; // replaces
        memory.put("deploy/api/status", "red").await?;
        memory.put("deploy/api/owner", "ada").await?;
        memory.put("agents/qa-1/notes", Vec::new()).await?; // empty values are values
        assert_eq!(
            memory.get("deploy/web/status").await?,
            Some(b"green".to_vec())
        );
        assert_eq!(memory.get("agents/qa-1/notes").await?, Some(Vec::new()));

        let statuses = memory.query("deploy/*/status").await?;
        assert_eq!(
            statuses,
            entries(&[("deploy/api/status", "red"), ("deploy/web/status", "green")])
        );
        assert_eq!(memory.query("deploy/???/*").await?.len(), 3);
        assert_eq!(memory.query("*").await?.len(), 4);
        assert!(memory.query("nothing/*").await?.is_empty());
        // A literal pattern is a lookup.
        assert_eq!(memory.query("deploy/api/owner").await?.len(), 1);

        assert!(memory.delete("deploy/api/owner").await?);
        assert!(!memory.delete("deploy/api/owner").await?);
        assert_eq!(memory.get("deploy/api/owner").await?, None);
        assert_eq!(store.len(), 3);
        assert_eq!(memory.tracked_keys(), 3);
        assert!(memory.validate().await?.is_clean());
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

#[test]
fn invalid_keys_are_refused_by_name_and_change_nothing() {
    let (store, memory) = guarded();
    block_on(memory.put("kept", "1")).unwrap();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    let cases: [(&str, KeyProblem); 6] = [
        ("", KeyProblem::Empty),
        (
            &long,
            KeyProblem::TooLong {
                len: MAX_KEY_LEN + 1,
            },
        ),
        ("line\nbreak", KeyProblem::ControlCharacter { at: 4 }),
        ("nul\0", KeyProblem::ControlCharacter { at: 3 }),
        // Invisible: two keys that would read the same as `status`. Refused as new
        // keys only: one stored before they were refused is read and deleted (see
        // `keys_stored_before_invisible_characters_were_refused_stay_reachable`).
        ("status\u{200b}", KeyProblem::ControlCharacter { at: 6 }),
        ("\u{feff}status", KeyProblem::ControlCharacter { at: 0 }),
    ];
    for (key, problem) in cases {
        let invisible = key.contains(['\u{200b}', '\u{feff}']);
        let mut results = vec![block_on(memory.put(key, "x")).map(|_| ()), check_key(key)];
        if invisible {
            assert_eq!(block_on(memory.get(key)), Ok(None), "{key:?}");
            assert_eq!(block_on(memory.delete(key)), Ok(false), "{key:?}");
        } else {
            results.push(block_on(memory.get(key)).map(|_| ()));
            results.push(block_on(memory.delete(key)).map(|_| ()));
        }
        for result in results {
            match result {
                Err(MemoryError::InvalidKey {
                    key: named,
                    problem: p,
                }) => {
                    assert_eq!(p, problem);
                    // Named, but a hostile key is cut short in the error.
                    assert!(named.chars().count() <= 81, "{named}");
                    assert!(key.starts_with(named.trim_end_matches('…')));
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
    }
    assert_eq!(store.snapshot(), entries(&[("kept", "1")]));
    // The longest key is a key; `*` and `?` are ordinary characters in keys.
    block_on(memory.put(&"k".repeat(MAX_KEY_LEN), "x")).unwrap();
    block_on(memory.put("what?*", "x")).unwrap();
    assert_eq!(block_on(memory.query("what\\?\\*")).unwrap().len(), 1);
    let e = block_on(memory.put("a\u{1b}[31m", "x")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid memory key \"a\\u{1b}[31m\": it holds a control or invisible character at byte 1"
    );
}

/// Regression: once invisible characters were refused in keys, every key check
/// refused them, reads and deletes included. A key written before (when keys took
/// format characters, or variation selectors), or restored from a backup taken then,
/// could no longer be read, found by a pattern or deleted through the guard, nor its
/// backup verified and restored, nor its guard's snapshot resumed: it stayed in the
/// store for good. Only writes refuse it now, with the error they gave.
#[test]
fn keys_stored_before_invisible_characters_were_refused_stay_reachable() {
    const ZWSP: &str = "status\u{200b}";
    const SELECTOR: &str = "deploy/\u{2764}\u{fe0f}";
    // A store as an earlier version left it, and its guard's backup and snapshot,
    // kept by the host as JSON.
    let held = entries(&[(ZWSP, "green"), (SELECTOR, "love"), ("plain", "1")]);
    let old_store = Arc::new(InMemoryStore::with_entries(held.clone()).unwrap());
    let old = block_on(Memory::open(old_store.clone())).unwrap();
    let kept = serde_json::to_string(&block_on(old.backup(t(0))).unwrap()).unwrap();
    let backup: Backup = serde_json::from_str(&kept).unwrap();
    assert_eq!(backup.verify(), Ok(()));
    let kept = serde_json::to_string(&old.snapshot()).unwrap();
    let snapshot: MemorySnapshot = serde_json::from_str(&kept).unwrap();

    // Restored into a new store: read, listed and found by a pattern.
    let (store, memory) = guarded();
    block_on(memory.restore(&backup)).unwrap();
    assert_eq!(store.snapshot(), held);
    block_on(async {
        assert_eq!(memory.get(ZWSP).await?, Some(b"green".to_vec()));
        assert_eq!(memory.get(SELECTOR).await?, Some(b"love".to_vec()));
        assert_eq!(memory.query("*").await?, held);
        assert_eq!(memory.query(ZWSP).await?.len(), 1);
        assert_eq!(memory.query("deploy/\u{2764}?").await?.len(), 1);
        Ok::<(), MemoryError>(())
    })
    .unwrap();

    // Not written, neither replaced nor made anew: the error writes always gave,
    // and nothing changes.
    for key in [ZWSP, "new\u{2028}key"] {
        match block_on(memory.put(key, "x")) {
            Err(MemoryError::InvalidKey {
                key: named,
                problem: KeyProblem::ControlCharacter { .. },
            }) => assert_eq!(named, key),
            other => panic!("{key:?}: {other:?}"),
        }
    }
    assert_eq!(store.snapshot(), held);
    assert!(block_on(memory.validate()).unwrap().is_clean());

    // Moved to a key without it, then deleted.
    block_on(async {
        let value = memory.get(ZWSP).await?.unwrap();
        memory.put("status", value).await?;
        assert!(memory.delete(ZWSP).await?);
        assert!(!memory.delete(ZWSP).await?);
        Ok::<(), MemoryError>(())
    })
    .unwrap();
    assert_eq!(
        store.snapshot(),
        entries(&[("status", "green"), (SELECTOR, "love"), ("plain", "1")])
    );
    assert!(block_on(memory.validate()).unwrap().is_clean());

    // The old guard resumes from its snapshot, and still checks such a key.
    let resumed = Memory::resume(old_store.clone(), snapshot).unwrap();
    assert!(old_store.corrupt(SELECTOR));
    assert!(matches!(
        block_on(resumed.get(SELECTOR)),
        Err(MemoryError::Corrupt(_))
    ));
    assert_eq!(block_on(resumed.validate()).unwrap().keys(), [SELECTOR]);
}

#[test]
fn hostile_patterns_are_refused_with_a_typed_error() {
    let (_, memory) = guarded();
    let long = "*".repeat(MAX_PATTERN_LEN + 1);
    let cases: [(&str, PatternProblem); 5] = [
        ("", PatternProblem::Empty),
        (
            &long,
            PatternProblem::TooLong {
                len: MAX_PATTERN_LEN + 1,
            },
        ),
        ("a\r*", PatternProblem::ControlCharacter { at: 1 }),
        // Plain or escaped: it could match no key.
        ("a\\\u{1b}", PatternProblem::ControlCharacter { at: 2 }),
        ("trailing\\", PatternProblem::DanglingEscape),
    ];
    for (pattern, problem) in cases {
        match block_on(memory.query(pattern)) {
            Err(MemoryError::InvalidPattern {
                pattern: named,
                problem: p,
            }) => {
                assert_eq!(p, problem);
                assert!(named.chars().count() <= 81);
            }
            other => panic!("{pattern:?}: {other:?}"),
        }
        assert!(Pattern::new(pattern).is_err());
    }
    // The worst case for a backtracking matcher answers at once: quadratic, not
    // exponential.
    let key = "a".repeat(MAX_KEY_LEN);
    let pattern = format!("{}b", "a*".repeat(MAX_PATTERN_LEN / 2 - 1));
    assert!(!Pattern::new(&pattern).unwrap().matches(&key));
    // An invisible character, plain or escaped, is taken: a pattern is a read, and a
    // key stored before they were refused may hold one.
    assert!(Pattern::new("a\u{202e}*").unwrap().matches("a\u{202e}b"));
    assert!(Pattern::new("a\\\u{200b}").unwrap().matches("a\u{200b}"));
    assert_eq!(block_on(memory.query("a\u{202e}*")), Ok(Entries::new()));
}

fn key() -> impl Strategy<Value = String> {
    // Wildcards, escapes, `/` and non-ASCII included, so that literal patterns are
    // put to the test.
    "[a-c/*?\\\\é]{1,12}"
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/memory.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// `*` matches every key.
    #[test]
    fn a_star_matches_any_key(k in key()) {
        prop_assert!(Pattern::new("*").unwrap().matches(&k));
        prop_assert!(Pattern::any().matches(&k));
        prop_assert!(Pattern::new("**").unwrap().matches(&k));
    }

    /// A literal pattern matches its key and no other; written out, a key without
    /// wildcards is its own literal pattern.
    #[test]
    fn literal_patterns_match_only_themselves(k in key(), other in key()) {
        let literal = Pattern::literal(&k);
        prop_assert!(literal.matches(&k));
        prop_assert_eq!(literal.matches(&other), k == other);
        prop_assert!(literal.is_literal());
        // Written out and parsed back, it is the same pattern.
        let parsed = Pattern::new(literal.as_str()).unwrap();
        prop_assert_eq!(parsed.matches(&other), k == other);
        if !k.contains(['*', '?', '\\']) {
            prop_assert_eq!(Pattern::new(&k).unwrap().matches(&other), k == other);
        }
    }

    /// `prefix*` is "starts with", `*suffix` "ends with", and `n` times `?` "has n
    /// characters".
    #[test]
    fn stars_and_question_marks_mean_what_they_say(
        prefix in "[a-c/é]{0,4}", suffix in "[a-c/é]{0,4}", k in key(), n in 1usize..6,
    ) {
        prop_assert_eq!(
            Pattern::new(&format!("{prefix}*")).unwrap().matches(&k),
            k.starts_with(&prefix)
        );
        prop_assert_eq!(
            Pattern::new(&format!("*{suffix}")).unwrap().matches(&k),
            k.ends_with(&suffix)
        );
        prop_assert_eq!(
            Pattern::new(&"?".repeat(n)).unwrap().matches(&k),
            k.chars().count() == n
        );
    }

    /// A query returns exactly the entries whose keys match, checked, whatever the
    /// store (the crate's index-using store, and the trait's default over `entries`).
    #[test]
    fn a_query_returns_exactly_the_matching_entries(
        contents in proptest::collection::btree_map(key(), any::<Vec<u8>>(), 0..20),
        pattern in "[a-c/*?é]{1,6}",
    ) {
        let (_, memory) = guarded();
        let plain = Memory::new(Arc::new(Plain::default()));
        let p = Pattern::new(&pattern).unwrap();
        let expected: Entries =
            contents.iter().filter(|(k, _)| p.matches(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        block_on(async {
            for (k, v) in &contents {
                memory.put(k, v.clone()).await.unwrap();
                plain.put(k, v.clone()).await.unwrap();
            }
        });
        prop_assert_eq!(&block_on(memory.query(&pattern)).unwrap(), &expected);
        prop_assert_eq!(&block_on(plain.query(&pattern)).unwrap(), &expected);
    }
}

/// A store that implements only what the trait requires (its `query` is the
/// trait's default).
#[derive(Debug, Default)]
struct Plain(InMemoryStore);

#[concord::async_trait]
impl MemoryStore for Plain {
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError> {
        self.0.put(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        self.0.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
        self.0.delete(key).await
    }
    async fn entries(&self) -> Result<Entries, MemoryError> {
        self.0.entries().await
    }
    async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError> {
        self.0.replace_all(entries).await
    }
    async fn health(&self) -> Result<StoreHealth, MemoryError> {
        Ok(StoreHealth::new().with_warning("92% of quota used"))
    }
}

// ----- the write fence ----------------------------------------------------------

#[test]
fn a_fence_refuses_and_counts_every_write_and_reads_go_on() {
    let (store, memory) = guarded();
    block_on(async {
        memory.put("a", "1").await?;
        assert!(memory.fence("memory corruption", t(10)).await);
        // A second fence keeps the first's reason and time.
        assert!(!memory.fence("another", t(20)).await);
        for i in 0..3 {
            let e = memory.put("a", format!("{i}")).await.unwrap_err();
            assert_eq!(
                e,
                MemoryError::Fenced {
                    key: "a".into(),
                    reason: "memory corruption".into()
                }
            );
        }
        assert!(matches!(
            memory.delete("a").await,
            Err(MemoryError::Fenced { .. })
        ));
        assert!(matches!(
            memory.put("new", "x").await,
            Err(MemoryError::Fenced { .. })
        ));
        // Reads go on.
        assert_eq!(memory.get("a").await?, Some(b"1".to_vec()));
        assert_eq!(memory.query("*").await?.len(), 1);
        let fence = memory.fenced().expect("fenced");
        assert_eq!(
            (fence.reason.as_str(), fence.since, fence.refused),
            ("memory corruption", t(10), 5)
        );
        assert_eq!(store.snapshot(), entries(&[("a", "1")]));

        // Invalid keys are refused as such, not counted as fenced writes.
        assert!(matches!(
            memory.put("", "x").await,
            Err(MemoryError::InvalidKey { .. })
        ));
        assert_eq!(memory.refused_writes(), 5);

        let lifted = memory.unfence().expect("was fenced");
        assert_eq!(lifted.refused, 5);
        assert_eq!(memory.unfence(), None);
        memory.put("a", "2").await?;
        assert_eq!(memory.get("a").await?, Some(b"2".to_vec()));
        // A new fence counts from zero; the total goes on.
        memory.fence("drill", t(30)).await;
        let _ = memory.put("a", "3").await;
        assert_eq!(memory.fenced().map(|f| f.refused), Some(1));
        assert_eq!(memory.refused_writes(), 6);
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

/// A store whose writes wait until the test lets them through.
#[derive(Debug, Default)]
struct Gated {
    inner: InMemoryStore,
    gate: futures::lock::Mutex<()>,
}

#[concord::async_trait]
impl MemoryStore for Gated {
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError> {
        let _open = self.gate.lock().await;
        self.inner.put(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
        let _open = self.gate.lock().await;
        self.inner.delete(key).await
    }
    async fn entries(&self) -> Result<Entries, MemoryError> {
        self.inner.entries().await
    }
    async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError> {
        self.inner.replace_all(entries).await
    }
    async fn health(&self) -> Result<StoreHealth, MemoryError> {
        self.inner.health().await
    }
}

/// Guards the fence's promise: once `fence` returns, no write lands. A write already
/// at the store when the fence comes lands before `fence` returns, not after; a
/// write still waiting for its turn is refused.
#[test]
fn fence_returns_only_after_the_write_under_way_has_landed() {
    let store = Arc::new(Gated::default());
    let memory = Memory::new(store.clone());
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    let closed = block_on(store.gate.lock());

    let mut under_way = pin!(memory.put("a", "1"));
    assert!(under_way.as_mut().poll(&mut cx).is_pending()); // at the store, gated
    let mut waiting = pin!(memory.put("b", "2"));
    assert!(waiting.as_mut().poll(&mut cx).is_pending()); // waiting for its turn
    let mut fence = pin!(memory.fence("stop", t(0)));
    assert!(fence.as_mut().poll(&mut cx).is_pending()); // waits for "a" to land
    // New writes are refused at once, even before the fence returns.
    assert!(matches!(
        block_on(memory.put("c", "3")),
        Err(MemoryError::Fenced { .. })
    ));

    drop(closed);
    assert!(matches!(
        under_way.as_mut().poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(
        waiting.as_mut().poll(&mut cx),
        Poll::Ready(Err(MemoryError::Fenced { .. }))
    ));
    assert_eq!(fence.as_mut().poll(&mut cx), Poll::Ready(true));
    assert_eq!(store.inner.snapshot(), entries(&[("a", "1")]));
    assert_eq!(memory.refused_writes(), 2);
    assert!(block_on(memory.validate()).unwrap().is_clean());
}

// ----- backup, validate, restore ------------------------------------------------

#[derive(Debug, Clone)]
enum Harm {
    Corrupt,
    Remove,
    Replace(Vec<u8>),
}

fn contents() -> impl Strategy<Value = Entries> {
    proptest::collection::btree_map("[a-d/]{1,6}", any::<Vec<u8>>(), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/memory.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Back up, damage the live store behind the guard's back (flipped bits, lost
    /// entries, values replaced, entries slipped in), and validation names exactly the
    /// damaged keys, each with its kind of damage; restoring the backup brings every
    /// entry back byte for byte, and validation is clean again.
    #[test]
    fn validation_locates_exactly_the_damage_and_restore_repairs_it_byte_for_byte(
        contents in contents(),
        harms in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![
                Just(Harm::Corrupt),
                Just(Harm::Remove),
                any::<Vec<u8>>().prop_map(Harm::Replace),
            ]),
            0..8,
        ),
        intruders in proptest::collection::btree_map("[e-f]{1,4}", any::<Vec<u8>>(), 0..3),
    ) {
        let (store, memory) = guarded();
        block_on(async {
            for (k, v) in &contents {
                memory.put(k, v.clone()).await.unwrap();
            }
        });
        let backup = block_on(memory.backup(t(0))).unwrap();
        prop_assert!(backup.is_clean());
        prop_assert_eq!(backup.len(), contents.len());

        // The damage, and what it should be reported as.
        let keys: Vec<&String> = contents.keys().collect();
        for (at, harm) in &harms {
            let k = keys[at.index(keys.len())];
            match harm {
                Harm::Corrupt => { store.corrupt(k); }
                Harm::Remove => { block_on(store.delete(k)).unwrap(); }
                Harm::Replace(v) => block_on(store.put(k, v.clone())).unwrap(),
            }
        }
        for (k, v) in &intruders {
            block_on(store.put(k, v.clone())).unwrap();
        }
        let now = store.snapshot();
        let mut expected: Vec<(String, Damage)> = Vec::new();
        for k in contents.keys().chain(intruders.keys()).collect::<BTreeSet<_>>() {
            let damage = match (contents.get(k), now.get(k)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(_), Some(_)) => Damage::Altered,
                (Some(_), None) => Damage::Missing,
                (None, _) => Damage::Unexpected,
            };
            expected.push((k.clone(), damage));
        }

        let report = block_on(memory.validate()).unwrap();
        let found: Vec<(String, Damage)> =
            report.corrupt().iter().map(|c| (c.key.clone(), c.damage)).collect();
        prop_assert_eq!(&found, &expected);
        prop_assert_eq!(report.is_clean(), expected.is_empty());
        // The backup sees the same damage.
        let against = block_on(memory.validate_against(&backup)).unwrap();
        prop_assert_eq!(against.keys(), report.keys());
        // Reads refuse what is damaged, and serve the rest.
        for (k, v) in &contents {
            match expected.iter().find(|(e, _)| e == k) {
                Some(_) => assert!(matches!(block_on(memory.get(k)), Err(MemoryError::Corrupt(_)))),
                None => prop_assert_eq!(block_on(memory.get(k)).unwrap(), Some(v.clone())),
            }
        }

        block_on(memory.fence("memory corruption", t(1)));
        let evidence = block_on(memory.backup(t(1))).unwrap();
        prop_assert_eq!(evidence.suspect().iter().map(String::as_str).collect::<Vec<_>>(), report.keys());
        block_on(memory.restore(&backup)).unwrap();
        prop_assert_eq!(store.snapshot(), contents.clone());
        prop_assert!(block_on(memory.validate()).unwrap().is_clean());
        prop_assert_eq!(memory.fenced().map(|f| f.reason), Some("memory corruption".to_owned()));
        memory.unfence();
        for (k, v) in &contents {
            prop_assert_eq!(block_on(memory.get(k)).unwrap(), Some(v.clone()));
        }
    }

    /// A backup altered after it was taken (as JSON, where the host keeps it) is
    /// refused before anything is loaded: the live store and the guard's books stay
    /// exactly as they were.
    #[test]
    fn a_tampered_backup_is_refused_and_the_live_store_is_untouched(
        contents in contents(),
        live in contents(),
        tamper in 0usize..7,
        at in any::<prop::sample::Index>(),
    ) {
        let (store, memory) = guarded();
        block_on(async {
            for (k, v) in &contents {
                memory.put(k, v.clone()).await.unwrap();
            }
        });
        let backup = block_on(memory.backup(t(0))).unwrap();
        let mut json = serde_json::to_value(&backup).unwrap();
        // A backup read back intact is the same backup, and verifies.
        let back: Backup = serde_json::from_value(json.clone()).unwrap();
        prop_assert_eq!(&back, &backup);
        prop_assert!(back.verify().is_ok());

        let n = backup.len();
        let i = at.index(n);
        let list = json["entries"].as_array_mut().unwrap();
        let expect_entry_damage = match tamper {
            // A flipped bit in a value: the entry is named.
            0 => {
                let hex = list[i]["value"].as_str().unwrap().to_owned();
                let flipped = if hex.is_empty() { "00".to_owned() } else {
                    let first = u8::from_str_radix(&hex[..2], 16).unwrap() ^ 1;
                    format!("{first:02x}{}", &hex[2..])
                };
                list[i]["value"] = flipped.into();
                Some(backup.entries()[i].key().to_owned())
            }
            // Truncated: the last entries lost.
            1 => { list.truncate(i); None }
            // A value changed along with its digest: only the whole checksum knows.
            2 => {
                let key = backup.entries()[i].key().to_owned();
                let mut value = backup.entries()[i].value().to_vec();
                value.push(0x5a);
                let hex = format!("{}5a", list[i]["value"].as_str().unwrap());
                list[i]["value"] = hex.into();
                list[i]["digest"] = concord::memory::entry_digest(&key, &value).to_string().into();
                None
            }
            // An entry renamed.
            3 => { list[i]["key"] = format!("{}x", backup.entries()[i].key()).into(); None }
            // Taken at another time, or given another number.
            4 => { json["taken_at"] = (backup.taken_at().as_nanos() + 1).into(); None }
            5 => { json["id"] = 99.into(); None }
            // An entry added.
            _ => {
                let extra = list[i].clone();
                list.push(extra);
                None
            }
        };
        let tampered: Backup = serde_json::from_value(json).unwrap();
        let damage = tampered.verify().unwrap_err();
        if let Some(key) = expect_entry_damage {
            prop_assert_eq!(&damage, &BackupDamage::EntryAltered { key });
        }

        // Now the live store moves on; the tampered backup must not touch it.
        block_on(async {
            for (k, v) in &live {
                memory.put(k, v.clone()).await.unwrap();
            }
        });
        let before = store.snapshot();
        let tracked = memory.tracked_keys();
        let err = block_on(memory.restore(&tampered)).unwrap_err();
        prop_assert_eq!(err, MemoryError::CorruptBackup { id: tampered.id(), damage });
        prop_assert_eq!(store.snapshot(), before);
        prop_assert_eq!(memory.tracked_keys(), tracked);
        prop_assert!(block_on(memory.validate()).unwrap().is_clean());
        // Nor is it switched to, nor validated against.
        let standby = Arc::new(InMemoryStore::new());
        assert!(matches!(
            block_on(memory.switch_to_with(standby.clone(), &tampered)),
            Err(MemoryError::CorruptBackup { .. })
        ));
        prop_assert!(standby.is_empty());
        assert!(matches!(
            block_on(memory.validate_against(&tampered)),
            Err(MemoryError::CorruptBackup { .. })
        ));
    }
}

#[test]
fn a_truncated_or_garbled_backup_does_not_even_read_back() {
    let (_, memory) = guarded();
    block_on(memory.put("a", "1")).unwrap();
    let json = serde_json::to_string(&block_on(memory.backup(t(0))).unwrap()).unwrap();
    assert!(serde_json::from_str::<Backup>(&json[..json.len() / 2]).is_err());
    let garbled = json.replace("\"31\"", "\"3g\""); // "1" in hex, made not hex
    assert_ne!(garbled, json);
    assert!(serde_json::from_str::<Backup>(&garbled).is_err());
}

#[test]
fn out_of_order_entries_and_invalid_keys_in_a_backup_are_named() {
    let (_, memory) = guarded();
    block_on(async {
        memory.put("a", "1").await?;
        memory.put("b", "2").await
    })
    .unwrap();
    let backup = block_on(memory.backup(t(0))).unwrap();
    let mut json = serde_json::to_value(&backup).unwrap();
    json["entries"].as_array_mut().unwrap().swap(0, 1);
    let swapped: Backup = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(
        swapped.verify(),
        Err(BackupDamage::OutOfOrder { key: "a".into() })
    );

    json["entries"].as_array_mut().unwrap().swap(0, 1);
    json["entries"][1]["key"] = "b\n".into();
    let bad: Backup = serde_json::from_value(json).unwrap();
    assert_eq!(
        bad.verify(),
        Err(BackupDamage::InvalidKey {
            key: "b\n".into(),
            problem: KeyProblem::ControlCharacter { at: 1 }
        })
    );
    let e = block_on(memory.restore(&bad)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "backup#1 is corrupt and was not loaded: invalid key \"b\\n\": it holds a control or invisible character at byte 1"
    );
}

#[test]
fn a_backup_of_corrupt_memory_is_evidence_and_is_never_restored() {
    let (store, memory) = guarded();
    block_on(async {
        memory.put("a", "1").await?;
        memory.put("b", "2").await?;
        let good = memory.backup(t(0)).await?;
        store.corrupt("b");
        let evidence = memory.backup(t(1)).await?;
        assert_eq!(evidence.suspect(), ["b"]);
        assert!(!evidence.is_clean());
        assert!(evidence.verify().is_ok()); // intact, but not a good state
        assert_eq!(
            memory.restore(&evidence).await,
            Err(MemoryError::SuspectBackup {
                id: evidence.id(),
                count: 1,
                first: "b".into()
            })
        );
        assert_eq!(
            last_good_backup(&[good.clone(), evidence.clone()]),
            Some(&good)
        );
        memory.restore(&good).await?;
        assert_eq!(memory.get("b").await?, Some(b"2".to_vec()));
        assert!(evidence.id() > good.id());
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

#[test]
fn open_trusts_what_a_store_holds_and_new_does_not() {
    let store = Arc::new(InMemoryStore::with_entries(entries(&[("a", "1"), ("b", "2")])).unwrap());
    let fresh = Memory::new(store.clone());
    let report = block_on(fresh.validate()).unwrap();
    assert_eq!(report.keys_with(Damage::Unexpected), ["a", "b"]);
    assert!(matches!(
        block_on(fresh.get("a")),
        Err(MemoryError::Corrupt(_))
    ));
    assert_eq!(block_on(fresh.adopt()).unwrap(), 2);
    assert_eq!(block_on(fresh.get("a")).unwrap(), Some(b"1".to_vec()));

    let opened = block_on(Memory::open(store.clone())).unwrap();
    assert_eq!(opened.tracked_keys(), 2);
    assert!(block_on(opened.validate()).unwrap().is_clean());
    assert!(InMemoryStore::with_entries(entries(&[("", "x")])).is_err());
    // Backup numbers go on from where the host says.
    let numbered = Memory::new(store).with_next_backup_id(BackupId::new(41));
    assert_eq!(
        block_on(numbered.backup(t(0))).unwrap().id(),
        BackupId::new(41)
    );
    assert_eq!(
        block_on(numbered.backup(t(0))).unwrap().id(),
        BackupId::new(42)
    );
}

// ----- switching stores ---------------------------------------------------------

#[test]
fn switching_to_a_standby_that_holds_the_same_memory() {
    let (primary, memory) = guarded();
    block_on(async {
        memory.put("a", "1").await?;
        memory.put("b", "2").await?;
        // A replica that kept up.
        let replica = Arc::new(InMemoryStore::with_entries(primary.snapshot())?);
        primary.corrupt("a");
        let previous = memory.switch_to(replica.clone()).await?;
        assert!(std::ptr::addr_eq(
            Arc::as_ptr(&previous),
            Arc::as_ptr(&primary)
        ));
        assert_eq!(memory.get("a").await?, Some(b"1".to_vec()));
        memory.put("c", "3").await?;
        assert_eq!(replica.len(), 3);
        assert!(memory.validate().await?.is_clean());
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

#[test]
fn a_standby_that_diverges_is_not_switched_to_but_can_be_loaded_from_a_backup() {
    let (primary, memory) = guarded();
    block_on(async {
        memory.put("a", "1").await?;
        memory.put("b", "2").await?;
        let good = memory.backup(t(0)).await?;
        memory.put("c", "3").await?;
        // A replica that lags one write behind, and replicated a corruption.
        let lagging = Arc::new(InMemoryStore::with_entries(entries(&[("a", "1"), ("b", "2")]))?);
        lagging.corrupt("b");
        let err = memory.switch_to(lagging.clone()).await.unwrap_err();
        let MemoryError::StandbyDiverges { report } = &err else { panic!("{err:?}") };
        assert_eq!(report.keys(), ["b", "c"]);
        assert_eq!(report.keys_with(Damage::Missing), ["c"]);
        assert_eq!(
            err.to_string(),
            format!(
                "the standby store differs from memory at 2 keys (first: {}), so it was not switched to",
                report.corrupt()[0]
            )
        );
        // Still on the primary.
        memory.put("d", "4").await?;
        assert_eq!(primary.len(), 4);

        let previous = memory.switch_to_with(lagging.clone(), &good).await?;
        assert_eq!(previous.entries().await?.len(), 4);
        assert_eq!(lagging.snapshot(), entries(&[("a", "1"), ("b", "2")]));
        assert!(memory.validate().await?.is_clean());
        assert_eq!(memory.get("c").await?, None);
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

// ----- pruning ------------------------------------------------------------------

fn daily_backups(memory: &Memory, days: u64) -> Vec<Backup> {
    (0..days)
        .map(|d| {
            block_on(memory.put("day", d.to_string())).unwrap();
            block_on(memory.backup(t(d * 86_400))).unwrap()
        })
        .collect()
}

#[test]
fn pruning_keeps_the_newest_and_the_recent_and_never_the_last_good_one() {
    let (store, memory) = guarded();
    let mut backups = daily_backups(&memory, 10);
    let now = t(9 * 86_400);

    // Seven days' worth, counting today: days 2 to 9.
    let pruned = prune_backups(&mut backups, &Retention::default(), now);
    assert_eq!(
        pruned.iter().map(|b| b.id().get()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(backups.len(), 8);

    // Keep the newest three, whatever their age.
    let later = t(30 * 86_400);
    let pruned = prune_backups(&mut backups, &Retention::default().with_keep_last(3), later);
    assert_eq!(pruned.len(), 5);
    assert_eq!(
        backups.iter().map(|b| b.id().get()).collect::<Vec<_>>(),
        [8, 9, 10]
    );

    // The newest backups are evidence of corruption (suspect) or damaged: the last
    // good one stays however old, and nothing else.
    store.corrupt("day");
    let suspect = block_on(memory.backup(t(31 * 86_400))).unwrap();
    let mut damaged = serde_json::to_value(&backups[2]).unwrap();
    damaged["taken_at"] = t(32 * 86_400).as_nanos().into();
    let damaged: Backup = serde_json::from_value(damaged).unwrap();
    backups.push(suspect);
    backups.push(damaged);
    let pruned = prune_backups(
        &mut backups,
        &Retention::default()
            .with_keep_last(0)
            .with_max_age(Duration::ZERO),
        t(40 * 86_400),
    );
    assert_eq!(pruned.len(), 4);
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].id().get(), 10);
    assert_eq!(last_good_backup(&backups).map(|b| b.id().get()), Some(10));

    // Retention is serde data with the procedures' defaults.
    let r: Retention = serde_json::from_str("{}").unwrap();
    assert_eq!(r, Retention::default());
    assert_eq!(r.max_age, Duration::from_secs(7 * 86_400));
    let r: Retention = serde_json::from_str(r#"{"keep_last": 5, "max_age": 3600000}"#).unwrap();
    assert_eq!(
        r,
        Retention::default()
            .with_keep_last(5)
            .with_max_age(Duration::from_secs(3600))
    );
    assert!(serde_json::from_str::<Retention>(r#"{"keep": 5}"#).is_err());
    assert!(prune_backups(&mut Vec::new(), &r, now).is_empty());
}

// ----- a store that fails -------------------------------------------------------

#[test]
fn a_failing_store_is_reported_and_nothing_is_recorded() {
    let (store, memory) = guarded();
    block_on(memory.put("a", "1")).unwrap();
    let backup = block_on(memory.backup(t(0))).unwrap();
    store.fail_with(Some("connection refused".into()));
    let down = MemoryError::store("connection refused");
    assert_eq!(block_on(memory.put("a", "2")), Err(down.clone()));
    assert_eq!(block_on(memory.get("a")), Err(down.clone()));
    assert_eq!(block_on(memory.validate()), Err(down.clone()));
    assert_eq!(block_on(memory.restore(&backup)), Err(down.clone()));
    assert_eq!(block_on(memory.health()), Err(down.clone()));
    assert_eq!(down.to_string(), "memory store failed: connection refused");
    store.fail_with(None);
    // The failed put did not land; the guard accepts that.
    assert_eq!(block_on(memory.get("a")).unwrap(), Some(b"1".to_vec()));
    assert!(block_on(memory.validate()).unwrap().is_clean());
}

/// A store that applies a write and then reports it failed, as a remote store does
/// when the answer times out.
#[derive(Debug, Default)]
struct Unsure(InMemoryStore);

#[concord::async_trait]
impl MemoryStore for Unsure {
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), MemoryError> {
        self.0.put(key, value).await?;
        Err(MemoryError::store("timed out"))
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MemoryError> {
        self.0.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<bool, MemoryError> {
        self.0.delete(key).await?;
        Err(MemoryError::store("timed out"))
    }
    async fn entries(&self) -> Result<Entries, MemoryError> {
        self.0.entries().await
    }
    async fn replace_all(&self, entries: Entries) -> Result<(), MemoryError> {
        self.0.replace_all(entries).await
    }
    async fn health(&self) -> Result<StoreHealth, MemoryError> {
        self.0.health().await
    }
}

/// Guards against calling a write the store half applied "corruption": after a
/// failed write the key may hold the old value or the new one.
#[test]
fn a_write_the_store_may_have_applied_is_not_taken_for_corruption() {
    let store = Arc::new(Unsure::default());
    let memory = Memory::new(store.clone());
    block_on(async {
        assert!(memory.put("a", "1").await.is_err());
        assert!(memory.put("b", "1").await.is_err());
        assert!(memory.put("b", "2").await.is_err());
        assert!(memory.delete("b").await.is_err());
        assert_eq!(memory.get("a").await?, Some(b"1".to_vec()));
        assert!(memory.validate().await?.is_clean());
        // Settled: the key is known again, and a change now is corruption.
        assert_eq!(memory.tracked_keys(), 1);
        store.0.corrupt("a");
        assert_eq!(memory.validate().await?.keys_with(Damage::Altered), ["a"]);
        Ok::<(), MemoryError>(())
    })
    .unwrap();
}

#[test]
fn concurrent_writes_through_one_guard_keep_the_checksums_in_step() {
    let (store, memory) = guarded();
    let writes = (0..200).map(|i| memory.put(["x", "y", "z"][i % 3], format!("{i}")));
    let reads = (0..200).map(|i| memory.get(["x", "y", "z"][i % 3]));
    let (w, r) = block_on(futures::future::join(
        futures::future::join_all(writes),
        futures::future::join_all(reads),
    ));
    assert!(w.iter().all(Result::is_ok));
    assert!(r.iter().all(Result::is_ok));
    assert!(block_on(memory.validate()).unwrap().is_clean());
    assert_eq!(store.len(), 3);
}

// ----- the memory health check --------------------------------------------------

#[test]
fn the_memory_check_reports_healthy_degraded_unhealthy_and_failed() {
    let clock = ManualClock::new(t(0));
    let (store, memory) = guarded();
    let memory = Arc::new(memory);
    let diagnostics = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()))
        .with_check(MemoryCheck::new(Arc::clone(&memory)));
    let line = || {
        let report = block_on(diagnostics.run());
        report.check("memory").cloned().expect("the memory line")
    };
    block_on(memory.put("a", "1")).unwrap();

    let healthy = line();
    assert_eq!(healthy.status, HealthStatus::Healthy);
    assert_eq!(healthy.reason, "1 entry checked, none corrupt");
    assert_eq!(healthy.details["entries"], "1");

    block_on(memory.fence("memory corruption", t(5)));
    let _ = block_on(memory.put("a", "2"));
    let degraded = line();
    assert_eq!(degraded.status, HealthStatus::Degraded);
    assert!(
        degraded.reason.contains("writes stopped since"),
        "{}",
        degraded.reason
    );
    assert!(
        degraded.reason.contains("(memory corruption); 1 refused"),
        "{}",
        degraded.reason
    );

    store.corrupt("a");
    let unhealthy = line();
    assert_eq!(unhealthy.status, HealthStatus::Unhealthy); // corruption outranks the fence
    assert!(
        unhealthy
            .reason
            .starts_with("1 of 1 entry corrupt: `a` is altered"),
        "{}",
        unhealthy.reason
    );
    assert_eq!(unhealthy.details["corrupt"], "1");

    store.fail_with(Some("connection refused".into()));
    let failed = line();
    assert_eq!(failed.status, HealthStatus::Failed);
    assert!(
        failed.reason.contains("connection refused"),
        "{}",
        failed.reason
    );

    store.fail_with(None);
    block_on(memory.adopt()).unwrap();
    memory.unfence();
    assert_eq!(line().status, HealthStatus::Healthy);
}

#[test]
fn the_memory_check_can_report_the_last_validation_and_the_stores_warning() {
    let clock = ManualClock::new(t(0));
    let store = Arc::new(Plain::default());
    let memory = Arc::new(Memory::new(store.clone()));
    let check = MemoryCheck::new(Arc::clone(&memory)).with_validation(false);
    let diagnostics = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock)).with_check(check);
    let line = || {
        block_on(diagnostics.run())
            .check("memory")
            .cloned()
            .unwrap()
    };

    let first = line();
    assert_eq!(first.status, HealthStatus::Degraded); // the store warns
    assert_eq!(
        first.reason,
        "not validated yet; the store warns: 92% of quota used"
    );
    block_on(memory.put("a", "1")).unwrap();
    store.0.corrupt("a");
    assert_eq!(line().status, HealthStatus::Degraded); // not looked at yet
    block_on(memory.validate()).unwrap();
    assert_eq!(line().status, HealthStatus::Unhealthy);
}

#[test]
fn memory_errors_convert_into_the_crate_error() {
    let e: concord::Error = MemoryError::store("down").into();
    assert_eq!(e.to_string(), "memory store failed: down");
    // The main types are at the crate root too.
    let _: Arc<dyn concord::MemoryStore> = Arc::new(concord::InMemoryStore::new());
    let _ = concord::Memory::new(Arc::new(InMemoryStore::new()));
}

// ----- the guard's own state survives a restart --------------------------------------

#[test]
fn a_resumed_guard_finds_corruption_that_happened_while_it_was_down() {
    let (store, memory) = guarded();
    block_on(memory.put("a", b"1".to_vec())).unwrap();
    block_on(memory.put("b", b"2".to_vec())).unwrap();
    let first = block_on(memory.backup(t(10))).unwrap();
    block_on(memory.fence("drill", t(20)));
    assert!(block_on(memory.put("c", b"3".to_vec())).is_err());
    let kept = serde_json::to_string(&memory.snapshot()).unwrap();
    drop(memory);

    // Down: a bit flips. A guard that opens the store trusts the flip...
    store.corrupt("b");
    let trusting = block_on(Memory::open(store.clone())).unwrap();
    assert!(block_on(trusting.validate()).unwrap().is_clean());
    // ...one resumed from its snapshot finds it, and keeps its fence and numbers.
    let snapshot: MemorySnapshot = serde_json::from_str(&kept).unwrap();
    let resumed = Memory::resume(store.clone(), snapshot.clone()).unwrap();
    assert_eq!(block_on(resumed.validate()).unwrap().keys(), ["b"]);
    assert!(
        block_on(resumed.get("b")).is_err(),
        "corrupt data is not handed out"
    );
    let fence = resumed.fenced().unwrap();
    assert_eq!((fence.reason.as_str(), fence.refused), ("drill", 1));
    assert_eq!(resumed.refused_writes(), 1);
    let second = block_on(resumed.backup(t(30))).unwrap();
    assert!(second.id() > first.id(), "backup numbers go on rising");
    assert_eq!(resumed.snapshot().checksums, snapshot.checksums);
    // Restoring the clean backup repairs it.
    block_on(resumed.restore(&first)).unwrap();
    assert!(block_on(resumed.validate()).unwrap().is_clean());
}

#[test]
fn a_snapshot_that_does_not_add_up_is_refused_by_name() {
    let (_, memory) = guarded();
    block_on(memory.put("a", b"1".to_vec())).unwrap();
    block_on(memory.fence("drill", t(5)));
    let good = serde_json::to_value(memory.snapshot()).unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("version", serde_json::json!(99)),
        ("refused", serde_json::json!(0)),
        (
            "checksums",
            serde_json::json!({ "": good["checksums"]["a"] }),
        ),
        ("uncertain", serde_json::json!({ "a": [] })),
    ];
    for (field, value) in cases {
        let mut bad = good.clone();
        if field == "refused" {
            bad["fence"]["refused"] = serde_json::json!(3);
        }
        bad[field] = value;
        let snapshot: MemorySnapshot = serde_json::from_value(bad).unwrap();
        let err = Memory::resume(Arc::new(InMemoryStore::new()), snapshot).unwrap_err();
        assert!(
            matches!(err, MemoryError::CorruptSnapshot { .. }),
            "{field}: {err}"
        );
    }
    // A digest that is not one, or a field nobody knows, does not even parse.
    let mut bad = good.clone();
    bad["checksums"]["a"] = serde_json::json!("zz");
    assert!(serde_json::from_value::<MemorySnapshot>(bad).is_err());
    let mut bad = good;
    bad["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<MemorySnapshot>(bad).is_err());
}

/// Guards the bug where `resume` took a refused count at `u64::MAX` and the next
/// fenced write panicked adding one to it (debug builds), with the books locked.
#[test]
fn a_refused_count_past_what_a_guard_counts_is_refused_by_name() {
    for (refused, fence_refused) in [(u64::MAX, u64::MAX), (u64::MAX, 0), (1 << 63, 1)] {
        let snapshot: MemorySnapshot = serde_json::from_value(serde_json::json!({
            "version": 1,
            "fence": {"reason": "drill", "since": 1, "refused": fence_refused},
            "refused": refused,
        }))
        .unwrap();
        let err = Memory::resume(Arc::new(InMemoryStore::new()), snapshot).unwrap_err();
        assert!(
            matches!(&err, MemoryError::CorruptSnapshot { reason } if reason.contains("refused")),
            "{refused}: {err}"
        );
    }
    // The largest count it takes goes on counting (and would saturate, not panic).
    let snapshot: MemorySnapshot = serde_json::from_value(serde_json::json!({
        "version": 1,
        "fence": {"reason": "drill", "since": 1, "refused": (1u64 << 63) - 1},
        "refused": (1u64 << 63) - 1,
    }))
    .unwrap();
    let memory = Memory::resume(Arc::new(InMemoryStore::new()), snapshot).unwrap();
    assert!(matches!(
        block_on(memory.put("k", b"v".to_vec())),
        Err(MemoryError::Fenced { .. })
    ));
    assert_eq!(memory.refused_writes(), 1 << 63);
    assert_eq!(memory.fenced().unwrap().refused, 1 << 63);
}

/// Guards the bug where the backup after id `u64::MAX` (set with
/// `with_next_backup_id` or resumed as `last_backup`) panicked adding one to it.
#[test]
fn backup_ids_run_out_with_a_typed_error_not_a_wrap() {
    let (store, memory) = guarded();
    block_on(memory.put("a", b"1".to_vec())).unwrap();
    let memory = memory.with_next_backup_id(BackupId::new(u64::MAX));
    assert_eq!(
        block_on(memory.backup(t(1))).unwrap().id(),
        BackupId::new(u64::MAX)
    );
    let err = block_on(memory.backup(t(2))).unwrap_err();
    assert_eq!(
        err,
        MemoryError::BackupIdsExhausted {
            last: BackupId::new(u64::MAX)
        }
    );
    assert_eq!(
        err.to_string(),
        "no backup id is left: backup#18446744073709551615 was the last one"
    );
    // The guard's own snapshot resumes, and refuses the same way.
    let snapshot = memory.snapshot();
    assert_eq!(snapshot.last_backup, u64::MAX);
    let resumed = Memory::resume(store, snapshot).unwrap();
    assert!(matches!(
        block_on(resumed.backup(t(3))),
        Err(MemoryError::BackupIdsExhausted { .. })
    ));
    // Nothing else stops: writes and validation go on.
    block_on(resumed.put("b", b"2".to_vec())).unwrap();
    assert!(block_on(resumed.validate()).unwrap().is_clean());
}
