//! Building a [`TieredCache`] from a [`Config`]: memories per tier, copy
//! engines, disk files, and the resource check that refuses tiers the
//! machine cannot hold before anything is allocated.
//!
//! G3 persistence (journal, recovery, the directory's lock and files) lives
//! in `kvtier_disk::journal`; this module only opens it
//! ([`kvtier_disk::open_g3`]) and hands its records to the cache. Without a
//! configured directory G3 is a file with no name ([`DiskMemory::create_unlinked`]
//! in the system temp dir): its space returns when the process ends, however
//! it ends.

use crate::config::{Config, ConfigError, MemoryChoice};
use kvtier_disk::journal::{G3Header, GroupJournal, JournalError};
use kvtier_disk::{DiskCopyEngine, DiskIo, DiskMemory, G3Options, OnMismatch};
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
    /// The persistent G3 directory cannot be opened as it is (in use, written
    /// for another configuration, damaged): the variant says which.
    #[error(transparent)]
    G3(#[from] JournalError),
    /// The shared tier (G4) cannot be opened.
    #[error(transparent)]
    G4(#[from] kvtier_remote::RemoteError),
    /// The configured tiers need more memory (or disk) than the machine has
    /// available.
    #[error("{what} needs {} ({needed} bytes), but only {} ({available} bytes) is available ({limit})",
            human(*needed), human(*available))]
    TooLarge {
        /// What needs it (e.g. `G2 (8000 blocks of 16384 bytes) host memory`).
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the limit comes from (`MemAvailable in /proc/meminfo`, a cgroup limit, ...).
        limit: String,
    },
}

/// `n` bytes as a short human-readable size (`19.6 GiB`).
pub fn human(n: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Host memory the block store of one tier needs per block (index, policy,
/// checksum and lock bookkeeping), measured with the largest policy and
/// rounded up: used to refuse a tier that cannot fit before it is built.
pub const STORE_BYTES_PER_BLOCK: u64 = 320;

pub use kvtier_memory::available_memory;

/// Refuse a configuration whose tiers cannot fit in this machine's available
/// memory: host-side tier bytes (mock or host G1, G2) when `data` is on, plus
/// every tier's block-store bookkeeping ([`STORE_BYTES_PER_BLOCK`]). Disk
/// space is checked when the G3 file is created. Call before building.
pub fn check_resources(config: &Config, block_bytes: u64, data: bool) -> Result<(), SetupError> {
    let Some((available, limit)) = available_memory() else {
        return Ok(());
    };
    let mut needed: u64 = 0;
    let mut parts = Vec::new();
    for tier in Tier::ALL {
        let tc = config.tier(tier);
        if tc.blocks == 0 {
            continue;
        }
        let n = tc.blocks as u64;
        let meta = n.saturating_mul(STORE_BYTES_PER_BLOCK);
        let host_bytes = match (
            data,
            tier,
            tc.memory.unwrap_or_else(|| default_memory(tier)),
        ) {
            (true, Tier::G1, MemoryChoice::Cuda) | (true, Tier::G3, _) | (false, _, _) => 0,
            _ => n.saturating_mul(block_bytes),
        };
        needed = needed.saturating_add(meta).saturating_add(host_bytes);
        if host_bytes > 0 {
            parts.push(format!("{tier} {} blocks x {block_bytes} bytes", tc.blocks));
        } else {
            parts.push(format!("{tier} {} blocks of bookkeeping", tc.blocks));
        }
    }
    if needed > available {
        return Err(SetupError::TooLarge {
            what: format!("host memory for the tiers ({})", parts.join(", ")),
            needed,
            available,
            limit,
        });
    }
    Ok(())
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
    /// Directory of the disk tier, if any (for a G3 without a configured
    /// directory: the temp dir its unnamed file lives in).
    pub g3_dir: Option<PathBuf>,
    /// Memory kind per present tier, as built: `pinned` without CUDA falls
    /// back to (and is reported as) `host`.
    pub memories: Vec<(Tier, MemoryChoice)>,
    /// The persistent G3 journal, when G3 has a configured directory.
    pub journal: Option<Arc<GroupJournal>>,
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
    if let Ok(bb) = shape.block_bytes() {
        check_resources(config, bb as u64, data)?;
    }
    let mut journal = None;
    let mut recovery = None;
    let mut g3_restored = Vec::new();
    let mut cuda_dev = None;
    let mut g3_dir = None;
    let mut memories = Vec::new();
    let mut g1_is_cuda = false;
    let g3_start = std::time::Instant::now();
    let mut tiers: [Option<TierSetup>; 3] = [None, None, None];
    for tier in Tier::ALL {
        let tc = config.tier(tier);
        if tc.blocks == 0 {
            continue;
        }
        let mut choice = tc.memory.unwrap_or_else(|| default_memory(tier));
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
                (Tier::G1 | Tier::G2, MemoryChoice::Pinned) => {
                    let m = kvtier_cuda::PinnedMemory::new_or_fallback(cuda_dev.as_ref(), layout)
                        .map_err(|e| mem_err(e.to_string()))?;
                    if !m.is_page_locked() {
                        tracing::warn!(
                            "{tier}: memory = \"pinned\" needs a CUDA device; using ordinary host memory"
                        );
                        choice = MemoryChoice::Host;
                    }
                    TierMemory::Host(Arc::new(m))
                }
                (Tier::G3, MemoryChoice::Disk) => match &tc.path {
                    Some(dir) => {
                        let opened = kvtier_disk::open_g3(
                            dir,
                            &G3Options {
                                layout,
                                header: G3Header::for_layout(
                                    &shape,
                                    kind,
                                    config.cache_salt().0,
                                    tc.blocks as u64,
                                ),
                                on_mismatch: if persist.reset_on_mismatch {
                                    OnMismatch::Reset
                                } else {
                                    OnMismatch::Refuse
                                },
                                verify_full: persist.verify_full,
                                ack_log: persist.ack_log.as_deref(),
                            },
                        )?;
                        let rec = &opened.recovery;
                        recovery = Some(RecoveryReport {
                            dir: dir.display().to_string(),
                            created: rec.created,
                            recovered: (opened.records.len() as u64)
                                + opened.dropped_verify
                                + opened.dropped_missing_data,
                            restored: 0,
                            dropped_torn: rec.dropped_torn,
                            dropped_corrupt: rec.dropped_corrupt,
                            dropped_verify: opened.dropped_verify,
                            dropped_missing_data: opened.dropped_missing_data,
                            reset: opened.reset.clone(),
                            verify: if persist.verify_full { "full" } else { "fast" }.into(),
                            seconds: g3_start.elapsed().as_secs_f64(),
                        });
                        journal = Some(opened.journal);
                        g3_restored = opened.records;
                        g3_dir = Some(dir.clone());
                        TierMemory::Host(opened.data)
                    }
                    None => {
                        let tmp = std::env::temp_dir();
                        let m = DiskMemory::create_unlinked(&tmp, layout)
                            .map_err(|e| mem_err(e.to_string()))?;
                        g3_dir = Some(tmp);
                        TierMemory::Host(Arc::new(m))
                    }
                },
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
            store: {
                let mut store = StoreConfig::new(tier, tc.blocks)
                    .with_policy(
                        tc.policy
                            .unwrap_or_else(|| kvtier_logical::PolicyKind::default_for(tier)),
                    )
                    .with_policy_params(tc.policy_params.clone());
                // `gated-duel` weighs its order by the hits of this tier and
                // the ones below it together (they hold its victims), unless
                // the config sets the size below itself.
                let below = &mut store.policy_params.gated_duel.duel_below_blocks;
                if *below == 0 {
                    *below = Tier::ALL
                        .iter()
                        .filter(|t| t.index() > tier.index())
                        .map(|&t| config.tier(t).blocks as u64)
                        .sum();
                }
                store
            },
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
        g3_dir,
        memories,
        journal,
        recovery,
    })
}

/// Open the shared tier (G4) `config.g4` names, if any, for the salt and
/// block shape of `config`, and attach it to `cache` (built with data on and
/// a G2). Must run inside the tokio runtime the cache runs in.
pub async fn attach_g4(
    config: &Config,
    name: &str,
    cache: &TieredCache,
) -> Result<Option<Arc<kvtier_remote::RemoteTier>>, SetupError> {
    let Some(g4) = &config.g4 else {
        return Ok(None);
    };
    let (shape, _) = config.block_shape(name)?;
    let tier = kvtier_remote::RemoteTier::open(g4.clone(), config.cache_salt().0, &shape).await?;
    cache
        .attach_shared(tier.clone())
        .map_err(kvtier_offload::OffloadError::Setup)?;
    Ok(Some(tier))
}
