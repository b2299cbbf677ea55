//! The `kvtier` command-line program.

mod plot;
mod replay;
mod sweep;

use crate::replay::ReplayOptions;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kvtier::config::{Config, ConfigError};
use kvtier::logical::{PolicyKind, Tier};
use kvtier_harness::trace::{Trace, EMBEDDED_NAME};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Replay(ReplayArgs),
    /// Measure tier-to-tier migration bandwidth against same-run ceilings.
    Bench(kvtier_harness::migration::BenchArgs),
    /// Hit rate of several eviction policies over several capacities (one
    /// tier), as a table and an SVG plot.
    Sweep(SweepArgs),
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
}

fn sweep(args: SweepArgs) -> Result<()> {
    if let Some(c) = args.capacities.iter().find(|c| **c == 0) {
        anyhow::bail!("--capacities: {c} is not a valid capacity (at least 1 block)");
    }
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
    let points = sweep::run(&hashed, &policies, &args.capacities)?;
    if let Some(p) = &args.plot {
        let svg = sweep::to_svg(&format!("hit rate vs capacity ({})", trace.name), &points);
        std::fs::write(p, svg).with_context(|| format!("cannot write plot {}", p.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&points)?);
    } else {
        print!("{}", sweep::to_table(&points));
    }
    Ok(())
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
}

fn replay(args: ReplayArgs) -> Result<()> {
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
    config.resolve_bytes(
        &config_name,
        shape.block_bytes().map_err(|e| anyhow::anyhow!("{e}"))? as u64,
    )?;
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
    config.validate("command line").map_err(|e| match e {
        ConfigError::Invalid { message, .. } => anyhow::anyhow!(
            "{}",
            message.replace("g1.blocks", "--g1-blocks / g1.blocks")
        ),
        e => e.into(),
    })?;
    let trace = match &args.trace {
        Some(p) => Trace::from_file(p)?,
        None => Trace::embedded(),
    };
    if let Some(d) = &args.g3_dir {
        if args.no_data {
            anyhow::bail!(
                "--g3-dir keeps block bytes on disk: it cannot be combined with --no-data"
            );
        }
        if config.g3.blocks == 0 {
            anyhow::bail!("--g3-dir needs a G3 tier (--g3-blocks N or g3.blocks in the config)");
        }
        config.g3.path = Some(d.clone());
    }
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
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
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
    };
    let outcome = replay::run(&config, &name, &hashed, &opts).map_err(|e| {
        let mismatch = matches!(
            e,
            replay::ReplayError::Setup(kvtier::setup::SetupError::G3Mismatch { .. })
        );
        if mismatch {
            anyhow::anyhow!("replay failed: {e}; use another --g3-dir, or --g3-reset to discard it")
        } else {
            anyhow::Error::new(e).context("replay failed")
        }
    })?;
    if let Some(p) = &args.plot {
        std::fs::write(p, outcome.plot_svg())
            .with_context(|| format!("cannot write plot {}", p.display()))?;
    }
    let report = &outcome.report;
    if args.metrics {
        eprint!("{}", outcome.prometheus);
    }
    if args.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.to_table());
    }
    if report.data_mismatches > 0 {
        anyhow::bail!(
            "{} served blocks had wrong bytes: this is a bug, please report it",
            report.data_mismatches
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Bench(args) => kvtier_harness::migration::run(&args),
        Command::Sweep(args) => sweep(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
