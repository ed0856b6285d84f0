"""Direct chat and named comparisons: bounds, turns, refine, downloads, limits, the board."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.test import Client

from arena import chat_services, services
from arena.models import Battle, ChatTurn
from generation.models import Generation, ImageModel
from leaderboard import services as leaderboard_services
from leaderboard.models import OnlineElo, PairCount

from .test_services import finish_side

pytestmark = pytest.mark.django_db


def model(models: list[Any], key: str = "tiny-inhouse") -> ImageModel:
    return next(m for m in models if m.key == key)


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"steps": 0}, "steps", "takes 1 to 16 steps"),
        ({"steps": 17}, "steps", "takes 1 to 16 steps"),
        ({"steps": "many"}, "steps", "Steps must be a number"),
        ({"guidance": 10.5}, "guidance", "takes guidance from 0 to 10"),
        ({"size": "512x512"}, "size", "makes these sizes: 64x64"),
        ({"count": 5}, "count", "1 to 4 images"),
        ({"seed": -1}, "seed", "between 0 and"),
        ({"prompt": "  "}, "prompt", "Enter a prompt"),
        ({"prompt": "bad\x1b[31m"}, "prompt", "control character"),
    ],
)
def test_a_setting_out_of_the_models_bounds_is_refused_not_clamped(
    models: list[Any], override: dict[str, Any], field: str, message: str
) -> None:
    request: dict[str, Any] = {"model": model(models), "prompt": "a fox"} | override
    with pytest.raises(chat_services.ChatError) as error:
        chat_services.check_settings(**request)
    assert error.value.field == field and message in error.value.message


def test_a_turn_makes_its_images_with_consecutive_seeds(models: list[Any]) -> None:
    settings = chat_services.check_settings(model=model(models), prompt="a fox", seed=40, count=3)
    turn = chat_services.start_turn(
        conversation=chat_services.conversation_for(owner="me"), settings=settings
    )
    seeds = [s.generation.seed for s in chat_services.image_states(turn)]
    assert seeds == [40, 41, 42] and turn.count == 3


def test_a_random_seed_is_drawn_and_kept_with_the_turn(models: list[Any]) -> None:
    settings = chat_services.check_settings(
        model=model(models), prompt="a fox", rng=random.Random(1)
    )
    assert 0 <= settings.seed < 2**31


def test_run_again_keeps_or_changes_the_seed(models: list[Any]) -> None:
    settings = chat_services.check_settings(model=model(models), prompt="a fox", seed=7)
    turn = chat_services.start_turn(
        conversation=chat_services.conversation_for(owner="me"), settings=settings
    )
    same = chat_services.run_again(turn=turn, new_seed=False)
    other = chat_services.run_again(turn=turn, new_seed=True, rng=random.Random(2))
    assert same.seed == 7 and other.seed != 7 and other.prompt == turn.prompt


def test_refine_is_offered_only_where_the_family_has_image_to_image(models: list[Any]) -> None:
    assert chat_services.can_refine(model(models, "tiny-inhouse"))
    assert not chat_services.can_refine(model(models, "tiny-pixart"))


def test_a_refine_turn_starts_from_the_chosen_image(models: list[Any]) -> None:
    conversation = chat_services.conversation_for(owner="me")
    first = chat_services.start_turn(
        conversation=conversation,
        settings=chat_services.check_settings(model=model(models), prompt="a fox", seed=3),
    )
    source = chat_services.image_states(first)[0].generation
    finish_side(source)
    source.refresh_from_db()
    settings = chat_services.check_settings(model=model(models), prompt="a fox at night", seed=3)
    refined = chat_services.start_turn(
        conversation=conversation, settings=settings, source=source, strength=0.5
    )
    job = chat_services.image_states(refined)[0].generation
    assert refined.kind == ChatTurn.Kind.REFINE
    assert job.source_image == source and job.strength == 0.5
    with pytest.raises(chat_services.ChatError, match="cannot refine"):
        chat_services.start_turn(
            conversation=conversation,
            settings=chat_services.check_settings(model=model(models, "tiny-pixart"), prompt="x"),
            source=source,
            strength=0.5,
        )


def test_the_download_name_says_model_seed_and_prompt(models: list[Any]) -> None:
    job = Generation(model=model(models), prompt="A Red Fox, in the SNOW!", seed=9)
    assert chat_services.download_name(job) == "tiny-inhouse-9-a-red-fox-in-the-snow.png"


def test_nothing_done_in_chat_or_named_mode_changes_the_anonymous_board(
    models: list[Any], finish_battle: Any
) -> None:
    blind = services.create_battle(prompt_text="a fox", owner="me")
    finish_battle(blind)
    services.cast_vote(battle=blind, choice="left", voter="v")
    board_before = leaderboard_services.refresh()
    assert board_before is not None
    counts = list(PairCount.objects.filter(anonymous=True).values())
    elo = list(OnlineElo.objects.values())

    settings = chat_services.check_settings(model=model(models), prompt="a fox", seed=1, count=2)
    turn = chat_services.start_turn(
        conversation=chat_services.conversation_for(owner="me"), settings=settings
    )
    for state in chat_services.image_states(turn):
        finish_side(state.generation)
    named = chat_services.create_named_battle(
        left=model(models),
        right=model(models, "tiny-baseline-a"),
        prompt_text="a fox",
        owner="me",
    )
    finish_battle(named)
    services.cast_vote(battle=named, choice="left", voter="v")

    assert list(PairCount.objects.filter(anonymous=True).values()) == counts
    assert list(OnlineElo.objects.values()) == elo
    board_after = leaderboard_services.refresh()
    assert board_after is not None
    assert list(board_after.rows.values_list("model_id", "rating")) == list(
        board_before.rows.values_list("model_id", "rating")
    )


def test_a_named_comparison_shows_names_before_the_vote(models: list[Any]) -> None:
    battle = chat_services.create_named_battle(
        left=model(models),
        right=model(models, "tiny-baseline-b"),
        prompt_text="a fox",
        owner="me",
        seed=11,
    )
    battle.refresh_from_db()
    state = services.battle_state(battle)
    assert not battle.anonymous and battle.seed == 11
    assert battle.generation_left.seed == battle.generation_right.seed == 11
    assert battle.status == Battle.Status.GENERATING
    assert state.left_name is None  # not ready yet: no images, no names
    with pytest.raises(chat_services.ChatError, match="two different"):
        chat_services.create_named_battle(
            left=model(models), right=model(models), prompt_text="x", owner="me"
        )


# --- Views -----------------------------------------------------------------------------------


def post_turn(client: Client, **fields: Any) -> Any:
    data = {"model": "tiny-inhouse", "prompt": "a fox", "seed_mode": "random", "count": 1}
    return client.post("/chat/turns", data | fields)


def test_the_chat_page_lists_models_with_their_details(client: Client, models: list[Any]) -> None:
    html = client.get("/chat/").content.decode()
    for m in models:
        assert m.display_name in html and m.organisation in html
    assert "in-house" in html


def test_a_turn_from_the_form_appears_in_the_history(client: Client, models: list[Any]) -> None:
    response = post_turn(client, seed_mode="fixed", seed="123", count=2)
    assert response.status_code == 302
    html = client.get("/chat/").content.decode()
    assert "seed 123" in html and html.count('class="chat-image"') == 2


def test_an_out_of_range_setting_gets_a_clear_400(client: Client, models: list[Any]) -> None:
    response = post_turn(client, steps="999")
    assert response.status_code == 400
    assert "takes 1 to 16 steps" in response.content.decode()
    assert not ChatTurn.objects.exists()


def test_another_sessions_turns_and_images_are_404(client: Client, models: list[Any]) -> None:
    post_turn(client)
    turn = ChatTurn.objects.get()
    job = turn.chat_images.get().generation
    finish_side(job)
    stranger = Client()
    assert stranger.get(f"/chat/turns/{turn.pk}/settings.json").status_code == 404
    assert stranger.get(f"/chat/images/{job.pk}/download").status_code == 404
    assert client.get(f"/chat/images/{job.pk}/download").status_code == 200


def test_the_download_is_a_png_attachment_named_for_model_and_seed(
    client: Client, models: list[Any]
) -> None:
    post_turn(client, seed_mode="fixed", seed="5", prompt="tiny red fox")
    job = ChatTurn.objects.get().chat_images.get().generation
    finish_side(job)
    response = client.get(f"/chat/images/{job.pk}/download")
    assert response["Content-Type"] == "image/png"
    assert 'filename="tiny-inhouse-5-tiny-red-fox.png"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[attr-defined]


def test_a_turns_settings_come_as_json(client: Client, models: list[Any]) -> None:
    post_turn(client, seed_mode="fixed", seed="77", steps="6", guidance="3.5")
    turn = ChatTurn.objects.get()
    data = client.get(f"/chat/turns/{turn.pk}/settings.json").json()
    assert data | {} == data and (data["seed"], data["steps"], data["guidance"]) == (77, 6, 3.5)
    assert data["model"] == "tiny-inhouse" and data["size"] == "64x64"


def test_too_many_requests_get_429_with_a_retry_time(
    client: Client, models: list[Any], settings: Any
) -> None:
    settings.ARENA_LIMIT_CHAT = "session=2/86400"  # no refill within the test
    assert post_turn(client).status_code == 302
    assert post_turn(client).status_code == 302
    refused = post_turn(client)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Try again in" in refused.content.decode()
    assert ChatTurn.objects.count() == 2
    battle = client.post("/battles", {"prompt": "a fox"})
    assert battle.status_code == 302, "battles have limits of their own"


def test_the_address_limit_holds_across_sessions(models: list[Any], settings: Any) -> None:
    settings.ARENA_LIMIT_CHAT = "address=3/86400"  # no refill within the test
    statuses = [post_turn(Client()).status_code for _ in range(4)]
    assert statuses == [302, 302, 302, 429]


def test_the_compare_form_starts_a_named_battle(client: Client, models: list[Any]) -> None:
    response = client.post(
        "/compare/start", {"left": "tiny-inhouse", "right": "tiny-baseline-a", "prompt": "a kite"}
    )
    battle = Battle.objects.get()
    assert response.status_code == 302 and not battle.anonymous
    page = client.get(response["Location"]).content.decode()
    assert "Named comparison" in page


def test_a_typed_seed_is_used_even_with_random_ticked(client: Client, models: list[Any]) -> None:
    assert post_turn(client, seed_mode="random", seed="4242").status_code == 302
    assert ChatTurn.objects.get().seed == 4242
    page = client.get("/chat/").content.decode()
    assert "seed 4242" in page and "A typed seed is always used" in page


def test_a_fixed_seed_without_a_number_is_a_clear_400(client: Client, models: list[Any]) -> None:
    response = post_turn(client, seed_mode="fixed", seed="")
    assert response.status_code == 400 and "Type a seed" in response.content.decode()
    assert not ChatTurn.objects.exists()


def refinable(client: Client, key: str = "tiny-inhouse", **fields: Any) -> Generation:
    """A finished image of a turn of this client's conversation."""
    post_turn(client, model=key, seed="9", negative_prompt="blurry", **fields)
    job = ChatTurn.objects.filter(model__key=key).last().chat_images.get().generation  # type: ignore[union-attr]
    finish_side(job)
    job.refresh_from_db()
    return job


def test_refine_keeps_the_negative_prompt_and_shows_the_source(
    client: Client, models: list[Any]
) -> None:
    source = refinable(client)
    response = client.post(f"/chat/images/{source.pk}/refine", {"prompt": "a fox at night"})
    assert response.status_code == 302
    turn = ChatTurn.objects.get(kind=ChatTurn.Kind.REFINE)
    assert turn.negative_prompt == "blurry" and turn.source == source
    page = client.get("/chat/").content.decode()
    assert 'alt="The image refined"' in page
    # The refine form starts from the image's own prompt, folded away under its image.
    assert '<details class="refine"><summary>Refine this image</summary>' in page
    assert ">a fox</textarea>" in page


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("missing", 404, ""),
        ("stranger", 404, ""),
        ("cannot_refine", 400, "cannot refine images"),
        ("failed", 400, "This image failed"),
        ("queued", 400, "not ready yet"),
        ("disabled", 400, "is not offered now"),
        ("file_gone", 400, "no longer kept"),
        ("bad_strength", 400, "strength"),
        ("strength_range", 400, "Strength must be between"),
        ("empty_prompt", 400, "Enter a prompt"),
    ],
)
def test_refine_defects_get_a_clear_4xx_never_a_5xx(
    client: Client, models: list[Any], case: str, status: int, message: str
) -> None:
    fields: dict[str, Any] = {"prompt": "at night", "strength": "0.5"}
    if case == "cannot_refine":
        source = refinable(client, "tiny-pixart")
    elif case in {"failed", "queued"}:
        post_turn(client)
        source = ChatTurn.objects.get().chat_images.get().generation
        if case == "failed":
            Generation.objects.filter(pk=source.pk).update(status=Generation.Status.FAILED)
    else:
        source = refinable(client)
    if case == "disabled":
        ImageModel.objects.filter(pk=source.model_id).update(enabled=False)
    if case == "file_gone":
        Generation.objects.filter(pk=source.pk).update(image_sha256="")
    fields |= {
        "bad_strength": {"strength": "strong"},
        "strength_range": {"strength": "3"},
        "empty_prompt": {"prompt": "  "},
    }.get(case, {})
    target = source.pk + 10_000 if case == "missing" else source.pk
    asker = Client() if case == "stranger" else client
    before = ChatTurn.objects.count()
    response = asker.post(f"/chat/images/{target}/refine", fields)
    assert response.status_code == status
    assert message in response.content.decode()
    assert ChatTurn.objects.count() == before
