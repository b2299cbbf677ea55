//! A sampled shadow LRU: what plain LRU would have hit, measured on a fixed
//! sample of the hashes (spatial sampling, as SHARDS does for miss-ratio
//! curves). A hash is in the sample when `1 / rate` of its bits say so; the
//! shadow is an LRU of `capacity / rate` keys, which sees every access to
//! the sampled hashes and nothing else, so its hits estimate LRU's hit rate
//! at the full capacity. `gated-arc` compares it with its own hits on the
//! same sample and leans towards LRU's order when LRU would have done better.
//!
//! Only sampled accesses touch it (one in `rate`): a table of keys (the
//! store's bucketed hash index) and an intrusive LRU list, all sized at
//! construction: no allocation per call.

use crate::hash::SequenceHash;
use crate::store::index::{Index, Probe};

/// An index from nonzero `u64` keys to entry indexes `0..entries`, sized
/// at construction: the sampled miniatures' map from a hash to its slot.
/// It is the store's own hash index (`store/index.rs`: cache-line buckets
/// compared with vector masks, no tombstones, no shifting on removal), so a
/// lookup or an update has no data-dependent branch beyond hit or miss.
/// (A linear-probing table with backward-shift deletion mispredicted its
/// probe loops often enough to cost more than the rest of the duel.)
#[derive(Clone, Debug)]
pub(crate) struct KeyIndex {
    /// Key (0: none) and index position of each entry, side by side so an
    /// update touches one line.
    entries: Vec<KeyEntry>,
    index: Index,
}

/// One entry of a [`KeyIndex`].
#[derive(Clone, Copy, Debug, Default)]
struct KeyEntry {
    /// The key held (0: none).
    key: u64,
    /// Its position in the index, while held.
    pos: u32,
    /// The home bucket of its probe (so removing it hashes nothing).
    home: u32,
}

/// A key [`KeyIndex::get`] did not find, with the probe that missed it
/// (for [`KeyIndex::insert`]).
#[derive(Clone, Copy)]
pub(crate) struct Miss {
    key: u64,
    probe: Probe,
}

impl KeyIndex {
    /// An index of up to `entries` keys.
    pub(crate) fn new(entries: usize) -> Self {
        KeyIndex {
            entries: vec![KeyEntry::default(); entries.max(1)],
            index: Index::with_capacity(entries.max(1)),
        }
    }

    /// The key as the index's hash type.
    #[inline(always)]
    fn hash(key: u64) -> SequenceHash {
        SequenceHash(key as u128)
    }

    /// The entry holding `key`, or the miss to insert it with.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Result<u32, Miss> {
        let h = Self::hash(key);
        let probe = self.index.probe(h);
        let entries = &self.entries;
        self.index
            .get(probe, h, |e| Self::hash(entries[e as usize].key))
            .ok_or(Miss { key, probe })
    }

    /// The key entry `e` holds (0: none).
    #[inline]
    pub(crate) fn key(&self, e: u32) -> u64 {
        self.entries[e as usize].key
    }

    /// Map the missed key to the free entry `e` (no other entry took that
    /// key since the miss).
    #[inline]
    pub(crate) fn insert(&mut self, miss: Miss, e: u32) {
        debug_assert!(miss.key != 0 && self.entries[e as usize].key == 0);
        let pos = self.index.insert_absent(miss.probe, e);
        self.entries[e as usize] = KeyEntry {
            key: miss.key,
            pos,
            home: miss.probe.home() as u32,
        };
    }

    /// Forget the key of entry `e` (which holds one).
    #[inline]
    pub(crate) fn remove(&mut self, e: u32) {
        let KeyEntry { key, pos, home } = self.entries[e as usize];
        debug_assert!(key != 0);
        self.index.remove_from(home as usize, pos);
        self.entries[e as usize].key = 0;
    }
}

/// The sampling rate for a tier of `capacity` slots: `rate` (rounded to a
/// power of two), lowered so that a miniature keeps at least `min_entries`
/// entries.
pub(crate) fn sample_rate(capacity: usize, rate: u32, min_entries: usize) -> u32 {
    let mut rate = rate.max(1).next_power_of_two();
    while rate > 1 && capacity / (rate as usize) < min_entries {
        rate /= 2;
    }
    rate
}

/// A sampled LRU of hashes.
#[derive(Clone, Debug)]
pub struct ShadowLru {
    /// `rate - 1`: a hash is sampled when `sample_bits & mask == 0`.
    mask: u32,
    index: KeyIndex,
    /// LRU links (previous, next) by entry index; index `cap` is the
    /// sentinel.
    links: Vec<[u32; 2]>,
    /// Entries in use.
    len: u32,
    cap: u32,
}

impl ShadowLru {
    /// A shadow of a tier of `capacity` slots, sampling one hash in `rate`
    /// (a power of two, lowered for small tiers so that the shadow keeps at
    /// least `min_entries` entries).
    pub fn new(capacity: usize, rate: u32, min_entries: usize) -> Self {
        let rate = sample_rate(capacity, rate, min_entries);
        let cap = (capacity / rate as usize).max(1);
        let mut links = super::touched_table::<[u32; 2]>(cap + 1);
        links[cap] = [cap as u32; 2];
        ShadowLru {
            mask: rate - 1,
            index: KeyIndex::new(cap),
            links,
            len: 0,
            cap: cap as u32,
        }
    }

    /// One in how many hashes is sampled.
    pub fn rate(&self) -> u32 {
        self.mask + 1
    }

    /// A shadow of `entries` keys sampling one hash in `rate` (a power of
    /// two) exactly: the miniature of a lower tier, sampled as the tier
    /// above it is.
    pub fn with_rate(entries: usize, rate: u32) -> Self {
        let mut s = Self::new(entries.max(1), 1, 1);
        s.mask = rate.max(1) - 1;
        s
    }

    /// Keys the shadow can hold.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The shadow's key of `hash` if it is in the sample (bits no other
    /// table of the policy indexes by).
    #[inline(always)]
    pub fn sampled(&self, hash: SequenceHash) -> Option<u64> {
        let hi = (hash.0 >> 64) as u64;
        if (hi as u32) & self.mask != 0 {
            return None;
        }
        Some((hash.0 as u64) | 1)
    }

    fn unlink(&mut self, e: u32) {
        let [p, n] = self.links[e as usize];
        self.links[p as usize][1] = n;
        self.links[n as usize][0] = p;
    }

    /// Forget `key` if it is held (a miniature of a lower tier handing a
    /// block back up): whether it was. Its entry becomes the next to be
    /// reused.
    pub fn take(&mut self, key: u64) -> bool {
        let Ok(e) = self.index.get(key) else {
            return false;
        };
        self.index.remove(e);
        self.unlink(e);
        let s = self.cap;
        self.link(e, s, self.links[s as usize][1]);
        true
    }

    /// Link entry `e` between `prev` and `next`.
    fn link(&mut self, e: u32, prev: u32, next: u32) {
        self.links[e as usize] = [prev, next];
        self.links[prev as usize][1] = e;
        self.links[next as usize][0] = e;
    }

    fn push_back(&mut self, e: u32) {
        let s = self.cap;
        self.link(e, self.links[s as usize][0], s);
    }

    /// An access to the sampled `key`: whether LRU would have hit it. The
    /// key becomes the most recent; a miss inserts it, evicting the least
    /// recent key when the shadow is full.
    pub fn access(&mut self, key: u64) -> bool {
        let miss = match self.index.get(key) {
            Ok(e) => {
                self.unlink(e);
                self.push_back(e);
                return true;
            }
            Err(miss) => miss,
        };
        let e = if self.len < self.cap {
            self.len += 1;
            self.len - 1
        } else {
            let victim = self.links[self.cap as usize][1];
            self.unlink(victim);
            if self.index.key(victim) != 0 {
                self.index.remove(victim);
            }
            victim
        };
        self.index.insert(miss, e);
        self.push_back(e);
        false
    }

    /// Keys held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_lru() {
        let mut s = ShadowLru::new(4, 1, 1);
        assert_eq!(s.rate(), 1);
        for k in 1..=4u64 {
            assert!(!s.access(k));
        }
        assert!(s.access(1), "1 is held");
        assert!(!s.access(5), "evicts 2, the least recent");
        assert!(!s.access(2));
        assert!(s.access(1) && s.access(5));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn take_frees_an_entry() {
        let mut s = ShadowLru::new(3, 1, 1);
        for k in [1, 3, 5] {
            assert!(!s.access(k));
        }
        assert!(s.take(3) && !s.take(3));
        assert!(!s.access(7), "fills the freed entry");
        assert!(s.access(1) && s.access(5) && s.access(7));
        assert!(!s.access(9), "evicts 1, the least recent");
        assert!(!s.access(1));
    }

    #[test]
    fn matches_a_reference_lru_under_churn() {
        let cap = 97;
        let mut s = ShadowLru::new(cap, 1, 1);
        let mut reference: std::collections::VecDeque<u64> = Default::default();
        let mut x = 12345u64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 300) * 2 + 1;
            let want = if let Some(i) = reference.iter().position(|&r| r == k) {
                reference.remove(i);
                true
            } else {
                if reference.len() == cap {
                    reference.pop_front();
                }
                false
            };
            reference.push_back(k);
            assert_eq!(s.access(k), want);
        }
    }

    #[test]
    fn samples_one_in_rate_and_keeps_small_tiers_whole() {
        let s = ShadowLru::new(64_000, 32, 64);
        assert_eq!(s.rate(), 32);
        let n = (0..32_000u128)
            .filter(|&k| s.sampled(crate::policy::test_hash(k)).is_some())
            .count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(ShadowLru::new(100, 32, 64).rate(), 1);
    }
}
