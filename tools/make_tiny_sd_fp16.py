#!/usr/bin/env python3
"""Make tiny-sd-fp16: the committed models/tiny-sd with float16 weights and float16 graph IO, and
an int64 UNet `timestep`, for tests/fp16.rs (the element-type conversions at the graph boundary).

Each graph goes through onnxconverter-common's `convert_float_to_float16(keep_io_types=False)`, so
every float input and output becomes float16 (ONNX Runtime's CPU EP inserts casts around the ops
that have no float16 kernel). The UNet's `timestep` then becomes an int64 input followed by a Cast
to float16, as exports with an integer timestep have it. Tokenizer, scheduler, configs and
model_index.json are copied (not the README, which describes the float32 graphs); SHA256SUMS is
written as `boomerang manifest --write` writes it, plus a PROVENANCE file.

Not committed (it would push the tracked tree over its size budget): the output goes to boomerang's
cache, $BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang (the same
choice as `boomerang fetch-onnxruntime` and tools/fetch_models.py), under models/tiny-sd-fp16.

When the output is already there, its files match its SHA256SUMS and its PROVENANCE names the
current source manifest, this script and its requirements, this is a no-op that needs nothing but
the standard library. Otherwise it makes its own venv in the cache from
tools/requirements-fp16.txt, reruns itself there and replaces the output atomically.

usage: python3 tools/make_tiny_sd_fp16.py
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_cache  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "models", "tiny-sd")
REQUIREMENTS = os.path.join(ROOT, "tools", "requirements-fp16.txt")
GRAPHS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")
MANIFEST = "SHA256SUMS"
PROVENANCE = "PROVENANCE"


def output_dir():
    return os.path.join(venv_cache.cache_root("make_tiny_sd_fp16"), "models", "tiny-sd-fp16")


def provenance_text():
    """Pins what the output was made from, so a changed source, script or requirement remakes it."""
    return (
        "made by tools/make_tiny_sd_fp16.py from models/tiny-sd\n"
        f"models/tiny-sd/SHA256SUMS {venv_cache.sha256_file(os.path.join(SOURCE, MANIFEST))}\n"
        f"tools/make_tiny_sd_fp16.py {venv_cache.sha256_file(os.path.abspath(__file__))}\n"
        f"tools/requirements-fp16.txt {venv_cache.sha256_file(REQUIREMENTS)}\n"
    )


def up_to_date(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            recorded = f.read()
        with open(os.path.join(folder, PROVENANCE)) as f:
            provenance = f.read()
    except OSError:
        return False
    return provenance == provenance_text() and recorded == venv_cache.manifest_text(folder)


def int64_timestep(model):
    """Makes the float16 `timestep` input int64, cast back to float16 before its first use."""
    from onnx import TensorProto, helper

    graph = model.graph
    (port,) = [i for i in graph.input if i.name == "timestep"]
    port.type.tensor_type.elem_type = TensorProto.INT64
    cast_out = "timestep_float16"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == "timestep":
                node.input[k] = cast_out
    cast = helper.make_node("Cast", ["timestep"], [cast_out], name="timestep_to_float16",
                            to=TensorProto.FLOAT16)
    graph.node.insert(0, cast)


def float16_casts(model, original):
    """Retargets the graph's own Casts to float32 at float16: the converter retypes their outputs
    (and so their consumers) but leaves the `to` attribute, a graph ONNX Runtime refuses to load.
    Only Casts of the original graph: the ones the converter adds around float32-only ops must
    stay as they are."""
    from onnx import TensorProto

    own = {n.name for n in original.graph.node
           if n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT for a in n.attribute)}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.name in own:
            for attribute in node.attribute:
                if attribute.name == "to":
                    attribute.i = TensorProto.FLOAT16


def convert(out):
    import warnings

    import onnx
    from onnxconverter_common import float16

    for graph in GRAPHS:
        original = onnx.load(os.path.join(SOURCE, graph, "model.onnx"))
        with warnings.catch_warnings():
            # It warns for every weight outside float16's range that it clamps (random weights have
            # a few tiny ones); the test bounds the resulting difference instead.
            warnings.simplefilter("ignore", UserWarning)
            model = float16.convert_float_to_float16(original, keep_io_types=False)
        float16_casts(model, original)
        if graph == "unet":
            int64_timestep(model)
        onnx.checker.check_model(model)
        os.makedirs(os.path.join(out, graph))
        onnx.save(model, os.path.join(out, graph, "model.onnx"))
    for name in os.listdir(SOURCE):
        source = os.path.join(SOURCE, name)
        if name in GRAPHS:
            for config in os.listdir(source):
                if config != "model.onnx":
                    shutil.copyfile(os.path.join(source, config), os.path.join(out, name, config))
        elif os.path.isdir(source):
            shutil.copytree(source, os.path.join(out, name))
        elif name not in (MANIFEST, "README.md"):
            shutil.copyfile(source, os.path.join(out, name))
    with open(os.path.join(out, PROVENANCE), "w") as f:
        f.write(provenance_text())
    with open(os.path.join(out, MANIFEST), "w") as f:
        f.write(venv_cache.manifest_text(out))


def main():
    if sys.argv[1:]:
        sys.exit(__doc__.split("\n\n")[-1].strip())
    target = output_dir()
    if up_to_date(target):
        return
    if not venv_cache.in_venv("BOOMERANG_FP16_VENV"):
        venv_cache.reexec_in_venv("make_tiny_sd_fp16", __file__, REQUIREMENTS, "fp16-venv",
                                  "BOOMERANG_FP16_VENV")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tiny-sd-fp16-", dir=parent)
    try:
        convert(staging)
        # Made apart and renamed in, so an interrupted run never leaves a half model behind.
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"make_tiny_sd_fp16: wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
