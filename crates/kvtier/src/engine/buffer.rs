//! [`HostBuffer`]: the caller's host memory that jobs copy blocks to and
//! from, chunk `i` being bytes `[i * block_bytes, (i + 1) * block_bytes)`.

use crate::engine::error::EngineError;

/// Required alignment of a buffer's start.
pub const BUFFER_ALIGN: usize = 8;

/// A region of host memory owned by the caller (a vLLM primary-tier view,
/// an SGLang host pool, a numpy array). Jobs read (store) or write (load)
/// whole chunks of it on worker threads.
#[derive(Clone, Copy, Debug)]
pub struct HostBuffer {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a HostBuffer is a plain address range; the caller of
// `HostBuffer::new` guarantees it stays valid while jobs use it, and jobs
// only touch the disjoint chunks they were given.
unsafe impl Send for HostBuffer {}
// SAFETY: as above; shared references only copy the address.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    /// A buffer of `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid for reads and writes until every job
    /// submitted with this buffer is reported by
    /// [`EngineCore::poll_finished`](crate::engine::EngineCore::poll_finished)
    /// (or [`drain`](crate::engine::EngineCore::drain) returned), and nothing
    /// else may write the chunks a load job targets meanwhile.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> HostBuffer {
        HostBuffer { ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Check that the buffer holds whole blocks and is aligned, and that
    /// every chunk id is in range; returns the chunk ids as indices.
    pub fn check_chunks(
        &self,
        block_bytes: usize,
        chunks: &[i64],
    ) -> Result<Vec<usize>, EngineError> {
        if !self.len.is_multiple_of(block_bytes) {
            return Err(EngineError::BufferSize {
                len: self.len,
                block_bytes,
            });
        }
        let addr = self.ptr as usize;
        if !addr.is_multiple_of(BUFFER_ALIGN) {
            return Err(EngineError::BufferAlignment {
                addr,
                align: BUFFER_ALIGN,
            });
        }
        let n = self.len / block_bytes;
        chunks
            .iter()
            .map(|&c| {
                if c < 0 || c as u64 >= n as u64 {
                    Err(EngineError::ChunkOutOfRange {
                        chunk: c,
                        chunks: n,
                    })
                } else {
                    Ok(c as usize)
                }
            })
            .collect()
    }

    /// The bytes of chunk `chunk` (checked by [`HostBuffer::check_chunks`]).
    ///
    /// # Safety
    /// The chunk must be in range and not written concurrently.
    pub(crate) unsafe fn chunk(&self, chunk: usize, block_bytes: usize) -> &[u8] {
        // SAFETY: in range (checked at submission), valid per `new`'s contract.
        unsafe { std::slice::from_raw_parts(self.ptr.add(chunk * block_bytes), block_bytes) }
    }

    /// The bytes of chunk `chunk`, writable.
    ///
    /// # Safety
    /// The chunk must be in range and accessed by no one else meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn chunk_mut(&self, chunk: usize, block_bytes: usize) -> &mut [u8] {
        // SAFETY: in range (checked at submission), exclusive per the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(chunk * block_bytes), block_bytes) }
    }
}
