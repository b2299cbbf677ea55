//! Which hash (and tokens) a kvtier block is published under.
//!
//! Routers match requests on the engine's own block hash, so a block that came
//! from an engine must be published under the engine's key, never a re-hash:
//! vLLM publishes the low 64 bits of its block key, read big-endian, as an
//! unsigned integer ([`engine_key_low64`]). A [`BlockKeys`] gives the publisher
//! that mapping:
//!
//! - [`Low64`]: kvtier's own [`SequenceHash`], low 64 bits (trace replays, and
//!   engines whose kvtier hash is derived so that this equals their key).
//! - [`EngineKeys`]: a table the engine glue fills with each block's engine
//!   key (and, optionally, its tokens) before registering it; blocks it does
//!   not know fall back to [`Low64`] and are counted.
//! - any `FnMut(SequenceHash) -> u64` closure.
//!
//! Two kvtier hashes may map to the same 64-bit hash: the publisher counts
//! holders per published hash and medium, so the set it announces stays exact.

use kvtier_logical::SequenceHash;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Maps kvtier blocks to what routers know them by. Called on the publisher's
/// own thread, never under a store lock.
pub trait BlockKeys: Send + 'static {
    /// The 64-bit hash `hash` is published under.
    fn block_hash(&mut self, hash: SequenceHash) -> u64;

    /// Append the block's token ids to `out` (exactly `block_size` of them),
    /// or nothing when they are unknown (the default).
    fn token_ids(&mut self, hash: SequenceHash, out: &mut Vec<u32>) {
        let _ = (hash, out);
    }
}

/// kvtier's own hash, low 64 bits; no tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Low64;

impl BlockKeys for Low64 {
    fn block_hash(&mut self, hash: SequenceHash) -> u64 {
        hash.low64()
    }
}

impl<F: FnMut(SequenceHash) -> u64 + Send + 'static> BlockKeys for F {
    fn block_hash(&mut self, hash: SequenceHash) -> u64 {
        self(hash)
    }
}

/// The integer vLLM publishes for a block key: its last 8 bytes, big-endian
/// (`int.from_bytes(key, "big") & (2**64 - 1)`). Shorter keys are
/// zero-extended on the left.
pub fn engine_key_low64(key: &[u8]) -> u64 {
    let tail = &key[key.len().saturating_sub(8)..];
    tail.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b))
}

/// One block's identity on the engine's side.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EngineBlock {
    hash: u64,
    tokens: Option<Arc<[u32]>>,
}

/// A shared table from kvtier hashes to engine keys, filled by the engine glue
/// (cheap to clone: every clone is the same table).
///
/// Contract: insert a block's key before registering the block in any tier,
/// and forget it only once the engine can no longer register it (for example
/// from the engine's own eviction callback, or not at all for a bounded
/// working set). A block published while unknown is published under
/// [`Low64`] and counted in [`EngineKeys::misses`].
#[derive(Clone, Debug, Default)]
pub struct EngineKeys {
    table: Arc<RwLock<HashMap<SequenceHash, EngineBlock>>>,
    misses: Arc<AtomicU64>,
}

impl EngineKeys {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that `hash` is the engine block whose key is `key` (vLLM's
    /// bytes; see [`engine_key_low64`]), with its tokens if known.
    pub fn insert_key(&self, hash: SequenceHash, key: &[u8], tokens: Option<&[u32]>) {
        self.insert(hash, engine_key_low64(key), tokens);
    }

    /// Record that `hash` is published as `engine_hash`, with its tokens if known.
    pub fn insert(&self, hash: SequenceHash, engine_hash: u64, tokens: Option<&[u32]>) {
        self.table.write().insert(
            hash,
            EngineBlock {
                hash: engine_hash,
                tokens: tokens.map(Arc::from),
            },
        );
    }

    /// Forget `hash` (see the contract above).
    pub fn forget(&self, hash: SequenceHash) {
        self.table.write().remove(&hash);
    }

    /// Number of blocks known.
    pub fn len(&self) -> usize {
        self.table.read().len()
    }

    /// Whether no block is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks published while unknown (under their kvtier hash).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

impl BlockKeys for EngineKeys {
    fn block_hash(&mut self, hash: SequenceHash) -> u64 {
        match self.table.read().get(&hash) {
            Some(b) => b.hash,
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                hash.low64()
            }
        }
    }

    fn token_ids(&mut self, hash: SequenceHash, out: &mut Vec<u32>) {
        if let Some(t) = self.table.read().get(&hash).and_then(|b| b.tokens.clone()) {
            out.extend_from_slice(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low64_of_an_engine_key_is_its_big_endian_tail() {
        let mut key = [0u8; 32];
        key[24..].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        key[0] = 0xff; // high bytes are dropped
        assert_eq!(engine_key_low64(&key), 0x0102_0304_0506_0708);
        assert_eq!(engine_key_low64(&[1, 2]), 0x0102);
        assert_eq!(engine_key_low64(&[]), 0);
    }

    #[test]
    fn engine_keys_map_known_blocks_and_count_misses() {
        let keys = EngineKeys::new();
        let mut k = keys.clone();
        keys.insert_key(SequenceHash(5), &9u64.to_be_bytes(), Some(&[1, 2]));
        assert_eq!(k.block_hash(SequenceHash(5)), 9);
        let mut toks = Vec::new();
        k.token_ids(SequenceHash(5), &mut toks);
        assert_eq!(toks, vec![1, 2]);
        assert_eq!(k.block_hash(SequenceHash((7u128 << 64) | 3)), 3);
        assert_eq!(keys.misses(), 1);
        keys.forget(SequenceHash(5));
        assert!(keys.is_empty());
        let mut f = |h: SequenceHash| h.low64() % 7;
        assert_eq!(BlockKeys::block_hash(&mut f, SequenceHash(9)), 2);
    }
}
