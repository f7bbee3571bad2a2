//! Several devices in one process (`--device cpu,cpu`): one worker per device, each with its own
//! sessions; no output depends on which worker took an image.

mod common;

use assert_cmd::Command;
use common::{anonymize, demo_policy, faces, report_path, root, tree};
use predicates::prelude::*;

#[test]
fn two_cpu_workers_give_the_bytes_of_one() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Faces (tiled: larger than the tiny model's 128 px), a faceless photo and a small image, so
    // both workers get work of every kind.
    for name in ["obama.jpg", "biden.jpg", "obama2.jpg"] {
        std::fs::copy(faces().join(name), input.join(name)).unwrap();
    }
    std::fs::copy(root().join("examples/coffee.png"), input.join("coffee.png")).unwrap();
    image::open(root().join("examples/astronaut.png"))
        .unwrap()
        .thumbnail(96, 96)
        .save(input.join("small.png"))
        .unwrap();
    let policy = demo_policy(temp.path(), &[]);
    let (one, two) = (temp.path().join("one"), temp.path().join("two"));
    for (output, device) in [(&one, "cpu"), (&two, "cpu,cpu")] {
        anonymize(
            &policy,
            &input,
            output,
            &["--seed", "3", "--threads", "1", "--device", device],
        )
        .assert()
        .code(predicate::in_iter([0, 3]));
    }
    assert_eq!(tree(&one), tree(&two));
    let rows = |output: &std::path::Path| {
        boomerang::records::report::verify(&report_path(output))
            .unwrap()
            .into_iter()
            .map(|row| (row.input_path, row.status, row.output_sha256, row.seed))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&one), rows(&two));
    let record = std::fs::read_to_string(common::run_json_path(&two)).unwrap();
    assert!(record.contains("\"cpu,cpu\""), "{record}");
}

#[test]
fn commands_of_one_worker_refuse_a_device_list() {
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--device", "cpu,cpu", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args(["-o", "unused"])
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`sample` runs on one device; several devices (one worker each) are for `anonymize`",
        ));
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--device", "cpu,gpu", "-o", "unused", "x.png"])
        .args(["--model", "unused"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown device `gpu`"));
}
