//! Diffusion schedulers over ndarray, matching diffusers' implementations of the same name.
//!
//! The contract mirrors diffusers: `set_timesteps` is implied by construction (the scheduler is
//! built for a number of inference steps), `timesteps()` is the full descending schedule, and the
//! img2img pipeline starts part-way through it via `set_begin_index` (except LCM, whose
//! timesteps are picked for the strength when it is built: [`build_img2img`]).
//!
//! The arithmetic follows diffusers 0.39.0 operation by operation in float32 (coefficients are
//! float32 scalars as in torch), so results agree with diffusers to float32 rounding.

mod betas;
mod config;
mod ddim;
mod ddpm;
mod euler;
mod lcm;
mod pndm;
mod spacing;

use std::path::PathBuf;

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::diffusion::noise::NoiseSource;

pub use betas::alphas_cumprod;
pub use config::{
    BetaSchedule, PredictionType, ResolvedConfig, SchedulerConfig, SchedulerKind, TimestepSpacing,
    VarianceType,
};

/// What one reverse step works on: the denoiser's output for `sample` at timestep `t`.
#[derive(Debug, Clone)]
pub struct StepInput<'a> {
    pub model_output: ArrayViewD<'a, f32>,
    pub t: f64,
    pub sample: ArrayViewD<'a, f32>,
}

/// The arrays every scheduler is built around, which the [`Scheduler`] trait exposes.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// See [`Scheduler::timesteps`].
    pub timesteps: Vec<f64>,
    /// See [`Scheduler::alphas_cumprod`].
    pub alphas_cumprod: Vec<f32>,
}

impl Schedule {
    /// The schedule of an integer-timestep scheduler (DDIM, DDPM, PNDM), after refusing
    /// timesteps diffusers would index `alphas_cumprod` out of range with.
    fn integer(
        config: &ResolvedConfig,
        steps: usize,
        timesteps: &[i64],
    ) -> Result<Schedule, SchedulerError> {
        check_range(config, steps, timesteps)?;
        Ok(Schedule {
            timesteps: timesteps.iter().map(|&t| t as f64).collect(),
            alphas_cumprod: alphas_cumprod(config),
        })
    }

    /// `alphas_cumprod[t]`, or `before_start` when `t < 0` ([`alpha_at`]).
    fn alpha_at(&self, t: i64, before_start: f32) -> f32 {
        alpha_at(&self.alphas_cumprod, t, before_start)
    }
}

/// One diffusion sampler, prepared for a fixed number of inference steps.
///
/// Callers pass `t` values taken from `timesteps()` and tensors of one shape; anything else is a
/// programming error and panics (as diffusers raises), so check model output shapes first.
pub trait Scheduler {
    /// The timesteps and alphas this scheduler was built with.
    fn schedule(&self) -> &Schedule;
    /// The descending timesteps of the full schedule (diffusers' `scheduler.timesteps`).
    /// Values are timesteps in `[0, num_train_timesteps)`, fractional for some spacings.
    /// Euler ancestral keeps diffusers' edge cases: `leading` + `steps_offset` can reach
    /// `num_train_timesteps`, and `trailing` with some step counts (61, 103, ...) ends at -1.
    /// Its length is not always the number of inference steps (PNDM repeats timesteps).
    fn timesteps(&self) -> &[f64] {
        &self.schedule().timesteps
    }
    /// diffusers' `scheduler.alphas_cumprod`: the cumulative alpha products over the training
    /// timesteps, read by the default `add_noise`.
    fn alphas_cumprod(&self) -> &[f32] {
        &self.schedule().alphas_cumprod
    }
    /// diffusers' `scheduler.order`: how many entries of `timesteps()` one inference step uses.
    /// 1 for every scheduler here.
    fn order(&self) -> usize {
        1
    }
    /// Where img2img at `strength` starts in `timesteps()`: diffusers' `get_timesteps`,
    /// `(steps - min(int(steps * strength), steps)) * order`, unless the scheduler picked its
    /// timesteps for the strength itself (LCM; see [`build_img2img`]).
    fn img2img_begin_index(&self, steps: usize, strength: f64) -> usize {
        let init_timestep = ((steps as f64 * strength) as usize).min(steps);
        (steps - init_timestep) * self.order()
    }
    /// Where the img2img loop starts in `timesteps()` (diffusers' `set_begin_index`).
    /// Ignored by default: DDIM, DDPM and PNDM keep no position (DDPM finds it from `t`, PNDM
    /// counts its own calls) and diffusers' classes have no `set_begin_index`.
    fn set_begin_index(&mut self, _index: usize) {}
    /// Forward diffusion: noise `original` to timestep `t`. By default DDPM-style,
    /// `sqrt(a) * original + sqrt(1 - a) * noise` with `a = alphas_cumprod()[t]`.
    fn add_noise(&self, original: ArrayViewD<f32>, noise: ArrayViewD<f32>, t: f64) -> ArrayD<f32> {
        add_noise_vp(self.alphas_cumprod(), original, noise, t)
    }
    /// Scale the denoising model input: the identity by default, as for all but sigma-based
    /// samplers.
    fn scale_model_input(&mut self, sample: ArrayViewD<f32>, _t: f64) -> ArrayD<f32> {
        sample.to_owned()
    }
    /// One reverse step from `t`; ancestral samplers draw their noise from `noise`.
    fn step(&mut self, input: StepInput<'_>, noise: &mut dyn NoiseSource) -> ArrayD<f32>;
    /// diffusers' `init_noise_sigma`: the scale of pure-noise start latents (text-to-image only;
    /// img2img starts from `add_noise` instead). 1 except for sigma-based samplers.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
}

/// Problems reading a scheduler configuration or building a scheduler from it.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot read scheduler config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("in scheduler config {path}: {source}")]
    InFile {
        path: PathBuf,
        source: Box<SchedulerError>,
    },
    #[error("scheduler config is not valid: {0}")]
    Json(serde_json::Error),
    #[error("scheduler config must be a JSON object")]
    NotAnObject,
    #[error("scheduler config key `_use_default_values` must be a list of key names")]
    BadUseDefaultValues,
    #[error("scheduler config key `{key}` is null; give it a value or remove the key")]
    Null { key: &'static str },
    #[error("scheduler config key `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(
        "scheduler config has no `_class_name`; choose a scheduler explicitly ({})",
        config::supported_cli_names()
    )]
    NoClass,
    #[error(
        "scheduler class `{name}` is not supported; supported classes: {} \
         (or choose one of {} explicitly)",
        config::supported_class_names(),
        config::supported_cli_names()
    )]
    UnsupportedClass { name: String },
    #[error(
        "unknown scheduler `{name}`; choose one of: {}",
        config::supported_cli_names()
    )]
    UnknownKind { name: String },
    #[error("{kind} scheduler: `{key}: {value}` is not supported: {why}")]
    Unsupported {
        kind: SchedulerKind,
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("number of inference steps must be between 1 and num_train_timesteps ({train}), got {steps}")]
    Steps { steps: usize, train: usize },
    #[error("strength must be a number from 0 to 1, got {0}")]
    Strength(f64),
    #[error("ddim eta must be a number from 0 to 1, got {0}")]
    Eta(f32),
    #[error("eta ({eta}) only applies to the ddim scheduler, not {kind}; leave it at 0")]
    EtaNotDdim { eta: f32, kind: SchedulerKind },
    #[error(
        "{kind} with {steps} steps gives timestep {timestep}, outside the trained range 0..{train} \
         (diffusers would fail, or for -1 silently use the noisiest alpha); lower steps_offset, \
         or pick another number of steps or timestep_spacing"
    )]
    TimestepOutOfRange {
        kind: SchedulerKind,
        steps: usize,
        timestep: i64,
        train: usize,
    },
    #[error(
        "lcm with {steps} steps at strength {strength} needs at least {steps} of its \
         {original} original_inference_steps, but int({original} x {strength}) = {available}; \
         use fewer steps or a higher strength"
    )]
    LcmTooFewOriginal {
        steps: usize,
        strength: f64,
        original: usize,
        available: usize,
    },
    #[error(
        "pndm with skip_prk_steps=false (Runge-Kutta warm-up) needs at least 4 inference steps, \
         got {0}"
    )]
    PrkTooFewSteps(usize),
}

/// Builds `kind` from a config file's settings, ready for `num_inference_steps` steps
/// (diffusers' `Class.from_config(config)` then `set_timesteps(num_inference_steps)`): the full
/// schedule, as for text-to-image or img2img at strength 1.
///
/// `eta` is DDIM's noise weight (0 deterministic, 1 DDPM-like); other kinds require 0.
pub fn build(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
    eta: f32,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    build_img2img(kind, config, num_inference_steps, eta, 1.0)
}

/// [`build`] for img2img at `strength` (0..=1). Only LCM uses the strength here: diffusers'
/// `LCMScheduler.set_timesteps(steps, strength=...)` picks all `steps` timesteps below
/// `strength x T`, where the other schedulers keep the full schedule and the pipeline skips its
/// start ([`Scheduler::img2img_begin_index`] tells which).
pub fn build_img2img(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
    eta: f32,
    strength: f64,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let config = config.resolve(kind)?;
    let train = config.num_train_timesteps;
    if num_inference_steps == 0 || num_inference_steps > train {
        return Err(SchedulerError::Steps {
            steps: num_inference_steps,
            train,
        });
    }
    if !(0.0..=1.0).contains(&strength) {
        return Err(SchedulerError::Strength(strength));
    }
    if kind == SchedulerKind::Ddim {
        if !(0.0..=1.0).contains(&eta) {
            return Err(SchedulerError::Eta(eta));
        }
    } else if eta != 0.0 {
        return Err(SchedulerError::EtaNotDdim { eta, kind });
    }
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(ddim::Ddim::new(&config, num_inference_steps, eta)?),
        SchedulerKind::Ddpm => Box::new(ddpm::Ddpm::new(&config, num_inference_steps)?),
        SchedulerKind::Euler => Box::new(euler::Euler::new(
            &config,
            num_inference_steps,
            euler::EulerVariant::Discrete,
        )),
        SchedulerKind::EulerAncestral => Box::new(euler::Euler::new(
            &config,
            num_inference_steps,
            euler::EulerVariant::Ancestral,
        )),
        SchedulerKind::Pndm => Box::new(pndm::Pndm::new(&config, num_inference_steps)?),
        SchedulerKind::Lcm => Box::new(lcm::Lcm::new(&config, num_inference_steps, strength)?),
    })
}

/// Rejects integer schedules diffusers would index `alphas_cumprod` out of range with.
fn check_range(
    config: &ResolvedConfig,
    steps: usize,
    timesteps: &[i64],
) -> Result<(), SchedulerError> {
    let train = config.num_train_timesteps;
    match timesteps.iter().find(|&&t| t < 0 || t >= train as i64) {
        Some(&timestep) => Err(SchedulerError::TimestepOutOfRange {
            kind: config.kind,
            steps,
            timestep,
            train,
        }),
        None => Ok(()),
    }
}

/// `t` as the integer timestep diffusers indexes with.
fn discrete(t: f64) -> i64 {
    assert!(
        t.fract() == 0.0,
        "timestep {t} is not an integer; pass values from Scheduler::timesteps()"
    );
    t as i64
}

/// `alphas_cumprod[t]`, or the value diffusers uses before the first timestep when `t < 0`.
fn alpha_at(alphas_cumprod: &[f32], t: i64, before_start: f32) -> f32 {
    if t < 0 {
        return before_start;
    }
    match alphas_cumprod.get(t as usize) {
        Some(&a) => a,
        None => panic!(
            "timestep {t} is outside 0..{}; pass values from Scheduler::timesteps()",
            alphas_cumprod.len()
        ),
    }
}

/// DDPM-style forward noising (the default `Scheduler::add_noise`):
/// `sqrt(a) * original + sqrt(1 - a) * noise`.
fn add_noise_vp(
    alphas_cumprod: &[f32],
    original: ArrayViewD<f32>,
    noise: ArrayViewD<f32>,
    t: f64,
) -> ArrayD<f32> {
    let a = alpha_at(alphas_cumprod, discrete(t), 1.0);
    let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
    Zip::from(&original)
        .and(&noise)
        .map_collect(|&x, &n| sa * x + sb * n)
}

/// `torch.clamp(x, -range, range)`: NaN passes through, as in torch.
fn clamp_symmetric(x: &mut ArrayD<f32>, range: f32) {
    x.mapv_inplace(|v| {
        if v.is_nan() {
            v
        } else {
            v.max(-range).min(range)
        }
    });
}

/// `clip_sample_range` when the config clips the predicted original sample (DDIM, DDPM).
fn clip_range(config: &ResolvedConfig) -> Option<f32> {
    config
        .clip_sample
        .then_some(config.clip_sample_range as f32)
}

/// The alpha diffusers uses for the step before timestep 0 (DDIM, PNDM): 1 with
/// `set_alpha_to_one`, else `alphas_cumprod[0]`.
fn final_alpha_cumprod(config: &ResolvedConfig, alphas_cumprod: &[f32]) -> f32 {
    if config.set_alpha_to_one {
        1.0
    } else {
        alphas_cumprod[0]
    }
}

/// The cumulative alphas DDIM and DDPM start a step from: at `t` and at the step's previous
/// timestep (`before_start` when that is below 0), with `1 - alpha_t` and both square roots.
struct StepAlphas {
    alpha_t: f32,
    alpha_prev: f32,
    beta_t: f32,
    /// `sqrt(alphas_cumprod[t])`.
    sqrt_alpha: f32,
    /// `sqrt(1 - alphas_cumprod[t])`.
    sqrt_beta: f32,
}

impl StepAlphas {
    fn new(schedule: &Schedule, t: i64, prev_t: i64, before_start: f32) -> Self {
        let alpha_t = schedule.alpha_at(t, before_start);
        let alpha_prev = schedule.alpha_at(prev_t, before_start);
        let beta_t = 1.0 - alpha_t;
        StepAlphas {
            alpha_t,
            alpha_prev,
            beta_t,
            sqrt_alpha: alpha_t.sqrt(),
            sqrt_beta: beta_t.sqrt(),
        }
    }

    /// diffusers' `pred_original_sample` of DDIM and DDPM from the model output, clipped to
    /// `clip_range` when set.
    fn predict_original(
        &self,
        prediction_type: PredictionType,
        input: &StepInput<'_>,
        clip_range: Option<f32>,
    ) -> ArrayD<f32> {
        let (model_output, sample) = (&input.model_output, &input.sample);
        let (sqrt_alpha, sqrt_beta) = (self.sqrt_alpha, self.sqrt_beta);
        let mut pred_original = match prediction_type {
            PredictionType::Epsilon => Zip::from(sample)
                .and(model_output)
                .map_collect(|&x, &e| (x - sqrt_beta * e) / sqrt_alpha),
            PredictionType::Sample => model_output.to_owned(),
            PredictionType::VPrediction => Zip::from(sample)
                .and(model_output)
                .map_collect(|&x, &v| sqrt_alpha * x - sqrt_beta * v),
        };
        if let Some(range) = clip_range {
            clamp_symmetric(&mut pred_original, range);
        }
        pred_original
    }
}

/// The ancestral noise term: `prev += scale * z` with `z` drawn from `noise` in `prev`'s shape.
fn add_scaled_noise(prev: &mut ArrayD<f32>, noise: &mut dyn NoiseSource, scale: f32) {
    let z = noise.randn(prev.shape());
    Zip::from(prev).and(&z).for_each(|p, &z| *p += scale * z);
}
