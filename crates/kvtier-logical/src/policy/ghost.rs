//! A ghost of recent registrations: "was this hash registered here within
//! the last `window` registrations?", answered in one load, with no periodic
//! clearing. `gated-arc` uses it to tell that a block was recomputed soon
//! after it left probation (ARC's ghost hit).
//!
//! A direct-mapped table of `(fingerprint, registration clock)` pairs, one
//! `u64` per entry, a few entries per slot of the tier
//! (`GatedParams::ghost_entries_per_slot`). A
//! lookup checks the entry the hash maps to: same 32-bit fingerprint and a
//! clock at most `window` registrations old. The entry is then overwritten
//! with the new registration. Another key mapping to the same entry in
//! between loses the answer; a wrong "yes" needs a 32-bit fingerprint
//! collision.

use crate::hash::SequenceHash;

/// Recently registered hashes, with their registration time.
#[derive(Clone, Debug)]
pub struct RecentGhost {
    entries: Vec<u64>,
    mask: u64,
    /// Registrations so far (wrapping).
    clock: u32,
}

impl RecentGhost {
    /// A ghost of about `entries_per_slot` entries per slot of a tier of
    /// `capacity` slots (rounded up to a power of two).
    pub fn with_entries(capacity: usize, entries_per_slot: usize) -> Self {
        let n = super::table_len(capacity, entries_per_slot);
        RecentGhost {
            entries: super::touched_table(n),
            mask: (n - 1) as u64,
            clock: 0,
        }
    }

    /// Entry index and fingerprint of `hash`: bits the seen filter does not
    /// use (it indexes by the low bits of the low half).
    #[inline(always)]
    fn key(&self, hash: SequenceHash) -> (usize, u32) {
        let lo = hash.0 as u64;
        let hi = (hash.0 >> 64) as u64;
        (((lo >> 32) & self.mask) as usize, (hi >> 32) as u32)
    }

    /// Record a registration of `hash`; returns whether it was registered
    /// within the last `window` registrations.
    #[inline]
    pub fn register(&mut self, hash: SequenceHash, window: u32) -> bool {
        let (i, fp) = self.key(hash);
        self.clock = self.clock.wrapping_add(1);
        debug_assert!(i < self.entries.len());
        // SAFETY: `i <= mask == entries.len() - 1`.
        let e = unsafe { self.entries.get_unchecked_mut(i) };
        let recent =
            *e != 0 && (*e >> 32) as u32 == fp && self.clock.wrapping_sub(*e as u32) <= window;
        *e = (fp as u64) << 32 | self.clock as u64;
        recent
    }

    /// Hint the CPU to load `hash`'s entry.
    #[inline]
    pub fn prefetch(&self, hash: SequenceHash) {
        let (i, _) = self.key(hash);
        super::prefetch_ptr(&self.entries[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: u64) -> SequenceHash {
        crate::policy::test_hash(k as u128)
    }

    #[test]
    fn recent_within_the_window_only() {
        let mut g = RecentGhost::with_entries(64, 2);
        assert!(!g.register(key(1), 10), "first registration");
        assert!(g.register(key(1), 10), "again right away");
        for k in 0..20 {
            g.register(key(100 + k), 10);
        }
        assert!(!g.register(key(1), 10), "21 registrations later: too old");
        assert!(g.register(key(1), 10));
    }

    #[test]
    fn few_lost_and_no_invented_hits() {
        let cap = 1024;
        let mut g = RecentGhost::with_entries(cap, 2);
        let window = 2 * cap as u32;
        let (mut hits, mut invented) = (0, 0);
        // A stream of keys, each registered again 500 keys later.
        for k in 0..20_000u64 {
            if g.register(key(k), window) {
                invented += 1;
            }
            if k >= 500 && g.register(key(k - 500), window) {
                hits += 1;
            }
        }
        assert_eq!(invented, 0, "never a hit for an unseen key");
        // 1,000 registrations between the two of a key, into 2,048 entries:
        // an entry survives with probability e^(-1000/2048), about 61%.
        assert!(hits > 19_500 * 55 / 100, "{hits} of 19500 seen");
    }
}
