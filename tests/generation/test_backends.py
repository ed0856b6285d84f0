"""Jobs on the HTTP backend, and models that keep failing are taken out of battles."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from generation import jobs, runner
from generation.models import Generation, ImageModel

pytestmark = pytest.mark.django_db


class ImageServer(BaseHTTPRequestHandler):
    """Answers every POST with a 64x64 PNG (or a 500 when told to fail)."""

    fail = False

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.fail:
            self.send_response(500)
            self.end_headers()
            return
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (0, 128, 255)).save(buffer, format="PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(buffer.getvalue())))
        self.end_headers()
        self.wfile.write(buffer.getvalue())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ImageServer]]:
    monkeypatch.setenv("no_proxy", "*")
    handler = type("Handler", (ImageServer,), {"fail": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/generate"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def http_model(url: str) -> ImageModel:
    return ImageModel.objects.create(
        key="remote",
        display_name="Remote",
        backend=ImageModel.Backend.HTTP,
        source=url,
        timeout_s=6,
    )


def test_a_job_on_an_http_model_is_done_with_the_served_image(endpoint: Any) -> None:
    job = jobs.create_generation(model=http_model(endpoint.url), prompt="a fox", seed=1)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE and job.device == "http"
    with job.image.open("rb") as handle:
        assert Image.open(handle).getpixel((5, 5)) == (0, 128, 255)


def test_a_failing_http_model_fails_its_job_with_the_reason_kept_internal(endpoint: Any) -> None:
    endpoint.fail = True
    job = jobs.create_generation(model=http_model(endpoint.url), prompt="a fox", seed=1)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.FAILED and "500" in job.error


def test_a_model_failing_again_and_again_is_disabled_with_a_reason(
    endpoint: Any, settings: Any
) -> None:
    settings.ARENA_DISABLE_AFTER_FAILURES = 3
    endpoint.fail = True
    model = http_model(endpoint.url)
    for seed in range(3):
        model.refresh_from_db()
        assert model.enabled
        job = jobs.create_generation(model=model, prompt="a fox", seed=seed)
        runner.run(generation_id=job.pk)
    model.refresh_from_db()
    assert not model.enabled
    assert "after 3 failed jobs in a row" in model.disabled_reason


def test_failures_that_are_not_the_models_fault_never_disable_it(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_DISABLE_AFTER_FAILURES = 2
    for seed in range(3):
        job = jobs.create_generation(model=models[0], prompt="a fox", seed=seed)
        jobs.fail(
            generation_id=job.pk,
            error="enqueue failed: ConnectionRefusedError()",
            kind=Generation.FailureKind.ENQUEUE,
        )
    models[0].refresh_from_db()
    assert models[0].enabled


def test_warming_loads_and_runs_each_named_model_once(
    models: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from generation import pipelines

    runner.warm(keys=["tiny-baseline-a", "tiny-pixart"])
    cached = {key for key, _ in pipelines.cached_pipeline_keys()}
    assert {"tiny-baseline-a", "tiny-pixart"} <= cached
    assert "could not warm" not in caplog.text
