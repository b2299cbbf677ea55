//! The publisher's counters, readable while it runs, and their Prometheus
//! text form.

use kvtier_logical::prometheus::Exposition;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by the publisher's threads (relaxed atomics).
#[derive(Debug, Default)]
pub struct EventMetrics {
    pub(crate) store_events: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) replay_requests: AtomicU64,
    pub(crate) replay_batches: AtomicU64,
    pub(crate) replay_unservable: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) anomalies: AtomicU64,
    pub(crate) subscribers: AtomicU64,
    pub(crate) backlog: AtomicU64,
}

/// A snapshot of [`EventMetrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Store events consumed (kvtier's own events, all tiers).
    pub store_events: u64,
    /// Router events published (`BlockStored`, `BlockRemoved`, `AllBlocksCleared`).
    pub events: u64,
    /// Batches (messages) published; the last sequence number is this minus 1.
    pub batches: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Batches dropped because the socket's queue was full (recoverable
    /// through replay while they are in the buffer).
    pub dropped: u64,
    /// Replay requests answered.
    pub replay_requests: u64,
    /// Batches re-sent through replay.
    pub replay_batches: u64,
    /// Replay requests older than the buffer (each triggers a checkpoint).
    pub replay_unservable: u64,
    /// Checkpoints published (`AllBlocksCleared` + the whole announced state).
    pub checkpoints: u64,
    /// Times a tier's backlog overflowed and the tier was re-read instead.
    pub resyncs: u64,
    /// Store events that contradicted the publisher's view (always 0 unless a
    /// store misreports; they are skipped).
    pub anomalies: u64,
    /// Peers connected to the PUB socket.
    pub subscribers: u64,
    /// Store events waiting for the publisher (largest tier backlog, last seen).
    pub backlog: u64,
}

impl EventMetrics {
    /// Read every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            store_events: self.store_events.load(Relaxed),
            events: self.events.load(Relaxed),
            batches: self.batches.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            replay_requests: self.replay_requests.load(Relaxed),
            replay_batches: self.replay_batches.load(Relaxed),
            replay_unservable: self.replay_unservable.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            anomalies: self.anomalies.load(Relaxed),
            subscribers: self.subscribers.load(Relaxed),
            backlog: self.backlog.load(Relaxed),
        }
    }
}

impl MetricsSnapshot {
    /// Prometheus text exposition (`kvtier_events_*`).
    pub fn to_prometheus(&self) -> String {
        let mut e = Exposition::new();
        self.write_prometheus(&mut e);
        e.encode()
    }

    /// Add the publisher's families (`kvtier_events_*`) to `e`.
    pub fn write_prometheus(&self, e: &mut Exposition) {
        let families: [(&str, &str, &str, u64); 13] = [
            (
                "kvtier_events_store_events_total",
                "counter",
                "Store events consumed by the publisher.",
                self.store_events,
            ),
            (
                "kvtier_events_published_total",
                "counter",
                "Router events published.",
                self.events,
            ),
            (
                "kvtier_events_batches_total",
                "counter",
                "Event batches (messages) published.",
                self.batches,
            ),
            (
                "kvtier_events_bytes_total",
                "counter",
                "Payload bytes published.",
                self.bytes,
            ),
            (
                "kvtier_events_dropped_total",
                "counter",
                "Batches dropped at the socket's high-water mark (recoverable through replay).",
                self.dropped,
            ),
            (
                "kvtier_events_replay_requests_total",
                "counter",
                "Replay requests served.",
                self.replay_requests,
            ),
            (
                "kvtier_events_replay_batches_total",
                "counter",
                "Batches re-sent through replay.",
                self.replay_batches,
            ),
            (
                "kvtier_events_replay_unservable_total",
                "counter",
                "Replay requests older than the buffer (answered with a checkpoint).",
                self.replay_unservable,
            ),
            (
                "kvtier_events_checkpoints_total",
                "counter",
                "Checkpoints published.",
                self.checkpoints,
            ),
            (
                "kvtier_events_resyncs_total",
                "counter",
                "Tier backlogs dropped and re-read.",
                self.resyncs,
            ),
            (
                "kvtier_events_anomalies_total",
                "counter",
                "Store events contradicting the published view (skipped).",
                self.anomalies,
            ),
            (
                "kvtier_events_subscribers",
                "gauge",
                "Peers connected to the PUB socket.",
                self.subscribers,
            ),
            (
                "kvtier_events_backlog",
                "gauge",
                "Store events waiting for the publisher.",
                self.backlog,
            ),
        ];
        for (name, kind, help, v) in families {
            match kind {
                "counter" => e.counter(name, help).sample(&[], v),
                _ => e.gauge(name, help).sample(&[], v),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let m = EventMetrics::default();
        m.events.store(5, Relaxed);
        m.dropped.store(2, Relaxed);
        let text = m.snapshot().to_prometheus();
        assert!(text.contains(
            "# TYPE kvtier_events_published_total counter\nkvtier_events_published_total 5\n"
        ));
        assert!(text.contains("kvtier_events_dropped_total 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap();
        }
    }
}
