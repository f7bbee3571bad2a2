#!/usr/bin/env bash
# Packs what the GPU machine needs and cannot fetch (it reaches no registry) into xz files that
# each fit beside the tracked tree in one device call (64 MiB in all, tracked tree included):
#   bench.tar.xz            boomerang (a release build of this tree) and the wheels of
#                           tools/gpu/requirements-device.txt (hash-pinned: diffusers): what the
#                           benchmark's preparation needs, carried by the first call
#   runtime.tar.xz.part-NN  the pinned GPU build of ONNX Runtime, what `boomerang fetch-onnxruntime
#                           --gpu` installs (each file sha256-pinned in src/io/runtime.rs), in chunks
#   chunks.sha256           all of the above; each tar holds a files.sha256 of its files
# tools/gpu/unpack.sh undoes it there; tools/gpu/README.md gives the calls.
#
# usage: tools/gpu/pack.sh [OUT_DIR]   (default gpu-transfer/, ignored by git)
# env:   CHUNK_MIB (default: 64 MiB less the tracked tree, less 2 MiB), XZ_LEVEL (default 9),
#        BOOMERANG (a built binary; default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-gpu-transfer}
tree_bytes=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
chunk_mib=${CHUNK_MIB:-$(((64 * 1048576 - tree_bytes) / 1048576 - 2))}
level=${XZ_LEVEL:-9}
if [[ -z ${BOOMERANG:-} ]]; then
    cargo build --release --quiet
    BOOMERANG=target/release/boomerang
fi
# Installs (or checks against the pins) the GPU build in boomerang's cache and prints its path.
fetched=$("$BOOMERANG" fetch-onnxruntime --gpu)
library=$(sed -n 's/.* installed at //p' <<<"$fetched")
[[ -n $library ]] || { echo "pack: no library path in: $fetched" >&2; exit 1; }
staging=$(mktemp -d "${TMPDIR:-/tmp}/gpu-pack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/bench/wheels" "$staging/runtime/onnxruntime-gpu"
for file in libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so \
    libonnxruntime_providers_cuda.so libonnxruntime_providers_tensorrt.so; do
    cp "$(dirname "$library")/$file" "$staging/runtime/onnxruntime-gpu/"
done
cp "$BOOMERANG" "$staging/bench/boomerang"
# The GPU machine's python is 3.12; these wheels are pure python.
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
    -d "$staging/bench/wheels" -r tools/gpu/requirements-device.txt
rm -rf "$out"
mkdir -p "$out"
for part in bench runtime; do
    (cd "$staging/$part" && find . -type f -printf '%P\n' | sort | xargs sha256sum) >"$staging/files.sha256"
    mv "$staging/files.sha256" "$staging/$part/"
done
tar -C "$staging/bench" -cf - . | xz -q -"$level" -T0 >"$out/bench.tar.xz"
tar -C "$staging/runtime" -cf - . | xz -q -"$level" -T0 \
    | split -b "${chunk_mib}M" -d -a 2 - "$out/runtime.tar.xz.part-"
(cd "$out" && sha256sum bench.tar.xz runtime.tar.xz.part-*) >"$out/chunks.sha256"
chunks=$(ls "$out"/runtime.tar.xz.part-* | wc -l)
echo "pack: bench.tar.xz ($(du -h "$out/bench.tar.xz" | cut -f1)) and $chunks runtime chunk(s) of at most ${chunk_mib} MiB in $out"
