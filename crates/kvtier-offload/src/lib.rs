//! kvtier-offload: the offload/onboard engine over the tiers.
//!
//! A [`TieredCache`] owns a block store ([`kvtier_logical::BlockStore`]) and a
//! memory ([`kvtier_memory::BlockMemory`]) per tier, and moves blocks between
//! them with copy engines: down on eviction (write-back) or registration
//! (write-through), up when a lookup matches blocks in a lower tier. Every
//! block moved down is checksummed and verified on the way up; a mismatch is
//! a miss, never served.

pub mod cache;
pub mod durable;
pub mod metrics;
pub mod pinned;

pub use cache::{
    block_checksum, CacheSetup, OffloadError, OnboardPlan, Onboarded, TierMemory, TierSetup,
    TieredCache, WritePolicy,
};
pub use durable::{restore_store, DurableEntry, G3Journal, RestoreStats};
pub use metrics::{CacheMetrics, MetricsSnapshot, Path};
