//! Seeded synthetic workloads for policy studies and the CLI: each generator
//! returns requests as chained block hashes (the same form as a replayed
//! trace), and is fully determined by its seed and config.
//!
//! - [`zipf_prefixes`]: documents of various lengths requested with Zipf
//!   popularity, each request adding a short unique suffix (RAG / doc QA).
//! - [`multi_turn`]: interleaved chat sessions whose every turn re-sends the
//!   whole conversation so far, behind a few shared system prompts.
//! - [`scan_mix`]: a Zipf-popular hot set interrupted by long one-off
//!   requests (batch jobs, huge uploads) that a good policy must not let
//!   flush the cache.
//! - [`agentic`]: coding-agent sessions whose contexts grow step by step
//!   (tool output, file reads), fork short-lived sub-agents and are
//!   compacted when they grow too long.
//!
//! A tiny splitmix64 generator keeps the module free of runtime dependencies.

use crate::hash::{hash_trace_ids, CacheSalt, SequenceHash};

/// splitmix64 (Steele, Lea, Flood 2014): a 64-bit seeded generator, good
/// enough for workload synthesis and stable across platforms and versions.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

/// Zipf sampler over `0..n` (rank 0 most popular) by inverse CDF.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Popularity of rank `k` proportional to `1 / (k + 1)^exponent`.
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut acc = 0.0;
        for k in 0..n.max(1) {
            acc += 1.0 / ((k + 1) as f64).powf(exponent);
            cdf.push(acc);
        }
        for c in cdf.iter_mut() {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// Draw a rank.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Hands out block ids never used before.
struct Ids(u64);

impl Ids {
    fn take(&mut self, n: u32, out: &mut Vec<u64>) {
        for _ in 0..n {
            out.push(self.0);
            self.0 += 1;
        }
    }
}

/// `n` documents of fresh ids, each of a length drawn from `blocks`.
fn documents(rng: &mut SplitMix64, ids: &mut Ids, n: usize, blocks: (u32, u32)) -> Vec<Vec<u64>> {
    let mut doc = || {
        let mut d = Vec::new();
        ids.take(rng.range(blocks.0, blocks.1), &mut d);
        d
    };
    (0..n).map(|_| doc()).collect()
}

fn finish(requests: Vec<Vec<u64>>) -> Vec<Vec<SequenceHash>> {
    requests
        .iter()
        .map(|ids| hash_trace_ids(CacheSalt(0), ids))
        .collect()
}

/// Config of [`zipf_prefixes`].
#[derive(Clone, Debug, PartialEq)]
pub struct ZipfPrefixes {
    /// Requests generated.
    pub requests: usize,
    /// Distinct shared documents.
    pub documents: usize,
    /// Zipf exponent of document popularity.
    pub exponent: f64,
    /// Length of a document in blocks (uniform in the range, fixed per document).
    pub doc_blocks: (u32, u32),
    /// Unique blocks appended by each request (the question).
    pub suffix_blocks: (u32, u32),
}

impl Default for ZipfPrefixes {
    fn default() -> Self {
        ZipfPrefixes {
            requests: 4000,
            documents: 2000,
            exponent: 0.9,
            doc_blocks: (4, 64),
            suffix_blocks: (1, 4),
        }
    }
}

/// Requests = a Zipf-chosen shared document + a unique suffix.
pub fn zipf_prefixes(seed: u64, cfg: &ZipfPrefixes) -> Vec<Vec<SequenceHash>> {
    let mut rng = SplitMix64::new(seed);
    let mut ids = Ids(1);
    let docs: Vec<Vec<u64>> = documents(&mut rng, &mut ids, cfg.documents.max(1), cfg.doc_blocks);
    // Shuffle popularity so rank does not follow document id order.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let zipf = Zipf::new(docs.len(), cfg.exponent);
    let reqs = (0..cfg.requests)
        .map(|_| {
            let mut r = docs[order[zipf.sample(&mut rng)]].clone();
            ids.take(rng.range(cfg.suffix_blocks.0, cfg.suffix_blocks.1), &mut r);
            r
        })
        .collect();
    finish(reqs)
}

/// Config of [`multi_turn`].
#[derive(Clone, Debug, PartialEq)]
pub struct MultiTurn {
    /// Requests (turns) generated.
    pub requests: usize,
    /// Sessions open at a time; each request continues a random open session.
    pub concurrent: usize,
    /// Turns per session (uniform in the range).
    pub turns: (u32, u32),
    /// New blocks per turn (previous answer + new question).
    pub turn_blocks: (u32, u32),
    /// Distinct system prompts, chosen per session with Zipf(1) popularity.
    pub system_prompts: usize,
    /// Length of a system prompt in blocks.
    pub system_blocks: (u32, u32),
}

impl Default for MultiTurn {
    fn default() -> Self {
        MultiTurn {
            requests: 4000,
            concurrent: 64,
            turns: (2, 12),
            turn_blocks: (1, 6),
            system_prompts: 8,
            system_blocks: (4, 16),
        }
    }
}

/// Interleaved chat sessions: turn `t` of a session is its system prompt,
/// the full blocks of all of its turns before `t`, `turn_blocks` new full
/// blocks, and one last partial block (unique: the next turn fills it with
/// other tokens, so it is never matched again, as in real traces).
pub fn multi_turn(seed: u64, cfg: &MultiTurn) -> Vec<Vec<SequenceHash>> {
    let mut rng = SplitMix64::new(seed);
    let mut ids = Ids(1);
    let prompts: Vec<Vec<u64>> = documents(
        &mut rng,
        &mut ids,
        cfg.system_prompts.max(1),
        cfg.system_blocks,
    );
    let pz = Zipf::new(prompts.len(), 1.0);
    // (history ids, turns left)
    let mut open: Vec<(Vec<u64>, u32)> = Vec::new();
    let mut reqs = Vec::with_capacity(cfg.requests);
    for _ in 0..cfg.requests {
        while open.len() < cfg.concurrent.max(1) {
            let h = prompts[pz.sample(&mut rng)].clone();
            open.push((h, rng.range(cfg.turns.0, cfg.turns.1).max(1)));
        }
        let i = (rng.next_u64() % open.len() as u64) as usize;
        let (hist, left) = &mut open[i];
        ids.take(rng.range(cfg.turn_blocks.0, cfg.turn_blocks.1), hist);
        let mut r = hist.clone();
        ids.take(1, &mut r);
        reqs.push(r);
        *left -= 1;
        if *left == 0 {
            open.swap_remove(i);
        }
    }
    finish(reqs)
}

/// Config of [`scan_mix`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScanMix {
    /// Requests generated.
    pub requests: usize,
    /// Documents of the hot set.
    pub hot_docs: usize,
    /// Zipf exponent of the hot set.
    pub exponent: f64,
    /// Length of a hot document in blocks.
    pub doc_blocks: (u32, u32),
    /// One request in `scan_every` is a scan (a one-off long request).
    pub scan_every: usize,
    /// Length of a scan in blocks.
    pub scan_blocks: (u32, u32),
}

impl Default for ScanMix {
    fn default() -> Self {
        ScanMix {
            requests: 4000,
            hot_docs: 400,
            exponent: 0.8,
            doc_blocks: (8, 32),
            scan_every: 8,
            scan_blocks: (100, 400),
        }
    }
}

/// A Zipf hot set (each request a hot document + one unique block) with a
/// long one-off scan every `scan_every` requests.
pub fn scan_mix(seed: u64, cfg: &ScanMix) -> Vec<Vec<SequenceHash>> {
    let mut rng = SplitMix64::new(seed);
    let mut ids = Ids(1);
    let docs: Vec<Vec<u64>> = documents(&mut rng, &mut ids, cfg.hot_docs.max(1), cfg.doc_blocks);
    let zipf = Zipf::new(docs.len(), cfg.exponent);
    let reqs = (0..cfg.requests)
        .map(|i| {
            if cfg.scan_every > 0 && i % cfg.scan_every == cfg.scan_every - 1 {
                let mut r = Vec::new();
                ids.take(rng.range(cfg.scan_blocks.0, cfg.scan_blocks.1), &mut r);
                r
            } else {
                let mut r = docs[zipf.sample(&mut rng)].clone();
                ids.take(1, &mut r);
                r
            }
        })
        .collect();
    finish(reqs)
}

/// Config of [`agentic`].
#[derive(Clone, Debug, PartialEq)]
pub struct Agentic {
    /// Requests (agent steps) generated.
    pub requests: usize,
    /// Sessions open at a time.
    pub open: usize,
    /// Share of steps, in percent, taken by one of the few most recently
    /// active sessions (the rest go to any open session).
    pub recency_percent: u32,
    /// Distinct system prompts (tool definitions), Zipf(1) popular.
    pub system_prompts: usize,
    /// Length of a system prompt in blocks.
    pub system_blocks: (u32, u32),
    /// Steps per session.
    pub steps: (u32, u32),
    /// New blocks per step (the answer and the tool's output).
    pub step_blocks: (u32, u32),
    /// One step in this many also reads a file of `file_blocks`.
    pub file_every: u32,
    /// Length of a file read in blocks.
    pub file_blocks: (u32, u32),
    /// One step in this many forks a sub-agent (system prompt + a sub-task)
    /// that runs `sub_steps` steps and ends.
    pub sub_every: u32,
    /// Steps of a sub-agent.
    pub sub_steps: (u32, u32),
    /// A context longer than this many blocks is compacted: replaced by its
    /// system prompt and a fresh summary of `summary_blocks`.
    pub compact_at: usize,
    /// Length of a summary in blocks.
    pub summary_blocks: (u32, u32),
}

impl Default for Agentic {
    fn default() -> Self {
        Agentic {
            requests: 4000,
            open: 96,
            recency_percent: 50,
            system_prompts: 3,
            system_blocks: (30, 60),
            steps: (5, 120),
            step_blocks: (1, 8),
            file_every: 10,
            file_blocks: (20, 120),
            sub_every: 20,
            sub_steps: (2, 15),
            compact_at: 200,
            summary_blocks: (4, 16),
        }
    }
}

/// One open agent session of [`agentic`].
struct AgentSession {
    system: Vec<u64>,
    context: Vec<u64>,
    steps_left: u32,
    /// A running sub-agent: its context and steps left.
    sub: Option<(Vec<u64>, u32)>,
}

/// Coding-agent sessions: each step re-sends the session's whole context,
/// then the context grows by the step's answer and tool output (now and
/// then a file read). A step may fork a sub-agent whose own steps start
/// from the system prompt and which is never resumed once done; a context
/// past `compact_at` blocks is replaced by system prompt + summary, so its
/// old prefix is never used again. Sessions are picked with a recency bias
/// (the agent loop of a session runs again as soon as its tool returns).
pub fn agentic(seed: u64, cfg: &Agentic) -> Vec<Vec<SequenceHash>> {
    let mut rng = SplitMix64::new(seed);
    let mut ids = Ids(1);
    let prompts = documents(
        &mut rng,
        &mut ids,
        cfg.system_prompts.max(1),
        cfg.system_blocks,
    );
    let pz = Zipf::new(prompts.len(), 1.0);
    let new_session = |rng: &mut SplitMix64, ids: &mut Ids| {
        let system = prompts[pz.sample(rng)].clone();
        let mut context = system.clone();
        ids.take(rng.range(2, 20), &mut context);
        AgentSession {
            system,
            context,
            steps_left: rng.range(cfg.steps.0, cfg.steps.1).max(1),
            sub: None,
        }
    };
    let open = cfg.open.max(1);
    // Most recently active first.
    let mut sessions: Vec<AgentSession> =
        (0..open).map(|_| new_session(&mut rng, &mut ids)).collect();
    let mut reqs = Vec::with_capacity(cfg.requests);
    for _ in 0..cfg.requests {
        let i = if rng.range(0, 99) < cfg.recency_percent {
            // Geometric over the most recent few (mean about 4).
            let mut k = 0;
            while k + 1 < open && rng.range(0, 4) != 0 {
                k += 1;
            }
            k
        } else {
            (rng.next_u64() % open as u64) as usize
        };
        let s = sessions.remove(i);
        sessions.insert(0, s);
        let s = &mut sessions[0];
        if let Some((ctx, left)) = &mut s.sub {
            reqs.push(ctx.clone());
            ids.take(rng.range(1, 6), ctx);
            *left -= 1;
            if *left == 0 {
                s.sub = None;
                ids.take(rng.range(1, 3), &mut s.context);
            }
            continue;
        }
        reqs.push(s.context.clone());
        let mut grow = rng.range(cfg.step_blocks.0, cfg.step_blocks.1);
        if cfg.file_every > 0 && rng.range(1, cfg.file_every) == 1 {
            grow += rng.range(cfg.file_blocks.0, cfg.file_blocks.1);
        }
        ids.take(grow, &mut s.context);
        if cfg.sub_every > 0 && rng.range(1, cfg.sub_every) == 1 {
            let mut ctx = s.system.clone();
            ids.take(rng.range(2, 10), &mut ctx);
            s.sub = Some((ctx, rng.range(cfg.sub_steps.0, cfg.sub_steps.1).max(1)));
        }
        if s.context.len() > cfg.compact_at {
            s.context = s.system.clone();
            ids.take(
                rng.range(cfg.summary_blocks.0, cfg.summary_blocks.1),
                &mut s.context,
            );
        }
        s.steps_left -= 1;
        if s.steps_left == 0 {
            sessions[0] = new_session(&mut rng, &mut ids);
        }
    }
    finish(reqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let c = ZipfPrefixes {
            requests: 50,
            ..Default::default()
        };
        assert_eq!(zipf_prefixes(1, &c), zipf_prefixes(1, &c));
        assert_ne!(zipf_prefixes(1, &c), zipf_prefixes(2, &c));
        let m = MultiTurn {
            requests: 50,
            ..Default::default()
        };
        assert_eq!(multi_turn(3, &m), multi_turn(3, &m));
        let s = ScanMix {
            requests: 50,
            ..Default::default()
        };
        assert_eq!(scan_mix(4, &s), scan_mix(4, &s));
        let a = Agentic {
            requests: 50,
            ..Default::default()
        };
        assert_eq!(agentic(5, &a), agentic(5, &a));
        assert_ne!(agentic(5, &a), agentic(6, &a));
    }

    #[test]
    fn agentic_contexts_grow_fork_and_compact() {
        let cfg = Agentic {
            requests: 3000,
            open: 4,
            ..Default::default()
        };
        let reqs = agentic(9, &cfg);
        assert_eq!(reqs.len(), 3000);
        // A step usually re-sends the previous step of its session: many
        // requests extend an earlier request by a few blocks.
        let extends = reqs
            .windows(2)
            .filter(|w| w[1].len() > w[0].len() && w[1][..w[0].len()] == w[0][..])
            .count();
        assert!(extends > 300, "{extends} extensions");
        // Compaction keeps every context within the bound (plus the 1-3
        // blocks of a sub-agent's result, added after the check).
        let longest = reqs.iter().map(|r| r.len()).max().unwrap();
        assert!(longest <= cfg.compact_at + 3, "longest context {longest}");
        assert!(longest > cfg.compact_at / 2, "contexts do grow: {longest}");
        // Sub-agents and compacted contexts restart from a system prompt:
        // short requests appear throughout.
        let short = reqs.iter().filter(|r| r.len() < 80).count();
        assert!(short > 100, "{short} short requests");
    }

    #[test]
    fn multi_turn_extends_sessions() {
        let m = MultiTurn {
            requests: 200,
            concurrent: 1,
            turns: (3, 3),
            ..Default::default()
        };
        let r = multi_turn(7, &m);
        // with one open session of 3 turns, request 1 extends request 0
        // (all but its partial last block)
        let full = r[0].len() - 1;
        assert!(r[1].len() > r[0].len());
        assert_eq!(&r[1][..full], &r[0][..full]);
        assert_ne!(r[1][full], r[0][full]);
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let z = Zipf::new(100, 1.0);
        let mut rng = SplitMix64::new(9);
        let mut counts = [0usize; 100];
        for _ in 0..10_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[90]);
    }

    #[test]
    fn scans_are_long_and_unique() {
        let s = ScanMix {
            requests: 16,
            ..Default::default()
        };
        let r = scan_mix(5, &s);
        assert!(r[7].len() >= 100 && r[15].len() >= 100);
        assert!(r[7].iter().all(|h| !r[15].contains(h)));
    }
}
