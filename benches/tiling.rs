//! Native-resolution Boomerang: time and peak memory of `boomerang sample` on one image of 1, 4
//! and 16 tiles of the bundled tiny model (128, 224 and 416 px; working size 128 px), with the
//! share of wall time spent outside ONNX Runtime from `--timings`.
//! Run: cargo bench --bench tiling
//! On a Stable Diffusion 1.5-shaped export (tools/make_sd15_shaped.py), one 1024x1024 image (9
//! tiles, one per graph call): cargo bench --bench tiling -- --sd15 DIR   (many minutes on 2 cores)

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/peak.rs"]
mod peak;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `side` x `side` crop-free resize of the bundled astronaut.
fn input(dir: &Path, side: u32) -> PathBuf {
    let path = dir.join(format!("astronaut-{side}.png"));
    image::open(root().join("examples/astronaut.png"))
        .expect("examples/astronaut.png")
        .resize_exact(side, side, image::imageops::FilterType::Lanczos3)
        .save(&path)
        .expect("write input");
    path
}

/// One `sample` run (`batch` tiles per graph call): prints tiles, wall time, peak RSS and the
/// outside-ONNX-Runtime share.
fn measure(model: &Path, image: &Path, output: &Path, steps: &str, batch: &str) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_boomerang"));
    command
        .args(["sample", "--timings", "--seed", "1", "--strength", "0.5"])
        .args(["--steps", steps, "--batch", batch, "--model"])
        .arg(model)
        .arg("-o")
        .arg(output)
        .arg(image);
    let measured = peak::measure(command);
    assert!(measured.status.success(), "{}", measured.stdout);
    let line = |prefix: &str| {
        measured
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or("")
            .to_string()
    };
    println!(
        "{}: {:.2} s, peak RSS {:.1} MiB\n    {}\n    {}",
        image.file_name().unwrap_or_default().to_string_lossy(),
        measured.elapsed.as_secs_f64(),
        measured.peak_kb as f64 / 1024.0,
        line("tiled:"),
        line("inside ONNX Runtime"),
    );
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measuring is for `cargo bench`.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!("tiling: measurement skipped (run `cargo bench --bench tiling`)");
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let sd15 = args
        .iter()
        .position(|a| a == "--sd15")
        .and_then(|i| args.get(i + 1));
    match sd15 {
        Some(model) => {
            let image = input(temp.path(), 1024);
            // One tile per call: four 512-px tiles through SD 1.5's VAE decoder at once took
            // over 17 GB here.
            measure(
                Path::new(model),
                &image,
                &temp.path().join("out"),
                "10",
                "1",
            );
        }
        None => {
            let model = root().join("models/tiny-sd");
            // 1, 4 and 16 tiles: 16, 28 and 52 latent cells per side, 16-cell tiles.
            for side in [128, 224, 416] {
                let image = input(temp.path(), side);
                let output = temp.path().join(format!("out{side}"));
                measure(&model, &image, &output, "20", "4");
            }
        }
    }
}
