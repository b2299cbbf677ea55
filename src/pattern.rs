//! The deterministic bytes of a computed block, derived from its hash, so an
//! onboarded block can be checked against what was written when it was
//! computed.

use kvtier_logical::SequenceHash;

/// Fill `buf` with the pattern of block `hash` (a splitmix64 stream seeded by
/// the hash; any two blocks differ in their first 8 bytes with overwhelming
/// probability).
pub fn fill(hash: SequenceHash, buf: &mut [u8]) {
    let mut x = (hash.0 as u64) ^ ((hash.0 >> 64) as u64).rotate_left(17);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&next(&mut x).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let tail = next(&mut x).to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&tail[..n]);
}

/// Whether `buf` holds the pattern of `hash`.
pub fn matches(hash: SequenceHash, buf: &[u8]) -> bool {
    let mut x = (hash.0 as u64) ^ ((hash.0 >> 64) as u64).rotate_left(17);
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        if c != next(&mut x).to_le_bytes() {
            return false;
        }
    }
    let rest = chunks.remainder();
    rest == &next(&mut x).to_le_bytes()[..rest.len()]
}

#[inline]
fn next(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    }
}
