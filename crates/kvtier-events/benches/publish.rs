//! The cost of KV events, without sockets: what emitting events costs a
//! one-tier replay of the synthetic trace (`store_replay`), and the
//! publisher's encoder thread throughput on those events (`publish`:
//! set-semantics translation, then msgpack encoding).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvtier_events::view::Translator;
use kvtier_events::{encode_batch, EventBatch, Low64, WireFormat};
use kvtier_logical::{hash_trace_ids, CacheSalt, SingleTierReplay};
use kvtier_logical::{BlockStore, Event, SequenceHash, StoreConfig, Tier};
use std::time::{Duration, Instant};

const TRACE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/mooncake_synthetic_trace.jsonl"
));

fn trace() -> Vec<Vec<SequenceHash>> {
    TRACE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ids: Vec<u64> = v["hash_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            hash_trace_ids(CacheSalt(0), &ids)
        })
        .collect()
}

/// Replay `trace` into a fresh LRU 2,000-block store, with a subscriber if
/// `subscribed`; returns the replay's time (store creation, and collecting
/// and freeing the events, are not timed) and the events received.
fn replay(trace: &[Vec<SequenceHash>], subscribed: bool) -> (Duration, Vec<Event>) {
    let store = BlockStore::new(StoreConfig::new(Tier::G1, 2000)).unwrap();
    let rx = subscribed.then(|| store.subscribe());
    let mut replay = SingleTierReplay::new(store.clone());
    let t = Instant::now();
    for r in trace {
        replay.request(r).unwrap();
    }
    let took = t.elapsed();
    (
        took,
        rx.map(|rx| rx.try_iter().collect()).unwrap_or_default(),
    )
}

/// Translate and encode everything in batches of `batch` store events;
/// returns (router events, payload bytes).
fn publish(events: &[Event], batch: usize, format: WireFormat) -> (u64, u64) {
    let mut t = Translator::new(Box::new(Low64), 16, &["GPU".to_string()]);
    let mut out = Vec::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    for chunk in events.chunks(batch) {
        for ev in chunk {
            t.apply(0, &ev.kind, &mut out);
        }
        let b = EventBatch {
            ts: 0.0,
            events: std::mem::take(&mut out),
            data_parallel_rank: Some(0),
        };
        n += b.events.len() as u64;
        bytes += encode_batch(&b, format).len() as u64;
    }
    (n, bytes)
}

fn bench(c: &mut Criterion) {
    let trace = trace();
    // The cache side: what emitting events costs the replay itself.
    let mut g = c.benchmark_group("store_replay");
    g.throughput(Throughput::Elements(
        trace.iter().map(|r| r.len().min(2000) as u64).sum(),
    ));
    for (name, subscribed) in [("no_subscriber", false), ("subscribed", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| replay(&trace, subscribed).0).sum())
        });
    }
    g.finish();
    let events = replay(&trace, true).1;
    let (wire, bytes) = publish(&events, 256, WireFormat::Map);
    eprintln!(
        "{} store events -> {wire} router events, {bytes} payload bytes",
        events.len()
    );
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(wire));
    for (name, batch, format) in [
        ("map_batch256", 256, WireFormat::Map),
        ("array_batch256", 256, WireFormat::Array),
        ("map_batch1", 1, WireFormat::Map),
        ("map_batch4096", 4096, WireFormat::Map),
    ] {
        g.bench_function(name, |b| b.iter(|| publish(&events, batch, format)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
