"""Who is asking: a browser session's salted identity, its voter record, its battles, its
request budget, and the checks a new session passes before its first battle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone

from arena import captcha, challenge, limits, services, statements, voters
from arena.models import Battle, Voter
from generation.models import Generation, ImageModel

SIGN_IN_MESSAGE = "Sign in to vote (at /accounts/login/); your vote then counts for you."


def owner_of(request: HttpRequest) -> str:
    """The salted hash of this browser's session, creating the session if needed (which
    counts against the address's limit on new sessions, and makes its voter record)."""
    if request.session.session_key is None:
        limits.hit(scope="sessions", address=limits.client_address(request))
        request.session.save()
        assert request.session.session_key is not None
        owner = services.identity_hash(request.session.session_key)
        # The voter record is made with the session, so a vote only reads it.
        voters.voter_for(session=owner, address=address_of(request), user_id=None)
        return owner
    assert request.session.session_key is not None
    return services.identity_hash(request.session.session_key)


def address_of(request: HttpRequest) -> str:
    """The salted hash of the client's address (behind trusted proxies: see arena.limits)."""
    return services.identity_hash(f"address:{limits.client_address(request)}")


def account_of(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    return str(user.pk) if user is not None and user.is_authenticated else None


def voter_of(request: HttpRequest, battle: Battle | None = None) -> Voter:
    """This session's voter; read with ``battle`` when battle_to_vote fetched it."""
    account = account_of(request)
    known = None
    if battle is not None and getattr(battle, "voter_pk", None) is not None:
        known = Voter.from_db(
            "default",
            ["id", "session", "user_id", "flagged"],
            [battle.voter_pk, owner_of(request), battle.voter_user, battle.voter_flagged],  # type: ignore[attr-defined]
        )
    return voters.voter_for(
        session=owner_of(request),
        address=address_of(request),
        user_id=int(account) if account else None,
        known=known,
    )


def battle_for(request: HttpRequest, battle_id: UUID) -> Battle:
    """A battle of this session; another session's, a forged id and a missing one are a 404."""
    return get_object_or_404(
        Battle.objects.select_related(
            "generation_left", "generation_right", "model_left", "model_right"
        ),
        public_id=battle_id,
        owner=owner_of(request),
    )


# What a vote and its answer read (cast_vote, battle_state), and the battle panel's poll
# (polling.panel_battle, next_poll), by model and field; every other field is deferred and
# loads on first use.
BATTLE_READS: tuple[tuple[str, type[Model], tuple[str, ...]], ...] = (
    (
        "",
        Battle,
        (
            "id",
            "public_id",
            "prompt_text",
            "category",
            "model_left_id",
            "model_right_id",
            "generation_left_id",
            "generation_right_id",
            "status",
            "anonymous",
            "gold_side",
            "created_at",
            "ready_at",
            "share_token",
            "reveal_at",
        ),
    ),
    *(
        (
            side,
            Generation,
            (
                "id",
                "status",
                "image",
                "steps",
                "steps_done",
                "started_at",
                "output_width",
                "output_height",
            ),
        )
        for side in ("generation_left", "generation_right")
    ),
    *((side, ImageModel, ("id", "display_name")) for side in ("model_left", "model_right")),
)
BATTLE_COLUMNS = [
    f"{side}__{name}" if side else name for side, _, names in BATTLE_READS for name in names
]
_VOTER_COLUMNS = ("voter_pk", "voter_user", "voter_flagged")


def battle_from(values: Iterator[Any]) -> Battle:
    """The battle with its generations and models, from the BATTLE_COLUMNS of a row (taken
    from ``values`` in order), as if the ORM had loaded them."""
    loaded: dict[str, Any] = {}
    for side, model, names in BATTLE_READS:
        loaded[side] = statements.instance(model, "default", {n: next(values) for n in names})
    found: Battle = loaded.pop("")
    for side, related in loaded.items():
        Battle._meta.get_field(side).set_cached_value(found, related)  # type: ignore[union-attr]
    return found


def _vote_read(public_id: UUID, owner: str, session_key: str, now: datetime) -> QuerySet[Battle]:
    voter = Voter.objects.filter(session=OuterRef("owner"))
    # The visitor's session row too (arena.sessions), so the vote reads it in this round trip.
    session = Session.objects.filter(session_key=session_key, expire_date__gt=now)
    return (
        Battle.objects.filter(public_id=public_id, owner=owner)
        .annotate(
            voter_pk=Subquery(voter.values("pk")[:1]),
            voter_user=Subquery(voter.values("user_id")[:1]),
            voter_flagged=Subquery(voter.values("flagged")[:1]),
            session_data=Subquery(session.values("session_data")[:1]),
        )
        .order_by()
        .values_list(*BATTLE_COLUMNS, *_VOTER_COLUMNS, "session_data")
    )


_VOTE_READ = statements.PreparedRead(
    _vote_read,
    fields=[
        Battle._meta.get_field("public_id"),
        Battle._meta.get_field("owner"),
        Session._meta.get_field("session_key"),
        Session._meta.get_field("expire_date"),
    ],
)


def battle_to_vote(request: HttpRequest, battle_id: UUID) -> Battle:
    """battle_for with only the columns the vote path reads, its owner's voter record
    (``voter_pk``, ``voter_user``, ``voter_flagged``) and the visitor's session row, in one
    statement built once per process; another session's battle, a forged id and a missing one
    are the same 404."""
    owner = owner_of(request)
    row = _VOTE_READ.first(battle_id, owner, request.session.session_key, timezone.now())
    if row is None:
        raise Http404("No Battle matches the given query.")
    values = iter(row)
    found = battle_from(values)
    for name in _VOTER_COLUMNS:
        setattr(found, name, next(values))
    session_data = next(values)
    preload = getattr(request.session, "preload", None)
    if session_data is not None and preload is not None:
        preload(session_data)
    return found


def limit(request: HttpRequest, scope: str) -> None:
    """Count a request against the scope's limits for this session, address and account."""
    limits.hit(
        scope=scope,
        session=owner_of(request),
        address=limits.client_address(request),
        account=account_of(request),
    )


def limit_images(request: HttpRequest) -> None:
    """Count a direct-chat image request against its limits."""
    limit(request, "chat")


def check_new_session(request: HttpRequest, *, altcha: object, captcha_token: object) -> None:
    """The gate before a session's first battle: Turnstile/hCaptcha when configured, else the
    proof of work; signed-in people skip it. Raises challenge.ChallengeFailed."""
    if account_of(request) is not None:
        return
    if captcha.enabled():
        captcha.require(
            session=request.session,
            token=captcha_token,
            address=limits.client_address(request),
        )
        return
    if challenge.require(session=request.session, payload=altcha):
        Voter.objects.filter(pk=voter_of(request).pk).update(verified_at=timezone.now())


def cast(request: HttpRequest, found: Battle, choice: str) -> None:
    """This visitor's vote on ``found`` (updated in place; nothing is read back), counted
    against the votes' request limit (and the daily caps, in the same round trip); raises
    limits.RateLimited or services.VoteRejected."""

    def take(counters: list[str]) -> list[int]:
        return limits.hit(
            scope="votes",
            session=owner_of(request),
            address=limits.client_address(request),
            account=account_of(request),
            counters=counters,
        )

    if settings.ARENA_REQUIRE_SIGN_IN and account_of(request) is None:
        take([])
        raise services.VoteRejected("sign_in_required", SIGN_IN_MESSAGE)
    services.cast_vote(
        battle=found,
        choice=choice,
        voter=owner_of(request),
        voter_record=voter_of(request, found),
        address=address_of(request),
        take=take,
    )


def vote_status(code: str) -> int:
    """The HTTP status of a refused vote."""
    return {"bad_choice": 400, "sign_in_required": 403}.get(code, 409)
