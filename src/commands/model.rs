//! `boomerang model pull`: an Optimum ONNX Stable Diffusion export from a Hugging Face hub,
//! verified byte for byte, installed as `models/NAME` in the data folder; `boomerang model
//! export`: the commands that make such a folder from a diffusers checkpoint.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::diffusion::model_manifest::{ModelManifest, PROVENANCE_FILE};
use crate::io::data_dir::{data_dir, DATA_DIR_ENV};
use crate::io::hub::{self, Event, Hub, HubConfig, Snapshot};
use crate::io::install;
use crate::records::report::rfc3339_utc;

/// Validated `model pull` arguments.
#[derive(Debug, Clone)]
pub struct PullConfig {
    pub repo: String,
    pub revision: String,
    pub name: Option<String>,
    pub allow_moving_revision: bool,
}

/// `pull.json`: where an installed model folder came from.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub repo: String,
    /// The revision asked for (a commit, or a branch or tag with --allow-moving-revision).
    pub revision: String,
    /// The commit it resolved to: what was installed.
    pub commit: String,
    pub endpoint: String,
    /// RFC 3339, UTC.
    pub pulled: String,
}

/// The folder name a pull installs under: `--name`, else the repository's last component,
/// lowercased.
fn folder_name(config: &PullConfig) -> anyhow::Result<String> {
    let name = match &config.name {
        Some(name) => name.clone(),
        None => config
            .repo
            .rsplit('/')
            .next()
            .unwrap_or(&config.repo)
            .to_ascii_lowercase(),
    };
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        bail!("model name `{name}` is not a plain folder name: use letters, digits, `-`, `_` and `.` (not first), e.g. --name sd15");
    }
    Ok(name)
}

pub fn pull(config: &PullConfig) -> anyhow::Result<()> {
    // Everything that can be refused is refused before a byte is downloaded.
    hub::check_repo(&config.repo)?;
    let pinned = hub::is_commit(&config.revision);
    if !pinned {
        hub::check_revision(&config.revision)?;
        if !config.allow_moving_revision {
            let default = if config.revision == "main" {
                " (the default)"
            } else {
                ""
            };
            bail!(
                "revision `{}`{default} is a branch or tag, and what it points at can change: give a 40-hex commit hash as --revision (the repository's \"Files and versions\" history on the hub lists them), or add --allow-moving-revision to take its current commit (printed, so you can pin it next time)",
                config.revision
            );
        }
    }
    let name = folder_name(config)?;
    let data = data_dir().with_context(|| {
        format!("no data folder: set {DATA_DIR_ENV} (or XDG_DATA_HOME or HOME) to where models should go")
    })?;
    let models = data.join("models");
    let destination = models.join(&name);
    let installed = read_installed(&destination)?;
    if let Some(installed) = &installed {
        // Decided without asking the hub (works offline, downloads nothing) unless only the
        // commit a moving revision points at can tell.
        if pinned || installed.repo != config.repo {
            return already_installed(&destination, installed, &config.repo, &config.revision);
        }
    }
    let hub_config = HubConfig::from_env()?;
    let hub = Hub::new(hub_config.clone());
    let snapshot = hub.resolve(&config.repo, &config.revision)?;
    if !pinned {
        println!(
            "{} `{}` is commit {}; pin it with --revision {}",
            config.repo, config.revision, snapshot.commit, snapshot.commit
        );
    }
    if let Some(installed) = &installed {
        return already_installed(&destination, installed, &config.repo, &snapshot.commit);
    }
    // Made before the download, so an unwritable data folder fails first.
    std::fs::create_dir_all(&models)
        .with_context(|| format!("creating {}: check its permissions", models.display()))?;
    let files = fetch_all(&hub, &snapshot)?;
    let provenance = Provenance {
        repo: config.repo.clone(),
        revision: config.revision.clone(),
        commit: snapshot.commit.clone(),
        endpoint: hub_config.endpoint.clone(),
        pulled: rfc3339_utc(SystemTime::now()),
    };
    let manifest = install(&files, &provenance, &data, &name)?;
    println!(
        "installed {} at commit {} as {} (model hash {})",
        config.repo,
        snapshot.commit,
        destination.display(),
        manifest.model_hash()
    );
    println!(
        "use it by name: boomerang sample --model {name} ... (or --model {})",
        destination.display()
    );
    Ok(())
}

/// The provenance of an existing folder at `destination`, `Ok(None)` when there is none; a
/// folder that was not pulled (no pull.json) is refused.
fn read_installed(destination: &Path) -> anyhow::Result<Option<Provenance>> {
    if std::fs::symlink_metadata(destination).is_err() {
        return Ok(None);
    }
    let record = destination.join(PROVENANCE_FILE);
    let text = std::fs::read_to_string(&record).with_context(|| {
        format!(
            "{} exists and was not installed by `boomerang model pull` (no readable {PROVENANCE_FILE}): it is left alone. Pick another --name, or remove it",
            destination.display()
        )
    })?;
    let provenance = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a pull record; remove the folder to pull again",
            record.display()
        )
    })?;
    Ok(Some(provenance))
}

/// A folder already at the destination: a no-op when it holds `repo` at `commit` (and its
/// files still match its manifest), else refused.
fn already_installed(
    destination: &Path,
    installed: &Provenance,
    repo: &str,
    commit: &str,
) -> anyhow::Result<()> {
    if installed.repo != repo || !installed.commit.eq_ignore_ascii_case(commit) {
        bail!(
            "{} already holds {} at commit {}, not {repo} at {commit}: it is not replaced. Pick another --name, or remove the folder first",
            destination.display(),
            installed.repo,
            installed.commit
        );
    }
    ModelManifest::compute(destination)?.check_against_file(destination)?;
    println!(
        "{} already holds {repo} at commit {}: nothing to do",
        destination.display(),
        installed.commit
    );
    Ok(())
}

/// Every file of the snapshot present and verified in the hub cache, as (relative path, path in
/// the cache's snapshot folder).
fn fetch_all(hub: &Hub, snapshot: &Snapshot) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let total: u64 = snapshot.files.iter().map(|f| f.size).sum();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut files = Vec::new();
    for file in &snapshot.files {
        // The bar counts each file once: bytes re-read from the cache or a partial download
        // count like downloaded ones.
        let mut counted = 0u64;
        let at_start = bar.position();
        bar.set_message(file.path.clone());
        let path = hub.fetch(snapshot, file, &mut |event| match event {
            Event::Start { .. } | Event::Cached { .. } => {}
            Event::Bytes(n) => {
                counted += n;
                bar.set_position(at_start + counted.min(file.size));
            }
        });
        let path = match path {
            Ok(path) => path,
            Err(error) => {
                bar.abandon();
                return Err(error.into());
            }
        };
        bar.set_position(at_start + file.size);
        files.push((file.path.clone(), path));
    }
    bar.finish_and_clear();
    Ok(files)
}

/// Builds the model folder beside its destination (hard links to the cache's blobs, or copies
/// across file systems), writes pull.json and SHA256SUMS, then renames it into place; a folder
/// that appeared meanwhile is not replaced.
fn install(
    files: &[(String, PathBuf)],
    provenance: &Provenance,
    data: &Path,
    name: &str,
) -> anyhow::Result<ModelManifest> {
    let models = &data.join("models");
    let (_lock, removed) = install::lock_data_folder(data)?;
    for left_over in removed {
        println!(
            "removed {} (left by an interrupted setup or pull)",
            left_over.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(&install::pull_staging_prefix(name))
        .tempdir_in(models)
        .with_context(|| format!("creating a staging folder in {}", models.display()))?;
    // tempfile makes it 0700; a model folder is no secret, and shared installs read it.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", staging.path().display()))?;
    for (relative, cached) in files {
        let target = staging.path().join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let blob = std::fs::canonicalize(cached).with_context(|| {
            format!("{}: the cached file vanished; pull again", cached.display())
        })?;
        if std::fs::hard_link(&blob, &target).is_err() {
            std::fs::copy(&blob, &target)
                .with_context(|| format!("copying {} to {}", blob.display(), target.display()))?;
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", target.display()))?;
        }
    }
    let mut record = serde_json::to_vec_pretty(provenance)?;
    record.push(b'\n');
    let record_path = staging.path().join(PROVENANCE_FILE);
    crate::io::atomic::write(&record_path, &record)
        .with_context(|| format!("writing {}", record_path.display()))?;
    let manifest = ModelManifest::compute(staging.path())?;
    manifest.write(staging.path())?;
    let destination = models.join(name);
    rename_no_replace(staging.path(), &destination).with_context(|| {
        format!(
            "moving the pulled model into {}: it appeared while pulling, or {} is not writable; nothing was replaced",
            destination.display(),
            models.display()
        )
    })?;
    // The staging folder now is the destination: nothing left to remove.
    let _ = staging.keep();
    if let Ok(dir) = std::fs::File::open(models) {
        let _ = dir.sync_all();
    }
    Ok(manifest)
}

/// `rename(2)` that fails instead of replacing an existing destination.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Validated `model export` arguments.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub checkpoint: String,
    pub name: Option<String>,
}

/// The pins of tools/requirements-models.txt that an export needs (the tested tool versions).
const EXPORT_PINS: &[&str] = &[
    "torch==2.15.0",
    "diffusers==0.39.0",
    "transformers==4.57.6",
    "optimum==2.1.0",
    "optimum-onnx[onnxruntime]==0.1.0",
    "onnx==1.23.2",
];

/// Prints the commands that export `checkpoint` into the data folder's `models/NAME`.
pub fn export(config: &ExportConfig) -> anyhow::Result<()> {
    let name = folder_name(&PullConfig {
        repo: config.checkpoint.trim_end_matches('/').to_string(),
        revision: String::new(),
        name: config.name.clone(),
        allow_moving_revision: false,
    })?;
    let data = data_dir().with_context(|| {
        format!("no data folder: set {DATA_DIR_ENV} (or XDG_DATA_HOME or HOME)")
    })?;
    let dir = data.join("models").join(&name);
    // Shell-quoted only when needed, so the usual commands read as typed.
    let quote = |text: &str| {
        if text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@+,".contains(&b))
        {
            text.to_string()
        } else {
            format!("'{}'", text.replace('\'', r"'\''"))
        }
    };
    let dir_text = quote(&dir.display().to_string());
    println!(
        "# Export {} to ONNX with Hugging Face Optimum (Python 3.11, the tool versions boomerang is tested with),",
        config.checkpoint
    );
    println!("# then pin every file; boomerang finds the result by name (--model {name}).");
    println!("python3 -m venv ~/.cache/boomerang/export-venv && . ~/.cache/boomerang/export-venv/bin/activate");
    println!("pip install torch==2.15.0 --index-url https://download.pytorch.org/whl/cpu");
    println!(
        "pip install {}",
        EXPORT_PINS
            .iter()
            .filter(|p| !p.starts_with("torch=="))
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "optimum-cli export onnx --model {} --task image-to-image {dir_text}",
        quote(&config.checkpoint)
    );
    println!("boomerang manifest --write {dir_text}");
    Ok(())
}
