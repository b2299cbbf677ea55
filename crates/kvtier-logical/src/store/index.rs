//! The store's hash index: sequence hash -> slot. A fixed-size table of
//! cache-line buckets of 7 entries, probed bucket by bucket (linear probing
//! over buckets) with a per-bucket overflow count instead of tombstones.
//!
//! Each entry is a 32-bit tag (0 = free) and a 32-bit slot id. The tag is the
//! top 32 bits of the mixed low 64 bits of the hash, and the home bucket is
//! the top `bits` bits of the same value. A tag match is confirmed against the
//! full 128-bit hash kept in the slot, so the index never returns a wrong
//! slot; two live hashes sharing a tag both sit in the probe sequence.
//!
//! A bucket's `overflow` counts the entries whose home bucket lies before it
//! and which are stored after it: a probe goes on to the next bucket only
//! while that count is non-zero. Insertion bumps the counts of the buckets it
//! passes, removal decrements them, so nothing ever needs rehashing and every
//! operation touches one cache line in the common case (the table is at most
//! about 3/7 full, so a bucket overflows with odds of about 1 %). All scans of
//! a bucket are branch-free masks: no data-dependent branch mispredicts.
//!
//! The table has enough buckets for `2 * capacity` entries, rounded up to a
//! power of two, so an empty entry always exists and every probe terminates.
//! It never grows, which is what lets [`Index::bucket_ptr`] be used for
//! prefetching.

use crate::hash::SequenceHash;
use crate::policy::SlotId;

/// Tag of an empty entry (real tags are never 0, see [`Index::probe`]).
const EMPTY: u32 = 0;
const WAYS: usize = 7;
/// Mask of the `WAYS` real lanes of a bucket's 8 tags.
const LANES: u32 = (1 << WAYS) - 1;

/// Position of entry `k` of bucket `b` (at most 2^29 buckets: fits a u32).
#[inline(always)]
fn pos(b: usize, k: usize) -> u32 {
    (b * 8 + k) as u32
}

/// Fibonacci hashing constant (odd: the multiplication is a bijection on u64).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// One cache line: 7 (tag, slot) entries and the overflow count. `tags[7]`
/// is padding (always `EMPTY`, masked off by `LANES`) so a bucket's tags are
/// compared as two 16-byte vectors.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; 8],
    slots: [u32; WAYS],
    overflow: u32,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        tags: [EMPTY; 8],
        slots: [u32::MAX; WAYS],
        overflow: 0,
    };

    /// Bit `k` set when entry `k` carries `tag` (`EMPTY`: is free). Written
    /// so that it compiles to vector compares and a movemask, branch-free.
    #[inline(always)]
    fn mask(&self, tag: u32) -> u32 {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{
                __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_ps,
                _mm_set1_epi32,
            };
            let p = self.tags.as_ptr().cast::<__m128i>();
            // SAFETY: `tags` is the first 32 bytes of a 64-byte-aligned
            // bucket, so both 16-byte loads are aligned and in bounds; SSE2 is
            // part of the x86_64 baseline.
            let m = unsafe {
                let t = _mm_set1_epi32(tag as i32);
                let lo = _mm_cmpeq_epi32(_mm_load_si128(p), t);
                let hi = _mm_cmpeq_epi32(_mm_load_si128(p.add(1)), t);
                _mm_movemask_ps(_mm_castsi128_ps(lo)) | (_mm_movemask_ps(_mm_castsi128_ps(hi)) << 4)
            };
            m as u32 & LANES
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut m = 0;
            for (k, &t) in self.tags.iter().enumerate() {
                m |= u32::from(t == tag) << k;
            }
            m & LANES
        }
    }

    /// The slot of this bucket whose entry carries `tag` and whose full hash
    /// (`hash_of`) is `hash`.
    #[inline(always)]
    fn find(
        &self,
        tag: u32,
        hash: SequenceHash,
        hash_of: &impl Fn(SlotId) -> SequenceHash,
    ) -> Option<SlotId> {
        let mut m = self.mask(tag);
        while m != 0 {
            let s = self.slots[m.trailing_zeros() as usize];
            if hash_of(s) == hash {
                return Some(s);
            }
            m &= m - 1;
        }
        None
    }
}

#[derive(Clone)]
pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
    /// `64 - bits`; `bits = log2(buckets.len())`, `0 <= bits <= 32`.
    shift: u32,
    len: usize,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("buckets", &self.buckets.len())
            .field("len", &self.len)
            .finish()
    }
}

/// Where a probe for one hash starts, and the tag it looks for.
#[derive(Clone, Copy)]
pub(crate) struct Probe {
    home: usize,
    tag: u32,
}

impl Probe {
    /// The bucket the probe starts at (for [`Index::remove_from`]).
    #[inline]
    pub(crate) fn home(self) -> usize {
        self.home
    }
}

impl Index {
    /// An empty index for up to `capacity` entries (`capacity < u32::MAX`).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let n = (capacity.max(1) * 2).div_ceil(WAYS).next_power_of_two();
        let bits = n.trailing_zeros();
        debug_assert!(n * WAYS > capacity && bits <= 32);
        Index {
            buckets: vec![Bucket::EMPTY; n].into_boxed_slice(),
            mask: n - 1,
            shift: 64 - bits,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn probe(&self, hash: SequenceHash) -> Probe {
        let m = hash.low64().wrapping_mul(MIX);
        Probe {
            // `checked_shr`: a one-bucket table has `shift == 64`.
            home: m.checked_shr(self.shift).unwrap_or(0) as usize,
            // Tag 0 marks a free entry: map it to 1. Homes use at most the top
            // 29 bits of the tag (at most 2^29 buckets), so this never moves one.
            tag: ((m >> 32) as u32).max(1),
        }
    }

    /// Address of the bucket a probe starts at (for prefetching only).
    #[inline]
    pub(super) fn bucket_ptr(&self, p: Probe) -> *const u8 {
        // `home <= mask < buckets.len()`: in bounds.
        (&self.buckets[p.home] as *const Bucket).cast()
    }

    /// The slot indexed under `hash`: an entry in the probe sequence whose
    /// tag matches and whose slot's full hash (`hash_of`) is `hash`.
    #[inline]
    pub(crate) fn get(
        &self,
        p: Probe,
        hash: SequenceHash,
        hash_of: impl Fn(SlotId) -> SequenceHash,
    ) -> Option<SlotId> {
        let mut b = p.home;
        loop {
            let bucket = &self.buckets[b];
            if let Some(s) = bucket.find(p.tag, hash, &hash_of) {
                return Some(s);
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
    }

    /// Index `slot` under `hash` and return the entry's position (stable
    /// until it is removed: entries never move), unless `hash` is already
    /// indexed: then returns `Err(existing slot)` and changes nothing.
    #[inline]
    pub(crate) fn get_or_insert(
        &mut self,
        p: Probe,
        hash: SequenceHash,
        slot: SlotId,
        hash_of: impl Fn(SlotId) -> SequenceHash,
    ) -> Result<u32, SlotId> {
        debug_assert!(slot != u32::MAX);
        let home = &self.buckets[p.home];
        let free = home.mask(EMPTY);
        if home.overflow == 0 && free != 0 {
            // Common case: everything for this hash is in the home bucket.
            if let Some(s) = home.find(p.tag, hash, &hash_of) {
                return Err(s);
            }
            let k = free.trailing_zeros() as usize;
            let home = &mut self.buckets[p.home];
            home.tags[k] = p.tag;
            home.slots[k] = slot;
            self.len += 1;
            return Ok(pos(p.home, k));
        }
        if let Some(s) = self.get(p, hash, hash_of) {
            return Err(s);
        }
        Ok(self.insert_absent(p, slot))
    }

    /// Remove the entry of `slot`, indexed under a hash with probe `p`.
    /// The entry must be present (if it is not, nothing changes).
    #[inline]
    pub(super) fn remove(&mut self, p: Probe, slot: SlotId) {
        let mut b = p.home;
        'found: loop {
            let bucket = &mut self.buckets[b];
            let mut m = bucket.mask(p.tag);
            while m != 0 {
                let k = m.trailing_zeros() as usize;
                if bucket.slots[k] == slot {
                    bucket.tags[k] = EMPTY;
                    self.len -= 1;
                    break 'found;
                }
                m &= m - 1;
            }
            if bucket.overflow == 0 {
                debug_assert!(false, "index: removing an absent entry");
                return;
            }
            b = (b + 1) & self.mask;
        }
        // Undo the overflow counts the insertion added on its way.
        let mut c = p.home;
        while c != b {
            self.buckets[c].overflow -= 1;
            c = (c + 1) & self.mask;
        }
    }

    /// Index `slot` under a hash with probe `p` that is known not to be
    /// indexed (the caller just missed it with [`get`](Self::get)), and
    /// return the entry's position: [`get_or_insert`](Self::get_or_insert)
    /// without its search for an existing entry.
    #[inline]
    pub(crate) fn insert_absent(&mut self, p: Probe, slot: SlotId) -> u32 {
        debug_assert!(slot != u32::MAX);
        let mut b = p.home;
        loop {
            let bucket = &mut self.buckets[b];
            let free = bucket.mask(EMPTY);
            if free != 0 {
                let k = free.trailing_zeros() as usize;
                bucket.tags[k] = p.tag;
                bucket.slots[k] = slot;
                self.len += 1;
                return pos(b, k);
            }
            bucket.overflow += 1;
            b = (b + 1) & self.mask;
        }
    }

    /// Remove the entry at `pos` (as returned by
    /// [`get_or_insert`](Self::get_or_insert)), indexed under a hash with
    /// probe `p`. No search: the common case is one store.
    #[inline]
    pub(crate) fn remove_at(&mut self, p: Probe, pos: u32) {
        debug_assert!(
            self.buckets[(pos / 8) as usize].tags[(pos % 8) as usize] == p.tag,
            "index: stale position"
        );
        self.remove_from(p.home, pos);
    }

    /// [`remove_at`](Self::remove_at) given only the probe's home bucket
    /// ([`Probe::home`]).
    #[inline]
    pub(crate) fn remove_from(&mut self, home: usize, pos: u32) {
        let (b, k) = ((pos / 8) as usize, (pos % 8) as usize);
        let bucket = &mut self.buckets[b];
        debug_assert!(k < WAYS && bucket.tags[k] != EMPTY, "index: stale position");
        bucket.tags[k] = EMPTY;
        self.len -= 1;
        // Undo the overflow counts the insertion added on its way.
        let mut c = home;
        while c != b {
            self.buckets[c].overflow -= 1;
            c = (c + 1) & self.mask;
        }
    }

    /// Remove every entry.
    pub(super) fn clear(&mut self) {
        self.buckets.fill(Bucket::EMPTY);
        self.len = 0;
    }
}

// What the invariant checks of tests read (`testing` feature).
#[cfg(any(test, feature = "testing"))]
impl Probe {
    /// The tag an entry for this hash carries.
    pub(super) fn tag(self) -> u32 {
        self.tag
    }
}

#[cfg(any(test, feature = "testing"))]
impl Index {
    /// Number of entries.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The slot of the entry at `pos`, if occupied (for invariant checks).
    pub(super) fn slot_at(&self, pos: u32) -> Option<SlotId> {
        let (b, k) = ((pos / 8) as usize, (pos % 8) as usize);
        let bucket = self.buckets.get(b)?;
        (k < WAYS && bucket.tags[k] != EMPTY).then(|| bucket.slots[k])
    }

    /// Every entry as (bucket, tag, slot), for invariant checks.
    pub(super) fn entries(&self) -> impl Iterator<Item = (usize, u32, SlotId)> + '_ {
        self.buckets.iter().enumerate().flat_map(|(i, b)| {
            (0..WAYS)
                .filter(|&k| b.tags[k] != EMPTY)
                .map(move |k| (i, b.tags[k], b.slots[k]))
        })
    }

    /// Full consistency check (O(size)): the count matches and every
    /// bucket's overflow count is exactly the number of entries stored past
    /// it whose probe passes it.
    pub(super) fn check(&self) -> Result<(), String> {
        let n = self.buckets.len();
        let mut want = vec![0u32; n];
        let mut count = 0;
        for (b, tag, _) in self.entries() {
            count += 1;
            let mut c = self.probe_of_tag(tag);
            while c != b {
                want[c] += 1;
                c = (c + 1) & self.mask;
            }
        }
        if count != self.len {
            return Err(format!(
                "index holds {count} entries but counts {}",
                self.len
            ));
        }
        for (i, b) in self.buckets.iter().enumerate() {
            if b.overflow != want[i] {
                return Err(format!(
                    "index bucket {i}: overflow count {} but {} entries pass it",
                    b.overflow, want[i]
                ));
            }
        }
        Ok(())
    }

    /// Home bucket of an entry with this tag.
    fn probe_of_tag(&self, tag: u32) -> usize {
        (u64::from(tag) << 32).checked_shr(self.shift).unwrap_or(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_with_collisions() {
        // Tiny table: heavy clustering and wrap-around.
        let n = 7;
        let mut ix = Index::with_capacity(n);
        let hashes: Vec<SequenceHash> = (0..n as u128).map(|i| SequenceHash(i * 3 + 1)).collect();
        let hash_of = |s: SlotId| hashes[s as usize];
        for (s, &h) in hashes.iter().enumerate() {
            assert!(ix.get_or_insert(ix.probe(h), h, s as u32, hash_of).is_ok());
        }
        for (s, &h) in hashes.iter().enumerate() {
            assert_eq!(ix.get_or_insert(ix.probe(h), h, 99, hash_of), Err(s as u32));
        }
        for victim in [3usize, 0, 6, 1] {
            ix.remove(ix.probe(hashes[victim]), victim as u32);
            assert_eq!(
                ix.get(ix.probe(hashes[victim]), hashes[victim], hash_of),
                None
            );
            ix.check().unwrap();
        }
        for s in [2usize, 4, 5] {
            assert_eq!(
                ix.get(ix.probe(hashes[s]), hashes[s], hash_of),
                Some(s as u32)
            );
        }
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn overflow_chains_survive_removal() {
        // Every hash has the same low 64 bits: one home bucket, long overflow.
        let n = 30;
        let hs: Vec<SequenceHash> = (0..n as u128)
            .map(|i| SequenceHash(5 | (i << 64)))
            .collect();
        let hash_of = |s: SlotId| hs[s as usize];
        let mut ix = Index::with_capacity(n);
        for (s, &h) in hs.iter().enumerate() {
            ix.get_or_insert(ix.probe(h), h, s as u32, hash_of).unwrap();
            ix.check().unwrap();
        }
        let mut live: Vec<usize> = (0..n).collect();
        let mut x = 12345u64;
        for round in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x as usize) % live.len();
            let s = live.swap_remove(k);
            ix.remove(ix.probe(hs[s]), s as u32);
            ix.check().unwrap();
            assert_eq!(ix.get(ix.probe(hs[s]), hs[s], hash_of), None);
            for &t in &live {
                assert_eq!(ix.get(ix.probe(hs[t]), hs[t], hash_of), Some(t as u32));
            }
            if round % 3 != 0 {
                ix.get_or_insert(ix.probe(hs[s]), hs[s], s as u32, hash_of)
                    .unwrap();
                live.push(s);
                ix.check().unwrap();
            }
            if live.is_empty() {
                break;
            }
        }
        assert_eq!(ix.len(), live.len());
    }

    #[test]
    fn same_tag_different_hash() {
        // Same low 64 bits (same tag and home), different high bits.
        let a = SequenceHash(5);
        let b = SequenceHash(5 | (1u128 << 100));
        let hs = [a, b];
        let hash_of = |s: SlotId| hs[s as usize];
        let mut ix = Index::with_capacity(4);
        ix.get_or_insert(ix.probe(a), a, 0, hash_of).unwrap();
        ix.get_or_insert(ix.probe(b), b, 1, hash_of).unwrap();
        assert_eq!(ix.get(ix.probe(b), b, hash_of), Some(1));
        ix.remove(ix.probe(a), 0);
        assert_eq!(ix.get(ix.probe(a), a, hash_of), None);
        assert_eq!(ix.get(ix.probe(b), b, hash_of), Some(1));
    }
}
