//! Lookup across tiers: the matched prefix of a request, each position served
//! by the fastest tier that holds it, every matched block pinned.

use crate::state::{Data, Inner};
use kvtier_logical::{ImmutableBlock, SequenceHash, Tier};

/// How many times a lookup waits for one position in transit (a block moves
/// down at most once per tier boundary, so this bounds the waits).
const MAX_TRANSIT_WAITS: u32 = 4;

/// The matched prefix: each position with the tier that serves it and a
/// guard pinning that block there (so nothing it names can be evicted).
pub(crate) struct OnboardPlan {
    pub(crate) entries: Vec<(Tier, ImmutableBlock)>,
    /// Positions after `entries` that the shared tier's index holds (not
    /// pinned: a stale entry costs a miss when they are read).
    pub(crate) shared: usize,
}

impl OnboardPlan {
    /// Number of matched positions.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() + self.shared
    }
}

impl Inner {
    /// Walk `hashes` position by position, each served by the fastest tier
    /// holding it, until a position no tier holds. A block in transit
    /// between two tiers (evicted from one, its copy to the next not landed
    /// yet) is waited for, not missed.
    pub(crate) async fn lookup(&self, hashes: &[SequenceHash]) -> OnboardPlan {
        if self.selective {
            let mut seen = self.seen.lock();
            for &h in hashes {
                seen.increment(h);
            }
        }
        let mut entries: Vec<(Tier, ImmutableBlock)> = Vec::with_capacity(hashes.len());
        let mut buf = Vec::with_capacity(hashes.len());
        // Fast path: G1's run in one batch.
        self.tiers.g1().store.match_prefix_into(hashes, &mut buf);
        entries.extend(buf.drain(..).map(|b| (Tier::G1, b)));
        let mut pos = entries.len();
        // G1 already answered for `pos`; later positions ask every tier.
        let mut skip_g1 = true;
        // Waits at the current position.
        let mut waited = 0;
        'walk: while pos < hashes.len() {
            for t in self.tiers.iter() {
                if skip_g1 && t.tier == Tier::G1 {
                    continue;
                }
                t.store.match_prefix_into(&hashes[pos..=pos], &mut buf);
                if let Some(b) = buf.pop() {
                    entries.push((t.tier, b));
                    pos += 1;
                    skip_g1 = false;
                    waited = 0;
                    continue 'walk;
                }
            }
            // In transit? Wait for its move to finish, then ask again.
            match self.transit.waiter(hashes[pos]) {
                Some(w) if waited < MAX_TRANSIT_WAITS => {
                    w.wait().await;
                    waited += 1;
                    skip_g1 = false;
                }
                _ => break,
            }
        }
        // Past the local tiers: the shared tier's index, when it can be
        // onboarded (data on, a G2 to land in).
        let pos = entries.len();
        let shared = match (self.shared.get(), &self.data, self.tiers.get(Tier::G2)) {
            (Some(s), Data::On(_), Some(_)) if pos < hashes.len() => s.matched(&hashes[pos..]),
            _ => 0,
        };
        OnboardPlan { entries, shared }
    }
}
