"""The GPU worker's runtime: warm pool children, a pool that survives a killed child, and
readiness that tells the truth.

- Each pool child loads its models at ``worker_process_init`` (``prepare_child``). A child that
  cannot (an unknown key in ARENA_WARM_MODELS, a model that fails to load or run) records why and
  exits; the parent then stops the whole worker with exit code 78 (EX_CONFIG), loudly.
- The parent imports torch, diffusers and the pipeline classes of its warm models before it
  forks (``preload``, when ARENA_WARM_MODELS names any; ARENA_WORKER_PRELOAD=0 turns it off),
  so no child pays for them: those imports are most of a start (tens of seconds on a loaded
  CPU, each child at once before), and loading and warming a model is the rest. CUDA is never
  initialised there (PyTorch's CUDA check goes through NVML), so each child still starts CUDA
  after the fork. On a CPU-only worker with one torch thread the parent also loads and warms
  the models (ARENA_WORKER_PRELOAD_MODELS=0 turns that off): the children inherit them, so a
  start loads each model once instead of once per child, and a replacement child is warm at
  once. Then it freezes what it built (``gc.freeze``): Celery collects garbage before every
  fork, and walking the objects of torch and diffusers took half a second per child; frozen,
  they are skipped there and in the children's own collections (which would also copy them).
- A replacement child gets CELERY_WORKER_PROC_ALIVE_TIMEOUT (ARENA_WORKER_WARM_TIMEOUT_S) to
  load, not Celery's default 4 s, which killed every replacement forever.
- ``TaskPool`` is Celery's prefork pool. On a broker without an event loop (the embedded file
  system broker) Celery uses billiard's plain pool, whose children take jobs from one shared
  pipe under a semaphore; a child killed while waiting on that pipe held the semaphore for good
  and the pool never took a job again. Here that lock is an ``flock``, which the kernel releases
  when its holder dies.
- ``Readiness`` runs a thread in the worker's parent: every ARENA_WORKER_HEARTBEAT_S it records
  in the database (``WorkerHeartbeat``) the queues served and whether every child is alive and
  warm, and keeps ARENA_READY_FILE present exactly while that holds. ``/readyz`` and
  matchmaking read the heartbeats. The first record is written before the worker consumes, with
  the time this incarnation started: the sweeper then knows at once that whatever an earlier
  incarnation of the node reserved or claimed is lost (generation.sweeper).

This module is imported by the Celery app before Django is set up: Django imports stay inside
functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from billiard import pool as billiard_pool
from billiard.queues import SimpleQueue
from celery import bootsteps
from celery.concurrency import prefork
from celery.worker import state as worker_state

logger = logging.getLogger(__name__)

# Set by the parent before it forks; the children write their warm (or failed) marks there.
STATE_DIR_ENV = "ARENA_WORKER_STATE_DIR"
# Exit code of a worker whose children could not warm up: sysexits' EX_CONFIG, apart from
# Celery's own 1, so systemd can keep such a unit down (RestartPreventExitStatus=78).
EX_WARM_UP_FAILED = os.EX_CONFIG
# How often the parent looks at its children (a killed child shows within this), and how often
# while they are not all warm yet (a start or a replacement is reported ready that much sooner).
WATCH_INTERVAL_S = 0.5
STARTING_WATCH_INTERVAL_S = 0.1
# How long a child that cannot warm up waits for the parent to stop the worker before it exits.
FAILED_CHILD_WAIT_S = 20.0


def _state_dir() -> Path | None:
    folder = os.environ.get(STATE_DIR_ENV)
    return Path(folder) if folder else None


def warm_keys() -> list[str] | None:
    """The models ARENA_WARM_MODELS names: a list of keys, [] for none, None for "all"."""
    wanted = os.environ.get("ARENA_WARM_MODELS", "").strip()
    if wanted == "all":
        return None
    return [key.strip() for key in wanted.split(",") if key.strip()]


def prepare_child() -> None:
    """In a new pool child: warm the listed models, then mark this child warm; or record why it
    cannot and exit (the parent stops the worker)."""
    from generation import runner

    keys = warm_keys()
    folder = _state_dir()
    try:
        warmed = runner.warm(keys=keys) if keys != [] else []
    except Exception as exc:  # WarmUpError, or anything a loader raised
        try:
            logger.critical("worker child %s cannot serve: %s", os.getpid(), exc)
            if folder is not None:
                (folder / f"failed-{os.getpid()}").write_text(str(exc), encoding="utf-8")
        finally:
            # The signal that runs this swallows exceptions; only an exit stops a broken child.
            # Not at once: a child that dies before the pool has started makes Celery abort the
            # start with its own exit code 1 ("Could not start worker processes"), which systemd
            # would restart for ever. The parent sees the mark and stops with EX_CONFIG.
            if folder is not None:
                _wait_for_the_parent(FAILED_CHILD_WAIT_S)
            os._exit(EX_WARM_UP_FAILED)
    if folder is not None:
        _write_atomically(folder / f"warm-{os.getpid()}", json.dumps(warmed))


def preload() -> list[str]:
    """In the worker's parent, before it forks: import what every child would otherwise import
    itself (torch, diffusers, transformers and the pipeline classes of the warm models), so the
    children inherit them. Returns what was imported; a failure is only logged (the child that
    needs it then fails loudly as before). Never initialises CUDA."""
    if os.environ.get("ARENA_WORKER_PRELOAD", "1").strip() in {"0", "false", "no", "off"}:
        return []
    if warm_keys() == []:
        return []  # a worker that warms no model (the leaderboard's) needs none of it
    # torch.cuda.is_available() (which libraries call at import) then asks NVML, not the CUDA
    # driver: a driver initialised before the fork would be unusable in the children.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    started = time.monotonic()
    done: list[str] = []
    try:
        import diffusers
        import transformers  # noqa: F401 - imported for the children

        from generation import pipelines

        done += ["torch", "diffusers", "transformers"]
        for name, custom in _warm_pipeline_classes():
            if custom:
                pipelines.import_custom_pipeline(custom)
                done.append(custom)
            elif name:
                getattr(diffusers, name)  # diffusers imports its pipeline classes lazily
                done.append(name)
        import torch

        if torch.cuda.is_initialized():  # pragma: no cover - a library broke the rule above
            logger.warning("CUDA was initialised in the worker's parent; children may fail")
    except Exception:
        logger.warning("worker preload stopped early; the children import the rest", exc_info=True)
    else:
        done += _preload_models()
    finally:
        from django.db import connections

        # A connection opened here must not be shared by the children the parent forks.
        connections.close_all()
    if done:
        # Out of the collector's reach from now on (see the module's docstring): the imports and
        # models stay for the worker's life anyway.
        gc.freeze()
    logger.info("worker preloaded %s in %.1f s", ", ".join(done), time.monotonic() - started)
    return done


def _preload_models() -> list[str]:
    """On a CPU-only worker whose torch runs one thread: load and warm the models in the parent,
    so every child (and every replacement) inherits them, copy-on-write, and only checks them
    with one warm-up run. A GPU needs each child to start CUDA itself after the fork, and an
    OpenMP pool that has run in a parent is not safe in its forked children, so either keeps
    the loading in the children. A failure is only logged: the children load themselves and
    fail loudly as before."""
    import torch

    from generation import pipelines, runner

    if os.environ.get("ARENA_WORKER_PRELOAD_MODELS", "1").strip() in {"0", "false", "no", "off"}:
        return []
    if pipelines.device_name() != "cpu" or torch.get_num_threads() != 1:
        return []
    try:
        return runner.warm(keys=warm_keys())
    except Exception as exc:
        logger.warning("worker parent could not preload the models (%s); children load them", exc)
        pipelines.clear_cache()
        return []


def _warm_pipeline_classes() -> list[tuple[str, str]]:
    """(pipeline class, custom pipeline) of the diffusers models ARENA_WARM_MODELS names."""
    from generation.models import ImageModel

    keys = warm_keys()
    if keys == []:
        return []
    models = ImageModel.objects.filter(retired=False, backend=ImageModel.Backend.DIFFUSERS)
    if keys is not None:
        models = models.filter(key__in=keys)
    return sorted(set(models.values_list("pipeline_class", "custom_pipeline")))


def _wait_for_the_parent(limit_s: float) -> None:
    """Sleep until the parent stops this child (or is gone), at most ``limit_s``."""
    parent = os.getppid()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# --- A pool whose children survive a sibling killed while it waited for a job ---------------


class _DeathSafeLock:
    """A lock shared by forked processes that the kernel releases when its holder dies.

    Each process opens the lock file itself: an inherited descriptor would share the lock with
    the process it came from.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._pid != os.getpid() or self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        flags = fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(self._descriptor(), flags)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        fcntl.flock(self._descriptor(), fcntl.LOCK_UN)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_fd": None, "_pid": 0}


class DeathSafePool(billiard_pool.Pool):
    """billiard's plain pool with its pipes guarded by ``_DeathSafeLock``s."""

    def _setup_queues(self) -> None:
        # billiard's private hook (its type stubs leave it out) that makes the pool's pipes.
        pool: Any = self
        billiard_pool.Pool._setup_queues(pool)  # type: ignore[attr-defined]
        folder = Path(tempfile.mkdtemp(prefix="arena-pool-"))
        queues: list[tuple[str, Any]] = [("in", pool._inqueue), ("out", pool._outqueue)]
        for name, queue in queues:
            assert isinstance(queue, SimpleQueue)
            queue._rlock = _DeathSafeLock(folder / f"{name}-read.lock")  # type: ignore[attr-defined]
            queue._wlock = _DeathSafeLock(folder / f"{name}-write.lock")  # type: ignore[attr-defined]


class TaskPool(prefork.TaskPool):
    """Celery's prefork pool (``--pool prefork`` picks it through CELERY_WORKER_POOL)."""

    BlockingPool = DeathSafePool


# --- Readiness ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, is not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


class Readiness(bootsteps.StartStopStep):
    """Watches the pool from the worker's parent and reports whether it can serve (see the
    module's docstring)."""

    requires = ("celery.worker.components:Pool",)
    label = "Arena readiness"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.folder: Path | None = None
        ready_file = os.environ.get("ARENA_READY_FILE", "")
        self.ready_file = Path(ready_file) if ready_file else None
        self.started_at: Any = None

    def create(self, parent: Any) -> None:
        from django.utils import timezone

        # Before any child can claim a job: whatever was claimed earlier on this node is not ours.
        self.started_at = timezone.now()
        # Before the pool forks: the children inherit where to leave their marks, and the
        # libraries they would each import.
        self.folder = Path(tempfile.mkdtemp(prefix="arena-worker-"))
        os.environ[STATE_DIR_ENV] = str(self.folder)
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        preload()

    def start(self, parent: Any) -> None:
        # Before the consumer (the last step) reserves a message: this incarnation's first
        # record, so the sweeper can tell an earlier incarnation's reservations from ours.
        from django.db import connection

        self._beat(parent, alive=set(), warm=set(), models=set(), ready=False)
        connection.close()  # the main thread's; the watching thread opens its own
        self._thread = threading.Thread(
            target=self._watch, args=(parent,), name="arena-readiness", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            _forget(node=parent.hostname)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    terminate = stop

    def _watch(self, worker: Any) -> None:
        from django.conf import settings
        from django.db import connection

        interval = settings.ARENA_WORKER_HEARTBEAT_S
        last_beat = 0.0
        was_ready = False
        try:
            while not self._stopping.wait(
                WATCH_INTERVAL_S if was_ready else STARTING_WATCH_INTERVAL_S
            ):
                failure = self._failure()
                if failure is not None:
                    logger.critical(
                        "worker %s stops: a pool child could not warm up: %s",
                        worker.hostname,
                        failure,
                    )
                    self._set_ready_file([])
                    # Read by the consumer loop, which then stops the worker with this code.
                    worker_state.should_stop = EX_WARM_UP_FAILED  # type: ignore[assignment]
                    return
                alive, warm, models = self._children(worker)
                ready = bool(alive) and len(alive) >= worker.concurrency and warm == alive
                now = time.monotonic()
                if ready != was_ready or now - last_beat >= interval:
                    if ready != was_ready:
                        logger.info(
                            "worker %s %s (%d of %d children warm)",
                            worker.hostname,
                            "ready" if ready else "not ready",
                            len(warm),
                            worker.concurrency,
                        )
                    was_ready = ready
                    last_beat = now
                    self._beat(worker, alive=alive, warm=warm, models=models, ready=ready)
                # After the record, so whoever sees the file change finds the database agree.
                self._set_ready_file(sorted(warm) if ready else [])
        finally:
            connection.close()

    def _beat(
        self, worker: Any, *, alive: set[int], warm: set[int], models: set[str], ready: bool
    ) -> None:
        from django.db import connection

        try:
            _record(
                node=worker.hostname,
                queues=sorted(worker.app.amqp.queues.consume_from),
                warm_models=sorted(models),
                children=len(alive),
                warm_children=len(warm),
                ready=ready,
                started_at=self.started_at,
            )
        except Exception:
            # The database is away: readiness goes stale by itself; try again.
            logger.warning("worker heartbeat not recorded", exc_info=True)
            connection.close()

    def _failure(self) -> str | None:
        assert self.folder is not None
        for path in self.folder.glob("failed-*"):
            return path.read_text(encoding="utf-8", errors="replace")
        return None

    def _children(self, worker: Any) -> tuple[set[int], set[int], set[str]]:
        """The pool's live children, those of them warm, and the models they warmed."""
        assert self.folder is not None
        try:
            pids = set(worker.pool.info["processes"])
        except Exception:  # the pool is starting or stopping
            return set(), set(), set()
        alive = {pid for pid in pids if _alive(pid)}
        warm: set[int] = set()
        models: set[str] = set()
        for path in self.folder.glob("warm-*"):
            pid = int(path.name.removeprefix("warm-"))
            if pid in alive:
                warm.add(pid)
                models.update(json.loads(path.read_text(encoding="utf-8")))
            elif pid not in pids:
                path.unlink(missing_ok=True)  # a child that is gone
        return alive, warm, models

    def _set_ready_file(self, pids: list[int]) -> None:
        if self.ready_file is None:
            return
        if not pids:
            self.ready_file.unlink(missing_ok=True)
            return
        text = "".join(f"{pid}\n" for pid in pids)
        with contextlib.suppress(OSError):
            if self.ready_file.read_text(encoding="ascii") == text:
                return
        _write_atomically(self.ready_file, text)


def _record(
    *,
    node: str,
    queues: list[str],
    warm_models: list[str],
    children: int,
    warm_children: int,
    ready: bool,
    started_at: Any = None,
) -> None:
    from django.utils import timezone

    from generation.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(
        node=node,
        defaults={
            "queues": queues,
            "warm_models": warm_models,
            "children": children,
            "warm_children": warm_children,
            "ready": ready,
            "seen_at": timezone.now(),
            "started_at": started_at,
        },
    )


def _forget(*, node: str) -> None:
    from generation.models import WorkerHeartbeat

    WorkerHeartbeat.objects.filter(node=node).delete()
