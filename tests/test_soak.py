"""A short soak on the embedded defaults: battles, chat turns and a flood, nothing falls over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent / "bench" / "soak.py"


def test_a_short_soak_on_the_embedded_defaults_has_no_crash_and_no_lost_job() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--minutes",
            "1",
            "--flood-every",
            "0.5",
            "--flood-seconds",
            "5",
            "--flood-threads",
            "3",
            "--drain",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout + result.stderr[-3000:]
    assert "crashes: 0 restarts, 0 tracebacks" in result.stdout, report
    assert "lost jobs: 0 still queued or running after the drain, 0 needed" in result.stdout, report
    assert "flood battles" in result.stdout and "chat turns" in result.stdout, report
    assert result.returncode == 0, report
