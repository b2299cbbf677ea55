//! G4 counters and their Prometheus form.

use kvtier_logical::prometheus::Exposition;
use kvtier_offload::SharedStats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Atomic counters of one G4 tier ([`SharedStats`] is their snapshot).
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) objects_written: AtomicU64,
    pub(crate) write_skipped: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) objects_read: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) read_failures: AtomicU64,
    pub(crate) self_healed: AtomicU64,
    pub(crate) evicted: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl Counters {
    /// A snapshot, with the index's size.
    pub fn snapshot(&self, index_entries: u64, index_bytes: u64) -> SharedStats {
        SharedStats {
            objects_written: self.objects_written.load(Relaxed),
            write_skipped: self.write_skipped.load(Relaxed),
            write_failures: self.write_failures.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            objects_read: self.objects_read.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            read_failures: self.read_failures.load(Relaxed),
            self_healed: self.self_healed.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            index_entries,
            index_bytes,
        }
    }
}

/// Add a snapshot's counters to `e` (`kvtier_g4_*`).
pub fn write_prometheus(s: &SharedStats, e: &mut Exposition) {
    let counters = [
        (
            "kvtier_g4_objects_written_total",
            "Objects written to G4 (or found created by another writer).",
            s.objects_written,
        ),
        (
            "kvtier_g4_write_skipped_total",
            "Blocks not written to G4 (backpressure skip or failed write).",
            s.write_skipped,
        ),
        (
            "kvtier_g4_write_failures_total",
            "G4 writes that failed.",
            s.write_failures,
        ),
        (
            "kvtier_g4_bytes_written_total",
            "Bytes written to G4.",
            s.bytes_written,
        ),
        (
            "kvtier_g4_objects_read_total",
            "G4 objects read and verified.",
            s.objects_read,
        ),
        (
            "kvtier_g4_bytes_read_total",
            "Bytes read from G4.",
            s.bytes_read,
        ),
        (
            "kvtier_g4_read_failures_total",
            "G4 reads that failed (missing, bad, error, deadline).",
            s.read_failures,
        ),
        (
            "kvtier_g4_self_healed_total",
            "G4 index entries dropped because their object was missing or bad.",
            s.self_healed,
        ),
        (
            "kvtier_g4_evicted_total",
            "G4 objects deleted by the byte budget.",
            s.evicted,
        ),
    ];
    for (name, help, v) in counters {
        e.counter(name, help).sample(&[], v);
    }
    e.gauge("kvtier_g4_index_entries", "Blocks in the local G4 index.")
        .sample(&[], s.index_entries);
    e.gauge(
        "kvtier_g4_index_bytes",
        "Bytes the local G4 index accounts for.",
    )
    .sample(&[], s.index_bytes);
}
