//! Compaction (and creation): a fresh journal holding only the live set,
//! written to a tmp file, synced, renamed over the journal, and the directory
//! synced, so a crash at any point leaves the old or the new journal.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::format::{encode_entry, encode_header, header_seed, reseal, Entry, Record};
use super::header::G3Header;
use super::lock::{Create, G3Dir};
use super::recovery::CHUNK;
use super::{io_at, Journal, JournalError, JOURNAL_FILE, JOURNAL_TMP_FILE, RECORD_BYTES};

/// Write `header` + `live` to the tmp file, fsync, rename over the journal,
/// fsync the directory. Returns the open journal file and its length.
pub(crate) fn write_fresh(
    dir: &G3Dir,
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
    // A leftover (or planted) name is removed first: the tmp file is always
    // a new regular file, never reached through a link.
    dir.remove(JOURNAL_TMP_FILE).map_err(io_at(&tmp))?;
    let file = dir
        .open_file(JOURNAL_TMP_FILE, Create::New, 0)
        .map_err(io_at(&tmp))?;
    let head = encode_header(header, generation);
    let seed = header_seed(header, generation);
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
    dir.rename(JOURNAL_TMP_FILE, JOURNAL_FILE)
        .map_err(io_at(&dir.join(JOURNAL_FILE)))?;
    dir.sync().map_err(io_at(dir.path()))?;
    Ok((file, off))
}

impl Journal {
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
        let new_seed = header_seed(&self.header, generation);
        // Pending records were sealed with the old seed: re-seal them.
        reseal(&mut self.pending, new_seed);
        self.file = file;
        self.generation = generation;
        self.seed = new_seed;
        self.len = len;
        self.entries = live.len() as u64;
        self.poisoned = false;
        Ok(())
    }
}
