//! Hostile inputs, full disks, interrupts and load against the `kvtier`
//! binary: every case ends in a clear error or a correct run, and nothing is
//! left behind. One test (or more) per class:
//! overload, stuck G3 directories, interrupts, outputs, machine limits,
//! silently wrong numbers, G3 file security, unbounded inputs, diagnostics.
//! A full disk is simulated with a small tmpfs when the test runs as root
//! (skipped with a printed reason otherwise); the same error path is covered
//! without root by `kvtier-disk`'s group-commit test.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Small tiers, tiny blocks: every run here takes well under a second.
const SMALL: &str = r#"
salt = "robust-test"
layout = { preset = "tiny", block_size = 4 }
g1 = { blocks = 200, memory = "mock" }
g2 = { blocks = 800, memory = "host" }
g3 = { blocks = 2000, memory = "disk" }
"#;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---- 1. overload ----------------------------------------------------------

/// Far more requests in flight than G1 can hold at once: they queue for
/// blocks (counted), every request is served, nothing fails verification.
#[test]
fn overload_queues_instead_of_failing() {
    let r = json_ok(&["replay", "--concurrency", "256"]);
    assert_eq!(u(&r["requests"]), 3993);
    assert_eq!(u(&r["requests_not_run"]), 0);
    assert_eq!(u(&r["blocks"]), 121_877);
    assert_eq!(u(&r["verify_failures"]), 0);
    assert_eq!(u(&r["data_mismatches"]), 0);
    assert!(u(&r["admission_waits"]) > 0, "{r}");
    assert!(u(&r["max_in_flight"]) > 1);
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["interrupted"], false);
}

// ---- 2. stuck G3 directories ----------------------------------------------

#[test]
fn g3_reset_recovers_every_stuck_directory() {
    let (t, cfg, g3) = g3_dir(SMALL);
    let g3 = g3.as_str();
    let d = Path::new(g3);
    let run = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = w(&format!("replay --config {cfg} --g3-dir {g3} --limit 100"))
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let json = |extra: &[&str]| {
        let a = run(extra);
        json_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = |extra: &[&str]| {
        let a = run(extra);
        fails(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = json(&[]);
    assert!(u(&first["g3_live"]) > 0);

    // (a) Another size: refused with the exact remedy, then reset.
    let e = err(&["--g3-blocks", "1500"]);
    assert!(
        e.contains("--g3-blocks 2000") && e.contains("--g3-reset"),
        "{e}"
    );
    let r = json(&["--g3-blocks", "1500", "--g3-reset"]);
    assert!(r["g3"]["reset"].is_string(), "{}", r["g3"]);
    // Another block size too.
    let other = write_config(t.path(), &SMALL.replace("block_size = 4", "block_size = 8"));
    let e = fails(&w(&format!(
        "replay --config {other} --g3-dir {g3} --g3-blocks 1500 --limit 10"
    )));
    assert!(
        e.contains("layout_fingerprint") && e.contains("--g3-reset"),
        "{e}"
    );
    let o = kvtier(&w(&format!(
        "replay --config {other} --g3-dir {g3} --g3-blocks 1500 --limit 10 --g3-reset"
    )));
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = json(&["--g3-reset"]); // back to this test's shape and size

    // (b) Killed during the very first start: a 0-byte data file and no
    // journal. Nothing refers to the data file: the next start just works.
    std::fs::remove_dir_all(d).unwrap();
    std::fs::create_dir(d).unwrap();
    std::fs::write(d.join("g3.blocks"), b"").unwrap();
    let r = json(&[]);
    assert_eq!(r["g3"]["created"], true);

    // (c) A data file cut short under a journal that names blocks.
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("g3.blocks"))
        .unwrap()
        .set_len(4096)
        .unwrap();
    let e = err(&[]);
    assert!(e.contains("4096 bytes") && e.contains("--g3-reset"), "{e}");
    let r = json(&["--g3-reset"]);
    assert!(r["g3"]["reset"].is_string());

    // (d) A garbage journal.
    std::fs::write(d.join("g3.journal"), vec![0x5a; 1000]).unwrap();
    let e = err(&[]);
    assert!(
        e.contains("unreadable header") && e.contains("--g3-reset"),
        "{e}"
    );
    json(&["--g3-reset"]);

    // (e) A FIFO in the journal's place: refused at once, never waited on.
    std::fs::remove_file(d.join("g3.journal")).unwrap();
    let fifo = std::ffi::CString::new(d.join("g3.journal").to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let e = err(&[]);
    assert!(e.contains("FIFO"), "{e}");
    let r = json(&["--g3-reset"]);
    assert!(r["g3"]["reset"].is_string());
    assert!(std::fs::metadata(d.join("g3.journal")).unwrap().is_file());
}

/// A full disk, on a 24 MiB tmpfs (root only): creating a G3 that does not
/// fit is refused with both numbers and leaves nothing; filling the disk
/// during a run stops persistence with one clear error after the report, a
/// few warning lines and a count; afterwards the directory reopens (or
/// resets) normally.
#[test]
fn full_disk_is_a_clear_error_and_recoverable() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root (the journal's stop-on-error path is tested in kvtier-disk)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = Command::new("mount")
        .args(w("-t tmpfs -o size=24m tmpfs"))
        .arg(&mnt)
        .output();
    if !m.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: cannot mount a tmpfs here ({m:?})");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let cfg = write_config(t.path(), SMALL);
    let d = mnt.join("g3");
    let g3 = d.to_str().unwrap();
    // 2000 blocks of 64 KiB... the tiny shape with 4 tokens: 512 bytes x 4?
    // Whatever the block size, 4,000,000 blocks cannot fit in 24 MiB.
    let e = fails(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --g3-blocks 4000000 --limit 10"
    )));
    assert!(
        e.contains("not enough disk space") && e.contains("available"),
        "{e}"
    );
    assert!(!d.join("g3.blocks").exists(), "nothing left behind");
    // A G3 that fits, then a disk filled to the last byte.
    json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 10"
    )));
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let o = kvtier_bounded(
        &w(&format!(
            "replay --config {cfg} --g3-dir {g3} --g3-blocks 2000 --limit 600"
        )),
        120,
    );
    let e = stderr(&o);
    assert!(!o.status.success(), "a stopped journal fails the run");
    assert!(e.contains("No space left"), "{e}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("requests"),
        "the report is printed"
    );
    assert!(
        e.lines().count() < 40,
        "rate-limited: {} lines\n{e}",
        e.lines().count()
    );
    std::fs::remove_file(&filler).unwrap();
    let r = json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 10"
    )));
    assert_eq!(u(&r["verify_failures"]), 0);
    json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 10 --g3-reset"
    )));
}

// ---- 3. interrupts ---------------------------------------------------------

fn signal_run(sig: i32, json: bool) -> (Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    // Thirty repetitions of the default replay: still running when the
    // signal comes, however fast the machine (each repetition is a fresh
    // cache; the interrupted one is reported).
    let mut args = vec!["replay", "--repeat", "30"];
    if json {
        args.push("--json");
    }
    let child = cmd(&args)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it get into the replay.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let out = child.wait_with_output().unwrap();
    (out, tmp)
}

#[test]
fn sigint_prints_a_partial_report_and_leaves_nothing() {
    let (o, tmp) = signal_run(libc::SIGINT, false);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(130), "{}\n{text}", stderr(&o));
    assert!(text.contains("stopped early"), "{text}");
    assert!(stderr(&o).contains("interrupted by signal 2"));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let (o, tmp) = signal_run(libc::SIGTERM, true);
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["interrupted"], true, "{r}");
    assert!(u(&r["requests"]) + u(&r["requests_not_run"]) == 3993);
    assert_eq!(u(&r["data_mismatches"]), 0);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // SIGKILL cannot be handled: the temporary G3 has no name to leave.
    let (o, tmp) = signal_run(libc::SIGKILL, false);
    assert_eq!(o.status.code(), None);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

// ---- 4. outputs and finished work ------------------------------------------

#[test]
fn outputs_are_checked_before_the_run() {
    let e = fails(&["replay", "--plot", "/nonexistent/p.svg"]);
    assert!(e.contains("cannot write plot /nonexistent/p.svg"), "{e}");
    let o = kvtier(&["replay", "--plot", "/nonexistent/p.svg"]);
    assert!(o.stdout.is_empty(), "failed before any work");
    // A full stdout is an error, not a panic.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = cmd(&w("replay --no-data --limit 10"))
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("cannot write to standard output") && !e.contains("panicked"),
        "{e}"
    );
}

// ---- 5. machine limits ------------------------------------------------------

#[test]
fn tiers_larger_than_the_machine_are_refused() {
    let e = fails(&w("replay --g2-blocks 100000000 --limit 10"));
    assert!(e.contains("needs") && e.contains("available"), "{e}");
    assert!(e.contains("g2 100000000 blocks"), "{e}");
    let e = fails(&w("replay --g1-blocks 2000000000 --no-data"));
    assert!(e.contains("available"), "{e}");
}

// ---- 6. silently wrong numbers ---------------------------------------------

#[test]
fn every_figure_is_right_or_refused() {
    // Truncation to G1 is the reference semantics, and it is counted.
    let o = kvtier(&w("replay --no-data --g1-blocks 50 --json"));
    assert!(o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(u(&r["truncated_requests"]) > 0);
    assert_eq!(u(&r["blocks"]) + u(&r["truncated_blocks"]), 121_877);
    assert!(
        stderr(&o).contains("cut to G1's capacity"),
        "{}",
        stderr(&o)
    );
    // --repeat is honoured on the multi-tier path.
    let r = json_ok(&w("replay --repeat 3 --limit 200"));
    assert_eq!(u(&r["repetitions"]), 3);
    assert_eq!(u(&r["requests"]), 200);
    // A tiny persistent G3 still records blocks.
    let t = tempfile::tempdir().unwrap();
    let g3 = t.path().join("g3");
    let r = json_ok(&w(&format!(
        "replay --g3-dir {} --g3-blocks 120 --limit 300",
        g3.to_str().unwrap()
    )));
    assert_eq!(u(&r["g3_live"]), 120);
    // The benchmark refuses an empty batch instead of printing noise.
    let e = fails(&w("bench --batch 0 --block-tokens 1"));
    assert!(e.contains("--batch 0"), "{e}");
    let e = fails(&["bench", "--block-tokens", "0"]);
    assert!(e.contains("--block-tokens 0"), "{e}");
}

// ---- 8. security of the G3 directory ---------------------------------------

#[test]
fn g3_files_are_private_and_links_are_never_followed() {
    let (t, cfg, g3) = g3_dir(SMALL);
    let g3 = g3.as_str();
    let d = Path::new(g3);
    json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 50"
    )));
    assert_eq!(
        std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in ["g3.blocks", "g3.journal"] {
        let m = std::fs::metadata(d.join(f)).unwrap().mode() & 0o777;
        assert_eq!(m, 0o600, "{f}: {m:o}");
    }
    assert!(
        !d.join("g3.lock").exists(),
        "the directory itself is locked"
    );
    let size = std::fs::metadata(d.join("g3.blocks")).unwrap().len();

    // A planted data-file symlink to an unrelated file of the right size.
    let victim = t.path().join("victim");
    std::fs::write(&victim, vec![0x11u8; size as usize]).unwrap();
    std::fs::remove_file(d.join("g3.blocks")).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("g3.blocks")).unwrap();
    let e = fails(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 50"
    )));
    assert!(e.contains("symbolic link"), "{e}");
    json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 50 --g3-reset"
    )));
    let v = std::fs::read(&victim).unwrap();
    assert!(
        v.len() == size as usize && v.iter().all(|&b| b == 0x11),
        "victim untouched"
    );
    assert!(std::fs::symlink_metadata(d.join("g3.blocks"))
        .unwrap()
        .is_file());

    // A dangling g3.lock symlink: its target is never created.
    let target = t.path().join("created-by-lock");
    std::os::unix::fs::symlink(&target, d.join("g3.lock")).unwrap();
    json_ok(&w(&format!(
        "replay --config {cfg} --g3-dir {g3} --limit 10"
    )));
    assert!(!target.exists());

    // The temporary G3 (no --g3-dir) has no name at all.
    let tmp = tempfile::tempdir().unwrap();
    let o = cmd(&w(&format!("replay --config {cfg} --limit 50")))
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

// ---- 9. unbounded inputs ---------------------------------------------------

#[test]
fn unbounded_inputs_are_refused() {
    let e = fails(&["replay", "--trace", "/dev/zero"]);
    assert!(e.contains("character device"), "{e}");
    let t = tempfile::tempdir().unwrap();
    // One line longer than the bound, with no end of line.
    let long = t.path().join("long.jsonl");
    let mut text = b"{\"hash_ids\": [".to_vec();
    text.resize(17 << 20, b'1');
    std::fs::write(&long, &text).unwrap();
    let e = fails(&["replay", "--trace", long.to_str().unwrap(), "--no-data"]);
    assert!(e.contains("long.jsonl:1: line longer than"), "{e}");
    // A FIFO as the trace.
    let fifo = t.path().join("trace.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = fails(&["replay", "--trace", fifo.to_str().unwrap()]);
    assert!(e.contains("FIFO"), "{e}");
}

// ---- 10. diagnostics ---------------------------------------------------------

#[test]
fn diagnostics_name_the_right_thing() {
    let e = fails(&["replay", "--limit", "0"]);
    assert!(e.contains("--limit 0") && !e.contains("--skip"), "{e}");
    let t = tempfile::tempdir().unwrap();
    let bom = t.path().join("bom.jsonl");
    std::fs::write(
        &bom,
        b"\xef\xbb\xbf{\"hash_ids\": [1, 2]}\n{\"hash_ids\": [1, 3]}\n",
    )
    .unwrap();
    let r = json_ok(&["replay", "--trace", bom.to_str().unwrap(), "--no-data"]);
    assert_eq!(u(&r["requests"]), 2);
    let bad = t.path().join("bad.jsonl");
    std::fs::write(&bad, b"{\"hash_ids\": [1]}\n{\"hash_ids\": [\xff]}\n").unwrap();
    let e = fails(&["replay", "--trace", bad.to_str().unwrap()]);
    assert!(e.contains("bad.jsonl:2: not UTF-8"), "{e}");
    // A warning into a pipe carries no colour codes.
    let o = kvtier(&w("replay --no-data --g1-blocks 50"));
    let e = stderr(&o);
    assert!(e.contains("WARN") && !e.contains('\x1b'), "{e:?}");
    // `pinned` without a GPU is reported as the host memory it falls back to.
    let cfg = write_config(
        t.path(),
        &SMALL.replace(
            "g2 = { blocks = 800, memory = \"host\" }",
            "g2 = { blocks = 800, memory = \"pinned\" }",
        ),
    );
    let o = kvtier(&w(&format!("replay --config {cfg} --limit 20 --json")));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g2 = r["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "g2")
        .unwrap()
        .clone();
    if g2["memory"] != "pinned" {
        assert_eq!(g2["memory"], "host");
        assert!(stderr(&o).contains("needs a CUDA device"), "{}", stderr(&o));
    }
}
