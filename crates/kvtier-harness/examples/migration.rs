//! Runs the tier-migration benchmark: `cargo run --release -p kvtier-harness
//! --example migration -- [--quick] [--json] [--dir DIR] ...`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: kvtier_harness::migration::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    kvtier_harness::migration::run(&Cli::parse().args)
}
