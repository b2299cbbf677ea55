//! Durable G3 index: a crash-consistent, append-only journal of which sequence
//! hash lives in which slot of the G3 data file, kept in the G3 directory
//! beside the data file (`DIR/g3.journal`, locked through `DIR/g3.lock`).
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
//! [`Journal::open`] takes `flock(LOCK_EX | LOCK_NB)` on `DIR/g3.lock` and holds
//! it until the [`Journal`] is dropped. `flock` locks belong to the open file
//! description, so a second open of the same directory fails with
//! [`JournalError::Locked`] both from another process and from the same
//! process. The lock is advisory: it only excludes other `Journal`s.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kvtier_memory::{block_checksum, HostVisible};
use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Journal file name inside the G3 directory.
pub const JOURNAL_FILE: &str = "g3.journal";
/// Temporary file written by compaction / creation, renamed over [`JOURNAL_FILE`].
pub const JOURNAL_TMP_FILE: &str = "g3.journal.tmp";
/// Lock file name inside the G3 directory.
pub const LOCK_FILE: &str = "g3.lock";
/// Default G3 directory format version for [`G3Header::new`].
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header and of every entry record, in bytes.
pub const RECORD_BYTES: usize = 64;

const MAGIC: &[u8; 8] = b"KVG3JNL1";
const KIND_STORED: u8 = 1;
const KIND_REMOVED: u8 = 2;
/// Read chunk for replay (a multiple of [`RECORD_BYTES`]).
const CHUNK: usize = 4 << 20;

/// Identity of a G3 directory: a journal written for another identity is
/// refused (or reset on request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct G3Header {
    /// Caller-defined format version of the G3 directory.
    pub format_version: u32,
    /// Fingerprint of the block layout (model shape, block size, dtype, layout kind).
    pub layout_fingerprint: u64,
    /// Cache salt the sequence hashes were computed with.
    pub salt: u64,
    /// Number of blocks in the data file.
    pub num_blocks: u64,
}

impl G3Header {
    /// A header with [`FORMAT_VERSION`].
    pub fn new(layout_fingerprint: u64, salt: u64, num_blocks: u64) -> Self {
        G3Header {
            format_version: FORMAT_VERSION,
            layout_fingerprint,
            salt,
            num_blocks,
        }
    }
}

/// One live block of the G3 index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Block slot in the data file.
    pub slot: u32,
    /// Sequence hash of the block.
    pub hash: u128,
    /// Sequence hash of the parent block.
    pub parent: u128,
    /// Position of the block in its sequence.
    pub position: u32,
    /// The block's [`kvtier_memory::block_checksum`] (xxh3-64 of its bytes,
    /// regions in layer order).
    pub checksum: u64,
}

/// One journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The slot now holds this block (its bytes are already durable).
    Stored(Record),
    /// The slot is empty.
    Removed {
        /// The slot.
        slot: u32,
        /// Hash of the block removed (kept for diagnostics; replay empties the
        /// slot whatever it holds).
        hash: u128,
    },
}

impl Entry {
    /// The slot the entry names.
    pub fn slot(&self) -> u32 {
        match self {
            Entry::Stored(r) => r.slot,
            Entry::Removed { slot, .. } => *slot,
        }
    }
}

/// What [`Journal::open`] does with a journal written for another
/// [`G3Header`] or with an unreadable header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMismatch {
    /// Refuse with [`JournalError::Mismatch`] / [`JournalError::BadHeader`].
    Refuse,
    /// Discard the journal and start empty with the expected header.
    Reset,
}

/// A header field that can mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderField {
    /// [`G3Header::format_version`].
    FormatVersion,
    /// [`G3Header::layout_fingerprint`].
    LayoutFingerprint,
    /// [`G3Header::salt`].
    Salt,
    /// [`G3Header::num_blocks`].
    NumBlocks,
}

impl std::fmt::Display for HeaderField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderField::FormatVersion => "format_version",
            HeaderField::LayoutFingerprint => "layout_fingerprint",
            HeaderField::Salt => "salt",
            HeaderField::NumBlocks => "num_blocks",
        })
    }
}

fn show(field: HeaderField, v: u64) -> String {
    match field {
        HeaderField::LayoutFingerprint | HeaderField::Salt => format!("{v:#018x}"),
        _ => v.to_string(),
    }
}

/// Errors of the G3 journal.
#[derive(Debug, Error)]
pub enum JournalError {
    /// An I/O operation failed.
    #[error("G3 journal I/O error on {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another open journal holds the directory's lock.
    #[error(
        "G3 directory {dir} is in use: another journal holds {LOCK_FILE} (another kvtier process, \
         or another open in this process); only one writer may open a G3 directory"
    )]
    Locked {
        /// The G3 directory.
        dir: PathBuf,
    },
    /// The journal was written for another G3 configuration.
    #[error(
        "G3 journal {path} was written with {field} = {}, expected {}; refusing to reuse it \
         (reset the G3 tier to discard it)",
        show(*field, *found),
        show(*field, *expected)
    )]
    Mismatch {
        /// The journal file.
        path: PathBuf,
        /// The first field that differs.
        field: HeaderField,
        /// Value in the file.
        found: u64,
        /// Value expected by the caller.
        expected: u64,
    },
    /// The journal's header cannot be read.
    #[error("G3 journal {path} has an unreadable header ({reason}); refusing to reuse it (reset the G3 tier to discard it)")]
    BadHeader {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An entry names a slot outside the data file.
    #[error("G3 journal entry names slot {slot}, the data file has {num_blocks} blocks")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// Blocks in the data file.
        num_blocks: u64,
    },
    /// An earlier write or sync failed; the journal's durable state is unknown.
    #[error("G3 journal {path} is poisoned: an earlier write or fdatasync failed, so what reached the disk is unknown; compact or reopen it")]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },
}

/// What [`Journal::open`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Live records, ordered by the journal position of their latest `Stored`
    /// record (oldest first).
    pub records: Vec<Record>,
    /// Records dropped as a torn tail (partial, or failing their checksum with
    /// nothing valid after them).
    pub dropped_torn: u64,
    /// Complete records dropped at and after a hole in the middle.
    pub dropped_corrupt: u64,
    /// Bytes of journal read.
    pub bytes_read: u64,
    /// Wall time of the replay (open to return), seconds.
    pub seconds: f64,
    /// No journal existed: a new one was created.
    pub created: bool,
    /// The old journal was discarded because of this mismatch or damage
    /// ([`OnMismatch::Reset`]).
    pub reset: Option<String>,
    /// Entry records replayed (valid records in the journal, superseded ones included).
    pub entries_replayed: u64,
}

/// The G3 index journal of one directory. Holds the directory's lock while it
/// lives. See the module docs for the format and the durability contract.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    _lock: File,
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

fn io_at(path: &Path) -> impl Fn(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_header(h: &G3Header, generation: u64) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&h.format_version.to_le_bytes());
    b[16..24].copy_from_slice(&h.layout_fingerprint.to_le_bytes());
    b[24..32].copy_from_slice(&h.salt.to_le_bytes());
    b[32..40].copy_from_slice(&h.num_blocks.to_le_bytes());
    b[40..48].copy_from_slice(&generation.to_le_bytes());
    let sum = xxh3_64(&b[0..56]);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}
fn u128_at(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(b[at..at + 16].try_into().unwrap_or_default())
}

/// Decode a header: (header, generation, seed).
fn decode_header(b: &[u8]) -> Result<(G3Header, u64, u64), String> {
    if b.len() < RECORD_BYTES {
        return Err(format!(
            "file has {} bytes, the header needs {RECORD_BYTES}",
            b.len()
        ));
    }
    if &b[0..8] != MAGIC {
        return Err(format!(
            "bad magic {:02x?}, expected {:02x?} (\"KVG3JNL1\")",
            &b[0..8],
            MAGIC
        ));
    }
    let sum = u64_at(b, 56);
    if xxh3_64(&b[0..56]) != sum {
        return Err("header checksum mismatch".into());
    }
    if u32_at(b, 12) != 0 || u64_at(b, 48) != 0 {
        return Err("nonzero reserved header bytes".into());
    }
    let h = G3Header {
        format_version: u32_at(b, 8),
        layout_fingerprint: u64_at(b, 16),
        salt: u64_at(b, 24),
        num_blocks: u64_at(b, 32),
    };
    Ok((h, u64_at(b, 40), sum))
}

fn encode_entry(e: &Entry, seed: u64, out: &mut Vec<u8>) {
    let mut b = [0u8; RECORD_BYTES];
    match e {
        Entry::Stored(r) => {
            b[0] = KIND_STORED;
            b[4..8].copy_from_slice(&r.slot.to_le_bytes());
            b[8..24].copy_from_slice(&r.hash.to_le_bytes());
            b[24..40].copy_from_slice(&r.parent.to_le_bytes());
            b[40..44].copy_from_slice(&r.position.to_le_bytes());
            b[48..56].copy_from_slice(&r.checksum.to_le_bytes());
        }
        Entry::Removed { slot, hash } => {
            b[0] = KIND_REMOVED;
            b[4..8].copy_from_slice(&slot.to_le_bytes());
            b[8..24].copy_from_slice(&hash.to_le_bytes());
        }
    }
    let sum = xxh3_64_with_seed(&b[0..56], seed);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&b);
}

/// Result of checking one record.
enum Decoded {
    Ok(Entry),
    /// Checksum fails: torn or corrupt depending on what follows.
    BadSum,
    /// Checksum passes but the content is invalid: always corrupt.
    Invalid,
}

fn sum_ok(b: &[u8], seed: u64) -> bool {
    xxh3_64_with_seed(&b[0..56], seed) == u64_at(b, 56)
}

fn decode_entry(b: &[u8], seed: u64, num_blocks: u64) -> Decoded {
    if !sum_ok(b, seed) {
        return Decoded::BadSum;
    }
    if b[1..4] != [0, 0, 0] || b[44..48] != [0, 0, 0, 0] {
        return Decoded::Invalid;
    }
    let slot = u32_at(b, 4);
    if u64::from(slot) >= num_blocks {
        return Decoded::Invalid;
    }
    let hash = u128_at(b, 8);
    match b[0] {
        KIND_STORED => Decoded::Ok(Entry::Stored(Record {
            slot,
            hash,
            parent: u128_at(b, 24),
            position: u32_at(b, 40),
            checksum: u64_at(b, 48),
        })),
        KIND_REMOVED if b[24..56].iter().all(|&x| x == 0) => {
            Decoded::Ok(Entry::Removed { slot, hash })
        }
        _ => Decoded::Invalid,
    }
}

/// Latest-record-per-slot replay state, without per-record allocation.
struct Replay {
    /// Records in journal order, superseded ones included until squeezed: a
    /// record at index `i` is live iff `by_slot[slot] == i + 1`.
    recs: Vec<Record>,
    /// slot -> index in `recs` + 1 (0 = empty); grown on demand up to `cap`.
    by_slot: Vec<u32>,
    cap: usize,
    dead: usize,
}

impl Replay {
    fn new(capacity: usize, num_blocks: u64) -> Self {
        Replay {
            recs: Vec::with_capacity(capacity),
            by_slot: Vec::new(),
            cap: num_blocks.min(1 << 32) as usize,
            dead: 0,
        }
    }
    fn kill(&mut self, slot: u32) {
        let s = slot as usize;
        if s < self.by_slot.len() && self.by_slot[s] != 0 {
            self.by_slot[s] = 0;
            self.dead += 1;
        }
    }
    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Stored(r) => {
                self.kill(r.slot);
                if self.recs.len() >= u32::MAX as usize - 1 {
                    self.squeeze();
                }
                let s = r.slot as usize;
                if s >= self.by_slot.len() {
                    let grow = (s + 1).max(self.by_slot.len() * 2).max(1024);
                    self.by_slot.resize(grow.min(self.cap).max(s + 1), 0);
                }
                self.recs.push(r);
                self.by_slot[s] = self.recs.len() as u32;
            }
            Entry::Removed { slot, .. } => self.kill(slot),
        }
        // Keep memory proportional to the live set on long journals.
        if self.dead > 1 << 20 && self.dead > self.recs.len() / 2 {
            self.squeeze();
        }
    }
    fn retain_live(&mut self) {
        let by_slot = &self.by_slot;
        let mut i = 0u32;
        self.recs.retain(|r| {
            i += 1;
            by_slot[r.slot as usize] == i
        });
    }
    fn squeeze(&mut self) {
        self.retain_live();
        for (i, r) in self.recs.iter().enumerate() {
            self.by_slot[r.slot as usize] = i as u32 + 1;
        }
        self.dead = 0;
    }
    fn finish(mut self) -> Vec<Record> {
        self.retain_live();
        self.recs
    }
}

fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Write `header` + `live` to the tmp file, fsync, rename over the journal,
/// fsync the directory. Returns the open journal file and its length.
fn write_fresh(
    dir: &Path,
    header: &G3Header,
    generation: u64,
    live: &[Record],
) -> Result<(File, u64), JournalError> {
    if let Some(r) = live.iter().find(|r| r.slot as u64 >= header.num_blocks) {
        return Err(JournalError::SlotOutOfRange {
            slot: r.slot,
            num_blocks: header.num_blocks,
        });
    }
    let tmp = dir.join(JOURNAL_TMP_FILE);
    let path = dir.join(JOURNAL_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let head = encode_header(header, generation);
    let seed = u64_at(&head, 56);
    let mut buf = Vec::with_capacity(CHUNK.min((live.len() + 1) * RECORD_BYTES));
    buf.extend_from_slice(&head);
    let mut off = 0u64;
    for r in live {
        encode_entry(&Entry::Stored(*r), seed, &mut buf);
        if buf.len() >= CHUNK {
            file.write_all_at(&buf, off).map_err(io_at(&tmp))?;
            off += buf.len() as u64;
            buf.clear();
        }
    }
    file.write_all_at(&buf, off).map_err(io_at(&tmp))?;
    off += buf.len() as u64;
    file.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    fsync_dir(dir)?;
    Ok((file, off))
}

fn take_lock(dir: &Path) -> Result<File, JournalError> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    // SAFETY: flock on a valid fd owned by `lock`.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            JournalError::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            JournalError::Io {
                path: lock_path,
                source: err,
            }
        });
    }
    Ok(lock)
}

fn check_header(found: &G3Header, expected: &G3Header) -> Option<(HeaderField, u64, u64)> {
    let pairs = [
        (
            HeaderField::FormatVersion,
            found.format_version as u64,
            expected.format_version as u64,
        ),
        (
            HeaderField::LayoutFingerprint,
            found.layout_fingerprint,
            expected.layout_fingerprint,
        ),
        (HeaderField::Salt, found.salt, expected.salt),
        (
            HeaderField::NumBlocks,
            found.num_blocks,
            expected.num_blocks,
        ),
    ];
    pairs.into_iter().find(|(_, f, e)| f != e)
}

/// Read exactly as much as possible into `buf` (stops at EOF).
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Journal {
    /// Open or create `DIR/g3.journal`, taking the exclusive lock on
    /// `DIR/g3.lock` (held until the journal is dropped; a second open fails
    /// with [`JournalError::Locked`], also within one process). Replays every
    /// valid record (latest per slot wins), truncates a torn or corrupt tail,
    /// and removes a leftover compaction tmp file. `DIR` is created if missing.
    pub fn open(
        dir: &Path,
        header: &G3Header,
        on_mismatch: OnMismatch,
    ) -> Result<(Journal, Recovery), JournalError> {
        let t0 = Instant::now();
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = take_lock(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let tmp = dir.join(JOURNAL_TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => fsync_dir(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(JournalError::Io {
                    path: tmp,
                    source: e,
                })
            }
        }
        let mut rec = Recovery::default();
        let fresh = |generation: u64, rec: Recovery| -> Result<(Journal, Recovery), JournalError> {
            let (file, len) = write_fresh(dir, header, generation, &[])?;
            let head = encode_header(header, generation);
            Ok((
                Journal {
                    dir: dir.to_path_buf(),
                    path: dir.join(JOURNAL_FILE),
                    file,
                    _lock: lock.try_clone().map_err(io_at(dir))?,
                    header: *header,
                    generation,
                    seed: u64_at(&head, 56),
                    len,
                    entries: 0,
                    pending: Vec::new(),
                    poisoned: false,
                },
                Recovery {
                    seconds: t0.elapsed().as_secs_f64(),
                    ..rec
                },
            ))
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                rec.created = true;
                return fresh(0, rec);
            }
            Err(e) => return Err(JournalError::Io { path, source: e }),
        };
        let file_len = file.metadata().map_err(io_at(&path))?.len();
        let mut buf = vec![0u8; CHUNK];
        let n = read_full(&mut file, &mut buf[..RECORD_BYTES]).map_err(io_at(&path))?;
        rec.bytes_read = n as u64;
        let (found, generation, seed) = match decode_header(&buf[..n]) {
            Ok(h) => h,
            Err(reason) => {
                return match on_mismatch {
                    OnMismatch::Refuse => Err(JournalError::BadHeader { path, reason }),
                    OnMismatch::Reset => {
                        rec.reset = Some(format!("unreadable header: {reason}"));
                        fresh(0, rec)
                    }
                };
            }
        };
        if let Some((field, f, e)) = check_header(&found, header) {
            return match on_mismatch {
                OnMismatch::Refuse => Err(JournalError::Mismatch {
                    path,
                    field,
                    found: f,
                    expected: e,
                }),
                OnMismatch::Reset => {
                    rec.reset = Some(format!(
                        "written with {field} = {}, expected {}",
                        show(field, f),
                        show(field, e)
                    ));
                    fresh(generation.wrapping_add(1), rec)
                }
            };
        }

        // Replay entry records in large chunks.
        let body = file_len.saturating_sub(RECORD_BYTES as u64);
        let whole = body / RECORD_BYTES as u64;
        let mut replay = Replay::new(whole.min(1 << 24) as usize, header.num_blocks);
        let mut index = 0u64; // complete records seen
        let mut valid_end: Option<u64> = None; // index of first bad record
        let mut bad_invalid = false;
        let mut valid_after_bad = false;
        let mut carry = 0usize;
        loop {
            let got = read_full(&mut file, &mut buf[carry..]).map_err(io_at(&path))?;
            rec.bytes_read += got as u64;
            let avail = carry + got;
            let complete = avail / RECORD_BYTES * RECORD_BYTES;
            for b in buf[..complete].chunks_exact(RECORD_BYTES) {
                if valid_end.is_none() {
                    match decode_entry(b, seed, header.num_blocks) {
                        Decoded::Ok(e) => replay.apply(e),
                        Decoded::BadSum => valid_end = Some(index),
                        Decoded::Invalid => {
                            valid_end = Some(index);
                            bad_invalid = true;
                        }
                    }
                } else if !valid_after_bad && sum_ok(b, seed) {
                    valid_after_bad = true;
                }
                index += 1;
            }
            buf.copy_within(complete..avail, 0);
            carry = avail - complete;
            if got == 0 {
                break;
            }
        }
        let partial = carry > 0;
        let good = valid_end.unwrap_or(index);
        let bad = index - good;
        if bad > 0 {
            if bad_invalid || valid_after_bad {
                rec.dropped_corrupt = bad;
            } else {
                rec.dropped_torn = bad;
            }
        }
        if partial {
            rec.dropped_torn += 1;
        }
        let len = RECORD_BYTES as u64 + good * RECORD_BYTES as u64;
        if len != file_len {
            file.set_len(len).map_err(io_at(&path))?;
            file.sync_all().map_err(io_at(&path))?;
        }
        rec.entries_replayed = good;
        rec.records = replay.finish();
        rec.seconds = t0.elapsed().as_secs_f64();
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                path,
                file,
                _lock: lock,
                header: *header,
                generation,
                seed,
                len,
                entries: good,
                pending: Vec::new(),
                poisoned: false,
            },
            rec,
        ))
    }

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

    /// Replace the journal with a fresh one holding only `live` (as `Stored`
    /// records, in the given order): tmp file + fsync + rename + fsync of the
    /// directory, so a crash leaves the old or the new journal. Entries
    /// appended but not yet committed stay buffered and are written by the
    /// next [`Journal::commit`] after `live` (replaying them again over a live
    /// set that already reflects them is idempotent). Clears a poisoned state;
    /// an I/O failure poisons the journal (retry the compaction or reopen). A
    /// record naming a slot `>= num_blocks` fails with
    /// [`JournalError::SlotOutOfRange`] before anything is written.
    pub fn compact(&mut self, live: &[Record]) -> Result<(), JournalError> {
        let generation = self.generation.wrapping_add(1);
        let (file, len) = match write_fresh(&self.dir, &self.header, generation, live) {
            Ok(x) => x,
            Err(e @ JournalError::SlotOutOfRange { .. }) => return Err(e),
            Err(e) => {
                // The rename may have happened (then our handle is to an
                // unlinked file): no more appends until a compaction succeeds.
                self.poisoned = true;
                return Err(e);
            }
        };
        let head = encode_header(&self.header, generation);
        let new_seed = u64_at(&head, 56);
        // Pending records were sealed with the old seed: re-seal them.
        for rec in self.pending.chunks_exact_mut(RECORD_BYTES) {
            let sum = xxh3_64_with_seed(&rec[0..56], new_seed);
            rec[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        self.file = file;
        self.generation = generation;
        self.seed = new_seed;
        self.len = len;
        self.entries = live.len() as u64;
        self.poisoned = false;
        Ok(())
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

/// `--verify full`: re-read every record's block from `mem` (e.g. a
/// [`crate::DiskMemory`]) and check its checksum. Returns `(ok, bad)`, each in
/// input order; a block that cannot be read counts as bad.
pub fn verify_full(records: &[Record], mem: &dyn HostVisible) -> (Vec<Record>, Vec<Record>) {
    verify_full_with(records, |r| block_checksum(mem, r.slot as usize).ok())
}

/// [`verify_full`] with any block reader: `checksum_of(record)` returns the
/// checksum of the block's current bytes, or `None` if it cannot be read.
pub fn verify_full_with(
    records: &[Record],
    mut checksum_of: impl FnMut(&Record) -> Option<u64>,
) -> (Vec<Record>, Vec<Record>) {
    let mut ok = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for r in records {
        if checksum_of(r) == Some(r.checksum) {
            ok.push(*r);
        } else {
            bad.push(*r);
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(slot: u32, h: u128) -> Record {
        Record {
            slot,
            hash: h,
            parent: h ^ 7,
            position: slot * 2,
            checksum: h as u64 ^ 0xabc,
        }
    }

    #[test]
    fn header_roundtrip_and_damage() {
        let h = G3Header::new(0x1234, 0x55, 1000);
        let b = encode_header(&h, 3);
        let (d, g, s) = decode_header(&b).unwrap();
        assert_eq!((d, g, s), (h, 3, u64_at(&b, 56)));
        for i in 0..RECORD_BYTES {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(decode_header(&c).is_err(), "flip at {i} accepted");
        }
        assert!(decode_header(&b[..63]).is_err());
    }

    #[test]
    fn entry_encoding() {
        let mut v = Vec::new();
        let e = Entry::Stored(rec(9, u128::MAX - 3));
        encode_entry(&e, 77, &mut v);
        encode_entry(&Entry::Removed { slot: 9, hash: 5 }, 77, &mut v);
        assert_eq!(v.len(), 128);
        assert!(matches!(decode_entry(&v[..64], 77, 10), Decoded::Ok(x) if x == e));
        assert!(matches!(
            decode_entry(&v[64..], 77, 10),
            Decoded::Ok(Entry::Removed { slot: 9, hash: 5 })
        ));
        assert!(matches!(decode_entry(&v[..64], 78, 10), Decoded::BadSum));
        assert!(matches!(decode_entry(&v[..64], 77, 9), Decoded::Invalid));
        assert!(matches!(decode_entry(&[0u8; 64], 77, 10), Decoded::BadSum));
    }

    #[test]
    fn replay_squeezes_long_churn() {
        // > 2^20 superseded records triggers the automatic squeeze.
        let n = 2_500_000u32;
        let mut r = Replay::new(0, 1000);
        for i in 0..n {
            r.apply(Entry::Stored(rec(i % 1000, i as u128)));
        }
        assert!(r.recs.len() < n as usize, "squeezed");
        let expect: Vec<Record> = (n - 1000..n).map(|i| rec(i % 1000, i as u128)).collect();
        assert_eq!(r.finish(), expect);
        assert_eq!(Replay::new(0, 5).cap, 5);
    }

    #[test]
    fn replay_semantics() {
        let mut r = Replay::new(0, 100);
        r.apply(Entry::Stored(rec(1, 10)));
        r.apply(Entry::Stored(rec(2, 20)));
        r.apply(Entry::Stored(rec(1, 11)));
        r.apply(Entry::Removed { slot: 2, hash: 20 });
        r.apply(Entry::Removed { slot: 5, hash: 1 });
        r.apply(Entry::Stored(rec(3, 30)));
        r.squeeze();
        r.apply(Entry::Stored(rec(2, 21)));
        assert_eq!(r.finish(), vec![rec(1, 11), rec(3, 30), rec(2, 21)]);
    }
}
