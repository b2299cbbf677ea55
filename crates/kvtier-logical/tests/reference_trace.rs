//! Pins the reference LRU hit counts on the Mooncake synthetic trace
//! (`tests/data/README.md`): LRU with tail-first release must match exactly.

mod common;

use common::trace;
use kvtier_logical::replay;
use kvtier_logical::{BlockStore, PolicyKind, StoreConfig, Tier};

fn lru_hits(capacity: usize) -> (u64, u64) {
    let store =
        BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(PolicyKind::Lru)).unwrap();
    let stats = replay(&store, trace()).unwrap();
    store.check_invariants().unwrap();
    assert_eq!(stats.requests, 3993);
    (stats.hits, stats.blocks)
}

/// (capacity, hits) of the reference; 50,000 blocks holds the whole trace.
const REFERENCE: [(usize, u64); 4] = [
    (2000, 17_839),
    (6000, 38_027),
    (20_000, 69_686),
    (50_000, 77_953),
];

#[test]
fn lru_matches_reference() {
    for (capacity, hits) in REFERENCE {
        assert_eq!(lru_hits(capacity), (hits, 121_877), "{capacity} blocks");
    }
}
