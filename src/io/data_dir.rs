//! Where an installed boomerang keeps what it ships and what it downloads: policies and models
//! under one data folder, so a binary run from any directory finds them by name.

use std::path::{Path, PathBuf};

/// Overrides the data folder (tests, shared installs).
pub const DATA_DIR_ENV: &str = "BOOMERANG_DATA_DIR";

/// The data folder: `$BOOMERANG_DATA_DIR`, else `$XDG_DATA_HOME/boomerang`, else
/// `~/.local/share/boomerang`.
pub fn data_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    non_empty(DATA_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_DATA_HOME").map(|p| PathBuf::from(p).join("boomerang")))
        .or_else(|| non_empty("HOME").map(|p| PathBuf::from(p).join(".local/share/boomerang")))
}

/// Folders searched for a bare name, in order: the folder named by `env_var`, `./SUBDIR`, the
/// data folder's `SUBDIR` and, for runs from a checkout, the source tree's `SUBDIR`.
pub fn search_folders(env_var: &str, subdir: &str) -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if let Some(dir) = std::env::var_os(env_var).filter(|d| !d.is_empty()) {
        folders.push(PathBuf::from(dir));
    }
    folders.push(PathBuf::from(subdir));
    if let Some(data) = data_dir() {
        folders.push(data.join(subdir));
    }
    folders.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(subdir));
    folders
}
