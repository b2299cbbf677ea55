//! Driving a policy by hand in its unit tests, as the store would: a
//! block's info, its admission (registered, hit, released) and its eviction.

use super::{BlockInfo, EvictionPolicy, SlotId};
use crate::hash::SequenceHash;

/// The info of a leaf block of hash `h` at position 0.
pub(super) fn info(h: u128) -> BlockInfo {
    BlockInfo {
        hash: SequenceHash(h),
        position: 0,
        is_leaf: true,
    }
}

/// Block `h` registered in `slot`, hit `hits` times, then released.
pub(super) fn admit(p: &mut impl EvictionPolicy, slot: SlotId, h: u128, hits: usize) {
    p.on_register(slot, &info(h));
    for _ in 0..hits {
        p.on_hit(slot, &info(h));
    }
    p.insert(slot, &info(h));
}

/// Evicts: `slot` (holding block `h`) must be the victim.
pub(super) fn evict(p: &mut impl EvictionPolicy, slot: SlotId, h: u128) {
    assert_eq!(p.evict(), Some(slot));
    p.on_evicted(slot, &info(h));
}
