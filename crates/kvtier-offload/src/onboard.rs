//! Onboarding: bringing a lookup's matched prefix into G1, verified.
//!
//! Blocks are lifted one tier at a time, bottom up (G3 -> G2, then G2 -> G1);
//! lower tiers are inclusive, so each keeps its copy. A lift into a lower
//! tier checks the bytes that landed against the checksum of the source
//! (and keeps it); a lift into G1 (which keeps no checksums) checks the
//! source bytes before the copy, unless they were checked when they landed.
//! A mismatch is counted in `verify_failures`, logged, the bad copy is
//! withdrawn from its tier, and the prefix is cut there: the caller
//! recomputes the rest. A failed copy cuts the prefix at its first position.

use crate::error::OffloadError;
use crate::lookup::OnboardPlan;
use crate::state::{Data, Inner};
use crate::TIERS;
use kvtier_logical::{BlockSpec, CompleteBlock, ImmutableBlock, Tier};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What [`Inner::onboard`] brought into G1.
pub(crate) struct Onboarded {
    /// G1 guards for the served prefix, in position order.
    pub(crate) blocks: Vec<ImmutableBlock>,
    /// Served positions per tier (`[g1, g2, g3]`), after verification.
    pub(crate) hits_by_tier: [u64; TIERS],
    /// Positions that failed verification (the prefix was cut at the first).
    pub(crate) verify_failures: u64,
    /// The tier that served each position of `blocks` (positions read from
    /// the shared tier show as G2, where they landed).
    pub(crate) served: Vec<Tier>,
    /// Served positions read from the shared tier (G4).
    pub(crate) shared_hits: u64,
}

/// The state of one onboarding: a guard per matched position and where it is.
struct Lifting {
    /// Guard of each position, in the tier `at` names.
    guards: Vec<ImmutableBlock>,
    /// The tier each position's guard is in now.
    at: Vec<Tier>,
    /// Positions whose bytes were checked on the way up.
    verified: Vec<bool>,
    /// The served prefix ends here.
    cut: usize,
    /// Verification failures.
    failures: u64,
}

impl Inner {
    /// Bring every lower-tier block of `plan` into G1 and return G1 guards
    /// for the served prefix. `spec(i)` is the identity position `i` is
    /// registered under in the tiers it is lifted into.
    pub(crate) async fn onboard(
        self: &Arc<Self>,
        plan: OnboardPlan,
        spec: impl Fn(usize) -> BlockSpec,
    ) -> Result<Onboarded, OffloadError> {
        let (mut served, mut guards): (Vec<Tier>, Vec<ImmutableBlock>) =
            plan.entries.into_iter().unzip();
        let local = guards.len();
        let mut failures = 0;
        if plan.shared > 0 {
            let got = self
                .onboard_shared(local, plan.shared, &spec, &mut failures)
                .await;
            served.extend(got.iter().map(|_| Tier::G2));
            guards.extend(got);
        }
        let n = guards.len();
        let mut verified = vec![false; local];
        // Positions from the shared tier were checked when they landed.
        verified.resize(n, true);
        let mut l = Lifting {
            guards,
            at: served.clone(),
            verified,
            cut: n,
            failures,
        };
        for from in self.tiers.lower().iter().rev().map(|t| t.tier) {
            let to = Tier::ALL[from.index() - 1];
            self.lift(from, to, &mut l, &spec).await?;
        }
        // Every served position is in G1 now (a failed lift cut before it).
        let cut = l.at.iter().position(|&t| t != Tier::G1).unwrap_or(n);
        let cut = cut.min(l.cut);
        let mut hits = [0u64; TIERS];
        for t in &served[..cut.min(local)] {
            hits[t.index()] += 1;
        }
        let shared_hits = cut.saturating_sub(local) as u64;
        served.truncate(cut);
        let mut blocks = l.guards;
        blocks.truncate(cut);
        if l.failures > 0 {
            self.metrics.verify_failures.fetch_add(l.failures, Relaxed);
        }
        Ok(Onboarded {
            blocks,
            hits_by_tier: hits,
            verify_failures: l.failures,
            served,
            shared_hits,
        })
    }

    /// Read `n` positions from `start` on from the shared tier into G2,
    /// verified against the checksum their writer recorded, and register
    /// them there. Returns G2 guards for the leading run that landed; a bad
    /// block is counted in `failures` and ends the run.
    async fn onboard_shared(
        self: &Arc<Self>,
        start: usize,
        n: usize,
        spec: &impl Fn(usize) -> BlockSpec,
        failures: &mut u64,
    ) -> Vec<ImmutableBlock> {
        let (Some(shared), Some(g2), Data::On(b)) =
            (self.shared.get(), self.tiers.get(Tier::G2), &self.data)
        else {
            return Vec::new();
        };
        let Some(host) = b.host(Tier::G2) else {
            return Vec::new();
        };
        // Leave G2 room for the local positions pinned there.
        let n = n.min(g2.store.capacity() / 2);
        if n == 0 {
            return Vec::new();
        }
        let hashes = (start..start + n).map(|i| spec(i).hash).collect();
        let blocks = shared.load(hashes).await;
        if blocks.is_empty() {
            return Vec::new();
        }
        let dst = match self.clone().allocate_in(Tier::G2, blocks.len()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("no room in G2 for {} shared blocks: {e}", blocks.len());
                return Vec::new();
            }
        };
        let mut landed: Vec<CompleteBlock> = Vec::with_capacity(dst.len());
        for (k, (sb, d)) in blocks.into_iter().zip(dst).enumerate() {
            let slot = d.slot() as usize;
            if let Err(e) = host.write_block(slot, &sb.bytes) {
                tracing::warn!("cannot land shared block {} in G2: {e}", sb.hash);
                break;
            }
            let sum = match kvtier_memory::block_checksum(&**host, slot) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot checksum shared block {}: {e}", sb.hash);
                    break;
                }
            };
            if sum != sb.checksum || sb.hash != spec(start + k).hash {
                tracing::warn!(
                    "shared block {} failed verification (checksum {sum:016x}, expected {:016x}): recomputing",
                    sb.hash,
                    sb.checksum
                );
                *failures += 1;
                break;
            }
            g2.set_sum(d.slot(), sum);
            landed.push(d.complete(spec(start + k)));
        }
        let specs: Vec<BlockSpec> = landed.iter().map(|b| b.spec()).collect();
        let registered = g2.store.register(landed);
        self.queue_write_through(Tier::G2, &registered, &specs)
            .await;
        registered
    }

    /// Move the positions of the served prefix held in `from` up into `to`
    /// (the tier above), verified.
    async fn lift(
        self: &Arc<Self>,
        from: Tier,
        to: Tier,
        l: &mut Lifting,
        spec: &impl Fn(usize) -> BlockSpec,
    ) -> Result<(), OffloadError> {
        let (Some(src_tier), Some(dst_tier)) = (self.tiers.get(from), self.tiers.get(to)) else {
            return Ok(());
        };
        let host = |t: Tier| match &self.data {
            Data::On(b) => b.host(t),
            Data::Off => None,
        };
        let mut pos: Vec<usize> = (0..l.cut).filter(|&i| l.at[i] == from).collect();
        if pos.is_empty() {
            return Ok(());
        }
        let into_g1 = to == Tier::G1;
        if into_g1 {
            // G1 keeps no checksums: check the source before copying.
            if let Some(h) = host(from) {
                for &i in &pos {
                    if l.verified[i] {
                        continue;
                    }
                    let slot = l.guards[i].slot();
                    let sum = kvtier_memory::block_checksum(&**h, slot as usize)?;
                    let expect = src_tier.sum(slot);
                    if sum != expect {
                        self.reject(l, from, i, sum, expect);
                        break;
                    }
                }
            }
            pos.retain(|&i| i < l.cut);
            if pos.is_empty() {
                return Ok(());
            }
        }
        let dst = self.clone().allocate_in(to, pos.len()).await?;
        let pairs: Vec<(usize, usize)> = pos
            .iter()
            .zip(&dst)
            .map(|(&i, d)| (l.guards[i].slot() as usize, d.slot() as usize))
            .collect();
        let (res, dst) = self.copy_pinned(from, to, &pairs, dst).await;
        if let Err(e) = res {
            tracing::warn!(
                "onboard {from}->{to} failed, recomputing from position {}: {e}",
                pos[0]
            );
            l.cut = l.cut.min(pos[0]);
            return Ok(());
        }
        let mut landed: Vec<(usize, CompleteBlock)> = Vec::with_capacity(dst.len());
        for (&i, d) in pos.iter().zip(dst) {
            if i >= l.cut {
                break;
            }
            if !into_g1 {
                // Check the bytes that landed; the tier keeps their checksum.
                let src = &l.guards[i];
                let expect = src_tier.sum(src.slot());
                let sum = match host(to) {
                    Some(h) => Some(kvtier_memory::block_checksum(&**h, d.slot() as usize)?),
                    None => None,
                };
                if let Some(sum) = sum.filter(|&s| s != expect) {
                    self.reject(l, from, i, sum, expect);
                    break;
                }
                dst_tier.set_sum(d.slot(), sum.unwrap_or(0));
                l.verified[i] = true;
            }
            landed.push((i, d.complete(spec(i))));
        }
        let (pos, blocks): (Vec<usize>, Vec<CompleteBlock>) = landed.into_iter().unzip();
        let specs: Vec<BlockSpec> = blocks.iter().map(|b| b.spec()).collect();
        let registered = dst_tier.store.register(blocks);
        if !into_g1 {
            self.queue_write_through(to, &registered, &specs).await;
            self.share(to, &registered).await;
        }
        for (i, b) in pos.into_iter().zip(registered) {
            l.guards[i] = b; // the guard in the tier below drops here
            l.at[i] = to;
        }
        Ok(())
    }

    /// Position `i`'s copy in `tier` failed verification: count it, withdraw
    /// the copy from its tier (and from a persistent tier's journal), and
    /// cut the served prefix there.
    fn reject(&self, l: &mut Lifting, tier: Tier, i: usize, sum: u64, expect: u64) {
        self.withdraw(tier, &l.guards[i], sum, expect);
        l.failures += 1;
        l.cut = i;
    }
}
