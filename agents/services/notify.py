"""The wake-up signal for live streams (agents/streams.py), sent inside the writing transaction.

On PostgreSQL ``pg_notify`` is delivered at commit, and never if the transaction rolls back, so a
stream woken by it always finds the change. SQLite has no notifications: streams poll there.
"""

from __future__ import annotations

from django.db import connection

#: The PostgreSQL channel; the payload is the task id.
NOTIFY_CHANNEL = "symphony_task"


def task_notify(*, task_id: int) -> None:
    """Wake the streams following ``task_id`` when the current transaction commits (PostgreSQL)."""
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
