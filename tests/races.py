"""Races made to happen on PostgreSQL: one transaction held open while a second writer runs into it.

A race between two writers is only tested when the second really waits on the first: both threads
are started in order, and the first commits only once PostgreSQL shows a backend of this database
waiting on a lock (``pg_stat_activity``) or the second has already finished without waiting.
Tests using it need ``django_db(transaction=True, serialized_rollback=True)``: each thread has a
connection of its own, and the rows the threads write must be committed to be seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction


def lock_waiters() -> int:
    """Backends of this test database waiting on a lock now (other xdist workers' are not counted)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def behind_a_held_transaction(
    hold: Callable[[], Any], racer: Callable[[], Any], *, timeout: float = 30
) -> tuple[Any, bool]:
    """Run ``hold`` in a transaction of its own thread and keep it open, then run ``racer`` in a second
    thread; commit ``hold`` once the racer waits on a lock (or has finished). Return the racer's
    result and whether it waited. An exception in either thread is raised here, after both ended."""
    holding, release = threading.Event(), threading.Event()
    results: list[Any] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                hold()
                holding.set()
                release.wait(timeout)
        except BaseException as exc:
            errors.append(exc)
        finally:
            holding.set()
            connection.close()

    def second() -> None:
        try:
            results.append(racer())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=first, name="race-holder")
    holder.start()
    if not holding.wait(timeout) or errors:
        release.set()
        holder.join(timeout)
        raise errors[0] if errors else AssertionError("the held transaction never started")
    contender = threading.Thread(target=second, name="race-contender")
    contender.start()
    deadline, waited = time.monotonic() + timeout, False
    while contender.is_alive() and time.monotonic() < deadline:
        if lock_waiters():
            waited = True
            break
        time.sleep(0.01)
    release.set()
    holder.join(timeout)
    contender.join(timeout)
    if errors:
        raise errors[0]
    assert results, "the racer did not finish"
    return results[0], waited
