//! kvtier-memory: the physical layer's common ground.
//!
//! * [`Layout`] / [`BlockShape`]: block shape -> byte regions, fully contiguous
//!   or layer-separate, overflow-checked.
//! * [`BlockMemory`]: a memory kind binding block ids to bytes;
//!   [`HostVisible`] memories also give byte views ([`BlockView`]).
//! * [`HostMemory`] (page-aligned host memory) and [`MockDeviceMemory`] (host
//!   memory that behaves like a device: reachable only through a copy engine).
//! * [`CopyEngine`]: moves batches of `(src block, dst block)` pairs and returns
//!   a [`Transfer`] (a `Future`, or [`Transfer::wait`]). [`MemcpyEngine`] does
//!   it with worker threads for host-addressable memories.
//! * [`block_checksum`]: the checksum of a block's bytes every tier agrees on.
//!
//! ```
//! use std::sync::Arc;
//! use kvtier_memory::*;
//! let layout = Layout::layer_separate(BlockShape::tiny(), 8).unwrap();
//! let host = Arc::new(HostMemory::new(layout).unwrap());
//! let dev: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(layout).unwrap());
//! host.write_block(1, &[7u8; 512]).unwrap();
//! let engine = MemcpyEngine::new(2).unwrap();
//! let h: Arc<dyn BlockMemory> = host.clone();
//! engine.copy_blocks(&h, &dev, &[(1, 4)]).unwrap().wait().unwrap();
//! engine.copy_blocks(&dev, &h, &[(4, 2)]).unwrap().wait().unwrap();
//! assert_eq!(host.read_block(2).unwrap(), vec![7u8; 512]);
//! ```

pub mod available;
pub mod checksum;
pub mod engine;
pub mod error;
pub mod fingerprint;
pub mod layout;
pub mod memory;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;

pub use available::available_memory;
pub use checksum::block_checksum;
pub use engine::{
    lock_and_plan, plan_copy, split_plan, BatchGuard, CopyEngine, CopyPlan, CopyResult,
    MemcpyEngine, Memory, Region, WorkerPool,
};
pub use error::{CopyError, LayoutError, MemoryError};
pub use fingerprint::layout_fingerprint;
pub use layout::{BlockShape, Layout, LayoutKind, LayoutSpec, DEFAULT_BLOCK_SIZE};
pub use memory::{
    AlignedBuf, BlockAccess, BlockLocks, BlockMemory, BlockView, BlockViewMut, HostMemory,
    HostVisible, MemoryKind, MockDeviceMemory, PAGE_SIZE,
};
pub use transfer::{Part, Transfer};
