//! The default policy: a frequency-gated segmented LRU built to run at LRU's
//! speed (`gated-lru`), and its variant with an ARC-style adaptive split
//! (`gated-arc`).

use super::classes::{ClassParams, Classes};
use super::duel::{Duel, Order};
use super::ghost::RecentGhost;
use super::lru::NIL;
use super::seen::{SeenFilter, SeenParams};
use super::shadow::ShadowLru;
use super::{BlockInfo, BuildPolicy, EvictionPolicy, InvalidParam, SlotId, TuningParams};
use crate::hash::SequenceHash;

policy_params! {
    /// Tuning of `gated-lru` and `gated-arc` (the `gated-arc`-only fields
    /// are ignored by `gated-lru`). The defaults are the tuned values
    /// (`docs/policy-design-log.md`).
    pub struct GatedParams {
        /// Accesses (registrations and hits) that make a block "proven". Two
        /// is the one-hit-wonder cut: on LLM traces most computed blocks (a
        /// request's unique tail, one-off documents) are never read again,
        /// while a block read twice is several times more likely to be read
        /// again soon (on the Mooncake trace, 22% against 8% within 200
        /// requests). Higher cuts starve recently proven blocks. At least 1.
        proven_min: u8 [1..=255] = 2,
        /// Extra passes a proven block can earn through hits (S3-FIFO's 2-bit
        /// counter: 3): frequently hit proven blocks are re-queued instead of
        /// evicted. At most 254.
        max_passes: u8 [0..=254] = 3,
        /// Share of the capacity, in 1/64ths, that inactive proven blocks may
        /// occupy before the oldest is demoted to the probation segment (at
        /// its most-recent end). 56/64 = 87.5%, close to SLRU's usual 80%:
        /// proven blocks are protected from a flood of new ones, while a
        /// changing working set still gets an eighth of the cache to prove
        /// itself in. `gated-arc`'s upper bound. At most 64.
        protected_share_64ths: u32 [0..=64] = 56,
        /// Head start of a proven block over a new one, in cache turnovers
        /// (units of `capacity` releases). A proven block that has sat unused
        /// while 16 cache's worth of blocks were released is evicted before
        /// newer one-timers, so a workload whose hot set moved on (finished
        /// sessions, retired documents) gets its cache back. Without a
        /// finite credit, finished chat sessions held the cache: -2.2 points
        /// on `multi-turn` at 4,000 blocks (measured on `prefix-freq`). The
        /// bound matters on small tiers, where a turnover is only a few
        /// dozen requests: 8 turnovers (the seen filter's memory) evicted
        /// hot prefixes between their reuses on the synthetic trace at
        /// 1,000 blocks (`gated-duel` 0.0867 against 0.0885 with 16), while
        /// 16 to 64 gave identical hit rates on every trace and generated
        /// workload measured (the protected share binds first).
        proven_credit_turnovers: u32 = 16,
        /// How the tail and continuation verdicts are learned.
        classes: ClassParams = ClassParams::default(),
        /// Size and memory of the seen filter.
        seen: SeenParams = SeenParams::default(),
        /// `gated-arc`: lower bound of the protected share, in 1/64ths of
        /// the capacity. 0: when the duel with the shadow LRU says so, the
        /// tier runs in plain release order (LRU, tails first), which large
        /// tiers of chat traffic need (with 8, an eighth of the tier stayed
        /// protected and lost 0.5-0.9 points to LRU at 32,000-64,000 blocks
        /// of Mooncake's conversation trace). At most
        /// `protected_share_64ths`.
        min_protected_share_64ths: u32 [0..=64] = 0,
        /// `gated-arc`: the protected share moves by `capacity /
        /// adapt_step_div` slots per signal (ARC's adaptation, scaled so that
        /// its speed in cache turnovers does not depend on the capacity).
        /// Signals: a block registered again within two probation residences
        /// of its last registration (a larger *new* would have kept it:
        /// shrink *proven*), and a hit on a block demoted from *proven* (a
        /// larger *proven* would have kept it: grow). On the Mooncake chat
        /// trace at 16,000 / 32,000 blocks, /512 to /4,096 gave
        /// 0.2467-0.2545 / 0.2985-0.3047 and /2,048 0.2537 / 0.3000; other
        /// workloads and sizes moved by less than 0.3 points. At least 1.
        adapt_step_div: u32 [1..=u32::MAX] = 2048,
        /// `gated-arc`: net signals of one kind (running sum) that move the
        /// share, by that many steps (16). Signals that alternate move
        /// nothing and demote nothing. At least 1.
        adapt_batch: u32 [1..=u32::MAX] = 16,
        /// `gated-arc`: entries of the ghost of registrations per slot (2:
        /// 16 bytes per slot). A key keeps its entry for `n` later
        /// registrations with probability about e^(-n / entries): 61% at
        /// half the table, 37% at the whole table (about two probation
        /// windows at the largest protected share). Losses only weaken the
        /// "grow probation" signal; both of `gated-arc`'s signals are then
        /// counted in running sums. In 1..=1024.
        ghost_entries_per_slot: u32 [1..=1024] = 2,
        /// `gated-arc`: one hash in this many (a power of two; 0: no duel)
        /// feeds a shadow LRU of `capacity / rate` entries (`shadow.rs`),
        /// the policy's own hits and misses on those hashes are compared
        /// with the shadow's, and the difference moves the protected share:
        /// towards LRU's order when LRU would have hit more. Lowered for
        /// small tiers so the shadow keeps at least 64 entries. 32 costs
        /// one table access per 32 block accesses. At most 65,536.
        duel_sample_rate: u32 [0..=65536] = 32,
        /// `gated-arc`: signals (in `adapt_step_div` steps) of one sampled
        /// miss that LRU would have hit. 32: a sample stands for 32 blocks.
        duel_miss_weight: u32 [0..=65536] = 32,
        /// `gated-arc`: signals of one sampled hit that LRU would have
        /// missed. Half of `duel_miss_weight` (16): the split only leaves
        /// LRU's order for a clear gain, so the duel settles where the
        /// policy beats LRU, not where the two tie. With equal weights the
        /// chat trace lost 0.4-0.6 points to LRU at 32,000 blocks.
        duel_hit_weight: u32 [0..=65536] = 16,
        /// `gated-duel`: bound of the duel's saturating counter, in sampled
        /// accesses that one miniature hit and the other missed. It is the
        /// counter's memory: after a change of traffic, the order follows
        /// within at most twice this many differing samples. Smaller
        /// bounds (12-48) flapped more on small tiers (-0.1 to -0.5 points
        /// on the synthetic trace at 1,000 blocks). At least 1.
        duel_counter_max: u32 [1..=1_000_000] = 256,
        /// `gated-duel`: differing samples the gated miniature must fall
        /// behind (net) before the tier goes back to LRU's order; it leaves
        /// LRU's order (the start) as soon as that miniature is ahead. The
        /// asymmetry keeps small tiers, where the gated order wins, from
        /// flapping back on a tie: with 0, Mooncake's synthetic trace lost
        /// 0.4 points at 1,000 blocks; 8 and 16 gave the same hit rates
        /// within 0.05 points elsewhere. Below `duel_counter_max`.
        duel_hysteresis: u32 [0..=1_000_000] = 8,
        /// `gated-duel`: blocks of the tiers below this one (0: none), which
        /// hold this tier's victims. What counts then is the hit rate of
        /// all the tiers together, so the duel compares LRU over this tier
        /// and the ones below (one sampled LRU of `capacity + below`)
        /// with the gated order here over an LRU of `below` fed by its
        /// victims. A multi-tier setup fills it in for G1 from the lower
        /// tiers' sizes.
        duel_below_blocks: u64 = 0,
    }
}

/// Probation segment: blocks seen once.
const NEW: u8 = 0;
/// Protected segment: blocks seen at least `proven_min` times.
const PROVEN: u8 = 1;
/// `Node::list` of a slot in no segment.
const NONE: u8 = u8::MAX;

// The two segments are one circular list through the sentinel, *new* then
// *proven*, each from its eviction end to its most recent end:
//
//     sentinel -> new (oldest .. newest) -> proven (oldest .. newest) -> sentinel
//
// `boundary` is the oldest proven node (the sentinel when *proven* is
// empty). The most recent end of *new* is next to the eviction end of
// *proven*, so demoting the oldest proven block to the most recent end of
// *new* (SLRU's demotion) only moves the boundary past it: no link is
// rewritten and no other node is touched.

/// `Node::flags`: a continuation block not yet reused.
const CONT: u8 = 1;
/// `Node::flags`: a request's tail block not yet reused.
const TAIL: u8 = 2;
/// `Node::flags`: hit since it was registered (its eviction refreshes the
/// seen filter).
const HIT: u8 = 4;
/// `Node::flags` (`gated-arc`): demoted from *proven* and not hit since.
const DEMOTED: u8 = 8;

/// Per-slot state: links and the policy's data in 16 bytes, so every call
/// touches one cache line per slot.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct Node {
    prev: u32,
    next: u32,
    /// Release clock at the slot's last insert (wrapping; only differences
    /// are used).
    stamp: u32,
    /// Segment the slot is listed in, or `NONE`.
    list: u8,
    /// Accesses: 1 or 2 at registration (2 if the seen filter knew the
    /// hash), plus one per hit, saturating.
    freq: u8,
    /// Extra passes through the proven segment earned by hits.
    passes: u8,
    flags: u8,
}

/// A listed slot's share of `Gated::counts`: one listed slot, and one
/// proven slot in the high half if `list` is *proven* (`NEW` is 0 and
/// `PROVEN` 1, so the segment is the high half's count itself).
#[inline(always)]
fn count_of(list: u8) -> u64 {
    const _: () = assert!(NEW == 0 && PROVEN == 1);
    debug_assert!(list <= PROVEN);
    1 + ((list as u64) << 32)
}

/// How many release ticks `later` is after `earlier`, on the wrapping clock
/// (negative if it is before). Exact while the two are less than 2^31 ticks
/// apart; beyond that a proven block may only lose its credit late.
#[inline(always)]
fn stamp_gap(earlier: u32, later: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// Frequency-gated segmented LRU: [`GatedLru`] (the default, fixed split) and
/// [`GatedArc`] (adaptive split). `ADAPT` selects the variant at compile
/// time, so the default carries no adaptation code.
///
/// - When a block becomes inactive it joins the *proven* segment if it was
///   accessed at least [`proven_min`](GatedParams::proven_min) times, counting a registration of a
///   hash the [`SeenFilter`] remembers (computed or evicted in the last 4 to
///   8 cache turnovers) as a second access; else the *new* segment.
///   Frequency while cached is counted in the slot, so a hit touches no
///   table.
/// - Victims come from *new* first, least recently released first, unless
///   the oldest proven block has been idle [`proven_credit_turnovers`](GatedParams::proven_credit_turnovers) cache
///   turnovers longer than the oldest new one. Proven blocks above
///   [`protected_share_64ths`](GatedParams::protected_share_64ths) of the capacity are demoted to the most-recent
///   end of *new*. A proven block at the eviction end that was hit since it
///   was registered is re-queued instead, once per hit up to [`max_passes`](GatedParams::max_passes).
/// - A request's *tail* goes to the eviction end of *new* while tails are
///   rarely reused, and *continuations* are admitted as proven while most
///   are reused (learned online, see `classes.rs`).
/// - No leaf tracking: with tail-first release, a request's blocks enter a
///   segment tail first, so a prefix is already cut from its tail. The store
///   keeps no parent links for it, and victims can be popped in a batch.
///
/// `gated-arc` moves the protected share between
/// `min_protected_share_64ths` and `protected_share_64ths` with ARC's
/// signals ([`adapt_step_div`](GatedParams::adapt_step_div)), using a [`RecentGhost`] of registrations:
/// large tiers whose blocks come back after more than a probation residence
/// but within the tier's size (chat turns) keep them as LRU would. A duel
/// with a sampled shadow LRU ([`ShadowLru`],
/// [`duel_sample_rate`](GatedParams::duel_sample_rate)) adds signals
/// weighted by the measured difference: where LRU's order would hit more,
/// the share goes down to 0 and the tier runs in release order.
///
/// Every call is O(1) (amortised for demotions); all state is in arrays
/// sized at construction.
#[derive(Debug)]
pub struct Gated<const ADAPT: bool, const DUEL: bool = false> {
    /// `capacity` slot nodes, then the sentinel of the segments' list.
    nodes: Vec<Node>,
    /// The sentinel's index (`capacity`).
    base: u32,
    /// The oldest proven node, or the sentinel when *proven* is empty (see
    /// the layout above).
    boundary: u32,
    /// Listed slots (both segments) in the low 32 bits, slots listed in
    /// *proven* in the high 32. One word, always updated whole: as two
    /// `u32` fields, the compiler merged their updates into 8-byte vector
    /// loads that stalled on the 4-byte stores before them (a failed
    /// store-to-load forward, a sixth of `insert`'s time).
    counts: u64,
    seen: SeenFilter,
    protected_cap: usize,
    /// Release clock: number of inserts so far (wrapping).
    clock: u32,
    /// Head start of a proven block over a new one, in release ticks.
    credit: u32,
    classes: Classes,
    /// `gated-arc`: recent registrations, the ghost of *new* (a minimal
    /// table for `gated-lru`, never used).
    recent: RecentGhost,
    /// `gated-arc`: the sampled shadow LRU of the duel (`None`: no duel).
    shadow: Option<ShadowLru>,
    /// `gated-duel`: the two sampled miniatures and their counter (`None`
    /// for the others, or without sampling).
    duel: Option<Box<Duel>>,
    /// `gated-duel`: the order its duel chose (always `Gated` for the
    /// others). In either LRU order the tier evicts in release order; once
    /// it is settled ([`Order::LruSettled`]) the seen filter is neither
    /// read nor written: blocks then register as seen once, and the
    /// filter's older contents stay and fade with its generations once it
    /// is written again.
    order: Order,
    /// `gated-duel`: the duel's sampling mask (`ShadowLru::sampled`), all
    /// ones without a duel.
    duel_mask: u32,
    /// `gated-arc`: [`GatedParams::duel_miss_weight`].
    duel_miss: i32,
    /// `gated-arc`: [`GatedParams::duel_hit_weight`].
    duel_hit: i32,
    /// `gated-arc`: slots the share moves by per signal.
    step: usize,
    /// `gated-arc`: running sum of signals since the share last moved.
    pressure: i32,
    /// `gated-arc`: bounds of `protected_cap`.
    min_protected_cap: usize,
    max_protected_cap: usize,
    /// `gated-arc`: [`GatedParams::adapt_batch`].
    adapt_batch: u32,
    /// [`GatedParams::proven_min`].
    proven_min: u8,
    /// [`GatedParams::max_passes`].
    max_passes: u8,
    capacity: usize,
}

/// The default policy (`gated-lru`): fixed split.
pub type GatedLru = Gated<false>;

/// `gated-arc`: adaptive split.
pub type GatedArc = Gated<true>;

/// `gated-duel`: `gated-lru`'s order or LRU's, whichever a sampled
/// miniature of each would hit more with (`duel.rs`).
pub type GatedDuel = Gated<false, true>;

/// The class verdicts a block is placed with (`Gated::place`): the tier's
/// own, which its miniature (`duel.rs`) borrows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdicts {
    /// Request tails go to the eviction end of *new*.
    pub tails_wasted: bool,
    /// Continuations are admitted as proven.
    pub continuations_pay: bool,
}

impl<const ADAPT: bool, const DUEL: bool> Gated<ADAPT, DUEL> {
    /// The policy for a tier of `capacity` slots, with the default tuning.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, &GatedParams::default())
    }

    /// The policy for a tier of `capacity` slots (`params` checked).
    fn with_params(capacity: usize, params: &GatedParams) -> Self {
        let base = capacity as u32;
        assert!(
            capacity + 2 < NIL as usize,
            "capacity too large for u32 slot ids"
        );
        // Every node starts linked to itself (the sentinels: empty circular
        // lists), so every `prev` / `next` ever stored is an index into
        // `nodes`: even a logic error (unlinking a slot twice) cannot make
        // `node` read out of bounds.
        let nodes = (0..capacity as u32 + 1)
            .map(|i| Node {
                prev: i,
                next: i,
                stamp: 0,
                list: NONE,
                freq: 0,
                passes: 0,
                flags: 0,
            })
            .collect();
        let credit = (capacity as u64 * params.proven_credit_turnovers as u64).min(i32::MAX as u64);
        let max_protected_cap = capacity * params.protected_share_64ths as usize / 64;
        let duel =
            (DUEL && params.duel_sample_rate > 0).then(|| Box::new(Duel::new(capacity, params)));
        let duel_mask = duel.as_ref().map_or(u32::MAX, |d| d.sample_mask());
        let mut g = Gated {
            nodes,
            base,
            boundary: base,
            counts: 0,
            seen: SeenFilter::with_params(capacity, &params.seen),
            protected_cap: max_protected_cap,
            clock: 0,
            credit: credit as u32,
            classes: Classes::new(&params.classes),
            recent: RecentGhost::with_entries(
                if ADAPT { capacity } else { 0 },
                params.ghost_entries_per_slot as usize,
            ),
            shadow: (ADAPT && !DUEL && params.duel_sample_rate > 0)
                .then(|| ShadowLru::new(capacity, params.duel_sample_rate, 64)),
            duel,
            duel_mask,
            order: Order::Gated,
            duel_miss: params.duel_miss_weight as i32,
            duel_hit: params.duel_hit_weight as i32,
            step: (capacity / params.adapt_step_div as usize).max(1),
            pressure: 0,
            min_protected_cap: capacity * params.min_protected_share_64ths as usize / 64,
            max_protected_cap,
            adapt_batch: params.adapt_batch,
            proven_min: params.proven_min,
            max_passes: params.max_passes,
            capacity,
        };
        if g.duel.is_some() {
            // `gated-duel` starts in LRU's order (`duel.rs`).
            g.set_order(Order::Lru);
        }
        g
    }

    /// Node `i`, without a bounds check. Every index used is a slot id
    /// checked against the capacity at the entry points ([`Self::check`]),
    /// the sentinel (`base`), or a link read from a node: links
    /// start as the node's own index and `link` only ever sets them to one
    /// of those.
    #[inline(always)]
    fn node(&self, i: u32) -> &Node {
        debug_assert!((i as usize) < self.nodes.len());
        // SAFETY: `i < self.nodes.len()` (see above).
        unsafe { self.nodes.get_unchecked(i as usize) }
    }

    /// [`node`](Self::node), mutable.
    #[inline(always)]
    fn node_mut(&mut self, i: u32) -> &mut Node {
        debug_assert!((i as usize) < self.nodes.len());
        // SAFETY: `i < self.nodes.len()` (see `node`).
        unsafe { self.nodes.get_unchecked_mut(i as usize) }
    }

    /// Refuse a slot id outside the tier (the store never passes one).
    #[inline(always)]
    fn check(&self, slot: SlotId) {
        assert!(slot < self.base, "slot {slot} out of range");
    }

    /// List `slot` at the most recent end of segment `list`.
    #[inline(always)]
    fn link_back(&mut self, list: u8, slot: SlotId) {
        if list == PROVEN {
            let s = self.base;
            let tail = self.node(s).prev;
            self.link(list, slot, tail, s);
            if self.boundary == s {
                self.boundary = slot;
            }
        } else {
            let b = self.boundary;
            let tail = self.node(b).prev;
            self.link(list, slot, tail, b);
        }
    }

    /// List `slot` at the eviction end of *new* (before every listed node).
    #[inline(always)]
    fn link_front_new(&mut self, slot: SlotId) {
        let s = self.base;
        let head = self.node(s).next;
        self.link(NEW, slot, s, head);
    }

    /// The eviction ends of *new* and *proven*, each `None` when the segment
    /// is empty.
    #[inline(always)]
    fn heads(&self) -> (Option<u32>, Option<u32>) {
        let (s, b) = (self.base, self.boundary);
        let n = self.node(s).next;
        ((n != b).then_some(n), (b != s).then_some(b))
    }

    #[inline(always)]
    fn link(&mut self, list: u8, slot: SlotId, prev: u32, next: u32) {
        let n = self.node_mut(slot);
        debug_assert!(n.list == NONE, "slot {slot} already listed");
        n.prev = prev;
        n.next = next;
        n.list = list;
        self.node_mut(prev).next = slot;
        self.node_mut(next).prev = slot;
        self.counts += count_of(list);
    }

    /// Unlink a listed slot.
    #[inline(always)]
    fn unlink(&mut self, slot: SlotId) {
        let n = self.node_mut(slot);
        let (prev, next, list) = (n.prev, n.next, n.list);
        debug_assert!(list != NONE);
        n.list = NONE;
        if slot == self.boundary {
            self.boundary = next;
        }
        self.node_mut(prev).next = next;
        self.node_mut(next).prev = prev;
        self.counts -= count_of(list);
    }

    /// Pop the next victim of the proven segment (not empty): blocks with
    /// passes left are re-queued (one pass used) instead.
    #[inline(always)]
    fn pop_proven(&mut self) -> SlotId {
        loop {
            let f = self.boundary;
            debug_assert!(f != self.base, "the proven segment is not empty");
            if self.node(f).passes == 0 {
                self.unlink(f);
                return f;
            }
            self.clock = self.clock.wrapping_add(1);
            let clock = self.clock;
            let n = self.node_mut(f);
            n.passes -= 1;
            n.stamp = clock;
            self.unlink(f);
            self.link_back(PROVEN, f);
        }
    }

    /// Record the outcome of a block leaving the cache (`reused == false`)
    /// or being hit (`reused == true`) for the classes it belongs to.
    #[inline(always)]
    fn outcome(&mut self, slot: SlotId, reused: bool) -> u8 {
        let n = self.node_mut(slot);
        let flags = n.flags;
        n.flags &= !(CONT | TAIL | DEMOTED);
        if ADAPT && reused && flags & DEMOTED != 0 {
            // A demoted block was hit: a larger protected segment would have
            // kept it there.
            self.adapt(1);
        }
        if flags & CONT != 0 {
            self.classes.record_cont(reused);
        }
        if flags & TAIL != 0 {
            self.classes.record_tail(reused);
        }
        flags
    }

    /// `gated-arc`: an adaptation signal, positive for "a larger protected
    /// segment would have kept this block", negative for "a larger
    /// probation segment would have" (ARC's signals are ±1, the duel's are
    /// weighted). Once the running sum reaches `±adapt_batch`, the share
    /// moves by that many steps. Excess proven blocks are demoted
    /// at the next insert (each block at most once per insertion into
    /// *proven*: amortised O(1)).
    #[inline]
    fn adapt(&mut self, signal: i32) {
        self.pressure += signal;
        if self.pressure.unsigned_abs() < self.adapt_batch {
            return;
        }
        let (lo, hi) = (self.min_protected_cap, self.max_protected_cap);
        let delta = self.step * self.pressure.unsigned_abs() as usize;
        self.protected_cap = if self.pressure > 0 {
            (self.protected_cap + delta).min(hi)
        } else {
            self.protected_cap.saturating_sub(delta).max(lo)
        };
        self.pressure = 0;
    }

    /// The protected segment's current share, in slots (fixed for
    /// `gated-lru`).
    pub fn protected_cap(&self) -> usize {
        self.protected_cap
    }

    /// `gated-arc`'s duel: an access to a block of `hash` that the policy
    /// hit (`hit`) or missed. If the hash is sampled, the shadow LRU tells
    /// whether LRU would have hit it, and a difference is a signal.
    #[inline(always)]
    fn duel(&mut self, hash: SequenceHash, hit: bool) {
        let Some(sh) = &mut self.shadow else { return };
        let Some(key) = sh.sampled(hash) else { return };
        let lru_hit = sh.access(key);
        if hit && !lru_hit {
            let w = self.duel_hit;
            self.adapt(w);
        } else if !hit && lru_hit {
            let w = self.duel_miss;
            self.adapt(-w);
        }
    }

    /// List a block that became inactive (the body of `insert`):
    /// `after_register` says it is the first release after the request's
    /// registrations (its tail), `verdicts` are the class verdicts to apply
    /// (`None`: the tier's own, read only where needed). Returns the node's
    /// flags before the call.
    #[inline(always)]
    pub(super) fn place(
        &mut self,
        slot: SlotId,
        after_register: bool,
        verdicts: Option<Verdicts>,
    ) -> u8 {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        let proven_min = self.proven_min;
        let n = self.node_mut(slot);
        n.stamp = clock;
        let (freq, flags) = (n.freq, n.flags);
        let seen_twice = freq >= proven_min;
        let is_tail = after_register && !seen_twice;
        n.flags = if is_tail { flags | TAIL } else { flags & !TAIL };
        let continuations_pay = |c: &Classes| match verdicts {
            Some(v) => v.continuations_pay,
            None => c.continuations_pay(),
        };
        let tails_wasted = |c: &Classes| match verdicts {
            Some(v) => v.tails_wasted,
            None => c.tails_wasted(),
        };
        if seen_twice || (flags & CONT != 0 && continuations_pay(&self.classes)) {
            self.link_back(PROVEN, slot);
            // Demotion to the most recent end of *new*: the boundary moves
            // past the oldest proven node (see the layout above). In LRU's
            // order (`gated-duel`) the share is unbounded, so nothing is
            // demoted: the order ignores the segments, and the overflow is
            // demoted once the gated order is back.
            while self.proven_len() > self.protected_cap {
                let f = self.boundary;
                let n = self.node_mut(f);
                n.list = NEW;
                if ADAPT {
                    n.flags |= DEMOTED;
                }
                self.boundary = n.next;
                self.counts -= 1 << 32;
                // The next demotion reads the new boundary node, which has
                // sat untouched since it became proven: ask for it now.
                super::prefetch_ptr(self.node(self.boundary));
            }
        } else if is_tail && tails_wasted(&self.classes) {
            self.link_front_new(slot);
        } else {
            self.link_back(NEW, slot);
        }
        flags
    }

    /// `gated-duel`: a released block of a sampled hash (placed with
    /// `after_register` and its flags before `place`) goes to the duel,
    /// and the tier follows the order it reports. Out of line: one call
    /// in `duel_sample_rate` inserts, and the release loop keeps its
    /// registers.
    #[cold]
    #[inline(never)]
    fn duel_access(&mut self, hash: SequenceHash, after_register: bool, flags: u8) {
        let Some(d) = &mut self.duel else { return };
        if let Some(order) = d.access(hash, after_register, flags & CONT != 0, &self.classes) {
            self.set_order(order);
        }
    }

    /// `gated-duel`: follow `order`. In LRU's order the protected share is
    /// unbounded, so `place` demotes nothing (the order ignores the
    /// segments; the overflow is demoted once the gated order is back).
    #[inline]
    fn set_order(&mut self, order: Order) {
        self.order = order;
        self.protected_cap = if order == Order::Gated {
            self.max_protected_cap
        } else {
            usize::MAX
        };
    }

    /// `gated-duel`: the next victim in release order across the two
    /// segments (the older of their heads; a request tail at the head of
    /// *new* first; no re-queue passes), or `None` if none is listed.
    #[inline(always)]
    fn evict_in_release_order(&mut self) -> Option<SlotId> {
        let v = match self.heads() {
            (Some(n), Some(p)) => {
                if self.node(n).flags & TAIL != 0
                    || stamp_gap(self.node(n).stamp, self.node(p).stamp) >= 0
                {
                    n
                } else {
                    p
                }
            }
            (Some(n), None) => n,
            (None, Some(p)) => p,
            (None, None) => return None,
        };
        self.unlink(v);
        Some(v)
    }

    /// Whether the tier currently evicts in release order (`gated-duel`
    /// after its duel chose LRU's order; always `false` for the others).
    pub fn in_release_order(&self) -> bool {
        self.order != Order::Gated
    }

    /// Miniature (`duel.rs`): the sampled block in `slot` was accessed
    /// again (already removed from its segment).
    #[inline]
    pub(super) fn mini_hit(&mut self, slot: SlotId) {
        let max_passes = self.max_passes;
        let n = self.node_mut(slot);
        n.passes = (n.passes + 1).min(max_passes);
        n.freq = n.freq.saturating_add(1);
        n.flags = (n.flags & !(CONT | TAIL)) | HIT;
    }

    /// Miniature: a block of sampled `key` was computed into `slot`
    /// (`cont`: the full tier registered it as a continuation).
    #[inline]
    pub(super) fn mini_register(&mut self, slot: SlotId, key: u64, cont: bool) {
        let seen = self.seen.check_and_insert(super::duel::remix(key));
        let n = self.node_mut(slot);
        n.passes = 0;
        n.freq = 1 + seen as u8;
        n.flags = if cont { CONT } else { 0 };
    }

    /// Miniature: the block of sampled `key` in `slot` was evicted (after
    /// `evict`).
    #[inline]
    pub(super) fn mini_evicted(&mut self, slot: SlotId, key: u64) {
        let n = self.node_mut(slot);
        let flags = n.flags;
        n.flags = 0;
        if flags & HIT != 0 {
            self.seen.check_and_insert(super::duel::remix(key));
        }
    }

    /// Inactive blocks in the protected segment (for tests and metrics).
    pub fn proven_len(&self) -> usize {
        (self.counts >> 32) as usize
    }
}

impl<const ADAPT: bool, const DUEL: bool> EvictionPolicy for Gated<ADAPT, DUEL> {
    #[inline(always)]
    fn insert(&mut self, slot: SlotId, info: &BlockInfo) {
        self.check(slot);
        let after_register = self.classes.take_after_register();
        let flags = self.place(slot, after_register, None);
        // Unsampled hashes (all but one in `duel_sample_rate`) stop here,
        // without touching the duel's state.
        if DUEL && ((info.hash.0 >> 64) as u32) & self.duel_mask == 0 {
            self.duel_access(info.hash, after_register, flags);
        }
    }

    #[inline(always)]
    fn remove(&mut self, slot: SlotId) {
        self.check(slot);
        self.unlink(slot);
    }

    #[inline(always)]
    fn evict(&mut self) -> Option<SlotId> {
        if DUEL && self.order != Order::Gated {
            return self.evict_in_release_order();
        }
        let (s, p) = (self.base, self.boundary);
        let n = self.node(s).next;
        // The proven head goes first once it has sat unused for longer than
        // its credit beyond the new head (or when no block is new).
        let proven_first = p != s
            && (n == p || stamp_gap(self.node(p).stamp, self.node(n).stamp) > self.credit as i32);
        if proven_first {
            return Some(self.pop_proven());
        }
        if n == p {
            return None;
        }
        self.unlink(n);
        Some(n)
    }

    #[inline]
    fn len(&self) -> usize {
        self.counts as u32 as usize
    }

    #[inline(always)]
    fn prefetch(&self, hash: SequenceHash) {
        self.seen.prefetch(hash);
        if ADAPT {
            self.recent.prefetch(hash);
        }
    }

    /// Hits are counted in the slot's node: nothing to prefetch.
    #[inline(always)]
    fn prefetch_lookup(&self, _hash: SequenceHash) {}

    #[inline(always)]
    fn on_hit(&mut self, slot: SlotId, info: &BlockInfo) {
        self.check(slot);
        if ADAPT {
            self.duel(info.hash, true);
        }
        self.outcome(slot, true);
        let max_passes = self.max_passes;
        let n = self.node_mut(slot);
        n.passes = (n.passes + 1).min(max_passes);
        n.freq = n.freq.saturating_add(1);
        n.flags |= HIT;
        self.classes.hit(info.position);
    }

    #[inline(always)]
    fn on_evicted(&mut self, slot: SlotId, info: &BlockInfo) {
        self.check(slot);
        // (Also while paused: hit blocks are few, and a test here cost
        // more than their writes.)
        if self.outcome(slot, false) & HIT != 0 {
            // Its last access was a hit, after its registration was recorded:
            // remember it from now on.
            self.seen.check_and_insert(info.hash);
        }
    }

    /// A new block was registered in `slot`: it counts as seen twice if the
    /// seen filter knows its hash.
    #[inline(always)]
    fn on_register(&mut self, slot: SlotId, info: &BlockInfo) {
        self.check(slot);
        let hash = info.hash;
        let seen = !(DUEL && self.order == Order::LruSettled) && self.seen.check_and_insert(hash);
        if ADAPT {
            self.duel(hash, false);
            let window = 2 * (self.capacity - self.protected_cap) as u32;
            if self.recent.register(hash, window) {
                // Registered again soon after it left probation: a larger
                // probation segment would have kept it.
                self.adapt(-1);
            }
        }
        let cont = self.classes.register(info.position);
        let n = self.node_mut(slot);
        n.passes = 0;
        n.freq = 1 + seen as u8;
        n.flags = if cont { CONT } else { 0 };
    }

    /// `gated-arc`: a block computed again although the tier still held it
    /// (its prefix was lost) is a miss for the duel.
    #[inline]
    fn on_duplicate(&mut self, _slot: SlotId, info: &BlockInfo) {
        if ADAPT {
            self.duel(info.hash, false);
        }
    }

    fn uses_leaves(&self) -> bool {
        false
    }

    /// The next victim only depends on the segments, which `on_evicted`
    /// does not touch.
    fn evicts_in_batches(&self) -> bool {
        true
    }

    /// `evict`'s choice between the two segments' heads, walked forward (in
    /// either of `gated-duel`'s orders). Proven blocks with passes left
    /// would be re-queued, not evicted: they are skipped (approximate, as
    /// the trait allows). O(n).
    fn next_victims(&self, n: usize, out: &mut Vec<SlotId>) -> bool {
        // *new* runs from the sentinel's next node up to the boundary,
        // *proven* from the boundary up to the sentinel.
        let (sn, sp) = (self.boundary, self.base);
        let (mut a, mut b) = (self.node(self.base).next, self.boundary);
        // `gated-duel` in LRU's order: `evict_in_release_order`'s choice.
        let release_order = DUEL && self.order != Order::Gated;
        // Bounded work: at most 4n nodes visited (skipped ones included).
        let mut budget = 4 * n;
        while out.len() < n && budget > 0 {
            while !release_order && b != sp && self.node(b).passes > 0 && budget > 0 {
                b = self.node(b).next;
                budget -= 1;
            }
            budget = budget.saturating_sub(1);
            let take_new = a != sn
                && (b == sp
                    || if release_order {
                        self.node(a).flags & TAIL != 0
                            || stamp_gap(self.node(a).stamp, self.node(b).stamp) >= 0
                    } else {
                        stamp_gap(self.node(b).stamp, self.node(a).stamp) <= self.credit as i32
                    });
            let cursor = if take_new {
                &mut a
            } else if b != sp {
                &mut b
            } else {
                break;
            };
            out.push(*cursor);
            *cursor = self.node(*cursor).next;
        }
        true
    }
}

impl<const ADAPT: bool, const DUEL: bool> BuildPolicy for Gated<ADAPT, DUEL> {
    type Params = GatedParams;

    fn check_params(p: &GatedParams) -> Result<(), InvalidParam> {
        p.check()?;
        InvalidParam::unless(
            p.min_protected_share_64ths <= p.protected_share_64ths,
            "min_protected_share_64ths",
            "must be at most protected_share_64ths",
        )?;
        InvalidParam::unless(
            p.duel_hysteresis < p.duel_counter_max,
            "duel_hysteresis",
            "must be below duel_counter_max",
        )
    }

    fn build(capacity: usize, params: &GatedParams) -> Self {
        Self::with_params(capacity, params)
    }
}

#[cfg(test)]
#[path = "gated_tests.rs"]
mod tests;
