//! Write-through: every newly registered block of a write-through boundary
//! (or, selectively, every block seen often enough) is queued and copied
//! down in the background by one worker per boundary. The queue is bounded:
//! registration waits when it is full (backpressure). The queued guard pins
//! the block, so it cannot be evicted before its copy lands.

use crate::offload::Reason;
use crate::setup::WritePolicy;
use crate::state::Inner;
use kvtier_logical::{BlockSpec, Evicted, ImmutableBlock, Tier};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One queued block: its guard (pinning it) and identity.
pub(crate) struct WtItem {
    block: ImmutableBlock,
    spec: BlockSpec,
}

impl Inner {
    /// Queue newly registered blocks of tier `from` for write-through to the
    /// tier below, per the boundary's policy (`specs[i]` is what `blocks[i]`
    /// was registered as; a block that came back as an earlier duplicate is
    /// skipped).
    pub(crate) async fn queue_write_through(
        &self,
        from: Tier,
        blocks: &[ImmutableBlock],
        specs: &[BlockSpec],
    ) {
        let min_seen = match self.write_policy(from) {
            WritePolicy::WriteBack => return,
            WritePolicy::WriteThrough => 0,
            WritePolicy::WriteThroughSelective { min_seen } => min_seen,
        };
        let Some(tx) = self.wt_tx.lock().get(from.index()).cloned().flatten() else {
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
            let sent = match tx.try_send(item) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(item)) => {
                    // A full queue: wait for the worker, which must not
                    // yield to foreground work meanwhile.
                    let _urgent = self.priority.urgent();
                    tx.send(item).await.map_err(drop)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
            };
            if sent.is_err() {
                self.metrics.write_through_skipped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Background copier for one write-through boundary: batches queued blocks
/// and copies them down (the copy-down path skips those the tier below
/// already holds). Ends when the queue's sender is dropped and it is empty.
pub(crate) async fn write_through_worker(
    inner: Arc<Inner>,
    from: Tier,
    mut rx: mpsc::Receiver<WtItem>,
) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        // Unpin at once what the tier below already holds (the copy-down
        // path would skip it too, but would keep it pinned until the batch
        // is done).
        let todo: Vec<WtItem> = match inner.tiers.below(from) {
            Some(lower) => {
                let hashes: Vec<_> = batch.iter().map(|w| w.spec.hash).collect();
                let present = lower.store.contains_all(&hashes);
                batch
                    .drain(..)
                    .zip(present)
                    .filter(|(_, p)| !p)
                    .map(|(w, _)| w)
                    .collect()
            }
            None => std::mem::take(&mut batch),
        };
        if todo.is_empty() {
            continue;
        }
        let blocks: Vec<Evicted> = todo
            .iter()
            .map(|w| Evicted {
                slot: w.block.slot(),
                hash: w.spec.hash,
                parent: w.spec.parent,
                position: w.spec.position,
            })
            .collect();
        // The items pin their sources until the copy has landed.
        let done = inner
            .clone()
            .copy_down(from, blocks, todo, Reason::WriteThrough)
            .await;
        drop(done);
    }
}
