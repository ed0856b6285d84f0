"""Honest waiting in a real Chromium: the wait is named, and a 429 or 503 shows its message."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.template.loader import render_to_string

pytestmark = [pytest.mark.browser]


def test_waits_and_refusals_show_their_message_with_javascript(
    browser: Any, live_server: Any, models: list[Any], settings: Any
) -> None:
    from tests import conftest

    settings.ARENA_LIMIT_BATTLES = "session=1/86400"  # no refill within the test
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a lighthouse at dawn")
    page.click("#start-battle")
    # No worker serves the models: the page says they are loading, not just 0%.
    page.wait_for_selector("#progress-label:has-text('The models are still loading')")

    # A second battle is over the limit: htmx swaps the 429's message in.
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a second lighthouse")
    page.click("#start-battle")
    refused = page.wait_for_selector("#prompt-error")
    assert "faster than this arena allows" in refused.inner_text()
    assert "Try again in" in refused.inner_text()

    # A 503 (a lost database, say) is not swapped in, yet its message is shown.
    down = render_to_string(
        "arena/unavailable.html",
        {"message": "Image Arena cannot reach the database right now. Try again in a few seconds."},
    )
    page.route(
        "**/battles",
        lambda route: route.fulfill(
            status=503, body=down, content_type="text/html", headers={"Retry-After": "5"}
        ),
    )
    page.fill("#prompt", "a third lighthouse")
    page.click("#start-battle")
    notice = page.wait_for_selector("#notice[role='alert']")
    assert "cannot reach the database" in notice.inner_text()
    assert notice.is_visible() and not errors
    page.close()
    # The 503 above came from the route, on purpose: only it may be in the guard's list.
    assert [e for e in conftest.SERVER_ERRORS if not e.startswith("503 POST")] == []
    conftest.SERVER_ERRORS.clear()


def panel_requests(page: Any) -> list[float]:
    """When (time.monotonic()) the page asked for its battle panel, filled as it asks."""
    asked: list[float] = []

    def seen(request: Any) -> None:
        if "/panel" in request.url:
            asked.append(time.monotonic())

    page.on("request", seen)
    return asked


def test_under_the_reveal_floor_the_page_animates_progress_and_polls_only_at_its_end(
    browser: Any, live_server: Any, models: list[Any], settings: Any
) -> None:
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 5000, 0
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    asked = panel_requests(page)
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a lighthouse at dusk")
    page.click("#start-battle")
    panel = page.wait_for_selector("#battle[data-floor-ms]")
    shown = time.monotonic()
    # The floor is drawn just before the battle's row is written: a few ms short of 5 s.
    assert 4900 <= int(panel.get_attribute("data-floor-ms") or 0) <= 5000
    value = "() => Number(document.getElementById('progress').value)"
    text = "() => document.getElementById('progress-label').textContent"
    page.wait_for_timeout(1500)
    early = page.evaluate(value)
    page.wait_for_timeout(1500)
    later = page.evaluate(value)
    # The figure moves from the page's own clock: about 30% and 60% here.
    assert 10 <= early < later <= 99, (early, later)
    label = page.evaluate(text)  # a frame later than the figure: it may be a point on
    assert label in (f"Generating both images… {n}%" for n in (later, later + 1)), label
    # Past the floor the battle is late (no worker runs): the server's figure is shown again.
    page.wait_for_selector("#progress-label:has-text('The models are still loading')")
    assert page.evaluate(value) == 99
    # Under the floor the page asked for its panel once at most (at its end), not every 400 ms.
    under = [t for t in asked if t - shown < 4.8]
    assert len(under) <= 1 and asked and asked[0] - shown >= 4.5, [t - shown for t in asked]
    # Past the floor it polls at the next reveal step (each second: the models have no runs
    # to go by), not every 400 ms.
    before = len(asked)
    page.wait_for_timeout(1200)
    assert 1 <= len(asked) - before <= 2, [t - shown for t in asked]
    assert "still loading" in page.evaluate(text), "the animation stopped with the floor"
    assert not errors
    page.close()


@pytest.mark.worker
def test_under_a_short_floor_the_page_polls_at_most_twice_and_the_images_appear(
    browser: Any, live_server: Any, worker: Any, models: list[Any], settings: Any
) -> None:
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 3000, 1000
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    asked = panel_requests(page)
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a lighthouse at noon")
    page.click("#start-battle")
    panel = page.wait_for_selector("#battle[data-floor-ms]")
    floor_s = int(panel.get_attribute("data-floor-in-ms") or 0) / 1000
    shown = time.monotonic()
    page.wait_for_selector("#battle img.frame", timeout=60_000)
    images = time.monotonic()
    assert page.locator("#battle img.frame").count() == 2
    # Under the 3 to 4 s floor: at most two panel requests (every 400 ms would be 7 to 10).
    under = [t - shown for t in asked if t - shown < floor_s]
    assert len(under) <= 2, under
    if images - shown < floor_s + 1:  # the tiny models were done within the floor
        assert len(asked) <= 2, [t - shown for t in asked]
    assert not errors
    page.close()


def test_past_the_floor_the_page_polls_when_the_panel_says(
    browser: Any, live_server: Any, models: list[Any], settings: Any
) -> None:
    from tests.arena.test_polling import ran

    # Every model's fastest run took 2.5 s; no worker runs, so the jobs stay queued and the
    # battle can be shown no sooner than 2.5 s after each poll: the next poll is 3 steps on.
    for model in models:
        ran(model, compute_ms=2500)
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 1000, 0
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    asked = panel_requests(page)
    told: list[tuple[float, int]] = []  # (when answered, the delay each panel answer names)

    def answered(response: Any) -> None:
        if "/panel" in response.url and response.status == 200:
            found = re.search(r'data-poll-ms="(\d+)"', response.text())
            if found:
                told.append((time.monotonic(), int(found[1])))

    page.on("response", answered)
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a lighthouse in rain")
    page.click("#start-battle")
    page.wait_for_selector("#battle[data-poll-ms]")
    page.wait_for_timeout(6500)
    assert told and len(asked) >= 2, (told, asked)
    # Each poll past the floor came when the answer before it said, not every 400 ms.
    for (at, delay), next_at in zip(told, asked[1:], strict=False):
        assert 2500 <= delay <= 4000, told
        assert abs((next_at - at) * 1000 - delay) < 400, (told, asked)
    gaps = [b - a for a, b in zip(asked, asked[1:], strict=False)]
    assert gaps and min(gaps) > 2.0, gaps
    assert not errors
    page.close()
