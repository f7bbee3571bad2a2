//! The terrain consistency model (models/terrain-consistency, a real trained pixel-space EDM
//! denoiser): parity with the package's own Python generate_from(), Boomerang's behaviour over
//! strength, the graph checks, and `boomerang sample` on it from the command line.
//!
//! Needs the fetched graph: `python3 tools/fetch_terrain.py` (tools/test runs it). Fixtures:
//! `python3 tools/make_terrain_fixtures.py`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::diffusion::denoiser::{pixels, DenoiserModel, DenoiserSpec};
use boomerang::diffusion::noise::image_seed;
use boomerang::io::hashing::sha256_bytes;
use boomerang::io::runtime::{self, Runtime, SessionOptions};
use ndarray::{concatenate, s, Array4, Axis};
use ndarray_npy::read_npy;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_dir() -> PathBuf {
    root().join("models/terrain-consistency")
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/terrain")
}

fn runtime() -> &'static Runtime {
    runtime::init(None).expect("ONNX Runtime (run tools/test, which fetches it)")
}

/// The model, or a failure that says how to get it.
fn open_model() -> DenoiserModel {
    let spec = DenoiserSpec::load(&model_dir()).expect("models/terrain-consistency/model.toml");
    assert!(
        spec.graph.is_file(),
        "{} is missing: run `python3 tools/fetch_terrain.py` (tools/test does) to fetch it",
        spec.graph.display()
    );
    DenoiserModel::open_spec(spec, runtime(), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("opening the terrain model: {e}"))
}

fn source_path(k: usize) -> PathBuf {
    fixtures().join(format!("sources/terrain_{k}.png"))
}

/// The 8 fixture sources as `[1, 1, 128, 128]` values, read as `boomerang sample` reads them.
fn sources(spec: &DenoiserSpec) -> Vec<(Array4<f32>, [u8; 32])> {
    (0..8)
        .map(|k| {
            let bytes = std::fs::read(source_path(k)).unwrap();
            let image = image::load_from_memory(&bytes).unwrap();
            (
                pixels::to_values(&image, spec).unwrap(),
                sha256_bytes(&bytes),
            )
        })
        .collect()
}

fn rmse(a: ndarray::ArrayView4<f32>, b: ndarray::ArrayView4<f32>) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    (sum / a.len() as f64).sqrt()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn cases() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn matches_the_packages_generate_from() {
    let mut model = open_model();
    let cases = cases();
    let parity = cases["parity"].as_array().unwrap();
    assert_eq!(parity.len(), 2);
    for (k, case) in parity.iter().enumerate() {
        let load = |name: &str| -> Array4<f32> {
            read_npy(fixtures().join(format!("parity_{k}_{name}.npy"))).unwrap()
        };
        let (source, noise, expected) = (load("source"), load("noise"), load("output"));
        let strength = case["strength"].as_f64().unwrap();
        let sigma = case["sigma"].as_f64().unwrap();
        assert!((model.spec.start_sigma(strength) - sigma).abs() <= 1e-12 * sigma);
        let got = model
            .boomerang(source.view(), noise.view(), strength)
            .unwrap();
        let max_diff = got
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "parity case {k}: strength {strength}, sigma {sigma:.6}, max |diff| {max_diff:.3e}"
        );
        assert!(
            max_diff <= 1e-4,
            "case {k}: max |diff| {max_diff} to the package's output"
        );
        // Not a copy of the source: the model moved it (by about the Python RMSE at this strength).
        assert!(rmse(got.view(), source.view()) > 0.005);
        // The constant input reaches the graph: another difficulty, another terrain.
        let mut easy = open_model();
        easy.spec.set_constant("difficulty", 0.0).unwrap();
        let other = easy
            .boomerang(source.view(), noise.view(), strength)
            .unwrap();
        assert!(rmse(other.view(), got.view()) > 1e-3);
    }
    assert!(model
        .boomerang(
            Array4::zeros((1, 1, 128, 128)).view(),
            Array4::zeros((1, 1, 128, 128)).view(),
            1.5
        )
        .unwrap_err()
        .to_string()
        .contains("strength 1.5 is outside 0..=1"));
}

#[test]
fn distance_grows_with_strength_and_samples_differ() {
    let mut model = open_model();
    let sources = sources(&model.spec);
    let batch = concatenate(
        Axis(0),
        &sources.iter().map(|(v, _)| v.view()).collect::<Vec<_>>(),
    )
    .unwrap();
    let seeds = |k: u32| -> Vec<[u8; 32]> {
        sources
            .iter()
            .map(|(_, content)| image_seed(7, content, k))
            .collect()
    };
    let reference = cases()["python_reference"].clone();
    let strengths = [0.2, 0.4, 0.5, 0.6, 0.8, 1.0];
    println!("strength  sigma      median RMSE to source (8 terrains)");
    println!("                     boomerang  python (package, numpy noise)");
    let mut medians = Vec::new();
    for strength in strengths {
        let out = model.sample(batch.view(), &seeds(0), strength).unwrap();
        assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
        let distances: Vec<f64> = (0..sources.len())
            .map(|i| {
                rmse(
                    out.slice(s![i..i + 1, .., .., ..]),
                    batch.slice(s![i..i + 1, .., .., ..]),
                )
            })
            .collect();
        let ours = median(distances);
        let python = reference["median_rmse_to_source"][format!("{strength:?}")]
            .as_f64()
            .unwrap();
        println!(
            "{strength:<8}  {:<9.4}  {ours:<9.4}  {python:.4}",
            model.spec.start_sigma(strength)
        );
        // Same sources, other noise: the medians of 8 agree within a factor 1.5.
        assert!(
            ours > python / 1.5 && ours < python * 1.5,
            "strength {strength}: median RMSE {ours} vs the package's {python}"
        );
        medians.push(ours);
    }
    assert!(
        medians.windows(2).all(|w| w[0] < w[1]),
        "median RMSE should grow with strength: {medians:?}"
    );

    let a = model.sample(batch.view(), &seeds(1), 1.0).unwrap();
    let b = model.sample(batch.view(), &seeds(2), 1.0).unwrap();
    let between = median(
        (0..sources.len())
            .map(|i| {
                rmse(
                    a.slice(s![i..i + 1, .., .., ..]),
                    b.slice(s![i..i + 1, .., .., ..]),
                )
            })
            .collect(),
    );
    let python = reference["median_rmse_between_samples_at_1.0"]
        .as_f64()
        .unwrap();
    println!(
        "two samples at strength 1.0: median RMSE between them {between:.4} (python {python:.4})"
    );
    assert!(a.iter().chain(b.iter()).all(|v| (-1.0..=1.0).contains(v)));
    assert!(
        between > python / 1.5 && between < python * 1.5,
        "samples at 1.0 differ by {between}, the package's by {python}"
    );
    // Same seeds, same output: the noise is a function of the seed alone.
    assert_eq!(a, model.sample(batch.view(), &seeds(1), 1.0).unwrap());
}

/// A copy of the model folder whose model.toml is edited by `edit`, the graph linked in.
fn edited_model(temp: &Path, edit: impl Fn(String) -> String, link_graph: bool) -> PathBuf {
    let dir = temp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(model_dir().join("model.toml")).unwrap();
    std::fs::write(dir.join("model.toml"), edit(text)).unwrap();
    if link_graph {
        let spec = DenoiserSpec::load(&model_dir()).unwrap();
        std::os::unix::fs::symlink(&spec.graph, dir.join(spec.graph.file_name().unwrap())).unwrap();
    }
    dir
}

fn open_error(dir: &Path) -> String {
    match DenoiserModel::open(dir, runtime(), &SessionOptions::default()) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_spec_that_does_not_fit_the_graph_is_a_one_line_error() {
    open_model();
    let temp = tempfile::tempdir().unwrap();
    let renamed = edited_model(
        &temp.path().join("a"),
        |t| t.replace("name = \"noisy\"", "name = \"noise\""),
        true,
    );
    let error = open_error(&renamed);
    assert!(
        error.contains("no input `noise`; the graph's inputs are `noisy`, `sigma`, `difficulty`"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");

    let resized = edited_model(
        &temp.path().join("b"),
        |t| t.replace("size = 128", "size = 64"),
        true,
    );
    let error = open_error(&resized);
    assert!(
        error.contains("input `noisy` has shape [?, 1, 128, 128], expected [?, 1, 64, 64]"),
        "{error}"
    );

    let unlisted = edited_model(
        &temp.path().join("c"),
        |t| {
            let cut = t.find("# The package's difficulty label").unwrap();
            let end = t.find("[output]").unwrap();
            format!("{}{}", &t[..cut], &t[end..])
        },
        true,
    );
    let error = open_error(&unlisted);
    assert!(
        error.contains("the graph has an input `difficulty` that the spec does not list"),
        "{error}"
    );

    let repinned = edited_model(
        &temp.path().join("d"),
        |t| t.replace("sha256 = \"230f", "sha256 = \"130f"),
        true,
    );
    let error = open_error(&repinned);
    assert!(error.contains("sha256 230f0ec1"), "{error}");
    assert!(error.contains("pins 130f0ec1"), "{error}");

    let absent = edited_model(&temp.path().join("e"), |t| t, false);
    let error = open_error(&absent);
    assert!(
        error.contains("is missing; get it with `python3 tools/fetch_terrain.py`"),
        "{error}"
    );
}

fn boomerang_cmd() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

fn sample_cli(out: &Path, input: &Path, extra: &[&str]) -> String {
    let output = boomerang_cmd()
        .args(["sample", "--model"])
        .arg(model_dir())
        .args(["--strength", "0.5", "--seed", "3", "-n", "2", "-o"])
        .arg(out)
        .args(extra)
        .arg(input)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

#[test]
fn sample_cli_prints_sigma_and_writes_reproducible_16_bit_pngs() {
    let mut model = open_model();
    let temp = tempfile::tempdir().unwrap();
    let input = source_path(2);
    let first = temp.path().join("first");
    let stdout = sample_cli(&first, &input, &[]);
    assert!(
        stdout.contains("strength 0.5: start sigma 0.400000, 1 consistency call"),
        "{stdout}"
    );
    assert!(stdout.contains("constants difficulty=1"), "{stdout}");
    let read =
        |dir: &Path, k: usize| std::fs::read(dir.join(format!("terrain_2_{k}.png"))).unwrap();
    let samples = [read(&first, 0), read(&first, 1)];
    assert_ne!(samples[0], samples[1]);
    let decoded = image::load_from_memory(&samples[0]).unwrap();
    let image::DynamicImage::ImageLuma16(gray) = &decoded else {
        panic!("not 16-bit grayscale: {:?}", decoded.color());
    };
    assert_eq!(gray.dimensions(), (128, 128));

    // Same seed, byte-identical; another batch size changes nothing either.
    let second = temp.path().join("second");
    sample_cli(&second, &input, &["--batch", "2", "--threads", "1"]);
    assert_eq!(samples, [read(&second, 0), read(&second, 1)]);

    // The command line runs the library's sampler: sample 0 is seeded by (run seed, file, 0).
    let bytes = std::fs::read(&input).unwrap();
    let source = pixels::to_values(&image::load_from_memory(&bytes).unwrap(), &model.spec).unwrap();
    let expected = model
        .sample(
            source.view(),
            &[image_seed(3, &sha256_bytes(&bytes), 0)],
            0.5,
        )
        .unwrap();
    let written = pixels::to_values(&decoded, &model.spec).unwrap();
    let worst = written
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // One 16-bit step is 2 / 65535 = 3.1e-5 of the value range.
    assert!(worst <= 2.0 / 65535.0, "CLI vs library: {worst}");

    // An 8-bit grayscale PNG is read too.
    let eight = temp.path().join("eight.png");
    decoded.to_luma8().save(&eight).unwrap();
    sample_cli(&temp.path().join("third"), &eight, &[]);
    assert!(temp.path().join("third/eight_1.png").is_file());

    // Stable Diffusion options are refused, not ignored; an RGB image is refused.
    boomerang_cmd()
        .args(["sample", "--model"])
        .arg(model_dir())
        .args(["--steps", "4", "-o"])
        .arg(temp.path().join("x"))
        .arg(&input)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "--steps applies to Stable Diffusion models only",
        ));
    let rgb = temp.path().join("rgb.png");
    decoded.to_rgb8().save(&rgb).unwrap();
    boomerang_cmd()
        .args(["sample", "--model"])
        .arg(model_dir())
        .arg("-o")
        .arg(temp.path().join("y"))
        .arg(&rgb)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "the model takes 1-channel grayscale",
        ));
}
