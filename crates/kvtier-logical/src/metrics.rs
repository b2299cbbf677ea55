//! Per-tier counters and gauges, exportable in Prometheus text format.
//!
//! Counters live inside the store's locked state (they change only under the
//! lock, so plain integers suffice); [`BlockStore::metrics`](crate::BlockStore::metrics)
//! takes a consistent snapshot.

use crate::prometheus::Exposition;
use crate::tier::Tier;
use serde::Serialize;

/// Counters a store maintains (monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Blocks looked up by `match_prefix` (up to and including the first miss).
    pub lookups: u64,
    /// Blocks found by `match_prefix`.
    pub hits: u64,
    /// Blocks handed out by `allocate`.
    pub allocations: u64,
    /// `allocate` calls refused for lack of free or inactive blocks.
    pub allocation_failures: u64,
    /// Inactive blocks evicted to make room.
    pub evictions: u64,
    /// Blocks made matchable by `register`.
    pub registrations: u64,
    /// `register` calls whose hash was already present.
    pub duplicates: u64,
    /// Inactive blocks matched again (brought back into use).
    pub resurrections: u64,
}

/// A consistent snapshot of one store's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TierMetrics {
    /// Which tier.
    pub tier: Tier,
    /// Total slots.
    pub capacity: u64,
    /// Slots on the free list.
    pub free: u64,
    /// Registered blocks nobody uses (matchable, evictable).
    pub inactive: u64,
    /// Slots held by a guard (mutable, complete or registered in use).
    pub in_use: u64,
    /// Monotonic counters.
    pub counters: Counters,
}

/// Render snapshots in Prometheus text exposition format (one family per
/// metric, a `tier` label per sample).
pub fn to_prometheus(snapshots: &[TierMetrics]) -> String {
    let mut e = Exposition::new();
    write_prometheus(snapshots, &mut e);
    e.encode()
}

/// Add the snapshots' families to `e` (one family per metric, a `tier`
/// label per sample).
pub fn write_prometheus(snapshots: &[TierMetrics], e: &mut Exposition) {
    type Get = fn(&TierMetrics) -> u64;
    #[rustfmt::skip]
    let families: [(&str, &str, &str, Get); 12] = [
        ("kvtier_blocks_capacity", "gauge", "Slots in the tier.", |m| m.capacity),
        ("kvtier_blocks_free", "gauge", "Slots on the free list.", |m| m.free),
        ("kvtier_blocks_inactive", "gauge", "Matchable blocks not in use.", |m| m.inactive),
        ("kvtier_blocks_in_use", "gauge", "Slots held by a guard.", |m| m.in_use),
        ("kvtier_lookups_total", "counter", "Blocks looked up by prefix match.", |m| m.counters.lookups),
        ("kvtier_hits_total", "counter", "Blocks found by prefix match.", |m| m.counters.hits),
        ("kvtier_allocations_total", "counter", "Blocks allocated.", |m| m.counters.allocations),
        ("kvtier_allocation_failures_total", "counter", "Allocations refused.", |m| m.counters.allocation_failures),
        ("kvtier_evictions_total", "counter", "Inactive blocks evicted.", |m| m.counters.evictions),
        ("kvtier_registrations_total", "counter", "Blocks registered.", |m| m.counters.registrations),
        ("kvtier_duplicates_total", "counter", "Registrations of a hash already present.", |m| m.counters.duplicates),
        ("kvtier_resurrections_total", "counter", "Inactive blocks matched again.", |m| m.counters.resurrections),
    ];
    for (name, kind, help, get) in families {
        let mut f = if kind == "counter" {
            e.counter(name, help)
        } else {
            e.gauge(name, help)
        };
        for m in snapshots {
            f.sample(&[("tier", m.tier.name())], get(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_format() {
        let m = TierMetrics {
            tier: Tier::G1,
            capacity: 10,
            free: 4,
            inactive: 3,
            in_use: 3,
            counters: Counters {
                hits: 7,
                ..Default::default()
            },
        };
        let text = to_prometheus(&[m]);
        assert!(text.contains("# TYPE kvtier_hits_total counter\n"));
        assert!(text.contains("kvtier_hits_total{tier=\"g1\"} 7\n"));
        assert!(text.contains("kvtier_blocks_free{tier=\"g1\"} 4\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
        }
    }
}
