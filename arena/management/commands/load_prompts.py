from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from arena import services
from arena.models import Prompt


class Command(BaseCommand):
    help = "Add the curated prompt pool (ARENA_PROMPT_POOL) to the database; safe to repeat."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--file", type=Path, help="prompt pool file (default: the setting)")

    def handle(self, *args: Any, file: Path | None, **options: Any) -> None:
        added = services.load_prompts(path=file)
        total = Prompt.objects.curated().count()
        self.stdout.write(f"{added} prompts added; {total} curated prompts in the pool")
