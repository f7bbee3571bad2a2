# Sourced by tools/gpu/start_there.sh and run_there.sh: the environment of the GPU machine's runs.
# shellcheck shell=bash
transfer=${GPU_TRANSFER:-gpu-transfer}
site=${BENCH_SITE:-/tmp/bench-site}
work=${BENCH_WORK:-/tmp/bench-work}
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
# bench_gpu.py would otherwise try to make the model venv from PyPI, which that machine cannot reach.
export BOOMERANG_MODELS_VENV=1
# The GPU build serves every session (its CPU provider too): python3's own onnxruntime there is
# 1.30, older than boomerang accepts.
cache=${BOOMERANG_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/boomerang}}
export ORT_DYLIB_PATH=${cache:-$HOME/.cache/boomerang}/onnxruntime-gpu/1.31.1/libonnxruntime.so.1.31.1
# The CUDA libraries of python3's nvidia-* packages (those PyTorch uses) on the loader path.
nvidia_libs=$(python3 -c '
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
folders = {os.path.dirname(p) for root in nvidia.__path__ for p in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(folders)))')
export LD_LIBRARY_PATH=$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
