//! kvtier-disk: the G3 disk tier.
//!
//! * [`DiskMemory`]: one preallocated file per tier or shard (`posix_fallocate`
//!   at open, so a too-small disk is refused at start-up), block id -> file
//!   offset by the [`kvtier_memory::Layout`] arithmetic, mapped with memmap2 and
//!   also reachable by positioned I/O (O_DIRECT where allowed). See the
//!   [`file`] module for flush semantics and what `SIGBUS` means for mappings.
//! * [`DiskCopyEngine`]: host <-> disk transfers on worker threads, positioned
//!   I/O ([`DiskIo::Direct`], the default) or through the mapping
//!   ([`DiskIo::Mmap`]).
//!
//! ```
//! use std::sync::Arc;
//! use kvtier_memory::*;
//! use kvtier_disk::*;
//! let dir = tempfile::tempdir().unwrap();
//! let layout = Layout::contiguous(BlockShape::tiny(), 16).unwrap();
//! let disk: Arc<dyn BlockMemory> =
//!     Arc::new(DiskMemory::open(dir.path().join("g3.kv"), layout, OpenMode::CreateNew).unwrap());
//! let host = Arc::new(HostMemory::new(layout).unwrap());
//! host.write_block(0, &[9u8; 512]).unwrap();
//! let h: Arc<dyn BlockMemory> = host.clone();
//! let engine = DiskCopyEngine::new(DiskIo::default(), 2).unwrap();
//! engine.copy_blocks(&h, &disk, &[(0, 5)]).unwrap().wait().unwrap();
//! engine.copy_blocks(&disk, &h, &[(5, 1)]).unwrap().wait().unwrap();
//! assert_eq!(host.read_block(1).unwrap(), vec![9u8; 512]);
//! ```

pub mod engine;
pub mod file;
pub mod journal;
mod sys;

pub use engine::{DiskCopyEngine, DiskIo};
pub use file::{DiskError, DiskMemory, OpenMode};
pub use journal::{
    open_g3, verify_full, Entry, G3Dir, G3Header, G3Open, G3Options, GroupJournal, Journal,
    JournalError, OnMismatch, Record, Recovery,
};
