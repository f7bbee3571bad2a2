#!/usr/bin/env bash
# The command of the first device call (tools/gpu/README.md), which carries gpu-transfer/bench.tar.xz
# and chunks.sha256: unpacks boomerang and the wheels, then starts the benchmark's preparation
# (the SD 1.5-shaped export and its fp16 optimization: minutes) in a process session of its own,
# so it runs on while the next calls bring ONNX Runtime's chunks. run_there.sh waits for it.
#
# usage: tools/gpu/start_there.sh [bench_gpu.py options, e.g. --shape tiny]
# env: GPU_TRANSFER (default gpu-transfer), BENCH_SITE (/tmp/bench-site), BENCH_WORK (/tmp/bench-work)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/env_there.sh
tools/gpu/unpack.sh bench "$transfer" "$site"
mkdir -p "$work"
rm -f "$work/prepare.rc"
setsid bash -c 'python3 tools/gpu/bench_gpu.py unused --prepare-only --work "$1" --boomerang "$2" "${@:3}" \
    >"$1/prepare.log" 2>&1; echo $? >"$1/prepare.rc"' prepare "$work" "$transfer/boomerang" "$@" \
    </dev/null >/dev/null 2>&1 &
echo "start_there: preparing in $work (log: $work/prepare.log)"
