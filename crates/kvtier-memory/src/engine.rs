//! Copy engines: the [`CopyEngine`] trait, copy planning (merging runs of
//! adjacent block ids into one region copy), batch locking, and the
//! [`MemcpyEngine`] that moves bytes between host-addressable memories (mock
//! device, host, pinned host, mmap'd disk) with worker threads.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::CopyError;
use crate::layout::{Layout, LayoutKind};
use crate::memory::{BlockMemory, PAGE_SIZE};
use crate::transfer::{Part, Transfer};

/// One byte-range copy: `len` bytes from `src` offset to `dst` offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset in the source region.
    pub src: usize,
    /// Offset in the destination region.
    pub dst: usize,
    /// Bytes.
    pub len: usize,
}

/// The byte copies of a batch, after merging adjacent runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyPlan {
    /// Region copies, merged.
    pub regions: Vec<Region>,
    /// Total bytes.
    pub total_bytes: usize,
}

fn check_pairs(src: &Layout, dst: &Layout, pairs: &[(usize, usize)]) -> Result<(), CopyError> {
    if src.shape() != dst.shape() {
        return Err(CopyError::ShapeMismatch);
    }
    for &(s, d) in pairs {
        for (b, l) in [(s, src), (d, dst)] {
            if b >= l.num_blocks() {
                return Err(crate::error::LayoutError::BlockOutOfRange {
                    block: b,
                    num_blocks: l.num_blocks(),
                }
                .into());
            }
        }
    }
    let mut ds: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    ds.sort_unstable();
    if let Some(w) = ds.windows(2).find(|w| w[0] == w[1]) {
        return Err(CopyError::DuplicateDestination(w[0]));
    }
    Ok(())
}

/// Plans the region copies for `pairs` (`(src block, dst block)`), merging runs
/// where consecutive source blocks go to consecutive destination blocks into a
/// single region copy (per layer for layer-separate layouts). Works across
/// layouts (contiguous <-> layer-separate is a per-layer scatter/gather).
pub fn plan_copy(
    src: &Layout,
    dst: &Layout,
    pairs: &[(usize, usize)],
) -> Result<CopyPlan, CopyError> {
    check_pairs(src, dst, pairs)?;
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    let mut regions: Vec<Region> = Vec::new();
    let mut push = |r: Region| {
        if let Some(last) = regions.last_mut() {
            if last.src + last.len == r.src && last.dst + last.len == r.dst {
                last.len += r.len;
                return;
            }
        }
        regions.push(r);
    };
    let both_contig =
        src.kind() == LayoutKind::FullyContiguous && dst.kind() == LayoutKind::FullyContiguous;
    if both_contig {
        let bb = src.block_bytes();
        for &(s, d) in &sorted {
            push(Region {
                src: s * bb,
                dst: d * bb,
                len: bb,
            });
        }
    } else {
        let lb = src.layer_block_bytes();
        for layer in 0..src.num_layers() {
            for &(s, d) in &sorted {
                push(Region {
                    src: src.layer_offset_unchecked(s, layer),
                    dst: dst.layer_offset_unchecked(d, layer),
                    len: lb,
                });
            }
        }
    }
    let total_bytes = regions.iter().map(|r| r.len).sum();
    Ok(CopyPlan {
        regions,
        total_bytes,
    })
}

/// Splits a plan into at most `parts` pieces of roughly equal bytes (none
/// smaller than `min_part` unless the plan is), splitting regions if needed.
/// Split points are multiples of [`PAGE_SIZE`] from the start of a region run
/// when parts exceed a page.
pub fn split_plan(plan: &CopyPlan, parts: usize, min_part: usize) -> Vec<Vec<Region>> {
    let parts = parts.max(1);
    let mut target = plan.total_bytes.div_ceil(parts).max(min_part).max(1);
    // Keep split points page-aligned (O_DIRECT engines need it).
    if target > PAGE_SIZE {
        target = target.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    }
    let mut out: Vec<Vec<Region>> = vec![Vec::new()];
    let mut cur = 0usize;
    for r in &plan.regions {
        let mut r = *r;
        while r.len > 0 {
            if cur == target {
                out.push(Vec::new());
                cur = 0;
            }
            let take = r.len.min(target - cur);
            if let Some(v) = out.last_mut() {
                v.push(Region {
                    src: r.src,
                    dst: r.dst,
                    len: take,
                });
            }
            cur += take;
            r.src += take;
            r.dst += take;
            r.len -= take;
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Holds the block locks of a batch (sources shared, destinations exclusive)
/// and the memories alive until dropped.
pub struct BatchGuard {
    src: Arc<dyn BlockMemory>,
    dst: Arc<dyn BlockMemory>,
    src_blocks: Vec<usize>,
    dst_blocks: Vec<usize>,
}

impl BatchGuard {
    /// Validates `pairs` and takes the block locks; fails with
    /// [`CopyError::Busy`] (taking nothing) on a conflict.
    pub fn acquire(
        src: &Arc<dyn BlockMemory>,
        dst: &Arc<dyn BlockMemory>,
        pairs: &[(usize, usize)],
    ) -> Result<BatchGuard, CopyError> {
        check_pairs(src.layout(), dst.layout(), pairs)?;
        let mut g = BatchGuard {
            src: src.clone(),
            dst: dst.clone(),
            src_blocks: Vec::with_capacity(pairs.len()),
            dst_blocks: Vec::with_capacity(pairs.len()),
        };
        for &(_, d) in pairs {
            locked(dst.locks().try_write(d), "destination", d)?;
            g.dst_blocks.push(d);
        }
        for &(s, _) in pairs {
            locked(src.locks().try_read(s), "source", s)?;
            g.src_blocks.push(s);
        }
        Ok(g)
    }

    /// Source memory.
    pub fn src(&self) -> &Arc<dyn BlockMemory> {
        &self.src
    }

    /// Destination memory.
    pub fn dst(&self) -> &Arc<dyn BlockMemory> {
        &self.dst
    }
}

/// `Ok` if the lock on `block` of `side` was taken, else the busy error.
fn locked(taken: bool, side: &'static str, block: usize) -> Result<(), CopyError> {
    if taken {
        Ok(())
    } else {
        Err(CopyError::Busy { side, block })
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        for &b in &self.src_blocks {
            self.src.locks().release_read(b);
        }
        for &b in &self.dst_blocks {
            self.dst.locks().release_write(b);
        }
    }
}

/// A block memory as the copy engines take it: shared, of any kind.
pub type Memory = Arc<dyn BlockMemory>;

/// What [`CopyEngine::copy_blocks`] returns: a started transfer, or why the
/// batch was refused.
pub type CopyResult = Result<Transfer, CopyError>;

/// Moves batches of blocks between two memories asynchronously.
pub trait CopyEngine: Send + Sync {
    /// Engine name (for errors and reports).
    fn name(&self) -> &'static str;

    /// Starts copying every `(src block, dst block)` pair of `pairs` from `src`
    /// to `dst`. Validation errors (bad ids, shape mismatch, duplicate
    /// destinations, busy blocks, unsupported kinds) are returned here; I/O
    /// errors come through the [`Transfer`]. Source blocks stay readable and
    /// destination blocks are locked until the transfer completes.
    fn copy_blocks(&self, src: &Memory, dst: &Memory, pairs: &[(usize, usize)]) -> CopyResult;
}

/// Lock the blocks of a batch ([`BatchGuard::acquire`]) and plan its copy
/// ([`plan_copy`]), the start of every engine's `copy_blocks`. `None` when
/// there is nothing to copy (the blocks are unlocked again).
pub fn lock_and_plan(
    src: &Arc<dyn BlockMemory>,
    dst: &Arc<dyn BlockMemory>,
    pairs: &[(usize, usize)],
) -> Result<Option<(BatchGuard, CopyPlan)>, CopyError> {
    let guard = BatchGuard::acquire(src, dst, pairs)?;
    let plan = plan_copy(src.layout(), dst.layout(), pairs)?;
    Ok((!plan.regions.is_empty()).then_some((guard, plan)))
}

/// Worker threads running copy jobs received on a channel: the execution
/// part shared by the memcpy and disk engines. Dropping the pool closes the
/// channel and joins the workers (jobs already queued still run).
pub struct WorkerPool<J: Send + 'static> {
    tx: Option<Sender<J>>,
    workers: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> WorkerPool<J> {
    /// `threads` workers (at least 1), named `{name}-{i}`, each calling `run`
    /// on every job it receives.
    pub fn new<F>(name: &str, threads: usize, run: F) -> Result<Self, CopyError>
    where
        F: Fn(J) + Clone + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::unbounded::<J>();
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx: Receiver<J> = rx.clone();
            let run = run.clone();
            let h = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        run(job);
                    }
                })
                .map_err(|e| CopyError::Io(format!("cannot spawn worker: {e}")))?;
            workers.push(h);
        }
        Ok(WorkerPool {
            tx: Some(tx),
            workers,
        })
    }

    /// Number of workers.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Split `plan` into at most one part per worker, each of at least
    /// `min_part` bytes ([`split_plan`]), send one job per part (built by
    /// `job` from the part's regions and its completion handle) and return
    /// the transfer that completes when every part has. `guard` is held
    /// until then.
    pub fn submit(
        &self,
        plan: &CopyPlan,
        min_part: usize,
        guard: BatchGuard,
        mut job: impl FnMut(Vec<Region>, Part) -> J,
    ) -> Result<Transfer, CopyError> {
        let (t, part) = Transfer::new(plan.total_bytes as u64, Box::new(guard));
        let tx = self.tx.as_ref().ok_or(CopyError::Aborted)?;
        for regions in split_plan(plan, self.threads(), min_part) {
            tx.send(job(regions, part.split()))
                .map_err(|_| CopyError::Aborted)?;
        }
        part.finish(Ok(()));
        Ok(t)
    }
}

impl<J: Send + 'static> Drop for WorkerPool<J> {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Copy every region from the memory at `src` to the memory at `dst`.
///
/// # Safety
/// Every region must lie inside both memories, which must stay alive and
/// must not overlap for the regions (the caller holds the batch's
/// [`BatchGuard`]: shared locks on the sources, exclusive on the
/// destinations).
unsafe fn copy_regions(src: *const u8, dst: *mut u8, regions: &[Region]) {
    for r in regions {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.add(r.src), dst.add(r.dst), r.len) };
    }
}

struct Job {
    src: usize,
    dst: usize,
    regions: Vec<Region>,
    part: Part,
}

/// Worker-thread memcpy engine between host-addressable memories: mock device
/// <-> host (the CPU-only G1 <-> G2 path), host <-> host, pinned <-> mock,
/// host <-> mmap'd disk. Large batches are split across the workers;
/// completion is signalled by the last worker, never polled.
pub struct MemcpyEngine {
    pool: WorkerPool<Job>,
    min_part: usize,
    inline_max: usize,
}

/// Below this many bytes a batch is not split across threads.
pub const DEFAULT_MIN_PART: usize = 1 << 20;

/// Batches of at most this many bytes are copied on the submitting thread
/// (the returned [`Transfer`] is already complete).
pub const DEFAULT_INLINE_MAX: usize = 256 << 10;

impl MemcpyEngine {
    /// An engine with `threads` workers (at least 1).
    pub fn new(threads: usize) -> Result<Self, CopyError> {
        let pool = WorkerPool::new("kvtier-memcpy", threads, |job: Job| {
            // SAFETY: the job's BatchGuard (kept alive by the Part) holds the
            // memories and the block locks; the regions were planned from
            // both layouts.
            unsafe { copy_regions(job.src as *const u8, job.dst as *mut u8, &job.regions) };
            job.part.finish(Ok(()));
        })?;
        Ok(Self {
            pool,
            min_part: DEFAULT_MIN_PART,
            inline_max: DEFAULT_INLINE_MAX,
        })
    }

    /// An engine with one worker per available core (1..=8).
    pub fn with_default_threads() -> Result<Self, CopyError> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self::new(n.clamp(1, 8))
    }

    /// Number of workers.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Sets the smallest part a batch is split into (bytes).
    pub fn set_min_part(&mut self, bytes: usize) {
        self.min_part = bytes.max(1);
    }

    /// Sets the largest batch copied inline on the submitting thread (0: never).
    pub fn set_inline_max(&mut self, bytes: usize) {
        self.inline_max = bytes;
    }
}

impl CopyEngine for MemcpyEngine {
    fn name(&self) -> &'static str {
        "memcpy"
    }

    fn copy_blocks(&self, src: &Memory, dst: &Memory, pairs: &[(usize, usize)]) -> CopyResult {
        // SAFETY: only the address is read here; it is used under the guard.
        let (sp, dp) = unsafe { (src.engine_host_ptr(), dst.engine_host_ptr()) };
        let (Some(sp), Some(dp)) = (sp, dp) else {
            return Err(CopyError::unsupported(self.name(), src, dst));
        };
        let Some((guard, plan)) = lock_and_plan(src, dst, pairs)? else {
            return Ok(Transfer::ready(Ok(())));
        };
        if plan.total_bytes <= self.inline_max {
            // Small batch: a thread hand-off costs more than the copy itself.
            // SAFETY: as in the workers (guard held until after the copy).
            unsafe { copy_regions(sp.as_ptr(), dp.as_ptr(), &plan.regions) };
            drop(guard);
            return Ok(Transfer::ready(Ok(())));
        }
        let (src, dst) = (sp.as_ptr() as usize, dp.as_ptr() as usize);
        self.pool
            .submit(&plan, self.min_part, guard, |regions, part| Job {
                src,
                dst,
                regions,
                part,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BlockShape;

    #[test]
    fn merges_adjacent_runs() {
        let c = Layout::contiguous(BlockShape::tiny(), 16).unwrap();
        let p = plan_copy(&c, &c, &[(3, 7), (1, 5), (2, 6), (9, 0)]).unwrap();
        assert_eq!(
            p.regions,
            vec![
                Region {
                    src: 512,
                    dst: 5 * 512,
                    len: 3 * 512
                },
                Region {
                    src: 9 * 512,
                    dst: 0,
                    len: 512
                }
            ]
        );
        let s = Layout::layer_separate(BlockShape::tiny(), 16).unwrap();
        let p = plan_copy(&s, &s, &[(1, 5), (2, 6)]).unwrap();
        assert_eq!(p.regions.len(), 2);
        assert_eq!(p.total_bytes, 1024);
        assert_eq!(
            plan_copy(&s, &s, &[(1, 5), (2, 5)]),
            Err(CopyError::DuplicateDestination(5))
        );
        let other = Layout::contiguous(BlockShape::llama3_8b(), 2).unwrap();
        assert_eq!(
            plan_copy(&s, &other, &[(0, 0)]),
            Err(CopyError::ShapeMismatch)
        );
    }

    #[test]
    fn split_covers_everything() {
        let c = Layout::contiguous(BlockShape::tiny(), 64).unwrap();
        let pairs: Vec<_> = (0..64).map(|i| (i, 63 - i)).collect();
        let p = plan_copy(&c, &c, &pairs).unwrap();
        let parts = split_plan(&p, 3, 1000);
        assert_eq!(parts.len(), 3);
        let sum: usize = parts.iter().flatten().map(|r| r.len).sum();
        assert_eq!(sum, p.total_bytes);
    }
}
