//! Boomerang on a pixel-space EDM denoiser: x_sigma = x0 + sigma eps at the start sigma the
//! strength gives, then the reverse process back to sigma = 0 (one consistency call, or EDM Euler
//! steps). Written against [`Denoise`], so the arithmetic is tested without a graph.

use ndarray::{Array4, ArrayView4, Zip};

use super::spec::{DenoiserSpec, SamplerKind};

/// One call of the model: the estimate of x0 for `x` at noise level `sigma` (every row).
pub trait Denoise {
    type Error;
    fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, Self::Error>;
}

/// Karras et al.'s schedule exponent (EDM's rho = 7).
const RHO: f64 = 7.0;

/// Where the reverse process starts and the noise levels of its model calls.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePlan {
    /// `None` at strength 0: no noise is added and the source comes back unchanged, as the
    /// terrain package's generate_from() returns its source (no model call).
    pub start_sigma: Option<f64>,
    /// The sigma of each model call, largest first.
    pub calls: Vec<f64>,
}

impl SamplePlan {
    pub fn new(spec: &DenoiserSpec, strength: f64) -> SamplePlan {
        if strength <= 0.0 {
            return SamplePlan {
                start_sigma: None,
                calls: Vec::new(),
            };
        }
        let start = spec.start_sigma(strength);
        let calls = match spec.sampler {
            SamplerKind::Consistency => vec![start],
            SamplerKind::Euler { steps } => karras(start, spec.sigma.min, steps),
        };
        SamplePlan {
            start_sigma: Some(start),
            calls,
        }
    }
}

/// `steps` noise levels from `high` down to `low` (both included when steps > 1), evenly spaced
/// in sigma^(1/rho), as EDM spaces them.
pub fn karras(high: f64, low: f64, steps: usize) -> Vec<f64> {
    if steps <= 1 {
        return vec![high];
    }
    let (a, b) = (high.powf(1.0 / RHO), low.powf(1.0 / RHO));
    (0..steps)
        .map(|i| (a + i as f64 / (steps - 1) as f64 * (b - a)).powf(RHO))
        .collect()
}

/// Boomerang from `sources` (`[B, C, H, W]`, the model's value space) with standard-normal
/// `noise` of the same shape. The start is computed in f32 as noise * (sigma as f32) + source,
/// the terrain package's order of operations, so that both sides feed the model the same bits.
pub fn boomerang<D: Denoise>(
    model: &mut D,
    plan: &SamplePlan,
    sources: ArrayView4<f32>,
    noise: ArrayView4<f32>,
) -> Result<Array4<f32>, D::Error> {
    let Some(start) = plan.start_sigma else {
        return Ok(sources.to_owned());
    };
    let scale = start as f32;
    let mut x = Array4::zeros(sources.raw_dim());
    Zip::from(&mut x)
        .and(&noise)
        .and(&sources)
        .for_each(|x, &n, &s| *x = n * scale + s);
    for (i, &sigma) in plan.calls.iter().enumerate() {
        let x0 = model.denoise(x.view(), sigma)?;
        let next = plan.calls.get(i + 1).copied().unwrap_or(0.0);
        if next == 0.0 {
            // The last step lands on sigma = 0, where the Euler update is x0 itself.
            x = x0;
        } else {
            // Euler on the probability-flow ODE: dx/dsigma = (x - x0) / sigma.
            let ratio = ((next - sigma) / sigma) as f32;
            Zip::from(&mut x)
                .and(&x0)
                .for_each(|x, &d| *x += ratio * (*x - d));
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::denoiser::spec::{
        DenoiserSpec, InputRole, InputSpec, Prediction, SigmaRange, ValueRange,
    };
    use std::path::PathBuf;

    fn spec(sampler: SamplerKind) -> DenoiserSpec {
        DenoiserSpec {
            path: PathBuf::from("model.toml"),
            name: "test".into(),
            graph: PathBuf::from("g.onnx"),
            sha256: "0".repeat(64),
            fetch: None,
            prediction: Prediction::Denoised,
            sampler,
            channels: 1,
            size: 2,
            sigma: SigmaRange {
                min: 0.002,
                max: 80.0,
                data: 0.5,
            },
            values: ValueRange {
                low: -1.0,
                high: 1.0,
            },
            inputs: vec![InputSpec {
                name: "x".into(),
                role: InputRole::Noisy,
            }],
            output: "y".into(),
        }
    }

    /// The ideal denoiser of a single clean image `target`; records the sigmas it was called at.
    struct Oracle {
        target: f32,
        calls: Vec<(f64, f32)>,
    }

    impl Denoise for Oracle {
        type Error = ();
        fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, ()> {
            self.calls.push((sigma, x[[0, 0, 0, 0]]));
            Ok(Array4::from_elem(x.raw_dim(), self.target))
        }
    }

    #[test]
    fn consistency_noises_to_the_strength_sigma_and_calls_once() {
        let plan = SamplePlan::new(&spec(SamplerKind::Consistency), 0.5);
        assert_eq!(plan.calls.len(), 1);
        let source = Array4::from_elem((1, 1, 2, 2), 0.25f32);
        let noise = Array4::from_elem((1, 1, 2, 2), 1.0f32);
        let mut oracle = Oracle {
            target: -0.5,
            calls: Vec::new(),
        };
        let out = boomerang(&mut oracle, &plan, source.view(), noise.view()).unwrap();
        let (sigma, fed) = oracle.calls[0];
        assert!((sigma - 0.4).abs() < 1e-12);
        assert_eq!(fed, 1.0 * 0.4f32 + 0.25);
        assert!(out.iter().all(|&v| v == -0.5));
    }

    #[test]
    fn euler_walks_the_karras_schedule_and_ends_on_the_denoised_image() {
        let plan = SamplePlan::new(&spec(SamplerKind::Euler { steps: 4 }), 0.8);
        assert_eq!(plan.calls.len(), 4);
        assert!((plan.calls[0] - plan.start_sigma.unwrap()).abs() < 1e-9);
        assert!((plan.calls[3] - 0.002).abs() < 1e-12);
        assert!(plan.calls.windows(2).all(|w| w[0] > w[1]));
        let source = Array4::zeros((1, 1, 2, 2));
        let noise = Array4::from_elem((1, 1, 2, 2), 1.0f32);
        let mut oracle = Oracle {
            target: 0.0,
            calls: Vec::new(),
        };
        let out = boomerang(&mut oracle, &plan, source.view(), noise.view()).unwrap();
        // With the exact denoiser of x0 = 0, Euler keeps x = sigma * eps at every level.
        for &(sigma, fed) in &oracle.calls {
            assert!(
                (f64::from(fed) - sigma).abs() < 1e-4 * sigma.max(1.0),
                "{sigma} {fed}"
            );
        }
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn strength_zero_returns_the_source_without_a_call() {
        let plan = SamplePlan::new(&spec(SamplerKind::Consistency), 0.0);
        let source = Array4::from_elem((1, 1, 2, 2), 0.3f32);
        let mut oracle = Oracle {
            target: 9.0,
            calls: Vec::new(),
        };
        let out = boomerang(&mut oracle, &plan, source.view(), source.view()).unwrap();
        assert!(oracle.calls.is_empty());
        assert_eq!(out, source);
    }
}
