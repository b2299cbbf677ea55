//! Group commit for a running cache: a [`Journal`] behind a buffer and a
//! committer thread.
//!
//! - [`GroupJournal::stored`] buffers records (cheap, called on the cache's
//!   tasks);
//! - the committer flushes every [`COMMIT_INTERVAL`]: `msync` + `fdatasync`
//!   of the data file first (covering both disk I/O modes), then the records
//!   are appended and the journal `fdatasync`ed (the durability contract of
//!   [`crate::journal`]);
//! - [`GroupJournal::removed`] (a G3 eviction, just before the slot is
//!   rewritten) flushes synchronously, pending stores included, so a slot
//!   whose record was acknowledged is never overwritten while that record
//!   still claims it: everything acknowledged is recovered intact. Once
//!   persistence stopped a removal cannot be made durable, so `removed`
//!   fails and the caller must leave the slot alone;
//! - the journal is compacted when it holds more than [`COMPACT_FACTOR`] x
//!   the live records (plus slack).
//!
//! The first failed commit (a full disk, an I/O error) stops persistence: the
//! error is kept, every later [`GroupJournal::stored`], [`GroupJournal::removed`],
//! [`GroupJournal::check`] and [`GroupJournal::close`] returns
//! [`JournalError::Stopped`] naming it, and
//! nothing is logged here (the caller reports it once).
//!
//! An optional *ack log* gets one line per commit: the journal's length and
//! the number of live records acknowledged (for crash tests: after a
//! `SIGKILL`, recovery must find every acknowledged record except those a
//! later, persisted removal took away).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvtier_logical::{SequenceHash, SlotId};
use parking_lot::{Condvar, Mutex};

use super::{Entry, Journal, JournalError, Record};
use crate::DiskMemory;

/// How often buffered records are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(20);
/// Compact when the journal holds more than this many times the live records.
pub const COMPACT_FACTOR: u64 = 4;

struct State {
    journal: Journal,
    pending: Vec<Entry>,
    /// Live record per slot, as of the last `stored` / `removed`.
    live: Vec<Option<Record>>,
    live_count: u64,
    /// `live_count` as of the last successful commit: what a restart recovers.
    durable_live: u64,
    ack: Option<std::fs::File>,
    /// The first commit failure: persistence stopped there.
    error: Option<String>,
    stop: bool,
}

/// The persistent G3 journal with group commit. Create with
/// [`GroupJournal::start`].
pub struct GroupJournal {
    state: Mutex<State>,
    wake: Condvar,
    data: Arc<DiskMemory>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl GroupJournal {
    /// Run `journal` (whose live records are `recovered`) with group commit:
    /// start the committer thread. `data` is the data file synced before each
    /// commit; `ack_log`, if given, receives the acknowledged live count after
    /// every commit.
    pub fn start(
        journal: Journal,
        recovered: &[Record],
        data: Arc<DiskMemory>,
        ack_log: Option<&Path>,
    ) -> Result<Arc<GroupJournal>, JournalError> {
        let mut live = vec![None; journal.header().num_blocks as usize];
        for r in recovered {
            live[r.slot as usize] = Some(*r);
        }
        let ack = match ack_log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|source| JournalError::Io {
                        path: p.to_path_buf(),
                        source,
                    })?,
            ),
            None => None,
        };
        let dir = journal.dir().path().to_path_buf();
        let j = Arc::new(GroupJournal {
            state: Mutex::new(State {
                journal,
                pending: Vec::new(),
                live_count: recovered.len() as u64,
                durable_live: recovered.len() as u64,
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
            .map_err(|source| JournalError::Io { path: dir, source })?;
        *j.committer.lock() = Some(h);
        Ok(j)
    }

    fn stopped(st: &State) -> Option<JournalError> {
        st.error.as_ref().map(|cause| JournalError::Stopped {
            path: st.journal.path().to_path_buf(),
            cause: cause.clone(),
        })
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
                st.durable_live = st.live_count;
                Self::ack(st, "");
                let live = st.live_count;
                let total = st.journal.entries_since_compaction();
                if total > COMPACT_FACTOR * live + 4096 {
                    let records: Vec<Record> = st.live.iter().flatten().copied().collect();
                    Self::ack(st, "compact");
                    match st.journal.compact(&records) {
                        Ok(()) => Self::ack(st, ""),
                        // The journal is poisoned: the next commit fails
                        // and stops persistence with this cause.
                        Err(e) => st.error = Some(format!("compaction failed: {e}")),
                    }
                }
            }
            Err(e) => st.error = Some(e),
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

    /// Blocks whose bytes are now in their G3 slots: buffered for the next
    /// commit. Fails with [`JournalError::Stopped`] once persistence stopped,
    /// and with [`JournalError::SlotOutOfRange`] for a slot outside the data
    /// file (nothing buffered then).
    pub fn stored(&self, records: &[Record]) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        if let Some(e) = Self::stopped(&st) {
            return Err(e);
        }
        let n = st.live.len() as u64;
        if let Some(r) = records.iter().find(|r| r.slot as u64 >= n) {
            return Err(JournalError::SlotOutOfRange {
                slot: r.slot,
                num_blocks: n,
            });
        }
        for r in records {
            let slot = &mut st.live[r.slot as usize];
            if slot.is_none() {
                st.live_count += 1;
            }
            st.live[r.slot as usize] = Some(*r);
            st.pending.push(Entry::Stored(*r));
        }
        Ok(())
    }

    /// Blocks no longer in G3 (evicted or withdrawn); their slots are about
    /// to be rewritten, so the removal is committed before this returns.
    ///
    /// Fails with [`JournalError::Stopped`] when the removal could not be
    /// made durable (persistence stopped before or during this call): a
    /// record on disk may still claim those slots, so the caller must not
    /// rewrite them (the next start would find other bytes under the old
    /// records).
    pub fn removed(&self, entries: &[(SlotId, SequenceHash)]) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        for &(slot, hash) in entries {
            if let Some(l) = st.live.get_mut(slot as usize) {
                if l.take().is_some() {
                    st.live_count -= 1;
                }
                st.pending.push(Entry::Removed { slot, hash });
            }
        }
        self.flush_locked(&mut st);
        Self::stopped(&st).map_or(Ok(()), Err)
    }

    /// `Ok` while persistence runs; [`JournalError::Stopped`] naming the
    /// cause once a failed commit stopped it. From then on no slot that a
    /// durable record may claim can be freed durably: a cache must stop
    /// rewriting G3 slots.
    pub fn check(&self) -> Result<(), JournalError> {
        Self::stopped(&self.state.lock()).map_or(Ok(()), Err)
    }

    /// Commit everything buffered now, and stop the committer. Returns the
    /// error that stopped persistence, if one did.
    pub fn close(&self) -> Result<(), JournalError> {
        let stopped = {
            let mut st = self.state.lock();
            if !st.pending.is_empty() {
                self.flush_locked(&mut st);
            }
            st.stop = true;
            self.wake.notify_all();
            Self::stopped(&st)
        };
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        stopped.map_or(Ok(()), Err)
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
        let gone: Vec<(SlotId, SequenceHash)> = st
            .live
            .iter_mut()
            .zip(&kept)
            .enumerate()
            .filter(|(_, (r, k))| r.is_some() && !**k)
            .map(|(slot, (r, _))| {
                (
                    slot as SlotId,
                    r.take().expect("filtered on is_some").spec.hash,
                )
            })
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

    /// Live records as of the last successful commit: what the next open
    /// recovers (lower than [`GroupJournal::live`] once persistence stopped).
    pub fn durable_live(&self) -> u64 {
        self.state.lock().durable_live
    }

    /// The failure that stopped persistence, if one did (what the disk holds
    /// then is what the next start recovers).
    pub fn error(&self) -> Option<String> {
        self.state.lock().error.clone()
    }
}

impl Drop for GroupJournal {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if !st.pending.is_empty() {
            self.flush_locked(&mut st);
        }
        st.stop = true;
    }
}
