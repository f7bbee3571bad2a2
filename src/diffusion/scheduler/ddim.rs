//! diffusers' `DDIMScheduler` (Song et al. 2020), with `eta` noise.

use ndarray::{ArrayD, ArrayViewD, Zip};

use super::config::{PredictionType, ResolvedConfig};
use super::{
    add_noise_vp, alpha_at, alphas_cumprod, check_range, clamp_symmetric, discrete, spacing,
    Scheduler, SchedulerError,
};
use crate::diffusion::noise::NoiseSource;

pub struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    /// diffusers steps back by `num_train_timesteps // num_inference_steps` for every spacing.
    step_ratio: i64,
    eta: f32,
    timesteps: Vec<f64>,
}

impl Ddim {
    pub fn new(config: &ResolvedConfig, steps: usize, eta: f32) -> Result<Self, SchedulerError> {
        let train = config.num_train_timesteps;
        let timesteps =
            spacing::integer_descending(config.timestep_spacing, train, steps, config.steps_offset);
        check_range(config, steps, &timesteps)?;
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            prediction_type: config.prediction_type,
            clip_range: config
                .clip_sample
                .then_some(config.clip_sample_range as f32),
            step_ratio: (train / steps) as i64,
            eta,
            timesteps: timesteps.into_iter().map(|t| t as f64).collect(),
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn order(&self) -> usize {
        1
    }

    /// DDIM keeps no position: diffusers' class has no `set_begin_index`.
    fn set_begin_index(&mut self, _index: usize) {}

    fn add_noise(&self, original: ArrayViewD<f32>, noise: ArrayViewD<f32>, t: f64) -> ArrayD<f32> {
        add_noise_vp(&self.alphas_cumprod, original, noise, t)
    }

    fn scale_model_input(&mut self, sample: ArrayViewD<f32>, _t: f64) -> ArrayD<f32> {
        sample.to_owned()
    }

    fn step(
        &mut self,
        model_output: ArrayViewD<f32>,
        t: f64,
        sample: ArrayViewD<f32>,
        noise: &mut dyn NoiseSource,
    ) -> ArrayD<f32> {
        let t = discrete(t);
        let prev_t = t - self.step_ratio;
        let alpha_t = alpha_at(&self.alphas_cumprod, t, self.final_alpha_cumprod);
        let alpha_prev = alpha_at(&self.alphas_cumprod, prev_t, self.final_alpha_cumprod);
        let beta_t = 1.0 - alpha_t;
        let (sqrt_alpha, sqrt_beta) = (alpha_t.sqrt(), beta_t.sqrt());

        let (mut pred_original, pred_epsilon) = match self.prediction_type {
            PredictionType::Epsilon => (
                Zip::from(&sample)
                    .and(&model_output)
                    .map_collect(|&x, &e| (x - sqrt_beta * e) / sqrt_alpha),
                model_output.to_owned(),
            ),
            PredictionType::Sample => (
                model_output.to_owned(),
                Zip::from(&sample)
                    .and(&model_output)
                    .map_collect(|&x, &x0| (x - sqrt_alpha * x0) / sqrt_beta),
            ),
            PredictionType::VPrediction => (
                Zip::from(&sample)
                    .and(&model_output)
                    .map_collect(|&x, &v| sqrt_alpha * x - sqrt_beta * v),
                Zip::from(&sample)
                    .and(&model_output)
                    .map_collect(|&x, &v| sqrt_alpha * v + sqrt_beta * x),
            ),
        };
        if let Some(range) = self.clip_range {
            clamp_symmetric(&mut pred_original, range);
        }

        let beta_prev = 1.0 - alpha_prev;
        let variance = (beta_prev / beta_t) * (1.0 - alpha_t / alpha_prev);
        let std_dev = self.eta * variance.sqrt();
        let direction = (1.0 - alpha_prev - std_dev * std_dev).sqrt();
        let sqrt_alpha_prev = alpha_prev.sqrt();
        let mut prev = Zip::from(&pred_original)
            .and(&pred_epsilon)
            .map_collect(|&x0, &e| sqrt_alpha_prev * x0 + direction * e);
        if self.eta > 0.0 {
            let z = noise.randn(model_output.shape());
            Zip::from(&mut prev)
                .and(&z)
                .for_each(|p, &z| *p += std_dev * z);
        }
        prev
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
}
