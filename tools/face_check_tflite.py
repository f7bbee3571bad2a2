"""Check models/face-detector/blazeface-full-range.onnx against the tflite file it came from.

Runs the pinned face_detection_full_range.tflite (TensorFlow Lite interpreter from
tools/requirements-face.txt) and the committed ONNX file (onnxruntime) on the same letterboxed
192x192 input for every fixture image tests/fixtures/faces/*.jpg, decodes both as MediaPipe's
face_detection_full_range graph does (48x48 anchors, sigmoid clipped at 100, weighted NMS at
IoU 0.3) and prints the largest raw output difference and the largest box / keypoint difference
in image pixels. Exits 1 when the face counts differ or a box moves by more than 0.5 px.

With --write-reference it also writes into tests/fixtures/faces/reference.json the references
tests/certify.rs checks boomerang against: the tflite detections (`detections`) and, under
`aligned-embeddings`, the dlib embedding of each portrait aligned on those detections' eyes by
tools/face_fixtures.py's reference alignment. (The `embeddings` of the committed chips, aligned
on the short-range detector's eyes when they were made, are kept as they are.)

usage: python tools/face_check_tflite.py [--cache DIR] [--write-reference]
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import tensorflow as tf
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_fixtures as fixtures  # noqa: E402
import face_sources as src  # noqa: E402
import make_face_models as models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = os.path.join(ROOT, "tests", "fixtures", "faces")
ONNX = os.path.join(ROOT, "models", "face-detector", models.FULL_RANGE.file)
SIDE = 192
CELLS = 48
MIN_SCORE = 0.5
IOU = 0.3
ANCHORS = np.array([((x + 0.5) / CELLS, (y + 0.5) / CELLS) for y in range(CELLS) for x in range(CELLS)])


def letterbox(img):
    w, h = img.size
    s = SIDE / max(w, h)
    nw, nh = int(w * s + 0.5), int(h * s + 0.5)
    canvas = Image.new("RGB", (SIDE, SIDE))
    ox, oy = (SIDE - nw) // 2, (SIDE - nh) // 2
    canvas.paste(img.convert("RGB").resize((nw, nh), Image.BILINEAR), (ox, oy))
    x = (np.asarray(canvas, np.float32) / np.float32(127.5) - np.float32(1.0))[None]
    return x, (ox, oy, nw / w, nh / h)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decode(reg, cls, geometry):
    ox, oy, sx, sy = geometry
    reg = reg.reshape(-1, 16).astype(np.float64)
    score = 1.0 / (1.0 + np.exp(-np.clip(cls.reshape(-1).astype(np.float64), -100, 100)))
    cands = []
    for i in np.argsort(-score, kind="stable"):
        if score[i] < MIN_SCORE:
            break
        r = reg[i] / SIDE
        cx, cy = r[0] + ANCHORS[i][0], r[1] + ANCHORS[i][1]
        box = np.array([cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2])
        kp = r[4:].reshape(6, 2) + ANCHORS[i]
        cands.append((score[i], box, kp))
    faces = []
    while cands:
        top = cands[0]
        group = [c for c in cands if iou(top[1], c[1]) > IOU]
        cands = [c for c in cands if iou(top[1], c[1]) <= IOU]
        w = np.array([c[0] for c in group])
        w = w / w.sum()
        box = sum(wi * c[1] for wi, c in zip(w, group))
        kp = sum(wi * c[2] for wi, c in zip(w, group))
        box = (box * SIDE - [ox, oy, ox, oy]) / [sx, sy, sx, sy]
        kp = (kp * SIDE - [ox, oy]) / [sx, sy]
        faces.append({"score": float(top[0]), "box": [round(float(v), 3) for v in box],
                      "keypoints": [[round(float(v), 3) for v in p] for p in kp]})
    return faces


class Tflite:
    def __init__(self, cache):
        det = models.FULL_RANGE
        data = src.member("mediapipe-face-detection", det.tflite, det.tflite_sha, cache)
        self.interp = tf.lite.Interpreter(model_content=data, num_threads=1)
        self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]["index"]
        outs = {o["name"]: o["index"] for o in self.interp.get_output_details()}
        # the regressors are the 16-wide output
        by_width = {self.interp.get_output_details()[i]["shape"][-1]: o
                    for i, o in enumerate(outs.values())}
        self.reg, self.cls = by_width[16], by_width[1]

    def run(self, x):
        self.interp.set_tensor(self.input, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.reg), self.interp.get_tensor(self.cls)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=src.DEFAULT_CACHE)
    ap.add_argument("--write-reference", action="store_true")
    args = ap.parse_args()
    lite = Tflite(args.cache)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(ONNX, opts, providers=["CPUExecutionProvider"])
    detections = {}
    worst_raw = worst_px = 0.0
    ok = True
    for path in sorted(glob.glob(os.path.join(FACES, "*.jpg"))):
        name = os.path.basename(path)
        x, geometry = letterbox(Image.open(path))
        reg_l, cls_l = lite.run(x)
        reg_o, cls_o = sess.run(["regressors", "classificators"], {"input": x})
        raw = max(float(np.abs(reg_l - reg_o).max()), float(np.abs(cls_l - cls_o).max()))
        a, b = decode(reg_l, cls_l, geometry), decode(reg_o, cls_o, geometry)
        px = 0.0
        if len(a) != len(b):
            ok = False
        else:
            for fa, fb in zip(a, b):
                px = max(px, float(np.abs(np.array(fa["box"]) - fb["box"]).max()),
                         float(np.abs(np.array(fa["keypoints"]) - fb["keypoints"]).max()))
        worst_raw, worst_px = max(worst_raw, raw), max(worst_px, px)
        print(f"{name}: tflite {len(a)} face(s) {[round(f['score'], 4) for f in a]}, onnx {len(b)}; "
              f"raw output diff {raw:.2e}, box/keypoint diff {px:.4f} px")
        detections[name] = a
    ok &= worst_px <= 0.5
    print(f"tflite vs ONNX: largest raw diff {worst_raw:.2e}, largest box/keypoint diff {worst_px:.4f} px: "
          f"{'OK' if ok else 'DIFFERENT'}")
    if args.write_reference:
        ref_path = os.path.join(FACES, "reference.json")
        with open(ref_path) as f:
            reference = json.load(f)
        reference["detections"] = detections
        spec = fixtures.load_spec(fixtures.SPECS["dlib"])
        emb = ort.InferenceSession(spec["onnx-path"], opts, providers=["CPUExecutionProvider"])
        aligned = {}
        for name, faces in detections.items():
            if len(faces) != 1:
                continue
            kp = faces[0]["keypoints"]
            chip = fixtures.align(Image.open(os.path.join(FACES, name)).convert("RGB"), kp[0], kp[1], spec)
            x = fixtures.tensor(chip, spec)
            aligned[name] = [float(v) for v in emb.run([spec["output-name"]], {spec["input-name"]: x})[0][0]]
        reference["aligned-embeddings"] = {"dlib": aligned}
        with open(ref_path, "w") as f:
            json.dump(reference, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote the tflite detections into {os.path.relpath(ref_path, ROOT)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
