//! `boomerang sample` end to end on the bundled tiny model: distinct samples, byte-identical reruns
//! whatever the thread count or batch size, and one-line errors for broken model folders and a
//! missing ONNX Runtime.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> PathBuf {
    root().join("examples/astronaut.png")
}

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

fn sample(out: &Path, extra: &[&str]) -> String {
    let output = boomerang()
        .args(["sample", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args([
            "--strength",
            "0.5",
            "--steps",
            "10",
            "--seed",
            "1",
            "-n",
            "3",
            "-o",
        ])
        .arg(out)
        .args(extra)
        .arg(example())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

fn read_samples(out: &Path) -> Vec<Vec<u8>> {
    (0..3)
        .map(|k| std::fs::read(out.join(format!("astronaut_{k}.png"))).unwrap())
        .collect()
}

#[test]
fn samples_are_distinct_and_reruns_are_byte_identical() {
    let temp = tempfile::tempdir().unwrap();
    let first = temp.path().join("first");
    let stdout = sample(&first, &["--threads", "1"]);
    // PNDM (the tiny model's own scheduler) at 10 steps lists 11 timesteps (PLMS repeats 801);
    // diffusers starts strength 0.5 at index 5 of them: timestep 501, 6 UNet calls.
    assert!(
        stdout.contains("6 denoising steps from start timestep 501"),
        "{stdout}"
    );
    let samples = read_samples(&first);
    assert_ne!(samples[0], samples[1]);
    assert_ne!(samples[1], samples[2]);
    assert_ne!(samples[0], samples[2]);
    let decoded = image::open(first.join("astronaut_0.png")).unwrap();
    let source = image::open(example()).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (source.width(), source.height())
    );

    let second = temp.path().join("second");
    sample(&second, &["--threads", "2", "--batch", "2"]);
    assert_eq!(
        samples,
        read_samples(&second),
        "threads/batch changed the bytes"
    );
}

#[test]
fn euler_discrete_runs_from_the_command_line_and_differs_from_euler_ancestral() {
    let temp = tempfile::tempdir().unwrap();
    let euler = temp.path().join("euler");
    let stdout = sample(&euler, &["--scheduler", "euler"]);
    // EulerDiscreteScheduler's own default spacing is linspace (the tiny model's PNDM file sets
    // none): 999, 888, ..., 0; strength 0.5 starts at index 5.
    assert!(
        stdout.contains("10 euler steps: 5 denoising steps from start timestep 444"),
        "{stdout}"
    );
    let ancestral = temp.path().join("ancestral");
    sample(&ancestral, &["--scheduler", "euler-ancestral"]);
    assert_ne!(read_samples(&euler), read_samples(&ancestral));
    let again = temp.path().join("again");
    sample(&again, &["--scheduler", "euler", "--batch", "3"]);
    assert_eq!(read_samples(&euler), read_samples(&again));
}

#[test]
fn ort_profile_env_writes_each_graphs_profile_with_its_runs() {
    let temp = tempfile::tempdir().unwrap();
    let profiles = temp.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    boomerang()
        .env("BOOMERANG_ORT_PROFILE", &profiles)
        .args([
            "sample",
            "--steps",
            "10",
            "--strength",
            "0.5",
            "--seed",
            "1",
            "--model",
        ])
        .arg(root().join("models/tiny-sd"))
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(example())
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let graphs: Vec<&str> = names.iter().map(|n| n.split('_').next().unwrap()).collect();
    assert_eq!(
        graphs,
        [
            "boomerang-text",
            "boomerang-unet",
            "boomerang-vae",
            "boomerang-vae"
        ],
        "{names:?}"
    );
    let unet = names
        .iter()
        .find(|n| n.starts_with("boomerang-unet"))
        .unwrap();
    let events: serde_json::Value =
        serde_json::from_slice(&std::fs::read(profiles.join(unet)).unwrap()).unwrap();
    let runs = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "Session" && e["name"] == "model_run")
        .count();
    // 6 denoising steps (strength 0.5 of 10 PNDM steps), each one UNet run per tile: the 512²
    // example is 9 tiles at the tiny model's 128² working size.
    assert_eq!(runs, 6 * 9, "{unet}");
}

#[test]
fn another_seed_gives_other_samples() {
    let temp = tempfile::tempdir().unwrap();
    sample(&temp.path().join("a"), &[]);
    let other = temp.path().join("b");
    boomerang()
        .args(["sample", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args(["--steps", "10", "--seed", "2", "-n", "3", "-o"])
        .arg(&other)
        .arg(example())
        .assert()
        .success();
    assert_ne!(read_samples(&temp.path().join("a")), read_samples(&other));
}

/// A copy of the tiny model without its manifest, so a damaged graph is reported as such.
fn damaged_model(temp: &Path) -> PathBuf {
    let source = root().join("models/tiny-sd");
    let copy = temp.join("model");
    for entry in walk(&source) {
        let relative = entry.strip_prefix(&source).unwrap();
        let target = copy.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    std::fs::remove_file(copy.join("SHA256SUMS")).unwrap();
    copy
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn sample_with_model(model: &Path, out: &Path) -> assert_cmd::assert::Assert {
    boomerang()
        .args(["sample", "--seed", "1", "--model"])
        .arg(model)
        .arg("-o")
        .arg(out)
        .arg(example())
        .assert()
}

#[test]
fn missing_graph_names_the_file() {
    let temp = tempfile::tempdir().unwrap();
    let model = damaged_model(temp.path());
    std::fs::remove_file(model.join("vae_decoder/model.onnx")).unwrap();
    sample_with_model(&model, &temp.path().join("out"))
        .failure()
        .stderr(predicate::str::contains(
            "vae_decoder/model.onnx: missing the VAE decoder graph",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn renamed_input_names_file_and_expected_name() {
    let temp = tempfile::tempdir().unwrap();
    let model = damaged_model(temp.path());
    std::fs::copy(
        root().join("tests/fixtures/broken/unet_renamed_input.onnx"),
        model.join("unet/model.onnx"),
    )
    .unwrap();
    sample_with_model(&model, &temp.path().join("out"))
        .failure()
        .stderr(predicate::str::contains(
            "unet/model.onnx: expected input `sample`, found `latents`",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn changed_model_file_is_refused_by_the_manifest() {
    let temp = tempfile::tempdir().unwrap();
    let model = damaged_model(temp.path());
    std::fs::copy(
        root().join("models/tiny-sd/SHA256SUMS"),
        model.join("SHA256SUMS"),
    )
    .unwrap();
    std::fs::write(model.join("unet/config.json.bak"), "{}").unwrap();
    sample_with_model(&model, &temp.path().join("out"))
        .failure()
        .stderr(predicate::str::contains("unet/config.json.bak not listed"));
}

#[test]
fn missing_onnxruntime_prints_the_fix_command() {
    let temp = tempfile::tempdir().unwrap();
    boomerang()
        .env_remove("ORT_DYLIB_PATH")
        .env("BOOMERANG_CACHE_DIR", temp.path())
        // No python3 and no system library on this PATH/loader path.
        .env("PATH", temp.path())
        .env("LD_LIBRARY_PATH", temp.path())
        .args(["sample", "--seed", "1", "--model"])
        .arg(root().join("models/tiny-sd"))
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(example())
        .assert()
        .failure()
        .stderr(predicate::str::contains("ONNX Runtime not found"))
        .stderr(predicate::str::contains(
            "fix: run `boomerang fetch-onnxruntime`",
        ));
}

#[test]
fn gpu_request_on_a_cpu_runtime_fails_instead_of_falling_back() {
    let temp = tempfile::tempdir().unwrap();
    boomerang()
        .args(["sample", "--seed", "1", "--device", "cuda", "--model"])
        .arg(root().join("models/tiny-sd"))
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(example())
        .assert()
        .failure()
        .stderr(predicate::str::contains("--device cuda:0: "));
    assert!(!temp.path().join("out").exists());
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    boomerang()
        .args([
            "sample",
            "--model",
            "x",
            "--strength",
            "1.5",
            "-o",
            "o",
            "i.png",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--strength 1.5 is outside 0..=1"));
    boomerang()
        .args([
            "sample",
            "--model",
            "x",
            "--scheduler",
            "pndm",
            "--eta",
            "1",
            "-o",
            "o",
            "i.png",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--eta applies to ddim only"));
}

#[test]
fn guidance_and_eta_have_the_policy_bounds() {
    for (flag, value, expected) in [
        ("--guidance", "1e30", "is outside 0..=30"),
        ("--eta", "1.5", "--eta 1.5 is outside 0..=1"),
    ] {
        boomerang()
            .args(["sample", "--model", "x", flag, value, "-o", "o", "i.png"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(expected));
    }
}

/// `sample -o FOLDER` names its outputs `<stem>_<k>.png`: a user's own file of that name, or an
/// input, is refused before anything is sampled, and left as it was.
#[test]
fn existing_files_and_inputs_are_never_replaced() {
    let temp = tempfile::tempdir().unwrap();
    let photos = temp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let input = photos.join("astronaut.png");
    std::fs::copy(example(), &input).unwrap();
    let own = photos.join("astronaut_1.png");
    std::fs::write(&own, b"the user's own photo").unwrap();
    let run = |images: &[&Path]| {
        boomerang()
            .args(["sample", "--model"])
            .arg(root().join("models/tiny-sd"))
            .args(["--steps", "2", "--seed", "1", "-n", "2", "-o"])
            .arg(&photos)
            .args(images)
            .assert()
            .failure()
            .stderr(predicate::function(|s: &str| s.lines().count() == 1))
    };
    run(&[&input]).stderr(predicate::str::contains(format!(
        "{} already exists: sample never replaces a file",
        own.display()
    )));
    assert_eq!(std::fs::read(&own).unwrap(), b"the user's own photo");
    assert!(!photos.join("astronaut_0.png").exists());

    // `sample -o d d/a.png d/a_0.png`: a_0.png is both an input and a's first output.
    std::fs::remove_file(&own).unwrap();
    let second = photos.join("astronaut_0.png");
    std::fs::copy(example(), &second).unwrap();
    run(&[&input, &second]).stderr(predicate::str::contains(format!(
        "{} would be written over the input {}",
        second.display(),
        second.display()
    )));
    assert_eq!(
        std::fs::read(&second).unwrap(),
        std::fs::read(example()).unwrap()
    );
    assert!(!own.exists());
}
