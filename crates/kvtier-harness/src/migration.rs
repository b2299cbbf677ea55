//! The tier-migration benchmark, as a module the `kvtier bench`
//! command calls ([`run`]).
//!
//! For every tier pair available it measures the bandwidth of the real copy
//! engines over block sizes and batch sizes and prints each figure beside a
//! ceiling measured in the same run on the same bytes:
//!
//! * G1 <-> G2 (mock device <-> host, [`kvtier_memory::MemcpyEngine`]): the
//!   memories hold a working set well beyond the last-level cache (8x it, at
//!   least 256 MiB) and every timed batch moves a different window of it, so
//!   no batch is served from the CPU cache; the ceiling is the all-core
//!   memcpy bandwidth over the same working-set size, measured once in the
//!   run ([`crate::ceiling::memcpy_bandwidth_all_cores`]).
//!   With CUDA, G1 <-> G2 is pinned <-> device through
//!   [`kvtier_cuda::CudaCopyEngine`], against one contiguous copy of the same
//!   bytes.
//! * G2 <-> G3 (host <-> disk, [`kvtier_disk::DiskCopyEngine`], both I/O modes):
//!   the ceiling is raw sequential file I/O of the same bytes in the same mode
//!   (O_DIRECT `pwrite`/`pread` in 8 MiB chunks, or `memcpy` through a mapping
//!   plus `msync`). Reads are cold: the file's pages are dropped from the page
//!   cache before each read.
//! * G1 <-> G3 via G2: both hops back to back, against the disk ceiling.
//!
//! Block pairs are scattered (block `i` goes to block `batch - 1 - i`), so no
//! two blocks merge into one region copy.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use kvtier_cuda::{CopyStrategy, CudaCopyEngine, CudaDevice, DeviceMemory, PinnedMemory};
use kvtier_disk::{DiskCopyEngine, DiskIo, DiskMemory, OpenMode};
use kvtier_memory::{
    AlignedBuf, BlockMemory, BlockShape, CopyEngine, HostMemory, Layout, LayoutKind, MemcpyEngine,
    MockDeviceMemory, PAGE_SIZE,
};
use serde::Serialize;

/// Arguments of the tier-migration benchmark (`kvtier bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model shape of a block: tiny, llama3-8b, llama3-70b.
    #[arg(long, default_value = "llama3-8b")]
    pub model: String,
    /// Tokens per block, comma separated; each is one block size
    /// (llama3-8b: 1 token = 128 KiB, 16 tokens = 2 MiB).
    #[arg(long = "block-tokens", value_delimiter = ',', default_values_t = vec![1usize, 16])]
    pub block_tokens: Vec<usize>,
    /// Blocks per batch, comma separated.
    #[arg(long = "batch", value_delimiter = ',', default_values_t = vec![1usize, 8, 64])]
    pub batches: Vec<usize>,
    /// Block layout of every memory: contiguous or layer-separate.
    #[arg(long, default_value = "contiguous")]
    pub layout: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Directory for the disk-tier files (default: the system temp dir).
    /// Only files named `kvtier-bench-<pid>-*` are created there, and removed.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Quick run: one block size (16 tokens), one batch size (64), short timings.
    #[arg(long)]
    pub quick: bool,
    /// Copy-engine worker threads (default: available cores, at most 8).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds spent on each measurement (median of the iterations).
    #[arg(long, default_value_t = 0.25)]
    pub seconds: f64,
    /// Skip configurations whose batch is larger than this many MiB.
    #[arg(long = "max-mib", default_value_t = 1024)]
    pub max_mib: usize,
}

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    args: BenchArgs,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Wrap::parse_from(["kvtier-bench"]).args
    }
}

impl BenchArgs {
    /// Parses benchmark arguments from an iterator (first item: program name).
    pub fn parse_from<I, T>(it: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Wrap::try_parse_from(it)?.args)
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Tier pair, e.g. `G1->G2`.
    pub pair: String,
    /// Memories and engine, e.g. `mock->host memcpy`.
    pub path: String,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Blocks per batch.
    pub batch: usize,
    /// Measured bandwidth, GB/s (1e9 bytes per second).
    pub gbps: f64,
    /// Ceiling measured in the same run on the same bytes, GB/s.
    pub ceiling_gbps: f64,
    /// `gbps / ceiling_gbps`.
    pub ratio: f64,
    /// What the ceiling is.
    pub ceiling: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Cores available to the process.
    pub cores: usize,
    /// Copy-engine worker threads.
    pub threads: usize,
    /// GPU status: `"none: <reason>"` or `"gpu <ordinal>"`.
    pub gpu: String,
    /// Whether the disk directory accepted O_DIRECT.
    pub disk_o_direct: bool,
    /// Layout used.
    pub layout: String,
    /// Rows.
    pub rows: Vec<Row>,
}

/// Runs the benchmark and prints the table (or JSON with `--json`). A
/// closed or full standard output is an error, not a panic.
pub fn run(args: &BenchArgs) -> Result<()> {
    use std::io::Write;
    let mut failed: Option<std::io::Error> = None;
    let report = measure(args, &mut |line| {
        if !args.json && failed.is_none() {
            if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
                failed = Some(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(anyhow::Error::new(e).context("cannot write to standard output"));
    }
    if args.json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string(&report)?
        )
        .context("cannot write to standard output")?;
    }
    Ok(())
}

/// Refuse arguments that would make a figure meaningless (an empty batch
/// moves nothing, so any bandwidth printed for it would be noise).
fn check_args(args: &BenchArgs) -> Result<()> {
    if let Some(b) = args.batches.iter().find(|b| **b == 0) {
        bail!("--batch {b}: a batch moves at least 1 block");
    }
    if let Some(t) = args.block_tokens.iter().find(|t| **t == 0) {
        bail!("--block-tokens {t}: a block holds at least 1 token");
    }
    if args.batches.is_empty() || args.block_tokens.is_empty() {
        bail!("--batch and --block-tokens need at least one value each");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!(
            "--seconds {}: give a positive number of seconds",
            args.seconds
        );
    }
    if args.threads == Some(0) {
        bail!("--threads 0: at least 1 copy-engine thread");
    }
    if args.max_mib == 0 {
        bail!("--max-mib 0 skips every configuration");
    }
    Ok(())
}

/// `batch`-block windows of a working set of `windows * batch` blocks, each
/// scattered within itself: window `w` maps block `w*batch + i` to
/// `w*batch + batch - 1 - i`.
fn windows(batch: usize, windows: usize) -> Vec<Vec<(usize, usize)>> {
    (0..windows)
        .map(|w| {
            scattered(batch)
                .into_iter()
                .map(|(a, b)| (w * batch + a, w * batch + b))
                .collect()
        })
        .collect()
}

struct Timer {
    seconds: f64,
}

impl Timer {
    /// Median seconds of `f`, after one warm-up; `setup` runs untimed before
    /// each call.
    fn time(
        &self,
        mut setup: impl FnMut() -> Result<()>,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<f64> {
        setup()?;
        f()?;
        let start = Instant::now();
        let mut v = Vec::new();
        while v.len() < 3 || (start.elapsed().as_secs_f64() < self.seconds && v.len() < 10_000) {
            setup()?;
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64());
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2].max(1e-9))
    }
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn scattered(batch: usize) -> Vec<(usize, usize)> {
    (0..batch).map(|i| (i, batch - 1 - i)).collect()
}

fn copy(
    engine: &dyn CopyEngine,
    src: &Arc<dyn BlockMemory>,
    dst: &Arc<dyn BlockMemory>,
    pairs: &[(usize, usize)],
) -> Result<()> {
    engine.copy_blocks(src, dst, pairs)?.wait()?;
    Ok(())
}

struct Files {
    dir: PathBuf,
    made: Vec<PathBuf>,
}

impl Files {
    fn path(&mut self, name: &str) -> PathBuf {
        let p = self
            .dir
            .join(format!("kvtier-bench-{}-{name}", std::process::id()));
        self.made.push(p.clone());
        p
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for p in &self.made {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Raw sequential file I/O ceiling on a preallocated scratch file.
struct RawFile {
    disk: DiskMemory,
    direct: Option<std::fs::File>,
    buf: AlignedBuf,
    map: memmap2::MmapRaw,
}

const RAW_CHUNK: usize = 8 << 20;

impl RawFile {
    fn new(path: &Path, layout: Layout) -> Result<Self> {
        let disk = DiskMemory::open(path, layout, OpenMode::CreateNew)?;
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let map = memmap2::MmapRaw::map_raw(&file)?;
        let mut buf = AlignedBuf::zeroed(layout.total_bytes(), PAGE_SIZE)?;
        buf.as_mut_slice()
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        Ok(Self {
            disk,
            direct,
            buf,
            map,
        })
    }

    fn pio_file(&self) -> Result<std::fs::File> {
        match &self.direct {
            Some(f) => Ok(f.try_clone()?),
            None => Ok(OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.disk.path())?),
        }
    }

    fn write(&self, io: DiskIo) -> Result<()> {
        match io {
            DiskIo::Direct => {
                let f = self.pio_file()?;
                for (i, c) in self.buf.as_slice().chunks(RAW_CHUNK).enumerate() {
                    f.write_all_at(c, (i * RAW_CHUNK) as u64)?;
                }
            }
            DiskIo::Mmap => {
                let n = self.buf.len();
                // SAFETY: the mapping covers the preallocated file of n bytes;
                // nothing else maps it in this process during the copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.buf.as_slice().as_ptr(),
                        self.map.as_mut_ptr(),
                        n,
                    )
                };
                self.map.flush()?;
            }
        }
        Ok(())
    }

    fn read(&self, io: DiskIo) -> Result<()> {
        // SAFETY: the buffer is owned by self and only touched by this
        // single-threaded benchmark; no other reference to its bytes is live.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr().as_ptr(), self.buf.len()) };
        match io {
            DiskIo::Direct => {
                let f = self.pio_file()?;
                for (i, c) in buf.chunks_mut(RAW_CHUNK).enumerate() {
                    f.read_exact_at(c, (i * RAW_CHUNK) as u64)?;
                }
            }
            DiskIo::Mmap => {
                // SAFETY: the mapping covers the file of buf.len() bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.map.as_ptr(), buf.as_mut_ptr(), buf.len())
                };
            }
        }
        Ok(())
    }

    fn drop_cache(&self) -> Result<()> {
        // SAFETY: our own shared file mapping.
        unsafe {
            libc::madvise(
                self.map.as_mut_ptr() as *mut libc::c_void,
                self.map.len(),
                libc::MADV_DONTNEED,
            );
        }
        self.disk.drop_cache()?;
        Ok(())
    }
}

/// Runs every measurement, reporting progress lines to `out`; returns the
/// report (what `--json` prints).
pub fn measure(args: &BenchArgs, out: &mut dyn FnMut(&str)) -> Result<Report> {
    check_args(args)?;
    let shape0 = BlockShape::preset(&args.model)
        .with_context(|| format!("unknown model preset {:?}", args.model))?;
    let kind = match args.layout.as_str() {
        "contiguous" => LayoutKind::FullyContiguous,
        "layer-separate" | "layer_separate" => LayoutKind::LayerSeparate,
        other => bail!("unknown layout {other:?} (contiguous or layer-separate)"),
    };
    let (block_tokens, batches, seconds) = if args.quick {
        (vec![16], vec![64], args.seconds.min(0.1))
    } else {
        (
            args.block_tokens.clone(),
            args.batches.clone(),
            args.seconds,
        )
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = args.threads.unwrap_or(cores.clamp(1, 8));
    let timer = Timer { seconds };
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    if !dir.is_dir() {
        bail!("--dir {} is not a directory", dir.display());
    }
    let mut files = Files {
        dir,
        made: Vec::new(),
    };

    let gpu = CudaDevice::open(0);
    let gpu_status = match &gpu {
        Ok(d) => format!("gpu {}", d.ordinal()),
        Err(e) => format!("none: {e}"),
    };
    if gpu.is_err() {
        out(&format!(
            "no GPU found ({gpu_status}); G1 is mock device memory"
        ));
    }
    let memcpy = MemcpyEngine::new(threads)?;
    // The machine's memory bandwidth: every core copying a working set no
    // cache holds. Host-side figures are compared with it.
    let ws_bytes = crate::ceiling::beyond_cache_bytes();
    let all_core = crate::ceiling::memcpy_bandwidth_all_cores(ws_bytes, cores);
    let all_core_desc = format!("{cores}-core memcpy, {} MiB set", ws_bytes >> 20);
    out(&format!(
        "memory ceiling: {:.2} GB/s ({all_core_desc}); host-side paths cycle through a {} MiB working set",
        all_core / 1e9,
        ws_bytes >> 20
    ));
    let disk_direct = DiskCopyEngine::new(DiskIo::Direct, threads)?;
    let disk_mmap = DiskCopyEngine::new(DiskIo::Mmap, threads)?;
    let cuda = match &gpu {
        Ok(d) => Some(CudaCopyEngine::new(d, 2, CopyStrategy::Auto)?),
        Err(_) => None,
    };
    out(&format!(
        "tier migration: model {}, layout {}, {threads} engine threads, {cores} cores, dir {}",
        args.model,
        args.layout,
        files.dir.display()
    ));
    out(&format!(
        "{:<8} {:<28} {:>10} {:>6} {:>9} {:>9} {:>6}  ceiling",
        "pair", "path", "block", "batch", "GB/s", "ceil GB/s", "ratio"
    ));
    let mut rows = Vec::new();
    let mut o_direct = false;
    for &tokens in &block_tokens {
        let shape = shape0.with_block_size(tokens);
        for &batch in &batches {
            let layout = Layout::new(shape, kind, batch.max(1))?;
            let bytes = layout.total_bytes();
            if bytes > args.max_mib << 20 {
                out(&format!(
                    "skipping {tokens} tokens x {batch} blocks: {bytes} bytes > --max-mib"
                ));
                continue;
            }
            let bb = layout.block_bytes();
            let pairs = scattered(batch);
            let mut push = |pair: &str, path: &str, secs: f64, ceil_secs: f64, ceiling: &str| {
                let g = gbps(bytes, secs);
                let c = gbps(bytes, ceil_secs);
                let row = Row {
                    pair: pair.into(),
                    path: path.into(),
                    block_bytes: bb,
                    batch,
                    gbps: g,
                    ceiling_gbps: c,
                    ratio: g / c,
                    ceiling: ceiling.into(),
                };
                out(&format!(
                    "{:<8} {:<28} {:>10} {:>6} {:>9.2} {:>9.2} {:>6.2}  {}",
                    row.pair,
                    row.path,
                    row.block_bytes,
                    row.batch,
                    row.gbps,
                    row.ceiling_gbps,
                    row.ratio,
                    row.ceiling
                ));
                rows.push(row);
            };

            let host: Arc<dyn BlockMemory> = Arc::new(HostMemory::new(layout)?);
            // G1 <-> G2
            match (&gpu, &cuda) {
                (Ok(dev), Some(ce)) => {
                    let pinned: Arc<dyn BlockMemory> =
                        Arc::new(PinnedMemory::new(Some(dev), layout)?);
                    let d: Arc<dyn BlockMemory> = Arc::new(DeviceMemory::new(dev, layout)?);
                    let cl = Layout::contiguous(shape, batch.max(1))?;
                    let pc: Arc<dyn BlockMemory> = Arc::new(PinnedMemory::new(Some(dev), cl)?);
                    let dc: Arc<dyn BlockMemory> = Arc::new(DeviceMemory::new(dev, cl)?);
                    let ident: Vec<_> = (0..batch).map(|i| (i, i)).collect();
                    let c_up = timer.time(|| Ok(()), || copy(ce, &pc, &dc, &ident))?;
                    let c_down = timer.time(|| Ok(()), || copy(ce, &dc, &pc, &ident))?;
                    let up = timer.time(|| Ok(()), || copy(ce, &pinned, &d, &pairs))?;
                    push(
                        "G2->G1",
                        "pinned->device cuda",
                        up,
                        c_up,
                        "one contiguous H2D copy",
                    );
                    let down = timer.time(|| Ok(()), || copy(ce, &d, &pinned, &pairs))?;
                    push(
                        "G1->G2",
                        "device->pinned cuda",
                        down,
                        c_down,
                        "one contiguous D2H copy",
                    );
                }
                _ => {
                    // A working set no cache holds; each timed batch is the
                    // next window of it.
                    let n = ws_bytes.div_ceil(bb).max(batch).div_ceil(batch);
                    let big = Layout::new(shape, kind, n * batch)?;
                    let wins = windows(batch, n);
                    let mock: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(big)?);
                    let hbig: Arc<dyn BlockMemory> = Arc::new(HostMemory::new(big)?);
                    // Touch every page once so no first-touch fault is timed.
                    copy(&memcpy, &mock, &hbig, &windows(n * batch, 1)[0])?;
                    copy(&memcpy, &hbig, &mock, &windows(n * batch, 1)[0])?;
                    let ceil_secs = bytes as f64 / all_core;
                    let mut k = 0usize;
                    for (path, what, src, dst) in [
                        ("G1->G2", "mock->host memcpy", &mock, &hbig),
                        ("G2->G1", "host->mock memcpy", &hbig, &mock),
                    ] {
                        let t = timer.time(
                            || Ok(()),
                            || {
                                k += 1;
                                copy(&memcpy, src, dst, &wins[k % n])
                            },
                        )?;
                        push(path, what, t, ceil_secs, &all_core_desc);
                    }
                }
            }

            // G2 <-> G3, both modes.
            let raw = RawFile::new(&files.path(&format!("raw-{tokens}-{batch}")), layout)?;
            let disk_m = DiskMemory::open(
                files.path(&format!("g3-{tokens}-{batch}")),
                layout,
                OpenMode::CreateNew,
            )?;
            o_direct |= disk_m.is_direct();
            let disk_m = Arc::new(disk_m);
            let disk: Arc<dyn BlockMemory> = disk_m.clone();
            for (io, engine, name) in [
                (DiskIo::Direct, &disk_direct, "pio"),
                (DiskIo::Mmap, &disk_mmap, "mmap"),
            ] {
                let (wdesc, rdesc) = match io {
                    DiskIo::Direct if disk_m.is_direct() => {
                        ("O_DIRECT pwrite 8 MiB seq", "O_DIRECT pread 8 MiB seq")
                    }
                    DiskIo::Direct => ("buffered pwrite 8 MiB seq", "buffered pread 8 MiB seq"),
                    DiskIo::Mmap => ("mmap memcpy + msync", "mmap memcpy, cold"),
                };
                let c_w = timer.time(|| Ok(()), || raw.write(io))?;
                let w = timer.time(
                    || Ok(()),
                    || {
                        copy(engine, &host, &disk, &pairs)?;
                        if io == DiskIo::Mmap {
                            disk_m.flush()?;
                        }
                        Ok(())
                    },
                )?;
                push("G2->G3", &format!("host->disk {name}"), w, c_w, wdesc);
                let c_r = timer.time(|| raw.drop_cache(), || raw.read(io))?;
                let r = timer.time(
                    || Ok(disk_m.drop_cache()?),
                    || copy(engine, &disk, &host, &pairs),
                )?;
                push("G3->G2", &format!("disk->host {name}"), r, c_r, rdesc);
            }

            // G1 <-> G3 via G2 (default disk mode), CPU-only path.
            if cuda.is_none() {
                let mock: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(layout)?);
                // `first` copies `src` into host memory, `second` from there to `dst`.
                let via_host = |first: &dyn CopyEngine, src, second: &dyn CopyEngine, dst| {
                    copy(first, src, &host, &pairs)?;
                    copy(second, &host, dst, &pairs)
                };
                let c_w = timer.time(|| Ok(()), || raw.write(DiskIo::Direct))?;
                let w = timer.time(|| Ok(()), || via_host(&memcpy, &mock, &disk_direct, &disk))?;
                let (path, ceiling) = ("mock->host->disk pio", "raw pwrite (same mode)");
                push("G1->G3", path, w, c_w, ceiling);
                let c_r = timer.time(|| raw.drop_cache(), || raw.read(DiskIo::Direct))?;
                let r = timer.time(
                    || Ok(disk_m.drop_cache()?),
                    || via_host(&disk_direct, &disk, &memcpy, &mock),
                )?;
                let (path, ceiling) = ("disk->host->mock pio", "raw pread (same mode)");
                push("G3->G1", path, r, c_r, ceiling);
            }
        }
    }
    Ok(Report {
        cores,
        threads,
        gpu: gpu_status,
        disk_o_direct: o_direct,
        layout: args.layout.clone(),
        rows,
    })
}
