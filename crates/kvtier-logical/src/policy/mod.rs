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
//!   matched again (so only for a slot the policy holds); `evict()` returns,
//!   and forgets, one inactive slot.
//! - A policy never returns a slot that was not inserted, or that was removed.
//!
//! # The policy list
//! [`for_each_policy!`] is the one list of policies. Everything that names
//! every policy is generated from it (`registry.rs`): [`PolicyKind`] (its
//! variants, names, parsing, `Display` and serde form), [`PolicyParams`]
//! (one params field per policy) and the store's statically dispatched
//! `AnyPolicy` with its `match` (one per batch call). Adding a policy is one
//! file implementing [`EvictionPolicy`] and [`BuildPolicy`], its `mod` line
//! below and one line in the list.

#[macro_use]
mod registry;

#[cfg(test)]
mod by_hand;
mod classes;
mod duel;
#[cfg(test)]
mod gate_tests;
mod gated;
mod ghost;
mod leaf;
mod lru;
mod prefix_freq;
mod prefix_lru;
mod s3fifo;
mod seen;
mod shadow;
pub(crate) mod sketch;
mod tinylfu;

pub use classes::ClassParams;
pub use gated::GatedParams;
pub use prefix_freq::PrefixFreqParams;
pub use registry::{InvalidParam, InvalidPolicyParams, UnknownPolicy};
pub use s3fifo::S3FifoParams;
pub use seen::SeenParams;
pub use sketch::{FrequencySketch, SketchParams};
pub use tinylfu::TinyLfuParams;

use crate::hash::SequenceHash;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The list of policies, in the order tables and sweeps list them: one line
/// per policy, `Variant(params_field) = "name" => Type`, after the variant's
/// doc comment. `Variant` becomes a [`PolicyKind`] variant, `"name"` its name
/// on the command line and in configs (and its key in [`PolicyParams`]),
/// `params_field` its [`PolicyParams`] field, and `Type` the policy the store
/// runs (an [`EvictionPolicy`] + [`BuildPolicy`]).
///
/// `for_each_policy!(callback, args...)` expands to
/// `callback! { [args...] <the list> }`.
macro_rules! for_each_policy {
    ($callback:ident $(, $arg:tt)*) => {
        $callback! { [$($arg)*]
            /// Least recently released first. The reference policy.
            Lru(lru) = "lru" => lru::Lru,
            /// LRU that evicts leaves before their ancestors.
            PrefixLru(prefix_lru) = "prefix-lru" => prefix_lru::PrefixLru,
            /// S3-FIFO: small/main FIFOs with lazy promotion and a sketch ghost.
            S3Fifo(s3fifo) = "s3fifo" => s3fifo::S3Fifo,
            /// W-TinyLFU: LRU window + frequency-gated segmented LRU.
            TinyLfu(tinylfu) = "tinylfu" => tinylfu::TinyLfu,
            /// Frequency-gated segmented LRU with leaf-first eviction.
            PrefixFreq(prefix_freq) = "prefix-freq" => prefix_freq::PrefixFreq,
            /// Frequency-gated segmented LRU with per-slot frequency and a
            /// seen filter, evicting in batches. The default.
            GatedLru(gated_lru) = "gated-lru" => gated::GatedLru,
            /// `gated-lru` with an ARC-style adaptive split: for large tiers
            /// whose blocks come back within the tier's size.
            GatedArc(gated_arc) = "gated-arc" => gated::GatedArc,
            /// `gated-lru` or LRU's order, whichever a sampled miniature of
            /// each would hit more with (set dueling).
            GatedDuel(gated_duel) = "gated-duel" => gated::GatedDuel,
        }
    };
}

for_each_policy!(define_policies);

impl AnyPolicy {
    /// The policy's name.
    pub(crate) fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Inactive blocks the policy holds.
    pub(crate) fn len(&self) -> usize {
        with_policy!(self, p => p.len())
    }

    /// See [`EvictionPolicy::next_victims`].
    pub(crate) fn next_victims(&self, n: usize, out: &mut Vec<SlotId>) -> bool {
        with_policy!(self, p => p.next_victims(n, out))
    }
}

impl Default for PolicyKind {
    /// [`PolicyKind::GatedDuel`]: `gated-lru`'s lead where LRU is weak
    /// (small tiers), LRU's order where LRU wins (large tiers of chat
    /// traffic), chosen online by a duel of two sampled miniatures
    /// (`docs/policies.md`).
    fn default() -> Self {
        PolicyKind::GatedDuel
    }
}

impl PolicyKind {
    /// The policy a tier gets when its config names none: the default
    /// ([`PolicyKind::GatedDuel`]) for G1, which sees the requests' own
    /// lookups; [`PolicyKind::Lru`] for G2 and G3, which are filled by G1's
    /// victims in eviction order, so recency is already filtered by the
    /// tier above. On Mooncake's conversation trace (built-in config) this
    /// got 0.3553 against 0.3432 with `gated-lru` everywhere and 0.3575
    /// with LRU everywhere (`docs/policies.md`).
    pub fn default_for(tier: crate::Tier) -> PolicyKind {
        match tier {
            crate::Tier::G1 => PolicyKind::default(),
            crate::Tier::G2 | crate::Tier::G3 => PolicyKind::Lru,
        }
    }
}

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

/// A table of `len` default values whose pages are all written before it
/// is returned. `vec![0; n]` asks the allocator for zeroed memory, which a
/// large table gets as lazily mapped pages: each page would then cost a
/// page fault and the kernel's zeroing on the hot path, the first time a
/// hash lands in it (measured: whenever the allocator handed `gated-duel`
/// a fresh mapping, a 64,000-block replay of the synthetic trace took 2.4x
/// LRU's time instead of 1.7x). A tier's tables are sized once, so they
/// are faulted in at construction.
pub(crate) fn touched_table<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..len).step_by(step) {
        // SAFETY: `i < len`, and a valid value is written over a valid
        // value; the write is volatile so that it is not elided.
        unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), T::default()) };
    }
    v
}

/// A power-of-two table length of about `per_slot` entries per slot of a
/// tier of `capacity` slots (at least 16 slots' worth), for the hash-indexed
/// tables of the policies (sketch, seen filter, ghost).
pub(crate) fn table_len(capacity: usize, per_slot: usize) -> usize {
    (capacity.max(16) * per_slot).next_power_of_two()
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
    /// the prefix tree). Only kept for policies that use leaves
    /// ([`EvictionPolicy::uses_leaves`]); `true` for the others.
    pub is_leaf: bool,
}

/// An eviction order over a tier's inactive blocks.
///
/// The store drives each policy through code monomorphised for it, so a
/// hook a policy does not override (the defaults do nothing) costs nothing,
/// and a `BlockInfo` field it does not read is never loaded. Policies mark
/// their per-block methods `#[inline(always)]` to keep that true.
pub trait EvictionPolicy: Send + 'static {
    /// A registered block became inactive (reference count dropped to zero).
    fn insert(&mut self, slot: SlotId, info: &BlockInfo);

    /// An inactive block was matched again: it is no longer evictable. Only
    /// called for a slot the policy holds.
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

    /// A lookup hit this block (active or inactive; after `remove` if it was
    /// inactive). Frequency-aware policies count it; the default ignores it.
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

    /// A block was computed again although the tier still holds its hash in
    /// `slot` (its prefix was missed above it): a miss the policy would not
    /// otherwise see. Nothing else changes for `slot`.
    fn on_duplicate(&mut self, _slot: SlotId, _info: &BlockInfo) {}

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

    /// Whether the next victim never depends on the store's calls about the
    /// previous ones (`on_evicted`, `on_leaf_changed`). Then the store pops
    /// all the victims of an allocation first, prefetching their slots, and
    /// reports them afterwards, in the same order: the outcome is that of
    /// evicting one at a time. The default is `false`.
    fn evicts_in_batches(&self) -> bool {
        false
    }

    /// The block in `slot` gained its first cached child (`is_leaf == false`)
    /// or lost its last one (`is_leaf == true`). Called whether the block is
    /// active or inactive.
    fn on_leaf_changed(&mut self, _slot: SlotId, _is_leaf: bool) {}

    /// Up to `n` of the blocks the policy would evict next, in that order,
    /// appended to `out`, without changing anything; `false` when the policy
    /// cannot tell (then callers assume release order, which is LRU's). A
    /// hint for work ahead of eviction (copying victims down early): it may
    /// be approximate, never relied on for correctness.
    fn next_victims(&self, _n: usize, _out: &mut Vec<SlotId>) -> bool {
        false
    }
}

/// How a policy of the list is built: its tuning parameters and constructor.
pub trait BuildPolicy: EvictionPolicy + Sized {
    /// The policy's tuning (a field of [`PolicyParams`]), whose `Default` is
    /// the tuned values the pinned hit counts come from.
    type Params: TuningParams;

    /// Refuse parameters the policy cannot run with (the first bad field):
    /// by default, each field against its range.
    fn check_params(params: &Self::Params) -> Result<(), InvalidParam> {
        params.check()
    }

    /// The policy for a tier of `capacity` slots, with parameters that
    /// passed [`check_params`](Self::check_params).
    fn build(capacity: usize, params: &Self::Params) -> Self;
}

/// A policy's tuning parameters: a `serde` struct whose `Default` is the
/// tuned values (declared with `policy_params!`).
pub trait TuningParams:
    Clone + Debug + Default + PartialEq + Eq + Serialize + DeserializeOwned
{
    /// The first field out of its valid range.
    fn check(&self) -> Result<(), InvalidParam>;
}

/// A number is a field with no constraint of its own (`policy_params!`
/// fields with a range are checked against it instead).
macro_rules! unconstrained {
    ($($t:ty),*) => {
        $(
            impl TuningParams for $t {
                fn check(&self) -> Result<(), InvalidParam> {
                    Ok(())
                }
            }
        )*
    };
}
unconstrained!(u8, u32, u64);

policy_params! {
    /// The parameters of a policy that has none.
    pub struct NoParams {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_tables_are_default_filled() {
        let t: Vec<u64> = touched_table(100_000);
        assert_eq!(t.len(), 100_000);
        assert!(t.iter().all(|&w| w == 0));
        let l: Vec<[u32; 2]> = touched_table(3);
        assert_eq!(l, [[0; 2]; 3]);
        assert!(touched_table::<u8>(0).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for &p in PolicyKind::ALL {
            assert_eq!(p.name().parse::<PolicyKind>().unwrap(), p);
            let built = AnyPolicy::build(p, 8, &PolicyParams::default());
            assert_eq!(built.kind(), p);
            assert_eq!(p.to_string(), p.name());
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert!("nope".parse::<PolicyKind>().is_err());
        assert_eq!(PolicyKind::default(), PolicyKind::GatedDuel);
        assert_eq!(
            PolicyKind::default_for(crate::Tier::G1),
            PolicyKind::GatedDuel
        );
        assert_eq!(PolicyKind::default_for(crate::Tier::G2), PolicyKind::Lru);
        assert_eq!(PolicyKind::default_for(crate::Tier::G3), PolicyKind::Lru);
    }

    #[test]
    fn params_default_and_parse() {
        let p = PolicyParams::default();
        assert_eq!(p.check(), Ok(()));
        assert_eq!(p.gated_lru.protected_share_64ths, 56);
        assert_eq!(p.s3fifo.small_percent, 10);
        let json = r#"{"gated-lru": {"protected_share_64ths": 48, "classes": {"window": 512}}}"#;
        let q: PolicyParams = serde_json::from_str(json).unwrap();
        assert_eq!(q.gated_lru.protected_share_64ths, 48);
        assert_eq!(q.gated_lru.classes.window, 512);
        assert_eq!(q.gated_lru.proven_min, 2, "unset fields keep their default");
        assert_eq!(q.gated_arc, p.gated_arc);
        assert!(serde_json::from_str::<PolicyParams>(r#"{"gated-lru": {"nope": 1}}"#).is_err());
        assert!(serde_json::from_str::<PolicyParams>(r#"{"nope": {}}"#).is_err());
        let mut bad = PolicyParams::default();
        bad.gated_arc.protected_share_64ths = 65;
        let err = bad.check().unwrap_err();
        assert_eq!(err.policy, PolicyKind::GatedArc);
        assert_eq!(err.field, "protected_share_64ths");
        assert!(err.to_string().contains("gated-arc.protected_share_64ths"));
        bad = PolicyParams::default();
        bad.prefix_freq.sketch.period_per_slot = 0;
        let err = bad.check().unwrap_err();
        assert_eq!(err.field, "sketch.period_per_slot");
        assert!(err
            .to_string()
            .contains("prefix-freq.sketch.period_per_slot: must be in"));
        bad = PolicyParams::default();
        bad.gated_lru.min_protected_share_64ths = 57;
        assert_eq!(
            bad.check().unwrap_err().field,
            "min_protected_share_64ths",
            "cross-field check"
        );
    }
}
