//! Foreground first: background copies (the proactive cleaner, write-through)
//! step aside while foreground work (an engine's load) is in flight.
//!
//! On a machine with few cores, the copies, checksums and syncs of the
//! background paths compete with a load for CPU time and memory bandwidth.
//! The rule:
//!
//! - Foreground work marks itself in flight with a [`Foreground`] guard
//!   ([`crate::TieredCache::foreground`]).
//! - A background copy (cleaning, write-through; never an eviction an
//!   allocation waits for, never the flush at a clean stop) is split into
//!   pieces of at most [`PIECE_BYTES`], and before each piece waits while a
//!   foreground guard is held. A load arriving while a large batch copies
//!   so waits for at most one piece.
//! - The wait is bounded: one batch yields for at most [`MAX_YIELD`] in all
//!   (or what [`crate::TieredCache::set_max_yield`] set), then copies the
//!   rest of it, so background work never starves.
//! - Whoever waits for background work to progress holds an [`Urgent`]
//!   guard ([`crate::TieredCache::urgent`]): a store waiting for room the
//!   write-through frees, a registration waiting for room in a full
//!   write-through queue, a clean stop. While one is held nothing yields,
//!   so priority never turns a wait into a deadlock (and the bound would
//!   end one anyway). An eviction waiting for the cleaner's copy of its
//!   victim urges only that batch of the cleaner: a global guard, still
//!   held for a moment after the copy landed, would let the cleaner's next
//!   batch take room in G2 that a store was promised.
//!
//! Waiting is on a [`tokio::sync::Notify`] (no spinning), with a tokio
//! timer for the bound: a cache whose callers take foreground guards runs
//! on a runtime with time enabled.

use crate::metrics::CacheMetrics;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most bytes one background copy moves between two checks for
/// foreground work.
pub const PIECE_BYTES: u64 = 4 << 20;

/// Longest a batch of background copies yields to foreground work, in all
/// (then it copies the rest of the batch without yielding), unless changed
/// with [`crate::TieredCache::set_max_yield`].
pub const MAX_YIELD: Duration = Duration::from_millis(100);

/// Foreground work and urgent waits in flight, shared by the guards and
/// the background copies.
#[derive(Debug)]
pub(crate) struct Priority {
    foreground: AtomicUsize,
    urgent: AtomicUsize,
    /// The bound of a batch's yielding, in microseconds.
    max_yield_us: AtomicU64,
    /// Notified when the last foreground guard drops or an urgent guard
    /// is taken: a yielding copy looks again.
    changed: Notify,
}

impl Default for Priority {
    fn default() -> Priority {
        Priority {
            foreground: AtomicUsize::new(0),
            urgent: AtomicUsize::new(0),
            max_yield_us: AtomicU64::new(MAX_YIELD.as_micros() as u64),
            changed: Notify::new(),
        }
    }
}

impl Priority {
    /// How long one batch of background copies may yield in all.
    pub(crate) fn max_yield(&self) -> Duration {
        Duration::from_micros(self.max_yield_us.load(Ordering::Relaxed))
    }

    /// Set how long one batch may yield in all (zero: never yield).
    pub(crate) fn set_max_yield(&self, bound: Duration) {
        let us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        self.max_yield_us.store(us, Ordering::Relaxed);
    }

    /// Whether a background copy should wait now: foreground work is in
    /// flight and nobody waits for background work.
    pub(crate) fn should_yield(&self) -> bool {
        self.urgent.load(Ordering::Acquire) == 0 && self.foreground.load(Ordering::Acquire) > 0
    }

    /// Mark foreground work in flight until the guard drops.
    pub(crate) fn foreground(self: &Arc<Self>) -> Foreground {
        self.foreground.fetch_add(1, Ordering::AcqRel);
        Foreground(self.clone())
    }

    /// Mark a wait for background work until the guard drops: nothing
    /// yields meanwhile (those yielding now go on at once).
    pub(crate) fn urgent(self: &Arc<Self>) -> Urgent {
        self.urgent.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        Urgent(self.clone())
    }

    /// Something a yielding copy checks besides the guards changed (see
    /// [`Priority::yield_to_foreground`]'s `go_on`): it looks again.
    pub(crate) fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// Before a piece of background copying: wait while foreground work is
    /// in flight, for at most `budget` (what is left of the batch's
    /// [`Priority::max_yield`]; reduced by the time waited), and unless
    /// `go_on()` (a wait for this copy in particular; whoever makes it true
    /// calls [`Priority::changed`]). Records the wait in `metrics`. Returns
    /// the time waited (zero if it did not wait).
    pub(crate) async fn yield_to_foreground(
        &self,
        budget: &mut Duration,
        metrics: &CacheMetrics,
        go_on: impl Fn() -> bool,
    ) -> Duration {
        let should_yield = || self.should_yield() && !go_on();
        if budget.is_zero() || !should_yield() {
            return Duration::ZERO;
        }
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start) + *budget;
        let mut cut = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a guard dropping in between
            // is not missed.
            changed.as_mut().enable();
            if !should_yield() {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                cut = true;
                break;
            }
        }
        let waited = start.elapsed();
        *budget = if cut {
            Duration::ZERO
        } else {
            budget.saturating_sub(waited)
        };
        metrics.background_yielded(waited, cut);
        waited
    }
}

/// Foreground work in flight (an engine's load): background copies wait
/// (bounded) while at least one is held. Made by
/// [`crate::TieredCache::foreground`]; cheap to take and drop.
#[must_use = "the work counts as foreground only while the guard is held"]
#[derive(Debug)]
pub struct Foreground(Arc<Priority>);

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.0.foreground.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A wait for background work to progress (room the write-through frees,
/// a copy to land): while at least one is held, background copies do not
/// yield to foreground work. Made by [`crate::TieredCache::urgent`].
#[must_use = "background copies stop yielding only while the guard is held"]
#[derive(Debug)]
pub struct Urgent(Arc<Priority>);

impl Drop for Urgent {
    fn drop(&mut self) {
        self.0.urgent.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prio() -> (Arc<Priority>, CacheMetrics) {
        (Arc::new(Priority::default()), CacheMetrics::default())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_foreground_no_wait() {
        let (p, m) = prio();
        let mut budget = MAX_YIELD;
        assert_eq!(
            p.yield_to_foreground(&mut budget, &m, || false).await,
            Duration::ZERO
        );
        assert_eq!(budget, MAX_YIELD);
        assert_eq!(m.snapshot().background_yields, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_until_the_last_guard_drops() {
        let (p, m) = prio();
        let (a, b) = (p.foreground(), p.foreground());
        let q = p.clone();
        let waiter = tokio::spawn(async move {
            let m = CacheMetrics::default();
            let mut budget = Duration::from_secs(30);
            let waited = q.yield_to_foreground(&mut budget, &m, || false).await;
            (waited, m.snapshot())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "went on with a guard still held");
        drop(b);
        let (waited, snap) = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(40), "waited {waited:?}");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        assert_eq!((snap.background_yields, snap.background_yield_cut), (1, 0));
        // Nothing in flight any more: no wait.
        let mut budget = MAX_YIELD;
        assert_eq!(
            p.yield_to_foreground(&mut budget, &m, || false).await,
            Duration::ZERO
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_bound_ends_the_wait_and_the_budget() {
        let (p, m) = prio();
        let _held = p.foreground();
        let mut budget = Duration::from_millis(50);
        let waited = p.yield_to_foreground(&mut budget, &m, || false).await;
        assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        assert_eq!(budget, Duration::ZERO);
        // The batch's budget is spent: later pieces go on at once.
        assert_eq!(
            p.yield_to_foreground(&mut budget, &m, || false).await,
            Duration::ZERO
        );
        let s = m.snapshot();
        assert_eq!((s.background_yields, s.background_yield_cut), (1, 1));
        assert!(s.background_yield_us >= 50_000);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_copy_waited_for_does_not_yield() {
        let (p, m) = prio();
        let _held = p.foreground();
        let waited_for = std::sync::atomic::AtomicBool::new(true);
        let mut budget = MAX_YIELD;
        let go_on = || waited_for.load(Ordering::Relaxed);
        assert_eq!(
            p.yield_to_foreground(&mut budget, &m, go_on).await,
            Duration::ZERO
        );
        assert_eq!(m.snapshot().background_yields, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_urgent_wait_stops_yielding_at_once() {
        let (p, m) = prio();
        let _held = p.foreground();
        let q = p.clone();
        let waiter = tokio::spawn(async move {
            let m = CacheMetrics::default();
            let mut budget = Duration::from_secs(30);
            q.yield_to_foreground(&mut budget, &m, || false).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let urgent = p.urgent();
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("an urgent guard did not end the wait")
            .unwrap();
        assert!(waited < Duration::from_secs(5));
        // While it is held, nothing yields even with foreground in flight.
        let mut budget = MAX_YIELD;
        assert_eq!(
            p.yield_to_foreground(&mut budget, &m, || false).await,
            Duration::ZERO
        );
        drop(urgent);
        assert!(p.should_yield());
    }
}
