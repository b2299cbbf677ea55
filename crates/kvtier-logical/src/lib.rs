//! kvtier-logical: the logical layer of the kvtier KV-cache manager.
//!
//! Blocks are known only as slot ids and sequence hashes: no bytes, no CUDA.
//! Each tier has a [`BlockStore`]: a fixed pool of slots, a hash index,
//! reference counts and an inactive set ordered by an [`EvictionPolicy`].
//! Blocks move through typestate guards:
//! [`MutableBlock`] -> [`CompleteBlock`] -> [`ImmutableBlock`] (+ [`WeakBlock`]);
//! a wrong transition does not compile, and dropping a guard returns its slot.
//!
//! ```
//! use kvtier_logical::{BlockStore, StoreConfig, Tier, BlockSpec, hash::hash_trace_ids, CacheSalt, SequenceHash};
//! let store = BlockStore::new(StoreConfig::new(Tier::G1, 8)).unwrap();
//! let hashes = hash_trace_ids(CacheSalt(0), &[1, 2, 3]);
//! let matched = store.match_prefix(&hashes);           // nothing cached yet
//! let fresh = store.allocate(hashes.len() - matched.len()).unwrap();
//! let complete = fresh.into_iter().enumerate().map(|(i, b)| b.complete(BlockSpec {
//!     hash: hashes[i],
//!     parent: if i == 0 { SequenceHash::ROOT } else { hashes[i - 1] },
//!     position: i as u32,
//! }));
//! let blocks = store.register(complete);
//! store.release(blocks.into_iter().rev());              // tail first
//! assert_eq!(store.match_prefix(&hashes).len(), 3);     // now cached
//! ```

pub mod events;
pub mod hash;
pub mod metrics;
pub mod policy;
pub mod replay;
pub mod store;
pub mod tier;
pub mod workload;

pub use events::{Event, EventKind};
pub use hash::{CacheSalt, SequenceHash};
pub use metrics::{to_prometheus, Counters, TierMetrics};
pub use policy::{BlockInfo, EvictionPolicy, PolicyKind, SlotId, UnknownPolicy};
pub use store::{
    BlockSpec, BlockStore, CompleteBlock, DuplicatePolicy, Evicted, ImmutableBlock, MutableBlock,
    StoreConfig, StoreError, WeakBlock,
};
pub use tier::Tier;
