"""Tiny ONNX graphs with wrong signatures, for the model-loading error tests.

unet_renamed_input.onnx: a UNet stand-in whose first input is `latents` instead of `sample`.
unet_double_sample.onnx: a UNet stand-in whose `sample` is float64, an element type the model
check refuses (it accepts float32 and float16).
Deterministic (no randomness, fixed producer fields). Run: python tools/make_broken_graphs.py
"""
import os

import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "broken")


def unet_renamed_input():
    latents = helper.make_tensor_value_info("latents", TensorProto.FLOAT, ["batch", 4, "h", "w"])
    timestep = helper.make_tensor_value_info("timestep", TensorProto.FLOAT, [])
    hidden = helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, ["batch", 77, 32])
    out = helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, ["batch", 4, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["latents"], ["out_sample"])],
                              "unet_renamed_input", [latents, timestep, hidden], [out])
    model = helper.make_model(graph, producer_name="boomerang-tools", opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def unet_double_sample():
    sample = helper.make_tensor_value_info("sample", TensorProto.DOUBLE, ["batch", 4, "h", "w"])
    timestep = helper.make_tensor_value_info("timestep", TensorProto.FLOAT, [])
    hidden = helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, ["batch", 77, 32])
    out = helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, ["batch", 4, "h", "w"])
    cast = helper.make_node("Cast", ["sample"], ["out_sample"], to=TensorProto.FLOAT)
    graph = helper.make_graph([cast], "unet_double_sample", [sample, timestep, hidden], [out])
    model = helper.make_model(graph, producer_name="boomerang-tools", opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    onnx.save(unet_renamed_input(), os.path.join(OUT, "unet_renamed_input.onnx"))
    onnx.save(unet_double_sample(), os.path.join(OUT, "unet_double_sample.onnx"))
