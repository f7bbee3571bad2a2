#!/usr/bin/env python3
"""Make tiny-lcm: a random-weight latent consistency model (diffusers init, seeded) in the layout
`optimum-cli export onnx --task image-to-image` gives an LCM-distilled Stable Diffusion (such as
SimianLuo/LCM_Dreamshaper_v7): tiny-sd's text encoder, tokenizer and VAE, a UNet with
`time_cond_proj_dim` (so its graph has the extra input `timestep_cond`, the guidance-scale
embedding) and an LCMScheduler. diffusers' LatentConsistencyModelImg2ImgPipeline is its reference
(tools/make_lcm_parity_fixtures.py, tests/lcm_parity.rs).

Not committed (the tracked tree's size budget): it goes to boomerang's cache, models/tiny-lcm (the
ONNX export with SHA256SUMS and PROVENANCE) and models/tiny-lcm-diffusers (the PyTorch pipeline
that was exported). A no-op, needing only the standard library, when that output matches its
SHA256SUMS and PROVENANCE; otherwise it needs the model venv of tools/requirements-models.txt,
found or made as tools/cached_model.py says.

usage: python3 tools/make_tiny_lcm.py [--wheel open_clip_torch-3.3.0-py3-none-any.whl]
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cached_model  # noqa: E402

MODEL = cached_model.CachedModel("tiny-lcm", os.path.abspath(__file__), sources=["make_tiny_sd.py"])
SEED = 200
# The guidance-scale embedding's width (LCM_Dreamshaper_v7 has 256).
TIME_COND_PROJ_DIM = 32

# LCM_Dreamshaper_v7's scheduler_config.json, with SD 1.5's betas.
SCHEDULER_CONFIG = {
    "_class_name": "LCMScheduler",
    "_diffusers_version": "0.39.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "thresholding": False,
    "timestep_scaling": 10.0,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def build_pipeline(out_dir, wheel):
    """Save tiny-lcm as a diffusers LatentConsistencyModelImg2ImgPipeline folder at out_dir."""
    import torch
    from diffusers import LatentConsistencyModelImg2ImgPipeline, LCMScheduler, UNet2DConditionModel

    import make_tiny_sd

    text_encoder, _, vae = make_tiny_sd.build_models()
    torch.manual_seed(SEED)
    # tiny-sd's UNet plus the guidance embedding.
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=32, time_cond_proj_dim=TIME_COND_PROJ_DIM).eval()
    with tempfile.TemporaryDirectory(prefix="tiny-lcm-bpe-") as work:
        tokenizer = make_tiny_sd.build_tokenizer(work, wheel)
        pipe = LatentConsistencyModelImg2ImgPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=LCMScheduler.from_config(SCHEDULER_CONFIG), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
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
