//! The request protocol ([`RequestSequence`]), the typed setup errors and the
//! clean stop ([`TieredCache::close`]).

use kvtier_logical::hash_trace_ids;
use kvtier_logical::{CacheSalt, SequenceHash, SlotId, Tier};
use kvtier_memory::{BlockShape, HostMemory, Layout, MemcpyEngine};
use kvtier_offload::testing::{host, mock, setup, tier};
use kvtier_offload::{
    CacheSetup, DurableEntry, G3Journal, JournalError, OffloadError, SetupError, TierMemory,
    TieredCache, WritePolicy,
};
use parking_lot::Mutex;
use std::sync::Arc;

fn hashes(ids: &[u64]) -> Vec<SequenceHash> {
    hash_trace_ids(CacheSalt(3), ids)
}

fn logical(g1: usize, g2: usize) -> TieredCache {
    let g2 = (g2 > 0).then(|| tier(Tier::G2, g2, TierMemory::None));
    TieredCache::new(setup(tier(Tier::G1, g1, TierMemory::None), g2, None)).unwrap()
}

/// Lookup, onboard, allocate, write, register, release: then everything hits.
async fn compute(cache: &TieredCache, h: &[SequenceHash]) -> u64 {
    let mut req = cache.request(h);
    let hits = req.onboard().await.unwrap().hits();
    let fresh = req.allocate_rest().await.unwrap();
    assert_eq!(fresh.start() as u64, hits);
    let done = req
        .write(fresh, |pos, buf| buf.fill(pos as u8 + 1))
        .await
        .unwrap();
    req.register(done).await.unwrap();
    assert_eq!(req.held(), h.len());
    hits
}

#[tokio::test(flavor = "current_thread")]
async fn a_registered_request_hits_next_time() {
    let cache = logical(8, 8);
    let h = hashes(&[1, 2, 3]);
    assert_eq!(compute(&cache, &h).await, 0);
    let mut req = cache.request(&h);
    let m = req.lookup().await.unwrap();
    assert_eq!((m.blocks, m.by_tier), (3, [3, 0, 0]));
    let on = req.onboard().await.unwrap();
    assert_eq!((on.hits(), on.verify_failures), (3, 0));
    assert_eq!(req.served(), &[Tier::G1; 3]);
    assert_eq!(req.held(), 3);
    let g1 = cache.store(Tier::G1).unwrap();
    assert_eq!(g1.metrics().in_use, 3);
    drop(req);
    assert_eq!(g1.metrics().in_use, 0);
    g1.check_invariants().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn blocks_are_released_tail_first() {
    // G1 of 3 blocks, no tier below: the next allocation evicts the block
    // released first, which must be the tail.
    let cache = logical(3, 0);
    let h = hashes(&[1, 2, 3]);
    compute(&cache, &h).await;
    compute(&cache, &hashes(&[9])).await;
    let g1 = cache.store(Tier::G1).unwrap();
    assert_eq!(g1.contains_all(&h), vec![true, true, false]);
    assert_eq!(cache.metrics().dropped_blocks, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn data_round_trips_through_g2_into_device_g1() {
    let mut s = setup(
        tier(Tier::G1, 2, mock(2)),
        Some(tier(Tier::G2, 8, host(8))),
        None,
    );
    s.device_engine = Some(Arc::new(MemcpyEngine::new(1).unwrap()));
    let cache = TieredCache::new(s).unwrap();
    let h = hashes(&[1, 2]);
    compute(&cache, &h).await;
    compute(&cache, &hashes(&[5, 6])).await; // pushes h into G2
    let mut req = cache.request(&h);
    let on = req.onboard().await.unwrap();
    assert_eq!(on.hits_by_tier, [0, 2, 0]);
    let mut seen = Vec::new();
    req.read_back(&[1, 0], |pos, bytes| {
        assert!(bytes.iter().all(|&b| b == pos as u8 + 1), "position {pos}");
        seen.push(pos);
    })
    .await
    .unwrap();
    assert_eq!(seen, vec![1, 0]);
    assert!(matches!(
        req.read_back(&[2], |_, _| {}).await,
        Err(OffloadError::NotHeld {
            position: 2,
            held: 2
        })
    ));
    drop(req);
    let m = cache.metrics();
    assert_eq!((m.offloaded_blocks, m.onboarded_blocks), (4, 2));
    assert_eq!(m.verify_failures, 0);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn protocol_misuse_is_a_typed_error() {
    let cache = logical(8, 0);
    let h = hashes(&[1, 2]);

    // Blocks of one request handed to another.
    let mut a = cache.request(&h);
    let mut b = cache.request(&h);
    let fresh = a.allocate_rest().await.unwrap();
    match b.write(fresh, |_, _| {}).await {
        Err(OffloadError::ForeignBlocks { request, owner }) => {
            assert_eq!((request, owner), (b.id(), a.id()));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("foreign blocks accepted"),
    }
    let fresh = a.allocate_rest().await.unwrap();
    let done = a.write(fresh, |_, _| {}).await.unwrap();
    assert!(matches!(
        b.register(done).await,
        Err(OffloadError::ForeignBlocks { .. })
    ));

    // Two outstanding allocations: the second registered first, then the
    // first no longer fits.
    let first = a.allocate_rest().await.unwrap();
    let second = a.allocate_rest().await.unwrap();
    let second = a.write(second, |_, _| {}).await.unwrap();
    a.register(second).await.unwrap();
    let first = a.write(first, |_, _| {}).await.unwrap();
    assert!(matches!(
        a.register(first).await,
        Err(OffloadError::OutOfOrder {
            expected: 2,
            got: 0
        })
    ));

    // Onboarding a request that already holds blocks.
    assert!(matches!(
        a.onboard().await,
        Err(OffloadError::AlreadyStarted { held: 2 })
    ));
    drop((a, b));
    let g1 = cache.store(Tier::G1).unwrap();
    assert_eq!(g1.metrics().in_use, 0, "nothing leaked");
    g1.check_invariants().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_closed_cache_refuses_requests() {
    let cache = logical(8, 8);
    compute(&cache, &hashes(&[1])).await;
    assert_eq!(cache.close().await.unwrap().flushed_blocks, 0);
    let mut req = cache.request(&hashes(&[1]));
    assert!(matches!(req.onboard().await, Err(OffloadError::Closed)));
    assert!(matches!(
        req.allocate_rest().await,
        Err(OffloadError::Closed)
    ));
    // The stores stay readable; a second close does nothing.
    assert_eq!(cache.store(Tier::G1).unwrap().metrics().inactive, 1);
    cache.close().await.unwrap();
}

/// Records what a journal is told, in order.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
}

impl G3Journal for Recorder {
    fn stored(&self, entries: &[DurableEntry]) -> Result<(), JournalError> {
        self.log.lock().push(format!("stored {}", entries.len()));
        Ok(())
    }
    fn removed(&self, entries: &[(SlotId, SequenceHash)]) -> Result<(), JournalError> {
        self.log.lock().push(format!("removed {}", entries.len()));
        Ok(())
    }
    fn close(&self) -> Result<(), JournalError> {
        self.log.lock().push("close".into());
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn close_flushes_to_a_journaled_g3_then_closes_the_journal() {
    let journal = Arc::new(Recorder::default());
    let mut s = setup(
        tier(Tier::G1, 4, host(4)),
        Some(tier(Tier::G2, 4, host(4))),
        Some(tier(Tier::G3, 16, host(16))),
    );
    let engine = Arc::new(MemcpyEngine::new(1).unwrap());
    s.device_engine = Some(engine.clone());
    s.disk_engine = Some(engine);
    s.g3_journal = Some(journal.clone());
    let cache = TieredCache::new(s).unwrap();
    compute(&cache, &hashes(&[1, 2, 3])).await;
    assert!(journal.log.lock().is_empty(), "nothing reached G3 yet");
    let closed = cache.close().await.unwrap();
    // G1 -> G2 (3 blocks), then G2 -> G3 (3 blocks).
    assert_eq!(closed.flushed_blocks, 6);
    assert_eq!(*journal.log.lock(), vec!["stored 3", "close"]);
    assert_eq!(
        cache
            .store(Tier::G3)
            .unwrap()
            .contains_all(&hashes(&[1, 2, 3])),
        vec![true; 3]
    );
    cache.close().await.unwrap();
    assert_eq!(journal.log.lock().len(), 2, "a second close does nothing");
}

#[test]
fn setup_errors_name_the_tier_at_fault() {
    let none = || TierMemory::None;
    let err = |s: CacheSetup| match TieredCache::new(s) {
        Err(OffloadError::Setup(e)) => e,
        Err(e) => panic!("not a setup error: {e}"),
        Ok(_) => panic!("setup accepted"),
    };
    let e = err(setup(
        tier(Tier::G1, 4, none()),
        None,
        Some(tier(Tier::G3, 4, none())),
    ));
    assert!(matches!(
        e,
        SetupError::MissingTierAbove {
            tier: Tier::G3,
            above: Tier::G2
        }
    ));
    let e = err(setup(
        tier(Tier::G1, 4, none()),
        Some(tier(Tier::G3, 4, none())),
        None,
    ));
    assert!(matches!(
        e,
        SetupError::TierMismatch {
            slot: Tier::G2,
            configured: Tier::G3
        }
    ));
    let e = err(setup(
        tier(Tier::G1, 4, host(4)),
        Some(tier(Tier::G2, 4, none())),
        None,
    ));
    assert!(matches!(
        e,
        SetupError::MixedData {
            tier: Tier::G2,
            has_memory: false
        }
    ));
    let e = err(setup(tier(Tier::G1, 8, host(4)), None, None));
    assert!(matches!(
        e,
        SetupError::CapacityExceedsMemory {
            tier: Tier::G1,
            have: 4,
            want: 8
        }
    ));
    let other = TierMemory::Host(Arc::new(
        HostMemory::new(Layout::contiguous(BlockShape::llama3_8b(), 2).unwrap()).unwrap(),
    ));
    let e = err(setup(
        tier(Tier::G1, 2, host(2)),
        Some(tier(Tier::G2, 2, other)),
        None,
    ));
    assert!(matches!(e, SetupError::ShapeMismatch { tier: Tier::G2 }));
    let e = err(setup(
        tier(Tier::G1, 2, host(2)),
        Some(tier(Tier::G2, 2, mock(2))),
        None,
    ));
    assert!(matches!(e, SetupError::NotHostVisible { tier: Tier::G2 }));
    let e = err(setup(
        tier(Tier::G1, 2, host(2)),
        Some(tier(Tier::G2, 2, host(2))),
        None,
    ));
    assert!(matches!(
        e,
        SetupError::MissingEngine {
            upper: Tier::G1,
            lower: Tier::G2
        }
    ));
    let e = err(setup(tier(Tier::G1, 2, mock(2)), None, None));
    assert!(matches!(e, SetupError::MissingStagingEngine));
    let mut s = setup(
        tier(Tier::G1, 2, none()),
        Some(tier(Tier::G2, 2, none())),
        None,
    );
    s.g1_to_g2 = WritePolicy::WriteThrough;
    let e = err(s);
    assert!(matches!(
        e,
        SetupError::NoRuntime {
            task: "write-through"
        }
    ));
    assert!(!e.to_string().contains("--"), "no CLI flag in {e}");
    // A G1-only cache with host memory needs no engine at all.
    TieredCache::new(setup(tier(Tier::G1, 2, host(2)), None, None)).unwrap();
}
