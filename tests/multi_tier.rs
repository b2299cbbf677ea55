//! Whole-stack replays through the binary with data on: every onboarded block's
//! bytes are checked against the pattern written when it was computed.

mod common;
use common::{replay_ok as replay, w};

/// G1 2,000 + G2 8,000 + G3 50,000 (G3 holds every distinct block): nothing is
/// lost, so the total equals the unbounded cache's hits exactly.
#[test]
fn nothing_lost_with_data() {
    // The built-in config is exactly this layout (mock G1, host G2, disk G3).
    let v = replay(&["--policy", "lru"]);
    assert_eq!(v["hits"], 77_953);
    assert_eq!(v["blocks"], 121_877);
    assert_eq!(v["verify_failures"], 0);
    assert_eq!(v["data_mismatches"], 0);
    assert_eq!(v["dropped_blocks"], 0);
    assert_eq!(v["data"], true);
    let by = &v["hits_by_tier"];
    assert_eq!(by["g1"], 17_839, "G1 alone behaves as a 2,000-block LRU");
    assert_eq!(
        by["g1"].as_u64().unwrap() + by["g2"].as_u64().unwrap() + by["g3"].as_u64().unwrap(),
        77_953
    );
    assert!(v["onboarded_blocks"].as_u64().unwrap() > 0);
    assert!(v["bytes_verified"].as_u64().unwrap() > 0);
}

/// Same without bytes: the logical multi-tier walk gives the same counts.
#[test]
fn nothing_lost_logical() {
    let v = replay(&["--policy", "lru", "--no-data"]);
    assert_eq!(v["hits"], 77_953);
    assert_eq!(v["hits_by_tier"]["g1"], 17_839);
}

/// G3 absent: G1 2,000 + inclusive G2 8,000 (LRU everywhere). Pinned; see
/// docs/architecture.md for the comparison with one 10,000-block LRU (51,669).
#[test]
fn two_tiers_inclusive() {
    // Without proactive cleaning: it moves blocks into G2 before their
    // eviction, so they also age out of G2 earlier (see architecture.md).
    let v = replay(&w("--g3-blocks 0 --policy lru --no-data --clean-ahead 0"));
    assert_eq!(v["hits"], 48_651);
    assert_eq!(v["hits_by_tier"]["g1"], 17_839);
    assert_eq!(v["hits_by_tier"]["g2"], 30_812);
    let d = replay(&w("--g3-blocks 0 --policy lru --clean-ahead 0"));
    assert_eq!(d["hits"], 48_651, "data on gives the same counts");
    assert_eq!(d["verify_failures"], 0);
    assert_eq!(d["data_mismatches"], 0);
    assert!(
        d["dropped_blocks"].as_u64().unwrap() > 0,
        "G2 drops what it evicts"
    );
}

/// A busy server: several requests in flight still verify every byte.
#[test]
fn concurrent_requests_verify() {
    let v = replay(&w("--concurrency 4 --g1-blocks 3000"));
    assert_eq!(v["verify_failures"], 0);
    assert_eq!(v["data_mismatches"], 0);
    assert_eq!(v["concurrency"], 4);
    assert!(v["hits"].as_u64().unwrap() > 70_000);
}

#[test]
fn plot_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hits.svg");
    replay(&["--no-data", "--plot", p.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&p).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("hits from g3"));
}

/// Proactive cleaning (the built-in config keeps 256 G1 blocks cleaned ahead):
/// most write-back copies happen before eviction, nothing is lost, nothing
/// wrong is served; without it every write-back copy is made while its
/// eviction waits.
#[test]
fn proactive_cleaning_moves_copies_ahead_of_eviction() {
    let on = replay(&["--policy", "lru"]);
    assert_eq!(on["hits"], 77_953);
    assert_eq!(on["data_mismatches"], 0);
    let cleaned = on["cleaned_blocks"].as_u64().unwrap();
    assert!(cleaned > 10_000, "cleaned only {cleaned}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("no-clean.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/default.toml"
    ))
    .unwrap()
    .replace("clean_ahead = 256", "clean_ahead = 0");
    std::fs::write(&cfg, text).unwrap();
    let off = replay(&["--config", cfg.to_str().unwrap(), "--policy", "lru"]);
    assert_eq!(off["hits"], 77_953);
    assert_eq!(off["cleaned_blocks"], 0);
    let waited_off = off["eviction_copies"].as_u64().unwrap();
    let waited_on = on["eviction_copies"].as_u64().unwrap();
    assert!(
        waited_on + cleaned / 2 < waited_off,
        "cleaning should take copies off the eviction path: {waited_on} (cleaned {cleaned}) vs {waited_off}"
    );
}
