"""Build the ONNX models boomerang certifies with, from pinned registry packages.

  models/face-detector/blazeface-full-range.onnx
      MediaPipe BlazeFace full-range detector, npm @mediapipe/face_detection@0.4.1657300184
      (face_detection_full_range.tflite, the dense file, Apache-2.0), converted with
      tf2onnx --tflite. Its weights are float16 in the tflite file; tf2onnx widens them to
      float32, and they are stored back as float16 with a Cast in the graph (lossless: every
      value round-trips), halving the file to fit the repository's size budget.
  blazeface-short-range.onnx (not committed: the full-range model replaced it)
      The short-range detector from the same package, converted as before (float32), for
      before/after comparisons: `--only short-range --out DIR` writes it to DIR and `--check`
      compares it with its former committed sha256.
  models/dlib-face/dlib-face-resnet29.onnx
      dlib's ResNet-29 face recognition network (weights CC0 by Davis King) as packaged by
      npm @vladmandic/face-api@1.7.15 (tfjs weights manifest, MIT), rebuilt as an ONNX graph
      with numpy + onnx. The uint8 weights stay uint8 in the file and are dequantized in the
      graph (Cast, Mul by scale, Add min: tfjs's affine quantization has a real-valued minimum,
      which DequantizeLinear's integer zero point cannot express), keeping the file ~6.5 MB.

All outputs are byte-reproducible: same sha256 on every run (tools/requirements-face.txt pins
the Python packages). `--check` rebuilds into a temporary directory and compares with the
committed files instead of writing.

usage: python tools/make_face_models.py [--cache DIR] [--check] [--out DIR]
                                       [--only detector|short-range|embedder]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_sources as src  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_DIR = os.path.join(ROOT, "models", "face-detector")
EMB_DIR = os.path.join(ROOT, "models", "dlib-face")
EMB_FILE = "dlib-face-resnet29.onnx"


class Detector:
    def __init__(self, file, tflite, tflite_sha, side, anchors, fp16, committed_sha=None):
        self.file, self.tflite, self.tflite_sha = file, tflite, tflite_sha
        self.side, self.anchors, self.fp16 = side, anchors, fp16
        # sha256 the rebuilt file must have when it is not committed (--check)
        self.committed_sha = committed_sha


FULL_RANGE = Detector("blazeface-full-range.onnx", "package/face_detection_full_range.tflite",
                      "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", 192, 2304, True)
SHORT_RANGE = Detector("blazeface-short-range.onnx", "package/face_detection_short_range.tflite",
                       "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", 128, 896, False,
                       committed_sha="c15fab92a046e9935ae4784972dba0881688ddafa8ba739b6594fc1cef310bdf")
MANIFEST = "package/model/face_recognition_model-weights_manifest.json"
MANIFEST_SHA = "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"
WEIGHTS = "package/model/face_recognition_model.bin"
WEIGHTS_SHA = "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
FACE_API_LICENSE = "package/LICENSE"
FACE_API_LICENSE_SHA = "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a"
MP_PACKAGE_JSON = "package/package.json"
MP_PACKAGE_JSON_SHA = "26998dea0b01e558848e8b008e4e44acd4701a7ab694586ebcd4de1ff95791c0"

OPSET = 13
IR_VERSION = 8


# ---------------------------------------------------------------- detector (tf2onnx)

def canonicalize_initializer_names(model):
    """tf2onnx names folded constants from a global counter whose order varies between runs;
    rename initializers by first use so the file is the same bytes every time."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    rename = {}
    for node in g.node:
        for name in node.input:
            if name in inits and name not in rename:
                rename[name] = f"w{len(rename):03d}"
    for name in inits:
        if name not in rename:
            sys.exit(f"initializer {name} is unused; the conversion changed, review it")
    for node in g.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
    ordered = sorted(g.initializer, key=lambda i: rename[i.name])
    for i in ordered:
        i.name = rename[i.name]
    del g.initializer[:]
    g.initializer.extend(ordered)
    return model


def store_float16(model):
    """Store float32 initializers that are exactly float16 values as float16, each followed by
    a Cast back to float32: the same numbers at run time (ONNX Runtime folds the Casts when
    it loads the graph) in half the bytes."""
    g = model.graph
    casts = []
    for init in g.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            sys.exit(f"initializer {init.name} is not float16-exact; the tflite file changed, review it")
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + "_f16"))
        casts.append(helper.make_node("Cast", [name + "_f16"], [name], name=name + "_cast",
                                      to=TensorProto.FLOAT))
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def rename_outputs(model, names):
    """tf2onnx names outputs after tflite tensors, which differ between the two models; give
    both the short-range model's names so one loader reads either."""
    g = model.graph
    for out, new in zip(g.output, names):
        old = out.name
        for node in g.node:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        out.name = new
    return model


def build_detector(det, out_dir, cache):
    tflite = src.member("mediapipe-face-detection", det.tflite, det.tflite_sha, cache)
    with tempfile.TemporaryDirectory() as tmp:
        tin = os.path.join(tmp, "in.tflite")
        tout = os.path.join(tmp, "out.onnx")
        with open(tin, "wb") as f:
            f.write(tflite)
        subprocess.check_call([sys.executable, "-m", "tf2onnx.convert", "--tflite", tin,
                               "--output", tout, "--opset", str(OPSET)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        model = onnx.load(tout)
    model = canonicalize_initializer_names(model)
    model = rename_outputs(model, ["regressors", "classificators"])
    if det.fp16:
        model = store_float16(model)
    # tf2onnx records the (temporary) input path here.
    model.graph.doc_string = f"converted from {det.tflite} of npm {src.ARCHIVES['mediapipe-face-detection']['spec']}"
    model.producer_name = "tf2onnx 1.16.1 via boomerang tools/make_face_models.py"
    onnx.checker.check_model(model)
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    if names_in != ["input"] or names_out != ["regressors", "classificators"]:
        sys.exit(f"unexpected detector I/O {names_in} -> {names_out}")
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    want = ([1, det.side, det.side, 3], [1, det.anchors, 16], [1, det.anchors, 1])
    got = (dims(model.graph.input[0]), dims(model.graph.output[0]), dims(model.graph.output[1]))
    if got != want:
        sys.exit(f"unexpected detector shapes {got}, expected {want}")
    path = os.path.join(out_dir, det.file)
    onnx.save_model(model, path)
    return path


# ---------------------------------------------------------------- embedder (numpy + onnx)

def read_tfjs_weights(cache):
    manifest = json.loads(src.member("face-api", MANIFEST, MANIFEST_SHA, cache))
    blob = src.member("face-api", WEIGHTS, WEIGHTS_SHA, cache)
    if len(manifest) != 1:
        sys.exit("expected one weight group in the face-api manifest")
    weights = {}
    offset = 0
    for w in manifest[0]["weights"]:
        shape = tuple(w["shape"])
        n = int(np.prod(shape))
        q = w.get("quantization")
        if q is None:
            if w["dtype"] != "float32":
                sys.exit(f"{w['name']}: unsupported dtype {w['dtype']}")
            arr = np.frombuffer(blob, dtype="<f4", count=n, offset=offset).reshape(shape)
            weights[w["name"]] = ("f32", arr, None)
            offset += 4 * n
        else:
            if q["dtype"] != "uint8":
                sys.exit(f"{w['name']}: unsupported quantization {q['dtype']}")
            arr = np.frombuffer(blob, dtype=np.uint8, count=n, offset=offset).reshape(shape)
            weights[w["name"]] = ("u8", arr, (q["scale"], q["min"]))
            offset += n
    if offset != len(blob):
        sys.exit(f"face-api weights: manifest covers {offset} bytes of {len(blob)}")
    return weights


class Graph:
    def __init__(self, weights):
        self.weights = weights
        self.used = set()
        self.nodes = []
        self.inits = []
        self.n = 0

    def fresh(self, hint):
        self.n += 1
        return f"{hint}_{self.n}"

    def node(self, op, inputs, hint, **attrs):
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def weight(self, name, layout):
        """Float tensor for tfjs weight `name`, rearranged (losslessly, on the stored integers)
        by `layout`: 'oihw' for conv filters, 'c11' for per-channel vectors, None as is."""
        kind, arr, q = self.weights[name]
        self.used.add(name)
        if layout == "oihw":
            arr = arr.transpose(3, 2, 0, 1)
        elif layout == "c11":
            arr = arr.reshape(-1, 1, 1)
        base = name.replace("/", ".")
        if kind == "f32":
            return self.const(base, arr.astype(np.float32))
        qname = self.const(base + ".q", arr)
        scale = self.const(base + ".scale", np.array(q[0], dtype=np.float32))
        zero = self.const(base + ".min", np.array(q[1], dtype=np.float32))
        f = self.node("Cast", [qname], base + ".f", to=TensorProto.FLOAT)
        f = self.node("Mul", [f, scale], base + ".scaled")
        return self.node("Add", [f, zero], base + ".deq")

    def conv_layer(self, x, prefix, stride, relu):
        w = self.weight(f"{prefix}/conv/filters", "oihw")
        b = self.weight(f"{prefix}/conv/bias", None)
        k = self.weights[f"{prefix}/conv/filters"][1].shape[0]
        # tfjs 'same' at stride 1 with odd kernels pads symmetrically; stride 2 layers are 'valid'.
        pad = (k // 2) if stride == 1 else 0
        y = self.node("Conv", [x, w, b], prefix + ".conv", kernel_shape=[k, k], strides=[stride, stride],
                      pads=[pad] * 4)
        y = self.node("Mul", [y, self.weight(f"{prefix}/scale/weights", "c11")], prefix + ".mul")
        y = self.node("Add", [y, self.weight(f"{prefix}/scale/biases", "c11")], prefix + ".add")
        return self.node("Relu", [y], prefix + ".relu") if relu else y

    def residual(self, x, prefix):
        y = self.conv_layer(x, prefix + "/conv1", 1, True)
        y = self.conv_layer(y, prefix + "/conv2", 1, False)
        return self.node("Relu", [self.node("Add", [y, x], prefix + ".sum")], prefix + ".out")

    def residual_down(self, x, prefix, in_hw, in_c):
        """face-api's residualDown: the shortcut is a 2x2 average pool, zero-padded in channels
        when they double, and the main path is zero-padded by one row and column at the end
        when its valid stride-2 convolution comes out one smaller than the pool."""
        out_c = self.weights[f"{prefix}/conv1/conv/filters"][1].shape[3]
        y = self.conv_layer(x, prefix + "/conv1", 2, True)
        y = self.conv_layer(y, prefix + "/conv2", 1, False)
        conv_hw = (in_hw - 3) // 2 + 1
        pool_hw = in_hw // 2
        pooled = self.node("AveragePool", [x], prefix + ".pool", kernel_shape=[2, 2], strides=[2, 2])
        if conv_hw != pool_hw:
            if pool_hw - conv_hw != 1:
                sys.exit(f"{prefix}: unexpected shape mismatch {conv_hw} vs {pool_hw}")
            pads = self.const(prefix.replace("/", ".") + ".hwpad", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64))
            y = self.node("Pad", [y, pads], prefix + ".hwpad")
        if out_c != in_c:
            pads = self.const(prefix.replace("/", ".") + ".cpad",
                              np.array([0, 0, 0, 0, 0, out_c - in_c, 0, 0], np.int64))
            pooled = self.node("Pad", [pooled, pads], prefix + ".cpad")
        out = self.node("Relu", [self.node("Add", [pooled, y], prefix + ".sum")], prefix + ".out")
        return out, pool_hw, out_c


def build_embedder(out_dir, cache):
    weights = read_tfjs_weights(cache)
    g = Graph(weights)
    # Input: NCHW RGB already normalized by the caller as the embedder spec says,
    # ((x - mean_rgb) / 255 for this network, face-api's FaceRecognitionNet.forwardInput).
    x = "input"
    x = g.conv_layer(x, "conv32_down", 2, True)          # 150 -> 72
    x = g.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2])  # 72 -> 35
    hw, c = 35, 32
    for p in ("conv32_1", "conv32_2", "conv32_3"):
        x = g.residual(x, p)
    x, hw, c = g.residual_down(x, "conv64_down", hw, c)
    for p in ("conv64_1", "conv64_2", "conv64_3"):
        x = g.residual(x, p)
    x, hw, c = g.residual_down(x, "conv128_down", hw, c)
    for p in ("conv128_1", "conv128_2"):
        x = g.residual(x, p)
    x, hw, c = g.residual_down(x, "conv256_down", hw, c)
    for p in ("conv256_1", "conv256_2"):
        x = g.residual(x, p)
    x, hw, c = g.residual_down(x, "conv256_down_out", hw, c)
    x = g.node("ReduceMean", [x], "gap", axes=[2, 3], keepdims=0)
    fc = g.weight("fc", None)
    out = g.node("MatMul", [x, fc], "fc")
    g.nodes.append(helper.make_node("Identity", [out], ["embedding"], name="embedding"))
    unused = set(weights) - g.used
    if unused:
        sys.exit(f"face-api weights not used by the graph: {sorted(unused)}")

    graph = helper.make_graph(
        g.nodes, "dlib_face_resnet29",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 150, 150])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 128])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="boomerang tools/make_face_models.py",
                              doc_string="dlib ResNet-29 face descriptor (CC0, Davis King) from "
                                         "npm @vladmandic/face-api@1.7.15 (MIT)")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = os.path.join(out_dir, EMB_FILE)
    onnx.save_model(model, path)
    return path


# ---------------------------------------------------------------- provenance

def write_embedder_provenance(out_dir, cache, onnx_sha):
    lic = src.member("face-api", FACE_API_LICENSE, FACE_API_LICENSE_SHA, cache)
    with open(os.path.join(out_dir, "LICENSE-face-api-MIT.txt"), "wb") as f:
        f.write(lic)
    a = src.ARCHIVES["face-api"]
    text = f"""# dlib-face: provenance

`{EMB_FILE}` (sha256 `{onnx_sha}`) is generated by `tools/make_face_models.py`; do not edit it.

| what | value |
|---|---|
| network | dlib ResNet-29 face recognition model (`dlib_face_recognition_resnet_model_v1`), 128-d descriptor, 99.38% on LFW per its author |
| weights author and license | Davis E. King, CC0 1.0 (public domain dedication); text in `LICENSE-dlib-model-CC0.txt` |
| packaged by | npm `{a['spec']}` (Vladimir Mandic, MIT; text in `LICENSE-face-api-MIT.txt`) |
| archive | `{a['file']}` sha256 `{a['sha256']}` |
| `{MANIFEST}` | sha256 `{MANIFEST_SHA}` |
| `{WEIGHTS}` | sha256 `{WEIGHTS_SHA}` |
| conversion | numpy + onnx (see `tools/requirements-face.txt`), opset {OPSET}; uint8 weights kept, dequantized in-graph as `q * scale + min` |
| input | `input` [batch, 3, 150, 150] float, RGB, `(x - [122.782, 117.001, 104.298]) / 255` (face-api `FaceRecognitionNet.forwardInput`) |
| output | `embedding` [batch, 128], compared by Euclidean distance |
| operating point | `same-person` distance < 0.6: dlib's documented threshold (dnn_face_recognition_ex.cpp; face_recognition's default `tolerance`) |

Checked against face-api.js itself (its bundled TensorFlow.js, CPU backend, under node) by
`tools/face_check_tfjs.py`: largest absolute descriptor difference 4.3e-6 over the fixture chips.

`embedder.toml` describes the model to boomerang; `tests/fixtures/faces/embedder-alt.toml` is a second,
test-only spec over the same file (other channel order, normalization and metric) with which the
tests prove that a spec change needs no code change.
"""
    with open(os.path.join(out_dir, "PROVENANCE.md"), "w") as f:
        f.write(text)


def write_detector_provenance(out_dir, cache, onnx_sha):
    # The package ships no LICENSE file; its package.json declares Apache-2.0.
    pkg = json.loads(src.member("mediapipe-face-detection", MP_PACKAGE_JSON, MP_PACKAGE_JSON_SHA, cache))
    if pkg.get("license") != "Apache-2.0":
        sys.exit(f"unexpected license {pkg.get('license')} in {MP_PACKAGE_JSON}")
    a = src.ARCHIVES["mediapipe-face-detection"]
    det, short = FULL_RANGE, SHORT_RANGE
    text = f"""# face-detector: provenance

`{det.file}` (sha256 `{onnx_sha}`) is generated by `tools/make_face_models.py`; do not edit it.

| what | value |
|---|---|
| network | MediaPipe BlazeFace, full range (faces up to ~5 m from the camera), the dense model |
| license | Apache-2.0 (declared in the package's `package.json`; text in `LICENSE-Apache-2.0.txt`), Copyright Google LLC |
| archive | npm `{a['spec']}`, `{a['file']}` sha256 `{a['sha256']}` |
| `{det.tflite}` | sha256 `{det.tflite_sha}` |
| conversion | `tf2onnx --tflite --opset {OPSET}` (tf2onnx 1.16.1, tensorflow-cpu 2.15.1, see `tools/requirements-face.txt`), folded-constant names canonicalized, outputs renamed to the short-range model's names, float32 weights stored as float16 + Cast (all are float16-exact: the tflite file holds float16 weights) |
| input | `input` [1, 192, 192, 3] float, RGB in [-1, 1], letterboxed (aspect kept, zero border) |
| outputs | `regressors` [1, 2304, 16] (box cx, cy, w, h + 6 keypoints x, y, in 192-px units relative to the anchor), `classificators` [1, 2304, 1] (logits) |
| anchors | 48x48 cells x 1 (one layer, stride 4), centers at (i + 0.5) / 48, unit size |
| keypoints | right eye, left eye, nose tip, mouth center, right ear tragion, left ear tragion (the subject's right and left) |
| post-processing | MediaPipe face_detection_full_range_common.pbtxt: sigmoid score clipped at +-100, weighted NMS at IoU 0.3; boomerang keeps min score 0.5 (MediaPipe's face detection solutions' default `min_detection_confidence`, which overrides the graph's 0.6) |

boomerang also runs it on overlapping tiles of large images (`src/certify/detector.rs`), so
faces of 5-15% of the image side are found; `cargo bench --bench detector_recall` measures it.
Checked against the tflite file itself (TensorFlow Lite interpreter) by
`tools/face_check_tflite.py`.

`{short.file}` (sha256 `{short.committed_sha}`, `{short.tflite}` sha256 `{short.tflite_sha}`),
the short-range model this one replaced, is no longer committed: the repository's size budget
does not hold both. `python tools/make_face_models.py --only short-range --out DIR` rebuilds it,
byte for byte, for comparisons.
"""
    with open(os.path.join(out_dir, "PROVENANCE.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=src.DEFAULT_CACHE, help="where pinned archives are downloaded")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with the committed files")
    ap.add_argument("--out", help="write the models here instead of models/ (no provenance files)")
    ap.add_argument("--only", choices=["detector", "short-range", "embedder"])
    args = ap.parse_args()

    def detector(det):
        return lambda out_dir, cache: build_detector(det, out_dir, cache)

    # (name, committed folder, build, provenance writer or None when the file is not committed)
    builds = [("detector", DET_DIR, detector(FULL_RANGE), write_detector_provenance),
              ("short-range", DET_DIR, detector(SHORT_RANGE), None),
              ("embedder", EMB_DIR, build_embedder, write_embedder_provenance)]
    failed = False
    for what, out_dir, build, provenance in builds:
        if args.only != what and (args.only or provenance is None and not args.check):
            continue
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                path = build(tmp, args.cache)
                got = src.sha256_file(path)
                if provenance is None:
                    want = SHORT_RANGE.committed_sha
                else:
                    committed = os.path.join(out_dir, os.path.basename(path))
                    want = src.sha256_file(committed) if os.path.exists(committed) else "(missing)"
                ok = got == want
                failed |= not ok
                print(f"{what}: rebuilt {got}, {'committed' if provenance else 'pinned'} {want}: "
                      f"{'OK' if ok else 'DIFFERENT'}")
        else:
            target = args.out or out_dir
            os.makedirs(target, exist_ok=True)
            path = build(target, args.cache)
            sha = src.sha256_file(path)
            if provenance and not args.out:
                provenance(out_dir, args.cache, sha)
            print(f"{what}: {path} {os.path.getsize(path)} bytes sha256 {sha}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
