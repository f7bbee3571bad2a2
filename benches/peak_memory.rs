//! Peak memory of `anonymize` must not grow with the dataset: runs 100 and 1000 small images
//! through the tiny model and prints both peaks (VmHWM) and their ratio; then the peak for 8
//! images at the largest size the default pixel budget allows (50 megapixels), with --batch 8.
//! Run: cargo bench --bench peak_memory   (about 5 minutes on 2 cores); add `-- growth` or
//! `-- largest` for one of the two measurements.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "common/peak.rs"]
mod peak;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `count` distinct 64x64 images.
fn dataset(dir: &Path, count: u32) -> PathBuf {
    let input = dir.join(format!("in{count}"));
    std::fs::create_dir_all(&input).expect("create input");
    for k in 0..count {
        let image = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, (k % 251) as u8])
        });
        image
            .save(input.join(format!("{k:05}.png")))
            .expect("write image");
    }
    input
}

fn policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("policies/demo.toml"))
        .expect("demo policy")
        .replace("\"../models/", &format!("\"{}/models/", root().display()))
        .replace("steps = 10", "steps = 5")
        .replace("max-attempts = 3", "max-attempts = 1");
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("write policy");
    path
}

/// 8 distinct flat images of 8660 x 5773 (49.99 megapixels, just inside the default budget).
fn largest_allowed(dir: &Path) -> PathBuf {
    let input = dir.join("in-largest");
    std::fs::create_dir_all(&input).expect("create input");
    for k in 0..8u8 {
        image::RgbImage::from_pixel(8660, 5773, image::Rgb([k * 30, 128, 200]))
            .save(input.join(format!("{k}.png")))
            .expect("write image");
    }
    input
}

/// Peak resident set (kB) and time of one anonymize run.
fn peak_kb(policy: &Path, input: &Path, output: &Path) -> (u64, Duration) {
    peak_kb_with(policy, input, output, &[])
}

fn peak_kb_with(policy: &Path, input: &Path, output: &Path, extra: &[&str]) -> (u64, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_boomerang"));
    command
        .args([
            "anonymize",
            "--quiet",
            "--level",
            "low",
            "--seed",
            "1",
            "--policy",
        ])
        .arg(policy)
        .args(extra)
        .arg(input)
        .arg(output);
    let measured = peak::measure(command);
    // 3: some images failed certification (random weights); anything else voids the figure.
    assert!(
        matches!(measured.status.code(), Some(0 | 3)),
        "anonymize failed: {}\n{}",
        measured.status,
        measured.stdout
    );
    (measured.peak_kb, measured.elapsed)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measuring is for `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("peak_memory: measurement skipped (run `cargo bench --bench peak_memory`)");
        return;
    }
    let only = |name: &str| {
        let filters: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        filters.is_empty() || filters.iter().any(|f| f == name)
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let policy = policy(temp.path());
    if only("growth") {
        growth(temp.path(), &policy);
    }
    if only("largest") {
        largest(temp.path(), &policy);
    }
}

/// Peak RSS at 100 and 1000 images: must not grow with the dataset.
fn growth(dir: &Path, policy: &Path) {
    let mut peaks = Vec::new();
    for count in [100, 1000] {
        let input = dataset(dir, count);
        let (kb, elapsed) = peak_kb(policy, &input, &dir.join(format!("out{count}")));
        println!(
            "{count:>5} images: peak RSS {:.1} MiB, {:.1} s",
            kb as f64 / 1024.0,
            elapsed.as_secs_f64()
        );
        peaks.push(kb as f64);
    }
    println!("peak ratio 1000/100: {:.3}", peaks[1] / peaks[0]);
}

/// Peak RSS for 8 images at the default pixel budget, batched together.
fn largest(dir: &Path, policy: &Path) {
    let input = largest_allowed(dir);
    let (kb, elapsed) = peak_kb_with(policy, &input, &dir.join("out-largest"), &["--batch", "8"]);
    println!(
        "    8 images of 50 megapixels, --batch 8: peak RSS {:.1} MiB, {:.1} s",
        kb as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
}
