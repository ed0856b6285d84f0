"""The documented production environment passes Django's deployment checks, with HSTS, the
HTTPS redirect and the Content-Security-Policy on."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / "deploy" / "env.example"


def production_env(tmp_path: Path) -> dict[str, str]:
    """deploy/env.example as an operator fills it in: every change-me value a random secret."""
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        value = value.replace("change-me", secrets.token_urlsafe(48))
        env[name] = value
    # Nothing here is contacted: check --deploy reads settings only. Paths go to tmp.
    env.update(
        {
            "MEDIA_ROOT": str(tmp_path / "media"),
            "STATIC_ROOT": str(tmp_path / "static"),
            "ARENA_VAR_DIR": str(tmp_path / "var"),
        }
    )
    return env


def test_check_deploy_is_clean_with_the_documented_production_environment(
    tmp_path: Path,
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "CELERY_", "REDIS_", "ARENA_", "SECURE_", "DEBUG"))
        # The browser fixture sets this for Playwright's event loop; no deployment would.
        and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(production_env(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_the_production_settings_check_deploy_warns(tmp_path: Path) -> None:
    """The test above would pass vacuously if check --deploy never warned here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DEBUG"))}
    env.update(
        {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(48), "ARENA_VAR_DIR": str(tmp_path)}
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout
    assert "security.W008" in result.stderr + result.stdout


@pytest.mark.django_db
def test_https_redirect_and_hsts_come_from_the_environment_and_spare_the_probes(
    client: Client, settings: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    plain = client.get("/leaderboard/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    secure = client.get("/leaderboard/", secure=True)
    assert "max-age=31536000" in secure["Strict-Transport-Security"]
    settings.ARENA_METRICS_TOKEN = "t"
    metrics = client.get("/metrics", headers={"Authorization": "Bearer t"})
    assert metrics.status_code == 200, "Prometheus scrapes plain HTTP inside the cluster"


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_with_a_fresh_script_nonce(
    client: Client,
) -> None:
    first, second = client.get("/"), client.get("/")
    policy = first["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in first.content.decode()
    assert nonce not in second["Content-Security-Policy"]
