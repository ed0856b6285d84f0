from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generation import registry_sync
from generation.registry import RegistryError


class Command(BaseCommand):
    help = "Load the model registry file (ARENA_MODEL_REGISTRY) into the database."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--registry", type=Path, help="registry file (default: the setting)")

    def handle(self, *args: Any, registry: Path | None, **options: Any) -> None:
        try:
            current, retired = registry_sync.sync_models(path=registry)
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        for model in current:
            state = "enabled" if model.enabled else "disabled"
            self.stdout.write(f"{model.key}@{model.version}: {state}, queue {model.queue}")
        for model in retired:
            self.stdout.write(f"{model.key}@{model.version}: retired")
