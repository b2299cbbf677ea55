//! Smoke test: a tiny benchmark run produces rows for every CPU-only tier pair
//! and leaves no files behind.

use kvtier_harness::migration::{measure, BenchArgs};

#[test]
fn tiny_run_measures_every_pair_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = BenchArgs::parse_from([
        "bench",
        "--model",
        "tiny",
        "--block-tokens",
        "4,64",
        "--batch",
        "1,3",
        "--seconds",
        "0.001",
        "--dir",
        d,
    ])
    .unwrap();
    let mut lines = Vec::new();
    let report = measure(&args, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(report.rows.len(), 2 * 2 * 8, "{lines:#?}");
    for pair in ["G1->G2", "G2->G1", "G2->G3", "G3->G2", "G1->G3", "G3->G1"] {
        assert!(report.rows.iter().any(|r| r.pair == pair), "missing {pair}");
    }
    assert!(report
        .rows
        .iter()
        .all(|r| r.gbps > 0.0 && r.ceiling_gbps > 0.0));
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["rows"][0]["ratio"].is_number());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_arguments_are_errors() {
    let bad = BenchArgs::parse_from(["bench", "--model", "nope"]).unwrap();
    assert!(measure(&bad, &mut |_| {}).is_err());
    let bad = BenchArgs::parse_from(["bench", "--layout", "diagonal"]).unwrap();
    assert!(measure(&bad, &mut |_| {}).is_err());
    let bad = BenchArgs::parse_from(["bench", "--dir", "/no/such/dir"]).unwrap();
    assert!(measure(&bad, &mut |_| {}).is_err());
    assert!(BenchArgs::parse_from(["bench", "--batch", "x"]).is_err());
}
