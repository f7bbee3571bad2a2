//! Hardening of `anonymize` and `audit` against an operator who edits what the auditor is handed:
//! a face detector swapped in from the working directory, an edited run.json, a forged row
//! re-chained so that a chain-head-seeded sample misses it, a failed row turned `skipped`, a stray
//! folder in OUT, and reports of different levels merged.
//!
//! Every test works on a copy of one real run of the demo policy (tiny model, dlib embedder).

mod common;

use common::{faces, root, sha};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use boomerang::records::report::{verify, ReportRow, ReportWriter};
use predicates::prelude::*;

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

/// The demo policy with absolute model and embedder paths, written into `dir`.
fn write_policy(dir: &Path, embedder: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("policies/demo.toml"))
        .unwrap()
        .replace(
            "\"../models/tiny-sd\"",
            &format!("\"{}\"", root().join("models/tiny-sd").display()),
        )
        .replace(
            "\"../models/dlib-face/embedder.toml\"",
            &format!("\"{}\"", embedder.display()),
        )
        // The whole-image embedder and second opinion, where the checkout has them.
        .replace("\"../models/", &format!("\"{}/models/", root().display()));
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("obama")).unwrap();
    std::fs::create_dir_all(input.join("biden")).unwrap();
    std::fs::copy(faces().join("obama.jpg"), input.join("obama/1.jpg")).unwrap();
    std::fs::copy(faces().join("obama2.jpg"), input.join("obama/2.jpg")).unwrap();
    std::fs::copy(faces().join("biden.jpg"), input.join("biden/1.jpg")).unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    input
}

fn anonymize(dir: &Path, policy: &Path, extra: &[&str]) -> Command {
    let mut command = boomerang();
    command
        .current_dir(dir)
        .args(["anonymize", "--quiet", "--seed", "9", "--policy"])
        .arg(policy)
        .args(extra)
        .arg(dir.join("in"))
        .arg(dir.join("out"));
    command
}

/// One real run, made once: `in/`, `out/`, `out.report.csv`, `out.run.json`, `policy.toml`.
fn the_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        dataset(&dir);
        let policy = write_policy(&dir, &root().join("models/dlib-face/embedder.toml"));
        anonymize(&dir, &policy, &[])
            .assert()
            .code(predicate::in_iter([0, 3]));
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A private copy of the run.
struct Run {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Run {
    fn copy() -> Run {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        copy_tree(the_run(), &dir);
        Run { _temp: temp, dir }
    }

    fn report(&self) -> PathBuf {
        self.dir.join("out.report.csv")
    }

    fn run_json(&self) -> PathBuf {
        self.dir.join("out.run.json")
    }

    fn rows(&self) -> Vec<ReportRow> {
        verify(&self.report()).unwrap()
    }

    fn record(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.run_json()).unwrap()).unwrap()
    }

    fn write_record(&self, record: &serde_json::Value) {
        std::fs::write(self.run_json(), serde_json::to_vec_pretty(record).unwrap()).unwrap();
    }

    /// What a forger does: rewrites the report with a valid chain and run.json to match it.
    fn forge(&self, rows: &[ReportRow]) {
        std::fs::remove_file(self.report()).unwrap();
        let mut writer = ReportWriter::create(&self.report(), false).unwrap();
        let mut counts = serde_json::json!({"certified": 0, "failed": 0, "error": 0, "skipped": 0});
        for row in rows {
            writer.append(row).unwrap();
            let n = counts[row.status.as_str()].as_u64().unwrap();
            counts[row.status.as_str()] = serde_json::json!(n + 1);
        }
        let mut record = self.record();
        record["report_rows"] = serde_json::json!(writer.rows());
        record["report_chain_head"] = serde_json::json!(writer.chain_head());
        record["counts"] = counts;
        self.write_record(&record);
    }

    fn audit(&self) -> Command {
        let mut command = boomerang();
        command
            .arg("audit")
            .arg(self.report())
            .arg("--inputs")
            .arg(self.dir.join("in"))
            .arg("--outputs")
            .arg(self.dir.join("out"))
            .arg("--policy")
            .arg(self.dir.join("policy.toml"))
            .arg("--model")
            .arg(root().join("models/tiny-sd"))
            .arg("--embedder")
            .arg(root().join("models/dlib-face/embedder.toml"));
        command
    }
}

fn stdout_of(command: &mut Command) -> (i32, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The face detector as shipped, and a copy that differs in its sha256 only (a protobuf field
/// no ONNX reader knows, appended: the graph stays valid).
fn detector() -> PathBuf {
    root().join("models/face-detector/blazeface-full-range.onnx")
}

fn decoy_detector(path: &Path) {
    let mut bytes = std::fs::read(detector()).unwrap();
    bytes.extend_from_slice(&[0xC0, 0x3E, 0x01]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

// Row 1: the detector is pinned by the embedder spec and recorded.

#[test]
fn a_detector_in_the_working_directory_is_not_used_and_the_pinned_one_is_recorded() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    dataset(dir);
    let policy = write_policy(dir, &root().join("models/dlib-face/embedder.toml"));
    // What `./models` lookup used to find first.
    decoy_detector(&dir.join("models/face-detector/blazeface-full-range.onnx"));
    anonymize(dir, &policy, &[])
        .assert()
        .code(predicate::in_iter([0, 3]));

    let pinned = sha(&std::fs::read(detector()).unwrap());
    let header = std::fs::read_to_string(dir.join("out.report.csv")).unwrap();
    let header = header.lines().next().unwrap();
    assert!(header.contains("detector_sha256"), "{header}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.run.json")).unwrap()).unwrap();
    assert_eq!(record["config"]["detector_sha256"], pinned, "{record}");
    let rows = std::fs::read_to_string(dir.join("out.report.csv")).unwrap();
    let processed: Vec<&str> = rows
        .lines()
        .skip(1)
        .filter(|l| l.contains(",certified,") || l.contains(",failed,"))
        .collect();
    assert!(!processed.is_empty());
    for line in processed {
        assert!(line.contains(&pinned), "{line}");
    }
    // The certificates are those of the run without a decoy.
    let strip = |rows: Vec<ReportRow>| -> Vec<(String, String, Option<f32>)> {
        rows.into_iter()
            .map(|r| (r.input_path, r.output_sha256, r.distance))
            .collect()
    };
    assert_eq!(
        strip(verify(&dir.join("out.report.csv")).unwrap()),
        strip(Run::copy().rows())
    );

    // The audit checks rows against a detector given to it.
    let run = Run::copy();
    run.audit().assert().code(0);
    let decoy = dir.join("decoy.onnx");
    decoy_detector(&decoy);
    let (code, out) = stdout_of(run.audit().arg("--detector").arg(&decoy));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("detector_sha256"), "{out}");
}

#[test]
fn a_detector_that_differs_from_its_pin_is_refused_before_anything_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    dataset(dir);
    let decoy = dir.join("models/decoy.onnx");
    decoy_detector(&decoy);
    let pinned = sha(&std::fs::read(detector()).unwrap());
    let spec_text = std::fs::read_to_string(root().join("models/dlib-face/embedder.toml"))
        .unwrap()
        .replace(
            "onnx = \"dlib-face-resnet29.onnx\"",
            &format!(
                "onnx = \"{}\"",
                root()
                    .join("models/dlib-face/dlib-face-resnet29.onnx")
                    .display()
            ),
        );
    let spec_text = spec_text
        .lines()
        .filter(|l| !l.starts_with("detector"))
        .collect::<Vec<_>>()
        .join("\n")
        .replacen(
            "input-name",
            &format!(
                "detector = \"{}\"\ndetector-sha256 = \"{pinned}\"\ninput-name",
                decoy.display()
            ),
            1,
        );
    let spec = dir.join("embedder.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let policy = write_policy(dir, &spec);
    let output = anonymize(dir, &policy, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let found = sha(&std::fs::read(&decoy).unwrap());
    assert!(
        stderr.contains(&found) && stderr.contains("detector"),
        "{stderr}"
    );
    assert!(!dir.join("out").exists());
    assert!(!dir.join("out.report.csv").exists());
    assert!(!dir.join("out.run.json").exists());
}

// Row 2: rows are checked against run.json; figures not recomputed are marked unverified.

#[test]
fn an_edited_run_json_is_found() {
    let run = Run::copy();
    run.audit().assert().code(0);
    let original = run.record();

    let mut record = original.clone();
    record["config"]["seed"] = serde_json::json!(10);
    run.write_record(&record);
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("seed"), "{out}");

    let mut record = original.clone();
    record["config"]["level"] = serde_json::json!("high");
    run.write_record(&record);
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("level"), "{out}");

    let mut record = original.clone();
    record["config"]["level_settings"]["threshold"] = serde_json::json!({"value": 0.3});
    run.write_record(&record);
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("threshold"), "{out}");

    let mut record = original.clone();
    record["config"]["level_settings"]["steps"] = serde_json::json!(25);
    run.write_record(&record);
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("steps"), "{out}");

    // The re-identification rate is only shown as run.json's claim unless recomputed.
    let mut record = original.clone();
    record["reidentification_rate"] = serde_json::json!(0.0);
    run.write_record(&record);
    let html = run.dir.join("audit.html");
    let (code, out) = stdout_of(run.audit().arg("--html").arg(&html));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unverified (from run.json)"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("unverified (from run.json)"), "{page}");

    let (code, out) = stdout_of(run.audit().args(["--recompute", "1", "--nonce", "x"]));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("re-identification"), "{out}");
    assert!(!out.contains("unverified (from run.json)"), "{out}");
}

// Row 3: the recompute sample is decided by the auditor's nonce; skipped images are checked.

#[test]
fn a_forged_row_cannot_dodge_a_sample_drawn_by_the_auditors_nonce() {
    let run = Run::copy();
    let mut rows = run.rows();
    // The random model loses every face; the forger claims a face certificate far beyond the
    // threshold for one of them.
    let forged = rows
        .iter()
        .position(|r| r.faces_in == Some(1) && !r.output_path.is_empty())
        .unwrap();
    let threshold = rows[forged].threshold.unwrap();
    rows[forged].status = boomerang::records::report::Status::Certified;
    rows[forged].certificate = Some(boomerang::certify::CertificateKind::Face);
    rows[forged].faces_out = Some(1);
    rows[forged].distance = Some(threshold + 0.3);
    rows[forged].reason = "every pair of faces is not the same identity".into();
    run.forge(&rows);

    // The nonce is printed, and the same nonce draws the same rows.
    let (_, first) = stdout_of(run.audit().args(["--recompute", "1"]));
    let nonce_line = first
        .lines()
        .find(|l| l.contains("nonce"))
        .unwrap_or_else(|| panic!("no nonce printed: {first}"))
        .to_string();
    let nonce = nonce_line
        .split_whitespace()
        .find(|w| w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{nonce_line}"))
        .to_string();
    let (_, again) = stdout_of(run.audit().args(["--recompute", "1", "--nonce", &nonce]));
    let lines = |out: &str| -> String {
        out.lines()
            .filter(|l| l.starts_with("re-scored lines") || l.starts_with("re-ran lines"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(lines(&first), lines(&again), "{first}\n---\n{again}");

    // Some auditor's nonce draws the forged row. One row of k is drawn per nonce and the chain
    // head (which keys the draw) changes with the time column of each run, so eight nonces
    // missed it about one run in ten; forty miss it with a chance below 1e-3 for k <= 6.
    let caught = (0..40).any(|i| {
        let nonce = format!("nonce-{i}");
        let (code, out) = stdout_of(run.audit().args(["--recompute", "1", "--nonce", &nonce]));
        code == 3 && out.contains("[recompute]")
    });
    assert!(caught);
}

#[test]
fn a_failed_row_turned_skipped_with_its_output_deleted_is_found() {
    let run = Run::copy();
    let mut rows = run.rows();
    let victim = rows.iter().position(|r| !r.output_path.is_empty()).unwrap();
    std::fs::remove_file(run.dir.join("out").join(&rows[victim].output_path)).unwrap();
    let row = &mut rows[victim];
    row.status = boomerang::records::report::Status::Skipped;
    row.reason = "no face found in the input (policy: on-no-face = skip)".into();
    row.output_path.clear();
    row.output_sha256.clear();
    row.distance = None;
    row.attempts = None;
    row.seed.clear();
    row.strength = None;
    row.start_timestep = None;
    row.faces_out = None;
    row.faces_in = Some(0);
    run.forge(&rows);
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("skipped"), "{out}");
}

// Row 4: stray folders in OUT; merging runs of different configurations.

#[test]
fn an_empty_stray_folder_in_the_output_is_found() {
    let run = Run::copy();
    std::fs::create_dir_all(run.dir.join("out/stray")).unwrap();
    let (code, out) = stdout_of(&mut run.audit());
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("stray"), "{out}");
}

#[test]
fn merging_parts_of_different_levels_is_refused() {
    let run = Run::copy();
    let rows = run.rows();
    // A second part: the same images under other names, "run" at another level.
    let other_dir = run.dir.join("b");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = other_dir.join("b.report.csv");
    let mut writer = ReportWriter::create(&other, false).unwrap();
    for row in &rows {
        let mut row = row.clone();
        row.input_path = format!("b/{}", row.input_path);
        if !row.output_path.is_empty() {
            row.output_path = format!("b/{}", row.output_path);
        }
        row.level = "high".into();
        writer.append(&row).unwrap();
    }
    let mut record = run.record();
    record["report_rows"] = serde_json::json!(writer.rows());
    record["report_chain_head"] = serde_json::json!(writer.chain_head());
    record["report_path"] = serde_json::json!(other.display().to_string());
    record["config"]["level"] = serde_json::json!("high");
    std::fs::write(
        other_dir.join("b.run.json"),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
    drop(writer);

    let merged = run.dir.join("all.csv");
    let output = boomerang()
        .args(["report", "merge"])
        .arg(run.report())
        .arg(&other)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("level"), "{stderr}");
    assert!(!merged.exists());
}
