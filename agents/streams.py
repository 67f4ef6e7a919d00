"""Live streams of task events and status (server-sent events), served asynchronously.

Why this shape: a stream is open for as long as its task runs (minutes, hours), so it must not hold a
sync gunicorn worker. The stream views are Django async views; in production they are served by a
dedicated ASGI process (``uvicorn symphony.asgi:application``, ``make run``, Compose ``streams``, the
chart's ``streams`` deployment) to which nginx routes the ``/stream/`` paths. One open stream there costs
a coroutine and no database connection: the database is read in short queries on a small thread pool,
only when something changed. It does hold one idle OS thread: Django's ASGI handler runs a request's
sync middleware in a thread of its own that lives as long as the request (about 100 KiB of memory per
open stream or held claim, measured in docs/SCALING.md).

What wakes a stream (``Hub``, one per process):

- **PostgreSQL**: one ``LISTEN symphony_task`` connection per process. Services call
  ``task_notify()`` inside the transaction that adds an event or changes a task's status, so the
  notification arrives at commit and the row is there to read. The listening connection is a plain
  psycopg ``AsyncConnection`` outside ``symphony.db``'s bound, so it sets its own: ``notifies`` waits at
  most ``SYMPHONY_STREAM_RECHECK_SECONDS``, then a ``SELECT 1`` must answer within
  ``SYMPHONY_DB_TIMEOUT_SECONDS`` or the connection is dropped and opened again. Every stream also
  re-reads its task every ``SYMPHONY_STREAM_RECHECK_SECONDS`` (and after a reconnection), so a lost
  notification costs latency, never an event.
- **SQLite** (the embedded default, no notifications): one poller per process looks every
  ``SYMPHONY_STREAM_POLL_SECONDS`` (default 0.5 s) for events newer than the last it saw and for
  followed tasks updated since, in two indexed queries whatever the number of streams, and wakes the
  streams concerned. It works across processes because it reads the shared database file.

Each stream replays from ``Last-Event-ID`` or ``?after=`` first, then follows; a comment line goes
out every ``SYMPHONY_STREAM_HEARTBEAT_SECONDS`` so proxies keep it open; after the task has finished
and every event was sent, an ``end`` event closes it. Its viewer's access is checked again while it
lasts (``Access``): once refused, a ``denied`` event closes it instead.

The same listening connection wakes claims waiting for work (agents/claim_wait.py): payloads that
are JSON objects go to the listeners registered with ``hub.add_listener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, connections
from django.db.models import Q

from agents.models import Task, TaskEvent
from agents.services.notify import NOTIFY_CHANNEL
from symphony import runtime

log = structlog.get_logger(__name__)

#: Events read per query while replaying.
REPLAY_PAGE = 200


def _run_query(fn: Any) -> Any:
    """Run ``fn`` (ORM code) on the shared thread pool: a few threads and connections for all streams."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connection.close()  # this pool thread's connection may be broken: open a fresh one next time
            raise

    return sync_to_async(call, thread_sensitive=False)


async def release_request_connections() -> None:
    """Close the database connections of this request's own thread, before a long wait.

    Django's ASGI handler runs a request's sync middleware in a thread of its own that lives as long
    as the request. A connection the middleware opened there (a key seen for the first time, its
    last-use time) would stay open for the whole wait: one per held claim or open stream, so a
    fleet reconnecting after a restart would take as many connections as it has agents. The waits
    read the database on the shared pool (``_run_query``); this thread needs none. The call is
    thread-sensitive, so it runs on that very thread. Elsewhere (a stream served by a sync worker or
    the test client) that thread is the worker's own, whose connection is kept.
    """
    if runtime.ASGI:
        await sync_to_async(_close_idle_connections)()


def _close_idle_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


class Hub:
    """Per-process fan-out of "task N changed" to the streams following N."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called with each non-task payload (a JSON object: tasks became pending) and with None after
        #: a (re)connection, when anything may have been missed (agents/claim_wait.py registers here).
        self._listeners: list[Callable[[str | None], None]] = []

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def ensure_running(self) -> None:
        """Start this process's listener (PostgreSQL) or poller (SQLite) on the running loop, once."""
        self._ensure_running()

    def _deliver(self, payload: str) -> None:
        if payload[:1] == "{":
            for listener in self._listeners:
                listener(payload)
            return
        with contextlib.suppress(ValueError):
            self.wake(int(payload))

    @contextlib.asynccontextmanager
    async def subscribe(self, task_ids: Iterable[int]) -> AsyncIterator[asyncio.Event]:
        """An event set whenever one of ``task_ids`` may have changed; subscribe before reading."""
        self._ensure_running()
        wake = asyncio.Event()
        ids = set(task_ids)
        for task_id in ids:
            self._waiters.setdefault(task_id, set()).add(wake)
        try:
            yield wake
        finally:
            for task_id in ids:
                waiters = self._waiters.get(task_id)
                if waiters is not None:
                    waiters.discard(wake)
                    if not waiters:
                        del self._waiters[task_id]

    def followed(self) -> list[int]:
        return list(self._waiters)

    def wake(self, task_id: int) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()
        for listener in self._listeners:
            listener(None)

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._runner is not None and not self._runner.done() and self._loop is loop:
            return
        self._loop = loop
        runner = self._listen if connection.vendor == "postgresql" else self._poll
        self._runner = loop.create_task(runner())

    async def _poll(self) -> None:
        last_event_id = await _run_query(_max_event_id)()
        since = await _run_query(_db_now)()
        while True:
            await asyncio.sleep(settings.SYMPHONY_STREAM_POLL_SECONDS)
            followed = self.followed()
            if not followed:
                continue
            try:
                changed, last_event_id, since = await _run_query(_changes)(followed, last_event_id, since)
            except DatabaseError:
                log.warning("stream_poll_failed")
                continue
            for task_id in changed:
                self.wake(task_id)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                aconn = await psycopg.AsyncConnection.connect(**_listen_params(), autocommit=True)
            except psycopg.Error:
                log.warning("stream_listen_connect_failed")
                self.wake_all()
                await asyncio.sleep(1.0)
                continue
            try:
                async with aconn:
                    await aconn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.wake_all()  # whatever happened while we were not listening
                    while True:
                        async for notify in aconn.notifies(timeout=settings.SYMPHONY_STREAM_RECHECK_SECONDS):
                            self._deliver(notify.payload)
                        await asyncio.wait_for(aconn.execute("SELECT 1"), settings.SYMPHONY_DB_TIMEOUT_SECONDS)
            except (psycopg.Error, TimeoutError, OSError):
                log.warning("stream_listen_lost")
                self.wake_all()
                await asyncio.sleep(1.0)


def _listen_params() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    params: dict[str, Any] = {"dbname": db["NAME"], "user": db.get("USER") or None}
    for key, name in (("HOST", "host"), ("PORT", "port"), ("PASSWORD", "password")):
        if db.get(key):
            params[name] = str(db[key])
    options = db.get("OPTIONS", {})
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"):
        if name in options:
            params[name] = options[name]
    params.setdefault("connect_timeout", max(1, int(settings.SYMPHONY_DB_TIMEOUT_SECONDS)))
    return {key: value for key, value in params.items() if value is not None}


def _max_event_id() -> int:
    return TaskEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _db_now() -> Any:
    from django.utils import timezone

    return timezone.now()


def _changes(followed: list[int], last_event_id: int, since: Any) -> tuple[set[int], int, Any]:
    from django.utils import timezone

    now = timezone.now()
    rows = list(
        TaskEvent.objects.filter(pk__gt=last_event_id, task_id__in=followed).values_list("id", "task_id")[:10000]
    )
    changed = {task_id for _, task_id in rows}
    newest = max((pk for pk, _ in rows), default=last_event_id)
    if len(rows) < 10000:
        newest = max(newest, _max_event_id())
    # A little overlap: a transaction that started before ``since`` may commit after it.
    changed.update(Task.objects.filter(pk__in=followed, updated_at__gte=since).values_list("id", flat=True))
    return changed, newest, now - _overlap()


def _overlap() -> Any:
    from datetime import timedelta

    return timedelta(seconds=2)


hub = Hub()


#: Tasks per events query while reading a many-task stream (a workflow run): bounded OR lists.
SNAPSHOT_CHUNK = 200


def _snapshot(task_ids: list[int], cursors: dict[int, int]) -> tuple[list[TaskEvent], dict[int, str]]:
    """The tasks' statuses and their next events (at most about ``REPLAY_PAGE``), in one query per
    ``SNAPSHOT_CHUNK`` tasks. Within a task, ids grow with ``seq`` (both assigned under the task's row
    lock), so ordering by id gives each task's events in order."""
    statuses = dict(Task.objects.filter(pk__in=task_ids).values_list("id", "status"))
    events: list[TaskEvent] = []
    for start in range(0, len(task_ids), SNAPSHOT_CHUNK):
        chunk = task_ids[start : start + SNAPSHOT_CHUNK]
        condition = Q(task_id__in=[task_id for task_id in chunk if not cursors[task_id]])
        for task_id in chunk:
            if cursors[task_id]:
                condition |= Q(task_id=task_id, seq__gt=cursors[task_id])
        events.extend(TaskEvent.objects.filter(condition).order_by("id")[:REPLAY_PAGE])
        if len(events) >= REPLAY_PAGE:
            break
    return events, statuses


def sse(*, data: Any, event: str | None = None, id: str | None = None) -> bytes:
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


#: Not read yet: the stream's own open checks have just run.
_UNREAD = object()


class Access:
    """Whether a stream's viewer may still see what it opened: ``check`` (its open checks, as a new
    request would run them) gives the refusal a new request would get, or None.

    A stream outlives its credentials' checks: its key may be revoked, its owner deactivated, its
    role taken away, its session ended. So the checks run again whenever the permission generation
    has moved (every such change moves it: ``accounts.backends``), which is read from the cache when
    there is something to send, before it is sent, and at least every ``SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS`` (60 s)
    for what moves no generation (a key's expiry, a logout) or while the cache cannot be read. A full
    check costs a few ms of CPU, so the periodic one is rarer than the heartbeat.
    """

    def __init__(self, check: Callable[[], Any]) -> None:
        self._check = check
        self._generation: Any = _UNREAD
        # As if last checked at a random point of the past interval: streams opened together (a
        # console, a fleet reconnecting) spread their periodic checks instead of queueing them at once
        # on the pool, ahead of the events their viewers wait for.
        self._checked_at = time.monotonic() - random.uniform(0, settings.SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS)

    def refusal(self, *, sending: bool) -> Any:
        """Sync (on the stream pool): the refusal (a rendered response) or None. ``sending``: the
        stream has something to send; with nothing to send only the periodic check is due."""
        from accounts.backends import permissions_generation

        due = time.monotonic() - self._checked_at >= settings.SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS
        if not sending and not due:
            return None
        generation = permissions_generation()
        if self._generation is _UNREAD:  # the first batch: the stream's own checks ran just now
            self._generation = generation
            return None
        if not due and generation is not None and generation == self._generation:
            return None
        self._generation, self._checked_at = generation, time.monotonic()
        return self._check()


def _checked_snapshot(
    access: Access, task_ids: list[int], cursors: dict[int, int], seen: dict[int, str]
) -> tuple[Any, list, dict]:
    """(refusal, [], {}) when the viewer may no longer see what there is to send, else (None,
    ``_snapshot``): one trip to the pool for both."""
    events, statuses = _snapshot(task_ids, cursors)
    sending = bool(events) or any(seen.get(task_id) != status for task_id, status in statuses.items())
    refusal = access.refusal(sending=sending)
    if refusal is not None:
        return refusal, [], {}
    return None, events, statuses


async def follow(
    *, task_ids: list[int], cursors: dict[int, int], event_id: Any, finished: Any, access: Access
) -> AsyncIterator[bytes]:
    """The stream core: replay each task's events after ``cursors[task_id]``, then follow live.

    ``event_id(event)`` gives an event's SSE id (what a client sends back as ``Last-Event-ID``);
    ``finished(statuses)`` says when the stream is over. Status changes go out as ``status`` events.
    Before each batch ``access`` is asked whether the viewer may still see it: when not, a ``denied``
    event carries the status and error a new request would get (401, 403, 404), and the stream ends;
    when the check itself failed (503: the database is away), the stream ends without a word, so
    the client reconnects and its new request is checked in full.
    """
    heartbeat = settings.SYMPHONY_STREAM_HEARTBEAT_SECONDS
    recheck = settings.SYMPHONY_STREAM_RECHECK_SECONDS
    if connection.vendor != "postgresql":
        recheck = max(recheck, heartbeat)  # the poller wakes us; no need to re-read on our own
    seen: dict[int, str] = {}
    yield b"retry: 2000\n\n"
    await release_request_connections()  # the middleware is done with this request's thread
    last_beat = time.monotonic()
    async with hub.subscribe(task_ids) as wake:
        while True:
            wake.clear()
            refusal, events, statuses = await _run_query(_checked_snapshot)(access, task_ids, cursors, seen)
            if refusal is not None:
                if refusal.status_code < 500:
                    yield sse(event="denied", data={"status": refusal.status_code, **json.loads(refusal.content)})
                return
            for row in events:
                cursors[row.task_id] = row.seq
                yield sse(
                    id=event_id(row),
                    event=row.type,
                    data={"task": row.task_id, "seq": row.seq, "attempt": row.attempt,
                          "created_at": row.created_at, "data": row.data},
                )  # fmt: skip
            for task_id, task_status in sorted(statuses.items()):
                if seen.get(task_id) != task_status:
                    seen[task_id] = task_status
                    yield sse(event="status", data={"task": task_id, "status": task_status})
            if len(events) >= REPLAY_PAGE:
                continue  # more to replay before following
            if finished(statuses):
                yield sse(event="end", data={"statuses": statuses})
                return
            remaining = heartbeat - (time.monotonic() - last_beat)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(remaining, recheck))
            if time.monotonic() - last_beat >= heartbeat:
                yield b": heartbeat\n\n"
                last_beat = time.monotonic()
