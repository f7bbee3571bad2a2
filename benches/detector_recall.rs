//! Face detector recall on small faces: every fixture portrait (tests/fixtures/faces/*.jpg) is
//! scaled so its face box (reference.json) is 5, 7.5, 10, 12.5 or 15% of the longer side of a
//! 1600x1200 background (plain grey, uniform noise, examples/coffee.png stretched: no face),
//! pasted at fixed pseudo-random positions (ChaCha20, seed 11), and each detector setting is
//! asked for faces. A face counts as found when a detection overlaps its box by IoU >= 0.3;
//! every other detection is a false face.
//!
//!   cargo bench --bench detector_recall
//!
//! The "before" rows need the former short-range model, which is no longer committed:
//!   python tools/make_face_models.py --only short-range --out target/face-models
//! (or set BOOMERANG_SHORT_RANGE to its path); without it they are left out.

use std::path::{Path, PathBuf};

use boomerang::certify::detector::{BoundingBox, DetectorConfig, FaceDetector};
use boomerang::io::dataset::load_image;
use boomerang::io::runtime::{self, SessionOptions};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CANVAS: (u32, u32) = (1600, 1200);
const SIZES: [f32; 5] = [0.05, 0.075, 0.10, 0.125, 0.15];
const POSITIONS: usize = 4;
const PORTRAITS: [&str; 6] = [
    "obama",
    "obama2",
    "obama3",
    "obama-partial",
    "biden",
    "astronaut",
];

struct Setting {
    name: &'static str,
    detector: FaceDetector,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    found: usize,
    total: usize,
    false_faces: usize,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn backgrounds() -> anyhow::Result<Vec<(&'static str, RgbImage)>> {
    let (w, h) = CANVAS;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let noise = RgbImage::from_fn(w, h, |_, _| {
        Rgb([
            rng.random_range(40..216),
            rng.random_range(40..216),
            rng.random_range(40..216),
        ])
    });
    let coffee = load_image(&root().join("examples/coffee.png"))?
        .image
        .to_rgb8();
    Ok(vec![
        ("plain", RgbImage::from_pixel(w, h, Rgb([128, 128, 128]))),
        ("noise", noise),
        (
            "texture",
            imageops::resize(&coffee, w, h, FilterType::Triangle),
        ),
    ])
}

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`; the measurement (minutes
    // outside a release build) is for `cargo bench`, the detector's behaviour for its tests.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "detector_recall: measurement skipped (run `cargo bench --bench detector_recall`)"
        );
        return Ok(());
    }
    let rt = runtime::init(None)?;
    let options = SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    };
    let whole = DetectorConfig {
        tiled: false,
        ..DetectorConfig::default()
    };
    let full = root().join("models/face-detector/blazeface-full-range.onnx");
    let short = std::env::var_os("BOOMERANG_SHORT_RANGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/face-models/blazeface-short-range.onnx"));
    let mut settings = Vec::new();
    if short.is_file() {
        for (name, config) in [
            ("short range (before)", whole),
            ("short range + tiles", DetectorConfig::default()),
        ] {
            let detector = FaceDetector::load(rt, &short, &options, config)?;
            settings.push(Setting { name, detector });
        }
    } else {
        println!(
            "{} missing: short-range rows left out (see the header of benches/detector_recall.rs)",
            short.display()
        );
    }
    for (name, config) in [
        ("full range", whole),
        ("full range + tiles (now)", DetectorConfig::default()),
    ] {
        let detector = FaceDetector::load(rt, &full, &options, config)?;
        settings.push(Setting { name, detector });
    }

    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(
        root().join("tests/fixtures/faces/reference.json"),
    )?)?;
    let backgrounds = backgrounds()?;
    let mut tallies = vec![vec![Tally::default(); SIZES.len()]; settings.len()];
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for name in PORTRAITS {
        let file = format!("{name}.jpg");
        let portrait = load_image(&root().join("tests/fixtures/faces").join(&file))?
            .image
            .to_rgb8();
        let b = reference["detections"][&file][0]["box"]
            .as_array()
            .and_then(|b| b.iter().map(|v| v.as_f64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| anyhow::anyhow!("reference.json: no box for {file}"))?;
        let face_width = (b[2] - b[0]) as f32;
        for (s, &size) in SIZES.iter().enumerate() {
            let scale = size * CANVAS.0.max(CANVAS.1) as f32 / face_width;
            let pw = (portrait.width() as f32 * scale).round() as u32;
            let ph = (portrait.height() as f32 * scale).round() as u32;
            let pasted = imageops::resize(&portrait, pw, ph, FilterType::Triangle);
            for (_, background) in &backgrounds {
                for _ in 0..POSITIONS {
                    let x = rng.random_range(0..=CANVAS.0 - pw);
                    let y = rng.random_range(0..=CANVAS.1 - ph);
                    let mut canvas = background.clone();
                    imageops::replace(&mut canvas, &pasted, i64::from(x), i64::from(y));
                    let at = |v: f64, offset: u32| v as f32 * scale + offset as f32;
                    let truth = BoundingBox {
                        x0: at(b[0], x),
                        y0: at(b[1], y),
                        x1: at(b[2], x),
                        y1: at(b[3], y),
                    };
                    for (setting, tally) in settings.iter_mut().zip(&mut tallies) {
                        let faces = setting.detector.detect(&canvas)?;
                        let hits = faces.iter().filter(|f| f.bbox.iou(&truth) >= 0.3).count();
                        let t = &mut tally[s];
                        t.total += 1;
                        t.found += usize::from(hits > 0);
                        t.false_faces += faces.len() - hits.min(1);
                    }
                }
            }
        }
    }

    println!(
        "recall on {} pasted faces per size ({} portraits x {} backgrounds x {POSITIONS} positions, {}x{} canvas)",
        PORTRAITS.len() * backgrounds.len() * POSITIONS,
        PORTRAITS.len(),
        backgrounds.len(),
        CANVAS.0,
        CANVAS.1
    );
    print!("{:<26}", "face / longer side");
    for size in SIZES {
        print!("{:>9}", format!("{:.1}%", size * 100.0));
    }
    println!("{:>14}", "false faces");
    for (setting, tally) in settings.iter().zip(&tallies) {
        print!("{:<26}", setting.name);
        for t in tally {
            print!("{:>9}", format!("{}/{}", t.found, t.total));
        }
        println!("{:>14}", tally.iter().map(|t| t.false_faces).sum::<usize>());
    }
    Ok(())
}
