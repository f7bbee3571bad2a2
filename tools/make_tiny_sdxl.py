#!/usr/bin/env python3
"""Make tiny-sdxl: a random-weight Stable Diffusion XL pipeline (diffusers init, seeded) exported
with optimum (`optimum-cli export onnx --task image-to-image`) in the SDXL layout: text_encoder
(CLIPTextModel), text_encoder_2 (CLIPTextModelWithProjection), tokenizer, tokenizer_2, unet (extra
inputs `text_embeds`, `time_ids`), vae_encoder, vae_decoder, scheduler.

Not committed (two text encoders with CLIP's 49408-token vocabulary are ~13 MB, over the tracked
tree's size budget): the output goes to boomerang's cache, $BOOMERANG_CACHE_DIR, else
$XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang, under models/tiny-sdxl (the ONNX export, with
SHA256SUMS as `boomerang manifest --write` writes it and a PROVENANCE file) and
models/tiny-sdxl-diffusers (the PyTorch pipeline that was exported, for
tools/make_sdxl_parity_fixtures.py).

When the output is there, its files match its SHA256SUMS and its PROVENANCE names this script,
tools/make_tiny_sd.py (tokenizer, helpers), tools/cached_model.py and tools/requirements-models.txt,
this is a no-op that needs only the standard library. Otherwise it needs the model venv of
tools/requirements-models.txt (torch, diffusers, transformers, optimum-onnx), found or made as
tools/cached_model.py says (about 6 GiB with torch's CUDA wheels). The output is replaced
atomically.

usage: python3 tools/make_tiny_sdxl.py [--wheel open_clip_torch-3.3.0-py3-none-any.whl]
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cached_model  # noqa: E402

MODEL = cached_model.CachedModel("tiny-sdxl", os.path.abspath(__file__), sources=["make_tiny_sd.py"])
SEED = 100

# SDXL base's scheduler keys with DDIM rather than its EulerDiscreteScheduler: the parity fixtures
# were recorded with DDIM (Euler has its own, tests/scheduler_parity.rs).
SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.39.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def text_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1, **extra)


def build_pipeline(out_dir, wheel):
    """Save the tiny SDXL as a diffusers StableDiffusionXLImg2ImgPipeline folder at out_dir."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionXLImg2ImgPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    import make_tiny_sd

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(text_config()).eval()
    torch.manual_seed(SEED + 1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config()).eval()
    torch.manual_seed(SEED + 2)
    # diffusers' own SDXL test UNet, base variant: time_ids has 6 entries of 8 features each, plus
    # the pooled text embedding (32): projection_class_embeddings_input_dim = 6 * 8 + 32.
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=32).eval()
    torch.manual_seed(SEED + 3)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 32, 32),
        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=128,
        scaling_factor=0.13025).eval()
    with tempfile.TemporaryDirectory(prefix="tiny-sdxl-bpe-") as work:
        tokenizer = make_tiny_sd.build_tokenizer(work, wheel)
        vocab_dir = os.path.join(work, "clip-bpe")
        # SDXL's second tokenizer pads with `!` (id 0), as OpenCLIP's does.
        tokenizer_2 = CLIPTokenizer(os.path.join(vocab_dir, "vocab.json"),
                                    os.path.join(vocab_dir, "merges.txt"), pad_token="!",
                                    model_max_length=77)
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=unet, scheduler=DDIMScheduler.from_config(SCHEDULER_CONFIG),
            requires_aesthetics_score=False, force_zeros_for_empty_prompt=True)
        pipe.save_pretrained(out_dir)
    make_tiny_sd.write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)


def make(onnx_out, torch_out, wheel):
    import make_tiny_sd

    build_pipeline(torch_out, wheel)
    make_tiny_sd.drop_temp_paths(torch_out)
    make_tiny_sd.export_onnx(torch_out, onnx_out)
    make_tiny_sd.drop_temp_paths(onnx_out)
    make_tiny_sd.write_json(os.path.join(onnx_out, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="local open_clip_torch-3.3.0 wheel (else pip downloads it)")
    args = ap.parse_args()
    if MODEL.up_to_date():
        return
    MODEL.ensure_model_packages()
    MODEL.make(lambda onnx_out, torch_out: make(onnx_out, torch_out, args.wheel))


if __name__ == "__main__":
    main()
