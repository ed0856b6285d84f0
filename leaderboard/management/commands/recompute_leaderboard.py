from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from leaderboard import services


class Command(BaseCommand):
    help = "Compute the overall and per-category boards from the pair counts now."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--intervals", choices=["sandwich", "bootstrap"])
        parser.add_argument("--rounds", type=int, help="bootstrap rounds")
        parser.add_argument("--seed", type=int, help="bootstrap seed")

    def handle(
        self,
        *args: Any,
        intervals: str | None,
        rounds: int | None,
        seed: int | None,
        **options: Any,
    ) -> None:
        snapshots = services.refresh_all(interval_method=intervals, rounds=rounds, seed=seed)
        for snapshot in snapshots:
            self.stdout.write(
                f"{snapshot.category or 'overall'}: {snapshot.rows.count()} models, "
                f"{snapshot.votes_used} votes, {snapshot.interval_method}, "
                f"{snapshot.compute_ms:.1f} ms"
            )
        if not snapshots:
            self.stdout.write("no votes yet: nothing to rank")
