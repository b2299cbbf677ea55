//! kvtier-remote: G4, a block tier shared by many nodes, on S3-compatible
//! object storage (AWS S3, MinIO, Ceph RGW, R2, ...) or a shared filesystem,
//! through the `object_store` crate.
//!
//! [`RemoteTier`] implements [`kvtier_offload::SharedTier`]: the offload
//! engine offers it every block that reaches host memory (G2), continues a
//! prefix match past the local tiers in its index, and onboards its blocks
//! G4 -> G2 -> G1 with the usual checksum verification.
//!
//! - One object per block at `<prefix>/<namespace>/<hash hex>`, the namespace
//!   being the salt and the layout fingerprint; a 64-byte header (magic,
//!   format version, layout fingerprint, block hash, checksum, length)
//!   before the bytes ([`format`]).
//! - Lookups from a local [`index::Index`] (no round trip): built by listing
//!   the namespace at start-up, refreshed by a background listing, updated by
//!   this node's writes and reads. A stale entry costs a miss.
//! - Writes are create-once (`PutMode::Create`, or plain puts where the
//!   store has no conditional writes), at most `in_flight` at a time; when
//!   that many run, `skip` (default) drops the block and counts it, `wait`
//!   waits. A clean stop waits for the writes in flight.
//! - Reads of one onboarding run under one deadline; a missing, truncated,
//!   corrupt or foreign object is a miss that drops its index entry
//!   (self-healing) and is deleted, never served.
//! - A byte budget with high/low watermarks, enforced by batched deletes of
//!   the least recently used objects.
//!
//! | module | one idea |
//! | --- | --- |
//! | [`config`] | [`RemoteConfig`] (`[g4]`) and the store its URL names |
//! | [`format`] | object keys and the header |
//! | [`index`] | the local index: lookups, recency, listing generations |
//! | `tier` | [`RemoteTier`]: opening, the [`kvtier_offload::SharedTier`] methods, the clean stop |
//! | `write` | background create-once writes, backpressure, budget admission |
//! | `read` | reads under a deadline, verification, self-healing |
//! | `upkeep` | background listing and watermark eviction |
//! | [`stats`] | counters and Prometheus text |
//! | [`error`] | [`RemoteError`] |
//! | `testing` | an in-process S3 server for tests (feature `testing`) |

pub mod config;
pub mod error;
pub mod format;
pub mod index;
mod read;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod tier;
mod upkeep;
mod write;

pub use config::{Backpressure, CreateMode, RemoteConfig};
pub use error::RemoteError;
pub use format::namespace;
pub use tier::RemoteTier;
