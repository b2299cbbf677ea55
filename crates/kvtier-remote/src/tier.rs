//! [`RemoteTier`]: a G4 tier on an object store, the
//! [`kvtier_offload::SharedTier`] the offload engine calls.

use crate::config::{Backpressure, RemoteConfig};
use crate::error::RemoteError;
use crate::format;
use crate::index::Index;
use crate::stats::{self, Counters};
use kvtier_logical::prometheus::Exposition;
use kvtier_logical::SequenceHash;
use kvtier_memory::BlockShape;
use kvtier_offload::{SharedBlock, SharedFuture, SharedStats, SharedTier};
use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// The state the tier's handle and its background tasks share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `<prefix>/<namespace>`: every object of this salt and layout.
    pub(crate) dir: Path,
    pub(crate) fingerprint: u64,
    pub(crate) cfg: RemoteConfig,
    pub(crate) index: Index,
    pub(crate) counters: Counters,
    /// One permit per write in flight.
    pub(crate) writes: Arc<Semaphore>,
    /// Blocks being written (not offered twice).
    pub(crate) pending: Mutex<HashSet<u128>>,
    /// Bytes of writes in flight and of deletes not done yet (counted
    /// against the budget with the index's bytes).
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) deleting_bytes: AtomicU64,
    /// False once the store refused a conditional create as unsupported.
    pub(crate) conditional: AtomicBool,
    /// Wakes the evictor.
    pub(crate) evict: Notify,
    /// Wakes writers waiting for room in the budget.
    pub(crate) room: Notify,
    pub(crate) closed: AtomicBool,
}

/// A G4 tier: one object per block under `<prefix>/<namespace>/<hash>`, a
/// local index answering lookups, bounded background writes, reads under a
/// deadline, a byte budget enforced by batched deletes of the least
/// recently used objects. See the crate docs.
pub struct RemoteTier {
    pub(crate) shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RemoteTier {
    /// Open the store `cfg.url` names, for blocks of `shape` hashed with
    /// `salt`, list the namespace into the index and start the background
    /// tasks (index refresh, eviction). Inside a tokio runtime.
    pub async fn open(
        cfg: RemoteConfig,
        salt: u64,
        shape: &BlockShape,
    ) -> Result<Arc<RemoteTier>, RemoteError> {
        cfg.validate()?;
        let (store, prefix) = cfg.open_store()?;
        Self::open_with_store(store, prefix, cfg, salt, shape.fingerprint()).await
    }

    /// [`RemoteTier::open`] on a store built by the caller, objects under
    /// `prefix`.
    pub async fn open_with_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        cfg: RemoteConfig,
        salt: u64,
        fingerprint: u64,
    ) -> Result<Arc<RemoteTier>, RemoteError> {
        cfg.validate()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RemoteError::NoRuntime)?;
        let ns = format::namespace(salt, fingerprint);
        let dir = if prefix.as_ref().is_empty() {
            Path::from(ns)
        } else {
            prefix.clone().join(ns)
        };
        let shared = Arc::new(Shared {
            store,
            dir,
            fingerprint,
            writes: Arc::new(Semaphore::new(cfg.in_flight)),
            cfg,
            index: Index::new(),
            counters: Counters::default(),
            pending: Mutex::new(HashSet::new()),
            pending_bytes: AtomicU64::new(0),
            deleting_bytes: AtomicU64::new(0),
            conditional: AtomicBool::new(true),
            evict: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
        });
        // A store down at start-up does not stop the node: it starts with an
        // empty index, filled by the background listing once the store is back.
        if let Err(e) = shared.list().await {
            tracing::warn!(
                "G4 listing of {} at start-up failed ({e}): starting with an empty index",
                shared.dir
            );
        }
        let mut tasks = vec![handle.spawn(shared.clone().evictor())];
        if shared.cfg.refresh_secs > 0 {
            let s = shared.clone();
            let every = Duration::from_secs(s.cfg.refresh_secs);
            tasks.push(handle.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if s.closed.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = s.list().await {
                        tracing::debug!("G4 index refresh: {e}");
                    }
                }
            }));
        }
        // A namespace over budget at start-up is trimmed right away.
        shared.evict.notify_one();
        Ok(Arc::new(RemoteTier {
            shared,
            tasks: Mutex::new(tasks),
        }))
    }

    /// The directory (`<prefix>/<namespace>`) holding this tier's objects.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.shared.cfg
    }

    /// Read the namespace's listing into the index now (as the background
    /// refresh does): new objects are added, entries of objects gone are
    /// dropped.
    pub async fn refresh(&self) -> Result<(), object_store::Error> {
        self.shared.list().await
    }

    /// Wait until no write is in flight (writes offered later are not
    /// waited for).
    pub async fn flush(&self) {
        let n = u32::try_from(self.shared.cfg.in_flight).unwrap_or(u32::MAX);
        if let Ok(p) = self.shared.writes.acquire_many(n).await {
            drop(p);
        }
    }

    /// Entries in the local index.
    pub fn index_len(&self) -> usize {
        self.shared.index.len()
    }
}

impl Drop for RemoteTier {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl SharedTier for RemoteTier {
    fn matched(&self, hashes: &[SequenceHash]) -> usize {
        self.shared.index.matched(hashes)
    }

    fn wants(&self, hash: SequenceHash) -> bool {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire)
            || s.index.contains(hash)
            || s.pending.lock().contains(&hash.0)
        {
            return false;
        }
        if s.cfg.backpressure == Backpressure::Skip && s.writes.available_permits() == 0 {
            // Not worth copying the bytes: counted as skipped here.
            stats::add(&s.counters.write_skipped, 1);
            return false;
        }
        true
    }

    fn store(&self, block: SharedBlock) -> SharedFuture<'_, ()> {
        Box::pin(self.shared.clone().store(block))
    }

    fn load(&self, hashes: Vec<SequenceHash>) -> SharedFuture<'_, Vec<SharedBlock>> {
        Box::pin(self.shared.load(hashes))
    }

    fn close(&self) -> SharedFuture<'_, ()> {
        Box::pin(async move {
            let s = &self.shared;
            s.closed.store(true, Ordering::Release);
            s.room.notify_waiters();
            // Every permit back: no write in flight.
            self.flush().await;
            s.evict.notify_one();
            for t in self.tasks.lock().drain(..) {
                t.abort();
            }
        })
    }

    fn stats(&self) -> SharedStats {
        let s = &self.shared;
        s.counters.snapshot(s.index.len() as u64, s.index.bytes())
    }

    fn write_prometheus(&self, e: &mut Exposition) {
        stats::write_prometheus(&self.stats(), e);
    }
}
