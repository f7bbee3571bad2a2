//! tools/optimize_unet.py: a copy of a model folder with a faster UNet for CPUs. `--fuse` must keep
//! the math (the sample matches the original's), `--int8` and `--int8-conv` change it a little,
//! and the copy is a model boomerang opens and verifies like any other. The tool makes its venv in boomerang's cache
//! from tools/requirements-optimize.txt on first use (PyPI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::OnceLock;

use assert_cmd::Command;

use common::{mean_abs_difference, root};

fn optimize(out: &Path, flags: &[&str]) -> std::process::Output {
    Process::new("python3")
        .arg(root().join("tools/optimize_unet.py"))
        .arg(root().join("models/tiny-sd"))
        .arg(out)
        .args(flags)
        .output()
        .unwrap()
}

/// The copies the tests read, made once per test binary.
struct Copies {
    _temp: tempfile::TempDir,
    fused: PathBuf,
    fused_int8: PathBuf,
    all_int8: PathBuf,
}

fn copies() -> &'static Copies {
    static COPIES: OnceLock<Copies> = OnceLock::new();
    COPIES.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
        let fused = temp.path().join("fused");
        let fused_int8 = temp.path().join("fused-int8");
        let all_int8 = temp.path().join("all-int8");
        for (out, flags) in [
            (&fused, &["--fuse"][..]),
            (&fused_int8, &["--fuse", "--int8"]),
            (&all_int8, &["--fuse", "--int8-conv", "--int8"]),
        ] {
            let made = optimize(out, flags);
            assert!(
                made.status.success(),
                "optimize_unet.py {flags:?} failed:\n{}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        Copies {
            _temp: temp,
            fused,
            fused_int8,
            all_int8,
        }
    })
}

/// `boomerang sample` of the example with `model`, decoded to RGB bytes; `--verify full` so the
/// copy's manifest is checked byte for byte.
fn sample(model: &Path, seed: &str, out: &Path) -> Vec<u8> {
    Command::cargo_bin("boomerang")
        .unwrap()
        .args([
            "sample", "--steps", "10", "--verify", "full", "--seed", seed,
        ])
        .arg("--model")
        .arg(model)
        .arg("-o")
        .arg(out)
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .success();
    image::open(out.join("astronaut_0.png"))
        .unwrap()
        .to_rgb8()
        .into_raw()
}

fn max_abs_difference(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

/// A lossy copy's sample of the example differs from the original model's, by less than a quarter
/// of what another seed moves it.
fn assert_near_the_fp32_sample_but_not_it(copy: &Path) {
    let temp = tempfile::tempdir().unwrap();
    let original = sample(&root().join("models/tiny-sd"), "3", &temp.path().join("a"));
    let int8 = sample(copy, "3", &temp.path().join("b"));
    let other_seed = sample(&root().join("models/tiny-sd"), "4", &temp.path().join("c"));
    let lossy = mean_abs_difference(&original, &int8);
    let seeds = mean_abs_difference(&original, &other_seed);
    assert!(lossy > 0.0, "the int8 UNet gave the fp32 sample exactly");
    assert!(
        lossy < seeds / 4.0,
        "int8 vs fp32 {lossy}, another seed {seeds}: int8 is not the same sample"
    );
}

#[test]
fn fused_unet_has_fused_attention_and_samples_like_the_original() {
    let copies = copies();
    let record = std::fs::read_to_string(copies.fused.join("OPTIMIZED.md")).unwrap();
    // tiny-sd has 4 transformer blocks: each one self- and one cross-attention.
    assert!(record.contains("Attention 4"), "{record}");
    assert!(record.contains("MultiHeadAttention 4"), "{record}");
    let temp = tempfile::tempdir().unwrap();
    let original = sample(&root().join("models/tiny-sd"), "3", &temp.path().join("a"));
    let fused = sample(&copies.fused, "3", &temp.path().join("b"));
    // Measured with ONNX Runtime 1.31.1 on CPU: one channel of one pixel 1 level apart (mean
    // 3e-5); another seed is 44 levels away on average.
    let difference = max_abs_difference(&original, &fused);
    assert!(
        difference <= 1,
        "fused vs original: a pixel {difference} levels apart"
    );
}

#[test]
fn int8_unet_samples_near_the_original_but_not_the_same() {
    let copies = copies();
    let record = std::fs::read_to_string(copies.fused_int8.join("OPTIMIZED.md")).unwrap();
    assert!(record.contains("quantize_dynamic"), "{record}");
    // Measured: 0.84 levels from fp32 on average (at most 14), another seed 44.
    assert_near_the_fp32_sample_but_not_it(&copies.fused_int8);
}

#[test]
fn int8_convolutions_are_calibrated_and_sample_near_the_original() {
    let copies = copies();
    let record = std::fs::read_to_string(copies.all_int8.join("OPTIMIZED.md")).unwrap();
    // Two example images, five timesteps, two prompts.
    assert!(
        record.contains("quantize_static") && record.contains("from 20 calibration runs"),
        "{record}"
    );
    // The quantize/dequantize pairs ONNX Runtime turns into integer convolutions.
    let graph = std::fs::read(copies.all_int8.join("unet/model.onnx")).unwrap();
    for operator in [&b"QuantizeLinear"[..], b"DequantizeLinear"] {
        assert!(graph.windows(operator.len()).any(|w| w == operator));
    }
    // Measured: 0.83 levels from fp32 on average (at most 24), another seed 44.
    assert_near_the_fp32_sample_but_not_it(&copies.all_int8);
}

#[test]
fn calibration_inputs_are_checked_before_anything_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = temp.path().join("out");
    for (flags, expected) in [
        (
            ["--calibration-images", empty.to_str().unwrap()],
            "holds no image",
        ),
        (
            ["--calibration-timesteps", "900,1000"],
            "give integers in 0..999",
        ),
        (["--calibration-timesteps", "late"], "give integers"),
    ] {
        let refused = optimize(&out, &[&["--int8-conv"][..], &flags].concat());
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!out.exists());
    }
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
}

#[test]
fn a_changed_weight_in_the_copy_is_refused() {
    let copies = copies();
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("model");
    for (relative, bytes) in common::tree(&copies.fused) {
        let target = model.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let graph = model.join("unet/model.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&graph, bytes).unwrap();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--seed", "1", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("unet/model.onnx"));
    assert!(!temp.path().join("out").exists());
}

#[test]
fn asks_for_an_action_and_never_overwrites() {
    let temp = tempfile::tempdir().unwrap();
    let nothing = optimize(&temp.path().join("out"), &[]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr)
        .contains("--fuse, --int8-conv, --int8, or several"));
    let existing = temp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep"), b"mine").unwrap();
    let refused = optimize(&existing, &["--fuse"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists; choose a new folder"));
    assert_eq!(std::fs::read(existing.join("keep")).unwrap(), b"mine");
}
