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

use super::lru::NIL;
use super::SlotId;

/// `Node::list` of a slot in no list.
const NONE: u8 = u8::MAX;

/// Per-slot state: links, list membership and the owning policy's own
/// per-slot data `T` in one entry (12 bytes plus `T`), so a call touches one
/// cache line per slot.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Node<T> {
    /// The policy's per-slot data (first, so that its alignment pads the
    /// entry to a size that does not straddle cache lines).
    data: T,
    prev: u32,
    next: u32,
    /// List the slot is in (a segment, the parking list, or `NONE`).
    list: u8,
    /// Segment a parked slot returns to.
    home: u8,
    /// Whether the slot has no cached child (as last told by the store).
    leaf: bool,
}

/// `N` ordered segments (each an intrusive LRU list) plus a parking list for
/// non-leaf blocks skipped at eviction. All lists share one array of nodes:
/// a slot is in at most one of them. Entries `capacity..capacity + N + 1`
/// are the lists' sentinels (the lists are circular through them); the
/// parking list is list `N`.
#[derive(Debug)]
pub(crate) struct LeafFirst<T = ()> {
    nodes: Vec<Node<T>>,
    /// Index of list 0's sentinel (= capacity).
    base: u32,
    /// Index of the parking list (= number of segments).
    parked: u8,
    lens: Vec<usize>,
    len: usize,
}

impl<T: Copy + Default> LeafFirst<T> {
    pub(crate) fn new(capacity: usize, segments: usize) -> Self {
        assert!(segments < NONE as usize && capacity + segments < NIL as usize);
        let mut nodes = vec![
            Node {
                data: T::default(),
                prev: NIL,
                next: NIL,
                list: NONE,
                home: 0,
                leaf: true,
            };
            capacity + segments + 1
        ];
        for (i, n) in nodes[capacity..].iter_mut().enumerate() {
            let s = (capacity + i) as u32;
            n.prev = s;
            n.next = s;
        }
        LeafFirst {
            nodes,
            base: capacity as u32,
            parked: segments as u8,
            lens: vec![0; segments + 1],
            len: 0,
        }
    }

    #[inline(always)]
    fn sentinel(&self, list: u8) -> u32 {
        self.base + list as u32
    }

    /// Link `slot` between adjacent entries `prev` and `next` of `list`.
    #[inline(always)]
    fn link(&mut self, list: u8, slot: SlotId, prev: u32, next: u32) {
        let n = &mut self.nodes[slot as usize];
        debug_assert!(n.list == NONE, "slot {slot} already listed");
        n.prev = prev;
        n.next = next;
        n.list = list;
        self.nodes[prev as usize].next = slot;
        self.nodes[next as usize].prev = slot;
        self.lens[list as usize] += 1;
    }

    #[inline(always)]
    fn link_back(&mut self, list: u8, slot: SlotId) {
        let s = self.sentinel(list);
        let tail = self.nodes[s as usize].prev;
        self.link(list, slot, tail, s);
    }

    #[inline(always)]
    fn link_front(&mut self, list: u8, slot: SlotId) {
        let s = self.sentinel(list);
        let head = self.nodes[s as usize].next;
        self.link(list, slot, s, head);
    }

    /// Unlink a listed slot; returns the list it was in.
    #[inline(always)]
    fn unlink(&mut self, slot: SlotId) -> u8 {
        let n = &mut self.nodes[slot as usize];
        let (prev, next, list) = (n.prev, n.next, n.list);
        n.list = NONE;
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
        self.lens[list as usize] -= 1;
        list
    }

    #[inline(always)]
    fn head(&self, list: u8) -> Option<SlotId> {
        let s = self.sentinel(list);
        let h = self.nodes[s as usize].next;
        (h != s).then_some(h)
    }

    /// The policy's data of `slot` (kept whether or not the slot is listed).
    #[inline(always)]
    pub(crate) fn data(&self, slot: SlotId) -> &T {
        &self.nodes[slot as usize].data
    }

    /// The policy's data of `slot`, mutable.
    #[inline(always)]
    pub(crate) fn data_mut(&mut self, slot: SlotId) -> &mut T {
        &mut self.nodes[slot as usize].data
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Inactive blocks listed in segment `s` (parked ones not counted).
    #[inline]
    pub(crate) fn seg_len(&self, s: usize) -> usize {
        self.lens[s]
    }

    /// Append at the most-recent end of segment `s`.
    #[inline]
    pub(crate) fn push_back(&mut self, s: usize, slot: SlotId, is_leaf: bool) {
        self.nodes[slot as usize].leaf = is_leaf;
        self.link_back(s as u8, slot);
        self.len += 1;
    }

    /// Insert at the least-recent end of segment `s` (evicted next).
    #[inline]
    pub(crate) fn push_front(&mut self, s: usize, slot: SlotId, is_leaf: bool) {
        self.nodes[slot as usize].leaf = is_leaf;
        self.link_front(s as u8, slot);
        self.len += 1;
    }

    /// Unlink an inactive slot wherever it is.
    #[inline]
    pub(crate) fn remove(&mut self, slot: SlotId) -> bool {
        if self.nodes[slot as usize].list == NONE {
            return false;
        }
        self.unlink(slot);
        self.len -= 1;
        true
    }

    /// The least-recent slot of segment `s` (maybe a non-leaf), without
    /// removing it.
    #[inline]
    pub(crate) fn front(&self, s: usize) -> Option<SlotId> {
        self.head(s as u8)
    }

    /// Move the least-recent slot of segment `from` to the most-recent end of
    /// segment `to`.
    #[inline]
    pub(crate) fn move_front_to_back(&mut self, from: usize, to: usize) -> Option<SlotId> {
        let slot = self.head(from as u8)?;
        self.unlink(slot);
        self.link_back(to as u8, slot);
        Some(slot)
    }

    /// Remove and return the least-recent *leaf* of segment `s`, parking the
    /// non-leaves met on the way. `None` if the segment has no leaf.
    #[inline]
    pub(crate) fn pop_leaf(&mut self, s: usize) -> Option<SlotId> {
        loop {
            if let Some(v) = self.pop_step(s)? {
                return Some(v);
            }
        }
    }

    /// One step of [`pop_leaf`](Self::pop_leaf): `Some(Some(slot))` if the
    /// front of segment `s` was a leaf (removed), `Some(None)` if it was a
    /// non-leaf (parked), `None` if the segment is empty.
    #[inline]
    pub(crate) fn pop_step(&mut self, s: usize) -> Option<Option<SlotId>> {
        let slot = self.head(s as u8)?;
        self.unlink(slot);
        if self.nodes[slot as usize].leaf {
            self.len -= 1;
            return Some(Some(slot));
        }
        self.nodes[slot as usize].home = s as u8;
        self.link_back(self.parked, slot);
        Some(None)
    }

    /// Remove and return the oldest parked slot (last resort).
    #[inline]
    pub(crate) fn pop_parked(&mut self) -> Option<SlotId> {
        let slot = self.head(self.parked)?;
        self.unlink(slot);
        self.len -= 1;
        Some(slot)
    }

    /// The store's leaf notification: a parked block that became a leaf goes
    /// back to the eviction end of its segment.
    #[inline]
    pub(crate) fn on_leaf_changed(&mut self, slot: SlotId, is_leaf: bool) {
        let n = &mut self.nodes[slot as usize];
        n.leaf = is_leaf;
        if is_leaf && n.list == self.parked {
            let h = n.home;
            self.unlink(slot);
            self.link_front(h, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parks_non_leaves_and_returns_them() {
        let mut l: LeafFirst = LeafFirst::new(8, 1);
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
        let mut l: LeafFirst = LeafFirst::new(4, 2);
        l.push_back(1, 3, false);
        assert_eq!(l.pop_leaf(1), None);
        assert!(l.remove(3));
        assert!(!l.remove(3));
        assert_eq!(l.len(), 0);
        assert_eq!(l.pop_parked(), None);
    }
}
