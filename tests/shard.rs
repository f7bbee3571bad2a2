//! Sharded runs (`anonymize --shard K/N`, `--shard auto`) into one shared OUT, and `report merge`
//! of their parts: the merged report equals an unsharded run's, OUT is byte-identical, the audit
//! passes, and parts that do not make one run are refused.

mod common;

use common::{anonymize, demo_policy, faces, root, tree};

use std::path::{Path, PathBuf};

use assert_cmd::assert::OutputAssertExt;
use assert_cmd::Command;
use boomerang::records::report::{verify, ReportRow, RunRecord};
use predicates::prelude::*;

/// `count` 64x64 images cut from the bundled photos into two class folders, a name collision
/// (`a.jpg` and `a.png` both want `a.png`), an undecodable image and a non-image.
fn dataset(dir: &Path, count: usize) -> PathBuf {
    let input = dir.join("in");
    let sources: Vec<image::DynamicImage> = [
        faces().join("obama.jpg"),
        faces().join("biden.jpg"),
        faces().join("obama2.jpg"),
        root().join("examples/astronaut.png"),
        root().join("examples/coffee.png"),
    ]
    .iter()
    .map(|path| image::open(path).unwrap())
    .collect();
    for index in 0..count {
        let source = &sources[index % sources.len()];
        let (w, h) = (source.width(), source.height());
        let side = w.min(h) * (4 + (index as u32 % 3)) / 6;
        let image = source
            .crop_imm((w - side) / 2, (h - side) / 2, side, side)
            .resize_exact(64, 64, image::imageops::FilterType::Triangle);
        let folder = input.join(if index % 2 == 0 { "class_a" } else { "class_b" });
        std::fs::create_dir_all(&folder).unwrap();
        image.save(folder.join(format!("{index:02}.png"))).unwrap();
    }
    let small = sources[0].resize_exact(64, 64, image::imageops::FilterType::Triangle);
    small.to_rgb8().save(input.join("a.jpg")).unwrap();
    sources[1]
        .resize_exact(64, 64, image::imageops::FilterType::Triangle)
        .save(input.join("a.png"))
        .unwrap();
    let jpeg = std::fs::read(faces().join("obama.jpg")).unwrap();
    std::fs::write(input.join("broken.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    input
}

/// `OUT.part-KKKK-of-NNNN.<suffix>` beside OUT.
fn part_file(output: &Path, index: u32, count: u32, suffix: &str) -> PathBuf {
    common::sibling(output, &format!("part-{index:04}-of-{count:04}.{suffix}"))
}

fn part_reports(output: &Path, count: u32) -> Vec<PathBuf> {
    (0..count)
        .map(|k| part_file(output, k, count, "report.csv"))
        .collect()
}

fn merge(parts: &[PathBuf], merged: &Path) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .args(["report", "merge"])
        .args(parts)
        .arg("-o")
        .arg(merged);
    command
}

/// Rows without what differs between runs that did the same: time and chain.
fn comparable(rows: Vec<ReportRow>) -> Vec<ReportRow> {
    rows.into_iter()
        .map(|row| ReportRow {
            milliseconds: None,
            chain: String::new(),
            ..row
        })
        .collect()
}

fn run_record(path: &Path) -> RunRecord {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn parts_in_turn_and_at_once_merge_into_the_unsharded_run() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path(), 12);
    let policy = demo_policy(temp.path(), &[]);
    let seed = ["--seed", "11", "--level", "low"];

    let whole = temp.path().join("whole");
    anonymize(&policy, &input, &whole, &seed).assert().code(3);
    let whole_rows = verify(&common::report_path(&whole)).unwrap();
    assert_eq!(whole_rows.len(), 16);
    let collision = whole_rows.iter().find(|r| r.input_path == "a.png").unwrap();
    assert!(
        collision.reason.contains("already written for a.jpg"),
        "{}",
        collision.reason
    );

    // Four parts, one after another, into one OUT.
    let turns = temp.path().join("turns");
    for k in 0..4 {
        // The last part batches (outputs do not change): the merged record is part 0's.
        let batch = if k == 3 { "2" } else { "1" };
        anonymize(
            &policy,
            &input,
            &turns,
            &[
                "--seed",
                "11",
                "--level",
                "low",
                "--batch",
                batch,
                "--shard",
                &format!("{k}/4"),
            ],
        )
        .assert()
        .code(predicate::in_iter([0, 3]));
        assert!(part_file(&turns, k, 4, "run.json").is_file());
    }
    assert!(!common::report_path(&turns).exists());

    // Two parts at once (separate processes) into one OUT.
    let together = temp.path().join("together");
    let children: Vec<std::process::Child> = (0..2)
        .map(|k| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("boomerang"))
                .args(["anonymize", "--quiet", "--policy"])
                .arg(&policy)
                .args(["--seed", "11", "--level", "low"])
                .args(["--shard", &format!("{k}/2")])
                .arg(&input)
                .arg(&together)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let status = child.wait_with_output().unwrap().status;
        assert!(matches!(status.code(), Some(0 | 3)), "{status}");
    }

    assert_eq!(
        tree(&whole),
        tree(&turns),
        "OUT of the parts in turn differs"
    );
    assert_eq!(
        tree(&whole),
        tree(&together),
        "OUT of the parts at once differs"
    );

    // Merged (given out of order: merge puts parts in part order).
    let mut parts = part_reports(&turns, 4);
    parts.reverse();
    let merged = common::report_path(&turns);
    merge(&parts, &merged)
        .assert()
        .success()
        .stdout(predicate::str::contains("merged 16 rows"));
    assert_eq!(
        comparable(verify(&merged).unwrap()),
        comparable(whole_rows.clone())
    );
    let merged_together = common::report_path(&together);
    merge(&part_reports(&together, 2), &merged_together)
        .assert()
        .success();
    assert_eq!(
        comparable(verify(&merged_together).unwrap()),
        comparable(whole_rows)
    );

    // One run record for the merged report: counts summed, no shard, the same configuration.
    let record_text = std::fs::read_to_string(common::run_json_path(&turns)).unwrap();
    assert!(!record_text.contains("\"shard\""), "{record_text}");
    let record = run_record(&common::run_json_path(&turns));
    let whole_record = run_record(&common::run_json_path(&whole));
    assert_eq!(record.counts, whole_record.counts);
    assert_eq!(record.report_rows, 16);
    assert_eq!(record.config.seed, whole_record.config.seed);
    assert_eq!(
        record.config.level_settings,
        whole_record.config.level_settings
    );
    assert_eq!(record.config.model_sha256, whole_record.config.model_sha256);
    assert_eq!(
        (record.config.batch, record.config.shard.as_ref()),
        (1, None),
        "part 0's configuration, though part 3 (batch 2) was given first"
    );

    common::audit_recompute(&merged, &input, &turns, &policy, 4)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("verdict: clean"));
}

#[test]
fn merge_refuses_missing_duplicate_and_foreign_parts() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for k in 0..3 {
        std::fs::write(input.join(format!("{k}.txt")), "not an image").unwrap();
    }
    std::fs::copy(root().join("examples/coffee.png"), input.join("3.png")).unwrap();
    let policy = demo_policy(temp.path(), &[]);
    let run = |output: &Path, seed: &str, shard: &str| {
        anonymize(&policy, &input, output, &["--seed", seed, "--shard", shard])
            .assert()
            .code(predicate::in_iter([0, 3]));
    };
    let ours = temp.path().join("ours");
    for k in 0..3 {
        run(&ours, "5", &format!("{k}/3"));
    }
    let again = temp.path().join("again");
    run(&again, "5", "0/3");
    let other = temp.path().join("other");
    run(&other, "6", "2/3");
    let parts = part_reports(&ours, 3);
    let merged = temp.path().join("merged.csv");

    // --resume works per part: part 2/3 (2.txt, 3.png) redoes the output deleted from its block.
    // (The default level renames files: the output's name is in the part's report.)
    let rows = verify(&parts[2]).unwrap();
    let row = rows.iter().find(|r| r.input_path == "3.png").unwrap();
    let output = ours.join(&row.output_path);
    let written = std::fs::read(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    anonymize(&policy, &input, &ours, &["--resume", "--shard", "2/3"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    assert_eq!(std::fs::read(&output).unwrap(), written);
    // A new part 2/3 does not start over the outputs of its block.
    let fresh = temp.path().join("fresh.report.csv");
    let fresh = fresh.to_str().unwrap();
    anonymize(
        &policy,
        &input,
        &ours,
        &["--seed", "5", "--shard", "2/3", "--report", fresh],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("an output of part 2/3"));

    merge(&parts[..2], &merged)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("part 2/3 is missing"));
    let twice = [
        parts[0].clone(),
        parts[1].clone(),
        parts[2].clone(),
        part_file(&again, 0, 3, "report.csv"),
    ];
    merge(&twice, &merged)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("part 0/3 is given twice"));
    let foreign = [
        parts[0].clone(),
        parts[1].clone(),
        part_file(&other, 2, 3, "report.csv"),
    ];
    merge(&foreign, &merged)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("seed (fingerprint)"));
    assert!(!merged.exists());
    merge(&parts, &merged).assert().success();
    assert_eq!(verify(&merged).unwrap().len(), 4);
    assert!(temp.path().join("merged.csv.run.json").is_file());
}

/// `--shard auto` reads a Slurm array's variables: `--array=1-3` gives task 3 part 2 of 3.
#[test]
fn shard_auto_reads_slurm_array_variables() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for k in 0..6 {
        std::fs::write(input.join(format!("{k}.txt")), "not an image").unwrap();
    }
    let policy = demo_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    let slurm = |command: &mut Command| {
        command
            .env_remove("BOOMERANG_SHARD")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_STEP")
            .env("SLURM_ARRAY_TASK_ID", "3")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_ARRAY_TASK_MIN", "1");
    };
    let mut dry = anonymize(
        &policy,
        &input,
        &output,
        &["--seed", "3", "--shard", "auto", "--dry-run"],
    );
    slurm(&mut dry);
    dry.assert()
        .success()
        .stdout(predicate::str::contains("part 2/3"))
        .stdout(predicate::str::contains("0 images to anonymize, 2 to skip"));
    assert!(!output.exists());
    anonymize(
        &policy,
        &input,
        &output,
        &["--seed", "3", "--shard", "auto"],
    )
    .env_remove("BOOMERANG_SHARD")
    .env_remove("JOB_COMPLETION_INDEX")
    .env_remove("SLURM_ARRAY_TASK_STEP")
    .env("SLURM_ARRAY_TASK_ID", "3")
    .env("SLURM_ARRAY_TASK_COUNT", "3")
    .env("SLURM_ARRAY_TASK_MIN", "1")
    .assert()
    .success();
    let rows = verify(&part_file(&output, 2, 3, "report.csv")).unwrap();
    let inputs: Vec<&str> = rows.iter().map(|r| r.input_path.as_str()).collect();
    assert_eq!(inputs, ["4.txt", "5.txt"]);
    let record = run_record(&part_file(&output, 2, 3, "run.json"));
    let shard = record.config.shard.unwrap();
    assert_eq!((shard.index, shard.count, shard.first), (2, 3, 4));
}

/// Without any of the variables, `--shard auto` exits 1 naming them; a part that does not exist
/// is a usage error (exit 2).
#[test]
fn shard_auto_without_environment_and_bad_parts_are_clear_errors() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("0.txt"), "not an image").unwrap();
    let policy = demo_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    let mut command = anonymize(&policy, &input, &output, &["--shard", "auto"]);
    for name in [
        "BOOMERANG_SHARD",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
    ] {
        command.env_remove(name);
    }
    command
        .assert()
        .code(1)
        .stderr(predicate::str::contains("SLURM_ARRAY_TASK_ID"))
        .stderr(predicate::str::contains("JOB_COMPLETION_INDEX"))
        .stderr(predicate::str::contains("BOOMERANG_SHARD"));
    anonymize(&policy, &input, &output, &["--shard", "1/4"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("same run seed"));
    anonymize(&policy, &input, &output, &["--shard", "4/4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("part numbers count from 0"));
    anonymize(&policy, &input, &output, &["--shard", "auto"])
        .env("JOB_COMPLETION_INDEX", "0")
        .env_remove("BOOMERANG_SHARD")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--shards N"));
    assert!(!output.exists());
}

/// A merged run.json says how many parts it joined and states no re-identification rate (the
/// parts' rates do not add up); a run of face images audits clean with every row re-run and
/// re-scored (tests/audit.rs checks the audit's rule for a missing rate with a recomputed one).
#[test]
fn a_merged_run_of_faces_audits_clean_when_every_row_is_re_run() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["obama.jpg", "biden.jpg", "obama2.jpg"] {
        std::fs::copy(faces().join(name), input.join(name)).unwrap();
    }
    let policy = demo_policy(temp.path(), &[("max-attempts = 3", "max-attempts = 1")]);
    let output = temp.path().join("out");
    for part in ["0/2", "1/2"] {
        anonymize(
            &policy,
            &input,
            &output,
            &["--level", "low", "--seed", "8", "--shard", part],
        )
        .assert()
        .code(predicate::in_iter([0, 3]));
    }
    let merged = common::report_path(&output);
    merge(&part_reports(&output, 2), &merged).assert().success();
    let record = run_record(&common::run_json_path(&output));
    assert_eq!(record.merged_parts, Some(2));
    assert_eq!(record.reidentification_rate, None);
    common::audit_recompute(&merged, &input, &output, &policy, 3)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("re-ran lines: 2, 3, 4"))
        .stdout(predicate::str::contains("verdict: clean"));
}

/// `boomerang augment` or `enhance` on the tiny model, seeded from `secret`.
fn dataset_command(
    command: &str,
    secret: &Path,
    input: &Path,
    output: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("boomerang"));
    cmd.arg(command)
        .arg("--model")
        .arg(root().join("models/tiny-sd"))
        .args(["--steps", "2", "--batch", "2", "--quiet", "--seed-file"])
        .arg(secret)
        .args(if command == "augment" {
            ["-n", "2"]
        } else {
            ["--scale", "2"]
        })
        .arg(input)
        .arg(output);
    cmd
}

fn part_manifests(output: &Path, command: &str, count: u32) -> Vec<PathBuf> {
    (0..count)
        .map(|k| output.join(format!("{command}.part-{k:04}-of-{count:04}.csv")))
        .collect()
}

fn new_secret(dir: &Path) -> PathBuf {
    let secret = dir.join("run.secret");
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["secret", "new"])
        .arg(&secret)
        .assert()
        .success();
    secret
}

#[test]
fn augment_and_enhance_parts_merge_into_the_unsharded_output() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path(), 7);
    let secret = new_secret(temp.path());
    for (command, count) in [("augment", 3u32), ("enhance", 2)] {
        let whole = temp.path().join(format!("{command}-whole"));
        dataset_command(command, &secret, &input, &whole)
            .assert()
            .code(3);

        // The parts at once (separate processes) into one OUT.
        let parts = temp.path().join(format!("{command}-parts"));
        let children: Vec<std::process::Child> = (0..count)
            .map(|k| {
                dataset_command(command, &secret, &input, &parts)
                    .args(["--shard", &format!("{k}/{count}")])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let status = child.wait_with_output().unwrap().status;
            assert!(matches!(status.code(), Some(0 | 3)), "{command}: {status}");
        }
        let manifests = part_manifests(&parts, command, count);
        for manifest in &manifests {
            assert!(manifest.is_file() && manifest.with_extension("json").is_file());
        }
        let mut reversed = manifests.clone();
        reversed.reverse();
        merge(&reversed, &parts.join(format!("{command}.csv")))
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "merged the {count} parts"
            )));
        // Outputs and the manifest byte for byte, and nothing else left in OUT.
        let (whole_tree, parts_tree) = (tree(&whole), tree(&parts));
        assert_eq!(
            whole_tree.keys().collect::<Vec<_>>(),
            parts_tree.keys().collect::<Vec<_>>(),
            "{command}"
        );
        for (path, bytes) in &whole_tree {
            assert!(parts_tree[path] == *bytes, "{command}: {}", path.display());
        }
    }
}

#[test]
fn a_part_resumed_after_a_crash_merges_the_same() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path(), 5);
    let secret = new_secret(temp.path());
    let whole = temp.path().join("whole");
    dataset_command("augment", &secret, &input, &whole)
        .assert()
        .code(3);
    let parts = temp.path().join("parts");
    for k in 0..2 {
        dataset_command("augment", &secret, &input, &parts)
            .args(["--shard", &format!("{k}/2")])
            .assert()
            .code(predicate::in_iter([0, 3]));
    }
    // Part 1 "killed": its record not finished, then its last row torn and that output gone.
    let manifests = part_manifests(&parts, "augment", 2);
    let record_path = manifests[1].with_extension("json");
    let record = std::fs::read_to_string(&record_path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert!(value["finished_rows"].as_u64() > Some(3), "{record}");
    std::fs::write(&record_path, unfinished_record(&record)).unwrap();
    merge(&manifests, &parts.join("augment.csv"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("says it has not finished"));
    let text = std::fs::read_to_string(&manifests[1]).unwrap();
    let cut = text.trim_end().rfind('\n').unwrap();
    std::fs::write(&manifests[1], &text[..cut + 20]).unwrap();
    let last_output = text.trim_end().lines().last().unwrap().split(',').nth(2);
    if let Some(output) = last_output.filter(|o| !o.is_empty()) {
        std::fs::remove_file(parts.join(output)).unwrap();
    }
    merge(&manifests, &parts.join("augment.csv"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("did not finish"));
    // Started again without --resume: refused; with it: finished, and merged as if never killed.
    dataset_command("augment", &secret, &input, &parts)
        .args(["--shard", "1/2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--resume"));
    dataset_command("augment", &secret, &input, &parts)
        .args(["--shard", "1/2", "--resume"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    merge(&manifests, &parts.join("augment.csv"))
        .assert()
        .success();
    assert_eq!(tree(&whole), tree(&parts));
}

#[test]
fn manifest_merge_refuses_missing_unfinished_and_foreign_parts() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path(), 3);
    let secret = new_secret(temp.path());
    let output = temp.path().join("out");
    let part = |k: u32, extra: &[&str]| {
        let mut cmd = dataset_command("augment", &secret, &input, &output);
        cmd.args(["--shard", &format!("{k}/3")]).args(extra);
        cmd
    };
    for k in 0..2 {
        part(k, &[]).assert().code(predicate::in_iter([0, 3]));
    }
    let manifests = part_manifests(&output, "augment", 3);
    let merged = output.join("augment.csv");
    merge(&manifests[..2], &merged)
        .assert()
        .failure()
        .stderr(predicate::str::contains("part 2 is missing"));
    merge(&[manifests[0].clone(), manifests[0].clone()], &merged)
        .assert()
        .failure()
        .stderr(predicate::str::contains("twice"));
    // Part 2 at another strength is another run's part.
    part(2, &["--strength", "0.3"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    merge(&manifests, &merged)
        .assert()
        .failure()
        .stderr(predicate::str::contains("another arguments"));
    assert!(!merged.exists() && manifests.iter().all(|m| m.is_file()));
    // Parts need the run's secret, and an OUT of their own run.
    let fresh = temp.path().join("fresh");
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["augment", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args(["-n", "1", "--shard", "0/2"])
        .arg(&input)
        .arg(&fresh)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--seed-file"));
    assert!(!fresh.exists());
    let whole = temp.path().join("whole");
    dataset_command("augment", &secret, &input, &whole)
        .assert()
        .code(predicate::in_iter([0, 3]));
    let before = tree(&whole);
    dataset_command("augment", &secret, &input, &whole)
        .args(["--shard", "0/2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unsharded run"));
    assert_eq!(tree(&whole), before);
}

/// A part record with `finished_rows` set back to null, as while its part runs.
fn unfinished_record(text: &str) -> String {
    let mut record: serde_json::Value = serde_json::from_str(text).unwrap();
    record["finished_rows"] = serde_json::Value::Null;
    record.to_string()
}
