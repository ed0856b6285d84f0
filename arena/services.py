"""Battle logic: prompts, creating battles, finishing them, and votes."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import random
import secrets
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q, QuerySet
from django.utils import timezone

from arena import gold, pool, statements, voters
from arena.categories import CATEGORIES, classify_prompt
from arena.matchmaking import available_weights, pick_pair
from arena.models import Battle, Prompt, Vote, Voter
from generation import capacity, images
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel
from leaderboard import policy
from leaderboard import services as leaderboard_services

# Shown for every battle that cannot finish, whatever went wrong on which side: the message
# must not tell which model failed.
VOID_MESSAGE = "This battle could not be completed. Please start a new one."
# A vote before both images were shown: the same whether the jobs are running or done.
NOT_READY_MESSAGE = "The images are not shown yet: vote once both are on screen."

# Bidirectional overrides and isolates can make a prompt display differently from what it
# says; zero-width joiners stay allowed because emoji sequences need them.
_FORBIDDEN_FORMAT_CHARS = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


class PromptError(ValueError):
    """The prompt cannot be used; the message says why, in words for the visitor."""


class VoteRejected(Exception):
    """The vote cannot be taken; ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def clean_prompt(text: object) -> str:
    """Normalise a typed prompt, or raise PromptError saying what is wrong with it."""
    if not isinstance(text, str):
        raise PromptError("The prompt must be text.")
    text = unicodedata.normalize("NFC", text)
    for char in text:
        if char in "\t\n\r":
            continue
        if unicodedata.category(char) == "Cc" or char in _FORBIDDEN_FORMAT_CHARS:
            raise PromptError(
                f"The prompt contains a control character (U+{ord(char):04X}); remove it."
            )
    text = " ".join(text.split())
    if not text:
        raise PromptError("Enter a prompt.")
    limit = settings.ARENA_MAX_PROMPT_CHARS
    if len(text) > limit:
        raise PromptError(f"The prompt is {len(text)} characters long; the limit is {limit}.")
    return text


def identity_hash(value: str) -> str:
    """A salted, one-way stand-in for a session key, kept with battles and votes."""
    return _identity_hash(settings.ARENA_VOTER_SALT, value)


@functools.lru_cache(maxsize=4096)
def _identity_hash(salt: str, value: str) -> str:
    # Kept per salt and value: a vote asks for its session's and address's hashes several times.
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def load_prompts(*, path: Path | None = None) -> int:
    """Add the curated prompt file's prompts that are not in the database yet; returns how many."""
    data = tomllib.loads((path or settings.PROMPT_POOL).read_text(encoding="utf-8"))
    added = 0
    for entry in data.get("prompt", []):
        if entry["category"] not in CATEGORIES:
            raise ValueError(f"unknown category {entry['category']!r} in the prompt pool")
        _, created = Prompt.objects.get_or_create(
            text=clean_prompt(entry["text"]),
            defaults={"category": entry["category"], "curated": True},
        )
        added += created
    return added


def draw_prompt(*, rng: random.Random | None = None) -> Prompt | None:
    """A random prompt from the curated pool, or None when the pool is empty."""
    ids = list(Prompt.objects.curated().values_list("pk", flat=True))
    if not ids:
        return None
    return Prompt.objects.get(pk=(rng or random.SystemRandom()).choice(ids))


@dataclass(frozen=True)
class BattleSize:
    """The size each side is generated at, and the one size both files are stored at."""

    left: tuple[int, int]
    right: tuple[int, int]
    output: tuple[int, int]


def battle_size(*, left: ImageModel, right: ImageModel) -> BattleSize:
    """The largest size both models make natively, so neither side is resampled; failing
    that, each at its own size, stored at the smaller width and height."""
    shared = set(left.allowed_sizes()) & set(right.allowed_sizes())
    if shared:
        size = max(shared, key=lambda s: (s[0] * s[1], s))
        return BattleSize(left=size, right=size, output=size)
    return BattleSize(
        left=(left.width, left.height),
        right=(right.width, right.height),
        output=(min(left.width, right.width), min(left.height, right.height)),
    )


@transaction.atomic
def create_battle(*, prompt_text: str, owner: str, rng: random.Random | None = None) -> Battle:
    """Draw two different enabled models, randomise sides, and take both images from the pool
    (a curated prompt, when it can serve the pair) or queue them live on commit.

    Live sides share one secret seed; pool sides each have their own. Either way no image of
    this battle has been, or will be, shown anywhere else.
    """
    rng = rng or random.SystemRandom()
    text = clean_prompt(prompt_text)
    curated = Prompt.objects.filter(text=text).first()
    models = list(ImageModel.objects.enabled().filter(retired=False))
    left_id, right_id = pick_battle_pair(models=models, rng=rng)
    left_id, right_id, gold_side = gold.plan(left_id=left_id, right_id=right_id, rng=rng)
    by_id = {m.pk: m for m in models}
    left_model, right_model = by_id[left_id], by_id[right_id]
    size = battle_size(left=left_model, right=right_model)
    sides = None
    # Only when every drawable model is stocked: an instant battle must not hint at its pair.
    if (
        curated is not None
        and curated.curated
        and curated.active
        and pool.stocked(prompt=curated, models=models)
    ):
        sides = pool.take_pair(
            prompt=curated,
            left=left_model,
            right=right_model,
            left_size=size.left,
            right_size=size.right,
        )
    if sides is not None:
        # Stored at their own sizes; finalising brings both to size.output.
        left, right = sides
    else:
        seed = pool.secret_seed()
        left, right = (
            generation_jobs.create_generation(
                model=model,
                prompt=text,
                seed=seed,
                size=model_size,
                output_size=size.output,
                use_cache=False,
                purpose=Generation.Purpose.BATTLE,
            )
            for model, model_size in ((left_model, size.left), (right_model, size.right))
        )
    # Drawn now, before either job runs, the same way for every pair (see shown_at).
    delay = reveal_delay() if sides is None else None
    reveal_at = timezone.now() + delay if delay else None
    battle = Battle.objects.create(
        prompt_text=text,
        prompt=curated,
        category=curated.category if curated else classify_prompt(text),
        model_left=left_model,
        model_right=right_model,
        generation_left=left,
        generation_right=right,
        # Provenance: the left side's seed; each side's own is on its job.
        seed=left.seed,
        owner=owner,
        gold_side=gold_side,
        reveal_at=reveal_at,
    )
    if sides is not None:
        # Both images came from the pool: the battle is ready before anything is queued, for
        # whichever pair (the pool serves only when every drawable model is stocked), so it is
        # shown at once.
        gold.prepare(battle)
        finalise_battle_images(battle=battle)
        battle.status = Battle.Status.READY
        battle.ready_at = battle.reveal_at = timezone.now()
        battle.save(update_fields=["status", "ready_at", "reveal_at"])
    generation_jobs.enqueue(left)
    generation_jobs.enqueue(right)
    return battle


def reveal_delay() -> timedelta:
    """The reveal floor of a live battle, from submit: ARENA_REVEAL_MIN_MS plus a uniform
    jitter of up to ARENA_REVEAL_JITTER_MS from the operating system's cryptographic source
    (zero, with both set to 0: no floor)."""
    jitter = secrets.randbelow(settings.ARENA_REVEAL_JITTER_MS + 1)
    return timedelta(milliseconds=settings.ARENA_REVEAL_MIN_MS + jitter)


def shown_at(*, ready_at: datetime | None, reveal_at: datetime | None) -> datetime | None:
    """When a ready battle's images may be shown and voted on: its reveal floor, or, for one
    that finished after its floor, the next whole ARENA_REVEAL_STEP_MS past it. None while it
    is not ready; a battle without a floor (named comparisons, older rows) is shown when ready.

    Set above the slowest model's usual time, the floor makes the moment the images appear a
    function of the submit time and a secret draw alone, not of the pair or its sides.
    """
    if ready_at is None or reveal_at is None or ready_at <= reveal_at:
        return reveal_at if ready_at is not None and reveal_at is not None else ready_at
    step = timedelta(milliseconds=settings.ARENA_REVEAL_STEP_MS)
    if not step:
        return ready_at
    return reveal_at + math.ceil((ready_at - reveal_at) / step) * step


def visible_phase(
    *,
    status: str,
    created_at: datetime,
    ready_at: datetime | None,
    reveal_at: datetime | None,
    fractions: tuple[float, float],
    now: datetime,
) -> tuple[str, int]:
    """The status and whole-percent progress a voter sees: a ready battle stays "generating"
    until it is shown. Under a reveal floor the progress is the time elapsed towards the floor,
    one figure that says nothing about either model's speed; without one (the floor set to 0),
    it is the mean of the two sides' fractions."""
    if status == Battle.Status.READY:
        shown = shown_at(ready_at=ready_at, reveal_at=reveal_at)
        if shown is None or shown <= now:
            return status, 100
    elif status != Battle.Status.GENERATING:
        return status, 100 if status == Battle.Status.VOTED else 0
    window = (reveal_at - created_at) if reveal_at is not None else timedelta(0)
    if window > timedelta(0):
        elapsed = max(now - created_at, timedelta(0))
        return Battle.Status.GENERATING, min(int(100 * (elapsed / window)), 99)
    # The mean of the two sides' fractions, not summed steps: a total of steps would hint at
    # which models run.
    return Battle.Status.GENERATING, min(int(sum(fractions) / 2 * 100), 99)


def match_weights(models: list[ImageModel]) -> list[float]:
    """Each model's sampling weight, or zero while no live worker serves its queue or a battle
    job would wait there longer than ARENA_MAX_EXPECTED_WAIT_S."""
    weights = [m.sampling_weight for m in models]
    if not settings.ARENA_MATCH_LIVE_WORKERS:
        return weights
    workers = capacity.serving_workers()
    waits = capacity.expected_waits(models=models, workers=workers)
    return available_weights(
        weights=weights,
        live=[workers.get(m.queue, 0) > 0 for m in models],
        expected_wait_s=[waits[m.pk] for m in models],
        budget_s=settings.ARENA_MAX_EXPECTED_WAIT_S,
    )


def pick_battle_pair(*, models: list[ImageModel], rng: random.Random) -> tuple[int, int]:
    """The next battle's pair under the published policy (leaderboard.policy): the weights of
    match_weights with the new-model boost, and a share of battles between close, uncertain
    neighbours on the board."""
    active = policy.current(models=models, weights=match_weights(models))
    # pick_pair raises NotEnoughModels when fewer than two models can be drawn.
    return policy.draw(active, rng) or pick_pair(ids=active.ids, weights=active.weights, rng=rng)


def finalise_battle_images(*, battle: Battle) -> None:
    """Store both finished images of a battle afresh: one format, one size, one file length,
    no metadata, new random names. Every battle kind goes through this before it is shown.

    The old files are deleted once the transaction commits; nothing else points at them.
    """
    from PIL import Image

    found = Generation.objects.in_bulk([battle.generation_left_id, battle.generation_right_id])
    sides = [found[battle.generation_left_id], found[battle.generation_right_id]]
    pictures = []
    for side in sides:
        with side.image.open("rb") as handle:
            picture = Image.open(handle)
            picture.load()
        pictures.append(picture)
    width = min(side.output_width for side in sides)
    height = min(side.output_height for side in sides)
    files = images.finalise_pair(pictures, width=width, height=height)
    for side, data in zip(sides, files, strict=True):
        storage, old = side.image.storage, str(side.image.name)
        stored = storage.save(f"images/{images.random_image_name()}", ContentFile(data))
        Generation.objects.filter(pk=side.pk).update(
            image=stored,
            image_sha256=images.sha256(data),
            output_width=width,
            output_height=height,
        )
        transaction.on_commit(functools.partial(storage.delete, old))


def on_generation_finished(*, generation: Generation) -> None:
    """Mark the battle ready when both sides are done, or void when either side failed."""
    # Lock the battle row only: the two sides finish in two workers, each holding its own job
    # row, and locking both job rows here too would deadlock them against each other. Once the
    # lock is held, the other side's committed status is visible to the reads below.
    battle = (
        Battle.objects.select_for_update(of=("self",))
        .filter(status=Battle.Status.GENERATING)
        .filter(pk__in=_battle_ids_for(generation))
        .first()
    )
    if battle is None:
        pool_image_made = generation.status == Generation.Status.DONE
        if pool_image_made and generation.purpose == Generation.Purpose.POOL:
            # A pool image is made: top the pool up again, so it fills as fast as the
            # queue has room and never faster (each refill keeps to its cap).
            from arena.tasks import refill_pool

            # Robust: a broker hiccup here must not fail the job that was just recorded.
            transaction.on_commit(refill_pool.delay, robust=True)
        return
    sides = Generation.objects.filter(
        pk__in=[battle.generation_left_id, battle.generation_right_id]
    )
    failed = [g for g in sides if g.status == Generation.Status.FAILED]
    if failed and not _replace_with_reserve(battle, failed[0]):
        _void(battle, reason="a side failed")
    elif not failed and all(g.status == Generation.Status.DONE for g in sides):
        gold.prepare(battle)
        finalise_battle_images(battle=battle)
        battle.status = Battle.Status.READY
        battle.ready_at = timezone.now()
        battle.save(update_fields=["status", "ready_at"])


def _replace_with_reserve(battle: Battle, failed: Generation) -> bool:
    """Give the failed side to the reserve model, once per side; False when none can stand in.

    The new job has the same prompt, seed and output size, so the battle stays fair; both
    images still appear together, and the voter never learns that a side was replaced.
    """
    key = settings.ARENA_RESERVE_MODEL
    if not key or battle.replacements >= 2:
        return False
    left = failed.pk == battle.generation_left_id
    other = battle.model_right_id if left else battle.model_left_id
    reserve = (
        ImageModel.objects.enabled()
        .filter(key=key, retired=False)
        .exclude(pk__in=[other, failed.model_id])
        .first()
    )
    if reserve is None:
        return False
    replacement = generation_jobs.create_generation(
        model=reserve,
        prompt=failed.prompt,
        seed=failed.seed,
        output_size=(failed.output_width, failed.output_height),
    )
    side = "left" if left else "right"
    setattr(battle, f"model_{side}", reserve)
    setattr(battle, f"generation_{side}", replacement)
    battle.replacements += 1
    battle.save(update_fields=[f"model_{side}", f"generation_{side}", "replacements"])
    generation_jobs.enqueue(replacement)
    if replacement.status == Generation.Status.DONE:
        on_generation_finished(generation=replacement)
    return True


def _battle_ids_for(generation: Generation) -> list[int]:
    return list(
        Battle.objects.filter(
            Q(generation_left=generation) | Q(generation_right=generation)
        ).values_list("pk", flat=True)
    )


def _void(battle: Battle, *, reason: str) -> None:
    battle.status = Battle.Status.VOID
    battle.void_reason = reason
    battle.save(update_fields=["status", "void_reason"])


def void_battles(*, battles: QuerySet[Battle], by: str) -> int:
    """Void battles still generating or ready (an admin's decision); returns how many."""
    voidable = battles.filter(status__in=[Battle.Status.GENERATING, Battle.Status.READY])
    # Conditional: a battle voted or voided meanwhile is left as it is.
    return Battle.objects.filter(pk__in=voidable.values("pk")).update(
        status=Battle.Status.VOID, void_reason=f"voided by {by}"[:200]
    )


def void_if_overdue(battle: Battle, *, now: datetime | None = None) -> Battle:
    """Void a battle still generating past the deadline (dead worker, lost message)."""
    now = now or timezone.now()
    deadline = now - timedelta(seconds=settings.ARENA_BATTLE_DEADLINE_S)
    if battle.status == Battle.Status.GENERATING and battle.created_at < deadline:
        with transaction.atomic():
            overdue = Battle.objects.filter(pk=battle.pk, status=Battle.Status.GENERATING).update(
                status=Battle.Status.VOID, void_reason="deadline passed"
            )
            if overdue:
                for generation_id in (battle.generation_left_id, battle.generation_right_id):
                    generation_jobs.fail(
                        generation_id=generation_id,
                        error="battle deadline",
                        kind=Generation.FailureKind.DEADLINE,
                    )
        battle.refresh_from_db()
    return battle


def void_overdue_battles(*, now: datetime) -> int:
    """Void every battle still generating past the deadline, and fail its unfinished jobs;
    the sweeper calls it. Returns how many."""
    deadline = now - timedelta(seconds=settings.ARENA_BATTLE_DEADLINE_S)
    overdue = Battle.objects.filter(status=Battle.Status.GENERATING, created_at__lt=deadline)
    voided = 0
    for battle in overdue:
        voided += void_if_overdue(battle, now=now).status == Battle.Status.VOID
    return voided


@dataclass(frozen=True)
class BattleState:
    """What a voter may know about a battle right now; names only after the vote."""

    status: str
    progress: int
    left_image: str | None = None
    right_image: str | None = None
    message: str = ""
    choice: str | None = None
    left_name: str | None = None
    right_name: str | None = None


def battle_state(battle: Battle) -> BattleState:
    """The voter's view of the battle; progress is a whole percentage across both sides.

    A read only: a battle past its deadline is voided by the sweeper (void_overdue_battles).
    """
    left, right = battle.generation_left, battle.generation_right
    if battle.status == Battle.Status.VOID:
        return BattleState(status="void", progress=0, message=VOID_MESSAGE)
    if battle.status in (Battle.Status.GENERATING, Battle.Status.READY):
        status, progress = visible_phase(
            status=battle.status,
            created_at=battle.created_at,
            ready_at=battle.ready_at,
            reveal_at=battle.reveal_at,
            fractions=(generation_jobs.progress(left), generation_jobs.progress(right)),
            now=timezone.now(),
        )
        if status == Battle.Status.GENERATING:
            return BattleState(status=status, progress=progress)
    state = BattleState(
        status=battle.status,
        progress=100,
        left_image=_file_name(left),
        right_image=_file_name(right),
    )
    if battle.status == Battle.Status.VOTED or not battle.anonymous:
        # A named comparison shows its names from the start; a blind one after the vote.
        state = BattleState(
            status=state.status,
            progress=100,
            left_image=state.left_image,
            right_image=state.right_image,
            choice=battle.vote.choice if battle.status == Battle.Status.VOTED else None,
            left_name=battle.model_left.display_name,
            right_name=battle.model_right.display_name,
        )
    return state


def exclude_votes(*, votes: QuerySet[Vote], reason: str, by: str) -> int:
    """Take votes out of the counts, recording why and by whom; the boards are refreshed by
    the board worker once this commits."""
    if not reason.strip():
        raise ValueError("a reason is required to exclude votes")
    with transaction.atomic():
        changed = votes.filter(excluded=False).update(
            excluded=True,
            standing=Vote.Standing.ADMIN,
            excluded_reason=reason.strip()[:500],
            excluded_by=by[:150],
            excluded_at=timezone.now(),
        )
        if changed:
            _recount_on_commit()
    return changed


def restore_votes(*, votes: QuerySet[Vote], by: str) -> int:
    """Put excluded votes back into the counts; the record keeps who restored them. Votes
    that can never count (gold battles, failed attention checks) stay as they are."""
    with transaction.atomic():
        changed = (
            votes.filter(excluded=True)
            .exclude(standing__in=Vote.NEVER_COUNTED)
            .update(
                excluded=False,
                standing=Vote.Standing.COUNTED,
                excluded_reason=f"restored by {by}"[:500],
                excluded_by=by[:150],
                excluded_at=timezone.now(),
            )
        )
        if changed:
            _recount_on_commit()
    return changed


def _recount_on_commit() -> None:
    """Recount the pairs in this transaction; queue the boards' refresh for after it commits,
    so the web request never fits a board."""
    from leaderboard import tasks as leaderboard_tasks

    leaderboard_services.rebuild_counts()
    transaction.on_commit(leaderboard_tasks.refresh.delay)


def _file_name(generation: Generation) -> str:
    """The stored image's random file name, without its folder."""
    return str(generation.image.name).rsplit("/", 1)[-1]


# The vote path's writes, as fixed statements (arena.statements): the battle's claim, a
# conditional UPDATE whose row count says whether this vote won it, and the vote's INSERT.
_CLAIM = statements.conditional_update(Battle, set_field="status", where=("pk", "status"))
_VOTE_COLUMNS = tuple(f.attname for f in Vote._meta.concrete_fields if not f.primary_key)
_INSERT_VOTE = statements.insert(Vote, _VOTE_COLUMNS)
# The vote's single statement on PostgreSQL: the claim, the INSERT of the vote from the claimed
# row, and (when it counts) the counts' upserts under "the vote was stored", as data-modifying
# CTEs; it answers the new vote's id, NULL when another vote claimed the battle first.
_STORED = "EXISTS (SELECT 1 FROM vote)"


def _one_statement_sql(connection: BaseDatabaseWrapper, *, counts: tuple[str, ...]) -> str:
    pk = connection.ops.quote_name(str(Battle._meta.pk.column))
    insert = statements.insert(Vote, _VOTE_COLUMNS, select_from="claim").sql(connection)
    parts = [f"claim AS ({_CLAIM.sql(connection)} RETURNING {pk})", f"vote AS ({insert})"]
    parts += [f"count{n} AS ({sql} RETURNING 1)" for n, sql in enumerate(counts)]
    answers = ["(SELECT id FROM vote)"]
    answers += [f"(SELECT COUNT(*) FROM count{n})" for n in range(len(counts))]  # noqa: S608
    return f"WITH {', '.join(parts)} SELECT {', '.join(answers)}"


def _one_statement_of(
    connection: BaseDatabaseWrapper, variant: tuple[statements.Statement, ...]
) -> str:
    return _one_statement_sql(connection, counts=tuple(c.sql(connection) for c in variant))


# The vote's single statement for each set of count statements (none, the pair's, the pair's and
# the style row's), written once per process and database, prepared on PostgreSQL.
_ONE_STATEMENT = statements.Variants(_one_statement_of, name="vote")


def cast_vote(
    *,
    battle: Battle,
    choice: str,
    voter: str,
    voter_record: Voter | None = None,
    address: str = "",
    take: voters.Take | None = None,
) -> Vote:
    """Record the one vote a battle may have; when it is in good standing, count it for its
    pair at the same moment. Every vote is stored; ``Vote.standing`` says why one does not
    count.

    The lean path: the checks run on what the caller read (status, when the images were shown,
    the voter's standing and daily caps); then, on PostgreSQL, one statement claims the battle,
    stores the vote and adds it to its counts (elsewhere, and for gold battles, the same writes
    in one transaction). ``battle`` is updated in place (status, vote): the answer needs no
    re-read. ``take`` is the request limit (voters.Take), called once whatever the outcome, so
    a refused vote counts against it too; it also counts the daily caps, in the same round
    trip. A vote that loses the battle to a concurrent one gives back the caps it took.
    """
    if choice not in Vote.Choice.values:
        raise VoteRejected("bad_choice", f"choice must be one of {', '.join(Vote.Choice.values)}")
    battle = void_if_overdue(battle)
    try:
        ms_to_vote = _votable(battle)
    except VoteRejected:
        if take is not None:
            take([])  # limited first, as any vote
        raise
    now = timezone.now()
    # Gold battles spend no cap: their standing is the gold check's.
    by_voter = voters.standing(
        voter=voter_record,
        address=address,
        ms_to_vote=ms_to_vote,
        gold=bool(battle.gold_side),
        take=take,
    )
    standing = gold.outcome(battle=battle, choice=choice) if battle.gold_side else by_voter
    vote = Vote(
        battle=battle,
        choice=choice,
        voter=voter,
        voter_record=voter_record,
        address=address,
        ms_to_vote=ms_to_vote,
        created_at=now,
        excluded=standing != Vote.Standing.COUNTED,
        standing=standing,
    )
    if not _store(battle, vote, choice):
        voters.give_back(voter=voter_record, address=address, standing=by_voter)
        _refuse(Battle.objects.filter(pk=battle.pk).values_list("status", flat=True).first())
    vote._state.adding = False
    vote._state.db = "default"
    battle.status = Battle.Status.VOTED
    battle.vote = vote
    return vote


def _votable(battle: Battle) -> int:
    """The milliseconds since the battle's images were shown; raises VoteRejected when it
    cannot take a vote now (still generating, not shown yet, voted, void)."""
    if battle.status != Battle.Status.READY or battle.ready_at is None:
        # Read again: it may have become ready since the caller read it.
        battle.status, battle.ready_at = (
            Battle.objects.filter(pk=battle.pk).values_list("status", "ready_at").get()
        )
    if battle.status != Battle.Status.READY:
        _refuse(battle.status)
    now = timezone.now()
    shown = shown_at(ready_at=battle.ready_at, reveal_at=battle.reveal_at) or now
    if shown > now:
        # Ready but not shown yet: the same answer as a battle still generating, so an early
        # vote cannot tell when the jobs finished.
        raise VoteRejected("not_ready", NOT_READY_MESSAGE)
    # From when the images were shown, not from when the jobs finished.
    return max(0, int((now - shown).total_seconds() * 1000))


def _store(battle: Battle, vote: Vote, choice: str) -> bool:
    """Claim the battle and store the vote, counted when it is in good standing; False when
    another vote claimed the battle first (nothing is written then)."""
    claim = [Battle.Status.VOTED.value, battle.pk, Battle.Status.READY.value]
    counted = vote.standing == Vote.Standing.COUNTED
    count: dict[str, Any] = {
        "left_id": battle.model_left_id,
        "right_id": battle.model_right_id,
        "category": battle.category,
        "choice": choice,
        "anonymous": battle.anonymous,
        "generation_left_id": battle.generation_left_id,
        "generation_right_id": battle.generation_right_id,
    }
    connection = connections["default"]
    values = [getattr(vote, c) for c in _VOTE_COLUMNS]
    if connection.vendor == "postgresql" and not battle.gold_side:
        counts = leaderboard_services.vote_counts(**count, only_if=_STORED) if counted else []
        statement = _ONE_STATEMENT[tuple(s for s, _ in counts)]
        params = [*claim, *statements.save_params(Vote, _VOTE_COLUMNS, values, connection)]
        for _, count_params in counts:
            params += count_params
        with statements.execute(connection, statement.sql(connection), params) as ran:
            row = ran.fetchone()
        assert row is not None
        vote.pk, *changed = row
        if vote.pk is not None and changed != [1] * len(counts):
            raise ValueError(f"vote {vote.pk} stored but not counted: {changed}")
        return vote.pk is not None
    with transaction.atomic():
        # The row lock this UPDATE takes serialises concurrent votes: the second one finds
        # the status already changed and updates nothing.
        if not statements.run(_CLAIM, claim):
            return False
        vote.pk = statements.run_insert(_INSERT_VOTE, Vote, _VOTE_COLUMNS, values)
        if counted:
            leaderboard_services.count_vote(**count)
        if battle.gold_side:
            gold.record(voter=vote.voter_record, battle=battle, choice=choice)
    return True


def _refuse(status: str | None) -> NoReturn:
    if status == Battle.Status.VOTED:
        raise VoteRejected("already_voted", "This battle already has a vote.")
    if status == Battle.Status.VOID:
        raise VoteRejected("void", VOID_MESSAGE)
    raise VoteRejected("not_ready", NOT_READY_MESSAGE)


@dataclass(frozen=True)
class Pregenerated:
    queued: list[int]
    present: int


def pregenerate(
    *, per_pair: int, model_keys: list[str] | None = None, limit: int | None = None
) -> Pregenerated:
    """Queue pool images (secret seeds, lowest priority) until every curated prompt has
    ``per_pair`` unused ones for each enabled model."""
    result = pool.refill(per_pair=per_pair, model_keys=model_keys, prompt_limit=limit)
    return Pregenerated(queued=result.queued, present=result.present)
