"""Request limits: token buckets per session, address and account, behind trusted proxies,
failing open when the cache is down."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory

from arena import limits
from arena.models import Battle

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def address_of(remote: str, forwarded: str | None = None) -> str:
    meta: dict[str, Any] = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return limits.client_address(RequestFactory().get("/", **meta))


def test_without_trusted_proxies_the_forwarded_header_is_ignored(settings: Any) -> None:
    settings.ARENA_TRUSTED_PROXIES = []
    assert address_of("203.0.113.7", "198.51.100.1") == "203.0.113.7"


def test_behind_a_trusted_proxy_the_client_is_the_last_untrusted_hop(settings: Any) -> None:
    settings.ARENA_TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    # The client forged the first entry; our proxies appended the rest.
    assert address_of("127.0.0.1", "1.2.3.4, 198.51.100.9, 10.1.2.3") == "198.51.100.9"
    assert address_of("127.0.0.1", "198.51.100.9") == "198.51.100.9"


def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(settings: Any) -> None:
    settings.ARENA_TRUSTED_PROXIES = ["127.0.0.1"]
    assert address_of("203.0.113.7", "198.51.100.1") == "203.0.113.7"


def test_garbage_in_the_forwarded_header_stops_the_walk(settings: Any) -> None:
    settings.ARENA_TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    assert address_of("127.0.0.1", "198.51.100.1, not-an-ip, 10.0.0.2") == "10.0.0.2"
    assert address_of("127.0.0.1", "") == "127.0.0.1"


def test_a_bucket_allows_its_burst_then_refuses_with_a_retry_time(settings: Any) -> None:
    settings.ARENA_LIMIT_VOTES = "session=3/60"
    for _ in range(3):
        limits.hit(scope="votes", session="s")
    with pytest.raises(limits.RateLimited) as refused:
        limits.hit(scope="votes", session="s")
    assert 1 <= refused.value.retry_after <= 20  # one token comes back every 20 s
    assert "Try again in" in refused.value.message
    limits.hit(scope="votes", session="another session")


def test_a_burst_across_a_window_boundary_gets_no_second_budget(settings: Any) -> None:
    """A fixed window would let 2 x 4 through around its boundary; the bucket lets 4 plus
    what refilled."""
    settings.ARENA_LIMIT_VOTES = "address=4/2"
    passed = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            limits.hit(scope="votes", address="a")
            passed += 1
        except limits.RateLimited:
            pass
        time.sleep(0.01)
    # 4 at once, then one token every 0.5 s: at most 4 + 2 (+1 for timing slack) in 1 s.
    assert 4 <= passed <= 7


def test_a_refused_request_takes_no_token_from_the_other_buckets(settings: Any) -> None:
    settings.ARENA_LIMIT_BATTLES = "session=1/3600,address=2/3600"
    limits.hit(scope="battles", session="s1", address="a")
    with pytest.raises(limits.RateLimited):
        limits.hit(scope="battles", session="s1", address="a")  # session empty
    limits.hit(scope="battles", session="s2", address="a")  # the address still had one
    with pytest.raises(limits.RateLimited):
        limits.hit(scope="battles", session="s3", address="a")


def test_the_buckets_live_in_redis_shared_by_processes(settings: Any) -> None:
    assert limits.redis_client() is not None, "the tests run with Redis as the cache"
    settings.ARENA_LIMIT_CHAT = "account=1/3600"
    limits.hit(scope="chat", account="7")
    keys = limits.redis_client().keys("*limit:chat:account*")
    assert len(keys) == 1


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_cache_outage_lets_requests_through_with_a_warning(
    settings: Any, caplog: pytest.LogCaptureFixture, client: Client, models: list[Any]
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_dead_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    limits._state["warned_at"] = float("-inf")
    settings.ARENA_LIMIT_BATTLES = "session=1/3600"
    with caplog.at_level(logging.WARNING, logger="arena.limits"):
        statuses = [client.post("/battles", {"prompt": f"a fox {i}"}).status_code for i in range(3)]
    assert statuses == [302, 302, 302]
    assert "rate limits are off" in caplog.text


def test_the_page_shows_the_limit_with_and_without_htmx(
    settings: Any, client: Client, models: list[Any]
) -> None:
    settings.ARENA_LIMIT_BATTLES = "session=1/3600"
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302
    plain = client.post("/battles", {"prompt": "a fox"})
    assert plain.status_code == 429 and int(plain["Retry-After"]) > 0
    assert "starting battles faster" in plain.content.decode()
    assert 'name="prompt"' in plain.content.decode(), "the whole page, form kept"
    fragment = client.post("/battles", {"prompt": "a fox"}, headers=HTMX)
    assert fragment.status_code == 429 and "<html" not in fragment.content.decode()
    assert 'role="alert"' in fragment.content.decode()


def test_htmx_swaps_a_429_answer_into_the_page() -> None:
    from pathlib import Path

    base = (Path(limits.__file__).parent / "templates/arena/base.html").read_text()
    assert '{"code":"429","swap":true}' in base


def test_a_refused_prompt_costs_no_token(settings: Any, client: Client, models: list[Any]) -> None:
    settings.ARENA_LIMIT_BATTLES = "session=1/3600"
    for _ in range(3):
        assert client.post("/battles", {"prompt": "   "}).status_code == 400
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 302


def test_new_sessions_are_limited_per_address(settings: Any) -> None:
    settings.ARENA_LIMIT_SESSIONS = "address=2/3600"
    answers = [Client().get("/api/v1/session") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused["Retry-After"]) > 0
    # An existing session is not a new one.
    again = Client()
    settings.ARENA_LIMIT_SESSIONS = "address=1/3600"
    cache.clear()
    assert again.get("/api/v1/session").status_code == 200
    assert again.get("/api/v1/session").status_code == 200


def test_votes_are_limited_per_session(
    settings: Any, client: Client, models: list[Any], finish_battle: Any
) -> None:
    settings.ARENA_LIMIT_VOTES = "session=1/3600"
    ids = []
    for i in range(2):
        client.post("/battles", {"prompt": f"a fox {i}"})
        battle = Battle.objects.order_by("-pk").first()
        assert battle is not None
        finish_battle(battle)
        ids.append(battle.public_id)
    assert client.post(f"/battles/{ids[0]}/vote", {"choice": "left"}).status_code == 302
    refused = client.post(f"/api/v1/battles/{ids[1]}/vote", {"choice": "left"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    panel = client.post(f"/battles/{ids[1]}/vote", {"choice": "left"}, headers=HTMX)
    assert panel.status_code == 429 and "voting faster" in panel.content.decode()
    assert Battle.objects.get(public_id=ids[1]).status == Battle.Status.READY


def test_signed_in_accounts_have_limits_of_their_own(settings: Any, models: list[Any]) -> None:
    from django.contrib.auth.models import User

    settings.ARENA_LIMIT_BATTLES = "account=1/3600"
    user = User.objects.create_user("alice")
    first, second = Client(), Client()
    first.force_login(user)
    second.force_login(user)
    assert first.post("/battles", {"prompt": "a fox"}).status_code == 302
    assert second.post("/battles", {"prompt": "a fox"}).status_code == 429
    assert Client().post("/battles", {"prompt": "a fox"}).status_code == 302, "anonymous: none"
