//! What a [`TieredCache`] is built from ([`CacheSetup`]) and the checks that
//! turn it into the validated state of [`crate::state`]: tiers without gaps,
//! data on for every tier or none, memories large enough and of one block
//! shape, lower tiers host-visible, an engine for every boundary with data.

use crate::cache::{Tasks, TieredCache};
use crate::cleaner::{cleaner_task, Cleaner};
use crate::durable::{restore_store, DurableEntry, G3Journal, RestoreStats};
use crate::error::{OffloadError, SetupError};
use crate::metrics::CacheMetrics;

use crate::state::{Bytes, Data, DeviceG1, G1Bytes, Inner, LowerBytes, TierState, Tiers};
use crate::transit::Transits;
use crate::write_through::write_through_worker;
use kvtier_logical::{BlockStore, FrequencySketch, StoreConfig, Tier};
use kvtier_memory::{BlockMemory, BlockShape, CopyEngine, HostMemory, HostVisible, Layout};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use tokio::sync::mpsc;

/// When blocks are copied down across one tier boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum WritePolicy {
    /// Copy a block down when it is evicted (and the tier below lacks it).
    #[default]
    WriteBack,
    /// Copy every newly registered block down in the background; an evicted
    /// block whose copy has not landed is dropped.
    WriteThrough,
    /// As write-through, only for blocks asked for at least `min_seen` times.
    WriteThroughSelective {
        /// Sightings needed before a block is copied down.
        min_seen: u8,
    },
}

/// The bytes behind one tier.
#[derive(Clone)]
pub enum TierMemory {
    /// No bytes: logical-only replay.
    None,
    /// Memory reachable only through a copy engine (device, mock device).
    Device(Arc<dyn BlockMemory>),
    /// Memory with byte views (host, pinned host, mmap'd disk).
    Host(Arc<dyn HostVisible>),
}

impl TierMemory {
    /// The memory as copy engines see it.
    fn block_memory(&self) -> Option<Arc<dyn BlockMemory>> {
        match self {
            TierMemory::None => None,
            TierMemory::Device(m) => Some(m.clone()),
            TierMemory::Host(h) => Some(h.clone() as Arc<dyn BlockMemory>),
        }
    }
}

/// One tier's setup.
#[derive(Clone)]
pub struct TierSetup {
    /// The block store (its tier must match the slot it is given).
    pub store: StoreConfig,
    /// Its bytes.
    pub memory: TierMemory,
}

/// Everything a [`TieredCache`] is built from.
#[derive(Clone)]
pub struct CacheSetup {
    /// G1 (required).
    pub g1: TierSetup,
    /// G2 (optional).
    pub g2: Option<TierSetup>,
    /// G3 (optional; requires G2, which stages its blocks on the way up).
    pub g3: Option<TierSetup>,
    /// Copies between host memory and G1 (G1 <-> G2, and the staging of a
    /// device-only G1).
    pub device_engine: Option<Arc<dyn CopyEngine>>,
    /// Copies between host memory and G3 (G2 <-> G3).
    pub disk_engine: Option<Arc<dyn CopyEngine>>,
    /// Write policy at the G1/G2 boundary.
    pub g1_to_g2: WritePolicy,
    /// Write policy at the G2/G3 boundary.
    pub g2_to_g3: WritePolicy,
    /// Capacity of each write-through queue, in blocks (backpressure bound).
    pub queue_depth: usize,
    /// Blocks of host staging used to fill and read back device-only G1.
    pub staging_blocks: usize,
    /// Proactive cleaning under write-back at the G1/G2 boundary: keep up to
    /// this many of G1's oldest released blocks already copied to G2, so
    /// their eviction does not wait for a copy. 0 turns it off.
    pub clean_ahead: usize,
    /// Persistence of G3 (optional): told what is stored in and removed from
    /// G3, closed by [`TieredCache::close`].
    pub g3_journal: Option<Arc<dyn G3Journal>>,
    /// G3 blocks recovered from a previous run (oldest first), registered at
    /// start-up in their slots.
    pub g3_restored: Vec<DurableEntry>,
}

impl CacheSetup {
    /// The lower tiers in order, each with the engine and write policy of
    /// the boundary above it.
    #[allow(clippy::type_complexity)]
    fn lower_chain(
        &self,
    ) -> [(
        Tier,
        Option<&TierSetup>,
        Option<&Arc<dyn CopyEngine>>,
        WritePolicy,
    ); 2] {
        [
            (
                Tier::G2,
                self.g2.as_ref(),
                self.device_engine.as_ref(),
                self.g1_to_g2,
            ),
            (
                Tier::G3,
                self.g3.as_ref(),
                self.disk_engine.as_ref(),
                self.g2_to_g3,
            ),
        ]
    }
}

/// What [`validate`] checked and built.
struct Validated {
    tiers: Tiers,
    data: Data,
    /// Write policy of each boundary, top down.
    write: Vec<WritePolicy>,
    restored: RestoreStats,
}

/// Check one tier's store and memory against G1's (`shape`: G1's block
/// shape, `None` without data) and build its store (G3 restored from
/// `setup.g3_restored`).
fn tier_state(
    tier: Tier,
    s: &TierSetup,
    shape: Option<BlockShape>,
    setup: &CacheSetup,
    restored: &mut RestoreStats,
) -> Result<TierState, SetupError> {
    if s.store.tier != tier {
        return Err(SetupError::TierMismatch {
            slot: tier,
            configured: s.store.tier,
        });
    }
    let mem = s.memory.block_memory();
    if mem.is_some() != shape.is_some() {
        return Err(SetupError::MixedData {
            tier,
            has_memory: mem.is_some(),
        });
    }
    if let Some(m) = &mem {
        let l: &Layout = m.layout();
        if l.num_blocks() < s.store.capacity {
            return Err(SetupError::CapacityExceedsMemory {
                tier,
                have: l.num_blocks(),
                want: s.store.capacity,
            });
        }
        if Some(*l.shape()) != shape {
            return Err(SetupError::ShapeMismatch { tier });
        }
    }
    let sums: Box<[AtomicU64]> = (0..s.store.capacity).map(|_| AtomicU64::new(0)).collect();
    let store = if tier == Tier::G3 && !setup.g3_restored.is_empty() {
        let (store, st) = restore_store(s.store.clone(), &setup.g3_restored)?;
        for e in &setup.g3_restored {
            if let Some(sum) = sums.get(e.slot as usize) {
                sum.store(e.checksum, std::sync::atomic::Ordering::Relaxed);
            }
        }
        *restored = st;
        store
    } else {
        BlockStore::new(s.store.clone())?
    };
    Ok(TierState { tier, store, sums })
}

/// G1's bytes with data on: in place if host-visible, else through a host
/// staging buffer of `setup.staging_blocks` blocks.
fn g1_bytes(setup: &CacheSetup, shape: BlockShape) -> Result<Option<G1Bytes>, SetupError> {
    Ok(Some(match &setup.g1.memory {
        TierMemory::None => return Ok(None),
        TierMemory::Host(host) => G1Bytes::Host {
            mem: host.clone() as Arc<dyn BlockMemory>,
            host: host.clone(),
        },
        TierMemory::Device(mem) => {
            let engine = setup
                .device_engine
                .clone()
                .ok_or(SetupError::MissingStagingEngine)?;
            let n = setup.staging_blocks.max(1);
            let l = Layout::contiguous(shape, n).map_err(|e| SetupError::Staging(e.into()))?;
            let staging = HostMemory::new(l).map_err(SetupError::Staging)?;
            G1Bytes::Device(DeviceG1 {
                mem: mem.clone(),
                staging: Arc::new(tokio::sync::Mutex::new(Arc::new(staging))),
                engine,
            })
        }
    }))
}

/// Check every tier's store and memory against the others; build the stores.
fn validate(setup: &CacheSetup) -> Result<Validated, SetupError> {
    let shape: Option<BlockShape> = setup.g1.memory.block_memory().map(|m| *m.layout().shape());
    let mut restored = RestoreStats::default();
    let g1 = tier_state(Tier::G1, &setup.g1, shape, setup, &mut restored)?;
    let mut lower = Vec::new();
    let mut lower_bytes = Vec::new();
    let mut write = Vec::new();
    let mut missing: Option<Tier> = None;
    for (tier, s, engine, policy) in setup.lower_chain() {
        let Some(s) = s else {
            missing.get_or_insert(tier);
            continue;
        };
        if let Some(above) = missing {
            return Err(SetupError::MissingTierAbove { tier, above });
        }
        lower.push(tier_state(tier, s, shape, setup, &mut restored)?);
        write.push(policy);
        let above = Tier::ALL[tier.index() - 1];
        match &s.memory {
            TierMemory::None => {}
            TierMemory::Device(_) => return Err(SetupError::NotHostVisible { tier }),
            TierMemory::Host(host) => lower_bytes.push(LowerBytes {
                mem: host.clone() as Arc<dyn BlockMemory>,
                host: host.clone(),
                engine: engine.cloned().ok_or(SetupError::MissingEngine {
                    upper: above,
                    lower: tier,
                })?,
            }),
        }
    }
    let data = match shape {
        None => Data::Off,
        Some(shape) => match g1_bytes(setup, shape)? {
            None => Data::Off,
            Some(g1) => Data::On(Bytes {
                block_bytes: g1.mem().layout().block_bytes() as u64,
                g1,
                lower: lower_bytes.into_boxed_slice(),
            }),
        },
    };
    Ok(Validated {
        tiers: Tiers::new(g1, lower),
        data,
        write,
        restored,
    })
}

impl TieredCache {
    /// Build the cache. Validates the setup (see [`SetupError`]): no lower
    /// tier without the one above it; either every tier has memory or none;
    /// memories hold at least the tier's capacity and share G1's block shape;
    /// lower tiers are host-visible; each boundary with data has its engine.
    /// Write-through workers and the proactive cleaner are spawned on the
    /// current tokio runtime (required only when they are used).
    pub fn new(setup: CacheSetup) -> Result<TieredCache, OffloadError> {
        for w in [setup.g1_to_g2, setup.g2_to_g3] {
            if let WritePolicy::WriteThroughSelective { min_seen } = w {
                if min_seen > FrequencySketch::MAX_ESTIMATE {
                    return Err(SetupError::MinSeenTooHigh {
                        min_seen,
                        max: FrequencySketch::MAX_ESTIMATE,
                    }
                    .into());
                }
            }
        }
        let Validated {
            tiers,
            data,
            write,
            restored,
        } = validate(&setup)?;
        let selective = write
            .iter()
            .any(|w| matches!(w, WritePolicy::WriteThroughSelective { .. }));
        let has_g2 = tiers.below(Tier::G1).is_some();
        let cleaner =
            (setup.clean_ahead > 0 && has_g2 && matches!(setup.g1_to_g2, WritePolicy::WriteBack))
                .then(|| Arc::new(Cleaner::new(setup.clean_ahead)));
        let boundaries = write.len();
        let inner = Arc::new(Inner {
            seen: Mutex::new(FrequencySketch::new(tiers.g1().store.capacity())),
            tiers,
            data,
            write: write.into_boxed_slice(),
            selective,
            metrics: CacheMetrics::default(),
            wt_tx: Mutex::new(vec![None; boundaries].into_boxed_slice()),
            journal: setup.g3_journal.clone(),
            restored,
            cleaner,
            transit: Transits::default(),
            closed: AtomicBool::new(false),
            shared: std::sync::OnceLock::new(),
            priority: Arc::default(),
        });
        let mut tasks = Tasks::new(boundaries);
        for (b, policy) in inner.write.iter().enumerate() {
            if matches!(policy, WritePolicy::WriteBack) {
                continue;
            }
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime {
                    task: "write-through",
                })?;
            let (tx, rx) = mpsc::channel(setup.queue_depth.max(1));
            inner.wt_tx.lock()[b] = Some(tx);
            tasks.workers[b] =
                Some(runtime.spawn(write_through_worker(inner.clone(), Tier::ALL[b], rx)));
        }
        if let Some(c) = &inner.cleaner {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime {
                    task: "proactive cleaning",
                })?;
            tasks.cleaner = Some(runtime.spawn(cleaner_task(inner.clone(), c.clone())));
        }
        Ok(TieredCache::from_parts(inner, tasks))
    }
}
