from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from leaderboard import dataset


class Command(BaseCommand):
    help = (
        "Write the vote dataset (one row per anonymous voted battle, FastChat's clean-battle "
        "columns first) as JSON Lines, CSV or Parquet; excluded votes are kept and flagged "
        "unless --exclude-excluded."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--format", required=True, choices=dataset.FORMATS)
        parser.add_argument("--output", type=Path, help="file (default: stdout; jsonl and csv)")
        parser.add_argument(
            "--exclude-excluded", action="store_true", help="leave out the excluded votes"
        )

    def handle(
        self,
        *args: Any,
        format: str,
        output: Path | None,
        exclude_excluded: bool,
        **options: Any,
    ) -> None:
        include_excluded = not exclude_excluded
        if output is None:
            if format == "parquet":
                raise CommandError("parquet is binary: give a file with --output")
            # Every chunk written ends with a line break, so the wrapper adds none.
            dataset.write_votes(fmt=format, out=self.stdout, include_excluded=include_excluded)
            return
        with output.open("wb") as file:
            rows = dataset.write_votes(fmt=format, out=file, include_excluded=include_excluded)
        self.stderr.write(f"wrote {rows} votes ({format}) to {output}")
