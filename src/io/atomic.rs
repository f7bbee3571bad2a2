//! Atomic file writes: a temp file in the destination folder, fsync, then rename, so a reader (or a
//! resumed run after a crash) sees either the old file or the complete new one, never a torn one.

use std::io::Write;
use std::path::Path;

const TEMP_PREFIX: &str = ".boomerang-";
const TEMP_SUFFIX: &str = ".tmp";

/// Whether `path` names a temp file of an interrupted atomic write (a kill -9 leaves them behind).
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .map(|name| name.to_string_lossy())
        .is_some_and(|name| name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX))
}

pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
