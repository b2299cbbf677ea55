//! A subscriber: receives batches in sequence order, recovering gaps through
//! the replay socket (for the CLI, tests and any Rust consumer).
//!
//! It SUBscribes to the PUB endpoint and, when given a replay endpoint, asks
//! it (from a DEALER, framed as a REQ would: `["", start]`) for:
//! - everything from its start sequence when it starts (0, or where a
//!   restarted subscriber left off: [`SubscriberConfig::resume_from`]);
//! - the missing batches whenever a live batch skips sequence numbers;
//! - anything newer when the live stream has been quiet for
//!   [`SubscriberConfig::idle_probe`] (a PUB silently drops a batch sent before
//!   a new subscription reached it; without this probe, the last batches
//!   before a pause would stay unseen until the next one).
//!
//! Batches come out strictly in order, each once. A gap the replay buffer no
//! longer covers cannot be filled: the batch after it is delivered with
//! [`Delivered::complete`] false, and the publisher, asked for what it no
//! longer has, publishes a checkpoint (`AllBlocksCleared` + everything) from
//! which a [`crate::Mirror`] is exact again.

use crate::endpoint::Endpoint;
use crate::error::EventsError;
use crate::io::END_SEQ;
use crate::wire::{decode_batch, EventBatch, WireEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage};

/// How to subscribe.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The publisher's PUB endpoint. A subscriber connects, unless the
    /// endpoint is a wildcard (`*` or `::`, which can only be bound: the
    /// publisher then connects to it, as llm-d's subscribers expect) or
    /// `bind` says otherwise.
    pub endpoint: String,
    /// Force binding or connecting.
    pub bind: Option<bool>,
    /// The publisher's replay (ROUTER) endpoint.
    pub replay_endpoint: Option<String>,
    /// Topic prefix to subscribe to (`""`: everything).
    pub topic: String,
    /// First sequence number wanted: `None` starts from 0 with no state; a
    /// restarted subscriber passes the sequence after the last one it applied.
    pub resume_from: Option<u64>,
    /// Longest wait for the publisher when connecting (a SUB socket connects
    /// once the publisher is there, then reconnects by itself).
    pub connect_timeout: Duration,
    /// Longest wait for each replay frame.
    pub replay_timeout: Duration,
    /// Ask the replay socket for newer batches after this long without a
    /// live one (`None`: never).
    pub idle_probe: Option<Duration>,
}

impl SubscriberConfig {
    /// Subscribe to `endpoint` (and replay from `replay_endpoint`) with the
    /// defaults: all topics, from 0, 30 s connect and 5 s replay timeouts,
    /// 500 ms idle probe.
    pub fn new(endpoint: impl Into<String>, replay_endpoint: Option<String>) -> Self {
        SubscriberConfig {
            endpoint: endpoint.into(),
            bind: None,
            replay_endpoint,
            topic: String::new(),
            resume_from: None,
            connect_timeout: Duration::from_secs(30),
            replay_timeout: Duration::from_secs(5),
            idle_probe: Some(Duration::from_millis(500)),
        }
    }
}

/// A batch handed out in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// Its sequence number.
    pub seq: u64,
    /// Its topic frame.
    pub topic: Bytes,
    /// The decoded batch.
    pub batch: EventBatch,
    /// Whether it came through the replay socket.
    pub replayed: bool,
    /// Whether every batch before it (since the start, the resume point or
    /// the last `AllBlocksCleared`) was delivered.
    pub complete: bool,
}

/// What the subscriber saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberStats {
    /// Batches delivered.
    pub delivered: u64,
    /// Of which through replay.
    pub replayed: u64,
    /// Live batches dropped as already delivered.
    pub duplicates: u64,
    /// Replay requests sent.
    pub replay_requests: u64,
    /// Gaps filled by replay.
    pub gaps_recovered: u64,
    /// Gaps replay could not fill.
    pub gaps_lost: u64,
    /// Times the publisher was seen restarting (sequence back to 0).
    pub restarts: u64,
    /// Replay requests that failed (no answer in time, broken connection).
    pub replay_failures: u64,
    /// Messages that were not valid batches (skipped; counted as lost).
    pub undecodable: u64,
}

/// A connected subscriber (blocking API; owns a small runtime).
pub struct Subscriber {
    rt: tokio::runtime::Runtime,
    sub: SubSocket,
    endpoint: String,
    dealer: Option<DealerSocket>,
    cfg: SubscriberConfig,
    next: Option<u64>,
    lost: bool,
    started: bool,
    pending: VecDeque<Delivered>,
    stats: SubscriberStats,
    /// Timestamp of the publisher's batch 0, to tell its replays from a
    /// new run's batch 0.
    first_ts: Option<f64>,
}

fn seq_of(frame: &[u8]) -> Result<u64, EventsError> {
    let b: [u8; 8] = frame
        .try_into()
        .map_err(|_| EventsError::Protocol(format!("sequence frame of {} bytes", frame.len())))?;
    Ok(u64::from_be_bytes(b))
}

fn has_clear(b: &EventBatch) -> bool {
    b.events
        .iter()
        .any(|e| matches!(e, WireEvent::AllBlocksCleared))
}

impl Subscriber {
    /// Connect (or bind) the SUB socket and subscribe. Nothing is received
    /// until [`next_batch`](Self::next_batch).
    pub fn connect(cfg: SubscriberConfig) -> Result<Subscriber, EventsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| EventsError::Start {
                what: "subscriber runtime",
                source,
            })?;
        let wildcard = cfg.endpoint.contains('*') || cfg.endpoint.contains("::");
        let ep = Endpoint::resolve(&cfg.endpoint, Some(cfg.bind.unwrap_or(wildcard)))?;
        let (sub, endpoint) = rt.block_on(async {
            let mut opts = SocketOptions::default();
            opts.connect_timeout(cfg.connect_timeout);
            let mut sub = SubSocket::with_options(opts);
            sub.subscribe(&cfg.topic)
                .await
                .map_err(|e| sock("subscribe", &ep.addr, e))?;
            let mut endpoint = ep.addr.clone();
            if ep.bind {
                endpoint = sub
                    .bind(&ep.addr)
                    .await
                    .map_err(|e| sock("bind", &ep.addr, e))?
                    .to_string();
            } else {
                tokio::time::timeout(cfg.connect_timeout, sub.connect(&ep.addr))
                    .await
                    .map_err(|_| sock("connect", &ep.addr, "no publisher answered in time"))?
                    .map_err(|e| sock("connect", &ep.addr, e))?;
            }
            Ok::<_, EventsError>((sub, endpoint))
        })?;
        Ok(Subscriber {
            rt,
            sub,
            endpoint,
            dealer: None,
            next: cfg.resume_from,
            lost: cfg.resume_from.is_none(),
            started: false,
            pending: VecDeque::new(),
            stats: SubscriberStats::default(),
            first_ts: None,
            cfg,
        })
    }

    /// The SUB endpoint: as bound (with the actual port) when binding.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What the subscriber saw so far.
    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// The sequence number of the next batch to deliver (`None` before the
    /// first one when starting without replay).
    pub fn next_seq(&self) -> Option<u64> {
        self.next
    }

    /// The sequence number needed after everything already queued.
    fn expected(&self) -> Option<u64> {
        self.pending.back().map(|p| p.seq + 1).or(self.next)
    }

    /// The next batch in sequence order, waiting up to `timeout`; `None` if
    /// nothing arrived in time.
    pub fn next_batch(&mut self, timeout: Duration) -> Result<Option<Delivered>, EventsError> {
        let deadline = Instant::now() + timeout;
        if !self.started {
            self.started = true;
            if self.cfg.replay_endpoint.is_some() {
                let from = self.next.unwrap_or(0);
                self.replay(from)?;
            }
        }
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Ok(Some(self.deliver(d)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wait = deadline - now;
            if self.cfg.replay_endpoint.is_some() {
                if let Some(p) = self.cfg.idle_probe {
                    wait = wait.min(p);
                }
            }
            let got = self
                .rt
                .block_on(async { tokio::time::timeout(wait, self.sub.recv()).await });
            match got {
                Err(_) => {
                    // Quiet: probe for batches a PUB may have dropped.
                    if let (Some(_), Some(n)) = (self.cfg.idle_probe, self.expected()) {
                        self.replay(n)?;
                    }
                }
                Ok(Err(e)) => {
                    // The publisher went away; the SUB socket reconnects.
                    tracing::debug!(error = %e, "SUB receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(Ok(msg)) => self.on_live(msg)?,
            }
        }
    }

    fn deliver(&mut self, mut d: Delivered) -> Delivered {
        d.complete = !self.lost;
        if has_clear(&d.batch) {
            self.lost = false;
        }
        self.next = Some(d.seq + 1);
        if d.seq == 0 {
            self.first_ts = Some(d.batch.ts);
        }
        self.stats.delivered += 1;
        if d.replayed {
            self.stats.replayed += 1;
        }
        d
    }

    fn on_live(&mut self, msg: ZmqMessage) -> Result<(), EventsError> {
        let frames = msg.into_vec();
        let [topic, seq, payload] = frames.as_slice() else {
            return Err(EventsError::Protocol(format!(
                "expected 3 frames [topic, seq, payload], got {}",
                frames.len()
            )));
        };
        let seq = seq_of(seq)?;
        let batch = match decode_batch(payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(seq, error = %e, "undecodable KV event batch skipped");
                self.stats.undecodable += 1;
                return Ok(());
            }
        };
        let d = Delivered {
            seq,
            topic: topic.clone(),
            batch,
            replayed: false,
            complete: true,
        };
        match self.expected() {
            None => self.pending.push_back(d),
            Some(n) if seq == n => self.pending.push_back(d),
            Some(_) if seq == 0 && self.first_ts.is_some_and(|t| t != d.batch.ts) => {
                // A new run of the publisher: its stream starts over.
                self.stats.restarts += 1;
                self.pending.clear();
                self.lost = true;
                self.pending.push_back(d);
            }
            Some(n) if seq < n => self.stats.duplicates += 1,
            Some(n) => {
                self.replay(n)?;
                let have = self.expected().unwrap_or(n);
                if seq < have {
                    self.stats.duplicates += 1;
                } else {
                    if seq == have {
                        self.stats.gaps_recovered += 1;
                    } else {
                        self.stats.gaps_lost += 1;
                        self.lost = true;
                        tracing::warn!(from = have, to = seq, "KV event batches lost");
                    }
                    self.pending.push_back(d);
                }
            }
        }
        Ok(())
    }

    /// Ask for every buffered batch from `from` and queue the new ones. A
    /// failed request is logged and counted (what it would have filled stays
    /// a gap).
    fn replay(&mut self, from: u64) -> Result<(), EventsError> {
        if self.cfg.replay_endpoint.is_none() {
            return Ok(());
        }
        self.stats.replay_requests += 1;
        let got = match self.fetch(from) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(from, error = %e, "KV event replay failed");
                self.stats.replay_failures += 1;
                // A broken replay connection is rebuilt on the next request.
                self.dealer = None;
                return Ok(());
            }
        };
        let mut have = self.expected();
        for (topic, seq, payload) in got {
            match have {
                Some(h) if seq < h => continue,
                Some(h) if seq > h => {
                    // The buffer no longer holds what was missed.
                    self.stats.gaps_lost += 1;
                    self.lost = true;
                }
                _ => {}
            }
            let batch = match decode_batch(&payload) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(seq, error = %e, "undecodable replayed batch skipped");
                    self.stats.undecodable += 1;
                    continue;
                }
            };
            self.pending.push_back(Delivered {
                seq,
                topic,
                batch,
                replayed: true,
                complete: true,
            });
            have = Some(seq + 1);
        }
        Ok(())
    }

    /// One replay exchange: `["", from]` out, `["", topic, seq, payload]`
    /// frames in until the end marker.
    fn fetch(&mut self, from: u64) -> Result<Vec<(Bytes, u64, Bytes)>, EventsError> {
        let addr = self.cfg.replay_endpoint.clone().unwrap_or_default();
        let timeout = self.cfg.replay_timeout;
        self.rt.block_on(async {
            if self.dealer.is_none() {
                let mut d = DealerSocket::new();
                tokio::time::timeout(timeout, d.connect(&addr))
                    .await
                    .map_err(|_| sock("connect", &addr, "replay socket did not answer"))?
                    .map_err(|e| sock("connect", &addr, e))?;
                self.dealer = Some(d);
            }
            let dealer = self.dealer.as_mut().expect("just connected");
            let mut req = ZmqMessage::from(Bytes::new());
            req.push_back(Bytes::copy_from_slice(&from.to_be_bytes()));
            tokio::time::timeout(timeout, dealer.send(req))
                .await
                .map_err(|_| sock("send", &addr, "timed out"))?
                .map_err(|e| sock("send", &addr, e))?;
            let mut got = Vec::new();
            loop {
                let msg = tokio::time::timeout(timeout, dealer.recv())
                    .await
                    .map_err(|_| EventsError::Timeout {
                        what: "a replay frame",
                        millis: timeout.as_millis(),
                    })?
                    .map_err(|e| sock("recv", &addr, e))?;
                let frames = msg.into_vec();
                let [delim, topic, seq, payload] = frames.as_slice() else {
                    return Err(EventsError::Protocol(format!(
                        "replay reply of {} frames",
                        frames.len()
                    )));
                };
                if !delim.is_empty() {
                    return Err(EventsError::Protocol(
                        "replay reply without delimiter".into(),
                    ));
                }
                if seq.as_ref() == END_SEQ {
                    return Ok(got);
                }
                got.push((topic.clone(), seq_of(seq)?, payload.clone()));
            }
        })
    }
}

fn sock(action: &'static str, endpoint: &str, e: impl std::fmt::Display) -> EventsError {
    EventsError::Socket {
        action,
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    }
}
