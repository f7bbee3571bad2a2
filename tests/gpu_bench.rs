//! tools/gpu/bench_gpu.py, the benchmark the GPU machine runs (issue 14), through every step on
//! this CPU: the seeded pipeline, its ONNX export in the layout boomerang reads, ONNX Runtime's
//! Stable Diffusion optimizer to fp16 (attention fused, past onnxruntime's numpy >= 2.4 failure),
//! `boomerang sample` on both exports in real batches, the PyTorch pipeline on the same weights,
//! and the table. It runs in the model venv (tools/requirements-models.txt) that `tools/test`'s
//! tiny models need anyway. Its timings are not asserted: they say nothing about GPUs.

mod common;

use std::path::Path;
use std::process::Command;

use common::root;
use serde_json::Value;

const STEPS_RUN: u64 = 2; // --steps 4 at strength 0.5

/// `tools/gpu/bench_gpu.py RESULTS --shape tiny --device cpu`: the tiny model on this CPU.
fn bench_gpu(results: &Path) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(root().join("tools/gpu/bench_gpu.py"))
        .arg(results)
        .args(["--shape", "tiny", "--device", "cpu"]);
    command
}

#[test]
fn the_gpu_benchmark_runs_every_step_on_a_cpu_and_fills_its_table() {
    let temp = tempfile::tempdir().unwrap();
    let results = temp.path().join("results");
    let output = bench_gpu(&results)
        .args(["--steps", "4"])
        .args(["--batch", "1,2", "--guidance", "1,7.5", "--boomerang"])
        .arg(env!("CARGO_BIN_EXE_boomerang"))
        .arg("--work")
        .arg(temp.path().join("work"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let text = std::fs::read_to_string(results.join("results.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let fused = &report["setup"]["fp16_unet_fused"];
    let attention = ["Attention", "MultiHeadAttention"]
        .iter()
        .map(|op| fused[op].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(attention > 0, "the optimizer fused no attention: {fused}");

    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "{text}");
    for row in rows {
        assert!(
            row.get("error").is_none() && row.get("skipped").is_none(),
            "{row}"
        );
        assert!(row["per_image"].as_f64().unwrap() > 0.0, "{row}");
        let (batch, images) = (
            row["batch"].as_u64().unwrap(),
            row["images"].as_u64().unwrap(),
        );
        assert_eq!(images, 2 * batch, "{row}");
        if row["side"] == "torch" {
            continue;
        }
        // Two batches of `batch` images: one UNet call per step and batch (guidance included),
        // so a batch is one call, not one per image.
        assert_eq!(row["unet_calls"].as_u64(), Some(2 * STEPS_RUN), "{row}");
        let outside = row["outside_runtime"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&outside), "{row}");
        if row["side"] == "fp16" {
            // The fp16 graphs ran (not the fp32 ones), and compute nearly the same images.
            let levels = row["levels_from_fp32"].as_f64().unwrap();
            assert!(levels > 0.0 && levels < 1.0, "{row}");
        }
        // On a CPU, batching leaves every output byte as it was (README, Reproducibility).
        if batch == 1 {
            let same = &row["same_bytes_as_largest_batch"];
            let (identical, compared) = (same[0].as_u64().unwrap(), same[1].as_u64().unwrap());
            assert!(compared > 0 && identical == compared, "{row}");
        }
    }

    let table = std::fs::read_to_string(results.join("results.md")).unwrap();
    let lines: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("| 1.0 |") || line.starts_with("| 7.5 |"))
        .collect();
    assert_eq!(lines.len(), 12, "{table}");
    for line in lines.iter().filter(|line| !line.contains("| torch |")) {
        let ratio = line.split('|').nth(5).unwrap().trim();
        assert!(
            ratio.parse::<f64>().is_ok(),
            "no ours/PyTorch ratio: {line}"
        );
    }
}

#[test]
fn the_gpu_benchmark_says_which_binary_is_missing_before_it_builds_anything() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("no-boomerang");
    let output = bench_gpu(&temp.path().join("results"))
        .arg("--boomerang")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no boomerang binary at {}", missing.display())),
        "{stderr}"
    );
    assert!(!temp.path().join("results").exists());
}

#[test]
fn the_gpu_machines_fused_fp16_export_is_made_here_and_refused_on_the_cpu_with_what_to_do() {
    // What the GPU machine's preparation makes (all of the optimizer's CUDA fusions), on the tiny
    // model: the fusions happen, and boomerang on the CPU says what such a graph needs.
    let temp = tempfile::tempdir().unwrap();
    let work = temp.path().join("work");
    let output = bench_gpu(&temp.path().join("unused"))
        .args(["--fusions", "cuda"])
        .args(["--prepare-only", "--boomerang"])
        .arg(env!("CARGO_BIN_EXE_boomerang"))
        .arg("--work")
        .arg(&work)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(work.join("prepared.json")).unwrap();
    let prepared: Value = serde_json::from_str(&text).unwrap();
    let fused = &prepared["fp16_unet_fused"];
    for op in ["MultiHeadAttention", "NhwcConv"] {
        assert!(fused[op].as_u64().unwrap_or(0) > 0, "no {op}: {text}");
    }
    assert!(
        fused["GroupNorm"].as_u64().unwrap_or(0) + fused["SkipGroupNorm"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    let sample = assert_cmd::Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--seed", "1", "--model"])
        .arg(work.join("fp16"))
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(root().join("examples/astronaut.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&sample.stderr);
    assert!(!sample.status.success());
    assert!(
        stderr.contains("only GPU providers implement") && stderr.contains("--device cuda"),
        "{stderr}"
    );
}
