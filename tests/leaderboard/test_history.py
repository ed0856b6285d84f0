"""The periodic refresh stores a board only when its counts changed (or once a day)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from leaderboard import services, views
from leaderboard.models import Snapshot


def test_a_refresh_without_new_votes_stores_no_new_board(db: None, models: list[Any]) -> None:
    ids = [m.pk for m in models[:3]]
    for i in range(6):
        services.count_vote(
            left_id=ids[i % 3], right_id=ids[(i + 1) % 3], category="animals", choice="left"
        )
    first = services.refresh_all(only_if_changed=True)
    again = services.refresh_all(only_if_changed=True)
    assert {s.pk for s in again} == {s.pk for s in first}
    assert Snapshot.objects.count() == len(first)

    services.count_vote(left_id=ids[0], right_id=ids[1], category="animals", choice="tie")
    changed = services.refresh_all(only_if_changed=True)
    assert Snapshot.objects.count() == 2 * len(first)
    assert not {s.pk for s in changed} & {s.pk for s in first}

    # A day on, the board is stored again even without votes: a daily point in its history.
    Snapshot.objects.update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    services.refresh_all(only_if_changed=True)
    assert Snapshot.objects.count() == 3 * len(first)


@pytest.mark.parametrize("option", [{"seed": 7}, {"interval_method": "sandwich"}])
def test_an_explicit_refresh_always_computes(
    db: None, models: list[Any], option: dict[str, Any]
) -> None:
    ids = [m.pk for m in models[:2]]
    services.count_vote(left_id=ids[0], right_id=ids[1], category="animals", choice="left")
    services.count_vote(left_id=ids[1], right_id=ids[0], category="animals", choice="left")
    services.refresh(only_if_changed=True)
    services.refresh(only_if_changed=True, **option)
    assert Snapshot.objects.filter(category="").count() == 2


def test_the_page_offers_past_boards_and_explains_an_empty_category_board(
    client: Any, db: None, models: list[Any]
) -> None:
    ids = [m.pk for m in models[:2]]
    for choice in ["left", "right"]:
        services.count_vote(left_id=ids[0], right_id=ids[1], category="animals", choice=choice)
        services.refresh_all(only_if_changed=True)
    boards = list(Snapshot.objects.filter(category="").order_by("created_at", "pk"))
    assert len(boards) == 2
    page = client.get("/leaderboard/").content.decode()
    assert 'id="past-board"' in page and f'value="{boards[0].pk}"' in page
    past = client.get(f"/leaderboard/?snapshot={boards[0].pk}").content.decode()
    assert 'id="historical"' in past
    # Two votes are far below a category board's minimum: the empty table says why.
    animals = client.get("/leaderboard/?category=animals").content.decode()
    assert 'id="board-empty"' in animals and "votes in the category" in animals


def test_the_rating_over_time_chart_is_drawn_from_the_stored_boards(
    client: Any, db: None, models: list[Any]
) -> None:
    ids = [m.pk for m in models[:3]]
    for round_ in range(3):
        for i in range(6):
            pair = (ids[i % 3], ids[(i + 1) % 3])
            services.count_vote(
                left_id=pair[0],
                right_id=pair[1],
                category="animals",
                choice=("left", "right")[(i + round_) % 2],
            )
        services.refresh(only_if_changed=True)
    boards = list(Snapshot.objects.filter(category="").order_by("created_at", "pk"))
    assert len(boards) == 3
    page = client.get("/leaderboard/").content.decode()
    assert f"/leaderboard/plots/{boards[-1].pk}/history.svg" in page
    svg = client.get(f"/leaderboard/plots/{boards[-1].pk}/history.svg")
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    text = svg.content.decode()
    names = [row.model.display_name for row in boards[-1].rows.select_related("model")]
    assert names and all(name in text for name in names)
    # One point per stored board up to the one shown: a past board's chart stops at it.
    assert [len(line.times) for line in views._board_history(boards[-1])] == [3] * len(names)
    assert [len(line.times) for line in views._board_history(boards[0])] == [1] * len(names)
