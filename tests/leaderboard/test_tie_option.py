"""The Davidson tie model, chosen in the board options: an extra column with its note; the
ratings, intervals and ranks stay ties-as-half (LMArena's scale) either way."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from django.test import Client

from generation.models import ImageModel
from leaderboard import services
from leaderboard.models import BoardOptions, Snapshot, TieModel

pytestmark = pytest.mark.django_db


def tied_board(seed: int = 5) -> list[ImageModel]:
    """Five models; one battle in four tied whatever the strengths, the rest Bradley-Terry."""
    models = [
        ImageModel.objects.create(key=f"t{i}", display_name=f"Tie {i}", source="x")
        for i in range(5)
    ]
    strengths = [-1.0, -0.5, 0.0, 0.5, 1.0]
    rng = random.Random(seed)
    for _ in range(1500):
        left, right = rng.sample(range(5), 2)
        if rng.random() < 0.25:
            choice = "tie"
        else:
            p_left = 1.0 / (1.0 + np.exp(strengths[right] - strengths[left]))
            choice = "left" if rng.random() < p_left else "right"
        services.count_vote(
            left_id=models[left].pk, right_id=models[right].pk, category="", choice=choice
        )
    return models


def ratings_of(snapshot: Snapshot, field: str) -> dict[str, float]:
    return {row.model.key: getattr(row, field) for row in snapshot.rows.select_related("model")}


def test_the_default_board_counts_ties_as_half_and_has_no_davidson_column(
    client: Client,
) -> None:
    tied_board()
    snapshot = services.refresh()
    assert snapshot is not None
    assert snapshot.tie_model == TieModel.HALF and snapshot.davidson_nu is None
    assert all(v is None for v in ratings_of(snapshot, "davidson_rating").values())
    html = client.get("/leaderboard/").content.decode()
    assert 'id="tie-note"' not in html and ">Davidson</th>" not in html
    assert 'href="/leaderboard/policy/"' in html, "the matchmaking policy is linked"
    data = client.get("/api/v1/leaderboard").json()
    assert data["snapshot"]["tie_model"] == "half"
    assert all(row["davidson_rating"] is None for row in data["rows"])


def test_the_davidson_option_adds_its_column_and_note_and_leaves_the_ratings(
    client: Client, settings: Any
) -> None:
    tied_board()
    half = services.refresh()
    assert half is not None
    BoardOptions.objects.create(pk=1, tie_model=TieModel.DAVIDSON)
    # The option is part of what a board is computed from: the periodic refresh stores anew.
    davidson = services.refresh(only_if_changed=True)
    assert davidson is not None and davidson.pk != half.pk
    assert davidson.tie_model == TieModel.DAVIDSON
    assert davidson.davidson_nu is not None and davidson.davidson_nu > 0
    raw, fitted = ratings_of(davidson, "rating"), ratings_of(davidson, "davidson_rating")
    assert ratings_of(half, "rating") == pytest.approx(raw, abs=1e-9), "ratings stay half-win"
    keys = sorted(raw)
    assert sorted(keys, key=raw.__getitem__) == sorted(keys, key=fitted.__getitem__)
    assert np.mean([fitted[k] for k in keys]) == pytest.approx(1000.0)
    # Ties that happen whatever the strengths shrink half-win gaps; Davidson's are wider.
    assert np.ptp([fitted[k] for k in keys]) > 1.1 * np.ptp([raw[k] for k in keys])
    html = client.get("/leaderboard/").content.decode()
    assert 'id="tie-note"' in html and ">Davidson</th>" in html
    assert "half a win" in html and "LMArena" in html
    data = client.get("/api/v1/leaderboard").json()
    assert data["snapshot"]["tie_model"] == "davidson"
    assert data["snapshot"]["davidson_nu"] == pytest.approx(davidson.davidson_nu)
    by_key = {row["key"]: row for row in data["rows"]}
    assert by_key["t4"]["davidson_rating"] == pytest.approx(fitted["t4"])


def test_the_admin_offers_the_tie_model(admin_client: Client) -> None:
    page = admin_client.get("/admin/leaderboard/boardoptions/add/").content.decode()
    assert 'name="tie_model"' in page and "davidson" in page
    response = admin_client.post(
        "/admin/leaderboard/boardoptions/add/",
        {"publish_all_votes": "", "tie_model": "davidson"},
    )
    assert response.status_code == 302
    assert BoardOptions.tie_model_in_use() == TieModel.DAVIDSON
    bad = admin_client.post("/admin/leaderboard/boardoptions/1/change/", {"tie_model": "thirds"})
    assert bad.status_code == 200 and BoardOptions.tie_model_in_use() == TieModel.DAVIDSON
