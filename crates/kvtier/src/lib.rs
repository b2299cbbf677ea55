//! kvtier: a multi-tier KV-cache manager for LLM inference.
//!
//! This crate is the library an inference engine embeds: it re-exports the
//! layers and builds a tiered cache from a TOML config.
//!
//! - [`logical`]: block stores per tier, eviction policies, hashing, events.
//! - [`memory`], [`disk`], [`cuda`]: layouts, memory kinds, copy engines.
//! - [`offload`]: the tiered cache moving blocks between tiers.
//! - [`events`]: every tier's contents published as KV events for routers.
//! - [`engine`]: the engine-facing core (opaque engine keys, store/load
//!   jobs against a caller's host buffer) behind the Python package.
//! - [`config`]: the TOML config; [`setup`]: a cache built from it (G3
//!   persistence itself lives in [`disk::journal`]).
//!
//! It builds no command-line parsing, progress bars or benchmarks: those live
//! in `kvtier-cli` and `kvtier-harness`.
//!
//! # The request protocol, end to end
//!
//! A cache built from a config (here: mock device G1, host G2, a scratch disk
//! G3, all tiny), then one request driven through a
//! [`offload::RequestSequence`]: lookup and onboard the matched prefix,
//! allocate G1 blocks for the rest, write their bytes, register them, release
//! tail first. The same prefix hits the next time, byte for byte.
//!
//! ```
//! use kvtier::{config::Config, logical::hash_trace_ids, setup};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::parse("example.toml", r#"
//!     salt = "my-model"
//!     [layout]
//!     preset = "tiny"
//!     block_size = 16
//!     [g1]
//!     blocks = 8
//!     [g2]
//!     blocks = 16
//!     [g3]
//!     blocks = 32
//! "#)?;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let built = setup::build(&config, "example.toml", true, &Default::default())?;
//!     let cache = built.cache;
//!     // A request's blocks, chained from its token-block ids.
//!     let hashes = hash_trace_ids(config.cache_salt(), &[11, 12, 13, 14]);
//!
//!     let mut req = cache.request(&hashes);
//!     let served = req.onboard().await?; // lookup + onboard the matched prefix
//!     assert_eq!(served.hits(), 0);
//!     let fresh = req.allocate_rest().await?; // G1 blocks for positions 0..4 (Unwritten)
//!     let done = req.write(fresh, |pos, bytes| bytes.fill(pos as u8 + 1)).await?;
//!     req.register(done).await?; // matchable from now on
//!     drop(req); // released tail first: inactive, evictable, still cached
//!
//!     let mut again = cache.request(&hashes);
//!     assert_eq!(again.onboard().await?.hits(), 4);
//!     drop(again);
//!     cache.close().await?; // flush down, stop the workers, close any journal
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```

pub use kvtier_cuda as cuda;
pub use kvtier_disk as disk;
pub use kvtier_events as events;
pub use kvtier_logical as logical;
pub use kvtier_memory as memory;
pub use kvtier_offload as offload;
pub use kvtier_remote as remote;

pub mod config;
pub mod engine;
pub mod setup;
