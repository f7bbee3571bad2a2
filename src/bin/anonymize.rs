//! `anonymize IN OUT`: the same command as `boomerang anonymize`.

fn main() -> std::process::ExitCode {
    boomerang::cli::anonymize_main()
}
