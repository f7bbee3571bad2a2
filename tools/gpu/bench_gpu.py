#!/usr/bin/env python3
"""Issue 14's GPU benchmark: boomerang on ONNX Runtime's CUDA provider, with fp32 graphs and with
fp16 graphs fused by ONNX Runtime's own Stable Diffusion optimizer, side by side with PyTorch
diffusers img2img (fp16, SDPA attention) on the same random weights, in one run on one machine.

  python3 tools/gpu/bench_gpu.py RESULTS_DIR                   # on the GPU machine (run_there.sh)
  python3 tools/gpu/bench_gpu.py RESULTS_DIR --shape tiny --device cpu   # the same steps on a CPU

Steps: build an SD 1.5-shaped pipeline with seeded random weights (tools/make_sd15_shaped.py's
configs; `--shape tiny`: models/tiny-sd's) → export its four graphs to ONNX in the optimum layout
boomerang reads (TorchScript exporter, opset 18) → ONNX Runtime's Stable Diffusion optimizer
(`optimize_pipeline --float16`, through tools/gpu/optimize_pipeline.py) on that export →
for each batch (largest first) × guidance: `boomerang sample` on both exports and the PyTorch
pipeline, DDIM,
strength 0.5 of 50 steps (25 UNet steps), prompt "person", 2 batches of distinct images at the
working size.

Per image is the steady rate: each boomerang stage's first call (cuDNN's algorithm search, a
session's one-time work: `--timings`' "first call") is left out and the rest scaled to all calls;
PyTorch gets one unmeasured warm-up call, then two timed ones. boomerang's whole process, model
loading included, is reported beside it. GPU memory is the peak `nvidia-smi` reports for the machine while
a row ran, minus what was in use before that side's process started (boomerang: one process per
row; PyTorch: one process for all rows, its cache emptied between them).
RESULTS_DIR/results.md and results.json are rewritten after every row, so a run cut short keeps
what it measured; `--deadline-s` skips rows once that much time has passed.

On a CPU (`--device cpu`) the PyTorch side runs in fp32 and the fp16 export is optimized with the
fusions that need CUDA kernels turned off (attention stays fused), so every step runs where no GPU
is (tests/gpu_bench.rs); its timings say nothing about GPUs. Needs torch, diffusers, transformers,
onnx and onnxruntime: python3's own (the GPU machine's, with diffusers carried as a wheel), else
$BOOMERANG_MODELS_PYTHON, else the model venv of tools/requirements-models.txt in boomerang's cache.
"""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import cached_model  # noqa: E402
import stage_timings  # noqa: E402

WHO = "bench_gpu"
ONNX_OPSET = 18
PROMPT = "person"
# optimize_pipeline's fusions whose operators only the CUDA (or ROCm) provider implements; off with
# `--fusions cpu` (the default on `--device cpu`) so the fp16 export still opens there.
CUDA_ONLY_FUSIONS = ("--disable_group_norm", "--disable_skip_group_norm", "--disable_nhwc_conv",
                     "--disable_bias_splitgelu", "--disable_bias_add", "--disable_packed_kv",
                     "--disable_packed_qkv")
# The VAE's sample_size of each shape: the images are made at it, so neither side resizes or tiles.
WORKING_SIZE = {"sd15": 512, "tiny": 128}


def parse_list(text, kind):
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return values


def arguments(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="folder for results.md and results.json (created)")
    ap.add_argument("--shape", choices=("sd15", "tiny"), default="sd15")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--guidance", type=lambda t: parse_list(t, float), default=[1.0, 7.5])
    ap.add_argument("--batch", type=lambda t: parse_list(t, int), default=[1, 8])
    ap.add_argument("--sides", type=lambda t: parse_list(t, str), default=["fp32", "fp16", "torch"],
                    help="which of fp32, fp16 (boomerang on either export) and torch to run")
    ap.add_argument("--fusions", choices=("cuda", "cpu"),
                    help="which of ONNX Runtime's fusions the fp16 export gets (default: --device's); cuda adds "
                         "GroupNorm, NHWC convolutions and bias fusions, which only the CUDA provider runs")
    ap.add_argument("--boomerang", default=os.path.join(ROOT, "target", "release", "boomerang"))
    ap.add_argument("--work", help="folder for the exports and images (default: a temporary one)")
    ap.add_argument("--deadline-s", type=float, help="skip the rows left once this many seconds have passed")
    ap.add_argument("--prepare-only", action="store_true",
                    help="make the exports in --work and stop (run_there.sh starts this early, in the background)")
    ap.add_argument("--torch-run", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.fusions = args.fusions or args.device
    if args.prepare_only and not args.work:
        ap.error("--prepare-only needs --work: the folder a later run reads")
    unknown = set(args.sides) - {"fp32", "fp16", "torch"}
    if unknown:
        ap.error(f"--sides: unknown {sorted(unknown)}; choose from fp32, fp16, torch")
    if args.steps < 1 or not 0 < args.strength <= 1 or min(args.batch) < 1:
        ap.error("--steps and --batch must be at least 1, --strength in (0, 1]")
    return args


def build_models(shape):
    if shape == "tiny":
        import make_tiny_sd
        return make_tiny_sd.build_models()
    import make_sd15_shaped
    return make_sd15_shaped.build_models()


def scheduler_config():
    import make_tiny_sd
    return dict(make_tiny_sd.SCHEDULER_CONFIG)


def tokenizer_folder():
    # models/tiny-sd carries CLIP's real BPE vocabulary, the one every SD 1.x model uses.
    return os.path.join(ROOT, "models", "tiny-sd", "tokenizer")


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def export_graph(module, inputs, path, input_names, output_names, dynamic_axes):
    """One graph, weights in a single model.onnx_data beside it when they pass protobuf's 2 GB."""
    import onnx
    import torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as scratch:
        raw = os.path.join(scratch, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(module, inputs, raw, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, dynamo=False)
        model = onnx.load(raw, load_external_data=True)
        # The exporter scatters a large model's weights over one file per tensor; boomerang's
        # manifest and ONNX Runtime read them as well from one file, which is what optimum writes.
        weights = sum(len(tensor.raw_data) for tensor in model.graph.initializer)
        if weights > 1_500_000_000:
            onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                      location="model.onnx_data")
        else:
            onnx.save(model, path)


def export_onnx(models, out, device):
    """The optimum image-to-image layout boomerang reads (models/tiny-sd/README.md)."""
    import torch
    text_encoder, unet, vae = (m.to(device) for m in models)
    latent = vae.config.sample_size // 8

    class Graph(torch.nn.Module):
        """One graph's forward around a registered submodule (the tracer takes its weights as
        parameters, not constants)."""

        def __init__(self, model, forward):
            super().__init__()
            self.model = model.requires_grad_(False)
            self.run = forward

        def forward(self, *inputs):
            return self.run(self.model, *inputs)

    def text_encoder_forward(model, input_ids):
        hidden, pooled = model(input_ids, return_dict=False)[:2]
        return hidden, pooled

    width, pixels = text_encoder.config.hidden_size, vae.config.sample_size
    ids = torch.zeros((1, 77), dtype=torch.int64, device=device)
    latents = torch.randn(1, 4, latent, latent, device=device)
    image_axes = {0: "batch", 2: "height", 3: "width"}
    sequence_axes = {0: "batch", 1: "sequence"}
    export_graph(Graph(text_encoder, text_encoder_forward), (ids,),
                 os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
                 ["last_hidden_state", "pooler_output"],
                 {"input_ids": sequence_axes, "last_hidden_state": sequence_axes, "pooler_output": {0: "batch"}})
    export_graph(Graph(unet, lambda m, x, t, h: m(x, t, h, return_dict=False)[0]),
                 (latents, torch.tensor(500.0, device=device), torch.randn(1, 77, width, device=device)),
                 os.path.join(out, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states"],
                 ["out_sample"],
                 {"sample": image_axes, "encoder_hidden_states": sequence_axes, "out_sample": image_axes})
    export_graph(Graph(vae, lambda m, x: m.encode(x).latent_dist.parameters),
                 (torch.randn(1, 3, pixels, pixels, device=device),),
                 os.path.join(out, "vae_encoder", "model.onnx"), ["sample"], ["latent_parameters"],
                 {"sample": image_axes, "latent_parameters": image_axes})
    export_graph(Graph(vae, lambda m, z: m.decode(z, return_dict=False)[0]), (latents,),
                 os.path.join(out, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"],
                 {"latent_sample": image_axes, "sample": image_axes})
    write_json(os.path.join(out, "text_encoder", "config.json"), text_encoder.config.to_dict())
    write_json(os.path.join(out, "unet", "config.json"), dict(unet.config))
    for name in ("vae_encoder", "vae_decoder"):
        write_json(os.path.join(out, name, "config.json"), dict(vae.config))
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), scheduler_config())
    shutil.copytree(tokenizer_folder(), os.path.join(out, "tokenizer"))
    shutil.copy(os.path.join(ROOT, "models", "tiny-sd", "model_index.json"), out)
    for model in (text_encoder, unet, vae):
        model.to("cpu")


def write_manifest(binary, folder):
    subprocess.run([binary, "manifest", "--write", folder], check=True, capture_output=True)


def optimize_fp16(source, out, fusions):
    """ONNX Runtime's Stable Diffusion optimizer: fused attention (and on CUDA GroupNorm, NHWC
    convolutions, bias fusions), then fp16 with fp16 inputs and outputs."""
    command = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimize_pipeline.py"),
               "-i", source, "-o", out, "--float16"]
    if fusions == "cpu":
        command += CUDA_ONLY_FUSIONS
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{WHO}: ONNX Runtime's optimize_pipeline failed:\n{done.stderr[-4000:]}")
    # It copies the source's SHA256SUMS, which no longer matches the graphs it rewrote.
    manifest = os.path.join(out, "SHA256SUMS")
    if os.path.exists(manifest):
        os.remove(manifest)


def fused_operators(graph):
    """Counts of the fused operators ONNX Runtime's optimizer wrote into a graph."""
    import collections
    import onnx
    counts = collections.Counter(node.op_type for node in onnx.load(graph, load_external_data=False).graph.node)
    return {op: counts[op] for op in ("Attention", "MultiHeadAttention", "GroupNorm", "SkipGroupNorm",
                                       "NhwcConv", "BiasSplitGelu", "BiasAdd") if counts[op]}


def mean_level_difference(folder_a, folder_b):
    """Mean |a - b| in 8-bit levels over the samples both folders hold (same names, same seed)."""
    import numpy as np
    from PIL import Image
    names = sorted(set(os.listdir(folder_a)) & set(os.listdir(folder_b)))
    if not names:
        return None
    return float(np.mean([np.abs(np.asarray(Image.open(os.path.join(folder_a, n)), dtype=np.int16)
                                 - np.asarray(Image.open(os.path.join(folder_b, n)), dtype=np.int16)).mean()
                          for n in names]))


def identical_samples(folder_a, folder_b):
    """[byte-identical, compared] over the samples both folders hold (same names, same seed)."""
    names = sorted(set(os.listdir(folder_a)) & set(os.listdir(folder_b)))
    same = sum(filecmp.cmp(os.path.join(folder_a, n), os.path.join(folder_b, n), shallow=False) for n in names)
    return [same, len(names)]


def make_images(folder, size, count):
    """`count` distinct images at the working size: crops of the bundled example, so no side resizes."""
    from PIL import Image
    source = Image.open(os.path.join(ROOT, "examples", "astronaut.png")).convert("RGB")
    os.makedirs(folder, exist_ok=True)
    side = min(source.size)
    paths = []
    for k in range(count):
        crop = int(side * (0.6 + 0.4 * (k % 5) / 5))
        left = (source.size[0] - crop) * (k % 3) // 2
        top = (source.size[1] - crop) * (k % 2)
        image = source.crop((left, top, left + crop, top + crop)).resize((size, size), Image.LANCZOS)
        if k % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        path = os.path.join(folder, f"face{k:02d}.png")
        image.save(path)
        paths.append(path)
    return paths


class GpuMemory:
    """Peak machine-wide GPU memory while a side runs, from nvidia-smi, less what was in use
    before (`before`, else what is in use on entering)."""

    def __init__(self, device, before=None):
        self.enabled = device == "cuda" and shutil.which("nvidia-smi") is not None
        self.before = before
        self.peak = None

    def current(self):
        if not self.enabled:
            return None
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        return max((int(v) for v in out.stdout.split() if v.isdigit()), default=0)

    def __enter__(self):
        if self.enabled:
            if self.before is None:
                self.before = self.current()
            self.peak = self.current()
            self.stop = threading.Event()

            def poll():
                while not self.stop.wait(0.1):
                    self.peak = max(self.peak, self.current())
            self.thread = threading.Thread(target=poll, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, self.current()) - self.before

    def mib(self):
        return self.peak


def steady_per_image(stages, images):
    """Seconds per image with each stage's first call left out and the rest scaled to all calls."""
    total = 0.0
    for stage in stages.values():
        if stage.calls > 1:
            total += (stage.seconds - stage.first) / (stage.calls - 1) * stage.calls
        else:
            total += stage.seconds
    return total / images


def run_boomerang(args, model, images, batch, guidance, out):
    # A run again in the same --work (e.g. a second try on the same machine): `sample` never
    # replaces a file, so the earlier samples go first.
    shutil.rmtree(out, ignore_errors=True)
    command = [args.boomerang, "sample", "--model", model, "--device", args.device, "--batch", str(batch),
               "--guidance", str(guidance), "--prompt", PROMPT, "--scheduler", "ddim", "--steps", str(args.steps),
               "--strength", str(args.strength), "--seed", "0", "--timings", "-o", out] + images
    with GpuMemory(args.device) as memory:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        whole = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    table = stage_timings.parse(done.stdout)
    if table is None:
        return {"error": "no --timings table in boomerang's output"}
    stages, outside = table
    return {
        "per_image": steady_per_image(stages, len(images)),
        "first_calls": sum(stage.first for stage in stages.values()),
        "whole": whole,
        "outside_runtime": outside,
        "unet_calls": stages["UNet steps"].calls,
        "gpu_mib": memory.mib(),
    }


def torch_run(spec):
    """In a process of its own: the PyTorch pipeline on the same weights, every (guidance, batch)
    of the spec in turn, one JSON line each as it is measured."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image
    from transformers import CLIPTokenizer
    started = time.perf_counter()
    baseline = GpuMemory(spec["device"]).current()
    text_encoder, unet, vae = build_models(spec["shape"])
    dtype = torch.float16 if spec["device"] == "cuda" else torch.float32
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_folder()),
        unet=unet, scheduler=DDIMScheduler.from_config(scheduler_config()), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False).to(spec["device"], dtype)
    pipe.set_progress_bar_config(disable=True)
    attention = type(unet.attn_processors[next(iter(unet.attn_processors))]).__name__
    images = [Image.open(path).convert("RGB") for path in spec["images"]]
    for guidance, batch in spec["configs"]:
        result = {"guidance": guidance, "batch": batch}
        if spec["deadline_s"] is not None and time.perf_counter() - started > spec["deadline_s"]:
            print(json.dumps(dict(result, skipped="skipped: past --deadline-s")), flush=True)
            continue

        def call(chunk):
            pipe(prompt=[PROMPT] * len(chunk), image=chunk, strength=spec["strength"],
                 num_inference_steps=spec["steps"], guidance_scale=guidance, output_type="np")
            if spec["device"] == "cuda":
                torch.cuda.synchronize()

        if spec["device"] == "cuda":
            torch.cuda.empty_cache()  # what an earlier, larger batch cached is not this one's
        with GpuMemory(spec["device"], before=baseline) as memory:
            call(images[:batch])  # warm-up: cuDNN's algorithm choice, allocator growth
            start = time.perf_counter()
            for first in range(0, 2 * batch, batch):
                call(images[first:first + batch])
            per_image = (time.perf_counter() - start) / (2 * batch)
        print(json.dumps(dict(result, per_image=per_image, gpu_mib=memory.mib(), attention=attention)), flush=True)


def run_torch(args, images, configs, deadline_s):
    """{(guidance, batch): result} for every config, from one PyTorch process (one model build)."""
    spec = {"shape": args.shape, "device": args.device, "images": images, "configs": configs,
            "steps": args.steps, "strength": args.strength, "deadline_s": deadline_s}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "unused", "--torch-run", json.dumps(spec)],
                          capture_output=True, text=True)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[(result.pop("guidance"), result.pop("batch"))] = result
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
        for config in configs:
            results.setdefault(tuple(config), {"error": f"PyTorch: {error}"})
    return results


def cell(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def same_bytes(row):
    same = row.get("same_bytes_as_largest_batch")
    return "—" if same is None else f"{same[0]}/{same[1]}"


def write_results(folder, setup, rows):
    write_json(os.path.join(folder, "results.json"), {"setup": setup, "rows": rows})
    lines = [f"# boomerang vs PyTorch diffusers, {setup['shape']} on {setup['device']}", "",
             ", ".join(f"{k}: {v}" for k, v in setup.items() if k not in ("shape", "device")), "",
             "| guidance | batch | side | s/image (steady) | ours/PyTorch | whole process s | first calls s "
             "| outside ORT | GPU MiB | mean levels from fp32 | same bytes as largest batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        reference = next((r.get("per_image") for r in rows if r["side"] == "torch"
                          and r["guidance"] == row["guidance"] and r["batch"] == row["batch"]), None)
        ratio = None
        if row["side"] != "torch" and reference and row.get("per_image"):
            ratio = row["per_image"] / reference
        if "error" in row or "skipped" in row:
            lines.append(f"| {row['guidance']} | {row['batch']} | {row['side']} | "
                         f"{row.get('error') or row['skipped']} | | | | | | | |")
            continue
        outside = row.get("outside_runtime")
        lines.append(
            f"| {row['guidance']} | {row['batch']} | {row['side']} | {cell(row['per_image'], 4)} | {cell(ratio)} "
            f"| {cell(row.get('whole'), 1)} | {cell(row.get('first_calls'), 2)} "
            f"| {'—' if outside is None else f'{100 * outside:.1f}%'} | {row['gpu_mib'] if row.get('gpu_mib') is not None else '—'} "
            f"| {cell(row.get('levels_from_fp32'), 2)} | {same_bytes(row)} |")
    with open(os.path.join(folder, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def prepare(args, work, fp32, fp16):
    """The fp32 export and its fp16 optimization, each unless already in `work`; what it did is
    kept in work/prepared.json, so a later run on the same folder reports it too."""
    record_path = os.path.join(work, "prepared.json")
    record = {}
    if os.path.exists(record_path):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
    if any(side in args.sides for side in ("fp32", "fp16")) and not os.path.exists(os.path.join(fp32, "SHA256SUMS")):
        import torch
        stamp = time.perf_counter()
        export_onnx(build_models(args.shape), fp32, args.device)
        write_manifest(args.boomerang, fp32)
        record.update(export_s=round(time.perf_counter() - stamp, 1), torch=torch.__version__)
    if "fp16" in args.sides and not os.path.exists(os.path.join(fp16, "SHA256SUMS")):
        import onnxruntime
        stamp = time.perf_counter()
        optimize_fp16(fp32, fp16, args.fusions)
        write_manifest(args.boomerang, fp16)
        record.update(optimize_s=round(time.perf_counter() - stamp, 1),
                      fp16_unet_fused=fused_operators(os.path.join(fp16, "unet", "model.onnx")),
                      optimizer=f"onnxruntime {onnxruntime.__version__} optimize_pipeline --float16" + (
                          " " + " ".join(CUDA_ONLY_FUSIONS) if args.fusions == "cpu" else ""))
    os.makedirs(work, exist_ok=True)
    write_json(record_path, record)
    return record


def main():
    args = arguments()
    if args.torch_run:
        torch_run(json.loads(args.torch_run))
        return
    # The packages of the GPU machine's python, else the model venv's (tools/requirements-models.txt).
    cached_model.ensure_model_packages(WHO, __file__, (
        "torch", "diffusers", "transformers", "onnx", "onnxruntime.transformers.models.stable_diffusion"))
    started = time.perf_counter()
    if any(side in args.sides for side in ("fp32", "fp16")) and not os.access(args.boomerang, os.X_OK):
        sys.exit(f"{WHO}: no boomerang binary at {args.boomerang}: build it (cargo build --release) or pass --boomerang")
    work = args.work or tempfile.mkdtemp(prefix="bench-gpu-")
    fp32, fp16 = os.path.join(work, "fp32"), os.path.join(work, "fp16")
    setup = {"shape": args.shape, "device": args.device, "steps": args.steps, "strength": args.strength,
             "scheduler": "ddim", "prompt": PROMPT}
    setup.update(prepare(args, work, fp32, fp16))
    if args.prepare_only:
        print(f"{WHO}: prepared {work}: {json.dumps(setup)}")
        return
    os.makedirs(args.results, exist_ok=True)
    images = make_images(os.path.join(work, "images"), WORKING_SIZE[args.shape], 2 * max(args.batch))
    # The largest batch first: guidance 1 at batch 8 is the design goal, and a deadline skips the
    # rows left at the end.
    configs = [(guidance, batch) for batch in sorted(set(args.batch), reverse=True) for guidance in args.guidance]
    remaining = None if args.deadline_s is None else args.deadline_s - (time.perf_counter() - started)
    reference = run_torch(args, images, configs, remaining) if "torch" in args.sides else {}
    rows = []
    for guidance, batch in configs:
        chosen = images[:2 * batch]
        for side in args.sides:
            row = {"guidance": guidance, "batch": batch, "side": side, "images": len(chosen)}
            if side == "torch":
                row.update(reference[(guidance, batch)])
            elif args.deadline_s is not None and time.perf_counter() - started > args.deadline_s:
                row["skipped"] = f"skipped: past --deadline-s {args.deadline_s:g}"
            else:
                out = os.path.join(work, f"out-{side}-{guidance:g}-{batch}")
                row.update(run_boomerang(args, fp32 if side == "fp32" else fp16, chosen, batch, guidance, out))
                twin = os.path.join(work, f"out-fp32-{guidance:g}-{batch}")
                if side == "fp16" and "error" not in row and os.path.isdir(twin):
                    # The same seed and noise through both exports: what fp16 and fusion cost.
                    row["levels_from_fp32"] = mean_level_difference(out, twin)
                largest = os.path.join(work, f"out-{side}-{guidance:g}-{max(args.batch)}")
                if batch != max(args.batch) and "error" not in row and os.path.isdir(largest):
                    # Its images were also in the largest batch's first: whether batching
                    # changes an output's bytes (other kernels for another shape).
                    row["same_bytes_as_largest_batch"] = identical_samples(out, largest)
            rows.append(row)
            write_results(args.results, setup, rows)
            print(json.dumps(row), flush=True)
    print(open(os.path.join(args.results, "results.md"), encoding="utf-8").read())
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
