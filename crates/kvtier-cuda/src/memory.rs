//! CUDA contexts, device memory and pinned host memory.

use std::ptr::NonNull;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext};
use kvtier_memory::{BlockLocks, BlockMemory, HostMemory, HostVisible, Layout, MemoryKind};

use crate::error::{probe_driver, CudaError};

/// A CUDA context on one GPU (cheap to clone).
#[derive(Debug, Clone)]
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    ordinal: usize,
}

impl CudaDevice {
    /// Opens GPU `ordinal`. Returns [`CudaError::NoDriver`] when `libcuda` is
    /// absent (cudarc would panic) and [`CudaError::Driver`] when the driver
    /// has no such device.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        probe_driver()?;
        let ctx = CudaContext::new(ordinal)
            .map_err(CudaError::driver("cuInit/cuDevicePrimaryCtxRetain"))?;
        // Transfers use raw allocations and one event per transfer; cudarc's
        // per-slice read/write events would serialise streams over views of
        // one large allocation, so tracking is turned off.
        // SAFETY: this crate synchronises through its own per-transfer events
        // and block locks (see engine.rs).
        unsafe { ctx.disable_event_tracking() };
        Ok(Self { ctx, ordinal })
    }

    /// Number of GPUs, or an error when there is no driver.
    pub fn count() -> Result<usize, CudaError> {
        probe_driver()?;
        let n = CudaContext::device_count().map_err(CudaError::driver("cuDeviceGetCount"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The cudarc context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Binds the context to the calling thread.
    pub fn bind(&self) -> Result<(), CudaError> {
        self.ctx
            .bind_to_thread()
            .map_err(CudaError::driver("cuCtxSetCurrent"))
    }
}

/// Device memory for one layout (a single `cuMemAlloc`), tier G1.
#[derive(Debug)]
pub struct DeviceMemory {
    dev: CudaDevice,
    ptr: sys::CUdeviceptr,
    layout: Layout,
    locks: BlockLocks,
}

impl DeviceMemory {
    /// Allocates (zeroed) device memory for `layout`.
    pub fn new(dev: &CudaDevice, layout: Layout) -> Result<Self, CudaError> {
        dev.bind()?;
        let bytes = layout.total_bytes();
        // SAFETY: context bound; the memory is zeroed right after.
        let ptr = unsafe { result::malloc_sync(bytes) }.map_err(CudaError::driver("cuMemAlloc"))?;
        // SAFETY: ptr is a fresh allocation of `bytes` bytes.
        if let Err(e) = unsafe { result::memset_d8_sync(ptr, 0, bytes) } {
            // SAFETY: allocated above, not used elsewhere.
            let _ = unsafe { result::free_sync(ptr) };
            return Err(CudaError::driver("cuMemsetD8")(e));
        }
        Ok(Self {
            dev: dev.clone(),
            ptr,
            locks: BlockLocks::new(layout.num_blocks()),
            layout,
        })
    }

    /// The device this memory lives on.
    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        if self.dev.bind().is_ok() {
            // SAFETY: allocated in `new`; transfers keep an Arc to this memory
            // until their event completed, so nothing uses it any more.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

kvtier_memory::impl_block_memory!(DeviceMemory, m =>
    kind: MemoryKind::Device, host_ptr: None, device_ptr: Some(m.ptr));

enum PinnedInner {
    Cuda { dev: CudaDevice, ptr: NonNull<u8> },
    Fallback(HostMemory),
}

/// Pinned (page-locked) host memory for one layout, tier G2.
///
/// With CUDA: `cuMemHostAlloc(PORTABLE | DEVICEMAP)` (the call behind cudarc's
/// `alloc_pinned_with_flags`, made directly so that the allocation carries no
/// cudarc per-slice event that every access would synchronise on); *not*
/// write-combined
/// (write-combined memory is uncached for CPU reads, and the disk tier and
/// checksums read G2 with the CPU). With unified addressing its host address is
/// also a device address, so the batched-copy kernel can read/write it.
///
/// Without CUDA ([`PinnedMemory::new`] with `None`): plain 4096-aligned host
/// memory, reported as [`MemoryKind::Pinned`] so configurations stay the same;
/// [`is_page_locked`](Self::is_page_locked) says which one you got.
pub struct PinnedMemory {
    inner: PinnedInner,
    layout: Layout,
    locks: BlockLocks,
}

// SAFETY: the allocation is owned; access goes through block locks.
unsafe impl Send for PinnedMemory {}
// SAFETY: as above.
unsafe impl Sync for PinnedMemory {}

impl std::fmt::Debug for PinnedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedMemory")
            .field("layout", &self.layout)
            .field("page_locked", &self.is_page_locked())
            .finish()
    }
}

impl PinnedMemory {
    /// Allocates zeroed pinned memory on `dev`'s context, or page-aligned host
    /// memory when `dev` is `None` (the CPU-only fallback).
    pub fn new(dev: Option<&CudaDevice>, layout: Layout) -> Result<Self, CudaError> {
        let inner = match dev {
            None => PinnedInner::Fallback(HostMemory::with_kind(layout, MemoryKind::Pinned)?),
            Some(dev) => {
                dev.bind()?;
                let bytes = layout.total_bytes();
                let flags = sys::CU_MEMHOSTALLOC_PORTABLE | sys::CU_MEMHOSTALLOC_DEVICEMAP;
                // SAFETY: context bound; zeroed below.
                let p = unsafe { result::malloc_host(bytes, flags) }
                    .map_err(CudaError::driver("cuMemHostAlloc"))?;
                let ptr = NonNull::new(p as *mut u8).ok_or(CudaError::Driver {
                    call: "cuMemHostAlloc",
                    msg: "returned null".into(),
                })?;
                // SAFETY: fresh allocation of `bytes` bytes.
                unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, bytes) };
                PinnedInner::Cuda {
                    dev: dev.clone(),
                    ptr,
                }
            }
        };
        Ok(Self {
            inner,
            locks: BlockLocks::new(layout.num_blocks()),
            layout,
        })
    }

    /// Pinned memory on `dev` if given and it works, else the fallback.
    pub fn new_or_fallback(dev: Option<&CudaDevice>, layout: Layout) -> Result<Self, CudaError> {
        match dev {
            Some(d) => Self::new(Some(d), layout).or_else(|_| Self::new(None, layout)),
            None => Self::new(None, layout),
        }
    }

    /// True if the memory is really page-locked by CUDA.
    pub fn is_page_locked(&self) -> bool {
        matches!(self.inner, PinnedInner::Cuda { .. })
    }

    fn base(&self) -> NonNull<u8> {
        match &self.inner {
            PinnedInner::Cuda { ptr, .. } => *ptr,
            PinnedInner::Fallback(h) => {
                // SAFETY: HostMemory's pointer is valid while it lives (owned here).
                unsafe { h.engine_host_ptr() }.unwrap_or(NonNull::dangling())
            }
        }
    }
}

impl Drop for PinnedMemory {
    fn drop(&mut self) {
        if let PinnedInner::Cuda { dev, ptr } = &self.inner {
            if dev.bind().is_ok() {
                // SAFETY: allocated with cuMemHostAlloc in `new`.
                let _ = unsafe { result::free_host(ptr.as_ptr() as *mut std::ffi::c_void) };
            }
        }
    }
}

kvtier_memory::impl_block_memory!(PinnedMemory, m =>
    kind: MemoryKind::Pinned, host_ptr: Some(m.base()), device_ptr: m.unified_ptr());

impl PinnedMemory {
    /// The device address of the buffer: with unified addressing a DEVICEMAP
    /// page-locked allocation has the same address on host and device (none
    /// for the plain host fallback).
    fn unified_ptr(&self) -> Option<u64> {
        match &self.inner {
            PinnedInner::Cuda { ptr, .. } => Some(ptr.as_ptr() as u64),
            PinnedInner::Fallback(_) => None,
        }
    }
}

// SAFETY: base() is valid for the whole layout while self lives.
unsafe impl HostVisible for PinnedMemory {}
