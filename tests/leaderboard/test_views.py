"""The leaderboard page, its plots, the leaderboard API and the OpenAPI description."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.test import Client

from generation.models import ImageModel
from leaderboard import services
from leaderboard.models import BoardOptions, Snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def board(three_models: list[ImageModel], vote: Any) -> Snapshot:
    vote(three_models, 300, 0)
    snapshots = services.refresh_all()
    return snapshots[0]


def openapi_validator(client: Client, schema_ref: str) -> jsonschema.Draft202012Validator:
    document = client.get("/api/v1/openapi.json").json()
    schema = {"$ref": schema_ref, "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_the_page_shows_rank_rating_interval_votes_and_badges(
    client: Client, board: Snapshot
) -> None:
    html = client.get("/leaderboard/").content.decode()
    for row in board.rows.select_related("model"):
        assert row.model.display_name in html and row.model.organisation in html
        assert f"{row.rating:.0f}" in html
    assert "in-house" in html and "provisional" in html
    assert (
        "Rank (UB)" in html and "95% CI" in html and f"{board.votes_used} anonymous votes" in html
    )


def test_the_page_offers_each_category_board(client: Client, board: Snapshot) -> None:
    html = client.get("/leaderboard/").content.decode()
    assert "?category=animals" in html
    assert client.get("/leaderboard/?category=animals").status_code == 200
    assert client.get("/leaderboard/?category=nonsense").status_code == 404


def test_the_page_without_votes_says_so(client: Client) -> None:
    assert 'id="no-board"' in client.get("/leaderboard/").content.decode()


@pytest.mark.parametrize("kind", ["ratings", "win_rate", "battles"])
def test_each_plot_is_an_svg_naming_the_models(client: Client, board: Snapshot, kind: str) -> None:
    response = client.get(f"/leaderboard/plots/{board.pk}/{kind}.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.lstrip().startswith("<?xml") and "Model 0" in svg and "Model 2" in svg


def test_an_unknown_plot_is_a_404(client: Client, board: Snapshot) -> None:
    assert client.get(f"/leaderboard/plots/{board.pk}/pie.svg").status_code == 404
    assert client.get("/leaderboard/plots/999999/ratings.svg").status_code == 404


def test_the_api_serves_the_latest_board_with_its_provenance(
    client: Client, board: Snapshot
) -> None:
    data = client.get("/api/v1/leaderboard").json()
    assert data["snapshot"]["id"] == board.pk and data["snapshot"]["category"] == "overall"
    assert data["snapshot"]["votes_used"] == 300
    assert [row["rank"] for row in data["rows"]] == sorted(row["rank"] for row in data["rows"])
    ratings = {row["key"]: row["rating"] for row in data["rows"]}
    stored = {row.model.key: row.rating for row in board.rows.select_related("model")}
    assert ratings == pytest.approx(stored)
    category = client.get("/api/v1/leaderboard?category=animals").json()
    assert category["snapshot"]["category"] == "animals"


def test_the_api_refuses_an_unknown_category(client: Client) -> None:
    response = client.get("/api/v1/leaderboard?category=nonsense")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_category"


def test_the_leaderboard_api_matches_its_openapi_schema(client: Client, board: Snapshot) -> None:
    document = client.get("/api/v1/openapi.json").json()
    response_schema = document["paths"]["/api/v1/leaderboard"]["get"]["responses"]["200"]
    schema = {
        **response_schema["content"]["application/json"]["schema"],
        "components": document["components"],
    }
    jsonschema.Draft202012Validator(schema).validate(client.get("/api/v1/leaderboard").json())


def test_the_battle_api_matches_its_openapi_schema(models: list[Any], finish_battle: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/v1/session").json()["csrf_token"]
    validator = openapi_validator(client, "#/components/schemas/Battle")
    created = client.post(
        "/api/v1/battles",
        {"prompt": "a kite"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    ).json()
    validator.validate(created)
    from arena.models import Battle

    finish_battle(Battle.objects.get(public_id=created["id"]))
    validator.validate(client.get(f"/api/v1/battles/{created['id']}").json())
    voted = client.post(
        f"/api/v1/battles/{created['id']}/vote",
        {"choice": "tie"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    ).json()
    validator.validate(voted)
    error = client.post(
        f"/api/v1/battles/{created['id']}/vote",
        {"choice": "tie"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    ).json()
    openapi_validator(client, "#/components/schemas/Error").validate(error)


def test_the_all_votes_board_is_offered_only_when_turned_on(
    client: Client, board: Snapshot, settings: Any
) -> None:
    assert "?votes=all" not in client.get("/leaderboard/").content.decode()
    settings.LEADERBOARD_ALL_VOTES = True
    services.refresh_all()
    html = client.get("/leaderboard/?votes=all").content.decode()
    assert "?votes=all" in html and "named comparisons from direct chat included" in html


def test_the_admins_switch_overrides_the_setting_for_the_all_votes_board(
    client: Client, board: Snapshot, settings: Any
) -> None:
    settings.LEADERBOARD_ALL_VOTES = True
    BoardOptions.objects.create(pk=1, publish_all_votes=False)
    services.refresh_all()
    assert not Snapshot.objects.filter(all_votes=True).exists()
    assert "?votes=all" not in client.get("/leaderboard/").content.decode()

    settings.LEADERBOARD_ALL_VOTES = False
    BoardOptions.objects.filter(pk=1).update(publish_all_votes=True)
    services.refresh_all()
    assert Snapshot.objects.filter(all_votes=True).exists()
    html = client.get("/leaderboard/?votes=all").content.decode()
    assert "?votes=all" in html and "named comparisons from direct chat included" in html

    # Turned off again: hidden at once, before any refresh.
    BoardOptions.objects.filter(pk=1).update(publish_all_votes=False)
    html = client.get("/leaderboard/?votes=all").content.decode()
    assert 'href="?votes=all"' not in html and "named comparisons" not in html


def test_the_page_marks_open_intervals_names_the_groups_and_states_the_provisional_rule(
    client: Client, three_models: list[ImageModel]
) -> None:
    extra = ImageModel.objects.create(key="m3", display_name="Model 3", source="x")
    m0, m1, m2 = three_models
    for _ in range(10):  # m0 beats m1 and m1 beats m0: bounded; m2 never beats m0: open below
        services.count_vote(left_id=m0.pk, right_id=m1.pk, category="animals", choice="left")
        services.count_vote(left_id=m0.pk, right_id=m1.pk, category="animals", choice="right")
        services.count_vote(left_id=m0.pk, right_id=m2.pk, category="animals", choice="left")
    for _ in range(3):  # m3 only ever tied: no bound either way
        services.count_vote(left_id=extra.pk, right_id=m2.pk, category="animals", choice="tie")
    far = [
        ImageModel.objects.create(key=f"far{i}", display_name=f"Far {i}", source="x")
        for i in (0, 1)
    ]
    for choice in ("left", "right"):  # a second group that never met the first
        services.count_vote(
            left_id=far[0].pk, right_id=far[1].pk, category="animals", choice=choice
        )
    snapshot = services.refresh()
    assert snapshot is not None
    html = client.get("/leaderboard/").content.decode()
    assert "open: never beat the rest" in html
    assert "open: not bounded by the votes" in html
    assert "A model is marked provisional until its 95% interval is at most" in html
    assert "Votes to flip" in html and "Rank set" in html
    assert "Group 1: " in html and "Group 2: " in html and "Far 0, Far 1" in html
    response = client.get("/api/v1/leaderboard").json()
    rows = {row["key"]: row for row in response["rows"]}
    assert rows["m2"]["bound"] == "below" and rows["m2"]["rating"] is None
    assert rows["m2"]["lower"] is None and rows["m2"]["upper"] is not None
    assert rows["m3"]["bound"] == "unbounded"
