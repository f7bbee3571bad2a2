#!/usr/bin/env python3
"""Make an int8 copy of a model folder: its UNet quantized by ONNX Runtime's own dynamic
quantization (onnxruntime.quantization.quantize_dynamic: int8 weights, activations quantized at
run time), every other file copied unchanged, and a fresh SHA256SUMS.

It trades fidelity for speed on CPUs and is off unless you point --model (or a policy's [model]
path) at the new folder: the outputs differ from the fp32 model's, so certification rates and
distances change (measure them on your data; README "int8 UNet" has this project's numbers).

usage: python3 tools/quantize_unet.py SOURCE_MODEL_DIR OUT_DIR [--ops MatMul,Gemm[,Conv]]
  --ops   operator types quantized (default MatMul,Gemm: the attention and linear layers; Conv adds
          the convolutions, which ONNX Runtime runs as ConvInteger, often slower on CPUs)

The venv comes from tools/requirements-quantize.txt in boomerang's cache ($BOOMERANG_CACHE_DIR,
else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang). OUT_DIR must not exist; it is written
beside itself and renamed into place, so an interrupted run leaves nothing behind.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_cache  # noqa: E402

REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements-quantize.txt")
MANIFEST = "SHA256SUMS"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--ops", default="MatMul,Gemm")
    args = ap.parse_args()
    unet = os.path.join(args.source, "unet", "model.onnx")
    if not os.path.isfile(unet):
        sys.exit(f"quantize_unet: {unet} not found: SOURCE must be an optimum-layout model folder")
    if os.path.exists(args.out):
        sys.exit(f"quantize_unet: {args.out} exists; choose a new folder")
    if not venv_cache.in_venv("BOOMERANG_QUANTIZE_VENV"):
        venv_cache.reexec_in_venv("quantize_unet", __file__, REQUIREMENTS, "quantize-venv",
                                  "BOOMERANG_QUANTIZE_VENV")
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parent = os.path.dirname(os.path.abspath(args.out))
    staging = tempfile.mkdtemp(prefix=".quantize-", dir=parent)
    try:
        shutil.copytree(args.source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(MANIFEST, "model.onnx", "model.onnx_data"))
        for part in sorted(os.listdir(args.source)):
            graph = os.path.join(args.source, part, "model.onnx")
            if not os.path.isfile(graph) or part == "unet":
                continue
            for name in ("model.onnx", "model.onnx_data"):
                if os.path.exists(os.path.join(args.source, part, name)):
                    shutil.copy2(os.path.join(args.source, part, name), os.path.join(staging, part, name))
        large = os.path.getsize(unet) + sum(
            os.path.getsize(os.path.join(args.source, "unet", n))
            for n in os.listdir(os.path.join(args.source, "unet")) if n.endswith("_data")) > (2 << 30) - (64 << 20)
        quantize_dynamic(unet, os.path.join(staging, "unet", "model.onnx"),
                         op_types_to_quantize=args.ops.split(","), weight_type=QuantType.QInt8,
                         per_channel=False, use_external_data_format=large)
        with open(os.path.join(staging, "QUANTIZED.md"), "w") as f:
            f.write(f"int8 UNet made by tools/quantize_unet.py (onnxruntime {onnxruntime.__version__} "
                    f"quantize_dynamic, weights QInt8, ops {args.ops}) from a folder whose "
                    f"SHA256SUMS has sha256 {venv_cache.sha256_file(os.path.join(args.source, MANIFEST))}.\n")
        with open(os.path.join(staging, MANIFEST), "w") as f:
            f.write(venv_cache.manifest_text(staging))
        os.rename(staging, args.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"quantize_unet: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
