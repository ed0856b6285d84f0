"""Whole battles through the HTTP API with a real Celery worker and the tiny pipelines."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from arena.models import Battle
from generation.images import PAD_CHUNK, png_chunk_types
from generation.models import Generation, ImageModel

pytestmark = pytest.mark.worker

BATTLE_TIMEOUT_S = 60


@dataclass
class HttpClient:
    """A cookie-keeping HTTP client that records every response it sees."""

    base: str
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.token = ""
        self.token = self.get_json("/api/v1/session")["csrf_token"]

    def request(self, method: str, url: str, data: Any = None) -> tuple[int, bytes]:
        full = url if url.startswith("http") else self.base + url
        body = json.dumps(data).encode() if data is not None else None
        headers = {
            "Content-Type": "application/json",
            "X-CSRFToken": self.token,
            "Referer": self.base + "/",
        }
        req = urllib.request.Request(  # noqa: S310 - the test server's http:// URL
            full, data=body, method=method, headers=headers
        )
        try:
            with self.opener.open(req, timeout=30) as response:  # noqa: S310 - http only
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        self.seen.append((full, got, raw))
        return status, raw

    def get_json(self, url: str) -> Any:
        status, raw = self.request("GET", url)
        assert status == 200, raw
        return json.loads(raw)

    def post_json(self, url: str, data: Any) -> tuple[int, Any]:
        status, raw = self.request("POST", url, data)
        return status, json.loads(raw)


def wait_until_finished(client: HttpClient, battle_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + BATTLE_TIMEOUT_S
    progress_seen = []
    while time.monotonic() < deadline:
        state = client.get_json(f"/api/v1/battles/{battle_id}")
        if state["status"] == "generating":
            progress_seen.append(state["progress"])
        else:
            assert progress_seen == sorted(progress_seen), "progress never goes backwards"
            return state
        time.sleep(0.05)
    raise AssertionError(f"battle {battle_id} still generating after {BATTLE_TIMEOUT_S}s: {state}")


def test_a_whole_battle_runs_through_the_api_with_a_real_worker(
    worker: Any, live_server: Any
) -> None:
    client = HttpClient(live_server.url)
    status, created = client.post_json("/api/v1/battles", {"prompt": "a red fox in the snow"})
    assert status == 201 and created["status"] == "generating"
    state = wait_until_finished(client, created["id"])
    assert state["status"] == "ready", worker.log()
    for url in state["images"].values():
        status, data = client.request("GET", url)
        assert status == 200 and png_chunk_types(data)[0] == b"IHDR"
    status, voted = client.post_json(f"/api/v1/battles/{created['id']}/vote", {"choice": "left"})
    assert status == 200 and voted["status"] == "voted"
    battle = Battle.objects.get(public_id=created["id"])
    assert voted["models"] == {
        "left": battle.model_left.display_name,
        "right": battle.model_right.display_name,
    }
    jobs = Generation.objects.filter(pk__in=[battle.generation_left_id, battle.generation_right_id])
    for job in jobs:
        assert job.status == Generation.Status.DONE and job.attempts == 1
        assert job.compute_ms is not None and job.queue_wait_ms is not None
        assert job.steps_done == job.steps and len(job.image_sha256) == 64
    # Same prompt and seed, different networks: the two images must differ.
    assert jobs[0].image_sha256 != jobs[1].image_sha256
    status, again = client.post_json(f"/api/v1/battles/{created['id']}/vote", {"choice": "right"})
    assert status == 409 and again["error"]["code"] == "already_voted"


FAKE_NAMES = {
    "tiny-inhouse": ("Quokkatron Zeta", "zq-lab-91x", "Velvetcorp Labs", "Licence-Mauve-7"),
    "tiny-baseline-a": ("Pangolux Prime", "pg-lux-27k", "Ostrava Research", "Licence-Teal-3"),
    "tiny-baseline-b": ("Marmoset Nova", "mm-nova-55q", "Fjordline AI", "Licence-Ochre-9"),
    "tiny-sdxl": ("Axolotl Helix", "ax-helix-18w", "Brenin Systems", "Licence-Sepia-2"),
    "tiny-pixart": ("Capybarix Flux", "cp-flux-63m", "Norrland Pixels", "Licence-Umber-4"),
}


def test_nothing_before_the_vote_names_a_model(models: Any, live_server: Any, worker: Any) -> None:
    assert {model.key for model in models} == set(FAKE_NAMES), "every demo model gets a fake name"
    for key, (name, new_key, organisation, licence) in FAKE_NAMES.items():
        ImageModel.objects.filter(key=key).update(
            display_name=name, key=new_key, organisation=organisation, licence=licence
        )
    secrets = [s.lower() for names in FAKE_NAMES.values() for s in names]
    client = HttpClient(live_server.url)
    for _ in range(2):
        status, created = client.post_json("/api/v1/battles", {"prompt": "a quiet harbour"})
        assert status == 201
        battle_id = created["id"]
        client.request("GET", f"/battles/{battle_id}")  # the HTML page while generating
        state = wait_until_finished(client, battle_id)
        assert state["status"] == "ready", worker.log()
        client.request("GET", f"/battles/{battle_id}")  # the HTML page when ready
        client.request("GET", f"/battles/{battle_id}/panel")
        images = [client.request("GET", url)[1] for url in state["images"].values()]
        left, right = (png_chunk_types(data) for data in images)
        assert set(left) == set(right) == {b"IHDR", b"IDAT", PAD_CHUNK, b"IEND"}
        assert images[0][16:24] == images[1][16:24], "both images have the same size"
        for url, headers, body in client.seen:
            haystack = (url + json.dumps(headers) + body.decode("latin-1")).lower()
            for secret in secrets:
                assert secret not in haystack, f"{secret!r} leaked in {url}"
        client.seen.clear()
        status, voted = client.post_json(f"/api/v1/battles/{battle_id}/vote", {"choice": "tie"})
        # The scan above can fail: after the vote the names are there to be found.
        reveal = json.dumps(voted).lower()
        assert status == 200 and sum(name[0].lower() in reveal for name in FAKE_NAMES.values()) == 2
        client.seen.clear()


def test_a_side_that_runs_past_its_time_limit_voids_the_battle_without_naming_a_model(
    models: Any, live_server: Any, worker: Any
) -> None:
    # Far more steps than fit in one second (900, under the schedulers' 1000): the worker's soft
    # time limit stops the run.
    ImageModel.objects.update(default_steps=900, timeout_s=1)
    client = HttpClient(live_server.url)
    status, created = client.post_json("/api/v1/battles", {"prompt": "a slow sunrise"})
    assert status == 201
    state = wait_until_finished(client, created["id"])
    assert state["status"] == "void", worker.log()
    names = [m.display_name for m in ImageModel.objects.all()]
    assert state["message"] and not any(name in state["message"] for name in names)
    battle = Battle.objects.get(public_id=created["id"])
    errors = set(
        Generation.objects.filter(
            pk__in=[battle.generation_left_id, battle.generation_right_id]
        ).values_list("error", flat=True)
    )
    assert "timed out" in errors
    status, refused = client.post_json(f"/api/v1/battles/{created['id']}/vote", {"choice": "left"})
    assert status == 409 and refused["error"]["code"] == "void"
