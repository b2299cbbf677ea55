//! [`EngineCore`]: the non-blocking, job-based engine API over kvtier's
//! tiers.
//!
//! Calls from the engine's scheduler thread return at once: `lookup` and
//! `touch` read the stores' indexes, `submit_store` / `submit_load` check
//! their input and hand the job to the core's worker threads, and
//! `poll_finished` collects the outcomes. `drain` waits for every job in
//! flight; `close` drains, flushes everything down to the durable G3 and
//! closes its journal, after which every call is refused.

use crate::engine::buffer::{Chunks, HostBuffer};
use crate::engine::config::EngineOptions;
use crate::engine::error::EngineError;
use crate::engine::events::{EngineEvent, EngineEventSink};
use crate::engine::jobs::{JobResult, JobTable};
use crate::engine::keys::KeyHasher;
use crate::engine::publish;
use crate::engine::transfer::{self, JobInput};
use crate::setup::{self, Built, PersistOptions, RecoveryReport};
use kvtier_logical::{EventKind, SequenceHash, Tier};
use kvtier_offload::TieredCache;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What jobs share with the core (never the runtime itself, so a job's
/// task never drops it).
struct Shared {
    /// The tiers; taken out by `close`, which releases the G3 directory.
    cache: RwLock<Option<TieredCache>>,
    jobs: JobTable,
    block_bytes: usize,
    batch: usize,
    sink: RwLock<Option<Arc<dyn EngineEventSink>>>,
    /// Keys of stored blocks, by hash, while events are on (to name removed
    /// blocks by their engine key).
    keys: Mutex<HashMap<SequenceHash, Vec<u8>>>,
    /// Store batches take turns here to check for room and allocate (see
    /// the transfer module).
    store_gate: transfer::StoreGate,
}

/// Which way a job moves blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// From the engine's chunks into kvtier.
    Store,
    /// From kvtier into the engine's chunks.
    Load,
}

/// kvtier as an engine's storage tier; see the [module docs](self).
pub struct EngineCore {
    shared: Arc<Shared>,
    hasher: KeyHasher,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    closed: AtomicBool,
    stop_events: Arc<AtomicBool>,
    built: Mutex<Option<Built>>,
    recovery: Option<RecoveryReport>,
    /// KV events for routers, when the config has `[events]`.
    publisher: Mutex<Option<kvtier_events::Publisher>>,
}

impl EngineCore {
    /// Build the tiers `options` describe and recover the G3 directory's
    /// blocks. Refused with a clear error when the directory is held by
    /// another open store, or was written under another namespace, block
    /// size or G3 size.
    pub fn open(options: &EngineOptions) -> Result<EngineCore, EngineError> {
        let (cfg, name) = options.resolve()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.offload.threads.clamp(1, 4))
            .thread_name("kvtier-engine")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Worker(format!("cannot start worker threads: {e}")))?;
        let built = {
            let _guard = runtime.enter();
            setup::build(&cfg, &name, true, &PersistOptions::default())?
        };
        let cache = built.cache.clone();
        // G4, the tier shared with other nodes, when the config has `[g4]`.
        runtime.block_on(setup::attach_g4(&cfg, &name, &cache))?;
        let publisher = match &cfg.events {
            Some(events) => {
                let (shape, _) = cfg.block_shape(&name)?;
                let _guard = runtime.enter();
                Some(publish::start(events, &cache, shape.block_size as u32)?)
            }
            None => None,
        };
        let g1 = cache.g1_capacity();
        let recovery = built.recovery.clone();
        let shared = Arc::new(Shared {
            cache: RwLock::new(Some(cache)),
            jobs: JobTable::default(),
            block_bytes: options.block_bytes,
            // A job moves through the staging tier in batches that leave
            // room for other jobs.
            batch: (g1 / 4).clamp(1, 1024),
            sink: RwLock::new(None),
            keys: Mutex::new(HashMap::new()),
            store_gate: transfer::StoreGate::new(cfg.offload.clean_ahead),
        });
        Ok(EngineCore {
            shared,
            hasher: KeyHasher::new(cfg.cache_salt().0),
            runtime: Mutex::new(Some(runtime)),
            closed: AtomicBool::new(false),
            stop_events: Arc::new(AtomicBool::new(false)),
            built: Mutex::new(Some(built)),
            recovery,
            publisher: Mutex::new(publisher),
        })
    }

    /// Where KV events are published, when the config has `[events]`: the
    /// PUB endpoint and the replay endpoint (resolved: a port 0 in the
    /// config is the port the OS chose).
    pub fn events_endpoints(&self) -> Option<(String, Option<String>)> {
        let p = self.publisher.lock();
        let p = p.as_ref()?;
        Some((
            p.endpoint().to_string(),
            p.replay_endpoint().map(String::from),
        ))
    }

    /// Bytes of one block (one chunk).
    pub fn block_bytes(&self) -> usize {
        self.shared.block_bytes
    }

    /// What opening the G3 directory recovered (`None` without a directory).
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// The hasher mapping engine keys to kvtier hashes.
    pub fn hasher(&self) -> KeyHasher {
        self.hasher
    }

    pub(super) fn cache(&self) -> Result<TieredCache, EngineError> {
        self.shared.cache.read().clone().ok_or(EngineError::Closed)
    }

    /// The tiers' counters: blocks moved, dropped, failing verification.
    pub fn cache_metrics(&self) -> Result<kvtier_offload::MetricsSnapshot, EngineError> {
        Ok(self.cache()?.metrics())
    }

    /// Whether [`EngineCore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<(), EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        Ok(())
    }

    /// How many of `keys`, from the first, some tier holds (a block is held
    /// once the job that stored it was reported).
    pub fn lookup<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<usize, EngineError> {
        self.lookup_hashes(&self.hasher.hash_all(keys))
    }

    /// [`EngineCore::lookup`] of keys already hashed with
    /// [`EngineCore::hasher`] (one lock per tier for the whole batch).
    pub fn lookup_hashes(&self, hashes: &[SequenceHash]) -> Result<usize, EngineError> {
        self.check_open()?;
        let held = transfer::present(
            self.shared
                .cache
                .read()
                .as_ref()
                .ok_or(EngineError::Closed)?,
            hashes,
        );
        Ok(held.iter().take_while(|&&b| b).count())
    }

    /// Whether some tier holds `key`.
    pub fn contains(&self, key: &[u8]) -> Result<bool, EngineError> {
        self.contains_hash(self.hasher.hash(key))
    }

    /// [`EngineCore::contains`] of a key already hashed with
    /// [`EngineCore::hasher`]: a probe of each tier's index, nothing
    /// allocated but the answers.
    pub fn contains_hash(&self, hash: SequenceHash) -> Result<bool, EngineError> {
        self.check_open()?;
        let cache = self.shared.cache.read();
        Ok(transfer::holds(
            cache.as_ref().ok_or(EngineError::Closed)?,
            hash,
        ))
    }

    /// Store chunk `chunks[i]` of `buffer` under `keys[i]`, on a worker
    /// thread; reported by [`EngineCore::poll_finished`]. Keys already held
    /// succeed without a copy.
    ///
    /// # Safety
    /// See [`HostBuffer::new`]: the buffer must stay valid until the job is
    /// reported.
    pub unsafe fn submit_store<K: AsRef<[u8]>>(
        &self,
        job: u64,
        keys: &[K],
        chunks: &[i64],
        buffer: HostBuffer,
    ) -> Result<(), EngineError> {
        let chunks = self.buffer_chunks(buffer, chunks)?;
        self.submit(JobKind::Store, job, keys, chunks)
    }

    /// Load the blocks of `keys` into chunks `chunks` of `buffer`, on a
    /// worker thread. A key that is missing or fails verification is
    /// reported failed, and its chunk and every later one is left as it was.
    ///
    /// # Safety
    /// See [`HostBuffer::new`]: the buffer must stay valid, and its target
    /// chunks untouched by others, until the job is reported.
    pub unsafe fn submit_load<K: AsRef<[u8]>>(
        &self,
        job: u64,
        keys: &[K],
        chunks: &[i64],
        buffer: HostBuffer,
    ) -> Result<(), EngineError> {
        let chunks = self.buffer_chunks(buffer, chunks)?;
        self.submit(JobKind::Load, job, keys, chunks)
    }

    /// Store chunk `i` of `chunks` under `keys[i]`, or load the block of
    /// `keys[i]` into it, like [`EngineCore::submit_store`] and
    /// [`EngineCore::submit_load`] with chunks given as raw segments.
    ///
    /// # Safety
    /// See [`Chunks::from_segments`].
    pub unsafe fn submit_chunks<K: AsRef<[u8]>>(
        &self,
        kind: JobKind,
        job: u64,
        keys: &[K],
        chunks: Chunks,
    ) -> Result<(), EngineError> {
        self.submit(kind, job, keys, chunks)
    }

    /// [`EngineCore::submit_chunks`] of keys already hashed with
    /// [`EngineCore::hasher`] (no copy of the keys is kept). Refused with
    /// [`EngineError::KeysNeeded`] while an event sink is set: its events
    /// name engine keys.
    ///
    /// # Safety
    /// See [`Chunks::from_segments`].
    pub unsafe fn submit_hashed(
        &self,
        kind: JobKind,
        job: u64,
        hashes: Vec<SequenceHash>,
        chunks: Chunks,
    ) -> Result<(), EngineError> {
        self.check_open()?;
        if self.shared.sink.read().is_some() {
            return Err(EngineError::KeysNeeded);
        }
        let input = self.hashed_input(job, hashes, chunks)?;
        self.spawn_job(kind, input, None)
    }

    /// Start a store or load job over `chunks` (whose validity until the job
    /// is reported the public callers' contracts guarantee).
    fn submit<K: AsRef<[u8]>>(
        &self,
        kind: JobKind,
        job: u64,
        keys: &[K],
        chunks: Chunks,
    ) -> Result<(), EngineError> {
        let input = self.job_input(job, keys, chunks)?;
        let event_keys: Option<Vec<Vec<u8>>> = (kind == JobKind::Store
            && self.shared.sink.read().is_some())
        .then(|| keys.iter().map(|k| k.as_ref().to_vec()).collect());
        self.spawn_job(kind, input, event_keys)
    }

    /// Spawn the job: a load, or a store whose newly stored keys go to the
    /// event sink (`event_keys`: the job's keys, while a sink is set).
    fn spawn_job(
        &self,
        kind: JobKind,
        input: JobInput,
        event_keys: Option<Vec<Vec<u8>>>,
    ) -> Result<(), EngineError> {
        let job = input.job;
        let cache = self.cache()?;
        let shared = self.shared.clone();
        if kind == JobKind::Load {
            return self.spawn(job, async move {
                let result = transfer::load(&cache, input).await;
                shared.jobs.finish(result);
            });
        }
        self.spawn(job, async move {
            let (result, fresh) = transfer::store(&cache, &shared.store_gate, input).await;
            let sink = shared.sink.read().clone();
            if let (Some(sink), Some(keys)) = (sink, event_keys) {
                if !fresh.is_empty() {
                    let keys = fresh.iter().map(|&i| keys[i].clone()).collect();
                    sink.on_event(EngineEvent::Stored { keys });
                }
            }
            shared.jobs.finish(result);
        })
    }

    fn buffer_chunks(&self, buffer: HostBuffer, chunks: &[i64]) -> Result<Chunks, EngineError> {
        self.check_open()?;
        buffer.check_chunks(self.shared.block_bytes, chunks)
    }

    fn job_input<K: AsRef<[u8]>>(
        &self,
        job: u64,
        keys: &[K],
        chunks: Chunks,
    ) -> Result<JobInput, EngineError> {
        self.check_open()?;
        if keys.len() != chunks.len() {
            return Err(EngineError::LengthMismatch {
                keys: keys.len(),
                chunks: chunks.len(),
            });
        }
        let hashes = self.hasher.hash_all(keys);
        if self.shared.sink.read().is_some() {
            let mut map = self.shared.keys.lock();
            for (h, k) in hashes.iter().zip(keys) {
                map.entry(*h).or_insert_with(|| k.as_ref().to_vec());
            }
        }
        self.hashed_input(job, hashes, chunks)
    }

    /// A job's input from its hashes (checked against the chunks).
    fn hashed_input(
        &self,
        job: u64,
        hashes: Vec<SequenceHash>,
        chunks: Chunks,
    ) -> Result<JobInput, EngineError> {
        if hashes.len() != chunks.len() {
            return Err(EngineError::LengthMismatch {
                keys: hashes.len(),
                chunks: chunks.len(),
            });
        }
        Ok(JobInput {
            job,
            hashes,
            chunks,
            block_bytes: self.shared.block_bytes,
            batch: self.shared.batch,
            started: Instant::now(),
        })
    }

    fn spawn(
        &self,
        job: u64,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), EngineError> {
        let rt = self.runtime.lock();
        let Some(rt) = rt.as_ref() else {
            return Err(EngineError::Closed);
        };
        self.shared.jobs.begin(job)?;
        rt.spawn(task);
        Ok(())
    }

    /// Every job finished since the last call, oldest first.
    pub fn poll_finished(&self) -> Vec<JobResult> {
        self.shared.jobs.take_finished()
    }

    /// Jobs submitted and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.shared.jobs.in_flight()
    }

    /// Mark `keys` as recently used (where held), on a worker thread.
    pub fn touch<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<(), EngineError> {
        self.check_open()?;
        let hashes = self.hasher.hash_all(keys);
        let cache = self.cache()?;
        if let Some(rt) = self.runtime.lock().as_ref() {
            rt.spawn(async move {
                for h in hashes {
                    // A lookup counts as an access in the tier holding it.
                    let mut req = cache.request(&[h]);
                    let _ = req.lookup().await;
                }
            });
        }
        Ok(())
    }

    /// Wait until every submitted job has finished (their results stay
    /// for [`EngineCore::poll_finished`]).
    pub fn drain(&self) {
        self.shared.jobs.drain();
    }

    /// Send stored / removed events to `sink` from now on (`None` stops
    /// them). Removed events come from the store's last tier: a block
    /// evicted from G2 but still in G3 is still stored.
    pub fn enable_events(&self, sink: Option<Arc<dyn EngineEventSink>>) {
        let on = sink.is_some();
        let was = std::mem::replace(&mut *self.shared.sink.write(), sink).is_some();
        if on && !was {
            self.stop_events.store(false, Ordering::Release);
            let rxs: Vec<_> = Tier::ALL
                .into_iter()
                .filter_map(|t| {
                    let cache = self.shared.cache.read();
                    cache.as_ref()?.store(t).map(|s| s.subscribe())
                })
                .collect();
            let shared = self.shared.clone();
            let stop = self.stop_events.clone();
            let _ = std::thread::Builder::new()
                .name("kvtier-events".into())
                .spawn(move || removed_events(&shared, &rxs, &stop));
        } else if !on {
            self.stop_events.store(true, Ordering::Release);
            self.shared.keys.lock().clear();
        }
    }

    /// Drain the jobs, flush every block down to the durable G3 and close
    /// its journal (everything acknowledged is found by the next open of
    /// the directory), stop the workers. Later calls are refused with
    /// [`EngineError::Closed`]; a second close does nothing.
    pub fn close(&self) -> Result<(), EngineError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.drain();
        self.stop_events.store(true, Ordering::Release);
        let rt = self.runtime.lock().take();
        let mut res = Ok(());
        if let Some(rt) = rt {
            let cache = self.shared.cache.write().take();
            res = rt
                .block_on(async move {
                    match cache {
                        Some(c) => c.close().await.map(|_| ()),
                        None => Ok(()),
                    }
                })
                .map_err(|e| EngineError::Worker(e.to_string()));
            // Everything but the copy engines' threads has stopped; drop the
            // cache's parts inside the runtime's context, then the runtime.
            {
                let _guard = rt.enter();
                self.built.lock().take();
            }
            rt.shutdown_timeout(std::time::Duration::from_secs(10));
        }
        if let Some(p) = self.publisher.lock().take() {
            publish::finish(p);
        }
        res
    }
}

impl Drop for EngineCore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("kvtier engine: close on drop failed: {e}");
        }
    }
}

/// Forward removals as engine keys until `stop`: a block leaving one tier
/// is removed once no tier holds it any more (a block moving down is
/// registered below before it leaves above).
fn removed_events(
    shared: &Shared,
    rxs: &[crossbeam_channel::Receiver<kvtier_logical::Event>],
    stop: &AtomicBool,
) {
    let mut sel = crossbeam_channel::Select::new();
    for rx in rxs {
        sel.recv(rx);
    }
    while !stop.load(Ordering::Acquire) {
        let Ok(op) = sel.select_timeout(std::time::Duration::from_millis(50)) else {
            continue;
        };
        let i = op.index();
        let Ok(ev) = op.recv(&rxs[i]) else {
            return;
        };
        let hashes: Vec<SequenceHash> = match ev.kind {
            EventKind::Removed { hashes } => hashes,
            EventKind::Cleared => shared.keys.lock().keys().copied().collect(),
            EventKind::Stored { .. } => continue,
        };
        let held = match shared.cache.read().as_ref() {
            Some(c) => transfer::present(c, &hashes),
            None => return,
        };
        let keys: Vec<Vec<u8>> = {
            let mut map = shared.keys.lock();
            hashes
                .iter()
                .zip(held)
                .filter(|(_, held)| !held)
                .filter_map(|(h, _)| map.remove(h))
                .collect()
        };
        if keys.is_empty() {
            continue;
        }
        let sink = shared.sink.read().clone();
        if let Some(sink) = sink {
            sink.on_event(EngineEvent::Removed { keys });
        }
    }
}
