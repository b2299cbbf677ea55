//! kvtier-offload: the offload/onboard engine over the tiers.
//!
//! A [`TieredCache`] owns a block store ([`kvtier_logical::BlockStore`]) and a
//! memory ([`kvtier_memory::BlockMemory`]) per tier, and moves blocks between
//! them with copy engines: down on eviction (write-back) or registration
//! (write-through), up when a lookup matches blocks in a lower tier. Every
//! block moved down is checksummed and verified on the way up; a mismatch is
//! a miss, never served.
//!
//! Requests are driven through a [`RequestSequence`]
//! ([`TieredCache::request`]): lookup, onboard, allocate, write, register,
//! release tail first on drop. A block whose bytes were never written cannot
//! be registered ([`Unwritten`] -> [`Written`]). [`TieredCache::close`] stops
//! cleanly (flush to a persistent G3, background tasks, journal).
//!
//! # Module map
//!
//! | module | one idea |
//! | --- | --- |
//! | [`setup`] | what a cache is built from ([`CacheSetup`]) and its validation ([`TieredCache::new`]) |
//! | `state` | the validated state: G1 plus lower tiers without gaps, data on/off with every memory and engine |
//! | [`cache`] | the [`TieredCache`] handle: store views, metrics, flush, [`TieredCache::close`] |
//! | [`view`] | [`StoreView`]: read-only inspection of one tier's store |
//! | [`request`] | [`RequestSequence`]: one request's blocks from lookup to release |
//! | `lookup` | the matched prefix across tiers, pinned |
//! | `transit` | blocks between two tiers; the gates lookups and evictions wait on |
//! | `onboard` | lifting a matched prefix into G1, tier by tier, verified |
//! | `read` | reading a matched prefix where it lies, verified, without moving it |
//! | `offload` | allocation with write-back and the one copy-down path (eviction, write-through, cleaning, flush) |
//! | `copy` | one pinned copy between adjacent tiers, with path metrics |
//! | [`priority`] | foreground first: background copies yield (bounded) to [`Foreground`] work |
//! | `write_through` | write-through queues and their workers |
//! | `cleaner` | proactive cleaning ahead of G1 evictions |
//! | `staging` | writing and reading G1 bytes from the host (in place or via staging) |
//! | [`durable`] | persistence hooks of G3 ([`G3Journal`]) and restoring its store |
//! | [`error`] | [`SetupError`], [`OffloadError`] |
//! | [`metrics`] | per-path and per-cache counters, Prometheus text |
//! | [`pinned`] | transfers that keep their blocks pinned until the bytes land |
//! | [`shared`] | [`SharedTier`]: a tier shared by many nodes below the local ones (G4) |
//! | `testing` | test building blocks: one setup with test defaults, tiny memories (feature `testing`) |
//!
//! Tiers are handled as a list (G1, then each lower tier with the boundary
//! above it: its engine and write policy), so another tier below G3 adds an
//! entry, not a code path.

pub mod cache;
mod cleaner;
mod copy;
pub mod durable;
pub mod error;
mod lookup;
pub mod metrics;
mod offload;
mod onboard;
pub mod pinned;
pub mod priority;
mod read;
pub mod request;
pub mod setup;
pub mod shared;
mod staging;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
mod transit;
pub mod view;
mod write_through;

pub use cache::{Closed, TieredCache};
pub use durable::{restore_store, DurableEntry, G3Journal, JournalError, RestoreStats};
pub use error::{OffloadError, SetupError};
pub use metrics::{CacheMetrics, MetricsSnapshot, Path};
pub use priority::{Foreground, Urgent};
pub use request::{Matched, OnboardReport, RequestSequence, Unwritten, Written};
pub use setup::{CacheSetup, TierMemory, TierSetup, WritePolicy};
pub use shared::{SharedBlock, SharedFuture, SharedStats, SharedTier};
pub use view::StoreView;

/// Number of tiers ([`kvtier_logical::Tier::ALL`]): the length of per-tier
/// count arrays such as [`OnboardReport::hits_by_tier`].
pub const TIERS: usize = kvtier_logical::Tier::ALL.len();
