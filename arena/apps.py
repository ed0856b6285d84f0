from typing import Any

from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    verbose_name = "Arena"

    def ready(self) -> None:
        from generation.services import generation_finished

        generation_finished.connect(_finish_battle, dispatch_uid="arena.finish_battle")


def _finish_battle(sender: Any, *, generation: Any, **_: Any) -> None:
    from arena.services import on_generation_finished

    on_generation_finished(generation=generation)
