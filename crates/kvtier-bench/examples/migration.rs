//! Runs the tier-migration benchmark: `cargo run --release -p kvtier-bench
//! --example migration -- [--quick] [--json] [--dir DIR] ...`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: kvtier_bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    kvtier_bench::run(&Cli::parse().args)
}
