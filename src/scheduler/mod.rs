//! Diffusion schedulers over ndarray, matching diffusers' implementations of the same name.
//!
//! The contract mirrors diffusers: `set_timesteps` is implied by construction (the scheduler is
//! built for a number of inference steps), `timesteps()` is the full descending schedule, and the
//! img2img pipeline starts part-way through it via `set_begin_index`.

use ndarray::{ArrayD, ArrayViewD};

use crate::noise::NoiseSource;

/// One diffusion sampler, prepared for a fixed number of inference steps.
pub trait Scheduler {
    /// The descending timesteps of the full schedule (diffusers' `scheduler.timesteps`).
    /// Values are timesteps in `[0, num_train_timesteps)`, fractional for some spacings.
    fn timesteps(&self) -> &[f64];
    /// diffusers' `scheduler.order`: how many entries of `timesteps()` one inference step uses.
    fn order(&self) -> usize;
    /// Where the img2img loop starts in `timesteps()` (diffusers' `set_begin_index`).
    fn set_begin_index(&mut self, index: usize);
    /// Forward diffusion: noise `original` to timestep `t`.
    fn add_noise(&self, original: ArrayViewD<f32>, noise: ArrayViewD<f32>, t: f64) -> ArrayD<f32>;
    /// Scale the denoising model input (identity except for sigma-based samplers).
    fn scale_model_input(&mut self, sample: ArrayViewD<f32>, t: f64) -> ArrayD<f32>;
    /// One reverse step from `t`; ancestral samplers draw their noise from `noise`.
    fn step(
        &mut self,
        model_output: ArrayViewD<f32>,
        t: f64,
        sample: ArrayViewD<f32>,
        noise: &mut dyn NoiseSource,
    ) -> ArrayD<f32>;
}
