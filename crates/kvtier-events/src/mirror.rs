//! What a router knows: the set of block hashes per medium, rebuilt by
//! applying events in order, with the checks a correct stream must pass.

use crate::subscriber::Delivered;
use crate::wire::WireEvent;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Violations a [`Mirror`] counts (all must stay 0 on a correct stream).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorErrors {
    /// `BlockRemoved` of a hash the medium did not hold.
    pub removed_unknown: u64,
    /// `BlockStored` of a hash the medium already held.
    pub stored_present: u64,
    /// Batches applied while incomplete (after lost batches, before an
    /// `AllBlocksCleared` made the state exact again).
    pub incomplete_batches: u64,
}

/// The per-medium sets of hashes a subscriber holds.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    media: BTreeMap<String, HashSet<u64>>,
    exact: bool,
    errors: MirrorErrors,
    stored: u64,
    removed: u64,
}

impl Mirror {
    /// An empty mirror, not yet exact: it becomes exact at the first
    /// `AllBlocksCleared`, which every publisher run starts with (or through
    /// [`set_exact`](Self::set_exact)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one delivered batch.
    pub fn apply(&mut self, d: &Delivered) {
        if !d.complete {
            self.exact = false;
        }
        for ev in &d.batch.events {
            self.apply_event(ev);
        }
        if !self.exact {
            self.errors.incomplete_batches += 1;
        }
    }

    /// Apply one event (`AllBlocksCleared` makes the mirror exact).
    pub fn apply_event(&mut self, ev: &WireEvent) {
        match ev {
            WireEvent::AllBlocksCleared => {
                self.media.clear();
                self.exact = true;
            }
            WireEvent::BlockStored {
                block_hashes,
                medium,
                ..
            } => self.apply_hashes(true, block_hashes, medium),
            WireEvent::BlockRemoved {
                block_hashes,
                medium,
            } => self.apply_hashes(false, block_hashes, medium),
        }
    }

    /// Add (`stored`) or remove `hashes` in `medium`'s set, counting what an
    /// exact mirror should never see (a stored hash already present, a
    /// removed hash unknown).
    fn apply_hashes(&mut self, stored: bool, hashes: &[u64], medium: &Option<String>) {
        let set = self
            .media
            .entry(medium.clone().unwrap_or_default())
            .or_default();
        for h in hashes {
            let changed = if stored {
                self.stored += 1;
                set.insert(*h)
            } else {
                self.removed += 1;
                set.remove(h)
            };
            if !changed && self.exact {
                if stored {
                    self.errors.stored_present += 1;
                } else {
                    self.errors.removed_unknown += 1;
                }
            }
        }
    }

    /// Whether the mirror is known to equal the publisher's state.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Mark the mirror exact (restoring a saved one on resume).
    pub fn set_exact(&mut self) {
        self.exact = true;
    }

    /// The hashes held in `medium`.
    pub fn set(&self, medium: &str) -> HashSet<u64> {
        self.media.get(medium).cloned().unwrap_or_default()
    }

    /// Every medium seen, with its number of hashes.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        self.media
            .iter()
            .map(|(m, s)| (m.clone(), s.len()))
            .collect()
    }

    /// Hashes stored and removed (event counts, in blocks).
    pub fn totals(&self) -> (u64, u64) {
        (self.stored, self.removed)
    }

    /// The violations counted so far.
    pub fn errors(&self) -> MirrorErrors {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EventBatch;

    fn d(seq: u64, complete: bool, events: Vec<WireEvent>) -> Delivered {
        Delivered {
            seq,
            topic: Default::default(),
            batch: EventBatch {
                ts: 0.0,
                events,
                data_parallel_rank: None,
            },
            replayed: false,
            complete,
        }
    }

    fn stored(h: &[u64]) -> WireEvent {
        WireEvent::BlockStored {
            block_hashes: h.to_vec(),
            parent_block_hash: None,
            token_ids: vec![],
            block_size: 1,
            lora_id: None,
            medium: Some("GPU".into()),
            lora_name: None,
        }
    }

    #[test]
    fn counts_violations_only_when_exact() {
        let mut m = Mirror::new();
        m.apply(&d(3, false, vec![stored(&[1])]));
        assert!(!m.is_exact());
        assert_eq!(m.errors().incomplete_batches, 1);
        m.apply(&d(
            4,
            true,
            vec![WireEvent::AllBlocksCleared, stored(&[1, 2])],
        ));
        assert!(m.is_exact());
        m.apply(&d(
            5,
            true,
            vec![
                stored(&[2]),
                WireEvent::BlockRemoved {
                    block_hashes: vec![9],
                    medium: Some("GPU".into()),
                },
            ],
        ));
        let e = m.errors();
        assert_eq!(
            (e.stored_present, e.removed_unknown, e.incomplete_batches),
            (1, 1, 1)
        );
        assert_eq!(m.set("GPU"), HashSet::from([1, 2]));
        assert_eq!(m.sizes(), vec![("GPU".to_string(), 2)]);
    }
}
