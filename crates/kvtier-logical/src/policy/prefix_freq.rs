//! `prefix-freq`: frequency-gated segmented LRU with a count-min sketch and
//! leaf-first eviction (the default before `gated-lru`, which keeps its hit
//! rate on the Mooncake trace at about half the cost).
//!
//! The constants are `gated-lru`'s (same meaning, explained there); the class
//! tallies are `classes.rs`'s.

use super::classes::{ClassParams, Classes};
use super::gated::GatedParams;
use super::leaf::LeafFirst;
use super::sketch::{FrequencySketch, SketchParams};
use super::{BlockInfo, BuildPolicy, EvictionPolicy, SlotId};
use crate::hash::SequenceHash;

policy_params! {
    /// Tuning of `prefix-freq`: `gated-lru`'s segment and class parameters
    /// (same meaning and defaults, see [`GatedParams`]) and its count-min
    /// sketch's size.
    pub struct PrefixFreqParams {
        /// Sketch estimate that makes a block proven (2). At least 1.
        proven_min: u8 [1..=255] = GatedParams::default().proven_min,
        /// Extra passes a proven block can earn through hits (3). At most 254.
        max_passes: u8 [0..=254] = GatedParams::default().max_passes,
        /// Share of the capacity, in 1/64ths, that inactive proven blocks may
        /// occupy (56). At most 64.
        protected_share_64ths: u32 [0..=64] = GatedParams::default().protected_share_64ths,
        /// Head start of a proven block over a new one, in cache turnovers (8).
        proven_credit_turnovers: u32 = GatedParams::default().proven_credit_turnovers,
        /// How the tail and continuation verdicts are learned.
        classes: ClassParams = ClassParams::default(),
        /// Size and aging of the frequency sketch.
        sketch: SketchParams = SketchParams::default(),
    }
}

/// Segment of blocks seen once in the sketch's memory (probation).
const NEW: usize = 0;
/// Segment of blocks seen at least `proven_min` times (protected).
const PROVEN: usize = 1;

/// Per-slot state, stored in the leaf layer's node of the slot (one cache
/// line per call). 16 bytes aligned to 16: with the node's 12 bytes of
/// links, a 32-byte entry that never straddles a cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
struct Meta {
    /// Release clock value at the slot's last insert.
    stamp: u64,
    /// Sketch estimate of the block at its last access (saves a sketch
    /// lookup at insert).
    freq: u8,
    /// A continuation block not yet reused.
    cont: bool,
    /// A request's tail block not yet reused.
    tail: bool,
    /// Extra passes through the proven segment earned by hits.
    passes: u8,
}

/// Frequency-gated segmented LRU with leaf-first eviction (`prefix-freq`).
///
/// - When a block becomes inactive it joins the *proven* segment if the
///   frequency sketch has seen it at least [`proven_min`](PrefixFreqParams::proven_min) times (hits plus
///   registrations, over the sketch's aging period), else the *new* segment.
///   The sketch remembers blocks after they are evicted, so a block that comes
///   back is recognised: this is TinyLFU's admission idea without a window.
/// - Victims come from the new segment first (least recently released first),
///   then from the proven one, unless the oldest proven block has been idle
///   [`proven_credit_turnovers`](PrefixFreqParams::proven_credit_turnovers) cache turnovers longer than the oldest new
///   one. Proven blocks above [`protected_share_64ths`](PrefixFreqParams::protected_share_64ths) of the capacity are
///   demoted to the most-recent end of the new segment.
/// - A request's *tail* (its last block, seen once) goes to the eviction end
///   of the new segment while tails are rarely reused ([`tail_waste_ratio`](ClassParams::tail_waste_ratio)):
///   it is usually a partial block that the next request fills differently.
/// - *Continuations* (blocks computed right after a matched prefix, in the
///   same request: a chat's next turn, an agent's next step) are admitted as
///   proven on their first access when, lately, most continuations were
///   reused before being evicted ([`window`](ClassParams::window) outcomes). On
///   document-QA traces continuations are one-off questions and stay new; on
///   multi-turn chat they are the next turn's prefix and get protected.
/// - A proven block at the eviction end that was hit since it was last
///   registered is re-queued instead, once per hit up to [`max_passes`](PrefixFreqParams::max_passes)
///   (S3-FIFO's lazy promotion): among proven blocks, the often-hit outlive
///   the rarely-hit.
/// - Within a segment, a block with a cached child is skipped (parked) until
///   it becomes a leaf: a prefix is cut from its tail, and a block whose
///   descendants are cached outlives them.
/// - Frequency is monotone along a prefix (every access to a child is an
///   access to its parent), so heads of shared prefixes are proven first and a
///   request's unique tail stays in probation: the head is kept, the tail goes.
///
/// Every call is O(1) (amortised for parking); all state is in arrays sized
/// at construction.
#[derive(Debug)]
pub struct PrefixFreq {
    q: LeafFirst<Meta>,
    sketch: FrequencySketch,
    protected_cap: usize,
    /// Release clock: number of inserts so far.
    clock: u64,
    /// Head start of a proven block over a new one, in release ticks.
    credit: u64,
    classes: Classes,
    /// [`PrefixFreqParams::proven_min`].
    proven_min: u8,
    /// [`PrefixFreqParams::max_passes`].
    max_passes: u8,
}

impl PrefixFreq {
    /// The policy for a tier of `capacity` slots, with the default tuning.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, &PrefixFreqParams::default())
    }

    /// Pop the next victim of segment `seg`: proven blocks with passes left
    /// are re-queued (one pass used) instead.
    #[inline]
    fn pop(&mut self, seg: usize) -> Option<SlotId> {
        if seg == NEW {
            return self.q.pop_leaf(NEW);
        }
        loop {
            let f = self.q.front(PROVEN)?;
            let m = self.q.data_mut(f);
            if m.passes > 0 {
                m.passes -= 1;
                self.clock += 1;
                m.stamp = self.clock;
                self.q.move_front_to_back(PROVEN, PROVEN);
                continue;
            }
            if let Some(v) = self.q.pop_step(PROVEN)? {
                return Some(v);
            }
        }
    }
}

impl PrefixFreq {
    /// Inactive blocks listed in the protected segment (parked ones not
    /// counted).
    pub fn proven_len(&self) -> usize {
        self.q.seg_len(PROVEN)
    }
}

impl EvictionPolicy for PrefixFreq {
    #[inline]
    fn insert(&mut self, slot: SlotId, info: &BlockInfo) {
        let proven = self.q.data(slot).freq >= self.proven_min
            || (self.q.data(slot).cont && self.classes.continuations_pay());
        self.clock += 1;
        self.q.data_mut(slot).stamp = self.clock;
        let is_tail =
            self.classes.take_after_register() && self.q.data(slot).freq < self.proven_min;
        self.q.data_mut(slot).tail = is_tail;
        if is_tail && !proven && self.classes.tails_wasted() {
            self.q.push_front(NEW, slot, info.is_leaf);
            return;
        }
        self.q
            .push_back(if proven { PROVEN } else { NEW }, slot, info.is_leaf);
        if proven {
            while self.q.seg_len(PROVEN) > self.protected_cap {
                self.q.move_front_to_back(PROVEN, NEW);
            }
        }
    }

    #[inline]
    fn remove(&mut self, slot: SlotId) {
        self.q.remove(slot);
    }

    #[inline]
    fn evict(&mut self) -> Option<SlotId> {
        // The proven head goes first once it has sat unused for longer than
        // its credit beyond the new head.
        let first = match (self.q.front(NEW), self.q.front(PROVEN)) {
            (Some(n), Some(p)) if self.q.data(p).stamp + self.credit < self.q.data(n).stamp => {
                PROVEN
            }
            (None, Some(_)) => PROVEN,
            _ => NEW,
        };
        self.pop(first)
            .or_else(|| self.pop(1 - first))
            .or_else(|| self.q.pop_parked())
    }

    #[inline]
    fn len(&self) -> usize {
        self.q.len()
    }

    #[inline]
    fn prefetch(&self, hash: SequenceHash) {
        self.sketch.prefetch(hash);
    }

    #[inline]
    fn on_hit(&mut self, slot: SlotId, info: &BlockInfo) {
        let max_passes = self.max_passes;
        let m = self.q.data_mut(slot);
        m.passes = (m.passes + 1).min(max_passes);
        self.q.data_mut(slot).freq = self.sketch.increment(info.hash);
        if std::mem::take(&mut self.q.data_mut(slot).cont) {
            self.classes.record_cont(true);
        }
        if std::mem::take(&mut self.q.data_mut(slot).tail) {
            self.classes.record_tail(true);
        }
        self.classes.hit(info.position);
    }

    #[inline]
    fn on_register(&mut self, slot: SlotId, info: &BlockInfo) {
        self.q.data_mut(slot).passes = 0;
        self.q.data_mut(slot).freq = self.sketch.increment(info.hash);
        self.q.data_mut(slot).cont = self.classes.register(info.position);
    }

    #[inline]
    fn on_evicted(&mut self, slot: SlotId, _info: &BlockInfo) {
        if std::mem::take(&mut self.q.data_mut(slot).cont) {
            self.classes.record_cont(false);
        }
        if std::mem::take(&mut self.q.data_mut(slot).tail) {
            self.classes.record_tail(false);
        }
    }

    #[inline]
    fn on_leaf_changed(&mut self, slot: SlotId, is_leaf: bool) {
        self.q.on_leaf_changed(slot, is_leaf);
    }
}

impl BuildPolicy for PrefixFreq {
    type Params = PrefixFreqParams;

    fn build(capacity: usize, params: &PrefixFreqParams) -> Self {
        PrefixFreq {
            q: LeafFirst::new(capacity, 2),
            sketch: FrequencySketch::with_params(capacity, &params.sketch),
            protected_cap: capacity * params.protected_share_64ths as usize / 64,
            classes: Classes::new(&params.classes),
            clock: 0,
            credit: capacity as u64 * params.proven_credit_turnovers as u64,
            proven_min: params.proven_min,
            max_passes: params.max_passes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SequenceHash;

    fn info(h: u128, leaf: bool) -> BlockInfo {
        BlockInfo {
            hash: SequenceHash(h),
            position: 0,
            is_leaf: leaf,
        }
    }

    #[test]
    fn keeps_parents_of_cached_children() {
        let mut p = PrefixFreq::new(8);
        p.on_register(0, &info(1, false));
        p.insert(0, &info(1, false));
        p.on_register(1, &info(2, true));
        p.insert(1, &info(2, true));
        assert_eq!(p.evict(), Some(1));
        p.on_leaf_changed(0, true);
        assert_eq!(p.evict(), Some(0));
    }
}
