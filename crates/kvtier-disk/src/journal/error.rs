//! Errors of the G3 journal and of opening a G3 directory. None names a
//! command-line flag: a program adds its own remedy to the typed variant.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::header::{show, HeaderField};

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
        "G3 directory {dir} is in use: another writer holds its lock (another kvtier process, \
         or another open in this process); only one writer may open a G3 directory"
    )]
    Locked {
        /// The G3 directory.
        dir: PathBuf,
    },
    /// The journal was written for another G3 configuration.
    #[error(
        "G3 journal {path} was written with {field} = {}, expected {}; refusing to reuse it",
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
    #[error("G3 journal {path} has an unreadable header ({reason}); refusing to reuse it")]
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
    /// The G3 data file does not fit the journal (another size than its
    /// recorded blocks need, or not a regular file) while the journal still
    /// names blocks in it.
    #[error("G3 data file {path} {problem}, while the journal names {live} blocks in it; refusing to reuse it")]
    DataMismatch {
        /// The data file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// Live records in the journal.
        live: u64,
    },
    /// Group commit stopped persisting after its first failed commit.
    #[error("G3 journal {path} stopped persisting after a failed commit: {cause}")]
    Stopped {
        /// The journal file.
        path: PathBuf,
        /// The failure that stopped it.
        cause: String,
    },
    /// The data file could not be created or opened.
    #[error(transparent)]
    Data(#[from] crate::DiskError),
}

impl JournalError {
    /// True for the errors a reset (discarding the directory's contents)
    /// resolves: another identity, an unreadable header, a data file that
    /// does not fit, a file that is not a regular file.
    pub fn is_resettable(&self) -> bool {
        match self {
            JournalError::Mismatch { .. }
            | JournalError::BadHeader { .. }
            | JournalError::DataMismatch { .. } => true,
            JournalError::Io { source, .. } => source.kind() == io::ErrorKind::InvalidInput,
            JournalError::Data(crate::DiskError::WrongSize { .. })
            | JournalError::Data(crate::DiskError::Open { .. }) => true,
            _ => false,
        }
    }
}
