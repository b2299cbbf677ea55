//! `kvtier sweep --peers`: kvbm-logical's policies, replayed by the peer
//! benchmark binary (`benches/peer`, a separate Cargo project), in the same
//! table and plot as kvtier's. The binary is run once per (policy,
//! capacity) with tail-first release (kvtier's replay semantics) and its one
//! JSON line read back.

use crate::sweep::SweepPoint;
use std::path::{Path, PathBuf};
use std::process::Command;

/// kvbm-logical's inactive-pool backends that the peer binary replays.
pub const PEER_POLICIES: [&str; 3] = ["lru", "multi-lru", "lineage"];

/// Why a peer run failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The binary could not be started.
    #[error("cannot run the peer benchmark {path}: {source} (build it with `cargo build --release --manifest-path benches/peer/Cargo.toml`)")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The binary failed or printed no usable JSON.
    #[error("peer benchmark {path} ({policy}, {capacity} blocks) failed: {detail}")]
    Run {
        /// The binary.
        path: PathBuf,
        /// The peer policy.
        policy: String,
        /// The capacity.
        capacity: usize,
        /// Exit status, stderr or the parse error.
        detail: String,
    },
}

/// Fields of the peer's JSON line that the sweep uses.
#[derive(serde::Deserialize)]
struct PeerLine {
    hits: u64,
    blocks: u64,
    blocks_per_s: f64,
}

/// Replay `trace` through the peer binary `bin` for every peer policy and
/// capacity; points are labelled `kvbm-logical <policy>`.
pub fn run(bin: &Path, trace: &Path, capacities: &[usize]) -> Result<Vec<SweepPoint>, PeerError> {
    let mut out = Vec::new();
    for policy in PEER_POLICIES {
        for &capacity in capacities {
            let o = Command::new(bin)
                .arg("--trace")
                .arg(trace)
                .args(["--capacity", &capacity.to_string()])
                .args(["--policy", policy, "--release", "tail-first"])
                .output()
                .map_err(|source| PeerError::Spawn {
                    path: bin.to_path_buf(),
                    source,
                })?;
            let fail = |detail: String| PeerError::Run {
                path: bin.to_path_buf(),
                policy: policy.to_string(),
                capacity,
                detail,
            };
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr);
                return Err(fail(format!("{}: {}", o.status, err.trim())));
            }
            let stdout = String::from_utf8_lossy(&o.stdout);
            let line = stdout
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .ok_or_else(|| fail("no JSON line in its output".into()))?;
            let p: PeerLine = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
            out.push(SweepPoint {
                policy: format!("kvbm-logical {policy}"),
                capacity,
                hits: p.hits,
                blocks: p.blocks,
                hit_rate: if p.blocks == 0 {
                    0.0
                } else {
                    p.hits as f64 / p.blocks as f64
                },
                blocks_per_s: p.blocks_per_s,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let e = run(
            Path::new("/nonexistent/kvbm-peer-bench"),
            Path::new("t"),
            &[10],
        )
        .unwrap_err();
        assert!(e.to_string().contains("benches/peer"), "{e}");
    }

    #[test]
    fn a_failing_binary_names_policy_and_capacity() {
        let e = run(Path::new("/bin/false"), Path::new("t"), &[10]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("lru") && s.contains("10 blocks"), "{s}");
    }
}
