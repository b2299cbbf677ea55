//! `BlockStore::next_victims` is a hint for copying victims down ahead of
//! eviction: for every policy that gives one, it must name inactive blocks
//! the store holds, without duplicates, without changing anything, and its
//! first blocks must be the ones the next allocations actually evict.

use kvtier_logical::workload::{multi_turn, MultiTurn};
use kvtier_logical::{
    BlockStore, Evicted, PolicyKind, SingleTierReplay, SlotId, StoreConfig, Tier,
};
use std::collections::HashSet;

const CAP: usize = 256;

#[test]
fn next_victims_are_the_next_evictions() {
    let requests = multi_turn(
        7,
        &MultiTurn {
            requests: 600,
            ..MultiTurn::default()
        },
    );
    let mut answered = 0;
    for &kind in PolicyKind::ALL {
        let store = BlockStore::new(StoreConfig::new(Tier::G1, CAP).with_policy(kind)).unwrap();
        let mut replay = SingleTierReplay::new(store.clone());
        let (mut checked, mut exact) = (0usize, 0usize);
        for (i, r) in requests.iter().enumerate() {
            replay.request(r).unwrap();
            if i % 25 != 24 {
                continue;
            }
            let Some(next) = store.next_victims(32) else {
                break;
            };
            // Nothing changed by asking: the same answer twice.
            assert_eq!(store.next_victims(32), Some(next.clone()), "{kind}");
            let slots: Vec<SlotId> = next.iter().map(|(s, _)| *s).collect();
            assert_eq!(
                slots.iter().collect::<HashSet<_>>().len(),
                slots.len(),
                "{kind}: duplicates"
            );
            // Every named block is held by the store and inactive.
            let held = store.peek(&next.iter().map(|(_, b)| b.hash).collect::<Vec<_>>());
            for ((slot, _), h) in next.iter().zip(held) {
                assert_eq!(h.map(|(s, _)| s), Some(*slot), "{kind}: not held");
            }
            assert!(next.len() as u64 <= store.metrics().inactive, "{kind}");
            // The first victims are exactly the next evictions (the
            // fresh blocks are dropped unregistered: their slots go free).
            if store.metrics().free == 0 && next.len() >= 8 {
                let mut evicted: Vec<Evicted> = Vec::new();
                let fresh = store.allocate_with_evicted(8, &mut evicted).unwrap();
                let got: Vec<SlotId> = evicted.iter().map(|e| e.slot).collect();
                assert_eq!(got, slots[..8], "{kind}");
                drop(fresh);
                exact += 1;
            }
            checked += 1;
        }
        println!("{kind}: {checked} checks, {exact} on a full store");
        if checked > 0 {
            answered += 1;
            assert!(exact > 5, "{kind}: only {exact} full-store checks");
        }
    }
    assert!(answered >= 1, "no policy names its next victims");
}
