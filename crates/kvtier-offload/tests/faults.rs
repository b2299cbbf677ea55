//! Fault tests of the offload engine: corrupted disk bytes are detected and
//! recomputed (never served), failing disk writes degrade to dropping blocks,
//! cancelled requests leak no slot, write-through fills lower tiers.

use kvtier_disk::{DiskCopyEngine, DiskIo, DiskMemory, OpenMode};
use kvtier_logical::hash_trace_ids;
use kvtier_logical::{CacheSalt, SequenceHash, StoreConfig, Tier};
use kvtier_memory::testing::flip_byte;
use kvtier_memory::{
    BlockShape, CopyEngine, CopyError, CopyResult, HostMemory, Layout, MemcpyEngine, Memory,
    MemoryKind, MockDeviceMemory, Transfer,
};
use kvtier_offload::testing::setup;
use kvtier_offload::{CacheSetup, TierMemory, TierSetup, TieredCache, WritePolicy};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

fn shape() -> BlockShape {
    BlockShape::tiny() // 512 bytes per block
}

fn fill(h: SequenceHash, buf: &mut [u8]) {
    let mut x = h.0 as u64;
    for (i, b) in buf.iter_mut().enumerate() {
        if i % 8 == 0 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
        *b = (x >> ((i % 8) * 8)) as u8;
    }
}

fn expected(h: SequenceHash, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(h, &mut v);
    v
}

/// Wraps an engine and fails copies into disk memory while `fail` is set.
struct FailingDiskWrites {
    inner: Arc<dyn CopyEngine>,
    fail: AtomicBool,
    failed: AtomicU64,
}

impl CopyEngine for FailingDiskWrites {
    fn name(&self) -> &'static str {
        "failing-disk-writes"
    }
    fn copy_blocks(&self, src: &Memory, dst: &Memory, pairs: &[(usize, usize)]) -> CopyResult {
        if dst.kind() == MemoryKind::Disk && self.fail.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Ok(Transfer::ready(Err(CopyError::Io(
                "injected: no space left on device".into(),
            ))));
        }
        self.inner.copy_blocks(src, dst, pairs)
    }
}

struct Rig {
    cache: TieredCache,
    g3_file: std::path::PathBuf,
    disk_engine: Arc<FailingDiskWrites>,
    _dir: tempfile::TempDir,
}

fn rig(g1: usize, g2: usize, g3: usize, g1_mock: bool, write: WritePolicy) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let g3_file = dir.path().join("g3.blocks");
    let l = |n| Layout::contiguous(shape(), n).unwrap();
    let g1_mem = if g1_mock {
        TierMemory::Device(Arc::new(MockDeviceMemory::new(l(g1)).unwrap()))
    } else {
        TierMemory::Host(Arc::new(HostMemory::new(l(g1)).unwrap()))
    };
    let disk = DiskMemory::open(&g3_file, l(g3), OpenMode::CreateNew).unwrap();
    let disk_engine = Arc::new(FailingDiskWrites {
        inner: Arc::new(DiskCopyEngine::new(DiskIo::default(), 2).unwrap()),
        fail: AtomicBool::new(false),
        failed: AtomicU64::new(0),
    });
    // The stores keep their default policy.
    let t = |tier, n, memory| TierSetup {
        store: StoreConfig::new(tier, n),
        memory,
    };
    let g2_mem = TierMemory::Host(Arc::new(HostMemory::new(l(g2)).unwrap()));
    let g1 = t(Tier::G1, g1, g1_mem);
    let g2 = t(Tier::G2, g2, g2_mem);
    let g3 = t(Tier::G3, g3, TierMemory::Host(Arc::new(disk)));
    let cache = TieredCache::new(CacheSetup {
        device_engine: Some(Arc::new(MemcpyEngine::new(2).unwrap())),
        disk_engine: Some(disk_engine.clone()),
        g1_to_g2: write,
        g2_to_g3: write,
        ..setup(g1, Some(g2), Some(g3))
    })
    .unwrap();
    Rig {
        cache,
        g3_file,
        disk_engine,
        _dir: dir,
    }
}

/// One request: returns (hits, served blocks whose bytes were wrong).
async fn request(cache: &TieredCache, ids: &[u64]) -> (usize, usize) {
    let hashes = hash_trace_ids(CacheSalt(9), ids);
    let mut req = cache.request(&hashes);
    req.onboard().await.unwrap();
    let k = req.held();
    let bb = cache.block_bytes() as usize;
    let mut wrong = 0;
    let served: Vec<usize> = (0..k).collect();
    req.read_back(&served, |pos, bytes| {
        if bytes != expected(hashes[pos], bb) {
            wrong += 1;
        }
    })
    .await
    .unwrap();
    let fresh = req.allocate_rest().await.unwrap();
    let written = req
        .write(fresh, |pos, buf| fill(hashes[pos], buf))
        .await
        .unwrap();
    req.register(written).await.unwrap();
    assert_eq!(req.held(), hashes.len());
    (k, wrong) // the request drops here: released tail first
}

fn assert_no_leak(cache: &TieredCache) {
    for t in Tier::ALL {
        let s = cache.store(t).unwrap();
        s.check_invariants().unwrap();
        let m = s.metrics();
        assert_eq!(m.in_use, 0, "{t} still has blocks in use");
        assert_eq!(m.free + m.inactive, m.capacity, "{t}");
    }
}

fn g3_slot(cache: &TieredCache, h: SequenceHash) -> usize {
    let g3 = cache.store(Tier::G3).unwrap();
    g3.peek(&[h])[0].expect("block is in G3").0 as usize
}

#[tokio::test(flavor = "current_thread")]
async fn corrupted_disk_block_is_recomputed_never_served() {
    for mock in [false, true] {
        let r = rig(4, 4, 64, mock, WritePolicy::WriteBack);
        let a: Vec<u64> = (0..3).collect();
        request(&r.cache, &a).await;
        // Push `a` out of G1 and G2 into G3 only.
        for p in 0..4u64 {
            request(&r.cache, &[100 + p * 10, 101 + p * 10, 102 + p * 10]).await;
        }
        let h = hash_trace_ids(CacheSalt(9), &a);
        assert!(r
            .cache
            .store(Tier::G2)
            .unwrap()
            .contains_all(&h)
            .iter()
            .all(|p| !p));
        let bb = r.cache.block_bytes();
        let slot = g3_slot(&r.cache, h[1]);
        flip_byte(&r.g3_file, slot as u64 * bb + 7, 0x40);

        let (hits, wrong) = request(&r.cache, &a).await;
        assert_eq!(hits, 1, "the prefix is cut at the corrupted block");
        assert_eq!(wrong, 0, "no wrong byte is ever served");
        let m = r.cache.metrics();
        assert_eq!(m.verify_failures, 1);
        // The corrupted copy was withdrawn; the recomputed block is good.
        let (hits, wrong) = request(&r.cache, &a).await;
        assert_eq!((hits, wrong), (3, 0));
        assert_eq!(r.cache.metrics().verify_failures, 1);
        r.cache.close().await.unwrap();
        assert_no_leak(&r.cache);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn failing_disk_writes_drop_blocks_and_the_run_completes() {
    let r = rig(4, 4, 64, true, WritePolicy::WriteBack);
    r.disk_engine.fail.store(true, Ordering::SeqCst);
    let mut wrong_total = 0;
    for p in 0..20u64 {
        let (_, wrong) = request(&r.cache, &[p % 7, 1000 + p]).await;
        wrong_total += wrong;
    }
    let m = r.cache.metrics();
    assert!(r.disk_engine.failed.load(Ordering::SeqCst) > 0);
    assert!(m.offload_errors > 0);
    assert!(m.dropped_blocks > 0);
    assert_eq!(m.verify_failures, 0);
    assert_eq!(wrong_total, 0);
    assert_eq!(
        r.cache.store(Tier::G3).unwrap().metrics().inactive,
        0,
        "nothing registered in G3"
    );
    // The disk comes back: offloads to G3 work again.
    r.disk_engine.fail.store(false, Ordering::SeqCst);
    for p in 0..20u64 {
        request(&r.cache, &[2000 + p, 3000 + p]).await;
    }
    assert!(r.cache.store(Tier::G3).unwrap().metrics().inactive > 0);
    r.cache.close().await.unwrap();
    assert_no_leak(&r.cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_copies_down_without_eviction() {
    let r = rig(16, 16, 64, true, WritePolicy::WriteThrough);
    request(&r.cache, &[1, 2, 3]).await;
    r.cache.close().await.unwrap(); // drains the queues
    let h = hash_trace_ids(CacheSalt(9), &[1, 2, 3]);
    assert_eq!(
        r.cache.store(Tier::G2).unwrap().contains_all(&h),
        vec![true; 3]
    );
    assert_eq!(
        r.cache.store(Tier::G3).unwrap().contains_all(&h),
        vec![true; 3]
    );
    assert_no_leak(&r.cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_selective_skips_one_hit_wonders() {
    let selective = WritePolicy::WriteThroughSelective { min_seen: 2 };
    let r = rig(16, 16, 64, true, selective);
    request(&r.cache, &[1, 2]).await; // seen once: not copied
    request(&r.cache, &[1, 2, 3]).await; // 1, 2 seen twice; 3 once
    r.cache.close().await.unwrap();
    let g2 = r.cache.store(Tier::G2).unwrap();
    let h = hash_trace_ids(CacheSalt(9), &[1, 2, 3]);
    assert_eq!(
        g2.contains_all(&h),
        vec![false, false, false],
        "registered before their second sighting"
    );
    assert_no_leak(&r.cache);

    // A block recomputed after its second sighting is copied down.
    let r = rig(16, 16, 64, true, selective);
    request(&r.cache, &[5]).await;
    for i in 0..20u64 {
        request(&r.cache, &[200 + i]).await; // evicts [5] from G1 (dropped: not selected)
    }
    let h5 = hash_trace_ids(CacheSalt(9), &[5]);
    assert_eq!(
        r.cache.store(Tier::G2).unwrap().contains_all(&h5),
        vec![false]
    );
    let (hits, _) = request(&r.cache, &[5]).await;
    assert_eq!(hits, 0);
    r.cache.close().await.unwrap();
    assert_eq!(
        r.cache.store(Tier::G2).unwrap().contains_all(&h5),
        vec![true]
    );
    assert!(r.cache.metrics().dropped_blocks >= 1);
    assert_no_leak(&r.cache);
}

#[test]
fn write_through_selective_refuses_uncountable_min_seen() {
    let t = |tier| TierSetup {
        store: StoreConfig::new(tier, 8),
        memory: TierMemory::None,
    };
    let with_min_seen = |min_seen| CacheSetup {
        g2_to_g3: WritePolicy::WriteThroughSelective { min_seen },
        staging_blocks: 0,
        ..setup(t(Tier::G1), Some(t(Tier::G2)), None)
    };
    let err = TieredCache::new(with_min_seen(16))
        .err()
        .expect("16 sightings cannot be counted");
    assert!(err.to_string().contains("min_seen 16"), "{err}");
    // 15 is accepted (write-through workers are spawned on a runtime).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert!(TieredCache::new(with_min_seen(15)).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Requests cancelled at random points (mid-lookup, mid-copy, mid-write)
    /// leak no slot: once in-flight copies land, every tier's
    /// free + inactive == capacity and the invariants hold.
    #[test]
    fn cancellation_leaks_no_slot(
        reqs in prop::collection::vec((0u64..6, 1usize..6, 0u32..4), 5..30),
        cancel_mask in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let r = rig(8, 8, 64, true, WritePolicy::WriteBack);
            let mut handles = Vec::new();
            for (i, (prefix, len, delay)) in reqs.iter().enumerate() {
                let ids: Vec<u64> = (0..*len as u64).map(|j| prefix * 100 + j).collect();
                let cache = r.cache.clone();
                let h = tokio::spawn(async move { request(&cache, &ids).await });
                if cancel_mask >> (i % 64) & 1 == 1 {
                    for _ in 0..*delay {
                        tokio::task::yield_now().await;
                    }
                    h.abort();
                } else {
                    handles.push(h);
                }
            }
            for h in handles {
                let _ = h.await;
            }
            r.cache.close().await.unwrap();
            // In-flight copies of cancelled requests finish on unpin threads.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let busy = Tier::ALL.iter().any(|t| r.cache.store(*t).unwrap().metrics().in_use > 0);
                if !busy || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert_no_leak(&r.cache);
        });
    }
}
