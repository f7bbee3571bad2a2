#!/usr/bin/env python3
"""boomerang side by side with Hugging Face Optimum's ONNX Runtime img2img pipeline.

Both sides run the same ONNX Runtime release (1.31.1) on the same exported graphs, the same work
(one image at the model's working size, PNDM, the same strength and steps, guidance 1, batch 1,
the same intra-op thread count), alternately, pair after pair (the order flips each pair so a
drifting machine load hurts both equally). Printed: per image (the pipeline call vs boomerang's
stage total, model loading excluded), whole process (start to exit), and per stage the time spent
inside ONNX Runtime's run, as boomerang / Optimum ratios with min / median / max over the pairs.

  python3 tools/bench_vs_optimum.py --model models/tiny-sd --pairs 4
  python3 tools/bench_vs_optimum.py --model SD15_SHAPED_DIR --pairs 4 --steps 12
      (SD15_SHAPED_DIR from tools/make_sd15_shaped.py; --steps 12 at strength 0.5 runs 6 UNet calls)

The reference environment is a venv in boomerang's cache made from tools/requirements-bench.txt
(pinned; ~5 GB because torch brings its CUDA libraries), or `--python PY` for an interpreter that
already has those packages. boomerang is `target/release/boomerang` unless `--boomerang BIN`.
"""
import argparse
import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage_timings  # noqa: E402
import venv_cache  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "tools", "requirements-bench.txt")
WHO = "bench_vs_optimum"
# ONNX Runtime graph folder -> boomerang's --timings stage label.
STAGES = {"text_encoder": "text encoder", "vae_encoder": "VAE encode", "unet": "UNet steps",
          "vae_decoder": "VAE decode"}


def reference_python(given):
    return given or venv_cache.venv_python(WHO, REQUIREMENTS, "bench-venv")


def reference_run(args):
    """Inside the reference venv: one Optimum pipeline run, timed, as JSON on stdout."""
    started = time.perf_counter()
    import onnxruntime as ort
    import torch
    from PIL import Image

    in_runtime = collections.defaultdict(float)
    calls = collections.Counter()
    original_run = ort.InferenceSession.run

    def timed_run(self, output_names, input_feed, run_options=None):
        start = time.perf_counter()
        try:
            return original_run(self, output_names, input_feed, run_options)
        finally:
            graph = os.path.basename(os.path.dirname(self._model_path))
            in_runtime[graph] += time.perf_counter() - start
            sessions[graph] = self
            calls[graph] += 1

    ort.InferenceSession.run = timed_run
    from optimum.onnxruntime import ORTStableDiffusionImg2ImgPipeline

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    if args.profile:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(args.profile, "optimum")
    sessions = {}
    pipe = ORTStableDiffusionImg2ImgPipeline.from_pretrained(
        args.model, provider="CPUExecutionProvider", session_options=options)
    if pipe.scheduler.__class__.__name__ != "PNDMScheduler":
        sys.exit(f"{WHO}: the model's scheduler is {pipe.scheduler.__class__.__name__}; this "
                 "benchmark compares PNDM runs")
    image = Image.open(args.image).convert("RGB")
    loaded = time.perf_counter()
    pipe(prompt="", image=image, strength=args.strength, num_inference_steps=args.steps,
         guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="np")
    finished = time.perf_counter()
    for graph, session in sessions.items():
        if args.profile:
            os.replace(session.end_profiling(), os.path.join(args.profile, f"optimum-{graph}.json"))
    print(json.dumps({
        "open": loaded - started,
        "per_image": finished - loaded,
        "in_runtime": {STAGES.get(k, k): v for k, v in in_runtime.items()},
        "calls": {STAGES.get(k, k): v for k, v in calls.items()},
        "library": ort.__file__,
        "version": ort.__version__,
    }))


def working_size(model):
    with open(os.path.join(model, "vae_decoder", "config.json")) as f:
        return int(json.load(f).get("sample_size", 512))


def prepare_image(python, source, size, out):
    """The input resized to the working size once, so neither side resizes or tiles."""
    code = ("import sys\nfrom PIL import Image\n"
            "Image.open(sys.argv[1]).convert('RGB').resize((int(sys.argv[3]),) * 2, Image.LANCZOS)"
            ".save(sys.argv[2])")
    subprocess.check_call([python, "-c", code, source, out, str(size)])


def run_reference(python, args, image):
    start = time.perf_counter()
    out = subprocess.run([python, os.path.abspath(__file__), "--reference-run", "--model", args.model,
                          "--image", image, "--strength", str(args.strength), "--steps", str(args.steps),
                          "--threads", str(args.threads)] + (["--profile", args.profile] if args.profile else []),
                         capture_output=True, text=True)
    whole = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{WHO}: the Optimum run failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["whole"] = whole
    return result


def run_boomerang(binary, args, image, out_dir):
    env = dict(os.environ)
    env.pop("BOOMERANG_ORT_PROFILE", None)
    if args.profile:
        env["BOOMERANG_ORT_PROFILE"] = args.profile
    start = time.perf_counter()
    out = subprocess.run([binary, "sample", "--model", args.boomerang_model or args.model,
                          "--strength", str(args.strength),
                          "--steps", str(args.steps), "--scheduler", "pndm", "--guidance", "1",
                          "--threads", str(args.threads), "--seed", "0", "--timings", "-o", out_dir,
                          image], capture_output=True, text=True, env=env)
    whole = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{WHO}: boomerang failed:\n{out.stderr}")
    table = stage_timings.parse(out.stdout)
    if table is None:
        sys.exit(f"{WHO}: no timings in boomerang's output:\n{out.stdout}\n{out.stderr}")
    stages, _outside = table
    return {
        "whole": whole,
        "per_image": sum(stage.seconds for stage in stages.values()),
        "in_runtime": {label: stage.in_runtime for label, stage in stages.items() if stage.in_runtime > 0},
        "calls": {label: stage.calls for label, stage in stages.items()},
    }


def op_times(path):
    """ONNX Runtime profile (Chrome trace JSON) -> (microseconds per operator type, model runs)."""
    with open(path) as f:
        events = json.load(f)
    totals = collections.Counter()
    runs = 0
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            runs += 1
    return totals, runs


def print_profiles(folder, rows=12):
    """Per graph, the time per call of each operator type on both sides, the largest first."""
    for graph in ("unet", "vae_decoder", "vae_encoder"):
        ours = glob.glob(os.path.join(folder, f"boomerang-{graph}_*.json"))
        theirs = os.path.join(folder, f"optimum-{graph}.json")
        if len(ours) != 1 or not os.path.exists(theirs):
            print(f"  {graph}: no profile pair in {folder} (boomerang {len(ours)} file(s))")
            continue
        (b, b_runs), (o, o_runs) = op_times(ours[0]), op_times(theirs)
        b_total, o_total = sum(b.values()) / b_runs, sum(o.values()) / o_runs
        print(f"\n{graph}: per call, summed over nodes (boomerang {b_runs} calls, Optimum {o_runs})")
        print(f"  {'operator':<28}{'boomerang ms':>14}{'Optimum ms':>12}{'ratio':>8}{'share':>8}")
        for op in sorted(set(b) | set(o), key=lambda k: -max(b[k] / b_runs, o[k] / o_runs))[:rows]:
            ours_ms, theirs_ms = b[op] / b_runs / 1e3, o[op] / o_runs / 1e3
            ratio = f"{ours_ms / theirs_ms:.3f}" if theirs_ms else "-"
            print(f"  {op:<28}{ours_ms:>14.1f}{theirs_ms:>12.1f}{ratio:>8}{theirs_ms * 1e3 / o_total:>8.1%}")
        print(f"  {'all operators':<28}{b_total / 1e3:>14.1f}{o_total / 1e3:>12.1f}{b_total / o_total:>8.3f}")


def summary(ratios):
    return (f"min {min(ratios):.3f}  median {statistics.median(ratios):.3f}  "
            f"max {max(ratios):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="optimum-layout ONNX export (PNDM scheduler)")
    ap.add_argument("--image", default=os.path.join(ROOT, "tests/fixtures/faces/chips/astronaut.png"))
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--boomerang", default=os.path.join(ROOT, "target", "release", "boomerang"))
    ap.add_argument("--python", help="reference interpreter with tools/requirements-bench.txt installed")
    ap.add_argument("--boomerang-model", help="the folder boomerang runs (default: --model), e.g. one "
                    "from tools/optimize_graphs.py; Optimum always runs --model")
    ap.add_argument("--profile", help="after the pairs, one more pair with ONNX Runtime's profiling on "
                    "both sides, written to this folder, and a table of time per operator type")
    ap.add_argument("--reference-run", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_run:
        return reference_run(args)
    if not os.access(args.boomerang, os.X_OK):
        sys.exit(f"{WHO}: {args.boomerang} not found: cargo build --release (or pass --boomerang)")
    if args.profile:
        if os.path.exists(args.profile):
            sys.exit(f"{WHO}: --profile {args.profile} exists; name a new folder")
        os.makedirs(args.profile)
        args.profile = os.path.abspath(args.profile)
    if args.boomerang_model:
        print(f"boomerang runs {args.boomerang_model}; Optimum runs {args.model}")
    python = reference_python(args.python)
    with tempfile.TemporaryDirectory() as work:
        image = os.path.join(work, "input.png")
        prepare_image(python, args.image, working_size(args.model), image)
        pairs = []
        profile, args.profile = args.profile, None
        for pair in range(args.pairs + (1 if profile else 0)):
            if pair == args.pairs:
                args.profile = profile
            order = ["boomerang", "optimum"] if pair % 2 == 0 else ["optimum", "boomerang"]
            result = {}
            for side in order:
                if side == "boomerang":
                    # A folder per run: `sample` never replaces a file.
                    result[side] = run_boomerang(args.boomerang, args, image, os.path.join(work, f"out-{pair}"))
                else:
                    result[side] = run_reference(python, args, image)
            b, o = result["boomerang"], result["optimum"]
            if b["calls"].get("UNet steps") != o["calls"].get("UNet steps"):
                sys.exit(f"{WHO}: different work: UNet calls {b['calls']} vs {o['calls']}")
            print(f"{'profiled pair' if args.profile else f'pair {pair + 1}'}: per image {b['per_image']:.2f} s vs {o['per_image']:.2f} s, "
                  f"whole process {b['whole']:.2f} s vs {o['whole']:.2f} s "
                  f"(UNet calls {o['calls'].get('UNet steps')}, optimum's library {o['version']})",
                  flush=True)
            if not args.profile:
                pairs.append(result)
    if pairs:
        print(f"\nboomerang / Optimum over {len(pairs)} pairs (below 1: boomerang is faster)")
        print(f"  per image      {summary([p['boomerang']['per_image'] / p['optimum']['per_image'] for p in pairs])}")
        print(f"  whole process  {summary([p['boomerang']['whole'] / p['optimum']['whole'] for p in pairs])}")
        for label in STAGES.values():
            ratios = [p["boomerang"]["in_runtime"][label] / p["optimum"]["in_runtime"][label]
                      for p in pairs
                      if label in p["boomerang"]["in_runtime"] and p["optimum"]["in_runtime"].get(label)]
            if ratios:
                seconds = statistics.median(p["optimum"]["in_runtime"][label] for p in pairs)
                print(f"  {label:<14} {summary(ratios)}  (inside ONNX Runtime; Optimum median {seconds:.2f} s)")
    if profile:
        print(f"\nONNX Runtime's profiles of one more pair (not in the ratios above): {profile}")
        print_profiles(profile)


if __name__ == "__main__":
    main()
