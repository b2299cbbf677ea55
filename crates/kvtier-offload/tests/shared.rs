//! The shared-tier (G4) hook: blocks reaching G2 are offered to it, a prefix
//! match continues in it, and its blocks are onboarded G4 -> G2 -> G1
//! verified. The shared tier here is an in-memory map two caches share.

use kvtier_logical::prometheus::Exposition;
use kvtier_logical::{hash_trace_ids, CacheSalt, SequenceHash, Tier};
use kvtier_memory::MemcpyEngine;
use kvtier_offload::testing::{host, mock, setup, tier};
use kvtier_offload::{
    CacheSetup, SetupError, SharedBlock, SharedFuture, SharedStats, SharedTier, TierMemory,
    TieredCache,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
struct MemShared {
    blocks: Mutex<HashMap<u128, SharedBlock>>,
    stats: Mutex<SharedStats>,
}

impl SharedTier for MemShared {
    fn matched(&self, hashes: &[SequenceHash]) -> usize {
        let b = self.blocks.lock();
        hashes.iter().take_while(|h| b.contains_key(&h.0)).count()
    }
    fn wants(&self, hash: SequenceHash) -> bool {
        !self.blocks.lock().contains_key(&hash.0)
    }
    fn store(&self, block: SharedBlock) -> SharedFuture<'_, ()> {
        Box::pin(async move {
            self.stats.lock().objects_written += 1;
            self.blocks.lock().insert(block.hash.0, block);
        })
    }
    fn load(&self, hashes: Vec<SequenceHash>) -> SharedFuture<'_, Vec<SharedBlock>> {
        Box::pin(async move {
            let b = self.blocks.lock();
            hashes.iter().map_while(|h| b.get(&h.0).cloned()).collect()
        })
    }
    fn close(&self) -> SharedFuture<'_, ()> {
        Box::pin(async {})
    }
    fn stats(&self) -> SharedStats {
        *self.stats.lock()
    }
    fn write_prometheus(&self, e: &mut Exposition) {
        e.counter("kvtier_g4_objects_written_total", "Objects written.")
            .sample(&[], self.stats().objects_written);
    }
}

fn node() -> TieredCache {
    TieredCache::new(CacheSetup {
        device_engine: Some(Arc::new(MemcpyEngine::new(1).unwrap())),
        ..setup(
            tier(Tier::G1, 4, mock(4)),
            Some(tier(Tier::G2, 8, host(8))),
            None,
        )
    })
    .unwrap()
}

async fn compute(cache: &TieredCache, h: &[SequenceHash]) {
    let mut req = cache.request(h);
    req.onboard().await.unwrap();
    let fresh = req.allocate_rest().await.unwrap();
    let done = req
        .write(fresh, |pos, buf| buf.fill(pos as u8 + 1))
        .await
        .unwrap();
    req.register(done).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_block_computed_on_one_node_is_served_on_another() {
    let shared = Arc::new(MemShared::default());
    let h = hash_trace_ids(CacheSalt(3), &[1, 2]);
    let a = node();
    a.attach_shared(shared.clone()).unwrap();
    compute(&a, &h).await;
    a.close().await.unwrap(); // flushes G1 into G2: offered to G4
    assert_eq!(shared.stats().objects_written, 2);
    let b = node();
    b.attach_shared(shared.clone()).unwrap();
    assert!(matches!(
        b.attach_shared(shared.clone()),
        Err(SetupError::SharedAttached)
    ));
    let mut req = b.request(&h);
    let m = req.lookup().await.unwrap();
    assert_eq!((m.blocks, m.shared), (2, 2));
    let on = req.onboard().await.unwrap();
    assert_eq!((on.shared_hits, on.hits(), on.verify_failures), (2, 2, 0));
    let mut seen = 0;
    req.read_back(&[0, 1], |pos, bytes| {
        assert!(bytes.iter().all(|&x| x == pos as u8 + 1), "position {pos}");
        seen += 1;
    })
    .await
    .unwrap();
    assert_eq!(seen, 2);
    drop(req);
    assert!(b
        .to_prometheus()
        .contains("kvtier_g4_objects_written_total 2"));
    // Now held locally: no second G4 read.
    let on = b.request(&h).onboard().await.unwrap();
    assert_eq!((on.shared_hits, on.hits()), (0, 2));
}

#[tokio::test(flavor = "current_thread")]
async fn bytes_that_fail_their_checksum_are_never_served() {
    let shared = Arc::new(MemShared::default());
    let h = hash_trace_ids(CacheSalt(3), &[1, 2, 3]);
    let a = node();
    a.attach_shared(shared.clone()).unwrap();
    compute(&a, &h).await;
    a.close().await.unwrap();
    // Position 1's bytes change, its recorded checksum does not.
    shared.blocks.lock().get_mut(&h[1].0).unwrap().bytes[3] ^= 0xff;
    let b = node();
    b.attach_shared(shared).unwrap();
    let mut req = b.request(&h);
    let on = req.onboard().await.unwrap();
    assert_eq!((on.shared_hits, on.verify_failures), (1, 1));
    assert_eq!(req.held(), 1);
}

#[test]
fn a_shared_tier_needs_g2_with_data() {
    let c = TieredCache::new(setup(tier(Tier::G1, 4, TierMemory::None), None, None)).unwrap();
    assert!(matches!(
        c.attach_shared(Arc::new(MemShared::default())),
        Err(SetupError::SharedNeedsG2)
    ));
}
