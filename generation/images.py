"""Image encoding that carries pixels and nothing else."""

from __future__ import annotations

import hashlib
import io
import secrets

from PIL import Image

IMAGE_FORMAT = "PNG"
IMAGE_EXTENSION = "png"


def encode_png(image: Image.Image, *, width: int, height: int) -> bytes:
    """Re-encode from raw pixels at one size: no text chunks, EXIF, XMP, ICC or C2PA survive.

    Building a fresh image from the pixel buffer drops whatever ``image.info`` carried, and
    resizing both sides of a battle to one size hides each model's native resolution.
    """
    rgb = image.convert("RGB")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    # Fixed encoder settings, so the file's structure says nothing about who made it.
    clean.save(buffer, format=IMAGE_FORMAT, optimize=False, compress_level=6)
    return buffer.getvalue()


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types a PNG file carries, in order (to check that it carries pixels only)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    types, offset = [], 8
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def random_image_name() -> str:
    """A file name that carries no information: 128 random bits."""
    return f"{secrets.token_hex(16)}.{IMAGE_EXTENSION}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
