"""The HTTP backend against a scripted model server on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from generation.http_backend import HttpBackendError, generate_http, headers_from_env

WIDTH, HEIGHT = 64, 48
COLOR = (10, 120, 230)
# JPEG and WebP are lossy; a flat colour comes back within a few levels.
LOSSY_TOLERANCE = 8


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content_type: str = "image/png"
    body: bytes = b""
    delay_s: float = 0.0
    declare_length: bool = True
    location: str | None = None


class ModelServer(ThreadingHTTPServer):
    """A stand-in model server answering each request with the next scripted reply."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.replies: list[Reply] = [Reply(body=encode(COLOR))]
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/generate"

    def script(self, *replies: Reply) -> None:
        """Answer request n with replies[n]; the last reply repeats."""
        self.replies = list(replies)

    def record(self, body: bytes, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(json.loads(body))
            self.request_headers.append(headers)
            return self.replies[min(len(self.requests), len(self.replies)) - 1]


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ModelServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = self.server.record(body, dict(self.headers))
        if reply.delay_s:
            self.server.stopping.wait(reply.delay_s)
        # The client may have given up (timeout, size limit) and closed the connection.
        with contextlib.suppress(ConnectionError):
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.location:
                self.send_header("Location", reply.location)
            if reply.declare_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    # Keep the traffic on 127.0.0.1 even where a proxy is configured.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    started = ModelServer()
    # A short poll interval lets shutdown() return quickly in teardown.
    thread = threading.Thread(target=started.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield started
    finally:
        started.stopping.set()
        started.shutdown()
        started.server_close()
        thread.join(timeout=5)


def encode(
    color: tuple[int, int, int], size: tuple[int, int] = (WIDTH, HEIGHT), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A PNG that does not compress, for replies that must be large."""
    pixels = random.Random(0).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def generate(url: str, **overrides: Any) -> Image.Image:
    arguments: dict[str, Any] = {
        "url": url,
        "prompt": "a red fox in the snow",
        "negative_prompt": "blurry",
        "seed": 42,
        "steps": 4,
        "guidance": 7.5,
        "width": WIDTH,
        "height": HEIGHT,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
    }
    arguments.update(overrides)
    return generate_http(**arguments)


def close_to(pixel: Any, expected: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_a_png_reply_is_returned_as_a_loaded_rgb_image(server: ModelServer) -> None:
    image = generate(server.url)
    assert image.mode == "RGB"
    assert image.size == (WIDTH, HEIGHT)
    assert image.getpixel((0, 0)) == COLOR


def test_the_request_is_a_json_post_of_prompt_and_parameters(server: ModelServer) -> None:
    generate(server.url)
    assert server.requests == [
        {
            "prompt": "a red fox in the snow",
            "negative_prompt": "blurry",
            "seed": 42,
            "steps": 4,
            "guidance": 7.5,
            "width": WIDTH,
            "height": HEIGHT,
        }
    ]
    assert server.request_headers[0]["Content-Type"] == "application/json"


def test_extra_headers_are_sent(server: ModelServer) -> None:
    generate(server.url, headers={"Authorization": "Bearer tok-123"})
    assert server.request_headers[0]["Authorization"] == "Bearer tok-123"


@pytest.mark.parametrize(
    ("content_type", "fmt", "tolerance"),
    [
        ("image/png", "PNG", 0),
        ("image/jpeg", "JPEG", LOSSY_TOLERANCE),
        ("image/webp", "WEBP", LOSSY_TOLERANCE),
    ],
)
def test_each_accepted_image_type_is_decoded(
    server: ModelServer, content_type: str, fmt: str, tolerance: int
) -> None:
    server.script(Reply(content_type=content_type, body=encode(COLOR, fmt=fmt)))
    image = generate(server.url)
    assert image.size == (WIDTH, HEIGHT)
    assert close_to(image.getpixel((WIDTH // 2, HEIGHT // 2)), COLOR, tolerance)


def test_a_json_reply_with_base64_image_is_decoded(server: ModelServer) -> None:
    payload = {"image": base64.b64encode(encode(COLOR)).decode()}
    server.script(Reply(content_type="application/json", body=json.dumps(payload).encode()))
    assert generate(server.url).getpixel((0, 0)) == COLOR


def test_a_json_reply_with_a_data_url_is_decoded(server: ModelServer) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(encode(COLOR)).decode()
    server.script(
        Reply(
            content_type="application/json; charset=utf-8",
            body=json.dumps({"image": data_url}).encode(),
        )
    )
    assert generate(server.url).getpixel((0, 0)) == COLOR


def test_bytes_that_are_not_an_image_are_rejected_without_retry(server: ModelServer) -> None:
    server.script(Reply(body=b"<html>definitely not a png</html>"))
    with pytest.raises(HttpBackendError, match="not a PNG, JPEG or WebP image"):
        generate(server.url)
    assert len(server.requests) == 1


def test_a_reply_declared_larger_than_max_bytes_is_refused(server: ModelServer) -> None:
    server.script(Reply(body=noise_png()))
    with pytest.raises(HttpBackendError, match=r"too large: \d+ bytes, limit 1024"):
        generate(server.url, max_bytes=1024)
    assert len(server.requests) == 1


def test_an_undeclared_reply_is_cut_off_after_max_bytes(server: ModelServer) -> None:
    body = noise_png()
    assert len(body) > 4 * 1024
    server.script(Reply(body=body, declare_length=False))
    with pytest.raises(HttpBackendError, match="too large: more than 1024 bytes"):
        generate(server.url, max_bytes=1024)


def test_an_image_of_the_wrong_size_is_rejected(server: ModelServer) -> None:
    server.script(Reply(body=encode(COLOR, size=(WIDTH, WIDTH))))
    with pytest.raises(HttpBackendError, match=f"wrong image size 64x64, expected 64x{HEIGHT}"):
        generate(server.url)


def test_an_unsupported_content_type_is_rejected(server: ModelServer) -> None:
    server.script(Reply(content_type="text/html", body=encode(COLOR)))
    with pytest.raises(HttpBackendError, match="unsupported content type 'text/html'"):
        generate(server.url)


def test_a_json_reply_without_an_image_field_is_rejected(server: ModelServer) -> None:
    server.script(Reply(content_type="application/json", body=b'{"images": []}'))
    with pytest.raises(HttpBackendError, match='no "image" field'):
        generate(server.url)


def test_a_json_reply_with_bad_base64_is_rejected(server: ModelServer) -> None:
    server.script(Reply(content_type="application/json", body=b'{"image": "not*base64!"}'))
    with pytest.raises(HttpBackendError, match="not valid base64"):
        generate(server.url)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried_until_an_answer_comes(server: ModelServer, status: int) -> None:
    failing = Reply(status=status, content_type="text/plain", body=b"busy")
    server.script(failing, failing, Reply(body=encode(COLOR)))
    assert generate(server.url, retries=2).getpixel((0, 0)) == COLOR
    assert len(server.requests) == 3


def test_a_persistent_server_error_fails_after_one_plus_retries_attempts(
    server: ModelServer,
) -> None:
    server.script(Reply(status=500, content_type="text/plain", body=b"boom"))
    with pytest.raises(HttpBackendError, match=r"HTTP 500 \(gave up after 4 attempts\)"):
        generate(server.url, retries=3)
    assert len(server.requests) == 4


def test_a_client_error_is_not_retried(server: ModelServer) -> None:
    server.script(Reply(status=400, content_type="text/plain", body=b"bad prompt"))
    with pytest.raises(HttpBackendError, match="HTTP 400"):
        generate(server.url, retries=3)
    assert len(server.requests) == 1


def test_error_messages_do_not_carry_headers_or_the_url(server: ModelServer) -> None:
    server.script(Reply(status=401, content_type="text/plain", body=b"who are you"))
    with pytest.raises(HttpBackendError) as raised:
        generate(server.url + "?key=url-secret", headers={"Authorization": "Bearer tok-secret"})
    assert "HTTP 401" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_redirects_are_not_followed(server: ModelServer) -> None:
    server.script(Reply(status=302, content_type="text/plain", location="file:///etc/passwd"))
    with pytest.raises(HttpBackendError, match="HTTP 302 .redirects are not followed"):
        generate(server.url)
    assert len(server.requests) == 1


def test_a_slow_server_times_out(server: ModelServer) -> None:
    server.script(Reply(body=encode(COLOR), delay_s=3.0))
    started = time.monotonic()
    with pytest.raises(
        HttpBackendError, match=r"timed out after 0.3 s \(gave up after 1 attempt\)"
    ):
        generate(server.url, timeout_s=0.3, retries=0)
    assert time.monotonic() - started < 2.0


def test_a_timeout_is_retried(server: ModelServer) -> None:
    server.script(Reply(body=encode(COLOR), delay_s=3.0), Reply(body=encode(COLOR)))
    assert generate(server.url, timeout_s=0.3, retries=1).getpixel((0, 0)) == COLOR
    assert len(server.requests) == 2


def test_a_refused_connection_is_reported_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    with pytest.raises(HttpBackendError, match="could not connect.*gave up after 2 attempts"):
        generate(f"http://127.0.0.1:{port}/generate", retries=1)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/image.png", "127.0.0.1:8000/generate"]
)
def test_urls_other_than_http_and_https_are_refused(url: str) -> None:
    with pytest.raises(HttpBackendError, match="only http:// and https:// URLs are allowed"):
        generate(url)


def test_headers_are_read_from_the_environment_variables_the_registry_names() -> None:
    environ = {"PARTNER_AUTH": "Bearer tok-123", "OTHER": "x"}
    assert headers_from_env({"Authorization": "PARTNER_AUTH"}, environ=environ) == {
        "Authorization": "Bearer tok-123"
    }


@pytest.mark.parametrize("environ", [{}, {"PARTNER_AUTH": ""}])
def test_an_unset_header_variable_fails_naming_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(HttpBackendError, match="PARTNER_AUTH .*Authorization.* not set"):
        headers_from_env({"Authorization": "PARTNER_AUTH"}, environ=environ)


def test_a_header_variable_with_a_line_break_is_refused_without_echoing_it() -> None:
    with pytest.raises(HttpBackendError) as error:
        headers_from_env({"X-Key": "KEY"}, environ={"KEY": "abc\r\nX-Evil: 1"})
    assert "abc" not in str(error.value) and "KEY" in str(error.value)


@pytest.mark.django_db
def test_an_http_models_job_sends_the_header_from_the_environment(
    server: ModelServer, tmp_path: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation import jobs, registry_sync, runner
    from generation.models import Generation

    monkeypatch.setenv("PARTNER_AUTH", "Bearer from-env-42")
    settings.MODELS_DIR = tmp_path
    registry = tmp_path / "models.toml"
    registry.write_text(
        '[[model]]\nkey = "partner"\ndisplay_name = "P"\nbackend = "http"\n'
        f'source = "{server.url}"\nwidth = {WIDTH}\nheight = {HEIGHT}\n'
        'headers_from_env = { Authorization = "PARTNER_AUTH" }\n',
        encoding="utf-8",
    )
    (model,), _ = registry_sync.sync_models(path=registry)
    job = jobs.create_generation(model=model, prompt="a red fox", seed=1)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE, job.error
    assert server.request_headers[0]["Authorization"] == "Bearer from-env-42"

    monkeypatch.delenv("PARTNER_AUTH")
    job = jobs.create_generation(model=model, prompt="a blue fox", seed=2)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.FAILED
    assert "PARTNER_AUTH" in job.error and "from-env-42" not in job.error
    assert len(server.request_headers) == 1, "no request goes out without its credentials"


@pytest.mark.django_db
def test_a_missing_header_variable_is_a_configuration_failure_not_the_models(
    server: ModelServer, tmp_path: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation import jobs, registry_sync, runner
    from generation.models import MODEL_FAULTS, Generation

    monkeypatch.delenv("PARTNER_AUTH", raising=False)
    settings.MODELS_DIR = tmp_path
    settings.ARENA_DISABLE_AFTER_FAILURES = 2
    registry = tmp_path / "models.toml"
    registry.write_text(
        '[[model]]\nkey = "partner"\ndisplay_name = "P"\nbackend = "http"\n'
        f'source = "{server.url}"\nwidth = {WIDTH}\nheight = {HEIGHT}\n'
        'headers_from_env = { Authorization = "PARTNER_AUTH" }\n',
        encoding="utf-8",
    )
    (model,), _ = registry_sync.sync_models(path=registry)
    for seed in range(4):  # twice the disabling streak
        job = jobs.create_generation(model=model, prompt="a fox", seed=seed)
        runner.run(generation_id=job.pk)
        job.refresh_from_db()
        assert job.status == Generation.Status.FAILED
        assert job.failure_kind == Generation.FailureKind.CONFIG
        assert Generation.FailureKind.CONFIG not in MODEL_FAULTS
        assert "partner" in job.error and "PARTNER_AUTH" in job.error, job.error
    model.refresh_from_db()
    assert model.enabled, model.disabled_reason
    assert server.request_headers == [], "no request goes out without its credentials"

    monkeypatch.setenv("PARTNER_AUTH", "Bearer s3cret\nX-Evil: 1")
    job = jobs.create_generation(model=model, prompt="a fox", seed=9)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.failure_kind == Generation.FailureKind.CONFIG
    assert "s3cret" not in job.error and "partner" in job.error
