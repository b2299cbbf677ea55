//! Layout fingerprints: the identity of what a block's bytes mean (the
//! shape fields, and for a whole region its arrangement). Tiers that persist
//! blocks or share them between nodes store a fingerprint next to them and
//! refuse bytes written under another one.
//!
//! Both values are persisted (in G3 journal headers, in shared-tier object
//! headers and key names): for a given layout they never change. The
//! fingerprint is xxh3-64 of the fields as little-endian `u64`s, in the order
//! `num_layers, block_size, kv_heads, head_dim, dtype_bytes`, then, for
//! [`layout_fingerprint`], the arrangement (1 fully contiguous, 2 layer
//! separate).

use crate::layout::{BlockShape, LayoutKind};

impl BlockShape {
    /// The fingerprint of the shape alone (see the module docs): the bytes
    /// of two models whose fingerprints differ never mix.
    pub fn fingerprint(&self) -> u64 {
        xxh3_of_words(&self.words())
    }

    /// The shape fields in fingerprint order.
    fn words(&self) -> [u64; 5] {
        [
            self.num_layers,
            self.block_size,
            self.kv_heads,
            self.head_dim,
            self.dtype_bytes,
        ]
        .map(|v| v as u64)
    }
}

impl LayoutKind {
    /// The arrangement's code in [`layout_fingerprint`].
    const fn fingerprint_code(self) -> u64 {
        match self {
            LayoutKind::FullyContiguous => 1,
            LayoutKind::LayerSeparate => 2,
        }
    }
}

/// The fingerprint of `shape` arranged as `kind` (see the module docs): two
/// configurations with different fingerprints never read each other's
/// blocks as KV.
pub fn layout_fingerprint(shape: &BlockShape, kind: LayoutKind) -> u64 {
    let [a, b, c, d, e] = shape.words();
    xxh3_of_words(&[a, b, c, d, e, kind.fingerprint_code()])
}

/// xxh3-64 of `words` as little-endian bytes.
fn xxh3_of_words(words: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(8 * words.len());
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values every existing G3 directory and shared-tier bucket holds.
    #[test]
    fn fingerprints_are_pinned() {
        let shapes = [
            (BlockShape::tiny(), 0x0e79e04d9366c1ee),
            (BlockShape::llama3_8b(), 0x2edc92ef6d7ec021),
        ];
        for (shape, want) in shapes {
            assert_eq!(shape.fingerprint(), want, "{shape:?}");
        }
        let layouts = [
            (
                BlockShape::tiny(),
                LayoutKind::FullyContiguous,
                0x380b51167f1c4003,
            ),
            (
                BlockShape::tiny(),
                LayoutKind::LayerSeparate,
                0xd83342c026badb20,
            ),
            (
                BlockShape::llama3_8b(),
                LayoutKind::FullyContiguous,
                0xa035a22f1d7c66f7,
            ),
            (
                BlockShape::llama3_70b(),
                LayoutKind::LayerSeparate,
                0xe5b9f75cc362c58c,
            ),
        ];
        for (shape, kind, want) in layouts {
            assert_eq!(layout_fingerprint(&shape, kind), want, "{shape:?} {kind:?}");
        }
    }

    #[test]
    fn fingerprints_tell_layouts_apart() {
        let tiny = BlockShape::tiny();
        assert_ne!(tiny.fingerprint(), BlockShape::llama3_8b().fingerprint());
        assert_ne!(tiny.fingerprint(), tiny.with_dtype_bytes(4).fingerprint());
        assert_ne!(
            layout_fingerprint(&tiny, LayoutKind::FullyContiguous),
            layout_fingerprint(&tiny, LayoutKind::LayerSeparate)
        );
    }
}
