//! Boomerang on a Stable Diffusion ONNX export: the model folder and its manifest, the tokenizer,
//! the graph calls, the schedulers, seeded noise and the stage timer.

pub mod denoiser;
pub mod engine;
pub mod model;
pub mod model_manifest;
pub mod noise;
pub mod pipeline;
pub mod regions;
pub mod scheduler;
pub mod tiled;
pub mod timing;
pub mod tokenizer;
