"""Text-to-image models served elsewhere over HTTP: prompt and parameters in, one image out.

The server receives a JSON POST::

    {"prompt": ..., "negative_prompt": ..., "seed": ..., "steps": ..., "guidance": ...,
     "width": ..., "height": ...}

and answers 2xx with either the raw bytes of a PNG, JPEG or WebP image (``Content-Type``
``image/png``, ``image/jpeg`` or ``image/webp``) or ``application/json`` holding
``{"image": "<base64>"}``, where the base64 may carry a ``data:image/...;base64,`` prefix.

Progress is not available: a plain HTTP request and response carry no per-step reports, so
a model served this way has no step count to show while it runs.

Standard library and Pillow only, and no Django, so a worker or a script can use it alone.
Proxies come from the usual environment variables (``https_proxy``, ``no_proxy``). Redirects are
not followed: a 3xx answer is an error, so a server cannot send us to another host or scheme.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException, HTTPResponse

from PIL import Image

logger = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("http", "https")
IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")
JSON_CONTENT_TYPE = "application/json"
PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")
READ_CHUNK_BYTES = 64 * 1024
MAX_BACKOFF_S = 10.0
# Server-chosen text (a content type) is cut short before it goes into a message or a log.
MAX_ECHO_CHARS = 60


class HttpBackendError(ValueError):
    """The model server could not be reached, or its answer was not the image asked for.

    Messages say what was wrong and never carry the URL, request headers or tokens.
    """


class HttpConfigurationError(HttpBackendError):
    """The deployment, not the model, is at fault: a header's environment variable is unset or
    unusable. The job fails with the kind ``config``, which never counts against the model."""


class _TransientError(HttpBackendError):
    """A failure worth another attempt: a connection error, a timeout, HTTP 5xx or 429."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        # Returning None makes urllib raise HTTPError with the 3xx status instead.
        return None


def headers_from_env(
    names: Mapping[str, str], *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The request headers a registry entry names, read from the environment variables it names.

    A variable that is unset or empty raises HttpConfigurationError (naming the variable, never
    a value): a request without its credentials would only come back 401.
    """
    environ = os.environ if environ is None else environ
    headers: dict[str, str] = {}
    for header, variable in names.items():
        value = environ.get(variable, "")
        if not value:
            raise HttpConfigurationError(
                f"environment variable {variable} (for the {header} header) is not set"
            )
        if any(c in value for c in "\r\n\0"):
            raise HttpConfigurationError(
                f"environment variable {variable} holds a line break or NUL"
            )
        headers[header] = value
    return headers


def generate_http(
    *,
    url: str,
    prompt: str,
    negative_prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    timeout_s: float,
    retries: int = 2,
    backoff_s: float = 0.5,
    max_bytes: int = 20 * 1024 * 1024,
    headers: Mapping[str, str] | None = None,
) -> Image.Image:
    """Ask the model server at ``url`` for one image and return it as a loaded RGB image.

    ``timeout_s`` bounds each attempt (connecting, waiting, and reading the whole body).
    Connection errors, timeouts and HTTP 5xx or 429 are tried again, ``1 + retries`` attempts in
    all, sleeping ``backoff_s * 2**attempt`` seconds (at most ``MAX_BACKOFF_S``) in between.
    Other 4xx answers and replies that fail validation are not retried: asking again would get
    the same answer. Every failure raises ``HttpBackendError``.
    """
    if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_bytes <= 0:
        raise ValueError("timeout_s and max_bytes must be positive, retries and backoff_s >= 0")
    _check_url(url)
    body = json.dumps(
        {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "width": width,
            "height": height,
        }
    ).encode()
    request_headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "Accept": ", ".join((*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE)),
    }
    request_headers.update(headers or {})
    # The scheme was checked above: http and https only.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, headers=request_headers, method="POST"
    )

    content_type, data = _post_with_retries(
        request, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, max_bytes=max_bytes
    )
    if content_type == JSON_CONTENT_TYPE:
        data = _image_bytes_from_json(data)
    elif content_type not in IMAGE_CONTENT_TYPES:
        raise HttpBackendError(
            f"unsupported content type {content_type[:MAX_ECHO_CHARS]!r}; expected one of "
            f"{', '.join((*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE))}"
        )
    return _decode_image(data, width=width, height=height)


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        # Only the scheme is echoed: the rest of a URL may hold a token.
        scheme = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise HttpBackendError(f"only http:// and https:// URLs are allowed, got {scheme}")
    if not parts.hostname:
        raise HttpBackendError("the URL names no host")


def _post_with_retries(
    request: urllib.request.Request,
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    max_bytes: int,
) -> tuple[str, bytes]:
    for attempt in range(retries):
        try:
            return _post(request, timeout_s=timeout_s, max_bytes=max_bytes)
        except _TransientError as error:
            delay_s = min(backoff_s * 2**attempt, MAX_BACKOFF_S)
            logger.warning(
                "model server attempt %d of %d failed (%s); retrying in %.2f s",
                attempt + 1,
                retries + 1,
                error,
                delay_s,
            )
            time.sleep(delay_s)
    try:
        return _post(request, timeout_s=timeout_s, max_bytes=max_bytes)
    except _TransientError as error:
        attempts = "1 attempt" if retries == 0 else f"{retries + 1} attempts"
        raise HttpBackendError(f"{error} (gave up after {attempts})") from error


def _post(
    request: urllib.request.Request, *, timeout_s: float, max_bytes: int
) -> tuple[str, bytes]:
    """One attempt: the reply's content type (lower case, no parameters) and its body."""
    deadline = time.monotonic() + timeout_s
    opener = urllib.request.build_opener(_RefuseRedirects)
    timed_out = f"timed out after {timeout_s:g} s"
    try:
        with opener.open(request, timeout=timeout_s) as response:
            content_type = response.headers.get_content_type()
            data = _read_body(response, max_bytes=max_bytes, deadline=deadline, timed_out=timed_out)
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
        note = " (redirects are not followed)" if 300 <= status < 400 else ""
        message = f"model server answered HTTP {status}{note}"
        if status == 429 or status >= 500:
            raise _TransientError(message) from None
        raise HttpBackendError(message) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _TransientError(timed_out) from error
        raise _TransientError(f"could not connect to the model server: {error.reason}") from error
    except TimeoutError as error:
        raise _TransientError(timed_out) from error
    except (OSError, HTTPException) as error:
        raise _TransientError(f"connection to the model server failed: {error!r}") from error
    return content_type, data


def _read_body(response: HTTPResponse, *, max_bytes: int, deadline: float, timed_out: str) -> bytes:
    """Read at most ``max_bytes``, refusing the reply as soon as it proves longer."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HttpBackendError(f"reply too large: {int(declared)} bytes, limit {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(min(READ_CHUNK_BYTES, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise HttpBackendError(f"reply too large: more than {max_bytes} bytes")
        # The socket timeout bounds each read; this bounds a server that trickles bytes.
        if time.monotonic() > deadline:
            raise _TransientError(timed_out)
        chunks.append(chunk)
    return b"".join(chunks)


def _image_bytes_from_json(data: bytes) -> bytes:
    try:
        payload = json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise HttpBackendError("JSON reply is not valid JSON") from None
    if not isinstance(payload, dict) or "image" not in payload:
        raise HttpBackendError('JSON reply has no "image" field')
    encoded = payload["image"]
    if not isinstance(encoded, str):
        raise HttpBackendError('"image" in the JSON reply is not a base64 string')
    if encoded.startswith("data:"):
        media, comma, encoded = encoded.partition(",")
        if not comma or not media.endswith(";base64"):
            raise HttpBackendError('"image" in the JSON reply is a data: URL without base64')
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise HttpBackendError('"image" in the JSON reply is not valid base64') from None


def _decode_image(data: bytes, *, width: int, height: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except (OSError, Image.DecompressionBombError):
        raise HttpBackendError(
            f"reply is not a PNG, JPEG or WebP image ({len(data)} bytes)"
        ) from None
    with image:
        # Checked from the header alone, before decoding the pixels of an unexpected size.
        if image.size != (width, height):
            raise HttpBackendError(
                f"wrong image size {image.width}x{image.height}, expected {width}x{height}"
            )
        try:
            image.load()
        except (OSError, EOFError, SyntaxError, ValueError):
            raise HttpBackendError("reply is a truncated or corrupt image") from None
        # convert() returns a new image in memory, detached from the buffer.
        return image.convert("RGB")
