//! diffusers' `EulerDiscreteScheduler` and `EulerAncestralDiscreteScheduler` (Karras et al. 2022 /
//! k-diffusion's `sample_euler` and `sample_euler_ancestral`): Euler steps in sigma space, the
//! ancestral one stepping down to `sigma_down` and adding fresh noise of `sigma_up`. They share
//! the sigma schedule; `EulerDiscreteScheduler`'s other sigma options are refused when its config
//! is resolved, and its `s_churn` (a step argument the img2img pipelines leave at 0) is not
//! offered.

use ndarray::{ArrayD, ArrayViewD, Zip};

use super::config::{PredictionType, ResolvedConfig, TimestepSpacing};
use super::{add_scaled_noise, alphas_cumprod, spacing, Schedule, Scheduler, StepInput};
use crate::diffusion::noise::NoiseSource;

/// Which of the two Euler schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EulerVariant {
    /// `EulerDiscreteScheduler`: deterministic steps.
    Discrete,
    /// `EulerAncestralDiscreteScheduler`.
    Ancestral,
}

pub struct Euler {
    variant: EulerVariant,
    /// With `rescale_betas_zero_snr`, the last entry of `alphas_cumprod` is 2^-24 as in
    /// diffusers.
    schedule: Schedule,
    prediction_type: PredictionType,
    /// One sigma per timestep, then a final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

impl Euler {
    pub fn new(config: &ResolvedConfig, steps: usize, variant: EulerVariant) -> Self {
        let mut alphas_cumprod = alphas_cumprod(config);
        if config.rescale_betas_zero_snr {
            // diffusers keeps the last sigma finite instead of infinite.
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        // Sigmas on the training grid in float32, interpolated in float64 like np.interp.
        let train_sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&a| f64::from(((1.0 - a) / a).sqrt()))
            .collect();
        let timesteps = spacing::float_descending(
            config.timestep_spacing,
            config.num_train_timesteps,
            steps,
            config.steps_offset,
        );
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| spacing::interp_unit_grid(f64::from(t), &train_sigmas) as f32)
            .collect();
        sigmas.push(0.0);
        let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let init_noise_sigma = match config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Self {
            variant,
            schedule: Schedule {
                timesteps: timesteps.into_iter().map(f64::from).collect(),
                alphas_cumprod,
            },
            prediction_type: config.prediction_type,
            sigmas,
            init_noise_sigma,
            step_index: None,
            begin_index: None,
        }
    }

    /// diffusers' `index_for_timestep`. diffusers takes the second match when `t` repeats, but
    /// Euler schedules never repeat a timestep (all spacings are strictly decreasing for
    /// `num_inference_steps <= num_train_timesteps`), so the only match is the one.
    fn index_for_timestep(&self, t: f64) -> usize {
        match self.schedule.timesteps.iter().position(|&s| s == t) {
            Some(i) => i,
            None => panic!("timestep {t} is not in this Euler schedule"),
        }
    }

    fn current_index(&mut self, t: f64) -> usize {
        let index = match (self.step_index, self.begin_index) {
            (Some(i), _) => i,
            (None, Some(begin)) => begin,
            (None, None) => self.index_for_timestep(t),
        };
        self.step_index = Some(index);
        index
    }
}

impl Scheduler for Euler {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn set_begin_index(&mut self, index: usize) {
        self.begin_index = Some(index);
    }

    fn add_noise(&self, original: ArrayViewD<f32>, noise: ArrayViewD<f32>, t: f64) -> ArrayD<f32> {
        let index = match (self.begin_index, self.step_index) {
            (None, _) => self.index_for_timestep(t),
            (Some(_), Some(step)) => step,
            (Some(begin), None) => begin,
        };
        let sigma = self.sigmas[index];
        Zip::from(&original)
            .and(&noise)
            .map_collect(|&x, &n| x + n * sigma)
    }

    fn scale_model_input(&mut self, sample: ArrayViewD<f32>, t: f64) -> ArrayD<f32> {
        let index = self.current_index(t);
        let sigma = self.sigmas[index];
        let denom = (sigma * sigma + 1.0).sqrt();
        sample.mapv(|x| x / denom)
    }

    fn step(&mut self, input: StepInput<'_>, noise: &mut dyn NoiseSource) -> ArrayD<f32> {
        let StepInput {
            model_output,
            t,
            sample,
        } = input;
        let index = self.current_index(t);
        let sigma = self.sigmas[index];
        let pred_original = match self.prediction_type {
            PredictionType::VPrediction => {
                let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
                let c_in = sigma * sigma + 1.0;
                Zip::from(&model_output)
                    .and(&sample)
                    .map_collect(|&v, &x| v * c_out + x / c_in)
            }
            // resolve() rejects `sample` for the ancestral kind.
            PredictionType::Sample => model_output.to_owned(),
            PredictionType::Epsilon => Zip::from(&sample)
                .and(&model_output)
                .map_collect(|&x, &e| x - sigma * e),
        };
        let sigma_to = self.sigmas[index + 1];
        let (sigma_down, sigma_up) = match self.variant {
            EulerVariant::Discrete => (sigma_to, 0.0),
            EulerVariant::Ancestral => {
                let sigma_from = sigma;
                let sigma_up =
                    (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
                        / (sigma_from * sigma_from))
                        .sqrt();
                ((sigma_to * sigma_to - sigma_up * sigma_up).sqrt(), sigma_up)
            }
        };
        let dt = sigma_down - sigma;
        let mut prev = Zip::from(&sample)
            .and(&pred_original)
            .map_collect(|&x, &x0| x + (x - x0) / sigma * dt);
        if self.variant == EulerVariant::Ancestral {
            add_scaled_noise(&mut prev, noise, sigma_up);
        }
        self.step_index = Some(index + 1);
        prev
    }

    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
}
