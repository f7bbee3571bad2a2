//! Throughput of several workers in one process: `anonymize --device cpu,cpu --threads 1` (two
//! workers, one ONNX Runtime thread each) against `--device cpu --threads 2` (one worker, two
//! threads), alternating, on 16 images of the bundled examples with the tiny model.
//! Run: cargo bench --bench devices   (a few minutes on 2 cores)

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/peak.rs"]
mod peak;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// 16 distinct 256 x 256 images (tiled: larger than the tiny model's 128 px).
fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("create input");
    let source = image::open(root().join("examples/astronaut.png")).expect("example");
    for k in 0..16u32 {
        source
            .huerotate(k as i32 * 20)
            .save(input.join(format!("{k:02}.png")))
            .expect("write image");
    }
    input
}

fn policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("policies/demo.toml"))
        .expect("demo policy")
        .replace("\"../models/", &format!("\"{}/models/", root().display()))
        .replace("max-attempts = 3", "max-attempts = 1");
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("write policy");
    path
}

/// Seconds and peak RSS (MiB) of one anonymize run with `device` and `threads`.
fn run(policy: &Path, input: &Path, output: &Path, device: &str, threads: &str) -> (f64, f64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_boomerang"));
    command
        .args(["anonymize", "--quiet", "--level", "low", "--seed", "1"])
        .args(["--device", device, "--threads", threads, "--policy"])
        .arg(policy)
        .arg(input)
        .arg(output);
    let measured = peak::measure(command);
    assert!(
        matches!(measured.status.code(), Some(0 | 3)),
        "anonymize failed: {}",
        measured.stdout
    );
    (
        measured.elapsed.as_secs_f64(),
        measured.peak_kb as f64 / 1024.0,
    )
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measuring is for `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("devices: measurement skipped (run `cargo bench --bench devices`)");
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let input = dataset(temp.path());
    let policy = policy(temp.path());
    let mut ratios = Vec::new();
    for pair in 0..3 {
        let out = |name: &str| temp.path().join(format!("{name}{pair}"));
        let (two_workers, two_mib) = run(&policy, &input, &out("two"), "cpu,cpu", "1");
        let (one_worker, one_mib) = run(&policy, &input, &out("one"), "cpu", "2");
        println!(
            "pair {pair}: 2 workers x 1 thread {two_workers:.2} s ({two_mib:.0} MiB), 1 worker x 2 threads {one_worker:.2} s ({one_mib:.0} MiB)"
        );
        ratios.push(one_worker / two_workers);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput ratio (2 workers x 1 thread) / (1 worker x 2 threads): min {:.3} median {:.3} max {:.3}",
        ratios[0], ratios[1], ratios[2]
    );
}
