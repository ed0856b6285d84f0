"""Prompt moderation: the blocklist, the classifier hook, the message and the counts."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from arena import moderation
from arena.models import Battle, BlockedTerm, PromptRefusal

pytestmark = pytest.mark.django_db


def refuse_everything_about_cats(text: str) -> str | None:
    """A stand-in classifier for the hook."""
    return "cats" if "cat" in text.lower() else None


def test_the_blocklist_file_loads_once(tmp_path: Any) -> None:
    listed = tmp_path / "blocklist.txt"
    listed.write_text("# a comment\nBad Word | slur\nanother phrase\n\n")
    assert moderation.load_blocklist(path=listed) == 2
    assert moderation.load_blocklist(path=listed) == 0
    assert set(BlockedTerm.objects.values_list("term", "reason")) == {
        ("Bad Word", "slur"),
        ("another phrase", "blocklist"),
    }


def test_the_shipped_blocklist_loads() -> None:
    assert moderation.load_blocklist() > 0


def test_a_blocked_prompt_is_refused_with_a_message_that_names_nothing(
    client: Client, models: list[Any], settings: Any
) -> None:
    BlockedTerm.objects.create(term="bad word", reason="slur")
    settings.ARENA_LIMIT_BATTLES = "session=1/3600"
    for prompt in ("a BAD   word on a wall", "ＢＡＤ WORD"):  # case, spacing, full-width letters
        page = client.post("/battles", {"prompt": prompt})
        assert page.status_code == 400 and moderation.REFUSED_MESSAGE in page.content.decode()
    api = client.post("/api/v1/battles", {"prompt": "bad word"}, content_type="application/json")
    assert api.status_code == 400 and api.json()["error"] == {
        "code": "bad_prompt",
        "message": moderation.REFUSED_MESSAGE,
    }
    for model in models:
        assert model.display_name not in moderation.REFUSED_MESSAGE
    assert PromptRefusal.objects.get(reason="slur").count == 3
    assert not Battle.objects.exists()
    assert client.post("/battles", {"prompt": "a badword-free fox"}).status_code == 302, (
        "refusals cost no token, and only whole words match"
    )


def test_an_admins_edit_applies_at_once(admin_client: Client, models: list[Any]) -> None:
    client = Client()
    assert client.post("/battles", {"prompt": "a kite"}).status_code == 302
    added = admin_client.post(
        "/admin/arena/blockedterm/add/", {"term": "kite", "reason": "test", "active": "on"}
    )
    assert added.status_code == 302
    assert client.post("/battles", {"prompt": "a kite"}).status_code == 400


def test_the_classifier_hook_refuses_and_counts_by_its_reason(
    client: Client, models: list[Any], settings: Any
) -> None:
    settings.ARENA_PROMPT_CLASSIFIER = "tests.arena.test_moderation.refuse_everything_about_cats"
    assert client.post("/battles", {"prompt": "a cat"}).status_code == 400
    assert PromptRefusal.objects.get(reason="cats").count == 1
    assert client.post("/battles", {"prompt": "a dog"}).status_code == 302
