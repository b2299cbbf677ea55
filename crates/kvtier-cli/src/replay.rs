//! The replay driver: runs a trace through the cache and reports hit rates,
//! data movement and speed (docs/architecture.md, "Replay").
//!
//! One tier without data takes the direct store path
//! ([`kvtier_logical::SingleTierReplay`]: match, allocate, register,
//! release on the public store API). Anything else goes through the offload
//! engine, one [`kvtier_offload::RequestSequence`] per request: lookup across
//! tiers, onboard, allocate with write-back, write the computed blocks' bytes,
//! register, release tail first.

pub use crate::report::{Floor, HitsByTier, ReplayReport, TierReport};
use kvtier::config::Config;
use kvtier::setup::{self, SetupError};
use kvtier_harness::pattern;
use kvtier_harness::trace::HashedTrace;
use kvtier_logical::{BlockStore, SequenceHash, StoreConfig, StoreError, Tier};
use kvtier_logical::{ReplayStats, SingleTierReplay};
use kvtier_offload::{OffloadError, TieredCache};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A block store refused its configuration or an allocation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache could not be built.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The offload engine failed.
    #[error(transparent)]
    Offload(#[from] OffloadError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The KV-event publisher failed.
    #[error(transparent)]
    Events(#[from] kvtier::events::EventsError),
    /// A replay task panicked or was cancelled.
    #[error("a replay task failed: {0}")]
    Task(String),
    /// The options cannot work together.
    #[error("{0}")]
    Options(String),
}

/// How to run a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Move and verify block bytes.
    pub data: bool,
    /// Replay R times (fresh cache each) and keep the fastest (logical one-tier path).
    pub repeat: usize,
    /// Requests in flight at once (multi-tier path).
    pub concurrency: usize,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Record hit rates per tier over the run (for `--plot`).
    pub timeline: bool,
    /// Measure the speed floor (data replays).
    pub floor: bool,
    /// How a persistent G3 directory is opened.
    pub persist: setup::PersistOptions,
    /// Set (e.g. by a signal handler) to stop the replay: no new request is
    /// admitted, those in flight finish, and the partial report is returned.
    pub stop: Option<&'static AtomicBool>,
    /// Publish every tier's contents as KV events.
    pub events: Option<crate::events::Publishing>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            data: true,
            repeat: 1,
            concurrency: 1,
            progress: false,
            timeline: false,
            floor: false,
            persist: Default::default(),
            stop: None,
            events: None,
        }
    }
}

/// `(requests done, cumulative hits by tier, blocks looked up)` samples.
pub type Timeline = Vec<(u64, [u64; 3], u64)>;

/// A replay's report and, if asked, its timeline.
#[derive(Clone, Debug)]
pub struct ReplayOutcome {
    /// Totals.
    pub report: ReplayReport,
    /// Hit-rate samples over the run.
    pub timeline: Timeline,
    /// The cache's metrics at the end, in Prometheus text format.
    pub prometheus: String,
}

/// Replay `trace` through the tiers `config` describes. With `repeat` > 1
/// the replay runs that many times, each into a freshly built cache, and the
/// fastest run is reported (a persistent G3 cannot repeat: its second run
/// would start from the first one's blocks).
pub fn run(
    config: &Config,
    trace_name: &str,
    trace: &HashedTrace,
    opts: &ReplayOptions,
) -> Result<ReplayOutcome, ReplayError> {
    let one_tier = config.g2.blocks == 0 && config.g3.blocks == 0;
    if one_tier && !opts.data {
        return run_single_tier(config, trace_name, trace, opts);
    }
    if opts.repeat > 1 && config.g3.path.is_some() {
        return Err(ReplayError::Options(
            "a persistent G3 directory cannot be replayed more than once per run (each repetition would start from the previous one's blocks)".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReplayError::Runtime)?;
    let mut best: Option<ReplayOutcome> = None;
    for r in 0..opts.repeat.max(1) {
        let mut o = rt.block_on(run_tiered(config, trace_name, trace, opts))?;
        o.report.repetitions = r + 1;
        let stop = o.report.interrupted;
        match &mut best {
            Some(b) if o.report.seconds >= b.report.seconds && !stop => {
                b.report.repetitions = r + 1;
            }
            _ => best = Some(o),
        }
        if stop {
            break;
        }
    }
    Ok(best.expect("at least one repetition"))
}

fn stopped(opts: &ReplayOptions) -> bool {
    opts.stop.is_some_and(|s| s.load(Ordering::Relaxed))
}

/// `(requests cut, blocks cut)` by truncating every request to `cap` blocks.
fn truncation(trace: &HashedTrace, cap: usize, requests: usize) -> (u64, u64) {
    let mut n = (0u64, 0u64);
    for r in trace.iter().take(requests) {
        if r.len() > cap {
            n.0 += 1;
            n.1 += (r.len() - cap) as u64;
        }
    }
    n
}

fn tier_reports(config: &Config, memories: &[(Tier, String)]) -> Vec<TierReport> {
    Tier::ALL
        .iter()
        .filter(|t| config.tier(**t).blocks > 0)
        .map(|&t| TierReport {
            tier: t,
            blocks: config.tier(t).blocks,
            policy: config
                .tier(t)
                .policy
                .unwrap_or_else(|| kvtier_logical::PolicyKind::default_for(t))
                .name()
                .to_string(),
            memory: memories
                .iter()
                .find(|(m, _)| *m == t)
                .map(|(_, k)| k.clone())
                .unwrap_or_else(|| "none".into()),
        })
        .collect()
}

fn run_single_tier(
    config: &Config,
    trace_name: &str,
    trace: &HashedTrace,
    opts: &ReplayOptions,
) -> Result<ReplayOutcome, ReplayError> {
    let policy = config.g1.policy.unwrap_or_default();
    // Each repetition replays into a fresh store; the best time is reported
    // (the counts are identical by construction).
    let mut best: Option<(f64, ReplayStats, Timeline, String)> = None;
    let every = (trace.len() / 200).max(1);
    let mut events = None;
    for _ in 0..opts.repeat.max(1) {
        let store = BlockStore::new(
            StoreConfig::new(Tier::G1, config.g1.blocks)
                .with_policy(policy)
                .with_policy_params(config.g1.policy_params.clone()),
        )?;
        let publisher = match &opts.events {
            Some(e) => Some(e.start(&[store.event_source()])?),
            None => None,
        };
        let mut replay = SingleTierReplay::new(store.clone());
        let mut timeline = Vec::new();
        let start = Instant::now();
        for (i, req) in trace.iter().enumerate() {
            if stopped(opts) {
                break;
            }
            replay.request(req)?;
            if opts.timeline && (i + 1).is_multiple_of(every) {
                let s = replay.stats();
                timeline.push((s.requests, [s.hits, 0, 0], s.blocks));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        if let (Some((p, waited)), Some(e)) = (publisher, &opts.events) {
            events = Some(e.finish(p, waited, seconds)?);
        }
        if best.as_ref().is_none_or(|(b, _, _, _)| seconds < *b) {
            let prom = kvtier_logical::to_prometheus(&[store.metrics()]);
            best = Some((seconds, replay.stats(), timeline, prom));
        }
    }
    let (seconds, stats, timeline, prometheus) = best.expect("at least one repetition");
    let (truncated_requests, truncated_blocks) =
        truncation(trace, config.g1.blocks, stats.requests as usize);
    let interrupted = (stats.requests as usize) < trace.len();
    let report = ReplayReport {
        trace: trace_name.to_string(),
        requests: stats.requests,
        blocks: stats.blocks,
        truncated_requests,
        truncated_blocks,
        hits: stats.hits,
        hit_rate: stats.hit_rate(),
        hits_by_tier: HitsByTier {
            g1: stats.hits,
            ..Default::default()
        },
        seconds,
        blocks_per_s: stats.blocks as f64 / seconds.max(1e-9),
        data: false,
        concurrency: 1,
        repetitions: opts.repeat.max(1),
        block_bytes: 0,
        offloaded_blocks: 0,
        onboarded_blocks: 0,
        bytes_offloaded: 0,
        bytes_onboarded: 0,
        bytes_disk: 0,
        bytes_written: 0,
        bytes_verified: 0,
        verify_failures: 0,
        data_mismatches: 0,
        dropped_blocks: 0,
        offload_errors: 0,
        eviction_copies: 0,
        cleaned_blocks: 0,
        tiers: tier_reports(config, &[]),
        floor: None,
        g3: None,
        flushed_blocks: 0,
        g3_live: None,
        events,
        g4: None,
        admission_waits: 0,
        capacity_retries: 0,
        max_in_flight: 1,
        interrupted,
        requests_not_run: trace.len() as u64 - stats.requests,
        error: None,
    };
    Ok(ReplayOutcome {
        report,
        timeline,
        prometheus,
    })
}

/// Counts one request adds.
#[derive(Default, Clone, Copy)]
struct RequestStats {
    blocks: u64,
    hits: [u64; 3],
    /// Served from G4.
    g4: u64,
    written: u64,
    verified: u64,
    mismatches: u64,
}

/// One request through the tiered cache: lookup and onboard (verified),
/// compute the rest (allocate + write its bytes), register; the request
/// releases its blocks tail first when it drops.
async fn request(
    cache: &TieredCache,
    hashes: &[SequenceHash],
) -> Result<RequestStats, ReplayError> {
    let hashes = &hashes[..hashes.len().min(cache.g1_capacity())];
    let mut st = RequestStats {
        blocks: hashes.len() as u64,
        ..Default::default()
    };
    let mut req = cache.request(hashes);
    let on = req.onboard().await?;
    st.hits = on.hits_by_tier;
    st.g4 = on.shared_hits;
    if cache.has_data() {
        // End-to-end check of every onboarded block's bytes in G1.
        let onboarded: Vec<usize> = (0..req.served().len())
            .filter(|&i| req.served()[i] != Tier::G1)
            .collect();
        if !onboarded.is_empty() {
            let mut bad = 0u64;
            req.read_back(&onboarded, |pos, bytes| {
                if !pattern::matches(hashes[pos], bytes) {
                    bad += 1;
                }
            })
            .await?;
            st.mismatches = bad;
            st.verified = onboarded.len() as u64 * cache.block_bytes();
        }
    }
    let fresh = req.allocate_rest().await?;
    st.written = fresh.len() as u64 * cache.block_bytes();
    let written = req
        .write(fresh, |pos, buf| pattern::fill(hashes[pos], buf))
        .await?;
    req.register(written).await?;
    Ok(st)
}

async fn run_tiered(
    config: &Config,
    trace_name: &str,
    trace: &HashedTrace,
    opts: &ReplayOptions,
) -> Result<ReplayOutcome, ReplayError> {
    let built = setup::build(config, trace_name, opts.data, &opts.persist)?;
    let cache = built.cache.clone();
    if config.g4.is_some() && !opts.data {
        return Err(ReplayError::Options(
            "a G4 tier shares block bytes: it cannot be combined with --no-data".into(),
        ));
    }
    setup::attach_g4(config, trace_name, &cache).await?;
    let memories: Vec<(Tier, String)> = built
        .memories
        .iter()
        .map(|(t, m)| {
            let name = if opts.data {
                serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            } else {
                "none".into()
            };
            (*t, name)
        })
        .collect();
    let publisher = match &opts.events {
        Some(e) => {
            let stores: Vec<kvtier_logical::EventSource> = Tier::ALL
                .iter()
                .filter_map(|t| cache.store(*t).map(|v| v.event_source()))
                .collect();
            Some(e.start(&stores)?)
        }
        None => None,
    };
    let bar = progress_bar(opts.progress, trace.len() as u64);
    let every = (trace.len() / 200).max(1);
    let mut timeline = Vec::new();
    let mut total = RequestStats::default();
    let add = |total: &mut RequestStats, s: RequestStats| {
        total.blocks += s.blocks;
        for t in 0..3 {
            total.hits[t] += s.hits[t];
        }
        total.g4 += s.g4;
        total.written += s.written;
        total.verified += s.verified;
        total.mismatches += s.mismatches;
    };
    let start = Instant::now();
    let cap = cache.store(Tier::G1).expect("G1").capacity();
    let mut failure: Option<ReplayError> = None;
    let mut done = 0usize;
    let mut adm = Admission::default();
    if opts.concurrency <= 1 {
        for (i, req) in trace.iter().enumerate() {
            if stopped(opts) {
                break;
            }
            match request(&cache, req).await {
                Ok(s) => add(&mut total, s),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            done = i + 1;
            if let Some(b) = &bar {
                b.inc(1);
            }
            if opts.timeline && done.is_multiple_of(every) {
                timeline.push((done as u64, total.hits, total.blocks));
            }
        }
        adm.max_in_flight = 1;
    } else {
        // N requests in flight, each holding its blocks until done. A request
        // is admitted only while the G1 blocks the requests in flight may
        // hold, plus its own, fit in G1: load beyond that waits (as an
        // engine's scheduler queues it) instead of failing an allocation.
        let mut set = tokio::task::JoinSet::new();
        let shared = Arc::new(trace.clone());
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut next = 0usize;
        let mut held = 0usize;
        let mut waited = vec![false; trace.len()];
        loop {
            while failure.is_none() && !stopped(opts) && set.len() < opts.concurrency {
                let Some(i) = queue
                    .front()
                    .copied()
                    .or((next < trace.len()).then_some(next))
                else {
                    break;
                };
                let need = trace.request(i).len().min(cap);
                if !set.is_empty() && held + need > cap {
                    if !waited[i] {
                        waited[i] = true;
                        adm.waits += 1;
                    }
                    break;
                }
                if queue.front() == Some(&i) {
                    queue.pop_front();
                } else {
                    next += 1;
                }
                held += need;
                let (cache, shared) = (cache.clone(), shared.clone());
                set.spawn(async move { (i, need, request(&cache, shared.request(i)).await) });
                adm.max_in_flight = adm.max_in_flight.max(set.len());
            }
            let Some(r) = set.join_next().await else {
                break;
            };
            let (i, need, res) = match r {
                Ok(x) => x,
                Err(e) => {
                    failure.get_or_insert(ReplayError::Task(e.to_string()));
                    continue;
                }
            };
            held -= need;
            match res {
                Ok(s) => add(&mut total, s),
                Err(e) if is_exhausted(&e) && !set.is_empty() && failure.is_none() => {
                    // Background copies (write-back, cleaning) held blocks
                    // the budget counted as free: try again after another
                    // request finishes.
                    adm.retries += 1;
                    queue.push_front(i);
                    continue;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            }
            done += 1;
            if let Some(b) = &bar {
                b.inc(1);
            }
            if opts.timeline && done.is_multiple_of(every) {
                timeline.push((done as u64, total.hits, total.blocks));
            }
        }
    }
    let interrupted = done < trace.len();
    let mut errors: Vec<String> = failure.iter().map(|e| e.to_string()).collect();
    // A clean stop: a persistent G3 gets everything the cache holds, the
    // background copies finish, the journal is closed.
    let flushed = match cache.close().await {
        Ok(c) => c.flushed_blocks,
        Err(e) => {
            errors.push(e.to_string());
            0
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let events = match (publisher, &opts.events) {
        (Some((p, waited)), Some(e)) => Some(e.finish(p, waited, seconds)?),
        _ => None,
    };
    let m = cache.metrics();
    let prometheus = cache.to_prometheus();
    let hits: u64 = total.hits.iter().sum::<u64>() + total.g4;
    let requests = done as u64;
    let (truncated_requests, truncated_blocks) = truncation(trace, cap, done);
    let mut report = ReplayReport {
        trace: trace_name.to_string(),
        requests,
        blocks: total.blocks,
        truncated_requests,
        truncated_blocks,
        hits,
        hit_rate: if total.blocks == 0 {
            0.0
        } else {
            hits as f64 / total.blocks as f64
        },
        hits_by_tier: HitsByTier {
            g1: total.hits[0],
            g2: total.hits[1],
            g3: total.hits[2],
            g4: total.g4,
        },
        seconds,
        blocks_per_s: total.blocks as f64 / seconds.max(1e-9),
        data: opts.data,
        concurrency: opts.concurrency.max(1),
        repetitions: 1,
        block_bytes: cache.block_bytes(),
        offloaded_blocks: m.offloaded_blocks,
        onboarded_blocks: m.onboarded_blocks,
        bytes_offloaded: m.bytes_offloaded,
        bytes_onboarded: m.bytes_onboarded,
        bytes_disk: m.bytes_disk,
        bytes_written: total.written,
        bytes_verified: total.verified,
        verify_failures: m.verify_failures,
        data_mismatches: total.mismatches,
        dropped_blocks: m.dropped_blocks,
        offload_errors: m.offload_errors,
        eviction_copies: m.eviction_copies,
        cleaned_blocks: m.cleaned_blocks,
        tiers: tier_reports(config, &memories),
        floor: None,
        g3: built.recovery.clone(),
        flushed_blocks: flushed,
        g3_live: built.journal.as_ref().map(|j| j.durable_live()),
        events,
        g4: cache.shared_stats(),
        admission_waits: adm.waits,
        capacity_retries: adm.retries,
        max_in_flight: adm.max_in_flight,
        interrupted,
        requests_not_run: (trace.len() - done) as u64,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    };
    if opts.data && opts.floor && !interrupted {
        report.floor = Some(measure_floor(
            config,
            trace_name,
            trace,
            &report,
            built.g3_dir.as_deref(),
        )?);
    }
    drop(built);
    Ok(ReplayOutcome {
        report,
        timeline,
        prometheus,
    })
}

/// Admission counters of one tiered replay.
#[derive(Default)]
struct Admission {
    waits: u64,
    retries: u64,
    max_in_flight: usize,
}

/// True for an allocation refused for lack of free or evictable blocks.
fn is_exhausted(e: &ReplayError) -> bool {
    matches!(
        e,
        ReplayError::Store(StoreError::Exhausted { .. })
            | ReplayError::Offload(OffloadError::Store(StoreError::Exhausted { .. }))
    )
}

fn measure_floor(
    config: &Config,
    trace_name: &str,
    trace: &HashedTrace,
    report: &ReplayReport,
    g3_dir: Option<&std::path::Path>,
) -> Result<Floor, ReplayError> {
    // The same replay without data, in this process, in a fresh runtime
    // thread (we are inside one).
    let (c, n, t) = (config.clone(), trace_name.to_string(), trace.clone());
    let logical = std::thread::spawn(move || {
        run(
            &c,
            &n,
            &t,
            &ReplayOptions {
                data: false,
                ..Default::default()
            },
        )
        .map(|o| o.report.seconds)
    })
    .join()
    .map_err(|_| ReplayError::Runtime(std::io::Error::other("floor thread panicked")))??;
    let memcpy = kvtier_harness::ceiling::memcpy_bandwidth(64 << 20);
    let g1_g2 = report.bytes_written + report.bytes_verified;
    // Split the moved bytes by path: disk paths are G2<->G3.
    let disk_bytes = report.bytes_disk;
    let host_bytes = report.bytes_offloaded + report.bytes_onboarded - disk_bytes + g1_g2;
    let disk = match g3_dir {
        Some(d) if disk_bytes > 0 => {
            kvtier_harness::ceiling::file_bandwidth(d, 256 << 20).unwrap_or(f64::INFINITY)
        }
        _ => f64::INFINITY,
    };
    let floor_seconds = logical + host_bytes as f64 / memcpy + disk_bytes as f64 / disk;
    Ok(Floor {
        logical_seconds: logical,
        memcpy_gbps: memcpy / 1e9,
        disk_gbps: if disk.is_finite() { disk / 1e9 } else { 0.0 },
        host_bytes,
        disk_bytes,
        floor_seconds,
        ratio: report.seconds / floor_seconds.max(1e-9),
    })
}

fn progress_bar(on: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let b = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replay [{bar:40}] {pos}/{len} requests ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}
