//! Offload metrics: per copy path (blocks, bytes, transfers, errors, latency
//! histogram) and per cache (verify failures, dropped blocks), in Prometheus
//! text format.

use kvtier_logical::prometheus::Exposition;
use kvtier_logical::Tier;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A copy path between two tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Path {
    /// G1 -> G2 (offload).
    G1ToG2,
    /// G2 -> G3 (offload).
    G2ToG3,
    /// G3 -> G2 (onboard).
    G3ToG2,
    /// G2 -> G1 (onboard).
    G2ToG1,
}

impl Path {
    /// All paths.
    pub const ALL: [Path; 4] = [Path::G1ToG2, Path::G2ToG3, Path::G3ToG2, Path::G2ToG1];

    /// Label, e.g. `g1_to_g2`.
    pub fn label(self) -> &'static str {
        match self {
            Path::G1ToG2 => "g1_to_g2",
            Path::G2ToG3 => "g2_to_g3",
            Path::G3ToG2 => "g3_to_g2",
            Path::G2ToG1 => "g2_to_g1",
        }
    }

    /// The path from `from` to `to`, if they are adjacent tiers.
    pub fn between(from: Tier, to: Tier) -> Option<Path> {
        match (from, to) {
            (Tier::G1, Tier::G2) => Some(Path::G1ToG2),
            (Tier::G2, Tier::G3) => Some(Path::G2ToG3),
            (Tier::G3, Tier::G2) => Some(Path::G3ToG2),
            (Tier::G2, Tier::G1) => Some(Path::G2ToG1),
            _ => None,
        }
    }

    /// Whether the path moves blocks up (onboarding).
    pub fn is_onboard(self) -> bool {
        matches!(self, Path::G3ToG2 | Path::G2ToG1)
    }
}

/// Latency histogram buckets: upper bounds in microseconds, powers of 4.
pub const LATENCY_BUCKETS_US: [u64; 10] = [
    16, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304,
];

/// Counters of one path (lock-free).
#[derive(Debug, Default)]
pub struct PathMetrics {
    /// Blocks copied.
    pub blocks: AtomicU64,
    /// Bytes copied.
    pub bytes: AtomicU64,
    /// Transfers (batches) completed.
    pub transfers: AtomicU64,
    /// Transfers that failed.
    pub errors: AtomicU64,
    /// Histogram of transfer latency (cumulative counts are built on export).
    pub latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of latencies in microseconds.
    pub latency_sum_us: AtomicU64,
}

impl PathMetrics {
    /// Record one completed transfer.
    pub fn record(&self, blocks: u64, bytes: u64, took: Duration, ok: bool) {
        if ok {
            self.blocks.fetch_add(blocks, Relaxed);
            self.bytes.fetch_add(bytes, Relaxed);
            self.transfers.fetch_add(1, Relaxed);
        } else {
            self.errors.fetch_add(1, Relaxed);
        }
        let us = took.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[i].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }
}

/// Counters of a whole tiered cache.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    paths: [PathMetrics; 4],
    /// Onboarded blocks whose checksum did not match (treated as misses).
    pub verify_failures: AtomicU64,
    /// Blocks removed from the last tier by policy (or that could not be
    /// moved down).
    pub dropped_blocks: AtomicU64,
    /// Offload copies that failed (the blocks were dropped instead).
    pub offload_errors: AtomicU64,
    /// Write-through requests skipped because their queue was full.
    pub write_through_skipped: AtomicU64,
    /// Blocks copied down at eviction time (write-back: the eviction waited).
    pub eviction_copies: AtomicU64,
    /// Blocks copied down ahead of eviction by the proactive cleaner.
    pub cleaned_blocks: AtomicU64,
    /// Times a piece of background copying (cleaning, write-through) waited
    /// for foreground work in flight ([`crate::priority`]).
    pub background_yields: AtomicU64,
    /// Microseconds background copies spent waiting for foreground work.
    pub background_yield_us: AtomicU64,
    /// Waits for foreground work that the bound ended (the batch then
    /// copied the rest without waiting).
    pub background_yield_cut: AtomicU64,
}

impl CacheMetrics {
    /// Record one wait of background copying for foreground work: how long,
    /// and whether the bound ended it.
    pub fn background_yielded(&self, waited: Duration, cut: bool) {
        self.background_yields.fetch_add(1, Relaxed);
        self.background_yield_us
            .fetch_add(waited.as_micros() as u64, Relaxed);
        if cut {
            self.background_yield_cut.fetch_add(1, Relaxed);
        }
    }

    /// The counters of one path.
    pub fn path(&self, p: Path) -> &PathMetrics {
        &self.paths[p as usize]
    }

    /// A plain snapshot.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let sum = |onboard: bool, f: fn(&PathMetrics) -> &AtomicU64| -> u64 {
            Path::ALL
                .iter()
                .filter(|p| p.is_onboard() == onboard)
                .map(|&p| f(self.path(p)).load(Relaxed))
                .sum()
        };
        MetricsSnapshot {
            offloaded_blocks: sum(false, |p| &p.blocks),
            bytes_offloaded: sum(false, |p| &p.bytes),
            onboarded_blocks: sum(true, |p| &p.blocks),
            bytes_onboarded: sum(true, |p| &p.bytes),
            bytes_disk: self.path(Path::G2ToG3).bytes.load(Relaxed)
                + self.path(Path::G3ToG2).bytes.load(Relaxed),
            verify_failures: self.verify_failures.load(Relaxed),
            dropped_blocks: self.dropped_blocks.load(Relaxed),
            offload_errors: self.offload_errors.load(Relaxed),
            write_through_skipped: self.write_through_skipped.load(Relaxed),
            eviction_copies: self.eviction_copies.load(Relaxed),
            cleaned_blocks: self.cleaned_blocks.load(Relaxed),
            background_yields: self.background_yields.load(Relaxed),
            background_yield_us: self.background_yield_us.load(Relaxed),
            background_yield_cut: self.background_yield_cut.load(Relaxed),
        }
    }

    /// Prometheus text exposition of every path and cache counter.
    pub fn to_prometheus(&self) -> String {
        let mut e = Exposition::new();
        self.write_prometheus(&mut e);
        e.encode()
    }

    /// Add every path and cache counter to `e`.
    pub fn write_prometheus(&self, e: &mut Exposition) {
        type Get = fn(&PathMetrics) -> &AtomicU64;
        let fams: [(&str, &str, Get); 4] = [
            ("kvtier_path_blocks_total", "Blocks copied per path.", |p| {
                &p.blocks
            }),
            ("kvtier_path_bytes_total", "Bytes copied per path.", |p| {
                &p.bytes
            }),
            (
                "kvtier_path_transfers_total",
                "Transfers completed per path.",
                |p| &p.transfers,
            ),
            (
                "kvtier_path_errors_total",
                "Transfers failed per path.",
                |p| &p.errors,
            ),
        ];
        for (name, help, get) in fams {
            let mut f = e.counter(name, help);
            for p in Path::ALL {
                f.sample(&[("path", p.label())], get(self.path(p)).load(Relaxed));
            }
        }
        let mut f = e.histogram("kvtier_path_latency_seconds", "Transfer latency per path.");
        for p in Path::ALL {
            let m = self.path(p);
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                .iter()
                .map(|b| *b as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(m.latency.iter().map(|n| n.load(Relaxed)))
                .collect();
            let sum = m.latency_sum_us.load(Relaxed) as f64 / 1e6;
            f.histogram(&[("path", p.label())], sum, &buckets);
        }
        let snap = self.snapshot();
        for (name, help, v) in [
            (
                "kvtier_verify_failures_total",
                "Onboarded blocks that failed their checksum.",
                snap.verify_failures,
            ),
            (
                "kvtier_dropped_blocks_total",
                "Blocks dropped from the last tier.",
                snap.dropped_blocks,
            ),
            (
                "kvtier_offload_errors_total",
                "Offload copies that failed.",
                snap.offload_errors,
            ),
            (
                "kvtier_write_through_skipped_total",
                "Write-through copies skipped (queue full).",
                snap.write_through_skipped,
            ),
            (
                "kvtier_eviction_copies_total",
                "Blocks copied down while their eviction waited.",
                snap.eviction_copies,
            ),
            (
                "kvtier_cleaned_blocks_total",
                "Blocks copied down ahead of eviction.",
                snap.cleaned_blocks,
            ),
        ] {
            e.counter(name, help).sample(&[], v);
        }
        e.counter(
            "kvtier_background_yields_total",
            "Pieces of background copying (cleaning, write-through) that waited for foreground work.",
        )
        .sample(&[], snap.background_yields);
        e.counter(
            "kvtier_background_yield_seconds_total",
            "Time background copies waited for foreground work.",
        )
        .sample_f64(&[], snap.background_yield_us as f64 / 1e6);
        e.counter(
            "kvtier_background_yield_cut_total",
            "Waits for foreground work ended by the bound.",
        )
        .sample(&[], snap.background_yield_cut);
    }
}

/// Totals of a cache's data movement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Blocks copied down (G1->G2, G2->G3).
    pub offloaded_blocks: u64,
    /// Bytes copied down.
    pub bytes_offloaded: u64,
    /// Blocks copied up (G3->G2, G2->G1).
    pub onboarded_blocks: u64,
    /// Bytes copied up.
    pub bytes_onboarded: u64,
    /// Bytes copied on the disk paths (G2<->G3), both directions.
    pub bytes_disk: u64,
    /// Checksum mismatches on onboard.
    pub verify_failures: u64,
    /// Blocks dropped from the last tier.
    pub dropped_blocks: u64,
    /// Offload copies that failed.
    pub offload_errors: u64,
    /// Write-through copies skipped because the queue was full.
    pub write_through_skipped: u64,
    /// Blocks copied down at eviction time (the eviction waited for them).
    pub eviction_copies: u64,
    /// Blocks copied down ahead of eviction by the proactive cleaner.
    pub cleaned_blocks: u64,
    /// Pieces of background copying that waited for foreground work.
    pub background_yields: u64,
    /// Microseconds background copies waited for foreground work.
    pub background_yield_us: u64,
    /// Waits for foreground work that the bound ended.
    pub background_yield_cut: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_export() {
        let m = CacheMetrics::default();
        m.path(Path::G1ToG2)
            .record(4, 4096, Duration::from_micros(100), true);
        m.path(Path::G2ToG1)
            .record(1, 1024, Duration::from_secs(10), true);
        m.path(Path::G2ToG3)
            .record(1, 1024, Duration::from_micros(1), false);
        let snap = m.snapshot();
        assert_eq!((snap.offloaded_blocks, snap.bytes_offloaded), (4, 4096));
        assert_eq!((snap.onboarded_blocks, snap.bytes_onboarded), (1, 1024));
        let text = m.to_prometheus();
        assert!(text.contains("kvtier_path_blocks_total{path=\"g1_to_g2\"} 4"));
        assert!(text
            .contains("kvtier_path_latency_seconds_bucket{path=\"g1_to_g2\",le=\"0.000256\"} 1"));
        assert!(
            text.contains("kvtier_path_latency_seconds_bucket{path=\"g2_to_g1\",le=\"+Inf\"} 1")
        );
        assert!(text.contains("kvtier_path_errors_total{path=\"g2_to_g3\"} 1"));
    }
}
