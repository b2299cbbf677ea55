//! G3 journal recovery time: write a journal of N records, then time
//! `Journal::open` with the journal in the page cache (warm) and after dropping
//! its pages (`posix_fadvise(DONTNEED)`, cold), for two workloads:
//! `distinct` (N records, N live slots) and `churn` (N records over N/10 slots,
//! 90 % superseded), plus one compaction.
//!
//! ```sh
//! cargo run --release -p kvtier-disk --example g3_recovery                  # 1,000,000 records
//! cargo run --release -p kvtier-disk --example g3_recovery -- 5000000 /path/to/dir
//! ```

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

use kvtier_disk::journal::JOURNAL_FILE;
use kvtier_disk::{Entry, G3Header, Journal, OnMismatch, Record};
use kvtier_logical::{BlockSpec, SequenceHash};

fn drop_cache(path: &Path) {
    let f = File::open(path).expect("open journal");
    f.sync_all().ok();
    // SAFETY: valid fd; advisory call.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn run(dir: &Path, name: &str, n: u64, slots: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let h = G3Header::new(0x1111, 0x2222, slots);
    let (mut j, _) = Journal::open(dir, &h, OnMismatch::Refuse).expect("open");
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let slot = (i % slots) as u32;
        batch.push(Entry::Stored(Record {
            slot,
            spec: BlockSpec {
                hash: SequenceHash((i as u128 + 1) * 0x9e37_79b9_7f4a_7c15),
                parent: SequenceHash(i as u128),
                position: (i % 4096) as u32,
            },
            checksum: i.wrapping_mul(0x2545_f491_4f6c_dd1d),
        }));
        if batch.len() == batch.capacity() {
            j.append(&batch).expect("append");
            j.commit().expect("commit");
            batch.clear();
        }
    }
    j.append(&batch).expect("append");
    j.commit().expect("commit");
    let write_s = t.elapsed().as_secs_f64();
    drop(j);
    let path = dir.join(JOURNAL_FILE);
    let mb = std::fs::metadata(&path).expect("stat").len() as f64 / (1 << 20) as f64;
    println!("{name}: {n} records over {slots} slots, journal {mb:.1} MiB, written in {write_s:.2} s (commits of 10,000)");
    for cold in [false, true, false, true] {
        if cold {
            drop_cache(&path);
        }
        let t = Instant::now();
        let (j, r) = Journal::open(dir, &h, OnMismatch::Refuse).expect("reopen");
        let s = t.elapsed().as_secs_f64();
        println!(
            "  reopen {}: {:.3} s ({:.0} MiB/s), {} live, {} replayed, torn {} corrupt {}",
            if cold { "cold" } else { "warm" },
            s,
            r.bytes_read as f64 / (1 << 20) as f64 / s,
            r.records.len(),
            r.entries_replayed,
            r.dropped_torn,
            r.dropped_corrupt
        );
        drop(j);
        if cold && name == "churn" {
            let (mut j, r) = Journal::open(dir, &h, OnMismatch::Refuse).expect("reopen");
            let t = Instant::now();
            j.compact(&r.records).expect("compact");
            println!(
                "  compact to {} live: {:.3} s",
                r.records.len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}

/// Latency of small commits (one write + fdatasync each).
fn commit_latency(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let h = G3Header::new(1, 2, 1 << 20);
    let (mut j, _) = Journal::open(dir, &h, OnMismatch::Refuse).expect("open");
    for per in [1u32, 64] {
        let mut lat = Vec::new();
        for i in 0..500u32 {
            let batch: Vec<Entry> = (0..per)
                .map(|k| {
                    Entry::Stored(Record {
                        slot: (i * per + k) % (1 << 20),
                        spec: BlockSpec {
                            hash: SequenceHash(i as u128),
                            parent: SequenceHash(0),
                            position: k,
                        },
                        checksum: 7,
                    })
                })
                .collect();
            let t = Instant::now();
            j.append(&batch).expect("append");
            j.commit().expect("commit");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "commit of {per} entries (write + fdatasync): median {:.2} ms, p99 {:.2} ms (500 commits)",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("records: a number"))
        .unwrap_or(1_000_000);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("kvtier-g3-recovery-{}", std::process::id()))
        });
    commit_latency(&base.join("latency"));
    run(&base.join("distinct"), "distinct", n, n.max(1));
    run(&base.join("churn"), "churn", n, (n / 10).max(1));
    let _ = std::fs::remove_dir_all(&base);
}
