#!/usr/bin/env bash
# On the GPU machine: undoes tools/gpu/pack.sh, one part at a time. Checks the part's files in
# chunks.sha256, and every file it holds against its files.sha256, before anything is installed.
#   bench    boomerang at IN_DIR/boomerang, the wheels into SITE (then: export PYTHONPATH=SITE)
#   runtime  the ONNX Runtime libraries where `boomerang fetch-onnxruntime --gpu` would (boomerang's
#            cache: $BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang),
#            then that command (needs bench first), which checks them against the pins compiled
#            into the binary and downloads nothing when they match
# Needs coreutils, tar and python3 (its lzma module unpacks; no xz binary needed).
#
# usage: tools/gpu/unpack.sh bench|runtime [IN_DIR [SITE]]   (defaults gpu-transfer/, /tmp/bench-site)
set -euo pipefail
part=${1:?usage: tools/gpu/unpack.sh bench|runtime [IN_DIR [SITE]]}
in=${2:-gpu-transfer}
site=${3:-/tmp/bench-site}
case $part in
bench) files=(bench.tar.xz) ;;
runtime) files=($(cd "$in" && awk '{print $2}' chunks.sha256 | grep '^runtime\.tar\.xz\.part-')) ;;
*) echo "unpack: no part $part: bench or runtime" >&2; exit 2 ;;
esac
[[ -f $in/chunks.sha256 ]] || { echo "unpack: no $in/chunks.sha256: carry it with the chunks" >&2; exit 1; }
(cd "$in" && grep -F -f <(printf '  %s\n' "${files[@]}") chunks.sha256 | sha256sum --quiet -c - >&2) \
    || { echo "unpack: a file of $part in $in is missing or damaged (above): carry it again" >&2; exit 1; }
staging=$(mktemp -d "${TMPDIR:-/tmp}/gpu-unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
(cd "$in" && cat "${files[@]}") \
    | python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' \
    | tar -C "$staging" -xf -
(cd "$staging" && sha256sum --quiet -c files.sha256 >&2)
if [[ $part == bench ]]; then
    install -m 0755 "$staging/boomerang" "$in/boomerang"
    python3 -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "$staging"/wheels/*.whl
    echo "unpack: boomerang at $in/boomerang, wheels in $site"
    exit 0
fi
[[ -x $in/boomerang ]] || { echo "unpack: no $in/boomerang: unpack bench first" >&2; exit 1; }
cache=${BOOMERANG_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/boomerang}}
target="${cache:-$HOME/.cache/boomerang}/onnxruntime-gpu/1.31.1"
mkdir -p "$target"
# The core library last: its presence means the providers beside it are complete.
for file in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so \
    libonnxruntime_providers_tensorrt.so libonnxruntime.so.1.31.1; do
    mv "$staging/onnxruntime-gpu/$file" "$target/$file"
done
"$in/boomerang" fetch-onnxruntime --gpu
echo "unpack: ONNX Runtime GPU build in $target"
