//! `boomerang fetch-onnxruntime`: installs the pinned ONNX Runtime library into the cache.

use crate::io::runtime;

pub fn run() -> anyhow::Result<()> {
    let path = runtime::fetch_into_cache()?;
    println!(
        "ONNX Runtime {} installed at {}",
        runtime::ORT_VERSION,
        path.display()
    );
    Ok(())
}
