//! diffusers' `PNDMScheduler` (Liu et al. 2022): pseudo linear multistep (PLMS) steps, optionally
//! after a Runge-Kutta (PRK) warm-up, with diffusers' bookkeeping reproduced exactly.
//!
//! Like diffusers, the method state advances with a call counter, not with the `t` passed in:
//! in img2img the first two calls are the PLMS warm-up pair (or the first twelve are PRK) wherever
//! in the schedule the loop starts.

use ndarray::{ArrayD, ArrayViewD, Zip};

use super::config::{PredictionType, ResolvedConfig};
use super::{
    discrete, final_alpha_cumprod, spacing, Schedule, Scheduler, SchedulerError, StepInput,
};
use crate::diffusion::noise::NoiseSource;

pub struct Pndm {
    schedule: Schedule,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    skip_prk_steps: bool,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    prk_timesteps: Vec<i64>,
    counter: usize,
    /// Past model outputs (diffusers' `ets`), at most four kept in use.
    ets: Vec<ArrayD<f32>>,
    /// The PRK running sum of model outputs; `None` is diffusers' integer 0.
    cur_model_output: Option<ArrayD<f32>>,
    cur_sample: Option<ArrayD<f32>>,
}

impl Pndm {
    pub fn new(config: &ResolvedConfig, steps: usize) -> Result<Self, SchedulerError> {
        let train = config.num_train_timesteps;
        let base =
            spacing::pndm_ascending(config.timestep_spacing, train, steps, config.steps_offset);
        let step_ratio = (train / steps) as i64;
        let (prk_timesteps, plms_timesteps) = if config.skip_prk_steps {
            // [t0 .. t(n-2), t(n-2), t(n-1)] reversed: the second timestep is taken twice.
            let n = base.len();
            let mut plms: Vec<i64> = base[..n - 1].to_vec();
            if n >= 2 {
                plms.push(base[n - 2]);
            }
            plms.push(base[n - 1]);
            plms.reverse();
            (Vec::new(), plms)
        } else {
            if base.len() < 4 {
                return Err(SchedulerError::PrkTooFewSteps(steps));
            }
            // Each of the last four timesteps with its half step, arranged as diffusers does:
            // [x0, x0+h, x0+h, x1, x1, x1+h, x1+h, x2, x2, x2+h, x2+h, x3] reversed.
            let half = step_ratio / 2;
            let last4 = &base[base.len() - 4..];
            let pairs: Vec<i64> = last4.iter().flat_map(|&x| [x, x + half]).collect();
            let doubled: Vec<i64> = pairs[..pairs.len() - 1]
                .iter()
                .flat_map(|&x| [x, x])
                .collect();
            let mut prk = doubled[1..doubled.len() - 1].to_vec();
            prk.reverse();
            let mut plms = base[..base.len() - 3].to_vec();
            plms.reverse();
            (prk, plms)
        };
        let all: Vec<i64> = prk_timesteps
            .iter()
            .chain(&plms_timesteps)
            .copied()
            .collect();
        let schedule = Schedule::integer(config, steps, &all)?;
        Ok(Self {
            final_alpha_cumprod: final_alpha_cumprod(config, &schedule.alphas_cumprod),
            schedule,
            prediction_type: config.prediction_type,
            skip_prk_steps: config.skip_prk_steps,
            step_ratio,
            prk_timesteps,
            counter: 0,
            ets: Vec::new(),
            cur_model_output: None,
            cur_sample: None,
        })
    }

    fn step_prk(
        &mut self,
        model_output: ArrayViewD<f32>,
        t: i64,
        sample: ArrayViewD<f32>,
    ) -> ArrayD<f32> {
        let diff_to_prev = if self.counter % 2 == 1 {
            0
        } else {
            self.step_ratio / 2
        };
        let prev_t = t - diff_to_prev;
        let t = self.prk_timesteps[self.counter / 4 * 4];
        let sixth = (1.0f64 / 6.0) as f32;
        let third = (1.0f64 / 3.0) as f32;
        let mut model_output = model_output.to_owned();
        match self.counter % 4 {
            0 => {
                self.accumulate(&model_output, sixth);
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.to_owned());
            }
            1 | 2 => self.accumulate(&model_output, third),
            _ => {
                let sum = self.cur_model_output.take();
                model_output = match sum {
                    Some(sum) => Zip::from(&sum)
                        .and(&model_output)
                        .map_collect(|&s, &m| s + sixth * m),
                    None => model_output.mapv(|m| sixth * m),
                };
            }
        }
        let prev = match &self.cur_sample {
            Some(cur) => self.prev_sample(cur.view(), t, prev_t, model_output),
            None => self.prev_sample(sample, t, prev_t, model_output),
        };
        self.counter += 1;
        prev
    }

    /// `cur_model_output += weight * model_output`.
    fn accumulate(&mut self, model_output: &ArrayD<f32>, weight: f32) {
        match &mut self.cur_model_output {
            Some(sum) => Zip::from(sum)
                .and(model_output)
                .for_each(|s, &m| *s += weight * m),
            None => self.cur_model_output = Some(model_output.mapv(|m| weight * m)),
        }
    }

    fn step_plms(
        &mut self,
        model_output: ArrayViewD<f32>,
        t: i64,
        sample: ArrayViewD<f32>,
    ) -> ArrayD<f32> {
        let mut prev_t = t - self.step_ratio;
        let mut t = t;
        if self.counter != 1 {
            let keep_from = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep_from);
            self.ets.push(model_output.to_owned());
        } else {
            // The repeated timestep: redo the first step with averaged model outputs.
            prev_t = t;
            t += self.step_ratio;
        }
        let e = &self.ets;
        let n = e.len();
        let mut owned_sample = None;
        let combined = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.to_owned());
            model_output.to_owned()
        } else if n == 1 && self.counter == 1 {
            owned_sample = self.cur_sample.take();
            Zip::from(&model_output)
                .and(&e[0])
                .map_collect(|&m, &e1| (m + e1) / 2.0)
        } else if n == 2 {
            Zip::from(&e[1])
                .and(&e[0])
                .map_collect(|&e1, &e2| (3.0 * e1 - e2) / 2.0)
        } else if n == 3 {
            Zip::from(&e[2])
                .and(&e[1])
                .and(&e[0])
                .map_collect(|&e1, &e2, &e3| (23.0 * e1 - 16.0 * e2 + 5.0 * e3) / 12.0)
        } else {
            let w = (1.0f64 / 24.0) as f32;
            Zip::from(&e[n - 1])
                .and(&e[n - 2])
                .and(&e[n - 3])
                .and(&e[n - 4])
                .map_collect(|&e1, &e2, &e3, &e4| {
                    w * (55.0 * e1 - 59.0 * e2 + 37.0 * e3 - 9.0 * e4)
                })
        };
        let prev = match &owned_sample {
            Some(cur) => self.prev_sample(cur.view(), t, prev_t, combined),
            None => self.prev_sample(sample, t, prev_t, combined),
        };
        self.counter += 1;
        prev
    }

    /// diffusers' `_get_prev_sample` (formula (9) of the PNDM paper).
    fn prev_sample(
        &self,
        sample: ArrayViewD<f32>,
        t: i64,
        prev_t: i64,
        model_output: ArrayD<f32>,
    ) -> ArrayD<f32> {
        let alpha_t = self.schedule.alpha_at(t, self.final_alpha_cumprod);
        let alpha_prev = self.schedule.alpha_at(prev_t, self.final_alpha_cumprod);
        let beta_t = 1.0 - alpha_t;
        let beta_prev = 1.0 - alpha_prev;
        let model_output = match self.prediction_type {
            PredictionType::VPrediction => {
                let (sa, sb) = (alpha_t.sqrt(), beta_t.sqrt());
                Zip::from(&model_output)
                    .and(&sample)
                    .map_collect(|&v, &x| sa * v + sb * x)
            }
            // resolve() rejects `sample` for this kind.
            PredictionType::Epsilon | PredictionType::Sample => model_output,
        };
        let sample_coeff = (alpha_prev / alpha_t).sqrt();
        let denom = alpha_t * beta_prev.sqrt() + (alpha_t * beta_t * alpha_prev).sqrt();
        let diff = alpha_prev - alpha_t;
        Zip::from(&sample)
            .and(&model_output)
            .map_collect(|&x, &m| sample_coeff * x - diff * m / denom)
    }
}

impl Scheduler for Pndm {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// PLMS draws no noise.
    fn step(&mut self, input: StepInput<'_>, _noise: &mut dyn NoiseSource) -> ArrayD<f32> {
        let t = discrete(input.t);
        if self.counter < self.prk_timesteps.len() && !self.skip_prk_steps {
            self.step_prk(input.model_output, t, input.sample)
        } else {
            self.step_plms(input.model_output, t, input.sample)
        }
    }
}
