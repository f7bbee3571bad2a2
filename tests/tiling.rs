//! Native-resolution Boomerang on the bundled tiny model (working size 128 px): one latent field
//! denoised in fused tiles equals the untiled pipeline when it is one tile, does not depend on how
//! many tiles share a UNet call, keeps large images at their size, and shows no seam.

use std::path::PathBuf;

use boomerang::commands::render::{self, ImagePlan};
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::diffusion::scheduler::SchedulerKind;
use boomerang::diffusion::tiled::TileGrid;
use boomerang::io::imageio::{self, FrameLimits, Framing};
use boomerang::io::runtime::{self, SessionOptions};
use boomerang::policy::Region;
use image::{DynamicImage, Rgb, RgbImage};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> Engine {
    let runtime = runtime::init(None).unwrap();
    let model = root().join("models/tiny-sd");
    Engine::open(&model, runtime, &SessionOptions::default()).unwrap()
}

/// DDIM with fresh noise at every step, as the shipped levels run.
fn ddim(strength: f64) -> Settings {
    Settings {
        strength,
        steps: 5,
        scheduler: Some(SchedulerKind::Ddim),
        eta: 1.0,
        prompt: "person".into(),
        ..Settings::default()
    }
}

fn limits(engine: &Engine) -> FrameLimits {
    render::frame_limits(engine, 50.0)
}

fn example(width: u32, height: u32) -> DynamicImage {
    image::open(root().join("examples/astronaut.png"))
        .unwrap()
        .resize_exact(width, height, image::imageops::FilterType::Triangle)
}

#[test]
fn one_tile_equals_the_untiled_pipeline() {
    let mut engine = engine();
    let (tensor, framing) = imageio::frame(&example(128, 128), limits(&engine));
    assert!(matches!(framing, Framing::Fitted(_)));
    let guided = Settings {
        scheduler: Some(SchedulerKind::EulerAncestral),
        eta: 0.0,
        guidance: 3.0,
        negative_prompt: "blurry".into(),
        ..ddim(0.6)
    };
    for settings in [ddim(0.6), guided] {
        let seed = [7u8; 32];
        let (untiled, _) = engine.run(&settings, tensor.view(), &[seed]).unwrap();
        let (tiled, _, tiles) = engine.run_tiled(&settings, tensor.view(), seed, 4).unwrap();
        assert_eq!(tiles, 1);
        assert!(untiled.latents == tiled.latents, "latents differ");
        assert!(untiled.images == tiled.images, "images differ");
    }
}

#[test]
fn tiled_results_do_not_depend_on_the_tile_batch() {
    let mut engine = engine();
    let image = example(300, 200);
    let (tensor, framing) = imageio::frame(&image, limits(&engine));
    let Framing::Native(canvas) = framing else {
        panic!("300x200 is larger than the 128-px working size: {framing:?}");
    };
    assert_eq!((canvas.canvas_width, canvas.canvas_height), (304, 200));
    let settings = ddim(0.5);
    let seed = [3u8; 32];
    let (one, _, tiles) = engine.run_tiled(&settings, tensor.view(), seed, 1).unwrap();
    // 38 x 25 latent cells in tiles of 16 overlapping by at least 4: 3 across, 2 down.
    assert_eq!(tiles, 6);
    for batch in [4, 7] {
        let (other, _, _) = engine
            .run_tiled(&settings, tensor.view(), seed, batch)
            .unwrap();
        assert!(
            one.images == other.images,
            "--batch {batch} changed the output"
        );
    }
    let output = imageio::unframe(one.images.index_axis(ndarray::Axis(0), 0), &framing).unwrap();
    assert_eq!((output.width(), output.height()), (300, 200));
    assert_ne!(
        output.to_rgb8(),
        image.to_rgb8(),
        "Boomerang changed nothing"
    );
    let (other, _, _) = engine
        .run_tiled(&settings, tensor.view(), [4u8; 32], 4)
        .unwrap();
    assert!(
        one.images != other.images,
        "another seed gave the same output"
    );
}

/// Where a line of pixels lies in the decoder's tile grid along one axis.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Line {
    /// A tile starts or just ended here.
    Border,
    /// Inside two overlapping tiles: their decodings are averaged there.
    Overlap,
    /// Inside one tile only.
    Core,
}

/// The kind of every line `0..length` along an axis whose tiles start at `starts`.
fn lines(length: u32, starts: &[u32], tile: u32) -> Vec<Line> {
    (0..length)
        .map(|p| {
            if starts.iter().any(|&s| p == s || p == s + tile) {
                Line::Border
            } else if starts
                .iter()
                .filter(|&&s| (s..s + tile).contains(&p))
                .count()
                > 1
            {
                Line::Overlap
            } else {
                Line::Core
            }
        })
        .collect()
}

/// Largest and mean absolute step between neighbouring pixels across the lines of the VAE's
/// 8-pixel grid (tile borders lie on it, and a decoder upsamples by blocks of it), by the kind of
/// line crossed: the core lines are the image's own statistics to compare the borders with.
#[derive(Debug)]
struct Steps {
    max: [u8; 3],
    mean: [f64; 3],
}

fn steps(image: &RgbImage, grid: &TileGrid) -> Steps {
    let tile = grid.tile() as u32;
    let mut starts = (Vec::new(), Vec::new());
    for index in 0..grid.len() {
        let (x, y) = grid.origin(index);
        starts.0.push(x as u32);
        starts.1.push(y as u32);
    }
    for axis in [&mut starts.0, &mut starts.1] {
        axis.sort_unstable();
        axis.dedup();
    }
    let columns = lines(image.width(), &starts.0, tile);
    let rows = lines(image.height(), &starts.1, tile);
    let slot = |line: Line| line as usize;
    let mut found: [Vec<u8>; 3] = Default::default();
    let step = |a: &Rgb<u8>, b: &Rgb<u8>| (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap();
    for y in 0..image.height() {
        for x in 0..image.width() {
            let here = image.get_pixel(x, y);
            if x > 0 && x % 8 == 0 {
                let d = step(image.get_pixel(x - 1, y), here);
                found[slot(columns[x as usize])].push(d);
            }
            if y > 0 && y % 8 == 0 {
                let d = step(image.get_pixel(x, y - 1), here);
                found[slot(rows[y as usize])].push(d);
            }
        }
    }
    let mean = |v: &[u8]| v.iter().map(|&d| f64::from(d)).sum::<f64>() / v.len().max(1) as f64;
    Steps {
        max: std::array::from_fn(|i| found[i].iter().copied().max().unwrap_or(0)),
        mean: std::array::from_fn(|i| mean(&found[i])),
    }
}

#[test]
fn a_3000x2000_image_keeps_its_size_and_shows_no_seam() {
    let mut engine = engine();
    let (width, height) = (3000u32, 2000u32);
    let flat = RgbImage::from_pixel(width, height, Rgb([150, 110, 90]));
    let gradient = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    });
    // The pixel tiles the decoder fuses: 375 x 250 latent cells in tiles of 16 (4 overlap).
    let pixels = TileGrid::new(375, 250, 16, 4).scaled(8);
    let (border, core) = (Line::Border as usize, Line::Core as usize);
    for (name, input) in [("flat", flat), ("gradient", gradient)] {
        let image = DynamicImage::ImageRgb8(input);
        let plan = ImagePlan::new(&image, Region::Whole, &[], limits(&engine));
        let (outputs, _) =
            render::render(&mut engine, &ddim(0.3), &[&plan], &[[1; 32]], 16).unwrap();
        let output = outputs[0].to_rgb8();
        assert_eq!(output.dimensions(), (width, height), "{name}");
        // [border, overlap, core]
        let s = steps(&output, &pixels);
        eprintln!("{name}: steps across [border, overlap, core] lines: {s:?}");
        assert!(s.max[border] <= s.max[core], "{name}: seam: {s:?}");
        assert!(
            s.mean[border] <= 1.1 * s.mean[core],
            "{name}: seam on average: {s:?}"
        );
    }
}

#[test]
fn sample_and_anonymize_timings_count_the_tiles() {
    let temp = tempfile::tempdir().unwrap();
    let image = temp.path().join("wide.png");
    example(300, 200).save(&image).unwrap();
    let assert = assert_cmd::Command::cargo_bin("boomerang")
        .unwrap()
        .args([
            "sample",
            "--timings",
            "--seed",
            "1",
            "--steps",
            "4",
            "--model",
        ])
        .arg(root().join("models/tiny-sd"))
        .arg("-o")
        .arg(temp.path().join("samples"))
        .arg(&image)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        stdout.contains("tiled: 1 large image run(s) in 6 tiles"),
        "{stdout}"
    );
    let sample = image::open(temp.path().join("samples/wide_0.png")).unwrap();
    assert_eq!((sample.width(), sample.height()), (300, 200));

    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(&image, input.join("wide.png")).unwrap();
    let policy = temp.path().join("policy.toml");
    let text = std::fs::read_to_string(root().join("policies/demo.toml"))
        .unwrap()
        .replace("\"../models/", &format!("\"{}/models/", root().display()));
    std::fs::write(&policy, text).unwrap();
    let assert = assert_cmd::Command::cargo_bin("boomerang")
        .unwrap()
        .args(["anonymize", "--quiet", "--json", "--timings", "--seed", "2"])
        .args(["--level", "low", "--policy"])
        .arg(&policy)
        .arg(&input)
        .arg(temp.path().join("out"))
        .assert()
        .code(predicates::prelude::predicate::in_iter([0, 3]));
    let output = assert.get_output();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}"));
    assert_eq!(summary["level"], "low");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("large image run(s) in"), "{stderr}");
}
