//! A Stable Diffusion model folder in the layout `optimum-cli export onnx` writes, opened with
//! ONNX Runtime and checked graph by graph before any image is touched.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorElementType;
use serde::Deserialize;

use crate::diffusion::model_manifest::{ModelManifest, ModelManifestError};
use crate::io::runtime::{Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: missing {what}; is {folder} an `optimum-cli export onnx` Stable Diffusion folder? (see README: exporting a model)")]
    MissingFile {
        path: PathBuf,
        what: &'static str,
        folder: PathBuf,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot read {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a diffusers config")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Signature { path: PathBuf, message: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    ModelManifest(#[from] ModelManifestError),
}

/// The graph files and config files of one model folder.
#[derive(Debug, Clone)]
pub struct ModelLayout {
    pub root: PathBuf,
    /// The text encoder graph and its tokenizer folder; `None` only beside `text_encoder_2`, in
    /// an SDXL refiner, whose prompt goes through the second encoder alone.
    pub text_encoder: Option<(PathBuf, PathBuf)>,
    pub unet: PathBuf,
    pub vae_encoder: PathBuf,
    pub vae_decoder: PathBuf,
    pub scheduler_config: PathBuf,
    pub unet_config: PathBuf,
    pub vae_config: PathBuf,
    /// SDXL's second text encoder and its tokenizer folder, present together or not at all.
    pub text_encoder_2: Option<(PathBuf, PathBuf)>,
}

impl ModelLayout {
    /// Checks that every required file exists; the first missing one is the error.
    pub fn locate(root: &Path) -> Result<ModelLayout, ModelError> {
        let need = |relative: &str, what: &'static str| -> Result<PathBuf, ModelError> {
            let path = root.join(relative);
            if path.exists() {
                Ok(path)
            } else {
                Err(ModelError::MissingFile {
                    path,
                    what,
                    folder: root.to_path_buf(),
                })
            }
        };
        need("model_index.json", "the pipeline index")?;
        // SDXL: a second text encoder makes the second tokenizer required too.
        let text_encoder_2 = if root.join("text_encoder_2").exists() {
            Some((
                need(
                    "text_encoder_2/model.onnx",
                    "the second text encoder graph (SDXL)",
                )?,
                need("tokenizer_2", "the second tokenizer folder (SDXL)")?,
            ))
        } else {
            None
        };
        // An SDXL refiner ships the second text encoder alone; every other model needs the first.
        let text_encoder = if text_encoder_2.is_none() || root.join("text_encoder").exists() {
            let graph = need("text_encoder/model.onnx", "the text encoder graph")?;
            let tokenizer = need("tokenizer", "the tokenizer folder")?;
            need("tokenizer/vocab.json", "the tokenizer vocabulary")?;
            need("tokenizer/merges.txt", "the tokenizer merges")?;
            Some((graph, tokenizer))
        } else {
            None
        };
        let layout = ModelLayout {
            root: root.to_path_buf(),
            text_encoder,
            unet: need("unet/model.onnx", "the UNet graph")?,
            vae_encoder: need("vae_encoder/model.onnx", "the VAE encoder graph")?,
            vae_decoder: need("vae_decoder/model.onnx", "the VAE decoder graph")?,
            scheduler_config: need("scheduler/scheduler_config.json", "the scheduler config")?,
            unet_config: need("unet/config.json", "the UNet config")?,
            vae_config: need("vae_decoder/config.json", "the VAE config")?,
            text_encoder_2,
        };
        if layout.text_encoder_2.is_some() {
            need("tokenizer_2/vocab.json", "the second tokenizer vocabulary")?;
            need("tokenizer_2/merges.txt", "the second tokenizer merges")?;
        }
        Ok(layout)
    }
}

#[derive(Debug, Deserialize)]
struct UnetConfigFile {
    sample_size: Option<usize>,
    in_channels: usize,
}

/// `time_cond_proj_dim`, read apart from the geometry: only an LCM-distilled UNet has it.
#[derive(Debug, Deserialize)]
struct UnetGuidanceConfigFile {
    time_cond_proj_dim: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct VaeConfigFile {
    block_out_channels: Vec<usize>,
    latent_channels: usize,
    scaling_factor: Option<f32>,
}

/// What the pipeline needs to know about a model's geometry, read from its configs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ModelGeometry {
    pub latent_channels: usize,
    /// Pixels per latent cell: 2^(number of VAE blocks - 1), 8 for every SD release.
    pub vae_scale_factor: usize,
    /// Latent side the UNet was trained at (64 for SD 1.x).
    pub latent_size: usize,
    pub vae_scaling_factor: f32,
}

impl ModelGeometry {
    /// Pixel side of the model's working resolution (512 for SD 1.x).
    pub fn image_size(&self) -> usize {
        self.latent_size * self.vae_scale_factor
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::ParseConfig {
        path: path.to_path_buf(),
        source,
    })
}

impl ModelGeometry {
    pub fn read(layout: &ModelLayout) -> Result<ModelGeometry, ModelError> {
        let unet: UnetConfigFile = read_json(&layout.unet_config)?;
        let vae: VaeConfigFile = read_json(&layout.vae_config)?;
        if vae.block_out_channels.is_empty() {
            return Err(ModelError::Config {
                path: layout.vae_config.clone(),
                message: "block_out_channels is empty".into(),
            });
        }
        if unet.in_channels != vae.latent_channels {
            return Err(ModelError::Config {
                path: layout.unet_config.clone(),
                message: format!(
                    "in_channels {} does not match the VAE's latent_channels {} (inpainting and other variants are not supported)",
                    unet.in_channels, vae.latent_channels
                ),
            });
        }
        Ok(ModelGeometry {
            latent_channels: vae.latent_channels,
            vae_scale_factor: 1 << (vae.block_out_channels.len() - 1),
            latent_size: unet.sample_size.unwrap_or(64),
            // diffusers' AutoencoderKL default, used when an older config omits it.
            vae_scaling_factor: vae.scaling_factor.unwrap_or(0.18215),
        })
    }
}

/// How the VAE encoder hands back the latent distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaeEncoderOutput {
    /// Mean and log-variance: boomerang draws the sample with its own seeded noise.
    LatentParameters,
    /// Older exports sample inside the graph, so that randomness is not under our seed.
    LatentSample,
}

impl VaeEncoderOutput {
    /// The graph output that carries it.
    pub fn name(self) -> &'static str {
        match self {
            VaeEncoderOutput::LatentParameters => "latent_parameters",
            VaeEncoderOutput::LatentSample => "latent_sample",
        }
    }
}

/// The four opened graphs plus what was learned about them while checking.
pub struct SdModel {
    pub layout: ModelLayout,
    pub geometry: ModelGeometry,
    pub manifest: ModelManifest,
    /// `None` only for an SDXL refiner (see [`ModelLayout::text_encoder`]).
    pub text_encoder: Option<Session>,
    pub unet: Session,
    pub vae_encoder: Session,
    pub vae_decoder: Session,
    pub input_types: InputTypes,
    pub vae_encoder_output: VaeEncoderOutput,
    /// Whether the UNet's `timestep` input is a scalar (rank 0) rather than a vector.
    pub scalar_timestep: bool,
    /// SDXL's second text encoder and what the pipeline needs to know about it.
    pub xl: Option<XlModel>,
    /// An LCM-distilled UNet's guidance-scale embedding input.
    pub guidance_embedding: Option<GuidanceEmbedding>,
}

/// The UNet input `timestep_cond` of a latent consistency model distilled with guidance
/// (`time_cond_proj_dim` in its config): guidance is an embedding of `guidance - 1` fed at every
/// call, never classifier-free guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuidanceEmbedding {
    pub dim: usize,
    pub element: TensorElementType,
}

/// The SDXL parts of a model: the second text encoder, the hidden-state outputs the prompt
/// embedding is taken from, the UNet's extra inputs and the pipeline flags of `model_index.json`.
pub struct XlModel {
    pub text_encoder_2: Session,
    /// `hidden_states.N` outputs holding each encoder's penultimate layer (diffusers'
    /// `hidden_states[-2]`, its default without clip skip); the first is `None` exactly when
    /// the model has no first text encoder (a refiner).
    pub penultimate: Option<String>,
    pub penultimate_2: String,
    /// Element type of `input_ids` of the second text encoder.
    pub input_ids_2: TensorElementType,
    pub text_embeds: TensorElementType,
    pub time_ids: TensorElementType,
    /// `force_zeros_for_empty_prompt`: an empty negative prompt is all-zero embeddings.
    pub force_zeros_for_empty_prompt: bool,
    /// `requires_aesthetics_score` (a refiner): `time_ids` end with an aesthetic score instead
    /// of the target size.
    pub requires_aesthetics_score: bool,
}

#[derive(Debug, Deserialize)]
struct PipelineIndexFile {
    #[serde(default)]
    force_zeros_for_empty_prompt: Option<bool>,
    #[serde(default)]
    requires_aesthetics_score: Option<bool>,
}

/// The UNet config fields diffusers checks the `time_ids` count against.
#[derive(Debug, Deserialize)]
struct UnetAddEmbeddingConfigFile {
    addition_time_embed_dim: Option<usize>,
    projection_class_embeddings_input_dim: Option<usize>,
}

/// The element types of the inputs the pipeline feeds, as the graphs declare them. The pipeline
/// computes in f32 and converts at the graph boundary (fp16 exports, integer timesteps); outputs
/// are converted back from whichever accepted float type they come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputTypes {
    /// The first text encoder's (`text_encoder_2`'s for a refiner, its only one).
    pub input_ids: TensorElementType,
    pub unet_sample: TensorElementType,
    pub timestep: TensorElementType,
    pub encoder_hidden_states: TensorElementType,
    pub vae_encoder_sample: TensorElementType,
    pub latent_sample: TensorElementType,
}

/// One expected input or output: a name, the ranks and the element types accepted.
#[derive(Clone, Copy)]
struct Port {
    name: &'static str,
    ranks: &'static [usize],
    types: &'static [TensorElementType],
}

const fn port(
    name: &'static str,
    ranks: &'static [usize],
    types: &'static [TensorElementType],
) -> Port {
    Port { name, ranks, types }
}

/// Float tensors: what fp32 and fp16 exports declare.
const FLOAT: &[TensorElementType] = &[TensorElementType::Float32, TensorElementType::Float16];
/// The UNet timestep: float, or integer in exports that trace it as a long tensor.
const TIMESTEP: &[TensorElementType] = &[
    TensorElementType::Float32,
    TensorElementType::Float16,
    TensorElementType::Int64,
    TensorElementType::Int32,
];
const TOKEN_IDS: &[TensorElementType] = &[TensorElementType::Int32, TensorElementType::Int64];

/// The ports a graph must have, for [`check_ports`].
struct Ports {
    inputs: &'static [Port],
    outputs: &'static [Port],
}

const TEXT_ENCODER_PORTS: Ports = Ports {
    inputs: &[port("input_ids", &[2], TOKEN_IDS)],
    outputs: &[port("last_hidden_state", &[3], FLOAT)],
};

const UNET_PORTS: Ports = Ports {
    inputs: &[
        port("sample", &[4], FLOAT),
        port("timestep", &[0, 1], TIMESTEP),
        port("encoder_hidden_states", &[3], FLOAT),
    ],
    outputs: &[port("out_sample", &[4], FLOAT)],
};

const UNET_XL_PORTS: Ports = Ports {
    inputs: &[
        port("sample", &[4], FLOAT),
        port("timestep", &[0, 1], TIMESTEP),
        port("encoder_hidden_states", &[3], FLOAT),
        port("text_embeds", &[2], FLOAT),
        port("time_ids", &[2], FLOAT),
    ],
    outputs: &[port("out_sample", &[4], FLOAT)],
};

const TEXT_ENCODER_2_PORTS: Ports = Ports {
    inputs: &[port("input_ids", &[2], TOKEN_IDS)],
    outputs: &[port("text_embeds", &[2], FLOAT)],
};

const VAE_DECODER_PORTS: Ports = Ports {
    inputs: &[port("latent_sample", &[4], FLOAT)],
    outputs: &[port("sample", &[4], FLOAT)],
};

impl SdModel {
    pub fn load(
        root: &Path,
        runtime: &Runtime,
        options: &SessionOptions,
    ) -> Result<SdModel, ModelError> {
        let layout = ModelLayout::locate(root)?;
        let geometry = ModelGeometry::read(&layout)?;
        let manifest = ModelManifest::compute_with(root, options.verify)?;
        manifest.check_against_file(root)?;

        let text_encoder = layout
            .text_encoder
            .as_ref()
            .map(|(graph, _)| open_checked(runtime, graph, options, &TEXT_ENCODER_PORTS))
            .transpose()?;
        let xl_files = layout.text_encoder_2.clone();
        let unet_ports = if xl_files.is_some() {
            &UNET_XL_PORTS
        } else {
            &UNET_PORTS
        };
        let unet = runtime.session(&layout.unet, options)?;
        let guidance_embedding = guidance_embedding(&layout, &unet)?;
        let mut unet_inputs = unet_ports.inputs.to_vec();
        if guidance_embedding.is_some() {
            unet_inputs.push(port("timestep_cond", &[2], FLOAT));
        }
        check_ports(&layout.unet, &unet, &unet_inputs, unet_ports.outputs)?;
        let scalar_timestep = input_rank(&unet, "timestep") == Some(0);

        let vae_encoder = runtime.session(&layout.vae_encoder, options)?;
        let vae_encoder_output = if has_output(&vae_encoder, "latent_parameters") {
            VaeEncoderOutput::LatentParameters
        } else {
            VaeEncoderOutput::LatentSample
        };
        let checked = check_ports(
            &layout.vae_encoder,
            &vae_encoder,
            &[port("sample", &[4], FLOAT)],
            &[port(vae_encoder_output.name(), &[4], FLOAT)],
        );
        match vae_encoder_output {
            VaeEncoderOutput::LatentParameters => checked?,
            VaeEncoderOutput::LatentSample => checked.map_err(|_| ModelError::Signature {
                path: layout.vae_encoder.clone(),
                message: format!(
                    "expected output `latent_parameters` (or `latent_sample` from older exports), found {}",
                    names(vae_encoder.outputs().iter().map(|o| o.name()))
                ),
            })?,
        }

        let vae_decoder = open_checked(runtime, &layout.vae_decoder, options, &VAE_DECODER_PORTS)?;
        let xl = match xl_files {
            Some((encoder_2, _)) => {
                let index: PipelineIndexFile = read_json(&layout.root.join("model_index.json"))?;
                let requires_aesthetics_score = index.requires_aesthetics_score == Some(true);
                check_time_ids(&layout, &unet, requires_aesthetics_score)?;
                let text_encoder_2 =
                    open_checked(runtime, &encoder_2, options, &TEXT_ENCODER_2_PORTS)?;
                let penultimate = match (&layout.text_encoder, &text_encoder) {
                    (Some((graph, _)), Some(session)) => Some(penultimate_output(graph, session)?),
                    _ => None,
                };
                Some(XlModel {
                    penultimate,
                    penultimate_2: penultimate_output(&encoder_2, &text_encoder_2)?,
                    input_ids_2: input_type(&text_encoder_2, "input_ids"),
                    text_embeds: input_type(&unet, "text_embeds"),
                    time_ids: input_type(&unet, "time_ids"),
                    force_zeros_for_empty_prompt: index
                        .force_zeros_for_empty_prompt
                        .unwrap_or(true),
                    requires_aesthetics_score,
                    text_encoder_2,
                })
            }
            None => None,
        };
        // Every name looked up here passed check_ports with an accepted type; a model without the
        // first text encoder has the second (ModelLayout::locate).
        let input_ids = match (&text_encoder, &xl) {
            (Some(session), _) => input_type(session, "input_ids"),
            (None, Some(xl)) => xl.input_ids_2,
            (None, None) => TensorElementType::Undefined,
        };
        let input_types = InputTypes {
            input_ids,
            unet_sample: input_type(&unet, "sample"),
            timestep: input_type(&unet, "timestep"),
            encoder_hidden_states: input_type(&unet, "encoder_hidden_states"),
            vae_encoder_sample: input_type(&vae_encoder, "sample"),
            latent_sample: input_type(&vae_decoder, "latent_sample"),
        };

        Ok(SdModel {
            layout,
            geometry,
            manifest,
            text_encoder,
            unet,
            vae_encoder,
            vae_decoder,
            input_types,
            vae_encoder_output,
            scalar_timestep,
            xl,
            guidance_embedding,
        })
    }

    /// sha256 of the model's manifest: one value that pins every file of the folder.
    pub fn model_hash(&self) -> String {
        self.manifest.model_hash()
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The `hidden_states.N` output of a text encoder exported with all hidden states that holds
/// the penultimate layer: N = (largest N) - 1, since `hidden_states.0` is the embedding layer.
fn penultimate_output(path: &Path, session: &Session) -> Result<String, ModelError> {
    let last = session
        .outputs()
        .iter()
        .filter(|o| o.dtype().tensor_shape().map(|s| s.len()) == Some(3))
        .filter_map(|o| {
            o.name()
                .strip_prefix("hidden_states.")?
                .parse::<usize>()
                .ok()
        })
        .max();
    match last {
        Some(last) if last >= 1 => Ok(format!("hidden_states.{}", last - 1)),
        _ => Err(ModelError::Signature {
            path: path.to_path_buf(),
            message: format!(
                "an SDXL text encoder needs its hidden states as outputs `hidden_states.0`, `hidden_states.1`, ... (optimum exports them); found {}",
                names(session.outputs().iter().map(|o| o.name()))
            ),
        }),
    }
}

/// diffusers' `_get_add_time_ids` check: `time_ids` has 5 entries with an aesthetic score
/// (`requires_aesthetics_score`, a refiner), else 6, and the UNet's `time_ids` input and add
/// embedding (`projection_class_embeddings_input_dim` = `addition_time_embed_dim` × entries + the
/// pooled width) must be made for that many; a mismatch would feed the wrong conditioning or fail
/// mid-run.
fn check_time_ids(
    layout: &ModelLayout,
    unet: &Session,
    requires_aesthetics_score: bool,
) -> Result<(), ModelError> {
    let entries = if requires_aesthetics_score { 5 } else { 6 };
    let width = |name: &str| {
        unet.inputs()
            .iter()
            .find(|i| i.name() == name)
            .and_then(|i| i.dtype().tensor_shape().and_then(|s| s.last().copied()))
            // A dynamic (negative) width is checked when the graph runs.
            .filter(|&d| d > 0)
            .map(|d| d as usize)
    };
    let what = if requires_aesthetics_score {
        "true (an SDXL refiner: original size, crop, aesthetic score)"
    } else {
        "false or absent (SDXL base: original size, crop, target size)"
    };
    if let Some(found) = width("time_ids").filter(|&w| w != entries) {
        return Err(ModelError::Config {
            path: layout.root.join("model_index.json"),
            message: format!(
                "requires_aesthetics_score is {what}, so time_ids has {entries} entries, but the UNet's `time_ids` input ({}) takes {found}: {}",
                layout.unet.display(),
                match found {
                    5 => "set requires_aesthetics_score to true",
                    6 => "set requires_aesthetics_score to false",
                    _ => "re-export the UNet of an SDXL base or refiner",
                }
            ),
        });
    }
    let config: UnetAddEmbeddingConfigFile = read_json(&layout.unet_config)?;
    if let (Some(per_entry), Some(expected), Some(pooled)) = (
        config.addition_time_embed_dim,
        config.projection_class_embeddings_input_dim,
        width("text_embeds"),
    ) {
        let passed = per_entry * entries + pooled;
        if passed != expected {
            return Err(ModelError::Config {
                path: layout.unet_config.clone(),
                message: format!(
                    "projection_class_embeddings_input_dim is {expected}, but {entries} time ids of addition_time_embed_dim {per_entry} and the {pooled}-wide pooled text embedding make {passed} (requires_aesthetics_score in model_index.json is {what}): fix whichever config is wrong"
                ),
            });
        }
    }
    Ok(())
}

/// The UNet's guidance embedding when its config and graph both have one; either without the
/// other is refused, since the guidance would be silently dropped or fed where none is read.
fn guidance_embedding(
    layout: &ModelLayout,
    unet: &Session,
) -> Result<Option<GuidanceEmbedding>, ModelError> {
    let config: UnetGuidanceConfigFile = read_json(&layout.unet_config)?;
    let input = unet.inputs().iter().find(|i| i.name() == "timestep_cond");
    let config_error = |message: String| ModelError::Config {
        path: layout.unet_config.clone(),
        message,
    };
    match (config.time_cond_proj_dim, input) {
        (None, None) => Ok(None),
        (Some(dim), None) => Err(config_error(format!(
            "time_cond_proj_dim is {dim} (a latent consistency model), but {} has no `timestep_cond` input: re-export the UNet with it",
            layout.unet.display()
        ))),
        (None, Some(_)) => Err(config_error(
            "the UNet graph has a `timestep_cond` input (a latent consistency model) but time_cond_proj_dim is missing here: add the width of its guidance embedding".into(),
        )),
        (Some(dim), Some(_)) if dim < 4 => Err(config_error(format!(
            "time_cond_proj_dim is {dim}; a guidance embedding needs at least 4 (sine and cosine halves of 2 or more frequencies)"
        ))),
        (Some(dim), Some(input)) => {
            let declared = input
                .dtype()
                .tensor_shape()
                .and_then(|shape| shape.last().copied());
            // A dynamic (negative) width is checked when the graph runs.
            if let Some(width) = declared.filter(|&d| d > 0 && d as usize != dim) {
                return Err(config_error(format!(
                    "time_cond_proj_dim is {dim}, but the UNet's `timestep_cond` input is {width} wide"
                )));
            }
            Ok(Some(GuidanceEmbedding {
                dim,
                element: input_type(unet, "timestep_cond"),
            }))
        }
    }
}

fn input_rank(session: &Session, name: &str) -> Option<usize> {
    session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
        .and_then(|i| i.dtype().tensor_shape().map(|s| s.len()))
}

fn input_type(session: &Session, name: &str) -> TensorElementType {
    session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
        .and_then(|i| i.dtype().tensor_type())
        .unwrap_or(TensorElementType::Undefined)
}

fn has_output(session: &Session, name: &str) -> bool {
    session.outputs().iter().any(|o| o.name() == name)
}

/// A session on `path`, refused unless it has the ports [`check_ports`] looks for.
fn open_checked(
    runtime: &Runtime,
    path: &Path,
    options: &SessionOptions,
    ports: &Ports,
) -> Result<Session, ModelError> {
    let session = runtime.session(path, options)?;
    check_ports(path, &session, ports.inputs, ports.outputs)?;
    Ok(session)
}

/// Every expected port must exist with an accepted rank and element type, and the graph may not
/// require inputs we would not feed (SDXL's `text_embeds`, an inpainting mask...).
fn check_ports(
    path: &Path,
    session: &Session,
    inputs: &[Port],
    outputs: &[Port],
) -> Result<(), ModelError> {
    let fail = |message: String| ModelError::Signature {
        path: path.to_path_buf(),
        message,
    };
    for (kind, expected, found) in [
        ("input", inputs, session.inputs()),
        ("output", outputs, session.outputs()),
    ] {
        for want in expected {
            let Some(outlet) = found.iter().find(|o| o.name() == want.name) else {
                return Err(fail(format!(
                    "expected {kind} `{}`, found {}",
                    want.name,
                    names(found.iter().map(|o| o.name()))
                )));
            };
            let rank = outlet.dtype().tensor_shape().map(|s| s.len());
            if !rank.is_some_and(|r| want.ranks.contains(&r)) {
                return Err(fail(format!(
                    "{kind} `{}` should have rank {}, found {}",
                    want.name,
                    want.ranks
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    rank.map_or("a non-tensor".into(), |r| r.to_string())
                )));
            }
            // A tensor, since its rank passed.
            let found_type = outlet
                .dtype()
                .tensor_type()
                .unwrap_or(TensorElementType::Undefined);
            if !want.types.contains(&found_type) {
                return Err(fail(format!(
                    "{kind} `{}` has element type {found_type}; accepted: {}",
                    want.name,
                    want.types
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    if let Some(extra) = session
        .inputs()
        .iter()
        .find(|i| !inputs.iter().any(|want| want.name == i.name()))
    {
        if matches!(extra.name(), "text_embeds" | "time_ids") {
            return Err(fail(format!(
                "unexpected input `{}`: an SDXL UNet, but the model folder has no text_encoder_2/ (and tokenizer_2/) beside it",
                extra.name()
            )));
        }
        return Err(fail(format!(
            "unexpected input `{}` (expected only {}): not a Stable Diffusion 1.x/2.x graph",
            extra.name(),
            names(inputs.iter().map(|p| p.name))
        )));
    }
    Ok(())
}
