//! What a replay reports: the totals ([`ReplayReport`], the `--json`
//! output), its readable table, and the hit-rate plot.

use crate::plot::{line_chart, Series};
use crate::replay::ReplayOutcome;
use kvtier::setup;
use kvtier_logical::Tier;
use serde::Serialize;

/// Hits per tier, keyed `g1`, `g2`, `g3` in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HitsByTier {
    /// Served from G1.
    pub g1: u64,
    /// Served from G2.
    pub g2: u64,
    /// Served from G3.
    pub g3: u64,
    /// Served from the shared tier (G4, on object storage).
    pub g4: u64,
}

/// Per-tier size, policy and memory, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierReport {
    /// The tier.
    pub tier: Tier,
    /// Its capacity in blocks.
    pub blocks: usize,
    /// Its eviction policy.
    pub policy: String,
    /// Its memory kind (`none` without data).
    pub memory: String,
}

/// What a replay measured. Serialized as the `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Where the trace came from.
    pub trace: String,
    /// Requests replayed.
    pub requests: u64,
    /// Blocks looked up (after truncation to the G1 capacity).
    pub blocks: u64,
    /// Requests longer than G1 holds, cut to G1's capacity (the reference
    /// semantics: a request's blocks must all be in G1 at once).
    pub truncated_requests: u64,
    /// Blocks cut from those requests (not counted in `blocks`).
    pub truncated_blocks: u64,
    /// Blocks served from any tier.
    pub hits: u64,
    /// `hits / blocks`.
    pub hit_rate: f64,
    /// Hits by serving tier.
    pub hits_by_tier: HitsByTier,
    /// Wall time of the replay loop only (no parsing, no hashing, no set-up).
    pub seconds: f64,
    /// `blocks / seconds`.
    pub blocks_per_s: f64,
    /// Whether block bytes were moved and verified.
    pub data: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Runs made (`--repeat`); the figures are the fastest run's.
    pub repetitions: usize,
    /// Bytes per block (0 without data).
    pub block_bytes: u64,
    /// Blocks copied down (G1->G2, G2->G3).
    pub offloaded_blocks: u64,
    /// Blocks copied up (G3->G2, G2->G1).
    pub onboarded_blocks: u64,
    /// Bytes copied down.
    pub bytes_offloaded: u64,
    /// Bytes copied up.
    pub bytes_onboarded: u64,
    /// Bytes moved on the disk paths (G2<->G3), part of the two above.
    pub bytes_disk: u64,
    /// Bytes of computed blocks written into G1.
    pub bytes_written: u64,
    /// Bytes of onboarded blocks read back from G1 to check them.
    pub bytes_verified: u64,
    /// Onboarded blocks whose checksum failed (recomputed, never served).
    pub verify_failures: u64,
    /// Served blocks whose bytes differed from what was computed (must be 0).
    pub data_mismatches: u64,
    /// Blocks removed from the last tier by policy.
    pub dropped_blocks: u64,
    /// Offload copies that failed (their blocks dropped).
    pub offload_errors: u64,
    /// Blocks copied down while their eviction waited (write-back).
    pub eviction_copies: u64,
    /// Blocks copied down ahead of eviction (proactive cleaning).
    pub cleaned_blocks: u64,
    /// The tiers present.
    pub tiers: Vec<TierReport>,
    /// The speed floor, when data is on (see [`Floor`]).
    pub floor: Option<Floor>,
    /// What start-up recovered from a persistent G3 directory.
    pub g3: Option<setup::RecoveryReport>,
    /// Blocks copied down at the end so a persistent G3 holds everything.
    pub flushed_blocks: u64,
    /// Blocks durably recorded in the persistent G3 journal at the end (what
    /// the next start recovers).
    pub g3_live: Option<u64>,
    /// What the KV-event publisher did (when publishing).
    pub events: Option<crate::events::EventsReport>,
    /// The shared tier's (G4) counters at the end, when one was attached.
    pub g4: Option<kvtier_offload::SharedStats>,
    /// Requests that waited for G1 blocks held by requests in flight
    /// (admission backpressure), each counted once.
    pub admission_waits: u64,
    /// Requests restarted because background copies held the G1 blocks they
    /// needed (their first attempt's lookups count in the copy totals).
    pub capacity_retries: u64,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// The replay stopped early (a signal, or the error in `error`): the
    /// figures cover the requests done.
    pub interrupted: bool,
    /// Requests of the trace not replayed because the run stopped early.
    pub requests_not_run: u64,
    /// What ended the run early or failed at its end (a request's error, the
    /// G3 journal's), if anything.
    pub error: Option<String>,
}

/// The fastest a data replay could be on this machine, measured in the same
/// run: the logical-only replay time plus the bytes moved divided by the
/// measured single-thread memcpy and raw file I/O bandwidths.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Floor {
    /// The same replay without data.
    pub logical_seconds: f64,
    /// Single-thread memcpy bandwidth, GB/s.
    pub memcpy_gbps: f64,
    /// Raw sequential file write+read bandwidth in the G3 directory, GB/s.
    pub disk_gbps: f64,
    /// Host-side bytes moved (G1<->G2, writes, read-backs).
    pub host_bytes: u64,
    /// Disk bytes moved (G2<->G3).
    pub disk_bytes: u64,
    /// `logical_seconds + host_bytes/memcpy + disk_bytes/disk`.
    pub floor_seconds: f64,
    /// `seconds / floor_seconds`.
    pub ratio: f64,
}

impl ReplayOutcome {
    /// An SVG of cumulative hit rate per tier over the run.
    pub fn plot_svg(&self) -> String {
        // Cumulative hit rate over the run, counting the hits `hits` picks.
        let rate = |hits: &dyn Fn(&[u64]) -> u64| -> Vec<(f64, f64)> {
            self.timeline
                .iter()
                .map(|(r, h, b)| {
                    let rate = if *b == 0 {
                        0.0
                    } else {
                        hits(&h[..]) as f64 / *b as f64
                    };
                    (*r as f64, rate)
                })
                .collect()
        };
        let mut series: Vec<Series> = Vec::new();
        for (t, name) in ["g1", "g2", "g3"].iter().enumerate() {
            let points = rate(&|h| h[t]);
            if points.iter().any(|p| p.1 > 0.0) {
                series.push(Series {
                    label: format!("hits from {name}"),
                    points,
                });
            }
        }
        series.push(Series {
            label: "total".into(),
            points: rate(&|h| h.iter().sum()),
        });
        line_chart(
            &format!("kvtier replay: cumulative hit rate ({})", self.report.trace),
            "requests replayed",
            "hit rate",
            &series,
        )
    }
}

impl ReplayReport {
    /// A readable summary table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "trace            {}", self.trace);
        for t in &self.tiers {
            let _ = writeln!(
                s,
                "tier {}          {} blocks, policy {}, memory {}",
                t.tier, t.blocks, t.policy, t.memory
            );
        }
        let _ = writeln!(
            s,
            "data             {}{}",
            if self.repetitions > 1 {
                format!("fastest of {} runs; ", self.repetitions)
            } else {
                String::new()
            },
            if self.data {
                format!("moved and verified ({} bytes per block)", self.block_bytes)
            } else {
                "off (logical only)".into()
            }
        );
        if self.interrupted {
            let _ = writeln!(
                s,
                "requests         {} (stopped early: {} not replayed)",
                self.requests, self.requests_not_run
            );
        } else {
            let _ = writeln!(s, "requests         {}", self.requests);
        }
        let _ = writeln!(s, "blocks           {}", self.blocks);
        if self.truncated_requests > 0 {
            let _ = writeln!(
                s,
                "truncated        {} requests longer than G1, {} blocks cut (not looked up)",
                self.truncated_requests, self.truncated_blocks
            );
        }
        if self.concurrency > 1 {
            let _ = writeln!(
                s,
                "admission        {} in flight at most (of {}), {} requests waited for G1 blocks, {} restarted",
                self.max_in_flight, self.concurrency, self.admission_waits, self.capacity_retries
            );
        }
        let _ = writeln!(
            s,
            "hits             {} ({:.4})  g1 {}  g2 {}  g3 {}{}",
            self.hits,
            self.hit_rate,
            self.hits_by_tier.g1,
            self.hits_by_tier.g2,
            self.hits_by_tier.g3,
            if self.g4.is_some() {
                format!("  g4 {}", self.hits_by_tier.g4)
            } else {
                String::new()
            }
        );
        if let Some(g) = &self.g4 {
            let _ = writeln!(
                s,
                "g4               {} objects written ({:.1} MiB), {} skipped, {} write failures; {} read ({:.1} MiB), {} read failures, {} self-healed, {} evicted; index {} blocks",
                g.objects_written,
                g.bytes_written as f64 / (1 << 20) as f64,
                g.write_skipped,
                g.write_failures,
                g.objects_read,
                g.bytes_read as f64 / (1 << 20) as f64,
                g.read_failures,
                g.self_healed,
                g.evicted,
                g.index_entries
            );
        }
        if self.data || self.tiers.len() > 1 {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let _ = writeln!(
                s,
                "offloaded        {} blocks ({:.1} MiB)",
                self.offloaded_blocks,
                mib(self.bytes_offloaded)
            );
            let _ = writeln!(
                s,
                "onboarded        {} blocks ({:.1} MiB)",
                self.onboarded_blocks,
                mib(self.bytes_onboarded)
            );
            let _ = writeln!(
                s,
                "integrity        {} verify failures, {} data mismatches",
                self.verify_failures, self.data_mismatches
            );
            let _ = writeln!(
                s,
                "dropped          {} blocks ({} offload errors)",
                self.dropped_blocks, self.offload_errors
            );
            let _ = writeln!(
                s,
                "write-back       {} blocks copied while their eviction waited, {} cleaned ahead",
                self.eviction_copies, self.cleaned_blocks
            );
        }
        if let Some(g) = &self.g3 {
            let _ = writeln!(
                s,
                "g3 directory     {}: {} recovered, {} restored ({} torn, {} corrupt, {} failed verify, {} without data) in {:.3} s{}",
                g.dir,
                g.recovered,
                g.restored,
                g.dropped_torn,
                g.dropped_corrupt,
                g.dropped_verify,
                g.dropped_missing_data,
                g.seconds,
                if g.created { " (new)" } else { "" }
            );
            let _ = writeln!(
                s,
                "g3 at exit       {} blocks recorded ({} flushed down at the end)",
                self.g3_live.unwrap_or(0),
                self.flushed_blocks
            );
        }
        let _ = writeln!(s, "replay time      {:.6} s", self.seconds);
        let _ = writeln!(
            s,
            "speed            {:.3} M blocks/s",
            self.blocks_per_s / 1e6
        );
        if let Some(e) = &self.events {
            let m = &e.metrics;
            let _ = writeln!(
                s,
                "events           {} events in {} batches ({:.0} events/s, {} dropped, {} replay requests) on {} ({}), flushed in {:.3} s",
                m.events,
                m.batches,
                e.events_per_s,
                m.dropped,
                m.replay_requests,
                e.endpoint,
                e.format,
                e.flush_seconds
            );
        }
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error            {e}");
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(
                s,
                "floor            {:.3} s (logical {:.3} s, memcpy {:.2} GB/s, disk {:.2} GB/s): {:.2}x the floor",
                f.floor_seconds, f.logical_seconds, f.memcpy_gbps, f.disk_gbps, f.ratio
            );
        }
        s
    }
}
