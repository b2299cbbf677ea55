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
pub fn build(config: &Config, name: &str, data: bool) -> Result<Built, SetupError> {
    let (shape, kind) = config.block_shape(name)?;
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
                    let m = DiskMemory::open(&file, layout, OpenMode::OpenOrCreate)
                        .map_err(|e| mem_err(e.to_string()))?;
                    g3_dir = Some(dir);
                    TierMemory::Host(Arc::new(m))
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
        let disk: Arc<dyn CopyEngine> = Arc::new(
            DiskCopyEngine::new(DiskIo::default(), threads)
                .map_err(|e| SetupError::Engine(e.to_string()))?,
        );
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
        g3_journal: None,
        g3_restored: Vec::new(),
    })?;
    Ok(Built {
        cache,
        temp_dir,
        g3_dir,
        memories,
    })
}
