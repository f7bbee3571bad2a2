//! Certifier evaluation: how often does `boomerang score` certify ("not the same person") a pair
//! that *is* the same person, and how often does it fail to certify two different people?
//!
//! ```sh
//! cargo bench --bench certifier_eval -- --boomerang target/debug/boomerang IDENTITIES/
//! ```
//!
//! IDENTITIES/ holds one folder per person with that person's images (`tools/identities.py`
//! builds one from the pinned face fixtures). For every image it makes identity-keeping
//! transforms with the `image` crate (Gaussian blur σ 1, 2, 3; JPEG quality 20; downscale ×4 and
//! back; rotation ±10°; brightness ±30 %; a crop of 5 % off each side) and runs
//! `BINARY score --json ORIGINAL TRANSFORMED`: every such pair that comes back certified is a
//! **false certification**. Every pair of original images of two different folders is run too:
//! one that is not certified is a **false failure**.
//!
//! It runs the binary rather than the library so that the same bench measures any build,
//! before and after a change. Certified-ness is read from score's JSON: the top-level `certified`
//! (bool) when there is one, else `!verdict.same_identity` (builds before certificate kinds);
//! the top-level `certificate` kind (`face`, `face-lost`, `whole-image`) is counted per
//! transform when present.
//!
//! Options: `--embedder SPEC`, `--policy FILE` (judge as that policy's default level does:
//! second opinions, whole-image embedder, accepted kinds; builds with `score --policy`) and
//! `--threads N` are passed to score; `--keep DIR` keeps the
//! transformed images there; `--max-impostor-pairs N` (default 500) caps the different-person
//! pairs (the first N in sorted order). Deterministic: no randomness anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgb, RgbImage};

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "tiff"];

struct Options {
    boomerang: PathBuf,
    identities: PathBuf,
    score_args: Vec<String>,
    keep: Option<PathBuf>,
    max_impostor_pairs: usize,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut boomerang = None;
    let mut identities = None;
    let mut score_args = Vec::new();
    let mut keep = None;
    let mut max_impostor_pairs = 500;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to harness = false benches.
            "--bench" => {}
            "--boomerang" => boomerang = Some(PathBuf::from(value("--boomerang")?)),
            "--embedder" | "--policy" | "--threads" => {
                let v = value(&arg)?;
                score_args.extend([arg, v]);
            }
            "--keep" => keep = Some(PathBuf::from(value("--keep")?)),
            "--max-impostor-pairs" => {
                max_impostor_pairs = value("--max-impostor-pairs")?
                    .parse()
                    .context("--max-impostor-pairs takes a count")?
            }
            other if other.starts_with("--") => bail!("unknown option {other}"),
            other => identities = Some(PathBuf::from(other)),
        }
    }
    let usage = "usage: cargo bench --bench certifier_eval -- --boomerang BINARY IDENTITIES/ \
                 [--embedder SPEC | --policy FILE] [--threads N] [--keep DIR] \
                 [--max-impostor-pairs N]";
    Ok(Options {
        boomerang: boomerang.with_context(|| format!("--boomerang is required; {usage}"))?,
        identities: identities.with_context(|| format!("IDENTITIES/ is required; {usage}"))?,
        score_args,
        keep,
        max_impostor_pairs,
    })
}

/// `(identity, image path)` for every image of every identity folder, sorted.
fn list_identities(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut images = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("reading {}", folder.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|x| {
                        IMAGE_EXTENSIONS
                            .contains(&x.to_string_lossy().to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        files.sort();
        images.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    Ok(images)
}

/// A transformed image, as written to disk: PNG (lossless) unless the transform is the encoding.
enum Transformed {
    Png(DynamicImage),
    Jpeg(Vec<u8>),
}

type TransformFn = fn(&RgbImage) -> anyhow::Result<Transformed>;

fn blur(image: &RgbImage, sigma: f32) -> Transformed {
    Transformed::Png(DynamicImage::ImageRgb8(imageops::blur(image, sigma)))
}

fn jpeg(image: &RgbImage, quality: u8) -> anyhow::Result<Transformed> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(image)?;
    Ok(Transformed::Jpeg(bytes))
}

fn downscale(image: &RgbImage, factor: u32) -> Transformed {
    let (w, h) = image.dimensions();
    let small = imageops::resize(
        image,
        (w / factor).max(1),
        (h / factor).max(1),
        FilterType::Triangle,
    );
    Transformed::Png(DynamicImage::ImageRgb8(imageops::resize(
        &small,
        w,
        h,
        FilterType::Triangle,
    )))
}

/// Rotation by `degrees` (counter-clockwise) about the center, bilinear, black outside.
fn rotate(image: &RgbImage, degrees: f32) -> Transformed {
    let (w, h) = image.dimensions();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let sample = |x: f32, y: f32| -> [f32; 3] {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let mut acc = [0.0f32; 3];
        for (dx, dy, weight) in [
            (0.0, 0.0, (1.0 - fx) * (1.0 - fy)),
            (1.0, 0.0, fx * (1.0 - fy)),
            (0.0, 1.0, (1.0 - fx) * fy),
            (1.0, 1.0, fx * fy),
        ] {
            let (sx, sy) = (x0 + dx, y0 + dy);
            if sx >= 0.0 && sy >= 0.0 && sx < w as f32 && sy < h as f32 {
                let p = image.get_pixel(sx as u32, sy as u32);
                for c in 0..3 {
                    acc[c] += weight * p[c] as f32;
                }
            }
        }
        acc
    };
    let out = RgbImage::from_fn(w, h, |x, y| {
        // Inverse mapping: the source of output pixel (x, y) is rotated by -degrees (image y
        // points down, so counter-clockwise on screen is this sign).
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = cos * dx - sin * dy + cx;
        let sy = sin * dx + cos * dy + cy;
        let v = sample(sx, sy);
        Rgb(v.map(|c| c.round().clamp(0.0, 255.0) as u8))
    });
    Transformed::Png(DynamicImage::ImageRgb8(out))
}

fn brightness(image: &RgbImage, factor: f32) -> Transformed {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as f32 * factor).round().clamp(0.0, 255.0) as u8;
        }
    }
    Transformed::Png(DynamicImage::ImageRgb8(out))
}

/// Cuts `fraction / 2` of each side off (so `fraction` of each dimension).
fn crop(image: &RgbImage, fraction: f32) -> Transformed {
    let (w, h) = image.dimensions();
    let (mx, my) = (
        (w as f32 * fraction / 2.0).round() as u32,
        (h as f32 * fraction / 2.0).round() as u32,
    );
    let out = imageops::crop_imm(image, mx, my, w - 2 * mx, h - 2 * my).to_image();
    Transformed::Png(DynamicImage::ImageRgb8(out))
}

const TRANSFORMS: [(&str, TransformFn); 11] = [
    ("blur-s1", |i| Ok(blur(i, 1.0))),
    ("blur-s2", |i| Ok(blur(i, 2.0))),
    ("blur-s3", |i| Ok(blur(i, 3.0))),
    ("jpeg-q20", |i| jpeg(i, 20)),
    ("downscale-x4", |i| Ok(downscale(i, 4))),
    ("rotate+10", |i| Ok(rotate(i, 10.0))),
    ("rotate-10", |i| Ok(rotate(i, -10.0))),
    ("bright+30", |i| Ok(brightness(i, 1.3))),
    ("bright-30", |i| Ok(brightness(i, 0.7))),
    ("crop-10", |i| Ok(crop(i, 0.1))),
    // Not a transform: the image against itself, the floor of every distance.
    ("identity", |i| {
        Ok(Transformed::Png(DynamicImage::ImageRgb8(i.clone())))
    }),
];

/// What one `score --json` said.
struct Scored {
    certified: bool,
    certificate: Option<String>,
    distance: Option<f64>,
    faces: (u64, u64),
}

fn score(options: &Options, a: &Path, b: &Path) -> anyhow::Result<Scored> {
    let output = Command::new(&options.boomerang)
        .arg("score")
        .arg("--json")
        .args(&options.score_args)
        .arg(a)
        .arg(b)
        .output()
        .with_context(|| format!("running {}", options.boomerang.display()))?;
    if !output.status.success() {
        bail!(
            "score {} {} exited {}: {}",
            a.display(),
            b.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("score's --json output is not JSON")?;
    let certified = match json.get("certified").and_then(|c| c.as_bool()) {
        Some(certified) => certified,
        None => match json
            .pointer("/verdict/same_identity")
            .and_then(|s| s.as_bool())
        {
            Some(same) => !same,
            None => bail!("score's JSON has neither `certified` nor `verdict.same_identity`"),
        },
    };
    let count = |p: &str| json.pointer(p).and_then(|v| v.as_u64()).unwrap_or(0);
    Ok(Scored {
        certified,
        certificate: json
            .get("certificate")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        distance: json
            .pointer("/comparison/distance")
            .and_then(|d| d.as_f64()),
        faces: (
            count("/comparison/faces_in"),
            count("/comparison/faces_out"),
        ),
    })
}

#[derive(Default)]
struct Tally {
    pairs: usize,
    certified: usize,
    errors: usize,
    kinds: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, scored: &anyhow::Result<Scored>) {
        self.pairs += 1;
        match scored {
            Ok(s) => {
                self.certified += usize::from(s.certified);
                if let Some(kind) = &s.certificate {
                    *self.kinds.entry(kind.clone()).or_default() += 1;
                }
            }
            Err(_) => self.errors += 1,
        }
    }

    fn kinds(&self) -> String {
        if self.kinds.is_empty() {
            return "-".into();
        }
        self.kinds
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn describe(scored: &anyhow::Result<Scored>) -> String {
    match scored {
        Ok(s) => format!(
            "{:>7} faces {}/{} {}{}",
            s.distance.map_or("-".into(), |d| format!("{d:.4}")),
            s.faces.0,
            s.faces.1,
            if s.certified {
                "CERTIFIED"
            } else {
                "not certified"
            },
            s.certificate
                .as_ref()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default()
        ),
        Err(e) => format!("error: {e:#}"),
    }
}

/// What `cargo test --all-targets` runs (it starts bench binaries without `--bench`): every
/// transform on a small synthetic image, checked to keep a plausible picture, and no scoring.
fn self_check() -> anyhow::Result<()> {
    let image = RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    for (name, transform) in TRANSFORMS {
        let out = match transform(&image)? {
            Transformed::Png(out) => out.to_rgb8(),
            Transformed::Jpeg(bytes) => image::load_from_memory(&bytes)?.to_rgb8(),
        };
        let expected = if name == "crop-10" {
            (58, 44)
        } else {
            (64, 48)
        };
        if out.dimensions() != expected {
            bail!("{name}: {:?}, expected {expected:?}", out.dimensions());
        }
        // Away from the borders every transform keeps the gradient's direction.
        let (w, h) = out.dimensions();
        if out.get_pixel(w / 2 + 8, h / 2)[0] <= out.get_pixel(w / 2 - 8, h / 2)[0] {
            bail!("{name}: the horizontal gradient is lost");
        }
    }
    println!(
        "certifier_eval: transforms checked, measurement skipped (run `cargo bench --bench \
         certifier_eval -- --boomerang BINARY IDENTITIES/`)"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measuring is for
    // `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        return self_check();
    }
    let options = parse_args()?;
    let images = list_identities(&options.identities)?;
    let people: std::collections::BTreeSet<&str> = images.iter().map(|(p, _)| p.as_str()).collect();
    if images.is_empty() {
        bail!(
            "{}: no images in identity folders (IDENTITIES/<person>/<image>)",
            options.identities.display()
        );
    }
    let temp = tempfile::tempdir()?;
    let work = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => temp.path().to_path_buf(),
    };
    println!(
        "certifier evaluation: {} ({} images of {} identities), binary {}",
        options.identities.display(),
        images.len(),
        people.len(),
        options.boomerang.display()
    );
    println!("\nsame person, transformed (a certified pair is a false certification):");
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (index, (person, path)) in images.iter().enumerate() {
        let original = image::open(path)
            .with_context(|| format!("decoding {}", path.display()))?
            .to_rgb8();
        for (name, transform) in TRANSFORMS {
            let file = work.join(format!(
                "{index:03}-{person}-{name}.{}",
                if name == "jpeg-q20" { "jpg" } else { "png" }
            ));
            match transform(&original)? {
                Transformed::Png(image) => image
                    .save(&file)
                    .with_context(|| format!("writing {}", file.display()))?,
                Transformed::Jpeg(bytes) => std::fs::write(&file, bytes)?,
            }
            let scored = score(&options, path, &file);
            println!(
                "  {:<13} {:<40} {}",
                name,
                path.strip_prefix(&options.identities)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                describe(&scored)
            );
            tallies.entry(name).or_default().add(&scored);
        }
    }
    println!("\ndifferent people (a pair not certified is a false failure):");
    let mut different = Tally::default();
    'pairs: for (i, (person_a, a)) in images.iter().enumerate() {
        for (person_b, b) in &images[i + 1..] {
            if person_a == person_b {
                continue;
            }
            if different.pairs >= options.max_impostor_pairs {
                break 'pairs;
            }
            let scored = score(&options, a, b);
            let rel = |p: &Path| {
                p.strip_prefix(&options.identities)
                    .unwrap_or(p)
                    .display()
                    .to_string()
            };
            println!(
                "  {:<54} {}",
                format!("{} vs {}", rel(a), rel(b)),
                describe(&scored)
            );
            different.add(&scored);
        }
    }

    println!("\nsummary (binary {}):", options.boomerang.display());
    println!(
        "  {:<13} {:>5} {:>9} {:>22} {:>6}  certificates",
        "transform", "pairs", "certified", "false-certification", "errors"
    );
    let mut all = Tally::default();
    for (name, _) in TRANSFORMS {
        let Some(t) = tallies.get(name) else { continue };
        let rate = t.certified as f64 / (t.pairs - t.errors).max(1) as f64;
        println!(
            "  {:<13} {:>5} {:>9} {:>22} {:>6}  {}",
            name,
            t.pairs,
            t.certified,
            format!("{rate:.3}"),
            t.errors,
            t.kinds()
        );
        if name != "identity" {
            all.pairs += t.pairs;
            all.certified += t.certified;
            all.errors += t.errors;
        }
    }
    println!(
        "  {:<13} {:>5} {:>9} {:>22} {:>6}",
        "all (no id.)",
        all.pairs,
        all.certified,
        format!(
            "{:.3}",
            all.certified as f64 / (all.pairs - all.errors).max(1) as f64
        ),
        all.errors
    );
    let failures = different.pairs - different.errors - different.certified;
    println!(
        "  different people: {} pairs, {} not certified: false-failure rate {:.3}, {} errors; \
         certificates {}",
        different.pairs,
        failures,
        failures as f64 / (different.pairs - different.errors).max(1) as f64,
        different.errors,
        different.kinds()
    );
    Ok(())
}
