//! A persistent G3 whose journal stopped (a full disk, an I/O error) must
//! not rewrite a slot that a durable record still claims: the next start
//! recovers only blocks whose bytes are intact.

use kvtier_disk::journal::{G3Header, JOURNAL_TMP_FILE};
use kvtier_disk::{open_g3, G3Open, G3Options, OnMismatch};
use kvtier_logical::hash_trace_ids;
use kvtier_logical::{CacheSalt, SequenceHash, Tier};
use kvtier_memory::{BlockShape, Layout, MemcpyEngine};
use kvtier_offload::testing::{host, mock, setup, tier};
use kvtier_offload::{CacheSetup, TierMemory, TieredCache};
use std::path::Path;
use std::sync::Arc;

const G3_BLOCKS: usize = 40;
/// G1 and G2 blocks; the longest request.
const UPPER: usize = 24;

fn open(dir: &Path, verify_full: bool) -> G3Open {
    open_g3(
        dir,
        &G3Options {
            layout: Layout::contiguous(BlockShape::tiny(), G3_BLOCKS).unwrap(),
            header: G3Header::new(7, 9, G3_BLOCKS as u64),
            on_mismatch: OnMismatch::Refuse,
            verify_full,
            ack_log: None,
        },
    )
    .unwrap()
}

fn cache(g3: &G3Open) -> TieredCache {
    let engine = Arc::new(MemcpyEngine::new(1).unwrap());
    TieredCache::new(CacheSetup {
        device_engine: Some(engine.clone()),
        disk_engine: Some(engine),
        g3_journal: Some(g3.journal.clone()),
        g3_restored: g3.records.clone(),
        ..setup(
            tier(Tier::G1, UPPER, mock(UPPER)),
            Some(tier(Tier::G2, UPPER, host(UPPER))),
            Some(tier(Tier::G3, G3_BLOCKS, TierMemory::Host(g3.data.clone()))),
        )
    })
    .unwrap()
}

/// Request `n`: 1 to [`UPPER`] new blocks (varying, so that G3 allocations
/// sometimes need more slots than it has free) whose bytes differ from every
/// other request's (so a rewritten slot fails its old record's checksum).
async fn compute(cache: &TieredCache, n: u64) {
    let len = 1 + (n * 7) % UPPER as u64;
    let ids: Vec<u64> = (UPPER as u64 * n..UPPER as u64 * n + len).collect();
    let h: Vec<SequenceHash> = hash_trace_ids(CacheSalt(3), &ids);
    let mut req = cache.request(&h);
    req.onboard().await.unwrap();
    let fresh = req.allocate_rest().await.unwrap();
    let done = req
        .write(fresh, |pos, buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (n as usize * 7 + pos * 13 + i) as u8;
            }
        })
        .await
        .unwrap();
    req.register(done).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_journal_never_lets_a_claimed_slot_be_rewritten() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("g3");
    let g3 = open(&d, false);
    let c = cache(&g3);
    let mut n = 0;
    // Fill G3 and make its records durable.
    while n < 40 {
        compute(&c, n).await;
        n += 1;
    }
    assert!(g3.journal.durable_live() > 0);
    // Inject a fault: the next compaction fails (its tmp path is a
    // directory), which stops persistence. Churn until it happens, then
    // churn on: G2 keeps evicting into G3.
    std::fs::create_dir(d.join(JOURNAL_TMP_FILE)).unwrap();
    while g3.journal.error().is_none() {
        assert!(n < 20_000, "the injected fault never stopped the journal");
        compute(&c, n).await;
        n += 1;
    }
    let durable = g3.journal.durable_live();
    for _ in 0..200 {
        compute(&c, n).await;
        n += 1;
    }
    assert!(
        c.close().await.is_err(),
        "a stopped journal fails the close"
    );
    drop(c);
    drop(g3);
    std::fs::remove_dir(d.join(JOURNAL_TMP_FILE)).unwrap();
    // Every record the journal still holds names its block's intact bytes.
    let again = open(&d, true);
    assert_eq!(
        again.dropped_verify, 0,
        "slots rewritten under a durable record"
    );
    assert_eq!(again.records.len() as u64, durable);
    assert!(durable > 0);
}
