//! Sequence hashing: a 128-bit identity for a block and its whole lineage.
//!
//! A block's hash is `xxh3_128(parent_hash || position || payload)` seeded with the
//! tenant/model salt. The parent of the first block is [`SequenceHash::ROOT`].
//! Everything is little-endian and seed-fixed, so the same tokens give the same
//! hash in every process and on every machine: the disk tier and any shared tier
//! rely on it.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// Identity of a block *and every token before it*, at its position.
///
/// Invariant: equal hashes mean equal lineage (up to 128-bit collisions).
/// Serialized as 32 lower-case hex digits (JSON consumers cannot hold a u128).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceHash(pub u128);

impl Serialize for SequenceHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for SequenceHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u128::from_str_radix(&s, 16)
            .map(SequenceHash)
            .map_err(|e| serde::de::Error::custom(format!("bad sequence hash `{s}`: {e}")))
    }
}

impl SequenceHash {
    /// The virtual parent of a sequence's first block.
    pub const ROOT: SequenceHash = SequenceHash(0);

    /// Low 64 bits, already uniformly distributed (used as the hash-map key).
    #[inline]
    pub fn low64(self) -> u64 {
        self.0 as u64
    }
}

impl std::fmt::Debug for SequenceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SequenceHash({:032x})", self.0)
    }
}

impl std::fmt::Display for SequenceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A salt separating tenants / models: two salts never share a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheSalt(pub u64);

impl CacheSalt {
    /// Derive a salt from a textual name (model id, tenant id), stably.
    pub fn from_name(name: &str) -> Self {
        CacheSalt(xxhash_rust::xxh3::xxh3_64(name.as_bytes()))
    }
}

/// Hash one block given its parent, its position in the sequence and its payload
/// bytes (token ids, little-endian).
#[inline]
pub fn chain_hash(
    salt: CacheSalt,
    parent: SequenceHash,
    position: u32,
    payload: &[u8],
) -> SequenceHash {
    // Fixed-size header on the stack; payload appended only when it is small.
    let mut buf = [0u8; 20 + 64];
    buf[..16].copy_from_slice(&parent.0.to_le_bytes());
    buf[16..20].copy_from_slice(&position.to_le_bytes());
    if payload.len() <= 64 {
        buf[20..20 + payload.len()].copy_from_slice(payload);
        SequenceHash(xxh3_128_with_seed(&buf[..20 + payload.len()], salt.0))
    } else {
        let mut v = Vec::with_capacity(20 + payload.len());
        v.extend_from_slice(&buf[..20]);
        v.extend_from_slice(payload);
        SequenceHash(xxh3_128_with_seed(&v, salt.0))
    }
}

/// Hash the full blocks of a token sequence: one hash per complete block of
/// `block_size` tokens (a trailing partial block has no hash yet).
pub fn hash_tokens(salt: CacheSalt, tokens: &[u32], block_size: usize) -> Vec<SequenceHash> {
    assert!(block_size > 0, "block_size must be positive");
    let mut out = Vec::with_capacity(tokens.len() / block_size);
    let mut parent = SequenceHash::ROOT;
    let mut bytes = Vec::with_capacity(block_size * 4);
    for (pos, chunk) in tokens.chunks_exact(block_size).enumerate() {
        bytes.clear();
        for t in chunk {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        parent = chain_hash(salt, parent, pos as u32, &bytes);
        out.push(parent);
    }
    out
}

/// Map a trace's `hash_ids` (one id per block, each already standing for a
/// prefix) onto the same chained hash type: id `i` at position `p` becomes
/// `chain_hash(salt, hash(i-1), p, id_le_bytes)`.
pub fn hash_trace_ids(salt: CacheSalt, ids: &[u64]) -> Vec<SequenceHash> {
    let mut out = Vec::with_capacity(ids.len());
    hash_trace_ids_into(salt, ids, &mut out);
    out
}

/// As [`hash_trace_ids`], appending into a caller-owned buffer (no allocation
/// when it has room).
pub fn hash_trace_ids_into(salt: CacheSalt, ids: &[u64], out: &mut Vec<SequenceHash>) {
    let mut parent = SequenceHash::ROOT;
    for (pos, id) in ids.iter().enumerate() {
        parent = chain_hash(salt, parent, pos as u32, &id.to_le_bytes());
        out.push(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_runs() {
        // Pinned value: changing the hash function breaks every persisted G3.
        let h = hash_trace_ids(CacheSalt(0), &[46, 47, 48]);
        assert_eq!(h.len(), 3);
        let again = hash_trace_ids(CacheSalt(0), &[46, 47, 48]);
        assert_eq!(h, again);
        assert_eq!(
            h[0],
            chain_hash(CacheSalt(0), SequenceHash::ROOT, 0, &46u64.to_le_bytes())
        );
        assert_eq!(format!("{}", h[0]), format!("{:032x}", h[0].0));
    }

    #[test]
    fn lineage_and_position_matter() {
        let a = hash_trace_ids(CacheSalt(0), &[1, 2, 3]);
        let b = hash_trace_ids(CacheSalt(0), &[9, 2, 3]);
        assert_ne!(a[1], b[1], "same id after a different parent must differ");
        let p0 = chain_hash(CacheSalt(0), SequenceHash::ROOT, 0, &[1, 2]);
        let p1 = chain_hash(CacheSalt(0), SequenceHash::ROOT, 1, &[1, 2]);
        assert_ne!(p0, p1);
    }

    #[test]
    fn salt_separates_tenants() {
        let a = hash_trace_ids(CacheSalt::from_name("a"), &[1, 2]);
        let b = hash_trace_ids(CacheSalt::from_name("b"), &[1, 2]);
        assert_ne!(a[0], b[0]);
    }

    #[test]
    fn token_hashing_covers_full_blocks_only() {
        let toks: Vec<u32> = (0..100).collect();
        let h = hash_tokens(CacheSalt(7), &toks, 16);
        assert_eq!(h.len(), 6);
        let h2 = hash_tokens(CacheSalt(7), &toks[..96], 16);
        assert_eq!(h, h2);
        // long payload path equals itself
        let big = hash_tokens(CacheSalt(7), &toks, 32);
        assert_eq!(big.len(), 3);
    }
}
