//! Reads: the blocks of one onboarding, a few in flight at once, under one
//! deadline; each object checked (header, layout, block, checksum) before
//! its bytes are handed out.

use crate::format;
use crate::stats::add;
use crate::tier::Shared;
use futures::StreamExt;
use kvtier_logical::SequenceHash;
use kvtier_offload::SharedBlock;
use object_store::ObjectStoreExt;
use std::time::Duration;

impl Shared {
    /// Read `hashes` in order; the leading run read and verified before the
    /// deadline (see [`kvtier_offload::SharedTier::load`]).
    pub(crate) async fn load(&self, hashes: Vec<SequenceHash>) -> Vec<SharedBlock> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.deadline_ms);
        let mut reads = futures::stream::iter(hashes.into_iter().map(|h| self.read_one(h)))
            .buffered(self.cfg.read_parallelism);
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, reads.next()).await {
                Ok(Some(Some(b))) => out.push(b),
                Ok(_) => break,
                Err(_) => {
                    tracing::debug!("G4 read deadline passed after {} blocks", out.len());
                    add(&self.counters.read_failures, 1);
                    break;
                }
            }
        }
        let got: Vec<SequenceHash> = out.iter().map(|b| b.hash).collect();
        self.index.touch(&got);
        out
    }

    /// One object: its block, or `None` (counted; a missing or bad object
    /// also drops its index entry, and a bad one is deleted so that a
    /// writer can create it again).
    async fn read_one(&self, hash: SequenceHash) -> Option<SharedBlock> {
        let key = format::object_key(&self.dir, hash);
        let c = &self.counters;
        let got = match self.store.get(&key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let object = match got {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                add(&c.read_failures, 1);
                if self.index.remove(hash) {
                    add(&c.self_healed, 1);
                }
                return None;
            }
            Err(e) => {
                tracing::debug!("G4 read of {hash} failed: {e}");
                add(&c.read_failures, 1);
                return None;
            }
        };
        match format::decode(&object, self.fingerprint, hash) {
            Ok((checksum, bytes)) => {
                add(&c.objects_read, 1);
                add(&c.bytes_read, object.len() as u64);
                Some(SharedBlock {
                    hash,
                    checksum,
                    bytes: bytes.to_vec(),
                })
            }
            Err(e) => {
                tracing::warn!("G4 object {key} is bad ({e}): a miss, deleted");
                add(&c.read_failures, 1);
                if self.index.remove(hash) {
                    add(&c.self_healed, 1);
                }
                if let Err(e) = self.store.delete(&key).await {
                    tracing::debug!("deleting bad G4 object {key}: {e}");
                }
                None
            }
        }
    }
}
