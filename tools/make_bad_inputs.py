#!/usr/bin/env python3
"""Writes the input fixtures the Rust image encoders cannot make (tests/fixtures/bad_inputs/).

Every other bad input (truncated, zero-byte, bombs, 16-bit, alpha, animated GIF, ...) is generated
by tests/dataset.rs itself in a temp folder. Deterministic: same Pillow, same bytes.

    /work/sdvenv/bin/python tools/make_bad_inputs.py
"""

from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bad_inputs"


def pattern(mode, size, pixel):
    image = Image.new(mode, size)
    for y in range(size[1]):
        for x in range(size[0]):
            image.putpixel((x, y), pixel(x, y))
    return image


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # CMYK JPEG (Pillow writes an Adobe APP14 marker, transform 0): the Rust encoder has no CMYK.
    cmyk = pattern("CMYK", (8, 8), lambda x, y: (x * 32, y * 32, 0, 40 if x < 4 else 0))
    cmyk.save(OUT / "cmyk.jpg", quality=95)
    # The RGB Pillow derives from it, to compare the Rust decode against.
    Image.open(OUT / "cmyk.jpg").convert("RGB").save(OUT / "cmyk_pillow_rgb.png")
    # A 4x2 JPEG carrying EXIF Orientation 6 (displayed rotated 90 degrees clockwise).
    rotated = pattern("RGB", (4, 2), lambda x, y: (255 if x == 0 else 0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(OUT / "orientation6.jpg", quality=95, exif=exif.tobytes())


if __name__ == "__main__":
    main()
