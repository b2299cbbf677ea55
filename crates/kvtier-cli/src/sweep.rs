//! `kvtier sweep`: hit rate of several eviction policies over several
//! capacities (one tier, logical replay), as a table, JSON and an SVG plot.

use crate::plot::{line_chart_scaled, Series, XScale};
use kvtier_harness::trace::HashedTrace;
use kvtier_logical::SingleTierReplay;
use kvtier_logical::{BlockStore, PolicyKind, StoreConfig, StoreError, Tier};
use serde::Serialize;
use std::time::Instant;

/// One (policy, capacity) point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// Policy name.
    pub policy: String,
    /// Capacity in blocks.
    pub capacity: usize,
    /// Blocks served from the cache.
    pub hits: u64,
    /// Blocks looked up.
    pub blocks: u64,
    /// `hits / blocks`.
    pub hit_rate: f64,
    /// Replay speed.
    pub blocks_per_s: f64,
}

/// Replay `trace` once per (policy, capacity).
pub fn run(
    trace: &HashedTrace,
    policies: &[PolicyKind],
    capacities: &[usize],
) -> Result<Vec<SweepPoint>, StoreError> {
    let mut out = Vec::new();
    for &p in policies {
        for &cap in capacities {
            let store = BlockStore::new(StoreConfig::new(Tier::G1, cap).with_policy(p))?;
            let mut r = SingleTierReplay::new(store);
            let t = Instant::now();
            for req in trace.iter() {
                r.request(req)?;
            }
            let secs = t.elapsed().as_secs_f64();
            let s = r.stats();
            out.push(SweepPoint {
                policy: p.name().to_string(),
                capacity: cap,
                hits: s.hits,
                blocks: s.blocks,
                hit_rate: s.hit_rate(),
                blocks_per_s: s.blocks as f64 / secs.max(1e-9),
            });
        }
    }
    Ok(out)
}

/// A markdown table: one row per policy, one column per capacity.
pub fn to_table(points: &[SweepPoint]) -> String {
    use std::fmt::Write;
    let mut caps: Vec<usize> = points.iter().map(|p| p.capacity).collect();
    caps.sort_unstable();
    caps.dedup();
    let mut pols: Vec<&str> = Vec::new();
    for p in points {
        if !pols.contains(&p.policy.as_str()) {
            pols.push(&p.policy);
        }
    }
    let mut s = String::from("| policy |");
    for c in &caps {
        let _ = write!(s, " {c} |");
    }
    s.push_str("\n| --- |");
    for _ in &caps {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for pol in pols {
        let _ = write!(s, "| {pol} |");
        for c in &caps {
            match points.iter().find(|p| p.policy == pol && p.capacity == *c) {
                Some(p) => {
                    let _ = write!(s, " {:.4} |", p.hit_rate);
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

/// Distinct blocks of `trace`: the capacity at which every block fits.
pub fn distinct_blocks(trace: &HashedTrace) -> usize {
    let mut seen = std::collections::HashSet::new();
    for req in trace.iter() {
        seen.extend(req.iter().copied());
    }
    seen.len()
}

/// SVG: hit rate against capacity, one line per policy. The capacity axis
/// is logarithmic when the capacities span a factor of 10 or more (sizes
/// from a G1 to a disk tier), with round tick values.
pub fn to_svg(title: &str, points: &[SweepPoint]) -> String {
    let mut series: Vec<Series> = Vec::new();
    for p in points {
        match series.iter_mut().find(|s| s.label == p.policy) {
            Some(s) => s.points.push((p.capacity as f64, p.hit_rate)),
            None => series.push(Series {
                label: p.policy.clone(),
                points: vec![(p.capacity as f64, p.hit_rate)],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (lo, hi) = points.iter().fold((usize::MAX, 0), |(lo, hi), p| {
        (lo.min(p.capacity), hi.max(p.capacity))
    });
    let scale = if lo > 0 && hi >= lo.saturating_mul(10) {
        XScale::Log
    } else {
        XScale::Linear
    };
    let x_label = if scale == XScale::Log {
        "capacity (blocks, log scale)"
    } else {
        "capacity (blocks)"
    };
    line_chart_scaled(title, x_label, "hit rate", &series, scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvtier_harness::trace::Trace;

    #[test]
    fn sweep_lru_matches_reference() {
        let t = Trace::embedded().hashed(kvtier_logical::CacheSalt(0));
        let pts = run(&t, &[PolicyKind::Lru], &[2000, 6000]).unwrap();
        assert_eq!(pts[0].hits, 17_839);
        assert_eq!(pts[1].hits, 38_027);
        let table = to_table(&pts);
        assert!(table.contains("| lru | 0.1464 | 0.3120 |"), "{table}");
        assert!(to_svg("x", &pts).contains("<polyline"));
        assert_eq!(distinct_blocks(&t), 43_924);
        let wide = run(&t, &[PolicyKind::Lru], &[1000, 20_000]).unwrap();
        assert!(to_svg("x", &wide).contains("log scale"));
    }
}
