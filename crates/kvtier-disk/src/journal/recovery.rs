//! Recovery: opening a journal, checking its header, replaying its records
//! (latest per slot wins), and cutting a torn or corrupt tail.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use super::compact::write_fresh;
use super::format::{
    decode_entry, decode_header, header_seed, sum_ok, Decoded, Entry, Record, RECORD_BYTES,
};
use super::header::{check_header, show, G3Header, OnMismatch};
use super::lock::{Create, G3Dir};
use super::{io_at, Journal, JournalError, JOURNAL_FILE, JOURNAL_TMP_FILE};

/// Read chunk for replay (a multiple of [`RECORD_BYTES`]).
pub(crate) const CHUNK: usize = 4 << 20;

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

/// Latest-record-per-slot replay state, without per-record allocation.
pub(crate) struct Replay {
    /// Records in journal order, superseded ones included until squeezed: a
    /// record at index `i` is live iff `by_slot[slot] == i + 1`.
    pub(crate) recs: Vec<Record>,
    /// slot -> index in `recs` + 1 (0 = empty); grown on demand up to `cap`.
    by_slot: Vec<u32>,
    pub(crate) cap: usize,
    dead: usize,
}

impl Replay {
    pub(crate) fn new(capacity: usize, num_blocks: u64) -> Self {
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
    pub(crate) fn apply(&mut self, e: Entry) {
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
    pub(crate) fn squeeze(&mut self) {
        self.retain_live();
        for (i, r) in self.recs.iter().enumerate() {
            self.by_slot[r.slot as usize] = i as u32 + 1;
        }
        self.dead = 0;
    }
    pub(crate) fn finish(mut self) -> Vec<Record> {
        self.retain_live();
        self.recs
    }
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
    /// Open or create `DIR/g3.journal`, taking the exclusive lock on `DIR`
    /// itself (held until the journal is dropped; a second open fails with
    /// [`JournalError::Locked`], also within one process). Replays every
    /// valid record (latest per slot wins), truncates a torn or corrupt tail,
    /// and removes a leftover compaction tmp file. `DIR` is created (`0700`)
    /// if missing.
    pub fn open(
        dir: &std::path::Path,
        header: &G3Header,
        on_mismatch: OnMismatch,
    ) -> Result<(Journal, Recovery), JournalError> {
        let dir = Arc::new(G3Dir::open(dir)?);
        Journal::open_in(dir, header, on_mismatch)
    }

    /// [`Journal::open`] in a directory already opened and locked. The
    /// journal keeps `dir` (and so the lock) while it lives.
    pub fn open_in(
        dir: Arc<G3Dir>,
        header: &G3Header,
        on_mismatch: OnMismatch,
    ) -> Result<(Journal, Recovery), JournalError> {
        let t0 = Instant::now();
        let path = dir.join(JOURNAL_FILE);
        if dir
            .remove(JOURNAL_TMP_FILE)
            .map_err(io_at(&dir.join(JOURNAL_TMP_FILE)))?
        {
            dir.sync().map_err(io_at(dir.path()))?;
        }
        let mut rec = Recovery::default();
        let fresh = |generation: u64, rec: Recovery| -> Result<(Journal, Recovery), JournalError> {
            let (file, len) = write_fresh(&dir, header, generation, &[])?;
            Ok((
                Journal {
                    dir: dir.clone(),
                    path: dir.join(JOURNAL_FILE),
                    file,
                    header: *header,
                    generation,
                    seed: header_seed(header, generation),
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
        let mut file = match dir.open_file(JOURNAL_FILE, Create::No, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                rec.created = true;
                return fresh(0, rec);
            }
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput && on_mismatch == OnMismatch::Reset =>
            {
                // A link, FIFO or directory in the journal's place: remove
                // the name (never what a link points at) and start anew.
                rec.reset = Some(format!("{} {e}", path.display()));
                if dir.remove(JOURNAL_FILE).is_err() {
                    return Err(JournalError::Io { path, source: e });
                }
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
                dir,
                path,
                file,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::tests::rec;
    use kvtier_logical::SequenceHash;

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
        let removed = |slot, h| Entry::Removed {
            slot,
            hash: SequenceHash(h),
        };
        r.apply(Entry::Stored(rec(1, 10)));
        r.apply(Entry::Stored(rec(2, 20)));
        r.apply(Entry::Stored(rec(1, 11)));
        r.apply(removed(2, 20));
        r.apply(removed(5, 1));
        r.apply(Entry::Stored(rec(3, 30)));
        r.squeeze();
        r.apply(Entry::Stored(rec(2, 21)));
        assert_eq!(r.finish(), vec![rec(1, 11), rec(3, 30), rec(2, 21)]);
    }
}
