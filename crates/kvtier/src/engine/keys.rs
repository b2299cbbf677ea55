//! Engine keys -> kvtier sequence hashes.
//!
//! An engine key is opaque bytes (vLLM: the block hash plus the KV-cache
//! group; SGLang: a page-hash string). It becomes a 128-bit
//! [`SequenceHash`]: the high 64 bits are the engine's own block hash (the
//! key's last eight bytes, big-endian: what vLLM publishes in its KV events,
//! so kvtier's events name blocks as the engine does), the low 64 bits
//! `xxh3_64(key, seed = namespace salt)`. The block store indexes the low 64
//! bits and confirms the full 128 bits on every hit, so two keys sharing 64
//! bits cost at most a hit and are never served each other's bytes; the
//! same key in two namespaces is two blocks.

use kvtier_logical::SequenceHash;

/// Hashes engine keys within one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher for the namespace whose salt is `seed`.
    pub fn new(seed: u64) -> KeyHasher {
        KeyHasher { seed }
    }

    /// The sequence hash of `key` (never [`SequenceHash::ROOT`]).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> SequenceHash {
        let engine = kvtier_events::engine_key_low64(key) as u128;
        let h = engine << 64 | xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed) as u128;
        SequenceHash(if h == SequenceHash::ROOT.0 { 1 } else { h })
    }

    /// The hashes of `keys`, in order.
    pub fn hash_all<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<SequenceHash> {
        keys.iter().map(|k| self.hash(k.as_ref())).collect()
    }
}
