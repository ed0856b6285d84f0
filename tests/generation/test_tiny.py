"""The tiny offline models: built without a download, loaded and run like real checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from generation import pipelines, tiny

# Repeated runs on one CPU may differ by a pixel level, no more.
PIXEL_TOLERANCE = 1
ALL_NAMES = [config.name for config in tiny.TINY_MODELS] + [
    tiny.TINY_SDXL.name,
    tiny.TINY_PIXART.name,
    tiny.TINY_FLUX_DEV.name,
    tiny.TINY_FLUX_SCHNELL.name,
    tiny.TINY_SD3,
    tiny.TINY_SANA,
    tiny.TINY_QWEN_IMAGE,
]
# Building all eleven from scratch; measured about 2 s on this 2-core machine.
BUILD_ALL_BUDGET_S = 30


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    models_dir = tmp_path_factory.mktemp("models")
    started = time.perf_counter()
    paths = tiny.build_all(models_dir)
    assert time.perf_counter() - started < BUILD_ALL_BUDGET_S
    return models_dir, paths


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


def digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_every_family_loads_as_its_own_pipeline_class_from_model_index(
    built: tuple[Path, list[Path]],
) -> None:
    models_dir, _ = built
    for name, class_name in tiny.TINY_PIPELINE_CLASSES.items():
        index = json.loads((models_dir / name / "model_index.json").read_text())
        assert index["_class_name"] == class_name, name


def test_rebuilding_gives_the_same_weights_byte_for_byte(
    built: tuple[Path, list[Path]], tiny_models_dir: Path
) -> None:
    # The demo and the tests use the same seeds: a model built twice is the same model.
    models_dir, _ = built
    for name in ALL_NAMES:
        for folder in (models_dir / name).iterdir():
            if folder.is_dir():
                assert digests(folder) == digests(tiny_models_dir / name / folder.name), (
                    f"{name}/{folder.name}"
                )


def test_the_flux_twins_share_text_encoder_files_and_differ_in_the_transformer(
    tiny_models_dir: Path,
) -> None:
    dev = tiny_models_dir / tiny.TINY_FLUX_DEV.name
    schnell = tiny_models_dir / tiny.TINY_FLUX_SCHNELL.name
    for folder in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        assert digests(dev / folder) == digests(schnell / folder), folder
    assert digests(dev / "transformer") != digests(schnell / "transformer")
    dev_config = json.loads((dev / "transformer" / "config.json").read_text())
    schnell_config = json.loads((schnell / "transformer" / "config.json").read_text())
    assert (dev_config["guidance_embeds"], schnell_config["guidance_embeds"]) == (True, False)


def test_the_gemma_tokenizer_falls_back_to_bytes_for_any_character() -> None:
    tokenizer = tiny.gemma_tokenizer()
    text = "a red fox, café 日本 🦊"
    ids = tokenizer(text).input_ids
    assert 3 not in ids, "no <unk>: byte fallback covers every character"
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_the_qwen_tokenizer_keeps_chat_markers_whole_and_round_trips_text() -> None:
    tokenizer = tiny.qwen_tokenizer()
    text = "café 日本 🦊"
    ids = tokenizer(f"<|im_start|>user\n{text}<|im_end|>").input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(tokenizer(text).input_ids) == text


@pytest.mark.django_db
def test_every_family_runs_through_the_arenas_own_job_path(
    tiny_models_dir: Path, tmp_path: Path, settings: Any
) -> None:
    # Registry file -> sync_models -> a queued job -> runner.run (claim, pipeline, encode,
    # finish), in this process: the path a worker takes, minus the broker.
    from generation import jobs, registry_sync, runner
    from generation.models import Generation, ImageModel

    settings.MODELS_DIR = tiny_models_dir
    registry = tmp_path / "families.toml"
    registry.write_text(
        "".join(
            f'[[model]]\nkey = "{name}"\ndisplay_name = "{name}"\nsource = "{name}"\n'
            f'pipeline_class = "{class_name}"\nsteps = 3\nwidth = 64\nheight = 64\n'
            for name, class_name in tiny.TINY_PIPELINE_CLASSES.items()
        ),
        encoding="utf-8",
    )
    registry_sync.sync_models(path=registry)
    for model in ImageModel.objects.all():
        job = jobs.create_generation(model=model, prompt="a red fox", seed=11)
        runner.run(generation_id=job.pk)
        job.refresh_from_db()
        assert job.status == Generation.Status.DONE, f"{model.key}: {job.error}"
        assert (job.steps_done, job.device) == (3, "cpu")
        assert job.hardware and job.hardware == pipelines.hardware_name()  # named for the board
        with job.image.open("rb") as handle:
            from PIL import Image

            assert Image.open(handle).size == (64, 64)
