"""``runserver`` for ``deploy/dev.py run``: no migration check at start.

dev.py starts the web server only once the schema is current (prepare_arena has just migrated,
or nothing it reads has changed since it did), so Django's check, which loads every migration
file and reads the migration table, would only delay the first answer.
"""

from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand


class Command(RunserverCommand):
    help = "runserver without the migration check at start (deploy/dev.py run uses it)."

    def check_migrations(self) -> None:
        return None
