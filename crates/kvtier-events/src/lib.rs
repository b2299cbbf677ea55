//! kvtier-events: every tier's contents as KV events on the wire, in vLLM's
//! format, for KV-aware routers (NVIDIA Dynamo's router, llm-d, SGLang's
//! router).
//!
//! - [`Publisher`]: merges the block stores' event channels, publishes
//!   `BlockStored` / `BlockRemoved` / `AllBlocksCleared` with one medium per
//!   tier over ZMQ PUB (`[topic, seq as 8 bytes big-endian, msgpack payload]`,
//!   payload `[ts, [events], data_parallel_rank]`), and answers replay
//!   requests on a ROUTER socket from a bounded buffer.
//! - [`wire`]: both event encodings (tagged maps, vLLM >= 0.33 and Dynamo;
//!   tagged arrays, SGLang, older vLLM and llm-d) and a decoder for both.
//! - [`keys`]: which 64-bit hash a block is published under (the engine's
//!   key for engine blocks, kvtier's own hash otherwise).
//! - [`Subscriber`] and [`Mirror`]: an in-order, gap-recovering subscriber and
//!   the per-medium sets a router would hold, with their consistency checks.
//!
//! Guarantee: a subscriber applying every batch in sequence order holds, after
//! each batch, exactly the published hashes of the blocks each medium's tiers
//! hold; it is never told to remove a hash it was not told about
//! ([`view`] explains how).
//!
//! Transport: the pure-Rust `zeromq` crate (no system library). Its PUB socket
//! queues up to 100,000 messages per subscriber and drops beyond that without
//! telling the sender; the configurable `hwm` bounds the publisher's own queue
//! in front of the socket (drops there are counted). Either way, a subscriber
//! sees the gap in the sequence numbers and fetches the batches by replay.
//! `inproc://` endpoints are not supported.

#![warn(missing_docs)]

pub mod config;
pub mod endpoint;
pub mod error;
mod io;
pub mod keys;
pub mod metrics;
pub mod mirror;
pub mod publisher;
pub mod subscriber;
pub mod view;
pub mod wire;

pub use config::{EventsConfig, MediumNames};
pub use endpoint::Endpoint;
pub use error::EventsError;
pub use io::END_SEQ;
pub use keys::{engine_key_low64, BlockKeys, EngineKeys, Low64};
pub use metrics::MetricsSnapshot;
pub use mirror::{Mirror, MirrorErrors};
pub use publisher::{Publisher, StartOptions, SUBSCRIPTION_GRACE};
pub use subscriber::{Delivered, Subscriber, SubscriberConfig, SubscriberStats};
pub use wire::{decode_batch, encode_batch, EventBatch, WireEvent, WireFormat};
