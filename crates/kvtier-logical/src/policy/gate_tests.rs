//! Behaviour shared by the frequency-gated segmented LRUs
//! ([`GatedLru`], [`GatedArc`] and [`PrefixFreq`]), tested once for all
//! through the `EvictionPolicy` trait.

use super::gated::{GatedArc, GatedLru, GatedParams};
use super::prefix_freq::PrefixFreq;
use super::{BlockInfo, EvictionPolicy};

/// The policies, with their name and their protected segment's length.
trait Gated: EvictionPolicy {
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
    fn proven(&self) -> usize;
}

impl<const ADAPT: bool> Gated for super::gated::Gated<ADAPT> {
    fn proven(&self) -> usize {
        self.proven_len()
    }
}

impl Gated for PrefixFreq {
    fn proven(&self) -> usize {
        self.proven_len()
    }
}

/// The default protected share, in 1/64ths.
fn share_64ths() -> usize {
    GatedParams::default().protected_share_64ths as usize
}

/// A leaf block with a well-spread hash derived from `h`.
fn info(h: u128) -> BlockInfo {
    BlockInfo {
        hash: super::test_hash(h),
        position: 0,
        is_leaf: true,
    }
}

/// Every such policy, fresh, for a tier of `capacity` slots.
fn both(capacity: usize) -> [Box<dyn Gated>; 3] {
    [
        Box::new(GatedLru::new(capacity)),
        // Without its duel with a shadow LRU (tested in `gated.rs`): at
        // these sizes the shadow is the whole tier, and these hand-made
        // sequences (evictions of a tier that is not full) are ones LRU
        // would have hit, so the duel would move the split under the test.
        Box::new(<GatedArc as super::BuildPolicy>::build(
            capacity,
            &GatedParams {
                duel_sample_rate: 0,
                ..GatedParams::default()
            },
        )),
        Box::new(PrefixFreq::new(capacity)),
    ]
}

#[test]
fn one_hit_wonders_go_before_proven_blocks() {
    for mut p in both(16) {
        p.on_register(1, &info(100));
        p.on_hit(1, &info(100));
        p.insert(1, &info(100));
        p.on_register(2, &info(200));
        p.insert(2, &info(200));
        assert_eq!(
            p.evict(),
            Some(2),
            "{}: seen once goes first although newer",
            p.name()
        );
        assert_eq!(p.evict(), Some(1), "{}", p.name());
        assert_eq!(p.evict(), None, "{}", p.name());
    }
}

#[test]
fn remembers_evicted_blocks() {
    for mut p in both(16) {
        p.on_register(3, &info(7));
        p.insert(3, &info(7));
        assert_eq!(p.evict(), Some(3));
        p.on_evicted(3, &info(7));
        // Recomputed later into another slot: now proven.
        p.on_register(4, &info(7));
        p.on_register(5, &info(8));
        p.insert(4, &info(7));
        p.insert(5, &info(8));
        assert_eq!(p.evict(), Some(5), "{}", p.name());
        assert_eq!(p.evict(), Some(4), "{}", p.name());
    }
}

#[test]
fn wasted_tails_go_first() {
    for mut p in both(64) {
        let mut h = 1000u128;
        // Many requests of two fresh blocks whose tails are evicted unused.
        for _ in 0..20 {
            p.on_register(0, &info(h));
            p.on_register(1, &info(h + 1));
            p.insert(1, &info(h + 1));
            p.insert(0, &info(h));
            assert_eq!(p.evict(), Some(1));
            p.on_evicted(1, &info(h + 1));
            assert_eq!(p.evict(), Some(0));
            p.on_evicted(0, &info(h));
            h += 2;
        }
        // Now a tail released after an older head is still evicted first.
        p.on_register(5, &info(1));
        p.insert(5, &info(1));
        p.on_register(6, &info(2));
        p.insert(6, &info(2)); // the tail of the second request
        assert_eq!(p.evict(), Some(6), "{}", p.name());
        assert_eq!(p.evict(), Some(5), "{}", p.name());
    }
}

#[test]
fn hit_proven_blocks_get_extra_passes() {
    for mut p in both(64) {
        for (slot, h, hits) in [(0u32, 10u128, 3usize), (1, 20, 1)] {
            p.on_register(slot, &info(h));
            for _ in 0..hits {
                p.on_hit(slot, &info(h));
            }
            p.insert(slot, &info(h));
        }
        // Both proven; slot 0 is older but was hit 3 times, slot 1 once:
        // slot 0 is re-queued behind slot 1, which is re-queued once too.
        assert_eq!(p.evict(), Some(1), "{}", p.name());
        assert_eq!(p.evict(), Some(0), "{}", p.name());
    }
}

#[test]
fn proven_overflow_is_demoted() {
    let cap = 64;
    for mut p in both(cap) {
        for s in 0..cap as u32 {
            let i = info(1000 + s as u128);
            p.on_register(s, &i);
            p.on_hit(s, &i);
            p.insert(s, &i);
        }
        assert_eq!(p.proven(), cap * share_64ths() / 64, "{}", p.name());
        assert_eq!(p.len(), cap);
        // Demoted blocks are the oldest proven ones, evicted first.
        assert_eq!(p.evict(), Some(0), "{}", p.name());
    }
}

#[test]
fn reused_continuations_are_protected() {
    /// Match the block at position `t - 1` (slot `(t - 1) % 64`), register
    /// its continuation at `t`, and return whether the continuation went
    /// to the protected segment when released.
    fn turn(p: &mut dyn Gated, t: u32) -> bool {
        let prev = (t - 1) % 64;
        let mut i = info(t as u128 + 1);
        i.position = t;
        let mut pi = info(t as u128);
        pi.position = t - 1;
        p.remove(prev);
        p.on_hit(prev, &pi);
        p.on_register(t % 64, &i);
        let before = p.proven();
        p.insert(t % 64, &i);
        let protected = p.proven() > before;
        p.insert(prev, &pi);
        protected
    }
    for mut p in both(64) {
        // A chat: each turn matches the previous turn's blocks and adds one.
        p.on_register(0, &info(1));
        p.insert(0, &info(1));
        assert!(!turn(&mut *p, 1), "{}: no verdict yet", p.name());
        for t in 2..40u32 {
            turn(&mut *p, t);
        }
        // Continuations were reused (the next turn matched them): a new one
        // is protected on its first access.
        assert!(turn(&mut *p, 40), "{}", p.name());
    }
}

#[test]
fn gated_arc_moves_its_split_both_ways() {
    let cap = 4096;
    let mut p = GatedArc::new(cap);
    let max = cap * share_64ths() / 64;
    assert_eq!(p.protected_cap(), max);
    // Blocks registered again right after leaving probation: probation
    // should have been larger.
    for k in 0..64u128 {
        for _ in 0..2 {
            p.on_register(0, &info(5000 + k));
            p.insert(0, &info(5000 + k));
            assert_eq!(p.evict(), Some(0));
            p.on_evicted(0, &info(5000 + k));
        }
    }
    let shrunk = p.protected_cap();
    assert!(shrunk < max, "{shrunk}");
    // Hits on blocks demoted from proven: proven should have been larger.
    let fill = max as u32 + 64;
    for s in 0..fill {
        p.on_register(s, &info(9000 + s as u128));
        p.on_hit(s, &info(9000 + s as u128));
        p.insert(s, &info(9000 + s as u128));
    }
    for s in 0..64u32 {
        // Demoted blocks are the oldest proven ones: 0, 1, ...
        p.remove(s);
        p.on_hit(s, &info(9000 + s as u128));
        p.insert(s, &info(9000 + s as u128));
    }
    assert!(
        p.protected_cap() > shrunk,
        "{} vs {shrunk}",
        p.protected_cap()
    );
    // The fixed policy never moves.
    let mut f = GatedLru::new(cap);
    f.on_register(0, &info(1));
    f.insert(0, &info(1));
    assert_eq!(f.protected_cap(), max);
}
