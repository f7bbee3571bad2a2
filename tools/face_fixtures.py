"""Build tests/fixtures/faces/ from pinned public-domain images, with Python references.

Images (all public domain or CC0, see tests/fixtures/faces/PROVENANCE.md):
  PyPI sdist face_recognition==1.3.0, tests/test_images/: obama*.jpg, biden.jpg (official
  White House portraits, works of the US federal government);
  scikit-image==0.24.0 wheel, skimage/data/: astronaut.png (NASA), coffee.png (CC0),
  lfw_subset.npy (100 25x25 grey LFW faces, as shipped by scikit-image).

Writes, deterministically (same bytes every run with tools/requirements-face.txt):
  <name>.jpg            a crop around the face, scaled so the face box is ~FACE_PX wide
  coffee.jpg            a downscaled copy of coffee.png (no face)
  chips/<name>.png      the face aligned to the dlib embedder's 150x150 chip by this script's
                        own reference alignment (eye keypoints -> spec template, bilinear)
  lfw-faces.png         the 100 LFW faces as a 10x10 mosaic of 25x25 grey tiles
  reference.json        Python onnxruntime references: the detections (BlazeFace decoded as
                        MediaPipe does, weighted NMS) on every fixture image, and the embedding
                        of every chip under each embedder spec (tensor built from the spec's
                        layout, channel order, mean and std)

usage: python tools/face_fixtures.py [--cache DIR]   (after tools/make_face_models.py)
"""
import argparse
import io
import json
import os
import sys
import tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_sources as src  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "faces")
DETECTOR = os.path.join(ROOT, "models", "face-detector", "blazeface-short-range.onnx")
SPECS = {
    "dlib": os.path.join(ROOT, "models", "dlib-face", "embedder.toml"),
    "alt": os.path.join(OUT, "embedder-alt.toml"),
}
FACE_PX = 140
JPEG_QUALITY = 88

FR = "face_recognition-1.3.0/tests/test_images/"
PORTRAITS = {
    # fixture name: (archive, member, sha256)
    "obama": ("face_recognition", FR + "obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    "obama2": ("face_recognition", FR + "obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    "obama3": ("face_recognition", FR + "obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    "obama-partial": ("face_recognition", FR + "obama_partial_face.jpg",
                      "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
    "biden": ("face_recognition", FR + "biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    "astronaut": ("scikit-image", "skimage/data/astronaut.png",
                  "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
}
COFFEE = ("scikit-image", "skimage/data/coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7")
LFW = ("scikit-image", "skimage/data/lfw_subset.npy", "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c")


# ---------------------------------------------------------------- reference detector

def anchors():
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = 128 // stride
        for y in range(n):
            for x in range(n):
                out.extend([((x + 0.5) / n, (y + 0.5) / n)] * per_cell)
    return np.array(out, np.float64)


ANCHORS = anchors()


def letterbox(img):
    w, h = img.size
    s = 128.0 / max(w, h)
    nw, nh = int(w * s + 0.5), int(h * s + 0.5)
    canvas = Image.new("RGB", (128, 128))
    ox, oy = (128 - nw) // 2, (128 - nh) // 2
    canvas.paste(img.convert("RGB").resize((nw, nh), Image.BILINEAR), (ox, oy))
    return canvas, (ox, oy, nw / w, nh / h)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(sess, img, min_score=0.5, iou_threshold=0.3):
    canvas, (ox, oy, sx, sy) = letterbox(img)
    x = (np.asarray(canvas, np.float32) / np.float32(127.5) - np.float32(1.0))[None]
    reg, cls = sess.run(["regressors", "classificators"], {"input": x})
    reg = reg[0].astype(np.float64)
    score = 1.0 / (1.0 + np.exp(-np.clip(cls[0, :, 0].astype(np.float64), -100, 100)))
    cands = []
    for i in np.argsort(-score, kind="stable"):
        if score[i] < min_score:
            break
        r = reg[i] / 128.0
        cx, cy = r[0] + ANCHORS[i][0], r[1] + ANCHORS[i][1]
        box = np.array([cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2])
        kp = r[4:].reshape(6, 2) + ANCHORS[i]
        cands.append((score[i], box, kp))
    faces = []
    while cands:
        top = cands[0]
        group = [c for c in cands if iou(top[1], c[1]) > iou_threshold]
        cands = [c for c in cands if iou(top[1], c[1]) <= iou_threshold]
        w = np.array([c[0] for c in group])
        w = w / w.sum()
        box = sum(wi * c[1] for wi, c in zip(w, group))
        kp = sum(wi * c[2] for wi, c in zip(w, group))
        # letterbox (normalized 128 px canvas) -> image pixels
        box = (box * 128 - [ox, oy, ox, oy]) / [sx, sy, sx, sy]
        kp = (kp * 128 - [ox, oy]) / [sx, sy]
        faces.append({"score": float(top[0]), "box": [round(float(v), 3) for v in box],
                      "keypoints": [[round(float(v), 3) for v in p] for p in kp]})
    return faces


# ---------------------------------------------------------------- reference alignment + embedding

def align(img, left_eye, right_eye, spec):
    """Similarity transform taking the spec's template eyes to the detected eyes (pixel centers
    at i + 0.5), sampled bilinearly with black outside the image."""
    w, h = spec["input-size"]
    cl = complex(spec["alignment"]["left-eye"][0] * w, spec["alignment"]["left-eye"][1] * h)
    cr = complex(spec["alignment"]["right-eye"][0] * w, spec["alignment"]["right-eye"][1] * h)
    sl, sr = complex(*left_eye), complex(*right_eye)
    m = (sr - sl) / (cr - cl)
    t = sl - m * cl
    data = (m.real, -m.imag, t.real, m.imag, m.real, t.imag)
    return img.convert("RGB").transform((w, h), Image.AFFINE, data, resample=Image.BILINEAR, fillcolor=(0, 0, 0))


def tensor(chip, spec):
    a = np.asarray(chip.convert("RGB"), np.float32)
    if spec["channel-order"] == "bgr":
        a = a[:, :, ::-1]
    a = (a - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    if spec["layout"] == "nchw":
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a[None], dtype=np.float32)


def load_spec(path):
    with open(path, "rb") as f:
        spec = tomllib.load(f)
    spec["onnx-path"] = os.path.normpath(os.path.join(os.path.dirname(path), spec["onnx"]))
    return spec


# ---------------------------------------------------------------- fixtures

def save_jpeg(img, path):
    img.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=False)


def face_crop(img, face):
    """Square-ish crop three face widths wide around the face, scaled to FACE_PX face width."""
    x0, y0, x1, y1 = face["box"]
    bw = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = 1.5 * bw
    box = (max(0, int(cx - half)), max(0, int(cy - half)), min(img.width, int(cx + half)), min(img.height, int(cy + half)))
    crop = img.convert("RGB").crop(box)
    s = FACE_PX / bw
    return crop.resize((int(crop.width * s + 0.5), int(crop.height * s + 0.5)), Image.LANCZOS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=src.DEFAULT_CACHE)
    args = ap.parse_args()
    os.makedirs(os.path.join(OUT, "chips"), exist_ok=True)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    det = ort.InferenceSession(DETECTOR, opts, providers=["CPUExecutionProvider"])
    specs = {k: load_spec(p) for k, p in SPECS.items()}
    sessions = {}
    for k, spec in specs.items():
        if spec["onnx-path"] not in sessions:
            sessions[spec["onnx-path"]] = ort.InferenceSession(spec["onnx-path"], opts, providers=["CPUExecutionProvider"])

    reference = {"detections": {}, "embeddings": {k: {} for k in specs}}
    for name, (archive, inner, sha) in PORTRAITS.items():
        original = src.open_image_bytes(src.member(archive, inner, sha, args.cache)).convert("RGB")
        faces = detect(det, original)
        if len(faces) != 1:
            sys.exit(f"{inner}: expected one face, found {len(faces)}")
        save_jpeg(face_crop(original, faces[0]), os.path.join(OUT, f"{name}.jpg"))

    coffee = src.open_image_bytes(src.member(*COFFEE, args.cache)).convert("RGB")
    save_jpeg(coffee.resize((coffee.width // 2, coffee.height // 2), Image.LANCZOS), os.path.join(OUT, "coffee.jpg"))

    # References are computed from the committed (re-decoded) fixture files, as the tests see them.
    for name in list(PORTRAITS) + ["coffee"]:
        img = Image.open(os.path.join(OUT, f"{name}.jpg")).convert("RGB")
        faces = detect(det, img)
        reference["detections"][f"{name}.jpg"] = faces
        if name == "coffee":
            continue
        kp = faces[0]["keypoints"]
        chip = align(img, kp[0], kp[1], specs["dlib"])
        chip_path = os.path.join(OUT, "chips", f"{name}.png")
        chip.save(chip_path, "PNG", optimize=True)
        chip = Image.open(chip_path)
        for k, spec in specs.items():
            x = tensor(chip, spec)
            out = sessions[spec["onnx-path"]].run([spec["output-name"]], {spec["input-name"]: x})[0][0]
            reference["embeddings"][k][f"chips/{name}.png"] = [float(v) for v in out]

    lfw = np.load(io.BytesIO(src.member(*LFW, args.cache)))
    if lfw.shape != (200, 25, 25):
        sys.exit(f"lfw_subset.npy: unexpected shape {lfw.shape}")
    faces = lfw[:100]
    if faces.dtype != np.uint8:
        faces = np.clip(np.round(faces * 255.0 if faces.max() <= 1.0 else faces), 0, 255).astype(np.uint8)
    mosaic = faces.reshape(10, 10, 25, 25).transpose(0, 2, 1, 3).reshape(250, 250)
    Image.fromarray(mosaic, "L").save(os.path.join(OUT, "lfw-faces.png"), "PNG", optimize=True)

    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1, sort_keys=True)
        f.write("\n")
    for fn in sorted(os.listdir(OUT)) + [os.path.join("chips", c) for c in sorted(os.listdir(os.path.join(OUT, "chips")))]:
        p = os.path.join(OUT, fn)
        if os.path.isfile(p):
            print(f"{src.sha256_file(p)}  {os.path.getsize(p):7d}  {fn}")


if __name__ == "__main__":
    main()
