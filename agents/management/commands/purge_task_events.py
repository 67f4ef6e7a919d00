"""Delete the events of tasks that finished longer ago than SYMPHONY_TASK_EVENT_RETENTION_DAYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents import services


class Command(BaseCommand):
    help = "Delete events of tasks finished more than --days ago (default SYMPHONY_TASK_EVENT_RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Retention in days (at least 1).")

    def handle(self, *args: Any, days: int | None = None, **options: Any) -> None:
        if days is not None and days < 1:
            from django.core.management.base import CommandError

            raise CommandError("--days must be at least 1.")
        deleted = services.task_event_purge(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} task events.")
