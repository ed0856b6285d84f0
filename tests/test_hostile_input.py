"""Hostile input never gets a 5xx: a corpus of odd digits, NUL bytes, lone surrogates, deep
JSON, huge numbers and wrong methods, replayed against every page and API endpoint.

It runs on PostgreSQL (CI), where a NUL byte or an out-of-range integer that reaches the
database is an error, not a quiet miss as on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from arena.models import Battle, ChatTurn
from generation.models import Generation
from leaderboard import services as leaderboard_services
from leaderboard.models import Snapshot

from .conftest import require

pytestmark = pytest.mark.django_db

# Numbers that look like numbers: isdigit() is true for the superscript and the Arabic-Indic
# digits; int() refuses the first and accepts the second.
ODD_NUMBERS = [
    "²",
    "١٢",
    "0",
    "-1",
    "1e3",
    "1.5",
    " 7",
    "NaN",
    "inf",
    str(2**63),
    str(2**64 + 1),
    "9" * 400,
    "\x00",
    "1\x00",
    "%00",
    "",
]
ODD_TEXT = ["\x00", "a\x00b", "\ud800", "\udfff", "é" * 5000, "<script>", "' OR 1=1 --"]
DEEP_JSON = "[" * 100_000 + "]" * 100_000
WRONG_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@pytest.fixture
def world(models: list[Any], finish_battle: Any, settings: Any) -> dict[str, Any]:
    """A session with a voted battle, a ready one, a chat turn and its image, and boards (the
    category boards hide every model, so their plots have nothing to draw)."""
    require(connection.vendor == "postgresql", "the hostile-input corpus runs on PostgreSQL")
    settings.LEADERBOARD_CATEGORY_MIN_VOTES = 10**6
    # A 500 comes back as a status to collect, not as the exception.
    client = Client(raise_request_exception=False)
    token = client.get("/api/v1/session").json()["csrf_token"]
    battles = []
    for prompt in ("a red fox in snow", "a lighthouse at dawn"):
        created = client.post(
            "/api/v1/battles", {"prompt": prompt}, content_type="application/json"
        ).json()
        battle = Battle.objects.get(public_id=created["id"])
        finish_battle(battle)
        battles.append(battle)
    client.post(f"/api/v1/battles/{battles[0].public_id}/vote", {"choice": "left"})
    client.post(
        "/chat/turns",
        {"model": models[0].key, "prompt": "a teapot", "seed_mode": "fixed", "seed": "7"},
    )
    turn = ChatTurn.objects.get()
    image = turn.chat_images.get().generation
    finish_battle_image(image)
    leaderboard_services.refresh_all()
    assert Snapshot.objects.exclude(category="").exists()
    return {
        "client": client,
        "token": token,
        "voted": battles[0],
        "ready": battles[1],
        "turn": turn,
        "image": image,
        "model": models[0].key,
        "other_model": models[1].key,
        "snapshots": list(Snapshot.objects.values_list("pk", flat=True)),
    }


def finish_battle_image(generation: Generation) -> None:
    from generation import jobs as generation_jobs

    from .conftest import _png

    claimed = generation_jobs.claim(generation_id=generation.pk)
    assert claimed is not None
    generation_jobs.finish(
        generation=claimed, data=_png(), compute_ms=5, queue_wait_ms=1, device="cpu"
    )


def pages(world: dict[str, Any]) -> list[str]:
    """Every address a GET may reach, with real ids."""
    battle, ready, turn = world["voted"].public_id, world["ready"].public_id, world["turn"].pk
    image, key = world["image"].pk, world["model"]
    name = str(world["ready"].generation_left.image.name).rsplit("/", 1)[-1]
    urls = [
        "/",
        "/?draw=1",
        "/prompts/random",
        f"/battles/{battle}",
        f"/battles/{ready}/panel",
        f"/images/{name}",
        "/chat/",
        f"/chat/turns/{turn}/panel",
        f"/chat/turns/{turn}/settings.json",
        f"/chat/images/{image}/download",
        "/compare/",
        "/leaderboard/",
        "/votes/",
        f"/leaderboard/models/{key}/",
        f"/leaderboard/models/{key}/history.svg",
        "/api/v1/session",
        f"/api/v1/battles/{battle}",
        "/api/v1/leaderboard",
        "/api/v1/models",
        f"/api/v1/models/{key}",
        f"/api/v1/models/{key}/history",
        "/api/v1/stats",
        "/api/v1/openapi.json",
    ]
    for pk in world["snapshots"]:
        urls += [f"/leaderboard/plots/{pk}/{kind}.svg" for kind in ("ratings", "win_rate")]
        urls += [f"/leaderboard/plots/{pk}/battles.svg", f"/leaderboard/?snapshot={pk}"]
        urls.append(f"/leaderboard/speed/{pk}.svg")
    return urls


def hostile_queries() -> Iterator[str]:
    names = ["page", "page_size", "days", "snapshot", "from", "seed", "category", "prompt"]
    for name in names:
        for value in ODD_NUMBERS + ODD_TEXT:
            # Lone surrogates cannot be percent-encoded as UTF-8; send their replacement.
            safe = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            yield f"{name}={safe}"
    yield "draw=1&prompt=%00"
    yield "votes=all&category=%00"


def hostile_paths(world: dict[str, Any]) -> list[str]:
    """Addresses whose path carries hostile text where an id or a name goes."""
    paths = []
    for value in [
        "%00",
        "a%00b",
        "%C2%B2",
        str(2**63),
        str(2**64),
        "9" * 400,
        "..%2F..",
        "%ED%A0%80",
    ]:
        paths += [
            f"/images/{value}",
            f"/images/{value}.png",
            f"/battles/{value}",
            f"/chat/turns/{value}/panel",
            f"/chat/turns/{value}/settings.json",
            f"/chat/images/{value}/download",
            f"/leaderboard/models/{value}/",
            f"/leaderboard/models/{value}/history.svg",
            f"/leaderboard/plots/{value}/ratings.svg",
            f"/leaderboard/speed/{value}.svg",
            f"/shared/{value}",
            f"/battles/{value}/share",
            f"/leaderboard/plots/{world['snapshots'][0]}/{value}.svg",
            f"/api/v1/battles/{value}",
            f"/api/v1/battles/{value}/vote",
            f"/api/v1/models/{value}",
            f"/api/v1/models/{value}/history",
            f"/api/v1/{value}",
        ]
    return paths


def forms(world: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Each page form, with one field at a time replaced by hostile text."""
    turn, image, ready = world["turn"].pk, world["image"].pk, world["ready"].public_id
    key = world["model"]
    good = {
        "/battles": {"prompt": "a cat"},
        f"/battles/{ready}/vote": {"choice": "left"},
        "/chat/turns": {
            "model": key,
            "prompt": "a cat",
            "negative_prompt": "",
            "seed_mode": "fixed",
            "seed": "1",
            "steps": "2",
            "guidance": "1",
            "size": "",
            "count": "1",
        },
        f"/chat/turns/{turn}/again": {"seed": "new"},
        f"/chat/images/{image}/refine": {"prompt": "a cat", "strength": "0.5"},
        "/compare/start": {
            "left": key,
            "right": world["other_model"],
            "prompt": "a cat",
            "seed": "1",
        },
    }
    cases = []
    for url, fields in good.items():
        for field in fields:
            for value in ODD_NUMBERS + ODD_TEXT:
                if "\ud800" <= value[:1] <= "\udfff":
                    continue  # a form body is bytes; a lone surrogate cannot be encoded in it
                cases.append((url, fields | {field: value}))
    return cases


def json_bodies(world: dict[str, Any]) -> list[tuple[str, str]]:
    """API bodies: deep nesting, lone surrogates, NUL, wrong types, not JSON at all."""
    battle_urls = ["/api/v1/battles", f"/api/v1/battles/{world['ready'].public_id}/vote"]
    bodies = [
        DEEP_JSON,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"prompt": "\\ud800"}',
        '{"prompt": "a \\udfff cat"}',
        '{"prompt": "a\\u0000b"}',
        '{"prompt": ["a"]}',
        '{"prompt": {"$gt": ""}}',
        '{"prompt": 1e999}',
        '{"choice": "\\ud800"}',
        '{"choice": null}',
        '{"choice": "left\\u0000"}',
        "[]",
        "null",
        '"a"',
        "{nope",
        "\x00",
        "",
    ]
    return [(url, body) for url in battle_urls for body in bodies]


def five_hundreds(responses: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(what, status) for what, status in responses if status >= 500]


def test_no_page_or_endpoint_answers_5xx_to_hostile_queries(world: dict[str, Any]) -> None:
    client = world["client"]
    seen = []
    for url in pages(world):
        for query in hostile_queries():
            joiner = "&" if "?" in url else "?"
            seen.append(
                (f"GET {url}{joiner}{query}", client.get(f"{url}{joiner}{query}").status_code)
            )
    assert not five_hundreds(seen), five_hundreds(seen)[:20]


def test_no_page_or_endpoint_answers_5xx_to_hostile_paths(world: dict[str, Any]) -> None:
    client = world["client"]
    seen = []
    for path in hostile_paths(world):
        seen.append((f"GET {path}", client.get(path).status_code))
        seen.append((f"POST {path}", client.post(path, {"choice": "left"}).status_code))
    assert not five_hundreds(seen), five_hundreds(seen)[:20]
    assert all(status == 404 for what, status in seen if "%00" in what and "GET" in what)


def test_no_form_answers_5xx_to_hostile_fields(world: dict[str, Any]) -> None:
    client = world["client"]
    seen = []
    for url, data in forms(world):
        seen.append((f"POST {url} {data!r}", client.post(url, data).status_code))
    assert not five_hundreds(seen), five_hundreds(seen)[:20]


def test_a_compare_seed_above_2_to_the_63_is_refused_with_400(world: dict[str, Any]) -> None:
    key = world["model"]
    data = {"left": key, "right": key, "prompt": "a cat", "seed": str(2**63 + 5)}
    response = world["client"].post("/compare/start", data)
    assert response.status_code == 400 and b"seed" in response.content


def test_no_api_body_gets_a_5xx_and_each_refusal_has_the_error_shape(
    world: dict[str, Any],
) -> None:
    client = world["client"]
    seen = []
    for url, body in json_bodies(world):
        response = client.post(url, body, content_type="application/json")
        seen.append((f"POST {url} {body[:40]!r}", response.status_code))
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, (url, body[:40], response.content)
    assert not five_hundreds(seen), five_hundreds(seen)[:20]
    assert not any("\x00" in text for text in Battle.objects.values_list("prompt_text", flat=True))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"prompt": "\\ud800"}', "bad_prompt"),
        ('{"prompt": "a\\u0000b"}', "bad_prompt"),
        (DEEP_JSON, "bad_request"),
        ("[]", "bad_request"),
    ],
)
def test_hostile_battle_bodies_are_400_with_a_code(
    world: dict[str, Any], body: str, code: str
) -> None:
    response = world["client"].post("/api/v1/battles", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_wrong_methods_are_refused_without_a_5xx(world: dict[str, Any]) -> None:
    client = world["client"]
    posts = ["/battles", f"/battles/{world['ready'].public_id}/vote", "/chat/turns"]
    posts += [
        "/compare/start",
        "/api/v1/battles",
        f"/api/v1/battles/{world['ready'].public_id}/vote",
    ]
    seen = []
    for url in pages(world) + posts:
        for method in WRONG_METHODS + ["GET"]:
            status = client.generic(method, url).status_code
            seen.append((f"{method} {url}", status))
            if (url in posts) == (method == "GET"):
                assert status in {405, 404}, (method, url, status)
    assert not five_hundreds(seen), five_hundreds(seen)[:20]


def test_head_works_wherever_get_does(world: dict[str, Any]) -> None:
    client = world["client"]
    for url in pages(world):
        get, head = client.get(url), client.head(url)
        assert head.status_code == get.status_code, url
        body = b"".join(head.streaming_content) if head.streaming else head.content
        assert body == b"", url


def test_hostile_json_never_reaches_the_database(world: dict[str, Any]) -> None:
    before = Battle.objects.count()
    for body in ['{"prompt": "\\ud800 cat"}', '{"prompt": "cat\\u0000"}']:
        response = world["client"].post("/api/v1/battles", body, content_type="application/json")
        assert response.status_code == 400
    assert Battle.objects.count() == before
    assert json.loads(world["client"].get("/api/v1/stats?days=%C2%B2").content)["error"][
        "code"
    ] == ("bad_days")
