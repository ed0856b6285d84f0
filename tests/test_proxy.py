"""The client address through the documented nginx (Debian's package) in front of a real
gunicorn: each client gets its own limit, and a forged X-Forwarded-For buys nothing."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, child_env, require

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not open in {START_TIMEOUT_S}s")


def nginx_config(*, tmp: Path, listen: int, upstream: int) -> str:
    """deploy/nginx-arena.conf with a loopback port instead of TLS, in a minimal main block."""
    site = (ROOT / "deploy" / "nginx-arena.conf").read_text()
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    site = re.sub(r"^\s*ssl_certificate.*$", "", site, flags=re.MULTILINE)
    temp = " ".join(
        f"{name}_temp_path {tmp / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off; master_process off; pid {tmp / 'nginx.pid'}; "
        f"error_log {tmp / 'error.log'};\nevents {{}}\n"
        f"http {{ access_log off; {temp}\n{site}\n}}\n"
    )


@pytest.fixture
def proxied(tmp_path: Path, transactional_db: None) -> Iterator[dict[str, int]]:
    """gunicorn trusting 127.0.0.1, and nginx on 127.0.0.1 in front of it."""
    require(Path(NGINX).exists(), "nginx is not installed (apt-get install nginx)")
    web, edge = free_port(), free_port()
    env = child_env(
        ARENA_TRUSTED_PROXIES="127.0.0.1",
        ARENA_LIMIT_SESSIONS="address=2/3600",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    gunicorn_log = tmp_path / "gunicorn.log"
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "arena.wsgi:application",
            "--bind",
            f"127.0.0.1:{web}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=gunicorn_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp=tmp_path, listen=edge, upstream=web))
    nginx_log = tmp_path / "nginx.out"
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path)],
        stdout=nginx_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(web, gunicorn, gunicorn_log)
        wait_for_port(edge, nginx, nginx_log)
        for port in (web, edge):  # both workers booted and the app imported
            for _ in range(4):
                warm = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT_S)
                warm.request("GET", "/", headers={"Host": "127.0.0.1"})
                assert warm.getresponse().status == 200, gunicorn_log.read_text()[-3000:]
                warm.close()
        yield {"web": web, "edge": edge}
    finally:
        for process in (nginx, gunicorn):
            if process.poll() is None:
                os.killpg(process.pid, 15)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()


def new_session(port: int, source: str, forwarded: str | None = None) -> int:
    """GET /api/v1/session with no cookie (a new session each time) from ``source``."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=START_TIMEOUT_S, source_address=(source, 0)
    )
    headers = {"Host": "127.0.0.1"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    try:
        connection.request("GET", "/api/v1/session", headers=headers)
        response = connection.getresponse()
        response.read()
        return int(response.status)
    finally:
        connection.close()


def test_through_nginx_each_client_address_has_its_own_limit(proxied: dict[str, Any]) -> None:
    edge = proxied["edge"]
    first = [new_session(edge, "127.0.0.2") for _ in range(2)]
    # A third from the same client, however it dresses up its header.
    forged = new_session(edge, "127.0.0.2", forwarded="203.0.113.9")
    other = new_session(edge, "127.0.0.3")
    assert first == [200, 200] and forged == 429, "the client's own budget, not a forged one"
    assert other == 200, "another client is not locked out by the first"


def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(proxied: dict[str, Any]) -> None:
    # Straight to gunicorn from 127.0.0.4, claiming to forward for 127.0.0.5: the claim is
    # ignored, so 127.0.0.4 spends its own budget and 127.0.0.5 keeps all of its own.
    web, edge = proxied["web"], proxied["edge"]
    direct = [new_session(web, "127.0.0.4", forwarded="127.0.0.5") for _ in range(3)]
    assert direct == [200, 200, 429]
    assert [new_session(edge, "127.0.0.5") for _ in range(2)] == [200, 200]
