//! The record format: the 64-byte header and entry records, their encoding
//! and checksums (see the module docs of [`crate::journal`] for the table).

use kvtier_logical::{BlockSpec, SequenceHash, SlotId};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::header::G3Header;

/// Size of the header and of every entry record, in bytes.
pub const RECORD_BYTES: usize = 64;

pub(crate) const MAGIC: &[u8; 8] = b"KVG3JNL1";
const KIND_STORED: u8 = 1;
const KIND_REMOVED: u8 = 2;

/// One live block of a persistent G3: its slot in the data file, its
/// identity, and the checksum of its bytes. The one record shape of G3
/// persistence: the journal stores it, recovery returns it, and the offload
/// engine hands it over (as `kvtier_offload::DurableEntry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Block slot in the data file.
    pub slot: SlotId,
    /// Hash, parent hash and position of the block.
    pub spec: BlockSpec,
    /// xxh3-64 of the block's bytes (regions in layer order).
    pub checksum: u64,
}

/// One journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The slot now holds this block (its bytes are already durable).
    Stored(Record),
    /// The slot is empty.
    Removed {
        /// The slot.
        slot: SlotId,
        /// Hash of the block removed (kept for diagnostics; replay empties the
        /// slot whatever it holds).
        hash: SequenceHash,
    },
}

impl Entry {
    /// The slot the entry names.
    pub fn slot(&self) -> SlotId {
        match self {
            Entry::Stored(r) => r.slot,
            Entry::Removed { slot, .. } => *slot,
        }
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}
fn u128_at(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(b[at..at + 16].try_into().unwrap_or_default())
}

/// The header's bytes for `h` at `generation`.
pub(crate) fn encode_header(h: &G3Header, generation: u64) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&h.format_version.to_le_bytes());
    b[16..24].copy_from_slice(&h.layout_fingerprint.to_le_bytes());
    b[24..32].copy_from_slice(&h.salt.to_le_bytes());
    b[32..40].copy_from_slice(&h.num_blocks.to_le_bytes());
    b[40..48].copy_from_slice(&generation.to_le_bytes());
    let sum = xxh3_64(&b[0..56]);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
    b
}

/// The record seed of a header: its checksum.
pub(crate) fn header_seed(h: &G3Header, generation: u64) -> u64 {
    u64_at(&encode_header(h, generation), 56)
}

/// Decode a header: (header, generation, seed).
pub(crate) fn decode_header(b: &[u8]) -> Result<(G3Header, u64, u64), String> {
    if b.len() < RECORD_BYTES {
        return Err(format!(
            "file has {} bytes, the header needs {RECORD_BYTES}",
            b.len()
        ));
    }
    if &b[0..8] != MAGIC {
        return Err(format!(
            "bad magic {:02x?}, expected {:02x?} (\"KVG3JNL1\")",
            &b[0..8],
            MAGIC
        ));
    }
    let sum = u64_at(b, 56);
    if xxh3_64(&b[0..56]) != sum {
        return Err("header checksum mismatch".into());
    }
    if u32_at(b, 12) != 0 || u64_at(b, 48) != 0 {
        return Err("nonzero reserved header bytes".into());
    }
    let h = G3Header {
        format_version: u32_at(b, 8),
        layout_fingerprint: u64_at(b, 16),
        salt: u64_at(b, 24),
        num_blocks: u64_at(b, 32),
    };
    Ok((h, u64_at(b, 40), sum))
}

/// Append the 64 bytes of `e`, sealed with `seed`, to `out`.
pub(crate) fn encode_entry(e: &Entry, seed: u64, out: &mut Vec<u8>) {
    let mut b = [0u8; RECORD_BYTES];
    match e {
        Entry::Stored(r) => {
            b[0] = KIND_STORED;
            b[4..8].copy_from_slice(&r.slot.to_le_bytes());
            b[8..24].copy_from_slice(&r.spec.hash.0.to_le_bytes());
            b[24..40].copy_from_slice(&r.spec.parent.0.to_le_bytes());
            b[40..44].copy_from_slice(&r.spec.position.to_le_bytes());
            b[48..56].copy_from_slice(&r.checksum.to_le_bytes());
        }
        Entry::Removed { slot, hash } => {
            b[0] = KIND_REMOVED;
            b[4..8].copy_from_slice(&slot.to_le_bytes());
            b[8..24].copy_from_slice(&hash.0.to_le_bytes());
        }
    }
    let sum = xxh3_64_with_seed(&b[0..56], seed);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&b);
}

/// Re-seal encoded records with a new seed (after a compaction).
pub(crate) fn reseal(records: &mut [u8], seed: u64) {
    for rec in records.chunks_exact_mut(RECORD_BYTES) {
        let sum = xxh3_64_with_seed(&rec[0..56], seed);
        rec[56..64].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Result of checking one record.
pub(crate) enum Decoded {
    Ok(Entry),
    /// Checksum fails: torn or corrupt depending on what follows.
    BadSum,
    /// Checksum passes but the content is invalid: always corrupt.
    Invalid,
}

pub(crate) fn sum_ok(b: &[u8], seed: u64) -> bool {
    xxh3_64_with_seed(&b[0..56], seed) == u64_at(b, 56)
}

pub(crate) fn decode_entry(b: &[u8], seed: u64, num_blocks: u64) -> Decoded {
    if !sum_ok(b, seed) {
        return Decoded::BadSum;
    }
    if b[1..4] != [0, 0, 0] || b[44..48] != [0, 0, 0, 0] {
        return Decoded::Invalid;
    }
    let slot = u32_at(b, 4);
    if u64::from(slot) >= num_blocks {
        return Decoded::Invalid;
    }
    let hash = SequenceHash(u128_at(b, 8));
    match b[0] {
        KIND_STORED => Decoded::Ok(Entry::Stored(Record {
            slot,
            spec: BlockSpec {
                hash,
                parent: SequenceHash(u128_at(b, 24)),
                position: u32_at(b, 40),
            },
            checksum: u64_at(b, 48),
        })),
        KIND_REMOVED if b[24..56].iter().all(|&x| x == 0) => {
            Decoded::Ok(Entry::Removed { slot, hash })
        }
        _ => Decoded::Invalid,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record whose fields all derive from `slot` and `h`.
    pub(crate) fn rec(slot: u32, h: u128) -> Record {
        Record {
            slot,
            spec: BlockSpec {
                hash: SequenceHash(h),
                parent: SequenceHash(h ^ 7),
                position: slot * 2,
            },
            checksum: h as u64 ^ 0xabc,
        }
    }

    #[test]
    fn header_roundtrip_and_damage() {
        let h = G3Header::new(0x1234, 0x55, 1000);
        let b = encode_header(&h, 3);
        let (d, g, s) = decode_header(&b).unwrap();
        assert_eq!((d, g, s), (h, 3, u64_at(&b, 56)));
        for i in 0..RECORD_BYTES {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(decode_header(&c).is_err(), "flip at {i} accepted");
        }
        assert!(decode_header(&b[..63]).is_err());
    }

    #[test]
    fn entry_encoding() {
        let mut v = Vec::new();
        let e = Entry::Stored(rec(9, u128::MAX - 3));
        encode_entry(&e, 77, &mut v);
        let removed = Entry::Removed {
            slot: 9,
            hash: SequenceHash(5),
        };
        encode_entry(&removed, 77, &mut v);
        assert_eq!(v.len(), 128);
        assert!(matches!(decode_entry(&v[..64], 77, 10), Decoded::Ok(x) if x == e));
        assert!(matches!(decode_entry(&v[64..], 77, 10), Decoded::Ok(x) if x == removed));
        assert!(matches!(decode_entry(&v[..64], 78, 10), Decoded::BadSum));
        assert!(matches!(decode_entry(&v[..64], 77, 9), Decoded::Invalid));
        assert!(matches!(decode_entry(&[0u8; 64], 77, 10), Decoded::BadSum));
    }
}
