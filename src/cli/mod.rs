//! The command line: parses with clap (`options`), hands each command its plain config, and turns
//! the result into the process exit status. The only module that knows clap.

mod generate;
mod options;

use std::process::ExitCode;

use clap::Parser;

pub use options::*;

use crate::commands::{self, Exit};
use crate::io::install::BundledFile;

/// `boomerang`'s `main`; `bundle` is what `setup` installs (only this binary carries it).
pub fn main(bundle: &'static [BundledFile]) -> ExitCode {
    ignore_sigpipe();
    finish(run(Opts::parse(), bundle))
}

/// The standalone `anonymize` binary's `main`: the same command as `boomerang anonymize`.
pub fn anonymize_main() -> ExitCode {
    ignore_sigpipe();
    let opts = AnonymizeOpts::parse();
    finish(commands::anonymize::command(&opts.args.config()))
}

fn run(opts: Opts, bundle: &'static [BundledFile]) -> anyhow::Result<Exit> {
    match opts.command {
        Command::Anonymize(args) => commands::anonymize::command(&args.config()),
        Command::Augment(args) => Ok(commands::augment::run(&args.config()?)?.exit()),
        Command::Enhance(args) => Ok(commands::enhance::run(&args.config()?)?.exit()),
        Command::Sample(args) => commands::sample::run(&args.config()?).map(|()| Exit::Success),
        Command::Score(args) => commands::score::run(&args.config()).map(|()| Exit::Success),
        Command::Calibrate(args) => {
            commands::calibrate::run(&args.config()).map(|()| Exit::Success)
        }
        Command::Audit(args) => commands::audit::run_with_engine(&args.config()).map(Exit::from),
        Command::Report(ReportCommand::Merge(args)) => {
            commands::report_merge::run(&args.config()).map(|_| Exit::Success)
        }
        Command::Manifest(args) => {
            commands::manifest::run(&args.dir, args.write).map(|()| Exit::Success)
        }
        Command::Model(ModelCommand::Pull(args)) => {
            commands::model::pull(&args.config()).map(|()| Exit::Success)
        }
        Command::Model(ModelCommand::Export(args)) => {
            commands::model::export(&args.config()).map(|()| Exit::Success)
        }
        Command::Secret(SecretCommand::New(args)) => {
            commands::secret::new(&args.file).map(|()| Exit::Success)
        }
        Command::Completions(args) => {
            generate::completions(args.shell);
            Ok(Exit::Success)
        }
        Command::Man(args) => generate::man_pages(&args.dir).map(|()| Exit::Success),
        Command::Doctor => commands::doctor::run(),
        Command::Setup(args) => commands::setup::run(&args.config(), bundle),
        Command::FetchOnnxruntime(args) => {
            commands::fetch_onnxruntime::run(args.gpu).map(|()| Exit::Success)
        }
    }
}

/// Errors end the process with status 1 and the whole cause chain on stderr.
fn finish(result: anyhow::Result<Exit>) -> ExitCode {
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {}", cause_chain(&error));
            Exit::Failure.into()
        }
    }
}

/// The error and its causes joined by `: ` (as `{:#}` does), leaving out a cause whose text the
/// message already ends with: some errors display their source themselves, and it would be
/// printed twice.
fn cause_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Like other Unix tools, end quietly when the reader of stdout goes away (`| head`) instead of
/// panicking on the failed write.
fn ignore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
