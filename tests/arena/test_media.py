"""Generated images on a real local S3 server (moto) and served through a real nginx."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage

from arena import media, services
from arena.settings import s3_media_storage
from tests.conftest import require
from tests.local_servers import moto_s3, nginx, nginx_available

pytestmark = pytest.mark.django_db(transaction=True)

# Headers that may differ between the two images of a battle: when the answer was sent, and
# the file's length (kept equal for both sides by the image pool, issue #10).
ALLOWED_TO_DIFFER = {"date", "content-length"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh private bucket on the moto server, made Django's default storage."""
    import boto3

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "arena-test"),
        ("AWS_SECRET_ACCESS_KEY", "arena-test-secret"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    name = f"arena-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    settings.ARENA_MEDIA_S3_BUCKET = name
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_media_storage(bucket=name, endpoint_url=s3_endpoint, region="us-east-1"),
    }
    return name


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def played_battle(finish_battle: Any) -> Any:
    battle = services.create_battle(prompt_text="a lantern on a pier", owner="o" * 64)
    finish_battle(battle)
    return battle


def test_images_go_to_the_bucket_when_one_is_configured(
    models: list[Any], finish_battle: Any, bucket: str, s3_endpoint: str, settings: Any, client: Any
) -> None:
    battle = played_battle(finish_battle)
    stored = objects(s3_endpoint, bucket)
    names = {battle.generation_left.image.name, battle.generation_right.image.name}
    assert set(stored) == names
    assert not any(Path(settings.MEDIA_ROOT, name).exists() for name in names)
    # Streamed by Django by default: the same bytes as in the store.
    for name in names:
        response = client.get(f"/images/{name.rsplit('/', 1)[1]}")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == stored[name]


def test_the_keys_are_random_and_say_nothing_about_the_model(
    models: list[Any], finish_battle: Any, bucket: str, s3_endpoint: str
) -> None:
    battle = played_battle(finish_battle)
    for key in objects(s3_endpoint, bucket):
        folder, name = key.split("/")
        assert folder == "images" and len(name) == len("0" * 32 + ".png")
        for model in (battle.model_left, battle.model_right):
            assert model.key not in key


def test_the_accel_answer_names_only_an_internal_location(
    models: list[Any], finish_battle: Any, bucket: str, settings: Any, client: Any
) -> None:
    settings.ARENA_MEDIA_SERVE = "accel"
    battle = played_battle(finish_battle)
    response = client.get(f"/images/{battle.generation_left.image.name.rsplit('/', 1)[1]}")
    target = response["X-Accel-Redirect"]
    assert target.startswith(media.STORE_LOCATION + bucket + "/images/")
    assert "X-Amz-Signature=" in target
    assert response.content == b""


def assert_same_headers(left: dict[str, str], right: dict[str, str]) -> None:
    assert set(left) == set(right)
    differing = {name for name in left if left[name] != right[name]}
    assert differing <= ALLOWED_TO_DIFFER, {n: (left[n], right[n]) for n in differing}
    leaked = sorted(name for name in left if name.startswith(("x-amz", "x-minio")))
    assert leaked == [], f"store headers got through: {leaked}"
    assert "last-modified" not in left and "etag" not in left
    assert left["content-type"] == "image/png"
    assert left["cache-control"] == media.CACHE_CONTROL


def test_nginx_serves_store_images_with_identical_headers_for_both_sides(
    models: list[Any],
    finish_battle: Any,
    bucket: str,
    s3_endpoint: str,
    settings: Any,
    live_server: Any,
    tmp_path: Path,
) -> None:
    require(nginx_available(), "nginx is not installed (apt-get install nginx)")
    settings.ARENA_MEDIA_SERVE = "accel"
    settings.ALLOWED_HOSTS = ["*"]
    battle = played_battle(finish_battle)
    stored = objects(s3_endpoint, bucket)
    web = live_server.url.removeprefix("http://").replace("localhost", "127.0.0.1")
    with nginx(tmp_path / "nginx", web=web, media_root=tmp_path, store=s3_endpoint) as proxy:
        answers = []
        for generation in (battle.generation_left, battle.generation_right):
            status, headers, body = fetch(f"{proxy}/images/{generation.image.name.split('/')[1]}")
            assert status == 200, body[:300]
            assert body == stored[generation.image.name]
            answers.append(headers)
        assert_same_headers(*answers)
        # The internal location is not reachable from outside, nor are the metrics.
        status, _, _ = fetch(f"{proxy}/internal-store/{bucket}/{battle.generation_left.image.name}")
        assert status == 404
        assert fetch(f"{proxy}/metrics")[0] == 404


def test_nginx_serves_disk_images_without_the_files_times(
    models: list[Any], finish_battle: Any, settings: Any, live_server: Any, tmp_path: Path
) -> None:
    require(nginx_available(), "nginx is not installed (apt-get install nginx)")
    settings.ARENA_MEDIA_SERVE = "accel"
    settings.ALLOWED_HOSTS = ["*"]
    battle = played_battle(finish_battle)
    web = live_server.url.removeprefix("http://").replace("localhost", "127.0.0.1")
    media_root = Path(settings.MEDIA_ROOT)
    with nginx(tmp_path / "nginx", web=web, media_root=media_root) as proxy:
        answers = []
        for generation in (battle.generation_left, battle.generation_right):
            status, headers, body = fetch(f"{proxy}/images/{generation.image.name.split('/')[1]}")
            assert status == 200, body[:300]
            assert body == default_storage.open(generation.image.name).read()
            answers.append(headers)
        assert_same_headers(*answers)
        assert fetch(f"{proxy}/internal-media/{battle.generation_left.image.name}")[0] == 404


def test_retention_deletes_from_the_bucket_and_keeps_voted_images(
    models: list[Any], finish_battle: Any, bucket: str, s3_endpoint: str
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from arena import retention
    from arena.models import Battle

    voted = played_battle(finish_battle)
    services.cast_vote(battle=voted, choice="right", voter="v" * 64)
    unvoted = played_battle(finish_battle)
    old = timezone.now() - timedelta(days=30)
    Battle.objects.filter(pk__in=[voted.pk, unvoted.pk]).update(created_at=old)
    retention.prune_images(unvoted_after=timedelta(days=7), chat_after=timedelta(days=7))
    assert set(objects(s3_endpoint, bucket)) == {
        voted.generation_left.image.name,
        voted.generation_right.image.name,
    }
