//! The denoiser's ONNX graph: pinned by its sha256, checked against the spec's inputs and output
//! (names, element types, ranks, fixed dimensions) when it opens, then called with x, sigma and
//! the constants, its prediction turned into x0.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array4, ArrayView4, Zip};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::sampler::{self, Denoise, SamplePlan};
use super::spec::{DenoiserSpec, InputRole, Prediction, SpecError};
use super::tiled;
use crate::diffusion::noise::{GaussianRng, NoiseSource, Stream};
use crate::io::hashing::sha256_file_remembered;
use crate::io::runtime::{Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum DenoiserError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{path}: the graph {spec} names is missing; {fix}")]
    MissingGraph {
        path: PathBuf,
        spec: PathBuf,
        fix: String,
    },
    #[error("cannot read {path}: {source}")]
    ReadGraph {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: sha256 {found}, but {spec} pins {expected}; fetch the graph again or fix the pin"
    )]
    Sha256 {
        path: PathBuf,
        spec: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path}: {message} (as {spec} describes it)")]
    Signature {
        path: PathBuf,
        spec: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Input(String),
    #[error("{path}: running the graph failed: {message}")]
    Run { path: PathBuf, message: String },
}

/// An opened denoiser: its spec and its checked session.
pub struct DenoiserModel {
    pub spec: DenoiserSpec,
    session: Session,
}

impl DenoiserModel {
    /// Reads `dir/model.toml`, checks the graph's sha256 (remembered per file as for SD folders,
    /// unless `options.verify` says full) and its signature, and opens it.
    pub fn open(
        dir: &Path,
        runtime: &Runtime,
        options: &SessionOptions,
    ) -> Result<DenoiserModel, DenoiserError> {
        DenoiserModel::open_spec(DenoiserSpec::load(dir)?, runtime, options)
    }

    /// [`DenoiserModel::open`] with a spec already read (and perhaps `--set`).
    pub fn open_spec(
        spec: DenoiserSpec,
        runtime: &Runtime,
        options: &SessionOptions,
    ) -> Result<DenoiserModel, DenoiserError> {
        if !spec.graph.is_file() {
            let fix = match &spec.fetch {
                Some(how) => format!("get it with `{how}`"),
                None => "put the graph there or fix `graph`".into(),
            };
            return Err(DenoiserError::MissingGraph {
                path: spec.graph.clone(),
                spec: spec.path.clone(),
                fix,
            });
        }
        let found = sha256_file_remembered(&spec.graph, options.verify).map_err(|source| {
            DenoiserError::ReadGraph {
                path: spec.graph.clone(),
                source,
            }
        })?;
        if found != spec.sha256 {
            return Err(DenoiserError::Sha256 {
                path: spec.graph.clone(),
                spec: spec.path.clone(),
                found,
                expected: spec.sha256.clone(),
            });
        }
        let session = runtime.session(&spec.graph, options)?;
        check_signature(&spec, &session)?;
        Ok(DenoiserModel { spec, session })
    }

    /// Boomerang on `sources` `[B, C, H, W]` (model value space) with the given standard-normal
    /// `noise`, at `strength` in `[0, 1]`.
    pub fn boomerang(
        &mut self,
        sources: ArrayView4<f32>,
        noise: ArrayView4<f32>,
        strength: f64,
    ) -> Result<Array4<f32>, DenoiserError> {
        self.check_batch(sources)?;
        if !(0.0..=1.0).contains(&strength) {
            return Err(DenoiserError::Input(format!(
                "strength {strength} is outside 0..=1"
            )));
        }
        if noise.shape() != sources.shape() {
            return Err(DenoiserError::Input(format!(
                "noise of shape {:?} for sources of shape {:?}",
                noise.shape(),
                sources.shape()
            )));
        }
        let plan = SamplePlan::new(&self.spec, strength);
        sampler::boomerang(self, &plan, sources, noise)
    }

    /// [`DenoiserModel::boomerang`] with row `i`'s noise drawn from `seeds[i]` (the start-noise
    /// stream, standard normal, as the Stable Diffusion path draws its start noise).
    pub fn sample(
        &mut self,
        sources: ArrayView4<f32>,
        seeds: &[[u8; 32]],
        strength: f64,
    ) -> Result<Array4<f32>, DenoiserError> {
        if seeds.len() != sources.shape()[0] {
            return Err(DenoiserError::Input(format!(
                "{} images but {} seeds",
                sources.shape()[0],
                seeds.len()
            )));
        }
        let row = [
            1,
            sources.shape()[1],
            sources.shape()[2],
            sources.shape()[3],
        ];
        let mut noise = Array4::zeros(sources.raw_dim());
        for (i, seed) in seeds.iter().enumerate() {
            let drawn = GaussianRng::new(*seed, Stream::StartNoise).randn(&row);
            noise.slice_mut(ndarray::s![i..i + 1, .., .., ..]).assign(
                &drawn
                    .into_shape_with_order(row)
                    .map_err(|e| DenoiserError::Input(format!("noise of the wrong shape: {e}")))?,
            );
        }
        self.boomerang(sources, noise.view(), strength)
    }

    /// Boomerang on one `[1, C, H, W]` field of any size (`enhance`): padded to at least the
    /// model's size by repeating its edge, noised over the whole padded field from `seed`'s
    /// start-noise stream (as [`DenoiserModel::sample`] draws it, so a field of exactly the
    /// model's size gets the same result), denoised on tiles of the model's size overlapping by
    /// at least `overlap` and fused at every call, `batch` tiles per graph call, then cut back.
    /// Returns the result and the number of tiles.
    pub fn sample_field(
        &mut self,
        field: ArrayView4<f32>,
        seed: &[u8; 32],
        strength: f64,
        overlap: usize,
        batch: usize,
    ) -> Result<(Array4<f32>, usize), DenoiserError> {
        let (rows, channels, height, width) = field.dim();
        if rows != 1 || channels != self.spec.channels || height == 0 || width == 0 {
            return Err(DenoiserError::Input(format!(
                "a field of shape {:?}; {} works on [1, {}, H, W]",
                field.shape(),
                self.spec.path.display(),
                self.spec.channels
            )));
        }
        if !(0.0..=1.0).contains(&strength) {
            return Err(DenoiserError::Input(format!(
                "strength {strength} is outside 0..=1"
            )));
        }
        let tile = self.spec.size;
        let padded = tiled::pad_to(field, tile);
        let shape = padded.raw_dim();
        let drawn = GaussianRng::new(*seed, Stream::StartNoise).randn(padded.shape());
        let noise = drawn
            .into_shape_with_order(shape)
            .map_err(|e| DenoiserError::Input(format!("noise of the wrong shape: {e}")))?;
        let plan = SamplePlan::new(&self.spec, strength);
        let (result, tiles) = tiled::boomerang_tiled(
            self,
            &plan,
            padded.view(),
            noise.view(),
            tile,
            overlap,
            batch,
        )?;
        Ok((tiled::crop(result.view(), height, width), tiles))
    }

    fn check_batch(&self, sources: ArrayView4<f32>) -> Result<(), DenoiserError> {
        let spec = &self.spec;
        let want = [spec.channels, spec.size, spec.size];
        if sources.shape()[1..] != want {
            return Err(DenoiserError::Input(format!(
                "images of shape {:?}; {} works on [B, {}, {}, {}]",
                sources.shape(),
                spec.path.display(),
                spec.channels,
                spec.size,
                spec.size
            )));
        }
        Ok(())
    }

    fn run_error(&self, message: impl std::fmt::Display) -> DenoiserError {
        DenoiserError::Run {
            path: self.spec.graph.clone(),
            message: message.to_string(),
        }
    }
}

impl Denoise for DenoiserModel {
    type Error = DenoiserError;

    fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, DenoiserError> {
        let batch = x.shape()[0];
        let x = x.as_standard_layout();
        // Every per-row input, in the spec's order; the noisy image is fed separately.
        let per_row: Vec<(String, Array1<f32>)> = self
            .spec
            .inputs
            .iter()
            .filter_map(|input| {
                let value = match input.role {
                    InputRole::Noisy => return None,
                    InputRole::Sigma => sigma as f32,
                    InputRole::CNoise => (sigma.ln() / 4.0) as f32,
                    InputRole::Constant { value, .. } => value,
                };
                Some((input.name.clone(), Array1::from_elem(batch, value)))
            })
            .collect();
        let noisy_name = self
            .spec
            .inputs
            .iter()
            .find(|i| i.role == InputRole::Noisy)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let mut feeds: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        feeds.push((
            noisy_name,
            TensorRef::from_array_view(x.view())
                .map_err(|e| self.run_error(e))?
                .into(),
        ));
        for (name, values) in &per_row {
            feeds.push((
                name.clone(),
                TensorRef::from_array_view(values.view())
                    .map_err(|e| self.run_error(e))?
                    .into(),
            ));
        }
        let path = self.spec.graph.clone();
        let run_error = |message: String| DenoiserError::Run {
            path: path.clone(),
            message,
        };
        let outputs = self
            .session
            .run(feeds)
            .map_err(|e| run_error(e.to_string()))?;
        let value = outputs
            .get(&self.spec.output)
            .ok_or_else(|| run_error(format!("no output `{}`", self.spec.output)))?;
        let predicted: Array4<f32> = value
            .try_extract_array::<f32>()
            .map_err(|e| run_error(e.to_string()))?
            .to_owned()
            .into_dimensionality()
            .map_err(|e| run_error(format!("output `{}`: {e}", self.spec.output)))?;
        if predicted.shape() != x.shape() {
            return Err(run_error(format!(
                "output `{}` has shape {:?}, the input {:?}",
                self.spec.output,
                predicted.shape(),
                x.shape()
            )));
        }
        Ok(to_denoised(
            self.spec.prediction,
            self.spec.sigma.data,
            x.view(),
            predicted,
            sigma,
        ))
    }
}

/// The graph's prediction as the x0 estimate.
pub fn to_denoised(
    prediction: Prediction,
    sigma_data: f64,
    x: ArrayView4<f32>,
    mut predicted: Array4<f32>,
    sigma: f64,
) -> Array4<f32> {
    match prediction {
        Prediction::Denoised => predicted,
        Prediction::Epsilon => {
            let s = sigma as f32;
            Zip::from(&mut predicted)
                .and(&x)
                .for_each(|p, &x| *p = x - s * *p);
            predicted
        }
        Prediction::V => {
            let total = sigma * sigma + sigma_data * sigma_data;
            let skip = (sigma_data * sigma_data / total) as f32;
            let out = (sigma * sigma_data / total.sqrt()) as f32;
            Zip::from(&mut predicted)
                .and(&x)
                .for_each(|p, &x| *p = skip * x - out * *p);
            predicted
        }
    }
}

/// The graph's inputs are exactly the spec's, float32, the noisy image `[B, C, S, S]` and the
/// others one value per row; the output exists, float32, rank 4. Fixed dimensions must agree.
fn check_signature(spec: &DenoiserSpec, session: &Session) -> Result<(), DenoiserError> {
    let fail = |message: String| DenoiserError::Signature {
        path: spec.graph.clone(),
        spec: spec.path.clone(),
        message,
    };
    let listed = |names: Vec<&str>| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let graph_inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    for input in &spec.inputs {
        let Some(outlet) = session.inputs().iter().find(|o| o.name() == input.name) else {
            return Err(fail(format!(
                "no input `{}`; the graph's inputs are {}",
                input.name,
                listed(graph_inputs)
            )));
        };
        let expected: &[i64] = match input.role {
            InputRole::Noisy => &[-1, spec.channels as i64, spec.size as i64, spec.size as i64],
            _ => &[-1],
        };
        check_port("input", &input.name, outlet.dtype(), expected).map_err(&fail)?;
    }
    if let Some(extra) = graph_inputs
        .iter()
        .find(|name| !spec.inputs.iter().any(|i| i.name == **name))
    {
        return Err(fail(format!(
            "the graph has an input `{extra}` that the spec does not list"
        )));
    }
    let Some(outlet) = session.outputs().iter().find(|o| o.name() == spec.output) else {
        return Err(fail(format!(
            "no output `{}`; the graph's outputs are {}",
            spec.output,
            listed(session.outputs().iter().map(|o| o.name()).collect())
        )));
    };
    check_port(
        "output",
        &spec.output,
        outlet.dtype(),
        &[-1, spec.channels as i64, spec.size as i64, spec.size as i64],
    )
    .map_err(&fail)
}

/// One port: a float32 tensor of `expected.len()` dimensions, each fixed dimension equal to the
/// expected one (-1 on either side: any).
fn check_port(
    kind: &str,
    name: &str,
    dtype: &ort::value::ValueType,
    expected: &[i64],
) -> Result<(), String> {
    let element = dtype.tensor_type().unwrap_or(TensorElementType::Undefined);
    if element != TensorElementType::Float32 {
        return Err(format!(
            "{kind} `{name}` has element type {element}; only float32 is supported"
        ));
    }
    let shape: Vec<i64> = dtype.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let agrees = shape.len() == expected.len()
        && shape
            .iter()
            .zip(expected)
            .all(|(&found, &want)| found < 0 || want < 0 || found == want);
    if !agrees {
        let show = |dims: &[i64]| {
            dims.iter()
                .map(|&d| {
                    if d < 0 {
                        "?".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "{kind} `{name}` has shape [{}], expected [{}]",
            show(&shape),
            show(expected)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn predictions_become_the_clean_image() {
        // x = x0 + sigma eps with x0 = 0.3, eps = -1.2, sigma = 2, sigma_data = 0.5.
        let (x0, eps, sigma, sd) = (0.3f64, -1.2f64, 2.0f64, 0.5f64);
        let x = Array4::from_elem((1, 1, 1, 1), (x0 + sigma * eps) as f32);
        let close = |a: Array4<f32>| (f64::from(a[[0, 0, 0, 0]]) - x0).abs() < 1e-5;
        let eps_out = Array4::from_elem((1, 1, 1, 1), eps as f32);
        assert!(close(to_denoised(
            Prediction::Epsilon,
            sd,
            x.view(),
            eps_out,
            sigma
        )));
        // v in EDM's sigma_data scaling: v = (sd^2 eps - sigma x0) / (sd sqrt(sigma^2 + sd^2)).
        let v = (sd * sd * eps - sigma * x0) / (sd * (sigma * sigma + sd * sd).sqrt());
        let v_out = Array4::from_elem((1, 1, 1, 1), v as f32);
        assert!(close(to_denoised(
            Prediction::V,
            sd,
            x.view(),
            v_out,
            sigma
        )));
        let d_out = Array4::from_elem((1, 1, 1, 1), x0 as f32);
        assert!(close(to_denoised(
            Prediction::Denoised,
            sd,
            x.view(),
            d_out,
            sigma
        )));
    }
}
