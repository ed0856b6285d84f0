import io
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from arena.categories import CATEGORIES
from leaderboard import exports, services
from leaderboard.models import Snapshot


class Command(BaseCommand):
    help = (
        "Write a leaderboard snapshot as CSV, JSON or Parquet, with its provenance: the latest "
        "for a category (computing one if there is none) or the one given by id."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--format", required=True, choices=exports.FORMATS)
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--category", help="'overall' (the default) or a category name")
        which.add_argument("--snapshot", type=int, help="snapshot id")
        parser.add_argument("--output", type=Path, help="file (default: stdout; csv and json)")

    def handle(
        self,
        *args: Any,
        format: str,
        category: str | None,
        snapshot: int | None,
        output: Path | None,
        **options: Any,
    ) -> None:
        if format == "parquet" and output is None:
            raise CommandError("parquet is binary: give a file with --output")
        board = self._snapshot(category=category, snapshot_id=snapshot)
        if output is None:
            buffer = io.StringIO()
            exports.write_board(snapshot=board, fmt=format, out=buffer)
            self.stdout.write(buffer.getvalue(), ending="")
            return
        with output.open("wb") as file:
            exports.write_board(snapshot=board, fmt=format, out=file)
        self.stderr.write(f"wrote snapshot {board.pk} ({format}) to {output}")

    def _snapshot(self, *, category: str | None, snapshot_id: int | None) -> Snapshot:
        if snapshot_id is not None:
            try:
                return Snapshot.objects.get(pk=snapshot_id)
            except Snapshot.DoesNotExist:
                raise CommandError(f"no snapshot {snapshot_id}") from None
        name = category or "overall"
        if name != "overall" and name not in CATEGORIES:
            raise CommandError(f"category must be overall or one of {', '.join(CATEGORIES)}")
        key = "" if name == "overall" else name
        latest = Snapshot.objects.latest_for(key)
        if latest is not None:
            return latest
        computed = services.refresh(category=key)
        if computed is None:
            raise CommandError(f"no votes for {name}: nothing to export")
        self.stderr.write(f"no snapshot for {name} yet: computed one (snapshot {computed.pk})")
        return computed
