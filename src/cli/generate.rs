//! `boomerang completions SHELL` and `boomerang man DIR`: shell completions and man pages made
//! from the same clap definitions as `--help`, so they never fall out of step with it.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Opts;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Opts::command(),
        "boomerang",
        &mut std::io::stdout(),
    );
}

/// Writes `boomerang.1` and one page per subcommand (`boomerang-anonymize.1`, ...) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Opts::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    println!("wrote man pages into {}", dir.display());
    Ok(())
}
