#!/usr/bin/env python3
"""Make tests/fixtures/terrain/ from the terrain package's own Python: what tests/terrain.rs
compares boomerang's denoiser sampler against.

  sources/terrain_K.png   8 terrains made by the package's generate() (128x128, difficulties
                          spread over 1..100, seed 2024), in the model's value space ([-1, 1],
                          asinh-scaled heights) as 16-bit grayscale PNGs: value = 2 p / 65535 - 1
  parity_K_{source,noise,output}.npy
                          [1, 1, 128, 128] float32: what the package's generate_from() fed the
                          model (the clipped model-space source, and the standard-normal noise its
                          numpy generator drew) and what the model returned (model space, before
                          the package's height decoding and smoothing, which are not Boomerang)
  cases.json              per parity case: strength, sigma, seed, difficulty label; and the Python
                          reference table (median RMSE to the source per strength over the 8
                          sources, numpy noise), for the Rust behaviour test to print beside its own

Needs models/terrain-consistency/*.onnx (python3 tools/fetch_terrain.py, run first here) and
makes its own venv from tools/requirements-terrain.txt in boomerang's cache.
usage: python3 tools/make_terrain_fixtures.py
"""
import json
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_cache  # noqa: E402
import fetch_terrain  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "terrain")
REQUIREMENTS = os.path.join(ROOT, "tools", "requirements-terrain.txt")
VENV_FLAG = "BOOMERANG_TERRAIN_VENV"
WHO = "make_terrain_fixtures"

SOURCE_SEED = 2024
SOURCE_DIFFICULTIES = [1, 15, 30, 45, 60, 75, 90, 100]
# (source index, strength, noise seed): one mid strength, one high.
PARITY = [(0, 0.5, 11), (5, 0.8, 12)]
TABLE_STRENGTHS = [0.2, 0.4, 0.5, 0.6, 0.8, 1.0]


def write_png16(path, values):
    """A 16-bit grayscale PNG (no metadata) of uint16 `values` [H, W]; numpy has no PNG writer and
    Pillow's 16-bit grayscale modes are not byte-stable across versions."""
    import numpy as np
    height, width = values.shape
    rows = np.ascontiguousarray(values.astype(">u2"))
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    if not venv_cache.in_venv(VENV_FLAG):
        subprocess_fetch()
        venv_cache.reexec_in_venv(WHO, __file__, REQUIREMENTS, "terrain-venv", VENV_FLAG)
    import numpy as np

    onnx_path, _ = fetch_terrain.pin()
    # The wheel is pure Python: imported straight from the zip.
    sys.path.insert(0, fetch_terrain.wheel_path())
    from terrain_diffusion import TerrainGenerator

    gen = TerrainGenerator(model=onnx_path, device="cpu")
    os.makedirs(os.path.join(OUT, "sources"), exist_ok=True)

    heights = gen.generate(len(SOURCE_DIFFICULTIES), shape=128, difficulty=SOURCE_DIFFICULTIES,
                           seed=SOURCE_SEED)
    model_space = gen._to_model_space(heights)[:, 0]
    pixels = np.round((model_space + 1.0) * 0.5 * 65535.0).clip(0, 65535).astype(np.uint16)
    for k, p in enumerate(pixels):
        write_png16(os.path.join(OUT, "sources", f"terrain_{k}.png"), p)
    # What boomerang reads back from those PNGs (f32, the same formula as the Rust side).
    sources = (pixels.astype(np.float32) / np.float32(65535.0) * np.float32(2.0)
               + np.float32(-1.0))[:, None]

    # Record what generate_from() feeds the model and gets back.
    calls = []
    denoise = gen._denoise

    def recording(noisy, sigmas, labels):
        out = denoise(noisy, sigmas, labels)
        calls.append((noisy.copy(), sigmas.copy(), labels.copy(), out.copy()))
        return out

    gen._denoise = recording
    cases = []
    for k, (index, strength, seed) in enumerate(PARITY):
        calls.clear()
        terrain = gen._from_model_space(sources[index : index + 1], zero_floor=False)
        gen.generate_from(terrain, difficulty=100, strength=strength, seed=seed,
                          size_mode="resize", smooth=False, zero_floor=False)
        (noisy, sigmas, labels, out), = calls
        # generate_from's source in model space, as it clipped it, and the noise its generator
        # drew (difficulty given: no label draw before the noise).
        source = np.clip(gen._to_model_space(terrain), -1.0, 1.0)
        noise = np.random.default_rng(seed).standard_normal((1, 1, 128, 128), dtype=np.float32)
        sigma = gen._strength_sigma(strength)
        if not np.array_equal(noisy, noise * np.float32(sigma) + source):
            sys.exit(f"{WHO}: case {k}: generate_from fed something else than source + sigma * noise")
        if float(sigmas[0]) != np.float32(sigma) or float(labels[0]) != 1.0:
            sys.exit(f"{WHO}: case {k}: unexpected sigma {sigmas} or label {labels}")
        for name, array in (("source", source), ("noise", noise), ("output", out)):
            np.save(os.path.join(OUT, f"parity_{k}_{name}.npy"), array.astype(np.float32))
        cases.append({"source": index, "strength": strength, "sigma": sigma, "seed": seed,
                      "difficulty_label": 1.0})
    gen._denoise = denoise

    # The reference table: the package's own sampler path (_sample_native, which generate_from
    # runs at native size) on the same 8 sources, numpy noise.
    labels = np.ones(1, dtype=np.float32)
    table = {}
    for strength in TABLE_STRENGTHS:
        rmse = []
        for k in range(len(sources)):
            rng = np.random.default_rng(1000 + k)
            out = gen._sample_native(labels, generator=rng, sources=sources[k : k + 1],
                                     strength=strength)
            rmse.append(float(np.sqrt(np.mean((out - sources[k : k + 1]) ** 2))))
        table[str(strength)] = float(np.median(rmse))
    pair = []
    for k in range(len(sources)):
        a = gen._sample_native(labels, generator=np.random.default_rng(2000 + k),
                               sources=sources[k : k + 1], strength=1.0)
        b = gen._sample_native(labels, generator=np.random.default_rng(3000 + k),
                               sources=sources[k : k + 1], strength=1.0)
        pair.append(float(np.sqrt(np.mean((a - b) ** 2))))
    reference = {"median_rmse_to_source": table, "median_rmse_between_samples_at_1.0":
                 float(np.median(pair))}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"parity": cases, "python_reference": reference}, f, indent=2)
        f.write("\n")
    print(json.dumps(reference, indent=2))


def subprocess_fetch():
    """The model first, outside the venv (standard library only)."""
    import subprocess
    subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "fetch_terrain.py")])


if __name__ == "__main__":
    main()
