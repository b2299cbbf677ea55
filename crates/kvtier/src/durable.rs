//! A persistent G3 directory: the journal of `kvtier-disk` behind the offload
//! engine's [`G3Journal`] hooks, with group commit.
//!
//! - `stored` buffers records (cheap, called on the cache's tasks);
//! - a committer thread flushes every [`COMMIT_INTERVAL`]: `msync` +
//!   `fdatasync` of the data file first (covering both disk I/O modes), then the records are appended and the journal
//!   `fdatasync`ed (the durability contract of `kvtier_disk::journal`);
//! - `removed` (a G3 eviction, just before the slot is rewritten) flushes
//!   synchronously, pending stores included, so a slot whose record was
//!   acknowledged is never overwritten while that record still claims it:
//!   everything acknowledged is recovered intact;
//! - the journal is compacted when it holds more than
//!   [`COMPACT_FACTOR`] x the live records (plus slack).
//!
//! An optional *ack log* gets one line per commit: the journal's length and
//! the number of live records acknowledged (for crash tests: after a
//! `SIGKILL`, recovery must find every acknowledged record except those a
//! later, persisted removal took away).

use kvtier_disk::journal::{Entry, G3Header, Journal, JournalError, OnMismatch, Record, Recovery};
use kvtier_disk::DiskMemory;
use kvtier_logical::{BlockSpec, SequenceHash, SlotId};
use kvtier_memory::{BlockShape, LayoutKind};
use kvtier_offload::{DurableEntry, G3Journal, JournalError as HookError};
use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often buffered records are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(20);
/// Compact when the journal holds more than this many times the live records.
pub const COMPACT_FACTOR: u64 = 4;

/// Identity of a G3 directory's contents: block shape and arrangement.
/// Two configurations with different fingerprints never read each other's
/// blocks as KV.
pub fn layout_fingerprint(shape: &BlockShape, kind: LayoutKind) -> u64 {
    let mut b = Vec::with_capacity(48);
    for v in [
        shape.num_layers,
        shape.block_size,
        shape.kv_heads,
        shape.head_dim,
        shape.dtype_bytes,
        match kind {
            LayoutKind::FullyContiguous => 1,
            LayoutKind::LayerSeparate => 2,
        },
    ] {
        b.extend_from_slice(&(v as u64).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&b)
}

struct State {
    journal: Journal,
    pending: Vec<Entry>,
    /// Live record per slot, as of the last `stored` / `removed`.
    live: Vec<Option<Record>>,
    live_count: u64,
    ack: Option<std::fs::File>,
    error: Option<String>,
    stop: bool,
}

/// The persistent G3 journal with group commit. Create with [`DiskJournal::open`].
pub struct DiskJournal {
    state: Mutex<State>,
    wake: Condvar,
    data: Arc<DiskMemory>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn to_record(e: &DurableEntry) -> Record {
    Record {
        slot: e.slot,
        hash: e.spec.hash.0,
        parent: e.spec.parent.0,
        position: e.spec.position,
        checksum: e.checksum,
    }
}

/// The recovered records as the offload engine's restore entries.
pub fn to_entries(records: &[Record]) -> Vec<DurableEntry> {
    records
        .iter()
        .map(|r| DurableEntry {
            slot: r.slot,
            spec: BlockSpec {
                hash: SequenceHash(r.hash),
                parent: SequenceHash(r.parent),
                position: r.position,
            },
            checksum: r.checksum,
        })
        .collect()
}

impl DiskJournal {
    /// Open (or create) the journal in `dir` for `header`, recover it, and
    /// start the committer. `ack_log`, if given, receives the acknowledged
    /// live count after every commit.
    pub fn open(
        dir: &Path,
        header: &G3Header,
        on_mismatch: OnMismatch,
        data: Arc<DiskMemory>,
        ack_log: Option<&Path>,
    ) -> Result<(Arc<DiskJournal>, Recovery), JournalError> {
        let (journal, recovery) = Journal::open(dir, header, on_mismatch)?;
        let mut live = vec![None; header.num_blocks as usize];
        for r in &recovery.records {
            live[r.slot as usize] = Some(*r);
        }
        let ack = match ack_log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| JournalError::Io {
                        path: p.to_path_buf(),
                        source,
                    })?,
            ),
            None => None,
        };
        let j = Arc::new(DiskJournal {
            state: Mutex::new(State {
                journal,
                pending: Vec::new(),
                live_count: recovery.records.len() as u64,
                live,
                ack,
                error: None,
                stop: false,
            }),
            wake: Condvar::new(),
            data,
            committer: Mutex::new(None),
        });
        let weak = Arc::downgrade(&j);
        let h = std::thread::Builder::new()
            .name("kvtier-g3-commit".into())
            .spawn(move || loop {
                let Some(j) = weak.upgrade() else { return };
                let mut st = j.state.lock();
                if st.stop {
                    return;
                }
                j.wake.wait_for(&mut st, COMMIT_INTERVAL);
                if !st.pending.is_empty() {
                    j.flush_locked(&mut st);
                }
                let stop = st.stop;
                drop(st);
                drop(j);
                if stop {
                    return;
                }
            })
            .map_err(|source| JournalError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        *j.committer.lock() = Some(h);
        Ok((j, recovery))
    }

    /// Data first, then records: the journal's durability contract.
    fn flush_locked(&self, st: &mut State) {
        if st.error.is_some() {
            st.pending.clear();
            return;
        }
        let entries = std::mem::take(&mut st.pending);
        let r = self
            .data
            .flush()
            .map_err(|e| e.to_string())
            .and_then(|_| st.journal.append(&entries).map_err(|e| e.to_string()))
            .and_then(|_| st.journal.commit().map_err(|e| e.to_string()));
        match r {
            Ok(_) => {
                Self::ack(st, "");
                let live = st.live_count;
                let total = st.journal.entries_since_compaction();
                if total > COMPACT_FACTOR * live + 4096 {
                    let records: Vec<Record> = st.live.iter().flatten().copied().collect();
                    Self::ack(st, "compact");
                    match st.journal.compact(&records) {
                        Ok(()) => Self::ack(st, ""),
                        Err(e) => tracing::warn!("G3 journal compaction failed: {e}"),
                    }
                }
            }
            Err(e) => {
                tracing::error!("G3 journal commit failed, G3 stops persisting: {e}");
                st.error = Some(e);
            }
        }
    }

    /// One ack-log line: `<journal bytes> <live records>` after a commit, or
    /// a bare marker (`compact`) before a compaction rewrites the file.
    fn ack(st: &mut State, marker: &str) {
        let (len, live) = (st.journal.len_bytes(), st.live_count);
        if let Some(f) = &mut st.ack {
            let _ = if marker.is_empty() {
                writeln!(f, "{len} {live}")
            } else {
                writeln!(f, "{marker}")
            };
        }
    }

    /// Forget (durably) every live record whose slot is not in `keep`: the
    /// records recovery did not restore (failed verification, duplicate
    /// hash, missing data). Their slots are free in the store and will be
    /// rewritten, so the journal must stop claiming them first. Returns how
    /// many were removed.
    pub fn retain_slots(&self, keep: &[SlotId]) -> u64 {
        let mut st = self.state.lock();
        let mut kept = vec![false; st.live.len()];
        for &s in keep {
            if let Some(k) = kept.get_mut(s as usize) {
                *k = true;
            }
        }
        let gone: Vec<(u32, u128)> = st
            .live
            .iter_mut()
            .zip(&kept)
            .enumerate()
            .filter(|(_, (r, k))| r.is_some() && !**k)
            .map(|(slot, (r, _))| (slot as u32, r.take().expect("filtered on is_some").hash))
            .collect();
        let removed = gone.len() as u64;
        st.live_count -= removed;
        st.pending.extend(
            gone.into_iter()
                .map(|(slot, hash)| Entry::Removed { slot, hash }),
        );
        if removed > 0 {
            self.flush_locked(&mut st);
        }
        removed
    }

    /// Live records as of now (acknowledged or buffered).
    pub fn live(&self) -> u64 {
        self.state.lock().live_count
    }
}

impl G3Journal for DiskJournal {
    fn stored(&self, entries: &[DurableEntry]) -> Result<(), HookError> {
        let mut st = self.state.lock();
        if let Some(e) = &st.error {
            return Err(e.clone().into());
        }
        for e in entries {
            let r = to_record(e);
            let slot = &mut st.live[e.slot as usize];
            if slot.is_none() {
                st.live_count += 1;
            }
            st.live[e.slot as usize] = Some(r);
            st.pending.push(Entry::Stored(r));
        }
        Ok(())
    }

    fn removed(&self, entries: &[(SlotId, SequenceHash)]) {
        let mut st = self.state.lock();
        for &(slot, hash) in entries {
            if st.live[slot as usize].take().is_some() {
                st.live_count -= 1;
            }
            st.pending.push(Entry::Removed { slot, hash: hash.0 });
        }
        // The slots are about to be rewritten: their removal must be durable
        // first.
        self.flush_locked(&mut st);
    }

    /// Commit everything buffered now, and stop the committer.
    fn close(&self) -> Result<(), HookError> {
        {
            let mut st = self.state.lock();
            if !st.pending.is_empty() {
                self.flush_locked(&mut st);
            }
            st.stop = true;
            self.wake.notify_all();
            if let Some(e) = &st.error {
                return Err(e.clone().into());
            }
        }
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        Ok(())
    }
}

impl Drop for DiskJournal {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if !st.pending.is_empty() {
            self.flush_locked(&mut st);
        }
        st.stop = true;
    }
}
