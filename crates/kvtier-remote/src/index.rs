//! The local index of G4's contents: which blocks the namespace is believed
//! to hold, their sizes and their last use. Lookups are answered from it
//! (no round trip); a stale entry costs a miss when its object is read.

use kvtier_logical::SequenceHash;
use parking_lot::Mutex;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Object size in bytes.
    bytes: u64,
    /// Use tick (larger: more recent).
    last: u64,
    /// Listing generation in which the entry was last confirmed (or written).
    seen: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<u128, Entry>,
    bytes: u64,
    tick: u64,
    generation: u64,
}

/// The index: one mutex over a hash map (one lock per lookup of a prefix).
#[derive(Default)]
pub struct Index {
    state: Mutex<State>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leading `hashes` the index holds.
    pub fn matched(&self, hashes: &[SequenceHash]) -> usize {
        let s = self.state.lock();
        hashes
            .iter()
            .take_while(|h| s.map.contains_key(&h.0))
            .count()
    }

    /// Whether the index holds `hash`.
    pub fn contains(&self, hash: SequenceHash) -> bool {
        self.state.lock().map.contains_key(&hash.0)
    }

    /// Record an object of `bytes` (written or read by this node, or listed).
    pub fn insert(&self, hash: SequenceHash, bytes: u64) {
        let mut s = self.state.lock();
        s.tick += 1;
        let (last, seen) = (s.tick, s.generation);
        let old = s.map.insert(hash.0, Entry { bytes, last, seen });
        s.bytes = s.bytes - old.map_or(0, |e| e.bytes) + bytes;
    }

    /// Mark `hashes` used now (they move to the back of the eviction order).
    pub fn touch(&self, hashes: &[SequenceHash]) {
        let mut s = self.state.lock();
        for h in hashes {
            s.tick += 1;
            let t = s.tick;
            if let Some(e) = s.map.get_mut(&h.0) {
                e.last = t;
            }
        }
    }

    /// Drop `hash`; true if it was held.
    pub fn remove(&self, hash: SequenceHash) -> bool {
        let mut s = self.state.lock();
        match s.map.remove(&hash.0) {
            Some(e) => {
                s.bytes -= e.bytes;
                true
            }
            None => false,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.state.lock().map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the objects held.
    pub fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }

    /// Start a listing: returns its generation. Entries inserted from now on
    /// count as confirmed by it.
    pub fn begin_listing(&self) -> u64 {
        let mut s = self.state.lock();
        s.generation += 1;
        s.generation
    }

    /// A listing of generation `generation` saw these objects: add the new
    /// ones (least recently used first, in their listed order) and confirm
    /// the known ones.
    pub fn listed(&self, generation: u64, objects: &[(SequenceHash, u64)]) {
        let mut s = self.state.lock();
        for &(h, bytes) in objects {
            match s.map.get_mut(&h.0) {
                Some(e) => e.seen = e.seen.max(generation),
                None => {
                    s.map.insert(
                        h.0,
                        Entry {
                            bytes,
                            last: 0,
                            seen: generation,
                        },
                    );
                    s.bytes += bytes;
                }
            }
        }
    }

    /// A complete listing of generation `generation` ended: drop entries it
    /// did not see that were not written or confirmed since it began
    /// (objects deleted by another node or outside kvtier). Returns how many.
    pub fn end_listing(&self, generation: u64) -> u64 {
        let mut s = self.state.lock();
        let before = s.map.len();
        let mut freed = 0;
        s.map.retain(|_, e| {
            let keep = e.seen >= generation;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        s.bytes -= freed;
        (before - s.map.len()) as u64
    }

    /// The least recently used entries whose removal brings the bytes down
    /// to `target`, removed from the index (the caller deletes them).
    pub fn take_lru(&self, target: u64) -> Vec<(SequenceHash, u64)> {
        let mut s = self.state.lock();
        if s.bytes <= target {
            return Vec::new();
        }
        let mut all: Vec<(u64, u128, u64)> =
            s.map.iter().map(|(h, e)| (e.last, *h, e.bytes)).collect();
        all.sort_unstable();
        let mut out = Vec::new();
        let mut bytes = s.bytes;
        for (_, h, b) in all {
            if bytes <= target {
                break;
            }
            bytes -= b;
            out.push((SequenceHash(h), b));
        }
        for (h, _) in &out {
            s.map.remove(&h.0);
        }
        s.bytes = bytes;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u128) -> SequenceHash {
        SequenceHash(i)
    }

    #[test]
    fn prefix_match_and_bytes() {
        let ix = Index::new();
        ix.insert(h(1), 10);
        ix.insert(h(2), 10);
        ix.insert(h(4), 10);
        assert_eq!(ix.matched(&[h(1), h(2), h(3), h(4)]), 2);
        assert_eq!(ix.matched(&[h(3)]), 0);
        assert_eq!(ix.bytes(), 30);
        ix.insert(h(2), 20);
        assert_eq!(ix.bytes(), 40);
        assert!(ix.remove(h(2)));
        assert!(!ix.remove(h(2)));
        assert_eq!(ix.bytes(), 20);
    }

    #[test]
    fn lru_eviction_to_target() {
        let ix = Index::new();
        for i in 0..10 {
            ix.insert(h(i), 10);
        }
        ix.touch(&[h(0), h(1)]);
        let gone = ix.take_lru(50);
        assert_eq!(gone, (2..7).map(|i| (h(i), 10)).collect::<Vec<_>>());
        assert_eq!(ix.bytes(), 50);
        assert!(ix.contains(h(0)) && ix.contains(h(1)));
        assert!(ix.take_lru(50).is_empty());
    }

    #[test]
    fn listing_adds_and_drops_unseen() {
        let ix = Index::new();
        ix.insert(h(1), 10);
        ix.insert(h(2), 10);
        let g = ix.begin_listing();
        // Written during the listing: kept though not listed.
        ix.insert(h(3), 10);
        ix.listed(g, &[(h(1), 10), (h(9), 5)]);
        assert_eq!(ix.end_listing(g), 1); // h(2) deleted elsewhere
        assert!(ix.contains(h(1)) && ix.contains(h(3)) && ix.contains(h(9)));
        assert!(!ix.contains(h(2)));
        assert_eq!(ix.bytes(), 25);
        // Listed entries are the first to go.
        assert_eq!(ix.take_lru(20), vec![(h(9), 5)]);
    }
}
