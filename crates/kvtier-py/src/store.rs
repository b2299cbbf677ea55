//! The `Store` class: kvtier's engine core as a Python object.

use crate::convert::{self, Region};
use crate::errors::{to_py, BadBufferError, BadInputError, ChunkRangeError};
use kvtier::engine::{
    Chunks, EngineCore, EngineError, EngineEvent, EngineEventSink, EngineOptions, HostBuffer,
    JobKind, SequenceHash,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Batches of at least this many keys are looked up with the GIL released.
const DETACH_KEYS: usize = 1024;

/// Collects stored / removed events for `take_events`.
#[derive(Default)]
struct Collector(Mutex<Vec<EngineEvent>>);

impl EngineEventSink for Collector {
    fn on_event(&self, event: EngineEvent) {
        lock(&self.0).push(event);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// kvtier as an engine's storage tier: `Store(block_bytes, path=None,
/// config=None, namespace="")`.
///
/// Blocks move between kvtier and buffers attached with `attach`: chunk
/// `i` of the first attached buffer is bytes `[i * block_bytes, (i + 1) *
/// block_bytes)` (`submit_store` / `submit_load`), or pages given by address
/// inside any attached buffer (`submit_store_pages` / `submit_load_pages`).
#[pyclass(module = "kvtier._native", frozen)]
pub struct Store {
    core: EngineCore,
    regions: Mutex<Vec<Region>>,
    events: Mutex<Option<Arc<Collector>>>,
}

/// A job's keys as the core takes them: hashed in place from the Python
/// objects (no copy of any key) unless events are collected, whose
/// `stored` lists name the keys themselves.
enum JobKeys {
    Hashed(Vec<SequenceHash>),
    Copied(Vec<Vec<u8>>),
}

impl Store {
    /// Read a job's keys (see [`JobKeys`]).
    fn job_keys(&self, keys: &Bound<'_, PyAny>) -> PyResult<JobKeys> {
        if lock(&self.events).is_some() {
            return Ok(JobKeys::Copied(convert::keys(keys)?));
        }
        Ok(JobKeys::Hashed(convert::key_hashes(
            keys,
            &self.core.hasher(),
        )?))
    }

    /// Start a job over `chunks` (checked against the attached buffers);
    /// `obj` is the Python object `keys` were read from.
    fn submit(
        &self,
        py: Python<'_>,
        (dir, job): (JobKind, u64),
        (obj, keys): (&Bound<'_, PyAny>, JobKeys),
        chunks: Chunks,
    ) -> PyResult<()> {
        let keys = match keys {
            JobKeys::Copied(k) => k,
            JobKeys::Hashed(h) => {
                let retry = chunks.clone();
                // SAFETY: every chunk lies inside an attached buffer, held
                // (and its memory pinned) until `detach` or `close`, which
                // wait for every job first.
                let res = py.detach(|| unsafe { self.core.submit_hashed(dir, job, h, chunks) });
                match res {
                    // Events were enabled meanwhile (another thread): they
                    // need the keys themselves.
                    Err(EngineError::KeysNeeded) => {
                        let k = convert::keys(obj)?;
                        // SAFETY: as above.
                        let res =
                            py.detach(|| unsafe { self.core.submit_chunks(dir, job, &k, retry) });
                        return res.map_err(to_py);
                    }
                    res => return res.map_err(to_py),
                }
            }
        };
        // SAFETY: every chunk lies inside an attached buffer, held until
        // `detach` or `close`, which wait for every job first.
        py.detach(|| unsafe { self.core.submit_chunks(dir, job, &keys, chunks) })
            .map_err(to_py)
    }

    /// A job over chunk ids of the first attached buffer.
    fn submit_buffer(
        &self,
        py: Python<'_>,
        dir: JobKind,
        job: u64,
        keys: &Bound<'_, PyAny>,
        chunk_ids: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let read = self.job_keys(keys)?;
        let ids = convert::chunk_ids(chunk_ids)?;
        let chunks = self
            .first_region()?
            .check_chunks(self.core.block_bytes(), &ids)
            .map_err(to_py)?;
        self.submit(py, (dir, job), (keys, read), chunks)
    }

    /// A job over pages given by address.
    fn submit_pages(
        &self,
        py: Python<'_>,
        dir: JobKind,
        job: u64,
        keys: &Bound<'_, PyAny>,
        (ptrs, sizes): (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
    ) -> PyResult<()> {
        let read = self.job_keys(keys)?;
        let n = match &read {
            JobKeys::Hashed(h) => h.len(),
            JobKeys::Copied(k) => k.len(),
        };
        let chunks = self.page_chunks(n, ptrs, sizes)?;
        self.submit(py, (dir, job), (keys, read), chunks)
    }

    fn first_region(&self) -> PyResult<HostBuffer> {
        if self.core.is_closed() {
            return Err(to_py(EngineError::Closed));
        }
        let regions = lock(&self.regions);
        let r = regions.first().ok_or_else(|| {
            BadBufferError::new_err("no buffer attached: call attach(buffer) first")
        })?;
        // SAFETY: the region's buffer is held (and its memory pinned) until
        // `detach` or `close`, which wait for every job first.
        Ok(unsafe { HostBuffer::new(r.addr as *mut u8, r.len) })
    }

    fn page_chunks(
        &self,
        n_keys: usize,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<Chunks> {
        let ptrs = convert::usizes(ptrs, "page address")?;
        let sizes = convert::usizes(sizes, "page size")?;
        if ptrs.len() != sizes.len() {
            return Err(BadInputError::new_err(format!(
                "{} page addresses but {} sizes",
                ptrs.len(),
                sizes.len()
            )));
        }
        {
            let regions = lock(&self.regions);
            for (i, (&p, &s)) in ptrs.iter().zip(&sizes).enumerate() {
                if !regions.iter().any(|r| r.holds(p, s)) {
                    return Err(ChunkRangeError::new_err(format!(
                        "page segment {i} ({s} bytes at {p:#x}) lies outside every attached buffer"
                    )));
                }
            }
        }
        let segs = ptrs.into_iter().zip(sizes).collect();
        // SAFETY: every segment lies inside an attached buffer, held until
        // `detach` or `close`, which wait for every job first.
        unsafe { Chunks::from_segments(segs, n_keys, self.core.block_bytes()) }.map_err(to_py)
    }
}

#[pymethods]
impl Store {
    /// Open (or create) the store: blocks of `block_bytes`, the durable tier
    /// in directory `path` (a temporary file when None), tier sizes from the
    /// kvtier TOML `config` (built-in defaults when None), keys namespaced by
    /// `namespace` (model and layout).
    #[new]
    #[pyo3(signature = (block_bytes, path=None, config=None, namespace=""))]
    fn new(
        py: Python<'_>,
        block_bytes: usize,
        path: Option<PathBuf>,
        config: Option<PathBuf>,
        namespace: &str,
    ) -> PyResult<Store> {
        let opts = EngineOptions::new(block_bytes, path.as_deref(), namespace)
            .with_config(config.as_deref());
        let core = py.detach(|| EngineCore::open(&opts)).map_err(to_py)?;
        Ok(Store {
            core,
            regions: Mutex::new(Vec::new()),
            events: Mutex::new(None),
        })
    }

    /// Bytes of one block.
    #[getter]
    fn block_bytes(&self) -> usize {
        self.core.block_bytes()
    }

    /// What opening the directory recovered, as a dict (None without one).
    fn recovery<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(r) = self.core.recovery() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("dir", &r.dir)?;
        d.set_item("created", r.created)?;
        d.set_item("recovered", r.recovered)?;
        d.set_item("restored", r.restored)?;
        d.set_item("dropped_torn", r.dropped_torn)?;
        d.set_item("dropped_corrupt", r.dropped_corrupt)?;
        Ok(Some(d))
    }

    /// Hold `buffer` (writable, C-contiguous: a numpy array, bytearray,
    /// memoryview) for jobs; returns its index. The first one attached is
    /// the one chunk ids refer to.
    fn attach(&self, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let region = Region::get(buffer)?;
        let mut regions = lock(&self.regions);
        regions.push(region);
        Ok(regions.len() - 1)
    }

    /// Release every attached buffer (after waiting for every job).
    fn detach(&self, py: Python<'_>) {
        py.detach(|| self.core.drain());
        let regions = std::mem::take(&mut *lock(&self.regions));
        drop(regions);
    }

    /// How many of `keys` (bytes or str), from the first, the store holds.
    ///
    /// Keys are hashed in place (no copy per key) and each tier's index is
    /// probed once for the whole batch. A probe of the in-memory indexes
    /// costs less than giving the GIL up and taking it back, so only large
    /// batches release it.
    fn lookup(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let hashes = convert::key_hashes(keys, &self.core.hasher())?;
        if hashes.len() >= DETACH_KEYS {
            py.detach(|| self.core.lookup_hashes(&hashes))
        } else {
            self.core.lookup_hashes(&hashes)
        }
        .map_err(to_py)
    }

    /// Whether the store holds `key`.
    ///
    /// The scheduler's per-key hot path: the key is hashed in place and each
    /// tier's index probed once, with the GIL held (a probe is shorter than
    /// a release and re-acquire).
    fn contains(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let h = convert::key_hash(key, 0, &self.core.hasher())?;
        self.core.contains_hash(h).map_err(to_py)
    }

    /// Start job `job`: store chunk `chunk_ids[i]` of the first attached
    /// buffer under `keys[i]`. Reported by `poll_finished`.
    fn submit_store(
        &self,
        py: Python<'_>,
        job: u64,
        keys: &Bound<'_, PyAny>,
        chunk_ids: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.submit_buffer(py, JobKind::Store, job, keys, chunk_ids)
    }

    /// Start job `job`: load the blocks of `keys` into chunks `chunk_ids`
    /// of the first attached buffer. A key missing or failing verification
    /// is reported failed and its chunk (and every later one) left as it was.
    fn submit_load(
        &self,
        py: Python<'_>,
        job: u64,
        keys: &Bound<'_, PyAny>,
        chunk_ids: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.submit_buffer(py, JobKind::Load, job, keys, chunk_ids)
    }

    /// Start job `job`: store pages given by address (`ptrs`, `sizes`: one
    /// or more segments per key, adding up to a block, each inside an
    /// attached buffer) under `keys`.
    fn submit_store_pages(
        &self,
        py: Python<'_>,
        job: u64,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.submit_pages(py, JobKind::Store, job, keys, (ptrs, sizes))
    }

    /// Start job `job`: load the blocks of `keys` into pages given by
    /// address (as in `submit_store_pages`).
    fn submit_load_pages(
        &self,
        py: Python<'_>,
        job: u64,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.submit_pages(py, JobKind::Load, job, keys, (ptrs, sizes))
    }

    /// Jobs finished since the last call: a list of `(job, ok, ok_keys,
    /// bytes, seconds)`, `ok_keys` a list of bools in the job's key order.
    fn poll_finished<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let done = self.core.poll_finished();
        let list = PyList::empty(py);
        for r in done {
            list.append((r.job, r.ok, r.ok_keys, r.bytes, r.seconds))?;
        }
        Ok(list)
    }

    /// Jobs submitted and not finished.
    #[getter]
    fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    /// Mark `keys` as recently used.
    fn touch(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<()> {
        let keys = convert::keys(keys)?;
        py.detach(|| self.core.touch(&keys)).map_err(to_py)
    }

    /// Wait until every submitted job has finished.
    fn drain(&self, py: Python<'_>) {
        py.detach(|| self.core.drain());
    }

    /// Collect stored / removed events from now on (`take_events`), or stop.
    #[pyo3(signature = (on=true))]
    fn enable_events(&self, on: bool) {
        let mut ev = lock(&self.events);
        if on && ev.is_none() {
            let c = Arc::new(Collector::default());
            self.core.enable_events(Some(c.clone()));
            *ev = Some(c);
        } else if !on {
            self.core.enable_events(None);
            *ev = None;
        }
    }

    /// Events since the last call: a list of `("stored" | "removed",
    /// [keys as bytes])`.
    fn take_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let taken = match &*lock(&self.events) {
            Some(c) => std::mem::take(&mut *lock(&c.0)),
            None => Vec::new(),
        };
        let list = PyList::empty(py);
        for e in taken {
            let (kind, keys) = match e {
                EngineEvent::Stored { keys } => ("stored", keys),
                EngineEvent::Removed { keys } => ("removed", keys),
            };
            let keys: Vec<Bound<'py, PyBytes>> = keys.iter().map(|k| PyBytes::new(py, k)).collect();
            list.append((kind, keys))?;
        }
        Ok(list)
    }

    /// Drain, flush every block to the durable tier, close it, release the
    /// buffers. Later calls raise `ClosedError`; a second close does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let res = py.detach(|| self.core.close());
        drop(std::mem::take(&mut *lock(&self.regions)));
        res.map_err(to_py)
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _a: Py<PyAny>,
        _b: Py<PyAny>,
        _c: Py<PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}
