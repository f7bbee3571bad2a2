//! Noise schedules (`betas`, `alphas_cumprod`) computed the way diffusers computes them in torch
//! float32, so that the derived coefficients agree to the last bit or so.

use super::config::{BetaSchedule, ResolvedConfig};

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU: a float32 step, values from
/// the start for the first half and from the end for the second, each a fused multiply-add.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine transform (float64, then cast to float32).
fn squaredcos_cap_v2(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        (((t + 0.008) / 1.008 * std::f64::consts::PI) / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `torch.cumprod` on a float32 CPU tensor, which accumulates in float64.
fn cumprod(values: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    values
        .iter()
        .map(|&v| {
            acc *= f64::from(v);
            acc as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, algorithm 1), in float32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut sqrt_bar: Vec<f32> = cumprod(&alphas).iter().map(|a| a.sqrt()).collect();
    let (Some(&first), Some(&last)) = (sqrt_bar.first(), sqrt_bar.last()) else {
        return Vec::new();
    };
    let scale = first / (first - last);
    for v in &mut sqrt_bar {
        *v = (*v - last) * scale;
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    out.extend(bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

/// The float32 betas diffusers builds for `config`.
pub fn betas(config: &ResolvedConfig) -> Vec<f32> {
    let n = config.num_train_timesteps;
    let betas = if let Some(trained) = &config.trained_betas {
        trained.iter().map(|&b| b as f32).collect()
    } else {
        match config.beta_schedule {
            BetaSchedule::Linear => {
                torch_linspace_f32(config.beta_start as f32, config.beta_end as f32, n)
            }
            BetaSchedule::ScaledLinear => torch_linspace_f32(
                config.beta_start.sqrt() as f32,
                config.beta_end.sqrt() as f32,
                n,
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
            BetaSchedule::SquaredcosCapV2 => squaredcos_cap_v2(n),
        }
    };
    if config.rescale_betas_zero_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    }
}

/// diffusers' `alphas_cumprod` for `config` (float32, `num_train_timesteps` values).
pub fn alphas_cumprod(config: &ResolvedConfig) -> Vec<f32> {
    let alphas: Vec<f32> = betas(config).iter().map(|b| 1.0 - b).collect();
    cumprod(&alphas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_hits_both_ends_and_is_symmetric_in_construction() {
        let v = torch_linspace_f32(0.1, 0.9, 5);
        assert_eq!(v.len(), 5);
        assert_eq!(v[0], 0.1);
        assert_eq!(v[4], 0.9);
        assert_eq!(torch_linspace_f32(3.0, 7.0, 1), vec![3.0]);
    }

    #[test]
    fn zero_snr_rescale_ends_at_zero_alpha_bar() {
        let betas = torch_linspace_f32(0.00085f64.sqrt() as f32, 0.012f64.sqrt() as f32, 1000)
            .into_iter()
            .map(|b| b * b)
            .collect::<Vec<_>>();
        let rescaled = rescale_zero_terminal_snr(&betas);
        let ac = cumprod(&rescaled.iter().map(|b| 1.0 - b).collect::<Vec<_>>());
        assert_eq!(ac[999], 0.0);
        assert!((ac[0] - (1.0 - betas[0])).abs() < 1e-6);
    }
}
