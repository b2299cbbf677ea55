//! Withdrawing blocks: one that turned out to be bad (e.g. failed its
//! checksum in a lower tier) stops being matchable at once and its slot
//! returns to the free list when its last guard goes; `clear` withdraws
//! every block.

use super::slots::NO_SLOT;
use super::{BlockStore, Counted, ImmutableBlock, Inner};
use crate::events::EventKind;
use crate::policy::EvictionPolicy;

impl BlockStore {
    /// Remove every inactive block and stop matching the ones in use (they
    /// stay valid for their holders and return to the free list when
    /// released). Emits `Cleared`.
    pub fn clear(&self) {
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        with_policy!(policy, p => {
            while let Some(s) = p.evict() {
                p.on_evicted(s, &core.slots[s as usize].info());
                core.counters.evictions += 1;
                core.free_slot(s);
            }
        });
        for slot in core.slots.iter_mut() {
            slot.indexed = false;
            slot.parent_slot = NO_SLOT;
            slot.children = 0;
        }
        core.index.clear();
        core.events.emit(self.shared.tier, EventKind::Cleared);
    }

    /// Stop matching `block`'s hash in this tier. The caller's guard (and any
    /// other) stays valid; when the last one is released the slot is freed
    /// instead of becoming inactive. Emits `Removed`. Returns false if the
    /// block was not indexed (already withdrawn, or an unindexed duplicate).
    ///
    /// # Panics
    /// If `block` belongs to another store.
    pub fn invalidate(&self, block: &ImmutableBlock) -> bool {
        assert!(
            Counted::ptr_eq(&block.store, &self.shared),
            "invalidate: a block of another store was passed"
        );
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        let s = block.slot;
        let slot = core.slots[s as usize];
        if !slot.indexed || slot.hash != block.hash {
            return false;
        }
        core.index.remove(core.index.probe(slot.hash), s);
        with_policy!(policy, p => core.detach_from_parent(p, s));
        let slot = &mut core.slots[s as usize];
        slot.indexed = false;
        slot.parent_slot = NO_SLOT;
        core.events.emit(
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
    use crate::store::tests::stored;

    #[test]
    fn invalidated_blocks_are_freed_not_cached() {
        let (s, h, held) = stored(4, &[1, 2]);
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
