//! Turning kvtier's per-store events into router events with exact set
//! semantics.
//!
//! The [`Translator`] keeps, for each source store (tier), the blocks it holds
//! and the 64-bit hash each was published under, and for each medium a count
//! of holders per published hash. It announces a hash in a medium when that
//! count goes 0 -> 1 (`BlockStored`) and withdraws it when it goes 1 -> 0
//! (`BlockRemoved`). So a subscriber that applies every event in order holds,
//! per medium, exactly the published hashes of the blocks the tiers of that
//! medium hold — even when two kvtier hashes share a published hash, or two
//! tiers share a medium name — and is never told to remove a hash it was not
//! told about.
//!
//! Each store's events are applied in that store's order; stores are
//! independent (one medium's set never depends on another store's order), so
//! merging several stores' channels in any interleaving keeps the guarantee.

use crate::keys::BlockKeys;
use crate::wire::WireEvent;
use kvtier_logical::{BlockSpec, EventKind, SequenceHash};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A multiply-rotate hasher (FxHash's): the keys are block hashes, already
/// uniform, from trusted sources, so SipHash's flooding resistance buys
/// nothing here and costs most of the translator's time.
#[derive(Clone, Copy, Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

/// Maps keyed by block hashes.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FoldHasher>>;

/// What the translator remembers of a block a tier holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Published hash.
    hash: u64,
    /// Published hash of its parent (`None` for a first block).
    parent: Option<u64>,
}

/// One source store's view.
struct TierView {
    medium: usize,
    held: FastMap<SequenceHash, Held>,
}

/// Translates store events into wire events; see the module docs.
pub struct Translator {
    keys: Box<dyn BlockKeys>,
    block_size: u32,
    media: Vec<String>,
    tiers: Vec<TierView>,
    refs: FastMap<(usize, u64), u32>,
    tokens: Vec<u32>,
    anomalies: u64,
}

/// Group `items` (`(key, parent key)`) into chains: every item appears in
/// exactly one chain, each chain lists a parent before its child, and an
/// item's chain comes after its parent's whenever the parent is among the
/// items. Roots are taken in input order. Returns indices into `items`.
pub fn chains<K: Hash + Eq + Copy>(items: &[(K, Option<K>)]) -> Vec<Vec<usize>> {
    let index: HashMap<K, usize> = items
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, (k, p)) in items.iter().enumerate() {
        match p
            .and_then(|p| index.get(&p))
            .filter(|&&pi| items[pi].0 != *k)
        {
            Some(&pi) => children.entry(pi).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut out = Vec::new();
    let mut seen = vec![false; items.len()];
    // Starts are popped from the back: push roots reversed to keep input order.
    let mut starts: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(s) = starts.pop() {
        if std::mem::replace(&mut seen[s], true) {
            continue;
        }
        let mut chain = vec![s];
        let mut cur = s;
        loop {
            let next = children.get(&cur).map(|c| c.as_slice()).unwrap_or(&[]);
            let mut cont = None;
            for &c in next.iter().rev() {
                if seen[c] {
                    continue;
                }
                if let Some(o) = cont.replace(c) {
                    starts.push(o);
                }
            }
            match cont {
                Some(c) => {
                    seen[c] = true;
                    chain.push(c);
                    cur = c;
                }
                None => break,
            }
        }
        out.push(chain);
    }
    // Items on a parent cycle (impossible for real chains) still appear once.
    for (i, s) in seen.iter().enumerate() {
        if !s {
            out.push(vec![i]);
        }
    }
    out
}

impl Translator {
    /// A translator for stores whose media are `tier_media` (one name per
    /// source store, in source order).
    pub fn new(keys: Box<dyn BlockKeys>, block_size: u32, tier_media: &[String]) -> Self {
        let mut media: Vec<String> = Vec::new();
        let tiers = tier_media
            .iter()
            .map(|m| {
                let medium = match media.iter().position(|x| x == m) {
                    Some(i) => i,
                    None => {
                        media.push(m.clone());
                        media.len() - 1
                    }
                };
                TierView {
                    medium,
                    held: FastMap::default(),
                }
            })
            .collect();
        Translator {
            keys,
            block_size,
            media,
            tiers,
            refs: FastMap::default(),
            tokens: Vec::new(),
            anomalies: 0,
        }
    }

    /// Store events that contradicted the view (a removal of a block the
    /// tier did not hold, a store of one it held). Always 0 unless a store
    /// misreports; such events are skipped.
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Blocks held by source `src`, as the view knows them.
    pub fn held(&self, src: usize) -> usize {
        self.tiers[src].held.len()
    }

    /// Published hash of `h`: the one it already has in any tier, else the
    /// mapping's.
    fn map(&mut self, h: SequenceHash) -> u64 {
        self.map_except(usize::MAX, h)
    }

    /// As [`map`](Self::map), not looking in source `src` (known not to hold it).
    #[inline]
    fn map_except(&mut self, src: usize, h: SequenceHash) -> u64 {
        for (i, t) in self.tiers.iter().enumerate() {
            if i != src {
                if let Some(b) = t.held.get(&h) {
                    return b.hash;
                }
            }
        }
        self.keys.block_hash(h)
    }

    /// Apply one store event of source `src`, appending wire events to `out`.
    pub fn apply(&mut self, src: usize, kind: &EventKind, out: &mut Vec<WireEvent>) {
        match kind {
            EventKind::Stored { hashes, parent } => self.stored(src, hashes, *parent, out),
            EventKind::Removed { hashes } => self.removed(src, hashes.iter().copied(), out),
            EventKind::Cleared => {
                let all: Vec<SequenceHash> = self.tiers[src].held.keys().copied().collect();
                let before = out.len();
                self.removed(src, all.into_iter(), out);
                if self.refs.is_empty() {
                    // Nothing is held anywhere: one event says it all.
                    out.truncate(before);
                    out.push(WireEvent::AllBlocksCleared);
                }
            }
        }
    }

    fn stored(
        &mut self,
        src: usize,
        hashes: &[SequenceHash],
        parent: Option<SequenceHash>,
        out: &mut Vec<WireEvent>,
    ) {
        let medium = self.tiers[src].medium;
        let mut parent_pub = parent.map(|p| self.map(p));
        let mut run: Vec<u64> = Vec::new();
        let mut run_parent = parent_pub;
        let mut tokens_ok = true;
        self.tokens.clear();
        for &h in hashes {
            if let Some(b) = self.tiers[src].held.get(&h) {
                self.anomalies += 1;
                parent_pub = Some(b.hash);
                self.flush_stored(medium, &mut run, run_parent, &mut tokens_ok, out);
                continue;
            }
            let p = self.map_except(src, h);
            self.tiers[src].held.insert(
                h,
                Held {
                    hash: p,
                    parent: parent_pub,
                },
            );
            let c = self.refs.entry((medium, p)).or_insert(0);
            *c += 1;
            if *c == 1 {
                if run.is_empty() {
                    run_parent = parent_pub;
                }
                run.push(p);
                let before = self.tokens.len();
                self.keys.token_ids(h, &mut self.tokens);
                tokens_ok &= self.tokens.len() - before == self.block_size as usize;
            } else {
                // Already announced in this medium (a collision or another
                // tier of the same medium): the chain continues after it.
                self.flush_stored(medium, &mut run, run_parent, &mut tokens_ok, out);
            }
            parent_pub = Some(p);
        }
        self.flush_stored(medium, &mut run, run_parent, &mut tokens_ok, out);
    }

    fn flush_stored(
        &mut self,
        medium: usize,
        run: &mut Vec<u64>,
        parent: Option<u64>,
        tokens_ok: &mut bool,
        out: &mut Vec<WireEvent>,
    ) {
        if !run.is_empty() {
            let token_ids = if *tokens_ok {
                std::mem::take(&mut self.tokens)
            } else {
                Vec::new()
            };
            out.push(WireEvent::BlockStored {
                block_hashes: std::mem::take(run),
                parent_block_hash: parent,
                token_ids,
                block_size: self.block_size,
                lora_id: None,
                medium: Some(self.media[medium].clone()),
                lora_name: None,
            });
        }
        self.tokens.clear();
        *tokens_ok = true;
    }

    fn removed(
        &mut self,
        src: usize,
        hashes: impl Iterator<Item = SequenceHash>,
        out: &mut Vec<WireEvent>,
    ) {
        let medium = self.tiers[src].medium;
        let mut gone = Vec::new();
        for h in hashes {
            let Some(b) = self.tiers[src].held.remove(&h) else {
                self.anomalies += 1;
                continue;
            };
            match self.refs.entry((medium, b.hash)) {
                std::collections::hash_map::Entry::Occupied(mut c) => {
                    *c.get_mut() -= 1;
                    if *c.get() == 0 {
                        c.remove();
                        gone.push(b.hash);
                    }
                }
                std::collections::hash_map::Entry::Vacant(_) => {
                    unreachable!("a held block is counted")
                }
            }
        }
        if !gone.is_empty() {
            out.push(WireEvent::BlockRemoved {
                block_hashes: gone,
                medium: Some(self.media[medium].clone()),
            });
        }
    }

    /// Bring source `src`'s view to `snapshot` (everything the store holds,
    /// taken atomically with a fresh subscription): removals of what it no
    /// longer holds, then the new blocks as chains, parents first.
    pub fn resync(&mut self, src: usize, snapshot: &[BlockSpec], out: &mut Vec<WireEvent>) {
        let now: FastSet<SequenceHash> = snapshot.iter().map(|b| b.hash).collect();
        let stale: Vec<SequenceHash> = self.tiers[src]
            .held
            .keys()
            .filter(|h| !now.contains(h))
            .copied()
            .collect();
        self.removed(src, stale.into_iter(), out);
        let new: Vec<(SequenceHash, Option<SequenceHash>)> = snapshot
            .iter()
            .filter(|b| !self.tiers[src].held.contains_key(&b.hash))
            .map(|b| (b.hash, (b.parent != SequenceHash::ROOT).then_some(b.parent)))
            .collect();
        for chain in chains(&new) {
            let hashes: Vec<SequenceHash> = chain.iter().map(|&i| new[i].0).collect();
            self.stored(src, &hashes, new[chain[0]].1, out);
        }
    }

    /// The whole announced state as a self-contained sequence:
    /// `AllBlocksCleared`, then every published hash of every medium (chains,
    /// parents first). Changes nothing in the view.
    pub fn checkpoint(&mut self, out: &mut Vec<WireEvent>) {
        out.push(WireEvent::AllBlocksCleared);
        for medium in 0..self.media.len() {
            // One entry per published hash of the medium, with a kvtier block
            // holding it (for its tokens).
            let mut items: Vec<(u64, Option<u64>)> = Vec::new();
            let mut blocks: Vec<SequenceHash> = Vec::new();
            let mut seen: FastSet<u64> = FastSet::default();
            for t in self.tiers.iter().filter(|t| t.medium == medium) {
                for (h, b) in &t.held {
                    if seen.insert(b.hash) {
                        items.push((b.hash, b.parent));
                        blocks.push(*h);
                    }
                }
            }
            for chain in chains(&items) {
                self.tokens.clear();
                let mut tokens_ok = true;
                for &i in &chain {
                    let before = self.tokens.len();
                    self.keys.token_ids(blocks[i], &mut self.tokens);
                    tokens_ok &= self.tokens.len() - before == self.block_size as usize;
                }
                let mut run: Vec<u64> = chain.iter().map(|&i| items[i].0).collect();
                let parent = items[chain[0]].1;
                self.flush_stored(medium, &mut run, parent, &mut tokens_ok, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Low64;

    fn h(x: u128) -> SequenceHash {
        SequenceHash(x)
    }

    fn stored(hashes: &[u128], parent: Option<u128>) -> EventKind {
        EventKind::Stored {
            hashes: hashes.iter().map(|&x| h(x)).collect(),
            parent: parent.map(h),
        }
    }

    fn media(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chains_keep_parents_first_and_split_branches() {
        // 1 -> 2 -> 3, 2 -> 4, 9 (parent unknown), 5 -> 6.
        let items = [
            (3, Some(2)),
            (1, None),
            (2, Some(1)),
            (4, Some(2)),
            (9, Some(100)),
            (5, None),
            (6, Some(5)),
        ];
        let c = chains(&items);
        let keys: Vec<Vec<i32>> = c
            .iter()
            .map(|ch| ch.iter().map(|&i| items[i].0).collect())
            .collect();
        assert_eq!(keys, vec![vec![1, 2, 3], vec![4], vec![9], vec![5, 6]]);
    }

    #[test]
    fn collisions_are_counted_not_announced_twice() {
        // Everything maps to x % 10: 11 and 21 collide.
        let mut t = Translator::new(
            Box::new(|s: SequenceHash| s.low64() % 10),
            16,
            &media(&["GPU"]),
        );
        let mut out = Vec::new();
        t.apply(0, &stored(&[11, 12], None), &mut out);
        t.apply(0, &stored(&[21, 13], Some(12)), &mut out);
        assert_eq!(out.len(), 2);
        match &out[1] {
            WireEvent::BlockStored {
                block_hashes,
                parent_block_hash,
                ..
            } => {
                // 21 -> 1 was already announced: the run restarts after it.
                assert_eq!(block_hashes, &vec![3]);
                assert_eq!(*parent_block_hash, Some(1));
            }
            e => panic!("{e:?}"),
        }
        out.clear();
        t.apply(
            0,
            &EventKind::Removed {
                hashes: vec![h(11)],
            },
            &mut out,
        );
        assert!(out.is_empty(), "1 is still held through 21");
        t.apply(
            0,
            &EventKind::Removed {
                hashes: vec![h(21), h(99)],
            },
            &mut out,
        );
        assert_eq!(
            out,
            vec![WireEvent::BlockRemoved {
                block_hashes: vec![1],
                medium: Some("GPU".into())
            }]
        );
        assert_eq!(t.anomalies(), 1, "99 was never stored");
    }

    #[test]
    fn tiers_sharing_a_medium_and_clears() {
        let mut t = Translator::new(Box::new(Low64), 4, &media(&["GPU", "CPU", "CPU"]));
        let mut out = Vec::new();
        t.apply(1, &stored(&[1], None), &mut out);
        t.apply(2, &stored(&[1, 2], None), &mut out);
        t.apply(0, &stored(&[1], None), &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        t.apply(1, &EventKind::Cleared, &mut out);
        assert!(out.is_empty(), "G3 still holds 1 in CPU");
        t.apply(2, &EventKind::Cleared, &mut out);
        let [WireEvent::BlockRemoved {
            block_hashes,
            medium,
        }] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        let mut got = block_hashes.clone();
        got.sort();
        assert_eq!((got, medium.as_deref()), (vec![1, 2], Some("CPU")));
        out.clear();
        t.apply(0, &EventKind::Cleared, &mut out);
        assert_eq!(out, vec![WireEvent::AllBlocksCleared]);
    }

    #[test]
    fn resync_diffs_and_checkpoint_restates() {
        let mut t = Translator::new(Box::new(Low64), 4, &media(&["GPU"]));
        let mut out = Vec::new();
        t.apply(0, &stored(&[1, 2, 3], None), &mut out);
        out.clear();
        let spec = |hash: u128, parent: u128| BlockSpec {
            hash: h(hash),
            parent: h(parent),
            position: 0,
        };
        t.resync(
            0,
            &[spec(1, 0), spec(2, 1), spec(7, 2), spec(8, 7)],
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                WireEvent::BlockRemoved {
                    block_hashes: vec![3],
                    medium: Some("GPU".into())
                },
                WireEvent::BlockStored {
                    block_hashes: vec![7, 8],
                    parent_block_hash: Some(2),
                    token_ids: vec![],
                    block_size: 4,
                    lora_id: None,
                    medium: Some("GPU".into()),
                    lora_name: None
                }
            ]
        );
        out.clear();
        t.checkpoint(&mut out);
        assert_eq!(out[0], WireEvent::AllBlocksCleared);
        let mut all: Vec<u64> = out[1..]
            .iter()
            .flat_map(|e| match e {
                WireEvent::BlockStored { block_hashes, .. } => block_hashes.clone(),
                _ => vec![],
            })
            .collect();
        all.sort();
        assert_eq!(all, vec![1, 2, 7, 8]);
        assert_eq!(out.len(), 2, "one chain 1-2-7-8");
    }
}
