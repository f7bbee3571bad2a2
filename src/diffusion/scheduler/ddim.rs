//! diffusers' `DDIMScheduler` (Song et al. 2020), with `eta` noise.

use ndarray::{ArrayD, Zip};

use super::config::{PredictionType, ResolvedConfig};
use super::{
    add_scaled_noise, clip_range, discrete, final_alpha_cumprod, spacing, Schedule, Scheduler,
    SchedulerError, StepAlphas, StepInput,
};
use crate::diffusion::noise::NoiseSource;

pub struct Ddim {
    schedule: Schedule,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    /// diffusers steps back by `num_train_timesteps // num_inference_steps` for every spacing.
    step_ratio: i64,
    eta: f32,
}

impl Ddim {
    pub fn new(config: &ResolvedConfig, steps: usize, eta: f32) -> Result<Self, SchedulerError> {
        let train = config.num_train_timesteps;
        let timesteps =
            spacing::integer_descending(config.timestep_spacing, train, steps, config.steps_offset);
        let schedule = Schedule::integer(config, steps, &timesteps)?;
        Ok(Self {
            final_alpha_cumprod: final_alpha_cumprod(config, &schedule.alphas_cumprod),
            schedule,
            prediction_type: config.prediction_type,
            clip_range: clip_range(config),
            step_ratio: (train / steps) as i64,
            eta,
        })
    }
}

impl Scheduler for Ddim {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn step(&mut self, input: StepInput<'_>, noise: &mut dyn NoiseSource) -> ArrayD<f32> {
        let t = discrete(input.t);
        let prev_t = t - self.step_ratio;
        let alphas = StepAlphas::new(&self.schedule, t, prev_t, self.final_alpha_cumprod);
        let StepAlphas {
            alpha_t,
            alpha_prev,
            beta_t,
            sqrt_alpha,
            sqrt_beta,
        } = alphas;
        let pred_original = alphas.predict_original(self.prediction_type, &input, self.clip_range);
        // From the model output, not from the (possibly clipped) original prediction.
        let pred_epsilon = match self.prediction_type {
            PredictionType::Epsilon => input.model_output.to_owned(),
            PredictionType::Sample => Zip::from(&input.sample)
                .and(&input.model_output)
                .map_collect(|&x, &x0| (x - sqrt_alpha * x0) / sqrt_beta),
            PredictionType::VPrediction => Zip::from(&input.sample)
                .and(&input.model_output)
                .map_collect(|&x, &v| sqrt_alpha * v + sqrt_beta * x),
        };

        let beta_prev = 1.0 - alpha_prev;
        let variance = (beta_prev / beta_t) * (1.0 - alpha_t / alpha_prev);
        let std_dev = self.eta * variance.sqrt();
        let direction = (1.0 - alpha_prev - std_dev * std_dev).sqrt();
        let sqrt_alpha_prev = alpha_prev.sqrt();
        let mut prev = Zip::from(&pred_original)
            .and(&pred_epsilon)
            .map_collect(|&x0, &e| sqrt_alpha_prev * x0 + direction * e);
        if self.eta > 0.0 {
            add_scaled_noise(&mut prev, noise, std_dev);
        }
        prev
    }
}
