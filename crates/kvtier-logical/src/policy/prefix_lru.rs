//! LRU with leaf-first eviction: the prefix-aware variant of the reference.

use super::leaf::LeafFirst;
use super::{BlockInfo, BuildPolicy, EvictionPolicy, NoParams, SlotId};

/// Least-recently-released first, but never a block that still has a cached
/// child while a leaf is evictable (see the `leaf` module): a prefix is cut
/// from its tail, never from its middle. With tail-first release this is what
/// LRU does anyway on most traces; it differs when a child outlives its parent
/// (a later request reused only the child's prefix and the parent was released
/// earlier), where plain LRU would strand the child.
#[derive(Debug)]
pub struct PrefixLru {
    q: LeafFirst,
}

impl BuildPolicy for PrefixLru {
    type Params = NoParams;
    fn build(capacity: usize, _params: &NoParams) -> Self {
        PrefixLru {
            q: LeafFirst::new(capacity, 1),
        }
    }
}

impl EvictionPolicy for PrefixLru {
    #[inline]
    fn insert(&mut self, slot: SlotId, info: &BlockInfo) {
        self.q.push_back(0, slot, info.is_leaf);
    }
    #[inline]
    fn remove(&mut self, slot: SlotId) {
        self.q.remove(slot);
    }
    #[inline]
    fn evict(&mut self) -> Option<SlotId> {
        self.q.pop_leaf(0).or_else(|| self.q.pop_parked())
    }
    #[inline]
    fn len(&self) -> usize {
        self.q.len()
    }
    #[inline]
    fn on_leaf_changed(&mut self, slot: SlotId, is_leaf: bool) {
        self.q.on_leaf_changed(slot, is_leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SequenceHash;

    fn info(leaf: bool) -> BlockInfo {
        BlockInfo {
            hash: SequenceHash(1),
            position: 0,
            is_leaf: leaf,
        }
    }

    #[test]
    fn evicts_leaves_before_ancestors() {
        let mut p = PrefixLru::build(4, &NoParams {});
        p.insert(0, &info(false)); // parent released first (oldest)
        p.insert(1, &info(true)); // its child
        assert_eq!(p.evict(), Some(1), "the child goes first");
        p.on_leaf_changed(0, true);
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), None);
    }

    #[test]
    fn falls_back_to_parked_blocks() {
        let mut p = PrefixLru::build(4, &NoParams {});
        p.insert(2, &info(false));
        p.insert(3, &info(false));
        assert_eq!(p.len(), 2);
        assert_eq!(p.evict(), Some(2));
        p.remove(3);
        assert!(p.is_empty());
    }
}
