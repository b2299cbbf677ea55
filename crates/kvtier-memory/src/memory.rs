//! Memory kinds: the [`BlockMemory`] trait, per-block access locks, byte views
//! of host-visible memory, page-aligned host memory and mock device memory.

use std::alloc::{self, Layout as AllocLayout};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::MemoryError;
use crate::layout::Layout;

/// Page size used for host allocations (and O_DIRECT alignment).
pub const PAGE_SIZE: usize = 4096;

/// What kind of memory a [`BlockMemory`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Plain page-aligned host memory.
    Host,
    /// Page-locked (pinned) host memory (CUDA).
    Pinned,
    /// CUDA device memory.
    Device,
    /// Host memory that behaves like a device (only reachable by copy engines).
    MockDevice,
    /// A disk file (mmap'd or positioned I/O).
    Disk,
}

impl MemoryKind {
    /// Tier name used in reports: G1 (device), G2 (host), G3 (disk).
    pub fn tier(&self) -> &'static str {
        match self {
            MemoryKind::Device | MemoryKind::MockDevice => "G1",
            MemoryKind::Host | MemoryKind::Pinned => "G2",
            MemoryKind::Disk => "G3",
        }
    }
}

const WRITER: u32 = 1 << 31;

/// Per-block reader/writer locks (one atomic per block).
///
/// Copy engines take the source blocks shared and the destination blocks
/// exclusive for the duration of a transfer; host views do the same. A conflict
/// is reported as an error, never waited for, so nothing can deadlock.
#[derive(Debug)]
pub struct BlockLocks {
    states: Box<[AtomicU32]>,
}

impl BlockLocks {
    /// Locks for `n` blocks, all free.
    pub fn new(n: usize) -> Self {
        Self {
            states: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Number of blocks covered.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True if no blocks are covered.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Takes block `b` shared. Returns false if it is held exclusively.
    pub fn try_read(&self, b: usize) -> bool {
        let Some(s) = self.states.get(b) else {
            return false;
        };
        let mut cur = s.load(Ordering::Relaxed);
        loop {
            if cur & WRITER != 0 || cur == WRITER - 1 {
                return false;
            }
            match s.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// Takes block `b` exclusively. Returns false if it is held at all.
    pub fn try_write(&self, b: usize) -> bool {
        self.states.get(b).is_some_and(|s| {
            s.compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Releases a shared hold taken with [`try_read`](Self::try_read).
    pub fn release_read(&self, b: usize) {
        if let Some(s) = self.states.get(b) {
            s.fetch_sub(1, Ordering::Release);
        }
    }

    /// Releases an exclusive hold taken with [`try_write`](Self::try_write).
    pub fn release_write(&self, b: usize) {
        if let Some(s) = self.states.get(b) {
            s.store(0, Ordering::Release);
        }
    }
}

/// A memory that binds block ids to bytes according to a [`Layout`].
///
/// The memory is one region of `layout().total_bytes()` bytes; block ranges come
/// from the layout.
pub trait BlockMemory: Send + Sync + 'static {
    /// The kind of memory.
    fn kind(&self) -> MemoryKind;
    /// The layout of the region.
    fn layout(&self) -> &Layout;
    /// Per-block access locks.
    fn locks(&self) -> &BlockLocks;
    /// Number of blocks.
    fn num_blocks(&self) -> usize {
        self.layout().num_blocks()
    }
    /// Base address of the region in the host address space, for copy engines
    /// that memcpy (host, pinned, mock device, mmap'd disk). `None` for memory
    /// that is not host-addressable (CUDA device memory, positioned-I/O files).
    ///
    /// # Safety
    /// The pointer is valid for `layout().total_bytes()` bytes while `self`
    /// lives. Callers must hold the block locks of every byte they touch.
    unsafe fn engine_host_ptr(&self) -> Option<NonNull<u8>>;
    /// CUDA device address of the region, if it is device memory.
    fn device_ptr(&self) -> Option<u64> {
        None
    }
    /// For engines that need the concrete type.
    fn as_any(&self) -> &dyn Any;
}

/// Implements [`BlockMemory`] for a memory type with `layout: Layout` and
/// `locks: BlockLocks` fields. The kind, the host pointer for engines and
/// (optionally) the device pointer are expressions of the memory, named by
/// the identifier before the `=>`:
/// `impl_block_memory!(HostMemory, m => kind: m.kind, host_ptr: Some(m.buf.as_ptr()));`
#[macro_export]
macro_rules! impl_block_memory {
    ($ty:ty, $m:ident => kind: $kind:expr, host_ptr: $host:expr $(, device_ptr: $dev:expr)? $(,)?) => {
        impl $crate::BlockMemory for $ty {
            fn kind(&self) -> $crate::MemoryKind {
                let $m = self;
                let _ = $m;
                $kind
            }
            fn layout(&self) -> &$crate::Layout {
                &self.layout
            }
            fn locks(&self) -> &$crate::BlockLocks {
                &self.locks
            }
            unsafe fn engine_host_ptr(&self) -> Option<std::ptr::NonNull<u8>> {
                let $m = self;
                let _ = $m;
                $host
            }
            $(fn device_ptr(&self) -> Option<u64> {
                let $m = self;
                $dev
            })?
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}

/// Memory whose blocks may be viewed as byte slices by anyone (host, pinned,
/// mmap'd disk). Views take the block locks, so a view never aliases bytes that
/// a transfer is writing.
///
/// # Safety
/// Implementors must return `Some` from [`BlockMemory::engine_host_ptr`] with a
/// pointer valid for the whole region for as long as the memory lives.
pub unsafe trait HostVisible: BlockMemory {
    /// A shared view of block `block` (fails with [`MemoryError::Busy`] while a
    /// transfer writes it).
    fn block(&self, block: usize) -> Result<BlockView<'_>, MemoryError> {
        open_view(self, block)
    }

    /// An exclusive view of block `block` (fails with [`MemoryError::Busy`]
    /// while a transfer or another view holds it).
    fn block_mut(&self, block: usize) -> Result<BlockViewMut<'_>, MemoryError> {
        open_view(self, block)
    }

    /// Copies the canonical bytes of a block (layers in order) into a vector.
    fn read_block(&self, block: usize) -> Result<Vec<u8>, MemoryError> {
        let v = self.block(block)?;
        let mut out = Vec::with_capacity(self.layout().block_bytes());
        for r in v.regions() {
            out.extend_from_slice(r);
        }
        Ok(out)
    }

    /// Writes the canonical bytes of a block (layers in order).
    fn write_block(&self, block: usize, data: &[u8]) -> Result<(), MemoryError> {
        let expected = self.layout().block_bytes();
        if data.len() != expected {
            return Err(MemoryError::Length {
                expected,
                got: data.len(),
            });
        }
        let mut v = self.block_mut(block)?;
        let mut off = 0;
        for i in 0..v.num_regions() {
            let r = v.region_mut(i);
            let n = r.len();
            r.copy_from_slice(&data[off..off + n]);
            off += n;
        }
        Ok(())
    }
}

/// Lock `block` of `m` (shared, or exclusive when `EXCLUSIVE`) and view its
/// regions; the lock is released when the view drops.
fn open_view<M: HostVisible + ?Sized, const EXCLUSIVE: bool>(
    m: &M,
    block: usize,
) -> Result<BlockAccess<'_, EXCLUSIVE>, MemoryError> {
    let ranges = m.layout().block_ranges(block)?;
    let locks = m.locks();
    let locked = if EXCLUSIVE {
        locks.try_write(block)
    } else {
        locks.try_read(block)
    };
    if !locked {
        return Err(MemoryError::Busy(block));
    }
    // From here on, dropping `view` releases the lock.
    let mut view = BlockAccess {
        locks,
        block,
        base: NonNull::dangling(),
        ranges,
        _m: std::marker::PhantomData,
    };
    // SAFETY: guaranteed by the `HostVisible` contract.
    view.base = unsafe { m.engine_host_ptr() }.ok_or(MemoryError::Busy(block))?;
    Ok(view)
}

/// A locked view of one block's regions: shared ([`BlockView`]) or exclusive
/// ([`BlockViewMut`], the only one with [`BlockAccess::region_mut`]). The
/// block lock is released on drop.
pub struct BlockAccess<'a, const EXCLUSIVE: bool> {
    locks: &'a BlockLocks,
    block: usize,
    base: NonNull<u8>,
    ranges: Vec<std::ops::Range<usize>>,
    _m: std::marker::PhantomData<&'a [u8]>,
}

/// A shared view of one block's regions (releases the block lock on drop).
pub type BlockView<'a> = BlockAccess<'a, false>;

/// An exclusive view of one block's regions (releases the block lock on drop).
pub type BlockViewMut<'a> = BlockAccess<'a, true>;

impl<const EXCLUSIVE: bool> BlockAccess<'_, EXCLUSIVE> {
    /// Number of regions (1 for contiguous, `num_layers` for layer-separate).
    pub fn num_regions(&self) -> usize {
        self.ranges.len()
    }
    /// Region `i` (panics if `i >= num_regions()`, like slice indexing).
    pub fn region(&self, i: usize) -> &[u8] {
        let r = &self.ranges[i];
        // SAFETY: the range lies inside the region (layout arithmetic) and the
        // lock keeps writers (or everyone else) out.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(r.start), r.len()) }
    }
    /// All regions in layer order.
    pub fn regions(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.ranges.len()).map(move |i| self.region(i))
    }
    /// The block's canonical bytes (layers in order): its one region as it
    /// is, or every region gathered into `scratch` (cleared first; reused
    /// across blocks, it stops allocating after the first).
    pub fn canonical<'s>(&'s self, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        if self.num_regions() == 1 {
            return self.region(0);
        }
        scratch.clear();
        self.regions().for_each(|r| scratch.extend_from_slice(r));
        scratch
    }
}

impl BlockViewMut<'_> {
    /// Region `i`, writable.
    pub fn region_mut(&mut self, i: usize) -> &mut [u8] {
        let r = &self.ranges[i];
        // SAFETY: in-bounds, write lock held, `&mut self` prevents aliasing.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(r.start), r.len()) }
    }
}

impl<const EXCLUSIVE: bool> Drop for BlockAccess<'_, EXCLUSIVE> {
    fn drop(&mut self) {
        if EXCLUSIVE {
            self.locks.release_write(self.block);
        } else {
            self.locks.release_read(self.block);
        }
    }
}

/// A zeroed, page-aligned heap buffer (used for host memory and O_DIRECT I/O).
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: AllocLayout,
}

// SAFETY: AlignedBuf owns its allocation like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]` through `&self`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two).
    pub fn zeroed(len: usize, align: usize) -> Result<Self, MemoryError> {
        let err = |reason: &str| MemoryError::Alloc {
            bytes: len,
            reason: reason.to_string(),
        };
        if len == 0 {
            return Err(err("zero-sized allocation"));
        }
        let layout = AllocLayout::from_size_align(len, align).map_err(|e| err(&e.to_string()))?;
        // SAFETY: non-zero size checked above.
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| err("out of memory"))?;
        Ok(Self { ptr, len, layout })
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Always false (zero-sized buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Base pointer.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }
    /// Bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: owned allocation of `len` initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    /// Bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Plain page-aligned host memory (tier G2 without CUDA).
#[derive(Debug)]
pub struct HostMemory {
    buf: AlignedBuf,
    layout: Layout,
    locks: BlockLocks,
    kind: MemoryKind,
}

impl HostMemory {
    /// Allocates zeroed, 4096-aligned memory for `layout`.
    pub fn new(layout: Layout) -> Result<Self, MemoryError> {
        Self::with_kind(layout, MemoryKind::Host)
    }

    /// Like [`new`](Self::new) but reporting another kind (e.g. the pinned-host
    /// fallback of `kvtier-cuda` reports [`MemoryKind::Pinned`]).
    pub fn with_kind(layout: Layout, kind: MemoryKind) -> Result<Self, MemoryError> {
        Ok(Self {
            buf: AlignedBuf::zeroed(layout.total_bytes(), PAGE_SIZE)?,
            locks: BlockLocks::new(layout.num_blocks()),
            layout,
            kind,
        })
    }
}

impl_block_memory!(HostMemory, m =>
    kind: m.kind, host_ptr: Some(m.buf.as_ptr()));

// SAFETY: the buffer is valid for the whole layout while self lives.
unsafe impl HostVisible for HostMemory {}

/// Mock device memory: host memory that behaves like a device. It offers no
/// byte views; bytes get in and out only through a copy engine
/// ([`crate::MemcpyEngine`]), as with real device memory.
#[derive(Debug)]
pub struct MockDeviceMemory {
    buf: AlignedBuf,
    layout: Layout,
    locks: BlockLocks,
}

impl MockDeviceMemory {
    /// Allocates zeroed mock device memory for `layout`.
    pub fn new(layout: Layout) -> Result<Self, MemoryError> {
        Ok(Self {
            buf: AlignedBuf::zeroed(layout.total_bytes(), PAGE_SIZE)?,
            locks: BlockLocks::new(layout.num_blocks()),
            layout,
        })
    }
}

impl_block_memory!(MockDeviceMemory, m =>
    kind: MemoryKind::MockDevice, host_ptr: Some(m.buf.as_ptr()));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BlockShape;

    #[test]
    fn views_and_locks() {
        let l = Layout::layer_separate(BlockShape::tiny(), 4).unwrap();
        let m = HostMemory::new(l).unwrap();
        let data: Vec<u8> = (0..512).map(|i| i as u8).collect();
        m.write_block(2, &data).unwrap();
        assert_eq!(m.read_block(2).unwrap(), data);
        let v = m.block(2).unwrap();
        assert_eq!(v.num_regions(), 2);
        let mut scratch = vec![9u8; 3];
        assert_eq!(v.canonical(&mut scratch), &data[..]);
        let c = Layout::contiguous(BlockShape::tiny(), 4).unwrap();
        let one = HostMemory::new(c).unwrap();
        one.write_block(1, &data).unwrap();
        let mut untouched = Vec::new();
        assert_eq!(one.block(1).unwrap().canonical(&mut untouched), &data[..]);
        assert!(untouched.is_empty(), "one region is not copied");
        assert!(matches!(m.block_mut(2), Err(MemoryError::Busy(2))));
        let v2 = m.block(2).unwrap();
        drop(v);
        drop(v2);
        assert!(m.block_mut(2).is_ok());
        assert!(m.block(4).is_err());
        assert!(m.write_block(1, &data[..10]).is_err());
    }

    #[test]
    fn zero_alloc_is_error() {
        assert!(AlignedBuf::zeroed(0, PAGE_SIZE).is_err());
    }
}
