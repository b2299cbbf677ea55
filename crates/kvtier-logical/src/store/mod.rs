//! The block store of one tier: a fixed pool of slots, a free list, an index
//! from sequence hash to slot, per-slot reference counts and an inactive set
//! ordered by the tier's eviction policy.
//!
//! # Layout
//! - `slots.rs`: the locked state ([`Core`](slots::Core): slots, free list,
//!   index, counters) and the per-block steps every batch call is built of.
//! - `allocate.rs`, `lookup.rs`, `register.rs`, `release.rs`: the batch
//!   calls, each written once, generic over the policy.
//! - `invalidate.rs` (withdrawing blocks), `snapshot.rs` (listings),
//!   `guards.rs` (the typestate guards), `emit.rs` (events),
//!   `check.rs` (the invariant scan of tests).
//!
//! # Dispatch
//! The policy is held by value in an enum with one variant per policy
//! ([`AnyPolicy`], generated from the policy list). Each public call takes
//! the lock, matches on the policy once ([`with_policy!`]) and runs code
//! monomorphised for it: no trait object, and hooks a policy does not
//! override cost nothing.
//!
//! # Locking
//! One `parking_lot::Mutex` per store guards all of its state. Batch calls
//! (`match_prefix`, `allocate`, `register`, `release`, `scan`) take it once per
//! batch; a single guard's `clone`/`drop` takes it once. Nothing is done per
//! block outside the lock, and nothing under the lock allocates per block
//! (the output `Vec` of a batch is allocated once, the index and slot arrays
//! are sized at construction).
//!
//! # Invariants (checked by `BlockStore::check_invariants` in tests)
//! - `free + inactive + in_use == capacity`.
//! - A slot is in exactly one of: the free list, the policy's inactive set
//!   (registered, indexed, reference count 0), or in use (held by at least one
//!   guard).
//! - Each indexed hash maps to one registered slot holding that hash, so a hash
//!   is matchable from at most one slot.

use crate::events::Event;
use crate::metrics::TierMetrics;
use crate::policy::{AnyPolicy, InvalidPolicyParams, PolicyKind, PolicyParams, SlotId};
use crate::tier::Tier;
use crate::SequenceHash;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

mod allocate;
#[cfg(any(test, feature = "testing"))]
mod check;
mod counted;
mod emit;
mod guards;
pub(crate) mod index;
mod invalidate;
mod lookup;
mod register;
mod release;
mod slots;
mod snapshot;
#[cfg(test)]
mod tests;

use counted::Counted;
pub use guards::{CompleteBlock, ImmutableBlock, MutableBlock, WeakBlock};
use slots::Core;
pub use snapshot::EventSource;

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
    /// Tuning of the policies (the store uses its own policy's field);
    /// defaults to the tuned values.
    #[serde(default)]
    pub policy_params: PolicyParams,
    /// Handling of duplicate registrations.
    pub duplicates: DuplicatePolicy,
}

impl StoreConfig {
    /// A config with the default policy (`gated-duel`) and its default
    /// tuning, and reject-duplicates.
    pub fn new(tier: Tier, capacity: usize) -> Self {
        StoreConfig {
            tier,
            capacity,
            policy: PolicyKind::default(),
            policy_params: PolicyParams::default(),
            duplicates: DuplicatePolicy::default(),
        }
    }

    /// Same config with another policy.
    pub fn with_policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self
    }

    /// Same config with other policy parameters.
    pub fn with_policy_params(mut self, params: PolicyParams) -> Self {
        self.policy_params = params;
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
    /// A policy parameter is out of range.
    #[error("tier {tier}: {source}")]
    InvalidPolicyParams {
        /// The tier being built.
        tier: Tier,
        /// The offending field.
        source: InvalidPolicyParams,
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

/// Everything the store's lock guards: the slot table and the policy, apart
/// so that code generic over the policy borrows both.
struct Inner {
    core: Core,
    policy: AnyPolicy,
}

/// What every handle and guard of a store shares.
struct Shared {
    tier: Tier,
    capacity: usize,
    duplicates: DuplicatePolicy,
    inner: Mutex<Inner>,
}

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
    /// Build a store; all slots start free. Refuses impossible capacities
    /// and out-of-range policy parameters.
    pub fn new(config: StoreConfig) -> Result<Self, StoreError> {
        let StoreConfig {
            tier,
            capacity,
            policy,
            policy_params,
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
        policy_params
            .check()
            .map_err(|source| StoreError::InvalidPolicyParams { tier, source })?;
        let inner = Inner {
            core: Core::new(capacity),
            policy: AnyPolicy::build(policy, capacity, &policy_params),
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
    pub fn subscribe(&self) -> Receiver<Event> {
        self.shared.inner.lock().core.events.subscribe()
    }

    /// Whether two handles are the same store.
    pub fn same_store(&self, other: &BlockStore) -> bool {
        Counted::ptr_eq(&self.shared, &other.shared)
    }

    /// A consistent snapshot of the store's gauges and counters.
    pub fn metrics(&self) -> TierMetrics {
        let g = self.shared.inner.lock();
        let free = g.core.free.len() as u64;
        let inactive = g.policy.len() as u64;
        TierMetrics {
            tier: self.shared.tier,
            capacity: self.shared.capacity as u64,
            free,
            inactive,
            in_use: self.shared.capacity as u64 - free - inactive,
            counters: g.core.counters,
        }
    }
}
