"""The wake-up signal for live streams (agents/streams.py), sent inside the writing transaction.

On PostgreSQL ``pg_notify`` is delivered at commit, and never if the transaction rolls back, so a
stream woken by it always finds the change. SQLite has no notifications: streams poll there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connection

#: The PostgreSQL channel; the payload is the task id.
NOTIFY_CHANNEL = "symphony_task"


#: While ``notifications_collected()`` runs: the task ids whose notifications it will send.
_collected: ContextVar[list[int] | None] = ContextVar("symphony_notify_collected", default=None)


@contextmanager
def notifications_collected() -> Iterator[list[int]]:
    """Collect ``task_notify`` calls made inside, and send them in one statement at the end.

    For a service that changes many tasks in one transaction (a batch completion): notifications
    are delivered at commit either way, so sending them at the end of the transaction instead of
    one by one changes nothing for listeners. The caller may remove ids from the yielded list (those
    of a part it rolled back to a savepoint). Nothing is sent when the block raises.
    """
    ids: list[int] = []
    token = _collected.set(ids)
    try:
        yield ids
    finally:
        _collected.reset(token)
    tasks_notify(task_ids=ids)


def task_notify(*, task_id: int) -> None:
    """Wake the streams following ``task_id`` when the current transaction commits (PostgreSQL)."""
    collected = _collected.get()
    if collected is not None:
        collected.append(task_id)
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(task_id)])


def tasks_notify(*, task_ids: list[int]) -> None:
    """``task_notify`` for several tasks in one statement (a claim of many)."""
    if task_ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, id::text) FROM unnest(%s::bigint[]) AS id", [NOTIFY_CHANNEL, list(task_ids)]
            )
