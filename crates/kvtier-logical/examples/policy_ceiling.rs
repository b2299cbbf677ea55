//! Hit-rate ceilings for the default policy: how far can an eviction policy go on the
//! Mooncake synthetic trace, one tier, under kvtier's replay semantics
//! (docs/architecture.md, "Replay")?
//!
//! The example replays each workload through a small cache model of its own
//! (not the library's `BlockStore`): requests in order; the longest cached
//! prefix is hits; the missing blocks are allocated, evicting cached blocks
//! that are not part of the request, lowest priority first (ties: oldest
//! release first); then all of the request's blocks are released tail first.
//! Priorities are evaluated at eviction time. Measured policies and oracles:
//!
//! - `lru`: release order only. Must reproduce the reference counts of
//!   `tests/data/README.md` (checked; the example exits non-zero otherwise).
//! - `belady`: furthest next use (knows the whole future).
//! - `static-popularity`: a block's total accesses over the whole file.
//! - `remaining-popularity`: a block's accesses still to come.
//! - `hazard-fit`: the empirical probability of a re-access within H requests
//!   given (access count so far, log2 of the time since the last access),
//!   fitted on the whole file (best H of 100, 200, 400, 800).
//! - `capped-frequency K`: min(access count over the full history, K).
//!
//! `lru`, `belady`, `static-popularity` and `capped-frequency` also run on
//! the generated workloads of `kvtier_logical::workload` (seed 42, default
//! configs). A `facts` section describes the trace.
//!
//! Run: `cargo run --release -p kvtier-logical --example policy_ceiling`
//! (options: `--trace PATH` for another Mooncake-format JSONL trace,
//! `--threads N`). The results and what they mean: `docs/policy-ceiling.md`.

use kvtier_logical::workload::{
    multi_turn, scan_mix, zipf_prefixes, MultiTurn, ScanMix, ZipfPrefixes,
};
use std::collections::HashMap;
use std::error::Error;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The repository's copy of the trace (works from any directory).
const DEFAULT_TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/mooncake_synthetic_trace.jsonl"
);

/// Reference figures of the trace (`tests/data/README.md`).
const REF_REQUESTS: usize = 3993;
const REF_BLOCKS: u64 = 121_877;
const REF_UNBOUNDED: u64 = 77_953;
const REF_LRU: [(usize, u64); 3] = [(2000, 17_839), (6000, 38_027), (20_000, 69_686)];

const TRACE_CAPS: [usize; 5] = [1000, 2000, 4000, 6000, 10_000];
const WORKLOAD_CAPS: [usize; 5] = [500, 1000, 2000, 4000, 8000];

/// Hazard fit: horizons tried, feature caps and sample times.
const HORIZONS: [u32; 4] = [100, 200, 400, 800];
const N_CAP: u32 = 8;
const D_CAP: u32 = 13;
const CELLS: usize = ((N_CAP + 1) * (D_CAP + 1)) as usize;
const FIT_FIRST: u32 = 200;
const FIT_STEP: u32 = 25;
const FIT_LAST: u32 = 3800;

/// Requests as dense block ids `0..distinct`.
struct Workload {
    name: String,
    requests: Vec<Vec<u32>>,
    distinct: usize,
}

/// Maps each distinct key to a dense id, in order of first appearance.
fn intern<K: Copy + Eq + Hash>(name: &str, reqs: &[Vec<K>]) -> Workload {
    let mut ids: HashMap<K, u32> = HashMap::new();
    let requests = reqs
        .iter()
        .map(|r| {
            r.iter()
                .map(|&k| {
                    let next = ids.len() as u32;
                    *ids.entry(k).or_insert(next)
                })
                .collect()
        })
        .collect();
    Workload {
        name: name.to_string(),
        requests,
        distinct: ids.len(),
    }
}

/// Reads a Mooncake-format JSONL trace: one object per line with a
/// `hash_ids` array of non-negative integers. Empty lines are skipped.
fn load_trace(path: &str) -> Result<Vec<Vec<u64>>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read trace {path}: {e}"))?;
    let mut reqs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{path}:{}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}: invalid JSON: {e}", at()))?;
        let arr = v
            .get("hash_ids")
            .and_then(|x| x.as_array())
            .ok_or_else(|| format!("{}: no \"hash_ids\" array", at()))?;
        let ids = arr
            .iter()
            .enumerate()
            .map(|(j, x)| {
                x.as_u64().ok_or_else(|| {
                    format!(
                        "{}: hash_ids[{j}] = {x} is not a non-negative integer",
                        at()
                    )
                })
            })
            .collect::<std::result::Result<Vec<u64>, String>>()?;
        reqs.push(ids);
    }
    if reqs.is_empty() {
        return Err(format!("{path}: no requests").into());
    }
    Ok(reqs)
}

/// A workload's requests truncated to a capacity, and every block's access
/// times (request indices, ascending) in one flat array.
struct Accesses<'a> {
    requests: Vec<&'a [u32]>,
    offsets: Vec<u32>,
    times: Vec<u32>,
}

impl<'a> Accesses<'a> {
    fn new(w: &'a Workload, cap: usize) -> Self {
        let requests: Vec<&[u32]> = w.requests.iter().map(|r| &r[..r.len().min(cap)]).collect();
        let mut offsets = vec![0u32; w.distinct + 1];
        for r in &requests {
            for &b in *r {
                offsets[b as usize + 1] += 1;
            }
        }
        for i in 0..w.distinct {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut times = vec![0u32; offsets[w.distinct] as usize];
        for (i, r) in requests.iter().enumerate() {
            for &b in *r {
                times[fill[b as usize] as usize] = i as u32;
                fill[b as usize] += 1;
            }
        }
        Accesses {
            requests,
            offsets,
            times,
        }
    }

    fn of(&self, b: u32) -> &[u32] {
        &self.times[self.offsets[b as usize] as usize..self.offsets[b as usize + 1] as usize]
    }

    fn distinct(&self) -> usize {
        self.offsets.len() - 1
    }

    fn looked_up(&self) -> u64 {
        self.times.len() as u64
    }
}

/// Hazard table cell of a block accessed `count` times, last `age` requests ago.
fn cell(count: u32, age: u32) -> usize {
    let n = count.min(N_CAP);
    let d = age.max(1).ilog2().min(D_CAP);
    (n * (D_CAP + 1) + d) as usize
}

/// Per horizon H: for each (count, age) cell, the share of blocks that are
/// accessed again within the next H requests, over sample times
/// `FIT_FIRST, FIT_FIRST + FIT_STEP, .., FIT_LAST` (those inside the file) and
/// all blocks first seen before the sample time. Features use the accesses
/// before the sample time `t`; the label is an access in `t .. t + H`.
/// A cell with no sample gets 0.
fn fit_hazard(acc: &Accesses) -> Vec<[f64; CELLS]> {
    let n_req = acc.requests.len() as u32;
    let mut seen = [0u64; CELLS];
    let mut again = vec![[0u64; CELLS]; HORIZONS.len()];
    let mut t = FIT_FIRST;
    while t <= FIT_LAST && t < n_req {
        for b in 0..acc.distinct() as u32 {
            let ts = acc.of(b);
            if ts.first().is_none_or(|&f| f >= t) {
                continue;
            }
            let c = ts.partition_point(|&x| x < t);
            let k = cell(c as u32, t - ts[c - 1]);
            seen[k] += 1;
            if let Some(&next) = ts.get(c) {
                for (h, &hz) in HORIZONS.iter().enumerate() {
                    if next < t + hz {
                        again[h][k] += 1;
                    }
                }
            }
        }
        t += FIT_STEP;
    }
    again
        .iter()
        .map(|a| {
            let mut p = [0.0; CELLS];
            for k in 0..CELLS {
                if seen[k] > 0 {
                    p[k] = a[k] as f64 / seen[k] as f64;
                }
            }
            p
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    Lru,
    Belady,
    StaticPopularity,
    RemainingPopularity,
    /// Index into `HORIZONS`.
    HazardFit(usize),
    CappedFrequency(u32),
}

/// Per-block state of the cache model.
#[derive(Clone, Copy)]
struct Block {
    /// Index in the cached list, `NONE` when not cached.
    slot: u32,
    /// Accesses so far (full history, cached or not).
    count: u32,
    /// Request of the last access.
    last: u32,
    /// Position in the request of the last access.
    pos: u32,
    /// Request being replayed when this block is part of it.
    stamp: u32,
    /// Release tick (higher = released more recently).
    tick: u64,
}

const NONE: u32 = u32::MAX;

/// Hits of one replay of `acc` at `cap` blocks (`usize::MAX`: unbounded).
fn simulate(acc: &Accesses, cap: usize, policy: Policy, hazard: &[[f64; CELLS]]) -> u64 {
    let mut st = vec![
        Block {
            slot: NONE,
            count: 0,
            last: 0,
            pos: 0,
            stamp: NONE,
            tick: 0,
        };
        acc.distinct()
    ];
    let mut cached: Vec<u32> = Vec::new();
    let mut cand: Vec<(u64, u64, u64, u32)> = Vec::new();
    let mut tick = 0u64;
    let mut hits = 0u64;
    // Eviction priority, lowest evicted first (the release tick breaks ties).
    let key = |b: &Block, id: u32, now: u32| -> (u64, u64) {
        match policy {
            Policy::Lru => (0, 0),
            Policy::Belady => {
                // `count` accesses happened before `now`; the next is the use.
                let next = acc
                    .of(id)
                    .get(b.count as usize)
                    .map_or(u64::MAX, |&x| u64::from(x));
                (u64::MAX - next, u64::MAX - u64::from(b.pos))
            }
            Policy::StaticPopularity => (acc.of(id).len() as u64, 0),
            Policy::RemainingPopularity => ((acc.of(id).len() as u64) - u64::from(b.count), 0),
            Policy::HazardFit(h) => (hazard[h][cell(b.count, now - b.last)].to_bits(), 0),
            Policy::CappedFrequency(k) => (u64::from(b.count.min(k)), 0),
        }
    };
    for (i, req) in acc.requests.iter().enumerate() {
        let i = i as u32;
        let k = req
            .iter()
            .take_while(|&&b| st[b as usize].slot != NONE)
            .count();
        hits += k as u64;
        let mut missing = 0;
        for &b in *req {
            let s = &mut st[b as usize];
            s.stamp = i;
            if s.slot == NONE {
                missing += 1;
            }
        }
        // The request fits (truncated to `cap`), so evicting every cached
        // block outside it always makes room.
        let need = (cached.len() + missing).saturating_sub(cap);
        if need > 0 {
            cand.clear();
            for &b in &cached {
                let s = &st[b as usize];
                if s.stamp != i {
                    let (p, q) = key(s, b, i);
                    cand.push((p, q, s.tick, b));
                }
            }
            if need < cand.len() {
                cand.select_nth_unstable(need);
            }
            for &(_, _, _, b) in &cand[..need] {
                let slot = st[b as usize].slot as usize;
                cached.swap_remove(slot);
                if let Some(&moved) = cached.get(slot) {
                    st[moved as usize].slot = slot as u32;
                }
                st[b as usize].slot = NONE;
            }
        }
        for (j, &b) in req.iter().enumerate() {
            let s = &mut st[b as usize];
            if s.slot == NONE {
                s.slot = cached.len() as u32;
                cached.push(b);
            }
            s.count += 1;
            s.last = i;
            s.pos = j as u32;
        }
        for &b in req.iter().rev() {
            tick += 1;
            st[b as usize].tick = tick;
        }
    }
    hits
}

/// One replay to run: context (workload at a capacity), capacity, policy.
struct Job {
    ctx: usize,
    cap: usize,
    policy: Policy,
}

struct Ctx<'a> {
    workload: usize,
    acc: Accesses<'a>,
    hazard: Vec<[f64; CELLS]>,
}

/// Runs every job on `threads` threads; returns hits per job.
fn run_jobs(ctxs: &[Ctx], jobs: &[Job], threads: usize) -> Vec<u64> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(j) else { break };
                let c = &ctxs[job.ctx];
                let _ = tx.send((j, simulate(&c.acc, job.cap, job.policy, &c.hazard)));
            });
        }
    });
    drop(tx);
    let mut out = vec![0; jobs.len()];
    for (j, h) in rx {
        out[j] = h;
    }
    out
}

/// Rows of a table: (label, policies whose best is reported).
fn rows(with_oracles: bool) -> Vec<(String, Vec<Policy>)> {
    let mut r = vec![
        ("lru".to_string(), vec![Policy::Lru]),
        ("belady".to_string(), vec![Policy::Belady]),
        (
            "static-popularity".to_string(),
            vec![Policy::StaticPopularity],
        ),
    ];
    if with_oracles {
        r.push((
            "remaining-popularity".to_string(),
            vec![Policy::RemainingPopularity],
        ));
        r.push((
            "hazard-fit (best H)".to_string(),
            (0..HORIZONS.len()).map(Policy::HazardFit).collect(),
        ));
    }
    for k in [2, 3] {
        r.push((
            format!("capped-frequency K={k}"),
            vec![Policy::CappedFrequency(k)],
        ));
    }
    r
}

/// Facts about the trace that explain the ceilings (full requests, no
/// truncation).
fn facts(w: &Workload, unbounded: u64) {
    let acc = Accesses::new(w, usize::MAX);
    let blocks = acc.looked_up();
    let once = (0..acc.distinct() as u32)
        .filter(|&b| acc.of(b).len() == 1)
        .count();
    let reaccesses = blocks - acc.distinct() as u64;
    let second = (0..acc.distinct() as u32)
        .filter(|&b| acc.of(b).len() >= 2)
        .count();
    let mut roots: HashMap<u32, u32> = HashMap::new();
    for r in &w.requests {
        if let Some(&root) = r.first() {
            *roots.entry(root).or_insert(0) += 1;
        }
    }
    let multi = roots.values().filter(|&&c| c > 1).count();
    let multi_reqs: u32 = roots.values().filter(|&&c| c > 1).sum();
    let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
    println!("## facts: {}\n", w.name);
    println!(
        "- requests: {}; looked-up blocks: {blocks}; distinct blocks: {}",
        w.requests.len(),
        acc.distinct()
    );
    println!(
        "- unbounded cache: {unbounded} hits, hit rate {:.4}",
        unbounded as f64 / blocks as f64
    );
    println!(
        "- distinct blocks used once: {once} of {} ({:.1}%)",
        acc.distinct(),
        pct(once as f64, acc.distinct() as f64)
    );
    println!(
        "- accesses to a block seen before: {reaccesses}; of them, a block's first reuse (2nd access): {second} ({:.1}%)",
        pct(second as f64, reaccesses as f64)
    );
    println!(
        "- distinct roots (first hash id): {}; requested more than once: {multi} ({:.1}% of roots, {multi_reqs} requests = {:.1}% of requests)",
        roots.len(),
        pct(multi as f64, roots.len() as f64),
        pct(f64::from(multi_reqs), w.requests.len() as f64)
    );
    // Per eighth of the file: requests whose root was requested before, and
    // the unbounded cache's hit rate (blocks seen before, as a prefix).
    let n = w.requests.len();
    let mut seen = vec![false; acc.distinct()];
    let mut line_rep = String::from("| repeat requests (root seen before) |");
    let mut line_hit = String::from("| unbounded hit rate |");
    let mut header = String::from("| eighth of the file |");
    let mut sep = String::from("| --- |");
    for e in 0..8 {
        let (lo, hi) = (n * e / 8, n * (e + 1) / 8);
        let (mut rep, mut hit, mut looked) = (0usize, 0u64, 0u64);
        for r in &w.requests[lo..hi] {
            if r.first().is_some_and(|&b| seen[b as usize]) {
                rep += 1;
            }
            hit += r.iter().take_while(|&&b| seen[b as usize]).count() as u64;
            looked += r.len() as u64;
            for &b in r {
                seen[b as usize] = true;
            }
        }
        header.push_str(&format!(" {} |", e + 1));
        sep.push_str(" --- |");
        line_rep.push_str(&format!(
            " {:.3} |",
            pct(rep as f64, (hi - lo) as f64) / 100.0
        ));
        line_hit.push_str(&format!(" {:.3} |", pct(hit as f64, looked as f64) / 100.0));
    }
    println!("\n{header}\n{sep}\n{line_rep}\n{line_hit}\n");
}

struct Args {
    trace: Option<String>,
    threads: usize,
}

const USAGE: &str = "usage: policy_ceiling [--trace PATH] [--threads N]
  --trace PATH   Mooncake-format JSONL trace (default: the repository's tests/data file)
  --threads N    worker threads (default: available parallelism)";

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        trace: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--trace" => {
                args.trace = Some(it.next().ok_or("--trace needs a path")?);
            }
            "--threads" => {
                let v = it.next().ok_or("--threads needs a number")?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads: {v:?} is not a positive integer"))?;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(Some(args))
}

fn run() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let start = Instant::now();
    let path = args
        .trace
        .clone()
        .unwrap_or_else(|| DEFAULT_TRACE.to_string());
    let trace = load_trace(&path)?;
    let name = match &args.trace {
        None => "mooncake synthetic".to_string(),
        Some(p) => format!("trace {p}"),
    };
    let mut workloads = vec![intern(&name, &trace)];
    workloads.push(intern(
        "zipf-prefixes",
        &zipf_prefixes(42, &ZipfPrefixes::default()),
    ));
    workloads.push(intern("multi-turn", &multi_turn(42, &MultiTurn::default())));
    workloads.push(intern("scan-mix", &scan_mix(42, &ScanMix::default())));

    // One context per (workload, capacity); the trace also gets the LRU
    // reference capacities and an unbounded run.
    let mut ctxs: Vec<Ctx> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        let trace_like = wi == 0;
        let caps: &[usize] = if trace_like {
            &TRACE_CAPS
        } else {
            &WORKLOAD_CAPS
        };
        let mut all_caps: Vec<usize> = caps.to_vec();
        if trace_like {
            all_caps.extend(REF_LRU.iter().map(|&(c, _)| c));
            all_caps.push(usize::MAX);
        }
        all_caps.sort_unstable();
        all_caps.dedup();
        for &cap in &all_caps {
            let acc = Accesses::new(w, cap);
            let hazard = if trace_like && caps.contains(&cap) {
                fit_hazard(&acc)
            } else {
                Vec::new()
            };
            let ctx = ctxs.len();
            if caps.contains(&cap) {
                for (_, ps) in rows(trace_like) {
                    jobs.extend(ps.into_iter().map(|policy| Job { ctx, cap, policy }));
                }
            } else {
                jobs.push(Job {
                    ctx,
                    cap,
                    policy: Policy::Lru,
                });
            }
            ctxs.push(Ctx {
                workload: wi,
                acc,
                hazard,
            });
        }
    }
    // Biggest capacities first, for a balanced finish.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.cap.min(1 << 20)));
    let hits = run_jobs(&ctxs, &jobs, args.threads);
    let get = |wi: usize, cap: usize, policy: Policy| -> Option<(u64, u64)> {
        jobs.iter().zip(&hits).find_map(|(j, &h)| {
            let c = &ctxs[j.ctx];
            (c.workload == wi && j.cap == cap && j.policy == policy).then(|| (h, c.acc.looked_up()))
        })
    };

    println!("# policy ceilings (kvtier default policy study)\n");
    println!("trace: {path}\nthreads: {}\n", args.threads);

    // Reference check on the trace.
    let (unbounded, blocks) = get(0, usize::MAX, Policy::Lru).ok_or("no unbounded run")?;
    facts(&workloads[0], unbounded);
    let is_reference = args.trace.is_none()
        || (workloads[0].requests.len() == REF_REQUESTS && blocks == REF_BLOCKS);
    let mut failures = Vec::new();
    let mut lru_line = Vec::new();
    for &(cap, want) in &REF_LRU {
        let (h, _) = get(0, cap, Policy::Lru).ok_or("no LRU run")?;
        lru_line.push(format!("{cap}: {h}"));
        if is_reference && h != want {
            failures.push(format!("LRU at {cap} blocks: {h} hits, expected {want}"));
        }
    }
    if is_reference {
        if blocks != REF_BLOCKS || unbounded != REF_UNBOUNDED {
            failures.push(format!(
                "unbounded: {unbounded} hits of {blocks} blocks, expected {REF_UNBOUNDED} of {REF_BLOCKS}"
            ));
        }
        let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
        println!(
            "LRU reference check ({}; unbounded {unbounded}): {verdict}\n",
            lru_line.join(", ")
        );
    } else {
        println!(
            "LRU reference check skipped (not the reference trace); LRU {}\n",
            lru_line.join(", ")
        );
    }

    for (wi, w) in workloads.iter().enumerate() {
        let caps: &[usize] = if wi == 0 { &TRACE_CAPS } else { &WORKLOAD_CAPS };
        let looked = get(wi, caps[0], Policy::Lru).map_or(0, |(_, b)| b);
        println!(
            "## {}: {} requests, {looked} looked-up blocks\n",
            w.name,
            w.requests.len()
        );
        let mut head = String::from("| policy |");
        let mut sep = String::from("| --- |");
        for c in caps {
            head.push_str(&format!(" {c} |"));
            sep.push_str(" --- |");
        }
        println!("{head}\n{sep}");
        for (label, ps) in rows(wi == 0) {
            let mut line = format!("| {label} |");
            for &c in caps {
                let best = ps
                    .iter()
                    .filter_map(|&p| get(wi, c, p).map(|r| (r, p)))
                    .max_by_key(|&((h, _), _)| h);
                match best {
                    Some(((h, b), p)) => {
                        let rate = if b > 0 { h as f64 / b as f64 } else { 0.0 };
                        let extra = match p {
                            Policy::HazardFit(i) => format!(", H={}", HORIZONS[i]),
                            _ => String::new(),
                        };
                        line.push_str(&format!(" {rate:.4} ({h}{extra}) |"));
                    }
                    None => line.push_str(" - |"),
                }
            }
            println!("{line}");
        }
        println!();
        if wi == 0 {
            // Every horizon of the hazard fit, not only the best.
            println!("hazard-fit by horizon H ({}):\n", w.name);
            println!("{head}\n{sep}");
            for (i, h) in HORIZONS.iter().enumerate() {
                let mut line = format!("| H={h} |");
                for &c in caps {
                    match get(wi, c, Policy::HazardFit(i)) {
                        Some((hits, b)) if b > 0 => {
                            line.push_str(&format!(" {:.4} ({hits}) |", hits as f64 / b as f64))
                        }
                        _ => line.push_str(" - |"),
                    }
                }
                println!("{line}");
            }
            println!();
        }
    }
    println!(
        "wall time: {:.1} s ({} replays)",
        start.elapsed().as_secs_f64(),
        jobs.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the model does not reproduce the reference counts:\n  {}",
            failures.join("\n  ")
        )
        .into())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("policy_ceiling: {e}");
        std::process::exit(1);
    }
}
