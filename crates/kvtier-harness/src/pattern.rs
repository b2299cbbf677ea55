//! The deterministic bytes of a computed block, derived from its hash, so an
//! onboarded block can be checked against what was written when it was
//! computed.

use kvtier_logical::SequenceHash;

/// Word `i` of block `hash`'s pattern is `seed(hash) ^ (i + 1) * K`: every
/// 8-byte word depends on the block and on its position, so a copy of another
/// block, a stale or shifted block, or a torn write shows up as a mismatch;
/// and it is cheap enough (one multiply per word, vectorised) to check every
/// onboarded byte.
const K: u64 = 0x9E37_79B9_7F4A_7C15;

fn seed(hash: SequenceHash) -> u64 {
    let mut x = (hash.0 as u64) ^ ((hash.0 >> 64) as u64).rotate_left(17);
    // splitmix64 finaliser: nearby hashes get unrelated seeds.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[inline]
fn word(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(K)
}

/// Fill `buf` with the pattern of block `hash`.
pub fn fill(hash: SequenceHash, buf: &mut [u8]) {
    let s = seed(hash);
    let mut chunks = buf.chunks_exact_mut(8);
    let mut i = 0;
    for c in &mut chunks {
        c.copy_from_slice(&word(s, i).to_le_bytes());
        i += 1;
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    rest.copy_from_slice(&word(s, i).to_le_bytes()[..n]);
}

/// Whether `buf` holds the pattern of `hash`.
pub fn matches(hash: SequenceHash, buf: &[u8]) -> bool {
    let s = seed(hash);
    let mut chunks = buf.chunks_exact(8);
    // Accumulate differences branch-free so the loop vectorises.
    let mut diff = 0u64;
    let mut i = 0;
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        diff |= v ^ word(s, i);
        i += 1;
    }
    let rest = chunks.remainder();
    diff == 0 && rest == &word(s, i).to_le_bytes()[..rest.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sensitivity() {
        let h = SequenceHash(0xabcdef);
        let mut b = vec![0u8; 1003];
        fill(h, &mut b);
        assert!(matches(h, &b));
        assert!(!matches(SequenceHash(0xabcdee), &b));
        b[1000] ^= 1;
        assert!(!matches(h, &b));
        b[1000] ^= 1;
        b[5] ^= 0x80;
        assert!(!matches(h, &b));
        // A block shifted by one word is caught.
        let mut shifted = vec![0u8; 1003];
        fill(h, &mut shifted);
        shifted.copy_within(8..1000, 0);
        assert!(!matches(h, &shifted));
    }
}
