//! boomerang: Boomerang local sampling (Luzi et al., TMLR 2024) on exported Stable Diffusion ONNX
//! graphs, for anonymizing, augmenting and enhancing image datasets.

pub mod anonymize;
pub mod atomic;
pub mod audit;
pub mod augment;
pub mod batchrun;
pub mod certify;
pub mod cli;
pub mod dataset;
pub mod engine;
pub mod enhance;
pub mod hashing;
pub mod imageio;
pub mod manifest;
pub mod model;
pub mod noise;
pub mod pipeline;
pub mod policy;
pub mod recompute;
pub mod report;
pub mod runtime;
pub mod sample;
pub mod scheduler;
pub mod timing;
pub mod tokenizer;
