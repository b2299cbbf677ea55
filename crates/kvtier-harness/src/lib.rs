//! kvtier-harness: what the CLI, the integration tests, the examples and the
//! criterion benches share, written once.
//!
//! - [`trace`]: Mooncake-format JSONL traces (parsing, hashing, the embedded
//!   synthetic trace).
//! - [`pattern`]: the deterministic bytes of a block, derived from its hash,
//!   written when a block is computed and checked when it is onboarded.
//! - [`ceiling`]: bandwidth ceilings (memcpy, raw file I/O) measured in the
//!   same run as the figure they bound.
//! - [`migration`]: the tier-migration benchmark behind `kvtier bench`.

pub mod ceiling;
pub mod migration;
pub mod pattern;
pub mod trace;
