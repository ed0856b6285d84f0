"""The worker's parent loads and warms the models on a one-thread CPU worker, for its children."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from generation import pipelines, worker


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    pipelines.clear_cache()
    yield
    pipelines.clear_cache()


def test_a_one_thread_cpu_parent_loads_and_warms_the_models_it_is_told_to(
    models: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARENA_WARM_MODELS", models[0].key)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert worker._preload_models() == [models[0].key]
    assert pipelines.cached_pipeline_keys() == [(models[0].key, models[0].version)]


def test_a_parent_that_cannot_load_a_model_leaves_the_loading_to_the_children(
    models: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ARENA_WARM_MODELS", f"{models[0].key},no-such-model")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert worker._preload_models() == []
    assert pipelines.cached_pipeline_keys() == []
    assert "could not preload the models" in caplog.text


@pytest.mark.parametrize("setting", ["threads", "off"])
def test_several_torch_threads_or_the_switch_keep_the_loading_in_the_children(
    models: list[Any], monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv("ARENA_WARM_MODELS", models[0].key)
    if setting == "threads":
        monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    else:
        monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
        monkeypatch.setenv("ARENA_WORKER_PRELOAD_MODELS", "0")
    assert worker._preload_models() == []
    assert pipelines.cached_pipeline_keys() == []
