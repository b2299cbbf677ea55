//! KV events in the CLI: publishing every tier's contents during `kvtier
//! replay`, and `kvtier events`, a subscriber for operators.

use anyhow::{Context, Result};
use kvtier::config::Config;
use kvtier::events::{
    Endpoint, EventsConfig, EventsError, Low64, MetricsSnapshot, Mirror, Publisher, StartOptions,
    Subscriber, SubscriberConfig, WireEvent, WireFormat,
};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a connecting PUB waits for its peer at least.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the publisher to drain at the end of a replay.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// `kvtier replay` flags that publish KV events.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct PublishArgs {
    /// Publish every tier's contents as KV events (vLLM's format) on this ZMQ
    /// PUB endpoint: binds if it contains `*`, `::` or `ipc://`, otherwise
    /// connects. Overrides `events.endpoint` of the config.
    #[arg(long = "events", value_name = "ENDPOINT")]
    pub endpoint: Option<String>,
    /// Answer replay requests on this ROUTER endpoint (bound).
    #[arg(long = "events-replay", value_name = "ENDPOINT")]
    pub replay: Option<String>,
    /// Event encoding: `map` (vLLM >= 0.33, Dynamo) or `array` (SGLang,
    /// older vLLM, llm-d).
    #[arg(long = "events-format", value_name = "FORMAT")]
    pub format: Option<WireFormat>,
    /// Before replaying, wait up to SECONDS for a first subscriber, so that it
    /// sees every event from sequence 0.
    #[arg(long = "events-wait-subscriber", value_name = "SECONDS")]
    pub wait_subscriber: Option<f64>,
}

/// Publishing, resolved from the config and the flags.
#[derive(Clone, Debug)]
pub struct Publishing {
    /// The publisher's config.
    pub config: EventsConfig,
    /// Tokens per block (the layout's).
    pub block_size: u32,
    /// Wait for a first subscriber before the replay.
    pub wait: Option<Duration>,
}

/// What the publisher did during a replay (`events` in `--json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventsReport {
    /// The PUB endpoint (bound address when bound).
    pub endpoint: String,
    /// The bound replay endpoint.
    pub replay_endpoint: Option<String>,
    /// `map` or `array`.
    pub format: &'static str,
    /// Whether a subscriber connected before the replay (when asked to wait).
    pub subscriber_waited: Option<bool>,
    /// Seconds from the end of the replay until everything was published.
    pub flush_seconds: f64,
    /// Router events published per second, from the replay's start to the
    /// end of the flush.
    pub events_per_s: f64,
    /// The publisher's counters.
    pub metrics: MetricsSnapshot,
}

impl PublishArgs {
    /// Publishing for this replay: when the flags or the config ask for it.
    pub fn resolve(&self, config: &Config, block_size: u32) -> Result<Option<Publishing>> {
        let mut ev = match (&config.events, &self.endpoint) {
            (None, None) => {
                anyhow::ensure!(
                    self.replay.is_none()
                        && self.format.is_none()
                        && self.wait_subscriber.is_none(),
                    "--events-replay, --events-format and --events-wait-subscriber need --events ENDPOINT (or an [events] table in the config)"
                );
                return Ok(None);
            }
            (Some(c), _) => c.clone(),
            (None, Some(_)) => EventsConfig::default(),
        };
        if let Some(e) = &self.endpoint {
            ev.endpoint = e.clone();
            ev.bind = None;
        }
        if let Some(r) = &self.replay {
            ev.replay_endpoint = Some(r.clone());
        }
        if let Some(f) = self.format {
            ev.format = f;
        }
        ev.validate().map_err(|m| anyhow::anyhow!("{m}"))?;
        // Refuse an unusable endpoint before the cache is built.
        Endpoint::resolve(&ev.endpoint, ev.bind)?;
        if let Some(r) = &ev.replay_endpoint {
            Endpoint::resolve(r, Some(true))?;
        }
        let wait = match self.wait_subscriber {
            Some(s) if !(s.is_finite() && s >= 0.0) => {
                anyhow::bail!("--events-wait-subscriber {s}: expected a number of seconds >= 0")
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(Some(Publishing {
            config: ev,
            block_size,
            wait,
        }))
    }
}

impl Publishing {
    /// Start publishing `stores` (kvtier's own hashes, low 64 bits), after
    /// waiting for a subscriber if asked.
    pub fn start(
        &self,
        stores: &[kvtier_logical::EventSource],
    ) -> Result<(Publisher, Option<bool>), EventsError> {
        let p = Publisher::start(
            &self.config,
            stores,
            Box::new(Low64),
            StartOptions {
                block_size: self.block_size,
                connect_timeout: self.wait.unwrap_or_default().max(CONNECT_TIMEOUT),
                wait_subscriber: self.wait,
            },
        )?;
        let waited = p.waited_for_subscriber();
        if waited == Some(false) {
            tracing::warn!(
                "no KV event subscriber within {:.1} s; replaying anyway",
                self.wait.unwrap_or_default().as_secs_f64()
            );
        }
        Ok((p, waited))
    }

    /// Publish what is left, stop the publisher (after its linger) and report.
    pub fn finish(
        &self,
        p: Publisher,
        waited: Option<bool>,
        replay_seconds: f64,
    ) -> Result<EventsReport, EventsError> {
        let t = Instant::now();
        p.flush(FLUSH_TIMEOUT)?;
        let flush_seconds = t.elapsed().as_secs_f64();
        let metrics = p.metrics();
        let report = EventsReport {
            endpoint: p.endpoint().to_string(),
            replay_endpoint: p.replay_endpoint().map(String::from),
            format: self.config.format.name(),
            subscriber_waited: waited,
            flush_seconds,
            events_per_s: metrics.events as f64 / (replay_seconds + flush_seconds).max(1e-9),
            metrics,
        };
        p.shutdown();
        Ok(report)
    }
}

/// `kvtier events`: subscribe to a publisher and print its events.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// The publisher's PUB endpoint (connects; binds a wildcard `*`/`::`
    /// endpoint, for publishers that connect).
    #[arg(value_name = "ENDPOINT")]
    endpoint: String,
    /// The publisher's replay endpoint: missed batches are fetched from it,
    /// and everything from sequence 0 at start.
    #[arg(long, value_name = "ENDPOINT")]
    replay: Option<String>,
    /// Bind ENDPOINT instead of connecting to it.
    #[arg(long)]
    bind: bool,
    /// Subscribe to this topic prefix only.
    #[arg(long, default_value = "")]
    topic: String,
    /// Print one JSON object per batch instead of one line per event.
    #[arg(long)]
    json: bool,
    /// Check the stream: sequence numbers without lost gaps, no removal of an
    /// unknown block, no double store; exit non-zero on a violation.
    #[arg(long)]
    check: bool,
    /// Exit after SECONDS without a batch (default: run until killed).
    #[arg(long, value_name = "SECONDS")]
    idle_exit: Option<f64>,
    /// Exit after N batches.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

fn short(hashes: &[u64]) -> String {
    let mut s: Vec<String> = hashes
        .iter()
        .take(6)
        .map(|h| format!("{h:#018x}"))
        .collect();
    if hashes.len() > 6 {
        s.push(format!("... ({} more)", hashes.len() - 6));
    }
    s.join(" ")
}

fn event_line(seq: u64, ev: &WireEvent) -> String {
    match ev {
        WireEvent::BlockStored {
            block_hashes,
            parent_block_hash,
            medium,
            token_ids,
            ..
        } => format!(
            "{seq} BlockStored {} {} blocks parent={} tokens={} [{}]",
            medium.as_deref().unwrap_or("-"),
            block_hashes.len(),
            parent_block_hash.map_or("none".into(), |p| format!("{p:#018x}")),
            token_ids.len(),
            short(block_hashes)
        ),
        WireEvent::BlockRemoved {
            block_hashes,
            medium,
        } => format!(
            "{seq} BlockRemoved {} {} blocks [{}]",
            medium.as_deref().unwrap_or("-"),
            block_hashes.len(),
            short(block_hashes)
        ),
        WireEvent::AllBlocksCleared => format!("{seq} AllBlocksCleared"),
    }
}

/// Run `kvtier events`.
pub fn run(args: EventsArgs) -> Result<()> {
    let mut cfg = SubscriberConfig::new(args.endpoint.clone(), args.replay.clone());
    cfg.topic = args.topic.clone();
    if args.bind {
        cfg.bind = Some(true);
    }
    let idle = match args.idle_exit {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            anyhow::bail!("--idle-exit {s}: expected a number of seconds > 0")
        }
        s => s.map(Duration::from_secs_f64),
    };
    let mut sub = Subscriber::connect(cfg)
        .with_context(|| format!("cannot subscribe to {}", args.endpoint))?;
    let mut mirror = Mirror::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut last = Instant::now();
    let (mut batches, mut events) = (0u64, 0u64);
    loop {
        if args.count.is_some_and(|n| batches >= n) {
            break;
        }
        if idle.is_some_and(|i| last.elapsed() >= i) {
            break;
        }
        let Some(d) = sub.next_batch(Duration::from_millis(200))? else {
            out.flush()?;
            continue;
        };
        last = Instant::now();
        batches += 1;
        events += d.batch.events.len() as u64;
        mirror.apply(&d);
        if args.json {
            let line = serde_json::json!({
                "seq": d.seq,
                "topic": String::from_utf8_lossy(&d.topic),
                "ts": d.batch.ts,
                "data_parallel_rank": d.batch.data_parallel_rank,
                "replayed": d.replayed,
                "complete": d.complete,
                "events": d.batch.events,
            });
            writeln!(out, "{line}")?;
        } else {
            for ev in &d.batch.events {
                writeln!(out, "{}", event_line(d.seq, ev))?;
            }
        }
    }
    out.flush()?;
    let st = sub.stats();
    let e = mirror.errors();
    let sizes: Vec<String> = mirror
        .sizes()
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    eprintln!(
        "events: {batches} batches ({} replayed), {events} events; next seq {}; held: {}; gaps recovered {}, lost {}; removed-unknown {}, stored-present {}; state {}",
        st.replayed,
        sub.next_seq().map_or("-".into(), |n| n.to_string()),
        if sizes.is_empty() { "none".into() } else { sizes.join(", ") },
        st.gaps_recovered,
        st.gaps_lost,
        e.removed_unknown,
        e.stored_present,
        if mirror.is_exact() { "exact" } else { "incomplete" },
    );
    if args.check {
        anyhow::ensure!(
            st.gaps_lost == 0,
            "check failed: {} gaps could not be recovered",
            st.gaps_lost
        );
        anyhow::ensure!(
            e.removed_unknown == 0 && e.stored_present == 0,
            "check failed: {} removals of unknown blocks, {} stores of held blocks",
            e.removed_unknown,
            e.stored_present
        );
        anyhow::ensure!(
            mirror.is_exact(),
            "check failed: the stream was never complete (start with --replay, or before the publisher)"
        );
    }
    Ok(())
}
