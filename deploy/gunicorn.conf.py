"""gunicorn settings for Image Arena's web processes (deploy/README.md).

Flags on the command line win over these. ``WEB_CONCURRENCY`` sets the number of processes
(gunicorn reads it itself). With ``PROMETHEUS_MULTIPROC_DIR`` set, each process writes its
request metrics there and ``/metrics`` sums them; the folder is emptied at start and a dead
process's live gauges are dropped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

bind = os.environ.get("ARENA_WEB_BIND", "127.0.0.1:8000")
# Threads: a status poll spends most of its time waiting for PostgreSQL, so a few threads per
# process serve several polls at once (tests/bench/bench_polling.py measures it).
worker_class = "gthread"
threads = int(os.environ.get("ARENA_WEB_THREADS", "4"))
# Slow clients are the proxy's problem: it buffers requests and responses.
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# Recycle processes now and then (jittered so they never restart together).
max_requests = 20000
max_requests_jitter = 2000


def on_starting(server: Any) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
