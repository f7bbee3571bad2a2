#!/usr/bin/env python3
"""ONNX Runtime's Stable Diffusion optimizer, as
`python -m onnxruntime.transformers.models.stable_diffusion.optimize_pipeline` (same arguments),
made to run with numpy >= 2.4 (the GPU machine has 2.5).

onnxruntime 1.30 and 1.31 read a UNet attention's head count with int() on a one-element array
(fusion_attention_unet.get_num_heads, PyTorch 2 graphs), which numpy 2.4 turned from a deprecation
into a TypeError, so the fusion stops. This takes the element instead; everything else is
onnxruntime's own code.
"""
import sys

import numpy as np
from onnxruntime.transformers.models.stable_diffusion import optimize_pipeline

# onnxruntime.transformers puts its own folder on sys.path and its modules import each other by
# that top-level name, so this is the class the optimizer uses.
import fusion_attention_unet  # noqa: E402

Fusion = fusion_attention_unet.FusionAttentionUnet
original_get_num_heads = Fusion.get_num_heads


def get_num_heads(self, reshape_q, is_torch2=False):
    if not is_torch2:
        return original_get_num_heads(self, reshape_q, is_torch2)
    # The shape a PyTorch 2 graph reshapes Q to is Concat(batch, sequence, heads, head size).
    concat = self.model.get_parent(reshape_q, 1)
    if concat is not None and concat.op_type == "Concat" and len(concat.input) == 4:
        heads = self.model.get_constant_value(concat.input[2])
        if isinstance(heads, np.ndarray) and heads.shape == (1,) and int(heads[0]) > 0:
            return int(heads[0])
    return 0


Fusion.get_num_heads = get_num_heads

if __name__ == "__main__":
    optimize_pipeline.main(sys.argv[1:])
