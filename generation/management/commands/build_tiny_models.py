from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Build the tiny offline diffusers pipelines (random weights) under ARENA_MODELS_DIR."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--force", action="store_true", help="rebuild models already on disk")

    def handle(self, *args: Any, force: bool, **options: Any) -> None:
        from generation import tiny

        built = tiny.build_all(settings.MODELS_DIR, force=force)
        for path in built:
            self.stdout.write(f"built {path}")
        if not built:
            self.stdout.write(f"tiny models already built under {settings.MODELS_DIR}")
