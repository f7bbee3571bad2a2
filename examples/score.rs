//! `boomerang score` without the rest of the CLI:
//! cargo run --example score -- IMAGE_A IMAGE_B [--embedder NAME] [--json] [--onnxruntime PATH]

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: boomerang::certify::score::ScoreArgs,
}

fn main() -> anyhow::Result<()> {
    boomerang::certify::score::run(&Cli::parse().args)
}
