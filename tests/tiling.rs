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
    let output = imageio::unframe(one.images.index_axis(ndarray::Axis(0), 0), &framing);
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

/// Largest and mean absolute step between neighbouring pixels, split into steps that cross a
/// tile border (`columns`, `rows`: where a tile starts or just ended) and the rest.
struct Steps {
    across_max: u8,
    across_mean: f64,
    inside_max: u8,
    inside_mean: f64,
}

fn steps(image: &RgbImage, columns: &[u32], rows: &[u32]) -> Steps {
    let (mut across, mut inside) = (Vec::new(), Vec::new());
    let step = |a: &Rgb<u8>, b: &Rgb<u8>| (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap();
    for y in 0..image.height() {
        for x in 0..image.width() {
            let here = image.get_pixel(x, y);
            if x > 0 {
                let d = step(image.get_pixel(x - 1, y), here);
                if columns.contains(&x) {
                    &mut across
                } else {
                    &mut inside
                }
                .push(d);
            }
            if y > 0 {
                let d = step(image.get_pixel(x, y - 1), here);
                if rows.contains(&y) {
                    &mut across
                } else {
                    &mut inside
                }
                .push(d);
            }
        }
    }
    let mean = |v: &[u8]| v.iter().map(|&d| f64::from(d)).sum::<f64>() / v.len().max(1) as f64;
    Steps {
        across_max: across.iter().copied().max().unwrap_or(0),
        across_mean: mean(&across),
        inside_max: inside.iter().copied().max().unwrap_or(0),
        inside_mean: mean(&inside),
    }
}

/// Pixel positions where a tile of the decoded grid starts or ends, along x and y.
fn borders(grid: &TileGrid) -> (Vec<u32>, Vec<u32>) {
    let (mut columns, mut rows) = (Vec::new(), Vec::new());
    for index in 0..grid.len() {
        let (x, y) = grid.origin(index);
        for (list, start) in [(&mut columns, x), (&mut rows, y)] {
            list.extend([start as u32, (start + grid.tile()) as u32]);
        }
    }
    (columns, rows)
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
    let (columns, rows) = borders(&pixels);
    for (name, input) in [("flat", flat), ("gradient", gradient)] {
        let image = DynamicImage::ImageRgb8(input);
        let plan = ImagePlan::new(&image, Region::Whole, &[], limits(&engine));
        let (outputs, _) =
            render::render(&mut engine, &ddim(0.3), &[&plan], &[[1; 32]], 16).unwrap();
        let output = outputs[0].to_rgb8();
        assert_eq!(output.dimensions(), (width, height), "{name}");
        let s = steps(&output, &columns, &rows);
        eprintln!(
            "{name}: across tile borders max {} mean {:.3}; inside max {} mean {:.3}",
            s.across_max, s.across_mean, s.inside_max, s.inside_mean
        );
        assert!(s.across_max <= s.inside_max, "{name}: seam");
        assert!(
            s.across_mean <= 1.25 * s.inside_mean,
            "{name}: seam on average"
        );
    }
}
