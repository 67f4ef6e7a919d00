"""Task events: progress, log lines and partial output posted by a task's holder, and the wake-up
signal live streams wait for (``agents/streams.py``).

``task_notify`` runs inside the writing transaction: on PostgreSQL ``pg_notify`` is delivered at commit
(and never if the transaction rolls back), so a stream woken by it always finds the row. SQLite has no
notifications; streams there poll (``SYMPHONY_STREAM_POLL_SECONDS``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.exceptions import EventLimitExceeded
from agents.models import Agent, Task, TaskEvent
from agents.services.dispatch import _holder_filter, _lease_error
from agents.services.notify import task_notify
from agents.services.tasks import check_json_size
from agents.services.usage import usage_record


@transaction.atomic
def task_event_append(
    *, task_id: int, agent: Agent, attempt: int, events: list[dict[str, Any]], usage: list[dict[str, Any]] | None = None
) -> list[TaskEvent]:
    """Append ``events`` (each ``{"type", "data"}``) to the task held by ``agent`` under ``attempt``, and
    record the LLM ``usage`` reported with them (charged to budgets at once, like a completion's).

    Numbers them after the task's last ``seq``. The holder's row is locked (``FOR UPDATE``) while
    numbering, so two concurrent posts for one task cannot take the same numbers. Raises
    ``PayloadTooLarge`` / ``EventLimitExceeded`` (413), ``LeaseLost`` (409) or ``NotTaskHolder`` (403).
    """
    batch = settings.SYMPHONY_TASK_EVENT_MAX_BATCH
    if len(events) > batch:
        raise EventLimitExceeded("SYMPHONY_TASK_EVENT_MAX_BATCH", batch, f"{len(events)} events in one request")
    for index, event in enumerate(events):
        check_json_size(f"events[{index}].data", event.get("data"), settings.SYMPHONY_TASK_EVENT_MAX_BYTES)
    if not list(_holder_filter(task_id=task_id, agent=agent, attempt=attempt).select_for_update().values("id")):
        raise _lease_error(task_id=task_id, agent=agent)
    last = TaskEvent.objects.filter(task_id=task_id).aggregate(last=Max("seq"))["last"] or 0
    cap = settings.SYMPHONY_TASK_EVENT_MAX_PER_TASK
    if last + len(events) > cap:
        raise EventLimitExceeded("SYMPHONY_TASK_EVENT_MAX_PER_TASK", cap, f"The task already has {last} events")
    now = timezone.now()
    rows = TaskEvent.objects.bulk_create(
        [
            TaskEvent(task_id=task_id, seq=last + offset, type=event["type"], data=event.get("data"),
                      attempt=attempt, created_at=now)
            for offset, event in enumerate(events, start=1)
        ]
    )  # fmt: skip
    if rows:
        task_notify(task_id=task_id)
    if usage:
        task = Task.objects.select_related("project").get(pk=task_id)
        usage_record(task=task, agent=agent, items=usage, source="event")
    return rows


def task_event_purge(*, older_than_days: int | None = None, batch: int = 5000) -> int:
    """Delete events of finished tasks that finished more than the retention ago; return how many.

    Events of unfinished tasks are kept whatever their age: a stream may still replay them.
    """
    days = settings.SYMPHONY_TASK_EVENT_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        ids = list(
            TaskEvent.objects.filter(task__status__in=Task.FINISHED, task__finished_at__lt=cutoff).values_list(
                "id", flat=True
            )[:batch]
        )
        if not ids:
            return total
        total += TaskEvent.objects.filter(pk__in=ids).delete()[0]
