//! Helpers shared by the integration tests.

// Each test binary uses its own subset of these.
#![allow(dead_code)]

pub mod parity;
pub mod slurm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// Every file under `dir`, relative path → bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

/// PNG chunk types of a file, in order.
pub fn png_chunks(bytes: &[u8]) -> Vec<String> {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        chunks.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        at += 12 + length;
    }
    chunks
}

/// The repository root (models, policies, fixtures).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn faces() -> PathBuf {
    root().join("tests/fixtures/faces")
}

/// policies/demo.toml with absolute model paths, 5 steps, and the given overrides (each must
/// match), written into `dir`.
pub fn demo_policy(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("policies/demo.toml"))
        .unwrap()
        .replace("\"../models/", &format!("\"{}/models/", root().display()))
        .replace("steps = 10", "steps = 5");
    for (from, to) in replacements {
        assert!(text.contains(from), "policy has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `boomerang anonymize --quiet --policy POLICY EXTRA.. INPUT OUTPUT`.
pub fn anonymize(policy: &Path, input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .args(["anonymize", "--quiet", "--policy"])
        .arg(policy)
        .args(extra)
        .arg(input)
        .arg(output);
    command
}

/// `boomerang audit REPORT --inputs IN --outputs OUT --policy POLICY --recompute N`.
pub fn audit_recompute(
    report: &Path,
    input: &Path,
    output: &Path,
    policy: &Path,
    rows: usize,
) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .arg("audit")
        .arg(report)
        .arg("--inputs")
        .arg(input)
        .arg("--outputs")
        .arg(output)
        .arg("--policy")
        .arg(policy)
        .args(["--recompute", &rows.to_string()]);
    command
}

/// `OUT.<suffix>` beside OUT, where anonymize writes its report and run record by default.
pub fn sibling(output: &Path, suffix: &str) -> PathBuf {
    output.with_file_name(format!(
        "{}.{suffix}",
        output.file_name().unwrap().to_string_lossy()
    ))
}

pub fn report_path(output: &Path) -> PathBuf {
    sibling(output, "report.csv")
}

pub fn run_json_path(output: &Path) -> PathBuf {
    sibling(output, "run.json")
}

/// The CRC-32 of PNG chunks (over type and data), to build crafted PNGs.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Hex sha256 of `bytes`, as reports record hashes.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// `image` encoded as PNG with an eXIf chunk whose Orientation tag is `orientation` (1..=8), the
/// way a camera stores a photo whose pixels are not upright.
pub fn png_with_orientation(image: &image::DynamicImage, orientation: u16) -> Vec<u8> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    // Big-endian TIFF header, one IFD with one SHORT entry: Orientation (0x0112).
    let mut exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&(exif.len() as u32).to_be_bytes());
    let mut typed = b"eXIf".to_vec();
    typed.extend_from_slice(&exif);
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32(&typed).to_be_bytes());
    // Right after IHDR (8-byte signature + 25-byte IHDR chunk), before any IDAT.
    let mut out = png[..33].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[33..]);
    out
}

/// The finished entries of boomerang's kept optimized graphs under `cache` (staging folders,
/// named with a leading dot, left out), sorted.
pub fn optimized_graphs(cache: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cache.join("optimized-graphs"))
        .map(|listing| listing.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    entries.retain(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'));
    entries.sort();
    entries
}

/// Mean absolute difference of two equally long byte strings (decoded pixels), in levels.
pub fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let total: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    total as f64 / a.len() as f64
}
