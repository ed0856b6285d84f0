"""Real servers on loopback for the deployment tests: moto's S3 server, nginx, gunicorn."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "arena.conf.template"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``url`` answers at all (any status), or fail with the server's log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - loopback http
                return
        except urllib.error.HTTPError:
            return
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace")
                raise RuntimeError(f"{url} never answered:\n{output}") from error
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def moto_s3(folder: Path) -> Iterator[str]:
    """moto's S3 server in its own process; yields its endpoint URL."""
    port = free_port()
    log = folder / "moto.log"
    server = Path(sys.executable).parent / "moto_server"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint + "/", process, log)
        yield endpoint
    finally:
        stop(process)


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def render_template(values: dict[str, str]) -> str:
    """deploy/nginx/arena.conf.template with the ${...} names filled, as envsubst does."""
    return string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(values)


@contextlib.contextmanager
def nginx(folder: Path, *, web: str, media_root: Path, store: str = "") -> Iterator[str]:
    """nginx with the deployment's server block in front of ``web``; yields its base URL."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    server = render_template(
        {
            "ARENA_WEB_UPSTREAM": web,
            "ARENA_STATIC_ROOT": str(folder / "static"),
            "ARENA_MEDIA_ROOT": str(media_root),
            "ARENA_MEDIA_STORE": store or "http://127.0.0.1:9",
        }
    ).replace("listen 8080;", f"listen 127.0.0.1:{port};")
    (folder / "arena.conf").write_text(server)
    main = f"""
user root;
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/arena.conf;
}}
"""
    (folder / "nginx.conf").write_text(main)
    log = folder / "error.log"
    log.touch()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen(
        [binary, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/static/absent", process, log)
        yield base
    finally:
        stop(process)


def gunicorn_command(
    port: int, *, workers: int = 1, root: Path = ROOT, extra: tuple[str, ...] = ()
) -> list[str]:
    """gunicorn on ``port``, with the deployment's config file when ``root`` has one."""
    config = root / "deploy" / "gunicorn.conf.py"
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "arena.wsgi:application",
        *(["--config", str(config)] if config.exists() else []),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *extra,
    ]


@contextlib.contextmanager
def gunicorn(
    folder: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    root: Path = ROOT,
    extra: tuple[str, ...] = (),
) -> Iterator[str]:
    """gunicorn serving the code under ``root``; yields its base URL."""
    port = free_port()
    log = folder / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            gunicorn_command(port, workers=workers, root=root, extra=extra),
            cwd=root,
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/api/v1/session", process, log)
        yield base
    finally:
        stop(process)
