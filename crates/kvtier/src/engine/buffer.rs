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
    /// every chunk id is in range; returns the chunks' addresses.
    pub fn check_chunks(&self, block_bytes: usize, chunks: &[i64]) -> Result<Chunks, EngineError> {
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
        let segs = chunks
            .iter()
            .map(|&c| {
                if c < 0 || c as u64 >= n as u64 {
                    Err(EngineError::ChunkOutOfRange {
                        chunk: c,
                        chunks: n,
                    })
                } else {
                    Ok((addr + c as usize * block_bytes, block_bytes))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chunks { segs, per: 1 })
    }
}

/// Where each chunk of a job lives: `per` (address, length) segments per
/// chunk, in order, their lengths adding up to one block. A buffer gives one
/// segment per chunk; a paged host pool (SGLang) may split a page in
/// several (one per layer).
#[derive(Clone, Debug)]
pub struct Chunks {
    segs: Vec<(usize, usize)>,
    per: usize,
}

// SAFETY: plain addresses; the submitter guarantees their validity and
// exclusive use by the job (see `HostBuffer::new`, `Chunks::from_segments`).
unsafe impl Send for Chunks {}
// SAFETY: as above.
unsafe impl Sync for Chunks {}

impl Chunks {
    /// Chunks given as raw segments: `segments.len()` must be a multiple of
    /// `keys`, and each chunk's segments must add up to `block_bytes`.
    ///
    /// # Safety
    /// Every segment must be valid for reads and writes until the job is
    /// reported, and a load's segments written by nobody else meanwhile.
    pub unsafe fn from_segments(
        segments: Vec<(usize, usize)>,
        keys: usize,
        block_bytes: usize,
    ) -> Result<Chunks, EngineError> {
        if keys == 0 {
            return Ok(Chunks {
                segs: segments,
                per: 1,
            });
        }
        if !segments.len().is_multiple_of(keys) || segments.is_empty() {
            return Err(EngineError::LengthMismatch {
                keys,
                chunks: segments.len(),
            });
        }
        let per = segments.len() / keys;
        for (i, page) in segments.chunks(per).enumerate() {
            let total: usize = page.iter().map(|s| s.1).sum();
            if total != block_bytes || page.iter().any(|s| s.0 == 0) {
                return Err(EngineError::SegmentSize {
                    chunk: i,
                    bytes: total,
                    block_bytes,
                });
            }
        }
        Ok(Chunks {
            segs: segments,
            per,
        })
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.segs.len() / self.per.max(1)
    }

    /// True without chunks.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Copy chunk `i` into `dst` (one block).
    ///
    /// # Safety
    /// The segments must be valid (see [`Chunks::from_segments`]).
    pub(crate) unsafe fn read(&self, i: usize, dst: &mut [u8]) {
        let mut at = 0;
        for &(addr, len) in &self.segs[i * self.per..(i + 1) * self.per] {
            // SAFETY: valid for `len` bytes per the submitter's contract.
            let src = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
            dst[at..at + len].copy_from_slice(src);
            at += len;
        }
    }

    /// Copy `src` (one block) into chunk `i`.
    ///
    /// # Safety
    /// The segments must be valid and not used by anyone else meanwhile.
    pub(crate) unsafe fn write(&self, i: usize, src: &[u8]) {
        let mut at = 0;
        for &(addr, len) in &self.segs[i * self.per..(i + 1) * self.per] {
            // SAFETY: valid and exclusive for `len` bytes per the contract.
            let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
            dst.copy_from_slice(&src[at..at + len]);
            at += len;
        }
    }
}
