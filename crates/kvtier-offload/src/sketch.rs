//! How often a block was asked for, for write-through-selective: a small
//! count-min sketch (4 rows of saturating 8-bit counters) over the low 64
//! bits of the sequence hash. Over-estimates, never under-estimates.

use kvtier_logical::SequenceHash;

const ROWS: usize = 4;

/// Count-min sketch of block sightings.
#[derive(Debug)]
pub struct SeenSketch {
    counters: Vec<u8>,
    mask: usize,
}

impl SeenSketch {
    /// A sketch with `width` counters per row (rounded up to a power of two).
    /// Size it at a few times the number of distinct hot blocks.
    pub fn new(width: usize) -> Self {
        let width = width.max(64).next_power_of_two();
        SeenSketch {
            counters: vec![0; width * ROWS],
            mask: width - 1,
        }
    }

    fn index(&self, h: SequenceHash, row: usize) -> usize {
        // Rows take disjoint 16-bit windows of the two 64-bit halves.
        let bits = (h.0 >> (row * 32)) as u64;
        let mixed = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        row * (self.mask + 1) + (mixed as usize & self.mask)
    }

    /// Count one sighting and return the estimate after it.
    pub fn see(&mut self, h: SequenceHash) -> u8 {
        let mut est = u8::MAX;
        for row in 0..ROWS {
            let i = self.index(h, row);
            self.counters[i] = self.counters[i].saturating_add(1);
            est = est.min(self.counters[i]);
        }
        est
    }

    /// Current estimate.
    pub fn estimate(&self, h: SequenceHash) -> u8 {
        (0..ROWS)
            .map(|row| self.counters[self.index(h, row)])
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_never_underestimates() {
        let mut s = SeenSketch::new(1024);
        let a = SequenceHash(0x1234_5678_9abc_def0_1111_2222_3333_4444);
        assert_eq!(s.estimate(a), 0);
        s.see(a);
        assert_eq!(s.see(a), 2);
        for i in 0..500u128 {
            s.see(SequenceHash(
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            ));
        }
        assert!(s.estimate(a) >= 2);
    }
}
