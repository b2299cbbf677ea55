//! RemoteTier against a real S3 protocol server on 127.0.0.1 (s3s-fs) and
//! against file://.

use kvtier_logical::SequenceHash;
use kvtier_offload::{SharedBlock, SharedTier};
use kvtier_remote::testing::S3Server;
use kvtier_remote::{Backpressure, RemoteConfig, RemoteTier};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::time::Duration;

const SALT: u64 = 0x5a17;
const FP: u64 = 0xf1f1;

fn block(i: u128) -> SharedBlock {
    let bytes: Vec<u8> = (0..512u32).map(|k| (k as u128 * 7 + i) as u8).collect();
    SharedBlock {
        hash: SequenceHash(i),
        checksum: xxhash_rust::xxh3::xxh3_64(&bytes),
        bytes,
    }
}

fn hashes(r: std::ops::Range<u128>) -> Vec<SequenceHash> {
    r.map(SequenceHash).collect()
}

async fn open(cfg: RemoteConfig) -> Arc<RemoteTier> {
    let (store, prefix) = cfg.open_store().unwrap();
    RemoteTier::open_with_store(store, prefix, cfg, SALT, FP)
        .await
        .unwrap()
}

/// An S3 server with bucket `kvtier` over a fresh directory, and a config
/// of prefix `p` on it that waits for room instead of skipping a write.
async fn server() -> (tempfile::TempDir, S3Server, RemoteConfig) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path(), &["kvtier"]).await.unwrap();
    let mut cfg = server.config("kvtier", "p");
    cfg.backpressure = Backpressure::Wait;
    (dir, server, cfg)
}

/// `a` stores blocks `0..n`, then closes.
async fn store_and_close(a: Arc<RemoteTier>, n: u128) -> Arc<RemoteTier> {
    for i in 0..n {
        a.store(block(i)).await;
    }
    a.close().await;
    a
}

/// A node that stored blocks `0..n` and closed.
async fn stored(cfg: RemoteConfig, n: u128) -> Arc<RemoteTier> {
    store_and_close(open(cfg).await, n).await
}

async fn count_objects(store: &dyn ObjectStore, dir: &Path) -> usize {
    use futures::StreamExt;
    store
        .list(Some(dir))
        .filter(|m| futures::future::ready(m.is_ok()))
        .count()
        .await
}

async fn write_read_round_trip(cfg: RemoteConfig) {
    let mut cfg = cfg;
    cfg.backpressure = Backpressure::Wait;
    cfg.in_flight = 4;
    let a = open(cfg.clone()).await;
    for i in 0..20 {
        assert!(a.wants(SequenceHash(i)));
        a.store(block(i)).await;
    }
    a.close().await;
    let s = a.stats();
    assert_eq!(s.objects_written, 20, "{s:?}");
    assert_eq!(s.write_skipped, 0);
    assert_eq!(a.matched(&hashes(0..25)), 20);
    // Another node: its index is built by listing.
    let b = open(cfg).await;
    assert_eq!(b.matched(&hashes(0..25)), 20);
    assert!(!b.wants(SequenceHash(3)));
    let got = b.load(hashes(0..25)).await;
    assert_eq!(got.len(), 20);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, block(i as u128));
    }
    assert_eq!(b.stats().objects_read, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_read_round_trip(RemoteConfig::new(format!(
        "file://{}/g4",
        dir.path().display()
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path(), &["kvtier"]).await.unwrap();
    write_read_round_trip(server.config("kvtier", "pre/fix")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_leave_one_object_each() {
    let (_dir, server, cfg) = server().await;
    let a = open(cfg.clone()).await;
    let b = open(cfg).await;
    let ta = tokio::spawn(store_and_close(a.clone(), 50));
    let tb = tokio::spawn(store_and_close(b.clone(), 50));
    ta.await.unwrap();
    tb.await.unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.objects_written, 50, "{sa:?}");
    assert_eq!(sb.objects_written, 50, "{sb:?}");
    assert_eq!(sa.write_failures + sb.write_failures, 0);
    let store = server.object_store("kvtier");
    assert_eq!(count_objects(&*store, a.dir()).await, 50);
    let got = a.load(hashes(0..50)).await;
    assert_eq!(got.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_objects_are_misses_and_self_heal() {
    let (_dir, server, cfg) = server().await;
    stored(cfg.clone(), 8).await;
    let b = open(cfg).await;
    let store = server.object_store("kvtier");
    let key = |i: u128| kvtier_remote::format::object_key(b.dir(), SequenceHash(i));
    // 1: deleted; 3: truncated; 5: other bytes; 6: another block's object.
    store.delete(&key(1)).await.unwrap();
    let full = store.get(&key(3)).await.unwrap().bytes().await.unwrap();
    store
        .put(&key(3), PutPayload::from(full.slice(..full.len() - 10)))
        .await
        .unwrap();
    let mut other = full.to_vec();
    let n = other.len();
    other[n - 1] ^= 0xff;
    store.put(&key(5), PutPayload::from(other)).await.unwrap();
    let seven = store.get(&key(7)).await.unwrap().bytes().await.unwrap();
    store.put(&key(6), PutPayload::from(seven)).await.unwrap();
    for (start, want) in [
        (0u128, 1usize),
        (1, 0),
        (2, 1),
        (3, 0),
        (4, 1),
        (5, 0),
        (6, 0),
        (7, 1),
    ] {
        let got = b.load(vec![SequenceHash(start)]).await;
        assert_eq!(got.len(), want, "block {start}");
        for g in got {
            assert_eq!(g, block(start), "wrong bytes served for {start}");
        }
    }
    let s = b.stats();
    assert_eq!(s.self_healed, 4, "{s:?}");
    assert_eq!(s.read_failures, 4);
    assert_eq!(b.matched(&hashes(0..8)), 1);
    // Bad objects were deleted: the blocks can be written again.
    assert!(b.wants(SequenceHash(5)));
    b.store(block(5)).await;
    b.close().await;
    assert_eq!(b.load(vec![SequenceHash(5)]).await, vec![block(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_drops_entries_deleted_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RemoteConfig::new(format!("file://{}/g4", dir.path().display()));
    let mut w = cfg.clone();
    w.backpressure = Backpressure::Wait;
    stored(w, 10).await;
    let b = open(cfg.clone()).await;
    assert_eq!(b.index_len(), 10);
    let (store, _) = cfg.open_store().unwrap();
    for i in 0..4 {
        store
            .delete(&kvtier_remote::format::object_key(b.dir(), SequenceHash(i)))
            .await
            .unwrap();
    }
    b.refresh().await.unwrap();
    assert_eq!(b.index_len(), 6);
    assert_eq!(b.stats().self_healed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_backpressure_never_queues() {
    let (_dir, _server, mut cfg) = server().await;
    cfg.backpressure = Backpressure::Skip;
    cfg.in_flight = 1;
    let a = open(cfg).await;
    let mut offered = 0;
    for i in 0..200 {
        if a.wants(SequenceHash(i)) {
            offered += 1;
            a.store(block(i)).await;
        }
    }
    a.close().await;
    let s = a.stats();
    assert_eq!(s.objects_written + s.write_skipped, 200, "{s:?}");
    assert!(s.write_skipped > 0, "{s:?} ({offered} offered)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_eviction_keeps_under_budget() {
    let (_dir, server, mut cfg) = server().await;
    let obj = (64 + 512) as u64;
    cfg.capacity = 40 * obj;
    let a = open(cfg).await;
    let store = server.object_store("kvtier");
    let mut max_seen = 0;
    for i in 0..200 {
        a.store(block(i)).await;
        if i % 20 == 0 {
            max_seen = max_seen.max(count_objects(&*store, a.dir()).await);
        }
    }
    a.close().await;
    let s = a.stats();
    let n = count_objects(&*store, a.dir()).await;
    assert!(max_seen <= 40 && n <= 40, "max {max_seen}, end {n}, {s:?}");
    assert!(s.evicted >= 160 - 40, "{s:?}");
    assert_eq!(s.objects_written, 200, "{s:?}");
    // Recent blocks survive, the oldest went.
    assert_eq!(a.matched(&[SequenceHash(199)]), 1);
    assert_eq!(a.matched(&[SequenceHash(0)]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_costs_misses_within_the_deadline() {
    let (_dir, mut server, mut cfg) = server().await;
    cfg.deadline_ms = 300;
    cfg.request_timeout_ms = 500;
    cfg.retries = 1;
    let a = open(cfg).await;
    for i in 0..10 {
        a.store(block(i)).await;
    }
    a.flush().await;
    server.stop();
    let t = std::time::Instant::now();
    let got = a.load(hashes(0..10)).await;
    assert!(got.is_empty());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    for i in 10..14 {
        a.store(block(i)).await;
    }
    server.restart().await.unwrap();
    // Used again once back (the client reconnects; bounded attempts).
    let mut got = Vec::new();
    for _ in 0..20 {
        got = a.load(hashes(0..10)).await;
        if got.len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 10);
    a.close().await;
    let s = a.stats();
    assert!(s.read_failures >= 1, "{s:?}");
    assert_eq!(s.self_healed, 0, "{s:?}");
    assert_eq!(s.objects_written + s.write_failures, 14, "{s:?}");
}
