//! `boomerang sample`: COUNT Boomerang samples of each input image.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::commands::render::{self, ImagePlan};
use crate::diffusion::denoiser::is_denoiser_folder;
use crate::diffusion::engine::{Engine, Settings};
use crate::diffusion::noise::image_seed;
use crate::diffusion::timing::Stage;
use crate::io::imageio::{self, FrameLimits};
use crate::io::runtime::RuntimeConfig;
use crate::io::secret::SeedSource;
use crate::policy::{Region, DEFAULT_WORKING_MEGAPIXELS};

/// Validated `sample` configuration.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub model: PathBuf,
    pub settings: Settings,
    /// `--seed`, `--seed-file` or a fresh random seed; a seed from a file is never printed.
    pub seed: SeedSource,
    pub count: u32,
    pub batch: usize,
    pub output_dir: PathBuf,
    pub images: Vec<PathBuf>,
    pub runtime: RuntimeConfig,
    pub timings: bool,
    /// `--set NAME=VALUE`: constant inputs of a denoiser model.
    pub constants: Vec<(String, f32)>,
    /// Stable Diffusion options given on the command line (refused for a denoiser model).
    pub sd_only_options: Vec<&'static str>,
}

/// One sample to produce: which input image, which of its samples, its seed and output path.
struct PlannedSample {
    input: usize,
    sample_index: u32,
    seed: [u8; 32],
    output: PathBuf,
}

pub fn run(config: &SampleConfig) -> anyhow::Result<()> {
    // A folder with a model.toml is a pixel-space denoiser; anything else a Stable Diffusion export.
    if is_denoiser_folder(&config.model) {
        return super::sample_denoiser::run(config);
    }
    super::sample_denoiser::refuse_constants(&config.constants, &config.model)?;
    let (seed, from_file) = match config.seed.given()? {
        Some(given) => (given.value, given.from_file),
        None => (crate::diffusion::noise::random_run_seed(), false),
    };
    let outputs = output_paths(config)?;
    config
        .runtime
        .single_device("sample")
        .map_err(anyhow::Error::msg)?;
    let runtime = config.runtime.init()?;
    let mut engine = Engine::open(&config.model, runtime, &config.runtime.session)?;
    print_plan(config, &engine)?;
    println!("seed {}", super::secret::shown(seed, from_file));
    let (images, planned) = load_and_plan(config, seed, &mut engine, &outputs)?;
    std::fs::create_dir_all(&config.output_dir)
        .with_context(|| format!("creating {}", config.output_dir.display()))?;
    for chunk in planned.chunks(config.batch) {
        sample_batch(config, &mut engine, &images, chunk)?;
    }
    if config.timings {
        println!("{}", engine.timer.report());
    }
    Ok(())
}

/// The model and the start timestep the strength gives.
fn print_plan(config: &SampleConfig, engine: &Engine) -> anyhow::Result<()> {
    let size = engine.model.geometry.image_size();
    let (_, plan) = engine.schedulers.plan(&config.settings)?;
    let kind = engine.schedulers.kind(&config.settings)?;
    println!(
        "model {} (manifest sha256 {}), working size {size}x{size}",
        config.model.display(),
        engine.model.model_hash()
    );
    match plan.start_timestep() {
        Some(t) => println!(
            "strength {} with {} {kind} steps: {} denoising steps from start timestep {t}",
            config.settings.strength,
            config.settings.steps,
            plan.timesteps.len()
        ),
        None => println!(
            "strength {}: no noise added (start timestep none), output is the VAE round trip",
            config.settings.strength
        ),
    }
    Ok(())
}

/// Every input decoded once, and its samples planned with their seeds and output paths.
fn load_and_plan(
    config: &SampleConfig,
    run_seed: u64,
    engine: &mut Engine,
    outputs: &[Vec<PathBuf>],
) -> anyhow::Result<(Vec<ImagePlan>, Vec<PlannedSample>)> {
    // Inputs larger than the working size are sampled at their own size, in tiles.
    let limits = render::frame_limits(engine, DEFAULT_WORKING_MEGAPIXELS);
    let mut images = Vec::with_capacity(config.images.len());
    let mut planned = Vec::new();
    for (input, path) in config.images.iter().enumerate() {
        let (loaded, content_hash) = engine
            .timer
            .time(Stage::ImageIo, |_| load_input(path, limits))?;
        images.push(loaded);
        for sample_index in 0..config.count {
            planned.push(PlannedSample {
                input,
                sample_index,
                seed: image_seed(run_seed, &content_hash, sample_index),
                output: outputs[input][sample_index as usize].clone(),
            });
        }
    }
    Ok((images, planned))
}

/// One UNet batch of samples, each written as soon as it is decoded.
fn sample_batch(
    config: &SampleConfig,
    engine: &mut Engine,
    images: &[ImagePlan],
    chunk: &[PlannedSample],
) -> anyhow::Result<()> {
    let plans: Vec<&ImagePlan> = chunk.iter().map(|job| &images[job.input]).collect();
    let seeds: Vec<[u8; 32]> = chunk.iter().map(|job| job.seed).collect();
    let (results, _) = render::render(engine, &config.settings, &plans, &seeds, config.batch)?;
    for (job, result) in chunk.iter().zip(results) {
        engine.timer.time(Stage::ImageIo, |_| {
            imageio::write_png_new(&result, &job.output)
        })?;
        println!("{} (sample {})", job.output.display(), job.sample_index);
    }
    Ok(())
}

/// One read of the file serves both the content hash (the seed) and decoding, under the same
/// size limits as `anonymize`.
fn load_input(path: &Path, limits: FrameLimits) -> anyhow::Result<(ImagePlan, [u8; 32])> {
    let loaded = crate::io::dataset::load_image(path)?;
    let plan = ImagePlan::new(&loaded.image, Region::Whole, &[], limits);
    Ok((plan, loaded.sha256))
}

/// `OUT/<stem>_<k>.png` per input; two inputs with the same stem would overwrite each other.
/// Checked before anything is sampled: `sample` never replaces a file, so a path that exists
/// (an input, or a user's own `IMG_0.png` beside `IMG.png`) is refused.
pub(super) fn output_paths(config: &SampleConfig) -> anyhow::Result<Vec<Vec<PathBuf>>> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for image in &config.images {
        let stem = image
            .file_stem()
            .with_context(|| format!("{}: not a file name", image.display()))?
            .to_string_lossy()
            .into_owned();
        if !seen.insert(stem.clone()) {
            bail!(
                "two inputs are named `{stem}`: their samples would overwrite each other in {}; rename one or run them separately",
                config.output_dir.display()
            );
        }
        all.push(
            (0..config.count)
                .map(|k| config.output_dir.join(format!("{stem}_{k}.png")))
                .collect(),
        );
    }
    refuse_existing_outputs(config, &all)?;
    Ok(all)
}

/// Refuses outputs that would replace an input or any file already there (a dangling symlink
/// counts: writing through it would create its target).
fn refuse_existing_outputs(config: &SampleConfig, outputs: &[Vec<PathBuf>]) -> anyhow::Result<()> {
    // A missing input is reported when it is read.
    let inputs: Vec<(PathBuf, &PathBuf)> = config
        .images
        .iter()
        .filter_map(|image| Some((std::fs::canonicalize(image).ok()?, image)))
        .collect();
    for output in outputs.iter().flatten() {
        let resolved = crate::io::dataset::resolve_planned(output)?;
        if let Some((_, input)) = inputs.iter().find(|(path, _)| *path == resolved) {
            bail!(
                "{} would be written over the input {}: sample never replaces its inputs; choose another -o folder",
                output.display(),
                input.display()
            );
        }
        if output.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: sample never replaces a file; move it away or choose another -o folder",
                output.display()
            );
        }
    }
    Ok(())
}
