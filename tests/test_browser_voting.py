"""Voting a person enjoys: one screen, one key, images as the models made them.

Boxes are measured in a real Chromium at a laptop (1280x800) and a phone (390x844) size.
Predicates are arrow functions: with a Content-Security-Policy on, Playwright cannot eval strings.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from arena import services
from arena.models import Prompt
from generation.models import ImageModel

pytestmark = [pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# The box of every element a selector matches, and whether it lies wholly inside the viewport.
BOXES = """(selector) => [...document.querySelectorAll(selector)].map(e => {
  const r = e.getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
          inside: r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
                  r.bottom <= window.innerHeight && r.right <= window.innerWidth};
})"""


def in_view(page: Any, selector: str, count: int) -> list[dict[str, Any]]:
    boxes: list[dict[str, Any]] = page.evaluate(BOXES, selector)
    assert len(boxes) == count, (selector, boxes)
    assert all(box["inside"] for box in boxes), (selector, boxes, page.viewport_size)
    return boxes


def wait_ready(page: Any) -> None:
    page.wait_for_selector("#vote-form[data-ready='1']", timeout=60_000)


@pytest.mark.worker
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_both_images_and_the_vote_buttons_fit_one_screen_and_one_key_starts_the_next_battle(
    browser: Any, live_server: Any, worker: Any, models: list[Any], viewport: dict[str, int]
) -> None:
    services.load_prompts()
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a paper boat on a puddle")
    page.click("#start-battle")
    wait_ready(page)
    assert page.evaluate("() => window.scrollY") == 0
    in_view(page, "#battle .panes img", 2)
    in_view(page, "#vote-form button", 4)
    label = "laptop" if viewport is LAPTOP else "phone"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{label}-one-screen.png"))

    # Full screen: a click opens both images; the arrows flip, C compares, Escape closes.
    page.click("#battle .panes img >> nth=0")
    page.wait_for_selector("#viewer[open]")
    current = "() => document.querySelector('#viewer img.current')?.alt"
    assert page.evaluate(current) == "Image A"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(current) == "Image B"
    page.keyboard.press("c")
    in_view(page, "#viewer img", 2)
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    page.keyboard.press("f")
    page.wait_for_selector("#viewer[open]")
    page.keyboard.press("Escape")

    page.keyboard.press("a")
    page.wait_for_selector("#reveal")
    # After the vote: the names, the verdict and the way on, all without scrolling.
    in_view(page, ".model-name", 2)
    in_view(page, "#reveal", 1)
    in_view(page, "#random-battle, #same-prompt, #next-battle", 3)

    page.keyboard.press("s")
    page.wait_for_function("() => !document.querySelector('#reveal')")
    wait_ready(page)
    assert "a paper boat on a puddle" in page.inner_text(".prompt-shown")
    in_view(page, "#vote-form button", 4)

    page.keyboard.press("t")
    page.wait_for_selector("#reveal")
    page.keyboard.press("r")
    page.wait_for_function("() => !document.querySelector('#reveal')")
    wait_ready(page)
    drawn = page.inner_text(".prompt-shown").strip("“”")
    assert drawn != "a paper boat on a puddle"
    assert Prompt.objects.curated().filter(text=drawn).exists()
    assert errors == []
    page.close()


@pytest.mark.worker
def test_the_random_battle_and_same_prompt_buttons_work_without_javascript(
    browser: Any, live_server: Any, worker: Any, models: list[Any]
) -> None:
    services.load_prompts()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/")
    page.click("#random-battle")  # the box is empty: no required-field block
    assert "/battles/" in page.url
    drawn = page.inner_text(".prompt-shown").strip("“”")
    assert Prompt.objects.curated().filter(text=drawn).exists()
    for _ in range(100):
        if page.locator("#vote-form").count():
            break
        page.click("a.refresh")
    page.click("#vote-form button[value='left']")
    first = page.url
    page.click("#same-prompt")
    assert page.url != first and drawn in page.inner_text(".prompt-shown")
    context.close()


SAMPLE_PAGE = """(html) => {
  const holder = document.createElement('div');
  holder.innerHTML = html;
  document.querySelector('main').prepend(holder);
}"""


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_images_keep_their_aspect_ratio_and_shrink_smoothly(
    browser: Any, live_server: Any, transactional_db: None, viewport: dict[str, int]
) -> None:
    page = browser.new_page(viewport=viewport)
    page.goto(live_server.url + "/")
    # A 1024x768 picture in the battle's and chat's markup, with the site's own stylesheet.
    picture = page.evaluate(
        """() => { const c = document.createElement('canvas'); c.width = 1024; c.height = 768;
                   c.getContext('2d').fillRect(0, 0, 10, 10); return c.toDataURL(); }"""
    )
    img = f'<img class="frame" src="{picture}" width="1024" height="768" alt="sample">'
    page.evaluate(
        SAMPLE_PAGE,
        f'<section id="battle"><div class="panes"><figure class="pane">{img}</figure>'
        f'<figure class="pane">{img}</figure></div></section>'
        f'<figure class="chat-image">{img}</figure>',
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('img[alt=sample]')].every(i => i.complete)"
    )
    shown = page.evaluate(
        """() => [...document.querySelectorAll('img[alt=sample]')].map(i => {
             const s = getComputedStyle(i), r = i.getBoundingClientRect();
             return {rendering: s.imageRendering, fit: s.objectFit, ratio: r.width / r.height};
           })"""
    )
    assert len(shown) == 3
    for one in shown:
        assert one["rendering"] != "pixelated", "nearest-neighbour when shrinking"
        # The picture keeps 4:3: either the box is 4:3 or the picture is fitted inside it.
        assert one["fit"] in {"contain", "scale-down"} or abs(one["ratio"] - 4 / 3) < 0.02, one
    page.close()


def test_the_small_defects_are_gone(
    browser: Any, live_server: Any, transactional_db: None, models: list[Any]
) -> None:
    services.load_prompts()
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = context.new_page()
    page.goto(live_server.url + "/")
    # Random prompt without JavaScript: not blocked on the empty box, no CSRF token in the URL.
    page.click("#random-prompt")
    assert "draw=1" in page.url and "csrfmiddlewaretoken" not in page.url
    assert len(page.input_value("#prompt")) > 10
    # The prompt limit is the server's.
    assert page.get_attribute("#prompt", "maxlength") == "1000"
    # Compare is in the menu; the phone header stays one line and nothing scrolls sideways.
    assert page.locator("header nav a[href='/compare/']").count() == 1
    header = page.evaluate("() => document.querySelector('header.top').offsetHeight")
    assert header < 60, header
    for path in ["/", "/chat/", "/compare/", "/leaderboard/"]:
        page.goto(live_server.url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, (path, overflow)
    # Another browser's battle link: a plain page that says why, never a bare 404 page.
    response = page.goto(f"{live_server.url}/battles/{uuid.uuid4()}")
    assert response is not None and response.status == 404
    assert "Start your own battle" in page.inner_text("main")
    assert page.locator("a[href='/']").count() >= 1
    context.close()

    page = browser.new_page(viewport=LAPTOP)
    page.goto(live_server.url + "/")
    page.fill("#prompt", "x" * 40)
    assert page.inner_text("#prompt-count") == "40 / 1000"
    page.close()


def test_a_voided_battle_says_so_once(transactional_db: None, models: list[Any]) -> None:
    from django.template.loader import render_to_string

    from arena.models import Battle

    battle = services.create_battle(prompt_text="a quiet harbour", owner="someone")
    Battle.objects.filter(pk=battle.pk).update(status=Battle.Status.VOID)
    battle.refresh_from_db()
    state = services.battle_state(battle)
    html = render_to_string(
        "arena/_battle_panel.html",
        {"battle": battle, "state": state, "error": services.VOID_MESSAGE},
    )
    assert html.count(services.VOID_MESSAGE) == 1
    assert ImageModel.objects.count() >= 2


def test_the_guard_catches_a_server_error_answer(browser: Any, live_server: Any) -> None:
    from tests import conftest

    page = browser.new_page()
    page.route("**/boom", lambda route: route.fulfill(status=503, body="down"))
    page.goto(live_server.url + "/boom")
    page.close()
    assert conftest.SERVER_ERRORS and conftest.SERVER_ERRORS[0].startswith("503 GET")
    conftest.SERVER_ERRORS.clear()  # seen; this test's own 503 is the point
