#!/usr/bin/env bash
# On the GPU machine: undoes tools/gpu/pack.sh. Checks every chunk against chunks.sha256 and
# every file against files.sha256 before anything is installed, then puts
#   the ONNX Runtime libraries where `boomerang fetch-onnxruntime --gpu` would (boomerang's cache:
#     $BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang), and runs that
#     command, which checks them against the pins compiled into the binary (downloading nothing
#     when they match),
#   the binary at IN_DIR/boomerang,
#   the wheels into SITE (then: export PYTHONPATH=SITE).
# Needs coreutils, tar and python3 (its lzma module unpacks; no xz binary needed).
#
# usage: tools/gpu/unpack.sh [IN_DIR [SITE]]   (defaults gpu-transfer/ and /tmp/bench-site)
set -euo pipefail
in=${1:-gpu-transfer}
site=${2:-/tmp/bench-site}
cache=${BOOMERANG_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/boomerang}}
cache=${cache:-$HOME/.cache/boomerang}
target="$cache/onnxruntime-gpu/1.31.1"
[[ -f $in/chunks.sha256 ]] || { echo "unpack: no $in/chunks.sha256: carry it with the chunks" >&2; exit 1; }
(cd "$in" && sha256sum --quiet -c chunks.sha256) \
    || { echo "unpack: a chunk in $in is missing or damaged (above); carry it again" >&2; exit 1; }
staging=$(mktemp -d "${TMPDIR:-/tmp}/gpu-unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cat "$in"/transfer.tar.xz.part-* \
    | python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' \
    | tar -C "$staging" -xf -
(cd "$staging" && sha256sum --quiet -c files.sha256)
mkdir -p "$target"
# The core library last: its presence means the providers beside it are complete.
for file in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so \
    libonnxruntime_providers_tensorrt.so libonnxruntime.so.1.31.1; do
    mv "$staging/onnxruntime-gpu/$file" "$target/$file"
done
install -m 0755 "$staging/boomerang" "$in/boomerang"
"$in/boomerang" fetch-onnxruntime --gpu
python3 -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" "$staging"/wheels/*.whl
echo "unpack: ONNX Runtime GPU build in $target, boomerang at $in/boomerang, wheels in $site"
