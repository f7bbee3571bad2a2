//! The `boomerang` binary: everything happens in [`boomerang::cli::main`].

fn main() -> std::process::ExitCode {
    boomerang::cli::main()
}
