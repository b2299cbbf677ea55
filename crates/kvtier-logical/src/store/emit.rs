//! The store's side of its events: the bus, the buffer of hashes evicted by
//! the current call (one `Removed` per call), and the runs of registered
//! blocks that become `Stored` events (one per chain).

use crate::events::{Event, EventBus, EventKind};
use crate::hash::SequenceHash;
use crate::tier::Tier;
use crossbeam_channel::Receiver;

/// The event bus of one store, with the `Removed` buffer of the call in
/// progress (kept across calls so that it is allocated once).
#[derive(Debug, Default)]
pub(super) struct Emitter {
    bus: EventBus,
    removed: Vec<SequenceHash>,
}

impl Emitter {
    /// Add a subscriber; it sees every event from now on.
    pub(super) fn subscribe(&mut self) -> Receiver<Event> {
        self.bus.subscribe()
    }

    /// Whether anyone listens (events are not even built otherwise).
    #[inline(always)]
    pub(super) fn active(&self) -> bool {
        self.bus.active()
    }

    /// Stamp and deliver one event.
    pub(super) fn emit(&mut self, tier: Tier, kind: EventKind) {
        self.bus.emit(tier, kind);
    }

    /// `hash` stopped being matchable during this call (reported by
    /// [`flush_removed`](Self::flush_removed)).
    #[inline(always)]
    pub(super) fn removed(&mut self, hash: SequenceHash) {
        if self.bus.active() {
            self.removed.push(hash);
        }
    }

    /// One `Removed` event for the hashes of this call, if any.
    pub(super) fn flush_removed(&mut self, tier: Tier) {
        if !self.removed.is_empty() {
            let hashes = std::mem::take(&mut self.removed);
            self.bus.emit(tier, EventKind::Removed { hashes });
        }
    }
}

/// The `Stored` events of one `register` batch: one per run of registered
/// blocks that chain parent to child.
pub(super) struct StoredChains {
    chain: Vec<SequenceHash>,
    parent: SequenceHash,
}

impl StoredChains {
    /// No block yet (allocates nothing).
    pub(super) fn new() -> Self {
        StoredChains {
            chain: Vec::new(),
            parent: SequenceHash::ROOT,
        }
    }

    /// `hash`, child of `parent`, was registered: it extends the current
    /// run, or ends it (emitted) and starts the next.
    pub(super) fn push(
        &mut self,
        events: &mut Emitter,
        tier: Tier,
        hash: SequenceHash,
        parent: SequenceHash,
    ) {
        if self.chain.last() != Some(&parent) && !self.chain.is_empty() {
            self.emit(events, tier);
        }
        if self.chain.is_empty() {
            self.parent = parent;
        }
        self.chain.push(hash);
    }

    /// Emit the last run, if any.
    pub(super) fn finish(mut self, events: &mut Emitter, tier: Tier) {
        if !self.chain.is_empty() {
            self.emit(events, tier);
        }
    }

    fn emit(&mut self, events: &mut Emitter, tier: Tier) {
        let hashes = std::mem::take(&mut self.chain);
        let parent = (self.parent != SequenceHash::ROOT).then_some(self.parent);
        events.emit(tier, EventKind::Stored { hashes, parent });
    }
}
