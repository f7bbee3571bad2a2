//! Secret files: a run seed kept in a file (`boomerang secret new FILE`, `--seed-file FILE`), so
//! the parts of a sharded run can share it without it ever appearing on a command line (where
//! `ps` and shell history show it).
//!
//! The format is two lines, checked strictly: `boomerang-secret v1` and the seed as exactly 16
//! lowercase hex digits, each ending in `\n`. A new file is created with `O_EXCL` (an existing
//! file is never replaced) and mode 0600, and fsync'd with its folder. A file that group or
//! others may read, write or run (`mode & 0o077 != 0`) is refused when read.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The first line of a secret file.
pub const MAGIC: &str = "boomerang-secret v1";

/// Largest secret file read; a real one is 37 bytes.
const MAX_LEN: u64 = 256;

/// Where a command's run seed comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeedSource {
    /// A fresh seed from the OS (or, for a resumed run, the run's own).
    #[default]
    Random,
    /// `--seed N`: the seed is on the command line, and recorded in what the run writes.
    Fixed(u64),
    /// `--seed-file FILE`: the seed is in a secret file, and only its fingerprint is recorded.
    File(PathBuf),
}

/// A run seed the user gave, and whether it came from a secret file (and so must not be written
/// down by the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenSeed {
    pub value: u64,
    pub from_file: bool,
}

impl SeedSource {
    /// The seed given (`None` for [`SeedSource::Random`]), reading a secret file.
    pub fn given(&self) -> Result<Option<GivenSeed>, SecretError> {
        Ok(match self {
            SeedSource::Random => None,
            SeedSource::Fixed(value) => Some(GivenSeed {
                value: *value,
                from_file: false,
            }),
            SeedSource::File(path) => Some(GivenSeed {
                value: read(path)?,
                from_file: true,
            }),
        })
    }

    /// The secret file, when the seed comes from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SeedSource::File(path) => Some(path),
            _ => None,
        }
    }
}

/// Why a secret file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: the file exists; a secret file is never replaced: choose a new name, or remove the old one if no run needs it", path.display())]
    Exists { path: PathBuf },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: group or others may read it (mode {mode:03o}); a secret file must be private: chmod 600 {}", path.display(), path.display())]
    Readable { path: PathBuf, mode: u32 },
    #[error("{}: not a boomerang secret file: {reason}", path.display())]
    Format { path: PathBuf, reason: &'static str },
}

fn io_error(path: &Path, source: std::io::Error) -> SecretError {
    SecretError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The text of a secret file holding `seed`.
pub fn encode(seed: u64) -> String {
    format!("{MAGIC}\n{seed:016x}\n")
}

/// The seed of a secret file's text; the format is checked strictly.
pub fn decode(text: &[u8]) -> Result<u64, &'static str> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8 text")?;
    let rest = text
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_prefix('\n'))
        .ok_or("the first line is not `boomerang-secret v1`")?;
    let digits = rest
        .strip_suffix('\n')
        .ok_or("the seed line does not end the file with a newline")?;
    let well_formed = digits.len() == 16
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err("the second line is not a seed of exactly 16 lowercase hex digits");
    }
    u64::from_str_radix(digits, 16).map_err(|_| "the seed is not hex")
}

/// Creates `path` holding `seed`: `O_EXCL` (an existing file, or a link, is refused), mode 0600
/// whatever the umask, written and fsync'd, then its folder fsync'd.
pub fn create(path: &Path, seed: u64) -> Result<(), SecretError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SecretError::Exists {
                path: path.to_path_buf(),
            },
            _ => io_error(path, e),
        })?;
    let written = (|| {
        // The umask can only have removed bits; set the mode exactly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(encode(seed).as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io_error(path, e));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// The seed in the secret file `path`, refusing a file group or others may access and any text
/// that is not exactly the format [`encode`] writes.
pub fn read(path: &Path) -> Result<u64, SecretError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(SecretError::Format {
            path: path.to_path_buf(),
            reason: "it is not a regular file",
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Readable {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    decode(&bytes).map_err(|reason| SecretError::Format {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_agree_and_the_format_is_strict() {
        for seed in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(decode(encode(seed).as_bytes()), Ok(seed));
        }
        assert_eq!(encode(255), "boomerang-secret v1\n00000000000000ff\n");
        for bad in [
            "",
            "boomerang-secret v1\n",
            "boomerang-secret v1\n00000000000000ff",
            "boomerang-secret v1\n00000000000000FF\n",
            "boomerang-secret v1\n0000000000000ff\n",
            "boomerang-secret v1\n00000000000000ff\n\n",
            "boomerang-secret v2\n00000000000000ff\n",
            "boomerang-secret v1\r\n00000000000000ff\n",
            "boomerang-secret v1\n+0000000000000ff\n",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_is_private_exclusive_and_read_refuses_open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.secret");
        create(&path, 42).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), 42);
        assert!(matches!(create(&path, 43), Err(SecretError::Exists { .. })));
        assert_eq!(read(&path).unwrap(), 42);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }
}
