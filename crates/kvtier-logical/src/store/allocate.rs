//! Allocation: free slots first, then inactive blocks evicted in policy
//! order, all or nothing.

use super::slots::{Core, NO_SLOT};
use super::{BlockStore, Counted, Evicted, Inner, MutableBlock, Shared, StoreError};
use crate::policy::{prefetch_ptr, EvictionPolicy};

impl BlockStore {
    /// Allocate `n` slots, all or nothing: free slots first, then inactive
    /// blocks evicted in policy order. Returns [`StoreError::Exhausted`] (and
    /// changes nothing) if fewer than `n` are free or inactive.
    pub fn allocate(&self, n: usize) -> Result<Vec<MutableBlock>, StoreError> {
        let mut out = Vec::with_capacity(n);
        self.allocate_into(n, &mut out, None)?;
        Ok(out)
    }

    /// As [`allocate`](Self::allocate), appending to `evicted` every block
    /// evicted to make room (its slot is now one of the returned blocks).
    pub fn allocate_with_evicted(
        &self,
        n: usize,
        evicted: &mut Vec<Evicted>,
    ) -> Result<Vec<MutableBlock>, StoreError> {
        let mut out = Vec::with_capacity(n);
        self.allocate_into(n, &mut out, Some(evicted))?;
        Ok(out)
    }

    /// The general form of [`allocate`](Self::allocate): appends the `n` new
    /// blocks to `out` (no allocation when it has room) and, if given, the
    /// evicted blocks to `evicted`.
    pub fn allocate_into(
        &self,
        n: usize,
        out: &mut Vec<MutableBlock>,
        mut evicted: Option<&mut Vec<Evicted>>,
    ) -> Result<(), StoreError> {
        out.reserve(n);
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        let available = core.free.len() + policy.len();
        if n > available {
            core.counters.allocation_failures += 1;
            return Err(StoreError::Exhausted {
                tier: self.shared.tier,
                requested: n,
                available,
            });
        }
        self.shared.add_refs(n);
        with_policy!(policy, p => core.allocate(p, &self.shared, n, out, &mut evicted));
        core.counters.allocations += n as u64;
        core.events.flush_removed(self.shared.tier);
        Ok(())
    }
}

impl Core {
    /// Take `n` slots (checked available, references added) and append a
    /// `MutableBlock` for each to `out`: free slots first, then the policy's
    /// victims. A policy that evicts in batches
    /// ([`EvictionPolicy::evicts_in_batches`]) gives up all its victims
    /// first, so their slots are prefetched before they are evicted, in the
    /// same order; the others evict one victim at a time.
    fn allocate<P: EvictionPolicy>(
        &mut self,
        p: &mut P,
        store: &Counted<Shared>,
        n: usize,
        out: &mut Vec<MutableBlock>,
        evicted: &mut Option<&mut Vec<Evicted>>,
    ) {
        let batch = p.evicts_in_batches();
        let from_free = n.min(self.free.len());
        let start = out.len();
        for _ in 0..n {
            let s = match self.free.pop() {
                Some(s) => s,
                None => {
                    let s = p.evict().expect("availability checked");
                    if batch {
                        prefetch_ptr(&self.slots[s as usize]);
                    } else {
                        self.evict_into_mutable(p, s, evicted);
                    }
                    s
                }
            };
            out.push(MutableBlock {
                // SAFETY: one of the `n` references the caller added.
                store: unsafe { store.counted_clone() },
                slot: s,
            });
        }
        let victims = start + from_free..out.len();
        for b in &out[start..victims.start] {
            let slot = &mut self.slots[b.slot as usize];
            slot.make_mutable();
            slot.parent_slot = NO_SLOT;
        }
        if batch {
            for b in &out[victims.clone()] {
                self.evict_into_mutable(p, b.slot, evicted);
            }
        }
        self.counters.evictions += victims.len() as u64;
    }
}
