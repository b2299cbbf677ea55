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
    }
}
