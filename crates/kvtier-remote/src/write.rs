//! Writes: create-once puts in the background, at most `in_flight` at a
//! time, skipped (counted) or waited for under backpressure, and held back
//! while the byte budget has no room.

use crate::config::{Backpressure, CreateMode};
use crate::format;
use crate::stats::add;
use crate::tier::Shared;
use kvtier_offload::SharedBlock;
use object_store::{PutMode, PutOptions, PutPayload};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a waiting writer sleeps between checks of the budget (it is
/// also woken by every eviction).
const ROOM_POLL: Duration = Duration::from_millis(50);

impl Shared {
    /// Offer a block (see [`kvtier_offload::SharedTier::store`]).
    pub(crate) async fn store(self: Arc<Self>, block: SharedBlock) {
        let c = &self.counters;
        if self.closed.load(Ordering::Acquire) || self.index.contains(block.hash) {
            return;
        }
        // The G2 bytes must still be the ones checksummed: never share a
        // block whose bytes disagree with its checksum.
        if xxhash_rust::xxh3::xxh3_64(&block.bytes) != block.checksum {
            tracing::warn!(
                "not sharing block {}: bytes disagree with its checksum",
                block.hash
            );
            add(&c.write_skipped, 1);
            return;
        }
        if !self.pending.lock().insert(block.hash.0) {
            return;
        }
        let object = format::encode(self.fingerprint, block.hash, block.checksum, &block.bytes);
        let len = object.len() as u64;
        let permit = match self.cfg.backpressure {
            Backpressure::Skip => self.writes.clone().try_acquire_owned().ok(),
            Backpressure::Wait => self.writes.clone().acquire_owned().await.ok(),
        };
        let admitted = permit.is_some() && self.reserve(len).await;
        let Some(permit) = permit.filter(|_| admitted) else {
            self.pending.lock().remove(&block.hash.0);
            add(&c.write_skipped, 1);
            return;
        };
        let s = self.clone();
        tokio::spawn(async move {
            let ok = s.put(block.hash, object).await;
            if ok {
                s.index.insert(block.hash, len);
                add(&s.counters.objects_written, 1);
                add(&s.counters.bytes_written, len);
            } else {
                add(&s.counters.write_failures, 1);
                add(&s.counters.write_skipped, 1);
            }
            s.pending_bytes.fetch_sub(len, Ordering::AcqRel);
            s.pending.lock().remove(&block.hash.0);
            s.over_high().then(|| s.evict.notify_one());
            drop(permit);
        });
    }

    /// Room for `len` more bytes within the budget (index + writes in
    /// flight + deletes not done): reserved and true, or false (skip mode
    /// with no room, or closed). Wait mode waits for the evictor.
    async fn reserve(&self, len: u64) -> bool {
        let cap = self.cfg.capacity;
        loop {
            let used = self.index.bytes()
                + self.pending_bytes.load(Ordering::Acquire)
                + self.deleting_bytes.load(Ordering::Acquire);
            if cap == 0 || used + len <= cap {
                self.pending_bytes.fetch_add(len, Ordering::AcqRel);
                return true;
            }
            self.evict.notify_one();
            if len > cap
                || self.cfg.backpressure == Backpressure::Skip
                || self.closed.load(Ordering::Acquire)
            {
                return false;
            }
            let _ = tokio::time::timeout(ROOM_POLL, self.room.notified()).await;
        }
    }

    /// Whether the index is above the high watermark.
    pub(crate) fn over_high(&self) -> bool {
        let cap = self.cfg.capacity;
        cap > 0 && self.index.bytes() as f64 > cap as f64 * self.cfg.high_watermark
    }

    /// Create the object; true if it exists afterwards (created here or by
    /// another writer).
    async fn put(&self, hash: kvtier_logical::SequenceHash, object: Vec<u8>) -> bool {
        let key = format::object_key(&self.dir, hash);
        let payload = PutPayload::from(object);
        let conditional =
            self.cfg.create == CreateMode::Conditional && self.conditional.load(Ordering::Relaxed);
        if conditional {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self.store.put_opts(&key, payload.clone(), opts).await {
                Ok(_) => return true,
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => return true,
                Err(object_store::Error::NotImplemented { .. })
                | Err(object_store::Error::NotSupported { .. }) => {
                    tracing::info!("G4 store has no conditional create: plain puts from now on");
                    self.conditional.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!("G4 write of {hash} failed: {e}");
                    return false;
                }
            }
        }
        match self
            .store
            .put_opts(&key, payload, PutOptions::default())
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("G4 write of {hash} failed: {e}");
                false
            }
        }
    }
}
