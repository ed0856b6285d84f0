"""Image encoding that carries pixels and nothing else."""

from __future__ import annotations

import hashlib
import io
import secrets
import zlib
from collections.abc import Sequence

from PIL import Image

IMAGE_FORMAT = "PNG"
IMAGE_EXTENSION = "png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The padding chunk every battle image carries, so both files of a battle have one layout and
# one length. Its name follows the PNG rules for a private, ancillary, safe-to-copy chunk, which
# decoders skip; its data are zero bytes, so it says nothing beyond its own length.
PAD_CHUNK = b"paDd"
# Battle files are padded up to a multiple of this: the shared length then tells a little less
# than the larger file's natural length (which the pixels tell anyway).
PAD_QUANTUM = 1024


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


def pad_png(data: bytes, *, length: int) -> bytes:
    """The PNG with a zero-filled padding chunk before IEND, exactly ``length`` bytes long."""
    if data[:8] != PNG_SIGNATURE or data[-12:-8] != b"\x00\x00\x00\x00" or data[-8:-4] != b"IEND":
        raise ValueError("not a PNG file ending in an empty IEND chunk")
    padding = length - len(data) - 12
    if padding < 0:
        raise ValueError(f"cannot pad {len(data)} bytes to {length}: a chunk needs 12 bytes")
    body = PAD_CHUNK + bytes(padding)
    chunk = padding.to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return data[:-12] + chunk + data[-12:]


def finalise_pair(
    pictures: Sequence[Image.Image], *, width: int, height: int
) -> tuple[bytes, bytes]:
    """Both images of a battle as PNG files of one format, one size and one length.

    Each is re-encoded from its pixels alone at ``width`` x ``height``, then padded with the
    same chunk type to a shared length: the larger natural length rounded up to PAD_QUANTUM.
    """
    left, right = (encode_png(picture, width=width, height=height) for picture in pictures)
    natural = max(len(left), len(right)) + 12
    length = -(-natural // PAD_QUANTUM) * PAD_QUANTUM
    return pad_png(left, length=length), pad_png(right, length=length)


def decoded_pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    """The size and raw RGB pixels of an image file (what "the same image" means)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.size, rgb.tobytes()
