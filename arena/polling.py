"""Cheap answers for battle-status polls: an ETag from one small query, and 304 when unchanged.

A generating battle's page polls its status every 400 ms, and most polls see what the one before
saw (a job waiting in its queue does not move). The ETag is a hash of exactly the columns the
status is drawn from, read with one fixed SQL statement (no ORM query to compile, no template to
render), so an unchanged status costs one indexed lookup. The full answer reads the same version
*before* it reads the battle, so its tag is never newer than its content: a change in between
only costs one more full answer.

Before the images are shown, the tag is drawn from what the voter sees (the status and the one
combined progress figure) and nothing else: a tag that changed when one side's steps moved or its
image was stored would tell, through the timing of 304s, how fast each side runs.

Under the reveal floor the panel's progress is the time elapsed towards the floor, which moves at
every poll. The page animates that itself (``arena/static/arena/app.js``) from the floor's end and
length that the panel carries, so the panel's tag names only the phase ("under the floor") and
every poll under the floor after the first is a 304. What the panel carries there depends on the
submit time and the secret draw of the floor alone, never on the pair. The JSON API still shows
the elapsed progress, and its tag moves with it.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from arena import services
from arena.models import Battle, Vote
from generation.models import Generation

# How often a waiting battle's queue position and estimate are drawn afresh, in seconds.
WAIT_REFRESH_S = 3

# What the status looks like depends on the code that draws it, too.
_DRAWN_BY = hashlib.sha256(
    (Path(__file__).parent / "templates" / "arena" / "_battle_panel.html").read_bytes()
).hexdigest()[:12]


def _statement() -> str:
    battle, job, vote = Battle._meta.db_table, Generation._meta.db_table, Vote._meta.db_table
    columns = "status, steps_done, steps, image"
    left = ", ".join(f"l.{c}" for c in columns.split(", "))
    right = ", ".join(f"r.{c}" for c in columns.split(", "))
    # Table names come from the models, values go in as parameters.
    return (
        f"SELECT b.status, b.anonymous, b.model_left_id, b.model_right_id, "  # noqa: S608
        f"{left}, {right}, v.choice, b.created_at, b.ready_at, b.reveal_at "
        f"FROM {battle} b "
        f"JOIN {job} l ON l.id = b.generation_left_id "
        f"JOIN {job} r ON r.id = b.generation_right_id "
        f"LEFT JOIN {vote} v ON v.battle_id = b.id "
        f"WHERE b.public_id = %s AND b.owner = %s"
    )


def status_etag(*, kind: str, battle_id: UUID, owner: str) -> str | None:
    """The ETag of this owner's battle status as it is now; None if there is no such battle.

    Reading a status changes nothing (the sweeper voids overdue battles), so the columns read
    here decide the answer completely."""
    params = [battle_id.hex if _uses_char_uuid() else battle_id, owner]
    with connection.cursor() as cursor:
        cursor.execute(_statement(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    now = timezone.now()
    under_floor = row[15] is not None and now < _aware(row[15])
    if kind == "panel" and under_floor and row[0] in _UNSHOWN:
        # The page animates the time elapsed itself: one tag for the whole floor.
        return _tag(kind, "under the floor")
    status, progress = services.visible_phase(
        status=row[0],
        created_at=_aware(row[13]),
        ready_at=row[14] and _aware(row[14]),
        reveal_at=row[15] and _aware(row[15]),
        fractions=(_fraction(*row[4:7]), _fraction(*row[8:11])),
        now=now,
    )
    # A side still queued: its place in the queue moves with other people's jobs, which these
    # columns do not see, so the tag also changes every WAIT_REFRESH_S (arena.waiting).
    # (The JSON API does not show the wait: its tag stays put.)
    # Under the reveal floor nothing may depend on the pair, so neither may the tag's refresh.
    queued = row[0] == Battle.Status.GENERATING and Generation.Status.QUEUED in (row[4], row[8])
    bucket = wait_bucket() if queued and kind == "panel" and not under_floor else 0
    shown = row if status != "generating" else None
    return _tag(kind, status, progress, shown, bucket)


# A battle in these states is not shown yet under its floor; voided and voted ones are.
_UNSHOWN = (Battle.Status.GENERATING, Battle.Status.READY)


def _tag(*seen: object) -> str:
    drawn = repr((_DRAWN_BY, *seen))
    return '"' + hashlib.sha256(drawn.encode()).hexdigest()[:32] + '"'


def wait_bucket() -> int:
    """The number of the current WAIT_REFRESH_S interval."""
    return int(time.time() // WAIT_REFRESH_S)


def _aware(value: datetime) -> datetime:
    """A time read with raw SQL: SQLite gives it naive, in UTC."""
    if timezone.is_aware(value):
        return value
    return timezone.make_aware(value, UTC)


def _fraction(status: str, steps_done: int, steps: int) -> float:
    """One side's fraction done, as generation.jobs.progress computes it."""
    if status == Generation.Status.DONE:
        return 1.0
    return min(steps_done / max(steps, 1), 1.0)


def _uses_char_uuid() -> bool:
    """SQLite keeps UUIDs as 32 hex characters; PostgreSQL has a uuid type."""
    return not connection.features.has_native_uuid_field


def matches(request: HttpRequest, tag: str | None) -> bool:
    """Whether the client already holds the answer with this tag."""
    if tag is None:
        return False
    sent = request.headers.get("If-None-Match", "")
    return tag in [t.strip() for t in sent.split(",")]


def not_modified(tag: str) -> HttpResponse:
    return with_etag(HttpResponse(status=304), tag)


ResponseT = TypeVar("ResponseT", bound=HttpResponseBase)


def with_etag(response: ResponseT, tag: str | None) -> ResponseT:
    """Tag a successful answer; the browser revalidates it at every poll."""
    if tag is not None and response.status_code in (200, 304):
        response["ETag"] = tag
        response["Cache-Control"] = "private, no-cache"
    return response
