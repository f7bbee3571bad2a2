//! Face certification against the committed models and public-domain fixtures, checked against
//! the Python onnxruntime references written by tools/face_fixtures.py.
//!
//! Needs ONNX Runtime (ORT_DYLIB_PATH, boomerang's cache or python3's onnxruntime package).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use boomerang::certify::detector::{BoundingBox, DetectorConfig, FaceDetector};
use boomerang::certify::embedder::Embedder;
use boomerang::certify::metric::{Embedding, Metric};
use boomerang::certify::spec::EmbedderSpec;
use boomerang::certify::{reid, CertificateKind, Certifier, FaceAnalysis, Subject, Verdict};
use boomerang::commands::score::{render, run, score, ScoreConfig};
use boomerang::io::dataset::load_image;
use boomerang::io::runtime::{self, Device, Runtime, RuntimeConfig, SessionOptions};
use image::imageops::{self, FilterType};
use serde_json::Value;

const PORTRAITS: [&str; 6] = [
    "obama",
    "obama2",
    "obama3",
    "obama-partial",
    "biden",
    "astronaut",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/faces").join(name)
}

fn dlib_spec() -> PathBuf {
    root().join("models/dlib-face/embedder.toml")
}

fn alt_spec() -> PathBuf {
    fixture("embedder-alt.toml")
}

fn detector_model() -> PathBuf {
    root().join("models/face-detector/blazeface-full-range.onnx")
}

/// The shipped detector, tiled as certification runs it.
fn detector() -> FaceDetector {
    FaceDetector::load(
        rt(),
        &detector_model(),
        &options(),
        DetectorConfig::default(),
    )
    .unwrap()
}

fn rt() -> &'static Runtime {
    runtime::init(None).unwrap()
}

fn options() -> SessionOptions {
    SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    }
}

fn reference() -> &'static Value {
    static REFERENCE: OnceLock<Value> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap()
    })
}

/// Whose face a fixture shows: the obama* fixtures are one person, the others one photo each.
fn person(name: &'static str) -> &'static str {
    if name.starts_with("obama") {
        "obama"
    } else {
        name
    }
}

fn analyses(spec: &Path) -> Vec<(&'static str, FaceAnalysis)> {
    let mut certifier = Certifier::load(rt(), spec, &detector_model(), &options()).unwrap();
    PORTRAITS
        .iter()
        .map(|name| {
            let image = load_image(&fixture(&format!("{name}.jpg"))).unwrap().image;
            (*name, certifier.analyze(&image).unwrap())
        })
        .collect()
}

#[test]
fn detector_finds_one_face_per_portrait_and_none_in_coffee_like_the_python_reference() {
    let mut detector = detector();
    for name in PORTRAITS
        .iter()
        .map(|p| format!("{p}.jpg"))
        .chain(["coffee.jpg".to_string()])
    {
        let image = load_image(&fixture(&name)).unwrap().image.to_rgb8();
        let faces = detector.detect(&image).unwrap();
        let expected = reference()["detections"][&name].as_array().unwrap();
        let want = if name == "coffee.jpg" { 0 } else { 1 };
        assert_eq!(faces.len(), want, "{name}: {faces:?}");
        assert_eq!(expected.len(), want, "{name}: python reference");
        for (face, reference) in faces.iter().zip(expected) {
            // Rust and PIL decode the JPEG and resize to 128 px slightly differently: allow 2% of
            // the image for positions and 0.03 for the score.
            let tolerance = 0.02 * image.width().max(image.height()) as f32;
            let score = reference["score"].as_f64().unwrap() as f32;
            assert!(
                (face.score - score).abs() < 0.03,
                "{name}: score {} vs {score}",
                face.score
            );
            let b = &reference["box"];
            for (got, i) in [face.bbox.x0, face.bbox.y0, face.bbox.x1, face.bbox.y1]
                .iter()
                .zip(0..)
            {
                let want = b[i].as_f64().unwrap() as f32;
                assert!(
                    (got - want).abs() < tolerance,
                    "{name}: box[{i}] {got} vs {want}"
                );
            }
            for (k, point) in face.keypoints.iter().enumerate() {
                let want = &reference["keypoints"][k];
                let (wx, wy) = (
                    want[0].as_f64().unwrap() as f32,
                    want[1].as_f64().unwrap() as f32,
                );
                assert!(
                    (point.x - wx).abs() < tolerance && (point.y - wy).abs() < tolerance,
                    "{name}: keypoint {k} {point:?} vs ({wx}, {wy})"
                );
            }
            // The subject's right eye is on the image's left in these upright portraits.
            assert!(face.keypoints[0].x < face.keypoints[1].x, "{name}");
        }
    }
}

/// Faces 5% and 8% as wide as a 1600x1200 picture's longer side (80 and 128 px) are found, once,
/// where they were pasted. The former short-range detector, which saw the whole picture in
/// 128 px, missed both; full range alone finds the 8% face but needs the tiles for the 5% one
/// (`cargo bench --bench detector_recall`).
#[test]
fn small_faces_in_a_large_picture_are_found_where_they_were_pasted() {
    let mut detector = detector();
    let portrait = load_image(&fixture("biden.jpg")).unwrap().image.to_rgb8();
    let b = &reference()["detections"]["biden.jpg"][0]["box"];
    let b: Vec<f32> = (0..4).map(|i| b[i].as_f64().unwrap() as f32).collect();
    for (size, (x, y)) in [(0.05, (230, 170)), (0.08, (1100, 700))] {
        let scale = size * 1600.0 / (b[2] - b[0]);
        let small = imageops::resize(
            &portrait,
            (portrait.width() as f32 * scale).round() as u32,
            (portrait.height() as f32 * scale).round() as u32,
            FilterType::Triangle,
        );
        let mut canvas = image::RgbImage::from_pixel(1600, 1200, image::Rgb([128, 128, 128]));
        imageops::replace(&mut canvas, &small, x, y);
        let faces = detector.detect(&canvas).unwrap();
        assert_eq!(faces.len(), 1, "{size}: {faces:?}");
        let at = |v: f32, offset: i64| v * scale + offset as f32;
        let truth = BoundingBox {
            x0: at(b[0], x),
            y0: at(b[1], y),
            x1: at(b[2], x),
            y1: at(b[3], y),
        };
        assert!(
            faces[0].bbox.iou(&truth) > 0.6,
            "{size}: {faces:?} vs {truth:?}"
        );
    }
}

/// A graph that is not BlazeFace (here the embedder: NCHW 150x150 input) is refused on load,
/// naming the file, instead of being decoded with the wrong anchors.
#[test]
fn a_graph_of_another_shape_is_refused_as_a_detector() {
    let embedder = root().join("models/dlib-face/dlib-face-resnet29.onnx");
    let err = FaceDetector::load(rt(), &embedder, &options(), DetectorConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("dlib-face-resnet29.onnx") && err.contains("128 or 192"),
        "{err}"
    );
}

/// Embedding of every committed chip under both specs (one ONNX file) equals python
/// onnxruntime's within 1e-4: the spec alone decides channel order, normalization and layout.
#[test]
fn chip_embeddings_match_the_python_reference_for_both_specs_over_one_model() {
    for (key, spec_path) in [("dlib", dlib_spec()), ("alt", alt_spec())] {
        let spec = EmbedderSpec::load(&spec_path).unwrap();
        let mut embedder = Embedder::load(rt(), spec, &options()).unwrap();
        let references = reference()["embeddings"][key].as_object().unwrap();
        assert_eq!(references.len(), PORTRAITS.len());
        for (chip_name, want) in references {
            let chip = image::open(fixture(chip_name)).unwrap().to_rgb8();
            let got = embedder.embed(&chip).unwrap();
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got.len(), 128);
            let worst = got
                .values()
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{key} {chip_name}: max abs diff {worst}");
        }
    }
}

#[test]
fn every_same_person_pair_is_closer_than_every_different_person_pair() {
    let all = analyses(&dlib_spec());
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for (i, (a, fa)) in all.iter().enumerate() {
        assert_eq!(fa.faces.len(), 1, "{a}");
        assert!(fa.whole_image.is_none());
        for (b, fb) in &all[i + 1..] {
            let d = Metric::Euclidean
                .distance(&fa.faces[0].embedding, &fb.faces[0].embedding)
                .unwrap();
            if person(a) == person(b) {
                same.push((d, *a, *b));
            } else {
                different.push((d, *a, *b));
            }
        }
    }
    let farthest_same = same
        .iter()
        .fold((0.0f32, "", ""), |m, p| if p.0 > m.0 { *p } else { m });
    let closest_different =
        different
            .iter()
            .fold((f32::MAX, "", ""), |m, p| if p.0 < m.0 { *p } else { m });
    eprintln!("same person: {same:?}\ndifferent people: {different:?}");
    assert_eq!(same.len(), 6);
    assert!(
        farthest_same.0 < closest_different.0,
        "{farthest_same:?} vs {closest_different:?}"
    );
    // dlib's operating point separates them too.
    assert!(
        farthest_same.0 < 0.6 && closest_different.0 > 0.6,
        "{farthest_same:?} {closest_different:?}"
    );
}

/// The Rust detector + alignment lands close to the embedding of the face aligned by the Python
/// reference on the tflite detector's eyes (tools/face_check_tflite.py). The committed chips
/// were aligned on the former short-range detector's eyes, 1-5 px away: 0.10-0.16 from these.
#[test]
fn rust_alignment_agrees_with_the_reference_alignment() {
    let references = reference()["aligned-embeddings"]["dlib"]
        .as_object()
        .unwrap();
    for (name, analysis) in analyses(&dlib_spec()) {
        let want = references[&format!("{name}.jpg")].as_array().unwrap();
        let want =
            Embedding::new(want.iter().map(|v| v.as_f64().unwrap() as f32).collect()).unwrap();
        let d = Metric::Euclidean
            .distance(&analysis.faces[0].embedding, &want)
            .unwrap();
        assert!(d < 0.15, "{name}: {d} from the reference chip's embedding");
    }
}

#[test]
fn a_second_spec_changes_metric_and_verdicts_without_code() {
    let mut certifier = Certifier::load(rt(), &alt_spec(), &detector_model(), &options()).unwrap();
    assert_eq!(certifier.spec().metric, Metric::Cosine);
    let obama = certifier
        .analyze(&load_image(&fixture("obama.jpg")).unwrap().image)
        .unwrap();
    let obama2 = certifier
        .analyze(&load_image(&fixture("obama2.jpg")).unwrap().image)
        .unwrap();
    let c = certifier.compare(&obama, &obama2).unwrap();
    assert_eq!(c.metric, Metric::Cosine);
    let similarity = c.similarity.unwrap();
    let distance = c.distance.unwrap();
    assert!((similarity - (1.0 - distance)).abs() < 1e-6 && similarity > 0.0 && similarity < 1.0);
    let verdict = Verdict::new(certifier.operating_point(c.certificate, None).unwrap(), &c);
    assert_eq!(verdict.operating_point, "test-only");
    assert_eq!(verdict.same_identity, similarity >= 0.9);
    assert!(
        certifier
            .operating_point(c.certificate, Some("same-person"))
            .is_err(),
        "operating points come from the spec"
    );
}

#[test]
fn a_face_the_output_lost_is_never_compared_with_a_whole_image() {
    let mut certifier = Certifier::load(rt(), &dlib_spec(), &detector_model(), &options()).unwrap();
    let coffee_image = load_image(&fixture("coffee.jpg")).unwrap().image;
    let obama_image = load_image(&fixture("obama.jpg")).unwrap().image;
    let obama = certifier.analyze(&obama_image).unwrap();
    // Obama "anonymized" into a coffee cup: his face is lost, nothing was shown different.
    let coffee_out = certifier.analyze_output(&coffee_image, &obama).unwrap();
    assert!(coffee_out.faces.is_empty());
    assert!(
        coffee_out.whole_image.is_none(),
        "no whole-image embedding is needed"
    );
    let c = certifier.compare(&obama, &coffee_out).unwrap();
    assert_eq!(c.certificate, CertificateKind::FaceLost);
    assert_eq!((c.faces_in, c.faces_out, c.distance), (1, 0, None));
    let point = certifier.operating_point(c.certificate, None).unwrap();
    assert!(!Verdict::new(point, &c).same_identity);
    // The other way round the input has no face: a whole-image comparison, even though the
    // output shows one.
    let coffee = certifier.analyze(&coffee_image).unwrap();
    assert_eq!(coffee.whole_image.as_ref().unwrap().len(), 128);
    let obama_out = certifier.analyze_output(&obama_image, &coffee).unwrap();
    assert!(obama_out.whole_image.is_some());
    let c = certifier.compare(&coffee, &obama_out).unwrap();
    assert_eq!(c.certificate, CertificateKind::WholeImage);
    assert_eq!(c.closest.unwrap().output, Subject::WholeImage);
}

#[test]
fn several_faces_in_one_image_are_each_matched() {
    // Obama and Biden side by side, compared with Biden alone: Obama's face has no counterpart
    // (lost), and Biden's face, elsewhere in the frame, is still compared with both.
    let obama = load_image(&fixture("obama.jpg")).unwrap().image.to_rgb8();
    let biden = load_image(&fixture("biden.jpg")).unwrap().image.to_rgb8();
    let h = obama.height().max(biden.height());
    let mut both = image::RgbImage::new(obama.width() + biden.width(), h);
    imageops::replace(&mut both, &obama, 0, 0);
    imageops::replace(&mut both, &biden, i64::from(obama.width()), 0);
    let mut certifier = Certifier::load(rt(), &dlib_spec(), &detector_model(), &options()).unwrap();
    let pair = certifier
        .analyze(&image::DynamicImage::ImageRgb8(both.clone()))
        .unwrap();
    assert_eq!(
        pair.faces.len(),
        2,
        "{:?}",
        pair.faces.iter().map(|f| f.bbox).collect::<Vec<_>>()
    );
    let biden_face = if pair.faces[0].bbox.x0 > obama.width() as f32 {
        0
    } else {
        1
    };
    let alone = certifier
        .analyze(&image::DynamicImage::ImageRgb8(biden))
        .unwrap();
    let c = certifier.compare(&pair, &alone).unwrap();
    assert_eq!(c.certificate, CertificateKind::FaceLost);
    assert_eq!(c.correspondences.len(), 2);
    assert_eq!(c.correspondences[1 - biden_face].output, None);
    assert_eq!(c.closest.unwrap().input, Subject::Face(biden_face));
    let distance = c.distance.unwrap();
    assert!(distance < 0.3, "same photo of Biden: {distance}");
    // The same two faces at the same places: a face certificate, each face paired with itself.
    let again = certifier
        .analyze(&image::DynamicImage::ImageRgb8(both))
        .unwrap();
    let c = certifier.compare(&pair, &again).unwrap();
    assert_eq!(c.certificate, CertificateKind::Face);
    for pair in &c.correspondences {
        assert_eq!(pair.output, Some(pair.input));
        assert!(pair.iou > 0.99 && pair.distance.unwrap() < 1e-4, "{pair:?}");
    }
}

/// The 100 LFW faces of scikit-image, each tile resized to the embedder's chip.
fn lfw_embeddings() -> Vec<Embedding> {
    let mosaic = image::open(fixture("lfw-faces.png")).unwrap().to_rgb8();
    let spec = EmbedderSpec::load(&dlib_spec()).unwrap();
    let [w, h] = spec.input_size;
    let mut embedder = Embedder::load(rt(), spec, &options()).unwrap();
    (0..100)
        .map(|i| {
            let tile = imageops::crop_imm(&mosaic, (i % 10) * 25, (i / 10) * 25, 25, 25).to_image();
            embedder
                .embed(&imageops::resize(&tile, w, h, FilterType::Triangle))
                .unwrap()
        })
        .collect()
}

#[test]
fn reid_rate_is_one_for_identical_probes_and_about_chance_for_unrelated_ones() {
    let faces = lfw_embeddings();
    let (gallery, others) = faces.split_at(50);
    let identical = reid::top1_rate(Metric::Euclidean, gallery, gallery).unwrap();
    assert_eq!(identical.top1_rate, 1.0);
    assert!(identical.ranks.iter().all(|&r| r == 1));
    // Probe i is another person's face, claimed to come from gallery entry i: a matcher can only
    // guess, 1 in 50.
    let unrelated = reid::top1_rate(Metric::Euclidean, gallery, others).unwrap();
    assert_eq!(unrelated.chance, 0.02);
    let mean_rank = unrelated.ranks.iter().sum::<usize>() as f64 / 50.0;
    eprintln!(
        "unrelated: top-1 {} mean rank {mean_rank}",
        unrelated.top1_rate
    );
    assert!(unrelated.top1_rate <= 0.1, "{unrelated:?}");
    assert!(
        (15.0..=36.0).contains(&mean_rank),
        "mean rank {mean_rank}, chance 25.5"
    );
}

/// `boomerang score A B` with the dlib embedder on the CPU.
fn score_config(image_a: PathBuf, image_b: PathBuf) -> ScoreConfig {
    ScoreConfig {
        image_a,
        image_b,
        embedder: "dlib-face".to_string(),
        operating_point: None,
        detector: None,
        policy: None,
        level: None,
        feature_embedder: None,
        json: false,
        runtime: RuntimeConfig {
            onnxruntime: None,
            session: SessionOptions {
                device: Device::Cpu,
                threads: 1,
                ..SessionOptions::default()
            },
            more_devices: Vec::new(),
        },
    }
}

#[test]
fn score_command_reports_same_and_different_identity() {
    let args = |a: &str, b: &str| score_config(fixture(a), fixture(b));
    let same = score(&args("obama.jpg", "obama2.jpg")).unwrap();
    let text = render(&same);
    eprintln!("{text}");
    assert_eq!(same.verdict_text, "same identity");
    assert!(
        text.contains("verdict: same identity") && text.contains("same-person (distance < 0.6)"),
        "{text}"
    );
    assert!(text.contains("face #0: box"), "{text}");
    let different = score(&args("obama.jpg", "biden.jpg")).unwrap();
    eprintln!("{}", render(&different));
    // Two portraits: Biden's face sits where Obama's was, a face-to-face comparison.
    assert_eq!(different.certificate, CertificateKind::Face);
    assert!(different.certified);
    assert_eq!(different.verdict_text, "different identity");
    assert!(different.comparison.distance.unwrap() > 0.6);
    let json = serde_json::to_value(&different).unwrap();
    assert_eq!(json["verdict"]["same_identity"], Value::Bool(false));
    assert_eq!(json["image_a"]["faces"].as_array().unwrap().len(), 1);
    assert!(json["comparison"]["distance"].as_f64().unwrap() > 0.6);

    let faceless = score(&args("coffee.jpg", "obama.jpg")).unwrap();
    assert!(render(&faceless).contains("no face found"));
    // A faceless A is a whole-image comparison: never certified through the face embedder...
    assert_eq!(faceless.certificate, CertificateKind::WholeImage);
    assert!(!faceless.certified);
    // ...and judged by a whole-image embedder when one is named.
    let featured = score(&ScoreConfig {
        feature_embedder: Some(
            root()
                .join("models/efficientnet-lite0/embedder.toml")
                .display()
                .to_string(),
        ),
        ..args("coffee.jpg", "obama.jpg")
    })
    .unwrap();
    assert_eq!(featured.comparison.metric, Metric::Cosine);
    assert!(featured.certified, "{}", render(&featured));
    assert_eq!(featured.verdict_text, "whole images differ (no face in A)");
    assert!(run(&ScoreConfig {
        json: true,
        ..args("obama.jpg", "obama3.jpg")
    })
    .is_ok());
    let unknown = ScoreConfig {
        operating_point: Some("nope".to_string()),
        ..args("obama.jpg", "obama2.jpg")
    };
    let err = run(&unknown).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("same-person"), "{err}");
}

/// obama.jpg as a phone stores a photo taken sideways: pixels turned a quarter left, and EXIF
/// Orientation 6 (rotate 90 clockwise to view), in a PNG eXIf chunk.
fn sideways_photo(dir: &Path) -> PathBuf {
    let upright = load_image(&fixture("obama.jpg")).unwrap().image;
    let path = dir.join("sideways.png");
    std::fs::write(&path, common::png_with_orientation(&upright.rotate270(), 6)).unwrap();
    path
}

#[test]
fn score_sees_a_sideways_phone_photo_upright_as_anonymize_does() {
    let dir = tempfile::tempdir().unwrap();
    let sideways = sideways_photo(dir.path());
    let loaded = load_image(&sideways).unwrap();
    let upright = load_image(&fixture("obama.jpg")).unwrap();
    assert_eq!(loaded.orientation, image::metadata::Orientation::Rotate90);
    assert_eq!(loaded.image.to_rgb8(), upright.image.to_rgb8());

    // The face is found upright, paired with the upright file's face at the same place:
    // distance 0, a face comparison, same identity.
    let report = score(&score_config(sideways, fixture("obama.jpg"))).unwrap();
    let a = &report.image_a.analysis;
    assert_eq!(
        (a.width, a.height),
        (upright.image.width(), upright.image.height())
    );
    assert_eq!(a.faces.len(), 1);
    assert_eq!(a, &report.image_b.analysis);
    assert_eq!(report.comparison.distance, Some(0.0));
    assert_eq!(report.certificate, CertificateKind::Face);
    assert!(!report.certified);
    assert_eq!(report.verdict_text, "same identity");
}

#[test]
fn score_cli_runs_on_a_sideways_photo_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = sideways_photo(dir.path());
    let output = assert_cmd::Command::cargo_bin("boomerang")
        .unwrap()
        .args(["score", "--threads", "1", "--json"])
        .arg(&rotated)
        .arg(fixture("obama.jpg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["image_a"]["width"], 420);
    assert_eq!(report["image_a"]["height"], 350);
    assert_eq!(report["verdict"]["same_identity"], Value::Bool(true));
    assert_eq!(report["certificate"], "face");
    assert_eq!(report["certified"], Value::Bool(false));

    // A file that is not an image fails with its path and the same reason anonymize reports.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-an-image.jpg");
    std::fs::write(&bad, "plain text").unwrap();
    let output = assert_cmd::Command::cargo_bin("boomerang")
        .unwrap()
        .args(["score", "--threads", "1"])
        .arg(&bad)
        .arg(&rotated)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("not-an-image.jpg") && stderr.contains("not a recognised image"),
        "{stderr}"
    );
}

/// The reviewer's case of issue 11: a Gaussian blur (sigma 3) of the astronaut is the same
/// person to anyone; it used to be certified "different identity" because the blurred face was
/// not found and the whole image stood in for it.
#[test]
fn a_blurred_copy_of_a_face_is_never_certified() {
    let dir = tempfile::tempdir().unwrap();
    let astronaut = root().join("examples/astronaut.png");
    let blurred = dir.path().join("blurred.png");
    load_image(&astronaut)
        .unwrap()
        .image
        .blur(3.0)
        .save(&blurred)
        .unwrap();
    // Judged as the shipped policy judges: dlib, with MobileFaceNet's second opinion.
    let report = score(&ScoreConfig {
        policy: Some(root().join("policies/default.toml")),
        ..score_config(astronaut, blurred)
    })
    .unwrap();
    eprintln!("{}", render(&report));
    assert!(!report.certified, "{}", render(&report));
    assert_ne!(report.verdict_text, "different identity");
}

/// `embedder-alt.toml` as a temp file pinning the detector by `detector_sha256`.
fn alt_spec_pinning_detector(dir: &Path, detector_sha256: &str) -> PathBuf {
    let text = std::fs::read_to_string(alt_spec()).unwrap();
    let onnx = root().join("models/dlib-face/dlib-face-resnet29.onnx");
    let pinned = text
        .replace(
            "onnx = \"../../../models/dlib-face/dlib-face-resnet29.onnx\"",
            &format!("onnx = \"{}\"", onnx.display()),
        )
        .replace(
            "[alignment]",
            &format!(
                "detector = \"{}\"\ndetector-sha256 = \"{detector_sha256}\"\n\n[alignment]",
                detector_model().display()
            ),
        );
    assert_ne!(pinned, text);
    let path = dir.join("alt-pinned.toml");
    std::fs::write(&path, pinned).unwrap();
    path
}

#[test]
fn a_second_opinion_pinned_to_another_detector_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let load = || Certifier::load(rt(), &dlib_spec(), &detector_model(), &options()).unwrap();
    let other = alt_spec_pinning_detector(temp.path(), &"ab".repeat(32));
    let error = load()
        .with_second_opinion(rt(), &other, None, &options())
        .err()
        .expect("a second opinion pinned to another detector");
    let message = error.to_string();
    assert!(
        message.contains("pins detector-sha256 = abab") && message.contains("alt-pinned.toml"),
        "{message}"
    );
    let shipped = boomerang::io::hashing::sha256_file(&detector_model()).unwrap();
    let same = alt_spec_pinning_detector(temp.path(), &shipped);
    assert!(load()
        .with_second_opinion(rt(), &same, None, &options())
        .is_ok());
}
