//! The block store of one tier: a fixed pool of slots, a free list, an index
//! from sequence hash to slot, per-slot reference counts and an inactive set
//! ordered by the tier's eviction policy.
//!
//! # Locking
//! One `parking_lot::Mutex` per store guards all of its state. Batch calls
//! (`match_prefix`, `allocate`, `register`, `release`, `scan`) take it once per
//! batch; a single guard's `clone`/`drop` takes it once. Nothing is done per
//! block outside the lock, and nothing under the lock allocates per block
//! (the output `Vec` of a batch is allocated once, the index and slot arrays
//! are sized at construction).
//!
//! # Invariants (checked by [`BlockStore::check_invariants`] in tests)
//! - `free + inactive + in_use == capacity`.
//! - A slot is in exactly one of: the free list, the policy's inactive set
//!   (registered, indexed, reference count 0), or in use (held by at least one
//!   guard).
//! - Each indexed hash maps to one registered slot holding that hash, so a hash
//!   is matchable from at most one slot.

use crate::events::{EventBus, EventKind};
use crate::hash::SequenceHash;
use crate::metrics::{Counters, TierMetrics};
use crate::policy::{
    prefetch_ptr as prefetch, BlockInfo, EvictionPolicy, FlatPolicy, GatedArc, GatedLru, Lru,
    PolicyKind, PrefixFreq, PrefixLru, S3Fifo, SlotId, TinyLfu,
};
use crate::tier::Tier;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

mod counted;
mod index;
mod invalidate;
mod snapshot;

use counted::Counted;
use index::Index;

/// What `register` does with a hash the tier already holds in another slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Keep one copy: the new slot is freed and the caller gets a guard on the
    /// block already registered. A hash is matchable from one slot only.
    #[default]
    Reject,
    /// Keep both: the caller keeps its own slot (registered, readable through
    /// its guard), the index keeps pointing at the first copy, and the
    /// duplicate returns to the free list when its last guard drops.
    Allow,
}

/// How a store is built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Which tier this store serves (labels events and metrics).
    pub tier: Tier,
    /// Number of slots. Must be in `1..=u32::MAX - 1`.
    pub capacity: usize,
    /// Eviction order of inactive blocks.
    pub policy: PolicyKind,
    /// Handling of duplicate registrations.
    pub duplicates: DuplicatePolicy,
}

impl StoreConfig {
    /// A config with the default (LRU) policy and reject-duplicates.
    pub fn new(tier: Tier, capacity: usize) -> Self {
        StoreConfig {
            tier,
            capacity,
            policy: PolicyKind::default(),
            duplicates: DuplicatePolicy::default(),
        }
    }

    /// Same config with another policy.
    pub fn with_policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self
    }

    /// Same config with another duplicate policy.
    pub fn with_duplicates(mut self, duplicates: DuplicatePolicy) -> Self {
        self.duplicates = duplicates;
        self
    }
}

/// Errors of the block store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A store needs at least one slot.
    #[error("tier {tier}: capacity must be at least 1 block")]
    ZeroCapacity {
        /// The tier being built.
        tier: Tier,
    },
    /// Slot ids are 32-bit.
    #[error("tier {tier}: capacity {capacity} exceeds the maximum of {max} blocks")]
    CapacityTooLarge {
        /// The tier being built.
        tier: Tier,
        /// Requested capacity.
        capacity: usize,
        /// Largest supported capacity.
        max: usize,
    },
    /// Not enough free or inactive blocks; nothing was allocated or evicted.
    #[error("tier {tier}: cannot allocate {requested} blocks, only {available} free or evictable")]
    Exhausted {
        /// The tier asked.
        tier: Tier,
        /// Blocks asked for.
        requested: usize,
        /// Free plus inactive blocks at the time of the call.
        available: usize,
    },
}

/// A block evicted by `allocate`: its slot now belongs to one of the returned
/// `MutableBlock`s, and it is no longer matchable. An offload engine copies the
/// slot's bytes down before writing new data into it (write-back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// The slot the block occupied (now reallocated).
    pub slot: SlotId,
    /// The evicted block's hash.
    pub hash: SequenceHash,
    /// Its parent's hash (`ROOT` for a first block).
    pub parent: SequenceHash,
    /// Its position in its sequence.
    pub position: u32,
}

/// The identity a complete block is registered under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockSpec {
    /// The block's sequence hash.
    pub hash: SequenceHash,
    /// Its parent's hash; [`SequenceHash::ROOT`] for a sequence's first block.
    pub parent: SequenceHash,
    /// Position in the sequence (0 = first block).
    pub position: u32,
}

impl BlockSpec {
    /// The identity of block `pos` of a chain of hashes: its hash, the one
    /// before it as parent (`ROOT` for the first), and its position.
    ///
    /// # Panics
    /// If `pos` is out of range.
    #[inline]
    pub fn at(hashes: &[SequenceHash], pos: usize) -> BlockSpec {
        BlockSpec {
            hash: hashes[pos],
            parent: if pos == 0 {
                SequenceHash::ROOT
            } else {
                hashes[pos - 1]
            },
            position: pos as u32,
        }
    }
}

// ---------------------------------------------------------------------------
// Internal state

const NO_SLOT: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Held by a `MutableBlock` or `CompleteBlock` (completion takes no lock).
    Mutable,
    /// Registered; `indexed` says whether the index points here.
    Registered,
}

/// Per-slot metadata: one cache line per slot.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Slot {
    state: State,
    indexed: bool,
    refcount: u32,
    children: u32,
    position: u32,
    /// Bumped every time the slot returns to the free list; `WeakBlock`s
    /// compare it to detect reuse.
    generation: u32,
    /// The parent block's slot while it is cached here (its `children`
    /// counts this block). Only kept for policies that use leaves
    /// (`EvictionPolicy::uses_leaves`): `children` only feeds
    /// `BlockInfo::is_leaf` and `on_leaf_changed`, so other stores leave it
    /// `NO_SLOT`.
    parent_slot: u32,
    /// The parent slot's `generation` when the link was made: a parent
    /// evicted and recomputed into the same slot is a new block that does not
    /// count this one among its children.
    parent_gen: u32,
    /// Where the index entry of this slot is (meaningful while `indexed`).
    index_pos: u32,
    hash: SequenceHash,
    parent: SequenceHash,
}

impl Slot {
    const EMPTY: Slot = Slot {
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

    #[inline]
    fn info(&self) -> BlockInfo {
        BlockInfo {
            hash: self.hash,
            position: self.position,
            is_leaf: self.children == 0,
        }
    }
}

/// The tier's eviction policy, held by value with one variant per concrete
/// policy: every call is a `match` on a well-predicted tag followed by a
/// static, inlinable call (no trait object, no virtual call per hook).
/// LRU's `EvictionPolicy` hooks (`on_hit`, `on_miss`, `on_register`,
/// `on_evicted`, `on_leaf_changed`) are the trait's no-op defaults and its
/// `insert` ignores the `BlockInfo`, so the store also skips building
/// `BlockInfo`s and keeping parent links for it ([`Policy::has_hooks`]).
/// The flat policies (LRU, `gated-lru`, `gated-arc`) have fast paths in
/// `allocate_into`, `match_prefix_into` and `release`, through `FlatPolicy`.
enum Policy {
    Lru(Lru),
    PrefixLru(PrefixLru),
    S3Fifo(S3Fifo),
    TinyLfu(TinyLfu),
    PrefixFreq(PrefixFreq),
    GatedLru(GatedLru),
    GatedArc(GatedArc),
}

/// `$body` with `$p` bound to the concrete policy inside `$policy`.
macro_rules! dispatch {
    ($policy:expr, $p:ident => $body:expr) => {
        match $policy {
            Policy::Lru($p) => $body,
            Policy::PrefixLru($p) => $body,
            Policy::S3Fifo($p) => $body,
            Policy::TinyLfu($p) => $body,
            Policy::PrefixFreq($p) => $body,
            Policy::GatedLru($p) => $body,
            Policy::GatedArc($p) => $body,
        }
    };
}

/// `$flat` with `$p` bound to the concrete policy when it is a
/// `FlatPolicy` (driven by the store's batched fast paths), else `$other`.
macro_rules! flat {
    ($policy:expr, $p:ident => $flat:expr, _ => $other:expr) => {
        match $policy {
            Policy::Lru($p) => $flat,
            Policy::GatedLru($p) => $flat,
            Policy::GatedArc($p) => $flat,
            _ => $other,
        }
    };
}

/// `$body` with `$p` bound to the concrete policy, for policies with hooks
/// (nothing for LRU).
macro_rules! hooks {
    ($policy:expr, $p:ident => $body:expr) => {
        match $policy {
            Policy::Lru(_) => {}
            Policy::PrefixLru($p) => $body,
            Policy::S3Fifo($p) => $body,
            Policy::TinyLfu($p) => $body,
            Policy::PrefixFreq($p) => $body,
            Policy::GatedLru($p) => $body,
            Policy::GatedArc($p) => $body,
        }
    };
}

impl Policy {
    fn build(kind: PolicyKind, capacity: usize) -> Self {
        // The same policies `PolicyKind::build` boxes.
        match kind {
            PolicyKind::Lru => Policy::Lru(Lru::new(capacity)),
            PolicyKind::PrefixLru => Policy::PrefixLru(PrefixLru::new(capacity)),
            PolicyKind::S3Fifo => Policy::S3Fifo(S3Fifo::new(capacity)),
            PolicyKind::TinyLfu => Policy::TinyLfu(TinyLfu::new(capacity)),
            PolicyKind::PrefixFreq => Policy::PrefixFreq(PrefixFreq::new(capacity)),
            PolicyKind::GatedLru => Policy::GatedLru(GatedLru::new(capacity)),
            PolicyKind::GatedArc => Policy::GatedArc(GatedArc::new(capacity)),
        }
    }

    #[inline]
    fn name(&self) -> &'static str {
        dispatch!(self, p => p.name())
    }

    #[inline]
    fn len(&self) -> usize {
        dispatch!(self, p => p.len())
    }

    #[inline]
    fn evict(&mut self) -> Option<SlotId> {
        dispatch!(self, p => p.evict())
    }

    #[inline]
    fn remove(&mut self, s: SlotId) {
        dispatch!(self, p => p.remove(s))
    }

    /// Whether the policy has hooks (all but LRU): only then does the store
    /// build `BlockInfo`s and keep parent links and children counts.
    #[inline]
    fn has_hooks(&self) -> bool {
        !matches!(self, Policy::Lru(_))
    }

    /// Whether the store keeps parent links and children counts for
    /// `BlockInfo::is_leaf` and `on_leaf_changed`
    /// ([`EvictionPolicy::uses_leaves`]).
    #[inline]
    fn uses_leaves(&self) -> bool {
        dispatch!(self, p => p.uses_leaves())
    }

    #[inline(always)]
    fn insert(&mut self, s: SlotId, slot: &Slot) {
        match self {
            Policy::Lru(l) => l.insert(s, &LRU_INFO),
            Policy::PrefixLru(p) => p.insert(s, &slot.info()),
            Policy::S3Fifo(p) => p.insert(s, &slot.info()),
            Policy::TinyLfu(p) => p.insert(s, &slot.info()),
            Policy::PrefixFreq(p) => p.insert(s, &slot.info()),
            Policy::GatedLru(p) => p.insert(s, &slot.info()),
            Policy::GatedArc(p) => p.insert(s, &slot.info()),
        }
    }

    #[inline(always)]
    fn on_hit(&mut self, s: SlotId, slot: &Slot) {
        hooks!(self, p => p.on_hit(s, &slot.info()))
    }

    #[inline(always)]
    fn prefetch(&self, h: SequenceHash) {
        hooks!(self, p => p.prefetch(h))
    }

    #[inline(always)]
    fn prefetch_lookup(&self, h: SequenceHash) {
        // A flat policy's hits touch no table (`FlatPolicy`).
        flat!(self, _p => {}, _ => hooks!(self, p => p.prefetch_lookup(h)))
    }

    #[inline(always)]
    fn on_miss(&mut self, h: SequenceHash) {
        hooks!(self, p => p.on_miss(h))
    }

    #[inline(always)]
    fn on_register(&mut self, s: SlotId, slot: &Slot) {
        hooks!(self, p => p.on_register(s, &slot.info()))
    }

    #[inline(always)]
    fn on_evicted(&mut self, s: SlotId, slot: &Slot) {
        hooks!(self, p => p.on_evicted(s, &slot.info()))
    }

    #[inline(always)]
    fn on_leaf_changed(&mut self, s: SlotId, is_leaf: bool) {
        hooks!(self, p => p.on_leaf_changed(s, is_leaf))
    }
}

struct Inner {
    slots: Vec<Slot>,
    free: Vec<SlotId>,
    index: Index,
    policy: Policy,
    counters: Counters,
    events: EventBus,
    /// Scratch buffer for Removed events (kept to avoid per-call allocation
    /// when nobody subscribes).
    removed: Vec<SequenceHash>,
}

struct Shared {
    tier: Tier,
    capacity: usize,
    duplicates: DuplicatePolicy,
    inner: Mutex<Inner>,
}

/// How far ahead batch loops prefetch index buckets.
const PREFETCH_AHEAD: usize = 4;

impl Inner {
    /// The indexed slot holding exactly `hash`, if any.
    #[inline(always)]
    fn lookup(&self, hash: SequenceHash) -> Option<SlotId> {
        let slots = &self.slots;
        self.index
            .get(self.index.probe(hash), hash, |s| slots[s as usize].hash)
    }

    #[inline]
    fn prefetch_bucket(&self, hash: SequenceHash) {
        prefetch(self.index.bucket_ptr(self.index.probe(hash)));
    }

    /// Forget the inactive block in `s` (the policy already gave it up):
    /// unindex it, detach it from its parent, report it. Its slot stays
    /// `Registered` for the caller to reinitialise.
    #[inline]
    fn evict_slot(&mut self, s: SlotId, evicted: &mut Option<&mut Vec<Evicted>>) {
        let slot = self.slots[s as usize];
        debug_assert!(slot.state == State::Registered && slot.refcount == 0 && slot.indexed);
        self.index
            .remove_at(self.index.probe(slot.hash), slot.index_pos);
        self.slots[s as usize].indexed = false;
        self.policy.on_evicted(s, &slot);
        self.detach_from_parent(s);
        // A reused slot must not upgrade old `WeakBlock`s.
        let g = &mut self.slots[s as usize].generation;
        *g = g.wrapping_add(1);
        self.counters.evictions += 1;
        if self.events.active() {
            self.removed.push(slot.hash);
        }
        if let Some(v) = evicted.as_mut() {
            v.push(Evicted {
                slot: s,
                hash: slot.hash,
                parent: slot.parent,
                position: slot.position,
            });
        }
    }

    /// Take a slot off the free list or evict the policy's victim.
    /// Caller has checked availability.
    #[inline]
    fn take_slot(&mut self, evicted: &mut Option<&mut Vec<Evicted>>) -> SlotId {
        if let Some(s) = self.free.pop() {
            return s;
        }
        let s = self
            .policy
            .evict()
            .expect("availability checked: an inactive block exists");
        self.evict_slot(s, evicted);
        s
    }

    /// The block in `s` stops being its parent's child.
    #[inline]
    fn detach_from_parent(&mut self, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        let p = slot.parent_slot;
        if p == NO_SLOT {
            return;
        }
        slot.parent_slot = NO_SLOT;
        let want = slot.parent;
        let slot_parent_gen = slot.parent_gen;
        let parent = &mut self.slots[p as usize];
        // The parent may have been evicted and its slot reused since (even by
        // the same hash: then its generation differs).
        if parent.state == State::Registered
            && parent.indexed
            && parent.hash == want
            && parent.generation == slot_parent_gen
        {
            parent.children -= 1;
            if parent.children == 0 {
                self.policy.on_leaf_changed(p, true);
            }
        }
    }

    /// Return a slot to the free list.
    #[inline]
    fn free_slot(&mut self, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        slot.state = State::Free;
        slot.indexed = false;
        slot.refcount = 0;
        slot.children = 0;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(s);
    }

    /// Drop one reference to a registered slot.
    #[inline]
    fn release_one(&mut self, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        debug_assert!(slot.state == State::Registered && slot.refcount > 0);
        slot.refcount -= 1;
        if slot.refcount == 0 {
            if slot.indexed {
                self.policy.insert(s, &self.slots[s as usize]);
            } else {
                self.free_slot(s);
            }
        }
    }

    /// Add one reference to a registered, indexed slot (resurrecting it if
    /// inactive).
    #[inline]
    fn acquire(&mut self, s: SlotId) {
        let slot = &mut self.slots[s as usize];
        if slot.refcount == 0 {
            self.policy.remove(s);
            self.counters.resurrections += 1;
        }
        slot.refcount += 1;
    }

    fn flush_removed(&mut self, tier: Tier) {
        if !self.removed.is_empty() {
            let hashes = std::mem::take(&mut self.removed);
            self.events.emit(tier, EventKind::Removed { hashes });
        }
    }
}

/// What LRU's `insert` is given: it ignores its `BlockInfo`.
const LRU_INFO: BlockInfo = BlockInfo {
    hash: SequenceHash::ROOT,
    position: 0,
    is_leaf: true,
};

// ---------------------------------------------------------------------------
// Public store

/// The block store of one tier. Cheap to clone (a shared handle); `Send + Sync`.
#[derive(Clone)]
pub struct BlockStore {
    shared: Counted<Shared>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore")
            .field("tier", &self.shared.tier)
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl BlockStore {
    /// Build a store; all slots start free. Refuses impossible capacities.
    pub fn new(config: StoreConfig) -> Result<Self, StoreError> {
        let StoreConfig {
            tier,
            capacity,
            policy,
            duplicates,
        } = config;
        if capacity == 0 {
            return Err(StoreError::ZeroCapacity { tier });
        }
        let max = (u32::MAX - 1) as usize;
        if capacity > max {
            return Err(StoreError::CapacityTooLarge {
                tier,
                capacity,
                max,
            });
        }
        // Free list popped from the back: slot 0 is handed out first.
        let free: Vec<SlotId> = (0..capacity as u32).rev().collect();
        let index = Index::with_capacity(capacity);
        let inner = Inner {
            slots: vec![Slot::EMPTY; capacity],
            free,
            index,
            policy: Policy::build(policy, capacity),
            counters: Counters::default(),
            events: EventBus::default(),
            removed: Vec::new(),
        };
        Ok(BlockStore {
            shared: Counted::new(Shared {
                tier,
                capacity,
                duplicates,
                inner: Mutex::new(inner),
            }),
        })
    }

    /// The tier this store serves.
    pub fn tier(&self) -> Tier {
        self.shared.tier
    }

    /// Total number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Name of the eviction policy in use.
    pub fn policy_name(&self) -> &'static str {
        self.shared.inner.lock().policy.name()
    }

    /// Subscribe to this tier's events from now on (lossless, unbounded).
    pub fn subscribe(&self) -> Receiver<crate::events::Event> {
        self.shared.inner.lock().events.subscribe()
    }

    /// Whether two handles are the same store.
    pub fn same_store(&self, other: &BlockStore) -> bool {
        Counted::ptr_eq(&self.shared, &other.shared)
    }

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
        let available = g.free.len() + g.policy.len();
        if n > available {
            g.counters.allocation_failures += 1;
            return Err(StoreError::Exhausted {
                tier: self.shared.tier,
                requested: n,
                available,
            });
        }
        self.shared.add_refs(n);
        let g = &mut *g;
        // `$p`: a `FlatPolicy`. Its next victim does not depend on anything
        // the store does between two evictions, so victims are popped first
        // and then unindexed in the same order as `take_slot` would: this
        // lets the victims' slots and index buckets be prefetched ahead.
        macro_rules! allocate_flat {
            ($p:ident) => {{
                let from_free = n.min(g.free.len());
                let start = out.len();
                for _ in 0..n {
                    let s = match g.free.pop() {
                        Some(s) => s,
                        None => {
                            let s = FlatPolicy::flat_evict($p).expect("availability checked");
                            prefetch(&g.slots[s as usize]);
                            s
                        }
                    };
                    out.push(MutableBlock {
                        // SAFETY: one of the `n` references added above.
                        store: unsafe { self.shared.counted_clone() },
                        slot: s,
                    });
                }
                let victims = start + from_free..out.len();
                for b in &out[start..victims.start] {
                    let slot = &mut g.slots[b.slot as usize];
                    slot.state = State::Mutable;
                    slot.indexed = false;
                    slot.refcount = 0;
                    slot.children = 0;
                    slot.parent_slot = NO_SLOT;
                }
                // `evict_slot` specialised for a flat policy (no parent
                // links), fused with the slot's reinitialisation.
                let emit = g.events.active();
                for b in &out[victims.clone()] {
                    let s = b.slot;
                    let slot = &mut g.slots[s as usize];
                    debug_assert!(
                        slot.state == State::Registered
                            && slot.refcount == 0
                            && slot.indexed
                            && slot.parent_slot == NO_SLOT
                    );
                    let (hash, pos) = (slot.hash, slot.index_pos);
                    g.index.remove_at(g.index.probe(hash), pos);
                    // A reused slot must not upgrade old `WeakBlock`s.
                    slot.generation = slot.generation.wrapping_add(1);
                    slot.state = State::Mutable;
                    slot.indexed = false;
                    slot.refcount = 0;
                    slot.children = 0;
                    $p.flat_evicted(s, hash);
                    if emit {
                        g.removed.push(hash);
                    }
                    if let Some(v) = evicted.as_mut() {
                        v.push(Evicted {
                            slot: s,
                            hash,
                            parent: slot.parent,
                            position: slot.position,
                        });
                    }
                }
                g.counters.evictions += victims.len() as u64;
            }};
        }
        flat!(&mut g.policy, p => allocate_flat!(p), _ => {
            for _ in 0..n {
                let s = g.take_slot(&mut evicted);
                let slot = &mut g.slots[s as usize];
                slot.state = State::Mutable;
                slot.indexed = false;
                slot.refcount = 0;
                slot.children = 0;
                slot.parent_slot = NO_SLOT;
                out.push(MutableBlock {
                    // SAFETY: one of the `n` references added above.
                    store: unsafe { self.shared.counted_clone() },
                    slot: s,
                });
            }
        });
        g.counters.allocations += n as u64;
        g.flush_removed(self.shared.tier);
        Ok(())
    }

    /// Longest prefix of `hashes` this tier holds: one guard per matched block,
    /// in order. Inactive matched blocks come back into use. Stops at the first
    /// hash not present.
    pub fn match_prefix(&self, hashes: &[SequenceHash]) -> Vec<ImmutableBlock> {
        let mut out = Vec::new();
        self.match_prefix_into(hashes, &mut out);
        out
    }

    /// As [`match_prefix`](Self::match_prefix), appending to a caller-owned
    /// vector; returns the number of blocks matched.
    pub fn match_prefix_into(
        &self,
        hashes: &[SequenceHash],
        out: &mut Vec<ImmutableBlock>,
    ) -> usize {
        // References for every possible match, one atomic op; the unused are
        // given back at the end.
        self.shared.add_refs(hashes.len());
        let mut g = self.shared.inner.lock();
        let g = &mut *g;
        let mut matched = 0;
        for &h in hashes.iter().take(PREFETCH_AHEAD) {
            g.prefetch_bucket(h);
            g.policy.prefetch_lookup(h);
        }
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&next) = hashes.get(i + PREFETCH_AHEAD) {
                g.prefetch_bucket(next);
                g.policy.prefetch_lookup(next);
            }
            match g.lookup(h) {
                Some(s) => {
                    // `acquire` and `on_hit` with a flat policy's calls
                    // inlined.
                    macro_rules! hit_flat {
                        ($p:ident) => {{
                            let slot = &mut g.slots[s as usize];
                            if slot.refcount == 0 {
                                FlatPolicy::flat_remove($p, s);
                                g.counters.resurrections += 1;
                            }
                            slot.refcount += 1;
                            $p.flat_hit(s, slot.position);
                        }};
                    }
                    flat!(&mut g.policy, p => hit_flat!(p), _ => {
                        g.acquire(s);
                        g.policy.on_hit(s, &g.slots[s as usize]);
                    });
                    out.push(ImmutableBlock {
                        // SAFETY: one of the references added above.
                        store: unsafe { self.shared.counted_clone() },
                        slot: s,
                        hash: h,
                    });
                    matched += 1;
                }
                None => {
                    g.policy.on_miss(h);
                    // The rest of the request, from the missed block on, is
                    // usually computed and registered next: let the policy
                    // prefetch what it will count then (lines a lookup
                    // already asked for cost nothing more).
                    if g.policy.has_hooks() {
                        for &r in &hashes[i..] {
                            g.policy.prefetch(r);
                        }
                    }
                    g.counters.lookups += 1;
                    break;
                }
            }
        }
        g.counters.lookups += matched as u64;
        g.counters.hits += matched as u64;
        self.shared.sub_refs(hashes.len() - matched);
        matched
    }

    /// Non-prefix presence: a guard for every hash the tier holds, `None` for
    /// the others (does not stop at the first miss; counts no hits/lookups).
    pub fn scan(&self, hashes: &[SequenceHash]) -> Vec<Option<ImmutableBlock>> {
        let mut out = Vec::with_capacity(hashes.len());
        let mut g = self.shared.inner.lock();
        for &h in hashes {
            let found = g.lookup(h);
            out.push(found.map(|s| {
                g.acquire(s);
                ImmutableBlock {
                    store: self.shared.clone(),
                    slot: s,
                    hash: h,
                }
            }));
        }
        out
    }

    /// Whether each hash is matchable here, without taking references.
    pub fn contains_all(&self, hashes: &[SequenceHash]) -> Vec<bool> {
        let g = self.shared.inner.lock();
        hashes.iter().map(|&h| g.lookup(h).is_some()).collect()
    }

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
        // Monomorphised with and without event emission: the common
        // (no subscriber) loop carries no chain-building state.
        if g.events.active() {
            self.register_locked::<true, _>(&mut g, &mut blocks, out);
        } else {
            self.register_locked::<false, _>(&mut g, &mut blocks, out);
        }
    }

    /// First pass of the two-pass registers: every block takes its identity
    /// (registered, not yet indexed, so a panic midway leaves blocks that free
    /// themselves when released), its index bucket is prefetched, and its
    /// guard is appended to `out`. Returns where the batch starts in `out`.
    #[inline(always)]
    fn register_identities<I: Iterator<Item = CompleteBlock>>(
        &self,
        g: &mut Inner,
        blocks: &mut I,
        out: &mut Vec<ImmutableBlock>,
    ) -> usize {
        let start = out.len();
        for b in blocks {
            let (store, s, spec) = b.into_parts();
            assert!(
                Counted::ptr_eq(&store, &self.shared),
                "register: a CompleteBlock of another store was passed"
            );
            g.prefetch_bucket(spec.hash);
            let slot = &mut g.slots[s as usize];
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
            out.push(ImmutableBlock {
                store,
                slot: s,
                hash: spec.hash,
            });
        }
        start
    }

    /// Register a batch in two passes with the outcome of one: first every
    /// block takes its identity (registered, not yet indexed, so a panic
    /// midway leaves blocks that free themselves when released) and its index
    /// bucket is prefetched ([`register_identities`](Self::register_identities));
    /// then, in order, each block is indexed (a duplicate resolves against
    /// the earlier blocks of the batch exactly as one pass would), counted as
    /// its parent's child when the policy uses leaves (`TREE`), reported to
    /// the policy and, with `EMIT`, added to the `Stored` events (one per run
    /// of blocks that chain parent to child).
    #[inline(always)]
    fn register_batch<const TREE: bool, const EMIT: bool, I: Iterator<Item = CompleteBlock>>(
        &self,
        g: &mut Inner,
        blocks: &mut I,
        out: &mut Vec<ImmutableBlock>,
    ) {
        let start = self.register_identities(g, blocks, out);
        let reject = self.shared.duplicates == DuplicatePolicy::Reject;
        let mut registered = 0;
        // Slot of the previous block registered in this batch, to find the
        // parent of a chain without an index lookup.
        let mut prev: Option<(SequenceHash, SlotId)> = None;
        // With `EMIT`: the run of registered hashes being built, and its parent.
        let mut chain: Vec<SequenceHash> = Vec::new();
        let mut chain_parent = SequenceHash::ROOT;
        for b in &mut out[start..] {
            let (s, hash) = (b.slot, b.hash);
            let parent = g.slots[s as usize].parent;
            // Parent links only feed the children counts behind
            // `BlockInfo::is_leaf`, which only policies that use leaves see.
            let found = if !TREE || parent == SequenceHash::ROOT {
                NO_SLOT
            } else {
                match prev {
                    Some((h, ps)) if h == parent => ps,
                    _ => g.lookup(parent).unwrap_or(NO_SLOT),
                }
            };
            let probe = g.index.probe(hash);
            let slots = &g.slots;
            match g
                .index
                .get_or_insert(probe, hash, s, |x| slots[x as usize].hash)
            {
                Ok(index_pos) => {
                    // Count the new block as its parent's child (if the
                    // parent is still the indexed block it names).
                    let mut parent_slot = NO_SLOT;
                    let mut parent_gen = 0;
                    if found != NO_SLOT {
                        let p = &mut g.slots[found as usize];
                        if p.indexed && p.hash == parent {
                            parent_slot = found;
                            parent_gen = p.generation;
                            p.children += 1;
                            if p.children == 1 {
                                g.policy.on_leaf_changed(found, false);
                            }
                        }
                    }
                    let slot = &mut g.slots[s as usize];
                    slot.indexed = true;
                    slot.index_pos = index_pos;
                    if TREE {
                        // (The first pass left them `NO_SLOT` and 0.)
                        slot.parent_slot = parent_slot;
                        slot.parent_gen = parent_gen;
                    }
                    let position = slot.position;
                    flat!(&mut g.policy, p => p.flat_register(s, hash, position), _ => {
                        g.policy.on_register(s, &g.slots[s as usize])
                    });
                    registered += 1;
                    prev = Some((hash, s));
                    if EMIT {
                        if chain.last() != Some(&parent) && !chain.is_empty() {
                            let hashes = std::mem::take(&mut chain);
                            let parent =
                                (chain_parent != SequenceHash::ROOT).then_some(chain_parent);
                            g.events
                                .emit(self.shared.tier, EventKind::Stored { hashes, parent });
                        }
                        if chain.is_empty() {
                            chain_parent = parent;
                        }
                        chain.push(hash);
                    }
                }
                Err(existing) => {
                    g.counters.duplicates += 1;
                    if reject {
                        g.free_slot(s);
                        g.acquire(existing);
                        b.slot = existing;
                        prev = Some((hash, existing));
                    }
                    // Allowed duplicate: stays registered, unindexed, for
                    // its holder.
                }
            }
        }
        g.counters.registrations += registered;
        if EMIT && !chain.is_empty() {
            let parent = (chain_parent != SequenceHash::ROOT).then_some(chain_parent);
            g.events.emit(
                self.shared.tier,
                EventKind::Stored {
                    hashes: chain,
                    parent,
                },
            );
        }
    }

    #[inline(always)]
    fn register_locked<const EMIT: bool, I: Iterator<Item = CompleteBlock>>(
        &self,
        g: &mut Inner,
        blocks: &mut I,
        out: &mut Vec<ImmutableBlock>,
    ) {
        if g.policy.uses_leaves() {
            self.register_batch::<true, EMIT, _>(g, blocks, out);
        } else {
            self.register_batch::<false, EMIT, _>(g, blocks, out);
        }
    }

    /// Release a batch of guards under one lock, in iteration order. A
    /// request should release its blocks tail first
    /// (`store.release(blocks.into_iter().rev())`) so that, under LRU, a
    /// prefix's head outlives its tail. Guards of another store are dropped
    /// normally.
    pub fn release<I: IntoIterator<Item = ImmutableBlock>>(&self, blocks: I) {
        let mut g = self.shared.inner.lock();
        let mut forgotten = 0;
        let inner = &mut *g;
        // `release_one` with a flat policy's `insert` inlined.
        macro_rules! release_flat {
            ($p:ident) => {{
                for b in blocks {
                    if !Counted::ptr_eq(&b.store, &self.shared) {
                        // Another store: its own Drop takes its own lock.
                        drop(b);
                        continue;
                    }
                    let s = b.slot;
                    std::mem::forget(b);
                    forgotten += 1;
                    let slot = &mut inner.slots[s as usize];
                    debug_assert!(slot.state == State::Registered && slot.refcount > 0);
                    slot.refcount -= 1;
                    if slot.refcount == 0 {
                        if slot.indexed {
                            FlatPolicy::flat_insert($p, s);
                        } else {
                            // `free_slot`.
                            slot.state = State::Free;
                            slot.children = 0;
                            slot.generation = slot.generation.wrapping_add(1);
                            inner.free.push(s);
                        }
                    }
                }
            }};
        }
        flat!(&mut inner.policy, p => release_flat!(p), _ => {
            for b in blocks {
                if !Counted::ptr_eq(&b.store, &self.shared) {
                    // Another store: its own Drop takes its own lock.
                    drop(b);
                    continue;
                }
                inner.release_one(b.slot);
                std::mem::forget(b);
                forgotten += 1;
            }
        });
        drop(g);
        // The forgotten guards' references, given back in one operation.
        self.shared.sub_refs(forgotten);
    }

    /// Remove every inactive block and stop matching the ones in use (they
    /// stay valid for their holders and return to the free list when
    /// released). Emits `Cleared`.
    pub fn clear(&self) {
        let mut g = self.shared.inner.lock();
        let g = &mut *g;
        while let Some(s) = g.policy.evict() {
            g.policy.on_evicted(s, &g.slots[s as usize]);
            g.counters.evictions += 1;
            g.free_slot(s);
        }
        for slot in g.slots.iter_mut() {
            slot.indexed = false;
            slot.parent_slot = NO_SLOT;
            slot.children = 0;
        }
        g.index.clear();
        g.events.emit(self.shared.tier, EventKind::Cleared);
    }

    /// A consistent snapshot of the store's gauges and counters.
    pub fn metrics(&self) -> TierMetrics {
        let g = self.shared.inner.lock();
        let free = g.free.len() as u64;
        let inactive = g.policy.len() as u64;
        TierMetrics {
            tier: self.shared.tier,
            capacity: self.shared.capacity as u64,
            free,
            inactive,
            in_use: self.shared.capacity as u64 - free - inactive,
            counters: g.counters,
        }
    }

    /// Check every invariant by a full scan (for tests and debugging; O(capacity)).
    /// Returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let g = self.shared.inner.lock();
        let cap = self.shared.capacity;
        let mut on_free = vec![false; cap];
        for &s in &g.free {
            if on_free[s as usize] {
                return Err(format!("slot {s} twice on the free list"));
            }
            on_free[s as usize] = true;
            if g.slots[s as usize].state != State::Free {
                return Err(format!("slot {s} on free list but not free"));
            }
        }
        let mut inactive = 0usize;
        let mut in_use = 0usize;
        for (i, slot) in g.slots.iter().enumerate() {
            match slot.state {
                State::Free => {
                    if !on_free[i] {
                        return Err(format!("free slot {i} missing from the free list"));
                    }
                }
                State::Mutable => in_use += 1,
                State::Registered => {
                    if slot.refcount == 0 {
                        if !slot.indexed {
                            return Err(format!("unindexed slot {i} with no users"));
                        }
                        inactive += 1;
                    } else {
                        in_use += 1;
                    }
                    if slot.indexed && g.lookup(slot.hash) != Some(i as u32) {
                        return Err(format!("indexed slot {i} not in the index"));
                    }
                }
            }
        }
        let mut indexed = 0usize;
        for (i, tag, s) in g.index.entries() {
            indexed += 1;
            let Some(slot) = g.slots.get(s as usize) else {
                return Err(format!("index entry {i} -> slot {s}: no such slot"));
            };
            if slot.state != State::Registered
                || !slot.indexed
                || g.index.probe(slot.hash).tag() != tag
            {
                return Err(format!("index entry {i} -> slot {s} is stale"));
            }
            if g.lookup(slot.hash) != Some(s) {
                return Err(format!("index entry {i} -> slot {s} is unreachable"));
            }
            if g.index.slot_at(slot.index_pos) != Some(s) {
                return Err(format!("slot {s} has a stale index position"));
            }
        }
        if indexed != g.index.len() {
            return Err(format!(
                "index holds {indexed} entries but counts {}",
                g.index.len()
            ));
        }
        g.index.check()?;
        if inactive != g.policy.len() {
            return Err(format!(
                "{inactive} inactive slots but the policy holds {}",
                g.policy.len()
            ));
        }
        if g.free.len() + inactive + in_use != cap {
            return Err(format!(
                "free {} + inactive {inactive} + in use {in_use} != capacity {cap}",
                g.free.len()
            ));
        }
        // Child counts: each registered, indexed block counts the live links
        // of blocks naming it (same slot, hash and generation) as parent.
        let mut children = vec![0u32; cap];
        for slot in g.slots.iter() {
            let p = slot.parent_slot;
            if slot.state == State::Registered && p != NO_SLOT {
                let ps = &g.slots[p as usize];
                if ps.state == State::Registered
                    && ps.indexed
                    && ps.hash == slot.parent
                    && ps.generation == slot.parent_gen
                {
                    children[p as usize] += 1;
                }
            }
        }
        for (i, slot) in g.slots.iter().enumerate() {
            if slot.state == State::Registered && slot.indexed && slot.children != children[i] {
                return Err(format!(
                    "slot {i} counts {} children but {} blocks link to it",
                    slot.children, children[i]
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Typestate guards

/// A freshly allocated slot being written. Dropping it returns the slot to the
/// free list. [`complete`](Self::complete) turns it into a [`CompleteBlock`].
pub struct MutableBlock {
    store: Counted<Shared>,
    slot: SlotId,
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

impl Drop for MutableBlock {
    fn drop(&mut self) {
        self.store.inner.lock().free_slot(self.slot);
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
/// [`BlockStore::register`]; dropping it returns the slot to the free list.
pub struct CompleteBlock {
    store: Counted<Shared>,
    slot: SlotId,
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
    fn into_parts(self) -> (Counted<Shared>, SlotId, BlockSpec) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped; its reference moves to the caller.
        let store = unsafe { std::ptr::read(&this.store) };
        (store, this.slot, this.spec)
    }
}

impl Drop for CompleteBlock {
    fn drop(&mut self) {
        self.store.inner.lock().free_slot(self.slot);
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
    store: Counted<Shared>,
    slot: SlotId,
    hash: SequenceHash,
}

impl ImmutableBlock {
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
        let generation = self.store.inner.lock().slots[self.slot as usize].generation;
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
        self.store.inner.lock().slots[self.slot as usize].refcount += 1;
        ImmutableBlock {
            store: self.store.clone(),
            slot: self.slot,
            hash: self.hash,
        }
    }
}

impl Drop for ImmutableBlock {
    fn drop(&mut self) {
        self.store.inner.lock().release_one(self.slot);
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
    store: Counted<Shared>,
    slot: SlotId,
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
            let slot = g.slots[self.slot as usize];
            let alive = slot.state == State::Registered
                && slot.generation == self.generation
                && slot.hash == self.hash
                && (slot.refcount > 0 || slot.indexed);
            if !alive {
                return None;
            }
            g.acquire(self.slot);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::hash::{hash_trace_ids, CacheSalt};

    fn store(cap: usize) -> BlockStore {
        BlockStore::new(StoreConfig::new(Tier::G1, cap)).unwrap()
    }

    fn spec(hashes: &[SequenceHash], i: usize) -> BlockSpec {
        BlockSpec {
            hash: hashes[i],
            parent: if i == 0 {
                SequenceHash::ROOT
            } else {
                hashes[i - 1]
            },
            position: i as u32,
        }
    }

    /// Allocate, complete and register a whole chain.
    fn put(s: &BlockStore, hashes: &[SequenceHash]) -> Vec<ImmutableBlock> {
        let blocks = s.allocate(hashes.len()).unwrap();
        s.register(
            blocks
                .into_iter()
                .enumerate()
                .map(|(i, b)| b.complete(spec(hashes, i))),
        )
    }

    #[test]
    fn refuses_impossible_capacities() {
        assert_eq!(
            BlockStore::new(StoreConfig::new(Tier::G2, 0)).unwrap_err(),
            StoreError::ZeroCapacity { tier: Tier::G2 }
        );
        assert!(matches!(
            BlockStore::new(StoreConfig::new(Tier::G1, u32::MAX as usize)),
            Err(StoreError::CapacityTooLarge { .. })
        ));
    }

    #[test]
    fn allocation_is_all_or_nothing() {
        let s = store(4);
        let held = s.allocate(3).unwrap();
        let err = s.allocate(2).unwrap_err();
        assert_eq!(
            err,
            StoreError::Exhausted {
                tier: Tier::G1,
                requested: 2,
                available: 1
            }
        );
        assert_eq!(s.metrics().free, 1);
        drop(held);
        assert_eq!(s.metrics().free, 4);
        s.check_invariants().unwrap();
    }

    #[test]
    fn lifecycle_and_resurrection() {
        let s = store(4);
        let h = hash_trace_ids(CacheSalt(1), &[1, 2, 3]);
        let blocks = put(&s, &h);
        assert_eq!(s.metrics().in_use, 3);
        s.release(blocks.into_iter().rev());
        let m = s.metrics();
        assert_eq!((m.free, m.inactive, m.in_use), (1, 3, 0));
        let again = s.match_prefix(&h);
        assert_eq!(again.len(), 3);
        assert_eq!(s.metrics().counters.resurrections, 3);
        assert_eq!(again[2].hash(), h[2]);
        s.check_invariants().unwrap();
        drop(again);
        assert_eq!(s.metrics().inactive, 3);
    }

    #[test]
    fn eviction_reports_victims_in_lru_order() {
        let s = store(3);
        let h = hash_trace_ids(CacheSalt(1), &[1, 2, 3]);
        s.release(put(&s, &h).into_iter().rev()); // tail released first
        let mut ev = Vec::new();
        let got = s.allocate_with_evicted(2, &mut ev).unwrap();
        assert_eq!(
            ev.iter().map(|e| e.hash).collect::<Vec<_>>(),
            vec![h[2], h[1]]
        );
        assert_eq!(ev[0].parent, h[1]);
        assert_eq!(
            got.iter().map(|b| b.slot()).collect::<Vec<_>>(),
            vec![ev[0].slot, ev[1].slot]
        );
        // the head survives
        assert_eq!(s.match_prefix(&h).len(), 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn duplicates_rejected_share_one_slot() {
        let s = store(4);
        let h = hash_trace_ids(CacheSalt(1), &[7]);
        let a = put(&s, &h);
        let b = put(&s, &h);
        assert_eq!(a[0].slot(), b[0].slot());
        assert_eq!(s.metrics().free, 3, "the duplicate's slot was freed");
        assert_eq!(s.metrics().counters.duplicates, 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn duplicates_allowed_keep_their_slot_until_released() {
        let s =
            BlockStore::new(StoreConfig::new(Tier::G1, 4).with_duplicates(DuplicatePolicy::Allow))
                .unwrap();
        let h = hash_trace_ids(CacheSalt(1), &[7]);
        let a = put(&s, &h);
        let b = put(&s, &h);
        assert_ne!(a[0].slot(), b[0].slot());
        s.check_invariants().unwrap();
        drop(b);
        let m = s.metrics();
        assert_eq!((m.free, m.in_use), (3, 1), "duplicate freed, original kept");
        drop(a);
        assert_eq!(s.metrics().inactive, 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn weak_blocks_fail_after_eviction() {
        let s = store(1);
        let h = hash_trace_ids(CacheSalt(1), &[1]);
        let b = put(&s, &h);
        let w = b[0].downgrade();
        drop(b);
        let up = w.upgrade().expect("inactive block still upgradable");
        drop(up);
        let other = hash_trace_ids(CacheSalt(1), &[2]);
        let _o = put(&s, &other); // evicts h
        assert!(w.upgrade().is_none());
        drop(s);
        assert!(w.upgrade().is_none());
    }

    #[test]
    fn clones_count_references() {
        let s = store(2);
        let h = hash_trace_ids(CacheSalt(1), &[1]);
        let b = put(&s, &h);
        let c = b[0].clone();
        drop(b);
        assert_eq!(s.metrics().in_use, 1);
        drop(c);
        assert_eq!(s.metrics().inactive, 1);
    }

    #[test]
    fn events_are_sequenced_chains() {
        let s = store(3);
        let rx = s.subscribe();
        let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
        s.release(put(&s, &h).into_iter().rev());
        let g = hash_trace_ids(CacheSalt(1), &[9, 8]);
        s.release(put(&s, &g).into_iter().rev()); // evicts h[1]
        s.clear();
        let evs: Vec<Event> = rx.try_iter().collect();
        let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
        assert_eq!(
            evs[0].kind,
            EventKind::Stored {
                hashes: h.clone(),
                parent: None
            }
        );
        assert_eq!(evs[1].kind, EventKind::Removed { hashes: vec![h[1]] });
        assert_eq!(
            evs[2].kind,
            EventKind::Stored {
                hashes: g.clone(),
                parent: None
            }
        );
        assert_eq!(evs[3].kind, EventKind::Cleared);
        assert!(s.match_prefix(&g).is_empty());
        s.check_invariants().unwrap();
    }

    #[test]
    fn clear_keeps_in_use_blocks_valid() {
        let s = store(3);
        let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
        let held = put(&s, &h);
        s.clear();
        assert!(s.match_prefix(&h).is_empty());
        assert_eq!(s.metrics().in_use, 2);
        s.check_invariants().unwrap();
        drop(held);
        assert_eq!(s.metrics().free, 3);
        s.check_invariants().unwrap();
    }

    #[test]
    fn scan_finds_non_prefix_blocks() {
        let s = store(4);
        let h = hash_trace_ids(CacheSalt(1), &[1, 2, 3]);
        let b = put(&s, &h);
        s.release(vec![b.into_iter().nth(1).unwrap()]);
        let found = s.scan(&[h[0], SequenceHash(5), h[2]]);
        assert!(found[0].is_some() && found[1].is_none() && found[2].is_some());
        assert_eq!(s.contains_all(&[h[1], SequenceHash(5)]), vec![true, false]);
    }

    /// A parent evicted before its child and recomputed into the same slot
    /// is a new block: evicting the old child must not decrement its count
    /// (found by the policy property tests: it underflowed).
    #[test]
    fn recomputed_parent_does_not_inherit_stale_children() {
        use crate::PolicyKind;
        let s = BlockStore::new(StoreConfig::new(Tier::G1, 2).with_policy(PolicyKind::PrefixLru))
            .unwrap();
        let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
        let mut b = put(&s, &h);
        let child = b.pop().unwrap(); // held: the parent is the only victim
        s.release(b);
        let again = s.allocate(1).unwrap(); // evicts the parent
        let p = s.register(again.into_iter().map(|m| m.complete(spec(&h, 0))));
        s.check_invariants().unwrap();
        drop(child); // released first: evicted first
        drop(p);
        s.check_invariants().unwrap();
        // Evict the child: its stale link must not touch the new parent.
        let _x = s.allocate(1).unwrap();
        s.check_invariants().unwrap();
        let _y = s.allocate(1).unwrap();
        s.check_invariants().unwrap();
    }

    #[test]
    fn leaf_tracking_survives_parent_eviction() {
        let s = store(2);
        let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
        let b = put(&s, &h);
        // release head first: the head becomes the LRU victim while its child stays
        s.release(b);
        let g = hash_trace_ids(CacheSalt(1), &[5]);
        let x = put(&s, &g);
        assert_eq!(s.scan(&h).iter().filter(|b| b.is_some()).count(), 1);
        drop(x);
        s.check_invariants().unwrap();
    }
}
