//! A listing of what a tier holds, for shutdown flushes and persistence.

use super::slots::State;
use super::{BlockSpec, BlockStore};
use crate::hash::SequenceHash;
use crate::policy::SlotId;

impl BlockStore {
    /// Every matchable block (active or inactive) with its slot and identity,
    /// in slot order. A full scan, O(capacity), under the lock: for shutdown
    /// flushes and diagnostics, not for the hot path.
    pub fn registered(&self) -> Vec<(SlotId, BlockSpec)> {
        let g = self.shared.inner.lock();
        g.core
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == State::Registered && s.indexed)
            .map(|(i, s)| (i as SlotId, s.spec()))
            .collect()
    }

    /// Subscribe to this tier's events and list every matchable block's
    /// identity, under one lock: the receiver gets exactly the changes made
    /// after the listing, so listing plus events is the tier's whole history
    /// from here on (a publisher attaching to a store that already holds
    /// blocks, or re-synchronising after dropping its backlog, needs both).
    /// O(capacity), like [`registered`](Self::registered).
    pub fn subscribe_with_snapshot(
        &self,
    ) -> (crossbeam_channel::Receiver<crate::Event>, Vec<BlockSpec>) {
        let mut g = self.shared.inner.lock();
        let rx = g.core.events.subscribe();
        let blocks = g
            .core
            .slots
            .iter()
            .filter(|s| s.state == State::Registered && s.indexed)
            .map(|s| s.spec())
            .collect();
        (rx, blocks)
    }

    /// Where each hash is matchable right now (slot and identity), without
    /// taking a reference or touching the eviction order. The answer can be
    /// stale as soon as the lock is released: callers that act on it must
    /// re-check (the offload engine's cleaner does).
    pub fn peek(&self, hashes: &[SequenceHash]) -> Vec<Option<(SlotId, BlockSpec)>> {
        let g = self.shared.inner.lock();
        hashes
            .iter()
            .map(|&h| {
                g.core
                    .lookup(h)
                    .map(|s| (s, g.core.slots[s as usize].spec()))
            })
            .collect()
    }
}

impl BlockStore {
    /// Up to `n` of the inactive blocks the policy would evict next, in that
    /// order, with their identities; `None` when the policy cannot tell
    /// (release order is then the best guess). Like [`peek`](Self::peek) it
    /// changes nothing and can be stale as soon as the lock is released: a
    /// hint for copying victims down ahead of eviction.
    pub fn next_victims(&self, n: usize) -> Option<Vec<(SlotId, BlockSpec)>> {
        let g = self.shared.inner.lock();
        let mut slots = Vec::with_capacity(n);
        if !g.policy.next_victims(n, &mut slots) {
            return None;
        }
        Some(
            slots
                .into_iter()
                .map(|s| (s, g.core.slots[s as usize].spec()))
                .collect(),
        )
    }
}

/// A handle that can only follow one store's contents: its tier, and its
/// events with a listing to start from. Cheap to clone; keeps the store alive.
/// What an event publisher holds, so that it cannot allocate or release.
#[derive(Clone)]
pub struct EventSource(BlockStore);

impl EventSource {
    /// The store's tier.
    pub fn tier(&self) -> crate::Tier {
        self.0.tier()
    }

    /// See [`BlockStore::subscribe_with_snapshot`].
    pub fn subscribe_with_snapshot(
        &self,
    ) -> (crossbeam_channel::Receiver<crate::Event>, Vec<BlockSpec>) {
        self.0.subscribe_with_snapshot()
    }
}

impl BlockStore {
    /// A handle that can only follow this store's contents ([`EventSource`]).
    pub fn event_source(&self) -> EventSource {
        EventSource(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::stored;
    use crate::SequenceHash;

    #[test]
    fn lists_matchable_blocks_only() {
        let (s, h, held) = stored(4, &[1, 2]);
        let _m = s.allocate(1).unwrap(); // held, not registered
        drop(held); // both inactive: still matchable, still listed
        let r = s.registered();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].1.parent, h[0]);
        let p = s.peek(&[h[1], SequenceHash(7)]);
        assert_eq!(
            p[0].map(|(slot, spec)| (slot, spec.position)),
            Some((r[1].0, 1))
        );
        assert!(p[1].is_none());
        assert_eq!(s.metrics().inactive, 2, "peek takes no reference");
        let (rx, snap) = s.subscribe_with_snapshot();
        assert_eq!(snap, r.iter().map(|(_, b)| *b).collect::<Vec<_>>());
        s.clear();
        assert_eq!(rx.try_iter().count(), 1, "only changes after the listing");
    }
}
