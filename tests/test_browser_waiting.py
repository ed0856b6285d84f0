"""Honest waiting in a real Chromium: the wait is named, and a 429 or 503 shows its message."""

from __future__ import annotations

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


def test_under_the_reveal_floor_the_page_animates_progress_while_the_polls_are_304s(
    browser: Any,
    live_server: Any,
    models: list[Any],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arena import polling

    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 5000, 0
    answers = {"304": 0, "full": 0}
    not_modified, with_etag = polling.not_modified, polling.with_etag

    def counted_304(tag: str) -> Any:
        answers["304"] += 1
        return not_modified(tag)

    def counted_full(response: Any, tag: str | None) -> Any:
        answers["full"] += response.status_code == 200  # not_modified tags its 304s here too
        return with_etag(response, tag)

    monkeypatch.setattr(polling, "not_modified", counted_304)
    monkeypatch.setattr(polling, "with_etag", counted_full)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a lighthouse at dusk")
    page.click("#start-battle")
    panel = page.wait_for_selector("#battle[data-floor-ms]")
    # The floor is drawn just before the battle's row is written: a few ms short of 5 s.
    assert 4900 <= int(panel.get_attribute("data-floor-ms") or 0) <= 5000
    value = "() => Number(document.getElementById('progress').value)"
    text = "() => document.getElementById('progress-label').textContent"
    page.wait_for_timeout(1500)
    early = page.evaluate(value)
    page.wait_for_timeout(1500)
    later = page.evaluate(value)
    # The figure moves between polls, from the page's own clock: about 30% and 60% here.
    assert 10 <= early < later <= 99, (early, later)
    assert page.evaluate(text) == f"Generating both images… {later}%"
    # The browser revalidated its copy at every poll: after the first, the server sent 304s.
    assert answers["full"] <= 2 and answers["304"] >= 4, answers
    # Past the floor the battle is late (no worker runs): the server's figure is shown again.
    page.wait_for_selector("#progress-label:has-text('The models are still loading')")
    assert page.evaluate(value) == 99
    page.wait_for_timeout(1000)
    assert "still loading" in page.evaluate(text), "the animation stopped with the floor"
    assert not errors
    page.close()
