//! Shared by the integration tests: the synthetic trace, a multi-tier
//! logical replay, and subscriber threads.

#![allow(dead_code)]

use kvtier_events::{
    BlockKeys, EventsConfig, Low64, Mirror, Publisher, StartOptions, Subscriber, SubscriberConfig,
    SubscriberStats, WireFormat,
};
use kvtier_logical::CacheSalt;
use kvtier_logical::{BlockSpec, EventSource, SequenceHash, SlotId, StoreConfig, Tier};
use kvtier_offload::{CacheSetup, TierMemory, TierSetup, TieredCache, WritePolicy};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every bounded wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// The synthetic trace's requests as chained hashes (salt 0).
pub fn trace() -> Vec<Vec<SequenceHash>> {
    let t = kvtier_harness::trace::Trace::embedded().hashed(CacheSalt(0));
    t.iter().map(<[SequenceHash]>::to_vec).collect()
}

/// Start a publisher of `stores` under their own hashes (16-token blocks),
/// waiting `wait_subscriber` for a first subscriber if given.
pub fn start(cfg: &EventsConfig, stores: &[EventSource], wait: Option<Duration>) -> Publisher {
    start_keyed(cfg, stores, Box::new(Low64), wait)
}

/// [`start`], publishing under the hashes `keys` gives.
pub fn start_keyed(
    cfg: &EventsConfig,
    stores: &[EventSource],
    keys: Box<dyn BlockKeys>,
    wait_subscriber: Option<Duration>,
) -> Publisher {
    let opts = StartOptions {
        block_size: 16,
        connect_timeout: WAIT,
        wait_subscriber,
    };
    Publisher::start(cfg, stores, keys, opts).expect("publisher starts")
}

/// A fresh subscriber of `publisher` (see [`reader`]) until `target`.
pub fn read_all(publisher: &Publisher, target: Arc<AtomicU64>) -> JoinHandle<Reader> {
    let replay = publisher.replay_endpoint().map(String::from);
    reader(publisher.endpoint().to_string(), replay, None, target, None)
}

/// A publisher config on loopback (bound, OS-chosen ports).
pub fn loopback(format: WireFormat) -> EventsConfig {
    EventsConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        bind: Some(true),
        replay_endpoint: Some("tcp://127.0.0.1:0".into()),
        format,
        buffer: 1 << 20,
        linger_ms: 0,
        ..Default::default()
    }
}

/// G1/G2/G3 without bytes, LRU, write-back.
pub fn tiered(g1: usize, g2: usize, g3: usize) -> TieredCache {
    let t = |tier, n| TierSetup {
        store: StoreConfig::new(tier, n),
        memory: TierMemory::None,
    };
    TieredCache::new(CacheSetup {
        g1: t(Tier::G1, g1),
        g2: Some(t(Tier::G2, g2)),
        g3: Some(t(Tier::G3, g3)),
        device_engine: None,
        disk_engine: None,
        g1_to_g2: WritePolicy::WriteBack,
        g2_to_g3: WritePolicy::WriteBack,
        queue_depth: 64,
        staging_blocks: 0,
        clean_ahead: 0,
        g3_journal: None,
        g3_restored: Vec::new(),
    })
    .expect("tiered cache")
}

/// The cache's stores, G1 first.
pub fn stores(cache: &TieredCache) -> Vec<EventSource> {
    Tier::ALL
        .iter()
        .filter_map(|t| cache.store(*t).map(|v| v.event_source()))
        .collect()
}

/// One request: lookup across tiers, onboard, compute the rest, register,
/// release tail first (as the CLI's logical multi-tier replay does).
pub async fn request(cache: &TieredCache, hashes: &[SequenceHash]) {
    let cap = cache.store(Tier::G1).expect("G1").capacity();
    let hashes = &hashes[..hashes.len().min(cap)];
    let mut req = cache.request(hashes);
    req.onboard().await.expect("onboard");
    let fresh = req.allocate_rest().await.expect("allocate");
    let written = req.write(fresh, |_, _| {}).await.expect("write");
    req.register(written).await.expect("register");
}

/// A current-thread runtime to drive [`request`]s on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// `requests` through `cache` in order, on `rt`.
pub fn run(rt: &tokio::runtime::Runtime, cache: &TieredCache, requests: &[Vec<SequenceHash>]) {
    rt.block_on(async {
        for r in requests {
            request(cache, r).await;
        }
    });
}

/// Low 64 bits of everything `store` holds.
pub fn contents(registered: &[(SlotId, BlockSpec)]) -> HashSet<u64> {
    registered.iter().map(|(_, b)| b.hash.low64()).collect()
}

/// What a reader thread ends with.
pub struct Reader {
    pub mirror: Mirror,
    pub stats: SubscriberStats,
    pub next: Option<u64>,
}

/// Where a reader starts: fresh, or resuming a saved mirror at `next`.
pub type Resume = Option<(u64, Mirror)>;

/// A subscriber on its own thread, applying batches to a mirror until it has
/// `target` batches (set once known; `u64::MAX` before) or, if `kill_at`, as
/// soon as it has applied that many.
pub fn reader(
    endpoint: String,
    replay: Option<String>,
    resume: Resume,
    target: Arc<AtomicU64>,
    kill_at: Option<u64>,
) -> JoinHandle<Reader> {
    std::thread::spawn(move || {
        let mut cfg = SubscriberConfig::new(endpoint, replay);
        let mut mirror = Mirror::new();
        if let Some((next, saved)) = resume {
            cfg.resume_from = Some(next);
            mirror = saved;
        }
        let mut sub = Subscriber::connect(cfg).expect("subscribe");
        let deadline = Instant::now() + WAIT;
        loop {
            let next = sub.next_seq().unwrap_or(0);
            if kill_at.is_some_and(|k| next >= k) || next >= target.load(Ordering::Acquire) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reader stuck at {next} (target {})",
                target.load(Ordering::Acquire)
            );
            if let Some(d) = sub
                .next_batch(Duration::from_millis(100))
                .expect("next batch")
            {
                mirror.apply(&d);
            }
        }
        Reader {
            mirror,
            stats: sub.stats(),
            next: sub.next_seq(),
        }
    })
}
