"""Tiny ONNX graphs with wrong signatures, for the model-loading error tests.

unet_renamed_input.onnx: a UNet stand-in whose first input is `latents` instead of `sample`.
unet_double_sample.onnx: a UNet stand-in whose `sample` is float64, an element type the model
check refuses (it accepts float32 and float16).
embedder_white_only.onnx: a whole-image "embedder" whose 8-d embedding is relu(mean pixel - 0.95)
in every component: non-zero for a near-white picture, the zero vector (no direction, so no cosine
distance) for anything darker, such as a sample of the random tiny model. For the test that an
output the certifier cannot analyze is an error row, not the end of the run.
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


def embedder_white_only():
    pixels = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])
    embedding = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 8])
    constants = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("flat", TensorProto.INT64, [2], [-1, 1]),
        helper.make_tensor("white", TensorProto.FLOAT, [], [0.95]),
        helper.make_tensor("ones", TensorProto.FLOAT, [1, 8], [1.0] * 8),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=1),
        helper.make_node("Reshape", ["mean", "flat"], ["mean_flat"]),
        helper.make_node("Sub", ["mean_flat", "white"], ["above"]),
        helper.make_node("Relu", ["above"], ["level"]),
        helper.make_node("Mul", ["level", "ones"], ["embedding"]),
    ]
    graph = helper.make_graph(nodes, "embedder_white_only", [pixels], [embedding], initializer=constants)
    model = helper.make_model(graph, producer_name="boomerang-tools", opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    onnx.save(unet_renamed_input(), os.path.join(OUT, "unet_renamed_input.onnx"))
    onnx.save(unet_double_sample(), os.path.join(OUT, "unet_double_sample.onnx"))
    onnx.save(embedder_white_only(), os.path.join(OUT, "embedder_white_only.onnx"))
