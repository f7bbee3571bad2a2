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

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ndarray::{s, Array2, Array3, Array4, ArrayView3, Axis};

use sha2::{Digest, Sha256};

use super::dataset_run::{
    self, manifest_row, DatasetOptions, DatasetRun, OutputCounts, OutputStatus, Refused, RunStart,
    SamplerOptions,
};
use crate::diffusion::engine::{Engine, EngineError, Settings};
use crate::diffusion::noise::image_seed;
use crate::diffusion::timing::Stage;
use crate::io::dataset::{self, path_text, Action, LoadedInput};
use crate::io::imageio;

/// The manifest's file name inside OUT.
pub const MANIFEST_NAME: &str = "enhance.csv";

/// The largest output side: the blend holds four f32 planes of the whole upsampled image.
pub const MAX_OUTPUT_SIDE: u32 = 8192;

/// Validated `enhance` configuration.
#[derive(Debug, Clone)]
pub struct EnhanceConfig {
    /// Its batch counts tiles per UNet batch.
    pub sampler: SamplerOptions,
    pub scale: u32,
    /// `None`: the model's working size.
    pub tile: Option<u32>,
    /// `None`: a quarter of the tile.
    pub overlap: Option<u32>,
    pub dataset: DatasetOptions,
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
    pub fn new(tile: u32, overlap: u32, vae_scale_factor: usize) -> Result<Tiling, Refused> {
        let multiple = 8 * vae_scale_factor as u32;
        if tile == 0 || !tile.is_multiple_of(multiple) {
            return Err(Refused(format!(
                "--tile {tile} must be a positive multiple of {multiple} (8 latent cells of {vae_scale_factor} pixels)"
            )));
        }
        if overlap >= tile {
            return Err(Refused(format!(
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

/// Where the tiles start along one side of the (padded) image, and each one's blend weights.
struct TileAxis {
    starts: Vec<u32>,
    weights: Vec<Vec<f32>>,
}

impl TileAxis {
    fn new(length: u32, tiling: Tiling) -> TileAxis {
        let starts = tile_starts(length, tiling);
        let weights = (0..starts.len())
            .map(|i| axis_weights(&starts, i, tiling.tile))
            .collect();
        TileAxis { starts, weights }
    }
}

/// The tiles of an image and the running weighted sum of their results.
pub struct TileBlend {
    width: u32,
    height: u32,
    tile: u32,
    columns: TileAxis,
    rows: TileAxis,
    /// `[3, padded height, padded width]`
    sum: Array3<f32>,
    weight: Array2<f32>,
}

impl TileBlend {
    /// Tiles for a `width` x `height` image; a side shorter than a tile is padded to one tile.
    pub fn new(width: u32, height: u32, tiling: Tiling) -> TileBlend {
        let tile = tiling.tile;
        let (padded_width, padded_height) = (width.max(tile), height.max(tile));
        TileBlend {
            width,
            height,
            tile,
            columns: TileAxis::new(padded_width, tiling),
            rows: TileAxis::new(padded_height, tiling),
            sum: Array3::zeros((3, padded_height as usize, padded_width as usize)),
            weight: Array2::zeros((padded_height as usize, padded_width as usize)),
        }
    }

    pub fn len(&self) -> usize {
        self.columns.starts.len() * self.rows.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column and row of tile `index` (row-major).
    fn column_row(&self, index: usize) -> (usize, usize) {
        let columns = self.columns.starts.len();
        (index % columns, index / columns)
    }

    /// Top-left corner of tile `index` (row-major).
    pub fn origin(&self, index: usize) -> (u32, u32) {
        let (column, row) = self.column_row(index);
        (self.columns.starts[column], self.rows.starts[row])
    }

    /// The model input for tile `index`, `[3, tile, tile]` in `[-1, 1]`; past the image's right
    /// or bottom edge its last column or row is repeated.
    pub fn crop(&self, image: &RgbImage, index: usize) -> Array3<f32> {
        let (x0, y0) = self.origin(index);
        let t = self.tile as usize;
        let (width, height) = image.dimensions();
        Array3::from_shape_fn((3, t, t), |(channel, y, x)| {
            let pixel = image.get_pixel(
                (x0 + x as u32).min(width - 1),
                (y0 + y as u32).min(height - 1),
            );
            f32::from(pixel[channel]) / 255.0 * 2.0 - 1.0
        })
    }

    /// Adds tile `index`'s result, `[3, tile, tile]` in `[0, 1]`, with its weights.
    pub fn add(&mut self, index: usize, result: ArrayView3<f32>) {
        let (x0, y0) = self.origin(index);
        let (x0, y0, t) = (x0 as usize, y0 as usize, self.tile as usize);
        let (column, row) = self.column_row(index);
        let (wx, wy) = (&self.columns.weights[column], &self.rows.weights[row]);
        let mut weight = self.weight.slice_mut(s![y0..y0 + t, x0..x0 + t]);
        for ((y, x), w) in weight.indexed_iter_mut() {
            *w += wy[y] * wx[x];
        }
        for channel in 0..3 {
            let mut window = self.sum.slice_mut(s![channel, y0..y0 + t, x0..x0 + t]);
            for ((y, x), value) in window.indexed_iter_mut() {
                *value += wy[y] * wx[x] * result[[channel, y, x]];
            }
        }
    }

    /// The weighted mean of every tile added, cut to the image's size, as 8-bit RGB.
    pub fn finish(&self) -> RgbImage {
        let mut blended = RgbImage::new(self.width, self.height);
        for (x, y, pixel) in blended.enumerate_pixels_mut() {
            let (row, column) = (y as usize, x as usize);
            let weight = self.weight[[row, column]].max(f32::MIN_POSITIVE);
            for channel in 0..3 {
                let value = self.sum[[channel, row, column]] / weight;
                // diffusers' numpy_to_pil: (x * 255).round()
                pixel[channel] = (value * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        blended
    }
}

/// Boomerang over `image` in blended tiles (see the module documentation), `batch` tiles per
/// UNet batch; returns the result, the same size as `image`, and the number of tiles.
pub fn boomerang_tiled(
    engine: &mut Engine,
    settings: &Settings,
    image: &RgbImage,
    tiling: Tiling,
    batch: usize,
    image_seed: &[u8; 32],
) -> Result<(RgbImage, usize), EngineError> {
    let (width, height) = image.dimensions();
    let mut blend = TileBlend::new(width, height, tiling);
    let t = tiling.tile as usize;
    let indices: Vec<usize> = (0..blend.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let mut tensor = Array4::<f32>::zeros((chunk.len(), 3, t, t));
        for (slot, &index) in chunk.iter().enumerate() {
            tensor
                .index_axis_mut(Axis(0), slot)
                .assign(&blend.crop(image, index));
        }
        let seeds: Vec<[u8; 32]> = chunk
            .iter()
            .map(|&index| tile_seed(image_seed, index as u32))
            .collect();
        let (output, _) = engine.run(settings, tensor.view(), &seeds)?;
        for (result, &index) in output.images.outer_iter().zip(chunk) {
            blend.add(index, result);
        }
    }
    Ok((blend.finish(), blend.len()))
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

manifest_row! {
    /// One row of `enhance.csv`. Paths are relative (`/`-separated) to IN (its folder, when IN is a
    /// file) and OUT.
    pub struct EnhanceRow {
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

/// Runs `enhance`; returns what happened (its `exit` is the process status).
pub fn run(config: &EnhanceConfig) -> anyhow::Result<OutputCounts> {
    dataset_run::check_input_output(&config.dataset.input, &config.dataset.output)?;
    dataset_run::refuse_non_empty(&config.dataset.output, config.dataset.resume)?;
    let (root, entries) = dataset_run::entries(&config.dataset.input)?;
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
    let engine = dataset_run::open_engine(&config.sampler.model, &config.sampler.runtime)?;
    let tiling = tiling_for(config, &engine)?;
    let (run, kept) = DatasetRun::start(
        engine,
        &RunStart {
            output: &config.dataset.output,
            manifest_name: MANIFEST_NAME,
            resume: config.dataset.resume,
            seed: config.sampler.seed,
            outputs: &outputs,
            resume_with: "the input of that run",
        },
    )?;
    let mut enhancing = Enhancing::new(config, run, kept, tiling, root)?;
    enhancing.print_header();
    enhancing
        .run
        .show_progress(outputs.len(), config.dataset.quiet);
    for item in &planned {
        enhancing.process(item)?;
    }
    Ok(enhancing
        .run
        .finish(config.dataset.quiet, config.dataset.timings))
}

/// `--tile` (default: the model's working size) and `--overlap` (default: a quarter tile),
/// checked against the model.
fn tiling_for(config: &EnhanceConfig, engine: &Engine) -> Result<Tiling, Refused> {
    let geometry = engine.model.geometry;
    let tile = config.tile.unwrap_or(geometry.image_size() as u32);
    Tiling::new(
        tile,
        config.overlap.unwrap_or(tile / 4),
        geometry.vae_scale_factor,
    )
}

/// A started enhance run and what all its rows share.
struct Enhancing<'a> {
    config: &'a EnhanceConfig,
    run: DatasetRun<EnhanceRow>,
    /// Rows of the resumed run by output path; each is taken when its input comes up.
    kept: HashMap<String, EnhanceRow>,
    tiling: Tiling,
    /// What input paths are relative to (IN, or its folder when IN is a file).
    root: PathBuf,
    scheduler: String,
    start_timestep: Option<f64>,
}

impl<'a> Enhancing<'a> {
    fn new(
        config: &'a EnhanceConfig,
        run: DatasetRun<EnhanceRow>,
        kept: HashMap<String, EnhanceRow>,
        tiling: Tiling,
        root: PathBuf,
    ) -> anyhow::Result<Enhancing<'a>> {
        let engine = &run.engine;
        let scheduler = engine
            .schedulers
            .kind(&config.sampler.settings)?
            .to_string();
        let (_, start) = engine.schedulers.plan(&config.sampler.settings)?;
        Ok(Enhancing {
            config,
            kept,
            tiling,
            root,
            scheduler,
            start_timestep: start.start_timestep(),
            run,
        })
    }

    fn print_header(&self) {
        let config = self.config;
        if config.dataset.quiet {
            return;
        }
        println!(
            "model {} (manifest sha256 {}), working size {}",
            config.sampler.model.display(),
            self.run.model_sha256,
            self.run.engine.model.geometry.image_size()
        );
        println!(
            "scale {} (Lanczos3), strength {}: {}; tiles {}x{} overlapping by at least {} px",
            config.scale,
            config.sampler.settings.strength,
            match self.start_timestep {
                Some(t) => format!(
                    "{} steps of {}, start timestep {t}",
                    config.sampler.settings.steps, self.scheduler
                ),
                None => "no noise added (the VAE round trip)".into(),
            },
            self.tiling.tile,
            self.tiling.tile,
            self.tiling.overlap
        );
        self.run.print_seed(config.dataset.quiet);
    }

    /// The row of an input that ends without an output.
    fn log_unfinished(
        &mut self,
        relative: &Path,
        status: OutputStatus,
        reason: String,
        source_sha256: String,
    ) -> anyhow::Result<()> {
        let row = EnhanceRow {
            status,
            reason,
            source_sha256,
            ..self.run.row(relative)
        };
        self.run.log(&row)?;
        Ok(())
    }

    /// One planned input: skipped, an error, kept from the resumed run, or enhanced.
    fn process(&mut self, item: &dataset::Planned) -> anyhow::Result<()> {
        let relative = &item.relative;
        let output = match &item.action {
            Action::Process { output } => output,
            Action::Skip(reason) => {
                let reason = reason.to_string();
                return self.log_unfinished(relative, OutputStatus::Skipped, reason, String::new());
            }
        };
        let path = self.root.join(relative);
        let loaded = (self.run.engine.timer).time(Stage::ImageIo, |_| dataset::load_image(&path));
        match loaded {
            Ok(input) => self.enhance(relative, output, &input)?,
            Err(error) => {
                self.log_unfinished(relative, OutputStatus::Error, error.reason(), String::new())?;
            }
        }
        self.run.tick(1);
        Ok(())
    }

    /// The row `input` gets, but for what only enhancing it tells (output sha256, tiles).
    fn planned_row(&self, relative: &Path, output: &Path, input: &LoadedInput) -> EnhanceRow {
        let config = self.config;
        let seed = image_seed(self.run.run_seed, &input.sha256, 0);
        let (width, height) = output_size(input, config.scale);
        EnhanceRow {
            source_sha256: hex::encode(input.sha256),
            output: path_text(output),
            scale: Some(config.scale),
            strength: Some(config.sampler.settings.strength),
            start_timestep: self.start_timestep,
            steps: Some(config.sampler.settings.steps),
            scheduler: self.scheduler.clone(),
            tile: Some(self.tiling.tile),
            overlap: Some(self.tiling.overlap),
            seed: hex::encode(seed),
            width: u32::try_from(width).ok(),
            height: u32::try_from(height).ok(),
            ..self.run.row(relative)
        }
    }

    fn enhance(
        &mut self,
        relative: &Path,
        output: &Path,
        input: &LoadedInput,
    ) -> anyhow::Result<()> {
        let row = self.planned_row(relative, output, input);
        if self.is_kept(&row)? {
            return Ok(());
        }
        let (width, height) = output_size(input, self.config.scale);
        if width.max(height) > u64::from(MAX_OUTPUT_SIDE) {
            let reason = format!(
                "the output would be {width}x{height}, over the {MAX_OUTPUT_SIDE}-pixel limit per side: use a smaller --scale"
            );
            return self.log_unfinished(relative, OutputStatus::Error, reason, row.source_sha256);
        }
        let config = self.config;
        let seed = image_seed(self.run.run_seed, &input.sha256, 0);
        let (result, tiles) = enhance_image(
            &mut self.run.engine,
            &config.sampler.settings,
            &input.image,
            config.scale,
            self.tiling,
            config.sampler.batch,
            &seed,
        )?;
        let output_sha256 = (self.run.engine.timer).time(Stage::ImageIo, |_| {
            imageio::write_png_below(&result, &config.dataset.output, output)
        });
        let row = EnhanceRow {
            output_sha256: output_sha256?,
            tiles: Some(tiles),
            ..row
        };
        self.run.log(&row)?;
        Ok(())
    }

    /// Whether the resumed run already wrote this row's output; a row made from another input
    /// or with other settings refuses the resume.
    fn is_kept(&mut self, row: &EnhanceRow) -> Result<bool, Refused> {
        let Some(previous) = self.kept.remove(&row.output) else {
            return Ok(false);
        };
        let same = EnhanceRow {
            output_sha256: previous.output_sha256.clone(),
            tiles: previous.tiles,
            ..row.clone()
        };
        if previous != same {
            return Err(Refused(format!(
                "{}: its manifest row was made from another input file or with other settings; resume with the arguments of that run, or start over in an empty folder",
                row.output
            )));
        }
        Ok(true)
    }
}

/// The output's width and height: the input's times `scale` (wide enough not to overflow).
fn output_size(input: &LoadedInput, scale: u32) -> (u64, u64) {
    (
        u64::from(input.image.width()) * u64::from(scale),
        u64::from(input.image.height()) * u64::from(scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiling(tile: u32, overlap: u32) -> Tiling {
        Tiling { tile, overlap }
    }

    #[test]
    fn tiles_cover_the_axis_evenly_with_at_least_the_overlap() {
        assert_eq!(tile_starts(100, tiling(128, 32)), [0]);
        assert_eq!(tile_starts(128, tiling(128, 32)), [0]);
        assert_eq!(tile_starts(200, tiling(128, 32)), [0, 72]);
        assert_eq!(tile_starts(512, tiling(128, 32)), [0, 96, 192, 288, 384]);
        assert_eq!(tile_starts(256, tiling(128, 0)), [0, 128]);
        for length in 129..700 {
            for overlap in [0, 1, 32, 64, 127] {
                let starts = tile_starts(length, tiling(128, overlap));
                assert_eq!(starts[0], 0);
                assert_eq!(*starts.last().unwrap(), length - 128);
                for pair in starts.windows(2) {
                    assert!(pair[1] > pair[0] && pair[0] + 128 - pair[1] >= overlap);
                }
                // As few as possible: one tile less could not keep the overlap.
                let fewer = starts.len() as u32 - 1;
                assert!(fewer * 128 - (fewer - 1) * overlap < length);
            }
        }
    }

    #[test]
    fn weights_ramp_across_overlaps_and_sum_to_one() {
        for (length, overlap) in [(200, 32), (512, 32), (300, 64), (1000, 1), (700, 100)] {
            let starts = tile_starts(length, tiling(128, overlap));
            let mut sum = vec![0f32; length as usize];
            for index in 0..starts.len() {
                let weights = axis_weights(&starts, index, 128);
                assert!(weights.iter().all(|&w| w > 0.0 && w <= 1.0));
                for (local, w) in weights.iter().enumerate() {
                    sum[starts[index] as usize + local] += w;
                }
            }
            // Ramps of neighbours sum to exactly 1 while no three tiles meet (every overlap at
            // most half a tile); beyond that the blend's division by the sum takes over.
            let pairwise = starts.windows(2).all(|p| p[0] + 128 - p[1] <= 64);
            for (x, s) in sum.iter().enumerate() {
                if pairwise {
                    assert!((s - 1.0).abs() < 1e-5, "length {length}: sum {s} at {x}");
                } else {
                    assert!(*s >= 0.5, "length {length}: sum {s} at {x}");
                }
            }
        }
        // A lone tile has weight 1 everywhere; an edge shared with a neighbour starts near 0.
        assert!(axis_weights(&[0], 0, 128).iter().all(|&w| w == 1.0));
        let first = axis_weights(&[0, 72], 0, 128);
        assert_eq!(first[0], 1.0);
        assert_eq!(first[127], 0.5 / 56.0);
    }

    #[test]
    fn tiles_must_suit_the_unet_and_overlap_must_leave_room() {
        assert!(
            Tiling::new(96, 32, 8).is_err(),
            "96 is not a multiple of 64"
        );
        assert!(Tiling::new(0, 0, 1).is_err());
        assert!(Tiling::new(512, 512, 8).is_err());
        assert_eq!(Tiling::new(512, 511, 8).unwrap(), tiling(512, 511));
        assert_eq!(Tiling::new(128, 32, 2).unwrap(), tiling(128, 32));
    }

    #[test]
    fn tile_seeds_differ_by_index_and_image() {
        let a = tile_seed(&[1; 32], 0);
        assert_ne!(a, tile_seed(&[1; 32], 1));
        assert_ne!(a, tile_seed(&[2; 32], 0));
        assert_eq!(a, tile_seed(&[1; 32], 0));
    }
}
