//! Lookups: the longest cached prefix of a request (`match_prefix`), and
//! presence without the prefix rule (`scan`, `contains_all`).

use super::slots::{Core, PREFETCH_AHEAD};
use super::{BlockStore, Counted, ImmutableBlock, Inner, Shared};
use crate::hash::SequenceHash;
use crate::policy::EvictionPolicy;

impl BlockStore {
    /// Longest prefix of `hashes` this tier holds: one guard per matched block,
    /// in order. Inactive matched blocks come back into use. Stops at the first
    /// hash not present.
    pub fn match_prefix(&self, hashes: &[SequenceHash]) -> Vec<ImmutableBlock> {
        let mut out = Vec::new();
        self.match_prefix_into(hashes, &mut out);
        out
    }

    /// As [`match_prefix`](Self::match_prefix), appending to a caller-owned
    /// vector; returns the number of blocks matched.
    pub fn match_prefix_into(
        &self,
        hashes: &[SequenceHash],
        out: &mut Vec<ImmutableBlock>,
    ) -> usize {
        // References for every possible match, one atomic op; the unused are
        // given back at the end.
        self.shared.add_refs(hashes.len());
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        let matched = with_policy!(policy, p => core.match_prefix(p, &self.shared, hashes, out));
        self.shared.sub_refs(hashes.len() - matched);
        matched
    }

    /// Non-prefix presence: a guard for every hash the tier holds, `None` for
    /// the others (does not stop at the first miss; counts no hits/lookups).
    pub fn scan(&self, hashes: &[SequenceHash]) -> Vec<Option<ImmutableBlock>> {
        let mut out = Vec::with_capacity(hashes.len());
        let mut g = self.shared.inner.lock();
        let Inner { core, policy } = &mut *g;
        with_policy!(policy, p => {
            for &h in hashes {
                let found = core.lookup(h);
                out.push(found.map(|s| {
                    core.acquire(p, s);
                    ImmutableBlock {
                        store: self.shared.clone(),
                        slot: s,
                        hash: h,
                    }
                }));
            }
        });
        out
    }

    /// Whether each hash is matchable here, without taking references.
    pub fn contains_all(&self, hashes: &[SequenceHash]) -> Vec<bool> {
        let g = self.shared.inner.lock();
        hashes.iter().map(|&h| g.core.lookup(h).is_some()).collect()
    }
}

impl Core {
    /// The prefix match under the lock, with one reference per hash added by
    /// the caller (the unused ones are the caller's to give back): returns
    /// the number of blocks matched.
    #[inline(always)]
    fn match_prefix<P: EvictionPolicy>(
        &mut self,
        p: &mut P,
        store: &Counted<Shared>,
        hashes: &[SequenceHash],
        out: &mut Vec<ImmutableBlock>,
    ) -> usize {
        let mut matched = 0;
        for &h in hashes.iter().take(PREFETCH_AHEAD) {
            self.prefetch_bucket(h);
            p.prefetch_lookup(h);
        }
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&next) = hashes.get(i + PREFETCH_AHEAD) {
                self.prefetch_bucket(next);
                p.prefetch_lookup(next);
            }
            match self.lookup(h) {
                Some(s) => {
                    self.acquire(p, s);
                    p.on_hit(s, &self.slots[s as usize].info());
                    // SAFETY: one of the references the caller added.
                    ImmutableBlock::push(out, unsafe { store.counted_clone() }, s, h);
                    matched += 1;
                }
                None => {
                    p.on_miss(h);
                    // The rest of the request, from the missed block on, is
                    // usually computed and registered next: let the policy
                    // prefetch what it will count then (lines a lookup
                    // already asked for cost nothing more).
                    for &r in &hashes[i..] {
                        p.prefetch(r);
                    }
                    self.counters.lookups += 1;
                    break;
                }
            }
        }
        self.counters.lookups += matched as u64;
        self.counters.hits += matched as u64;
        matched
    }
}
