//! Block layouts: the shape of one KV block and how blocks map to byte ranges.
//!
//! A block holds `layers x 2 (K,V) x block_size tokens x kv_heads x head_dim x
//! dtype_bytes` bytes. Two arrangements of a memory region of `num_blocks`
//! blocks are supported:
//!
//! * [`LayoutKind::FullyContiguous`]: block `b` is one region
//!   `[b * block_bytes, (b + 1) * block_bytes)`; inside it, layer `l` (K then V)
//!   is at `l * layer_block_bytes`.
//! * [`LayoutKind::LayerSeparate`]: one region per layer (as inference engines
//!   allocate a KV tensor per layer), blocks strided inside it. Layer `l` of
//!   block `b` is at `l * num_blocks * layer_block_bytes + b * layer_block_bytes`.
//!
//! Every size is computed once with overflow checks when the [`Layout`] is built;
//! afterwards block id -> byte range is plain arithmetic that cannot overflow.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::LayoutError;

/// Shape of one KV block of a model (what a config names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockShape {
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Number of KV heads (after GQA).
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Bytes per element: 1 (fp8), 2 (fp16/bf16), 4 (fp32) or 8 (fp64).
    pub dtype_bytes: usize,
}

/// Default tokens per block.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

impl BlockShape {
    /// A tiny model for tests: 2 layers, 2 KV heads, head_dim 8, fp16, 4 tokens
    /// per block (512 bytes per block).
    pub const fn tiny() -> Self {
        Self {
            num_layers: 2,
            block_size: 4,
            kv_heads: 2,
            head_dim: 8,
            dtype_bytes: 2,
        }
    }

    /// Llama-3-8B: 32 layers, 8 KV heads, head_dim 128, fp16, 16 tokens per
    /// block (2 MiB per block).
    pub const fn llama3_8b() -> Self {
        Self {
            num_layers: 32,
            block_size: DEFAULT_BLOCK_SIZE,
            kv_heads: 8,
            head_dim: 128,
            dtype_bytes: 2,
        }
    }

    /// Llama-3-70B: 80 layers, 8 KV heads, head_dim 128, fp16, 16 tokens per
    /// block (5 MiB per block).
    pub const fn llama3_70b() -> Self {
        Self {
            num_layers: 80,
            block_size: DEFAULT_BLOCK_SIZE,
            kv_heads: 8,
            head_dim: 128,
            dtype_bytes: 2,
        }
    }

    /// Looks a preset up by name: `tiny`, `llama3-8b`, `llama3-70b`.
    pub fn preset(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "tiny" => Some(Self::tiny()),
            "llama3-8b" | "llama-3-8b" => Some(Self::llama3_8b()),
            "llama3-70b" | "llama-3-70b" => Some(Self::llama3_70b()),
            _ => None,
        }
    }

    /// Same shape with another number of tokens per block.
    pub const fn with_block_size(mut self, block_size: usize) -> Self {
        self.block_size = block_size;
        self
    }

    /// Same shape with another element size.
    pub const fn with_dtype_bytes(mut self, dtype_bytes: usize) -> Self {
        self.dtype_bytes = dtype_bytes;
        self
    }

    /// Checks the fields and returns the bytes of one layer of one block
    /// (K and V together).
    pub fn layer_block_bytes(&self) -> Result<usize, LayoutError> {
        if !matches!(self.dtype_bytes, 1 | 2 | 4 | 8) {
            return Err(LayoutError::InvalidDtype(self.dtype_bytes));
        }
        for (name, v) in [
            ("num_layers", self.num_layers),
            ("block_size", self.block_size),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(LayoutError::Zero(name));
            }
        }
        2usize
            .checked_mul(self.block_size)
            .and_then(|v| v.checked_mul(self.kv_heads))
            .and_then(|v| v.checked_mul(self.head_dim))
            .and_then(|v| v.checked_mul(self.dtype_bytes))
            .ok_or(LayoutError::Overflow("layer block bytes"))
    }

    /// Checks the fields and returns the bytes of one block (all layers).
    pub fn block_bytes(&self) -> Result<usize, LayoutError> {
        self.layer_block_bytes()?
            .checked_mul(self.num_layers)
            .ok_or(LayoutError::Overflow("block bytes"))
    }
}

/// How the blocks of one memory region are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// One contiguous region per block.
    #[default]
    FullyContiguous,
    /// One region per layer, blocks strided inside it.
    LayerSeparate,
}

/// The serialized form of a [`Layout`] (validated on deserialization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSpec {
    /// Block shape.
    pub shape: BlockShape,
    /// Arrangement.
    #[serde(default)]
    pub kind: LayoutKind,
    /// Number of blocks in the region.
    pub num_blocks: usize,
}

/// A validated layout: block shape, arrangement and number of blocks, with all
/// sizes precomputed (overflow-checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayoutSpec", into = "LayoutSpec")]
pub struct Layout {
    shape: BlockShape,
    kind: LayoutKind,
    num_blocks: usize,
    layer_block_bytes: usize,
    block_bytes: usize,
    layer_stride: usize,
    total_bytes: usize,
}

/// Largest region we allow (so that byte offsets also fit an `i64`/`off_t`).
const MAX_TOTAL: usize = i64::MAX as usize;

impl Layout {
    /// Builds a layout; fails on a zero dimension, a bad dtype or overflow.
    pub fn new(
        shape: BlockShape,
        kind: LayoutKind,
        num_blocks: usize,
    ) -> Result<Self, LayoutError> {
        if num_blocks == 0 {
            return Err(LayoutError::Zero("num_blocks"));
        }
        let layer_block_bytes = shape.layer_block_bytes()?;
        let block_bytes = shape.block_bytes()?;
        let layer_stride = layer_block_bytes
            .checked_mul(num_blocks)
            .ok_or(LayoutError::Overflow("layer stride"))?;
        let total_bytes = block_bytes
            .checked_mul(num_blocks)
            .filter(|t| *t <= MAX_TOTAL)
            .ok_or(LayoutError::Overflow("total bytes"))?;
        Ok(Self {
            shape,
            kind,
            num_blocks,
            layer_block_bytes,
            block_bytes,
            layer_stride,
            total_bytes,
        })
    }

    /// Fully contiguous layout.
    pub fn contiguous(shape: BlockShape, num_blocks: usize) -> Result<Self, LayoutError> {
        Self::new(shape, LayoutKind::FullyContiguous, num_blocks)
    }

    /// Layer-separate layout.
    pub fn layer_separate(shape: BlockShape, num_blocks: usize) -> Result<Self, LayoutError> {
        Self::new(shape, LayoutKind::LayerSeparate, num_blocks)
    }

    /// Block shape.
    pub fn shape(&self) -> &BlockShape {
        &self.shape
    }

    /// Arrangement.
    pub fn kind(&self) -> LayoutKind {
        self.kind
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.shape.num_layers
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Bytes of one layer of one block (K and V).
    pub fn layer_block_bytes(&self) -> usize {
        self.layer_block_bytes
    }

    /// Bytes of the whole region.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Number of regions a block is split into: 1 (contiguous) or `num_layers`.
    pub fn regions_per_block(&self) -> usize {
        match self.kind {
            LayoutKind::FullyContiguous => 1,
            LayoutKind::LayerSeparate => self.shape.num_layers,
        }
    }

    fn check_block(&self, block: usize) -> Result<(), LayoutError> {
        if block >= self.num_blocks {
            Err(LayoutError::BlockOutOfRange {
                block,
                num_blocks: self.num_blocks,
            })
        } else {
            Ok(())
        }
    }

    /// Byte offset of layer `layer` of block `block` (no bounds check).
    #[inline]
    pub(crate) fn layer_offset_unchecked(&self, block: usize, layer: usize) -> usize {
        match self.kind {
            LayoutKind::FullyContiguous => {
                block * self.block_bytes + layer * self.layer_block_bytes
            }
            LayoutKind::LayerSeparate => layer * self.layer_stride + block * self.layer_block_bytes,
        }
    }

    /// Byte range of layer `layer` (K then V) of block `block`.
    pub fn layer_range(&self, block: usize, layer: usize) -> Result<Range<usize>, LayoutError> {
        self.check_block(block)?;
        if layer >= self.shape.num_layers {
            return Err(LayoutError::LayerOutOfRange {
                layer,
                num_layers: self.shape.num_layers,
            });
        }
        let start = self.layer_offset_unchecked(block, layer);
        Ok(start..start + self.layer_block_bytes)
    }

    /// Byte ranges of block `block`, in layer order: one range for a contiguous
    /// layout, one per layer for a layer-separate one. Concatenated they give the
    /// canonical bytes of the block (the same for both layouts).
    pub fn block_ranges(&self, block: usize) -> Result<Vec<Range<usize>>, LayoutError> {
        self.check_block(block)?;
        Ok(match self.kind {
            LayoutKind::FullyContiguous => {
                let s = block * self.block_bytes;
                std::iter::once(s..s + self.block_bytes).collect()
            }
            LayoutKind::LayerSeparate => (0..self.shape.num_layers)
                .map(|l| {
                    let s = self.layer_offset_unchecked(block, l);
                    s..s + self.layer_block_bytes
                })
                .collect(),
        })
    }
}

impl TryFrom<LayoutSpec> for Layout {
    type Error = LayoutError;
    fn try_from(s: LayoutSpec) -> Result<Self, Self::Error> {
        Layout::new(s.shape, s.kind, s.num_blocks)
    }
}

impl From<Layout> for LayoutSpec {
    fn from(l: Layout) -> Self {
        LayoutSpec {
            shape: l.shape,
            kind: l.kind,
            num_blocks: l.num_blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_sizes() {
        assert_eq!(BlockShape::tiny().block_bytes().unwrap(), 512);
        assert_eq!(BlockShape::llama3_8b().block_bytes().unwrap(), 2 << 20);
        assert_eq!(BlockShape::llama3_70b().block_bytes().unwrap(), 5 << 20);
        assert_eq!(
            BlockShape::llama3_8b()
                .with_block_size(512)
                .block_bytes()
                .unwrap(),
            64 << 20
        );
        assert_eq!(
            BlockShape::preset("Llama3_70B"),
            Some(BlockShape::llama3_70b())
        );
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let s = BlockShape::tiny().with_dtype_bytes(3);
        assert_eq!(s.block_bytes(), Err(LayoutError::InvalidDtype(3)));
        let s = BlockShape::tiny().with_block_size(0);
        assert_eq!(s.block_bytes(), Err(LayoutError::Zero("block_size")));
        let s = BlockShape::tiny().with_block_size(usize::MAX / 2);
        assert!(matches!(s.block_bytes(), Err(LayoutError::Overflow(_))));
        let e = Layout::contiguous(BlockShape::llama3_70b(), usize::MAX / 1024).unwrap_err();
        assert!(matches!(e, LayoutError::Overflow(_)));
        assert!(Layout::contiguous(BlockShape::tiny(), 0).is_err());
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn ranges() {
        let c = Layout::contiguous(BlockShape::tiny(), 10).unwrap();
        assert_eq!(c.block_ranges(3).unwrap(), vec![1536..2048]);
        assert_eq!(c.layer_range(3, 1).unwrap(), 1792..2048);
        let s = Layout::layer_separate(BlockShape::tiny(), 10).unwrap();
        assert_eq!(s.block_ranges(3).unwrap(), vec![768..1024, 3328..3584]);
        assert!(s.block_ranges(10).is_err());
        assert!(s.layer_range(0, 2).is_err());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let l = Layout::layer_separate(BlockShape::llama3_8b(), 100).unwrap();
        let j = serde_json::to_string(&l).unwrap();
        let back: Layout = serde_json::from_str(&j).unwrap();
        assert_eq!(l, back);
        let bad = j.replace("\"dtype_bytes\":2", "\"dtype_bytes\":3");
        assert!(serde_json::from_str::<Layout>(&bad).is_err());
    }
}
