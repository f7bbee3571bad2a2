#!/usr/bin/env bash
# The command of the last device call (tools/gpu/README.md): unpacks what tools/gpu/pack.sh made,
# puts python3's NVIDIA libraries (the nvidia-* packages PyTorch uses) on the loader path, records
# the machine, and runs tools/gpu/bench_gpu.py into RESULTS_DIR (results.md, results.json, and
# bench.log, doctor.txt, nvidia-smi.txt beside them).
#
# usage: tools/gpu/run_there.sh RESULTS_DIR [bench_gpu.py options]
#   default --deadline-s 420: rows left after that are skipped, so a 600 s call ends with its table.
# env: GPU_TRANSFER (default gpu-transfer), BENCH_SITE (default /tmp/bench-site),
#      BENCH_WORK (default /tmp/bench-work)
set -euo pipefail
cd "$(dirname "$0")/../.."
results=${1:?usage: tools/gpu/run_there.sh RESULTS_DIR [bench_gpu.py options]}
shift
transfer=${GPU_TRANSFER:-gpu-transfer}
site=${BENCH_SITE:-/tmp/bench-site}
mkdir -p "$results"
tools/gpu/unpack.sh "$transfer" "$site"
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
# The GPU build serves every session (its CPU provider too): python3's own onnxruntime there is
# 1.30, older than boomerang accepts.
cache=${BOOMERANG_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/boomerang}}
export ORT_DYLIB_PATH=${cache:-$HOME/.cache/boomerang}/onnxruntime-gpu/1.31.1/libonnxruntime.so.1.31.1
# bench_gpu.py would otherwise try to make the model venv from PyPI, which this machine cannot reach.
export BOOMERANG_MODELS_VENV=1
nvidia_libs=$(python3 -c '
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
folders = {os.path.dirname(p) for root in nvidia.__path__ for p in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(folders)))')
export LD_LIBRARY_PATH=$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{ nvidia-smi || echo "no nvidia-smi"; } >"$results/nvidia-smi.txt" 2>&1
# doctor exits 3 when something is missing; what it found is the point here.
"$transfer/boomerang" doctor >"$results/doctor.txt" 2>&1 || true
python3 tools/gpu/bench_gpu.py "$results" --boomerang "$transfer/boomerang" \
    --work "${BENCH_WORK:-/tmp/bench-work}" --deadline-s 420 "$@" 2>&1 | tee "$results/bench.log"
