"""The speed column (median generation time, hardware named) and the quality-against-speed
chart."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from generation.models import Generation, ImageModel
from leaderboard import services, speed
from leaderboard.models import Snapshot

pytestmark = pytest.mark.django_db

H100 = "NVIDIA H100 80GB HBM3"


def timed(
    model: ImageModel,
    ms: int,
    *,
    hardware: str = H100,
    device: str = "cuda",
    purpose: str = Generation.Purpose.BATTLE,
    status: str = Generation.Status.DONE,
    **extra: Any,
) -> Generation:
    return Generation.objects.create(
        model=model,
        prompt="p",
        seed=1,
        steps=4,
        guidance=5.0,
        width=64,
        height=64,
        output_width=64,
        output_height=64,
        status=status,
        purpose=purpose,
        compute_ms=ms,
        hardware=hardware,
        device=device,
        finished_at=timezone.now(),
        **extra,
    )


@pytest.fixture
def board(three_models: list[ImageModel], vote: Any) -> Snapshot:
    vote(three_models, 300, 0)
    return services.refresh_all()[0]


def test_the_median_is_taken_on_the_hardware_most_images_ran_on() -> None:
    found = speed.summarise([(100, "A"), (900, "B"), (300, "A"), (200, "A")])
    assert found == speed.Speed(median_s=0.2, images=3, hardware="A", others=("B",))
    assert speed.summarise([]) is None


def test_an_unnamed_device_is_labelled_from_what_the_job_recorded() -> None:
    assert speed.hardware_label(hardware=H100, device="cuda") == H100
    assert "not recorded" in speed.hardware_label(hardware="", device="cpu")
    assert "HTTP" in speed.hardware_label(hardware="", device="http")


def test_only_freshly_made_battle_and_pool_images_are_timed(
    three_models: list[ImageModel],
) -> None:
    model = three_models[0]
    source = timed(model, 1000)
    timed(model, 3000, purpose=Generation.Purpose.POOL)
    timed(model, 60_000, purpose=Generation.Purpose.CHAT)  # fifty steps in chat: not counted
    timed(model, 0, cached_from=source)  # a reused image took no time
    timed(model, 50, source_image=source)  # a refine runs a fraction of the steps
    timed(model, 99_000, status=Generation.Status.FAILED, failure_kind="model_error")
    found = speed.median_speeds([model.pk])[model.pk]
    assert (found.median_s, found.images, found.hardware) == (2.0, 2, H100)


def test_the_board_shows_each_models_median_time_with_the_hardware_named(
    client: Client, board: Snapshot, three_models: list[ImageModel]
) -> None:
    for ms in (400, 500, 700):
        timed(three_models[0], ms)
    timed(three_models[1], 2500, hardware="AMD EPYC 7R13 Processor", device="cpu")
    html = client.get("/leaderboard/").content.decode()
    assert "Median time" in html
    assert "0.50 s" in html and H100 in html
    assert "2.50 s" in html and "AMD EPYC 7R13 Processor" in html
    assert 'id="speed-plot"' in html


def test_the_quality_against_speed_chart_places_each_timed_model(
    client: Client, board: Snapshot, three_models: list[ImageModel]
) -> None:
    timed(three_models[0], 400)
    timed(three_models[2], 1200)
    response = client.get(f"/leaderboard/speed/{board.pk}.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert "Model 0" in svg and "Model 2" in svg and "Model 1" not in svg  # 1 has no time
    assert H100 in svg and "log scale" in svg


def test_without_any_recorded_time_the_chart_says_so_and_the_page_leaves_it_out(
    client: Client, board: Snapshot
) -> None:
    html = client.get("/leaderboard/").content.decode()
    assert 'id="speed-plot"' not in html
    svg = client.get(f"/leaderboard/speed/{board.pk}.svg").content.decode()
    assert "No rated model has a recorded generation time yet" in svg


def test_the_chart_of_a_missing_board_is_a_404(client: Client, db: None) -> None:
    assert client.get("/leaderboard/speed/999999.svg").status_code == 404
