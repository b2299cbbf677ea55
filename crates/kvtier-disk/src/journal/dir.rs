//! Opening a whole persistent G3 directory: lock it, open (or create) its
//! journal and data file, check that they fit each other and the caller's
//! layout, and start group commit.
//!
//! What is refused, and what is repaired without asking:
//! - a directory another writer holds: [`JournalError::Locked`], always;
//! - a journal of another identity (block layout, salt, format, number of
//!   blocks) or with an unreadable header: [`JournalError::Mismatch`] /
//!   [`JournalError::BadHeader`] naming the field and both values;
//! - a data file of the wrong size, missing, or not a regular file (a
//!   symlink is never followed), while the journal names blocks in it:
//!   [`JournalError::DataMismatch`];
//! - the same data file problems while the journal names **no** block (a
//!   first start killed before the journal was written, a directory whose
//!   journal was reset): the data file holds nothing anyone refers to, so it
//!   is recreated with the right size;
//! - a missing data file while the journal names blocks: those records are
//!   dropped (counted in [`G3Open::dropped_missing_data`]).
//!
//! With [`OnMismatch::Reset`] every refusal but `Locked` is resolved by
//! removing the files kvtier owns in the directory (data file, journal, its
//! tmp file, the lock file of earlier versions: nothing else, and links are
//! removed, never followed) and starting empty. A new data file is checked
//! against the file system's free space first ([`crate::DiskError::NoSpace`]
//! with both numbers).

use std::path::Path;
use std::sync::Arc;

use kvtier_memory::Layout;

use super::lock::{file_type_name, G3Dir};
use super::verify::verify_full;
use super::{
    G3Header, GroupJournal, Journal, JournalError, OnMismatch, Record, Recovery, DATA_FILE,
    JOURNAL_FILE, JOURNAL_TMP_FILE, LEGACY_LOCK_FILE, RECORD_BYTES,
};
use crate::{DiskMemory, OpenMode};

/// How to open a persistent G3 directory.
#[derive(Clone, Debug)]
pub struct G3Options<'a> {
    /// Layout of the data file (its block count is the header's `num_blocks`).
    pub layout: Layout,
    /// The identity the journal must have.
    pub header: G3Header,
    /// Refuse a directory that does not fit, or reset it.
    pub on_mismatch: OnMismatch,
    /// Re-read every recovered block and check its checksum.
    pub verify_full: bool,
    /// File receiving the acknowledged live count after every commit.
    pub ack_log: Option<&'a Path>,
}

/// An open persistent G3 directory.
pub struct G3Open {
    /// The data file.
    pub data: Arc<DiskMemory>,
    /// The journal with group commit (holds the directory's lock).
    pub journal: Arc<GroupJournal>,
    /// Records to restore, oldest first (after full verification, if asked).
    pub records: Vec<Record>,
    /// What the journal's replay found.
    pub recovery: Recovery,
    /// Records whose block failed full verification.
    pub dropped_verify: u64,
    /// Records dropped because the data file was missing.
    pub dropped_missing_data: u64,
    /// The data file was created (or recreated) by this open.
    pub data_created: bool,
    /// Why the directory was reset, if it was.
    pub reset: Option<String>,
}

/// Open the G3 directory `dir` (created `0700` if missing) as `opts` says.
pub fn open_g3(dir: &Path, opts: &G3Options<'_>) -> Result<G3Open, JournalError> {
    let g3 = Arc::new(G3Dir::open(dir)?);
    match attempt(&g3, opts) {
        Ok(o) => Ok(o),
        Err(e @ JournalError::Locked { .. }) => Err(e),
        Err(e) if opts.on_mismatch == OnMismatch::Reset => {
            let reason = e.to_string();
            for name in [JOURNAL_TMP_FILE, JOURNAL_FILE, DATA_FILE, LEGACY_LOCK_FILE] {
                g3.remove(name).map_err(super::io_at(&g3.join(name)))?;
            }
            g3.sync().map_err(super::io_at(g3.path()))?;
            let mut o = attempt(&g3, opts)?;
            o.reset = Some(reason);
            Ok(o)
        }
        Err(e) => Err(e),
    }
}

/// True if the journal holds no record at all (a header, or less): a
/// journal of another identity that names no block can be replaced without
/// losing anything.
fn journal_is_empty(g3: &G3Dir) -> bool {
    matches!(
        g3.stat(JOURNAL_FILE),
        Ok(Some((m, size))) if m & libc::S_IFMT == libc::S_IFREG && size <= RECORD_BYTES as u64
    )
}

fn attempt(g3: &Arc<G3Dir>, opts: &G3Options<'_>) -> Result<G3Open, JournalError> {
    let (journal, recovery) = match Journal::open_in(g3.clone(), &opts.header, OnMismatch::Refuse) {
        Err(JournalError::Mismatch { .. } | JournalError::BadHeader { .. })
            if journal_is_empty(g3) =>
        {
            // Written for another configuration but naming no block (e.g. a
            // first start whose data file could not be created): nothing to
            // keep, start it anew.
            g3.remove(JOURNAL_FILE)
                .map_err(super::io_at(&g3.join(JOURNAL_FILE)))?;
            Journal::open_in(g3.clone(), &opts.header, OnMismatch::Refuse)?
        }
        r => r?,
    };
    let created = recovery.created;
    let res = with_data(g3, opts, journal, recovery);
    if res.is_err() && created {
        // Leave no journal naming a data file that could not be made.
        let _ = g3.remove(JOURNAL_FILE);
        let _ = g3.sync();
    }
    res
}

fn with_data(
    g3: &Arc<G3Dir>,
    opts: &G3Options<'_>,
    journal: Journal,
    mut recovery: Recovery,
) -> Result<G3Open, JournalError> {
    let expected = opts.layout.total_bytes() as u64;
    let data_path = g3.join(DATA_FILE);
    let live = recovery.records.len() as u64;
    let stat = g3.stat(DATA_FILE).map_err(super::io_at(&data_path))?;
    let mut dropped_missing_data = 0;
    let mode = match stat {
        None => {
            dropped_missing_data = live;
            OpenMode::CreateNew
        }
        Some((m, size)) if m & libc::S_IFMT == libc::S_IFREG && size == expected => {
            OpenMode::OpenExisting
        }
        Some((m, size)) => {
            let problem = if m & libc::S_IFMT == libc::S_IFREG {
                format!("has {size} bytes, the layout needs {expected}")
            } else {
                format!("is {}, not a regular file", file_type_name(m))
            };
            if live > 0 {
                return Err(JournalError::DataMismatch {
                    path: data_path,
                    problem,
                    live,
                });
            }
            // Nothing refers to its bytes: replace it.
            tracing::info!(
                "G3 data file {} {problem}: recreating it",
                data_path.display()
            );
            g3.remove(DATA_FILE).map_err(super::io_at(&data_path))?;
            OpenMode::CreateNew
        }
    };
    let data = Arc::new(DiskMemory::open_in(g3, DATA_FILE, opts.layout, mode)?);
    let all = std::mem::take(&mut recovery.records);
    let mut records = all.clone();
    let mut dropped_verify = 0;
    if dropped_missing_data > 0 {
        records.clear();
    } else if opts.verify_full && !records.is_empty() {
        let (ok, bad) = verify_full(&records, &*data);
        dropped_verify = bad.len() as u64;
        records = ok;
    }
    // The group journal starts from every live record of the journal; those
    // not restored are withdrawn durably now (their slots will be rewritten).
    let journal = GroupJournal::start(journal, &all, data.clone(), opts.ack_log)?;
    if records.len() < all.len() {
        let keep: Vec<_> = records.iter().map(|r| r.slot).collect();
        journal.retain_slots(&keep);
    }
    Ok(G3Open {
        data,
        journal,
        records,
        recovery,
        dropped_verify,
        dropped_missing_data,
        data_created: mode == OpenMode::CreateNew,
        reset: None,
    })
}
