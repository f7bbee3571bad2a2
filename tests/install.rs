//! What an installed boomerang offers beyond its commands: shell completions that complete, man
//! pages, and `doctor`, which says what is found and what is missing.

use std::process::Command as Process;

use assert_cmd::Command;
use predicates::prelude::*;

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

#[test]
fn bash_completes_anonymize_options() {
    let binary = assert_cmd::cargo::cargo_bin("boomerang");
    let script = format!(
        "source <('{}' completions bash)\n\
         COMP_WORDS=(boomerang anonymize --le); COMP_CWORD=2\n\
         COMP_LINE='boomerang anonymize --le'; COMP_POINT=${{#COMP_LINE}}\n\
         _boomerang boomerang --le anonymize\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        binary.display()
    );
    let output = Process::new("bash").args(["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let completed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(completed.trim(), "--level", "{completed}");
}

#[test]
fn man_pages_for_every_command() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("man1");
    boomerang().arg("man").arg(&dir).assert().success();
    let main = std::fs::read_to_string(dir.join("boomerang.1")).unwrap();
    assert!(main.contains(".TH boomerang"), "{main}");
    let anonymize = std::fs::read_to_string(dir.join("boomerang-anonymize.1")).unwrap();
    assert!(anonymize.contains("level"), "{anonymize}");
}

#[test]
fn doctor_reports_what_is_found_and_what_is_missing() {
    boomerang()
        .arg("doctor")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "ok       ONNX Runtime: 1.31.1 at ",
        ))
        .stdout(predicate::str::contains("ok       face detector: "))
        .stdout(predicate::str::contains("policy demo: "));
    // With an empty cache and nothing else to find, the runtime is missing, with its fix.
    let temp = tempfile::tempdir().unwrap();
    boomerang()
        .arg("doctor")
        .env("BOOMERANG_CACHE_DIR", temp.path())
        .env_remove("ORT_DYLIB_PATH")
        .env("PATH", "/nonexistent")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("missing  ONNX Runtime: "))
        .stdout(predicate::str::contains("boomerang fetch-onnxruntime"))
        .stdout(predicate::str::contains(
            "missing  ONNX Runtime GPU build (for --device cuda/tensorrt): run `boomerang fetch-onnxruntime --gpu`",
        ));
}

#[test]
fn the_shipped_policies_are_found_by_name_from_any_directory() {
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = temp.path().join("elsewhere");
    let input = elsewhere.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let faces = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces");
    std::fs::copy(faces.join("obama.jpg"), input.join("obama.jpg")).unwrap();
    boomerang()
        .current_dir(&elsewhere)
        .args([
            "anonymize",
            "--policy",
            "demo",
            "--level",
            "low",
            "--seed",
            "3",
        ])
        .args(["in", "out"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    boomerang()
        .current_dir(&elsewhere)
        .args([
            "audit",
            "out.report.csv",
            "--inputs",
            "in",
            "--outputs",
            "out",
        ])
        .args(["--policy", "demo", "--recompute", "1"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("verdict: clean"));
    boomerang()
        .current_dir(&elsewhere)
        .args(["anonymize", "--policy", "no-such-policy", "in", "out2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no policy named `no-such-policy`: looked at",
        ));
    assert!(!elsewhere.join("out2").exists());
}
