//! A small, fast, deterministic hasher for integer keys on hot paths.
//!
//! The Fx hash (from Firefox and rustc): one rotate, xor and multiply per word. Not
//! resistant to hash flooding, which is fine for ids the crate or its host issue; never
//! used where iteration order could leak into outputs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The Fx hasher.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        // The tail (up to seven bytes) as one word, its length in the top byte so
        // that tails differing only by trailing zeros differ: one multiply for a
        // short name, not one per byte.
        let tail = chunks.remainder();
        if !tail.is_empty() {
            // Byte by byte into the word (as `from_le_bytes` of the tail padded with
            // zeros): a copy of a few bytes into a buffer is a call to `memcpy`.
            let word = tail
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, &b)| w | u64::from(b) << (8 * i));
            self.add(word | (tail.len() as u64) << 56);
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` keyed through [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash(s: &[u8]) -> u64 {
        let mut h = FxHasher::default();
        h.write(s);
        h.finish()
    }

    /// Tails that differ only by trailing zeros (or by nothing but their length)
    /// hash apart, at every tail length and after whole words.
    #[test]
    fn tails_differing_by_trailing_zeros_differ() {
        for prefix in [&b""[..], b"12345678"] {
            let mut seen = std::collections::BTreeSet::new();
            for len in 0..8 {
                let mut bytes = prefix.to_vec();
                bytes.extend(std::iter::repeat_n(0u8, len));
                assert!(seen.insert(hash(&bytes)), "{bytes:?} collides");
                bytes.truncate(prefix.len());
                bytes.push(b'a');
                bytes.extend(std::iter::repeat_n(0u8, len));
                assert!(seen.insert(hash(&bytes)), "{bytes:?} collides");
            }
        }
        let str_hash = |s: &str| {
            let mut h = FxHasher::default();
            s.hash(&mut h);
            h.finish()
        };
        assert_ne!(str_hash("s1"), str_hash("s10"));
        assert_ne!(str_hash("a"), str_hash("a\0"));
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/hash.txt"))]

        /// The tail is the word its bytes make, zero-padded, with its length in the
        /// top byte.
        #[test]
        fn the_tail_is_one_padded_word(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let mut expected = FxHasher::default();
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                expected.add(u64::from_le_bytes(c.try_into().unwrap()));
            }
            let tail = chunks.remainder();
            if !tail.is_empty() {
                let mut w = [0u8; 8];
                w[..tail.len()].copy_from_slice(tail);
                w[7] = tail.len() as u8;
                expected.add(u64::from_le_bytes(w));
            }
            proptest::prop_assert_eq!(hash(&bytes), expected.finish());
        }
    }
}
