//! Learned block classes shared by the frequency policies: a request's *tail*
//! and its *continuations*, with online tallies of whether each class is
//! reused before it is evicted.
//!
//! The store reports accesses in request order (a request's hits, then its
//! registrations, then its releases tail first), so a policy can tell from
//! the order of calls alone:
//! - a *continuation*: a block registered right after its parent was matched
//!   (or registered as a continuation) in the same request: a chat's next
//!   turn, an agent's next step;
//! - the request's *tail*: the first block released after the registrations,
//!   i.e. its last block, usually a partial block that the next request fills
//!   differently.
//!
//! Each class keeps a tally of "reused" and "evicted unused", halved every
//! [`window`](ClassParams::window) outcomes so the verdict follows the
//! workload.

policy_params! {
    /// How the class verdicts are learned (shared by `gated-lru`,
    /// `gated-arc` and `prefix-freq`). The defaults are the tuned values.
    pub struct ClassParams {
        /// Outcomes (reused or evicted unused) of a class remembered before
        /// its tallies are halved (1024), so the verdict follows the
        /// workload within about a thousand blocks (a few hundred requests)
        /// with enough samples not to flap. At least 1.
        window: u32 [1..=u32::MAX] = 1024,
        /// Request tails go to the eviction end of probation while fewer
        /// than one in `tail_waste_ratio + 1` of them is reused before
        /// eviction (8): a class reused that rarely is cheaper to drop at
        /// once than to keep for a whole probation cycle.
        tail_waste_ratio: u32 = 8,
    }
}

/// "Reused" and "evicted unused" outcomes of one class, decayed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) reused: u32,
    pub(crate) wasted: u32,
}

impl Tally {
    /// One outcome; both counts are halved when they reach `window`.
    #[inline]
    pub(crate) fn record(&mut self, reused: bool, window: u32) {
        // Branch-free: outcomes are close to random.
        self.reused += reused as u32;
        self.wasted += !reused as u32;
        if self.reused + self.wasted >= window {
            self.reused /= 2;
            self.wasted /= 2;
        }
    }
}

/// [`Classes::expect`] when no chain continues (no block position reaches
/// it). `expect` is never 0.
const NO_CHAIN: u32 = u32::MAX;

/// The class tallies and the request-order state that classifies blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classes {
    pub(crate) cont: Tally,
    pub(crate) tail: Tally,
    /// Whether the previous call was a registration (the next insert is then
    /// the request's last block: releases go tail first).
    after_register: bool,
    /// The position that continues the chain: one past the previous hit
    /// or continuation, [`NO_CHAIN`] after a registration that was not a
    /// continuation.
    expect: u32,
    /// [`ClassParams::window`].
    window: u32,
    /// [`ClassParams::tail_waste_ratio`].
    tail_waste_ratio: u32,
}

impl Default for Classes {
    fn default() -> Self {
        Classes::new(&ClassParams::default())
    }
}

impl Classes {
    /// Empty tallies learning with `params` (checked).
    pub(crate) fn new(params: &ClassParams) -> Self {
        Classes {
            cont: Tally::default(),
            tail: Tally::default(),
            after_register: false,
            expect: NO_CHAIN,
            window: params.window,
            tail_waste_ratio: params.tail_waste_ratio,
        }
    }

    /// A continuation block was reused (`true`) or evicted unused.
    #[inline]
    pub(crate) fn record_cont(&mut self, reused: bool) {
        self.cont.record(reused, self.window);
    }

    /// A request's tail block was reused (`true`) or evicted unused.
    #[inline]
    pub(crate) fn record_tail(&mut self, reused: bool) {
        self.tail.record(reused, self.window);
    }

    /// Whether continuation blocks have lately been reused more often than
    /// not before eviction (then they are admitted as proven).
    #[inline]
    pub(crate) fn continuations_pay(&self) -> bool {
        self.cont.reused > self.cont.wasted
    }

    /// Whether request tails have lately been reused less than once in
    /// `tail_waste_ratio + 1` (then they are evicted first).
    #[inline]
    pub(crate) fn tails_wasted(&self) -> bool {
        (self.tail.reused as u64) * (self.tail_waste_ratio as u64) < self.tail.wasted as u64
    }

    /// A lookup hit the block at `position`.
    #[inline]
    pub(crate) fn hit(&mut self, position: u32) {
        self.after_register = false;
        self.expect = position.saturating_add(1);
    }

    /// A block was registered at `position`; returns whether it is a
    /// continuation.
    #[inline]
    pub(crate) fn register(&mut self, position: u32) -> bool {
        // `expect` is never 0 (one past a position, saturating at
        // `NO_CHAIN`): position 0, a request's first block, never
        // continues a chain.
        let c = position == self.expect;
        self.after_register = true;
        self.expect = if c {
            position.saturating_add(1)
        } else {
            NO_CHAIN
        };
        c
    }

    /// Called at every insert: whether this is the first release after the
    /// registrations (the request's last block).
    #[inline]
    pub(crate) fn take_after_register(&mut self) -> bool {
        std::mem::take(&mut self.after_register)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_decay_and_classify() {
        let mut c = Classes::default();
        assert!(!c.register(0));
        assert!(c.take_after_register());
        assert!(!c.take_after_register());
        c.hit(4);
        assert!(c.register(5), "registered right after its matched parent");
        assert!(c.register(6), "continuation of a continuation");
        assert!(!c.register(9), "not the next position");
        for _ in 0..2000 {
            c.record_tail(false);
        }
        assert!(c.tail.reused + c.tail.wasted < ClassParams::default().window);
        assert!(c.tails_wasted());
        for _ in 0..3 {
            c.record_cont(true);
        }
        assert!(c.continuations_pay());
    }
}
