//! Property tests run against every policy in `PolicyKind::ALL`: random
//! sequences of store operations keep the store's invariants, never evict a
//! block in use, and lose or duplicate no block.

use kvtier_logical::hash_trace_ids;
use kvtier_logical::{
    BlockSpec, BlockStore, CacheSalt, Evicted, ImmutableBlock, MutableBlock, PolicyKind,
    PolicyParams, SequenceHash, StoreConfig, Tier, WeakBlock,
};
use proptest::prelude::*;

/// A small universe of chains sharing prefixes, so that matches, partial
/// matches, duplicates and parent/child links all happen.
fn chains() -> Vec<Vec<SequenceHash>> {
    let ids: [&[u64]; 6] = [
        &[1, 2, 3, 4, 5, 6],
        &[1, 2, 3, 7, 8],
        &[1, 2, 9],
        &[10, 11, 12, 13, 14, 15, 16],
        &[10, 11, 17],
        &[20, 21],
    ];
    ids.iter()
        .map(|i| hash_trace_ids(CacheSalt(0), i))
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    /// Match a prefix of chain `c` and hold the guards.
    Match(usize),
    /// Allocate `n` blocks and hold them.
    Allocate(usize),
    /// Complete held mutable blocks as positions of chain `c` (from the first
    /// position not matched) and register them.
    Register(usize),
    /// Release held guards through the batch call, tail first.
    ReleaseAll,
    /// Drop the i-th held immutable guard.
    DropGuard(usize),
    /// Drop the i-th held mutable block.
    DropMutable(usize),
    /// Clone the i-th held guard.
    Clone(usize),
    /// Take a weak reference to the i-th guard.
    Downgrade(usize),
    /// Upgrade the i-th weak reference (if still alive) and hold it.
    Upgrade(usize),
    /// A whole request as the replay does it.
    Request(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6usize).prop_map(Op::Match),
        2 => (0..5usize).prop_map(Op::Allocate),
        3 => (0..6usize).prop_map(Op::Register),
        1 => Just(Op::ReleaseAll),
        2 => (0..16usize).prop_map(Op::DropGuard),
        1 => (0..8usize).prop_map(Op::DropMutable),
        1 => (0..16usize).prop_map(Op::Clone),
        1 => (0..16usize).prop_map(Op::Downgrade),
        1 => (0..8usize).prop_map(Op::Upgrade),
        3 => (0..6usize).prop_map(Op::Request),
    ]
}

struct World {
    store: BlockStore,
    chains: Vec<Vec<SequenceHash>>,
    held: Vec<ImmutableBlock>,
    mutable: Vec<MutableBlock>,
    weak: Vec<WeakBlock>,
}

impl World {
    /// `in_use` are the (slot, hash) pairs held when the blocks in `evicted`
    /// were evicted.
    fn check(
        &self,
        evicted: &[Evicted],
        in_use: &[(u32, SequenceHash)],
    ) -> Result<(), TestCaseError> {
        self.store.check_invariants().map_err(TestCaseError::fail)?;
        // Blocks in use are never evicted and stay matchable.
        for e in evicted {
            prop_assert!(
                !in_use.contains(&(e.slot, e.hash)),
                "evicted a block in use: {e:?}"
            );
        }
        let hashes: Vec<SequenceHash> = self.held.iter().map(|b| b.hash()).collect();
        let present = self.store.contains_all(&hashes);
        prop_assert!(present.iter().all(|&p| p), "a held block is not matchable");
        Ok(())
    }

    fn register_chain(&mut self, c: usize, start: usize, blocks: Vec<MutableBlock>) {
        let chain = &self.chains[c];
        let complete: Vec<_> = blocks
            .into_iter()
            .zip(start..chain.len())
            .map(|(b, i)| b.complete(BlockSpec::at(chain, i)))
            .collect();
        let reg = self.store.register(complete);
        self.held.extend(reg);
    }

    fn in_use(&self) -> Vec<(u32, SequenceHash)> {
        self.held.iter().map(|b| (b.slot(), b.hash())).collect()
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut evicted = Vec::new();
        let mut in_use = self.in_use();
        match *op {
            Op::Match(c) => {
                let m = self.store.match_prefix(&self.chains[c]);
                self.held.extend(m);
            }
            Op::Allocate(n) => {
                if let Ok(b) = self.store.allocate_with_evicted(n, &mut evicted) {
                    self.mutable.extend(b);
                }
            }
            Op::Register(c) => {
                let start = self
                    .store
                    .contains_all(&self.chains[c])
                    .iter()
                    .take_while(|&&p| p)
                    .count();
                let n = (self.chains[c].len() - start).min(self.mutable.len());
                let blocks: Vec<_> = self.mutable.drain(..n).collect();
                self.register_chain(c, start, blocks);
            }
            Op::ReleaseAll => {
                self.store.release(self.held.drain(..).rev());
            }
            Op::DropGuard(i) => {
                if !self.held.is_empty() {
                    let i = i % self.held.len();
                    drop(self.held.swap_remove(i));
                }
            }
            Op::DropMutable(i) => {
                if !self.mutable.is_empty() {
                    let i = i % self.mutable.len();
                    drop(self.mutable.swap_remove(i));
                }
            }
            Op::Clone(i) => {
                if !self.held.is_empty() {
                    let b = self.held[i % self.held.len()].clone();
                    self.held.push(b);
                }
            }
            Op::Downgrade(i) => {
                if !self.held.is_empty() {
                    let w = self.held[i % self.held.len()].downgrade();
                    self.weak.push(w);
                }
            }
            Op::Upgrade(i) => {
                if !self.weak.is_empty() {
                    let w = &self.weak[i % self.weak.len()];
                    if let Some(b) = w.upgrade() {
                        prop_assert_eq!(b.hash(), w.hash());
                        self.held.push(b);
                    }
                }
            }
            Op::Request(c) => {
                let chain = self.chains[c].clone();
                let m = self.store.match_prefix(&chain);
                let k = m.len();
                in_use.extend(m.iter().map(|b| (b.slot(), b.hash())));
                let mut mine = m;
                if let Ok(b) = self
                    .store
                    .allocate_with_evicted(chain.len() - k, &mut evicted)
                {
                    let before = self.held.len();
                    self.register_chain(c, k, b);
                    mine.extend(self.held.drain(before..));
                }
                // Check while the request still holds its blocks.
                self.held.extend(mine);
                self.check(&evicted, &in_use)?;
                let n = chain.len().min(self.held.len());
                let start = self.held.len() - n;
                let req: Vec<_> = self.held.drain(start..).collect();
                self.store.release(req.into_iter().rev());
            }
        }
        self.check(&evicted, &in_use)
    }
}

fn run(policy: PolicyKind, capacity: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let store = BlockStore::new(StoreConfig::new(Tier::G1, capacity).with_policy(policy)).unwrap();
    let mut w = World {
        store,
        chains: chains(),
        held: Vec::new(),
        mutable: Vec::new(),
        weak: Vec::new(),
    };
    for op in ops {
        w.apply(op)?;
    }
    // Dropping every guard returns every block: nothing lost or duplicated.
    w.held.clear();
    w.mutable.clear();
    w.check(&[], &[])?;
    let m = w.store.metrics();
    prop_assert_eq!(m.in_use, 0);
    prop_assert_eq!(m.free + m.inactive, capacity as u64);
    // Evict everything by allocating the whole tier: every slot comes back once.
    let all = w.store.allocate(capacity).unwrap();
    let mut slots: Vec<u32> = all.iter().map(|b| b.slot()).collect();
    slots.sort_unstable();
    slots.dedup();
    prop_assert_eq!(slots.len(), capacity);
    drop(all);
    w.store.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_policy_keeps_invariants(
        capacity in 1usize..14,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        for &p in PolicyKind::ALL {
            run(p, capacity, &ops)?;
        }
    }
}

#[test]
fn policies_listed_and_parsed() {
    for &p in PolicyKind::ALL {
        assert_eq!(p.name().parse::<PolicyKind>().unwrap(), p);
        let store = BlockStore::new(StoreConfig::new(Tier::G1, 4).with_policy(p)).unwrap();
        assert_eq!(store.policy_name(), p.name());
    }
    assert!(PolicyKind::ALL.contains(&PolicyKind::default()));
}

/// Requests over a larger universe than `chains()`: each is a shared head
/// (one of `heads`, 0-7 blocks) followed by its own tail of 1-24 blocks, so
/// tiers of a few hundred blocks evict all the time.
fn requests() -> impl Strategy<Value = Vec<Vec<SequenceHash>>> {
    proptest::collection::vec((0u64..6, 0usize..8, 1usize..24, 0u64..40), 20..200).prop_map(
        |reqs| {
            reqs.into_iter()
                .map(|(head, head_len, tail_len, tail)| {
                    let mut ids: Vec<u64> = (0..head_len as u64).map(|i| head * 100 + i).collect();
                    ids.extend((0..tail_len as u64).map(|i| 10_000 + tail * 100 + i));
                    hash_trace_ids(CacheSalt(9), &ids)
                })
                .collect()
        },
    )
}

/// Replay `reqs` through a tier of `capacity` slots with `policy`: the
/// store's invariants hold, nothing is in use afterwards, and every slot
/// comes back exactly once.
fn replays_cleanly(
    policy: PolicyKind,
    capacity: usize,
    reqs: &[Vec<SequenceHash>],
) -> Result<(), TestCaseError> {
    replays_cleanly_with(policy, PolicyParams::default(), capacity, reqs)
}

/// [`replays_cleanly`] with tuning.
fn replays_cleanly_with(
    policy: PolicyKind,
    params: PolicyParams,
    capacity: usize,
    reqs: &[Vec<SequenceHash>],
) -> Result<(), TestCaseError> {
    let store = BlockStore::new(
        StoreConfig::new(Tier::G1, capacity)
            .with_policy(policy)
            .with_policy_params(params),
    )
    .unwrap();
    kvtier_logical::replay(&store, reqs).unwrap();
    store.check_invariants().map_err(TestCaseError::fail)?;
    let m = store.metrics();
    prop_assert_eq!(m.in_use, 0);
    prop_assert_eq!(m.free + m.inactive, capacity as u64);
    let all = store.allocate(capacity).unwrap();
    let mut slots: Vec<u32> = all.iter().map(|b| b.slot()).collect();
    slots.sort_unstable();
    slots.dedup();
    prop_assert_eq!(slots.len(), capacity);
    drop(all);
    store.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `gated-arc` at sizes where its duel samples (one hash in 2 to 4
    /// feeds the shadow LRU) and moves the split under eviction pressure.
    #[test]
    fn gated_arc_duel_keeps_invariants(capacity in 130usize..300, reqs in requests()) {
        replays_cleanly(PolicyKind::GatedArc, capacity, &reqs)?;
    }

    /// `gated-duel` at sizes where its duel samples (one hash in 4 to 8
    /// feeds both miniatures) and switches order under eviction pressure.
    #[test]
    fn gated_duel_keeps_invariants(capacity in 130usize..300, reqs in requests()) {
        replays_cleanly(PolicyKind::GatedDuel, capacity, &reqs)?;
    }

    /// `gated-duel` with a duel that samples every hash and changes state
    /// at every differing sample (no hysteresis, a counter of 2): the
    /// order flips and the seen filter pauses and resumes many times in
    /// one replay.
    #[test]
    fn a_twitchy_duel_keeps_invariants(capacity in 8usize..300, reqs in requests()) {
        let params: PolicyParams = serde_json::from_str(
            r#"{"gated-duel": {"duel_sample_rate": 1, "duel_hysteresis": 0, "duel_counter_max": 2}}"#,
        )
        .unwrap();
        replays_cleanly_with(PolicyKind::GatedDuel, params, capacity, &reqs)?;
    }
}
