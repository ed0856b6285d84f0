from typing import Any

from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    verbose_name = "Arena"

    def ready(self) -> None:
        from generation.jobs import generation_finished
        from generation.sweeper import sweeping

        generation_finished.connect(_finish_battle, dispatch_uid="arena.finish_battle")
        sweeping.connect(_void_overdue_battles, dispatch_uid="arena.void_overdue_battles")


def _finish_battle(sender: Any, *, generation: Any, **_: Any) -> None:
    from arena.services import on_generation_finished

    on_generation_finished(generation=generation)


def _void_overdue_battles(sender: Any, *, now: Any, **_: Any) -> None:
    from arena.services import void_overdue_battles

    void_overdue_battles(now=now)
