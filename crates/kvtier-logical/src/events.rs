//! Cache events, so a KV-aware router can follow what each tier holds.
//!
//! Every event carries its tier and a per-store sequence number that increases
//! by exactly one per event, so a consumer detects a gap (a lost event) by
//! arithmetic. Delivery is lossless: channels are unbounded, and events are
//! sent under the store's lock, so their order is the order of the changes.

use crate::hash::SequenceHash;
use crate::tier::Tier;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

/// One change to a tier's set of matchable blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-store sequence number, starting at 0, +1 per event.
    pub seq: u64,
    /// The tier whose contents changed.
    pub tier: Tier,
    /// What changed.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Blocks became matchable. `hashes` is a chain: each block's parent is the
    /// one before it, and the first one's parent is `parent` (`None` for a
    /// sequence's first block).
    Stored {
        /// The chain of newly matchable blocks.
        hashes: Vec<SequenceHash>,
        /// Parent of the chain's first block.
        parent: Option<SequenceHash>,
    },
    /// Blocks are no longer matchable (evicted).
    Removed {
        /// The removed blocks.
        hashes: Vec<SequenceHash>,
    },
    /// Every block of the tier stopped being matchable.
    Cleared,
}

impl Event {
    /// The event as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

/// The sending side, owned by a store and used under its lock.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: Vec<Sender<Event>>,
    next_seq: u64,
}

impl EventBus {
    /// Add a subscriber; it sees every event from now on.
    pub(crate) fn subscribe(&mut self) -> Receiver<Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.push(tx);
        rx
    }

    /// Whether anyone listens (events are not even built otherwise).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Stamp and deliver one event; drops subscribers whose receiver is gone.
    pub(crate) fn emit(&mut self, tier: Tier, kind: EventKind) {
        if self.subscribers.is_empty() {
            return;
        }
        let ev = Event {
            seq: self.next_seq,
            tier,
            kind,
        };
        self.next_seq += 1;
        // Every subscriber but the last gets a copy; the last gets the event.
        let last = self.subscribers.len() - 1;
        let mut ev = Some(ev);
        let mut i = 0;
        self.subscribers.retain(|s| {
            let e = if i == last {
                ev.take().expect("sent once")
            } else {
                ev.clone().expect("not sent yet")
            };
            i += 1;
            s.send(e).is_ok()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_round_trip() {
        let ev = Event {
            seq: 3,
            tier: Tier::G2,
            kind: EventKind::Stored {
                hashes: vec![SequenceHash(5)],
                parent: None,
            },
        };
        let line = ev.to_json_line();
        assert!(line.contains("\"type\":\"stored\""), "{line}");
        assert!(line.contains("\"tier\":\"g2\""), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn sequence_numbers_are_consecutive_and_dead_receivers_dropped() {
        let mut bus = EventBus::default();
        let rx = bus.subscribe();
        let rx2 = bus.subscribe();
        drop(rx2);
        bus.emit(Tier::G1, EventKind::Cleared);
        bus.emit(Tier::G1, EventKind::Removed { hashes: vec![] });
        assert_eq!(bus.subscribers.len(), 1);
        let seqs: Vec<u64> = rx.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![0, 1]);
    }
}
