"""Wake-up signals sent inside the writing transaction: for live streams (agents/streams.py) and for
claims waiting for work (agents/claim_wait.py).

On PostgreSQL ``pg_notify`` is delivered at commit, and never if the transaction rolls back, so a
stream or a waiting claim woken by it always finds the change. SQLite has no notifications: streams
and waiting claims poll there.

One channel, two kinds of payload: a task id (``"42"``: task 42 changed, for the streams following it)
and a JSON object for "tasks became pending" (``{"p": project, "o": orchestra, "a": target agent,
"n": how many, "c": required capabilities}``; ``n`` 0 means "any number": wake every waiter that could
claim). Inside a transaction they are held back and sent with its COMMIT, all in the same round
trip (``symphony.db.postgresql``'s ``notify_at_commit``), and those of a part rolled back to its
savepoint are dropped with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection

#: The PostgreSQL channel; the payload is a task id or a pending-work object (see the module docstring).
NOTIFY_CHANNEL = "symphony_task"

#: Longest pending payload kept with its capabilities (PostgreSQL refuses payloads of 8000 bytes and more).
_MAX_PENDING_PAYLOAD = 2000


def _send(payloads: list[str]) -> None:
    if not payloads or connection.vendor != "postgresql":
        return
    if not connection.get_autocommit() and hasattr(connection, "notify_at_commit"):
        connection.notify_at_commit(NOTIFY_CHANNEL, payloads)  # sent with the COMMIT (symphony.db.postgresql)
        return
    with connection.cursor() as cursor:
        if len(payloads) == 1:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, payloads[0]])
        else:
            cursor.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", [NOTIFY_CHANNEL, payloads])


def task_notify(*, task_id: int) -> None:
    """Wake the streams following ``task_id`` when the current transaction commits (PostgreSQL)."""
    _send([str(task_id)])


def tasks_notify(*, task_ids: list[int]) -> None:
    """``task_notify`` for several tasks in one statement (a claim of many)."""
    _send([str(task_id) for task_id in task_ids])


def pending_payload(
    *, project_id: int, orchestra_id: int | None = None, agent_id: int | None = None, count: int = 1,
    capabilities: Iterable[str] | None = None,
) -> str:  # fmt: skip
    """The payload saying ``count`` tasks (0: any number) became pending for the waiters that could claim
    them: of ``project_id``, members of ``orchestra_id`` (or the agent ``agent_id``; neither: any waiter
    of the project), holding ``capabilities`` (None: unknown, any)."""
    body: dict[str, Any] = {"p": project_id, "o": orchestra_id, "a": agent_id, "n": max(0, int(count))}
    if capabilities is not None:
        body["c"] = sorted(capabilities)
    payload = json.dumps(body, separators=(",", ":"))
    if len(payload) > _MAX_PENDING_PAYLOAD:  # capabilities are a filter only: without them it wakes more
        del body["c"]
        payload = json.dumps(body, separators=(",", ":"))
    return payload


def pending_notify(**kwargs: Any) -> None:
    """Wake the claims waiting for work that tasks became pending (see ``pending_payload``), at commit."""
    _send([pending_payload(**kwargs)])


def task_pending_notify(task: Any) -> None:
    """``pending_notify`` for one task that just became pending (submitted, requeued, released)."""
    pending_notify(
        project_id=task.project_id, orchestra_id=None if task.target_agent_id else task.orchestra_id,
        agent_id=task.target_agent_id, capabilities=task.required_capabilities or [],
    )  # fmt: skip


def slot_freed_notify(task: Any) -> None:
    """A task of a concurrency key stopped running: a pending task of that key may be claimable now."""
    if getattr(task, "concurrency_key", ""):
        pending_notify(project_id=task.project_id, count=1)
