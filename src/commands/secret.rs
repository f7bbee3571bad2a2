//! `boomerang secret new FILE`: a fresh run seed from the OS in a private secret file
//! ([`crate::io::secret`]), for `--seed-file FILE`. Prints the seed's fingerprint, never the seed.

use std::path::Path;

use crate::diffusion::noise::{random_run_seed, seed_fingerprint};

/// Writes a new secret file at `path` (never replacing one) and prints its fingerprint.
pub fn new(path: &Path) -> anyhow::Result<()> {
    let seed = random_run_seed();
    crate::io::secret::create(path, seed)?;
    println!(
        "wrote {} (mode 0600); seed fingerprint {}",
        path.display(),
        seed_fingerprint(seed)
    );
    Ok(())
}

/// How a run names its seed on screen: the seed itself for `--seed N` and random runs, only the
/// fingerprint for a seed from a secret file.
pub fn shown(seed: u64, from_file: bool) -> String {
    if from_file {
        format!(
            "from the secret file (fingerprint {})",
            seed_fingerprint(seed)
        )
    } else {
        seed.to_string()
    }
}
