//! The sampler a dataset run uses: a Stable Diffusion engine (VAE encode, schedulers, start
//! timestep) or a pixel-space denoiser (a folder with a model.toml; start sigma, no VAE). The
//! command's code is written once against [`DatasetSampler`]; only what differs between the two
//! lives here.

use std::path::Path;

use anyhow::Context;
use image::DynamicImage;
use ndarray::{Array4, ArrayView3, Axis};

use super::dataset_run::{self, RunModel, SamplerOptions};
use crate::diffusion::denoiser::spec::{InputRole, SamplerKind, ValueRange};
use crate::diffusion::denoiser::{is_denoiser_folder, pixels, DenoiserModel, SamplePlan};
use crate::diffusion::engine::{Engine, Settings};
use crate::diffusion::pipeline::Encoding;
use crate::diffusion::timing::{Stage, StageTimer};
use crate::io::imageio::{self, Placement};

/// An opened model of either kind.
// One per run, opened once and never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum DatasetSampler {
    StableDiffusion(Engine),
    Denoiser {
        model: DenoiserModel,
        /// [`denoiser_run_hash`]: what the rows record as `model_sha256`.
        run_hash: String,
        timer: StageTimer,
    },
}

/// What one strength does: the manifest's `start_timestep` (SD's start timestep, a denoiser's
/// start sigma; `None` when no noise is added) and `steps` (SD's `--steps`, a denoiser's calls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrengthPlan {
    pub start: Option<f64>,
    pub steps: usize,
}

/// An image as the sampler takes it, and how its result becomes pixels again.
pub struct Prepared {
    /// `[1, C, H, W]`: SD's working tensor, or a denoiser's values.
    pub tensor: Array4<f32>,
    framing: Framing,
}

/// How a result becomes pixels.
enum Framing {
    /// Where the image sits in SD's working square.
    Working(Placement),
    /// A denoiser's value range (the image is the model's size).
    Values(ValueRange),
}

/// A group of images after the work shared by all their samples: SD's VAE encoding, or the
/// denoiser's values as they are.
pub enum Encoded {
    Latents(Encoding),
    Values(Array4<f32>),
}

impl DatasetSampler {
    /// Opens the model of `options` (a denoiser when its folder holds a model.toml), refusing
    /// the options the other kind would ignore before ONNX Runtime loads. Nothing is written.
    pub fn open(options: &SamplerOptions, command: &str) -> anyhow::Result<DatasetSampler> {
        if !is_denoiser_folder(&options.model) {
            super::sample_denoiser::refuse_constants(&options.constants, &options.model)?;
            return Ok(DatasetSampler::StableDiffusion(dataset_run::open_engine(
                &options.model,
                &options.runtime,
            )?));
        }
        let spec = super::sample_denoiser::load_spec(
            &options.model,
            &options.sd_only_options,
            &options.constants,
        )?;
        options
            .runtime
            .single_device(command)
            .map_err(anyhow::Error::msg)?;
        let runtime = options.runtime.init()?;
        let model = DenoiserModel::open_spec(spec, runtime, &options.runtime.session)?;
        let run_hash = denoiser_run_hash(&model)?;
        Ok(DatasetSampler::Denoiser {
            model,
            run_hash,
            timer: StageTimer::default(),
        })
    }

    /// The side of the square the model works on.
    pub fn working_size(&self) -> u32 {
        match self {
            DatasetSampler::StableDiffusion(engine) => engine.model.geometry.image_size() as u32,
            DatasetSampler::Denoiser { model, .. } => model.spec.size as u32,
        }
    }

    /// The manifest's `scheduler`: SD's scheduler, or the denoiser's sampler (`consistency`,
    /// `euler-<steps>`).
    pub fn scheduler(&self, settings: &Settings) -> anyhow::Result<String> {
        Ok(match self {
            DatasetSampler::StableDiffusion(engine) => {
                engine.schedulers.kind(settings)?.to_string()
            }
            DatasetSampler::Denoiser { model, .. } => match model.spec.sampler {
                SamplerKind::Consistency => "consistency".to_string(),
                SamplerKind::Euler { steps } => format!("euler-{steps}"),
            },
        })
    }

    /// The plan at `settings.strength` (the denoiser reads nothing else of `settings`).
    pub fn plan(&self, settings: &Settings) -> anyhow::Result<StrengthPlan> {
        Ok(match self {
            DatasetSampler::StableDiffusion(engine) => {
                let (_, start) = engine.schedulers.plan(settings)?;
                StrengthPlan {
                    start: start.start_timestep(),
                    steps: settings.steps,
                }
            }
            DatasetSampler::Denoiser { model, .. } => {
                let plan = SamplePlan::new(&model.spec, settings.strength);
                StrengthPlan {
                    start: plan.start_sigma,
                    steps: plan.calls.len(),
                }
            }
        })
    }

    /// The header's model line.
    pub fn describe(&self, model_dir: &Path, model_sha256: &str) -> String {
        match self {
            DatasetSampler::StableDiffusion(_) => {
                let size = self.working_size();
                format!(
                    "model {} (manifest sha256 {model_sha256}), working size {size}x{size}",
                    model_dir.display()
                )
            }
            DatasetSampler::Denoiser { model, .. } => format!(
                "{}; run hash {model_sha256}",
                super::sample_denoiser::model_line(model_dir, &model.spec)
            ),
        }
    }

    /// The header's line for one strength.
    pub fn describe_strength(
        &self,
        settings: &Settings,
        scheduler: &str,
    ) -> anyhow::Result<String> {
        let strength = settings.strength;
        Ok(match self {
            DatasetSampler::StableDiffusion(_) => match self.plan(settings)?.start {
                Some(t) => format!(
                    "strength {strength}: {} steps of {scheduler}, start timestep {t}",
                    settings.steps
                ),
                None => format!("strength {strength}: no noise added (the VAE round trip)"),
            },
            DatasetSampler::Denoiser { model, .. } => {
                super::sample_denoiser::strength_line(&model.spec, strength)
            }
        })
    }

    /// The decoded image as the model takes it. Err: why this image cannot be sampled (a
    /// denoiser takes only grayscale of its own size), for the image's error row.
    pub fn prepare(&self, image: &DynamicImage) -> Result<Prepared, String> {
        match self {
            DatasetSampler::StableDiffusion(_) => {
                let (tensor, placement) = imageio::to_working_tensor(image, self.working_size());
                Ok(Prepared {
                    tensor,
                    framing: Framing::Working(placement),
                })
            }
            DatasetSampler::Denoiser { model, .. } => Ok(Prepared {
                tensor: pixels::to_values(image, &model.spec)?,
                framing: Framing::Values(model.spec.values),
            }),
        }
    }

    /// The work all samples of a stacked group share: SD encodes it with the VAE once.
    pub fn encode(&mut self, stacked: Array4<f32>) -> anyhow::Result<Encoded> {
        Ok(match self {
            DatasetSampler::StableDiffusion(engine) => {
                Encoded::Latents(engine.encode(stacked.view())?)
            }
            DatasetSampler::Denoiser { .. } => Encoded::Values(stacked),
        })
    }

    /// Boomerang on rows `rows` of a group at `settings` (row i seeded by `seeds[i]`, the only
    /// source of its noise, so a sample is the same in any batch); `[B, C, H, W]` results for
    /// [`DatasetSampler::to_image`].
    pub fn sample(
        &mut self,
        encoded: &Encoded,
        rows: &[usize],
        settings: &Settings,
        seeds: &[[u8; 32]],
    ) -> anyhow::Result<Array4<f32>> {
        match (self, encoded) {
            (DatasetSampler::StableDiffusion(engine), Encoded::Latents(encoding)) => {
                let (output, _) = engine.run_encoded(settings, &encoding.select(rows)?, seeds)?;
                Ok(output.images)
            }
            (DatasetSampler::Denoiser { model, timer, .. }, Encoded::Values(values)) => {
                let batch = values.select(Axis(0), rows);
                // The whole sample (noise drawing too) counts as the denoiser's stage.
                Ok(timer.time(Stage::Unet, |timer| {
                    timer.runtime_call(Stage::Unet, || {
                        model.sample(batch.view(), seeds, settings.strength)
                    })
                })?)
            }
            _ => anyhow::bail!("internal: a group encoded by another kind of model"),
        }
    }
}

impl Prepared {
    /// One result row as the image written: SD's 8-bit RGB (grayscale kept) at the input's size,
    /// a denoiser's 16-bit grayscale as `boomerang sample` writes it.
    pub fn to_image(&self, result: ArrayView3<f32>) -> Result<DynamicImage, imageio::ShapeError> {
        Ok(match &self.framing {
            Framing::Working(placement) => imageio::from_working_tensor(result, placement)?,
            Framing::Values(range) => pixels::to_image(result.index_axis(Axis(0), 0), *range),
        })
    }
}

impl RunModel for DatasetSampler {
    fn model_sha256(&self) -> String {
        match self {
            DatasetSampler::StableDiffusion(engine) => engine.model_sha256(),
            DatasetSampler::Denoiser { run_hash, .. } => run_hash.clone(),
        }
    }

    fn timer(&mut self) -> &mut StageTimer {
        match self {
            DatasetSampler::StableDiffusion(engine) => &mut engine.timer,
            DatasetSampler::Denoiser { timer, .. } => timer,
        }
    }
}

/// A denoiser run's `model_sha256`: sha256 of its model.toml's bytes (which pin the graph's
/// sha256, the sampler and the sigma range) followed by one `NAME=VALUE` line per constant input
/// as set, so that a resume with another model.toml or other `--set` values is refused.
fn denoiser_run_hash(model: &DenoiserModel) -> anyhow::Result<String> {
    let spec = &model.spec;
    let mut bytes =
        std::fs::read(&spec.path).with_context(|| format!("reading {}", spec.path.display()))?;
    for input in &spec.inputs {
        if let InputRole::Constant { value, .. } = input.role {
            bytes.extend_from_slice(format!("\n{}={value:?}", input.name).as_bytes());
        }
    }
    Ok(hex::encode(crate::io::hashing::sha256_bytes(&bytes)))
}
