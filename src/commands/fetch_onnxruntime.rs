//! `boomerang fetch-onnxruntime`: installs the pinned ONNX Runtime library (the CPU build, or
//! the GPU build with its providers) into the cache.

use crate::io::runtime;

pub fn run(gpu: bool) -> anyhow::Result<()> {
    let path = runtime::fetch_into_cache(gpu)?;
    println!(
        "ONNX Runtime {}{} installed at {}",
        runtime::ORT_VERSION,
        if gpu {
            " (GPU build: CUDA and TensorRT providers beside it)"
        } else {
            ""
        },
        path.display()
    );
    Ok(())
}
