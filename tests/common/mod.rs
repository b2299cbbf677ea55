//! Helpers shared by the whole-stack tests: running the `kvtier` binary from
//! the repository root, bounded, and reading its JSON report.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (the binary's working directory in every test).
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The synthetic Mooncake trace, relative to [`ROOT`].
pub const TRACE: &str = "tests/data/mooncake_synthetic_trace.jsonl";

/// The words of `s` as an argument list: `w("replay --no-data")`.
pub fn w(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// `kvtier ARGS`, run from the repository root with `RUST_LOG` unset.
pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kvtier"));
    c.args(args).current_dir(ROOT).env_remove("RUST_LOG");
    c
}

/// Run `kvtier ARGS` to completion.
pub fn kvtier(args: &[&str]) -> Output {
    cmd(args).output().expect("run kvtier")
}

/// Run, waiting at most `secs` (then kill and fail: nothing may hang). The
/// output is read while it runs (a full pipe must not stall the child).
pub fn kvtier_bounded(args: &[&str], secs: u64) -> Output {
    use std::io::Read;
    let mut child = cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kvtier");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("kvtier {args:?} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Its stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `kvtier ARGS` must succeed and print one JSON object.
pub fn json(args: &[&str]) -> serde_json::Value {
    let o = kvtier(args);
    assert!(o.status.success(), "kvtier {args:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object on stdout")
}

/// `kvtier ARGS --json`, which must succeed.
pub fn json_ok(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    json(&a)
}

/// `kvtier replay ARGS --json`, which must succeed.
pub fn replay_ok(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["replay"];
    a.extend_from_slice(args);
    json_ok(&a)
}

/// `kvtier ARGS` must fail within 60 s without a panic; its stderr.
pub fn fails(args: &[&str]) -> String {
    let o = kvtier_bounded(args, 60);
    assert!(!o.status.success(), "kvtier {args:?} should fail");
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// `kvtier replay ARGS` must fail without a panic; its stderr.
pub fn replay_err(args: &[&str]) -> String {
    let mut a = vec!["replay"];
    a.extend_from_slice(args);
    fails(&a)
}

/// A JSON number as `u64`.
pub fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Write `text` as `kvtier.toml` in `dir`; its path.
pub fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("kvtier.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// A temporary directory with `config` written into it, and the path of a G3
/// directory inside it (not created): `(dir, config path, g3 path)`.
pub fn g3_dir(config: &str) -> (tempfile::TempDir, String, String) {
    let t = tempfile::tempdir().expect("temporary directory");
    let cfg = write_config(t.path(), config);
    let g3 = t.path().join("g3").to_str().expect("UTF-8 path").to_owned();
    (t, cfg, g3)
}
