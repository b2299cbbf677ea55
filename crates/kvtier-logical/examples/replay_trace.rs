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

use kvtier_logical::hash_trace_ids;
use kvtier_logical::replay;
use kvtier_logical::{BlockStore, CacheSalt, PolicyKind, SequenceHash, StoreConfig, Tier};

fn main() {
    let mut args = std::env::args().skip(1);
    let policy: PolicyKind = args
        .next()
        .unwrap_or_else(|| "lru".into())
        .parse()
        .expect("policy name");
    let capacity: usize = args.next().map_or(6000, |a| a.parse().expect("capacity"));
    let repeats: usize = args.next().map_or(1, |a| a.parse().expect("repeats"));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/mooncake_synthetic_trace.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("trace in tests/data");
    let requests: Vec<Vec<SequenceHash>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("trace line is JSON");
            let ids: Vec<u64> = v["hash_ids"]
                .as_array()
                .expect("hash_ids array")
                .iter()
                .map(|x| x.as_u64().expect("id"))
                .collect();
            hash_trace_ids(CacheSalt(0), &ids)
        })
        .collect();
    for _ in 0..repeats {
        let store =
            BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(policy)).unwrap();
        let stats = replay(&store, &requests).unwrap();
        println!(
            "{policy} {capacity}: {} hits of {} blocks",
            stats.hits, stats.blocks
        );
    }
}
