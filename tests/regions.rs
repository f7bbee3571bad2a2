//! `region = "faces"`: only the detected faces of a large photo are re-generated; every other
//! pixel of the output is the input's, byte for byte, and the audit re-runs it exactly.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{anonymize, demo_policy, faces, report_path};
use image::{GenericImageView, Rgb, RgbImage};
use predicates::prelude::*;

/// Where the face photo sits in the 3000 x 2000 input.
const FACE_AT: (u32, u32) = (1200, 700);

/// A 3000 x 2000 photo: a textured background with a 420 x 350 face photo pasted in.
fn large_photo(dir: &Path) -> (PathBuf, RgbImage, (u32, u32)) {
    let face = image::open(faces().join("obama.jpg")).unwrap().to_rgb8();
    let mut photo = RgbImage::from_fn(3000, 2000, |x, y| {
        Rgb([
            (x / 12 % 256) as u8,
            (y / 8 % 256) as u8,
            ((x + y) / 20 % 256) as u8,
        ])
    });
    image::imageops::replace(&mut photo, &face, FACE_AT.0.into(), FACE_AT.1.into());
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    photo.save(input.join("event.png")).unwrap();
    (input, photo, face.dimensions())
}

#[test]
fn only_the_faces_of_a_3000x2000_photo_change_and_the_audit_reruns_them() {
    let temp = tempfile::tempdir().unwrap();
    let (input, photo, (face_width, face_height)) = large_photo(temp.path());
    let policy = demo_policy(
        temp.path(),
        &[("[levels.medium]\n", "[levels.medium]\nregion = \"faces\"\n")],
    );
    let output = temp.path().join("out");
    anonymize(
        &policy,
        &input,
        &output,
        &["--level", "medium", "--seed", "5"],
    )
    .assert()
    .code(predicate::in_iter([0, 3]));
    let report = std::fs::read_to_string(report_path(&output)).unwrap();
    assert!(report.contains("event.png"), "{report}");
    // The level renames files: the output's name is in the report's third column.
    let row = report.lines().nth(1).expect("a row");
    let output_name = row.split(',').nth(2).expect("an output_path cell");
    let result = image::open(output.join(output_name))
        .unwrap_or_else(|error| panic!("no output ({error}); report:\n{report}"));
    assert_eq!(result.dimensions(), (3000, 2000));
    let result = result.to_rgb8();

    // A face region is the face box grown by half its longer side on every side, so it stays
    // within the pasted photo grown by its own size.
    let (x0, y0) = (
        FACE_AT.0.saturating_sub(face_width),
        FACE_AT.1.saturating_sub(face_height),
    );
    let (x1, y1) = (FACE_AT.0 + 2 * face_width, FACE_AT.1 + 2 * face_height);
    let mut changed = 0u64;
    for (x, y, pixel) in result.enumerate_pixels() {
        if pixel != photo.get_pixel(x, y) {
            changed += 1;
            assert!(
                (x0..x1).contains(&x) && (y0..y1).contains(&y),
                "pixel ({x}, {y}) changed outside the face's region"
            );
        }
    }
    assert!(
        changed > 10_000,
        "the face was not re-generated: {changed} pixels changed"
    );

    Command::cargo_bin("boomerang")
        .unwrap()
        .arg("audit")
        .arg(report_path(&output))
        .arg("--inputs")
        .arg(&input)
        .arg("--outputs")
        .arg(&output)
        .arg("--policy")
        .arg(&policy)
        .args(["--recompute", "1"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("re-ran lines"))
        .stdout(predicate::str::contains("verdict: clean"));
}

#[test]
fn a_level_names_its_region_or_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (input, _, _) = large_photo(temp.path());
    let policy = demo_policy(
        temp.path(),
        &[(
            "[levels.medium]\n",
            "[levels.medium]\nregion = \"eyes\"\nworking-megapixels = 0\n",
        )],
    );
    let output = temp.path().join("out");
    anonymize(&policy, &input, &output, &["--level", "medium"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "[levels.medium] `region`: unknown value `eyes`; use \"whole\" or \"faces\"",
        ))
        .stderr(predicate::str::contains(
            "[levels.medium] `working-megapixels`: 0 is outside (0, 50]",
        ));
    assert!(!output.exists(), "a refused policy created OUT");
}
