//! diffusers' `DDPMScheduler` (Ho et al. 2020): ancestral sampling over the chosen timesteps.

use ndarray::{ArrayD, Zip};

use super::config::{PredictionType, ResolvedConfig, VarianceType};
use super::{
    add_scaled_noise, clip_range, discrete, spacing, Schedule, Scheduler, SchedulerError,
    StepAlphas, StepInput,
};
use crate::diffusion::noise::NoiseSource;

pub struct Ddpm {
    schedule: Schedule,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    variance_type: VarianceType,
    /// The timesteps as the integers diffusers indexes with.
    integer_timesteps: Vec<i64>,
}

impl Ddpm {
    pub fn new(config: &ResolvedConfig, steps: usize) -> Result<Self, SchedulerError> {
        let integer_timesteps = spacing::integer_descending(
            config.timestep_spacing,
            config.num_train_timesteps,
            steps,
            config.steps_offset,
        );
        Ok(Self {
            schedule: Schedule::integer(config, steps, &integer_timesteps)?,
            prediction_type: config.prediction_type,
            clip_range: clip_range(config),
            variance_type: config.variance_type,
            integer_timesteps,
        })
    }

    /// diffusers' `previous_timestep`: the next entry of the schedule after the first match,
    /// -1 after the last.
    fn previous_timestep(&self, t: i64) -> i64 {
        match self.integer_timesteps.iter().position(|&s| s == t) {
            Some(i) => self.integer_timesteps.get(i + 1).copied().unwrap_or(-1),
            None => panic!("timestep {t} is not in this DDPM schedule"),
        }
    }
}

impl Scheduler for Ddpm {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn step(&mut self, input: StepInput<'_>, noise: &mut dyn NoiseSource) -> ArrayD<f32> {
        let t = discrete(input.t);
        let prev_t = self.previous_timestep(t);
        let alphas = StepAlphas::new(&self.schedule, t, prev_t, 1.0);
        let StepAlphas {
            alpha_t,
            alpha_prev,
            beta_t,
            ..
        } = alphas;
        let beta_prev = 1.0 - alpha_prev;
        let current_alpha = alpha_t / alpha_prev;
        let current_beta = 1.0 - current_alpha;

        let pred_original = alphas.predict_original(self.prediction_type, &input, self.clip_range);

        let original_coeff = (alpha_prev.sqrt() * current_beta) / beta_t;
        let sample_coeff = current_alpha.sqrt() * beta_prev / beta_t;
        let mut prev = Zip::from(&pred_original)
            .and(&input.sample)
            .map_collect(|&x0, &x| original_coeff * x0 + sample_coeff * x);

        if t > 0 {
            // diffusers' `_get_variance`, recomputed from the same float32 scalars.
            let variance = ((1.0 - alpha_prev) / (1.0 - alpha_t) * current_beta).max(1e-20);
            let scale = match self.variance_type {
                VarianceType::FixedSmallLog => (0.5 * variance.ln()).exp(),
                VarianceType::FixedLarge => current_beta.sqrt(),
                // resolve() admits only the three implemented types.
                _ => variance.sqrt(),
            };
            add_scaled_noise(&mut prev, noise, scale);
        }
        prev
    }
}
