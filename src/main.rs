use std::process::ExitCode;

use clap::Parser;

use boomerang::cli::{Command, Opts, ReportCommand};
use boomerang::manifest::Manifest;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`)
    // instead of panicking on the failed write.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        Command::Anonymize(args) => boomerang::anonymize::command(&args),
        Command::Augment(args) => Ok(boomerang::augment::run(&args.config()?)?.exit_code()),
        Command::Enhance(args) => Ok(boomerang::enhance::run(&args.config()?)?.exit_code()),
        Command::Sample(args) => {
            boomerang::sample::run(&args.config()?).map(|()| ExitCode::SUCCESS)
        }
        Command::Score(args) => boomerang::certify::score::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Audit(mut args) => {
            // --recompute both re-scores and re-runs; --seed-sample can ask for more re-runs.
            args.seed_sample = args.seed_sample.max(args.recompute);
            let mut recomputer = if args.recompute > 0 || args.seed_sample > 0 {
                Some(boomerang::recompute::RunRecomputer::open(&args)?)
            } else {
                None
            };
            let recomputer = recomputer
                .as_mut()
                .map(|r| r as &mut dyn boomerang::audit::Recomputer);
            boomerang::audit::run(&args, recomputer).map(|outcome| ExitCode::from(outcome.code()))
        }
        Command::Report(ReportCommand::Merge(args)) => {
            boomerang::audit::merge::run(&args).map(|_| ExitCode::SUCCESS)
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
