#!/usr/bin/env python3
"""Make a copy of a model folder whose UNet runs faster on CPUs, with ONNX Runtime's own tools:

  --fuse   the same math in fewer, fused operators (onnxruntime.transformers' UNet fusion, limited
           to operators that have CPU kernels: Attention for self-attention, MultiHeadAttention for
           cross-attention, LayerNormalization, SkipLayerNormalization). Outputs differ from the
           original graph's only by float rounding (an SD 1.5-shaped UNet call: max |diff| 1.2e-6).
  --int8   dynamic quantization (onnxruntime.quantization.quantize_dynamic: int8 weights,
           activations quantized at run time). Lossy: outputs, certification rates and distances
           change; measure them on your data (README "Faster UNet graphs on CPUs" has this
           project's numbers). With --fuse, the fused graph is quantized.

Every other file is copied unchanged; the folder gets a fresh SHA256SUMS and an OPTIMIZED.md
naming what was done and the sha256 of the source's SHA256SUMS. Nothing is used unless you point
--model (or a policy's [model] path) at OUT_DIR.

usage: python3 tools/optimize_unet.py SOURCE_MODEL_DIR OUT_DIR (--fuse | --int8 | --fuse --int8)
           [--ops MatMul,Gemm[,Conv]]
  --ops   operator types --int8 quantizes (default MatMul,Gemm,Attention: the attention and linear
          layers; Conv adds the convolutions, which ONNX Runtime runs as ConvInteger, often slower
          on CPUs)

The venv comes from tools/requirements-optimize.txt in boomerang's cache ($BOOMERANG_CACHE_DIR,
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

WHO = "optimize_unet"
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements-optimize.txt")
MANIFEST = "SHA256SUMS"
GRAPH_FILES = ("model.onnx", "model.onnx_data")
# Fusions whose operators only the CUDA/ROCm providers implement; the CPU provider would refuse
# the graph.
GPU_ONLY_FUSIONS = ("enable_group_norm", "enable_skip_group_norm", "enable_bias_splitgelu",
                    "enable_bias_add", "enable_nhwc_conv", "enable_packed_qkv", "enable_packed_kv")
# A protobuf holds at most 2 GiB; larger graphs keep their weights in model.onnx_data.
PROTOBUF_LIMIT = (2 << 30) - (64 << 20)


def graph_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, n)) for n in GRAPH_FILES
               if os.path.exists(os.path.join(folder, n)))


def fuse(source_graph, out_graph, large):
    """Returns the fused operators' counts; refuses when nothing was fused (an unknown UNet layout
    would otherwise pass through as a silently unchanged copy)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("unet")
    for name in GPU_ONLY_FUSIONS:
        setattr(options, name, False)
    # opt_level 0: only the Python fusions; ONNX Runtime's own graph passes still run when a
    # session opens, as for any graph.
    model = optimize_model(source_graph, model_type="unet", num_heads=0, hidden_size=0,
                           opt_level=0, optimization_options=options, use_gpu=False)
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        sys.exit(f"{WHO}: no attention block of {source_graph} matched ONNX Runtime's UNet fusion "
                 f"(fused: {fused or 'nothing'}); this graph is not one it knows, use --int8 alone")
    model.save_model_to_file(out_graph, use_external_data_format=large)
    return fused


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--fuse", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--ops", default="MatMul,Gemm,Attention")
    args = ap.parse_args()
    if not (args.fuse or args.int8):
        sys.exit(f"{WHO}: say what to do: --fuse, --int8, or both")
    unet = os.path.join(args.source, "unet", "model.onnx")
    if not os.path.isfile(unet):
        sys.exit(f"{WHO}: {unet} not found: SOURCE must be an optimum-layout model folder")
    if not os.path.isfile(os.path.join(args.source, MANIFEST)):
        sys.exit(f"{WHO}: {args.source} has no {MANIFEST}: write it first (boomerang manifest --write)")
    if os.path.exists(args.out):
        sys.exit(f"{WHO}: {args.out} exists; choose a new folder")
    if not venv_cache.in_venv("BOOMERANG_OPTIMIZE_VENV"):
        venv_cache.reexec_in_venv(WHO, __file__, REQUIREMENTS, "optimize-venv", "BOOMERANG_OPTIMIZE_VENV")
    import onnxruntime

    parent = os.path.dirname(os.path.abspath(args.out))
    staging = tempfile.mkdtemp(prefix=".optimize-", dir=parent)
    try:
        shutil.copytree(args.source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(MANIFEST, *GRAPH_FILES))
        for part in sorted(os.listdir(args.source)):
            if part == "unet" or not os.path.isfile(os.path.join(args.source, part, "model.onnx")):
                continue
            for name in GRAPH_FILES:
                if os.path.exists(os.path.join(args.source, part, name)):
                    shutil.copy2(os.path.join(args.source, part, name), os.path.join(staging, part, name))
        large = graph_bytes(os.path.join(args.source, "unet")) > PROTOBUF_LIMIT
        out_graph = os.path.join(staging, "unet", "model.onnx")
        done = []
        graph = unet
        if args.fuse:
            fused_graph = os.path.join(staging, ".fused", "model.onnx") if args.int8 else out_graph
            os.makedirs(os.path.dirname(fused_graph), exist_ok=True)
            fused = fuse(unet, fused_graph, large)
            done.append("fused by onnxruntime.transformers.optimizer (model_type unet, CPU operators "
                        f"only): {', '.join(f'{op} {n}' for op, n in sorted(fused.items()))}")
            graph = fused_graph
        if args.int8:
            from onnx import TensorProto
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # ONNX's shape inference types no output of the fused (com.microsoft) operators;
            # every float tensor of these graphs is float32.
            quantize_dynamic(graph, out_graph, op_types_to_quantize=args.ops.split(","),
                             weight_type=QuantType.QInt8, per_channel=False,
                             use_external_data_format=large,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
            done.append(f"quantized by onnxruntime.quantization.quantize_dynamic (weights QInt8, "
                        f"ops {args.ops})")
        shutil.rmtree(os.path.join(staging, ".fused"), ignore_errors=True)
        with open(os.path.join(staging, "OPTIMIZED.md"), "w") as f:
            f.write(f"UNet made by tools/optimize_unet.py with onnxruntime {onnxruntime.__version__} "
                    f"from a folder whose {MANIFEST} has sha256 "
                    f"{venv_cache.sha256_file(os.path.join(args.source, MANIFEST))}:\n")
            f.writelines(f"- {line}\n" for line in done)
        with open(os.path.join(staging, MANIFEST), "w") as f:
            f.write(venv_cache.manifest_text(staging))
        os.rename(staging, args.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"{WHO}: wrote {args.out}", file=sys.stderr)
    for line in done:
        print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
