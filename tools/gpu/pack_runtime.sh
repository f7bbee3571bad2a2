#!/usr/bin/env bash
# Packs the pinned GPU build of ONNX Runtime (what `boomerang fetch-onnxruntime --gpu` installs:
# the core library and its shared, CUDA and TensorRT providers, each sha256-pinned in
# src/io/runtime.rs) into zstd chunks small enough to travel beside the tracked tree to a GPU
# machine that reaches no registry (a device call carries at most 64 MiB in all).
#
# usage: tools/gpu/pack_runtime.sh [OUT_DIR] (default gpu-transfer/, ignored by git)
# env:   CHUNK_MIB (default: 64 MiB less the tracked tree, less 2 MiB), ZSTD_LEVEL (default 19; long-range matching is always on),
#        BOOMERANG (a built binary; default: cargo run)
# Then carry one chunk per device call and run tools/gpu/unpack_runtime.sh there (tools/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-gpu-transfer}
# By default a chunk fills what the tracked tree leaves of a device call's 64 MiB, less 2 MiB.
tree_bytes=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
chunk_mib=${CHUNK_MIB:-$(((64 * 1048576 - tree_bytes) / 1048576 - 2))}
level=${ZSTD_LEVEL:-19}
# Installs (or checks against the pins) the GPU build in boomerang's cache and prints its path;
# BOOMERANG=path/to/boomerang uses that binary instead of building one.
if [[ -n ${BOOMERANG:-} ]]; then
    fetched=$("$BOOMERANG" fetch-onnxruntime --gpu)
else
    fetched=$(cargo run --quiet -- fetch-onnxruntime --gpu)
fi
library=$(sed -n 's/.* installed at //p' <<<"$fetched")
dir=$(dirname "$library")
files=(libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so
    libonnxruntime_providers_tensorrt.so)
rm -rf "$out"
mkdir -p "$out"
(cd "$dir" && sha256sum "${files[@]}") >"$out/files.sha256"
tar -C "$dir" -cf - "${files[@]}" | zstd -q -"$level" --long=31 -T0 \
    | split -b "${chunk_mib}M" -d -a 2 - "$out/onnxruntime-gpu.tar.zst.part-"
(cd "$out" && sha256sum onnxruntime-gpu.tar.zst.part-*) >"$out/chunks.sha256"
echo "pack_runtime: $(ls "$out"/onnxruntime-gpu.tar.zst.part-* | wc -l) chunk(s) of at most ${chunk_mib} MiB in $out ($(du -sh "$out" | cut -f1) in all)"
