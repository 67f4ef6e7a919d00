"""``manage.py reap_tasks``: return expired leases to the queue and mark silent agents offline (for cron)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from agents import hooks, services


class Command(BaseCommand):
    help = "Requeue (or fail, after max attempts) tasks whose lease expired; mark agents with stale heartbeats offline."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while True:
            reaped = services.task_reap_expired()
            total += reaped
            if reaped < 500:
                break
        offline = services.agent_mark_offline()
        swept = hooks.run_periodic()  # e.g. approvals past their timeout (workflows)
        self.stdout.write(
            f"Reaped {total} expired lease(s); marked {offline} agent(s) offline; {swept} periodic item(s) handled."
        )
