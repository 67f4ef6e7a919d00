"""``manage.py run_agent``: the symphony-agent worker (clients/symphony-agent), from the project.

It takes the same options as the ``symphony-agent`` command (``manage.py run_agent --help``) and exits
the same way: 0 after a clean stop, 2 with one line on stderr when it cannot run.
"""

from __future__ import annotations

from typing import Any

import symphony_agent
from django.core.management.base import BaseCommand
from symphony_agent import cli


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a plain HTTP client: start fast, check nothing server-side
    help = "Run an agent worker: heartbeat, claim, run your handlers (--handlers MODULE, --demo), report."

    def get_version(self) -> str:
        return f"symphony-agent {symphony_agent.__version__}"

    def add_arguments(self, parser: Any) -> None:
        cli.add_arguments(parser, version=False)  # Django's own --version prints get_version()

    def handle(self, *args: Any, **options: Any) -> None:
        # The worker touches neither the database nor Django's settings: it is an HTTP client.
        raise SystemExit(cli.run_from_options(options))
