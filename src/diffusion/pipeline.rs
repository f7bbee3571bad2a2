//! The Boomerang core: encode, noise to an intermediate timestep, denoise back, decode.
//!
//! The order of operations and every formula follows diffusers' PyTorch
//! `StableDiffusionImg2ImgPipeline` (not its ONNX twin, which starts one step off because of
//! `steps_offset`): `init_timestep = min(int(N*s), N)`, `t_start = N - init_timestep`, the noise is
//! added at the first kept timestep, and classifier-free guidance runs only when guidance > 1.

use half::f16;
use ndarray::{
    concatenate, s, Array2, Array3, Array4, ArrayD, ArrayView, ArrayView3, ArrayView4, Axis,
    Dimension, IxDyn,
};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, DynValueRef, Tensor, TensorElementType, TensorRef};

use crate::diffusion::model::{SdModel, VaeEncoderOutput};
use crate::diffusion::noise::{GaussianRng, NoiseSource, Stream};
use crate::diffusion::scheduler::{Scheduler, StepInput};
use crate::diffusion::tiled::{Fusion, TileGrid};
use crate::diffusion::timing::{Stage, StageTimer};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// anyhow's `{:#}` prints the ONNX Runtime message after this one.
    #[error("{graph}: ONNX Runtime failed")]
    Runtime {
        graph: &'static str,
        #[source]
        source: ort::Error,
    },
    #[error("{graph}: unexpected output: {message}")]
    Output {
        graph: &'static str,
        message: String,
    },
    #[error("{0}")]
    Input(String),
}

fn runtime_error(graph: &'static str) -> impl Fn(ort::Error) -> PipelineError {
    move |source| PipelineError::Runtime { graph, source }
}

/// Where the reverse process starts for a strength, exactly as diffusers' `get_timesteps`
/// (or, for LCM, its `set_timesteps(strength=...)`: see `scheduler::build_img2img`).
#[derive(Debug, Clone, PartialEq)]
pub struct StartPlan {
    /// Index into the scheduler's full timestep list where denoising begins.
    pub begin_index: usize,
    /// The timesteps that will actually be run, in order.
    pub timesteps: Vec<f64>,
}

impl StartPlan {
    /// `strength` is f64 on purpose: `int(N*s)` must see the same product Python computes.
    pub fn new(scheduler: &dyn Scheduler, steps: usize, strength: f64) -> StartPlan {
        let all = scheduler.timesteps();
        let begin_index = scheduler
            .img2img_begin_index(steps, strength)
            .min(all.len());
        StartPlan {
            begin_index,
            timesteps: all[begin_index..].to_vec(),
        }
    }

    /// The timestep the forward noise reaches; `None` at strength 0 (a plain VAE round trip).
    pub fn start_timestep(&self) -> Option<f64> {
        self.timesteps.first().copied()
    }
}

/// The noise one batch consumes, by purpose.
pub trait PipelineNoise {
    fn vae_sample(&mut self, shape: &[usize]) -> ArrayD<f32>;
    fn start(&mut self, shape: &[usize]) -> ArrayD<f32>;
    fn step(&mut self) -> &mut dyn NoiseSource;
}

/// One ChaCha stream per image of a batch; a batch-shaped draw is the images' own draws stacked,
/// so an image's noise is the same whatever batch it lands in.
pub struct PerImage(Vec<GaussianRng>);

impl NoiseSource for PerImage {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let mut out = ArrayD::zeros(IxDyn(shape));
        let per_image = shape.get(1..).unwrap_or(&[]);
        for (mut row, rng) in out.axis_iter_mut(Axis(0)).zip(self.0.iter_mut()) {
            row.assign(&rng.randn(per_image));
        }
        out
    }
}

/// Seeded noise for a batch: per image, independent streams for the VAE sample, the start noise
/// and the scheduler's step noise.
pub struct SeededNoise {
    vae: PerImage,
    start: PerImage,
    step: PerImage,
}

impl SeededNoise {
    pub fn new(image_seeds: &[[u8; 32]]) -> Self {
        let streams = |stream| {
            PerImage(
                image_seeds
                    .iter()
                    .map(|&seed| GaussianRng::new(seed, stream))
                    .collect(),
            )
        };
        SeededNoise {
            vae: streams(Stream::VaeSample),
            start: streams(Stream::StartNoise),
            step: streams(Stream::StepNoise),
        }
    }
}

impl PipelineNoise for SeededNoise {
    fn vae_sample(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.vae.randn(shape)
    }
    fn start(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.start.randn(shape)
    }
    fn step(&mut self) -> &mut dyn NoiseSource {
        &mut self.step
    }
}

/// Prompt embeddings for the UNet, computed once per prompt.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// `[1, tokens, hidden]`
    pub cond: Array3<f32>,
    /// Present only when guidance > 1.
    pub uncond: Option<Array3<f32>>,
    pub guidance: f32,
    /// SDXL's pooled text embeddings (`None` for SD 1.x/2.x).
    pub xl: Option<XlConditioning>,
    /// `[1, dim]`: a latent consistency model's `timestep_cond`, [`guidance_scale_embedding`] of
    /// `guidance - 1`; then `uncond` is `None`.
    pub guidance_embedding: Option<Array2<f32>>,
}

/// diffusers' `get_guidance_scale_embedding` of one `w` (the LCM pipelines pass `guidance - 1`):
/// sines then cosines of `1000 w` at `dim / 2` frequencies `10000^(-i / (dim/2 - 1))`, zero-padded
/// to an odd `dim`; in f32 as there. `dim` is at least 4 (the model check refuses less).
pub fn guidance_scale_embedding(w: f32, dim: usize) -> Array2<f32> {
    let half = dim / 2;
    let step = 10000f32.ln() / (half - 1) as f32;
    let scaled = w * 1000.0;
    let mut embedding = Array2::zeros((1, dim));
    for i in 0..half {
        let angle = scaled * (i as f32 * -step).exp();
        embedding[[0, i]] = angle.sin();
        embedding[[0, half + i]] = angle.cos();
    }
    embedding
}

/// SDXL's UNet inputs `text_embeds` `[U, projection]` and `time_ids` `[U, 6]` (`[U, 5]` for a
/// refiner) of one call.
pub type XlInputs = (Array2<f32>, Array2<f32>);

/// SDXL's extra UNet conditioning: the second text encoder's pooled (projected) embedding of the
/// prompt and, with guidance, of the negative prompt. The UNet's `time_ids` follow from the
/// latent size at each call (original size = target size = the image, crop (0, 0)) and, for a
/// refiner, the aesthetic scores.
#[derive(Debug, Clone)]
pub struct XlConditioning {
    /// `[1, projection]`
    pub pooled: Array2<f32>,
    /// Present exactly when `Conditioning::uncond` is.
    pub uncond_pooled: Option<Array2<f32>>,
    /// A refiner's (`requires_aesthetics_score`): they end its `time_ids` in place of the target
    /// size.
    pub aesthetic_scores: Option<AestheticScores>,
}

/// The aesthetic scores an SDXL refiner is conditioned on: one for the prompt, one for the
/// negative (unconditional) half.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AestheticScores {
    pub positive: f32,
    pub negative: f32,
}

impl Default for AestheticScores {
    /// diffusers' `StableDiffusionXLImg2ImgPipeline` defaults (`aesthetic_score`,
    /// `negative_aesthetic_score`).
    fn default() -> Self {
        AestheticScores {
            positive: 6.0,
            negative: 2.5,
        }
    }
}

impl Conditioning {
    /// The UNet's `encoder_hidden_states` for a batch: diffusers' order, unconditional half first.
    fn for_batch(&self, batch: usize) -> Result<Array3<f32>, PipelineError> {
        let repeat = |e: &Array3<f32>| -> Result<Array3<f32>, PipelineError> {
            let views = vec![e.view(); batch];
            concatenate(Axis(0), &views).map_err(|e| PipelineError::Input(e.to_string()))
        };
        let cond = repeat(&self.cond)?;
        match &self.uncond {
            Some(uncond) => concatenate(Axis(0), &[repeat(uncond)?.view(), cond.view()])
                .map_err(|e| PipelineError::Input(e.to_string())),
            None => Ok(cond),
        }
    }

    /// `timestep_cond` for a batch of `batch` rows (never guided: see `guidance_embedding`).
    fn guidance_embedding_for(&self, batch: usize) -> Result<Option<Array2<f32>>, PipelineError> {
        self.guidance_embedding
            .as_ref()
            .map(|row| {
                concatenate(Axis(0), &vec![row.view(); batch])
                    .map_err(|e| PipelineError::Input(e.to_string()))
            })
            .transpose()
    }

    /// SDXL's `text_embeds` and `time_ids` for a batch of `[B, C, h, w]` latents that are
    /// `factor` times smaller than the image, in the order of [`Conditioning::for_batch`];
    /// `None` for SD 1.x/2.x.
    pub fn xl_inputs(
        &self,
        batch: usize,
        shape: &[usize],
        factor: usize,
    ) -> Result<Option<XlInputs>, PipelineError> {
        let Some(xl) = &self.xl else {
            return Ok(None);
        };
        let input = |e: ndarray::ShapeError| PipelineError::Input(e.to_string());
        let repeat = |e: &Array2<f32>| -> Result<Array2<f32>, PipelineError> {
            concatenate(Axis(0), &vec![e.view(); batch]).map_err(input)
        };
        let pooled = repeat(&xl.pooled)?;
        let pooled = match (&self.uncond, &xl.uncond_pooled) {
            (None, None) => pooled,
            (Some(_), Some(uncond)) => {
                concatenate(Axis(0), &[repeat(uncond)?.view(), pooled.view()]).map_err(input)?
            }
            _ => {
                return Err(PipelineError::Input(
                    "SDXL conditioning: the pooled negative embedding must come with the negative prompt embedding".into(),
                ))
            }
        };
        let time_ids = self.time_ids(batch, shape, factor);
        Ok(Some((pooled, time_ids)))
    }

    /// `time_ids` for a batch, in the order of [`Conditioning::for_batch`], as diffusers' `StableDiffusionXLImg2ImgPipeline._get_add_time_ids`
    /// makes them by default: original size = target size = (height, width) of the image, crop
    /// top-left (0, 0); a refiner's end with the aesthetic score instead of the target size, the
    /// negative score in the unconditional half (the first `batch` rows when guided).
    fn time_ids(&self, batch: usize, shape: &[usize], factor: usize) -> Array2<f32> {
        let (height, width) = ((shape[2] * factor) as f32, (shape[3] * factor) as f32);
        let ends = match self.xl.as_ref().and_then(|xl| xl.aesthetic_scores) {
            Some(scores) => (vec![scores.negative], vec![scores.positive]),
            None => (vec![height, width], vec![height, width]),
        };
        let row = |end: &[f32]| [&[height, width, 0.0, 0.0][..], end].concat();
        let (uncond_row, cond_row) = (row(&ends.0), row(&ends.1));
        let uncond_rows = if self.uncond.is_some() { batch } else { 0 };
        Array2::from_shape_fn((uncond_rows + batch, cond_row.len()), |(i, j)| {
            if i < uncond_rows {
                uncond_row[j]
            } else {
                cond_row[j]
            }
        })
    }
}

/// Runs the text encoder on one padded token sequence.
pub fn encode_text(
    model: &mut SdModel,
    ids: &[i64],
    timer: &mut StageTimer,
) -> Result<Array3<f32>, PipelineError> {
    let Some(session) = model.text_encoder.as_mut() else {
        return Err(PipelineError::Input(
            "text encoding on a model without text_encoder/ (an SDXL refiner encodes with text_encoder_2)".into(),
        ));
    };
    timer.time(Stage::TextEncoder, |timer| {
        let ids = InputIds::new(ids, model.input_types.input_ids)?;
        let tensor = ids.tensor().map_err(runtime_error("text_encoder"))?;
        let outputs = timer
            .runtime_call(Stage::TextEncoder, || {
                session.run(ort::inputs!["input_ids" => tensor])
            })
            .map_err(runtime_error("text_encoder"))?;
        let value = outputs
            .get("last_hidden_state")
            .ok_or_else(|| output_error("text_encoder", "no `last_hidden_state`"))?;
        graph_output(value, "text_encoder")?
            .into_dimensionality()
            .map_err(|e| output_error("text_encoder", e))
    })
}

/// SDXL's prompt embedding: the penultimate hidden states of both text encoders concatenated on
/// the feature axis `[1, tokens, hidden + hidden_2]`, and the second encoder's pooled
/// `text_embeds` `[1, projection]`, as diffusers' `StableDiffusionXLImg2ImgPipeline.encode_prompt`.
/// A refiner has only the second encoder: `ids` is `None` and the embedding is its penultimate
/// hidden states alone.
pub fn encode_text_xl(
    model: &mut SdModel,
    ids: Option<&[i64]>,
    ids_2: &[i64],
    timer: &mut StageTimer,
) -> Result<(Array3<f32>, Array2<f32>), PipelineError> {
    let Some(xl) = model.xl.as_mut() else {
        return Err(PipelineError::Input(
            "SDXL text encoding on a model without text_encoder_2".into(),
        ));
    };
    let first_encoder = match (ids, model.text_encoder.as_mut(), &xl.penultimate) {
        (Some(ids), Some(session), Some(penultimate)) => Some((ids, session, penultimate)),
        (None, None, None) => None,
        _ => {
            return Err(PipelineError::Input(
                "SDXL text encoding: token ids for the first text encoder must come exactly when the model has one".into(),
            ))
        }
    };
    timer.time(Stage::TextEncoder, |timer| {
        let first = match first_encoder {
            Some((ids, session, penultimate)) => {
                let ids = InputIds::new(ids, model.input_types.input_ids)?;
                let tensor = ids.tensor().map_err(runtime_error("text_encoder"))?;
                let outputs = timer
                    .runtime_call(Stage::TextEncoder, || {
                        session.run(ort::inputs!["input_ids" => tensor])
                    })
                    .map_err(runtime_error("text_encoder"))?;
                Some(output_array::<ndarray::Ix3>(
                    &outputs,
                    penultimate,
                    "text_encoder",
                )?)
            }
            None => None,
        };

        let ids_2 = InputIds::new(ids_2, xl.input_ids_2)?;
        let tensor = ids_2.tensor().map_err(runtime_error("text_encoder_2"))?;
        let session = &mut xl.text_encoder_2;
        let outputs = timer
            .runtime_call(Stage::TextEncoder, || {
                session.run(ort::inputs!["input_ids" => tensor])
            })
            .map_err(runtime_error("text_encoder_2"))?;
        let second = output_array::<ndarray::Ix3>(&outputs, &xl.penultimate_2, "text_encoder_2")?;
        let pooled = output_array::<ndarray::Ix2>(&outputs, "text_embeds", "text_encoder_2")?;
        let first_shape = first.as_ref().map_or(second.shape(), |f| f.shape());
        if first_shape[..2] != second.shape()[..2] || second.shape()[0] != 1 || pooled.shape()[0] != 1
        {
            return Err(output_error(
                "text_encoder_2",
                format!(
                    "hidden states {:?} and {:?}, pooled {:?}: expected one prompt of equal length from both encoders",
                    first_shape,
                    second.shape(),
                    pooled.shape()
                ),
            ));
        }
        let hidden = match first {
            Some(first) => concatenate(Axis(2), &[first.view(), second.view()])
                .map_err(|e| output_error("text_encoder_2", e))?,
            None => second,
        };
        Ok((hidden, pooled))
    })
}

/// The output `name` of a finished run as an f32 array of dimension `D`.
fn output_array<D: Dimension>(
    outputs: &ort::session::SessionOutputs,
    name: &str,
    graph: &'static str,
) -> Result<ndarray::Array<f32, D>, PipelineError> {
    let value = outputs
        .get(name)
        .ok_or_else(|| output_error(graph, format!("no `{name}`")))?;
    graph_output(value, graph)?
        .into_dimensionality()
        .map_err(|e| output_error(graph, e))
}

/// The text encoder's `input_ids` `[1, tokens]`, in the element type the graph declares
/// (int32 graphs get the ids narrowed; anything else gets them as int64).
enum InputIds {
    Int32(Array2<i32>),
    Int64(Array2<i64>),
}

impl InputIds {
    fn new(ids: &[i64], element_type: TensorElementType) -> Result<Self, PipelineError> {
        let shape = (1, ids.len());
        match element_type {
            TensorElementType::Int32 => {
                Array2::from_shape_vec(shape, ids.iter().map(|&i| i as i32).collect())
                    .map(InputIds::Int32)
            }
            _ => Array2::from_shape_vec(shape, ids.to_vec()).map(InputIds::Int64),
        }
        .map_err(|e| PipelineError::Input(e.to_string()))
    }

    fn tensor(&self) -> ort::Result<DynValueRef<'_>> {
        match self {
            InputIds::Int32(ids) => TensorRef::from_array_view(ids.view()).map(|t| t.into_dyn()),
            InputIds::Int64(ids) => TensorRef::from_array_view(ids.view()).map(|t| t.into_dyn()),
        }
    }
}

/// An f32 array (in standard layout) as a graph input of `element`, the type the graph declares
/// and the model check accepted: borrowed as is for f32, converted just before the run otherwise,
/// so the pipeline itself computes in f32 whatever the export.
fn graph_input<'a, D: Dimension + 'static>(
    array: ArrayView<'a, f32, D>,
    element: TensorElementType,
    graph: &'static str,
) -> Result<SessionInputValue<'a>, PipelineError> {
    let value: SessionInputValue<'a> = match element {
        TensorElementType::Float32 => TensorRef::from_array_view(array)
            .map_err(runtime_error(graph))?
            .into(),
        TensorElementType::Float16 => Tensor::from_array(array.mapv(f16::from_f32))
            .map_err(runtime_error(graph))?
            .into(),
        // Only timesteps come as integers; fractional ones (interpolated schedules) are rounded.
        TensorElementType::Int64 => Tensor::from_array(array.mapv(|x| x.round() as i64))
            .map_err(runtime_error(graph))?
            .into(),
        TensorElementType::Int32 => Tensor::from_array(array.mapv(|x| x.round() as i32))
            .map_err(runtime_error(graph))?
            .into(),
        other => {
            return Err(PipelineError::Input(format!(
                "{graph}: cannot feed an input of element type {other}"
            )))
        }
    };
    Ok(value)
}

/// A graph output as f32, converted right after the run from either float type the model check
/// accepts; any other type is an error, not a panic.
fn graph_output(value: &DynValue, graph: &'static str) -> Result<ArrayD<f32>, PipelineError> {
    let array = match value.dtype().tensor_type() {
        Some(TensorElementType::Float16) => value
            .try_extract_array::<f16>()
            .map(|view| view.mapv(f16::to_f32)),
        _ => value.try_extract_array::<f32>().map(|view| view.to_owned()),
    };
    array.map_err(|e| output_error(graph, e))
}

fn output_error(graph: &'static str, error: impl std::fmt::Display) -> PipelineError {
    PipelineError::Output {
        graph,
        message: error.to_string(),
    }
}

/// One input of a graph: its name, its values and the element type the graph declares.
struct ImageInput<'a> {
    name: &'static str,
    values: ArrayView4<'a, f32>,
    element: TensorElementType,
}

/// Runs a single-input, single-output graph on a 4-d f32 tensor.
fn run_image_graph(
    session: &mut Session,
    input: ImageInput,
    output: &'static str,
    graph: &'static str,
    stage: Stage,
    timer: &mut StageTimer,
) -> Result<Array4<f32>, PipelineError> {
    let contiguous = input.values.as_standard_layout();
    let tensor = graph_input(contiguous.view(), input.element, graph)?;
    let outputs = timer
        .runtime_call(stage, || session.run(ort::inputs![input.name => tensor]))
        .map_err(runtime_error(graph))?;
    let value = outputs
        .get(output)
        .ok_or_else(|| output_error(graph, format!("no `{output}`")))?;
    graph_output(value, graph)?
        .into_dimensionality()
        .map_err(|e| output_error(graph, e))
}

/// What a batch produced.
pub struct BatchOutput {
    /// `[B, 3, H, W]` in `[0, 1]`, as diffusers' `(x / 2 + 0.5).clamp(0, 1)`.
    pub images: Array4<f32>,
    pub latents: Array4<f32>,
}

/// Receives the latents after every scheduler step (for fixtures and progress).
pub type StepObserver<'a> = &'a mut dyn FnMut(usize, &Array4<f32>);

/// What one batch runs: the images `[B, 3, H, W]` in `[-1, 1]`, where to start, and the prompt.
#[derive(Clone, Copy)]
pub struct BatchRequest<'a> {
    pub plan: &'a StartPlan,
    pub images: ArrayView4<'a, f32>,
    pub conditioning: &'a Conditioning,
}

/// What the VAE encoder returned for a batch, before the posterior sample: the expensive part of
/// encoding, which several samples of one image can share (each then draws its own posterior
/// sample from its own seed stream, so sharing changes no result).
#[derive(Debug, Clone)]
pub struct Encoding {
    kind: VaeEncoderOutput,
    /// `[B, 2 * latent_channels, h, w]` (parameters) or `[B, latent_channels, h, w]` (sample).
    values: Array4<f32>,
}

impl Encoding {
    pub fn len(&self) -> usize {
        self.values.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encodings of `rows`, in that order; a row may repeat (N samples of one image).
    pub fn select(&self, rows: &[usize]) -> Result<Encoding, PipelineError> {
        if let Some(&bad) = rows.iter().find(|&&row| row >= self.len()) {
            return Err(PipelineError::Input(format!(
                "encoding row {bad} requested from a batch of {}",
                self.len()
            )));
        }
        Ok(Encoding {
            kind: self.kind,
            values: self.values.select(Axis(0), rows),
        })
    }
}

/// Runs the VAE encoder on `[B, 3, H, W]` images in `[-1, 1]`.
pub fn encode_images(
    model: &mut SdModel,
    images: ArrayView4<f32>,
    timer: &mut StageTimer,
) -> Result<Encoding, PipelineError> {
    let kind = model.vae_encoder_output;
    let element = model.input_types.vae_encoder_sample;
    let values = timer.time(Stage::VaeEncode, |timer| {
        run_image_graph(
            &mut model.vae_encoder,
            ImageInput {
                name: "sample",
                values: images,
                element,
            },
            kind.name(),
            "vae_encoder",
            Stage::VaeEncode,
            timer,
        )
    })?;
    Ok(Encoding { kind, values })
}

/// Runs the VAE encoder on one `[1, 3, H, W]` image in `[-1, 1]` in the tiles of `tiles` (a grid
/// of latent cells), fusing their outputs into one encoding of the whole image.
pub fn encode_tiled(
    model: &mut SdModel,
    image: ArrayView4<f32>,
    tiles: Tiles,
    timer: &mut StageTimer,
) -> Result<Encoding, PipelineError> {
    let kind = model.vae_encoder_output;
    let element = model.input_types.vae_encoder_sample;
    let pixels = tiles.grid.scaled(model.geometry.vae_scale_factor);
    let values = timer.time(Stage::VaeEncode, |timer| {
        let mut fusion: Option<Fusion> = None;
        for chunk in tiles.chunks() {
            let encoded = run_image_graph(
                &mut model.vae_encoder,
                ImageInput {
                    name: "sample",
                    values: pixels.crops(image, &chunk).view(),
                    element,
                },
                kind.name(),
                "vae_encoder",
                Stage::VaeEncode,
                timer,
            )?;
            check_tile_shape("vae_encoder", encoded.shape(), tiles.grid.tile(), None)?;
            fusion
                .get_or_insert_with(|| tiles.grid.fusion(encoded.shape()[1]))
                .add(encoded.view(), &chunk);
        }
        fusion
            .map(|fusion| fusion.finish())
            .ok_or_else(|| PipelineError::Input("a tile grid without tiles".into()))
    })?;
    Ok(Encoding { kind, values })
}

/// A graph's tile output must be as large as the tile asked for.
/// A tile's graph output is `[B, C, tile, tile]`, with `channels` C when given.
fn check_tile_shape(
    graph: &'static str,
    shape: &[usize],
    tile: usize,
    channels: Option<usize>,
) -> Result<(), PipelineError> {
    let channels_fit = channels.is_none_or(|c| shape.get(1) == Some(&c));
    if shape.len() == 4 && shape[2] == tile && shape[3] == tile && channels_fit {
        Ok(())
    } else {
        let wanted = channels.map_or(String::new(), |c| format!(" ({c} channels wanted)"));
        Err(output_error(
            graph,
            format!("a {tile}x{tile} tile came back with shape {shape:?}{wanted}"),
        ))
    }
}

/// One large image's latent tiles and how many go through a graph per call.
#[derive(Clone, Copy)]
pub struct Tiles<'a> {
    pub grid: &'a TileGrid,
    /// Tiles per graph call (`--batch`); results do not depend on it.
    pub batch: usize,
}

impl Tiles<'_> {
    fn chunks(&self) -> Vec<Vec<usize>> {
        let indices: Vec<usize> = (0..self.grid.len()).collect();
        indices
            .chunks(self.batch.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// How the graphs see the latents: a batch of whole images, or one image in fused tiles.
#[derive(Clone, Copy)]
pub enum Layout<'a> {
    Whole,
    Tiled(Tiles<'a>),
}

/// Boomerang on a batch of equally sized images.
pub fn boomerang_batch(
    model: &mut SdModel,
    scheduler: &mut dyn Scheduler,
    request: BatchRequest,
    noise: &mut dyn PipelineNoise,
    timer: &mut StageTimer,
    observer: StepObserver,
) -> Result<BatchOutput, PipelineError> {
    let encoding = encode_images(model, request.images, timer)?;
    let request = EncodedRequest {
        plan: request.plan,
        encoding: &encoding,
        conditioning: request.conditioning,
        layout: Layout::Whole,
    };
    boomerang_encoded(model, scheduler, request, noise, timer, observer)
}

/// [`BatchRequest`] with the images already encoded ([`encode_images`]).
#[derive(Clone, Copy)]
pub struct EncodedRequest<'a> {
    pub plan: &'a StartPlan,
    pub encoding: &'a Encoding,
    pub conditioning: &'a Conditioning,
    pub layout: Layout<'a>,
}

/// Boomerang from encoded images: posterior sample, forward noise, denoise, decode.
pub fn boomerang_encoded(
    model: &mut SdModel,
    scheduler: &mut dyn Scheduler,
    request: EncodedRequest,
    noise: &mut dyn PipelineNoise,
    timer: &mut StageTimer,
    observer: StepObserver,
) -> Result<BatchOutput, PipelineError> {
    let EncodedRequest {
        plan,
        encoding,
        conditioning,
        layout,
    } = request;
    let scaling = model.geometry.vae_scaling_factor;
    if let Layout::Tiled(tiles) = layout {
        let shape = encoding.values.shape();
        let (width, height) = tiles.grid.size();
        if shape[0] != 1 || shape[2] != height || shape[3] != width {
            return Err(PipelineError::Input(format!(
                "tiles over a {width}x{height} latent field, but the encoding has shape {shape:?}"
            )));
        }
    }

    // Elementwise noise arithmetic like add_noise, hence timed with the scheduler.
    let init_latents = timer.time(
        Stage::Scheduler,
        |_| -> Result<Array4<f32>, PipelineError> {
            let latents = match encoding.kind {
                VaeEncoderOutput::LatentParameters => sample_posterior(&encoding.values, noise)?,
                VaeEncoderOutput::LatentSample => encoding.values.clone(),
            };
            Ok(latents * scaling)
        },
    )?;

    let mut latents = match plan.start_timestep() {
        Some(start) => {
            scheduler.set_begin_index(plan.begin_index);
            let start_noise = noise.start(init_latents.shape());
            let noisy = timer.time(Stage::Scheduler, |_| {
                scheduler.add_noise(init_latents.view().into_dyn(), start_noise.view(), start)
            });
            as_4d(noisy)?
        }
        None => init_latents,
    };

    for (index, &t) in plan.timesteps.iter().enumerate() {
        // scale_model_input is elementwise: scaling before the guided doubling (or the tiling)
        // gives the same values as after.
        let scaled = timer.time(Stage::Scheduler, |_| {
            scheduler.scale_model_input(latents.view().into_dyn(), t)
        });
        let scaled = as_4d(scaled)?;
        let prediction = timer.time(Stage::Unet, |timer| match layout {
            Layout::Whole => guided_prediction(model, scaled.view(), t, conditioning, timer),
            Layout::Tiled(tiles) => {
                let mut fusion = tiles.grid.fusion(scaled.shape()[1]);
                for chunk in tiles.chunks() {
                    let crops = tiles.grid.crops(scaled.view(), &chunk);
                    let predicted = guided_prediction(model, crops.view(), t, conditioning, timer)?;
                    fusion.add(predicted.view(), &chunk);
                }
                Ok(fusion.finish())
            }
        })?;
        let stepped = timer.time(Stage::Scheduler, |_| {
            let input = StepInput {
                model_output: prediction.view().into_dyn(),
                t,
                sample: latents.view().into_dyn(),
            };
            scheduler.step(input, noise.step())
        });
        latents = as_4d(stepped)?;
        observer(index, &latents);
    }

    let images = timer.time(Stage::VaeDecode, |timer| {
        decode(model, &latents / scaling, layout, timer)
    })?;
    Ok(BatchOutput { images, latents })
}

/// The UNet's noise prediction for `[B, C, h, w]` scaled latents, with classifier-free guidance
/// when the conditioning has an unconditional half.
fn guided_prediction(
    model: &mut SdModel,
    scaled: ArrayView4<f32>,
    t: f64,
    conditioning: &Conditioning,
    timer: &mut StageTimer,
) -> Result<Array4<f32>, PipelineError> {
    let batch = scaled.shape()[0];
    let guided = conditioning.uncond.is_some();
    let model_input = if guided {
        concatenate(Axis(0), &[scaled, scaled]).map_err(|e| PipelineError::Input(e.to_string()))?
    } else {
        scaled.to_owned()
    };
    let input_shape = model_input.shape().to_vec();
    let hidden = conditioning.for_batch(batch)?;
    let xl = conditioning.xl_inputs(batch, scaled.shape(), model.geometry.vae_scale_factor)?;
    let extra = UnetExtras {
        xl: xl.as_ref(),
        guidance_embedding: conditioning.guidance_embedding_for(batch)?,
    };
    let prediction = unet(model, model_input, t, hidden.view(), extra, timer)?;
    if prediction.shape() != input_shape.as_slice() {
        return Err(output_error(
            "unet",
            format!(
                "out_sample has shape {:?}, expected {:?}",
                prediction.shape(),
                input_shape
            ),
        ));
    }
    if !guided {
        return Ok(prediction);
    }
    let uncond = prediction.slice(s![..batch, .., .., ..]);
    let text = prediction.slice(s![batch.., .., .., ..]);
    let g = conditioning.guidance;
    // diffusers: uncond + g * (text - uncond), in this order.
    Ok(&uncond + &((&text - &uncond) * g))
}

/// The VAE decoder on unscaled latents, whole or in fused pixel tiles, mapped to `[0, 1]` as
/// diffusers' `(x / 2 + 0.5).clamp(0, 1)`.
fn decode(
    model: &mut SdModel,
    latents: Array4<f32>,
    layout: Layout,
    timer: &mut StageTimer,
) -> Result<Array4<f32>, PipelineError> {
    let element = model.input_types.latent_sample;
    let decoded = match layout {
        Layout::Whole => {
            let decoded = run_image_graph(
                &mut model.vae_decoder,
                ImageInput {
                    name: "latent_sample",
                    values: latents.view(),
                    element,
                },
                "sample",
                "vae_decoder",
                Stage::VaeDecode,
                timer,
            )?;
            // Checked here, not only its rank at load: the image is indexed by this shape.
            let factor = model.geometry.vae_scale_factor;
            let shape = latents.shape();
            let expected = [shape[0], 3, shape[2] * factor, shape[3] * factor];
            if decoded.shape() != expected {
                return Err(output_error(
                    "vae_decoder",
                    format!(
                        "sample has shape {:?}, expected {expected:?}",
                        decoded.shape()
                    ),
                ));
            }
            decoded
        }
        Layout::Tiled(tiles) => {
            let pixels = tiles.grid.scaled(model.geometry.vae_scale_factor);
            let mut fusion = pixels.fusion(3);
            for chunk in tiles.chunks() {
                let decoded = run_image_graph(
                    &mut model.vae_decoder,
                    ImageInput {
                        name: "latent_sample",
                        values: tiles.grid.crops(latents.view(), &chunk).view(),
                        element,
                    },
                    "sample",
                    "vae_decoder",
                    Stage::VaeDecode,
                    timer,
                )?;
                check_tile_shape("vae_decoder", decoded.shape(), pixels.tile(), Some(3))?;
                fusion.add(decoded.view(), &chunk);
            }
            fusion.finish()
        }
    };
    Ok(decoded.mapv(|x| (x / 2.0 + 0.5).clamp(0.0, 1.0)))
}

fn as_4d(array: ArrayD<f32>) -> Result<Array4<f32>, PipelineError> {
    array.into_dimensionality().map_err(|e| {
        PipelineError::Input(format!(
            "scheduler returned a tensor of the wrong rank: {e}"
        ))
    })
}

/// diffusers' `DiagonalGaussianDistribution.sample`: mean + exp(0.5 * clamp(logvar, -30, 20)) * noise.
fn sample_posterior(
    parameters: &Array4<f32>,
    noise: &mut dyn PipelineNoise,
) -> Result<Array4<f32>, PipelineError> {
    let channels = parameters.shape()[1];
    if !channels.is_multiple_of(2) {
        return Err(output_error(
            "vae_encoder",
            format!(
                "latent_parameters has {channels} channels; expected mean and log-variance halves"
            ),
        ));
    }
    let half = channels / 2;
    let mean = parameters.slice(s![.., ..half, .., ..]);
    let logvar = parameters.slice(s![.., half.., .., ..]);
    let epsilon = as_4d(noise.vae_sample(mean.shape()))?;
    let std = logvar.mapv(|v| (0.5 * v.clamp(-30.0, 20.0)).exp());
    Ok(&mean + &(&std * &epsilon))
}

/// The UNet inputs only some families have.
struct UnetExtras<'a> {
    xl: Option<&'a XlInputs>,
    /// `[B, dim]` `timestep_cond` of a latent consistency model.
    guidance_embedding: Option<Array2<f32>>,
}

fn unet(
    model: &mut SdModel,
    sample: Array4<f32>,
    t: f64,
    hidden: ArrayView3<f32>,
    extra: UnetExtras,
    timer: &mut StageTimer,
) -> Result<Array4<f32>, PipelineError> {
    let sample = sample.as_standard_layout().into_owned();
    let hidden = hidden.as_standard_layout();
    let types = model.input_types;
    let sample_tensor = graph_input(sample.view(), types.unet_sample, "unet")?;
    let hidden_tensor = graph_input(hidden.view(), types.encoder_hidden_states, "unet")?;
    // Rank 0 for graphs exported with a scalar timestep, else one per batch row.
    let t = t as f32;
    let timestep = if model.scalar_timestep {
        ArrayD::from_elem(IxDyn(&[]), t)
    } else {
        ArrayD::from_elem(IxDyn(&[sample.shape()[0]]), t)
    };
    let timestep = graph_input(timestep.view(), types.timestep, "unet")?;
    let mut inputs = ort::inputs![
        "sample" => sample_tensor,
        "timestep" => timestep,
        "encoder_hidden_states" => hidden_tensor
    ];
    match (&extra.guidance_embedding, model.guidance_embedding) {
        (None, None) => {}
        (Some(embedding), Some(port)) => inputs.push((
            "timestep_cond".into(),
            graph_input(embedding.view(), port.element, "unet")?,
        )),
        _ => return Err(PipelineError::Input(
            "a latent consistency UNet (timestep_cond) needs its guidance embedding, and only it takes one"
                .into(),
        )),
    }
    match (extra.xl, &model.xl) {
        (None, None) => {}
        (Some((text_embeds, time_ids)), Some(xl_model)) => {
            inputs.push((
                "text_embeds".into(),
                graph_input(text_embeds.view(), xl_model.text_embeds, "unet")?,
            ));
            inputs.push((
                "time_ids".into(),
                graph_input(time_ids.view(), xl_model.time_ids, "unet")?,
            ));
        }
        _ => return Err(PipelineError::Input(
            "SDXL models need SDXL conditioning (pooled text embeddings), and only they take it"
                .into(),
        )),
    }
    let session = &mut model.unet;
    let outputs = timer
        .runtime_call(Stage::Unet, || session.run(inputs))
        .map_err(runtime_error("unet"))?;
    let value = outputs
        .get("out_sample")
        .ok_or_else(|| output_error("unet", "no `out_sample`"))?;
    graph_output(value, "unet")?
        .into_dimensionality()
        .map_err(|e| output_error("unet", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array1};

    fn runtime() {
        crate::io::runtime::init(None).expect("ONNX Runtime (run `boomerang fetch-onnxruntime`)");
    }

    fn fed<T: ort::value::PrimitiveTensorElementType + Clone + 'static>(
        values: &[f32],
        element: TensorElementType,
    ) -> Vec<T> {
        let array = Array1::from(values.to_vec());
        let value = graph_input(array.view(), element, "test").unwrap();
        assert_eq!(value.dtype().tensor_type(), Some(element));
        let fed = value.try_extract_array::<T>().unwrap();
        fed.iter().cloned().collect()
    }

    #[test]
    fn inputs_are_cast_to_the_declared_type() {
        runtime();
        let values = [0.1, -1.25, 501.0, 70000.0];
        assert_eq!(
            fed::<f32>(&values, TensorElementType::Float32),
            values.to_vec()
        );
        // f16 rounds to its nearest and saturates to infinity past 65504.
        let halves: Vec<f32> = fed::<f16>(&values, TensorElementType::Float16)
            .into_iter()
            .map(f16::to_f32)
            .collect();
        assert_eq!(halves, vec![0.099975586, -1.25, 501.0, f32::INFINITY]);
        assert_eq!(
            fed::<i64>(&[501.0, 0.4, 999.6], TensorElementType::Int64),
            vec![501, 0, 1000]
        );
        assert_eq!(
            fed::<i32>(&[501.0, 0.4, 999.6], TensorElementType::Int32),
            vec![501, 0, 1000]
        );
    }

    #[test]
    fn an_input_of_another_type_is_an_error() {
        runtime();
        let array = arr1(&[1.0f32]);
        match graph_input(array.view(), TensorElementType::Float64, "unet") {
            Err(PipelineError::Input(message)) => {
                assert_eq!(message, "unet: cannot feed an input of element type f64")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("an f64 input was fed"),
        }
    }

    #[test]
    fn f16_outputs_come_back_as_f32() {
        runtime();
        let halves = arr1(&[f16::from_f32(0.5), f16::from_f32(-3.0), f16::from_f32(0.1)]);
        let value = Tensor::from_array(halves).unwrap().into_dyn();
        let array = graph_output(&value, "vae_decoder").unwrap();
        assert_eq!(
            array.iter().copied().collect::<Vec<_>>(),
            vec![0.5, -3.0, 0.099975586]
        );
        let singles = Tensor::from_array(arr1(&[0.25f32, 2.0]))
            .unwrap()
            .into_dyn();
        let array = graph_output(&singles, "unet").unwrap();
        assert_eq!(array.iter().copied().collect::<Vec<_>>(), vec![0.25, 2.0]);
    }

    #[test]
    fn an_output_of_another_type_is_an_error_not_a_panic() {
        runtime();
        let doubles = Tensor::from_array(arr1(&[0.25f64])).unwrap().into_dyn();
        match graph_output(&doubles, "unet") {
            Err(PipelineError::Output { graph, .. }) => assert_eq!(graph, "unet"),
            other => panic!("expected an output error, got {:?}", other.map(|a| a.len())),
        }
    }

    fn xl_conditioning(guided: bool, aesthetic_scores: Option<AestheticScores>) -> Conditioning {
        let embedding = Array3::zeros((1, 77, 8));
        let pooled = Array2::zeros((1, 4));
        Conditioning {
            cond: embedding.clone(),
            uncond: guided.then_some(embedding),
            guidance: if guided { 5.0 } else { 1.0 },
            xl: Some(XlConditioning {
                pooled: pooled.clone(),
                uncond_pooled: guided.then_some(pooled),
                aesthetic_scores,
            }),
            guidance_embedding: None,
        }
    }

    fn time_id_rows(conditioning: &Conditioning, batch: usize) -> Vec<Vec<f32>> {
        let (pooled, time_ids) = conditioning
            .xl_inputs(batch, &[batch, 4, 3, 5], 8)
            .unwrap()
            .unwrap();
        assert_eq!(pooled.nrows(), time_ids.nrows());
        time_ids.rows().into_iter().map(|r| r.to_vec()).collect()
    }

    #[test]
    fn refiner_time_ids_end_with_the_aesthetic_scores_negative_half_first() {
        let scores = Some(AestheticScores::default());
        let negative = vec![24.0, 40.0, 0.0, 0.0, 2.5];
        let positive = vec![24.0, 40.0, 0.0, 0.0, 6.0];
        assert_eq!(
            time_id_rows(&xl_conditioning(true, scores), 2),
            vec![
                negative.clone(),
                negative,
                positive.clone(),
                positive.clone()
            ]
        );
        assert_eq!(
            time_id_rows(&xl_conditioning(false, scores), 1),
            vec![positive]
        );
    }

    #[test]
    fn base_time_ids_end_with_the_target_size_in_both_halves() {
        let row = vec![24.0, 40.0, 0.0, 0.0, 24.0, 40.0];
        assert_eq!(
            time_id_rows(&xl_conditioning(true, None), 1),
            vec![row.clone(), row]
        );
    }
}
