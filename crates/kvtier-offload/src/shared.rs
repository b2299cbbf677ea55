//! A tier shared by many nodes below the local ones (G4): the
//! [`SharedTier`] trait the engine calls, and the hooks that call it.
//!
//! - Writes: every block registered in G2 (the host tier) is offered to the
//!   shared tier, staged through an owned copy of its bytes so G2's slot is
//!   not held while the upload runs. The shared tier decides (present
//!   already, backpressure) and uploads in the background.
//! - Lookups: a prefix match that runs past the local tiers continues in the
//!   shared tier's local index ([`SharedTier::matched`], no round trip).
//! - Onboarding: the shared positions are read ([`SharedTier::load`], under
//!   the shared tier's read deadline), written into G2, checked against the
//!   checksum the writer recorded, registered in G2 and then lifted into G1
//!   like every other G2 block.
//! - Stop: [`crate::TieredCache::close`] flushes G1 into G2 (so every block
//!   is offered) and waits for the shared tier's writes in flight.

use crate::state::{Data, Inner};
use kvtier_logical::{ImmutableBlock, SequenceHash, Tier};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, as [`SharedTier`] methods return them (object safe).
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One block's bytes on their way to or from the shared tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedBlock {
    /// The block's sequence hash.
    pub hash: SequenceHash,
    /// [`kvtier_memory::block_checksum`] of `bytes`.
    pub checksum: u64,
    /// The block's canonical bytes (layers in order).
    pub bytes: Vec<u8>,
}

/// Counters of a shared tier (for reports and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SharedStats {
    /// Objects this node wrote (created, or found already created by
    /// another writer).
    pub objects_written: u64,
    /// Blocks not written because the tier was behind (backpressure skip)
    /// or the write failed.
    pub write_skipped: u64,
    /// Writes that failed (also counted in `write_skipped`).
    pub write_failures: u64,
    /// Bytes written (object bodies, headers included).
    pub bytes_written: u64,
    /// Objects read and verified.
    pub objects_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Reads that failed (missing, truncated, corrupt, foreign, error,
    /// deadline).
    pub read_failures: u64,
    /// Index entries dropped because their object turned out missing or bad.
    pub self_healed: u64,
    /// Objects deleted by the byte budget.
    pub evicted: u64,
    /// Entries in the local index.
    pub index_entries: u64,
    /// Bytes the local index accounts for.
    pub index_bytes: u64,
}

/// A tier shared by many nodes (for example object storage), below G3.
///
/// Lookups must be answered locally; reads and writes may take round trips
/// but are bounded by the implementation (read deadline, in-flight limit).
pub trait SharedTier: Send + Sync {
    /// How many leading hashes of `hashes` the tier is believed to hold
    /// (from a local index: a stale entry costs a miss at [`Self::load`]).
    fn matched(&self, hashes: &[SequenceHash]) -> usize;

    /// Whether [`Self::store`] would write `hash` now (not held yet and, when
    /// the tier skips under backpressure, room for another write). Lets the
    /// caller avoid copying bytes that would be dropped.
    fn wants(&self, hash: SequenceHash) -> bool;

    /// Offer a block. Returns once the write is started (it completes in the
    /// background), skipped, or, when the tier waits under backpressure,
    /// once there is room for it.
    fn store(&self, block: SharedBlock) -> SharedFuture<'_, ()>;

    /// Read `hashes` in order and return the leading run that was read and
    /// verified (a miss, a bad object or the read deadline ends it).
    fn load(&self, hashes: Vec<SequenceHash>) -> SharedFuture<'_, Vec<SharedBlock>>;

    /// Wait for every write in flight and stop background work.
    fn close(&self) -> SharedFuture<'_, ()>;

    /// Counters.
    fn stats(&self) -> SharedStats;

    /// Add the counters to a Prometheus exposition.
    fn write_prometheus(&self, e: &mut kvtier_logical::prometheus::Exposition);
}

impl Inner {
    /// Offer blocks just registered in `tier` to the shared tier (only
    /// blocks of G2, the host tier every block passes on its way down).
    pub(crate) async fn share(&self, tier: Tier, blocks: &[ImmutableBlock]) {
        let (Some(shared), Tier::G2) = (self.shared.get(), tier) else {
            return;
        };
        let (Data::On(b), Some(t)) = (&self.data, self.tiers.get(tier)) else {
            return;
        };
        let Some(host) = b.host(tier) else {
            return;
        };
        for block in blocks {
            let hash = block.hash();
            if !shared.wants(hash) {
                continue;
            }
            let bytes = match host.read_block(block.slot() as usize) {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!("not sharing block {hash}: {e}");
                    continue;
                }
            };
            let checksum = t.sum(block.slot());
            shared
                .store(SharedBlock {
                    hash,
                    checksum,
                    bytes,
                })
                .await;
        }
    }
}
