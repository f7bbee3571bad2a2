//! `boomerang manifest`: prints (or writes) a model folder's SHA256SUMS and its model hash.

use std::path::Path;

use crate::diffusion::model_manifest::ModelManifest;

/// Checks DIR against its SHA256SUMS and prints it, or with `write` writes a new one.
pub fn run(dir: &Path, write: bool) -> anyhow::Result<()> {
    let manifest = ModelManifest::compute(dir)?;
    if write {
        let path = manifest.write(dir)?;
        println!("wrote {}", path.display());
    } else {
        manifest.check_against_file(dir)?;
        print!("{}", manifest.to_text());
    }
    println!("model hash {}", manifest.model_hash());
    Ok(())
}
