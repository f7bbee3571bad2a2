//! `boomerang enhance`: perceptual resolution enhancement. Each image is upsampled by an integer
//! factor K with a Lanczos3 filter (`image`'s `FilterType::Lanczos3`), then pulled back onto the
//! image manifold by Boomerang at a low strength, so the model adds plausible detail.
//!
//! The model only works well near its native resolution, so the upsampled image is processed in
//! square tiles of the model's working size (`--tile`), never rescaled again:
//! - Along each axis, tiles are spread evenly with the first at 0 and the last flush with the far
//!   edge, as few as keep neighbours overlapping by at least `--overlap` pixels. An image side
//!   shorter than a tile is padded to one tile by repeating its last row or column; the padding is
//!   cut off afterwards.
//! - Each tile's weight ramps linearly across every overlap it shares with a neighbour, from
//!   0.5/V at its own edge to 1 - 0.5/V at the neighbour's (V the overlap), and is 1 elsewhere;
//!   a 2-d weight is the product of the two axes'. Where two tiles overlap, their ramps sum to
//!   exactly 1, and the blend divides by the summed weights anyway, so any spacing blends to 1.
//! - Tile i (row-major) is seeded by sha256(domain, image seed, i), the image seed being
//!   `image_seed(run seed, sha256 of the input file, 0)`.
//!
//! The output is exactly K times the input's width and height, 8-bit RGB (grayscale stays
//! grayscale, alpha is dropped), PNG without metadata.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ndarray::{s, Array2, Array3, Array4};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batchrun::{self, Counts, Manifest, ManifestRow, RowStatus, UsageError};
use crate::dataset::{self, path_text, Action};
use crate::engine::{Engine, EngineError, Settings};
use crate::noise::image_seed;
use crate::runtime::{self, SessionOptions};
use crate::timing::Stage;

/// The manifest's file name inside OUT.
pub const MANIFEST_NAME: &str = "enhance.csv";

/// The largest output side: the blend holds four f32 planes of the whole upsampled image.
pub const MAX_OUTPUT_SIDE: u32 = 8192;

/// Validated `enhance` configuration.
#[derive(Debug, Clone)]
pub struct EnhanceConfig {
    pub model: PathBuf,
    pub settings: Settings,
    /// `None`: the resumed manifest's run seed, else a fresh random one.
    pub seed: Option<u64>,
    pub scale: u32,
    /// `None`: the model's working size.
    pub tile: Option<u32>,
    /// `None`: a quarter of the tile.
    pub overlap: Option<u32>,
    /// Tiles per UNet batch.
    pub batch: usize,
    pub input: PathBuf,
    pub output: PathBuf,
    pub resume: bool,
    pub quiet: bool,
    pub timings: bool,
    pub session: SessionOptions,
    pub onnxruntime: Option<PathBuf>,
}

/// Tile side and the least overlap between neighbours, in pixels of the upsampled image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub tile: u32,
    pub overlap: u32,
}

impl Tiling {
    /// Checks a tiling against a model: the tile must give latents the UNet can halve down to its
    /// bottom (a multiple of 8 latent cells), and the overlap must leave tiles room to advance.
    pub fn new(tile: u32, overlap: u32, vae_scale_factor: usize) -> Result<Tiling, UsageError> {
        let multiple = 8 * vae_scale_factor as u32;
        if tile == 0 || !tile.is_multiple_of(multiple) {
            return Err(UsageError(format!(
                "--tile {tile} must be a positive multiple of {multiple} (8 latent cells of {vae_scale_factor} pixels)"
            )));
        }
        if overlap >= tile {
            return Err(UsageError(format!(
                "--overlap {overlap} must be smaller than the tile ({tile})"
            )));
        }
        Ok(Tiling { tile, overlap })
    }
}

/// Where tiles start along an axis of `length` pixels (at least one tile long): evenly spread,
/// first at 0, last at `length - tile`, as few as keep neighbours overlapping by `overlap`.
pub fn tile_starts(length: u32, tiling: Tiling) -> Vec<u32> {
    let Tiling { tile, overlap } = tiling;
    if length <= tile {
        return vec![0];
    }
    let advance = u64::from(tile - overlap);
    let beyond = u64::from(length - tile);
    let count = 1 + beyond.div_ceil(advance);
    (0..count)
        .map(|i| ((i * beyond + (count - 1) / 2) / (count - 1)) as u32)
        .collect()
}

/// Per-pixel weights of the tile starting at `starts[index]`, along one axis.
fn axis_weights(starts: &[u32], index: usize, tile: u32) -> Vec<f32> {
    let start = starts[index];
    let left = index
        .checked_sub(1)
        .map(|previous| starts[previous] + tile - start)
        .unwrap_or(0);
    let right = starts
        .get(index + 1)
        .map(|&next| start + tile - next)
        .unwrap_or(0);
    (0..tile)
        .map(|local| {
            let mut weight = 1.0;
            if local < left {
                weight *= (local as f32 + 0.5) / left as f32;
            }
            if local + right >= tile {
                weight *= (tile - local) as f32 - 0.5;
                weight /= right as f32;
            }
            weight
        })
        .collect()
}

/// The seed of tile `index` of an image.
pub fn tile_seed(image_seed: &[u8; 32], index: u32) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"boomerang/tile-seed/v1");
    hasher.update(image_seed);
    hasher.update(index.to_le_bytes());
    hasher.finalize().into()
}

/// The input scaled by `scale` in both directions with Lanczos3, as 8-bit RGB.
pub fn upsample(image: &DynamicImage, scale: u32) -> RgbImage {
    let rgb = image.to_rgb8();
    if scale == 1 {
        return rgb;
    }
    let (width, height) = rgb.dimensions();
    image::imageops::resize(&rgb, width * scale, height * scale, FilterType::Lanczos3)
}

/// Boomerang over `image` in blended tiles (see the module documentation); returns the result,
/// the same size as `image`, and the number of tiles.
pub fn boomerang_tiled(
    engine: &mut Engine,
    settings: &Settings,
    image: &RgbImage,
    tiling: Tiling,
    batch: usize,
    image_seed: &[u8; 32],
) -> Result<(RgbImage, usize), EngineError> {
    let (width, height) = image.dimensions();
    let tile = tiling.tile;
    let padded_width = width.max(tile);
    let padded_height = height.max(tile);
    let xs = tile_starts(padded_width, tiling);
    let ys = tile_starts(padded_height, tiling);
    let x_weights: Vec<Vec<f32>> = (0..xs.len()).map(|i| axis_weights(&xs, i, tile)).collect();
    let y_weights: Vec<Vec<f32>> = (0..ys.len()).map(|i| axis_weights(&ys, i, tile)).collect();
    let tiles: Vec<(usize, usize)> = (0..ys.len())
        .flat_map(|row| (0..xs.len()).map(move |column| (row, column)))
        .collect();

    let mut sum = Array3::<f32>::zeros((3, padded_height as usize, padded_width as usize));
    let mut weight = Array2::<f32>::zeros((padded_height as usize, padded_width as usize));
    let t = tile as usize;
    for (chunk_index, chunk) in tiles.chunks(batch.max(1)).enumerate() {
        let mut tensor = Array4::<f32>::zeros((chunk.len(), 3, t, t));
        for (slot, &(row, column)) in chunk.iter().enumerate() {
            let (x0, y0) = (xs[column], ys[row]);
            for y in 0..tile {
                // Past the image: its last row/column repeated (padding for short sides).
                let source_y = (y0 + y).min(height - 1);
                for x in 0..tile {
                    let pixel = image.get_pixel((x0 + x).min(width - 1), source_y);
                    for channel in 0..3 {
                        tensor[[slot, channel, y as usize, x as usize]] =
                            f32::from(pixel[channel]) / 255.0 * 2.0 - 1.0;
                    }
                }
            }
        }
        let first = chunk_index * batch.max(1);
        let seeds: Vec<[u8; 32]> = (first..first + chunk.len())
            .map(|index| tile_seed(image_seed, index as u32))
            .collect();
        let (output, _) = engine.run(settings, tensor.view(), &seeds)?;
        for (result, &(row, column)) in output.images.outer_iter().zip(chunk) {
            let (x0, y0) = (xs[column] as usize, ys[row] as usize);
            let (wx, wy) = (&x_weights[column], &y_weights[row]);
            let mut weight_window = weight.slice_mut(s![y0..y0 + t, x0..x0 + t]);
            for ((y, x), w) in weight_window.indexed_iter_mut() {
                *w += wy[y] * wx[x];
            }
            for channel in 0..3 {
                let mut window = sum.slice_mut(s![channel, y0..y0 + t, x0..x0 + t]);
                for ((y, x), value) in window.indexed_iter_mut() {
                    *value += wy[y] * wx[x] * result[[channel, y, x]];
                }
            }
        }
    }

    let mut blended = RgbImage::new(width, height);
    for (x, y, pixel) in blended.enumerate_pixels_mut() {
        let (row, column) = (y as usize, x as usize);
        for channel in 0..3 {
            let value = sum[[channel, row, column]] / weight[[row, column]];
            // diffusers' numpy_to_pil: (x * 255).round()
            pixel[channel] = (value * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok((blended, tiles.len()))
}

/// Upsample by `scale`, then Boomerang in tiles; grayscale input gives grayscale output.
pub fn enhance_image(
    engine: &mut Engine,
    settings: &Settings,
    image: &DynamicImage,
    scale: u32,
    tiling: Tiling,
    batch: usize,
    image_seed: &[u8; 32],
) -> Result<(DynamicImage, usize), EngineError> {
    let upsampled = upsample(image, scale);
    let (result, tiles) = boomerang_tiled(engine, settings, &upsampled, tiling, batch, image_seed)?;
    let result = if image.color().has_color() {
        DynamicImage::ImageRgb8(result)
    } else {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(result).to_luma8())
    };
    Ok((result, tiles))
}

/// One row of `enhance.csv`. Paths are relative (`/`-separated) to IN (its folder, when IN is a
/// file) and OUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnhanceRow {
    pub source: String,
    pub source_sha256: String,
    pub output: String,
    pub output_sha256: String,
    pub status: RowStatus,
    pub reason: String,
    pub scale: Option<u32>,
    pub strength: Option<f64>,
    /// Empty at strength 0 (no noise added).
    pub start_timestep: Option<f64>,
    pub steps: Option<usize>,
    pub scheduler: String,
    pub tile: Option<u32>,
    pub overlap: Option<u32>,
    pub tiles: Option<usize>,
    /// The image seed (hex); tile seeds derive from it.
    pub seed: String,
    pub run_seed: Option<u64>,
    /// Of the output.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub model_sha256: String,
}

impl ManifestRow for EnhanceRow {
    const COLUMNS: &'static [&'static str] = &[
        "source",
        "source_sha256",
        "output",
        "output_sha256",
        "status",
        "reason",
        "scale",
        "strength",
        "start_timestep",
        "steps",
        "scheduler",
        "tile",
        "overlap",
        "tiles",
        "seed",
        "run_seed",
        "width",
        "height",
        "model_sha256",
    ];
}

/// `<stem>.png` where the input sits, relative to OUT.
pub fn output_name(relative: &Path) -> PathBuf {
    let mut name = relative
        .file_stem()
        .unwrap_or(relative.as_os_str())
        .to_os_string();
    name.push(".png");
    relative.with_file_name(name)
}

/// Runs `enhance`; returns what happened (its `exit_code` is the process's).
pub fn run(config: &EnhanceConfig) -> anyhow::Result<Counts> {
    batchrun::check_input_output(&config.input, &config.output)?;
    let manifest_path = config.output.join(MANIFEST_NAME);
    if !config.resume && !dataset::output_is_empty(&config.output).map_err(UsageError::from)? {
        return Err(UsageError(format!(
            "output {} is not empty: continue that run with --resume, or choose an empty folder",
            config.output.display()
        ))
        .into());
    }
    let (root, entries) = batchrun::entries(&config.input)?;
    // `<stem>.png` in the input's folder; a later input with the same output (a.jpg and a.png)
    // gets a skipped row.
    let planned = dataset::plan_outputs(entries, None);
    let outputs: HashSet<String> = planned
        .iter()
        .filter_map(|p| match &p.action {
            Action::Process { output } => Some(path_text(output)),
            Action::Skip(_) => None,
        })
        .collect();

    // Before anything is written, so a model or runtime problem leaves OUT untouched.
    let runtime = runtime::init(config.onnxruntime.as_deref())?;
    let mut engine = Engine::open(&config.model, runtime, &config.session)?;
    std::fs::create_dir_all(&config.output)
        .with_context(|| format!("creating {}", config.output.display()))?;
    let (mut manifest, kept) = if config.resume {
        Manifest::<EnhanceRow>::resume(&manifest_path, |row| {
            row.status == RowStatus::Ok
                && batchrun::file_sha256(&config.output.join(&row.output)).as_deref()
                    == Some(row.output_sha256.as_str())
        })?
    } else {
        (Manifest::create(&manifest_path)?, Vec::new())
    };
    let run_seed = resolve_seed(config.seed, &kept)?;
    let mut kept: HashMap<String, EnhanceRow> = kept
        .into_iter()
        .map(|row| (row.output.clone(), row))
        .collect();
    if let Some(stray) = kept.keys().find(|output| !outputs.contains(*output)) {
        return Err(UsageError(format!(
            "the manifest lists {stray}, which this run would not write: resume with the input of that run, or start over in an empty folder"
        ))
        .into());
    }

    let geometry = engine.model.geometry;
    let tile = config.tile.unwrap_or(geometry.image_size() as u32);
    let tiling = Tiling::new(
        tile,
        config.overlap.unwrap_or(tile / 4),
        geometry.vae_scale_factor,
    )?;
    let model_sha256 = engine.model.model_hash();
    let scheduler = engine.scheduler_kind(&config.settings).to_string();
    let (_, start) = engine.plan(&config.settings)?;
    let start_timestep = start.start_timestep();
    if !config.quiet {
        println!(
            "model {} (manifest sha256 {model_sha256}), working size {}",
            config.model.display(),
            geometry.image_size()
        );
        println!(
            "scale {} (Lanczos3), strength {}: {}; tiles {}x{} overlapping by at least {} px",
            config.scale,
            config.settings.strength,
            match start_timestep {
                Some(t) => format!(
                    "{} steps of {scheduler}, start timestep {t}",
                    config.settings.steps
                ),
                None => "no noise added (the VAE round trip)".into(),
            },
            tiling.tile,
            tiling.tile,
            tiling.overlap
        );
        println!("seed {run_seed}; manifest {}", manifest_path.display());
    }

    let base_row = |source: &Path| EnhanceRow {
        source: path_text(source),
        source_sha256: String::new(),
        output: String::new(),
        output_sha256: String::new(),
        status: RowStatus::Ok,
        reason: String::new(),
        scale: None,
        strength: None,
        start_timestep: None,
        steps: None,
        scheduler: String::new(),
        tile: None,
        overlap: None,
        tiles: None,
        seed: String::new(),
        run_seed: Some(run_seed),
        width: None,
        height: None,
        model_sha256: model_sha256.clone(),
    };
    let mut counts = Counts {
        kept: kept.len() as u64,
        ..Counts::default()
    };
    let bar = batchrun::progress_bar(outputs.len() as u64, "images", config.quiet);
    for dataset::Planned { relative, action } in &planned {
        let output = match action {
            Action::Process { output } => output,
            Action::Skip(reason) => {
                manifest.append(&EnhanceRow {
                    status: RowStatus::Skipped,
                    reason: reason.to_string(),
                    ..base_row(relative)
                })?;
                counts.skipped += 1;
                continue;
            }
        };
        let error_row = |reason: String, source_sha256: String| EnhanceRow {
            status: RowStatus::Error,
            reason,
            source_sha256,
            ..base_row(relative)
        };
        let loaded = engine.timer.time(Stage::ImageIo, |_| {
            dataset::load_image(&root.join(relative))
        });
        let input = match loaded {
            Ok(input) => input,
            Err(error) => {
                manifest.append(&error_row(error.reason(), String::new()))?;
                counts.errors += 1;
                bar.inc(1);
                continue;
            }
        };
        let source_sha256 = hex::encode(input.sha256);
        let seed = image_seed(run_seed, &input.sha256, 0);
        let (width, height) = (
            u64::from(input.image.width()) * u64::from(config.scale),
            u64::from(input.image.height()) * u64::from(config.scale),
        );
        let row = EnhanceRow {
            source_sha256: source_sha256.clone(),
            output: path_text(output),
            scale: Some(config.scale),
            strength: Some(config.settings.strength),
            start_timestep,
            steps: Some(config.settings.steps),
            scheduler: scheduler.clone(),
            tile: Some(tiling.tile),
            overlap: Some(tiling.overlap),
            seed: hex::encode(seed),
            width: u32::try_from(width).ok(),
            height: u32::try_from(height).ok(),
            ..base_row(relative)
        };
        if let Some(previous) = kept.remove(&row.output) {
            let same = EnhanceRow {
                output_sha256: previous.output_sha256.clone(),
                tiles: previous.tiles,
                ..row.clone()
            };
            if previous != same {
                return Err(UsageError(format!(
                    "{}: its manifest row was made from another input file or with other settings; resume with the arguments of that run, or start over in an empty folder",
                    row.output
                ))
                .into());
            }
            bar.inc(1);
            continue;
        }
        if width.max(height) > u64::from(MAX_OUTPUT_SIDE) {
            manifest.append(&error_row(
                format!(
                    "the output would be {width}x{height}, over the {MAX_OUTPUT_SIDE}-pixel limit per side: use a smaller --scale"
                ),
                source_sha256,
            ))?;
            counts.errors += 1;
            bar.inc(1);
            continue;
        }
        let (result, tiles) = enhance_image(
            &mut engine,
            &config.settings,
            &input.image,
            config.scale,
            tiling,
            config.batch,
            &seed,
        )?;
        let output_sha256 = engine.timer.time(Stage::ImageIo, |_| {
            batchrun::write_png(&result, &config.output.join(output))
        });
        manifest.append(&EnhanceRow {
            output_sha256: output_sha256.map_err(anyhow::Error::msg)?,
            tiles: Some(tiles),
            ..row
        })?;
        counts.written += 1;
        bar.inc(1);
        bar.set_message(format!("{} errors", counts.errors));
    }
    bar.finish_and_clear();
    if !config.quiet {
        println!("{}", counts.summary());
    }
    if config.timings {
        println!("{}", engine.timer.report());
    }
    Ok(counts)
}

/// The run seed: the one given, else the one the resumed rows were made with, else a fresh one.
fn resolve_seed(given: Option<u64>, kept: &[EnhanceRow]) -> Result<u64, UsageError> {
    batchrun::resolve_seed(given, kept.iter().map(|row| row.run_seed))
}
