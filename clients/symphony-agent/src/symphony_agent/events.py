"""Batching of a task's live events (progress, log lines, partial output) on their way to the server.

A handler may call ``ctx.log()`` thousands of times; one request each would cost the server a
transaction and a notification per line. ``EventBatcher`` keeps them in order and posts them to
``POST /api/v1/tasks/{id}/events/`` as one list when ``max_batch`` are waiting or ``interval`` seconds
after the first of a batch, from its own thread, so a call never blocks the handler (nor the event loop
of an ``async def`` handler). ``close()`` sends what is left; the worker calls it before it reports the
task's completion or failure, so a stream shows every event before the task's end.

Failures never reach the handler: while the server is unavailable, batches wait and are retried at the
next interval (at most ``max_buffered`` events are kept; older ones are dropped and counted); a 409 (the
attempt is over) or a 4xx refusal (413: a limit) drops the batch with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from symphony_agent.client import LeaseLostError, ProtocolError, ServerUnavailableError

if TYPE_CHECKING:
    from symphony_agent.client import ProtocolClient

log = logging.getLogger("symphony_agent")


class EventBatcher:
    """Ordered, batched delivery of one task attempt's events. Thread-safe; calls never block on I/O."""

    def __init__(
        self,
        client: ProtocolClient,
        task_id: int,
        attempt: int,
        *,
        max_batch: int = 100,
        interval: float = 0.25,
        max_buffered: int = 10_000,
    ) -> None:
        self.client, self.task_id, self.attempt = client, task_id, attempt
        self.max_batch, self.interval, self.max_buffered = max_batch, interval, max_buffered
        self.sent = 0
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._first_at: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._gone = False  # the attempt is over (409): nothing more will be accepted
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()  # one batch on the wire at a time keeps the order

    def add(self, type: str, data: Any) -> None:
        """Queue one event (``type`` progress, output or log). After ``close()`` it is dropped."""
        with self._cond:
            if self._closed or self._gone:
                self.dropped += 1
                return
            self._pending.append({"type": type, "data": data})
            if len(self._pending) > self.max_buffered:
                del self._pending[0]
                self.dropped += 1
            if self._first_at is None:
                self._first_at = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"symphony-events-{self.task_id}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Send every waiting event now, trying for up to ``timeout`` seconds while the server is unavailable."""
        deadline = time.monotonic() + timeout
        while self._has_pending() and not self._send_waiting() and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and send what is left (``flush``); later events are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        started = time.monotonic()
        if thread is not None:
            thread.join(timeout)
        self.flush(max(0.0, timeout - (time.monotonic() - started)))
        with self._cond:
            self.dropped += len(self._pending)
            self._pending.clear()

    def _has_pending(self) -> bool:
        with self._cond:
            return bool(self._pending) and not self._gone

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    wait = None if self._first_at is None else self._first_at + self.interval - time.monotonic()
                    self._cond.wait(wait)
                if self._closed:
                    return  # close() sends the rest itself, within its own timeout
            if not self._send_waiting():
                with self._cond:  # unavailable: try again one interval later
                    self._first_at = time.monotonic()

    def _due(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch:
            return True
        return self._first_at is not None and time.monotonic() - self._first_at >= self.interval

    def _send_waiting(self) -> bool:
        """Post the waiting events in batches; False when the server was unavailable (kept for later)."""
        with self._send_lock:
            while True:
                with self._cond:
                    batch = self._pending[: self.max_batch]
                    if not batch or self._gone:
                        self._first_at = None if not self._pending else self._first_at
                        return True
                try:
                    self.client.task_post(self.task_id, "events", attempt=self.attempt, events=batch)
                except ServerUnavailableError as exc:
                    log.debug("task %s: events not sent yet: %s", self.task_id, exc)
                    return False
                except LeaseLostError as exc:
                    log.warning("task %s: events dropped, the attempt is over: %s", self.task_id, exc)
                    with self._cond:
                        self._gone = True
                        self.dropped += len(self._pending)
                        self._pending.clear()
                    return True
                except (ProtocolError, TypeError, ValueError) as exc:  # refused (413 a limit), or not JSON
                    log.warning("task %s: %d events refused: %s", self.task_id, len(batch), exc)
                    with self._cond:
                        del self._pending[: len(batch)]
                        self.dropped += len(batch)
                    continue
                with self._cond:
                    del self._pending[: len(batch)]
                    self.sent += len(batch)
                    self._first_at = time.monotonic() if self._pending else None
