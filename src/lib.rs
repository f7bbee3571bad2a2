//! boomerang: Boomerang local sampling (Luzi et al., TMLR 2024) on exported Stable Diffusion ONNX
//! graphs, for anonymizing, augmenting and enhancing image datasets.
//!
//! Layers, each importing only from the ones below it (`tests/layers.rs` enforces this):
//! `cli` (clap, dispatch, exit codes) → `commands` (one module per command; the only layer that
//! prints) → `audit` → `records` → `policy` → `certify` → `diffusion` → `io`.

pub mod audit;
pub mod certify;
pub mod cli;
pub mod commands;
pub mod diffusion;
pub mod io;
pub mod policy;
pub mod records;
