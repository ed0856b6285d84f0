"""Image files carry pixels and nothing else."""

from __future__ import annotations

import io
import random
import re

import pytest
from PIL import Image, PngImagePlugin

from generation import images


def tagged_image() -> Image.Image:
    """An image whose PNG carries a text chunk naming its model, EXIF and an ICC profile."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model: secret-model-v2, seed 42")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret-model-v2</x:xmpmeta>")
    exif = Image.Exif()
    exif[0x0131] = "secret-model-v2"  # Software
    buffer = io.BytesIO()
    Image.new("RGB", (80, 48), (200, 30, 30)).save(buffer, format="PNG", pnginfo=info, exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_encoding_drops_text_chunks_exif_and_xmp() -> None:
    source = tagged_image()
    assert "parameters" in source.info  # the input really is tagged
    data = images.encode_png(source, width=80, height=48)
    assert b"secret-model" not in data
    assert set(images.png_chunk_types(data)) == {b"IHDR", b"IDAT", b"IEND"}


def test_encoding_resizes_to_the_battle_size_and_keeps_the_pixels_otherwise() -> None:
    source = Image.new("RGB", (64, 64), (12, 34, 56))
    same = Image.open(io.BytesIO(images.encode_png(source, width=64, height=64)))
    assert same.size == (64, 64) and same.getpixel((10, 10)) == (12, 34, 56)
    resized = Image.open(io.BytesIO(images.encode_png(source, width=32, height=32)))
    assert resized.size == (32, 32) and resized.mode == "RGB"


def test_the_same_pixels_give_the_same_bytes() -> None:
    source = Image.effect_noise((64, 64), 40).convert("RGB")
    assert images.encode_png(source, width=64, height=64) == images.encode_png(
        source.copy(), width=64, height=64
    )


def test_file_names_are_random_and_say_nothing() -> None:
    names = {images.random_image_name() for _ in range(1000)}
    assert len(names) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}\.png", name) for name in names)


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def test_padding_makes_the_exact_length_and_changes_no_pixel() -> None:
    data = images.encode_png(noise((32, 32), 1), width=32, height=32)
    padded = images.pad_png(data, length=len(data) + 500)
    assert len(padded) == len(data) + 500
    assert images.png_chunk_types(padded) == [b"IHDR", b"IDAT", images.PAD_CHUNK, b"IEND"]
    Image.open(io.BytesIO(padded)).verify()  # every chunk's CRC checks out
    assert images.decoded_pixels(padded) == images.decoded_pixels(data)
    assert set(padded[len(data) - 12 + 8 : -16]) <= {0}, "the padding is zeros and nothing else"


def test_padding_below_one_chunk_is_refused() -> None:
    data = images.encode_png(noise((8, 8), 1), width=8, height=8)
    with pytest.raises(ValueError, match="a chunk needs 12 bytes"):
        images.pad_png(data, length=len(data) + 11)
    with pytest.raises(ValueError, match="not a PNG"):
        images.pad_png(b"GIF89a" + data, length=len(data) + 100)


def test_a_finalised_pair_has_one_size_one_length_and_one_layout() -> None:
    busy, flat = noise((64, 64), 2), Image.new("RGB", (80, 80), (9, 9, 9))
    left, right = images.finalise_pair([busy, flat], width=64, height=64)
    assert len(left) == len(right) and len(left) % images.PAD_QUANTUM == 0
    assert images.png_chunk_types(left) == images.png_chunk_types(right)
    assert left[:33] == right[:33]
    assert images.decoded_pixels(left)[0] == images.decoded_pixels(right)[0] == (64, 64)
    assert images.decoded_pixels(left) == images.decoded_pixels(
        images.encode_png(busy, width=64, height=64)
    )
