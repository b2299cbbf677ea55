//! The `kvtier` command-line program.

mod diag;
mod events;
mod peers;
mod plot;
mod replay;
mod report;
mod signals;
mod sweep;

use crate::replay::{ReplayError, ReplayOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kvtier::config::{Config, ConfigError};
use kvtier::logical::{PolicyKind, Tier};
use kvtier_harness::trace::{Trace, EMBEDDED_NAME};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write `text` to standard output; a closed or full stdout is an error
/// naming it, never a panic.
fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Open an output file now, before any work, so a bad path fails at once
/// instead of after the run. Returns the open file.
fn open_output(p: &Path, what: &str) -> Result<std::fs::File> {
    std::fs::File::create(p).with_context(|| format!("cannot write {what} {}", p.display()))
}

/// Multi-tier KV-cache manager for LLM inference.
#[derive(Parser, Debug)]
#[command(name = "kvtier", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a request trace through the cache and report hit rates and speed.
    Replay(Box<ReplayArgs>),
    /// Measure tier-to-tier migration bandwidth against same-run ceilings.
    Bench(kvtier_harness::migration::BenchArgs),
    /// Hit rate of several eviction policies over several capacities (one
    /// tier), as a table and an SVG plot.
    Sweep(SweepArgs),
    /// Subscribe to a KV-event publisher (a kvtier replay, vLLM, SGLang) and
    /// print its events, checking sequence continuity and set consistency.
    Events(events::EventsArgs),
}

#[derive(clap::Args, Debug)]
struct SweepArgs {
    /// Mooncake-format JSONL trace; the embedded synthetic trace when absent.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Policies to compare (comma-separated); every policy when absent.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    policies: Vec<PolicyKind>,
    /// Capacities in blocks (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "N,...",
          default_values_t = vec![1000usize, 2000, 4000, 6000, 10000, 20000])]
    capacities: Vec<usize>,
    /// Write an SVG of hit rate against capacity.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print JSON (an array of points) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also replay kvbm-logical's policies (lru, multi-lru, lineage) with the
    /// peer benchmark binary built from `benches/peer`, in the same table and
    /// plot (needs --trace).
    #[arg(long, value_name = "BIN", num_args = 0..=1,
          default_missing_value = "benches/peer/target/release/kvbm-peer-bench")]
    peers: Option<PathBuf>,
    /// Add the trace's distinct-block count (every block fits) to the capacities.
    #[arg(long)]
    distinct: bool,
}

fn sweep(args: SweepArgs) -> Result<()> {
    if let Some(c) = args.capacities.iter().find(|c| **c == 0) {
        anyhow::bail!("--capacities: {c} is not a valid capacity (at least 1 block)");
    }
    let plot_file = match &args.plot {
        Some(p) => Some(open_output(p, "plot")?),
        None => None,
    };
    let trace = match &args.trace {
        Some(p) => Trace::from_file(p)?,
        None => Trace::embedded(),
    };
    let hashed = trace.hashed(Config::builtin().cache_salt());
    let policies = if args.policies.is_empty() {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies.clone()
    };
    let mut capacities = args.capacities.clone();
    if args.distinct {
        capacities.push(sweep::distinct_blocks(&hashed));
    }
    let mut points = sweep::run(&hashed, &policies, &capacities)?;
    if let Some(bin) = &args.peers {
        let Some(t) = &args.trace else {
            anyhow::bail!("--peers needs --trace (the peer binary reads a trace file)");
        };
        points.extend(peers::run(bin, t, &capacities)?);
    }
    if let (Some(p), Some(mut f)) = (&args.plot, plot_file) {
        let svg = sweep::to_svg(&format!("hit rate vs capacity ({})", trace.name), &points);
        f.write_all(svg.as_bytes())
            .with_context(|| format!("cannot write plot {}", p.display()))?;
    }
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string(&points)?))
    } else {
        print_out(&sweep::to_table(&points))
    }
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// Mooncake-format JSONL trace; the embedded synthetic trace when absent.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// TOML config (tier sizes, policies); command-line flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// G1 (device) capacity in blocks.
    #[arg(long, value_name = "N")]
    g1_blocks: Option<usize>,
    /// G2 (host) capacity in blocks; 0 = absent.
    #[arg(long, value_name = "N")]
    g2_blocks: Option<usize>,
    /// G3 (disk) capacity in blocks; 0 = absent.
    #[arg(long, value_name = "N")]
    g3_blocks: Option<usize>,
    /// Eviction policy for every tier (overrides the config).
    #[arg(long, value_name = "NAME")]
    policy: Option<PolicyKind>,
    /// Logical replay only: no block bytes are moved or verified.
    #[arg(long)]
    no_data: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Replay R times (fresh cache each time) and report the fastest run
    /// (one tier without data).
    #[arg(long, value_name = "R", default_value_t = 1)]
    repeat: usize,
    /// Keep N requests in flight (their blocks in use), as a busy server does.
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,
    /// Write an SVG of the hit rate per tier over the run.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also measure the speed floor in the same run (logical-only replay time
    /// plus bytes moved over measured memcpy and disk bandwidth).
    #[arg(long)]
    floor: bool,
    /// Print the cache's Prometheus metrics after the run (stderr).
    #[arg(long)]
    metrics: bool,
    /// Persistent G3 in DIR: reopened (and recovered) if it exists, flushed
    /// and kept at exit, so a later replay starts with its blocks.
    #[arg(long, value_name = "DIR")]
    g3_dir: Option<PathBuf>,
    /// Start-up check of a persistent G3: `fast` (journal record checksums;
    /// every block is still verified when onboarded) or `full` (re-read and
    /// checksum every block).
    #[arg(long, value_name = "MODE", default_value = "fast", value_parser = ["fast", "full"])]
    verify: String,
    /// Discard a G3 directory written with another layout, salt or format
    /// (it is refused otherwise).
    #[arg(long)]
    g3_reset: bool,
    /// Append the acknowledged G3 record count to FILE after every journal
    /// commit (for crash tests).
    #[arg(long, value_name = "FILE", hide = true)]
    ack_log: Option<PathBuf>,
    /// Proactive cleaning: keep N of G1's next-to-evict blocks already copied
    /// to G2 (write-back); 0 turns it off. Overrides the config.
    #[arg(long, value_name = "N")]
    clean_ahead: Option<usize>,
    /// Skip the first N requests of the trace.
    #[arg(long, value_name = "N", default_value_t = 0)]
    skip: usize,
    /// Replay at most N requests (after --skip).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// A G4 tier shared by many nodes: `s3://bucket/prefix` (endpoint and
    /// credentials from the AWS_* environment variables) or `file:///path`.
    /// Overrides the config's `[g4] url`.
    #[arg(long, value_name = "URL")]
    g4: Option<String>,
    /// When G4 writes fall behind: `skip` blocks (counted) or `wait`.
    #[arg(long, value_name = "MODE", value_parser = ["skip", "wait"])]
    g4_backpressure: Option<String>,
    /// G4 byte budget (objects of this salt and layout); 0 = unbounded.
    #[arg(long, value_name = "BYTES")]
    g4_capacity: Option<u64>,
    #[command(flatten)]
    events: events::PublishArgs,
}

/// The remedy a command-line user has for a setup error, if any: the
/// library's errors name no flag, the CLI adds them here.
fn hint(e: &ReplayError) -> Option<String> {
    use kvtier::setup::SetupError;
    use kvtier_disk::journal::{HeaderField, JournalError};
    let ReplayError::Setup(SetupError::G3(j)) = e else {
        return match e {
            ReplayError::Setup(SetupError::TooLarge { .. }) => Some(
                "use smaller tiers (--g1-blocks, --g2-blocks, or the config's blocks / bytes), or --no-data for a logical replay".into(),
            ),
            _ => None,
        };
    };
    match j {
        JournalError::Locked { .. } => Some("wait for the other process, or use another --g3-dir".into()),
        JournalError::Mismatch {
            field: HeaderField::NumBlocks,
            found,
            ..
        } => Some(format!(
            "to keep its blocks, rerun with --g3-blocks {found}; to discard them and use the new size, add --g3-reset"
        )),
        JournalError::Mismatch { .. }
        | JournalError::BadHeader { .. }
        | JournalError::DataMismatch { .. } => Some(
            "rerun with the configuration it was written with, use another --g3-dir, or add --g3-reset to discard its blocks".into(),
        ),
        JournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
            Some("add --g3-reset to replace it (kvtier removes the link or file, never what a link points at)".into())
        }
        JournalError::Data(kvtier_disk::DiskError::Open { .. } | kvtier_disk::DiskError::WrongSize { .. }) => {
            Some("add --g3-reset to recreate the data file".into())
        }
        JournalError::Data(kvtier_disk::DiskError::NoSpace { .. }) => {
            Some("free disk space, use a smaller --g3-blocks, or another --g3-dir".into())
        }
        _ => None,
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::builtin(),
    };
    let config_name = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "configs/default.toml (built in)".into());
    let (shape, _) = config.block_shape(&config_name)?;
    let block_bytes = shape.block_bytes().map_err(|e| anyhow::anyhow!("{e}"))? as u64;
    config.resolve_bytes(&config_name, block_bytes)?;
    for (tier, n) in [
        (Tier::G1, args.g1_blocks),
        (Tier::G2, args.g2_blocks),
        (Tier::G3, args.g3_blocks),
    ] {
        if let Some(n) = n {
            config.tier_mut(tier).blocks = n;
        }
    }
    if let Some(n) = args.clean_ahead {
        config.offload.clean_ahead = n;
    }
    if let Some(p) = args.policy {
        for tier in Tier::ALL {
            config.tier_mut(tier).policy = Some(p);
        }
    }
    if let Some(url) = &args.g4 {
        match &mut config.g4 {
            Some(g) => g.url = url.clone(),
            None => config.g4 = Some(kvtier::remote::RemoteConfig::new(url.clone())),
        }
    }
    if args.g4_backpressure.is_some() || args.g4_capacity.is_some() {
        let Some(g) = config.g4.as_mut() else {
            anyhow::bail!("--g4-backpressure and --g4-capacity need a G4 tier (--g4 URL or [g4] in the config)");
        };
        if let Some(b) = &args.g4_backpressure {
            g.backpressure = b
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--g4-backpressure: {e}"))?;
        }
        if let Some(c) = args.g4_capacity {
            g.capacity = c;
        }
    }
    if config.g4.is_some() && args.no_data {
        anyhow::bail!("--g4 shares block bytes: it cannot be combined with --no-data");
    }
    config.validate("command line").map_err(|e| match e {
        ConfigError::Invalid { message, .. } => anyhow::anyhow!(
            "{}",
            message.replace("g1.blocks", "--g1-blocks / g1.blocks")
        ),
        e => e.into(),
    })?;
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let events = args.events.resolve(&config, shape.block_size as u32)?;
    if events.is_some() && args.repeat > 1 {
        anyhow::bail!("--events publishes one replay: it cannot be combined with --repeat");
    }
    if args.repeat == 0 {
        anyhow::bail!("--repeat must be at least 1");
    }
    if args.limit == Some(0) {
        anyhow::bail!("--limit 0 replays nothing: give at least 1 request");
    }
    if let Some(d) = &args.g3_dir {
        if args.no_data {
            anyhow::bail!(
                "--g3-dir keeps block bytes on disk: it cannot be combined with --no-data"
            );
        }
        if config.g3.blocks == 0 {
            anyhow::bail!("--g3-dir needs a G3 tier (--g3-blocks N or g3.blocks in the config)");
        }
        if args.repeat > 1 {
            anyhow::bail!("--repeat cannot be combined with --g3-dir: each repetition would start from the previous one's blocks");
        }
        config.g3.path = Some(d.clone());
    }
    if args.g3_reset && config.g3.path.is_none() {
        anyhow::bail!(
            "--g3-reset applies to a persistent G3 (--g3-dir DIR or g3.path in the config)"
        );
    }
    // Outputs first: a bad path must fail before the run, not after it.
    let plot_file = match &args.plot {
        Some(p) => Some(open_output(p, "plot")?),
        None => None,
    };
    kvtier::setup::check_resources(&config, block_bytes, !args.no_data).map_err(|e| {
        let e = ReplayError::Setup(e);
        match hint(&e) {
            Some(h) => anyhow::anyhow!("{e}\n  hint: {h}"),
            None => anyhow::anyhow!("{e}"),
        }
    })?;
    let trace = match &args.trace {
        Some(p) => Trace::from_file(p)?,
        None => Trace::embedded(),
    };
    let mut hashed = trace.hashed(config.cache_salt());
    if args.skip > 0 || args.limit.is_some() {
        hashed = hashed.slice(args.skip, args.limit.unwrap_or(usize::MAX));
        if hashed.is_empty() {
            anyhow::bail!(
                "--skip {} leaves no request of the trace's {}",
                args.skip,
                trace.requests.len()
            );
        }
    }
    let name = args
        .trace
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| EMBEDDED_NAME.to_string());
    let opts = ReplayOptions {
        data: !args.no_data,
        repeat: args.repeat,
        concurrency: args.concurrency,
        progress: !args.json,
        timeline: args.plot.is_some(),
        floor: args.floor,
        persist: kvtier::setup::PersistOptions {
            verify_full: args.verify == "full",
            reset_on_mismatch: args.g3_reset,
            ack_log: args.ack_log.clone(),
        },
        stop: Some(&signals::STOP),
        events,
    };
    let outcome = replay::run(&config, &name, &hashed, &opts).map_err(|e| match hint(&e) {
        Some(h) => anyhow::anyhow!("replay failed: {e}\n  hint: {h}"),
        None => anyhow::anyhow!("replay failed: {e}"),
    })?;
    let report = &outcome.report;
    if report.truncated_requests > 0 {
        tracing::warn!(
            "{} requests are longer than G1's {} blocks: cut to G1's capacity ({} blocks not looked up; counted in the report as truncated)",
            report.truncated_requests,
            config.g1.blocks,
            report.truncated_blocks
        );
    }
    // The report of the work done is printed whatever failed after it.
    let mut failures: Vec<String> = Vec::new();
    if let (Some(p), Some(mut f)) = (&args.plot, plot_file) {
        if let Err(e) = f.write_all(outcome.plot_svg().as_bytes()) {
            failures.push(format!("cannot write plot {}: {e}", p.display()));
        }
    }
    if args.metrics {
        let _ = std::io::stderr().write_all(outcome.prometheus.as_bytes());
    }
    let text = if args.json {
        format!("{}\n", serde_json::to_string(report)?)
    } else {
        report.to_table()
    };
    print_out(&text)?;
    if let Some(e) = &report.error {
        failures.insert(0, e.clone());
    }
    if report.data_mismatches > 0 {
        failures.push(format!(
            "{} served blocks had wrong bytes: this is a bug, please report it",
            report.data_mismatches
        ));
    }
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    if let Some(sig) = signals::received() {
        eprintln!(
            "interrupted by signal {sig}: {} of {} requests replayed",
            report.requests,
            report.requests + report.requests_not_run
        );
        return Ok(ExitCode::from(128 + sig as u8));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    diag::init();
    signals::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(*args),
        Command::Bench(args) => kvtier_harness::migration::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Sweep(args) => sweep(args).map(|()| ExitCode::SUCCESS),
        Command::Events(args) => events::run(args).map(|()| ExitCode::SUCCESS),
    };
    for line in diag::summary() {
        eprintln!("note: {line}");
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
