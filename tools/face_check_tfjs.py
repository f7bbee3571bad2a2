"""Check models/dlib-face/dlib-face-resnet29.onnx against face-api.js itself.

Runs @vladmandic/face-api@1.7.15 (its bundled TensorFlow.js, CPU backend, under node) and the
ONNX file (onnxruntime) on the aligned fixture chips tests/fixtures/faces/chips/*.png and prints
the largest absolute difference between the 128-d descriptors. No network access beyond the
pinned, sha256-checked npm archive (cached by tools/face_sources.py).

usage: python tools/face_check_tfjs.py [--cache DIR]   (needs node >= 18)
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_sources as src  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX = os.path.join(ROOT, "models", "dlib-face", "dlib-face-resnet29.onnx")
CHIPS = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "faces", "chips", "*.png")))
MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)

NODE_SCRIPT = r"""
// The browser bundle's node platform shim needs 'util', which the bundle stubs out; presenting
// a browser-like global makes it use the WHATWG TextEncoder/fetch that node provides.
globalThis.window = globalThis; globalThis.document = {};
const fs = await import('fs');
const faceapi = await import(process.argv[2] + '/dist/face-api.esm.js');
const tf = faceapi.tf;
await tf.setBackend('cpu'); await tf.ready();
const dir = process.argv[2] + '/model/';
const manifest = JSON.parse(fs.readFileSync(dir + 'face_recognition_model-weights_manifest.json'));
const bin = fs.readFileSync(dir + 'face_recognition_model.bin');
const weights = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), manifest[0].weights);
faceapi.nets.faceRecognitionNet.loadFromWeightMap(weights);
const out = [];
for (const f of process.argv.slice(3)) {
  const b = fs.readFileSync(f);
  const pixels = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tf.tensor3d(pixels, [150, 150, 3]));
  out.push(Array.from(d));
}
console.log(JSON.stringify({backend: tf.getBackend(), descriptors: out}));
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=src.DEFAULT_CACHE)
    args = ap.parse_args()
    if not CHIPS:
        sys.exit("no chips under tests/fixtures/faces/chips; run tools/face_fixtures.py first")
    archive = src.fetch("face-api", args.cache)
    sess = ort.InferenceSession(ONNX, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive, "r:gz") as t:
            t.extractall(tmp, filter="data")
        pkg = os.path.join(tmp, "package")
        inputs, onnx_out = [], []
        for i, chip in enumerate(CHIPS):
            pixels = np.asarray(Image.open(chip).convert("RGB"), np.float32)
            raw = os.path.join(tmp, f"{i}.f32")
            pixels.tofile(raw)
            inputs.append(raw)
            x = ((pixels - MEAN_RGB) / np.float32(255.0)).transpose(2, 0, 1)[None]
            onnx_out.append(sess.run(["embedding"], {"input": np.ascontiguousarray(x)})[0][0])
        script = os.path.join(tmp, "check.mjs")
        with open(script, "w") as f:
            f.write(NODE_SCRIPT)
        res = subprocess.run(["node", script, pkg, *inputs], check=True, capture_output=True, text=True)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
        tfjs = json.loads(line)
    worst = 0.0
    for chip, a, b in zip(CHIPS, onnx_out, tfjs["descriptors"]):
        diff = float(np.abs(a - np.array(b, np.float32)).max())
        worst = max(worst, diff)
        print(f"{os.path.basename(chip)}: max abs diff {diff:.2e}")
    print(f"face-api.js ({tfjs['backend']} backend) vs ONNX: max abs diff {worst:.2e} over {len(CHIPS)} chips")
    sys.exit(0 if worst < 1e-3 else 1)


if __name__ == "__main__":
    main()
