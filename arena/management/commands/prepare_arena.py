import hashlib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from generation.models import ImageModel
from generation.registry import load_registry


class Command(BaseCommand):
    help = (
        "Everything the local arena needs before it starts, in one process: migrate, build the "
        "tiny models if missing, sync the registry if it changed, load the prompt pool. Prints "
        "the Celery queues to serve on its last line."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        # deploy/dev.py starts the web server on this line, while the rest runs.
        self.stdout.write("arena: database migrated")
        self.stdout.flush()
        registry = Path(settings.MODEL_REGISTRY)
        entries = load_registry(registry, models_dir=settings.MODELS_DIR)
        missing = [
            e.key
            for e in entries
            if e.backend == "diffusers"
            and e.source.startswith(str(settings.MODELS_DIR))
            and not (Path(e.source) / "model_index.json").exists()
        ]
        if missing:
            # Importing torch and diffusers takes seconds: only when something must be built.
            call_command("build_tiny_models")
        stamp = Path(settings.VAR_DIR) / "registry.synced"
        digest = hashlib.sha256(registry.read_bytes() + str(settings.MODELS_DIR).encode())
        if (
            not stamp.exists()
            or stamp.read_text() != digest.hexdigest()
            or missing
            or not (ImageModel.objects.exists())
        ):
            call_command("sync_models")
            stamp.write_text(digest.hexdigest())
        else:
            self.stdout.write(f"registry {registry} unchanged since the last sync")
        call_command("load_prompts")
        call_command("load_blocklist")
        queues = sorted(set(ImageModel.objects.enabled().values_list("queue", flat=True)))
        self.stdout.write(",".join(sorted({"default", settings.LEADERBOARD_QUEUE, *queues})))
