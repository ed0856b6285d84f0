"""The read-only public API (models, history, stats, past boards) against its OpenAPI schema."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest
from django.test import Client

from arena import services as arena_services
from arena.models import Battle, Vote
from generation.models import ImageModel
from leaderboard import api
from leaderboard import services as leaderboard_services
from leaderboard.models import Snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys() -> list[str]:
    """Five model keys; m0 also has a retired first version with another name."""
    ImageModel.objects.create(
        key="m0", version="1", display_name="Old Zero", source="x", retired=True
    )
    for i in range(5):
        ImageModel.objects.create(
            key=f"m{i}",
            version="2" if i == 0 else "1",
            display_name=f"Model {i}",
            organisation=f"Org {i}",
            licence="MIT",
            is_in_house=i == 2,
            source="x",
        )
    return [f"m{i}" for i in range(5)]


@pytest.fixture
def board(keys: list[str]) -> Snapshot:
    """Counts for the three first keys' current versions, and one board per category."""
    models = [ImageModel.objects.get(key=key, retired=False) for key in keys[:3]]
    rng = random.Random(0)
    for _ in range(300):
        left, right = rng.sample(range(3), 2)
        choice = "left" if rng.random() < (0.3 + 0.2 * left) else rng.choice(["right", "tie"])
        leaderboard_services.count_vote(
            left_id=models[left].pk, right_id=models[right].pk, category="animals", choice=choice
        )
    return leaderboard_services.refresh_all()[0]


def check(client: Client, route: str, data: Any, status: str = "200") -> None:
    """Validate a response body against the route's schema in the served document."""
    document = client.get("/api/v1/openapi.json").json()
    response = document["paths"][route]["get"]["responses"][status]
    schema = {
        **response["content"]["application/json"]["schema"],
        "components": document["components"],
    }
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(data)


def test_the_model_list_pages_through_every_key(client: Client, keys: list[str]) -> None:
    url: str | None = "/api/v1/models?page_size=2"
    seen, pages = [], 0
    while url:
        data = client.get(url).json()
        check(client, "/api/v1/models", data)
        assert data["count"] == 5 and len(data["results"]) <= 2
        assert (data["previous"] is None) == (pages == 0)
        seen += [model["key"] for model in data["results"]]
        url, pages = data["next"], pages + 1
    assert seen == keys and pages == 3


def test_a_listed_model_shows_its_current_version_and_all_versions(
    client: Client, keys: list[str]
) -> None:
    first = client.get("/api/v1/models").json()["results"][0]
    assert (first["key"], first["name"], first["current_version"]) == ("m0", "Model 0", "2")
    assert [(v["version"], v["retired"]) for v in first["versions"]] == [("2", False), ("1", True)]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("page_size=201", 400, "bad_page_size"),
        ("page_size=0", 400, "bad_page_size"),
        ("page=0", 400, "bad_page"),
        ("page=two", 400, "bad_page"),
        ("page=4&page_size=2", 404, "bad_page"),
    ],
)
def test_bad_pagination_is_refused_with_an_error_code(
    client: Client, keys: list[str], query: str, status: int, code: str
) -> None:
    response = client.get(f"/api/v1/models?{query}")
    assert response.status_code == status and response.json()["error"]["code"] == code
    check(client, "/api/v1/models", response.json(), str(status))


def test_a_page_size_of_200_is_allowed(client: Client, keys: list[str]) -> None:
    data = client.get("/api/v1/models?page_size=200").json()
    assert len(data["results"]) == 5 and data["next"] is None


def test_a_model_shows_its_row_on_the_latest_overall_board(client: Client, board: Snapshot) -> None:
    data = client.get("/api/v1/models/m2").json()
    check(client, "/api/v1/models/{key}", data)
    row = board.rows.get(model__key="m2")
    assert data["in_house"] is True and data["organisation"] == "Org 2"
    assert data["rating"]["rating"] == pytest.approx(row.rating)
    assert data["rating"]["rank"] == row.rank and data["snapshot"]["id"] == board.pk


def test_a_model_not_on_the_board_has_no_rating(client: Client, board: Snapshot) -> None:
    data = client.get("/api/v1/models/m4").json()
    check(client, "/api/v1/models/{key}", data)
    assert data["rating"] is None and data["snapshot"] is None


def test_an_unknown_model_is_a_404(client: Client, keys: list[str]) -> None:
    for url in ("/api/v1/models/nope", "/api/v1/models/nope/history"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        check(client, "/api/v1/models/{key}", response.json(), "404")


def test_history_lists_each_overall_board_newest_first_in_pages(
    client: Client, board: Snapshot
) -> None:
    later = [leaderboard_services.refresh(), leaderboard_services.refresh()]
    overall = [s.pk for s in reversed(later) if s is not None] + [board.pk]
    first = client.get("/api/v1/models/m1/history?page_size=2").json()
    check(client, "/api/v1/models/{key}/history", first)
    assert first["count"] == 3, "category boards are not in the overall history"
    second = client.get(first["next"]).json()
    check(client, "/api/v1/models/{key}/history", second)
    assert [r["snapshot_id"] for r in first["results"] + second["results"]] == overall
    row = board.rows.get(model__key="m1")
    assert second["results"][0]["rating"] == pytest.approx(row.rating)
    assert second["results"][0]["lower"] == pytest.approx(row.lower)
    assert second["results"][0]["version"] == "1" and second["next"] is None


def test_the_leaderboard_api_serves_a_past_board_by_id(client: Client, board: Snapshot) -> None:
    leaderboard_services.refresh()
    data = client.get(f"/api/v1/leaderboard?snapshot={board.pk}").json()
    check(client, "/api/v1/leaderboard", data)
    assert data["snapshot"]["id"] == board.pk
    category = Snapshot.objects.latest_for("animals")
    assert category is not None
    other = client.get(f"/api/v1/leaderboard?snapshot={category.pk}").json()
    assert other["snapshot"]["category"] == "animals"


@pytest.mark.parametrize(("value", "status"), [("abc", 400), ("999999", 404)])
def test_the_leaderboard_api_refuses_a_bad_or_unknown_snapshot(
    client: Client, board: Snapshot, value: str, status: int
) -> None:
    response = client.get(f"/api/v1/leaderboard?snapshot={value}")
    assert response.status_code == status
    check(client, "/api/v1/leaderboard", response.json(), str(status))


def test_stats_count_votes_ties_both_bad_and_voided_battles(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    choices = ["left", "right", "tie", "both_bad", "tie", "left", "left", "right"]
    voted = []
    for i, choice in enumerate(choices):
        battle = arena_services.create_battle(
            prompt_text=f"a watercolour harbour {i}", owner="o", rng=random.Random(i)
        )
        finish_battle(battle)
        voted.append(arena_services.cast_vote(battle=battle, choice=choice, voter="v"))
    arena_services.exclude_votes(votes=Vote.objects.filter(pk=voted[0].pk), reason="x", by="x")
    Battle.objects.filter(
        pk=arena_services.create_battle(prompt_text="a kite", owner="o").pk
    ).update(status=Battle.Status.VOID)

    data = client.get("/api/v1/stats?days=7").json()
    check(client, "/api/v1/stats", data)
    assert (data["total_votes"], data["counted_votes"], data["excluded_votes"]) == (8, 7, 1)
    assert data["battles_voided"] == 1
    assert [day["votes"] for day in data["votes_per_day"]] == [0] * 6 + [7]
    assert data["outcomes"]["overall"] == {
        "votes": 7,
        "tie_share": pytest.approx(2 / 7),
        "both_bad_share": pytest.approx(1 / 7),
    }
    per_category = data["outcomes"]["categories"]
    assert sum(c["votes"] for c in per_category.values()) == 7


def test_stats_without_votes_have_no_shares(client: Client) -> None:
    data = client.get("/api/v1/stats").json()
    check(client, "/api/v1/stats", data)
    assert len(data["votes_per_day"]) == api.DEFAULT_DAYS
    assert data["outcomes"]["overall"] == {"votes": 0, "tie_share": None, "both_bad_share": None}


@pytest.mark.parametrize("days", ["0", "367", "a week"])
def test_stats_refuse_a_bad_number_of_days(client: Client, days: str) -> None:
    response = client.get("/api/v1/stats", {"days": days})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_days"
    check(client, "/api/v1/stats", response.json(), "400")
