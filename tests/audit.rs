//! `boomerang audit` on a synthetic run (a report written by `ReportWriter`, fake input and output
//! files, run.json, the bundled demo policy, tiny model and dlib embedder spec): a clean run passes,
//! and each way of tampering with it is caught and named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;

use common::{root, sha};
use sha2::{Digest, Sha256};

use assert_cmd::Command;
use boomerang::audit::{
    self, html, AuditConfig, AuditError, ClaimedFiles, Finding, FindingKind, Outcome,
    RecomputedRate, Recomputer, Rescored, RunFiles,
};
use boomerang::certify::CertificateKind;
use boomerang::diffusion::model_manifest::ModelManifest;
use boomerang::records::report::{
    RecordedSpec, ReportRow, ReportWriter, RunConfig, RunRecord, Status, StatusCounts,
};

/// The demo policy with its model and embedder paths made absolute, so it can live in a tempdir.
fn policy_text() -> String {
    std::fs::read_to_string(root().join("policies/demo.toml"))
        .unwrap()
        .replace(
            "\"../models/tiny-sd\"",
            &format!("\"{}\"", root().join("models/tiny-sd").display()),
        )
        .replace(
            "\"../models/dlib-face/embedder.toml\"",
            &format!(
                "\"{}\"",
                root().join("models/dlib-face/embedder.toml").display()
            ),
        )
        .replace("\"../models/", &format!("\"{}/models/", root().display()))
}

fn embedder_spec() -> PathBuf {
    root().join("models/dlib-face/embedder.toml")
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    report: PathBuf,
    outputs: PathBuf,
    inputs: PathBuf,
    policy: PathBuf,
    rows: Vec<ReportRow>,
}

impl World {
    /// A run of the demo policy (with `policy` replacing its text when given) over 7 inputs.
    fn new() -> World {
        World::with_policy(&policy_text())
    }

    fn with_policy(policy: &str) -> World {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let policy_path = dir.join("policy.toml");
        std::fs::write(&policy_path, policy).unwrap();
        let hashes = Hashes {
            policy: sha(policy.as_bytes()),
            model: ModelManifest::compute(&root().join("models/tiny-sd"))
                .unwrap()
                .model_hash(),
            // What anonymize records: the spec file's sha256.
            embedder: sha(&std::fs::read(embedder_spec()).unwrap()),
            detector: sha(&std::fs::read(
                root().join("models/face-detector/blazeface-full-range.onnx"),
            )
            .unwrap()),
        };
        let rows = vec![
            certified(
                "people/alice_01.jpg",
                "people/3f9a.png",
                "medium",
                0.5,
                1,
                0.83,
                &hashes,
            ),
            certified(
                "people/bob_01.jpg",
                "people/77c1.png",
                "medium",
                0.6,
                2,
                0.71,
                &hashes,
            ),
            failed(
                "people/carol_01.jpg",
                "people/a0b2.png",
                "medium",
                0.7,
                3,
                0.41,
                &hashes,
            ),
            certified(
                "people/dave_01.jpg",
                "people/e5d4.png",
                "medium",
                0.7,
                3,
                0.95,
                &hashes,
            ),
            other(
                "notes.txt",
                Status::Skipped,
                "not an image extension (.txt)",
                &hashes,
            ),
            other(
                "people/broken.png",
                Status::Error,
                "cannot decode: unexpected end of file",
                &hashes,
            ),
            certified(
                "people/erin_01.jpg",
                "people/erin_01.png",
                "medium",
                0.5,
                1,
                0.66,
                &hashes,
            ),
        ];
        let outputs = dir.join("out");
        let inputs = dir.join("in");
        for row in &rows {
            let input = inputs.join(&row.input_path);
            std::fs::create_dir_all(input.parent().unwrap()).unwrap();
            std::fs::write(&input, input_bytes(&row.input_path)).unwrap();
            if !row.output_path.is_empty() {
                let output = outputs.join(&row.output_path);
                std::fs::create_dir_all(output.parent().unwrap()).unwrap();
                std::fs::write(&output, output_bytes(&row.output_path)).unwrap();
            }
        }
        let world = World {
            _dir: temp,
            report: dir.join("out.report.csv"),
            dir,
            outputs,
            inputs,
            policy: policy_path,
            rows,
        };
        world.write_report(&world.report, &world.rows);
        world
    }

    /// Replaces the world's report (and its run.json) by one of `rows`: what a forger hands over.
    fn replace_report(&self, rows: &[ReportRow]) {
        std::fs::remove_file(&self.report).unwrap();
        self.write_report(&self.report, rows);
    }

    /// Writes `rows` as a report with its run.json beside it (`X.run.json` for `X.report.csv`).
    fn write_report(&self, path: &Path, rows: &[ReportRow]) {
        let mut writer = ReportWriter::create(path, false).unwrap();
        for row in rows {
            writer.append(row).unwrap();
        }
        let record = RunRecord {
            tool_version: "0.1.0".into(),
            config: RunConfig {
                batch: 1,
                detector: root().join("models/face-detector/blazeface-full-range.onnx"),
                detector_sha256: rows[0].detector_sha256.clone(),
                device: "cpu".into(),
                embedder: self.dir.join("embedder.toml"),
                embedder_sha256: rows[0].embedder_sha256.clone(),
                // The demo policy's whole-image embedder and second opinion, as anonymize records
                // them.
                feature_embedder: Some(recorded_spec("models/efficientnet-lite0/embedder.toml")),
                input: self.inputs.clone(),
                level: "medium".into(),
                // What anonymize records: the policy's level as it serializes.
                level_settings: serde_json::to_value(
                    boomerang::policy::Policy::load(&self.policy)
                        .unwrap()
                        .level("medium")
                        .unwrap(),
                )
                .unwrap(),
                model: self.dir.join("model"),
                model_sha256: rows[0].model_sha256.clone(),
                output: self.outputs.clone(),
                policy: self.policy.clone(),
                policy_sha256: rows[0].policy_sha256.clone(),
                report: path.to_path_buf(),
                second_opinions: vec![recorded_spec("models/mobilefacenet/embedder.toml")],
                seed: Some(7),
                seed_fingerprint: None,
                shard: None,
                threads: 0,
            },
            onnxruntime_version: "1.31.1".into(),
            onnxruntime_library: "/opt/ort/libonnxruntime.so".into(),
            execution_provider: "cpu".into(),
            counts: StatusCounts::of(rows),
            started: "2024-05-01T10:00:00Z".into(),
            finished: "2024-05-01T10:02:05Z".into(),
            report_path: path.display().to_string(),
            report_rows: writer.rows(),
            report_chain_head: writer.chain_head().to_string(),
            reidentification_rate: None,
            reidentification_chance: None,
            adversary: None,
            merged_parts: None,
        };
        let mut json = serde_json::to_value(&record).unwrap();
        json["reidentification_rate"] = serde_json::json!(0.25);
        let name = path.file_name().unwrap().to_string_lossy();
        let stem = name.strip_suffix(".report.csv").unwrap();
        std::fs::write(
            path.with_file_name(format!("{stem}.run.json")),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }

    fn args(&self) -> AuditConfig {
        AuditConfig {
            run: RunFiles {
                report: self.report.clone(),
                outputs: Some(self.outputs.clone()),
                inputs: Some(self.inputs.clone()),
                ..RunFiles::default()
            },
            claimed: ClaimedFiles {
                policy: Some(self.policy.clone()),
                model: Some(root().join("models/tiny-sd")),
                embedder: Some(embedder_spec()),
                ..ClaimedFiles::default()
            },
            ..AuditConfig::default()
        }
    }

    fn audit(&self) -> audit::Audit {
        audit::audit(&self.args(), None).unwrap()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.report)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(&self, lines: &[String]) {
        std::fs::write(&self.report, format!("{}\n", lines.join("\n"))).unwrap();
    }
}

/// A spec of the checkout with the sha256 of its file.
fn recorded_spec(relative: &str) -> RecordedSpec {
    let spec = root().join(relative);
    RecordedSpec {
        sha256: sha(&std::fs::read(&spec).unwrap()),
        spec,
    }
}

struct Hashes {
    policy: String,
    model: String,
    embedder: String,
    detector: String,
}

fn input_bytes(path: &str) -> Vec<u8> {
    format!("input image {path}").into_bytes()
}

fn output_bytes(path: &str) -> Vec<u8> {
    format!("anonymized image {path}").into_bytes()
}

fn base(input: &str, hashes: &Hashes) -> ReportRow {
    ReportRow {
        input_path: input.into(),
        input_sha256: sha(&input_bytes(input)),
        output_path: String::new(),
        output_sha256: String::new(),
        status: Status::Skipped,
        certificate: None,
        reason: String::new(),
        level: String::new(),
        strength: None,
        start_timestep: None,
        steps: None,
        scheduler: String::new(),
        seed: String::new(),
        attempts: None,
        distance: None,
        threshold: None,
        metric: String::new(),
        faces_in: None,
        faces_out: None,
        second_opinions: String::new(),
        model_sha256: hashes.model.clone(),
        embedder_sha256: hashes.embedder.clone(),
        detector_sha256: hashes.detector.clone(),
        policy_sha256: hashes.policy.clone(),
        width: None,
        height: None,
        milliseconds: None,
        tool_version: "0.1.0".into(),
        chain: String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn processed(
    input: &str,
    output: &str,
    status: Status,
    level: &str,
    strength: f64,
    attempts: u32,
    distance: f32,
    hashes: &Hashes,
) -> ReportRow {
    ReportRow {
        output_path: output.into(),
        output_sha256: sha(&output_bytes(output)),
        status,
        certificate: Some(CertificateKind::Face),
        level: level.into(),
        strength: Some(strength),
        start_timestep: Some(strength * 1000.0),
        steps: Some(10),
        scheduler: "ddim".into(),
        // Derived as anonymize derives it, from the run seed (7) and the input's sha256.
        seed: hex::encode(boomerang::diffusion::noise::image_seed(
            7,
            &Sha256::digest(input_bytes(input)).into(),
            attempts - 1,
        )),
        attempts: Some(attempts),
        distance: Some(distance),
        threshold: Some(0.6),
        metric: "euclidean".into(),
        faces_in: Some(1),
        faces_out: Some(1),
        // The demo policy's second opinion at its operating point (max-distance 1.0).
        second_opinions: "mobilefacenet:1.2:1".into(),
        width: Some(250),
        height: Some(250),
        milliseconds: Some(1200 + u64::from(attempts) * 900),
        ..base(input, hashes)
    }
}

fn certified(
    input: &str,
    output: &str,
    level: &str,
    strength: f64,
    attempts: u32,
    distance: f32,
    hashes: &Hashes,
) -> ReportRow {
    processed(
        input,
        output,
        Status::Certified,
        level,
        strength,
        attempts,
        distance,
        hashes,
    )
}

fn failed(
    input: &str,
    output: &str,
    level: &str,
    strength: f64,
    attempts: u32,
    distance: f32,
    hashes: &Hashes,
) -> ReportRow {
    ReportRow {
        reason: "still the same person after 3 attempts".into(),
        ..processed(
            input,
            output,
            Status::Failed,
            level,
            strength,
            attempts,
            distance,
            hashes,
        )
    }
}

fn other(input: &str, status: Status, reason: &str, hashes: &Hashes) -> ReportRow {
    ReportRow {
        status,
        reason: reason.into(),
        ..base(input, hashes)
    }
}

/// The findings of `kind`, as `(line, message)`.
fn of_kind(findings: &[Finding], kind: FindingKind) -> Vec<(Option<u64>, String)> {
    findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| (f.line, f.message.clone()))
        .collect()
}

fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

#[test]
fn a_clean_run_has_no_findings_and_every_check_is_made() {
    let world = World::new();
    let audit = world.audit();
    assert_eq!(audit.findings, Vec::<Finding>::new());
    assert_eq!(audit.outcome(), Outcome::Clean);
    assert_eq!(audit.entries.len(), 7);
    assert!(audit.run.is_some(), "run.json beside the report is found");
    // Only recomputation, which needs the engine, is left (re-scores, re-runs and the
    // re-identification rate, shown as run.json's claim).
    assert_eq!(audit.not_checked.len(), 3, "{:?}", audit.not_checked);
    assert!(audit
        .not_checked
        .iter()
        .all(|n| n.contains("--recompute") || n.contains("--seed-sample")));
}

#[test]
fn an_edited_distance_is_found_at_its_line() {
    let world = World::new();
    let mut lines = world.lines();
    // Line 3: bob, certified at 0.71.
    assert!(lines[2].contains(",0.71,"));
    lines[2] = lines[2].replace(",0.71,", ",0.91,");
    world.write_lines(&lines);
    let audit = world.audit();
    assert_eq!(audit.outcome(), Outcome::Findings);
    let chain = of_kind(&audit.findings, FindingKind::Chain);
    assert_eq!(chain.len(), 1, "{chain:?}");
    assert_eq!(chain[0].0, Some(3));
    assert!(chain[0].1.contains("this row was edited"), "{}", chain[0].1);
}

#[test]
fn a_flipped_verdict_breaks_the_chain_and_contradicts_the_distance() {
    let world = World::new();
    let mut lines = world.lines();
    // Line 4: carol, failed at 0.41 < 0.6.
    assert!(lines[3].contains(",failed,"));
    lines[3] = lines[3].replace(",failed,", ",certified,");
    world.write_lines(&lines);
    let audit = world.audit();
    let chain = of_kind(&audit.findings, FindingKind::Chain);
    assert_eq!(chain.iter().map(|c| c.0).collect::<Vec<_>>(), [Some(4)]);
    let verdict = of_kind(&audit.findings, FindingKind::Verdict);
    assert_eq!(verdict.len(), 1, "{verdict:?}");
    assert_eq!(verdict[0].0, Some(4));
    assert!(
        verdict[0]
            .1
            .contains("certified, but distance 0.41 is below the threshold 0.6"),
        "{}",
        verdict[0].1
    );
    // The counts no longer match run.json either.
    assert!(of_kind(&audit.findings, FindingKind::RunRecord)
        .iter()
        .any(|(_, m)| m.contains("status counts differ")));
}

#[test]
fn a_deleted_row_is_found_with_its_orphaned_output() {
    let world = World::new();
    let mut lines = world.lines();
    let removed = lines.remove(2); // bob
    assert!(removed.contains("people/bob_01.jpg"));
    world.write_lines(&lines);
    let audit = world.audit();
    let chain = of_kind(&audit.findings, FindingKind::Chain);
    assert_eq!(chain.len(), 1, "{chain:?}");
    assert_eq!(chain[0].0, Some(3));
    assert!(
        chain[0].1.contains("between line 2 and this row") && chain[0].1.contains("deleted"),
        "{}",
        chain[0].1
    );
    assert!(of_kind(&audit.findings, FindingKind::RunRecord)
        .iter()
        .any(|(_, m)| m.contains("the report has 6 rows") && m.contains("says the run wrote 7")));
    let unlisted: Vec<_> = audit
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::OutputUnlisted)
        .map(|f| f.output.clone())
        .collect();
    assert_eq!(unlisted, [Some("people/77c1.png".to_string())]);
    let unlisted_inputs: Vec<_> = audit
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::InputUnlisted)
        .map(|f| f.input.clone())
        .collect();
    assert_eq!(unlisted_inputs, [Some("people/bob_01.jpg".to_string())]);
}

#[test]
fn swapped_rows_are_both_named_with_where_they_came_from() {
    let world = World::new();
    let mut lines = world.lines();
    lines.swap(2, 3);
    world.write_lines(&lines);
    let audit = world.audit();
    // Rows 3 and 4 traded places, so each of them, and the row after them, no longer follows
    // the row above it; each finding says where the row really belongs.
    let chain = of_kind(&audit.findings, FindingKind::Chain);
    let expected = [
        (
            Some(3),
            "originally came right after line 4, not after line 2",
        ),
        (
            Some(4),
            "originally came right after line 2, not after line 3",
        ),
        (
            Some(5),
            "originally came right after line 3, not after line 4",
        ),
    ];
    assert_eq!(chain.len(), expected.len(), "{chain:?}");
    for ((line, message), (expected_line, expected_text)) in chain.iter().zip(expected) {
        assert_eq!(*line, expected_line);
        assert!(message.contains(expected_text), "{message}");
    }
    // Nothing else is wrong: same rows, same files, same last row.
    assert_eq!(kinds(&audit.findings), [FindingKind::Chain; 3]);
}

/// A second row for an input (say, a certified one appended after a failed one), re-chained and
/// counted in run.json, is found even without --inputs.
#[test]
fn a_second_row_for_the_same_input_is_found() {
    let world = World::new();
    let mut rows = world.rows.clone();
    let mut again = rows[2].clone(); // carol, failed on line 4
    again.status = Status::Certified;
    again.distance = Some(0.9);
    again.output_path = "people/c4r0.png".into();
    again.output_sha256 = sha(&output_bytes(&again.output_path));
    std::fs::write(
        world.outputs.join(&again.output_path),
        output_bytes(&again.output_path),
    )
    .unwrap();
    rows.push(again);
    world.replace_report(&rows);
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.run.inputs = None;
            args
        },
        None,
    )
    .unwrap();
    assert_eq!(
        of_kind(&audit.findings, FindingKind::InputPath),
        [(
            Some(9),
            "the same input has a row on line 4: a run writes one row per input, so one of them was added".to_string()
        )]
    );
    assert_eq!(
        audit.findings[0].input.as_deref(),
        Some("people/carol_01.jpg")
    );
}

#[test]
fn a_replaced_output_file_is_found() {
    let world = World::new();
    std::fs::write(world.outputs.join("people/3f9a.png"), b"the original face").unwrap();
    let audit = world.audit();
    assert_eq!(kinds(&audit.findings), [FindingKind::OutputHash]);
    let finding = &audit.findings[0];
    assert_eq!(finding.line, Some(2));
    assert_eq!(finding.output.as_deref(), Some("people/3f9a.png"));
    assert!(finding.message.contains(&sha(b"the original face")));
}

#[test]
fn a_missing_output_is_found() {
    let world = World::new();
    std::fs::remove_file(world.outputs.join("people/e5d4.png")).unwrap();
    let audit = world.audit();
    assert_eq!(kinds(&audit.findings), [FindingKind::OutputMissing]);
    assert_eq!(audit.findings[0].line, Some(5));
}

#[test]
fn stray_images_and_temp_files_in_the_output_folder_are_found() {
    let world = World::new();
    std::fs::write(world.outputs.join("people/extra.png"), b"x").unwrap();
    std::fs::write(world.outputs.join(".boomerang-a1B2c3.tmp"), b"x").unwrap();
    std::fs::write(world.outputs.join("people/readme.txt"), b"x").unwrap();
    let audit = world.audit();
    let unlisted: Vec<(Option<String>, String)> = audit
        .findings
        .iter()
        .map(|f| {
            assert_eq!(f.kind, FindingKind::OutputUnlisted);
            (f.output.clone(), f.message.clone())
        })
        .collect();
    assert_eq!(
        unlisted,
        [
            (
                Some(".boomerang-a1B2c3.tmp".to_string()),
                "a temporary file of an interrupted write, listed by no row".to_string()
            ),
            (
                Some("people/extra.png".to_string()),
                "an image that no row lists".to_string()
            ),
            (
                Some("people/readme.txt".to_string()),
                "a file that no row lists".to_string()
            ),
        ]
    );
}

#[test]
fn rows_cut_from_the_end_are_found_through_run_json() {
    let world = World::new();
    let mut lines = world.lines();
    lines.pop();
    world.write_lines(&lines);
    let audit = world.audit();
    // The chain of what is left is intact: only run.json can tell.
    assert!(of_kind(&audit.findings, FindingKind::Chain).is_empty());
    let record = of_kind(&audit.findings, FindingKind::RunRecord);
    assert!(
        record
            .iter()
            .any(|(_, m)| m.contains("the report has 6 rows")),
        "{record:?}"
    );
    assert!(
        record.iter().any(|(_, m)| m.contains("last chain value")),
        "{record:?}"
    );
}

#[test]
fn a_torn_last_row_is_found() {
    let world = World::new();
    let text = std::fs::read_to_string(&world.report).unwrap();
    std::fs::write(&world.report, &text[..text.len() - 10]).unwrap();
    let audit = world.audit();
    let torn = of_kind(&audit.findings, FindingKind::Torn);
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].0, Some(8));
}

#[test]
fn a_forged_row_inserted_with_a_valid_chain_is_found_after_it() {
    let world = World::new();
    let original = world.lines();
    // A forger who knows the chain formula inserts a row properly chained after line 2; the rows
    // after it keep their original chain values, so the old line 3, now line 4, no longer follows.
    let mut rows = world.rows.clone();
    let mut forged = rows[0].clone();
    forged.input_path = "people/zed_01.jpg".into();
    rows.insert(1, forged);
    std::fs::remove_file(&world.report).unwrap();
    let mut writer = ReportWriter::create(&world.report, false).unwrap();
    for row in &rows {
        writer.append(row).unwrap();
    }
    drop(writer);
    let mut lines = world.lines();
    for (index, line) in lines.iter_mut().enumerate().skip(3) {
        *line = original[index - 1].clone();
    }
    world.write_lines(&lines);
    let audit = world.audit();
    let chain = of_kind(&audit.findings, FindingKind::Chain);
    assert_eq!(chain.len(), 1, "{chain:?}");
    assert_eq!(chain[0].0, Some(4));
    assert!(
        chain[0]
            .1
            .contains("originally came right after line 2, not after line 3"),
        "{}",
        chain[0].1
    );
}

#[test]
fn a_different_policy_model_or_embedder_is_found() {
    let world = World::new();
    let other_policy = world.dir.join("other.toml");
    std::fs::write(
        &other_policy,
        policy_text().replace("max-attempts = 3", "max-attempts = 4"),
    )
    .unwrap();
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.claimed.policy = Some(other_policy);
            args.claimed.model = Some(root().join("models/tiny-sd-vpred"));
            args
        },
        None,
    )
    .unwrap();
    let hash = of_kind(&audit.findings, FindingKind::Hash);
    assert!(
        hash.iter()
            .any(|(_, m)| m.contains("7 row(s) have policy_sha256")),
        "{hash:?}"
    );
    assert!(
        hash.iter()
            .any(|(_, m)| m.contains("7 row(s) have model_sha256") && m.contains("--model")),
        "{hash:?}"
    );
    // The rows' model is the one the policy pins: no pin finding.
    assert!(
        !hash.iter().any(|(_, m)| m.contains("the policy pins")),
        "{hash:?}"
    );
}

/// A row that dropped, renamed or re-thresholded the policy's second opinion, and a run.json
/// whose whole-image embedder and second opinion are other specs than the policy's.
#[test]
fn second_opinions_and_their_specs_must_be_the_policys() {
    let world = World::new();
    let mut rows = world.rows.clone();
    rows[0].second_opinions.clear(); // line 2: certified without asking mobilefacenet
    rows[1].second_opinions = "lenient:1.2:1".into(); // line 3: another matcher
    rows[2].second_opinions = "mobilefacenet:0.3:0.2".into(); // line 4: failed, lower threshold
    world.replace_report(&rows);
    let run_json = world.dir.join("out.run.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
    record["config"]["second_opinions"][0]["sha256"] = serde_json::json!("1".repeat(64));
    record["config"]["feature_embedder"]["sha256"] = serde_json::json!("2".repeat(64));
    std::fs::write(&run_json, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    let audit = world.audit();
    assert_eq!(
        of_kind(&audit.findings, FindingKind::Rule),
        [
            (
                Some(2),
                "certified row with second opinions: none, but the policy's second opinions on a face comparison are: mobilefacenet".to_string()
            ),
            (
                Some(3),
                "certified row with second opinions: lenient, but the policy's second opinions on a face comparison are: mobilefacenet".to_string()
            ),
            (
                Some(4),
                "second opinion mobilefacenet judged at threshold `0.2`, but the operating point the policy names certifies at 1".to_string()
            ),
        ]
    );
    let hash = of_kind(&audit.findings, FindingKind::Hash);
    assert_eq!(hash.len(), 2, "{hash:?}");
    assert!(
        hash.iter().any(|(_, m)| m.contains(&format!(
            "records feature_embedder sha256 {}, but the policy's feature embedder spec",
            "2".repeat(64)
        ))),
        "{hash:?}"
    );
    assert!(
        hash.iter().any(|(_, m)| m.contains(&format!(
            "records second opinion 1 with spec sha256 {}, but the policy's spec",
            "1".repeat(64)
        ))),
        "{hash:?}"
    );
}

/// The whole-image embedder's spec is checked like the face embedder's: a spec that pins another
/// graph than its file is a finding, not dropped.
#[test]
fn a_feature_embedder_spec_that_misses_its_pin_is_found() {
    let temp = tempfile::tempdir().unwrap();
    let original = root().join("models/efficientnet-lite0/embedder.toml");
    let graph = root().join("models/efficientnet-lite0/efficientnet-lite0.onnx");
    let text = std::fs::read_to_string(&original).unwrap();
    let pin = text
        .lines()
        .find(|line| line.starts_with("sha256 = "))
        .unwrap()
        .to_string();
    let spec = temp.path().join("feature.toml");
    std::fs::write(
        &spec,
        text.replace(&pin, &format!("sha256 = \"{}\"", "3".repeat(64)))
            .replace(
                "onnx = \"efficientnet-lite0.onnx\"",
                &format!("onnx = \"{}\"", graph.display()),
            ),
    )
    .unwrap();
    let policy = policy_text().replace(
        &format!("\"{}\"", original.display()),
        &format!("\"{}\"", spec.display()),
    );
    let world = World::with_policy(&policy);
    let audit = world.audit();
    let hash = of_kind(&audit.findings, FindingKind::Hash);
    assert!(
        hash.iter().any(|(_, m)| m.contains(&format!(
            "the embedder spec pins graph sha256 {}, but {} hashes to",
            "3".repeat(64),
            graph.display()
        ))),
        "{hash:?}"
    );
}

#[test]
fn a_kept_output_under_on_failure_drop_breaks_the_rule() {
    let text = policy_text();
    let medium = text.find("[levels.medium]").unwrap();
    let policy = format!(
        "{}{}",
        &text[..medium],
        text[medium..].replacen("on-failure = \"flag\"", "on-failure = \"drop\"", 1)
    );
    let world = World::with_policy(&policy);
    let audit = world.audit();
    let rule = of_kind(&audit.findings, FindingKind::Rule);
    assert_eq!(rule.len(), 1, "{rule:?}");
    assert_eq!(rule[0].0, Some(4));
    assert!(
        rule[0]
            .1
            .contains("on-failure = \"drop\", yet an output was kept"),
        "{}",
        rule[0].1
    );
}

/// A face row whose own distance is beyond the threshold fails when a second opinion finds the
/// same identity: that is the policy working, not a contradiction.
#[test]
fn a_row_failed_by_its_second_opinion_is_no_finding() {
    let world = World::new();
    let mut rows = world.rows.clone();
    // Line 4, carol: dlib finds 0.83 (beyond 0.6), mobilefacenet 0.7 (below its 1.0).
    rows[2].distance = Some(0.83);
    rows[2].second_opinions = "mobilefacenet:0.7:1".into();
    // Line 9: the same without a dissent is still a row that would have been certified.
    let mut undissented = rows[2].clone();
    undissented.input_path = "people/frank_01.jpg".into();
    undissented.input_sha256 = sha(&input_bytes(&undissented.input_path));
    undissented.seed = hex::encode(boomerang::diffusion::noise::image_seed(
        7,
        &Sha256::digest(input_bytes(&undissented.input_path)).into(),
        2,
    ));
    undissented.output_path = "people/f4a1.png".into();
    undissented.output_sha256 = sha(&output_bytes(&undissented.output_path));
    undissented.second_opinions = "mobilefacenet:1.2:1".into();
    std::fs::write(
        world.inputs.join(&undissented.input_path),
        input_bytes(&undissented.input_path),
    )
    .unwrap();
    std::fs::write(
        world.outputs.join(&undissented.output_path),
        output_bytes(&undissented.output_path),
    )
    .unwrap();
    rows.push(undissented);
    world.replace_report(&rows);
    let audit = world.audit();
    assert_eq!(
        of_kind(&audit.findings, FindingKind::Verdict),
        [(
            Some(9),
            "failed, but distance 0.83 is beyond the threshold 0.6 (euclidean): the row would be certified".to_string()
        )]
    );
    assert_eq!(kinds(&audit.findings), [FindingKind::Verdict]);
}

/// A faceless input certified on the whole image is judged by the policy's feature embedder: an
/// audit without the policy cannot say by which, so it holds it to neither embedder's rules.
#[test]
fn a_whole_image_row_is_no_finding_without_the_policy() {
    let world = World::new();
    let mut rows = world.rows.clone();
    // Line 5, dave: no face in, judged by efficientnet-lite0 (cosine, 0.55), no face matcher.
    rows[3].certificate = Some(CertificateKind::WholeImage);
    rows[3].faces_in = Some(0);
    rows[3].faces_out = Some(0);
    rows[3].metric = "cosine".into();
    rows[3].threshold = Some(0.55);
    rows[3].distance = Some(0.8);
    rows[3].second_opinions.clear();
    world.replace_report(&rows);
    assert_eq!(world.audit().findings, Vec::<Finding>::new());
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.claimed.policy = None;
            args
        },
        None,
    )
    .unwrap();
    assert_eq!(audit.findings, Vec::<Finding>::new());
    let joined = audit.not_checked.join("\n");
    assert!(
        joined.contains("the metric of whole-image rows (give --policy FILE")
            && joined.contains("the thresholds of whole-image rows ("),
        "{joined}"
    );
}

/// With on-no-face = "flag", anonymize keeps a faceless input's output (failed, marked) even
/// when on-failure = "drop": that is no broken rule, and dropping it would be one.
#[test]
fn a_flagged_faceless_row_keeps_its_output_under_on_failure_drop() {
    let text = policy_text();
    let medium = text.find("[levels.medium]").unwrap();
    let policy = format!(
        "{}{}",
        &text[..medium],
        text[medium..]
            .replacen("on-failure = \"flag\"", "on-failure = \"drop\"", 1)
            .replacen("on-no-face = \"whole-image\"", "on-no-face = \"flag\"", 1)
    );
    let world = World::with_policy(&policy);
    let mut rows = world.rows.clone();
    // Line 4, carol: a faceless input, flagged with its output kept, as anonymize writes it.
    let faceless = |row: &mut ReportRow| {
        row.certificate = Some(CertificateKind::WholeImage);
        row.faces_in = Some(0);
        row.faces_out = Some(0);
        // Compared by the policy's feature embedder all the same.
        row.metric = "cosine".into();
        row.threshold = Some(0.55);
        row.attempts = Some(1);
        row.strength = Some(0.5);
        row.seed = hex::encode(boomerang::diffusion::noise::image_seed(
            7,
            &Sha256::digest(input_bytes(&row.input_path)).into(),
            0,
        ));
        row.second_opinions.clear();
        row.reason =
            "no face found in the input (policy: on-no-face = flag); output kept, not certified"
                .into();
    };
    faceless(&mut rows[2]);
    // Line 2, alice: the same with its output dropped breaks on-no-face = "flag".
    faceless(&mut rows[0]);
    rows[0].status = Status::Failed;
    rows[0].output_path.clear();
    rows[0].output_sha256.clear();
    std::fs::remove_file(world.outputs.join("people/3f9a.png")).unwrap();
    world.replace_report(&rows);
    let audit = world.audit();
    assert_eq!(
        of_kind(&audit.findings, FindingKind::Rule),
        [(
            Some(2),
            "failed without a face and level `medium` says on-no-face = \"flag\" (keep the output, marked), yet no output is listed".to_string()
        )]
    );
}

#[test]
fn rows_that_do_not_follow_the_policy_are_found() {
    let world = World::new();
    let mut rows = world.rows.clone();
    rows[1].strength = Some(0.5); // attempt 2 of medium escalates to 0.6
    rows[3].threshold = Some(0.5); // the spec's same-person point is 0.6
    rows[6].attempts = Some(4); // max-attempts = 3
    world.replace_report(&rows);
    let audit = world.audit();
    let rule = of_kind(&audit.findings, FindingKind::Rule);
    let lines: Vec<_> = rule.iter().map(|r| r.0).collect();
    assert_eq!(lines, [Some(3), Some(5), Some(8)], "{rule:?}");
    assert!(rule[0].1.contains("escalates to 0.6"), "{}", rule[0].1);
    assert!(rule[1].1.contains("certifies at 0.6"), "{}", rule[1].1);
    assert!(rule[2].1.contains("4 attempts"), "{}", rule[2].1);
}

#[test]
fn certificate_kinds_are_checked_against_the_faces_and_the_policy() {
    // The demo policy accepts lost faces; this one, like the default policy, does not.
    let strict = policy_text().replace("on-face-lost = \"accept\"", "on-face-lost = \"fail\"");
    let world = World::with_policy(&strict);
    let mut rows = world.rows.clone();
    // Line 2: a lost face sold as a certificate.
    rows[0].certificate = Some(CertificateKind::FaceLost);
    rows[0].faces_out = Some(0);
    rows[0].distance = None;
    // Line 3: a certified row that does not say what it rests on.
    rows[1].certificate = None;
    // Line 5: a whole-image certificate for an input with a face (no face matcher asked, as
    // for a whole-image comparison).
    rows[3].certificate = Some(CertificateKind::WholeImage);
    rows[3].second_opinions.clear();
    world.replace_report(&rows);
    let audit = world.audit();
    let rule = of_kind(&audit.findings, FindingKind::Rule);
    assert_eq!(rule.len(), 3, "{rule:?}");
    assert_eq!(rule[0].0, Some(2));
    assert!(
        rule[0].1.contains("certified with a face-lost certificate, which level `medium` does not accept (it accepts: face, whole-image)"),
        "{}",
        rule[0].1
    );
    // A whole-image row is judged by the policy's feature embedder: its metric and threshold.
    assert_eq!(
        rule[1..],
        [
            (
                Some(5),
                "metric `euclidean`, but the embedder spec compares by cosine".to_string()
            ),
            (
                Some(5),
                "threshold 0.6, but level `medium` of the policy certifies at 0.55".to_string()
            )
        ]
    );
    let verdict = of_kind(&audit.findings, FindingKind::Verdict);
    assert_eq!(
        verdict,
        [
            (
                Some(3),
                "certified without a certificate kind (face, face-lost or whole-image)".to_string()
            ),
            (
                Some(5),
                "certificate kind whole-image, but the row records 1 input and 1 output faces"
                    .to_string()
            )
        ]
    );
    // Under the demo policy the lost face is an accepted (if weak) certificate, and the
    // summary counts it apart.
    let world = World::new();
    let mut rows = world.rows.clone();
    rows[0].certificate = Some(CertificateKind::FaceLost);
    rows[0].faces_out = Some(0);
    rows[0].distance = None;
    world.replace_report(&rows);
    let audit = world.audit();
    assert!(of_kind(&audit.findings, FindingKind::Rule).is_empty());
    assert!(of_kind(&audit.findings, FindingKind::Verdict).is_empty());
}

#[test]
fn rows_without_reasons_or_with_impossible_outputs_are_found() {
    let world = World::new();
    let mut rows = world.rows.clone();
    rows[4].reason.clear();
    rows[5].output_path = "people/broken.png".into();
    world.replace_report(&rows);
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.run.outputs = None;
            args
        },
        None,
    )
    .unwrap();
    let verdict = of_kind(&audit.findings, FindingKind::Verdict);
    assert_eq!(
        verdict,
        [
            (Some(6), "skipped without a reason".to_string()),
            (
                Some(7),
                "error, yet the row lists an output file".to_string()
            )
        ]
    );
}

/// A run fills hash, seed, strength, steps, attempts and face counts on every certified and
/// failed row: an emptied cell (which would make the checks reading it skip the row) is a finding.
#[test]
fn certified_and_failed_rows_with_empty_cells_are_found() {
    let world = World::new();
    let mut rows = world.rows.clone();
    // Line 2, certified: no seed to derive, no strength or steps to hold to the policy.
    rows[0].seed.clear();
    rows[0].strength = None;
    rows[0].steps = None;
    // Line 4, failed: no input hash, attempt count or face counts.
    rows[2].input_sha256.clear();
    rows[2].attempts = None;
    rows[2].faces_in = None;
    rows[2].faces_out = None;
    // Line 3, certified: no second opinion, which run.json says the run asked.
    rows[1].second_opinions.clear();
    world.replace_report(&rows);
    // Without the policy: run.json alone says how many second opinions a row lists.
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.claimed.policy = None;
            args
        },
        None,
    )
    .unwrap();
    assert_eq!(
        of_kind(&audit.findings, FindingKind::Verdict),
        [
            (
                Some(2),
                "certified row with an empty strength, steps, seed: a run fills these on every certified and failed row, and the checks that need them cannot be made".to_string()
            ),
            (
                Some(4),
                "failed row with an empty input_sha256, attempts, faces_in, faces_out: a run fills these on every certified and failed row, and the checks that need them cannot be made".to_string()
            ),
        ]
    );
    let record = of_kind(&audit.findings, FindingKind::RunRecord);
    assert!(
        record.iter().any(|(line, m)| *line == Some(3)
            && m.starts_with("0 second opinions on a face comparison, but ")
            && m.ends_with("records a run that asks 1")),
        "{record:?}"
    );
}

#[test]
fn a_changed_input_is_found() {
    let world = World::new();
    std::fs::write(world.inputs.join("people/dave_01.jpg"), b"someone else").unwrap();
    let audit = world.audit();
    assert_eq!(kinds(&audit.findings), [FindingKind::InputHash]);
    assert_eq!(audit.findings[0].line, Some(5));
    // The input path is kept out of the message (it travels in the HTML page).
    assert!(!audit.findings[0].message.contains("dave"));
}

#[test]
fn without_the_files_the_checks_are_listed_as_not_checked() {
    let world = World::new();
    let audit = audit::audit(
        &AuditConfig {
            run: RunFiles {
                report: world.report.clone(),
                ..RunFiles::default()
            },
            ..AuditConfig::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(audit.outcome(), Outcome::Clean);
    let joined = audit.not_checked.join("\n");
    for flag in [
        "--outputs",
        "--inputs",
        "--policy",
        "--model",
        "--embedder",
        "--recompute",
        "--seed-sample",
    ] {
        assert!(joined.contains(flag), "{flag} missing from {joined}");
    }
}

#[test]
fn a_file_that_is_not_a_report_cannot_be_audited() {
    let world = World::new();
    std::fs::write(&world.report, "name,size\nx.png,3\n").unwrap();
    let error = audit::audit(&world.args(), None).unwrap_err();
    assert!(matches!(error, AuditError::Header { .. }), "{error}");
    assert!(error.to_string().contains("not a boomerang report"));
}

/// A recomputer that answers from tables and records what it was asked.
#[derive(Default)]
struct Mock {
    distances: HashMap<String, f32>,
    /// Input path -> the second opinion that, re-asked, finds the same identity.
    dissenting: HashMap<String, String>,
    outputs: HashMap<String, Vec<u8>>,
    rescored: Vec<String>,
    rerun: Vec<String>,
}

impl Mock {
    fn faithful(world: &World) -> Mock {
        let mut mock = Mock::default();
        for row in &world.rows {
            if let Some(d) = row.distance {
                mock.distances.insert(row.input_path.clone(), d);
            }
            if !row.output_path.is_empty() {
                mock.outputs
                    .insert(row.input_path.clone(), output_bytes(&row.output_path));
            }
        }
        mock
    }
}

impl Recomputer for Mock {
    fn rescore(&mut self, row: &ReportRow) -> anyhow::Result<Rescored> {
        self.rescored.push(row.input_path.clone());
        let distance = self
            .distances
            .get(&row.input_path)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("no face found in the output"))?;
        Ok(Rescored {
            certificate: CertificateKind::Face,
            distance: Some(distance),
            dissenting: self
                .dissenting
                .get(&row.input_path)
                .cloned()
                .into_iter()
                .collect(),
        })
    }

    fn reidentify(&mut self, _rows: &[&ReportRow]) -> anyhow::Result<RecomputedRate> {
        // run.json of the world states 0.25.
        Ok(RecomputedRate::Rate {
            rate: 0.25,
            chance: 1.0 / 6.0,
        })
    }

    fn rerun(&mut self, row: &ReportRow) -> anyhow::Result<Vec<u8>> {
        self.rerun.push(row.input_path.clone());
        Ok(self
            .outputs
            .get(&row.input_path)
            .cloned()
            .unwrap_or_default())
    }
}

#[test]
fn recomputation_of_a_faithful_run_is_clean_and_drawn_by_the_nonce() {
    let world = World::new();
    let mut mock = Mock::faithful(&world);
    let args = {
        let mut args = world.args();
        args.recheck.recompute = 3;
        args.recheck.seed_sample = 2;
        args.recheck.nonce = Some("auditor's nonce".into());
        args
    };
    let audit = audit::audit(&args, Some(&mut mock)).unwrap();
    assert_eq!(audit.findings, Vec::<Finding>::new());
    assert!(audit.not_checked.is_empty(), "{:?}", audit.not_checked);
    // Rows with a distance and an output: lines 2, 3, 4, 5, 8; with an output: the same.
    let eligible = [2, 3, 4, 5, 8];
    let key = audit::SampleKey {
        nonce: "auditor's nonce",
        chain_head: &audit.chain_head,
    };
    assert_eq!(audit.nonce, "auditor's nonce");
    assert_eq!(
        audit.rescored,
        audit::sample(&key, audit::RESCORE_STREAM, &eligible, 3)
    );
    assert_eq!(
        audit.rerun,
        audit::sample(&key, audit::RERUN_STREAM, &eligible, 2)
    );
    assert_eq!(mock.rescored.len(), 3);
    assert_eq!(mock.rerun.len(), 2);
    // The same report and nonce draw the same rows.
    let mut again = Mock::faithful(&world);
    let second = audit::audit(&args, Some(&mut again)).unwrap();
    assert_eq!(
        (second.rescored, second.rerun),
        (audit.rescored, audit.rerun)
    );
    assert_eq!(again.rescored, mock.rescored);
}

#[test]
fn recomputation_finds_a_moved_distance_and_an_irreproducible_output() {
    let world = World::new();
    let mut mock = Mock::faithful(&world);
    for value in mock.distances.values_mut() {
        *value -= 0.3;
    }
    for bytes in mock.outputs.values_mut() {
        bytes.push(b'!');
    }
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.recheck.recompute = 5;
            args.recheck.seed_sample = 5;
            args
        },
        Some(&mut mock),
    )
    .unwrap();
    let recompute = of_kind(&audit.findings, FindingKind::Recompute);
    assert_eq!(recompute.len(), 10, "{recompute:?}");
    // bob: 0.71 re-scores to 0.41, below 0.6.
    assert!(recompute.iter().any(|(line, m)| *line == Some(3)
        && m.contains("re-scored distance 0.4")
        && m.contains("the verdict would change")));
    assert!(recompute
        .iter()
        .any(|(line, m)| *line == Some(2) && m.contains("does not reproduce byte for byte")));
}

#[test]
fn recomputation_re_asks_the_second_opinions_of_certified_rows() {
    let world = World::new();
    let mut mock = Mock::faithful(&world);
    // alice (line 2) is certified; carol (line 4) failed: a dissent matters only for the first.
    for input in ["people/alice_01.jpg", "people/carol_01.jpg"] {
        mock.dissenting.insert(input.into(), "mobilefacenet".into());
    }
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.recheck.recompute = 10;
            args
        },
        Some(&mut mock),
    )
    .unwrap();
    let recompute = of_kind(&audit.findings, FindingKind::Recompute);
    assert_eq!(
        recompute,
        [(
            Some(2),
            "certified, but re-asked, second opinion mobilefacenet finds the same identity"
                .to_string()
        )]
    );
}

/// A run.json without a re-identification rate is a finding once the audit recomputes one,
/// unless `report merge` wrote it: a merged record states none on purpose (the parts' rates do
/// not add up), and the audit's own figure stands.
#[test]
fn a_missing_rate_is_a_finding_except_in_a_merged_record() {
    let world = World::new();
    let path = world.dir.join("out.run.json");
    let rewrite = |merged_parts: Option<u32>| {
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["reidentification_rate"] = serde_json::Value::Null;
        json["merged_parts"] = serde_json::json!(merged_parts);
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    };
    let recompute = |world: &World| {
        let mut mock = Mock::faithful(world);
        let mut args = world.args();
        args.recheck.recompute = 10;
        audit::audit(&args, Some(&mut mock)).unwrap()
    };
    rewrite(None);
    let record = of_kind(&recompute(&world).findings, FindingKind::RunRecord);
    assert!(
        record
            .iter()
            .any(|(_, m)| m.contains("states no re-identification rate, recomputed it is 0.25")),
        "{record:?}"
    );
    rewrite(Some(4));
    let audit = recompute(&world);
    assert_eq!(of_kind(&audit.findings, FindingKind::RunRecord), []);
    assert_eq!(audit.reidentification.map(|r| r.rate), Some(0.25));
}

#[test]
fn recomputation_needs_a_recomputer() {
    let world = World::new();
    let error = audit::audit(
        &{
            let mut args = world.args();
            args.recheck.seed_sample = 1;
            args
        },
        None,
    )
    .unwrap_err();
    assert!(matches!(error, AuditError::NoRecomputer), "{error}");
}

#[test]
fn the_sample_is_reproducible_distinct_per_stream_and_bounded() {
    let eligible: Vec<u64> = (2..202).collect();
    let head = "a".repeat(64);
    let key = |nonce: &'static str, head: &str| -> Vec<u64> {
        let key = audit::SampleKey {
            nonce,
            chain_head: head,
        };
        audit::sample(&key, 1, &eligible, 10)
    };
    let first = key("n", &head);
    assert_eq!(first, key("n", &head));
    assert_ne!(first, key("m", &head), "the nonce decides the draw");
    let key = |nonce: &'static str| audit::SampleKey {
        nonce,
        chain_head: &head,
    };
    assert_eq!(first.len(), 10);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "sorted, no repeats: {first:?}"
    );
    assert_ne!(first, audit::sample(&key("n"), 2, &eligible, 10));
    let other_head = "b".repeat(64);
    let other = audit::SampleKey {
        nonce: "n",
        chain_head: &other_head,
    };
    assert_ne!(first, audit::sample(&other, 1, &eligible, 10));
    assert_eq!(audit::sample(&key("n"), 1, &eligible[..3], 10), [2, 3, 4]);
}

#[test]
fn the_html_page_is_self_contained_escaped_and_free_of_input_names() {
    let world = World::new();
    std::fs::write(world.outputs.join("people/<b>&.png"), b"x").unwrap();
    std::fs::write(world.inputs.join("people/alice_01.jpg"), b"changed").unwrap();
    let audit = world.audit();
    assert_eq!(audit.findings.len(), 2, "{:?}", audit.findings);
    let page = html::render(&audit);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        page.contains("people/&lt;b&gt;&amp;.png"),
        "the stray name is escaped"
    );
    assert!(!page.contains("<b>&"));
    let lower = page.to_lowercase();
    assert!(!lower.contains("<script"));
    assert!(!lower.contains("http://") && !lower.contains("https://"));
    assert!(!lower.contains("<img") && !lower.contains("url("));
    for name in ["alice", "bob", "carol", "dave", "erin", "broken", "notes"] {
        assert!(!lower.contains(name), "input name {name} is in the page");
    }
    // Histogram with the threshold, attempts chart, counts, rate, hashes.
    assert!(page.matches("<svg").count() >= 2);
    assert!(page.contains("threshold 0.6"));
    assert!(
        page.contains("25.00 %"),
        "re-identification rate from run.json"
    );
    assert!(page.contains("2 min 5 s"), "wall time from run.json");
    assert!(page.contains(&audit.chain_head));
    assert!(page.contains("2 findings"));
}

/// The charts draw the rows' own numbers, and say how many of them this audit re-scored.
#[test]
fn the_html_page_marks_the_rows_figures_as_theirs() {
    let world = World::new();
    let page = html::render(&world.audit());
    assert!(page.contains(
        "<h2>Distances between input and output identities</h2><p class=\"sub\">As the rows state them: 0 of 5 re-scored by this audit (unverified: give --recompute N).</p>"
    ));
    assert!(page.contains(
        "<h2>Attempts per image</h2><p class=\"sub\">As the rows state them (unverified).</p>"
    ));
    assert!(
        page.contains("<h2>Rows per level and status</h2><p class=\"sub\">As the rows state them;")
    );
    let mut mock = Mock::faithful(&world);
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.recheck.recompute = 3;
            args
        },
        Some(&mut mock),
    )
    .unwrap();
    assert!(html::render(&audit)
        .contains("As the rows state them: 3 of 5 re-scored by this audit.</p>"));
}

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

#[test]
fn the_command_exits_0_clean_3_with_findings_1_when_it_cannot_run() {
    let world = World::new();
    let with_files = |cmd: &mut Command| {
        cmd.arg("audit")
            .arg(&world.report)
            .arg("--outputs")
            .arg(&world.outputs)
            .arg("--policy")
            .arg(&world.policy)
            .arg("--embedder")
            .arg(embedder_spec());
    };
    let mut clean = boomerang();
    with_files(&mut clean);
    let output = clean.assert().code(0).get_output().stdout.clone();
    let stdout = String::from_utf8(output).unwrap();
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("verdict: clean (7 rows"),
        "{stdout}"
    );

    let mut lines = world.lines();
    lines.swap(5, 6);
    world.write_lines(&lines);
    let html = world.dir.join("audit.html");
    let mut dirty = boomerang();
    with_files(&mut dirty);
    let output = dirty
        .arg("--html")
        .arg(&html)
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8(output).unwrap();
    assert!(
        stdout.contains("finding: [chain] line 6: this row originally came right after line 7"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("verdict: 3 findings in 7 rows"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("3 findings"));

    let mut json = boomerang();
    with_files(&mut json);
    let output = json
        .arg("--json")
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(value["verdict"], "findings");
    assert_eq!(value["exit_code"], 3);
    assert_eq!(value["findings"][0]["kind"], "chain");
    assert_eq!(value["findings"][0]["line"], 6);

    boomerang()
        .arg("audit")
        .arg(world.dir.join("missing.csv"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("missing.csv"));
}

/// Writes `rows` as `NAME.report.csv` (with its run.json) in the world's folder.
fn part(world: &World, name: &str, rows: &[ReportRow]) -> PathBuf {
    let path = world.dir.join(format!("{name}.report.csv"));
    world.write_report(&path, rows);
    path
}

#[test]
fn merging_parts_gives_the_report_of_the_whole_run() {
    let world = World::new();
    let a = part(&world, "a", &world.rows[..3]);
    let b = part(&world, "b", &world.rows[3..]);
    let merged = world.dir.join("all.csv");
    let summary = audit::merge(&[a, b], &merged).unwrap();
    assert_eq!((summary.rows, summary.parts), (7, 2));
    assert!(summary.unrecorded.is_empty());
    // Same rows in the same order, chained from the header: the single run's report, byte for byte.
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&world.report).unwrap()
    );
    let rows = boomerang::records::report::verify(&merged).unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(summary.chain_head, rows[6].chain);
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.run.report = merged;
            args
        },
        None,
    )
    .unwrap();
    assert_eq!(audit.findings, Vec::<Finding>::new());
    assert!(audit.not_checked.iter().any(|n| n.contains("no run.json")));
}

#[test]
fn merging_refuses_overlapping_parts() {
    let world = World::new();
    let a = part(&world, "a", &world.rows[..4]);
    let b = part(&world, "b", &world.rows[3..]);
    let merged = world.dir.join("all.csv");
    let error = audit::merge(&[a.clone(), b.clone()], &merged).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, audit::MergeError::Conflict(c) if c.kind == audit::ConflictKind::Overlap),
        "{text}"
    );
    assert!(
        text.contains("input path `people/dave_01.jpg`")
            && text.contains(&format!("{}:5", a.display()))
            && text.contains(&format!("{}:2", b.display())),
        "{text}"
    );
    assert!(!merged.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&world.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same output path from two inputs is an overlap too.
    let mut other = world.rows[4..].to_vec();
    other[2].input_path = "people/frank_01.jpg".into();
    other[2].output_path = world.rows[0].output_path.clone();
    let c = part(&world, "c", &other);
    let a = part(&world, "a2", &world.rows[..3]);
    let error = audit::merge(&[a, c], &merged).unwrap_err();
    assert!(
        error.to_string().contains("output path `people/3f9a.png`"),
        "{error}"
    );
}

#[test]
fn merging_refuses_parts_of_different_policies() {
    let world = World::new();
    let a = part(&world, "a", &world.rows[..3]);
    let mut rows = world.rows[3..].to_vec();
    for row in &mut rows {
        row.policy_sha256 = "0".repeat(64);
    }
    let b = part(&world, "b", &rows);
    let error = audit::merge(&[a, b.clone()], &world.dir.join("all.csv")).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, audit::MergeError::Conflict(c) if c.kind == audit::ConflictKind::Mixed),
        "{text}"
    );
    assert!(
        text.contains("different policy hashes") && text.contains(&format!("{}:2", b.display())),
        "{text}"
    );
}

#[test]
fn merging_refuses_a_part_that_does_not_verify_and_never_overwrites() {
    let world = World::new();
    let a = part(&world, "a", &world.rows[..3]);
    let b = part(&world, "b", &world.rows[3..]);
    let merged = world.dir.join("all.csv");

    let error = audit::merge(&[a.clone(), a.clone()], &merged).unwrap_err();
    assert!(matches!(error, audit::MergeError::Twice { .. }), "{error}");

    std::fs::write(&merged, "keep me").unwrap();
    let error = audit::merge(&[a.clone(), b.clone()], &merged).unwrap_err();
    assert!(matches!(error, audit::MergeError::Exists { .. }), "{error}");
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), "keep me");
    std::fs::remove_file(&merged).unwrap();

    let text = std::fs::read_to_string(&b).unwrap();
    std::fs::write(&b, text.replacen(",0.95,", ",0.99,", 1)).unwrap();
    let error = audit::merge(&[a.clone(), b.clone()], &merged).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("does not verify") && message.contains("[chain] line 2"),
        "{message}"
    );
    assert!(!merged.exists());

    // A part cut short is caught through its run.json.
    let b = part(&world, "b2", &world.rows[3..]);
    let text = std::fs::read_to_string(&b).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&b, format!("{}\n", kept[..kept.len() - 1].join("\n"))).unwrap();
    let error = audit::merge(&[a, b], &merged).unwrap_err();
    assert!(error.to_string().contains("rows were deleted"), "{error}");
}

/// `f` on another thread, which must finish within 20 s (a read of a FIFO would block for ever).
fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(f()));
    receive
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("hung reading a file it was handed")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The report and run.json are the operator's: a FIFO must not hang the audit or the merge, nor a
/// link to `/dev/zero` exhaust their memory.
#[test]
fn a_fifo_or_device_handed_as_report_or_run_json_is_refused() {
    let world = World::new();
    // The report is a FIFO (no writer ever opens it).
    let fifo = world.dir.join("fifo.report.csv");
    mkfifo(&fifo);
    let mut args = world.args();
    args.run.report = fifo.clone();
    let error = within_20s(move || audit::audit(&args, None).map(|_| ()).unwrap_err());
    assert!(
        matches!(error, AuditError::Io { .. })
            && format!("{error:?}").contains("not a regular file"),
        "{error:?}"
    );
    // run.json is a link to an endless device.
    let zero = world.dir.join("zero.run.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let mut args = world.args();
    args.run.run_json = Some(zero);
    let error = within_20s(move || audit::audit(&args, None).map(|_| ()).unwrap_err());
    assert!(
        matches!(error, AuditError::Io { .. })
            && format!("{:?}", error).contains("not a regular file"),
        "{error:?}"
    );
    // Merge reads the same files: a part that is a FIFO, and a part whose run.json links to
    // /dev/zero.
    let a = part(&world, "a", &world.rows[..3]);
    let merged = world.dir.join("all.csv");
    let (from, to) = (a.clone(), merged.clone());
    let message = within_20s(move || audit::merge(&[from, fifo], &to).unwrap_err().to_string());
    assert!(message.contains("fifo.report.csv"), "{message}");
    std::fs::remove_file(world.dir.join("a.run.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", world.dir.join("a.run.json")).unwrap();
    // Not read at all: a run.json that is not a regular file is no record of the part.
    let (from, to) = (a, merged.clone());
    within_20s(move || audit::merge(&[from], &to).map(|_| ()).unwrap_or_default());
}

/// The number of parts is run.json's: a forged huge one is refused by what is missing, without
/// sizing anything by it.
#[test]
fn merging_a_part_that_claims_billions_of_parts_is_refused() {
    let world = World::new();
    let a = part(&world, "a", &world.rows);
    let run_json = world.dir.join("a.run.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
    record["config"]["shard"] = serde_json::json!({
        "index": 0,
        "count": u32::MAX,
        "walk_entries": 7,
        "walk_sha256": "0".repeat(64),
        "first": 0,
        "entries": 7,
    });
    std::fs::write(&run_json, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    let message = audit::merge(&[a], &world.dir.join("all.csv"))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "the sharded run has 4294967295 parts, but part 1/4294967295, 2/4294967295, "
        ) && message.contains(", 10/4294967295, 4294967284 more are missing"),
        "{message}"
    );
}

#[test]
fn the_merge_command_reports_what_it_wrote_or_why_not() {
    let world = World::new();
    let a = part(&world, "a", &world.rows[..3]);
    let b = part(&world, "b", &world.rows[3..]);
    let merged = world.dir.join("all.csv");
    boomerang()
        .args(["report", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&merged)
        .assert()
        .code(0)
        .stdout(predicates::str::contains("merged 7 rows from 2 reports"));
    boomerang()
        .args(["report", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&merged)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("already exists"));
}

/// The rows' times are the operator's: huge ones render (as unverified figures), they do not
/// overflow the sums of the page.
#[test]
fn the_html_page_renders_rows_with_huge_times() {
    let world = World::new();
    let mut rows = world.rows.clone();
    for row in rows.iter_mut().filter(|r| r.milliseconds.is_some()) {
        row.milliseconds = Some(u64::MAX);
    }
    world.replace_report(&rows);
    let page = html::render(&world.audit());
    assert!(page.contains("<b>18446744073709551616 ms</b>"), "{page}");
}

#[test]
fn an_empty_report_audits_clean_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("empty.report.csv");
    drop(ReportWriter::create(&report, false).unwrap());
    let audit = audit::audit(
        &AuditConfig {
            run: RunFiles {
                report,
                ..RunFiles::default()
            },
            ..AuditConfig::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(audit.outcome(), Outcome::Clean);
    assert_eq!(audit.chain_head, boomerang::records::report::genesis());
    let page = html::render(&audit);
    assert!(page.contains("No row has a distance."));
    assert!(page.contains("No row has an attempt count."));
}

#[test]
fn the_embedder_graph_hash_is_accepted_for_the_spec() {
    let world = World::new();
    let graph =
        sha(&std::fs::read(root().join("models/dlib-face/dlib-face-resnet29.onnx")).unwrap());
    let mut rows = world.rows.clone();
    for row in &mut rows {
        row.embedder_sha256 = graph.clone();
    }
    world.replace_report(&rows);
    assert_eq!(world.audit().findings, Vec::<Finding>::new());
}

#[test]
fn another_embedder_spec_is_found() {
    let world = World::new();
    let spec = world.dir.join("embedder.toml");
    let text = std::fs::read_to_string(embedder_spec()).unwrap().replace(
        "onnx = \"dlib-face-resnet29.onnx\"",
        &format!(
            "onnx = \"{}\"",
            root()
                .join("models/dlib-face/dlib-face-resnet29.onnx")
                .display()
        ),
    );
    let text = text.replace(
        "detector = \"../face-detector/blazeface-full-range.onnx\"",
        &format!(
            "detector = \"{}\"",
            root()
                .join("models/face-detector/blazeface-full-range.onnx")
                .display()
        ),
    );
    std::fs::write(
        &spec,
        text.replace("max-distance = 0.6", "max-distance = 0.5"),
    )
    .unwrap();
    let audit = audit::audit(
        &{
            let mut args = world.args();
            args.claimed.embedder = Some(spec);
            args
        },
        None,
    )
    .unwrap();
    let hash = of_kind(&audit.findings, FindingKind::Hash);
    assert_eq!(hash.len(), 1, "{hash:?}");
    assert!(
        hash[0].1.contains("7 row(s) have embedder_sha256"),
        "{}",
        hash[0].1
    );
    // Its operating point moved: every certified or failed row's threshold breaks the policy.
    assert_eq!(of_kind(&audit.findings, FindingKind::Rule).len(), 5);
}

#[test]
fn run_json_of_an_unfinished_run_or_other_hashes_is_found() {
    let world = World::new();
    let path = world.dir.join("out.run.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["finished"] = serde_json::json!("");
    json["config"]["policy_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let audit = world.audit();
    let record = of_kind(&audit.findings, FindingKind::RunRecord);
    assert_eq!(record.len(), 2, "{record:?}");
    assert!(record
        .iter()
        .any(|(_, m)| m.contains("the run did not finish")));
    assert!(record
        .iter()
        .any(|(_, m)| m.contains("rows have policy_sha256") && m.contains(&"0".repeat(64))));
}
