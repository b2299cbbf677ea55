//! kvtier-cuda: CUDA device memory (G1), pinned host memory (G2) and the CUDA
//! copy engine, through cudarc 0.19 with dynamic loading.
//!
//! The crate builds and runs without any CUDA toolkit or driver. cudarc panics
//! on first use when `libcuda`/`libnvrtc` cannot be loaded, so every entry
//! point probes the library first ([`probe_driver`], [`probe_nvrtc`]) and
//! returns [`CudaError::NoDriver`] / [`CudaError::NoNvrtc`] instead.
//!
//! * [`CudaDevice::open`]: a context on one GPU.
//! * [`DeviceMemory`]: one device allocation for a [`kvtier_memory::Layout`].
//! * [`PinnedMemory`]: page-locked host memory (`cuMemHostAlloc` with
//!   `PORTABLE | DEVICEMAP`, not write-combined, so the CPU reads it at full
//!   speed); without CUDA, [`PinnedMemory::new`] falls back to plain
//!   page-aligned host memory (reported by [`PinnedMemory::is_page_locked`]).
//! * [`CudaCopyEngine`]: host <-> device and device <-> device transfers on
//!   CUDA streams, one event per transfer, completion bridged to the
//!   [`kvtier_memory::Transfer`] future by a waiter thread per stream (blocking
//!   `cuEventSynchronize`, no polling). Few large regions go by
//!   `cuMemcpyAsync` per region; many small ones by one launch of the
//!   batched-copy kernel `kernels/block_copy.cu`, compiled by NVRTC at run time.

pub mod engine;
pub mod error;
pub mod kernels;
pub mod memory;

pub use engine::{CopyStrategy, CudaCopyEngine};
pub use error::{probe_driver, probe_nvrtc, CudaError};
pub use kernels::{compile_kernel, KERNELS};
pub use memory::{CudaDevice, DeviceMemory, PinnedMemory};
