//! `anonymize` and the file system: the run record's name, locks against concurrent runs, resume
//! checks against run.json, symlinks inside OUT, OUT given through `..`, private file modes and
//! non-regular report or run.json paths.

mod common;

use common::{demo_policy, faces, png_chunks, report_path, run_json_path, sibling, tree};

/// [`common::anonymize`] with a timeout: a run must never hang on a FIFO.
fn anonymize(policy: &Path, input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut command = common::anonymize(policy, input, output, extra);
    command.timeout(Duration::from_secs(300));
    command
}

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

/// Two class folders `a/` and `b/` with one face each.
fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("a")).unwrap();
    std::fs::create_dir_all(input.join("b")).unwrap();
    std::fs::copy(faces().join("obama.jpg"), input.join("a/1.jpg")).unwrap();
    std::fs::copy(faces().join("biden.jpg"), input.join("b/1.jpg")).unwrap();
    input
}

fn recorded_seed(run_json: &Path) -> u64 {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_json).unwrap()).unwrap();
    record["config"]["seed"].as_u64().unwrap()
}

/// A finished run of the demo policy over [`dataset`] at seed 7 in `dir`: (IN, policy, OUT).
fn finished_run(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let input = dataset(dir);
    let policy = demo_policy(dir, &[]);
    let output = dir.join("out");
    anonymize(&policy, &input, &output, &["--seed", "7"])
        .assert()
        .code(ok());
    (input, policy, output)
}

fn ok() -> impl predicates::Predicate<i32> {
    predicate::in_iter([0, 3])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn mkfifo(path: &Path) {
    let name = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Row 1: a second run whose report name maps to the first run's run.json must not overwrite
/// it, and a fresh run refuses an existing run record.
#[test]
fn run_record_is_named_from_the_report_and_never_overwritten() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let first = temp.path().join("out");
    anonymize(&policy, &input, &first, &["--seed", "7"])
        .assert()
        .code(ok());
    let first_record = std::fs::read_to_string(run_json_path(&first)).unwrap();
    assert_eq!(recorded_seed(&run_json_path(&first)), 7);

    // `out.csv` and `out.report.csv` are different reports: they need different run records.
    let other_report = temp.path().join("out.csv");
    let second = temp.path().join("out2");
    anonymize(
        &policy,
        &input,
        &second,
        &["--seed", "99", "--report", other_report.to_str().unwrap()],
    )
    .assert()
    .code(ok());
    assert_eq!(
        std::fs::read_to_string(run_json_path(&first)).unwrap(),
        first_record,
        "the first run's run.json was overwritten"
    );
    assert_eq!(
        recorded_seed(&temp.path().join("out.csv.run.json")),
        99,
        "the second run's record is named from its report"
    );
    Command::cargo_bin("boomerang")
        .unwrap()
        .arg("audit")
        .arg(report_path(&first))
        .args(["--outputs"])
        .arg(&first)
        .assert()
        .stdout(predicate::str::contains("was not used").not());

    // A fresh run never replaces an existing run record.
    let third = temp.path().join("third");
    let stale = run_json_path(&third);
    std::fs::write(&stale, "{\"mine\": true}\n").unwrap();
    anonymize(&policy, &input, &third, &["--seed", "5"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("third.run.json"));
    assert_eq!(
        std::fs::read_to_string(&stale).unwrap(),
        "{\"mine\": true}\n"
    );
    assert!(!report_path(&third).exists(), "nothing written");
}

/// Row 2: OUT and the report are locked for the whole run; a second run exits 1 naming the
/// locked path.
#[test]
fn a_second_run_on_a_locked_output_or_report_exits_1() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);

    // Another run holds OUT (the lock is taken here, by this process).
    let output = temp.path().join("out");
    std::fs::create_dir(&output).unwrap();
    let held = std::fs::File::open(&output).unwrap();
    held.try_lock().unwrap();
    anonymize(&policy, &input, &output, &["--seed", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(output.to_str().unwrap()))
        .stderr(predicate::str::contains("lock"));
    assert!(tree(&output).is_empty());
    assert!(!report_path(&output).exists());
    drop(held);

    // A finished run, resumed while another process holds its report.
    anonymize(&policy, &input, &output, &["--seed", "1"])
        .assert()
        .code(ok());
    let report = report_path(&output);
    let before = std::fs::read(&report).unwrap();
    let held = std::fs::File::open(&report).unwrap();
    held.try_lock().unwrap();
    std::fs::remove_dir_all(output.join("b")).unwrap();
    anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(report.to_str().unwrap()))
        .stderr(predicate::str::contains("lock"));
    assert_eq!(std::fs::read(&report).unwrap(), before);
    assert!(!output.join("b").exists());
    drop(held);
    anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(ok());
}

/// Row 3: resume needs run.json, and the kept rows' seeds must derive from its run seed.
#[test]
fn resume_refuses_a_missing_or_edited_run_json() {
    let temp = tempfile::tempdir().unwrap();
    let (input, policy, output) = finished_run(temp.path());
    let run_json = run_json_path(&output);
    let record = std::fs::read_to_string(&run_json).unwrap();
    let report = std::fs::read(report_path(&output)).unwrap();

    std::fs::remove_file(&run_json).unwrap();
    anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("run.json"));
    assert!(!run_json.exists());
    assert_eq!(std::fs::read(report_path(&output)).unwrap(), report);

    let edited = record.replace("\"seed\": 7,", "\"seed\": 8,");
    assert_ne!(edited, record, "run.json holds the seed");
    std::fs::write(&run_json, &edited).unwrap();
    anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("seed"));
    assert_eq!(std::fs::read_to_string(&run_json).unwrap(), edited);
    assert_eq!(std::fs::read(report_path(&output)).unwrap(), report);
}

/// Row 4: resume needs the report (and run.json) that belong to OUT.
#[test]
fn resume_refuses_a_report_that_does_not_belong_to_out() {
    let temp = tempfile::tempdir().unwrap();
    let (input, policy, output) = finished_run(temp.path());
    let outputs = tree(&output);
    let report = std::fs::read(report_path(&output)).unwrap();

    let other = temp.path().join("other.csv");
    anonymize(
        &policy,
        &input,
        &output,
        &["--resume", "--report", other.to_str().unwrap()],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains(output.to_str().unwrap()));
    assert_eq!(tree(&output), outputs, "OUT changed");
    assert!(!other.exists());

    // The right report, but another OUT: run.json records the OUT it belongs to.
    let elsewhere = temp.path().join("elsewhere");
    anonymize(
        &policy,
        &input,
        &elsewhere,
        &[
            "--resume",
            "--report",
            report_path(&output).to_str().unwrap(),
        ],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains(output.to_str().unwrap()));
    assert_eq!(std::fs::read(report_path(&output)).unwrap(), report);
    assert!(!elsewhere.exists() || tree(&elsewhere).is_empty());
}

/// Row 5: a symlink inside OUT is never written through.
#[test]
fn symlinks_inside_out_are_never_followed() {
    let temp = tempfile::tempdir().unwrap();
    let (input, policy, output) = finished_run(temp.path());
    let elsewhere = temp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::remove_dir_all(output.join("b")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, output.join("b")).unwrap();
    let result = anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(predicate::ne(0));
    let stderr = String::from_utf8_lossy(&result.get_output().stderr).into_owned();
    assert!(stderr.contains("symlink"), "{stderr}");
    assert!(
        tree(&elsewhere).is_empty(),
        "written through the symlink: {:?}",
        tree(&elsewhere).keys().collect::<Vec<_>>()
    );
}

/// Row 6: OUT written through a missing folder of IN and `..` creates nothing in IN.
#[test]
fn output_through_dotdot_creates_nothing_in_the_input() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let before = tree(&input);
    let output = input.join("newdir/../../out");
    anonymize(&policy, &input, &output, &["--seed", "7"])
        .assert()
        .code(ok());
    assert!(!input.join("newdir").exists(), "IN/newdir was created");
    assert_eq!(tree(&input), before);
    assert_eq!(tree(&temp.path().join("out")).len(), 2);
}

/// Row 7: the report and run.json are 0600 whatever the umask; outputs follow the umask.
#[test]
fn private_files_are_0600_and_outputs_follow_the_umask() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let run = |umask: &str, output: &Path, extra: &str| {
        let script = format!(
            "umask {umask}; exec \"$0\" anonymize --quiet --policy \"$1\" {extra} \"$2\" \"$3\""
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_boomerang"))
            .arg(&policy)
            .arg(&input)
            .arg(output)
            .timeout(Duration::from_secs(300))
            .assert()
            .code(ok());
    };
    let output = temp.path().join("out");
    run("022", &output, "--seed 7");
    assert_eq!(mode(&report_path(&output)), 0o600, "report");
    assert_eq!(mode(&run_json_path(&output)), 0o600, "run.json");
    let outputs: Vec<PathBuf> = tree(&output).into_keys().collect();
    assert_eq!(outputs.len(), 2);
    for relative in &outputs {
        let bytes = std::fs::read(output.join(relative)).unwrap();
        assert_eq!(png_chunks(&bytes)[0], "IHDR");
        assert_eq!(
            mode(&output.join(relative)),
            0o644,
            "{}",
            relative.display()
        );
    }

    // A resume that drops a row rewrites the report: still 0600.
    std::fs::remove_dir_all(output.join("b")).unwrap();
    run("022", &output, "--resume");
    assert_eq!(mode(&report_path(&output)), 0o600, "rewritten report");
    assert_eq!(mode(&run_json_path(&output)), 0o600, "rewritten run.json");

    let open = temp.path().join("open");
    run("000", &open, "--seed 7");
    assert_eq!(mode(&report_path(&open)), 0o600, "report under umask 000");
    assert_eq!(
        mode(&run_json_path(&open)),
        0o600,
        "run.json under umask 000"
    );
}

/// Row 8: a FIFO (or anything not a regular file) as the report or run.json is refused at once.
#[test]
fn fifo_report_or_run_json_is_refused_without_hanging() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);

    let fresh = temp.path().join("fresh");
    mkfifo(&run_json_path(&fresh));
    anonymize(&policy, &input, &fresh, &["--seed", "1"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("regular file"));

    for (name, fifo) in [("report", "report.csv"), ("record", "run.json")] {
        let output = temp.path().join(name);
        mkfifo(&sibling(&output, fifo));
        anonymize(&policy, &input, &output, &["--resume"])
            .timeout(Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(predicate::str::contains("regular file"));
    }
}

#[test]
fn resume_never_removes_a_file_outside_out_that_a_report_row_names() {
    let temp = tempfile::tempdir().unwrap();
    let (input, policy, output) = finished_run(temp.path());
    let victim = temp.path().join("victim.png");
    std::fs::write(&victim, b"not boomerang's").unwrap();
    // A report whose row points its output outside OUT, with a valid chain.
    let report = report_path(&output);
    let mut rows = boomerang::records::report::verify(&report).unwrap();
    let row = rows.iter_mut().find(|r| r.input_path == "a/1.jpg").unwrap();
    assert!(!row.output_path.is_empty(), "{row:?}");
    row.output_path = "../victim.png".into();
    row.output_sha256 = common::sha(b"not boomerang's");
    std::fs::remove_file(&report).unwrap();
    let mut writer = boomerang::records::report::ReportWriter::create(&report, false).unwrap();
    for row in &rows {
        writer.append(row).unwrap();
    }
    drop(writer);
    // The input changed since its row: resume redoes it and removes the row's old output.
    let mut bytes = std::fs::read(input.join("a/1.jpg")).unwrap();
    bytes.extend_from_slice(b"changed");
    std::fs::write(input.join("a/1.jpg"), bytes).unwrap();
    anonymize(&policy, &input, &output, &["--resume"])
        .assert()
        .code(ok());
    assert_eq!(std::fs::read(&victim).unwrap(), b"not boomerang's");
}
