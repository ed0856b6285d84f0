"""Past boards on the leaderboard page, and each model's page with its rating over time."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from generation.models import ImageModel
from leaderboard import plots, services, views
from leaderboard.models import Snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def boards(three_models: list[ImageModel], vote: Any) -> list[Snapshot]:
    """Three overall boards, 100 votes apart, each with its category board."""
    made = []
    for seed in range(3):
        vote(three_models, 100, seed)
        made.append(services.refresh_all()[0])
    return made


def test_a_past_board_is_shown_and_marked_as_historical(
    client: Client, boards: list[Snapshot]
) -> None:
    html = client.get(f"/leaderboard/?snapshot={boards[0].pk}").content.decode()
    assert 'id="historical"' in html and "A past board" in html
    assert f"{boards[0].votes_used} anonymous votes" in html
    assert "hx-trigger" not in html, "a past board does not poll for updates"
    for row in boards[0].rows.all():
        assert f"{row.rating:.0f}" in html


def test_the_latest_board_is_not_marked_as_historical(
    client: Client, boards: list[Snapshot]
) -> None:
    for url in ("/leaderboard/", f"/leaderboard/?snapshot={boards[-1].pk}"):
        html = client.get(url).content.decode()
        assert 'id="historical"' not in html and "hx-trigger" in html


@pytest.mark.parametrize("value", ["999999", "abc", "-1"])
def test_an_unknown_snapshot_is_a_404(client: Client, boards: list[Snapshot], value: str) -> None:
    assert client.get(f"/leaderboard/?snapshot={value}").status_code == 404


def test_the_board_links_each_model_to_its_page(client: Client, boards: list[Snapshot]) -> None:
    html = client.get("/leaderboard/").content.decode()
    for key in ("m0", "m1", "m2"):
        assert f'href="/leaderboard/models/{key}/"' in html


def test_a_model_page_shows_details_versions_rating_and_plot(
    client: Client, boards: list[Snapshot]
) -> None:
    ImageModel.objects.create(key="m2", version="0", display_name="Model 2 beta", source="x")
    ImageModel.objects.filter(key="m2", version="0").update(retired=True, enabled=False)
    html = client.get("/leaderboard/models/m2/").content.decode()
    assert "Model 2" in html and "Org 2" in html and "Apache-2.0" in html and "in-house" in html
    assert "Model 2 beta" in html and "retired" in html
    row = boards[-1].rows.get(model__key="m2")
    assert f"{row.rating:.0f}" in html
    assert 'src="/leaderboard/models/m2/history.svg"' in html


def test_a_model_without_boards_says_so_and_has_no_plot(client: Client, db: None) -> None:
    ImageModel.objects.create(key="lonely", display_name="Lonely", source="x")
    html = client.get("/leaderboard/models/lonely/").content.decode()
    assert 'id="no-rating"' in html and "history.svg" not in html


def test_an_unknown_model_page_is_a_404(client: Client, db: None) -> None:
    assert client.get("/leaderboard/models/nope/").status_code == 404
    assert client.get("/leaderboard/models/nope/history.svg").status_code == 404


def test_the_history_plot_is_an_svg_rendered_once_per_new_board(
    client: Client, boards: list[Snapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[Any] = []
    real = plots.rating_history_plot

    def counting(**kwargs: Any) -> str:
        rendered.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(plots, "rating_history_plot", counting)
    first = client.get("/leaderboard/models/m1/history.svg")
    assert first.status_code == 200 and first["Content-Type"] == "image/svg+xml"
    assert first.content.lstrip().startswith(b"<?xml") and b"<svg" in first.content
    assert client.get("/leaderboard/models/m1/history.svg").content == first.content
    assert len(rendered) == 1
    services.refresh()
    client.get("/leaderboard/models/m1/history.svg")
    assert len(rendered) == 2


def test_the_history_has_one_point_per_overall_board_with_its_interval(
    boards: list[Snapshot],
) -> None:
    [line] = views._history_lines("m0")
    rows = [board.rows.get(model__key="m0") for board in boards]
    assert list(line.ratings) == [row.rating for row in rows]
    assert list(line.lower) == [row.lower for row in rows]
    assert list(line.upper) == [row.upper for row in rows]
    assert list(line.times) == [board.created_at for board in boards]


def test_a_long_history_is_thinned_but_keeps_the_latest_board(
    boards: list[Snapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(4):
        services.refresh()
    monkeypatch.setattr(views, "HISTORY_POINTS", 3)
    [line] = views._history_lines("m0")
    latest = Snapshot.objects.latest_for("")
    assert latest is not None
    assert len(line.times) <= 4 and line.times[-1] == latest.created_at


def test_each_version_gets_its_own_line(boards: list[Snapshot], vote: Any) -> None:
    newer = ImageModel.objects.create(key="m0", version="2", display_name="Model 0", source="x")
    vote([newer, *ImageModel.objects.filter(key__in=["m1", "m2"])], 100, seed=9)
    services.refresh()
    lines = views._history_lines("m0")
    assert [line.label for line in lines] == ["version 1", "version 2"]
    assert len(lines[1].times) == 1
    assert plots.rating_history_plot(lines=lines).count("version ") >= 2
