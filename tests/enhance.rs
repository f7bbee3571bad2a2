//! `boomerang enhance` on the bundled tiny model: exactly K times the input size, no seam where
//! tiles meet, strength 0 is the Lanczos upsample through the VAE, reruns and resume.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::commands::enhance::{self, Tiling};
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::diffusion::scheduler::SchedulerKind;
use boomerang::diffusion::tiled;
use boomerang::io::runtime::{self, SessionOptions};
use image::{DynamicImage, Rgb, RgbImage};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> PathBuf {
    root().join("models/tiny-sd")
}

fn engine() -> Engine {
    let runtime = runtime::init(None).unwrap();
    Engine::open(&model(), runtime, &SessionOptions::default()).unwrap()
}

fn settings(strength: f64) -> Settings {
    Settings {
        strength,
        steps: 5,
        ..Settings::default()
    }
}

fn enhance(input: &Path, output: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["enhance", "--model"])
        .arg(model())
        .args(["--steps", "5", "--seed", "4"])
        .args(extra)
        .arg(input)
        .arg(output)
        .assert()
}

fn example(width: u32, height: u32) -> DynamicImage {
    image::open(root().join("examples/astronaut.png"))
        .unwrap()
        .resize_exact(width, height, image::imageops::FilterType::Triangle)
}

#[test]
fn output_is_exactly_k_times_the_input_and_reruns_are_byte_identical() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    // 3 x (50, 30) fits one tile; 2 x (70, 41) needs two tiles across and two down.
    example(50, 30).save(input.join("small.png")).unwrap();
    example(70, 41)
        .to_luma8()
        .save(input.join("sub/gray.png"))
        .unwrap();
    let first = temp.path().join("first");
    enhance(
        &input,
        &first,
        &["--scale", "3", "--tile", "64", "--overlap", "16"],
    )
    .success();
    let small = image::open(first.join("small.png")).unwrap();
    assert_eq!((small.width(), small.height()), (150, 90));
    let gray = image::open(first.join("sub/gray.png")).unwrap();
    assert_eq!((gray.width(), gray.height()), (210, 123));
    assert_eq!(gray.color(), image::ColorType::L8);

    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(first.join("enhance.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect();
    let tiles: Vec<&str> = rows.iter().map(|r| &r[13]).collect();
    // 150 x 90 in 64-px tiles overlapping by at least 16: 3 x 2; 210 x 123: 5 x 3.
    assert_eq!(tiles, ["6", "15"]);

    let second = temp.path().join("second");
    enhance(
        &input,
        &second,
        &[
            "--scale",
            "3",
            "--tile",
            "64",
            "--overlap",
            "16",
            "--batch",
            "4",
            "--threads",
            "1",
        ],
    )
    .success();
    for name in ["small.png", "sub/gray.png", "enhance.csv"] {
        assert!(
            std::fs::read(first.join(name)).unwrap() == std::fs::read(second.join(name)).unwrap(),
            "{name} changed on a rerun"
        );
    }
}

/// Largest absolute difference between horizontally adjacent pixels, split into pairs that
/// straddle a tile edge (`edges` holds x where a tile starts or just ended) and the rest.
fn adjacent_differences(image: &RgbImage, edges: &[u32]) -> (u8, u8) {
    let (mut across, mut inside) = (0u8, 0u8);
    for y in 0..image.height() {
        for x in 1..image.width() {
            let (a, b) = (image.get_pixel(x - 1, y), image.get_pixel(x, y));
            let d = (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap();
            if edges.contains(&x) {
                across = across.max(d);
            } else {
                inside = inside.max(d);
            }
        }
    }
    (across, inside)
}

#[test]
fn no_seam_shows_where_tiles_meet_on_a_flat_colour() {
    let mut engine = engine();
    let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 32, Rgb([150, 110, 90])));
    let tiling = Tiling::new(128, 32, 8).unwrap();
    // 200 px wide = 25 latent cells: tiles of 16 cells at x = 0 and 9 cells, so pixel edges at 72
    // (the second starts) and 128 (the first ends); 64 px high: one tile row, padded.
    assert_eq!(tiled::tile_starts(25, 16, 4), [0, 9]);
    let (result, tiles) =
        enhance::enhance_image(&mut engine, &settings(0.4), &flat, 2, tiling, 2, &[9; 32]).unwrap();
    assert_eq!(tiles, 2);
    assert_eq!((result.width(), result.height()), (200, 64));
    let (across, inside) = adjacent_differences(&result.to_rgb8(), &[72, 128]);
    assert!(
        across <= inside,
        "seam: {across} across tile edges, {inside} inside"
    );
}

/// The tiny model's random weights turn a flat colour into texture that hides any seam, so the
/// fusion is also checked with smooth tile results: two flat decoded tiles of different colours.
#[test]
fn the_fusion_ramps_between_tiles_where_pasting_would_step() {
    let flat_tiles = |grid: &tiled::TileGrid| {
        let mut fusion = grid.fusion(3);
        for (index, value) in [0.2f32, 0.8].into_iter().enumerate() {
            let tile = ndarray::Array4::from_elem((1, 3, grid.tile(), grid.tile()), value);
            fusion.add(tile.view(), &[index]);
        }
        let fused = fusion.finish();
        let (height, width) = (fused.shape()[2] as u32, fused.shape()[3] as u32);
        RgbImage::from_fn(width, height, |x, y| {
            Rgb(std::array::from_fn(|c| {
                (fused[[0, c, y as usize, x as usize]] * 255.0).round() as u8
            }))
        })
    };
    // The decoder's pixel tiles: latent tiles of 16 cells over 25 x 16 cells, 8 px per cell.
    let pixels = tiled::TileGrid::new(25, 16, 16, 4).scaled(8);
    assert_eq!((pixels.len(), pixels.origin(1)), (2, (72, 0)));
    let blended = flat_tiles(&pixels);
    let (across, inside) = adjacent_differences(&blended, &[72, 128]);
    assert!(
        across <= inside,
        "seam: {across} across tile edges, {inside} inside"
    );
    // Pure tiles where only one covers, a linear ramp across the 56-px overlap, 153 levels apart.
    assert_eq!(blended.get_pixel(71, 10)[0], 51);
    assert_eq!(blended.get_pixel(128, 10)[0], 204);
    assert!(across <= 3, "{across}");

    // Tiles that only touch (256 px, no overlap) are pasted: the same check sees the step.
    let touching = tiled::TileGrid::new(32, 16, 16, 0).scaled(8);
    let pasted = flat_tiles(&touching);
    let (across, inside) = adjacent_differences(&pasted, &[128]);
    assert_eq!((across, inside), (153, 0));
}

/// Strength 0 with DDIM: no noise, no step (PNDM's extra PLMS timestep would still run one step
/// at t = 1, as diffusers does).
fn round_trip_settings() -> Settings {
    Settings {
        scheduler: Some(SchedulerKind::Ddim),
        ..settings(0.0)
    }
}

#[test]
fn strength_zero_is_the_lanczos_upsample_through_the_vae() {
    let mut engine = engine();
    let image = example(64, 50);
    let upsampled = enhance::upsample(&image, 2);
    assert_eq!(
        upsampled,
        image::imageops::resize(
            &image.to_rgb8(),
            128,
            100,
            image::imageops::FilterType::Lanczos3
        )
    );
    let seed = [5u8; 32];
    let tiling = Tiling::new(128, 32, 8).unwrap();
    let (result, tiles) = enhance::enhance_image(
        &mut engine,
        &round_trip_settings(),
        &image,
        2,
        tiling,
        1,
        &seed,
    )
    .unwrap();
    assert_eq!(tiles, 1);

    // The engine's own untiled round trip of the one (edge-padded) tile, with the image's seed.
    let crop = ndarray::Array4::from_shape_fn((1, 3, 128, 128), |(_, c, y, x)| {
        let pixel = upsampled.get_pixel((x as u32).min(127), (y as u32).min(99));
        f32::from(pixel[c]) / 255.0 * 2.0 - 1.0
    });
    let (round_trip, plan) = engine
        .run(&round_trip_settings(), crop.view(), &[seed])
        .unwrap();
    assert_eq!(plan.start_timestep(), None, "strength 0 adds no noise");
    let expected = RgbImage::from_fn(128, 100, |x, y| {
        Rgb(std::array::from_fn(|c| {
            (round_trip.images[[0, c, y as usize, x as usize]] * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    });
    assert!(result.to_rgb8() == expected, "not the VAE round trip");
}

#[test]
fn single_file_input_resume_bad_inputs_and_exit_codes() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    example(40, 40).save(input.join("a.png")).unwrap();
    example(30, 20).save(input.join("b.jpg")).unwrap();
    std::fs::write(input.join("c.png"), b"").unwrap();

    // A single file in, OUT beside it.
    let single = temp.path().join("single");
    enhance(&input.join("a.png"), &single, &["--scale", "2"]).success();
    assert!(image::open(single.join("a.png")).unwrap().width() == 80);

    let out = temp.path().join("out");
    enhance(&input, &out, &["--scale", "2"]).code(3);
    let manifest = std::fs::read_to_string(out.join("enhance.csv")).unwrap();
    assert!(manifest.contains("c.png,,,,error,empty file"), "{manifest}");
    assert_eq!(
        std::fs::read(single.join("a.png")).unwrap(),
        std::fs::read(out.join("a.png")).unwrap(),
        "the same image gave other bytes in a folder run"
    );
    let b = std::fs::read(out.join("b.png")).unwrap();

    // Refused: a non-empty OUT without --resume, OUT inside IN; usage error: a bad scale.
    enhance(&input, &out, &["--scale", "2"]).code(1);
    enhance(&input, &input.join("x"), &["--scale", "2"]).code(1);
    enhance(&input, &temp.path().join("y"), &["--scale", "0"]).code(2);
    assert!(!input.join("x").exists() && !temp.path().join("y").exists());

    // Resume after losing one output and a torn last row: same bytes, no duplicate rows.
    std::fs::remove_file(out.join("b.png")).unwrap();
    let text = std::fs::read(out.join("enhance.csv")).unwrap();
    std::fs::write(out.join("enhance.csv"), &text[..text.len() - 10]).unwrap();
    enhance(&input, &out, &["--scale", "2", "--resume"]).code(3);
    assert_eq!(std::fs::read(out.join("b.png")).unwrap(), b);
    let manifest = std::fs::read_to_string(out.join("enhance.csv")).unwrap();
    let mut sources: Vec<&str> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    sources.sort();
    assert_eq!(sources, ["a.png", "b.jpg", "c.png"]);
}
