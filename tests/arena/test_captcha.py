"""Optional Turnstile or hCaptcha: tokens checked with the provider (a fake one on loopback)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.test import Client

from arena.models import Battle

pytestmark = pytest.mark.django_db


class FakeProvider(BaseHTTPRequestHandler):
    """siteverify: "good" passes, anything else fails; records what it was sent."""

    seen: list[dict[str, list[str]]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        FakeProvider.seen.append(form)
        body = json.dumps({"success": form.get("response") == ["good"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def turnstile(settings: Any) -> Iterator[None]:
    server = HTTPServer(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ARENA_CAPTCHA = "turnstile"
    settings.ARENA_CAPTCHA_SITE_KEY = "site-key"
    settings.ARENA_CAPTCHA_SECRET = "secret"
    settings.ARENA_CAPTCHA_VERIFY_URL = f"http://127.0.0.1:{server.server_address[1]}/"
    settings.ARENA_CHALLENGE_MAX_NUMBER = 100_000  # replaced by the captcha, not added to it
    FakeProvider.seen.clear()
    yield
    server.shutdown()


def test_the_form_shows_the_widget_and_the_first_battle_needs_a_good_token(
    client: Client, models: list[Any], turnstile: None
) -> None:
    page = client.get("/").content.decode()
    assert 'class="cf-turnstile" data-sitekey="site-key"' in page
    assert 'name="altcha"' not in page
    assert client.post("/battles", {"prompt": "a fox"}).status_code == 403
    bad = client.post("/battles", {"prompt": "a fox", "cf-turnstile-response": "forged"})
    assert bad.status_code == 400 and "did not pass" in bad.content.decode()
    good = client.post("/battles", {"prompt": "a fox", "cf-turnstile-response": "good"})
    assert good.status_code == 302
    assert FakeProvider.seen[-1]["secret"] == ["secret"]
    assert client.post("/battles", {"prompt": "a cat"}).status_code == 302, "once per session"
    assert Battle.objects.count() == 2


def test_an_unreachable_provider_lets_the_battle_through(
    client: Client, models: list[Any], turnstile: None, settings: Any
) -> None:
    settings.ARENA_CAPTCHA_VERIFY_URL = "http://127.0.0.1:9/"
    assert (
        client.post("/battles", {"prompt": "a fox", "cf-turnstile-response": "x"}).status_code
        == 302
    )
