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
  --int8-conv
           static int8 for the convolutions (onnxruntime.quantization.quantize_static, QDQ format,
           per-channel int8 weights, uint8 activations whose ranges come from calibration), which
           ONNX Runtime runs as QLinearConv: on CPUs with AVX-512 VNNI or AVX-VNNI about 2.8x
           faster than float convolutions. Calibration runs the UNet on the latents of the images
           in --calibration-images (VAE-encoded at the model's working size), noised to
           --calibration-timesteps by the model's scheduler, with the paper's prompt "person" and
           the empty prompt (guidance). Lossy like --int8; applied after --fuse, before --int8.
  --calibration-images DIR
           the images calibration encodes (default: the repository's examples/); give a few of
           your own dataset's images for ranges that fit it
  --calibration-timesteps T,T,..
           the timesteps calibration noises to (default 900,700,500,300,100)

Every other file is copied unchanged; the folder gets a fresh SHA256SUMS and an OPTIMIZED.md
naming what was done and the sha256 of the source's SHA256SUMS. Nothing is used unless you point
--model (or a policy's [model] path) at OUT_DIR.

usage: python3 tools/optimize_unet.py SOURCE_MODEL_DIR OUT_DIR [--fuse] [--int8-conv] [--int8]
           [--ops MatMul,Gemm[,Conv]] [--calibration-images DIR] [--calibration-timesteps T,..]
  --ops   operator types --int8 quantizes (default MatMul,Gemm,Attention: the attention and linear
          layers; Conv adds the convolutions, which ONNX Runtime runs as ConvInteger, often slower
          on CPUs)

The venv comes from tools/requirements-optimize.txt in boomerang's cache ($BOOMERANG_CACHE_DIR,
else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang). OUT_DIR must not exist; it is written
beside itself and renamed into place, so an interrupted run leaves nothing behind.
"""
import argparse
import json
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
# Calibration's prompts: the paper's "person", and the empty prompt guidance runs beside it.
PROMPTS = ("person", "")
DEFAULT_CALIBRATION_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                          "examples")
DEFAULT_TIMESTEPS = "900,700,500,300,100"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states")


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


def read_json(*parts):
    path = os.path.join(*parts)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{WHO}: --int8-conv reads {path} for calibration: {e}")


def images_in(folder):
    if not os.path.isdir(folder):
        sys.exit(f"{WHO}: --calibration-images {folder} is not a folder")
    images = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                    if name.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        sys.exit(f"{WHO}: --calibration-images {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return images


def alphas_cumprod(source):
    """The scheduler's cumulative alphas (diffusers' definitions of its beta schedules)."""
    import numpy as np

    config = read_json(source, "scheduler", "scheduler_config.json")
    count = config.get("num_train_timesteps", 1000)
    start, end = config.get("beta_start", 0.0001), config.get("beta_end", 0.02)
    schedule = config.get("beta_schedule", "linear")
    if config.get("trained_betas"):
        betas = np.array(config["trained_betas"], dtype=np.float64)
    elif schedule == "scaled_linear":
        betas = np.linspace(start ** 0.5, end ** 0.5, count, dtype=np.float64) ** 2
    elif schedule == "linear":
        betas = np.linspace(start, end, count, dtype=np.float64)
    else:
        sys.exit(f"{WHO}: --int8-conv knows the linear and scaled_linear beta schedules, "
                 f"not {schedule!r} ({source}/scheduler/scheduler_config.json)")
    return np.cumprod(1.0 - betas)


def parse_timesteps(text, source):
    count = read_json(source, "scheduler", "scheduler_config.json").get("num_train_timesteps", 1000)
    try:
        timesteps = [int(t) for t in text.split(",")]
    except ValueError:
        timesteps = []
    if not timesteps or any(not 0 <= t < count for t in timesteps):
        sys.exit(f"{WHO}: --calibration-timesteps {text!r}: give integers in 0..{count - 1}, "
                 "separated by commas")
    return timesteps


def graph_inputs(graph):
    import onnx

    model = onnx.load(graph, load_external_data=False)
    return {i.name: (i.type.tensor_type.elem_type, len(i.type.tensor_type.shape.dim))
            for i in model.graph.input}


def prompt_ids(source, length, dtype):
    """Token ids of PROMPTS: start, each word's token, end, padding (each word must be one token
    of the vocabulary, as "person" is in CLIP's)."""
    import numpy as np

    vocab = read_json(source, "tokenizer", "vocab.json")
    special = read_json(source, "tokenizer", "special_tokens_map.json")

    def token(key):
        entry = special[key]
        return vocab[entry["content"] if isinstance(entry, dict) else entry]

    start, end = token("bos_token"), token("eos_token")
    pad = token("pad_token") if "pad_token" in special else end
    rows = []
    for prompt in PROMPTS:
        words = [vocab.get(word + "</w>") for word in prompt.split()]
        if None in words:
            sys.exit(f"{WHO}: the tokenizer of {source} has no single token for a word of {prompt!r}")
        ids = [start, *words, end]
        rows.append(ids + [pad] * (length - len(ids)))
    return np.array(rows, dtype=dtype)


def calibration_feeds(source, unet_graph, images, timesteps):
    """UNet inputs as the pipeline makes them: each image's latent (VAE encoder mean times the
    scaling factor) noised to each timestep, with each prompt's text embedding."""
    import numpy as np
    import onnxruntime
    from PIL import Image

    inputs = graph_inputs(unet_graph)
    if set(inputs) != set(UNET_INPUTS):
        sys.exit(f"{WHO}: --int8-conv calibrates UNets whose inputs are {', '.join(UNET_INPUTS)}; "
                 f"{unet_graph} has {', '.join(sorted(inputs))}")
    numpy_type = {1: np.float32, 10: np.float16, 6: np.int32, 7: np.int64, 11: np.float64}
    if inputs["sample"][0] != 1:
        sys.exit(f"{WHO}: --int8-conv quantizes float32 UNets; {unet_graph} takes another type")
    timestep_type, timestep_rank = inputs["timestep"]
    if timestep_type not in numpy_type:
        sys.exit(f"{WHO}: {unet_graph}: timestep of ONNX element type {timestep_type} is not known")
    unet_config = read_json(source, "unet", "config.json")
    vae_config = read_json(source, "vae_encoder", "config.json")
    text_config = read_json(source, "text_encoder", "config.json")
    sample_size = unet_config.get("sample_size", 64)
    sample_size = sample_size[0] if isinstance(sample_size, list) else sample_size
    size = sample_size * 2 ** (len(vae_config.get("block_out_channels", [0] * 4)) - 1)
    scaling = vae_config.get("scaling_factor", 0.18215)
    cpu = ["CPUExecutionProvider"]
    text_graph = os.path.join(source, "text_encoder", "model.onnx")
    text_type = numpy_type.get(graph_inputs(text_graph).get("input_ids", (7, 2))[0], np.int64)
    ids = prompt_ids(source, text_config.get("max_position_embeddings", 77), text_type)
    text = onnxruntime.InferenceSession(text_graph, providers=cpu)
    embeddings = [text.run(None, {"input_ids": row[None]})[0] for row in ids]
    encoder = onnxruntime.InferenceSession(os.path.join(source, "vae_encoder", "model.onnx"),
                                           providers=cpu)
    alphas = alphas_cumprod(source)
    noise = np.random.default_rng(0)
    feeds = []
    for path in images:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
        except OSError as e:
            sys.exit(f"{WHO}: calibration image {path}: {e}")
        pixels = (pixels.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        encoded = encoder.run(None, {"sample": pixels})[0]
        # Optimum's exports give the posterior's mean and log-variance (`latent_parameters`);
        # older ones a sampled latent (`latent_sample`) with the UNet's channel count.
        channels = unet_config.get("in_channels", 4)
        latent = (encoded[:, :channels] if encoded.shape[1] == 2 * channels else encoded) * scaling
        for t in timesteps:
            noisy = (np.sqrt(alphas[t]) * latent
                     + np.sqrt(1.0 - alphas[t]) * noise.standard_normal(latent.shape)).astype(np.float32)
            step = np.array(t if timestep_rank == 0 else [t], dtype=numpy_type[timestep_type])
            for embedding in embeddings:
                feeds.append({"sample": noisy, "timestep": step, "encoder_hidden_states": embedding})
    return feeds


def quantize_convolutions(graph, target, feeds, large):
    from onnx import TensorProto
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(feeds)

        def get_next(self):
            return next(self.remaining, None)

    # uint8 activations with int8 weights: the pair ONNX Runtime's VNNI kernels take.
    quantize_static(graph, target, Feeds(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, use_external_data_format=large,
                    # MinMax keeps only each tensor's reduced min and max per run, so every run's
                    # ranges fit in memory at once (CalibMaxIntermediateOutputs is not set: in
                    # onnxruntime 1.31.1 it drops the runs it clears instead of merging them).
                    extra_options={"DefaultTensorType": TensorProto.FLOAT})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--fuse", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--ops", default="MatMul,Gemm,Attention")
    ap.add_argument("--int8-conv", action="store_true")
    ap.add_argument("--calibration-images", default=DEFAULT_CALIBRATION_IMAGES)
    ap.add_argument("--calibration-timesteps", default=DEFAULT_TIMESTEPS)
    args = ap.parse_args()
    if not (args.fuse or args.int8 or args.int8_conv):
        sys.exit(f"{WHO}: say what to do: --fuse, --int8-conv, --int8, or several")
    unet = os.path.join(args.source, "unet", "model.onnx")
    if not os.path.isfile(unet):
        sys.exit(f"{WHO}: {unet} not found: SOURCE must be an optimum-layout model folder")
    if not os.path.isfile(os.path.join(args.source, MANIFEST)):
        sys.exit(f"{WHO}: {args.source} has no {MANIFEST}: write it first (boomerang manifest --write)")
    if os.path.exists(args.out):
        sys.exit(f"{WHO}: {args.out} exists; choose a new folder")
    calibration_images, timesteps = [], []
    if args.int8_conv:
        calibration_images = images_in(args.calibration_images)
        timesteps = parse_timesteps(args.calibration_timesteps, args.source)
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
        steps = [step for step in ("fuse", "int8_conv", "int8") if getattr(args, step)]
        done = []
        graph = unet
        for index, step in enumerate(steps):
            # Steps before the last write into hidden folders removed below.
            target = (out_graph if index == len(steps) - 1
                      else os.path.join(staging, f".{step}", "model.onnx"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if step == "fuse":
                fused = fuse(graph, target, large)
                done.append("fused by onnxruntime.transformers.optimizer (model_type unet, CPU "
                            f"operators only): {', '.join(f'{op} {n}' for op, n in sorted(fused.items()))}")
            elif step == "int8_conv":
                feeds = calibration_feeds(args.source, graph, calibration_images, timesteps)
                quantize_convolutions(graph, target, feeds, large)
                done.append("convolutions quantized by onnxruntime.quantization.quantize_static (QDQ, "
                            "per-channel QInt8 weights, QUInt8 activations, MinMax ranges from "
                            f"{len(feeds)} calibration runs: images "
                            f"{', '.join(os.path.basename(p) for p in calibration_images)}; timesteps "
                            f"{', '.join(map(str, timesteps))}; prompts {', '.join(map(repr, PROMPTS))})")
            else:
                from onnx import TensorProto
                from onnxruntime.quantization import QuantType, quantize_dynamic

                # ONNX's shape inference types no output of the fused (com.microsoft) operators;
                # every float tensor of these graphs is float32.
                quantize_dynamic(graph, target, op_types_to_quantize=args.ops.split(","),
                                 weight_type=QuantType.QInt8, per_channel=False,
                                 use_external_data_format=large,
                                 extra_options={"DefaultTensorType": TensorProto.FLOAT})
                done.append(f"quantized by onnxruntime.quantization.quantize_dynamic (weights QInt8, "
                            f"ops {args.ops})")
            graph = target
        for step in steps:
            shutil.rmtree(os.path.join(staging, f".{step}"), ignore_errors=True)
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
