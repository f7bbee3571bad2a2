//! Hardening of `anonymize` runs: setup checked before anything is created, output names taken
//! only when written, resume re-hashing inputs and keeping walk order, the pixel budget, and
//! smaller fixes (errors printed once, `--batch 0`, the runtime version, CSV formula cells).

mod common;

use common::{anonymize, crc32, demo_policy, faces, report_path, root, run_json_path, tree};

/// The demo policy with one attempt per image, and the given overrides.
fn write_policy(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let mut all = vec![("max-attempts = 3", "max-attempts = 1")];
    all.extend_from_slice(replacements);
    demo_policy(dir, &all)
}

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::records::report::{verify, ReportRow, Status};
use predicates::prelude::*;

fn small_png(width: u32, height: u32, shade: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, shade])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// A folder with one small face image.
fn one_image(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(faces().join("obama.jpg"), input.join("a.jpg")).unwrap();
    input
}

/// Runs a setup failure with and without --dry-run: exit 1, and nothing created.
fn assert_fails_creating_nothing(
    policy: &Path,
    input: &Path,
    output: &Path,
    extra: &[&str],
    message: &str,
) {
    for dry_run in [false, true] {
        let mut args = extra.to_vec();
        if dry_run {
            args.push("--dry-run");
        }
        anonymize(policy, input, output, &args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(message));
        assert!(!output.exists(), "OUT was created (dry run: {dry_run})");
        assert!(
            !report_path(output).exists(),
            "the report was created (dry run: {dry_run})"
        );
        assert!(
            !run_json_path(output).exists(),
            "run.json was created (dry run: {dry_run})"
        );
    }
}

#[test]
fn missing_operating_point_fails_before_anything_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let input = one_image(temp.path());
    let policy = write_policy(
        temp.path(),
        &[(
            "operating-point = \"same-person\"",
            "operating-point = \"no-such-point\"",
        )],
    );
    let output = temp.path().join("out");
    assert_fails_creating_nothing(
        &policy,
        &input,
        &output,
        &["--seed", "1", "--level", "low"],
        "no-such-point",
    );
}

#[test]
fn eta_out_of_range_fails_before_anything_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let input = one_image(temp.path());
    let policy = write_policy(temp.path(), &[("eta = 1.0", "eta = 1.5")]);
    let output = temp.path().join("out");
    assert_fails_creating_nothing(
        &policy,
        &input,
        &output,
        &["--seed", "1", "--level", "low"],
        "eta",
    );
}

#[test]
fn unavailable_gpu_provider_fails_before_anything_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let input = one_image(temp.path());
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    assert_fails_creating_nothing(
        &policy,
        &input,
        &output,
        &["--seed", "1", "--level", "low", "--device", "cuda"],
        "cuda",
    );
}

#[test]
fn model_sha256sums_mismatch_fails_before_anything_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let input = one_image(temp.path());
    // No pin in the policy: the folder's own SHA256SUMS is what refuses the edited file.
    let text = std::fs::read_to_string(write_policy(temp.path(), &[])).unwrap();
    let unpinned: String = text
        .lines()
        .filter(|line| !line.starts_with("manifest-sha256"))
        .map(|line| format!("{line}\n"))
        .collect();
    let policy = temp.path().join("unpinned.toml");
    std::fs::write(&policy, unpinned).unwrap();
    let model = temp.path().join("model");
    for (relative, bytes) in tree(&root().join("models/tiny-sd")) {
        std::fs::create_dir_all(model.join(&relative).parent().unwrap()).unwrap();
        std::fs::write(model.join(&relative), bytes).unwrap();
    }
    let mut config = std::fs::read(model.join("unet/config.json")).unwrap();
    config.push(b'\n');
    std::fs::write(model.join("unet/config.json"), config).unwrap();
    let output = temp.path().join("out");
    assert_fails_creating_nothing(
        &policy,
        &input,
        &output,
        &[
            "--seed",
            "1",
            "--level",
            "low",
            "--model",
            model.to_str().unwrap(),
        ],
        "SHA256SUMS",
    );
}

/// The output names are planned on the whole walk, never from how other images fare (so every
/// part of a sharded run agrees with an unsharded run): an input that errors keeps its name
/// unused, and a later input of the same name still gets the collision error row. (This used to
/// hand the name on to a.png, which made a part's names depend on another part's outcomes.)
#[test]
fn an_input_that_errors_keeps_its_output_name() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let jpeg = std::fs::read(faces().join("obama.jpg")).unwrap();
    std::fs::write(input.join("a.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(input.join("a.png"), small_png(40, 30, 9)).unwrap();
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "4", "--level", "low"])
        .assert()
        .code(3);
    let rows = verify(&report_path(&output)).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].input_path, "a.jpg");
    assert_eq!(rows[0].status, Status::Error, "{}", rows[0].reason);
    assert_eq!(rows[1].input_path, "a.png");
    assert_eq!(rows[1].status, Status::Error, "{}", rows[1].reason);
    assert!(
        rows[1].reason.contains("already written for a.jpg"),
        "{}",
        rows[1].reason
    );
    assert_eq!(rows[1].output_path, "");
    assert!(!output.join("a.png").exists());
}

#[test]
fn a_valid_image_left_out_by_a_name_clash_is_not_exit_0() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("Jane.jpg"), small_png(40, 30, 1)).unwrap();
    std::fs::write(input.join("Jane.png"), small_png(40, 30, 2)).unwrap();
    // A threshold everything passes: only the clash can make the run incomplete.
    let policy = write_policy(
        temp.path(),
        &[("operating-point = \"same-person\"", "threshold = 0.000001")],
    );
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "4", "--level", "low"])
        .assert()
        .code(3);
    let rows = verify(&report_path(&output)).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, Status::Certified, "{}", rows[0].reason);
    assert_eq!(rows[1].input_path, "Jane.png");
    assert_eq!(rows[1].status, Status::Error);
    assert!(rows[1].reason.contains("Jane.jpg"), "{}", rows[1].reason);
    assert!(rows[1].output_path.is_empty());
}

#[test]
fn resume_redoes_an_input_replaced_since_the_run() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.png"), small_png(40, 30, 1)).unwrap();
    std::fs::write(input.join("b.png"), small_png(40, 30, 2)).unwrap();
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "5", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let before = verify(&report_path(&output)).unwrap();
    let replacement = small_png(40, 30, 200);
    std::fs::write(input.join("a.png"), &replacement).unwrap();
    let assert = anonymize(&policy, &input, &output, &["--resume", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let printed = String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
        + &String::from_utf8_lossy(&assert.get_output().stdout);
    assert!(
        printed.contains("a.png") && printed.contains("changed"),
        "no note about the replaced input: {printed}"
    );
    let after = verify(&report_path(&output)).unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].input_path, "a.png");
    assert_eq!(
        after[0].input_sha256,
        hex::encode(boomerang::io::hashing::sha256_bytes(&replacement))
    );
    assert_ne!(after[0].input_sha256, before[0].input_sha256);
    assert_ne!(after[0].output_sha256, before[0].output_sha256);
    assert_eq!(
        hex::encode(boomerang::io::hashing::sha256_bytes(
            &std::fs::read(output.join("a.png")).unwrap()
        )),
        after[0].output_sha256
    );
    assert_eq!(after[1].input_sha256, before[1].input_sha256);
}

/// A row without the columns that depend on timing (and the chain, which covers them).
fn timeless(row: &ReportRow) -> ReportRow {
    ReportRow {
        milliseconds: None,
        chain: String::new(),
        ..row.clone()
    }
}

#[test]
fn resume_after_deleting_an_output_keeps_walk_order() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for k in 0..3u8 {
        std::fs::write(input.join(format!("{k}.png")), small_png(40, 30, k)).unwrap();
    }
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "6", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let reference_rows = verify(&report_path(&output)).unwrap();
    let reference_tree = tree(&output);
    std::fs::remove_file(output.join(&reference_rows[0].output_path)).unwrap();
    anonymize(&policy, &input, &output, &["--resume", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    assert_eq!(reference_tree, tree(&output), "outputs differ");
    let rows = verify(&report_path(&output)).unwrap();
    assert_eq!(
        rows.iter().map(timeless).collect::<Vec<_>>(),
        reference_rows.iter().map(timeless).collect::<Vec<_>>(),
        "resumed report rows differ from the uninterrupted run's (timing and chain aside)"
    );
}

/// A PNG declaring `width` x `height` RGB pixels whose data is cut short after the first bytes
/// of its first IDAT chunk: its header is all a budget check may read.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    // A zlib stream header and one stored block start: decoding would need far more.
    chunk(b"IDAT", &[0x78, 0x01, 0x00, 0x00, 0x80, 0xff, 0x7f]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn images_over_the_pixel_budget_are_refused_from_their_header() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // 11000 x 11000 is inside the decode limits (16384 a side) but 121 megapixels.
    std::fs::write(input.join("big.png"), png_header_only(11000, 11000)).unwrap();
    std::fs::write(input.join("small.png"), small_png(40, 30, 3)).unwrap();
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "8", "--level", "low"])
        .assert()
        .code(3);
    let rows = verify(&report_path(&output)).unwrap();
    assert_eq!(rows[0].input_path, "big.png");
    assert_eq!(rows[0].status, Status::Error);
    assert!(
        rows[0].reason.contains("megapixel") && rows[0].reason.contains("50"),
        "{}",
        rows[0].reason
    );
    assert_eq!((rows[0].width, rows[0].height), (Some(11000), Some(11000)));
    assert!(rows[0].output_path.is_empty());
    assert!(matches!(rows[1].status, Status::Certified | Status::Failed));

    // The budget is configurable: 1200 pixels are over 0.001 megapixels.
    let tight = temp.path().join("tight");
    anonymize(
        &policy,
        &input,
        &tight,
        &["--seed", "8", "--level", "low", "--max-megapixels", "0.001"],
    )
    .assert()
    .code(3);
    let rows = verify(&report_path(&tight)).unwrap();
    assert_eq!(rows[1].status, Status::Error, "{}", rows[1].reason);
    assert!(rows[1].reason.contains("megapixel"), "{}", rows[1].reason);

    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["anonymize", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--max-megapixels"))
        .stdout(predicate::str::contains("50"));
}

#[test]
fn resume_errors_are_printed_once() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(input.join(name), "not an image").unwrap();
    }
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "1", "--level", "low"])
        .assert()
        .code(0);
    // Edit the first row (not the last): resume must refuse the report.
    let report = report_path(&output);
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::write(&report, text.replacen("a.txt", "x.txt", 1)).unwrap();
    let assert = anonymize(&policy, &input, &output, &["--resume", "--level", "low"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(
        stderr.matches("does not follow").count(),
        1,
        "the error is printed more than once: {stderr}"
    );
}

#[test]
fn batch_zero_is_a_usage_error_for_every_command() {
    let temp = tempfile::tempdir().unwrap();
    let input = one_image(temp.path());
    let policy = write_policy(temp.path(), &[]);
    anonymize(&policy, &input, &temp.path().join("out"), &["--batch", "0"])
        .assert()
        .code(2);
    Command::cargo_bin("anonymize")
        .unwrap()
        .args(["--batch", "0"])
        .arg(&input)
        .arg(temp.path().join("out"))
        .assert()
        .code(2);
    let model = root().join("models/tiny-sd");
    for command in [
        vec!["sample", "--batch", "0", "-o", "x", "a.png"],
        vec!["augment", "-n", "1", "--batch", "0", "in", "out"],
    ] {
        Command::cargo_bin("boomerang")
            .unwrap()
            .args(&command)
            .arg("--model")
            .arg(&model)
            .assert()
            .code(2);
    }
    assert!(!temp.path().join("out").exists());
}

#[test]
fn run_json_records_the_loaded_onnxruntime_version() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), "not an image").unwrap();
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "1", "--level", "low"])
        .assert()
        .code(0);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_json_path(&output)).unwrap()).unwrap();
    let version = record["onnxruntime_version"].as_str().unwrap();
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "onnxruntime_version is `{version}`"
    );
}

#[test]
fn formula_like_names_are_neutralised_in_the_report() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let name = "=cmd|calc.png";
    std::fs::write(input.join(name), small_png(40, 30, 5)).unwrap();
    std::fs::write(input.join("@sum.txt"), "not an image").unwrap();
    let policy = write_policy(temp.path(), &[]);
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--seed", "2", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let report = report_path(&output);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(&report)
        .unwrap();
    let mut cells = Vec::new();
    for record in reader.records() {
        for cell in record.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "formula-like cell `{cell}` in {}",
                std::fs::read_to_string(&report).unwrap()
            );
            cells.push(cell.to_string());
        }
    }
    assert!(cells.contains(&format!("'{name}")), "{cells:?}");
    // Read back, the paths are the real ones: the audit and resume match them.
    let rows = verify(&report).unwrap();
    assert_eq!(rows[0].input_path, name);
    assert_eq!(rows[0].output_path, name);
    assert_eq!(rows[1].input_path, "@sum.txt");
    Command::cargo_bin("boomerang")
        .unwrap()
        .arg("audit")
        .arg(&report)
        .arg("--inputs")
        .arg(&input)
        .arg("--outputs")
        .arg(&output)
        .arg("--policy")
        .arg(&policy)
        .assert()
        .stdout(predicate::str::contains("verdict: clean"));
    let before = std::fs::read(&report).unwrap();
    anonymize(&policy, &input, &output, &["--resume", "--level", "low"])
        .assert()
        .code(predicate::in_iter([0, 3]));
    assert_eq!(
        before,
        std::fs::read(&report).unwrap(),
        "resume redid rows of a finished run"
    );
}
