"""The single-use battle image pool, secret battle seeds, and finalising a battle's two files."""

from __future__ import annotations

import io
import random
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from PIL import Image

from arena import chat_services as chat
from arena import pool, schemas, services
from arena.models import Battle, PoolImage, Prompt
from generation import images
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel

from ..conftest import require

pytestmark = pytest.mark.django_db


def noise_png(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A PNG of random pixels: every seed its own image, and its own natural file length."""
    rng = random.Random(seed)
    picture = Image.frombytes(
        "RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))
    )
    # Flatten part of it, so two images compress to clearly different lengths.
    picture.paste((0, 0, 0), (0, 0, size[0], rng.randrange(size[1])))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def finish_with(generation: Generation, data: bytes) -> None:
    claimed = generation_jobs.claim(generation_id=generation.pk)
    assert claimed is not None
    generation_jobs.finish(
        generation=claimed, data=data, compute_ms=5, queue_wait_ms=1, device="cpu"
    )


@pytest.fixture
def prompt(models: list[Any]) -> Prompt:
    services.load_prompts()
    found = Prompt.objects.curated().order_by("pk").first()
    assert found is not None
    return found


def only_enabled(*keep: ImageModel) -> None:
    ImageModel.objects.exclude(pk__in=[m.pk for m in keep]).update(enabled=False)


def stock(*, per_pair: int, limit: int = 1) -> list[Generation]:
    """Fill the pool for the first ``limit`` curated prompts and finish every job by hand."""
    queued = pool.refill(per_pair=per_pair, prompt_limit=limit).queued
    jobs = list(Generation.objects.filter(pk__in=queued).order_by("pk"))
    for index, job in enumerate(jobs):
        finish_with(job, noise_png(index))
    return jobs


def test_battle_seeds_are_secret_draws_above_every_seed_chat_accepts() -> None:
    seeds = [pool.secret_seed() for _ in range(2000)]
    assert len(set(seeds)) == len(seeds)
    assert all(chat.MAX_SEED < pool.BATTLE_SEED_MIN <= s <= pool.BATTLE_SEED_MAX for s in seeds)
    assert schemas.MAX_SEED < pool.BATTLE_SEED_MIN, "the forms' bound stays below battle seeds"
    # Draws spread over the whole range, not a small corner of it.
    assert max(seeds) > 2**62 and min(seeds) < 2**62


def test_a_live_battle_uses_a_fresh_secret_seed_even_on_a_curated_prompt(
    models: list[Any], prompt: Prompt
) -> None:
    battles = [services.create_battle(prompt_text=prompt.text, owner="me") for _ in range(5)]
    seeds = {b.seed for b in battles}
    assert len(seeds) == 5 and min(seeds) >= pool.BATTLE_SEED_MIN
    for battle in battles:
        assert battle.status == Battle.Status.GENERATING
        assert battle.generation_left.seed == battle.generation_right.seed == battle.seed


@pytest.mark.parametrize("seed", [pool.BATTLE_SEED_MIN, 2**62, pool.BATTLE_SEED_MAX])
def test_chat_and_compare_refuse_any_seed_a_battle_could_have(models: list[Any], seed: int) -> None:
    with pytest.raises(chat.ChatError, match="seed must be between 0 and"):
        chat.check_settings(model=models[0], prompt="a fox", seed=seed)
    with pytest.raises(chat.ChatError, match="seed must be between 0 and"):
        chat.create_named_battle(
            left=models[0], right=models[1], prompt_text="a fox", owner="me", seed=seed
        )


def test_chat_and_compare_that_name_a_seed_still_work(models: list[Any]) -> None:
    settings = chat.check_settings(model=models[0], prompt="a fox", seed=3, count=4)
    turn = chat.start_turn(conversation=chat.conversation_for(owner="me"), settings=settings)
    assert [image.generation.seed for image in turn.chat_images.all()] == [3, 4, 5, 6]
    named = chat.create_named_battle(
        left=models[0], right=models[1], prompt_text="a fox", owner="me", seed=3
    )
    assert named.seed == 3 and named.generation_left.purpose == Generation.Purpose.CHAT


def test_pregenerate_fills_each_prompt_and_model_with_secret_single_use_images(
    models: list[Any], prompt: Prompt
) -> None:
    result = services.pregenerate(per_pair=2, limit=1)
    jobs = Generation.objects.filter(pk__in=result.queued)
    assert len(result.queued) == 2 * len(models) and result.present == 0
    assert {job.purpose for job in jobs} == {Generation.Purpose.POOL}
    assert all(job.seed >= pool.BATTLE_SEED_MIN for job in jobs)
    assert len({job.seed for job in jobs}) == len(result.queued)
    assert all(job.cache_key == "" for job in jobs), "no content address to be found by"
    for model in models:
        assert PoolImage.objects.filter(prompt=prompt, model=model).count() == 2
    again = services.pregenerate(per_pair=2, limit=1)
    assert again == services.Pregenerated(queued=[], present=2 * len(models))


def test_a_taken_pool_image_is_never_offered_again(models: list[Any], prompt: Prompt) -> None:
    only_enabled(models[0], models[1])
    stocked = {job.pk for job in stock(per_pair=2)}
    served = []
    for _ in range(4):
        battle = services.create_battle(prompt_text=prompt.text, owner="me")
        served.append(battle)
    from_pool = [b for b in served if b.status == Battle.Status.READY]
    assert len(from_pool) == 2, "two images per model: two battles from the pool, then live"
    sides = [g for b in from_pool for g in (b.generation_left_id, b.generation_right_id)]
    assert len(set(sides)) == 4 and set(sides) == stocked
    assert PoolImage.objects.filter(taken_at=None).count() == 0
    for battle in served[2:]:
        assert battle.status == Battle.Status.GENERATING
        assert not {battle.generation_left_id, battle.generation_right_id} & stocked
    # A refill replaces what was taken with new images, never the taken ones.
    refilled = pool.refill(per_pair=2, prompt_limit=1)
    assert len(refilled.queued) == 4 and not set(refilled.queued) & stocked


def test_an_empty_pool_is_not_an_error_the_battle_generates_live(
    models: list[Any], prompt: Prompt
) -> None:
    battle = services.create_battle(prompt_text=prompt.text, owner="me")
    assert battle.status == Battle.Status.GENERATING
    assert battle.generation_left.purpose == Generation.Purpose.BATTLE
    assert battle.generation_left.status == Generation.Status.QUEUED


@pytest.mark.parametrize("change", [{"enabled": False}, {"retired": True, "enabled": False}])
def test_a_pool_image_of_a_disabled_or_retired_model_is_never_served(
    models: list[Any], prompt: Prompt, change: dict[str, bool]
) -> None:
    stock(per_pair=1)
    gone = models[0]
    ImageModel.objects.filter(pk=gone.pk).update(**change)
    gone.refresh_from_db()
    kept = PoolImage.objects.get(model=gone)
    size = (gone.width, gone.height)
    with transaction.atomic():
        taken = pool.take_pair(
            prompt=prompt, left=gone, right=models[1], left_size=size, right_size=size
        )
    assert taken is None
    for _ in range(6):
        battle = services.create_battle(prompt_text=prompt.text, owner="me")
        assert gone.pk not in {battle.model_left_id, battle.model_right_id}
    kept.refresh_from_db()
    assert kept.taken_at is None
    assert not Battle.objects.filter(generation_left=kept.generation).exists()
    assert not Battle.objects.filter(generation_right=kept.generation).exists()


def test_the_pool_serves_a_battle_only_when_every_enabled_model_is_stocked(
    models: list[Any], prompt: Prompt
) -> None:
    stock(per_pair=1)
    # One model runs dry: instant battles would then never hold it, which would name it.
    PoolImage.objects.filter(model=models[4]).update(taken_at="2026-01-01T00:00:00Z")
    for _ in range(5):
        battle = services.create_battle(prompt_text=prompt.text, owner="me")
        assert battle.status == Battle.Status.GENERATING
    assert PoolImage.objects.filter(taken_at=None).count() == len(models) - 1


def test_a_typed_prompt_never_takes_from_the_pool(models: list[Any], prompt: Prompt) -> None:
    stock(per_pair=1)
    battle = services.create_battle(prompt_text=prompt.text + " at night", owner="me")
    assert battle.status == Battle.Status.GENERATING
    assert PoolImage.objects.filter(taken_at=None).count() == len(models)


def test_a_capped_refill_spreads_over_prompts_and_waits_while_live_battles_wait(
    models: list[Any], prompt: Prompt
) -> None:
    first = pool.refill(per_pair=2, prompt_limit=3, max_pending=4)
    assert len(first.queued) == 4, "all tiny models share one queue: four pool jobs in all"
    prompts = Generation.objects.filter(pk__in=first.queued).values_list("prompt", flat=True)
    assert len(set(prompts)) == 3, "one image per prompt before a second for any"
    assert pool.refill(per_pair=2, prompt_limit=3, max_pending=4).queued == []
    for job in Generation.objects.filter(pk__in=first.queued):
        finish_with(job, noise_png(job.pk))
    services.create_battle(prompt_text="a typed prompt", owner="me")  # a live job waits
    assert pool.refill(per_pair=2, prompt_limit=3, max_pending=4).queued == []


def test_pool_jobs_go_out_at_the_lowest_priority(
    models: list[Any], prompt: Prompt, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    from generation import tasks

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.generate, "apply_async", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        pool.refill(per_pair=1, prompt_limit=1)
    lowest = max(generation_jobs.PRIORITY.values())
    assert len(sent) == len(models) and {kw["priority"] for kw in sent} == {lowest}


def test_both_images_of_a_battle_get_one_size_one_length_and_one_layout(
    models: list[Any], django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    battle = services.create_battle(prompt_text="a harbour", owner="me")
    worker_files: list[str] = []
    finalise = services.finalise_battle_images

    def spy(*, battle: Battle) -> None:
        for pk in (battle.generation_left_id, battle.generation_right_id):
            worker_files.append(str(Generation.objects.get(pk=pk).image.name))
        finalise(battle=battle)

    monkeypatch.setattr(services, "finalise_battle_images", spy)
    for side, seed in ((battle.generation_left, 1), (battle.generation_right, 2)):
        with django_capture_on_commit_callbacks(execute=True):
            finish_with(side, noise_png(seed))
    assert len(worker_files) == 2, "finalised once, when both sides were done"
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY
    files = []
    for side in (battle.generation_left, battle.generation_right):
        with side.image.open("rb") as handle:
            files.append(handle.read())
        assert side.image.name not in worker_files, "stored afresh under a new random name"
        assert not side.image.storage.exists(worker_files.pop(0)), "the worker's file is gone"
    left, right = files
    assert len(left) == len(right) and len(left) % images.PAD_QUANTUM == 0
    assert images.png_chunk_types(left) == images.png_chunk_types(right)
    assert images.png_chunk_types(left) == [b"IHDR", b"IDAT", images.PAD_CHUNK, b"IEND"]
    assert left[:33] == right[:33], "one signature and one IHDR: format and dimensions"
    # Padding changes no pixel: each file decodes to what the worker made.
    for data, seed in ((left, 1), (right, 2)):
        assert images.decoded_pixels(data) == images.decoded_pixels(noise_png(seed))


def test_finalising_differently_sized_sides_gives_one_size(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a harbour", owner="me")
    finish_with(battle.generation_left, noise_png(1, (64, 64)))
    finish_with(battle.generation_right, noise_png(2, (96, 80)))
    battle.refresh_from_db()
    sizes = []
    for side in (battle.generation_left, battle.generation_right):
        with side.image.open("rb") as handle:
            sizes.append(images.decoded_pixels(handle.read())[0])
    assert sizes == [(64, 64), (64, 64)]


def test_two_models_with_a_shared_size_are_both_made_at_it(models: list[Any]) -> None:
    left, right = models[0], models[1]
    left.sizes, right.sizes = ["64x64", "128x128"], ["128x128", "256x256"]
    left.width = left.height = 64
    right.width = right.height = 256
    assert services.battle_size(left=left, right=right) == services.BattleSize(
        left=(128, 128), right=(128, 128), output=(128, 128)
    )
    right.sizes = ["256x256"]
    assert services.battle_size(left=left, right=right) == services.BattleSize(
        left=(64, 64), right=(256, 256), output=(64, 64)
    )


def test_pool_levels_show_in_the_stats_api_and_the_admin(
    models: list[Any], prompt: Prompt, admin_client: Client
) -> None:
    stock(per_pair=1)
    pool.refill(per_pair=2, prompt_limit=1)  # one more each, still queued
    levels = pool.levels()
    assert (levels.ready, levels.pending) == (len(models), len(models))
    data = Client().get("/api/v1/stats").json()["pool"]
    assert data["ready"] == data["pending"] == len(models)
    assert data["models"] == len(models)
    assert data["empty_pairs"] == len(models) * (levels.prompts - 1)
    assert not any(model.key in str(data) for model in models), "per model only in the admin"
    page = admin_client.get("/admin/arena/poolimage/").content.decode()
    assert f"{len(models)} ready, {len(models)} being made" in page
    assert all(model.key in page for model in models)


def test_beat_refills_the_pool_periodically(settings: Any) -> None:
    from arena.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["refill-pool"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert entry["schedule"] == float(settings.ARENA_POOL_REFILL_S)


@pytest.mark.django_db(transaction=True)
def test_concurrent_battles_never_share_a_pool_image_on_postgresql(
    models: list[Any], prompt: Prompt
) -> None:
    require(connection.vendor == "postgresql", "needs PostgreSQL (DATABASE_URL=postgres://...)")
    only_enabled(models[0], models[1])
    battles_at_once = 6
    stock(per_pair=battles_at_once)
    start = threading.Barrier(battles_at_once, timeout=30)
    # Every transaction holds its pool rows until all have taken theirs: a plain row lock
    # would make the others wait here for ever; SKIP LOCKED lets each take another row.
    holding = threading.Barrier(battles_at_once, timeout=30)
    made: list[Battle] = []
    errors: list[BaseException] = []

    def play() -> None:
        try:
            start.wait()
            with transaction.atomic():
                battle = services.create_battle(prompt_text=prompt.text, owner="racer")
                holding.wait()
            made.append(battle)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=play) for _ in range(battles_at_once)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(made) == battles_at_once
    assert all(b.status == Battle.Status.READY for b in made), "every battle from the pool"
    sides = [g for b in made for g in (b.generation_left_id, b.generation_right_id)]
    assert len(set(sides)) == len(sides) == 2 * battles_at_once
    assert PoolImage.objects.filter(taken_at=None).count() == 0


def test_each_finished_pool_image_tops_the_pool_up_again(
    models: list[Any], prompt: Prompt, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    from arena import tasks

    calls: list[int] = []
    monkeypatch.setattr(tasks.refill_pool, "delay", lambda: calls.append(1))
    (job, *_) = Generation.objects.filter(pk__in=pool.refill(per_pair=1, prompt_limit=1).queued)
    with django_capture_on_commit_callbacks(execute=True):
        finish_with(job, noise_png(1))
    assert calls == [1]
    battle = services.create_battle(prompt_text="a typed prompt", owner="me")
    with django_capture_on_commit_callbacks(execute=True):
        finish_with(battle.generation_left, noise_png(2))
    assert calls == [1], "a battle image does not"


def test_the_refill_task_keeps_to_one_pool_job_per_queue_by_default(
    models: list[Any], prompt: Prompt, settings: Any
) -> None:
    from arena import tasks

    assert settings.ARENA_POOL_REFILL_PENDING == 1
    tasks.refill_pool()  # the task's body, called in this process, as a worker would
    tasks.refill_pool()
    pending = Generation.objects.unfinished().filter(purpose=Generation.Purpose.POOL)
    assert pending.count() == 1, "all tiny models share one queue"


def test_the_pregenerate_command_fills_the_pool_and_refuses_a_negative_count(
    models: list[Any], prompt: Prompt
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("pregenerate", "--count", "1", "--limit", "1", stdout=out)
    assert f"{len(models)} pool images queued, 0 already unused" in out.getvalue()
    with pytest.raises(CommandError, match="must not be negative"):
        call_command("pregenerate", "--count", "-1")
