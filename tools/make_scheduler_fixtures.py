"""Record diffusers 0.39.0 scheduler behaviour as fixtures for tests/scheduler_parity.rs.

Writes into OUT_DIR (default tests/fixtures/schedulers):
  cases.json        every case: configs, timesteps, init_noise_sigma, img2img trajectories (tensor
                    indices into tensors.npy), config resolution records, alphas_cumprod indices
  tensors.npy       float32 [K, 2, 4, 4, 4]: every latent-shaped tensor the trajectories reference
  alphas_cumprod.npy float32 [B, 1000]: alphas_cumprod for the beta configurations in cases.json

A trajectory replays what StableDiffusionImg2ImgPipeline does with a scheduler: set_timesteps(N),
start at t_start = N - min(int(N * strength), N), set_begin_index, add_noise at the first remaining
timestep, then scale_model_input + step for each remaining timestep. For LCM it replays
LatentConsistencyModelImg2ImgPipeline instead: set_timesteps(N, strength=strength) picks all N
timesteps below the strength, and every one of them is run. Model outputs are seeded
random tensors, either pure noise (a stress test: latents drift far from data scale) or
"oracle" outputs (what a perfect model would predict given the clean latents, plus 0.3 noise),
which keep latents at realistic magnitudes. Every tensor a scheduler draws in `step` is recorded
in draw order.

Deterministic: same bytes on every run (CPU, one thread, fixed seeds).

usage: /work/sdvenv/bin/python tools/make_scheduler_fixtures.py [OUT_DIR]
"""
import inspect
import json
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
)
from diffusers.schedulers import (  # noqa: E402
    scheduling_ddim,
    scheduling_ddpm,
    scheduling_euler_ancestral_discrete,
    scheduling_euler_discrete,
    scheduling_lcm,
)

assert diffusers.__version__ == "0.39.0", diffusers.__version__
torch.set_num_threads(1)
diffusers.utils.logging.set_verbosity(logging.ERROR)

CLASSES = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "euler": EulerDiscreteScheduler,
    "pndm": PNDMScheduler,
    "lcm": LCMScheduler,
}
# The kinds whose cases came first: LCM's and then Euler's are appended after theirs so that their
# seeds, and so their fixture bytes, stay as they were.
FIRST_KINDS = ["ddim", "ddpm", "euler-ancestral", "pndm"]
SHAPE = (2, 4, 4, 4)
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
BETAS = {
    "linear": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "squaredcos_cap_v2": {"beta_schedule": "squaredcos_cap_v2"},
}
# An LCMScheduler config with every key the class reads, as LCM distillations of SD 1.5 ship one
# (steps_offset 1 is ignored by LCMScheduler).
LCM_SD15 = {
    "_class_name": "LCMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "thresholding": False,
    "timestep_scaling": 10.0,
    "timestep_spacing": "leading",
    "trained_betas": None,
}
SPACINGS = ["leading", "trailing", "linspace"]
# A short custom beta schedule: exercises trained_betas and num_train_timesteps != 1000.
TRAINED_BETAS = [round(0.001 + 0.3 * (i / 49) ** 2, 6) for i in range(50)]


class Recorder:
    """Stands in for diffusers' randn_tensor inside the scheduler modules and keeps every draw."""

    def __init__(self):
        self.draws = []
        self.generator = None

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        x = torch.randn(shape, generator=self.generator, dtype=dtype or torch.float32)
        self.draws.append(x.clone())
        return x


RECORDER = Recorder()
for module in (scheduling_ddim, scheduling_ddpm, scheduling_euler_ancestral_discrete, scheduling_euler_discrete,
               scheduling_lcm):
    module.randn_tensor = RECORDER


class Tensors:
    """Latent-shaped tensors, stored once each (e.g. `scaled` is the sample itself for most)."""

    def __init__(self):
        self.items = []
        self.index = {}

    def add(self, t):
        a = t.detach().to(torch.float32).numpy().astype(np.float32)
        assert a.shape == SHAPE, a.shape
        key = a.tobytes()
        if key not in self.index:
            self.index[key] = len(self.items)
            self.items.append(a.copy())
        return self.index[key]


def f32(x):
    """A float32 value as the exact Python float, so JSON round-trips it bit for bit."""
    return float(np.float32(x))


def timesteps_list(sched):
    ts = sched.timesteps
    if ts.dtype.is_floating_point:
        return [f32(v) for v in ts.tolist()]
    return [int(v) for v in ts.tolist()]


def build(kind, config, steps, strength=1.0):
    sched = CLASSES[kind].from_config(config)
    if kind == "lcm":
        sched.set_timesteps(steps, strength=strength)
    else:
        sched.set_timesteps(steps)
    return sched


def init_noise_sigma(sched):
    s = sched.init_noise_sigma
    return f32(s.item() if torch.is_tensor(s) else s)


def smoke_run(kind, config, steps, strength=1.0):
    """Run the full schedule on a tiny tensor: diffusers errors (IndexError etc.) surface here."""
    sched = build(kind, config, steps, strength)
    RECORDER.generator = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 1, 1, 1)
    ts = sched.timesteps
    if not ts.dtype.is_floating_point and ts.min() < 0:
        # Trailing spacing with e.g. 61 steps ends at -1 (numpy arange rounding); torch then
        # silently reads alphas_cumprod[-1], the noisiest value. boomerang refuses such schedules.
        raise ValueError(f"timestep {ts.min().item()} indexes alphas_cumprod from the end")
    x = sched.add_noise(x, torch.zeros_like(x), ts[:1])
    for t in ts:
        x = sched.scale_model_input(x, t)
        x = sched.step(torch.zeros_like(x), t, x).prev_sample
    return sched


def timestep_cases():
    out = []
    for kind, prk in [("ddim", None), ("ddpm", None), ("euler-ancestral", None), ("pndm", False), ("pndm", True)]:
        for spacing in SPACINGS:
            for offset in (0, 1):
                for steps in (1, 2, 3, 4, 7, 10, 16, 25, 30, 33, 50, 61, 100, 103, 999, 1000):
                    config = dict(SD15)
                    config.update({"timestep_spacing": spacing, "steps_offset": offset})
                    if prk is not None:
                        config["skip_prk_steps"] = not prk
                    case = {"kind": kind, "config": config, "num_inference_steps": steps}
                    try:
                        sched = smoke_run(kind, config, steps)
                        case["timesteps"] = timesteps_list(sched)
                        case["init_noise_sigma"] = init_noise_sigma(sched)
                    except Exception as e:  # diffusers refuses or crashes: boomerang must refuse
                        case["error"] = f"{type(e).__name__}: {e}"
                    out.append(case)
    # LCM: its own timestep selection (timestep_spacing and steps_offset are ignored), for
    # img2img strengths and distillation schedule lengths; too few original steps must fail.
    for original in (50, 30, 1000):
        for strength in (1.0, 0.5, 0.3, 0.05):
            for steps in (1, 2, 4, 8, 25, 51):
                # timestep_spacing must change nothing; one spacing per case keeps the file small.
                spacing = ["leading", "trailing"][steps % 2]
                config = {"_class_name": "LCMScheduler", "original_inference_steps": original,
                          "timestep_spacing": spacing}
                case = {"kind": "lcm", "config": config, "num_inference_steps": steps, "strength": strength}
                try:
                    sched = smoke_run("lcm", config, steps, strength)
                    case["timesteps"] = timesteps_list(sched)
                    case["init_noise_sigma"] = init_noise_sigma(sched)
                except Exception as e:
                    case["error"] = f"{type(e).__name__}: {e}"
                out.append(case)
    return out


def oracle(sched, kind, latents, original, t):
    """The model output that predicts `original` exactly from `latents` at `t`."""
    pred = sched.config.prediction_type
    if kind in ("euler", "euler-ancestral"):
        sigma = sched.sigmas[sched.step_index]
        if pred == "sample":
            return original.clone()
        if pred == "epsilon":
            return (latents - original) / sigma
        return (latents / (sigma**2 + 1) - original) * (sigma**2 + 1) ** 0.5 / sigma
    a = sched.alphas_cumprod[int(t)]
    eps = (latents - a**0.5 * original) / (1 - a) ** 0.5
    if pred == "epsilon":
        return eps
    if pred == "sample":
        return original.clone()
    return a**0.5 * eps - (1 - a) ** 0.5 * original


def trajectory(tensors, name, kind, config, steps, strength, eta, seed, use_oracle):
    sched = build(kind, config, steps, strength)
    order = sched.order
    if kind == "lcm":
        # LatentConsistencyModelImg2ImgPipeline: retrieve_timesteps(strength=...), no get_timesteps.
        t_start = 0
        timesteps = sched.timesteps
    else:
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = sched.timesteps[t_start * order :]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(t_start * order)
    gen = torch.Generator().manual_seed(seed)
    RECORDER.generator = torch.Generator().manual_seed(seed + 1)
    original = torch.randn(SHAPE, generator=gen)
    start_noise = torch.randn(SHAPE, generator=gen)
    noised = sched.add_noise(original, start_noise, timesteps[:1].repeat(SHAPE[0]))
    case = {
        "name": name,
        "kind": kind,
        "config": config,
        "num_inference_steps": steps,
        "strength": strength,
        "eta": eta,
        "oracle": use_oracle,
        "timesteps": timesteps_list(sched),
        "init_noise_sigma": init_noise_sigma(sched),
        "begin_index": t_start * order,
        "original": tensors.add(original),
        "start_noise": tensors.add(start_noise),
        "noised": tensors.add(noised),
        "steps": [],
    }
    extra = {"eta": eta} if kind == "ddim" else {}
    latents = noised
    for t in timesteps:
        model_output = torch.randn(SHAPE, generator=gen)
        scaled = sched.scale_model_input(latents, t)
        if use_oracle:
            model_output = oracle(sched, kind, latents, original, t) + 0.3 * model_output
        RECORDER.draws = []
        latents = sched.step(model_output, t, latents, **extra).prev_sample
        assert torch.isfinite(latents).all(), name
        case["steps"].append(
            {
                "t": float(t.item()),
                "model_output": tensors.add(model_output),
                "scaled": tensors.add(scaled),
                "noise": [tensors.add(d) for d in RECORDER.draws],
                "prev": tensors.add(latents),
            }
        )
    return case


def trajectory_cases(tensors):
    cases = []
    seed = 1000
    strengths = [0.3, 0.55, 0.8, 1.0]
    variance_types = ["fixed_small", "fixed_small_log", "fixed_large"]
    etas = [0.0, 0.5, 1.0]
    for kind in ["ddim", "ddpm", "euler-ancestral", "pndm"]:
        preds = ["epsilon", "v_prediction"] + (["sample"] if kind in ("ddim", "ddpm") else [])
        i = 0
        for beta_name, beta in BETAS.items():
            for spacing in SPACINGS:
                for pred in preds:
                    config = {"_class_name": CLASSES[kind].__name__, "num_train_timesteps": 1000}
                    config.update(beta)
                    config.update({"prediction_type": pred, "timestep_spacing": spacing, "steps_offset": i % 2})
                    eta = 0.0
                    if kind in ("ddim", "pndm"):
                        config["set_alpha_to_one"] = (i // 2) % 2 == 1
                    if kind in ("ddim", "ddpm"):
                        config["clip_sample"] = False
                    if kind == "ddim":
                        eta = etas[i % 3]
                    if kind == "ddpm":
                        config["variance_type"] = variance_types[i % 3]
                    if kind == "pndm":
                        config["skip_prk_steps"] = True
                    steps = [10, 25][(i // 3) % 2]
                    strength = strengths[i % 4] if steps == 10 else strengths[i % 2]
                    name = f"{kind}/{beta_name}/{spacing}/{pred}/off{i % 2}/n{steps}/s{strength}"
                    if kind == "ddim":
                        name += f"/eta{eta}"
                    if kind == "ddpm":
                        name += f"/{config['variance_type']}"
                    use_oracle = i % 5 != 4
                    if not use_oracle:
                        name += "/random"
                    cases.append(trajectory(tensors, name, kind, config, steps, strength, eta, seed, use_oracle))
                    seed += 10
                    i += 1

    def special(name, kind, config, steps, strength, eta=0.0, use_oracle=False):
        nonlocal seed
        cases.append(trajectory(tensors, name, kind, config, steps, strength, eta, seed, use_oracle))
        seed += 10

    # Stable Diffusion 1.5's own config, loaded into every scheduler (from_config semantics).
    for kind in FIRST_KINDS:
        special(f"sd15-config/{kind}", kind, dict(SD15), 25, 0.6, 0.3 if kind == "ddim" else 0.0, True)
        special(f"sd15-config-random/{kind}", kind, dict(SD15), 10, 0.8, 1.0 if kind == "ddim" else 0.0)
    # Class defaults: DDIM and DDPM clip x0 to [-1, 1] unless told otherwise.
    special("ddim/default-clip", "ddim", {"_class_name": "DDIMScheduler"}, 10, 0.8, 0.5)
    special("ddim/clip-range-0.5", "ddim", {"clip_sample": True, "clip_sample_range": 0.5, "prediction_type": "sample"}, 10, 1.0)
    special("ddpm/default-clip", "ddpm", {"_class_name": "DDPMScheduler"}, 10, 0.8)
    # PNDM's class default is the Runge-Kutta warm-up (skip_prk_steps=false), leading spacing only.
    for pred, steps, strength, alpha_one, offset in [
        ("epsilon", 10, 1.0, False, 1),
        ("v_prediction", 10, 0.55, True, 0),
        ("epsilon", 25, 0.3, True, 1),
        ("v_prediction", 25, 1.0, False, 0),
    ]:
        config = {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                  "beta_end": 0.012, "prediction_type": pred, "set_alpha_to_one": alpha_one, "steps_offset": offset}
        special(f"pndm-prk/{pred}/n{steps}/s{strength}", "pndm", config, steps, strength)
    # Zero terminal SNR (trailing spacing, v-prediction), as its paper prescribes.
    zsnr = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True,
            "timestep_spacing": "trailing", "prediction_type": "v_prediction", "clip_sample": False}
    special("ddim/zero-snr", "ddim", zsnr, 10, 1.0, 1.0)
    special("ddpm/zero-snr", "ddpm", zsnr, 10, 1.0)
    special("euler-ancestral/zero-snr", "euler-ancestral", zsnr, 10, 0.8)
    special("euler-ancestral/zero-snr-eps", "euler-ancestral", dict(zsnr, prediction_type="epsilon"), 10, 0.55)
    # Custom betas with a 50-step training schedule.
    trained = {"num_train_timesteps": 50, "trained_betas": TRAINED_BETAS, "clip_sample": False, "steps_offset": 1}
    special("ddim/trained-betas", "ddim", trained, 10, 0.8, 0.5)
    special("ddpm/trained-betas", "ddpm", trained, 10, 0.8)
    special("euler-ancestral/trained-betas", "euler-ancestral", trained, 10, 0.8)
    special("pndm/trained-betas", "pndm", dict(trained, skip_prk_steps=True), 10, 0.8)
    # Few steps and odd step counts.
    special("pndm/n3-full", "pndm", dict(SD15), 3, 1.0)
    special("euler-ancestral/n7-linspace", "euler-ancestral", dict(SD15, timestep_spacing="linspace"), 7, 1.0)
    special("ddpm/n7-trailing", "ddpm", dict(SD15, timestep_spacing="trailing"), 7, 0.9)

    # LCM: few steps (1, 2, 4, 8), img2img strengths, the default and a shorter distillation
    # schedule (30 steps: int(30 * 0.3) is 8, one below 9 by float rounding).
    for i in range(16):
        steps = [1, 2, 4, 8][i % 4]
        strength = [1.0, 0.8, 0.5, 0.3][i // 4]
        pred = ["epsilon", "v_prediction"][(i + i // 4) % 2]
        original = [50, 30][(i // 2) % 2]
        config = dict(LCM_SD15, prediction_type=pred, original_inference_steps=original)
        use_oracle = i % 5 != 4
        name = f"lcm/{pred}/orig{original}/n{steps}/s{strength}" + ("" if use_oracle else "/random")
        special(name, "lcm", config, steps, strength, use_oracle=use_oracle)
    special("lcm/sample-prediction", "lcm", dict(LCM_SD15, prediction_type="sample"), 4, 0.6, use_oracle=True)
    special("lcm/clip-sample", "lcm", dict(LCM_SD15, clip_sample=True, clip_sample_range=0.5), 4, 1.0)
    # A small timestep_scaling makes c_skip large enough (0.003 at t = 179) to be checked at 1e-5.
    special("lcm/timestep-scaling-0.05", "lcm", dict(LCM_SD15, timestep_scaling=0.05), 4, 0.7, use_oracle=True)
    special("lcm/trailing-no-alpha-one", "lcm",
            dict(LCM_SD15, timestep_spacing="trailing", set_alpha_to_one=False, steps_offset=0), 3, 0.9,
            use_oracle=True)
    special("lcm/zero-snr", "lcm", dict(LCM_SD15, rescale_betas_zero_snr=True, prediction_type="v_prediction"),
            4, 1.0, use_oracle=True)
    special("lcm/class-defaults", "lcm", {"_class_name": "LCMScheduler"}, 2, 0.5, use_oracle=True)
    special("lcm/trained-betas", "lcm", dict(trained, original_inference_steps=25), 4, 0.8, use_oracle=True)
    special("sd15-config/lcm", "lcm", dict(SD15), 4, 0.6, use_oracle=True)

    # EulerDiscreteScheduler (SDXL base ships it): its defaults only (linear interpolation, the
    # model's own sigmas), the SDXL base file, each prediction type and spacing.
    sdxl_base = {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                 "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
                 "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
                 "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
                 "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False}
    # (Few steps each: the tracked tree is at its size budget.)
    special("euler/sdxl-base/n10/s0.5", "euler", sdxl_base, 10, 0.5, use_oracle=True)
    special("euler/sdxl-base/n5/s0.8/random", "euler", sdxl_base, 5, 0.8)
    special("euler/linspace/v_prediction/n4/s1.0", "euler",
            dict(sdxl_base, timestep_spacing="linspace", prediction_type="v_prediction", steps_offset=0), 4, 1.0,
            use_oracle=True)
    special("euler/trailing/n4/s1.0", "euler", dict(sdxl_base, timestep_spacing="trailing"), 4, 1.0, use_oracle=True)
    special("euler/sample/n5/s0.6", "euler", dict(sdxl_base, prediction_type="sample"), 5, 0.6, use_oracle=True)
    special("euler/zero-snr/n4/s0.75", "euler", dict(zsnr, _class_name="EulerDiscreteScheduler"), 4, 0.75,
            use_oracle=True)
    special("euler/trained-betas/n4/s0.8", "euler", trained, 4, 0.8)
    special("euler/class-defaults/n4/s0.5", "euler", {"_class_name": "EulerDiscreteScheduler"}, 4, 0.5,
            use_oracle=True)
    return cases


def alphas_cumprod_cases():
    configs = []
    for beta in BETAS.values():
        for rescale in (False, True):
            configs.append(dict(beta, rescale_betas_zero_snr=rescale))
    arrays = [DDIMScheduler.from_config(c).alphas_cumprod.numpy().astype(np.float32) for c in configs]
    return configs, np.stack(arrays)


RESOLUTION_CONFIGS = [
    ("sd15", SD15, []),
    ("sd21-ddim-v", {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
                     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                     "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
                     "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}, []),
    ("euler-zsnr", {"_class_name": "EulerAncestralDiscreteScheduler", "beta_schedule": "scaled_linear",
                    "beta_start": 0.00085, "beta_end": 0.012, "timestep_spacing": "trailing",
                    "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, []),
    ("ddpm-large", {"_class_name": "DDPMScheduler", "variance_type": "fixed_large", "clip_sample": True,
                    "clip_sample_range": 2.0, "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace"}, []),
    ("empty", {}, []),
    ("use-default-values", dict(SD15, _use_default_values=["set_alpha_to_one", "steps_offset"]), []),
    # Keys only some classes read: the others must ignore them, as diffusers does.
    ("ddpm-learned-range", {"_class_name": "DDPMScheduler", "variance_type": "learned_range"}, ["ddpm"]),
    ("thresholding", {"thresholding": True, "clip_sample": False}, ["ddim", "ddpm", "lcm"]),
    ("sample-prediction", {"prediction_type": "sample"}, ["euler-ancestral", "pndm"]),
    ("lcm-sd15", LCM_SD15, []),
    ("lcm-custom", {"_class_name": "LCMScheduler", "original_inference_steps": 100, "timestep_scaling": 4.0,
                    "beta_schedule": "linear"}, []),
    ("unknown-class", {"_class_name": "LMSDiscreteScheduler", "beta_schedule": "scaled_linear",
                       "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}, []),
]
RESOLVED_KEYS = [
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
    "timestep_spacing", "steps_offset", "set_alpha_to_one", "clip_sample", "clip_sample_range",
    "rescale_betas_zero_snr", "variance_type", "skip_prk_steps", "thresholding", "original_inference_steps",
    "timestep_scaling",
]


def resolution_cases():
    """How diffusers' from_config resolves a config for each class (absent keys: class defaults)."""
    out = []
    for name, config, boomerang_rejects in RESOLUTION_CONFIGS:
        for kind, cls in CLASSES.items():
            sched = cls.from_config(config)
            # scheduler.config also keeps keys the class ignores; compare only the ones it reads.
            init_keys = inspect.signature(cls.__init__).parameters
            resolved = {k: sched.config[k] for k in RESOLVED_KEYS if k in init_keys}
            try:
                smoke_run(kind, config, 10)
                runs = True
            except Exception:
                runs = False
            out.append({"name": name, "kind": kind, "config": config, "resolved": resolved,
                        "diffusers_runs": runs, "boomerang_rejects": kind in boomerang_rejects})
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "schedulers")
    os.makedirs(out_dir, exist_ok=True)
    tensors = Tensors()
    ac_configs, ac = alphas_cumprod_cases()
    doc = {
        "generator": "tools/make_scheduler_fixtures.py",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
        "shape": list(SHAPE),
        "alphas_cumprod": ac_configs,
        "resolution": resolution_cases(),
        "timesteps": timestep_cases(),
        "trajectories": trajectory_cases(tensors),
    }
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    np.save(os.path.join(out_dir, "tensors.npy"), np.stack(tensors.items))
    np.save(os.path.join(out_dir, "alphas_cumprod.npy"), ac)
    print(f"{len(doc['trajectories'])} trajectories, {len(tensors.items)} tensors, "
          f"{len(doc['timesteps'])} timestep cases, {len(doc['resolution'])} resolution cases")


if __name__ == "__main__":
    main()
