//! Typed errors of the physical layer.

use thiserror::Error;

use crate::memory::MemoryKind;

/// Errors of layout construction and block addressing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// A size computation overflowed.
    #[error("layout size overflow computing {0}")]
    Overflow(&'static str),
    /// Element size is not 1, 2, 4 or 8 bytes.
    #[error("invalid dtype size {0} bytes (expected 1, 2, 4 or 8)")]
    InvalidDtype(usize),
    /// A dimension is zero.
    #[error("layout dimension {0} must be non-zero")]
    Zero(&'static str),
    /// Block id beyond the number of blocks.
    #[error("block {block} out of range (num_blocks = {num_blocks})")]
    BlockOutOfRange {
        /// The block asked for.
        block: usize,
        /// Number of blocks in the layout.
        num_blocks: usize,
    },
    /// Layer index beyond the number of layers.
    #[error("layer {layer} out of range (num_layers = {num_layers})")]
    LayerOutOfRange {
        /// The layer asked for.
        layer: usize,
        /// Number of layers.
        num_layers: usize,
    },
}

/// Errors of memory allocation and block views.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    /// Bad layout or block id.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The allocator refused.
    #[error("allocation of {bytes} bytes failed: {reason}")]
    Alloc {
        /// Bytes requested.
        bytes: usize,
        /// Why.
        reason: String,
    },
    /// The block is being written by a transfer (or read, for a mutable view).
    #[error("block {0} is busy (a transfer or another view holds it)")]
    Busy(usize),
    /// A byte slice of the wrong length was given.
    #[error("length mismatch: expected {expected} bytes, got {got}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
}

/// Errors of copy engines (submission and completion).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CopyError {
    /// Bad block id in the batch.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Source and destination have different block shapes.
    #[error("block shape mismatch between source and destination")]
    ShapeMismatch,
    /// The same destination block appears twice in a batch.
    #[error("destination block {0} appears twice in one batch")]
    DuplicateDestination(usize),
    /// A block of the batch is held by another transfer or a view.
    #[error("block {block} of the {side} memory is busy")]
    Busy {
        /// `"source"` or `"destination"`.
        side: &'static str,
        /// The block.
        block: usize,
    },
    /// This engine cannot move bytes between these memory kinds.
    #[error("copy engine {engine} does not support {src:?} -> {dst:?}")]
    Unsupported {
        /// Engine name.
        engine: &'static str,
        /// Source kind.
        src: MemoryKind,
        /// Destination kind.
        dst: MemoryKind,
    },
    /// An I/O error (disk engines).
    #[error("I/O error: {0}")]
    Io(String),
    /// A CUDA error.
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// The engine was shut down or a worker died before the transfer finished.
    #[error("copy engine shut down before the transfer completed")]
    Aborted,
}

impl CopyError {
    /// `engine` cannot copy from `src`'s memory kind to `dst`'s.
    pub fn unsupported(
        engine: &'static str,
        src: &crate::engine::Memory,
        dst: &crate::engine::Memory,
    ) -> Self {
        CopyError::Unsupported {
            engine,
            src: src.kind(),
            dst: dst.kind(),
        }
    }
}
