//! The typestate guards of a block's life: [`MutableBlock`] (allocated,
//! being written) -> [`CompleteBlock`] (identity known) -> [`ImmutableBlock`]
//! (registered, matchable; a counted reference) and [`WeakBlock`] (a
//! reference that does not keep the block). A wrong transition does not
//! compile, and dropping a guard gives its slot or reference back.

use super::slots::State;
use super::{BlockSpec, Counted, Inner, Shared};
use crate::hash::SequenceHash;
use crate::policy::SlotId;
use crate::tier::Tier;

/// Dropping a guard that owns an unregistered slot returns it to the free list.
macro_rules! frees_slot_on_drop {
    ($($guard:ty),*) => {$(
        impl Drop for $guard {
            fn drop(&mut self) {
                self.store.inner.lock().core.free_slot(self.slot);
            }
        }
    )*};
}

frees_slot_on_drop!(MutableBlock, CompleteBlock);

/// A freshly allocated slot being written. Dropping it returns the slot to the
/// free list. [`complete`](Self::complete) turns it into a [`CompleteBlock`].
pub struct MutableBlock {
    pub(super) store: Counted<Shared>,
    pub(super) slot: SlotId,
}

impl MutableBlock {
    /// The slot (block id) this block occupies; physical layers map it to bytes.
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// The block is full: give it its identity. Takes no lock.
    pub fn complete(self, spec: BlockSpec) -> CompleteBlock {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped; its reference moves into the new guard.
        let store = unsafe { std::ptr::read(&this.store) };
        CompleteBlock {
            store,
            slot: this.slot,
            spec,
        }
    }
}

impl std::fmt::Debug for MutableBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableBlock")
            .field("slot", &self.slot)
            .finish()
    }
}

/// A full block with a known hash, not yet matchable. Register it with
/// [`BlockStore::register`](super::BlockStore::register); dropping it returns the slot to the free list.
pub struct CompleteBlock {
    pub(super) store: Counted<Shared>,
    pub(super) slot: SlotId,
    spec: BlockSpec,
}

impl CompleteBlock {
    /// The slot this block occupies.
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// The identity it will be registered under.
    pub fn spec(&self) -> BlockSpec {
        self.spec
    }

    /// Take the guard apart without running its `Drop`.
    pub(super) fn into_parts(self) -> (Counted<Shared>, SlotId, BlockSpec) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped; its reference moves to the caller.
        let store = unsafe { std::ptr::read(&this.store) };
        (store, this.slot, this.spec)
    }
}

impl std::fmt::Debug for CompleteBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompleteBlock")
            .field("slot", &self.slot)
            .field("hash", &self.spec.hash)
            .finish()
    }
}

/// A registered, matchable block in use. Clones share it (each clone is one
/// reference); when the last reference goes the block becomes *inactive*:
/// still matchable, now evictable.
pub struct ImmutableBlock {
    pub(super) store: Counted<Shared>,
    pub(super) slot: SlotId,
    pub(super) hash: SequenceHash,
}

impl ImmutableBlock {
    /// `out.push(ImmutableBlock { store, slot, hash })`, with the fields
    /// written in place. `Vec::push` builds the guard on the stack and copies
    /// it with wider loads than the stores that built it: a store-forwarding
    /// stall per block, measured at a fifth of the replay's time.
    #[inline(always)]
    pub(super) fn push(
        out: &mut Vec<ImmutableBlock>,
        store: Counted<Shared>,
        slot: SlotId,
        hash: SequenceHash,
    ) {
        if out.len() == out.capacity() {
            grow(out);
        }
        let len = out.len();
        // SAFETY: `len < capacity`, so the element at `len` is allocated and
        // unused; each field is written once, through a pointer to it, so
        // the element is fully initialised before the length covers it.
        unsafe {
            let dst = out.as_mut_ptr().add(len);
            std::ptr::addr_of_mut!((*dst).store).write(store);
            std::ptr::addr_of_mut!((*dst).slot).write(slot);
            std::ptr::addr_of_mut!((*dst).hash).write(hash);
            out.set_len(len + 1);
        }
    }

    /// The slot this block occupies.
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// The block's sequence hash.
    pub fn hash(&self) -> SequenceHash {
        self.hash
    }

    /// The tier of the store this block lives in.
    pub fn tier(&self) -> Tier {
        self.store.tier
    }

    /// A reference that does not keep the block alive (it keeps the store's
    /// bookkeeping alive, which is only memory).
    pub fn downgrade(&self) -> WeakBlock {
        let generation = self.store.inner.lock().core.slots[self.slot as usize].generation;
        WeakBlock {
            store: self.store.clone(),
            slot: self.slot,
            hash: self.hash,
            generation,
        }
    }
}

impl Clone for ImmutableBlock {
    fn clone(&self) -> Self {
        self.store.inner.lock().core.slots[self.slot as usize].refcount += 1;
        ImmutableBlock {
            store: self.store.clone(),
            slot: self.slot,
            hash: self.hash,
        }
    }
}

impl Drop for ImmutableBlock {
    fn drop(&mut self) {
        let mut g = self.store.inner.lock();
        let Inner { core, policy } = &mut *g;
        with_policy!(policy, p => core.release_one(p, self.slot, self.hash));
    }
}

impl std::fmt::Debug for ImmutableBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImmutableBlock")
            .field("tier", &self.store.tier)
            .field("slot", &self.slot)
            .field("hash", &self.hash)
            .finish()
    }
}

/// A reference to a registered block that does not keep it alive.
/// [`upgrade`](Self::upgrade) fails once the block was evicted.
#[derive(Clone)]
pub struct WeakBlock {
    pub(super) store: Counted<Shared>,
    pub(super) slot: SlotId,
    hash: SequenceHash,
    generation: u32,
}

impl WeakBlock {
    /// The hash this reference was taken on.
    pub fn hash(&self) -> SequenceHash {
        self.hash
    }

    /// A strong guard again, if the block is still registered in the same slot.
    pub fn upgrade(&self) -> Option<ImmutableBlock> {
        {
            let mut g = self.store.inner.lock();
            let Inner { core, policy } = &mut *g;
            let slot = core.slots[self.slot as usize];
            let alive = slot.state == State::Registered
                && slot.generation == self.generation
                && slot.hash == self.hash
                && (slot.refcount > 0 || slot.indexed);
            if !alive {
                return None;
            }
            with_policy!(policy, p => core.acquire(p, self.slot));
        }
        Some(ImmutableBlock {
            store: self.store.clone(),
            slot: self.slot,
            hash: self.hash,
        })
    }
}

impl std::fmt::Debug for WeakBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakBlock")
            .field("slot", &self.slot)
            .field("hash", &self.hash)
            .finish()
    }
}

/// Room for one more element (the cold path of the pushes above).
#[cold]
#[inline(never)]
fn grow<T>(v: &mut Vec<T>) {
    v.reserve(1);
}
