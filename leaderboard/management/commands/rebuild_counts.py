from typing import Any

from django.core.management.base import BaseCommand

from leaderboard import services


class Command(BaseCommand):
    help = "Recompute the pair counts and online Elo from the votes (they are kept per vote)."

    def handle(self, *args: Any, **options: Any) -> None:
        votes = services.rebuild_counts()
        self.stdout.write(f"rebuilt the counts from {votes} votes")
