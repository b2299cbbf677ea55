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
//! [`CLASS_WINDOW`] outcomes so the verdict follows the workload.

/// Outcomes (reused or evicted unused) of a class remembered before its
/// tallies are halved, so the verdict follows the workload within about a
/// thousand blocks (a few hundred requests) with enough samples not to flap.
pub const CLASS_WINDOW: u32 = 1024;

/// Request tails go to the eviction end of probation while fewer than one in
/// `TAIL_WASTE_RATIO + 1` of them is reused before eviction: a class reused
/// that rarely is cheaper to drop at once than to keep for a whole probation
/// cycle.
pub const TAIL_WASTE_RATIO: u32 = 8;

/// "Reused" and "evicted unused" outcomes of one class, decayed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) reused: u32,
    pub(crate) wasted: u32,
}

impl Tally {
    #[inline]
    pub(crate) fn record(&mut self, reused: bool) {
        if reused {
            self.reused += 1;
        } else {
            self.wasted += 1;
        }
        if self.reused + self.wasted >= CLASS_WINDOW {
            self.reused /= 2;
            self.wasted /= 2;
        }
    }
}

/// The class tallies and the request-order state that classifies blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classes {
    pub(crate) cont: Tally,
    pub(crate) tail: Tally,
    /// Whether the previous call was a registration (the next insert is then
    /// the request's last block: releases go tail first).
    after_register: bool,
    /// Position of the previous hit or registration.
    prev_pos: u32,
    /// Whether the previous hit or registration was a hit or a continuation.
    prev_chain: bool,
}

impl Default for Classes {
    fn default() -> Self {
        Classes {
            cont: Tally::default(),
            tail: Tally::default(),
            after_register: false,
            prev_pos: u32::MAX,
            prev_chain: false,
        }
    }
}

impl Classes {
    /// Whether continuation blocks have lately been reused more often than
    /// not before eviction (then they are admitted as proven).
    #[inline]
    pub(crate) fn continuations_pay(&self) -> bool {
        self.cont.reused > self.cont.wasted
    }

    /// Whether request tails have lately been reused less than once in
    /// [`TAIL_WASTE_RATIO`] + 1 (then they are evicted first).
    #[inline]
    pub(crate) fn tails_wasted(&self) -> bool {
        self.tail.reused * TAIL_WASTE_RATIO < self.tail.wasted
    }

    /// A lookup hit the block at `position`.
    #[inline]
    pub(crate) fn hit(&mut self, position: u32) {
        self.after_register = false;
        self.prev_pos = position;
        self.prev_chain = true;
    }

    /// A block was registered at `position`; returns whether it is a
    /// continuation.
    #[inline]
    pub(crate) fn register(&mut self, position: u32) -> bool {
        let c = position > 0 && self.prev_chain && self.prev_pos.wrapping_add(1) == position;
        self.after_register = true;
        self.prev_pos = position;
        self.prev_chain = c;
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
            c.tail.record(false);
        }
        assert!(c.tail.reused + c.tail.wasted < CLASS_WINDOW);
        assert!(c.tails_wasted());
        for _ in 0..3 {
            c.cont.record(true);
        }
        assert!(c.continuations_pay());
    }
}
