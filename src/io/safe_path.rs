//! Paths the run writes: folders below OUT created component by component without following a
//! symlink, and the private files (report, run.json) opened only when they are regular files.
//!
//! OUT itself is resolved once (symlinks and `..` of the path the user gave); below it, a symlink
//! is never followed for writing: a folder that turns out to be a symlink is an error, so a link
//! planted inside OUT (say `OUT/b -> /elsewhere`) cannot redirect outputs out of it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

fn symlink_error(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symlink inside the output folder: refusing to write through it (remove the link)",
        path.display()
    ))
}

/// Creates the folders of `relative` below `root` (which must exist), one component at a time:
/// a component that is a symlink, or exists and is not a folder, is an error. `relative` must
/// be relative and free of `..`. Returns `root.join(relative)`.
pub fn create_dirs_below(root: &Path, relative: &Path) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(name) => path.push(name),
            Component::CurDir => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: not a plain relative path below {}",
                        relative.display(),
                        root.display()
                    ),
                ))
            }
        }
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => return Err(symlink_error(&path)),
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a folder",
                    path.display()
                )))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    // Created meanwhile: check what it is.
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                        if !std::fs::symlink_metadata(&path)?.is_dir() {
                            return Err(symlink_error(&path));
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(path)
}

/// Makes the parent folders of the file `relative` below `root` (see [`create_dirs_below`]) and
/// refuses a file name that is a symlink. Returns the file's full path.
pub fn prepare_file_below(root: &Path, relative: &Path) -> io::Result<PathBuf> {
    let parent = relative.parent().unwrap_or(Path::new(""));
    let name = relative.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", relative.display()),
        )
    })?;
    let path = create_dirs_below(root, parent)?.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.file_type().is_symlink() => Err(symlink_error(&path)),
        _ => Ok(path),
    }
}

/// The first symlink found anywhere below `root` (not `root` itself), if any.
pub fn find_symlink_below(root: &Path) -> io::Result<Option<PathBuf>> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                return Ok(Some(entry.path()));
            }
            if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(None)
}

/// Whether a private file (`what`: "report", "run record") exists at `path`; anything there
/// that is not a regular file (a symlink, FIFO, socket, device or folder) is an error, found
/// without opening it (opening a FIFO would block).
pub fn private_file_exists(path: &Path, what: &str) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(true),
        Ok(_) => Err(not_regular(path, what)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the {what} {} is not a regular file (a symlink, FIFO, device or folder): refusing to use it; remove it or choose another --report",
            path.display()
        ),
    )
}

/// Opens an existing private file for reading without following a symlink and without blocking
/// on a FIFO; anything but a regular file is an error.
pub fn open_regular(path: &Path, what: &str) -> io::Result<File> {
    open_if_regular(path)?.ok_or_else(|| not_regular(path, what))
}

/// [`open_regular`] saying `None` for anything but a regular file (a symlink, FIFO, device or
/// folder), for callers with errors of their own.
pub fn open_if_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(file.metadata()?.is_file().then_some(file))
}

/// Opens a file someone handed over (a report or run.json to audit or merge) for reading:
/// symlinks are followed, as given, but a FIFO never blocks the open and anything but a regular
/// file (a FIFO, device such as `/dev/zero`, socket or folder) is an error.
pub fn open_given(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device, socket or folder): refusing to read it",
        ));
    }
    Ok(file)
}

/// Reads a whole file [`open_given`] opens, refusing one larger than `limit` bytes (the memory
/// is the reader's, the file the operator's).
pub fn read_given(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_given(path)?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {limit} bytes, more than any run writes: refusing to read it"),
        )
    };
    if file.metadata()?.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // Bounded: the file may grow while it is read.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens a folder (for locking it) without following a symlink.
pub fn open_folder(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}
