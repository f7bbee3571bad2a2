use std::process::ExitCode;

use clap::Parser;

use boomerang::batchrun::{UsageError, EXIT_RUN_ERROR, EXIT_USAGE};
use boomerang::cli::{Command, Opts};
use boomerang::manifest::Manifest;

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(opts) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_RUN_ERROR)
            }
        }
    }
}

/// A config error is the caller's mistake: exit code 2, like clap's own.
fn usage<T>(result: anyhow::Result<T>) -> anyhow::Result<T> {
    result.map_err(|error| UsageError(format!("{error:#}")).into())
}

fn run(opts: Opts) -> anyhow::Result<ExitCode> {
    match opts.command {
        Command::Augment(args) => {
            let counts = boomerang::augment::run(&usage(args.config())?)?;
            Ok(ExitCode::from(counts.exit_code()))
        }
        Command::Enhance(args) => {
            let counts = boomerang::enhance::run(&usage(args.config())?)?;
            Ok(ExitCode::from(counts.exit_code()))
        }
        Command::Sample(args) => {
            boomerang::sample::run(&args.config()?)?;
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Command::FetchOnnxruntime => {
            let path = boomerang::runtime::fetch_into_cache()?;
            println!(
                "ONNX Runtime {} installed at {}",
                boomerang::runtime::ORT_VERSION,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
