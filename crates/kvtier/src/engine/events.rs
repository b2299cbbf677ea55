//! The stored/removed hook a KV-event publisher plugs into
//! ([`EngineCore::enable_events`](crate::engine::EngineCore::enable_events)).
//!
//! Events carry the engine's own keys, not kvtier's hashes, so a router
//! matches them against the hashes the engine announces;
//! [`EngineEvent::low64`] gives the integer form routers use.

/// A change of what the engine store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// These keys were stored (newly; keys already held are not repeated).
    Stored {
        /// Engine keys, in the order of the store job.
        keys: Vec<Vec<u8>>,
    },
    /// These keys left the store (evicted from its last tier).
    Removed {
        /// Engine keys.
        keys: Vec<Vec<u8>>,
    },
}

impl EngineEvent {
    /// The low 64 bits of `key` read as a big-endian integer (the last
    /// eight bytes; a shorter key is zero-extended): the integer block hash
    /// routers match on.
    pub fn low64(key: &[u8]) -> u64 {
        let tail = &key[key.len().saturating_sub(8)..];
        tail.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64)
    }
}

/// Receives [`EngineEvent`]s, on kvtier's worker threads: must not block.
pub trait EngineEventSink: Send + Sync {
    /// One event.
    fn on_event(&self, event: EngineEvent);
}
