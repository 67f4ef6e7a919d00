"""``manage.py run_scheduler``: fire due schedules every tick; any number may run at once."""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections

from agents import hooks
from workflows.scheduling.ticker import schedule_fire_due

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = (
        "Fire every due schedule exactly once per tick (SKIP LOCKED: several schedulers are safe), then run the "
        "periodic sweeps (approval timeouts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")
        parser.add_argument("--batch", type=int, default=100, help="Schedules fired per transaction.")
        parser.add_argument(
            "--interval", type=float, default=None, help="Seconds between ticks (SYMPHONY_SCHEDULER_TICK_SECONDS)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] or settings.SYMPHONY_SCHEDULER_TICK_SECONDS
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            log.info("scheduler_started", tick_seconds=interval)
        while True:
            fired = self.tick(batch=options["batch"])
            if options["once"]:
                self.stdout.write(f"Fired {fired} schedule(s).")
                return
            if stop.wait(interval):
                log.info("scheduler_stopped")
                return

    def tick(self, *, batch: int) -> int:
        """Fire batches until none is full, then sweep. A database error is logged and the next tick
        tries again: each batch is one transaction, so nothing is half-written."""
        close_old_connections()
        fired = 0
        try:
            while True:
                firings = schedule_fire_due(limit=batch)
                fired += len(firings)
                if len(firings) < batch:
                    break
            hooks.run_periodic()
        except DatabaseError as error:
            log.warning("scheduler_tick_failed", error=type(error).__name__, detail=str(error)[:200])
        return fired
