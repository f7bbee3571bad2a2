//! Pixel-space EDM / consistency denoisers described by a `model.toml` (models/README.md): the
//! spec, the opened graph, the Boomerang sampler (on one image of the model's size, or tiled over a
//! larger field) and the mapping between grayscale pixels and the model's values.

pub mod graph;
pub mod pixels;
pub mod sampler;
pub mod spec;
pub mod tiled;

pub use graph::{DenoiserError, DenoiserModel};
pub use sampler::SamplePlan;
pub use spec::{is_denoiser_folder, DenoiserSpec, SPEC_FILE};
