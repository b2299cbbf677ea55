//! kvtier-logical: the logical layer of the kvtier KV-cache manager.
//!
//! Blocks are known only as slot ids and sequence hashes: no bytes, no CUDA.
//! Each tier has a [`BlockStore`]: a fixed pool of slots, a hash index,
//! reference counts and an inactive set ordered by an eviction policy
//! ([`PolicyKind`], tuned by [`PolicyParams`]).
//! Blocks move through typestate guards:
//! [`MutableBlock`] -> [`CompleteBlock`] -> [`ImmutableBlock`] (+ [`WeakBlock`]);
//! a wrong transition does not compile, and dropping a guard returns its slot.
//!
//! ```
//! use kvtier_logical::{hash_trace_ids, BlockSpec, BlockStore, CacheSalt, StoreConfig, Tier};
//! let store = BlockStore::new(StoreConfig::new(Tier::G1, 8)).unwrap();
//! let hashes = hash_trace_ids(CacheSalt(0), &[1, 2, 3]);
//! let matched = store.match_prefix(&hashes);           // nothing cached yet
//! let fresh = store.allocate(hashes.len() - matched.len()).unwrap();
//! let complete = fresh
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, b)| b.complete(BlockSpec::at(&hashes, i)));
//! let blocks = store.register(complete);
//! store.release(blocks.into_iter().rev());              // tail first
//! assert_eq!(store.match_prefix(&hashes).len(), 3);     // now cached
//! ```
//!
//! # Features
//! - `testing`: test hooks for this crate's and other crates' tests and
//!   benches: `BlockStore::check_invariants` and the `workload`
//!   generators.

#![deny(missing_docs)]

// Declared first: its macros (the policy list and the dispatch on it) are
// used by the store.
#[macro_use]
mod policy;

mod events;
mod hash;
mod metrics;
pub mod prometheus;
mod replay;
mod store;
mod tier;
#[cfg(any(test, feature = "testing"))]
pub mod workload;

pub use events::{Event, EventKind};
pub use hash::{
    chain_hash, hash_tokens, hash_trace_ids, hash_trace_ids_into, CacheSalt, SequenceHash,
};
pub use metrics::{to_prometheus, write_prometheus, Counters, TierMetrics};
pub use policy::{
    BlockInfo, BuildPolicy, ClassParams, EvictionPolicy, FrequencySketch, GatedParams,
    InvalidParam, InvalidPolicyParams, NoParams, PolicyKind, PolicyParams, PrefixFreqParams,
    S3FifoParams, SeenParams, SketchParams, SlotId, TinyLfuParams, UnknownPolicy,
};
pub use replay::{replay, ReplayStats, SingleTierReplay};
pub use store::{
    BlockSpec, BlockStore, CompleteBlock, DuplicatePolicy, EventSource, Evicted, ImmutableBlock,
    MutableBlock, StoreConfig, StoreError, WeakBlock,
};
pub use tier::Tier;
