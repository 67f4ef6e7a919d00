"""Client-side bounds on waiting for PostgreSQL, so that a stalled database answers 503, never a hang.

A server-side ``statement_timeout`` cannot fire while the server itself is frozen (its processes
stopped, a host hung, a network blackhole), and TCP keepalives do not help while the peer's kernel
still acknowledges. So the bound is enforced by the client, in three places:

- **Connecting**: libpq's ``connect_timeout`` (settings set it from ``SYMPHONY_DB_TIMEOUT_SECONDS``
  unless ``DATABASE_URL`` names one), which psycopg enforces itself on every attempt.
- **Every wait on an open connection** (query, fetch, commit, rollback, Django's health check
  ``SELECT 1``): psycopg 3.3 runs each of them through ``Connection.wait(gen, interval, timeout)``.
  ``BoundedConnection`` passes ``timeout`` when the caller gave none. When it expires the connection
  is closed (whatever was sent may still be executed by the server when it wakes up, so the
  connection's state is unknown) and ``DatabaseTimeout`` is raised: Django sees an
  ``OperationalError`` and the error handlers answer 503 ``database_unavailable``.
- **After a timeout**, this process stops opening connections for requests (they get
  ``DatabaseTimeout`` at once) until a background thread of the process has connected and run
  ``SELECT 1`` again (it tries every second): a frozen database would otherwise cost every following
  request another full wait, and a sync worker that waits cannot answer ``/health/live``. A refused
  connection (a database that is down, not frozen) fails fast by itself and pauses nothing.

The bound is armed by the web entry points (``symphony/wsgi.py``, ``symphony/asgi.py``) with
``arm(settings.SYMPHONY_DB_TIMEOUT_SECONDS)``. Management commands are not bounded (a migration or a
purge may legitimately run one long statement); they only get the connect timeout.

A 503 normally means nothing was saved. But a commit that times out may have been applied, and a
request that committed and then lost the database (reading its answer back, say) did save its
change: ``outcome_unknown(exc)`` says so, for that failure and any later one of the same request (the
pause refusing its next connection, say), and the 503 answer then carries
``details: {"outcome": "unknown"}``. A connection that must wait longer (a
``LISTEN`` consumer calling ``notifies()`` without a timeout) sets ``wait_timeout = None`` on it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import psycopg
from django.core.signals import request_started
from psycopg import errors as pg_errors

_PROBE_INTERVAL = 1.0  # seconds between the background connection attempts while paused

_bound: float | None = None
_paused = False
_probe_lock = threading.Lock()
_probe: threading.Thread | None = None
# Whether the current request (or thread, outside requests) has committed a transaction, or may
# have (a commit that timed out).
_committed: ContextVar[bool] = ContextVar("symphony_db_committed", default=False)


class DatabaseTimeout(psycopg.OperationalError):
    """The database gave no answer within the bound (or did not, moments ago, in this process)."""

    outcome_unknown = False


def _forget_commits(**_kwargs: Any) -> None:
    _committed.set(False)


request_started.connect(_forget_commits, dispatch_uid="symphony.db.forget_commits")


def outcome_unknown(exc: BaseException | None) -> bool:
    """Whether a database failure ``exc`` may have left a change saved: a commit that timed out, or
    one that succeeded earlier in the same request."""
    if _committed.get():
        return True
    for _ in range(5):  # Django re-raises the driver's error "from" it: a short chain, never a cycle
        if exc is None:
            break
        if isinstance(exc, DatabaseTimeout):
            return exc.outcome_unknown
        exc = exc.__cause__ or exc.__context__
    return False


def arm(seconds: float | None) -> None:
    """Bound every database wait of this process by ``seconds`` (None: unbounded). Call once at start-up."""
    global _bound, _paused
    _bound = seconds if seconds and seconds > 0 else None
    _paused = False


def bound() -> float | None:
    """The armed bound in seconds, or None when this process waits as long as the database takes."""
    return _bound


def retry_after() -> int:
    """Seconds a client should wait before retrying after a 503 ``database_unavailable``."""
    return max(1, math.ceil(_bound or 5))


def is_paused() -> bool:
    """Whether this process refuses new connections because the database stopped answering."""
    return _paused


def check_not_paused() -> None:
    """Raise ``DatabaseTimeout`` while this process waits for the database to answer again."""
    if _paused:
        raise DatabaseTimeout(f"the database did not answer within {_bound:g}s; waiting for it to answer again")


def _pause(connect_args: tuple[Any, ...], connect_kwargs: dict[str, Any]) -> None:
    """Refuse new connections until a background probe with the same parameters gets an answer."""
    global _paused, _probe
    if not _bound:
        return
    with _probe_lock:
        _paused = True
        if _probe is None or not _probe.is_alive():
            _probe = threading.Thread(
                target=_probe_until_answered, args=(connect_args, connect_kwargs), name="symphony-db-probe", daemon=True
            )
            _probe.start()


def _probe_until_answered(connect_args: tuple[Any, ...], connect_kwargs: dict[str, Any]) -> None:
    global _paused
    while _paused:
        time.sleep(_PROBE_INTERVAL)
        try:
            connection = _open(connect_args, connect_kwargs)
        except psycopg.Error:
            continue
        try:
            connection.wait_timeout = _bound
            connection.execute("SELECT 1")
        except psycopg.Error:
            continue
        finally:
            connection.close()
        _paused = False


_NOTIFY = "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)"
_NOTIFY_AND_COMMIT = f"{_NOTIFY}; COMMIT"


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server gives up after ``wait_timeout`` seconds."""

    wait_timeout: float | None = None
    _committing = False
    _connect_params: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None or self.wait_timeout is None:
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=self.wait_timeout)
        except pg_errors._WaitTimeout:  # psycopg's own deadline (3.3): the generator did not complete
            committing = self._committing
            # What was sent may still run when the server wakes up: never reuse this connection.
            self.close()
            _pause(*self._connect_params)
            error = DatabaseTimeout(f"the database did not answer within {self.wait_timeout:g}s")
            error.outcome_unknown = committing
            if committing:
                # Sticky for the request: a later failure (the pause refusing a reconnect, say) must
                # not answer "nothing was saved" over a commit that may have been applied.
                _committed.set(True)
            raise error from None

    def commit(self, notifications: Sequence[tuple[str, str]] = ()) -> None:
        """Commit; with ``notifications`` (``(channel, payload)`` pairs), send them in the same round
        trip: ``SELECT pg_notify(...); COMMIT`` as one simple-protocol query. PostgreSQL delivers a
        notification at commit either way, so listeners see no difference, and the transaction saves
        the statement it would otherwise spend on them. If a notification fails, the rest of the
        query is skipped: the transaction is left failed and uncommitted, and Django rolls it back."""
        self._committing = True
        try:
            if notifications:
                channels, payloads = zip(*notifications, strict=True)
                # A transaction that ran no statement has not begun on the server (psycopg sends
                # BEGIN with the first one): the notifications then go alone, and begin it.
                alone = self.pgconn.transaction_status != psycopg.pq.TransactionStatus.INTRANS
                with psycopg.ClientCursor(self) as cursor:
                    cursor.execute(_NOTIFY if alone else _NOTIFY_AND_COMMIT, [list(channels), list(payloads)])
                if alone:
                    super().commit()
            else:
                super().commit()
        finally:
            self._committing = False
        _committed.set(True)


def _open(args: tuple[Any, ...], kwargs: dict[str, Any]) -> BoundedConnection:
    # psycopg.connect, not BoundedConnection.connect: instrumentation (OpenTelemetry) rewraps
    # psycopg.Connection.connect, and once unwrapped it stays bound to the base class, so the
    # subclass's own classmethod could quietly return an unbounded psycopg.Connection. The class is
    # set on the new connection instead (same layout: BoundedConnection adds no slots).
    connection = psycopg.connect(*args, **kwargs)
    connection.__class__ = BoundedConnection
    connection.wait_timeout = _bound
    connection._connect_params = (args, kwargs)
    return connection


def connect(*args: Any, **kwargs: Any) -> BoundedConnection:
    """``psycopg.connect`` for Django's backend: refuse at once while paused; bound the new connection."""
    check_not_paused()
    try:
        return _open(args, kwargs)
    except pg_errors.ConnectionTimeout:
        _pause(args, kwargs)
        raise
