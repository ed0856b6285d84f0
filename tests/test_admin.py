"""The admin: who may see it, what each page shows, and what each action does."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from arena import services
from arena.models import Battle, Prompt, Vote
from generation.models import Generation, ImageModel
from leaderboard import services as leaderboard_services
from leaderboard.models import BoardOptions, ImportedBattle, OnlineElo, PairCount, Snapshot

pytestmark = pytest.mark.django_db

ADMIN = "/admin/"
PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a glass teapot"]


def play(*, count: int, finish_battle: Any, seed: int = 0) -> list[Vote]:
    """Battles through the real services, each finished by hand and voted on."""
    rng = random.Random(seed)
    votes = []
    for i in range(count):
        battle = services.create_battle(
            prompt_text=f"{PROMPTS[i % len(PROMPTS)]}, study {i}", owner="owner", rng=rng
        )
        finish_battle(battle)
        choice = rng.choice(["left", "left", "right", "tie", "both_bad"])
        votes.append(
            services.cast_vote(
                battle=battle, choice=choice, voter=services.identity_hash(f"s{i % 4}")
            )
        )
    return votes


@pytest.fixture
def played(models: list[Any], finish_battle: Any) -> list[Vote]:
    votes = play(count=16, finish_battle=finish_battle)
    leaderboard_services.refresh_all()
    return votes


def changelist(model: type[Any]) -> str:
    return f"{ADMIN}{model._meta.app_label}/{model._meta.model_name}/"


def act(client: Client, model: type[Any], action: str, pks: list[int], **extra: str) -> Any:
    """POST an admin action on the changelist, as its Go button does."""
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0", **extra}
    return client.post(changelist(model), data)


def pair_totals() -> dict[tuple[str, int, int], tuple[int, int, int, int]]:
    return {
        (p.category, p.model_a_id, p.model_b_id): (p.wins_a, p.wins_b, p.ties, p.both_bad)
        for p in PairCount.objects.all()
    }


def latest_ratings() -> dict[int, float | None]:
    snapshot = Snapshot.objects.latest_for("")
    assert snapshot is not None
    return {row.model_id: row.rating for row in snapshot.rows.all()}


def read_csv(response: Any) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def admin_pages() -> list[str]:
    models = [Prompt, Battle, Vote, ImageModel, Generation, Snapshot, PairCount, OnlineElo]
    return [ADMIN, *(changelist(m) for m in [*models, ImportedBattle])]


def test_every_admin_list_loads_for_a_staff_user(admin_client: Client, played: list[Vote]) -> None:
    for url in admin_pages():
        assert admin_client.get(url).status_code == 200, url


SEARCHES = [
    (Vote, "q=study"),
    (Vote, "q=not-a-uuid"),
    (Vote, "excluded__exact=0&choice__exact=left"),
    (Vote, "battle__category__exact=other"),
    (Battle, "status__exact=voted&q=ramen"),
    (Generation, "q=42&status__exact=done"),
    (Generation, "q=nothing-like-an-id"),
    (ImageModel, "enabled__exact=1&q=tiny"),
    (Snapshot, "board=overall"),
    (PairCount, "category__exact=other"),
    (ImportedBattle, "anonymous__exact=1"),
]


def test_admin_lists_filter_and_search(admin_client: Client, played: list[Vote]) -> None:
    for model, query in SEARCHES:
        url = f"{changelist(model)}?{query}"
        assert admin_client.get(url).status_code == 200, url


def test_lists_filter_by_model_on_either_side_and_by_date(
    admin_client: Client, played: list[Vote]
) -> None:
    model = ImageModel.objects.first()
    assert model is not None
    year = played[0].created_at.year
    response = admin_client.get(f"{changelist(Vote)}?model={model.pk}&created_at__year={year}")
    either_side = Vote.objects.filter(battle__model_left=model).count()
    either_side += Vote.objects.filter(battle__model_right=model).count()
    assert response.context["cl"].result_count == either_side > 0
    for other in (Battle, PairCount, ImportedBattle):
        assert admin_client.get(f"{changelist(other)}?model={model.pk}").status_code == 200


def test_each_change_page_loads_for_a_staff_user(admin_client: Client, played: list[Vote]) -> None:
    Prompt.objects.create(text="a cat on a windowsill", category="animals")
    for model in (Prompt, Battle, Vote, ImageModel, Generation, Snapshot, PairCount, OnlineElo):
        obj = model.objects.first()
        assert obj is not None
        url = f"{changelist(model)}{obj.pk}/change/"
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize("url", [ADMIN, changelist(Vote), changelist(Snapshot)])
def test_an_anonymous_visitor_is_sent_to_the_login_page(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(f"{ADMIN}login/")


def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_login_page(
    client: Client, django_user_model: Any
) -> None:
    client.force_login(django_user_model.objects.create_user("visitor", password="pw-123456"))
    response = client.get(changelist(Vote))
    assert response.status_code == 302 and response["Location"].startswith(f"{ADMIN}login/")


def test_staff_without_permissions_cannot_open_lists_or_downloads(
    client: Client, django_user_model: Any, played: list[Vote]
) -> None:
    user = django_user_model.objects.create_user("clerk", password="pw-123456", is_staff=True)
    client.force_login(user)
    snapshot = Snapshot.objects.latest_for("")
    assert snapshot is not None
    assert client.get(changelist(Vote)).status_code == 403
    assert client.get(f"{changelist(Snapshot)}{snapshot.pk}/export.csv").status_code == 403
    assert client.get(f"{changelist(Vote)}dataset.csv").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_vote"))
    assert client.get(changelist(Vote)).status_code == 200
    assert client.get(f"{changelist(Vote)}dataset.csv").status_code == 200


def test_votes_and_battles_cannot_be_added_edited_or_deleted(
    admin_client: Client, played: list[Vote]
) -> None:
    vote = played[0]
    url = f"{changelist(Vote)}{vote.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="choice"' not in page and 'name="_save"' not in page
    assert admin_client.post(url, {"choice": "right"}).status_code == 403
    assert admin_client.get(f"{changelist(Vote)}add/").status_code == 403
    assert admin_client.get(f"{changelist(Battle)}{vote.battle_id}/delete/").status_code == 403
    vote.refresh_from_db()
    assert vote.choice == played[0].choice


def test_a_model_key_and_version_are_read_only(admin_client: Client, models: list[Any]) -> None:
    model = models[0]
    page = admin_client.get(f"{changelist(ImageModel)}{model.pk}/change/").content.decode()
    assert 'name="sampling_weight"' in page
    assert 'name="key"' not in page and 'name="version"' not in page


def test_excluding_votes_first_asks_for_a_reason(admin_client: Client, played: list[Vote]) -> None:
    pks = [v.pk for v in played[:3]]
    page = act(admin_client, Vote, "exclude_votes", pks)
    assert page.status_code == 200 and b'id="exclude-votes-form"' in page.content
    blank = act(admin_client, Vote, "exclude_votes", pks, confirm="yes", reason="  ")
    assert blank.status_code == 200 and b"This field is required" in blank.content
    assert not Vote.objects.filter(excluded=True).exists()


@pytest.fixture
def queued_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Board refreshes queued on commit, recorded instead of sent to a broker."""
    from leaderboard import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.refresh, "delay", lambda: queued.append(1))
    return queued


def test_excluding_votes_with_a_reason_changes_the_counts_and_queues_the_board(
    admin_client: Client,
    played: list[Vote],
    queued_refreshes: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    counts, ratings = pair_totals(), latest_ratings()
    board = Snapshot.objects.latest_for("")
    chosen = [v for v in played if v.choice in {"left", "right"}][:6]
    with django_capture_on_commit_callbacks(execute=True):
        response = act(
            admin_client,
            Vote,
            "exclude_votes",
            [v.pk for v in chosen],
            confirm="yes",
            reason="one session voted in bursts",
        )
    assert response.status_code == 302
    excluded = Vote.objects.filter(excluded=True)
    assert set(excluded.values_list("pk", flat=True)) == {v.pk for v in chosen}
    assert set(excluded.values_list("excluded_reason", "excluded_by", "standing")) == {
        ("one session voted in bursts", "admin", Vote.Standing.ADMIN)
    }
    assert sum(map(sum, pair_totals().values())) == sum(map(sum, counts.values())) - 6
    assert Snapshot.objects.latest_for("") == board, "the request fits no board"
    assert queued_refreshes == [1], "the board worker refreshes once the exclusion commits"
    leaderboard_services.refresh_all()  # what the queued task does
    latest = Snapshot.objects.latest_for("")
    assert latest is not None and board is not None and latest.pk != board.pk
    assert latest.votes_used == board.votes_used - 6
    assert latest_ratings() != pytest.approx(ratings)


def test_restoring_votes_puts_the_counts_and_the_board_back(
    admin_client: Client, played: list[Vote], queued_refreshes: list[int]
) -> None:
    counts, ratings = pair_totals(), latest_ratings()
    pks = [v.pk for v in played[:5]]
    services.exclude_votes(votes=Vote.objects.filter(pk__in=pks), reason="test", by="someone")
    assert pair_totals() != counts
    response = act(admin_client, Vote, "restore_votes", pks)
    assert response.status_code == 302
    assert not Vote.objects.filter(excluded=True).exists()
    assert set(Vote.objects.filter(pk__in=pks).values_list("excluded_by", flat=True)) == {"admin"}
    assert pair_totals() == counts
    leaderboard_services.refresh_all()
    assert latest_ratings() == pytest.approx(ratings, abs=1e-9)


def test_restoring_a_vote_that_never_counted_changes_nothing(
    played: list[Vote], queued_refreshes: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    counts = pair_totals()
    gold, counted = played[0], played[1]
    Vote.objects.filter(pk=gold.pk).update(excluded=True, standing=Vote.Standing.GOLD)
    leaderboard_services.rebuild_counts()
    before = pair_totals()
    with django_capture_on_commit_callbacks(execute=True):
        restored = services.restore_votes(
            votes=Vote.objects.filter(pk__in=[gold.pk, counted.pk]), by="admin"
        )
    assert restored == 0 and queued_refreshes == []
    assert pair_totals() == before != counts
    assert Vote.objects.get(pk=gold.pk).standing == Vote.Standing.GOLD
    assert Vote.objects.get(pk=counted.pk).excluded_by == ""


def test_voiding_battles_voids_only_those_generating_or_ready(
    admin_client: Client, models: list[Any], finish_battle: Any, played: list[Vote]
) -> None:
    generating = services.create_battle(prompt_text="a kite", owner="o")
    ready = services.create_battle(prompt_text="a boat", owner="o")
    finish_battle(ready)
    voted = played[0].battle
    response = act(admin_client, Battle, "void_battles", [generating.pk, ready.pk, voted.pk])
    assert response.status_code == 302
    statuses = dict(
        Battle.objects.filter(pk__in=[generating.pk, ready.pk, voted.pk]).values_list(
            "pk", "status"
        )
    )
    assert statuses == {generating.pk: "void", ready.pk: "void", voted.pk: "voted"}
    assert Battle.objects.get(pk=ready.pk).void_reason == "voided by admin"
    assert Battle.objects.get(pk=voted.pk).void_reason == ""


def test_disabling_models_records_who_disabled_them(
    admin_client: Client, models: list[Any]
) -> None:
    pks = [m.pk for m in models[:2]]
    assert act(admin_client, ImageModel, "disable_models", pks).status_code == 302
    rows = ImageModel.objects.filter(pk__in=pks)
    assert set(rows.values_list("enabled", "disabled_reason")) == {(False, "disabled by admin")}
    assert ImageModel.objects.filter(pk=models[2].pk, enabled=True).exists()


def test_enabling_models_clears_the_reason_but_leaves_retired_ones_disabled(
    admin_client: Client, models: list[Any]
) -> None:
    ImageModel.objects.update(enabled=False, disabled_reason="disabled by someone")
    ImageModel.objects.filter(pk=models[1].pk).update(retired=True)
    act(admin_client, ImageModel, "enable_models", [models[0].pk, models[1].pk])
    assert ImageModel.objects.filter(pk=models[0].pk, enabled=True, disabled_reason="").exists()
    assert ImageModel.objects.filter(pk=models[1].pk, enabled=False).exists()


@pytest.mark.parametrize(
    ("model", "column"),
    [(Vote, "battle_public_id"), (Battle, "public_id"), (ImageModel, "key")],
)
def test_selected_rows_export_as_csv(
    admin_client: Client, played: list[Vote], model: type[Any], column: str
) -> None:
    pks = list(model.objects.order_by("pk").values_list("pk", flat=True)[:3])
    response = act(admin_client, model, "export_selected_csv", pks)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 3 and all(row[column] for row in rows)


def test_the_selected_csv_export_guards_spreadsheet_formulas(
    admin_client: Client, models: list[Any]
) -> None:
    ImageModel.objects.filter(pk=models[0].pk).update(
        display_name='=HYPERLINK("http://example.com")', organisation="@SUM(A1)"
    )
    rows = read_csv(act(admin_client, ImageModel, "export_selected_csv", [models[0].pk]))
    assert rows[0]["display_name"] == '\'=HYPERLINK("http://example.com")'
    assert rows[0]["organisation"] == "'@SUM(A1)"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_any_snapshot_downloads_in_each_format(
    admin_client: Client, played: list[Vote], fmt: str
) -> None:
    old = Snapshot.objects.latest_for("")
    assert old is not None
    leaderboard_services.refresh()  # the old board is no longer the latest
    response = admin_client.get(f"{changelist(Snapshot)}{old.pk}/export.{fmt}")
    assert response.status_code == 200
    assert f"leaderboard-overall-{old.pk}.{fmt}" in response["Content-Disposition"]
    keys = {row.model.key for row in old.rows.select_related("model")}
    if fmt == "csv":
        assert f"# id: {old.pk}" in response.content.decode()
    elif fmt == "json":
        document = json.loads(response.content)
        assert document["snapshot"]["id"] == old.pk
        assert {row["key"] for row in document["rows"]} == keys
    else:
        table = pq.read_table(io.BytesIO(response.content))
        assert set(table.column("key").to_pylist()) == keys


def test_the_snapshot_page_offers_the_downloads(admin_client: Client, played: list[Vote]) -> None:
    snapshot = Snapshot.objects.latest_for("")
    assert snapshot is not None
    page = admin_client.get(f"{changelist(Snapshot)}{snapshot.pk}/change/").content.decode()
    for fmt in ("csv", "json", "parquet"):
        assert f"{snapshot.pk}/export.{fmt}" in page
    assert admin_client.get(f"{changelist(Snapshot)}{snapshot.pk}/export.xlsx").status_code == 404


def test_the_vote_list_downloads_the_vote_dataset(admin_client: Client, played: list[Vote]) -> None:
    page = admin_client.get(changelist(Vote)).content.decode()
    assert "dataset.jsonl" in page and "dataset.parquet" in page
    services.exclude_votes(votes=Vote.objects.filter(pk=played[0].pk), reason="x", by="x")
    response = admin_client.get(f"{changelist(Vote)}dataset.jsonl")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert response.streaming  # sent as read, never held whole in memory or on disk
    rows = [json.loads(line) for line in response.getvalue().splitlines()]
    assert len(rows) == len(played) and sum(row["excluded"] for row in rows) == 1
    counted = admin_client.get(f"{changelist(Vote)}dataset.jsonl?excluded=0")
    assert len(counted.getvalue().splitlines()) == len(played) - 1


def test_the_board_options_are_one_row_an_admin_switches(
    admin_client: Client, settings: Any
) -> None:
    settings.LEADERBOARD_ALL_VOTES = True
    assert BoardOptions.all_votes_published(), "without a row the setting decides"
    add = "/admin/leaderboard/boardoptions/add/"
    form = admin_client.get(add).content.decode()
    assert re.search(r'<input[^>]*name="publish_all_votes"[^>]*checked', form), "initially on"

    assert admin_client.post(add, {}).status_code == 302  # saved with the box unticked
    assert not BoardOptions.all_votes_published()
    assert BoardOptions.objects.get().pk == 1
    assert admin_client.get(add).status_code == 403, "a second row cannot be added"

    change = "/admin/leaderboard/boardoptions/1/change/"
    assert admin_client.post(change, {"publish_all_votes": "on"}).status_code == 302
    assert BoardOptions.all_votes_published()
    assert admin_client.post("/admin/leaderboard/boardoptions/1/delete/").status_code == 403


def test_the_board_options_page_shows_the_value_in_force(
    admin_client: Client, settings: Any
) -> None:
    settings.LEADERBOARD_ALL_VOTES = True
    listing = "/admin/leaderboard/boardoptions/"
    first = admin_client.get(listing, follow=True)
    page = first.content.decode()
    assert first.redirect_chain[-1][0].endswith("/add/"), "no row yet: the form to save it"
    assert "All-votes board: on (from the LEADERBOARD_ALL_VOTES setting); tie model: half" in page

    admin_client.post("/admin/leaderboard/boardoptions/add/", {})  # saved switched off
    again = admin_client.get(listing, follow=True)
    assert again.redirect_chain[-1][0].endswith("/1/change/")
    page = again.content.decode()
    assert "All-votes board: off; tie model: half (saved here on" in page
    assert not re.search(r'<input[^>]*name="publish_all_votes"[^>]*checked', page)
