//! Shared by the integration tests of this crate: the Mooncake synthetic
//! trace from the repository's `tests/data`, as chained hashes (salt 0).

use kvtier_logical::hash_trace_ids;
use kvtier_logical::{CacheSalt, SequenceHash};
use std::sync::OnceLock;

/// Every request of the trace, parsed and hashed once per test binary.
pub fn trace() -> &'static [Vec<SequenceHash>] {
    static T: OnceLock<Vec<Vec<SequenceHash>>> = OnceLock::new();
    T.get_or_init(|| {
        read_trace(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/mooncake_synthetic_trace.jsonl"
        )))
    })
}

/// The requests of a Mooncake-format JSONL trace, hashed with salt 0.
#[allow(dead_code)] // not every test binary that includes this module reads another trace
pub fn read_trace(path: &std::path::Path) -> Vec<Vec<SequenceHash>> {
    let text = std::fs::read_to_string(path).expect("readable trace");
    text.lines()
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
        .collect()
}
