//! `boomerang enhance`: perceptual resolution enhancement. Each image is upsampled by an integer
//! factor K with a Lanczos3 filter (`image`'s `FilterType::Lanczos3`), then pulled back onto the
//! image manifold by Boomerang at a low strength, so the model adds plausible detail.
//!
//! The model only works well near its native resolution, so the upsampled image is never
//! rescaled again: Boomerang runs on it at its own size as one latent field, with the graphs
//! called on overlapping square tiles (`--tile`, default the model's working size; `--overlap`,
//! default a quarter tile) whose predictions are fused at every step (MultiDiffusion; see
//! `diffusion::tiled`). All noise comes from the image's seed, `image_seed(run seed, sha256 of the
//! input file, 0)`, over the whole field, so tiles agree where they overlap instead of averaging
//! two different hallucinations. An image side shorter than a tile is padded to one tile by
//! repeating its last row or column; the padding is cut off afterwards.
//!
//! The output is exactly K times the input's width and height, 8-bit RGB (grayscale stays
//! grayscale, alpha is dropped), PNG without metadata.
//!
//! A pixel-space denoiser (`--model` a folder with a model.toml) works the same way in pixel
//! space: the 8- or 16-bit grayscale input (others get error rows) is upsampled as 16-bit, noised
//! over the whole field from the image seed, and denoised on tiles of the model's fixed size
//! (`--tile` can only be that size) fused at every denoiser call (`denoiser::tiled`); the output
//! is 16-bit grayscale. An image of exactly the model's size at `--scale 1` is one tile and
//! equals `boomerang sample`'s sample 0. Rows record the start sigma in `start_timestep`, the
//! sampler in `scheduler` and the denoiser calls in `steps`, as `augment` does.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ndarray::Axis;

use super::dataset_run::{
    self, manifest_row, DatasetOptions, DatasetRun, OutputCounts, OutputStatus, Refused, RunModel,
    RunStart, SamplerOptions,
};
use super::dataset_sampler::{DatasetSampler, StrengthPlan};
use super::manifest_parts::{self, PartPlan};
use crate::diffusion::denoiser::{pixels, DenoiserModel};
use crate::diffusion::engine::{Engine, EngineError, LatentTiling, Settings};
use crate::diffusion::noise::image_seed;
use crate::diffusion::pipeline::PipelineError;
use crate::diffusion::timing::Stage;
use crate::io::dataset::{self, path_text, Action, LoadedInput};
use crate::io::imageio::{self, FrameLimits, Framing};

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
    /// bottom (a multiple of 8 latent cells), and the overlap, rounded up to whole latent cells
    /// (tiles are fused in latent space), must leave tiles room to advance.
    pub fn new(tile: u32, overlap: u32, vae_scale_factor: usize) -> Result<Tiling, Refused> {
        let cell = vae_scale_factor.max(1) as u32;
        let multiple = 8 * cell;
        let overlap = overlap.div_ceil(cell) * cell;
        if tile == 0 || !tile.is_multiple_of(multiple) {
            return Err(Refused(format!(
                "--tile {tile} must be a positive multiple of {multiple} (8 latent cells of {vae_scale_factor} pixels)"
            )));
        }
        if overlap >= tile {
            return Err(Refused(format!(
                "--overlap {overlap} (rounded up to whole latent cells of {cell} pixels) must be smaller than the tile ({tile})"
            )));
        }
        Ok(Tiling { tile, overlap })
    }

    /// Checks a tiling against a denoiser, whose graph takes tiles of its own size only.
    fn for_denoiser(tile: u32, overlap: u32, model: &DenoiserModel) -> Result<Tiling, Refused> {
        let size = model.spec.size as u32;
        if tile != size {
            return Err(Refused(format!(
                "--tile {tile}: {} takes {size}x{size} tiles only; leave --tile out or give {size}",
                model.spec.path.display()
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

/// The input scaled by `scale` in both directions with Lanczos3, as 8-bit RGB.
pub fn upsample(image: &DynamicImage, scale: u32) -> RgbImage {
    let rgb = image.to_rgb8();
    if scale == 1 {
        return rgb;
    }
    let (width, height) = rgb.dimensions();
    image::imageops::resize(&rgb, width * scale, height * scale, FilterType::Lanczos3)
}

/// Upsample by `scale`, then Boomerang at that size in fused tiles, `batch` tiles per graph call;
/// grayscale input gives grayscale output. Returns the result and the number of tiles.
pub fn enhance_image(
    engine: &mut Engine,
    settings: &Settings,
    image: &DynamicImage,
    scale: u32,
    tiling: Tiling,
    batch: usize,
    image_seed: &[u8; 32],
) -> Result<(DynamicImage, usize), EngineError> {
    let upsampled = DynamicImage::ImageRgb8(upsample(image, scale));
    let factor = engine.model.geometry.vae_scale_factor as u32;
    let limits = FrameLimits {
        working: tiling.tile,
        multiple: factor,
        max_pixels: u64::MAX,
    };
    let (tensor, mut canvas) = imageio::to_canvas_tensor(&upsampled, limits);
    canvas.grayscale = !image.color().has_color();
    let latent = LatentTiling {
        tile: (tiling.tile / factor) as usize,
        overlap: (tiling.overlap / factor) as usize,
    };
    let (output, _, tiles) =
        engine.run_tiled_with(settings, tensor.view(), *image_seed, batch, latent)?;
    let result = imageio::unframe(
        output.images.index_axis(Axis(0), 0),
        &Framing::Native(canvas),
    )
    .map_err(|error| PipelineError::Output {
        graph: "vae_decoder",
        message: error.to_string(),
    })?;
    Ok((result, tiles))
}

/// [`enhance_image`] on a denoiser: upsample the grayscale image, then Boomerang on the whole
/// field in fused tiles of the model's size. The inner `Err` says why the model cannot take this
/// image (it is not grayscale), for its error row.
pub fn enhance_denoised(
    model: &mut DenoiserModel,
    strength: f64,
    image: &DynamicImage,
    scale: u32,
    tiling: Tiling,
    batch: usize,
    image_seed: &[u8; 32],
) -> anyhow::Result<Result<(DynamicImage, usize), String>> {
    let values = pixels::upsample(image, scale)
        .and_then(|upsampled| pixels::field_values(&upsampled, &model.spec));
    let values = match values {
        Ok(values) => values,
        Err(reason) => return Ok(Err(reason)),
    };
    let (result, tiles) = model.sample_field(
        values.view(),
        image_seed,
        strength,
        tiling.overlap as usize,
        batch,
    )?;
    let image = pixels::to_image(result.slice(ndarray::s![0, 0, .., ..]), model.spec.values);
    Ok(Ok((image, tiles)))
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
        /// The run seed, or `fingerprint:<hex>` for a seed from a secret file.
        pub run_seed: Option<crate::commands::dataset_run::RunSeedCell>,
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
    let shard = PartPlan::resolve(&config.dataset, &config.sampler.seed)?;
    dataset_run::check_input_output(&config.dataset.input, &config.dataset.output)?;
    // From here on OUT is used only resolved: creating it creates nothing inside IN.
    let config = &EnhanceConfig {
        dataset: dataset_run::with_resolved_output(&config.dataset)?,
        ..config.clone()
    };
    let (root, entries) = dataset_run::entries(&config.dataset.input)?;
    // Output names are planned on the whole walk, so every part agrees on them.
    let part = shard.map(|shard| PartPlan::of(shard, &entries));
    // `<stem>.png` in the input's folder; a later input with the same output (a.jpg and a.png)
    // gets a skipped row.
    let mut planned = dataset::plan_outputs(entries, None);
    let manifest_name = match &part {
        Some(part) => part.take_block(&mut planned, MANIFEST_NAME),
        None => MANIFEST_NAME.to_string(),
    };
    let outputs: HashSet<String> = planned
        .iter()
        .filter_map(|p| match &p.action {
            Action::Process { output } => Some(path_text(output)),
            Action::Skip(_) => None,
        })
        .collect();
    manifest_parts::refuse_existing(part.as_ref(), &config.dataset, MANIFEST_NAME, &outputs)?;
    let sampler = DatasetSampler::open(&config.sampler, "enhance")?;
    let tiling = tiling_for(config, &sampler)?;
    let (run, kept) = DatasetRun::start(
        sampler,
        &RunStart {
            output: &config.dataset.output,
            manifest_name: &manifest_name,
            resume: config.dataset.resume,
            seed: &config.sampler.seed,
            outputs: &outputs,
            part: part.is_some(),
            resume_with: "the input of that run",
        },
    )?;
    let record = match &part {
        Some(part) => Some(part.start_record(
            &run.manifest_path,
            "enhance",
            format!(
                "--scale {} tiling {:?} {:?} --set {:?}",
                config.scale, tiling, config.sampler.settings, config.sampler.constants
            ),
            &run.model_sha256,
            &run.run_seed_cell,
        )?),
        None => None,
    };
    let manifest_path = run.manifest_path.clone();
    let mut enhancing = Enhancing::new(config, run, kept, tiling, root)?;
    enhancing.print_header();
    enhancing
        .run
        .show_progress(outputs.len(), config.dataset.quiet);
    for item in &planned {
        enhancing.process(item)?;
    }
    let counts = enhancing
        .run
        .finish(config.dataset.quiet, config.dataset.timings);
    if let Some(record) = record {
        record.finish(&manifest_path)?;
    }
    Ok(counts)
}

/// `--tile` (default: the model's working size) and `--overlap` (default: a quarter tile),
/// checked against the model.
fn tiling_for(config: &EnhanceConfig, sampler: &DatasetSampler) -> Result<Tiling, Refused> {
    let tile = config.tile.unwrap_or(sampler.working_size());
    let overlap = config.overlap.unwrap_or(tile / 4);
    match sampler {
        DatasetSampler::StableDiffusion(engine) => {
            Tiling::new(tile, overlap, engine.model.geometry.vae_scale_factor)
        }
        DatasetSampler::Denoiser { model, .. } => Tiling::for_denoiser(tile, overlap, model),
    }
}

/// A started enhance run and what all its rows share.
struct Enhancing<'a> {
    config: &'a EnhanceConfig,
    run: DatasetRun<EnhanceRow, DatasetSampler>,
    /// Rows of the resumed run by output path; each is taken when its input comes up.
    kept: HashMap<String, EnhanceRow>,
    tiling: Tiling,
    /// What input paths are relative to (IN, or its folder when IN is a file).
    root: PathBuf,
    scheduler: String,
    plan: StrengthPlan,
}

impl<'a> Enhancing<'a> {
    fn new(
        config: &'a EnhanceConfig,
        run: DatasetRun<EnhanceRow, DatasetSampler>,
        kept: HashMap<String, EnhanceRow>,
        tiling: Tiling,
        root: PathBuf,
    ) -> anyhow::Result<Enhancing<'a>> {
        let sampler = &run.model;
        let scheduler = sampler.scheduler(&config.sampler.settings)?;
        let plan = sampler.plan(&config.sampler.settings)?;
        Ok(Enhancing {
            config,
            kept,
            tiling,
            root,
            scheduler,
            plan,
            run,
        })
    }

    fn print_header(&self) {
        let config = self.config;
        if config.dataset.quiet {
            return;
        }
        let sampler = &self.run.model;
        let strength = config.sampler.settings.strength;
        let noise = match (sampler, self.plan.start) {
            (DatasetSampler::StableDiffusion(_), Some(t)) => format!(
                "{} steps of {}, start timestep {t}",
                config.sampler.settings.steps, self.scheduler
            ),
            (DatasetSampler::StableDiffusion(_), None) => {
                "no noise added (the VAE round trip)".into()
            }
            (DatasetSampler::Denoiser { .. }, Some(sigma)) => format!(
                "start sigma {sigma:.6}, {} denoiser call{} ({})",
                self.plan.steps,
                if self.plan.steps == 1 { "" } else { "s" },
                self.scheduler
            ),
            (DatasetSampler::Denoiser { .. }, None) => {
                "no noise added, output is the upsampled source".into()
            }
        };
        println!(
            "{}",
            sampler.describe(&config.sampler.model, &self.run.model_sha256)
        );
        println!(
            "scale {} (Lanczos3), strength {strength}: {noise}; tiles {}x{} overlapping by at least {} px",
            config.scale,
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
        let loaded = (self.run.model.timer()).time(Stage::ImageIo, |_| dataset::load_image(&path));
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
            start_timestep: self.plan.start,
            steps: Some(self.plan.steps),
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
        let (tiling, batch) = (self.tiling, config.sampler.batch);
        let settings = &config.sampler.settings;
        let enhanced = match &mut self.run.model {
            DatasetSampler::StableDiffusion(engine) => Ok(enhance_image(
                engine,
                settings,
                &input.image,
                config.scale,
                tiling,
                batch,
                &seed,
            )?),
            DatasetSampler::Denoiser { model, timer, .. } => {
                // The whole image (upsampling, noise and fusion too) counts as the denoiser's
                // stage, inside ONNX Runtime, as augment counts a denoiser's samples.
                let (strength, image) = (settings.strength, &input.image);
                let enhanced = timer.time(Stage::Unet, |timer| {
                    timer.runtime_call(Stage::Unet, || {
                        enhance_denoised(model, strength, image, config.scale, tiling, batch, &seed)
                    })
                })?;
                if let Ok((_, tiles)) = &enhanced {
                    timer.count_tiles(*tiles);
                }
                enhanced
            }
        };
        let (result, tiles) = match enhanced {
            Ok(enhanced) => enhanced,
            Err(reason) => {
                return self.log_unfinished(
                    relative,
                    OutputStatus::Error,
                    reason,
                    row.source_sha256,
                )
            }
        };
        let output_sha256 = (self.run.model.timer()).time(Stage::ImageIo, |_| {
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
    fn tiles_must_suit_the_unet_and_overlap_must_leave_room() {
        assert!(
            Tiling::new(96, 32, 8).is_err(),
            "96 is not a multiple of 64"
        );
        assert!(Tiling::new(0, 0, 1).is_err());
        assert!(Tiling::new(512, 512, 8).is_err());
        assert!(Tiling::new(512, 511, 8).is_err(), "511 rounds up to 512");
        assert_eq!(Tiling::new(512, 504, 8).unwrap(), tiling(512, 504));
        assert_eq!(Tiling::new(512, 30, 8).unwrap(), tiling(512, 32));
        assert_eq!(Tiling::new(128, 32, 2).unwrap(), tiling(128, 32));
    }
}
