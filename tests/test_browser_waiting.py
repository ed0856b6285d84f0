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
