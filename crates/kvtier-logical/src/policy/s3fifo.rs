//! S3-FIFO (Yang et al., SOSP'23) over inactive blocks.

use super::lru::SlotList;
use super::sketch::{FrequencySketch, SketchParams};
use super::{BlockInfo, BuildPolicy, EvictionPolicy, SlotId};
use crate::hash::SequenceHash;

const NONE: u8 = 0;
const SMALL: u8 = 1;
const MAIN: u8 = 2;

policy_params! {
    /// Tuning of `s3fifo`. The defaults are the paper's values.
    pub struct S3FifoParams {
        /// Small-queue share of the capacity, in percent: the paper's 10%.
        /// New blocks must be hit while they cross this queue to reach the
        /// main one. At most 100.
        small_percent: u32 [0..=100] = 10,
        /// Saturation of the per-block access counter (the paper's 2 bits:
        /// 3): a main block survives at most this many passes of the FIFO
        /// without a new hit. At most 254.
        max_freq: u8 [0..=254] = 3,
        /// Size and aging of the frequency sketch (the ghost).
        sketch: SketchParams = SketchParams::default(),
    }
}

/// S3-FIFO (`s3fifo`): a small FIFO for new blocks, a main FIFO with lazy
/// promotion (a block hit since it was queued is re-queued instead of
/// evicted, its counter decremented), and a ghost that sends blocks seen
/// recently straight to main. The ghost here is the frequency sketch (a block
/// it has counted at least once is "in the ghost"), so no hash table of
/// evicted keys is needed. Queues order blocks by release, as the store only
/// lists inactive blocks. Amortised O(1): each re-queue consumes a hit.
#[derive(Debug)]
pub struct S3Fifo {
    small: SlotList,
    main: SlotList,
    seg: Vec<u8>,
    freq: Vec<u8>,
    n_small: usize,
    small_target: usize,
    /// [`S3FifoParams::max_freq`].
    max_freq: u8,
    sketch: FrequencySketch,
}

impl S3Fifo {
    /// An S3-FIFO for a tier of `capacity` slots, with the default tuning.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, &S3FifoParams::default())
    }

    #[inline]
    fn forget(&mut self, s: usize) {
        if self.seg[s] == SMALL {
            self.n_small -= 1;
        }
        self.seg[s] = NONE;
    }
}

impl EvictionPolicy for S3Fifo {
    fn uses_leaves(&self) -> bool {
        false
    }

    fn insert(&mut self, slot: SlotId, _info: &BlockInfo) {
        let s = slot as usize;
        if self.seg[s] == NONE {
            self.seg[s] = SMALL;
            self.n_small += 1;
        }
        if self.seg[s] == SMALL {
            self.small.push_back(slot);
        } else {
            self.main.push_back(slot);
        }
    }

    fn remove(&mut self, slot: SlotId) {
        if !self.small.remove(slot) {
            self.main.remove(slot);
        }
    }

    fn evict(&mut self) -> Option<SlotId> {
        loop {
            let from_small = !self.small.is_empty()
                && (self.n_small >= self.small_target || self.main.is_empty());
            if from_small {
                let x = self.small.pop_front()?;
                if self.freq[x as usize] > 0 {
                    self.freq[x as usize] = 0;
                    self.seg[x as usize] = MAIN;
                    self.n_small -= 1;
                    self.main.push_back(x);
                    continue;
                }
                return Some(x);
            }
            let x = self.main.pop_front()?;
            if self.freq[x as usize] > 0 {
                self.freq[x as usize] -= 1;
                self.main.push_back(x);
                continue;
            }
            return Some(x);
        }
    }

    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }

    #[inline]
    fn prefetch(&self, hash: SequenceHash) {
        self.sketch.prefetch(hash);
    }

    fn on_hit(&mut self, slot: SlotId, info: &BlockInfo) {
        let f = &mut self.freq[slot as usize];
        *f = (*f + 1).min(self.max_freq);
        self.sketch.increment(info.hash);
    }

    fn on_register(&mut self, slot: SlotId, info: &BlockInfo) {
        let s = slot as usize;
        self.forget(s);
        // Seen before (counted at least once before this access): a ghost.
        if self.sketch.increment(info.hash) >= 2 {
            self.seg[s] = MAIN;
        } else {
            self.seg[s] = SMALL;
            self.n_small += 1;
        }
        self.freq[s] = 0;
    }

    fn on_evicted(&mut self, slot: SlotId, _info: &BlockInfo) {
        self.forget(slot as usize);
    }
}

impl BuildPolicy for S3Fifo {
    type Params = S3FifoParams;

    fn build(capacity: usize, params: &S3FifoParams) -> Self {
        S3Fifo {
            small: SlotList::new(capacity),
            main: SlotList::new(capacity),
            seg: vec![NONE; capacity],
            freq: super::touched_table(capacity),
            n_small: 0,
            small_target: (capacity * params.small_percent as usize / 100).max(1),
            max_freq: params.max_freq,
            sketch: FrequencySketch::with_params(capacity, &params.sketch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::by_hand::{admit, evict};
    use super::*;

    #[test]
    fn hit_small_blocks_move_to_main() {
        let mut p = S3Fifo::new(10); // small target 1
        admit(&mut p, 0, 1, 1);
        admit(&mut p, 1, 2, 0);
        // small holds 2 > target: slot 0 was hit, moves to main; slot 1 evicted
        evict(&mut p, 1, 2);
        evict(&mut p, 0, 1);
        assert!(p.is_empty());
    }

    #[test]
    fn ghosts_go_to_main_and_main_requeues_hit_blocks() {
        let mut p = S3Fifo::new(10);
        admit(&mut p, 0, 9, 0);
        evict(&mut p, 0, 9);
        admit(&mut p, 3, 9, 1); // seen before: main
        admit(&mut p, 4, 10, 0);
        // small is at its target: its unhit block goes first; then main,
        // where slot 3 was hit, so it is re-queued once before going.
        evict(&mut p, 4, 10);
        assert_eq!(p.evict(), Some(3));
    }
}
