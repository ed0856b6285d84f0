from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from arena import moderation
from arena.models import BlockedTerm


class Command(BaseCommand):
    help = "Add the prompt blocklist (ARENA_BLOCKLIST) to the database; safe to repeat."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--file", type=Path, help="blocklist file (default: the setting)")

    def handle(self, *args: Any, file: Path | None, **options: Any) -> None:
        added = moderation.load_blocklist(path=file)
        total = BlockedTerm.objects.filter(active=True).count()
        self.stdout.write(f"{added} terms added; {total} active terms")
