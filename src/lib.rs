//! kvtier: a multi-tier KV-cache manager for LLM inference.
//!
//! This crate is the facade: it re-exports the layers and holds what the
//! `kvtier` binary needs (trace parsing, config files, the replay driver).
//!
//! - [`logical`]: block stores per tier, eviction policies, hashing, events.
//! - [`memory`], [`disk`], [`cuda`]: layouts, memory kinds, copy engines.
//! - [`offload`]: the tiered cache moving blocks between tiers.

#![warn(missing_docs)]

pub use kvtier_cuda as cuda;
pub use kvtier_disk as disk;
pub use kvtier_logical as logical;
pub use kvtier_memory as memory;
pub use kvtier_offload as offload;

pub mod ceiling;
pub mod config;
pub mod durable;
pub mod pattern;
pub mod plot;
pub mod replay;
pub mod setup;
pub mod sweep;
pub mod trace;
