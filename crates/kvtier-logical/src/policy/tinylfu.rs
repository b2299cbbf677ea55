//! W-TinyLFU (Einziger, Friedman, Manes 2017) over inactive blocks.

use super::lru::SlotList;
use super::sketch::{FrequencySketch, SketchParams};
use super::{BlockInfo, BuildPolicy, EvictionPolicy, SlotId};
use crate::hash::SequenceHash;

const NONE: u8 = 0;
const WINDOW: u8 = 1;
const PROBATION: u8 = 2;
const PROTECTED: u8 = 3;

policy_params! {
    /// Tuning of `tinylfu`. The defaults are the published values.
    pub struct TinyLfuParams {
        /// Window share of the capacity, in percent. 1% is the published
        /// default: the window only has to absorb bursts of new blocks until
        /// the sketch has seen them; frequency decides the rest. At most 100.
        window_percent: u32 [0..=100] = 1,
        /// Protected share of the main region, in percent (the SLRU split of
        /// the paper and of Caffeine: 80): blocks hit while in probation are
        /// protected; the remaining 20% lets newly admitted blocks prove
        /// themselves. At most 100.
        protected_percent: u32 [0..=100] = 80,
        /// Size and aging of the frequency sketch.
        sketch: SketchParams = SketchParams::default(),
    }
}

/// W-TinyLFU (`tinylfu`): a small LRU *window* for new blocks, and a main
/// segmented LRU (probation + protected) whose door is guarded by a frequency
/// sketch. When the window is over its share, its least recent block is the
/// *candidate* and the main region's probation head the *victim*: the one the
/// sketch has seen less often is evicted (ties evict the candidate, which
/// protects the incumbents against scans).
///
/// Segment sizes count every registered block of the segment (in use or
/// not); only inactive ones are listed, so the candidate and the victim are
/// always evictable. O(1) per call (amortised: a window block moves to main at
/// most once per registration).
#[derive(Debug)]
pub struct TinyLfu {
    window: SlotList,
    probation: SlotList,
    protected: SlotList,
    seg: Vec<u8>,
    hit: Vec<bool>,
    key: Vec<SequenceHash>,
    n_window: usize,
    n_main: usize,
    window_target: usize,
    main_target: usize,
    protected_target: usize,
    sketch: FrequencySketch,
}

impl TinyLfu {
    /// A W-TinyLFU for a tier of `capacity` slots, with the default tuning.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, &TinyLfuParams::default())
    }

    #[inline]
    fn forget(&mut self, s: usize) {
        match self.seg[s] {
            WINDOW => self.n_window -= 1,
            PROBATION | PROTECTED => self.n_main -= 1,
            _ => {}
        }
        self.seg[s] = NONE;
    }

    #[inline]
    fn list(&mut self, seg: u8) -> &mut SlotList {
        match seg {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }
}

impl EvictionPolicy for TinyLfu {
    fn uses_leaves(&self) -> bool {
        false
    }

    fn insert(&mut self, slot: SlotId, _info: &BlockInfo) {
        let s = slot as usize;
        if self.seg[s] == NONE {
            self.seg[s] = WINDOW;
            self.n_window += 1;
        }
        if self.seg[s] == PROBATION && self.hit[s] {
            self.seg[s] = PROTECTED;
        }
        self.hit[s] = false;
        let seg = self.seg[s];
        self.list(seg).push_back(slot);
        if seg == PROTECTED && self.protected.len() > self.protected_target {
            if let Some(d) = self.protected.pop_front() {
                self.seg[d as usize] = PROBATION;
                self.probation.push_back(d);
            }
        }
    }

    fn remove(&mut self, slot: SlotId) {
        let seg = self.seg[slot as usize];
        if seg != NONE {
            self.list(seg).remove(slot);
        }
    }

    fn evict(&mut self) -> Option<SlotId> {
        // `>=`: the slot being evicted is about to hold a new block, which
        // joins the window.
        while self.n_window >= self.window_target {
            let Some(c) = self.window.front() else { break };
            if self.n_main < self.main_target {
                // Main has room: admit without a contest.
                self.window.pop_front();
                self.probation.push_back(c);
                self.seg[c as usize] = PROBATION;
                self.n_window -= 1;
                self.n_main += 1;
                continue;
            }
            let v = self.probation.front().or_else(|| self.protected.front());
            let Some(v) = v else { break };
            let fc = self.sketch.estimate(self.key[c as usize]);
            let fv = self.sketch.estimate(self.key[v as usize]);
            self.window.pop_front();
            if fc > fv {
                self.probation.push_back(c);
                self.seg[c as usize] = PROBATION;
                self.n_window -= 1;
                self.n_main += 1;
                let seg = self.seg[v as usize];
                self.list(seg).remove(v);
                return Some(v);
            }
            return Some(c);
        }
        self.probation
            .pop_front()
            .or_else(|| self.protected.pop_front())
            .or_else(|| self.window.pop_front())
    }

    fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }

    #[inline]
    fn prefetch(&self, hash: SequenceHash) {
        self.sketch.prefetch(hash);
    }

    fn on_hit(&mut self, slot: SlotId, info: &BlockInfo) {
        self.hit[slot as usize] = true;
        self.sketch.increment(info.hash);
    }

    fn on_register(&mut self, slot: SlotId, info: &BlockInfo) {
        let s = slot as usize;
        self.forget(s);
        self.seg[s] = WINDOW;
        self.n_window += 1;
        self.hit[s] = false;
        self.key[s] = info.hash;
        self.sketch.increment(info.hash);
    }

    fn on_evicted(&mut self, slot: SlotId, _info: &BlockInfo) {
        self.forget(slot as usize);
    }
}

impl BuildPolicy for TinyLfu {
    type Params = TinyLfuParams;

    fn build(capacity: usize, params: &TinyLfuParams) -> Self {
        let window_target = (capacity * params.window_percent as usize / 100).max(1);
        let main_target = capacity.saturating_sub(window_target);
        TinyLfu {
            window: SlotList::new(capacity),
            probation: SlotList::new(capacity),
            protected: SlotList::new(capacity),
            seg: vec![NONE; capacity],
            hit: super::touched_table(capacity),
            key: vec![SequenceHash::ROOT; capacity],
            n_window: 0,
            n_main: 0,
            window_target,
            main_target,
            protected_target: (main_target * params.protected_percent as usize / 100).max(1),
            sketch: FrequencySketch::with_params(capacity, &params.sketch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::by_hand::{admit, info};
    use super::*;

    #[test]
    fn frequent_incumbents_beat_new_candidates() {
        let mut p = TinyLfu::new(100); // window target 1, main target 99
        for s in 0..99 {
            admit(&mut p, s, 1000 + s as u128, 3);
        }
        admit(&mut p, 99, 5, 0);
        // window holds 0..=99 in registration order; slots 0..98 move to main
        // while it has room, then slot 99 (seen once) loses to the frequent
        // probation head.
        assert_eq!(p.evict(), Some(99));
        assert_eq!(p.len(), 99);
    }

    #[test]
    fn frequent_candidate_is_admitted() {
        let mut p = TinyLfu::new(100);
        for s in 0..99 {
            admit(&mut p, s, 1000 + s as u128, 0);
        }
        admit(&mut p, 99, 5, 4);
        let v = p.evict().unwrap();
        assert_ne!(v, 99, "the frequent candidate was admitted");
        p.on_evicted(v, &info(0));
        assert_eq!(p.len(), 99);
    }

    #[test]
    fn drains_everything() {
        let mut p = TinyLfu::new(10);
        for s in 0..10 {
            admit(&mut p, s, s as u128 + 1, (s % 3) as usize);
        }
        let mut n = 0;
        while let Some(v) = p.evict() {
            p.on_evicted(v, &info(0));
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(p.is_empty());
    }
}
