"""Build the tiny random-weight Stable Diffusion test pipeline and export it to ONNX.

Outputs (committed):
  models/tiny-sd/        optimum ONNX layout (text_encoder, unet, vae_encoder, vae_decoder, tokenizer,
                         scheduler), SD 1.x style PNDM scheduler config, prediction_type epsilon.
  models/tiny-sd-vpred/  the same graphs (relative directory symlinks into ../tiny-sd) with a
                         scheduler config whose prediction_type is v_prediction.

The weights are random (torch.manual_seed), so the images are noise: the pipeline exists to test
the data flow (shapes, IO names, scheduler arithmetic, parity with diffusers), not image quality.
Every rerun produces byte-identical files (check with `sha256sum -c SHA256SUMS` in each folder).

Setup (CPU-only torch is enough; versions pinned in tools/requirements-models.txt):
  python3.11 -m venv /tmp/sdvenv
  /tmp/sdvenv/bin/pip install torch==2.15.0 --index-url https://download.pytorch.org/whl/cpu
  /tmp/sdvenv/bin/pip install -r tools/requirements-models.txt
Run from the repository root:
  HF_HUB_OFFLINE=1 /tmp/sdvenv/bin/python tools/make_tiny_sd.py [--wheel open_clip_torch-3.3.0-py3-none-any.whl]

The CLIP BPE vocabulary comes from tools/clip_vocab.py (open_clip_torch==3.3.0 wheel, downloaded
with pip unless --wheel points at a local copy). tools/make_parity_fixtures.py imports
`build_diffusers_pipeline` from here to recreate the identical PyTorch pipeline.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_vocab  # noqa: E402

SEED = 0
ONNX_OPSET = 18

# Exactly the keys of Stable Diffusion 1.5's scheduler/scheduler_config.json, plus an explicit
# prediction_type. Keys such as timestep_spacing are deliberately absent, as in SD 1.5: each
# scheduler class then falls back to its own default (leading for DDIM/DDPM/PNDM, linspace for
# EulerAncestralDiscrete), which is what a consumer of real SD 1.5 exports must reproduce.
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.39.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

# Directories of models/tiny-sd that models/tiny-sd-vpred links to instead of copying.
SHARED_DIRS = ["text_encoder", "tokenizer", "unet", "vae_decoder", "vae_encoder"]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def scheduler_config(prediction_type):
    return dict(SCHEDULER_CONFIG, prediction_type=prediction_type)


def build_tokenizer(work, wheel):
    vocab_dir = os.path.join(work, "clip-bpe")
    clip_vocab.build(vocab_dir, wheel)
    return CLIPTokenizer(
        os.path.join(vocab_dir, "vocab.json"),
        os.path.join(vocab_dir, "merges.txt"),
        pad_token="<|endoftext|>",
        model_max_length=77,
    )


def build_models():
    """The three networks with seeded random weights (same values on every call)."""
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=32,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.18215,
    )
    return text_encoder.eval(), unet.eval(), vae.eval()


def build_diffusers_pipeline(out_dir, wheel=None, prediction_type="epsilon"):
    """Save the tiny pipeline as a diffusers StableDiffusionPipeline folder at out_dir."""
    with tempfile.TemporaryDirectory(prefix="tiny-sd-bpe-") as work:
        tokenizer = build_tokenizer(work, wheel)
        text_encoder, unet, vae = build_models()
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=PNDMScheduler.from_config(scheduler_config(prediction_type)),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(out_dir)
    # save_pretrained writes every PNDM key; keep SD 1.5's sparse file instead (see SCHEDULER_CONFIG).
    write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), scheduler_config(prediction_type))
    return out_dir


def regular_files(root):
    """Paths of regular files under root (following directory symlinks), sorted, relative."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel != "SHA256SUMS":
                found.append(rel)
    return sorted(found)


def write_sha256sums(root):
    lines = []
    for rel in regular_files(root):
        with open(os.path.join(root, rel), "rb") as f:
            lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {rel}\n")
    with open(os.path.join(root, "SHA256SUMS"), "w", encoding="utf-8") as f:
        f.writelines(lines)


README = """# tiny-sd{suffix}: a random-weight Stable Diffusion 1.x pipeline for tests

Generated by `tools/make_tiny_sd.py` (pinned versions in `tools/requirements-models.txt`); a rerun
produces byte-identical files, listed with their sha256 in `SHA256SUMS` (`sha256sum -c SHA256SUMS`).

**The weights are random** (`torch.manual_seed`). Images that come out are noise. The folder
exists to exercise the data flow of an SD 1.x img2img pipeline in tests: tokenizer, ONNX IO names
and shapes, the VAE latent factor of 8, scheduler arithmetic, parity with diffusers
(`tests/fixtures/parity/`).

Layout: the `optimum-cli export onnx --task image-to-image --opset {opset}` output of a diffusers
`StableDiffusionPipeline` (safety checker and feature extractor omitted).

| graph | inputs | outputs |
|---|---|---|
| text_encoder/model.onnx | input_ids int64 [batch, sequence] (77 in use) | last_hidden_state f32 [batch, sequence, 32], pooler_output f32 [batch, 32] |
| unet/model.onnx | sample f32 [batch, 4, h, w], timestep f32 [] (scalar), encoder_hidden_states f32 [batch, sequence, 32] | out_sample f32 [batch, 4, h, w] |
| vae_encoder/model.onnx | sample f32 [batch, 3, H, W] in [-1, 1] | latent_parameters f32 [batch, 8, H/8, W/8]: channels 0-3 mean, 4-7 logvar (diffusers clamps logvar to [-30, 20] before use) |
| vae_decoder/model.onnx | latent_sample f32 [batch, 4, h, w] (unscaled) | sample f32 [batch, 3, 8h, 8w] in about [-1, 1] |

Configs: UNet2DConditionModel (sample_size 16, block_out_channels (32, 64), cross-attention
dimension 32); AutoencoderKL (4 blocks, channels (8, 16, 32, 32), latent_channels 4,
scaling_factor 0.18215, so 128 px images give 16x16 latents); CLIPTextModel (hidden 32, 2 layers,
vocabulary 49408, 77 positions); CLIPTokenizer with CLIP's real BPE vocabulary
(`tools/clip_vocab.py`). The scheduler config has exactly the keys of SD 1.5's PNDM
`scheduler_config.json` plus `prediction_type` = `{prediction_type}`; `timestep_spacing` is absent
on purpose, so each scheduler class uses its own default.
{vpred_note}
License: the weights are random numbers and the configs are ours (MIT OR Apache-2.0, like this
repository). The BPE vocabulary and merges in `tokenizer/` are derived from OpenAI CLIP's
`bpe_simple_vocab_16e6.txt.gz` as shipped in the PyPI wheel `open_clip_torch==3.3.0` (MIT).
"""

VPRED_NOTE = """
This folder differs from `../tiny-sd` only in `scheduler/scheduler_config.json`
(`prediction_type` = `v_prediction`, as SD 2.x 768 px models use). The graph and tokenizer
directories are relative symlinks into `../tiny-sd`; `SHA256SUMS` lists files through them.
"""


def drop_temp_paths(root):
    """Remove `_name_or_path` (the temporary build folder) from diffusers configs for reproducible bytes."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if not name.endswith(".json"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            if isinstance(config, dict) and config.pop("_name_or_path", None) is not None:
                write_json(path, config)


def export_onnx(diffusers_dir, out_dir):
    optimum_cli = os.path.join(os.path.dirname(sys.executable), "optimum-cli")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.check_call(
        [optimum_cli, "export", "onnx", "--model", diffusers_dir, "--task", "image-to-image",
         "--opset", str(ONNX_OPSET), out_dir],
        env=env,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="local open_clip_torch-3.3.0 wheel (else pip downloads it)")
    ap.add_argument("--out", default="models", help="parent of tiny-sd/ and tiny-sd-vpred/")
    args = ap.parse_args()

    sd = os.path.join(args.out, "tiny-sd")
    vpred = os.path.join(args.out, "tiny-sd-vpred")
    with tempfile.TemporaryDirectory(prefix="tiny-sd-") as work:
        diffusers_dir = build_diffusers_pipeline(os.path.join(work, "diffusers"), args.wheel)
        onnx_dir = os.path.join(work, "onnx")
        export_onnx(diffusers_dir, onnx_dir)
        drop_temp_paths(onnx_dir)
        # optimum re-saves the scheduler with all PNDM keys; restore the SD 1.5-style file.
        write_json(os.path.join(onnx_dir, "scheduler", "scheduler_config.json"), scheduler_config("epsilon"))
        shutil.rmtree(sd, ignore_errors=True)
        shutil.copytree(onnx_dir, sd)

    with open(os.path.join(sd, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.format(suffix="", opset=ONNX_OPSET, prediction_type="epsilon", vpred_note=""))
    write_sha256sums(sd)

    shutil.rmtree(vpred, ignore_errors=True)
    os.makedirs(os.path.join(vpred, "scheduler"))
    shutil.copyfile(os.path.join(sd, "model_index.json"), os.path.join(vpred, "model_index.json"))
    write_json(os.path.join(vpred, "scheduler", "scheduler_config.json"), scheduler_config("v_prediction"))
    linked = sorted(d for d in os.listdir(sd) if os.path.isdir(os.path.join(sd, d)) and d != "scheduler")
    for d in linked:
        os.symlink(os.path.join("..", "tiny-sd", d), os.path.join(vpred, d))
    with open(os.path.join(vpred, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.format(suffix="-vpred", opset=ONNX_OPSET, prediction_type="v_prediction",
                              vpred_note=VPRED_NOTE))
    write_sha256sums(vpred)


if __name__ == "__main__":
    main()
