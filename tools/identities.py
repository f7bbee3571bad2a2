"""Build an IDENTITIES/ folder (one folder per person) for `boomerang calibrate` and
`cargo bench --bench certifier_eval` from the faces the project ships or can fetch pinned.

  obama/      tests/fixtures/faces/obama.jpg, obama2.jpg, obama3.jpg, obama-partial.jpg; with
              --fetch also face_recognition==1.3.0's tests/test_images/obama_partial_face2.jpg
              and 32bit.png (two more photos; sha256-checked, see tools/face_sources.py)
  biden/      tests/fixtures/faces/biden.jpg
  astronaut/  tests/fixtures/faces/astronaut.jpg and examples/astronaut.png: the SAME photo
              (skimage's astronaut) at two crops and scales, so its genuine pair is a near
              duplicate. examples/astronaut.png blurred with sigma 3 is the case where the
              detector loses the face (issue 11)
  lfw-NN/     with --lfw N: the first N tiles of tests/fixtures/faces/lfw-faces.png (25x25 grey
              LFW crops from scikit-image), each scaled x4 onto a 200x200 grey canvas. They are
              unlabeled: each tile is taken as its own identity, which holds only if no person
              appears twice among them (LFW has many photos of a few people), and 25 px faces
              are far below the embedder's 150 px chip. Impostor pairs for the mechanics, not
              an FMR to publish.

Deterministic (Pillow from tools/requirements-face.txt). The output is not committed: build it
into a cache folder.

usage: python3 tools/identities.py OUT [--lfw N] [--fetch] [--cache DIR]
"""
import argparse
import io
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_sources as src  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = os.path.join(ROOT, "tests", "fixtures", "faces")

FETCHED = [
    ("obama", "obama-partial2.jpg", "face_recognition-1.3.0/tests/test_images/obama_partial_face2.jpg",
     "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    ("obama", "obama-32bit.png", "face_recognition-1.3.0/tests/test_images/32bit.png",
     "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--lfw", type=int, default=0, help="LFW mosaic tiles to add (0..100)")
    parser.add_argument("--fetch", action="store_true", help="add the pinned face_recognition photos")
    parser.add_argument("--cache", default=src.DEFAULT_CACHE)
    args = parser.parse_args()
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"{args.out} exists and is not empty; give a new folder")
    if not 0 <= args.lfw <= 100:
        sys.exit("--lfw takes 0..100 (the mosaic has 100 tiles)")

    def put(person, name, data):
        folder = os.path.join(args.out, person)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)

    def repo_file(*parts):
        with open(os.path.join(ROOT, *parts), "rb") as f:
            return f.read()

    for name in ["obama", "obama2", "obama3", "obama-partial"]:
        put("obama", f"{name}.jpg", repo_file("tests", "fixtures", "faces", f"{name}.jpg"))
    put("biden", "biden.jpg", repo_file("tests", "fixtures", "faces", "biden.jpg"))
    put("astronaut", "astronaut.jpg", repo_file("tests", "fixtures", "faces", "astronaut.jpg"))
    put("astronaut", "astronaut-256.png", repo_file("examples", "astronaut.png"))
    if args.fetch:
        for person, name, inner, sha in FETCHED:
            put(person, name, src.member("face_recognition", inner, sha, args.cache))
    if args.lfw:
        from PIL import Image
        mosaic = Image.open(os.path.join(FACES, "lfw-faces.png")).convert("RGB")
        for k in range(args.lfw):
            row, col = divmod(k, 10)
            tile = mosaic.crop((col * 25, row * 25, col * 25 + 25, row * 25 + 25))
            tile = tile.resize((100, 100), Image.BICUBIC)
            canvas = Image.new("RGB", (200, 200), (128, 128, 128))
            canvas.paste(tile, (50, 50))
            buf = io.BytesIO()
            canvas.save(buf, "PNG", optimize=False)
            put(f"lfw-{k:02d}", "1.png", buf.getvalue())
    people = sorted(os.listdir(args.out))
    count = sum(len(os.listdir(os.path.join(args.out, p))) for p in people)
    print(f"{args.out}: {count} images of {len(people)} identities")


if __name__ == "__main__":
    main()
