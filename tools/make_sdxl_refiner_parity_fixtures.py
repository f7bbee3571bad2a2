"""Record diffusers' PyTorch StableDiffusionXLImg2ImgPipeline runs of the tiny SDXL refiner as
parity fixtures for tests/sdxl_refiner_parity.rs.

The pipeline is the PyTorch folder tools/make_tiny_sdxl_refiner.py exported (boomerang's cache,
models/tiny-sdxl-refiner-diffusers; run that script first). As tools/make_sdxl_parity_fixtures.py
does: every random tensor diffusers draws goes through tools/make_parity_fixtures.py's NoiseTap and
is saved in call order (noise_NNN.npy); each case is run a second time replaying the saved noise
and must agree bit for bit; index.json records the largest difference between the PyTorch run and
the same run with the UNet replaced by the ONNX graph (the floor for the test's tolerance).

The fixtures are kept under 60 kB (the tracked tree's size budget): 32 px images (4x4 latents), 5
steps, two cases, and the two largest arrays, the UNet's `encoder_hidden_states`
(prompt_embeds.npy) and the decoded image (decoded.npy), only for the first case; the second is
checked through its pooled embeddings, time ids and every step's latents.

Writes tests/fixtures/sdxl_refiner_parity/<case>/ (.npy float32 little-endian + case.json),
inputs/image.npy (the init image as fed to the VAE encoder) and index.json.

Run from the repository root with the model venv (tools/requirements-models.txt):
  HF_HUB_OFFLINE=1 ~/.cache/boomerang/models-venv/*/bin/python tools/make_sdxl_refiner_parity_fixtures.py
"""
import json
import os
import shutil
import sys
import zlib

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionXLImg2ImgPipeline  # noqa: F401 (loads the module NoiseTap patches)
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_parity_fixtures as mpf  # noqa: E402
import make_tiny_sdxl_refiner  # noqa: E402

STEPS = 5
IMAGE_SIZE = 32
PERSON = "a photo of a person"
# What the refiner pipeline uses unless told otherwise; recorded so the test checks the time ids.
AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5

# name, strength, guidance, prompt, negative prompt (None: not given, so "" is encoded, since the
# refiner has force_zeros_for_empty_prompt false), whether to keep the two large arrays
CASES = [
    ("s0.6_g5_negative", 0.6, 5.0, PERSON, "blurry", True),
    ("s0.8_g7.5_empty", 0.8, 7.5, PERSON, None, False),
]
LARGE = ("prompt_embeds", "decoded")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    root = os.path.abspath(".")
    model = make_tiny_sdxl_refiner.MODEL
    onnx_dir, torch_dir = model.output_dirs()
    if not model.up_to_date():
        sys.exit("make_sdxl_refiner_parity_fixtures: run tools/make_tiny_sdxl_refiner.py first")
    out_root = os.path.join(root, "tests", "fixtures", "sdxl_refiner_parity")
    image = Image.open(os.path.join(root, "examples", "astronaut.png")).convert("RGB")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)

    tap = mpf.NoiseTap()
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(torch_dir)
    assert pipe.text_encoder is None and pipe.config.requires_aesthetics_score
    pipe.set_progress_bar_config(disable=True)
    record = {}

    def unet_in(module, args, kwargs):
        record.setdefault("unet", []).append((
            kwargs["encoder_hidden_states"].detach().numpy().copy(),
            kwargs["added_cond_kwargs"]["text_embeds"].detach().numpy().copy(),
            kwargs["added_cond_kwargs"]["time_ids"].detach().numpy().copy(),
        ))

    pipe.unet.register_forward_pre_hook(unet_in, with_kwargs=True)
    encode = pipe.vae.encode

    def vae_encode(x, *a, **k):
        record["image"] = x.detach().numpy().copy()
        return encode(x, *a, **k)

    pipe.vae.encode = vae_encode

    def callback(p, i, t, kwargs):
        record.setdefault("latents", []).append(kwargs["latents"].detach().numpy().copy())
        record.setdefault("t", []).append(float(t))
        return {}

    def run(case, replay=None):
        name, strength, guidance, prompt, negative, _ = case
        record.clear()
        tap.reset(torch.Generator().manual_seed(zlib.crc32(name.encode())), replay)
        out = pipe(prompt=prompt, negative_prompt=negative, image=image, strength=strength,
                   num_inference_steps=STEPS, guidance_scale=guidance, output_type="np",
                   aesthetic_score=AESTHETIC_SCORE,
                   negative_aesthetic_score=NEGATIVE_AESTHETIC_SCORE,
                   callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
        hidden, pooled, time_ids = record["unet"][0]
        for h, p, t in record["unet"]:
            assert np.array_equal(h, hidden) and np.array_equal(p, pooled) and np.array_equal(t, time_ids)
        arrays = {"prompt_embeds": hidden, "text_embeds": pooled, "time_ids": time_ids,
                  "decoded": np.ascontiguousarray(out.images.transpose(0, 3, 1, 2))}
        for i, lat in enumerate(record["latents"]):
            arrays[f"latents_{i:03d}"] = lat
        calls = []
        for i, (purpose, shape, noise) in enumerate(tap.calls):
            arrays[f"noise_{i:03d}"] = noise
            calls.append({"file": f"noise_{i:03d}.npy", "purpose": purpose})
        meta = {"strength": strength, "guidance_scale": guidance, "prompt": prompt,
                "negative_prompt": negative, "num_inference_steps": STEPS,
                "aesthetic_score": AESTHETIC_SCORE,
                "negative_aesthetic_score": NEGATIVE_AESTHETIC_SCORE,
                "timesteps_iterated": record["t"], "noise_calls": calls,
                "scheduler_class": type(pipe.scheduler).__name__}
        return arrays, meta, record["image"]

    shutil.rmtree(out_root, ignore_errors=True)
    os.makedirs(os.path.join(out_root, "inputs"))
    index = []
    for case in CASES:
        arrays, meta, fed = run(case)
        case_dir = os.path.join(out_root, case[0])
        os.makedirs(case_dir)
        image_path = os.path.join(out_root, "inputs", "image.npy")
        if os.path.exists(image_path):
            assert np.array_equal(np.load(image_path), fed)
        else:
            mpf.save_npy(image_path, fed)
        for k, v in arrays.items():
            if k in LARGE and not case[5]:
                continue
            mpf.save_npy(os.path.join(case_dir, k + ".npy"), v.astype(np.float32))
        with open(os.path.join(case_dir, "case.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
        replay = [np.load(os.path.join(case_dir, c["file"])) for c in meta["noise_calls"]]
        arrays2, meta2, _ = run(case, replay)
        assert meta2 == meta
        for k, v in arrays2.items():
            if not np.array_equal(v, arrays[k]):
                sys.exit(f"{case[0]}/{k}: replaying the recorded noise did not reproduce it")
        index.append({"case": case[0], "steps": len(meta["timesteps_iterated"])})
        print(f"{case[0]}: {len(meta['timesteps_iterated'])} steps, replay bit-identical")

    # The floor for the tolerance: the same runs with the UNet swapped for the ONNX graph.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(onnx_dir, "unet", "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])

    def unet_forward(sample, timestep, encoder_hidden_states, added_cond_kwargs=None, **_):
        t = np.asarray(timestep.item() if isinstance(timestep, torch.Tensor) else timestep, dtype=np.float32)
        feed = {"sample": sample.numpy(), "timestep": t,
                "encoder_hidden_states": encoder_hidden_states.numpy(),
                "text_embeds": added_cond_kwargs["text_embeds"].numpy(),
                "time_ids": added_cond_kwargs["time_ids"].numpy()}
        return (torch.from_numpy(sess.run(["out_sample"], feed)[0]),)

    pipe.unet.forward = unet_forward
    for entry, case in zip(index, CASES):
        case_dir = os.path.join(out_root, case[0])
        with open(os.path.join(case_dir, "case.json"), encoding="utf-8") as f:
            meta = json.load(f)
        replay = [np.load(os.path.join(case_dir, c["file"])) for c in meta["noise_calls"]]
        arrays, _, _ = run(case, replay)
        last = len(meta["timesteps_iterated"]) - 1
        want = np.load(os.path.join(case_dir, f"latents_{last:03d}.npy"))
        entry["onnx_unet_final_latents_max_abs_diff"] = float(np.abs(arrays[f"latents_{last:03d}"] - want).max())
        print(case[0], "ONNX UNet vs torch:", entry["onnx_unet_final_latents_max_abs_diff"])
    with open(os.path.join(out_root, "index.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_sdxl_refiner_parity_fixtures.py", "image_size": IMAGE_SIZE,
                   # the exported model's files (its SHA256SUMS but PROVENANCE, which names the
                   # script's own hash): the model these fixtures hold for
                   "model_files": model.model_files(),
                   "cases": index}, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
