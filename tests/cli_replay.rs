//! The `kvtier replay` command-line contract: JSON fields, reference hit
//! counts through the binary, and clear errors with a non-zero exit on bad input.

mod common;
use common::*;

#[test]
fn reference_counts_through_the_binary() {
    for (blocks, hits) in [("6000", 38_027), ("2000", 17_839), ("20000", 69_686)] {
        let v = json(&w(&format!("replay --trace {TRACE} --g1-blocks {blocks} --g2-blocks 0 --g3-blocks 0 --policy lru --no-data --json")));
        assert_eq!(v["hits"], hits, "{blocks} blocks");
        assert_eq!(v["blocks"], 121_877);
        assert_eq!(v["requests"], 3993);
        assert_eq!(v["hits_by_tier"]["g1"], hits);
        assert_eq!(v["hits_by_tier"]["g2"], 0);
        assert_eq!(v["hits_by_tier"]["g3"], 0);
        let rate = v["hit_rate"].as_f64().unwrap();
        assert!((rate - hits as f64 / 121_877.0).abs() < 1e-12);
        assert!(v["seconds"].as_f64().unwrap() > 0.0);
        assert!(v["blocks_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn embedded_default_equals_the_file() {
    let a = json(&w(
        "replay --g1-blocks 2000 --g2-blocks 0 --g3-blocks 0 --policy lru --no-data --json",
    ));
    assert_eq!(a["hits"], 17_839);
}

#[test]
fn table_output_is_readable() {
    let out = kvtier(&w(
        "replay --g1-blocks 2000 --g2-blocks 0 --g3-blocks 0 --policy lru --no-data",
    ));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hits") && text.contains("17839"), "{text}");
}

fn fails_with(args: &[&str], needle: &str) {
    let out = kvtier(args);
    assert!(!out.status.success(), "kvtier {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "stderr of {args:?} lacks {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_refused_clearly() {
    fails_with(&w("replay --g1-blocks 0 --no-data"), "at least 1");
    fails_with(
        &w("replay --policy nope --no-data"),
        "unknown eviction policy `nope`",
    );
    fails_with(
        &w("replay --trace /nonexistent.jsonl --no-data"),
        "/nonexistent.jsonl",
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"hash_ids\": [1, 2]}\n{\"hash_ids\": [3, -1]}\n").unwrap();
    let bad = bad.to_str().unwrap();
    fails_with(
        &["replay", "--trace", bad, "--no-data"],
        &format!("{bad}:2: field `hash_ids`, element 1"),
    );

    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[g1]\nblocks = 10\nsize = 3\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    fails_with(&["replay", "--config", cfg, "--no-data"], "line 3");
}

#[test]
fn per_tier_policy_params_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let hits = |params: &str| {
        let cfg = write_config(
            dir.path(),
            &format!("[g1]\nblocks = 2000\npolicy = \"gated-lru\"\n{params}"),
        );
        u(&replay_ok(&["--config", &cfg, "--no-data"])["hits"])
    };
    let tuned = hits("");
    let unprotected = hits("[g1.policy_params.gated-lru]\nprotected_share_64ths = 0\n");
    let explicit = hits("[g1.policy_params.gated-lru]\nprotected_share_64ths = 56\n");
    assert_eq!(tuned, explicit, "the tuned default is 56/64");
    assert_ne!(tuned, unprotected, "the field must change the order");
    // The same through the tiered cache (G2 present), for a lower tier.
    let g2 = |params: &str| {
        hits(&format!(
            "[g2]\nblocks = 3000\npolicy = \"gated-lru\"\n{params}"
        ))
    };
    assert_ne!(
        g2(""),
        g2("[g2.policy_params.gated-lru]\nprotected_share_64ths = 0\n")
    );
    let cfg = write_config(
        dir.path(),
        "[g1]\nblocks = 10\n[g1.policy_params.gated-lru]\nprotected_share_64ths = 99\n",
    );
    fails_with(
        &["replay", "--config", &cfg, "--no-data"],
        "g1.policy_params.gated-lru.protected_share_64ths",
    );
}
