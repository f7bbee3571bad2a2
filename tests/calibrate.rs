//! `boomerang calibrate` over identity sets built from the committed face fixtures: the portraits
//! (obama ×4, biden, astronaut), faceless coffee, and tiles of the LFW mosaic (25×25 crops,
//! each taken as its own identity) for a set with enough impostor pairs to resolve FMR 1e-2.
//!
//! Needs ONNX Runtime (ORT_DYLIB_PATH, boomerang's cache or python3's onnxruntime package).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::certify::spec::EmbedderSpec;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use serde_json::Value;

use common::{faces, root};

fn copy(from: &Path, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(from, dir.join(name)).unwrap();
}

/// obama/ ×4, biden/, astronaut/ (the portrait fixtures) in `dir`.
fn portraits(dir: &Path) {
    for name in ["obama", "obama2", "obama3", "obama-partial"] {
        copy(
            &faces().join(format!("{name}.jpg")),
            &dir.join("obama"),
            &format!("{name}.jpg"),
        );
    }
    copy(&faces().join("biden.jpg"), &dir.join("biden"), "biden.jpg");
    copy(
        &faces().join("astronaut.jpg"),
        &dir.join("astronaut"),
        "astronaut.jpg",
    );
}

/// `count` LFW mosaic tiles, each in its own folder `lfw-NN/`, scaled ×4 onto a grey canvas so
/// the detector sees a whole face with margin.
fn lfw_tiles(dir: &Path, count: u32) {
    let mosaic = image::open(faces().join("lfw-faces.png"))
        .unwrap()
        .to_rgb8();
    for k in 0..count {
        let (row, col) = (k / 10, k % 10);
        let tile = imageops::crop_imm(&mosaic, col * 25, row * 25, 25, 25).to_image();
        let tile = imageops::resize(&tile, 100, 100, FilterType::CatmullRom);
        let mut canvas = RgbImage::from_pixel(200, 200, Rgb([128, 128, 128]));
        imageops::overlay(&mut canvas, &tile, 50, 50);
        let folder = dir.join(format!("lfw-{k:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        canvas.save(folder.join("1.png")).unwrap();
    }
}

/// models/dlib-face/embedder.toml copied into `dir` with absolute model paths (comments kept).
fn spec_copy(dir: &Path) -> PathBuf {
    let models = root().join("models");
    let text = std::fs::read_to_string(models.join("dlib-face/embedder.toml"))
        .unwrap()
        .replace(
            "onnx = \"dlib-face-resnet29.onnx\"",
            &format!(
                "onnx = \"{}\"",
                models.join("dlib-face/dlib-face-resnet29.onnx").display()
            ),
        )
        .replace(
            "detector = \"../face-detector/",
            &format!("detector = \"{}/", models.join("face-detector").display()),
        );
    let path = dir.join("embedder.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn calibrate(identities: &Path, extra: &[&str]) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .arg("calibrate")
        .arg(identities)
        .args(["--threads", "1"])
        .args(extra);
    command
}

fn json_of(mut command: Command) -> Value {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr_of_failure(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "expected exit 1");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn genuine_pairs_are_closer_than_impostor_pairs_and_faceless_images_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids");
    portraits(&ids);
    copy(
        &faces().join("coffee.jpg"),
        &ids.join("coffee"),
        "coffee.jpg",
    );
    std::fs::write(ids.join("obama/notes.txt"), "not an image").unwrap();
    let report = json_of(calibrate(&ids, &["--json"]));

    assert_eq!(report["images"], 7);
    assert_eq!(report["left_out"][0]["path"], "coffee/coffee.jpg");
    assert_eq!(report["left_out"][0]["reason"], "no face found");
    assert_eq!(report["ignored"][0]["path"], "obama/notes.txt");
    // obama: 4 images, 6 genuine pairs; impostors 4×1 + 4×1 + 1×1.
    let (genuine, impostor) = (&report["genuine"], &report["impostor"]);
    assert_eq!(genuine["count"], 6);
    assert_eq!(impostor["count"], 9);
    let (g_max, i_min) = (
        genuine["max"].as_f64().unwrap(),
        impostor["min"].as_f64().unwrap(),
    );
    assert!(g_max < i_min, "genuine max {g_max} >= impostor min {i_min}");
    assert!(g_max < 0.6 && i_min > 0.6, "{g_max} {i_min}");
    // 9 impostor pairs resolve neither level: said, not guessed.
    for level in report["fmr_levels"].as_array().unwrap() {
        assert_eq!(level["threshold"]["status"], "too-few-impostor-pairs");
        assert_eq!(level["threshold"]["impostor_pairs"], 9);
    }
    let same_person = &report["spec_points"][0];
    assert_eq!(same_person["name"], "same-person");
    assert_eq!(same_person["rates"]["fmr"], 0.0);
    assert_eq!(same_person["rates"]["fnmr"], 0.0);
    assert_eq!(report["calibration_sha256"].as_str().unwrap().len(), 64);

    let text = calibrate(&ids, &[]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("FMR 1e-2: cannot be resolved on this set: 9 impostor pairs, at least 100"),
        "{text}"
    );
    assert!(
        text.contains("left out (not in any pair): coffee/coffee.jpg: no face found"),
        "{text}"
    );
}

#[test]
fn write_records_the_resolved_level_and_the_spec_reloads_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids");
    portraits(&ids);
    lfw_tiles(&ids, 30);
    let spec = spec_copy(dir.path());
    let spec_arg = spec.to_str().unwrap();
    let original = std::fs::read_to_string(&spec).unwrap();

    let report = json_of(calibrate(
        &ids,
        &["--embedder", spec_arg, "--json", "--write"],
    ));
    assert_eq!(report["written"], serde_json::json!(["fmr-1e-2"]));
    let pairs = report["impostor"]["count"].as_u64().unwrap();
    assert!((100..1000).contains(&pairs), "{pairs}");

    let written = std::fs::read_to_string(&spec).unwrap();
    assert!(written.starts_with(&original), "the original text is kept");
    let loaded = EmbedderSpec::load(&spec).unwrap();
    let point = loaded.operating_point(Some("fmr-1e-2")).unwrap();
    assert!(point.measured_fmr.unwrap() <= 0.01);
    assert_eq!(point.impostor_pairs, Some(pairs));
    assert_eq!(point.genuine_pairs, Some(6));
    assert_eq!(
        point.calibration_sha256.as_deref(),
        report["calibration_sha256"].as_str()
    );
    let level = &report["fmr_levels"][1]["threshold"];
    assert_eq!(level["status"], "resolved");
    assert_eq!(
        point.max_distance,
        level["max_distance"].as_f64().map(|d| d as f32)
    );
    assert!(loaded.operating_point(Some("fmr-1e-3")).is_err());
    // The default point is untouched.
    assert_eq!(
        loaded.operating_point(None).unwrap().max_distance,
        Some(0.6)
    );

    // The same name again: refused without --replace, the file unchanged.
    let err = stderr_of_failure(calibrate(&ids, &["--embedder", spec_arg, "--write"]));
    assert!(
        err.contains("already has an operating point `fmr-1e-2`") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), written);
    json_of(calibrate(
        &ids,
        &["--embedder", spec_arg, "--json", "--write", "--replace"],
    ));
    let replaced = EmbedderSpec::load(&spec).unwrap();
    assert_eq!(replaced.operating_points.len(), 2);
}

#[test]
fn write_with_nothing_resolvable_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids");
    portraits(&ids);
    let spec = spec_copy(dir.path());
    let before = std::fs::read(&spec).unwrap();
    let err = stderr_of_failure(calibrate(
        &ids,
        &["--embedder", spec.to_str().unwrap(), "--write"],
    ));
    assert!(
        err.contains("no FMR level could be resolved") && err.contains("9 impostor pairs"),
        "{err}"
    );
    assert_eq!(std::fs::read(&spec).unwrap(), before);

    // A detector other than the one the spec pins is refused for --write.
    let other = dir.path().join("other-detector.onnx");
    let mut bytes =
        std::fs::read(root().join("models/face-detector/blazeface-full-range.onnx")).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&other, bytes).unwrap();
    let err = stderr_of_failure(calibrate(
        &ids,
        &[
            "--embedder",
            spec.to_str().unwrap(),
            "--detector",
            other.to_str().unwrap(),
            "--write",
        ],
    ));
    assert!(err.contains("pins detector-sha256"), "{err}");
    assert_eq!(std::fs::read(&spec).unwrap(), before);
}

#[test]
fn unusable_sets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = stderr_of_failure(calibrate(&empty, &[]));
    assert!(
        err.contains("has no images in identity folders") && err.contains("one folder per"),
        "{err}"
    );

    let one = dir.path().join("one");
    copy(&faces().join("obama.jpg"), &one.join("obama"), "1.jpg");
    copy(&faces().join("obama2.jpg"), &one.join("obama"), "2.jpg");
    let err = stderr_of_failure(calibrate(&one, &[]));
    assert!(
        err.contains("one identity only (`obama`)") && err.contains("two identity folders"),
        "{err}"
    );

    // Two folders, but one has no face: no impostor pair.
    copy(&faces().join("coffee.jpg"), &one.join("coffee"), "1.jpg");
    let err = stderr_of_failure(calibrate(&one, &[]));
    assert!(err.contains("only 1 identity with a usable image"), "{err}");

    let broken = dir.path().join("broken");
    portraits(&broken);
    let bytes = std::fs::read(faces().join("biden.jpg")).unwrap();
    std::fs::write(broken.join("biden/cut.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    let err = stderr_of_failure(calibrate(&broken, &[]));
    assert!(
        err.contains("biden/cut.jpg")
            && err.contains("identity `biden`")
            && err.contains("Fix or remove the file"),
        "{err}"
    );

    let err = stderr_of_failure(calibrate(&dir.path().join("missing"), &[]));
    assert!(err.contains("is not a folder"), "{err}");
}
