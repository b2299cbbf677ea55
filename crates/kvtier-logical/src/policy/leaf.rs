//! Leaf-first eviction over a few ordered segments: the prefix-aware building
//! block shared by [`PrefixLru`](super::PrefixLru) and
//! [`PrefixFreq`](super::PrefixFreq).
//!
//! A block with a cached child is worth at least as much as the child: evicting
//! it makes the whole cached subtree unreachable for prefix matching. So when a
//! segment's next victim still has a cached child, it is *parked* (moved to a
//! side list) instead of evicted, and the search goes on. When a parked block
//! loses its last child (`on_leaf_changed(slot, true)`) it goes back to the
//! eviction end of its segment. Only when every inactive block is parked (all
//! their children are in use) is a parked block evicted, oldest first.
//!
//! Cost: each park is paid for by the insert that listed the block, and each
//! return by the child eviction that made it a leaf: amortised O(1).

use super::{SlotId, SlotList};

const NONE: u8 = u8::MAX;

#[derive(Clone, Copy, Debug)]
struct SlotMeta {
    /// Segment the slot is listed in, `PARKED` or `NONE`.
    seg: u8,
    /// Segment a parked slot returns to.
    home: u8,
    /// Whether the slot has no cached child (as last told by the store).
    leaf: bool,
}
const PARKED: u8 = u8::MAX - 1;

/// `N` ordered segments (each an intrusive LRU list) plus a parking list for
/// non-leaf blocks skipped at eviction.
#[derive(Debug)]
pub(crate) struct LeafFirst {
    lists: Vec<SlotList>,
    parked: SlotList,
    /// Per-slot state, packed: one cache line per call.
    meta: Vec<SlotMeta>,
    len: usize,
}

impl LeafFirst {
    pub(crate) fn new(capacity: usize, segments: usize) -> Self {
        LeafFirst {
            lists: (0..segments).map(|_| SlotList::new(capacity)).collect(),
            parked: SlotList::new(capacity),
            meta: vec![
                SlotMeta {
                    seg: NONE,
                    home: 0,
                    leaf: true,
                };
                capacity
            ],
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Inactive blocks listed in segment `s` (parked ones not counted).
    #[inline]
    pub(crate) fn seg_len(&self, s: usize) -> usize {
        self.lists[s].len()
    }

    /// Append at the most-recent end of segment `s`.
    #[inline]
    pub(crate) fn push_back(&mut self, s: usize, slot: SlotId, is_leaf: bool) {
        self.meta[slot as usize].seg = s as u8;
        self.meta[slot as usize].leaf = is_leaf;
        self.lists[s].push_back(slot);
        self.len += 1;
    }

    /// Insert at the least-recent end of segment `s` (evicted next).
    #[inline]
    pub(crate) fn push_front(&mut self, s: usize, slot: SlotId, is_leaf: bool) {
        self.meta[slot as usize].seg = s as u8;
        self.meta[slot as usize].leaf = is_leaf;
        self.lists[s].push_front(slot);
        self.len += 1;
    }

    /// Unlink an inactive slot wherever it is.
    #[inline]
    pub(crate) fn remove(&mut self, slot: SlotId) -> bool {
        let s = self.meta[slot as usize].seg;
        let found = match s {
            NONE => false,
            PARKED => self.parked.remove(slot),
            s => self.lists[s as usize].remove(slot),
        };
        if found {
            self.len -= 1;
        }
        self.meta[slot as usize].seg = NONE;
        found
    }

    /// The least-recent slot of segment `s` (maybe a non-leaf), without
    /// removing it.
    #[inline]
    pub(crate) fn front(&self, s: usize) -> Option<SlotId> {
        self.lists[s].front()
    }

    /// Move the least-recent slot of segment `from` to the most-recent end of
    /// segment `to`.
    #[inline]
    pub(crate) fn move_front_to_back(&mut self, from: usize, to: usize) -> Option<SlotId> {
        let slot = self.lists[from].pop_front()?;
        self.lists[to].push_back(slot);
        self.meta[slot as usize].seg = to as u8;
        Some(slot)
    }

    /// Remove and return the least-recent *leaf* of segment `s`, parking the
    /// non-leaves met on the way. `None` if the segment has no leaf.
    #[inline]
    pub(crate) fn pop_leaf(&mut self, s: usize) -> Option<SlotId> {
        while let Some(slot) = self.lists[s].pop_front() {
            if self.meta[slot as usize].leaf {
                self.meta[slot as usize].seg = NONE;
                self.len -= 1;
                return Some(slot);
            }
            self.parked.push_back(slot);
            self.meta[slot as usize].seg = PARKED;
            self.meta[slot as usize].home = s as u8;
        }
        None
    }

    /// One step of [`pop_leaf`](Self::pop_leaf): `Some(Some(slot))` if the
    /// front of segment `s` was a leaf (removed), `Some(None)` if it was a
    /// non-leaf (parked), `None` if the segment is empty.
    #[inline]
    pub(crate) fn pop_step(&mut self, s: usize) -> Option<Option<SlotId>> {
        let slot = self.lists[s].pop_front()?;
        if self.meta[slot as usize].leaf {
            self.meta[slot as usize].seg = NONE;
            self.len -= 1;
            return Some(Some(slot));
        }
        self.parked.push_back(slot);
        self.meta[slot as usize].seg = PARKED;
        self.meta[slot as usize].home = s as u8;
        Some(None)
    }

    /// Remove and return the oldest parked slot (last resort).
    #[inline]
    pub(crate) fn pop_parked(&mut self) -> Option<SlotId> {
        let slot = self.parked.pop_front()?;
        self.meta[slot as usize].seg = NONE;
        self.len -= 1;
        Some(slot)
    }

    /// The store's leaf notification: a parked block that became a leaf goes
    /// back to the eviction end of its segment.
    #[inline]
    pub(crate) fn on_leaf_changed(&mut self, slot: SlotId, is_leaf: bool) {
        self.meta[slot as usize].leaf = is_leaf;
        if is_leaf && self.meta[slot as usize].seg == PARKED {
            self.parked.remove(slot);
            let h = self.meta[slot as usize].home;
            self.lists[h as usize].push_front(slot);
            self.meta[slot as usize].seg = h;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parks_non_leaves_and_returns_them() {
        let mut l = LeafFirst::new(8, 1);
        // chain 0 <- 1 <- 2 released tail first, but say the tail 2 is in use:
        l.push_back(0, 1, false);
        l.push_back(0, 0, false);
        l.push_back(0, 5, true);
        assert_eq!(l.pop_leaf(0), Some(5));
        assert_eq!(l.len(), 2);
        assert_eq!(l.pop_leaf(0), None, "both remaining are parked");
        l.on_leaf_changed(1, true);
        assert_eq!(l.pop_leaf(0), Some(1));
        assert_eq!(l.pop_parked(), Some(0));
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn remove_from_parking() {
        let mut l = LeafFirst::new(4, 2);
        l.push_back(1, 3, false);
        assert_eq!(l.pop_leaf(1), None);
        assert!(l.remove(3));
        assert!(!l.remove(3));
        assert_eq!(l.len(), 0);
        assert_eq!(l.pop_parked(), None);
    }
}
