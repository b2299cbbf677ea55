//! The engine-facing core: kvtier as a storage tier of an inference engine
//! (vLLM's secondary tier, SGLang's HiCache storage), independent of Python.
//!
//! An engine hands over *opaque keys* (its own block hashes, as bytes) and
//! *chunks* of a host buffer it owns (chunk `i` = bytes
//! `[i * block_bytes, (i + 1) * block_bytes)`). The core maps each key to a
//! 128-bit [`SequenceHash`](kvtier_logical::SequenceHash) seeded by the
//! namespace (model and layout), keeps the blocks in kvtier's host tier (G2)
//! and durable disk tier (G3, the same journal and recovery as the CLI's
//! `--g3-dir`), and moves bytes on worker threads: `submit_store` /
//! `submit_load` return at once, [`EngineCore::poll_finished`] reports.
//!
//! | module | one idea |
//! | --- | --- |
//! | [`config`] | the engine's TOML defaults, the block layout derived from the engine's block size |
//! | [`keys`] | engine keys -> namespaced 128-bit hashes |
//! | [`buffer`] | the caller's host buffer and its chunk checks |
//! | [`jobs`] | job ids, results, the in-flight table and `drain` |
//! | [`core`](self::core) | [`EngineCore`]: open, lookup, store/load jobs, touch, close |
//! | [`events`] | the stored/removed hook for KV-event publishers |
//! | [`error`] | [`EngineError`] |

pub mod buffer;
pub mod config;
pub mod core;
pub mod error;
pub mod events;
pub mod jobs;
pub mod keys;
mod publish;
mod transfer;

#[cfg(test)]
mod burst_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use self::buffer::{Chunks, HostBuffer};
pub use self::config::{EngineOptions, BUILTIN_ENGINE_CONFIG};
pub use self::core::{EngineCore, JobKind};
pub use self::error::EngineError;
pub use self::events::{EngineEvent, EngineEventSink};
pub use self::jobs::JobResult;
pub use self::keys::KeyHasher;
/// The 128-bit block identity engine keys map to ([`KeyHasher`]).
pub use kvtier_logical::SequenceHash;
