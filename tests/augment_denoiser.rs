//! `boomerang augment` on a pixel-space denoiser folder (models/terrain-consistency): samples
//! byte-identical to `boomerang sample`'s, the manifest's denoiser columns, resume, shards, the
//! refusal of Stable Diffusion options and error rows for images the model cannot take. Then
//! `boomerang enhance` on it: one field in fused tiles, one tile equal to `sample`.
//!
//! Needs the fetched graph: `python3 tools/fetch_terrain.py` (tools/test runs it).

mod common;

use common::tree;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::diffusion::denoiser::DenoiserSpec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> PathBuf {
    root().join("models/terrain-consistency")
}

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

fn source(k: usize) -> PathBuf {
    root().join(format!("tests/fixtures/terrain/sources/terrain_{k}.png"))
}

/// Three fixture terrains in a class folder, and the graph present.
fn dataset(dir: &Path) -> PathBuf {
    let graph = DenoiserSpec::load(&model()).unwrap().graph;
    assert!(
        graph.is_file(),
        "{} is missing: run `python3 tools/fetch_terrain.py` (tools/test does)",
        graph.display()
    );
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("hills")).unwrap();
    for k in 0..3 {
        std::fs::copy(source(k), input.join(format!("hills/terrain_{k}.png"))).unwrap();
    }
    input
}

fn augment(input: &Path, output: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    boomerang()
        .args(["augment", "--model"])
        .arg(model())
        .args(["-n", "2", "--strengths", "0.4,0.6", "--seed", "5", "-q"])
        .args(extra)
        .arg(input)
        .arg(output)
        .assert()
}

fn manifest_rows(output: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(output.join("augment.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>().join(","),
        "source,source_sha256,output,output_sha256,status,reason,sample,strength,start_timestep,steps,scheduler,seed,run_seed,model_sha256"
    );
    reader.records().map(|r| r.unwrap()).collect()
}

#[test]
fn samples_are_byte_identical_to_boomerang_sample_and_rows_record_the_start_sigma() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let output = dir.path().join("out");
    augment(&input, &output, &[]).success();

    // `boomerang sample` at each strength, same seed: its sample k is augment's sample k.
    for (k, strength) in [(0, "0.4"), (1, "0.6")] {
        let sampled = dir.path().join(format!("sample-{strength}"));
        let mut command = boomerang();
        command
            .args(["sample", "--model"])
            .arg(model())
            .args(["--seed", "5", "--strength", strength, "-n", "2", "-o"])
            .arg(&sampled);
        for i in 0..3 {
            command.arg(input.join(format!("hills/terrain_{i}.png")));
        }
        command.assert().success();
        for i in 0..3 {
            let ours = std::fs::read(output.join(format!("hills/terrain_{i}_aug{k}.png"))).unwrap();
            let theirs = std::fs::read(sampled.join(format!("terrain_{i}_{k}.png"))).unwrap();
            assert!(
                ours == theirs,
                "terrain_{i} sample {k}: augment and sample differ"
            );
        }
    }

    // 16-bit grayscale at the model's size, and not the source; the original's pixels copied.
    let sample = image::open(output.join("hills/terrain_0_aug1.png")).unwrap();
    assert_eq!(sample.color(), image::ColorType::L16);
    assert_eq!((sample.width(), sample.height()), (128, 128));
    let original = image::open(source(0)).unwrap();
    assert_ne!(sample.to_luma16(), original.to_luma16());
    let copy = image::open(output.join("hills/terrain_0.png")).unwrap();
    assert_eq!(copy.to_luma16(), original.to_luma16());
    assert_eq!(copy.color(), original.color());

    let spec = DenoiserSpec::load(&model()).unwrap();
    let rows = manifest_rows(&output);
    assert_eq!(rows.len(), 9, "3 originals and 6 samples");
    let hashes: std::collections::HashSet<&str> = rows.iter().map(|r| &r[13]).collect();
    assert_eq!(hashes.len(), 1);
    assert!(hashes.iter().all(|h| h.len() == 64));
    for row in rows.iter().filter(|r| !r[6].is_empty()) {
        assert_eq!(&row[4], "ok");
        let strength: f64 = row[7].parse().unwrap();
        let sigma: f64 = row[8].parse().unwrap();
        assert_eq!(sigma, spec.start_sigma(strength), "{row:?}");
        assert_eq!(&row[9], "1", "one consistency call");
        assert_eq!(&row[10], "consistency");
        assert_eq!(&row[12], "5");
    }
}

#[test]
fn resume_shards_and_batches_reproduce_the_run_and_other_constants_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let whole = dir.path().join("whole");
    augment(&input, &whole, &[]).success();
    let expected = tree(&whole);

    // A crash after the first rows: the rest is redone, byte for byte, with no duplicate rows.
    let crashed = dir.path().join("crashed");
    augment(&input, &crashed, &[]).success();
    let manifest = std::fs::read_to_string(crashed.join("augment.csv")).unwrap();
    let kept: Vec<&str> = manifest.lines().take(4).collect();
    std::fs::write(crashed.join("augment.csv"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(crashed.join("hills/terrain_2_aug1.png")).unwrap();
    augment(&input, &crashed, &["--resume"]).success();
    assert_eq!(tree(&crashed), expected);

    // Another difficulty is another model run: its resume is refused.
    let refused = augment(&input, &crashed, &["--resume", "--set", "difficulty=0.5"])
        .failure()
        .code(1);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("another input file, model or settings"),
        "{stderr}"
    );
    assert_eq!(tree(&crashed), expected);

    // Two parts into one OUT, merged, are the unsharded run.
    let sharded = dir.path().join("sharded");
    for part in ["0/2", "1/2"] {
        augment(&input, &sharded, &["--shard", part]).success();
    }
    let parts: Vec<PathBuf> = ["0000", "0001"]
        .iter()
        .map(|k| sharded.join(format!("augment.part-{k}-of-0002.csv")))
        .collect();
    boomerang()
        .args(["report", "merge"])
        .args(&parts)
        .arg("-o")
        .arg(sharded.join("augment.csv"))
        .assert()
        .success();
    assert_eq!(tree(&sharded), expected);

    // Images batched together give the same samples.
    let batched = dir.path().join("batched");
    augment(&input, &batched, &["--batch", "3"]).success();
    assert_eq!(tree(&batched), expected);

    // --set reaches the model: another difficulty, other samples.
    let easy = dir.path().join("easy");
    augment(&input, &easy, &["--set", "difficulty=0.2"]).success();
    let a = std::fs::read(easy.join("hills/terrain_0_aug1.png")).unwrap();
    assert_ne!(&a, &expected[Path::new("hills/terrain_0_aug1.png")]);
}

#[test]
fn stable_diffusion_options_are_refused_before_out_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let output = dir.path().join("out");
    let cases: [(&[&str], &str); 6] = [
        (&["--steps", "4"], "--steps applies"),
        (&["--scheduler", "ddim"], "--scheduler applies"),
        (&["--eta", "0.5"], "--eta applies"),
        (&["--prompt", "hills"], "--prompt applies"),
        (&["--negative-prompt", "flat"], "--negative-prompt applies"),
        (
            &["--guidance", "2", "--steps", "3"],
            "--steps, --guidance apply",
        ),
    ];
    for (extra, expected) in cases {
        let assert = augment(&input, &output, extra).failure().code(1);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("to Stable Diffusion models only") && stderr.contains("model.toml"),
            "{extra:?}: {stderr}"
        );
        assert!(!output.exists(), "{extra:?} created {}", output.display());
    }

    // --set names a constant input of the spec, within its range; and never an SD model.
    let assert = augment(&input, &output, &["--set", "height=2"]).failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("has no input `height`") && stderr.contains("`difficulty`"),
        "{stderr}"
    );
    let assert = boomerang()
        .args(["augment", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args(["-n", "1", "--set", "difficulty=0.5"])
        .arg(&input)
        .arg(&output)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("is a Stable Diffusion folder"), "{stderr}");
    assert!(!output.exists());
}

#[test]
fn images_the_denoiser_cannot_take_get_error_rows_and_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let terrain = image::open(source(1)).unwrap();
    terrain
        .resize_exact(64, 64, image::imageops::FilterType::Triangle)
        .save(input.join("hills/small.png"))
        .unwrap();
    image::DynamicImage::ImageRgb8(terrain.to_rgb8())
        .save(input.join("hills/colour.png"))
        .unwrap();
    let output = dir.path().join("out");
    augment(&input, &output, &[]).code(3);

    let rows = manifest_rows(&output);
    let errors: Vec<_> = rows.iter().filter(|r| &r[4] == "error").collect();
    assert_eq!(errors.len(), 2, "{rows:?}");
    let reason = |name: &str| {
        errors
            .iter()
            .find(|r| &r[0] == name)
            .map(|r| r[5].to_string())
            .unwrap_or_default()
    };
    assert!(
        reason("hills/small.png").contains("64x64")
            && reason("hills/small.png").contains("128x128"),
        "{rows:?}"
    );
    assert!(reason("hills/colour.png").contains("grayscale"), "{rows:?}");
    // No output at all for them, not even the copy of the original.
    assert!(!output.join("hills/small.png").exists());
    assert!(!output.join("hills/colour_aug0.png").exists());
    assert_eq!(rows.iter().filter(|r| &r[4] == "ok").count(), 9);
}

fn enhance(input: &Path, output: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    boomerang()
        .args(["enhance", "--model"])
        .arg(model())
        .args(["--seed", "5", "-q"])
        .args(extra)
        .arg(input)
        .arg(output)
        .assert()
}

fn luma16(path: &Path) -> image::ImageBuffer<image::Luma<u16>, Vec<u16>> {
    let image = image::open(path).unwrap();
    assert_eq!(image.color(), image::ColorType::L16, "{}", path.display());
    image.to_luma16()
}

#[test]
fn enhance_runs_the_denoiser_on_one_field_in_fused_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let terrain = input.join("hills/terrain_0.png");

    // One tile (the model's size at --scale 1) is the untiled sampler: `sample`'s sample 0.
    let single = dir.path().join("single");
    enhance(&terrain, &single, &["--scale", "1", "--strength", "0.4"]).success();
    let sampled = dir.path().join("sampled");
    boomerang()
        .args(["sample", "--model"])
        .arg(model())
        .args(["--seed", "5", "--strength", "0.4", "-o"])
        .arg(&sampled)
        .arg(&terrain)
        .assert()
        .success();
    assert!(
        std::fs::read(single.join("terrain_0.png")).unwrap()
            == std::fs::read(sampled.join("terrain_0_0.png")).unwrap(),
        "enhance --scale 1 and sample differ"
    );

    // x2: a 256x256 field in 3x3 tiles of 128 overlapping by 32, near the Lanczos upsample.
    let doubled = dir.path().join("doubled");
    enhance(&input, &doubled, &["--scale", "2", "--strength", "0.3"]).success();
    let result = luma16(&doubled.join("hills/terrain_0.png"));
    assert_eq!(result.dimensions(), (256, 256));
    let upsampled = image::imageops::resize(
        &image::open(&terrain).unwrap().to_luma16(),
        256,
        256,
        image::imageops::FilterType::Lanczos3,
    );
    let rmse = (result
        .pixels()
        .zip(upsampled.pixels())
        .map(|(a, b)| (f64::from(a[0]) - f64::from(b[0])).powi(2))
        .sum::<f64>()
        / (256.0 * 256.0))
        .sqrt()
        / 65535.0;
    assert!(rmse > 1e-4 && rmse < 0.05, "RMSE to the upsample {rmse}");

    let mut reader = csv::Reader::from_path(doubled.join("enhance.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let spec = DenoiserSpec::load(&model()).unwrap();
    for row in &rows {
        // status, start sigma, calls, sampler, tile, overlap, tiles, width, height
        assert_eq!(&row[4], "ok", "{row:?}");
        assert_eq!(row[8].parse::<f64>().unwrap(), spec.start_sigma(0.3));
        assert_eq!((&row[9], &row[10]), ("1", "consistency"));
        assert_eq!((&row[11], &row[12], &row[13]), ("128", "32", "9"));
        assert_eq!((&row[16], &row[17]), ("256", "256"));
    }

    // Tiles batched together, and a resumed run, change nothing.
    let batched = dir.path().join("batched");
    enhance(
        &input,
        &batched,
        &["--scale", "2", "--strength", "0.3", "--batch", "4"],
    )
    .success();
    assert_eq!(tree(&batched), tree(&doubled));
    let before = tree(&doubled);
    let assert = boomerang()
        .args(["enhance", "--model"])
        .arg(model())
        .args(["--scale", "2", "--strength", "0.3", "--resume"])
        .arg(&input)
        .arg(&doubled)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("0 written, 3 already done"), "{stdout}");
    assert_eq!(tree(&doubled), before);
}

#[test]
fn enhance_refuses_what_the_denoiser_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let input = dataset(dir.path());
    let output = dir.path().join("out");
    for (extra, expected) in [
        (
            &["--scale", "2", "--steps", "4"][..],
            "--steps applies to Stable Diffusion models only",
        ),
        (
            &["--scale", "2", "--tile", "64"][..],
            "takes 128x128 tiles only",
        ),
        (
            &["--scale", "2", "--overlap", "128"][..],
            "must be smaller than the tile",
        ),
    ] {
        let assert = enhance(&input, &output, extra).failure().code(1);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!output.exists(), "{extra:?} created {}", output.display());
    }

    // A colour image gets an error row; the grayscale ones are enhanced.
    image::DynamicImage::ImageRgb8(image::open(source(1)).unwrap().to_rgb8())
        .save(input.join("hills/colour.png"))
        .unwrap();
    enhance(&input, &output, &["--scale", "1"]).code(3);
    let mut reader = csv::Reader::from_path(output.join("enhance.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let colour = rows.iter().find(|r| &r[0] == "hills/colour.png").unwrap();
    assert_eq!(&colour[4], "error");
    assert!(colour[5].contains("grayscale"), "{colour:?}");
    assert!(!output.join("hills/colour.png").exists());
    assert_eq!(rows.iter().filter(|r| &r[4] == "ok").count(), 3);
}
