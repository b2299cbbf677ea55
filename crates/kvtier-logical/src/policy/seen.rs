//! A "seen recently" filter: the ghost memory of the default policy.
//!
//! It answers one question at registration: was this block's hash computed
//! or evicted here within the last one or two *generations* (of
//! [`generation_per_slot`](SeenParams::generation_per_slot) × capacity
//! insertions)? A block recomputed after
//! it was evicted is then recognised and admitted as proven, which is
//! TinyLFU's admission idea reduced to the one bit the policy reads.
//!
//! Layout: one `u64` word per bucket holds two generations side by side:
//! the current one in the low 32 bits, the previous one in the high 32. A
//! key sets [`BITS`] bits in a 32-bit half chosen by its hash: a blocked
//! Bloom filter, so an insert or a lookup is one load and one store in one
//! cache line, with no loop over probes. Inserts go to the low half; a
//! lookup checks both. After a generation's worth of inserts every word is
//! shifted up by 32 bits, so the current generation becomes the previous
//! one and the oldest is forgotten (one pass over the table, amortised
//! O(1): the table has fewer words than a generation has inserts).
//!
//! Compared with the count-min sketch of `sketch.rs` (256 four-bit counters,
//! 128 bytes per slot, touched at every hit and registration), this is 32
//! bytes per slot and is touched only when a block is registered or when a
//! block that was hit is evicted.

use crate::hash::SequenceHash;

/// Bits set per key in its 32-bit half-word (`SeenFilter::key` sets them).
/// With about one key per half-word at a full generation (see
/// [`words_per_slot`](SeenParams::words_per_slot)), three bits give well under 1% false positives over
/// both generations (unit test: < 4% at twice that load).
pub const BITS: u32 = 3;
const _: () = assert!(BITS == 3, "`SeenFilter::key` sets exactly three bits");

policy_params! {
    /// Size and memory of the seen filter, per slot of the tier's capacity.
    /// The defaults are the tuned values.
    pub struct SeenParams {
        /// Words (buckets) per slot of capacity: 4 words = 32 bytes per
        /// slot, so a generation of `generation_per_slot` × capacity keys
        /// puts about one key in each 32-bit half. Two words per slot (16
        /// bytes) lost 0.1-0.4 points of hit rate on the workloads of
        /// `docs/policy-design-log.md` to false positives. The table is rounded up
        /// to a power of two. In 1..=1024.
        words_per_slot: u32 [1..=1024] = 4,
        /// Insertions per generation, per slot of capacity (4). Membership
        /// lasts one to two generations: 4 to 8 cache turnovers of
        /// registrations, about as long as the count-min sketch it replaces
        /// remembered a block seen once (halved every 16 capacities of hits
        /// and registrations: 0 to 16, about 6 turnovers of registrations at
        /// a 30% hit rate). A block is only worth protecting if its second
        /// access is remembered, but a longer memory admits lukewarm blocks
        /// that then push hot ones out: 8 to 16 turnovers gained 0.4 points
        /// on the Mooncake trace at 2,000 blocks and lost 1 to 2 points on
        /// `zipf-prefixes` (`docs/policy-design-log.md`). At least 1.
        generation_per_slot: u32 [1..=u32::MAX] = 4,
    }
}

/// `1 << (i & 31) | 1 << (i >> 5)` for every 10-bit `i`: two of a key's
/// three bits in one load ([`SeenFilter::key`]).
static TWO_BITS: [u32; 1024] = {
    let mut t = [0u32; 1024];
    let mut i = 0;
    while i < 1024 {
        t[i] = (1 << (i & 31)) | (1 << (i >> 5));
        i += 1;
    }
    t
};

/// Table size above which [`SeenFilter::prefetch`] issues hints: 256 KiB,
/// a quarter of a typical server core's L2 (the store's slots and the
/// policy's nodes share it).
const PREFETCH_BYTES: usize = 256 << 10;

/// Two-generation blocked Bloom filter of recently seen hashes. No
/// allocation after construction.
#[derive(Clone, Debug)]
pub struct SeenFilter {
    words: Vec<u64>,
    mask: u64,
    /// Inserts left before the next generation starts (at least 1).
    left: u64,
    /// Inserts per generation.
    generation: u64,
}

impl SeenFilter {
    /// A filter for a tier of `capacity` slots, with the default size and
    /// generation.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::with_params(capacity, &SeenParams::default())
    }

    /// A filter for a tier of `capacity` slots (`params` checked).
    pub fn with_params(capacity: usize, params: &SeenParams) -> Self {
        let words = super::table_len(capacity, params.words_per_slot as usize);
        let generation = capacity.max(1) as u64 * params.generation_per_slot as u64;
        SeenFilter {
            words: super::touched_table(words),
            mask: (words - 1) as u64,
            left: generation,
            generation,
        }
    }

    /// Bucket and 32-bit bit mask of `hash`. Sequence hashes are xxh3
    /// outputs, so their bits are used directly: the low half picks the
    /// bucket, the high half the bits.
    #[inline(always)]
    fn key(&self, hash: SequenceHash) -> (usize, u64) {
        let lo = hash.0 as u64;
        let hi = (hash.0 >> 64) as u64;
        // Bits `h & 31`, `(h >> 5) & 31` and `(h >> 10) & 31`: the first two
        // from a table of their 1,024 combinations (4 KiB, hot in L1), the
        // third by a shift (32-bit shifts take their count modulo 32).
        let h = hi as u32;
        let m = TWO_BITS[(h & 1023) as usize] | 1u32.wrapping_shl(h >> 10);
        ((lo & self.mask) as usize, m as u64)
    }

    /// Whether `hash` was inserted in this or the previous generation
    /// (false positives possible, no false negatives within that window).
    #[cfg(test)]
    pub fn contains(&self, hash: SequenceHash) -> bool {
        let (i, m) = self.key(hash);
        let w = self.words[i];
        (w & m) == m || ((w >> 32) & m) == m
    }

    /// Record `hash` in the current generation and return whether it was
    /// already there (this or the previous generation).
    #[inline]
    pub fn check_and_insert(&mut self, hash: SequenceHash) -> bool {
        let (i, m) = self.key(hash);
        debug_assert!(i < self.words.len());
        // SAFETY: `i <= mask == words.len() - 1`.
        let w = unsafe { self.words.get_unchecked_mut(i) };
        // Both halves tested without a branch: a key is held in a half
        // when none of its bits is clear there.
        let clear = !*w;
        let seen = ((clear & m) == 0) | (((clear >> 32) & m) == 0);
        *w |= m;
        self.left -= 1;
        if self.left == 0 {
            self.rotate();
        }
        seen
    }

    /// Start a new generation: the current one becomes the previous one,
    /// the previous one is forgotten.
    #[cold]
    fn rotate(&mut self) {
        for w in &mut self.words {
            *w <<= 32;
        }
        self.left = self.generation;
    }

    /// Hint the CPU to load `hash`'s bucket (the caller will insert it
    /// soon), if the table is larger than [`PREFETCH_BYTES`]: a smaller one
    /// stays in the core's own caches, where the hints only cost
    /// instructions (no gain measured at 2,000-6,000 blocks).
    #[inline]
    pub fn prefetch(&self, hash: SequenceHash) {
        if self.words.len() * 8 > PREFETCH_BYTES {
            let (i, _) = self.key(hash);
            super::prefetch_ptr(&self.words[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: u64) -> SequenceHash {
        crate::policy::test_hash(k as u128)
    }

    #[test]
    fn remembers_for_one_to_two_generations() {
        let cap = 64;
        let mut f = SeenFilter::new(cap);
        assert!(!f.check_and_insert(key(1)));
        assert!(f.check_and_insert(key(1)));
        let gen = cap as u64 * SeenParams::default().generation_per_slot as u64;
        // Fill the rest of this generation and all of the next with others.
        for k in 0..gen {
            f.check_and_insert(key(1000 + k));
        }
        assert!(f.contains(key(1)), "still in the previous generation");
        for k in 0..gen {
            f.check_and_insert(key(100_000 + k));
        }
        assert!(!f.contains(key(1)), "forgotten after two generations");
    }

    #[test]
    fn few_false_positives_at_design_load() {
        let cap = 256;
        let mut f = SeenFilter::new(cap);
        let gen = cap as u64 * SeenParams::default().generation_per_slot as u64;
        // Two full generations' worth of distinct keys (the most the filter
        // ever holds), minus one so no rotation forgets the first.
        for k in 0..2 * gen - 1 {
            f.check_and_insert(key(k));
        }
        let fp = (0..20_000u64)
            .filter(|&k| f.contains(key(10_000_000 + k)))
            .count();
        assert!(fp < 20_000 * 4 / 100, "{fp} false positives of 20000");
    }
}
