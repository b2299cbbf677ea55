//! Unit tests of `gated.rs`: `gated-arc`'s duel, the proven credit and
//! `gated-duel`'s pause.

use super::*;

fn info(h: u128) -> BlockInfo {
    BlockInfo {
        hash: crate::policy::test_hash(h),
        position: 0,
        is_leaf: true,
    }
}

/// Drive `p` with accesses to `keys` (cycled `rounds` times) the way a
/// store would: a cached key is hit (removed while in use, re-inserted
/// at release), a missing one is registered in a free or evicted slot.
fn drive<const A: bool, const D: bool>(
    p: &mut Gated<A, D>,
    cap: usize,
    keys: &[u128],
    rounds: usize,
) -> u64 {
    let mut slot_of = std::collections::HashMap::new();
    let mut key_of = vec![None; cap];
    let mut free: Vec<SlotId> = (0..cap as SlotId).rev().collect();
    let mut hits = 0;
    for _ in 0..rounds {
        for &k in keys {
            if let Some(&s) = slot_of.get(&k) {
                p.remove(s);
                p.on_hit(s, &info(k));
                p.insert(s, &info(k));
                hits += 1;
                continue;
            }
            let s = free.pop().unwrap_or_else(|| {
                let v = p.evict().expect("a full tier has a victim");
                let old = key_of[v as usize].take().unwrap();
                slot_of.remove(&old);
                p.on_evicted(v, &info(old));
                v
            });
            p.on_register(s, &info(k));
            p.insert(s, &info(k));
            slot_of.insert(k, s);
            key_of[s as usize] = Some(k);
        }
    }
    hits
}

#[test]
fn the_duel_leaves_lru_order_only_for_a_gain() {
    let cap = 4096;
    // Every key comes back once, about 3,000 accesses later: LRU hits
    // every return, a probation segment of an eighth of the tier none,
    // and the protected segment fills with blocks that never come back.
    // The duel takes the share to 0 and the returns hit.
    let mut p = GatedArc::new(cap);
    let mut twice = Vec::new();
    for t in 0..40_000u128 {
        twice.push(t);
        if t >= 1500 {
            twice.push(t - 1500);
        }
    }
    let hits = drive(&mut p, cap, &twice, 1);
    assert!(p.protected_cap() < cap / 16, "{}", p.protected_cap());
    assert!(hits > 38_500 * 9 / 10, "{hits} of 38,500 returns hit");
    let mut g = GatedArc::build(
        cap,
        &GatedParams {
            duel_sample_rate: 0,
            ..GatedParams::default()
        },
    );
    let without = drive(&mut g, cap, &twice, 1);
    assert!(without < hits / 2, "without the duel: {without}");
    // A hot set hit again and again among one-off keys: the policy hits
    // what LRU loses, and the share stays up.
    let mut p = GatedArc::new(cap);
    let mut stream = Vec::new();
    for i in 0..40_000u128 {
        stream.push(1_000_000 + i);
        if i % 4 == 0 {
            stream.push(i % 2000);
        }
    }
    drive(&mut p, cap, &stream, 1);
    assert!(p.protected_cap() > cap / 4, "{}", p.protected_cap());
}

#[test]
fn idle_proven_blocks_lose_their_credit() {
    let cap = 4;
    let mut p = GatedLru::new(cap);
    p.on_register(0, &info(1));
    p.on_hit(0, &info(1));
    // Proven, then idle while new blocks churn through slot 1 for more
    // than the credit.
    p.insert(0, &info(1));
    let turnovers = GatedParams::default().proven_credit_turnovers as u64;
    for k in 0..(cap as u64 * turnovers + 2) {
        p.on_register(1, &info(100 + k as u128));
        p.insert(1, &info(100 + k as u128));
        if k + 1 < cap as u64 * turnovers + 2 {
            p.remove(1);
        }
    }
    assert_eq!(p.evict(), Some(0), "the idle proven block goes first");
}

#[test]
fn settled_in_lru_order_the_seen_filter_pauses() {
    // Every key comes back once, about 1,500 accesses later: LRU's order
    // wins by far and settles.
    let cap = 4096;
    let mut p = GatedDuel::new(cap);
    let mut twice = Vec::new();
    for t in 0..40_000u128 {
        twice.push(t);
        if t >= 1500 {
            twice.push(t - 1500);
        }
    }
    drive(&mut p, cap, &twice, 1);
    assert_eq!(p.order, Order::LruSettled);
    assert_eq!(p.protected_cap(), usize::MAX, "no demotion in LRU's order");
    // A registration while paused leaves the filter as it was.
    let fresh = info(9_000_000);
    assert!(!p.seen.contains(fresh.hash));
    let s = p.evict().unwrap();
    p.on_register(s, &fresh);
    assert!(!p.seen.contains(fresh.hash), "paused: not written");
    p.insert(s, &fresh);
    // The gated order's traffic (a hot set of 1,000 keys, each back after
    // 4,000 one-off keys: beyond LRU's reach, within the protected
    // segment's) brings the filter and the order back.
    let mut stream = Vec::new();
    for i in 0..60_000u128 {
        stream.push(10_000_000 + i);
        if i % 4 == 0 {
            stream.push(20_000_000 + (i / 4) % 1000);
        }
    }
    // (`drive` starts from an empty tier: one call for both phases; the
    // first phase is `p`'s, which ended paused.)
    let mut q = GatedDuel::new(cap);
    let both: Vec<u128> = twice.iter().chain(&stream).copied().collect();
    drive(&mut q, cap, &both, 1);
    assert_eq!(q.order, Order::Gated);
    assert!(!q.in_release_order());
    assert!(q.duel.as_ref().unwrap().counter() > 0);
    assert_eq!(q.protected_cap(), q.max_protected_cap);
}
