//! Criterion benches of the logical layer (one tier, no data): the block
//! store's batch calls one by one, the whole-trace replay, and two threads
//! replaying against one shared store.
//!
//! Run: `cargo bench --bench logical`. Each figure is per batch of `CHAIN`
//! blocks (throughput in blocks/s) or per whole trace (121,877 looked-up
//! blocks for the embedded Mooncake trace).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, Bencher, BenchmarkGroup, Criterion, Throughput,
};
use kvtier_harness::trace::Trace;
use kvtier_logical::hash_trace_ids;
use kvtier_logical::{replay, SingleTierReplay};
use kvtier_logical::{
    BlockSpec, BlockStore, CacheSalt, CompleteBlock, ImmutableBlock, MutableBlock, PolicyKind,
    SequenceHash, StoreConfig, Tier,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Tier size, as in `compare.sh`.
const CAPACITY: usize = 6000;
/// Blocks per batch call in the micro benches (about the trace's mean
/// request length).
const CHAIN: usize = 32;

fn lru_store(capacity: usize) -> BlockStore {
    BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(PolicyKind::Lru)).unwrap()
}

/// A chain of `CHAIN` hashes, distinct for each `n`.
fn chain(n: u64) -> Vec<SequenceHash> {
    let ids: Vec<u64> = (0..CHAIN as u64).map(|i| n * 1_000_003 + i).collect();
    hash_trace_ids(CacheSalt(7), &ids)
}

fn specs(hashes: &[SequenceHash]) -> impl Iterator<Item = BlockSpec> + '_ {
    hashes.iter().enumerate().map(move |(i, &hash)| BlockSpec {
        hash,
        parent: if i == 0 {
            SequenceHash::ROOT
        } else {
            hashes[i - 1]
        },
        position: i as u32,
    })
}

/// The blocks of `fresh`, completed as the chain `hashes`.
fn complete<'a>(
    fresh: &'a mut Vec<MutableBlock>,
    hashes: &'a [SequenceHash],
) -> impl Iterator<Item = CompleteBlock> + 'a {
    fresh
        .drain(..)
        .zip(specs(hashes))
        .map(|(b, s)| b.complete(s))
}

/// Allocate, complete and register a chain; returns the guards.
fn put(store: &BlockStore, hashes: &[SequenceHash], out: &mut Vec<ImmutableBlock>) {
    let mut fresh = Vec::with_capacity(hashes.len());
    store.allocate_into(hashes.len(), &mut fresh, None).unwrap();
    store.register_into(complete(&mut fresh, hashes), out);
}

/// A store whose every slot holds an inactive block (so allocation evicts),
/// and the chains it holds.
fn full_store() -> (BlockStore, u64) {
    let store = lru_store(CAPACITY);
    let mut held = Vec::new();
    let mut n = 0;
    while store.metrics().free as usize >= CHAIN {
        put(&store, &chain(n), &mut held);
        store.release(held.drain(..).rev());
        n += 1;
    }
    (store, n)
}

/// Criterion's custom timing over `step`, which returns how long its timed
/// part took (set-up and clean-up around it stay untimed).
fn per_iter(b: &mut Bencher, mut step: impl FnMut() -> Duration) {
    b.iter_custom(|iters| (0..iters).map(|_| step()).sum())
}

fn config<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

/// A group of per-`CHAIN` micro benches and a full store for it.
fn micro<'a>(c: &'a mut Criterion, name: &str) -> (BenchmarkGroup<'a, WallTime>, BlockStore, u64) {
    let mut g = config(c, name);
    g.throughput(Throughput::Elements(CHAIN as u64));
    let (store, n) = full_store();
    (g, store, n)
}

/// One timed match of the whole of `hashes` (then released, untimed).
#[inline(always)]
fn timed_match(
    store: &BlockStore,
    hashes: &[SequenceHash],
    out: &mut Vec<ImmutableBlock>,
) -> Duration {
    let start = Instant::now();
    let k = store.match_prefix_into(black_box(hashes), out);
    let t = start.elapsed();
    assert_eq!(k, CHAIN);
    store.release(out.drain(..).rev());
    t
}

fn bench_match(c: &mut Criterion) {
    let mut g = config(c, "match");
    g.throughput(Throughput::Elements(CHAIN as u64));

    // Active hits: the chain stays held by another guard the whole time.
    let store = lru_store(CAPACITY);
    let hashes = chain(1);
    let mut keep = Vec::new();
    put(&store, &hashes, &mut keep);
    let mut out = Vec::with_capacity(CHAIN);
    g.bench_function("active_hits", |b| {
        per_iter(b, || timed_match(&store, &hashes, &mut out))
    });
    drop(keep);

    // Inactive hits: every match resurrects the chain from the LRU.
    let (store, n) = full_store();
    let hashes = chain(n - 1);
    g.bench_function("inactive_hits", |b| {
        per_iter(b, || timed_match(&store, &hashes, &mut out))
    });
}

/// A micro bench over a full store: each step takes the next new chain,
/// runs `timed` (which fills `held` with the chain registered and returns
/// the time of its timed part), then releases the chain (untimed).
fn chain_bench(
    c: &mut Criterion,
    group: &str,
    name: &str,
    mut timed: impl FnMut(
        &BlockStore,
        &[SequenceHash],
        &mut Vec<MutableBlock>,
        &mut Vec<ImmutableBlock>,
    ) -> Duration,
) {
    let (mut g, store, mut n) = micro(c, group);
    let (mut fresh, mut held) = (Vec::with_capacity(CHAIN), Vec::with_capacity(CHAIN));
    g.bench_function(name, |b| {
        per_iter(b, || {
            let hashes = chain(n);
            n += 1;
            let t = timed(&store, &hashes, &mut fresh, &mut held);
            store.release(held.drain(..).rev());
            t
        })
    });
}

fn bench_allocate(c: &mut Criterion) {
    chain_bench(
        c,
        "allocate",
        "with_eviction",
        |store, hashes, fresh, held| {
            let start = Instant::now();
            store.allocate_into(CHAIN, fresh, None).unwrap();
            let t = start.elapsed();
            // Refill (untimed) so the next allocation evicts again.
            store.register_into(complete(fresh, hashes), held);
            t
        },
    );
}

fn bench_register(c: &mut Criterion) {
    chain_bench(c, "register", "chain", |store, hashes, fresh, held| {
        store.allocate_into(CHAIN, fresh, None).unwrap();
        let blocks: Vec<_> = complete(fresh, hashes).collect();
        let start = Instant::now();
        store.register_into(blocks, held);
        start.elapsed()
    });
}

fn bench_release(c: &mut Criterion) {
    let mut g = config(c, "release");
    g.throughput(Throughput::Elements(CHAIN as u64));
    let (store, n) = full_store();
    let hashes = chain(n - 1);
    let mut held = Vec::with_capacity(CHAIN);
    g.bench_function("batch_tail_first", |b| {
        per_iter(b, || {
            store.match_prefix_into(&hashes, &mut held);
            let start = Instant::now();
            store.release(held.drain(..).rev());
            start.elapsed()
        })
    });
}

fn trace_requests() -> Vec<Vec<SequenceHash>> {
    let hashed = Trace::embedded().hashed(CacheSalt(0));
    hashed.iter().map(|r| r.to_vec()).collect()
}

fn looked_up(requests: &[Vec<SequenceHash>]) -> u64 {
    requests.iter().map(|r| r.len().min(CAPACITY) as u64).sum()
}

fn bench_replay(c: &mut Criterion) {
    let requests = trace_requests();
    let mut g = config(c, "replay");
    g.throughput(Throughput::Elements(looked_up(&requests)));
    g.bench_function("trace_lru_6000", |b| {
        b.iter_batched(
            || lru_store(CAPACITY),
            |store| {
                let stats = replay(&store, &requests).unwrap();
                assert_eq!(stats.hits, 38_027);
                store
            },
            BatchSize::PerIteration,
        )
    });
    // The default policy on the same trace, in the same run; its replay
    // time is meant to stay within 1.5x LRU's (docs/policies.md).
    let default = PolicyKind::default();
    g.bench_function(format!("trace_{}_6000", default.name()), |b| {
        b.iter_batched(
            || BlockStore::new(StoreConfig::new(Tier::G1, CAPACITY).with_policy(default)).unwrap(),
            |store| {
                let stats = replay(&store, &requests).unwrap();
                assert!(stats.hits > 38_027, "the default beats LRU here");
                store
            },
            BatchSize::PerIteration,
        )
    });
}

/// Two threads each replay the whole trace against one shared store, vs one
/// thread replaying it once; throughput counts every thread's blocks.
fn bench_contention(c: &mut Criterion) {
    let requests = trace_requests();
    let blocks = looked_up(&requests);
    let mut g = config(c, "contention");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(blocks * threads as u64));
        g.bench_function(format!("replay_{threads}_thread"), |b| {
            per_iter(b, || {
                let store = lru_store(CAPACITY);
                let barrier = std::sync::Barrier::new(threads + 1);
                let requests = &requests;
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let store = store.clone();
                        let barrier = &barrier;
                        s.spawn(move || {
                            let mut r = SingleTierReplay::new(store);
                            barrier.wait();
                            for req in requests {
                                r.request(req).unwrap();
                            }
                            black_box(r.stats());
                        });
                    }
                    barrier.wait();
                    let start = Instant::now();
                    // Leaving the scope joins every thread.
                    start
                })
                .elapsed()
            })
        });
    }
}

criterion_group!(
    benches,
    bench_match,
    bench_allocate,
    bench_register,
    bench_release,
    bench_replay,
    bench_contention
);
criterion_main!(benches);
