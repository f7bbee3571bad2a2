//! The append both logs share: each write is on disk (fsync'd) when it returns, and a failed
//! write is cut back off so no partial line is left for the next one to follow.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// An earlier write could not be rolled back: appending more would bury a torn line.
    Broken,
    Io(std::io::Error),
}

/// A file opened for appending whole, fsync'd lines.
#[derive(Debug)]
pub(crate) struct SyncedAppend {
    path: PathBuf,
    file: File,
    /// Bytes known good, to roll back a partly written line.
    len: u64,
    broken: bool,
}

impl SyncedAppend {
    /// Opens `path` for appending without following a symlink (a link planted in its place
    /// would redirect the appends), refusing anything but a regular file.
    pub(crate) fn open(path: &Path) -> std::io::Result<SyncedAppend> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len = file.metadata()?.len();
        Ok(SyncedAppend {
            path: path.to_path_buf(),
            file,
            len,
            broken: false,
        })
    }

    /// Writes `bytes` and fsyncs them; on failure the file is cut back to its last good length.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), AppendError> {
        if self.broken {
            return Err(AppendError::Broken);
        }
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(AppendError::Io(e));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
