"""The Content-Security-Policy in a real Chromium: every page and htmx run with it, no violation.

The other browser tests run with the same policy on (it is on by default); this one listens for
the browser's own ``securitypolicyviolation`` events on each page, and checks that a status poll
revalidates with the ETag instead of downloading the panel again.
"""

from __future__ import annotations

from typing import Any

import pytest

from arena import services

pytestmark = pytest.mark.browser

# Record violations from the first script on, before the page's own scripts run.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(LISTEN)
    response = page.goto(url)
    assert response is not None and "Content-Security-Policy" in {
        k.title() if k.islower() else k for k in response.headers
    } | {k for k in response.headers}, "the policy is sent"
    return page, console


def violations(page: Any, console: list[str]) -> list[str]:
    found = list(page.evaluate("window.__violations"))
    found += [line for line in console if "Content Security Policy" in line]
    return found


def test_the_pages_and_htmx_run_under_the_policy_without_a_violation(
    browser: Any, live_server: Any, models: list[Any], transactional_db: None
) -> None:
    services.load_prompts()
    page, console = open_page(browser, live_server.url + "/")
    policy = page.evaluate("document.documentElement.classList.contains('js')")
    assert policy, "the nonce lets base.html's inline script run"
    page.click("#random-prompt")
    page.wait_for_function("() => document.querySelector('#prompt').value.length > 20")
    assert page.evaluate("typeof htmx") == "object"
    assert violations(page, console) == []
    for path in ("/leaderboard/", "/chat/", "/compare/"):
        page.goto(live_server.url + path)
        assert violations(page, console) == [], path
    page.close()


def panel_answers(status: str) -> float:
    """Battle-panel answers with ``status`` served so far in this process (live_server's)."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "django_http_responses_total_by_status_view_method_total",
        {"status": status, "view": "arena:battle_panel", "method": "GET"},
    )
    return value or 0.0


def test_a_generating_battle_polls_with_its_etag_and_gets_304s(
    browser: Any, live_server: Any, models: list[Any], transactional_db: None
) -> None:
    page, console = open_page(browser, live_server.url + "/")
    page.fill("#prompt", "a lighthouse in fog, oil painting")
    before = panel_answers("304")
    page.click("#start-battle")
    page.wait_for_selector("#progress", state="visible")
    # No worker runs: the battle stays queued and every poll after the first is unchanged; the
    # browser's cache sends the ETag back and shows the panel it has.
    for _ in range(100):
        if panel_answers("304") >= before + 3:
            break
        page.wait_for_timeout(200)
    assert panel_answers("304") >= before + 3, (panel_answers("200"), panel_answers("304"))
    assert page.locator("#progress").count() == 1, "the panel is still shown after 304s"
    assert violations(page, console) == []
    page.close()
