//! diffusers' `LCMScheduler` (Luo et al. 2023, latent consistency models): each step maps the
//! sample straight to a clean estimate, then re-noises it to the next timestep with fresh noise.
//!
//! Unlike the other schedulers, img2img strength selects the timesteps themselves
//! (`set_timesteps(steps, strength=...)`): all `steps` are run, spread below `strength x T`.

use ndarray::{ArrayD, Zip};

use super::config::{PredictionType, ResolvedConfig};
use super::{
    alphas_cumprod, clip_range, discrete, final_alpha_cumprod, Schedule, Scheduler, SchedulerError,
    StepAlphas, StepInput,
};
use crate::diffusion::noise::NoiseSource;

/// diffusers' `sigma_data` of the consistency boundary condition.
const SIGMA_DATA_SQUARED: f32 = 0.25;

pub struct Lcm {
    schedule: Schedule,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    timestep_scaling: f32,
    /// The strength the timesteps were picked for.
    strength: f64,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

impl Lcm {
    /// diffusers' `set_timesteps(steps, strength=strength)` with the config's
    /// `original_inference_steps`. Strength 0 keeps the full schedule (diffusers refuses it):
    /// boomerang then runs no step at all, a VAE round trip, as with every scheduler.
    pub fn new(
        config: &ResolvedConfig,
        steps: usize,
        strength: f64,
    ) -> Result<Self, SchedulerError> {
        let train = config.num_train_timesteps;
        let original = config.original_inference_steps;
        let selected_strength = if strength == 0.0 { 1.0 } else { strength };
        // int(original_steps * strength) timesteps of the distillation schedule (k - 1, 2k - 1,
        // ...) are below the strength; `steps` of them are taken, evenly spaced by index.
        let available = (original as f64 * selected_strength) as usize;
        if available / steps < 1 {
            return Err(SchedulerError::LcmTooFewOriginal {
                steps,
                strength,
                original,
                available,
            });
        }
        let k = (train / original) as i64;
        let origin_descending: Vec<i64> = (1..=available as i64).rev().map(|i| i * k - 1).collect();
        // np.floor(np.linspace(0, available, num=steps, endpoint=False)).
        let spacing = available as f64 / steps as f64;
        let timesteps = (0..steps)
            .map(|i| origin_descending[(i as f64 * spacing).floor() as usize] as f64)
            .collect();
        let alphas_cumprod = alphas_cumprod(config);
        Ok(Self {
            final_alpha_cumprod: final_alpha_cumprod(config, &alphas_cumprod),
            schedule: Schedule {
                timesteps,
                alphas_cumprod,
            },
            prediction_type: config.prediction_type,
            clip_range: clip_range(config),
            timestep_scaling: config.timestep_scaling as f32,
            strength,
            step_index: None,
            begin_index: None,
        })
    }

    /// diffusers' `get_scalings_for_boundary_condition_discrete` in float32, as torch computes
    /// it from the integer timestep tensor (`a / x` there is `x.reciprocal() * a`).
    fn boundary_scalings(&self, t: i64) -> (f32, f32) {
        let scaled = t as f32 * self.timestep_scaling;
        let denominator = scaled * scaled + SIGMA_DATA_SQUARED;
        let c_skip = (1.0 / denominator) * SIGMA_DATA_SQUARED;
        let c_out = scaled / denominator.sqrt();
        (c_skip, c_out)
    }

    /// diffusers' `index_for_timestep`: LCM timesteps are distinct (at least one original step
    /// apart), so the first match is the only one.
    fn current_index(&mut self, t: f64) -> usize {
        let index = match (self.step_index, self.begin_index) {
            (Some(i), _) => i,
            (None, Some(begin)) => begin,
            (None, None) => match self.schedule.timesteps.iter().position(|&s| s == t) {
                Some(i) => i,
                None => panic!("timestep {t} is not in this LCM schedule"),
            },
        };
        self.step_index = Some(index);
        index
    }
}

impl Scheduler for Lcm {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn img2img_begin_index(&self, _steps: usize, strength: f64) -> usize {
        assert!(
            strength == self.strength,
            "this LCM scheduler was built for strength {}, not {strength}; use build_img2img",
            self.strength
        );
        if strength == 0.0 {
            self.schedule.timesteps.len()
        } else {
            0
        }
    }

    fn set_begin_index(&mut self, index: usize) {
        self.begin_index = Some(index);
    }

    fn step(&mut self, input: StepInput<'_>, noise: &mut dyn NoiseSource) -> ArrayD<f32> {
        let t = discrete(input.t);
        let index = self.current_index(input.t);
        let next = self.schedule.timesteps.get(index + 1).copied();
        // diffusers reads the alpha at `t` itself after the last timestep; it is unused there.
        let prev_t = next.map_or(t, discrete);
        let alphas = StepAlphas::new(&self.schedule, t, prev_t, self.final_alpha_cumprod);
        let pred_original = alphas.predict_original(self.prediction_type, &input, self.clip_range);
        let (c_skip, c_out) = self.boundary_scalings(t);
        let denoised = Zip::from(&pred_original)
            .and(&input.sample)
            .map_collect(|&x0, &x| c_out * x0 + c_skip * x);
        self.step_index = Some(index + 1);
        if next.is_none() {
            return denoised;
        }
        let sqrt_alpha_prev = alphas.alpha_prev.sqrt();
        let sqrt_beta_prev = (1.0 - alphas.alpha_prev).sqrt();
        let z = noise.randn(denoised.shape());
        Zip::from(&denoised)
            .and(&z)
            .map_collect(|&d, &z| sqrt_alpha_prev * d + sqrt_beta_prev * z)
    }
}
