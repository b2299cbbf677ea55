//! Reading a lookup's matched prefix where it lies, without moving a block:
//! for a caller that wants the bytes in its own memory (an inference
//! engine's host buffer), not in G1.
//!
//! Each position is read from the tier that serves it, pinned by the
//! lookup's guard (so its slot cannot be rewritten meanwhile). Bytes from a
//! lower tier are checked against the checksum that tier keeps before the
//! caller sees them; a mismatch withdraws the bad copy (as onboarding does)
//! and ends the read. Nothing is allocated in any tier, so a read never
//! waits for room, evicts, or competes with stores for slots.

use crate::error::OffloadError;
use crate::lookup::OnboardPlan;
use crate::state::{Data, Inner};
use kvtier_logical::{ImmutableBlock, Tier};
use std::sync::atomic::Ordering::Relaxed;

/// What [`Inner::read_in_place`] read.
pub(crate) struct ReadOut {
    /// Positions read, a prefix of the matched ones.
    pub(crate) read: usize,
    /// Positions that failed verification (at most one: it ends the read).
    pub(crate) verify_failures: u64,
}

impl Inner {
    /// Hand the bytes of the plan's local positions, in order, to
    /// `copy(pos, bytes)`, verified; stops at the first position that cannot
    /// be read or fails verification. Positions only the shared tier holds
    /// are not read. The plan's pins are released when this returns.
    pub(crate) async fn read_in_place(
        &self,
        plan: OnboardPlan,
        mut copy: impl FnMut(usize, &[u8]) + Send,
    ) -> Result<ReadOut, OffloadError> {
        let Data::On(bytes) = &self.data else {
            return Ok(ReadOut {
                read: 0,
                verify_failures: 0,
            });
        };
        let mut scratch = Vec::new();
        for (i, (tier, guard)) in plan.entries.iter().enumerate() {
            let slot = guard.slot() as usize;
            if *tier == Tier::G1 {
                // G1 keeps no checksums (its bytes may be device-only).
                self.read_g1(&[slot], |_, b| copy(i, b)).await?;
                continue;
            }
            let (Some(host), Some(state)) = (bytes.host(*tier), self.tiers.get(*tier)) else {
                return Ok(ReadOut {
                    read: i,
                    verify_failures: 0,
                });
            };
            let sum = kvtier_memory::block_checksum(&**host, slot)?;
            let expect = state.sum(guard.slot());
            if sum != expect {
                self.withdraw(*tier, guard, sum, expect);
                self.metrics.verify_failures.fetch_add(1, Relaxed);
                return Ok(ReadOut {
                    read: i,
                    verify_failures: 1,
                });
            }
            copy(i, host.block(slot)?.canonical(&mut scratch));
        }
        Ok(ReadOut {
            read: plan.entries.len(),
            verify_failures: 0,
        })
    }

    /// `block`'s copy in `tier` failed verification (checksum `sum`, `expect`
    /// recorded): withdraw it from its tier and from a persistent tier's
    /// journal, so it is recomputed rather than served.
    pub(crate) fn withdraw(&self, tier: Tier, block: &ImmutableBlock, sum: u64, expect: u64) {
        tracing::warn!(
            "{tier} block {} failed verification (checksum {sum:016x}, expected {expect:016x}): recomputing",
            block.hash()
        );
        if let Some(t) = self.tiers.get(tier) {
            t.store.invalidate(block);
        }
        if let Some(j) = self.journaled(tier) {
            if let Err(e) = j.removed(&[(block.slot(), block.hash())]) {
                // Not durable: the bad record may come back at the next
                // start (and fail verification again), but the slot is not
                // rewritten meanwhile: a stopped journal refuses every G3
                // allocation.
                tracing::warn!(
                    "cannot withdraw {tier} block {} from the journal: {e}",
                    block.hash()
                );
            }
        }
    }
}
