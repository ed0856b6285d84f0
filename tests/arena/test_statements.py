"""The vote path's fixed statements (arena.statements) read and write what the ORM would."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.http import Http404
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from arena import statements, visitors
from arena.models import Battle


def _request_of(client: Client) -> Any:
    request = RequestFactory().get("/")
    request.session = SessionStore(session_key=client.session.session_key)
    return request


@pytest.mark.django_db
def test_the_vote_read_loads_the_same_values_as_the_orm(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302
    battle = Battle.objects.get()
    finish_battle(battle)
    Battle.objects.filter(pk=battle.pk).update(share_token="shared")
    request = _request_of(client)
    with CaptureQueriesContext(connection) as queries:
        found = visitors.battle_to_vote(request, battle.public_id)
        read = [
            (side, [getattr(getattr(found, side) if side else found, n) for n in names])
            for side, _, names in visitors.BATTLE_READS
        ]
    assert len(queries.captured_queries) == 1, "one statement; nothing loads lazily"
    expected = Battle.objects.select_related(
        "generation_left", "generation_right", "model_left", "model_right"
    ).get(pk=battle.pk)
    for side, values in read:
        orm = getattr(expected, side) if side else expected
        names = next(names for s, _, names in visitors.BATTLE_READS if s == side)
        want = [getattr(orm, name) for name in names]
        assert values == want, side
        assert [type(v) for v in values] == [type(v) for v in want], side
    assert found.created_at.tzinfo is not None and isinstance(found.public_id, uuid.UUID)
    voter = found.voter_pk, found.voter_user, found.voter_flagged  # type: ignore[attr-defined]
    assert voter[0] is not None and voter[1:] == (None, False)
    # A deferred field still loads on first use.
    assert found.seed == expected.seed


@pytest.mark.django_db
def test_another_sessions_battle_and_a_forged_id_are_the_same_404(
    client: Client, models: list[Any]
) -> None:
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302
    battle = Battle.objects.get()
    stranger = Client()
    stranger.get("/api/v1/session")
    messages = []
    for request, public_id in (
        (_request_of(stranger), battle.public_id),
        (_request_of(client), uuid.uuid4()),
    ):
        with pytest.raises(Http404) as refused:
            visitors.battle_to_vote(request, public_id)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


@pytest.mark.django_db
def test_a_prepared_read_refuses_a_parameter_that_is_not_an_argument() -> None:
    owner = Battle._meta.get_field("owner")
    # The status is a constant of the query, so it would be a parameter of its own.
    read = statements.PreparedRead(
        lambda who: Battle.objects.filter(owner=who, status="ready").values_list("pk"),
        fields=[owner],
    )
    with pytest.raises(ValueError, match="not one of the arguments"):
        read.first("someone")
    fixed = statements.PreparedRead(
        lambda who: Battle.objects.filter(owner=who).values_list("pk"), fields=[owner]
    )
    assert fixed.first("nobody") is None


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_on_postgresql_the_fixed_statements_run_prepared_unless_turned_off(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302
    battle = Battle.objects.get()
    request = _request_of(client)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.connection.prepare_threshold = 5  # as settings.DATABASES sets it
    for _ in range(6):
        visitors.battle_to_vote(request, battle.public_id)
    reads = [s for s in _prepared() if '"arena_battle"' in s and "$1" in s]
    assert len(reads) == 1, _prepared()
    # Turned off (DATABASE_PREPARED_STATEMENTS=false, for a pooler): the usual cursor, nothing
    # prepared, the same answer.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.connection.prepare_threshold = None
    try:
        for _ in range(6):
            assert visitors.battle_to_vote(request, battle.public_id).pk == battle.pk
        assert _prepared() == []
    finally:
        connection.connection.prepare_threshold = 5


def test_prepared_statements_are_on_by_default_and_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arena import settings as project_settings

    url = "postgres://u@127.0.0.1:5432/arena"
    monkeypatch.delenv("DATABASE_PREPARED_STATEMENTS", raising=False)

    def threshold() -> object:
        options = project_settings.database_from_url(url)["OPTIONS"]
        assert isinstance(options, dict)
        return options["prepare_threshold"]

    assert threshold() == 5
    monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", "false")
    assert threshold() is None


@pytest.mark.django_db
def test_the_vote_read_brings_the_session_so_the_vote_does_not_read_it_again(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    from django.contrib.auth.models import User

    user = User.objects.create_user("reader", password="x")
    client.force_login(user)
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302
    battle = Battle.objects.get()
    finish_battle(battle)
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(f"/api/v1/battles/{battle.public_id}/vote", {"choice": "left"})
    assert answer.status_code == 200, answer.content
    sessions = [q["sql"] for q in queries.captured_queries if '"django_session"' in q["sql"]]
    assert len(sessions) == 1 and '"arena_battle"' in sessions[0]
    # The session it brought is the visitor's: the account it holds is the vote's.
    record = Battle.objects.get().vote.voter_record
    assert record is not None and record.user_id == user.pk
    # An expired session brings nothing: Django then loads it itself and finds none, as a
    # request without the battle read would.
    assert client.post("/battles", {"prompt": "a cat"}).status_code == 302
    second = Battle.objects.order_by("-pk").first()
    assert second is not None
    finish_battle(second)
    from django.contrib.sessions.models import Session

    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    with CaptureQueriesContext(connection) as queries:
        client.post(f"/api/v1/battles/{second.public_id}/vote", {"choice": "left"})
    sessions = [q["sql"] for q in queries.captured_queries if '"django_session"' in q["sql"]]
    assert len(sessions) >= 2 and '"arena_battle"' not in sessions[1]
