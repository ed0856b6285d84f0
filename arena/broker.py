"""The embedded default broker: kombu's file-system transport, made safe for many processes.

kombu's own file-system channel loses and corrupts messages when several processes share a
folder, which every ``dev.py run`` does (web server, worker pool, beat):

- a writer creates the message file and then writes it, while a reader takes any ``*.msg`` file
  it sees without the writer's lock, so it can read a file that is still empty
  (``JSONDecodeError`` in the worker);
- a reader claims a file by moving it to the system's temporary folder, which is often another
  file system: the move becomes copy-then-delete, so two readers can both take one message;
- the first two processes to bind a queue both create the exchange table with ``open("wb")``,
  which truncates what the other wrote (a binding lost: messages for that queue dropped), and a
  reader can meet the truncated, empty table.

Here every change is a rename within one folder, which POSIX makes atomic: a message is written
to a hidden temporary name and renamed to its ``.msg`` name, so a reader sees all of it or none
of it; a reader claims a message by renaming it into a claim folder beside the queue, so exactly
one reader wins; the exchange table is rewritten whole under an exclusive lock and renamed into
place, so readers need no lock and never see half of it. Production uses Redis instead.

A message taken by a consumer that acknowledges stays in the claim folder, named after the
taker's process, until it is acknowledged, rejected or given back: like Redis's unacked table,
it shows what a worker holds, so the sweeper never takes a message that a worker has taken but
not yet started for a lost one (generation.sweeper).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_LOCK_NAME = ".bindings.lock"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target under a name no reader looks for, then rename over it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class Channel(filesystem.Channel):
    """A file-system channel whose writes, claims and bindings are atomic renames."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Messages taken from queues consumed with acknowledgements, by delivery tag: each
        # stays in the claim folder until it is acknowledged, rejected or given back.
        self._held: dict[Any, str] = {}
        self._acked_queues: set[str] = set()
        super().__init__(*args, **kwargs)
        for folder in (self.data_folder_in, self.data_folder_out, self.claim_folder):
            os.makedirs(folder, exist_ok=True)
        self.control_folder.mkdir(parents=True, exist_ok=True)

    @property
    def claim_folder(self) -> str:
        # Beside the queue folder, so claiming is a rename on one file system.
        return str(
            self.transport_options.get(
                "claim_folder", os.path.join(self.data_folder_in, os.pardir, "claimed")
            )
        )

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_atomically(Path(self.data_folder_out) / name, str_to_bytes(dumps(payload)))
        except OSError as error:
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from error

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str | None, **kwargs: Any
    ) -> Any:
        if not no_ack:
            self._acked_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        claim_folder = self.claim_folder
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claim_folder, f"{os.getpid()}-{name}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another reader took it first
            held = False
            try:
                with open(claimed, "rb") as handle:
                    message = loads(bytes_to_str(handle.read()))
                tag = message.get("properties", {}).get("delivery_tag")
                if queue in self._acked_queues and tag is not None:
                    os.utime(claimed)  # the time it was taken: the sweeper ages reservations
                    self._held[tag] = claimed
                    held = True
            finally:
                if not held:
                    os.unlink(claimed)
            return message
        raise Empty()

    def _release(self, delivery_tag: Any) -> None:
        path = self._held.pop(delivery_tag, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)  # a requeued copy is written first
        self._release(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)  # the copy goes back to the queue folder first
        self._release(message.delivery_tag)

    @contextmanager
    def _bindings_locked(self) -> Iterator[None]:
        self.control_folder.mkdir(parents=True, exist_ok=True)
        with open(self.control_folder / _LOCK_NAME, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _table_file(self, exchange: str) -> Path:
        # kombu's check that the name cannot leave the control folder.
        file: Path = self._exchange_file(exchange)  # type: ignore[attr-defined]
        return file

    def get_table(self, exchange: str) -> list[Any]:
        file = self._table_file(exchange)
        try:
            table = loads(bytes_to_str(file.read_bytes()))
        except FileNotFoundError:
            return []
        return [filesystem.exchange_queue_t(*row) for row in table]

    def _queue_bind(
        self, exchange: str, routing_key: str | None, pattern: str | None, queue: str
    ) -> None:
        file = self._table_file(exchange)
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._bindings_locked():
            table = self.get_table(exchange)
            if row not in table:
                _write_atomically(file, str_to_bytes(dumps([row, *table])))

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        file = self._table_file(exchange)
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._bindings_locked():
            table = self.get_table(exchange)
            if row in table:
                table.remove(row)
                _write_atomically(file, str_to_bytes(dumps(table)))


class Transport(filesystem.Transport):
    """kombu's file-system transport with the atomic channel above."""

    Channel = Channel
