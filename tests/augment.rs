//! `boomerang augment` on the bundled tiny model: N distinct samples per image in the same class
//! folders, byte-identical reruns, shared encoding equal to running each sample alone, strengths
//! assigned by sample index, resume after a crash, metadata stripped, exit codes.

mod common;

use common::{png_chunks, tree};

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::io::runtime::{self, SessionOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> PathBuf {
    root().join("models/tiny-sd")
}

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

/// A small ImageFolder dataset: two classes, a non-image file, and a JPEG carrying EXIF.
fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("cat")).unwrap();
    std::fs::create_dir_all(input.join("dog")).unwrap();
    let astronaut = image::open(root().join("examples/astronaut.png")).unwrap();
    astronaut
        .resize_exact(96, 64, image::imageops::FilterType::Triangle)
        .save(input.join("cat/one.png"))
        .unwrap();
    let coffee = image::open(root().join("examples/coffee.png")).unwrap();
    coffee
        .resize_exact(48, 40, image::imageops::FilterType::Triangle)
        .to_luma8()
        .save(input.join("dog/two.png"))
        .unwrap();
    std::fs::copy(
        root().join("tests/fixtures/bad_inputs/orientation6.jpg"),
        input.join("dog/exif.jpg"),
    )
    .unwrap();
    std::fs::write(input.join("labels.txt"), "cat\ndog\n").unwrap();
    input
}

fn augment(input: &Path, output: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    boomerang()
        .args(["augment", "--model"])
        .arg(model())
        .args(["--steps", "4", "--seed", "11"])
        .args(if extra.contains(&"-n") {
            &[][..]
        } else {
            &["-n", "3"][..]
        })
        .args(extra)
        .arg(input)
        .arg(output)
        .assert()
}

fn manifest_rows(output: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(output.join("augment.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn n_distinct_samples_per_image_in_class_folders_and_byte_identical_reruns() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let before = tree(&input);
    let first = temp.path().join("first");
    augment(&input, &first, &["--threads", "1"]).success();

    let files = tree(&first);
    let images: Vec<_> = files
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut expected = Vec::new();
    for (class, stem) in [("cat", "one"), ("dog", "exif"), ("dog", "two")] {
        expected.push(format!("{class}/{stem}.png"));
        for k in 0..3 {
            expected.push(format!("{class}/{stem}_aug{k}.png"));
        }
    }
    expected.sort();
    let mut images_sorted = images.clone();
    images_sorted.sort();
    assert_eq!(images_sorted, expected);

    for (class, stem, size) in [("cat", "one", (96, 64)), ("dog", "two", (48, 40))] {
        let original = std::fs::read(first.join(format!("{class}/{stem}.png"))).unwrap();
        let samples: Vec<Vec<u8>> = (0..3)
            .map(|k| std::fs::read(first.join(format!("{class}/{stem}_aug{k}.png"))).unwrap())
            .collect();
        for (i, a) in samples.iter().enumerate() {
            assert_ne!(a, &original, "{stem} sample {i} equals the original");
            for b in &samples[i + 1..] {
                assert_ne!(a, b, "two samples of {stem} are identical");
            }
            let decoded = image::load_from_memory(a).unwrap();
            assert_eq!((decoded.width(), decoded.height()), size);
        }
    }
    // The grayscale input stays grayscale.
    let gray = image::open(first.join("dog/two_aug0.png")).unwrap();
    assert_eq!(gray.color(), image::ColorType::L8);

    let rows = manifest_rows(&first);
    // 3 images x (original + 3 samples) + the skipped labels.txt
    assert_eq!(rows.len(), 13);
    assert!(rows
        .iter()
        .any(|r| &r[0] == "labels.txt" && &r[4] == "skipped"));
    for row in rows.iter().filter(|r| &r[4] == "ok") {
        let bytes = &files[Path::new(&row[2])];
        assert_eq!(row[3], hex::encode(sha2_digest(bytes)), "{}", &row[2]);
    }

    // Other threads and batching: the same bytes (manifest rows may come in another order).
    let second = temp.path().join("second");
    augment(&input, &second, &["--threads", "2", "--batch", "2"]).success();
    assert_same_outputs(&first, &second);
    assert_eq!(before, tree(&input), "the input folder changed");
}

/// Same files with the same bytes, and the same manifest rows in any order.
fn assert_same_outputs(a: &Path, b: &Path) {
    let (mut a, mut b) = (tree(a), tree(b));
    let rows_a = a.remove(Path::new("augment.csv")).unwrap();
    let rows_b = b.remove(Path::new("augment.csv")).unwrap();
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{} differs", path.display());
    }
    let sorted = |bytes: Vec<u8>| {
        let mut lines: Vec<String> = String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(rows_a),
        sorted(rows_b),
        "manifest rows differ or repeat"
    );
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    boomerang::io::hashing::sha256_bytes(bytes)
}

#[test]
fn a_shared_encoding_sample_is_byte_identical_to_the_sample_run_alone() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let out = temp.path().join("out");
    augment(&input, &out, &["--no-originals", "--batch", "3"]).success();

    // `boomerang sample --batch 1` encodes and runs every sample on its own, with the same seeds.
    let alone = temp.path().join("alone");
    boomerang()
        .args(["sample", "--model"])
        .arg(model())
        .args([
            "--steps", "4", "--seed", "11", "-n", "3", "--batch", "1", "-o",
        ])
        .arg(&alone)
        .arg(input.join("cat/one.png"))
        .arg(input.join("dog/two.png"))
        .assert()
        .success();
    for (class, stem) in [("cat", "one"), ("dog", "two")] {
        for k in 0..3 {
            assert_eq!(
                std::fs::read(out.join(format!("{class}/{stem}_aug{k}.png"))).unwrap(),
                std::fs::read(alone.join(format!("{stem}_{k}.png"))).unwrap(),
                "{stem} sample {k}"
            );
        }
    }
    assert!(
        !out.join("cat/one.png").exists(),
        "--no-originals wrote the original"
    );
}

#[test]
fn engine_shared_encoding_matches_separate_runs_exactly() {
    let runtime = runtime::init(None).unwrap();
    let mut engine = Engine::open(&model(), runtime, &SessionOptions::default()).unwrap();
    let image = image::open(root().join("examples/coffee.png")).unwrap();
    let (tensor, _) = boomerang::io::imageio::to_working_tensor(&image, 128);
    let settings = Settings {
        strength: 0.6,
        steps: 5,
        ..Settings::default()
    };
    let seeds: Vec<[u8; 32]> = (0..3u8).map(|k| [k; 32]).collect();

    let encoding = engine.encode(tensor.view()).unwrap();
    let (shared, _) = engine
        .run_encoded(&settings, &encoding.select(&[0, 0, 0]).unwrap(), &seeds)
        .unwrap();
    for (k, seed) in seeds.iter().enumerate() {
        let (alone, _) = engine.run(&settings, tensor.view(), &[*seed]).unwrap();
        // Every draw comes from the sample's own seed streams, and ONNX Runtime's CPU kernels
        // compute each batch row independently: the floats are exactly equal.
        assert_eq!(
            alone.images,
            shared.images.slice(ndarray::s![k..k + 1, .., .., ..]),
            "sample {k}"
        );
    }
    assert!(encoding.select(&[1]).is_err());
}

#[test]
fn strengths_cycle_over_sample_indices() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let out = temp.path().join("out");
    augment(
        &input,
        &out,
        &["--strengths", "0.25,0.75", "--no-originals"],
    )
    .success();
    let mut rows: Vec<(u32, f64, f64)> = manifest_rows(&out)
        .iter()
        .filter(|r| r[0] == *"cat/one.png")
        .map(|r| {
            (
                r[6].parse().unwrap(),
                r[7].parse().unwrap(),
                r[8].parse().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let strengths: Vec<(u32, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(strengths, [(0, 0.25), (1, 0.75), (2, 0.25)]);
    // Equal strengths start at the same timestep, the larger strength higher up.
    assert_eq!(rows[0].2, rows[2].2);
    assert!(rows[1].2 > rows[0].2, "{rows:?}");
    // Sample 1 is what `sample` makes at 0.75 for index 1.
    let alone = temp.path().join("alone");
    boomerang()
        .args(["sample", "--model"])
        .arg(model())
        .args([
            "--steps",
            "4",
            "--seed",
            "11",
            "-n",
            "2",
            "--strength",
            "0.75",
            "-o",
        ])
        .arg(&alone)
        .arg(input.join("cat/one.png"))
        .assert()
        .success();
    assert_eq!(
        std::fs::read(out.join("cat/one_aug1.png")).unwrap(),
        std::fs::read(alone.join("one_1.png")).unwrap()
    );
}

#[test]
fn resume_after_a_crash_matches_an_uninterrupted_run_without_duplicate_rows() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let whole = temp.path().join("whole");
    augment(&input, &whole, &[]).success();

    // A crash: the last row torn mid-write, one finished sample lost, one corrupted.
    let crashed = temp.path().join("crashed");
    augment(&input, &crashed, &[]).success();
    let manifest = crashed.join("augment.csv");
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() - 30]).unwrap();
    std::fs::remove_file(crashed.join("dog/two_aug1.png")).unwrap();
    std::fs::write(crashed.join("cat/one_aug2.png"), b"torn").unwrap();

    // Without --resume a non-empty OUT is refused.
    augment(&input, &crashed, &[])
        .code(1)
        .stderr(predicates::str::contains("--resume"));
    // Resumed without --seed: the manifest's run seed is used.
    boomerang()
        .args(["augment", "--model"])
        .arg(model())
        .args(["--steps", "4", "-n", "3", "--resume"])
        .arg(&input)
        .arg(&crashed)
        .assert()
        .success();
    assert_same_outputs(&whole, &crashed);

    // Resuming with another seed is refused.
    boomerang()
        .args(["augment", "--model"])
        .arg(model())
        .args(["--steps", "4", "-n", "3", "--resume", "--seed", "12"])
        .arg(&input)
        .arg(&crashed)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("resume with --seed 11"));
}

#[test]
fn metadata_is_stripped_and_bad_inputs_get_rows_and_exit_code_3() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    std::fs::write(input.join("cat/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = temp.path().join("out");
    augment(&input, &out, &["-n", "1"]).code(3);
    let rows = manifest_rows(&out);
    let broken: Vec<_> = rows.iter().filter(|r| &r[0] == "cat/broken.png").collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(&broken[0][4], "error");
    assert!(!broken[0][5].is_empty());

    // The EXIF-carrying JPEG's original and sample are plain PNGs: no metadata chunks.
    for name in ["dog/exif.png", "dog/exif_aug0.png"] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        let chunks = png_chunks(&bytes);
        for forbidden in ["eXIf", "tEXt", "iTXt", "zTXt", "iCCP", "tIME"] {
            assert!(
                !chunks.contains(&forbidden.to_string()),
                "{name} has {forbidden}"
            );
        }
    }
    // The original keeps the pixels exactly.
    let source = image::open(input.join("cat/one.png")).unwrap();
    let copy = image::open(out.join("cat/one.png")).unwrap();
    assert_eq!(source.to_rgb8(), copy.to_rgb8());
}

#[test]
fn unsafe_folders_and_bad_arguments_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let before = tree(&input);
    augment(&input, &input.join("aug"), &[])
        .code(1)
        .stderr(predicates::str::contains("inside"));
    augment(&input, &input, &[]).code(1);
    assert_eq!(before, tree(&input));
    // Usage errors (exit 2): no samples, a strength out of range, both strength options.
    let out = temp.path().join("out");
    augment(&input, &out, &["-n", "0"]).code(2);
    augment(&input, &out, &["--strengths", "0.2,1.5"]).code(2);
    augment(&input, &out, &["--strengths", "0.2", "--strength", "0.3"]).code(2);
    assert!(!out.exists());
}

/// The sampler with the tiny model, 1 sample, and `args` then IN and OUT.
fn augment_with(input: &Path, output: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    boomerang()
        .args(["augment", "--model"])
        .arg(model())
        .args(["--steps", "2", "-n", "1"])
        .args(args)
        .arg(input)
        .arg(output)
        .assert()
}

#[test]
fn out_through_a_new_folder_of_in_creates_nothing_in_in() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let before = tree(&input);
    // `IN/new/../../out` is `out` beside IN; `new` must not be created on the way.
    augment_with(&input, &input.join("new/../../out"), &["--seed", "1"]).success();
    assert!(!input.join("new").exists());
    assert_eq!(before, tree(&input));
    assert!(temp.path().join("out/augment.csv").is_file());
}

#[test]
fn refusals_come_before_anything_is_created_or_rewritten() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let out = temp.path().join("out");
    // A missing seed file is refused before OUT (and a header-only manifest) exists.
    let missing = temp.path().join("missing.secret");
    augment_with(&input, &out, &["--seed-file", missing.to_str().unwrap()])
        .failure()
        .stderr(predicates::str::contains("missing.secret"));
    assert!(!out.exists());

    // A resume refused for its seed leaves the manifest as it was (no row dropped).
    augment_with(&input, &out, &["--seed", "11"]).success();
    std::fs::remove_file(out.join("cat/one_aug0.png")).unwrap();
    let manifest = std::fs::read(out.join("augment.csv")).unwrap();
    augment_with(&input, &out, &["--resume", "--seed", "12"])
        .code(1)
        .stderr(predicates::str::contains("resume with --seed 11"));
    assert_eq!(std::fs::read(out.join("augment.csv")).unwrap(), manifest);
}

#[test]
fn resume_into_a_folder_without_this_commands_manifest_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let out = temp.path().join("out");
    std::fs::create_dir_all(out.join("cat")).unwrap();
    // A file of the user's that has an output's name, and another command's manifest.
    std::fs::write(out.join("cat/one_aug0.png"), b"mine").unwrap();
    std::fs::write(out.join("enhance.csv"), b"source\n").unwrap();
    augment_with(&input, &out, &["--resume", "--seed", "1"])
        .code(1)
        .stderr(predicates::str::contains("cannot resume"))
        .stderr(predicates::str::contains("no manifest"));
    assert_eq!(
        std::fs::read(out.join("cat/one_aug0.png")).unwrap(),
        b"mine"
    );
    assert!(!out.join("augment.csv").exists());
}

#[test]
fn a_locked_out_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let input = dataset(temp.path());
    let out = temp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Another run holds OUT (anonymize, augment and enhance all lock it).
    let held = std::fs::File::open(&out).unwrap();
    held.try_lock().unwrap();
    augment_with(&input, &out, &["--seed", "1"])
        .code(1)
        .stderr(predicates::str::contains("is locked"));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}
