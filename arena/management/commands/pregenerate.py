import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from arena import services
from generation.models import Generation


class Command(BaseCommand):
    help = (
        "Fill the pool of single-use battle images for the curated prompts (secret seeds, "
        "lowest priority), so their battles are ready at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--count",
            type=int,
            default=None,
            help="unused images per curated prompt and model (default ARENA_POOL_SIZE)",
        )
        parser.add_argument("--models", help="comma-separated model keys (default: all enabled)")
        parser.add_argument("--limit", type=int, help="only the first N curated prompts")
        parser.add_argument("--wait", action="store_true", help="wait and show progress")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")

    def handle(
        self,
        *args: Any,
        count: int | None,
        models: str | None,
        limit: int | None,
        wait: bool,
        timeout: float,
        **options: Any,
    ) -> None:
        per_pair = settings.ARENA_POOL_SIZE if count is None else count
        if per_pair < 0 or (limit is not None and limit < 0):
            raise CommandError("--count and --limit must not be negative")
        result = services.pregenerate(
            per_pair=per_pair, model_keys=models.split(",") if models else None, limit=limit
        )
        self.stdout.write(
            f"{len(result.queued)} pool images queued, {result.present} already unused in the pool"
        )
        if not wait or not result.queued:
            return
        deadline = time.monotonic() + timeout
        jobs = Generation.objects.filter(pk__in=result.queued)
        while True:
            done = jobs.filter(status=Generation.Status.DONE).count()
            failed = jobs.filter(status=Generation.Status.FAILED).count()
            self.stdout.write(f"  {done + failed}/{len(result.queued)} finished ({failed} failed)")
            if done + failed == len(result.queued) or time.monotonic() > deadline:
                break
            time.sleep(2)
