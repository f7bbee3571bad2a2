//! A model folder's manifest: the sha256 of every file, in `sha256sum` format (`SHA256SUMS`).
//!
//! The model hash that reports carry is the sha256 of the manifest text, so it pins every graph,
//! external weight file, config and tokenizer file at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::io::hashing::{sha256_bytes, sha256_file_remembered, Verify};

pub const MANIFEST_FILE: &str = "SHA256SUMS";

/// Where `boomerang model pull` records where a folder came from (repository, commit, time). Not
/// part of the model: two pulls of one commit must have the same model hash.
pub const PROVENANCE_FILE: &str = "pull.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelManifestError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}:{line}: expected `<sha256>  <relative path>`, found `{text}`")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{folder}: files differ from {MANIFEST_FILE}: {differences}\n  if the change is intended, rewrite it with `boomerang manifest --write {folder}`")]
    Mismatch {
        folder: PathBuf,
        differences: String,
    },
}

/// Relative path (with `/` separators) → hex sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelManifest {
    pub files: BTreeMap<String, String>,
}

impl ModelManifest {
    /// Hashes every byte of every regular file under `folder` (following symlinks, so a variant
    /// folder that links another's graphs is pinned by their content), except the manifest and
    /// the provenance record.
    pub fn compute(folder: &Path) -> Result<ModelManifest, ModelManifestError> {
        ModelManifest::compute_with(folder, Verify::Full)
    }

    /// [`ModelManifest::compute`], re-using the sha256 of files unchanged since they were last
    /// hashed when `verify` allows ([`sha256_file_remembered`]).
    pub fn compute_with(
        folder: &Path,
        verify: Verify,
    ) -> Result<ModelManifest, ModelManifestError> {
        let mut files = BTreeMap::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let dir = folder.join(&relative);
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                let name = entry.file_name();
                let child_relative = relative.join(&name);
                let child = folder.join(&child_relative);
                let metadata = std::fs::metadata(&child).map_err(|e| io_error(&child, e))?;
                if metadata.is_dir() {
                    pending.push(child_relative);
                } else if metadata.is_file() {
                    let key = child_relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    if key == MANIFEST_FILE || key == PROVENANCE_FILE {
                        continue;
                    }
                    let digest =
                        sha256_file_remembered(&child, verify).map_err(|e| io_error(&child, e))?;
                    files.insert(key, digest);
                }
            }
        }
        Ok(ModelManifest { files })
    }

    pub fn parse(text: &str, path: &Path) -> Result<ModelManifest, ModelManifestError> {
        let mut files = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = || ModelManifestError::Malformed {
                path: path.to_path_buf(),
                line: index + 1,
                text: line.to_string(),
            };
            let (digest, file) = line.split_once("  ").ok_or_else(malformed)?;
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            files.insert(file.to_string(), digest.to_ascii_lowercase());
        }
        Ok(ModelManifest { files })
    }

    /// The canonical text: sorted by path, one `sha256  path` line each.
    pub fn to_text(&self) -> String {
        self.files
            .iter()
            .map(|(file, digest)| format!("{digest}  {file}\n"))
            .collect()
    }

    /// The single hash that identifies the whole model.
    pub fn model_hash(&self) -> String {
        hex::encode(sha256_bytes(self.to_text().as_bytes()))
    }

    /// Compares against the folder's `SHA256SUMS`, when it has one.
    pub fn check_against_file(&self, folder: &Path) -> Result<bool, ModelManifestError> {
        let path = folder.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&path, e)),
        };
        let recorded = ModelManifest::parse(&text, &path)?;
        let mut differences = Vec::new();
        for (file, digest) in &recorded.files {
            match self.files.get(file) {
                None => differences.push(format!("{file} missing")),
                Some(found) if found != digest => differences.push(format!("{file} changed")),
                Some(_) => {}
            }
        }
        differences.extend(
            self.files
                .keys()
                .filter(|file| !recorded.files.contains_key(*file))
                .map(|file| format!("{file} not listed")),
        );
        if differences.is_empty() {
            Ok(true)
        } else {
            Err(ModelManifestError::Mismatch {
                folder: folder.to_path_buf(),
                differences: differences.join(", "),
            })
        }
    }

    /// Writes `SHA256SUMS` atomically.
    pub fn write(&self, folder: &Path) -> Result<PathBuf, ModelManifestError> {
        let path = folder.join(MANIFEST_FILE);
        crate::io::atomic::write(&path, self.to_text().as_bytes())
            .map_err(|e| io_error(&path, e))?;
        Ok(path)
    }
}

fn io_error(path: &Path, error: std::io::Error) -> ModelManifestError {
    ModelManifestError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}
