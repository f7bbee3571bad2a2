fn main() -> std::process::ExitCode {
    boomerang::cli::main()
}
