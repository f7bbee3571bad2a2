//! One module per command: each takes a validated config, drives the layers below, and is the
//! only place that prints or draws progress.

pub mod anonymize;
pub mod audit;
pub mod augment;
pub mod calibrate;
pub mod dataset_run;
pub mod dataset_sampler;
pub mod doctor;
pub mod enhance;
pub mod exit;
pub mod fetch_onnxruntime;
pub mod manifest;
pub mod manifest_parts;
pub mod model;
pub mod recompute;
pub mod render;
pub mod report_merge;
pub mod sample;
pub mod sample_denoiser;
pub mod score;
pub mod secret;
pub mod setup;
pub mod shard;
pub use exit::Exit;
