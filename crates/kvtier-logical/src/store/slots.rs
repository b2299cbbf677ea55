//! The state a store's lock guards, apart from the policy: the slot table,
//! the free list, the hash index and the counters, with the per-block steps
//! the batch calls are built of. Steps that involve the policy are generic
//! over it (`P: EvictionPolicy`) and inlined into the batch loops.

use super::emit::Emitter;
use super::index::Index;
use super::{BlockSpec, Evicted};
use crate::hash::SequenceHash;
use crate::metrics::Counters;
use crate::policy::{prefetch_ptr, BlockInfo, EvictionPolicy, SlotId};

/// "No slot" in a slot link.
pub(super) const NO_SLOT: u32 = u32::MAX;

/// How far ahead batch loops prefetch index buckets.
pub(super) const PREFETCH_AHEAD: usize = 4;

/// Lifecycle state of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Free,
    /// Held by a `MutableBlock` or `CompleteBlock` (completion takes no lock).
    Mutable,
    /// Registered; `indexed` says whether the index points here.
    Registered,
}

/// Per-slot metadata: one cache line per slot.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(super) struct Slot {
    pub(super) state: State,
    pub(super) indexed: bool,
    pub(super) refcount: u32,
    pub(super) children: u32,
    pub(super) position: u32,
    /// Bumped every time the slot returns to the free list or its block is
    /// evicted; `WeakBlock`s compare it to detect reuse.
    pub(super) generation: u32,
    /// The parent block's slot while it is cached here (its `children`
    /// counts this block). Only kept for policies that use leaves
    /// (`EvictionPolicy::uses_leaves`): `children` only feeds
    /// `BlockInfo::is_leaf` and `on_leaf_changed`, so other stores leave it
    /// `NO_SLOT`.
    pub(super) parent_slot: u32,
    /// The parent slot's `generation` when the link was made: a parent
    /// evicted and recomputed into the same slot is a new block that does not
    /// count this one among its children.
    pub(super) parent_gen: u32,
    /// Where the index entry of this slot is (meaningful while `indexed`).
    pub(super) index_pos: u32,
    pub(super) hash: SequenceHash,
    pub(super) parent: SequenceHash,
}

impl Slot {
    pub(super) const EMPTY: Slot = Slot {
        state: State::Free,
        indexed: false,
        refcount: 0,
        children: 0,
        position: 0,
        generation: 0,
        parent_slot: NO_SLOT,
        parent_gen: 0,
        index_pos: 0,
        hash: SequenceHash::ROOT,
        parent: SequenceHash::ROOT,
    };

    /// What the policy is told about this block (fields a policy does not
    /// read are never loaded: the hooks are inlined).
    #[inline(always)]
    pub(super) fn info(&self) -> BlockInfo {
        self.info_as(self.hash)
    }

    /// [`info`](Self::info) with the caller's copy of the block's hash
    /// (`hash == self.hash`): a guard's or a batch's, already in a
    /// register where the slot's copy would be loaded (and, in the release
    /// loop, spilled).
    #[inline(always)]
    pub(super) fn info_as(&self, hash: SequenceHash) -> BlockInfo {
        debug_assert!(self.hash == hash, "the caller names this slot's block");
        BlockInfo {
            hash,
            position: self.position,
            is_leaf: self.children == 0,
        }
    }

    /// The identity of the block this slot holds.
    pub(super) fn spec(&self) -> BlockSpec {
        BlockSpec {
            hash: self.hash,
            parent: self.parent,
            position: self.position,
        }
    }

    /// Hand the slot to a new `MutableBlock` (its `generation` is kept).
    #[inline(always)]
    pub(super) fn make_mutable(&mut self) {
        self.state = State::Mutable;
        self.indexed = false;
        self.refcount = 0;
        self.children = 0;
    }
}

/// The store's locked state, apart from the policy.
pub(super) struct Core {
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<SlotId>,
    pub(super) index: Index,
    pub(super) counters: Counters,
    /// Subscribers and the `Removed` buffer.
    pub(super) events: Emitter,
}

impl Core {
    /// All `capacity` slots free; slot 0 is handed out first.
    pub(super) fn new(capacity: usize) -> Self {
        Core {
            slots: vec![Slot::EMPTY; capacity],
            free: (0..capacity as u32).rev().collect(),
            index: Index::with_capacity(capacity),
            counters: Counters::default(),
            events: Emitter::default(),
        }
    }

    /// The indexed slot holding exactly `hash`, if any.
    #[inline(always)]
    pub(super) fn lookup(&self, hash: SequenceHash) -> Option<SlotId> {
        let slots = &self.slots;
        self.index
            .get(self.index.probe(hash), hash, |s| slots[s as usize].hash)
    }

    /// Hint the CPU to load `hash`'s index bucket.
    #[inline]
    pub(super) fn prefetch_bucket(&self, hash: SequenceHash) {
        prefetch_ptr(self.index.bucket_ptr(self.index.probe(hash)));
    }

    /// Return a slot to the free list.
    #[inline]
    pub(super) fn free_slot(&mut self, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        slot.state = State::Free;
        slot.indexed = false;
        slot.refcount = 0;
        slot.children = 0;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(s);
    }

    /// Add one reference to a registered, indexed slot (resurrecting it if
    /// inactive).
    #[inline(always)]
    pub(super) fn acquire<P: EvictionPolicy>(&mut self, p: &mut P, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        if slot.refcount == 0 {
            p.remove(s);
            self.counters.resurrections += 1;
        }
        slot.refcount += 1;
    }

    /// Drop one reference to a registered slot: at zero it becomes inactive
    /// (listed by the policy) or, if no longer indexed, free.
    #[inline(always)]
    pub(super) fn release_one<P: EvictionPolicy>(
        &mut self,
        p: &mut P,
        s: SlotId,
        hash: SequenceHash,
    ) {
        let slot = &mut self.slots[s as usize];
        debug_assert!(slot.state == State::Registered && slot.refcount > 0);
        debug_assert!(slot.hash == hash, "a guard names its slot's block");
        slot.refcount -= 1;
        if slot.refcount == 0 {
            if slot.indexed {
                p.insert(s, &slot.info_as(hash));
            } else {
                self.free_slot(s);
            }
        }
    }

    /// The block in `s` stops being its parent's child (policies that use
    /// leaves only: the others keep no parent links).
    #[inline]
    pub(super) fn detach_from_parent<P: EvictionPolicy>(&mut self, p: &mut P, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        let ps = slot.parent_slot;
        if ps == NO_SLOT {
            return;
        }
        slot.parent_slot = NO_SLOT;
        let want = slot.parent;
        let slot_parent_gen = slot.parent_gen;
        let parent = &mut self.slots[ps as usize];
        // The parent may have been evicted and its slot reused since (even by
        // the same hash: then its generation differs).
        if parent.state == State::Registered
            && parent.indexed
            && parent.hash == want
            && parent.generation == slot_parent_gen
        {
            parent.children -= 1;
            if parent.children == 0 {
                p.on_leaf_changed(ps, true);
            }
        }
    }

    /// Evict the inactive block in `s`, which the policy just gave up, into
    /// a slot for a new `MutableBlock`: unindex it, report it to the policy,
    /// detach it from its parent, bump its generation (old `WeakBlock`s must
    /// not upgrade), and record it for events and for `evicted`. The caller
    /// counts the eviction.
    #[inline(always)]
    pub(super) fn evict_into_mutable<P: EvictionPolicy>(
        &mut self,
        p: &mut P,
        s: SlotId,
        evicted: &mut Option<&mut Vec<Evicted>>,
    ) {
        let slot = &mut self.slots[s as usize];
        debug_assert!(slot.state == State::Registered && slot.refcount == 0 && slot.indexed);
        let info = slot.info();
        self.index
            .remove_at(self.index.probe(info.hash), slot.index_pos);
        slot.generation = slot.generation.wrapping_add(1);
        slot.make_mutable();
        let parent = slot.parent;
        p.on_evicted(s, &info);
        if p.uses_leaves() {
            self.detach_from_parent(p, s);
        }
        debug_assert!(self.slots[s as usize].parent_slot == NO_SLOT);
        self.events.removed(info.hash);
        if let Some(v) = evicted.as_mut() {
            v.push(Evicted {
                slot: s,
                hash: info.hash,
                parent,
                position: info.position,
            });
        }
    }
}
