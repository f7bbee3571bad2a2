#!/usr/bin/env bash
# The command of the last device call (tools/gpu/README.md): unpacks ONNX Runtime's GPU build,
# waits for the preparation start_there.sh began (at most PREPARE_WAIT_S, default 300 s), records
# the machine, and runs tools/gpu/bench_gpu.py into RESULTS_DIR (results.md, results.json, and
# bench.log, prepare.log, doctor.txt, nvidia-smi.txt beside them).
#
# usage: tools/gpu/run_there.sh RESULTS_DIR [bench_gpu.py options, the same as start_there.sh's]
#   --deadline-s defaults to what is left of 480 s after the wait: rows past it are skipped, so a
#   600 s call ends with its table.
set -euo pipefail
cd "$(dirname "$0")/../.."
results=${1:?usage: tools/gpu/run_there.sh RESULTS_DIR [bench_gpu.py options]}
shift
start=$SECONDS
source tools/gpu/env_there.sh
mkdir -p "$results"
tools/gpu/unpack.sh runtime "$transfer" "$site"
{ nvidia-smi || echo "no nvidia-smi"; } >"$results/nvidia-smi.txt" 2>&1
# doctor exits 3 when something is missing; what it found is the point here.
"$transfer/boomerang" doctor >"$results/doctor.txt" 2>&1 || true
while [[ ! -f $work/prepare.rc ]] && ((SECONDS - start < ${PREPARE_WAIT_S:-300})); do
    sleep 2
done
cp "$work/prepare.log" "$results/" 2>/dev/null || true
if [[ ! -f $work/prepare.rc ]]; then
    echo "run_there: the preparation did not finish in time; its log is in $results/prepare.log" >&2
    exit 1
fi
if [[ $(cat "$work/prepare.rc") != 0 ]]; then
    echo "run_there: the preparation failed (exit $(cat "$work/prepare.rc")): $results/prepare.log" >&2
    tail -5 "$work/prepare.log" >&2
    exit 1
fi
deadline=$((480 - (SECONDS - start)))
python3 tools/gpu/bench_gpu.py "$results" --boomerang "$transfer/boomerang" --work "$work" \
    --deadline-s $((deadline > 60 ? deadline : 60)) "$@" 2>&1 | tee "$results/bench.log"
