//! LRU over inactive blocks: an intrusive doubly-linked list threaded through
//! arrays indexed by slot id.
//!
//! Why not the `lru` crate: it allocates a node per entry and keys entries by a
//! hash map, while slot ids are already dense array indices; an intrusive list
//! over one array of `u32` link pairs gives O(1) insert/remove/evict with no allocation.

use super::{BlockInfo, BuildPolicy, EvictionPolicy, NoParams, SlotId};

/// Sentinel for "no slot".
pub(crate) const NIL: u32 = u32::MAX;

/// Links of one slot: both neighbours in one 8-byte entry, so a list
/// operation touches one cache line per slot instead of three.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

/// A doubly-linked list of slot ids, stored in one array of links sized to
/// the capacity plus one sentinel entry (index `capacity`): the list is
/// circular through the sentinel, so no operation branches on an empty list
/// or an end, and a slot not in the list has `next == NIL` (membership needs
/// no separate array). Reusable by other policies (segments, queues).
#[derive(Clone, Debug)]
pub struct SlotList {
    links: Vec<Link>,
    /// Index of the sentinel (= capacity).
    sentinel: u32,
    len: usize,
}

impl SlotList {
    /// An empty list able to hold slots `0..capacity`.
    pub fn new(capacity: usize) -> Self {
        let sentinel = capacity as u32;
        assert!(sentinel < NIL, "capacity too large for u32 slot ids");
        let mut links = vec![
            Link {
                prev: NIL,
                next: NIL
            };
            capacity + 1
        ];
        links[capacity] = Link {
            prev: sentinel,
            next: sentinel,
        };
        SlotList {
            links,
            sentinel,
            len: 0,
        }
    }

    /// Number of slots in the list.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the list holds no slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `slot` is in the list.
    #[inline]
    pub fn contains(&self, slot: SlotId) -> bool {
        debug_assert!(slot < self.sentinel);
        self.links[slot as usize].next != NIL
    }

    /// Link `slot` between `prev` and `next` (adjacent entries).
    #[inline(always)]
    fn link(&mut self, slot: SlotId, prev: u32, next: u32) {
        debug_assert!(!self.contains(slot), "slot {slot} already listed");
        self.links[slot as usize] = Link { prev, next };
        self.links[prev as usize].next = slot;
        self.links[next as usize].prev = slot;
        self.len += 1;
    }

    /// Append `slot` at the most-recent end. The slot must not be in the list.
    #[inline]
    pub fn push_back(&mut self, slot: SlotId) {
        let s = self.sentinel;
        let tail = self.links[s as usize].prev;
        self.link(slot, tail, s);
    }

    /// Unlink `slot` if present; returns whether it was.
    #[inline]
    pub fn remove(&mut self, slot: SlotId) -> bool {
        let Link { prev, next } = self.links[slot as usize];
        if next == NIL {
            return false;
        }
        self.unlink(slot, prev, next);
        true
    }

    #[inline(always)]
    fn unlink(&mut self, slot: SlotId, prev: u32, next: u32) {
        self.links[prev as usize].next = next;
        self.links[next as usize].prev = prev;
        self.links[slot as usize].next = NIL;
        self.len -= 1;
    }

    /// The least-recent slot, if any.
    #[inline]
    pub fn front(&self) -> Option<SlotId> {
        let h = self.links[self.sentinel as usize].next;
        (h != self.sentinel).then_some(h)
    }

    /// Remove and return the least-recent slot.
    #[inline]
    pub fn pop_front(&mut self) -> Option<SlotId> {
        let s = self.sentinel;
        let h = self.links[s as usize].next;
        if h == s {
            return None;
        }
        let next = self.links[h as usize].next;
        self.unlink(h, s, next);
        Some(h)
    }
}

/// Least-recently-released-first eviction. With tail-first release of a
/// request's blocks, a prefix's head outlives its tail.
#[derive(Debug)]
pub struct Lru(SlotList);

impl BuildPolicy for Lru {
    type Params = NoParams;
    fn build(capacity: usize, _params: &NoParams) -> Self {
        Lru(SlotList::new(capacity))
    }
}

impl EvictionPolicy for Lru {
    fn uses_leaves(&self) -> bool {
        false
    }
    fn evicts_in_batches(&self) -> bool {
        true
    }
    #[inline(always)]
    fn insert(&mut self, slot: SlotId, _info: &BlockInfo) {
        self.0.push_back(slot);
    }
    #[inline(always)]
    fn remove(&mut self, slot: SlotId) {
        self.0.remove(slot);
    }
    #[inline(always)]
    fn evict(&mut self) -> Option<SlotId> {
        self.0.pop_front()
    }
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SequenceHash;

    fn info() -> BlockInfo {
        BlockInfo {
            hash: SequenceHash(1),
            position: 0,
            is_leaf: true,
        }
    }

    #[test]
    fn evicts_least_recent_first() {
        let mut l = Lru::build(4, &NoParams {});
        for s in [2, 0, 3] {
            l.insert(s, &info());
        }
        l.remove(0);
        assert_eq!(l.evict(), Some(2));
        l.insert(1, &info());
        assert_eq!(l.evict(), Some(3));
        assert_eq!(l.evict(), Some(1));
        assert_eq!(l.evict(), None);
        assert!(l.is_empty());
    }

    #[test]
    fn slot_list_membership() {
        let mut l = SlotList::new(3);
        l.push_back(1);
        l.push_back(2);
        assert_eq!(l.front(), Some(1));
        assert!(l.contains(1));
        assert!(!l.remove(0));
        assert_eq!(l.pop_front(), Some(1));
        assert_eq!(l.pop_front(), Some(2));
        assert_eq!(l.pop_front(), None);
    }
}
