//! The full invariant scan of tests and debugging (`testing` feature).

use super::slots::{State, NO_SLOT};
use super::BlockStore;

impl BlockStore {
    /// Check every invariant by a full scan (for tests and debugging; O(capacity)).
    /// Returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let g = self.shared.inner.lock();
        let (core, policy) = (&g.core, &g.policy);
        let cap = self.shared.capacity;
        let mut on_free = vec![false; cap];
        for &s in &core.free {
            if on_free[s as usize] {
                return Err(format!("slot {s} twice on the free list"));
            }
            on_free[s as usize] = true;
            if core.slots[s as usize].state != State::Free {
                return Err(format!("slot {s} on free list but not free"));
            }
        }
        let mut inactive = 0usize;
        let mut in_use = 0usize;
        for (i, slot) in core.slots.iter().enumerate() {
            match slot.state {
                State::Free => {
                    if !on_free[i] {
                        return Err(format!("free slot {i} missing from the free list"));
                    }
                }
                State::Mutable => in_use += 1,
                State::Registered => {
                    if slot.refcount == 0 {
                        if !slot.indexed {
                            return Err(format!("unindexed slot {i} with no users"));
                        }
                        inactive += 1;
                    } else {
                        in_use += 1;
                    }
                    if slot.indexed && core.lookup(slot.hash) != Some(i as u32) {
                        return Err(format!("indexed slot {i} not in the index"));
                    }
                }
            }
        }
        let mut indexed = 0usize;
        for (i, tag, s) in core.index.entries() {
            indexed += 1;
            let Some(slot) = core.slots.get(s as usize) else {
                return Err(format!("index entry {i} -> slot {s}: no such slot"));
            };
            if slot.state != State::Registered
                || !slot.indexed
                || core.index.probe(slot.hash).tag() != tag
            {
                return Err(format!("index entry {i} -> slot {s} is stale"));
            }
            if core.lookup(slot.hash) != Some(s) {
                return Err(format!("index entry {i} -> slot {s} is unreachable"));
            }
            if core.index.slot_at(slot.index_pos) != Some(s) {
                return Err(format!("slot {s} has a stale index position"));
            }
        }
        if indexed != core.index.len() {
            return Err(format!(
                "index holds {indexed} entries but counts {}",
                core.index.len()
            ));
        }
        core.index.check()?;
        if inactive != policy.len() {
            return Err(format!(
                "{inactive} inactive slots but the policy holds {}",
                policy.len()
            ));
        }
        if core.free.len() + inactive + in_use != cap {
            return Err(format!(
                "free {} + inactive {inactive} + in use {in_use} != capacity {cap}",
                core.free.len()
            ));
        }
        // Child counts: each registered, indexed block counts the live links
        // of blocks naming it (same slot, hash and generation) as parent.
        let mut children = vec![0u32; cap];
        for slot in core.slots.iter() {
            let p = slot.parent_slot;
            if slot.state == State::Registered && p != NO_SLOT {
                let ps = &core.slots[p as usize];
                if ps.state == State::Registered
                    && ps.indexed
                    && ps.hash == slot.parent
                    && ps.generation == slot.parent_gen
                {
                    children[p as usize] += 1;
                }
            }
        }
        for (i, slot) in core.slots.iter().enumerate() {
            if slot.state == State::Registered && slot.indexed && slot.children != children[i] {
                return Err(format!(
                    "slot {i} counts {} children but {} blocks link to it",
                    slot.children, children[i]
                ));
            }
        }
        Ok(())
    }
}
