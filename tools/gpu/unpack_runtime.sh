#!/usr/bin/env bash
# Reassembles what tools/gpu/pack_runtime.sh made, checks every chunk and every library against
# their sha256, and installs the libraries where `boomerang fetch-onnxruntime --gpu` would
# (boomerang's cache: $BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang).
# With BOOMERANG=path/to/boomerang it finally runs `fetch-onnxruntime --gpu`, which checks the
# installed files against the pins compiled into that binary (and downloads nothing when they match).
#
# usage: tools/gpu/unpack_runtime.sh [IN_DIR] (default gpu-transfer/)
set -euo pipefail
in=${1:-gpu-transfer}
cache=${BOOMERANG_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/boomerang}}
cache=${cache:-$HOME/.cache/boomerang}
target="$cache/onnxruntime-gpu/1.31.1"
(cd "$in" && sha256sum --quiet -c chunks.sha256)
staging=$(mktemp -d "${TMPDIR:-/tmp}/onnxruntime-gpu.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cat "$in"/onnxruntime-gpu.tar.zst.part-* | zstd -q -d --long=31 | tar -C "$staging" -xf -
cp "$in/files.sha256" "$staging/"
(cd "$staging" && sha256sum --quiet -c files.sha256)
mkdir -p "$target"
# The core library last: its presence means the providers beside it are complete.
for file in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so \
    libonnxruntime_providers_tensorrt.so libonnxruntime.so.1.31.1; do
    mv "$staging/$file" "$target/$file"
done
if [[ -n ${BOOMERANG:-} ]]; then
    "$BOOMERANG" fetch-onnxruntime --gpu
fi
echo "unpack_runtime: installed into $target"
