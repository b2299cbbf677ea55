//! Replay speed of every policy on the Mooncake synthetic trace (one tier,
//! one thread), for `docs/policy-design-log.md`. Prints, asserts nothing about time:
//! `cargo test --release -p kvtier-logical --test policy_speed -- --ignored --nocapture`

mod common;

use common::trace;
use kvtier_logical::replay;
use kvtier_logical::{BlockStore, PolicyKind, SequenceHash, StoreConfig, Tier};
use std::time::Instant;

/// Best of `reps` replays (a fresh store each time), in blocks per second.
fn speed(policy: PolicyKind, capacity: usize, reqs: &[Vec<SequenceHash>], reps: usize) -> f64 {
    let mut best = f64::MAX;
    let mut blocks = 0;
    for _ in 0..reps {
        let store =
            BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(policy)).unwrap();
        let t = Instant::now();
        let s = replay(&store, reqs).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        blocks = s.blocks;
    }
    blocks as f64 / best
}

#[test]
#[ignore]
fn print_policy_speed() {
    let reqs = trace();
    let reps = 15;
    for capacity in [2000, 6000] {
        // Interleave policies over rounds so that machine noise hits all alike.
        let mut rates = vec![0.0f64; PolicyKind::ALL.len()];
        for _ in 0..3 {
            for (i, &p) in PolicyKind::ALL.iter().enumerate() {
                rates[i] = rates[i].max(speed(p, capacity, reqs, reps));
            }
        }
        let lru = rates[0];
        println!("\ncapacity {capacity}: best of 3x{reps} replays");
        println!("| policy | Mblocks/s | time vs lru |");
        for (i, &p) in PolicyKind::ALL.iter().enumerate() {
            println!(
                "| {} | {:.2} | {:.2}x |",
                p.name(),
                rates[i] / 1e6,
                lru / rates[i]
            );
        }
    }
}
