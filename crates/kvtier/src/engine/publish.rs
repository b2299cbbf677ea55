//! KV events for routers from an engine store: when the engine config has an
//! `[events]` section, a [`Publisher`] announces every tier's blocks under
//! the engine's own block hash, the integer vLLM publishes for its key
//! ([`kvtier_events::engine_key_low64`]).
//!
//! No table from kvtier hashes to engine keys is needed: the engine's hash is
//! the high half of the block's sequence hash ([`KeyHasher`]), so the
//! publisher reads it off every event, removals included, whatever their
//! order.
//!
//! Media: the engine store is a storage tier, not the engine's GPU memory,
//! so kvtier's G1 (a staging tier here) is announced as G2's medium unless
//! the config names it ([`MediumNames::g1_staged`]); G2 is `CPU` and G3
//! `STORAGE` by default.
//!
//! [`MediumNames::g1_staged`]: kvtier_events::MediumNames::g1_staged
//!
//! [`KeyHasher`]: crate::engine::keys::KeyHasher

use kvtier_events::{EventsConfig, EventsError, Publisher, StartOptions};
use kvtier_logical::{SequenceHash, Tier};
use kvtier_offload::TieredCache;
use std::time::Duration;

/// Longest wait for a connecting PUB socket's peer at start, and for the
/// last events to go out at close.
const WAIT: Duration = Duration::from_secs(10);

/// Start publishing `cache`'s tiers as `config` says (`block_size`: tokens
/// per block, for the events' `block_size` field).
pub(crate) fn start(
    config: &EventsConfig,
    cache: &TieredCache,
    block_size: u32,
) -> Result<Publisher, EventsError> {
    let mut config = config.clone();
    config.medium = config.medium.g1_staged();
    let stores: Vec<_> = Tier::ALL
        .iter()
        .filter_map(|&t| cache.store(t).map(|s| s.event_source()))
        .collect();
    let keys = |h: SequenceHash| (h.0 >> 64) as u64;
    let opts = StartOptions {
        block_size,
        connect_timeout: WAIT,
        wait_subscriber: None,
    };
    Publisher::start(&config, &stores, Box::new(keys), opts)
}

/// Send what is left and stop.
pub(crate) fn finish(publisher: Publisher) {
    if let Err(e) = publisher.flush(WAIT) {
        tracing::warn!("kvtier engine: KV events not all sent at close: {e}");
    }
    publisher.shutdown();
}
