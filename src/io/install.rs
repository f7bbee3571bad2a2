//! Installing files a binary carries into the data folder (`boomerang setup`): each folder is
//! built complete in a staging folder beside it and then renamed into place, so a reader sees
//! the old folder or the whole new one, never a half-written one.
//!
//! The bytes come from the `boomerang` binary itself (`src/bundle.rs`, `include_bytes!`), each
//! with the sha256 it must have; this module never decides what is shipped.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::io::hashing::{sha256_bytes, sha256_file};

/// One file a binary carries: its path in the data folder (`models/dlib-face/embedder.toml`),
/// the sha256 it is pinned to and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct BundledFile {
    pub path: &'static str,
    pub sha256: &'static str,
    pub bytes: &'static [u8],
}

impl BundledFile {
    /// The folder installed as one unit: `policies`, or `models/NAME`; `tools` files are not
    /// installed (they are run from a temporary folder).
    pub fn folder(&self) -> &'static str {
        let depth = if self.path.starts_with("models/") {
            2
        } else {
            1
        };
        let mut end = 0;
        for (index, part) in self.path.split('/').take(depth).enumerate() {
            end += part.len() + usize::from(index > 0);
        }
        &self.path[..end]
    }

    /// The path below [`Self::folder`].
    pub fn relative(&self) -> &'static str {
        self.path[self.folder().len()..].trim_start_matches('/')
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: the bytes this binary carries have sha256 {found}, but its pin is {expected}; the binary was built from a modified checkout: rebuild it from a clean one")]
    Pin {
        path: String,
        found: String,
        expected: String,
    },
    #[error("another `boomerang setup` or `boomerang model pull` is installing into {0} (it holds {LOCK_FILE} there): wait for it to finish, then run this again")]
    Busy(PathBuf),
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io {
        path,
        action,
        source,
    }
}

/// The file `setup` and `model pull` lock while they install into the data folder; the lock goes
/// with the process, so a killed run leaves none behind.
pub const LOCK_FILE: &str = ".boomerang.lock";
/// `setup`'s staging folder in the data folder: `.boomerang-setup-XXXXXX`.
pub const SETUP_STAGING_PREFIX: &str = ".boomerang-setup-";

/// `model pull`'s staging folder for model `name` in the models folder.
pub fn pull_staging_prefix(name: &str) -> String {
    format!(".{name}.pull-")
}

/// Held while installing into the data folder (an exclusive `flock` on [`LOCK_FILE`]).
#[derive(Debug)]
pub struct DataFolderLock {
    _file: std::fs::File,
}

/// Locks `data` against other setups and pulls, refusing at once when one is running, and then
/// removes the staging folders a killed one left (only a lock holder stages, so any there is
/// left over); returns what it removed.
pub fn lock_data_folder(data: &Path) -> Result<(DataFolderLock, Vec<PathBuf>), InstallError> {
    std::fs::create_dir_all(data).map_err(io_error(data, "cannot create the data folder"))?;
    let path = data.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path, "cannot open the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(InstallError::Busy(data.into())),
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(io_error(&path, "cannot lock")(source))
        }
    }
    let mut removed = remove_staging(data, &|name| name.starts_with(SETUP_STAGING_PREFIX))?;
    let models = data.join("models");
    if models.is_dir() {
        removed.extend(remove_staging(&models, &|name| {
            name.starts_with('.') && name.contains(".pull-")
        })?);
    }
    Ok((DataFolderLock { _file: file }, removed))
}

fn remove_staging(
    folder: &Path,
    is_staging: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, InstallError> {
    let mut removed = Vec::new();
    let entries = std::fs::read_dir(folder).map_err(io_error(folder, "cannot list"))?;
    for entry in entries {
        let entry = entry.map_err(io_error(folder, "cannot list"))?;
        let path = entry.path();
        let staged_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if staged_dir && entry.file_name().to_str().is_some_and(is_staging) {
            std::fs::remove_dir_all(&path)
                .map_err(io_error(&path, "cannot remove a left-over staging folder"))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Checks every file's bytes against its pin before anything is written.
pub fn check_pins(files: &[BundledFile]) -> Result<(), InstallError> {
    for file in files {
        let found = hex::encode(sha256_bytes(file.bytes));
        if found != file.sha256 {
            return Err(InstallError::Pin {
                path: file.path.to_string(),
                found,
                expected: file.sha256.to_string(),
            });
        }
    }
    Ok(())
}

/// How an installed folder compares with the files that belong in it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FolderState {
    /// Paths below the folder that are not there.
    pub missing: Vec<String>,
    /// Paths below the folder whose sha256 differs from the pin.
    pub changed: Vec<String>,
}

impl FolderState {
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.changed.is_empty()
    }
}

/// Compares `target` with `expected` (path below the folder, sha256).
pub fn folder_state(target: &Path, expected: &[(&str, &str)]) -> FolderState {
    let mut state = FolderState::default();
    for (relative, sha256) in expected {
        let path = target.join(relative);
        if !path.is_file() {
            state.missing.push(relative.to_string());
        } else if sha256_file(&path).ok().as_deref() != Some(*sha256) {
            state.changed.push(relative.to_string());
        }
    }
    state
}

/// Builds `staging` as the new content of `target`: every file of `target` not named in
/// `replaced` is hard-linked (copied across file systems) so files of the user's own, such as a
/// policy added to the data folder, survive, then `files` are written (and fsync'd).
pub fn stage(
    staging: &Path,
    target: &Path,
    files: &[(&str, &[u8])],
    replaced: &BTreeSet<String>,
) -> Result<(), InstallError> {
    std::fs::create_dir_all(staging).map_err(io_error(staging, "cannot create the folder"))?;
    if target.is_dir() {
        carry_over(target, staging, Path::new(""), replaced)?;
    }
    for (relative, bytes) in files {
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_error(parent, "cannot create the folder"))?;
        }
        // The carried-over link (if any) is removed first: writing through it would change the
        // installed file before the folder is swapped.
        let _ = std::fs::remove_file(&path);
        write_synced(&path, bytes)?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_error(path, "cannot create the file"))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path, "cannot write the file"))
}

fn carry_over(
    from: &Path,
    to: &Path,
    below: &Path,
    replaced: &BTreeSet<String>,
) -> Result<(), InstallError> {
    let folder = from.join(below);
    let entries =
        std::fs::read_dir(&folder).map_err(io_error(&folder, "cannot list the folder"))?;
    for entry in entries {
        let entry = entry.map_err(io_error(&folder, "cannot list the folder"))?;
        let relative = below.join(entry.file_name());
        let source = entry.path();
        let dest = to.join(&relative);
        let kind = entry
            .file_type()
            .map_err(io_error(&source, "cannot read the file type"))?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_error(&dest, "cannot create the folder"))?;
            carry_over(from, to, &relative, replaced)?;
        } else if !replaced.contains(&relative.to_string_lossy().into_owned()) {
            if kind.is_symlink() {
                let link = std::fs::read_link(&source)
                    .map_err(io_error(&source, "cannot read the link"))?;
                std::os::unix::fs::symlink(link, &dest)
                    .map_err(io_error(&dest, "cannot create the link"))?;
            } else if std::fs::hard_link(&source, &dest).is_err() {
                std::fs::copy(&source, &dest).map_err(io_error(&source, "cannot copy the file"))?;
            }
        }
    }
    Ok(())
}

/// Puts `staging` in place of `target`: a rename when `target` does not exist, else an atomic
/// exchange (`renameat2(RENAME_EXCHANGE)`; two renames where the file system lacks it) and the
/// old folder removed.
pub fn publish(staging: &Path, target: &Path) -> Result<(), InstallError> {
    publish_with(staging, target, exchange)
}

/// [`publish`] with the exchange given, so the two-rename path is testable anywhere.
fn publish_with(
    staging: &Path,
    target: &Path,
    exchange: fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), InstallError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent, "cannot create the folder"))?;
    }
    if !target.exists() {
        std::fs::rename(staging, target).map_err(io_error(target, "cannot rename into place"))?;
    } else if exchange(staging, target).is_ok() {
        // `staging` now holds the old folder.
        std::fs::remove_dir_all(staging)
            .map_err(io_error(staging, "cannot remove the replaced folder"))?;
    } else {
        // Two renames (NFS, older kernels). The installed folder waits beside itself, not in the
        // staging folder that the next installer clears, and goes back if the second fails: the
        // user's own files in it are never lost.
        let aside = replaced_path(target);
        std::fs::rename(target, &aside).map_err(io_error(target, "cannot move aside"))?;
        if let Err(error) = std::fs::rename(staging, target) {
            let _ = std::fs::rename(&aside, target);
            return Err(io_error(target, "cannot rename into place")(error));
        }
        std::fs::remove_dir_all(&aside)
            .map_err(io_error(&aside, "cannot remove the replaced folder"))?;
    }
    if let Some(parent) = target.parent() {
        // The rename is durable once the folder holding it is synced.
        let _ = std::fs::File::open(parent).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// `NAME.replaced` beside `target`, where [`publish`] keeps the installed folder between its two
/// renames.
fn replaced_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".replaced");
    target.with_file_name(name)
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c_path(a)?, c_path(b)?);
    // SAFETY: both are valid NUL-terminated paths; renameat2 reads them only during the call.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_policies_or_one_model() {
        let file = |path| BundledFile {
            path,
            sha256: "",
            bytes: b"",
        };
        assert_eq!(file("policies/demo.toml").folder(), "policies");
        assert_eq!(file("policies/demo.toml").relative(), "demo.toml");
        let unet = file("models/tiny-sd/unet/model.onnx");
        assert_eq!(unet.folder(), "models/tiny-sd");
        assert_eq!(unet.relative(), "unet/model.onnx");
    }

    #[test]
    fn one_installer_at_a_time_and_left_over_staging_is_removed() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let stale_setup = data.join(format!("{SETUP_STAGING_PREFIX}abc123"));
        let stale_pull = data
            .join("models")
            .join(format!("{}xyz", pull_staging_prefix("sd15")));
        let model = data.join("models/sd15");
        let hidden = data.join("models/.cache");
        for dir in [&stale_setup, &stale_pull, &model, &hidden] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let (lock, removed) = lock_data_folder(&data).unwrap();
        assert_eq!(
            removed.iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([&stale_setup, &stale_pull])
        );
        assert!(model.is_dir() && hidden.is_dir());
        match lock_data_folder(&data) {
            Err(InstallError::Busy(path)) => assert_eq!(path, data),
            other => panic!("a second installer was let in: {other:?}"),
        }
        drop(lock);
        assert!(lock_data_folder(&data).unwrap().1.is_empty());
    }

    #[test]
    fn publish_replaces_keeping_the_users_files() {
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("policies");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("demo.toml"), "edited").unwrap();
        std::fs::write(target.join("mine.toml"), "own").unwrap();
        let staging = temp.path().join(".staging/policies");
        let replaced = BTreeSet::from(["demo.toml".to_string()]);
        stage(&staging, &target, &[("demo.toml", b"shipped")], &replaced).unwrap();
        // Staging never writes through to the installed files.
        assert_eq!(std::fs::read(target.join("demo.toml")).unwrap(), b"edited");
        publish(&staging, &target).unwrap();
        assert_eq!(std::fs::read(target.join("demo.toml")).unwrap(), b"shipped");
        assert_eq!(std::fs::read(target.join("mine.toml")).unwrap(), b"own");
        assert!(!staging.exists());
    }

    #[test]
    fn without_an_exchange_a_failed_publish_puts_the_users_folder_back() {
        let no_exchange = |_: &Path, _: &Path| Err(std::io::Error::other("no RENAME_EXCHANGE"));
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("policies");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("mine.toml"), "own").unwrap();
        // A staging folder that is gone: the second rename fails.
        let missing = temp.path().join(".staging/policies");
        assert!(publish_with(&missing, &target, no_exchange).is_err());
        assert_eq!(std::fs::read(target.join("mine.toml")).unwrap(), b"own");
        assert!(!replaced_path(&target).exists());
        // And when it works, the new folder is in place and nothing is left beside it.
        let staging = temp.path().join(".staging/policies");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("demo.toml"), "shipped").unwrap();
        publish_with(&staging, &target, no_exchange).unwrap();
        assert_eq!(std::fs::read(target.join("demo.toml")).unwrap(), b"shipped");
        assert!(!staging.exists() && !replaced_path(&target).exists());
    }
}
