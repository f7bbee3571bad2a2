//! Files and the outside world: ONNX Runtime loading, the dataset walk, the one image loader and
//! PNG writer, atomic writes, locks, safe paths below OUT, hashing, secret (run seed) files and
//! downloads from a Hugging Face hub.

pub mod atomic;
pub mod data_dir;
pub mod dataset;
pub mod gpu_libraries;
pub mod graph_cache;
pub mod hashing;
pub mod hub;
pub mod imageio;
pub mod install;
pub mod lock;
pub mod runtime;
pub mod safe_path;
pub mod secret;
pub mod shard;
