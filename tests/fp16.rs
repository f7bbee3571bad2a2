//! fp16 exports and integer timesteps: the model check reads each port's element type, the pipeline
//! converts at the graph boundary. Uses tiny-sd-fp16, which tools/make_tiny_sd_fp16.py (run by
//! tools/test) makes from models/tiny-sd in boomerang's cache: fp16 weights and IO, int64 timestep.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::diffusion::model::{InputTypes, SdModel};
use boomerang::io::runtime::{self, SessionOptions};
use ort::value::TensorElementType;
use predicates::prelude::*;

use common::{mean_abs_difference, root};

/// The fp16 tiny model where tools/make_tiny_sd_fp16.py writes it; missing is a failure, not a skip.
fn fp16_model() -> PathBuf {
    let dir = runtime::cache_root()
        .expect("no cache folder: set BOOMERANG_CACHE_DIR or HOME")
        .join("models/tiny-sd-fp16");
    assert!(
        dir.join("SHA256SUMS").is_file(),
        "{} is missing: run tools/test (or python3 tools/make_tiny_sd_fp16.py) to make it",
        dir.display()
    );
    dir
}

fn example() -> PathBuf {
    root().join("examples/astronaut.png")
}

/// `boomerang sample` of the example with `model` and `seed`, decoded to RGB bytes.
fn sample(model: &Path, seed: &str, out: &Path) -> Vec<u8> {
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--steps", "10", "--seed", seed, "--model"])
        .arg(model)
        .arg("-o")
        .arg(out)
        .arg(example())
        .assert()
        .success();
    image::open(out.join("astronaut_0.png"))
        .unwrap()
        .to_rgb8()
        .into_raw()
}

#[test]
fn fp16_model_declares_fp16_io_and_an_int64_timestep() {
    let model = SdModel::load(
        &fp16_model(),
        runtime::init(None).unwrap(),
        &SessionOptions::default(),
    )
    .unwrap();
    let half = TensorElementType::Float16;
    assert_eq!(
        model.input_types,
        InputTypes {
            input_ids: TensorElementType::Int64,
            unet_sample: half,
            timestep: TensorElementType::Int64,
            encoder_hidden_states: half,
            vae_encoder_sample: half,
            latent_sample: half,
        }
    );
}

#[test]
fn fp16_sample_is_close_to_fp32_with_the_same_seed() {
    let temp = tempfile::tempdir().unwrap();
    let fp32 = sample(
        &root().join("models/tiny-sd"),
        "1",
        &temp.path().join("fp32"),
    );
    let fp16 = sample(&fp16_model(), "1", &temp.path().join("fp16"));
    let other_seed = sample(
        &root().join("models/tiny-sd"),
        "2",
        &temp.path().join("seed2"),
    );
    // Measured with ONNX Runtime 1.31.1 on CPU: 0.038 (of 255), no pixel more than 1 apart;
    // another seed with the fp32 model is 45.5 away, so the bound tells the same sample apart.
    let difference = mean_abs_difference(&fp16, &fp32);
    assert!(
        difference < 0.5,
        "fp16 vs fp32: mean |difference| {difference}"
    );
    let seeds = mean_abs_difference(&other_seed, &fp32);
    assert!(seeds > 10.0, "seed 2 vs seed 1: mean |difference| {seeds}");
}

#[test]
fn unsupported_element_type_is_a_one_line_model_error() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("model");
    copy_tree(&root().join("models/tiny-sd"), &model);
    // Without the manifest, the swapped graph is reported for its signature, not as a changed file.
    std::fs::remove_file(model.join("SHA256SUMS")).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/broken/unet_double_sample.onnx"),
        model.join("unet/model.onnx"),
    )
    .unwrap();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--seed", "1", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(example())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "unet/model.onnx: input `sample` has element type f64; accepted: f32, f16",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

fn copy_tree(from: &Path, to: &Path) {
    for (relative, bytes) in common::tree(from) {
        let target = to.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}
