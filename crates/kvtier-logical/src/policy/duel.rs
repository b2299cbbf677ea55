//! `gated-duel`'s set dueling: two miniature caches, fed the same spatial
//! sample of the tier's accesses (one hash in `duel_sample_rate`, as
//! SHARDS-style miniature simulation does), one in LRU's order
//! ([`ShadowLru`]) and one in `gated-lru`'s order (a [`GatedLru`] of
//! `capacity / rate` slots that borrows the full tier's class verdicts).
//! A saturating counter moves towards the miniature that hit when the
//! other missed, and the tier follows the order whose miniature is ahead
//! (with a hysteresis margin), as DIP's set dueling does.
//!
//! Both miniatures see the whole history from the start, so the choice
//! has no transient of its own: there is no share to walk from a start
//! point, and the order can flip as soon as the traffic says so. The tier
//! starts in LRU's order (the reference: a large tier that fills before
//! its first eviction has no evidence yet, and the evidence against an
//! order comes one reuse distance after its evictions) and leaves it at
//! the first net gain of the gated miniature; it goes back only once that
//! miniature is `duel_hysteresis` differing samples behind. Only sampled
//! accesses touch the miniatures: two small tables per `rate` accesses.
//!
//! Once LRU's order has won by a wide margin (four times the hysteresis
//! below 0, [`Order::LruSettled`]), the tier also stops keeping its seen
//! filter, which only the gated order reads: most of a large tier of chat
//! traffic's replay runs that way. The margin back (twice the hysteresis)
//! comes well before the order changes (the counter back at 0), so the
//! seen filter has been written again for a while when the gated order
//! returns.

use super::classes::Classes;
use super::gated::{GatedLru, GatedParams, Verdicts};
use super::shadow::{KeyIndex, ShadowLru};
use super::{BuildPolicy, EvictionPolicy, SlotId};
use crate::hash::SequenceHash;

/// Entries a miniature keeps at least (the sampling rate is lowered for
/// small tiers).
const MIN_ENTRIES: usize = 32;

/// Entries a miniature keeps at most (the sampling rate is raised for
/// large tiers, as SHARDS' fixed-size sampling does). A sampled access to
/// a miniature that has left the core's caches costs tens of nanoseconds,
/// and past a few hundred entries a larger sample no longer changed the
/// choice: Mooncake files at 16,000 to 64,000 blocks gave the same hit
/// rates with one hash in 32, 64 or 128, within the spread between hash
/// salts. 512 rather than 1,024 moved the conversation trace by -0.03
/// points and its 4,711-request cut by -0.06 at 32,000 blocks (nothing at
/// 64,000) and halved the duel's work there.
const MAX_ENTRIES: usize = 512;

/// The sampling rate of a tier of `capacity` slots: `rate` (a power of
/// two), lowered so a miniature keeps at least [`MIN_ENTRIES`] and raised so
/// it keeps at most [`MAX_ENTRIES`].
fn duel_rate(capacity: usize, rate: u32) -> u32 {
    let mut rate = super::shadow::sample_rate(capacity, rate, MIN_ENTRIES);
    while capacity / rate as usize > MAX_ENTRIES && rate < 1 << 16 {
        rate *= 2;
    }
    rate
}

/// The miniature of `gated-lru`: a [`GatedLru`] over slots
/// `0..capacity`, indexed by the sampled keys.
#[derive(Debug)]
struct MiniGated {
    gated: GatedLru,
    index: KeyIndex,
    /// Slots handed out so far (then victims are reused).
    used: u32,
    cap: u32,
}

/// The sequence hash the miniature's seen filter files `key` under. The
/// filter reads the hash's high half for its bits, and the sampled hashes
/// share the bits of that half the sampling tested; the key (the hash's
/// low half, an independent xxh3 output with its lowest bit forced to 1)
/// is spread enough as it is, so its bits are only moved: bits 1-15 pick
/// the filter's three bits, bits 32 and up its bucket.
#[inline(always)]
pub(super) fn remix(key: u64) -> SequenceHash {
    SequenceHash(((key.rotate_right(1) as u128) << 64) | key.rotate_right(32) as u128)
}

impl MiniGated {
    fn new(capacity: usize, params: &GatedParams) -> Self {
        MiniGated {
            gated: GatedLru::build(capacity, params),
            index: KeyIndex::new(capacity),
            used: 0,
            cap: capacity as u32,
        }
    }

    /// An access to the sampled `key`, released as the full tier released
    /// it (`after_register`, `cont`, `verdicts`): whether the miniature hit.
    /// A victim goes to `below` (the lower tiers' miniature), if any.
    fn access(
        &mut self,
        key: u64,
        after_register: bool,
        cont: bool,
        verdicts: Verdicts,
        below: Option<&mut ShadowLru>,
    ) -> bool {
        let miss = match self.index.get(key) {
            Ok(s) => {
                self.gated.remove(s);
                self.gated.mini_hit(s);
                self.gated.place(s, after_register, Some(verdicts));
                return true;
            }
            Err(miss) => miss,
        };
        let s: SlotId = if self.used < self.cap {
            self.used += 1;
            self.used - 1
        } else {
            let v = self
                .gated
                .evict()
                .expect("a full miniature lists every slot");
            let old = self.index.key(v);
            self.gated.mini_evicted(v, old);
            self.index.remove(v);
            if let Some(b) = below {
                b.access(old);
            }
            v
        };
        self.index.insert(miss, s);
        self.gated.mini_register(s, key, cont);
        self.gated.place(s, after_register, Some(verdicts));
        false
    }
}

/// The order a `gated-duel` tier evicts in, as its duel last chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// `gated-lru`'s order.
    Gated,
    /// LRU's order (release order, tails first); the gated bookkeeping is
    /// kept up so the gated order can take over at once.
    Lru,
    /// LRU's order, far ahead: the gated bookkeeping is paused.
    LruSettled,
}

/// The duel of `gated-duel`: the two miniatures and the counter.
#[derive(Debug)]
pub(super) struct Duel {
    lru: ShadowLru,
    mini: MiniGated,
    /// The lower tiers under the gated order: an LRU of their sampled
    /// size, filled by the gated miniature's victims (`None`: no tier
    /// below).
    below: Option<ShadowLru>,
    /// Positive: `gated-lru`'s miniature is ahead.
    counter: i32,
    max: i32,
    hysteresis: i32,
    /// The order the tier follows (LRU's at the start), as last reported.
    order: Order,
}

/// Counter at or below which LRU's order counts as settled
/// ([`Order::LruSettled`]): four times the hysteresis below 0 (at least
/// 1). At twice the hysteresis, the pause began and ended often enough
/// on tiers near the crossover of the two orders (Mooncake's conversation
/// trace at 10,000 blocks) to cost 0.2 points of hit rate.
fn settle_at(hysteresis: i32) -> i32 {
    -(4 * hysteresis).max(1)
}

/// Counter above which a settled LRU order is unsettled again (the gated
/// bookkeeping resumes): twice the hysteresis below 0, so the seen filter
/// is written again for at least that many differing samples before the
/// gated order can return. Between the two thresholds the state holds, so
/// the pause does not flap.
fn unsettle_above(hysteresis: i32) -> i32 {
    -2 * hysteresis
}

impl Duel {
    /// The duel for a tier of `capacity` slots (`params` checked).
    pub(super) fn new(capacity: usize, params: &GatedParams) -> Self {
        let rate = duel_rate(capacity, params.duel_sample_rate);
        let here = ShadowLru::with_rate((capacity / rate as usize).max(1), rate);
        let mini = MiniGated::new(here.capacity(), params);
        let below_entries = (params.duel_below_blocks / rate as u64) as usize;
        let (lru, below) = if below_entries == 0 {
            (here, None)
        } else {
            (
                ShadowLru::with_rate(here.capacity() + below_entries, rate),
                Some(ShadowLru::with_rate(below_entries, rate)),
            )
        };
        Duel {
            lru,
            mini,
            below,
            counter: 0,
            max: params.duel_counter_max as i32,
            hysteresis: params.duel_hysteresis as i32,
            order: Order::Lru,
        }
    }

    /// The counter (tests).
    #[cfg(test)]
    pub(super) fn counter(&self) -> i32 {
        self.counter
    }

    /// The sampling mask: a hash is sampled when the low 32 of its high 64
    /// bits, masked with it, are 0 (as [`ShadowLru::sampled`]).
    pub(super) fn sample_mask(&self) -> u32 {
        self.lru.rate() - 1
    }

    /// The tier released a block of `hash` (placed with `after_register`,
    /// `cont` and `verdicts`): if it is sampled, both miniatures see the
    /// access. Returns the new order when it changes.
    #[inline(always)]
    pub(super) fn access(
        &mut self,
        hash: SequenceHash,
        after_register: bool,
        cont: bool,
        classes: &Classes,
    ) -> Option<Order> {
        let key = self.lru.sampled(hash)?;
        let verdicts = Verdicts {
            tails_wasted: classes.tails_wasted(),
            continuations_pay: classes.continuations_pay(),
        };
        self.sampled_access(key, after_register, cont, verdicts)
    }

    #[inline(never)]
    fn sampled_access(
        &mut self,
        key: u64,
        after_register: bool,
        cont: bool,
        verdicts: Verdicts,
    ) -> Option<Order> {
        let lru_hit = self.lru.access(key);
        // A block the tiers below hold moves up: a hit of the whole.
        let below_hit = self.below.as_mut().is_some_and(|b| b.take(key));
        let gated_hit = self
            .mini
            .access(key, after_register, cont, verdicts, self.below.as_mut())
            || below_hit;
        if lru_hit == gated_hit {
            return None;
        }
        self.follow(if gated_hit { 1 } else { -1 })
    }

    /// One sampled access that one miniature hit and the other missed
    /// (`d`: +1 the gated one, -1 LRU's): the counter moves and the order
    /// follows; the new order when it changes.
    fn follow(&mut self, d: i32) -> Option<Order> {
        self.counter = (self.counter + d).clamp(-self.max, self.max);
        // LRU's order is left as soon as the gated miniature is ahead, and
        // taken back only `hysteresis` differing samples behind.
        let lru = if self.order == Order::Gated {
            self.counter <= -self.hysteresis
        } else {
            self.counter < 0
        };
        let order = if !lru {
            Order::Gated
        } else if self.counter <= settle_at(self.hysteresis)
            || (self.order == Order::LruSettled && self.counter <= unsettle_above(self.hysteresis))
        {
            Order::LruSettled
        } else {
            Order::Lru
        };
        if order != self.order {
            self.order = order;
            return Some(order);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_hash;

    const V: Verdicts = Verdicts {
        tails_wasted: false,
        continuations_pay: false,
    };

    /// Feed `keys` to a duel for a tier of `cap` slots, every hash sampled.
    fn run(cap: usize, keys: impl Iterator<Item = u128>) -> Duel {
        run_over(cap, 0, keys)
    }

    /// [`run`] for a tier with `below` blocks of lower tiers.
    fn run_over(cap: usize, below: u64, keys: impl Iterator<Item = u128>) -> Duel {
        let params = GatedParams {
            duel_sample_rate: 1,
            duel_below_blocks: below,
            ..GatedParams::default()
        };
        let mut d = Duel::new(cap, &params);
        for k in keys {
            d.sampled_access(d.lru.sampled(test_hash(k)).unwrap(), false, false, V);
        }
        d
    }

    #[test]
    fn recency_traffic_chooses_lru_order() {
        // Every key comes back once, about 400 distinct keys later: within
        // LRU's reach, beyond the gated order's probation segment.
        let cap = 512;
        let keys = (200..20_000u128).flat_map(|t| [t, t - 200]);
        let d = run(cap, keys);
        assert!(d.order != Order::Gated, "counter {}", d.counter);
    }

    #[test]
    fn a_hot_set_among_scans_keeps_the_gated_order() {
        // 350 hot keys among one-off ones: LRU's reach is 256 hot keys.
        let cap = 512;
        let keys = (0..40_000u128).flat_map(|i| [1_000_000 + i, i % 350]);
        let d = run(cap, keys);
        assert_eq!(d.order, Order::Gated, "counter {}", d.counter);
        assert!(d.counter > 0);
    }

    #[test]
    fn tiers_below_count_for_the_choice() {
        // A hot set of half the tier between scans of twice the tier: alone,
        // LRU misses the hot set every round and the gated order keeps it,
        // so the gated order wins. With four tiers' worth below, LRU over
        // the whole hierarchy holds the hot set too, the two orders tie,
        // and the tier keeps LRU's order.
        let cap = 256;
        let keys = || {
            (0..40u128).flat_map(move |r| {
                (0..cap as u128 / 2)
                    .chain((0..2 * cap as u128).map(move |i| 1_000_000 + r * 1000 + i))
            })
        };
        let alone = run(cap, keys());
        assert_eq!(alone.order, Order::Gated, "counter {}", alone.counter);
        let over = run_over(cap, 4 * cap as u64, keys());
        assert!(over.order != Order::Gated, "counter {}", over.counter);
        assert!(over.counter.abs() <= over.hysteresis, "{}", over.counter);
    }

    #[test]
    fn a_settled_lru_order_pauses_until_well_before_the_gated_order_returns() {
        // Recency traffic: LRU's miniature leads by far.
        let mut d = run(512, (200..20_000u128).flat_map(|t| [t, t - 200]));
        assert_eq!(d.order, Order::LruSettled, "counter {}", d.counter);
        // Walk the counter up by hand (default hysteresis 8): the pause
        // holds down to -16, ends above it, and the gated order only
        // returns at 0.
        d.counter = -20;
        let mut seen = Vec::new();
        for _ in 0..20 {
            if let Some(o) = d.follow(1) {
                seen.push((d.counter, o));
            }
        }
        assert_eq!(seen, [(-15, Order::Lru), (0, Order::Gated)]);
        // Back down: LRU's order at -8 (the hysteresis), settled at -32.
        let mut seen = Vec::new();
        for _ in 0..40 {
            if let Some(o) = d.follow(-1) {
                seen.push((d.counter, o));
            }
        }
        assert_eq!(seen, [(-8, Order::Lru), (-32, Order::LruSettled)]);
    }

    #[test]
    fn miniatures_keep_between_32_and_512_entries() {
        assert_eq!(duel_rate(500, 32), 8, "small tiers sample more");
        assert_eq!(duel_rate(2000, 32), 32);
        assert_eq!(duel_rate(16_384, 32), 32);
        assert_eq!(duel_rate(32_768, 32), 64, "large tiers sample less");
        assert_eq!(duel_rate(64_000, 32), 128);
        assert_eq!(duel_rate(1 << 20, 32), 2048);
        assert_eq!(duel_rate(8, 32), 1);
        let d = Duel::new(200_000, &GatedParams::default());
        assert!(d.lru.capacity() <= MAX_ENTRIES && d.lru.capacity() >= MAX_ENTRIES / 2);
    }

    #[test]
    fn the_miniature_reuses_its_slots() {
        let mut m = MiniGated::new(8, &GatedParams::default());
        for k in 1..100u64 {
            assert!(!m.access(k * 2, false, false, V, None));
        }
        assert_eq!(m.gated.len(), 8);
        assert!(m.access(198, false, false, V, None), "the last key is held");
    }
}
