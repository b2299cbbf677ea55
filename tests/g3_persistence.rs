//! A persistent G3 directory across restarts, crashes (SIGKILL) and
//! corruption, through the binary. A tiny layout (512-byte blocks) keeps the
//! files small.

mod common;
use common::*;
use kvtier_memory::testing::flip_byte;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
salt = "g3-test"
layout = { preset = "tiny", block_size = 4 }
g1 = { blocks = 2000, memory = "mock", policy = "lru" }
g2 = { blocks = 8000, memory = "host", policy = "lru" }
g3 = { blocks = 50000, memory = "disk", policy = "lru" }
"#;

/// Half the trace, a clean stop, the other half on the reopened G3: the same
/// total as one uninterrupted run (G3 holds every block).
#[test]
fn restart_resumes_with_every_block() {
    let (_t, cfg, g3) = g3_dir(CONFIG);
    let g3 = g3.as_str();
    let whole = replay_ok(&["--config", &cfg]);
    assert_eq!(u(&whole["hits"]), 77_953);

    let a = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3} --limit 2000")));
    assert_eq!(a["g3"]["created"], true);
    let b = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3} --skip 2000")));
    assert_eq!(b["g3"]["created"], false);
    assert_eq!(u(&b["g3"]["recovered"]), u(&a["g3_live"]));
    assert_eq!(u(&b["g3"]["restored"]), u(&a["g3_live"]));
    assert_eq!(u(&a["hits"]) + u(&b["hits"]), 77_953);
    assert_eq!(u(&a["blocks"]) + u(&b["blocks"]), 121_877);
    assert!(
        u(&b["hits_by_tier"]["g3"]) > 0,
        "the second run starts with G3 hits"
    );
    for r in [&a, &b] {
        assert_eq!(u(&r["verify_failures"]), 0);
        assert_eq!(u(&r["data_mismatches"]), 0);
    }
    // A third run over the whole trace starts with everything in G3.
    let c = replay_ok(&w(&format!(
        "--config {cfg} --g3-dir {g3} --verify full --limit 500"
    )));
    assert_eq!(u(&c["g3"]["dropped_verify"]), 0);
    assert_eq!(
        u(&c["hits"]),
        u(&c["blocks"]),
        "every block of the first 500 requests is in G3"
    );
}

/// SIGKILL at 20 points during replays: every reopen recovers at least what
/// was acknowledged, every recovered block verifies, nothing wrong is served.
#[test]
fn crash_at_random_points_recovers_what_was_acknowledged() {
    let t = tempfile::tempdir().unwrap();
    // A G3 smaller than the trace's 43,924 blocks, so G3 also evicts
    // (exercising the removal-before-overwrite path).
    // The built-in config's disk mode (mmap: the sync before each commit
    // must cover writes through the mapping).
    let cfg = write_config(
        t.path(),
        &format!(
            "{}\n[offload]\ndisk_io = \"mmap\"\n",
            CONFIG.replace("blocks = 50000", "blocks = 20000")
        ),
    );
    let g3 = t.path().join("g3");
    let g3s = g3.to_str().unwrap().to_string();
    let ack = t.path().join("ack.log");
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // How long an uninterrupted run takes here, so kill points spread over
    // start-up and the whole replay whatever the machine's speed.
    let calib = t.path().join("calib");
    let t0 = std::time::Instant::now();
    replay_ok(&w(&format!(
        "--config {cfg} --g3-dir {} --limit 2000",
        calib.to_str().unwrap()
    )));
    let mut run_ms = (t0.elapsed().as_millis() as u64).max(50);
    let mut kills = 0;
    let mut skip = 0usize;
    let mut round = 0;
    while kills < 20 && round < 60 {
        round += 1;
        let _ = std::fs::remove_file(&ack);
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvtier"))
            .args(w(&format!(
                "replay --config {cfg} --g3-dir {g3s} --ack-log {} --skip {} --json",
                ack.to_str().unwrap(),
                &skip.to_string()
            )))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill somewhere in start-up or the replay.
        let delay = 5 + rand() % (run_ms * 8 / 10);
        std::thread::sleep(Duration::from_millis(delay));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        } else {
            // Faster than calibrated (less load now): aim earlier.
            run_ms = (delay * 9 / 10).max(20);
        }
        child.wait().unwrap();
        // The last acknowledged commit: `<journal bytes> <live records>`.
        // Records persisted after it may only have removed blocks (G3
        // evictions), so recovery must find at least `live - removals after`.
        let log = std::fs::read_to_string(&ack).unwrap_or_default();
        // Only whole lines: the kill may cut the last one.
        let whole = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
        let last = whole.lines().last().unwrap_or("");
        let (acked, removed_after) = match last.split_once(' ') {
            Some((len, live)) => {
                let len: usize = len.parse().unwrap();
                let live: u64 = live.parse().unwrap();
                let j = std::fs::read(g3.join("g3.journal")).unwrap();
                // 64-byte records; kind 2 = Removed (docs of kvtier_disk::journal).
                let removed = j
                    .get(len..)
                    .unwrap_or(&[])
                    .chunks_exact(64)
                    .filter(|r| r[0] == 2)
                    .count() as u64;
                (live, removed)
            }
            // Killed before the first commit, or during a compaction (the
            // file was rewritten): only the integrity checks apply.
            None => (0, 0),
        };
        // Reopen, verify every block, replay a few requests checking bytes.
        let r = replay_ok(&[
            "--config",
            &cfg,
            "--g3-dir",
            &g3s,
            "--verify",
            "full",
            "--limit",
            "50",
            "--skip",
            &((round * 97) % 3900).to_string(),
        ]);
        let g = &r["g3"];
        assert_eq!(u(&g["dropped_verify"]), 0, "round {round}: {g}");
        assert!(
            u(&g["restored"]) + removed_after >= acked,
            "round {round} (killed after {delay} ms): restored {} + removed later {removed_after} < acknowledged {acked}: {g}",
            u(&g["restored"])
        );
        assert!(g["seconds"].as_f64().unwrap() >= 0.0);
        assert_eq!(u(&r["data_mismatches"]), 0);
        assert_eq!(u(&r["verify_failures"]), 0);
        skip = (skip + 211) % 1900;
    }
    assert!(
        kills >= 18,
        "only {kills} of 20 runs were killed mid-way (a run takes {run_ms} ms)"
    );
}

#[test]
fn corruption_is_detected_reported_and_survived() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write_config(t.path(), CONFIG);
    let g3 = t.path().join("g3");
    let g3s = g3.to_str().unwrap().to_string();
    let base = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 600")));
    let live = u(&base["g3_live"]);
    assert!(live > 1000);
    let journal = g3.join("g3.journal");
    let data = g3.join("g3.blocks");

    // Truncated journal: the torn record is dropped.
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let r = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 1")));
    assert!(u(&r["g3"]["dropped_torn"]) >= 1, "{}", r["g3"]);
    assert!(u(&r["g3"]["restored"]) >= live - 2);

    // Flipped bytes in a journal record in the middle: the rest is not trusted.
    let len = std::fs::metadata(&journal).unwrap().len();
    flip_byte(&journal, 64 + (len - 64) / 2, 0xff);
    let r = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 1")));
    assert!(u(&r["g3"]["dropped_corrupt"]) >= 1, "{}", r["g3"]);

    // Flipped bytes in the data file: `--verify full` drops that block; the
    // fast path would catch it on onboarding instead.
    let rebuilt = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 600")));
    assert_eq!(u(&rebuilt["data_mismatches"]), 0);
    for block in [0u64, 7, 100] {
        flip_byte(&data, block * 512 + 3, 0xff);
    }
    let fast = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 600")));
    assert_eq!(u(&fast["data_mismatches"]), 0, "never served");
    let full = replay_ok(&w(&format!(
        "--config {cfg} --g3-dir {g3s} --verify full --limit 1"
    )));
    assert_eq!(u(&full["data_mismatches"]), 0);
    assert!(
        u(&fast["verify_failures"]) + u(&full["g3"]["dropped_verify"]) >= 1,
        "fast {} full {}",
        fast["verify_failures"],
        full["g3"]
    );

    // A missing data file: every record is dropped, the run goes on.
    std::fs::remove_file(&data).unwrap();
    let r = replay_ok(&w(&format!("--config {cfg} --g3-dir {g3s} --limit 10")));
    assert!(u(&r["g3"]["dropped_missing_data"]) > 0, "{}", r["g3"]);
    assert_eq!(u(&r["g3"]["restored"]), 0);

    // Another layout: refused with the field named, unless --g3-reset.
    let other = write_config(
        t.path(),
        &CONFIG.replace("block_size = 4", "block_size = 8"),
    );
    let g3_other = t.path().join("g3-other");
    std::fs::create_dir_all(&g3_other).unwrap();
    // Same directory, other layout: the data file size differs too, so use the
    // journal alone in a fresh directory to isolate the fingerprint check.
    std::fs::copy(&journal, g3_other.join("g3.journal")).unwrap();
    let e = replay_err(&w(&format!(
        "--config {other} --g3-dir {} --limit 1",
        g3_other.to_str().unwrap()
    )));
    assert!(
        e.contains("layout_fingerprint") && e.contains("--g3-reset"),
        "{e}"
    );
    let r = replay_ok(&w(&format!(
        "--config {other} --g3-dir {} --g3-reset --limit 1",
        g3_other.to_str().unwrap()
    )));
    assert!(r["g3"]["reset"].is_string(), "{}", r["g3"]);
}

#[test]
fn two_processes_never_share_a_g3_directory() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write_config(t.path(), CONFIG);
    let g3 = t.path().join("g3");
    replay_ok(&w(&format!(
        "--config {cfg} --g3-dir {} --limit 1",
        g3.to_str().unwrap()
    )));
    // Hold the directory's lock from another process (util-linux flock
    // locks the directory itself, as kvtier does).
    let mut holder = match Command::new("flock")
        .args(w(&format!("-x -o {} sleep 30", g3.to_str().unwrap())))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: flock(1) not available: {e}");
            return;
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let e = replay_err(&w(&format!(
        "--config {cfg} --g3-dir {} --limit 1",
        g3.to_str().unwrap()
    )));
    assert!(e.to_lowercase().contains("lock"), "{e}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    replay_ok(&w(&format!(
        "--config {cfg} --g3-dir {} --limit 1",
        g3.to_str().unwrap()
    )));
}

/// Start-up of a persistent G3 holding 1,000,000 blocks: journal recovery plus
/// rebuilding the G3 block store. Prints the time (run with `--ignored
/// --nocapture` in release mode; the figure is in docs/benchmarks.md).
#[test]
#[ignore]
fn reopen_a_million_block_g3() {
    use kvtier::config::Config;
    use kvtier::disk::journal::{Entry, G3Header, Journal, OnMismatch, Record};
    let t = tempfile::tempdir().unwrap();
    let n = 1_000_000u64;
    let text = CONFIG
        .replace("blocks = 50000", &format!("blocks = {n}"))
        .replace("blocks = 8000", "blocks = 16");
    let cfg_path = write_config(t.path(), &text);
    let mut config = Config::from_file(Path::new(&cfg_path)).unwrap();
    let g3 = t.path().join("g3");
    std::fs::create_dir_all(&g3).unwrap();
    config.g1.blocks = 16;
    config.g3.path = Some(g3.clone());
    let (shape, kind) = config.block_shape("test").unwrap();
    // A sparse data file of the right size, and a journal of n records.
    let layout = kvtier::memory::Layout::new(shape, kind, n as usize).unwrap();
    let f = std::fs::File::create(g3.join("g3.blocks")).unwrap();
    f.set_len(layout.total_bytes() as u64).unwrap();
    let header = G3Header::new(
        kvtier::disk::journal::layout_fingerprint(&shape, kind),
        config.cache_salt().0,
        n,
    );
    {
        let (mut j, _) = Journal::open(&g3, &header, OnMismatch::Refuse).unwrap();
        let mut batch = Vec::with_capacity(65_536);
        let mut parent = 0u128;
        for slot in 0..n as u32 {
            let hash = (slot as u128 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            batch.push(Entry::Stored(Record {
                slot,
                spec: kvtier::logical::BlockSpec {
                    hash: kvtier::logical::SequenceHash(hash),
                    parent: kvtier::logical::SequenceHash(if slot % 64 == 0 { 0 } else { parent }),
                    position: slot % 64,
                },
                checksum: 0,
            }));
            parent = hash;
            if batch.len() == batch.capacity() {
                j.append(&batch).unwrap();
                batch.clear();
            }
        }
        j.append(&batch).unwrap();
        j.commit().unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let built = rt
        .block_on(async { kvtier::setup::build(&config, "test", true, &Default::default()) })
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    let rec = built.recovery.clone().unwrap();
    println!(
        "reopened a G3 of {n} blocks: journal recovery {:.3} s, total start-up {took:.3} s, {} restored",
        rec.seconds, rec.restored
    );
    assert_eq!(rec.restored, n);
    assert!(took < 2.0, "start-up took {took:.3} s");
}
