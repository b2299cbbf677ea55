//! Engine-core tests under a burst of stores: loads of blocks already on
//! disk must not fail because the host tiers are full of blocks still being
//! written through, and no acknowledged block may go missing.

use super::test_util::{blocks_of, buf, fresh_with};
use super::*;
use std::path::Path;

/// 64 KiB blocks: G1 holds 32, G2 64, G3 1024.
const BB: usize = 64 << 10;

fn open(dir: &Path) -> EngineCore {
    let p = dir.join("burst.toml");
    std::fs::write(
        &p,
        "salt = \"b\"\n[g1]\nbytes = \"2MiB\"\n[g2]\nbytes = \"4MiB\"\n[g3]\nbytes = \"64MiB\"\n\
         [offload]\ng1_to_g2 = { mode = \"write-back\" }\ng2_to_g3 = { mode = \"write-through\" }\n\
         queue_depth = 4096\ndisk_io = \"mmap\"\nclean_ahead = 8\n",
    )
    .unwrap();
    EngineCore::open(&EngineOptions::new(BB, Some(&dir.join("g3")), "burst").with_config(Some(&p)))
        .unwrap()
}

fn blocks(n: usize, tag: u8) -> (Vec<Vec<u8>>, Vec<u64>) {
    blocks_of(n, tag, BB)
}

fn fresh() -> (tempfile::TempDir, EngineCore) {
    fresh_with(open)
}

/// Submit one job per `per` keys of `k` (chunk `i` of `data` for key `i`).
fn submit_jobs(
    core: &EngineCore,
    first_job: u64,
    k: &[Vec<u8>],
    data: &mut [u64],
    per: usize,
    load: bool,
) -> u64 {
    let b = buf(data);
    let mut job = first_job;
    for (j, part) in k.chunks(per).enumerate() {
        let chunks: Vec<i64> = (j * per..j * per + part.len()).map(|c| c as i64).collect();
        // SAFETY: the caller drains before `data` goes.
        unsafe {
            if load {
                core.submit_load(job, part, &chunks, b).unwrap();
            } else {
                core.submit_store(job, part, &chunks, b).unwrap();
            }
        }
        job += 1;
    }
    job
}

/// Blocks stored (and pushed down to disk by later stores) load back,
/// byte-exact, while a burst of new stores fills the host tiers.
#[test]
fn loads_of_disk_blocks_succeed_during_a_store_burst() {
    let (_dir, core) = fresh();
    // 200 blocks, far more than G1 + G2: most of them end up on disk only.
    let (old, mut old_data) = blocks(200, 1);
    let next = submit_jobs(&core, 1, &old, &mut old_data, 16, false);
    core.drain();
    assert!(core.poll_finished().iter().all(|r| r.ok));
    // A burst of 600 new blocks (10x the host tiers), and loads of the old
    // ones submitted in the middle of it.
    let (new, mut new_data) = blocks(600, 2);
    let mut out = vec![0u64; old_data.len()];
    let next = submit_jobs(&core, next, &new, &mut new_data, 16, false);
    let loads_from = next;
    submit_jobs(&core, next, &old, &mut out, 8, true);
    core.drain();
    let done = core.poll_finished();
    let loads: Vec<_> = done.iter().filter(|r| r.job >= loads_from).collect();
    assert_eq!(loads.len(), 25);
    let failed = loads.iter().filter(|r| !r.ok).count();
    assert_eq!(
        failed, 0,
        "{failed} of 25 load jobs failed during a store burst"
    );
    assert_eq!(out, old_data);
    assert!(done.iter().filter(|r| r.job < loads_from).all(|r| r.ok));
    core.close().unwrap();
}

/// Every block a store job acknowledged stays findable (G3 holds them all)
/// however fast stores outrun the disk, and nothing is dropped.
#[test]
fn acknowledged_blocks_stay_findable_under_a_store_burst() {
    let (_dir, core) = fresh();
    let (k, mut data) = blocks(900, 3);
    submit_jobs(&core, 1, &k, &mut data, 30, false);
    core.drain();
    let done = core.poll_finished();
    let per = 30;
    let mut acked = Vec::new();
    for r in &done {
        let base = (r.job as usize - 1) * per;
        for (i, ok) in r.ok_keys.iter().enumerate() {
            if *ok {
                acked.push(k[base + i].clone());
            }
        }
    }
    // Back-pressure, not refusal: the disk keeps up within the wait.
    assert_eq!(acked.len(), 900, "stores refused under the burst");
    let missing: Vec<usize> = acked
        .iter()
        .enumerate()
        .filter(|(_, key)| !core.contains(key).unwrap())
        .map(|(i, _)| i)
        .collect();
    let dropped = core.cache_metrics().unwrap().dropped_blocks;
    assert!(
        missing.is_empty() && dropped == 0,
        "{} of {} acknowledged blocks missing, {dropped} dropped",
        missing.len(),
        acked.len()
    );
    // Everything acknowledged loads back byte-exact.
    let mut out = vec![0u64; data.len()];
    submit_jobs(&core, 1000, &k, &mut out, 30, true);
    core.drain();
    for r in core.poll_finished() {
        let base = (r.job as usize - 1000) * per;
        for (i, ok) in r.ok_keys.iter().enumerate() {
            let c = base + i;
            let range = c * BB / 8..(c + 1) * BB / 8;
            if *ok {
                assert_eq!(out[range.clone()], data[range], "block {c}");
            }
        }
    }
    core.close().unwrap();
}

/// Drain `core` on another thread; panics if that takes longer than
/// `limit` (a hang).
fn drain_within(core: &EngineCore, limit: std::time::Duration) {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            core.drain();
            let _ = tx.send(());
        });
        if rx.recv_timeout(limit).is_err() {
            panic!("jobs still in flight after {limit:?}");
        }
    });
}

/// Loads submitted right after a burst of stores (while the cleaner and the
/// write-through still copy those blocks down, yielding to the loads) all
/// succeed, byte-exact, and nothing is dropped.
#[test]
fn loads_right_after_a_store_burst_are_byte_exact() {
    let (_dir, core) = fresh();
    let (k, mut data) = blocks(300, 4);
    let next = submit_jobs(&core, 1, &k, &mut data, 16, false);
    core.drain();
    assert!(core.poll_finished().iter().all(|r| r.ok));
    let mut out = vec![0u64; data.len()];
    submit_jobs(&core, next, &k, &mut out, 16, true);
    drain_within(&core, std::time::Duration::from_secs(60));
    let done = core.poll_finished();
    assert_eq!(done.len(), 300 / 16 + 1);
    let failed = done.iter().filter(|r| !r.ok).count();
    assert_eq!(failed, 0, "{failed} load jobs failed");
    assert_eq!(out, data);
    let m = core.cache_metrics().unwrap();
    assert_eq!((m.dropped_blocks, m.verify_failures), (0, 0));
    core.close().unwrap();
}

/// Stores and loads interleaved while G2 is full of blocks still queued for
/// the disk: the stores wait for room the write-through frees, the loads
/// hold foreground guards the write-through would yield to. With a bound so
/// long that yielding alone would refuse every waiting store, everything
/// still finishes: a store waiting for room stops the yielding.
#[test]
fn interleaved_stores_and_loads_under_a_full_g2_finish() {
    let (_dir, core) = fresh();
    let cache = core.cache().unwrap();
    cache.set_max_yield(std::time::Duration::from_secs(600));
    let (old, mut old_data) = blocks(128, 5);
    let mut job = submit_jobs(&core, 1, &old, &mut old_data, 16, false);
    core.drain();
    assert!(core.poll_finished().iter().all(|r| r.ok));
    // A load in flight all along (the loads below are too short to keep
    // one in flight at every moment).
    let reading = cache.foreground();
    // 640 new blocks (10x G2) in jobs of 16, each followed by a load of 8
    // old blocks (cycling through them, each load into its own output).
    let (new, mut new_data) = blocks(640, 6);
    let rounds = 640 / 16;
    let mut outs: Vec<Vec<u64>> = (0..rounds).map(|_| vec![0u64; 8 * BB / 8]).collect();
    let mut loads = Vec::new();
    for (r, out) in outs.iter_mut().enumerate() {
        let s = r * 16;
        let b = buf(&mut new_data[s * BB / 8..(s + 16) * BB / 8]);
        let chunks: Vec<i64> = (0..16).collect();
        // SAFETY: drained below, before the buffers go.
        unsafe { core.submit_store(job, &new[s..s + 16], &chunks, b) }.unwrap();
        job += 1;
        let o = (r * 8) % 128;
        let chunks: Vec<i64> = (0..8).collect();
        // SAFETY: as above.
        unsafe { core.submit_load(job, &old[o..o + 8], &chunks, buf(out)) }.unwrap();
        loads.push((job, o));
        job += 1;
    }
    drain_within(&core, std::time::Duration::from_secs(120));
    drop(reading);
    let done = core.poll_finished();
    assert_eq!(done.len(), 2 * rounds);
    let load_jobs: std::collections::HashSet<u64> = loads.iter().map(|(j, _)| *j).collect();
    let refused = done
        .iter()
        .filter(|r| !load_jobs.contains(&r.job) && !r.ok)
        .count();
    assert_eq!(refused, 0, "{refused} of {rounds} store jobs refused");
    let failed = done
        .iter()
        .filter(|r| load_jobs.contains(&r.job) && !r.ok)
        .count();
    assert_eq!(failed, 0, "{failed} of {rounds} load jobs failed");
    for ((_, o), out) in loads.iter().zip(&outs) {
        assert_eq!(
            out[..],
            old_data[o * BB / 8..(o + 8) * BB / 8],
            "load of {o}.."
        );
    }
    let m = core.cache_metrics().unwrap();
    assert_eq!((m.dropped_blocks, m.verify_failures), (0, 0));
    // Every new block is held somewhere.
    let held = new.iter().filter(|k| core.contains(k).unwrap()).count();
    assert_eq!(held, 640);
    drop(cache);
    core.close().unwrap();
}
