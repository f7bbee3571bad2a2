//! Where an installed boomerang keeps what it ships and what it downloads: policies and models
//! under one data folder, so a binary run from any directory finds them by name.

use std::path::{Component, Path, PathBuf};

/// Overrides the data folder (tests, shared installs).
pub const DATA_DIR_ENV: &str = "BOOMERANG_DATA_DIR";

/// Set to `1` to never search the source tree this binary was built from (proves a run uses
/// only what is installed).
pub const NO_SOURCE_TREE_ENV: &str = "BOOMERANG_NO_SOURCE_TREE";

/// The file `boomerang setup` writes last into the data folder: which version installed what.
pub const SETUP_MARKER: &str = "setup.toml";

/// The source tree this binary was built from.
const SOURCE_TREE: &str = env!("CARGO_MANIFEST_DIR");

/// The data folder: `$BOOMERANG_DATA_DIR`, else `$XDG_DATA_HOME/boomerang`, else
/// `~/.local/share/boomerang`.
pub fn data_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    non_empty(DATA_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_DATA_HOME").map(|p| PathBuf::from(p).join("boomerang")))
        .or_else(|| non_empty("HOME").map(|p| PathBuf::from(p).join(".local/share/boomerang")))
}

/// The source tree, when this run may fall back to it: it still exists, the binary is not an
/// installed one (it runs from inside the tree, e.g. `target/debug/`, or under `cargo run` /
/// `cargo test`, which set `CARGO_MANIFEST_DIR` to the tree), and `$BOOMERANG_NO_SOURCE_TREE`
/// is not `1`. An installed binary (`cargo install`, the release tarball) never reads the
/// checkout it was built from, even when that checkout is still on disk.
pub fn source_tree() -> Option<PathBuf> {
    if std::env::var_os(NO_SOURCE_TREE_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let tree = Path::new(SOURCE_TREE);
    if !tree.is_dir() {
        return None;
    }
    let under_cargo = std::env::var_os("CARGO_MANIFEST_DIR").is_some_and(|dir| tree == dir);
    let inside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .zip(tree.canonicalize().ok())
        .is_some_and(|(exe, tree)| exe.starts_with(tree));
    (under_cargo || inside).then(|| tree.to_path_buf())
}

/// Folders searched for a bare name, in order: the folder named by `env_var`, `./SUBDIR`, the
/// data folder's `SUBDIR` and, for runs from a checkout ([`source_tree`]), the source tree's
/// `SUBDIR`.
pub fn search_folders(env_var: &str, subdir: &str) -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if let Some(dir) = std::env::var_os(env_var).filter(|d| !d.is_empty()) {
        folders.push(PathBuf::from(dir));
    }
    folders.push(PathBuf::from(subdir));
    if let Some(data) = data_dir() {
        folders.push(data.join(subdir));
    }
    if let Some(tree) = source_tree() {
        folders.push(tree.join(subdir));
    }
    folders
}

/// Whether `path` is a bare name (`tiny-sd`), to be looked up in search folders, rather than a
/// path (`./tiny-sd`, `models/tiny-sd`, `/abs`).
pub fn is_bare_name(path: &Path) -> bool {
    let mut components = path.components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    )
}

/// A model folder `--model` names: the path as given when it exists or is not a bare name (what
/// opens it then says what is missing there), else the first `NAME` folder of
/// `search_folders(env_var, "models")`. The error lists every place looked at.
pub fn find_model_dir(given: &Path, env_var: &str) -> Result<PathBuf, String> {
    if given.exists() || !is_bare_name(given) {
        return Ok(given.to_path_buf());
    }
    let mut looked = vec![given.to_path_buf()];
    looked.extend(
        search_folders(env_var, "models")
            .into_iter()
            .map(|folder| folder.join(given)),
    );
    if let Some(found) = looked.iter().skip(1).find(|c| c.is_dir()) {
        return Ok(found.clone());
    }
    Err(format!(
        "no model folder `{}`: looked at {}; pass a model folder's path, a folder name under one \
         of those models folders (set {env_var} to add one), or run `boomerang setup` for the \
         bundled ones",
        given.display(),
        looked
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
