"""A small JPEG carrying EXIF with GPS coordinates, camera make and a comment, for the test that
anonymized outputs carry no metadata. The pixels are a crop of examples/astronaut.png (NASA,
public domain). Deterministic. Run: python tools/make_gps_jpeg.py (needs Pillow)."""
import os

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "metadata", "gps.jpg")

image = Image.open(os.path.join(ROOT, "examples", "astronaut.png")).convert("RGB").crop((40, 0, 200, 160))
image = image.resize((96, 96), Image.LANCZOS)
exif = Image.Exif()
exif[0x010F] = "BoomerangTestCamera"  # Make
exif[0x0131] = "boomerang-fixture"  # Software
gps = {
    1: "N", 2: (48.0, 51.0, 29.0),  # GPSLatitudeRef, GPSLatitude
    3: "E", 4: (2.0, 17.0, 40.0),  # GPSLongitudeRef, GPSLongitude
}
exif[0x8825] = gps  # GPSInfo IFD
os.makedirs(os.path.dirname(OUT), exist_ok=True)
image.save(OUT, "JPEG", quality=90, exif=exif.tobytes(), comment=b"secret location comment")
