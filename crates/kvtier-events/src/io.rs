//! The publisher's socket thread: PUB for live batches, ROUTER for replay.

use crate::endpoint::Endpoint;
use crate::error::EventsError;
use crate::publisher::Shared;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::{
    PubSocket, RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketEvent, SocketRecv,
    SocketSend, ZmqMessage,
};

/// vLLM's end-of-replay sequence frame: -1 as 8 signed big-endian bytes.
pub const END_SEQ: [u8; 8] = (-1i64).to_be_bytes();

/// Everything the socket thread needs.
pub(crate) struct IoSetup {
    pub shared: Arc<Shared>,
    pub batches: mpsc::Receiver<(u64, Bytes)>,
    pub endpoint: Endpoint,
    pub replay: Option<Endpoint>,
    pub linger: Duration,
    pub connect_timeout: Duration,
    /// Told the endpoints as bound (or why not) once the sockets are up.
    pub ready: std::sync::mpsc::Sender<Result<(String, Option<String>), EventsError>>,
}

fn socket_err(action: &'static str, endpoint: &str, e: impl std::fmt::Display) -> EventsError {
    EventsError::Socket {
        action,
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    }
}

/// Body of the socket thread.
pub(crate) fn run(setup: IoSetup) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(source) => {
            let _ = setup.ready.send(Err(EventsError::Start {
                what: "socket runtime",
                source,
            }));
            return;
        }
    };
    rt.block_on(serve(setup));
}

/// Bind or connect the PUB socket and open the ROUTER; returns the ROUTER
/// and both endpoints.
async fn open(
    setup: &IoSetup,
    pub_socket: &mut PubSocket,
) -> Result<(Option<RouterSocket>, String, Option<String>), EventsError> {
    let ep = &setup.endpoint;
    let bound = if ep.bind {
        pub_socket
            .bind(&ep.addr)
            .await
            .map_err(|e| socket_err("bind", &ep.addr, e))?
            .to_string()
    } else {
        tokio::time::timeout(setup.connect_timeout, pub_socket.connect(&ep.addr))
            .await
            .map_err(|_| socket_err("connect", &ep.addr, "no peer answered in time"))?
            .map_err(|e| socket_err("connect", &ep.addr, e))?;
        ep.addr.clone()
    };
    let (router, replay) = match &setup.replay {
        Some(r) => {
            let mut router = RouterSocket::new();
            let bound = router
                .bind(&r.addr)
                .await
                .map_err(|e| socket_err("bind", &r.addr, e))?;
            (Some(router), Some(bound.to_string()))
        }
        None => (None, None),
    };
    Ok((router, bound, replay))
}

async fn next_request(rx: &mut Option<RouterRecvHalf>) -> Option<ZmqMessage> {
    match rx {
        Some(r) => match r.recv().await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(error = %e, "replay socket receive failed");
                None
            }
        },
        None => std::future::pending().await,
    }
}

fn on_monitor(shared: &Shared, ev: Option<SocketEvent>) {
    match ev {
        Some(SocketEvent::Accepted(..)) | Some(SocketEvent::Connected(..)) => {
            shared.report(|p| p.subscribers += 1);
        }
        Some(SocketEvent::Disconnected(_)) => {
            shared.report(|p| p.subscribers = p.subscribers.saturating_sub(1));
        }
        _ => return,
    }
    let n = shared.progress.lock().subscribers;
    shared.metrics.subscribers.store(n, Ordering::Relaxed);
}

async fn serve(mut setup: IoSetup) {
    let mut pub_socket = PubSocket::new();
    // Before connecting, so that no connection goes unseen.
    let mut monitor = pub_socket.monitor();
    let (router, endpoint, replay) = match open(&setup, &mut pub_socket).await {
        Ok(s) => s,
        Err(e) => {
            let _ = setup.ready.send(Err(e));
            return;
        }
    };
    let (router_tx, mut router_rx) = match router {
        Some(r) => {
            let (tx, rx) = r.split();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let _ = setup.ready.send(Ok((endpoint, replay)));
    let shared = setup.shared.clone();
    loop {
        tokio::select! {
            b = setup.batches.recv() => match b {
                Some((seq, payload)) => {
                    let mut m = ZmqMessage::from(shared.topic.clone());
                    m.push_back(Bytes::copy_from_slice(&seq.to_be_bytes()));
                    m.push_back(payload);
                    // A PUB send only queues (dropping for slow subscribers).
                    if let Err(e) = pub_socket.send(m).await {
                        tracing::debug!(error = %e, "PUB send failed");
                    }
                    shared.report(|p| p.sent = seq + 1);
                }
                None => break,
            },
            req = next_request(&mut router_rx) => {
                if let (Some(req), Some(tx)) = (req, &router_tx) {
                    answer(&shared, tx.clone(), req);
                }
            }
            ev = monitor.next() => on_monitor(&shared, ev),
        }
    }
    // Stopping: keep answering replay requests (and let PUB queues drain).
    let deadline = tokio::time::Instant::now() + setup.linger;
    loop {
        tokio::select! {
            req = next_request(&mut router_rx) => {
                if let (Some(req), Some(tx)) = (req, &router_tx) {
                    answer(&shared, tx.clone(), req);
                }
            }
            ev = monitor.next() => on_monitor(&shared, ev),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
}

/// Answer one replay request on its own task.
fn answer(shared: &Arc<Shared>, mut tx: RouterSendHalf, req: ZmqMessage) {
    let frames = req.into_vec();
    // [identity, empty delimiter, start] as a REQ (or a DEALER sending a
    // delimiter) sends it.
    let (id, start) = match frames.as_slice() {
        [id, delim, start] if delim.is_empty() && start.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(start);
            (id.clone(), u64::from_be_bytes(b))
        }
        _ => {
            tracing::warn!(frames = frames.len(), "invalid replay request ignored");
            return;
        }
    };
    let m = &shared.metrics;
    m.replay_requests.fetch_add(1, Ordering::Relaxed);
    let (batches, oldest) = {
        let ring = shared.ring.lock();
        let oldest = ring.front().map(|(s, _)| *s);
        let batches: Vec<(u64, Bytes)> =
            ring.iter().filter(|(s, _)| *s >= start).cloned().collect();
        (batches, oldest)
    };
    let next = shared.next_seq.load(Ordering::Acquire);
    let covered = match oldest {
        Some(o) => start >= o,
        None => start >= next,
    };
    if !covered {
        // Gone from the buffer: the subscriber resynchronises from a
        // checkpoint on the live stream.
        m.replay_unservable.fetch_add(1, Ordering::Relaxed);
        shared.checkpoint.store(true, Ordering::Release);
    }
    m.replay_batches
        .fetch_add(batches.len() as u64, Ordering::Relaxed);
    let topic = shared.topic.clone();
    tokio::spawn(async move {
        for (seq, payload) in batches {
            let mut msg = ZmqMessage::from(id.clone());
            msg.push_back(Bytes::new());
            msg.push_back(topic.clone());
            msg.push_back(Bytes::copy_from_slice(&seq.to_be_bytes()));
            msg.push_back(payload);
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        let mut end = ZmqMessage::from(id);
        end.push_back(Bytes::new());
        end.push_back(Bytes::new());
        end.push_back(Bytes::from_static(&END_SEQ));
        end.push_back(Bytes::new());
        let _ = tx.send(end).await;
    });
}
