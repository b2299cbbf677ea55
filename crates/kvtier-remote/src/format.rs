//! The object format: where a block lives (`<prefix>/<namespace>/<hash>`)
//! and the header in front of its bytes.
//!
//! Header, 64 bytes, little-endian:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `KVTIERG4` |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 4 | reserved (0) |
//! | 16 | 8 | layout fingerprint ([`kvtier_memory::BlockShape::fingerprint`]) |
//! | 24 | 16 | block sequence hash |
//! | 40 | 8 | checksum of the bytes (`kvtier_memory::block_checksum`: xxh3-64) |
//! | 48 | 8 | length of the bytes |
//! | 56 | 8 | xxh3-64 of bytes 0..56 (the header's own checksum) |
//!
//! The block's canonical bytes (layers in order) follow.

use kvtier_logical::SequenceHash;
use object_store::path::Path;

/// Magic at the start of every object.
pub const MAGIC: [u8; 8] = *b"KVTIERG4";
/// Version of the object format.
pub const FORMAT_VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;

/// Why an object's bytes cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than its header or its declared length.
    #[error("truncated: {got} bytes, expected {expected}")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the header (or the header alone) needs.
        expected: usize,
    },
    /// Not a kvtier G4 object, or its header is damaged.
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    /// Another format version.
    #[error("format version {0}, expected {FORMAT_VERSION}")]
    Version(u32),
    /// Written for another layout.
    #[error("layout fingerprint {got:016x}, expected {expected:016x}")]
    Foreign {
        /// In the object.
        got: u64,
        /// Ours.
        expected: u64,
    },
    /// Holds another block.
    #[error("block {got}, expected {expected}")]
    WrongBlock {
        /// In the object.
        got: SequenceHash,
        /// Asked for.
        expected: SequenceHash,
    },
    /// The bytes do not match the checksum.
    #[error("checksum {got:016x}, expected {expected:016x}")]
    Checksum {
        /// Of the bytes.
        got: u64,
        /// In the header.
        expected: u64,
    },
}

/// The namespace of a salt and layout: `<salt hex>-<fingerprint hex>`.
pub fn namespace(salt: u64, fingerprint: u64) -> String {
    format!("{salt:016x}-{fingerprint:016x}")
}

/// The object key of a block under `dir` (`<prefix>/<namespace>`).
pub fn object_key(dir: &Path, hash: SequenceHash) -> Path {
    dir.clone().join(format!("{:032x}", hash.0))
}

/// The block hash an object key names (its last part: 32 hex digits).
pub fn hash_of_key(key: &Path) -> Option<SequenceHash> {
    let name = key.filename()?;
    if name.len() != 32 {
        return None;
    }
    u128::from_str_radix(name, 16).ok().map(SequenceHash)
}

/// An object: header then `bytes`.
pub fn encode(fingerprint: u64, hash: SequenceHash, checksum: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + bytes.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&hash.0.to_le_bytes());
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let own = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&own.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Check an object read for block `hash` and return its checksum and bytes
/// (the bytes are verified against the checksum).
pub fn decode(
    object: &[u8],
    fingerprint: u64,
    hash: SequenceHash,
) -> Result<(u64, &[u8]), FormatError> {
    if object.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            got: object.len(),
            expected: HEADER_LEN,
        });
    }
    if object[..8] != MAGIC {
        return Err(FormatError::BadHeader("no magic"));
    }
    if xxhash_rust::xxh3::xxh3_64(&object[..56]) != le_u64(object, 56) {
        return Err(FormatError::BadHeader("header checksum"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&object[8..12]);
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    let fp = le_u64(object, 16);
    if fp != fingerprint {
        return Err(FormatError::Foreign {
            got: fp,
            expected: fingerprint,
        });
    }
    let mut h = [0u8; 16];
    h.copy_from_slice(&object[24..40]);
    let got = SequenceHash(u128::from_le_bytes(h));
    if got != hash {
        return Err(FormatError::WrongBlock {
            got,
            expected: hash,
        });
    }
    let checksum = le_u64(object, 40);
    let len = usize::try_from(le_u64(object, 48)).unwrap_or(usize::MAX);
    let body = &object[HEADER_LEN..];
    if body.len() != len {
        return Err(FormatError::Truncated {
            got: object.len(),
            expected: HEADER_LEN.saturating_add(len),
        });
    }
    let sum = xxhash_rust::xxh3::xxh3_64(body);
    if sum != checksum {
        return Err(FormatError::Checksum {
            got: sum,
            expected: checksum,
        });
    }
    Ok((checksum, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj() -> (Vec<u8>, Vec<u8>) {
        let bytes: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
        (encode(7, SequenceHash(42), sum, &bytes), bytes)
    }

    #[test]
    fn round_trip() {
        let (o, bytes) = obj();
        let (sum, body) = decode(&o, 7, SequenceHash(42)).unwrap();
        assert_eq!(body, &bytes[..]);
        assert_eq!(sum, xxhash_rust::xxh3::xxh3_64(&bytes));
    }

    #[test]
    fn every_kind_of_damage_is_refused() {
        let (o, _) = obj();
        assert!(matches!(
            decode(&o[..o.len() - 1], 7, SequenceHash(42)),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&o[..10], 7, SequenceHash(42)),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&o, 8, SequenceHash(42)),
            Err(FormatError::Foreign { .. })
        ));
        assert!(matches!(
            decode(&o, 7, SequenceHash(43)),
            Err(FormatError::WrongBlock { .. })
        ));
        let mut bad = o.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode(&bad, 7, SequenceHash(42)),
            Err(FormatError::Checksum { .. })
        ));
        let mut bad = o.clone();
        bad[20] ^= 1;
        assert!(matches!(
            decode(&bad, 7, SequenceHash(42)),
            Err(FormatError::BadHeader(_))
        ));
        assert!(decode(&vec![0u8; 600], 7, SequenceHash(42)).is_err());
    }

    #[test]
    fn keys_name_their_hash() {
        let dir = Path::from("p/ns");
        let k = object_key(&dir, SequenceHash(0xabc));
        assert_eq!(k.as_ref(), "p/ns/00000000000000000000000000000abc");
        assert_eq!(hash_of_key(&k), Some(SequenceHash(0xabc)));
        assert_eq!(hash_of_key(&Path::from("p/ns/zz")), None);
    }
}
