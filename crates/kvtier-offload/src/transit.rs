//! Blocks between two tiers, and the gates lookups and evictions wait on.
//!
//! An evicted block leaves its tier's index at once, but lands in the tier
//! below only when its copy has finished. For that time it is *in transit*:
//! a lookup that misses it everywhere waits for its move to finish and asks
//! again, instead of reporting a miss for a block the cache still has.

use kvtier_logical::SequenceHash;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A one-shot barrier: [`GateWait::wait`] returns once the gate is dropped.
pub(crate) struct Gate(Arc<Semaphore>);

/// A waiter on a [`Gate`].
#[derive(Clone)]
pub(crate) struct GateWait(Arc<Semaphore>);

impl Gate {
    /// A closed gate (waiters wait).
    pub(crate) fn new() -> Gate {
        Gate(Arc::new(Semaphore::new(0)))
    }

    /// A waiter for this gate.
    pub(crate) fn waiter(&self) -> GateWait {
        GateWait(self.0.clone())
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // A closed semaphore fails every pending and future acquire: the
        // waiters go on.
        self.0.close();
    }
}

impl GateWait {
    /// Wait until the gate is dropped.
    pub(crate) async fn wait(self) {
        // No permit is ever added: this returns only once the gate closes.
        let _ = self.0.acquire().await;
    }
}

/// The blocks in transit, each with the gate of its move.
#[derive(Default)]
pub(crate) struct Transits {
    moving: Mutex<HashMap<SequenceHash, GateWait>>,
}

impl Transits {
    /// Mark `hashes` as in transit until the returned guard drops.
    pub(crate) fn enter(&self, hashes: Vec<SequenceHash>) -> Transit<'_> {
        let gate = Gate::new();
        {
            let mut t = self.moving.lock();
            for h in &hashes {
                t.insert(*h, gate.waiter());
            }
        }
        Transit {
            transits: self,
            hashes,
            _gate: gate,
        }
    }

    /// The move of `hash` to wait for, if it is in transit.
    pub(crate) fn waiter(&self, hash: SequenceHash) -> Option<GateWait> {
        self.moving.lock().get(&hash).cloned()
    }
}

/// Marks blocks as in transit for as long as it lives.
pub(crate) struct Transit<'a> {
    transits: &'a Transits,
    hashes: Vec<SequenceHash>,
    _gate: Gate,
}

impl Drop for Transit<'_> {
    fn drop(&mut self) {
        let mut t = self.transits.moving.lock();
        for h in &self.hashes {
            t.remove(h);
        }
        // The gate drops after this: waiters retry and find the block below.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn waiters_go_on_when_the_move_ends() {
        let t = Transits::default();
        let h = SequenceHash(7);
        assert!(t.waiter(h).is_none());
        let moving = t.enter(vec![h]);
        let w = t.waiter(h).expect("in transit");
        let waiting = tokio::spawn(w.wait());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(moving);
        waiting.await.unwrap();
        assert!(t.waiter(h).is_none());
    }
}
