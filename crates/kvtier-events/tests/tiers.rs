//! Multi-tier replays of the synthetic trace with subscribers on loopback:
//! every subscriber ends with exactly what each tier holds.

mod common;

use common::*;
use kvtier_events::WireFormat;
use kvtier_logical::Tier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MEDIA: [&str; 3] = ["GPU", "CPU", "STORAGE"];

fn check(r: &Reader, cache: &kvtier_offload::TieredCache, who: &str) {
    assert!(r.mirror.is_exact(), "{who}: mirror not exact");
    let e = r.mirror.errors();
    assert_eq!(
        (e.removed_unknown, e.stored_present),
        (0, 0),
        "{who}: {e:?}"
    );
    for (tier, medium) in kvtier_logical::Tier::ALL.into_iter().zip(MEDIA) {
        let Some(store) = cache.store(tier) else {
            continue;
        };
        assert_eq!(
            r.mirror.set(medium),
            contents(&store.registered()),
            "{who}: {medium} differs from {}",
            store.tier()
        );
    }
}

/// An early subscriber, one that joins midway (replay from 0) and one that is
/// killed and restarted (resumes from its next sequence number) all end with
/// every tier's exact contents, in both encodings.
#[test]
fn early_late_and_restarted_subscribers_mirror_every_tier() {
    let trace = trace();
    for format in [WireFormat::Map, WireFormat::Array] {
        let rt = runtime();
        let cache = tiered(2000, 4000, 8000);
        let stores = stores(&cache);
        let publisher = start(&loopback(format), &stores, None);
        let ep = publisher.endpoint().to_string();
        let rep = publisher.replay_endpoint().map(String::from);
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let early = reader(ep.clone(), rep.clone(), None, target.clone(), None);
        let quarter = trace.len() / 4;
        run(&rt, &cache, &trace[..quarter]);
        // Killed once it has applied everything published so far.
        let kill_at = publisher.flush(WAIT).unwrap();
        let dying = reader(ep.clone(), rep.clone(), None, target.clone(), Some(kill_at));
        run(&rt, &cache, &trace[quarter..2 * quarter]);
        let late = reader(ep.clone(), rep.clone(), None, target.clone(), None);
        let dead = dying.join().expect("dying reader");
        assert_eq!(dead.next, Some(kill_at));
        let restarted = reader(ep, rep, Some((kill_at, dead.mirror)), target.clone(), None);
        run(&rt, &cache, &trace[2 * quarter..]);
        let n = publisher.flush(WAIT).unwrap();
        target.store(n, Ordering::Release);
        for (name, h) in [("early", early), ("late", late), ("restarted", restarted)] {
            let r = h.join().expect(name);
            assert_eq!(r.next, Some(n), "{name}");
            check(&r, &cache, &format!("{format:?} {name}"));
            assert_eq!(r.stats.gaps_lost, 0, "{name}: {:?}", r.stats);
            if name == "late" || name == "restarted" {
                assert!(r.stats.replayed > 0, "{name} recovered through replay");
            }
        }
        let m = publisher.metrics();
        assert_eq!((m.anomalies, m.dropped, m.checkpoints), (0, 0, 0), "{m:?}");
        assert!(m.replay_requests >= 3);
        assert!(Tier::ALL
            .iter()
            .filter_map(|t| cache.store(*t))
            .all(|s| !s.registered().is_empty()));
    }
}

/// With a replay buffer too small to hold the history, a late subscriber
/// still ends exact: its unservable request makes the publisher publish a
/// checkpoint.
#[test]
fn late_subscriber_beyond_the_buffer_recovers_from_a_checkpoint() {
    let trace = trace();
    let rt = runtime();
    let cache = tiered(500, 1000, 2000);
    let stores = stores(&cache);
    let mut cfg = loopback(WireFormat::Map);
    cfg.buffer = 8;
    let publisher = start(&cfg, &stores, None);
    let half = trace.len() / 2;
    run(&rt, &cache, &trace[..half]);
    assert!(publisher.flush(WAIT).unwrap() > 8);
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let late = read_all(&publisher, target.clone());
    run(&rt, &cache, &trace[half..]);
    // The checkpoint may come after the last request: wait for it, then for
    // the subscriber to have everything.
    let deadline = std::time::Instant::now() + WAIT;
    while publisher.metrics().checkpoints == 0 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let n = publisher.flush(WAIT).unwrap();
    target.store(n, Ordering::Release);
    let r = late.join().unwrap();
    check(&r, &cache, "late beyond buffer");
    let m = publisher.metrics();
    assert!(m.replay_unservable >= 1, "{m:?}");
}
