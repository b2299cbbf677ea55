//! Withdrawing a block that turned out to be bad (e.g. failed its checksum in
//! a lower tier): it stops being matchable at once and its slot returns to the
//! free list when its last guard goes.

use super::{BlockStore, ImmutableBlock, NO_SLOT};
use crate::events::EventKind;

impl BlockStore {
    /// Stop matching `block`'s hash in this tier. The caller's guard (and any
    /// other) stays valid; when the last one is released the slot is freed
    /// instead of becoming inactive. Emits `Removed`. Returns false if the
    /// block was not indexed (already withdrawn, or an unindexed duplicate).
    ///
    /// # Panics
    /// If `block` belongs to another store.
    pub fn invalidate(&self, block: &ImmutableBlock) -> bool {
        assert!(
            super::Counted::ptr_eq(&block.store, &self.shared),
            "invalidate: a block of another store was passed"
        );
        let mut g = self.shared.inner.lock();
        let g = &mut *g;
        let s = block.slot;
        let slot = g.slots[s as usize];
        if !slot.indexed || slot.hash != block.hash {
            return false;
        }
        g.index.remove(g.index.probe(slot.hash), s);
        g.detach_from_parent(s);
        let slot = &mut g.slots[s as usize];
        slot.indexed = false;
        slot.parent_slot = NO_SLOT;
        g.events.emit(
            self.shared.tier,
            EventKind::Removed {
                hashes: vec![block.hash],
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::hash::{hash_trace_ids, CacheSalt};
    use crate::{BlockSpec, BlockStore, SequenceHash, StoreConfig, Tier};

    #[test]
    fn invalidated_blocks_are_freed_not_cached() {
        let s = BlockStore::new(StoreConfig::new(Tier::G2, 4)).unwrap();
        let h = hash_trace_ids(CacheSalt(0), &[1, 2]);
        let b = s.allocate(2).unwrap();
        let held = s.register(b.into_iter().enumerate().map(|(i, m)| {
            m.complete(BlockSpec {
                hash: h[i],
                parent: if i == 0 { SequenceHash::ROOT } else { h[0] },
                position: i as u32,
            })
        }));
        assert!(s.invalidate(&held[1]));
        assert!(!s.invalidate(&held[1]));
        assert_eq!(s.match_prefix(&h).len(), 1);
        s.check_invariants().unwrap();
        drop(held);
        let m = s.metrics();
        assert_eq!((m.free, m.inactive), (3, 1));
        s.check_invariants().unwrap();
    }
}
