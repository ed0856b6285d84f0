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
from itertools import combinations
from typing import Any

import numpy as np
import pytest
from PIL import Image

from arena import services
from arena.models import Battle, ChatImage, Prompt
from generation import images
from generation.models import Generation, ImageModel

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
