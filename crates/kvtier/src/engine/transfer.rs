//! The bodies of store and load jobs, run on the core's worker threads
//! against the tiered cache.

use crate::engine::buffer::Chunks;
use crate::engine::jobs::JobResult;
use kvtier_logical::{BlockSpec, SequenceHash, Tier};
use kvtier_offload::{OffloadError, TieredCache};
use std::time::Instant;

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

/// Store: keys some tier holds already succeed as they are; the others are
/// copied from their chunks into fresh blocks and registered (write-through
/// carries them down to G3). Returns the result and the positions stored
/// anew.
pub(crate) async fn store(cache: &TieredCache, input: JobInput) -> (JobResult, Vec<usize>) {
    let n = input.hashes.len();
    let held = present(cache, &input.hashes);
    let mut ok = held.clone();
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<usize> = (0..n)
        .filter(|&i| !held[i] && seen.insert(input.hashes[i]))
        .collect();
    let mut fresh = Vec::with_capacity(todo.len());
    let mut bytes = 0u64;
    for part in todo.chunks(input.batch.max(1)) {
        match store_part(cache, &input, part).await {
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

async fn store_part(
    cache: &TieredCache,
    input: &JobInput,
    part: &[usize],
) -> Result<(), OffloadError> {
    let specs: Vec<BlockSpec> = part.iter().map(|&i| spec(input.hashes[i])).collect();
    let mut req = cache.request_with_specs(specs);
    let blocks = req.allocate_rest().await?;
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

/// How often a load asks again (for a block an index still holds, or for
/// room to stage it): back-offs of 0.2 ms doubling, about 0.2 s in all.
const LOAD_RETRIES: u32 = 10;

async fn backoff(retries: &mut u32) {
    tokio::time::sleep(std::time::Duration::from_micros(200 << *retries)).await;
    *retries += 1;
}

/// Load: each batch is onboarded into the staging tier (verified on the
/// way up) and copied out to its chunks. The keys loaded form a prefix: at
/// the first key missing or failing verification, the rest fail and their
/// chunks are left untouched.
pub(crate) async fn load(cache: &TieredCache, input: JobInput) -> JobResult {
    let n = input.hashes.len();
    let mut ok = vec![false; n];
    let mut bytes = 0u64;
    let mut done = 0usize;
    let mut retries = 0;
    while done < n {
        let end = (done + input.batch.max(1)).min(n);
        match load_part(cache, &input, done, end).await {
            Ok(got) => {
                for flag in &mut ok[done..done + got] {
                    *flag = true;
                }
                bytes += (got * input.block_bytes) as u64;
                if got < end - done {
                    // A block moving between tiers (written back, evicted
                    // above while registered below) can be missed by one
                    // onboard; if an index still holds it, ask again.
                    let next = [input.hashes[done + got]];
                    if retries < LOAD_RETRIES && present(cache, &next)[0] {
                        backoff(&mut retries).await;
                        done += got;
                        continue;
                    }
                    break;
                }
            }
            // No room to stage the blocks (the tiers below are busy writing
            // earlier stores through): wait a little, bounded, then fail.
            Err(e) if retries < LOAD_RETRIES => {
                tracing::debug!("kvtier engine: load job {}: {e}; retrying", input.job);
                backoff(&mut retries).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("kvtier engine: load job {} failed: {e}", input.job);
                break;
            }
        }
        done = end;
    }
    finish(&input, ok, bytes)
}

async fn load_part(
    cache: &TieredCache,
    input: &JobInput,
    start: usize,
    end: usize,
) -> Result<usize, OffloadError> {
    let specs: Vec<BlockSpec> = input.hashes[start..end].iter().map(|&h| spec(h)).collect();
    let mut req = cache.request_with_specs(specs);
    req.onboard().await?;
    let got = req.held();
    let positions: Vec<usize> = (0..got).collect();
    req.read_back(&positions, |pos, src| {
        // SAFETY: chunks checked at submission; the caller keeps them valid
        // and leaves them alone until this job is reported.
        unsafe { input.chunks.write(start + pos, src) };
    })
    .await?;
    Ok(got)
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
