//! One tier, LRU, 2,000 blocks, the synthetic trace: the event counts add up
//! and the announced set is the store's.

mod common;

use common::*;
use kvtier_events::{Low64, WireFormat};
use kvtier_logical::SingleTierReplay;
use kvtier_logical::{BlockStore, SequenceHash, StoreConfig, Tier};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn run(keys: Box<dyn kvtier_events::BlockKeys>) -> (Reader, BlockStore) {
    let store = BlockStore::new(StoreConfig::new(Tier::G1, 2000)).unwrap();
    let cfg = loopback(WireFormat::Map);
    let publisher = start_keyed(&cfg, &[store.event_source()], keys, None);
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let r = read_all(&publisher, target.clone());
    let mut replay = SingleTierReplay::new(store.clone());
    for req in trace() {
        replay.request(&req).unwrap();
    }
    target.store(publisher.flush(WAIT).unwrap(), Ordering::Release);
    let r = r.join().unwrap();
    assert_eq!(publisher.metrics().anomalies, 0);
    (r, store)
}

#[test]
fn stored_minus_removed_is_the_capacity() {
    let (r, store) = run(Box::new(Low64));
    let (stored, removed) = r.mirror.totals();
    assert_eq!(stored - removed, 2000, "stored {stored}, removed {removed}");
    assert!(removed > 0, "the trace overflows 2,000 blocks");
    let e = r.mirror.errors();
    assert_eq!(e.removed_unknown, 0, "a hash removed that was never stored");
    assert_eq!(e.stored_present, 0);
    assert_eq!(r.mirror.set("GPU"), contents(&store.registered()));
    assert_eq!(contents(&store.registered()).len(), 2000);
}

/// Published hashes squeezed into 1,024 values: many kvtier blocks share
/// one; the announced set is still exactly the image of the store's contents.
#[test]
fn colliding_published_hashes_keep_set_semantics() {
    let (r, store) = run(Box::new(|h: SequenceHash| h.low64() % 1024));
    let want: HashSet<u64> = contents(&store.registered())
        .iter()
        .map(|h| h % 1024)
        .collect();
    assert!(want.len() < 2000, "collisions happened");
    assert_eq!(r.mirror.set("GPU"), want);
    let e = r.mirror.errors();
    assert_eq!((e.removed_unknown, e.stored_present), (0, 0), "{e:?}");
}
