"""Fixtures shared by the generation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation import pipelines, tiny


@pytest.fixture(scope="module")
def sdxl(tiny_models_dir: Path) -> object:
    """The tiny SDXL pipeline, loaded through the production loader on the CPU."""
    spec = pipelines.PipelineSpec(
        key=tiny.TINY_SDXL.name,
        version="1",
        source=str(tiny_models_dir / tiny.TINY_SDXL.name),
        pipeline_class="StableDiffusionXLPipeline",
    )
    return pipelines.load_pipeline(spec, device="cpu")
