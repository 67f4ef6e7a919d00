"""Domain events for listeners above the apps that emit them (webhooks, streams).

An app calls ``emit(...)`` inside the transaction of the change it reports, right next to its
``audit.record(...)``. Listeners (``webhooks`` writes its transactional outbox here) are connected to
``domain_event`` from their ``AppConfig.ready()``; they run synchronously in that same transaction, so
a rolled-back change emits nothing and a committed change has its outbox rows. A listener that raises
rolls the change back, like a failing ``audit.record``: listeners must only write rows, never do I/O.

The emitting apps never import their listeners: this module is the only thing both sides know.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.dispatch import Signal

#: Sent with ``event_type`` (dotted, e.g. ``task.succeeded``), ``project_id`` (the project the event
#: belongs to, or None) and ``data`` (a JSON-serialisable dict: what a subscriber receives as the event's ``data``).
domain_event = Signal()


def emit(event_type: str, *, data: dict[str, Any], project_id: int | None = None) -> None:
    """Tell every listener that ``event_type`` happened, inside the caller's transaction.

    ``data`` must be JSON-serialisable. Raises whatever a listener raises (the caller's
    transaction then rolls back, as it should: the change and its notification go together).
    """
    domain_event.send(sender=None, event_type=event_type, project_id=project_id, data=data)


_batch: ContextVar[dict[Any, Any] | None] = ContextVar("symphony_domain_event_batch", default=None)


@contextmanager
def batched() -> Iterator[None]:
    """Mark a service call that emits many events in one transaction (a batch completion): listeners
    may then keep what they read for one event for the next (``batch_memo``), instead of reading it
    again for each. Nested calls share the outer batch."""
    if _batch.get() is not None:
        yield
        return
    token = _batch.set({})
    try:
        yield
    finally:
        _batch.reset(token)


def batch_memo() -> dict[Any, Any] | None:
    """A dict that lives as long as the current ``batched()`` block, or None outside one. Only for
    reads that the block's own writes cannot change."""
    return _batch.get()
