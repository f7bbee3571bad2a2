#!/usr/bin/env python3
"""A face JPEG carrying EXIF Orientation 6 ("rotate 90 degrees clockwise to display"), for the
tests that `boomerang score` decodes a file exactly as `anonymize` does (stored pixel order,
orientation reported, never applied).

The file is tests/fixtures/faces/obama.jpg (public domain, see that folder's PROVENANCE.md) with
one EXIF APP1 segment inserted after its JFIF header: the compressed image data is copied byte for
byte, so the stored pixels are exactly obama.jpg's (420x350) while an orientation-applying viewer
shows it 350x420. Pure Python, no dependencies, deterministic:

    python3 tools/make_exif_rotated_face.py
"""

import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "faces" / "obama.jpg"
OUT = ROOT / "tests" / "fixtures" / "metadata" / "obama-orientation6.jpg"


def exif_orientation(value):
    """An APP1 Exif segment whose IFD0 holds only Orientation (tag 0x0112, SHORT)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)  # big-endian TIFF header, IFD0 at offset 8
    tiff += struct.pack(">H", 1)  # one entry
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)  # tag, SHORT, count 1, value, pad
    tiff += struct.pack(">I", 0)  # no next IFD
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def main():
    data = SOURCE.read_bytes()
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    at = 2
    # Keep a leading JFIF APP0 first, as the JFIF standard asks.
    if data[at : at + 2] == b"\xff\xe0":
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    assert data[at : at + 2] != b"\xff\xe1", "source already has an APP1 segment"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data[:at] + exif_orientation(6) + data[at:])


if __name__ == "__main__":
    main()
