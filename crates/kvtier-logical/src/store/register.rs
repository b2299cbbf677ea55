//! Registration: complete blocks become matchable, in two passes with the
//! outcome of one.

use super::emit::StoredChains;
use super::slots::{Core, Slot, State, NO_SLOT};
use super::{BlockStore, CompleteBlock, Counted, DuplicatePolicy, ImmutableBlock, Inner, Shared};
use crate::hash::SequenceHash;
use crate::policy::{EvictionPolicy, SlotId};

impl BlockStore {
    /// Make complete blocks matchable. Returns one guard per input, in order.
    /// Under [`DuplicatePolicy::Reject`] a block whose hash is already
    /// registered is freed and its guard points at the existing copy.
    ///
    /// # Panics
    /// If a block was allocated by another store (a programming error).
    pub fn register<I: IntoIterator<Item = CompleteBlock>>(
        &self,
        blocks: I,
    ) -> Vec<ImmutableBlock> {
        let mut out = Vec::new();
        self.register_into(blocks, &mut out);
        out
    }

    /// As [`register`](Self::register), appending the guards to `out`.
    pub fn register_into<I: IntoIterator<Item = CompleteBlock>>(
        &self,
        blocks: I,
        out: &mut Vec<ImmutableBlock>,
    ) {
        // Declared before the lock guard: if a panic unwinds through here,
        // the guard is released before the remaining blocks drop (their
        // `Drop` takes the lock).
        let mut blocks = blocks.into_iter();
        out.reserve(blocks.size_hint().0);
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        let start = core.register_identities(&self.shared, &mut blocks, out);
        let batch = &mut out[start..];
        let shared = &*self.shared;
        // Monomorphised with and without parent links (`TREE`) and event
        // emission (`EMIT`): the common loops carry neither.
        with_policy!(policy, p => match (p.uses_leaves(), core.events.active()) {
            (false, false) => core.register_batch::<_, false, false>(p, shared, batch),
            (false, true) => core.register_batch::<_, false, true>(p, shared, batch),
            (true, false) => core.register_batch::<_, true, false>(p, shared, batch),
            (true, true) => core.register_batch::<_, true, true>(p, shared, batch),
        });
    }
}

impl Core {
    /// First pass: every block takes its identity (registered, not yet
    /// indexed, so a panic midway leaves blocks that free themselves when
    /// released), its index bucket is prefetched, and its guard is appended
    /// to `out`. Returns where the batch starts in `out`.
    #[inline(always)]
    fn register_identities<I: Iterator<Item = CompleteBlock>>(
        &mut self,
        store: &Counted<Shared>,
        blocks: &mut I,
        out: &mut Vec<ImmutableBlock>,
    ) -> usize {
        let start = out.len();
        for b in blocks {
            let (owner, s, spec) = b.into_parts();
            assert!(
                Counted::ptr_eq(&owner, store),
                "register: a CompleteBlock of another store was passed"
            );
            self.prefetch_bucket(spec.hash);
            let slot = &mut self.slots[s as usize];
            *slot = Slot {
                state: State::Registered,
                indexed: false,
                refcount: 1,
                children: 0,
                position: spec.position,
                generation: slot.generation,
                parent_slot: NO_SLOT,
                parent_gen: 0,
                index_pos: 0,
                hash: spec.hash,
                parent: spec.parent,
            };
            ImmutableBlock::push(out, owner, s, spec.hash);
        }
        start
    }

    /// Second pass, in order: each block of `batch` (identities taken) is
    /// indexed (a duplicate resolves against the earlier blocks of the batch
    /// exactly as one pass would), counted as its parent's child when the
    /// policy uses leaves (`TREE`), reported to the policy and, with `EMIT`,
    /// added to the `Stored` events (one per run of blocks that chain parent
    /// to child).
    #[inline(always)]
    fn register_batch<P: EvictionPolicy, const TREE: bool, const EMIT: bool>(
        &mut self,
        p: &mut P,
        shared: &Shared,
        batch: &mut [ImmutableBlock],
    ) {
        let reject = shared.duplicates == DuplicatePolicy::Reject;
        let mut registered = 0;
        // Slot of the previous block registered in this batch, to find the
        // parent of a chain without an index lookup.
        let mut prev: Option<(SequenceHash, SlotId)> = None;
        let mut chains = StoredChains::new();
        for b in batch {
            let (s, hash) = (b.slot, b.hash);
            let parent = self.slots[s as usize].parent;
            // Parent links only feed the children counts behind
            // `BlockInfo::is_leaf`, which only policies that use leaves see.
            let found = if !TREE || parent == SequenceHash::ROOT {
                NO_SLOT
            } else {
                match prev {
                    Some((h, ps)) if h == parent => ps,
                    _ => self.lookup(parent).unwrap_or(NO_SLOT),
                }
            };
            let probe = self.index.probe(hash);
            let slots = &self.slots;
            match self
                .index
                .get_or_insert(probe, hash, s, |x| slots[x as usize].hash)
            {
                Ok(index_pos) => {
                    // Count the new block as its parent's child (if the
                    // parent is still the indexed block it names).
                    let mut parent_slot = NO_SLOT;
                    let mut parent_gen = 0;
                    if found != NO_SLOT {
                        let ps = &mut self.slots[found as usize];
                        if ps.indexed && ps.hash == parent {
                            parent_slot = found;
                            parent_gen = ps.generation;
                            ps.children += 1;
                            if ps.children == 1 {
                                p.on_leaf_changed(found, false);
                            }
                        }
                    }
                    let slot = &mut self.slots[s as usize];
                    slot.indexed = true;
                    slot.index_pos = index_pos;
                    if TREE {
                        // (The first pass left them `NO_SLOT` and 0.)
                        slot.parent_slot = parent_slot;
                        slot.parent_gen = parent_gen;
                    }
                    p.on_register(s, &slot.info_as(hash));
                    registered += 1;
                    prev = Some((hash, s));
                    if EMIT {
                        chains.push(&mut self.events, shared.tier, hash, parent);
                    }
                }
                Err(existing) => {
                    self.counters.duplicates += 1;
                    p.on_duplicate(existing, &self.slots[existing as usize].info());
                    if reject {
                        self.free_slot(s);
                        self.acquire(p, existing);
                        b.slot = existing;
                        prev = Some((hash, existing));
                    }
                    // Allowed duplicate: stays registered, unindexed, for
                    // its holder.
                }
            }
        }
        self.counters.registrations += registered;
        if EMIT {
            chains.finish(&mut self.events, shared.tier);
        }
    }
}
