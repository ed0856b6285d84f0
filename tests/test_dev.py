"""deploy/dev.py: the supervisor restarts what dies, the box, the lock's pins, the prepare stamp."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("arena_dev", ROOT / "deploy" / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_process_that_dies_is_restarted_with_a_message(
    dev: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = dev.Supervisor(
        {"short": [sys.executable, "-c", "import sys; sys.exit(3)"]}, env={}
    )
    supervisor.start("short")
    first = supervisor.processes["short"]
    first.wait(timeout=30)
    supervisor.check()
    assert supervisor.processes["short"] is not first
    assert "short exited with code 3" in capsys.readouterr().out
    supervisor.stop()


def test_a_process_that_keeps_dying_at_once_stops_the_arena(dev: Any) -> None:
    supervisor = dev.Supervisor({"broken": [sys.executable, "-c", "raise SystemExit(1)"]}, env={})
    supervisor.start("broken")

    def watch() -> None:
        for _ in range(200):
            supervisor.processes["broken"].wait(timeout=30)
            supervisor.check()

    with pytest.raises(SystemExit):
        watch()
    assert supervisor.restarts == dev.MAX_QUICK_RESTARTS
    supervisor.stop()


def test_a_long_lived_process_is_left_alone(dev: Any) -> None:
    supervisor = dev.Supervisor(
        {"steady": [sys.executable, "-c", "import time; time.sleep(30)"]}, env={}
    )
    supervisor.start("steady")
    process = supervisor.processes["steady"]
    time.sleep(0.5)
    supervisor.check()
    assert supervisor.processes["steady"] is process and supervisor.restarts == 0
    supervisor.stop()
    assert process.poll() is not None


def test_the_address_is_boxed(dev: Any) -> None:
    lines = dev.box(["Image Arena is ready at http://127.0.0.1:8000/", "Ctrl-C stops"]).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "http://127.0.0.1:8000/" in lines[1]


def test_the_lock_pins_the_cpu_torch_and_every_listed_dependency(dev: Any) -> None:
    pins = dev.locked_pins()
    assert pins["torch"].split("+")[0] == "2.13.0"
    for name in ("django", "celery", "diffusers", "transformers", "pytest", "mypy"):
        assert name in pins


def test_the_prepare_stamp_changes_when_a_migration_or_the_registry_does(
    dev: Any, tmp_path: Path
) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text("# one\n")
    env = {"ARENA_VAR_DIR": str(tmp_path / "var"), "ARENA_MODEL_REGISTRY": str(registry)}
    first, stamp = dev.prepare_digest(env)
    assert dev.prepare_digest(env)[0] == first
    registry.write_text("# two\n")
    assert dev.prepare_digest(env)[0] != first
    assert stamp == tmp_path / "var" / "prepared.json"


def test_a_worker_whose_models_cannot_load_stops_the_arena_instead_of_looping(dev: Any) -> None:
    supervisor = dev.Supervisor({"worker": [sys.executable, "-c", "raise SystemExit(78)"]}, env={})
    supervisor.start("worker")
    supervisor.processes["worker"].wait(timeout=30)
    with pytest.raises(SystemExit):
        supervisor.check()
    assert supervisor.restarts == 0
    supervisor.stop()


def test_prepare_starts_the_web_server_once_migrated_and_is_skipped_when_nothing_changed(
    dev: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manage.py").write_text(
        "from pathlib import Path\n"
        "runs = Path(__file__).with_name('runs')\n"
        "runs.write_text((runs.read_text() if runs.exists() else '') + 'x')\n"
        "print('migrating')\n"
        f"print({dev.MIGRATED!r}, flush=True)\n"
        "print('building the tiny models')\n"
        "print('default,tiny')\n"
    )
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "PYTHON", Path(sys.executable))
    env = {
        **{k: v for k, v in os.environ.items() if k != "ARENA_PREPARE"},
        "ARENA_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": "postgres://nobody@127.0.0.1/none",
    }
    events: list[str] = []
    assert dev.prepare(env, on_migrated=lambda: events.append("web")) == "default,tiny"
    out = capsys.readouterr().out
    assert events == ["web"] and "building the tiny models" in out and "migrating" in out
    assert dev.MIGRATED not in out and "default,tiny" not in out
    # Nothing it reads changed: no second run, and the web server starts at once.
    assert dev.prepare(env, on_migrated=lambda: events.append("web")) == "default,tiny"
    assert events == ["web", "web"] and (tmp_path / "runs").read_text() == "x"


def test_the_web_server_starts_without_the_heavy_numerical_and_generation_libraries() -> None:
    """What the web server imports before its first page (Django's setup, the admin, the URL
    configuration and its views) leaves out scipy.stats (1 s), scipy.optimize, matplotlib
    and torch: a warm start answers within 3 s on a shared 2-core machine."""
    import subprocess

    probe = (
        "import sys, django; django.setup(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "heavy = ('scipy.stats', 'scipy.optimize', 'matplotlib', 'torch', 'diffusers'); "
        "print(' '.join(name for name in heavy if name in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "arena.settings"}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
