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
        parser.add_argument(
            "--map-category",
            action="append",
            default=[],
            metavar="THEIRS=OURS",
            help="count rows of a category that is not ours as one of ours (repeatable)",
        )
        parser.add_argument(
            "--drop-unknown-categories",
            action="store_true",
            help="leave out rows whose category is not ours (and not mapped) instead of failing",
        )

    def handle(
        self,
        *args: Any,
        file: Path,
        source: str | None,
        map_category: list[str],
        drop_unknown_categories: bool,
        **options: Any,
    ) -> None:
        mapping = {}
        for item in map_category:
            theirs, sep, ours = item.partition("=")
            if not sep or not theirs or not ours:
                raise CommandError(f"--map-category needs THEIRS=OURS, got {item!r}")
            mapping[theirs] = ours
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        try:
            result = imports.import_battles(
                path=file,
                source=source,
                progress=bar,
                category_map=mapping,
                drop_unknown_categories=drop_unknown_categories,
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
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
        for theirs, rows in sorted(result.categories_mapped.items()):
            self.stdout.write(f"category {theirs!r} -> {mapping[theirs]!r}: {rows} rows")
        for theirs, rows in sorted(result.categories_dropped.items()):
            self.stdout.write(f"category {theirs!r} dropped: {rows} rows")
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
