"""Exactly one Celery beat in the whole deployment, enforced by a lock.

Two beats would send every periodic task twice. ``LockedScheduler`` schedules only while it
holds a lock with a time-to-live and renews it at every tick; any other beat logs that it stands
by and idles, and takes over once the holder has been gone for the lock's time-to-live (a crashed
host, a killed pod). The lock lives in Redis (``REDIS_URL``), which every host shares; without
Redis (the laptop default) it is a file lock under ``ARENA_VAR_DIR``, which covers one host.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)


class BeatLock(Protocol):
    def hold(self) -> bool:
        """Take the lock or renew it; True while this process holds it."""

    def release(self) -> None: ...


class RedisBeatLock:
    """A Redis key set only if absent (SET NX PX), renewed by its holder (redis-py's Lock)."""

    def __init__(self, url: str, *, key: str, ttl_s: float) -> None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.lock = client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)
        self.held = False

    def hold(self) -> bool:
        from redis.exceptions import LockError, RedisError

        try:
            if self.held:
                self.lock.reacquire()
            else:
                self.held = bool(self.lock.acquire(token=_token()))
        except LockError:
            logger.error("beat lock lost (it expired and another beat may hold it now)")
            self.held = False
        except RedisError as exc:
            # Unsure whether we still hold it: stop scheduling. A missed sweep is harmless; a
            # doubled one wastes work.
            logger.error("beat lock unreachable: %s", exc)
            self.held = False
        return self.held

    def release(self) -> None:
        from redis.exceptions import LockError, RedisError

        if self.held:
            with contextlib.suppress(LockError, RedisError):
                self.lock.release()
            self.held = False


class FileBeatLock:
    """An exclusive flock on a file: released by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.handle: IO[str] | None = None

    def hold(self) -> bool:
        if self.handle is not None:
            return True
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.handle = handle
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def beat_lock() -> BeatLock:
    """The deployment's beat lock: in Redis when REDIS_URL is set, else a local file."""
    if settings.REDIS_URL:
        return RedisBeatLock(
            settings.REDIS_URL,
            key=settings.ARENA_BEAT_LOCK_KEY,
            ttl_s=settings.ARENA_BEAT_LOCK_TTL_S,
        )
    return FileBeatLock(settings.VAR_DIR / "beat.lock")


class LockedScheduler(PersistentScheduler):
    """Celery beat's persistent scheduler, active only while it holds the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.beat_lock = beat_lock()
        self.holding: bool | None = None
        # Renew well inside the time-to-live, so a slow tick never lets the lock lapse.
        self.renew_s = settings.ARENA_BEAT_LOCK_TTL_S / 3
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        holding = self.beat_lock.hold()
        if holding != self.holding:
            if holding:
                logger.info("beat lock taken: this beat schedules the periodic tasks")
            else:
                logger.warning(
                    "another beat holds the beat lock; this one stands by and schedules nothing"
                )
            self.holding = holding
        if not holding:
            return self.renew_s
        return min(float(super().tick(*args, **kwargs)), self.renew_s)

    def close(self) -> None:
        self.beat_lock.release()
        super().close()
