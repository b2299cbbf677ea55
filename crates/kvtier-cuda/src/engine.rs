//! The CUDA copy engine: streams, one event per transfer, a waiter thread per
//! stream bridging event completion to the [`Transfer`] future.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use cudarc::driver::{
    result, sys, CudaEvent, CudaFunction, CudaStream, LaunchConfig, PushKernelArg,
};
use kvtier_memory::{
    lock_and_plan, BlockMemory, CopyEngine, CopyError, CopyResult, Memory, MemoryKind, Part,
    Region, Transfer,
};
use parking_lot::Mutex;

use crate::error::CudaError;
use crate::kernels::{compile_kernel, BLOCK_COPY_FN, BLOCK_COPY_SRC};
use crate::memory::CudaDevice;

/// How a batch's regions are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyStrategy {
    /// `cuMemcpyAsync` per region for few or large regions, the batched-copy
    /// kernel for many small ones (when both sides are device-addressable).
    #[default]
    Auto,
    /// Always one `cuMemcpyAsync` per (merged) region.
    Memcpy,
    /// Always the batched-copy kernel (needs device-addressable memory on both
    /// sides: device memory or CUDA pinned memory).
    Kernel,
}

/// Auto strategy: at least this many regions...
pub const KERNEL_MIN_REGIONS: usize = 32;
/// ... with a mean size below this many bytes go to the kernel.
pub const KERNEL_MAX_MEAN_BYTES: usize = 256 << 10;

type Waiting = (CudaEvent, Part);

struct Lane {
    stream: Arc<CudaStream>,
    tx: Mutex<Option<crossbeam_channel::Sender<Waiting>>>,
    waiter: Mutex<Option<JoinHandle<()>>>,
}

/// Copies between device memory and host-addressable memory (pinned, host,
/// mock) and device <-> device on a GPU. Each transfer is enqueued on one of
/// the engine's streams (round robin), followed by a fresh event; the stream's
/// waiter thread blocks in `cuEventSynchronize` (blocking-sync event, no
/// spinning, no polling interval) and then completes the transfer.
pub struct CudaCopyEngine {
    dev: CudaDevice,
    lanes: Vec<Lane>,
    next: AtomicUsize,
    strategy: CopyStrategy,
    kernel: OnceLock<Result<CudaFunction, CudaError>>,
}

impl CudaCopyEngine {
    /// An engine with `streams` streams (at least 1) on `dev`.
    pub fn new(
        dev: &CudaDevice,
        streams: usize,
        strategy: CopyStrategy,
    ) -> Result<Self, CudaError> {
        dev.bind()?;
        let mut lanes = Vec::new();
        for i in 0..streams.max(1) {
            let stream = dev
                .context()
                .new_stream()
                .map_err(CudaError::driver("cuStreamCreate"))?;
            let (tx, rx) = crossbeam_channel::unbounded::<Waiting>();
            let ctx = dev.clone();
            let waiter = std::thread::Builder::new()
                .name(format!("kvtier-cuda-wait-{i}"))
                .spawn(move || {
                    let bound = ctx.bind();
                    while let Ok((ev, part)) = rx.recv() {
                        let r = match &bound {
                            Ok(()) => ev
                                .synchronize()
                                .map_err(|e| CopyError::Cuda(format!("cuEventSynchronize: {e}"))),
                            Err(e) => Err(CopyError::Cuda(e.to_string())),
                        };
                        part.finish(r);
                        drop(ev);
                    }
                })
                .map_err(|e| CudaError::Driver {
                    call: "spawn waiter",
                    msg: e.to_string(),
                })?;
            lanes.push(Lane {
                stream,
                tx: Mutex::new(Some(tx)),
                waiter: Mutex::new(Some(waiter)),
            });
        }
        Ok(Self {
            dev: dev.clone(),
            lanes,
            next: AtomicUsize::new(0),
            strategy,
            kernel: OnceLock::new(),
        })
    }

    /// The batched-copy kernel, compiled by NVRTC on first use.
    pub fn kernel(&self) -> Result<&CudaFunction, CudaError> {
        self.kernel
            .get_or_init(|| {
                let ptx = compile_kernel("block_copy.cu", BLOCK_COPY_SRC)?;
                let module = self
                    .dev
                    .context()
                    .load_module(ptx)
                    .map_err(CudaError::driver("cuModuleLoadData"))?;
                module
                    .load_function(BLOCK_COPY_FN)
                    .map_err(CudaError::driver("cuModuleGetFunction"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn enqueue_memcpy(
        stream: &CudaStream,
        src: Side,
        dst: Side,
        regions: &[Region],
    ) -> Result<(), CopyError> {
        let s = stream.cu_stream();
        for r in regions {
            let len = r.len;
            // SAFETY: addresses come from live memories held by the batch
            // guard until the transfer's event completed; regions are inside
            // both layouts.
            let rc = unsafe {
                match (src, dst) {
                    (Side::Host(h), Side::Dev(d)) => sys::cuMemcpyHtoDAsync_v2(
                        d + r.dst as u64,
                        (h + r.src as u64) as *const _,
                        len,
                        s,
                    ),
                    (Side::Dev(d), Side::Host(h)) => sys::cuMemcpyDtoHAsync_v2(
                        (h + r.dst as u64) as *mut _,
                        d + r.src as u64,
                        len,
                        s,
                    ),
                    (Side::Dev(a), Side::Dev(b)) => {
                        sys::cuMemcpyDtoDAsync_v2(b + r.dst as u64, a + r.src as u64, len, s)
                    }
                    (Side::Host(_), Side::Host(_)) => sys::CUresult::CUDA_ERROR_NOT_SUPPORTED,
                }
            };
            rc.result()
                .map_err(|e| CopyError::Cuda(format!("cuMemcpyAsync: {e}")))?;
        }
        Ok(())
    }

    fn enqueue_kernel(
        &self,
        stream: &Arc<CudaStream>,
        src: u64,
        dst: u64,
        regions: &[Region],
        desc: &mut Vec<u64>,
    ) -> Result<(), CopyError> {
        let func = self.kernel().map_err(CopyError::from)?;
        let n = regions.len();
        desc.clear();
        desc.extend(regions.iter().map(|r| src + r.src as u64));
        desc.extend(regions.iter().map(|r| dst + r.dst as u64));
        desc.extend(regions.iter().map(|r| r.len as u64));
        let bytes = std::mem::size_of_val(desc.as_slice());
        let s = stream.cu_stream();
        let cu = |call: &'static str| {
            move |e: cudarc::driver::DriverError| CopyError::Cuda(format!("{call}: {e}"))
        };
        // SAFETY: stream is live; the buffer is used only on this stream and
        // freed (stream-ordered) after the launch; `desc` is kept alive by the
        // transfer until the event completed.
        unsafe {
            let buf = result::malloc_async(s, bytes).map_err(cu("cuMemAllocAsync"))?;
            let res = (|| -> Result<(), CopyError> {
                result::memcpy_htod_async(buf, desc.as_slice(), s)
                    .map_err(cu("cuMemcpyHtoDAsync"))?;
                let srcs = buf;
                let dsts = buf + (n * 8) as u64;
                let lens = buf + (2 * n * 8) as u64;
                let n32 = u32::try_from(n)
                    .map_err(|_| CopyError::Cuda("too many regions for one launch".into()))?;
                let cfg = LaunchConfig {
                    grid_dim: (n32.clamp(1, 65_535), 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = stream.launch_builder(func);
                b.arg(&srcs).arg(&dsts).arg(&lens).arg(&n32);
                b.launch(cfg).map_err(cu("cuLaunchKernel"))?;
                Ok(())
            })();
            result::free_async(buf, s).map_err(cu("cuMemFreeAsync"))?;
            res
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Host(u64),
    Dev(u64),
}

fn side(m: &Arc<dyn BlockMemory>) -> Option<Side> {
    if m.kind() == MemoryKind::Device {
        return m.device_ptr().map(Side::Dev);
    }
    // SAFETY: only the address is read; it is used under the batch guard.
    unsafe { m.engine_host_ptr() }.map(|p| Side::Host(p.as_ptr() as u64))
}

impl CopyEngine for CudaCopyEngine {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn copy_blocks(&self, src: &Memory, dst: &Memory, pairs: &[(usize, usize)]) -> CopyResult {
        let unsupported = || CopyError::unsupported("cuda", src, dst);
        let (s, d) = match (side(src), side(dst)) {
            (Some(s), Some(d)) if matches!(s, Side::Dev(_)) || matches!(d, Side::Dev(_)) => (s, d),
            _ => return Err(unsupported()),
        };
        let Some((guard, plan)) = lock_and_plan(src, dst, pairs)? else {
            return Ok(Transfer::ready(Ok(())));
        };
        self.dev.bind().map_err(CopyError::from)?;
        let lane = &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        let dev_addr = |m: &Arc<dyn BlockMemory>| m.device_ptr();
        let kernel_ok = dev_addr(src).is_some() && dev_addr(dst).is_some();
        let many_small = plan.regions.len() >= KERNEL_MIN_REGIONS
            && plan.total_bytes / plan.regions.len() < KERNEL_MAX_MEAN_BYTES;
        let use_kernel = match self.strategy {
            CopyStrategy::Memcpy => false,
            CopyStrategy::Kernel => {
                if !kernel_ok {
                    return Err(unsupported());
                }
                true
            }
            CopyStrategy::Auto => kernel_ok && many_small && self.kernel().is_ok(),
        };
        let mut desc: Vec<u64> = Vec::new();
        let enq = match (use_kernel, dev_addr(src), dev_addr(dst)) {
            (true, Some(sa), Some(da)) => {
                self.enqueue_kernel(&lane.stream, sa, da, &plan.regions, &mut desc)
            }
            _ => Self::enqueue_memcpy(&lane.stream, s, d, &plan.regions),
        };
        // Whatever was enqueued must finish before the guard releases the
        // blocks, so an enqueue error still goes through the event.
        let (t, part) = Transfer::new(plan.total_bytes as u64, Box::new((guard, desc)));
        let ev = self
            .dev
            .context()
            .new_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
            .and_then(|ev| ev.record(&lane.stream).map(|_| ev));
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // No event: wait for the stream here, then report.
                let sync = lane.stream.synchronize();
                let err = enq
                    .err()
                    .unwrap_or_else(|| CopyError::Cuda(format!("cuEventRecord: {e}")));
                part.finish(match sync {
                    Ok(()) => Err(err),
                    Err(se) => Err(CopyError::Cuda(format!("cuStreamSynchronize: {se}"))),
                });
                return Ok(t);
            }
        };
        if let Err(e) = enq {
            // The waiter still releases the guard only after what was enqueued
            // ran; the transfer reports the enqueue error.
            part.split().finish(Err(e));
        }
        let tx = lane.tx.lock();
        match tx.as_ref() {
            Some(tx) => tx.send((ev, part)).map_err(|_| CopyError::Aborted)?,
            None => return Err(CopyError::Aborted),
        }
        Ok(t)
    }
}

impl Drop for CudaCopyEngine {
    fn drop(&mut self) {
        for lane in &self.lanes {
            lane.tx.lock().take();
            if let Some(w) = lane.waiter.lock().take() {
                let _ = w.join();
            }
        }
    }
}
