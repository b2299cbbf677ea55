//! Replay the Mooncake synthetic trace (`tests/data`) through one tier
//! `repeats` times, a fresh store each time, and print the hits: the
//! workload of the instruction counts in `docs/policies.md` and
//! `docs/benchmarks.md`. Run it under cachegrind with two repeat counts and
//! divide the difference of the instruction totals by the blocks of the
//! extra replays, so that parsing and hashing the trace cancel out:
//!
//! ```sh
//! cargo build --release -p kvtier-logical --example replay_trace
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/replay_trace gated-lru 6000 11
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/replay_trace gated-lru 6000 1
//! ```
//!
//! Arguments: policy name (default `lru`), capacity in blocks (6000),
//! repeats (1).

#[path = "../tests/common/mod.rs"]
mod common;

use kvtier_logical::replay;
use kvtier_logical::{BlockStore, PolicyKind, StoreConfig, Tier};

fn main() {
    let mut args = std::env::args().skip(1);
    let policy: PolicyKind = args
        .next()
        .unwrap_or_else(|| "lru".into())
        .parse()
        .expect("policy name");
    let capacity: usize = args.next().map_or(6000, |a| a.parse().expect("capacity"));
    let repeats: usize = args.next().map_or(1, |a| a.parse().expect("repeats"));
    let requests = common::trace();
    for _ in 0..repeats {
        let store =
            BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(policy)).unwrap();
        let stats = replay(&store, requests).unwrap();
        println!(
            "{policy} {capacity}: {} hits of {} blocks",
            stats.hits, stats.blocks
        );
    }
}
