//! Background upkeep: listing the namespace into the index, and evicting
//! least recently used objects in batched deletes when the index passes the
//! high watermark.

use crate::format;
use crate::stats::add;
use crate::tier::Shared;
use futures::StreamExt;
use kvtier_logical::SequenceHash;
use object_store::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Listed objects handed to the index at once.
const LIST_CHUNK: usize = 1024;

impl Shared {
    /// List the namespace: add new objects to the index, drop entries of
    /// objects no longer there (counted as self-healed).
    pub(crate) async fn list(&self) -> Result<(), object_store::Error> {
        let generation = self.index.begin_listing();
        let mut listing = self.store.list(Some(&self.dir));
        let mut chunk = Vec::with_capacity(LIST_CHUNK);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if let Some(h) = format::hash_of_key(&meta.location) {
                chunk.push((h, meta.size));
            }
            if chunk.len() == LIST_CHUNK {
                self.index.listed(generation, &chunk);
                chunk.clear();
            }
        }
        self.index.listed(generation, &chunk);
        let dropped = self.index.end_listing(generation);
        add(&self.counters.self_healed, dropped);
        Ok(())
    }

    /// The eviction task: woken when a write passes the high watermark,
    /// deletes least recently used objects down to the low watermark in
    /// batches (`DeleteObjects` on S3: up to 1,000 keys per request).
    pub(crate) async fn evictor(self: Arc<Self>) {
        loop {
            self.evict.notified().await;
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let cap = self.cfg.capacity;
            let pending = self.pending_bytes.load(Ordering::Acquire);
            if cap == 0 || (!self.over_high() && self.index.bytes() + pending <= cap) {
                self.room.notify_waiters();
                continue;
            }
            let low = (cap as f64 * self.cfg.low_watermark) as u64;
            let victims = self.index.take_lru(low);
            self.delete(victims).await;
            self.room.notify_waiters();
        }
    }

    /// Delete `victims` (already out of the index), their bytes counted
    /// against the budget until the deletes are done.
    async fn delete(&self, victims: Vec<(SequenceHash, u64)>) {
        if victims.is_empty() {
            return;
        }
        let bytes: u64 = victims.iter().map(|v| v.1).sum();
        self.deleting_bytes.fetch_add(bytes, Ordering::AcqRel);
        let keys: Vec<Path> = victims
            .iter()
            .map(|(h, _)| format::object_key(&self.dir, *h))
            .collect();
        let locations = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut done = self.store.delete_stream(locations);
        let mut deleted = 0;
        while let Some(r) = done.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => tracing::debug!("G4 eviction delete failed: {e}"),
            }
        }
        add(&self.counters.evicted, deleted);
        self.deleting_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}
