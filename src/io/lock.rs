//! Exclusive locks (`flock`) that keep two runs from writing the same output folder or report.
//! A lock lives as long as the `File` that holds it, and the kernel drops it when the process
//! dies, so a kill -9 never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path} is locked: another run is writing it (it holds the lock on {path} until it ends); \
         wait for that run to finish, or write this one elsewhere (another output folder; for anonymize also another --report)"
    )]
    Held { path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the exclusive lock on an open `file` (whose name is `path`) without waiting.
pub fn try_lock(file: &File, path: &Path) -> Result<(), LockError> {
    file.try_lock().map_err(|error| match error {
        TryLockError::WouldBlock => LockError::Held {
            path: path.to_path_buf(),
        },
        TryLockError::Error(source) => LockError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Locks the folder `path` itself (no lock file is created inside it); the lock is held until
/// the returned `File` is dropped.
pub fn lock_folder(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = crate::io::safe_path::open_folder(path).map_err(io)?;
    try_lock(&folder, path)?;
    Ok(folder)
}

/// Takes a shared lock on the folder `path`: the parts of a sharded run each hold one on their
/// common OUT (and an exclusive lock on their own report), so they run side by side, while an
/// unsharded run, which locks OUT exclusively, cannot run with any of them.
pub fn lock_folder_shared(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = crate::io::safe_path::open_folder(path).map_err(io)?;
    folder.try_lock_shared().map_err(|error| match error {
        TryLockError::WouldBlock => LockError::Held {
            path: path.to_path_buf(),
        },
        TryLockError::Error(source) => LockError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(folder)
}
