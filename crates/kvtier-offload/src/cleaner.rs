//! Proactive cleaning (write-back, G1 -> G2): copies G1's oldest released
//! blocks down before they are evicted, keeping about `ahead` of them clean,
//! so evictions find their victims already in G2 and do not wait for a copy.
//!
//! Safety against slot reuse without pinning (a guard would change the
//! eviction order): the cleaner registers a gate for each source slot
//! *before* re-checking that the slot still holds the block; an eviction of
//! that slot waits for the gate before its new owner may write the slot.

use crate::offload::Reason;
use crate::priority::Priority;
use crate::state::Inner;
use crate::transit::{Gate, GateWait};
use kvtier_logical::{BlockSpec, Evicted, ImmutableBlock, SequenceHash, SlotId, Tier};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// State shared between the proactive cleaner and evictions.
pub(crate) struct Cleaner {
    /// Watermark: blocks to keep copied ahead of eviction.
    ahead: usize,
    /// G1 hashes in release order (oldest first): LRU's next victims, the
    /// candidates when the policy cannot name its own.
    released: Mutex<VecDeque<SequenceHash>>,
    /// G1 slots whose bytes the cleaner is copying: an eviction of such a
    /// slot waits for the copy before the slot's new owner may write it.
    busy: Mutex<HashMap<SlotId, GateWait>>,
    /// Cleaned blocks not yet evicted (approximate watermark accounting).
    clean: AtomicU64,
    wake: tokio::sync::Notify,
    stop: AtomicBool,
    /// G1's policy names its next victims: the release-order queue is not
    /// kept (set by the task the first time the policy answers).
    policy_order: AtomicBool,
    /// An eviction waits for the current batch's copies: the batch does
    /// not yield to foreground work. Set with the `busy` lock held when the
    /// eviction looks the batch's slots up, cleared (with it held) when the
    /// batch ends, so a later batch never inherits it.
    urged: AtomicBool,
}

impl Cleaner {
    /// A cleaner keeping about `ahead` blocks clean.
    pub(crate) fn new(ahead: usize) -> Cleaner {
        Cleaner {
            ahead,
            released: Mutex::new(VecDeque::new()),
            busy: Mutex::new(HashMap::new()),
            clean: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            policy_order: AtomicBool::new(false),
            urged: AtomicBool::new(false),
        }
    }

    /// Note blocks G1 is about to release (in release order); the queue
    /// keeps at most `cap` (G1's capacity) of the newest.
    pub(crate) fn note_released(&self, blocks: &[ImmutableBlock], cap: usize) {
        if self.policy_order.load(Relaxed) {
            return;
        }
        let mut q = self.released.lock();
        q.extend(blocks.iter().map(|b| b.hash()));
        while q.len() > cap {
            q.pop_front();
        }
    }

    /// Wake the cleaner (blocks were released or evicted).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Before an eviction of G1 `victims` rewrites their slots: wait for the
    /// cleaner's copies still reading any of them. That batch stops yielding
    /// to foreground work (`priority` is told, so it looks again at once).
    pub(crate) async fn wait_for_copies(&self, victims: &[Evicted], priority: &Priority) {
        let waits: Vec<GateWait> = {
            let busy = self.busy.lock();
            let waits: Vec<GateWait> = victims
                .iter()
                .filter_map(|e| busy.get(&e.slot).cloned())
                .collect();
            if !waits.is_empty() {
                self.urged.store(true, Relaxed);
            }
            waits
        };
        if waits.is_empty() {
            return;
        }
        priority.changed();
        for w in waits {
            w.wait().await;
        }
    }

    /// Whether an eviction waits for the current batch (it must not yield).
    pub(crate) fn urged(&self) -> bool {
        self.urged.load(Relaxed)
    }

    /// An eviction found `already_below` of its victims already in G2: they
    /// were clean, the watermark has room again.
    pub(crate) fn evicted_clean(&self, already_below: u64) {
        let _ = self
            .clean
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(already_below)));
        self.wake.notify_one();
    }

    /// The cleaner copied `n` blocks ahead of eviction.
    pub(crate) fn cleaned(&self, n: u64) {
        self.clean.fetch_add(n, Relaxed);
    }

    /// Ask the task to stop (it finishes its current batch).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake.notify_one();
    }
}

/// The cleaner's loop: runs until [`Cleaner::stop`].
pub(crate) async fn cleaner_task(inner: Arc<Inner>, c: Arc<Cleaner>) {
    let g1 = &inner.tiers.g1().store;
    let Some(g2) = inner.tiers.below(Tier::G1).map(|t| &t.store) else {
        return; // built only with a G2
    };
    let mut last_round: Vec<SlotId> = Vec::new();
    loop {
        if c.stop.load(Relaxed) {
            return;
        }
        let found = match g1.next_victims(c.ahead) {
            // The policy names its next victims: copy down those of them
            // not yet in G2, earliest first. Self-correcting (what is clean
            // is read from G2, not counted), so no watermark is kept.
            Some(next) => {
                if !c.policy_order.swap(true, Relaxed) {
                    c.released.lock().clear();
                }
                let hashes: Vec<SequenceHash> = next.iter().map(|(_, s)| s.hash).collect();
                let below = g2.contains_all(&hashes);
                let dirty: Vec<(SlotId, BlockSpec)> = {
                    let busy = c.busy.lock();
                    next.into_iter()
                        .zip(below)
                        .filter(|((slot, _), b)| !b && !busy.contains_key(slot))
                        .map(|(v, _)| v)
                        .take(64)
                        .collect()
                };
                // Nothing to do, or the same blocks as the last round (G2
                // could not take them): wait for the next release or eviction.
                let slots: Vec<SlotId> = dirty.iter().map(|(s, _)| *s).collect();
                if dirty.is_empty() || slots == last_round {
                    last_round.clear();
                    c.wake.notified().await;
                    continue;
                }
                last_round = slots;
                dirty
            }
            // Release order: LRU's next victims, the best guess otherwise.
            None => {
                let room = c
                    .ahead
                    .saturating_sub(c.clean.load(Relaxed) as usize)
                    .min(64);
                let batch: Vec<SequenceHash> = if room == 0 {
                    Vec::new()
                } else {
                    let mut q = c.released.lock();
                    let n = room.min(q.len());
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    c.wake.notified().await;
                    continue;
                }
                // Still in G1, not yet in G2.
                let below = g2.contains_all(&batch);
                let hashes: Vec<SequenceHash> = batch
                    .into_iter()
                    .zip(below)
                    .filter(|(_, b)| !b)
                    .map(|(h, _)| h)
                    .collect();
                let found: Vec<(SlotId, BlockSpec)> =
                    g1.peek(&hashes).into_iter().flatten().collect();
                if found.is_empty() {
                    continue;
                }
                found
            }
        };
        // Gate the source slots, then re-check that each still holds its block.
        let mut gates = Vec::with_capacity(found.len());
        let mut locked = Vec::with_capacity(found.len());
        {
            let mut busy = c.busy.lock();
            for &(slot, spec) in &found {
                if busy.contains_key(&slot) {
                    continue;
                }
                let g = Gate::new();
                busy.insert(slot, g.waiter());
                gates.push(g);
                locked.push((slot, spec));
            }
        }
        let now: Vec<SequenceHash> = locked.iter().map(|(_, s)| s.hash).collect();
        let again = g1.peek(&now);
        let victims: Vec<Evicted> = locked
            .iter()
            .zip(again)
            .filter(|((slot, _), p)| p.is_some_and(|(s2, _)| s2 == *slot))
            .map(|((slot, spec), _)| Evicted {
                slot: *slot,
                hash: spec.hash,
                parent: spec.parent,
                position: spec.position,
            })
            .collect();
        let gates = inner
            .clone()
            .copy_down(Tier::G1, victims, gates, Reason::Clean)
            .await;
        {
            let mut busy = c.busy.lock();
            for (slot, _) in &locked {
                busy.remove(slot);
            }
            c.urged.store(false, Relaxed);
        }
        drop(gates);
    }
}
