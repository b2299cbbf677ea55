//! Opening a whole G3 directory: permissions, links, FIFOs, size changes,
//! resets, and the group journal stopping on a failed commit (an injected
//! fault: no root or full disk needed).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kvtier_disk::journal::{G3Header, JournalError, DATA_FILE, JOURNAL_FILE, JOURNAL_TMP_FILE};
use kvtier_disk::*;
use kvtier_logical::{BlockSpec, SequenceHash};
use kvtier_memory::{BlockMemory, BlockShape, Layout};

fn opts(blocks: usize, on_mismatch: OnMismatch) -> G3Options<'static> {
    let layout = Layout::layer_separate(BlockShape::tiny(), blocks).unwrap();
    G3Options {
        layout,
        header: G3Header::new(7, 9, blocks as u64),
        on_mismatch,
        verify_full: false,
        ack_log: None,
    }
}

fn rec(slot: u32) -> Record {
    Record {
        slot,
        spec: BlockSpec {
            hash: SequenceHash(slot as u128 + 100),
            parent: SequenceHash::ROOT,
            position: 0,
        },
        checksum: 0,
    }
}

fn open(d: &Path, blocks: usize, m: OnMismatch) -> Result<G3Open, JournalError> {
    open_g3(d, &opts(blocks, m))
}

/// A new 16-block G3 directory `g3` in a temporary directory, holding the
/// stored records of slots `1..=n`.
fn with_records(n: u32) -> (tempfile::TempDir, G3Open) {
    let t = tempfile::tempdir().unwrap();
    let o = open(&t.path().join("g3"), 16, OnMismatch::Refuse).unwrap();
    let recs: Vec<Record> = (1..=n).map(rec).collect();
    o.journal.stored(&recs).unwrap();
    (t, o)
}

/// [`with_records`], closed: the temporary directory and the G3 directory.
fn closed_with_records(n: u32) -> (tempfile::TempDir, PathBuf) {
    let (t, o) = with_records(n);
    o.journal.close().unwrap();
    drop(o);
    let d = t.path().join("g3");
    (t, d)
}

#[test]
fn new_directory_is_private() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("a/b/g3");
    let o = open(&d, 16, OnMismatch::Refuse).unwrap();
    assert!(o.data_created && o.recovery.created);
    assert_eq!(
        std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in [DATA_FILE, JOURNAL_FILE] {
        assert_eq!(
            std::fs::metadata(d.join(f)).unwrap().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    // Locked while open, within this process too.
    assert!(matches!(
        open(&d, 16, OnMismatch::Reset),
        Err(JournalError::Locked { .. })
    ));
}

#[test]
fn size_change_is_refused_then_reset() {
    let (_t, d) = closed_with_records(2);
    match open(&d, 32, OnMismatch::Refuse) {
        Err(JournalError::Mismatch {
            found: 16,
            expected: 32,
            ..
        }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened with another size"),
    }
    let o = open(&d, 32, OnMismatch::Reset).unwrap();
    assert!(o.reset.is_some() && o.records.is_empty());
    assert_eq!(o.data.layout().num_blocks(), 32);
}

#[test]
fn unreferenced_data_file_is_recreated_but_a_referenced_one_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("g3");
    std::fs::create_dir(&d).unwrap();
    // A first start killed before its journal: a 0-byte data file.
    std::fs::write(d.join(DATA_FILE), b"").unwrap();
    let o = open(&d, 16, OnMismatch::Refuse).unwrap();
    assert!(o.data_created);
    o.journal.stored(&[rec(3)]).unwrap();
    o.journal.close().unwrap();
    drop(o);
    std::fs::write(d.join(DATA_FILE), b"short").unwrap();
    assert!(matches!(
        open(&d, 16, OnMismatch::Refuse),
        Err(JournalError::DataMismatch { live: 1, .. })
    ));
    let o = open(&d, 16, OnMismatch::Reset).unwrap();
    assert!(o.records.is_empty() && o.reset.is_some());
}

#[test]
fn links_and_fifos_are_refused_never_followed() {
    let (t, d) = closed_with_records(1);
    let size = std::fs::metadata(d.join(DATA_FILE)).unwrap().len();
    let victim = t.path().join("victim");
    std::fs::write(&victim, vec![1u8; size as usize]).unwrap();
    std::fs::remove_file(d.join(DATA_FILE)).unwrap();
    std::os::unix::fs::symlink(&victim, d.join(DATA_FILE)).unwrap();
    let e = open(&d, 16, OnMismatch::Refuse).err().expect("refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    drop(open(&d, 16, OnMismatch::Reset).unwrap());
    assert!(std::fs::read(&victim).unwrap().iter().all(|&b| b == 1));
    // With no block recorded, a link in the data file's place is simply
    // replaced (removed, never followed).
    std::fs::remove_file(d.join(DATA_FILE)).unwrap();
    std::os::unix::fs::symlink(&victim, d.join(DATA_FILE)).unwrap();
    drop(open(&d, 16, OnMismatch::Refuse).unwrap());
    assert!(std::fs::symlink_metadata(d.join(DATA_FILE))
        .unwrap()
        .is_file());
    assert!(std::fs::read(&victim).unwrap().iter().all(|&b| b == 1));
    // A FIFO as the journal: refused at once (an open would block on it).
    std::fs::remove_file(d.join(JOURNAL_FILE)).unwrap();
    let c = std::ffi::CString::new(d.join(JOURNAL_FILE).to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = open(&d, 16, OnMismatch::Refuse).err().expect("refused");
    assert!(e.to_string().contains("FIFO"), "{e}");
    drop(open(&d, 16, OnMismatch::Reset).unwrap());
    assert!(std::fs::metadata(d.join(JOURNAL_FILE)).unwrap().is_file());
}

/// A commit that fails stops persistence: later stores and the close name
/// the cause, and what was acknowledged before is what a reopen recovers.
#[test]
fn failed_commit_stops_persistence_with_its_cause() {
    let (t, o) = with_records(1);
    let d = t.path().join("g3");
    o.journal.removed(&[]).unwrap(); // commits synchronously
    o.journal.check().unwrap();
    assert_eq!(o.journal.durable_live(), 1);
    // Inject a fault: compaction's tmp path is a directory, so the next
    // compaction fails and the journal is poisoned. Force one by churning
    // far past the compaction threshold.
    std::fs::create_dir(d.join(JOURNAL_TMP_FILE)).unwrap();
    for i in 0..5000u32 {
        o.journal.stored(&[rec(i % 16)]).unwrap_or(());
        // Fails once persistence stopped.
        let _ = o.journal.removed(&[]);
    }
    let err = o.journal.stored(&[rec(5)]).unwrap_err();
    assert!(matches!(err, JournalError::Stopped { .. }), "{err}");
    assert!(err.to_string().contains("compaction failed"), "{err}");
    // A removal can no longer be made durable: it says so.
    let rm = o.journal.removed(&[(3, rec(3).spec.hash)]).unwrap_err();
    assert_eq!(rm.to_string(), err.to_string());
    assert_eq!(o.journal.check().unwrap_err().to_string(), err.to_string());
    let close = o.journal.close().unwrap_err();
    assert_eq!(close.to_string(), err.to_string());
    let acked = o.journal.durable_live();
    drop(o);
    std::fs::remove_dir(d.join(JOURNAL_TMP_FILE)).unwrap();
    let o = open(&d, 16, OnMismatch::Refuse).unwrap();
    assert_eq!(o.records.len() as u64, acked);
}
