from typing import Any

from django.core.management.base import BaseCommand

from generation.models import ImageModel


class Command(BaseCommand):
    help = "Print the Celery queues of the enabled models, comma-separated (for worker -Q)."

    def handle(self, *args: Any, **options: Any) -> None:
        queues = sorted(set(ImageModel.objects.enabled().values_list("queue", flat=True)))
        self.stdout.write(",".join(queues or ["default"]))
