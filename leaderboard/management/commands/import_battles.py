import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError

from leaderboard import imports


class Command(BaseCommand):
    help = (
        "Import votes from a battle log in FastChat's clean-battle layout (JSONL or CSV). "
        "Every row is checked first; one bad row and nothing is imported."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", help="name to record as the rows' source (default: FILE)")

    def handle(self, *args: Any, file: Path, source: str | None, **options: Any) -> None:
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        try:
            result = imports.import_battles(path=file, source=source, progress=bar)
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error}") from error
        except imports.ImportFailed as failed:
            if bar is not None:
                bar.end()
            for line, message in failed.errors:
                self.stderr.write(f"line {line}: {message}")
            if failed.total > len(failed.errors):
                self.stderr.write(f"... and {failed.total - len(failed.errors)} more")
            raise CommandError(str(failed)) from failed
        if bar is not None:
            bar.end()
        self.stdout.write(
            f"imported {result.rows} rows ({result.anonymous_rows} anonymous, counted) "
            f"in {result.seconds:.1f} s; {result.excluded_rows} rows marked excluded were skipped"
        )
        created = ", ".join(result.models_created) or "none"
        self.stdout.write(f"models created (disabled): {len(result.models_created)}: {created}")
        self.stdout.write("run recompute_leaderboard to update the boards")


class ProgressBar:
    """A one-line bar on a terminal, redrawn when a stage moves on by a percent or more."""

    WIDTH = 30
    LABELS = {"read": "reading", "write": "writing"}

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown: tuple[str, int] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if self.shown == (stage, percent):
            return
        self.shown = (stage, percent)
        filled = self.WIDTH * percent // 100
        label = self.LABELS.get(stage, stage)
        self.out.write(f"\r{label:8s} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d}%")
        self.out.flush()

    def end(self) -> None:
        if self.shown is not None:
            self.out.write("\n")
            self.out.flush()
