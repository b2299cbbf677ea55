//! Job bookkeeping: ids in flight, finished results, and waiting for all of
//! them ([`JobTable::drain`]).

use crate::engine::error::EngineError;
use parking_lot::{Condvar, Mutex};
use std::collections::HashSet;

/// The outcome of one store or load job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobResult {
    /// The caller's job id.
    pub job: u64,
    /// True if every key succeeded.
    pub ok: bool,
    /// Per key (in submission order): stored / loaded.
    pub ok_keys: Vec<bool>,
    /// Bytes moved (blocks actually copied, times the block size).
    pub bytes: u64,
    /// Seconds from submission to completion.
    pub seconds: f64,
}

#[derive(Default)]
struct State {
    in_flight: HashSet<u64>,
    finished: Vec<JobResult>,
}

/// Jobs in flight and finished.
#[derive(Default)]
pub struct JobTable {
    state: Mutex<State>,
    idle: Condvar,
}

impl JobTable {
    /// Register `job` as in flight; refused while a job with that id is.
    pub fn begin(&self, job: u64) -> Result<(), EngineError> {
        if !self.state.lock().in_flight.insert(job) {
            return Err(EngineError::DuplicateJob(job));
        }
        Ok(())
    }

    /// Forget `job` without a result (its submission failed).
    pub fn abort(&self, job: u64) {
        let mut s = self.state.lock();
        s.in_flight.remove(&job);
        if s.in_flight.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Record a finished job.
    pub fn finish(&self, result: JobResult) {
        let mut s = self.state.lock();
        s.in_flight.remove(&result.job);
        s.finished.push(result);
        if s.in_flight.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Take every finished result (oldest first).
    pub fn take_finished(&self) -> Vec<JobResult> {
        std::mem::take(&mut self.state.lock().finished)
    }

    /// Jobs in flight.
    pub fn in_flight(&self) -> usize {
        self.state.lock().in_flight.len()
    }

    /// Block until no job is in flight.
    pub fn drain(&self) {
        let mut s = self.state.lock();
        while !s.in_flight.is_empty() {
            self.idle.wait(&mut s);
        }
    }
}
