//! Durable G3 index: a crash-consistent, append-only journal of which sequence
//! hash lives in which slot of the G3 data file, kept in the G3 directory
//! beside the data file (`DIR/g3.journal`; the directory itself is locked).
//!
//! Modules, one idea each: [`format`] (the record format), [`header`] (the
//! directory's identity), [`recovery`] (open and replay), [`compact`]
//! (compaction), [`lock`] (the locked directory handle, symlink-safe opens),
//! [`verify`] (full verification), [`group`] (group commit for a running
//! cache), [`dir`] (opening a whole G3 directory: data file and journal,
//! resets and size changes).
//!
//! # On-disk format (`KVG3JNL1`, all integers little-endian)
//! The file is a 64-byte header followed by 64-byte entry records. Checksums
//! are xxh3-64 (`xxhash-rust`).
//!
//! Header (64 bytes):
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..8   | magic `KVG3JNL1` (the `1` is the record encoding) |
//! | 8..12  | `format_version` (u32, caller-defined G3 directory format) |
//! | 12..16 | zero |
//! | 16..24 | `layout_fingerprint` (u64) |
//! | 24..32 | `salt` (u64) |
//! | 32..40 | `num_blocks` (u64) |
//! | 40..48 | generation (u64, +1 at every compaction / reset) |
//! | 48..56 | zero |
//! | 56..64 | xxh3-64 of bytes 0..56 |
//!
//! Entry record (64 bytes):
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0      | kind: 1 = Stored, 2 = Removed |
//! | 1..4   | zero |
//! | 4..8   | slot (u32, must be `< num_blocks`) |
//! | 8..24  | sequence hash (u128) |
//! | 24..40 | parent hash (u128; zero for Removed) |
//! | 40..44 | position (u32; zero for Removed) |
//! | 44..48 | zero |
//! | 48..56 | block checksum: xxh3-64 of the block's bytes, regions in layer order (zero for Removed) |
//! | 56..64 | record checksum: xxh3-64 of bytes 0..56, seeded with the header's checksum |
//!
//! Seeding each record's checksum with the header checksum ties records to
//! their journal generation: a record copied from another journal (or left from
//! an older generation) never validates.
//!
//! # Replay
//! Records are replayed in file order; the latest record for a slot wins. A
//! `Stored` for slot `s` supersedes any earlier one; a `Removed` for `s` empties
//! the slot whatever hash it names (emptying is always safe: the worst case is a
//! cache miss). [`Recovery::records`] lists the live records ordered by the
//! position of their (latest) `Stored` record in the journal, oldest first.
//!
//! # Damage
//! * A partial record at the end of the file (a torn write) is dropped and
//!   counted in [`Recovery::dropped_torn`].
//! * A complete record whose checksum fails, with no valid record after it, is
//!   also a torn tail (a multi-page write can persist out of order): it and every
//!   record after it count as torn.
//! * A bad record followed by at least one valid record is a hole in the middle,
//!   as is a record whose checksum passes but whose content is invalid (unknown
//!   kind, nonzero reserved bytes, slot `>= num_blocks`). The journal is not
//!   trusted past a hole: replay stops there and every complete record from the
//!   hole to the end counts in [`Recovery::dropped_corrupt`].
//!
//! In every case the file is truncated after the last record replayed (and
//! `fdatasync`ed) so that new appends follow valid records. A header that
//! cannot be read (short file, wrong magic, bad checksum) is refused with
//! [`JournalError::BadHeader`]; a header for another directory configuration is
//! refused with [`JournalError::Mismatch`] naming the field. With
//! [`OnMismatch::Reset`] both are instead discarded and the journal starts empty
//! (every G3 slot free: the data file's old bytes are simply never referenced).
//!
//! # Durability contract
//! 1. The caller writes a block's bytes into the data file and makes them
//!    durable (`fdatasync` of the data file, e.g. [`crate::DiskMemory::sync_data`]
//!    or `flush_range`) **before** it appends and commits the `Stored` record
//!    naming that block.
//! 2. [`Journal::commit`] returns only after the records are written and the
//!    journal is `fdatasync`ed. Every acknowledged record therefore points at
//!    durable bytes; a crash loses only records whose commit had not returned
//!    (and those records' blocks are just free space after recovery).
//! 3. A slot overwritten after the last acknowledged record (new data written,
//!    crash before its new record was committed) still has its *old* record,
//!    whose block checksum no longer matches: the reader verifies the checksum
//!    on use (or up front with [`verify_full`]) and treats a mismatch as a miss,
//!    so such bytes are never served.
//! 4. Removing a block: commit the `Removed` record before reusing the slot for
//!    other data if the reuse must not be observed as a stale hit (not needed
//!    for safety, by 3, only to avoid a wasted verification).
//! 5. If a write or `fdatasync` of the journal fails, the journal is poisoned
//!    ([`JournalError::Poisoned`] for later appends/commits) because what
//!    reached the disk is unknown; a successful [`Journal::compact`] (a fresh
//!    file) clears it, or the caller reopens.
//!
//! Compaction writes `g3.journal.tmp` (header + live records), `fsync`s it,
//! renames it over `g3.journal` and `fsync`s the directory: a crash at any point
//! leaves either the old or the new journal, and a leftover tmp file is removed
//! by the next [`Journal::open`].
//!
//! # Locking
//! [`Journal::open`] takes `flock(LOCK_EX | LOCK_NB)` on the G3 directory's
//! own descriptor and holds it until the [`Journal`] is dropped (see [`lock`]).
//! A second open of the same directory fails with [`JournalError::Locked`]
//! both from another process and from the same process. The lock is
//! advisory: it only excludes other kvtier writers.
pub mod compact;
pub mod dir;
pub mod error;
pub mod format;
pub mod group;
pub mod header;
pub mod lock;
pub mod recovery;
pub mod verify;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use dir::{open_g3, G3Open, G3Options};
pub use error::JournalError;
pub use format::{Entry, Record, RECORD_BYTES};
pub use group::GroupJournal;
pub use header::{G3Header, HeaderField, OnMismatch, FORMAT_VERSION};
/// The fingerprint a G3 header holds ([`G3Header::layout_fingerprint`]).
pub use kvtier_memory::layout_fingerprint;
pub use lock::G3Dir;
pub use recovery::Recovery;
pub use verify::{verify_full, verify_full_with};

use format::encode_entry;

/// Journal file name inside the G3 directory.
pub const JOURNAL_FILE: &str = "g3.journal";
/// Temporary file written by compaction / creation, renamed over [`JOURNAL_FILE`].
pub const JOURNAL_TMP_FILE: &str = "g3.journal.tmp";
/// Data file name inside the G3 directory.
pub const DATA_FILE: &str = "g3.blocks";
/// Lock file of earlier versions (the directory itself is locked now); a
/// reset removes it with the other files kvtier owns.
pub const LEGACY_LOCK_FILE: &str = "g3.lock";

/// The G3 index journal of one directory. Holds the directory's lock while it
/// lives. See the module docs for the format and the durability contract.
pub struct Journal {
    dir: Arc<G3Dir>,
    path: PathBuf,
    file: File,
    header: G3Header,
    generation: u64,
    seed: u64,
    /// Bytes of the file holding valid, durable data (header + records).
    len: u64,
    /// Entry records in the file.
    entries: u64,
    pending: Vec<u8>,
    poisoned: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("generation", &self.generation)
            .field("entries", &self.entries)
            .field("pending", &(self.pending.len() / RECORD_BYTES))
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

pub(crate) fn io_at(path: &Path) -> impl Fn(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// Buffer entries (nothing is written until [`Journal::commit`]). Fails
    /// without buffering anything if an entry names a slot `>= num_blocks`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        self.check_poison()?;
        if let Some(e) = entries
            .iter()
            .find(|e| e.slot() as u64 >= self.header.num_blocks)
        {
            return Err(JournalError::SlotOutOfRange {
                slot: e.slot(),
                num_blocks: self.header.num_blocks,
            });
        }
        self.pending.reserve(entries.len() * RECORD_BYTES);
        for e in entries {
            encode_entry(e, self.seed, &mut self.pending);
        }
        Ok(())
    }

    /// Write the buffered entries and `fdatasync` the journal. On return every
    /// entry appended so far is durable. Returns the number of entry records
    /// in the journal file (see [`Journal::entries_since_compaction`]).
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        self.check_poison()?;
        if self.pending.is_empty() {
            return Ok(self.entries);
        }
        let res = self
            .file
            .write_all_at(&self.pending, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = res {
            self.poisoned = true;
            return Err(JournalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += self.pending.len() as u64;
        self.entries += (self.pending.len() / RECORD_BYTES) as u64;
        self.pending.clear();
        Ok(self.entries)
    }

    /// Entry records in the journal file: the live set written by the last
    /// compaction plus every committed entry since (superseded ones included).
    /// Compact when this exceeds k x the live count.
    pub fn entries_since_compaction(&self) -> u64 {
        self.entries
    }

    /// Entries appended but not committed.
    pub fn pending(&self) -> usize {
        self.pending.len() / RECORD_BYTES
    }

    /// Bytes of durable journal (header + committed records).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// The header the journal was opened with.
    pub fn header(&self) -> &G3Header {
        &self.header
    }

    /// Path of the journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked directory the journal lives in.
    pub fn dir(&self) -> &Arc<G3Dir> {
        &self.dir
    }

    fn check_poison(&self) -> Result<(), JournalError> {
        if self.poisoned {
            Err(JournalError::Poisoned {
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }
}
