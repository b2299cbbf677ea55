//! Building a [`TieredCache`] from a [`Config`]: memories per tier, copy
//! engines, disk files.

use crate::config::{Config, ConfigError, MemoryChoice};
use kvtier_disk::{DiskCopyEngine, DiskIo, DiskMemory, OpenMode};
use kvtier_logical::{StoreConfig, Tier};
use kvtier_memory::{CopyEngine, HostMemory, Layout, MemcpyEngine, MockDeviceMemory};
use kvtier_offload::{CacheSetup, TierMemory, TierSetup, TieredCache};
use std::path::PathBuf;
use std::sync::Arc;

/// Errors building the cache.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A layout or memory could not be made.
    #[error("{tier}: {message}")]
    Memory {
        /// The tier.
        tier: Tier,
        /// What failed.
        message: String,
    },
    /// The offload engine refused the setup.
    #[error(transparent)]
    Offload(#[from] kvtier_offload::OffloadError),
    /// A copy engine could not start.
    #[error("copy engine: {0}")]
    Engine(String),
    /// A persistent G3 directory holds a journal written for another layout,
    /// salt, size or format (refused unless `reset_on_mismatch`).
    #[error("g3: {}: {error}", dir.display())]
    G3Mismatch {
        /// The directory.
        dir: PathBuf,
        /// What differs.
        error: kvtier_disk::journal::JournalError,
    },
}

/// How a persistent G3 directory is opened.
#[derive(Clone, Debug, Default)]
pub struct PersistOptions {
    /// Re-read every recovered block and check its checksum (`--verify full`);
    /// otherwise only the journal's record checksums are checked at start-up
    /// and each block is verified when it is onboarded.
    pub verify_full: bool,
    /// Discard a G3 directory written for another layout, salt or format
    /// instead of refusing it.
    pub reset_on_mismatch: bool,
    /// File receiving the acknowledged live-record count after every commit.
    pub ack_log: Option<PathBuf>,
}

/// What opening a persistent G3 directory found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecoveryReport {
    /// The directory.
    pub dir: String,
    /// True if the directory held no journal yet.
    pub created: bool,
    /// Live records found in the journal.
    pub recovered: u64,
    /// Blocks registered in G3 at start-up.
    pub restored: u64,
    /// Records lost to a torn tail.
    pub dropped_torn: u64,
    /// Records lost to corruption in the journal.
    pub dropped_corrupt: u64,
    /// Records whose block failed `--verify full`.
    pub dropped_verify: u64,
    /// Records dropped because the data file was missing.
    pub dropped_missing_data: u64,
    /// Why the directory was reset (`--g3-reset`), if it was.
    pub reset: Option<String>,
    /// `fast` (record checksums) or `full` (every block re-read).
    pub verify: String,
    /// Time to open, recover and verify.
    pub seconds: f64,
}

/// A built cache and what must live as long as it.
pub struct Built {
    /// The cache.
    pub cache: TieredCache,
    /// Temporary directory of the disk tier (removed on drop).
    pub temp_dir: Option<tempfile::TempDir>,
    /// Directory of the disk tier, if any.
    pub g3_dir: Option<PathBuf>,
    /// Memory kind per present tier.
    pub memories: Vec<(Tier, MemoryChoice)>,
    /// The persistent G3 journal, when G3 has a configured directory.
    pub journal: Option<Arc<crate::durable::DiskJournal>>,
    /// What start-up recovered from it.
    pub recovery: Option<RecoveryReport>,
}

fn default_memory(tier: Tier) -> MemoryChoice {
    match tier {
        Tier::G1 => MemoryChoice::Mock,
        Tier::G2 => MemoryChoice::Host,
        Tier::G3 => MemoryChoice::Disk,
    }
}

/// Build the cache `config` describes. With `data` false no memory is made
/// (logical-only replay). Must run inside a tokio runtime.
pub fn build(
    config: &Config,
    name: &str,
    data: bool,
    persist: &PersistOptions,
) -> Result<Built, SetupError> {
    let (shape, kind) = config.block_shape(name)?;
    let mut journal = None;
    let mut recovery = None;
    let mut g3_restored = Vec::new();
    let mut cuda_dev = None;
    let mut temp_dir = None;
    let mut g3_dir = None;
    let mut memories = Vec::new();
    let mut g1_is_cuda = false;
    let mut tiers: [Option<TierSetup>; 3] = [None, None, None];
    for tier in Tier::ALL {
        let tc = config.tier(tier);
        if tc.blocks == 0 {
            continue;
        }
        let choice = tc.memory.unwrap_or_else(|| default_memory(tier));
        let mem_err = |message: String| SetupError::Memory { tier, message };
        let memory = if !data {
            TierMemory::None
        } else {
            let layout = Layout::new(shape, kind, tc.blocks).map_err(|e| mem_err(e.to_string()))?;
            match (tier, choice) {
                (Tier::G1, MemoryChoice::Mock) => TierMemory::Device(Arc::new(
                    MockDeviceMemory::new(layout).map_err(|e| mem_err(e.to_string()))?,
                )),
                (Tier::G1, MemoryChoice::Cuda) => {
                    kvtier_cuda::probe_driver().map_err(|e| {
                        mem_err(format!("memory = \"cuda\" needs a CUDA GPU and driver: {e}"))
                    })?;
                    let dev = kvtier_cuda::CudaDevice::open(0).map_err(|e| mem_err(e.to_string()))?;
                    let m = kvtier_cuda::DeviceMemory::new(&dev, layout)
                        .map_err(|e| mem_err(e.to_string()))?;
                    cuda_dev = Some(dev);
                    g1_is_cuda = true;
                    TierMemory::Device(Arc::new(m))
                }
                (Tier::G1 | Tier::G2, MemoryChoice::Host) => TierMemory::Host(Arc::new(
                    HostMemory::new(layout).map_err(|e| mem_err(e.to_string()))?,
                )),
                (Tier::G1 | Tier::G2, MemoryChoice::Pinned) => TierMemory::Host(Arc::new(
                    kvtier_cuda::PinnedMemory::new_or_fallback(cuda_dev.as_ref(), layout)
                        .map_err(|e| mem_err(e.to_string()))?,
                )),
                (Tier::G3, MemoryChoice::Disk) => {
                    let dir = match &tc.path {
                        Some(p) => {
                            std::fs::create_dir_all(p).map_err(|e| {
                                mem_err(format!("cannot create disk tier directory {}: {e}", p.display()))
                            })?;
                            p.clone()
                        }
                        None => {
                            let t = tempfile::Builder::new()
                                .prefix("kvtier-g3-")
                                .tempdir()
                                .map_err(|e| mem_err(format!("cannot create a temporary directory: {e}")))?;
                            let p = t.path().to_path_buf();
                            temp_dir = Some(t);
                            p
                        }
                    };
                    let file = dir.join("g3.blocks");
                    let existed = file.exists();
                    let m = Arc::new(
                        DiskMemory::open(&file, layout, OpenMode::OpenOrCreate)
                            .map_err(|e| mem_err(e.to_string()))?,
                    );
                    if tc.path.is_some() {
                        let (j, rep, entries) =
                            open_persistent(&dir, config, shape, kind, tc.blocks, &m, existed, persist)?;
                        journal = Some(j);
                        recovery = Some(rep);
                        g3_restored = entries;
                    }
                    g3_dir = Some(dir);
                    TierMemory::Host(m)
                }
                (t, c) => {
                    return Err(mem_err(format!(
                        "memory = \"{}\" is not supported for {t} (G1: mock, cuda, host, pinned; G2: host, pinned; G3: disk)",
                        serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
                    )))
                }
            }
        };
        memories.push((tier, choice));
        tiers[tier.index()] = Some(TierSetup {
            store: StoreConfig::new(tier, tc.blocks).with_policy(tc.policy.unwrap_or_default()),
            memory,
        });
    }
    let threads = config.offload.threads.max(1);
    type Engine = Option<Arc<dyn CopyEngine>>;
    let (device_engine, disk_engine): (Engine, Engine) = if data {
        let device: Arc<dyn CopyEngine> = if g1_is_cuda {
            let dev = cuda_dev.as_ref().expect("opened with G1");
            Arc::new(
                kvtier_cuda::CudaCopyEngine::new(dev, threads, Default::default())
                    .map_err(|e| SetupError::Engine(e.to_string()))?,
            )
        } else {
            Arc::new(MemcpyEngine::new(threads).map_err(|e| SetupError::Engine(e.to_string()))?)
        };
        let io = match config.offload.disk_io {
            crate::config::DiskIoChoice::Direct => DiskIo::Direct,
            crate::config::DiskIoChoice::Mmap => DiskIo::Mmap,
        };
        let mut disk = DiskCopyEngine::new(io, config.offload.disk_threads.max(1))
            .map_err(|e| SetupError::Engine(e.to_string()))?;
        // Spread even small batches over the workers: several I/Os in flight
        // beat one thread's sequence of small positioned writes.
        disk.set_min_part(64 << 10);
        let disk: Arc<dyn CopyEngine> = Arc::new(disk);
        (Some(device), Some(disk))
    } else {
        (None, None)
    };
    let [g1, g2, g3] = tiers;
    let cache = TieredCache::new(CacheSetup {
        g1: g1.ok_or_else(|| ConfigError::Invalid {
            path: name.to_string(),
            message: "g1.blocks must be at least 1".into(),
        })?,
        g2,
        g3,
        device_engine,
        disk_engine,
        g1_to_g2: config.offload.g1_to_g2,
        g2_to_g3: config.offload.g2_to_g3,
        queue_depth: config.offload.queue_depth,
        staging_blocks: 512.min(config.g1.blocks.max(1)),
        clean_ahead: config.offload.clean_ahead,
        g3_journal: journal
            .clone()
            .map(|j| j as Arc<dyn kvtier_offload::G3Journal>),
        g3_restored,
    })?;
    if let (Some(r), Some(j)) = (&mut recovery, &journal) {
        r.restored = cache.restored().restored;
        let kept: Vec<_> = cache
            .store(Tier::G3)
            .map(|s| s.registered().into_iter().map(|(slot, _)| slot).collect())
            .unwrap_or_default();
        j.retain_slots(&kept);
    }
    Ok(Built {
        cache,
        temp_dir,
        g3_dir,
        memories,
        journal,
        recovery,
    })
}

/// Open the journal of a persistent G3 directory and recover its blocks.
#[allow(clippy::too_many_arguments)]
fn open_persistent(
    dir: &std::path::Path,
    config: &Config,
    shape: kvtier_memory::BlockShape,
    kind: kvtier_memory::LayoutKind,
    blocks: usize,
    data: &Arc<DiskMemory>,
    data_existed: bool,
    persist: &PersistOptions,
) -> Result<
    (
        Arc<crate::durable::DiskJournal>,
        RecoveryReport,
        Vec<kvtier_offload::DurableEntry>,
    ),
    SetupError,
> {
    use kvtier_disk::journal::{verify_full, G3Header, OnMismatch};
    let start = std::time::Instant::now();
    let header = G3Header::new(
        crate::durable::layout_fingerprint(&shape, kind),
        config.cache_salt().0,
        blocks as u64,
    );
    let on_mismatch = if persist.reset_on_mismatch {
        OnMismatch::Reset
    } else {
        OnMismatch::Refuse
    };
    let (j, rec) = crate::durable::DiskJournal::open(
        dir,
        &header,
        on_mismatch,
        data.clone(),
        persist.ack_log.as_deref(),
    )
    .map_err(|e| match e {
        kvtier_disk::journal::JournalError::Mismatch { .. }
        | kvtier_disk::journal::JournalError::BadHeader { .. } => SetupError::G3Mismatch {
            dir: dir.to_path_buf(),
            error: e,
        },
        e => SetupError::Memory {
            tier: Tier::G3,
            message: e.to_string(),
        },
    })?;
    let recovered = rec.records.len() as u64;
    let mut records = rec.records.clone();
    let mut dropped_missing_data = 0;
    if !data_existed && !records.is_empty() {
        tracing::warn!(
            "G3 data file {} was missing: dropping {} journal records",
            dir.join("g3.blocks").display(),
            records.len()
        );
        dropped_missing_data = records.len() as u64;
        records.clear();
    }
    let mut dropped_verify = 0;
    if persist.verify_full && !records.is_empty() {
        let (ok, bad) = verify_full(&records, &**data);
        dropped_verify = bad.len() as u64;
        if !bad.is_empty() {
            tracing::warn!(
                "full verification: {} G3 blocks failed their checksum and were dropped",
                bad.len()
            );
        }
        records = ok;
    }
    let entries = crate::durable::to_entries(&records);
    let report = RecoveryReport {
        dir: dir.display().to_string(),
        created: rec.created,
        recovered,
        restored: 0,
        dropped_torn: rec.dropped_torn,
        dropped_corrupt: rec.dropped_corrupt,
        dropped_verify,
        dropped_missing_data,
        reset: rec.reset.clone(),
        verify: if persist.verify_full { "full" } else { "fast" }.into(),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((j, report, entries))
}
