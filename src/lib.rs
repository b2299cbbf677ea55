//! kvtier: a multi-tier KV-cache manager for LLM inference.
//!
//! This crate is the facade: it re-exports the layers and holds what the
//! `kvtier` binary needs (trace parsing, config files, the replay driver).
//!
//! - [`logical`]: block stores per tier, eviction policies, hashing, events.

#![warn(missing_docs)]

pub use kvtier_logical as logical;

pub mod config;
pub mod replay;
pub mod trace;
