//! Releasing guards in batches: blocks whose last user goes become inactive
//! (listed by the policy, still matchable).

use super::slots::Core;
use super::{BlockStore, Counted, ImmutableBlock, Inner, Shared};
use crate::policy::EvictionPolicy;

impl BlockStore {
    /// Release a batch of guards under one lock, in iteration order. A
    /// request should release its blocks tail first
    /// (`store.release(blocks.into_iter().rev())`) so that, under LRU, a
    /// prefix's head outlives its tail. Guards of another store are dropped
    /// normally.
    pub fn release<I: IntoIterator<Item = ImmutableBlock>>(&self, blocks: I) {
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        let forgotten = with_policy!(policy, p => core.release(p, &self.shared, blocks));
        drop(g);
        // The forgotten guards' references, given back in one operation.
        self.shared.sub_refs(forgotten);
    }
}

impl Core {
    /// Release the guards of `blocks` that belong to `store` without running
    /// their `Drop` (dropping the others); returns how many were forgotten,
    /// whose references the caller gives back.
    #[inline(always)]
    fn release<P: EvictionPolicy, I: IntoIterator<Item = ImmutableBlock>>(
        &mut self,
        p: &mut P,
        store: &Counted<Shared>,
        blocks: I,
    ) -> usize {
        let mut forgotten = 0;
        for b in blocks {
            if !Counted::ptr_eq(&b.store, store) {
                // Another store: its own Drop takes its own lock.
                drop(b);
                continue;
            }
            let (s, hash) = (b.slot, b.hash);
            std::mem::forget(b);
            forgotten += 1;
            self.release_one(p, s, hash);
        }
        forgotten
    }
}
