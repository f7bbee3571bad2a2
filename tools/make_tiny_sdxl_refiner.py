#!/usr/bin/env python3
"""Make tiny-sdxl-refiner: a random-weight Stable Diffusion XL refiner (diffusers init, seeded) in
the layout `optimum-cli export onnx --task image-to-image` gives an SDXL refiner (such as
stabilityai/stable-diffusion-xl-refiner-1.0): only the second text encoder (text_encoder_2,
CLIPTextModelWithProjection, and tokenizer_2; no text_encoder/ or tokenizer/), a UNet whose
`time_ids` are the 5 aesthetic-score entries, vae_encoder, vae_decoder, scheduler, and
`requires_aesthetics_score: true` in model_index.json. diffusers' StableDiffusionXLImg2ImgPipeline
is its reference (tools/make_sdxl_refiner_parity_fixtures.py, tests/sdxl_refiner_parity.rs).

Not committed (the tracked tree's size budget): it goes to boomerang's cache,
models/tiny-sdxl-refiner (the ONNX export with SHA256SUMS and PROVENANCE) and
models/tiny-sdxl-refiner-diffusers (the PyTorch pipeline that was exported). A no-op, needing only
the standard library, when that output matches its SHA256SUMS and PROVENANCE; otherwise it needs
the model venv of tools/requirements-models.txt, found or made as tools/cached_model.py says.

usage: python3 tools/make_tiny_sdxl_refiner.py [--wheel open_clip_torch-3.3.0-py3-none-any.whl]
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cached_model  # noqa: E402

MODEL = cached_model.CachedModel("tiny-sdxl-refiner", os.path.abspath(__file__),
                                 sources=["make_tiny_sd.py", "make_tiny_sdxl.py"])
SEED = 300
# The aesthetic-score time ids: original size (2), crop top-left (2), aesthetic score (1).
TIME_IDS = 5
ADDITION_TIME_EMBED_DIM = 8
PROJECTION_DIM = 32


def build_pipeline(out_dir, wheel):
    """Save the tiny refiner as a diffusers StableDiffusionXLImg2ImgPipeline folder at out_dir."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionXLImg2ImgPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    import make_tiny_sd
    import make_tiny_sdxl

    torch.manual_seed(SEED)
    text_encoder_2 = CLIPTextModelWithProjection(make_tiny_sdxl.text_config()).eval()
    torch.manual_seed(SEED + 1)
    # tiny-sdxl's UNet with the refiner's conditioning: cross-attention on encoder 2's hidden
    # states alone (32 wide) and an add embedding of 5 time ids plus the pooled embedding.
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=TIME_IDS * ADDITION_TIME_EMBED_DIM + PROJECTION_DIM,
        cross_attention_dim=32, norm_num_groups=32).eval()
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 32, 32),
        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=128,
        scaling_factor=0.13025).eval()
    with tempfile.TemporaryDirectory(prefix="tiny-sdxl-refiner-bpe-") as work:
        make_tiny_sd.build_tokenizer(work, wheel)
        vocab_dir = os.path.join(work, "clip-bpe")
        # As SDXL's second tokenizer: pads with `!` (id 0), as OpenCLIP's does.
        tokenizer_2 = CLIPTokenizer(os.path.join(vocab_dir, "vocab.json"),
                                    os.path.join(vocab_dir, "merges.txt"), pad_token="!",
                                    model_max_length=77)
        # The refiner release's flags: aesthetic-score time ids, and an absent negative prompt is
        # encoded as "" rather than zeros.
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None,
            tokenizer_2=tokenizer_2, unet=unet,
            scheduler=DDIMScheduler.from_config(make_tiny_sdxl.SCHEDULER_CONFIG),
            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
        pipe.save_pretrained(out_dir)
    make_tiny_sd.write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"),
                            make_tiny_sdxl.SCHEDULER_CONFIG)


def make(onnx_out, torch_out, wheel):
    import make_tiny_sd
    import make_tiny_sdxl

    build_pipeline(torch_out, wheel)
    make_tiny_sd.drop_temp_paths(torch_out)
    make_tiny_sd.export_onnx(torch_out, onnx_out)
    make_tiny_sd.drop_temp_paths(onnx_out)
    make_tiny_sd.write_json(os.path.join(onnx_out, "scheduler", "scheduler_config.json"),
                            make_tiny_sdxl.SCHEDULER_CONFIG)


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
