"""What brings a voter back, in a real Chromium under the Content-Security-Policy: after a
vote, a share link made on request opens a read-only page in another browser, and "your votes"
lists the battle with both images."""

from __future__ import annotations

from typing import Any

import pytest

from arena.models import Battle
from tests.arena.test_services import finish_side
from tests.test_browser_csp import LISTEN, violations

pytestmark = pytest.mark.browser

LOADED = "(selector) => [...document.querySelectorAll(selector)].map(i => i.naturalWidth)"


def test_a_voted_battle_is_shared_on_request_and_listed_in_your_votes(
    browser: Any, live_server: Any, models: list[Any], transactional_db: None
) -> None:
    context = browser.new_context()
    context.add_init_script(LISTEN)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a kite over a wheat field")
    page.click("#start-battle")
    page.wait_for_selector("#progress")
    battle = Battle.objects.get()
    finish_side(battle.generation_left)
    finish_side(battle.generation_right)
    page.wait_for_selector("#vote-form[data-ready='1']", timeout=60_000)
    page.keyboard.press("a")
    page.wait_for_selector("#reveal")
    battle.refresh_from_db()
    assert battle.share_token is None  # nothing is public until asked

    page.click("#share-button")
    link = page.wait_for_selector("#share-link")
    assert link is not None
    url = link.get_attribute("href")
    battle.refresh_from_db()
    assert url and battle.share_token and url.endswith(f"/shared/{battle.share_token}")
    assert violations(page, console) == []

    stranger = browser.new_context()
    stranger.add_init_script(LISTEN)
    shared = stranger.new_page()
    assert shared.goto(url).status == 200
    shared.wait_for_function(
        "() => [...document.querySelectorAll('#shared img')].every(i => i.complete)"
    )
    assert all(width > 0 for width in shared.evaluate(LOADED, "#shared img"))
    assert battle.model_left.display_name in shared.inner_text("#shared")
    assert shared.locator("#shared form").count() == 0
    assert violations(shared, []) == []
    stranger.close()

    page.goto(live_server.url + "/votes/")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.voted-battle img')].every(i => i.complete)"
    )
    assert [w > 0 for w in page.evaluate(LOADED, ".voted-battle img")] == [True, True]
    assert "A is better" in page.inner_text("#your-votes")
    assert "1 so far, 29 more needed" in page.inner_text("#personal-board")
    assert violations(page, console) == []
    context.close()
