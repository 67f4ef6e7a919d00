"""``manage.py run_agent --url URL --key KEY [--concurrency N]``: the symphony_agent worker, from the project."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand

from symphony_agent import cli


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a plain HTTP client: start fast, check nothing server-side
    help = "Run an agent worker: heartbeat, claim, run handlers (echo, word_count, sleep, your own), report."

    def add_arguments(self, parser: Any) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        # The worker is a plain HTTP client: it touches neither the database nor Django's logging setup.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("symphony_agent")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        cli.run(cli.build_worker(options))
