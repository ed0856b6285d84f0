"""Battle pages and the JSON API through Django's test client (no worker)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client

from arena.models import Battle, Vote
from leaderboard.models import PairCount

from .test_services import finish_side

pytestmark = pytest.mark.django_db


def api_client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/v1/session").json()["csrf_token"]
    return client, token


def post_json(client: Client, url: str, data: Any, token: str | None) -> Any:
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(url, data=json.dumps(data), content_type="application/json", headers=headers)


def api_battle(client: Client, token: str, prompt: str = "a lighthouse at dawn") -> dict[str, Any]:
    response = post_json(client, "/api/v1/battles", {"prompt": prompt}, token)
    assert response.status_code == 201, response.content
    return response.json()


def make_ready(battle_id: str) -> Battle:
    battle = Battle.objects.get(public_id=battle_id)
    finish_side(battle.generation_left)
    finish_side(battle.generation_right)
    return battle


def test_the_battle_page_has_a_prompt_box_a_random_prompt_button_and_two_panes(
    client: Client,
) -> None:
    html = client.get("/").content.decode()
    assert 'name="prompt"' in html and 'id="random-prompt"' in html
    assert "<figcaption>A</figcaption>" in html and "<figcaption>B</figcaption>" in html


def test_drawing_a_random_prompt_without_javascript_fills_the_box(client: Client) -> None:
    from arena.services import load_prompts

    load_prompts()
    html = client.get("/?draw=1").content.decode()
    box = html.split('id="prompt"', 1)[1].split("</textarea>", 1)[0]
    assert len(box.split(">", 1)[1].strip()) > 20


def test_submitting_the_form_creates_a_battle_and_redirects_to_it(
    client: Client, models: list[Any]
) -> None:
    response = client.post("/battles", {"prompt": "a lighthouse at dawn"})
    battle = Battle.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/battles/{battle.public_id}"
    page = client.get(response["Location"]).content.decode()
    assert 'id="progress"' in page and "Refresh" in page


def test_the_page_flow_without_javascript_votes_and_reveals(
    client: Client, models: list[Any]
) -> None:
    client.post("/battles", {"prompt": "a lighthouse at dawn"})
    battle = make_ready(str(Battle.objects.get().public_id))
    page = client.get(f"/battles/{battle.public_id}").content.decode()
    assert 'id="vote-form"' in page and battle.model_left.display_name not in page
    response = client.post(f"/battles/{battle.public_id}/vote", {"choice": "right"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert battle.model_left.display_name in page and battle.model_right.display_name in page
    assert 'id="next-battle"' in page


def test_an_empty_prompt_gets_a_clear_400_on_the_page(client: Client, models: list[Any]) -> None:
    response = client.post("/battles", {"prompt": "   "})
    assert response.status_code == 400
    assert "Enter a prompt." in response.content.decode()
    assert not Battle.objects.exists()


def test_the_api_plays_a_battle_and_reveals_names_only_after_the_vote(models: list[Any]) -> None:
    client, token = api_client()
    created = api_battle(client, token)
    assert set(created) == {"id", "status", "progress"} and created["status"] == "generating"
    make_ready(created["id"])
    ready = client.get(f"/api/v1/battles/{created['id']}").json()
    assert ready["status"] == "ready" and ready["progress"] == 100
    assert set(ready) == {"id", "status", "progress", "images"}
    for url in ready["images"].values():
        image = client.get(url.replace("http://testserver", ""))
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
    voted = post_json(client, f"/api/v1/battles/{created['id']}/vote", {"choice": "tie"}, token)
    assert voted.status_code == 200
    battle = Battle.objects.get(public_id=created["id"])
    assert voted.json()["models"] == {
        "left": battle.model_left.display_name,
        "right": battle.model_right.display_name,
    }


@pytest.mark.parametrize("prompt", ["", "x" * 10_000, "bell\x07"])
def test_a_bad_prompt_gets_a_clear_400_from_the_api(models: list[Any], prompt: str) -> None:
    client, token = api_client()
    response = post_json(client, "/api/v1/battles", {"prompt": prompt}, token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_prompt"
    assert response.json()["error"]["message"]
    assert not Battle.objects.exists()


def test_a_body_that_is_not_json_gets_400(models: list[Any]) -> None:
    client, token = api_client()
    response = client.post(
        "/api/v1/battles",
        data="{nope",
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_a_post_without_csrf_gets_403(models: list[Any]) -> None:
    client, _ = api_client()
    response = post_json(client, "/api/v1/battles", {"prompt": "a cat"}, token=None)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf"
    page = client.post("/battles", {"prompt": "a cat"})
    assert page.status_code == 403
    assert not Battle.objects.exists()


def test_a_second_vote_gets_409_and_changes_nothing(models: list[Any]) -> None:
    client, token = api_client()
    created = api_battle(client, token)
    make_ready(created["id"])
    url = f"/api/v1/battles/{created['id']}/vote"
    assert post_json(client, url, {"choice": "left"}, token).status_code == 200
    again = post_json(client, url, {"choice": "right"}, token)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
    assert Vote.objects.get().choice == "left" and PairCount.objects.get().total == 1


def test_a_vote_before_both_images_are_ready_gets_409(models: list[Any]) -> None:
    client, token = api_client()
    created = api_battle(client, token)
    response = post_json(client, f"/api/v1/battles/{created['id']}/vote", {"choice": "left"}, token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_ready"
    assert not Vote.objects.exists()


def test_an_unknown_choice_gets_400(models: list[Any]) -> None:
    client, token = api_client()
    created = api_battle(client, token)
    make_ready(created["id"])
    response = post_json(client, f"/api/v1/battles/{created['id']}/vote", {"choice": "A"}, token)
    assert response.status_code == 400 and not Vote.objects.exists()


def test_an_unknown_battle_id_gets_404(models: list[Any]) -> None:
    client, token = api_client()
    missing = uuid.uuid4()
    assert client.get(f"/api/v1/battles/{missing}").status_code == 404
    assert (
        post_json(client, f"/api/v1/battles/{missing}/vote", {"choice": "left"}, token).status_code
        == 404
    )
    assert client.get(f"/battles/{missing}").status_code == 404
    assert client.get("/api/v1/battles/not-a-uuid").status_code == 404


def test_another_sessions_battle_is_a_404_and_cannot_be_voted_on(models: list[Any]) -> None:
    owner, owner_token = api_client()
    created = api_battle(owner, owner_token)
    make_ready(created["id"])
    stranger, stranger_token = api_client()
    assert stranger.get(f"/api/v1/battles/{created['id']}").status_code == 404
    response = post_json(
        stranger, f"/api/v1/battles/{created['id']}/vote", {"choice": "left"}, stranger_token
    )
    assert response.status_code == 404 and not Vote.objects.exists()


def test_a_missing_image_name_gets_404(client: Client) -> None:
    assert client.get("/images/0123456789abcdef0123456789abcdef.png").status_code == 404
    assert client.get("/images/..%2F..%2Fsettings.py").status_code == 404
