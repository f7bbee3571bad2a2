//! The `boomerang` binary: everything happens in [`boomerang::cli::main`]; it alone carries what
//! `boomerang setup` installs ([`bundle`]).

mod bundle;

fn main() -> std::process::ExitCode {
    boomerang::cli::main(bundle::FILES)
}
