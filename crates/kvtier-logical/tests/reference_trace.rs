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

#[test]
fn lru_6000_matches_reference() {
    assert_eq!(lru_hits(6000), (38_027, 121_877));
}

#[test]
fn lru_2000_matches_reference() {
    assert_eq!(lru_hits(2000), (17_839, 121_877));
}

#[test]
fn lru_20000_matches_reference() {
    assert_eq!(lru_hits(20_000), (69_686, 121_877));
}

#[test]
fn unbounded_matches_reference() {
    assert_eq!(lru_hits(50_000), (77_953, 121_877));
}
