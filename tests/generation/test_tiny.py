"""The tiny offline models: built without a download, loaded and run like real checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from generation import pipelines, tiny

# Repeated runs on one CPU may differ by a pixel level, no more.
PIXEL_TOLERANCE = 1
ALL_NAMES = [config.name for config in tiny.TINY_MODELS] + [
    tiny.TINY_SDXL.name,
    tiny.TINY_PIXART.name,
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    models_dir = tmp_path_factory.mktemp("models")
    return models_dir, tiny.build_all(models_dir)


def load(directory: Path, pipeline_class: str) -> object:
    spec = pipelines.PipelineSpec(
        key=directory.name, version="1", source=str(directory), pipeline_class=pipeline_class
    )
    return pipelines.load_pipeline(spec, device="cpu")


@pytest.fixture(scope="module")
def pixart(tiny_models_dir: Path) -> object:
    return load(tiny_models_dir / tiny.TINY_PIXART.name, "PixArtSigmaPipeline")


def run(pipe: object, seed: int, negative_prompt: str = "", on_step: object = None) -> np.ndarray:
    image = pipelines.generate(
        pipe,
        prompt="a red fox",
        negative_prompt=negative_prompt,
        seed=seed,
        steps=8,
        guidance=4.5,
        width=64,
        height=64,
        on_step=on_step,  # type: ignore[arg-type]
    )
    assert image.size == (64, 64) and image.mode == "RGB"
    return np.asarray(image, dtype=np.int16)


def test_building_makes_every_model_directory(built: tuple[Path, list[Path]]) -> None:
    models_dir, paths = built
    assert paths == [models_dir / name for name in ALL_NAMES]
    assert all((path / "model_index.json").is_file() for path in paths)
    index = json.loads((models_dir / "tiny-pixart" / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtSigmaPipeline"
    assert index["tokenizer"] == ["transformers", "T5Tokenizer"]


def test_building_again_builds_nothing_and_is_fast(built: tuple[Path, list[Path]]) -> None:
    models_dir, _ = built
    started = time.perf_counter()
    assert tiny.build_all(models_dir) == []
    assert time.perf_counter() - started < 0.5


def test_pixart_loads_without_naming_its_pipeline_class(tiny_models_dir: Path) -> None:
    pipe = load(tiny_models_dir / tiny.TINY_PIXART.name, "")  # through DiffusionPipeline
    assert type(pipe).__name__ == "PixArtSigmaPipeline"
    assert type(pipe.tokenizer).__name__ == "T5Tokenizer"  # type: ignore[attr-defined]


def test_pixart_generates_a_64px_rgb_image_reporting_every_step_in_order(pixart: object) -> None:
    steps: list[int] = []
    run(pixart, 7, on_step=steps.append)
    assert steps == list(range(1, 9))


def test_pixart_gives_the_same_image_for_the_same_seed(pixart: object) -> None:
    assert np.abs(run(pixart, 7) - run(pixart, 7)).max() <= PIXEL_TOLERANCE


def test_pixart_gives_another_image_for_another_seed(pixart: object) -> None:
    assert np.abs(run(pixart, 7) - run(pixart, 8)).mean() > 5


def test_pixart_hears_the_negative_prompt(pixart: object) -> None:
    # Random weights barely listen to text, but more than repeated runs of one prompt differ.
    diff = np.abs(run(pixart, 7) - run(pixart, 7, negative_prompt="blurry"))
    assert diff.max() > PIXEL_TOLERANCE and diff.mean() > 0.25


def test_pixart_and_stable_diffusion_make_different_images(
    pixart: object, tiny_models_dir: Path
) -> None:
    sd = load(tiny_models_dir / "tiny-inhouse", "StableDiffusionPipeline")
    assert np.abs(run(pixart, 7) - run(sd, 7)).mean() > 5


def test_the_clip_byte_tokenizer_knows_every_character(tmp_path: Path) -> None:
    tokenizer = tiny.write_byte_tokenizer(tmp_path)
    for text in ["a red fox, 42!", "café crème à l'œuf", "日本の狐 🦊"]:
        ids = tokenizer(text).input_ids
        assert ids[0] == 512 and ids[-1] == 513
        assert all(i < 512 for i in ids[1:-1]), "no start, end or unknown token inside"
        # CLIP keeps words, not spaces: every piece decodes followed by a space.
        decoded = str(tokenizer.decode(ids, skip_special_tokens=True))
        assert decoded.replace(" ", "") == text.replace(" ", "")


def test_the_t5_tokenizer_loads_back_and_knows_latin_1(tiny_models_dir: Path) -> None:
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(str(tiny_models_dir / "tiny-pixart" / "tokenizer"))
    text = "a red fox, café crème brûlée, 42 ¿señor?"
    ids = saved(text).input_ids
    assert ids == tiny.t5_tokenizer()(text).input_ids
    assert ids[-1] == 1 and 2 not in ids, "ends with </s>, no <unk>"
    assert saved.decode(ids, skip_special_tokens=True) == text


def test_sdxl_generates_a_64px_rgb_image_reporting_every_step_in_order(sdxl: object) -> None:
    steps: list[int] = []
    run(sdxl, seed=1, on_step=steps.append)
    assert steps == list(range(1, 9))


def test_sdxl_gives_the_same_image_for_the_same_seed_and_another_for_another(
    sdxl: object,
) -> None:
    first = run(sdxl, seed=3)
    assert np.abs(run(sdxl, seed=3) - first).max() <= PIXEL_TOLERANCE
    assert np.abs(run(sdxl, seed=4) - first).max() > PIXEL_TOLERANCE


def test_sdxl_hears_the_prompt_through_both_text_encoders(
    sdxl: object, tiny_models_dir: Path
) -> None:
    # Zeroing the second encoder changes the image: its hidden states and pooled embedding reach
    # the UNet beside the first encoder's.
    before = run(sdxl, seed=5)
    fresh = load(tiny_models_dir / tiny.TINY_SDXL.name, "StableDiffusionXLPipeline")
    with torch.no_grad():
        for parameter in fresh.text_encoder_2.parameters():  # type: ignore[attr-defined]
            parameter.zero_()
    assert np.abs(run(fresh, seed=5) - before).max() > PIXEL_TOLERANCE


def test_sdxl_has_no_watermark_and_refines_through_its_image_to_image_pipeline(
    sdxl: object,
) -> None:
    # Whether refining depends on the source and the strength is checked for every family
    # with image to image in test_pipelines.py.
    assert getattr(sdxl, "watermark", None) is None
    image_to_image = pipelines.image_to_image(sdxl)
    assert type(image_to_image).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert image_to_image.unet is sdxl.unet  # type: ignore[attr-defined]
