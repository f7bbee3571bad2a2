//! `anonymize IN OUT`: the same command as `boomerang anonymize`.

use std::process::ExitCode;

use clap::Parser;

use boomerang::cli::AnonymizeOpts;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`)
    // instead of panicking on the failed write.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let opts = AnonymizeOpts::parse();
    match boomerang::anonymize::command(&opts.args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
