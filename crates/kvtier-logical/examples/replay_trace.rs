//! Replay the Mooncake synthetic trace (`tests/data`) through one tier
//! `repeats` times, a fresh store each time, and print the hits: the
//! workload of the instruction counts in `docs/policy-design-log.md` and
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
//! repeats (1), tuning as a `PolicyParams` JSON object (`{}`, e.g.
//! `'{"gated-duel":{"duel_sample_rate":0}}'`). The environment variable
//! `KVTIER_TRACE` names another Mooncake-format trace to replay instead.
//! Prints the hits and the best and median replay times (the times are for
//! comparing builds run alternately on one machine; the criterion bench
//! `replay/trace` is the reference figure).

#[path = "../tests/common/mod.rs"]
mod common;

use kvtier_logical::replay;
use kvtier_logical::{BlockStore, PolicyKind, PolicyParams, StoreConfig, Tier};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let policy: PolicyKind = args
        .next()
        .unwrap_or_else(|| "lru".into())
        .parse()
        .expect("policy name");
    let capacity: usize = args.next().map_or(6000, |a| a.parse().expect("capacity"));
    let repeats: usize = args.next().map_or(1, |a| a.parse().expect("repeats"));
    let params: PolicyParams = args.next().map_or_else(PolicyParams::default, |a| {
        serde_json::from_str(&a).expect("tuning JSON")
    });
    let own;
    let requests = match std::env::var_os("KVTIER_TRACE") {
        Some(path) => {
            own = common::read_trace(std::path::Path::new(&path));
            &own[..]
        }
        None => common::trace(),
    };
    let mut times = Vec::with_capacity(repeats);
    let mut stats = None;
    for _ in 0..repeats {
        let store = BlockStore::new(
            StoreConfig::new(Tier::G1, capacity)
                .with_policy(policy)
                .with_policy_params(params.clone()),
        )
        .unwrap();
        let t = Instant::now();
        stats = Some(replay(&store, requests).unwrap());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(stats) = stats {
        times.sort_by(f64::total_cmp);
        println!(
            "{policy} {capacity}: {} hits of {} blocks; replay best {:.3} ms, median {:.3} ms \
             ({repeats} replays)",
            stats.hits,
            stats.blocks,
            times[0],
            times[times.len() / 2]
        );
    }
}
