//! A read-only view of one tier's block store: what a caller may inspect
//! (capacity, counts, membership, a snapshot, metrics, events). Allocation,
//! registration and release go through requests, so nothing bypasses
//! write-back, write-through or the checksums.

use kvtier_logical::{BlockSpec, Event, SequenceHash, SlotId, Tier, TierMetrics};

/// Inspection of one tier's [`kvtier_logical::BlockStore`]; see
/// [`crate::TieredCache::store`].
#[derive(Clone, Copy)]
pub struct StoreView<'a> {
    store: &'a kvtier_logical::BlockStore,
}

impl<'a> StoreView<'a> {
    pub(crate) fn new(store: &'a kvtier_logical::BlockStore) -> StoreView<'a> {
        StoreView { store }
    }

    /// A handle that follows this tier's contents (events plus a listing to
    /// start from), for a KV-event publisher; it cannot change the store.
    pub fn event_source(&self) -> kvtier_logical::EventSource {
        self.store.event_source()
    }

    /// The tier.
    pub fn tier(&self) -> Tier {
        self.store.tier()
    }

    /// Capacity in blocks.
    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }

    /// The eviction policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.store.policy_name()
    }

    /// Counters and block counts (in use, inactive, free).
    pub fn metrics(&self) -> TierMetrics {
        self.store.metrics()
    }

    /// Whether each hash is registered (matchable) here; takes no guard.
    pub fn contains_all(&self, hashes: &[SequenceHash]) -> Vec<bool> {
        self.store.contains_all(hashes)
    }

    /// The slot and identity of each hash registered here; takes no guard,
    /// so the answer may be stale as soon as it is returned.
    pub fn peek(&self, hashes: &[SequenceHash]) -> Vec<Option<(SlotId, BlockSpec)>> {
        self.store.peek(hashes)
    }

    /// Every registered block (slot and identity), a snapshot.
    pub fn registered(&self) -> Vec<(SlotId, BlockSpec)> {
        self.store.registered()
    }

    /// Subscribe to the store's events (stored, removed).
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<Event> {
        self.store.subscribe()
    }

    /// Check the store's internal invariants (for tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.store.check_invariants()
    }
}
