//! Unit tests of the block store (shared helpers for the other modules'
//! tests: [`store`], [`put`]).

use super::*;
use crate::events::{Event, EventKind};
use crate::hash::{hash_trace_ids, CacheSalt};

pub(super) fn store(cap: usize) -> BlockStore {
    BlockStore::new(StoreConfig::new(Tier::G1, cap)).unwrap()
}

fn spec(hashes: &[SequenceHash], i: usize) -> BlockSpec {
    BlockSpec::at(hashes, i)
}

/// A store of `cap` slots holding the chain of `ids` (salt 1), in use:
/// the store, the chain's hashes and the guards.
pub(super) fn stored(
    cap: usize,
    ids: &[u64],
) -> (BlockStore, Vec<SequenceHash>, Vec<ImmutableBlock>) {
    let s = store(cap);
    let h = hash_trace_ids(CacheSalt(1), ids);
    let held = put(&s, &h);
    (s, h, held)
}

/// Allocate, complete and register a whole chain.
pub(super) fn put(s: &BlockStore, hashes: &[SequenceHash]) -> Vec<ImmutableBlock> {
    let blocks = s.allocate(hashes.len()).unwrap();
    s.register(
        blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.complete(spec(hashes, i))),
    )
}

/// Drops `held`: the store then has `free` free slots, its invariants hold.
fn assert_frees_on_drop<T>(s: &BlockStore, held: T, free: u64) {
    drop(held);
    assert_eq!(s.metrics().free, free);
    s.check_invariants().unwrap();
}

#[test]
fn refuses_impossible_capacities() {
    assert_eq!(
        BlockStore::new(StoreConfig::new(Tier::G2, 0)).unwrap_err(),
        StoreError::ZeroCapacity { tier: Tier::G2 }
    );
    assert!(matches!(
        BlockStore::new(StoreConfig::new(Tier::G1, u32::MAX as usize)),
        Err(StoreError::CapacityTooLarge { .. })
    ));
}

#[test]
fn allocation_is_all_or_nothing() {
    let s = store(4);
    let held = s.allocate(3).unwrap();
    let err = s.allocate(2).unwrap_err();
    assert_eq!(
        err,
        StoreError::Exhausted {
            tier: Tier::G1,
            requested: 2,
            available: 1
        }
    );
    assert_eq!(s.metrics().free, 1);
    assert_frees_on_drop(&s, held, 4);
}

#[test]
fn lifecycle_and_resurrection() {
    let (s, h, blocks) = stored(4, &[1, 2, 3]);
    assert_eq!(s.metrics().in_use, 3);
    s.release(blocks.into_iter().rev());
    let m = s.metrics();
    assert_eq!((m.free, m.inactive, m.in_use), (1, 3, 0));
    let again = s.match_prefix(&h);
    assert_eq!(again.len(), 3);
    assert_eq!(s.metrics().counters.resurrections, 3);
    assert_eq!(again[2].hash(), h[2]);
    s.check_invariants().unwrap();
    drop(again);
    assert_eq!(s.metrics().inactive, 3);
}

#[test]
fn eviction_reports_victims_in_lru_order() {
    let s = store(3);
    let h = hash_trace_ids(CacheSalt(1), &[1, 2, 3]);
    s.release(put(&s, &h).into_iter().rev()); // tail released first
    let mut ev = Vec::new();
    let got = s.allocate_with_evicted(2, &mut ev).unwrap();
    assert_eq!(
        ev.iter().map(|e| e.hash).collect::<Vec<_>>(),
        vec![h[2], h[1]]
    );
    assert_eq!(ev[0].parent, h[1]);
    assert_eq!(
        got.iter().map(|b| b.slot()).collect::<Vec<_>>(),
        vec![ev[0].slot, ev[1].slot]
    );
    // the head survives
    assert_eq!(s.match_prefix(&h).len(), 1);
    s.check_invariants().unwrap();
}

#[test]
fn duplicates_rejected_share_one_slot() {
    let (s, h, a) = stored(4, &[7]);
    let b = put(&s, &h);
    assert_eq!(a[0].slot(), b[0].slot());
    assert_eq!(s.metrics().free, 3, "the duplicate's slot was freed");
    assert_eq!(s.metrics().counters.duplicates, 1);
    s.check_invariants().unwrap();
}

#[test]
fn duplicates_allowed_keep_their_slot_until_released() {
    let s = BlockStore::new(StoreConfig::new(Tier::G1, 4).with_duplicates(DuplicatePolicy::Allow))
        .unwrap();
    let h = hash_trace_ids(CacheSalt(1), &[7]);
    let a = put(&s, &h);
    let b = put(&s, &h);
    assert_ne!(a[0].slot(), b[0].slot());
    s.check_invariants().unwrap();
    drop(b);
    let m = s.metrics();
    assert_eq!((m.free, m.in_use), (3, 1), "duplicate freed, original kept");
    drop(a);
    assert_eq!(s.metrics().inactive, 1);
    s.check_invariants().unwrap();
}

#[test]
fn weak_blocks_fail_after_eviction() {
    let (s, _, b) = stored(1, &[1]);
    let w = b[0].downgrade();
    drop(b);
    let up = w.upgrade().expect("inactive block still upgradable");
    drop(up);
    let other = hash_trace_ids(CacheSalt(1), &[2]);
    let _o = put(&s, &other); // evicts the first block
    assert!(w.upgrade().is_none());
    drop(s);
    assert!(w.upgrade().is_none());
}

#[test]
fn clones_count_references() {
    let (s, _, b) = stored(2, &[1]);
    let c = b[0].clone();
    drop(b);
    assert_eq!(s.metrics().in_use, 1);
    drop(c);
    assert_eq!(s.metrics().inactive, 1);
}

#[test]
fn events_are_sequenced_chains() {
    let s = store(3);
    let rx = s.subscribe();
    let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
    s.release(put(&s, &h).into_iter().rev());
    let g = hash_trace_ids(CacheSalt(1), &[9, 8]);
    s.release(put(&s, &g).into_iter().rev()); // evicts h[1]
    s.clear();
    let evs: Vec<Event> = rx.try_iter().collect();
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        evs[0].kind,
        EventKind::Stored {
            hashes: h.clone(),
            parent: None
        }
    );
    assert_eq!(evs[1].kind, EventKind::Removed { hashes: vec![h[1]] });
    assert_eq!(
        evs[2].kind,
        EventKind::Stored {
            hashes: g.clone(),
            parent: None
        }
    );
    assert_eq!(evs[3].kind, EventKind::Cleared);
    assert!(s.match_prefix(&g).is_empty());
    s.check_invariants().unwrap();
}

#[test]
fn clear_keeps_in_use_blocks_valid() {
    let (s, h, held) = stored(3, &[1, 2]);
    s.clear();
    assert!(s.match_prefix(&h).is_empty());
    assert_eq!(s.metrics().in_use, 2);
    s.check_invariants().unwrap();
    assert_frees_on_drop(&s, held, 3);
}

#[test]
fn scan_finds_non_prefix_blocks() {
    let (s, h, b) = stored(4, &[1, 2, 3]);
    s.release(vec![b.into_iter().nth(1).unwrap()]);
    let found = s.scan(&[h[0], SequenceHash(5), h[2]]);
    assert!(found[0].is_some() && found[1].is_none() && found[2].is_some());
    assert_eq!(s.contains_all(&[h[1], SequenceHash(5)]), vec![true, false]);
}

/// A parent evicted before its child and recomputed into the same slot
/// is a new block: evicting the old child must not decrement its count
/// (found by the policy property tests: it underflowed).
#[test]
fn recomputed_parent_does_not_inherit_stale_children() {
    use crate::PolicyKind;
    let s =
        BlockStore::new(StoreConfig::new(Tier::G1, 2).with_policy(PolicyKind::PrefixLru)).unwrap();
    let h = hash_trace_ids(CacheSalt(1), &[1, 2]);
    let mut b = put(&s, &h);
    let child = b.pop().unwrap(); // held: the parent is the only victim
    s.release(b);
    let again = s.allocate(1).unwrap(); // evicts the parent
    let p = s.register(again.into_iter().map(|m| m.complete(spec(&h, 0))));
    s.check_invariants().unwrap();
    drop(child); // released first: evicted first
    drop(p);
    s.check_invariants().unwrap();
    // Evict the child: its stale link must not touch the new parent.
    let _x = s.allocate(1).unwrap();
    s.check_invariants().unwrap();
    let _y = s.allocate(1).unwrap();
    s.check_invariants().unwrap();
}

#[test]
fn leaf_tracking_survives_parent_eviction() {
    let (s, h, b) = stored(2, &[1, 2]);
    // release head first: the head becomes the LRU victim while its child stays
    s.release(b);
    let g = hash_trace_ids(CacheSalt(1), &[5]);
    let x = put(&s, &g);
    assert_eq!(s.scan(&h).iter().filter(|b| b.is_some()).count(), 1);
    drop(x);
    s.check_invariants().unwrap();
}
