"""The tiny pipelines, loaded through the loader real checkpoints use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generation import pipelines
from generation.tiny import TINY_MODELS

# Batched and unbatched runs may differ by a pixel level; repeated single runs should not.
PIXEL_TOLERANCE = 1


@pytest.fixture(scope="module")
def loaded(tiny_models_dir: Path) -> dict[str, object]:
    return {
        config.name: pipelines.load_pipeline(
            pipelines.PipelineSpec(
                key=config.name,
                version="1",
                source=str(tiny_models_dir / config.name),
                pipeline_class="StableDiffusionPipeline",
            ),
            device="cpu",
        )
        for config in TINY_MODELS
    }


def run(pipe: object, seed: int, steps: int = 4, on_step: object = None) -> np.ndarray:
    image = pipelines.generate(
        pipe,
        prompt="a red fox",
        negative_prompt="",
        seed=seed,
        steps=steps,
        guidance=5.0,
        width=64,
        height=64,
        on_step=on_step,  # type: ignore[arg-type]
    )
    return np.asarray(image, dtype=np.int16)


def test_the_same_seed_gives_the_same_image(loaded: dict[str, object]) -> None:
    pipe = loaded["tiny-inhouse"]
    assert np.abs(run(pipe, 7) - run(pipe, 7)).max() <= PIXEL_TOLERANCE


def test_another_seed_gives_another_image(loaded: dict[str, object]) -> None:
    pipe = loaded["tiny-inhouse"]
    assert np.abs(run(pipe, 7) - run(pipe, 8)).mean() > 5


def test_each_tiny_model_makes_its_own_image(loaded: dict[str, object]) -> None:
    outputs = [run(pipe, 7) for pipe in loaded.values()]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert np.abs(outputs[i] - outputs[j]).mean() > 5


def test_every_step_is_reported_in_order(loaded: dict[str, object]) -> None:
    steps: list[int] = []
    run(loaded["tiny-baseline-a"], 1, steps=6, on_step=steps.append)
    assert steps == [1, 2, 3, 4, 5, 6]


def test_the_pipeline_is_loaded_once_per_process(tiny_models_dir: Path) -> None:
    spec = pipelines.PipelineSpec(
        key="tiny-baseline-b", version="cache-test", source=str(tiny_models_dir / "tiny-baseline-b")
    )
    assert pipelines.get_pipeline(spec) is pipelines.get_pipeline(spec)


def test_gpu_options_are_skipped_on_the_cpu(tiny_models_dir: Path) -> None:
    pipe = pipelines.load_pipeline(
        pipelines.PipelineSpec(
            key="t", version="1", source=str(tiny_models_dir / "tiny-inhouse"), dtype="float16"
        ),
        device="cpu",
    )
    import torch

    assert pipe.unet.dtype == torch.float32, "half precision only on CUDA"


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_refining_depends_on_the_source_image_and_the_strength(
    loaded: dict[str, object], sdxl: object, family: str
) -> None:
    # Random-weight VAEs do not reconstruct images, so "looks like the source" cannot be
    # tested here; what can: the result is a deterministic function of source and strength.
    from PIL import Image

    pipe = loaded["tiny-inhouse"] if family == "sd" else sdxl
    first = Image.fromarray(run(pipe, 21, steps=8).astype("uint8"))
    second = Image.fromarray(run(pipe, 22, steps=8).astype("uint8"))
    steps_seen: list[int] = []

    def refined(source: Image.Image, strength: float) -> np.ndarray:
        image = pipelines.generate(
            pipe,
            prompt="a red fox at night",
            negative_prompt="",
            seed=5,
            steps=8,
            guidance=5.0,
            width=64,
            height=64,
            init_image=source,
            strength=strength,
            on_step=steps_seen.append,
        )
        return np.asarray(image, dtype=np.int16)

    base = refined(first, 0.5)
    assert np.abs(base - refined(first, 0.5)).max() <= PIXEL_TOLERANCE
    assert np.abs(base - refined(second, 0.5)).mean() > 1, "another source, another result"
    assert np.abs(base - refined(first, 0.9)).mean() > 1, "another strength, another result"
    assert steps_seen[-1] == 8, "progress is scaled to the requested steps"


def test_a_family_without_image_to_image_refuses_to_refine(loaded: dict[str, object]) -> None:
    class Other:
        pass

    with pytest.raises(ValueError, match="no image-to-image"):
        pipelines.image_to_image(Other())
