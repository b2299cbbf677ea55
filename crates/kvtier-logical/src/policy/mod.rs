//! Eviction policies: the order in which a tier gives up its *inactive* blocks.
//!
//! A policy sees only slot ids and a little metadata ([`BlockInfo`]); it never
//! sees bytes. The block store calls it under the store's lock, so a policy needs
//! no locking of its own. Every method must be O(1) or amortised O(1): a policy
//! keeps per-slot state in arrays sized to the tier's capacity at construction,
//! so the hot path does not allocate.
//!
//! Contract (checked by the store's property tests):
//! - `insert(slot)` is called exactly when a registered block becomes inactive
//!   (its last user released it); `remove(slot)` when an inactive block is
//!   matched again; `evict()` returns, and forgets, one inactive slot.
//! - A policy never returns a slot that was not inserted, or that was removed.

mod classes;
#[cfg(test)]
mod gate_tests;
mod gated;
pub mod ghost;
mod leaf;
mod lru;
mod prefix_freq;
mod prefix_lru;
mod s3fifo;
pub mod seen;
pub mod sketch;
mod tinylfu;

pub use classes::{CLASS_WINDOW, TAIL_WASTE_RATIO};
pub use gated::{
    Gated, GatedArc, GatedLru, ADAPT_BATCH, ADAPT_STEP_DIV, MAX_PASSES, MIN_PROTECTED_SHARE_64THS,
    PROTECTED_SHARE_64THS, PROVEN_CREDIT_TURNOVERS, PROVEN_MIN,
};
pub use lru::{Lru, SlotList};
pub use prefix_freq::PrefixFreq;
pub use prefix_lru::PrefixLru;
pub use s3fifo::{S3Fifo, MAX_FREQ as S3FIFO_MAX_FREQ, SMALL_PERCENT as S3FIFO_SMALL_PERCENT};
pub use seen::SeenFilter;
pub use sketch::FrequencySketch;
pub use tinylfu::{
    TinyLfu, PROTECTED_PERCENT as TINYLFU_PROTECTED_PERCENT,
    WINDOW_PERCENT as TINYLFU_WINDOW_PERCENT,
};

use crate::hash::SequenceHash;
use std::fmt;
use std::str::FromStr;

/// Hint the CPU to bring the cache line at `p` into L1. Any address is
/// allowed; nothing is read.
#[inline(always)]
pub(crate) fn prefetch_ptr<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect (it cannot fault and
    // does not access memory in the language's sense), and SSE is part of the
    // x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A well-spread sequence hash for key `k` (tests of the hash-indexed
/// tables: real sequence hashes are xxh3 outputs too).
#[cfg(test)]
pub(crate) fn test_hash(k: u128) -> SequenceHash {
    SequenceHash(xxhash_rust::xxh3::xxh3_128(&k.to_le_bytes()))
}

/// Index of a slot within one tier's block store.
pub type SlotId = u32;

/// What a policy may know about a registered block.
#[derive(Clone, Copy, Debug)]
pub struct BlockInfo {
    /// The block's sequence hash.
    pub hash: SequenceHash,
    /// Position of the block in its sequence (0 = first block).
    pub position: u32,
    /// Whether the block currently has no cached child in this tier (a leaf of
    /// the prefix tree). Prefix-aware policies evict leaves first.
    pub is_leaf: bool,
}

/// An eviction order over a tier's inactive blocks.
pub trait EvictionPolicy: Send + 'static {
    /// Short name, as accepted by [`PolicyKind::from_str`].
    fn name(&self) -> &'static str;

    /// A registered block became inactive (reference count dropped to zero).
    fn insert(&mut self, slot: SlotId, info: &BlockInfo);

    /// An inactive block was matched again: it is no longer evictable.
    fn remove(&mut self, slot: SlotId);

    /// Choose a victim among the inactive blocks and forget it.
    /// `None` only when no block is inactive.
    fn evict(&mut self) -> Option<SlotId>;

    /// Number of inactive blocks the policy holds.
    fn len(&self) -> usize;

    /// True when no block is inactive.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A lookup hit this block (active or inactive). Frequency-aware policies
    /// count it; the default ignores it.
    fn on_hit(&mut self, _slot: SlotId, _info: &BlockInfo) {}

    /// A lookup asked for this hash and the tier did not hold it. Policies with
    /// ghost lists or admission sketches use it; the default ignores it.
    fn on_miss(&mut self, _hash: SequenceHash) {}

    /// `hash` is about to be counted (`on_hit` or `on_register`): policies
    /// with large tables may prefetch its entry. The default ignores it.
    fn prefetch(&self, _hash: SequenceHash) {}

    /// `hash` is about to be looked up (a hit would call `on_hit`): as
    /// [`prefetch`](Self::prefetch), which is the default; a policy whose
    /// hits touch no table skips it.
    fn prefetch_lookup(&self, hash: SequenceHash) {
        self.prefetch(hash);
    }

    /// A new block was registered in `slot` (it is in use, not yet inactive).
    fn on_register(&mut self, _slot: SlotId, _info: &BlockInfo) {}

    /// The block in `slot` was evicted (after `evict` returned it); `info` is
    /// its last metadata. Ghost-list policies remember the hash.
    fn on_evicted(&mut self, _slot: SlotId, _info: &BlockInfo) {}

    /// Whether the policy reads `BlockInfo::is_leaf` or `on_leaf_changed`.
    /// Only then does the store keep the parent links and children counts
    /// behind them (a lookup and a parent update per registration, a parent
    /// update per eviction); otherwise `is_leaf` is always `true` and
    /// `on_leaf_changed` is never called. The default is `true`.
    fn uses_leaves(&self) -> bool {
        true
    }

    /// The block in `slot` gained its first cached child (`is_leaf == false`)
    /// or lost its last one (`is_leaf == true`). Called whether the block is
    /// active or inactive.
    fn on_leaf_changed(&mut self, _slot: SlotId, _is_leaf: bool) {}
}

/// A policy the store can drive through its batched fast paths: it keeps no
/// leaf state (`uses_leaves() == false`), so its next victim never depends on
/// a store callback made between two evictions, and its hooks take plain
/// values instead of a [`BlockInfo`]. The store pops all the victims of an
/// allocation first (prefetching their slots), then unindexes them and calls
/// [`flat_evicted`](Self::flat_evicted); the outcome is the same as evicting
/// one at a time. A hit touches no table indexed by hash (`flat_hit` gets
/// none), so the store prefetches nothing for a lookup. Implemented by
/// [`Lru`] (hooks are no-ops), [`GatedLru`] and [`GatedArc`].
pub(crate) trait FlatPolicy {
    /// As [`EvictionPolicy::insert`].
    fn flat_insert(&mut self, slot: SlotId);
    /// As [`EvictionPolicy::remove`] (only called for a listed slot).
    fn flat_remove(&mut self, slot: SlotId);
    /// As [`EvictionPolicy::evict`].
    fn flat_evict(&mut self) -> Option<SlotId>;
    /// As [`EvictionPolicy::on_hit`], after `remove` if the block was inactive.
    fn flat_hit(&mut self, slot: SlotId, position: u32);
    /// As [`EvictionPolicy::on_evicted`].
    fn flat_evicted(&mut self, slot: SlotId, hash: SequenceHash);
    /// As [`EvictionPolicy::on_register`].
    fn flat_register(&mut self, slot: SlotId, hash: SequenceHash, position: u32);
}

/// The policies a tier can be configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Least recently released first. The reference policy.
    Lru,
    /// LRU that evicts leaves before their ancestors ([`PrefixLru`]).
    PrefixLru,
    /// S3-FIFO: small/main FIFOs with lazy promotion and a sketch ghost ([`S3Fifo`]).
    #[serde(rename = "s3fifo")]
    S3Fifo,
    /// W-TinyLFU: LRU window + frequency-gated segmented LRU ([`TinyLfu`]).
    #[serde(rename = "tinylfu")]
    TinyLfu,
    /// Frequency-gated segmented LRU with leaf-first eviction ([`PrefixFreq`]).
    PrefixFreq,
    /// Frequency-gated segmented LRU with per-slot frequency and a seen
    /// filter, on the store's fast paths ([`GatedLru`]). The default.
    GatedLru,
    /// [`GatedLru`] with an ARC-style adaptive split ([`GatedArc`]): for
    /// large tiers whose blocks come back within the tier's size.
    GatedArc,
}

impl PolicyKind {
    /// Every policy, in the order tables and sweeps list them.
    pub const ALL: &'static [PolicyKind] = &[
        PolicyKind::Lru,
        PolicyKind::PrefixLru,
        PolicyKind::S3Fifo,
        PolicyKind::TinyLfu,
        PolicyKind::PrefixFreq,
        PolicyKind::GatedLru,
        PolicyKind::GatedArc,
    ];

    /// The name accepted on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::PrefixLru => "prefix-lru",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::TinyLfu => "tinylfu",
            PolicyKind::PrefixFreq => "prefix-freq",
            PolicyKind::GatedLru => "gated-lru",
            PolicyKind::GatedArc => "gated-arc",
        }
    }

    /// Build the policy for a tier of `capacity` slots.
    pub fn build(self, capacity: usize) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::PrefixLru => Box::new(PrefixLru::new(capacity)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
            PolicyKind::TinyLfu => Box::new(TinyLfu::new(capacity)),
            PolicyKind::PrefixFreq => Box::new(PrefixFreq::new(capacity)),
            PolicyKind::GatedLru => Box::new(GatedLru::new(capacity)),
            PolicyKind::GatedArc => Box::new(GatedArc::new(capacity)),
        }
    }
}

impl Default for PolicyKind {
    /// [`PolicyKind::GatedLru`]: the best hit rate of the set on the
    /// Mooncake trace (with `prefix-freq`) at a replay speed within 1.5x of
    /// LRU's (`docs/policies.md`).
    fn default() -> Self {
        PolicyKind::GatedLru
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Returned when a policy name is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown eviction policy `{name}` (known: {known})")]
pub struct UnknownPolicy {
    /// The name that was asked for.
    pub name: String,
    /// Comma-separated list of valid names.
    pub known: String,
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy {
                name: s.to_string(),
                known: PolicyKind::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &p in PolicyKind::ALL {
            assert_eq!(p.name().parse::<PolicyKind>().unwrap(), p);
            assert_eq!(p.build(8).name(), p.name());
            assert_eq!(p.to_string(), p.name());
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert!("nope".parse::<PolicyKind>().is_err());
        assert_eq!(PolicyKind::default(), PolicyKind::GatedLru);
    }
}
