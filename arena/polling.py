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

Past the floor the battle is shown at the floor's end plus a whole number of reveal steps
(``services.shown_at``), so the page asks again only at the next step at which the battle could
first be shown, as far as the two sides' progress and their models' fastest recent runs say
(``next_poll``): one figure for the battle, the later of its two sides, on the reveal's own grid
and at most POLL_MAX_MS ahead, so it says nothing the reveal itself will not. The panel's tag
names that step, so a poll that finds the same step is a 304.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from arena import services, statements, visitors
from arena.models import Battle, Vote
from generation import capacity
from generation.models import Generation

# How often a waiting battle's queue position and estimate are drawn afresh, in seconds.
WAIT_REFRESH_S = 3

# What the status looks like depends on the code that draws it, too.
_DRAWN_BY = hashlib.sha256(
    (Path(__file__).parent / "templates" / "arena" / "_battle_panel.html").read_bytes()
).hexdigest()[:12]


def _statement() -> str:
    battle, job, vote = Battle._meta.db_table, Generation._meta.db_table, Vote._meta.db_table
    columns = "status, steps_done, steps, image, started_at"
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
    # (status, anonymous, model ids, left's 5 columns, right's 5, choice, created, ready, reveal)
    row = row[:4] + row[4:8] + row[9:13] + row[14:] + (row[8], row[13])
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
    shown = row[:16] if status != "generating" else None
    asks = None
    if kind == "panel" and status == "generating":
        asks = next_poll(
            status=row[0],
            ready_at=row[14] and _aware(row[14]),
            reveal_at=row[15] and _aware(row[15]),
            sides=(
                _side(row[2], row[4], row[5], row[6], row[16]),
                _side(row[3], row[8], row[9], row[10], row[17]),
            ),
            now=now,
        ).step
    return _tag(kind, status, progress, shown, bucket, asks)


# A battle in these states is not shown yet under its floor; voided and voted ones are.
_UNSHOWN = (Battle.Status.GENERATING, Battle.Status.READY)


def _tag(*seen: object) -> str:
    drawn = repr((_DRAWN_BY, *seen))
    return '"' + hashlib.sha256(drawn.encode()).hexdigest()[:32] + '"'


def wait_bucket() -> int:
    """The number of the current WAIT_REFRESH_S interval."""
    return int(time.time() // WAIT_REFRESH_S)


# --- When the page asks again, past the floor --------------------------------------------------

# The bounds of the wait before the next poll of a generating battle past its floor.
POLL_MIN_MS = 400
POLL_MAX_MS = 4000
# The poll goes this long after the moment it aims at, so it reaches the server past it (as
# arena.views.FLOOR_POLL_MARGIN_MS under the floor).
POLL_MARGIN_MS = 100
# How long a model's fastest recent run is kept in this process before it is read again.
FASTEST_TTL_S = 30.0


@dataclass(frozen=True)
class Side:
    """What one side's job says about when it can be done, at the earliest."""

    status: str
    steps: int
    steps_done: int
    started_at: datetime | None
    # The model's fastest recent fresh run, per step; None when it has none yet.
    step_s: float | None


@dataclass(frozen=True)
class NextPoll:
    """When the page asks again: milliseconds from now, and the reveal step it aims at
    (None off the grid), which the panel's tag names."""

    in_ms: int
    step: int | None

    @property
    def refresh_s(self) -> int:
        """The same wait in whole seconds, at least one: the page without JavaScript reloads
        then (a meta refresh counts whole seconds)."""
        return max(math.ceil(self.in_ms / 1000), 1)


def earliest_done(side: Side, *, now: datetime) -> datetime:
    """The earliest this side can be done: its model's fastest recent run from its start, and
    no sooner than its steps left at that pace; now when nothing is known."""
    if side.status in (Generation.Status.DONE, Generation.Status.FAILED) or side.step_s is None:
        return now
    step = timedelta(seconds=side.step_s)
    if side.status != Generation.Status.RUNNING or side.started_at is None:
        return now + side.steps * step  # still queued: all of it is still to run
    # steps_done is written every PROGRESS_INTERVAL_S: a step may be done but not yet written.
    left = max(side.steps - side.steps_done - 1, 0)
    return max(side.started_at + side.steps * step, now + left * step)


def next_poll(
    *,
    status: str,
    ready_at: datetime | None,
    reveal_at: datetime | None,
    sides: tuple[Side, Side],
    now: datetime,
) -> NextPoll:
    """When a generating battle's page asks again (under its floor: arena.views._floor).

    Aimed at the earliest moment the battle could be shown: a ready battle's shown_at, or else
    the first reveal step at or after the later of its two sides' earliest_done (the max, never
    one side, so swapping the sides changes nothing), plus POLL_MARGIN_MS; bounded to
    [POLL_MIN_MS, POLL_MAX_MS] and kept on the reveal's grid of ARENA_REVEAL_STEP_MS."""
    step = timedelta(milliseconds=settings.ARENA_REVEAL_STEP_MS)
    margin = timedelta(milliseconds=POLL_MARGIN_MS)
    if status == Battle.Status.READY:
        aim = services.shown_at(ready_at=ready_at, reveal_at=reveal_at) or now
    else:
        aim = max(max(earliest_done(s, now=now) for s in sides), now)
    if reveal_at is None or not step:
        # No grid (no floor, or shown as soon as ready): whole POLL_MIN_MS.
        wait_ms = (aim - now + margin) / timedelta(milliseconds=1)
        in_ms = POLL_MIN_MS * max(math.ceil(wait_ms / POLL_MIN_MS), 1)
        return NextPoll(in_ms=min(in_ms, POLL_MAX_MS), step=None)
    # The first step at or after the aim (a ms of slack for rounding), then no further than
    # POLL_MAX_MS from now, and always a step still ahead.
    first = math.ceil((aim - reveal_at - timedelta(milliseconds=1)) / step)
    latest = math.floor((now - reveal_at + timedelta(milliseconds=POLL_MAX_MS) - margin) / step)
    ahead = math.floor((now - reveal_at) / step) + 1
    at = max(min(first, latest), ahead, 0)
    in_ms = math.ceil((reveal_at + at * step + margin - now) / timedelta(milliseconds=1))
    return NextPoll(in_ms=min(max(in_ms, POLL_MIN_MS), POLL_MAX_MS), step=at)


_fastest: dict[int, tuple[float, float | None]] = {}
_fastest_lock = threading.Lock()


def fastest_step_s(model_id: int) -> float | None:
    """A model's fastest recent fresh run, per step, in seconds (kept FASTEST_TTL_S)."""
    now = time.monotonic()
    with _fastest_lock:
        kept = _fastest.get(model_id)
    if kept is not None and now - kept[0] < FASTEST_TTL_S:
        return kept[1]
    runs = Generation.objects.filter(
        model_id=model_id, status=Generation.Status.DONE, cached_from=None, compute_ms__isnull=False
    ).order_by("-finished_at")[: capacity.RECENT_JOBS]
    per_step = [
        ms / 1000 / max(steps, 1)
        for ms, steps in runs.values_list("compute_ms", "steps")
        if ms is not None
    ]
    found = min(per_step) if per_step else None
    with _fastest_lock:
        _fastest[model_id] = (now, found)
    return found


def forget_fastest_runs() -> None:
    """Drop every model's kept fastest run (tests; a process sees new runs within the TTL)."""
    with _fastest_lock:
        _fastest.clear()


def _side(
    model_id: int, status: str, steps_done: int, steps: int, started_at: datetime | None
) -> Side:
    return Side(
        status=status,
        steps=steps,
        steps_done=steps_done,
        started_at=started_at and _aware(started_at),
        step_s=fastest_step_s(model_id),
    )


def battle_next_poll(battle: Battle, *, now: datetime | None = None) -> NextPoll:
    """next_poll for a battle read with its two generations."""
    left, right = battle.generation_left, battle.generation_right
    return next_poll(
        status=battle.status,
        ready_at=battle.ready_at,
        reveal_at=battle.reveal_at,
        sides=(
            _side(battle.model_left_id, left.status, left.steps_done, left.steps, left.started_at),
            _side(
                battle.model_right_id, right.status, right.steps_done, right.steps, right.started_at
            ),
        ),
        now=now or timezone.now(),
    )


# --- The panel's full answer: one statement compiled once ---------------------------------------


def _panel_read(public_id: UUID, owner: str) -> QuerySet[Any]:
    # The columns the vote reads too (visitors.BATTLE_READS): an ORM query of the battle with
    # its four related rows cost more to compile each time than the rest of the answer.
    return (
        Battle.objects.filter(public_id=public_id, owner=owner)
        .order_by()
        .values_list(*visitors.BATTLE_COLUMNS)
    )


_PANEL_READ = statements.PreparedRead(
    _panel_read, fields=[Battle._meta.get_field("public_id"), Battle._meta.get_field("owner")]
)


def panel_battle(*, battle_id: UUID, owner: str) -> Battle:
    """This owner's battle with what its panel shows, in one statement built once per process
    (visitors.battle_for reads every column); another's, a forged id and a missing one are the
    same 404."""
    row = _PANEL_READ.first(battle_id, owner)
    if row is None:
        raise Http404("No Battle matches the given query.")
    return visitors.battle_from(iter(row))


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
