"""Direct chat with a real worker: a turn, then a refine of one of its images."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from arena import chat_services
from generation.models import Generation

pytestmark = pytest.mark.worker


def wait_done(turn: Any, timeout: float = 60) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = chat_services.image_states(turn)
        if all(s.status in {"done", "failed"} for s in states):
            return [s.generation for s in states]
        time.sleep(0.05)
    raise AssertionError("the turn did not finish")


def pixels(job: Generation) -> np.ndarray:
    with job.image.open("rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"), dtype=np.int16)


def test_a_worker_refines_a_chat_image_on_the_tiny_pipeline(models: list[Any], worker: Any) -> None:
    inhouse = next(m for m in models if m.key == "tiny-inhouse")
    conversation = chat_services.conversation_for(owner="me")
    first = chat_services.start_turn(
        conversation=conversation,
        settings=chat_services.check_settings(model=inhouse, prompt="a red fox", seed=4, count=2),
    )
    made = wait_done(first)
    assert [job.status for job in made] == ["done", "done"], worker.log()
    refined_turn = chat_services.start_turn(
        conversation=conversation,
        settings=chat_services.check_settings(model=inhouse, prompt="a red fox at night", seed=4),
        source=made[0],
        strength=0.3,
    )
    (refined,) = wait_done(refined_turn)
    assert refined.status == "done", worker.log()
    assert refined.steps_done == refined.steps
    assert (refined.source_image_id, refined.strength) == (made[0].pk, 0.3)
    result = pixels(refined)
    assert not np.array_equal(result, pixels(made[0]))
    assert not np.array_equal(result, pixels(made[1]))
