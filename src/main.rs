use std::process::ExitCode;

use clap::Parser;

use boomerang::cli::{Command, Opts, ReportCommand};
use boomerang::manifest::Manifest;

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(opts) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> anyhow::Result<ExitCode> {
    match opts.command {
        Command::Sample(args) => boomerang::sample::run(&args.config()?),
        Command::Score(args) => boomerang::certify::score::run(&args),
        Command::Audit(args) => {
            let outcome = boomerang::audit::run(&args, None)?;
            return Ok(ExitCode::from(outcome.code()));
        }
        Command::Report(ReportCommand::Merge(args)) => {
            boomerang::audit::merge::run(&args).map(|_| ())
        }
        Command::Manifest(args) => {
            let manifest = Manifest::compute(&args.dir)?;
            if args.write {
                let path = manifest.write(&args.dir)?;
                println!("wrote {}", path.display());
            } else {
                manifest.check_against_file(&args.dir)?;
                print!("{}", manifest.to_text());
            }
            println!("model hash {}", manifest.model_hash());
            Ok(())
        }
        Command::FetchOnnxruntime => {
            let path = boomerang::runtime::fetch_into_cache()?;
            println!(
                "ONNX Runtime {} installed at {}",
                boomerang::runtime::ORT_VERSION,
                path.display()
            );
            Ok(())
        }
    }
    .map(|()| ExitCode::SUCCESS)
}
