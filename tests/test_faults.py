"""Faults on loopback: a broker that is down when a battle starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
from arena import services
from generation.models import Generation
battle = services.create_battle(prompt_text="a lighthouse", owner="me")
battle.refresh_from_db()
state = services.battle_state(battle)
errors = sorted(Generation.objects.values_list("error", flat=True))
print(json.dumps({"status": state.status, "message": state.message, "errors": errors}))
"""


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_battle_started_while_the_broker_is_down_is_voided_at_once(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        # Nothing listens on port 1: every publish is refused.
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "ARENA_MODELS_DIR": str(tiny_models_dir),
        "ARENA_VAR_DIR": str(tmp_path),
    }
    manage("migrate", "--verbosity", "0", env=env)
    manage("sync_models", env=env)
    result = json.loads(manage("shell", "-c", SCRIPT, env=env).stdout.strip().splitlines()[-1])
    assert result["status"] == "void"
    assert result["message"] == "This battle could not be completed. Please start a new one."
    assert all(error.startswith("enqueue failed") for error in result["errors"])
