//! Foreground first ([`kvtier_offload::priority`]): background copies
//! (write-through, the proactive cleaner) wait while a [`Foreground`] guard
//! is held, bounded, in pieces of at most `PIECE_BYTES`; evictions, the
//! flush and the clean stop never wait for them.
//!
//! The runtime is current-thread, so a request's registration queues all
//! its blocks before the write-through worker first runs (one batch).

use kvtier_logical::hash_trace_ids;
use kvtier_logical::{CacheSalt, SequenceHash, Tier};
use kvtier_memory::{BlockShape, HostMemory, Layout, MemcpyEngine};
use kvtier_offload::priority::PIECE_BYTES;
use kvtier_offload::testing::{setup, tier};
use kvtier_offload::{CacheSetup, Foreground, TierMemory, TieredCache, WritePolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 1 MiB blocks: 16 layers, 16 tokens, 8 heads of 128, fp16.
const SHAPE: BlockShape = BlockShape {
    num_layers: 16,
    block_size: 16,
    kv_heads: 8,
    head_dim: 128,
    dtype_bytes: 2,
};

/// Long enough that a test passing within it did not reach the bound.
const LONG: Duration = Duration::from_secs(60);
/// What "at once" means here: far below [`LONG`], far above any copy.
const SOON: Duration = Duration::from_secs(10);

fn hashes(from: u64, n: u64) -> Vec<SequenceHash> {
    hash_trace_ids(CacheSalt(11), &(from..from + n).collect::<Vec<_>>())
}

fn mem(n: usize) -> TierMemory {
    TierMemory::Host(Arc::new(
        HostMemory::new(Layout::contiguous(SHAPE, n).unwrap()).unwrap(),
    ))
}

/// G1 of `g1` and G2 of `g2` 1 MiB host blocks, one copy thread.
fn cache_with(g1: usize, g2: usize, f: impl FnOnce(&mut CacheSetup)) -> TieredCache {
    let mut s = setup(
        tier(Tier::G1, g1, mem(g1)),
        Some(tier(Tier::G2, g2, mem(g2))),
        None,
    );
    s.device_engine = Some(Arc::new(MemcpyEngine::new(1).unwrap()));
    s.queue_depth = 64;
    f(&mut s);
    TieredCache::new(s).unwrap()
}

fn write_through(g1: usize, g2: usize) -> TieredCache {
    cache_with(g1, g2, |s| s.g1_to_g2 = WritePolicy::WriteThrough)
}

/// Store `h` in G1 (bytes: `tag` then the position), then release it.
async fn store(cache: &TieredCache, h: &[SequenceHash], tag: u8) {
    let mut req = cache.request(h);
    let fresh = req.allocate_rest().await.unwrap();
    let done = req
        .write(fresh, |pos, buf| {
            buf.fill(tag);
            buf[0] = pos as u8;
        })
        .await
        .unwrap();
    req.register(done).await.unwrap();
}

fn in_g2(cache: &TieredCache, h: &[SequenceHash]) -> usize {
    let g2 = cache.store(Tier::G2).unwrap();
    g2.contains_all(h).into_iter().filter(|&b| b).count()
}

/// Wait (polling, at most [`SOON`]) until G2 holds every block of `h`;
/// returns how long that took.
async fn until_in_g2(cache: &TieredCache, h: &[SequenceHash]) -> Duration {
    let t = Instant::now();
    while in_g2(cache, h) < h.len() {
        assert!(
            t.elapsed() < SOON,
            "only {} of {} blocks reached G2",
            in_g2(cache, h),
            h.len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

/// `kvtier_path_transfers_total` of the G1 -> G2 path.
fn g1_to_g2_transfers(cache: &TieredCache) -> u64 {
    let text = cache.to_prometheus();
    let line = text
        .lines()
        .find(|l| l.starts_with("kvtier_path_transfers_total{path=\"g1_to_g2\"}"))
        .expect("a G1 -> G2 transfer count");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Read `h` back where it lies (verified when below G1) and check the
/// bytes against what [`store`] wrote with `tag`.
async fn check_bytes(cache: &TieredCache, h: &[SequenceHash], tag: u8) {
    let mut req = cache.request(h);
    let (read, failed) = req
        .read_matched(|pos, bytes| {
            assert_eq!(bytes[0], pos as u8, "block {pos}");
            assert!(bytes[1..].iter().all(|&b| b == tag), "block {pos}");
        })
        .await
        .unwrap();
    assert_eq!((read, failed), (h.len(), 0));
}

#[tokio::test(flavor = "current_thread")]
async fn write_through_yields_while_a_guard_is_held_then_goes_on_after_the_bound() {
    let bound = Duration::from_millis(800);
    let cache = write_through(16, 32);
    cache.set_max_yield(bound);
    let fg: Foreground = cache.foreground();
    let h = hashes(0, 12);
    store(&cache, &h, 7).await;
    let queued = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(in_g2(&cache, &h), 0, "copied while a load was in flight");
    // The guard is still held: the batch goes on once its bound is spent.
    until_in_g2(&cache, &h).await;
    assert!(
        queued.elapsed() >= bound,
        "went on after {:?}",
        queued.elapsed()
    );
    let m = cache.metrics();
    assert_eq!((m.background_yields, m.background_yield_cut), (1, 1));
    assert!(m.background_yield_us >= bound.as_micros() as u64 * 9 / 10);
    // 12 blocks of 1 MiB in pieces of at most PIECE_BYTES.
    let per = (PIECE_BYTES >> 20) as usize;
    assert_eq!(g1_to_g2_transfers(&cache), 12_u64.div_ceil(per as u64));
    let text = cache.to_prometheus();
    assert!(text.contains("kvtier_background_yields_total 1"), "{text}");
    assert!(
        text.contains("kvtier_background_yield_cut_total 1"),
        "{text}"
    );
    assert!(text.contains("kvtier_background_yield_seconds_total "));
    drop(fg);
    // Evict them from G1, then read them from G2, verified.
    store(&cache, &hashes(50, 16), 8).await;
    assert_eq!(
        cache.store(Tier::G1).unwrap().contains_all(&h),
        vec![false; 12]
    );
    check_bytes(&cache, &h, 7).await;
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_copy_goes_on_when_the_last_guard_drops() {
    let cache = write_through(16, 32);
    cache.set_max_yield(LONG);
    let (a, b) = (cache.foreground(), cache.foreground());
    let h = hashes(100, 8);
    store(&cache, &h, 3).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(in_g2(&cache, &h), 0, "copied while a guard was held");
    drop(b);
    until_in_g2(&cache, &h).await;
    let m = cache.metrics();
    assert_eq!((m.background_yields, m.background_yield_cut), (1, 0));
    assert!(m.background_yield_us >= 60_000, "{m:?}");
    check_bytes(&cache, &h, 3).await;
    // Nothing in flight: the next batch does not wait.
    let h2 = hashes(200, 8);
    store(&cache, &h2, 4).await;
    until_in_g2(&cache, &h2).await;
    assert_eq!(cache.metrics().background_yields, 1);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn an_urgent_wait_ends_the_yield() {
    let cache = write_through(16, 32);
    cache.set_max_yield(LONG);
    let _fg = cache.foreground();
    let h = hashes(300, 8);
    store(&cache, &h, 5).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(in_g2(&cache, &h), 0);
    let urgent = cache.urgent();
    until_in_g2(&cache, &h).await;
    assert_eq!(cache.metrics().background_yield_cut, 0);
    // While it is held, new batches do not yield at all.
    let h2 = hashes(400, 8);
    store(&cache, &h2, 6).await;
    until_in_g2(&cache, &h2).await;
    assert_eq!(cache.metrics().background_yields, 1);
    drop(urgent);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn evictions_never_yield_and_are_not_split() {
    // Write-back, no cleaner: the second request evicts the first 8 blocks
    // (8 MiB, more than one piece) while a guard is held.
    let cache = cache_with(8, 32, |_| {});
    cache.set_max_yield(LONG);
    let _fg = cache.foreground();
    let h = hashes(500, 8);
    store(&cache, &h, 1).await;
    let t = Instant::now();
    store(&cache, &hashes(600, 8), 2).await;
    assert!(t.elapsed() < SOON, "the eviction waited {:?}", t.elapsed());
    assert_eq!(in_g2(&cache, &h), 8);
    let m = cache.metrics();
    assert_eq!((m.eviction_copies, m.background_yields), (8, 0));
    assert_eq!(g1_to_g2_transfers(&cache), 1);
    check_bytes(&cache, &h, 1).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_cleaner_yields_and_an_eviction_waiting_for_it_ends_the_yield() {
    let cache = cache_with(8, 32, |s| s.clean_ahead = 8);
    cache.set_max_yield(LONG);
    let _fg = cache.foreground();
    let h = hashes(700, 8);
    store(&cache, &h, 9).await; // released: the cleaner copies them ahead
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(in_g2(&cache, &h), 0, "cleaned while a load was in flight");
    // Evicting them waits for the cleaner's copies of their slots: that
    // wait is urgent, so the cleaner stops yielding and the store goes on.
    let t = Instant::now();
    store(&cache, &hashes(800, 8), 10).await;
    assert!(t.elapsed() < SOON, "the eviction waited {:?}", t.elapsed());
    assert_eq!(in_g2(&cache, &h), 8);
    assert_eq!(cache.metrics().background_yield_cut, 0);
    check_bytes(&cache, &h, 9).await;
}

#[tokio::test(flavor = "current_thread")]
async fn close_and_flush_with_a_guard_held_do_not_wait_for_the_bound() {
    let cache = write_through(16, 32);
    cache.set_max_yield(LONG);
    let fg = cache.foreground();
    let h = hashes(900, 16);
    store(&cache, &h, 2).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(in_g2(&cache, &h), 0);
    let t = Instant::now();
    tokio::time::timeout(SOON, cache.close())
        .await
        .expect("close hung behind a foreground guard")
        .unwrap();
    assert!(t.elapsed() < SOON);
    // The write-through worker finished its queue before the stop.
    assert_eq!(in_g2(&cache, &h), 16);
    drop(fg);

    // The flush (write-back, cleaner on) with a guard held.
    let cache = cache_with(16, 32, |s| s.clean_ahead = 4);
    cache.set_max_yield(LONG);
    let _fg = cache.foreground();
    let h = hashes(1000, 16);
    store(&cache, &h, 4).await;
    let flushed = tokio::time::timeout(SOON, cache.flush_down())
        .await
        .expect("flush hung behind a foreground guard");
    assert!(flushed <= 16);
    assert_eq!(in_g2(&cache, &h), 16);
    check_bytes(&cache, &h, 4).await;
    tokio::time::timeout(SOON, cache.close())
        .await
        .expect("close hung behind a foreground guard")
        .unwrap();
}
