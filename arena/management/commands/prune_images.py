"""Delete generated images nobody will need (arena.retention); never one behind a vote."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from arena import retention


class Command(BaseCommand):
    help = (
        "Delete the images of unvoted battles and of direct chat past their retention limits; "
        "every image behind a vote is kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--unvoted-days",
            type=int,
            default=settings.ARENA_RETENTION_UNVOTED_DAYS or 7,
            help="unvoted battles older than this lose their images (default: %(default)s)",
        )
        parser.add_argument(
            "--chat-days",
            type=int,
            default=settings.ARENA_RETENTION_CHAT_DAYS or 30,
            help="direct-chat images older than this are deleted (default: %(default)s)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("unvoted_days", "chat_days"):
            if options[name] < 1:
                self.stderr.write(f"--{name.replace('_', '-')} must be at least 1")
                raise SystemExit(2)
        pruned = retention.prune_images(
            unvoted_after=timedelta(days=options["unvoted_days"]),
            chat_after=timedelta(days=options["chat_days"]),
            dry_run=options["dry_run"],
        )
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {pruned.battle_images} battle images and {pruned.chat_images} chat images; "
            f"{pruned.battles_voided} unvoted battles voided"
        )
