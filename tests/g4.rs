//! G4, the tier shared by many nodes, through the binary against a real S3
//! protocol server on 127.0.0.1 (s3s-fs, in this process): two nodes sharing
//! a bucket, concurrent writers, objects damaged outside kvtier, the server
//! killed and restarted mid-replay, the byte budget.

mod common;
use common::{cmd, stderr, TRACE};
use futures::StreamExt;
use kvtier_remote::testing::{self, S3Server, ACCESS_KEY, SECRET_KEY};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUCKET: &str = "kvtier-g4";

/// The hits one unbounded cache gets on the synthetic trace.
const UNBOUNDED_HITS: u64 = 77_953;

/// One test at a time: each runs a server and replays on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Harness {
    _serial: std::sync::MutexGuard<'static, ()>,
    rt: tokio::runtime::Runtime,
    server: S3Server,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let rt = testing::runtime().unwrap();
        // The server's files in memory when the machine has /dev/shm.
        let dir = testing::scratch_dir().unwrap();
        let server = rt.block_on(S3Server::start(dir.path(), &[BUCKET])).unwrap();
        Harness {
            _serial: serial,
            rt,
            server,
            _dir: dir,
        }
    }

    /// [`replay_with_g4`] at `s3://BUCKET/prefix`, endpoint and
    /// credentials in the AWS_* variables.
    fn replay(&self, prefix: &str, extra: &[&str]) -> Command {
        let mut c = replay_with_g4(&format!("s3://{BUCKET}/{prefix}"), extra);
        c.env("AWS_ENDPOINT", self.server.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true");
        c
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        self.server.object_store(BUCKET)
    }

    /// Objects and bytes under `prefix`.
    fn usage(&self, prefix: &str) -> (usize, u64) {
        let store = self.store();
        let prefix = Path::from(prefix);
        self.rt.block_on(async move {
            let mut s = store.list(Some(&prefix));
            let (mut n, mut b) = (0, 0);
            while let Some(m) = s.next().await {
                if let Ok(m) = m {
                    n += 1;
                    b += m.size;
                }
            }
            (n, b)
        })
    }

    /// Every object key under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<Path> {
        let store = self.store();
        let prefix = Path::from(prefix);
        self.rt.block_on(async move {
            let mut s = store.list(Some(&prefix));
            let mut v = Vec::new();
            while let Some(m) = s.next().await {
                v.push(m.unwrap().location);
            }
            v.sort();
            v
        })
    }
}

/// `kvtier replay` of the trace with small G1 and G2 and `extra`, its JSON
/// report on a pipe.
fn replay_cmd(extra: &[&str]) -> Command {
    let mut args = vec![
        "replay",
        "--trace",
        TRACE,
        "--g1-blocks",
        "1000",
        "--g2-blocks",
        "2000",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut c = cmd(&args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// [`replay_cmd`] with a small G3 and G4 at `url`.
fn replay_with_g4(url: &str, extra: &[&str]) -> Command {
    replay_cmd(&[&["--g3-blocks", "4000", "--g4", url], extra].concat())
}

/// Wait for `child` at most `secs`, then parse its JSON report.
fn finish(child: Child, secs: u64) -> Value {
    let t = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("replay still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("replay took {:.1} s", t.elapsed().as_secs_f64());
    let o: Output = child.wait_with_output().unwrap();
    assert!(o.status.success(), "replay failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

fn json_of(mut c: Command) -> Value {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    finish(c.spawn().unwrap(), 50)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn assert_nothing_wrong(v: &Value) {
    assert_eq!(v["verify_failures"], 0, "{v}");
    assert_eq!(v["data_mismatches"], 0, "{v}");
    assert_eq!(v["error"], Value::Null, "{v}");
}

/// Node A's replay then node B's (sharing one G4) lost nothing, together
/// hit at least 99% of `reference`, and B hit in G4 what A stored there.
fn assert_shared(a: &Value, b: &Value, reference: u64) {
    assert_nothing_wrong(a);
    assert_nothing_wrong(b);
    let hits = u(&a["hits"]) + u(&b["hits"]);
    assert!(
        hits * 100 >= reference * 99,
        "A {} + B {} = {hits} of {reference}",
        a["hits"],
        b["hits"]
    );
    assert!(u(&b["hits_by_tier"]["g4"]) > 0, "{}", b["hits_by_tier"]);
}

/// The full trace over a shared directory (`file://`, as on NFS): node A
/// replays the first 2,000 requests, node B (empty G1-G3) the rest.
#[test]
fn two_nodes_share_a_directory_over_the_whole_trace() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/g4", dir.path().display());
    let run = |extra: &[&str]| {
        json_of(replay_with_g4(
            &url,
            &[&["--g4-backpressure", "wait"], extra].concat(),
        ))
    };
    let a = run(&["--limit", "2000"]);
    let b = run(&["--skip", "2000"]);
    assert_shared(&a, &b, UNBOUNDED_HITS);
    assert_eq!(b["g4"]["read_failures"], 0);
}

/// The same over S3 on a slice of the trace (the in-process S3 server
/// writes a few hundred objects a second on a small machine): A replays
/// requests 0..250, B 250..500; together they get at least 99% of the hits
/// of one cache holding every block over 0..500.
#[test]
fn two_nodes_share_a_bucket() {
    let h = Harness::new();
    let one = json_of(replay_cmd(&["--g3-blocks", "50000", "--limit", "500"]));
    let wait = ["--g4-backpressure", "wait"];
    let a = json_of(h.replay("two", &[&wait[..], &["--limit", "250"]].concat()));
    let b = json_of(h.replay(
        "two",
        &[&wait[..], &["--skip", "250", "--limit", "250"]].concat(),
    ));
    assert_shared(&a, &b, u(&one["hits"]));
    assert_eq!(b["g4"]["write_skipped"], 0);
    // One object per distinct block written by either node.
    let written = u(&a["g4"]["objects_written"]) + u(&b["g4"]["objects_written"]);
    assert_eq!(h.usage("two").0 as u64, written);
}

#[test]
fn two_nodes_writing_the_same_blocks_leave_one_object_each() {
    let h = Harness::new();
    let args = ["--g4-backpressure", "wait", "--limit", "200"];
    let a = h.replay("same", &args).spawn().unwrap();
    let b = h.replay("same", &args).spawn().unwrap();
    let (a, b) = (finish(a, 50), finish(b, 50));
    assert_nothing_wrong(&a);
    assert_nothing_wrong(&b);
    for v in [&a, &b] {
        assert_eq!(v["g4"]["write_failures"], 0, "{v}");
    }
    // Every block either node offered exists once; each node saw all of its
    // own blocks created (by itself or by the other).
    let objects = h.usage("same").0 as u64;
    let most = u(&a["g4"]["objects_written"]).max(u(&b["g4"]["objects_written"]));
    assert!(most <= objects, "{most} > {objects}");
    let keys = h.keys("same");
    let mut dedup = keys.clone();
    dedup.dedup();
    assert_eq!(keys.len(), dedup.len());
    assert!(objects > 0);
}

#[test]
fn objects_damaged_outside_kvtier_are_misses_never_wrong_bytes() {
    let h = Harness::new();
    let wait = ["--g4-backpressure", "wait", "--limit", "150"];
    let a = json_of(h.replay("dmg", &wait));
    assert_nothing_wrong(&a);
    let keys = h.keys("dmg");
    assert!(keys.len() > 100);
    let store = h.store();
    h.rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            match i % 4 {
                0 => store.delete(k).await.unwrap(),
                1 => {
                    let b = store.get(k).await.unwrap().bytes().await.unwrap();
                    let cut = b.slice(..b.len() / 2);
                    store.put(k, PutPayload::from(cut)).await.unwrap();
                }
                2 => {
                    let b = store.get(k).await.unwrap().bytes().await.unwrap();
                    let mut v = b.to_vec();
                    let n = v.len();
                    v[n - 7] ^= 0x5a;
                    store.put(k, PutPayload::from(v)).await.unwrap();
                }
                _ => {}
            }
        }
    });
    // A fresh node (same requests): its index lists the damaged objects.
    let b = json_of(h.replay("dmg", &wait));
    assert_nothing_wrong(&b);
    let g = &b["g4"];
    assert!(u(&g["self_healed"]) > 0, "{g}");
    assert!(u(&g["read_failures"]) > 0, "{g}");
    assert!(u(&b["hits_by_tier"]["g4"]) > 0, "{}", b["hits_by_tier"]);
}

#[test]
fn a_server_killed_mid_replay_degrades_to_recompute_and_recovers() {
    let mut h = Harness::new();
    let a = json_of(h.replay("kill", &["--g4-backpressure", "wait", "--limit", "300"]));
    assert_nothing_wrong(&a);
    let child = h
        .replay(
            "kill",
            &["--skip", "300", "--limit", "1500", "--concurrency", "4"],
        )
        .spawn()
        .unwrap();
    // Past B's start-up (it lists A's objects), in the middle of its run.
    std::thread::sleep(Duration::from_millis(2500));
    h.server.stop();
    std::thread::sleep(Duration::from_millis(1000));
    h.rt.block_on(h.server.restart()).unwrap();
    let at_restart = h.usage("kill").0;
    let b = finish(child, 55);
    assert_nothing_wrong(&b);
    let g = &b["g4"];
    assert!(
        u(&g["write_failures"]) + u(&g["write_skipped"]) + u(&g["read_failures"]) > 0,
        "the outage left no trace: {g}"
    );
    assert_eq!(b["interrupted"], false, "{b}");
    let end = h.usage("kill").0;
    assert!(
        end > at_restart,
        "no write after the restart: {at_restart} -> {end}"
    );
}

#[test]
fn watermark_eviction_keeps_the_bucket_under_budget() {
    let h = Harness::new();
    // About 16 KiB per object (tiny layout, 128-token blocks): a budget of
    // 600 objects while the replay writes over 5x that.
    let obj = 16_448u64;
    let budget = 600 * obj;
    let child = h
        .replay(
            "cap",
            &[
                "--g4-backpressure",
                "wait",
                "--limit",
                "300",
                "--g4-capacity",
                &budget.to_string(),
            ],
        )
        .spawn()
        .unwrap();
    let mut max = 0;
    let mut child = child;
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(55) {
        max = max.max(h.usage("cap").1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = finish(child, 5);
    assert_nothing_wrong(&v);
    let g = &v["g4"];
    let (_, end) = h.usage("cap");
    assert!(
        max <= budget && end <= budget,
        "max {max}, end {end}, budget {budget}"
    );
    assert!(
        u(&g["bytes_written"]) >= 5 * budget,
        "wrote {} of 5x {budget}",
        g["bytes_written"]
    );
    assert!(u(&g["evicted"]) > 0, "{g}");
}
