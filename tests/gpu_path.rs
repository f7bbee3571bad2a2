//! The GPU path on a machine without a GPU: asking for `--device cuda` or `tensorrt` never runs on
//! the CPU instead; it fails before anything is written with one line that says what is missing
//! (the GPU build of ONNX Runtime, or each NVIDIA library with the pip package that provides it).
//! `fetch-onnxruntime --gpu` installs the pinned GPU build; this test checks it against its pins.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::io::runtime::{self, ORT_GPU_FILES};
use predicates::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample(device: &str, output: &Path) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .args(["sample", "--steps", "2", "--device", device, "--model"])
        .arg(root().join("models/tiny-sd"))
        .arg("--output")
        .arg(output)
        .arg(root().join("examples/astronaut.png"));
    command
}

fn one_line_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    text
}

/// The GPU build in the cache (tools/test runs `fetch-onnxruntime --gpu`), checked against its pins.
fn gpu_library() -> PathBuf {
    let library = runtime::cached_gpu_library().unwrap();
    let folder = library.parent().unwrap();
    for (name, sha256) in ORT_GPU_FILES {
        let path = folder.join(name);
        assert!(
            path.is_file(),
            "{} is missing: run tools/test, which runs `boomerang fetch-onnxruntime --gpu`",
            path.display()
        );
        let digest = boomerang::io::hashing::sha256_file(&path).unwrap();
        assert_eq!(&digest, sha256, "{}", path.display());
    }
    library
}

#[test]
fn a_gpu_device_with_the_cpu_build_names_the_fix() {
    let temp = tempfile::tempdir().unwrap();
    let cpu = runtime::cached_library().unwrap();
    assert!(cpu.is_file(), "run tools/test (fetch-onnxruntime)");
    for device in ["cuda", "cuda:1", "tensorrt"] {
        let output = temp.path().join(device.replace(':', "-"));
        let assert = sample(device, &output)
            .arg("--onnxruntime")
            .arg(&cpu)
            .assert()
            .code(1);
        let error = one_line_error(&assert.get_output().stderr);
        assert!(
            error.contains("without the") && error.contains("fetch-onnxruntime --gpu"),
            "{error}"
        );
        assert!(!output.exists(), "{device}: nothing may be written");
    }
}

#[test]
fn the_gpu_build_without_nvidia_libraries_names_each_with_its_package() {
    if Path::new("/proc/driver/nvidia").exists() {
        println!("skipped: this machine has the NVIDIA driver, so the libraries may be present");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let library = gpu_library();
    // A pip-style `nvidia` package on python3's path: a file there is found (and, not being a
    // real library, fails to load with the loader's reason).
    let site = temp.path().join("site");
    std::fs::create_dir_all(site.join("nvidia/cudnn/lib")).unwrap();
    std::fs::write(
        site.join("nvidia/cudnn/lib/libcudnn.so.9"),
        b"not a library",
    )
    .unwrap();

    let output = temp.path().join("cuda");
    let assert = sample("cuda", &output)
        .arg("--onnxruntime")
        .arg(&library)
        .env("PYTHONPATH", &site)
        .env_remove("CUDA_HOME")
        .assert()
        .code(1);
    let error = one_line_error(&assert.get_output().stderr);
    for expected in [
        "--device cuda:0: missing libcuda.so.1 (not found; the NVIDIA driver",
        "libcudart.so.13 (not found; pip install nvidia-cuda-runtime)",
        "libcublas.so.13 (not found; pip install nvidia-cublas)",
        "libcurand.so.10 (not found; pip install nvidia-curand)",
        "libcufft.so.12 (not found; pip install nvidia-cufft)",
        "libnvrtc.so.13 (not found; pip install nvidia-cuda-nvrtc)",
        "nvidia/cudnn/lib/libcudnn.so.9: ",
        "pip install nvidia-cudnn-cu13",
    ] {
        assert!(error.contains(expected), "{expected} in {error}");
    }
    assert!(!error.contains("libnvinfer"), "{error}");
    assert!(!output.exists());
    // Without --onnxruntime a GPU device finds the cached GPU build before the CPU build.
    let assert = sample("cuda", &output).assert().code(1);
    let error = one_line_error(&assert.get_output().stderr);
    assert!(error.contains("missing libcuda.so.1"), "{error}");

    let assert = sample("tensorrt", &output)
        .arg("--onnxruntime")
        .arg(&library)
        .assert()
        .code(1);
    let error = one_line_error(&assert.get_output().stderr);
    assert!(
        error.contains("libnvinfer.so.10 (not found; TensorRT 10")
            && error.contains("libnvonnxparser.so.10")
            && error.contains("libcudart.so.13"),
        "{error}"
    );
    assert!(!output.exists());
}

#[test]
fn fetch_gpu_is_a_no_op_when_the_pinned_files_are_installed() {
    let library = gpu_library();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["fetch-onnxruntime", "--gpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains(library.display().to_string()));
    gpu_library();
}

#[test]
fn audit_re_runs_on_the_device_asked_and_says_when_it_is_not_the_runs() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(common::faces().join("obama.jpg"), input.join("obama.jpg")).unwrap();
    let policy = common::demo_policy(temp.path(), &[("max-attempts = 3", "max-attempts = 1")]);
    let output = temp.path().join("out");
    common::anonymize(&policy, &input, &output, &["--level", "low", "--seed", "8"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let report = common::report_path(&output);
    let audit = || common::audit_recompute(&report, &input, &output, &policy, 1);
    audit()
        .assert()
        .code(0)
        .stdout(predicate::str::contains("re-ran lines: 2 (on cpu)"))
        .stdout(predicate::str::contains("reproducibility on the run's device").not());
    // Re-runs go where --device says, never quietly to the CPU.
    let assert = audit().args(["--device", "cuda"]).assert().code(1);
    let error = one_line_error(&assert.get_output().stderr);
    assert!(error.contains("--device cuda:0:"), "{error}");
    // A run made on another device: the byte comparison is made, and said not to be conclusive.
    let run_json = common::run_json_path(&output);
    let text = std::fs::read_to_string(&run_json).unwrap();
    let edited = text.replace("\"device\": \"cpu\"", "\"device\": \"cuda:0\"");
    assert_ne!(edited, text);
    std::fs::write(&run_json, edited).unwrap();
    audit().assert().stdout(predicate::str::contains(
        "it used cuda:0, the outputs were re-run on cpu",
    ));
}
