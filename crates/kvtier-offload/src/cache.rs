//! The [`TieredCache`] handle: inspection (store views, metrics), the start
//! of a request, and the clean stop ([`TieredCache::close`]).

use crate::durable::RestoreStats;
use crate::error::{OffloadError, SetupError};
use crate::metrics::MetricsSnapshot;
use crate::offload::Reason;
use crate::priority::{Foreground, Urgent};
use crate::request::RequestSequence;
use crate::shared::{SharedStats, SharedTier};
use crate::state::{Data, Inner};
use crate::view::StoreView;
use kvtier_logical::prometheus::Exposition;
use kvtier_logical::{BlockSpec, Evicted, ImmutableBlock, SequenceHash, Tier, TierMetrics};
use kvtier_memory::HostVisible;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// G1..G3 block stores and memories plus the engine moving blocks between
/// them. Cheap to clone (a shared handle).
///
/// Requests are driven through [`TieredCache::request`]; the stores are
/// exposed read-only ([`TieredCache::store`]), so nothing allocates or
/// registers around write-back, write-through and the checksums.
#[derive(Clone)]
pub struct TieredCache {
    pub(crate) inner: Arc<Inner>,
    /// The background tasks, joined by [`TieredCache::close`].
    tasks: Arc<Mutex<Tasks>>,
}

/// The background tasks of a cache.
pub(crate) struct Tasks {
    /// Write-through worker per boundary (top down).
    pub(crate) workers: Vec<Option<JoinHandle<()>>>,
    /// The proactive cleaner, if any.
    pub(crate) cleaner: Option<JoinHandle<()>>,
}

impl Tasks {
    /// No tasks yet, for a cache with `boundaries` tier boundaries.
    pub(crate) fn new(boundaries: usize) -> Tasks {
        Tasks {
            workers: (0..boundaries).map(|_| None).collect(),
            cleaner: None,
        }
    }
}

/// What [`TieredCache::close`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// Blocks copied down at the end so a persistent G3 holds everything the
    /// cache held (0 without a journal).
    pub flushed_blocks: u64,
}

impl TieredCache {
    pub(crate) fn from_parts(inner: Arc<Inner>, tasks: Tasks) -> TieredCache {
        TieredCache {
            inner,
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// Start a request over a chain of block hashes (block `i`'s parent is
    /// block `i - 1`). Nothing is looked up or held until its first step.
    pub fn request(&self, hashes: &[SequenceHash]) -> RequestSequence {
        RequestSequence::new(self.clone(), hashes.to_vec(), None)
    }

    /// Start a request over blocks with explicit identities (e.g. keys with
    /// no parent chain). `specs[i].hash` is looked up at position `i`.
    pub fn request_with_specs(&self, specs: Vec<BlockSpec>) -> RequestSequence {
        let hashes = specs.iter().map(|s| s.hash).collect();
        RequestSequence::new(self.clone(), hashes, Some(specs))
    }

    /// A read-only view of `tier`'s block store, if the tier is present.
    pub fn store(&self, tier: Tier) -> Option<StoreView<'_>> {
        self.inner.tiers.get(tier).map(|t| StoreView::new(&t.store))
    }

    /// The tiers present, fastest first.
    pub fn tiers(&self) -> Vec<Tier> {
        self.inner.tiers.iter().map(|t| t.tier).collect()
    }

    /// G1's capacity in blocks (the most one request can hold).
    pub fn g1_capacity(&self) -> usize {
        self.inner.tiers.g1().store.capacity()
    }

    /// Whether block bytes are moved and verified.
    pub fn has_data(&self) -> bool {
        matches!(self.inner.data, Data::On(_))
    }

    /// Bytes per block (0 without data).
    pub fn block_bytes(&self) -> u64 {
        self.inner.block_bytes()
    }

    /// Byte views of `tier`'s memory, if it is host-visible (host, pinned,
    /// mmap'd disk). For a caller moving bytes between its own buffers and
    /// blocks its requests hold; the memory's block locks still apply.
    pub fn host_view(&self, tier: Tier) -> Option<Arc<dyn HostVisible>> {
        self.inner.host_view(tier)
    }

    /// What start-up restored into G3 from a previous run.
    pub fn restored(&self) -> RestoreStats {
        self.inner.restored
    }

    /// Attach a tier shared with other nodes below the local ones (G4):
    /// blocks registered in G2 are offered to it, prefix matches continue
    /// in it, and [`TieredCache::close`] waits for its writes. Needs G2 with
    /// data on; once per cache.
    pub fn attach_shared(&self, shared: Arc<dyn SharedTier>) -> Result<(), SetupError> {
        if !self.has_data() || self.inner.tiers.get(Tier::G2).is_none() {
            return Err(SetupError::SharedNeedsG2);
        }
        self.inner
            .shared
            .set(shared)
            .map_err(|_| SetupError::SharedAttached)
    }

    /// Which of `hashes` the attached shared tier's local index holds (all
    /// false without one). No round trip; a stale entry costs a failed load.
    pub fn shared_contains(&self, hashes: &[SequenceHash]) -> Vec<bool> {
        match self.inner.shared.get() {
            Some(s) => hashes
                .iter()
                .map(|h| s.matched(std::slice::from_ref(h)) == 1)
                .collect(),
            None => vec![false; hashes.len()],
        }
    }

    /// The shared tier's counters, if one is attached.
    pub fn shared_stats(&self) -> Option<SharedStats> {
        self.inner.shared.get().map(|s| s.stats())
    }

    /// Mark foreground work (an engine's load) in flight until the guard
    /// drops: background copies (cleaning, write-through) wait meanwhile,
    /// each batch at most [`TieredCache::set_max_yield`] in all, in pieces
    /// of at most [`crate::priority::PIECE_BYTES`] (see [`crate::priority`]).
    /// The cache's runtime must have time enabled.
    pub fn foreground(&self) -> Foreground {
        self.inner.priority.foreground()
    }

    /// Mark a wait for background work (room the write-through frees, a
    /// copy to land) until the guard drops: meanwhile background copies do
    /// not yield to foreground work, so the wait is not made longer by it.
    pub fn urgent(&self) -> Urgent {
        self.inner.priority.urgent()
    }

    /// Set how long one batch of background copies may yield to foreground
    /// work in all (default [`crate::priority::MAX_YIELD`]; zero: never
    /// yield).
    pub fn set_max_yield(&self, bound: Duration) {
        self.inner.priority.set_max_yield(bound);
    }

    /// Movement counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Prometheus text: every tier's store metrics plus every path's.
    pub fn to_prometheus(&self) -> String {
        let mut e = Exposition::new();
        self.write_prometheus(&mut e);
        e.encode()
    }

    /// Add every tier's store metrics and every path's to `e` (to be encoded
    /// with other components' metrics, such as the event publisher's).
    pub fn write_prometheus(&self, e: &mut Exposition) {
        let stores: Vec<TierMetrics> = self.inner.tiers.iter().map(|t| t.store.metrics()).collect();
        kvtier_logical::write_prometheus(&stores, e);
        self.inner.metrics.write_prometheus(e);
        if let Some(shared) = self.inner.shared.get() {
            shared.write_prometheus(e);
        }
    }

    /// Copy every block of each tier that the tier below lacks down to it
    /// (G1 -> G2, then G2 -> G3), so that the last tier holds everything
    /// the cache holds: a clean stop of a persistent G3 loses nothing.
    /// Returns the blocks copied.
    pub async fn flush_down(&self) -> u64 {
        let inner = &self.inner;
        let before = inner.metrics.snapshot().offloaded_blocks;
        for t in inner.tiers.iter() {
            let Some(lower) = inner.tiers.below(t.tier) else {
                break;
            };
            let store = &t.store;
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
                let mut pinned: Vec<ImmutableBlock> = Vec::with_capacity(chunk.len());
                let mut blocks = Vec::with_capacity(chunk.len());
                for (spec, b) in chunk.iter().zip(store.scan(&hashes)) {
                    if let Some(b) = b {
                        blocks.push(Evicted {
                            slot: b.slot(),
                            hash: spec.hash,
                            parent: spec.parent,
                            position: spec.position,
                        });
                        pinned.push(b);
                    }
                }
                let held = inner
                    .clone()
                    .copy_down(t.tier, blocks, pinned, Reason::Flush)
                    .await;
                store.release(held);
            }
        }
        inner.metrics.snapshot().offloaded_blocks - before
    }

    /// Stop the background tasks: the cleaner first, then each
    /// write-through boundary top down (G1->G2 first, whose last copies may
    /// still queue work for G2->G3), each finishing what is queued.
    /// In-flight transfers complete before their slots are freed.
    async fn shutdown(&self) {
        if let Some(c) = &self.inner.cleaner {
            c.stop();
            let h = self.tasks.lock().cleaner.take();
            if let Some(h) = h {
                let _ = h.await;
            }
        }
        let boundaries = self.inner.write.len();
        for b in 0..boundaries {
            if let Some(tx) = self.inner.wt_tx.lock().get_mut(b) {
                *tx = None;
            }
            let h = self.tasks.lock().workers.get_mut(b).and_then(Option::take);
            if let Some(h) = h {
                let _ = h.await;
            }
        }
    }

    /// Stop cleanly, in order: flush every block down to a persistent G3
    /// (when a journal is configured), stop the cleaner and the
    /// write-through workers (finishing their queues), then close the
    /// journal so everything it was told is durable. Requests started
    /// afterwards are refused ([`OffloadError::Closed`]); the stores stay
    /// readable. A second call does nothing.
    pub async fn close(&self) -> Result<Closed, OffloadError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(Closed::default());
        }
        // The stop waits for the background copies: none of them yields to
        // foreground work still in flight.
        let _urgent = self.urgent();
        // A shared tier is offered every block: flush G1 into G2 too.
        let flushed_blocks = match (&self.inner.journal, self.inner.shared.get()) {
            (None, None) => 0,
            _ => self.flush_down().await,
        };
        self.shutdown().await;
        if let Some(shared) = self.inner.shared.get() {
            shared.close().await;
        }
        if let Some(j) = &self.inner.journal {
            j.close().map_err(OffloadError::Journal)?;
        }
        Ok(Closed { flushed_blocks })
    }
}

impl Inner {
    /// Release a request's G1 blocks, in the order given (tail first is the
    /// reference order); the cleaner learns of them.
    pub(crate) fn release<I: IntoIterator<Item = ImmutableBlock>>(&self, blocks: I) {
        let g1 = &self.tiers.g1().store;
        match &self.cleaner {
            None => g1.release(blocks),
            Some(c) => {
                let blocks: Vec<ImmutableBlock> = blocks.into_iter().collect();
                c.note_released(&blocks, g1.capacity());
                g1.release(blocks);
                c.wake();
            }
        }
    }
}
