"""The battle page in a real Chromium, with a real worker and the tiny pipelines.

The Content-Security-Policy is on (the default): page scripts cannot eval strings, so every
``wait_for_function`` predicate is an arrow function, which Playwright runs without eval.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from arena import services
from generation.models import ImageModel

pytestmark = [pytest.mark.browser, pytest.mark.worker]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Enough steps that a person (and this test) sees the progress bar move.
SLOW_STEPS = 150


@pytest.fixture
def slow_models(models: list[Any]) -> list[Any]:
    ImageModel.objects.update(default_steps=SLOW_STEPS)
    services.load_prompts()
    return models


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_visitor_draws_a_prompt_watches_progress_votes_by_keyboard_and_sees_the_reveal(
    browser: Any, live_server: Any, worker: Any, slow_models: list[Any], viewport: dict[str, int]
) -> None:
    label = "desktop" if viewport is DESKTOP else "phone"
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/")
    page.click("#random-prompt")
    page.wait_for_function("() => document.querySelector('#prompt').value.length > 20")
    drawn = page.input_value("#prompt")
    shot(page, f"{label}-1-prompt")

    page.click("#start-battle")
    page.wait_for_selector("#progress", state="visible")
    assert page.locator("#vote-form").count() == 0, "no vote buttons while generating"
    page.wait_for_function("() => Number(document.querySelector('#progress')?.value) > 0")
    shot(page, f"{label}-2-progress")
    assert "/battles/" in page.url

    page.wait_for_selector("#vote-form[data-ready='1']", timeout=60_000)
    widths = page.eval_on_selector_all(".panes img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    assert page.locator("#vote-form button:disabled").count() == 0
    assert drawn in page.inner_text("#battle")
    names = set(ImageModel.objects.values_list("display_name", flat=True))
    assert not any(name in page.content() for name in names), "names hidden before the vote"
    shot(page, f"{label}-3-ready")

    page.keyboard.press("b")
    page.wait_for_selector("#reveal")
    reveal = page.inner_text("#reveal")
    assert "B is better" in reveal
    assert sum(name in reveal for name in names) == 2
    shot(page, f"{label}-4-reveal")

    page.keyboard.press("n")
    page.wait_for_selector("#start-battle")
    assert errors == []
    page.close()


def test_the_battle_works_without_javascript(
    browser: Any, live_server: Any, worker: Any, models: list[Any]
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/")
    page.fill("#prompt", "a paper boat on a puddle")
    page.click("#start-battle")
    for _ in range(100):
        if page.locator("#vote-form").count():
            break
        page.click("a.refresh")
    page.click("#vote-form button[value='tie']")
    assert "You voted: Tie" in page.inner_text("#reveal")
    context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_leaderboard_shows_its_table_and_plots_at_desktop_and_phone_widths(
    browser: Any, live_server: Any, viewport: dict[str, int], transactional_db: None
) -> None:
    from leaderboard import services as leaderboard_services

    names = ["Our Model v3", "SDXL 1.0", "FLUX.1 schnell", "SD 3.5 Large", "PixArt-Sigma"]
    models = [
        ImageModel.objects.create(
            key=f"lb{i}",
            display_name=name,
            source="x",
            organisation="Lab",
            licence="open",
            is_in_house=i == 0,
        )
        for i, name in enumerate(names)
    ]
    strengths = [0.6, 0.2, 0.9, 0.4, -0.2]
    rng = random.Random(1)
    for _ in range(1500):
        left, right = rng.sample(range(5), 2)
        p_left = 1 / (1 + 10 ** (strengths[right] - strengths[left]))
        choice = "tie" if rng.random() < 0.15 else "left" if rng.random() < p_left else "right"
        leaderboard_services.count_vote(
            left_id=models[left].pk,
            right_id=models[right].pk,
            category=rng.choice(["animals", "portraits"]),
            choice=choice,
        )
    leaderboard_services.refresh_all()
    label = "desktop" if viewport is DESKTOP else "phone"
    page = browser.new_page(viewport=viewport)
    page.goto(live_server.url + "/leaderboard/")
    page.wait_for_selector("#leaderboard tbody tr")
    assert page.locator("#leaderboard tbody tr").count() == 5
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plots img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page itself never scrolls sideways (the table may, in its box)"
    shot(page, f"{label}-leaderboard")
    page.click("text=Animals")
    page.wait_for_selector("#board-meta")
    assert "category=animals" in page.url
    page.close()


def test_chat_runs_two_turns_refines_the_second_and_downloads_a_png(
    browser: Any, live_server: Any, worker: Any, models: list[Any], tmp_path: Path
) -> None:
    page = browser.new_page(viewport=DESKTOP, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/chat/")
    page.select_option("#chat-model", "tiny-inhouse")
    assert "Steps 1–16" in page.inner_text("#chat-bounds")
    page.fill("#chat-prompt", "a red kite over the sea")
    page.click("#chat-submit")
    page.wait_for_selector(".turn[data-finished='1'] .chat-image img", timeout=60_000)

    page.fill("#chat-prompt", "a red kite over the sea at dusk")
    page.check("input[name='seed_mode'][value='random']")
    page.fill("#chat-seed", "321")
    assert page.is_checked("input[name='seed_mode'][value='fixed']"), "a typed seed is fixed"
    page.select_option("#chat-count", "2")
    page.click("#chat-submit")
    page.wait_for_function(
        "() => document.querySelectorAll('.turn').length === 2 && "
        "document.querySelectorAll('.turn')[0].dataset.finished === '1'",
        timeout=60_000,
    )
    newest = page.locator(".turn").first
    assert "seed 321" in newest.inner_text() and newest.locator("img").count() == 2

    newest.locator("details.refine summary").first.click()
    newest.locator("details.refine textarea[name='prompt']").first.fill("make it stormy")
    newest.locator("details.refine button").first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.turn').length === 3 && "
        "document.querySelectorAll('.turn')[0].dataset.finished === '1'",
        timeout=60_000,
    )
    refined = page.locator(".turn").first
    assert "refine" in refined.inner_text()
    shot(page, "desktop-chat")

    with page.expect_download() as download_info:
        refined.locator("a.download").first.click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename == "tiny-inhouse-321-make-it-stormy.png"
    from PIL import Image

    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        image.verify()
    assert errors == []
    page.close()
