//! kvtier: a multi-tier KV-cache manager for LLM inference.
//!
//! This crate is the library an inference engine embeds: it re-exports the
//! layers and builds a tiered cache from a TOML config.
//!
//! - [`logical`]: block stores per tier, eviction policies, hashing, events.
//! - [`memory`], [`disk`], [`cuda`]: layouts, memory kinds, copy engines.
//! - [`offload`]: the tiered cache moving blocks between tiers.
//! - [`events`]: every tier's contents published as KV events for routers.
//! - [`config`]: the TOML config; [`setup`]: a cache built from it (G3
//!   persistence itself lives in [`disk::journal`]).
//!
//! It builds no command-line parsing, progress bars or benchmarks: those live
//! in `kvtier-cli` and `kvtier-harness`.

pub use kvtier_cuda as cuda;
pub use kvtier_disk as disk;
pub use kvtier_events as events;
pub use kvtier_logical as logical;
pub use kvtier_memory as memory;
pub use kvtier_offload as offload;

pub mod config;
pub mod setup;
