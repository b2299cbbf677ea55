//! Moving blocks down: allocation with write-back, and the one copy-down
//! path every downward move goes through.
//!
//! [`Inner::copy_down`] serves four callers, told apart by [`Reason`]:
//! an eviction (write-back: copy unless the tier below has the block or the
//! boundary writes through), the write-through worker, the proactive cleaner
//! and the flush at a clean stop. All of them skip blocks the tier below
//! already holds (lower tiers are inclusive), allocate there (which may move
//! that tier's own victims further down), copy with the sources pinned,
//! checksum what landed, tell a persistent G3's journal, register, and
//! account for blocks that could not be copied in one place.

use crate::durable::DurableEntry;
use crate::error::OffloadError;
use crate::priority::PIECE_BYTES;
use crate::setup::WritePolicy;
use crate::state::{Data, Inner};
use kvtier_logical::{BlockSpec, Evicted, MutableBlock, SequenceHash, Tier};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why blocks are copied down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Evicted by an allocation (they leave their tier): copy per the
    /// boundary's write policy; lookups wait for them meanwhile.
    Eviction,
    /// Queued at registration by a write-through boundary (sources pinned
    /// by the queue's guards).
    WriteThrough,
    /// Copied ahead of eviction by the cleaner (sources gated by it).
    Clean,
    /// Copied at a clean stop (sources pinned by guards).
    Flush,
}

impl Reason {
    /// Whether the blocks leave their tier (so a block not copied is lost).
    fn leaves(self) -> bool {
        self == Reason::Eviction
    }

    /// Whether nobody waits for the copy: it yields to foreground work
    /// ([`crate::priority`]). Evictions (an allocation waits) and the
    /// flush at a clean stop do not.
    fn background(self) -> bool {
        matches!(self, Reason::Clean | Reason::WriteThrough)
    }
}

impl Inner {
    /// Allocate `n` blocks in `tier`, first moving its evicted blocks down.
    pub(crate) fn allocate_in(
        self: Arc<Self>,
        tier: Tier,
        n: usize,
    ) -> BoxFut<'static, Result<Vec<MutableBlock>, OffloadError>> {
        Box::pin(async move {
            let store = &self
                .tiers
                .get(tier)
                .ok_or(OffloadError::NoSuchTier { tier })?
                .store;
            let journal = self.journaled(tier);
            if let Some(j) = journal {
                // A stopped journal cannot free a slot durably: any slot may
                // still be claimed by a record on disk, so none is rewritten
                // (and nothing is evicted for nothing).
                j.check().map_err(OffloadError::Journal)?;
            }
            let mut evicted = Vec::new();
            let blocks = store.allocate_with_evicted(n, &mut evicted)?;
            if evicted.is_empty() {
                return Ok(blocks);
            }
            if let Some(j) = journal {
                // The victims' slots are about to be rewritten: a persistent
                // tier must forget them durably first. If it cannot (it just
                // stopped), the slots stay as they are, so a restart
                // recovers the victims intact; they leave this run's index.
                let gone: Vec<(u32, SequenceHash)> =
                    evicted.iter().map(|e| (e.slot, e.hash)).collect();
                if let Err(e) = j.removed(&gone) {
                    self.metrics
                        .dropped_blocks
                        .fetch_add(evicted.len() as u64, Relaxed);
                    drop(blocks);
                    return Err(OffloadError::Journal(e));
                }
            }
            Ok(self
                .copy_down(tier, evicted, blocks, Reason::Eviction)
                .await)
        })
    }

    /// Blocks of `tier` that could not be copied down: lost if they were
    /// leaving their tier, a skipped copy if they stay.
    fn not_copied(&self, reason: Reason, n: usize) {
        let m = &self.metrics;
        if reason.leaves() {
            m.dropped_blocks.fetch_add(n as u64, Relaxed);
        } else if reason == Reason::WriteThrough {
            m.write_through_skipped.fetch_add(n as u64, Relaxed);
        }
        // Cleaning and flushing leave the blocks in their tier: a later
        // eviction copies them again.
    }

    /// Copy `blocks` of `tier` (whose slots `holders` keep from being
    /// rewritten) down one tier, unless it already holds them or (for an
    /// eviction) the boundary's policy drops them. Returns `holders` once
    /// their bytes are no longer needed.
    ///
    /// Background copies (cleaning, write-through) go in pieces of at most
    /// [`PIECE_BYTES`], each after yielding to foreground work in flight
    /// (the batch at most [`crate::priority::MAX_YIELD`] in all; see
    /// [`crate::priority`]).
    pub(crate) async fn copy_down<H: Send + Unpin + 'static>(
        self: Arc<Self>,
        tier: Tier,
        blocks: Vec<Evicted>,
        holders: H,
        reason: Reason,
    ) -> H {
        let m = &self.metrics;
        let Some(lower) = self.tiers.below(tier) else {
            // The last tier: its victims leave the cache.
            m.dropped_blocks.fetch_add(blocks.len() as u64, Relaxed);
            return holders;
        };
        // Evicted blocks are out of their tier's index already: until they
        // are registered below (or dropped), lookups wait instead of missing.
        let _transit = (reason == Reason::Eviction)
            .then(|| self.transit.enter(blocks.iter().map(|e| e.hash).collect()));
        let cleaner = match (tier, reason, &self.cleaner) {
            (Tier::G1, Reason::Eviction, Some(c)) => Some(c),
            _ => None,
        };
        if let Some(c) = cleaner {
            // A victim the cleaner is copying: wait for that copy (its slot
            // must not be rewritten under it), then it is clean. That batch
            // stops yielding meanwhile; only that one (a global urgent guard,
            // still held for a moment after the copy landed, could let the
            // cleaner's next batch go on too).
            c.wait_for_copies(&blocks, &self.priority).await;
        }
        let hashes: Vec<SequenceHash> = blocks.iter().map(|e| e.hash).collect();
        let present = lower.store.contains_all(&hashes);
        let todo: Vec<Evicted> = blocks
            .iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(e, _)| *e)
            .collect();
        if let Some(c) = cleaner {
            c.evicted_clean((blocks.len() - todo.len()) as u64);
        }
        if todo.is_empty() {
            return holders;
        }
        if reason == Reason::Eviction && self.write_policy(tier) != WritePolicy::WriteBack {
            // Write-through: what is not below by now was not selected (or
            // its copy is still queued, which pins it, so it was not evicted).
            m.dropped_blocks.fetch_add(todo.len() as u64, Relaxed);
            return holders;
        }
        // More victims than the tier below holds: keep the newest that fit.
        let mut todo = todo;
        let fit = lower.store.capacity();
        if todo.len() > fit {
            let extra = todo.len() - fit;
            m.dropped_blocks.fetch_add(extra as u64, Relaxed);
            todo.drain(..extra);
        }
        let per_piece = if reason.background() {
            (PIECE_BYTES / self.block_bytes().max(1)).max(1) as usize
        } else {
            todo.len()
        };
        let mut budget = self.priority.max_yield();
        let mut holders = holders;
        let mut rest: &[Evicted] = &todo;
        while !rest.is_empty() {
            let (piece, more) = rest.split_at(per_piece.min(rest.len()));
            rest = more;
            if reason.background() && !self.closed.load(Acquire) {
                // The cleaner's batch goes on at once when an eviction
                // waits for it.
                let urged =
                    || reason == Reason::Clean && self.cleaner.as_ref().is_some_and(|c| c.urged());
                self.priority
                    .yield_to_foreground(&mut budget, m, urged)
                    .await;
            }
            holders = match self.copy_piece(tier, piece, holders, reason).await {
                Ok(h) => h,
                Err(h) => {
                    // Not copied (full below, a failed copy, a refusing
                    // journal): neither is the rest of the batch.
                    self.not_copied(reason, rest.len());
                    return h;
                }
            };
        }
        holders
    }

    /// Copy `piece` (blocks of `tier` not in the tier below, which exists)
    /// down one tier: allocate below, copy with `holders` and the new blocks
    /// pinned, checksum, journal, register. `Err` (the blocks counted as not
    /// copied) if it could not; `holders` come back either way.
    async fn copy_piece<H: Send + Unpin + 'static>(
        self: &Arc<Self>,
        tier: Tier,
        piece: &[Evicted],
        holders: H,
        reason: Reason,
    ) -> Result<H, H> {
        let m = &self.metrics;
        let Some(lower) = self.tiers.below(tier) else {
            return Err(holders);
        };
        let lower_tier = lower.tier;
        let dst = match self.clone().allocate_in(lower_tier, piece.len()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(
                    "{lower_tier} full, not copying {} blocks down: {e}",
                    piece.len()
                );
                self.not_copied(reason, piece.len());
                return Err(holders);
            }
        };
        let up = self.tiers.get(tier);
        let src_sums: Vec<u64> = piece
            .iter()
            .map(|e| up.map_or(0, |t| t.sum(e.slot)))
            .collect();
        let pairs: Vec<(usize, usize)> = piece
            .iter()
            .zip(&dst)
            .map(|(e, d)| (e.slot as usize, d.slot() as usize))
            .collect();
        let (res, (holders, dst)) = self
            .copy_pinned(tier, lower_tier, &pairs, (holders, dst))
            .await;
        if let Err(e) = res {
            tracing::warn!(
                "offload {tier}->{lower_tier} of {} blocks failed, not copying them: {e}",
                pairs.len()
            );
            m.offload_errors.fetch_add(1, Relaxed);
            self.not_copied(reason, pairs.len());
            return Err(holders);
        }
        let host = match &self.data {
            Data::On(b) => {
                let n = pairs.len() as u64;
                match reason {
                    Reason::Eviction => {
                        m.eviction_copies.fetch_add(n, Relaxed);
                    }
                    Reason::Clean => {
                        m.cleaned_blocks.fetch_add(n, Relaxed);
                        if let Some(c) = &self.cleaner {
                            c.cleaned(n);
                        }
                    }
                    Reason::WriteThrough | Reason::Flush => {}
                }
                b.host(lower_tier)
            }
            Data::Off => None,
        };
        // Checksums: lower tiers pass theirs along; G1 keeps none (its bytes
        // may be device-only), so take it from what landed.
        let sums: Vec<u64> = dst
            .iter()
            .zip(&src_sums)
            .map(|(d, &src)| match (host, tier) {
                (Some(h), Tier::G1) => kvtier_memory::block_checksum(&**h, d.slot() as usize)
                    .unwrap_or_else(|e| {
                        tracing::warn!("cannot checksum offloaded block: {e}");
                        0
                    }),
                _ => src,
            })
            .collect();
        for (d, s) in dst.iter().zip(&sums) {
            lower.set_sum(d.slot(), *s);
        }
        let specs: Vec<BlockSpec> = piece
            .iter()
            .map(|e| BlockSpec {
                hash: e.hash,
                parent: e.parent,
                position: e.position,
            })
            .collect();
        if !self.journal_stored(lower_tier, &dst, &specs, &sums) {
            self.not_copied(reason, dst.len());
            return Err(holders);
        }
        let registered = lower
            .store
            .register(dst.into_iter().zip(&specs).map(|(d, s)| d.complete(*s)));
        self.queue_write_through(lower_tier, &registered, &specs)
            .await;
        self.share(lower_tier, &registered).await;
        lower.store.release(registered.into_iter().rev());
        Ok(holders)
    }

    /// Tell a persistent tier's journal about blocks just written to it
    /// (before they are registered). False if the journal refused: the
    /// caller drops them.
    fn journal_stored(
        &self,
        tier: Tier,
        dst: &[MutableBlock],
        specs: &[BlockSpec],
        sums: &[u64],
    ) -> bool {
        let Some(j) = self.journaled(tier) else {
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
}
