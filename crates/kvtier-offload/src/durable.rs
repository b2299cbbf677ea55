//! A persistent G3: the hooks through which the cache tells a journal what it
//! stored in and removed from G3, and the rebuilding of a tier's store from
//! recovered entries at start-up.
//!
//! Ordering contract (what makes a journal crash-consistent): the cache calls
//! [`G3Journal::stored`] only after the blocks' bytes have landed in their G3
//! slots. A journal must make those bytes durable before it makes their records
//! durable. A crash can then lose unacknowledged records (lost cache entries),
//! and a slot overwritten after its last durable record is caught by the
//! record's checksum when the block is read, never served.

use kvtier_logical::{BlockStore, SlotId, StoreConfig, StoreError};

/// One block of a persistent G3: its slot, identity (hash, parent, position)
/// and checksum. The journal's own record type: what the cache hands to
/// [`G3Journal::stored`] is what the journal writes and recovery returns.
pub use kvtier_disk::journal::Record as DurableEntry;

/// Why a journal refused or failed: the journal's own error, boxed.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// Receives G3 changes for persistence. Called on the cache's tasks: must not
/// block for long (buffer and commit in the background).
pub trait G3Journal: Send + Sync {
    /// Blocks whose bytes are now in their G3 slots. An error drops them (they
    /// are not registered).
    fn stored(&self, entries: &[DurableEntry]) -> Result<(), JournalError>;
    /// Blocks no longer in G3 (evicted or withdrawn), whose slots are about
    /// to be rewritten. An error means the removal is not durable (a record
    /// may still claim those slots after a restart): the cache then leaves
    /// the slots unwritten.
    fn removed(
        &self,
        entries: &[(SlotId, kvtier_logical::SequenceHash)],
    ) -> Result<(), JournalError>;
    /// `Ok` while the journal persists; its error once it stopped for good
    /// (a full disk, an I/O error). A stopped journal can no longer free a
    /// slot durably, so the cache stops rewriting G3 slots (G3 keeps serving
    /// what it holds). The default never stops.
    fn check(&self) -> Result<(), JournalError> {
        Ok(())
    }
    /// Make everything recorded so far durable and stop taking records.
    /// [`crate::TieredCache::close`] calls it last, after the flush-down and
    /// after the background copies stopped. The default has nothing to do.
    fn close(&self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// The disk journal with group commit persists G3 for a running cache.
impl G3Journal for kvtier_disk::GroupJournal {
    fn stored(&self, entries: &[DurableEntry]) -> Result<(), JournalError> {
        Ok(kvtier_disk::GroupJournal::stored(self, entries)?)
    }
    fn close(&self) -> Result<(), JournalError> {
        Ok(kvtier_disk::GroupJournal::close(self)?)
    }
    fn removed(
        &self,
        entries: &[(SlotId, kvtier_logical::SequenceHash)],
    ) -> Result<(), JournalError> {
        Ok(kvtier_disk::GroupJournal::removed(self, entries)?)
    }
    fn check(&self) -> Result<(), JournalError> {
        Ok(kvtier_disk::GroupJournal::check(self)?)
    }
}

/// What [`restore_store`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Entries registered.
    pub restored: u64,
    /// Entries skipped: slot out of range, slot named twice, or hash already restored.
    pub skipped: u64,
}

/// Build a store whose `entries` (oldest first) are registered in their slots
/// and inactive, in that order, so the eviction policy sees them as if they
/// had been released in journal order. Uses the public store API only.
pub fn restore_store(
    config: StoreConfig,
    entries: &[DurableEntry],
) -> Result<(BlockStore, RestoreStats), StoreError> {
    let store = BlockStore::new(config)?;
    let cap = store.capacity();
    let mut by_slot: Vec<Option<kvtier_logical::MutableBlock>> = Vec::new();
    by_slot.resize_with(cap, || None);
    for b in store.allocate(cap)? {
        let s = b.slot() as usize;
        by_slot[s] = Some(b);
    }
    let mut stats = RestoreStats::default();
    let mut held = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(b) = by_slot.get_mut(e.slot as usize).and_then(Option::take) else {
            stats.skipped += 1;
            continue;
        };
        let reg = store.register([b.complete(e.spec)]);
        // A duplicate hash comes back pointing at the earlier slot; its own
        // slot was freed by the store.
        if reg[0].slot() != e.slot {
            stats.skipped += 1;
            // Drop this extra reference now so the first copy keeps its place
            // in the release order.
            store.release(reg);
        } else {
            stats.restored += 1;
            held.extend(reg);
        }
    }
    drop(by_slot); // unused slots back to the free list
    store.release(held);
    Ok((store, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvtier_logical::hash_trace_ids;
    use kvtier_logical::{BlockSpec, CacheSalt, PolicyKind, SequenceHash, Tier};

    #[test]
    fn restores_slots_in_order() {
        let h = hash_trace_ids(CacheSalt(1), &[1, 2, 3]);
        let e = |slot, i: usize| DurableEntry {
            slot,
            spec: BlockSpec {
                hash: h[i],
                parent: if i == 0 { SequenceHash::ROOT } else { h[i - 1] },
                position: i as u32,
            },
            checksum: 0,
        };
        let entries = [e(5, 0), e(2, 1), e(7, 2), e(9, 0), e(99, 1)];
        let (s, st) = restore_store(
            StoreConfig::new(Tier::G3, 8).with_policy(PolicyKind::Lru),
            &entries,
        )
        .unwrap();
        assert_eq!(
            st,
            RestoreStats {
                restored: 3,
                skipped: 2
            }
        );
        s.check_invariants().unwrap();
        let m = s.metrics();
        assert_eq!((m.inactive, m.free), (3, 5));
        let got = s.match_prefix(&h);
        assert_eq!(
            got.iter().map(|b| b.slot()).collect::<Vec<_>>(),
            vec![5, 2, 7]
        );
        drop(got);
        // LRU order is journal order: slot 5 goes first.
        let mut ev = Vec::new();
        let _b = s.allocate_with_evicted(6, &mut ev).unwrap();
        assert_eq!(ev[0].slot, 5);
    }
}
