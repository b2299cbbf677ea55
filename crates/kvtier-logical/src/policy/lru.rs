//! LRU over inactive blocks: an intrusive doubly-linked list threaded through
//! arrays indexed by slot id.
//!
//! Why not the `lru` crate: it allocates a node per entry and keys entries by a
//! hash map, while slot ids are already dense array indices; an intrusive list
//! over two `u32` arrays gives O(1) insert/remove/evict with no allocation.

use super::{BlockInfo, EvictionPolicy, SlotId};

/// Sentinel for "no slot".
pub(crate) const NIL: u32 = u32::MAX;

/// A doubly-linked list of slot ids, stored in arrays sized to the capacity.
/// Reusable by other policies (segments, queues).
#[derive(Clone, Debug)]
pub struct SlotList {
    prev: Vec<u32>,
    next: Vec<u32>,
    member: Vec<bool>,
    head: u32, // least recent
    tail: u32, // most recent
    len: usize,
}

impl SlotList {
    /// An empty list able to hold slots `0..capacity`.
    pub fn new(capacity: usize) -> Self {
        SlotList {
            prev: vec![NIL; capacity],
            next: vec![NIL; capacity],
            member: vec![false; capacity],
            head: NIL,
            tail: NIL,
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
        self.member[slot as usize]
    }

    /// Append `slot` at the most-recent end. The slot must not be in the list.
    #[inline]
    pub fn push_back(&mut self, slot: SlotId) {
        let s = slot as usize;
        debug_assert!(!self.member[s], "slot {slot} already listed");
        self.member[s] = true;
        self.prev[s] = self.tail;
        self.next[s] = NIL;
        if self.tail != NIL {
            self.next[self.tail as usize] = slot;
        } else {
            self.head = slot;
        }
        self.tail = slot;
        self.len += 1;
    }

    /// Insert `slot` at the least-recent end (evicted next).
    #[inline]
    pub fn push_front(&mut self, slot: SlotId) {
        let s = slot as usize;
        debug_assert!(!self.member[s], "slot {slot} already listed");
        self.member[s] = true;
        self.next[s] = self.head;
        self.prev[s] = NIL;
        if self.head != NIL {
            self.prev[self.head as usize] = slot;
        } else {
            self.tail = slot;
        }
        self.head = slot;
        self.len += 1;
    }

    /// Unlink `slot` if present; returns whether it was.
    #[inline]
    pub fn remove(&mut self, slot: SlotId) -> bool {
        let s = slot as usize;
        if !self.member[s] {
            return false;
        }
        let (p, n) = (self.prev[s], self.next[s]);
        if p != NIL {
            self.next[p as usize] = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.prev[n as usize] = p;
        } else {
            self.tail = p;
        }
        self.member[s] = false;
        self.len -= 1;
        true
    }

    /// The least-recent slot, if any.
    #[inline]
    pub fn front(&self) -> Option<SlotId> {
        (self.head != NIL).then_some(self.head)
    }

    /// Remove and return the least-recent slot.
    #[inline]
    pub fn pop_front(&mut self) -> Option<SlotId> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.remove(h);
        Some(h)
    }
}

/// Least-recently-released-first eviction. With tail-first release of a
/// request's blocks, a prefix's head outlives its tail.
#[derive(Debug)]
pub struct Lru {
    list: SlotList,
}

impl Lru {
    /// An LRU for a tier of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Lru {
            list: SlotList::new(capacity),
        }
    }
}

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    #[inline]
    fn insert(&mut self, slot: SlotId, _info: &BlockInfo) {
        self.list.push_back(slot);
    }
    #[inline]
    fn remove(&mut self, slot: SlotId) {
        self.list.remove(slot);
    }
    #[inline]
    fn evict(&mut self) -> Option<SlotId> {
        self.list.pop_front()
    }
    #[inline]
    fn len(&self) -> usize {
        self.list.len()
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
        let mut l = Lru::new(4);
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
    fn slot_list_front_insert() {
        let mut l = SlotList::new(3);
        l.push_back(1);
        l.push_front(2);
        assert_eq!(l.front(), Some(2));
        assert!(l.contains(1));
        assert!(!l.remove(0));
        assert_eq!(l.pop_front(), Some(2));
        assert_eq!(l.pop_front(), Some(1));
        assert_eq!(l.pop_front(), None);
    }
}
