//! Single-tier trace replay through the public store API (docs/architecture.md, "Replay").
//!
//! For each request, in order: match the longest cached prefix; allocate the
//! missing suffix (evicting by policy); complete and register it; release all
//! of the request's blocks tail first. A request longer than the tier is
//! truncated to its capacity. This is the reference semantics the LRU figures
//! in `tests/data/README.md` were computed with.

use crate::hash::SequenceHash;
use crate::store::{BlockSpec, BlockStore, ImmutableBlock, MutableBlock, StoreError};
use serde::Serialize;

/// Totals of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    /// Requests replayed.
    pub requests: u64,
    /// Blocks looked up (after truncation to the capacity).
    pub blocks: u64,
    /// Blocks served from the cache.
    pub hits: u64,
}

impl ReplayStats {
    /// Hits per looked-up block (0 when nothing was looked up).
    pub fn hit_rate(&self) -> f64 {
        if self.blocks == 0 {
            0.0
        } else {
            self.hits as f64 / self.blocks as f64
        }
    }
}

/// Replays requests one at a time; reuses its buffers across requests.
#[derive(Debug)]
pub struct SingleTierReplay {
    store: BlockStore,
    held: Vec<ImmutableBlock>,
    fresh: Vec<MutableBlock>,
    stats: ReplayStats,
}

impl SingleTierReplay {
    /// A replay over `store` (which may already hold blocks).
    pub fn new(store: BlockStore) -> Self {
        SingleTierReplay {
            store,
            held: Vec::new(),
            fresh: Vec::new(),
            stats: ReplayStats::default(),
        }
    }

    /// Replay one request given its chained block hashes.
    pub fn request(&mut self, hashes: &[SequenceHash]) -> Result<(), StoreError> {
        let hashes = &hashes[..hashes.len().min(self.store.capacity())];
        self.held.clear();
        let k = self.store.match_prefix_into(hashes, &mut self.held);
        // A full hit has nothing to allocate or register (and skips two
        // lock round-trips).
        if k < hashes.len() {
            self.store
                .allocate_into(hashes.len() - k, &mut self.fresh, None)?;
            let complete = self
                .fresh
                .drain(..)
                .zip(k..)
                .map(|(b, i)| b.complete(BlockSpec::at(hashes, i)));
            self.store.register_into(complete, &mut self.held);
        }
        self.store.release(self.held.drain(..).rev());
        self.stats.requests += 1;
        self.stats.blocks += hashes.len() as u64;
        self.stats.hits += k as u64;
        Ok(())
    }

    /// Totals so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// The store being replayed into.
    pub fn store(&self) -> &BlockStore {
        &self.store
    }
}

/// Replay every request through `store`; see the module docs for the semantics.
pub fn replay<S: AsRef<[SequenceHash]>>(
    store: &BlockStore,
    requests: &[S],
) -> Result<ReplayStats, StoreError> {
    let mut r = SingleTierReplay::new(store.clone());
    for req in requests {
        r.request(req.as_ref())?;
    }
    Ok(r.stats())
}
