//! SHA-256 helpers shared by the model manifest, the runtime fetch and reports.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a file, streamed so multi-GB UNet weights never sit in memory.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Raw SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether a file's sha256 may come from a record of an earlier hashing ([`sha256_file_remembered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Re-use the sha256 recorded for the same file (same device, inode, size, modification and
    /// change times); hash files that are new or changed. Opening a 4 GB model then reads no
    /// weights twice.
    #[default]
    Remembered,
    /// Hash every byte (`--verify full`; the audit always does).
    Full,
}

/// A record older than this, relative to the file's change time, is trusted: a file rewritten
/// within the file system's timestamp granularity after being hashed could otherwise keep its
/// times and size (git's "racily clean" entries).
const SETTLED_SECONDS: i64 = 2;

/// The file's sha256, from boomerang's cache of verified hashes when `verify` allows and the
/// file's identity and times are unchanged, else hashed (and remembered). The cache is an
/// optimisation: when it cannot be read or written the file is simply hashed.
pub fn sha256_file_remembered(path: &Path, verify: Verify) -> std::io::Result<String> {
    match super::runtime::cache_root() {
        Some(cache) if verify == Verify::Remembered => {
            sha256_remembered_in(path, &cache.join("verified-sha256"))
        }
        _ => sha256_hashed_once(path, &HASHED_BY_THIS_PROCESS),
    }
}

/// Digests this process computed itself, by file identity: `--verify full` distrusts records
/// from outside the process, not its own reading, so a model folder checked before a run and
/// again when each worker opens it is read once.
static HASHED_BY_THIS_PROCESS: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The file's sha256 from `hashed` while its identity is unchanged, else hashed (and kept when
/// the file is settled and did not change while it was read).
fn sha256_hashed_once(
    path: &Path,
    hashed: &std::sync::Mutex<BTreeMap<String, String>>,
) -> std::io::Result<String> {
    let canonical = std::fs::canonicalize(path)?;
    let before = identity(&canonical)?;
    let known = hashed.lock().ok().and_then(|map| map.get(&before).cloned());
    if let Some(digest) = known {
        return Ok(digest);
    }
    let digest = sha256_file(&canonical)?;
    if settled(&canonical) && identity(&canonical).is_ok_and(|after| after == before) {
        if let Ok(mut map) = hashed.lock() {
            map.insert(before, digest.clone());
        }
    }
    Ok(digest)
}

/// Whether the file's last change is older than [`SETTLED_SECONDS`].
fn settled(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    std::fs::metadata(path).is_ok_and(|m| now - m.ctime() >= SETTLED_SECONDS)
}

/// [`sha256_file_remembered`] with the records in `records`, one file per canonical path.
fn sha256_remembered_in(path: &Path, records: &Path) -> std::io::Result<String> {
    let canonical = std::fs::canonicalize(path)?;
    let record = records.join(hex::encode(sha256_bytes(
        canonical.as_os_str().as_encoded_bytes(),
    )));
    let before = identity(&canonical)?;
    if let Ok(text) = std::fs::read_to_string(&record) {
        let digest = text
            .strip_prefix(&before)
            .and_then(|rest| rest.strip_suffix('\n'));
        if let Some(digest) =
            digest.filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Ok(digest.to_string());
        }
    }
    let digest = sha256_file(&canonical)?;
    // Only a file that did not change while it was hashed, and not just now, is remembered; a
    // record that cannot be written only costs a hash next time.
    if settled(&canonical) && identity(&canonical).is_ok_and(|after| after == before) {
        let written = std::fs::create_dir_all(records)
            .and_then(|()| super::atomic::write(&record, format!("{before}{digest}\n").as_bytes()));
        drop(written);
    }
    Ok(digest)
}

/// `v1 <canonical path, hex> <device> <inode> <size> <mtime> <ctime> `: what must be unchanged
/// for a remembered sha256 to stand. ctime cannot be set by a program, so a file rewritten and
/// given back its old mtime still differs.
fn identity(canonical: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(canonical)?;
    Ok(format!(
        "v1 {} {} {} {} {}.{:09} {}.{:09} ",
        hex::encode(canonical.as_os_str().as_encoded_bytes()),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_per_process_while_it_is_unchanged() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("weights.bin");
        std::fs::write(&file, b"first").unwrap();
        let hashed = std::sync::Mutex::new(BTreeMap::new());
        let first = sha256_file(&file).unwrap();
        // Just written: hashed every time.
        assert_eq!(sha256_hashed_once(&file, &hashed).unwrap(), first);
        assert!(hashed.lock().unwrap().is_empty());
        settle();
        assert_eq!(sha256_hashed_once(&file, &hashed).unwrap(), first);
        // What this process hashed answers now (a planted digest shows it is not re-read)...
        let planted = "cd".repeat(32);
        for digest in hashed.lock().unwrap().values_mut() {
            *digest = planted.clone();
        }
        assert_eq!(sha256_hashed_once(&file, &hashed).unwrap(), planted);
        // ...until the file changes, even to the same size with its old mtime back.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"other").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            sha256_hashed_once(&file, &hashed).unwrap(),
            sha256_file(&file).unwrap()
        );
    }

    fn settle() {
        std::thread::sleep(std::time::Duration::from_millis(
            SETTLED_SECONDS as u64 * 1000 + 200,
        ));
    }

    #[test]
    fn a_remembered_hash_stands_only_while_the_file_is_unchanged() {
        let temp = tempfile::tempdir().unwrap();
        let records = temp.path().join("records");
        let file = temp.path().join("weights.bin");
        std::fs::write(&file, b"first").unwrap();
        let first = sha256_file(&file).unwrap();
        // Just written: hashed, not remembered.
        assert_eq!(sha256_remembered_in(&file, &records).unwrap(), first);
        assert!(!records.exists());
        settle();
        assert_eq!(sha256_remembered_in(&file, &records).unwrap(), first);
        let record = std::fs::read_dir(&records)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        // The record is what answers now: a forged digest in it is returned...
        let forged = "ab".repeat(32);
        let text = std::fs::read_to_string(&record).unwrap();
        std::fs::write(&record, text.replace(&first, &forged)).unwrap();
        assert_eq!(sha256_remembered_in(&file, &records).unwrap(), forged);
        // ...but not once the file changes, even to the same size with its old mtime back.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"other").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            sha256_remembered_in(&file, &records).unwrap(),
            sha256_file(&file).unwrap()
        );
    }
}
