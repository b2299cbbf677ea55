//! G3 journal: round trip, replay semantics, torn tails, corruption, header
//! mismatches, compaction, locking, full verification, and random crash points.

use std::fs;
use std::path::{Path, PathBuf};

use kvtier_disk::journal::{
    verify_full_with, HeaderField, JOURNAL_FILE, JOURNAL_TMP_FILE, RECORD_BYTES,
};
use kvtier_disk::*;
use kvtier_logical::{BlockSpec, SequenceHash};
use proptest::prelude::*;

const NB: u64 = 64;

fn hdr() -> G3Header {
    G3Header::new(0xfeed_f00d_1234_5678, 0x5a17, NB)
}

fn rec(slot: u32, h: u128) -> Record {
    Record {
        slot,
        spec: BlockSpec {
            hash: SequenceHash(h),
            parent: SequenceHash(h.wrapping_mul(31) ^ 0x77),
            position: (h as u32) % 1000,
        },
        checksum: (h as u64).rotate_left(17) ^ 0xdead_beef,
    }
}

/// Reference replay: latest record per slot, ordered by its journal position.
fn replay(entries: &[Entry]) -> Vec<Record> {
    let mut live: Vec<Record> = Vec::new();
    for e in entries {
        live.retain(|r| r.slot != e.slot());
        if let Entry::Stored(r) = e {
            live.push(*r);
        }
    }
    live
}

fn open(dir: &Path) -> (Journal, Recovery) {
    Journal::open(dir, &hdr(), OnMismatch::Refuse).unwrap()
}

fn jpath(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

/// Replace the journal of `dir` by `bytes` and reopen it: what recovery found.
fn reopen_with(dir: &Path, bytes: &[u8]) -> Recovery {
    fs::write(jpath(dir), bytes).unwrap();
    open(dir).1
}

/// Replace the journal of `dir` by `bytes` and reopen it: recovery finds
/// what `kept` leaves and drops `(torn, corrupt)` records.
fn assert_reopens_with(dir: &Path, bytes: &[u8], kept: &[Entry], dropped: (u64, u64), what: &str) {
    let r = reopen_with(dir, bytes);
    assert_eq!(r.records, replay(kept), "{what}");
    assert_eq!((r.dropped_torn, r.dropped_corrupt), dropped, "{what}");
}

/// The journal of `dir`, open, with `entries` appended and committed.
fn committed(dir: &Path, entries: &[Entry]) -> Journal {
    let (mut j, _) = open(dir);
    j.append(entries).unwrap();
    j.commit().unwrap();
    j
}

/// A journal holding `entries`, committed in batches of `batch`; returns its bytes.
fn write_journal(dir: &Path, entries: &[Entry], batch: usize) -> Vec<u8> {
    let (mut j, r) = open(dir);
    assert!(r.created);
    for c in entries.chunks(batch.max(1)) {
        j.append(c).unwrap();
        j.commit().unwrap();
    }
    drop(j);
    fs::read(jpath(dir)).unwrap()
}

fn sample(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            if i % 7 == 6 {
                Entry::Removed {
                    slot: (i as u32 * 5) % NB as u32,
                    hash: SequenceHash(0),
                }
            } else {
                Entry::Stored(rec((i as u32 * 3) % NB as u32, i as u128 * 1_000_003 + 1))
            }
        })
        .collect()
}

#[test]
fn round_trip_same_records_same_order() {
    let d = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (0..40)
        .map(|i| Entry::Stored(rec(i, 100 + i as u128)))
        .collect();
    let (mut j, r) = open(d.path());
    assert!(r.created && r.records.is_empty());
    j.append(&entries[..10]).unwrap();
    assert_eq!(j.pending(), 10);
    assert_eq!(j.commit().unwrap(), 10);
    j.append(&entries[10..]).unwrap();
    assert_eq!(j.commit().unwrap(), 40);
    assert_eq!(j.commit().unwrap(), 40, "empty commit");
    assert_eq!(j.entries_since_compaction(), 40);
    drop(j);
    let (j, r) = open(d.path());
    assert!(!r.created);
    assert_eq!(r.records, replay(&entries));
    assert_eq!(
        (r.dropped_torn, r.dropped_corrupt, r.entries_replayed),
        (0, 0, 40)
    );
    assert_eq!(r.bytes_read, 41 * RECORD_BYTES as u64);
    assert_eq!(j.entries_since_compaction(), 40);
}

#[test]
fn latest_per_slot_and_removed() {
    let d = tempfile::tempdir().unwrap();
    let e = vec![
        Entry::Stored(rec(1, 10)),
        Entry::Stored(rec(2, 20)),
        Entry::Stored(rec(3, 30)),
        Entry::Stored(rec(1, 11)), // supersedes slot 1, moves to the end
        Entry::Removed {
            slot: 2,
            hash: SequenceHash(20),
        },
        Entry::Removed {
            slot: 9,
            hash: SequenceHash(1),
        }, // empty slot: no-op
        Entry::Removed {
            slot: 3,
            hash: SequenceHash(999),
        }, // empties whatever the slot holds
        Entry::Stored(rec(2, 21)),
    ];
    write_journal(d.path(), &e, 3);
    let (mut j, r) = open(d.path());
    assert_eq!(r.records, vec![rec(1, 11), rec(2, 21)]);
    assert_eq!(r.records, replay(&e));
    // More entries after reopen.
    j.append(&[
        Entry::Removed {
            slot: 1,
            hash: SequenceHash(11),
        },
        Entry::Stored(rec(4, 40)),
    ])
    .unwrap();
    j.commit().unwrap();
    drop(j);
    let (_j, r) = open(d.path());
    assert_eq!(r.records, vec![rec(2, 21), rec(4, 40)]);
}

#[test]
fn uncommitted_entries_are_not_durable() {
    let d = tempfile::tempdir().unwrap();
    let mut j = committed(d.path(), &[Entry::Stored(rec(1, 1))]);
    j.append(&[Entry::Stored(rec(2, 2))]).unwrap();
    drop(j); // "crash" before commit
    let (_j, r) = open(d.path());
    assert_eq!(r.records, vec![rec(1, 1)]);
}

#[test]
fn slot_out_of_range_is_refused_on_append() {
    let d = tempfile::tempdir().unwrap();
    let (mut j, _) = open(d.path());
    let err = j
        .append(&[Entry::Stored(rec(1, 1)), Entry::Stored(rec(NB as u32, 2))])
        .unwrap_err();
    assert!(
        matches!(err, JournalError::SlotOutOfRange { slot, num_blocks } if slot == NB as u32 && num_blocks == NB)
    );
    assert_eq!(j.pending(), 0, "nothing buffered from a refused batch");
    assert!(j.compact(&[rec(NB as u32 + 3, 1)]).is_err());
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    let d = tempfile::tempdir().unwrap();
    let entries = sample(20);
    let full = write_journal(d.path(), &entries, 4);
    assert_eq!(full.len(), 21 * RECORD_BYTES);
    let last = full.len() - RECORD_BYTES;
    for cut in last..=full.len() {
        fs::write(jpath(d.path()), &full[..cut]).unwrap();
        let (mut j, r) = open(d.path());
        if cut == full.len() {
            assert_eq!(r.records, replay(&entries));
            assert_eq!(r.dropped_torn, 0);
        } else {
            assert_eq!(r.records, replay(&entries[..19]), "cut at {cut}");
            assert_eq!(r.dropped_torn, u64::from(cut > last), "cut at {cut}");
        }
        assert_eq!(r.dropped_corrupt, 0);
        // The tail was truncated: a new append follows the valid records.
        j.append(&[Entry::Stored(rec(63, 6363))]).unwrap();
        j.commit().unwrap();
        drop(j);
        let (_j, r2) = open(d.path());
        let mut expect = entries[..if cut == full.len() { 20 } else { 19 }].to_vec();
        expect.push(Entry::Stored(rec(63, 6363)));
        assert_eq!(r2.records, replay(&expect), "append after cut at {cut}");
        assert_eq!((r2.dropped_torn, r2.dropped_corrupt), (0, 0));
    }
    // Flipped byte anywhere in the last complete record: torn too.
    for at in last..full.len() {
        let mut b = full.clone();
        b[at] ^= 0x40;
        assert_reopens_with(
            d.path(),
            &b,
            &entries[..19],
            (1, 0),
            &format!("flip at {at}"),
        );
        assert_eq!(fs::metadata(jpath(d.path())).unwrap().len(), last as u64);
    }
}

#[test]
fn zeroed_tail_pages_are_torn() {
    // A multi-record write whose pages persisted out of order: zeros then garbage.
    let d = tempfile::tempdir().unwrap();
    let entries = sample(10);
    let mut full = write_journal(d.path(), &entries, 10);
    full.extend_from_slice(&[0u8; 3 * RECORD_BYTES + 17]);
    assert_reopens_with(d.path(), &full, &entries, (4, 0), "zeroed tail");
}

#[test]
fn flipped_byte_in_a_middle_record_stops_replay_there() {
    let d = tempfile::tempdir().unwrap();
    let entries = sample(30);
    let full = write_journal(d.path(), &entries, 5);
    for k in [0usize, 1, 12, 28] {
        for off in [0usize, 5, 30, 47, 60] {
            let mut b = full.clone();
            b[RECORD_BYTES * (k + 1) + off] ^= 0x01;
            let r = reopen_with(d.path(), &b);
            assert_eq!(r.records, replay(&entries[..k]), "record {k} byte {off}");
            assert_eq!(r.dropped_corrupt, 30 - k as u64);
            assert_eq!(r.dropped_torn, 0);
            assert_eq!(r.entries_replayed, k as u64);
            let len = fs::metadata(jpath(d.path())).unwrap().len();
            assert_eq!(
                len,
                ((k + 1) * RECORD_BYTES) as u64,
                "truncated at the hole"
            );
        }
    }
}

#[test]
fn record_with_valid_checksum_but_bad_slot_is_corrupt() {
    let d = tempfile::tempdir().unwrap();
    let entries = sample(5);
    let mut full = write_journal(d.path(), &entries, 5);
    // Forge a record for slot NB with a correct checksum (seed = header checksum).
    let seed = u64::from_le_bytes(full[56..64].try_into().unwrap());
    let mut r = [0u8; RECORD_BYTES];
    r[0] = 1;
    r[4..8].copy_from_slice(&(NB as u32).to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64_with_seed(&r[..56], seed);
    r[56..].copy_from_slice(&sum.to_le_bytes());
    full.extend_from_slice(&r);
    assert_reopens_with(d.path(), &full, &entries, (0, 1), "forged slot");
}

#[test]
fn records_from_another_journal_do_not_validate() {
    // Records are sealed with the header checksum: splicing records of a
    // journal with another identity (or generation) never replays them.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = sample(6);
    let fa = write_journal(a.path(), &ea, 6);
    let (mut jb, _) =
        Journal::open(b.path(), &G3Header { salt: 1, ..hdr() }, OnMismatch::Refuse).unwrap();
    jb.append(&sample(3)).unwrap();
    jb.commit().unwrap();
    drop(jb);
    let fb = fs::read(jpath(b.path())).unwrap();
    let mut spliced = fa.clone();
    spliced.extend_from_slice(&fb[RECORD_BYTES..]);
    fs::write(jpath(a.path()), &spliced).unwrap();
    let (_j, r) = open(a.path());
    assert_eq!(r.records, replay(&ea));
    assert_eq!(r.dropped_torn, 3);
}

#[test]
fn damaged_header_is_refused_and_reset_discards() {
    let d = tempfile::tempdir().unwrap();
    let full = write_journal(d.path(), &sample(8), 8);
    for at in [0usize, 7, 8, 13, 20, 33, 41, 50, 58, 63] {
        let mut b = full.clone();
        b[at] ^= 0x80;
        fs::write(jpath(d.path()), &b).unwrap();
        let err = Journal::open(d.path(), &hdr(), OnMismatch::Refuse).unwrap_err();
        assert!(
            matches!(err, JournalError::BadHeader { .. }),
            "flip at {at}: {err}"
        );
        assert!(err.to_string().contains("unreadable header"), "{err}");
        assert_eq!(
            fs::read(jpath(d.path())).unwrap(),
            b,
            "refusal leaves the file alone"
        );
    }
    for short in [0usize, 1, 63] {
        fs::write(jpath(d.path()), &full[..short]).unwrap();
        let err = Journal::open(d.path(), &hdr(), OnMismatch::Refuse).unwrap_err();
        assert!(matches!(err, JournalError::BadHeader { .. }), "{err}");
    }
    let (mut j, r) = Journal::open(d.path(), &hdr(), OnMismatch::Reset).unwrap();
    assert!(r.records.is_empty() && r.reset.is_some() && !r.created);
    j.append(&[Entry::Stored(rec(5, 5))]).unwrap();
    j.commit().unwrap();
    drop(j);
    let (_j, r) = open(d.path());
    assert_eq!(r.records, vec![rec(5, 5)]);
    assert!(r.reset.is_none());
}

#[test]
fn other_identity_is_refused_naming_the_field() {
    let d = tempfile::tempdir().unwrap();
    write_journal(d.path(), &sample(8), 8);
    let h = hdr();
    let cases = [
        (
            G3Header {
                format_version: 2,
                ..h
            },
            HeaderField::FormatVersion,
            "format_version = 1, expected 2",
        ),
        (
            G3Header {
                layout_fingerprint: 0xabc,
                ..h
            },
            HeaderField::LayoutFingerprint,
            "layout_fingerprint = 0xfeedf00d12345678, expected 0x0000000000000abc",
        ),
        (
            G3Header { salt: 0x5a18, ..h },
            HeaderField::Salt,
            "salt = 0x0000000000005a17, expected 0x0000000000005a18",
        ),
        (
            G3Header {
                num_blocks: 65,
                ..h
            },
            HeaderField::NumBlocks,
            "num_blocks = 64, expected 65",
        ),
    ];
    for (other, field, msg) in cases {
        let err = Journal::open(d.path(), &other, OnMismatch::Refuse).unwrap_err();
        match &err {
            JournalError::Mismatch { field: f, .. } => assert_eq!(*f, field),
            e => panic!("expected Mismatch, got {e}"),
        }
        assert!(err.to_string().contains(msg), "{err}");
        // Still intact for the right identity.
        let (_j, r) = open(d.path());
        assert_eq!(r.records, replay(&sample(8)));
    }
    // Reset discards and rewrites the header with the new identity.
    let other = G3Header { salt: 99, ..h };
    let (_j, r) = Journal::open(d.path(), &other, OnMismatch::Reset).unwrap();
    assert!(r.records.is_empty());
    assert!(
        r.reset.as_deref().unwrap().contains("salt"),
        "{:?}",
        r.reset
    );
    drop(_j);
    let (_j, r) = Journal::open(d.path(), &other, OnMismatch::Refuse).unwrap();
    assert!(r.records.is_empty() && r.reset.is_none());
    drop(_j);
    assert!(matches!(
        Journal::open(d.path(), &h, OnMismatch::Refuse),
        Err(JournalError::Mismatch {
            field: HeaderField::Salt,
            ..
        })
    ));
}

#[test]
fn compaction_keeps_the_live_set() {
    let d = tempfile::tempdir().unwrap();
    let entries = sample(200);
    write_journal(d.path(), &entries, 13);
    let (mut j, r) = open(d.path());
    let live = replay(&entries);
    assert_eq!(r.records, live);
    assert_eq!(j.entries_since_compaction(), 200);
    // A pending entry survives compaction and is written by the next commit.
    j.append(&[Entry::Stored(rec(63, 777))]).unwrap();
    j.compact(&r.records).unwrap();
    assert_eq!(j.entries_since_compaction(), live.len() as u64);
    assert_eq!(j.pending(), 1);
    assert_eq!(j.commit().unwrap(), live.len() as u64 + 1);
    j.append(&[Entry::Removed {
        slot: live[0].slot,
        hash: live[0].spec.hash,
    }])
    .unwrap();
    j.commit().unwrap();
    drop(j);
    assert!(!d.path().join(JOURNAL_TMP_FILE).exists());
    let (_j, r2) = open(d.path());
    let mut expect: Vec<Entry> = live.iter().map(|r| Entry::Stored(*r)).collect();
    expect.push(Entry::Stored(rec(63, 777)));
    expect.push(Entry::Removed {
        slot: live[0].slot,
        hash: live[0].spec.hash,
    });
    assert_eq!(r2.records, replay(&expect));
    assert_eq!(r2.bytes_read, (live.len() as u64 + 3) * RECORD_BYTES as u64);
}

#[test]
fn crash_mid_compaction_is_harmless() {
    let d = tempfile::tempdir().unwrap();
    let entries = sample(50);
    write_journal(d.path(), &entries, 50);
    let tmp = d.path().join(JOURNAL_TMP_FILE);
    // (a) a half-written tmp file; (b) a complete tmp journal of another live
    // set that was never renamed. Either way the old journal is the truth.
    let other = tempfile::tempdir().unwrap();
    let complete = write_journal(other.path(), &[Entry::Stored(rec(1, 4242))], 1);
    for garbage in [complete[..100].to_vec(), complete.clone()] {
        fs::write(&tmp, &garbage).unwrap();
        let (mut j, r) = open(d.path());
        assert_eq!(r.records, replay(&entries));
        assert!(!tmp.exists(), "leftover tmp removed");
        j.append(&[Entry::Stored(rec(2, 2))]).unwrap();
        j.commit().unwrap();
        drop(j);
        let (_j, r) = open(d.path());
        let mut e = entries.clone();
        e.push(Entry::Stored(rec(2, 2)));
        assert_eq!(r.records, replay(&e));
        drop(_j);
        // Restore for the next case.
        let (mut j, _) = open(d.path());
        j.compact(&replay(&entries)).unwrap();
    }
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = open(d.path());
    // flock belongs to the open file description: a second open in the same
    // process gets its own description and is refused too.
    let err = Journal::open(d.path(), &hdr(), OnMismatch::Refuse).unwrap_err();
    match &err {
        JournalError::Locked { dir } => assert_eq!(dir, d.path()),
        e => panic!("expected Locked, got {e}"),
    }
    assert!(err.to_string().contains("in use"), "{err}");
    // Reset does not bypass the lock.
    assert!(matches!(
        Journal::open(d.path(), &hdr(), OnMismatch::Reset),
        Err(JournalError::Locked { .. })
    ));
    drop(j);
    let (_j, r) = open(d.path());
    assert!(!r.created);
}

#[test]
fn lock_excludes_another_process() {
    // `flock(1)` from util-linux holds the directory's lock in a child process.
    let d = tempfile::tempdir().unwrap();
    let child = std::process::Command::new("flock")
        .arg("-n")
        .arg(d.path())
        .args(["-c", "echo locked; read x"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("skipping: flock(1) not available");
        return;
    };
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let res = Journal::open(d.path(), &hdr(), OnMismatch::Refuse);
    drop(child.stdin.take()); // EOF: the child exits and releases the lock
    child.wait().unwrap();
    assert!(matches!(res, Err(JournalError::Locked { .. })), "{res:?}");
    assert!(Journal::open(d.path(), &hdr(), OnMismatch::Refuse).is_ok());
}

#[test]
fn verify_full_against_a_disk_file() {
    use kvtier_memory::{BlockShape, HostVisible, Layout};
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::layer_separate(BlockShape::tiny(), 8).unwrap();
    let disk = DiskMemory::open(d.path().join("g3.blocks"), layout, OpenMode::CreateNew).unwrap();
    let bb = layout.block_bytes();
    let mut records = Vec::new();
    for slot in 0..6u32 {
        let data: Vec<u8> = (0..bb).map(|i| (i as u32 * 7 + slot * 13) as u8).collect();
        disk.write_block(slot as usize, &data).unwrap();
        let sum = xxhash_rust::xxh3::xxh3_64(&disk.read_block(slot as usize).unwrap());
        assert_eq!(
            sum,
            kvtier_memory::block_checksum(&disk, slot as usize).unwrap()
        );
        records.push(Record {
            checksum: sum,
            ..rec(slot, slot as u128)
        });
    }
    disk.flush().unwrap();
    // Slot 2 overwritten without a new record (crash before commit).
    disk.write_block(2, &vec![0xee; bb]).unwrap();
    let (ok, bad) = verify_full(&records, &disk);
    assert_eq!(bad, vec![records[2]]);
    assert_eq!(ok.len(), 5);
    assert!(!ok.contains(&records[2]));
    let (ok, bad) = verify_full_with(&records, |r| (r.slot != 4).then_some(r.checksum));
    assert_eq!((ok.len(), bad), (5, vec![records[4]]));
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => (0u32..12, any::<u64>()).prop_map(|(s, h)| Entry::Stored(rec(s, h as u128 | 1 << 100))),
        1 => (0u32..12, any::<u64>()).prop_map(|(s, h)| Entry::Removed { slot: s, hash: SequenceHash(h as u128) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Crash at any byte: the recovered state is the replay of the durable
    /// prefix (the complete records before the cut), and a later append +
    /// reopen continues from there.
    #[test]
    fn recovered_state_is_the_durable_prefix(
        entries in prop::collection::vec(arb_entry(), 0..60),
        batch in 1usize..9,
        cut_frac in 0.0f64..=1.0,
        more in prop::collection::vec(arb_entry(), 0..5),
    ) {
        let d = tempfile::tempdir().unwrap();
        let full = write_journal(d.path(), &entries, batch);
        let body = full.len() - RECORD_BYTES;
        let cut = RECORD_BYTES + ((body as f64) * cut_frac) as usize;
        fs::write(jpath(d.path()), &full[..cut]).unwrap();
        let (mut j, r) = open(d.path());
        let k = (cut - RECORD_BYTES) / RECORD_BYTES;
        prop_assert_eq!(&r.records, &replay(&entries[..k]));
        prop_assert_eq!(r.dropped_torn, u64::from(!(cut - RECORD_BYTES).is_multiple_of(RECORD_BYTES)));
        prop_assert_eq!(r.dropped_corrupt, 0);
        j.append(&more).unwrap();
        j.commit().unwrap();
        drop(j);
        let (_j, r2) = open(d.path());
        let mut e = entries[..k].to_vec();
        e.extend_from_slice(&more);
        prop_assert_eq!(&r2.records, &replay(&e));
    }

    /// Any single flipped byte among the entry records: replay stops at that
    /// record (torn if it is the last, corrupt otherwise); never an error.
    #[test]
    fn flipped_byte_recovers_the_prefix_before_it(
        entries in prop::collection::vec(arb_entry(), 1..40),
        pos_frac in 0.0f64..1.0,
        bit in 0u8..8,
    ) {
        let d = tempfile::tempdir().unwrap();
        let mut full = write_journal(d.path(), &entries, 7);
        let body = full.len() - RECORD_BYTES;
        let at = RECORD_BYTES + ((body as f64 * pos_frac) as usize).min(body - 1);
        full[at] ^= 1 << bit;
        let r = reopen_with(d.path(), &full);
        let k = (at - RECORD_BYTES) / RECORD_BYTES;
        prop_assert_eq!(&r.records, &replay(&entries[..k]));
        let dropped = (entries.len() - k) as u64;
        if k + 1 == entries.len() {
            prop_assert_eq!((r.dropped_torn, r.dropped_corrupt), (1, 0));
        } else {
            prop_assert_eq!((r.dropped_torn, r.dropped_corrupt), (0, dropped));
        }
    }
}

/// 1,000,000 records: reopen time (run with `--release -- --ignored`).
#[test]
#[ignore = "timing; run in release: cargo test --release -p kvtier-disk --test journal -- --ignored --nocapture"]
fn reopen_one_million_records() {
    let d = tempfile::tempdir().unwrap();
    let n = 1_000_000u32;
    let h = G3Header::new(1, 2, n as u64);
    let (mut j, _) = Journal::open(d.path(), &h, OnMismatch::Refuse).unwrap();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(Entry::Stored(rec(i, i as u128 + 1)));
        if batch.len() == 10_000 {
            j.append(&batch).unwrap();
            j.commit().unwrap();
            batch.clear();
        }
    }
    drop(j);
    let t = std::time::Instant::now();
    let (_j, r) = Journal::open(d.path(), &h, OnMismatch::Refuse).unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(r.records.len(), n as usize);
    eprintln!(
        "reopen {} records ({} MiB): {:.3} s (recovery.seconds {:.3})",
        r.records.len(),
        r.bytes_read >> 20,
        wall,
        r.seconds
    );
    assert!(wall < 2.0, "reopen took {wall:.3} s");
}

#[test]
fn failed_compaction_poisons_until_a_compaction_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let mut j = committed(d.path(), &[Entry::Stored(rec(1, 1))]);
    // Bad input is refused before any I/O and does not poison.
    assert!(matches!(
        j.compact(&[rec(NB as u32, 9)]),
        Err(JournalError::SlotOutOfRange { .. })
    ));
    j.append(&[Entry::Stored(rec(2, 2))]).unwrap();
    j.commit().unwrap();
    // An I/O failure (the tmp path is a directory) poisons.
    let tmp = d.path().join(JOURNAL_TMP_FILE);
    fs::create_dir(&tmp).unwrap();
    assert!(matches!(
        j.compact(&[rec(1, 1)]),
        Err(JournalError::Io { .. })
    ));
    let err = j.append(&[Entry::Stored(rec(3, 3))]).unwrap_err();
    assert!(matches!(err, JournalError::Poisoned { .. }), "{err}");
    assert!(matches!(j.commit(), Err(JournalError::Poisoned { .. })));
    fs::remove_dir(&tmp).unwrap();
    j.compact(&[rec(1, 1), rec(2, 2)]).unwrap();
    j.append(&[Entry::Stored(rec(3, 3))]).unwrap();
    assert_eq!(j.commit().unwrap(), 3);
    drop(j);
    let (_j, r) = open(d.path());
    assert_eq!(r.records, vec![rec(1, 1), rec(2, 2), rec(3, 3)]);
}
