//! boomerang: Boomerang local sampling (Luzi et al., TMLR 2024) on exported Stable Diffusion ONNX
//! graphs, for anonymizing, augmenting and enhancing image datasets.

pub mod noise;
pub mod scheduler;
pub mod hashing;
pub mod runtime;
pub mod atomic;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod timing;
