//! `region = "faces"`: only the detected faces of a large photo are re-generated; every other
//! pixel of the output is the input's, byte for byte, and the audit re-runs it exactly.

mod common;

use std::path::{Path, PathBuf};

use boomerang::records::report::verify;
use common::{anonymize, demo_policy, faces, report_path, tree};
use image::{GenericImageView, Rgb, RgbImage};
use predicates::prelude::*;

/// The face photos pasted into the 3000 x 2000 input, and where.
const FACES: [(&str, (u32, u32)); 2] = [("obama.jpg", (1200, 700)), ("biden.jpg", (2300, 1300))];

/// A pasted face photo's rectangle: `(x, y, width, height)`.
type Placed = (u32, u32, u32, u32);

/// A 3000 x 2000 photo: a textured background with two face photos pasted in, far apart.
fn large_photo(dir: &Path) -> (PathBuf, RgbImage, Vec<Placed>) {
    let mut photo = RgbImage::from_fn(3000, 2000, |x, y| {
        Rgb([
            (x / 12 % 256) as u8,
            (y / 8 % 256) as u8,
            ((x + y) / 20 % 256) as u8,
        ])
    });
    let mut placed = Vec::new();
    for (name, (x, y)) in FACES {
        let face = image::open(faces().join(name)).unwrap().to_rgb8();
        image::imageops::replace(&mut photo, &face, x.into(), y.into());
        placed.push((x, y, face.width(), face.height()));
    }
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    photo.save(input.join("event.png")).unwrap();
    (input, photo, placed)
}

#[test]
fn only_the_faces_of_a_3000x2000_photo_change_and_the_audit_reruns_them() {
    let temp = tempfile::tempdir().unwrap();
    let (input, photo, placed) = large_photo(temp.path());
    let policy = demo_policy(
        temp.path(),
        &[("[levels.medium]\n", "[levels.medium]\nregion = \"faces\"\n")],
    );
    let output = temp.path().join("out");
    let run = |output: &Path, batch: &str| {
        anonymize(
            &policy,
            &input,
            output,
            &["--level", "medium", "--seed", "5", "--batch", batch],
        )
        .assert()
        .code(predicate::in_iter([0, 3]));
    };
    run(&output, "1");
    // Regions share UNet calls by --batch; no byte may depend on it.
    let batched = temp.path().join("batched");
    run(&batched, "4");
    assert_eq!(tree(&output), tree(&batched));
    let rows = verify(&report_path(&output)).unwrap();
    let [row] = rows.as_slice() else {
        panic!("one row expected: {rows:?}");
    };
    assert_eq!(row.faces_in, Some(2), "both faces found: {row:?}");
    let report = format!("{row:?}");
    // The level renames files: the output's name is in the report.
    let output_name = &row.output_path;
    let result = image::open(output.join(output_name))
        .unwrap_or_else(|error| panic!("no output ({error}); report:\n{report}"));
    assert_eq!(result.dimensions(), (3000, 2000));
    let result = result.to_rgb8();

    // A face region is the face box grown by half its longer side on every side, so it stays
    // within its pasted photo grown by the photo's own size.
    let near_a_face = |x: u32, y: u32| {
        placed.iter().any(|&(fx, fy, w, h)| {
            (fx.saturating_sub(w)..fx + 2 * w).contains(&x)
                && (fy.saturating_sub(h)..fy + 2 * h).contains(&y)
        })
    };
    let mut changed = vec![0u64; placed.len()];
    for (x, y, pixel) in result.enumerate_pixels() {
        if pixel != photo.get_pixel(x, y) {
            assert!(
                near_a_face(x, y),
                "pixel ({x}, {y}) changed outside the faces' regions"
            );
            for (count, &(fx, fy, w, h)) in changed.iter_mut().zip(&placed) {
                if (fx..fx + w).contains(&x) && (fy..fy + h).contains(&y) {
                    *count += 1;
                }
            }
        }
    }
    assert!(
        changed.iter().all(|&count| count > 10_000),
        "a face was not re-generated: pixels changed per face photo {changed:?}"
    );

    common::audit_recompute(&report_path(&output), &input, &output, &policy, 1)
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
