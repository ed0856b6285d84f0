"""Attacks on blind battles, played through HTTP with a real worker and the tiny pipelines.

The attacker plays battles on curated prompts (served from the pool) and on typed ones (live),
then tries each oracle that once named both sides: direct chat and compare with the same prompt
and the old public seeds, chat asking for the battle's own seed, images revealed in earlier
battles, and the files' byte lengths. None may match a single battle image.
"""

from __future__ import annotations

import io
import re
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from itertools import combinations
from typing import Any

import numpy as np
import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from arena import services
from arena.models import Battle, ChatImage, Prompt, Vote
from generation import images
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel
from leaderboard.models import PairCount

from .test_battle_worker import HttpClient, wait_until_finished

pytestmark = pytest.mark.worker

JOBS_TIMEOUT_S = 180
# Two images "match" if they are equal, or so close that only batching noise could explain it.
NEAR_MEAN_ABS_LEVELS = 2.0
OLD_PUBLIC_SEEDS = [0, 1, 2, 3]
RANDOM_NAME = re.compile(r"\b[0-9a-f]{32}\.png\b")
URL_SHAPE = re.compile(r"^http://[^/]+/images/[0-9a-f]{32}\.png$")


def post_form(client: HttpClient, url: str, fields: dict[str, Any]) -> int:
    body = urllib.parse.urlencode(fields).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-CSRFToken": client.token,
        "Referer": client.base + "/",
    }
    request = urllib.request.Request(  # noqa: S310 - the test server's http:// URL
        client.base + url, data=body, method="POST", headers=headers
    )
    try:
        with client.opener.open(request, timeout=30) as response:  # noqa: S310 - http only
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_jobs(worker: Any) -> None:
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while Generation.objects.unfinished().exists():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.1)
    assert not Generation.objects.filter(status=Generation.Status.FAILED).exists(), worker.log()


def pixels(data: bytes) -> np.ndarray:
    size, raw = images.decoded_pixels(data)
    return np.frombuffer(raw, dtype=np.uint8).reshape(size[1], size[0], 3).astype(np.int16)


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        # A resized copy is still the same picture: compare at the smaller size.
        w, h = min(a.shape[1], b.shape[1]), min(a.shape[0], b.shape[0])
        a, b = (
            np.asarray(
                Image.fromarray(x.astype(np.uint8)).resize((w, h), Image.Resampling.LANCZOS),
                dtype=np.int16,
            )
            for x in (a, b)
        )
    return bool(np.abs(a - b).mean() < NEAR_MEAN_ABS_LEVELS)


def test_no_oracle_names_a_side_of_a_blind_battle(
    models: list[Any], worker: Any, live_server: Any, settings: Any
) -> None:
    for scope in ("SESSIONS", "BATTLES", "VOTES", "CHAT"):
        setattr(settings, f"ARENA_LIMIT_{scope}", "")
    services.load_prompts()
    curated = list(Prompt.objects.curated().order_by("pk")[:2])
    services.pregenerate(per_pair=2, limit=2)
    wait_for_jobs(worker)
    attacker = HttpClient(live_server.url)

    # --- play blind battles and keep what the attacker sees before each vote -----------------
    played: list[tuple[Battle, list[bytes]]] = []
    prompts = [p.text for p in curated for _ in range(2)] + ["a typed harbour", "a typed kite"]
    instant = 0
    for text in prompts:
        status, created = attacker.post_json("/api/v1/battles", {"prompt": text})
        assert status == 201, created
        instant += created["status"] == "ready"
        state = wait_until_finished(attacker, created["id"])
        assert state["status"] == "ready", worker.log()
        urls = [state["images"]["left"], state["images"]["right"]]
        assert all(URL_SHAPE.match(url) for url in urls), urls
        files, headers = [], []
        for url in urls:
            attacker.seen.clear()
            status, data = attacker.request("GET", url)
            assert status == 200
            files.append(data)
            # Identical but for the date and the random name, which only has the same shape.
            headers.append(
                {
                    k.lower(): RANDOM_NAME.sub("<name>", v)
                    for k, v in attacker.seen[-1][1].items()
                    if k != "Date"
                }
            )
        # The byte-length oracle: one length, one header set, one layout, one size.
        assert len(files[0]) == len(files[1])
        assert headers[0] == headers[1]
        assert images.png_chunk_types(files[0]) == images.png_chunk_types(files[1])
        assert files[0][:33] == files[1][:33]
        battle = Battle.objects.get(public_id=created["id"])
        status, voted = attacker.post_json(
            f"/api/v1/battles/{created['id']}/vote", {"choice": "tie"}
        )
        assert status == 200 and set(voted["models"]) == {"left", "right"}  # now named
        played.append((battle, files))
    assert instant == 4, "the four curated battles came from the pool, ready at submit"

    # Padding did work: left alone, the two files of some battle would differ in length.
    natural = [
        [len(images.encode_png(Image.open(io.BytesIO(f)), width=64, height=64)) for f in files]
        for _, files in played
    ]
    assert any(a != b for a, b in natural), natural

    # --- the chat and compare oracles: same prompt, the old public seeds, any model ----------
    for text in dict.fromkeys(prompts):
        for model in ImageModel.objects.enabled():
            fields = {
                "model": model.key,
                "prompt": text,
                "seed_mode": "fixed",
                "seed": "0",
                "count": str(len(OLD_PUBLIC_SEEDS)),
            }
            assert post_form(attacker, "/chat/turns", fields) == 200
    for battle, _ in played:
        # Asking for the battle's own seed is refused, with a clear error, never a 5xx.
        fields = {"model": battle.model_left.key, "prompt": battle.prompt_text}
        asked = fields | {"seed_mode": "fixed", "seed": str(battle.seed), "count": "1"}
        assert post_form(attacker, "/chat/turns", asked) == 400
        compare = {
            "left": battle.model_left.key,
            "right": battle.model_right.key,
            "prompt": battle.prompt_text,
        }
        assert post_form(attacker, "/compare/start", compare | {"seed": "0"}) == 200
        assert post_form(attacker, "/compare/start", compare | {"seed": str(battle.seed)}) == 400
    wait_for_jobs(worker)

    named: list[bytes] = []
    for chat_image in ChatImage.objects.select_related("generation"):
        status, data = attacker.request("GET", f"/chat/images/{chat_image.generation_id}/download")
        assert status == 200
        named.append(data)
    for compared in Battle.objects.filter(anonymous=False):
        for side in (compared.generation_left, compared.generation_right):
            assert side.seed < 2**31, "compare never ran a battle's seed"
            with side.image.open("rb") as handle:
                named.append(handle.read())
    assert len(named) >= len(dict.fromkeys(prompts)) * len(models) * len(OLD_PUBLIC_SEEDS)

    # --- zero matches: not with any named image, not with any other battle's image ----------
    blind = [pixels(data) for _, files in played for data in files]
    named_pixels = [pixels(data) for data in named]
    # The matcher finds what it looks for: compare re-served chat's seed-0 images from the cache.
    assert any(same_image(a, b) for a, b in combinations(named_pixels, 2))
    for index, picture in enumerate(blind):
        for other in named_pixels:
            assert not same_image(picture, other), f"battle image {index} has a twin"
    for (i, a), (j, b) in combinations(enumerate(blind), 2):
        assert not same_image(a, b), f"battle images {i} and {j} are the same picture"
    sides = [g for b, _ in played for g in (b.generation_left_id, b.generation_right_id)]
    assert not Generation.objects.filter(cached_from__in=sides).exists()


# --- The timing oracle -----------------------------------------------------------------------
FAST_STEPS, SLOW_STEPS = 1, 16
REVEAL_MIN_MS, REVEAL_JITTER_MS = 6000, 1000
POLL_S = 0.05


def plan_pairs(monkeypatch: pytest.MonkeyPatch, pairs: list[tuple[int, int]]) -> None:
    """Matchmaking draws the planned pairs in order (the attacker's labels), sides as planned."""
    planned = iter(pairs)
    monkeypatch.setattr(services, "pick_pair", lambda **_: next(planned))


def auc(positive: list[float], negative: list[float]) -> float:
    """How often a positive case scores above a negative one (ties half): 0.5 is chance."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def watch(client: HttpClient, battle_id: str, started: float) -> tuple[float, float]:
    """Poll as the attacker does: seconds from submit to the images, and to 50% progress."""
    half = None
    while True:
        state = client.get_json(f"/api/v1/battles/{battle_id}")
        elapsed = time.monotonic() - started
        if state["status"] != "generating":
            assert state["status"] == "ready", state
            assert set(state["images"]) == {"left", "right"}, "both images come together"
            return elapsed, elapsed if half is None else half
        assert "images" not in state and "models" not in state, state
        if half is None and state["progress"] >= 50:
            half = elapsed
        assert elapsed < JOBS_TIMEOUT_S, state
        time.sleep(POLL_S)


def play_timed(client: HttpClient, pairs: list[tuple[int, int]], slow: int) -> dict[str, Any]:
    """Play the planned battles one at a time; each one's times, by whether the slow model
    took part."""
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for left, right in pairs:
        started = time.monotonic()
        status, created = client.post_json("/api/v1/battles", {"prompt": "a timed lighthouse"})
        assert status == 201 and created["status"] == "generating", created
        times[slow in (left, right)].append(watch(client, created["id"], started))
        status, voted = client.post_json(f"/api/v1/battles/{created['id']}/vote", {"choice": "tie"})
        assert status == 200, voted
    return {
        "ready": auc([t[0] for t in times[True]], [t[0] for t in times[False]]),
        "half": auc([t[1] for t in times[True]], [t[1] for t in times[False]]),
        "times": times,
    }


@pytest.fixture
def fast_fast_slow(models: list[Any]) -> list[Any]:
    """Two fast models and a slow one, the others disabled (before the worker warms them)."""
    fast_a, fast_b, slow = models[:3]
    ImageModel.objects.exclude(pk__in=[fast_a.pk, fast_b.pk, slow.pk]).update(enabled=False)
    ImageModel.objects.filter(pk__in=[fast_a.pk, fast_b.pk]).update(default_steps=FAST_STEPS)
    ImageModel.objects.filter(pk=slow.pk).update(default_steps=SLOW_STEPS)
    return [fast_a, fast_b, slow]


def test_time_to_ready_and_progress_do_not_tell_the_pair_and_an_early_vote_is_refused(
    fast_fast_slow: list[Any],
    worker: Any,
    live_server: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for scope in ("SESSIONS", "BATTLES", "VOTES"):
        setattr(settings, f"ARENA_LIMIT_{scope}", "")
    settings.ARENA_REVEAL_STEP_MS = 1000
    a, b, c = (m.pk for m in fast_fast_slow)
    # Balanced labels: as many battles with the slow model (on either side) as without.
    rounds = [(a, b), (c, a), (b, a), (b, c), (a, b), (a, c), (b, a), (c, b)]
    attacker = HttpClient(live_server.url)

    # Without a reveal floor the attack works (and warms the worker): the slow pairs are late.
    plan_pairs(monkeypatch, rounds)
    control = play_timed(attacker, rounds, slow=c)
    print(f"timing oracle without a floor: AUC {control['ready']:.2f}")  # noqa: T201
    assert control["ready"] >= 0.8, control

    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = REVEAL_MIN_MS, REVEAL_JITTER_MS

    # --- an early vote: refused while generating, and while done but not yet shown ----------
    plan_pairs(monkeypatch, [(a, b)])
    status, created = attacker.post_json("/api/v1/battles", {"prompt": "a hasty voter"})
    assert status == 201, created
    vote_url = f"/api/v1/battles/{created['id']}/vote"
    counts = PairCount.objects.values_list("wins_a", "wins_b", "ties", "both_bad")
    before = sorted(counts)
    while_generating = attacker.post_json(vote_url, {"choice": "left"})
    battle = Battle.objects.get(public_id=created["id"])
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while battle.status != Battle.Status.READY:
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.02)
        battle.refresh_from_db()
    assert battle.reveal_at is not None and battle.ready_at is not None
    assert battle.ready_at < battle.reveal_at, "the jobs finished before the floor"
    shown = attacker.get_json(f"/api/v1/battles/{created['id']}")
    assert shown["status"] == "generating" and "images" not in shown, shown
    too_early = attacker.post_json(vote_url, {"choice": "left"})
    assert battle.reveal_at > timezone.now(), "the vote came before the floor"
    assert too_early[0] == 409 and too_early[1]["error"]["code"] == "not_ready", too_early
    # The same answer whether the jobs ran or were done: it cannot time them either.
    assert while_generating == too_early
    assert not Vote.objects.filter(battle=battle).exists(), "an early vote is stored nowhere"
    assert Battle.objects.get(pk=battle.pk).status == Battle.Status.READY
    assert sorted(counts) == before, "an early vote is counted nowhere"
    watch(attacker, created["id"], time.monotonic())
    assert timezone.now() >= battle.reveal_at
    assert attacker.post_json(vote_url, {"choice": "left"})[0] == 200
    assert Vote.objects.filter(battle=battle).count() == 1, "the vote cast once shown is taken"

    # --- the attack with the floor: no better than chance ------------------------------------
    floored_rounds = rounds * 3
    plan_pairs(monkeypatch, floored_rounds)
    floored = play_timed(attacker, floored_rounds, slow=c)
    late = Battle.objects.filter(reveal_at__isnull=False, ready_at__gt=F("reveal_at")).count()
    assert late == 0, f"{late} battles finished after their floor: raise REVEAL_MIN_MS"
    print(  # noqa: T201
        f"timing oracle with the floor: AUC ready {floored['ready']:.2f}, "
        f"half {floored['half']:.2f}"
    )
    # 12 against 12 battles: a chance ranking falls outside [0.15, 0.85] about 0.4% of the time.
    assert 0.15 <= floored["ready"] <= 0.85, floored
    assert 0.15 <= floored["half"] <= 0.85, floored
    windows = [
        revealed - created
        for revealed, created in Battle.objects.filter(reveal_at__isnull=False)
        .exclude(pk=battle.pk)
        .values_list("reveal_at", "created_at")
        if revealed is not None
    ]
    # Drawn just before the row is written, so a window can be a few milliseconds short.
    assert min(windows) >= timedelta(milliseconds=REVEAL_MIN_MS - 100)
    assert max(windows) <= timedelta(milliseconds=REVEAL_MIN_MS + REVEAL_JITTER_MS + 100)
    assert len({w.total_seconds() for w in windows}) > 1, "the jitter varies"


# --- Two native sizes --------------------------------------------------------------------------
@pytest.fixture
def big_and_small(models: list[Any]) -> list[Any]:
    """Two models with no size in common, the others disabled (before the worker warms them)."""
    big, small = models[:2]
    ImageModel.objects.exclude(pk__in=[big.pk, small.pk]).update(enabled=False)
    ImageModel.objects.filter(pk=big.pk).update(width=64, height=64, sizes=[])
    ImageModel.objects.filter(pk=small.pk).update(width=48, height=48, sizes=[])
    big.refresh_from_db()
    small.refresh_from_db()
    return [big, small]


def test_a_pair_with_no_common_size_is_shown_at_one_size_downscaled_alike_on_either_side(
    big_and_small: list[Any],
    worker: Any,
    live_server: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for scope in ("SESSIONS", "BATTLES", "VOTES"):
        setattr(settings, f"ARENA_LIMIT_{scope}", "")
    big, small = big_and_small
    plan_pairs(monkeypatch, [(big.pk, small.pk), (small.pk, big.pk)])
    attacker = HttpClient(live_server.url)

    shown: list[tuple[Battle, dict[str, bytes]]] = []
    for text in ("a wide harbour", "a tall harbour"):
        status, created = attacker.post_json("/api/v1/battles", {"prompt": text})
        assert status == 201, created
        state = wait_until_finished(attacker, created["id"])
        assert state["status"] == "ready", worker.log()
        files = {side: attacker.request("GET", url)[1] for side, url in state["images"].items()}
        assert len(files["left"]) == len(files["right"]), "one file length"
        assert images.png_chunk_types(files["left"]) == images.png_chunk_types(files["right"])
        assert {images.decoded_pixels(f)[0] for f in files.values()} == {(48, 48)}
        shown.append((Battle.objects.get(public_id=created["id"]), files))
    assert {b.model_left_id for b, _ in shown} == {big.pk, small.pk}, "each model on each side"

    # Each side made again at its native size, from its own seed, with nothing resampled.
    native: dict[tuple[int, str], Generation] = {}
    with transaction.atomic():
        for battle, _ in shown:
            for side in ("left", "right"):
                job = getattr(battle, f"generation_{side}")
                model = getattr(battle, f"model_{side}")
                again = generation_jobs.create_generation(
                    model=model,
                    prompt=battle.prompt_text,
                    seed=job.seed,
                    size=(model.width, model.height),
                    use_cache=False,
                    purpose=Generation.Purpose.CHAT,
                )
                generation_jobs.enqueue(again)
                native[(battle.pk, side)] = again
    wait_for_jobs(worker)
    for battle, files in shown:
        for side in ("left", "right"):
            again = native[(battle.pk, side)]
            again.refresh_from_db()
            with again.image.open("rb") as handle:
                original = Image.open(handle).convert("RGB")
                original.load()
            seen = pixels(files[side])
            if original.size == (48, 48):
                assert same_image(seen, np.asarray(original, dtype=np.int16)), "kept as made"
                continue
            # The larger side, on whichever side it sits: a smooth (Lanczos) downscale.
            lanczos = original.resize((48, 48), Image.Resampling.LANCZOS)
            nearest = original.resize((48, 48), Image.Resampling.NEAREST)
            assert same_image(seen, np.asarray(lanczos, dtype=np.int16)), side
            assert not same_image(seen, np.asarray(nearest, dtype=np.int16)), side
