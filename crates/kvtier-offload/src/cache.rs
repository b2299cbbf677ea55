//! The tiered cache: a block store and a memory per tier, and the moves
//! between them.
//!
//! # Moves
//! - **Offload** (down): when a tier evicts a block, write-back copies it to
//!   the tier below unless that tier already holds it (lower tiers are
//!   *inclusive*: onboarding leaves their copy in place, so a hot prefix does
//!   not bounce). Write-through copies every newly registered block down in the
//!   background through a bounded queue; write-through-selective only blocks
//!   seen at least `k` times.
//! - **Onboard** (up): [`TieredCache::lookup`] walks the prefix position by
//!   position, each served by the fastest tier that holds it, and returns an
//!   [`OnboardPlan`] holding guards on every matched block (so nothing it names
//!   can be evicted). [`TieredCache::onboard`] stages G3 hits into G2, copies
//!   G2 blocks into fresh G1 slots, registers them and returns G1 guards for
//!   the whole matched prefix.
//!
//! # Integrity
//! Every block written into G2 gets a checksum (xxh3-64 of its bytes) computed
//! from the bytes that landed there; G3 copies carry it along. Onboarding
//! recomputes it on the G2 bytes (after a G3 read) and before copying to G1;
//! a mismatch is counted in `verify_failures`, logged, the bad copy is
//! withdrawn from its tier, and the prefix is cut there: the caller recomputes
//! the rest. A failed offload copy drops the block (counted), never registers
//! it. Transfers pin the guards of their source and destination until the
//! bytes have landed, even if the calling future is cancelled.

use crate::durable::{restore_store, DurableEntry, G3Journal, RestoreStats};
use crate::metrics::{CacheMetrics, MetricsSnapshot, Path};
use crate::pinned::Pinned;
use kvtier_logical::{
    BlockSpec, BlockStore, CompleteBlock, Evicted, FrequencySketch, ImmutableBlock, MutableBlock,
    SequenceHash, StoreConfig, StoreError, Tier, TierMetrics,
};
use kvtier_memory::{
    BlockMemory, CopyEngine, CopyError, HostMemory, HostVisible, Layout, MemoryError,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
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
    /// As write-through, only for blocks asked for at least `min_seen` times
    /// lately (counted by lookups in a count-min sketch that halves its
    /// counts every 16 G1 capacities of looked-up blocks).
    WriteThroughSelective {
        /// Sightings needed before a block is copied down (at most 15).
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

/// A tier's memory as the engine sees it, plus its byte views if it has them.
type MemoryParts = (Option<Arc<dyn BlockMemory>>, Option<Arc<dyn HostVisible>>);

impl TierMemory {
    fn parts(&self) -> MemoryParts {
        match self {
            TierMemory::None => (None, None),
            TierMemory::Device(m) => (Some(m.clone()), None),
            TierMemory::Host(h) => (Some(h.clone() as Arc<dyn BlockMemory>), Some(h.clone())),
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
    /// Copies between host memory and G1 (and G1 <-> G2).
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
    /// Persistence of G3 (optional): told what is stored in and removed from G3.
    pub g3_journal: Option<Arc<dyn G3Journal>>,
    /// G3 blocks recovered from a previous run (oldest first), registered at
    /// start-up in their slots.
    pub g3_restored: Vec<DurableEntry>,
}

/// Errors of the offload engine.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// A block store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A copy failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A memory access failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The setup cannot work.
    #[error("invalid tiered-cache setup: {0}")]
    Setup(String),
    /// The cache was shut down.
    #[error("the tiered cache is shut down")]
    Shutdown,
}

struct TierState {
    store: BlockStore,
    mem: Option<Arc<dyn BlockMemory>>,
    host: Option<Arc<dyn HostVisible>>,
    /// Checksum of the bytes in each slot (valid while the slot is registered).
    sums: Box<[AtomicU64]>,
}

struct WtItem {
    block: ImmutableBlock,
    spec: BlockSpec,
}

struct Inner {
    tiers: [Option<TierState>; 3],
    device_engine: Option<Arc<dyn CopyEngine>>,
    disk_engine: Option<Arc<dyn CopyEngine>>,
    write: [WritePolicy; 2],
    data: bool,
    block_bytes: u64,
    metrics: CacheMetrics,
    /// Sightings of each hash by `lookup`, for write-through-selective.
    seen: Mutex<FrequencySketch>,
    wt_tx: Mutex<[Option<mpsc::Sender<WtItem>>; 2]>,
    staging: Option<tokio::sync::Mutex<Arc<HostMemory>>>,
    journal: Option<Arc<dyn G3Journal>>,
    restored: RestoreStats,
    cleaner: Option<Cleaner>,
    /// Blocks evicted from a tier whose copy to the tier below has not
    /// landed: a lookup waits for the lock instead of missing them.
    transit: Mutex<std::collections::HashMap<SequenceHash, Arc<tokio::sync::Mutex<()>>>>,
}

/// Marks blocks as in transit for as long as it lives.
struct Transit {
    inner: Arc<Inner>,
    hashes: Vec<SequenceHash>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Transit {
    fn enter(inner: &Arc<Inner>, hashes: Vec<SequenceHash>) -> Transit {
        let m = Arc::new(tokio::sync::Mutex::new(()));
        let guard = m.clone().try_lock_owned().expect("fresh lock");
        {
            let mut t = inner.transit.lock();
            for h in &hashes {
                t.insert(*h, m.clone());
            }
        }
        Transit {
            inner: inner.clone(),
            hashes,
            _guard: guard,
        }
    }
}

impl Drop for Transit {
    fn drop(&mut self) {
        let mut t = self.inner.transit.lock();
        for h in &self.hashes {
            t.remove(h);
        }
        // The guard drops after this: waiters retry and find the block below.
    }
}

/// State shared between the proactive cleaner and evictions.
struct Cleaner {
    /// Watermark: blocks to keep copied ahead of eviction.
    ahead: usize,
    /// G1 hashes in release order (oldest first): LRU's next victims, and a
    /// close approximation for the other policies.
    released: Mutex<std::collections::VecDeque<SequenceHash>>,
    /// G1 slots whose bytes the cleaner is copying: an eviction of such a
    /// slot waits for the copy before the slot's new owner may write it.
    busy: Mutex<std::collections::HashMap<kvtier_logical::SlotId, Arc<tokio::sync::Mutex<()>>>>,
    /// Cleaned blocks not yet evicted (approximate watermark accounting).
    clean: AtomicU64,
    wake: tokio::sync::Notify,
    stop: std::sync::atomic::AtomicBool,
}

/// Why blocks are moved down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Demote {
    /// Evicted by an allocation: copy per the write policy.
    Eviction,
    /// Copied ahead of eviction by the cleaner (sources locked by it).
    Clean,
    /// Copied at a clean stop (sources pinned by guards).
    Flush,
}

/// G1..G3 block stores and memories plus the engine moving blocks between
/// them. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
    /// Write-through worker per boundary.
    workers: Arc<Mutex<[Option<tokio::task::JoinHandle<()>>; 2]>>,
    /// The proactive cleaner task, if any.
    cleaner: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// The result of [`TieredCache::lookup`]: the matched prefix, each position
/// with the tier that serves it and a guard pinning that block.
pub struct OnboardPlan {
    hashes: Vec<SequenceHash>,
    entries: Vec<(Tier, ImmutableBlock)>,
}

impl OnboardPlan {
    /// Number of matched positions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing matched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Matched positions per serving tier (`[g1, g2, g3]`).
    pub fn hits_by_tier(&self) -> [u64; 3] {
        let mut h = [0; 3];
        for (t, _) in &self.entries {
            h[t.index()] += 1;
        }
        h
    }
}

/// The result of [`TieredCache::onboard`].
pub struct Onboarded {
    /// G1 guards for the served prefix, in position order.
    pub blocks: Vec<ImmutableBlock>,
    /// Served positions per tier (`[g1, g2, g3]`), after verification.
    pub hits_by_tier: [u64; 3],
    /// Positions that failed verification (the prefix was cut at the first).
    pub verify_failures: u64,
    /// The tier that served each position of `blocks`.
    pub served: Vec<Tier>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `(source slot, destination slot)` for the plan positions `pos`: the source
/// is the block the plan pins at that position, the destination the fresh
/// block at the same index of `dst`.
fn pinned_pairs(
    pos: &[usize],
    guards: &[Option<ImmutableBlock>],
    dst: &[MutableBlock],
) -> Vec<(usize, usize)> {
    pos.iter()
        .zip(dst)
        .map(|(&i, d)| {
            (
                guards[i].as_ref().expect("pinned").slot() as usize,
                d.slot() as usize,
            )
        })
        .collect()
}

/// xxh3-64 of a block's bytes (regions in layer order).
pub fn block_checksum(mem: &dyn HostVisible, slot: usize) -> Result<u64, MemoryError> {
    let view = mem.block(slot)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in view.regions() {
        h.update(r);
    }
    Ok(h.digest())
}

fn path(from: Tier, to: Tier) -> Path {
    match (from, to) {
        (Tier::G1, Tier::G2) => Path::G1ToG2,
        (Tier::G2, Tier::G3) => Path::G2ToG3,
        (Tier::G3, Tier::G2) => Path::G3ToG2,
        _ => Path::G2ToG1,
    }
}

impl TieredCache {
    /// Build the cache. Validates the setup: G3 needs G2; either every tier has
    /// memory or none; memories hold at least the tier's capacity and share
    /// one block shape; each boundary with data has its engine. Write-through
    /// workers are spawned on the current tokio runtime (required only when a
    /// write-through policy is used).
    pub fn new(setup: CacheSetup) -> Result<TieredCache, OffloadError> {
        let bad = |m: String| Err(OffloadError::Setup(m));
        if setup.g3.is_some() && setup.g2.is_none() {
            return bad("a G3 tier needs a G2 tier (it stages G3 blocks on the way up)".into());
        }
        for w in [setup.g1_to_g2, setup.g2_to_g3] {
            if let WritePolicy::WriteThroughSelective { min_seen } = w {
                if min_seen > FrequencySketch::MAX_ESTIMATE {
                    return bad(format!(
                        "write-through-selective: min_seen {min_seen} is above {}, the most \
                         sightings counted",
                        FrequencySketch::MAX_ESTIMATE
                    ));
                }
            }
        }
        let setups = [Some(&setup.g1), setup.g2.as_ref(), setup.g3.as_ref()];
        let data = !matches!(setup.g1.memory, TierMemory::None);
        let mut shape = None;
        let mut restored = RestoreStats::default();
        let mut tiers: [Option<TierState>; 3] = [None, None, None];
        for (i, s) in setups.iter().enumerate() {
            let Some(s) = s else { continue };
            let tier = Tier::ALL[i];
            if s.store.tier != tier {
                return bad(format!(
                    "the {tier} slot holds a store configured as {}",
                    s.store.tier
                ));
            }
            let (mem, host) = s.memory.parts();
            if mem.is_some() != data {
                return bad(format!(
                    "{tier}: either every tier has memory (data on) or none (logical only)"
                ));
            }
            if let Some(m) = &mem {
                let l: &Layout = m.layout();
                if l.num_blocks() < s.store.capacity {
                    return bad(format!(
                        "{tier}: memory holds {} blocks, the store wants {}",
                        l.num_blocks(),
                        s.store.capacity
                    ));
                }
                match shape {
                    None => shape = Some(*l.shape()),
                    Some(sh) if sh != *l.shape() => {
                        return bad(format!("{tier}: block shape differs from G1's"))
                    }
                    _ => {}
                }
            }
            if tier != Tier::G1 && data && host.is_none() {
                return bad(format!(
                    "{tier}: lower tiers need host-visible memory (checksums)"
                ));
            }
            let sums: Box<[AtomicU64]> = (0..s.store.capacity).map(|_| AtomicU64::new(0)).collect();
            let store = if tier == Tier::G3 && !setup.g3_restored.is_empty() {
                let (store, st) = restore_store(s.store.clone(), &setup.g3_restored)?;
                for e in &setup.g3_restored {
                    if let Some(sum) = sums.get(e.slot as usize) {
                        sum.store(e.checksum, Relaxed);
                    }
                }
                restored = st;
                store
            } else {
                BlockStore::new(s.store.clone())?
            };
            tiers[i] = Some(TierState {
                store,
                mem,
                host,
                sums,
            });
        }
        if data {
            if setup.device_engine.is_none() {
                return bad("data on: a device engine (host <-> G1) is needed".into());
            }
            if setup.g3.is_some() && setup.disk_engine.is_none() {
                return bad("data on: a disk engine (G2 <-> G3) is needed".into());
            }
        }
        let block_bytes = tiers[0]
            .as_ref()
            .and_then(|t| t.mem.as_ref())
            .map(|m| m.layout().block_bytes() as u64)
            .unwrap_or(0);
        let staging = match (&setup.g1.memory, shape) {
            (TierMemory::Device(_), Some(sh)) => {
                let n = setup.staging_blocks.max(1);
                let l = Layout::contiguous(sh, n)
                    .map_err(|e| OffloadError::Setup(format!("staging layout: {e}")))?;
                Some(tokio::sync::Mutex::new(Arc::new(HostMemory::new(l)?)))
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            tiers,
            device_engine: setup.device_engine,
            disk_engine: setup.disk_engine,
            write: [setup.g1_to_g2, setup.g2_to_g3],
            data,
            block_bytes,
            metrics: CacheMetrics::default(),
            seen: Mutex::new(FrequencySketch::new(setup.g1.store.capacity)),
            wt_tx: Mutex::new([None, None]),
            staging,
            journal: setup.g3_journal,
            restored,
            transit: Mutex::new(std::collections::HashMap::new()),
            cleaner: (setup.clean_ahead > 0
                && setup.g2.is_some()
                && matches!(setup.g1_to_g2, WritePolicy::WriteBack))
            .then(|| Cleaner {
                ahead: setup.clean_ahead,
                released: Mutex::new(std::collections::VecDeque::new()),
                busy: Mutex::new(std::collections::HashMap::new()),
                clean: AtomicU64::new(0),
                wake: tokio::sync::Notify::new(),
                stop: std::sync::atomic::AtomicBool::new(false),
            }),
        });
        let cache = TieredCache {
            inner,
            workers: Arc::new(Mutex::new([None, None])),
            cleaner: Arc::new(Mutex::new(None)),
        };
        for b in 0..2 {
            let wt = !matches!(cache.inner.write[b], WritePolicy::WriteBack);
            if wt && cache.inner.tiers[b + 1].is_some() {
                let (tx, rx) = mpsc::channel(setup.queue_depth.max(1));
                cache.inner.wt_tx.lock()[b] = Some(tx);
                let inner = cache.inner.clone();
                let h = tokio::runtime::Handle::try_current()
                    .map_err(|_| OffloadError::Setup("write-through needs a tokio runtime".into()))?
                    .spawn(write_through_worker(inner, Tier::ALL[b], rx));
                cache.workers.lock()[b] = Some(h);
            }
        }
        if cache.inner.cleaner.is_some() {
            let h = tokio::runtime::Handle::try_current()
                .map_err(|_| {
                    OffloadError::Setup("proactive cleaning needs a tokio runtime".into())
                })?
                .spawn(cleaner_task(cache.inner.clone()));
            *cache.cleaner.lock() = Some(h);
        }
        Ok(cache)
    }

    /// The block store of `tier`, if present.
    pub fn store(&self, tier: Tier) -> Option<&BlockStore> {
        self.inner.tiers[tier.index()].as_ref().map(|t| &t.store)
    }

    /// Whether block bytes are moved and verified.
    pub fn has_data(&self) -> bool {
        self.inner.data
    }

    /// Bytes per block (0 without data).
    pub fn block_bytes(&self) -> u64 {
        self.inner.block_bytes
    }

    /// What start-up restored into G3 from a previous run.
    pub fn restored(&self) -> RestoreStats {
        self.inner.restored
    }

    /// Movement counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Prometheus text: every tier's store metrics plus every path's.
    pub fn to_prometheus(&self) -> String {
        let stores: Vec<TierMetrics> = self
            .inner
            .tiers
            .iter()
            .flatten()
            .map(|t| t.store.metrics())
            .collect();
        let mut s = kvtier_logical::to_prometheus(&stores);
        s.push_str(&self.inner.metrics.to_prometheus());
        s
    }

    /// Walk `hashes` position by position, each served by the fastest tier
    /// holding it, until a position no tier holds. The plan pins every block
    /// it names. A block in transit between two tiers (evicted from one, its
    /// copy to the next not landed yet) is waited for, not missed.
    pub async fn lookup(&self, hashes: &[SequenceHash]) -> OnboardPlan {
        let inner = &*self.inner;
        if matches!(inner.write[0], WritePolicy::WriteThroughSelective { .. })
            || matches!(inner.write[1], WritePolicy::WriteThroughSelective { .. })
        {
            let mut seen = inner.seen.lock();
            for &h in hashes {
                seen.increment(h);
            }
        }
        let mut entries: Vec<(Tier, ImmutableBlock)> = Vec::with_capacity(hashes.len());
        let mut buf = Vec::with_capacity(hashes.len());
        // Fast path: G1's run in one batch.
        let g1 = &inner.tiers[0].as_ref().expect("G1 exists").store;
        g1.match_prefix_into(hashes, &mut buf);
        entries.extend(buf.drain(..).map(|b| (Tier::G1, b)));
        let mut pos = entries.len();
        // G1 already answered for `pos`; later positions ask every tier.
        let mut skip_g1 = true;
        // Waits at the current position (a block moves down at most twice).
        let mut waited = 0;
        'walk: while pos < hashes.len() {
            for t in inner.tiers.iter().flatten() {
                if skip_g1 && t.store.tier() == Tier::G1 {
                    continue;
                }
                if t.store.match_prefix_into(&hashes[pos..=pos], &mut buf) == 1 {
                    entries.push((t.store.tier(), buf.pop().expect("one match")));
                    pos += 1;
                    skip_g1 = false;
                    waited = 0;
                    continue 'walk;
                }
            }
            // In transit? Wait for its move to finish, then ask again (a
            // bounded number of times: a block can only move down so often).
            let moving = inner.transit.lock().get(&hashes[pos]).cloned();
            if let (Some(m), true) = (moving, waited < 4) {
                drop(m.lock().await);
                waited += 1;
                skip_g1 = false;
                continue;
            }
            break;
        }
        OnboardPlan {
            hashes: hashes[..entries.len()].to_vec(),
            entries,
        }
    }

    /// Bring every lower-tier block of `plan` into G1 (G3 -> G2 -> G1,
    /// verified) and return G1 guards for the served prefix.
    pub async fn onboard(&self, plan: OnboardPlan) -> Result<Onboarded, OffloadError> {
        self.inner.clone().onboard(plan).await
    }

    /// Allocate `n` G1 blocks, writing evicted blocks back down first.
    pub async fn allocate(&self, n: usize) -> Result<Vec<MutableBlock>, OffloadError> {
        self.inner.clone().allocate_in(Tier::G1, n).await
    }

    /// Register complete G1 blocks; write-through policies queue them for the
    /// tier below (waiting when the queue is full: backpressure).
    pub async fn register(&self, blocks: Vec<CompleteBlock>) -> Vec<ImmutableBlock> {
        let specs: Vec<BlockSpec> = blocks.iter().map(|b| b.spec()).collect();
        let g1 = self.store(Tier::G1).expect("G1 exists");
        let out = g1.register(blocks);
        self.inner.queue_write_through(0, &out, &specs).await;
        out
    }

    /// Release a request's G1 blocks (in the order given; tail first is the
    /// reference order).
    pub fn release<I: IntoIterator<Item = ImmutableBlock>>(&self, blocks: I) {
        let g1 = self.store(Tier::G1).expect("G1 exists");
        match &self.inner.cleaner {
            None => g1.release(blocks),
            Some(c) => {
                let blocks: Vec<ImmutableBlock> = blocks.into_iter().collect();
                {
                    let mut q = c.released.lock();
                    q.extend(blocks.iter().map(|b| b.hash()));
                    let cap = g1.capacity();
                    while q.len() > cap {
                        q.pop_front();
                    }
                }
                g1.release(blocks);
                c.wake.notify_one();
            }
        }
    }

    /// Write the bytes of freshly computed G1 blocks: `fill(i, buf)` fills the
    /// canonical bytes of `blocks[i]`. Device-only G1 goes through host staging.
    pub async fn write_new(
        &self,
        blocks: &[MutableBlock],
        fill: impl Fn(usize, &mut [u8]) + Send,
    ) -> Result<(), OffloadError> {
        let inner = &*self.inner;
        let g1 = inner.tiers[0].as_ref().expect("G1 exists");
        let Some(_) = &g1.mem else { return Ok(()) };
        if let Some(host) = &g1.host {
            let mut scratch = vec![0u8; inner.block_bytes as usize];
            for (i, b) in blocks.iter().enumerate() {
                fill(i, &mut scratch);
                host.write_block(b.slot() as usize, &scratch)?;
            }
            return Ok(());
        }
        let staging = inner
            .staging
            .as_ref()
            .expect("device G1 has staging")
            .lock()
            .await;
        let engine = inner.device_engine.as_ref().expect("validated");
        let per = staging.num_blocks();
        for (c, chunk) in blocks.chunks(per).enumerate() {
            let mut pairs = Vec::with_capacity(chunk.len());
            for (j, b) in chunk.iter().enumerate() {
                // Staging is contiguous: one region per block, filled in place.
                let mut view = staging.block_mut(j)?;
                fill(c * per + j, view.region_mut(0));
                drop(view);
                pairs.push((j, b.slot() as usize));
            }
            let src: Arc<dyn BlockMemory> = staging.clone();
            let dst = g1.mem.clone().expect("data on");
            engine.copy_blocks(&src, &dst, &pairs)?.await?;
        }
        Ok(())
    }

    /// Read back the bytes of G1 blocks: `check(i, bytes)` sees the canonical
    /// bytes of `blocks[i]`. For verification in tests and replays.
    pub async fn read_back(
        &self,
        blocks: &[ImmutableBlock],
        mut check: impl FnMut(usize, &[u8]) + Send,
    ) -> Result<(), OffloadError> {
        let inner = &*self.inner;
        let g1 = inner.tiers[0].as_ref().expect("G1 exists");
        let Some(_) = &g1.mem else { return Ok(()) };
        if let Some(host) = &g1.host {
            for (i, b) in blocks.iter().enumerate() {
                check(i, &host.read_block(b.slot() as usize)?);
            }
            return Ok(());
        }
        let staging = inner
            .staging
            .as_ref()
            .expect("device G1 has staging")
            .lock()
            .await;
        let engine = inner.device_engine.as_ref().expect("validated");
        let per = staging.num_blocks();
        for (c, chunk) in blocks.chunks(per).enumerate() {
            let pairs: Vec<(usize, usize)> = chunk
                .iter()
                .enumerate()
                .map(|(j, b)| (b.slot() as usize, j))
                .collect();
            let src = g1.mem.clone().expect("data on");
            let dst: Arc<dyn BlockMemory> = staging.clone();
            engine.copy_blocks(&src, &dst, &pairs)?.await?;
            for j in 0..chunk.len() {
                // Contiguous staging: the block's canonical bytes in place.
                check(c * per + j, staging.block(j)?.region(0));
            }
        }
        Ok(())
    }

    /// Copy every block of G1 and G2 that the tier below lacks down to it
    /// (G1 -> G2, then G2 -> G3), so that a persistent G3 holds everything the
    /// cache holds: a clean stop loses nothing. Returns the blocks copied.
    pub async fn flush_down(&self) -> u64 {
        let before = self.inner.metrics.snapshot().offloaded_blocks;
        for tier in [Tier::G1, Tier::G2] {
            let Some(lower) = self
                .inner
                .tiers
                .get(tier.index() + 1)
                .and_then(|t| t.as_ref())
            else {
                break;
            };
            let store = &self.inner.tier(tier).store;
            let listed = store.registered();
            let hashes: Vec<SequenceHash> = listed.iter().map(|(_, s)| s.hash).collect();
            let below = lower.store.contains_all(&hashes);
            let todo: Vec<BlockSpec> = listed
                .into_iter()
                .zip(below)
                .filter(|(_, b)| !b)
                .map(|((_, spec), _)| spec)
                .collect();
            // Pin the sources, in batches that fit the tier below.
            for chunk in todo.chunks(256.min(lower.store.capacity()).max(1)) {
                let hashes: Vec<SequenceHash> = chunk.iter().map(|s| s.hash).collect();
                let mut pinned = Vec::with_capacity(chunk.len());
                let mut evicted = Vec::with_capacity(chunk.len());
                for (spec, b) in chunk.iter().zip(store.scan(&hashes)) {
                    if let Some(b) = b {
                        evicted.push(Evicted {
                            slot: b.slot(),
                            hash: spec.hash,
                            parent: spec.parent,
                            position: spec.position,
                        });
                        pinned.push(b);
                    }
                }
                let held = self
                    .inner
                    .clone()
                    .demote(tier, evicted, pinned, Demote::Flush)
                    .await;
                store.release(held);
            }
        }
        self.inner.metrics.snapshot().offloaded_blocks - before
    }

    /// Stop accepting write-through work, finish what is queued, and wait for
    /// the workers. In-flight transfers complete before their slots are freed.
    /// Boundaries drain top-down: G1->G2 first, whose last copies may still
    /// queue work for G2->G3.
    pub async fn shutdown(&self) {
        if let Some(c) = &self.inner.cleaner {
            c.stop.store(true, Relaxed);
            c.wake.notify_one();
            let h = self.cleaner.lock().take();
            if let Some(h) = h {
                let _ = h.await;
            }
        }
        for b in 0..2 {
            self.inner.wt_tx.lock()[b] = None;
            let h = self.workers.lock()[b].take();
            if let Some(h) = h {
                let _ = h.await;
            }
        }
    }
}

impl Inner {
    fn tier(&self, t: Tier) -> &TierState {
        self.tiers[t.index()].as_ref().expect("tier present")
    }

    fn engine(&self, a: Tier, b: Tier) -> Arc<dyn CopyEngine> {
        let e = if a == Tier::G3 || b == Tier::G3 {
            &self.disk_engine
        } else {
            &self.device_engine
        };
        e.clone().expect("engines validated when data is on")
    }

    /// Copy `pairs` (source slot, destination slot) from tier `from` to tier
    /// `to`, pinning `guards` (the blocks both sides belong to) until the
    /// bytes have landed, and record the path's metrics. Without data this
    /// is a no-op that succeeds. Returns the result and the guards.
    async fn copy_pinned<G: Send + Unpin + 'static>(
        &self,
        from: Tier,
        to: Tier,
        pairs: &[(usize, usize)],
        guards: G,
    ) -> (Result<(), CopyError>, G) {
        if !self.data || pairs.is_empty() {
            return (Ok(()), guards);
        }
        let start = Instant::now();
        let src_mem = self.tier(from).mem.clone().expect("data on");
        let dst_mem = self.tier(to).mem.clone().expect("data on");
        let (res, guards) = match self.engine(from, to).copy_blocks(&src_mem, &dst_mem, pairs) {
            Ok(t) => Pinned::new(t, guards).await,
            Err(e) => (Err(e), guards),
        };
        let n = pairs.len() as u64;
        self.metrics.path(path(from, to)).record(
            n,
            n * self.block_bytes,
            start.elapsed(),
            res.is_ok(),
        );
        (res, guards)
    }

    /// Allocate in `tier`, first moving its evicted blocks down.
    fn allocate_in(
        self: Arc<Self>,
        tier: Tier,
        n: usize,
    ) -> BoxFut<'static, Result<Vec<MutableBlock>, OffloadError>> {
        Box::pin(async move {
            let mut evicted = Vec::new();
            let blocks = self
                .tier(tier)
                .store
                .allocate_with_evicted(n, &mut evicted)?;
            if evicted.is_empty() {
                return Ok(blocks);
            }
            if tier == Tier::G3 {
                // The victims' slots are about to be rewritten: a persistent
                // G3 must forget them durably first.
                if let Some(j) = &self.journal {
                    let gone: Vec<_> = evicted.iter().map(|e| (e.slot, e.hash)).collect();
                    j.removed(&gone);
                }
            }
            Ok(self.demote(tier, evicted, blocks, Demote::Eviction).await)
        })
    }

    /// Copy `evicted` blocks of `tier` (whose slots `holders` keep from being
    /// rewritten) down one tier, unless it already holds them or the policy
    /// drops them (`force` copies whatever the policy). Returns `holders` once
    /// their bytes are no longer needed.
    async fn demote<H: Send + Unpin + 'static>(
        self: Arc<Self>,
        tier: Tier,
        evicted: Vec<Evicted>,
        holders: H,
        reason: Demote,
    ) -> H {
        let m = &self.metrics;
        let lower_idx = tier.index() + 1;
        let Some(lower) = self.tiers.get(lower_idx).and_then(|t| t.as_ref()) else {
            m.dropped_blocks.fetch_add(evicted.len() as u64, Relaxed);
            return holders;
        };
        // Evicted blocks are out of their tier's index already: until they
        // are registered below (or dropped), lookups wait instead of missing.
        let _transit = (reason == Demote::Eviction)
            .then(|| Transit::enter(&self, evicted.iter().map(|e| e.hash).collect()));
        if let (Tier::G1, Demote::Eviction, Some(c)) = (tier, reason, &self.cleaner) {
            // A victim the cleaner is copying: wait for that copy (its slot
            // must not be rewritten under it), then it is clean.
            let waits: Vec<_> = {
                let busy = c.busy.lock();
                evicted
                    .iter()
                    .filter_map(|e| busy.get(&e.slot).cloned())
                    .collect()
            };
            for w in waits {
                drop(w.lock().await);
            }
        }
        let hashes: Vec<SequenceHash> = evicted.iter().map(|e| e.hash).collect();
        let present = lower.store.contains_all(&hashes);
        let todo: Vec<Evicted> = evicted
            .iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(e, _)| *e)
            .collect();
        if let (Demote::Eviction, Some(c)) = (reason, &self.cleaner) {
            if tier == Tier::G1 {
                let clean = (evicted.len() - todo.len()) as u64;
                let _ = c
                    .clean
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(clean)));
                c.wake.notify_one();
            }
        }
        if todo.is_empty() {
            return holders;
        }
        let force = reason != Demote::Eviction;
        if !force && !matches!(self.write[tier.index()], WritePolicy::WriteBack) {
            // Write-through: what is not below by now was not selected (or
            // its copy is still queued, which pins it, so it was not evicted).
            m.dropped_blocks.fetch_add(todo.len() as u64, Relaxed);
            return holders;
        }
        let lower_tier = lower.store.tier();
        // More victims than the tier below holds: keep the newest that fit.
        let mut todo = todo;
        let fit = lower.store.capacity();
        if todo.len() > fit {
            let extra = todo.len() - fit;
            m.dropped_blocks.fetch_add(extra as u64, Relaxed);
            todo.drain(..extra);
        }
        let dst = match self.clone().allocate_in(lower_tier, todo.len()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(
                    "{lower_tier} full, dropping {} evicted blocks: {e}",
                    todo.len()
                );
                m.dropped_blocks.fetch_add(todo.len() as u64, Relaxed);
                return holders;
            }
        };
        let src_sums: Vec<u64> = {
            let up = self.tier(tier);
            todo.iter()
                .map(|e| up.sums[e.slot as usize].load(Relaxed))
                .collect()
        };
        let pairs: Vec<(usize, usize)> = todo
            .iter()
            .zip(&dst)
            .map(|(e, d)| (e.slot as usize, d.slot() as usize))
            .collect();
        let (res, (holders, dst)) = self
            .copy_pinned(tier, lower_tier, &pairs, (holders, dst))
            .await;
        if let Err(e) = res {
            tracing::warn!(
                "offload {tier}->{lower_tier} of {} blocks failed, dropping them: {e}",
                pairs.len()
            );
            m.offload_errors.fetch_add(1, Relaxed);
            m.dropped_blocks.fetch_add(pairs.len() as u64, Relaxed);
            return holders;
        }
        if self.data {
            let n = pairs.len() as u64;
            match reason {
                Demote::Eviction => {
                    m.eviction_copies.fetch_add(n, Relaxed);
                }
                Demote::Clean => {
                    m.cleaned_blocks.fetch_add(n, Relaxed);
                    if let Some(c) = &self.cleaner {
                        c.clean.fetch_add(n, Relaxed);
                    }
                }
                Demote::Flush => {}
            }
        }
        // Checksums: G1 has none (device bytes), so compute from what landed.
        let mut sums = Vec::with_capacity(dst.len());
        for (i, d) in dst.iter().enumerate() {
            let sum = match (&lower.host, tier) {
                (Some(h), Tier::G1) => match block_checksum(&**h, d.slot() as usize) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot checksum offloaded block: {e}");
                        0
                    }
                },
                _ => src_sums[i],
            };
            sums.push(sum);
        }
        for (d, s) in dst.iter().zip(&sums) {
            lower.sums[d.slot() as usize].store(*s, Relaxed);
        }
        let specs: Vec<BlockSpec> = todo
            .iter()
            .map(|e| BlockSpec {
                hash: e.hash,
                parent: e.parent,
                position: e.position,
            })
            .collect();
        if !self.journal_stored(lower_tier, &dst, &specs, &sums) {
            m.dropped_blocks.fetch_add(dst.len() as u64, Relaxed);
            return holders;
        }
        let registered = lower
            .store
            .register(dst.into_iter().zip(&specs).map(|(d, s)| d.complete(*s)));
        self.queue_write_through(lower_idx, &registered, &specs)
            .await;
        lower.store.release(registered.into_iter().rev());
        holders
    }

    /// Tell the G3 journal about blocks just written to G3 (before they are
    /// registered). False if the journal refused: the caller drops them.
    fn journal_stored(
        &self,
        tier: Tier,
        dst: &[MutableBlock],
        specs: &[BlockSpec],
        sums: &[u64],
    ) -> bool {
        let (Tier::G3, Some(j)) = (tier, &self.journal) else {
            return true;
        };
        let entries: Vec<DurableEntry> = dst
            .iter()
            .zip(specs)
            .zip(sums)
            .map(|((d, s), c)| DurableEntry {
                slot: d.slot(),
                spec: *s,
                checksum: *c,
            })
            .collect();
        match j.stored(&entries) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "G3 journal refused {} blocks, dropping them: {e}",
                    entries.len()
                );
                self.metrics.offload_errors.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Queue newly registered blocks of tier `from` for write-through to the
    /// tier below, per the boundary's policy.
    async fn queue_write_through(
        &self,
        from: usize,
        blocks: &[ImmutableBlock],
        specs: &[BlockSpec],
    ) {
        if from > 1 {
            return;
        }
        let min_seen = match self.write[from] {
            WritePolicy::WriteBack => return,
            WritePolicy::WriteThrough => 0,
            WritePolicy::WriteThroughSelective { min_seen } => min_seen,
        };
        let Some(tx) = self.wt_tx.lock()[from].clone() else {
            return;
        };
        for (b, s) in blocks.iter().zip(specs) {
            if b.hash() != s.hash {
                continue;
            }
            if min_seen > 0 && self.seen.lock().estimate(s.hash) < min_seen {
                continue;
            }
            let item = WtItem {
                block: b.clone(),
                spec: *s,
            };
            if tx.send(item).await.is_err() {
                self.metrics.write_through_skipped.fetch_add(1, Relaxed);
            }
        }
    }

    async fn onboard(self: Arc<Self>, plan: OnboardPlan) -> Result<Onboarded, OffloadError> {
        let OnboardPlan { hashes, entries } = plan;
        let m = &self.metrics;
        let mut served: Vec<Tier> = entries.iter().map(|(t, _)| *t).collect();
        let mut guards: Vec<Option<ImmutableBlock>> =
            entries.into_iter().map(|(_, b)| Some(b)).collect();
        let mut cut = guards.len();
        let mut failures = 0u64;
        // Positions whose G2 copy was verified while staging from G3.
        let mut verified = vec![false; cut];

        // 1. Stage G3 hits into G2 (inclusive: G3 keeps its copy).
        let g3_pos: Vec<usize> = (0..cut).filter(|&i| served[i] == Tier::G3).collect();
        if !g3_pos.is_empty() {
            let g2 = self.tier(Tier::G2);
            let g3 = self.tier(Tier::G3);
            let dst = self.clone().allocate_in(Tier::G2, g3_pos.len()).await?;
            let pairs = pinned_pairs(&g3_pos, &guards, &dst);
            let (res, dst) = self.copy_pinned(Tier::G3, Tier::G2, &pairs, dst).await;
            let ok_copy = match res {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(
                        "onboard G3->G2 failed, recomputing from position {}: {e}",
                        g3_pos[0]
                    );
                    false
                }
            };
            if !ok_copy {
                cut = cut.min(g3_pos[0]);
            } else {
                let mut staged = Vec::with_capacity(dst.len());
                for (&i, d) in g3_pos.iter().zip(dst) {
                    if i >= cut {
                        break;
                    }
                    let src = guards[i].as_ref().expect("pinned");
                    let expect = g3.sums[src.slot() as usize].load(Relaxed);
                    let sum = match &g2.host {
                        Some(h) => Some(block_checksum(&**h, d.slot() as usize)?),
                        None => None,
                    };
                    if sum.is_some_and(|s| s != expect) {
                        tracing::warn!(
                            "G3 block {} failed verification (checksum {:016x}, expected {expect:016x}): recomputing",
                            src.hash(),
                            sum.unwrap_or(0)
                        );
                        failures += 1;
                        g3.store.invalidate(src);
                        if let Some(j) = &self.journal {
                            j.removed(&[(src.slot(), src.hash())]);
                        }
                        cut = i;
                        break;
                    }
                    g2.sums[d.slot() as usize].store(sum.unwrap_or(0), Relaxed);
                    staged.push((i, d.complete(BlockSpec::at(&hashes, i))));
                }
                let (pos, blocks): (Vec<usize>, Vec<CompleteBlock>) = staged.into_iter().unzip();
                let specs: Vec<BlockSpec> = blocks.iter().map(|b| b.spec()).collect();
                let registered = g2.store.register(blocks);
                self.queue_write_through(1, &registered, &specs).await;
                for (i, b) in pos.into_iter().zip(registered) {
                    guards[i] = Some(b); // the G3 guard drops here
                    verified[i] = true;
                }
            }
        }

        // 2. Verify G2 copies and move them into G1.
        let g2_pos: Vec<usize> = (0..cut).filter(|&i| served[i] != Tier::G1).collect();
        if !g2_pos.is_empty() {
            let g2 = self.tier(Tier::G2);
            if let Some(h) = &g2.host {
                for &i in &g2_pos {
                    if i >= cut {
                        break;
                    }
                    if verified[i] {
                        continue;
                    }
                    let b = guards[i].as_ref().expect("pinned");
                    let expect = g2.sums[b.slot() as usize].load(Relaxed);
                    let sum = block_checksum(&**h, b.slot() as usize)?;
                    if sum != expect {
                        tracing::warn!("G2 block {} failed verification: recomputing", b.hash());
                        failures += 1;
                        g2.store.invalidate(b);
                        cut = i;
                        break;
                    }
                }
            }
            let g2_pos: Vec<usize> = g2_pos.into_iter().filter(|&i| i < cut).collect();
            if !g2_pos.is_empty() {
                let g1 = self.tier(Tier::G1);
                let dst = self.clone().allocate_in(Tier::G1, g2_pos.len()).await?;
                let pairs = pinned_pairs(&g2_pos, &guards, &dst);
                let (res, dst) = self.copy_pinned(Tier::G2, Tier::G1, &pairs, dst).await;
                if let Err(e) = res {
                    tracing::warn!(
                        "onboard G2->G1 failed, recomputing from position {}: {e}",
                        g2_pos[0]
                    );
                    cut = cut.min(g2_pos[0]);
                }
                let take: Vec<(usize, MutableBlock)> = g2_pos
                    .into_iter()
                    .zip(dst)
                    .filter(|(i, _)| *i < cut)
                    .collect();
                let (pos, blocks): (Vec<usize>, Vec<MutableBlock>) = take.into_iter().unzip();
                let registered = g1.store.register(
                    blocks
                        .into_iter()
                        .zip(&pos)
                        .map(|(b, &i)| b.complete(BlockSpec::at(&hashes, i))),
                );
                for (i, b) in pos.into_iter().zip(registered) {
                    guards[i] = Some(b); // the G2 guard drops here
                }
            }
        }

        let mut hits = [0u64; 3];
        served.truncate(cut);
        let blocks: Vec<ImmutableBlock> = guards
            .into_iter()
            .take(cut)
            .enumerate()
            .map(|(i, g)| {
                hits[served[i].index()] += 1;
                g.expect("every served position has a G1 guard")
            })
            .collect();
        if failures > 0 {
            m.verify_failures.fetch_add(failures, Relaxed);
        }
        Ok(Onboarded {
            blocks,
            hits_by_tier: hits,
            verify_failures: failures,
            served,
        })
    }
}

/// Background copier for one write-through boundary: batches queued blocks,
/// skips those the lower tier already holds, copies and registers the rest.
async fn write_through_worker(inner: Arc<Inner>, from: Tier, mut rx: mpsc::Receiver<WtItem>) {
    let lower_tier = Tier::ALL[from.index() + 1];
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let lower = inner.tier(lower_tier);
        let hashes: Vec<SequenceHash> = batch.iter().map(|w| w.spec.hash).collect();
        let present = lower.store.contains_all(&hashes);
        let todo: Vec<WtItem> = batch
            .drain(..)
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(w, _)| w)
            .collect();
        if todo.is_empty() {
            continue;
        }
        let dst = match inner.clone().allocate_in(lower_tier, todo.len()).await {
            Ok(d) => d,
            Err(_) => {
                inner
                    .metrics
                    .write_through_skipped
                    .fetch_add(todo.len() as u64, Relaxed);
                continue;
            }
        };
        let up = inner.tier(from);
        let src_sums: Vec<u64> = todo
            .iter()
            .map(|w| up.sums[w.block.slot() as usize].load(Relaxed))
            .collect();
        let pairs: Vec<(usize, usize)> = todo
            .iter()
            .zip(&dst)
            .map(|(w, d)| (w.block.slot() as usize, d.slot() as usize))
            .collect();
        let (res, (todo, dst)) = inner
            .copy_pinned(from, lower_tier, &pairs, (todo, dst))
            .await;
        if res.is_err() {
            inner.metrics.offload_errors.fetch_add(1, Relaxed);
            continue;
        }
        let mut sums = Vec::with_capacity(dst.len());
        for (i, d) in dst.iter().enumerate() {
            let s = match (&lower.host, from) {
                (Some(h), Tier::G1) => block_checksum(&**h, d.slot() as usize).unwrap_or(0),
                _ => src_sums[i],
            };
            lower.sums[d.slot() as usize].store(s, Relaxed);
            sums.push(s);
        }
        let specs: Vec<BlockSpec> = todo.iter().map(|w| w.spec).collect();
        if !inner.journal_stored(lower_tier, &dst, &specs, &sums) {
            inner
                .metrics
                .dropped_blocks
                .fetch_add(dst.len() as u64, Relaxed);
            continue;
        }
        let registered = lower
            .store
            .register(dst.into_iter().zip(&specs).map(|(d, s)| d.complete(*s)));
        inner
            .queue_write_through(lower_tier.index(), &registered, &specs)
            .await;
        lower.store.release(registered.into_iter().rev());
        drop(todo);
    }
}

/// Proactive cleaning (write-back, G1 -> G2): copies G1's oldest released
/// blocks down before they are evicted, keeping about `ahead` of them clean,
/// so evictions find their victims already in G2 and do not wait for a copy.
///
/// Safety against slot reuse without pinning (a guard would change the
/// eviction order): the cleaner registers a lock for each source slot
/// *before* re-checking that the slot still holds the block; an eviction of
/// that slot waits for the lock before its new owner may write the slot.
async fn cleaner_task(inner: Arc<Inner>) {
    let c = inner.cleaner.as_ref().expect("spawned with a cleaner");
    let g1 = &inner.tier(Tier::G1).store;
    let g2 = &inner.tier(Tier::G2).store;
    loop {
        if c.stop.load(Relaxed) {
            return;
        }
        let room = c
            .ahead
            .saturating_sub(c.clean.load(Relaxed) as usize)
            .min(64);
        let batch: Vec<SequenceHash> = if room == 0 {
            Vec::new()
        } else {
            let mut q = c.released.lock();
            let n = room.min(q.len());
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            c.wake.notified().await;
            continue;
        }
        // Still in G1, not yet in G2.
        let below = g2.contains_all(&batch);
        let hashes: Vec<SequenceHash> = batch
            .into_iter()
            .zip(below)
            .filter(|(_, b)| !b)
            .map(|(h, _)| h)
            .collect();
        let found: Vec<(kvtier_logical::SlotId, BlockSpec)> =
            g1.peek(&hashes).into_iter().flatten().collect();
        if found.is_empty() {
            continue;
        }
        // Lock the source slots, then re-check that each still holds its block.
        let mut guards = Vec::with_capacity(found.len());
        let mut locked = Vec::with_capacity(found.len());
        {
            let mut busy = c.busy.lock();
            for &(slot, spec) in &found {
                if busy.contains_key(&slot) {
                    continue;
                }
                let m = Arc::new(tokio::sync::Mutex::new(()));
                let g = m.clone().try_lock_owned().expect("fresh lock");
                busy.insert(slot, m);
                guards.push(g);
                locked.push((slot, spec));
            }
        }
        let now: Vec<SequenceHash> = locked.iter().map(|(_, s)| s.hash).collect();
        let again = g1.peek(&now);
        let victims: Vec<Evicted> = locked
            .iter()
            .zip(again)
            .filter(|((slot, _), p)| p.is_some_and(|(s2, _)| s2 == *slot))
            .map(|((slot, spec), _)| Evicted {
                slot: *slot,
                hash: spec.hash,
                parent: spec.parent,
                position: spec.position,
            })
            .collect();
        let guards = inner
            .clone()
            .demote(Tier::G1, victims, guards, Demote::Clean)
            .await;
        {
            let mut busy = c.busy.lock();
            for (slot, _) in &locked {
                busy.remove(slot);
            }
        }
        drop(guards);
    }
}
