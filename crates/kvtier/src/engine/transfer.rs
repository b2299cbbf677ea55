//! The bodies of store and load jobs, run on the core's worker threads
//! against the tiered cache.
//!
//! A load reads each block where it lies (G1, G2 or G3), verified, straight
//! into its chunk: it takes no slot in any tier, so a burst of stores
//! filling the host tiers cannot make it fail. A store is admitted batch by
//! batch through one gate: a batch goes ahead once the host tier below the
//! staging tier has room for what the batch evicts, so an acknowledged
//! block is never dropped for want of room; a batch that waits too long is
//! refused (its keys fail: a failed store costs the engine nothing, it keeps
//! its own copy).
//!
//! Loads come first: while a load reads, it holds a foreground guard
//! ([`TieredCache::foreground`]), and the background copies (the staging
//! tier's cleaner, the write-through to disk) wait, bounded. A store waiting
//! for room holds an urgent guard ([`TieredCache::urgent`]) instead, so the
//! copies that make its room never wait behind loads.

use crate::engine::buffer::Chunks;
use crate::engine::jobs::JobResult;
use kvtier_logical::{BlockSpec, SequenceHash, Tier};
use kvtier_offload::{OffloadError, RequestSequence, TieredCache, Urgent};
use std::time::{Duration, Instant};

/// One job's inputs: hashes and chunk indices (checked), the buffer.
pub(crate) struct JobInput {
    pub job: u64,
    pub hashes: Vec<SequenceHash>,
    pub chunks: Chunks,
    pub block_bytes: usize,
    pub batch: usize,
    pub started: Instant,
}

fn spec(hash: SequenceHash) -> BlockSpec {
    BlockSpec {
        hash,
        parent: SequenceHash::ROOT,
        position: 0,
    }
}

/// Which of `hashes` some tier holds.
pub(crate) fn present(cache: &TieredCache, hashes: &[SequenceHash]) -> Vec<bool> {
    let mut out = vec![false; hashes.len()];
    for tier in Tier::ALL {
        let Some(store) = cache.store(tier) else {
            continue;
        };
        let todo: Vec<usize> = (0..hashes.len()).filter(|&i| !out[i]).collect();
        if todo.is_empty() {
            break;
        }
        let asked: Vec<SequenceHash> = todo.iter().map(|&i| hashes[i]).collect();
        for (i, held) in todo.into_iter().zip(store.contains_all(&asked)) {
            out[i] |= held;
        }
    }
    // Then the tier shared with other nodes (G4), if the config has one.
    let todo: Vec<usize> = (0..hashes.len()).filter(|&i| !out[i]).collect();
    if !todo.is_empty() {
        let asked: Vec<SequenceHash> = todo.iter().map(|&i| hashes[i]).collect();
        for (i, held) in todo.into_iter().zip(cache.shared_contains(&asked)) {
            out[i] |= held;
        }
    }
    out
}

/// Whether some tier holds `hash` (one probe per tier's index).
pub(crate) fn holds(cache: &TieredCache, hash: SequenceHash) -> bool {
    let one = std::slice::from_ref(&hash);
    Tier::ALL
        .into_iter()
        .filter_map(|t| cache.store(t))
        .any(|s| s.contains_all(one)[0])
        || cache.shared_contains(one)[0]
}

/// Store: keys some tier holds already succeed as they are; the others are
/// copied from their chunks into fresh blocks and registered (write-through
/// carries them down to G3). Returns the result and the positions stored
/// anew.
pub(crate) async fn store(
    cache: &TieredCache,
    gate: &StoreGate,
    input: JobInput,
) -> (JobResult, Vec<usize>) {
    let n = input.hashes.len();
    let mut ok = present(cache, &input.hashes);
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<usize> = (0..n)
        .filter(|&i| !ok[i] && seen.insert(input.hashes[i]))
        .collect();
    let mut fresh = Vec::with_capacity(todo.len());
    let mut bytes = 0u64;
    for part in todo.chunks(input.batch.max(1)) {
        match store_part(cache, gate, &input, part).await {
            Ok(()) => {
                for &i in part {
                    ok[i] = true;
                }
                fresh.extend_from_slice(part);
                bytes += (part.len() * input.block_bytes) as u64;
            }
            Err(e) => {
                tracing::warn!("kvtier engine: store job {} failed: {e}", input.job);
                break;
            }
        }
    }
    // Duplicates of a stored key inside the job succeed with it.
    let stored: std::collections::HashSet<SequenceHash> =
        fresh.iter().map(|&j| input.hashes[j]).collect();
    for (flag, h) in ok.iter_mut().zip(&input.hashes) {
        *flag |= stored.contains(h);
    }
    (finish(&input, ok, bytes), fresh)
}

/// Where store batches take turns to check for room and allocate.
pub(crate) struct StoreGate {
    turn: tokio::sync::Mutex<()>,
    /// Room in G2 kept for the staging tier's proactive cleaner, which
    /// copies up to about this many blocks down at any time, outside the
    /// gate.
    margin: usize,
}

impl StoreGate {
    /// A gate keeping `margin` G2 slots for the cleaner (its `clean_ahead`).
    pub(crate) fn new(margin: usize) -> StoreGate {
        StoreGate {
            turn: tokio::sync::Mutex::new(()),
            margin,
        }
    }
}

/// How long a store batch waits for room below the staging tier before it
/// is refused.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Why a store batch did not go ahead.
#[derive(Debug, thiserror::Error)]
enum StoreRefused {
    #[error(transparent)]
    Offload(#[from] OffloadError),
    #[error(
        "no room for {need} blocks below the staging tier after {STORE_WAIT:?} \
         (the host tier is full of blocks still being written to disk)"
    )]
    NoRoom { need: usize },
}

/// Blocks `tier` can take without dropping anything: free slots plus
/// registered blocks nobody uses.
fn room(cache: &TieredCache, tier: Tier) -> Option<usize> {
    let m = cache.store(tier)?.metrics();
    Some((m.free + m.inactive) as usize)
}

/// Wait (bounded) until allocating `n` staging blocks can move every block
/// it evicts down into G2: allocation evicts up to `n - free` staging
/// blocks, and each must find a slot in G2 that is free or holds a block
/// nobody uses (not one still queued for the disk), or it would be dropped;
/// `margin` more slots are left for the cleaner copying meanwhile.
///
/// Once it had to wait, returns an [`Urgent`] guard: the caller holds it
/// until its allocation has moved its victims down, so the background
/// copies freeing room keep going (not yielding to loads) through that
/// window too, as they did while it waited.
async fn wait_for_room(
    cache: &TieredCache,
    n: usize,
    margin: usize,
) -> Result<Option<Urgent>, StoreRefused> {
    // Never more than half of G2, so a store can always go ahead once the
    // disk catches up.
    let cap = cache.store(Tier::G2).map_or(0, |s| s.capacity());
    let margin = margin.min(cap / 2);
    let deadline = Instant::now() + STORE_WAIT;
    let mut pause = Duration::from_micros(100);
    // Taken once this waits: the copies that make room stop yielding to
    // loads in flight.
    let mut urgent: Option<Urgent> = None;
    loop {
        let g1_free = cache
            .store(Tier::G1)
            .map_or(0, |s| s.metrics().free as usize);
        let need = n.saturating_sub(g1_free);
        match room(cache, Tier::G2) {
            Some(r) if need > 0 && r < need + margin => {}
            // Enough room (or no G2: nothing to drop into).
            _ => return Ok(urgent),
        }
        if Instant::now() >= deadline {
            return Err(StoreRefused::NoRoom { need });
        }
        urgent.get_or_insert_with(|| cache.urgent());
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

async fn store_part(
    cache: &TieredCache,
    gate: &StoreGate,
    input: &JobInput,
    part: &[usize],
) -> Result<(), StoreRefused> {
    let specs: Vec<BlockSpec> = part.iter().map(|&i| spec(input.hashes[i])).collect();
    let mut req = cache.request_with_specs(specs);
    // One batch at a time checks for room and allocates (evicting into the
    // room it saw); the copies in and the registration run in parallel.
    let blocks = {
        let _turn = gate.turn.lock().await;
        let _urgent = wait_for_room(cache, part.len(), gate.margin).await?;
        req.allocate_rest().await?
    };
    let written = req
        .write(blocks, |pos, dst| {
            // SAFETY: chunks checked at submission; the caller keeps them
            // valid until this job is reported.
            unsafe { input.chunks.read(part[pos], dst) };
        })
        .await?;
    req.register(written).await?;
    Ok(())
}

/// How often a load asks again for a block an index still holds (caught
/// moving between tiers, or room to stage one from the shared tier):
/// back-offs of 0.2 ms doubling, about 0.2 s in all.
const LOAD_RETRIES: u32 = 10;

async fn backoff(retries: &mut u32) {
    tokio::time::sleep(Duration::from_micros(200 << *retries)).await;
    *retries += 1;
}

/// Load: each batch is read where it lies, verified, straight into its
/// chunks; what that misses (blocks only in the shared tier, a block caught
/// moving between tiers) is onboarded through the staging tier. The keys
/// loaded form a prefix: at the first key missing or failing verification,
/// the rest fail and their chunks are left untouched.
pub(crate) async fn load(cache: &TieredCache, input: JobInput) -> JobResult {
    let n = input.hashes.len();
    let mut done = 0usize;
    let mut retries = 0;
    while done < n {
        let end = (done + input.batch.max(1)).min(n);
        {
            // Background copies wait (bounded) while this reads; not
            // during the back-off below, which may wait for them.
            let _first = cache.foreground();
            match read_part(cache, &input, done, end).await {
                Ok(got) => done += got,
                Err(e) => tracing::debug!("kvtier engine: load job {}: {e}", input.job),
            }
            if done == end {
                continue;
            }
            match onboard_part(cache, &input, done, end).await {
                Ok(got) => done += got,
                Err(e) => tracing::debug!("kvtier engine: load job {}: {e}", input.job),
            }
            if done == end {
                continue;
            }
        }
        // Still held somewhere: ask again after a pause, bounded.
        let next = [input.hashes[done]];
        if retries < LOAD_RETRIES && present(cache, &next)[0] {
            backoff(&mut retries).await;
            continue;
        }
        tracing::debug!(
            "kvtier engine: load job {}: {} of {n} keys loaded",
            input.job,
            done
        );
        break;
    }
    let mut ok = vec![false; n];
    ok[..done].fill(true);
    finish(&input, ok, (done * input.block_bytes) as u64)
}

/// A request for positions `start..end` of a job.
fn request(cache: &TieredCache, input: &JobInput, start: usize, end: usize) -> RequestSequence {
    cache.request_with_specs(input.hashes[start..end].iter().map(|&h| spec(h)).collect())
}

/// Read positions `start..end` where they lie into their chunks; returns
/// how many (a prefix) were read.
async fn read_part(
    cache: &TieredCache,
    input: &JobInput,
    start: usize,
    end: usize,
) -> Result<usize, OffloadError> {
    let mut req = request(cache, input, start, end);
    let (read, _failed) = req.read_matched(into_chunks(input, start)).await?;
    Ok(read)
}

/// Onboard positions `start..end` into the staging tier (verified on the
/// way up) and copy them out to their chunks; returns how many (a prefix).
async fn onboard_part(
    cache: &TieredCache,
    input: &JobInput,
    start: usize,
    end: usize,
) -> Result<usize, OffloadError> {
    let mut req = request(cache, input, start, end);
    req.onboard().await?;
    let got = req.held();
    let positions: Vec<usize> = (0..got).collect();
    req.read_back(&positions, into_chunks(input, start)).await?;
    Ok(got)
}

/// The copy of a part's block `pos` (the job's position `start + pos`)
/// out to its chunk.
fn into_chunks(input: &JobInput, start: usize) -> impl FnMut(usize, &[u8]) + Send + '_ {
    move |pos, src| {
        // SAFETY: chunks checked at submission; the caller keeps them valid
        // and leaves them alone until this job is reported.
        unsafe { input.chunks.write(start + pos, src) };
    }
}

fn finish(input: &JobInput, ok: Vec<bool>, bytes: u64) -> JobResult {
    JobResult {
        job: input.job,
        ok: ok.iter().all(|&b| b),
        ok_keys: ok,
        bytes,
        seconds: input.started.elapsed().as_secs_f64(),
    }
}
