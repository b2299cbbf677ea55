//! The publisher: every tier's contents as vLLM KV events on a ZMQ PUB
//! socket, with a replay socket.
//!
//! # Threads and what the cache pays
//! The cache side is unchanged: a store sends each event on an unbounded
//! channel under its lock (one send, never blocking, never dropping). The
//! publisher runs two threads of its own:
//!
//! - the **encoder** merges the stores' channels (each in its own order),
//!   translates events with set semantics ([`crate::view::Translator`]),
//!   folds up to `max_batch_events` store events into one batch, numbers it
//!   (0, 1, 2, ... with no gap), keeps it in the replay buffer and hands it to
//!   the socket thread through a queue of `hwm` batches — when that queue is
//!   full the batch is dropped (counted) and subscribers fetch it by replay;
//! - the **socket thread** (a single-threaded tokio runtime) sends batches on
//!   PUB as `[topic, seq as 8 bytes big-endian, payload]` and answers replay
//!   requests on ROUTER, each on its own task so a slow replay client delays
//!   nobody.
//!
//! If a tier's channel holds more than `max_backlog` events (the encoder fell
//! behind), the encoder drops that backlog and re-reads the tier
//! ([`kvtier_logical::BlockStore::subscribe_with_snapshot`]), publishing the difference: memory
//! stays bounded and the announced set stays exact.
//!
//! # Start, replay, checkpoints
//! Batch 0 is `AllBlocksCleared` followed by everything the tiers already
//! hold, so a router drops whatever an earlier run of this worker announced.
//! A replay request `start` (8 bytes big-endian, behind an empty delimiter
//! frame as a REQ socket sends it) is answered with `[topic, seq, payload]`
//! for every buffered batch from `start` on, then `["", -1 as 8 signed bytes,
//! ""]`, exactly as vLLM 0.33 answers. A request older than the buffer cannot
//! be answered exactly: the publisher then publishes a **checkpoint** batch
//! (`AllBlocksCleared` + the whole announced state) on the live stream, from
//! which any subscriber holds the exact set again.

use crate::config::EventsConfig;
use crate::endpoint::Endpoint;
use crate::error::EventsError;
use crate::io::{self, IoSetup};
use crate::keys::BlockKeys;
use crate::metrics::{EventMetrics, MetricsSnapshot};
use crate::view::Translator;
use crate::wire::{encode_batch, EventBatch, WireEvent, WireFormat};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Select, TryRecvError};
use kvtier_logical::{Event, EventSource, Tier};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Progress the threads report to waiters.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Highest flush request the encoder has completed.
    pub flushed: u64,
    /// Batches handed to the PUB socket (sequence numbers below this).
    pub sent: u64,
    /// Peers connected to the PUB socket.
    pub subscribers: u64,
}

/// State shared by the handle and both threads.
pub(crate) struct Shared {
    pub metrics: EventMetrics,
    /// `(seq, payload)` of the last `buffer` batches.
    pub ring: Mutex<VecDeque<(u64, Bytes)>>,
    pub buffer: usize,
    /// Sequence number the next batch gets.
    pub next_seq: AtomicU64,
    pub checkpoint: AtomicBool,
    pub stop: AtomicBool,
    pub flush_req: AtomicU64,
    pub progress: Mutex<Progress>,
    pub changed: Condvar,
    pub topic: Bytes,
}

impl Shared {
    /// Update the progress under its lock and wake waiters.
    pub fn report(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock());
        self.changed.notify_all();
    }

    /// Wait until `done(progress)` or the deadline; returns whether it held.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&Progress) -> bool) -> bool {
        let mut p = self.progress.lock();
        while !done(&p) {
            if self.changed.wait_until(&mut p, deadline).timed_out() {
                return done(&p);
            }
        }
        true
    }
}

/// How [`Publisher::start`] starts.
#[derive(Clone, Copy, Debug)]
pub struct StartOptions {
    /// Tokens per block, when the config does not set `block_size`.
    pub block_size: u32,
    /// How long a connecting PUB waits for its peer.
    pub connect_timeout: Duration,
    /// Before batch 0, wait up to this long for a first peer on the PUB
    /// socket (and [`SUBSCRIPTION_GRACE`] more for its subscription), so
    /// that it sees the stream from sequence 0. Nothing the stores do
    /// meanwhile is lost: their channels hold it.
    pub wait_subscriber: Option<Duration>,
}

impl StartOptions {
    /// `block_size` tokens per block, 10 s connect timeout, no wait.
    pub fn new(block_size: u32) -> Self {
        StartOptions {
            block_size,
            connect_timeout: Duration::from_secs(10),
            wait_subscriber: None,
        }
    }
}

/// After a first peer connects, the time left for its subscription to reach
/// the PUB socket (which cannot see subscriptions).
pub const SUBSCRIPTION_GRACE: Duration = Duration::from_millis(200);

/// A running publisher; stops (flushing what the stores already emitted) when
/// dropped or [`shut down`](Publisher::shutdown).
pub struct Publisher {
    shared: Arc<Shared>,
    encoder: Option<JoinHandle<()>>,
    socket: Option<JoinHandle<()>>,
    endpoint: String,
    replay_endpoint: Option<String>,
    waited: Option<bool>,
}

struct Source {
    tier: Tier,
    store: EventSource,
    rx: Receiver<Event>,
    /// Sequence number the store's next event must carry.
    next: Option<u64>,
}

struct Encoder {
    shared: Arc<Shared>,
    sources: Vec<Source>,
    translator: Translator,
    format: WireFormat,
    rank: i64,
    max_batch: usize,
    max_backlog: usize,
    tx: tokio::sync::mpsc::Sender<(u64, Bytes)>,
    out: Vec<WireEvent>,
    /// Store event gaps seen (each answered by re-reading the tier).
    gaps: u64,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Encoder {
    fn publish(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let seq = self.shared.next_seq.load(Ordering::Relaxed);
        let batch = EventBatch {
            ts: now_secs(),
            events: std::mem::take(&mut self.out),
            data_parallel_rank: Some(self.rank),
        };
        let payload = Bytes::from(encode_batch(&batch, self.format));
        let m = &self.shared.metrics;
        m.events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        m.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        {
            let mut ring = self.shared.ring.lock();
            if ring.len() == self.shared.buffer {
                ring.pop_front();
            }
            ring.push_back((seq, payload.clone()));
        }
        // Published (and replayable) before it reaches the socket.
        self.shared.next_seq.store(seq + 1, Ordering::Release);
        m.batches.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send((seq, payload)).is_err() {
            m.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.out = batch.events;
        self.out.clear();
    }

    /// Drop source `i`'s subscription and re-read its store.
    fn resync(&mut self, i: usize) {
        let (rx, snapshot) = self.sources[i].store.subscribe_with_snapshot();
        let s = &mut self.sources[i];
        s.rx = rx;
        s.next = None;
        self.translator.resync(i, &snapshot, &mut self.out);
        self.shared.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Take up to `max_batch` store events; returns how many were taken.
    fn fill(&mut self) -> usize {
        let mut taken = 0;
        loop {
            let mut any = false;
            for i in 0..self.sources.len() {
                let ev = match self.sources[i].rx.try_recv() {
                    Ok(ev) => ev,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => continue,
                };
                any = true;
                taken += 1;
                let s = &mut self.sources[i];
                if s.next.is_some_and(|n| n != ev.seq) {
                    // A store's events are consecutive: a gap means this view
                    // is unreliable; re-read the tier.
                    tracing::warn!(tier = %s.tier, expected = ?s.next, got = ev.seq, "store event gap; re-reading the tier");
                    self.gaps += 1;
                    self.resync(i);
                    continue;
                }
                s.next = Some(ev.seq + 1);
                self.translator.apply(i, &ev.kind, &mut self.out);
            }
            if !any || taken >= self.max_batch {
                break;
            }
        }
        self.shared
            .metrics
            .store_events
            .fetch_add(taken as u64, Ordering::Relaxed);
        taken
    }

    fn run(mut self) {
        loop {
            let stop = self.shared.stop.load(Ordering::Acquire);
            let flush = self.shared.flush_req.load(Ordering::Acquire);
            if self.shared.checkpoint.swap(false, Ordering::AcqRel) {
                self.publish();
                self.translator.checkpoint(&mut self.out);
                self.shared
                    .metrics
                    .checkpoints
                    .fetch_add(1, Ordering::Relaxed);
                self.publish();
            }
            let mut backlog = 0;
            for i in 0..self.sources.len() {
                let len = self.sources[i].rx.len();
                backlog = backlog.max(len);
                if len > self.max_backlog {
                    tracing::warn!(tier = %self.sources[i].tier, backlog = len, "events backlog over the limit; re-reading the tier");
                    self.resync(i);
                }
            }
            self.shared
                .metrics
                .backlog
                .store(backlog as u64, Ordering::Relaxed);
            let taken = self.fill();
            self.publish();
            self.shared
                .metrics
                .anomalies
                .store(self.translator.anomalies() + self.gaps, Ordering::Relaxed);
            if taken > 0 {
                continue;
            }
            // Idle: everything emitted before `flush` was requested is out.
            self.shared.report(|p| p.flushed = p.flushed.max(flush));
            if stop {
                break;
            }
            let mut sel = Select::new();
            for s in &self.sources {
                sel.recv(&s.rx);
            }
            let _ = sel.ready_timeout(Duration::from_millis(20));
        }
    }
}

impl Publisher {
    /// Start publishing the events of `stores` (one per tier; typically G1,
    /// G2, G3 of one cache) as `config` says, publishing blocks under the
    /// hashes `keys` gives. Binds or connects the sockets (and waits for a
    /// subscriber if `opts` says so) before returning.
    pub fn start(
        config: &EventsConfig,
        stores: &[EventSource],
        keys: Box<dyn BlockKeys>,
        opts: StartOptions,
    ) -> Result<Publisher, EventsError> {
        config.validate().map_err(EventsError::Config)?;
        let mut tiers: Vec<Tier> = stores.iter().map(|s| s.tier()).collect();
        tiers.sort();
        if tiers.windows(2).any(|w| w[0] == w[1]) {
            return Err(EventsError::Config(
                "two stores of the same tier were given to one publisher".into(),
            ));
        }
        let pub_ep = Endpoint::resolve(&config.endpoint, config.bind)?;
        let replay_ep = config
            .replay_endpoint
            .as_deref()
            .map(|e| Endpoint::resolve(e, Some(true)))
            .transpose()?;
        let shared = Arc::new(Shared {
            metrics: EventMetrics::default(),
            ring: Mutex::new(VecDeque::with_capacity(config.buffer.min(1 << 16))),
            buffer: config.buffer,
            next_seq: AtomicU64::new(0),
            checkpoint: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            flush_req: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            topic: Bytes::from(config.topic().into_bytes()),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(config.hwm);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = IoSetup {
            shared: shared.clone(),
            batches: rx,
            endpoint: pub_ep,
            replay: replay_ep,
            linger: Duration::from_millis(config.linger_ms),
            connect_timeout: opts.connect_timeout,
            ready: ready_tx,
        };
        let socket = std::thread::Builder::new()
            .name("kvtier-events-io".into())
            .spawn(move || io::run(setup))
            .map_err(|source| EventsError::Start {
                what: "socket thread",
                source,
            })?;
        let (endpoint, replay_endpoint) = match ready_rx.recv() {
            Ok(Ok(eps)) => eps,
            Ok(Err(e)) => {
                let _ = socket.join();
                return Err(e);
            }
            Err(_) => {
                let _ = socket.join();
                return Err(EventsError::Stopped);
            }
        };
        // Subscribe on the caller's thread: every change made after `start`
        // returns is published.
        let media: Vec<String> = stores
            .iter()
            .map(|s| config.medium.of(s.tier()).to_string())
            .collect();
        let mut translator =
            Translator::new(keys, config.block_size.unwrap_or(opts.block_size), &media);
        let mut out = vec![WireEvent::AllBlocksCleared];
        let mut sources = Vec::with_capacity(stores.len());
        for (i, store) in stores.iter().enumerate() {
            let (rx, snapshot) = store.subscribe_with_snapshot();
            translator.resync(i, &snapshot, &mut out);
            sources.push(Source {
                tier: store.tier(),
                store: store.clone(),
                rx,
                next: None,
            });
        }
        let mut encoder = Encoder {
            shared: shared.clone(),
            sources,
            translator,
            format: config.format,
            rank: config.data_parallel_rank,
            max_batch: config.max_batch_events,
            max_backlog: config.max_backlog,
            tx,
            out,
            gaps: 0,
        };
        let waited = opts.wait_subscriber.map(|w| {
            let ok = shared.wait_until(Instant::now() + w, |p| p.subscribers > 0);
            if ok {
                std::thread::sleep(SUBSCRIPTION_GRACE);
            }
            ok
        });
        encoder.publish();
        let encoder = std::thread::Builder::new()
            .name("kvtier-events-encode".into())
            .spawn(move || encoder.run())
            .map_err(|source| EventsError::Start {
                what: "encoder thread",
                source,
            })?;
        Ok(Publisher {
            shared,
            encoder: Some(encoder),
            socket: Some(socket),
            endpoint,
            replay_endpoint,
            waited,
        })
    }

    /// Whether a subscriber came before batch 0 (`None`: not asked to wait).
    pub fn waited_for_subscriber(&self) -> Option<bool> {
        self.waited
    }

    /// The PUB endpoint as bound (with the actual port when `:0` was asked)
    /// or connected.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bound replay endpoint, if any.
    pub fn replay_endpoint(&self) -> Option<&str> {
        self.replay_endpoint.as_deref()
    }

    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Number of batches published so far (the next sequence number).
    pub fn batches(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Acquire)
    }

    /// Wait until every event the stores emitted before this call is
    /// published and handed to the socket. Returns the number of batches
    /// published (the last sequence number is one less).
    pub fn flush(&self, timeout: Duration) -> Result<u64, EventsError> {
        let deadline = Instant::now() + timeout;
        let req = self.shared.flush_req.fetch_add(1, Ordering::AcqRel) + 1;
        if !self.shared.wait_until(deadline, |p| p.flushed >= req) {
            return Err(EventsError::Timeout {
                what: "the encoder to drain the stores' events",
                millis: timeout.as_millis(),
            });
        }
        let n = self.batches();
        if !self.shared.wait_until(deadline, |p| p.sent >= n) {
            return Err(EventsError::Timeout {
                what: "the socket thread to send the batches",
                millis: timeout.as_millis(),
            });
        }
        Ok(n)
    }

    /// Peers connected to the PUB socket now.
    pub fn subscribers(&self) -> u64 {
        self.shared.progress.lock().subscribers
    }

    /// Publish a checkpoint (`AllBlocksCleared` + the whole announced state)
    /// on the live stream.
    pub fn checkpoint(&self) {
        self.shared.checkpoint.store(true, Ordering::Release);
    }

    /// Stop: publish what the stores already emitted, keep answering replay
    /// requests for the configured linger, then close the sockets.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.encoder.take() {
            let _ = h.join();
        }
        if let Some(h) = self.socket.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint)
            .field("replay_endpoint", &self.replay_endpoint)
            .field("batches", &self.batches())
            .finish()
    }
}
