//! `anonymize IN OUT`: the same command as `boomerang anonymize`.

use std::process::ExitCode;

use clap::Parser;

use boomerang::cli::AnonymizeOpts;

fn main() -> ExitCode {
    let opts = AnonymizeOpts::parse();
    match boomerang::anonymize::command(&opts.args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
