//! Atomic file writes: a temp file in the destination folder, fsync, rename, then an fsync of the
//! folder, so a reader (or a resumed run after a crash) sees either the old file or the complete
//! new one, never a torn one, and a file reported written stays written.
//!
//! [`write`] creates files as any program does (0666 less the process umask): outputs are meant
//! to be published. [`write_private`] creates them 0600 whatever the umask: the report and
//! run.json link outputs to inputs and hold the seeds.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const TEMP_PREFIX: &str = ".boomerang-";
const TEMP_SUFFIX: &str = ".tmp";

/// The mode of private files (report, run.json), set exactly, independent of the umask.
pub const PRIVATE_MODE: u32 = 0o600;

/// Whether `path` names a temp file of an interrupted atomic write (a kill -9 leaves them behind).
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .map(|name| name.to_string_lossy())
        .is_some_and(|name| name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX))
}

/// Whether `path` is a temp file of writes tagged `tag` ([`write_tagged`]): a part of a sharded
/// run removes only its own, never those of a part still running.
pub fn is_temp_file_of(path: &Path, tag: &str) -> bool {
    let prefix = format!("{TEMP_PREFIX}{tag}-");
    path.file_name()
        .map(|name| name.to_string_lossy())
        .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX))
}

/// Writes `bytes` to `path` atomically; a new file gets 0666 less the umask.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, false, None, |_| Ok(())).map(drop)
}

/// [`write`] that never replaces a file: when `path` exists, even one created after a caller's
/// check, it fails with `AlreadyExists` and leaves that file as it is.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, bytes, false, None)?;
    temp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_folder(path)
}

/// [`write`] with a temp file named `.boomerang-TAG-*.tmp` ([`is_temp_file_of`]).
pub fn write_tagged(path: &Path, bytes: &[u8], tag: Option<&str>) -> std::io::Result<()> {
    write_with(path, bytes, false, tag, |_| Ok(())).map(drop)
}

/// Writes a private file atomically, mode 0600 whatever the umask.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_private_then(path, bytes, |_| Ok(())).map(drop)
}

/// [`write_private`], calling `before_rename` on the complete temp file before it replaces
/// `path` (to lock it, so the new file is never unlocked under its name). Returns the file.
pub fn write_private_then(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<File> {
    write_with(path, bytes, true, None, before_rename)
}

fn write_with(
    path: &Path,
    bytes: &[u8],
    private: bool,
    tag: Option<&str>,
    before_rename: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<File> {
    let temp = write_temp(path, bytes, private, tag)?;
    before_rename(temp.as_file())?;
    let file = temp.persist(path).map_err(|e| e.error)?;
    sync_folder(path)?;
    Ok(file)
}

/// The folder `path` is written in.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A rename is on disk only once its folder is: without this fsync a crash could bring back
/// the old file (or no file) under a name the run had already reported written.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    File::open(folder_of(path))?.sync_all()
}

/// The complete, fsync'd temp file beside `path`, not yet renamed.
fn write_temp(
    path: &Path,
    bytes: &[u8],
    private: bool,
    tag: Option<&str>,
) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = folder_of(path);
    let mode = if private { PRIVATE_MODE } else { 0o666 };
    let prefix = match tag {
        Some(tag) => format!("{TEMP_PREFIX}{tag}-"),
        None => TEMP_PREFIX.to_string(),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    if private {
        // The umask can only have removed bits; set the mode exactly.
        temp.as_file()
            .set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    }
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        write_new(&path, b"first").unwrap();
        let error = write_new(&path, b"second").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // The failed write leaves no temp file behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
