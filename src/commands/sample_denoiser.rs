//! `boomerang sample` on a pixel-space denoiser folder (one with a model.toml): grayscale images
//! in, Boomerang at the spec's sigma range, 16-bit grayscale PNGs out, `OUT/<stem>_<k>.png` as for
//! Stable Diffusion, sample k of an image seeded by sha256(run seed, file content, k) as there.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use ndarray::{concatenate, Array4, Axis};

use super::sample::SampleConfig;
use crate::diffusion::denoiser::pixels;
use crate::diffusion::denoiser::spec::{InputRole, SamplerKind};
use crate::diffusion::denoiser::{DenoiserModel, DenoiserSpec, SamplePlan};
use crate::diffusion::noise::{image_seed, random_run_seed};
use crate::io::imageio;

pub fn run(config: &SampleConfig) -> anyhow::Result<()> {
    let spec = load_spec(&config.model, &config.sd_only_options, &config.constants)?;
    let (seed, from_file) = match config.seed.given()? {
        Some(given) => (given.value, given.from_file),
        None => (random_run_seed(), false),
    };
    let outputs = super::sample::output_paths(config)?;
    config
        .runtime
        .single_device("sample")
        .map_err(anyhow::Error::msg)?;
    let runtime = config.runtime.init()?;
    let mut model = DenoiserModel::open_spec(spec, runtime, &config.runtime.session)?;
    println!("{}", model_line(&config.model, &model.spec));
    println!("{}", strength_line(&model.spec, config.settings.strength));
    println!("seed {}", super::secret::shown(seed, from_file));

    // Every input is read and checked before anything is written.
    let mut sources = Vec::with_capacity(config.images.len());
    for path in &config.images {
        let loaded = crate::io::dataset::load_image(path)?;
        let values = pixels::to_values(&loaded.image, &model.spec)
            .map_err(|message| anyhow!("{}: {message}", path.display()))?;
        sources.push((values, loaded.sha256));
    }
    let mut planned = Vec::new();
    for (input, (_, content)) in sources.iter().enumerate() {
        for k in 0..config.count {
            planned.push((input, k, image_seed(seed, content, k)));
        }
    }
    std::fs::create_dir_all(&config.output_dir)
        .with_context(|| format!("creating {}", config.output_dir.display()))?;
    let started = Instant::now();
    for chunk in planned.chunks(config.batch) {
        let rows: Vec<_> = chunk.iter().map(|&(i, _, _)| sources[i].0.view()).collect();
        let batch: Array4<f32> = concatenate(Axis(0), &rows)?;
        let seeds: Vec<[u8; 32]> = chunk.iter().map(|&(_, _, s)| s).collect();
        let result = model.sample(batch.view(), &seeds, config.settings.strength)?;
        for (row, &(input, k, _)) in chunk.iter().enumerate() {
            let path = &outputs[input][k as usize];
            let image =
                pixels::to_image(result.slice(ndarray::s![row, 0, .., ..]), model.spec.values);
            imageio::write_png_new(&image, path)?;
            println!("{} (sample {k})", path.display());
        }
    }
    if config.timings {
        println!(
            "{} samples in {:.2} s (denoiser calls, noise and PNG writing)",
            planned.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The denoiser's spec at `model`, refusing the Stable Diffusion options given with it
/// (`sd_only_options`) and applying `--set` (`constants`).
pub(super) fn load_spec(
    model: &Path,
    sd_only_options: &[&str],
    constants: &[(String, f32)],
) -> anyhow::Result<DenoiserSpec> {
    if !sd_only_options.is_empty() {
        bail!(
            "{} appl{} to Stable Diffusion models only: {} is a denoiser model, its sampler is set by its model.toml (use --set for its constant inputs)",
            sd_only_options.join(", "),
            if sd_only_options.len() == 1 { "ies" } else { "y" },
            model.display()
        );
    }
    let mut spec = DenoiserSpec::load(model)?;
    for (name, value) in constants {
        spec.set_constant(name, *value)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(spec)
}

/// Refuses `--set` for a Stable Diffusion folder, which has no constant inputs.
pub(super) fn refuse_constants(constants: &[(String, f32)], model: &Path) -> anyhow::Result<()> {
    if let Some((name, _)) = constants.first() {
        bail!(
            "--set {name}: {} is a Stable Diffusion folder; --set sets constant inputs of a denoiser model (a folder with a model.toml)",
            model.display()
        );
    }
    Ok(())
}

/// The model and its constants, for the plan a command prints.
pub(super) fn model_line(model: &Path, spec: &DenoiserSpec) -> String {
    let constants: Vec<String> = spec
        .inputs
        .iter()
        .filter_map(|input| match input.role {
            InputRole::Constant { value, .. } => Some(format!("{}={value}", input.name)),
            _ => None,
        })
        .collect();
    format!(
        "model {} (pixel-space denoiser `{}`, graph sha256 {}), working size {}x{}, {} channel{}{}",
        model.display(),
        spec.name,
        spec.sha256,
        spec.size,
        spec.size,
        spec.channels,
        if spec.channels == 1 { "" } else { "s" },
        if constants.is_empty() {
            String::new()
        } else {
            format!(", constants {}", constants.join(", "))
        }
    )
}

/// The sigma `strength` gives and the model calls from there (as the SD path prints its start
/// timestep).
pub(super) fn strength_line(spec: &DenoiserSpec, strength: f64) -> String {
    let plan = SamplePlan::new(spec, strength);
    match (plan.start_sigma, spec.sampler) {
        (None, _) => {
            format!("strength {strength}: no noise added (start sigma none), output is the source")
        }
        (Some(sigma), SamplerKind::Consistency) => {
            format!("strength {strength}: start sigma {sigma:.6}, 1 consistency call")
        }
        (Some(sigma), SamplerKind::Euler { steps }) => format!(
            "strength {strength}: start sigma {sigma:.6}, {steps} Euler steps down to sigma {}",
            spec.sigma.min
        ),
    }
}
