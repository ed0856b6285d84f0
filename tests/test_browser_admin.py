"""The admin in a real Chromium: sign in through the form, open a board, download its CSV."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Any

import pytest

from generation.models import ImageModel
from leaderboard import services as leaderboard_services
from leaderboard.models import Snapshot

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "a-long-test-password-4711"


@pytest.fixture
def snapshot(transactional_db: None) -> Snapshot:
    models = [
        ImageModel.objects.create(key=f"b{i}", display_name=name, source="x")
        for i, name in enumerate(["Our Model v3", "=Formula Model", "FLUX.1 schnell"])
    ]
    rng = random.Random(3)
    for _ in range(200):
        left, right = rng.sample(range(3), 2)
        leaderboard_services.count_vote(
            left_id=models[left].pk,
            right_id=models[right].pk,
            category="animals",
            choice=rng.choice(["left", "right", "tie"]),
        )
    board = leaderboard_services.refresh()
    assert board is not None
    return board


def test_a_staff_user_signs_in_opens_a_board_and_downloads_its_csv(
    browser: Any, live_server: Any, snapshot: Snapshot, django_user_model: Any
) -> None:
    django_user_model.objects.create_superuser("curator", "curator@example.org", PASSWORD)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/leaderboard/snapshot/")
    assert "/admin/login/" in page.url, "the admin asks anonymous visitors to sign in"
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    page.click(f"#result_list a[href$='/{snapshot.pk}/change/']")
    page.wait_for_selector("#download-csv")
    assert "Our Model v3" in page.inner_text("#content")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-snapshot.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    assert download.suggested_filename == f"leaderboard-overall-{snapshot.pk}.csv"
    text = Path(download.path()).read_text()
    assert f"# id: {snapshot.pk}" in text and "# votes_used: 200" in text
    table = list(
        csv.DictReader(
            io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#")))
        )
    )
    names = {row["model"] for row in table}
    assert names == {"Our Model v3", "'=Formula Model", "FLUX.1 schnell"}
    ratings = {row.model.display_name: row.rating for row in snapshot.rows.select_related("model")}
    assert float(next(r for r in table if r["model"] == "Our Model v3")["rating"]) == (
        pytest.approx(ratings["Our Model v3"])
    )
    context.close()
