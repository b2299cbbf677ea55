//! Concurrency stress: several threads replay overlapping workloads against
//! one store; afterwards every invariant holds and every block is back.

use kvtier_logical::hash_trace_ids;
use kvtier_logical::{BlockSpec, BlockStore, CacheSalt, PolicyKind, StoreConfig, Tier};
use std::sync::Arc;
use std::thread;

fn run(policy: PolicyKind) {
    let cap = 256;
    let store = BlockStore::new(StoreConfig::new(Tier::G1, cap).with_policy(policy)).unwrap();
    let threads = 4;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ t as u64;
                let mut held = Vec::new();
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let prefix = x % 8;
                    let len = 1 + (x >> 8) % 12;
                    let ids: Vec<u64> = (0..len).map(|i| prefix * 100 + i).collect();
                    let hashes = hash_trace_ids(CacheSalt(3), &ids);
                    let mut blocks = store.match_prefix(&hashes);
                    let k = blocks.len();
                    // Each thread holds at most 12 blocks, 4 threads: 48 < 256.
                    let fresh = match store.allocate(hashes.len() - k) {
                        Ok(f) => f,
                        Err(e) => panic!("allocation failed under bounded load: {e}"),
                    };
                    let complete = fresh
                        .into_iter()
                        .zip(k..)
                        .map(|(b, i)| b.complete(BlockSpec::at(&hashes, i)));
                    store.register_into(complete, &mut blocks);
                    // Every held block must stay matchable under its hash.
                    for b in &blocks {
                        assert_eq!(store.contains_all(&[b.hash()]), vec![true]);
                    }
                    if x.is_multiple_of(3) {
                        // Drop one at a time (per-guard path) with a clone and a weak.
                        let w = blocks[0].downgrade();
                        let c = blocks[0].clone();
                        drop(blocks);
                        drop(c);
                        held.push(w);
                        if held.len() > 8 {
                            held.clear();
                        }
                    } else {
                        store.release(blocks.into_iter().rev());
                    }
                    if let Some(w) = held.last() {
                        drop(w.upgrade());
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
    store.check_invariants().unwrap();
    let m = store.metrics();
    assert_eq!(m.in_use, 0);
    assert_eq!(m.free + m.inactive, cap as u64);
}

#[test]
fn stress_every_policy() {
    for &p in PolicyKind::ALL {
        run(p);
    }
}
