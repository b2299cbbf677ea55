//! A count-min sketch of 4-bit counters with periodic halving: the frequency
//! history behind the TinyLFU-style policies.
//!
//! Unlike kvbm-logical's sketch (which indexes only 1 of the 16 counters of a
//! word), each of the 4 probes picks its nibble from independent hash bits, so
//! every counter of the table is used. The 4 probes of a key fall in one
//! 32-byte group of 4 words (probe `i` in word `i` of the group), so an update
//! or a lookup touches one cache line and hashes once. Updates are conservative
//! (only the probes holding the current minimum are incremented), which keeps
//! over-estimates from collisions low. After `period` increments every counter
//! is halved (one pass over the table, amortised O(1) per increment since the
//! table has fewer words than `period`), so the sketch forgets old popularity.

use crate::hash::SequenceHash;

/// Counters per key (rows of the count-min sketch). Four is the usual
/// TinyLFU choice: with a table of at least 64 counters per cached block the
/// chance that all four probes of an unseen key collide is negligible.
const PROBES: usize = 4;

/// Mask that clears the top bit of every nibble (used by halving).
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

policy_params! {
    /// Size and aging of a [`FrequencySketch`], per slot of the tier's
    /// capacity. The defaults are the tuned values.
    pub struct SketchParams {
        /// Words of 16 counters per slot of capacity. 16 words = 256
        /// counters per cached block, 16 per key the aging period can hold
        /// (`period_per_slot` distinct keys per slot at most): a count-min
        /// sketch answers "seen at least twice" reliably only when counters
        /// outnumber the distinct keys several times over (at 2 counters per
        /// key, a fifth of the keys seen once read as twice). Scan-heavy
        /// workloads, whose one-off blocks fill the sketch, lost 2 points of
        /// hit rate at 8 counters per key. 128 bytes per slot, small next to
        /// a block of KV cache. The table is rounded up to a power of two.
        /// In 1..=1024.
        words_per_slot: u32 [1..=1024] = 16,
        /// Aging period in increments per slot of capacity (16). A block is
        /// only worth protecting if its *second* access is remembered: reuse
        /// distances of several cache turnovers are common (a shared
        /// document re-asked long after its first read), so the sketch keeps
        /// about 16 turnovers of history before halving (W-TinyLFU's paper
        /// uses 10). Shorter periods forget reuses that a policy could still
        /// exploit; longer ones keep dead popularity and need a bigger table
        /// for the same accuracy. At least 1.
        period_per_slot: u32 [1..=u32::MAX] = 16,
    }
}

/// Frequency sketch sized for a tier of `capacity` slots. No allocation after
/// construction.
#[derive(Clone, Debug)]
pub struct FrequencySketch {
    table: Vec<u64>,
    mask: u64,
    period: u64,
    additions: u64,
}

#[inline]
fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: good avalanche for already-random keys too.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl FrequencySketch {
    /// The largest estimate (a counter is 4 bits).
    pub const MAX_ESTIMATE: u8 = 15;

    /// A sketch for a tier of `capacity` slots, with the default size and
    /// aging period.
    pub fn new(capacity: usize) -> Self {
        Self::with_params(capacity, &SketchParams::default())
    }

    /// A sketch for a tier of `capacity` slots (`params` checked).
    pub fn with_params(capacity: usize, params: &SketchParams) -> Self {
        let words = super::table_len(capacity, params.words_per_slot as usize);
        FrequencySketch {
            table: super::touched_table(words),
            mask: (words - 1) as u64,
            period: (capacity.max(1) as u64) * params.period_per_slot as u64,
            additions: 0,
        }
    }

    /// First word of the key's group and the bit shift of each probe.
    #[inline]
    fn probes(&self, hash: SequenceHash) -> (usize, [u32; PROBES]) {
        let x = mix((hash.0 as u64) ^ ((hash.0 >> 64) as u64));
        let base = (x & self.mask) as usize & !(PROBES - 1);
        // Nibbles from the top 16 bits, independent of the group index bits.
        let mut sh = [0u32; PROBES];
        for (i, s) in sh.iter_mut().enumerate() {
            *s = (((x >> (48 + 4 * i)) & 15) as u32) * 4;
        }
        (base, sh)
    }

    /// Hint the CPU to load the cache line of `hash`'s counters: a caller
    /// that knows which keys it will count soon (the rest of a request after
    /// a prefix miss) hides the table's cache misses behind other work.
    #[inline]
    pub fn prefetch(&self, hash: SequenceHash) {
        let (base, _) = self.probes(hash);
        super::prefetch_ptr(&self.table[base]);
    }

    /// Estimated number of accesses of `hash` (0..=[`MAX_ESTIMATE`](Self::MAX_ESTIMATE)) in the
    /// recent past.
    #[inline]
    pub fn estimate(&self, hash: SequenceHash) -> u8 {
        let (base, sh) = self.probes(hash);
        let g = &self.table[base..base + PROBES];
        let mut m = 15u64;
        for i in 0..PROBES {
            m = m.min((g[i] >> sh[i]) & 15);
        }
        m as u8
    }

    /// Count one access of `hash` (conservative update: only the probes at
    /// the minimum grow), halving every counter once per aging period.
    /// Returns the new estimate.
    #[inline]
    pub fn increment(&mut self, hash: SequenceHash) -> u8 {
        let (base, sh) = self.probes(hash);
        let g = &mut self.table[base..base + PROBES];
        let mut m = 15u64;
        for i in 0..PROBES {
            m = m.min((g[i] >> sh[i]) & 15);
        }
        if m < 15 {
            for i in 0..PROBES {
                if (g[i] >> sh[i]) & 15 == m {
                    g[i] += 1 << sh[i];
                }
            }
            m += 1;
        }
        self.additions += 1;
        if self.additions >= self.period {
            self.halve();
            m /= 2;
        }
        m as u8
    }

    /// Halve every counter (aging).
    fn halve(&mut self) {
        for w in self.table.iter_mut() {
            *w = (*w >> 1) & HALF_MASK;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages() {
        let mut s = FrequencySketch::new(64);
        let a = SequenceHash(0xdead_beef_u128 << 40 | 7);
        let b = SequenceHash(12345);
        for _ in 0..5 {
            s.increment(a);
        }
        s.increment(b);
        assert_eq!(s.estimate(a), 5);
        assert_eq!(s.estimate(b), 1);
        assert_eq!(s.estimate(SequenceHash(99)), 0);
        for _ in 0..20 {
            s.increment(a);
        }
        assert_eq!(s.estimate(a), 15, "saturates at 15");
        s.halve();
        assert_eq!(s.estimate(a), 7);
        assert_eq!(s.estimate(b), 0);
    }

    #[test]
    fn uses_every_nibble() {
        let mut s = FrequencySketch::new(16);
        for k in 0..200u128 {
            s.increment(SequenceHash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c)));
        }
        let mut used = [false; 16];
        for w in &s.table {
            for (n, u) in used.iter_mut().enumerate() {
                if (w >> (n * 4)) & 15 != 0 {
                    *u = true;
                }
            }
        }
        assert!(used.iter().all(|&u| u), "every nibble position is used");
    }

    #[test]
    fn few_false_positives_at_design_load() {
        // Load the sketch with as many distinct keys as its aging period allows
        // before halving (minus one so no halving happens) and check that keys
        // seen once are rarely reported as seen twice.
        let cap = 256;
        let mut s = FrequencySketch::new(cap);
        let n = (cap as u64 * SketchParams::default().period_per_slot as u64 - 1) as u128;
        for k in 0..n {
            s.increment(SequenceHash(k * 0x1234_5678_9abc_def1 + 1));
        }
        let fp = (0..n)
            .filter(|&k| s.estimate(SequenceHash(k * 0x1234_5678_9abc_def1 + 1)) >= 2)
            .count();
        assert!((fp as f64) < 0.05 * n as f64, "{fp} of {n} over-counted");
    }
}
