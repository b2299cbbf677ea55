//! `kvtier replay --events` with `kvtier events` subscribing, through the
//! binary: every batch arrives in order, the subscriber's view is exact, and
//! bad event options are refused.

mod common;
use common::*;

use std::fs::File;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// `kvtier events ENDPOINT ... --json --check --idle-exit 3` in the
/// background, its output in files of `dir` (a pipe nobody reads would
/// block it).
fn subscriber(dir: &Path, endpoint: &str, extra: &[&str]) -> Child {
    cmd(&[])
        .args(w(&format!(
            "events {endpoint} --json --check --idle-exit 3"
        )))
        .args(extra)
        .stdout(File::create(dir.join("sub.out")).unwrap())
        .stderr(File::create(dir.join("sub.err")).unwrap())
        .spawn()
        .expect("run kvtier events")
}

/// What the subscriber printed, once it exited (bounded wait).
struct SubOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn finish(mut child: Child, dir: &Path, what: &str) -> SubOutput {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{what} did not exit in time: {}",
                std::fs::read_to_string(dir.join("sub.err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    SubOutput {
        ok: status.success(),
        stdout: std::fs::read_to_string(dir.join("sub.out")).unwrap(),
        stderr: std::fs::read_to_string(dir.join("sub.err")).unwrap(),
    }
}

/// A one-tier logical replay publishing on `endpoint`, waiting for a subscriber.
fn replay(extra: &[&str]) -> serde_json::Value {
    let out = cmd(&[])
        .args(w("replay --no-data --g1-blocks 2000 --g2-blocks 0 --g3-blocks 0 --policy lru --json --events-wait-subscriber 30"))
        .args(extra)
        .output()
        .expect("run kvtier replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The subscriber's batches, checked for order; returns them.
fn batches(out: &SubOutput, want: u64) -> Vec<serde_json::Value> {
    let stderr = &out.stderr;
    assert!(out.ok, "subscriber failed: {stderr}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per batch"))
        .collect();
    assert_eq!(lines.len() as u64, want, "{stderr}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64, "batches in sequence order");
    }
    assert!(stderr.contains("state exact"), "{stderr}");
    assert!(stderr.contains("lost 0"), "{stderr}");
    lines
}

#[test]
fn ipc_publisher_and_subscriber_with_replay() {
    let dir = tempfile::tempdir().unwrap();
    let pub_ep = format!("ipc://{}/pub", dir.path().display());
    let rep_ep = format!("ipc://{}/replay", dir.path().display());
    let sub = subscriber(dir.path(), &pub_ep, &["--replay", &rep_ep]);
    let v = replay(&["--events", &pub_ep, "--events-replay", &rep_ep]);
    let ev = &v["events"];
    assert_eq!(ev["subscriber_waited"], true, "{ev}");
    assert_eq!(ev["format"], "map");
    assert_eq!(ev["metrics"]["dropped"], 0);
    assert_eq!(ev["metrics"]["anomalies"], 0);
    assert!(ev["events_per_s"].as_f64().unwrap() > 0.0);
    let n = ev["metrics"]["batches"].as_u64().unwrap();
    let out = finish(sub, dir.path(), "kvtier events");
    let lines = batches(&out, n);
    assert_eq!(lines[0]["events"][0]["type"], "AllBlocksCleared");
    assert!(out.stderr.contains("held: GPU 2000"), "{}", out.stderr);
}

#[test]
fn connecting_publisher_array_format_and_config_table() {
    // llm-d style: the subscriber binds, the publisher connects.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let sub = subscriber(dir.path(), &ep, &["--bind"]);
    let cfg = dir.path().join("events.toml");
    std::fs::write(
        &cfg,
        format!(
            "[g1]\nblocks = 2000\n[events]\nendpoint = \"{ep}\"\nformat = \"array\"\npod = \"pod-7\"\nmodel = \"llama\"\n[events.medium]\ng1 = \"HBM\"\n"
        ),
    )
    .unwrap();
    // Give the subscriber a moment to bind (the publisher retries until
    // its connect timeout anyway).
    std::thread::sleep(Duration::from_millis(200));
    let v = replay(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(v["events"]["format"], "array");
    let n = v["events"]["metrics"]["batches"].as_u64().unwrap();
    let out = finish(sub, dir.path(), "kvtier events --bind");
    let lines = batches(&out, n);
    assert_eq!(lines[0]["topic"], "kv@pod-7@llama");
    assert!(out.stderr.contains("held: HBM 2000"), "{}", out.stderr);
}

#[test]
fn bad_event_options_are_refused() {
    for (args, want) in [
        (
            vec!["--events-replay", "tcp://127.0.0.1:1"],
            "need --events",
        ),
        (vec!["--events", "inproc://x"], "inproc"),
        (vec!["--events", "udp://x:1"], "expected tcp://"),
        (w("--events ipc:///tmp/x --repeat 2"), "--repeat"),
        (w("--events ipc:///tmp/x --events-format xml"), "xml"),
    ] {
        let out = cmd(&[])
            .args(w("replay --no-data --g2-blocks 0 --g3-blocks 0"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
