//! Publisher and subscriber on loopback: basic delivery, replay, restart.

mod common;

use common::start;
use kvtier_events::{EventsConfig, Mirror, Subscriber, SubscriberConfig, WireFormat};
use kvtier_logical::SingleTierReplay;
use kvtier_logical::{hash_trace_ids, CacheSalt};
use kvtier_logical::{BlockStore, SequenceHash, StoreConfig, Tier};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn config(format: WireFormat) -> EventsConfig {
    EventsConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        bind: Some(true),
        replay_endpoint: Some("tcp://127.0.0.1:0".into()),
        format,
        linger_ms: 0,
        ..Default::default()
    }
}

fn requests(n: u64) -> Vec<Vec<SequenceHash>> {
    (0..n)
        .map(|i| hash_trace_ids(CacheSalt(0), &[i % 7, i % 13, i, i + 1]))
        .collect()
}

fn low64_set(store: &BlockStore) -> HashSet<u64> {
    store
        .registered()
        .iter()
        .map(|(_, b)| b.hash.low64())
        .collect()
}

/// Apply batches until the subscriber has everything published (`n` batches).
fn drain(sub: &mut Subscriber, mirror: &mut Mirror, n: u64) {
    let deadline = Instant::now() + WAIT;
    while sub.next_seq() != Some(n) {
        assert!(
            Instant::now() < deadline,
            "subscriber stuck at {:?} of {n}",
            sub.next_seq()
        );
        if let Some(d) = sub.next_batch(Duration::from_millis(200)).unwrap() {
            mirror.apply(&d);
        }
    }
}

#[test]
fn subscriber_mirrors_one_tier_in_both_formats() {
    for format in [WireFormat::Map, WireFormat::Array] {
        let store = BlockStore::new(StoreConfig::new(Tier::G1, 64)).unwrap();
        let publisher = start(&config(format), &[store.event_source()], None);
        let mut sub = Subscriber::connect(SubscriberConfig::new(
            publisher.endpoint(),
            publisher.replay_endpoint().map(String::from),
        ))
        .unwrap();
        let mut mirror = Mirror::new();
        let mut replay = SingleTierReplay::new(store.clone());
        for r in requests(300) {
            replay.request(&r).unwrap();
        }
        let n = publisher.flush(WAIT).unwrap();
        drain(&mut sub, &mut mirror, n);
        assert!(mirror.is_exact());
        assert_eq!(mirror.errors(), Default::default());
        assert_eq!(mirror.set("GPU"), low64_set(&store), "{format:?}");
        assert_eq!(publisher.metrics().anomalies, 0);
    }
}

/// llm-d style: the subscriber binds, the publisher connects to it.
#[test]
fn publisher_connects_to_a_bound_subscriber() {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let t = target.clone();
    let reader = std::thread::spawn(move || {
        let mut cfg = SubscriberConfig::new("tcp://127.0.0.1:0", None);
        cfg.bind = Some(true);
        let mut sub = Subscriber::connect(cfg).unwrap();
        tx.send(sub.endpoint().to_string()).unwrap();
        let mut mirror = Mirror::new();
        let deadline = Instant::now() + WAIT;
        while sub
            .next_seq()
            .is_none_or(|n| n < t.load(std::sync::atomic::Ordering::Acquire))
        {
            assert!(Instant::now() < deadline, "stuck at {:?}", sub.next_seq());
            if let Some(d) = sub.next_batch(Duration::from_millis(100)).unwrap() {
                mirror.apply(&d);
            }
        }
        (mirror, sub.stats())
    });
    let ep = rx.recv().unwrap();
    let store = BlockStore::new(StoreConfig::new(Tier::G1, 64)).unwrap();
    let cfg = EventsConfig {
        endpoint: ep,
        linger_ms: 0,
        ..Default::default()
    };
    let publisher = start(&cfg, &[store.event_source()], Some(WAIT));
    assert_eq!(publisher.waited_for_subscriber(), Some(true));
    let mut replay = SingleTierReplay::new(store.clone());
    for (i, r) in requests(300).iter().enumerate() {
        replay.request(r).unwrap();
        if i % 10 == 0 {
            publisher.flush(WAIT).unwrap();
        }
    }
    target.store(
        publisher.flush(WAIT).unwrap(),
        std::sync::atomic::Ordering::Release,
    );
    let (mirror, stats) = reader.join().unwrap();
    assert_eq!(stats.gaps_lost, 0, "{stats:?}");
    assert!(mirror.is_exact());
    assert_eq!(mirror.set("GPU"), low64_set(&store));
}
